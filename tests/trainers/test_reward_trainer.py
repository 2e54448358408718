import json

import pytest
import torch
from trainer_data import QUESTIONS, write_jsonl
from transformers import AutoModelForSequenceClassification
from typer.testing import CliRunner

from alignflow.cli.main import app
from alignflow.config import ConfigError, RewardConfig, load_config
from alignflow.config.schema import ModelConfig
from alignflow.data.formatting import ChatFormatter
from alignflow.data.tokenize import Encoded, PromptResponseEncoder
from alignflow.models import load_tokenizer
from alignflow.models.reward_io import RewardModelScorer
from alignflow.trainers.pair_eval import (
    accuracy_by_source,
    against_length_baseline,
    length_baseline,
    length_correlation,
    source_name,
)
from alignflow.trainers.reward import collate_pairs, pair_scores, train_reward_model


def rm_config(model_dir, data, out, *overrides):
    return load_config(RewardConfig, None, [
        f"model.name={model_dir}", f"data.train={data}", f"output_dir={out}", "model.dtype=fp32",
        "data.max_length=64", "data.max_prompt_length=24", "data.val_fraction=0.25",
        "train.batch_size=8", "train.micro_batch_size=4", "train.grad_accum=2", "train.lr=3e-3",
        "train.max_steps=16", "train.eval_every=4", "train.log_every=4", "train.warmup_ratio=0.0", *overrides,
    ])


@pytest.mark.parametrize("backbone", ["tiny_llama_dir", "tiny_bert_dir"])
def test_reward_model_learns_the_preference_and_is_centred(backbone, request, preference_file, tmp_path):
    model_dir = request.getfixturevalue(backbone)
    result = train_reward_model(rm_config(model_dir, preference_file, tmp_path / "run"))
    assert result.metrics["eval_accuracy"] == 1.0
    # Beside the model's accuracy, the bar that length alone sets on the same pairs, and how much
    # of the reward follows length.
    assert 0.0 <= result.metrics["eval_length_baseline/accuracy"] <= 1.0
    assert -1.0 <= result.metrics["eval_length_correlation"] <= 1.0
    assert result.best_dir is not None and (result.best_dir / "alignflow.json").is_file()
    # Plain transformers loads it; alignflow's scorer applies the centring offset wherever it lives.
    assert AutoModelForSequenceClassification.from_pretrained(result.model_dir).config.num_labels == 1
    scorer = RewardModelScorer(result.model_dir, dtype="fp32")
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS]
    chosen = scorer.score(prompts, ["Two plus two is four, happy to help."] * len(prompts))
    rejected = scorer.score(prompts, ["I cannot help with that request because it could hurt someone."] * len(prompts))
    assert (chosen > rejected).all()
    # Validation responses are exactly these two answers, half each: their mean reward is ~0.
    assert torch.cat([chosen, rejected]).mean().abs() < 0.05 * (chosen - rejected).abs().mean()


def test_pairs_share_the_prompt_and_are_stacked_chosen_first(tiny_llama_dir):
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    encoder = PromptResponseEncoder(tokenizer, ChatFormatter(tokenizer), max_length=64, max_prompt_length=24)
    pairs = [encoder.encode_pair([{"role": "user", "content": "hi"}], "yes please", "no")]
    chosen, rejected = pairs[0]
    assert chosen.prompt_ids == rejected.prompt_ids
    batch = collate_pairs(pairs, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 2
    assert batch["attention_mask"][0].sum() == len(chosen.input_ids)
    assert batch["attention_mask"][1].sum() == len(rejected.input_ids)


def test_packed_pairs_give_the_padded_rewards(tiny_llama_dir):
    from alignflow.models import load_reward_model
    from alignflow.trainers.reward import pair_scores

    model, tokenizer = load_reward_model(ModelConfig(name=str(tiny_llama_dir), dtype="fp32"))
    encoder = PromptResponseEncoder(tokenizer, ChatFormatter(tokenizer), max_length=64, max_prompt_length=24)
    pairs = [encoder.encode_pair([{"role": "user", "content": q}], a, b) for q, a, b in [
        ("hi", "yes please", "no"), ("what is the capital of France", "Paris", "I do not know, sorry"),
        ("why", "because it rains", "ok")]]
    packed = collate_pairs(pairs, tokenizer.pad_token_id, capacity=256)
    assert packed["input_ids"].shape[0] < 2 * len(pairs) and "attention_mask" not in packed
    padded = collate_pairs(pairs, tokenizer.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(pair_scores(model, packed), pair_scores(model, padded), atol=1e-5, rtol=1e-4)


def test_shared_prompt_pairs_give_the_padded_rewards(tiny_llama_dir):
    """data.share_prompt: a pair's prompt once, then chosen and rejected (models.shared_prefix)."""
    from alignflow.models import load_reward_model

    model, tokenizer = load_reward_model(ModelConfig(name=str(tiny_llama_dir), dtype="fp32"))
    encoder = PromptResponseEncoder(tokenizer, ChatFormatter(tokenizer), max_length=64, max_prompt_length=24)
    pairs = [encoder.encode_pair([{"role": "user", "content": q}], "Two plus two is four.", "No.") for q in QUESTIONS]
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        padded = pair_scores(model, collate_pairs(pairs, pad))
        shared = pair_scores(model, collate_pairs(pairs, pad, 64, share_prompt=True))
    torch.testing.assert_close(shared, padded, atol=1e-5, rtol=1e-5)


def test_share_prompt_on_an_encoder_is_refused_naming_the_setting(tiny_bert_dir, preference_file, tmp_path):
    with pytest.raises(ConfigError, match=r"data\.share_prompt.*not a causal decoder"):
        train_reward_model(rm_config(tiny_bert_dir, preference_file, tmp_path / "run", "data.share_prompt=true"))


def test_long_prompts_are_cut_from_the_left_keeping_the_response(tiny_llama_dir):
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    encoder = PromptResponseEncoder(tokenizer, ChatFormatter(tokenizer), max_length=80, max_prompt_length=40)
    long_prompt = [{"role": "user", "content": "old turn " * 50}, {"role": "assistant", "content": "ok"},
                   {"role": "user", "content": "final question"}]
    encoded = encoder.encode(long_prompt, "the answer")
    assert encoded.truncated_prompt and len(encoded.prompt_ids) <= 40
    text = tokenizer.decode(encoded.prompt_ids)
    # Whole old turns were dropped: the prompt starts at the final user turn, intact.
    assert text.startswith("<|im_start|>user\nfinal question") and text.rstrip().endswith("assistant")
    # A single turn too long for the budget is cut from its left.
    single = encoder.encode([{"role": "user", "content": "word " * 80 + "end"}], "x")
    assert len(single.prompt_ids) == 40 and "end" in tokenizer.decode(single.prompt_ids)
    assert tokenizer.decode(encoded.response_ids).startswith("the answer")
    assert encoded.response_ids[-1] == tokenizer.eos_token_id


def test_rm_cli_trains_and_scores(tiny_bert_dir, preference_file, tmp_path):
    runner = CliRunner()
    config = tmp_path / "rm.yaml"
    config.write_text(f"model: {{name: {tiny_bert_dir}, dtype: fp32}}\ndata: {{train: {preference_file}, "
                      "max_length: 64, max_prompt_length: 24}\ntrain: {batch_size: 8, micro_batch_size: 8, "
                      "grad_accum: 1, max_steps: 3, lr: 1.0e-3}\n")
    result = runner.invoke(app, ["rm", "train", str(config), "--set", f"output_dir={tmp_path / 'run'}"])
    assert result.exit_code == 0, result.output
    assert '"the longer response wins" scores' in " ".join(result.output.split())  # rich may wrap it
    rows = write_jsonl(tmp_path / "responses.jsonl", [{"prompt": "hi", "response": "hello"},
                                                      {"prompt": "hi", "response": ""}])
    scored = tmp_path / "scored.jsonl"
    result = runner.invoke(app, ["rm", "score", str(tmp_path / "run" / "model"), str(rows), "--out", str(scored)])
    assert result.exit_code == 0, result.output
    assert "scored 1 rows" in result.output and "skipped 1 rows" in result.output  # the empty response
    assert "reward" in json.loads(scored.read_text().splitlines()[0])


def test_rm_cli_reports_a_bad_config_key(tmp_path, preference_file):
    config = tmp_path / "rm.yaml"
    config.write_text(f"data: {{train: {preference_file}}}\ntrain: {{learning_rate: 0.1}}\n")
    result = CliRunner().invoke(app, ["rm", "train", str(config)])
    assert result.exit_code == 2
    assert "unknown key 'train.learning_rate'" in result.output


def test_accuracy_is_reported_per_source_file():
    sources = [source_name(f"/data/hh/{name}.jsonl.gz:{i}") for i, name in
               enumerate(["harmless-base", "harmless-base", "helpful-base", "helpful-base"])]
    chosen, rejected = torch.tensor([1.0, 0.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, 1.0, 1.0])
    assert accuracy_by_source(sources, chosen, rejected) == {"accuracy/harmless-base": 0.5,
                                                             "accuracy/helpful-base": 1.0}
    assert accuracy_by_source(sources[:2], chosen[:2], rejected[:2]) == {}  # one source: nothing to split


def test_length_baseline_scores_longer_wins_per_source_with_ties_half():
    def pair(chosen_tokens: int, rejected_tokens: int) -> tuple[Encoded, Encoded]:
        # The prompt is shared and long: only the response lengths may count.
        return Encoded([7] * 50, [1] * chosen_tokens), Encoded([7] * 50, [1] * rejected_tokens)

    pairs = [pair(5, 2), pair(2, 5), pair(3, 3), pair(9, 1)]
    sources = ["harmless-base", "harmless-base", "helpful-base", "helpful-base"]
    assert length_baseline(pairs, sources) == {"length_baseline/accuracy": 0.625,
                                               "length_baseline/accuracy/harmless-base": 0.5,
                                               "length_baseline/accuracy/helpful-base": 0.75}
    assert length_baseline([], []) == {}


def test_the_closing_line_sets_the_accuracy_beside_the_length_rule():
    line = against_length_baseline({"eval_accuracy": 0.568, "eval_length_baseline/accuracy": 0.561})
    assert line == 'validation accuracy 56.8%; "the longer response wins" scores 56.1% on the same pairs'
    assert against_length_baseline({"train_loss": 0.7}) is None  # no validation set


def test_length_correlation_is_pearson_and_zero_when_undefined():
    lengths = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert length_correlation(2 * lengths + 1, lengths) == pytest.approx(1.0)
    assert length_correlation(-lengths, lengths) == pytest.approx(-1.0)
    assert length_correlation(torch.tensor([1.0, -1.0, -1.0, 1.0]), lengths) == pytest.approx(0.0)
    assert length_correlation(torch.zeros(4), lengths) == 0.0  # a constant reward (a fresh zero head)
    assert length_correlation(torch.ones(1), lengths[:1]) == 0.0


def test_head_lr_gives_the_fresh_head_its_own_learning_rate(tiny_llama_dir):
    from alignflow.config import ConfigError
    from alignflow.models import load_reward_model, reward_head
    from alignflow.runtime.optim import build_optimizer, build_scheduler

    cfg = rm_config(tiny_llama_dir, "x", "out", "train.lr=1e-5", "train.head_lr=1e-3", "train.warmup_ratio=0.5")
    model, _ = load_reward_model(cfg.model)
    optimizer = build_optimizer(model, cfg.train, head=reward_head(model), head_lr=cfg.train.head_lr)
    head_ids = {id(p) for p in reward_head(model).parameters()}
    lrs = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert all(lr == (1e-3 if pid in head_ids else 1e-5) for pid, lr in lrs.items())
    assert len(lrs) == sum(p.requires_grad for p in model.parameters())  # every trainable parameter, once
    # The schedule (here: warmup) scales both groups alike.
    build_scheduler(optimizer, cfg.train, total_steps=4)
    assert {round(g["lr"] / g["initial_lr"], 6) for g in optimizer.param_groups} == {0.0}
    with pytest.raises(ConfigError, match="train.head_lr"):
        rm_config(tiny_llama_dir, "x", "out", "train.head_lr=0")
