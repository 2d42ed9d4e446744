"""Read prompt/response pairs from JSONL, JSON, CSV/TSV, Parquet (optionally .gz) or a HF dataset id.

Every loader returns a list of dicts with `prompt`, `response` (may be "" for prompt-only sets)
and, when the source has one, `category`. Column names are mapped from the common aliases of the
field's datasets; `prompt_col` / `response_col` override the guess.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path

from unlearnkit.errors import UnlearnkitError

PROMPT_ALIASES = ("prompt", "question", "instruction", "goal", "behavior", "forbidden_prompt", "query", "input", "user")
RESPONSE_ALIASES = ("response", "answer", "best answer", "best_answer", "output", "completion", "target", "assistant")
CATEGORY_ALIASES = ("category", "harm_category", "semantic_category", "type")
# PKU-SafeRLHF / BeaverTails: two responses per prompt, each with a safety label.
_PKU_COLUMNS = ("response_0", "response_1", "is_response_0_safe", "is_response_1_safe")
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def load_pairs(source: str | Path, prompt_col: str | None = None, response_col: str | None = None,
               split: str = "train", require_response: bool = True) -> list[dict]:
    """Load pairs from a file or a Hugging Face dataset id; raise UnlearnkitError on any bad input."""
    records = _read_records(source, split)
    if not records:
        raise UnlearnkitError(f"{source}: no rows: give a file with at least one prompt")
    pairs = _to_pairs(records, str(source), prompt_col, response_col, require_response)
    if not pairs:
        raise UnlearnkitError(f"{source}: no usable rows (every prompt or response was empty): check the file's contents")
    return pairs


def _read_records(source, split) -> list[dict]:
    path = Path(source).expanduser()
    if not path.exists():
        if _looks_like_hub_id(str(source)):
            return _read_hub_dataset(str(source), split)
        raise UnlearnkitError(f"{source}: no such file: check the path")
    if path.is_dir():  # a dataset saved locally (data files or save_to_disk layout): let `datasets` read it
        return _read_hub_dataset(str(path), split)
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    kind = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if kind == ".parquet":
        return _read_parquet(path)
    raw = gzip.open(path, "rb").read() if compressed else path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnlearnkitError(f"{source}: not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    if kind == ".jsonl":
        return read_jsonl(text, source)
    if kind == ".json":
        return _read_json(text, source)
    if kind in (".csv", ".tsv"):
        return _read_csv(text, source, "\t" if kind == ".tsv" else ",")
    raise UnlearnkitError(f"{source}: unknown file type '{kind or 'none'}': use .jsonl, .json, .csv, .tsv or .parquet")


def _looks_like_hub_id(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None and not Path(name).suffix


def _read_hub_dataset(name: str, split: str) -> list[dict]:
    try:
        import datasets

        if Path(name, "dataset_info.json").exists() or Path(name, "state.json").exists():
            data = datasets.load_from_disk(name)
            data = data[split] if isinstance(data, datasets.DatasetDict) else data
        else:
            data = datasets.load_dataset(name, split=split)
        return [dict(row) for row in data]
    except Exception as exc:  # the datasets library raises many unrelated types here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UnlearnkitError(f"{name}: not a file and not a loadable Hugging Face dataset ({first}): pass a local file") from None


def _read_parquet(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except Exception as exc:
        raise UnlearnkitError(f"{path}: cannot read as Parquet ({str(exc)[:160]}): check the file") from None


def read_jsonl(text: str, source) -> list[dict]:
    """One JSON object per line. Lines end at "\n" only: str.splitlines() would also cut at U+2028,
    U+0085 and the like, which json.dumps(ensure_ascii=False) leaves unescaped inside strings (a model's
    answer can hold one), so a file we wrote would not read back."""
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UnlearnkitError(f"{source}:{lineno}: not valid JSON ({exc.msg}): fix or remove that line") from None
        if not isinstance(record, dict):
            raise UnlearnkitError(f"{source}:{lineno}: expected a JSON object per line: fix that line")
        records.append(record)
    return records


def _read_json(text: str, source) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnlearnkitError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg}): fix the file") from None
    if isinstance(data, dict):  # {"data": [...]} or JailbreakBench's {"parameters": ..., "jailbreaks": [...]}
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) != 1:
            raise UnlearnkitError(f"{source}: expected a list of records (or an object holding exactly one list)")
        data = lists[0]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise UnlearnkitError(f"{source}: expected a list of JSON objects")
    return data


def _read_csv(text: str, source, delimiter: str) -> list[dict]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        records = []
        for row in reader:
            if None in row:  # more cells than header names
                raise UnlearnkitError(f"{source}:{reader.line_num}: more cells than columns in the header: fix that line")
            records.append(row)
        return records
    except csv.Error as exc:
        raise UnlearnkitError(f"{source}:{reader.line_num}: bad CSV ({exc}): fix that line") from None


def _find_column(columns: list[str], aliases: tuple[str, ...]) -> str | None:
    folded = {c.strip().lower(): c for c in columns}
    for alias in aliases:
        if alias in folded:
            return folded[alias]
    return None


def _to_pairs(records, source, prompt_col, response_col, require_response) -> list[dict]:
    columns = list(dict.fromkeys(key for record in records[:50] for key in record))
    for name, given in (("--prompt-col", prompt_col), ("--response-col", response_col)):
        if given is not None and given not in columns:
            raise UnlearnkitError(f"{source}: {name} '{given}' is not a column (columns: {', '.join(columns)})")
    if prompt_col is None and all(c in columns for c in _PKU_COLUMNS):
        return _pku_pairs(records)
    if prompt_col is None and "chosen" in columns and "rejected" in columns:
        return _hh_pairs(records, response_col or "rejected")
    prompt_col = prompt_col or _find_column(columns, PROMPT_ALIASES)
    if prompt_col is None:
        raise UnlearnkitError(f"{source}: no prompt column (columns: {', '.join(columns)}): pass --prompt-col NAME")
    response_col = response_col or _find_column(columns, RESPONSE_ALIASES)
    if response_col == prompt_col:
        response_col = None
    if response_col is None and require_response:
        raise UnlearnkitError(f"{source}: no response column (columns: {', '.join(columns)}): pass --response-col NAME")
    category_col = _find_column(columns, CATEGORY_ALIASES)
    extra_input = "input" if prompt_col.lower() == "instruction" and "input" in columns else None
    pairs = []
    for record in records:
        prompt = _text(record.get(prompt_col))
        if extra_input and _text(record.get(extra_input)):
            prompt = f"{prompt}\n\n{_text(record.get(extra_input))}"
        response = _text(record.get(response_col)) if response_col else ""
        if not prompt or (require_response and not response):
            continue
        pair = {"prompt": prompt, "response": response}
        if category_col and _text(record.get(category_col)):
            pair["category"] = _text(record.get(category_col))
        pairs.append(pair)
    return pairs


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas/parquet
        return ""
    if isinstance(value, list):  # chat-style [{"role", "content"}, ...]: take the last message
        value = value[-1].get("content", "") if value and isinstance(value[-1], dict) else " ".join(map(str, value))
    return str(value).strip()


def _is_true(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _pku_pairs(records) -> list[dict]:
    """PKU-SafeRLHF: every response labelled unsafe becomes a forget pair."""
    pairs = []
    for record in records:
        for i in (0, 1):
            if not _is_true(record.get(f"is_response_{i}_safe")):
                prompt, response = _text(record.get("prompt")), _text(record.get(f"response_{i}"))
                if prompt and response:
                    pair = {"prompt": prompt, "response": response}
                    category = record.get(f"response_{i}_harm_category")
                    if isinstance(category, dict):  # PKU-SafeRLHF v1 stores {category: bool}
                        names = [k for k, v in category.items() if v]
                        if names:
                            pair["category"] = names[0]
                    pairs.append(pair)
    return pairs


def split_dialogue(transcript: str) -> tuple[str, str]:
    """hh-rlhf transcript -> (last human turn, final assistant turn)."""
    parts = _HH_TURN.split("\n\n" + transcript.lstrip("\n"))  # ["", role, text, role, text, ...]
    turns = [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]
    human = [text for role, text in turns if role == "Human"]
    assistant = [text for role, text in turns if role == "Assistant"]
    if not human or not assistant or turns[-1][0] != "Assistant":
        return "", ""
    return human[-1], assistant[-1]


def _hh_pairs(records, side: str) -> list[dict]:
    """hh-rlhf chosen/rejected transcripts: prompt = last human turn, response = that side's final answer."""
    if side not in ("chosen", "rejected"):
        raise UnlearnkitError(f"hh-rlhf data: --response-col must be 'chosen' or 'rejected', not '{side}'")
    pairs = []
    for record in records:
        prompt, response = split_dialogue(_text(record.get(side)))
        if prompt and response:
            pairs.append({"prompt": prompt, "response": response})
    return pairs
