"""End to end on the real default model (SmolLM2-135M-Instruct) with a tiny step budget."""

import json

import pytest

from conftest import write_jsonl
from unlearnkit.cli import main
from unlearnkit.data import load_demo


@pytest.mark.e2e
def test_unlearn_then_eval_on_default_model(tmp_path):
    harmful, normal = load_demo("harmful"), load_demo("normal")
    forget = write_jsonl(tmp_path / "forget.jsonl", harmful[:8])
    retain = write_jsonl(tmp_path / "retain.jsonl", normal[:8])
    held_harmful = write_jsonl(tmp_path / "h.jsonl", [{"prompt": h["prompt"], "category": h["category"]} for h in harmful[-4:]])
    held_normal = write_jsonl(tmp_path / "n.jsonl", normal[-4:])
    run = tmp_path / "run"
    assert main(["unlearn", "--model", "default", "--forget", str(forget), "--retain", str(retain), "--out", str(run),
                 "--max-steps", "2", "--batch-size", "2", "--set", "mismatch_k=1"]) == 0
    assert (run / "model" / "model.safetensors").exists()
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(run / "model"), "--base", "default", "--harmful", str(held_harmful),
                 "--normal", str(held_normal), "--max-new-tokens", "16", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("compliance_rate", "harmful_content_rate", "degenerate_rate"):
        assert metrics[key]["n"] == 4 and metrics["base"][key]["n"] == 4, key
    assert 0.5 < metrics["normal_similarity_base"]["value"] <= 1.0 + 1e-5  # two LoRA steps barely move the model
    assert metrics["normal_perplexity"]["value"] < 100
