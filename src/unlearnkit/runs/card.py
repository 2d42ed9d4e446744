"""The model card (model/README.md) written beside every model an unlearnkit run saves.

The Hugging Face hub reads the YAML front matter (base_model, library_name, tags, license) to link the
model to its base and to show how it was made; the body records the method, its settings and the
data, and an "Evaluation" section that `unlearnkit eval` fills in later. `add_evaluation_to_card`
only ever touches a card unlearnkit wrote (tag `unlearnkit` in its front matter, or a folder inside an
unlearnkit output): a user's own model folder is never changed.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import re
from pathlib import Path

from unlearnkit.outputs import MARKER, write_text_atomic

CARD = "README.md"
TAG = "unlearnkit"
DEFAULT_BASE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_KNOWN_LICENSES = {DEFAULT_BASE_ID: "apache-2.0"}
EVALUATION_KEYS = ("compliance_rate_ppi", "compliance_ratio_vs_base_ppi", "compliance_rate", "harmful_content_rate",
                   "degenerate_rate", "over_refusal_rate", "normal_similarity_reference", "normal_perplexity")
_EVALUATION_HEADING = "## Evaluation"
_NOT_EVALUATED = ("Not evaluated yet: `unlearnkit eval --model <this folder> --base <base model> --suite standard "
                  "--out <folder>` adds the figures here.")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)

# Settings shown in their own rows; every other field is listed only where it differs from its default.
_SHOWN = ("method", "steps", "max_steps", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
          "processes", "lora", "lora_r", "lora_alpha", "lora_targets", "lora_targets_chosen", "negation_scale", "seed")
# Where, how often and how fast to write or compute: nothing about the model that came out.
_NOT_SHOWN = {"output_dir", "disable_tqdm", "save_strategy", "save_steps", "save_total_limit", "logging_steps",
              "report_to", "dataloader_pin_memory", "remove_unused_columns", "bf16"}


def base_model_id(name: str | os.PathLike) -> str:
    """What the card names as base_model: the hub id (the embedded default is SmolLM2-135M-Instruct),
    or the local folder's absolute path."""
    from unlearnkit.models.load import DEFAULT_MODEL

    name = str(name)
    if name == DEFAULT_MODEL:
        return DEFAULT_BASE_ID
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _front_matter(text: str) -> dict:
    import yaml

    match = _FRONT_MATTER.match(text)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def base_license(name: str | os.PathLike) -> str | None:
    """The base's license: known for the default, else read from the base folder's own card if it has one."""
    from unlearnkit.models.load import model_dir

    base = base_model_id(name)
    if base in _KNOWN_LICENSES:
        return _KNOWN_LICENSES[base]
    try:
        readme = model_dir(name) / CARD
        license_ = _front_matter(readme.read_text(encoding="utf-8")).get("license") if readme.is_file() else None
    except Exception:  # no local copy, unreadable card: leave the license out rather than guess
        return None
    return str(license_) if license_ else None


def _default_fields() -> dict:
    from unlearnkit.methods import UnlearnArguments

    out = {}
    for f in dataclasses.fields(UnlearnArguments):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _settings_rows(method: str, settings: dict) -> list[tuple[str, str]]:
    from unlearnkit.methods import get_method

    try:
        negates = bool(getattr(get_method(method), "negate_after", False))
    except Exception:
        negates = "negation_scale" in settings
    lora = settings.get("lora", True)
    rows = [("method", f"`{method}`")]
    if "steps" in settings:
        planned = f" (of {settings['max_steps']} planned)" if settings.get("max_steps") not in (None, settings["steps"]) else ""
        rows.append(("training steps", f"{settings['steps']}{planned}"))
    elif "max_steps" in settings:
        rows.append(("training steps", str(settings["max_steps"])))
    if settings.get("learning_rate") is not None:
        rows.append(("learning rate", f"{settings['learning_rate']:g}" if isinstance(settings["learning_rate"], float)
                     else str(settings["learning_rate"])))
    if "per_device_train_batch_size" in settings:
        batch = str(settings["per_device_train_batch_size"])
        if int(settings.get("gradient_accumulation_steps") or 1) > 1:
            batch += f" × {settings['gradient_accumulation_steps']} accumulation steps"
        if int(settings.get("processes") or 1) > 1:
            batch += f" per process, {settings['processes']} processes"
        rows.append(("batch size", batch))
    if lora:
        targets = settings.get("lora_targets_chosen") or settings.get("lora_targets", "all-linear")
        if isinstance(targets, (list, tuple)):
            targets = ", ".join(map(str, targets))
        rows.append(("weights trained", f"LoRA (r = {settings.get('lora_r', 32)}, α = {settings.get('lora_alpha', 16)}, "
                                        f"targets {targets}), merged into the saved weights"))
    else:
        rows.append(("weights trained", "all (full fine-tune)"))
    if negates and "negation_scale" in settings:
        rows.append(("λ (θ = θ₀ − λ·τ)", f"{settings['negation_scale']:g}" if isinstance(settings["negation_scale"], (int, float))
                     else str(settings["negation_scale"])))
    if settings.get("seed") is not None:
        rows.append(("seed", str(settings["seed"])))
    defaults = _default_fields()
    for key in sorted(settings):
        if key in _SHOWN or key in _NOT_SHOWN or (key in defaults and str(defaults[key]) == str(settings[key])):
            continue
        rows.append((f"`{key}`", f"`{settings[key]}`" if settings[key] != "" else "(empty)"))
    return rows


def _data_rows(data: dict) -> list[str]:
    lines = []
    for role, what in data.items():
        if isinstance(what, dict):
            name, size = what.get("name"), what.get("size")
        else:
            name, size = what, None
        name = f"`{name}`" if name not in (None, "") else "none" if size in (None, 0) else "given in Python"
        lines.append(f"| {role} | {name} | {size if size is not None else '–'} |")
    return lines


def _base_link(base: str) -> str:
    if Path(base).is_absolute() or base.startswith((".", "~")):
        return f"`{base}`"
    return f"[{base}](https://huggingface.co/{base})"


def write_model_card(model_dir: str | os.PathLike, base_model: str | os.PathLike, method: str, settings: dict,
                     data: dict) -> Path:
    """Write `model_dir/README.md`: hub front matter plus the method, its settings and the data.

    `base_model`: the name the run loaded ('default', a hub id or a folder). `data`: role → {"name", "size"}
    (e.g. {"forget": {"name": "forget.jsonl", "size": 120}, "retain": ...})."""
    from huggingface_hub import ModelCardData

    base = base_model_id(base_model)
    card_data = ModelCardData(base_model=base, library_name="transformers", license=base_license(base_model),
                              tags=["unlearning", TAG, method], pipeline_tag="text-generation")
    settings_table = "\n".join(f"| {k} | {v} |" for k, v in _settings_rows(method, settings))
    data_table = "\n".join(_data_rows(data))
    body = f"""# Unlearned {base.rstrip('/').rsplit('/', 1)[-1]} ({method})

This model is {_base_link(base)} after machine unlearning with unlearnkit, method `{method}`:
trained to stop giving the kind of answers in the forget data while keeping the normal (retain) data's
answers. It loads in plain transformers (`AutoModelForCausalLM.from_pretrained(<this folder>)`).

## Training

| setting | value |
|---|---|
{settings_table}

## Data

| role | data | pairs |
|---|---|---|
{data_table}

{_EVALUATION_HEADING}

{_NOT_EVALUATED}
"""
    path = Path(model_dir) / CARD
    write_text_atomic(path, f"---\n{card_data.to_yaml()}\n---\n\n{body}")
    return path


def write_negated_card(model_dir: str | os.PathLike, base_model: str | os.PathLike, harmful_dir: str | os.PathLike,
                       scale: float, picked_on: str) -> Path:
    """The card of `negate --pick`'s model: the stage-1 run's recipe (its config.yaml, when the harmful
    model sits in an unlearnkit run) with the λ that was picked."""
    import yaml

    config_file = Path(harmful_dir).parent / "config.yaml"
    try:
        config = (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
    except yaml.YAMLError:
        config = {}
    settings = {k: v for k, v in config.items() if k not in ("model", "forget", "retain")}
    settings.update(negation_scale=scale, lambda_picked_on=picked_on)
    return write_model_card(model_dir, base_model, str(config.get("method", "sku")), settings,
                            {role: {"name": config.get(role)} for role in ("forget", "retain")})


def is_unlearnkit_card(model_dir: str | os.PathLike) -> bool:
    """A model folder unlearnkit wrote: its card carries the `unlearnkit` tag, or it sits in an unlearnkit output."""
    folder = Path(model_dir)
    if not folder.is_dir():
        return False
    card = folder / CARD
    if card.is_file():
        try:
            tags = _front_matter(card.read_text(encoding="utf-8")).get("tags") or []
        except (OSError, UnicodeDecodeError):
            return False
        if TAG in (tags if isinstance(tags, list) else [tags]):
            return True
    return (folder.parent / MARKER).is_file() and (folder / "config.json").is_file()


def _card_from_run_config(folder: Path) -> bool:
    """A model unlearnkit saved before it wrote cards: make one from the run's config.yaml."""
    import yaml

    config_file = folder.parent / "config.yaml"
    if not config_file.is_file():
        return False
    try:
        config = yaml.safe_load(config_file.read_text()) or {}
    except yaml.YAMLError:
        return False
    settings = {k: v for k, v in config.items() if k not in ("model", "forget", "retain")}
    write_model_card(folder, config.get("model", "default"), str(config.get("method", "unknown")), settings,
                     {role: {"name": config.get(role)} for role in ("forget", "retain")})
    return (folder / CARD).is_file()


def _fmt(x) -> str:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return "–" if isinstance(x, float) and math.isnan(x) else f"{x:.3f}" if isinstance(x, float) else str(x)
    return "–" if x is None else str(x)


def evaluation_section(metrics: dict, source: str) -> str | None:
    from unlearnkit.evaluation.report import METRIC_ROWS

    labels = {key: (label, better) for key, label, better in METRIC_ROWS}
    rows = []
    for key in EVALUATION_KEYS:
        m = metrics.get(key)
        if not isinstance(m, dict) or "value" not in m:
            continue
        ci = m.get("ci95")
        interval = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else "–"
        label, better = labels.get(key, (key, ""))
        rows.append(f"| {label} (`{key}`) | {better} | {_fmt(m['value'])} | {interval} | {_fmt(m.get('n'))} |")
    if not rows:
        return None
    today = datetime.date.today().isoformat()
    return "\n".join([_EVALUATION_HEADING, "", f"From {source} ({today}); 95% intervals, n = answers scored.", "",
                      "| metric | better | value | 95% interval | n |", "|---|---|---|---|---|", *rows]) + "\n"


def add_evaluation_to_card(model_dir: str | os.PathLike, metrics: dict, source: str) -> bool:
    """Add (or replace) the card's Evaluation section with the figures present in `metrics`.

    Only for a model folder unlearnkit wrote; returns False and changes nothing for any other folder
    (a user's own model, a hub id, 'default') or when none of the figures is present."""
    folder = Path(model_dir)
    if not is_unlearnkit_card(folder):
        return False
    section = evaluation_section(metrics, source)
    if section is None:
        return False
    card = folder / CARD
    if not card.is_file() and not _card_from_run_config(folder):
        return False
    text = card.read_text(encoding="utf-8")
    heading = re.compile(rf"^{re.escape(_EVALUATION_HEADING)}[ \t]*$", re.M)
    found = heading.search(text)
    if found:
        after = re.compile(r"^## ", re.M).search(text, found.end())
        end = after.start() if after else len(text)
        tail = ("\n" + text[end:]) if after else ""
        text = text[:found.start()] + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_text_atomic(card, text)
    return True
