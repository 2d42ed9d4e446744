"""What a command needs to know about the hardware it runs on, and about the other copies of it that
`torchrun` / `accelerate launch` started."""

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


def unsharded_reason() -> str | None:
    """Why an FSDP launch will not shard here. accelerate selects FSDP only for accelerator devices
    (AcceleratorState.__init__ in accelerate/state.py checks FSDP inside its MULTI_GPU/XPU/NPU/...
    branch): on CPU ranks the same command runs as plain data parallelism over gloo."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not has_accelerator():
        return ("FSDP was requested but there is no GPU: accelerate shards only on accelerators, so this run is "
                "plain data parallelism over gloo (same weights, no memory saving)")
    return None


def cpu_name() -> str:
    """The CPU's model name, for benchmark figures (which must say what they ran on)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    """bf16 matmuls in hardware: CUDA with bf16 support, or a CPU with avx512_bf16 or AMX. Elsewhere
    (AVX2-only CPUs) bf16 is emulated and measured more than 10x slower than fp32."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
