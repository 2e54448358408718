import pytest
import torch

from alignflow.batch import Batch


def make_batch(rows: int = 5) -> Batch:
    return Batch(
        tensors={"ids": torch.arange(rows * 3).view(rows, 3), "reward": torch.arange(rows, dtype=torch.float)},
        meta={"source": [f"data.jsonl:{i}" for i in range(rows)]},
        info={"temperature": 0.7},
    )


def test_len_keys_getitem_contains():
    batch = make_batch()
    assert len(batch) == 5
    assert batch.keys() == ["ids", "reward", "source"]
    assert batch["reward"].tolist() == [0, 1, 2, 3, 4]
    assert batch["source"][2] == "data.jsonl:2"
    assert "ids" in batch and "temperature" not in batch
    with pytest.raises(KeyError, match="nope"):
        batch["nope"]


def test_empty_batch_has_length_zero():
    assert len(Batch()) == 0


def test_construction_rejects_mismatched_rows_naming_keys_and_sizes():
    with pytest.raises(ValueError, match=r"'b' has 3 rows but 'a' has 4"):
        Batch(tensors={"a": torch.zeros(4), "b": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match=r"'text' has 2 rows but 'a' has 4"):
        Batch(tensors={"a": torch.zeros(4)}, meta={"text": ["x", "y"]})


def test_construction_rejects_scalars_and_duplicate_keys():
    with pytest.raises(ValueError, match="0-dimensional"):
        Batch(tensors={"a": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="both tensors and meta"):
        Batch(tensors={"a": torch.zeros(2)}, meta={"a": [1, 2]})


def test_setitem_and_update_add_tensors_and_meta():
    batch = make_batch()
    batch["advantage"] = torch.ones(5)
    batch["group"] = [0, 0, 1, 1, 2]
    batch.update(values=torch.zeros(5, 2))
    assert batch.keys() == ["ids", "reward", "advantage", "values", "source", "group"]
    batch["group"] = torch.tensor([0, 0, 1, 1, 2])  # meta -> tensor moves the key
    assert "group" in batch.tensors and "group" not in batch.meta


def test_setitem_rejects_wrong_rows_and_types():
    batch = make_batch()
    with pytest.raises(ValueError, match=r"'advantage' has 4 rows but 'ids' has 5"):
        batch["advantage"] = torch.ones(4)
    with pytest.raises(ValueError, match="'source' has 2 rows"):
        batch.update(source=["a", "b"])
    with pytest.raises(TypeError, match=r"torch\.Tensor or a list"):
        batch["x"] = (1, 2, 3, 4, 5)


def test_replacing_the_only_key_may_change_the_size():
    batch = Batch(tensors={"a": torch.zeros(3)})
    batch["a"] = torch.zeros(7)
    assert len(batch) == 7


def test_select_keeps_only_named_keys_and_info():
    picked = make_batch().select("ids", "source")
    assert picked.keys() == ["ids", "source"]
    assert picked.info == {"temperature": 0.7}
    with pytest.raises(KeyError, match="missing"):
        make_batch().select("ids", "missing")


@pytest.mark.parametrize(
    "idx", [slice(1, 4), [1, 2, 3], torch.tensor([1, 2, 3]), torch.tensor([False, True, True, True, False])]
)
def test_index_by_slice_list_tensor_or_mask(idx):
    picked = make_batch().index(idx)
    assert picked["reward"].tolist() == [1, 2, 3]
    assert picked["ids"][0].tolist() == [3, 4, 5]
    assert picked["source"] == ["data.jsonl:1", "data.jsonl:2", "data.jsonl:3"]
    assert picked.info == {"temperature": 0.7}


def test_index_reorders_and_repeats():
    picked = make_batch().index([4, 0, 0])
    assert picked["reward"].tolist() == [4, 0, 0]
    assert picked["source"] == ["data.jsonl:4", "data.jsonl:0", "data.jsonl:0"]


def test_index_rejects_mask_of_wrong_length():
    with pytest.raises(ValueError, match="bool mask of shape"):
        make_batch().index(torch.tensor([True, False]))


def test_split_last_may_be_smaller():
    parts = make_batch().split(2)
    assert [len(p) for p in parts] == [2, 2, 1]
    assert parts[2]["source"] == ["data.jsonl:4"]
    with pytest.raises(ValueError, match=">= 1"):
        make_batch().split(0)


def test_chunk_sizes_differ_by_at_most_one():
    parts = make_batch(7).chunk(3)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert torch.equal(Batch.concat(parts)["ids"], make_batch(7)["ids"])
    with pytest.raises(ValueError, match="cannot chunk"):
        make_batch(2).chunk(3)


def test_concat_restores_split():
    batch = make_batch()
    joined = Batch.concat(batch.split(2))
    assert torch.equal(joined["ids"], batch["ids"])
    assert joined["source"] == batch["source"]
    assert joined.info == batch.info


def test_concat_requires_same_keys_and_trailing_shapes():
    batch = make_batch()
    with pytest.raises(ValueError, match="batch 1 has keys"):
        Batch.concat([batch, batch.select("ids")])
    wider = Batch(
        tensors={"ids": torch.zeros(2, 4, dtype=torch.long), "reward": torch.zeros(2)}, meta={"source": ["a", "b"]}
    )
    with pytest.raises(ValueError, match="cannot concat 'ids'"):
        Batch.concat([batch, wider])
    with pytest.raises(ValueError, match="at least one"):
        Batch.concat([])


def test_repeat_interleaved_and_tiled():
    batch = make_batch(2)
    interleaved = batch.repeat(3)
    assert interleaved["reward"].tolist() == [0, 0, 0, 1, 1, 1]
    assert interleaved["source"] == ["data.jsonl:0"] * 3 + ["data.jsonl:1"] * 3
    assert interleaved["ids"].shape == (6, 3)
    tiled = batch.repeat(2, interleave=False)
    assert tiled["reward"].tolist() == [0, 1, 0, 1]
    assert tiled["source"] == ["data.jsonl:0", "data.jsonl:1"] * 2
    assert torch.equal(tiled["ids"][2:], batch["ids"])
    with pytest.raises(ValueError, match=">= 1"):
        batch.repeat(0)


def test_union_merges_keys():
    batch = make_batch()
    extra = Batch(tensors={"advantage": torch.ones(5), "reward": batch["reward"].clone()}, info={"time_s": 1.0})
    merged = batch.union(extra)
    assert merged.keys() == ["ids", "reward", "advantage", "source"]
    assert merged.info == {"temperature": 0.7, "time_s": 1.0}


@pytest.mark.parametrize(
    "other",
    [
        Batch(tensors={"reward": torch.ones(5)}),
        Batch(meta={"source": ["x"] * 5}),
        Batch(info={"temperature": 1.0}),
    ],
)
def test_union_rejects_conflicting_values(other):
    with pytest.raises(ValueError, match="differs"):
        make_batch().union(other)


def test_union_rejects_different_sizes():
    with pytest.raises(ValueError, match="5 and 2 rows"):
        make_batch().union(Batch(tensors={"x": torch.zeros(2)}))


def test_shuffle_is_a_seeded_permutation_keeping_rows_together():
    batch = make_batch(10)
    first = batch.shuffle(torch.Generator().manual_seed(0))
    again = batch.shuffle(torch.Generator().manual_seed(0))
    assert torch.equal(first["ids"], again["ids"])
    assert sorted(first["reward"].tolist()) == list(range(10))
    assert first["reward"].tolist() != list(range(10))
    for row, reward in enumerate(first["reward"].long().tolist()):
        assert first["source"][row] == f"data.jsonl:{reward}"
        assert first["ids"][row, 0] == 3 * reward


def test_to_moves_tensors_and_keeps_meta():
    moved = make_batch().to("cpu")
    assert moved["ids"].device.type == "cpu"
    assert moved["source"] == make_batch()["source"]
    assert moved.info == {"temperature": 0.7}
