"""The sentiment task: make IMDB movie reviews positive (the classic RLHF exercise).

``prepare_imdb`` splits the training reviews in two seeded halves that share no review: the proxy
classifier trains on one (``proxy_train.jsonl``), the independent judge on the other
(``judge_train.jsonl``). Prompts are the first 8 to 16 words of reviews, for the policy to
continue as plain text: training prompts come from the proxy's half, evaluation prompts from the
judge's half, so no evaluation prompt was ever trained on. ``task.json`` records the counts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from alignflow.config.classify import ImdbConfig
from alignflow.data.labelled import LabelledText, clean_text, first_words, read_labelled
from alignflow.tasks.prompts import write_jsonl

LABELS = ["negative", "positive"]


def review_prompts(reviews: list[LabelledText], count: int, words: tuple[int, int], rng: random.Random,
                   template: str = "{start}") -> list[dict]:
    """``{prompt, review, review_label}`` rows: ``template`` around the first k words of each of ``count``
    reviews, k drawn in ``words``."""
    return [{"prompt": template.format(start=first_words(r.text, rng.randint(*words))), "review": r.source,
             "review_label": LABELS[r.label]} for r in reviews[:count]]


def split_reviews(reviews: list[LabelledText], judge_fraction: float, seed: int
                  ) -> tuple[list[LabelledText], list[LabelledText]]:
    """(proxy, judge): a seeded shuffle cut at ``judge_fraction``; no review is in both."""
    order = list(reviews)
    random.Random(seed).shuffle(order)
    cut = round(len(order) * (1 - judge_fraction))
    return order[:cut], order[cut:]


def prepare_imdb(cfg: ImdbConfig) -> dict:
    """Write the classifier splits and the prompt files into ``cfg.output_dir``; returns task.json's data."""
    out = Path(cfg.output_dir)
    read = read_labelled(cfg.source, LABELS)
    if not read.examples:
        first = f"; first problem: {read.issues[0]}" if read.issues else ""
        raise ValueError(f"{cfg.source}: no {{text, label}} rows{first}")
    reviews = [LabelledText(clean_text(r.text), r.label, r.source) for r in read.examples]
    proxy, judge = split_reviews(reviews, cfg.judge_fraction, cfg.seed)
    rng = random.Random(cfg.seed + 1)
    words = (cfg.prompt_words[0], cfg.prompt_words[1])
    counts = {
        "proxy_train": write_jsonl(out / "proxy_train.jsonl", _rows(proxy)),
        "judge_train": write_jsonl(out / "judge_train.jsonl", _rows(judge)),
        "prompts_train": write_jsonl(out / "prompts_train.jsonl", review_prompts(proxy, cfg.train_prompts, words, rng,
                                                                                   cfg.template)),
        "prompts_eval": write_jsonl(out / "prompts_eval.jsonl", review_prompts(judge, cfg.eval_prompts, words, rng,
                                                                                 cfg.template)),
    }
    task = {"source": cfg.source, "rows_read": read.rows_read, "skipped": len(read.issues),
            "first_skipped": [str(issue) for issue in read.issues[:5]], "counts": counts,
            "positive_share": {"proxy_train": _positive_share(proxy), "judge_train": _positive_share(judge)},
            "prompt_words": list(words), "seed": cfg.seed}
    (out / "task.json").write_text(json.dumps(task, indent=2))
    return task


def _rows(reviews: list[LabelledText]):
    return ({"text": r.text, "label": r.label, "source": r.source} for r in reviews)


def _positive_share(reviews: list[LabelledText]) -> float:
    return round(sum(r.label for r in reviews) / max(len(reviews), 1), 4)
