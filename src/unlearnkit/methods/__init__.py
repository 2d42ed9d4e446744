"""Unlearning methods: one file each, registered by name with @register.

Every module in this package is imported here, so a new method is one new file (plus its test)."""

import importlib
import pkgutil

from unlearnkit.methods.base import UnlearnArguments, UnlearnTrainer
from unlearnkit.methods.registry import METHODS, get_method, register
from unlearnkit.methods.train import REFUSALS, build_trainer, finish, unlearn

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "REFUSALS", "UnlearnArguments", "UnlearnTrainer", "build_trainer", "finish", "get_method", "register", "unlearn"]
