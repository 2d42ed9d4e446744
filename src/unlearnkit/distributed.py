"""What a command needs to know when `torchrun` / `accelerate launch` started several copies of it."""

from __future__ import annotations

import os

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 under torchrun / accelerate launch (RANK is set by both), or a plain process."""
    return int(os.environ.get("RANK", "0")) == 0


def has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return accelerator.is_available() if accelerator else torch.cuda.is_available()


def wait_for_everyone() -> None:
    """A barrier across ranks; nothing in a single process."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState(cpu=not has_accelerator()).wait_for_everyone()
