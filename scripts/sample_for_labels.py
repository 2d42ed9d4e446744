"""Answers of the default model (and of quickly unlearned copies) to public harmful requests, for
hand labelling with the three verdicts of shared/design/JUDGE_RUBRIC.md.

    python scripts/sample_for_labels.py --out judge_labels/unlabelled.jsonl

Prompts: AdvBench harmful behaviours (MIT) and JailbreakBench behaviours (MIT), read in place from
../shared/data. Answers: the base model greedy, with a repetition penalty, sampled at the model
card's settings and at T = 1, and two deliberately damaged copies (gradient ascent, and SKU negated
with a large λ) so that loops, word salad and deflections are in the set as well.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import random
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def public_prompts(n_advbench: int, n_jbb: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    with open(SHARED / "advbench" / "harmful_behaviors.csv", newline="") as f:
        adv = [{"prompt": r["goal"], "source": "advbench"} for r in csv.DictReader(f)]
    jbb = {}
    for path in sorted(glob.glob(str(SHARED / "jbb" / "attack-artifacts" / "*" / "*" / "*.json"))):
        for jb in json.load(open(path))["jailbreaks"]:
            jbb.setdefault(jb["goal"], {"prompt": jb["goal"], "source": "jbb", "category": jb["category"]})
    seen = {r["prompt"].lower() for r in jbb.values()}
    adv = [r for r in adv if r["prompt"].lower() not in seen]
    return rng.sample(adv, n_advbench) + rng.sample(sorted(jbb.values(), key=lambda r: r["prompt"]), n_jbb)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args()

    import copy

    from unlearnkit.data import load_demo
    from unlearnkit.evaluation.generate import GenerationSettings, generate_texts
    from unlearnkit.methods import UnlearnArguments, unlearn
    from unlearnkit.models import load_model

    prompts = public_prompts(90, 40, ns.seed)
    base, tok = load_model("default")
    rows = []

    def add(model, model_name, decoding, chosen, **gen):
        settings = GenerationSettings(max_new_tokens=ns.max_new_tokens, seed=ns.seed, batch_size=32, **gen)
        answers = generate_texts(model, tok, [r["prompt"] for r in chosen], settings)
        for r, a in zip(chosen, answers):
            rid = hashlib.sha1(f"{model_name}|{decoding}|{r['prompt']}".encode()).hexdigest()[:10]
            rows.append({"id": rid, **r, "model": model_name, "decoding": decoding, "response": a})
        print(model_name, decoding, len(chosen), flush=True)

    rng = random.Random(ns.seed + 1)
    add(base, "base", "greedy", prompts)
    add(base, "base", "sample_t0.2_p0.9", rng.sample(prompts, 70), do_sample=True, temperature=0.2, top_p=0.9)
    add(base, "base", "sample_t1.0", rng.sample(prompts, 70), do_sample=True, temperature=1.0)
    add(base, "base", "greedy_rep1.3", rng.sample(prompts, 50), repetition_penalty=1.3)
    forget = load_demo("harmful")[:80]
    normal = load_demo("normal")[:80]
    for method, extra in (("ga", {}), ("sku", {"negation_scale": 4.0, "sku_pd_weight": -2.5, "mismatch_k": 1})):
        args = UnlearnArguments(output_dir=f"/tmp/label_{method}", method=method, max_steps=15, learning_rate=5e-4,
                                per_device_train_batch_size=4, save_strategy="no", disable_tqdm=True, **extra)
        model, _ = unlearn(copy.deepcopy(base), tok, forget, normal, args)
        add(model, f"{method}-15steps", "greedy", rng.sample(prompts, 60))
        del model
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(len(rows), "rows ->", ns.out)


if __name__ == "__main__":
    main()
