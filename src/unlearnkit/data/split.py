"""Deterministic train/validation/test split."""

from __future__ import annotations

import random


def split_pairs(pairs: list[dict], seed: int = 0, validation: float = 0.1, test: float = 0.2) -> dict[str, list[dict]]:
    """Shuffle with `seed` and cut; each split with a non-zero share gets at least one row when possible."""
    if not 0 <= validation < 1 or not 0 <= test < 1 or validation + test >= 1:
        raise ValueError("validation and test shares must be in [0, 1) and sum to less than 1")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n = len(order)
    n_test = max(1, round(n * test)) if test and n >= 3 else 0
    n_val = max(1, round(n * validation)) if validation and n >= 3 else 0
    shuffled = [pairs[i] for i in order]
    return {
        "test": shuffled[:n_test],
        "validation": shuffled[n_test:n_test + n_val],
        "train": shuffled[n_test + n_val:],
    }
