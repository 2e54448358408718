import math

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from alignflow.rollout import SamplingParams
from alignflow.rollout.sampling import (
    apply_no_repeat_ngram,
    apply_repetition_penalty,
    apply_top_k,
    apply_top_p,
    draw_uniforms,
    process_logits,
    row_generators,
    sample_next_token,
    seed_for,
)

INF = float("inf")


def random_logits(rows: int = 6, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def random_ids(rows: int = 6, length: int = 9, vocab: int = 50, seed: int = 1) -> torch.Tensor:
    return torch.randint(vocab, (rows, length), generator=torch.Generator().manual_seed(seed))


# ----- repetition penalty -------------------------------------------------------------------


def test_repetition_penalty_hand_example():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    previous = torch.tensor([[0, 1, 3]])
    mask = torch.tensor([[1, 1, 0]])  # token 3 only appears as padding: untouched
    out = apply_repetition_penalty(logits, previous, 2.0, mask)
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]


def test_repetition_penalty_counts_a_token_seen_both_as_pad_and_as_real():
    logits = torch.tensor([[4.0, 4.0]])
    previous = torch.tensor([[1, 1, 1, 1]])
    mask = torch.tensor([[0, 0, 1, 0]])
    assert apply_repetition_penalty(logits, previous, 4.0, mask).tolist() == [[4.0, 1.0]]


def test_repetition_penalty_matches_transformers():
    logits, previous = random_logits(), random_ids()
    expected = RepetitionPenaltyLogitsProcessor(1.7)(previous, logits.clone())
    torch.testing.assert_close(apply_repetition_penalty(logits, previous, 1.7), expected)


def test_repetition_penalty_of_one_is_a_no_op():
    logits = random_logits()
    assert apply_repetition_penalty(logits, random_ids(), 1.0) is logits


# ----- no-repeat n-gram ban -----------------------------------------------------------------


def test_no_repeat_ngram_hand_example():
    # history 1 2 3 1 2. n=3: the context is (1, 2) and "1 2 3" occurred, so 3 is banned.
    # n=2: the context is (2,) and "2 3" occurred, so 3 is banned. n=1: every seen token is banned.
    logits = torch.zeros(1, 6)
    history = torch.tensor([[1, 2, 3, 1, 2]])
    assert apply_no_repeat_ngram(logits, history, 3)[0].isinf().nonzero().flatten().tolist() == [3]
    assert apply_no_repeat_ngram(logits, history, 2)[0].isinf().nonzero().flatten().tolist() == [3]
    assert apply_no_repeat_ngram(logits, history, 1)[0].isinf().nonzero().flatten().tolist() == [1, 2, 3]
    assert torch.equal(apply_no_repeat_ngram(logits, history, 0), logits)
    assert torch.equal(apply_no_repeat_ngram(logits, history, 6), logits)  # no 6-gram yet


def test_no_repeat_ngram_ignores_ngrams_that_touch_padding():
    logits = torch.zeros(1, 6)
    history, mask = torch.tensor([[0, 4, 0, 4]]), torch.tensor([[0, 1, 1, 1]])  # a left pad, then 4 0 4
    # The context (4,) was followed by 0 once, so 0 is banned; the pad's "0 4" bans nothing.
    out = apply_no_repeat_ngram(logits, history, 2, mask)
    assert out[0].isinf().nonzero().flatten().tolist() == [0]
    history, mask = torch.tensor([[0, 5]]), torch.tensor([[0, 1]])  # the only trigram context is (pad, 5)
    assert torch.equal(apply_no_repeat_ngram(logits, history, 3, mask), logits)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_matches_transformers(n):
    logits, previous = random_logits(rows=8, vocab=12, seed=5), random_ids(rows=8, length=15, vocab=12, seed=6)
    expected = NoRepeatNGramLogitsProcessor(n)(previous, logits.clone())
    torch.testing.assert_close(apply_no_repeat_ngram(logits, previous, n), expected)


def test_no_repeat_ngram_without_history_is_an_error():
    with pytest.raises(ValueError, match="previous_ids"):
        process_logits(random_logits(), SamplingParams(no_repeat_ngram_size=2))


# ----- top-k / top-p ------------------------------------------------------------------------


def test_top_k_hand_example():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert apply_top_k(logits, 2).tolist() == [[-INF, 4.0, 3.0, -INF]]


@pytest.mark.parametrize("k", [1, 3, 17, 49])
def test_top_k_matches_transformers(k):
    logits = random_logits()
    torch.testing.assert_close(apply_top_k(logits, k), TopKLogitsWarper(k)(None, logits.clone()))


@pytest.mark.parametrize("k", [0, 50, 80])
def test_top_k_off_or_wider_than_vocab_is_a_no_op(k):
    logits = random_logits()
    assert torch.equal(apply_top_k(logits, k), logits)


@pytest.mark.parametrize(("p", "kept"), [(0.3, 1), (0.7, 2), (0.85, 3), (0.99, 4)])
def test_top_p_hand_example(p, kept):
    logits = torch.tensor([[0.15, 0.05, 0.5, 0.3]]).log()  # sorted: 0.5, 0.3, 0.15, 0.05
    out = apply_top_p(logits, p)
    kept_ids = [2, 3, 0, 1][:kept]  # most likely first
    assert [i for i in range(4) if out[0, i] > -INF] == sorted(kept_ids)
    assert torch.equal(out[0, kept_ids], logits[0, kept_ids])


@pytest.mark.parametrize("p", [0.05, 0.3, 0.6, 0.9, 0.97])
def test_top_p_matches_transformers(p):
    logits = random_logits(rows=16, seed=2)
    torch.testing.assert_close(apply_top_p(logits, p), TopPLogitsWarper(p)(None, logits.clone()))


def test_top_p_keeps_the_top_token_even_when_it_alone_exceeds_p():
    logits = torch.tensor([[10.0, 0.0, 0.0]])
    assert apply_top_p(logits, 0.01).tolist() == [[10.0, -INF, -INF]]


# ----- process_logits / sample_next_token ---------------------------------------------------


def test_process_logits_matches_transformers_processor_chain():
    logits, previous = random_logits(rows=8, seed=3), random_ids(rows=8, seed=4)
    params = SamplingParams(temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.3)
    chain = LogitsProcessorList(
        [
            RepetitionPenaltyLogitsProcessor(1.3),
            TemperatureLogitsWarper(0.7),
            TopKLogitsWarper(20),
            TopPLogitsWarper(0.8),
        ]
    )
    expected = chain(previous, logits.clone())
    torch.testing.assert_close(process_logits(logits, params, previous, torch.ones_like(previous)), expected)


def test_process_logits_returns_float32():
    logits = random_logits().bfloat16()
    assert process_logits(logits, SamplingParams()).dtype == torch.float32


def test_greedy_processing_ignores_sampling_warpers():
    logits = random_logits()
    params = SamplingParams(do_sample=False, temperature=0.0, top_k=1, top_p=0.1)
    assert torch.equal(process_logits(logits, params), logits)


def test_repetition_penalty_without_history_is_an_error():
    with pytest.raises(ValueError, match="previous_ids"):
        process_logits(random_logits(), SamplingParams(repetition_penalty=1.2))


def test_greedy_sample_is_argmax_with_its_logprob():
    logits = random_logits()
    token, logprob = sample_next_token(logits, None, do_sample=False)
    assert torch.equal(token, logits.argmax(-1))
    torch.testing.assert_close(logprob, logits.log_softmax(-1).max(-1).values)


def test_sampling_never_picks_filtered_tokens_and_reports_their_logprob():
    logits = apply_top_k(random_logits(rows=64), 3)
    token, logprob = sample_next_token(logits, uniforms(64), do_sample=True)
    assert (logits.gather(1, token[:, None]) > -INF).all()
    torch.testing.assert_close(logprob, logits.log_softmax(-1).gather(1, token[:, None]).squeeze(1))


def test_sampling_follows_the_distribution():
    probs = torch.tensor([0.6, 0.3, 0.1])
    logits = probs.log().expand(20_000, 3)
    token, _ = sample_next_token(logits, uniforms(20_000), do_sample=True)
    frequencies = torch.bincount(token, minlength=3) / token.numel()
    torch.testing.assert_close(frequencies, probs, atol=0.015, rtol=0)


def uniforms(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(rows, 1, generator=torch.Generator().manual_seed(seed))


def test_a_rows_draws_depend_only_on_its_own_seed():
    """Row generators seeded per (run seed, prompt, sample): a row draws the same numbers whatever
    rows share its batch, which is what makes sampling independent of how prompts are sharded."""
    seeds = [seed_for(7, prompt, sample) for prompt in range(4) for sample in range(2)]
    together = draw_uniforms(row_generators(seeds, torch.device("cpu")), len(seeds), torch.device("cpu"))
    alone = [draw_uniforms(row_generators([s], torch.device("cpu")), 1, torch.device("cpu")) for s in seeds[::-1]]
    torch.testing.assert_close(together, torch.cat(alone[::-1]), rtol=0, atol=0)
    assert len(set(seeds)) == len(seeds) and seed_for(7, 1, 0) != seed_for(7, 0, 1)


# ----- SamplingParams -----------------------------------------------------------------------


def test_default_params_are_valid():
    SamplingParams().validate()
    SamplingParams(do_sample=False, temperature=0.0).validate()  # temperature 0 is fine for greedy


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
        ({"stop_strings": "###"}, "stop_strings"),
        ({"stop_strings": ("",)}, "stop_strings"),
        ({"n": 0}, "n "),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_params_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**kwargs).validate()
