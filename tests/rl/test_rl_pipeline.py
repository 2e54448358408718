"""The reward side of the dataflow: EOS truncation, missing-EOS penalty, KL-shaped token rewards."""

import pytest
import torch
from torch import nn

from alignflow.algorithms import gae_advantages, whiten_rewards
from alignflow.batch import Batch
from alignflow.config.rl import AlgorithmConfig, RLConfig
from alignflow.config.schema import ModelConfig
from alignflow.rollout import SamplingParams
from alignflow.rollout.sampling import seed_for
from alignflow.trainers.rl_controller import compute_advantages, prompt_order, shape_rewards, token_kl
from alignflow.workers import PolicyWorker, RewardWorker, build_local_workers

EOS, PAD = 2, 0


class ScriptedEngine:
    """A rollout engine that returns fixed responses, including tokens sampled after EOS."""

    eos_token_ids, pad_token_id = [EOS], PAD

    def __init__(self, responses, masks):
        self.responses, self.masks = torch.tensor(responses), torch.tensor(masks)
        self.prompt_seeds = None

    def generate(self, prompt_ids, params, prompt_seeds=None):
        self.prompt_seeds = prompt_seeds
        rows = len(prompt_ids) * params.n
        return Batch(tensors={
            "prompt_ids": torch.full((rows, 2), 9), "prompt_mask": torch.ones(rows, 2, dtype=torch.long),
            "response_ids": self.responses, "response_mask": self.masks,
            "sampling_logprobs": torch.full(self.responses.shape, -1.0), "has_eos": torch.zeros(rows, dtype=torch.bool),
        }, meta={"prompt_index": list(range(rows))}, info={"generated_tokens": int(self.masks.sum())})

    def update_weights(self, weights):
        pass


class Tokens:
    """Decodes ids to letters and drops EOS/PAD like skip_special_tokens does."""

    def batch_decode(self, rows, skip_special_tokens=True):
        return ["".join(chr(ord("a") + i) for i in row if i not in (EOS, PAD)) for row in rows]


SCRIPTED_CONFIG = RLConfig(model=ModelConfig(name="scripted", dtype="fp32"))


def scripted_generate(seed: int = 0) -> tuple[Batch, dict[str, float], ScriptedEngine]:
    """A policy worker whose rollout engine is scripted (no model loaded): its `generate` output."""
    engine = ScriptedEngine(
        responses=[[5, EOS, 7, 8], [5, 6, 7, 8], [EOS, 9, 9, 9]],
        masks=[[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]],  # row 0: the engine kept sampling after EOS
    )
    worker = PolicyWorker(SCRIPTED_CONFIG)
    worker.rollout, worker.sampling, worker.device = engine, SamplingParams(max_new_tokens=4), torch.device("cpu")
    prompts = Batch(meta={"prompt": [[{"role": "user", "content": "q"}]] * 3, "prompt_token_ids": [[9, 9]] * 3,
                          "prompt_uid": [0, 1, 2]})
    batch, metrics = worker.generate(prompts, seed=seed)
    return batch, metrics, engine


def scripted_rollout() -> Batch:
    return scripted_generate()[0]


def test_generate_seeds_each_prompt_by_its_uid_and_counts_kept_tokens():
    batch, metrics, engine = scripted_generate(seed=4)
    assert engine.prompt_seeds == [seed_for(4, uid) for uid in (0, 1, 2)]
    assert metrics["generated_tokens"] == 2 + 4 + 1  # after the cut at the first EOS
    assert not batch.info


def test_responses_are_cut_after_the_first_eos_and_unfinished_ones_penalised():
    batch = scripted_rollout()
    assert batch["response_ids"].tolist() == [[5, EOS, PAD, PAD], [5, 6, 7, 8], [EOS, PAD, PAD, PAD]]
    assert batch["response_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert batch["has_eos"].tolist() == [True, False, True]
    assert batch["sampling_logprobs"][0].tolist() == [-1.0, -1.0, 0.0, 0.0]

    seen = {}

    def reward(prompts, responses, metadata):
        seen.update(responses=responses, metadata=metadata)
        return [2.0, 3.0, 4.0]

    scorer = RewardWorker(SCRIPTED_CONFIG, reward_fn=reward)
    scorer.tokenizer = Tokens()  # what init_model loads: the policy's tokenizer
    batch = batch.union(scorer.compute_scores(batch))
    assert seen["responses"] == ["f", "fghi", ""]  # the reward sees the truncated text only
    assert seen["metadata"]["has_eos"] == [True, False, True] and seen["metadata"]["prompt_uid"] == [0, 1, 2]
    assert seen["metadata"]["response_length"] == [2, 4, 1]  # policy tokens up to and including EOS

    logprobs = torch.tensor([[-1.0, -2.0, -3.0, -4.0]] * 3)
    ref_logprobs = logprobs - 0.5  # k1 KL = 0.5 on every token
    batch.update(old_logprobs=logprobs * batch["response_mask"], ref_logprobs=ref_logprobs * batch["response_mask"])
    shaped = shape_rewards(batch, AlgorithmConfig(missing_eos_penalty=-1.0, kl_coef=0.1), kl_coef=0.1)
    assert shaped["scores"].tolist() == [2.0, -1.0, 4.0]  # no EOS -> the penalty replaces the score
    expected = torch.tensor([
        [-0.05, -0.05 + 2.0, 0.0, 0.0],  # -beta*KL per real token, score at the last real token (EOS)
        [-0.05, -0.05, -0.05, -0.05 - 1.0],
        [-0.05 + 4.0, 0.0, 0.0, 0.0],
    ])
    torch.testing.assert_close(shaped["token_rewards"], expected)
    torch.testing.assert_close(token_kl(shaped, AlgorithmConfig())["kl"], 0.5 * batch["response_mask"].float())


def test_kl_as_loss_leaves_only_the_score_in_the_reward_and_penalty_can_be_off():
    batch = scripted_rollout()
    batch["raw_scores"] = torch.tensor([2.0, 3.0, 4.0])
    batch.update(old_logprobs=torch.zeros(3, 4), ref_logprobs=torch.full((3, 4), -0.5) * batch["response_mask"])
    algo = AlgorithmConfig(kl_in_reward=False, kl_loss_coef=0.1, missing_eos_penalty=None)
    shaped = shape_rewards(batch, algo, kl_coef=0.1)
    assert shaped["token_rewards"].tolist() == [[0, 2.0, 0, 0], [0, 0, 0, 3.0], [4.0, 0, 0, 0]]
    assert token_kl(shaped, algo)["kl"].sum() > 0  # still measured for the metrics


def test_advantage_options_reach_the_estimator():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    rewards = torch.tensor([[0.1, -0.2, 1.0, 0.0], [0.0, 0.3, 0.0, -1.0]])
    values = torch.tensor([[0.5, 0.1, -0.3, 0.0], [0.2, 0.2, 0.1, 0.4]])
    batch = Batch(tensors={"token_rewards": rewards, "values": values, "response_mask": mask},
                  meta={"prompt_uid": [0, 1]})
    algo = AlgorithmConfig(gamma=0.9, lam=0.5, whiten_advantages=False)
    out = compute_advantages(batch, algo)
    adv, ret = gae_advantages(token_rewards=rewards, values=values, response_mask=mask, gamma=0.9, lam=0.5,
                              whiten_advantages=False)
    torch.testing.assert_close(out["advantages"], adv)
    torch.testing.assert_close(out["returns"], ret)
    whitened = compute_advantages(batch, AlgorithmConfig(gamma=0.9, lam=0.5))["advantages"]
    valid = mask.bool()
    assert abs(float(whitened[valid].mean())) < 1e-6 and abs(float(whitened[valid].std()) - 1) < 1e-4

    batch = Batch(tensors={"raw_scores": torch.tensor([1.0, 2.0]), "has_eos": torch.tensor([True, True]),
                           "old_logprobs": torch.zeros(2, 4), "ref_logprobs": torch.full((2, 4), -0.3),
                           "response_mask": mask})
    plain = shape_rewards(batch, AlgorithmConfig(), kl_coef=0.05)["token_rewards"]
    white = shape_rewards(batch, AlgorithmConfig(whiten_rewards=True), kl_coef=0.05)["token_rewards"]
    torch.testing.assert_close(white, whiten_rewards(plain, mask))


def test_prompt_order_is_a_pure_function_of_the_position():
    first_pass = prompt_order(0, 10, 10, seed=3)
    assert sorted(first_pass) == list(range(10))  # every prompt once per pass
    assert prompt_order(4, 8, 10, seed=3) == (first_pass + prompt_order(10, 10, 10, seed=3))[4:12]
    assert prompt_order(10, 10, 10, seed=3) != first_pass  # a fresh permutation per pass
    assert prompt_order(0, 10, 10, seed=4) != first_pass


@pytest.mark.parametrize("rollout_weights", ["shared", "fp32"])
def test_dropout_is_off_in_every_model_the_workers_hold(ppo_config, rollout_weights):
    workers = build_local_workers(ppo_config(f"rollout.weights={rollout_weights}"))
    policy = workers.policy.worker
    models = {"actor": policy.actor.model, "reference": policy.reference, "rollout": policy.rollout_model,
              "critic": workers.critic.worker.engine.model}
    # A shared rollout samples from the actor's own module; otherwise from a copy of it.
    assert (models["rollout"] is models["actor"]) == (rollout_weights == "shared")
    assert models["reference"].model is not models["actor"]  # a frozen copy (no LoRA)
    for role, model in models.items():
        for module in model.modules():
            assert getattr(module, "attention_dropout", 0.0) == 0.0, role
            assert not isinstance(module, nn.Dropout) or module.p == 0.0, role
