"""The bundled evaluation suite: public MIT/Apache prompt sets and ours (README.md and LICENSES/ here).

`load_suite("standard")` gives the test split of each set (the figures); `"standard:validation"`
the validation split (the choices). Splits come from the shared hash split, so no choice made on
validation prompts ever touches a test prompt.
"""

from __future__ import annotations

from pathlib import Path

from unlearnkit.data.load import load_pairs
from unlearnkit.data.split import split_pairs
from unlearnkit.errors import UnlearnkitError

_FOLDER = Path(__file__).parent
SUITES = ("standard",)


def load_suite(spec: str = "standard") -> dict[str, list[dict]]:
    """{"harmful", "normal", "safe"} rows of one split of a bundled suite: NAME[:test|validation|train]."""
    name, _, split = spec.partition(":")
    split = split or "test"
    if name not in SUITES or split not in ("train", "validation", "test"):
        raise UnlearnkitError(f"unknown suite '{spec}': use one of {', '.join(SUITES)}, optionally with :validation or :test")
    sets = {"harmful": load_pairs(_FOLDER / "harmful.jsonl", require_response=False),
            "normal": load_pairs(_FOLDER / "normal.jsonl"),
            "safe": load_pairs(_FOLDER / "safe_lookalike.jsonl", require_response=False)}
    return {key: split_pairs(rows)[split] for key, rows in sets.items()}
