"""Python reward functions run sample by sample, with a timeout and errors that name the sample.

A reward function is user code: it can hang (a runaway regex, a sympy simplification), raise on
one odd response, or return NaN. Any of these deep inside an RL run is useless without knowing
which sample did it, so :class:`GuardedReward` calls the function once per sample and reports a
failure as ``sample 3 (source data/train.jsonl:17, response 'The answer is...'): timed out``.

Isolation (the timeout needs the call to run somewhere the caller can stop waiting for):

* ``thread`` (default): a daemon thread runs the samples in order. Cheap and works with any
  callable, but a Python thread cannot be killed: a timed-out call is abandoned and keeps running
  in the background, and C code that holds the GIL (the ``re`` module) blocks the timer itself.
* ``process``: a forked child runs them and is killed on timeout; robust against any hang, costs
  a fork per batch and needs ``fork`` (Linux). The function must not rely on torch threads.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from alignflow.data.types import Message

if TYPE_CHECKING:  # base imports check_scores from here
    from alignflow.rewards.base import RewardFunction

log = logging.getLogger(__name__)
EXCERPT_CHARS = 80


class RewardError(ValueError):
    """A reward that cannot be used; the message names the reward and the sample."""


def describe_sample(index: int, metadata: dict[str, list], response: str) -> str:
    """``sample 3 (source f.jsonl:17, response 'The answer...')`` -- enough to find the row."""
    sources = metadata.get("source") or []
    source = sources[index] if index < len(sources) and sources[index] else "unknown"
    excerpt = response if len(response) <= EXCERPT_CHARS else response[:EXCERPT_CHARS] + "..."
    return f"sample {index} (source {source}, response {excerpt!r})"


def check_scores(name: str, scores: Any, responses: Sequence[str], metadata: dict[str, list]) -> list[float]:
    """``scores`` as floats: one per response, all finite, or a RewardError naming the first bad one."""
    try:
        values = [float(s) for s in scores]
    except (TypeError, ValueError) as err:
        raise RewardError(f"reward {name!r} returned {type(scores).__name__} that is not a list of numbers: "
                          f"{err}") from err
    if len(values) != len(responses):
        raise RewardError(f"reward {name!r} returned {len(values)} scores for {len(responses)} responses")
    for i, value in enumerate(values):
        if not math.isfinite(value):
            raise RewardError(f"reward {name!r} returned {value} for {describe_sample(i, metadata, responses[i])}")
    return values


# ----------------------------------------------------------------------------- one sample


@dataclass(frozen=True)
class Failure:
    """Why one sample has no score (``cause`` is the exception when it is in this process)."""

    reason: str
    cause: BaseException | None = None


class BadScore(ValueError):
    """A one-sample call returned something other than one finite number."""


def one_score(result: Any) -> float:
    """The single finite score a one-sample call must return, or BadScore saying what came back."""
    try:
        values = list(result)
    except TypeError:
        raise BadScore(f"returned a {type(result).__name__}, expected a list with one score") from None
    if len(values) != 1:
        raise BadScore(f"returned {len(values)} scores for 1 response")
    try:
        value = float(values[0])
    except (TypeError, ValueError):
        raise BadScore(f"returned {values[0]!r}, not a number") from None
    if not math.isfinite(value):
        raise BadScore(f"returned {value}")
    return value


def attempt(score: Callable[[int], float], index: int) -> float | Failure:
    try:
        return score(index)
    except BadScore as err:
        return Failure(str(err), err)
    except Exception as err:  # user code: any exception becomes a per-sample failure
        return Failure(f"raised {type(err).__name__}: {err}", err)


# ----------------------------------------------------------------------------- running with a timeout


class _ThreadRunner:
    """Samples ``start..n-1`` in order on a daemon thread; abandoned (not killed) on timeout."""

    def __init__(self, score: Callable[[int], float], start: int, n: int) -> None:
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = threading.Event()

        def work() -> None:
            for i in range(start, n):
                if self.cancelled.is_set():
                    return
                self.results.put(attempt(score, i))

        threading.Thread(target=work, daemon=True, name="alignflow-reward").start()

    def get(self, timeout: float) -> float | Failure | None:
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self) -> None:
        self.cancelled.set()  # a hung call cannot be interrupted; at least do no further samples


class _ProcessRunner:
    """Samples ``start..n-1`` in a forked child; killed on timeout (fork: nothing is pickled in)."""

    def __init__(self, score: Callable[[int], float], start: int, n: int) -> None:
        context = multiprocessing.get_context("fork")
        self.receiver, sender = context.Pipe(duplex=False)

        def work() -> None:
            for i in range(start, n):
                result = attempt(score, i)
                sender.send(Failure(result.reason) if isinstance(result, Failure) else result)

        self.process = context.Process(target=work, daemon=True, name="alignflow-reward")
        self.process.start()
        sender.close()  # the child holds the only sending end: EOF when it dies

    def get(self, timeout: float) -> float | Failure | None:
        if not self.receiver.poll(timeout):
            return None
        try:
            return self.receiver.recv()
        except EOFError:
            self.process.join(1)
            return Failure(f"the reward process died (exit code {self.process.exitcode})")

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.receiver.close()


RUNNERS = {"thread": _ThreadRunner, "process": _ProcessRunner}


def run_samples(score: Callable[[int], float], n: int, timeout: float | None,
                isolation: Literal["thread", "process"] = "thread", *,
                stop_at_failure: bool = False) -> list[float | Failure]:
    """``score(i)`` for ``i < n``, each given at most ``timeout`` seconds (None: in this thread).

    ``stop_at_failure``: return after the first failure (fewer than ``n`` results), so an error
    is not delayed by the timeouts of the samples after it.
    """
    results: list[float | Failure] = []
    while len(results) < n:  # one runner per stretch of samples; a timeout starts a fresh one
        runner = None if timeout is None else RUNNERS[isolation](score, len(results), n)
        try:
            while len(results) < n:
                result = attempt(score, len(results)) if runner is None else runner.get(timeout)
                timed_out = result is None
                results.append(Failure(f"timed out after {timeout:g} s") if timed_out else result)
                if stop_at_failure and isinstance(results[-1], Failure):
                    return results
                if timed_out:
                    break
        finally:
            if runner is not None:
                runner.stop()
    return results


# ----------------------------------------------------------------------------- the reward


class GuardedReward:
    """A Python reward function called once per sample, with a timeout and named failures.

    ``on_error="raise"``: the first failure (exception, timeout, wrong number of scores, NaN/inf)
    is a :class:`RewardError` naming the reward and the sample. ``"fallback"``: failed samples
    score ``fallback`` and one warning per batch says how many and why (``failures`` counts them).
    Per-sample calls mean a function that normalises over the batch sees batches of one.
    """

    def __init__(self, fn: RewardFunction, name: str, *, timeout: float | None = 10.0,
                 on_error: Literal["raise", "fallback"] = "raise", fallback: float = 0.0,
                 isolation: Literal["thread", "process"] = "thread") -> None:
        if isolation not in RUNNERS:
            raise ValueError(f"isolation must be one of {', '.join(RUNNERS)}, got {isolation!r}")
        self.fn, self.name, self.timeout = fn, name, timeout
        self.on_error, self.fallback, self.isolation = on_error, fallback, isolation
        self.failures = 0

    def __call__(self, prompts: list[list[Message]], responses: list[str], metadata: dict[str, list]) -> list[float]:
        def score(i: int) -> float:
            return one_score(self.fn([prompts[i]], [responses[i]], {k: [v[i]] for k, v in metadata.items()}))

        results = run_samples(score, len(responses), self.timeout, self.isolation,
                              stop_at_failure=self.on_error == "raise")
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, Failure)]
        if not failed:
            return results
        i, first = failed[0]
        message = f"reward {self.name!r}: {describe_sample(i, metadata, responses[i])} {first.reason}"
        if self.on_error == "raise":
            raise RewardError(message) from first.cause
        self.failures += len(failed)
        log.warning("%d of %d samples scored the fallback %g; first: %s", len(failed), len(results),
                    self.fallback, message)
        return [self.fallback if isinstance(r, Failure) else r for r in results]
