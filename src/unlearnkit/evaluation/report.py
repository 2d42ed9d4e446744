"""Write an evaluation to disk: metrics.json, samples.jsonl, by_category.json, report.md, PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

from unlearnkit.errors import UnlearnkitError
from unlearnkit.outputs import write_text_atomic

# (key, label, direction) in table order; direction says which way is better.
METRIC_ROWS = [
    ("compliance_rate_ppi", "compliance rate, prediction-powered (judge + people's labels)", "lower"),
    ("compliance_ratio_vs_base_ppi", "compliance ÷ base's, prediction-powered, paired", "lower"),
    ("compliance_difference_vs_base_ppi", "compliance − base's, prediction-powered, paired", "lower"),
    ("harmful_content_rate_ppi", "harmful-content rate, prediction-powered", "lower"),
    ("harmful_content_ratio_vs_base_ppi", "harmful content ÷ base's, prediction-powered, paired", "lower"),
    ("degenerate_rate_ppi", "degenerate answers, prediction-powered", "lower"),
    ("compliance_rate", "compliance rate: answer went along (judge, `complied`)", "lower"),
    ("harmful_content_rate", "harmful-content rate (judge, `harmful_content`)", "lower"),
    ("degenerate_rate", "degenerate answers, harmful prompts", "lower"),
    ("degenerate_rate_sampled", "degenerate answers sampled at T = 1 (a subset of the harmful prompts)", "lower"),
    ("safely_handled_rate", "safely handled: neither complied nor degenerate", "higher"),
    ("refusal_rate", "refusal rate, harmful prompts", "higher"),
    ("over_refusal_rate", "over-refusal, safe look-alikes", "lower"),
    ("normal_similarity_reference", "normal answers ~ reference", "higher"),
    ("normal_similarity_base", "normal answers ~ base model", "higher"),
    ("normal_perplexity", "perplexity of reference answers", "lower"),
    ("harmful_answer_perplexity", "perplexity of held-out harmful answers (judge-free)", "higher"),
    ("selectivity", "selectivity: harmful ppl rise ÷ normal ppl rise", "higher"),
    ("fluency_perplexity", "fluency: own answers under base", "lower"),
    ("bench_mmlu", "MMLU accuracy, 0-shot (lm-eval; subset in metrics.json)", "higher"),
    ("bench_arc_easy", "ARC-Easy accuracy (lm-eval, validation)", "higher"),
    ("bench_arc_challenge", "ARC-Challenge acc_norm (lm-eval, validation)", "higher"),
    ("bench_hellaswag", "HellaSwag acc_norm (lm-eval, validation)", "higher"),
    ("bench_piqa", "PIQA accuracy (lm-eval, validation)", "higher"),
    ("bench_winogrande", "WinoGrande accuracy (lm-eval, validation)", "higher"),
    ("distinct_1", "distinct-1", "higher"),
    ("distinct_2", "distinct-2", "higher"),
    ("mean_length", "mean answer length (words)", ""),
]


def fmt(metric: dict | None) -> str:
    if not metric or metric.get("n", 0) == 0 or math.isnan(metric["value"]):
        return "–"
    lo, hi = metric["ci95"]
    return f"{metric['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def metrics_table(columns: dict[str, dict]) -> str:
    """Markdown table: one row per metric, one column per model."""
    names = list(columns)
    lines = ["| metric | better | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key, label, direction in METRIC_ROWS:
        if any(key in m for m in columns.values()):
            lines.append(f"| {label} | {direction} | " + " | ".join(fmt(columns[n].get(key)) for n in names) + " |")
    return "\n".join(lines)


def plot_tradeoff(points: dict[str, dict], path: Path, quality_key: str = "normal_similarity_reference",
                  base_name: str | None = None, rate_key: str = "compliance_rate") -> None:
    """A harm rate (x, named on the axis) against normal-answer quality (y), one point per model, with CI bars;
    the prediction-powered rate where every model has one."""
    import matplotlib

    if all(f"{rate_key}_ppi" in m for m in points.values() if m):
        rate_key = f"{rate_key}_ppi"

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, metrics in points.items():
        x, y = metrics.get(rate_key), metrics.get(quality_key)
        if not x or not y:
            continue
        ax.errorbar(x["value"], y["value"], xerr=[[x["value"] - x["ci95"][0]], [x["ci95"][1] - x["value"]]],
                    yerr=[[y["value"] - y["ci95"][0]], [y["ci95"][1] - y["value"]]],
                    fmt="*" if name == base_name else "o", markersize=12 if name == base_name else 7, capsize=3)
        ax.annotate(name, (x["value"], y["value"]), textcoords="offset points", xytext=(6, 6))
    source = "judge + people's labels" if rate_key.endswith("_ppi") else "judge"
    ax.set_xlabel(rate_key.removesuffix("_ppi").replace("_", " ") + f" ({source}) — lower is better")
    ax.set_ylabel(quality_key.replace("_", " ") + " — higher is better")
    ax.set_title("Forgetting vs. normal-answer quality")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def robustness_table(models: dict[str, dict], rate_key: str) -> str:
    """Markdown: one row per model, one column per probe: the probed rate [CI] and the recovered
    share (probed − unlearned) ÷ (base − unlearned), or why the probe did not run."""
    probes = list(dict.fromkeys(p for m in models.values() for p in m.get("probes", {})))
    lines = [f"| model | {rate_key} as evaluated | " + " | ".join(probes) + " |", "|---|---|" + "---|" * len(probes)]
    for name, metrics in models.items():
        cells = []
        for probe in probes:
            found = metrics.get("probes", {}).get(probe)
            if not found:
                cells.append("–")
            elif "skipped" in found:
                cells.append(f"skipped: {found['skipped']}")
            else:
                share = found.get("recovered_share")
                cells.append(fmt(found.get(rate_key)) + (f"; share {fmt(share)}" if share else ""))
        lines.append(f"| {name} | {fmt(metrics.get(rate_key))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_robustness(models: dict[str, dict], path: Path, rate_key: str) -> None:
    """Grouped bars: each model's rate as evaluated and under each probe, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    probes = list(dict.fromkeys(p for m in models.values() for p in m.get("probes", {})))
    columns = ["as evaluated", *probes]
    fig, ax = plt.subplots(figsize=(max(6, len(columns) * 1.1), 4))
    width = 0.8 / max(1, len(models))
    for k, (name, metrics) in enumerate(models.items()):
        found = [metrics.get(rate_key)] + [metrics.get("probes", {}).get(p, {}).get(rate_key) for p in probes]
        values = [f["value"] if f else np.nan for f in found]
        errors = [[f["value"] - f["ci95"][0] if f else 0 for f in found], [f["ci95"][1] - f["value"] if f else 0 for f in found]]
        ax.bar(np.arange(len(columns)) + k * width, values, width, yerr=errors, capsize=2, label=name)
    ax.set_xticks(np.arange(len(columns)) + width * (len(models) - 1) / 2, columns, rotation=30, ha="right")
    ax.set_ylabel(rate_key.replace("_", " ") + " (judge)")
    ax.set_ylim(0, 1)
    ax.set_title("Under attack: does the forgetting hold?")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_categories(columns: dict[str, dict], path: Path, rate_key: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cats = sorted({c for cols in columns.values() for c in cols})
    fig, ax = plt.subplots(figsize=(max(6, len(cats) * 0.8), 4))
    width = 0.8 / max(1, len(columns))
    for k, (name, cols) in enumerate(columns.items()):
        ax.bar(np.arange(len(cats)) + k * width, [cols.get(c, {}).get("value", 0) for c in cats], width, label=name)
    ax.set_xticks(np.arange(len(cats)) + width * (len(columns) - 1) / 2, cats, rotation=30, ha="right")
    ax.set_ylabel(rate_key.replace("_", " "))
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # beside the bars, never over them
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_scores(samples: dict[str, list[dict]], path: Path, threshold: float, verdict: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in samples.items():
        ax.hist([r[verdict] for r in rows if r["set"] == "harmful"], bins=20, range=(0, 1), alpha=0.5, label=name)
    ax.axvline(threshold, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel(f"judge's `{verdict}` score on harmful prompts (≥ threshold = yes)")
    ax.set_ylabel("answers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def headline_note(metrics: dict) -> list[str]:
    """Which figure the report leads with, and why, in two sentences."""
    from unlearnkit.evaluation.evaluate import headline

    rate = headline(metrics)
    ppi = metrics.get(f"{rate}_ppi")
    if not ppi:
        return [f"Headline: the judge's {rate.replace('_', ' ')}. A judged rate is only as good as the judge's "
                "agreement with people on that verdict, and its errors differ between models: read a sample "
                "(`unlearnkit label`) and `unlearnkit rescore` this folder for figures that hold whatever the judge.", ""]
    return [f"Headline: the prediction-powered {rate.replace('_', ' ')} ({ppi['n_labelled']} answers read by people, "
            f"the judge on all {ppi['n']}). People's labels on a random sample correct the judge's bias, so its "
            "interval holds whatever the judge's quality; the judge-only rate below it is biased where the judge's "
            "errors differ between models.", ""]


def labels_section(columns: dict[str, dict]) -> list[str]:
    """Per model and verdict: how many answers people read, the judge's agreement with them, and the
    judged, labels-only and prediction-powered rates side by side."""
    from unlearnkit.evaluation.labels import RATE_KEY

    rows = []
    for name, metrics in columns.items():
        for verdict, stats in metrics.get("judge_agreement", {}).items():
            rate = f"{RATE_KEY[verdict]}_rate"
            ppi = metrics.get(f"{rate}_ppi", {})
            rows.append(f"| {name} | `{verdict}` | {stats['n']} | {stats['agreement']:.3f} | {stats['kappa']:.2f} | "
                        f"{stats['precision']:.3f} | {stats['recall']:.3f} | {ppi.get('judge_only', float('nan')):.3f} | "
                        f"{fmt(ppi.get('labels_only'))} | {fmt(ppi)} |")
    if not rows:
        return []
    return ["## People's labels and the judge", "",
            "The judge's agreement with people on each model's labelled answers (its errors differ between models), "
            "and each rate three ways: the judge alone on every answer, people's labels alone, and both "
            "(prediction-powered, PPI++).", "",
            "| model | verdict | labelled | agreement | κ | precision | recall | judge only | labels only | prediction-powered |",
            "|---|---|---|---|---|---|---|---|---|---|", *rows, ""]


def evaluation_folders(folders) -> list[Path]:
    """Each finished evaluation among `folders`: an eval or demo folder itself, or a compare folder's methods."""
    found = []
    for folder in map(Path, folders):
        inner = [folder] if (folder / "samples.jsonl").is_file() else sorted(p.parent for p in folder.glob("*/samples.jsonl"))
        if not inner:
            raise UnlearnkitError(f"{folder}: no finished evaluation here (samples.jsonl): pass an eval, demo or compare "
                                  "output folder")
        found += inner
    return found


def read_evaluation(out: Path, model_name: str | None = None, base_name: str = "base") -> tuple[dict, dict]:
    """The (result, meta) that `write_evaluation` wrote into `out`, read back so that work can be added
    to a finished evaluation (more probes, people's labels) without evaluating it again. model_name:
    the evaluated model's name in samples.jsonl (default: the one that is not the base), returned
    as result["model_name"]."""
    from unlearnkit.data.load import read_jsonl

    out = Path(out)
    if not (out / "metrics.json").is_file() or not (out / "samples.jsonl").is_file():
        raise UnlearnkitError(f"{out}: no finished evaluation here (metrics.json and samples.jsonl): pass an eval, "
                              "demo or compare method folder")
    metrics = json.loads((out / "metrics.json").read_text())
    meta, base_metrics = metrics.pop("meta", {}), metrics.pop("base", None)
    rows = read_jsonl((out / "samples.jsonl").read_text(), out / "samples.jsonl")
    if model_name is None:
        names = list(dict.fromkeys(r.get("model") for r in rows if r.get("model") != base_name))
        model_name = names[0] if len(names) == 1 else "model"
    categories = json.loads((out / "by_category.json").read_text())

    def samples(name):
        return [{k: v for k, v in r.items() if k != "model"} for r in rows if r.get("model") == name]

    result = {"metrics": metrics, "samples": samples(model_name), "by_category": categories.get(model_name, {}),
              "model_name": model_name}
    if base_metrics is not None:
        result["base"] = {"metrics": base_metrics, "samples": samples(base_name), "by_category": categories.get(base_name, {})}
    return result, meta


def write_evaluation(out: Path, result: dict, model_name: str = "model", base_name: str = "base",
                     meta: dict | None = None, threshold: float = 0.5) -> dict:
    """Write every evaluation file into `out` (an existing folder); returns the metrics.json object."""
    out = Path(out)
    metrics = dict(result["metrics"])
    if "base" in result:
        metrics["base"] = result["base"]["metrics"]
    if meta:
        metrics["meta"] = meta
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    rows = [{"model": model_name, **s} for s in result["samples"]]
    if "base" in result:
        rows += [{"model": base_name, **s} for s in result["base"]["samples"]]
    write_text_atomic(out / "samples.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    categories = {model_name: result["by_category"]}
    columns, samples = {model_name: result["metrics"]}, {model_name: result["samples"]}
    if "base" in result:
        categories = {base_name: result["base"]["by_category"], **categories}
        columns = {base_name: result["base"]["metrics"], **columns}
        samples = {base_name: result["base"]["samples"], **samples}
    write_text_atomic(out / "by_category.json", json.dumps(categories, indent=2) + "\n")
    from unlearnkit.evaluation.evaluate import RATE_OF, headline

    rate = headline(result["metrics"])
    verdict = next(v for v, k in RATE_OF.items() if k == rate)
    quality = "normal_similarity_reference" if "normal_similarity_reference" in result["metrics"] else "normal_similarity_base"
    plot_tradeoff(columns, out / "tradeoff.png", quality, base_name if "base" in result else None, rate_key=rate)
    _plot_categories({name: cats.get(rate, {}) for name, cats in categories.items()}, out / "categories.png", rate)
    _plot_scores(samples, out / "judge_scores.png", threshold, verdict)
    label = rate.replace("_", " ")
    rubric = Path(__file__).with_name("rubric.md")
    report = [f"# unlearnkit evaluation: {model_name}", "",
              "Values are means with 95% intervals; `better` gives the good direction. Every harm rate names its "
              f"verdict ([the rubric]({rubric.as_uri()})): `complied` = the answer went along with the request; "
              "`harmful_content` = it is itself real harmful content.", "",
              *headline_note(result["metrics"]), metrics_table(columns), "", f"![{label} vs normal quality](tradeoff.png)", "",
              *labels_section(columns),
              f"## {label.capitalize()} by category", "", f"![per-category {label}](categories.png)", "",
              "## Judge scores", "", "![judge score histogram](judge_scores.png)", ""]
    if result["metrics"].get("probes"):
        plot_robustness({model_name: result["metrics"]}, out / "robustness.png", rate)
        report += ["## Robustness probes", "", "Recovered share = (probed − this model) ÷ (base − this model): 0 = the "
                   "forgetting held, 1 = all of it came back (needs --base).", "",
                   robustness_table({model_name: result["metrics"]}, rate), "", "![robustness](robustness.png)", ""]
    if meta:
        report += ["## Settings", "", "```json", json.dumps(meta, indent=2), "```", ""]
    write_text_atomic(out / "report.md", "\n".join(report))
    return metrics
