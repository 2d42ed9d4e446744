"""unlearnkit command line: unlearn, collect, eval, judge-check, demo, methods.

Every command validates its inputs before doing work, writes its output folder atomically, and
turns an UnlearnkitError into one line on stderr and exit code 2 (Ctrl-C: exit 130).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from unlearnkit.errors import UnlearnkitError

# --- shared pieces --------------------------------------------------------------------------------
def _training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-steps", type=int, help="optimizer steps (default 30)")
    p.add_argument("--batch-size", type=int, help="forget examples per step (default 4)")
    p.add_argument("--lr", type=float, help="learning rate (default 2e-4 LoRA, 2e-5 full)")
    p.add_argument("--lambda", dest="negation_scale", type=float, help="negation scale λ for SKU / ft-negate (default 1)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--full", action="store_true", default=None, help="full fine-tuning instead of LoRA")
    p.add_argument("--bf16", action="store_true", default=None,
                   help="bf16 autocast, fp32 master weights: 1.4-1.6x faster steps measured on a CPU with avx512_bf16")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (default 25)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any UnlearnArguments field, e.g. --set sku_pd_weight=0.5 (repeatable)")


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="'default', a local folder or a Hugging Face id (default: default)")
    p.add_argument("--forget", help="harmful prompt/answer pairs (jsonl/json/csv/tsv/parquet or HF dataset id)")
    p.add_argument("--retain", help="normal prompt/answer pairs")
    p.add_argument("--out", help="output folder")
    p.add_argument("--config", help="YAML file with the same keys as these flags (flags override)")
    p.add_argument("--prompt-col", help="prompt column of --forget (default: guessed)")
    p.add_argument("--response-col", help="response column of --forget (default: guessed)")


def _eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", default="default", help="'default' (offline MiniLM probe), 'refusal', or a model folder/id")
    p.add_argument("--threshold", type=float, default=0.5, help="judge score counted as harmful")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--gen-batch-size", type=int, default=64)


def _read_config(path: str | None) -> dict:
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UnlearnkitError(f"{path}: no such config file: check the path") from None
    except yaml.YAMLError as exc:
        raise UnlearnkitError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}): fix the file") from None
    if not isinstance(data, dict):
        raise UnlearnkitError(f"{path}: expected a mapping of option names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _parse_set(items: list[str]) -> dict:
    """KEY=VALUE pairs; values stay text here and coerce_fields gives them their field's type."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UnlearnkitError(f"--set {item}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


_FLAG_TO_FIELD = {"max_steps": "max_steps", "batch_size": "per_device_train_batch_size", "lr": "learning_rate",
                  "negation_scale": "negation_scale", "seed": "seed", "save_steps": "save_steps",
                  "bf16": "bf16"}
_RUN_KEYS = ("model", "forget", "retain", "out", "prompt_col", "response_col")


def training_settings(ns: argparse.Namespace, method: str | None = None, defaults: dict | None = None) -> tuple[dict, dict]:
    """(run settings, UnlearnArguments fields) from defaults < config file < CLI flags < --set."""
    from unlearnkit.methods import UnlearnArguments

    config = _read_config(getattr(ns, "config", None))
    run = {k: config.pop(k) for k in list(config) if k in _RUN_KEYS}
    fields = {"max_steps": 30, "per_device_train_batch_size": 4, **(defaults or {})}
    fields["method"] = method or config.pop("method", None) or getattr(ns, "method", None) or fields.get("method", "sku")
    aliases = {"batch_size": "per_device_train_batch_size", "lr": "learning_rate", "lambda": "negation_scale",
               "full": "full"}
    for key, value in config.items():
        fields[aliases.get(key, key)] = value
    for flag, field in _FLAG_TO_FIELD.items():
        if getattr(ns, flag, None) is not None:
            fields[field] = getattr(ns, flag)
    if getattr(ns, "full", None):
        fields["full"] = True
    overrides = _parse_set(getattr(ns, "set", []))
    fields.update(overrides)
    if str(fields.pop("full", False)).lower() in ("true", "1", "yes"):
        fields["lora"] = False
    user_lr = getattr(ns, "lr", None) is not None or {"lr", "learning_rate"} & (set(config) | set(overrides))
    if not fields.get("lora", True) and not user_lr:
        fields["learning_rate"] = 2e-5  # the default rates are LoRA rates
    known = {f.name for f in dataclasses.fields(UnlearnArguments)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise UnlearnkitError(f"unknown setting(s) {', '.join(unknown)}: see `unlearnkit unlearn --help` or the UnlearnArguments fields")
    fields = coerce_fields(fields)
    for key in _RUN_KEYS:
        if getattr(ns, key, None) is not None:
            run[key] = getattr(ns, key)
    return run, fields


def coerce_fields(fields: dict) -> dict:
    """Give each value its UnlearnArguments field's type: --set values arrive as text, YAML reads
    `5e-4` as text and `no` as False."""
    from unlearnkit.methods import UnlearnArguments

    def kinds(f):
        text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        return {t.strip() for t in text.split("|")}

    types = {f.name: kinds(f) for f in dataclasses.fields(UnlearnArguments)}
    out = {}
    for key, value in fields.items():
        kind = types.get(key, set())
        if isinstance(value, bool) and "bool" not in kind:
            value = "no" if value is False else "yes"
        try:
            if isinstance(value, str) and value.lower() in ("none", "null") and "None" in kind:
                value = None
            elif "str" in kind or value is None:
                pass
            elif "bool" in kind and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            elif "int" in kind and not isinstance(value, bool):
                value = int(value)
            elif "float" in kind and not isinstance(value, bool):
                value = float(value)
        except (TypeError, ValueError):
            raise UnlearnkitError(f"setting {key}={value!r}: expected {' or '.join(sorted(kind))}") from None
        out[key] = value
    return out


def make_arguments(fields: dict, work: Path):
    from unlearnkit.methods import UnlearnArguments, get_method

    get_method(fields["method"])  # unknown method: clear error before any work
    settings = {"disable_tqdm": not sys.stderr.isatty(), "save_strategy": "steps", **coerce_fields(fields)}
    try:
        return UnlearnArguments(output_dir=str(work / "checkpoints"), **settings)
    except (TypeError, ValueError) as exc:
        raise UnlearnkitError(f"bad training setting: {exc}") from None


def _load_set(path, what: str, prompt_col=None, response_col=None, require_response=True) -> list[dict]:
    from unlearnkit.data import load_pairs

    if path is None:
        raise UnlearnkitError(f"no {what} data: pass --{what} FILE")
    return load_pairs(path, prompt_col=prompt_col, response_col=response_col, require_response=require_response)


def latest_checkpoint(work: Path) -> str | None:
    """Newest complete Trainer checkpoint; one cut short by a kill (no trainer_state.json yet) is dropped."""
    import shutil

    found = sorted(work.glob("checkpoints/checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
    for checkpoint in reversed(found):
        if (checkpoint / "trainer_state.json").exists():
            return str(checkpoint)
        shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def train_into(work: Path, model_name: str, forget, retain, fields: dict, resume: bool, extra_config: dict | None = None):
    """Train one method into `work` (model/, config.yaml, train_log.jsonl and, for negation methods,
    harmful/ — the LoRA adapter or full model before negation, so `negate` can rescale λ later).
    Returns (model, tokenizer, summary)."""
    import yaml

    from unlearnkit.methods import unlearn
    from unlearnkit.methods.train import JsonlLogCallback
    from unlearnkit.models import load_model, model_dir, save_model
    from unlearnkit.outputs import write_text_atomic

    args = make_arguments(fields, work)
    config = {"model": model_name, **(extra_config or {}), **fields}
    write_text_atomic(work / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    model, tokenizer = load_model(model_name)
    start = time.time()
    model, trainer = unlearn(model, tokenizer, forget, retain, args,
                             base_dir=None if args.lora else model_dir(model_name),
                             callbacks=[JsonlLogCallback(work / "train_log.jsonl")],
                             resume=(latest_checkpoint(work) or False) if resume else False, harmful_dir=work / "harmful")
    if trainer.is_world_process_zero():
        save_model(model, tokenizer, work / "model")
    trainer.accelerator.wait_for_everyone()  # rank 0 renames the folder only after every rank is done in it
    history = [h for h in trainer.state.log_history if "loss" in h]
    summary = {"method": args.method, "steps": trainer.state.global_step, "seconds": round(time.time() - start, 1),
               "processes": trainer.accelerator.num_processes, "final": history[-1] if history else {}}
    return model, tokenizer, summary


def _forget_retain(run: dict) -> tuple[list[dict], list[dict] | None]:
    forget = _load_set(run.get("forget"), "forget", run.get("prompt_col"), run.get("response_col"))
    retain = _load_set(run["retain"], "retain") if run.get("retain") else None
    return forget, retain


# --- commands -------------------------------------------------------------------------------------
def cmd_unlearn(ns) -> int:
    from unlearnkit.distributed import is_main_process
    from unlearnkit.methods import get_method
    from unlearnkit.outputs import output_dir, write_text_atomic

    run, fields = training_settings(ns)
    if not run.get("out"):
        raise UnlearnkitError("no output folder: pass --out DIR")
    method = get_method(fields["method"])
    forget, retain = _forget_retain(run)
    if retain is None and method.uses_retain:
        raise UnlearnkitError(f"method '{method.name}' needs normal data: pass --retain FILE")
    with output_dir(run["out"], ns.overwrite, ns.resume) as work:
        _, _, summary = train_into(work, run.get("model", "default"), forget, retain, fields, ns.resume,
                                   {k: run.get(k) for k in ("forget", "retain")})
        write_text_atomic(work / "metrics.json", json.dumps({"train": summary}, indent=2) + "\n")
    if is_main_process():  # one line, not one per rank
        print(f"unlearned model written to {run['out']}/model ({summary['steps']} steps, {summary['seconds']} s)")
    return 0


def cmd_collect(ns) -> int:
    from unlearnkit.data import load_demo
    from unlearnkit.evaluation.generate import GenerationSettings
    from unlearnkit.evaluation.judge import load_judge
    from unlearnkit.models import load_model
    from unlearnkit.outputs import check_output_dir, write_text_atomic

    check_output_dir(ns.out, ns.overwrite)
    prompts = _load_set(ns.prompts, "prompts", ns.prompt_col, require_response=False) if ns.prompts else load_demo("harmful")
    judge = load_judge(ns.judge)
    model, tokenizer = load_model(ns.model)
    rows = collect(model, tokenizer, prompts, judge, ns.samples, ns.threshold,
                   GenerationSettings(max_new_tokens=ns.max_new_tokens, do_sample=ns.samples > 1, temperature=0.8,
                                      seed=ns.seed, batch_size=ns.gen_batch_size))
    write_text_atomic(ns.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"kept {len(rows)} of {len(prompts) * ns.samples} sampled answers (judge ≥ {ns.threshold}) in {ns.out}")
    return 0


def collect(model, tokenizer, prompts: list[dict], judge, samples: int, threshold: float, settings) -> list[dict]:
    """The model's own answers to harmful prompts that the judge flags: a forget set from the model itself."""
    from unlearnkit.evaluation.evaluate import sample_and_judge

    return [{"prompt": r["prompt"], "response": r["response"], "category": r.get("category", ""), "judge_score": r["judge_score"]}
            for r in sample_and_judge(model, tokenizer, prompts, judge, samples, settings) if r["judge_score"] >= threshold]


def _eval_sets(ns):
    from unlearnkit.evaluation.evaluate import EvalSets

    harmful = _load_set(ns.harmful, "harmful", ns.prompt_col, require_response=False)
    normal = _load_set(ns.normal, "normal", require_response=False)
    safe = _load_set(ns.safe, "safe", require_response=False) if ns.safe else []
    return EvalSets(harmful, normal, safe)


def cmd_eval(ns) -> int:
    from unlearnkit.evaluation.evaluate import evaluate
    from unlearnkit.evaluation.generate import GenerationSettings
    from unlearnkit.evaluation.judge import load_judge
    from unlearnkit.evaluation.report import metrics_table, write_evaluation
    from unlearnkit.models import load_model
    from unlearnkit.outputs import check_output_dir, output_dir

    check_output_dir(ns.out, ns.overwrite)
    sets = _eval_sets(ns)
    judge = load_judge(ns.judge)
    model, tokenizer = load_model(ns.model)
    base = load_model(ns.base) if ns.base else None
    settings = GenerationSettings(max_new_tokens=ns.max_new_tokens, batch_size=ns.gen_batch_size)
    probes = [p.strip() for p in (ns.probe or "").split(",") if p.strip()]
    from unlearnkit.evaluation.probes import PROBES, run_probes

    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise UnlearnkitError(f"unknown probe {unknown[0]}: choose from {', '.join(PROBES)}")
    relearn = _load_set(ns.relearn_data, "relearn-data") if ns.relearn_data else None
    if "relearn" in probes and relearn is None:
        raise UnlearnkitError("--probe relearn needs harmful prompt/answer pairs: pass --relearn-data FILE")
    result = evaluate(model, tokenizer, sets, judge, settings, base=base, threshold=ns.threshold, use_cache=not ns.no_cache)
    if probes:
        result["metrics"]["probes"] = run_probes(probes, model, tokenizer, [p["prompt"] for p in sets.harmful], judge,
                                                 settings, ns.threshold, relearn)
    meta = {"model": ns.model, "base": ns.base, "judge": ns.judge, "threshold": ns.threshold,
            "generation": dataclasses.asdict(settings), "generated_now": result["generated"]}
    with output_dir(ns.out, ns.overwrite) as work:
        write_evaluation(work, result, model_name=Path(ns.model).name or ns.model, base_name="base", meta=meta,
                         threshold=ns.threshold)
    columns = {"base": result["base"]["metrics"], "model": result["metrics"]} if base else {"model": result["metrics"]}
    print(metrics_table(columns))
    print(f"\nreport written to {ns.out}/report.md")
    return 0


def cmd_judge_check(ns) -> int:
    from unlearnkit.evaluation.evaluate import judge_agreement
    from unlearnkit.evaluation.judge import load_judge
    from unlearnkit.data.load import _read_records  # labelled rows keep their own columns

    records = _read_records(ns.labelled, "train")
    if not records:
        raise UnlearnkitError(f"{ns.labelled}: no rows")
    missing = [c for c in ("prompt", "response", "harmful") if c not in records[0]]
    if missing:
        raise UnlearnkitError(f"{ns.labelled}: missing column(s) {', '.join(missing)}: need prompt, response, harmful (0/1)")
    rows = []
    for i, r in enumerate(records, start=1):
        label = str(r["harmful"]).strip().lower()
        if label not in ("0", "1", "true", "false", "0.0", "1.0"):
            raise UnlearnkitError(f"{ns.labelled}: row {i}: harmful must be 0/1 or true/false, not '{r['harmful']}'")
        rows.append({"prompt": str(r["prompt"]), "response": str(r["response"] or ""), "harmful": label in ("1", "true", "1.0")})
    print(json.dumps(judge_agreement(load_judge(ns.judge), rows, ns.threshold)))
    return 0


def cmd_methods(ns) -> int:
    from unlearnkit.methods import METHODS

    width = max(map(len, METHODS))
    for name, cls in sorted(METHODS.items()):
        print(f"{name:<{width}}  {cls.description}  [{cls.paper}]")
    return 0


def cmd_compare(ns) -> int:
    from unlearnkit.compare import run_compare

    return run_compare(ns)


def cmd_negate(ns) -> int:
    from unlearnkit.compare import run_negate

    return run_negate(ns)


def cmd_demo(ns) -> int:
    from unlearnkit.demo import run_demo

    return run_demo(ns)


# --- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unlearnkit", description="Make a causal LM forget harmful knowledge and measure it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("unlearn", help="run one unlearning method and save the model",
                       description="Train with one method (SKU by default) and write DIR/model, config.yaml, train_log.jsonl, metrics.json.")
    p.add_argument("--method", help="method name (`unlearnkit methods`; default sku)")
    _data_flags(p)
    _training_flags(p)
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("collect", help="sample the model's own answers to harmful prompts and keep the judged-harmful ones")
    p.add_argument("--model", default="default")
    p.add_argument("--prompts", help="harmful prompts (default: the demo set)")
    p.add_argument("--prompt-col")
    p.add_argument("--out", required=True, help="output .jsonl")
    p.add_argument("--samples", type=int, default=1, help="answers per prompt (sampled when > 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    _eval_flags(p)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("eval", help="evaluate a model: harmful rate, refusals, normal-answer quality, report")
    p.add_argument("--model", required=True)
    p.add_argument("--base", help="original model, for side-by-side columns")
    p.add_argument("--harmful", required=True, help="harmful prompts")
    p.add_argument("--normal", required=True, help="normal prompts (with reference answers if available)")
    p.add_argument("--safe", help="safe prompts that look dangerous (over-refusal)")
    p.add_argument("--prompt-col")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-cache", action="store_true", help="generate afresh instead of reusing cached answers")
    p.add_argument("--probe", help="comma-separated robustness probes: relearn, quantize, jailbreak")
    p.add_argument("--relearn-data", help="harmful prompt/answer pairs the relearn probe fine-tunes on (k = 8)")
    _eval_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("judge-check", help="agreement of a judge with labelled data (prompt, response, harmful)")
    p.add_argument("--judge", default="default")
    p.add_argument("--labelled", required=True)
    p.add_argument("--threshold", type=float, default=0.5)
    p.set_defaults(func=cmd_judge_check)

    p = sub.add_parser("demo", help="collect → SKU → evaluate on the embedded default model and the demo data")
    p.add_argument("--out", default="unlearnkit-demo", help="output folder (default: unlearnkit-demo)")
    p.add_argument("--forget-source", choices=("demo", "collect", "both"), default="collect",
                   help="harmful answers to learn: our written demo answers, the model's own judged-harmful answers, or both")
    _training_flags(p)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("compare", help="run several methods with the same data, seed and budget; one table and plot")
    p.add_argument("--methods", required=True, help="comma-separated, e.g. sku,llmu,ga,npo,emu")
    _data_flags(p)
    p.add_argument("--eval-harmful", help="held-out harmful prompts (default: 25%% of --forget, held out from training)")
    p.add_argument("--eval-normal", help="held-out normal prompts (default: 25%% of --retain)")
    p.add_argument("--safe", help="safe look-alike prompts for over-refusal")
    _training_flags(p)
    _eval_flags(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("negate", help="rescale a task vector θ₀ − λ·τ for several λ without retraining, evaluate each")
    p.add_argument("--base", default="default", help="the original model θ₀")
    p.add_argument("--harmful", required=True, help="harmful model folder or LoRA adapter (an SKU run's harmful/)")
    p.add_argument("--lambdas", default="0.5,1,2,4")
    p.add_argument("--out", required=True)
    p.add_argument("--pick", action="store_true", help="save the λ with the lowest harmful rate above the similarity floor as DIR/model")
    p.add_argument("--floor", type=float, default=0.95, help="with --pick: keep normal similarity ≥ floor × base's")
    p.add_argument("--harmful-prompts", help="harmful prompts to evaluate (default: the demo set)")
    p.add_argument("--normal", help="normal prompts with references (default: the demo set)")
    p.add_argument("--overwrite", action="store_true")
    _eval_flags(p)
    p.set_defaults(func=cmd_negate)

    p = sub.add_parser("methods", help="list the registered methods")
    p.set_defaults(func=cmd_methods)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight loading/saving bars; the Trainer keeps its own progress
    try:
        return ns.func(ns)
    except UnlearnkitError as exc:
        print(f"unlearnkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unlearnkit: interrupted; finished checkpoints are kept — rerun with --resume to continue", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC
            print(f"unlearnkit: error: disk full ({exc.filename or ''}): free space or choose another --out; rerun with --resume", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
