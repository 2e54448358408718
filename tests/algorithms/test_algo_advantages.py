import math

import pytest
import torch

from alignflow.algorithms import ADVANTAGE_ESTIMATORS, get_advantage_estimator, masked_whiten


def _call(name, **kw):
    base = dict(values=None, group_ids=None, gamma=1.0, lam=1.0)
    base.update(kw)
    return get_advantage_estimator(name)(**base)


# ----------------------------------------------------------------------------- GAE


def _reference_gae(rewards, values, mask, gamma, lam):
    """Plain Python loop over each row's valid positions."""
    adv = [[0.0] * len(r) for r in rewards]
    ret = [[0.0] * len(r) for r in rewards]
    for b in range(len(rewards)):
        idx = [t for t in range(len(rewards[b])) if mask[b][t]]
        last = 0.0
        for k in reversed(range(len(idx))):
            t = idx[k]
            next_v = values[b][idx[k + 1]] if k + 1 < len(idx) else 0.0
            delta = rewards[b][t] + gamma * next_v - values[b][t]
            last = delta + gamma * lam * last
            adv[b][t] = last
            ret[b][t] = last + values[b][t]
    return torch.tensor(adv, dtype=torch.float64), torch.tensor(ret, dtype=torch.float64)


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 0.5), (0.99, 1.0)])
def test_gae_matches_reference_loop_with_varied_lengths(gamma, lam):
    g = torch.Generator().manual_seed(0)
    B, T = 5, 9
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.tensor([9, 1, 4, 7, 3])
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    mask[4] = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 0])  # holes too (multi-turn masks)
    ref_adv, ref_ret = _reference_gae(rewards.tolist(), values.tolist(), mask.tolist(), gamma, lam)
    adv, ret = _call("gae", token_rewards=rewards, values=values, response_mask=mask,
                     gamma=gamma, lam=lam, whiten_advantages=False)
    assert torch.allclose(adv, ref_adv) and torch.allclose(ret, ref_ret)
    white, ret2 = _call("gae", token_rewards=rewards, values=values, response_mask=mask, gamma=gamma, lam=lam)
    assert torch.allclose(white, masked_whiten(ref_adv, mask)) and torch.allclose(ret2, ref_ret)
    assert (white[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()


def test_gae_hand_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 99.0]])  # last position is padding
    mask = torch.tensor([[1, 1, 1, 0]])
    # gamma=0.9, lam=0.5: delta = [0.9*0.6-0.5, 0.9*0.7-0.6, 1-0.7] = [0.04, 0.03, 0.3]
    # A2 = 0.3; A1 = 0.03 + 0.45*0.3 = 0.165; A0 = 0.04 + 0.45*0.165 = 0.11425
    adv, ret = _call("gae", token_rewards=rewards, values=values, response_mask=mask,
                     gamma=0.9, lam=0.5, whiten_advantages=False)
    assert torch.allclose(adv, torch.tensor([[0.11425, 0.165, 0.3, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.61425, 0.765, 1.0, 0.0]]))
    # gamma=lam=1: A_t = (sum of future rewards) - V_t, so returns are all 1.
    adv, ret = _call("gae", token_rewards=rewards, values=values, response_mask=mask, whiten_advantages=False)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.4, 0.3, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))


def test_gae_needs_values():
    with pytest.raises(ValueError, match="values"):
        _call("gae", token_rewards=torch.zeros(1, 2), response_mask=torch.ones(1, 2))


# ----------------------------------------------------------------------------- group estimators


def _group_batch():
    # Sequence scores (sums of token rewards): group 0 -> [1, 0, 0, 1], group 1 -> [3, 3].
    token_rewards = torch.tensor(
        [
            [0.5, 0.5, 0.0],  # sum 1 (reward spread over tokens)
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 7.0],  # the 7 is on padding: ignored
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 3.0],
            [3.0, 0.0, 0.0],
        ]
    )
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 0, 0]])
    group_ids = torch.tensor([0, 0, 0, 0, 1, 1])
    return token_rewards, mask, group_ids


def _per_seq(adv, mask):
    """Check advantages are constant over each row's valid tokens and 0 on padding; return them."""
    assert (adv[mask == 0] == 0).all()
    first = adv[:, 0]
    assert torch.allclose(adv, first[:, None] * mask)
    return first


def test_grpo_hand_example():
    rewards, mask, ids = _group_batch()
    adv, ret = _call("grpo", token_rewards=rewards, response_mask=mask, group_ids=ids)
    # group 0: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735 -> +-0.5 / 0.57735 = +-0.866025
    z = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    expected = torch.tensor([z, -z, -z, z, 0.0, 0.0])
    assert torch.allclose(_per_seq(adv, mask), expected, atol=1e-6)
    assert torch.equal(ret, adv)


def test_dr_grpo_does_not_divide_by_std():
    rewards, mask, ids = _group_batch()
    adv, _ = _call("grpo", token_rewards=rewards, response_mask=mask, group_ids=ids, norm_by_std=False)
    assert torch.allclose(_per_seq(adv, mask), torch.tensor([0.5, -0.5, -0.5, 0.5, 0.0, 0.0]))


def test_rloo_hand_example():
    rewards, mask, ids = _group_batch()
    adv, _ = _call("rloo", token_rewards=rewards, response_mask=mask, group_ids=ids)
    # score 1 vs mean of the other three {0, 0, 1} = 1/3 -> 2/3; score 0 vs {1, 0, 1} -> -2/3
    expected = torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3, 0.0, 0.0])
    assert torch.allclose(_per_seq(adv, mask), expected)
    rewards2 = torch.tensor([[3.0], [5.0]])
    adv2, _ = _call("rloo", token_rewards=rewards2, response_mask=torch.ones(2, 1), group_ids=torch.tensor([7, 7]))
    assert torch.allclose(adv2, torch.tensor([[-2.0], [2.0]]))


def test_reinforce_pp_hand_example():
    rewards = torch.tensor([[0.1, -0.2, 1.0], [0.3, 0.5, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = _call("reinforce_pp", token_rewards=rewards, response_mask=mask, gamma=0.5)
    # return-to-go with gamma 0.5: row 0: [0.1 + 0.5*0.3, -0.2 + 0.5*1.0, 1.0]; row 1: [0.3 + 0.25, 0.5]
    assert torch.allclose(ret, torch.tensor([[0.25, 0.3, 1.0], [0.55, 0.5, 0.0]]))
    # batch whitening of [0.25, 0.3, 1.0, 0.55, 0.5]: mean 0.52, unbiased var 0.08825
    expected = torch.tensor(
        [[-0.9088797, -0.7405687, 1.6157861], [0.1009866, -0.0673244, 0.0]]
    )
    assert torch.allclose(adv, expected, atol=1e-5)


def test_reinforce_pp_baseline_hand_example():
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
    ids = torch.tensor([0, 0, 1, 1])
    adv, _ = _call("reinforce_pp_baseline", token_rewards=rewards, response_mask=mask, group_ids=ids)
    # centred scores [0.5, -0.5, -1, 1] on [2, 1, 3, 2] tokens; token mean -0.0625,
    # unbiased token var 0.8169643, std 0.9038608
    a, b, c, d = 0.6223304, -0.4840347, -1.0372173, 1.1755129
    expected = torch.tensor([[a, a, 0], [b, 0, 0], [c, c, c], [d, d, 0]])
    assert torch.allclose(adv, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["grpo", "rloo", "reinforce_pp_baseline"])
def test_zero_variance_groups_give_exact_zero_and_no_nan(name):
    # 0.1 three times: their float mean need not equal 0.1 exactly.
    rewards = torch.tensor([[0.1], [0.1], [0.1], [1.0], [1.0], [1.0]])
    ids = torch.tensor([0, 0, 0, 1, 1, 1])
    adv, ret = _call(name, token_rewards=rewards, response_mask=torch.ones(6, 1), group_ids=ids)
    assert torch.isfinite(adv).all() and torch.isfinite(ret).all()
    assert (adv == 0).all()


@pytest.mark.parametrize("name", ["grpo", "rloo", "reinforce_pp_baseline"])
def test_group_estimators_reject_lone_samples_and_missing_ids(name):
    rewards, mask = torch.ones(3, 2), torch.ones(3, 2)
    with pytest.raises(ValueError, match="at least 2 samples per prompt"):
        _call(name, token_rewards=rewards, response_mask=mask, group_ids=torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="group_ids"):
        _call(name, token_rewards=rewards, response_mask=mask, group_ids=None)


def test_group_ids_may_be_strings():
    rewards, mask, ids = _group_batch()
    str_ids = [f"prompt-{i}" for i in ids.tolist()]
    a, _ = _call("grpo", token_rewards=rewards, response_mask=mask, group_ids=ids)
    b, _ = _call("grpo", token_rewards=rewards, response_mask=mask, group_ids=str_ids)
    assert torch.equal(a, b)


def test_all_estimators_share_one_calling_convention():
    rewards, mask, ids = _group_batch()
    values = torch.randn(rewards.shape)
    for name in ADVANTAGE_ESTIMATORS.names():
        adv, ret = get_advantage_estimator(name)(
            token_rewards=rewards, values=values, response_mask=mask, group_ids=ids,
            gamma=1.0, lam=0.95, some_future_option=True,
        )
        assert adv.shape == ret.shape == rewards.shape, name
        assert torch.isfinite(adv).all() and (adv[mask == 0] == 0).all(), name
        assert adv.grad_fn is None, name
