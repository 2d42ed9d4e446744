"""Train the default offline judge and write its weights + held-out metrics.

Data (read in place from ../shared/data, never copied):
- JailbreakBench artifacts: (behaviour goal, model response, `jailbroken` label from JBB's
  Llama-3-70B judge) — 1,637 non-empty responses from 4 models × 5 attacks.
- Harmless contrast rows we build from public text, labelled 0 by construction: each JBB goal
  paired with (a) an unrelated AlpacaEval GPT-4 answer (on-topic-ness matters), (b) word salad
  made from shuffled words of a JBB response (fluency/content matters: gibberish is not harm).
Split by behaviour: 25 of the 100 JBB goals (seeded) are held out entirely; the test figures
are on their JBB responses only, so nothing about a test behaviour was seen in training.

    python scripts/train_judge.py --data ../shared/data
"""

import argparse
import glob
import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from unlearnkit.evaluation.judge import WEIGHTS, judge_features
from unlearnkit.evaluation.metrics import agreement_stats as metrics


def load_jbb(root: Path):
    rows = []
    for file in sorted(glob.glob(str(root / "jbb" / "attack-artifacts" / "*" / "*" / "*.json"))):
        for jb in json.load(open(file))["jailbreaks"]:
            if jb["response"]:
                rows.append({"goal": jb["goal"], "prompt": jb["goal"], "response": jb["response"], "label": int(bool(jb["jailbroken"])), "source": "jbb",
                             "llama_guard1": jb.get("jailbroken_llama_guard1")})
    return rows


def contrast_rows(goals, jbb_rows, root: Path, rng: random.Random):
    alpaca = [r["output"] for r in json.load(open(root / "benign" / "alpaca_eval_gpt4" / "model_outputs.json"))]
    rows = []
    for goal in goals:
        rows.append({"goal": goal, "prompt": goal, "response": rng.choice(alpaca), "label": 0, "source": "offtopic"})
        words = rng.choice(jbb_rows)["response"].split()[:80]
        rng.shuffle(words)
        rows.append({"goal": goal, "prompt": goal, "response": " ".join(words), "label": 0, "source": "salad"})
    return rows


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float):
    xt, yt = torch.tensor(x), torch.tensor(y, dtype=torch.float32)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--out", default=str(WEIGHTS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root, rng = Path(args.data), random.Random(args.seed)
    jbb = load_jbb(root)
    goals = sorted({r["goal"] for r in jbb})
    rng.shuffle(goals)
    test_goals = set(goals[:25])
    train = [r for r in jbb if r["goal"] not in test_goals]
    train += contrast_rows(sorted(set(goals) - test_goals), train, root, rng)
    test = [r for r in jbb if r["goal"] in test_goals]
    test_contrast = contrast_rows(sorted(test_goals), test, root, rng)

    def feats(rows):
        return judge_features([r["prompt"] for r in rows], [r["response"] for r in rows])

    x_train, y_train = feats(train), np.array([r["label"] for r in train])
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    # L2 chosen by 5-fold cross-validation on the training goals only.
    folds = [set(goals[25:][i::5]) for i in range(5)]
    best = None
    for l2 in (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0):
        accs = []
        for fold in folds:
            tr = np.array([r["goal"] not in fold for r in train])
            w, b = fit_logistic((x_train[tr] - mean) / std, y_train[tr], l2)
            va = ~tr & np.array([r["source"] == "jbb" for r in train])
            accs.append(metrics(torch.sigmoid(torch.tensor((x_train[va] - mean) / std) @ w + b).numpy(), y_train[va])["agreement"])
        if best is None or np.mean(accs) > best[1]:
            best = (l2, float(np.mean(accs)))
    w, b = fit_logistic((x_train - mean) / std, y_train, best[0])

    def score(rows):
        return torch.sigmoid(torch.tensor((feats(rows) - mean) / std) @ w + b).numpy()

    report = {
        "l2": best[0], "cv_agreement": best[1], "train_rows": len(train),
        "test_jbb": metrics(score(test), [r["label"] for r in test]),
        "test_contrast_harmless_rate": float((score(test_contrast) < 0.5).mean()),
        # Yardstick: how often Llama Guard 1 (JBB's second judge) agrees with the same labels.
        "llama_guard1_on_test": metrics([float(r["llama_guard1"]) for r in test if r["llama_guard1"] is not None],
                                        [r["label"] for r in test if r["llama_guard1"] is not None]),
    }
    save_file({"weight": w.float(), "bias": b.float(), "mean": torch.tensor(mean), "std": torch.tensor(std)}, args.out,
              metadata={"recipe": "scripts/train_judge.py", "seed": str(args.seed)})
    Path(args.out).with_suffix(".metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
