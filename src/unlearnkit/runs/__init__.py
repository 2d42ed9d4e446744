"""The run layer: between the command line (cli, demo, compare) and the library below it
(data, models, methods, evaluation). It may import those; they never import it."""

from unlearnkit.runs.settings import coerce_fields, generation_settings, make_arguments, read_config, training_settings
from unlearnkit.runs.train import (
    check_same_settings, collect, collected_file, forget_retain, keep_log_until, latest_checkpoint, load_set, train_into,
)

__all__ = ["check_same_settings", "coerce_fields", "collect", "collected_file", "forget_retain", "generation_settings", "keep_log_until",
           "latest_checkpoint", "load_set", "make_arguments", "read_config", "train_into", "training_settings"]
