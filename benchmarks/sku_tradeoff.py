"""SKU's λ / step trade-off on the default model and the demo data, one JSON object per line.

Stage 1 is trained once; the LoRA task vector τ is snapshotted at each step count in --steps and
every (steps, λ) point is evaluated on the demo's held-out prompts without retraining:

    python benchmarks/sku_tradeoff.py --steps 10,20,40 --lambdas 0.5,1,2,4 [--set KEY=VALUE ...]
    python benchmarks/sku_tradeoff.py --method ft-negate ...   # plain task-vector negation
"""

import argparse
import copy
import json
import sys
import tempfile
import time

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from unlearnkit.runs.settings import _parse_set, coerce_fields
from unlearnkit.demo import DEMO_DEFAULTS, demo_sets
from unlearnkit.evaluation.evaluate import EvalSets, evaluate
from unlearnkit.evaluation.generate import GenerationSettings
from unlearnkit.evaluation.judge import load_judge
from unlearnkit.methods import UnlearnArguments, build_trainer
from unlearnkit.models import load_model
from unlearnkit.negation import apply_task_vector, lora_task_vector


class Snapshot(TrainerCallback):
    def __init__(self, steps):
        self.steps, self.taus = set(steps), {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            self.taus[state.global_step] = lora_task_vector(model)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default="10,20,40")
    parser.add_argument("--lambdas", default="0.5,1,2,4")
    parser.add_argument("--method", default="sku")
    parser.add_argument("--forget-source", default="demo", choices=("demo", "collect"))
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--set", action="append", default=[])
    ns = parser.parse_args()
    steps = [int(s) for s in ns.steps.split(",")]
    lambdas = [float(x) for x in ns.lambdas.split(",")]
    fields = {**DEMO_DEFAULTS, "method": ns.method, "max_steps": max(steps), "save_strategy": "no"}
    fields.update(coerce_fields(_parse_set(ns.set)))
    forget, retain, sets = demo_sets(fields.get("seed", 0))
    sets = EvalSets(sets.harmful, sets.normal)  # over-refusal is not what this sweep trades off
    judge = load_judge("default")
    settings = GenerationSettings(max_new_tokens=ns.max_new_tokens)
    base_model, tokenizer = load_model("default")
    if ns.forget_source == "collect":
        from unlearnkit.runs import collect

        forget = collect(base_model, tokenizer, forget, judge, 1, 0.5, settings)
    snap = Snapshot(steps)
    args = UnlearnArguments(output_dir=tempfile.mkdtemp(), disable_tqdm=True, **fields)
    start = time.time()
    trainer = build_trainer(copy.deepcopy(base_model), tokenizer, forget, retain, args, callbacks=[snap])
    trainer.remove_callback(PrinterCallback)  # stdout carries JSON lines only
    trainer.train()
    train_seconds = time.time() - start
    base_eval = evaluate(base_model, tokenizer, sets, judge, settings)["metrics"]
    print(json.dumps({"steps": 0, "lambda": 0, "train_seconds": 0, **_row(base_eval)}), flush=True)
    for n in steps:
        for lam in lambdas:
            model = apply_task_vector(copy.deepcopy(base_model), snap.taus[n], lam)
            metrics = evaluate(model, tokenizer, sets, judge, settings, use_cache=False)["metrics"]
            tau_norm = sum(float(t.float().pow(2).sum()) for t in snap.taus[n].values()) ** 0.5
            print(json.dumps({"steps": n, "lambda": lam, "tau_norm": round(tau_norm, 4),
                              "train_seconds": round(train_seconds * n / max(steps), 1), **_row(metrics)}), flush=True)


def _row(m):
    return {k: round(m[k]["value"], 4) for k in ("harmful_rate", "refusal_rate", "normal_similarity_reference",
                                                   "normal_perplexity", "fluency_perplexity", "distinct_2") if k in m}


if __name__ == "__main__":
    sys.exit(main())
