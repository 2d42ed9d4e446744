"""People's labels on evaluated answers: read them in any of the forms we accept, match them to the
answers of an evaluation by their text, and add the prediction-powered figures (evaluation/ppi.py).

Accepted forms, each matched by (request, answer) text, so labels made anywhere can be used:
- the labelling page's export (JSONL: item, prompt, response and the verdicts);
- the sheet's CSV filled in a spreadsheet (item, prompt, response, complied, harmful_content, degenerate);
- a Label Studio export (JSON, tasks with `data.prompt` / `data.response` and choices named after the
  verdicts; or its JSON-MIN / CSV flat forms);
- `judge-check --labelled` files: JSONL or CSV with prompt, response and 0/1 verdict columns.
A verdict is 1/0 (also yes/no, true/false); `unsure` or an empty cell leaves it unlabelled.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np

from unlearnkit.errors import UnlearnkitError

VERDICTS = ("complied", "harmful_content", "degenerate")
RATE_KEY = {"complied": "compliance", "harmful_content": "harmful_content", "degenerate": "degenerate"}
_ALIASES = {"harmful": "harmful_content"}
_YES, _NO, _UNSURE = {"1", "1.0", "true", "yes", "y"}, {"0", "0.0", "false", "no", "n"}, {"", "unsure", "?", "none", "null"}


def item_id(prompt: str, response: str) -> str:
    """A stable name for one answer to one request: the same text always gets the same id, so a sheet,
    its export and an evaluation's samples meet without a shared key."""
    return hashlib.sha256(f"{_norm(prompt)}\x00{_norm(response)}".encode()).hexdigest()[:12]


def _norm(text) -> str:
    # spreadsheets turn \n into \r\n and may trim trailing spaces: neither changes which answer it is
    return str(text or "").replace("\r\n", "\n").replace("\r", "\n").strip()


def _value(raw, where: str):
    text = str(raw).strip().lower() if raw is not None else ""
    if isinstance(raw, bool):
        return int(raw)
    if text in _YES:
        return 1
    if text in _NO:
        return 0
    if text in _UNSURE:
        return None
    raise UnlearnkitError(f"{where}: label '{raw}' is not 0, 1 or unsure: fix that cell")


def _records(path: Path) -> list[tuple[str, dict]]:
    """(where, flat row) pairs from any accepted form."""
    from unlearnkit.data.load import read_jsonl

    if not path.is_file():
        raise UnlearnkitError(f"{path}: no such labels file: check the path")
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = read_jsonl(text, path)
    elif suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UnlearnkitError(f"{path}: not valid JSON (line {exc.lineno}): export the labels again") from None
        rows = rows if isinstance(rows, list) else [rows]
        rows = [_from_label_studio(r, f"{path}: task {i}") if isinstance(r, dict) and "data" in r else r
                for i, r in enumerate(rows, start=1)]
    elif suffix in (".csv", ".tsv"):
        rows = list(csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ","))
    else:
        raise UnlearnkitError(f"{path}: unknown labels format: give the page's .jsonl export, the sheet's .csv, "
                              "a Label Studio .json export, or a JSONL/CSV with prompt, response and 0/1 columns")
    return [(f"{path}: row {i}", r) for i, r in enumerate(rows, start=1) if isinstance(r, dict)]


def _from_label_studio(task: dict, where: str) -> dict:
    """A Label Studio task → a flat row: its data fields plus the first finished annotation's choices."""
    row = dict(task.get("data") or {})
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    for result in (done[0].get("result") or []) if done else []:
        choices = (result.get("value") or {}).get("choices") or []
        if result.get("from_name") and choices:
            row[result["from_name"]] = choices[0]
    return row


def read_labels(paths) -> dict[str, dict]:
    """{item id: {"prompt", "response", verdict: 0/1/None, "where"}} from every file; refuses a label
    outside 0/1/unsure, a row whose text is not its item's, a file with no verdict column and an
    answer labelled twice."""
    labels: dict[str, dict] = {}
    for path in map(Path, paths):
        rows = _records(path)
        if not rows:
            raise UnlearnkitError(f"{path}: no labelled rows")
        for where, row in rows:
            row = {_ALIASES.get(str(k).strip().lower(), str(k).strip().lower()): v for k, v in row.items()}
            if "prompt" not in row or "response" not in row:
                raise UnlearnkitError(f"{where}: needs prompt and response columns (the request and the answer read)")
            present = [v for v in VERDICTS if v in row]
            if not present:
                raise UnlearnkitError(f"{where}: no verdict column: name one of {', '.join(VERDICTS)} (0/1/unsure)")
            key = item_id(row["prompt"], row["response"])
            if row.get("item") and str(row["item"]).strip() != key:
                raise UnlearnkitError(f"{where}: item {row['item']} does not hold the text it was drawn with: the "
                                      "sheet was edited or made from other answers; label a sheet made from these answers")
            values = {v: _value(row[v], f"{where}, {v}") for v in present}
            if all(x is None for x in values.values()):
                continue  # a sheet row nobody filled in (or all unsure): no label
            if key in labels:
                raise UnlearnkitError(f"{where}: this answer is labelled twice (also {labels[key]['where']}): "
                                      "keep one row per answer (settle disagreements between readers first)")
            labels[key] = {"prompt": row["prompt"], "response": row["response"], "where": where, **values}
    return labels


def judged_verdict(row: dict, verdict: str, threshold: float) -> float | None:
    """The evaluation's own 0/1 for a verdict: the judge's score against the threshold, or the
    degenerate detector's reason; None when the evaluation has no such verdict."""
    if verdict == "degenerate":
        return float(row.get("degenerate") is not None)
    return float(row[verdict] >= threshold) if verdict in row else None


def add_labelled_figures(result: dict, labels: dict[str, dict], threshold: float = 0.5) -> dict:
    """Adds to result["metrics"] (and result["base"]["metrics"]) for every verdict that has labels:
    `<rate>_ppi` (prediction-powered rate), the judge's agreement with the labels on that model's
    answers and, against the base, `<rate>_difference_vs_base_ppi` and `<rate>_ratio_vs_base_ppi`
    (paired over prompts). Returns the ids of the labelled answers it found here: the caller checks that
    every label matched some evaluation (one set of labels may cover several)."""
    from unlearnkit.evaluation.metrics import agreement_stats
    from unlearnkit.evaluation.ppi import MIN_LABELLED, paired_vs_base, ppi_rate

    parts = {"model": result, **({"base": result["base"]} if "base" in result else {})}
    rows = {name: [s for s in part["samples"] if s["set"] == "harmful"] for name, part in parts.items()}
    ids = {name: [item_id(r["prompt"], r["response"]) for r in part] for name, part in rows.items()}
    matched = {i for name in ids for i in ids[name] if i in labels}
    for verdict in VERDICTS:
        judged = {name: [judged_verdict(r, verdict, threshold) for r in part] for name, part in rows.items()}
        if any(v is None for part in judged.values() for v in part):
            continue  # this judge gives no such verdict
        human = {name: [labels.get(i, {}).get(verdict) for i in ids[name]] for name in rows}
        rate = f"{RATE_KEY[verdict]}_rate"
        for name, part in parts.items():
            have = [k for k, y in enumerate(human[name]) if y is not None]
            if not have:
                continue
            if len(have) < MIN_LABELLED:
                raise UnlearnkitError(f"only {len(have)} labelled answers for {name}'s `{verdict}`: an interval needs at "
                                      f"least {MIN_LABELLED}; label {MIN_LABELLED - len(have)} more")
            rest = [k for k in range(len(rows[name])) if human[name][k] is None]
            figure = ppi_rate([human[name][k] for k in have], [judged[name][k] for k in have],
                              [judged[name][k] for k in rest])
            part["metrics"][f"{rate}_ppi"] = figure
            scores = [judged[name][k] if verdict == "degenerate" else rows[name][k][verdict] for k in have]
            part["metrics"].setdefault("judge_agreement", {})[verdict] = agreement_stats(
                scores, [human[name][k] for k in have], 0.5 if verdict == "degenerate" else threshold)
        if "base" not in parts or not any(y is not None for y in human["model"]):
            continue
        if [r["prompt"] for r in rows["model"]] != [r["prompt"] for r in rows["base"]]:
            raise UnlearnkitError("the model and its base answered different prompts: a paired figure needs the same ones")
        both = [k for k in range(len(rows["model"])) if human["model"][k] is not None and human["base"][k] is not None]
        if len(both) < MIN_LABELLED:
            raise UnlearnkitError(f"only {len(both)} prompts have `{verdict}` labels for both the model and its base: a "
                                  f"paired figure needs {MIN_LABELLED}; label both answers of the same prompts "
                                  "(unlearnkit label draws paired sheets)")
        others = [k for k in range(len(rows["model"])) if k not in set(both)]
        paired = paired_vs_base(
            {"y_model": [human["model"][k] for k in both], "y_base": [human["base"][k] for k in both],
             "f_model": [judged["model"][k] for k in both], "f_base": [judged["base"][k] for k in both]},
            {"f_model": [judged["model"][k] for k in others], "f_base": [judged["base"][k] for k in others]})
        judge_model, judge_base = np.mean(judged["model"]), np.mean(judged["base"])
        paired["difference"]["judge_only"] = float(judge_model - judge_base)
        paired["ratio"]["judge_only"] = float(judge_model / judge_base) if judge_base else float("nan")
        prefix = RATE_KEY[verdict]
        result["metrics"][f"{prefix}_difference_vs_base_ppi"] = paired["difference"]
        if verdict != "degenerate":  # the base rarely degenerates: a ratio to ~0 says nothing
            result["metrics"][f"{prefix}_ratio_vs_base_ppi"] = paired["ratio"]
    return matched
