"""Finding a model's parts without knowing its architecture's names: the decoder blocks, and the
linear layers inside them (what LoRA adapts, what RMU trains). Llama, Qwen2, Mistral, Gemma and Phi
call the blocks `model.layers`, OPT `model.decoder.layers`, GPT-2 `transformer.h`, GPT-NeoX
`gpt_neox.layers`; linear layers are `nn.Linear`, or `Conv1D` in GPT-2."""

from __future__ import annotations

import torch

from unlearnkit.errors import UnlearnkitError


def decoder_blocks(model) -> tuple[str, torch.nn.ModuleList]:
    """(qualified name, ModuleList) of the decoder blocks: the ModuleList whose length is the
    config's number of hidden layers (the largest such list if there were several)."""
    config = getattr(model, "config", None)
    depth = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == depth]
    if not found:
        raise UnlearnkitError(f"cannot find the {depth} decoder blocks of {type(model).__name__}: this architecture "
                              "is not supported by layer-wise methods (rmu); use another method")
    return min(found, key=lambda item: item[0].count("."))


def is_linear(module) -> bool:
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def is_attention(name: str) -> bool:
    """Whether a module name inside a decoder block belongs to its attention (all families we know
    call it attn, self_attn or attention)."""
    return any(key in name for key in ("attn", "attention"))


def block_linear_names(model) -> list[str]:
    """Distinct short names (e.g. q_proj, fc1, c_attn) of the linear layers inside the decoder
    blocks: the LM head and embeddings are never among them."""
    prefix, blocks = decoder_blocks(model)
    names = sorted({name.rsplit(".", 1)[-1] for block in blocks for name, m in block.named_modules() if is_linear(m)})
    if not names:
        raise UnlearnkitError(f"{type(model).__name__} has no linear layers in its decoder blocks for LoRA to adapt: "
                              "pass --full, or --set lora_targets=NAMES")
    return names


def mlp_linear_names(model, layer_indices) -> list[str]:
    """Qualified names of the feed-forward linear layers (not attention) of the given blocks."""
    prefix, blocks = decoder_blocks(model)
    out = []
    for i in layer_indices:
        for name, m in blocks[i].named_modules():
            if is_linear(m) and not is_attention(name):
                out.append(f"{prefix}.{i}.{name}")
    if not out:
        raise UnlearnkitError(f"no feed-forward layers found in blocks {list(layer_indices)} of {type(model).__name__}")
    return out
