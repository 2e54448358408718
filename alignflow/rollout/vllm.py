"""Rollout on vLLM (``rollout.engine: vllm``, CUDA only), behind the same interface as the HF engine.

Written against vLLM's documented API; vLLM cannot be installed on the machines this was written on
(CUDA-only wheels), so only the pure pieces below are tested (``tests/rollout/test_vllm_engine.py``):

* :func:`vllm_request_kwargs`: alignflow's :class:`SamplingParams` -> the ``vllm.SamplingParams`` of
  one request. Every (prompt, sample) pair is its own request (``n=1``) seeded with
  ``seed_for(prompt_seed, j)``, as the HF engine seeds its rows, so a prompt's samples do not depend on
  the batch it is in. They are not the HF engine's samples: vLLM draws with its own sampler, not
  alignflow's inverse-CDF one, and its batched kernels are not bit-identical across batch shapes.
* :func:`weight_names`: the state-dict names vLLM is given. vLLM's ``load_weights`` takes Hugging Face
  checkpoint names and stacks them itself (Llama: ``q_proj`` / ``k_proj`` / ``v_proj`` into
  ``qkv_proj``, ``gate_proj`` / ``up_proj`` into ``gate_up_proj``), so names pass unchanged; only a
  tied head is left out (vLLM skips ``lm_head.`` when embeddings are tied, and sending it would
  gather the matrix twice).
* :func:`weight_buckets`: those tensors in order, cut into buckets of at most ``bucket_bytes``, so a
  sync holds one bucket of gathered weights at a time instead of the whole model.
* :func:`assemble_rollout`: vLLM's completions -> the tensors of ``rollout.base``.

Log-probs: the engine is built with ``logprobs_mode="processed_logprobs"``, so the log-prob vLLM
reports for a sampled token is under the distribution it was drawn from (after penalties,
temperature, top-k, top-p), as ``sampling_logprobs`` requires.

Colocated with the actor on one GPU: the vLLM engine runs in the worker's own process and, with
``sleep=True``, sleeps (level 1: weights to CPU, KV cache freed) after each ``generate``, so training
has the GPU; ``update_weights`` wakes the weights only, ``generate`` wakes the KV cache.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from alignflow.batch import Batch
from alignflow.rollout.base import SamplingParams
from alignflow.rollout.sampling import seed_for

INSTALL_HINT = "pip install 'alignflow[vllm]' on a machine with a CUDA GPU"
DEFAULT_BUCKET_BYTES = 512 * 2**20


def vllm_unavailable_reason() -> str | None:
    """Why ``rollout.engine: vllm`` cannot run in this process (what to install), or None."""
    if importlib.util.find_spec("vllm") is None:
        return f"rollout.engine=vllm needs vLLM, which is not installed: {INSTALL_HINT}, or use rollout.engine=hf"
    if not torch.cuda.is_available():
        return "rollout.engine=vllm needs a CUDA GPU and torch sees none; use rollout.engine=hf on CPUs"
    return None


def vllm_request_kwargs(params: SamplingParams, seed: int | None, eos_token_ids: Sequence[int]) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for one sample of ``params`` seeded with ``seed``.

    Greedy is vLLM's ``temperature=0``; vLLM's "off" for top-k is -1 in every version (0 is not
    accepted by older ones). EOS ids are passed as stop tokens, so a response ends at the first
    one as in the HF engine. ``logprobs=0``: only the sampled token's log-prob.
    """
    params.validate()
    if params.no_repeat_ngram_size:
        raise ValueError("vLLM has no no_repeat_ngram_size; use rollout.engine=hf for it")
    return {
        "n": 1,
        "temperature": params.temperature if params.do_sample else 0.0,
        "top_k": params.top_k or -1,
        "top_p": params.top_p,
        "repetition_penalty": params.repetition_penalty,
        "max_tokens": params.max_new_tokens,
        "stop": list(params.stop_strings),
        "stop_token_ids": list(eos_token_ids),
        "seed": seed,
        "logprobs": 0,
        "detokenize": bool(params.stop_strings),  # text is only needed to find stop strings
    }


def request_seeds(num_prompts: int, params: SamplingParams, prompt_seeds: Sequence[int] | None) -> list[int | None]:
    """One seed per request, prompt-major: ``seed_for(prompt_seeds[i], j)`` for sample ``j`` of prompt
    ``i`` (the HF engine's row seeds); ``prompt_seeds`` default ``seed_for(params.seed, i)``; no seed
    at all: None (vLLM's own RNG)."""
    if prompt_seeds is None and params.seed is not None:
        prompt_seeds = [seed_for(params.seed, i) for i in range(num_prompts)]
    if prompt_seeds is None:
        return [None] * (num_prompts * params.n)
    if len(prompt_seeds) != num_prompts:
        raise ValueError(f"{len(prompt_seeds)} prompt seeds for {num_prompts} prompts")
    return [seed_for(seed, j) for seed in prompt_seeds for j in range(params.n)]


def assemble_rollout(prompt_ids: Sequence[Sequence[int]], completions: Sequence[Any], n: int, pad_token_id: int,
                     eos_token_ids: Sequence[int]) -> dict[str, torch.Tensor]:
    """``completions`` (one per row, prompt-major: vLLM ``CompletionOutput`` s with ``token_ids`` and
    ``logprobs``, a list of ``{token_id: Logprob}`` per step) -> the tensors of ``rollout.base``."""
    if len(completions) != len(prompt_ids) * n:
        raise ValueError(f"{len(completions)} completions for {len(prompt_ids)} prompts x n={n}")
    prompts = [list(p) for p in prompt_ids for _ in range(n)]
    width = max(len(p) for p in prompts)
    responses = [list(c.token_ids) for c in completions]
    length = max(1, max(len(r) for r in responses))
    logprobs = torch.zeros(len(responses), length)
    for row, (tokens, completion) in enumerate(zip(responses, completions, strict=True)):
        if completion.logprobs is None or len(completion.logprobs) != len(tokens):
            raise ValueError(f"row {row}: vLLM returned no log-prob for some sampled tokens (logprobs=0 was asked)")
        logprobs[row, : len(tokens)] = torch.tensor([step[t].logprob for t, step in zip(tokens, completion.logprobs)])
    eos = set(eos_token_ids)
    return {
        "prompt_ids": torch.tensor([[pad_token_id] * (width - len(p)) + p for p in prompts]),
        "prompt_mask": torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts]),
        "response_ids": torch.tensor([r + [pad_token_id] * (length - len(r)) for r in responses]),
        "response_mask": torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in responses]),
        "sampling_logprobs": logprobs,
        "has_eos": torch.tensor([bool(r) and r[-1] in eos for r in responses]),
    }


def weight_names(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """The names to send vLLM, in state-dict order: Hugging Face names unchanged, each tensor once
    (a tied head shares the embedding's storage and is left out; FSDP2 shards compare locally)."""
    seen, names = set(), []
    for name, tensor in state_dict.items():
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        key = (local.device, local.untyped_storage().data_ptr()) if local.numel() else name
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


def weight_buckets(sizes: Iterable[tuple[str, int]], bucket_bytes: int) -> list[list[str]]:
    """(name, bytes) pairs -> consecutive buckets of at most ``bucket_bytes`` (order kept); a tensor
    larger than a bucket gets one of its own."""
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be >= 1, got {bucket_bytes}")
    buckets: list[list[str]] = []
    filled = bucket_bytes  # a fresh bucket is opened by the first tensor
    for name, size in sizes:
        if filled + size > bucket_bytes:
            buckets.append([])
            filled = 0
        buckets[-1].append(name)
        filled += size
    return buckets


def _load_into_worker(worker: Any, weights: list[tuple[str, torch.Tensor]]) -> None:
    """Runs inside vLLM's worker (``LLM.collective_rpc``): its model stacks the HF names itself."""
    worker.model_runner.model.load_weights(weights=weights)


class VLLMRolloutEngine:
    """A ``vllm.LLM`` behind the :class:`~alignflow.rollout.base.RolloutEngine` interface."""

    def __init__(self, llm: Any, pad_token_id: int, eos_token_ids: Sequence[int], *,
                 dtype: torch.dtype = torch.bfloat16, sleep: bool = False,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        self.llm, self.dtype, self.sleep, self.bucket_bytes = llm, dtype, sleep, bucket_bytes
        self.pad_token_id = int(pad_token_id)
        self.eos_token_ids = tuple(dict.fromkeys(int(i) for i in eos_token_ids))
        self._asleep: list[str] = []
        if sleep:
            self._sleep()

    @classmethod
    def from_folder(cls, model_dir: str, pad_token_id: int, eos_token_ids: Sequence[int], *, dtype: str,
                    max_model_len: int, gpu_memory_utilization: float, sleep: bool) -> VLLMRolloutEngine:
        """An engine over the Hugging Face folder ``model_dir``, in this process (its weights are then
        loaded by reference, not serialized). Under ``torch.distributed`` (several ranks) each rank
        runs its own engine on its own GPU through vLLM's ``external_launcher``, as TRL and verl do."""
        reason = vllm_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine core in this process
        from vllm import LLM

        launcher = {"distributed_executor_backend": "external_launcher"} if torch.distributed.is_initialized() else {}
        llm = LLM(model=model_dir, dtype=dtype, max_model_len=max_model_len,
                  gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=sleep,
                  logprobs_mode="processed_logprobs", **launcher)
        return cls(llm, pad_token_id, eos_token_ids, dtype=getattr(torch, dtype), sleep=sleep)

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams,
                 prompt_seeds: list[int] | None = None) -> Batch:
        """Sample ``params.n`` responses per prompt (see ``rollout.base``), one seeded request each."""
        from vllm import SamplingParams as VLLMSamplingParams

        if not prompt_ids or any(len(p) == 0 for p in prompt_ids):
            raise ValueError("generate needs at least one prompt, and no prompt may be empty")
        requests = [VLLMSamplingParams(**vllm_request_kwargs(params, seed, self.eos_token_ids))
                    for seed in request_seeds(len(prompt_ids), params, prompt_seeds)]
        prompts = [{"prompt_token_ids": list(p)} for p in prompt_ids for _ in range(params.n)]
        started = time.perf_counter()
        self._wake(["weights", "kv_cache"])
        outputs = self.llm.generate(prompts, sampling_params=requests, use_tqdm=False)
        if self.sleep:
            self._sleep()
        tensors = assemble_rollout(prompt_ids, [out.outputs[0] for out in outputs], params.n, self.pad_token_id,
                                   self.eos_token_ids)
        return Batch(
            tensors=tensors,
            meta={"prompt_index": [i for i in range(len(prompt_ids)) for _ in range(params.n)]},
            info={"generation_time_s": time.perf_counter() - started,
                  "generated_tokens": int(tensors["response_mask"].sum()), "sampling_params": params},
        )

    def update_weights(self, weights: nn.Module | Mapping[str, torch.Tensor]) -> None:
        """Load ``weights`` (a module or its state dict, FSDP2 shards allowed) bucket by bucket: each
        tensor is all-gathered when sharded (a collective: every rank calls this, in the same order),
        cast to the engine's dtype where it lies, and handed to vLLM's ``load_weights`` (its weight
        loaders copy across devices)."""
        source = weights.state_dict() if isinstance(weights, nn.Module) else weights
        names = weight_names(source)
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        self._wake(["weights"])  # the KV cache stays freed while the weights load
        for bucket in weight_buckets(((n, source[n].numel() * itemsize) for n in names), self.bucket_bytes):
            tensors = [(n, _full(source[n]).to(self.dtype)) for n in bucket]
            self.llm.collective_rpc(_load_into_worker, args=(tensors,))
            del tensors
        # Cached prefixes hold keys and values of the old weights.
        self.llm.reset_prefix_cache()

    def _sleep(self) -> None:
        self.llm.sleep(level=1)
        self._asleep = ["weights", "kv_cache"]

    def _wake(self, tags: list[str]) -> None:
        waking = [t for t in tags if t in self._asleep]
        if waking:
            self.llm.wake_up(tags=waking)
            self._asleep = [t for t in self._asleep if t not in waking]


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: an FSDP2 shard (DTensor) is all-gathered."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


# Of the GPU's memory, what vLLM may take (weights, activations, KV cache); the rest is the actor's.
GPU_MEMORY_FRACTION = 0.35


def engine_for_policy(policy: nn.Module, tokenizer: Any, *, dtype: str, max_model_len: int) -> VLLMRolloutEngine:
    """A sleeping vLLM engine over ``policy``'s current weights, written once as a Hugging Face
    folder (vLLM loads folders; the policy may have come from a GGUF file or an alias)."""
    from alignflow.rollout.hf import HFRolloutEngine

    ids = HFRolloutEngine.from_tokenizer(policy, tokenizer)  # the same EOS and pad ids as the HF engine
    folder = tempfile.TemporaryDirectory(prefix="alignflow-vllm-")
    policy.save_pretrained(folder.name)
    tokenizer.save_pretrained(folder.name)
    engine = VLLMRolloutEngine.from_folder(folder.name, ids.pad_token_id, ids.eos_token_ids, dtype=dtype,
                                           max_model_len=max_model_len,
                                           gpu_memory_utilization=GPU_MEMORY_FRACTION, sleep=True)
    engine.folder = folder  # removed with the engine
    return engine
