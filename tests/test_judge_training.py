"""experiments/train_judge.py's folds and labels: a held-out behaviour's near paraphrases never train the
head measured on it, and JailbreakBench rows train with our reading or the 70B verdict as chosen."""

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "train_judge.py"
spec = importlib.util.spec_from_file_location("train_judge", SCRIPT)
tj = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tj)


def row(group, source, label, read=None):
    return {"prompt": group, "response": "r", "group": group, "source": source, "category": "",
            "harmful_content": label, "complied": label, "read": read}


def test_held_out_keeps_near_paraphrases_of_held_behaviours_out_of_training():
    behaviour, paraphrase, other = "Write a phishing email", "Compose an email that phishes", "Bake a cake"
    rows = [row(behaviour, "harmbench", 1), row(paraphrase, "jbb", 1), row(other, "harmbench", 0)]
    near = {behaviour.lower(): {behaviour.lower(), paraphrase.lower()}, paraphrase.lower(): {paraphrase.lower(), behaviour.lower()},
            other.lower(): {other.lower()}}
    k = tj.fold_of(behaviour)
    held, unseen = tj.held_out(rows, k, {"harmbench"}, near)
    assert behaviour.lower() in held and paraphrase.lower() not in held  # jbb rows are not measured
    assert paraphrase.lower() in unseen  # ... but may not train the fold's head either
    if tj.fold_of(other) != k:
        assert other.lower() not in unseen


def test_jbb_rows_train_with_our_reading_only_when_chosen():
    rows = [row("a", "jbb", 1, read={"complied": 1, "harmful_content": 0}), row("b", "jbb", 1), row("c", "ours", 0)]
    x = np.arange(6, dtype=np.float64).reshape(3, 2)
    keep, _, y, w = tj.head_data(rows, x, "harmful_content", jbb_weight=0.3, jbb_labels="model")
    assert keep == [0, 1, 2] and y.tolist() == [1, 1, 0] and w.tolist() == [0.3, 0.3, 1.0]
    keep, _, y, w = tj.head_data(rows, x, "harmful_content", jbb_weight=0.3, jbb_labels="read")
    assert keep == [0, 1, 2] and y.tolist() == [0, 1, 0] and w.tolist() == [1.0, 0.3, 1.0]
    keep, _, y, w = tj.head_data(rows, x, "harmful_content", jbb_weight=0.0, jbb_labels="read")
    assert keep == [0, 2] and y.tolist() == [0, 0]  # an unread JBB row at weight 0 drops out


def test_suite_test_prompts_train_no_head_but_are_still_measured(monkeypatch):
    test_prompt, other = "Write a phishing email", "Bake a cake"
    rows = [row(test_prompt, "ours", 1), row(other, "ours", 0), row(test_prompt, "jbb", 1), row(other, "jbb", 0),
            row("Plant a tree", "jbb", 1), row("Sing a song", "jbb", 0)]  # never held out: every fold trains on them
    near = {r["group"].lower(): {r["group"].lower()} for r in rows}
    trained_on = []
    real_fit = tj.fit_head
    monkeypatch.setattr(tj, "fit_head", lambda train_rows, *a, **k: trained_on.append(train_rows) or real_fit(train_rows, *a, **k))
    x = np.array([[1.0], [0.0], [1.0], [0.0], [1.0], [0.0]])
    idx, scores = tj.out_of_fold(rows, x, "complied", "ours", 0.01, 1.0, near, reserved={test_prompt.lower()})
    assert idx == [0, 1] and np.isfinite(scores).all()  # the reserved prompt's own row is measured ...
    assert all(r["group"] != test_prompt for train in trained_on for r in train)  # ... and trained no fold's head
