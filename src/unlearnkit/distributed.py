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


def cpu_fsdp_plugin():
    """accelerate selects FSDP only for accelerator devices (AcceleratorState.__init__ in
    accelerate/state.py checks FSDP inside its MULTI_GPU/XPU/NPU/... branch), yet torch's FSDP2
    (`fully_shard`) shards on CPU ranks over gloo. Where FSDP was asked for on CPU ranks, this builds
    the plugin from the launcher's settings so the Trainer can switch the run to FSDP itself."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true" or has_accelerator() or world_size() < 2:
        return None
    from accelerate.utils import FullyShardedDataParallelPlugin

    from unlearnkit.errors import UnlearnkitError

    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise UnlearnkitError("FSDP on CPU ranks needs FSDP2: set fsdp_version: 2 in the accelerate config "
                              "(or pass --fsdp_version 2 to accelerate launch)")
    return plugin


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
