import torch

from alignflow.data.packing import first_fit_decreasing, pack_sequences


def test_first_fit_decreasing_fills_bins_longest_first():
    assert first_fit_decreasing([5, 3, 4, 2, 6], capacity=8) == [[4, 3], [0, 1], [2]]
    assert first_fit_decreasing([10, 1], capacity=8) == [[0], [1]]  # too long: a bin of its own


def test_pack_sequences_restarts_positions_and_records_segments():
    packed = pack_sequences([[1, 2, 3], [4, 5], [6, 7, 8, 9]], capacity=6, pad_token_id=0)
    # bins: [seq 2 (4 tokens), seq 1 (2 tokens)], [seq 0 (3 tokens) + 3 padding]
    assert packed["input_ids"].tolist() == [[6, 7, 8, 9, 4, 5], [1, 2, 3, 0, 0, 0]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 1, 2]]
    assert packed["segments"].tolist() == [[1, 0], [0, 4], [0, 0]]
    for seq, (row, start) in zip([[1, 2, 3], [4, 5], [6, 7, 8, 9]], packed["segments"].tolist()):
        assert packed["input_ids"][row, start : start + len(seq)].tolist() == seq
    assert packed["input_ids"].dtype == torch.long
