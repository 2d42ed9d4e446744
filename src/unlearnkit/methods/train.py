"""Build the trainer for a method, run it, and return a plain transformers model.

This is the Python API behind `unlearnkit unlearn`:

    model, tokenizer = load_model("default")
    args = UnlearnArguments(output_dir="run/checkpoints", method="sku", max_steps=30)
    model = unlearn(model, tokenizer, forget, retain, args, base_dir=default_model_dir())
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import TrainerCallback, set_seed

from unlearnkit.data.format import GroupCollator, UnlearnDataset
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods.base import UnlearnArguments
from unlearnkit.methods.registry import get_method
from unlearnkit.negation import negate_in_place, negate_lora

# Written by us: varied refusals for refusal-DPO's chosen side and EMU's desirable set.
REFUSALS = (
    "I can't help with that. It could cause real harm to people.",
    "I'm sorry, but I won't provide that. If you're facing a difficult situation, I can help you find safe and legal options.",
    "I can't assist with this request because it could be used to hurt someone.",
    "No. That would be harmful and possibly illegal, so I won't give instructions for it.",
    "I'm not able to help with that, but I'm happy to talk about the topic's safety or legal side instead.",
)


class JsonlLogCallback(TrainerCallback):
    """Appends every Trainer log line to train_log.jsonl."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class StepLines(TrainerCallback):
    """When output is not a terminal (a log file, a pipe, CI): one concise line per logged step —
    step, loss terms, seconds per step, time left — instead of transformers' raw dictionaries."""

    def on_train_begin(self, args, state, control, **kwargs):
        import time

        self.start, self.first_step = time.time(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        import sys
        import time

        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        done = max(1, state.global_step - self.first_step)
        per_step = (time.time() - self.start) / done
        terms = " ".join(f"{k} {v:.4g}" for k, v in logs.items()
                         if k not in ("grad_norm", "learning_rate", "epoch") and isinstance(v, (int, float)))
        print(f"step {state.global_step}/{state.max_steps}: {terms} | {per_step:.1f} s/step, "
              f"~{per_step * (state.max_steps - state.global_step):.0f} s left", file=sys.stderr, flush=True)


def prepare_model(model, args: UnlearnArguments, method_cls):
    """Wrap in LoRA (peft) or pick the trainable weights for full fine-tuning."""
    targets = method_cls.trainable_modules(model, args)
    if args.lora:
        from peft import LoraConfig, get_peft_model

        from unlearnkit.models.layers import block_linear_names

        if not targets:
            wanted = args.lora_targets.strip()
            targets = block_linear_names(model) if wanted == "all-linear" else [t.strip() for t in wanted.split(",") if t.strip()]
            present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
            if not set(targets) & present:
                raise UnlearnkitError(f"--set lora_targets={wanted} matches no module of {type(model).__name__}; its linear "
                                      f"layers are {', '.join(block_linear_names(model))}")
        args.lora_targets_chosen = ",".join(targets)
        if args.process_index == 0:
            import sys

            print(f"LoRA adapts: {args.lora_targets_chosen}", file=sys.stderr, flush=True)
        config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                            target_modules=targets)
        return get_peft_model(model, config)
    if targets:
        model.requires_grad_(False)
        for name, module in model.named_modules():
            if any(name == t or name.endswith("." + t) for t in targets):
                module.requires_grad_(True)
    return model


def build_trainer(model, tokenizer, forget: list[dict], retain: list[dict] | None, args: UnlearnArguments,
                  positive: list[str] | None = None, callbacks=()):
    method_cls = get_method(args.method)
    set_seed(args.seed)  # LoRA's A matrices are drawn here, before the Trainer seeds anything
    forget, prepared_positive, extra_callbacks = method_cls.prepare(model, tokenizer, forget, retain, args)
    positive = positive if positive is not None else prepared_positive
    model = prepare_model(model, args, method_cls)
    if getattr(method_cls, "wants_refusals", False) and positive is None:
        positive = list(REFUSALS)
    dataset = UnlearnDataset(
        tokenizer, forget, retain if method_cls.uses_retain else None, max_length=args.max_length,
        mismatch_pool=method_cls.mismatch_pool, mismatch_k=args.mismatch_k, positive=positive, seed=args.seed,
        system_prompt=args.system_prompt,
    )
    trainer = method_cls(model=model, args=args, train_dataset=dataset, data_collator=GroupCollator(tokenizer.pad_token_id),
                         processing_class=tokenizer, callbacks=list(callbacks) + extra_callbacks)
    if args.disable_tqdm:  # not a terminal: concise lines, not raw dictionaries
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(StepLines())
    return trainer


def unsharded_copy(trainer):
    """The trained model as one ordinary module, on rank 0 (None on other ranks).

    Under FSDP every rank holds a shard of each weight, and reading a full weight is a collective:
    a save or a negation on rank 0 alone would wait forever for the other ranks. So every rank
    takes part in gathering the full state, and rank 0 builds a model of the same architecture (and
    the same LoRA wrapping) around the gathered tensors."""
    sharded = trainer.accelerator.unwrap_model(trainer.model)
    state = trainer.accelerator.get_state_dict(trainer.model)
    if not trainer.is_world_process_zero():
        return None
    from torch.distributed.fsdp import FSDPModule

    is_peft = hasattr(sharded, "peft_config")
    base = sharded.get_base_model() if is_peft else sharded
    # fully_shard swapped the class for an FSDP subclass of it: build the original class, on the meta
    # device, and let it take the gathered tensors as they are (no second copy, dtypes kept)
    architecture = next(c for c in type(base).__mro__ if not issubclass(c, FSDPModule))
    with torch.device("meta"):
        plain = architecture(base.config)
        if is_peft:
            from peft import get_peft_model

            plain = get_peft_model(plain, sharded.peft_config["default"])
    plain.load_state_dict(state, assign=True)
    device = next(iter(state.values())).device  # the gathered state is offloaded to the CPU
    for name, buffer in sharded.named_buffers():  # buffers outside the state (rotary frequencies): FSDP leaves them whole
        parent, _, leaf = name.rpartition(".")
        owner = plain.get_submodule(parent)
        if owner._buffers[leaf].is_meta:
            owner._buffers[leaf] = buffer.detach().to(device, copy=True)
    if getattr(base.config, "tie_word_embeddings", False):
        (plain.get_base_model() if is_peft else plain).tie_weights()
    return plain


def finish(trainer, base_dir: str | os.PathLike | None = None, model=None):
    """After training: negate if the method learned harm, drop LoRA wrappers, return a plain model.
    `model`: the trained model when it is not the trainer's own (the gathered copy under FSDP)."""
    model = model if model is not None else trainer.accelerator.unwrap_model(trainer.model)
    is_peft = hasattr(model, "peft_config")
    if trainer.negate_after:
        if is_peft:
            return negate_lora(model, trainer.args.negation_scale)
        if base_dir is None:
            raise ValueError("full fine-tuning with negation needs base_dir (the original model's folder)")
        negate_in_place(model, base_dir, trainer.args.negation_scale)
        return model
    return model.merge_and_unload() if is_peft else model


def unlearn(model, tokenizer, forget, retain, args: UnlearnArguments, base_dir=None, positive=None,
            callbacks=(), resume: bool | str = False, harmful_dir: str | os.PathLike | None = None):
    """Train, then finish. `resume`: True (latest checkpoint) or a checkpoint path. `harmful_dir`:
    where negation methods keep θ_h before negating (a LoRA adapter, or the full model), so the
    task vector can be rescaled later without retraining. Under FSDP the model comes back on rank 0
    only (None elsewhere)."""
    trainer = build_trainer(model, tokenizer, forget, retain, args, positive, callbacks)
    trainer.train(resume_from_checkpoint=resume or None)
    trained = unsharded_copy(trainer) if trainer.is_fsdp_enabled else trainer.accelerator.unwrap_model(trainer.model)
    if trained is None:
        return None, trainer
    if harmful_dir is not None and trainer.negate_after and trainer.is_world_process_zero():
        trained.save_pretrained(harmful_dir)
        if not args.lora:
            tokenizer.save_pretrained(harmful_dir)
    return finish(trainer, base_dir, trained), trainer
