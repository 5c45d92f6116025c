"""PyTorch's long tail of tensor functions (tensor_long_tail.py and their function forms): values and
gradients against PyTorch in float64 on random inputs (odd sizes, zeros, NaN and inf where they
matter), gradients also by finite differences, and the errors."""

from __future__ import annotations

import math

import deepkern as dk
import numpy as np
import pytest

from checks import gradcheck, raises_naming

torch = pytest.importorskip("torch")


def _positive(rng, shape):
    return rng.uniform(0.2, 2.0, shape)


def _unit(rng, shape):
    return rng.uniform(-0.9, 0.9, shape)


def _probability(rng, shape):
    return rng.uniform(0.05, 0.95, shape)


# name -> (inputs made from rng, the call on either library's module and tensors)
CASES = {
    "mm": (lambda r: [r.standard_normal((3, 5)), r.standard_normal((5, 4))], lambda m, a, b: a.mm(b)),
    "bmm": (lambda r: [r.standard_normal((2, 3, 5)), r.standard_normal((2, 5, 4))], lambda m, a, b: a.bmm(b)),
    "mv": (lambda r: [r.standard_normal((3, 5)), r.standard_normal(5)], lambda m, a, b: m.mv(a, b)),
    "dot": (lambda r: [r.standard_normal(7), r.standard_normal(7)], lambda m, a, b: m.dot(a, b)),
    "addmm": (
        lambda r: [r.standard_normal((1, 4)), r.standard_normal((3, 5)), r.standard_normal((5, 4))],
        lambda m, c, a, b: m.addmm(c, a, b, beta=0.5, alpha=-2.0),
    ),
    "view_as": (lambda r: [r.standard_normal((2, 6)), r.standard_normal((3, 4))], lambda m, a, b: a.view_as(b) * 2),
    "where": (
        lambda r: [r.standard_normal((3, 4)), r.standard_normal((1, 4))],
        lambda m, a, b: a.where(a > 0, b),
    ),
    "tan": (lambda r: [_unit(r, (3, 5))], lambda m, a: m.tan(a)),
    "sinh": (lambda r: [r.standard_normal((3, 5))], lambda m, a: m.sinh(a)),
    "cosh": (lambda r: [r.standard_normal((3, 5))], lambda m, a: a.cosh()),
    "asin": (lambda r: [_unit(r, (3, 5))], lambda m, a: m.asin(a)),
    "acos": (lambda r: [_unit(r, (3, 5))], lambda m, a: m.arccos(a)),
    "atan": (lambda r: [r.standard_normal((3, 5)) * 3], lambda m, a: a.atan()),
    "erf": (lambda r: [r.standard_normal((3, 5)) * 2], lambda m, a: m.erf(a)),
    "erfc": (lambda r: [r.standard_normal((3, 5)) * 3], lambda m, a: a.erfc()),
    "exp2": (lambda r: [r.standard_normal((3, 5)) * 4], lambda m, a: m.exp2(a)),
    "atan2": (lambda r: [r.standard_normal((3, 5)), r.standard_normal((1, 5))], lambda m, a, b: m.atan2(a, b)),
    "hypot": (lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 1))], lambda m, a, b: a.hypot(b)),
    "logaddexp": (
        lambda r: [r.standard_normal((3, 5)) * 30, r.standard_normal(5) * 30],
        lambda m, a, b: m.logaddexp(a, b),
    ),
    "lerp": (
        lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 5)), r.uniform(-0.5, 1.5, (3, 5))],
        lambda m, a, b, w: m.lerp(a, b, w),
    ),
    "lerp_number": (lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 5))], lambda m, a, b: a.lerp(b, 0.75)),
    "logit": (lambda r: [_probability(r, (3, 5))], lambda m, a: m.logit(a)),
    "logit_eps": (lambda r: [r.uniform(0.0, 1.0, (4, 6))], lambda m, a: a.logit(eps=0.2)),
    "xlogy": (lambda r: [_positive(r, (3, 5)), _positive(r, (3, 5))], lambda m, a, b: m.xlogy(a, b)),
    "addcmul": (
        lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 5)), r.standard_normal(5)],
        lambda m, a, b, c: m.addcmul(a, b, c, value=0.3),
    ),
    "addcdiv": (
        lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 5)), _positive(r, (3, 5))],
        lambda m, a, b, c: a.addcdiv(b, c, value=-2),
    ),
    "nansum": (
        lambda r: [np.where(r.random((4, 5)) < 0.3, np.nan, r.standard_normal((4, 5)))],
        lambda m, a: m.nansum(a, 1),
    ),
    "nanmean": (
        lambda r: [np.where(r.random((4, 5)) < [[0], [0.4], [0.4], [0.4]], np.nan, r.standard_normal((4, 5)))],
        lambda m, a: a.nanmean(0, keepdim=True),
    ),
    "nan_to_num": (
        lambda r: [np.array([[np.nan, 1.0, -np.inf], [np.inf, -2.0, 0.5]])],
        lambda m, a: m.nan_to_num(a, nan=7.0, neginf=-3.0),
    ),
    "diff": (
        lambda r: [r.standard_normal((4, 6)), r.standard_normal((4, 2))],
        lambda m, a, p: m.diff(a, n=2, dim=1, prepend=p),
    ),
    "trace": (lambda r: [r.standard_normal((4, 6))], lambda m, a: m.trace(a)),
    "diag_vector": (lambda r: [r.standard_normal(4)], lambda m, a: m.diag(a, -2)),
    "diag_matrix": (lambda r: [r.standard_normal((4, 6))], lambda m, a: a.diag(1)),
    "take_along_dim": (
        lambda r: [r.standard_normal((3, 1, 5))],
        lambda m, a: m.take_along_dim(a, m.tensor([[[4, 0], [1, 1]]]), 2),
    ),
    "take_along_none": (lambda r: [r.standard_normal((3, 4))], lambda m, a: a.take_along_dim(m.tensor([11, 0, 5]))),
    "tensor_split": (lambda r: [r.standard_normal((3, 7))], lambda m, a: m.cat(m.tensor_split(a, 3, dim=1)[1:], 1)),
    "tensor_split_indices": (
        lambda r: [r.standard_normal((8, 2))],
        lambda m, a: m.tensor_split(a, [2, 9, 5])[1] * 3,
    ),
    "rot90": (lambda r: [r.standard_normal((2, 3, 4))], lambda m, a: m.rot90(a, 3, (2, 0))),
    "rot90_1": (lambda r: [r.standard_normal((3, 4))], lambda m, a: a.rot90()),
    "fliplr": (lambda r: [r.standard_normal((3, 4))], lambda m, a: m.fliplr(a) + m.flipud(a)),
    "ravel": (lambda r: [r.standard_normal((3, 4))], lambda m, a: a.t().ravel()),
    "cumprod": (lambda r: [r.standard_normal((3, 6))], lambda m, a: m.cumprod(a, 1)),
    "cumprod_zeros": (
        lambda r: [
            np.array([[1.5, 0.0, 2.0, -1.0, 0.0, 3.0], [0.0, 2.0, 0.5, 1.0, 1.0, 2.0], [2.0, -1.0, 0.5, 0.0, 4.0, 1.0]])
        ],
        lambda m, a: a.cumprod(1),
    ),
    "median_all": (lambda r: [r.standard_normal((4, 5))], lambda m, a: m.median(a)),
    "median_dim": (lambda r: [r.standard_normal((4, 6))], lambda m, a: a.median(1, keepdim=True).values),
    "kthvalue": (lambda r: [r.standard_normal((4, 5))], lambda m, a: m.kthvalue(a, 2, 0).values),
    "cdist": (lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((2, 5, 4))], lambda m, a, b: m.cdist(a, b)),
    "cdist_p1": (
        lambda r: [r.standard_normal((3, 4)), r.standard_normal((5, 4))],
        lambda m, a, b: m.cdist(a, b, p=1.0),
    ),
    "index_add": (
        lambda r: [r.standard_normal((3, 5)), r.standard_normal((3, 4))],
        lambda m, a, b: a.index_add(1, m.tensor([4, 0, 4, 2]), b, alpha=-1.5),
    ),
    "index_copy": (
        lambda r: [r.standard_normal((4, 3)), r.standard_normal((2, 3))],
        lambda m, a, b: m.index_copy(a, 0, m.tensor([3, 1]), b),
    ),
    "index_fill": (lambda r: [r.standard_normal((3, 5))], lambda m, a: a.index_fill(1, m.tensor([1, 3, 1]), -2.0)),
    "cross": (lambda r: [r.standard_normal((4, 3)), r.standard_normal((4, 3))], lambda m, a, b: m.cross(a, b, dim=1)),
    "cummax": (lambda r: [r.standard_normal((3, 6))], lambda m, a: m.cummax(a, 1).values),
    "cummin": (lambda r: [r.standard_normal((5, 2))], lambda m, a: a.cummin(0).values),
    "logcumsumexp": (lambda r: [r.standard_normal((3, 6)) * 40], lambda m, a: m.logcumsumexp(a, 1)),
    "sinc": (lambda r: [np.append(r.standard_normal(5), 0.0)], lambda m, a: m.sinc(a)),
    "copysign": (
        lambda r: [r.standard_normal((3, 4)), np.append(r.standard_normal(3), -0.0)],
        lambda m, a, b: a.copysign(b),
    ),
    "float_power": (lambda r: [_positive(r, (3, 4)), r.standard_normal((3, 4))], lambda m, a, b: m.float_power(a, b)),
    "diag_embed": (lambda r: [r.standard_normal((2, 3))], lambda m, a: m.diag_embed(a, -1, 0, 2)),
    "sum_to_size": (lambda r: [r.standard_normal((2, 3, 4))], lambda m, a: a.sum_to_size(3, 1)),
    "meshgrid": (
        lambda r: [r.standard_normal(3), r.standard_normal(4), r.standard_normal(2)],
        lambda m, a, b, c: m.stack([g * (i + 1) for i, g in enumerate(m.meshgrid(a, b, c, indexing="xy"))]),
    ),
    "broadcast_tensors": (
        lambda r: [r.standard_normal((3, 1)), r.standard_normal(4)],
        lambda m, a, b: m.stack(m.broadcast_tensors(a, b)) * 2,
    ),
    "stacks": (
        lambda r: [r.standard_normal(3), r.standard_normal(3)],
        lambda m, a, b: m.cat([m.hstack([a, b]), m.vstack([a, b]).reshape(-1), m.column_stack([a, b]).reshape(-1)]),
    ),
}


def _torch_call(name, arrays):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = CASES[name][1](torch, *tensors)
    return tensors, out


@pytest.mark.parametrize("name", sorted(CASES))
def test_long_tail_matches_torch_in_values_and_gradients(name, rng):
    arrays = CASES[name][0](rng)
    tensors = [dk.tensor(a, requires_grad=True) for a in arrays]
    out = CASES[name][1](dk, *tensors)
    ref_inputs, ref = _torch_call(name, arrays)
    assert out.shape == tuple(ref.shape) and out.dtype == np.float64
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    weights = rng.standard_normal(out.shape)
    (out * dk.tensor(weights)).sum().backward()
    (ref * torch.tensor(weights)).sum().backward()
    for t, r in zip(tensors, ref_inputs):
        expected = np.zeros(r.shape) if r.grad is None else r.grad.numpy()
        got = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


FINITE_DIFFERENCE_CASES = [
    "tan",
    "erf",
    "erfc",
    "exp2",
    "atan2",
    "hypot",
    "logaddexp",
    "cumprod",
    "cumprod_zeros",
    "cdist",
]


@pytest.mark.parametrize("name", FINITE_DIFFERENCE_CASES)
def test_long_tail_gradients_by_finite_differences(name, rng):
    tensors = [dk.tensor(a, requires_grad=True) for a in CASES[name][0](rng)]
    gradcheck(lambda *ts: CASES[name][1](dk, *ts), *tensors)


def test_float32_results_round_once_from_float64(rng):
    x = rng.standard_normal((5, 7)).astype(np.float32)
    for name in ("erf", "erfc", "tan", "sinh", "atan", "exp2"):
        got = getattr(dk.tensor(x), name)().numpy()
        ref = getattr(torch, name)(torch.tensor(x, dtype=torch.float64)).numpy()
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=2e-7, atol=1e-30, err_msg=name)
    assert dk.tensor([1, 2]).erf().dtype == np.float32  # integers compute in float32, as PyTorch


def test_nan_and_inf_rules_follow_torch():
    values = [np.nan, 1.0, 3.0, -2.0, 5.0]
    assert math.isnan(dk.median(dk.tensor(values)).item())
    median = dk.tensor([values, [4.0, 1.0, 2.0, 9.0, 0.0]]).median(1)
    ref = torch.tensor([values, [4.0, 1.0, 2.0, 9.0, 0.0]]).median(1)
    np.testing.assert_array_equal(median.values.numpy(), ref.values.numpy())
    np.testing.assert_array_equal(median.indices.numpy(), ref.indices.numpy())
    a = np.array([0.0, 0.0, 2.0, 0.0, np.inf])
    b = np.array([0.0, np.nan, 3.0, np.inf, 1.0])
    np.testing.assert_array_equal(
        dk.xlogy(dk.tensor(a), dk.tensor(b)).numpy(), torch.xlogy(torch.tensor(a), torch.tensor(b)).numpy()
    )
    np.testing.assert_array_equal(dk.tensor(a).xlogy(0.0).numpy(), torch.tensor(a).xlogy(0.0).numpy())
    grads = []
    for lib in (dk, torch):  # the gradient at x = 0 is log(y) (0 where y is 0 too), as PyTorch's
        x, y = lib.tensor([0.0, 0.0, 2.0], requires_grad=True), lib.tensor([0.0, 3.0, 0.5], requires_grad=True)
        lib.xlogy(x, y).sum().backward()
        grads.append((x.grad.numpy(), y.grad.numpy()))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-7)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-7)  # NaN where x and y are both 0
    y = dk.tensor([np.nan, np.inf, -np.inf, 1.0], dtype=dk.float32)
    np.testing.assert_array_equal(y.nan_to_num().numpy(), torch.tensor(y.numpy()).nan_to_num().numpy())
    assert dk.tensor([-np.inf, -np.inf]).logaddexp(dk.tensor([-np.inf, 1.0])).tolist() == [-np.inf, 1.0]
    big = dk.tensor([1e200, 3.0], dtype=dk.float64)
    np.testing.assert_allclose(
        big.hypot(dk.tensor([1e200, 4.0], dtype=dk.float64)).numpy(), [math.sqrt(2) * 1e200, 5.0], rtol=1e-15
    )
    assert math.isnan(dk.median(dk.tensor(np.zeros(0))).item())


def test_non_differentiable_results_match_torch(rng):
    x = rng.integers(-2, 3, (4, 5)).astype(np.float64)
    tx = torch.tensor(x)
    for flags in [(False, False), (True, False), (False, True), (True, True)]:
        got = dk.unique(dk.tensor(x), return_inverse=flags[0], return_counts=flags[1])
        ref = torch.unique(tx, return_inverse=flags[0], return_counts=flags[1])
        got, ref = (got, ref) if isinstance(ref, tuple) else ((got,), (ref,))
        for g, r in zip(got, ref):
            np.testing.assert_array_equal(g.numpy(), r.numpy())
    got = dk.tensor(x).unique(dim=0, return_inverse=True)
    ref = tx.unique(dim=0, return_inverse=True)
    np.testing.assert_array_equal(got[0].numpy(), ref[0].numpy())
    np.testing.assert_array_equal(got[1].numpy(), ref[1].numpy())
    assert dk.count_nonzero(dk.tensor(x)).item() == torch.count_nonzero(tx).item()
    np.testing.assert_array_equal(dk.tensor(x).count_nonzero(dim=(0,)).numpy(), tx.count_nonzero(dim=(0,)).numpy())
    y = x + rng.standard_normal(x.shape) * 1e-9
    np.testing.assert_array_equal(
        dk.isclose(dk.tensor(x), dk.tensor(y)).numpy(), torch.isclose(tx, torch.tensor(y)).numpy()
    )
    assert dk.allclose(dk.tensor(x), dk.tensor(y)) and not dk.tensor(x).allclose(dk.tensor(y + 1))
    p, q = dk.tensor(x > 0), dk.tensor(x < 1)
    for op in ("logical_and", "logical_or", "logical_xor"):
        np.testing.assert_array_equal(
            getattr(dk, op)(p, q).numpy(), getattr(torch, op)(torch.tensor(x > 0), torch.tensor(x < 1)).numpy()
        )
    assert dk.bitwise_not(dk.tensor([5, -1])).tolist() == [-6, 0]
    boundaries = np.array([-1.0, 0.0, 0.5, 2.0])
    values = np.array([[-3.0, 0.0, 0.5], [2.0, 1.0, 9.0]])
    for right in (False, True):
        np.testing.assert_array_equal(
            dk.bucketize(dk.tensor(values), dk.tensor(boundaries), right=right).numpy(),
            torch.bucketize(torch.tensor(values), torch.tensor(boundaries), right=right).numpy(),
        )
        seq = np.sort(rng.standard_normal((2, 6)), axis=1)
        np.testing.assert_array_equal(
            dk.searchsorted(dk.tensor(seq), dk.tensor(values), right=right).numpy(),
            torch.searchsorted(torch.tensor(seq), torch.tensor(values), right=right).numpy(),
        )
    for offset in (-2, 0, 3):
        np.testing.assert_array_equal(dk.tril_indices(4, 6, offset).numpy(), torch.tril_indices(4, 6, offset).numpy())
        np.testing.assert_array_equal(dk.triu_indices(5, 3, offset).numpy(), torch.triu_indices(5, 3, offset).numpy())
    k = dk.tensor(x).kthvalue(3, 1)
    ref_k = tx.kthvalue(3, 1)
    np.testing.assert_array_equal(k.values.numpy(), ref_k.values.numpy())


def test_in_place_variants_write_the_tensor_and_record_the_change(rng):
    x = rng.uniform(0.5, 2.0, (3, 4))
    for name in (
        "neg",
        "abs",
        "sqrt",
        "log",
        "sigmoid",
        "tanh",
        "relu",
        "square",
        "floor",
        "sin",
        "reciprocal",
        "rsqrt",
    ):
        t = dk.tensor(x.copy())
        assert getattr(t, name + "_")() is t
        np.testing.assert_allclose(t.numpy(), getattr(torch.tensor(x), name)().numpy(), rtol=1e-15, err_msg=name)
    w = dk.tensor(x, requires_grad=True)
    y = w * 1.0
    y.clamp_min_(0.8).tril_().addcmul_(w, w, value=0.5).sigmoid_()
    y.sum().backward()
    tw = torch.tensor(x, requires_grad=True)
    ty = tw * 1.0
    ty.clamp_min_(0.8).tril_().addcmul_(tw, tw, value=0.5).sigmoid_()
    ty.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-14)
    with raises_naming(RuntimeError, "relu_", "leaf"):
        dk.tensor(x, requires_grad=True).relu_()
    with raises_naming(RuntimeError, "sqrt_", "int64"):
        dk.tensor([4, 9]).sqrt_()


def test_function_forms_are_the_methods(rng):
    a = dk.tensor(rng.standard_normal((3, 4)))
    np.testing.assert_array_equal(dk.mul(a, 2).numpy(), (a * 2).numpy())
    np.testing.assert_array_equal(dk.sub(a, a, alpha=2).numpy(), (-a).numpy())
    np.testing.assert_array_equal(dk.transpose(a, 0, 1).numpy(), a.numpy().T)
    np.testing.assert_array_equal(dk.reshape(a, (4, 3)).numpy(), a.numpy().reshape(4, 3))
    assert dk.unsqueeze(a, 1).shape == (3, 1, 4) and dk.squeeze(dk.unsqueeze(a, 0)).shape == (3, 4)
    assert dk.permute(a, (1, 0)).shape == (4, 3) and dk.numel(a) == 12 and dk.t(a).shape == (4, 3)
    assert dk.concat([a, a], 1).shape == (3, 8) and dk.concatenate([a, a]).shape == (6, 4)
    assert dk.broadcast_to(dk.tensor([1.0, 2.0]), (3, 2)).shape == (3, 2)
    assert dk.true_divide(dk.tensor([1, 2]), 2).dtype == np.float32
    assert dk.equal(a, dk.clone(a)) and dk.select(a, 1, 2).shape == (3,)


def test_errors_name_the_function_and_shapes():
    m = dk.ones(2, 3)
    with raises_naming(RuntimeError, "mm", "2x3", "2x3"):
        m.mm(m)
    with raises_naming(RuntimeError, "mm", "mat2", "matrix"):
        m.mm(dk.ones(3))
    with raises_naming(RuntimeError, "dot", "dtype"):
        dk.ones(3).dot(dk.ones(3, dtype=dk.float64))
    with raises_naming(RuntimeError, "mv", "size mismatch"):
        m.mv(dk.ones(2))
    with raises_naming(RuntimeError, "trace", "matrix"):
        dk.ones(3).trace()
    with raises_naming(RuntimeError, "kthvalue", "out of range"):
        m.kthvalue(4)
    with raises_naming(RuntimeError, "tensor_split", "sections"):
        m.tensor_split(0)
    with raises_naming(RuntimeError, "rot90", "dims"):
        m.rot90(1, (1, 1))
    with raises_naming(RuntimeError, "nanmean", "floating"):
        dk.tensor([1, 2]).nanmean()
    with raises_naming(RuntimeError, "cdist", "last dimension"):
        dk.cdist(dk.ones(2, 3), dk.ones(2, 4))
    with raises_naming(RuntimeError, "take_along_dim", "same number of dimensions"):
        m.take_along_dim(dk.tensor([0]), 1)
    with raises_naming(ValueError, "meshgrid", "indexing"):
        dk.meshgrid(dk.ones(2), indexing="yx")
    with raises_naming(IndexError, "median", "empty"):
        dk.ones(2, 0).median(1)


def test_counting_and_random_draws(rng):
    values = rng.integers(0, 7, 40)
    weights = rng.standard_normal(40)
    np.testing.assert_array_equal(
        dk.bincount(dk.tensor(values), minlength=9).numpy(), torch.bincount(torch.tensor(values), minlength=9).numpy()
    )
    np.testing.assert_allclose(
        dk.tensor(values).bincount(dk.tensor(weights)).numpy(),
        torch.tensor(values).bincount(torch.tensor(weights)).numpy(),
        rtol=1e-14,
    )
    ties = np.array([[1.0, 3.0, 3.0, 2.0, 5.0, 5.0], [np.nan, 1.0, np.nan, 4.0, 0.0, 9.0]])
    for op in ("cummax", "cummin"):
        got, ref = getattr(dk.tensor(ties), op)(1), getattr(torch.tensor(ties), op)(1)
        np.testing.assert_array_equal(got.values.numpy(), ref.values.numpy())
        np.testing.assert_array_equal(got.indices.numpy(), ref.indices.numpy())
    dk.manual_seed(3)
    draws = dk.full((20000,), 0.3, dtype=dk.float64).bernoulli()
    assert set(np.unique(draws.numpy())) <= {0.0, 1.0} and abs(draws.numpy().mean() - 0.3) < 0.02
    filled = dk.zeros(20000).bernoulli_(dk.full((20000,), 0.8))
    assert abs(filled.numpy().mean() - 0.8) < 0.02 and filled.dtype == np.float32
    np.testing.assert_array_equal(dk.tensor([-1.0, 0.0, 2.0]).heaviside(dk.tensor(0.5)).numpy(), [0.0, 0.5, 1.0])
    assert dk.signbit(dk.tensor([-0.0, 0.0, -2.0])).tolist() == [True, False, True]
    with raises_naming(RuntimeError, "bincount", "non-negative"):
        dk.tensor([1, -1]).bincount()
    with raises_naming(IndexError, "index_add", "out of range"):
        dk.zeros(3).index_add(0, dk.tensor([3]), dk.ones(1))
    with raises_naming(RuntimeError, "index_copy", "source must have shape"):
        dk.zeros(3, 2).index_copy(0, dk.tensor([0, 1]), dk.ones(2, 3))
    with raises_naming(RuntimeError, "cross", "size 3"):
        dk.ones(2, 4).cross(dk.ones(2, 4))


def test_indexed_updates_in_place_record_the_change(rng):
    x, src = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))

    def run(lib):
        leaf, source = lib.tensor(x, requires_grad=True), lib.tensor(src, requires_grad=True)
        y = leaf * 1.0
        y.index_add_(1, lib.tensor([3, 0]), source, alpha=2.0)
        y.index_fill_(0, lib.tensor([1]), 0.5)
        y.index_copy_(1, lib.tensor([2, 1]), source * 3)
        (y * y).sum().backward()
        return y.detach().numpy(), leaf.grad.numpy(), source.grad.numpy()

    for got, ref in zip(run(dk), run(torch)):
        np.testing.assert_allclose(got, ref, rtol=1e-14)


@pytest.mark.parametrize(
    "name, arrays, call",
    [
        ("median ties", [[1.0, 2.0, 2.0, 3.0]], lambda m, a: m.median(a)),
        ("nanmedian ties", [[1.0, 2.0, np.nan, 2.0, 5.0]], lambda m, a: m.nanmedian(a)),
        ("cdist inf ties", [[[2.0, 3.0]], [[0.0, 1.0]]], lambda m, a, b: m.cdist(a, b, p=float("inf"))),
        ("atan2 at the origin", [[0.0, 1.0], [0.0, 2.0]], lambda m, a, b: m.atan2(a, b)),
        ("logaddexp of infinities", [[np.inf, 1.0], [-np.inf, np.inf]], lambda m, a, b: m.logaddexp(a, b)),
        ("nanmean of an all-NaN slice", [[[np.nan, np.nan], [1.0, np.nan]]], lambda m, a: m.nanmean(a, 1)),
        ("nansum's NaN", [[[np.nan, 5.0], [1.0, np.nan]]], lambda m, a: m.nansum(a, 0)),
        ("var with no degree of freedom", [[[1.0, 1.0], [3.0, 4.0]]], lambda m, a: a.var(1, correction=2)),
        ("std with no degree of freedom", [[[1.0, 1.0], [3.0, 4.0]]], lambda m, a: a.std(1, correction=2)),
    ],
)
def test_gradients_at_ties_and_special_points_follow_torch(name, arrays, call):
    """Where the rule is PyTorch's choice: a no-dim median's gradient shared by its ties, cdist's inf
    norm giving each tied coordinate the whole gradient, atan2's gradient 0 at (0, 0), logaddexp's
    finite at infinite operands, nanmean's NaN over an all-NaN slice (nansum passes g * not-NaN),
    var's 2 (x - mean) g / 0 = +-inf (or NaN at the mean) when the correction leaves no degree of
    freedom."""
    results = []
    for lib in (torch, dk):
        tensors = [lib.tensor(np.array(a), requires_grad=True) for a in arrays]
        out = call(lib, *tensors)
        out.sum().backward()
        results.append([out.detach().numpy()] + [t.grad.numpy() for t in tensors])
    for got, ref in zip(results[1], results[0]):
        np.testing.assert_allclose(got, ref, rtol=1e-14, err_msg=name)  # NaN where PyTorch's is NaN


def test_nan_and_bool_rules_of_unique_diff_and_cdist_p0():
    values = [1.0, np.nan, np.nan, 2.0]
    np.testing.assert_array_equal(dk.unique(dk.tensor(values)).numpy(), torch.unique(torch.tensor(values)).numpy())
    flags = [True, False, False, True]
    assert dk.diff(dk.tensor(flags)).tolist() == torch.diff(torch.tensor(flags)).tolist()
    a, b = [[2.0, 3.0], [1.0, 1.0]], [[0.0, 3.0]]
    np.testing.assert_array_equal(
        dk.cdist(dk.tensor(a), dk.tensor(b), p=0.0).numpy(),
        torch.cdist(torch.tensor(a), torch.tensor(b), p=0.0).numpy(),
    )
