"""Same global batch, same weights: two processes under `accelerate launch`, gradient accumulation,
gradient checkpointing. And bf16 passes through to the Trainer."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import write_jsonl
from unlearnkit.cli import main


@pytest.fixture
def two_pairs(tmp_path, pairs):
    # As many pairs as one global batch: every step sees the same two examples, whatever order the
    # one- and two-process samplers draw them in, so only the gradient path is compared.
    forget, retain = pairs
    return write_jsonl(tmp_path / "f.jsonl", forget[:2]), write_jsonl(tmp_path / "r.jsonl", retain[:2])


def unlearn_args(model_dir, files, out, method, batch, full=False, extra=()):
    forget, retain = files
    return ["unlearn", "--method", method, "--model", str(model_dir), "--forget", str(forget), "--retain", str(retain),
            "--out", str(out), "--max-steps", "3", "--batch-size", str(batch), "--lr", "0.01", "--set", "mismatch_k=1",
            "--set", "save_strategy=no",
            # SGD: Adam divides by √v, which turns float-level gradient noise on near-zero
            # gradients into visible weight differences; SGD keeps the comparison exact
            "--set", "optim=sgd", "--set", "max_grad_norm=0", *(["--full"] if full else []), *extra]


def launch_two(flags: list[str], target: list[str], args, env_extra=None):
    """`accelerate launch` of target (a script, or -m module) with two processes, one thread each."""
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    cmd = [accelerate, "launch", *flags, "--num_processes", "2", "--mixed_precision", "no", *target, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def trained(out):
    return load_file(str(out / "model" / "model.safetensors"))


def assert_same(a, b, atol=1e-5):
    for name in a:
        assert torch.allclose(a[name], b[name], atol=atol), name


# Every method; NPO also under full fine-tuning, where θ₀ is a frozen copy rather than the disabled adapter.
@pytest.mark.parametrize("method,full", [("ga", False), ("sku", False), ("ft-negate", False), ("llmu", False),
                                         ("npo", False), ("npo", True), ("simnpo", False), ("rmu", False),
                                         ("refusal-dpo", False), ("emu", False)])
def test_two_processes_match_one(tmp_path, tiny_model_dir, two_pairs, method, full):
    assert main(unlearn_args(tiny_model_dir, two_pairs, tmp_path / "one", method, 2, full)) == 0
    # Not `accelerate launch --cpu`: accelerate's CPU launcher starts a single process unless given an
    # MPI hostfile. `--multi_gpu` starts two torchrun ranks; with no GPU unlearnkit selects gloo on CPU.
    done = launch_two(["--multi_gpu", "--num_machines", "1", "--dynamo_backend", "no"], ["-m", "unlearnkit.cli"],
                      unlearn_args(tiny_model_dir, two_pairs, tmp_path / "two", method, 1, full))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["train"]["processes"] == 2  # really two ranks

    single, double = trained(tmp_path / "one"), trained(tmp_path / "two")
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(single[k], base[k]) for k in single)  # training did something
    assert_same(single, double)
    assert not (tmp_path / "two.partial").exists()


def test_accumulation_checkpointing_and_bf16_pass_through(tmp_path, tiny_model_dir, two_pairs):
    def run(name, batch, *extra):
        assert main(unlearn_args(tiny_model_dir, two_pairs, tmp_path / name, "sku", batch, extra=extra)) == 0
        return trained(tmp_path / name)

    reference = run("plain", 2)
    assert_same(reference, run("accumulated", 1, "--set", "gradient_accumulation_steps=2"))
    assert_same(reference, run("checkpointed", 2, "--set", "activation_checkpointing=true"))
    half = run("bf16", 2, "--bf16")
    assert not all(torch.equal(reference[k], half[k]) for k in reference)  # autocast really ran in bf16...
    assert_same(reference, half, atol=5e-3)  # ...and trained the same way


def test_an_error_on_one_rank_ends_every_rank_within_a_minute(tmp_path, tiny_model_dir, two_pairs):
    import time

    # Rank 1 fails at its second step while rank 0 waits for it in the gradient all-reduce: the
    # launcher must end rank 0 too, instead of leaving it blocked in the collective.
    failed_at = tmp_path / "failed_at"
    script = tmp_path / "fail_on_rank1.py"
    script.write_text(
        "import os, sys, time\n"
        "import transformers\n"
        "from unlearnkit.cli import main\n"
        "step = transformers.Trainer.training_step\n"
        "def failing(self, *args, **kwargs):\n"
        "    if os.environ['RANK'] == '1' and self.state.global_step == 1:\n"
        f"        open({str(failed_at)!r}, 'w').write(str(time.time()))\n"
        "        raise RuntimeError('injected failure on rank 1')\n"
        "    return step(self, *args, **kwargs)\n"
        "transformers.Trainer.training_step = failing\n"
        "sys.exit(main(sys.argv[1:]))\n")
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", str(script),
           *unlearn_args(tiny_model_dir, two_pairs, tmp_path / "two", "ga", 1), "--max-steps", "50"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:  # hung: clean up before failing
            os.killpg(proc.pid, 9)
    ended = time.time()
    assert proc.returncode != 0 and "injected failure on rank 1" in err
    assert ended - float(failed_at.read_text()) < 60  # rank 0 did not wait out the collective's timeout
    survivors = subprocess.run(["pgrep", "-f", str(script)], capture_output=True, text=True).stdout.split()
    assert not survivors, survivors  # no rank outlives the launcher


def fsdp_launch(target: list[str], args, env_extra=None):
    config = os.path.join(os.path.dirname(__file__), "..", "configs", "accelerate", "fsdp.yaml")
    return launch_two(["--config_file", config], target, args, env_extra)


# The three cases: a LoRA method, a full fine-tune with a frozen reference model (sharded
# too), and SKU under full fine-tuning, whose negation reads the gathered θ_h and streams θ₀.
@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine accelerate shards by itself; this is the CPU path")
@pytest.mark.parametrize("method,full", [("ga", False), ("npo", True), ("sku", True)])
def test_fsdp_on_two_cpu_ranks_shards_and_matches_one_process(tmp_path, tiny_model_dir, two_pairs, method, full):
    assert main(unlearn_args(tiny_model_dir, two_pairs, tmp_path / "one", method, 2, full)) == 0
    done = fsdp_launch(["-m", "unlearnkit.cli"], unlearn_args(tiny_model_dir, two_pairs, tmp_path / "two", method, 1, full))
    assert done.returncode == 0, done.stderr[-3000:]
    train = json.loads((tmp_path / "two" / "metrics.json").read_text())["train"]
    assert train["processes"] == 2 and train["distributed"] == "FSDP"
    assert train["weights_held_per_process"] < 0.6  # each rank really held about half the weights
    single, double = trained(tmp_path / "one"), trained(tmp_path / "two")
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(single[k], base[k]) for k in single)
    assert_same(single, double)
    if method == "sku":  # θ_h kept for `negate` is the gathered one, too
        assert_same(load_file(str(tmp_path / "one" / "harmful" / "model.safetensors")),
                    load_file(str(tmp_path / "two" / "harmful" / "model.safetensors")))


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine accelerate shards by itself; this is the CPU path")
def test_fsdp_run_resumes_from_its_sharded_checkpoint(tmp_path, tiny_model_dir, two_pairs):
    # AdamW, not SGD: torch cannot reload an empty optimizer state (plain SGD keeps none) under FSDP2
    script = tmp_path / "fail_at_step_2.py"
    script.write_text(
        "import os, sys\n"
        "import transformers\n"
        "from unlearnkit.cli import main\n"
        "step = transformers.Trainer.training_step\n"
        "def failing(self, *args, **kwargs):\n"
        "    if self.state.global_step == 2 and os.environ.get('FAIL_AT_2'):\n"
        "        raise RuntimeError('injected failure')\n"
        "    return step(self, *args, **kwargs)\n"
        "transformers.Trainer.training_step = failing\n"
        "sys.exit(main(sys.argv[1:]))\n")
    forget, retain = two_pairs

    def args(out):
        return ["unlearn", "--method", "npo", "--full", "--model", str(tiny_model_dir), "--forget", str(forget),
                "--retain", str(retain), "--out", str(out), "--max-steps", "3", "--batch-size", "1", "--lr", "0.001",
                "--set", "mismatch_k=1", "--set", "save_steps=1"]

    assert fsdp_launch([str(script)], args(tmp_path / "whole")).returncode == 0
    assert fsdp_launch([str(script)], args(tmp_path / "cut"), {"FAIL_AT_2": "1"}).returncode != 0
    assert (tmp_path / "cut.partial" / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists()
    done = fsdp_launch([str(script)], args(tmp_path / "cut") + ["--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same(trained(tmp_path / "whole"), trained(tmp_path / "cut"), atol=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine accelerate shards by itself; this is the CPU path")
def test_negation_aware_full_fine_tuning_under_fsdp_stops_with_the_fix(tmp_path, tiny_model_dir, two_pairs):
    done = fsdp_launch(["-m", "unlearnkit.cli"], unlearn_args(tiny_model_dir, two_pairs, tmp_path / "two", "sku", 1, True,
                                                              extra=("--set", "sku_negated_retain_weight=1")))
    assert done.returncode != 0 and "drop --full to train τ as a LoRA adapter" in done.stderr


def test_fsdp_on_cpu_needs_fsdp2_and_says_so(monkeypatch):
    from unlearnkit.distributed import cpu_fsdp_plugin
    from unlearnkit.errors import UnlearnkitError

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert cpu_fsdp_plugin().fsdp_version == 2
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(UnlearnkitError, match="fsdp_version: 2"):
        cpu_fsdp_plugin()
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: nothing to shard, plain training
    assert cpu_fsdp_plugin() is None


@pytest.mark.parametrize("name,stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_configs_build_accelerates_plugin(name, stage):
    # DeepSpeed needs GPUs to run; what can be checked here is that accelerate accepts the shipped
    # file: an unknown or misspelt key is a TypeError, a wrong stage shows in the built config.
    import yaml
    from accelerate.utils import DeepSpeedPlugin

    path = os.path.join(os.path.dirname(__file__), "..", "configs", "accelerate", f"{name}.yaml")
    config = yaml.safe_load(open(path))
    assert config["distributed_type"] == "DEEPSPEED"
    plugin = DeepSpeedPlugin(**config["deepspeed_config"])
    assert plugin.zero_stage == stage
    assert plugin.deepspeed_config["zero_optimization"]["stage"] == stage
    assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)
