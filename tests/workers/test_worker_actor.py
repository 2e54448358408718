"""The policy worker's actor, reference and rollout: log-prob passes, the PPO update, and sampling."""

from pathlib import Path

import pytest
import torch
from torch import nn
from worker_data import QUESTIONS, TEMPERATURE, encode_prompts

from alignflow.batch import Batch
from alignflow.config.schema import ModelConfig
from alignflow.models import load_policy
from alignflow.models.forward import HeadAtPositions, response_logprobs

LORA = ("model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "model.lora.target_modules=[q_proj,v_proj]")


def training_batch(worker, rollout: Batch, advantages: torch.Tensor | None = None) -> Batch:
    batch = rollout.union(worker.compute_logprobs(rollout))
    if advantages is None:
        advantages = torch.randn(batch["response_mask"].shape, generator=torch.Generator().manual_seed(0))
    batch["advantages"] = advantages * batch["response_mask"]
    return batch


def cut_responses(rollout: Batch, lengths: list[int], pad: int) -> Batch:
    """``rollout`` with its responses cut to ``lengths`` tokens: rows of different lengths, where
    weighing micro-batches by tokens and by rows differ."""
    keep = (torch.arange(rollout["response_ids"].shape[1]) < torch.tensor(lengths)[:, None]).long()
    mask = rollout["response_mask"] * keep
    cut = rollout.select(*rollout.keys())
    cut.update(response_mask=mask, response_ids=torch.where(mask.bool(), rollout["response_ids"], pad))
    return cut


def parameters(worker) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in worker.actor.model.named_parameters()}


def test_recomputed_logprobs_divide_by_the_sampling_temperature(policy_worker, rollout):
    """Detail 11: one forward over prompt + response at the rollout's temperature reproduces the
    sampler's log-probs (plain sampling); forgetting the temperature does not."""
    mask = rollout["response_mask"].bool()
    recomputed = policy_worker.compute_logprobs(rollout)["old_logprobs"]
    torch.testing.assert_close(recomputed[mask], rollout["sampling_logprobs"][mask], rtol=0, atol=1e-5)
    assert recomputed[~mask].abs().sum() == 0
    with torch.no_grad():
        at_one, _ = response_logprobs(policy_worker.actor.model, rollout, temperature=1.0)
    assert (at_one[mask] - rollout["sampling_logprobs"][mask]).abs().max() > 1e-2


def test_dropout_is_off_so_logprobs_are_deterministic_in_train_mode(policy_worker, rollout):
    """The tiny Llama is saved with attention_dropout=0.1, which Llama copies into each attention
    module; the worker's model loading must reach those copies, not only the config."""
    model = policy_worker.actor.model
    assert model.config.attention_dropout == 0.0
    assert all(getattr(m, "attention_dropout", 0.0) == 0.0 for m in model.modules())
    model.train()
    with torch.no_grad():
        first, _ = response_logprobs(model, rollout, TEMPERATURE)
        second, _ = response_logprobs(model, rollout, TEMPERATURE)
    assert torch.equal(first, second)


def test_full_reference_is_a_frozen_copy(policy_worker, rollout):
    reference = policy_worker.reference
    assert isinstance(reference, HeadAtPositions) and reference.model is not policy_worker.actor.model
    assert not any(p.requires_grad for p in reference.parameters())
    before = policy_worker.compute_ref_logprobs(rollout)["ref_logprobs"]
    torch.testing.assert_close(before, policy_worker.compute_logprobs(rollout)["old_logprobs"], rtol=0, atol=1e-6)
    with torch.no_grad():
        for p in policy_worker.actor.model.parameters():
            p.add_(0.05)
    assert torch.equal(policy_worker.compute_ref_logprobs(rollout)["ref_logprobs"], before)


def test_lora_reference_is_the_actor_with_adapters_disabled(make_policy_worker, tiny_llama_dir, rollout):
    """No second copy: the reference is the same module with the adapters off = the base model."""
    worker = make_policy_worker(*LORA)
    assert worker.lora and worker.reference is None
    base, _ = load_policy(ModelConfig(name=str(tiny_llama_dir), dtype="fp32"))
    with torch.no_grad():
        for name, p in worker.actor.model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)  # a trained adapter
        policy_lp, _ = response_logprobs(worker.actor.model, rollout, TEMPERATURE)
        base_lp, _ = response_logprobs(base, rollout, TEMPERATURE)
    ref_lp = worker.compute_ref_logprobs(rollout)["ref_logprobs"]
    torch.testing.assert_close(ref_lp, base_lp, rtol=0, atol=1e-6)
    assert (policy_lp - ref_lp).abs().max() > 1e-3
    assert torch.equal(worker.compute_logprobs(rollout)["old_logprobs"], policy_lp)  # adapters back on


def test_grad_accumulation_micro_1_equals_micro_4(make_policy_worker, rollout):
    """Token-mean loss: 4 micro-batches of 1 row accumulate exactly the gradient of one of 4 rows."""
    one = make_policy_worker("train.micro_batch_size=1")
    four = make_policy_worker("train.micro_batch_size=4")
    initial = parameters(one)
    batch = training_batch(one, cut_responses(rollout, [8, 3, 5, 1], one.rollout.pad_token_id))
    one.update(batch, step=0)
    four.update(batch, step=0)
    for (name, a), (_, b) in zip(one.actor.model.named_parameters(), four.actor.model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert any(not torch.equal(p, initial[n]) for n, p in one.actor.model.named_parameters())


@pytest.mark.parametrize("loss_agg_mode", ["token-mean", "seq-mean-token-mean"])
def test_train_mini_batch_micro_1_equals_micro_4(policy_worker, rollout, loss_agg_mode):
    """The engine's accumulation alone: micro-batch weights (tokens for token-mean, rows for the
    sequence means) make 4 backward passes of one row give the gradient of one pass over 4 rows."""
    engine = policy_worker.actor
    batch = training_batch(policy_worker, cut_responses(rollout, [8, 3, 5, 1], policy_worker.rollout.pad_token_id))

    def loss_fn(micro):
        logprobs, _ = response_logprobs(engine.module, micro, TEMPERATURE)
        mask = micro["response_mask"].float()
        if loss_agg_mode == "token-mean":
            loss = -(logprobs * micro["advantages"] * mask).sum() / mask.sum()
        else:
            loss = -((logprobs * micro["advantages"] * mask).sum(-1) / mask.sum(-1)).mean()
        return loss, {"loss": loss.detach()}

    def gradients(micro_batch_size):
        engine.optimizer.zero_grad(set_to_none=True)
        engine.step = lambda: {}  # keep the accumulated gradients, take no step
        engine.train_mini_batch(batch, micro_batch_size=micro_batch_size, loss_agg_mode=loss_agg_mode,
                                loss_fn=loss_fn)
        return {n: p.grad.clone() for n, p in engine.model.named_parameters() if p.grad is not None}

    one, four = gradients(1), gradients(4)
    assert one.keys() == four.keys() and len(one) > 5
    for name in one:
        torch.testing.assert_close(one[name], four[name], rtol=1e-5, atol=1e-7, msg=name)


def test_ppo_epochs_reshuffle_mini_batches_and_step_the_schedule(make_policy_worker, rollout):
    # 1 step x 3 epochs x (4 rows / 2 per mini-batch): the schedule plans 6 updates.
    worker = make_policy_worker("train.steps=1", "train.ppo_epochs=3", "train.mini_batch_size=2",
                                "train.micro_batch_size=1")
    seen = []
    original = worker._train_mini_batch
    worker._train_mini_batch = lambda mini: (seen.append(tuple(mini["prompt_uid"])), original(mini))[1]
    metrics = worker.update(training_batch(worker, rollout), step=0)
    assert len(seen) == 6  # 3 epochs x 2 mini-batches
    epochs = [seen[i] + seen[i + 1] for i in range(0, 6, 2)]
    assert all(sorted(e) == [0, 1, 2, 3] for e in epochs)  # each epoch sees every row once
    assert len(set(epochs)) > 1  # in a fresh order
    optimizer = worker.actor.optimizer
    assert optimizer.param_groups[0]["eps"] == 1e-5  # Adam epsilon default
    assert optimizer.param_groups[0]["lr"] == 0.0  # linear decay over the 6 planned updates
    expected = {"actor/pg_loss", "actor/clip_fraction", "actor/approx_kl", "actor/entropy", "actor/grad_norm",
                "actor/lr", "actor/skipped_update_frac"}
    assert expected <= set(metrics)


def test_the_update_order_is_a_function_of_the_step(make_policy_worker, rollout):
    """The shuffle is seeded by (seed, step): the same step replays the same mini-batches (a resumed
    run), another step cuts different ones."""
    worker = make_policy_worker("train.mini_batch_size=2", "train.micro_batch_size=2")
    batch = training_batch(worker, rollout)
    seen = []
    worker._train_mini_batch = lambda mini: seen.append(tuple(mini["prompt_uid"])) or {}
    for step in (0, 0, 1):
        worker.update(batch, step=step)
    assert seen[0:2] == seen[2:4] and seen[0:2] != seen[4:6]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_schedule_options(make_policy_worker, rollout, schedule):
    # 2 steps x (4 rows / 2 per mini-batch): 4 planned updates, of which one update call takes 2.
    worker = make_policy_worker("train.steps=2", f"train.schedule={schedule}", "train.mini_batch_size=2",
                                "train.micro_batch_size=2")
    worker.update(training_batch(worker, rollout), step=0)
    expected = {"constant": 1e-3, "cosine": 0.5e-3}[schedule]
    assert worker.actor.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_entropy_bonus_alone_raises_entropy(make_policy_worker, rollout):
    """With zero advantages the policy-gradient term has no gradient: entropy_coef = 0 leaves the
    weights untouched, entropy_coef > 0 moves them towards higher entropy."""
    zero = torch.zeros(rollout["response_mask"].shape)
    still = make_policy_worker()
    initial = parameters(still)
    still.update(training_batch(still, rollout, zero), step=0)
    assert all(torch.equal(p, initial[n]) for n, p in still.actor.model.named_parameters())

    bonus = make_policy_worker("algorithm.entropy_coef=1.0", "train.actor_lr=1e-2")
    batch = training_batch(bonus, rollout, zero)
    mask = batch["response_mask"].bool()
    before = batch["entropy"][mask].mean()
    bonus.update(batch, step=0)
    after = bonus.compute_logprobs(rollout)["entropy"][mask].mean()
    assert after > before + 1e-4


def test_update_on_policy_returns_the_behaviour_pass_and_steps_once(make_policy_worker, rollout):
    """One step over the whole batch whose own detached forward stands in for `compute_logprobs`:
    the returned log-probs and entropy are the ones the separate pass gives before the step."""
    worker = make_policy_worker("train.micro_batch_size=2")
    expected = worker.compute_logprobs(rollout)
    advantages = torch.randn(rollout["response_mask"].shape, generator=torch.Generator().manual_seed(0))
    batch = rollout.union(Batch(tensors={"advantages": advantages * rollout["response_mask"]}))
    initial = parameters(worker)
    behaviour, metrics = worker.update_on_policy(batch)
    for key in ("old_logprobs", "entropy"):
        torch.testing.assert_close(behaviour[key], expected[key], rtol=0, atol=1e-5, msg=key)
    assert worker.actor.scheduler.last_epoch == 1
    assert metrics["actor/clip_fraction"] == 0.0  # ratio 1
    assert any(not torch.equal(p, initial[n]) for n, p in worker.actor.model.named_parameters())


# ----- sampling -----------------------------------------------------------------------------------


def test_generate_cuts_after_eos_and_counts_the_generated_tokens(policy_worker, prompts):
    batch, metrics = policy_worker.generate(prompts, seed=1)
    assert len(batch) == len(prompts) and batch["prompt_uid"] == prompts["prompt_uid"]
    assert metrics["generated_tokens"] == float(batch["response_mask"].sum())
    assert metrics["generation_time_s"] > 0
    assert not batch.info  # no per-batch info leaks into the rows
    eos = set(policy_worker.eos_token_ids)
    for ids, mask, has_eos in zip(batch["response_ids"], batch["response_mask"], batch["has_eos"]):
        real = ids[mask.bool()].tolist()
        assert not any(t in eos for t in real[:-1])  # nothing sampled after the first EOS is kept
        assert bool(has_eos) == (bool(real) and real[-1] in eos)


def test_a_prompts_samples_do_not_depend_on_the_other_prompts_in_its_batch(make_policy_worker):
    """Sample j of the prompt with uid u draws from a generator seeded by (seed, u, j) alone: alone
    or among other (longer and shorter) prompts, it gets the same responses."""
    worker = make_policy_worker("rollout.n=2")
    together = encode_prompts(worker.tokenizer, QUESTIONS, uids=[10, 11, 12, 13])
    alone = encode_prompts(worker.tokenizer, QUESTIONS[1:2], uids=[11])
    batch, _ = worker.generate(together, seed=3)
    single, _ = worker.generate(alone, seed=3)
    rows = [i for i, uid in enumerate(batch["prompt_uid"]) if uid == 11]
    assert len(rows) == 2 and single["prompt_uid"] == [11, 11]
    length = single["response_ids"].shape[1]
    picked = batch.index(rows)
    assert torch.equal(picked["response_mask"][:, :length], single["response_mask"])
    assert picked["response_mask"][:, length:].sum() == 0
    assert torch.equal(picked["response_ids"][:, :length], single["response_ids"])
    torch.testing.assert_close(picked["sampling_logprobs"][:, :length], single["sampling_logprobs"],
                               rtol=0, atol=1e-5)
    assert not torch.equal(single["response_ids"][0], single["response_ids"][1])  # two different samples
    other_uid, _ = worker.generate(encode_prompts(worker.tokenizer, QUESTIONS[1:2], uids=[99]), seed=3)
    other_seed, _ = worker.generate(alone, seed=4)
    assert not torch.equal(other_uid["response_ids"], single["response_ids"])
    assert not torch.equal(other_seed["response_ids"], single["response_ids"])


# ----- the training engine ------------------------------------------------------------------------


def linear_engine(max_grad_norm: float = 0.5):
    from alignflow.config.schema import TrainConfig
    from alignflow.workers.engine import TrainingEngine

    torch.manual_seed(0)
    optim = TrainConfig(lr=1e-2, scheduler="linear", warmup_ratio=0.0, max_grad_norm=max_grad_norm)
    return TrainingEngine(nn.Linear(4, 1), head="lm", optim_cfg=optim, total_updates=10, dtype="fp32",
                          device=torch.device("cpu"))


def test_engine_step_clips_the_gradient_norm():
    engine = linear_engine(max_grad_norm=0.5)
    layer = engine.model
    engine.optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)  # a step of exactly the clipped gradient
    engine.scheduler = torch.optim.lr_scheduler.LambdaLR(engine.optimizer, lambda _: 1.0)
    before = [p.detach().clone() for p in layer.parameters()]
    (layer(torch.full((1, 4), 100.0)).sum() * 10).backward()
    stats = engine.step()
    moved = float(torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(layer.parameters(), before))))
    assert stats["grad_norm"] > 100 and moved == pytest.approx(0.5, rel=1e-5)
    assert stats["skipped_update_frac"] == 0.0
    assert all(p.grad is None for p in layer.parameters())  # gradients cleared for the next step


def test_engine_step_skips_a_non_finite_gradient_but_advances_the_schedule():
    engine = linear_engine()
    layer = engine.model
    layer(torch.ones(1, 4)).sum().backward()
    engine.step()  # a finite step first: the optimizer has state to keep
    state_before = {k: v.clone() for k, v in engine.optimizer.state[layer.weight].items()}
    before = [p.detach().clone() for p in layer.parameters()]
    lr_before = engine.scheduler.get_last_lr()[0]
    layer(torch.full((1, 4), float("nan"))).sum().backward()
    stats = engine.step()
    assert stats["skipped_update_frac"] == 1.0 and stats["grad_norm"] != stats["grad_norm"]
    assert stats["lr"] == lr_before
    assert all(torch.equal(p, b) for p, b in zip(layer.parameters(), before))
    assert all(torch.equal(engine.optimizer.state[layer.weight][k], v) for k, v in state_before.items())
    assert engine.scheduler.get_last_lr()[0] < lr_before  # still aligned with the planned updates
    assert all(p.grad is None for p in layer.parameters())


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_engine_save_and_load_restore_weights_optimizer_and_schedule_exactly(make_policy_worker, rollout, tmp_path,
                                                                            lora):
    """A checkpoint taken after one update, loaded into a fresh worker: the next update gives the
    same weights, optimizer state and learning rate as continuing without the round trip (under
    LoRA too, whose saved folder is merged for users)."""
    overrides = ("train.mini_batch_size=2", "train.micro_batch_size=2", *(LORA if lora else ()))
    saved = make_policy_worker(*overrides)
    batch = training_batch(saved, rollout)
    saved.update(batch, step=0)
    saved.actor.save(tmp_path / "policy", saved.tokenizer, {"kind": "policy"})
    assert (tmp_path / "policy" / "schedule.json").is_file() and (tmp_path / "policy" / "optimizer").is_dir()

    loaded = make_policy_worker(*overrides)
    assert any(not torch.equal(a, b) for a, b in zip(loaded.actor.model.parameters(),
                                                     saved.actor.model.parameters()))
    loaded.actor.load(tmp_path / "policy")

    def state(worker):
        engine = worker.actor
        optimizer = {(n, k): v.clone() for n, p in engine.module.named_parameters()
                     for k, v in engine.optimizer.state.get(p, {}).items()}
        return parameters(worker), optimizer, engine.scheduler.state_dict(), engine.optimizer.param_groups[0]["lr"]

    def assert_same(a, b):
        weights_a, optim_a, schedule_a, lr_a = a
        weights_b, optim_b, schedule_b, lr_b = b
        assert weights_a.keys() == weights_b.keys() and optim_a.keys() == optim_b.keys() and optim_a
        for name in weights_a:
            assert torch.equal(weights_a[name], weights_b[name]), name
        for key in optim_a:
            assert torch.equal(optim_a[key], optim_b[key]), key
        assert schedule_a == schedule_b and lr_a == lr_b

    assert_same(state(loaded), state(saved))
    saved.update(batch, step=1)
    loaded.update(batch, step=1)
    assert_same(state(loaded), state(saved))


class Payload:
    """Unpickling this would run code (``__reduce__`` calls ``os.system``)."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED-by-optimizer-shard",))


def test_engine_load_refuses_a_pickled_object_in_the_optimizer_shards(make_policy_worker, rollout, tmp_path):
    """torch.distributed.checkpoint unpickles non-tensor entries; the engine's reader refuses them."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    worker = make_policy_worker("train.mini_batch_size=2", "train.micro_batch_size=2")
    worker.update(training_batch(worker, rollout), step=0)
    worker.actor.save(tmp_path / "policy", worker.tokenizer, {"kind": "policy"})
    state = get_optimizer_state_dict(worker.actor.module, worker.actor.optimizer)["state"]
    name = next(iter(state))
    state[name]["exp_avg"] = Payload()  # one entry of a complete state turned into a pickled callable
    crafted = tmp_path / "crafted"
    dcp.save({"state": state}, checkpoint_id=crafted)
    for path in crafted.iterdir():  # the crafted shards replace the real ones
        (tmp_path / "policy" / "optimizer" / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match=r"optimizer: .*refusing to unpickle"):
        make_policy_worker("train.mini_batch_size=2", "train.micro_batch_size=2").actor.load(tmp_path / "policy")
    assert not (tmp_path / "PWNED-by-optimizer-shard").exists() and not Path("PWNED-by-optimizer-shard").exists()
