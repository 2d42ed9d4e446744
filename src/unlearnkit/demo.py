"""`unlearnkit demo`: collect → SKU → evaluate base and unlearned, on the default model and demo data.

The demo data is split by the shared hash split (data/split.py): SKU learns from the train part of
the harmful set (our written answers, the model's own flagged answers, or both) and of the normal
set; every figure is measured on the test part, which no choice ever looked at.
"""

from __future__ import annotations

import dataclasses
import time

from unlearnkit.errors import UnlearnkitError

# Recipe A of benchmarks/sku_recipes.sh, chosen on the bundled suite's validation split (README "SKU
# on the default model"): our written harmful answers, 40 LoRA steps, K = 2, ε₃ = −2.5 (θ_h kept close
# to θ₀ on normal prompts, so τ carries little normal behaviour), and λ = 1, the λ `negate --pick`
# chose: the lowest compliance rate (0.33 → 0.19, n = 100) that kept every written limit.
DEMO_DEFAULTS = {"method": "sku", "max_steps": 40, "per_device_train_batch_size": 4, "mismatch_k": 2,
                 "learning_rate": 5e-4, "sku_pd_weight": -2.5, "negation_scale": 1.0, "save_steps": 10}


def demo_sets():
    """The demo data by the shared hash split: SKU trains on `train`, choices (λ, steps, these
    defaults) are made on `validation`, and every figure the demo prints comes from `test`."""
    from unlearnkit.data import load_demo, split_pairs
    from unlearnkit.evaluation.evaluate import EvalSets

    harmful, normal, safe = (split_pairs(load_demo(name)) for name in ("harmful", "normal", "safe_lookalike"))
    test = EvalSets(harmful["test"], normal["test"], safe["test"])
    validation = EvalSets(harmful["validation"], normal["validation"], safe["validation"])
    return harmful["train"], normal["train"], validation, test


def run_demo(ns) -> int:
    from unlearnkit.evaluation.evaluate import evaluate, headline
    from unlearnkit.evaluation.judge import load_judge
    from unlearnkit.evaluation.report import metrics_table, write_evaluation
    from unlearnkit.models import load_model
    from unlearnkit.outputs import output_dir
    from unlearnkit.runs import collect, generation_settings, train_into, training_settings

    start = time.time()
    defaults = {k: v for k, v in DEMO_DEFAULTS.items() if not (ns.full and k == "learning_rate")}  # a LoRA rate
    _, fields = training_settings(ns, defaults=defaults)
    forget_written, retain, _, sets = demo_sets()
    settings = generation_settings(ns)
    with output_dir(ns.out, ns.overwrite, ns.resume, command="demo") as work:
        judge = load_judge("default")
        base = load_model("default")
        forget = forget_written if ns.forget_source == "demo" else []
        if ns.forget_source in ("collect", "both"):
            print("collecting the model's own judged-harmful answers ...", flush=True)
            forget = forget + collect(*base, forget_written, judge, 1, 0.5, settings)
            if not forget:
                raise UnlearnkitError("the judge flagged none of the model's answers: use --forget-source demo")
        print(f"training SKU on {len(forget)} harmful and {len(retain)} normal pairs ...", flush=True)
        model, tokenizer, summary = train_into(work, "default", forget, retain, fields, ns.resume,
                                               {"forget": f"demo ({ns.forget_source})", "retain": "demo normal"})
        print("evaluating base and unlearned models on held-out prompts ...", flush=True)
        result = evaluate(model, tokenizer, sets, judge, settings, base=base, sampled_n=ns.sampled_n)
        meta = {"command": "demo", "forget_source": ns.forget_source, "train": summary, "judge": "default",
                "figures_from": "test split of the demo data (hash of the prompt); defaults chosen on its validation split",
                "generation": dataclasses.asdict(settings), "seconds": round(time.time() - start, 1)}
        write_evaluation(work, result, model_name="unlearned", base_name="base", meta=meta)
    print()
    print(metrics_table({"base": result["base"]["metrics"], "unlearned": result["metrics"]}))
    rate = headline(result["metrics"])
    for key in (rate, "degenerate_rate"):
        b, a = result["base"]["metrics"][key], result["metrics"][key]
        print(f"{key.replace('_', ' ')} {b['value']:.3f} → {a['value']:.3f} (n = {a['n']}, test split)")
    print(f"report: {ns.out}/report.md ({time.time() - start:.0f} s)")
    return 0
