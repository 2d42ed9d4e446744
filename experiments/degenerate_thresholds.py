"""How well does the text-only degenerate detector (`metrics.degenerate_reason`) agree with people, and
which thresholds should it use? Chosen on the development readings, reported on the test readings.

    python experiments/degenerate_thresholds.py

Development: the round-2 hand labels (answers to suite *train* prompts, greedy with repetition penalty,
read under the rubric's final wording) and `experiments/data/sampled_degenerate_read_labels.jsonl`
(answers sampled at T = 1 to suite validation prompts, where breakage shows). Test: the blind readings
of answers to the suite's *test* prompts (`judge_data/suite_test_labels.jsonl`), never used to choose.
The rule picked is the one with the highest Cohen's κ on development; ties go to the stricter rule
(fewer answers called degenerate). Prints one JSON line per set.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from unlearnkit.data.load import read_jsonl
from unlearnkit.evaluation.metrics import (
    JUNK_SHARE, LOOP_DISTINCT, SALAD_FUNCTION_SHARE, agreement_stats, degenerate_reason,
)

ROOT = Path(__file__).resolve().parents[1]
JUDGE_DATA = ROOT / "src" / "unlearnkit" / "evaluation" / "judge_data"
GRID = {"loop_distinct": (0.4, 0.5, 0.6), "salad_function_share": (0.08, 0.10, 0.12, 0.15),
        "junk": (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.01)}  # 1.01: no junk test (the rule before it)


def rows(path: Path, keep=lambda r: True) -> list[dict]:
    out = read_jsonl(path.read_text(), path)
    return [{"text": r["response"], "label": int(r["degenerate"])} for r in out if keep(r) and r.get("degenerate") in (0, 1)]


def agreement(data: list[dict], **thresholds) -> dict:
    flags = [float(degenerate_reason(r["text"], **thresholds) is not None) for r in data]
    stats = agreement_stats(flags, [r["label"] for r in data], 0.5)
    return {k: stats[k] for k in ("agreement", "kappa", "precision", "recall", "n")} | {
        "people": sum(r["label"] for r in data), "detector": int(sum(flags))}


def main():
    sampled = ROOT / "experiments" / "data" / "sampled_degenerate_read_labels.jsonl"
    dev = rows(JUDGE_DATA / "hand_labelled.jsonl", lambda r: r.get("round") == 2) + (rows(sampled) if sampled.exists() else [])
    test = rows(JUDGE_DATA / "suite_test_labels.jsonl")
    shipped = dict(loop_distinct=LOOP_DISTINCT, salad_function_share=SALAD_FUNCTION_SHARE, junk=JUNK_SHARE)
    before = dict(loop_distinct=0.5, salad_function_share=0.12, junk=1.01)
    scored = []
    for values in itertools.product(*GRID.values()):
        thresholds = dict(zip(GRID, values))
        result = agreement(dev, **thresholds)
        scored.append(((result["kappa"], -result["detector"]), thresholds, result))
    _, best, best_dev = max(scored, key=lambda s: s[0])
    print(json.dumps({"set": "development", "n": len(dev), "chosen": best, "chosen_scores": best_dev,
                      "shipped": shipped, "shipped_scores": agreement(dev, **shipped),
                      "rule_before_junk": agreement(dev, **before)}))
    print(json.dumps({"set": "test", "n": len(test), "shipped_scores": agreement(test, **shipped),
                      "chosen_scores": agreement(test, **best), "rule_before_junk": agreement(test, **before)}))


if __name__ == "__main__":
    main()
