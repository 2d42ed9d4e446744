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


def _peft(model, **config):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM", **config))
    with torch.no_grad():  # a trained-looking adapter: B is zero at init
        for name, p in peft_model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return peft_model


def test_lora_task_vector_covers_embedding_and_modules_to_save(tokenizer):
    """τ holds every part the adapter changed: linear and embedding LoRA deltas and the full delta of
    a module it trains outright; negation then starts from θ₀ for all of them."""
    from unlearnkit.negation import lora_task_vector

    torch.manual_seed(0)
    base = make_tiny_model(tokenizer)
    theta0 = {k: v.clone() for k, v in base.state_dict().items()}
    peft_model = _peft(base, target_modules=["q_proj", "embed_tokens"], modules_to_save=["norm"])
    tau = lora_task_vector(peft_model)
    assert {"model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight", "model.norm.weight"} <= set(tau)
    trained_norm = peft_model.base_model.model.model.norm.modules_to_save["default"].weight.detach().clone()
    assert torch.allclose(tau["model.norm.weight"], trained_norm - theta0["model.norm.weight"])
    assert tau["model.embed_tokens.weight"].abs().sum() > 0 and all(t.dtype == torch.float32 for t in tau.values())
    negated = negate_lora(peft_model, 2.0)
    state = negated.state_dict()
    for name, delta in tau.items():
        assert torch.allclose(state[name], theta0[name] - 2.0 * delta, atol=1e-6), name  # from θ₀, not from θ_h


def test_lora_negation_of_bf16_weights_is_computed_in_fp32(tokenizer):
    """bf16 weights: the result must be θ₀ − λτ rounded once, not τ rounded to bf16 and then scaled."""
    from unlearnkit.negation import apply_task_vector

    base = make_tiny_model(tokenizer).to(torch.bfloat16)
    name = "model.layers.0.self_attn.q_proj.weight"
    w0 = dict(base.named_parameters())[name].detach().float().clone()
    tau = {name: torch.full_like(w0, 1e-3) + 1e-4 * torch.randn_like(w0)}  # tiny beside bf16's step at |w| ~ 0.02
    apply_task_vector(base, tau, 4.0)
    got = dict(base.named_parameters())[name].detach().float()
    exact = (w0 - 4.0 * tau[name]).to(torch.bfloat16).float()
    assert torch.equal(got, exact)
