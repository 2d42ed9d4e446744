"""Load, format and split prompt/response data."""

from unlearnkit.data.format import GroupCollator, UnlearnDataset, answer_text, encode_pair, prompt_text
from unlearnkit.data.load import load_pairs
from unlearnkit.data.split import split_pairs
from unlearnkit.data.demo import demo_path, load_demo
from unlearnkit.data.suite import load_suite

__all__ = [
    "GroupCollator",
    "UnlearnDataset",
    "answer_text",
    "demo_path",
    "encode_pair",
    "load_demo",
    "load_pairs",
    "load_suite",
    "prompt_text",
    "split_pairs",
]
