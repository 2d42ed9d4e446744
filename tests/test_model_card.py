"""The model card beside every saved model: hub front matter, the recipe, and an Evaluation section that
`add_evaluation_to_card` fills only in folders unlearnkit wrote."""

import json

import pytest
from huggingface_hub import ModelCard

from conftest import write_jsonl
from unlearnkit.cli import main
from unlearnkit.runs.card import add_evaluation_to_card, write_model_card

SETTINGS = {"method": "sku", "steps": 30, "max_steps": 30, "learning_rate": 2e-4, "per_device_train_batch_size": 4,
            "lora": True, "negation_scale": 1.0, "seed": 42, "mismatch_k": 2}
DATA = {"forget": {"name": "forget.jsonl", "size": 120}, "retain": {"name": "retain.jsonl", "size": 300}}
METRICS = {"compliance_rate": {"value": 0.12, "ci95": [0.07, 0.19], "n": 150},
           "degenerate_rate": {"value": 0.02, "ci95": [0.005, 0.05], "n": 150},
           "normal_perplexity": {"value": 9.87, "ci95": [9.1, 10.6], "n": 80},
           "distinct_1": {"value": 0.5, "ci95": [0.4, 0.6], "n": 80}}


def test_card_front_matter_for_the_default_base(tmp_path):
    write_model_card(tmp_path, "default", "sku", SETTINGS, DATA)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.library_name == "transformers"
    assert {"unlearning", "sku", "unlearnkit"} <= set(card.data.tags)
    assert card.data.license == "apache-2.0"
    text = card.text
    for expected in ("`sku`", "learning rate | 0.0002", "batch size | 4", "LoRA", "λ", "forget.jsonl", "120",
                     "retain.jsonl", "300", "`mismatch_k`", "## Evaluation", "Not evaluated yet"):
        assert expected in text, expected


def test_license_read_from_a_local_base_card(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "README.md").write_text("---\nlicense: mit\ntags: [x]\n---\n\n# my base\n")
    write_model_card(tmp_path / "out", base, "npo", {"method": "npo", "lora": False}, DATA)
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.base_model == str(base.resolve()) and card.data.license == "mit"
    assert {"unlearning", "npo"} <= set(card.data.tags) and "full fine-tune" in card.text and "λ" not in card.text
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    write_model_card(tmp_path / "out2", bare, "ga", {"method": "ga"}, DATA)
    assert ModelCard.load(tmp_path / "out2" / "README.md").data.license is None  # unknown: left out, not guessed


def test_evaluation_added_then_replaced(tmp_path):
    write_model_card(tmp_path, "default", "sku", SETTINGS, DATA)
    assert add_evaluation_to_card(tmp_path, METRICS, "unlearnkit eval --suite standard")
    text = (tmp_path / "README.md").read_text()
    assert "Not evaluated yet" not in text and "unlearnkit eval --suite standard" in text
    assert "| 0.120 | [0.070, 0.190] | 150 |" in text and "`normal_perplexity`" in text and "distinct_1" not in text
    assert add_evaluation_to_card(tmp_path, {"compliance_rate": {"value": 0.3, "ci95": [0.2, 0.4], "n": 10}}, "second eval")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.text.count("## Evaluation") == 1 and "second eval" in card.text and "0.120" not in card.text
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"  # front matter untouched
    assert not add_evaluation_to_card(tmp_path, {"distinct_1": METRICS["distinct_1"]}, "nothing relevant")


@pytest.mark.parametrize("readme", ["---\nlicense: mit\ntags: [mine]\n---\n\n# My model\n\n## Evaluation\n\nmine\n", None])
def test_foreign_folder_is_left_alone(tmp_path, readme):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    if readme is not None:
        (folder / "README.md").write_text(readme)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert add_evaluation_to_card(folder, METRICS, "eval") is False
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert add_evaluation_to_card(tmp_path / "missing", METRICS, "eval") is False
    assert add_evaluation_to_card("default", METRICS, "eval") is False


def test_unlearn_run_writes_the_card(tmp_path, tiny_model_dir, pairs):
    forget, retain = pairs
    forget_file, retain_file = write_jsonl(tmp_path / "forget.jsonl", forget), write_jsonl(tmp_path / "retain.jsonl", retain)
    out = tmp_path / "run"
    code = main([str(a) for a in ("unlearn", "--method", "sku", "--model", tiny_model_dir, "--forget", forget_file,
                                  "--retain", retain_file, "--out", out, "--max-steps", 1, "--batch-size", 2,
                                  "--set", "mismatch_k=2")])
    assert code == 0
    card = ModelCard.load(out / "model" / "README.md")
    assert card.data.base_model == str(tiny_model_dir.resolve()) and card.data.library_name == "transformers"
    assert {"unlearning", "sku"} <= set(card.data.tags) and card.data.license is None
    assert "forget.jsonl" in card.text and "| 8 |" in card.text and "training steps | 1" in card.text
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == 1
    assert add_evaluation_to_card(out / "model", METRICS, "unlearnkit eval")
    assert "| 0.120 | [0.070, 0.190] | 150 |" in (out / "model" / "README.md").read_text()


def test_negated_card_takes_the_stage_one_recipe(tmp_path):
    import yaml

    run = tmp_path / "run"
    (run / "harmful").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": "default", "forget": "f.jsonl", "retain": "r.jsonl",
                                                     "method": "sku", "max_steps": 30, "negation_scale": 1.0}))
    from unlearnkit.runs.card import write_negated_card

    write_negated_card(tmp_path / "out" / "model", "default", run / "harmful", 2.0, "validation split of the demo data")
    card = ModelCard.load(tmp_path / "out" / "model" / "README.md")
    assert {"unlearning", "sku"} <= set(card.data.tags) and card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "| 2 |" in card.text and "validation split of the demo data" in card.text and "`f.jsonl`" in card.text
