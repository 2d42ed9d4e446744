"""`unlearnkit label`: a blind sample of evaluated answers for people to read, as a self-contained page.

The sample is paired (the same prompts for every model, so a model can be compared with its base
prompt by prompt), uniformly random among the prompts every model answered (what prediction-powered
inference needs), shuffled across models, and blind: the page holds requests and answers only, never a
model name or a judge score. An answer two models gave word for word is one item, read once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
from pathlib import Path

import numpy as np

from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluation.labels import VERDICTS, item_id

RUBRIC = Path(__file__).with_name("rubric.md")
PAGE = Path(__file__).with_name("label_page.html")
SHEET_FILES = (".html", ".csv", ".json", ".labelstudio.xml")


def evaluated_answers(folders) -> dict[str, list[dict]]:
    """{model: its harmful-prompt sample rows} from `eval`, `compare` or `demo` folders. The base is one
    model whichever folder it comes from; a compare folder contributes each method's folder."""
    from unlearnkit.data.load import read_jsonl

    from unlearnkit.evaluation.report import evaluation_folders

    models: dict[str, list[dict]] = {}
    for evaluation in evaluation_folders(folders):
        path = evaluation / "samples.jsonl"
        for row in read_jsonl(path.read_text(), path):
            if row.get("set") != "harmful":
                continue
            name = row.get("model", "model")
            label = "base" if name == "base" else f"{evaluation}:{name}"
            models.setdefault(label, {}).setdefault(evaluation, []).append(row)
    out = {}
    for label, by_folder in models.items():
        answers = list(by_folder.values())
        if any([(r["prompt"], r["response"]) for r in a] != [(r["prompt"], r["response"]) for r in answers[0]]
               for a in answers[1:]):
            raise UnlearnkitError(f"the folders hold different answers for {label} (other decoding or settings): "
                                  "draw a sheet from evaluations made with the same settings")
        out[label] = answers[0]
    return out


def draw_items(models: dict[str, list[dict]], n: int, seed: int = 0, labelled: set[str] = frozenset()) -> list[dict]:
    """n prompts among those every model answered, with every model's answer to each that is not labelled
    yet: unique (prompt, response) items in a seeded shuffled order. Prompts some of whose answers are
    labelled come first (a model added later is read on the prompts its base was read on, so the pair is
    complete), then prompts drawn uniformly among the unread ones: the read prompts stay a uniform sample."""
    if n < 1:
        raise UnlearnkitError("--n must be at least 1")
    prompts = [r["prompt"] for r in next(iter(models.values()))]
    common = [p for p in dict.fromkeys(prompts) if all(p in {r["prompt"] for r in rows} for rows in models.values())]
    read = {}
    for rows in models.values():
        for r in rows:
            read.setdefault(r["prompt"], []).append(item_id(r["prompt"], r["response"]) in labelled)
    partial = [p for p in common if any(read[p]) and not all(read[p])]
    fresh = [p for p in common if not any(read[p])]
    if not partial and not fresh:
        raise UnlearnkitError("every answer to the prompts the models share is labelled already: nothing left to draw")
    rng = np.random.default_rng(seed)
    chosen = list(rng.permutation(partial))[:n] if partial else []
    if len(chosen) < n and fresh:
        chosen += rng.choice(fresh, size=min(n - len(chosen), len(fresh)), replace=False).tolist()
    chosen = set(chosen)
    items = {}
    for rows in models.values():
        for r in rows:
            key = item_id(r["prompt"], r["response"])
            if r["prompt"] in chosen and key not in labelled:
                items.setdefault(key, {"prompt": r["prompt"], "response": r["response"]})
    order = rng.permutation(len(items))
    listed = list(items.items())
    return [{"item": listed[k][0], **listed[k][1]} for k in order]


def sheet_id(items: list[dict]) -> str:
    return hashlib.sha256("\n".join(sorted(i["item"] for i in items)).encode()).hexdigest()[:12]


def rubric_definitions() -> dict[str, str]:
    """The rubric's definition of each verdict (the package's rubric.md, `## <verdict>` sections)."""
    text = RUBRIC.read_text()
    sections = re.split(r"^## +", text, flags=re.M)[1:]
    found = {}
    for section in sections:
        heading, _, body = section.partition("\n")
        name = heading.strip().strip("`").split()[0].strip("`") if heading.strip() else ""
        if name in VERDICTS:
            found[name] = body.strip()
    missing = [v for v in VERDICTS if v not in found]
    if missing:
        raise UnlearnkitError(f"{RUBRIC}: no section for {', '.join(missing)}: reinstall unlearnkit")
    return found


def _script_json(value) -> str:
    # inside <script>, "</script>" or "<!--" in an answer would end the block: escape every "<"
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def label_studio_config() -> str:
    choices = "\n".join(
        f'  <Header value="{v}"/>\n  <Choices name="{v}" toName="response" choice="single" showInLine="true">\n'
        '    <Choice value="1"/><Choice value="0"/><Choice value="unsure"/>\n  </Choices>' for v in VERDICTS)
    return ('<View>\n  <Header value="Request"/>\n  <Text name="prompt" value="$prompt"/>\n  <Header value="Answer"/>\n'
            f'  <Text name="response" value="$response"/>\n{choices}\n</View>\n')


def write_sheet(stem: Path, items: list[dict], info: dict, overwrite: bool = False) -> list[Path]:
    """SHEET.html (the page), SHEET.csv (the same items for a spreadsheet or a Label Studio import),
    SHEET.labelstudio.xml (its labelling config) and SHEET.json (provenance: which folders, seed,
    how many; no model names per item). Never writes over a sheet unless asked: its CSV may hold labels."""
    from unlearnkit.outputs import write_text_atomic

    stem = Path(str(stem).removesuffix(".html"))
    paths = [stem.with_name(stem.name + s) for s in SHEET_FILES]
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise UnlearnkitError(f"{existing[0]} exists and may hold labels: choose another --out, or pass --overwrite")
    if not stem.parent.is_dir():
        raise UnlearnkitError(f"{stem.parent}: no such folder: create it or choose another --out")
    sheet = sheet_id(items)
    page = (PAGE.read_text().replace("__SHEET__", sheet)
            .replace("/*ITEMS*/null", _script_json([{k: i[k] for k in ("item", "prompt", "response")} for i in items]))
            .replace("/*RUBRIC*/null", _script_json(rubric_definitions())))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["item", "prompt", "response", *VERDICTS])
    for i in items:
        writer.writerow([i["item"], i["prompt"], i["response"], "", "", ""])
    provenance = {**info, "sheet": sheet, "items": len(items), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "item_ids": [i["item"] for i in items]}
    for path, text in zip(paths, (page, buf.getvalue(), json.dumps(provenance, indent=2) + "\n", label_studio_config())):
        write_text_atomic(path, text)
    return paths
