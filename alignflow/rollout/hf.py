"""Batched sampling from a Hugging Face causal LM with its own decoding loop.

Why not ``model.generate``: we need the log-prob of every sampled token under the exact
distribution it was drawn from, per-row EOS/stop-string masks in one fixed layout, and a loop
small enough to read. The loop prefills the prompts once, then feeds one token per step through
the KV cache of the left-padded batch. Positions come from the attention mask (``cumsum - 1``) so
that a prompt's first real token is at position 0 however much padding precedes it.

The prefill packs the prompts padding-free (``alignflow.data.packing``), then lays their keys and
values out left-padded: prompts of mixed lengths no longer pay for the longest one (on HH-RLHF
prompts this halves the prefill). Each engine first checks, once, that the packed prefill
reproduces the padded one for its model, and pads otherwise.

Decoding writes each step's keys and values into buffers allocated once for the whole response
(:class:`PreallocatedLayer`): the default cache concatenates them, which took 18% of a decode step.

The engine samples from the module it was given, not a copy: built on the actor's module, it
always uses the actor's current weights (colocated rollout).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from alignflow.batch import Batch
from alignflow.data.packing import pack_sequences
from alignflow.rollout.base import SamplingParams
from alignflow.rollout.linears import load_full_precision
from alignflow.rollout.sampling import draw_uniforms, process_logits, row_generators, sample_next_token, seed_for

# A character may take up to 4 byte-level tokens; one extra token keeps the stop string off the
# window's first token, whose decoding may differ (e.g. a SentencePiece leading space).
_TOKENS_PER_CHAR = 4


class HFRolloutEngine:
    """Rollout engine over a ``transformers`` causal LM (Llama, GPT-2, ...).

    ``decode`` maps token ids to text; it is only needed for ``stop_strings``. With no
    ``eos_token_ids`` a response ends only at a stop string or ``max_new_tokens``.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        pad_token_id: int,
        eos_token_ids: Sequence[int] = (),
        decode: Callable[[list[int]], str] | None = None,
    ) -> None:
        self.model = model
        self.pad_token_id = int(pad_token_id)
        self.eos_token_ids = tuple(dict.fromkeys(int(i) for i in eos_token_ids))
        self.decode = decode
        self._packs_prompts: bool | None = None  # decided at the first prefill

    @classmethod
    def from_tokenizer(cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> HFRolloutEngine:
        """EOS ids from ``model.generation_config`` and the tokenizer; pad id from the tokenizer (else EOS)."""
        configured = model.generation_config.eos_token_id
        eos_ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
        eos_ids = [i for i in [*eos_ids, tokenizer.eos_token_id] if i is not None]
        if not eos_ids:
            raise ValueError("neither the model's generation_config nor the tokenizer defines an EOS token")
        pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
        return cls(model, pad_token_id, eos_ids, decode=partial(tokenizer.decode, skip_special_tokens=False))

    def update_weights(self, weights: nn.Module | Mapping[str, torch.Tensor]) -> None:
        """Copy ``weights`` into the engine's module; tensors that already share storage are skipped.

        Colocated with the actor (same module), this copies nothing. A copy with packed or int8
        linear layers takes full-precision weights and repacks them (``rollout.linears.load_full_precision``).
        """
        load_full_precision(self.model, weights.state_dict() if isinstance(weights, nn.Module) else weights)

    def generate(self, prompt_ids: list[list[int]], params: SamplingParams,
                 prompt_seeds: list[int] | None = None) -> Batch:
        """Sample ``params.n`` responses per prompt (see ``rollout.base``). Sample ``j`` of prompt
        ``i`` draws from its own generator seeded with ``seed_for(prompt_seeds[i], j)``
        (``prompt_seeds`` default: ``seed_for(params.seed, i)``; no seed at all: torch's global
        RNG), so what a prompt gets does not depend on the batch it is in."""
        params.validate()
        if prompt_seeds is None and params.seed is not None:
            prompt_seeds = [seed_for(params.seed, i) for i in range(len(prompt_ids))]
        if prompt_seeds is not None and len(prompt_seeds) != len(prompt_ids):
            raise ValueError(f"{len(prompt_seeds)} prompt seeds for {len(prompt_ids)} prompts")
        if params.stop_strings and self.decode is None:
            raise ValueError("stop_strings need a decode function (build the engine with from_tokenizer or decode=...)")
        prompts, prompt_mask = self._pad_prompts(prompt_ids)
        started = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                tensors = self._decode(prompts, prompt_mask, params, prompt_seeds)
        finally:
            self.model.train(was_training)
        # Inference tensors cannot be saved for backward; the trainer feeds these to autograd.
        tensors = {key: value.clone() for key, value in tensors.items()}
        return Batch(
            tensors=tensors,
            meta={"prompt_index": [i for i in range(len(prompt_ids)) for _ in range(params.n)]},
            info={
                "generation_time_s": time.perf_counter() - started,
                "generated_tokens": int(tensors["response_mask"].sum()),
                "sampling_params": params,
            },
        )

    def _pad_prompts(self, prompt_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked prompts -> left-padded ids and mask, both (num_prompts, P) on the model's device."""
        if not prompt_ids:
            raise ValueError("generate needs at least one prompt")
        vocab_size = self.model.get_input_embeddings().num_embeddings
        for i, prompt in enumerate(prompt_ids):
            if len(prompt) == 0:
                raise ValueError(f"prompt {i} is empty (0 tokens)")
            if min(prompt) < 0 or max(prompt) >= vocab_size:
                raise ValueError(f"prompt {i} has token ids outside [0, {vocab_size})")
        width = max(len(p) for p in prompt_ids)
        padded = [[self.pad_token_id] * (width - len(p)) + list(p) for p in prompt_ids]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids]
        device = self.model.device
        return torch.tensor(padded, device=device), torch.tensor(mask, device=device)

    def _decode(
        self, prompts: torch.Tensor, prompt_mask: torch.Tensor, params: SamplingParams, prompt_seeds: list[int] | None
    ) -> dict[str, torch.Tensor]:
        """prompts, prompt_mask (num_prompts, P) left-padded -> the tensors listed in ``rollout.base``.

        Each prompt is prefilled once; its KV cache is then repeated for its ``n`` samples.
        """
        next_logits, cache = self._prefill(prompts, prompt_mask)
        next_logits = next_logits.repeat_interleave(params.n, dim=0)
        cache = preallocated(cache, params.n, prompts.shape[1] + params.max_new_tokens)
        prompts, prompt_mask = (
            prompts.repeat_interleave(params.n, dim=0),
            prompt_mask.repeat_interleave(params.n, dim=0),
        )

        batch_size, prompt_len = prompts.shape
        device = prompts.device
        # One buffer for prompt + response ids and mask: the repetition penalty and the attention
        # mask read growing views of it, so nothing is concatenated per step.
        ids = torch.full((batch_size, prompt_len + params.max_new_tokens), self.pad_token_id, device=device)
        mask = torch.zeros_like(ids)
        ids[:, :prompt_len] = prompts
        mask[:, :prompt_len] = prompt_mask
        logprobs = torch.zeros(batch_size, params.max_new_tokens, device=device)
        finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
        has_eos = torch.zeros_like(finished)
        eos_ids = torch.tensor(self.eos_token_ids, dtype=torch.long, device=device)
        generators = None if prompt_seeds is None else row_generators(
            [seed_for(seed, j) for seed in prompt_seeds for j in range(params.n)], device)
        next_position = prompt_mask.sum(-1, keepdim=True)  # (B, 1)
        for step in range(params.max_new_tokens):
            end = prompt_len + step  # buffer column of the token sampled in this step
            processed = process_logits(next_logits, params, ids[:, :end], mask[:, :end])
            uniform = draw_uniforms(generators, batch_size, device) if params.do_sample else None
            token, logprob = sample_next_token(processed, uniform, params.do_sample)
            alive = ~finished
            ids[:, end] = torch.where(alive, token, self.pad_token_id)
            mask[:, end] = alive.long()
            logprobs[:, step] = torch.where(alive, logprob, 0.0)
            hit_eos = alive & torch.isin(token, eos_ids)
            has_eos |= hit_eos
            finished |= hit_eos
            if params.stop_strings:
                finished |= self._completes_stop_string(ids, prompt_len, end, ~finished, params.stop_strings)
            if finished.all() or step + 1 == params.max_new_tokens:
                break
            next_logits = self.model(
                input_ids=ids[:, end : end + 1],
                attention_mask=mask[:, : end + 1],
                position_ids=next_position + step,
                **{cache_argument(self.model): cache},
                use_cache=True,
            ).logits[:, -1]
        response_end = prompt_len + step + 1
        return {
            "prompt_ids": prompts,
            "prompt_mask": prompt_mask,
            "response_ids": ids[:, prompt_len:response_end],
            "response_mask": mask[:, prompt_len:response_end],
            "sampling_logprobs": logprobs[:, : step + 1],
            "has_eos": has_eos,
        }

    def _prefill(self, prompts: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
        """Next-token logits (num_prompts, V) and the KV cache of the left-padded prompts."""
        if self._packs_prompts is None:
            self._packs_prompts = self._packed_prefill_is_exact()
        if self._packs_prompts:
            return self._packed_prefill(prompts, prompt_mask)
        return self._padded_prefill(prompts, prompt_mask)

    def _padded_prefill(self, prompts: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
        output = self.model(
            input_ids=prompts,
            attention_mask=prompt_mask,
            position_ids=(prompt_mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
            logits_to_keep=1,
        )
        return output.logits[:, -1], returned_cache(output)

    def _packed_prefill(self, prompts: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
        """The prefill over padding-free packed rows, its keys and values then laid out left-padded."""
        num_prompts, width = prompts.shape
        lengths = prompt_mask.sum(-1).tolist()
        # Rows as wide as the longest prompt: attention inside a packed row is dense (the block mask
        # does not skip work), so wider rows cost more (8 prompts of 40-150 tokens: 0.89 s against 1.07 s
        # in rows of 1024).
        packed = pack_sequences([row[width - n :].tolist() for row, n in zip(prompts, lengths, strict=True)],
                                width, self.pad_token_id)
        row_width = packed["input_ids"].shape[1]
        segments = packed["segments"].tolist()
        # Flat token indices: where each prompt token sits in the packed rows (source), in the
        # left-padded (num_prompts, width) layout (target), and each prompt's last token.
        source = torch.cat([row * row_width + start + torch.arange(n) for (row, start), n in zip(segments, lengths)])
        target = torch.cat([p * width + width - n + torch.arange(n) for p, n in enumerate(lengths)])
        last = torch.tensor([row * row_width + start + n - 1 for (row, start), n in zip(segments, lengths)])
        columns = torch.unique(last % row_width)  # the output layer runs only where some prompt ends
        # With a cache, transformers does not infer packed sequences from the position resets, so
        # the block-diagonal causal mask is given explicitly (padding forms a block of its own).
        sequence_ids = packed["sequence_ids"]
        causal = torch.ones(row_width, row_width, dtype=torch.bool).tril()
        block_mask = (sequence_ids[:, :, None] == sequence_ids[:, None, :]) & causal
        device = prompts.device
        output = self.model(
            input_ids=packed["input_ids"].to(device),
            attention_mask=block_mask[:, None].to(device),
            position_ids=packed["position_ids"].to(device),
            use_cache=True,
            logits_to_keep=columns.to(device),
        )
        logits = output.logits[last // row_width, torch.searchsorted(columns, last % row_width).to(device)]

        def left_padded(states: torch.Tensor) -> torch.Tensor:  # (rows, heads, row_width, d) -> (P, heads, width, d)
            heads, dim = states.shape[1], states.shape[-1]
            tokens = states.transpose(1, 2).reshape(-1, heads, dim)
            out = tokens.new_zeros(num_prompts * width, heads, dim)
            out[target.to(device)] = tokens[source.to(device)]
            return out.view(num_prompts, width, heads, dim).transpose(1, 2).contiguous()

        layers = [(left_padded(layer.keys), left_padded(layer.values)) for layer in returned_cache(output).layers]
        return logits, DynamicCache(ddp_cache_data=layers)

    def _packed_prefill_is_exact(self) -> bool:
        """Whether the packed prefill reproduces the padded one for this model, checked once on two
        short prompts. It needs SDPA attention (which takes a boolean block mask) and a cache of
        plain :class:`DynamicLayer` s (sliding-window layers cannot be re-laid out token by token)."""
        if getattr(self.model.config, "_attn_implementation", None) != "sdpa":
            return False
        vocab = self.model.get_input_embeddings().num_embeddings
        prompts, mask = self._pad_prompts([[i % vocab for i in range(3, 8)], [i % vocab for i in range(11, 14)]])
        padded_logits, padded_cache = self._padded_prefill(prompts, mask)
        if not isinstance(padded_cache, DynamicCache) or any(type(layer) is not DynamicLayer
                                                             for layer in padded_cache.layers):
            return False
        packed_logits, packed_cache = self._packed_prefill(prompts, mask)
        real = mask.bool()[:, None, :, None]
        # Relative error: the two paths round differently (bf16: ~1e-2), attending across prompts is O(1).
        tolerance = 1e-4 if padded_logits.dtype == torch.float32 else 5e-2

        def close(a: torch.Tensor, b: torch.Tensor) -> bool:
            a, b = a.float(), b.float()
            return bool((a - b).norm() <= tolerance * b.norm())

        return close(packed_logits, padded_logits) and all(
            close(a.keys * real, b.keys * real) and close(a.values * real, b.values * real)
            for a, b in zip(packed_cache.layers, padded_cache.layers, strict=True))

    def _completes_stop_string(
        self, ids: torch.Tensor, prompt_len: int, end: int, candidates: torch.Tensor, stop_strings: tuple[str, ...]
    ) -> torch.Tensor:
        """(B,) bool: the token at column ``end`` completes a stop string, for ``candidates`` rows only.

        Only the last few response tokens are decoded: a stop string completed earlier would
        already have finished the row.
        """
        window = _TOKENS_PER_CHAR * max(len(s) for s in stop_strings) + 1
        tails = ids[:, max(prompt_len, end + 1 - window) : end + 1].tolist()
        hits = [
            check and any(s in self.decode(tail) for s in stop_strings)
            for check, tail in zip(candidates.tolist(), tails, strict=True)
        ]
        return torch.tensor(hits, dtype=torch.bool, device=ids.device)


class PreallocatedLayer(DynamicLayer):
    """A :class:`DynamicLayer` over key/value buffers of a fixed capacity: ``update`` writes the new
    positions in place where the dynamic layer concatenates (a copy of the whole cache per token),
    and ``keys``/``values`` are views of the filled part, so attention reads only real positions."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, repeats: int, capacity: int) -> None:
        """``keys``, ``values`` (B, heads, T, d): the prefilled states, each row repeated ``repeats`` times."""
        super().__init__()
        batch, heads, length, dim = keys.shape
        if length > capacity:
            raise ValueError(f"a cache of {length} positions does not fit a capacity of {capacity}")
        self._buffers = []
        for states in (keys, values):
            buffer = states.new_empty(batch * repeats, heads, capacity, dim)
            buffer.view(batch, repeats, heads, capacity, dim)[:, :, :, :length] = states[:, None]
            self._buffers.append(buffer)
        self.device, self.is_initialized, self._length = keys.device, True, length
        self._set_views()

    def _set_views(self) -> None:
        self.keys, self.values = (buffer[:, :, : self._length] for buffer in self._buffers)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args,
               **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self._length, self._length + key_states.shape[-2]
        if end > self._buffers[0].shape[-2]:
            raise ValueError(f"the KV cache holds {self._buffers[0].shape[-2]} positions; {end} were asked for")
        self._buffers[0][:, :, start:end] = key_states
        self._buffers[1][:, :, start:end] = value_states
        self._length = end
        self._set_views()
        return self.keys, self.values


def preallocated(cache: DynamicCache, repeats: int, capacity: int) -> DynamicCache:
    """``cache`` with every row repeated ``repeats`` times, in :class:`PreallocatedLayer` s of
    ``capacity`` positions; a cache with other layers (e.g. sliding windows) is only repeated."""
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        cache.batch_repeat_interleave(repeats)
        return cache
    out = DynamicCache()
    out.layers = [PreallocatedLayer(layer.keys, layer.values, repeats, capacity) for layer in cache.layers]
    return out


def cache_argument(model: nn.Module) -> str:
    """The KV-cache keyword of ``model.forward``: ``cache`` since transformers 5.25 (``past_key_values``
    then prints a FutureWarning into the user's output), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(output) -> DynamicCache:
    """The KV cache a forward returned, under either name (reading ``past_key_values`` warns in 5.25)."""
    return output["cache"] if "cache" in output else output["past_key_values"]
