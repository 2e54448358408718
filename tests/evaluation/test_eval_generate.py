from dataclasses import replace

import pytest
import torch
from eval_data import QUESTIONS, length_scorer

from alignflow.data.types import PromptExample
from alignflow.evaluation.generate import (
    ResponseGenerator,
    best_of_n,
    describe_params,
    generate_responses,
    score_responses,
    sweep_sampling,
)
from alignflow.models.reward_io import RewardModelScorer
from alignflow.rollout import HFRolloutEngine, SamplingParams
from alignflow.rollout.linears import PackedLinear, packing_supported
from alignflow.workers.policy import rollout_module

GREEDY = SamplingParams(max_new_tokens=8, do_sample=False)


def test_generate_returns_one_response_per_prompt_in_order(generator):
    generations = generator.generate(QUESTIONS, GREEDY)
    assert [g.prompt_index for g in generations] == list(range(len(QUESTIONS)))
    for g in generations:
        assert 1 <= g.num_tokens <= 8 and isinstance(g.text, str)
        assert g.has_eos or g.num_tokens == 8
    # Batching (sorted by length, padded) does not change what each prompt gets.
    alone = [generator.generate([q], GREEDY)[0].text for q in QUESTIONS]
    assert [g.text for g in generations] == alone
    assert len({g.text for g in generations}) > 1  # not a degenerate model


def test_prompt_forms_are_equivalent(generator):
    question = QUESTIONS[0]
    forms = [question, [{"role": "user", "content": question}], PromptExample(prompt=[{"role": "user",
                                                                                       "content": question}])]
    assert len({generator.generate([form], GREEDY)[0].text for form in forms}) == 1


def test_sampling_n_per_prompt_is_seeded(generator):
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=3, seed=11)
    first = generator.generate(QUESTIONS[:3], params)
    assert [g.prompt_index for g in first] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert first == generator.generate(QUESTIONS[:3], params)
    assert len({g.text for g in first}) > 3


def test_text_matches_the_token_ids(generator):
    batch = next(generator.generate_batches(QUESTIONS[:2], GREEDY))[1]
    decoded = generator.decode(batch)
    for row, g in enumerate(decoded):
        ids = batch["response_ids"][row][batch["response_mask"][row].bool()].tolist()
        assert g.num_tokens == len(ids)
        if g.has_eos:
            assert ids[-1] in generator.engine.eos_token_ids
        assert g.text == generator.tokenizer.decode(ids[:-1] if g.has_eos else ids, skip_special_tokens=True)


def test_stop_strings_are_cut_from_the_text(generator):
    params = SamplingParams(max_new_tokens=24, do_sample=False)
    free = generator.generate(QUESTIONS, params)
    longest = max(free, key=lambda g: len(g.text))
    stop = next(c for c in longest.text[len(longest.text) // 2 :] if not c.isspace())  # one it will reach
    stopped = generator.generate(QUESTIONS, replace(params, stop_strings=(stop,)))
    assert all(stop not in g.text for g in stopped)
    cut = stopped[longest.prompt_index]
    assert cut.num_tokens < longest.num_tokens and not cut.has_eos
    assert longest.text.startswith(cut.text)


def test_generate_responses_loads_a_model_folder(policy_dir, generator):
    loaded = generate_responses(policy_dir, QUESTIONS[:2], GREEDY, max_prompt_length=32)
    assert [g.text for g in loaded] == [g.text for g in generator.generate(QUESTIONS[:2], GREEDY)]


def test_best_of_n_keeps_the_highest_scoring_sample(generator):
    params = SamplingParams(max_new_tokens=10, temperature=1.0, seed=3)
    results = best_of_n(generator, QUESTIONS[:3], length_scorer, n=4, params=params)
    samples = generator.generate(QUESTIONS[:3], SamplingParams(max_new_tokens=10, temperature=1.0, seed=3, n=4))
    for index, result in enumerate(results):
        texts = [g.text for g in samples[index * 4 : (index + 1) * 4]]
        assert result.prompt_index == index and len(result.scores) == 4
        assert result.best.text in texts and len(result.best.text) == max(len(t) for t in texts)
        assert result.score == max(result.scores) == len(result.best.text)


def test_best_of_n_with_a_reward_model(generator, tiny_rm_dir):
    scorer = RewardModelScorer(tiny_rm_dir, dtype="fp32")
    results = best_of_n(generator, QUESTIONS[:2], scorer, n=3, params=SamplingParams(max_new_tokens=6, seed=1))
    for result in results:
        assert result.score == max(result.scores)
        rescored = score_responses(scorer, [QUESTIONS[result.prompt_index]], [result.best.text])[0]
        assert rescored == pytest.approx(result.score, abs=1e-5)


def test_best_of_n_rejects_greedy_and_bad_scorers(generator):
    with pytest.raises(ValueError, match="do_sample"):
        best_of_n(generator, QUESTIONS[:1], length_scorer, n=2, params=GREEDY)
    with pytest.raises(ValueError, match="returned 1 scores for 2"):
        best_of_n(generator, QUESTIONS[:1], lambda p, r: [0.0], n=2, params=SamplingParams(max_new_tokens=2))


def test_sweep_reports_reward_and_diversity_per_setting(generator):
    settings = [GREEDY, SamplingParams(max_new_tokens=8, temperature=0.7, top_p=0.9, no_repeat_ngram_size=2, seed=0)]
    points = sweep_sampling(generator, QUESTIONS, settings, length_scorer, n_bootstrap=50)
    assert [p.label for p in points] == ["greedy", "temperature=0.7, top_p=0.9, no_repeat_ngram_size=2"]
    texts = [g.text for g in generator.generate(QUESTIONS, GREEDY)]
    assert points[0].reward.value == pytest.approx(sum(map(len, texts)) / len(texts))
    for point in points:
        assert 0 <= point.distinct_2 <= 1 and 0 <= point.repeated_ngram_rate <= 1 and point.length.n == 5
        assert point.as_dict()["params"]["max_new_tokens"] == 8
    assert sweep_sampling(generator, QUESTIONS[:1], [GREEDY])[0].reward is None


def test_describe_params():
    assert describe_params(SamplingParams()) == "temperature=1.0"  # sampling always names its temperature
    assert describe_params(SamplingParams(do_sample=False, temperature=0.5, repetition_penalty=1.2)) == (
        "greedy, repetition_penalty=1.2")
    assert describe_params(SamplingParams(top_k=50, max_new_tokens=3, seed=1)) == "temperature=1.0, top_k=50"


def test_generator_validates(generator):
    with pytest.raises(ValueError, match="batch_size"):
        ResponseGenerator(generator.model, generator.tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="no prompts"):
        generator.generate([], GREEDY)


def test_decoding_prints_no_transformers_deprecation_warning(generator):
    """alignflow passes the KV cache under the installed transformers' own name (``cache`` since 5.25):
    users should see only warnings that concern them."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        generated = generator.generate(QUESTIONS[:2], SamplingParams(max_new_tokens=4, do_sample=False))
    assert len(generated) == 2


def test_bf16_sampling_runs_from_a_packed_bf16_copy_and_leaves_the_model_fp32(generator, monkeypatch):
    """As RL rollouts: same tokens as an engine over ``rollout_module(model, "bf16")``; the model the
    log-prob and KL passes read is untouched."""
    monkeypatch.setattr("alignflow.runtime.precision.native_bf16", lambda device_type="cpu": True)
    bf16 = ResponseGenerator(generator.model, generator.tokenizer, dtype="bf16", batch_size=2, max_prompt_length=32)
    assert next(bf16.engine.model.parameters()).dtype == torch.bfloat16 and bf16.engine.model is not bf16.model
    assert isinstance(bf16.engine.model.lm_head, PackedLinear) == packing_supported(torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    params = SamplingParams(max_new_tokens=6, temperature=1.0, seed=4)
    batch = next(bf16.generate_batches(QUESTIONS[:2], params))[1]
    ids = bf16.encode_prompts(QUESTIONS[:2])
    ids = [ids[i] for i in sorted(range(2), key=lambda i: len(ids[i]))]
    expected = HFRolloutEngine.from_tokenizer(rollout_module(generator.model, "bf16"), generator.tokenizer).generate(
        ids, params)
    assert torch.equal(batch["response_ids"], expected["response_ids"])
    assert generator.engine.model is generator.model  # fp32 samples from the model itself
