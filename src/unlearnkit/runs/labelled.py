"""People's labels on finished evaluations: the pieces `rescore`, `eval --labels` and `compare --labels`
use to add prediction-powered figures, and the plan of how many more labels an interval needs
(`label --plan`)."""

from __future__ import annotations

import numpy as np

from unlearnkit.errors import UnlearnkitError

PPI_KEYS = ("_ppi", "judge_agreement")


def threshold_of(meta: dict) -> float:
    return float(meta.get("threshold", meta.get("settings", {}).get("threshold", 0.5)))


def _without_ppi(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not any(k.endswith(s) or k == s for s in PPI_KEYS)}


def label_result(result: dict, labels: dict, threshold: float) -> set[str]:
    """Replace any earlier labelled figures of one evaluation by those of `labels`; the item ids matched."""
    from unlearnkit.evaluation.labels import add_labelled_figures

    result["metrics"] = _without_ppi(result["metrics"])
    if "base" in result:
        result["base"]["metrics"] = _without_ppi(result["base"]["metrics"])
    return add_labelled_figures(result, labels, threshold)


def check_all_matched(labels: dict, matched: set[str]) -> None:
    strangers = [labels[k] for k in labels if k not in matched]
    if strangers:
        raise UnlearnkitError(f"{len(strangers)} labelled answer(s) match no evaluated answer (first: {strangers[0]['where']}): "
                              "they come from another sheet or other answers; label a sheet drawn from these folders "
                              "(unlearnkit label)")


def ppi_line(name: str, metrics: dict) -> str:
    from unlearnkit.evaluation.evaluate import headline
    from unlearnkit.evaluation.report import fmt

    rate = headline(metrics)
    prefix = rate.removesuffix("_rate")
    parts = [f"{name}: {rate.replace('_', ' ')} {fmt(metrics.get(rate + '_ppi'))} prediction-powered "
             f"(judge only {metrics[rate]['value']:.3f})"]
    ratio = metrics.get(f"{prefix}_ratio_vs_base_ppi")
    if ratio:
        parts.append(f"÷ base {fmt(ratio)} paired (judge only {ratio['judge_only']:.3f}), "
                     f"{ratio['n_labelled']} of {ratio['n']} prompts read")
    return "; ".join(parts)


def plan(folders, label_files, half_width: float, prior_corr: float | None = None) -> list[str]:
    """Lines saying, for each evaluated model against its base, how many labelled prompts bring the
    headline ratio's 95% interval to ±half_width (each labelled prompt: both answers read)."""
    from unlearnkit.evaluation.evaluate import RATE_OF, headline
    from unlearnkit.evaluation.labels import item_id, judged_verdict, read_labels
    from unlearnkit.evaluation.ppi import labels_needed
    from unlearnkit.evaluation.report import evaluation_folders, read_evaluation

    if not 0 < half_width < 10:
        raise UnlearnkitError("--half-width must be a positive number such as 0.1")
    labels = read_labels(label_files) if label_files else {}
    if not labels and prior_corr is None:
        raise UnlearnkitError("a plan needs a first batch of labels (--labels FILE) or a stated judge-people correlation "
                              "(--prior-corr, e.g. 0.4)")
    lines = []
    for folder in evaluation_folders(folders):
        result, meta = read_evaluation(folder)
        if "base" not in result:
            lines.append(f"{folder}: no base in this evaluation: a ratio to the base needs `eval --base`")
            continue
        verdict = next(v for v, k in RATE_OF.items() if k == headline(result["metrics"]))
        threshold = threshold_of(meta)
        rows = {n: [s for s in part["samples"] if s["set"] == "harmful"] for n, part in (("model", result), ("base", result["base"]))}
        f = {n: np.array([judged_verdict(r, verdict, threshold) for r in rows[n]]) for n in rows}
        y = {n: [labels.get(item_id(r["prompt"], r["response"]), {}).get(verdict) for r in rows[n]] for n in rows}
        both = [k for k in range(len(rows["model"])) if y["model"][k] is not None and y["base"][k] is not None]
        if both:
            ym, yb = (np.array([y[n][k] for k in both], dtype=float) for n in ("model", "base"))
            fm, fb = f["model"][both], f["base"][both]
        else:  # no labels yet: the judge's own verdicts stand in for the spread
            ym, yb, fm, fb = f["model"], f["base"], f["model"], f["base"]
        if yb.mean() == 0 or fb.mean() == 0:
            lines.append(f"{folder}: the base's {verdict} rate is 0 here: a ratio to it has no meaning")
            continue
        ratio = ym.mean() / yb.mean()
        # the ratio's linearization: its standard error is that of mean(y_lin)
        y_lin = (ym - ratio * yb) / yb.mean()
        f_lin = (fm - fm.mean() / fb.mean() * fb) / fb.mean()
        need = labels_needed(y_lin, f_lin, len(rows["model"]), half_width, None if both else prior_corr)
        now = f"{len(both)} prompts read for both models" if both else "no labels yet"
        if need["labelled_needed"] is None:
            lines.append(f"{folder}: {verdict} ratio ±{half_width:g}: out of reach with {need['total']} prompts even if "
                         f"all were read (labels alone need {need['labels_only_needed']}); evaluate on more prompts ({now})")
        else:
            more = max(0, need["labelled_needed"] - len(both))
            lines.append(f"{folder}: {verdict} ratio ±{half_width:g} needs {need['labelled_needed']} of {need['total']} "
                         f"prompts read for both models: {more} more ({2 * more} answers at most), with judge-people "
                         f"correlation {need['ppi_corr']:.2f}; labels alone would need {need['labels_only_needed']} ({now})")
    return lines
