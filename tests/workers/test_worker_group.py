import pytest
import torch

from alignflow.batch import Batch
from alignflow.workers import LocalWorkerGroup, ReferenceWorker, collect, dispatch, reduce_metrics, split_batch
from alignflow.workers.base import dispatch_mode, worker_methods


class Doubler:
    """A toy worker: one split method returning a Batch, one returning metrics, one broadcast."""

    def __init__(self, rank: int = 0) -> None:
        self.rank = rank

    @dispatch("split")
    def double(self, batch: Batch) -> Batch:
        return Batch(tensors={"y": batch["x"] * 2}, meta={"rank": [self.rank] * len(batch)})

    @dispatch("split")
    def stats(self, batch: Batch) -> dict[str, float]:
        return {"sum": float(batch["x"].sum()), "rank": float(self.rank)}

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
    assert worker_methods(Doubler()) == ["double", "stats", "whoami"]
    assert dispatch_mode(Doubler(), "whoami") == "broadcast"


def test_unknown_or_untagged_method_names_the_callable_ones():
    group = LocalWorkerGroup(Doubler())
    with pytest.raises(AttributeError, match="no worker method 'helper'; callable: double, stats, whoami"):
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


def test_reference_split_across_two_workers_equals_one(policy, rollout):
    """Data-parallel reference log-probs (2 ranks, uneven shards) == one worker's, row for row."""
    model, _ = policy
    worker = ReferenceWorker.from_policy(model, temperature=0.7)
    one = LocalWorkerGroup(worker).compute_ref_logprobs(rollout)["ref_logprobs"]
    two = LocalWorkerGroup([worker, worker]).compute_ref_logprobs(rollout.index(slice(0, 3)))["ref_logprobs"]
    torch.testing.assert_close(two, one[:3], rtol=0, atol=1e-6)
