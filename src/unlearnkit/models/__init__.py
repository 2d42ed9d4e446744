"""Load, cache and save causal language models."""

from unlearnkit.models.load import (
    DEFAULT_MODEL,
    cache_root,
    default_model_dir,
    load_model,
    load_tokenizer,
    model_dir,
    model_fingerprint,
    save_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "cache_root",
    "default_model_dir",
    "load_model",
    "load_tokenizer",
    "model_dir",
    "model_fingerprint",
    "save_model",
]
