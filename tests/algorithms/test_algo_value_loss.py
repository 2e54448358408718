import math

import pytest
import torch

from alignflow.algorithms import clipped_value_loss, explained_variance


def test_clipped_value_loss_hand_example():
    values = torch.tensor([[1.0, 2.0, 0.0, 3.0]], requires_grad=True)
    old = torch.tensor([[0.5, 2.0, 0.0, 2.5]])
    returns = torch.tensor([[2.0, 1.0, 0.1, 3.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, m = clipped_value_loss(values, old, returns, mask, clip_eps=0.2)
    # t0: max((1-2)^2, (0.7-2)^2) = 1.69 (clipped); t1: 1; t2: 0.01; t3 masked
    assert loss.item() == pytest.approx(0.5 * (1.69 + 1.0 + 0.01) / 3)
    assert m["vf_clip_fraction"].item() == pytest.approx(1 / 3)
    loss.backward()
    # The clipped token gets no gradient; t1: 0.5 * 2 * (2 - 1) / 3.
    assert torch.allclose(values.grad, torch.tensor([[0.0, 1 / 3, -0.1 / 3, 0.0]]))


def test_pessimistic_clip_and_plain_mse():
    values, old, returns = torch.tensor([[3.0]]), torch.tensor([[2.5]]), torch.tensor([[3.0]])
    loss, m = clipped_value_loss(values, old, returns, torch.ones(1, 1), clip_eps=0.2)
    assert loss.item() == pytest.approx(0.5 * 0.09) and m["vf_clip_fraction"].item() == 1.0
    loss, m = clipped_value_loss(values, old, returns, torch.ones(1, 1), clip_eps=None)
    assert loss.item() == 0.0 and m["vf_clip_fraction"].item() == 0.0


def test_explained_variance():
    g = torch.Generator().manual_seed(0)
    returns = torch.randn(3, 5, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    garbage = torch.where(mask.bool(), returns, torch.full_like(returns, 1e3))
    assert explained_variance(garbage, returns, mask).item() == pytest.approx(1.0)
    const = torch.full_like(returns, 0.7)
    assert explained_variance(const, returns, mask).item() == pytest.approx(0.0, abs=1e-6)
    noisy = returns + 0.5 * torch.randn(3, 5, generator=g)
    ev = explained_variance(noisy, returns, mask).item()
    valid = mask.bool()
    expected = 1 - (returns - noisy)[valid].var() / returns[valid].var()
    assert ev == pytest.approx(expected.item(), rel=1e-5)
    assert math.isnan(explained_variance(returns, torch.ones(3, 5), mask).item())
