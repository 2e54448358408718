"""Datasets: read any common layout into canonical examples, split, format, prepare and explore."""

from alignflow.data.explore import ExploreReport, explore, render_explore
from alignflow.data.formatting import ChatFormatter
from alignflow.data.hh import hh_pair_to_preference, parse_hh_dialogue
from alignflow.data.prepare import PrepareReport, canonical_row, prepare_dataset
from alignflow.data.readers import detect_kind, read_examples, read_preferences, read_prompts, read_sft
from alignflow.data.sources import DataError, iter_rows
from alignflow.data.splits import train_val_split
from alignflow.data.types import Message, PreferenceExample, PromptExample, ReadResult, RowIssue, SFTExample

__all__ = [
    "ChatFormatter", "DataError", "ExploreReport", "Message", "PreferenceExample", "PrepareReport", "PromptExample",
    "ReadResult", "RowIssue", "SFTExample", "canonical_row", "detect_kind", "explore", "hh_pair_to_preference",
    "iter_rows", "parse_hh_dialogue", "prepare_dataset", "read_examples", "read_preferences", "read_prompts",
    "read_sft", "render_explore", "train_val_split",
]
