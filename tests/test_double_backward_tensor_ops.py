"""create_graph=True through the indexing, gathering, scattering, product, einsum and special-function
Functions of tensor_ops.py and tensor.py (gather and what sorts through it, index_select, diagonal,
einsum, prod, cumprod, atan2 and the other elementwise pairs, lgamma, digamma, polygamma, masked_fill,
scatter, index_put, scatter_reduce, ...). Each case's create_graph gradient is checked by finite
differences and, where PyTorch is installed, its gradient and second derivatives against PyTorch's
double backward in float64."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest

from checks import create_graph_gradients, gradcheck


def _nn(lib):
    return dk.nn.functional if lib is dk else lib.nn.functional


def _flat(lib, *parts):
    """The parts, flattened and joined: one output per case."""
    return lib.cat([p.reshape(-1) for p in parts])


def _index(lib, rows):
    return lib.tensor(np.array(rows, dtype=np.int64))


def _mask(lib, rows):
    return lib.tensor(np.array(rows, dtype=bool))


def _normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _with_zeros(shape, positions, seed=0):
    a = np.random.default_rng(seed).uniform(0.5, 1.5, shape) * np.where(_normal(*shape, seed=seed) > 0, 1, -1)
    for p in positions:
        a[p] = 0.0
    return a


def _away_from_integers(*shape, seed=0):
    a = np.random.default_rng(seed).uniform(-2.8, 3.5, shape)
    return np.round(a) + np.where(np.abs(a - np.round(a)) < 0.25, 0.4, a - np.round(a))


I23 = [[0, 0, 4, 1], [2, 3, 3, 3], [1, 0, 2, 4]]  # gather/scatter indices into (3, 5) along dim 1, repeats

# name -> (f(lib, *tensors), the input arrays (float64, all differentiable))
CASES = {
    "gather": (
        lambda lib, x: _flat(
            lib, x.gather(1, _index(lib, I23)) ** 2, x.gather(0, _index(lib, [[2, 0, 1, 1], [0, 0, 2, 1]])).sin() * 3
        ),
        [_normal(3, 5)],
    ),
    "sort/topk/msort/take_along_dim": (
        lambda lib, x: _flat(
            lib,
            x.sort(1).values ** 3,
            x.sort(0, descending=True).values.sin() * x,
            x.topk(2, 1).values.exp(),
            x.topk(2, 0, largest=False).values ** 2,
            x.msort().cos(),
            lib.take_along_dim(x, _index(lib, [[1], [0], [4]]), 1) ** 2,
        ),
        [_normal(3, 5, seed=1)],
    ),
    "kthvalue/median/nanmedian/mode": (
        lambda lib, x: _flat(
            lib,
            x.kthvalue(2, 1).values ** 2,
            x.median(0).values.exp(),
            x.median().sin() * x,
            x.nanmedian(1).values ** 3,
            x.mode(1).values.exp().unsqueeze(1) * x.mode(0, keepdim=True).values,
        ),
        [_normal(3, 5, seed=2)],
    ),
    "cummax/cummin": (
        lambda lib, x: _flat(lib, x.cummax(1).values ** 2, x.cummin(0).values.exp() * x),
        [_normal(3, 5, seed=3)],
    ),
    "quantile": (
        lambda lib, x: _flat(
            lib,
            *(
                x.quantile(q, dim=dim, interpolation=mode) ** 2
                for q, dim, mode in [
                    (0.3, 1, "linear"),
                    (0.6, 0, "lower"),
                    (0.45, 1, "higher"),
                    (0.3, None, "midpoint"),
                    (0.7, 1, "nearest"),
                ]
            ),
            x.quantile(lib.tensor(np.array([0.2, 0.9])), dim=1).sin(),
        ),
        [_normal(3, 5, seed=4)],
    ),
    "roll/tril/triu/kron/take_along_dim": (  # through Functions differentiable before: checked all the same
        lambda lib, x, y: _flat(
            lib,
            x.roll(2, 1) * x,
            x.roll((1, -1), (0, 1)) ** 2,
            x.tril(1).sin() * x,
            x.triu(-1) ** 2,
            lib.kron(x, y).exp(),
            lib.take_along_dim(x, _index(lib, [[0, 2]]), 1) ** 2,
        ),
        [_normal(3, 4, seed=56), _normal(2, 1, seed=57)],
    ),
    "index_select/repeat_interleave": (
        lambda lib, x: _flat(
            lib,
            x.index_select(1, _index(lib, [0, 2, 2, 4])) ** 2,
            x.index_select(0, _index(lib, [2, 2])).exp(),
            x.repeat_interleave(2, dim=0).sin() * x.repeat_interleave(2, dim=0),
            x.repeat_interleave(_index(lib, [1, 0, 2]), dim=0) ** 3,
        ),
        [_normal(3, 5, seed=5)],
    ),
    "diagonal/trace/diag of a matrix": (
        lambda lib, x, y: _flat(
            lib,
            x.diagonal(1) ** 2,
            x.diagonal(-1, 1, 0).exp(),
            x.trace() * x,
            x.diag(-2).sin(),
            y.diagonal(0, 0, 2) ** 3,
            y.diagonal(1, -1, 1).exp(),
        ),
        [_normal(4, 5, seed=6), _normal(3, 2, 3, seed=7)],
    ),
    "diagonal_scatter/diag/diag_embed": (
        lambda lib, x, v, m: _flat(
            lib,
            x.diagonal_scatter(v.sin(), 1) ** 2,
            x.diagonal_scatter(v * v, -1, 1, 0) * x,
            v.diag(1) ** 2,
            m.diag_embed(1, 0, 2).exp(),
        ),
        [_normal(4, 5, seed=8), _normal(4, seed=9), _normal(2, 3, seed=10)],
    ),
    "einsum": (
        lambda lib, a, b, c, s, d: _flat(
            lib,
            lib.einsum("ij,jk,k->i", a, b, c) ** 2,
            lib.einsum("ii->i", s).exp() * lib.einsum("ii", s),
            lib.einsum("ij,ij->", a, a.sin()) * c,
            lib.einsum("ij,ij->ij", a, d) ** 2,
            lib.einsum("...j,kj->...k", a, b.transpose(0, 1)).sin(),
            lib.einsum("iji->j", s.reshape(3, 1, 3).expand(3, 2, 3) * lib.einsum("ik->ik", s).unsqueeze(1)) ** 2,
        ),
        [_normal(2, 3, seed=11), _normal(3, 4, seed=12), _normal(4, seed=13), _normal(3, 3, seed=14), _normal(1, 3)],
    ),
    "bilinear": (
        lambda lib, x1, x2, w, b: _nn(lib).bilinear(x1, x2, w, b) ** 2 + _nn(lib).bilinear(x1, x2, w).exp(),
        [_normal(3, 4, seed=15), _normal(3, 5, seed=16), _normal(2, 4, 5, seed=17) * 0.3, _normal(2, seed=18)],
    ),
    "prod": (
        lambda lib, x: _flat(lib, x.prod(1) ** 2, x.prod(0, keepdim=True) * x, x.prod().sin(), x[0, 0].prod() * x),
        [_with_zeros((3, 4), [], seed=19)],
    ),
    "prod one zero": (
        lambda lib, x: _flat(lib, x.prod(1) ** 2, x.prod(0).exp(), x.prod() * x, x.prod(-1, keepdim=True) * x),
        [_with_zeros((3, 4), [(1, 2)], seed=20)],
    ),
    "prod several zeros": (
        lambda lib, x: _flat(lib, x.prod(1).sin(), x.prod(0) ** 2, x.prod() * x, x[2].prod() * x),
        [_with_zeros((3, 4), [(0, 1), (0, 3), (2, 2), (2, 0), (2, 3)], seed=21)],
    ),
    "cumprod": (
        lambda lib, x: _flat(lib, x.cumprod(1) ** 2, x.cumprod(0).sin() * x),
        [_with_zeros((3, 4), [], seed=22)],
    ),
    "cumprod one zero": (
        lambda lib, x: _flat(lib, x.cumprod(1) ** 2, x.cumprod(0) * x),
        [_with_zeros((3, 4), [(1, 1)], seed=23)],
    ),
    "cumprod several zeros": (
        lambda lib, x: _flat(lib, x.cumprod(1).sin(), x.cumprod(0) ** 2, x.cumprod(-1) * x),
        [_with_zeros((3, 5), [(0, 1), (0, 3), (2, 0), (1, 2), (2, 4)], seed=24)],
    ),
    "atan2/hypot": (
        lambda lib, a, b, c: _flat(
            lib, lib.atan2(a, b) * a, lib.atan2(c, a) ** 2, a.hypot(b) * b, lib.hypot(c, a).exp(), a.atan2(b * 0.5)
        ),
        [_normal(3, 4, seed=25), _normal(3, 4, seed=26), _normal(4, seed=27)],
    ),
    "logaddexp/logaddexp2": (
        lambda lib, a, b: _flat(lib, a.logaddexp(b) * a, lib.logaddexp2(b, a * a) ** 2, a.logaddexp(b[0]) * b),
        [_normal(3, 4, seed=28), _normal(3, 4, seed=29)],
    ),
    "lgamma/digamma/polygamma": (
        lambda lib, x: _flat(
            lib,
            x.lgamma() * x,
            x.digamma() ** 2,
            x.polygamma(1) * x,
            lib.polygamma(2, x).sin(),
            lib.special.gammaln(x + 0.5) * x,
        ),
        [np.random.default_rng(30).uniform(0.8, 4.0, (3, 4))],
    ),
    "erfinv/i0": (
        lambda lib, x: _flat(lib, (x * 0.8).erfinv() * x, x.i0() ** 2, lib.special.i0(x * 2) * x),
        [np.random.default_rng(31).uniform(-1, 1, (3, 4))],
    ),
    "masked_fill": (
        lambda lib, x, v: _flat(
            lib,
            x.masked_fill(_mask(lib, [[1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 1]]), 0.5) * x,
            x.masked_fill(_mask(lib, [True, False, True, False]), v) ** 2,
            x.masked_fill(x > 0.3, v).exp(),
            (x * 1).masked_fill_(x < 0, v * v) * x,
            x.index_fill(1, _index(lib, [0, 3]), v) ** 2,
        ),
        [_normal(3, 4, seed=32), np.array(0.7)],
    ),
    "scatter/scatter_add/index_add/index_copy/masked_scatter": (
        lambda lib, x, src, s: _flat(
            lib,
            x.scatter(1, _index(lib, [[0, 2], [4, 1], [3, 0]]), src[:, :2]) ** 2,
            x.scatter(1, _index(lib, [[0, 2], [4, 1]]), 0.5) * x,
            x.scatter_add(1, _index(lib, I23), (src * src)[:, :4]).sin(),
            x.index_add(0, _index(lib, [2, 0, 2]), s, alpha=2) ** 2,
            x.index_copy(0, _index(lib, [2, 0, 1]), s * x) ** 2,
            x.masked_scatter(x > 0, src * x) ** 2,
            (x * 1).scatter_(1, _index(lib, [[1], [0], [4]]), src[:, 1:2]).exp(),
        ),
        [_normal(3, 5, seed=33), _normal(3, 5, seed=34), _normal(3, 5, seed=35)],
    ),
    "index_put/put/take": (
        lambda lib, x, v: _flat(
            lib,
            x.index_put((_index(lib, [0, 2, 2]), _index(lib, [1, 3, 0])), v * v) ** 2,
            x.index_put((_index(lib, [0, 2, 0]), _index(lib, [1, 3, 1])), v, accumulate=True).exp(),
            x.index_put((_mask(lib, [True, False, True]),), v[:1]) ** 2,
            x.put(_index(lib, [7, 0, 11]), v.sin()) * x,
            x.put(_index(lib, [7, 7, -1]), v, accumulate=True) ** 2,
            x.take(_index(lib, [[0, 5], [5, 11]])) ** 3,
        ),
        [_normal(3, 4, seed=36), _normal(3, seed=37)],
    ),
    "select_scatter/slice_scatter/setitem/copy_/fill_": (
        lambda lib, x, v, w: _flat(
            lib,
            x.select_scatter(v.sin(), 0, 1) ** 2,
            x.slice_scatter(w * w, 1, 1, 4, 2) * x,
            _set(x * 1, (slice(None), 2), v[1:] * v[1:]) ** 2,
            (x * 1).copy_(x * x) * x,
            (x * 1).fill_(v[0]) * x,
        ),
        [_normal(3, 4, seed=38), _normal(4, seed=39), _normal(3, 2, seed=40)],
    ),
    "remainder/fmod": (
        lambda lib, a, b: _flat(lib, lib.remainder(a * 3, b) * a, lib.fmod(a * 3, b) ** 2 * b, (a % 0.7) * b),
        [_normal(3, 4, seed=41), np.random.default_rng(42).uniform(0.5, 1.5, (4,))],
    ),
    "fmax/fmin": (
        lambda lib, a, b: _flat(lib, lib.fmax(a, b) ** 2, lib.fmin(a * a, b) * a),
        [_normal(3, 4, seed=43), _normal(4, seed=44)],
    ),
    "round/nansum/nanmean/frexp": (
        lambda lib, a: _flat(
            lib,
            (a * 3).round() * a,
            lib.round(a, decimals=1) * a * a,
            a.nansum(1, keepdim=True) * a,
            (a * a).nanmean(0) ** 2,
            a.frexp()[0] * a,
        ),
        [_normal(3, 4, seed=45)],
    ),
    "logcumsumexp": (
        lambda lib, a: _flat(lib, a.logcumsumexp(1) * a, a.logcumsumexp(0) ** 2),
        [_normal(3, 4, seed=46)],
    ),
    "as_strided/unfold": (
        lambda lib, a: _flat(
            lib,
            (a * 1).as_strided((3, 3), (2, 1), 1) ** 2,
            (a * 1).unfold(1, 2, 1).sin() * 2,
            (a * 1).as_strided((2, 2), (1, 1)).exp(),
        ),
        [_normal(3, 4, seed=47)],
    ),
    "scatter_reduce": (
        lambda lib, x, src: _flat(
            lib,
            *(
                x.scatter_reduce(1, _index(lib, I23), (src * src)[:, :4], reduce, include_self=include_self).sin() * x
                for reduce in ("sum", "mean", "amax", "amin")
                for include_self in (True, False)
            ),
        ),
        [_normal(3, 5, seed=48), _normal(3, 5, seed=49)],
    ),
    "scatter_reduce prod": (
        lambda lib, x, src: _flat(
            lib,
            *(
                x.scatter_reduce(1, _index(lib, I23), src[:, :4], "prod", include_self=include_self) ** 2
                for include_self in (True, False)
            ),
            x.index_reduce(0, _index(lib, [2, 0, 2]), src, "prod") * x,
        ),
        [_with_zeros((3, 5), [(0, 2), (1, 0)], seed=50), _with_zeros((3, 5), [(0, 1), (1, 2), (2, 3)], seed=51)],
    ),
}


def _set(t, key, value):
    t[key] = value
    return t


# Checked by finite differences only: what PyTorch computes less accurately or refuses
FD_ONLY = {
    "lgamma/digamma/polygamma at negative x": (  # PyTorch's polygamma cancels there (deepkern.special's note)
        lambda lib, x: _flat(lib, x.lgamma() * x, x.digamma() ** 2, x.polygamma(1) * x, x.polygamma(2) * 0.1),
        [_away_from_integers(3, 4, seed=53) - 3],
    ),
    "scatter/scatter_reduce of a src larger than index": (  # PyTorch's src gradient has index's shape: an error
        lambda lib, x, src: _flat(
            lib,
            x.scatter(1, _index(lib, [[0, 2], [4, 1], [3, 0]]), src) ** 2,
            x.scatter_add(0, _index(lib, [[2, 0, 1, 1]]), src * src).sin(),
            x.scatter_reduce(1, _index(lib, I23), src, "amax", include_self=False) * x,
            x.scatter_reduce(1, _index(lib, I23), src, "prod") ** 2,
        ),
        [_normal(3, 5, seed=54), _normal(3, 5, seed=55)],
    ),
}

# Compared with PyTorch only: casts (float32 rounding has no finite differences) and zero-size inputs
TORCH_ONLY = {
    "cast": (
        lambda lib, x, v: _flat(
            lib,
            x.float().double() * x,
            (x * x).to(lib.float32).double().exp(),
            x.masked_fill(x > 0.3, v.float()) ** 2,
        ),
        [_normal(3, 4, seed=52), np.array(0.7)],
    ),
    "gather/index_select empty": (
        lambda lib, x: _flat(
            lib, x.gather(1, _index(lib, np.zeros((3, 0)))) ** 2, x.index_select(0, _index(lib, [])).exp()
        ),
        [_normal(3, 4)],
    ),
    "prod/cumprod empty": (
        lambda lib, x: _flat(lib, x.prod(1) ** 2, x.prod() * x.sum(), x.cumprod(1) ** 2, x.prod(0) ** 2),
        [np.zeros((0, 3))],
    ),
    "einsum/diagonal/masked_fill/atan2 empty": (
        lambda lib, x, y: _flat(
            lib,
            lib.einsum("ij,jk->ik", x, y) ** 2,
            x.diagonal() ** 2,
            x.masked_fill(x > 0, 1.0) * x,
            lib.atan2(x, x + 1) * x,
            x.lgamma() * x,
        ),
        [np.zeros((0, 3)), _normal(3, 2)],
    ),
}


# PyTorch's trigamma (digamma's derivative, polygamma(1)) is good to 5e-10 relative only (deepkern's to 3e-15)
TOLERANCES = {"lgamma/digamma/polygamma": (1e-8, 1e-9)}


def _derivatives(lib, f, arrays, seed: int = 0):
    """(the create_graph gradients of sum(w * f), whether each requires grad, the gradient of sum(v * g + g^2)
    over them) for random w and v; None where an input gets none (zeros there)."""
    rng = np.random.default_rng(seed)
    xs = [lib.tensor(a, requires_grad=True) for a in arrays]
    out = f(lib, *xs)
    weight = lib.tensor(rng.standard_normal(tuple(out.shape)))
    grads = lib.autograd.grad((out * weight).sum(), xs, create_graph=True, allow_unused=True)
    total = None
    for g, a in zip(grads, arrays):
        if g is not None and g.requires_grad:
            term = (g * lib.tensor(rng.standard_normal(a.shape))).sum() + (g * g).sum()
            total = term if total is None else total + term
    seconds = [None] * len(xs) if total is None else lib.autograd.grad(total, xs, allow_unused=True)

    def host(t, a):
        if t is None:
            return np.zeros(a.shape)
        return t.detach().numpy(force=True) if lib is not dk else t.detach().numpy()

    return (
        [host(g, a) for g, a in zip(grads, arrays)],
        [g is not None and g.requires_grad for g in grads],
        [host(s, a) for s, a in zip(seconds, arrays)],
    )


@pytest.mark.parametrize("name", list(CASES) + list(FD_ONLY))
def test_gradients_with_create_graph_are_differentiable(name):
    """For y = f(inputs): g = d sum(r * y) / d inputs (create_graph=True) is a function of the inputs;
    its own gradient (through the recorded graph) matches its finite differences."""
    f, arrays = {**CASES, **FD_ONLY}[name]
    inputs = [dk.tensor(a.copy(), requires_grad=True) for a in arrays]
    weight = dk.tensor(np.random.default_rng(len(name)).standard_normal(f(dk, *inputs).shape))

    gradcheck(create_graph_gradients(lambda *tensors: (f(dk, *tensors) * weight).sum()), *inputs, tol=1e-5)


@pytest.mark.parametrize("name", list(CASES) + list(FD_ONLY) + list(TORCH_ONLY))
def test_create_graph_gives_backwards_gradient(name):
    """The create_graph=True gradient has the values of the ordinary backward's."""
    f, arrays = {**CASES, **FD_ONLY, **TORCH_ONLY}[name]
    xs = [dk.tensor(a, requires_grad=True) for a in arrays]
    out = f(dk, *xs)
    total = (out * dk.tensor(np.random.default_rng(5).standard_normal(out.shape))).sum()
    plain = dk.autograd.grad(total, xs, retain_graph=True, allow_unused=True)
    recorded = dk.autograd.grad(total, xs, create_graph=True, allow_unused=True)
    for p, r in zip(plain, recorded):
        assert (p is None) == (r is None)
        if p is not None:
            np.testing.assert_allclose(r.detach().numpy(), p.numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", list(CASES) + list(TORCH_ONLY))
def test_second_derivatives_match_pytorch(name):
    """The create_graph gradients, whether each is recorded as a function of the inputs, and the gradient of
    a function of them (linear and quadratic) are PyTorch's."""
    torch = pytest.importorskip("torch")
    f, arrays = {**CASES, **TORCH_ONLY}[name]
    ours, theirs = _derivatives(dk, f, arrays), _derivatives(torch, f, arrays)
    rtol, atol = TOLERANCES.get(name, (1e-10, 1e-12))
    for i, (a, b) in enumerate(zip(ours[0], theirs[0])):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")
    assert ours[1] == theirs[1], "which gradients are recorded as functions of the inputs"
    for i, (a, b) in enumerate(zip(ours[2], theirs[2])):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"second derivative, input {i}")


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_atan2_at_the_origin_is_pytorchs(value):
    """At (0, 0) the gradient is 0 and its own derivative NaN, as PyTorch's."""
    torch = pytest.importorskip("torch")
    a, b = np.array([0.0, 0.5, -1.0]), np.array([0.0, value, 2.0])

    def f(lib, x, y):
        return lib.atan2(x, y) * 2

    ours, theirs = _derivatives(dk, f, [a, b]), _derivatives(torch, f, [a, b])
    for mine, pytorchs in zip(ours[0] + ours[2], theirs[0] + theirs[2]):
        np.testing.assert_allclose(mine, pytorchs, rtol=1e-12)
    assert np.isnan(ours[2][0][0]) and np.isnan(ours[2][1][0])


def test_second_order_through_prod_and_cumprod_with_zeros_is_exact():
    """The Hessian of prod at a point with zeros: d2 prod / dx_i dx_j is the product of the others (0 where
    another zero remains), computed here directly."""
    x0 = np.array([1.5, 0.0, -2.0, 0.0, 3.0])
    x = dk.tensor(x0, requires_grad=True)
    (g,) = dk.autograd.grad(x.prod(), x, create_graph=True)
    hessian = np.stack([dk.autograd.grad(g[i], x, retain_graph=True)[0].numpy() for i in range(5)])
    expected = np.array([[0.0 if i == j else np.prod(np.delete(x0, [i, j])) for j in range(5)] for i in range(5)])
    np.testing.assert_array_equal(hessian, expected)
    (c,) = dk.autograd.grad(x.cumprod(0)[-1], x, create_graph=True)  # the last running product is prod
    np.testing.assert_array_equal(c.detach().numpy(), g.detach().numpy())
    second = np.stack([dk.autograd.grad(c[i], x, retain_graph=True)[0].numpy() for i in range(5)])
    np.testing.assert_array_equal(second, expected)


def test_scatter_reduce_prod_with_zeros_meeting_refuses_the_second_derivative():
    """Two zeros of src reduced into one position: the gradient is right, its derivative refused (PyTorch's
    DelayedError)."""
    x = dk.tensor(np.array([2.0, 3.0]), requires_grad=True)
    src = dk.tensor(np.array([0.0, 0.0, 4.0]), requires_grad=True)
    out = x.scatter_reduce(0, dk.tensor([0, 0, 1]), src, "prod")
    g_x, g_src = dk.autograd.grad(out.sum(), (x, src), create_graph=True)
    np.testing.assert_array_equal(g_src.detach().numpy(), [0.0, 0.0, 3.0])
    np.testing.assert_array_equal(g_x.detach().numpy(), [0.0, 4.0])
    with pytest.raises(NotImplementedError, match="two or more zeros"):
        dk.autograd.grad(g_src.sum(), src)
