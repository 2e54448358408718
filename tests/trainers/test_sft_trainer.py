import json

import pytest
import torch
from safetensors.torch import load_file
from torch._dynamo.utils import counters
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignflow.config import SFTConfig, load_config
from alignflow.data.formatting import ChatFormatter
from alignflow.data.tokenize import IGNORE_INDEX, PromptResponseEncoder
from alignflow.models import load_tokenizer
from alignflow.trainers.loop import TrainingError
from alignflow.trainers.sft import collate_sft, train_sft


def sft_config(model_dir, data, out, *overrides):
    return load_config(SFTConfig, None, [
        f"model.name={model_dir}", f"data.train={data}", f"output_dir={out}", "model.dtype=fp32",
        "data.max_length=64", "data.max_prompt_length=32", "data.val_fraction=0.2",
        "train.batch_size=4", "train.micro_batch_size=2", "train.grad_accum=2", "train.lr=3e-3",
        "train.max_steps=12", "train.eval_every=6", "train.log_every=2", "train.warmup_ratio=0.0", *overrides,
    ])


def test_loss_only_on_response_tokens_with_eos(tiny_llama_dir):
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    encoder = PromptResponseEncoder(tokenizer, ChatFormatter(tokenizer), max_length=64, max_prompt_length=32)
    rows = [encoder.encode([{"role": "user", "content": "hello"}], "Paris."),
            encoder.encode([{"role": "user", "content": "a much longer question here"}], "ok")]
    batch = collate_sft(rows, tokenizer.pad_token_id)
    for i, row in enumerate(rows):
        labelled = batch["labels"][i] != IGNORE_INDEX
        assert labelled.sum() == len(row.response_ids)
        assert batch["labels"][i][labelled][-1] == tokenizer.eos_token_id  # the model learns to stop
        assert not labelled[: len(row.prompt_ids)].any()  # prompt masked
        assert batch["attention_mask"][i].sum() == len(row.input_ids)  # padding masked


def test_sft_lowers_validation_loss_and_saves_a_plain_hf_model(tiny_llama_dir, sft_file, tmp_path):
    result = train_sft(sft_config(tiny_llama_dir, sft_file, tmp_path / "run"))
    assert result.metrics["eval_loss"] < result.metrics["initial_eval_loss"] - 0.5
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > ids["input_ids"].shape[1]
    meta = json.loads((result.model_dir / "alignflow.json").read_text())
    assert meta["kind"] == "policy" and meta["metrics"]["steps"] == 12
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "eval"}


def test_gpt2_base_model_with_plain_template(tiny_gpt2_dir, sft_file, tmp_path):
    result = train_sft(sft_config(tiny_gpt2_dir, sft_file, tmp_path / "run", "train.max_steps=4"))
    assert (result.model_dir / "model.safetensors").is_file()


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_llama_dir, sft_file, tmp_path):
    full = train_sft(sft_config(tiny_llama_dir, sft_file, tmp_path / "full"))
    # The interrupted run: 6 steps with a checkpoint, then the same config continues to 12.
    part = tmp_path / "part"
    train_sft(sft_config(tiny_llama_dir, sft_file, part, "train.max_steps=6"))
    # Its schedule was built for 6 steps, so recreate the checkpoint a 12-step run writes at step 6.
    import shutil
    shutil.rmtree(part)
    with pytest.raises(KeyboardInterrupt):
        interrupted_run(tiny_llama_dir, sft_file, part, stop_after=6)
    resumed = train_sft(sft_config(tiny_llama_dir, sft_file, part))
    a = load_file(full.model_dir / "model.safetensors")
    b = load_file(resumed.model_dir / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def interrupted_run(model_dir, data, out, stop_after):
    """Run the 12-step config but stop (like Ctrl-C) right after the checkpoint at ``stop_after``."""
    import alignflow.trainers.loop as loop

    original = loop.save_checkpoint

    def save_then_stop(output_dir, step, **kwargs):
        path = original(output_dir, step, **kwargs)
        if step == stop_after:
            raise KeyboardInterrupt
        return path

    loop.save_checkpoint = save_then_stop
    try:
        train_sft(sft_config(model_dir, data, out, f"train.save_every={stop_after}"))
    finally:
        loop.save_checkpoint = original


def test_nan_loss_stops_with_rows_named_and_state_saved(tiny_llama_dir, sft_file, tmp_path, monkeypatch):
    import alignflow.trainers.sft as sft

    real = sft.labelled_token_nll
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        total, n = real(*args, **kwargs)
        calls["n"] += 1
        return (total * float("nan"), n) if calls["n"] > 8 else (total, n)  # evals + 3 good steps, then NaN

    monkeypatch.setattr(sft, "labelled_token_nll", poisoned)
    with pytest.raises(TrainingError, match=r"non-finite loss .* rows: .*sft\.jsonl:\d+"):
        train_sft(sft_config(tiny_llama_dir, sft_file, tmp_path / "run", "train.eval_every=0"))
    assert list((tmp_path / "run" / "checkpoints").glob("step-*/model/model.safetensors"))


@pytest.mark.parametrize("model_fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_packed_batches_give_the_padded_loss(model_fixture, request):
    from alignflow.models import load_policy
    from alignflow.models.forward import labelled_token_nll, packing_is_exact
    from alignflow.trainers.sft import collate_sft_packed

    cfg = sft_config(request.getfixturevalue(model_fixture), "x.jsonl", "out")
    model, tokenizer = load_policy(cfg.model)
    assert packing_is_exact(model)
    encoder = PromptResponseEncoder(tokenizer, ChatFormatter(tokenizer), max_length=64, max_prompt_length=32)
    rows = [encoder.encode([{"role": "user", "content": q}], a) for q, a in [
        ("hello", "Paris is the capital of France."), ("a much longer question about many things", "ok"),
        ("why", "because"), ("what is two plus two", "four, of course")]]
    padded = collate_sft(rows, tokenizer.pad_token_id)
    packed = collate_sft_packed(rows, tokenizer.pad_token_id, capacity=128)
    assert packed["input_ids"].shape[0] < len(rows) and packed["attention_mask"] is None
    nll_padded, n_padded = labelled_token_nll(model, padded["input_ids"], padded["attention_mask"], padded["labels"])
    nll_packed, n_packed = labelled_token_nll(model, packed["input_ids"], None, packed["labels"],
                                              position_ids=packed["position_ids"])
    assert n_packed == n_padded == sum(len(r.response_ids) for r in rows)
    assert nll_packed.item() == pytest.approx(nll_padded.item(), rel=1e-4)


def test_sft_with_packing_trains(tiny_llama_dir, sft_file, tmp_path):
    result = train_sft(sft_config(tiny_llama_dir, sft_file, tmp_path / "run", "data.packing=true"))
    assert result.metrics["eval_loss"] < result.metrics["initial_eval_loss"] - 0.5


def test_packing_refuses_a_model_that_attends_across_sequences(tiny_llama_dir, sft_file, tmp_path, monkeypatch):
    from alignflow.config import ConfigError

    monkeypatch.setattr("alignflow.models.forward.packing_is_exact", lambda model: False)
    with pytest.raises(ConfigError, match="set data.packing=false"):
        train_sft(sft_config(tiny_llama_dir, sft_file, tmp_path / "run", "data.packing=true"))


def test_compiled_blocks_train_to_the_same_weights(tiny_llama_dir, sft_file, tmp_path):
    # The one test that pays for an inductor compile (~20 s): packed rows of varying width go
    # through the dynamic-shape graph, and the checkpoint keeps the eager parameter names.
    steps = ("train.max_steps=3", "train.eval_every=3")
    eager = train_sft(sft_config(tiny_llama_dir, sft_file, tmp_path / "eager", *steps))
    counters.clear()
    compiled = train_sft(sft_config(tiny_llama_dir, sft_file, tmp_path / "compiled", *steps, "train.compile=true"))
    assert counters["stats"]["unique_graphs"] >= 1  # the blocks did run compiled
    expected, actual = (load_file(r.model_dir / "model.safetensors") for r in (eager, compiled))
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, atol=1e-4, rtol=1e-3, msg=name)
    assert compiled.metrics["eval_loss"] == pytest.approx(eager.metrics["eval_loss"], rel=1e-4)
