"""Experiment: does the judge gain from embedding the whole answer instead of its first 256 word pieces?

all-MiniLM-L6-v2 reads at most 256 word pieces, and 57% of harmbench_human_dev's completions are
longer, so the default judge (experiments/train_judge.py) never sees the second half of most of them.
This script cuts every answer into windows of at most 240 word pieces, embeds each, and writes three
feature sets in train_judge.py's row order:

- `first`: the first window only (what the default judge reads, up to the window size);
- `mean`: the normalised mean of all windows, plus the largest window-to-request cosine;
- `both`: `mean` with the first window's embedding and interaction terms beside it.

Then train_judge.py scores each on its own grouped folds and grid (`--features-cache`), so the three
differ only in features:

    python experiments/whole_answer_judge_experiment.py OUT_DIR
    for v in first mean both; do python experiments/train_judge.py --features-cache OUT_DIR/$v.npz \
        --out OUT_DIR/$v.safetensors; done     # each writes OUT_DIR/$v.metrics.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import train_judge  # noqa: E402

from unlearnkit.evaluation.embeddings import embed, load_encoder  # noqa: E402
from unlearnkit.evaluation.judge import request_text, text_stats  # noqa: E402

WINDOW = 240  # word pieces; the encoder's limit is 256 with its two special tokens


def windows(text: str, tokenizer) -> list[str]:
    spans = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(spans) <= WINDOW:
        return [text]
    return [text[part[0][0]:part[-1][1]] for part in (spans[s:s + WINDOW] for s in range(0, len(spans), WINDOW))]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = train_judge.training_rows()
    tokenizer = load_encoder().tokenizer
    pieces = [windows(r["response"], tokenizer) for r in rows]
    owner = np.repeat(np.arange(len(rows)), [len(p) for p in pieces])
    e_window = embed([w for p in pieces for w in p])
    e_request = embed([request_text(r["prompt"]) for r in rows])
    first = e_window[np.searchsorted(owner, np.arange(len(rows)))]
    mean = np.stack([e_window[owner == i].mean(0) for i in range(len(rows))])
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    best_cos = np.array([[(e_window[owner == i] @ e_request[i]).max()] for i in range(len(rows))])
    stats = np.array([text_stats(r["prompt"], r["response"]) for r in rows])

    def features(e_answer, *extra):
        return np.concatenate([e_answer, e_request * e_answer, (e_request * e_answer).sum(1, keepdims=True), stats,
                               *extra], axis=1).astype(np.float64)

    np.savez(out / "first.npz", x=features(first))
    np.savez(out / "mean.npz", x=features(mean, best_cos))
    np.savez(out / "both.npz", x=np.concatenate([features(mean, best_cos), first, e_request * first], axis=1))
    print(f"{len(rows)} rows, {len(owner)} windows ({np.mean([len(p) > 1 for p in pieces]):.0%} of answers cut); "
          f"features in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
