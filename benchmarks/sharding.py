"""Sharded against replicated training on two CPU ranks: peak memory and step time per rank.

    python benchmarks/sharding.py [--method npo] [--steps 4]

Runs the same `unlearnkit unlearn --full` command twice under `accelerate launch` with two
processes over gloo: once with the DDP config, once with the FSDP config (FSDP2, full sharding;
the frozen reference model is sharded too). Each rank reports its own peak RSS. Prints one JSON
object per line, each naming the CPU it ran on. Run nothing else meanwhile: two ranks share the cores.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each rank runs the CLI, then appends its own peak RSS (what RUSAGE_SELF saw, in MB) to a file.
RANK_SCRIPT = """
import json, os, resource, sys
from unlearnkit.cli import main
code = main(sys.argv[1:])
with open(os.environ["RSS_FILE"], "a") as f:
    f.write(json.dumps({"rank": int(os.environ["RANK"]), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}) + "\\n")
sys.exit(code)
"""


def launch(config, args, work):
    script, rss_file = os.path.join(work, "rank.py"), os.path.join(work, f"rss-{config}.jsonl")
    with open(script, "w") as f:
        f.write(RANK_SCRIPT)
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    cmd = [accelerate, "launch", "--config_file", os.path.join(ROOT, "configs", "accelerate", f"{config}.yaml"),
           "--num_processes", "2", "--mixed_precision", "no", script, *args, "--out", os.path.join(work, config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "RSS_FILE": rss_file}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{config} run failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(work, config, "metrics.json")) as f:
        train = json.load(f)["train"]
    with open(rss_file) as f:
        ranks = sorted((json.loads(line) for line in f), key=lambda r: r["rank"])
    return train, ranks


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="npo")
    parser.add_argument("--steps", type=int, default=4)
    ns = parser.parse_args()
    from unlearnkit.data.demo import demo_path
    from unlearnkit.distributed import cpu_name

    args = ["unlearn", "--method", ns.method, "--full", "--model", "default", "--forget", str(demo_path("harmful")),
            "--retain", str(demo_path("normal")), "--max-steps", str(ns.steps), "--batch-size", "2",
            "--set", "save_strategy=no"]
    work = tempfile.mkdtemp(prefix="unlearnkit-sharding-")
    try:
        runs = {config: launch(config, args, work) for config in ("ddp", "fsdp")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    same = {"method": ns.method, "mode": "full fine-tune, fp32, 2 CPU ranks over gloo, batch 2 per rank",
            "steps": ns.steps, "cpu": cpu_name()}
    for config, (train, ranks) in runs.items():
        print(json.dumps({"name": f"sharding_{config}", "distributed": train["distributed"],
                          "weights_held_per_process": train["weights_held_per_process"],
                          "seconds_per_step": round(train["seconds"] / train["steps"], 2),
                          "peak_rss_mb_per_rank": [round(r["peak_rss_mb"]) for r in ranks], **same}), flush=True)
    (ddp, ddp_ranks), (fsdp, fsdp_ranks) = runs["ddp"], runs["fsdp"]
    print(json.dumps({"name": "fsdp_memory_ratio",
                      "value": round(max(r["peak_rss_mb"] for r in fsdp_ranks) / max(r["peak_rss_mb"] for r in ddp_ranks), 3),
                      "unit": "FSDP / DDP, highest rank's peak RSS (lower is better)", **same}), flush=True)


if __name__ == "__main__":
    main()
