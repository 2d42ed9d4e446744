"""Load, format and split prompt/response data."""

from unlearnkit.data.format import GroupCollator, UnlearnDataset, answer_text, encode_pair, prompt_text
from unlearnkit.data.load import load_pairs
from unlearnkit.data.split import split_pairs
from unlearnkit.data.demo import demo_path, load_demo

__all__ = [
    "GroupCollator",
    "UnlearnDataset",
    "answer_text",
    "demo_path",
    "encode_pair",
    "load_demo",
    "load_pairs",
    "prompt_text",
    "split_pairs",
]
