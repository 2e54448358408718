import math

import pytest
import torch

from alignflow.algorithms import (
    bradley_terry_loss,
    calibration_error,
    dpo_loss,
    preference_metrics,
    reward_centering_loss,
)


def test_bradley_terry_with_and_without_margin():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    # -logsigmoid(1) = log(1 + e^-1) = 0.3132617; -logsigmoid(-1) = log(1 + e) = 1.3132617
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(0.8132617, abs=1e-6)
    # margin 0.5 on the first pair: -logsigmoid(0.5) = 0.4740770
    assert bradley_terry_loss(rc, rr, margin=torch.tensor([0.5, 0.0])).item() == pytest.approx(0.8936693, abs=1e-6)


def test_reward_centering_and_metrics():
    # (1 - 1)^2 = 0 and (2 + 0)^2 = 4: mean 2, times 0.01
    centering = reward_centering_loss(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0]), 0.01)
    assert centering.item() == pytest.approx(0.02)
    m = preference_metrics(torch.tensor([1.0, 2.0, 3.0, 0.0]), torch.tensor([0.0, 3.0, 1.0, 0.0]))
    assert m["accuracy"].item() == pytest.approx(0.625)  # win, loss, win, tie (half)
    assert m["mean_margin"].item() == pytest.approx(0.5)


def test_calibration_error_zero_when_calibrated_large_when_overconfident():
    l3, l9 = math.log(3.0), math.log(9.0)  # sigmoid -> 0.75 and 0.9
    # At confidence 0.75 the model is right 3 times of 4; at 0.9, 9 times of 10.
    d = torch.tensor([l3] * 3 + [-l3] + [l9] * 9 + [-l9])
    assert calibration_error(d, torch.zeros_like(d)).item() == pytest.approx(0.0, abs=1e-6)
    # Always 75% sure and always right: under-confident by 0.25.
    d = torch.full((8,), l3)
    assert calibration_error(d, torch.zeros_like(d)).item() == pytest.approx(0.25, abs=1e-6)
    # Nearly certain but right only half the time.
    d = torch.tensor([10.0] * 5 + [-10.0] * 5)
    assert calibration_error(d, torch.zeros_like(d)).item() > 0.49


@pytest.fixture
def logps():
    # pair 1: chosen log-ratio +1, rejected -1 -> h = 2; pair 2: 0 and +1 -> h = -1
    return dict(
        policy_chosen_logps=torch.tensor([-10.0, -5.0], requires_grad=True),
        policy_rejected_logps=torch.tensor([-12.0, -4.0]),
        ref_chosen_logps=torch.tensor([-11.0, -5.0]),
        ref_rejected_logps=torch.tensor([-11.0, -5.0]),
        beta=0.1,
    )


def test_dpo_sigmoid_hand_values(logps):
    loss, cr, rr = dpo_loss(**logps)
    # mean(log(1 + e^-0.2), log(1 + e^0.1)) = mean(0.5981389, 0.7443967)
    assert loss.item() == pytest.approx(0.6712678, abs=1e-6)
    assert torch.allclose(cr, torch.tensor([0.1, 0.0])) and torch.allclose(rr, torch.tensor([-0.1, 0.1]))
    loss.backward()
    assert (logps["policy_chosen_logps"].grad < 0).all()  # raising chosen log-probs lowers the loss


def test_ipo_hand_values(logps):
    loss, _, _ = dpo_loss(**logps, loss_type="ipo")
    # target 1 / (2 * 0.1) = 5: ((2 - 5)^2 + (-1 - 5)^2) / 2
    assert loss.item() == pytest.approx(22.5)


def test_cdpo_hand_values(logps):
    loss, _, _ = dpo_loss(**logps, loss_type="cdpo", label_smoothing=0.1)
    # 0.9 * log(1+e^-0.2) + 0.1 * log(1+e^0.2) = 0.6181389; 0.9 * log(1+e^0.1) + 0.1 * log(1+e^-0.1) = 0.7343967
    assert loss.item() == pytest.approx((0.6181389 + 0.7343967) / 2, abs=1e-6)
    zero, _, _ = dpo_loss(**logps, loss_type="cdpo", label_smoothing=0.0)
    assert zero.item() == pytest.approx(dpo_loss(**logps)[0].item())


def test_dpo_rejects_misused_options(logps):
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(**logps, loss_type="sigmoid", label_smoothing=0.1)
    with pytest.raises(KeyError, match="cdpo"):
        dpo_loss(**logps, loss_type="kto")
