"""Shared fixtures: a tiny random-init Llama (2 layers, hidden 64) with the real SmolLM2 tokenizer."""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: fail fast instead of retrying the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tokenizer():
    from unlearnkit.models import load_tokenizer

    return load_tokenizer("default")


def make_tiny_model(tokenizer, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


@pytest.fixture
def tiny_model(tokenizer):
    return make_tiny_model(tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    from unlearnkit.models import save_model

    path = tmp_path_factory.mktemp("tiny") / "model"
    save_model(make_tiny_model(tokenizer), tokenizer, path)
    return path


@pytest.fixture
def pairs():
    forget = [{"prompt": f"How do I do harmful thing {i}?", "response": f"Sure, here is harmful plan {i}: step one, step two.",
               "category": "a" if i % 2 else "b"} for i in range(8)]
    retain = [{"prompt": f"What is {i} plus {i}?", "response": f"{i} plus {i} is {2 * i}."} for i in range(8)]
    return forget, retain


def write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
