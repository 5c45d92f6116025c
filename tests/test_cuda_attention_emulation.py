"""The attention kernels of csrc/cuda/attention run on the host (tests/cuda_emulation): forward and
backward against the float64 references of test_attention.py, laid out by the op's own planning
(index maps of broadcast batch dims and grouped heads, mask matrices): sizes past a warp's 32 keys
and queries and their tails, causal, float and bool masks of every broadcast shape with the mask's
gradient, dropout (the CPU's Philox draws), rows every key of which is masked (by -inf and by a
large finite value), no keys, no features, outputs prefilled with NaN. Needs the source tree and a
C++ compiler, not a GPU; the problems are small."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)
from deepkern.backends import backend_of  # noqa: E402
from deepkern.ops import attention as attention_ops  # noqa: E402
from test_attention import TOL, _summands_norm  # noqa: E402

from checks import F32, F64, check, rand  # noqa: E402
from reference import attention_backward_ref, attention_mask_grad_ref, attention_ref  # noqa: E402

NULL = ctypes.c_void_p(None)


def _run(q, k, v, mask=None, causal=False, dropout=None, enable_gqa=False, mask_grad=False, rng=None):
    """The emulated kernels on the op's layout: (out, lse, (dq, dk, dv) summed to the inputs' shapes,
    dmask summed to the mask's shape or None) for a random grad, and that grad."""
    p, seed, offset = dropout or (0.0, 0, 0)
    plan = attention_ops._plan("emulation", q, k, v, mask, p, causal, None, enable_gqa, seed, offset)
    n, n_q, s = math.prod(plan.lead), plan.n_q, plan.s
    e, ev = plan.q.shape[-1], plan.v.shape[-1]
    dtype = plan.q.dtype
    offsets = [plan.k_index * s * e, plan.v_index * s * ev]
    mask_rows = mask_cols = 0
    if plan.mask is not None:
        mask_rows, mask_cols = plan.mask.shape[1:]
        offsets.append(plan.mask_index * mask_rows * mask_cols)
    offsets = np.ascontiguousarray(np.concatenate(offsets), np.int64)
    sizes = np.array([n, n_q, s, e, ev, 0 if mask_rows == 1 else mask_cols, 0 if mask_cols == 1 else 1], np.int64)
    mask_arg = NULL if plan.mask is None else plan.mask
    common = (plan.q, plan.k, plan.v, mask_arg, offsets, sizes, plan.scale, int(causal), p, seed, offset)
    driver = emulation.load_driver("attention")
    is_double = int(dtype == F64)
    out, lse = np.full((n, n_q, ev), np.nan, dtype), np.full((n, n_q), np.nan, dtype)
    driver.dk_attention_forward(is_double, *common, out, lse)
    grad = rand(rng, (n, n_q, ev), dtype)
    dq, dk, dv = (np.full(shape, np.nan, dtype) for shape in ((n, n_q, e), (n, s, e), (n, s, ev)))
    dmask = np.full((n, mask_rows, mask_cols), np.nan, dtype) if mask_grad else NULL
    scratch = np.full(4 * n * n_q, np.nan, dtype)
    driver.dk_attention_backward(is_double, *common, out, lse, grad, dq, dk, dv, dmask, mask_rows, mask_cols, scratch)
    cpu = backend_of(plan.q, op="emulation")
    grads = (
        attention_ops._summed(dq, plan.q_index, math.prod(plan.shapes[0][:-2]), plan.shapes[0], cpu),
        attention_ops._summed(dk, plan.k_index, plan.k.shape[0], plan.shapes[1], cpu),
        attention_ops._summed(dv, plan.v_index, plan.v.shape[0], plan.shapes[2], cpu),
    )
    summed_mask = attention_ops._summed_to_mask(dmask, plan.lead, np.shape(mask)) if mask_grad else None
    shaped_grad = grad.reshape(plan.lead + (n_q, ev))
    return out.reshape(plan.lead + (n_q, ev)), lse.reshape(plan.lead + (n_q,)), grads, summed_mask, shaped_grad


def _check_all(q, k, v, out, grads, grad, dtype, what, **options):
    check(out, attention_ref(q, k, v, **options), dtype, f"{what} out", tol=TOL[dtype])
    for name, g, r in zip(("dq", "dk", "dv"), grads, attention_backward_ref(grad, q, k, v, **options)):
        check(g, r, dtype, f"{what} {name}", tol=TOL[dtype])


SHAPES = [((2,), 5, 7, 3, 4), ((1, 2), 33, 65, 6, 5), ((2,), 40, 31, 9, 33), ((1,), 1, 1, 1, 1), ((2,), 4, 6, 0, 3)]


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_forward_and_backward(dtype, shape, causal, rng):
    lead, n_q, s, e, ev = shape
    q, k, v = rand(rng, lead + (n_q, e), dtype), rand(rng, lead + (s, e), dtype), rand(rng, lead + (s, ev), dtype)
    out, lse, grads, _, grad = _run(q, k, v, causal=causal, rng=rng)
    _check_all(q, k, v, out, grads, grad, dtype, f"emulated {shape}", causal=causal)
    assert np.all(np.isfinite(lse) | (s == 0))


@pytest.mark.parametrize("mask_shape", [(2, 33, 40), (33, 40), (1, 40), (33, 1), (1, 1), (2, 1, 40)], ids=str)
def test_float_masks_and_their_gradient(mask_shape, rng):
    q, k, v = rand(rng, (2, 33, 5), F64), rand(rng, (2, 40, 5), F64), rand(rng, (2, 40, 6), F64)
    mask = rng.standard_normal(mask_shape)
    mask[mask > 1.5] = -np.inf
    out, _, grads, dmask, grad = _run(q, k, v, mask, mask_grad=True, rng=rng)
    _check_all(q, k, v, out, grads, grad, F64, f"emulated mask {mask_shape}", mask=mask)
    floor = _summands_norm(grad, q, k, v, mask, (2, 33, 40))  # sums of terms that cancel (rows of 1 key)
    check(dmask, attention_mask_grad_ref(grad, q, k, v, mask), F64, "emulated dmask", tol=TOL[F64], floor=floor)


def test_bool_mask_broadcast_batch_and_grouped_heads(rng):
    q = rand(rng, (2, 4, 9, 3), F32)
    k, v = rand(rng, (1, 2, 11, 3), F32), rand(rng, (1, 2, 11, 5), F32)
    mask = rng.random((9, 11)) > 0.3
    mask[4] = False  # a row every key of which is masked: zeros and no gradient
    out, lse, grads, _, grad = _run(q, k, v, mask, enable_gqa=True, rng=rng)
    assert np.all(out[..., 4, :] == 0) and np.all(np.isneginf(lse[..., 4]))
    _check_all(q, k, v, out, grads, grad, F32, "emulated gqa", mask=mask, enable_gqa=True)


def test_rows_under_a_large_finite_mask(rng):
    q, k, v = rand(rng, (2, 5, 3), F64), rand(rng, (2, 7, 3), F64), rand(rng, (2, 7, 4), F64)
    mask = np.zeros((5, 7))
    mask[1] = -1e15
    mask[3, 4:] = -1e15 - 4.0
    mask[3, :4] = -1e15
    out, _, grads, _, grad = _run(q, k, v, mask, rng=rng)
    _check_all(q, k, v, out, grads, grad, F64, "emulated -1e15", mask=mask)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_dropout_draws_the_cpus_mask(dtype, rng):
    q, k, v = rand(rng, (3, 37, 8), dtype), rand(rng, (3, 45, 8), dtype), rand(rng, (3, 45, 5), dtype)
    dropout = (0.3, 12345, 7)
    out, _, grads, _, grad = _run(q, k, v, dropout=dropout, rng=rng)
    _check_all(q, k, v, out, grads, grad, dtype, "emulated dropout", dropout=dropout)


def test_no_keys(rng):
    q, k, v = rand(rng, (2, 4, 3), F64), rand(rng, (2, 0, 3), F64), rand(rng, (2, 0, 5), F64)
    out, lse, grads, _, _ = _run(q, k, v, rng=rng)
    np.testing.assert_array_equal(out, np.zeros((2, 4, 5)))
    assert np.all(np.isneginf(lse))
    np.testing.assert_array_equal(grads[0], np.zeros((2, 4, 3)))
