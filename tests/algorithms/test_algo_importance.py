"""Truncated importance sampling weights (rollout.is_cap)."""

import math

import pytest
import torch

from alignflow.algorithms import ppo_clip_loss, truncated_is_weights


def test_weights_are_the_capped_ratio_on_response_tokens_and_zero_on_padding():
    old = torch.tensor([[math.log(0.5), math.log(0.9), math.log(0.2)], [math.log(0.3), 0.0, 0.0]])
    sampled = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.4)], [math.log(0.01), 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    weights, stats = truncated_is_weights(old, sampled, mask, cap=2.0)
    # ratios 1, 3 -> 2 (capped), 0.5; 30 -> 2 (capped); padding 0
    torch.testing.assert_close(weights, torch.tensor([[1.0, 2.0, 0.5], [2.0, 0.0, 0.0]]))
    assert stats["capped_fraction"].item() == pytest.approx(0.5)
    assert stats["weight_mean"].item() == pytest.approx((1 + 2 + 0.5 + 2) / 4)
    assert not weights.requires_grad


def test_no_cap_is_a_no_op_and_a_cap_below_one_is_refused():
    old, sampled = torch.randn(2, 4), torch.randn(2, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    weights, stats = truncated_is_weights(old, sampled, mask, None)
    assert torch.equal(weights, mask.float()) and stats == {}
    with pytest.raises(ValueError, match=">= 1"):
        truncated_is_weights(old, sampled, mask, 0.5)


def test_a_huge_gap_stays_finite():
    weights, stats = truncated_is_weights(torch.tensor([[0.0]]), torch.tensor([[-1e4]]), torch.ones(1, 1), 3.0)
    assert weights.item() == pytest.approx(3.0) and stats["capped_fraction"] == 1


def test_is_weights_scale_each_tokens_policy_loss_before_aggregation():
    torch.manual_seed(0)
    logprobs, old, adv = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3), torch.randn(2, 3)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    weights = torch.tensor([[2.0, 0.5, 0.0], [1.0, 1.5, 0.25]])
    common = dict(logprobs=logprobs, old_logprobs=old, advantages=adv, response_mask=mask)
    loss, _ = ppo_clip_loss(**common, is_weights=weights, loss_agg_mode="seq-mean-token-sum")
    ratio = (logprobs - old).exp()
    per_token = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.2)) * weights * mask
    torch.testing.assert_close(loss, per_token.sum(-1).mean())
    ones, _ = ppo_clip_loss(**common, is_weights=torch.ones(2, 3))
    torch.testing.assert_close(ones, ppo_clip_loss(**common)[0], rtol=0, atol=0)
