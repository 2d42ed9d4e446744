"""`unlearnkit compare` (methods side by side) and `unlearnkit negate` (λ sweep without retraining)."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

from unlearnkit.errors import UnlearnkitError

QUALITY = "normal_similarity_reference"


def _eval_sets(ns, forget, retain, seed):
    """Held-out evaluation prompts: the user's files, else a seeded 25% split of forget/retain
    (training then sees only the other 75%)."""
    from unlearnkit.cli import _load_set
    from unlearnkit.data import split_pairs
    from unlearnkit.evaluation.evaluate import EvalSets

    safe = _load_set(ns.safe, "safe", require_response=False) if getattr(ns, "safe", None) else []
    if getattr(ns, "eval_harmful", None) and getattr(ns, "eval_normal", None):
        return forget, retain, EvalSets(_load_set(ns.eval_harmful, "eval-harmful", require_response=False),
                                        _load_set(ns.eval_normal, "eval-normal", require_response=False), safe)
    f, r = split_pairs(forget, seed=seed, validation=0, test=0.25), split_pairs(retain, seed=seed, validation=0, test=0.25)
    return f["train"], r["train"], EvalSets(f["test"], r["test"], safe)


def _columns(results: dict[str, dict]) -> tuple[str, str]:
    """The comparison table as (markdown, csv), one row per model."""
    from unlearnkit.evaluation.report import METRIC_ROWS, fmt

    keys = [k for k, _, _ in METRIC_ROWS if any(k in m for m in results.values())]
    md = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["model"] + [f"{k}{s}" for k in keys for s in ("", "_lo", "_hi")] + ["n_harmful"])
    for name, metrics in results.items():
        md.append(f"| {name} | " + " | ".join(fmt(metrics.get(k)) for k in keys) + " |")
        row = [name]
        for k in keys:
            m = metrics.get(k)
            row += [m["value"], *m["ci95"]] if m else ["", "", ""]
        writer.writerow(row + [metrics["harmful_rate"]["n"]])
    return "\n".join(md), buf.getvalue()


def run_compare(ns) -> int:
    from unlearnkit.cli import _forget_retain, training_settings, train_into
    from unlearnkit.evaluation.evaluate import evaluate
    from unlearnkit.evaluation.generate import GenerationSettings
    from unlearnkit.evaluation.judge import load_judge
    from unlearnkit.evaluation.report import plot_tradeoff, write_evaluation
    from unlearnkit.methods import get_method
    from unlearnkit.models import load_model
    from unlearnkit.outputs import output_dir, partial_path, write_text_atomic

    methods = [m.strip() for m in ns.methods.split(",") if m.strip()]
    for name in methods:
        get_method(name)
    run, fields = training_settings(ns, methods[0])
    if not run.get("out"):
        raise UnlearnkitError("no output folder: pass --out DIR")
    out = Path(run["out"])
    forget, retain = _forget_retain(run)
    if retain is None:
        raise UnlearnkitError("compare needs normal data: pass --retain FILE")
    forget, retain, sets = _eval_sets(ns, forget, retain, fields.get("seed", 0))
    judge = load_judge(ns.judge)
    settings = GenerationSettings(max_new_tokens=ns.max_new_tokens)
    model_name = run.get("model", "default")
    base = load_model(model_name)
    out.mkdir(parents=True, exist_ok=True)
    results, base_metrics = {}, None
    for name in methods:
        folder = out / name
        if (folder / "metrics.json").exists() and not ns.overwrite:  # finished on an earlier run
            saved = json.loads((folder / "metrics.json").read_text())
            results[name], base_metrics = {k: v for k, v in saved.items() if k not in ("base", "meta")}, saved.get("base")
            print(f"{name}: already done, reusing {folder}/metrics.json", flush=True)
            continue
        print(f"{name}: training ...", flush=True)
        with output_dir(folder, overwrite=ns.overwrite, resume=partial_path(folder).exists()) as work:
            model, tokenizer, summary = train_into(work, model_name, forget, retain, {**fields, "method": name},
                                                   resume=True, extra_config={k: run.get(k) for k in ("forget", "retain")})
            result = evaluate(model, tokenizer, sets, judge, settings, base=base)
            write_evaluation(work, result, model_name=name, meta={"train": summary, "judge": ns.judge})
        results[name], base_metrics = result["metrics"], result["base"]["metrics"]
    table = {"base": base_metrics, **results} if base_metrics else results
    markdown, table_csv = _columns(table)
    write_text_atomic(out / "comparison.md", markdown + "\n")
    write_text_atomic(out / "comparison.csv", table_csv)
    quality = QUALITY if QUALITY in next(iter(results.values())) else "normal_similarity_base"
    plot_tradeoff(table, out / "tradeoff.png", quality, base_name="base")
    print(markdown)
    print(f"\ntable: {out}/comparison.md, {out}/comparison.csv; plot: {out}/tradeoff.png")
    return 0


def _task_vector_source(base, harmful_dir: Path):
    """τ from a LoRA adapter folder (in memory) or None for a full model folder (streamed per λ)."""
    if (harmful_dir / "adapter_config.json").exists():
        from peft import PeftModel

        from unlearnkit.negation import lora_task_vector

        return lora_task_vector(PeftModel.from_pretrained(copy.deepcopy(base), str(harmful_dir)))
    if not (harmful_dir / "config.json").exists():
        raise UnlearnkitError(f"{harmful_dir} is neither a LoRA adapter nor a saved model: pass an SKU run's harmful/ folder")
    return None


def run_negate(ns) -> int:
    from unlearnkit.cli import _load_set
    from unlearnkit.data import load_demo
    from unlearnkit.evaluation.evaluate import EvalSets, evaluate
    from unlearnkit.evaluation.generate import GenerationSettings
    from unlearnkit.evaluation.judge import load_judge
    from unlearnkit.models import load_model, model_dir, save_model
    from unlearnkit.negation import apply_task_vector, negate_checkpoints
    from unlearnkit.outputs import check_output_dir, output_dir, write_text_atomic

    try:
        lambdas = [float(x) for x in ns.lambdas.split(",") if x.strip()]
    except ValueError:
        raise UnlearnkitError(f"--lambdas {ns.lambdas}: expected numbers like 0.5,1,2") from None
    if not lambdas or min(lambdas) <= 0:
        raise UnlearnkitError("--lambdas must be positive numbers: θ_new = θ₀ − λ·τ with λ > 0")
    check_output_dir(ns.out, ns.overwrite)
    harmful_dir = Path(ns.harmful)
    if not harmful_dir.is_dir():
        raise UnlearnkitError(f"{harmful_dir}: no such folder: pass the harmful model or adapter (an SKU run's harmful/)")
    harmful_prompts = (_load_set(ns.harmful_prompts, "harmful-prompts", require_response=False) if ns.harmful_prompts
                       else [{"prompt": p["prompt"], "category": p["category"]} for p in load_demo("harmful")])
    normal = _load_set(ns.normal, "normal", require_response=False) if ns.normal else load_demo("normal")
    sets = EvalSets(harmful_prompts, normal)
    judge = load_judge(ns.judge)
    base, tokenizer = load_model(ns.base)
    tau = _task_vector_source(base, harmful_dir)
    settings = GenerationSettings(max_new_tokens=ns.max_new_tokens)

    def negated(lam, work):
        if tau is not None:
            return apply_task_vector(copy.deepcopy(base), tau, lam)
        folder = work / f"lambda_{lam:g}"  # written once; --pick reloads it rather than keeping every λ in memory
        return load_model(folder if folder.exists() else negate_checkpoints(model_dir(ns.base), harmful_dir, folder, lam))[0]

    rows = []
    with output_dir(ns.out, ns.overwrite) as work:
        for lam in lambdas:
            model = negated(lam, work)
            result = evaluate(model, tokenizer, sets, judge, settings, base=(base, tokenizer))
            metrics = result["metrics"]
            rows.append({"lambda": lam, **{k: metrics[k] for k in ("harmful_rate", QUALITY, "normal_perplexity") if k in metrics},
                         "base": {k: result["base"]["metrics"][k] for k in ("harmful_rate", QUALITY) if k in result["base"]["metrics"]}})
            del model  # one negated copy at a time
            print(f"λ={lam:g}: harmful rate {metrics['harmful_rate']['value']:.3f}, "
                  f"similarity {metrics.get(QUALITY, {}).get('value', float('nan')):.3f}", flush=True)
        summary = {"lambdas": rows}
        if ns.pick:
            floor = ns.floor * rows[0]["base"][QUALITY]["value"]
            ok = [r for r in rows if r[QUALITY]["value"] >= floor]
            if not ok:
                raise UnlearnkitError(f"no λ keeps normal similarity ≥ {ns.floor} × base ({floor:.3f}): try smaller λ or a lower --floor")
            best = min(ok, key=lambda r: (r["harmful_rate"]["value"], r["lambda"]))
            summary["picked"] = {"lambda": best["lambda"], "floor": floor}
            save_model(negated(best["lambda"], work), tokenizer, work / "model")
            print(f"picked λ={best['lambda']:g} → {ns.out}/model")
        write_text_atomic(work / "negate.json", json.dumps(summary, indent=2) + "\n")
    return 0
