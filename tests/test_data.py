"""Every file format and column alias, the split, and clean errors for bad input."""

import csv
import gzip
import json

import pytest

from conftest import SHARED_DATA, write_jsonl
from unlearnkit.data import load_demo, load_pairs, split_pairs
from unlearnkit.errors import UnlearnkitError

ROWS = [{"question": "q1?", "answer": "a1", "category": "x"}, {"question": "q2?", "answer": "a2", "category": "y"}]
EXPECTED = [{"prompt": "q1?", "response": "a1", "category": "x"}, {"prompt": "q2?", "response": "a2", "category": "y"}]


def write_csv(path, rows, delimiter=","):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [write_jsonl(tmp_path / "a.jsonl", ROWS), write_csv(tmp_path / "a.csv", ROWS),
             write_csv(tmp_path / "a.tsv", ROWS, "\t")]
    (tmp_path / "a.json").write_text(json.dumps(ROWS))
    (tmp_path / "wrapped.json").write_text(json.dumps({"meta": {"n": 2}, "data": ROWS}))
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "a.parquet")
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in ROWS))
    files += [tmp_path / n for n in ("a.json", "wrapped.json", "a.parquet", "a.jsonl.gz")]
    for path in files:
        assert load_pairs(path) == EXPECTED, path


def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path):
    # json.dumps(ensure_ascii=False), as our own outputs are written, leaves U+2028 and U+0085 raw
    rows = [{"prompt": "q1?", "response": "first\u2028second\x85third"}, {"prompt": "q2?", "response": "a2"}]
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert load_pairs(path) == rows
    from unlearnkit.runs import collected_file

    scored = tmp_path / "collected.jsonl"  # `collect --overwrite` must still know its own file
    scored.write_text("".join(json.dumps({**r, "judge_score": 0.5}, ensure_ascii=False) + "\n" for r in rows))
    assert collected_file(scored) and not collected_file(path)


def test_hf_dataset_folder(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "ds" / "train.parquet"))
    assert load_pairs(tmp_path / "ds") == EXPECTED


@pytest.mark.parametrize("prompt_key,response_key", [
    ("question", "answer"), ("instruction", "output"), ("goal", "target"), ("Behavior", "completion"),
    ("forbidden_prompt", "response"), ("Question", "Best Answer"), ("prompt", "response"),
])
def test_column_aliases(tmp_path, prompt_key, response_key):
    path = write_jsonl(tmp_path / "x.jsonl", [{prompt_key: "p", response_key: "r"}])
    assert load_pairs(path) == [{"prompt": "p", "response": "r"}]


def test_instruction_with_input_and_explicit_columns(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"instruction": "Translate", "input": "hola", "output": "hello", "q": "Q", "a": "A"}])
    assert load_pairs(path)[0]["prompt"] == "Translate\n\nhola"
    assert load_pairs(path, prompt_col="q", response_col="a") == [{"prompt": "Q", "response": "A"}]
    with pytest.raises(UnlearnkitError, match="--prompt-col 'nope' is not a column"):
        load_pairs(path, prompt_col="nope")


def test_pku_saferlhf_unsafe_responses_become_forget_pairs(tmp_path):
    rows = [{"prompt": "p1", "response_0": "bad", "response_1": "fine", "is_response_0_safe": False, "is_response_1_safe": True},
            {"prompt": "p2", "response_0": "ok", "response_1": "worse", "is_response_0_safe": "true", "is_response_1_safe": "false"}]
    assert load_pairs(write_jsonl(tmp_path / "pku.jsonl", rows)) == [
        {"prompt": "p1", "response": "bad"}, {"prompt": "p2", "response": "worse"}]


def test_hh_rlhf_dialogues(tmp_path):
    rows = [{"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how to steal?\n\nAssistant: I won't help.",
             "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how to steal?\n\nAssistant: Grab it and run."}]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    assert load_pairs(path) == [{"prompt": "how to steal?", "response": "Grab it and run."}]
    assert load_pairs(path, response_col="chosen") == [{"prompt": "how to steal?", "response": "I won't help."}]


@pytest.mark.parametrize("content,message", [
    ('{"prompt": "a", "response": "b"}\n{"prompt": broken\n', r"x.jsonl:2: not valid JSON"),
    ('{"text": "a", "other": "b"}\n', "no prompt column"),
    ('{"prompt": "a"}\n', "no response column"),
    ("", "no rows"),
    ('{"prompt": "", "response": ""}\n', "no usable rows"),
    ("[1, 2]\n", "expected a JSON object"),
])
def test_bad_input_errors(tmp_path, content, message):
    path = tmp_path / "x.jsonl"
    path.write_text(content)
    with pytest.raises(UnlearnkitError, match=message):
        load_pairs(path)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(UnlearnkitError, match="no such file"):
        load_pairs(tmp_path / "missing.jsonl")
    (tmp_path / "x.xlsx").write_text("?")
    with pytest.raises(UnlearnkitError, match="unknown file type"):
        load_pairs(tmp_path / "x.xlsx")
    with pytest.raises(UnlearnkitError, match="Hugging Face dataset"):
        load_pairs("no-such-org/no-such-dataset")


def test_csv_broken_line_reports_line_number(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("prompt,response\na,b\nc,d,e\n")
    with pytest.raises(UnlearnkitError, match=r"x.csv:3"):
        load_pairs(path)


def test_split_is_stable_disjoint_and_sized():
    rows = [{"prompt": f"question number {i}", "response": "r"} for i in range(400)]
    a = split_pairs(rows)
    placed = {r["prompt"]: name for name, part in a.items() for r in part}
    assert len(placed) == 400  # every row in exactly one split
    for name, share in (("test", 0.25), ("validation", 0.15), ("train", 0.60)):
        assert abs(len(a[name]) / 400 - share) < 0.06, name
    # stable: a row's split depends on its prompt alone, not on order or on the other rows
    shuffled = split_pairs(rows[::-1][:250])
    assert all(placed[r["prompt"]] == name for name, part in shuffled.items() for r in part)
    assert split_pairs(rows, salt="other") != a


def test_split_never_puts_one_behaviour_on_both_sides():
    rows = [{"prompt": f"jailbreak {j} of behaviour {b}", "behavior": f"behaviour {b}", "response": "r"}
            for b in range(60) for j in range(5)]
    sides = {}
    for name, part in split_pairs(rows).items():
        for r in part:
            sides.setdefault(r["behavior"], set()).add(name)
    assert all(len(s) == 1 for s in sides.values()) and len({next(iter(s)) for s in sides.values()}) == 3


def test_split_small_sets_fill_every_split():
    parts = split_pairs([{"prompt": f"q{i}"} for i in range(4)])
    assert all(parts[name] for name in ("train", "validation", "test"))
    assert split_pairs([{"prompt": f"q{i}"} for i in range(4)], validation=0.0)["validation"] == []


def test_demo_data_meets_its_spec():
    harmful, normal, safe = load_demo("harmful"), load_demo("normal"), load_demo("safe_lookalike")
    assert len(harmful) >= 150 and len({h["category"] for h in harmful}) >= 8
    assert len(normal) >= 150 and all(n["response"] for n in normal)
    assert len(safe) >= 100


shared = pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"{SHARED_DATA} not present: these tests read the public benchmark files in place")


@shared
@pytest.mark.parametrize("relative,first_prompt_start,has_response", [
    ("truthfulqa/TruthfulQA.csv", "What happens to you if you eat watermelon seeds", True),
    ("advbench/harmful_behaviors.csv", "Write a script that can exploit", True),
    ("hh_rlhf/harmless-base/test.jsonl.gz", "", True),
    ("refusal_direction/harmful_train.json", "Suggest methods for hacking", False),
    ("benign/alpaca_eval_gpt4/model_outputs.json", "What are the names of some famous actors", True),
    ("jbb/attack-artifacts/GCG/transfer/gpt-4-0125-preview.json", "", True),
])
def test_shared_benchmark_files_load(relative, first_prompt_start, has_response):
    rows = load_pairs(SHARED_DATA / relative, require_response=has_response)
    assert len(rows) > 50
    assert rows[0]["prompt"].startswith(first_prompt_start)
    assert all(r["prompt"] for r in rows)
