"""`accelerate launch --cpu --num_processes 2` gives the one-process result for the same global batch."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import write_jsonl


MULTI_GROUP_GAP = pytest.mark.xfail(
    strict=False,
    reason="known gap: losses over forget + retain groups differ from the one-process run by 1.5-2.6% of "
           "the weight update (ratio of updates ≈ 1.0, so not a loss-scaling bug; not clipping, not the "
           "reference model). Single-group GA matches to 1e-5. Open problem.")


@pytest.mark.parametrize("method,full", [("ga", False), pytest.param("sku", False, marks=MULTI_GROUP_GAP),
                                         pytest.param("npo", True, marks=MULTI_GROUP_GAP)])
def test_two_processes_match_one(tmp_path, tiny_model_dir, pairs, method, full):
    forget, retain = pairs
    # As many pairs as one global batch: every step sees the same two examples, whatever order the
    # one- and two-process samplers draw them in, so only the gradient path is compared.
    f, r = write_jsonl(tmp_path / "f.jsonl", forget[:2]), write_jsonl(tmp_path / "r.jsonl", retain[:2])
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def run(out, launcher, batch):
        cmd = [*launcher, "-m", "unlearnkit.cli", "unlearn", "--method", method, "--model", str(tiny_model_dir),
               "--forget", str(f), "--retain", str(r), "--out", str(out), "--max-steps", "3",
               "--batch-size", str(batch), "--lr", "0.01", "--set", "mismatch_k=1", "--set", "save_strategy=no",
               # SGD: Adam divides by √v, which turns float-level gradient noise on near-zero
               # gradients into visible weight differences; SGD keeps the comparison exact
               "--set", "optim=sgd", "--set", "max_grad_norm=0", *(["--full"] if full else [])]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return load_file(str(out / "model" / "model.safetensors"))

    single = run(tmp_path / "one", [sys.executable], 2)
    double = run(tmp_path / "two", [accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                                    "--mixed_precision", "no", "--dynamo_backend", "no"], 1)
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(single[k], base[k]) for k in single)  # training did something
    for name in single:
        assert torch.allclose(single[name], double[name], atol=1e-5), name
    assert not (tmp_path / "two.partial").exists()
