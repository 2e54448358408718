"""Huang et al. 2024, detail 17: the critic starts as the reward model."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from alignflow.batch import Batch
from alignflow.config.schema import ModelConfig
from alignflow.models import load_tokenizer
from alignflow.models.forward import token_values
from alignflow.workers import CriticWorker
from alignflow.workers.critic import load_critic_model, resolve_critic_init


def small_batch() -> Batch:
    return Batch(tensors={"prompt_ids": torch.tensor([[0, 5, 6, 7], [9, 10, 11, 12]]),
                          "prompt_mask": torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]),
                          "response_ids": torch.tensor([[8, 9, 0], [13, 14, 15]]),
                          "response_mask": torch.tensor([[1, 1, 0], [1, 1, 1]])})


def test_critic_from_the_reward_model_values_equal_its_scores(tiny_llama_dir, tiny_rm_dir):
    """The value at each response position is the RM's score (offset included) of the text that
    ends at the token before it: exactly what the RM says about that state."""
    critic, _, offset = load_critic_model("reward_model", ModelConfig(name=str(tiny_llama_dir), dtype="fp32"),
                                          str(tiny_rm_dir))
    assert offset == 0.25
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_rm_dir).eval()
    prompts = [[1, 50, 51, 52, 2], [60, 61]]
    responses = [[70, 71, 72, 2], [80, 81, 0, 0]]
    pad = rm.config.pad_token_id
    width = max(map(len, prompts))
    batch_tensors = {
        "prompt_ids": torch.tensor([[pad] * (width - len(p)) + p for p in prompts]),  # left-padded
        "prompt_mask": torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts]),
        "response_ids": torch.tensor(responses),
        "response_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
    }
    with torch.no_grad():
        values = token_values(critic, Batch(tensors=batch_tensors), offset)
        for row, (prompt, response) in enumerate(zip(prompts, responses)):
            length = int(batch_tensors["response_mask"][row].sum())
            for t in range(length):
                state = torch.tensor([prompt + response[:t]])
                score = rm(input_ids=state).logits[0, 0] + offset
                torch.testing.assert_close(values[row, t], score, rtol=0, atol=1e-5)
            assert (values[row, length:] == 0).all()


def test_auto_uses_a_compatible_reward_model_and_falls_back_for_encoders(tiny_llama_dir, tiny_rm_dir, tiny_bert_dir):
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    assert resolve_critic_init("auto", str(tiny_rm_dir), tokenizer)[0] == "reward_model"
    assert resolve_critic_init("reward_model", str(tiny_rm_dir), tokenizer)[0] == "reward_model"
    init, reason = resolve_critic_init("auto", str(tiny_bert_dir), tokenizer)
    assert init == "policy" and "encoder" in reason
    with pytest.raises(ValueError, match="critic_init=reward_model: .*encoder"):
        resolve_critic_init("reward_model", str(tiny_bert_dir), tokenizer)
    assert resolve_critic_init("policy", str(tiny_rm_dir), tokenizer)[0] == "policy"


def test_critic_from_the_policy_starts_at_value_zero(tiny_llama_dir):
    """A fresh head set to zero: every value starts at 0, the mean score of a centred reward model."""
    critic, _, offset = load_critic_model("policy", ModelConfig(name=str(tiny_llama_dir), dtype="fp32"))
    batch = Batch(tensors={"prompt_ids": torch.tensor([[5, 6, 7]]), "prompt_mask": torch.ones(1, 3, dtype=torch.long),
                           "response_ids": torch.tensor([[8, 9]]), "response_mask": torch.ones(1, 2, dtype=torch.long)})
    with torch.no_grad():
        assert offset == 0.0 and torch.equal(token_values(critic, batch), torch.zeros(1, 2))


def test_the_critic_worker_built_from_the_config_starts_from_the_reward_model(ppo_config, tiny_llama_dir, tiny_rm_dir):
    """`critic_init=auto` with a compatible decoder reward model: the worker's values are the reward
    model's, offset included, and `describe` says so."""
    worker = CriticWorker(ppo_config("reward_function=", f"reward_model={tiny_rm_dir}", "algorithm.critic_init=auto"))
    worker.init_model()
    assert "reward model" in worker.describe() and worker.offset == 0.25
    critic, _, offset = load_critic_model("reward_model", ModelConfig(name=str(tiny_llama_dir), dtype="fp32"),
                                          str(tiny_rm_dir))
    batch = small_batch()
    with torch.no_grad():
        expected = token_values(critic, batch, offset)
    torch.testing.assert_close(worker.compute_values(batch)["values"], expected, rtol=0, atol=1e-5)
    assert (expected[batch["response_mask"].bool()] != 0).all()


def test_the_critic_worker_from_the_policy_starts_at_zero_and_trains(ppo_config):
    worker = CriticWorker(ppo_config("algorithm.critic_init=policy", "train.ppo_epochs=1"))
    worker.init_model()
    assert worker.describe() == "algorithm.critic_init=policy"
    batch = small_batch()
    values = worker.compute_values(batch)["values"]
    assert torch.equal(values, torch.zeros(2, 3))
    batch.update(values=values, returns=torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
    metrics = worker.update(batch, step=0)
    assert {"critic/value_loss", "critic/grad_norm", "critic/lr"} <= set(metrics)
    after = worker.compute_values(batch)["values"]
    mask = batch["response_mask"].bool()
    assert (after[mask] > 0).all() and (after[~mask] == 0).all()  # moved towards the returns
