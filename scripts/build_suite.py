"""Build the bundled evaluation suite (src/unlearnkit/data/suite/) from ../shared/data.

    python scripts/build_suite.py

harmful: AdvBench harmful behaviours (MIT) + JailbreakBench behaviours (MIT), duplicates dropped;
normal: TruthfulQA questions with their best answer (Apache-2.0); safe look-alikes: ours (the demo's
107 and 220 more written for the suite). Licence texts go to LICENSES/.
"""

from __future__ import annotations

import csv
import glob
import json
import re
from pathlib import Path

import transformers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SUITE = ROOT / "src" / "unlearnkit" / "data" / "suite"
MIT = """MIT License

{copyright}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def write(name: str, rows: list[dict]) -> None:
    (SUITE / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(name, len(rows))


def main() -> None:
    harmful, seen = [], set()
    with open(SHARED / "advbench" / "harmful_behaviors.csv", newline="") as f:
        for r in csv.DictReader(f):
            if norm(r["goal"]) not in seen:
                seen.add(norm(r["goal"]))
                harmful.append({"prompt": r["goal"], "category": "advbench", "source": "AdvBench (MIT)"})
    jbb = {}
    for path in sorted(glob.glob(str(SHARED / "jbb" / "attack-artifacts" / "*" / "*" / "*.json"))):
        for jb in json.load(open(path))["jailbreaks"]:
            jbb.setdefault(jb["goal"], jb["category"])
    for goal, category in sorted(jbb.items()):
        if norm(goal) not in seen:
            seen.add(norm(goal))
            harmful.append({"prompt": goal, "category": category, "source": "JailbreakBench (MIT)"})
    with open(SHARED / "truthfulqa" / "TruthfulQA.csv", newline="", encoding="utf-8-sig") as f:
        normal = [{"prompt": r["Question"], "response": r["Best Answer"], "category": r["Category"],
                   "source": "TruthfulQA (Apache-2.0)"} for r in csv.DictReader(f)]
    safe = [{"prompt": json.loads(l)["prompt"], "category": json.loads(l).get("category", ""), "source": "unlearnkit (Apache-2.0)"}
            for name in (ROOT / "src" / "unlearnkit" / "data" / "demo" / "safe_lookalike.jsonl", ROOT / "scripts" / "data" / "safe_lookalike_extra.jsonl")
            for l in name.read_text().splitlines() if l.strip()]
    write("harmful.jsonl", harmful)
    write("normal.jsonl", normal)
    write("safe_lookalike.jsonl", safe)
    (ROOT / "scripts" / "data" / "safe_lookalike_extra.jsonl").unlink()
    licenses = SUITE / "LICENSES"
    licenses.mkdir(exist_ok=True)
    (licenses / "AdvBench-MIT.txt").write_text(MIT.format(copyright="Copyright (c) 2023 Andy Zou"))
    (licenses / "JailbreakBench-MIT.txt").write_text(MIT.format(copyright="Copyright (c) 2024 JailbreakBench Team and artifacts authors"))
    apache = next(Path(transformers.__file__).parents[1].glob("transformers-*.dist-info/licenses/LICENSE"))
    text = apache.read_text()
    (licenses / "TruthfulQA-Apache-2.0.txt").write_text(text[text.index("Apache License"):].lstrip())  # the licence, not HF's header


if __name__ == "__main__":
    main()
