"""The long tail of PyTorch's tensor API on deepkern's Tensor: function forms, factories, dtype names,
shape ops, gathers and scatters, sorting, statistics, logical operators, in-place fills, gradient
hooks, autograd.grad, module hooks and containers. Each op against a float64 NumPy reference on
every device, its gradient by finite differences, and (where torch is installed) against PyTorch's
own results and gradients on the same inputs; bad arguments raise errors naming them."""

from __future__ import annotations

import math

import deepkern as dk
import numpy as np
import pytest

from checks import gradcheck, raises_naming
from conftest import to_host

INF = math.inf
# Gather/scatter indices for a (3, 4) input along dim 1: repeats in GATHER_IDX, none in SCATTER_IDX.
GATHER_IDX = [[0, 2, 2], [3, 0, 1], [1, 1, 3]]
SCATTER_IDX = [[3, 0], [1, 2], [0, 3]]


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_gather(x, idx, axis):
    return np.take_along_axis(x, np.asarray(idx), axis)


def _np_scatter(x, idx, src, add=False):
    out = x.copy()
    rows = np.arange(len(idx))[:, None]
    if add:
        np.add.at(out, (rows, np.asarray(idx)), src[:, : len(idx[0])])
    else:
        out[rows, np.asarray(idx)] = src[:, : len(idx[0])]
    return out


def _np_roll_flat(x, k):
    return np.roll(x.reshape(-1), k).reshape(x.shape)


def _stable_desc(x, axis):
    n = x.shape[axis]
    return (n - 1) - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)


def _topk(x, k, axis, largest):
    order = _stable_desc(x, axis) if largest else np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis), idx


# id -> (f(module, x) written once for deepkern and torch, its float64 NumPy reference, input shape).
# Inputs are standard normal; ops that need positive inputs take x.abs() + 0.5.
CASES = {
    "exp": (lambda m, x: m.exp(x), np.exp, (3, 4)),
    "log": (lambda m, x: m.log(x.abs() + 0.5), lambda x: np.log(np.abs(x) + 0.5), (3, 4)),
    "sin": (lambda m, x: m.sin(x), np.sin, (3, 4)),
    "cos": (lambda m, x: m.cos(x), np.cos, (3, 4)),
    "sqrt": (lambda m, x: m.sqrt(x.abs() + 0.5), lambda x: np.sqrt(np.abs(x) + 0.5), (3, 4)),
    "tanh": (lambda m, x: m.tanh(x), np.tanh, (3, 4)),
    "sigmoid": (lambda m, x: m.sigmoid(x), lambda x: 1 / (1 + np.exp(-x)), (3, 4)),
    "abs": (lambda m, x: m.abs(x), np.abs, (3, 4)),
    "relu": (lambda m, x: m.relu(x), lambda x: np.maximum(x, 0), (3, 4)),
    "pow": (lambda m, x: m.pow(x, 2) + m.pow(x.abs() + 0.5, x), lambda x: x**2 + (np.abs(x) + 0.5) ** x, (3, 4)),
    "pow_number_base": (lambda m, x: m.pow(1.5, x), lambda x: 1.5**x, (3, 4)),
    "clamp": (lambda m, x: m.clamp(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), (3, 4)),
    "clamp_min": (lambda m, x: m.clamp(x, min=0.1), lambda x: np.maximum(x, 0.1), (3, 4)),
    "clamp_tensor_bounds": (
        lambda m, x: x.clamp(min=x[0] * 0.5, max=x[:, :1].abs() + 0.2),
        lambda x: np.minimum(np.maximum(x, x[0] * 0.5), np.abs(x[:, :1]) + 0.2),
        (3, 4),
    ),
    "clamp_constant_tensor_bound": (
        lambda m, x: m.clamp(x, max=x.new_tensor([0.1, -0.2, 0.3, 0.0])),
        lambda x: np.minimum(x, [0.1, -0.2, 0.3, 0.0]),
        (3, 4),
    ),
    "softmax": (lambda m, x: m.softmax(x, 1), lambda x: _softmax(x, 1), (3, 4)),
    "log_softmax": (lambda m, x: m.log_softmax(x, dim=0), lambda x: np.log(_softmax(x, 0)), (3, 4)),
    "flatten": (lambda m, x: m.flatten(x, 1), lambda x: x.reshape(2, 12), (2, 3, 4)),
    "matmul": (lambda m, x: m.matmul(x, x.transpose(0, 1)), lambda x: x @ x.T, (3, 4)),
    "matmul_1d": (lambda m, x: m.matmul(x, x[0]), lambda x: x @ x[0], (4, 4)),
    "bmm": (lambda m, x: m.bmm(x, x.transpose(1, 2)), lambda x: x @ x.transpose(0, 2, 1), (2, 3, 4)),
    "einsum": (lambda m, x: m.einsum("bij,bkj->bik", x, x), lambda x: np.einsum("bij,bkj->bik", x, x), (2, 3, 4)),
    "einsum_implicit": (lambda m, x: m.einsum("ij,kj", x, x * 2), lambda x: np.einsum("ij,kj", x, x * 2), (3, 4)),
    "einsum_list": (lambda m, x: m.einsum("ij,j->i", [x, x[0]]), lambda x: x @ x[0], (4, 4)),
    "einsum_ellipsis": (lambda m, x: m.einsum("...ij->...ji", x), lambda x: np.swapaxes(x, -1, -2), (2, 3, 4)),
    "einsum_sum": (lambda m, x: m.einsum("ijk->j", x), lambda x: x.sum(axis=(0, 2)), (2, 3, 4)),
    "tril": (lambda m, x: m.tril(x), lambda x: np.tril(x), (2, 3, 4)),
    "tril_diag": (lambda m, x: x.tril(-1), lambda x: np.tril(x, -1), (4, 3)),
    "triu": (lambda m, x: m.triu(x, 1), lambda x: np.triu(x, 1), (2, 3, 4)),
    "where": (lambda m, x: m.where(x > 0, x, x * 2), lambda x: np.where(x > 0, x, x * 2), (3, 4)),
    "sum_dims": (lambda m, x: m.sum(x, (0, 2)), lambda x: x.sum(axis=(0, 2)), (2, 3, 4)),
    "mean_keepdim": (lambda m, x: m.mean(x, 1, keepdim=True), lambda x: x.mean(axis=1, keepdims=True), (3, 4)),
    "max_all": (lambda m, x: m.max(x), np.max, (3, 4)),
    "max_dim": (lambda m, x: m.max(x, 1), lambda x: (x.max(1), x.argmax(1)), (3, 4)),
    "min_dim_keepdim": (
        lambda m, x: m.min(x, 0, keepdim=True),
        lambda x: (x.min(0, keepdims=True), x.argmin(0)[None]),
        (3, 4),
    ),
    "max_other": (lambda m, x: m.max(x, x.flip(0)), lambda x: np.maximum(x, x[::-1]), (3, 4)),
    "minimum": (lambda m, x: m.minimum(x, x[:1]), lambda x: np.minimum(x, x[:1]), (3, 4)),
    "argmin": (lambda m, x: m.argmin(x, 1), lambda x: x.argmin(1), (3, 4)),
    "argmax_all": (lambda m, x: m.argmax(x), np.argmax, (3, 4)),
    "narrow": (lambda m, x: m.narrow(x, 1, 1, 2), lambda x: x[:, 1:3], (3, 4)),
    "narrow_negative": (lambda m, x: x.narrow(0, -2, 2), lambda x: x[-2:], (3, 4)),
    "chunk": (lambda m, x: m.chunk(x, 3, dim=1), lambda x: (x[:, :3], x[:, 3:6], x[:, 6:]), (2, 7)),
    "chunk_fewer": (lambda m, x: x.chunk(4), lambda x: (x[:2], x[2:4], x[4:]), (6, 2)),
    "split_size": (lambda m, x: m.split(x, 3, 1), lambda x: (x[:, :3], x[:, 3:6], x[:, 6:]), (2, 7)),
    "split_sections": (lambda m, x: x.split([2, 0, 5], dim=1), lambda x: (x[:, :2], x[:, 2:2], x[:, 2:]), (2, 7)),
    "unbind": (lambda m, x: m.unbind(x, 1), lambda x: tuple(x[:, i] for i in range(4)), (3, 4)),
    "select": (lambda m, x: x.select(1, -1), lambda x: x[:, -1], (3, 4)),
    "repeat": (lambda m, x: x.repeat(2, 1, 3), lambda x: np.tile(x, (2, 1, 3)), (2, 3)),
    "repeat_same_ndim": (lambda m, x: x.repeat(1, 2), lambda x: np.tile(x, (1, 2)), (3, 2)),
    "expand_as": (lambda m, x: x[:1].expand_as(x), lambda x: np.broadcast_to(x[:1], x.shape), (3, 4)),
    "flip": (lambda m, x: m.flip(x, (0, 2)), lambda x: np.flip(x, (0, 2)), (2, 3, 4)),
    "roll": (lambda m, x: m.roll(x, 2, 1), lambda x: np.roll(x, 2, 1), (3, 4)),
    "roll_dims": (lambda m, x: x.roll((1, -3), (0, 1)), lambda x: np.roll(x, (1, -3), (0, 1)), (3, 4)),
    "roll_flat": (lambda m, x: x.roll(5), lambda x: _np_roll_flat(x, 5), (3, 4)),
    "gather": (
        lambda m, x: m.gather(x, 1, x.new_tensor(GATHER_IDX, dtype=m.long)),
        lambda x: _np_gather(x, GATHER_IDX, 1),
        (3, 4),
    ),
    "gather_dim0": (
        lambda m, x: x.gather(0, x.new_tensor([[2, 0, 1, 2]], dtype=m.long)),
        lambda x: _np_gather(x, [[2, 0, 1, 2]], 0),
        (3, 4),
    ),
    "scatter": (
        lambda m, x: x.scatter(1, x.new_tensor(SCATTER_IDX, dtype=m.long), x[:, :2] * 3),
        lambda x: _np_scatter(x, SCATTER_IDX, x * 3),
        (3, 4),
    ),
    "scatter_src_larger": (
        lambda m, x: x.scatter(1, x.new_tensor(SCATTER_IDX, dtype=m.long), x * 3),
        lambda x: _np_scatter(x, SCATTER_IDX, x * 3),
        (3, 4),
    ),
    "scatter_value": (
        lambda m, x: m.scatter(x, 1, x.new_tensor(SCATTER_IDX, dtype=m.long), 2.5),
        lambda x: _np_scatter(x, SCATTER_IDX, np.full((3, 4), 2.5)),
        (3, 4),
    ),
    "scatter_add": (
        lambda m, x: x.scatter_add(1, x.new_tensor(GATHER_IDX, dtype=m.long), x[:, :3] * 3),
        lambda x: _np_scatter(x, GATHER_IDX, x * 3, add=True),
        (3, 4),
    ),
    "index_select": (
        lambda m, x: m.index_select(x, 0, x.new_tensor([2, 0, 2], dtype=m.long)),
        lambda x: x[[2, 0, 2]],
        (3, 4),
    ),
    "masked_fill": (lambda m, x: m.masked_fill(x, x > 0.3, -1.0), lambda x: np.where(x > 0.3, -1.0, x), (3, 4)),
    "masked_fill_row_mask": (
        lambda m, x: x.masked_fill(x[0] > 0, 7),
        lambda x: np.where(x[0] > 0, 7.0, x),
        (3, 4),
    ),
    "topk": (lambda m, x: m.topk(x, 2, dim=1), lambda x: _topk(x, 2, 1, True), (3, 4)),
    "topk_smallest": (lambda m, x: x.topk(2, 0, largest=False), lambda x: _topk(x, 2, 0, False), (3, 4)),
    "sort": (
        lambda m, x: m.sort(x, 1),
        lambda x: (np.sort(x, 1), np.argsort(x, 1, kind="stable")),
        (3, 4),
    ),
    "sort_descending": (
        lambda m, x: x.sort(dim=0, descending=True),
        lambda x: (np.take_along_axis(x, _stable_desc(x, 0), 0), _stable_desc(x, 0)),
        (3, 4),
    ),
    "argsort": (lambda m, x: m.argsort(x, dim=0), lambda x: np.argsort(x, 0, kind="stable"), (3, 4)),
    "std": (lambda m, x: m.std(x, 1), lambda x: x.std(1, ddof=1), (3, 4)),
    "std_all": (lambda m, x: x.std(), lambda x: x.std(ddof=1), (3, 4)),
    "var_correction0": (lambda m, x: m.var(x, 0, correction=0), lambda x: x.var(0), (3, 4)),
    "var_unbiased_false": (
        lambda m, x: x.var((0, 1), unbiased=False, keepdim=True),
        lambda x: x.var((0, 1), keepdims=True),
        (3, 4),
    ),
    "norm": (lambda m, x: m.norm(x), np.linalg.norm, (3, 4)),
    "norm_p1": (lambda m, x: x.norm(p=1, dim=1), lambda x: np.abs(x).sum(1), (3, 4)),
    "norm_inf": (lambda m, x: x.norm(p=INF, dim=0), lambda x: np.abs(x).max(0), (3, 4)),
    "norm_p3": (
        lambda m, x: x.norm(3, dim=1, keepdim=True),
        lambda x: (np.abs(x) ** 3).sum(1, keepdims=True) ** (1 / 3),
        (3, 4),
    ),
    "cumsum": (lambda m, x: m.cumsum(x, 1), lambda x: np.cumsum(x, 1), (3, 4)),
    "cumsum_dim0": (lambda m, x: x.cumsum(dim=-3), lambda x: np.cumsum(x, 0), (2, 3, 4)),
    "all_any": (
        lambda m, x: (m.all(x > -1, 1), (x > 1).any(0, keepdim=True), (x > 0).all(), m.any(x > 0)),
        lambda x: ((x > -1).all(1), (x > 1).any(0, keepdims=True), (x > 0).all(), (x > 0).any()),
        (3, 4),
    ),
    "log1p": (lambda m, x: m.log1p(x.abs()), lambda x: np.log1p(np.abs(x)), (3, 4)),
    "expm1": (lambda m, x: m.expm1(x), np.expm1, (3, 4)),
    "log2_log10": (
        lambda m, x: (m.log2(x.abs() + 0.5), x.abs().add(0.5).log10()),
        lambda x: (np.log2(np.abs(x) + 0.5), np.log10(np.abs(x) + 0.5)),
        (3, 4),
    ),
    "reciprocal_rsqrt_square": (
        lambda m, x: (m.reciprocal(x), m.rsqrt(x.abs() + 0.5), m.square(x)),
        lambda x: (1 / x, 1 / np.sqrt(np.abs(x) + 0.5), x * x),
        (3, 4),
    ),
    "rounding": (
        lambda m, x: (m.floor(x * 3), m.ceil(x * 3), m.trunc(x * 3), m.round(x * 3), x.mul(3).round(decimals=1)),
        lambda x: (np.floor(x * 3), np.ceil(x * 3), np.trunc(x * 3), np.round(x * 3), np.round(x * 3, 1)),
        (3, 4),
    ),
    "frac_sign": (lambda m, x: (m.frac(x * 3), m.sign(x)), lambda x: (x * 3 - np.trunc(x * 3), np.sign(x)), (3, 4)),
    "clamp_min_max": (
        lambda m, x: (m.clamp_min(x, 0.1), x.clamp_max(-0.2)),
        lambda x: (np.maximum(x, 0.1), np.minimum(x, -0.2)),
        (3, 4),
    ),
    "remainder_fmod": (
        lambda m, x: (m.remainder(x * 3, x.abs() + 0.5), x.mul(3) % -0.7, m.fmod(x * 3, x[0].abs() + 0.5)),
        lambda x: (
            np.remainder(x * 3, np.abs(x) + 0.5),
            np.remainder(x * 3, -0.7),
            np.fmod(x * 3, np.abs(x[0]) + 0.5),
        ),
        (3, 4),
    ),
    "amax_amin": (
        lambda m, x: (m.amax(x, 1), x.amin((0, 2), keepdim=True), m.amax(x)),
        lambda x: (x.max(1), x.min((0, 2), keepdims=True), x.max()),
        (2, 3, 4),
    ),
    "amax_ties": (
        lambda m, x: m.amax(x.clamp(max=0.3), 1),
        lambda x: np.clip(x, None, 0.3).max(1),
        (3, 6),
    ),
    "prod": (
        lambda m, x: (m.prod(x, 1), x.prod(0, keepdim=True), x.prod()),
        lambda x: (x.prod(1), x.prod(0, keepdims=True), x.prod()),
        (3, 4),
    ),
    "prod_with_zeros": (
        lambda m, x: m.prod(x.clamp(min=0), 1),
        lambda x: np.clip(x, 0, None).prod(1),
        (4, 3),
    ),
    "logsumexp": (
        lambda m, x: (m.logsumexp(x * 30, 1), x.logsumexp((0, 1), keepdim=True)),
        lambda x: (
            np.log(np.exp(x * 30 - (x * 30).max(1, keepdims=True)).sum(1)) + (x * 30).max(1),
            np.log(np.exp(x).sum((0, 1), keepdims=True)),
        ),
        (3, 4),
    ),
    "movedim_swapaxes_mT": (
        lambda m, x: (m.movedim(x, 0, 2), x.movedim((0, 1), (2, 0)), m.swapaxes(x, 0, 2), x.mT),
        lambda x: (np.moveaxis(x, 0, 2), np.moveaxis(x, (0, 1), (2, 0)), np.swapaxes(x, 0, 2), np.swapaxes(x, 1, 2)),
        (2, 3, 4),
    ),
    "unflatten": (lambda m, x: m.unflatten(x, 1, (2, -1)), lambda x: x.reshape(3, 2, 2), (3, 4)),
    "diagonal": (
        lambda m, x: (m.diagonal(x), x.diagonal(1, 1, 2), x.diagonal(-1, 2, 1)),
        lambda x: (np.diagonal(x), np.diagonal(x, 1, 1, 2), np.diagonal(x, -1, 2, 1)),
        (3, 4, 5),
    ),
    "outer": (lambda m, x: m.outer(x[0], x[1]), lambda x: np.outer(x[0], x[1]), (2, 4)),
    "tile": (lambda m, x: (m.tile(x, (2,)), x.tile(2, 1, 3)), lambda x: (np.tile(x, 2), np.tile(x, (2, 1, 3))), (3, 4)),
    "repeat_interleave": (
        lambda m, x: (m.repeat_interleave(x, 2, dim=1), x.repeat_interleave(x.new_tensor([1, 0, 3], dtype=m.long), 0)),
        lambda x: (np.repeat(x, 2, axis=1), np.repeat(x, [1, 0, 3], axis=0)),
        (3, 4),
    ),
    "comparisons": (
        lambda m, x: (m.eq(x, x.flip(0)), x.ne(x[0]), m.lt(x, 0), x.le(x[1]), m.gt(x, x.flip(1)), x.ge(0.2)),
        lambda x: (x == x[::-1], x != x[0], x < 0, x <= x[1], x > x[:, ::-1], x >= 0.2),
        (3, 4),
    ),
}
# Ops whose result is not a differentiable function of x (or whose input has kinks in reach of
# finite differences); their values are still compared.
NOT_DIFFERENTIABLE = {"argmin", "argmax_all", "argsort", "all_any", "comparisons"}
# Cases left out of the comparison with PyTorch: torch 2.x's scatter backward fails when src is
# larger than index ("invalid gradient ... got [3, 2] but expected shape compatible with [3, 4]").
NOT_FOR_TORCH = {"scatter_src_larger"}


def _outputs(result) -> tuple:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _inputs(rng, shape):
    return rng.standard_normal(shape)


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_numpy(device, name, rng):
    """The op's results on ``device`` against its float64 NumPy reference (indices and bools exactly)."""
    fn, ref, shape = CASES[name]
    x = _inputs(rng, shape)
    got = _outputs(fn(dk, dk.tensor(x, device=device)))
    want = _outputs(ref(x))
    assert len(got) == len(want), name
    for i, (g, w) in enumerate(zip(got, want)):
        assert isinstance(g, dk.Tensor), f"{name}[{i}]: {type(g).__name__}"
        assert g.device == dk.device(device), f"{name}[{i}]: on {g.device}"
        host, w = to_host(g._array), np.asarray(w)
        assert host.shape == w.shape, f"{name}[{i}]: shape {host.shape}, expected {w.shape}"
        if w.dtype.kind == "f":
            assert host.dtype == np.float64, f"{name}[{i}]: dtype {host.dtype}"
            np.testing.assert_allclose(host, w, rtol=1e-12, atol=1e-12, err_msg=f"{name}[{i}]")
        else:
            assert host.dtype == (np.int64 if w.dtype.kind in "iu" else w.dtype), f"{name}[{i}]: dtype {host.dtype}"
            np.testing.assert_array_equal(host, w, err_msg=f"{name}[{i}]")


@pytest.mark.parametrize("name", sorted(set(CASES) - NOT_DIFFERENTIABLE))
def test_op_gradient_finite_differences(device, name, rng):
    fn = CASES[name][0]
    x = dk.tensor(_inputs(rng, CASES[name][2]), requires_grad=True, device=device)
    gradcheck(lambda t: fn(dk, t), x, rng=rng)


@pytest.mark.parametrize("name", sorted(set(CASES) - NOT_FOR_TORCH))
def test_op_matches_torch(name, rng):
    """Results and gradients against PyTorch's on the same float64 inputs and output weights."""
    torch = pytest.importorskip("torch")
    fn, _, shape = CASES[name]
    x = _inputs(rng, shape)
    ours_in = dk.tensor(x, requires_grad=True)
    theirs_in = torch.tensor(x, requires_grad=True)
    ours, theirs = _outputs(fn(dk, ours_in)), _outputs(fn(torch, theirs_in))
    assert len(ours) == len(theirs), name
    total_ours = total_theirs = 0
    for i, (o, t) in enumerate(zip(ours, theirs)):
        t_host = t.detach().numpy()
        assert o.shape == tuple(t.shape), f"{name}[{i}]: shape {o.shape}, torch {tuple(t.shape)}"
        assert o.dtype == t_host.dtype, f"{name}[{i}]: dtype {o.dtype}, torch {t_host.dtype}"
        np.testing.assert_allclose(o.detach().numpy(), t_host, rtol=1e-12, atol=1e-12, err_msg=f"{name}[{i}]")
        if t.requires_grad:
            assert o.requires_grad, f"{name}[{i}]: torch's output requires grad, ours does not"
            w = rng.standard_normal(o.shape)
            total_ours = total_ours + (o * dk.tensor(w)).sum()
            total_theirs = total_theirs + (t * torch.tensor(w)).sum()
    if name in NOT_DIFFERENTIABLE:
        assert not isinstance(total_theirs, torch.Tensor)
        return
    total_ours.backward()
    total_theirs.backward()
    np.testing.assert_allclose(ours_in.grad.numpy(), theirs_in.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


# ---------------------------------------------------------------------------------------------
# Factories and dtypes
# ---------------------------------------------------------------------------------------------


def test_dtype_names_are_pytorchs():
    assert (dk.float, dk.double, dk.long, dk.int, dk.bool) == (
        np.dtype(np.float32),
        np.dtype(np.float64),
        np.dtype(np.int64),
        np.dtype(np.int32),
        np.dtype(np.bool_),
    )
    x = dk.tensor([1.5, -2.0, 0.0])
    assert x.int().dtype == dk.int and x.int().tolist() == [1, -2, 0]
    assert x.bool().dtype == dk.bool and x.bool().tolist() == [True, True, False]
    assert x.long().type() == "deepkern.LongTensor" and x.type() == "deepkern.FloatTensor"
    assert x.type(dk.double).dtype == dk.double and x.type_as(dk.tensor([1])).dtype == dk.long
    # builtins keep working where deepkern's namespace shadows them
    dk.set_num_threads(dk.get_num_threads())


@pytest.mark.parametrize(
    "make, shape, dtype",
    [
        (lambda d: dk.zeros(size=(2, 3), device=d), (2, 3), np.float32),
        (lambda d: dk.ones(size=[4], dtype=dk.long, device=d), (4,), np.int64),
        (lambda d: dk.empty(size=(0, 3), device=d), (0, 3), np.float32),
        (lambda d: dk.randn(size=(2, 2), dtype=dk.double, device=d), (2, 2), np.float64),
        (lambda d: dk.rand(size=(3,), device=d), (3,), np.float32),
        (lambda d: dk.full((2,), 7, device=d), (2,), np.int64),
        (lambda d: dk.full((2,), True, device=d), (2,), np.bool_),
        (lambda d: dk.full(size=(1, 2), fill_value=0.5, device=d), (1, 2), np.float32),
        (lambda d: dk.eye(3, device=d), (3, 3), np.float32),
        (lambda d: dk.eye(2, 4, dtype=dk.long, device=d), (2, 4), np.int64),
        (lambda d: dk.linspace(-1, 1, 5, device=d), (5,), np.float32),
        (lambda d: dk.linspace(0, 1, 0, dtype=dk.double, device=d), (0,), np.float64),
        (lambda d: dk.randperm(6, device=d), (6,), np.int64),
        (lambda d: dk.arange(5, dtype=dk.double, device=d), (5,), np.float64),
        (lambda d: dk.arange(0, 1, 0.25, device=d), (4,), np.float32),
    ],
)
def test_factories_shape_dtype_device(device, make, shape, dtype):
    t = make(device)
    assert t.shape == shape and t.dtype == dtype and t.device == dk.device(device)


def test_factory_values_match_numpy(device):
    np.testing.assert_array_equal(to_host(dk.eye(3, 2, device=device)._array), np.eye(3, 2, dtype=np.float32))
    got = to_host(dk.linspace(-2.5, 4, 7, dtype=dk.double, device=device)._array)
    np.testing.assert_allclose(got, np.linspace(-2.5, 4, 7), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(to_host(dk.full((2, 2), -3, device=device)._array), np.full((2, 2), -3))
    np.testing.assert_array_equal(to_host(dk.arange(1, 10, 3, device=device)._array), [1, 4, 7])
    np.testing.assert_array_equal(to_host(dk.arange(5, 0, -2, device=device)._array), [5, 3, 1])
    perm = to_host(dk.randperm(50, device=device)._array)
    np.testing.assert_array_equal(np.sort(perm), np.arange(50))


def test_factories_match_torch():
    torch = pytest.importorskip("torch")
    for ours, theirs in [
        (dk.linspace(-1, 2, 7), torch.linspace(-1, 2, 7)),
        (dk.eye(3, 4), torch.eye(3, 4)),
        (dk.full((2,), 3), torch.full((2,), 3)),
        (dk.full((2,), 3.0), torch.full((2,), 3.0)),
        (dk.full((2,), False), torch.full((2,), False)),
        (dk.arange(3), torch.arange(3)),
        (dk.arange(0.5, 2), torch.arange(0.5, 2)),
        (dk.arange(0, 2, 0.5), torch.arange(0, 2, 0.5)),
    ]:
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        assert ours.dtype == theirs.numpy().dtype


def test_like_factories(device, rng):
    x = dk.tensor(rng.standard_normal((2, 3)), device=device)
    for t in (dk.full_like(x, 2.5), dk.randn_like(x), dk.rand_like(x), dk.empty_like(x)):
        assert t.shape == (2, 3) and t.dtype == dk.double and t.device == x.device and not t.requires_grad
    np.testing.assert_array_equal(to_host(dk.full_like(x, 2.5)._array), np.full((2, 3), 2.5))
    assert dk.full_like(x, 7, dtype=dk.long).dtype == dk.long
    assert dk.rand_like(x, requires_grad=True).requires_grad
    u = to_host(dk.rand_like(dk.zeros(2000, device=device))._array)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.05
    n = to_host(dk.randn_like(dk.zeros(2000, dtype=dk.double, device=device))._array)
    assert abs(n.mean()) < 0.1 and abs(n.std() - 1) < 0.1


def test_factories_draw_from_the_seeded_generator():
    dk.manual_seed(3)
    a = (dk.randperm(10), dk.rand_like(dk.zeros(4)), dk.randn_like(dk.zeros(4)))
    dk.manual_seed(3)
    b = (dk.randperm(10), dk.rand_like(dk.zeros(4)), dk.randn_like(dk.zeros(4)))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


@pytest.mark.parametrize(
    "call, exc, needles",
    [
        (lambda: dk.zeros(2, size=(2,)), TypeError, ["zeros", "size="]),
        (lambda: dk.ones((2, -1)), ValueError, ["ones", r"\(2, -1\)"]),
        (lambda: dk.linspace(0, 1, -1), RuntimeError, ["linspace", "steps", "-1"]),
        (lambda: dk.eye(-2), RuntimeError, ["eye", "n", "-2"]),
        (lambda: dk.eye(2, 2.5), RuntimeError, ["eye", "m", "2.5"]),
        (lambda: dk.randperm(-1), RuntimeError, ["randperm", "n", "-1"]),
        (lambda: dk.arange(0, 5, 0), RuntimeError, ["arange", "step"]),
        (lambda: dk.arange(5, 0, 1), RuntimeError, ["arange", "start=5", "end=0", "step=1"]),
        (lambda: dk.randn_like(dk.zeros(2, dtype=dk.long)), RuntimeError, ["randn_like", "int64"]),
        (lambda: dk.full_like(np.zeros(2), 1), TypeError, ["Tensor", "ndarray"]),
    ],
)
def test_factory_bad_arguments(call, exc, needles):
    with raises_naming(exc, *needles):
        call()


# ---------------------------------------------------------------------------------------------
# Memory layout, new_* methods, .data
# ---------------------------------------------------------------------------------------------


def test_contiguous(device, rng):
    x = dk.tensor(rng.standard_normal((3, 4)), requires_grad=True, device=device)
    assert x.is_contiguous() and x.contiguous() is x
    t = x.t()
    assert not t.is_contiguous()
    c = t.contiguous()
    assert c.is_contiguous() and c is not t and c.requires_grad
    np.testing.assert_array_equal(to_host(c._array), to_host(x._array).T)
    gradcheck(lambda a: a.t().contiguous(), x, rng=rng)


def test_new_methods_follow_the_tensor(device, rng):
    x = dk.tensor(rng.standard_normal((2, 2)), device=device)
    for t, shape, fill in [
        (x.new_zeros(3, 1), (3, 1), 0),
        (x.new_ones((2,)), (2,), 1),
        (x.new_full((1, 2), 4.5), (1, 2), 4.5),
        (x.new_empty(size=(0,)), (0,), None),
    ]:
        assert t.shape == shape and t.dtype == dk.double and t.device == x.device
        if fill is not None:
            np.testing.assert_array_equal(to_host(t._array), np.full(shape, fill))
    assert dk.tensor([0.1], dtype=dk.double).item() == 0.1  # not rounded to float32 on the way
    n = x.new_tensor([[1, 2]])
    assert n.dtype == dk.double and n.device == x.device and n.tolist() == [[1.0, 2.0]]
    assert x.new_tensor([1, 2], dtype=dk.long).dtype == dk.long
    assert x.new_zeros(2, requires_grad=True).requires_grad


def test_data_is_the_detached_values_and_assignable(device):
    x = dk.tensor([1.0, 2.0], requires_grad=True, device=device)
    y = x * 2
    assert not y.data.requires_grad and y.data.is_leaf
    np.testing.assert_array_equal(to_host(y.data._array), [2, 4])
    x.data = dk.tensor([5.0, 6.0], device=device)
    np.testing.assert_array_equal(to_host(x.detach()._array), [5, 6])
    assert x.requires_grad and x.is_leaf


# ---------------------------------------------------------------------------------------------
# Logical operators, comparisons, all/any
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.bool_, np.int64, np.int32])
def test_bitwise_operators(device, dtype, rng):
    a_np = rng.integers(0, 4, (3, 5)).astype(dtype)
    b_np = rng.integers(0, 4, (5,)).astype(dtype)
    a, b = dk.tensor(a_np, device=device), dk.tensor(b_np, device=device)
    for got, want in [
        (a & b, a_np & b_np),
        (a | b, a_np | b_np),
        (a ^ b, a_np ^ b_np),
        (~a, ~a_np),
        (a & 1 if dtype != np.bool_ else a & True, a_np & (1 if dtype != np.bool_ else True)),
        (2 | a if dtype != np.bool_ else False | a, (2 if dtype != np.bool_ else False) | a_np),
    ]:
        host = to_host(got._array)
        assert host.dtype == want.dtype
        np.testing.assert_array_equal(host, want)


def test_logical_masks_combine_like_torch():
    torch = pytest.importorskip("torch")
    x = np.linspace(-2, 2, 9)
    for f in (lambda t: (t > 0) & (t < 1.5), lambda t: (t < -1) | ~(t < 1), lambda t: (t > 0) ^ (t > 1)):
        np.testing.assert_array_equal(f(dk.tensor(x)).numpy(), f(torch.tensor(x)).numpy())


def test_bitwise_operators_refuse_floats():
    x = dk.tensor([1.0, 2.0])
    for op, symbol in [(lambda: x & x, "&"), (lambda: x | dk.tensor([True, False]), r"\|"), (lambda: ~x, "~")]:
        with raises_naming(TypeError, symbol, "float32"):
            op()
    with raises_naming(TypeError, r"\^", "float"):
        dk.tensor([1, 2]) ^ 1.5


def test_equal_and_all_any_defaults():
    a = dk.tensor([[1, 2], [3, 4]])
    assert a.equal(dk.tensor([[1, 2], [3, 4]])) and not a.equal(dk.tensor([[1, 2], [3, 5]]))
    assert not a.equal(dk.tensor([1, 2]))
    assert a.all().dtype == dk.bool and bool(a.all()) and not bool((a > 3).all()) and bool((a > 3).any())
    assert dk.tensor([]).all().item() is True and dk.tensor([]).any().item() is False


# ---------------------------------------------------------------------------------------------
# In-place operations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, apply, ref",
    [
        ("sub_", lambda t, o: t.sub_(o, alpha=2), lambda a, o: a - 2 * o),
        ("div_", lambda t, o: t.div_(o), lambda a, o: a / o),
        ("clamp_", lambda t, o: t.clamp_(-0.3, 0.4), lambda a, o: np.clip(a, -0.3, 0.4)),
        ("clamp_min", lambda t, o: t.clamp_(min=0.1), lambda a, o: np.maximum(a, 0.1)),
        ("exp_", lambda t, o: t.exp_(), lambda a, o: np.exp(a)),
        ("masked_fill_", lambda t, o: t.masked_fill_(t > 0, 9.0), lambda a, o: np.where(a > 0, 9.0, a)),
        (
            "scatter_",
            lambda t, o: t.scatter_(1, dk.tensor(SCATTER_IDX, device=t.device), 2.0),
            lambda a, o: _np_scatter(a, SCATTER_IDX, np.full((3, 4), 2.0)),
        ),
        (
            "scatter_add_",
            lambda t, o: t.scatter_add_(1, dk.tensor(GATHER_IDX, device=t.device), o.expand(3, 4)),
            lambda a, o: _np_scatter(a, GATHER_IDX, np.broadcast_to(o, (3, 4)), add=True),
        ),
    ],
)
def test_inplace_ops(device, name, apply, ref, rng):
    a = rng.standard_normal((3, 4))
    other = np.abs(rng.standard_normal(4)) + 0.5
    t = dk.tensor(a, device=device)
    view = t[1:]
    out = apply(t, dk.tensor(other, device=device))
    assert out is t
    want = ref(a, other)
    np.testing.assert_allclose(to_host(t._array), want, rtol=1e-15, atol=0)
    np.testing.assert_allclose(to_host(view._array), want[1:], rtol=1e-15, atol=0)  # the memory was written


@pytest.mark.parametrize(
    "name, apply",
    [
        ("sub_", lambda t, o: t.sub_(o)),
        ("div_", lambda t, o: t.div_(o)),
        ("clamp_", lambda t, o: t.clamp_(-0.3, 0.4)),
        ("exp_", lambda t, o: t.exp_()),
        ("masked_fill_", lambda t, o: t.masked_fill_(t > 0.2, 1.5)),
        ("scatter_", lambda t, o: t.scatter_(1, dk.tensor(SCATTER_IDX, device=t.device), o.expand(3, 4))),
        ("scatter_add_", lambda t, o: t.scatter_add_(1, dk.tensor(GATHER_IDX, device=t.device), o.expand(3, 4))),
    ],
)
def test_inplace_ops_are_recorded(device, name, apply, rng):
    """On a non-leaf, the in-place op is differentiable (matches its out-of-place form)."""
    x = dk.tensor(rng.standard_normal((3, 4)), requires_grad=True, device=device)
    o = dk.tensor(np.abs(rng.standard_normal(4)) + 0.5, requires_grad=True, device=device)
    gradcheck(lambda a, b: apply(a * 1, b), x, o, rng=rng)
    with raises_naming(RuntimeError, name, "leaf"):
        apply(x, o)


def test_uniform_and_normal_fill(device):
    x = dk.empty(20000, dtype=dk.double, device=device)
    assert x.uniform_(-2, 3) is x
    u = to_host(x._array)
    assert u.min() >= -2 and u.max() < 3 and abs(u.mean() - 0.5) < 0.05 and abs(u.var() - 25 / 12) < 0.1
    x.uniform_(**{"from": 1, "to": 1.5})
    assert to_host(x._array).min() >= 1 and to_host(x._array).max() < 1.5
    x.normal_(2.0, 0.5)
    n = to_host(x._array)
    assert abs(n.mean() - 2) < 0.02 and abs(n.std() - 0.5) < 0.02
    dk.manual_seed(7)
    first = to_host(dk.empty(5, device=device).normal_()._array)
    dk.manual_seed(7)
    np.testing.assert_array_equal(to_host(dk.empty(5, device=device).normal_()._array), first)
    w = dk.empty(3, requires_grad=True, device=device)
    with raises_naming(RuntimeError, "uniform_", "leaf"):
        w.uniform_()
    with dk.no_grad():
        w.uniform_(0, 0.5)  # as nn.init does
    with raises_naming(RuntimeError, "normal_", "std=-1"):
        x.normal_(0, -1)
    with raises_naming(RuntimeError, "uniform_", "from=2", "to=1"):
        x.uniform_(2, 1)
    with raises_naming(RuntimeError, "uniform_", "int64"):
        dk.zeros(2, dtype=dk.long).uniform_()


# ---------------------------------------------------------------------------------------------
# Bad arguments of the ops
# ---------------------------------------------------------------------------------------------

X34 = dk.tensor(np.arange(12.0).reshape(3, 4))


@pytest.mark.parametrize(
    "call, exc, needles",
    [
        (lambda: X34.gather(1, dk.tensor([[0, 4]])), IndexError, ["gather", "index 4", "size 4"]),
        (lambda: X34.gather(1, dk.tensor([[0, -1]])), IndexError, ["gather", "index -1"]),
        (
            lambda: X34.gather(1, dk.tensor(np.array([[0, 1]], np.int16))),
            RuntimeError,
            ["gather", "int64 or int32", "int16"],
        ),
        (lambda: X34.gather(1, dk.tensor([0, 1])), RuntimeError, ["gather", "index", "1 dimensions", "2"]),
        (lambda: X34.gather(1, dk.zeros(4, 1, dtype=dk.long)), RuntimeError, ["gather", r"\(4, 1\)", r"\(3, 4\)"]),
        (lambda: X34.gather(2, dk.zeros(1, 1, dtype=dk.long)), IndexError, ["gather", "dim 2"]),
        (lambda: X34.gather(1.0, dk.zeros(1, 1, dtype=dk.long)), TypeError, ["gather", "dim", "float"]),
        (lambda: X34.scatter(1, dk.zeros(1, 1, dtype=dk.long)), TypeError, ["scatter", "src", "value"]),
        (
            lambda: X34.scatter(1, dk.zeros(1, 1, dtype=dk.long), dk.zeros(1, 1)),
            RuntimeError,
            ["scatter", "src", "float32", "float64"],
        ),
        (lambda: X34.scatter(1, dk.zeros(1, 3, dtype=dk.long), X34[:, :2]), RuntimeError, ["scatter", "index", "src"]),
        (
            lambda: X34.scatter(1, dk.zeros(1, 1, dtype=dk.long), 1.0, reduce="max"),
            ValueError,
            ["scatter", "reduce", "max"],
        ),
        (lambda: X34.index_select(0, dk.tensor([3])), IndexError, ["index_select", "index 3", "size 3"]),
        (lambda: X34.index_select(0, dk.tensor([[0]])), RuntimeError, ["index_select", "1-D", r"\(1, 1\)"]),
        (lambda: X34.masked_fill(X34 > 1, dk.tensor([1.0])), RuntimeError, ["masked_fill", "value", "0-dim"]),
        (lambda: X34.masked_fill(dk.tensor([1, 0, 1]), 0.0), TypeError, ["masked_fill", "mask", "bool", "int64"]),
        (
            lambda: X34.masked_fill(dk.tensor([True, False, True]), 0.0),
            RuntimeError,
            ["masked_fill", "mask", r"\(3,\)"],
        ),
        (lambda: X34.masked_fill(X34 > 1, "a"), TypeError, ["masked_fill", "value", "str"]),
        (lambda: X34.topk(5), RuntimeError, ["topk", "k", "5", "size 4"]),
        (lambda: X34.topk(-1, dim=0), RuntimeError, ["topk", "-1", "size 3"]),
        (lambda: X34.sort(dim=2), IndexError, ["sort", "dim 2"]),
        (lambda: X34.narrow(1, 3, 2), IndexError, ["narrow", "start", "3", "length", "2", "size 4"]),
        (lambda: X34.narrow(1, -5, 1), IndexError, ["narrow", "-5"]),
        (lambda: X34.select(0, 3), IndexError, ["select", "index 3"]),
        (lambda: X34.split([1, 1], 0), RuntimeError, ["split", r"\[1, 1\]", "size 3"]),
        (lambda: X34.split(0, 1), RuntimeError, ["split", "split_size", "0"]),
        (lambda: X34.chunk(0), RuntimeError, ["chunk", "chunks", "0"]),
        (lambda: dk.tensor(1.0).unbind(), IndexError, ["unbind", "0-d"]),
        (lambda: X34.repeat(2), RuntimeError, ["repeat", r"\(2,\)", "2 dimensions"]),
        (lambda: X34.repeat(1, -1), RuntimeError, ["repeat", "non-negative"]),
        (lambda: X34.flip(0, -2), RuntimeError, ["flip", "twice"]),
        (lambda: X34.roll((1, 2), 0), RuntimeError, ["roll", r"\(1, 2\)", r"\(0,\)"]),
        (lambda: X34.roll((1, 2)), RuntimeError, ["roll", "one int", r"\(1, 2\)"]),
        (lambda: X34[0].tril(), RuntimeError, ["tril", "2 dimensions", r"\(4,\)"]),
        (lambda: X34.clamp(), RuntimeError, ["clamp", "min", "max"]),
        (lambda: X34.norm(p=0), ValueError, ["norm", "p", "0"]),
        (lambda: X34.norm(p="nuc"), ValueError, ["norm", "p", "nuc"]),
        (lambda: dk.tensor([1, 2]).norm(), RuntimeError, ["norm", "int64"]),
        (lambda: dk.tensor([1, 2]).mean(), RuntimeError, ["mean", "int64"]),
        (lambda: dk.tensor([1, 2]).std(), RuntimeError, ["var", "int64"]),
        (lambda: X34.var(unbiased=True, correction=0), ValueError, ["var", "unbiased", "correction"]),
        (lambda: X34.cumsum(2), IndexError, ["cumsum", "dim 2"]),
        (lambda: dk.bmm(X34, X34), RuntimeError, ["bmm", r"\(3, 4\)"]),
        (lambda: dk.bmm(X34[None], X34.numpy()), TypeError, ["bmm", "mat2", "ndarray"]),
        (lambda: dk.exp(np.ones(2)), TypeError, ["exp", "input", "ndarray"]),
        (lambda: dk.pow(2.0, 3.0), TypeError, ["pow", "exponent", "float"]),
        (lambda: dk.einsum("ij,jk->ik", X34), ValueError, ["einsum", "2 operand", "1 were given"]),
        (lambda: dk.einsum("ijk->i", X34), ValueError, ["einsum", "operand 0", "2 dimensions", "ijk"]),
        (lambda: dk.einsum("i1->i", X34), ValueError, ["einsum", "letters"]),
        (lambda: dk.einsum(3, X34), TypeError, ["einsum", "equation", "int"]),
        (lambda: dk.cat([X34, X34], 2), IndexError, ["cat", "dim 2", r"\[-2, 1\]"]),
        (lambda: dk.cat([dk.tensor(1.0)]), ValueError, ["cat", "0-d"]),
        (lambda: dk.stack([X34, X34], -4), IndexError, ["stack", "dim -4", r"\[-3, 2\]"]),
        (lambda: X34.squeeze(-3), IndexError, ["squeeze", "dim -3"]),
        (lambda: X34.squeeze((0, 2)), IndexError, ["squeeze", "dim 2"]),
        (lambda: X34.unsqueeze(3), IndexError, ["unsqueeze", "dim 3", r"\[-3, 2\]"]),
        (lambda: X34.flatten(0, 2), IndexError, ["flatten", "dim 2"]),
        (lambda: X34.flatten(1, 0), ValueError, ["flatten", "start_dim 1", "end_dim 0"]),
        (lambda: X34.permute(0, 2), IndexError, ["permute", "dim 2"]),
        (lambda: X34.permute(0, -2), ValueError, ["permute", "permutation"]),
        (lambda: X34.transpose(0, 2), IndexError, ["transpose", "dim 2"]),
        (lambda: X34.transpose(0, 1.0), TypeError, ["transpose", "dim", "float"]),
    ],
)
def test_bad_arguments_raise_naming_them(call, exc, needles):
    with raises_naming(exc, *needles):
        call()


def test_dims_in_range_match_torch(rng):
    """Every dim in [-ndim, ndim) (unsqueeze and stack: [-ndim - 1, ndim]) gives torch's shape, 0-d
    tensors taking -1 and 0; out-of-range dims raise (test_bad_arguments_raise_naming_them)."""
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((2, 1, 3)).astype(np.float32)
    x, t = dk.tensor(a), torch.from_numpy(a)
    for d in range(-3, 3):
        assert dk.cat([x, x], d).shape == tuple(torch.cat([t, t], d).shape)
        assert x.squeeze(d).shape == tuple(t.squeeze(d).shape)
        assert x.transpose(d, 0).shape == tuple(t.transpose(d, 0).shape)
        assert x.flatten(d, -1).shape == tuple(t.flatten(d, -1).shape)
    for d in range(-4, 4):
        assert x.unsqueeze(d).shape == tuple(t.unsqueeze(d).shape)
        assert dk.stack([x, x], d).shape == tuple(torch.stack([t, t], d).shape)
    assert x.squeeze((0, 1)).shape == tuple(t.squeeze((0, 1)).shape)
    assert x.permute(-1, 0, -2).shape == tuple(t.permute(-1, 0, -2).shape)
    z, tz = dk.tensor(2.0), torch.tensor(2.0)
    for d in (-1, 0):
        assert z.squeeze(d).shape == tuple(tz.squeeze(d).shape)
        assert z.unsqueeze(d).shape == tuple(tz.unsqueeze(d).shape)
        assert z.flatten(d, d).shape == tuple(tz.flatten(d, d).shape)
        assert z.transpose(d, 0).shape == tuple(tz.transpose(d, 0).shape)
    with pytest.raises(IndexError, match="squeeze"):
        z.squeeze(1)


def test_gradients_at_a_zero_deviation_or_a_zero_exponent_are_zero_like_torch(rng):
    """std's gradient where the slice is constant (sqrt'(0) times a zero deviation) and pow's where
    the exponent is 0 (0 * 0^-1) are 0, as PyTorch defines them, not NaN; elsewhere they are the
    usual derivatives."""
    rows = np.stack([np.full(4, 3.0), rng.standard_normal(4)])
    x = dk.tensor(rows, requires_grad=True)
    x.std(dim=1).sum().backward()
    dev = rows[1] - rows[1].mean()
    np.testing.assert_allclose(x.grad.numpy()[1], dev / (3 * np.sqrt((dev**2).sum() / 3)), rtol=1e-12)
    assert x.grad.numpy()[0].tolist() == [0.0] * 4
    y = dk.tensor(np.full(5, -1.5), requires_grad=True)
    y.std().backward()
    assert y.grad.numpy().tolist() == [0.0] * 5
    base = dk.tensor([0.0, 2.0, -3.0], requires_grad=True)
    exponent = dk.tensor([0.0, 0.0, 2.0], requires_grad=True)
    (base**exponent).sum().backward()
    assert base.grad.numpy().tolist() == [0.0, 0.0, -6.0]
    z = dk.tensor([0.0, 2.0], requires_grad=True)
    (z**0).sum().backward()
    assert z.grad.numpy().tolist() == [0.0, 0.0]


# (operation, expected dtype): PyTorch's promotion, where NumPy's would differ for most of them.
PROMOTION_CASES = [
    (lambda: dk.ones(2) / np.sqrt(4.0), "float32"),  # a NumPy float64 scalar is a number
    (lambda: dk.tensor([1, 2]) * 0.5, "float32"),
    (lambda: dk.tensor([1, 2]) / 2, "float32"),
    (lambda: dk.tensor([1, 2]) / dk.tensor([2, 2]), "float32"),
    (lambda: 2.0 ** dk.tensor([1, 2]), "float32"),
    (lambda: dk.ones(2) * dk.tensor(2.0, dtype=dk.float64), "float32"),  # a 0-d tensor of the same category
    (lambda: dk.tensor([1, 2], dtype=dk.int32) + dk.tensor(3), "int32"),
    (lambda: dk.tensor([1, 2]) * dk.tensor(2.0, dtype=dk.float64), "float64"),  # of a higher category
    (lambda: dk.tensor([True, False]) + 1, "int64"),
    (lambda: dk.ones(2) + dk.ones(2, dtype=dk.float64), "float64"),
    (lambda: dk.tensor(1.0) * dk.tensor(2.0, dtype=dk.float64), "float64"),
    (lambda: dk.ones(2, dtype=dk.float16) * 2.5, "float16"),
    (lambda: dk.tensor([1]) - 1j, "complex64"),
    (lambda: dk.ones(1, dtype=dk.float64) * 1j, "complex128"),
    (lambda: dk.ones(2, dtype=dk.bfloat16) * dk.tensor(2.0), "bfloat16"),
    (lambda: dk.where(dk.tensor([True, False]), dk.tensor([1, 2]), 0.5), "float32"),
    (lambda: dk.where(dk.tensor([True, False]), 1.0, 0.0), "float32"),
    (lambda: dk.where(dk.tensor([True, False]), 1, 0), "int64"),
    (lambda: dk.where(dk.tensor([True]), dk.ones(1), dk.tensor(0.0, dtype=dk.float64)), "float32"),
    (lambda: dk.tensor([1, 4]).clamp(max=2.5), "float32"),
    (lambda: dk.tensor([1, 4]).clamp(max=2), "int64"),
]


@pytest.mark.parametrize("index", range(len(PROMOTION_CASES)))
def test_arithmetic_promotes_like_torch(index):
    op, expected = PROMOTION_CASES[index]
    assert str(op().dtype) == expected


def test_promoted_operand_keeps_its_gradient_in_its_own_dtype(rng):
    scale = dk.tensor(rng.standard_normal(), dtype=dk.float64, requires_grad=True)
    x = dk.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    y = (x * scale).sum()
    assert y.dtype == np.float32
    y.backward()
    assert scale.grad.dtype == np.float64 and x.grad.dtype == np.float32
    np.testing.assert_allclose(scale.grad.item(), x.detach().numpy().sum(), rtol=1e-6)


def test_floor_division_and_remainders_like_torch(rng):
    """// is floor(a / b) with gradient 0; % (remainder) takes the divisor's sign, fmod the
    dividend's; integer division by zero is a ZeroDivisionError, float gives inf / NaN."""
    a = dk.tensor([5, -5, 7, -7])
    assert (a // 2).tolist() == [2, -3, 3, -4] and (a % 3).tolist() == [2, 1, 1, 2]
    assert (a % -3).tolist() == [-1, -2, -2, -1] and a.fmod(3).tolist() == [2, -2, 1, -1]
    assert (17 // a).tolist() == [3, -4, 2, -3] and (17 % a).tolist() == [2, -3, 3, -4]
    for op in (lambda: a // 0, lambda: a % dk.tensor([1, 0, 1, 1]), lambda: a.fmod(0), lambda: 3 // a.clamp(0, 1)):
        with raises_naming(ZeroDivisionError, "integer division by zero"):
            op()
    x = dk.tensor(rng.standard_normal(5) * 4, requires_grad=True)
    y = x // 0.7
    np.testing.assert_array_equal(y.detach().numpy(), np.floor_divide(x.detach().numpy(), 0.7))
    y.sum().backward()
    assert x.grad.numpy().tolist() == [0.0] * 5
    floats = dk.tensor([5.0, -5.0]) // 0
    assert floats.tolist() == [np.inf, -np.inf] and np.isnan((dk.tensor([1.0]) % 0).item())


@pytest.mark.parametrize(
    "equation, shapes",
    [
        ("ii->i", [(3, 3)]),
        ("ii", [(4, 4)]),
        ("iji->j", [(3, 2, 3)]),
        ("iij,jk->ik", [(2, 2, 3), (3, 4)]),
        ("ij,jj->ij", [(2, 3), (3, 3)]),
        ("bii,bi->b", [(2, 3, 3), (2, 3)]),
        ("iii->", [(2, 2, 2)]),
        ("ii->i", [(0, 0)]),
        ("ii->i", [(5, 5)]),
    ],
)
def test_einsum_repeated_index_gradient_lies_on_the_diagonal(equation, shapes, rng):
    """A letter an operand repeats (a diagonal) gets the output's gradient on that diagonal and zero
    elsewhere, as PyTorch: values as NumPy's einsum, gradients by finite differences."""
    arrays = [rng.standard_normal(shape) for shape in shapes]
    tensors = [dk.tensor(a, requires_grad=True) for a in arrays]
    y = dk.einsum(equation, *tensors)
    np.testing.assert_allclose(y.detach().numpy(), np.einsum(equation, *arrays), rtol=1e-12, atol=1e-12)
    if equation == "ii->i":
        y.sum().backward()
        np.testing.assert_array_equal(tensors[0].grad.numpy(), np.eye(shapes[0][0]))
    else:
        gradcheck(lambda *ts: dk.einsum(equation, *ts), *tensors)


def test_sort_keeps_ties_in_order_and_nan_last():
    x = dk.tensor([2.0, np.nan, 1.0, 2.0, -1.0, 2.0])
    ascending = x.sort()
    np.testing.assert_array_equal(ascending.indices.numpy(), [4, 2, 0, 3, 5, 1])
    descending = x.sort(descending=True)
    np.testing.assert_array_equal(descending.indices.numpy(), [1, 0, 3, 5, 2, 4])
    assert np.isnan(descending.values.numpy()[0])
    torch = pytest.importorskip("torch")
    theirs = torch.tensor(x.numpy()).sort(stable=True)
    np.testing.assert_array_equal(ascending.indices.numpy(), theirs.indices.numpy())
    theirs = torch.tensor(x.numpy()).sort(stable=True, descending=True)
    np.testing.assert_array_equal(descending.indices.numpy(), theirs.indices.numpy())


def test_zero_size_and_zero_dim_inputs(device):
    e = dk.zeros(0, 3, dtype=dk.double, device=device)
    assert e.sort(0).values.shape == (0, 3) and e.cumsum(0).shape == (0, 3) and e.flip(0).shape == (0, 3)
    assert [p.shape for p in e.split(2)] == [(0, 3)] and e.chunk(2)[0].shape == (0, 3)
    assert e.roll(1, 0).shape == (0, 3) and e.repeat(2, 2).shape == (0, 6) and e.unbind(0) == ()
    assert e.norm().item() == 0 and e.topk(0, dim=0).values.shape == (0, 3)
    s = dk.tensor(2.5, dtype=dk.double, device=device)
    assert s.sort().values.item() == 2.5 and s.argsort().item() == 0 and s.cumsum(0).item() == 2.5
    assert s.topk(1).values.item() == 2.5 and s.argmax().item() == 0 and s.repeat(2).shape == (2,)


def test_max_min_with_a_tensor_share_ties_like_torch():
    """Elementwise max/min of two tensors: the winner takes the gradient, a tie halves it, and where
    either operand is NaN both take all of it (PyTorch's rule); also broadcast against a column."""
    torch = pytest.importorskip("torch")
    nan = np.nan
    a, b = np.array([1.0, 2.0, 3.0, nan, 4.0, nan]), np.array([1.0, 5.0, 0.0, 2.0, nan, nan])
    weights = np.arange(1.0, 7.0)
    fns = (
        lambda m, x, y: m.max(x, y),
        lambda m, x, y: m.maximum(x, y),
        lambda m, x, y: m.minimum(x, y),
        lambda m, x, y: m.min(x, y),
    )
    for fn in fns:
        for shape_a in ((6,), (6, 1)):
            grads = []
            for m in (dk, torch):
                x, y = m.tensor(a.reshape(shape_a), requires_grad=True), m.tensor(b, requires_grad=True)
                (fn(m, x, y) * m.tensor(weights)).sum().backward()
                grads.append((x.grad.numpy(), y.grad.numpy()))
            np.testing.assert_array_equal(grads[0][0], grads[1][0])
            np.testing.assert_array_equal(grads[0][1], grads[1][1])


def test_sum_dtypes_follow_torch():
    assert dk.tensor([True, True, False]).sum().dtype == dk.long
    assert dk.tensor([1, 2], dtype=dk.int).sum().dtype == dk.long
    assert dk.tensor([1.5, 2.0]).sum(dtype=dk.double).dtype == dk.double
    assert dk.tensor([1, 2]).mean(dtype=dk.float).item() == 1.5
    assert dk.tensor([1, 2]).cumsum(0, dtype=dk.double).dtype == dk.double
    assert dk.tensor([True, True]).cumsum(0).tolist() == [1, 2]


# ---------------------------------------------------------------------------------------------
# Gradient hooks, retain_grad, autograd.grad, inference_mode
# ---------------------------------------------------------------------------------------------


def _graph(m, a):
    """y = (x * 3) used twice (so hooks on y see one summed gradient), x also used directly."""
    x = m.tensor(a, requires_grad=True)
    y = x * 3
    z = (y * y).sum() + (y.sin() * x).sum()
    return x, y, z


def test_retain_grad_matches_torch(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((2, 3))
    (x, y, z), (tx, ty, tz) = _graph(dk, a), _graph(torch, a)
    assert not y.retains_grad
    y.retain_grad()
    ty.retain_grad()
    assert y.retains_grad and not x.retains_grad
    x.retain_grad()  # a leaf: no-op
    z.backward(retain_graph=True)
    tz.backward(retain_graph=True)
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    z.backward()  # retained gradients accumulate like leaves'
    tz.backward()
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-12)
    with raises_naming(RuntimeError, "retain_grad", "doesn't require"):
        dk.zeros(2).retain_grad()


def test_register_hook_sees_and_replaces_gradients_like_torch(device, rng):
    a = rng.standard_normal((2, 3))
    x = dk.tensor(a, requires_grad=True, device=device)
    y = x * 3
    z = (y * y).sum() + (y.sin() * x).sum()
    seen = {}
    y.register_hook(lambda g: seen.__setitem__("y", to_host(g._array).copy()))
    y.register_hook(lambda g: g * 2)  # doubles what reaches x through y
    x.register_hook(lambda g: seen.__setitem__("x", to_host(g._array).copy()))
    y.retain_grad()
    z.backward()
    dy = 2 * (3 * a) + np.cos(3 * a) * a
    np.testing.assert_allclose(seen["y"], dy, rtol=1e-12)
    np.testing.assert_allclose(to_host(y.grad._array), 2 * dy, rtol=1e-12)  # retain_grad sees the hooked value
    dx = 3 * 2 * dy + np.sin(3 * a)
    np.testing.assert_allclose(seen["x"], dx, rtol=1e-12)  # the leaf hook ran once, on the summed gradient
    np.testing.assert_allclose(to_host(x.grad._array), dx, rtol=1e-12)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(a, requires_grad=True)
    ty = tx * 3
    ty.register_hook(lambda g: g * 2)
    ((ty * ty).sum() + (ty.sin() * tx).sum()).backward()
    np.testing.assert_allclose(to_host(x.grad._array), tx.grad.numpy(), rtol=1e-12)


def test_hook_handles_remove_and_bad_hooks(device):
    x = dk.tensor([1.0, 2.0], requires_grad=True, device=device)
    calls = []
    handle = x.register_hook(lambda g: calls.append(1))
    (x * 2).sum().backward()
    handle.remove()
    (x * 2).sum().backward()
    assert calls == [1]
    with raises_naming(RuntimeError, "register_hook", "doesn't require"):
        dk.zeros(2).register_hook(print)
    with raises_naming(TypeError, "hook", "callable", "int"):
        x.register_hook(3)
    x.register_hook(lambda g: dk.zeros(3, device=device))
    with raises_naming(RuntimeError, "hook", r"\(3,\)", r"\(2,\)"):
        (x * 2).sum().backward()


def test_autograd_grad_matches_backward_and_leaves_grad_alone(device, rng):
    a = rng.standard_normal((2, 3))
    x = dk.tensor(a, requires_grad=True, device=device)
    w = dk.tensor(rng.standard_normal(3), requires_grad=True, device=device)
    y = x * w
    loss = (y.tanh() * x).sum()
    gx, gy = dk.autograd.grad(loss, [x, y], retain_graph=True)
    assert x.grad is None and w.grad is None
    loss.backward()
    np.testing.assert_allclose(to_host(gx._array), to_host(x.grad._array), rtol=1e-12)
    dy = (1 - np.tanh(to_host(y._array)) ** 2) * a
    np.testing.assert_allclose(to_host(gy._array), dy, rtol=1e-12)
    assert not gx.requires_grad


def test_autograd_grad_options_like_torch(rng):
    torch = pytest.importorskip("torch")
    a, v = rng.standard_normal(4), rng.standard_normal(4)
    results = []
    for m in (dk, torch):
        x = m.tensor(a, requires_grad=True)
        u = m.tensor(a, requires_grad=True)  # not used
        y1, y2 = x.exp(), (x * x).sum()
        g = m.autograd.grad([y1, y2], [x, u], grad_outputs=[m.tensor(v), None], allow_unused=True)
        assert g[1] is None
        results.append(g[0].numpy())
        (gx,) = m.autograd.grad(x, x, grad_outputs=m.tensor(v))  # a leaf as output
        np.testing.assert_array_equal(gx.numpy(), v)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)


@pytest.mark.parametrize(
    "call, exc, needles",
    [
        (
            lambda x, y: dk.autograd.grad(y, [x, dk.ones(2, requires_grad=True)]),
            RuntimeError,
            ["inputs\\[1\\]", "allow_unused"],
        ),
        (lambda x, y: dk.autograd.grad(y, dk.ones(2)), RuntimeError, ["inputs\\[0\\]", "require grad"]),
        (lambda x, y: dk.autograd.grad(x.detach(), x), RuntimeError, ["outputs", "require grad"]),
        (lambda x, y: dk.autograd.grad(x * 2, x), RuntimeError, ["grad_outputs\\[0\\]", "one-element", r"\(2,\)"]),
        (
            lambda x, y: dk.autograd.grad(x * 2, x, dk.ones(3)),
            ValueError,
            ["grad_outputs\\[0\\]", r"\(3,\)", r"\(2,\)"],
        ),
        (lambda x, y: dk.autograd.grad([y, y], x, [None]), ValueError, ["grad_outputs", "1 entries", "2 outputs"]),
        (
            lambda x, y: dk.autograd.grad(
                dk.nn.functional.multi_margin_loss(x[None], dk.tensor([1])), x, create_graph=True
            ),
            NotImplementedError,
            ["create_graph", "_MultiMargin", "not differentiable"],
        ),
    ],
)
def test_autograd_grad_bad_arguments(call, exc, needles):
    x = dk.tensor([1.0, 2.0], requires_grad=True)
    with raises_naming(exc, *needles):
        call(x, (x * x).sum())


def test_autograd_grad_frees_the_graph_unless_retained():
    x = dk.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    dk.autograd.grad(y, x)
    with raises_naming(RuntimeError, "second time", "retain_graph"):
        y.backward()


def test_inference_mode_records_nothing():
    x = dk.tensor([1.0], requires_grad=True)
    with dk.inference_mode():
        assert not dk.is_grad_enabled() and not (x * 2).requires_grad
        with dk.inference_mode(False):
            assert (x * 2).requires_grad
    assert dk.is_grad_enabled()

    @dk.inference_mode()
    def f(t):
        return t * 2

    assert not f(x).requires_grad and dk.is_grad_enabled()


# ---------------------------------------------------------------------------------------------
# Modules: hooks, get_submodule, ModuleDict, ParameterList, Identity; clip_grad_value_; load
# ---------------------------------------------------------------------------------------------


def test_forward_hooks_modify_inputs_and_outputs():
    lin = dk.nn.Linear(3, 2)
    x = dk.ones(1, 3)
    calls = []
    pre = lin.register_forward_pre_hook(lambda m, args: (args[0] * 2,))
    post = lin.register_forward_hook(lambda m, args, out: calls.append((m, args[0].sum().item())) or out + 1)
    out = lin(x)
    with dk.no_grad():
        want = x * 2 @ lin.weight.t() + lin.bias + 1
    np.testing.assert_allclose(out.detach().numpy(), want.numpy(), rtol=1e-6)
    assert calls == [(lin, 6.0)]
    pre.remove()
    post.remove()
    plain = x.numpy() @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
    np.testing.assert_allclose(lin(x).detach().numpy(), plain, rtol=1e-6)
    lin.register_forward_pre_hook(lambda m, args: args[0] * 0)  # a single value replaces the arguments
    np.testing.assert_allclose(lin(x).detach().numpy(), lin.bias.detach().numpy()[None], rtol=1e-6)
    with raises_naming(TypeError, "hook", "callable"):
        lin.register_forward_hook(None)


def test_get_submodule_and_containers():
    inner = dk.nn.Sequential(dk.nn.Linear(2, 2), dk.nn.ReLU())
    model = dk.nn.Module()
    model.blocks = dk.nn.ModuleDict({"a": inner, "b": dk.nn.Identity(7, key=1)})
    model.scales = dk.nn.ParameterList([dk.ones(2), dk.nn.Parameter(dk.zeros(1))])
    model.plain = 3
    assert model.get_submodule("") is model and model.get_submodule("blocks.a.0") is inner[0]
    with raises_naming(AttributeError, "get_submodule", "Sequential", "no attribute", "`5`"):
        model.get_submodule("blocks.a.5")
    with raises_naming(AttributeError, "get_submodule", "not an nn.Module", "`plain`"):
        model.get_submodule("plain")
    with raises_naming(AttributeError, "get_submodule", "Linear", "not an nn.Module", "`weight`"):
        model.get_submodule("blocks.a.0.weight")  # a parameter, not a missing attribute
    assert (
        model.get_parameter("blocks.a.0.weight") is inner[0].weight
        and model.get_parameter("scales.1") is (model.scales[1])
    )
    with raises_naming(AttributeError, "get_parameter", "Linear", "no attribute", "`scale`"):
        model.get_parameter("blocks.a.0.scale")
    net = dk.nn.Sequential(dk.nn.BatchNorm1d(2))
    assert net.get_buffer("0.running_var") is net[0].running_var
    with raises_naming(AttributeError, "get_parameter", "BatchNorm1d", "not a nn.Parameter", "`running_mean`"):
        net.get_parameter("0.running_mean")
    with raises_naming(AttributeError, "get_buffer", "BatchNorm1d", "not a buffer", "`weight`"):
        net.get_buffer("0.weight")
    with raises_naming(AttributeError, "get_submodule", "no attribute", "`1`"):
        net.get_buffer("1.running_mean")
    names = [n for n, _ in model.named_parameters()]
    assert names == ["blocks.a.0.weight", "blocks.a.0.bias", "scales.0", "scales.1"]
    assert all(isinstance(p, dk.nn.Parameter) and p.requires_grad for p in model.scales)
    assert list(model.blocks) == ["a", "b"] and "a" in model.blocks and len(model.blocks) == 2
    model.blocks["c"] = dk.nn.Tanh()
    assert list(model.blocks.keys()) == ["a", "b", "c"] and isinstance(model.blocks.pop("c"), dk.nn.Tanh)
    model.blocks.update([("d", dk.nn.ReLU())])
    del model.blocks["d"]
    assert [type(m).__name__ for m in model.blocks.values()] == ["Sequential", "Identity"]
    with raises_naming(TypeError, "add_module", "'e'", "int"):
        model.blocks["e"] = 5
    model.scales.append(dk.zeros(3))
    model.scales[0] = dk.full((2,), 5.0)
    assert len(model.scales) == 3 and model.scales[0].tolist() == [5, 5] and len(model.scales[1:]) == 2
    assert set(model.state_dict()) >= {"scales.0", "scales.1", "scales.2"}
    with raises_naming(TypeError, "ParameterList", "list"):
        model.scales.append([1.0])
    x = dk.randn(2, 2)
    assert model.blocks["b"](x) is x


@pytest.mark.parametrize("kind", ["Sequential", "ModuleList"])
def test_module_sequences_take_the_list_operations_like_torch(kind):
    """append, extend, insert (list.insert's positions), item assignment and deletion (ints, negative
    ints, slices); an insertion or a deletion renumbers the children 0, 1, ... as PyTorch's do."""
    make = (lambda mods: dk.nn.Sequential(*mods)) if kind == "Sequential" else dk.nn.ModuleList
    a, b, c, d, e = (dk.nn.Linear(2, 2) for _ in range(5))
    seq = make([a, b])
    assert seq.extend([c]) is seq and list(seq) == [a, b, c]
    seq.insert(1, d)
    seq.insert(-1, e)  # before the last, as list.insert
    assert list(seq) == [a, d, b, e, c] and list(seq._modules) == ["0", "1", "2", "3", "4"]
    if kind == "Sequential":  # PyTorch's Sequential refuses a position past either end
        with raises_naming(IndexError, "insert", "index 99", "5 modules"):
            seq.insert(99, a)
        assert seq.insert(5, a) is seq
    else:  # its ModuleList clamps, as list.insert
        seq.insert(99, a)
    assert list(seq)[-1] is a and len(seq) == 6
    seq[-1] = b
    seq[0] = c
    assert list(seq) == [c, d, b, e, c, b]
    del seq[1]
    del seq[-2:]
    assert list(seq) == [c, b, e] and list(seq._modules) == ["0", "1", "2"]
    assert seq[-1] is e and list(seq[1:]) == [b, e] and type(seq[1:]) is type(seq)
    assert len(list(seq.parameters())) == 6
    with raises_naming(IndexError, "index 3", "3 modules"):
        seq[3]
    with raises_naming(IndexError, "index -4"):
        seq[-4] = a
    with raises_naming(TypeError, "index", "str"):
        del seq["0"]
    with raises_naming(TypeError, "Module", "int"):
        seq.append(3)


def test_views_of_a_tensor_outside_the_graph_record_writes_through_any_view(rng):
    """Reshaped, permuted and indexed views (and views of those) of a tensor that needs no grad,
    written in place with values that do: the base records each write, as PyTorch's does."""
    writes = [
        lambda base, w: base.t()[0].copy_(w[:2]),
        lambda base, w: base.view(-1).copy_(w),
        lambda base, w: base.reshape(3, 2)[1].add_(w[:2] * 2),
        lambda base, w: base.permute(1, 0)[:, 1].mul_(0).add_(w[:3]),
        lambda base, w: base.unsqueeze(0)[0, 1].copy_(w[3:]),
        lambda base, w: base.mT.add_(w.reshape(3, 2)),
    ]
    w = dk.tensor(rng.standard_normal(6), requires_grad=True)
    p = dk.tensor(rng.standard_normal((2, 3)), requires_grad=True)

    def written(w, p, write):
        base = dk.zeros(2, 3, dtype=dk.float64)
        write(base, w)
        return base * p

    for k, write in enumerate(writes):
        assert written(w, p, write).requires_grad, k
        gradcheck(lambda w, p, write=write: written(w, p, write), w, p)
    a = dk.zeros(3, 3)
    a.diagonal().add_(0.5)  # the diagonal is a view: the write reaches a
    assert a.sum().item() == 1.5
    d = dk.ones(2, 2).diagonal()
    x = dk.tensor([1.0, 2.0, 3.0])
    y = x[1:]
    x //= 2
    assert y.tolist() == [1.0, 1.0] and d.tolist() == [1.0, 1.0]
    x = dk.tensor([5.0, 7.0])
    y = x[:]
    x %= 3
    assert y.tolist() == [2.0, 1.0]


def test_float_and_integer_tensors_promote_to_the_float_dtype_like_torch():
    assert (dk.arange(3) * dk.ones(3)).dtype == np.float32
    assert (dk.ones(3, dtype=dk.float16) + dk.arange(3, dtype=dk.int32)).dtype == np.float16
    assert (dk.tensor([2**40 + 1]) * dk.tensor([1.0])).tolist() == [float(np.float32(2**40 + 1))]
    assert dk.where(dk.tensor([True, False]), dk.arange(2), dk.ones(2)).dtype == np.float32
    assert dk.maximum(dk.arange(2), dk.ones(2)).dtype == np.float32
    for op in (dk.sqrt, dk.exp, dk.log, dk.sin, dk.cos, dk.tanh, dk.sigmoid):
        assert op(dk.tensor([1, 2])).dtype == np.float32, op
    a = dk.tensor([1.5, 2.5], requires_grad=True)
    (2**a + a).sum().backward()
    assert a.grad.dtype == np.float32
    np.testing.assert_allclose(a.grad.numpy(), 2 ** np.array([1.5, 2.5]) * np.log(2) + 1, rtol=1e-6)
    with raises_naming(TypeError, "subtraction", "bool"):
        dk.tensor([True]) - 1
    with raises_naming(TypeError, "subtraction", "bool"):
        1 - dk.tensor([True])
    assert dk.tensor([True, False]).sign().tolist() == [True, False]
    assert dk.tensor([True, False]).square().dtype == np.int64
    with raises_naming(ValueError, "squeeze", "twice"):
        dk.ones(1, 2).squeeze((0, 0))
    with raises_naming(IndexError, "prod", "dim 5"):
        dk.tensor(3.0).prod(5)


def test_train_and_eval_call_each_childs_own_train():
    """A submodule's own train() (a batch norm kept frozen) runs when its parent switches mode."""

    class FrozenNorm(dk.nn.BatchNorm2d):
        def train(self, mode=True):
            return super().train(False)

    model = dk.nn.Sequential(dk.nn.Conv2d(1, 2, 3), dk.nn.Sequential(FrozenNorm(2)))
    model.eval()
    model.train()
    assert model.training and model[0].training and model[1].training and not model[1][0].training
    with raises_naming(ValueError, "train", "mode"):
        model.train("yes")


def test_registration_refuses_names_pytorch_refuses():
    lin = dk.nn.Linear(2, 2)
    with raises_naming(KeyError, "weight", "already exists"):
        lin.register_buffer("weight", dk.zeros(2))
    with raises_naming(KeyError, "training", "already exists"):
        lin.add_module("training", dk.nn.ReLU())
    with raises_naming(KeyError, "forward", "already exists"):
        lin.register_parameter("forward", None)
    for bad in ("a.b", ""):
        with raises_naming(KeyError, "contain '.'"):
            lin.register_buffer(bad, dk.zeros(1))
    with raises_naming(TypeError, "string"):
        dk.nn.ModuleDict({1: dk.nn.ReLU()})
    with raises_naming(TypeError, "register_buffer", "Tensor or None", "int"):
        lin.register_buffer("step", 3)
    bn = dk.nn.BatchNorm1d(2)
    with raises_naming(TypeError, "buffer", "running_mean"):
        bn.running_mean = 5
    lin.register_buffer("scale", dk.ones(2))
    lin.register_buffer("scale", dk.zeros(2))  # the same kind again: replaced
    assert lin.scale.tolist() == [0.0, 0.0] and list(lin.state_dict()) == ["weight", "bias", "scale"]


def test_plain_attributes_may_come_before_super_init():
    class Net(dk.nn.Module):
        def __init__(self, hidden):
            self.hidden = hidden
            super().__init__()
            self.fc = dk.nn.Linear(hidden, 1)

    assert Net(4).hidden == 4

    class Early(dk.nn.Module):
        def __init__(self):
            self.fc = dk.nn.Linear(1, 1)

    with raises_naming(AttributeError, r"before super\(\)\.__init__\(\)"):
        Early()


def test_module_to_moves_gradients_and_takes_floating_dtypes_only():
    lin = dk.nn.Linear(3, 2)
    lin(dk.ones(1, 3)).sum().backward()
    lin.double()
    assert lin.weight.dtype == dk.float64 and lin.weight.grad.dtype == dk.float64
    dk.optim.SGD(lin.parameters(), lr=0.1).step()
    with raises_naming(TypeError, "floating-point", "int32"):
        lin.to(dk.int32)
    assert lin.weight.dtype == dk.float64


def test_sequential_slices_keep_their_names():
    from collections import OrderedDict

    seq = dk.nn.Sequential(dk.nn.Linear(2, 2), dk.nn.ReLU(), dk.nn.Linear(2, 1))
    assert list(seq[1:].state_dict()) == ["2.weight", "2.bias"]
    named = dk.nn.Sequential(OrderedDict(fc1=dk.nn.Linear(2, 2), act=dk.nn.ReLU(), fc2=dk.nn.Linear(2, 1)))
    assert list(named[1:]._modules) == ["act", "fc2"]
    listed = dk.nn.ModuleList([dk.nn.ReLU(), dk.nn.Linear(2, 1)])
    assert list(listed[1:].state_dict()) == ["0.weight", "0.bias"]  # a ModuleList slice renumbers, as torch


def test_pickle_and_deepcopy_of_tensors_keep_data_not_graphs():
    import copy
    import pickle

    w = dk.nn.Parameter(dk.ones(64))
    out = w * 2
    restored = pickle.loads(pickle.dumps(out))
    assert restored.requires_grad and restored.is_leaf and restored.tolist() == [2.0] * 64
    assert len(pickle.dumps(out)) < 2000  # the data, not the graph
    w.grad = dk.ones(64)
    w.register_hook(lambda g: g * 0)  # a lambda: pickling drops hooks rather than failing
    again = pickle.loads(pickle.dumps(w))
    assert type(again) is dk.nn.Parameter and again.grad is None and again.tolist() == [1.0] * 64
    cloned = copy.deepcopy(w)
    assert type(cloned) is dk.nn.Parameter and cloned.grad is None
    (cloned * 3).sum().backward()
    assert cloned.grad.tolist() == [3.0] * 64  # the hook stayed behind
    with raises_naming(RuntimeError, "deepcopy", "leaves"):
        copy.deepcopy(out)
    model = dk.nn.Sequential(dk.nn.Linear(2, 2))
    model[0].weight.grad = dk.ones(2, 2)
    copied = copy.deepcopy(model)
    assert copied[0].weight.grad is None and copied[0].weight is not model[0].weight


def test_load_state_dict_takes_what_pytorch_takes_and_refuses_the_rest():
    torch = pytest.importorskip("torch")
    tlin, lin = torch.nn.Linear(3, 2), dk.nn.Linear(3, 2)
    assert lin.load_state_dict(dict(tlin.named_parameters())) == ([], [])  # tensors that require grad
    np.testing.assert_array_equal(lin.weight.detach().numpy(), tlin.weight.detach().numpy())
    bn = dk.nn.BatchNorm1d(2)
    state = {k: v.float() for k, v in torch.nn.BatchNorm1d(2).state_dict().items()}  # a float count
    bn.load_state_dict(state)
    assert bn.num_batches_tracked.dtype == dk.int64
    with raises_naming(TypeError, "weight", "list"):
        lin.load_state_dict({"weight": [[0.0] * 3] * 2, "bias": np.zeros(2)})
    with raises_naming(TypeError, "dict-like"):
        lin.load_state_dict([("weight", np.zeros((2, 3)))])


def test_module_traversal_and_container_operations_as_pytorch():
    lin = dk.nn.Linear(2, 2)
    tied = dk.nn.Sequential(lin, dk.nn.ReLU(), lin)
    assert [n for n, _ in tied.named_parameters()] == ["0.weight", "0.bias"]
    assert [n for n, _ in tied.named_parameters(remove_duplicate=False)] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    memo = {tied[1]}
    assert [n for n, _ in tied.named_modules(memo=memo)] == ["", "0"]  # the memo holds modules
    kept = tied.state_dict(keep_vars=True)
    assert kept["0.weight"] is lin.weight and isinstance(kept["0.weight"], dk.nn.Parameter)
    into = {}
    assert tied.state_dict(destination=into, prefix="net.") is into and sorted(into)[0] == "net.0.bias"
    assert tied.cpu() is tied
    seq = dk.nn.Sequential(dk.nn.ReLU(), dk.nn.Tanh())
    assert isinstance(seq.pop(0), dk.nn.ReLU) and list(seq._modules) == ["0"]
    joined = seq + dk.nn.Sequential(dk.nn.ReLU())
    assert isinstance(joined, dk.nn.Sequential) and list(joined._modules) == ["0", "1"]
    lst = dk.nn.ModuleList([dk.nn.ReLU()])
    lst += [dk.nn.Tanh()]
    assert len(lst) == 2 and isinstance(lst.pop(), dk.nn.Tanh) and len(lst + lst) == 2


def test_a_shared_submodule_is_visited_once_but_saved_under_each_name():
    """As PyTorch: modules(), named_modules() and parameters() give a module shared by two parents
    once (remove_duplicate=False: under each name), state_dict() saves it under each name."""
    shared = dk.nn.Linear(2, 2)
    model = dk.nn.Sequential(shared, dk.nn.ReLU(), shared)
    assert [name for name, _ in model.named_modules()] == ["", "0", "1"]
    assert [name for name, _ in model.named_modules(remove_duplicate=False)] == ["", "0", "1", "2"]
    assert [name for name, _ in model.named_modules(prefix="net")] == ["net", "net.0", "net.1"]
    assert len(list(model.modules())) == 3 and len(list(model.parameters())) == 2
    assert [name for name, _ in model.named_children()] == ["0", "1"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_replaced_parameters_and_modules_keep_their_place_like_torch():
    """Tying a decoder's weight to an embedding's (the language-model idiom) and replacing a submodule
    keep the state dict's order and count the shared parameter once, as PyTorch does."""
    torch = pytest.importorskip("torch")
    names = []
    for lib in (dk, torch):
        model = lib.nn.Module()
        model.encoder, model.act, model.decoder = lib.nn.Embedding(5, 3), lib.nn.ReLU(), lib.nn.Linear(3, 5)
        model.decoder.weight = model.encoder.weight
        model.act = lib.nn.Tanh()
        assert model.decoder.weight is model.encoder.weight and isinstance(model.act, lib.nn.Tanh)
        names.append((list(model.state_dict()), [n for n, _ in model.named_parameters()], list(model._modules)))
    assert names[0] == names[1]
    assert names[0][0] == ["encoder.weight", "decoder.weight", "decoder.bias"]


def test_clip_grad_value_takes_one_tensor_or_many():
    p = dk.nn.Parameter(dk.zeros(4))
    q = dk.nn.Parameter(dk.zeros(2))
    p.grad, q.grad = dk.tensor([-3.0, -0.5, 0.25, 9.0]), dk.tensor([2.0, -2.0])
    dk.nn.utils.clip_grad_value_(p, 1)
    assert p.grad.tolist() == [-1.0, -0.5, 0.25, 1.0]
    dk.nn.utils.clip_grad_value_([p, q], 0.5)
    assert p.grad.tolist() == [-0.5, -0.5, 0.25, 0.5] and q.grad.tolist() == [0.5, -0.5]
    torch = pytest.importorskip("torch")
    t = torch.nn.Parameter(torch.zeros(4))
    t.grad = torch.tensor([-3.0, -0.5, 0.25, 9.0])
    torch.nn.utils.clip_grad_value_(t, 1)
    p.grad = dk.tensor([-3.0, -0.5, 0.25, 9.0])
    dk.nn.utils.clip_grad_value_(p, 1)
    np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_scales_to_the_joint_norm_and_returns_it_as_a_tensor(norm_type, max_norm):
    rng = np.random.default_rng(5)
    grads = [rng.standard_normal(s).astype(np.float32) for s in [(3, 5), (7,), (0, 2), ()]]
    params = [dk.nn.Parameter(dk.zeros(g.shape)) for g in grads] + [dk.nn.Parameter(dk.zeros(2))]  # one without grad
    for p, g in zip(params, grads):
        p.grad = dk.tensor(g.copy())
    flat = np.concatenate([g.astype(np.float64).ravel() for g in grads])
    expected = np.abs(flat).max() if math.isinf(norm_type) else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    total = dk.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert isinstance(total, dk.Tensor) and total.shape == () and total.dtype == dk.float32
    np.testing.assert_allclose(total.item(), expected, rtol=1e-6)
    scale = min(1.0, max_norm / (expected + 1e-6))
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * scale, rtol=1e-6, atol=1e-7)
    assert params[-1].grad is None
    torch = pytest.importorskip("torch")
    nonempty = [(p, g) for p, g in zip(params, grads) if g.size]  # torch's infinity norm refuses empty gradients
    tparams = [torch.nn.Parameter(torch.zeros(g.shape)) for _, g in nonempty]
    for t, (_, g) in zip(tparams, nonempty):
        t.grad = torch.from_numpy(g.copy())
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    np.testing.assert_allclose(total.item(), ttotal.item(), rtol=1e-5)
    for (p, _), t in zip(nonempty, tparams):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_without_gradients_and_with_a_nonfinite_norm():
    total = dk.nn.utils.clip_grad_norm_([dk.nn.Parameter(dk.zeros(3))], 1.0)
    assert isinstance(total, dk.Tensor) and total.item() == 0.0
    p = dk.nn.Parameter(dk.zeros(3))
    p.grad = dk.tensor([1.0, np.nan, 2.0])
    with raises_naming(RuntimeError, "error_if_nonfinite"):
        dk.nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    assert np.isnan(p.grad.numpy()[1]) and p.grad.numpy()[0] == 1.0
    assert math.isnan(dk.nn.utils.clip_grad_norm_(p, 1.0).item())


def test_clip_grad_norm_of_order_minus_inf_and_0_and_a_nan_norm_as_pytorch():
    """-inf: the smallest magnitude; 0: PyTorch's count (gradients with a non-zero element); a NaN norm
    scales every gradient to NaN; the norm comes back in the gradients' promoted dtype."""
    p, q = dk.nn.Parameter(dk.zeros(3)), dk.nn.Parameter(dk.zeros(2, dtype=dk.float64))
    cases = [  # (norm_type, max_norm, expected norm)
        (-math.inf, 1.0, 0.25),
        (0, 1.0, 2.0),
        (0, 10.0, 2.0),
    ]
    p.grad, q.grad = dk.tensor([0.5, -3.0, 2.0]), dk.tensor([0.0, 0.0], dtype=dk.float64)
    assert dk.nn.utils.clip_grad_norm_([p, q], 10.0, norm_type=0).item() == 1.0  # q's gradient is all zeros
    for norm_type, max_norm, expected in cases:
        p.grad, q.grad = dk.tensor([0.5, -3.0, 2.0]), dk.tensor([0.25, -0.75], dtype=dk.float64)
        total = dk.nn.utils.clip_grad_norm_([p, q], max_norm, norm_type=norm_type)
        assert total.dtype == dk.float64 and total.item() == expected
        scale = min(1.0, max_norm / (expected + 1e-6))
        np.testing.assert_allclose(p.grad.numpy(), np.array([0.5, -3.0, 2.0], np.float32) * np.float32(scale))
    p.grad, q.grad = dk.tensor([1.0, np.nan, 2.0]), dk.tensor([5.0, 6.0], dtype=dk.float64)
    assert math.isnan(dk.nn.utils.clip_grad_norm_([p, q], 1.0).item())
    assert np.isnan(p.grad.numpy()).all() and np.isnan(q.grad.numpy()).all()


def test_repeat_and_tile_always_copy():
    """As PyTorch's, even where no element repeats (counts of 1, tiling a dimension of size 1): the
    result is writeable and later writes to the source do not show through it."""
    x = dk.tensor([[1.0, 2.0, 3.0]])
    copies = [x.repeat(2, 1), x.repeat(1, 1), x.tile(1), x.reshape(3, 1).tile(1, 2), x.repeat(1, 1, 1)]
    before = [c.numpy().copy() for c in copies]
    x.add_(10)
    for c, b in zip(copies, before):
        np.testing.assert_array_equal(c.numpy(), b)
        c.mul_(2)  # writeable
    np.testing.assert_array_equal(x.numpy(), [[11, 12, 13]])


def test_clamp_with_tensor_bounds_as_pytorch():
    """Tensor bounds broadcast (also to a shape larger than the input), promote as PyTorch's operators
    do, and get their gradient where they bind, out of place and in place."""
    x = dk.tensor([0.0, 2.0, 5.0], dtype=dk.float64, requires_grad=True)
    lo = dk.tensor([1.0, 1.0, 1.0], dtype=dk.float64, requires_grad=True)
    hi = dk.tensor([[4.0, 4.0, 4.0], [6.0, 1.5, 6.0]], dtype=dk.float64, requires_grad=True)
    out = x.clamp(lo, hi)
    np.testing.assert_array_equal(out.detach().numpy(), [[1, 2, 4], [1, 1.5, 5]])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 1])  # between the bounds, in each row
    np.testing.assert_array_equal(lo.grad.numpy(), [2, 0, 0])
    np.testing.assert_array_equal(hi.grad.numpy(), [[0, 0, 1], [0, 1, 0]])
    gradcheck(lambda a, b: a.clamp(min=b), x, lo)
    # In place, on a non-leaf: the bound that binds gets its gradient.
    lo.grad = None
    y = x * 1
    y.clamp_(min=lo)
    y.sum().backward()
    np.testing.assert_array_equal(lo.grad.numpy(), [1, 0, 0])
    z = dk.zeros(3, dtype=dk.float64)
    assert z.clamp_(min=lo).requires_grad
    # Promotion.
    ints = dk.tensor([1, 5, -3])
    assert ints.clamp(dk.tensor([0.5, 0.5, 0.5])).dtype == dk.float32
    np.testing.assert_array_equal(ints.clamp(dk.tensor([0.5, 0.5, 0.5])).numpy(), [1, 5, 0.5])
    assert dk.ones(2).clamp(dk.zeros(2, dtype=dk.float64)).dtype == dk.float64
    assert dk.tensor([True, False]).clamp(0, 0).dtype == dk.int64
    assert ints.clamp(0.5).dtype == dk.float32
    with raises_naming(RuntimeError, "clamp_", "float32", "int64"):
        ints.clamp_(0.5, 2.5)
    f = dk.tensor([0.25, 3.0])
    f.clamp_(dk.zeros(2, dtype=dk.float64), 1)  # float64 results cast back to float32, as PyTorch
    assert f.dtype == dk.float32 and f.tolist() == [0.25, 1.0]


def test_python_number_protocols():
    loss = dk.tensor(0.123456)
    assert f"{loss:.3f}" == "0.123" and f"{loss}" == f"{loss.item()}" and "tensor" in f"{dk.ones(2)}"
    with pytest.raises(TypeError):
        f"{dk.ones(2):.3f}"
    t = dk.tensor([-1.0, 2.0])
    assert abs(t).tolist() == [1.0, 2.0] and (+t).tolist() == [-1.0, 2.0]
    assert list(range(dk.tensor(3))) == [0, 1, 2] and [10, 20, 30][dk.tensor([1])] == 20
    for bad in (dk.tensor(1.0), dk.tensor([1, 2])):
        with raises_naming(TypeError, "integer tensors of a single element"):
            [10, 20][bad]


def test_copy_casts_across_kinds_as_pytorch():
    i = dk.zeros(2, dtype=dk.int64)
    i.copy_(dk.tensor([2.7, -3.3]))
    assert i.tolist() == [2, -3]
    b = dk.zeros(2, dtype=dk.bool)
    b.copy_(dk.tensor([5, 0]))
    assert b.tolist() == [True, False]


def test_reductions_keep_an_integer_or_bool_dtype_they_are_given():
    x = dk.tensor([[1, 2], [3, 4]], dtype=dk.int32)
    assert x.sum().dtype == dk.int64 and x.cumsum(1).dtype == dk.int64 and x.prod(1).dtype == dk.int64
    assert x.sum(dtype=dk.int32).dtype == dk.int32 and x.sum(dtype=dk.int32).item() == 10
    assert x.prod(1, dtype=dk.int32).tolist() == [2, 12] and x.prod(1, dtype=dk.int32).dtype == dk.int32
    assert x.cumsum(1, dtype=dk.int32).dtype == dk.int32 and x.cumsum(1, dtype=dk.int32).tolist() == [[1, 3], [3, 7]]
    m = dk.tensor([True, False, True])
    assert m.sum().item() == 2 and m.sum(dtype=dk.bool).dtype == dk.bool and m.sum(dtype=dk.bool).item() is True
    assert dk.sum(x, 0, dtype=dk.int32).tolist() == [4, 6]


def test_float16_running_sums_accumulate_in_float32():
    assert dk.ones(3000, dtype=np.float16).cumsum(0)[-1].item() == 3000
    assert dk.ones(3000, dtype=np.float16).sum().item() == 3000


def test_integer_tensors_to_negative_integer_tensor_powers():
    """As PyTorch: 1 stays 1, -1 alternates, every other base goes to 0; a negative number exponent is refused."""
    base = dk.tensor([2, 1, -1, 3, 0, -2, -1])
    power = dk.tensor([-1, -2, -1, 2, -1, -3, -2])
    assert (base**power).tolist() == [0, 1, -1, 9, 0, 0, 1]
    narrow = dk.tensor([2, 3], dtype=dk.int32) ** dk.tensor([-1, -1], dtype=np.int8)
    assert narrow.dtype == dk.int32 and narrow.tolist() == [0, 0]
    with pytest.raises(ValueError, match="negative integer powers"):
        base**-1


def test_creation_refuses_what_pytorch_refuses_and_takes_what_it_takes():
    # Ints past int64 are refused wherever they stand (NumPy would hold them as uint64, float64 beside
    # smaller ones, or objects); floats of any size are floats.
    past = (2**63, [-(2**63) - 1], [2**63, 1], [[1], [2**63 + 1]], [2**64 + 5, 1], [(1, -(2**63) - 1)])
    for data, exc in [(p, OverflowError) for p in past] + [(None, TypeError), (["a"], TypeError)]:
        with pytest.raises(exc, match="tensor"):
            dk.tensor(data)
    assert dk.tensor([2.0**70, 1]).tolist() == [np.float32(2.0**70), 1]
    assert dk.tensor([2**63 - 1, -(2**63)]).tolist() == [2**63 - 1, -(2**63)]
    with raises_naming(ValueError, "tensor", "NaN", "int64"):
        dk.tensor([np.nan], dtype=dk.int64)
    with raises_naming(ValueError, "full", "int64", "nan"):
        dk.full((2,), np.nan, dtype=dk.int64)
    for make in (dk.rand, dk.randn):
        with raises_naming(RuntimeError, "floating-point dtype", "int64"):
            make(2, dtype=dk.int64)
    assert dk.full((2,), dk.tensor(3)).dtype == dk.int64 and dk.full((2,), dk.tensor(True)).dtype == dk.bool
    assert dk.full((2,), dk.tensor(2.5, dtype=dk.float64)).tolist() == [2.5, 2.5]
    assert dk.arange(0, 5, 1.5, dtype=dk.int64).tolist() == [0, 1, 2, 3, 4]
    assert dk.arange(0.5, 4.5, 1, dtype=dk.int64).tolist() == [0, 1, 2, 3]
    with raises_naming(RuntimeError, "step must be nonzero"):
        dk.arange(0, 3, 0.5, dtype=dk.int64)
    assert dk.zeros(dk.tensor(2)).shape == (2,) and dk.ones(dk.tensor(2), 3).shape == (2, 3)


def test_creation_checks_values_devices_and_sizes():
    with raises_naming(TypeError, "full", "fill_value", "NoneType"):
        dk.full((2,), None)
    with raises_naming(TypeError, "tensor", "None"):
        dk.as_tensor(None)
    with raises_naming(RuntimeError, "randperm", "2\\*\\*62"):
        dk.randperm(2**63)
    for make in (lambda: dk.zeros(2, device=0), lambda: dk.full((2,), 1.0, device=0), lambda: dk.ones(2, device=1)):
        with pytest.raises((RuntimeError, ValueError)):  # 0 is a GPU index, as in PyTorch: never the CPU
            make()
    for index in ("abc", 2.5, -1, True):
        with raises_naming(ValueError, "device", "index"):
            dk.device("cpu", index)
    assert dk.device("cuda", np.int64(1)).index == 1 and str(dk.device("cuda:2")) == "cuda:2"
    for make, needle in (
        (lambda: dk.nn.Linear(4, 2.5), "out_features"),
        (lambda: dk.nn.Embedding(3.0, 2), "num_embeddings"),
        (lambda: dk.nn.BatchNorm1d(2.5), "num_features"),
    ):
        with raises_naming(TypeError, needle, "int"):
            make()
    with raises_naming(ValueError, "in_features", "-1"):
        dk.nn.Linear(-1, 2)
    assert dk.nn.Linear(np.int64(4), 2).weight.shape == (2, 4)
    with raises_naming(ValueError, "stratified_split", "test_fraction"):
        dk.data.datasets.stratified_split(np.array([0, 1, 0, 1]), 2.5, 0)


def test_operators_refuse_what_pytorch_refuses():
    f, i = dk.tensor([1.0, 2.0]), dk.tensor([1, 0])
    with raises_naming(TypeError, "subtraction", "bool"):
        f - True
    with raises_naming(TypeError, "subtraction", "bool"):
        True - i
    with raises_naming(RuntimeError, "matmul", "float32", "float64"):
        dk.ones(1, 2) @ dk.ones(2, 1, dtype=dk.float64)
    assert (f - 1).tolist() == [0.0, 1.0]


def test_integer_and_bool_ops_pytorch_refuses_are_refused():
    ints, mask = dk.tensor([1234, 1250]), dk.tensor([True, False])
    assert ints.round().tolist() == [1234, 1250]
    for call, needle in (
        (lambda: ints.round(decimals=-2), "round"),
        (lambda: ints.frac(), "frac"),
        (lambda: mask.relu(), "relu"),
        (lambda: mask.argmax(), "argmax"),
        (lambda: mask.argmin(), "argmin"),
    ):
        with raises_naming(TypeError, needle):
            call()


def test_add_and_sub_take_alpha():
    x = dk.tensor([1.0, 2.0], requires_grad=True)
    y = dk.tensor([1.0, 1.0], requires_grad=True)
    assert x.add(y, alpha=2).tolist() == [3.0, 4.0] and x.sub(y, alpha=3).tolist() == [-2.0, -1.0]
    x.sub(y, alpha=3).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0] and y.grad.tolist() == [-3.0, -3.0]


def test_cat_skips_the_legacy_empty_1d_tensor():
    x = dk.ones(2, 3, requires_grad=True)
    out = dk.cat([dk.tensor([]), x, dk.tensor([])])
    assert out.shape == (2, 3)
    out.sum().backward()
    assert x.grad.tolist() == [[1.0] * 3] * 2
    assert dk.cat([dk.tensor([]), dk.tensor([])]).shape == (0,)
    with raises_naming(ValueError, "cat"):
        dk.cat([x, dk.ones(2)])


def test_load_accepts_map_location(tmp_path, device):
    path = tmp_path / "ckpt.safetensors"
    dk.save({"w": np.arange(3.0), "meta": {"step": 2, "v": [np.ones(2)]}}, path)
    for location in (None, "cpu", dk.device("cpu"), {"cpu": "cpu"}, device, {"cpu": device}):
        loaded = dk.load(path, map_location=location)
        target = "cpu" if location in (None, "cpu") or location == dk.device("cpu") else device
        if isinstance(location, dict):
            target = location["cpu"]
        assert dk.backends.device_of(loaded["w"]) == dk.device(target)
        np.testing.assert_array_equal(to_host(loaded["w"]), np.arange(3.0))
        np.testing.assert_array_equal(to_host(loaded["meta"]["v"][0]), np.ones(2))
        assert loaded["meta"]["step"] == 2
    with raises_naming(TypeError, "map_location", "3"):
        dk.load(path, map_location=3)


# ---------------------------------------------------------------------------------------------
# The GPU's NumPy dispatch (tests/cuda_standin.py: host memory behind the CUDA module's op tables)
# ---------------------------------------------------------------------------------------------

# Cases that compute with a NumPy function the GPU dispatch lacks, and the error they raise there.
NOT_ON_GPU = {
    **{n: "np.argsort" for n in CASES if n.startswith(("sort", "argsort", "topk"))},
    **{n: "np.cumsum" for n in CASES if n.startswith("cumsum")},
    **{n: "np.einsum" for n in CASES if n.startswith("einsum")},
    "diagonal": "np.diagonal",
    "log2_log10": "np.log2",
    "rounding": "np.floor",
    "frac_sign": "np.trunc",
    "remainder_fmod": "np.remainder",
    # the forward runs there; the gradient's exclusive products need np.cumprod
    "prod": "np.cumprod",
    "prod_with_zeros": "np.cumprod",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_on_the_gpu_dispatch_matches_the_cpu(name, rng, monkeypatch):
    """On the CUDA arrays' NumPy dispatch the op gives the CPU's values and gradients, or (for the
    NumPy functions that have no GPU kernel yet) NotImplementedError naming the function."""
    cuda_standin = pytest.importorskip("cuda_standin", exc_type=ImportError)
    monkeypatch.setitem(dk.backends._BACKENDS, "standin", cuda_standin.StandInBackend())
    fn, _, shape = CASES[name]
    x = _inputs(rng, shape)
    grads, values = [], []
    for device in ("cpu", "standin"):
        t = dk.tensor(x, requires_grad=name not in NOT_DIFFERENTIABLE, device=device)
        if device == "standin" and name in NOT_ON_GPU:
            with raises_naming(NotImplementedError, NOT_ON_GPU[name]):  # in the forward or the backward
                outs = [o for o in _outputs(fn(dk, t)) if o.requires_grad]
                sum(o.sum() for o in outs).backward()
            return
        outs = _outputs(fn(dk, t))
        values.append([to_host(o._array) for o in outs])
        if name not in NOT_DIFFERENTIABLE:
            w = [np.linspace(-1, 1, o.numel()).reshape(o.shape) for o in outs]
            sum((o * dk.tensor(wi, device=device)).sum() for o, wi in zip(outs, w) if o.requires_grad).backward()
            grads.append(to_host(t.grad._array))
    for cpu, gpu in zip(*values):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-12, atol=1e-14)
        assert gpu.dtype == cpu.dtype
    if grads:
        np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, atol=1e-14)


# nonzero / argwhere / where(condition) / masked_select


@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 5), (2, 0, 4), (2, 3, 4)])
def test_nonzero_argwhere_and_one_argument_where_follow_numpy(shape):
    rng = np.random.default_rng(len(shape))
    values = np.where(rng.random(shape) < 0.4, 0.0, rng.standard_normal(shape))
    x = dk.tensor(values)
    expected = np.argwhere(values)
    for result in (x.nonzero(), dk.nonzero(x), dk.argwhere(x), x.argwhere()):
        assert result.dtype == dk.int64 and result.shape == (len(expected), len(shape))
        np.testing.assert_array_equal(result.numpy(), expected)
    as_tuple = x.nonzero(as_tuple=True)
    expected_tuple = np.nonzero(values.reshape(shape or (1,)))
    assert len(as_tuple) == len(expected_tuple) == dk.where(x > 0).__len__()
    for got, want in zip(as_tuple, expected_tuple):
        assert got.dtype == dk.int64
        np.testing.assert_array_equal(got.numpy(), want)
    for got, want in zip(dk.where(x > 0), np.nonzero((values > 0).reshape(shape or (1,)))):
        np.testing.assert_array_equal(got.numpy(), want)
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(values)
    np.testing.assert_array_equal(x.nonzero().numpy(), t.nonzero().numpy())
    for got, want in zip(as_tuple, t.nonzero(as_tuple=True)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize(
    ("x_shape", "mask_shape"), [((3, 4), (3, 4)), ((3, 4), (4,)), ((4,), (2, 3, 4)), ((0, 2), (2,))]
)
def test_masked_select_broadcasts_and_sends_gradients_back(x_shape, mask_shape):
    rng = np.random.default_rng(3)
    values, mask = rng.standard_normal(x_shape), rng.random(mask_shape) < 0.5
    x = dk.tensor(values, requires_grad=True)
    shape = np.broadcast_shapes(x_shape, mask_shape)
    expected = np.broadcast_to(values, shape)[np.broadcast_to(mask, shape)]
    for out in (x.masked_select(dk.tensor(mask)), dk.masked_select(x, dk.tensor(mask))):
        assert out.shape == expected.shape
        np.testing.assert_array_equal(out.detach().numpy(), expected)
    if values.size:  # finite differences need an element to perturb
        gradcheck(lambda t: t.masked_select(dk.tensor(mask)), x)
    torch = pytest.importorskip("torch")
    t = torch.tensor(values, requires_grad=True)
    weights = rng.standard_normal(expected.shape)
    (t.masked_select(torch.from_numpy(mask)) * torch.from_numpy(weights)).sum().backward()
    x.grad = None
    (x.masked_select(dk.tensor(mask)) * dk.tensor(weights)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-12)


def test_masked_select_and_where_refuse_bad_arguments():
    x = dk.zeros(3, 4)
    with raises_naming(TypeError, "masked_select", "mask"):
        x.masked_select(dk.zeros(3, 4))
    with raises_naming(RuntimeError, "masked_select", "mask", r"\(2, 4\)"):
        x.masked_select(dk.zeros(2, 4) > 0)
    with raises_naming(TypeError, "where", "other"):
        dk.where(x > 0, x)
    with raises_naming(TypeError, "where", "condition"):
        dk.where(np.ones(3, bool))


def test_flip_is_a_copy_like_torch():
    """flip returns new memory: writing into it changes neither the input nor its gradient's route."""
    x = dk.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = x.flip(0)
    y[0, 0] = 100.0
    np.testing.assert_array_equal(x.numpy(), [[1, 2], [3, 4]])
    w = dk.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = w * 1
    b.flip(0).mul_(10)
    b.sum().backward()
    np.testing.assert_array_equal(b.detach().numpy(), [1, 2, 3])
    np.testing.assert_array_equal(w.grad.numpy(), [1, 1, 1])


@pytest.mark.parametrize(
    "key",
    [
        (0, slice(None), [1, 2]),
        ([0, 2], 1, slice(None), [3, 4]),
        (Ellipsis, 1, [0, 2]),
        (None, 1, slice(None), [0, 1]),
        ([1, 2], slice(1, 3), 0),
        (slice(None), 2, [[0, 1], [1, 0]]),
        (1, [True, False, True, True], slice(None), 0),
    ],
    ids=str,
)
def test_integers_with_advanced_indices_select_first_like_torch(key):
    """PyTorch applies integer indices first (selects), then the arrays: x[0, :, [1, 2]] of a (3, 4, 5, 6)
    tensor is x[0][:, [1, 2]], (4, 2, 6), where NumPy broadcasts the 0 with the list: (2, 4, 6).
    Reading, the gradient (repeated positions accumulate) and assignment, against PyTorch."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 6))
    if key == (0, slice(None), [1, 2]):
        np.testing.assert_array_equal(dk.tensor(x)[key].numpy(), x[0][:, [1, 2]])
    torch_key = tuple(torch.tensor(k) if isinstance(k, list) else k for k in key)
    keyed = tuple(dk.tensor(np.asarray(k)) if isinstance(k, list) else k for k in key)
    ref = torch.tensor(x, requires_grad=True)
    t = dk.tensor(x, requires_grad=True)
    want, out = ref[torch_key], t[keyed]
    np.testing.assert_array_equal(out.detach().numpy(), want.detach().numpy())
    weights = np.arange(out.numel(), dtype=np.float64).reshape(out.shape)
    (want * torch.tensor(weights)).sum().backward()
    (out * dk.tensor(weights)).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), ref.grad.numpy())
    target, torch_target = dk.tensor(x.copy()), torch.tensor(x.copy())
    target[keyed] = dk.tensor(-weights)
    torch_target[torch_key] = torch.tensor(-weights)
    np.testing.assert_array_equal(target.numpy(), torch_target.numpy())


@pytest.mark.parametrize("reduction", ["sum", "mean", "amax", "amin", "var", "std", "norm"])
def test_an_empty_dim_list_reduces_every_dimension_like_torch(reduction):
    x = np.arange(6.0).reshape(2, 3)
    want = {"norm": np.linalg.norm(x), "var": x.var(ddof=1), "std": x.std(ddof=1)}.get(reduction)
    want = (
        getattr(np, reduction.replace("a", "", 1) if reduction in ("amax", "amin") else reduction)(x)
        if want is None
        else want
    )
    for dim in ((), []):
        got = getattr(dk.tensor(x), reduction)(dim=dim)
        assert got.shape == () and got.item() == pytest.approx(want, rel=1e-12), (reduction, dim)


def test_dim_0_and_minus_1_of_a_0d_tensor_like_torch():
    x = dk.tensor(2.5)
    for dim in (0, -1):
        for name in ("sum", "mean", "amax", "norm", "all", "any"):
            assert getattr(x, name)(dim=dim).shape == (), (name, dim)
        assert x.max(dim).values.item() == 2.5 and x.argmax(dim).item() == 0
    index = dk.tensor(0)
    assert x.gather(0, index).item() == 2.5
    assert x.scatter(0, index, dk.tensor(7.0)).item() == 7.0
    assert x.scatter_add(0, index, dk.tensor(1.0)).item() == 3.5
    assert x.index_select(0, dk.tensor([0])).shape == () and x.index_select(-1, dk.tensor([0])).item() == 2.5
    with pytest.raises(IndexError):
        x.sum(dim=1)


def test_max_of_a_tensor_with_nan_shares_the_gradient_among_the_nans_like_torch():
    for op in ("max", "min"):
        x = dk.tensor([1.0, math.nan, 3.0, math.nan], requires_grad=True)
        getattr(x, op)().backward()
        np.testing.assert_array_equal(x.grad.numpy(), [0, 0.5, 0, 0.5])


def test_norm_below_one_has_a_zero_gradient_at_zero_elements_like_torch():
    x = dk.tensor([0.0, 1.0, 2.0], dtype=dk.float64, requires_grad=True)
    x.norm(p=0.5).backward()
    s = 1 + math.sqrt(2)  # sum of sqrt(|x|); the norm is s^2, d/dx_i = s / sqrt(x_i)
    np.testing.assert_allclose(x.grad.numpy(), [0.0, s, s / math.sqrt(2)], rtol=1e-13)


def test_einsum_gradient_sums_broadcast_size_one_dimensions():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((1, 2, 3)), rng.standard_normal((5, 3, 4))
    ta, tb = dk.tensor(a, requires_grad=True), dk.tensor(b, requires_grad=True)
    dk.einsum("...ij,...jk", ta, tb).sum().backward()
    np.testing.assert_allclose(ta.grad.numpy(), np.broadcast_to((b.sum(axis=2)).sum(axis=0), (2, 3))[None], rtol=1e-12)
    np.testing.assert_allclose(tb.grad.numpy(), np.broadcast_to(a[0].sum(axis=0)[:, None], (5, 3, 4)), rtol=1e-12)
    c = dk.tensor(np.ones((1, 3)), requires_grad=True)
    dk.einsum("ij,ij->ij", c, dk.tensor(np.full((2, 3), 2.0))).sum().backward()
    np.testing.assert_array_equal(c.grad.numpy(), [[4.0, 4.0, 4.0]])


@pytest.mark.parametrize("method", ["fill_", "zero_", "copy_"])
def test_overwriting_a_whole_non_leaf_gives_its_inputs_zero_gradients_like_torch(method):
    x = dk.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    args = {"fill_": (5.0,), "zero_": (), "copy_": (dk.tensor([7.0, 8.0]),)}[method]
    getattr(y, method)(*args)
    (y * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


def test_argmax_keepdim_without_dim_keeps_every_dimension_like_torch():
    x = dk.tensor(np.array([[1.0, 5.0, 2.0], [0.0, 3.0, 9.0]]))
    assert x.argmax(keepdim=True).shape == (1, 1) and x.argmax(keepdim=True).item() == 5
    assert x.argmin(keepdim=True).shape == (1, 1) and x.argmin(keepdim=True).item() == 3
    assert x.argmax().shape == ()


def test_expand_refuses_minus_one_in_a_new_leading_dimension_like_torch():
    x = dk.tensor([1.0, 2.0])
    assert x.expand(3, -1).shape == (3, 2)
    with raises_naming(RuntimeError, "expand", "-1", "new leading dimension"):
        x.expand(-1, 2)


def test_assigned_grad_must_have_the_tensors_shape_like_torch():
    p = dk.nn.Parameter(dk.zeros(4, 5))
    with raises_naming(RuntimeError, "grad", "different size", "(5,)", "(4, 5)"):
        p.grad = dk.zeros(5)
    with raises_naming(TypeError, "grad", "ndarray"):
        p.grad = np.zeros((4, 5))
    p.grad = dk.ones(4, 5)
    p.grad = None
    assert p.grad is None


def test_clamp_bound_gradients_follow_pytorchs_rule():
    """x's gradient where low <= x <= high; low's where x < low < high; high's where x > high or high
    < low (a low above high gives way to high, which sets the output); none where a NaN compares."""
    x = dk.tensor([0.0, 5.0, 10.0, np.nan], dtype=dk.float64, requires_grad=True)
    low = dk.tensor([2.0, 2.0, 2.0, 2.0], dtype=dk.float64, requires_grad=True)
    high = dk.tensor([8.0, 8.0, 8.0, 8.0], dtype=dk.float64, requires_grad=True)
    x.clamp(low, high).sum().backward()
    assert x.grad.tolist() == [0, 1, 0, 0] and low.grad.tolist() == [1, 0, 0, 0] and high.grad.tolist() == [0, 0, 1, 0]
    x, low, high = (dk.tensor(v, dtype=dk.float64, requires_grad=True) for v in ([1.0, 5.0, 9.0], [6.0] * 3, [4.0] * 3))
    out = x.clamp(low, high)  # low > high: every output is high
    assert out.tolist() == [4, 4, 4]
    out.sum().backward()
    assert x.grad.tolist() == [0, 0, 0] and low.grad.tolist() == [0, 0, 0] and high.grad.tolist() == [1, 1, 1]
    x, low = dk.tensor([1.0, 3.0], requires_grad=True), dk.tensor([np.nan, 2.0], requires_grad=True)
    x.clamp(low, None).sum().backward()
    assert x.grad.tolist() == [0, 1] and low.grad.tolist() == [0, 0]


def test_a_bool_scalar_in_an_index_consumes_no_dimension():
    """x[True, 0, [1, 2]] reads x[0, [1, 2]] as in PyTorch (the True broadcasts with the list): the
    bool takes no dimension of x (it had been counted as one, so the integer and the list indexed the
    wrong dimensions)."""
    values = np.arange(24.0).reshape(2, 3, 4)
    x = dk.tensor(values)
    np.testing.assert_array_equal(x[True, 0, [1, 2]].numpy(), values[0, [1, 2]])
    np.testing.assert_array_equal(x[0, True, [1, 2], 0].numpy(), values[0, [1, 2], 0])
    y = dk.zeros(2, 3, 4)
    y[True, 0, [1, 2]] = -1.0
    assert np.argwhere(y.numpy() == -1).tolist() == [[0, 1, i] for i in range(4)] + [[0, 2, i] for i in range(4)]


def test_cat_promotes_over_empty_one_dimensional_tensors_too():
    """An empty 1-D tensor joins any shape and still takes part in the promotion, as in PyTorch."""
    got = dk.cat([dk.tensor([1, 1]), dk.tensor(np.zeros(0, np.float32))])
    assert got.dtype == dk.float32 and got.tolist() == [1.0, 1.0]
    assert dk.cat([dk.tensor(np.zeros(0)), dk.ones(2, 2)]).dtype == dk.float64


def test_in_place_scatter_on_zero_dimensional_tensors():
    """As the out-of-place ops and PyTorch: a 0-d tensor and a 0-d index (an internal IndexError had
    come out), with gradients through the written-back value."""
    assert dk.tensor(1.0).scatter_add_(0, dk.tensor(0), dk.tensor(2.0)).item() == 3.0
    assert dk.tensor(1.0).scatter_(0, dk.tensor(0), dk.tensor(2.0)).item() == 2.0
    assert dk.tensor(1.0).scatter_(0, dk.tensor(0), value=5.0).item() == 5.0
    src = dk.tensor(2.0, requires_grad=True)
    x = dk.tensor(1.0, requires_grad=True) * 1.0
    (x.scatter_add_(0, dk.tensor(0), src) * 3.0).backward()
    assert src.grad.item() == 3.0


def test_gather_and_scatter_take_int32_indices_as_pytorch():
    x = dk.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    index = dk.tensor(np.array([[0], [2]], np.int32))
    got = x.gather(1, index)
    assert got.tolist() == [[0.0], [5.0]]
    got.sum().backward()
    assert x.grad.tolist() == [[1, 0, 0], [0, 0, 1]]
    assert x.detach().scatter(1, index, 9.0).tolist() == [[9, 1, 2], [3, 4, 9]]
    with pytest.raises(RuntimeError, match="int64 or int32"):
        x.gather(1, dk.tensor(np.array([[0], [2]], np.int16)))
