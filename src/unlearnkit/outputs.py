"""Output directories that appear whole or not at all.

A command works in `<out>.partial/` and renames it to `<out>` only when everything is written.
Killed runs leave `<out>.partial/` with their Trainer checkpoints, which `--resume` continues;
a run that fails before its first checkpoint leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from unlearnkit.distributed import is_main_process, wait_for_everyone
from unlearnkit.errors import UnlearnkitError


def partial_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _has_checkpoint(folder: Path) -> bool:
    return any(folder.glob("checkpoints/checkpoint-*"))


def check_output_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> None:
    """Fail early (before any work) if `out` may not be written."""
    out, partial = Path(out), partial_path(out)
    if out.exists() and not overwrite:
        raise UnlearnkitError(f"{out} already exists: pass --overwrite to replace it, or choose another --out")
    if partial.exists() and not (resume or overwrite):
        raise UnlearnkitError(f"{partial} holds an unfinished run: pass --resume to continue it, or --overwrite to start over")
    if resume and not partial.exists():
        raise UnlearnkitError(f"nothing to resume: {partial} does not exist (drop --resume to start a new run)")


@contextlib.contextmanager
def output_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False):
    """Yield the working folder; on success it becomes `out` (replacing it only with overwrite).
    Under a multi-process launch only rank 0 checks, cleans and renames; the others wait until it
    has (a rank that created the folder first would make rank 0 refuse it as an unfinished run)."""
    out, partial = Path(out), partial_path(out)
    if not is_main_process():
        wait_for_everyone()
        yield partial
        return
    check_output_dir(out, overwrite, resume)
    if partial.exists() and not resume:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    wait_for_everyone()
    try:
        yield partial
    except BaseException:
        if not _has_checkpoint(partial):
            shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(partial / "checkpoints", ignore_errors=True)  # the finished model supersedes them
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    if not is_main_process():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
