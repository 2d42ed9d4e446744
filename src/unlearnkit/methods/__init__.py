"""Unlearning methods: one file each, registered by name."""

from unlearnkit.methods import emu, ft_negate, ga, llmu, npo, refusal_dpo, rmu, simnpo, sku  # noqa: F401  (registration)
from unlearnkit.methods.base import UnlearnArguments, UnlearnTrainer
from unlearnkit.methods.registry import METHODS, get_method, register
from unlearnkit.methods.train import REFUSALS, build_trainer, finish, unlearn

__all__ = ["METHODS", "REFUSALS", "UnlearnArguments", "UnlearnTrainer", "build_trainer", "finish", "get_method", "register", "unlearn"]
