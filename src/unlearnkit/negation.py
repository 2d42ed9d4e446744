"""Stage 2 of SKU, and plain task arithmetic: θ_new = θ₀ − λ·τ with τ = θ_h − θ₀.

Three entry points share one per-tensor formula:
- `negate_lora` / `apply_task_vector`: τ is a LoRA adapter's merged delta B·A·α/r
  (`lora_task_vector`), subtracted from the base in place — rescaling needs no retraining.
- `negate_in_place`: θ_h is a model in memory, θ₀ is streamed tensor by tensor from safetensors.
- `negate_checkpoints`: both are safetensors folders; the result is written shard by shard, so a
  model never needs two full copies in memory (peak ≈ one shard of each).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from unlearnkit.errors import UnlearnkitError


def negate_tensor(base: torch.Tensor, harmful: torch.Tensor, scale: float) -> torch.Tensor:
    """θ₀ − λ·(θ_h − θ₀) for floating tensors; anything else (int buffers) is taken from θ₀."""
    if not base.is_floating_point():
        return base
    if base.shape != harmful.shape:
        raise UnlearnkitError(f"shape mismatch {tuple(base.shape)} vs {tuple(harmful.shape)}: base and harmful models must share an architecture")
    return (base.float() - scale * (harmful.float() - base.float())).to(base.dtype)


def _delta_fp32(module, adapter: str) -> torch.Tensor:
    """B·A·α/r of one LoRA layer computed in fp32, whatever the adapter's dtype (peft's own
    get_delta_weight returns it in the weights' dtype, which rounds a bf16 delta before λ scales it)."""
    from peft.utils import transpose

    scaling = module.scaling[adapter]
    if adapter in getattr(module, "lora_A", {}):
        a, b = module.lora_A[adapter].weight.float(), module.lora_B[adapter].weight.float()
        if a.dim() == 2:
            return transpose(b @ a, module.fan_in_fan_out) * scaling
    elif adapter in getattr(module, "lora_embedding_A", {}):
        a, b = module.lora_embedding_A[adapter].float(), module.lora_embedding_B[adapter].float()
        return transpose(b @ a, True) * scaling
    return module.get_delta_weight(adapter).float()  # other layer kinds (conv): peft's own formula


@torch.no_grad()
def lora_task_vector(peft_model) -> dict[str, torch.Tensor]:
    """τ of a LoRA adapter in fp32: {base parameter name: delta}, keyed as in the unwrapped base
    model. Linear and embedding LoRA layers give B·A·α/r; modules the adapter trains in full
    (`modules_to_save`) give their trained copy minus the original."""
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    prefix = "base_model.model."

    def key(name):
        return name[len(prefix):] if name.startswith(prefix) else name

    tau = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer):
            for adapter in module.active_adapters:
                if adapter in module.lora_A or adapter in getattr(module, "lora_embedding_A", {}):
                    tau[key(name) + ".weight"] = _delta_fp32(module, adapter)
        elif isinstance(module, ModulesToSaveWrapper):
            adapter = module.active_adapter if isinstance(module.active_adapter, str) else module.active_adapter[0]
            if adapter in module.modules_to_save:
                trained = dict(module.modules_to_save[adapter].named_parameters())
                for pname, original in module.original_module.named_parameters():
                    tau[f"{key(name)}.{pname}"] = trained[pname].detach().float() - original.detach().float()
    return tau


@torch.no_grad()
def apply_task_vector(model, tau: dict[str, torch.Tensor], scale: float):
    """θ ← θ − λ·τ for the named parameters (θ is θ₀ here, so this is θ₀ − λ·τ), computed in fp32
    and rounded once to the weights' dtype."""
    params = dict(model.named_parameters())
    missing = [k for k in tau if k not in params]
    if missing:
        raise UnlearnkitError(f"task vector names {missing[0]} which the model lacks: use the model the adapter was trained on")
    for name, delta in tau.items():
        weight = params[name]
        weight.copy_((weight.float() - scale * delta.float().to(weight.device)).to(weight.dtype))
    return model


@torch.no_grad()
def negate_lora(peft_model, scale: float):
    """Drop the adapter (no merge) and subtract λ·τ of its merged delta from the base weights."""
    from peft.utils import ModulesToSaveWrapper

    tau = lora_task_vector(peft_model)
    for module in peft_model.modules():
        if isinstance(module, ModulesToSaveWrapper):  # unload() keeps the trained copy; negation starts from θ₀
            for trained in module.modules_to_save.values():
                trained.load_state_dict(module.original_module.state_dict())
    return apply_task_vector(peft_model.unload(), tau, scale)


def _safetensors_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UnlearnkitError(f"{folder} holds no .safetensors files: save the model with save_pretrained first")
    return files


def _match_by_shape(left_params: dict, left_files: dict) -> dict:
    """Pair tensors the two sides name differently (a checkpoint's `embed_out` is the model's
    `lm_head` in transformers 5) when their shape leaves exactly one candidate on each side."""
    pairs = {}
    for name, param in left_params.items():
        same = [f for f, shape in left_files.items() if tuple(shape) == tuple(param.shape)]
        rivals = [n for n, p in left_params.items() if tuple(p.shape) == tuple(param.shape)]
        if len(same) == 1 and len(rivals) == 1:
            pairs[name] = same[0]
    return pairs


@torch.no_grad()
def negate_in_place(model, base_dir: str | os.PathLike, scale: float) -> None:
    """The trained model holds θ_h; overwrite it with θ₀ − λ·(θ_h − θ₀), θ₀ read tensor by tensor
    from base_dir. Tensors are paired by name (tied weights count once, under any of their names),
    then any left over by a unique shape; a mismatch names the tensors."""
    owners: dict[int, tuple[torch.Tensor, list[str]]] = {}
    params = {id(p) for p in model.parameters()}
    for name, tensor in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False)):
        owners.setdefault(id(tensor), (tensor, []))[1].append(name)
    where, shapes = {}, {}
    for file in _safetensors_files(Path(base_dir)):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                where[name], shapes[name] = file, f.get_slice(name).get_shape()
    plan, left = {}, {}
    for tensor, names in owners.values():
        found = next((n for n in names if n in where), None)
        if found:
            plan[found] = tensor
        elif id(tensor) in params:  # buffers a checkpoint does not hold (rotary tables) are rebuilt, not learned
            left[names[0]] = tensor
    renamed = _match_by_shape(left, {n: s for n, s in shapes.items() if n not in plan})
    plan.update({renamed[n]: t for n, t in left.items() if n in renamed})
    missing = sorted(n for n in left if n not in renamed)
    if missing:
        raise UnlearnkitError(f"base model at {base_dir} lacks {len(missing)} tensors the trained model has "
                              f"({', '.join(missing[:3])}): use the model the run started from")
    for file_name, tensor in plan.items():
        with safe_open(str(where[file_name]), framework="pt") as f:
            tensor.copy_(negate_tensor(f.get_tensor(file_name).to(tensor.device), tensor, scale))


@torch.no_grad()
def negate_checkpoints(base_dir: str | os.PathLike, harmful_dir: str | os.PathLike, out_dir: str | os.PathLike, scale: float) -> Path:
    """Write θ₀ − λ·(θ_h − θ₀) to out_dir with the base model's sharding; config/tokenizer files copied."""
    import shutil

    base_dir, harmful_dir, out_dir = Path(base_dir), Path(harmful_dir), Path(out_dir)
    harmful_index = {}
    for file in _safetensors_files(harmful_dir):
        with safe_open(str(file), framework="pt") as f:
            harmful_index.update({name: file for name in f.keys()})
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in _safetensors_files(base_dir):
        shard = {}
        metadata = None
        with safe_open(str(file), framework="pt") as f:
            metadata = f.metadata()
            for name in f.keys():
                if name not in harmful_index:
                    raise UnlearnkitError(f"{harmful_dir} lacks tensor {name}: base and harmful models must share an architecture")
                with safe_open(str(harmful_index[name]), framework="pt") as h:
                    shard[name] = negate_tensor(f.get_tensor(name), h.get_tensor(name), scale).contiguous()
        save_file(shard, str(out_dir / file.name), metadata=metadata or {"format": "pt"})
        del shard
    for extra in base_dir.iterdir():
        if extra.is_file() and extra.suffix != ".safetensors":
            shutil.copy2(extra, out_dir / extra.name)
    config = out_dir / "config.json"
    if config.exists():
        data = json.loads(config.read_text())
        data["unlearnkit_negation"] = {"base": str(base_dir), "harmful": str(harmful_dir), "scale": scale}
        config.write_text(json.dumps(data, indent=2))
    return out_dir
