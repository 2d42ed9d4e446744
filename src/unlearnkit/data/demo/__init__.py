"""The demo dataset shipped with unlearnkit, written by the unlearnkit authors (see README.md here).

- harmful.jsonl: harmful prompts in 10 categories, each with a compliant, generic, non-operational
  answer in the manner of PKU-SafeRLHF's unsafe responses (the forget set).
- normal.jsonl: everyday questions with short correct answers (the retain / utility set).
- safe_lookalike.jsonl: safe prompts that sound dangerous ("how do I kill a Python process"), for
  over-refusal.
"""

from __future__ import annotations

from pathlib import Path

from unlearnkit.data.load import load_pairs

_FOLDER = Path(__file__).parent
DEMO_SETS = ("harmful", "normal", "safe_lookalike")


def demo_path(name: str) -> Path:
    if name not in DEMO_SETS:
        raise ValueError(f"unknown demo set '{name}': one of {', '.join(DEMO_SETS)}")
    return _FOLDER / f"{name}.jsonl"


def load_demo(name: str) -> list[dict]:
    return load_pairs(demo_path(name), require_response=name != "safe_lookalike")
