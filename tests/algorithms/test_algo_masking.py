import torch

from alignflow.algorithms import masked_mean, masked_sum, masked_var, masked_whiten


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g)
    mask = torch.tensor(
        [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 1, 0]]
    )
    return x, mask


def test_statistics_use_only_valid_positions_even_with_nan_padding():
    x, mask = _data()
    garbage = x.clone()
    garbage[mask == 0] = float("nan")
    garbage[0, 0] = x[0, 0]
    valid = x[mask.bool()]
    assert torch.allclose(masked_sum(garbage, mask), valid.sum())
    assert torch.allclose(masked_mean(garbage, mask), valid.mean())
    assert torch.allclose(masked_var(garbage, mask), valid.var(unbiased=True))
    assert torch.allclose(masked_var(garbage, mask, unbiased=False), valid.var(unbiased=False))


def test_per_row_mean_and_empty_row_gives_zero_not_nan():
    x, mask = _data()
    mask = mask.clone()
    mask[2] = 0
    rows = masked_mean(x, mask, dim=-1)
    assert torch.allclose(rows[1], x[1, :3].mean())
    assert torch.allclose(rows[3], x[3, [1, 2, 4]].mean())
    assert rows[2] == 0 and torch.isfinite(rows).all()
    var_rows = masked_var(x, mask, dim=-1)
    assert torch.allclose(var_rows[1], x[1, :3].var())


def test_whiten_ignores_masked_values_and_normalises_valid_ones():
    x, mask = _data()
    out = masked_whiten(x, mask)
    # Changing what sits in padded positions must not change anything.
    perturbed = x.clone()
    perturbed[mask == 0] = 1e6
    assert torch.equal(out, masked_whiten(perturbed, mask))
    assert (out[mask == 0] == 0).all()
    valid = out[mask.bool()]
    assert abs(valid.mean().item()) < 1e-6
    assert abs(valid.var(unbiased=True).item() - 1.0) < 1e-5


def test_whiten_without_shifting_keeps_the_mean():
    x, mask = _data()
    x = x + 3.0
    out = masked_whiten(x, mask, shift_mean=False)
    assert torch.allclose(out[mask.bool()].mean(), x[mask.bool()].mean(), atol=1e-6)
    assert abs(out[mask.bool()].var().item() - 1.0) < 1e-5
    assert (out[mask == 0] == 0).all()
