"""``alignflow judge train`` / the ``judge_clf`` stage: a TF-IDF + logistic-regression judge.

Fits :class:`~alignflow.rewards.text_classifier.TextClassifier` on ``{text, label}`` rows, measures
it on held-out rows (whole texts and their first words) and saves it as JSON with those metrics.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from alignflow.config.classify import TextClassifierConfig
from alignflow.config.loader import dump_config, to_dict
from alignflow.rewards.text_classifier import TextClassifier, TfidfSettings
from alignflow.trainers.labelled import held_out_accuracies, load_split


def train_text_classifier(cfg: TextClassifierConfig, console: Console | None = None) -> tuple[Path, dict]:
    """Fit, measure and save; returns the folder (a ``text_classifier`` reward's path) and the metrics."""
    console = console or Console()
    cfg.validate()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    started = time.perf_counter()
    train = load_split(cfg.data.train, cfg.data, max_samples=cfg.data.max_samples, key="data.train")
    settings = TfidfSettings(ngram_max=cfg.ngram_max, min_df=cfg.min_df, max_features=cfg.max_features,
                             sublinear_tf=cfg.sublinear_tf)
    console.print(f"text classifier: TF-IDF (1-{cfg.ngram_max} grams) + logistic regression on {len(train)} texts")
    model = TextClassifier.fit([r.text for r in train], [r.label for r in train], cfg.data.labels, settings, c=cfg.c)
    metrics: dict = {"train_rows": len(train), "features": len(model.vocabulary)}
    if cfg.data.test:
        test = load_split(cfg.data.test, cfg.data, max_samples=None, sample=cfg.data.test_samples, key="data.test")
        metrics.update(held_out_accuracies(lambda texts: (model.logits(texts) > 0).astype(int).tolist(), test,
                                       cfg.data.probe_words))
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    model.metrics = {**metrics, "config": to_dict(cfg)}
    model.save(out)
    console.print("text classifier: " + ", ".join(f"{k} {_show(v)}" for k, v in metrics.items()))
    return out, metrics


def _show(value) -> str:
    if isinstance(value, dict):
        return f"{value['value']:.1%} [{value['low']:.1%}, {value['high']:.1%}] (n={value['n']})"
    return str(value)
