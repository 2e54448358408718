"""Shared by every case script, in both virtual environments (needs only torch and transformers).

What is shared is exactly what must be measured the same way for alignflow and TRL:

* the command-line flags of a case (``case_args``), the thread count and the offline switches;
* the clock: a global ``torch.optim`` post-step hook stamps the end of every optimizer step of
  whatever trainer runs (or the script marks the end of each RL iteration / generate call);
* the token counter: the transformer body's ``forward`` (``LlamaModel.forward`` for SmolLM2) is
  wrapped at class level, so every forward of every model instance is seen, whichever framework
  calls it. Tokens are the attention-mask ones at the positions computed in that call; a forward
  with gradients on is a training forward, one without (``no_grad`` / ``inference_mode``) is a
  forward-only pass (reference log-probs, generation, values). The same wrapper counts causal
  attention pairs, and a wrapper of ``nn.Linear.forward`` counts the LM head's rows, for the FLOP
  count (``flops.py``);
* the RL reward (a cheap length reward, identical in both) which also counts generated tokens;
* the one JSON line a case prints (``emit``), which the driver collects.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import defaultdict

RESULT_PREFIX = "BENCH_RESULT "

# Offline and quiet before torch / transformers / datasets are imported by the case script.
for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                     "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true", "WANDB_MODE": "disabled",
                     "DISABLE_MLFLOW_INTEGRATION": "TRUE", "HF_HUB_DISABLE_TELEMETRY": "1",
                     "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}.items():
    os.environ.setdefault(_key, _value)


def case_args(description: str) -> argparse.Namespace:
    """The flags every case script takes (the driver passes the same values to both frameworks)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", required=True, help="a Hugging Face model folder")
    p.add_argument("--data", required=True, help="folder written by bench/cases/prepare_data.py")
    p.add_argument("--workdir", required=True, help="scratch folder for outputs (deleted by the driver)")
    p.add_argument("--variant", default="default", help="precision variant: default | fp32 | bf16")
    p.add_argument("--batch", type=int, default=8, help="examples, pairs or prompts per optimizer step")
    p.add_argument("--group", type=int, default=1, help="samples per prompt (RL)")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--warmup", type=int, default=1, help="steps run before the clock starts")
    p.add_argument("--steps", type=int, default=3, help="measured steps")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    set_threads(args.threads)
    return args


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def read_jsonl(path: str, limit: int | None = None) -> list[dict]:
    rows = []
    with open(path) as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def data_file(args: argparse.Namespace, name: str) -> str:
    return os.path.join(args.data, name)


# ----------------------------------------------------------------------------- the meter


class Meter:
    """Token counters and step marks. ``marks[i]`` is a snapshot taken at the end of step i+1.

    ``counts[kind]`` (kind ``train``: a forward with gradients, or ``forward``: without) holds the
    totals over all model instances that ``flops.model_flops`` turns into FLOPs: non-padding body
    ``tokens``, causal ``attention_pairs`` and LM-head ``head_rows`` (see ``bench/cases/flops.py``).
    """

    def __init__(self) -> None:
        self.train_tokens: dict[int, int] = defaultdict(int)  # per model instance (PPO: actor and critic)
        self.forward_tokens = 0  # forward-only passes, all instances together
        self.counts = {kind: {"tokens": 0, "attention_pairs": 0, "head_rows": 0} for kind in ("train", "forward")}
        self.generated_tokens = 0  # counted by the reward function (RL)
        self.scored = 0  # responses scored by the reward function (RL)
        self.marks: list[dict] = []
        self.extra_seconds = 0.0  # work done outside the steps that belongs in them (alignflow's DPO reference)
        self.extra_counts = {"train": {}, "forward": {}}  # that work's counts (added to the window like its time)
        self._optimizer: int | None = None
        self._last_real = None  # the real-token mask (rows, new) of the last body forward, for the head counter

    def snapshot(self) -> dict:
        return {"t": time.perf_counter(), "train": max(self.train_tokens.values(), default=0),
                "forward": self.forward_tokens, "generated": self.generated_tokens, "scored": self.scored,
                "counts": {kind: dict(c) for kind, c in self.counts.items()},
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}

    def mark(self) -> None:
        self.marks.append(self.snapshot())

    # --- hooks ---

    def on_optimizer_step(self, optimizer, args, kwargs) -> None:
        # One optimizer per run in the cases timed this way; ignore any other (a wrapper's step).
        if self._optimizer is None:
            self._optimizer = id(optimizer)
        if id(optimizer) == self._optimizer:
            self.mark()

    def install_optimizer_clock(self) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        register_optimizer_step_post_hook(self.on_optimizer_step)

    def _count_body(self, module, ids, embeds, mask, position_ids, past) -> None:
        """Count one call of the transformer body: its non-padding tokens and causal attention pairs.

        Real tokens: the attention-mask ones at the new positions (a 2-D mask), else the non-pad
        ids (packed rows). Keys per real query: the mask ones up to and including it (a 2-D mask:
        left padding, decoding from a cache), else its position id + 1 (packed rows restart their
        positions per sequence), else its index after the cached length."""
        import torch

        shape = tuple(ids.shape) if ids is not None else tuple(embeds.shape[:2])
        rows, new = shape[0], shape[1]
        pad = getattr(module.config, "pad_token_id", None)
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            real = mask[:, -new:].bool()
            keys = mask.long().cumsum(1)[:, -new:]
        else:
            real = ids != pad if ids is not None and pad is not None else torch.ones(shape, dtype=torch.bool)
            if isinstance(position_ids, torch.Tensor):
                positions = position_ids[0] if position_ids.dim() == 3 else position_ids
                keys = positions[..., -new:].long() + 1
            else:
                cached = past.get_seq_length() if past is not None and hasattr(past, "get_seq_length") else 0
                keys = torch.arange(cached + 1, cached + new + 1).expand(rows, new)
        real = real.to("cpu")
        tokens = int(real.sum())
        pairs = int((keys.to("cpu") * real).sum())
        self._last_real = real
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            self.train_tokens[id(module)] += tokens
            kind = "train"
        else:
            self.forward_tokens += tokens
            kind = "forward"
        self.counts[kind]["tokens"] += tokens
        self.counts[kind]["attention_pairs"] += pairs

    def _count_head(self, hidden) -> None:
        """Count the non-padding positions of one LM-head call (``hidden``: its input, ``(..., d)``).

        A 3-D input covers the last ``T`` columns of the body call before it (all of them, or a
        ``logits_to_keep`` slice), whose real-token mask says which are padding; a 2-D input holds
        gathered positions (alignflow's ``HeadAtPositions``), all real."""
        import torch

        rows = hidden.shape[:-1].numel()
        real = self._last_real
        if hidden.dim() == 3 and real is not None and real.shape[0] == hidden.shape[0] \
                and hidden.shape[1] <= real.shape[1]:
            rows = int(real[:, real.shape[1] - hidden.shape[1]:].sum())
        kind = "train" if torch.is_grad_enabled() and not torch.is_inference_mode_enabled() else "forward"
        self.counts[kind]["head_rows"] += rows

    def _count_flat_head(self, hidden) -> None:
        """Count one call of a fused LM head over flattened positions (``hidden``: ``(N, d)``), as TRL's
        ``fused_lm_head`` runs it: on CPU over every position of the last body call but the final
        one (padding and prompt included; padding is not credited), on GPU only where a label is."""
        import torch

        rows = hidden.shape[0]
        real = self._last_real
        if real is not None and rows == real[:, :-1].numel():
            rows = int(real[:, :-1].sum())
        elif real is not None and rows == real.numel():
            rows = int(real.sum())
        kind = "train" if torch.is_grad_enabled() and not torch.is_inference_mode_enabled() else "forward"
        self.counts[kind]["head_rows"] += rows

    def install_token_counter(self, model_path: str) -> None:
        """Wrap the transformer body class of ``model_path`` (e.g. ``LlamaModel``) to count tokens and
        attention pairs, and ``nn.Linear.forward`` to count the rows of the LM head (the layer from
        ``hidden_size`` to ``vocab_size``). Class-level, so every model instance of either framework is
        seen. The counting runs outside compiled graphs (``torch.compiler.disable``): a fully compiled
        model (TRL's ``torch_compile``) is split at the body's entry and at the head."""
        import torch
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        config = AutoConfig.from_pretrained(model_path)
        body_cls = MODEL_MAPPING[type(config)]
        if getattr(body_cls.forward, "_bench_wrapped", False):
            return
        original = body_cls.forward
        count_body = torch.compiler.disable(self._count_body)
        count_head = torch.compiler.disable(self._count_head)

        def forward(module, *args, **kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
            position_ids = kwargs.get("position_ids", args[2] if len(args) > 2 else None)
            past = kwargs.get("past_key_values", args[3] if len(args) > 3 else None)
            count_body(module, ids, kwargs.get("inputs_embeds"), mask, position_ids, past)
            return original(module, *args, **kwargs)

        forward._bench_wrapped = True  # type: ignore[attr-defined]
        body_cls.forward = forward

        vocab, hidden = config.vocab_size, config.hidden_size
        linear_forward = torch.nn.Linear.forward

        def linear(module, input):
            if module.out_features == vocab and module.in_features == hidden:
                count_head(input)
            return linear_forward(module, input)

        torch.nn.Linear.forward = linear

    def add_extra_counts(self, before: dict, after: dict, share: float) -> None:
        """Add ``share`` of the counts between snapshots ``before`` and ``after`` to the window
        (work done outside the steps that belongs in them, like ``extra_seconds``)."""
        for kind in self.counts:
            for key in self.counts[kind]:
                delta = after["counts"][kind][key] - before["counts"][kind][key]
                self.extra_counts[kind][key] = self.extra_counts[kind].get(key, 0) + share * delta

    # --- the result ---

    def window(self, warmup: int, steps: int) -> dict:
        """What happened between the end of the warm-up and the end of the last measured step.

        ``maxrss_kib``: the process's peak RSS up to the end of the measured steps (loading and
        warm-up included; whatever a framework does after training, such as saving, is not).
        ``flop_counts``: per pass kind, the counts ``flops.model_flops`` takes (all instances).
        """
        if warmup < 1 or len(self.marks) < warmup + steps:
            raise RuntimeError(f"{len(self.marks)} step marks, expected {warmup + steps} "
                               f"({warmup} warm-up (>= 1) + {steps} measured)")
        start, end = self.marks[warmup - 1], self.marks[warmup + steps - 1]
        measured = self.marks[warmup - 1 : warmup + steps]
        flop_counts = {kind: {key: end["counts"][kind][key] - start["counts"][kind][key]
                              + self.extra_counts[kind].get(key, 0) for key in self.counts[kind]}
                       for kind in self.counts}
        return {
            "seconds": end["t"] - start["t"] + self.extra_seconds,
            "tokens": end["train"] - start["train"],
            "forward_tokens": end["forward"] - start["forward"],
            "generated_tokens": end["generated"] - start["generated"],
            "scored": end["scored"] - start["scored"],
            "flop_counts": flop_counts,
            "step_seconds": [b["t"] - a["t"] for a, b in zip(measured, measured[1:])],
            "maxrss_kib": end["maxrss_kib"],
        }


METER = Meter()


def emit(args: argparse.Namespace, *, case: str, framework: str, samples_per_step: int, window: dict,
         settings: dict, tokens_key: str = "tokens", phases: dict | None = None) -> None:
    """Print the one JSON line the driver reads (and a human-readable line before it). ``phases``:
    seconds per phase of one step (alignflow's RL cases), for the driver's time breakdown."""
    result = {
        "case": case, "framework": framework, "variant": args.variant, "threads": args.threads,
        "warmup_steps": args.warmup, "steps": args.steps, "samples": samples_per_step * args.steps,
        **window, "tokens_key": tokens_key, "settings": settings, "phases": phases or {},
    }
    seconds = result["seconds"]
    print(f"[bench] {framework}/{case}/{args.variant}: {args.steps} steps in {seconds:.2f}s, "
          f"{result[tokens_key] / seconds:.1f} tok/s, {result['samples'] / seconds:.2f} samples/s", file=sys.stderr)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- the RL reward


TARGET_CHARS = 200


def _length_score(text: str) -> float:
    return -abs(len(text) - TARGET_CHARS) / TARGET_CHARS


def alignflow_length_reward(prompts, responses, metadata):
    """alignflow reward function (``reward_function: benchlib:alignflow_length_reward``)."""
    METER.generated_tokens += sum(int(n) for n in metadata["response_length"])
    METER.scored += len(responses)
    return [_length_score(r) for r in responses]


def trl_length_reward(completions, completion_ids=None, **kwargs):
    """The same reward for TRL's GRPO / RLOO trainers (conversational completions)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    METER.generated_tokens += sum(len(ids) for ids in completion_ids)
    METER.scored += len(texts)
    return [_length_score(t) for t in texts]
