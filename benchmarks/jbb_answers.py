"""Write held-out harmful *answers of larger models* for the judge-free selectivity check (issue 12):
JailbreakBench responses its Llama-3-70B judge called jailbroken, one per behaviour (the first in
sorted artifact order; a behaviour's goal is worded alike across files), paired with the plain behaviour (not the attack prompt), for behaviours
outside the given training file. Also writes the bundled suite's test-split normal and safe prompts,
so `unlearnkit eval --harmful ... --normal ... --safe ...` measures on the same normal set as
`--suite standard`.

    python benchmarks/jbb_answers.py OUT_DIR [--exclude TRAIN.jsonl]
    unlearnkit eval --model M --base default --harmful OUT_DIR/harmful.jsonl \
        --normal OUT_DIR/normal.jsonl --safe OUT_DIR/safe.jsonl --out ...
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

from unlearnkit.data import load_suite
from unlearnkit.outputs import write_text_atomic

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--data", default=str(SHARED))
    parser.add_argument("--exclude", help="a JSONL of training prompts whose behaviours must not appear")
    args = parser.parse_args()
    seen = {json.loads(line)["prompt"].strip().lower() for line in open(args.exclude)} if args.exclude else set()
    harmful = {}
    for file in sorted(glob.glob(f"{args.data}/jbb/attack-artifacts/*/*/*.json")):
        for jb in json.load(open(file))["jailbreaks"]:
            goal, behaviour = jb["goal"].strip(), jb["behavior"]
            if jb["jailbroken"] and jb["response"] and goal.lower() not in seen and behaviour not in harmful:
                harmful[behaviour] = {"prompt": goal, "response": jb["response"].strip(), "category": jb["category"],
                                 "source": file.split("attack-artifacts/")[1]}
    suite = load_suite("standard")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("harmful", list(harmful.values())), ("normal", suite["normal"]), ("safe", suite["safe"])):
        write_text_atomic(out / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    print(json.dumps({"harmful_answers": len(harmful), "normal": len(suite["normal"]), "safe": len(suite["safe"])}))


if __name__ == "__main__":
    main()
