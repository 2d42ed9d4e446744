"""Any causal LM a user brings: every registered method, LoRA and full fine-tuning, on tiny random
models of the field's families, with the default model's tokenizer. A method added to the registry
is covered here without editing this file."""

import pytest
import torch

from unlearnkit.methods import METHODS, UnlearnArguments, build_trainer, finish

V = 64  # hidden size


def tiny(family, tokenizer):
    import transformers as t

    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id)
    config = {
        "llama": lambda: t.LlamaConfig(hidden_size=V, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                                       num_key_value_heads=2, **common),
        "qwen2": lambda: t.Qwen2Config(hidden_size=V, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                                       num_key_value_heads=2, **common),
        "mistral": lambda: t.MistralConfig(hidden_size=V, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                                           num_key_value_heads=2, **common),
        "gemma": lambda: t.GemmaConfig(hidden_size=V, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                                       num_key_value_heads=2, head_dim=16, **common),
        "phi": lambda: t.PhiConfig(hidden_size=V, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, **common),
        "opt": lambda: t.OPTConfig(hidden_size=V, ffn_dim=128, num_hidden_layers=3, num_attention_heads=4,
                                   word_embed_proj_dim=V, **common),
        "gpt2": lambda: t.GPT2Config(n_embd=V, n_layer=3, n_head=4, **common),
        "gpt_neox": lambda: t.GPTNeoXConfig(hidden_size=V, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                                            **common),
    }[family]()
    torch.manual_seed(0)
    return t.AutoModelForCausalLM.from_config(config)


FAMILIES = ["llama", "qwen2", "mistral", "gemma", "phi", "opt", "gpt2", "gpt_neox"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_every_method_on_every_family(tmp_path, tokenizer, pairs, family, method, lora):
    from unlearnkit.evaluation.generate import GenerationSettings, generate_texts

    forget, retain = pairs
    model = tiny(family, tokenizer)
    args = UnlearnArguments(output_dir=str(tmp_path / "ckpt"), method=method, lora=lora, max_steps=2,
                            per_device_train_batch_size=2, mismatch_k=1, save_strategy="no", disable_tqdm=True,
                            learning_rate=1e-3, emu_samples=1, emu_eval_every=0, rmu_layer=1, report_to="none")
    base_dir = None
    if not lora and METHODS[method].negate_after:
        base_dir = tmp_path / "base"
        model.save_pretrained(base_dir)
    trainer = build_trainer(model, tokenizer, forget[:4], retain[:4], args)
    trainer.train()
    out = finish(trainer, base_dir)
    assert not hasattr(out, "peft_config")
    generate_texts(out, tokenizer, ["How do I do it?"], GenerationSettings(max_new_tokens=2, dtype="float32"))


@pytest.mark.parametrize("family,expected", [
    ("opt", {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}),
    ("gpt2", {"c_attn", "c_proj", "c_fc"}),
    ("gpt_neox", {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}),
    ("llama", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
])
def test_default_lora_adapts_every_linear_layer_of_the_blocks_and_not_the_head(tmp_path, tokenizer, pairs, family, expected):
    from peft.tuners.lora import LoraLayer

    forget, retain = pairs
    args = UnlearnArguments(output_dir=str(tmp_path / "c"), method="ga", max_steps=1, save_strategy="no", disable_tqdm=True)
    trainer = build_trainer(tiny(family, tokenizer), tokenizer, forget[:2], retain[:2], args)
    adapted = {name.rsplit(".", 1)[-1] for name, m in trainer.model.named_modules() if isinstance(m, LoraLayer)}
    assert adapted == expected and set(args.lora_targets_chosen.split(",")) == expected


def test_lora_targets_that_match_nothing_is_one_clear_line(tmp_path, tiny_model_dir, pairs, capsys):
    from conftest import write_jsonl
    from unlearnkit.cli import main

    forget = write_jsonl(tmp_path / "f.jsonl", pairs[0])
    assert main(["unlearn", "--method", "ga", "--model", str(tiny_model_dir), "--forget", str(forget), "--out",
                 str(tmp_path / "o"), "--max-steps", "1", "--set", "lora_targets=c_attn,nonsense"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "matches no module" in err and "q_proj" in err


def test_a_model_without_linear_layers_in_its_blocks_is_one_clear_error():
    from types import SimpleNamespace

    from unlearnkit.errors import UnlearnkitError
    from unlearnkit.models.layers import block_linear_names

    class NoLinear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(num_hidden_layers=2)
            self.layers = torch.nn.ModuleList([torch.nn.LayerNorm(4), torch.nn.LayerNorm(4)])

    with pytest.raises(UnlearnkitError, match="no linear layers in its decoder blocks") as err:
        block_linear_names(NoLinear())
    assert "\n" not in str(err.value)
    with pytest.raises(UnlearnkitError, match="cannot find the 3 decoder blocks"):
        block_linear_names(SimpleNamespace(config=SimpleNamespace(num_hidden_layers=3), named_modules=lambda: iter([])))


WRITERS = {"llama": {"o_proj", "down_proj"}, "qwen2": {"o_proj", "down_proj"}, "mistral": {"o_proj", "down_proj"},
           "gemma": {"o_proj", "down_proj"}, "phi": {"dense", "fc2"}, "opt": {"out_proj", "fc2"},
           "gpt2": {"attn.c_proj", "mlp.c_proj"}, "gpt_neox": {"attention.dense", "dense_4h_to_h"}}


@pytest.mark.parametrize("family", FAMILIES)
def test_refusal_ablation_finds_the_residual_writers_of_every_family(tokenizer, family):
    from unlearnkit.robustness import ablated_copy, residual_writers

    model = tiny(family, tokenizer)
    names = {n for n, m in model.named_modules() if any(m is w for w in residual_writers(model))}
    assert len(names) == 2 * 3  # attention's and the MLP's output layer in each of the 3 blocks
    assert {next(w for w in WRITERS[family] if n.endswith(w)) for n in names} == WRITERS[family]
    torch.manual_seed(1)
    r = torch.randn(V)
    r = r / r.norm()
    attacked = ablated_copy(model, r).eval()  # from_config leaves dropout on: it would mask elementwise
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        hidden = attacked(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in range(1, 3):  # outputs of blocks 1 and 2: nothing writes along r any more
        assert (hidden[layer] @ r).abs().max() < 1e-4, layer


@pytest.mark.parametrize("family", FAMILIES)
def test_packing_is_used_where_exact_and_the_loss_is_the_same_either_way(tmp_path, tokenizer, pairs, family):
    forget, retain = pairs
    forget = [dict(f, response=f["response"] + " more" * (5 * i)) for i, f in enumerate(forget[:4])]
    args = UnlearnArguments(output_dir=str(tmp_path / "ckpt"), method="sku", lora=False, max_steps=1,
                            per_device_train_batch_size=2, mismatch_k=1, save_strategy="no", disable_tqdm=True, report_to="none")
    trainer = build_trainer(tiny(family, tokenizer), tokenizer, forget, retain[:4], args)
    trainer.model.eval()  # no dropout: the two layouts must agree
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[3]])
    with torch.no_grad():
        packed = float(trainer.compute_loss(trainer.model, batch))
        trainer.args.packing = False
        padded = float(trainer.compute_loss(trainer.model, batch))
    # OPT derives positions from the attention mask, so a packed row would leak across sequences: it falls back.
    assert trainer._packs[False] is (family != "opt")
    assert packed == pytest.approx(padded, rel=1e-5)
