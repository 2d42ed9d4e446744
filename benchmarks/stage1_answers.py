"""Write SKU stage-1 training data of *larger models' real answers to harmful requests* (issue 12):

- `--source harmbench` (recipe C): HarmBench completions that the human majority labelled harmful
  (standard behaviours; contextual ones carry pages of context that a 128-token window cuts away),
  one row per completion, paired with the plain behaviour.
- `--source hh-rlhf` (recipe I): hh-rlhf's red-team dialogues (harmless-base) with one human turn,
  so the request stands alone, and the `rejected` final answer (the one people judged less
  harmless) where the default judge says it went along with the request (`complied` ≥ 0.5). Many
  more answers than HarmBench's, of a larger model, in a going-along style rather than instructions.

Requests close in meaning to any evaluation prompt are left out — the bundled suite's harmful prompts
(every split) and the held-out JailbreakBench behaviours of the selectivity check — so the figures
stay on behaviours that training never saw.

    python benchmarks/stage1_answers.py OUT.jsonl --exclude runs/s5/jbb/harmful.jsonl [--source hh-rlhf] [--max-cosine 0.7]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from unlearnkit.data import load_pairs, load_suite
from unlearnkit.data.load import split_dialogue
from unlearnkit.evaluation.embeddings import embed
from unlearnkit.outputs import write_text_atomic

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def harmbench(data: Path) -> list[dict]:
    rows = [json.loads(line) for line in open(data / "harmbench_human_dev" / "labelled.jsonl")]
    return [{"prompt": r["behavior"], "response": r["response"].strip(), "category": r["semantic_category"],
             "source": f"harmbench_human_dev/{r['behavior_id']}/{r['source_model']}"}
            for r in rows if int(r["harmful"]) == 1 and r["functional_category"] == "standard"]


def hh_rlhf(data: Path) -> list[dict]:
    from unlearnkit.evaluation.judge import load_judge

    rows = []
    for i, line in enumerate(gzip.open(data / "hh_rlhf" / "harmless-base" / "test.jsonl.gz", "rt")):
        transcript = json.loads(line)["rejected"]
        prompt, response = split_dialogue(transcript)
        if transcript.count("\n\nHuman:") == 1 and prompt and response:
            rows.append({"prompt": prompt, "response": response, "source": f"hh_rlhf/harmless-base/test/{i}/rejected"})
    scores = load_judge("default").score([r["prompt"] for r in rows], [r["response"] for r in rows], verdict="complied")
    return [r for r, s in zip(rows, scores) if s >= 0.5]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--source", choices=("harmbench", "hh-rlhf"), default="harmbench")
    parser.add_argument("--data", default=str(SHARED))
    parser.add_argument("--exclude", action="append", default=[], help="a JSONL whose prompts must stay unseen (repeatable)")
    parser.add_argument("--max-cosine", type=float, default=0.7,
                        help="drop a request whose MiniLM cosine to any excluded prompt reaches this")
    args = parser.parse_args()
    kept = (harmbench if args.source == "harmbench" else hh_rlhf)(Path(args.data))
    unseen = [p["prompt"] for split in ("train", "validation", "test") for p in load_suite(f"standard:{split}")["harmful"]]
    unseen += [p["prompt"] for f in args.exclude for p in load_pairs(f, require_response=False)]
    nearest = (embed([r["prompt"] for r in kept]) @ embed(unseen).T).max(1)  # embeddings are unit length
    train = [r for r, cos in zip(kept, nearest) if cos < args.max_cosine]
    write_text_atomic(Path(args.out), "".join(json.dumps(r) + "\n" for r in train))
    print(json.dumps({"source": args.source, "candidates": len(kept), "kept": len(train),
                      "requests": len({r["prompt"] for r in train}), "excluded_prompts": len(unseen),
                      "max_cosine": args.max_cosine}))


if __name__ == "__main__":
    main()
