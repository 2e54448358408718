"""One controller step end to end on the tiny Llama, and reproducibility of whole runs."""

import json

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from alignflow.models.forward import response_logprobs
from alignflow.rollout.linears import PackedLinear, packing_supported
from alignflow.trainers.rl_controller import RLController, load_prompt_sets, train_rl
from alignflow.workers import build_local_workers

QUIET = Console(quiet=True)


def controller(cfg):
    workers = build_local_workers(cfg)
    train, evals = load_prompt_sets(cfg, workers.policy.worker.tokenizer, QUIET)
    return RLController(cfg, workers, train, evals, console=QUIET), workers


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_one_ppo_step_moves_the_policy_but_not_the_reference(ppo_config, lora):
    cfg = ppo_config("algorithm.missing_eos_penalty=null", "train.steps=1",
                     *(["model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8"] if lora else []))
    ctl, workers = controller(cfg)
    actor = workers.policy.worker.actor
    assert (workers.policy.worker.reference is None) == lora  # LoRA: adapters disabled, no second copy
    probe, _ = workers.policy.generate(ctl.train_prompts.batch([0, 1, 2], [0, 1, 2]), seed=5)
    ref_before = workers.policy.compute_ref_logprobs(probe)["ref_logprobs"]
    policy_before = {n: p.detach().clone() for n, p in actor.model.named_parameters()}
    critic_before = {n: p.detach().clone() for n, p in workers.critic.worker.engine.model.named_parameters()}

    metrics = ctl.train_step()

    changed = [n for n, p in actor.model.named_parameters() if not torch.equal(p, policy_before[n])]
    assert changed and (all("lora_" in n for n in changed) if lora else len(changed) > 5)
    assert any(not torch.equal(p, critic_before[n]) for n, p in workers.critic.worker.engine.model.named_parameters())
    with torch.no_grad():
        policy_after, _ = response_logprobs(actor.model, probe, cfg.rollout.temperature)
    ref_after = workers.policy.compute_ref_logprobs(probe)["ref_logprobs"]
    assert torch.equal(ref_after, ref_before)
    assert (policy_after - ref_after).abs().max() > 1e-4
    assert metrics["kl/ref"] == pytest.approx(0.0, abs=1e-6)  # the first rollout: policy == reference
    for key in ("reward/raw_mean", "reward/raw_std", "reward/total_mean", "policy/entropy", "response/length_mean",
                "response/eos_rate", "actor/clip_fraction", "actor/approx_kl", "critic/value_loss",
                "critic/vf_clip_fraction", "critic/explained_variance", "advantages/mean", "advantages/std",
                "perf/tokens_per_s", "time/generate_s", "time/score_s", "time/logprobs_s", "time/values_s",
                "time/critic_update_s", "time/actor_update_s", "time/step_s", "time/sync_weights_s"):
        assert key in metrics, key
    assert metrics["rollout/logprob_gap"] < 1e-4  # recomputed log-probs match the sampler's


def test_grpo_is_a_config_change_without_a_critic(ppo_config):
    cfg = ppo_config("algorithm.adv_estimator=grpo", "rollout.n=2", "algorithm.kl_in_reward=false",
                     "algorithm.kl_loss_coef=0.1", "algorithm.kl_estimator=k3", "train.prompts_per_step=2",
                     "algorithm.missing_eos_penalty=null")
    ctl, workers = controller(cfg)
    assert workers.critic is None
    metrics = ctl.train_step()
    assert "actor/kl_loss" in metrics and not any(k.startswith("critic/") for k in metrics)


def metric_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(("time", "perf/"))} for r in rows if r["split"] != "alert"]


def test_same_seed_same_metrics(ppo_config, tmp_path):
    train_rl(ppo_config(out=tmp_path / "a"), QUIET)
    train_rl(ppo_config(out=tmp_path / "b"), QUIET)
    a, b = metric_rows(tmp_path / "a"), metric_rows(tmp_path / "b")
    assert [(r["step"], r["split"]) for r in a] == [(0, "eval"), (1, "train"), (2, "train"), (2, "eval")]
    assert a == b


def test_resume_from_a_mid_run_checkpoint_gives_the_same_final_weights(ppo_config, tmp_path, monkeypatch):
    args = ("train.steps=4", "train.save_every=2", "algorithm.kl_controller=adaptive", "algorithm.horizon=100",
            "algorithm.missing_eos_penalty=null")
    full = train_rl(ppo_config(*args, out=tmp_path / "full"), QUIET)

    original = RLController.save_checkpoint

    def save_then_crash(self, keep=2):
        path = original(self, keep)
        if self.step == 2:
            raise KeyboardInterrupt  # like Ctrl-C right after the mid-run checkpoint
        return path

    monkeypatch.setattr(RLController, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_rl(ppo_config(*args, out=tmp_path / "part"), QUIET)
    monkeypatch.setattr(RLController, "save_checkpoint", original)
    resumed = train_rl(ppo_config(*args, out=tmp_path / "part"), QUIET)
    assert [row["step"] for row in resumed.history] == [3, 4]  # continued, did not start over
    assert [(r["step"], r["split"]) for r in metric_rows(tmp_path / "part")] == [
        (0, "eval"), (1, "train"), (2, "train"), (3, "train"), (4, "train"), (4, "eval")]

    for role in ("policy", "critic"):
        a = load_file(tmp_path / "full" / "checkpoints" / "step-000004" / role / "model.safetensors")
        b = load_file(tmp_path / "part" / "checkpoints" / "step-000004" / role / "model.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"{role}: {key}")
    assert resumed.metrics["kl/coef"] == full.metrics["kl/coef"] != 0.05  # adaptive KL state carried over
    assert resumed.metrics["data/prompts_consumed"] == full.metrics["data/prompts_consumed"] == 16
    a = {k: v for k, v in full.metrics.items() if not k.startswith(("time", "perf/"))}
    b = {k: v for k, v in resumed.metrics.items() if not k.startswith(("time", "perf/"))}
    assert a == b


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_bf16_rollout_copy_samples_from_the_actors_current_weights(ppo_config, lora, monkeypatch):
    monkeypatch.setattr("alignflow.runtime.precision.native_bf16", lambda device_type="cpu": True)
    cfg = ppo_config("model.dtype=bf16", "train.steps=1",
                     *(["model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8"] if lora else []))
    assert cfg.rollout.weights == "auto"  # bf16 model dtype -> a bf16 engine copy
    ctl, workers = controller(cfg)
    actor, engine_model = workers.policy.worker.actor, workers.policy.worker.rollout.model
    assert engine_model is not actor.model
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in engine_model.parameters())
    packed = {name: m for name, m in engine_model.named_modules() if isinstance(m, PackedLinear)}
    assert bool(packed) == (packing_supported(torch.bfloat16) and not lora)  # peft's layers read .weight
    if not packed:
        tied = actor.model.get_output_embeddings().weight is actor.model.get_input_embeddings().weight
        assert (engine_model.get_output_embeddings().weight is engine_model.get_input_embeddings().weight) == tied

    ctl.train_step()  # the update moves the actor; the copy is stale until the controller syncs it
    assert ctl.rollout_stale
    ctl.sync_rollout_weights({})
    source = actor.model.state_dict()
    for name, tensor in engine_model.state_dict().items():
        torch.testing.assert_close(tensor, source[name].to(torch.bfloat16), rtol=0, atol=0)
    for name, module in packed.items():  # a packed weight is seen through what it computes
        x = torch.randn(2, module.in_features, dtype=torch.bfloat16)
        with torch.inference_mode():
            assert torch.equal(module(x), torch.nn.functional.linear(x, source[f"{name}.weight"].to(torch.bfloat16)))


def test_shared_rollout_weights_use_the_actor_module(ppo_config):
    ctl, workers = controller(ppo_config("model.dtype=bf16", "rollout.weights=shared"))
    assert workers.policy.worker.rollout.model is workers.policy.worker.actor.model


def test_critic_warmup_trains_only_the_critic_and_its_head_at_its_own_lr(ppo_config):
    from alignflow.models import value_head

    cfg = ppo_config("algorithm.missing_eos_penalty=null", "train.steps=3", "train.critic_warmup=1",
                     "train.critic_lr=1e-5", "train.critic_head_lr=1e-3")
    ctl, workers = controller(cfg)
    actor, critic = workers.policy.worker.actor, workers.critic.worker.engine
    head_ids = {id(p) for p in value_head(critic.model).parameters()}
    lrs = {id(p): g["lr"] for g in critic.optimizer.param_groups for p in g["params"]}
    assert head_ids and all(lr == (1e-3 if pid in head_ids else 1e-5) for pid, lr in lrs.items())

    def snapshot(model):
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    def moved(model, before):
        return any(not torch.equal(p, before[n]) for n, p in model.named_parameters())

    policy, values = snapshot(actor.model), snapshot(critic.model)
    warmup = ctl.train_step()
    assert moved(critic.model, values) and not moved(actor.model, policy)
    assert "critic/value_loss" in warmup and "actor/clip_fraction" not in warmup
    assert "actor/clip_fraction" in ctl.train_step() and moved(actor.model, policy)


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.critic_warmup=3"], r"train.critic_warmup must be in \[0, train.steps\)"),
    (["train.critic_warmup=1", "algorithm.adv_estimator=grpo", "rollout.n=2"], "needs a critic"),
    (["train.critic_head_lr=0"], "train.critic_head_lr must be positive"),
])
def test_critic_settings_are_checked(ppo_config, overrides, message):
    from alignflow.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        ppo_config("train.steps=3", *overrides)


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.compile=true"], "needs a rollout copy"),  # fp32 + auto: the engine shares the actor's blocks
    (["train.compile=true", "rollout.weights=bf16", "model.lora.enabled=true"], "does not support model.lora"),
])
def test_compile_settings_are_checked(ppo_config, overrides, message):
    from alignflow.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        ppo_config(*overrides)


def test_a_compiled_ppo_step_matches_the_eager_one(ppo_config):
    # Actor and critic blocks compiled (inductor: ~20 s on the tiny model); rollouts from the bf16 copy.
    from torch._dynamo.utils import counters

    eager, eager_workers = controller(ppo_config("train.steps=1", "rollout.weights=bf16"))
    expected = eager.train_step()
    counters.clear()
    compiled, workers = controller(ppo_config("train.steps=1", "rollout.weights=bf16", "train.compile=true"))
    metrics = compiled.train_step()
    assert counters["stats"]["unique_graphs"] >= 1
    def models(w):
        return {"actor": w.policy.worker.actor.model, "critic": w.critic.worker.engine.model}

    for role, model in models(workers).items():
        reference = dict(models(eager_workers)[role].named_parameters())
        for name, param in model.named_parameters():
            torch.testing.assert_close(param, reference[name], atol=1e-4, rtol=1e-3, msg=f"{role}: {name}")
    for key in ("kl/ref", "actor/pg_loss", "critic/value_loss", "reward/raw_mean"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-4), key


def test_a_single_update_per_batch_reuses_its_own_forward_as_the_behaviour_policy(ppo_config, monkeypatch):
    """One epoch, one mini-batch, KL outside the reward: the update is on-policy, so the separate
    behaviour log-prob pass is skipped and the step (weights and metrics) is the same as with it."""
    from alignflow.workers import PolicyWorker

    cfg = ppo_config("algorithm.adv_estimator=grpo", "rollout.n=2", "algorithm.kl_in_reward=false",
                     "algorithm.kl_loss_coef=0.1", "algorithm.kl_estimator=k3", "train.prompts_per_step=2",
                     "algorithm.missing_eos_penalty=null", "train.ppo_epochs=1", "train.mini_batch_size=4",
                     "reward_function=ppo_test_rewards:text_reward")
    two_pass, two_pass_workers = controller(cfg)
    two_pass.single_update = False
    expected = two_pass.train_step()

    one_pass, workers = controller(cfg)
    assert one_pass.single_update
    monkeypatch.setattr(PolicyWorker, "compute_logprobs", lambda *a, **k: pytest.fail("behaviour pass ran"))
    metrics = one_pass.train_step()
    for name, param in workers.policy.worker.actor.model.named_parameters():
        torch.testing.assert_close(param, dict(two_pass_workers.policy.worker.actor.model.named_parameters())[name],
                                   atol=1e-6, rtol=1e-5)
    for key in ("kl/ref", "policy/entropy", "rollout/logprob_gap", "actor/pg_loss", "actor/kl_loss", "reward/raw_mean"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-5), key
    assert metrics["actor/clip_fraction"] == 0.0 and metrics["actor/grad_norm"] > 0  # ratio 1, a real update


def test_an_int8_rollout_step_runs_with_truncated_importance_sampling(ppo_config, monkeypatch):
    from alignflow.rollout.int8 import Int8Linear

    monkeypatch.setattr("alignflow.workers.policy.native_bf16", lambda device_type="cpu": True)
    cfg = ppo_config("rollout.weights=int8", "train.steps=1", "algorithm.missing_eos_penalty=null")
    assert cfg.is_cap == 2.0  # null: on with int8
    ctl, workers = controller(cfg)
    engine_model = workers.policy.worker.rollout.model
    assert isinstance(engine_model.model.layers[0].mlp.down_proj, Int8Linear)
    metrics = ctl.train_step()
    assert 0 < metrics["rollout/logprob_gap"] < 0.5
    assert 0 <= metrics["rollout/is_capped_fraction"] < 0.5 and 0 < metrics["rollout/is_weight_mean"] <= 2
    before = engine_model(torch.tensor([[5, 6, 7]])).logits
    ctl.sync_rollout_weights({})  # re-quantised from the updated actor
    assert not torch.equal(engine_model(torch.tensor([[5, 6, 7]])).logits, before)


@pytest.mark.parametrize("on_policy", [False, True], ids=["ppo", "single-update"])
def test_importance_weights_are_one_and_change_nothing_when_rollout_and_actor_agree(ppo_config, on_policy):
    args = ["rollout.weights=fp32", "train.steps=1", "algorithm.missing_eos_penalty=null"]
    if on_policy:
        args += ["algorithm.adv_estimator=grpo", "rollout.n=2", "algorithm.kl_in_reward=false",
                 "algorithm.kl_loss_coef=0.1", "train.prompts_per_step=2", "train.ppo_epochs=1",
                 "train.mini_batch_size=4", "reward_function=ppo_test_rewards:text_reward"]
    plain_ctl, plain = controller(ppo_config(*args))
    expected = plain_ctl.train_step()
    assert "rollout/is_weight_mean" not in expected  # off by default with an fp32 copy
    ctl, workers = controller(ppo_config(*args, "rollout.is_cap=2"))
    metrics = ctl.train_step()
    assert metrics["rollout/is_weight_mean"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["rollout/is_capped_fraction"] == 0
    assert metrics["actor/pg_loss"] == pytest.approx(expected["actor/pg_loss"], abs=1e-6)
    reference = dict(plain.policy.worker.actor.model.named_parameters())
    for name, param in workers.policy.worker.actor.model.named_parameters():
        torch.testing.assert_close(param, reference[name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("overrides", "message"), [
    (["rollout.is_cap=0.5"], "rollout.is_cap must be >= 1"),
    (["rollout.weights=int8", "model.lora.enabled=true"], "rollout.weights=int8 does not support model.lora"),
    (["rollout.weights=int8", "rollout.engine=vllm"], "not int8"),
])
def test_int8_and_is_cap_settings_are_checked(ppo_config, overrides, message):
    from alignflow.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        ppo_config(*overrides)


def test_is_cap_resolution():
    from alignflow.config.rl import resolve_is_cap

    assert resolve_is_cap(None, "int8") == 2.0 and resolve_is_cap(None, "bf16") is None
    assert resolve_is_cap(0, "int8") is None and resolve_is_cap(3, "fp32") == 3.0
