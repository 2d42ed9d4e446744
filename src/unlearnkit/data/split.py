"""Train / validation / test by a stable hash: the one split every command uses.

A row's split depends only on its group key (the behaviour it asks for, where the data names one,
else its normalised prompt), never on the order of the file, a seed or the other rows. So the same
prompt is in the same split in the demo, `compare`, `negate --pick` and EMU's early stop; several
answers to one behaviour never straddle two splits; and adding rows moves no existing row.
Choices (λ, step counts, early stops, defaults) are made on validation; figures are reported on test.
"""

from __future__ import annotations

import hashlib
import re

SPLITS = ("train", "validation", "test")
_SPACE = re.compile(r"\s+")


def group_key(row: dict) -> str:
    """The behaviour a row belongs to: `behavior_id` / `behavior` where the data has one, else the prompt."""
    for key in ("behavior_id", "behavior", "goal"):
        if row.get(key):
            return str(row[key]).strip().lower()
    return _SPACE.sub(" ", str(row["prompt"]).strip().lower())


def _unit(key: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_pairs(pairs: list[dict], validation: float = 0.15, test: float = 0.25, salt: str = "") -> dict[str, list[dict]]:
    """{"train", "validation", "test"}: each group lands where its hash falls in [0, 1) — below `test`
    in test, then validation, the rest train. On small sets where a split with a non-zero share
    would come out empty, groups are cut in hash order by their row counts instead (still stable
    for a given set)."""
    if not 0 <= validation < 1 or not 0 <= test < 1 or validation + test >= 1:
        raise ValueError("validation and test shares must be in [0, 1) and sum to less than 1")
    groups: dict[str, list[dict]] = {}
    for row in pairs:
        groups.setdefault(group_key(row), []).append(row)
    ranked = sorted(groups, key=lambda k: (_unit(k, salt), k))
    place = {k: "test" if _unit(k, salt) < test else "validation" if _unit(k, salt) < test + validation else "train"
             for k in ranked}
    wanted = {"test": test, "validation": validation, "train": 1 - test - validation}
    counts = {s: sum(1 for k in ranked if place[k] == s) for s in SPLITS}
    if len(ranked) >= 3 and any(wanted[s] > 0 and counts[s] == 0 for s in SPLITS):
        total, seen, queue = len(pairs), 0, list(ranked)
        for name, upto in (("test", test), ("validation", test + validation)):
            taken = 0
            while wanted[name] and len(queue) > 1 and (taken == 0 or seen < upto * total):
                k = queue.pop(0)
                place[k], seen, taken = name, seen + len(groups[k]), taken + 1
        for k in queue:
            place[k] = "train"
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for row in pairs:  # keep the file's order within each split
        out[place[group_key(row)]].append(row)
    return out
