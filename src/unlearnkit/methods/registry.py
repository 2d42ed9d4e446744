"""Method name -> Trainer class. A method registers itself with @register("name")."""

from __future__ import annotations

from unlearnkit.errors import UnlearnkitError

METHODS: dict[str, type] = {}


def register(name: str):
    def add(cls):
        if name in METHODS:
            raise ValueError(f"method '{name}' is registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return add


def get_method(name: str) -> type:
    if name not in METHODS:
        raise UnlearnkitError(f"unknown method '{name}': choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name]
