"""Batched generation (left padding, KV cache, greedy by default) with an on-disk response cache.

The cache is one append-only JSONL file per model fingerprint; a key covers prompt + settings.
Each batch is appended and flushed as soon as it is generated, so a crash loses nothing finished,
and the base model is generated once for every comparison that uses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from unlearnkit.data.format import prompt_text
from unlearnkit.distributed import native_bf16
from unlearnkit.progress import Progress


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0
    batch_size: int = 128  # 1.26x the new tokens/s of 64 on 2 AVX2 cores, same answers (docs/performance.md)
    dtype: str = "auto"  # "auto": bfloat16 where the hardware has fast bf16 matmul, else the model's own


def resolve_dtype(settings: GenerationSettings, model) -> torch.dtype:
    if settings.dtype == "auto":
        return torch.bfloat16 if native_bf16() else model.dtype
    return getattr(torch, settings.dtype)


def _generation_copy(model, dtype: torch.dtype):
    """Generation in bf16 runs ~2x faster on CPUs with avx512_bf16; a copy keeps the model's own weights exact."""
    if model.dtype == dtype:
        return model
    import copy

    return copy.deepcopy(model).to(dtype)


@torch.no_grad()
def generate_texts(model, tokenizer, prompts: list[str], settings: GenerationSettings | None = None,
                   raw: bool = False, on_batch=None, **overrides) -> list[str]:
    """Answers to `prompts` (chat-formatted, or used as they are when raw). Longest prompts go first so each batch
    holds similar lengths and padding stays small; `on_batch(indices, texts)` sees each batch."""
    settings = settings or GenerationSettings(**overrides)
    texts = [p if raw else prompt_text(tokenizer, p) for p in prompts]
    # raw text is final (a judge's rendered template carries its own BOS); a chat template adds its own markers
    add_special = not raw and not getattr(tokenizer, "chat_template", None)
    encoded = [tokenizer(t, add_special_tokens=add_special)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop = _stop_ids(tokenizer, model)
    source = model
    model = _generation_copy(model, resolve_dtype(settings, model))
    device = next(model.parameters()).device
    was_training = source.training
    model.eval()
    results: list[str] = [""] * len(texts)
    if settings.do_sample:
        torch.manual_seed(settings.seed)
    progress = Progress(len(order), "generating answers", "answers")
    try:
        for start in range(0, len(order), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]):] = 1
            kwargs = dict(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample, pad_token_id=pad,
                          eos_token_id=stop, use_cache=True, repetition_penalty=settings.repetition_penalty)
            if settings.do_sample:
                kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
            batch_texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
            for i, text in zip(idx, batch_texts):
                results[i] = text.strip()
            if on_batch is not None:
                on_batch(idx, [results[i] for i in idx])
            progress.update(len(idx))
    finally:
        progress.close()
        source.train(was_training)
    return results


def _stop_ids(tokenizer, model) -> list[int]:
    ids = {tokenizer.eos_token_id}
    config_eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(config_eos if isinstance(config_eos, list) else [config_eos])
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "</s>"):
        token_id = tokenizer.convert_tokens_to_ids(token) if token in tokenizer.get_vocab() else None
        ids.add(token_id)
    return sorted(i for i in ids if i is not None)


class GenerationCache:
    """{key: response} persisted as JSONL under <root>/generations/<fingerprint>.jsonl."""

    def __init__(self, root: str | os.PathLike, fingerprint: str):
        self.path = Path(root) / "generations" / f"{fingerprint}.jsonl"
        self.entries: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash: regenerate that one
                    continue
                self.entries[row["key"]] = row["response"]

    @staticmethod
    def key(prompt: str, settings: GenerationSettings, raw: bool, dtype: torch.dtype) -> str:
        fields = {k: v for k, v in asdict(settings).items() if k not in ("batch_size", "dtype")}
        fields["dtype"] = str(dtype)
        blob = json.dumps({"prompt": prompt, "raw": raw, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def add(self, pairs: list[tuple[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            for key, response in pairs:
                self.entries[key] = response
                f.write(json.dumps({"key": key, "response": response}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def generate_cached(model, tokenizer, prompts: list[str], settings: GenerationSettings, cache: GenerationCache | None,
                    raw: bool = False) -> tuple[list[str], int]:
    """Like generate_texts, but answers already in the cache are reused; returns (texts, n_generated)."""
    if cache is None:
        return generate_texts(model, tokenizer, prompts, settings, raw=raw), len(prompts)
    dtype = resolve_dtype(settings, model)
    keys = [cache.key(p, settings, raw, dtype) for p in prompts]
    todo = sorted({i for i, k in enumerate(keys) if k not in cache.entries}, key=lambda i: keys[i])
    todo = list({keys[i]: i for i in todo}.values())  # one generation per distinct prompt
    if todo:
        def save(batch_idx, texts):
            cache.add([(keys[todo[j]], text) for j, text in zip(batch_idx, texts)])

        generate_texts(model, tokenizer, [prompts[i] for i in todo], settings, raw=raw, on_batch=save)
    return [cache.entries[k] for k in keys], len(todo)
