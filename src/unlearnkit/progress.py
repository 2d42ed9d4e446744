"""Progress the user can see: a bar in a terminal, one line every tenth of the work in a log file."""

from __future__ import annotations

import contextlib
import sys
import time


class Progress:
    def __init__(self, total: int, what: str, unit: str = "items"):
        self.total, self.what, self.unit = total, what, unit
        self.done, self.start, self.next_line = 0, time.time(), 0.1
        self.bar = None
        if sys.stderr.isatty() and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=what, unit=f" {unit}", leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        share = self.done / max(1, self.total)
        if share >= self.next_line or self.done >= self.total:
            elapsed = time.time() - self.start
            left = elapsed / share - elapsed if share else float("nan")
            print(f"{self.what}: {self.done}/{self.total} {self.unit} ({share:.0%}), {elapsed:.0f} s, ~{left:.0f} s left",
                  file=sys.stderr, flush=True)
            while self.next_line <= share:
                self.next_line += 0.1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def phase(what: str):
    """One line when a phase with no natural count starts and one when it ends, so a log never goes
    silent for minutes between "generating answers" and the report."""
    start = time.time()
    print(f"{what} ...", file=sys.stderr, flush=True)
    yield
    print(f"{what}: done in {time.time() - start:.0f} s", file=sys.stderr, flush=True)
