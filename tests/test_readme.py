"""The README's quick start runs as written, on the tiny model: its shell commands through the CLI and
its Python block through the interpreter. Only the model ("default" → the tiny model), the step
budget and the evaluation suite's size are swapped, so the test stays fast; a renamed flag, function
or module breaks it."""

import re
import shlex
from pathlib import Path

import pytest

from conftest import write_jsonl
from unlearnkit.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
QUICK_START = README[README.index("## Quick start"):README.index("## Data")]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", QUICK_START, re.S)


@pytest.fixture
def workdir(tmp_path, pairs, monkeypatch):
    forget, retain = pairs
    write_jsonl(tmp_path / "harmful.jsonl", forget)
    write_jsonl(tmp_path / "normal.jsonl", retain)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_quick_start_commands_run_as_written(workdir, tiny_model_dir, monkeypatch):
    import unlearnkit.data as data

    real = data.load_suite
    monkeypatch.setattr(data, "load_suite", lambda spec="standard": {k: v[:2] for k, v in real(spec).items()})
    lines = [line.split("#")[0].strip() for line in blocks("bash")[0].replace("\\\n", " ").splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("unlearnkit ")]
    assert [c[0] for c in commands] == ["methods", "unlearn", "eval"]
    for command in commands:
        command = [str(tiny_model_dir) if a == "default" else a for a in command]
        command = ["1" if prev == "--max-steps" else a for prev, a in zip([""] + command, command)]
        extra = ["--max-new-tokens", "2"] if command[0] == "eval" else []
        assert main(command + extra) == 0, command
    assert (workdir / "runs" / "sku-eval" / "metrics.json").exists()


def test_quick_start_python_runs_as_written(workdir, tiny_model_dir):
    code = blocks("python")[0].replace('load_model("default")', f'load_model({str(tiny_model_dir)!r})')
    code = code.replace("max_steps=40", "max_steps=1")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["trainer"].state.global_step == 1 and not hasattr(namespace["model"], "peft_config")
