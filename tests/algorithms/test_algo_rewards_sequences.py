import pytest
import torch

from alignflow.algorithms import (
    apply_missing_eos_penalty,
    first_true,
    kl_penalized_token_rewards,
    last_token_index,
    masked_mean,
    masked_var,
    truncate_after_eos,
    whiten_rewards,
)

EOS, PAD = 2, 0


def test_truncate_after_eos_middle_none_and_position_zero():
    ids = torch.tensor([[5, 2, 7, 8], [5, 6, 7, 8], [2, 5, 2, 9], [5, 6, 7, 2]])
    out, mask, has_eos = truncate_after_eos(ids, EOS, PAD)
    assert out.tolist() == [[5, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0], [5, 6, 7, 2]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert has_eos.tolist() == [True, False, True, True]


def test_truncate_when_pad_equals_eos_and_with_several_stop_tokens():
    out, mask, has_eos = truncate_after_eos(torch.tensor([[5, 2, 2, 2]]), eos_token_id=2, pad_token_id=2)
    assert out.tolist() == [[5, 2, 2, 2]] and mask.tolist() == [[1, 1, 0, 0]] and has_eos.item()
    out, mask, _ = truncate_after_eos(torch.tensor([[5, 3, 2, 1], [4, 4, 2, 3]]), eos_token_id=[2, 3], pad_token_id=0)
    assert out.tolist() == [[5, 3, 0, 0], [4, 4, 2, 0]] and mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]


def test_last_token_index_and_first_true():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]])
    assert last_token_index(mask).tolist() == [1, 3, -1, 2]
    assert first_true(mask.bool()).tolist() == [0, 0, 4, 0]
    assert first_true(torch.tensor([[False, False, True, True]])).tolist() == [2]


def test_missing_eos_penalty_replaces_only_unfinished_scores():
    scores = torch.tensor([1.0, 2.0, 3.0])
    out = apply_missing_eos_penalty(scores, torch.tensor([True, False, True]), -1.0)
    assert out.tolist() == [1.0, -1.0, 3.0]


def test_kl_penalized_rewards_put_the_score_on_the_last_real_token():
    logp = torch.tensor([[-1.0, -2.0, -0.5, -9.0], [-0.2, -7.0, -7.0, -7.0]])
    ref = torch.tensor([[-1.5, -1.0, -1.0, 0.0], [-0.4, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    scores = torch.tensor([2.0, -3.0])
    rewards, kl = kl_penalized_token_rewards(scores, logp, ref, mask, kl_coef=0.1)
    # k1 = logp - ref on valid tokens: [0.5, -1.0, 0.5] and [0.2]
    assert torch.allclose(kl, torch.tensor([[0.5, -1.0, 0.5, 0.0], [0.2, 0.0, 0.0, 0.0]]))
    expected = torch.tensor([[-0.05, 0.1, -0.05 + 2.0, 0.0], [-0.02 - 3.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(rewards, expected)
    # k3 path: exp(r) - r - 1 with r = ref - logp.
    _, kl3 = kl_penalized_token_rewards(scores, logp, ref, mask, kl_coef=0.1, kl_estimator="k3")
    r = torch.tensor(-0.5)
    assert kl3[0, 0].item() == pytest.approx((r.exp() - r - 1).item())
    assert (kl3[mask == 0] == 0).all()
    with pytest.raises(ValueError, match="no real token"):
        kl_penalized_token_rewards(scores, logp, ref, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]), 0.1)


def test_whiten_rewards_scales_but_keeps_the_mean():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(3, 4, generator=g) + 2.0
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    out = whiten_rewards(r, mask)
    assert torch.allclose(masked_mean(out, mask), masked_mean(r, mask), atol=1e-6)
    assert masked_var(out, mask).item() == pytest.approx(1.0, abs=1e-5)
    assert (out[mask == 0] == 0).all()
