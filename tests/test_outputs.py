"""Output folders never take a user's files, a live run's folder is never shared, settings are trusted."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import write_jsonl
from unlearnkit.cli import main
from unlearnkit.errors import UnlearnkitError
from unlearnkit.outputs import LOCK, MARKER, check_output_dir, output_dir, partial_path


@pytest.fixture
def files(tmp_path, pairs):
    forget, retain = pairs
    return write_jsonl(tmp_path / "f.jsonl", forget), write_jsonl(tmp_path / "r.jsonl", retain)


def ga(model_dir, forget, out, *extra):
    return ["unlearn", "--method", "ga", "--model", str(model_dir), "--forget", str(forget), "--out", str(out),
            "--max-steps", "1", "--batch-size", "2", *map(str, extra)]


def test_overwrite_refuses_a_folder_with_a_foreign_file(tmp_path, tiny_model_dir, files, capsys):
    forget, _ = files
    mywork = tmp_path / "mywork"
    mywork.mkdir()
    (mywork / "thesis.tex").write_text("four years of work")
    assert main(ga(tiny_model_dir, forget, mywork, "--overwrite")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "thesis.tex" in err and "choose another --out" in err
    assert (mywork / "thesis.tex").read_text() == "four years of work" and sorted(os.listdir(mywork)) == ["thesis.tex"]


@pytest.mark.parametrize("where", ["cwd", "home", "parent", "root"])
def test_overwrite_refuses_working_home_parent_and_root(tmp_path, tiny_model_dir, files, monkeypatch, capsys, where):
    forget, _ = files
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("x")
    (work / MARKER).write_text("{}")  # even a folder that looks like ours is refused when it is one of these
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))  # apart from the working folder, so each rule is tested on its own
    target = {"cwd": ".", "home": str(home), "parent": str(tmp_path / "a"), "root": "/"}[where]
    assert main(ga(tiny_model_dir, forget, target, "--overwrite")) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (work / "keep.txt").exists() and (home / "keep.txt").exists()


def test_overwrite_replaces_our_own_output(tmp_path, tiny_model_dir, files):
    forget, _ = files
    out = tmp_path / "run"
    assert main(ga(tiny_model_dir, forget, out)) == 0
    assert (out / MARKER).exists() and not (out / LOCK).exists()
    first = (out / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(ga(tiny_model_dir, forget, out, "--overwrite")) == 0
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns != first


def test_collect_overwrite_only_replaces_its_own_file(tmp_path, tiny_model_dir, capsys):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "How do I do bad thing?"}])
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"my": "notes"}\n')
    assert main(["collect", "--model", str(tiny_model_dir), "--prompts", str(prompts), "--out", str(notes),
                 "--overwrite", "--judge", "refusal", "--max-new-tokens", "2"]) == 2
    assert notes.read_text() == '{"my": "notes"}\n' and "did not write it" in capsys.readouterr().err


def test_a_live_run_holds_its_folder(tmp_path):
    out = tmp_path / "live"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from unlearnkit.outputs import output_dir\n"
        f"with output_dir({str(out)!r}) as work:\n"
        "    print('ready', flush=True); time.sleep(120)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        for flags in ({}, {"resume": True}, {"overwrite": True}, {"overwrite": True, "resume": True}):
            with pytest.raises(UnlearnkitError, match="being written by a running unlearnkit process"):
                check_output_dir(out, **flags)
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up (like kill -9): its lock is stale and is taken over.
    assert (partial_path(out) / LOCK).exists()
    with output_dir(out, resume=True) as work:
        (work / "result.txt").write_text("done")
    assert (out / "result.txt").read_text() == "done"


def test_flags_beat_the_config_file_for_every_key(tmp_path, tiny_model_dir, files):
    from unlearnkit.cli import build_parser
    from unlearnkit.runs import training_settings

    forget, retain = files
    config = {"method": "npo", "model": "cfg-model", "forget": "cfg-f", "retain": "cfg-r", "out": "cfg-out",
              "max_steps": 9, "batch_size": 9, "lr": 0.9, "lambda": 9, "seed": 9, "save_steps": 9, "bf16": False,
              "prompt_col": "cfg-p", "response_col": "cfg-r", "mismatch_k": 9}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    ns = build_parser().parse_args([
        "unlearn", "--config", str(cfg), "--method", "ga", "--model", "m", "--forget", "f", "--retain", "r", "--out", "o",
        "--max-steps", "1", "--batch-size", "2", "--lr", "0.1", "--lambda", "3", "--seed", "4", "--save-steps", "5",
        "--bf16", "--prompt-col", "p", "--response-col", "q", "--set", "mismatch_k=2"])
    run, fields = training_settings(ns)
    assert run == {"model": "m", "forget": "f", "retain": "r", "out": "o", "prompt_col": "p", "response_col": "q"}
    assert {k: fields[k] for k in ("method", "max_steps", "per_device_train_batch_size", "learning_rate",
                                   "negation_scale", "seed", "save_steps", "bf16", "mismatch_k")} == {
        "method": "ga", "max_steps": 1, "per_device_train_batch_size": 2, "learning_rate": 0.1, "negation_scale": 3.0,
        "seed": 4, "save_steps": 5, "bf16": True, "mismatch_k": 2}
    # and the config still counts where no flag is given
    ns = build_parser().parse_args(["unlearn", "--config", str(cfg)])
    assert training_settings(ns)[1]["method"] == "npo"


def test_resume_with_changed_settings_is_refused(tmp_path, tiny_model_dir, files, capsys):
    forget, retain = files
    out = tmp_path / "run"
    args = ["unlearn", "--method", "llmu", "--model", str(tiny_model_dir), "--forget", str(forget), "--retain", str(retain),
            "--out", str(out), "--max-steps", "4", "--batch-size", "2", "--set", "mismatch_k=1", "--save-steps", "2"]
    assert main([*args, "--lr", "0.01", "--max-steps", "2"]) == 0  # a finished run to copy a checkpoint from
    partial = partial_path(out)
    os.rename(out, partial)
    (partial / "checkpoints").mkdir()
    ckpt = partial / "checkpoints" / "checkpoint-2"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text("{}")
    capsys.readouterr()
    assert main([*args, "--lr", "0.02", "--max-steps", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume with different settings" in err and "learning_rate: 0.01 → 0.02" in err


def test_outputs_follow_the_umask(tmp_path):
    from unlearnkit.outputs import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
        os.umask(0o077)
        write_text_atomic(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600


def test_out_of_space_is_one_line(monkeypatch, tmp_path, tiny_model_dir, files, capsys):
    import errno

    import unlearnkit.runs.train as run_train

    forget, _ = files

    def full(*a, **k):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0") from OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(run_train, "train_into", full)
    monkeypatch.setattr("unlearnkit.runs.train_into", full)
    assert main(ga(tiny_model_dir, forget, tmp_path / "q")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no space left" in err and "--resume" in err


@pytest.mark.parametrize("native,choice,expected,warns", [
    (False, None, False, False), (True, None, True, False), (False, "auto", False, False), (True, "auto", True, False),
    (False, "bf16", True, True), (True, "bf16", True, False), (True, "fp32", False, False)])
def test_precision_follows_the_hardware(monkeypatch, capsys, native, choice, expected, warns):
    from unlearnkit.cli import build_parser
    from unlearnkit.runs import training_settings

    monkeypatch.setattr("unlearnkit.distributed.native_bf16", lambda: native)
    argv = ["unlearn"] + (["--precision", choice] if choice else [])
    assert training_settings(build_parser().parse_args(argv))[1]["bf16"] is expected
    err = capsys.readouterr().err
    assert ("no native bf16" in err) is warns and (not warns or len(err.strip().splitlines()) == 1)
    assert build_parser().parse_args(["unlearn", "--bf16"]).precision == "bf16"  # the old flag is an alias


def test_progress_lines_when_output_is_not_a_terminal(tmp_path, tiny_model_dir, files, capsys):
    forget, retain = files
    assert main(["unlearn", "--method", "ga", "--model", str(tiny_model_dir), "--forget", str(forget),
                 "--out", str(tmp_path / "run"), "--max-steps", "2", "--batch-size", "2"]) == 0
    err = capsys.readouterr()
    assert "step 1/2: loss" in err.err and "s/step" in err.err and "{'loss'" not in err.out + err.err
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"q{i}?"} for i in range(3)])
    normal = write_jsonl(tmp_path / "n.jsonl", [{"prompt": "hi?", "response": "hello"}])
    assert main(["collect", "--model", str(tiny_model_dir), "--prompts", str(prompts), "--out", str(tmp_path / "c.jsonl"),
                 "--max-new-tokens", "2", "--judge", "refusal"]) == 0
    assert "generating answers: 3/3 answers (100%)" in capsys.readouterr().err
    assert main(["eval", "--model", str(tiny_model_dir), "--harmful", str(prompts), "--normal", str(normal),
                 "--out", str(tmp_path / "ev"), "--max-new-tokens", "2", "--judge", "refusal", "--no-cache"]) == 0
    assert "generating answers: 4/4 answers (100%)" in capsys.readouterr().err


def test_resume_keeps_each_logged_step_once(tmp_path):
    """A run killed after its last checkpoint and its end-of-training summary: the summary and the steps
    after the checkpoint go, so the resumed run's own lines are not duplicates."""
    import json

    from unlearnkit.runs import keep_log_until

    log = tmp_path / "train_log.jsonl"
    rows = [{"step": s, "loss": 1.0 / s} for s in range(1, 6)] + [{"step": 5, "train_runtime": 9.0}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "lo')  # a line cut short by the kill
    keep_log_until(log, 4)
    assert [json.loads(l) for l in log.read_text().splitlines()] == rows[:4]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    keep_log_until(log, 5)  # killed after the final checkpoint: only the summary goes
    assert [json.loads(l) for l in log.read_text().splitlines()] == rows[:5]
