"""The embedding kernels of csrc/cuda/embedding run on the host (tests/cuda_emulation): the
forward gather equals weight[indices] exactly; the backward equals the CPU backend's np.add.at
scatter, bitwise on the deterministic path (up to kEmbeddingDeterministicMax = 1024 indices,
repeated rows summed in index order) and to rounding on the atomic one (more indices); the
padding row gets no gradient; an index outside the table is recorded in the flag and never
addresses memory (the outputs' other elements stay as they were). Needs the source tree and a C++
compiler, not a GPU."""

from __future__ import annotations

import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)
from deepkern.backends.cpu import CPUBackend  # noqa: E402

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
DETERMINISTIC_MAX = 1024


def _forward(weight, indices):
    out = np.full(indices.shape + (weight.shape[1],), np.nan, weight.dtype)
    bad = np.zeros(2, np.int64)
    emulation.load_driver("embedding").dk_embedding(
        int(weight.dtype == np.float64), weight, weight.shape[0], weight.shape[1], indices, indices.size, out, bad
    )
    return out, bad


def _backward(grad, indices, rows, padding_idx):
    grad_weight = np.zeros((rows, grad.shape[-1]), grad.dtype)
    bad = np.zeros(2, np.int64)
    emulation.load_driver("embedding").dk_embedding_backward(
        int(grad.dtype == np.float64), grad, indices, indices.size, rows, grad.shape[-1], padding_idx, grad_weight, bad
    )
    return grad_weight, bad


def _cpu_backward(grad, indices, rows, padding_idx):
    want = np.full((rows, grad.shape[-1]), np.nan, grad.dtype)
    CPUBackend.embedding_backward(grad, indices, want, padding_idx)
    return want


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("rows", "dim", "shape"), [(1, 1, (1,)), (7, 3, (5, 4)), (50, 33, (300,)), (3, 0, (2,))])
def test_forward_gathers_rows(dtype, rows, dim, shape, rng):
    weight = rng.standard_normal((rows, dim)).astype(dtype)
    indices = rng.integers(0, rows, shape)
    out, bad = _forward(weight, indices)
    assert bad[0] == 0
    np.testing.assert_array_equal(out, weight[indices])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [0, 1, 9, 200, DETERMINISTIC_MAX])
@pytest.mark.parametrize("padding_idx", [-1, 2])
def test_backward_is_the_cpu_scatter_bit_for_bit(dtype, n, padding_idx, rng):
    rows, dim = 11, 37
    indices = rng.integers(0, rows, n)  # rows repeat often
    grad = rng.standard_normal((n, dim)).astype(dtype)
    got, bad = _backward(grad, indices, rows, padding_idx)
    assert bad[0] == 0
    np.testing.assert_array_equal(got, _cpu_backward(grad, indices, rows, padding_idx))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_backward_past_the_deterministic_bound_accumulates_atomically(dtype, rng):
    rows, dim, n = 13, 3, DETERMINISTIC_MAX + 77
    indices = rng.integers(0, rows, n)
    grad = rng.standard_normal((n, dim)).astype(dtype)
    got, bad = _backward(grad, indices, rows, 4)
    assert bad[0] == 0
    want = _cpu_backward(grad.astype(np.float64), indices, rows, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    assert not got[4].any()


@pytest.mark.parametrize("bad_index", [-1, 7, 2**40])
def test_an_index_outside_the_table_is_flagged_and_not_used(bad_index, rng):
    weight = rng.standard_normal((7, 5))
    indices = np.array([1, bad_index, 3])
    out, bad = _forward(weight, indices)
    assert bad.tolist() == [1, bad_index]
    np.testing.assert_array_equal(out[[0, 2]], weight[[1, 3]])
    assert np.isnan(out[1]).all(), "a row was written for the bad index"
    grad_weight, bad = _backward(np.ones((3, 5)), indices, 7, -1)
    assert bad.tolist() == [1, bad_index]
    np.testing.assert_array_equal(grad_weight.sum(axis=1), [0, 5, 0, 5, 0, 0, 0])
