"""deepkern.ops.scaled_dot_product_attention and its backward, and F.scaled_dot_product_attention.

Every result is compared with the float64 reference of tests/reference.py, which builds the explicit
(..., L, S) matrix: shapes around the kernel's blocks (64 queries, 256 keys) and below them, L != S,
E != Ev, L or S = 1, zero sizes, broadcast masks (2-D, per head, per batch, a row or a column),
causal masks with L != S, grouped-query heads, broadcast batch dims, strided and transposed inputs;
every ISA and thread count; the backward against the reference, finite differences and PyTorch (when
installed); dropout against the Philox reference (the same mask in the backward); a float mask's
gradient (broadcast shapes, causal, dropout, grouped heads, zero sizes, nn.MultiheadAttention); bad
arguments.
"""

from __future__ import annotations

import math

import deepkern
import numpy as np
import pytest
from deepkern import nn, ops
from deepkern._C import attention_backward as c_attention_backward
from deepkern._C import attention_forward as c_attention_forward
from deepkern.nn import functional as F

from checks import F32, F64, check, gradcheck, poison_heap, raises_naming, rand
from conftest import on_device
from reference import attention_backward_ref, attention_mask_grad_ref, attention_ref

DTYPES = [F32, F64]
#: float32 tolerance of the relative error: sums of a few hundred exponentials and products.
TOL = {F32: 3e-5, F64: 1e-12}

#: (lead dims of q, L, S, E, Ev): below, at and above the blocks; 1s; odd sizes.
SHAPES = [
    ((2, 3), 5, 7, 4, 6),
    ((1,), 1, 1, 3, 2),
    ((2,), 70, 300, 9, 5),
    ((), 3, 1, 5, 5),
    ((3,), 1, 33, 8, 1),
    ((1, 2), 129, 257, 16, 16),
]


def _qkv(rng, lead, n_q, s, e, ev, dtype):
    return rand(rng, lead + (n_q, e), dtype), rand(rng, lead + (s, e), dtype), rand(rng, lead + (s, ev), dtype)


def _check_all(got, refs, dtype, what):
    for name, g, r in zip(("dq", "dk", "dv"), got, refs):
        check(g, r, dtype, f"{what} {name}", tol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_forward_and_backward_match_the_reference(rng, shape, causal, dtype):
    lead, n_q, s, e, ev = shape
    q, k, v = _qkv(rng, lead, n_q, s, e, ev, dtype)
    poison_heap((lead + (n_q, ev), dtype), (lead + (n_q,), dtype))
    out, lse = ops.scaled_dot_product_attention(q, k, v, is_causal=causal)
    check(out, attention_ref(q, k, v, causal=causal), dtype, "out", tol=TOL[dtype])
    assert lse.shape == lead + (n_q,) and lse.dtype == dtype
    grad = rand(rng, out.shape, dtype)
    got = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, is_causal=causal)
    _check_all(got, attention_backward_ref(grad, q, k, v, causal=causal), dtype, "backward")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_isa_and_thread_count(isa, threads, rng, dtype):
    q, k, v = _qkv(rng, (2, 3), 67, 261, 12, 7, dtype)
    mask = rng.random((3, 67, 261)) < 0.8
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
    check(out, attention_ref(q, k, v, mask), dtype, f"{isa} out", tol=TOL[dtype])
    assert deepkern._C.last_isa("attention") == isa
    grad = rand(rng, out.shape, dtype)
    got = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask)
    _check_all(got, attention_backward_ref(grad, q, k, v, mask), dtype, isa)


#: Masks broadcast against (2, 3, L=6, S=9): 2-D, per head, per batch and head, one key column, a
#: row per query, a scalar-like (1, 1).
MASK_SHAPES = [(6, 9), (3, 6, 9), (2, 3, 6, 9), (2, 1, 1, 9), (3, 6, 1), (1, 1)]


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("mask_shape", MASK_SHAPES, ids=str)
def test_broadcast_masks(rng, mask_shape, kind):
    q, k, v = _qkv(rng, (2, 3), 6, 9, 5, 4, F64)
    if kind == "bool":
        mask = rng.random(mask_shape) < 0.7
    else:
        mask = np.where(rng.random(mask_shape) < 0.2, -np.inf, rng.standard_normal(mask_shape))
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
    ref = attention_ref(q, k, v, mask)
    check(out, ref, F64, "out", floor=1e-300)
    grad = rand(rng, out.shape, F64)
    got = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask)
    _check_all(got, attention_backward_ref(grad, q, k, v, mask), F64, "masked")


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masks_given_as_tensors_or_lists(rng, kind):
    """The array op takes a mask as a deepkern Tensor or nested lists too, with the same results."""
    q, k, v = _qkv(rng, (2,), 3, 4, 5, 4, F64)
    mask = rng.random((3, 4)) < 0.7 if kind == "bool" else rng.standard_normal((3, 4))
    expected, _ = ops.scaled_dot_product_attention(q, k, v, mask)
    for given in (deepkern.tensor(mask), mask.tolist()):
        got, _ = ops.scaled_dot_product_attention(q, k, v, given)
        np.testing.assert_array_equal(got, expected)


def test_a_fully_masked_row_gives_zeros_and_zero_gradients(rng):
    q, k, v = _qkv(rng, (2,), 4, 5, 3, 3, F32)
    mask = np.ones((4, 5), bool)
    mask[2] = False
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
    assert np.all(out[:, 2] == 0) and np.all(np.isneginf(lse[:, 2]))
    check(out, attention_ref(q, k, v, mask), F32, "out", tol=TOL[F32])
    dq, dk, dv = ops.scaled_dot_product_attention_backward(np.ones_like(out), q, k, v, out, lse, mask)
    assert np.all(dq[:, 2] == 0)
    assert np.isfinite(dk).all() and np.isfinite(dv).all()


def test_rows_under_a_large_finite_mask_have_exact_gradients(rng):
    """A row whose every key is under a large finite mask (-1e15, or float32's lowest, as padding
    masks are often written) attends as its scores say; its lse (-1e15 + log l) cannot hold log l,
    so the backward takes that row's max and sum again: the gradients (also of the keys and values
    the other rows share) match the reference, where P = exp(S - lse) had been off by up to S times."""
    q, k, v = _qkv(rng, (2,), 5, 7, 3, 4, F64)
    mask = np.zeros((5, 7))
    mask[1] = -1e15
    mask[3, :4] = -1e15
    mask[3, 4:] = -1e15 - 4.0  # on the scores' 0.125 grid there: distinct probabilities
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
    check(out, attention_ref(q, k, v, mask), F64, "out", tol=TOL[F64])
    grad = rand(rng, out.shape, F64)
    got = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask)
    _check_all(got, attention_backward_ref(grad, q, k, v, mask), F64, "backward")
    # float32's lowest: every score of the row rounds to the mask itself, so the row attends
    # uniformly, as with a zero query and no mask.
    q, k, v = _qkv(rng, (2,), 5, 7, 3, 4, F32)
    q[:, 2] = 0
    mask = np.zeros((5, 7), F32)
    mask[2] = np.finfo(F32).min
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
    grad = rand(rng, out.shape, F32)
    got = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask)
    _check_all(got, attention_backward_ref(grad, q, k, v), F32, "backward, float32 lowest")


def test_a_nan_score_is_not_a_masked_row(rng):
    """A NaN in a key (every query reads it) makes the outputs NaN, and the gradients too: the row's
    sum is NaN, not 0, so lse is NaN and the backward's probabilities carry it (a NaN row had been
    taken for one whose every key was masked, and its gradients set to 0)."""
    for dtype in DTYPES:
        q, k, v = _qkv(rng, (2,), 4, 6, 3, 5, dtype)
        k[1, 5, 1] = np.nan
        out, lse = ops.scaled_dot_product_attention(q, k, v)
        assert np.all(np.isnan(out[1])) and np.all(np.isnan(lse[1])) and np.isfinite(out[0]).all()
        grads = ops.scaled_dot_product_attention_backward(np.ones_like(out), q, k, v, out, lse)
        for g in grads:
            assert np.all(np.isnan(g[1])) and np.isfinite(g[0]).all()


def test_no_keys_gives_zeros(rng):
    q, k, v = _qkv(rng, (2,), 3, 0, 4, 5, F64)
    out, lse = ops.scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 5) and np.all(out == 0) and np.all(np.isneginf(lse))


@pytest.mark.parametrize("lead", [(0, 3), (2, 0)], ids=str)
def test_zero_batch(rng, lead):
    q, k, v = _qkv(rng, lead, 3, 4, 2, 5, F32)
    out, lse = ops.scaled_dot_product_attention(q, k, v)
    assert out.shape == lead + (3, 5) and lse.shape == lead + (3,)
    grads = ops.scaled_dot_product_attention_backward(out, q, k, v, out, lse)
    assert [g.shape for g in grads] == [q.shape, k.shape, v.shape]


def test_no_queries_give_zero_key_gradients(rng):
    q, k, v = _qkv(rng, (2,), 0, 4, 3, 2, F64)
    out, lse = ops.scaled_dot_product_attention(q, k, v)
    dq, dk, dv = ops.scaled_dot_product_attention_backward(out, q, k, v, out, lse)
    assert dq.shape == q.shape and np.all(dk == 0) and np.all(dv == 0)


def test_empty_features_attend_uniformly(rng):
    """E = 0: every score is 0 (whatever the default scale 1/sqrt(0)), so each query averages the values."""
    q, k, v = _qkv(rng, (2,), 3, 4, 0, 5, F64)
    out, _ = ops.scaled_dot_product_attention(q, k, v)
    check(out, np.broadcast_to(v.mean(axis=-2, keepdims=True), out.shape), F64, "out")


@pytest.mark.parametrize("heads", [(4, 2, 2), (6, 3, 1), (4, 4, 4)], ids=str)
def test_grouped_query_heads(rng, heads):
    hq, hk, hv = heads
    q, k, v = rand(rng, (2, hq, 5, 4), F64), rand(rng, (2, hk, 7, 4), F64), rand(rng, (2, hv, 7, 3), F64)
    out, lse = ops.scaled_dot_product_attention(q, k, v, enable_gqa=True, is_causal=True)
    check(out, attention_ref(q, k, v, causal=True, enable_gqa=True), F64, "out")
    grad = rand(rng, out.shape, F64)
    got = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, is_causal=True, enable_gqa=True)
    _check_all(got, attention_backward_ref(grad, q, k, v, causal=True, enable_gqa=True), F64, "gqa")


def test_broadcast_batch_dims(rng):
    q, k, v = rand(rng, (3, 1, 2, 5, 4), F64), rand(rng, (2, 6, 4), F64), rand(rng, (4, 1, 6, 3), F64)
    mask = rng.random((4, 1, 5, 6)) < 0.8
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask, scale=0.3)
    assert out.shape == (3, 4, 2, 5, 3)
    check(out, attention_ref(q, k, v, mask, scale=0.3), F64, "out")
    grad = rand(rng, out.shape, F64)
    got = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask, scale=0.3)
    _check_all(got, attention_backward_ref(grad, q, k, v, mask, scale=0.3), F64, "broadcast")


def test_strided_and_transposed_inputs(rng):
    """q, k, v as (B, L, H, E) tensors transposed to (B, H, L, E), and a reversed, sliced value."""
    q = rand(rng, (2, 9, 3, 8), F32).transpose(0, 2, 1, 3)
    k = rand(rng, (2, 11, 3, 8), F32).transpose(0, 2, 1, 3)
    v = rand(rng, (2, 3, 11, 12), F32)[..., ::-2]
    out, lse = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
    check(out, attention_ref(q, k, v, causal=True), F32, "out", tol=TOL[F32])
    grad = rand(rng, (2, 9, 3, 6), F32).transpose(0, 2, 1, 3)
    got = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, is_causal=True)
    _check_all(got, attention_backward_ref(grad, q, k, v, causal=True), F32, "strided")


def _kernel_call(rng, dtype, n=3, n_q=5, s=70, e=4, ev=6, mask=True):
    q, k, v = rand(rng, (n, n_q, e), dtype), rand(rng, (2, s, e), dtype), rand(rng, (n, s, ev), dtype)
    index = np.arange(n, dtype=np.int64)
    k_index = index % 2
    m = np.where(rng.random((1, n_q, s)) < 0.8, 0.0, -np.inf).astype(dtype) if mask else None
    m_index = np.zeros(n, np.int64) if mask else None
    return q, k, v, k_index, index, m, m_index


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_kernels_write_every_output_element(rng, dtype):
    """Direct calls with NaN-prefilled outputs: everything is written (o, lse, dq, dk, dv)."""
    q, k, v, k_index, v_index, m, m_index = _kernel_call(rng, dtype)
    o, lse = np.full((3, 5, 6), np.nan, dtype), np.full((3, 5), np.nan, dtype)
    c_attention_forward(q, k, v, k_index, v_index, m, m_index, o, lse, 0.5, False, 0.0, 0, 0)
    ref_mask = m[0] == 0
    check(o, attention_ref(q, k[k_index], v, ref_mask, scale=0.5), dtype, "o", tol=TOL[dtype])
    grad = rand(rng, o.shape, dtype)
    dq, dk, dv = (np.full(shape, np.nan, dtype) for shape in ((3, 5, 4), (3, 70, 4), (3, 70, 6)))
    c_attention_backward(q, k, v, k_index, v_index, m, m_index, o, lse, grad, dq, dk, dv, 0.5, False, 0.0, 0, 0)
    refs = attention_backward_ref(grad, q, k[k_index], v, ref_mask, scale=0.5)
    _check_all((dq, dk, dv), refs, dtype, "kernel")


def test_results_do_not_depend_on_the_thread_count(rng):
    q, k, v = _qkv(rng, (5,), 100, 300, 16, 16, F32)
    results = []
    for n in (1, 2):
        previous = deepkern.get_num_threads()
        deepkern.set_num_threads(n)
        try:
            out, lse = ops.scaled_dot_product_attention(q, k, v)
            results.append((out, *ops.scaled_dot_product_attention_backward(out, q, k, v, out, lse)))
        finally:
            deepkern.set_num_threads(previous)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---- dropout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.3, 1.0])
def test_dropout_follows_the_philox_reference(rng, p):
    q, k, v = _qkv(rng, (2, 2), 7, 300, 5, 3, F64)
    dropout = (p, 12345, 2**64 - 3)  # the counter wraps around 2**64 inside the call
    out, lse = ops.scaled_dot_product_attention(q, k, v, dropout_p=p, seed=12345, offset=2**64 - 3, is_causal=True)
    check(out, attention_ref(q, k, v, causal=True, dropout=dropout), F64, "out", floor=1e-300)
    grad = rand(rng, out.shape, F64)
    got = ops.scaled_dot_product_attention_backward(
        grad, q, k, v, out, lse, dropout_p=p, is_causal=True, seed=12345, offset=2**64 - 3
    )
    refs = attention_backward_ref(grad, q, k, v, causal=True, dropout=dropout)
    for name, g, r in zip(("dq", "dk", "dv"), got, refs):
        check(g, r, F64, name, floor=1e-300)


def test_dropout_is_reproducible_and_drops_about_p(rng):
    q, k, v = _qkv(rng, (4,), 64, 64, 8, 64, F64)
    v = np.broadcast_to(np.eye(64), (4, 64, 64)).copy()  # out = the dropped probabilities themselves
    q[:] = 0  # uniform probabilities 1/64
    a, _ = ops.scaled_dot_product_attention(q, k, v, dropout_p=0.25, seed=7, offset=100)
    b, _ = ops.scaled_dot_product_attention(q, k, v, dropout_p=0.25, seed=7, offset=100)
    c, _ = ops.scaled_dot_product_attention(q, k, v, dropout_p=0.25, seed=8, offset=100)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    dropped = np.mean(a == 0)
    n = a.size
    assert abs(dropped - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n), dropped
    np.testing.assert_allclose(a[a != 0], 1 / 64 / 0.75)


def test_functional_dropout_gradient_by_finite_differences(rng):
    """F's dropout takes (seed, offset) from deepkern's Philox state: reset before each evaluation,
    the same mask, so finite differences see the function the backward differentiates."""
    q, k, v = (deepkern.tensor(x, requires_grad=True) for x in _qkv(rng, (2,), 3, 5, 4, 3, F64))
    state = deepkern.random.get_philox_state()

    def fn(*t):
        deepkern.random.set_philox_state(state)
        return F.scaled_dot_product_attention(*t, dropout_p=0.4)

    gradcheck(fn, q, k, v, rng=rng)
    deepkern.random.set_philox_state(state)
    before = deepkern.random.get_philox_state()
    F.scaled_dot_product_attention(q, k, v, dropout_p=0.4)
    assert deepkern.random.get_philox_state() == (before[0], before[1] + (2 * 3 * 5 + 3) // 4)


# ---- Tensors and autograd ------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"is_causal": True}, {"mask": "bool"}, {"enable_gqa": True}], ids=str)
def test_functional_gradients_by_finite_differences(rng, options):
    options = dict(options)
    hk = 1 if options.get("enable_gqa") else 2
    q = deepkern.tensor(rand(rng, (2, 3, 4), F64), requires_grad=True)
    k = deepkern.tensor(rand(rng, (hk, 5, 4), F64), requires_grad=True)
    v = deepkern.tensor(rand(rng, (hk, 5, 2), F64), requires_grad=True)
    if options.pop("mask", None):
        options["attn_mask"] = deepkern.tensor(rng.random((3, 5)) < 0.7)
    gradcheck(lambda *t: F.scaled_dot_product_attention(*t, **options), q, k, v, rng=rng)


def test_functional_is_in_nn_functional():
    assert "scaled_dot_product_attention" in F.__all__
    assert nn.functional.scaled_dot_product_attention is F.scaled_dot_product_attention


def _torch_attention(torch, q, k, v, mask, options):
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    tm = None if mask is None else torch.tensor(mask)
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, **options)
    return out, (tq, tk, tv)


@pytest.mark.parametrize(
    "case",
    [
        {"is_causal": True},
        {"mask": "bool"},
        {"mask": "float", "scale": 0.7},
        {"enable_gqa": True},
        {"mask": "fully masked row"},
    ],
    ids=str,
)
def test_matches_torch(rng, case):
    torch = pytest.importorskip("torch")
    case = dict(case)
    kind = case.pop("mask", None)
    hk = 2 if case.get("enable_gqa") else 4
    q, k, v = rand(rng, (2, 4, 9, 8), F32), rand(rng, (2, hk, 13, 8), F32), rand(rng, (2, hk, 13, 5), F32)
    mask = None
    if kind == "bool":
        mask = rng.random((4, 9, 13)) < 0.6
    elif kind == "float":
        mask = rng.standard_normal((2, 1, 9, 13)).astype(F32)
    elif kind:
        mask = rng.random((9, 13)) < 0.6
        mask[3] = False
    out_t, inputs_t = _torch_attention(torch, q, k, v, mask, case)
    grad = rand(rng, out_t.shape, F32)
    out_t.backward(torch.tensor(grad))
    tensors = [deepkern.tensor(x, requires_grad=True) for x in (q, k, v)]
    out = F.scaled_dot_product_attention(*tensors, attn_mask=mask, **case)
    out.backward(deepkern.tensor(grad))
    check(out.detach().numpy(), out_t.detach().numpy().astype(np.float64), F32, "out", tol=1e-5)
    for name, t, tt in zip(("dq", "dk", "dv"), tensors, inputs_t):
        check(t.grad.numpy(), tt.grad.numpy().astype(np.float64), F32, name, tol=1e-5)


def test_device_without_the_kernel_says_so(device):
    """On a device whose backend has no attention kernel the op names the kernel and the device; on
    one that has it (the CPU, the fake test device) the result matches the reference."""
    rng = np.random.default_rng(0)
    q, k, v = (rand(rng, (2, 3, 4), F64) for _ in range(3))
    dq, dk, dv = on_device(device, q, k, v)
    try:
        deepkern.backends.backend_of(dq, op="test").attention_forward  # noqa: B018 (the lookup is the test)
    except NotImplementedError:
        with raises_naming(NotImplementedError, "attention_forward", device):
            ops.scaled_dot_product_attention(dq, dk, dv)
        return
    out, _ = ops.scaled_dot_product_attention(dq, dk, dv)
    check(deepkern.backends.to_device(out, "cpu"), attention_ref(q, k, v), F64, "out")


# ---- the float mask's gradient ------------------------------------------------------------------


def _float_mask(rng, shape, dtype=F64, masked=0.2):
    """A random additive mask with about ``masked`` of its entries -inf."""
    return np.where(rng.random(shape) < masked, -np.inf, rng.standard_normal(shape)).astype(dtype)


def _summands_norm(grad, q, k, v, mask, full_shape, **options) -> float:
    """The size of the mask gradient's terms before the sums over broadcast dims: a mask constant
    along the keys has a gradient of 0 (the softmax ignores a shift of its row), whose rounding
    errors are relative to this."""
    return float(np.linalg.norm(attention_mask_grad_ref(grad, q, k, v, np.broadcast_to(mask, full_shape), **options)))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mask_shape", MASK_SHAPES + [(9,), (1, 3, 1, 1)], ids=str)
def test_mask_gradient_matches_the_reference(rng, mask_shape, dtype):
    """mask_grad=True adds attn_mask's gradient (summed over its broadcast dims) and leaves the
    others bit for bit as they were."""
    q, k, v = _qkv(rng, (2, 3), 6, 9, 5, 4, dtype)
    mask = _float_mask(rng, mask_shape, dtype)
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
    grad = rand(rng, out.shape, dtype)
    *got, dmask = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask, mask_grad=True)
    floor = _summands_norm(grad, q, k, v, mask, (2, 3, 6, 9))
    check(dmask, attention_mask_grad_ref(grad, q, k, v, mask), dtype, "dmask", tol=TOL[dtype], floor=floor)
    assert np.all(dmask[np.isneginf(mask)] == 0)
    for a, b in zip(got, ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mask_gradient_on_every_isa_and_thread_count(isa, threads, rng, dtype):
    """Blocks of the kernel (64 queries, 128 keys in the backward) and odd sizes, a mask per head."""
    q, k, v = _qkv(rng, (2, 3), 67, 261, 12, 7, dtype)
    mask = _float_mask(rng, (3, 67, 261), dtype)
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
    grad = rand(rng, out.shape, dtype)
    *_, dmask = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask, mask_grad=True)
    assert deepkern._C.last_isa("attention") == isa
    check(dmask, attention_mask_grad_ref(grad, q, k, v, mask), dtype, f"{isa} dmask", tol=TOL[dtype])


def test_mask_gradient_does_not_depend_on_the_thread_count(rng):
    """Problems sharing a 2-D mask are summed in a fixed order whatever thread ran them."""
    q, k, v = _qkv(rng, (5,), 100, 300, 16, 16, F32)
    mask = _float_mask(rng, (100, 300), F32)
    results = []
    for n in (1, 2):
        previous = deepkern.get_num_threads()
        deepkern.set_num_threads(n)
        try:
            out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
            results.append(ops.scaled_dot_product_attention_backward(out, q, k, v, out, lse, mask, mask_grad=True))
        finally:
            deepkern.set_num_threads(previous)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n_q, s, rows, cols", [(70, 300, 70, 300), (70, 300, 1, 300), (70, 300, 70, 1), (5, 7, 5, 7)])
def test_kernel_mask_gradient_with_causal_and_shared_keys(rng, n_q, s, rows, cols):
    """The kernel alone (a causal mask on top of the float mask is allowed there): dmask (N, Lm, Sm)
    per problem is NaN-prefilled and written everywhere; keys a query does not see get 0."""
    n = 4
    q, k, v = rand(rng, (n, n_q, 6), F64), rand(rng, (2, s, 6), F64), rand(rng, (n, s, 3), F64)
    k_index, v_index = np.arange(n, dtype=np.int64) // 2, np.arange(n, dtype=np.int64)
    m = _float_mask(rng, (2, rows, cols))
    m_index = np.arange(n, dtype=np.int64) % 2
    o, lse = np.empty((n, n_q, 3)), np.empty((n, n_q))
    args = (q, k, v, k_index, v_index, m, m_index)
    c_attention_forward(*args, o, lse, 0.4, True, 0.0, 0, 0)
    grad = rand(rng, o.shape, F64)
    dq, dk, dv = np.empty(q.shape), np.empty((n, s, 6)), np.empty(v.shape)
    dmask = np.full((n, rows, cols), np.nan)
    c_attention_backward(*args, o, lse, grad, dq, dk, dv, 0.4, True, 0.0, 0, 0, dmask)
    options = dict(causal=True, scale=0.4)
    ref = attention_mask_grad_ref(grad, q, k[k_index], v, m[m_index], **options)
    floor = _summands_norm(grad, q, k[k_index], v, m[m_index], (n, n_q, s), **options)
    check(dmask, ref, F64, "dmask", floor=floor)
    if rows != 1 and cols != 1:
        assert np.all(dmask[:, ~np.tril(np.ones((n_q, s), bool))] == 0)


def test_mask_gradient_with_dropout_is_of_the_scores_before_dropout(rng):
    q, k, v = _qkv(rng, (2, 2), 7, 300, 5, 3, F64)
    mask = _float_mask(rng, (2, 1, 7, 300))
    dropout = (0.3, 99, 2**64 - 3)
    options = dict(dropout_p=0.3, seed=99, offset=2**64 - 3)
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask, **options)
    grad = rand(rng, out.shape, F64)
    *_, dmask = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask, mask_grad=True, **options)
    check(dmask, attention_mask_grad_ref(grad, q, k, v, mask, dropout=dropout), F64, "dmask", floor=1e-300)


@pytest.mark.parametrize(
    "lead, n_q, s, mask_shape",
    [((0, 3), 4, 5, (3, 4, 5)), ((2,), 0, 5, (0, 5)), ((2,), 3, 0, (3, 0)), ((0, 3), 3, 4, (0, 1, 3, 4))],
    ids=str,
)
def test_mask_gradient_of_zero_sizes(rng, lead, n_q, s, mask_shape):
    q, k, v = _qkv(rng, lead, n_q, s, 3, 2, F64)
    mask = rand(rng, mask_shape, F64)
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
    *_, dmask = ops.scaled_dot_product_attention_backward(out, q, k, v, out, lse, mask, mask_grad=True)
    assert dmask.shape == mask.shape and dmask.dtype == F64 and np.all(dmask == 0)


def test_mask_gradient_keeps_the_mask_dtype(rng):
    q, k, v = _qkv(rng, (2,), 4, 6, 3, 2, F64)
    mask = rand(rng, (4, 6), F32)
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
    grad = rand(rng, out.shape, F64)
    *_, dmask = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask, mask_grad=True)
    check(dmask, attention_mask_grad_ref(grad, q, k, v, mask), F32, "dmask")


#: (query, key, value, mask) shapes and options of the finite-difference checks: broadcast masks,
#: odd L and S, grouped-query heads, dropout.
FD_CASES = [
    ((2, 3, 3, 4), (2, 3, 5, 4), (2, 3, 5, 2), (3, 5), {}),
    ((2, 3, 3, 4), (2, 3, 5, 4), (2, 3, 5, 2), (2, 3, 3, 5), {}),
    ((2, 3, 3, 4), (2, 3, 5, 4), (2, 3, 5, 2), (2, 1, 1, 5), {"scale": 0.7}),
    ((2, 3, 3, 4), (2, 3, 5, 4), (2, 3, 5, 2), (3, 1, 5), {}),
    ((1, 4, 3, 4), (1, 2, 5, 4), (1, 2, 5, 2), (4, 1, 5), {"enable_gqa": True}),
    ((2, 3, 4), (2, 7, 4), (2, 7, 3), (3, 7), {"dropout_p": 0.4}),
]


@pytest.mark.parametrize("case", FD_CASES, ids=str)
def test_mask_gradient_by_finite_differences(rng, case):
    q_shape, k_shape, v_shape, mask_shape, options = case
    tensors = [deepkern.tensor(rand(rng, shape, F64), requires_grad=True) for shape in (q_shape, k_shape, v_shape)]
    mask = deepkern.tensor(rng.standard_normal(mask_shape), requires_grad=True)
    state = deepkern.random.get_philox_state()

    def fn(q, k, v, m):
        deepkern.random.set_philox_state(state)  # dropout: the same mask at every evaluation
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m, **options)

    gradcheck(fn, *tensors, mask, rng=rng)
    assert mask.grad is not None and mask.grad.shape == mask_shape


def test_a_mask_without_grad_is_not_differentiated(rng, monkeypatch):
    """The backward asks for no mask gradient (the kernel computes none) unless the mask requires grad."""
    asked = []
    backward = ops.scaled_dot_product_attention_backward

    def spy(*args, mask_grad=False, **kwargs):
        asked.append(mask_grad)
        return backward(*args, mask_grad=mask_grad, **kwargs)

    monkeypatch.setattr(ops, "scaled_dot_product_attention_backward", spy)
    q, k, v = (deepkern.tensor(x, requires_grad=True) for x in _qkv(rng, (2,), 3, 5, 4, 3, F64))
    for mask, wants in ((deepkern.tensor(rand(rng, (3, 5), F64)), False), (rand(rng, (3, 5), F64), False)):
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
        assert asked.pop() is wants
    mask = deepkern.tensor(rand(rng, (3, 5), F64), requires_grad=True)
    F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
    assert asked.pop() is True and mask.grad is not None


def test_multihead_attention_float_mask_gets_its_gradient(rng):
    attention = nn.MultiheadAttention(8, 2, batch_first=True).double()
    x = deepkern.tensor(rand(rng, (2, 5, 8), F64), requires_grad=True)
    mask = deepkern.tensor(rng.standard_normal((5, 5)), requires_grad=True)
    gradcheck(lambda x, m: attention(x, x, x, attn_mask=m, need_weights=False)[0], x, mask, rng=rng)
    assert mask.grad.shape == (5, 5)


def test_multihead_attention_mask_gradient_matches_torch(rng):
    torch = pytest.importorskip("torch")
    ours = nn.MultiheadAttention(8, 2, batch_first=True)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.tensor(dict(ours.named_parameters())[name].detach().numpy()))
    x, m = rand(rng, (2, 5, 8), F32), rng.standard_normal((2 * 2, 5, 5)).astype(F32)
    mask, mask_t = deepkern.tensor(m, requires_grad=True), torch.tensor(m, requires_grad=True)
    xt = torch.tensor(x)
    ours(deepkern.tensor(x), deepkern.tensor(x), deepkern.tensor(x), attn_mask=mask, need_weights=False)[
        0
    ].sum().backward()
    theirs(xt, xt, xt, attn_mask=mask_t, need_weights=False)[0].sum().backward()
    check(mask.grad.numpy(), mask_t.grad.numpy().astype(np.float64), F32, "dmask", tol=1e-5)


def test_mask_gradient_matches_torch(rng):
    torch = pytest.importorskip("torch")
    q, k, v = rand(rng, (2, 4, 9, 8), F32), rand(rng, (2, 4, 13, 8), F32), rand(rng, (2, 4, 13, 5), F32)
    for mask_shape in ((9, 13), (2, 1, 9, 13), (4, 1, 13)):
        m = _float_mask(rng, mask_shape, F32)
        tm = torch.tensor(m, requires_grad=True)
        out_t = torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(x) for x in (q, k, v)), attn_mask=tm)
        grad = rand(rng, out_t.shape, F32)
        out_t.backward(torch.tensor(grad))
        mask = deepkern.tensor(m, requires_grad=True)
        F.scaled_dot_product_attention(*(deepkern.tensor(x) for x in (q, k, v)), attn_mask=mask).backward(
            deepkern.tensor(grad)
        )
        check(mask.grad.numpy(), tm.grad.numpy().astype(np.float64), F32, f"dmask {mask_shape}", tol=1e-5)


def test_create_graph_through_the_mask_gradient_is_refused(rng):
    """Gradients are not differentiable: asking for their graph is an error naming create_graph, not a
    graph-less result."""
    q, k, v = (deepkern.tensor(x, requires_grad=True) for x in _qkv(rng, (2,), 3, 5, 4, 3, F64))
    mask = deepkern.tensor(rand(rng, (3, 5), F64), requires_grad=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with raises_naming(NotImplementedError, "create_graph"):
        deepkern.autograd.grad(out.sum(), [mask], create_graph=True)
    (dmask,) = deepkern.autograd.grad(out.sum(), [mask])
    assert not dmask.requires_grad


def test_mask_gradient_bad_arguments_are_named(rng):
    q, k, v = _qkv(rng, (2,), 3, 5, 4, 3, F64)
    out, lse = ops.scaled_dot_product_attention(q, k, v)
    for mask, needle in ((None, "None"), (np.ones((3, 5), bool), "bool")):
        with raises_naming(ValueError, "backward", "mask_grad", "float attn_mask", needle):
            ops.scaled_dot_product_attention_backward(out, q, k, v, out, lse, mask, mask_grad=True)
    with raises_naming(TypeError, "mask_grad", "bool"):
        ops.scaled_dot_product_attention_backward(out, q, k, v, out, lse, mask_grad=1)
    index = np.arange(2, dtype=np.int64)
    outputs = (np.empty((2, 3, 4)), np.empty((2, 5, 4)), np.empty((2, 5, 3)))
    with raises_naming(ValueError, "attention_backward", "dmask", "needs a mask"):
        c_attention_backward(q, k, v, index, index, None, None, out, lse, out, *outputs, 0.5, False, 0.0, 0, 0,
                             np.empty((2, 3, 5)))  # fmt: skip
    with raises_naming(ValueError, "dmask", r"\(2, 3, 5\)"):
        c_attention_backward(q, k, v, index, index, np.zeros((1, 3, 5)), np.zeros(2, np.int64), out, lse, out,
                             *outputs, 0.5, False, 0.0, 0, 0, np.empty((2, 3, 4)))  # fmt: skip


# ---- bad arguments --------------------------------------------------------------------------------

BAD = [
    ("mask and causal", lambda q, k, v: dict(attn_mask=np.ones((3, 5), bool), is_causal=True), ValueError,
     ["attn_mask", "is_causal"]),
    ("E mismatch", lambda q, k, v: dict(key=k[..., :3]), ValueError, ["key", r"E = 4"]),
    ("S mismatch", lambda q, k, v: dict(value=v[:, :4]), ValueError, ["value", "S = 5"]),
    ("dtype mismatch", lambda q, k, v: dict(key=k.astype(np.float32)), TypeError, ["query, key and value", "float32"]),
    ("int query", lambda q, k, v: dict(query=q.astype(np.int32)), TypeError, ["query", "int32"]),
    ("1-D query", lambda q, k, v: dict(query=q[0, 0]), ValueError, ["query", "at least 2 dims"]),
    ("heads", lambda q, k, v: dict(key=np.ones((3, 5, 4)), value=np.ones((3, 5, 2))), ValueError,
     ["leading dims", r"\(2, 3, 4\)"]),
    ("gqa heads", lambda q, k, v: dict(key=np.ones((1, 2, 5, 4)), value=np.ones((1, 2, 5, 2)), enable_gqa=True,
     query=np.ones((1, 3, 3, 4))), ValueError, ["heads in key \\(2\\)", "query \\(3\\)"]),
    ("mask shape", lambda q, k, v: dict(attn_mask=np.ones((4, 5), bool)), ValueError,
     ["attn_mask", r"\(4, 5\)", r"\(2, 3, 5\)"]),
    ("mask dtype", lambda q, k, v: dict(attn_mask=np.ones((3, 5), np.int64)), TypeError, ["attn_mask", "int64"]),
    ("dropout_p", lambda q, k, v: dict(dropout_p=1.5), ValueError, ["dropout_p", "1.5"]),
    ("dropout_p type", lambda q, k, v: dict(dropout_p="0.1"), TypeError, ["dropout_p"]),
    ("scale type", lambda q, k, v: dict(scale="1"), TypeError, ["scale"]),
    ("is_causal type", lambda q, k, v: dict(is_causal=1), TypeError, ["is_causal", "bool"]),
    ("seed", lambda q, k, v: dict(seed=-1), ValueError, ["seed"]),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=lambda c: c[0])
def test_bad_arguments_are_named(rng, case):
    _, change, exc, needles = case
    q, k, v = rand(rng, (2, 3, 4), F64), rand(rng, (2, 5, 4), F64), rand(rng, (2, 5, 2), F64)
    args = dict(query=q, key=k, value=v)
    args.update(change(q, k, v))
    with raises_naming(exc, "scaled_dot_product_attention", *needles):
        ops.scaled_dot_product_attention(**args)


def test_backward_checks_the_saved_arrays(rng):
    q, k, v = rand(rng, (2, 3, 4), F64), rand(rng, (2, 5, 4), F64), rand(rng, (2, 5, 2), F64)
    out, lse = ops.scaled_dot_product_attention(q, k, v)
    with raises_naming(ValueError, "backward", "lse", r"\(2, 3\)"):
        ops.scaled_dot_product_attention_backward(out, q, k, v, out, lse[:, :2])
    with raises_naming(TypeError, "backward", "grad", "float64"):
        ops.scaled_dot_product_attention_backward(out.astype(np.float32), q, k, v, out, lse)
