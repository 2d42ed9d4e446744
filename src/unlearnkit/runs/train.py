"""Doing a run: its data, training into an output folder (with checkpoints, resume and its log),
and collecting a model's own flagged answers. Used alike by the CLI, demo and compare."""

from __future__ import annotations

import json
import time
from pathlib import Path

from unlearnkit.errors import UnlearnkitError
from unlearnkit.runs.settings import make_arguments


def load_set(path, what: str, prompt_col=None, response_col=None, require_response=True) -> list[dict]:
    from unlearnkit.data import load_pairs

    if path is None:
        raise UnlearnkitError(f"no {what} data: pass --{what} FILE")
    return load_pairs(path, prompt_col=prompt_col, response_col=response_col, require_response=require_response)


def latest_checkpoint(work: Path) -> str | None:
    """Newest complete Trainer checkpoint; one cut short by a kill (no trainer_state.json yet) is dropped."""
    import shutil

    found = sorted(work.glob("checkpoints/checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
    for checkpoint in reversed(found):
        if (checkpoint / "trainer_state.json").exists():
            return str(checkpoint)
        shutil.rmtree(checkpoint, ignore_errors=True)
    return None


# Settings that only say where or how often to write: they may change between a run and its resume.
_RESUMABLE_CHANGES = {"save_steps", "save_total_limit", "logging_steps", "disable_tqdm", "lora_targets_chosen"}


def check_same_settings(saved: Path, config: dict) -> None:
    """--resume continues a run only with the settings it started with: a changed learning rate or
    data file would silently give a model that no single setting produced."""
    import yaml

    if not saved.exists():
        return
    before = yaml.safe_load(saved.read_text()) or {}
    changed = sorted(k for k in set(before) | set(config)
                     if k not in _RESUMABLE_CHANGES and str(before.get(k)) != str(config.get(k)))
    if changed:
        detail = ", ".join(f"{k}: {before.get(k)!r} → {config.get(k)!r}" for k in changed[:4])
        raise UnlearnkitError(f"--resume with different settings ({detail}): resume with the original settings, "
                              "or start over with --overwrite")


def keep_log_until(log: Path, step: int) -> None:
    """Drop the log lines of steps after the checkpoint being resumed (they will be run and logged
    again) and the killed run's end-of-training summary, if it got that far (the resumed run writes
    its own)."""
    from unlearnkit.outputs import write_text_atomic

    if not log.exists():
        return
    kept = []
    for line in log.read_text().splitlines():
        try:
            row = json.loads(line)
            if row.get("step", 0) <= step and "train_runtime" not in row:
                kept.append(line + "\n")
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    write_text_atomic(log, "".join(kept))


def train_into(work: Path, model_name: str, forget, retain, fields: dict, resume: bool, extra_config: dict | None = None):
    """Train one method into `work` (model/ with its model card README.md, config.yaml, train_log.jsonl
    and, for negation methods, harmful/ — the LoRA adapter or full model before negation, so `negate`
    can rescale λ later).
    Returns (model, tokenizer, summary)."""
    import yaml

    from unlearnkit.methods import unlearn
    from unlearnkit.methods.train import JsonlLogCallback
    from unlearnkit.models import load_model, model_dir, save_model
    from unlearnkit.runs.card import write_model_card
    from unlearnkit.outputs import write_text_atomic

    args = make_arguments(fields, work)
    config = {"model": model_name, **(extra_config or {}), **fields}
    checkpoint = latest_checkpoint(work) if resume else None
    if checkpoint:
        check_same_settings(work / "config.yaml", config)
        keep_log_until(work / "train_log.jsonl", int(checkpoint.rsplit("-", 1)[-1]))
    write_text_atomic(work / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    model, tokenizer = load_model(model_name)
    start = time.time()
    model, trainer = unlearn(model, tokenizer, forget, retain, args,
                             base_dir=None if args.lora else model_dir(model_name),
                             callbacks=[JsonlLogCallback(work / "train_log.jsonl")],
                             resume=checkpoint or False, harmful_dir=work / "harmful")
    chosen = getattr(args, "lora_targets_chosen", None)
    if trainer.is_world_process_zero():
        save_model(model, tokenizer, work / "model")
        write_model_card(work / "model", model_name, args.method,
                         {**fields, "learning_rate": args.learning_rate, "lora": args.lora, "lora_targets_chosen": chosen,
                          "steps": trainer.state.global_step, "processes": trainer.accelerator.num_processes},
                         {role: {"name": (extra_config or {}).get(role), "size": len(rows) if rows is not None else None}
                          for role, rows in (("forget", forget), ("retain", retain))})
        if chosen:  # what `all-linear` meant for this model, on record
            write_text_atomic(work / "config.yaml", yaml.safe_dump({**config, "lora_targets_chosen": chosen}, sort_keys=False))
    trainer.accelerator.wait_for_everyone()  # rank 0 renames the folder only after every rank is done in it
    history = [h for h in trainer.state.log_history if "loss" in h]
    summary = {"method": args.method, "steps": trainer.state.global_step, "seconds": round(time.time() - start, 1),
               "processes": trainer.accelerator.num_processes,
               "distributed": str(trainer.accelerator.distributed_type).rsplit(".", 1)[-1],
               "weights_held_per_process": held_share(trainer.model), "lora_targets": chosen, "final": history[-1] if history else {}}
    return model, tokenizer, summary


def held_share(model) -> float:
    """The share of the model's weights one process holds: 1 unless FSDP sharded them."""
    from torch.distributed.tensor import DTensor

    held = total = 0
    for p in model.parameters():
        total += p.numel()
        held += p.to_local().numel() if isinstance(p, DTensor) else p.numel()
    return round(held / total, 4) if total else 1.0


def forget_retain(run: dict) -> tuple[list[dict], list[dict] | None]:
    forget = load_set(run.get("forget"), "forget", run.get("prompt_col"), run.get("response_col"))
    retain = load_set(run["retain"], "retain") if run.get("retain") else None
    return forget, retain


def collected_file(path: Path) -> bool:
    """Is this a file `collect` wrote (JSON lines with prompt, response and judge_score)?"""
    from unlearnkit.data.load import read_jsonl

    try:
        return all({"prompt", "response", "judge_score"} <= set(r) for r in read_jsonl(path.read_text(), path))
    except (OSError, UnicodeDecodeError, UnlearnkitError):
        return False


def collect(model, tokenizer, prompts: list[dict], judge, samples: int, threshold: float, settings) -> list[dict]:
    """The model's own answers to harmful prompts that the judge flags: a forget set from the model itself."""
    from unlearnkit.evaluation.evaluate import sample_and_judge

    return [{"prompt": r["prompt"], "response": r["response"], "category": r.get("category", ""), "judge_score": r["judge_score"]}
            for r in sample_and_judge(model, tokenizer, prompts, judge, samples, settings) if r["judge_score"] >= threshold]
