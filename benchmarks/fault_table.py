"""Fault table: kill -9 unlearnkit commands at random moments on the default model, then rerun them,
and check that no output was lost or corrupted.

For each trial a command (collect, unlearn with LoRA, unlearn with full fine-tuning, negate, eval)
is started, killed with SIGKILL after a random delay, and run again (`--resume` where a checkpoint
exists; plain rerun otherwise; `--overwrite` only for a folder the killed run left that carries our
marker). Afterwards its output must be complete and, for unlearn, equal to an uninterrupted run's
weights to 1e-6 with each logged step once. Prints one JSON object per trial and a summary line.

    python benchmarks/fault_table.py --trials 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unlearnkit.distributed import cpu_name

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4


def command(kind: str, work: Path, data: dict) -> tuple[list[str], Path]:
    out = work / kind
    train = ["--model", "default", "--forget", data["forget"], "--retain", data["retain"], "--max-steps", str(STEPS),
             "--batch-size", "2", "--save-steps", "1", "--set", "mismatch_k=1", "--set", "save_total_limit=2", "--out", str(out)]
    if kind == "collect":
        return ["collect", "--prompts", data["prompts"], "--out", str(out) + ".jsonl", "--max-new-tokens", "24"], Path(str(out) + ".jsonl")
    if kind == "unlearn-lora":
        return ["unlearn", "--method", "sku", *train], out
    if kind == "unlearn-full":
        return ["unlearn", "--method", "ga", "--full", *train], out
    if kind == "negate":
        return ["negate", "--harmful", data["harmful"], "--lambdas", "1,2", "--harmful-prompts", data["prompts"],
                "--normal", data["normal"], "--safe", data["prompts"], "--max-new-tokens", "16", "--out", str(out)], out
    return ["eval", "--model", "default", "--harmful", data["prompts"], "--normal", data["normal"], "--max-new-tokens", "16",
            "--out", str(out), "--no-cache"], out


def run(args: list[str], env: dict, kill_after: float | None = None) -> tuple[int, float]:
    start = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "unlearnkit.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if kill_after is None:
        _, err = proc.communicate()
        if proc.returncode:
            print(err[-2000:], file=sys.stderr)
        return proc.returncode, time.time() - start
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return -9, time.time() - start
    return proc.returncode, time.time() - start


def state_of(out: Path) -> str:
    partial = out.with_name(out.name + ".partial")
    if out.exists() and partial.exists():
        return "both"
    if out.exists():
        return "complete"
    if partial.exists():
        return "resumable" if any(partial.glob("checkpoints/checkpoint-*/trainer_state.json")) else "unfinished"
    return "absent"


def same_weights(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    if set(x) != set(y):
        return float("inf")
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


def check(kind: str, out: Path, reference: Path) -> dict:
    if kind == "collect":
        lines = out.read_text().splitlines()
        return {"ok": all(json.loads(l)["response"] for l in lines), "rows": len(lines)}
    if kind.startswith("unlearn"):
        steps = [json.loads(l).get("step") for l in (out / "train_log.jsonl").read_text().splitlines()]
        ref_steps = [json.loads(l).get("step") for l in (reference / "train_log.jsonl").read_text().splitlines()]
        diff = same_weights(out, reference)
        return {"ok": diff <= 1e-6 and steps == ref_steps, "max_weight_diff": diff, "log_steps": steps == ref_steps}
    metrics = out / ("negate.json" if kind == "negate" else "metrics.json")
    return {"ok": metrics.exists() and bool(json.loads(metrics.read_text()))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default="collect,unlearn-lora,unlearn-full,negate,eval")
    parser.add_argument("--kill-range", default="0.05,1.0", help="kill between these fractions of an uninterrupted run")
    ns = parser.parse_args()
    kill_lo, kill_hi = (float(x) for x in ns.kill_range.split(","))
    rng = random.Random(ns.seed)
    work = Path(tempfile.mkdtemp(prefix="unlearnkit-faults-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "UNLEARNKIT_CACHE": os.environ.get("UNLEARNKIT_CACHE", str(Path.home() / ".cache" / "unlearnkit"))}
    from unlearnkit.data import load_demo

    demo = {name: load_demo(name) for name in ("harmful", "normal")}
    data = {}
    for name, rows in (("forget", demo["harmful"][:12]), ("retain", demo["normal"][:12]),
                       ("prompts", [{"prompt": r["prompt"]} for r in demo["harmful"][-6:]]), ("normal", demo["normal"][-6:])):
        path = work / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        data[name] = str(path)
    # Uninterrupted references (and their durations, which bound the random kill moments).
    refs, durations = work / "reference", {}
    refs.mkdir()
    kinds = ns.kinds.split(",")
    needed = [k for k in ("unlearn-lora", "unlearn-full", "collect", "eval") if k in kinds or (k == "unlearn-lora" and "negate" in kinds)]
    for kind in needed:
        args, out = command(kind, refs, data)
        code, durations[kind] = run(args, env)
        assert code == 0, f"reference {kind} failed"
    if "negate" in kinds:
        data["harmful"] = str(refs / "unlearn-lora" / "harmful")
        args, _ = command("negate", refs, data)
        code, durations["negate"] = run(args, env)
        assert code == 0, "reference negate failed"
    results = []
    for trial in range(ns.trials):
        kind = kinds[trial % len(kinds)]
        trial_dir = work / f"trial{trial}"
        trial_dir.mkdir()
        args, out = command(kind, trial_dir, data)
        kill_after = rng.uniform(kill_lo, kill_hi) * durations[kind]
        killed_code, _ = run(args, env, kill_after)
        after_kill = state_of(out)
        if after_kill == "resumable":
            rerun = args + ["--resume"]
        elif after_kill in ("unfinished", "complete") and kind != "collect":
            rerun = args + ["--overwrite"]  # a folder the killed run marked as ours (or finished)
        elif after_kill == "complete":
            rerun = args + ["--overwrite"]
        else:
            rerun = args
        code, _ = run(rerun, env)
        final = state_of(out) if kind != "collect" else ("complete" if out.exists() else "absent")
        verdict = check(kind, out, refs / kind) if code == 0 and final == "complete" else {"ok": False}
        row = {"trial": trial, "command": kind, "killed_after_s": round(kill_after, 1), "killed": killed_code == -9,
               "state_after_kill": after_kill, "rerun": rerun[-1] if rerun is not args else "plain", "rerun_exit": code,
               "final": final, **verdict}
        results.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(trial_dir, ignore_errors=True)
    lost = sum(not r["ok"] for r in results)
    print(json.dumps({"name": "fault_table", "trials": len(results), "killed": sum(r["killed"] for r in results),
                      "lost_or_corrupt": lost, "cpu": cpu_name(), "reference_seconds": {k: round(v, 1) for k, v in durations.items()}}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
