"""The vLLM engine's pure pieces, on CPU without vLLM: request mapping, seeds, output assembly,
weight names, bucketing, the bucketed sync (against a fake ``vllm.LLM``) and the config error."""

from types import SimpleNamespace

import pytest
import torch

from alignflow.config import load_config
from alignflow.config.loader import ConfigError
from alignflow.config.rl import RLConfig
from alignflow.rollout.base import SamplingParams
from alignflow.rollout.sampling import seed_for
from alignflow.rollout.vllm import (
    VLLMRolloutEngine,
    assemble_rollout,
    request_seeds,
    vllm_request_kwargs,
    vllm_unavailable_reason,
    weight_buckets,
    weight_names,
)
from alignflow.workers.policy import vllm_engine


def test_sampling_params_map_one_to_one():
    params = SamplingParams(max_new_tokens=12, temperature=0.7, top_k=5, top_p=0.9, repetition_penalty=1.2,
                            stop_strings=("\n\n",), n=4)
    assert vllm_request_kwargs(params, 123, [2, 7]) == {
        "n": 1, "temperature": 0.7, "top_k": 5, "top_p": 0.9, "repetition_penalty": 1.2, "max_tokens": 12,
        "stop": ["\n\n"], "stop_token_ids": [2, 7], "seed": 123, "logprobs": 0, "detokenize": True}


def test_off_settings_and_greedy_use_vllms_spelling():
    kwargs = vllm_request_kwargs(SamplingParams(do_sample=False, top_k=0), None, [2])
    assert (kwargs["temperature"], kwargs["top_k"], kwargs["top_p"]) == (0.0, -1, 1.0)
    assert kwargs["seed"] is None and kwargs["stop"] == [] and kwargs["detokenize"] is False


def test_settings_vllm_lacks_or_bad_values_are_refused():
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        vllm_request_kwargs(SamplingParams(no_repeat_ngram_size=3), 0, [2])
    with pytest.raises(ValueError, match="temperature"):
        vllm_request_kwargs(SamplingParams(temperature=0.0), 0, [2])


def test_each_sample_is_a_request_seeded_like_the_hf_engines_rows():
    params = SamplingParams(n=2)
    assert request_seeds(2, params, [11, 22]) == [seed_for(11, 0), seed_for(11, 1), seed_for(22, 0), seed_for(22, 1)]
    # A prompt's seeds do not depend on the other prompts of its batch.
    assert request_seeds(1, params, [22]) == request_seeds(2, params, [11, 22])[2:]
    assert request_seeds(2, SamplingParams(n=1, seed=5), None) == [seed_for(seed_for(5, 0), 0),
                                                                   seed_for(seed_for(5, 1), 0)]
    assert request_seeds(2, params, None) == [None] * 4
    with pytest.raises(ValueError, match="1 prompt seeds for 2 prompts"):
        request_seeds(2, params, [1])


def completion(tokens, logprobs):
    """A stand-in for vLLM's CompletionOutput: token_ids and one {token: Logprob} dict per step."""
    steps = [{t: SimpleNamespace(logprob=lp), t + 1: SimpleNamespace(logprob=-9.0)} for t, lp in zip(tokens, logprobs)]
    return SimpleNamespace(token_ids=tokens, logprobs=steps)


def test_outputs_are_laid_out_like_the_hf_engines():
    pad, eos = 0, [2, 3]
    rows = [completion([9, 2], [-0.5, -0.25]), completion([4, 4, 4], [-1.0] * 3), completion([3], [-2.0]),
            completion([4, 5], [-0.125, -0.375])]
    out = assemble_rollout([[5, 6, 7], [8]], rows, 2, pad, eos)
    assert out["prompt_ids"].tolist() == [[5, 6, 7], [5, 6, 7], [0, 0, 8], [0, 0, 8]]
    assert out["prompt_mask"].tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 1], [0, 0, 1]]
    assert out["response_ids"].tolist() == [[9, 2, 0], [4, 4, 4], [3, 0, 0], [4, 5, 0]]
    assert out["response_mask"].tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert out["has_eos"].tolist() == [True, False, True, False]
    assert out["sampling_logprobs"].tolist() == [[-0.5, -0.25, 0.0], [-1.0] * 3, [-2.0, 0.0, 0.0],
                                                 [-0.125, -0.375, 0.0]]
    assert out["sampling_logprobs"].dtype == torch.float32 and out["response_ids"].dtype == torch.long


def test_missing_logprobs_are_an_error():
    with pytest.raises(ValueError, match="no log-prob"):
        assemble_rollout([[5]], [SimpleNamespace(token_ids=[4], logprobs=None)], 1, 0, [2])
    with pytest.raises(ValueError, match="3 completions for 2 prompts x n=1"):
        assemble_rollout([[5], [6]], [completion([4], [-1.0])] * 3, 1, 0, [2])


def test_weight_names_are_hf_names_with_a_tied_head_sent_once(llama):
    untied = llama.state_dict()
    assert weight_names(untied) == list(untied)
    llama.lm_head.weight = llama.model.embed_tokens.weight  # tied, as in SmolLM2
    state = llama.state_dict()
    names = weight_names(state)
    # vLLM's Llama stacks q/k/v and gate/up itself: the separate HF names go through unchanged.
    assert names == [n for n in state if n != "lm_head.weight"]
    assert "model.layers.0.self_attn.q_proj.weight" in names and "model.layers.0.mlp.up_proj.weight" in names


def test_buckets_keep_order_and_a_large_tensor_gets_its_own():
    sizes = [("a", 40), ("b", 50), ("c", 20), ("huge", 300), ("d", 100), ("e", 1)]
    assert weight_buckets(sizes, 100) == [["a", "b"], ["c"], ["huge"], ["d"], ["e"]]
    assert weight_buckets(sizes, 10_000) == [["a", "b", "c", "huge", "d", "e"]]
    assert weight_buckets([], 100) == []
    with pytest.raises(ValueError):
        weight_buckets(sizes, 0)


class FakeLLM:
    """Records what the engine asks of ``vllm.LLM``; its worker's model records the loads."""

    def __init__(self):
        self.calls, self.loaded = [], []
        model = SimpleNamespace(load_weights=lambda weights: self.loaded.append(weights))
        self.worker = SimpleNamespace(model_runner=SimpleNamespace(model=model))

    def collective_rpc(self, method, args=()):
        self.calls.append("load")
        return [method(self.worker, *args)]

    def sleep(self, level):
        self.calls.append(f"sleep{level}")

    def wake_up(self, tags):
        self.calls.append(f"wake:{','.join(tags)}")

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")


def test_sync_loads_every_weight_in_buckets_while_the_kv_cache_sleeps(llama):
    model = llama
    llm = FakeLLM()
    engine = VLLMRolloutEngine(llm, 0, [2], dtype=torch.bfloat16, sleep=True, bucket_bytes=20_000)
    engine.update_weights(model)
    loaded = [pair for bucket in llm.loaded for pair in bucket]
    state = model.state_dict()
    assert [name for name, _ in loaded] == list(state)
    assert all(t.dtype == torch.bfloat16 and torch.equal(t, state[n].to(torch.bfloat16)) for n, t in loaded)
    assert len(llm.loaded) > 1 and all(sum(t.numel() * 2 for _, t in bucket) <= 20_000 or len(bucket) == 1
                                       for bucket in llm.loaded)
    assert llm.calls[:2] == ["sleep1", "wake:weights"] and llm.calls[-1] == "reset_prefix_cache"
    assert engine._asleep == ["kv_cache"]


def test_choosing_vllm_without_it_is_a_config_error_naming_what_to_install(tmp_path):
    reason = vllm_unavailable_reason()
    if reason is None:
        pytest.skip("vLLM and a CUDA GPU are here")
    with pytest.raises(ConfigError) as err:
        load_config(RLConfig, None, [f"data.train={tmp_path / 'p.jsonl'}", "reward_function=m:f",
                                     "rollout.engine=vllm"])
    assert str(err.value).endswith(reason)
    assert "alignflow[vllm]" in reason or "CUDA" in reason


@pytest.mark.parametrize(("overrides", "message"), [
    (["rollout.weights=shared"], "rollout.weights=auto"),
    (["model.lora.enabled=true"], "model.lora"),
])
def test_vllm_config_conflicts_are_named(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RLConfig, None, [f"data.train={tmp_path / 'p.jsonl'}", "reward_function=m:f",
                                     "rollout.engine=vllm", *overrides])


def test_a_worker_that_cannot_run_vllm_says_so(tmp_path):
    """With Ray the config is validated on the driver, which may not be where the policy worker runs."""
    if vllm_unavailable_reason() is None:
        pytest.skip("vLLM and a CUDA GPU are here")
    cfg = load_config(RLConfig, None, [f"data.train={tmp_path / 'p.jsonl'}", "reward_function=m:f",
                                       "rollout.engine=vllm", "distributed.backend=ray"])
    with pytest.raises(ConfigError, match="rollout.engine=vllm needs"):
        vllm_engine(None, None, cfg)
