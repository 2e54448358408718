"""Shared by the worker tests and their fixtures: prompts, the sampling temperature, a reward."""

from __future__ import annotations

from alignflow.batch import Batch
from alignflow.data.formatting import ChatFormatter
from alignflow.data.tokenize import PromptResponseEncoder

QUESTIONS = ["What is the capital of France?", "How do I bake bread?", "Please tell me a joke.", "Two plus two?"]
TEMPERATURE = 0.7


def constant_reward(prompts, responses, metadata):
    return [0.0] * len(responses)


def encode_prompts(tokenizer, questions, uids) -> Batch:
    """Chat prompts as `generate` takes them: meta ``prompt``, ``prompt_token_ids``, ``prompt_uid``."""
    messages = [[{"role": "user", "content": q}] for q in questions]
    encoder = PromptResponseEncoder(tokenizer, ChatFormatter(tokenizer), max_length=64, max_prompt_length=32)
    ids = [encoder.encode_prompt(m)[0] for m in messages]
    return Batch(meta={"prompt": messages, "prompt_token_ids": ids, "prompt_uid": list(uids)})
