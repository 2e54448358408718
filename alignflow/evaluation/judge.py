"""Optional pairwise LLM judge through an OpenAI-compatible endpoint (off unless configured).

Nothing here runs unless a :class:`JudgeConfig` with a ``base_url`` is built: evaluation works
offline without it. Any server that speaks ``POST {base_url}/chat/completions`` works (OpenAI,
vLLM, llama.cpp's server, Ollama's ``/v1``), through the standard library only.

Each pair is judged twice, with the responses in both orders, because LLM judges favour one
position (Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena"). The
outcome for A is the mean over the two orders of 1 (A better), 0.5 (tie) and 0 (B better), so
a judge that always answers "the first one" scores every pair 0.5, and position bias cancels.
The prompt and the ``[[A]]``/``[[B]]``/``[[C]]`` verdict format are MT-Bench's pairwise ones.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Literal

from alignflow.evaluation.metrics import WinRate, win_rate_from_outcomes

Verdict = Literal["A", "B", "tie"]

SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user question displayed below. You should choose the assistant that follows the user's instructions "
    "and answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of "
    "the responses to influence your evaluation. Be as objective as possible. After providing your explanation, "
    'output your final verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if '
    'assistant B is better, and "[[C]]" for a tie.'
)
USER_TEMPLATE = (
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's "
    "Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)
_VERDICT = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_BARE_VERDICT = re.compile(r"^\W*(A|B|C|tie)\W*$", re.IGNORECASE)
_RETRY_STATUS = (408, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1 (the part before /chat/completions)
    model: str
    api_key: str | None = None  # sent as a Bearer token when set
    temperature: float = 0.0
    max_tokens: int = 512
    timeout_s: float = 120.0
    retries: int = 2  # extra attempts on timeouts, 429 and 5xx, with exponential backoff
    backoff_s: float = 1.0
    workers: int = 4  # requests in flight at once
    system_prompt: str = SYSTEM_PROMPT
    user_template: str = USER_TEMPLATE  # with {question}, {answer_a}, {answer_b}

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise ValueError("judge model must name the model to ask")
        if self.workers < 1 or self.retries < 0:
            raise ValueError(f"judge workers must be >= 1 and retries >= 0, got {self.workers}, {self.retries}")


class JudgeError(RuntimeError):
    """The judge endpoint failed (unreachable, an HTTP error, or an unexpected reply)."""


@dataclass(frozen=True)
class PairwiseVerdict:
    outcome: float | None  # for A: mean over both orders of 1 / 0.5 / 0; None if a reply had no verdict
    a_first: Verdict | None  # the verdict with A shown first
    b_first: Verdict | None  # the verdict with B shown first, mapped back to A/B
    consistent: bool  # both orders gave the same verdict
    raw: tuple[str, str]  # the judge's two replies

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JudgeResult:
    win_rate: WinRate | None  # of A over B on the parsed pairs; None when no pair could be parsed
    verdicts: tuple[PairwiseVerdict, ...]
    unparsed: int  # pairs left out because a reply had no verdict
    inconsistent: int  # pairs whose verdict flipped with the order (position bias)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_verdict(reply: str) -> Verdict | None:
    """The last ``[[A]]``/``[[B]]``/``[[C]]`` in ``reply`` (C = tie), or a bare ``A``/``B``/``tie`` reply."""
    found = _VERDICT.findall(reply) or _BARE_VERDICT.findall(reply.strip())
    if not found:
        return None
    letter = found[-1].upper()
    return "tie" if letter in ("C", "TIE") else letter


class LLMJudge:
    """``compare(question, a, b)`` -> :class:`PairwiseVerdict`, judged in both orders."""

    def __init__(self, config: JudgeConfig) -> None:
        config.validate()
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"

    def chat(self, messages: list[dict[str, str]]) -> str:
        """One chat completion; returns the reply text. Retries timeouts, 429 and 5xx."""
        cfg = self.config
        body = json.dumps({"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
                           "max_tokens": cfg.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if cfg.api_key:
            headers["Authorization"] = f"Bearer {cfg.api_key}"
        for attempt in range(cfg.retries + 1):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=cfg.timeout_s) as response:
                    return _reply_text(response.read(), self.url)
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:300]
                if err.code not in _RETRY_STATUS or attempt == cfg.retries:
                    raise JudgeError(f"judge at {self.url} answered HTTP {err.code}: {detail}") from err
            except (urllib.error.URLError, TimeoutError) as err:
                if attempt == cfg.retries:
                    reason = getattr(err, "reason", err)
                    raise JudgeError(f"cannot reach the judge at {self.url}: {reason}") from err
            time.sleep(cfg.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def judge_once(self, question: str, answer_a: str, answer_b: str) -> tuple[Verdict | None, str]:
        """The judge's positional verdict (``A`` = the first answer shown) and its reply."""
        user = self.config.user_template.format(question=question, answer_a=answer_a, answer_b=answer_b)
        reply = self.chat([{"role": "system", "content": self.config.system_prompt},
                           {"role": "user", "content": user}])
        return parse_verdict(reply), reply

    def compare(self, question: str, response_a: str, response_b: str) -> PairwiseVerdict:
        first, first_reply = self.judge_once(question, response_a, response_b)
        swapped, swapped_reply = self.judge_once(question, response_b, response_a)
        b_first = {"A": "B", "B": "A", "tie": "tie", None: None}[swapped]
        outcome = None
        if first is not None and b_first is not None:
            outcome = (_SCORE[first] + _SCORE[b_first]) / 2
        return PairwiseVerdict(outcome, first, b_first, first == b_first, (first_reply, swapped_reply))

    def compare_many(
        self, questions: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]
    ) -> list[PairwiseVerdict]:
        if not len(questions) == len(responses_a) == len(responses_b):
            raise ValueError(f"{len(questions)} questions, {len(responses_a)} and {len(responses_b)} responses")
        with ThreadPoolExecutor(max_workers=self.config.workers) as pool:
            return list(pool.map(self.compare, questions, responses_a, responses_b))


_SCORE = {"A": 1.0, "tie": 0.5, "B": 0.0}


def judge_win_rate(
    judge: LLMJudge,
    questions: Sequence[str],
    responses_a: Sequence[str],
    responses_b: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> JudgeResult:
    """Win rate of responses A over responses B (e.g. policy vs reference) by the judge.

    Pairs the judge did not give a verdict for are left out and counted in ``unparsed``.
    """
    verdicts = judge.compare_many(questions, responses_a, responses_b)
    outcomes = [v.outcome for v in verdicts if v.outcome is not None]
    rate = win_rate_from_outcomes(outcomes, n_bootstrap=n_bootstrap, seed=seed) if outcomes else None
    return JudgeResult(rate, tuple(verdicts), len(verdicts) - len(outcomes),
                       sum(not v.consistent for v in verdicts if v.outcome is not None))


def _reply_text(payload: bytes, url: str) -> str:
    try:
        content = json.loads(payload)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise JudgeError(f"judge at {url} sent a reply without choices[0].message.content: "
                         f"{payload[:300].decode(errors='replace')}") from err
    if not isinstance(content, str):
        raise JudgeError(f"judge at {url} sent non-text content: {content!r}")
    return content
