"""Scaled dot-product attention on the GPU (``deepkern._cuda.attention_forward`` and
``attention_backward``, and ``ops.scaled_dot_product_attention(_backward)`` and
``F.scaled_dot_product_attention`` on 'cuda' arrays) against the float64 references of
test_attention.py and against the CPU op: odd sizes past a warp's 32 keys and queries, causal,
bool and float masks of every broadcast shape with the mask's gradient, dropout (the CPU's Philox
draws: the same result), rows whose every key is masked (by -inf and by a large finite value), no
keys, NaN-prefilled outputs. The binding's checks that need no GPU (arguments that are not device
arrays) run everywhere the module is built."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import ops
from deepkern.nn import functional as F
from test_attention import DTYPES, TOL, _summands_norm

from checks import F64, check, raises_naming, rand
from reference import attention_backward_ref, attention_mask_grad_ref, attention_ref

needs_gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
compiled = pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")

if dk.cuda.is_compiled():
    from deepkern import _cuda


def gpu(host):
    return None if host is None else _cuda.from_cpu(np.ascontiguousarray(host))


def host(device_array):
    return dk.backends.to_device(device_array, "cpu")


#: (lead, L, S, E, Ev): a warp's 32 keys and queries and their tails, one row, no features.
SHAPES = [((2,), 5, 7, 3, 4), ((1, 3), 33, 65, 16, 8), ((2,), 70, 31, 9, 40), ((1,), 1, 1, 1, 1), ((2,), 4, 6, 0, 3)]


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_forward_and_backward_match_the_reference_and_the_cpu(dtype, shape, causal, rng):
    lead, n_q, s, e, ev = shape
    q, k, v = rand(rng, lead + (n_q, e), dtype), rand(rng, lead + (s, e), dtype), rand(rng, lead + (s, ev), dtype)
    out, lse = ops.scaled_dot_product_attention(gpu(q), gpu(k), gpu(v), is_causal=causal)
    check(host(out), attention_ref(q, k, v, causal=causal), dtype, "cuda out", tol=TOL[dtype])
    cpu_out, cpu_lse = ops.scaled_dot_product_attention(q, k, v, is_causal=causal)
    check(host(lse), cpu_lse, dtype, "cuda lse vs cpu", tol=TOL[dtype])
    grad = rand(rng, out.shape, dtype)
    got = ops.scaled_dot_product_attention_backward(gpu(grad), gpu(q), gpu(k), gpu(v), out, lse, is_causal=causal)
    want = attention_backward_ref(grad, q, k, v, causal=causal)
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        check(host(g), w, dtype, f"cuda {name}", tol=TOL[dtype])


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mask_shape", [(2, 33, 40), (33, 40), (1, 40), (33, 1), (1, 1), (2, 1, 40)], ids=str)
def test_float_masks_and_their_gradient(dtype, mask_shape, rng):
    q, k, v = rand(rng, (2, 33, 5), dtype), rand(rng, (2, 40, 5), dtype), rand(rng, (2, 40, 6), dtype)
    mask = rng.standard_normal(mask_shape).astype(dtype)
    mask[mask > 1.5] = -np.inf
    out, lse = ops.scaled_dot_product_attention(gpu(q), gpu(k), gpu(v), gpu(mask))
    check(host(out), attention_ref(q, k, v, mask), dtype, "cuda out", tol=TOL[dtype])
    grad = rand(rng, out.shape, dtype)
    *got, dmask = ops.scaled_dot_product_attention_backward(
        gpu(grad), gpu(q), gpu(k), gpu(v), out, lse, gpu(mask), mask_grad=True
    )
    for name, g, w in zip(("dq", "dk", "dv"), got, attention_backward_ref(grad, q, k, v, mask)):
        check(host(g), w, dtype, f"cuda {name}", tol=TOL[dtype])
    assert dmask.shape == mask.shape
    floor = _summands_norm(grad, q, k, v, mask, (2, 33, 40))  # sums of terms that cancel (rows of 1 key)
    check(host(dmask), attention_mask_grad_ref(grad, q, k, v, mask), dtype, "cuda dmask", tol=TOL[dtype], floor=floor)


@pytest.mark.cuda
@needs_gpu
def test_bool_mask_fully_masked_rows_and_no_keys(rng):
    q, k, v = rand(rng, (2, 4, 3), np.float64), rand(rng, (2, 5, 3), np.float64), rand(rng, (2, 5, 3), np.float64)
    mask = np.ones((4, 5), bool)
    mask[2] = False
    out, lse = ops.scaled_dot_product_attention(gpu(q), gpu(k), gpu(v), gpu(mask))
    assert np.all(host(out)[:, 2] == 0) and np.all(np.isneginf(host(lse)[:, 2]))
    check(host(out), attention_ref(q, k, v, mask), np.float64, "out", tol=TOL[F64])
    dq, dk_, dv = ops.scaled_dot_product_attention_backward(
        gpu(np.ones((2, 4, 3))), gpu(q), gpu(k), gpu(v), out, lse, gpu(mask)
    )
    assert np.all(host(dq)[:, 2] == 0)
    empty = ops.scaled_dot_product_attention(gpu(q), gpu(k[:, :0]), gpu(v[:, :0]))[0]
    np.testing.assert_array_equal(host(empty), np.zeros((2, 4, 3)))


@pytest.mark.cuda
@needs_gpu
def test_rows_under_a_large_finite_mask(rng):
    """Every key of a row under -1e15: the backward takes that row's max and sum again, as the CPU's."""
    q, k, v = rand(rng, (2, 5, 3), np.float64), rand(rng, (2, 7, 3), np.float64), rand(rng, (2, 7, 4), np.float64)
    mask = np.zeros((5, 7))
    mask[1] = -1e15
    out, lse = ops.scaled_dot_product_attention(gpu(q), gpu(k), gpu(v), gpu(mask))
    grad = rand(rng, out.shape, np.float64)
    got = ops.scaled_dot_product_attention_backward(gpu(grad), gpu(q), gpu(k), gpu(v), out, lse, gpu(mask))
    for name, g, w in zip(("dq", "dk", "dv"), got, attention_backward_ref(grad, q, k, v, mask)):
        check(host(g), w, np.float64, f"cuda {name}", tol=TOL[F64])


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dropout_draws_the_cpus_mask(dtype, rng):
    q, k, v = rand(rng, (3, 37, 8), dtype), rand(rng, (3, 45, 8), dtype), rand(rng, (3, 45, 5), dtype)
    options = dict(dropout_p=0.3, seed=12345, offset=7)
    out, lse = ops.scaled_dot_product_attention(gpu(q), gpu(k), gpu(v), **options)
    want = attention_ref(q, k, v, dropout=(0.3, 12345, 7))
    check(host(out), want, dtype, "cuda dropout out", tol=TOL[dtype])
    grad = rand(rng, out.shape, dtype)
    got = ops.scaled_dot_product_attention_backward(gpu(grad), gpu(q), gpu(k), gpu(v), out, lse, **options)
    for name, g, w in zip(("dq", "dk", "dv"), got, attention_backward_ref(grad, q, k, v, dropout=(0.3, 12345, 7))):
        check(host(g), w, dtype, f"cuda dropout {name}", tol=TOL[dtype])


@pytest.mark.cuda
@needs_gpu
def test_functional_trains_on_the_gpu_as_on_the_cpu(rng):
    x = rng.standard_normal((2, 3, 9, 8))
    grads = []
    for device in ("cpu", "cuda"):
        q = dk.tensor(x, requires_grad=True, device=device)
        F.scaled_dot_product_attention(q, q * 0.5, q, is_causal=True).sum().backward()
        grads.append(np.asarray(host(q.grad._array)))
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-10, atol=1e-12)


@pytest.mark.cuda
@needs_gpu
def test_outputs_are_written_whole(rng):
    q, k, v = rand(rng, (2, 5, 3), np.float32), rand(rng, (2, 6, 3), np.float32), rand(rng, (2, 6, 4), np.float32)
    index = np.arange(2, dtype=np.int64)
    o, lse = gpu(np.full((2, 5, 4), np.nan, np.float32)), gpu(np.full((2, 5), np.nan, np.float32))
    _cuda.attention_forward(gpu(q), gpu(k), gpu(v), index, index, None, None, o, lse, 0.5, False, 0.0, 0, 0)
    assert np.isfinite(host(o)).all() and np.isfinite(host(lse)).all()
    grads = [gpu(np.full(shape, np.nan, np.float32)) for shape in ((2, 5, 3), (2, 6, 3), (2, 6, 4))]
    grad = gpu(np.ones((2, 5, 4), np.float32))
    _cuda.attention_backward(
        gpu(q), gpu(k), gpu(v), index, index, None, None, o, lse, grad, *grads, 0.5, False, 0.0, 0, 0
    )
    assert all(np.isfinite(host(g)).all() for g in grads)


@pytest.mark.cuda
@needs_gpu
def test_binding_rejects_bad_arguments():
    q = gpu(np.ones((2, 3, 4), np.float32))
    o, lse = gpu(np.ones((2, 3, 4), np.float32)), gpu(np.ones((2, 3), np.float32))
    index = np.arange(2, dtype=np.int64)
    with raises_naming(ValueError, "attention_forward", "k_index[1] = 5", "out of range"):
        _cuda.attention_forward(q, q, q, np.array([0, 5]), index, None, None, o, lse, 1.0, False, 0.0, 0, 0)
    with raises_naming(TypeError, "attention_forward", "k_index", "int64"):
        _cuda.attention_forward(q, q, q, index.astype(np.int32), index, None, None, o, lse, 1.0, False, 0.0, 0, 0)
    with raises_naming(ValueError, "attention_forward", "o overlaps"):
        _cuda.attention_forward(q, q, q, index, index, None, None, q, lse, 1.0, False, 0.0, 0, 0)
    with raises_naming(ValueError, "attention_forward", "dropout_p"):
        _cuda.attention_forward(q, q, q, index, index, None, None, o, lse, 1.0, False, 1.5, 0, 0)
    with raises_naming(ValueError, "attention_forward", "q", "3-D"):
        flat = gpu(np.ones(4, np.float32))
        _cuda.attention_forward(flat, q, q, index, index, None, None, o, lse, 1.0, False, 0.0, 0, 0)


@compiled
@pytest.mark.parametrize("name", ["attention_forward", "attention_backward"])
def test_binding_wants_device_arrays(name):
    """Host arrays are refused with a TypeError naming the argument, before any GPU work."""
    a = np.ones((1, 2, 2), np.float32)
    index = np.zeros(1, np.int64)
    calls = {
        "attention_forward": (a, a, a, index, index, None, None, a, a[0], 1.0, False, 0.0, 0, 0),
        "attention_backward": (a, a, a, index, index, None, None, a, a[0], a, a, a, a, 1.0, False, 0.0, 0, 0),
    }
    with raises_naming(TypeError, name, "DeviceArray"):
        getattr(_cuda, name)(*calls[name])


@compiled
def test_shared_keys_and_broadcast_queries_on_the_device_code_paths(monkeypatch, rng):
    """Grouped heads (problems sharing key and value matrices), a broadcast query and a broadcast
    mask with its gradient through the op's device-array paths (no fancy indexing, no reduceat: the
    per-problem gradients summed matrix by matrix), on the host stand-in of the GPU."""
    cuda_standin = pytest.importorskip("cuda_standin")
    monkeypatch.setitem(dk.backends._BACKENDS, "standin", cuda_standin.StandInBackend())
    dev = cuda_standin.StandInArray
    q, k, v = rng.standard_normal((1, 4, 9, 3)), rng.standard_normal((2, 2, 11, 3)), rng.standard_normal((2, 2, 11, 5))
    mask = rng.standard_normal((9, 11))
    out, lse = ops.scaled_dot_product_attention(dev(q), dev(k), dev(v), dev(mask), enable_gqa=True)
    assert isinstance(out, dev)
    check(out.to_cpu(), attention_ref(q, k, v, mask, enable_gqa=True), F64, "out", tol=TOL[F64])
    grad = rng.standard_normal(out.shape)
    *got, dmask = ops.scaled_dot_product_attention_backward(
        dev(grad), dev(q), dev(k), dev(v), out, lse, dev(mask), enable_gqa=True, mask_grad=True
    )
    for name, g, w in zip(("dq", "dk", "dv"), got, attention_backward_ref(grad, q, k, v, mask, enable_gqa=True)):
        check(g.to_cpu(), w, F64, name, tol=TOL[F64])
    check(dmask.to_cpu(), attention_mask_grad_ref(grad, q, k, v, mask, enable_gqa=True), F64, "dmask", tol=TOL[F64])
