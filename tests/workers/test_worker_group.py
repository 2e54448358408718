import pytest
import torch

from alignflow.batch import Batch
from alignflow.workers import LocalWorkerGroup, collect, dispatch, reduce_metrics, split_batch
from alignflow.workers.base import dispatch_mode, worker_methods


class Doubler:
    """A toy worker: split methods returning a Batch, metrics or both, and one broadcast."""

    def __init__(self, rank: int = 0) -> None:
        self.rank = rank

    @dispatch("split")
    def double(self, batch: Batch) -> Batch:
        return Batch(tensors={"y": batch["x"] * 2}, meta={"rank": [self.rank] * len(batch)})

    @dispatch("split")
    def stats(self, batch: Batch) -> dict[str, float]:
        return {"sum": float(batch["x"].sum()), "rank": float(self.rank)}

    @dispatch("split")
    def double_with_stats(self, batch: Batch) -> tuple[Batch, dict[str, float]]:
        return self.double(batch), {"loss": float(self.rank), "generated_tokens": float(len(batch))}

    @dispatch("broadcast")
    def whoami(self, suffix: str) -> str:
        return f"rank{self.rank}{suffix}"

    def helper(self) -> None:  # not a worker method: a group must refuse to call it
        pass


def test_bound_methods_route_through_call_and_return_batches():
    group = LocalWorkerGroup(Doubler())
    batch = Batch(tensors={"x": torch.arange(5.0)})
    assert torch.equal(group.double(batch)["y"], torch.arange(5.0) * 2)
    assert torch.equal(group.call("double", batch)["y"], torch.arange(5.0) * 2)
    assert group.whoami("!") == "rank0!"
    assert worker_methods(Doubler()) == ["double", "double_with_stats", "stats", "whoami"]
    assert dispatch_mode(Doubler(), "whoami") == "broadcast"


def test_unknown_or_untagged_method_names_the_callable_ones():
    group = LocalWorkerGroup(Doubler())
    callable_ones = "double, double_with_stats, stats, whoami"
    with pytest.raises(AttributeError, match=f"no worker method 'helper'; callable: {callable_ones}"):
        group.helper()
    with pytest.raises(AttributeError):
        group._private  # noqa: B018 (private names are never forwarded)


def test_split_dispatch_concatenates_in_rank_order_and_averages_metrics():
    """The path a Ray group takes: shard by rank, call each, concat Batches / average metrics."""
    group = LocalWorkerGroup([Doubler(0), Doubler(1)])
    batch = Batch(tensors={"x": torch.arange(5.0)})
    out = group.double(batch)
    assert torch.equal(out["y"], torch.arange(5.0) * 2)  # row order kept
    assert out["rank"] == [0, 0, 0, 1, 1]  # chunk sizes differ by at most one, larger first
    assert group.stats(batch) == {"sum": ((0 + 1 + 2) + (3 + 4)) / 2, "rank": 0.5}  # mean over ranks
    assert group.whoami("?") == "rank0?"  # broadcast: rank 0's answer
    assert [len(s) for s in split_batch(batch, 2)] == [3, 2]
    assert collect(["a", "b"]) == "a"


def test_reduce_metrics_keeps_nan_visible():
    out = reduce_metrics([{"a": 1.0, "b": float("nan")}, {"a": 3.0, "b": 0.0}])
    assert out["a"] == 2.0 and out["b"] != out["b"]


def test_reduce_metrics_sums_token_counts_and_averages_the_rest():
    out = reduce_metrics([{"generated_tokens": 5.0, "loss": 1.0, "tokens_per_s": 10.0},
                          {"generated_tokens": 7.0, "loss": 3.0, "tokens_per_s": 30.0, "only_here": 4.0}])
    assert out == {"generated_tokens": 12.0, "loss": 2.0, "tokens_per_s": 20.0, "only_here": 4.0}


def test_batch_and_metrics_pairs_are_merged_element_by_element():
    """`generate` and `update_on_policy` return (Batch, metrics): the rows concatenate in rank
    order, the metrics reduce (counts summed, the rest averaged)."""
    group = LocalWorkerGroup([Doubler(0), Doubler(1)])
    out, metrics = group.double_with_stats(Batch(tensors={"x": torch.arange(5.0)}))
    assert torch.equal(out["y"], torch.arange(5.0) * 2) and out["rank"] == [0, 0, 0, 1, 1]
    assert metrics == {"loss": 0.5, "generated_tokens": 5.0}
    pair = collect([(Batch(tensors={"x": torch.zeros(2)}), {"a_tokens": 2.0}),
                    (Batch(tensors={"x": torch.ones(1)}), {"a_tokens": 1.0})])
    assert isinstance(pair, tuple) and torch.equal(pair[0]["x"], torch.tensor([0.0, 0.0, 1.0]))
    assert pair[1] == {"a_tokens": 3.0}


def test_reference_split_across_two_workers_equals_one(policy_worker, rollout):
    """Data-parallel reference log-probs (2 ranks, uneven shards) == one worker's, row for row."""
    one = LocalWorkerGroup(policy_worker).compute_ref_logprobs(rollout)["ref_logprobs"]
    two = LocalWorkerGroup([policy_worker, policy_worker]).compute_ref_logprobs(rollout.index(slice(0, 3)))
    torch.testing.assert_close(two["ref_logprobs"], one[:3], rtol=0, atol=1e-6)


def test_generation_split_across_two_workers_equals_one(policy_worker, prompts):
    """Sampling is seeded per (seed, prompt uid, sample): two ranks with uneven shards of the
    prompts sample exactly what one worker does, and the token counts add up."""
    one, one_metrics = LocalWorkerGroup(policy_worker).generate(prompts.index(slice(0, 3)), seed=2)
    two, two_metrics = LocalWorkerGroup([policy_worker, policy_worker]).generate(prompts.index(slice(0, 3)), seed=2)
    assert two["prompt_uid"] == one["prompt_uid"] == [0, 1, 2]
    assert torch.equal(two["response_ids"], one["response_ids"])
    assert two_metrics["generated_tokens"] == one_metrics["generated_tokens"] == float(one["response_mask"].sum())
