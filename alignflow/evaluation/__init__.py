"""Evaluation: did alignment really work? The computational core of ``alignflow eval``.

One job per module; every result is a frozen dataclass with ``as_dict()`` for reports:

* :mod:`~alignflow.evaluation.metrics`: win rates (ties count half) with bootstrap intervals,
  length-controlled win rate, mean intervals, distinct-n, repeated n-grams, EOS rate, lengths;
* :mod:`~alignflow.evaluation.hacking`: reward-hacking alerts over per-model summaries or a
  training trajectory;
* :mod:`~alignflow.evaluation.generate`: responses from a model, best-of-n, sampling sweeps;
* :mod:`~alignflow.evaluation.kl`: sequence KL of a policy to its reference;
* :mod:`~alignflow.evaluation.probes`: refusal / over-refusal, TruthfulQA MC1, ROUGE-L;
* :mod:`~alignflow.evaluation.judge`: an optional pairwise LLM judge over HTTP (off by default).
"""

from alignflow.evaluation.generate import (
    BestOfN,
    Generation,
    ResponseGenerator,
    SweepPoint,
    as_messages,
    best_of_n,
    describe_params,
    generate_responses,
    score_responses,
    sweep_sampling,
)
from alignflow.evaluation.hacking import (
    HackingAlert,
    HackingThresholds,
    check_model,
    check_models,
    check_trajectory,
)
from alignflow.evaluation.judge import (
    JudgeConfig,
    JudgeError,
    JudgeResult,
    LLMJudge,
    PairwiseVerdict,
    judge_win_rate,
    parse_verdict,
)
from alignflow.evaluation.kl import SequenceKL, sequence_kl
from alignflow.evaluation.metrics import (
    Estimate,
    LengthControlledWinRate,
    LengthStats,
    ModelSummary,
    WinRate,
    bootstrap_ci,
    distinct_n,
    eos_rate,
    length_controlled_win_rate,
    length_stats,
    mean_ci,
    mean_repeated_ngram_rate,
    pairwise_outcomes,
    repeated_ngram_rate,
    summarize_responses,
    t_quantile,
    win_rate,
    win_rate_from_outcomes,
    word_tokens,
)
from alignflow.evaluation.probes import (
    REFUSAL_PATTERNS,
    MCQuestion,
    MCResult,
    RefusalReport,
    RefusalRow,
    RougeScore,
    SafetyPrompt,
    choice_logprobs,
    evaluate_refusals,
    is_refusal,
    load_red_team_prompts,
    load_safety_prompts,
    load_truthfulqa,
    load_xstest,
    mean_rouge_l,
    refusal_report,
    rouge_l,
    truthfulqa_mc1,
)

__all__ = [
    "REFUSAL_PATTERNS", "BestOfN", "Estimate", "Generation", "HackingAlert", "HackingThresholds", "JudgeConfig",
    "JudgeError", "JudgeResult", "LLMJudge", "LengthControlledWinRate", "LengthStats", "MCQuestion", "MCResult",
    "ModelSummary", "PairwiseVerdict", "RefusalReport", "RefusalRow", "ResponseGenerator", "RougeScore",
    "SafetyPrompt", "SequenceKL", "SweepPoint", "WinRate", "as_messages", "best_of_n", "bootstrap_ci",
    "check_model", "check_models", "check_trajectory", "choice_logprobs", "describe_params", "distinct_n",
    "eos_rate", "evaluate_refusals", "generate_responses", "is_refusal", "judge_win_rate",
    "length_controlled_win_rate", "length_stats", "load_red_team_prompts", "load_safety_prompts", "load_truthfulqa",
    "load_xstest", "mean_ci", "mean_repeated_ngram_rate", "mean_rouge_l", "pairwise_outcomes", "parse_verdict",
    "refusal_report", "repeated_ngram_rate", "rouge_l", "score_responses", "sequence_kl", "summarize_responses",
    "sweep_sampling", "t_quantile", "truthfulqa_mc1", "win_rate", "win_rate_from_outcomes", "word_tokens",
]
