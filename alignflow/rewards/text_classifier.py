"""A TF-IDF + logistic-regression text classifier, saved as JSON (never pickle) and used as a reward.

It shares nothing with a transformer reward (no tokenizer, no weights, another model family), which
is what an independent judge of a transformer proxy needs: a policy that exploits the proxy's quirks
is unlikely to exploit the same quirks here.

The folder holds ``text_classifier.json``: the vectorizer settings, the vocabulary (terms in column
order), the idf weights, the coefficients and intercept, the label names and the metrics measured
when it was trained. Loading rebuilds scikit-learn's vectorizer from those numbers, so a reloaded
classifier gives the same scores as the one that was fitted; no Python object is ever unpickled.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from alignflow.config.loader import ConfigError
from alignflow.data.types import Message

FILE = "text_classifier.json"
FORMAT_VERSION = 1
Output = Literal["logit", "logprob", "probability", "decision"]


@dataclass(frozen=True)
class TfidfSettings:
    """scikit-learn ``TfidfVectorizer`` settings (word n-grams, lower-cased, l2-normalised)."""

    ngram_max: int = 2  # word n-grams of 1..ngram_max words
    min_df: int = 2  # a term must occur in at least this many training texts
    max_features: int | None = 200_000  # the most frequent terms kept; null = all
    sublinear_tf: bool = True  # 1 + log(tf): a word repeated ten times is not ten times the evidence

    def vectorizer(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(ngram_range=(1, self.ngram_max), min_df=self.min_df, max_features=self.max_features,
                               sublinear_tf=self.sublinear_tf, lowercase=True, dtype=np.float64)


def _require_sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError("the text classifier needs scikit-learn: pip install 'alignflow[judge]'") from None


class TextClassifier:
    """Binary TF-IDF + logistic regression: ``logits(texts)`` is the log-odds of ``labels[1]``."""

    def __init__(self, settings: TfidfSettings, vocabulary: list[str], idf: np.ndarray, coef: np.ndarray,
                 intercept: float, labels: list[str], metrics: dict[str, Any] | None = None) -> None:
        _require_sklearn()
        if not len(vocabulary) == len(idf) == len(coef):
            raise ValueError(f"{len(vocabulary)} terms, {len(idf)} idf weights, {len(coef)} coefficients")
        if len(labels) != 2:
            raise ValueError(f"a binary classifier needs 2 labels, got {labels}")
        self.settings, self.vocabulary, self.labels = settings, list(vocabulary), list(labels)
        self.idf, self.coef, self.intercept = np.asarray(idf, float), np.asarray(coef, float), float(intercept)
        self.metrics = dict(metrics or {})
        self._vectorizer = settings.vectorizer()
        self._vectorizer.vocabulary_ = {term: i for i, term in enumerate(self.vocabulary)}
        self._vectorizer.idf_ = self.idf

    @classmethod
    def fit(cls, texts: list[str], targets: list[int], labels: list[str], settings: TfidfSettings = TfidfSettings(),
            *, c: float = 4.0, max_iter: int = 1000) -> TextClassifier:
        """Fit on ``texts`` with ``targets`` in {0, 1} (indices into ``labels``); L2-regularised at 1/``c``."""
        _require_sklearn()
        from sklearn.linear_model import LogisticRegression

        if set(targets) != {0, 1}:
            raise ValueError(f"targets must hold both 0 and 1, got {sorted(set(targets))}")
        vectorizer = settings.vectorizer()
        features = vectorizer.fit_transform(texts)
        model = LogisticRegression(C=c, max_iter=max_iter).fit(features, targets)
        order = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        return cls(settings, order, vectorizer.idf_, model.coef_[0], model.intercept_[0], labels)

    def logits(self, texts: list[str]) -> np.ndarray:
        """(n,) log-odds of ``labels[1]`` against ``labels[0]``."""
        return self._vectorizer.transform(texts) @ self.coef + self.intercept

    def label_index(self, label: str | int, key: str = "class_label") -> int:
        return label_index(self.labels, label, key, self.metrics.get("path", "the text classifier"))

    def scores(self, texts: list[str], label: int, output: Output) -> list[float]:
        """Per text: the ``output`` of class ``label`` (logit = its log-odds, decision = 1 if predicted)."""
        z = self.logits(texts) * (1 if label == 1 else -1)
        if output == "logit":
            return z.tolist()
        if output == "logprob":
            return (-np.logaddexp(0.0, -z)).tolist()
        if output == "probability":
            return (1.0 / (1.0 + np.exp(-z))).tolist()
        return (z > 0).astype(float).tolist()

    def accuracy(self, texts: list[str], targets: list[int]) -> float:
        return float(np.mean((self.logits(texts) > 0).astype(int) == np.asarray(targets)))

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = {"format": "alignflow-text-classifier", "version": FORMAT_VERSION, "labels": self.labels,
                "settings": asdict(self.settings), "vocabulary": self.vocabulary, "idf": self.idf.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "metrics": self.metrics}
        tmp = folder / (FILE + ".tmp")
        tmp.write_text(json.dumps(data))  # floats are written with repr: they read back bit for bit
        tmp.replace(folder / FILE)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TextClassifier:
        path = Path(folder) / FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a text-classifier folder (no {FILE})")
        data = json.loads(path.read_text())
        if data.get("format") != "alignflow-text-classifier" or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path} is not an alignflow text classifier of version {FORMAT_VERSION}")
        if not all(map(math.isfinite, [*data["coef"], *data["idf"], data["intercept"]])):
            raise ValueError(f"{path} holds non-finite weights")
        return cls(TfidfSettings(**data["settings"]), data["vocabulary"], np.array(data["idf"]),
                   np.array(data["coef"]), data["intercept"], data["labels"], {**data["metrics"], "path": str(folder)})


def label_index(labels: list[str], label: str | int, key: str, where: str) -> int:
    """The index of ``label`` (a name in ``labels`` or an index), or a ConfigError naming ``key``."""
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(labels):
        return label
    if isinstance(label, str) and label in labels:
        return labels.index(label)
    if isinstance(label, str) and label.isdigit() and int(label) < len(labels):
        return int(label)
    choices = ", ".join(f"{i}={name}" for i, name in enumerate(labels))
    raise ConfigError(f"{key}: {label!r} is not a label of {where}; its labels: {choices}")


def prompt_text(messages: list[Message]) -> str:
    """The prompt as running text: its non-system turns joined by newlines."""
    return "\n".join(m["content"] for m in messages if m.get("role") != "system")


def classifier_input(prompt: list[Message], response: str, with_prompt: bool) -> str:
    """What a classifier reads: the response, or prompt and response as one text (a continuation)."""
    return f"{prompt_text(prompt).rstrip()} {response.lstrip()}" if with_prompt else response


class TextClassifierReward:
    """A saved :class:`TextClassifier` folder as a reward function: the ``output`` of one label."""

    def __init__(self, folder: str | Path, *, class_label: str | int, output: Output = "logprob",
                 with_prompt: bool = False, key: str = "class_label") -> None:
        self.model = TextClassifier.load(folder)
        self.index = self.model.label_index(class_label, key)
        self.output, self.with_prompt = output, with_prompt

    def __call__(self, prompts: list[list[Message]], responses: list[str], metadata: dict[str, list]) -> list[float]:
        texts = [classifier_input(p, r, self.with_prompt) for p, r in zip(prompts, responses)]
        return self.model.scores(texts, self.index, self.output)
