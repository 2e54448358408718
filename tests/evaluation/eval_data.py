"""Shared data and helpers of the evaluation tests (imported by name, like trainer_data)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eval"
QUESTIONS = ["What is the capital of France?", "How do I bake bread?", "Please tell me a joke.",
             "What is two plus two?", "Tell me about numbers."]


def peaked_copy(source: Path, out: Path, seed: int) -> Path:
    """The tiny Llama with weights redrawn at std 0.3: its default init (0.02) gives nearly flat
    next-token distributions, so greedy decoding emits one token forever; peaked ones vary."""
    model = AutoModelForCausalLM.from_pretrained(source)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def length_scorer(prompts, responses):
    """Longer responses score higher: a scorer whose choices are easy to predict."""
    return [float(len(r)) for r in responses]


def tiny_reward_model(source: Path, out: Path, seed: int) -> Path:
    """A reward-model folder on the tiny Llama's backbone with a seeded random head."""
    from transformers import AutoModelForSequenceClassification

    from alignflow.models import load_tokenizer
    from alignflow.models.reward_io import save_reward_model

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(str(source))
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    return save_reward_model(model, tokenizer, out, {"kind": "reward_model"}, offset=0.0)


HTML_PROMPT = 'Explain <script>alert("x")</script> & <b>bold</b> tags.'
EVAL_PROMPTS = [
    {"prompt": "What is the capital of France?", "reference": "The capital of France is Paris."},
    {"prompt": "How do I bake bread?", "reference": "Mix flour, water, yeast and salt, then bake it."},
    {"prompt": HTML_PROMPT},
    {"prompt": "Please tell me a joke."},
    {"prompt": "What is two plus two?", "reference": "Two plus two is four."},
    {"prompt": "Tell me about numbers."},
    {"prompt": "Why is the sky blue?"},
    {"prompt": "Name a fruit."},
    {"prompt": "Say something nice."},
    {"prompt": "Count to three."},
]
