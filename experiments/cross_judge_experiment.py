"""Experiment: does a judge that reads request and answer *together* beat the default judge?

The default judge (experiments/train_judge.py) embeds request and answer separately; the model card names
a cross-encoder as the next lever. This script fine-tunes the top layers of all-MiniLM-L6-v2 (the
encoder that ships offline) on `[CLS] request [SEP] answer [SEP]`, with one output per verdict, and
measures it by exactly the folds train_judge.py reports: `harmful_content` on harmbench_human_dev
grouped by behaviour, `complied` on our hand labels grouped by prompt, every row of a held-out group
(any source) kept out of training.

The lower layers stay frozen and their output is computed once, so a fold costs minutes on 2 cores.
Settings are fixed before measuring (not searched on these folds); the JBB weights are the logistic
judge's choices.

    python experiments/cross_judge_experiment.py --out runs/cross_judge.json
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import train_judge as tj  # noqa: E402  (the rows and folds the default judge is measured on)

from unlearnkit.evaluation.judge import VERDICTS, request_text  # noqa: E402
from unlearnkit.evaluation.metrics import agreement_stats  # noqa: E402

MAX_LEN = 256
JBB_WEIGHT = {"complied": 1.0, "harmful_content": 0.3}


def load_minilm():
    from transformers import AutoModel, AutoTokenizer

    from unlearnkit.evaluation.embeddings import encoder_folder

    folder = encoder_folder()
    return AutoTokenizer.from_pretrained(str(folder)), AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()


def additive_mask(mask: torch.Tensor) -> torch.Tensor:
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


@torch.no_grad()
def frozen_states(tokenizer, model, rows, frozen: int, batch_size: int = 32) -> list[torch.Tensor]:
    """Output of the first `frozen` layers for each row, unpadded, in fp16 (cached once)."""
    enc = [tokenizer(request_text(r["prompt"]), r["response"], truncation="only_second", max_length=MAX_LEN)
           for r in rows]
    order = sorted(range(len(rows)), key=lambda i: len(enc[i]["input_ids"]))
    states: list[torch.Tensor | None] = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = tokenizer.pad([enc[i] for i in idx], return_tensors="pt")
        h = model.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
        ext = additive_mask(batch["attention_mask"])
        for layer in model.encoder.layer[:frozen]:
            h = layer(h, attention_mask=ext)
        for j, i in enumerate(idx):
            states[i] = h[j, : int(batch["attention_mask"][j].sum())].to(torch.float16)
    return states


class TopLayers(torch.nn.Module):
    """The trainable upper layers and one logit per verdict over the masked mean of the tokens."""

    def __init__(self, model, frozen: int):
        super().__init__()
        self.layers = copy.deepcopy(model.encoder.layer[frozen:])
        self.head = torch.nn.Linear(model.config.hidden_size, len(VERDICTS))

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        length = max(s.shape[0] for s in states)
        h = torch.zeros(len(states), length, states[0].shape[1])
        mask = torch.zeros(len(states), length)
        for j, s in enumerate(states):
            h[j, : s.shape[0]], mask[j, : s.shape[0]] = s.float(), 1
        ext = additive_mask(mask)
        for layer in self.layers:
            h = layer(h, attention_mask=ext)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return self.head(pooled)


def targets(rows):
    y = torch.tensor([[float(r[v] or 0) for v in VERDICTS] for r in rows])
    w = torch.tensor([[0.0 if r[v] is None else (JBB_WEIGHT[v] if r["source"] == "jbb" else 1.0) for v in VERDICTS]
                      for r in rows])
    return y, w


def train_top(model, frozen, states, rows, epochs, batch_size, lr, seed):
    torch.manual_seed(seed)
    top = TopLayers(model, frozen).train()
    opt = torch.optim.AdamW([{"params": top.layers.parameters(), "lr": lr}, {"params": top.head.parameters(), "lr": 20 * lr}],
                            weight_decay=0.01)
    y, w = targets(rows)
    rng = random.Random(seed)
    order = list(range(len(rows)))
    steps, step = epochs * ((len(order) + batch_size - 1) // batch_size), 0
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, 1 - s / steps))
    for _ in range(epochs):
        rng.shuffle(order)
        # Batches of similar length waste less on padding: sort within chunks of 8 batches.
        chunks = [order[i:i + 8 * batch_size] for i in range(0, len(order), 8 * batch_size)]
        batches = [b for c in chunks for b in (lambda s: [s[i:i + batch_size] for i in range(0, len(s), batch_size)])(
            sorted(c, key=lambda i: states[i].shape[0]))]
        rng.shuffle(batches)
        for idx in batches:
            logits = top([states[i] for i in idx])
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx], reduction="none") * w[idx]).sum()
            loss = loss / w[idx].sum().clamp(min=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    return top.eval()


@torch.no_grad()
def predict(top, states, batch_size=64):
    order = sorted(range(len(states)), key=lambda i: states[i].shape[0])
    out = torch.zeros(len(states), len(VERDICTS))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        out[idx] = torch.sigmoid(top([states[i] for i in idx]))
    return out.numpy()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(tj.SHARED))
    parser.add_argument("--hand", default=str(tj.HAND))
    parser.add_argument("--frozen", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--features-cache", help="the default judge's features, saved here for reuse")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th row (a quick trial of the script)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = tj.training_rows(Path(args.data), Path(args.hand))
    rows = rows[:: args.every]
    near = tj.near_groups(rows)
    tokenizer, model = load_minilm()
    start = time.time()
    states = frozen_states(tokenizer, model, rows, args.frozen)
    report = {"rows": len(rows), "settings": vars(args), "cache_seconds": round(time.time() - start, 1), "folds": []}
    print(json.dumps(report), flush=True)
    target = {"harmful_content": "harmbench", "complied": "ours"}
    oof = {v: {} for v in VERDICTS}
    for k in map(int, args.folds.split(",")):
        t0 = time.time()
        held, unseen = tj.held_out(rows, k, set(target.values()), near)
        train = [i for i, r in enumerate(rows) if r["group"].strip().lower() not in unseen]
        top = train_top(model, args.frozen, [states[i] for i in train], [rows[i] for i in train], args.epochs,
                        args.batch_size, args.lr, seed=k)
        test = [i for i, r in enumerate(rows) if r["group"].strip().lower() in held and r["source"] in target.values()]
        scores = predict(top, [states[i] for i in test])
        for j, i in enumerate(test):
            for c, v in enumerate(VERDICTS):
                if rows[i]["source"] == target[v] and rows[i][v] is not None:
                    oof[v][i] = float(scores[j, c])
        report["folds"].append({"fold": k, "train_rows": len(train), "seconds": round(time.time() - t0, 1)})
        print(json.dumps(report["folds"][-1]), flush=True)
    # The default judge on the same rows and folds, with its shipped L2 and JBB weight, so the two
    # (and their average, a two-member ensemble) are compared fold by fold.
    cache = Path(args.features_cache) if args.features_cache else None
    if cache and cache.exists():
        x = np.load(cache)["x"]
    else:
        x = tj.judge_features([r["prompt"] for r in rows], [r["response"] for r in rows]).astype(np.float64)
        if cache:
            np.savez(cache, x=x)
    shipped = json.loads(tj.WEIGHTS.with_suffix(".metrics.json").read_text())["heads"]
    folds = [int(k) for k in args.folds.split(",")]
    report["out_of_fold"] = {}
    for v in VERDICTS:
        idx, logistic = tj.out_of_fold(rows, x, v, target[v], shipped[v]["l2"], shipped[v]["jbb_weight"], near,
                                        shipped[v].get("jbb_labels", "model"))
        keep = [j for j, i in enumerate(idx) if i in oof[v]]
        idx, logistic = [idx[j] for j in keep], logistic[keep]
        cross = np.array([oof[v][i] for i in idx])
        labels = np.array([rows[i][v] for i in idx])
        fold = np.array([tj.fold_of(rows[i]["group"]) for i in idx])
        report["out_of_fold"][v] = {name: agreement_stats(s, labels) for name, s in
                                    (("cross_encoder", cross), ("default_judge", logistic), ("average", (cross + logistic) / 2))}
        report["out_of_fold"][v]["by_fold"] = {k: {"cross_encoder": float(np.mean((cross[fold == k] >= 0.5) == labels[fold == k])),
                                                   "default_judge": float(np.mean((logistic[fold == k] >= 0.5) == labels[fold == k])),
                                                   "n": int((fold == k).sum())} for k in folds}
        report["out_of_fold"][v]["rows"] = idx  # indices into train_judge.py's row order
        report["out_of_fold"][v]["scores"] = cross.tolist()
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for v in VERDICTS:
        print(v, json.dumps({k: s for k, s in report["out_of_fold"][v].items() if k not in ("rows", "scores")}))


if __name__ == "__main__":
    main()
