"""Prediction-powered rates: the judge's verdict on every answer, corrected by people's labels on a random few.

A judged rate alone is biased by the judge's errors, and here those errors differ between models (an
unlearned model's answers fool it in other ways than the base's), so a judged ratio can flatter a
method. Prediction-powered inference (Angelopoulos et al., Science 2023; PPI++, Angelopoulos, Duchi &
Zrnic 2023) uses a uniformly random labelled subset to measure and remove that bias:

    rate = λ · mean(judge, unlabelled answers) + mean(label − λ · judge, labelled answers)

with λ tuned on the data (λ = 0 is the labels alone, λ = 1 plain PPI). Its 95% interval holds
whatever the judge's quality; a good judge only makes it narrower. Every estimate is computed by
`ppi-python`, the authors' package; this module shapes our answers into its arrays. The labelled
answers must be a uniformly random subset of the evaluated ones (what `unlearnkit label` draws).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from unlearnkit.errors import UnlearnkitError

ALPHA = 0.05
# Below this many labels a normal-approximation interval is not to be trusted.
MIN_LABELLED = 20
BOOT_RESAMPLES = 2000


def _ppi():
    try:
        import ppi_py
    except ImportError:
        raise UnlearnkitError("prediction-powered rates need ppi-python: pip install ppi-python "
                              "(scripts/setup.sh installs it)") from None
    return ppi_py


@contextlib.contextmanager
def _seeded(seed: int):
    """ppi-python's bootstrap draws from numpy's global generator: fix it, then give it back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _clip(lo: float, hi: float, low: float = 0.0, high: float = 1.0) -> list[float]:
    """An interval for a quantity that lives in [low, high] stays valid when cut to that range."""
    return [float(max(low, lo)), float(min(high, hi))]


def ppi_rate(labels, judged_labelled, judged_unlabelled) -> dict:
    """One rate: PPI++ estimate and 95% interval, beside the judge-only and labels-only figures.
    labels / judged_labelled: 0/1 per labelled answer (people's verdict, the judge's verdict);
    judged_unlabelled: the judge's 0/1 on every other evaluated answer."""
    ppi_py = _ppi()
    y, f, fu = (np.asarray(v, dtype=float) for v in (labels, judged_labelled, judged_unlabelled))
    n, total = len(y), len(y) + len(fu)
    classical_lo, classical_hi = ppi_py.classical_mean_ci(y, alpha=ALPHA)
    labels_only = {"value": float(y.mean()), "ci95": _clip(classical_lo, classical_hi), "n": n}
    judge_only = float(np.concatenate([f, fu]).mean())
    if np.all(y == y[0]):
        # people said the same of every answer read (say no harmful content in 100): a normal-approximation
        # interval would be [0, 0], which no sample of 100 can show; the exact binomial interval can
        from scipy.stats import binomtest

        exact = binomtest(int(y.sum()), n).proportion_ci(confidence_level=1 - ALPHA, method="exact")
        labels_only["ci95"] = [float(exact.low), float(exact.high)]
        return {**labels_only, "n": total, "n_labelled": n, "judge_only": judge_only, "labels_only": labels_only,
                "interval": "exact binomial on the labels: every label was the same"}
    if len(fu) == 0:  # every answer was read: the labels are the rate
        return {**labels_only, "n": total, "n_labelled": n, "judge_only": judge_only,
                "labels_only": labels_only}
    lam = _lam(f, fu)
    value = float(np.squeeze(ppi_py.ppi_mean_pointestimate(y, f, fu, lam=lam)))
    lo, hi = ppi_py.ppi_mean_ci(y, f, fu, alpha=ALPHA, lam=lam)
    return {"value": value, "ci95": _clip(float(np.squeeze(lo)), float(np.squeeze(hi))), "n": total, "n_labelled": n,
            "judge_only": judge_only, "labels_only": labels_only}


def _lam(*judged) -> float | None:
    """None: let ppi-python tune λ. A judge that says the same on every answer carries no information
    (and its tuning would divide by a zero variance): λ = 0, the labels alone."""
    every = np.concatenate([np.asarray(j, dtype=float).reshape(len(j), -1) for j in judged])
    return 0.0 if np.any(every.std(0) == 0) else None


def paired_vs_base(labelled: dict, unlabelled: dict, seed: int = 0) -> dict:
    """Model against base on the same prompts. labelled: arrays y_model, y_base, f_model, f_base over the
    prompts whose answers are labelled for both; unlabelled: f_model, f_base over the other prompts.
    Returns the paired difference (model − base) by ppi_mean_ci and the ratio (model ÷ base) by the
    prediction-powered bootstrap (ppboot), each resampling prompts, never answers alone."""
    ppi_py = _ppi()
    ym, yb, fm, fb = (np.asarray(labelled[k], dtype=float) for k in ("y_model", "y_base", "f_model", "f_base"))
    um, ub = (np.asarray(unlabelled[k], dtype=float) for k in ("f_model", "f_base"))
    if not (len(ym) == len(yb) == len(fm) == len(fb)) or len(um) != len(ub):
        raise UnlearnkitError("a paired figure needs each prompt's answer from both models: these are unpaired")
    n, total = len(ym), len(ym) + len(um)
    if np.all(ym == yb):  # every labelled pair agrees: the difference is bounded by the share of pairs that differ
        from scipy.stats import binomtest

        high = float(binomtest(0, n).proportion_ci(confidence_level=1 - ALPHA, method="exact").high)
        difference = {"value": 0.0, "ci95": [-high, high],
                      "interval": "exact binomial bound on the share of discordant pairs: none among those read"}
    elif len(um) == 0:  # all read: the labels' own paired figures
        lo, hi = ppi_py.classical_mean_ci(ym - yb, alpha=ALPHA)
        difference = {"value": float((ym - yb).mean()), "ci95": _clip(float(lo), float(hi), -1, 1)}
    else:
        lam = _lam(fm - fb, um - ub)
        lo, hi = ppi_py.ppi_mean_ci(ym - yb, fm - fb, um - ub, alpha=ALPHA, lam=lam)
        difference = {"value": float(np.squeeze(ppi_py.ppi_mean_pointestimate(ym - yb, fm - fb, um - ub, lam=lam))),
                      "ci95": _clip(float(np.squeeze(lo)), float(np.squeeze(hi)), -1, 1)}
    difference.update(n=total, n_labelled=n, paired=True)

    def ratio(rows):
        base = rows[:, 1].mean()
        return rows[:, 0].mean() / base if base > 0 else np.nan

    y, f = np.stack([ym, yb], 1), np.stack([fm, fb], 1)
    u = np.stack([um, ub], 1)
    if len(u) == 0:  # all read: the classical paired bootstrap over prompts
        from ppi_py.utils import bootstrap

        value = ratio(y)
        with _seeded(seed), np.errstate(invalid="ignore", divide="ignore"):
            boots = bootstrap([y], ratio, n_resamples=BOOT_RESAMPLES)
        lo, hi = np.nanpercentile(boots, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    else:
        lam = _lam(f, u)
        rates = ppi_py.ppi_mean_pointestimate(y, f, u, lam=lam)  # PPI++ means of both columns, λ tuned over both
        value = rates[0] / rates[1] if rates[1] > 0 else np.nan
        with _seeded(seed), np.errstate(invalid="ignore", divide="ignore"):
            lo, hi = ppi_py.ppboot(ratio, y, f, u, lam=lam, n_resamples=BOOT_RESAMPLES, alpha=ALPHA)
    ratio_figure = {"value": float(value), "ci95": [float(max(0.0, lo)), float(hi)], "n": total, "n_labelled": n,
                    "paired": True}
    if not (math.isfinite(ratio_figure["value"]) and all(map(math.isfinite, ratio_figure["ci95"]))):
        ratio_figure["undefined"] = "the base's rate is 0 on the labelled prompts: a ratio to it has no meaning"
    return {"difference": difference, "ratio": ratio_figure}


def labels_needed(y_lin, f_lin, total: int, half_width: float, prior_corr: float | None = None) -> dict:
    """How many labelled prompts bring a 95% interval to ±half_width (PPI power analysis).

    y_lin / f_lin: the quantity's per-prompt values from the labels and from the judge (for a ratio,
    its linearization), so that sd(y_lin) / sqrt(n) is the labels-only standard error. ppi-python's
    ppi_power turns the correlation ρ of the two into the labelled share of the `total` evaluated
    prompts that reaches the same effective sample size (Broska, Howes & van Loon 2024).
    prior_corr: ρ stated in advance, for a plan before any label exists (sd then from the judge)."""
    import warnings

    ppi_py = _ppi()
    y, f = np.asarray(y_lin, dtype=float), np.asarray(f_lin, dtype=float)
    sd = float(np.std(y if len(y) > 1 else f, ddof=1))
    if prior_corr is not None:
        rho = float(prior_corr)
    elif len(y) > 2 and np.std(y) > 0 and np.std(f) > 0:
        rho = float(np.corrcoef(y, f)[0, 1])
    else:
        rho = 0.0
    rho = float(np.clip(rho, -0.999, 0.999))
    effective_n = (1.959963984540054 * sd / half_width) ** 2  # labels alone would need this many prompts
    needed = None
    if effective_n <= total:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            needed = int(ppi_py.ppi_power(rho, cost_X=0, cost_Y=1, cost_Yhat=1e-9, effective_n=effective_n,
                                          n_max=total)["n"])
    return {"labelled_needed": needed, "labels_only_needed": math.ceil(effective_n), "ppi_corr": rho, "sd": sd,
            "total": total, "half_width": half_width}
