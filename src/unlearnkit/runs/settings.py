"""The settings of a run: defaults < config file < command-line flags < `--set`, each coerced to
its UnlearnArguments field's type. Every entry point (cli, demo, compare, the Python API through
UnlearnArguments itself) gets its settings here, so precedence is decided in one place."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from unlearnkit.errors import UnlearnkitError


def read_config(path: str | None) -> dict:
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UnlearnkitError(f"{path}: no such config file: check the path") from None
    except yaml.YAMLError as exc:
        raise UnlearnkitError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}): fix the file") from None
    if not isinstance(data, dict):
        raise UnlearnkitError(f"{path}: expected a mapping of option names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _parse_set(items: list[str]) -> dict:
    """KEY=VALUE pairs; values stay text here and coerce_fields gives them their field's type."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UnlearnkitError(f"--set {item}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


_FLAG_TO_FIELD = {"max_steps": "max_steps", "batch_size": "per_device_train_batch_size", "lr": "learning_rate",
                  "negation_scale": "negation_scale", "seed": "seed", "save_steps": "save_steps"}


def precision_bf16(choice: str | None) -> bool:
    """--precision: auto → bf16 only where it is native; a forced bf16 where it is emulated says what it costs."""
    from unlearnkit.distributed import native_bf16

    if choice in (None, "auto"):
        return native_bf16()
    if choice == "bf16" and not native_bf16():
        print("unlearnkit: warning: this CPU has no native bf16 (no avx512_bf16/AMX): bf16 is emulated and measured "
              ">10x slower per step than fp32 here; use --precision auto or fp32", file=sys.stderr)
    return choice == "bf16"
_RUN_KEYS = ("model", "forget", "retain", "out", "prompt_col", "response_col")


def training_settings(ns, method: str | None = None, defaults: dict | None = None) -> tuple[dict, dict]:
    """(run settings, UnlearnArguments fields) from defaults < config file < CLI flags < --set."""
    from unlearnkit.methods import UnlearnArguments

    config = read_config(getattr(ns, "config", None))
    run = {k: config.pop(k) for k in list(config) if k in _RUN_KEYS}
    fields = {"max_steps": 30, "per_device_train_batch_size": 4, **(defaults or {})}
    fields["method"] = method or getattr(ns, "method", None) or config.pop("method", None) or fields.get("method", "sku")
    config.pop("method", None)
    aliases = {"batch_size": "per_device_train_batch_size", "lr": "learning_rate", "lambda": "negation_scale",
               "full": "full"}
    for key, value in config.items():
        fields[aliases.get(key, key)] = value
    for flag, field in _FLAG_TO_FIELD.items():
        if getattr(ns, flag, None) is not None:
            fields[field] = getattr(ns, flag)
    if getattr(ns, "full", None):
        fields["full"] = True
    if "bf16" not in config or getattr(ns, "precision", None):  # a flag beats the file; auto decides otherwise
        fields["bf16"] = precision_bf16(getattr(ns, "precision", None))
    overrides = _parse_set(getattr(ns, "set", []))
    fields.update(overrides)
    if str(fields.pop("full", False)).lower() in ("true", "1", "yes"):
        fields["lora"] = False
    known = {f.name for f in dataclasses.fields(UnlearnArguments)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise UnlearnkitError(f"unknown setting(s) {', '.join(unknown)}: see `unlearnkit unlearn --help` or the UnlearnArguments fields")
    fields = coerce_fields(fields)
    for key in _RUN_KEYS:
        if getattr(ns, key, None) is not None:
            run[key] = getattr(ns, key)
    return run, fields


def coerce_fields(fields: dict) -> dict:
    """Give each value its UnlearnArguments field's type: --set values arrive as text, YAML reads
    `5e-4` as text and `no` as False."""
    from unlearnkit.methods import UnlearnArguments

    def kinds(f):
        text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        return {t.strip() for t in text.split("|")}

    types = {f.name: kinds(f) for f in dataclasses.fields(UnlearnArguments)}
    out = {}
    for key, value in fields.items():
        kind = types.get(key, set())
        if isinstance(value, bool) and "bool" not in kind:
            value = "no" if value is False else "yes"
        try:
            if isinstance(value, str) and value.lower() in ("none", "null") and "None" in kind:
                value = None
            elif "str" in kind or value is None:
                pass
            elif "bool" in kind and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            elif "int" in kind and not isinstance(value, bool):
                value = int(value)
            elif "float" in kind and not isinstance(value, bool):
                value = float(value)
        except (TypeError, ValueError):
            raise UnlearnkitError(f"setting {key}={value!r}: expected {' or '.join(sorted(kind))}") from None
        out[key] = value
    return out


def make_arguments(fields: dict, work: Path):
    from unlearnkit.methods import UnlearnArguments, get_method

    get_method(fields["method"])  # unknown method: clear error before any work
    settings = {"disable_tqdm": not sys.stderr.isatty(), "save_strategy": "steps", **coerce_fields(fields)}
    try:
        return UnlearnArguments(output_dir=str(work / "checkpoints"), **settings)
    except (TypeError, ValueError) as exc:
        raise UnlearnkitError(f"bad training setting: {exc}") from None


def generation_settings(ns):
    """The evaluation's decoding, from the command's flags (recorded in metrics.json)."""
    from unlearnkit.evaluation.generate import GenerationSettings

    return GenerationSettings(max_new_tokens=ns.max_new_tokens, repetition_penalty=ns.repetition_penalty,
                              batch_size=ns.gen_batch_size)
