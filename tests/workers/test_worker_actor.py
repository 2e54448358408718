import copy

import pytest
import torch
from torch import nn

from alignflow.batch import Batch
from alignflow.config.rl import AlgorithmConfig, RLTrainConfig
from alignflow.config.schema import LoraConfig, ModelConfig
from alignflow.models import disable_dropout, load_policy
from alignflow.workers import ActorWorker, ReferenceWorker, response_logprobs
from alignflow.workers.base import step_optimizer

TEMPERATURE = 0.7


def make_actor(model, tokenizer, total_updates=8, **train) -> ActorWorker:
    algorithm = AlgorithmConfig(**train.pop("algorithm", {}))
    cfg = RLTrainConfig(**{"ppo_epochs": 1, "mini_batch_size": 4, "micro_batch_size": 4, "actor_lr": 1e-3, **train})
    return ActorWorker(model, tokenizer, algorithm=algorithm, train=cfg, temperature=TEMPERATURE,
                       total_updates=total_updates)


def training_batch(actor: ActorWorker, rollout: Batch, advantages: torch.Tensor | None = None) -> Batch:
    batch = rollout.union(actor.compute_logprobs(rollout))
    if advantages is None:
        advantages = torch.randn(batch["response_mask"].shape, generator=torch.Generator().manual_seed(0))
    batch["advantages"] = advantages * batch["response_mask"]
    batch.info["step"] = 0
    return batch


def test_recomputed_logprobs_divide_by_the_sampling_temperature(policy, rollout):
    """Detail 11: one forward over prompt + response at the rollout's temperature reproduces the
    sampler's log-probs (plain sampling); forgetting the temperature does not."""
    model, tokenizer = policy
    mask = rollout["response_mask"].bool()
    recomputed = make_actor(model, tokenizer).compute_logprobs(rollout)["old_logprobs"]
    torch.testing.assert_close(recomputed[mask], rollout["sampling_logprobs"][mask], rtol=0, atol=1e-5)
    assert recomputed[~mask].abs().sum() == 0
    at_one, _ = response_logprobs(model, rollout, temperature=1.0)
    assert (at_one[mask] - rollout["sampling_logprobs"][mask]).abs().max() > 1e-2


def test_dropout_is_off_so_logprobs_are_deterministic_in_train_mode(policy, rollout):
    """The tiny Llama is saved with attention_dropout=0.1, which Llama copies into each attention
    module; `disable_dropout` must reach those copies, not only the config."""
    model, _ = policy
    assert model.config.attention_dropout == 0.0
    assert all(getattr(m, "attention_dropout", 0.0) == 0.0 for m in model.modules())
    model.train()
    with torch.no_grad():
        first, _ = response_logprobs(model, rollout, TEMPERATURE)
        second, _ = response_logprobs(model, rollout, TEMPERATURE)
    assert torch.equal(first, second)


def test_full_reference_is_a_frozen_copy(policy, rollout):
    model, _ = policy
    reference = ReferenceWorker.from_policy(model, temperature=TEMPERATURE)
    before = reference.compute_ref_logprobs(rollout)["ref_logprobs"]
    assert reference.model is not model and not any(p.requires_grad for p in reference.model.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    assert torch.equal(reference.compute_ref_logprobs(rollout)["ref_logprobs"], before)


def test_lora_reference_is_the_actor_with_adapters_disabled(tiny_llama_dir, rollout):
    """No second copy: the reference is the same module with the adapters off = the base model."""
    lora = LoraConfig(enabled=True, r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    model, _ = load_policy(ModelConfig(name=str(tiny_llama_dir), dtype="fp32", lora=lora))
    base, _ = load_policy(ModelConfig(name=str(tiny_llama_dir), dtype="fp32"))
    disable_dropout(model)
    disable_dropout(base)
    reference = ReferenceWorker.from_policy(model, temperature=TEMPERATURE)
    assert reference.model is model and reference.disable_adapter
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)  # a trained adapter
    policy_lp, _ = response_logprobs(model, rollout, TEMPERATURE)
    ref_lp = reference.compute_ref_logprobs(rollout)["ref_logprobs"]
    base_lp, _ = response_logprobs(base, rollout, TEMPERATURE)
    torch.testing.assert_close(ref_lp, base_lp, rtol=0, atol=1e-6)
    assert (policy_lp - ref_lp).abs().max() > 1e-3
    assert torch.equal(response_logprobs(model, rollout, TEMPERATURE)[0], policy_lp)  # adapters back on


def test_grad_accumulation_micro_1_equals_micro_4(policy, rollout):
    """Token-mean loss: 4 micro-batches of 1 row accumulate exactly the gradient of one of 4 rows."""
    model, tokenizer = policy
    one = make_actor(copy.deepcopy(model), tokenizer, micro_batch_size=1)
    four = make_actor(copy.deepcopy(model), tokenizer, micro_batch_size=4)
    batch = training_batch(one, rollout)
    one.update(batch)
    four.update(batch)
    for (name, a), (_, b) in zip(one.model.named_parameters(), four.model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert any(not torch.equal(a, b) for a, b in zip(one.model.parameters(), model.parameters()))


def test_ppo_epochs_reshuffle_mini_batches_and_step_the_schedule(policy, rollout):
    model, tokenizer = policy
    actor = make_actor(model, tokenizer, total_updates=6, ppo_epochs=3, mini_batch_size=2, micro_batch_size=1)
    seen = []
    original = actor._optimizer_step
    actor._optimizer_step = lambda mini: (seen.append(tuple(mini["prompt_uid"])), original(mini))[1]
    metrics = actor.update(training_batch(actor, rollout))
    assert len(seen) == 6  # 3 epochs x (4 rows / 2 per mini-batch)
    epochs = [seen[i] + seen[i + 1] for i in range(0, 6, 2)]
    assert all(sorted(e) == [0, 1, 2, 3] for e in epochs)  # each epoch sees every row once
    assert len(set(epochs)) > 1  # in a fresh order
    assert actor.optimizer.param_groups[0]["eps"] == 1e-5  # Adam epsilon default
    assert actor.optimizer.param_groups[0]["lr"] == 0.0  # linear decay over the 6 planned updates
    expected = {"actor/pg_loss", "actor/clip_fraction", "actor/approx_kl", "actor/entropy", "actor/grad_norm"}
    assert expected <= set(metrics)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_schedule_options(policy, rollout, schedule):
    model, tokenizer = policy
    actor = make_actor(model, tokenizer, total_updates=4, schedule=schedule, mini_batch_size=2, micro_batch_size=2)
    actor.update(training_batch(actor, rollout))  # 2 of 4 planned updates
    expected = {"constant": 1e-3, "cosine": 0.5e-3}[schedule]
    assert actor.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_entropy_bonus_alone_raises_entropy(policy, rollout):
    """With zero advantages the policy-gradient term has no gradient: entropy_coef = 0 leaves the
    weights untouched, entropy_coef > 0 moves them towards higher entropy."""
    model, tokenizer = policy
    zero = torch.zeros(rollout["response_mask"].shape)
    still = make_actor(copy.deepcopy(model), tokenizer)
    still.update(training_batch(still, rollout, zero))
    assert all(torch.equal(a, b) for a, b in zip(still.model.parameters(), model.parameters()))

    bonus = make_actor(copy.deepcopy(model), tokenizer, algorithm={"entropy_coef": 1.0}, actor_lr=1e-2)
    batch = training_batch(bonus, rollout, zero)
    mask = batch["response_mask"].bool()
    before = batch["entropy"][mask].mean()
    bonus.update(batch)
    after = bonus.compute_logprobs(rollout)["entropy"][mask].mean()
    assert after > before + 1e-4


def test_gradient_clipping_bounds_the_step_and_skips_non_finite():
    layer = nn.Linear(4, 1)
    sgd = torch.optim.SGD(layer.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(sgd, lambda _: 1.0)
    before = [p.detach().clone() for p in layer.parameters()]
    (layer(torch.full((1, 4), 100.0)).sum() * 10).backward()
    stats = step_optimizer(layer, sgd, schedule, max_grad_norm=0.5)
    moved = float(torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(layer.parameters(), before))))
    assert stats["grad_norm"] > 100 and moved == pytest.approx(0.5, rel=1e-5)

    before = [p.detach().clone() for p in layer.parameters()]
    (layer(torch.full((1, 4), float("nan"))).sum()).backward()
    stats = step_optimizer(layer, sgd, schedule, max_grad_norm=0.5)
    assert stats["skipped_update_frac"] == 1.0
    assert all(torch.equal(p, b) for p, b in zip(layer.parameters(), before))
