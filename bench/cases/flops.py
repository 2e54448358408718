"""Model FLOPs of one benchmark run, from what the run's token counter saw (standard library only).

Used by the driver (``bench/run.py``) and tested in ``tests/bench/test_flops.py``. The counter
(``benchlib.Meter``) records, separately for passes with gradients (trained: forward + backward)
and passes without (forward only: reference, generation, values):

* ``tokens``: non-padding tokens through the transformer body;
* ``attention_pairs``: (query, key) pairs of causal attention between real tokens of the same
  sequence, as the lengths ran: a token at position ``p`` of its sequence attends to ``p + 1``
  keys (prompt and earlier generated tokens included when it is decoded from a KV cache);
* ``head_rows``: the non-padding positions at which the LM head (the ``hidden -> vocab`` layer)
  ran. alignflow runs it only where a log-prob or loss is needed; TRL / HF at every position of
  the forward unless they slice (``logits_to_keep``).

Multiply-accumulates (MACs) per unit: a body token costs ``params_body`` (every matmul weight of
the body, the tied embedding excluded), an attention pair ``2 * layers * attention_dim`` (``QK^T``
and ``AV``; ``attention_dim`` = query heads x head size), a head row ``hidden * vocab``. A forward
pass is 2 FLOPs per MAC and a backward pass 4, so a trained unit counts 6 and a forward-only unit 2.
Norms, activations, softmax, the score head of a reward model (``hidden -> 1``), the optimizer and
gradient-checkpointing recompute are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping

FORWARD_FLOPS_PER_MAC = 2
BACKWARD_FLOPS_PER_MAC = 4
PASS_KINDS = ("train", "forward")
COUNT_KEYS = ("tokens", "attention_pairs", "head_rows")


def macs(dims: Mapping[str, int], counts: Mapping[str, float]) -> float:
    """Multiply-accumulates of the work in ``counts`` (any of ``COUNT_KEYS``; missing ones are 0)."""
    return (dims["params_body"] * counts.get("tokens", 0)
            + 2 * dims["layers"] * dims["attention_dim"] * counts.get("attention_pairs", 0)
            + dims["hidden_size"] * dims["vocab_size"] * counts.get("head_rows", 0))


def model_flops(dims: Mapping[str, int], passes: Mapping[str, Mapping[str, float]]) -> float:
    """FLOPs of ``passes`` = ``{"train": counts, "forward": counts}`` (either may be missing).

    ``dims``: ``params_body``, ``layers``, ``attention_dim``, ``hidden_size``, ``vocab_size``.
    """
    unknown = set(passes) - set(PASS_KINDS)
    if unknown:
        raise ValueError(f"unknown pass kind(s) {sorted(unknown)}; expected {PASS_KINDS}")
    trained = macs(dims, passes.get("train", {}))
    forward_only = macs(dims, passes.get("forward", {}))
    return (FORWARD_FLOPS_PER_MAC + BACKWARD_FLOPS_PER_MAC) * trained + FORWARD_FLOPS_PER_MAC * forward_only


def causal_pairs(length: int, past: int = 0) -> int:
    """Attention pairs of ``length`` new tokens after ``past`` cached ones of the same sequence."""
    return sum(past + i + 1 for i in range(length))
