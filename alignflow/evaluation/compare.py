"""Each model against the reference on the same prompts: win rates, length control, the LLM judge,
and the reward-hacking alerts.

Works on :class:`~alignflow.evaluation.per_model.ModelEval` data only (no model in memory).
Length control uses word counts (:func:`~alignflow.evaluation.metrics.word_tokens`), not policy
tokens, so that models with different tokenizers are compared on the same scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alignflow.config.eval import BootstrapConfig, EvalConfig
from alignflow.data.types import Message, PromptExample
from alignflow.evaluation.hacking import HackingAlert, check_models
from alignflow.evaluation.judge import JudgeError, JudgeResult, LLMJudge, judge_win_rate
from alignflow.evaluation.metrics import (
    Estimate,
    LengthControlledWinRate,
    ModelSummary,
    WinRate,
    length_controlled_win_rate,
    mean_ci,
    summarize_responses,
    win_rate,
    word_tokens,
)
from alignflow.evaluation.per_model import ModelEval, ResponseSet
from alignflow.evaluation.probes import mean_rouge_l


@dataclass
class Comparison:
    """One model against the reference (win rates count ties as half a win)."""

    proxy: WinRate
    proxy_shift: Estimate  # mean of (model - reference) proxy reward over the same prompts [paired CI]
    judge: WinRate | None = None  # by the judge reward model
    judge_shift: Estimate | None = None
    lc_proxy: LengthControlledWinRate | None = None
    lc_judge: LengthControlledWinRate | None = None
    llm_judge: JudgeResult | None = None
    categories: dict[str, WinRate] = field(default_factory=dict)  # proxy win rate per category


@dataclass
class ModelStats:
    """Per-model statistics that need no other model."""

    summary: ModelSummary
    proxy: Estimate
    judge: Estimate | None
    rouge_l: Estimate | None
    categories: dict[str, dict] = field(default_factory=dict)  # name -> {proxy, judge, rouge_l, summary}


def model_stats(model: ModelEval, prompts: list[PromptExample], categories: dict[str, list[PromptExample]],
                boot: BootstrapConfig) -> ModelStats:
    kw = _boot(boot)
    stats = ModelStats(_summary(model.name, model.main), mean_ci(model.main.proxy, **kw),
                       mean_ci(model.main.judge, **kw) if model.main.judge else None,
                       _rouge(model.main, prompts, boot))
    for name, responses in model.categories.items():
        stats.categories[name] = {
            "summary": _summary(model.name, responses), "proxy": mean_ci(responses.proxy, **kw),
            "judge": mean_ci(responses.judge, **kw) if responses.judge else None,
            "rouge_l": _rouge(responses, categories[name], boot)}
    return stats


def compare(model: ModelEval, reference: ModelEval, boot: BootstrapConfig) -> Comparison:
    kw = _boot(boot)
    a, b = model.main, reference.main
    words_a, words_b = _words(a), _words(b)
    comparison = Comparison(win_rate(a.proxy, b.proxy, **kw), reward_shift(a.proxy, b.proxy, boot),
                            lc_proxy=length_controlled_win_rate(a.proxy, b.proxy, words_a, words_b, **kw))
    if a.judge is not None and b.judge is not None:
        comparison.judge = win_rate(a.judge, b.judge, **kw)
        comparison.judge_shift = reward_shift(a.judge, b.judge, boot)
        comparison.lc_judge = length_controlled_win_rate(a.judge, b.judge, words_a, words_b, **kw)
    for name, responses in model.categories.items():
        if name in reference.categories:
            comparison.categories[name] = win_rate(responses.proxy, reference.categories[name].proxy, **kw)
    return comparison


def reward_shift(model: list[float], reference: list[float], boot: BootstrapConfig) -> Estimate:
    """The paired reward shift: per-prompt differences resampled together, so prompt difficulty
    (most of the spread of either model's rewards) cancels out of the interval."""
    return mean_ci([m - r for m, r in zip(model, reference, strict=True)], **_boot(boot))


def llm_judge_comparisons(
    cfg: EvalConfig, judge: LLMJudge, models: dict[str, ModelEval], prompts: list[PromptExample],
    notes: list[str],
) -> dict[str, JudgeResult]:
    """The LLM judge's win rate of every model over the reference; a failing endpoint becomes a note."""
    reference = models[cfg.reference_name]
    count = cfg.judge.max_prompts or len(prompts)
    questions = [render_question(p.prompt) for p in prompts[:count]]
    results = {}
    for name, model in models.items():
        if name == reference.name:
            continue
        try:
            results[name] = judge_win_rate(judge, questions, model.main.texts[:count], reference.main.texts[:count],
                                           n_bootstrap=cfg.bootstrap.n, seed=cfg.bootstrap.seed)
        except JudgeError as err:
            notes.append(f"LLM judge skipped from {name} on: {err}")
            break
    return results


def hacking_alerts(cfg: EvalConfig, models: dict[str, ModelEval], stats: dict[str, ModelStats],
                   llm: dict[str, JudgeResult]) -> list[HackingAlert]:
    """Alerts against the reference. The independent judge is the judge reward model's mean when there
    is one, else the LLM judge's win rate over the reference (0.5 for the reference itself)."""
    summaries = []
    for name, model in models.items():
        judge_score = stats[name].judge.value if stats[name].judge else None
        if judge_score is None and llm:
            result = llm.get(name)
            judge_score = 0.5 if name == cfg.reference_name else (
                result.win_rate.value if result and result.win_rate else None)
        summaries.append(_summary(name, model.main, proxy=stats[name].proxy.value, judge=judge_score))
    return check_models(summaries, cfg.reference_name, cfg.hacking)


def render_question(messages: list[Message]) -> str:
    """A prompt as the judge reads it: the user's text, or a transcript for a multi-turn prompt."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _summary(name: str, responses: ResponseSet, *, proxy: float | None = None,
             judge: float | None = None) -> ModelSummary:
    return summarize_responses(name, responses.texts, responses.num_tokens, responses.has_eos,
                               proxy_reward=proxy, judge_score=judge)


def _rouge(responses: ResponseSet, prompts: list[PromptExample], boot: BootstrapConfig) -> Estimate | None:
    return mean_rouge_l(responses.texts, [p.reference for p in prompts], n_bootstrap=boot.n, seed=boot.seed)


def _words(responses: ResponseSet) -> list[int]:
    return [len(word_tokens(text)) for text in responses.texts]


def _boot(boot: BootstrapConfig) -> dict:
    return {"n_bootstrap": boot.n, "level": boot.level, "seed": boot.seed}
