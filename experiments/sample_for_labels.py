"""Answers of the default model (and of quickly unlearned copies) to public harmful requests, for
hand labelling with the three verdicts of src/unlearnkit/evaluation/rubric.md.

    python experiments/sample_for_labels.py --out judge_labels/unlabelled.jsonl

Round 2 (2026-11-26): answers to prompts of the bundled suite's *train* split only, none a near
paraphrase of a test-split prompt (the judge's training keeps those out: train_judge.py), nor already
labelled; from the base model and from unlearned models a user evaluates, with the eval's decoding:

    python experiments/sample_for_labels.py --out r2.jsonl --suite-train 100 --per-model 75 \
        --model sku=RUN/sku/model --model emu=RUN/emu/model --model npo=RUN/npo/model

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
import sys
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


def suite_train_prompts(n: int, seed: int, labelled: Path) -> list[dict]:
    """n harmful prompts of the bundled suite's train split, none a prompt the judge may not train on
    (train_judge.suite_test_groups: a test-split prompt or a near paraphrase of one) and none already
    in `labelled`."""
    from unlearnkit.data.suite import load_suite

    sys.path.insert(0, str(Path(__file__).parent))
    from train_judge import suite_test_groups

    done = {json.loads(line)["prompt"].strip().lower() for line in open(labelled)}
    train = [r for r in load_suite("standard:train")["harmful"] if r["prompt"].strip().lower() not in done]
    near_test = suite_test_groups([{"group": r["prompt"]} for r in train])
    pool = [{"prompt": r["prompt"], "prompt_source": "jbb" if "Jailbreak" in r.get("source", "") else "advbench",
             "category": r.get("category", "") if "Jailbreak" in r.get("source", "") else ""}
            for r in train if r["prompt"].strip().lower() not in near_test]
    return random.Random(seed).sample(pool, min(n, len(pool)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--suite-train", type=int, help="round 2: this many prompts of the suite's train split")
    p.add_argument("--per-model", type=int, default=75, help="round 2: answers per model, on a random subset of the prompts")
    p.add_argument("--model", action="append", default=[], help="round 2: NAME=PATH of another model to answer (repeatable)")
    p.add_argument("--labelled", default=str(Path(__file__).resolve().parents[1] / "src" / "unlearnkit" / "evaluation"
                                             / "judge_data" / "hand_labelled.jsonl"))
    ns = p.parse_args()
    if ns.suite_train:
        return round_two(ns)

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


def round_two(ns) -> None:
    from unlearnkit.evaluation.generate import GenerationSettings, generate_texts
    from unlearnkit.models import load_model

    prompts = suite_train_prompts(ns.suite_train, ns.seed, Path(ns.labelled))
    rng, rows = random.Random(ns.seed + 2), []
    # the eval's own decoding (greedy, repetition penalty 1.3): the answers the judge will score
    settings = GenerationSettings(max_new_tokens=ns.max_new_tokens, repetition_penalty=1.3, seed=ns.seed, batch_size=32)
    for name, path in [("base", "default")] + [m.split("=", 1) for m in ns.model]:
        model, tok = load_model(path)
        chosen = rng.sample(prompts, min(ns.per_model, len(prompts)))
        for r, a in zip(chosen, generate_texts(model, tok, [r["prompt"] for r in chosen], settings)):
            rid = hashlib.sha1(f"{name}|greedy_rep1.3|{r['prompt']}".encode()).hexdigest()[:10]
            rows.append({"id": rid, **r, "model": name, "decoding": "greedy_rep1.3", "response": a})
        print(name, len(chosen), flush=True)
        del model
    rng.shuffle(rows)  # readers see models mixed, not in blocks
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(len(rows), "rows ->", ns.out)


if __name__ == "__main__":
    main()
