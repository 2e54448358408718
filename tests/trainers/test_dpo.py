import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

import alignflow.trainers.dpo_logps as dpo_logps
from alignflow.algorithms import dpo_loss, dpo_metrics
from alignflow.cli.main import app
from alignflow.config import ConfigError, DPOConfig, DPOLossConfig, load_config
from alignflow.config.schema import LoraConfig, ModelConfig
from alignflow.data.formatting import ChatFormatter
from alignflow.data.tokenize import PromptResponseEncoder
from alignflow.models import load_policy
from alignflow.trainers.dpo import dpo_objective, train_dpo
from alignflow.trainers.dpo_logps import (
    AdapterReference,
    batched_pair_logps,
    cached_reference,
    pair_logps,
    reference_fingerprint,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "data"
PROMPTS = ["What is the capital of France?", "Tell me a joke, please.", "hi", "How do I bake bread at home?"]
ANSWERS = [("Paris.", "I cannot help with that."), ("Why did the chicken cross the road?", "No."),
           ("Hello! How can I help?", "What."), ("Mix flour, water and yeast, then bake it.", "Buy it.")]


def dpo_config(model_dir, data, out, *overrides):
    return load_config(DPOConfig, None, [
        f"model.name={model_dir}", f"data.train={data}", f"output_dir={out}", "model.dtype=fp32",
        "data.max_length=64", "data.max_prompt_length=24", "data.val_fraction=0.25",
        "train.batch_size=8", "train.micro_batch_size=4", "train.grad_accum=2", "train.lr=3e-3",
        "train.max_steps=12", "train.eval_every=4", "train.log_every=4", "train.warmup_ratio=0.0", *overrides,
    ])


def encoded_pairs(tokenizer):
    encoder = PromptResponseEncoder(tokenizer, ChatFormatter(tokenizer), max_length=64, max_prompt_length=24)
    return [encoder.encode_pair([{"role": "user", "content": p}], c, r) for p, (c, r) in zip(PROMPTS, ANSWERS)]


def policy(model_dir, lora: bool = False):
    lora_cfg = LoraConfig(enabled=lora, r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    return load_policy(ModelConfig(name=str(model_dir), dtype="fp32", lora=lora_cfg))


# ----------------------------------------------------------------------------- the math


def test_objective_sums_log_probs_and_ipo_averages_them_per_token():
    policy_logps, ref_logps = torch.tensor([[-4.0, -6.0]]), torch.tensor([[-5.0, -5.0]])
    tokens = torch.tensor([[2, 4]])
    # Summed: h = (-4 + 5) - (-6 + 5) = 2, loss = -logsigmoid(0.2) = log(1 + e^-0.2).
    loss, (chosen, rejected), stats = dpo_objective(policy_logps, ref_logps, tokens, DPOLossConfig(beta=0.1))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.2)), abs=1e-6)
    assert chosen.item() == pytest.approx(0.1) and rejected.item() == pytest.approx(-0.1)
    assert stats["accuracy"] == 1.0 and stats["margin"].item() == pytest.approx(0.2)
    assert stats["logp_chosen"] == -4.0 and stats["logp_rejected"] == -6.0
    # IPO on per-token means: chosen -2 vs -2.5, rejected -1.5 vs -1.25 -> h = 0.75, target 1/(2*0.1) = 5.
    loss, _, _ = dpo_objective(policy_logps, ref_logps, tokens, DPOLossConfig(type="ipo", beta=0.1))
    assert loss.item() == pytest.approx((0.75 - 5.0) ** 2)
    # cDPO, eps = 0.1: 0.9 * log(1 + e^-0.2) + 0.1 * log(1 + e^0.2).
    loss, _, _ = dpo_objective(policy_logps, ref_logps, tokens, DPOLossConfig(type="cdpo", label_smoothing=0.1))
    assert loss.item() == pytest.approx(0.9 * math.log1p(math.exp(-0.2)) + 0.1 * math.log1p(math.exp(0.2)))


def test_losses_stay_finite_for_huge_gaps_and_ties_count_half():
    big = torch.tensor([-1e4, 1e4], requires_grad=True)
    zero = torch.zeros(2)
    for loss_type, smoothing in [("sigmoid", 0.0), ("cdpo", 0.2)]:
        loss, _, _ = dpo_loss(big, zero, zero, zero, beta=0.1, loss_type=loss_type, label_smoothing=smoothing)
        # sigmoid: (-logsigmoid(-1000) + -logsigmoid(1000)) / 2 = 500; no overflow to inf.
        expected = 500.0 if loss_type == "sigmoid" else ((0.8 * 1000.0) + (0.2 * 1000.0)) / 2
        assert loss.item() == pytest.approx(expected, rel=1e-5)
        (grad,) = torch.autograd.grad(loss, big)
        assert torch.isfinite(grad).all()
    stats = dpo_metrics(torch.zeros(4), torch.zeros(4), torch.zeros(4), torch.zeros(4))
    assert stats["accuracy"] == 0.5  # before the first update every pair is a tie: chance, not failure


# ----------------------------------------------------------------------------- log-probs and the reference


def naive_response_logp(model, prompt_ids, response_ids) -> float:
    ids = torch.tensor([prompt_ids + response_ids])
    logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
    positions = range(len(prompt_ids) - 1, ids.shape[1] - 1)
    return sum(logp[t, ids[0, t + 1]].item() for t in positions)


def test_concatenated_forward_equals_a_naive_per_row_log_softmax(tiny_llama_dir):
    model, tokenizer = policy(tiny_llama_dir)
    pairs = encoded_pairs(tokenizer)
    logps, counts = pair_logps(model, pairs, tokenizer.pad_token_id, "fp32")
    assert logps.requires_grad and logps.shape == (len(pairs), 2)
    with torch.no_grad():
        for i, (chosen, rejected) in enumerate(pairs):
            for j, row in enumerate((chosen, rejected)):
                assert counts[i, j] == len(row.response_ids)
                expected = naive_response_logp(model, row.prompt_ids, row.response_ids)
                assert logps[i, j].item() == pytest.approx(expected, abs=1e-4)
    batched, _ = batched_pair_logps(model, pairs, batch_size=3, pad_token_id=tokenizer.pad_token_id, dtype="fp32")
    torch.testing.assert_close(batched, logps.detach(), atol=1e-5, rtol=0)
    # data.packing: the same sums from rows packed several sequences to a row.
    packed, packed_counts = pair_logps(model, pairs, tokenizer.pad_token_id, "fp32", capacity=256)
    torch.testing.assert_close(packed, logps, atol=1e-4, rtol=0)
    assert torch.equal(packed_counts, counts)


def test_cached_reference_is_the_starting_policy_and_is_read_back(tiny_llama_dir, tmp_path, monkeypatch):
    model, tokenizer = policy(tiny_llama_dir)
    pairs = encoded_pairs(tokenizer)
    splits = {"train": pairs[:3], "validation": pairs[3:]}
    fingerprint = reference_fingerprint({"name": str(tiny_llama_dir)}, splits)
    kwargs = dict(path=tmp_path / "ref.pt", fingerprint=fingerprint, reuse=True, batch_size=2,
                  pad_token_id=tokenizer.pad_token_id, dtype="fp32", console=Console(quiet=True))
    ref = cached_reference(model, splits, {"train": [0, 2], "validation": [0]}, **kwargs)
    expected, _ = pair_logps(model, pairs, tokenizer.pad_token_id, "fp32")
    torch.testing.assert_close(ref.logps("train", [0, 2]), expected[[0, 2]].detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(ref.logps("validation", [0]), expected[[3]].detach(), atol=1e-5, rtol=0)
    assert torch.isnan(ref.splits["train"][1]).all()  # a pair no step visits is never scored
    # A resume reads the file back and scores only what it lacks; a changed fingerprint recomputes.
    calls = []
    real = dpo_logps.batched_pair_logps
    monkeypatch.setattr(dpo_logps, "batched_pair_logps", lambda m, p, **kw: calls.append(len(p)) or real(m, p, **kw))
    again = cached_reference(model, splits, {"train": [0, 1, 2], "validation": [0]}, **kwargs)
    assert calls == [1]
    torch.testing.assert_close(again.logps("train", [0, 2]), ref.logps("train", [0, 2]), atol=0, rtol=0)
    cached_reference(model, splits, {"train": [0], "validation": []}, **{**kwargs, "fingerprint": "other"})
    assert calls == [1, 1]


@pytest.mark.parametrize("lora", [False, True], ids=["cached", "lora"])
def test_one_dpo_step_moves_the_policy_but_not_the_reference(tiny_llama_dir, tmp_path, lora):
    model, tokenizer = policy(tiny_llama_dir, lora=lora)
    pairs = encoded_pairs(tokenizer)
    pad, idx = tokenizer.pad_token_id, list(range(len(pairs)))
    if lora:
        reference = AdapterReference(model, {"train": pairs}, batch_size=4, pad_token_id=pad, dtype="fp32")
    else:
        reference = cached_reference(model, {"train": pairs}, {"train": idx}, path=tmp_path / "ref.pt",
                                     fingerprint="f", reuse=False, batch_size=4, pad_token_id=pad, dtype="fp32",
                                     console=Console(quiet=True))
    ref_before = reference.logps("train", idx).clone()
    start, _ = pair_logps(model, pairs, pad, "fp32")
    torch.testing.assert_close(start.detach(), ref_before, atol=1e-5, rtol=0)  # step 0: policy == reference

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5 if lora else 0.05)
    policy_logps, tokens = pair_logps(model, pairs, pad, "fp32")
    loss, _, _ = dpo_objective(policy_logps, reference.logps("train", idx), tokens, DPOLossConfig(beta=0.5))
    assert loss.item() == pytest.approx(math.log(2.0), abs=1e-5)
    loss.backward()
    optimizer.step()

    after, _ = pair_logps(model, pairs, pad, "fp32")
    assert (after.detach() - start.detach()).abs().max() > 1e-3  # the policy moved
    torch.testing.assert_close(reference.logps("train", idx), ref_before, atol=1e-6, rtol=0)  # the reference did not
    new_loss, _, stats = dpo_objective(after.detach(), ref_before, tokens, DPOLossConfig(beta=0.5))
    assert new_loss < loss and stats["margin"] > 0  # and in the right direction


# ----------------------------------------------------------------------------- the trainer


def test_dpo_run_on_the_fixtures_saves_a_plain_hf_policy_and_resumes_without_rescoring(
    tiny_llama_dir, tmp_path, monkeypatch
):
    cfg = dpo_config(tiny_llama_dir, FIXTURES / "preference.jsonl", tmp_path / "run", f"data.validation={FIXTURES}",
                     "train.batch_size=4", "train.micro_batch_size=2", "train.max_steps=3", "train.eval_every=2")
    result = train_dpo(cfg)
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert model.config.vocab_size > 0
    meta = json.loads((result.model_dir / "alignflow.json").read_text())
    assert meta["trainer"] == "dpo" and meta["metrics"]["steps"] == 3
    # Validation mixes two files: accuracy is reported for each.
    assert {"eval_accuracy/hh_small", "eval_accuracy/preference", "eval_length_baseline/accuracy",
            "eval_length_baseline/accuracy/hh_small"} <= set(result.metrics)
    for key in ("loss", "accuracy", "margin", "reward_chosen", "reward_rejected", "logp_chosen", "logp_rejected"):
        assert math.isfinite(result.metrics["train_" + key]) and math.isfinite(result.metrics["eval_" + key])
    assert result.best_dir is not None and (result.best_dir / "model.safetensors").is_file()
    assert (tmp_path / "run" / "reference_logps.pt").is_file()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "eval"}
    # Rerunning the finished run resumes from its checkpoint and reads the reference back.
    monkeypatch.setattr(dpo_logps, "batched_pair_logps", lambda *a, **k: pytest.fail("reference recomputed"))
    train_dpo(cfg)


@pytest.mark.parametrize("overrides", [[], ["loss.type=ipo"], ["loss.type=cdpo", "loss.label_smoothing=0.1"],
                                       ["model.lora.enabled=true", "loss.reference=lora", "train.lr=3e-2"]],
                         ids=["sigmoid", "ipo", "cdpo", "lora"])
def test_dpo_learns_the_preference(tiny_llama_dir, preference_file, tmp_path, overrides):
    cfg = dpo_config(tiny_llama_dir, preference_file, tmp_path / "run", *overrides)
    result = train_dpo(cfg)
    assert result.metrics["eval_accuracy"] == 1.0 and result.metrics["eval_margin"] > 0
    # Below the loss at policy == reference (h = 0): log 2, or (1 / (2 beta))^2 for IPO.
    zero = torch.zeros(1)
    start, _, _ = dpo_loss(zero, zero, zero, zero, beta=cfg.loss.beta, loss_type=cfg.loss.type,
                           label_smoothing=cfg.loss.label_smoothing)
    assert result.metrics["eval_loss"] < start.item()


def test_shared_prompt_runs_train_like_unshared_ones(tiny_llama_dir, preference_file, tmp_path):
    """data.share_prompt (each pair's prompt once, then chosen and rejected) changes which tokens
    are computed, not the run: the same losses and metrics as a run without it, step by step."""
    runs = {}
    for share in ("true", "false"):
        out = tmp_path / f"share-{share}"
        train_dpo(dpo_config(tiny_llama_dir, preference_file, out, f"data.share_prompt={share}", "train.max_steps=4"))
        runs[share] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(runs["true"]) == len(runs["false"]) > 0
    for shared, whole in zip(runs["true"], runs["false"]):
        for key in ("loss", "accuracy", "margin"):
            if key in whole:
                assert shared[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-5), key


# ----------------------------------------------------------------------------- config and CLI


@pytest.mark.parametrize("line, key", [
    ("loss: {type: kto}", "loss.type"),
    ("loss: {beta: 0}", "loss.beta"),
    ("loss: {label_smoothing: 0.1}", "loss.label_smoothing"),
    ("loss: {type: cdpo, label_smoothing: 0.5}", "loss.label_smoothing"),
    ("loss: {reference: lora}", "loss.reference"),
    ("loss: {reference: frozen}", "loss.reference"),
    ("loss: {betta: 0.1}", "loss.betta"),
])
def test_config_errors_name_the_key_and_the_file(tmp_path, line, key):
    path = tmp_path / "dpo.yaml"
    path.write_text(f"data: {{train: pairs.jsonl}}\n{line}\n")
    with pytest.raises(ConfigError) as err:
        load_config(DPOConfig, path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_shipped_dpo_config_loads():
    cfg = load_config(DPOConfig, REPO / "configs" / "dpo.yaml")
    assert (cfg.loss.type, cfg.loss.beta, cfg.loss.reference) == ("sigmoid", 0.1, "cached")
    assert cfg.train.batch_size == 8 and cfg.data.max_length == 256 and cfg.model.dtype == "bf16"


def test_dpo_cli_trains_and_reports_bad_keys(tiny_llama_dir, preference_file, tmp_path):
    runner = CliRunner()
    config = tmp_path / "dpo.yaml"
    config.write_text(f"model: {{name: {tiny_llama_dir}, dtype: bf16}}\ndata: {{train: {preference_file}, "
                      "max_length: 64, max_prompt_length: 24}\ntrain: {batch_size: 4, micro_batch_size: 2, "
                      "grad_accum: 2, max_steps: 2, lr: 1.0e-3}\n")
    result = runner.invoke(app, ["dpo", str(config), "--set", f"output_dir={tmp_path / 'run'}"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    result = runner.invoke(app, ["dpo", str(config), "--set", "loss.beta=-1"])
    assert result.exit_code == 2 and "loss.beta" in result.output
