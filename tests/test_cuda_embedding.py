"""nn.Embedding / F.embedding on 'cuda' tensors: the forward gather and the backward scatter against
the CPU (bitwise: the GPU backward sums each row's occurrences in index order, as np.add.at, up to
1024 indices), padding_idx, int32 and int64 indices of any shape, the device-side bounds check
(IndexError naming the index) and the binding's refusals. The GPU tests skip without a usable GPU;
the argument checks that need none run everywhere."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn
from deepkern.nn import functional as F

from checks import raises_naming

needs_gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")

if dk.cuda.is_compiled():
    from deepkern import _cuda


def _grads(rows, dim, index_shape, index_dtype, padding_idx, device, rng):
    """(output, weight gradient) of nn.Embedding on `device` for one seeded problem."""
    dk.manual_seed(3)
    layer = nn.Embedding(rows, dim, padding_idx=padding_idx).to(device)
    idx = dk.tensor(rng.integers(0, rows, index_shape).astype(index_dtype), device=device)
    out = layer(idx)
    out.backward(dk.tensor(np.linspace(-1, 1, out.numel()).reshape(out.shape).astype(np.float32), device=device))
    return out.detach().cpu().numpy(), layer.weight.grad.cpu().numpy()


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize(
    ("rows", "dim", "index_shape", "padding_idx"),
    [(1, 1, (1,), None), (10, 7, (4, 9), 3), (1000, 64, (1024,), None), (50, 33, (37, 41), -1)],
)
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_forward_and_backward_match_the_cpu(rows, dim, index_shape, padding_idx, index_dtype):
    cpu = _grads(rows, dim, index_shape, index_dtype, padding_idx, "cpu", np.random.default_rng(1))
    gpu = _grads(rows, dim, index_shape, index_dtype, padding_idx, "cuda", np.random.default_rng(1))
    np.testing.assert_array_equal(gpu[0], cpu[0])
    if np.prod(index_shape) <= 1024:  # the deterministic path: the CPU's sums bit for bit
        np.testing.assert_array_equal(gpu[1], cpu[1])
    else:  # atomics: the same sums in another order
        np.testing.assert_allclose(gpu[1], cpu[1], rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
@needs_gpu
def test_an_index_outside_the_table_is_an_index_error():
    weight = dk.tensor(np.ones((6, 2), np.float32), device="cuda")
    for bad in (6, -1):
        with raises_naming(IndexError, "embedding", str(bad)):
            F.embedding(dk.tensor(np.array([0, bad, 2]), device="cuda"), weight)


@pytest.mark.cuda
@needs_gpu
def test_the_binding_refuses_bad_arguments():
    weight = _cuda.from_cpu(np.ones((6, 3), np.float32))
    idx = _cuda.from_cpu(np.array([1, 2], np.int64))
    out = _cuda.from_cpu(np.zeros((2, 3), np.float32))
    with raises_naming(ValueError, "embedding: weight must be 2-D"):
        _cuda.embedding(_cuda.from_cpu(np.ones(6, np.float32)), idx, out)
    with raises_naming(TypeError, "embedding: indices must have dtype int64"):
        _cuda.embedding(weight, _cuda.from_cpu(np.array([1, 2], np.int32)), out)
    with raises_naming(ValueError, "embedding: out must have 6 elements"):
        _cuda.embedding(weight, idx, _cuda.from_cpu(np.zeros((3, 3), np.float32)))
    with raises_naming(ValueError, "embedding: out overlaps weight"):
        _cuda.embedding(weight, idx, weight[:2])
    with raises_naming(ValueError, "embedding_backward: padding_idx"):
        _cuda.embedding_backward(out, idx, weight, 6)
    with raises_naming(TypeError, "embedding_backward: grad must have dtype float32"):
        _cuda.embedding_backward(_cuda.from_cpu(np.zeros((2, 3))), idx, weight, -1)


def test_weight_must_be_a_table():
    with raises_naming(ValueError, "embedding", "2-D", "(6,)"):
        F.embedding(np.array([0, 1]), np.ones(6, np.float32))
