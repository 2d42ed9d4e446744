"""Train the default offline judge (two logistic heads: `complied`, `harmful_content`) and measure it
by folds grouped by behaviour. Deterministic: the same data gives bit-identical weights.

Data, read in place (never copied into the package):
- ../shared/data/harmbench_human_dev: 296 real completions, human majority `harmful` (HarmBench's
  rule = our `harmful_content`). A harmful completion also complied; a non-harmful one says nothing
  about compliance, so it trains only the content head.
- our hand-labelled answers of the default and unlearned models (shipped with the package,
  judge_data/hand_labelled.jsonl): all three rubric labels.
- ../shared/data/jbb: JailbreakBench responses with a Llama-3-70B verdict (`jailbroken`), a model's
  label, weighted by a cross-validated choice. The 937 it called jailbroken were also read by us
  against the rubric (experiments/data/jbb_read_labels.jsonl, labels only): whether those rows train with
  our reading (at full weight) or with the 70B verdict is a cross-validated choice too.
- contrast rows built from public text (label 0 for both): each request paired with an unrelated
  AlpacaEval answer and with word salad, so off-topic answers and gibberish are not called harmful.

Measured: `harmful_content` by 5 folds of harmbench_human_dev grouped by behaviour (each fold's
behaviours are unseen in training; rows of any source whose request is the same or a near paraphrase,
MiniLM cosine >= NEAR, of a held-out behaviour are excluded too);
`complied` by 5 folds of our hand labels grouped by prompt. The final weights are fitted on all rows.

    python experiments/train_judge.py                              # the default judge (MiniLM features)
    python experiments/train_judge.py --features minilm+lm-states   # the `lm-probe` judge
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from unlearnkit.data.load import read_jsonl
from unlearnkit.evaluation.embeddings import embed
from unlearnkit.evaluation.judge import FEATURE_KINDS, LM_PROBE_LAYERS, LM_PROBE_WEIGHTS, VERDICTS, WEIGHTS, probe_features
from unlearnkit.evaluation.metrics import agreement_stats

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HAND = ROOT / "src" / "unlearnkit" / "evaluation" / "judge_data" / "hand_labelled.jsonl"
JBB_READ = ROOT / "experiments" / "data" / "jbb_read_labels.jsonl"
HARMBENCH_READ = ROOT / "experiments" / "data" / "harmbench_dev_read_labels.jsonl"
FOLDS = 5
NEAR = 0.8  # JBB and AdvBench restate many HarmBench behaviours in other words


def fold_of(group: str) -> int:
    return int.from_bytes(hashlib.sha256(f"fold\x00{group.strip().lower()}".encode()).digest()[:8], "big") % FOLDS


def harmbench(root: Path) -> list[dict]:
    rows, path = [], root / "harmbench_human_dev" / "labelled.jsonl"
    for r in read_jsonl(path.read_text(), path):
        rows.append({"prompt": r["prompt"], "response": r["response"], "group": r["behavior"], "source": "harmbench",
                     "behavior_id": r["behavior_id"],
                     "category": r["functional_category"], "harmful_content": int(r["harmful"]),
                     "complied": 1 if r["harmful"] else None})
    return rows


def jailbreakbench(root: Path, read_labels: Path) -> list[dict]:
    ours = {}
    if read_labels.exists():
        for r in read_jsonl(read_labels.read_text(), read_labels):
            ours[r["file"], r["index"]] = r
    artifacts = root / "jbb" / "attack-artifacts"
    rows = []
    for file in sorted(glob.glob(str(artifacts / "*" / "*" / "*.json"))):
        rel = Path(file).relative_to(artifacts).as_posix()
        for index, jb in enumerate(json.load(open(file))["jailbreaks"]):
            if jb["response"]:
                read = ours.get((rel, index))
                label = int(bool(jb["jailbroken"]))
                rows.append({"prompt": jb["goal"], "response": jb["response"], "group": jb["goal"], "source": "jbb",
                             "category": jb["category"], "harmful_content": label, "complied": label,
                             "read": {v: read[v] for v in VERDICTS} if read else None})
    return rows


def reading_vs_humans(humans: list[dict], read_labels: Path) -> dict | None:
    """How our blind reading of harmbench_human_dev agrees with HarmBench's human majority: a reader's
    ceiling for any judge trained on labels read by the same rule (not training data)."""
    if not read_labels.exists():
        return None
    read = read_jsonl(read_labels.read_text(), read_labels)
    if [r["behavior_id"] for r in read] != [h["behavior_id"] for h in humans]:
        raise SystemExit(f"{read_labels}: rows out of step with harmbench_human_dev/labelled.jsonl; read the new rows again")
    return agreement_stats([r["harmful_content"] for r in read], [h["harmful_content"] for h in humans])


def hand_labelled(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for r in read_jsonl(path.read_text(), path):
        rows.append({"prompt": r["prompt"], "response": r["response"], "group": r["prompt"], "source": "ours",
                     "category": r.get("decoding", ""), "harmful_content": int(r["harmful_content"]),
                     "complied": int(r["complied"])})
    return rows


def contrast(rows: list[dict], root: Path, rng: random.Random) -> list[dict]:
    alpaca = [r["output"] for r in json.load(open(root / "benign" / "alpaca_eval_gpt4" / "model_outputs.json"))]
    donors = [r["response"] for r in rows if len(r["response"].split()) > 40]
    out = []
    for group in sorted({r["group"] for r in rows}):
        prompt = next(r["prompt"] for r in rows if r["group"] == group)
        words = rng.choice(donors).split()[:80]
        rng.shuffle(words)
        for response in (rng.choice(alpaca), " ".join(words)):
            out.append({"prompt": prompt, "response": response, "group": group, "source": "contrast", "category": "",
                        "harmful_content": 0, "complied": 0})
    return out


def training_rows(root: Path = SHARED, hand: Path = HAND, jbb_read: Path = JBB_READ, seed: int = 0) -> list[dict]:
    """Every labelled row the judge learns from, in a fixed order (experiments on other features or
    models call this too, so that their rows and folds are exactly these)."""
    rows = harmbench(root) + jailbreakbench(root, jbb_read) + hand_labelled(hand)
    return rows + contrast(rows, root, random.Random(seed))


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float):
    torch.manual_seed(0)
    xt, yt, wt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64), torch.tensor(w, dtype=torch.float64)
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(xt @ weight + bias, yt, reduction="none") * wt).sum() / wt.sum()
        loss = loss + l2 * (weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach().float().numpy(), float(bias.detach())


def label_and_weight(r, verdict, jbb_weight, jbb_labels):
    """A row's training label and weight: a JBB row read by us trains with our reading at full weight
    when jbb_labels is "read"; other JBB rows with the 70B verdict at jbb_weight."""
    if r["source"] != "jbb":
        return r[verdict], 1.0
    if jbb_labels == "read" and r.get("read"):
        return r["read"][verdict], 1.0
    return r[verdict], jbb_weight


def head_data(rows, x, verdict, jbb_weight, jbb_labels="model"):
    pairs = [label_and_weight(r, verdict, jbb_weight, jbb_labels) for r in rows]
    keep = [i for i, (label, weight) in enumerate(pairs) if label is not None and weight > 0]
    y = np.array([pairs[i][0] for i in keep], dtype=np.float64)
    w = np.array([pairs[i][1] for i in keep])
    return keep, x[keep], y, w


def fit_head(rows, x, verdict, l2, jbb_weight, jbb_labels="model"):
    keep, xs, y, w = head_data(rows, x, verdict, jbb_weight, jbb_labels)
    mean, std = xs.mean(0), xs.std(0) + 1e-6
    weight, bias = fit_logistic((xs - mean) / std, y, w, l2)
    return weight / std, bias - float((mean / std) @ weight)  # folded into raw-feature space


def predict(x, head):
    weight, bias = head
    return 1 / (1 + np.exp(-(x @ weight + bias)))


def near_groups(rows) -> dict[str, set[str]]:
    """For each group (lower-cased request), the groups whose request is it or a near paraphrase."""
    groups = sorted({r["group"].strip().lower() for r in rows})
    vectors = embed(groups)
    close = (vectors @ vectors.T) >= NEAR
    return {g: {groups[j] for j in np.flatnonzero(close[i])} | {g} for i, g in enumerate(groups)}


def suite_test_groups(rows) -> set[str]:
    """Groups whose request is a harmful prompt of the bundled suite's test split, or a near paraphrase
    of one. The toolkit reports its rates on those prompts, judged by these heads, so no head trains
    on them (measuring on them is fine: they are then unseen by every fold)."""
    from unlearnkit.data.suite import load_suite

    test = sorted({r["prompt"].strip().lower() for r in load_suite("standard")["harmful"]})
    groups = sorted({r["group"].strip().lower() for r in rows})
    close = (embed(groups) @ embed(test).T).max(1) >= NEAR
    return {g for g, c in zip(groups, close) if c}


def held_out(rows, k, sources, near) -> tuple[set[str], set[str]]:
    """Fold k's groups among `sources` rows, and those groups with their near paraphrases: no row of
    any source whose group is in the second set may train a head that is measured on the first."""
    held = {r["group"].strip().lower() for r in rows if r["source"] in sources and fold_of(r["group"]) == k}
    return held, set().union(*(near[g] for g in held))


def out_of_fold(rows, x, verdict, target_source, l2, jbb_weight, near, jbb_labels="model", reserved=frozenset()):
    """Predictions for every `target_source` row with `verdict` labelled, each from heads that never
    saw its group (behaviour or prompt), or a near paraphrase of it, under any source; `reserved`
    groups train no head at all."""
    scores = {}
    for k in range(FOLDS):
        held, unseen = held_out(rows, k, {target_source}, near)
        excluded = unseen | reserved
        train = [i for i, r in enumerate(rows) if r["group"].strip().lower() not in excluded]
        head = fit_head([rows[i] for i in train], x[train], verdict, l2, jbb_weight, jbb_labels)
        test = [i for i, r in enumerate(rows) if r["source"] == target_source and r[verdict] is not None
                and r["group"].strip().lower() in held]
        scores.update(zip(test, predict(x[test], head)))
    idx = sorted(scores)
    return idx, np.array([scores[i] for i in idx])


def calibration(scores, labels, bins=5):
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (scores >= lo) & (scores < hi if hi < 1 else scores <= hi)
        if m.any():
            out.append({"bin": [round(lo, 2), round(hi, 2)], "n": int(m.sum()), "mean_score": float(scores[m].mean()),
                        "share_positive": float(np.mean(labels[m]))})
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(SHARED))
    parser.add_argument("--hand", default=str(HAND))
    parser.add_argument("--jbb-read", default=str(JBB_READ), help="our reading of JBB's jailbroken responses")
    parser.add_argument("--features", choices=FEATURE_KINDS, default="minilm",
                        help="what the heads read (judge.probe_features); minilm+lm-states makes the lm-probe judge")
    parser.add_argument("--out", help=f"default: {WEIGHTS.name} for minilm, {LM_PROBE_WEIGHTS.name} for minilm+lm-states")
    parser.add_argument("--lm-layers", default=",".join(map(str, LM_PROBE_LAYERS)),
                        help="which of the chat model's layers lm-states reads (comma-separated, 1-based)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features-cache", help="reuse features saved here (for experiments on the head)")
    args = parser.parse_args()
    args.out = args.out or {"minilm": str(WEIGHTS), "minilm+lm-states": str(LM_PROBE_WEIGHTS)}.get(args.features)
    if args.out is None:
        parser.error(f"--features {args.features} is an experiment: name its weights file with --out")
    lm_layers = tuple(int(x) for x in args.lm_layers.split(","))
    rows = training_rows(Path(args.data), Path(args.hand), Path(args.jbb_read), args.seed)
    start = time.time()
    cache = Path(args.features_cache) if args.features_cache else None
    if cache and cache.exists():  # experiments only: the shipped weights are always made from fresh features
        x, speed = np.load(cache)["x"], float("nan")
    else:
        x = probe_features(args.features, [r["prompt"] for r in rows], [r["response"] for r in rows],
                           lm_layers=lm_layers).astype(np.float64)
        speed = len(rows) / (time.time() - start)
        if cache:
            np.savez(cache, x=x)
    target = {"harmful_content": "harmbench", "complied": "ours" if any(r["source"] == "ours" for r in rows) else "jbb"}
    near, reserved = near_groups(rows), suite_test_groups(rows)
    report = {"rows": {s: sum(r["source"] == s for r in rows) for s in ("harmbench", "jbb", "ours", "contrast")}
              | {"jbb_read_by_us": sum(bool(r.get("read")) for r in rows),
                 "kept_out_as_suite_test_prompts": sum(r["group"].strip().lower() in reserved for r in rows)},
              "our_reading_vs_harmbench_humans": reading_vs_humans([r for r in rows if r["source"] == "harmbench"], HARMBENCH_READ),
              "features": args.features, "near_paraphrase_cosine": NEAR,
              "features_per_second": round(speed, 1), "threshold": 0.5, "heads": {}}
    heads = {}
    for verdict in VERDICTS:
        # Choices (L2, JBB's weight, JBB's labels) by out-of-fold agreement on the target set: the same
        # grouped folds that report, so the figure below is a cross-validated choice, stated as such.
        # Ties go to the smaller L2, the lighter JBB weight, then the 70B verdict.
        trials, predictions = [], {}
        for jbb_labels in ("model", "read") if report["rows"]["jbb_read_by_us"] else ("model",):
            for l2 in (1e-3, 1e-2, 3e-2, 0.1):
                for jbb_weight in (0.0, 0.3, 1.0):
                    idx, scores = out_of_fold(rows, x, verdict, target[verdict], l2, jbb_weight, near, jbb_labels, reserved)
                    labels = np.array([rows[i][verdict] for i in idx])
                    predictions[l2, jbb_weight, jbb_labels] = idx, scores
                    trials.append((agreement_stats(scores, labels)["agreement"], -l2, -jbb_weight, jbb_labels == "model",
                                   {"l2": l2, "jbb_weight": jbb_weight, "jbb_labels": jbb_labels}))
        best = max(trials, key=lambda t: t[:4])[4]
        l2, jbb_weight, jbb_labels = best["l2"], best["jbb_weight"], best["jbb_labels"]
        idx, scores = predictions[l2, jbb_weight, jbb_labels]  # the chosen trial's own out-of-fold predictions
        labels = np.array([rows[i][verdict] for i in idx])
        per_category = {}
        for c in sorted({rows[i]["category"] for i in idx}):
            m = np.array([rows[i]["category"] == c for i in idx])
            per_category[c or "-"] = agreement_stats(scores[m], labels[m])
        report["heads"][verdict] = {"measured_on": f"{target[verdict]}, {FOLDS} folds grouped by "
                                    + ("behaviour" if target[verdict] != "ours" else "prompt"),
                                    **best, "out_of_fold": agreement_stats(scores, labels),
                                    "by_category": per_category, "calibration": calibration(scores, labels),
                                    "trials": [{**t[4], "agreement": t[0]} for t in trials]}
        train = [i for i, r in enumerate(rows) if r["group"].strip().lower() not in reserved]
        heads[verdict] = fit_head([rows[i] for i in train], x[train], verdict, l2, jbb_weight, jbb_labels)
        print(verdict, json.dumps(report["heads"][verdict]["out_of_fold"]), flush=True)
    tensors = {"mean": torch.zeros(x.shape[1]), "std": torch.ones(x.shape[1])}  # heads work on raw features
    for verdict, (weight, bias) in heads.items():
        tensors[f"{verdict}.weight"] = torch.tensor(weight, dtype=torch.float32)
        tensors[f"{verdict}.bias"] = torch.tensor([bias], dtype=torch.float32)
    metadata = {"recipe": f"experiments/train_judge.py --features {args.features}", "seed": str(args.seed), "features": args.features}
    if args.features.endswith("lm-states"):
        metadata |= {"recipe": metadata["recipe"] + f" --lm-layers {args.lm_layers}", "lm_layers": args.lm_layers}
        report["lm_layers"] = list(lm_layers)
    save_file(tensors, args.out, metadata=metadata)
    Path(args.out).with_suffix(".metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "heads"}))


if __name__ == "__main__":
    main()
