"""Runs that never lose work: resume after kill -9, determinism, NaN stop, atomic outputs, fuzzed loaders."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from conftest import write_jsonl
from unlearnkit.cli import main
from unlearnkit.data import load_pairs
from unlearnkit.errors import UnlearnkitError


def weights(folder):
    return load_file(str(folder / "model" / "model.safetensors"))


def unlearn_args(model_dir, forget, retain, out, steps, extra=()):
    return ["unlearn", "--method", "llmu", "--model", str(model_dir), "--forget", str(forget), "--retain", str(retain),
            "--out", str(out), "--max-steps", str(steps), "--batch-size", "2", "--set", "mismatch_k=1", "--lr", "0.01",
            *extra]


def cli_process(args, **env_extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **env_extra}
    return subprocess.Popen([sys.executable, "-m", "unlearnkit.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def files(tmp_path, pairs):
    forget, retain = pairs
    return write_jsonl(tmp_path / "f.jsonl", forget), write_jsonl(tmp_path / "r.jsonl", retain)


def test_same_seed_same_weights(tmp_path, tiny_model_dir, files):
    forget, retain = files
    for name in ("a", "b"):
        assert main(unlearn_args(tiny_model_dir, forget, retain, tmp_path / name, 3)) == 0
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert main(unlearn_args(tiny_model_dir, forget, retain, tmp_path / "c", 3, ["--seed", "1"])) == 0
    assert not all(torch.equal(a[k], weights(tmp_path / "c")[k]) for k in a)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, tiny_model_dir, files):
    forget, retain = files
    steps, extra = 30, ["--save-steps", "4", "--set", "save_total_limit=100"]
    straight = cli_process(unlearn_args(tiny_model_dir, forget, retain, tmp_path / "straight", steps, extra))
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    out = tmp_path / "killed"
    proc = cli_process(unlearn_args(tiny_model_dir, forget, retain, out, steps, extra))
    partial = tmp_path / "killed.partial" / "checkpoints"
    deadline = time.time() + 240
    log = tmp_path / "killed.partial" / "train_log.jsonl"

    def logged_past_checkpoint():  # a step after checkpoint-8 is in the log: a resume from 8 will redo it
        if not (partial / "checkpoint-8" / "trainer_state.json").exists() or not log.exists():
            return False
        steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines() if line.endswith("}")]
        return bool(steps) and max(steps) >= 9

    while not logged_past_checkpoint():
        assert proc.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # a killed run leaves no half-written output folder under the final name
    assert main(unlearn_args(tiny_model_dir, forget, retain, out, steps, extra)) == 2  # needs --resume or --overwrite
    assert main(unlearn_args(tiny_model_dir, forget, retain, out, steps, [*extra, "--resume"])) == 0
    a, b = weights(tmp_path / "straight"), weights(out)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not (tmp_path / "killed.partial").exists()
    logged = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    straight_log = [json.loads(line)["step"] for line in (tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()]
    assert logged == straight_log  # each step once: the lines after checkpoint-8 were dropped, then logged again


def test_killed_eval_leaves_no_output(tmp_path, tiny_model_dir):
    harmful = write_jsonl(tmp_path / "h.jsonl", [{"prompt": f"harmful question {i}?"} for i in range(400)])
    normal = write_jsonl(tmp_path / "n.jsonl", [{"prompt": "hi?", "response": "hello"}])
    out = tmp_path / "ev"
    cache = tmp_path / "cache"
    proc = cli_process(["eval", "--model", str(tiny_model_dir), "--harmful", str(harmful), "--normal", str(normal),
                        "--out", str(out), "--max-new-tokens", "32", "--gen-batch-size", "4"], UNLEARNKIT_CACHE=str(cache))
    deadline = time.time() + 240  # wait for an event (the first finished batch reaches the cache), not a fixed time
    while not any(f.stat().st_size for f in cache.glob("generations/*.jsonl")):
        assert proc.poll() is None, "eval ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tmp_path, tiny_model_dir, files, capsys):
    forget, retain = files
    out = tmp_path / "nan"
    code = main(["unlearn", "--method", "ga", "--model", str(tiny_model_dir), "--forget", str(forget), "--out", str(out),
                 "--max-steps", "20", "--batch-size", "2", "--lr", "1e30", "--full", "--save-steps", "1",
                 "--set", "max_grad_norm=0"])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("unlearnkit: error:")]
    assert code == 2 and errors == err[-1:] and "loss became" in err[-1] and "--resume" in err[-1]
    assert not out.exists() and any((tmp_path / "nan.partial" / "checkpoints").glob("checkpoint-*"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))),
       suffix=st.sampled_from([".jsonl", ".json", ".csv", ".tsv"]))
def test_malformed_files_give_a_clean_error(tmp_path, content, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content.encode("utf-8", "surrogatepass") if suffix != ".csv" else content.encode("latin-1", "replace"))
    try:
        rows = load_pairs(path)
    except UnlearnkitError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert rows and all(r["prompt"] and r["response"] for r in rows)
