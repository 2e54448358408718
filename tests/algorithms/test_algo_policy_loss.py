import math

import pytest
import torch

from alignflow.algorithms import aggregate_loss, get_policy_loss

ppo = get_policy_loss("ppo_clip")


def _run(ratios, adv, mask=None, **kw):
    old = torch.zeros(1, len(ratios))
    logp = torch.tensor([ratios]).log().requires_grad_(True)
    adv = torch.tensor([adv])
    mask = torch.ones_like(adv) if mask is None else torch.tensor([mask])
    loss, metrics = ppo(logprobs=logp, old_logprobs=old, advantages=adv, response_mask=mask, **kw)
    loss.backward()
    return loss, metrics, logp.grad


def test_zero_advantage_gives_zero_gradient_and_ratio_one_gives_plain_policy_gradient():
    g = torch.Generator().manual_seed(0)
    old = torch.randn(3, 5, generator=g)
    mask = torch.ones(3, 5)
    logp = old.clone().requires_grad_(True)  # ratio exactly 1
    loss, m = ppo(logprobs=logp, old_logprobs=old, advantages=torch.zeros(3, 5), response_mask=mask)
    loss.backward()
    assert loss.item() == 0 and torch.equal(logp.grad, torch.zeros(3, 5))
    assert m["ratio_mean"].item() == pytest.approx(1.0) and m["approx_kl"].item() == pytest.approx(0.0)
    # Nonzero advantages at ratio 1: no clipping, d loss / d logp = -A / n_tokens (REINFORCE).
    adv = torch.randn(3, 5, generator=g)
    logp = old.clone().requires_grad_(True)
    loss, m = ppo(logprobs=logp, old_logprobs=old, advantages=adv, response_mask=mask)
    loss.backward()
    assert torch.allclose(logp.grad, -adv / 15) and m["clip_fraction"].item() == 0.0


def test_clip_fraction_loss_and_gradients_on_constructed_ratios():
    ratios = [0.5, 0.5, 1.0, 1.5, 1.5, 1.1]
    adv = [1.0, -1.0, 1.0, 1.0, -1.0, -1.0]
    # per-token losses: -0.5, clipped 0.8, -1.0, clipped -1.2, 1.5, 1.1
    loss, m, grad = _run(ratios, adv)
    assert loss.item() == pytest.approx((-0.5 + 0.8 - 1.0 - 1.2 + 1.5 + 1.1) / 6)
    assert m["clip_fraction"].item() == pytest.approx(2 / 6)
    # Clipped tokens get no gradient; the others get -A * r / n.
    expected = torch.tensor([[-0.5, 0.0, -1.0, 0.0, 1.5, 1.1]]) / 6
    assert torch.allclose(grad, expected)
    # The mask removes the second (clipped) token from everything.
    _, m, _ = _run(ratios, adv, mask=[1, 0, 1, 1, 1, 1])
    assert m["clip_fraction"].item() == pytest.approx(1 / 5)
    assert m["ratio_mean"].item() == pytest.approx((0.5 + 1.0 + 1.5 + 1.5 + 1.1) / 5)


def test_clip_higher_is_asymmetric():
    # r = 1.25 with A > 0: clipped by a symmetric 0.2, free under clip_high = 0.28.
    loss_sym, m_sym, _ = _run([1.25], [1.0], clip_low=0.2)
    loss_dapo, m_dapo, grad = _run([1.25], [1.0], clip_low=0.2, clip_high=0.28)
    assert loss_sym.item() == pytest.approx(-1.2) and m_sym["clip_fraction"].item() == 1.0
    assert loss_dapo.item() == pytest.approx(-1.25) and m_dapo["clip_fraction"].item() == 0.0
    assert grad.item() == pytest.approx(-1.25)
    # r = 1.3 is clipped at 1.28; the low side still clips at 0.8.
    assert _run([1.3], [1.0], clip_low=0.2, clip_high=0.28)[0].item() == pytest.approx(-1.28)
    assert _run([0.7], [-1.0], clip_low=0.2, clip_high=0.28)[0].item() == pytest.approx(0.8)
    assert _run([0.7], [-1.0], clip_low=0.1, clip_high=0.28)[0].item() == pytest.approx(0.9)


def test_dual_clip_bounds_negative_advantage_tokens():
    loss, m, grad = _run([5.0, 5.0], [-1.0, 1.0], dual_clip=3.0)
    # A < 0: min(max(5, 1.2), 3) = 3 with no gradient; A > 0: -1.2 (ordinary clip, no gradient).
    assert loss.item() == pytest.approx((3.0 - 1.2) / 2)
    assert m["dual_clip_fraction"].item() == pytest.approx(0.5)
    assert torch.equal(grad, torch.zeros(1, 2))
    loss_plain, _, _ = _run([5.0, 5.0], [-1.0, 1.0])
    assert loss_plain.item() == pytest.approx((5.0 - 1.2) / 2)
    with pytest.raises(ValueError):
        _run([1.0], [1.0], dual_clip=0.5)


def test_approx_kl_is_k3_of_the_ratio():
    _, m, _ = _run([2.0, 0.5], [0.0, 0.0])
    # (r - 1) - log r: (1 - ln 2) + (-0.5 + ln 2) = 0.5, mean 0.25
    assert m["approx_kl"].item() == pytest.approx(0.25)
    assert m["ratio_mean"].item() == pytest.approx(1.25)
    assert all(v.grad_fn is None for v in m.values())


def test_aggregation_modes_hand_example():
    loss = torch.tensor([[1.0, 2.0, 3.0, 100.0], [5.0, 6.0, 100.0, 100.0], [100.0] * 4])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    assert aggregate_loss(loss[:2], mask[:2], "token-mean").item() == pytest.approx(17 / 5)
    assert aggregate_loss(loss[:2], mask[:2], "seq-mean-token-sum").item() == pytest.approx((6 + 11) / 2)
    assert aggregate_loss(loss[:2], mask[:2], "seq-mean-token-mean").item() == pytest.approx((2 + 5.5) / 2)
    assert aggregate_loss(loss[:2], mask[:2], "seq-mean-token-sum-norm").item() == pytest.approx(17 / 2 / 4)
    assert aggregate_loss(loss[:2], mask[:2], "seq-mean-token-sum-norm", norm_const=10).item() == pytest.approx(0.85)
    # With an empty third sequence: token-mean unchanged, per-sequence means skip it, sums count it.
    assert aggregate_loss(loss, mask, "token-mean").item() == pytest.approx(17 / 5)
    assert aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx(3.75)
    assert aggregate_loss(loss, mask, "seq-mean-token-sum").item() == pytest.approx(17 / 3)
    with pytest.raises(KeyError, match="token-mean"):
        aggregate_loss(loss, mask, "mean")


def test_policy_loss_uses_the_requested_aggregation():
    logp = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    tok, _ = ppo(logprobs=logp, old_logprobs=torch.zeros(2, 3), advantages=adv, response_mask=mask)
    seq, _ = ppo(logprobs=logp, old_logprobs=torch.zeros(2, 3), advantages=adv, response_mask=mask,
                 loss_agg_mode="seq-mean-token-mean")
    assert tok.item() == pytest.approx(-5 / 4) and seq.item() == pytest.approx(-(1 + 2) / 2)
    assert math.isfinite(tok.item())
