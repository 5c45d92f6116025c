"""Layer and group normalization's fused kernels (``deepkern.ops.layer_norm``/``group_norm``,
their backward passes, ``F.layer_norm``/``F.group_norm`` and the LayerNorm/GroupNorm layers)
against the float64 references of reference_nn.py: float32 and float64, D = 1, odd D, several
normalized axes, zero rows, large mean offsets beside a small spread, NaN-prefilled outputs,
strided inputs, every thread count, finite-difference gradients, PyTorch's results (when it is
installed), bad arguments, and the device seam."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import backends, nn, ops
from deepkern.nn import functional as F

from checks import check, gradcheck, raises_naming
from fake_device import FakeBackend, fake
from reference_nn import group_norm_backward_ref, group_norm_ref, layer_norm_backward_ref, layer_norm_ref

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]
AFFINE = ["weight_bias", "weight", "none"]

#: (x shape, normalized_shape)
LAYER_SHAPES = [
    ((5, 1), (1,)),
    ((7, 3), (3,)),
    ((4, 33), (33,)),
    ((2, 3, 129), (129,)),
    ((3, 4, 5), (4, 5)),
    ((0, 16), (16,)),
    ((3, 0), (0,)),
    ((300, 768), (768,)),
    ((9,), (9,)),
]
#: (x shape, groups)
GROUP_SHAPES = [
    ((2, 4), 2),
    ((3, 6, 5), 3),
    ((2, 8, 3, 5), 4),
    ((1, 5, 7), 1),
    ((2, 6, 1, 1), 6),
    ((0, 4, 3), 2),
    ((4, 32, 9, 9), 8),
]


def _params(rng, shape, dtype, affine):
    w = rng.standard_normal(shape).astype(dtype) if affine != "none" else None
    b = rng.standard_normal(shape).astype(dtype) if affine == "weight_bias" else None
    return w, b


#: op -> (forward, backward, float64 forward reference, float64 backward reference)
OPS = {
    "layer_norm": (ops.layer_norm, ops.layer_norm_backward, layer_norm_ref, layer_norm_backward_ref),
    "group_norm": (ops.group_norm, ops.group_norm_backward, group_norm_ref, group_norm_backward_ref),
}


def _check_forward_and_backward(op, x, size, w, b, eps, w_terms, rng):
    """``op``'s output (into a NaN-prefilled ``out``), saved statistics and three gradients
    against the float64 references. grad_x is a difference of terms of size |g * weight| * rstd
    (``w_terms``: the weight broadcast against x), which cancel exactly for rows of one element:
    they set its error floor."""
    forward, backward, forward_ref, backward_ref = OPS[op]
    out = np.full(x.shape, np.nan, x.dtype)
    result, mean, rstd = forward(x, size, w, b, eps=eps, out=out)
    ref, ref_mean, ref_rstd = forward_ref(x, size, w, b, eps=eps)
    assert result is out
    check(out, ref, x.dtype, "out")
    assert mean.dtype == F64 and rstd.dtype == F64
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rstd, ref_rstd, rtol=1e-12)

    g = rng.standard_normal(x.shape).astype(x.dtype)
    grads = backward(g, x, size, w, mean, rstd)
    refs = backward_ref(g, x, size, w, eps=eps)
    terms = float(np.linalg.norm(g * (1 if w is None else w_terms)) * np.max(rstd, initial=1e-3))
    for got, want, name, floor in zip(grads, refs, ("grad_x", "grad_weight", "grad_bias"), (terms, 1e-3, 1e-3)):
        check(got, want, x.dtype, name, floor=floor)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,normalized", LAYER_SHAPES, ids=str)
@pytest.mark.parametrize("affine", AFFINE)
def test_layer_norm_matches_reference(shape, normalized, dtype, affine, rng):
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    w, b = _params(rng, normalized, dtype, affine)
    _check_forward_and_backward("layer_norm", x, normalized, w, b, 1e-4, w, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,groups", GROUP_SHAPES, ids=str)
@pytest.mark.parametrize("affine", ["weight_bias", "none"])
def test_group_norm_matches_reference(shape, groups, dtype, affine, rng):
    x = (rng.standard_normal(shape) * 2 - 3).astype(dtype)
    w, b = _params(rng, (shape[1],), dtype, affine)
    w_terms = None if w is None else w.reshape((-1,) + (1,) * (len(shape) - 2))
    _check_forward_and_backward("group_norm", x, groups, w, b, 1e-3, w_terms, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_large_mean_offset_keeps_the_variance(dtype, rng):
    """Rows of 1e4 + N(0, 1): float64 two-pass statistics keep float32's accuracy (a one-pass
    float32 E[x^2] - E[x]^2 keeps none); in float64 the centring's condition, |mean| / std = 1e4,
    bounds what any computation keeps."""
    x = (1e4 + rng.standard_normal((64, 1000))).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    tol = 1e-5 if dtype == F32 else 1e-12 * 1e4
    out, mean, rstd = ops.layer_norm(x, 1000)
    check(out, layer_norm_ref(x, (1000,))[0], dtype, "layer_norm out", tol=tol)
    gx = ops.layer_norm_backward(g, x, 1000, None, mean, rstd)[0]
    check(gx, layer_norm_backward_ref(g, x, (1000,))[0], dtype, "layer_norm grad_x", tol=tol)
    x4 = x.reshape(4, 16, 10, 100)
    out, _, _ = ops.group_norm(x4, 4)
    check(out, group_norm_ref(x4, 4)[0], dtype, "group_norm out", tol=tol)


def test_float64_deviations_whose_squares_overflow_are_normalized(rng):
    """float64 rows whose deviations square past the largest double (|x| > ~1e154) are normalized as
    the same rows scaled down are (the variance overflowed to inf, so every output had been 0)."""
    x = np.array([[1e300, -1e300, 0.0, 1.0], [3e200, 1e200, -2e200, 5.0]])
    scaled = x / np.array([[1e300], [1e200]])
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    out, _, rstd = ops.layer_norm(x, 4, w, b)
    check(out, layer_norm_ref(scaled, (4,), w, b, eps=0.0)[0], np.float64, "layer_norm of huge values")
    assert np.all(rstd > 0)
    g = rng.standard_normal(x.shape)
    grad_x = ops.layer_norm_backward(g, x, 4, w, *ops.layer_norm(x, 4, w, b)[1:])[0]
    expected = layer_norm_backward_ref(g, scaled, (4,), w, eps=0.0)[0] / np.array([[1e300], [1e200]])
    check(grad_x, expected, np.float64, "layer_norm_backward of huge values")
    x3 = x.reshape(2, 2, 2)
    out, _, _ = ops.group_norm(x3, 1)
    check(out, group_norm_ref(scaled.reshape(2, 2, 2), 1, eps=0.0)[0], np.float64, "group_norm of huge values")


def test_float64_rows_of_one_huge_value_normalize_to_zero(rng):
    """A constant float64 row of a huge value (1e20, 3e38) normalizes to 0 (bias), as PyTorch's: sum /
    n lands a rounding step off the value, and that step had been taken for the whole deviation
    (every output +-1); the mean takes its correction."""
    for value, length in ((1e20, 99), (1e20, 1000), (3e38, 768), (-7e30, 33)):
        x = np.full((2, length), value)
        out, mean, _ = ops.layer_norm(x, length)
        np.testing.assert_array_equal(out, 0)
        np.testing.assert_array_equal(mean, value)
        out, _, _ = ops.group_norm(x.reshape(2, 1, length), 1)
        np.testing.assert_array_equal(out, 0)


def test_threads_give_the_reference_and_the_same_parameter_gradients(threads, rng):
    """Rows split over the threads; the weight and bias gradients from per-thread partials."""
    x = rng.standard_normal((515, 131)).astype(np.float32)
    w, b = _params(rng, (131,), np.float32, "weight_bias")
    g = rng.standard_normal(x.shape).astype(np.float32)
    out, mean, rstd = ops.layer_norm(x, (131,), w, b)
    check(out, layer_norm_ref(x, (131,), w, b)[0], F32, "out")
    grads = ops.layer_norm_backward(g, x, (131,), w, mean, rstd)
    for got, want, name in zip(grads, layer_norm_backward_ref(g, x, (131,), w), ("gx", "gw", "gb")):
        check(got, want, F32, name)
    again = ops.layer_norm_backward(g, x, (131,), w, mean, rstd)
    for first, second in zip(grads, again):
        np.testing.assert_array_equal(first, second)  # the partial sums are added in a fixed order
    x4 = rng.standard_normal((6, 12, 20, 30)).astype(np.float32)
    g4 = rng.standard_normal(x4.shape).astype(np.float32)
    _, mean, rstd = ops.group_norm(x4, 3, w[:12], b[:12])
    grads = ops.group_norm_backward(g4, x4, 3, w[:12], mean, rstd)
    for got, want, name in zip(grads, group_norm_backward_ref(g4, x4, 3, w[:12]), ("gx", "gw", "gb")):
        check(got, want, F32, f"group {name}")


#: Row counts about the backward's flush of its weight and bias sums (every 8 rows of a thread)
#: and widths about the vector width and the row sums' groups (16 float32 lanes, groups of 4).
FLUSH_ROWS = [1, 7, 8, 9, 17, 70]
WIDTHS = [1, 15, 16, 17, 63, 64, 65, 200, 513]
NEEDS = [(True, True, True), (False, True, True), (True, False, False), (False, False, True), (False, True, False)]


@pytest.mark.parametrize("rows", FLUSH_ROWS)
@pytest.mark.parametrize("d", WIDTHS)
def test_backward_rows_and_widths(rows, d, threads, rng):
    """Every row count about the flush of the parameter sums (within each thread's rows) and
    every width about the vector and group widths, each against the float64 reference."""
    x = (rng.standard_normal((rows, d)) * 2 - 1).astype(np.float32)
    w, b = _params(rng, (d,), np.float32, "weight_bias")
    g = rng.standard_normal(x.shape).astype(np.float32)
    out = np.full(x.shape, np.nan, np.float32)
    _, mean, rstd = ops.layer_norm(x, d, w, b, out=out)
    check(out, layer_norm_ref(x, (d,), w, b)[0], F32, "out")
    refs = layer_norm_backward_ref(g, x, (d,), w)
    terms = float(np.linalg.norm(g * w) * np.max(rstd))
    for got, want, name, floor in zip(
        ops.layer_norm_backward(g, x, d, w, mean, rstd), refs, ("gx", "gw", "gb"), (terms, 0, 0)
    ):
        check(got, want, F32, name, floor=floor)


@pytest.mark.parametrize("needs", NEEDS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_needs_select_each_gradient_with_the_others_unchanged(needs, dtype, threads, rng):
    """Any subset of the three gradients, over rows that flush the parameter sums several times
    with a partial last flush: each one asked for equals the reference, the others are None."""
    x = rng.standard_normal((45, 37)).astype(dtype)
    w = rng.standard_normal(37).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    _, mean, rstd = ops.layer_norm(x, 37, w)
    grads = ops.layer_norm_backward(g, x, 37, w, mean, rstd, needs=needs)
    for got, want, wanted, name in zip(grads, layer_norm_backward_ref(g, x, (37,), w), needs, ("gx", "gw", "gb")):
        if wanted:
            check(got, want, dtype, name)
        else:
            assert got is None, name


def test_parameter_gradients_of_many_rows_keep_float32_accuracy(threads, rng):
    """grad_weight and grad_bias summed over 20003 rows whose terms share a sign (no cancellation
    to hide rounding): the sums in float32 over a few rows at a time, then float64, stay within
    float32's rounding of the float64 reference, column by column."""
    x = (rng.standard_normal((20003, 24)) + 3).astype(np.float32)
    g = (rng.random(x.shape) + 0.5).astype(np.float32)
    _, mean, rstd = ops.layer_norm(x, 24)
    _, gw, gb = ops.layer_norm_backward(g, x, 24, None, mean, rstd)
    _, want_w, want_b = layer_norm_backward_ref(g, x, (24,), np.ones(24))
    np.testing.assert_allclose(gb, want_b, rtol=1e-6)
    np.testing.assert_allclose(gw, want_w, rtol=1e-5, atol=1e-6 * np.abs(g).sum(axis=0).max())


def test_strided_inputs_and_output(rng):
    x = rng.standard_normal((6, 10)).astype(np.float64)
    xt = np.ascontiguousarray(x.T).T
    big = np.full((6, 21), np.nan)
    out = big[:, 1::2]
    w = rng.standard_normal(20)[::2]
    result, _, _ = ops.layer_norm(xt, (10,), w, None, out=out)
    assert result is out
    check(out, layer_norm_ref(x, (10,), w)[0], F64, "out")
    assert np.isnan(big[:, ::2]).all()


def test_needs_selects_the_gradients(rng):
    x = rng.standard_normal((4, 6))
    w = rng.standard_normal(6)
    _, mean, rstd = ops.layer_norm(x, 6, w)
    gx, gw, gb = ops.layer_norm_backward(x, x, 6, w, mean, rstd, needs=(False, True, False))
    assert gx is None and gb is None
    check(gw, layer_norm_backward_ref(x, x, (6,), w)[1], F64, "grad_weight")


# ---- autograd and layers ----------------------------------------------------------------------


def test_layer_norm_gradients_match_finite_differences(rng):
    x = dk.tensor(rng.standard_normal((3, 2, 5)), requires_grad=True)
    w = dk.tensor(rng.standard_normal((2, 5)), requires_grad=True)
    b = dk.tensor(rng.standard_normal((2, 5)), requires_grad=True)
    gradcheck(lambda x, w, b: F.layer_norm(x, (2, 5), w, b, eps=1e-3), x, w, b, rng=rng)


def test_group_norm_gradients_match_finite_differences(rng):
    x = dk.tensor(rng.standard_normal((2, 6, 3)), requires_grad=True)
    w = dk.tensor(rng.standard_normal(6), requires_grad=True)
    b = dk.tensor(rng.standard_normal(6), requires_grad=True)
    gradcheck(lambda x, w, b: F.group_norm(x, 3, w, b, eps=1e-3), x, w, b, rng=rng)


def test_layers_have_pytorchs_parameters():
    ln = nn.LayerNorm((3, 4))
    assert ln.weight.shape == (3, 4) and ln.bias.shape == (3, 4)
    np.testing.assert_array_equal(ln.weight.detach().numpy(), 1)
    np.testing.assert_array_equal(ln.bias.detach().numpy(), 0)
    assert set(nn.LayerNorm(4, bias=False).state_dict()) == {"weight"}
    assert nn.LayerNorm(4, elementwise_affine=False).state_dict() == {}
    gn = nn.GroupNorm(2, 6)
    assert set(gn.state_dict()) == {"weight", "bias"} and gn.weight.shape == (6,)
    np.testing.assert_array_equal(gn.weight.detach().numpy(), 1)
    assert nn.GroupNorm(2, 6, affine=False).state_dict() == {}


def test_layers_check_their_input(rng):
    with raises_naming(ValueError, "LayerNorm", r"\(2, 3\)", r"\(\*, 4\)"):
        nn.LayerNorm(4)(dk.tensor(rng.standard_normal((2, 3)).astype(np.float32)))
    with raises_naming(ValueError, "GroupNorm", "num_groups", "4", "6"):
        nn.GroupNorm(4, 6)
    with raises_naming(ValueError, "GroupNorm", r"\(N, 6, \*\)"):
        nn.GroupNorm(2, 6)(dk.tensor(rng.standard_normal((2, 4)).astype(np.float32)))


# ---- PyTorch ----------------------------------------------------------------------------------


def _torch_grads(torch, fn, x, params, g):
    """fn's output and the gradients of (out * g).sum() with respect to x and the parameters."""
    tx = torch.tensor(x, requires_grad=True)
    tp = [None if p is None else torch.tensor(p, requires_grad=True) for p in params]
    out = fn(tx, *tp)
    (out * torch.tensor(g)).sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for t in [tx] + tp if t is not None]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_layer_norm_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((4, 3, 10)) * 2 + 5).astype(dtype)
    w, b = _params(rng, (3, 10), dtype, "weight_bias")
    g = rng.standard_normal(x.shape).astype(dtype)
    want, want_grads = _torch_grads(
        torch, lambda t, tw, tb: torch.nn.functional.layer_norm(t, (3, 10), tw, tb), x, (w, b), g
    )
    tensors = [dk.tensor(a, requires_grad=True) for a in (x, w, b)]
    got = F.layer_norm(tensors[0], (3, 10), tensors[1], tensors[2])
    (got * dk.tensor(g)).sum().backward()
    tol = 1e-5 if dtype == F32 else 1e-12
    check(got.detach().numpy(), want.astype(np.float64), dtype, "out", tol=tol)
    for t, want_grad, name in zip(tensors, want_grads, ("x", "weight", "bias")):
        check(t.grad.numpy(), want_grad.astype(np.float64), dtype, f"grad {name}", tol=tol * 10)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_group_norm_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((3, 6, 4, 5)) - 2).astype(dtype)
    w, b = _params(rng, (6,), dtype, "weight_bias")
    g = rng.standard_normal(x.shape).astype(dtype)
    want, want_grads = _torch_grads(torch, lambda t, tw, tb: torch.nn.functional.group_norm(t, 3, tw, tb), x, (w, b), g)
    tensors = [dk.tensor(a, requires_grad=True) for a in (x, w, b)]
    got = F.group_norm(tensors[0], 3, tensors[1], tensors[2])
    (got * dk.tensor(g)).sum().backward()
    tol = 1e-5 if dtype == F32 else 1e-12
    check(got.detach().numpy(), want.astype(np.float64), dtype, "out", tol=tol)
    for t, want_grad, name in zip(tensors, want_grads, ("x", "weight", "bias")):
        check(t.grad.numpy(), want_grad.astype(np.float64), dtype, f"grad {name}", tol=tol * 10)


@pytest.mark.parametrize(
    "make", [lambda m: m.LayerNorm((4, 5)), lambda m: m.LayerNorm(5, bias=False), lambda m: m.GroupNorm(2, 4)]
)
def test_torch_state_dicts_load_and_give_torchs_output(make, rng):
    torch = pytest.importorskip("torch")
    theirs, ours = make(torch.nn), make(nn)
    assert {k: tuple(v.shape) for k, v in theirs.state_dict().items()} == {
        k: tuple(v.shape) for k, v in ours.state_dict().items()
    }
    for k, v in theirs.state_dict().items():  # PyTorch's initialisation
        np.testing.assert_array_equal(ours.state_dict()[k].detach().numpy(), v.numpy())
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, dtype=p.dtype))
    ours.load_state_dict({k: dk.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    want = theirs(torch.tensor(x)).detach().numpy()
    check(ours(dk.tensor(x)).detach().numpy(), want.astype(np.float64), F32, "out")


# ---- bad arguments and devices ----------------------------------------------------------------


@pytest.mark.parametrize(
    "call,exc,needles",
    [
        (lambda x: ops.layer_norm(x, (4,)), ValueError, ["normalized_shape", r"\(4,\)", r"\(3, 5\)"]),
        (lambda x: ops.layer_norm(x, ()), ValueError, ["normalized_shape"]),
        (lambda x: ops.layer_norm(x, (1.5,)), TypeError, ["normalized_shape"]),
        (lambda x: ops.layer_norm(x, 5, np.ones(4)), ValueError, ["weight", r"\(5,\)", r"\(4,\)"]),
        (lambda x: ops.layer_norm(x, 5, None, np.ones(5, np.float32)), TypeError, ["bias", "float64", "float32"]),
        (lambda x: ops.layer_norm(x.astype(np.int32), 5), TypeError, ["x", "int32"]),
        (lambda x: ops.layer_norm(x, 5, eps=-1.0), ValueError, ["eps", "-1"]),
        (lambda x: ops.layer_norm(x, 5, out=np.empty((3, 4))), ValueError, ["out", r"\(3, 5\)"]),
        (lambda x: ops.layer_norm(x, 5, out=x), ValueError, ["out", "overlaps", "x"]),
        (
            lambda x: ops.layer_norm_backward(x, x, 5, None, np.zeros(3), np.zeros(2)),
            ValueError,
            ["save_rstd", r"\(3,\)"],
        ),
        (lambda x: ops.layer_norm_backward(x[:2], x, 5, None, None, None), ValueError, ["grad_out", r"\(2, 5\)"]),
        (
            lambda x: ops.layer_norm_backward(x, x, 5, None, np.zeros(3), np.ones(3), needs=(True,)),
            ValueError,
            ["layer_norm_backward", "needs", "three"],
        ),
        (
            lambda x: ops.group_norm_backward(x, x, 1, None, np.zeros((3, 1)), np.ones((3, 1)), needs=None),
            ValueError,
            ["group_norm_backward", "needs", "None"],
        ),
        (
            lambda x: ops.batch_norm_backward(x, x, None, np.zeros(5), np.ones(5), True, needs=(1, 1, 1, 1)),
            ValueError,
            ["batch_norm_backward", "needs"],
        ),
        (lambda x: ops.group_norm(x, 2), ValueError, ["num_groups", "3", "2"]),
        (lambda x: ops.group_norm(x, 0), ValueError, ["num_groups", "0"]),
        (lambda x: ops.group_norm(x, 1.0), TypeError, ["num_groups", "float"]),
        (lambda x: ops.group_norm(x[0], 1), ValueError, ["x", r"\(5,\)"]),
        (lambda x: ops.group_norm(x, 5, np.ones(3)), ValueError, ["weight", r"\(5,\)", r"\(3,\)"]),
        (
            lambda x: ops.group_norm_backward(x, x, 5, None, np.zeros(3), np.zeros(3)),
            ValueError,
            ["save_mean", r"\(3, 5\)"],
        ),
    ],
)
def test_bad_arguments_are_named(call, exc, needles, rng):
    with raises_naming(exc, *needles):
        call(rng.standard_normal((3, 5)))


@pytest.fixture
def registry(monkeypatch):
    """The backends' registry, restored after the test."""
    monkeypatch.setattr(backends, "_BACKENDS", {n: b for n, b in backends._BACKENDS.items() if n != FakeBackend.name})


def test_runs_on_another_device_through_its_backend(registry, rng):
    backend = backends.register(FakeBackend())
    x, w = rng.standard_normal((4, 6)), rng.standard_normal(6)
    out, mean, rstd = ops.layer_norm(fake(x), 6, fake(w))
    check(np.asarray(out), layer_norm_ref(x, (6,), w)[0], F64, "out")
    grads = ops.layer_norm_backward(fake(x), fake(x), 6, fake(w), mean, rstd)
    x3 = x.reshape(2, 4, 3)
    out, mean, rstd = ops.group_norm(fake(x3), 2)
    grads += ops.group_norm_backward(fake(x3), fake(x3), 2, None, mean, rstd)
    assert {"layer_norm_forward", "layer_norm_backward", "group_norm_forward", "group_norm_backward"} <= set(
        backend.calls
    )
    assert all(type(a).__name__ == "FakeArray" for a in grads)


@pytest.mark.parametrize("op", ["layer_norm_forward", "group_norm_forward"])
def test_a_backend_without_the_kernels_names_op_and_device(registry, op):
    backends.register(FakeBackend(kernels=backends.KERNELS - {op}))
    x = fake(np.ones((2, 4)))
    with raises_naming(NotImplementedError, op, "fake"):
        ops.layer_norm(x, 4) if op.startswith("layer") else ops.group_norm(x, 2)
