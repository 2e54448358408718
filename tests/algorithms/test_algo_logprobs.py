import pytest
import torch

from alignflow.algorithms import entropy_from_logits, logprobs_from_logits

V = 49_152  # the vocabulary size this is written for


def _naive_logprobs(logits, labels, temperature=1.0):
    return torch.log_softmax(logits.float() / temperature, -1).gather(-1, labels[..., None]).squeeze(-1)


def _naive_entropy(logits, temperature=1.0):
    logp = torch.log_softmax(logits.float() / temperature, -1)
    return -(logp.exp() * logp).sum(-1)


def _inputs(dtype=torch.float32, B=2, T=5):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(B, T, V, generator=g) * 3).to(dtype)
    labels = torch.randint(0, V, (B, T), generator=g)
    return logits, labels


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprobs_and_gradients_equal_naive(temperature):
    logits, labels = _inputs()
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    ours = logprobs_from_logits(a, labels, temperature=temperature, chunk_size=3)  # 10 rows, ragged chunks
    ref = _naive_logprobs(b, labels, temperature)
    assert ours.dtype == torch.float32 and ours.shape == labels.shape
    assert torch.allclose(ours, ref, atol=1e-5)
    w = torch.randn(labels.shape)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_chunked_entropy_and_gradients_equal_naive():
    logits, _ = _inputs()
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    ours = entropy_from_logits(a, temperature=0.8, chunk_size=4)
    ref = _naive_entropy(b, 0.8)
    assert torch.allclose(ours, ref, atol=1e-4)
    w = torch.randn(ours.shape)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)  # summation order differs by CPU (AVX2 vs AVX-512)


def test_bf16_logits_give_fp32_results_close_to_fp32_math():
    logits32, labels = _inputs()
    logits16 = logits32.to(torch.bfloat16)
    lp = logprobs_from_logits(logits16, labels, chunk_size=4)
    ent = entropy_from_logits(logits16, chunk_size=4)
    assert lp.dtype == ent.dtype == torch.float32
    # Exactly the fp32 math on the bf16 values ...
    assert torch.allclose(lp, _naive_logprobs(logits16, labels), atol=1e-4)
    assert torch.allclose(ent, _naive_entropy(logits16), atol=1e-3)
    # ... and within bf16 rounding of the original fp32 logits.
    assert torch.allclose(lp, _naive_logprobs(logits32, labels), atol=0.1)
    assert torch.allclose(ent, _naive_entropy(logits32), atol=0.05)
    x = logits16.clone().requires_grad_(True)
    logprobs_from_logits(x, labels, chunk_size=4).sum().backward()
    y = logits16.clone().requires_grad_(True)
    _naive_logprobs(y, labels).sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.allclose(x.grad.float(), y.grad.float(), atol=1e-2)


def test_no_grad_path_and_non_contiguous_input():
    logits, labels = _inputs(T=6)
    shifted = logits[:, :-1]  # the usual causal shift: a non-contiguous view
    with torch.no_grad():
        out = logprobs_from_logits(shifted, labels[:, 1:], chunk_size=7)
    assert out.grad_fn is None
    assert torch.allclose(out, _naive_logprobs(shifted, labels[:, 1:]), atol=1e-5)


def test_bad_arguments():
    logits, labels = _inputs()
    with pytest.raises(ValueError, match="labels shape"):
        logprobs_from_logits(logits, labels[:, :-1])
    with pytest.raises(ValueError, match="temperature"):
        logprobs_from_logits(logits, labels, temperature=0.0)


def _saved_bytes(fn):
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(saved)


def test_backward_keeps_no_full_size_fp32_activations():
    logits, labels = _inputs(torch.bfloat16)
    x = logits.clone().requires_grad_(True)
    budget = x.numel() * x.element_size() + labels.numel() * 8  # the inputs themselves
    assert _saved_bytes(lambda: logprobs_from_logits(x, labels, chunk_size=4)) <= budget
    assert _saved_bytes(lambda: entropy_from_logits(x, chunk_size=4)) <= budget
    # The hook does see what the naive version keeps: full (B, T, V) fp32 tensors.
    assert _saved_bytes(lambda: _naive_logprobs(x, labels)) >= x.numel() * 4
