"""The paper's SKU settings as shipped configs: each loads and trains two steps on a tiny random model of
its family (OPT, Llama), keeping every setting the config states (only the model, the data, the step
budget and the output folder are swapped), so the configs cannot rot."""

from pathlib import Path

import pytest
import yaml

from conftest import write_jsonl
from test_architectures import tiny
from unlearnkit.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("config, family", [("sku_paper_opt2.7b.yaml", "opt"), ("sku_paper_llama2_7b.yaml", "llama")])
def test_paper_config_trains_two_steps(config, family, tokenizer, tmp_path, pairs):
    from unlearnkit.models import save_model

    model_dir = tmp_path / family
    save_model(tiny(family, tokenizer), tokenizer, model_dir)
    forget, retain = pairs
    out = tmp_path / "run"
    assert main(["unlearn", "--config", str(CONFIGS / config), "--model", str(model_dir),
                 "--forget", str(write_jsonl(tmp_path / "f.jsonl", forget)),
                 "--retain", str(write_jsonl(tmp_path / "r.jsonl", retain)), "--max-steps", "2", "--out", str(out)]) == 0
    wanted = yaml.safe_load((CONFIGS / config).read_text())
    used = yaml.safe_load((out / "config.yaml").read_text())
    assert used["method"] == "sku" and used["mismatch_k"] == 5 and used["per_device_train_batch_size"] == 2
    assert used["sku_gd_weight"] == used["sku_rd_weight"] == 2.5 and used["sku_pd_weight"] == 1.0  # the paper's sign
    assert used["sku_pd_bound"] == float("inf") and used["learning_rate"] == 2e-4
    if wanted.get("full"):
        assert used["lora"] is False and not (out / "harmful" / "adapter_config.json").exists()
    else:
        assert used.get("lora", True) and (used["lora_r"], used["lora_alpha"]) == (32, 16)
        assert set(used["lora_targets_chosen"].split(",")) == {"q_proj", "v_proj"}
    assert (out / "model" / "config.json").exists()
