"""θ_new = θ₀ − λ(θ_h − θ₀), exactly, for full and LoRA deltas, in memory and shard by shard."""

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_tiny_model
from unlearnkit.errors import UnlearnkitError
from unlearnkit.negation import negate_checkpoints, negate_in_place, negate_lora, negate_tensor


def perturbed(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_negate_in_place_full(tokenizer, tmp_path, scale):
    base = make_tiny_model(tokenizer)
    base.save_pretrained(tmp_path / "base")
    theta0 = {k: v.clone() for k, v in base.state_dict().items()}
    harmful = perturbed(make_tiny_model(tokenizer))
    theta_h = {k: v.clone() for k, v in harmful.state_dict().items()}
    negate_in_place(harmful, tmp_path / "base", scale)
    for name, value in harmful.state_dict().items():
        assert torch.allclose(value, theta0[name] - scale * (theta_h[name] - theta0[name]), atol=1e-6), name


def test_negate_checkpoints_streams_shards(tokenizer, tmp_path):
    base, harmful = make_tiny_model(tokenizer), perturbed(make_tiny_model(tokenizer))
    base.save_pretrained(tmp_path / "base", max_shard_size="1MB")
    harmful.save_pretrained(tmp_path / "harm", max_shard_size="3MB")  # different sharding on purpose
    shards = sorted((tmp_path / "base").glob("*.safetensors"))
    assert len(shards) > 1
    negate_checkpoints(tmp_path / "base", tmp_path / "harm", tmp_path / "out", 2.0)
    out = {k: v for f in sorted((tmp_path / "out").glob("*.safetensors")) for k, v in load_file(str(f)).items()}
    b, h = base.state_dict(), harmful.state_dict()
    for name, value in out.items():
        assert torch.allclose(value, b[name] - 2.0 * (h[name] - b[name]), atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.safetensors")) == [p.name for p in shards]
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "out")  # loads in plain transformers


def test_negate_lora_equals_merged_delta(tokenizer):
    from peft import LoraConfig, get_peft_model

    base = make_tiny_model(tokenizer)
    theta0 = {k: v.clone() for k, v in base.state_dict().items()}
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    import copy

    merged = copy.deepcopy(peft_model).merge_and_unload().state_dict()  # θ_h
    negated = negate_lora(peft_model, 1.5).state_dict()
    changed = 0
    for name, value in negated.items():
        expected = theta0[name] - 1.5 * (merged[name] - theta0[name])
        assert torch.allclose(value, expected, atol=1e-6), name
        changed += not torch.equal(value, theta0[name])
    assert changed == 4  # q_proj and down_proj in both layers
    assert not any("lora" in k for k in negated)


def test_negate_tensor_rejects_mismatch_and_keeps_ints():
    with pytest.raises(UnlearnkitError):
        negate_tensor(torch.zeros(2), torch.zeros(3), 1.0)
    ints = torch.arange(3)
    assert negate_tensor(ints, ints + 5, 1.0) is ints
