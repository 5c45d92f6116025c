"""create_graph=True through the factorizations of deepkern.linalg: det (also at singular matrices), slogdet,
cholesky (lower and upper), qr ('reduced', 'complete'), eigh and eigvalsh, svd (full_matrices or not) and
svdvals, pinv (also hermitian), on batched and non-square inputs. Each case's create_graph gradient is
checked by finite differences and, where PyTorch is installed, its gradient and second derivatives (a
Hessian-vector product plus a gradient penalty, through the inputs and a parameter) against PyTorch's double
backward in float64. The functions of eigenvectors and singular vectors are invariant to their signs (the
LAPACKs may choose differently)."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest

from checks import create_graph_gradients, gradcheck


def _orthogonal(rng, batch, n):
    return np.linalg.qr(rng.standard_normal(batch + (n, n)))[0]


def _with_values(batch, m, n, values, seed=0):
    """U diag(values) V^T for random orthogonal U, V (the values: min(m, n) per matrix, or fewer, zeros after)."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    values = np.broadcast_to(np.pad(values, (0, k - len(values))), batch + (k,))
    return (_orthogonal(rng, batch, m)[..., :k] * values[..., None, :]) @ np.swapaxes(
        _orthogonal(rng, batch, n)[..., :k], -1, -2
    )


def _spd(batch, n, seed=0):
    """Symmetric positive-definite, eigenvalues distinct in [1, 3]."""
    q = _orthogonal(np.random.default_rng(seed), batch, n)
    return (q * np.linspace(1, 3, n)) @ np.swapaxes(q, -1, -2)


def _normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _sym(a):
    """The symmetric part: what eigh and cholesky read, made a function of every element."""
    return (a + a.mT) / 2


def _flat(lib, *parts):
    """The parts, flattened and joined: one output per case."""
    return lib.cat([p.reshape(-1) for p in parts])


def _svd(lib, a, w, full_matrices):
    """Sign-invariant functions of the singular vectors (the first min(m, n): the others are not unique)."""
    u, s, vh = lib.linalg.svd(a, full_matrices=full_matrices)
    k = s.shape[-1]
    u, vh = u[..., :k], vh[..., :k, :]
    return _flat(lib, u * u, ((u @ vh) * w).tanh(), s**2, vh * vh)


TALL, WIDE = _with_values((2,), 5, 3, [3.0, 2.0, 1.0]), _with_values((2,), 3, 5, [3.0, 2.0, 1.0], seed=1)


def _qr(lib, a, w, mode):
    q, r = lib.linalg.qr(a, mode=mode)
    return _flat(lib, q.tanh() * w, r**2, q @ r[..., :1])


# name -> (f(lib, *tensors), the input arrays (float64, all differentiable)); w: a parameter
CASES = {
    "det": (
        lambda lib, a, w: _flat(lib, lib.linalg.det(a) * w.sum(), lib.linalg.det(a * w).tanh()),
        [_normal(2, 3, 3), _normal(3, 3, seed=1)],
    ),
    "det 1x1 and method": (lambda lib, a: (a.det() ** 2) * a.sum((-1, -2)), [_normal(4, 1, 1)]),
    # a batch of a singular matrix (rank 3 of 4: the SVD form) and of a regular one (the inverse)
    "det singular": (
        lambda lib, a, w: _flat(lib, lib.linalg.det(a) * w, lib.linalg.det(a).sin()),
        [np.stack([_with_values((), 4, 4, [2.5, 1.5, 1.0, 0.0]), _normal(4, 4)]), _normal(2, seed=1)],
    ),
    # rank 1 of 3: the cofactors vanish, their derivative does not
    "det rank n-2": (lambda lib, a: lib.linalg.det(a) * a[0, 0], [_with_values((), 3, 3, [2.0])]),
    "slogdet": (
        lambda lib, a, w: _flat(lib, lib.linalg.slogdet(a * w).logabsdet ** 2, lib.linalg.slogdet(a)[1] * w[0, 0]),
        [_normal(3, 4, 4), _normal(4, 4, seed=1)],
    ),
    "logdet": (lambda lib, a: a.logdet() * a[..., 0, 0], [_spd((2,), 3)]),
    "cholesky": (lambda lib, a, w: lib.linalg.cholesky(_sym(a * w)) ** 2, [_spd((2,), 4), np.ones((4, 4))]),
    "cholesky upper": (
        lambda lib, a, w: (lib.linalg.cholesky(_sym(a), upper=True) * w).tanh(),
        [_spd((3, 1), 3), _normal(3, 3)],
    ),
    "qr reduced tall": (lambda lib, a, w: _qr(lib, a, w, "reduced"), [_normal(2, 5, 3), _normal(5, 3, seed=1)]),
    "qr reduced wide": (lambda lib, a, w: _qr(lib, a, w, "reduced"), [_normal(2, 3, 5), _normal(3, 3, seed=1)]),
    "qr complete wide": (lambda lib, a, w: _qr(lib, a, w, "complete"), [_normal(2, 3, 5), _normal(3, 3, seed=1)]),
    "qr complete square": (lambda lib, a, w: _qr(lib, a, w, "complete"), [_normal(4, 4), _normal(4, 4, seed=1)]),
    "eigvalsh": (lambda lib, a, w: lib.linalg.eigvalsh(_sym(a)) ** 2 * w, [_spd((2,), 4) - 2, _normal(4)]),
    "eigh values": (lambda lib, a: lib.linalg.eigh(_sym(a)).eigenvalues.exp(), [_spd((3,), 3)]),
    "eigh": (
        lambda lib, a, w: (lambda e, v: _flat(lib, e**2, v * v * w, v @ (e.unsqueeze(-1) * v.mT * w)))(
            *lib.linalg.eigh(_sym(a))
        ),
        [_spd((2,), 4), _normal(4, 4)],
    ),
    "eigh UPLO=U vectors only": (
        lambda lib, a: (lambda v: (v * v).tanh())(lib.linalg.eigh(_sym(a), UPLO="U")[1]),
        [_spd((), 3)],
    ),
    "svd tall": (lambda lib, a, w: _svd(lib, a, w, False), [TALL, _normal(2, 5, 3)]),
    "svd wide": (lambda lib, a, w: _svd(lib, a, w, False), [WIDE, _normal(2, 3, 5)]),
    "svd square": (
        lambda lib, a, w: _svd(lib, a, w, False),
        [_with_values((), 4, 4, [4.0, 3.0, 2.0, 1.0]), _normal(4, 4)],
    ),
    "svd full tall": (lambda lib, a, w: _svd(lib, a, w, True), [TALL, _normal(2, 5, 3)]),
    "svd full wide": (lambda lib, a, w: _svd(lib, a, w, True), [WIDE, _normal(2, 3, 5)]),
    "svd values": (lambda lib, a, w: lib.linalg.svd(a).S ** 3 * w, [_normal(2, 5, 3), _normal(3)]),
    "svd U only": (lambda lib, a: (lib.linalg.svd(a)[0][..., :3] ** 2).tanh(), [TALL]),
    "svd Vh only": (lambda lib, a: lib.linalg.svd(a, False)[2] ** 2 * a[..., :1], [WIDE]),
    "svdvals": (lambda lib, a: lib.linalg.svdvals(a).log() * a[..., 0], [_normal(2, 3, 5)]),
    "pinv tall": (lambda lib, a, w: (lib.linalg.pinv(a) * w).tanh(), [_normal(2, 5, 3), _normal(3, 5, seed=1)]),
    "pinv wide": (lambda lib, a, w: lib.linalg.pinv(a * w) ** 2, [_normal(3, 5), _normal(3, 5, seed=1)]),
    "pinv hermitian": (
        lambda lib, a, w: (lib.linalg.pinv(_sym(a), hermitian=True) * w).tanh(),
        [_spd((2,), 4) - 2, _normal(4, 4)],
    ),
}

# Output gradients that are zero but functions of a parameter (w - w.detach(): 0, with slope 1) are used as
# PyTorch uses a defined gradient, not dropped as the zeros of an unused output (finite differences cannot
# see a slope that detach hides)
TORCH_ONLY = {
    "eigh vectors with a zero gradient": (
        lambda lib, a, w: _flat(lib, lib.linalg.eigh(_sym(a))[1] ** 2 * (w - w.detach()), w**2),
        [_spd((2,), 3), _normal(3, 3)],
    ),
    "svd vectors with a zero gradient": (
        lambda lib, a, w: (lambda u, s, vh: _flat(lib, u * u * (w - w.detach()), vh * vh * w[:1], s))(
            *lib.linalg.svd(a, False)
        ),
        [TALL, _normal(5, 3)],
    ),
}


def _derivatives(lib, f, arrays, seed: int = 0):
    """(the create_graph gradients of sum(w * f), the gradient of sum(v * g + g^2) over them) for random w, v."""
    rng = np.random.default_rng(seed)
    xs = [lib.tensor(a, requires_grad=True) for a in arrays]
    out = f(lib, *xs)
    weight = lib.tensor(rng.standard_normal(tuple(out.shape)))
    grads = lib.autograd.grad((out * weight).sum(), xs, create_graph=True)
    total = sum((g * lib.tensor(rng.standard_normal(a.shape))).sum() + (g * g).sum() for g, a in zip(grads, arrays))
    seconds = lib.autograd.grad(total, xs)
    return [g.detach().numpy() for g in grads], [s.numpy() for s in seconds]


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_with_create_graph_are_differentiable(name):
    """For y = f(inputs): g = d sum(r * y) / d inputs (create_graph=True) is a function of the inputs;
    its own gradient (through the recorded graph) matches its finite differences."""
    f, arrays = CASES[name]
    inputs = [dk.tensor(a.copy(), requires_grad=True) for a in arrays]
    weight = dk.tensor(np.random.default_rng(len(name)).standard_normal(f(dk, *inputs).shape))

    gradients = create_graph_gradients(lambda *tensors: (f(dk, *tensors) * weight).sum())
    gradcheck(gradients, *inputs, tol=1e-5, rng=np.random.default_rng(99))  # not the inputs' seeds


@pytest.mark.parametrize("name", list(CASES) + list(TORCH_ONLY))
def test_second_derivatives_match_pytorch(name):
    """The create_graph gradients and the gradient of a Hessian-vector product plus a gradient penalty are
    PyTorch's (through the inputs and, where the case has one, a parameter)."""
    torch = pytest.importorskip("torch")
    f, arrays = {**CASES, **TORCH_ONLY}[name]
    ours, theirs = _derivatives(dk, f, arrays), _derivatives(torch, f, arrays)
    for what, (got, want) in zip(("gradient", "second derivative"), zip(ours, theirs)):
        for i, (a, b) in enumerate(zip(got, want)):
            np.testing.assert_allclose(
                a, b, rtol=1e-10, atol=1e-12 + 1e-10 * np.abs(b).max(), err_msg=f"{what}, input {i}"
            )


def test_create_graph_gives_the_first_order_gradient():
    """The recorded gradient has the ordinary backward's values (one formula, run on Tensors both times)."""
    for name, (f, arrays) in CASES.items():
        xs = [dk.tensor(a, requires_grad=True) for a in arrays]
        out = f(dk, *xs)
        total = (out * dk.tensor(np.random.default_rng(5).standard_normal(out.shape))).sum()
        plain = dk.autograd.grad(total, xs, retain_graph=True)
        recorded = dk.autograd.grad(total, xs, create_graph=True)
        for p, r in zip(plain, recorded):
            np.testing.assert_allclose(r.detach().numpy(), p.numpy(), rtol=1e-13, atol=1e-14, err_msg=name)


EMPTY = {
    "det": (lambda lib, a: lib.linalg.det(a), (0, 3, 3)),
    "det 0x0": (lambda lib, a: lib.linalg.det(a), (2, 0, 0)),
    "slogdet": (lambda lib, a: lib.linalg.slogdet(a).logabsdet, (0, 2, 2)),
    "cholesky": (lambda lib, a: lib.linalg.cholesky(a, upper=True), (0, 3, 3)),
    "qr": (lambda lib, a: _flat(lib, *lib.linalg.qr(a)), (0, 4, 2)),
    "qr complete": (lambda lib, a: _flat(lib, *lib.linalg.qr(a, "complete")), (2, 0, 3)),
    "eigh": (lambda lib, a: _flat(lib, *lib.linalg.eigh(a)), (0, 3, 3)),
    "svd": (lambda lib, a: _flat(lib, *lib.linalg.svd(a)), (0, 4, 2)),
    "svd of 2x0": (lambda lib, a: _flat(lib, *lib.linalg.svd(a, False)), (3, 2, 0)),
    "pinv": (lambda lib, a: lib.linalg.pinv(a), (3, 0, 2)),
    "pinv hermitian": (lambda lib, a: lib.linalg.pinv(a, hermitian=True), (0, 3, 3)),
}


@pytest.mark.parametrize("name", list(EMPTY))
def test_zero_size_inputs_are_differentiated_twice(name):
    f, shape = EMPTY[name]
    for values in _derivatives(dk, f, [np.zeros(shape)]):
        assert values[0].shape == shape


@pytest.mark.parametrize(
    "mode, shape, message",
    [("r", (3, 3), "depends on Q, which is not computed when mode='r'"), ("complete", (4, 3), "nrows > ncols")],
)
def test_qr_modes_without_a_gradient_refuse_as_pytorch(mode, shape, message):
    torch = pytest.importorskip("torch")
    for lib in (dk, torch):
        a = lib.tensor(_normal(*shape), requires_grad=True)
        with pytest.raises(RuntimeError, match=message):
            lib.autograd.grad(lib.linalg.qr(a, mode=mode)[1].sum(), a, create_graph=True)


@pytest.mark.parametrize(
    "f",
    [
        lambda lib, a: lib.linalg.eigvalsh(a) ** 2,
        lambda lib, a: lib.linalg.eigh(a).eigenvectors ** 2,
        lambda lib, a: lib.linalg.svdvals(a) ** 2,
        lambda lib, a: lib.linalg.svd(a).U ** 2,
    ],
    ids=["eigvalsh", "eigh vectors", "svdvals", "svd U"],
)
def test_repeated_eigenvalues_and_singular_values_give_pytorchs_non_finite_derivatives(f):
    """Finite first derivatives of the values (the vectors': inf/NaN), NaN/inf second ones, where PyTorch's are."""
    torch = pytest.importorskip("torch")
    ours, theirs = _derivatives(dk, f, [np.diag([2.0, 2.0, 5.0])]), _derivatives(torch, f, [np.diag([2.0, 2.0, 5.0])])
    for got, want in zip(ours, theirs):
        np.testing.assert_array_equal(np.isfinite(got[0]), np.isfinite(want[0]))
        finite = np.isfinite(want[0])
        np.testing.assert_allclose(got[0][finite], want[0][finite], rtol=1e-10, atol=1e-12)


def test_slogdet_of_a_singular_matrix_under_create_graph_is_the_first_order_inf():
    """PyTorch's create_graph path solves with the singular matrix and raises; deepkern records the
    first-order gradient, inf (the cofactors over a zero determinant)."""
    a = np.array([[1.0, 2.0], [2.0, 4.0]])
    x = dk.tensor(a, requires_grad=True)
    (plain,) = dk.autograd.grad(dk.linalg.slogdet(x).logabsdet, x)
    (recorded,) = dk.autograd.grad(dk.linalg.slogdet(x).logabsdet, x, create_graph=True)
    assert np.isinf(plain.numpy()).all() and recorded.requires_grad
    np.testing.assert_array_equal(recorded.detach().numpy(), plain.numpy())
