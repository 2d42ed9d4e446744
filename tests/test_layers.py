"""The package's import graph: no module imports a module above its layer, and there is no cycle.

Imports inside functions count too: a lazy import is still a dependency a reader must follow."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "unlearnkit"
# Lowest first. A module may import its own layer's modules or lower ones, never higher ones.
LAYERS = [
    {"errors", "distributed", "progress", "outputs"},
    {"data", "models", "losses", "negation"},
    {"evaluation"},
    {"methods"},
    {"robustness", "runs"},
    {"cli", "demo", "compare"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top(name: str) -> str:
    return name.split(".")[1] if name.count(".") else name


def layer(name: str) -> int:
    return next(i for i, group in enumerate(LAYERS) if top(name) in group)


def imports() -> dict[str, set[str]]:
    graph = {}
    for path in SRC.rglob("*.py"):
        name = module_name(path)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unlearnkit"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("unlearnkit"))
        graph[name] = {m for m in found if m != name}
    return graph


def test_every_module_has_a_layer():
    assert all(top(name) in set().union(*LAYERS) for name in imports() if name != "unlearnkit")


def test_no_module_imports_upward():
    upward = sorted(f"{name} -> {target}" for name, targets in imports().items() if name != "unlearnkit"
                    for target in targets if target != "unlearnkit" and layer(target) > layer(name))
    assert upward == []


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for name, targets in imports().items():
        graph.setdefault(top(name), set()).update(top(t) for t in targets if top(t) != top(name))
    seen, stack = set(), []

    def visit(node):
        assert node not in stack, " -> ".join(stack + [node])
        if node in seen:
            return
        stack.append(node)
        for nxt in graph.get(node, ()):
            visit(nxt)
        stack.pop()
        seen.add(node)

    for node in graph:
        visit(node)
