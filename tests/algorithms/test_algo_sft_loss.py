import torch
import torch.nn.functional as F

from alignflow.algorithms import IGNORE_INDEX, masked_token_nll


def _batch(B, T, V=101, seed=0, n_prompt=2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :n_prompt] = IGNORE_INDEX
    return logits, labels


def test_sum_and_count_match_cross_entropy_and_its_gradient():
    logits, labels = _batch(3, 7)
    labels[1, 5:] = IGNORE_INDEX  # padding
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    loss_sum, n = masked_token_nll(a, labels, chunk_size=4)
    ref = F.cross_entropy(b.reshape(-1, b.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    assert n.item() == 3 * 7 - 3 * 2 - 2
    assert torch.allclose(loss_sum, ref, atol=1e-4)
    loss_sum.backward()
    ref.backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_sum_over_tokens_gives_the_true_mean_across_unequal_micro_batches():
    # micro-batch 1 has 2 supervised tokens, micro-batch 2 has 18.
    l1, y1 = _batch(1, 4, seed=1)
    l2, y2 = _batch(3, 8, seed=2)
    s1, n1 = masked_token_nll(l1, y1)
    s2, n2 = masked_token_nll(l2, y2)
    token_mean = (s1 + s2) / (n1 + n2)
    all_logits = torch.cat([l1.reshape(-1, 101), l2.reshape(-1, 101)])
    all_labels = torch.cat([y1.reshape(-1), y2.reshape(-1)])
    ref = F.cross_entropy(all_logits, all_labels, ignore_index=IGNORE_INDEX)
    assert torch.allclose(token_mean, ref, atol=1e-5)
    # Averaging the two micro-batch means would be a different (wrong) number.
    mean_of_means = (s1 / n1 + s2 / n2) / 2
    assert not torch.allclose(mean_of_means, ref, atol=1e-3)
