"""Python rewards run per sample: timeouts and failures name the sample; fallback keeps going."""

import math
import time

import pytest

from alignflow.rewards import GuardedReward, RewardError
from alignflow.rewards.guard import check_scores, describe_sample

PROMPTS = [[{"role": "user", "content": "q"}]] * 3
RESPONSES = ["fast one", "slow one", "fast two"]
METADATA = {"source": ["p.jsonl:1", "p.jsonl:2", "p.jsonl:3"], "reference": ["1", "2", "3"]}


def by_response(prompts, responses, metadata):
    """One score per row from the response text: 'slow' sleeps, 'spin' loops, 'boom' raises."""
    scores = []
    for response, reference in zip(responses, metadata["reference"]):
        if "slow" in response:
            time.sleep(3)
        if "spin" in response:
            while True:
                pass
        if "boom" in response:
            raise ZeroDivisionError("division by zero")
        scores.append(float("nan") if "nan" in response else float(reference))
    return scores


def test_scores_come_back_in_order_and_each_call_sees_one_sample():
    seen = []

    def spy(prompts, responses, metadata):
        seen.append((len(responses), metadata["source"]))
        return [len(responses[0])]

    guarded = GuardedReward(spy, "spy", timeout=5)
    assert guarded(PROMPTS, RESPONSES, METADATA) == [8.0, 8.0, 8.0]
    assert seen == [(1, ["p.jsonl:1"]), (1, ["p.jsonl:2"]), (1, ["p.jsonl:3"])]
    assert GuardedReward(spy, "spy", timeout=None)(PROMPTS, RESPONSES, METADATA) == [8.0, 8.0, 8.0]


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_timeout_fires_and_names_the_sample(isolation):
    guarded = GuardedReward(by_response, "slowpoke", timeout=0.3, isolation=isolation)
    started = time.perf_counter()
    with pytest.raises(RewardError) as err:
        guarded(PROMPTS, RESPONSES, METADATA)
    assert time.perf_counter() - started < 2.5  # did not wait for the 3 s sleep
    message = str(err.value)
    assert "reward 'slowpoke'" in message and "sample 1 (source p.jsonl:2, response 'slow one')" in message
    assert "timed out after 0.3 s" in message


def test_a_process_is_killed_on_timeout_and_later_samples_still_score():
    guarded = GuardedReward(by_response, "spinner", timeout=0.3, isolation="process", on_error="fallback",
                            fallback=-1.0)
    assert guarded(PROMPTS, ["fast", "spin", "fast"], METADATA) == [1.0, -1.0, 3.0]
    assert guarded.failures == 1


def test_fallback_scores_timed_out_samples_and_warns(caplog):
    guarded = GuardedReward(by_response, "slowpoke", timeout=0.2, on_error="fallback", fallback=-0.5)
    assert guarded(PROMPTS, RESPONSES, METADATA) == [1.0, -0.5, 3.0]
    assert guarded.failures == 1
    assert "1 of 3 samples scored the fallback -0.5" in caplog.text and "sample 1" in caplog.text


def test_a_raising_function_names_the_sample_and_keeps_the_cause():
    with pytest.raises(RewardError) as err:
        GuardedReward(by_response, "r", timeout=5)(PROMPTS, ["ok", "ok", "boom here"], METADATA)
    assert "sample 2 (source p.jsonl:3, response 'boom here') raised ZeroDivisionError: division by zero" \
        in str(err.value)
    assert isinstance(err.value.__cause__, ZeroDivisionError)


@pytest.mark.parametrize(("fn", "reason"), [
    (lambda p, r, m: [float("nan")], "returned nan"),
    (lambda p, r, m: [math.inf], "returned inf"),
    (lambda p, r, m: [1.0, 2.0], "returned 2 scores for 1 response"),
    (lambda p, r, m: None, "returned a NoneType, expected a list with one score"),
    (lambda p, r, m: ["high"], "returned 'high', not a number"),
])
@pytest.mark.parametrize("timeout", [None, 5])
def test_bad_scores_name_the_sample(fn, reason, timeout):
    with pytest.raises(RewardError) as err:
        GuardedReward(fn, "bad", timeout=timeout)(PROMPTS[:1], ["a response"], {"source": ["f.jsonl:9"]})
    assert str(err.value) == f"reward 'bad': sample 0 (source f.jsonl:9, response 'a response') {reason}"


def test_the_excerpt_is_short_and_a_missing_source_is_said():
    text = describe_sample(0, {}, "x" * 500)
    assert text == f"sample 0 (source unknown, response '{'x' * 80}...')"


def test_batch_scores_are_checked_per_sample():
    assert check_scores("rm", [1, 2.5], ["a", "b"], {}) == [1.0, 2.5]
    with pytest.raises(RewardError, match="returned 1 scores for 2 responses"):
        check_scores("rm", [1.0], ["a", "b"], {})
    with pytest.raises(RewardError, match=r"reward 'rm' returned nan for sample 1 \(source s:2, response 'b'\)"):
        check_scores("rm", [1.0, float("nan")], ["a", "b"], {"source": ["s:1", "s:2"]})


def test_raise_mode_stops_at_the_first_failure_instead_of_waiting_out_every_timeout():
    started = []

    def all_slow_after_the_first(prompts, responses, metadata):
        started.append(responses[0])
        if responses[0] != "fast":
            time.sleep(3)
        return [1.0]

    with pytest.raises(RewardError, match="sample 1 .* timed out"):
        GuardedReward(all_slow_after_the_first, "r", timeout=0.2)(PROMPTS, ["fast", "slow", "slow too"], METADATA)
    assert started == ["fast", "slow"]  # "slow too" never ran
