"""Any sequence-classification folder (a sentiment or toxicity model, say) as a reward function.

The reward of a response is the logit, log-probability, probability or 0/1 decision of one named
label (an ``id2label`` name or an index), read from the response alone or from prompt + response as
one text (``with_prompt``: the whole review when the prompt is its opening words). Unlike a reward
model from ``alignflow rm train`` there is no chat template: the classifier reads plain text, as it
was trained to.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from alignflow.data.types import Message
from alignflow.models.loading import disable_dropout, load_tokenizer
from alignflow.models.registry import check_model_folder
from alignflow.rewards.text_classifier import Output, classifier_input, label_index
from alignflow.runtime import autocast


def label_names(config) -> list[str]:
    """The model's labels in index order (``LABEL_i`` when the config names none)."""
    return [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels)]


def label_outputs(logits: torch.Tensor, index: int, output: Output) -> torch.Tensor:
    """(n, labels) logits -> (n,) ``output`` of label ``index``; decision = 1 where it is the argmax."""
    if output == "logit":
        return logits[:, index]
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    if output == "logprob":
        return log_probs[:, index]
    if output == "probability":
        return log_probs[:, index].exp()
    return (logits.argmax(dim=-1) == index).float()


class ClassifierReward:
    """Scores responses with a sequence classifier, ``batch_size`` texts a forward."""

    def __init__(self, path: str | Path, *, class_label: str | int, output: Output = "logprob",
                 with_prompt: bool = False, batch_size: int = 32, max_length: int = 512, dtype: str = "fp32",
                 key: str = "class_label") -> None:
        self.path = Path(path)
        check_model_folder(self.path)
        self.tokenizer = load_tokenizer(str(self.path))
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path).eval()
        disable_dropout(self.model)
        self.labels = label_names(self.model.config)
        self.index = label_index(self.labels, class_label, key, str(self.path))
        self.output, self.with_prompt = output, with_prompt
        self.batch_size, self.max_length, self.dtype = batch_size, max_length, dtype

    @torch.no_grad()
    def __call__(self, prompts: list[list[Message]], responses: list[str], metadata: dict[str, list]) -> list[float]:
        texts = [classifier_input(p, r, self.with_prompt) for p, r in zip(prompts, responses)]
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            with autocast(self.dtype):
                logits = self.model(**batch).logits
            scores += label_outputs(logits.float(), self.index, self.output).tolist()
        return scores
