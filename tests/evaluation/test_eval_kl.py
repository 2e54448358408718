import pytest
import torch
from eval_data import QUESTIONS

from alignflow.config.schema import ModelConfig
from alignflow.evaluation.kl import sequence_kl
from alignflow.evaluation.probes import choice_logprobs
from alignflow.models import load_policy
from alignflow.rollout import SamplingParams

PARAMS = SamplingParams(max_new_tokens=6, temperature=0.8, seed=5)


def full_forward_sum_logprobs(model, batch, temperature):
    """Per-row sum of response-token log-probs from one plain forward pass (the definition)."""
    ids = torch.cat([batch["prompt_ids"], batch["response_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["response_mask"]], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    p, r = batch["prompt_ids"].shape[1], batch["response_ids"].shape[1]
    logp = (logits[:, p - 1 : p - 1 + r] / temperature).log_softmax(-1)
    logp = logp.gather(-1, batch["response_ids"][..., None]).squeeze(-1)
    return (logp * batch["response_mask"]).sum(-1)


def test_kl_to_itself_is_zero(generator):
    result = sequence_kl(generator, generator.model, QUESTIONS, PARAMS, n_bootstrap=50)
    assert result.kl.value == pytest.approx(0.0, abs=1e-5) and result.kl_k3 == pytest.approx(0.0, abs=1e-5)
    assert len(result.per_sample) == len(QUESTIONS) and result.mean_tokens == 6


def test_kl_matches_the_definition(generator, other_policy_dir):
    reference, _ = load_policy(ModelConfig(name=str(other_policy_dir), dtype="fp32"))
    result = sequence_kl(generator, reference, QUESTIONS[:2], PARAMS, n_bootstrap=50)
    # Same prompts, same seed, one batch of two: the same samples as sequence_kl drew.
    chunk, batch = next(generator.generate_batches(QUESTIONS[:2], PARAMS))
    expected = (full_forward_sum_logprobs(generator.model, batch, 0.8)
                - full_forward_sum_logprobs(reference, batch, 0.8)).tolist()
    by_prompt = dict(zip(chunk, expected))
    assert list(result.per_sample) == pytest.approx([by_prompt[0], by_prompt[1]], abs=1e-4)
    assert result.kl_k3 > 0


def test_kl_is_positive_on_average_and_loads_the_reference_by_name(generator, other_policy_dir):
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=4, seed=0)
    result = sequence_kl(generator, other_policy_dir, QUESTIONS, params, n_bootstrap=200)
    assert len(result.per_sample) == 4 * len(QUESTIONS)
    assert result.kl.value > 0 and result.kl.low > 0  # very different random models
    assert result.kl_k3 > 0


def test_kl_rejects_a_reference_with_another_vocabulary(generator, tiny_gpt2_dir):
    with pytest.raises(ValueError, match="different vocabularies"):
        sequence_kl(generator, tiny_gpt2_dir, QUESTIONS[:1], PARAMS)


def test_a_model_in_training_mode_is_left_in_training_mode(generator):
    generator.model.train()  # e.g. the actor, evaluated between updates
    try:
        sequence_kl(generator, generator.model, QUESTIONS[:1], PARAMS, n_bootstrap=10)
        choice_logprobs(generator, [([{"role": "user", "content": "Hi"}], "Hello")])
        assert generator.model.training
    finally:
        generator.model.eval()
