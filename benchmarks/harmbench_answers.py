"""Write stage-1 training data of *larger models' real harmful answers* (issue 12, SKU recipe C):
HarmBench completions that the human majority labelled harmful (standard behaviours; contextual
ones carry pages of context that a 128-token window cuts away), one row per completion, paired with
the plain behaviour. Behaviours close in meaning to any evaluation prompt are left out — the bundled
suite's harmful prompts (every split) and the held-out JailbreakBench behaviours of the selectivity
check — so the figures stay on behaviours that training never saw.

    python benchmarks/harmbench_answers.py OUT.jsonl --exclude runs/s5/jbb/harmful.jsonl [--max-cosine 0.7]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unlearnkit.data import load_pairs, load_suite
from unlearnkit.evaluation.embeddings import embed
from unlearnkit.outputs import write_text_atomic

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--data", default=str(SHARED / "harmbench_human_dev" / "labelled.jsonl"))
    parser.add_argument("--exclude", action="append", default=[], help="a JSONL whose prompts must stay unseen (repeatable)")
    parser.add_argument("--max-cosine", type=float, default=0.7,
                        help="drop a behaviour whose MiniLM cosine to any excluded prompt reaches this")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data)]
    kept = [r for r in rows if int(r["harmful"]) == 1 and r["functional_category"] == "standard"]
    unseen = [p["prompt"] for split in ("train", "validation", "test") for p in load_suite(f"standard:{split}")["harmful"]]
    unseen += [p["prompt"] for f in args.exclude for p in load_pairs(f, require_response=False)]
    nearest = (embed([r["behavior"] for r in kept]) @ embed(unseen).T).max(1)  # embeddings are unit length
    train = [{"prompt": r["behavior"], "response": r["response"].strip(), "category": r["semantic_category"],
              "source": f"harmbench_human_dev/{r['behavior_id']}/{r['source_model']}"}
             for r, cos in zip(kept, nearest) if cos < args.max_cosine]
    write_text_atomic(Path(args.out), "".join(json.dumps(r) + "\n" for r in train))
    print(json.dumps({"human_harmful_standard": len(kept), "kept": len(train),
                      "behaviours": len({r["prompt"] for r in train}), "excluded_prompts": len(unseen),
                      "max_cosine": args.max_cosine}))


if __name__ == "__main__":
    main()
