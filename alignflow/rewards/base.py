"""Reward functions: anything that scores (prompt, response) rows with one float each.

A reward function is a plain callable::

    def my_reward(prompts: list[list[Message]], responses: list[str], metadata: dict[str, list]) -> list[float]

``prompts`` are chat messages (the conversation up to the response), ``responses`` the decoded
responses (cut after the first EOS, special tokens removed), and ``metadata`` the per-row values
that travelled with the prompt (``reference`` answers, ``source`` "file:line", ``has_eos``,
``response_length`` in policy tokens, ...).
A config names one with ``reward_function: package.module:function``; a trained reward model is
adapted to the same interface by :class:`RewardModelReward`; ``rewards:`` combines several (see
``alignflow.rewards.build``).

Example (a toy length reward)::

    def prefers_short(prompts, responses, metadata):
        return [-len(r) / 100 for r in responses]
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Protocol, runtime_checkable

from alignflow.config.loader import ConfigError
from alignflow.data.types import Message
from alignflow.rewards.guard import check_scores


@runtime_checkable
class RewardFunction(Protocol):
    def __call__(self, prompts: list[list[Message]], responses: list[str], metadata: dict[str, list]) -> list[float]:
        """One score per row (``len(responses)`` floats)."""
        ...


class RewardModelReward:
    """A reward-model folder (from ``alignflow rm train``) as a :class:`RewardFunction`.

    Scores come from ``RewardModelScorer``: the RM's own tokenizer and chat template, its score
    read at the last real token and its centring offset added.
    """

    def __init__(self, model_dir: str | Path, *, batch_size: int = 16, dtype: str = "bf16") -> None:
        from alignflow.models.reward_io import RewardModelScorer

        self.model_dir = Path(model_dir)
        self.scorer = RewardModelScorer(model_dir, batch_size=batch_size, dtype=dtype)

    def __call__(self, prompts: list[list[Message]], responses: list[str], metadata: dict[str, list]) -> list[float]:
        # NaN/inf stops the run naming the sample, as a Python reward's does (a diverged reward model).
        return check_scores(str(self.model_dir), self.scorer.score(prompts, responses).tolist(), responses, metadata)


def import_reward_function(spec: str, key: str = "reward_function") -> RewardFunction:
    """``"package.module:name"`` -> that callable, or a ConfigError naming ``key`` and the spec.

    Importing runs the module's code: a config is code, which is why only trusted configs should
    run. Refused: anything that cannot be called as ``fn(prompts, responses, metadata)``.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{key} must look like package.module:function, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{key}: {spec!r}: cannot import {module_name!r}: {err}") from err
    target = getattr(module, attr, None)
    if target is None:
        raise ConfigError(f"{key}: {spec!r}: module {module_name!r} has no attribute {attr!r}")
    problem = reward_signature_problem(target)
    if problem:
        raise ConfigError(f"{key}: {spec!r} {problem}; a reward is a function "
                          "(prompts, responses, metadata) -> list[float]")
    return target


def reward_signature_problem(target: object) -> str | None:
    """Why ``target`` is not a reward function, or None when ``target(prompts, responses, metadata)`` binds."""
    if isinstance(target, type):
        return "is a class"
    if not callable(target):
        return f"is not callable (a {type(target).__name__})"
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return "has no inspectable signature"
    try:
        signature.bind(None, None, None)
    except TypeError as err:
        return f"cannot be called as fn(prompts, responses, metadata) ({err}; its signature is {signature})"
    return None
