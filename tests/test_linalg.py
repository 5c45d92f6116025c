"""deepkern.linalg and the Tensor's linear-algebra and matrix-product methods against PyTorch: values in
float64 and float32 on random batched inputs of odd sizes (a broadcast batch, transposed inputs, empty
batches and 0x0 matrices), gradients against torch's autograd and by finite differences, PyTorch's
errors (LinAlgError for singular and non-positive-definite matrices), the singular-matrix rules of det,
slogdet and logdet, repeated eigenvalues, beta=0 of the products, the in-place forms, the deprecation
warnings and the refusal of tensors on another device."""

from __future__ import annotations

import math
import warnings

import deepkern as dk
import numpy as np
import pytest

from checks import gradcheck, raises_naming

torch = pytest.importorskip("torch")


def _orthogonal(rng, shape):
    """Random orthogonal matrices (the last two dims of ``shape``, square)."""
    q, r = np.linalg.qr(rng.standard_normal(shape))
    return q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


def _with_values(rng, shape, values):
    """U diag(values) V^T for random orthogonal U, V: singular values ``values`` (a (..., k) array)."""
    m, n = shape[-2:]
    u = _orthogonal(rng, shape[:-2] + (m, m))[..., : min(m, n)]
    v = _orthogonal(rng, shape[:-2] + (n, n))[..., : min(m, n)]
    return (u * values[..., None, :]) @ np.swapaxes(v, -1, -2)


def _spread(rng, batch, k, low=1.0, high=3.0):
    """k values per batch element spread over [low, high] with gaps of at least half the even spacing."""
    step = (high - low) / max(k - 1, 1)
    return np.linspace(high, low, k) + rng.uniform(-step / 4, step / 4, batch + (k,))


def conditioned(shape):
    """A maker of matrices with distinct singular values in [1, 3] (well conditioned)."""
    return lambda rng: _with_values(rng, shape, _spread(rng, shape[:-2], min(shape[-2:])))


def spd(shape):
    """A maker of symmetric positive-definite matrices Q diag(s) Q^T, s in [1, 3] and distinct."""

    def make(rng):
        q = _orthogonal(rng, shape)
        return (q * _spread(rng, shape[:-2], shape[-1])[..., None, :]) @ np.swapaxes(q, -1, -2)

    return make


def symmetric(shape):
    """A maker of symmetric matrices with distinct eigenvalues in [-2, 2]."""

    def make(rng):
        q = _orthogonal(rng, shape)
        return (q * _spread(rng, shape[:-2], shape[-1], -2.0, 2.0)[..., None, :]) @ np.swapaxes(q, -1, -2)

    return make


def normal(*shapes):
    """Standard normal inputs of ``shapes``, one per argument."""
    return lambda rng: [rng.standard_normal(s) for s in shapes]


def of(*makers):
    """Inputs from one maker per argument."""
    return lambda rng: [make(rng) for make in makers]


def sym(a):
    """The symmetric part: what eigh and cholesky read, made a function of every element."""
    return (a + a.mT) / 2


def _deprecated(call):
    """``call`` with the deprecation warnings of torch.cholesky, torch.qr and chain_matmul silenced."""

    def quiet(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return call(*args)

    return quiet


# name -> (inputs made from rng, the call on either library (deepkern or torch) and its tensors, whether it
# is differentiated). Calls of eigenvectors and singular vectors return sign-invariant functions of them.
CASES = {
    "inv": (of(conditioned((2, 3, 5, 5))), lambda lib, a: lib.linalg.inv(a), True),
    "inv_transposed": (of(conditioned((4, 4))), lambda lib, a: lib.linalg.inv(a.mT), True),
    "det": (normal((3, 4, 4)), lambda lib, a: lib.linalg.det(a), True),
    "det_transposed": (normal((2, 3, 3)), lambda lib, a: lib.linalg.det(a.mT), True),
    "det_1x1": (normal((1, 1)), lambda lib, a: lib.linalg.det(a), True),
    "slogdet": (normal((2, 3, 5, 5)), lambda lib, a: tuple(lib.linalg.slogdet(a)), True),
    "solve_broadcast": (
        of(conditioned((2, 1, 4, 4)), lambda r: r.standard_normal((3, 4, 2))),
        lambda lib, a, b: lib.linalg.solve(a, b),
        True,
    ),
    "solve_batch_of_vectors": (
        of(conditioned((2, 4, 4)), lambda r: r.standard_normal((2, 4))),
        lambda lib, a, b: lib.linalg.solve(a, b),
        True,
    ),
    "solve_vector": (
        of(conditioned((4, 4)), lambda r: r.standard_normal(4)),
        lambda lib, a, b: lib.linalg.solve(a, b),
        True,
    ),
    "solve_transposed": (
        of(conditioned((2, 3, 3)), lambda r: r.standard_normal((2, 4, 3))),
        lambda lib, a, b: lib.linalg.solve(a.mT, b.mT),
        True,
    ),
    "solve_right": (
        of(conditioned((3, 3)), lambda r: r.standard_normal((2, 5, 3))),
        lambda lib, a, b: lib.linalg.solve(a, b, left=False),
        True,
    ),
    "cholesky": (of(spd((2, 5, 5))), lambda lib, a: lib.linalg.cholesky(sym(a)), True),
    "cholesky_upper": (of(spd((3, 3))), lambda lib, a: lib.linalg.cholesky(sym(a), upper=True), True),
    "qr_tall": (normal((2, 5, 3)), lambda lib, a: tuple(lib.linalg.qr(a)), True),
    "qr_wide": (normal((3, 5)), lambda lib, a: tuple(lib.linalg.qr(a)), True),
    "qr_complete_wide": (normal((2, 3, 4)), lambda lib, a: tuple(lib.linalg.qr(a, mode="complete")), True),
    "qr_complete_tall": (normal((5, 3)), lambda lib, a: tuple(lib.linalg.qr(a, mode="complete")), False),
    "qr_transposed": (normal((2, 3, 5)), lambda lib, a: tuple(lib.linalg.qr(a.mT)), True),
    "qr_r": (normal((2, 5, 3)), lambda lib, a: lib.linalg.qr(a, mode="r").R, False),
    "eigh": (of(symmetric((2, 4, 4))), lambda lib, a: (lambda w, v: (w, v * v))(*lib.linalg.eigh(sym(a))), True),
    "eigh_upper": (
        of(symmetric((5, 5))),
        lambda lib, a: (lambda w, v: (w, v * v))(*lib.linalg.eigh(sym(a), UPLO="U")),
        True,
    ),
    "eigh_reads_its_triangle": (
        normal((3, 3)),
        lambda lib, a: tuple(x.abs() for x in lib.linalg.eigh(a, UPLO="U")),
        False,
    ),
    "eigvalsh": (of(symmetric((3, 4, 4))), lambda lib, a: lib.linalg.eigvalsh(sym(a)), True),
    "svd_tall": (
        of(conditioned((2, 5, 3))),
        lambda lib, a: (lambda u, s, vh: (s, u * u, vh * vh))(*lib.linalg.svd(a, full_matrices=False)),
        True,
    ),
    "svd_wide": (
        of(conditioned((3, 5))),
        lambda lib, a: (lambda u, s, vh: (s, u * u, vh * vh))(*lib.linalg.svd(a, full_matrices=False)),
        True,
    ),
    "svd_full": (
        of(conditioned((4, 3))),
        lambda lib, a: (lambda u, s, vh: (s, u[:, :3] * u[:, :3], vh * vh))(*lib.linalg.svd(a)),
        True,
    ),
    "svd_full_values": (  # the rows of Vh past the third span the null space (a basis of LAPACK's choice)
        normal((2, 3, 5)),
        lambda lib, a: (lambda u, s, vh: (u.abs(), s, vh[:, :3].abs(), vh[:, 3:].mT @ vh[:, 3:]))(*lib.linalg.svd(a)),
        False,
    ),
    "svd_square_u_only": (
        of(conditioned((4, 4))),
        lambda lib, a: (lambda u, s, vh: u * u)(*lib.linalg.svd(a)),
        True,
    ),
    "svdvals": (normal((3, 6, 4)), lambda lib, a: lib.linalg.svdvals(a), True),
    "svdvals_transposed": (normal((2, 3, 5)), lambda lib, a: lib.linalg.svdvals(a.mT), True),
    "pinv_tall": (of(conditioned((2, 5, 3))), lambda lib, a: lib.linalg.pinv(a), True),
    "pinv_wide": (of(conditioned((3, 4))), lambda lib, a: lib.linalg.pinv(a), True),
    "pinv_transposed": (of(conditioned((2, 5, 3))), lambda lib, a: lib.linalg.pinv(a.mT), True),
    "pinv_hermitian": (of(symmetric((2, 4, 4))), lambda lib, a: lib.linalg.pinv(sym(a), hermitian=True), True),
    "pinv_rank_deficient": (
        lambda r: [_with_values(r, (5, 4), np.array([2.0, 1.5, 1.0, 0.0]))],
        lambda lib, a: lib.linalg.pinv(a),
        False,
    ),
    "pinv_tolerances": (
        lambda r: [_with_values(r, (2, 4, 4), np.array([[3.0, 2.0, 1.0, 0.5], [3.0, 2.5, 2.0, 0.2]]))],
        lambda lib, a: lib.linalg.pinv(a, atol=lib.tensor([0.7, 0.1]), rtol=lib.tensor(0.1)),
        False,
    ),
    "matrix_rank": (
        lambda r: [_with_values(r, (3, 5, 4), np.array([[2.0, 1.0, 0.0, 0.0], [2, 1, 1, 1e-9], [3, 2, 1, 0.5]]))],
        lambda lib, a: lib.linalg.matrix_rank(a),
        False,
    ),
    "matrix_rank_tolerances": (
        lambda r: [_with_values(r, (3, 4, 4), np.array([[4.0, 2.0, 1.0, 0.2]] * 3))],
        lambda lib, a: lib.linalg.matrix_rank(a, atol=lib.tensor([0.1, 1.5, 3.0]), rtol=lib.tensor(0.3)),
        False,
    ),
    "matrix_rank_hermitian": (
        of(symmetric((2, 4, 4))),
        lambda lib, a: lib.linalg.matrix_rank(sym(a), hermitian=True, rtol=0.4),
        False,
    ),
    **{
        f"matrix_power_{n}": (normal((2, 3, 3)), lambda lib, a, n=n: lib.linalg.matrix_power(a, n), True)
        for n in (0, 1, 2, 3, 6)
    },
    **{
        f"matrix_power_{n}": (of(conditioned((2, 3, 3))), lambda lib, a, n=n: lib.linalg.matrix_power(a, n), True)
        for n in (-1, -3)
    },
    "matrix_exp": (normal((2, 4, 4)), lambda lib, a: lib.linalg.matrix_exp(a), True),
    "matrix_exp_transposed": (normal((3, 3)), lambda lib, a: lib.linalg.matrix_exp(a.mT), True),
    "matrix_exp_squared": (normal((3, 3)), lambda lib, a: lib.linalg.matrix_exp(a * 4), True),
    "lstsq_gelsd": (
        of(conditioned((2, 6, 3)), lambda r: r.standard_normal((2, 6, 2))),
        lambda lib, a, b: tuple(lib.linalg.lstsq(a, b, driver="gelsd"))[:3],
        True,
    ),
    "lstsq_default_vector": (
        of(conditioned((6, 4)), lambda r: r.standard_normal(6)),
        lambda lib, a, b: tuple(lib.linalg.lstsq(a, b)),
        True,
    ),
    "lstsq_gels_batch_of_vectors": (
        of(conditioned((2, 5, 3)), lambda r: r.standard_normal((2, 5))),
        lambda lib, a, b: tuple(lib.linalg.lstsq(a, b, driver="gels")),
        True,
    ),
    "lstsq_wide_gelss": (
        of(conditioned((3, 5)), lambda r: r.standard_normal((3, 2))),
        lambda lib, a, b: tuple(lib.linalg.lstsq(a, b, driver="gelss"))[:3],
        True,
    ),
    "lstsq_singular_values": (
        of(conditioned((2, 6, 3)), lambda r: r.standard_normal((2, 6, 2))),
        lambda lib, a, b: tuple(lib.linalg.lstsq(a, b, driver="gelss")),
        False,
    ),
    "lstsq_rank_deficient": (
        lambda r: [_with_values(r, (6, 4), np.array([2.0, 1.0, 0.5, 0.0])), r.standard_normal((6, 2))],
        lambda lib, a, b: tuple(lib.linalg.lstsq(a, b, driver="gelsd")),
        False,
    ),
    "cross": (
        normal((2, 1, 3), (4, 3)),
        lambda lib, a, b: lib.linalg.cross(a.expand(2, 4, 3), b.expand(2, 4, 3)),
        True,
    ),
    "cross_dim": (normal((3, 5), (3, 5)), lambda lib, a, b: lib.linalg.cross(a, b, dim=0), True),
    "matmul": (normal((2, 3, 4), (4, 5)), lambda lib, a, b: lib.linalg.matmul(a, b), True),
    "diagonal": (normal((2, 4, 5)), lambda lib, a: lib.linalg.diagonal(a, offset=1, dim1=0, dim2=2), True),
    "vecdot": (normal((2, 1, 5), (3, 5)), lambda lib, a, b: lib.linalg.vecdot(a, b), True),
    "vecdot_dim": (normal((4, 3), (4, 3)), lambda lib, a, b: lib.linalg.vecdot(a, b, dim=0), True),
    "multi_dot": (
        normal((2, 7), (7, 3), (3, 6), (6, 4)),
        lambda lib, *ts: lib.linalg.multi_dot(ts),
        True,
    ),
    "multi_dot_vectors": (normal(5, (5, 3), (3, 2), 2), lambda lib, *ts: lib.linalg.multi_dot(ts), True),
    "multi_dot_row": (normal(5, (5, 3), (3, 2)), lambda lib, *ts: lib.linalg.multi_dot(list(ts)), True),
    **{
        f"vector_norm_{o}": (normal((3, 4, 5)), lambda lib, a, o=o: lib.linalg.vector_norm(a, o), o != 0)
        for o in (2, 1, 3, 0.5, -1, 0, math.inf, -math.inf)
    },
    "vector_norm_dims": (
        normal((3, 4, 5)),
        lambda lib, a: lib.linalg.vector_norm(a, 3, dim=(0, 2), keepdim=True),
        True,
    ),
    "vector_norm_dim": (normal((3, 4)), lambda lib, a: lib.linalg.vector_norm(a, dim=-1), True),
    "vector_norm_0d": (normal(()), lambda lib, a: lib.linalg.vector_norm(a, 1.5), True),
    **{
        f"matrix_norm_{o}": (normal((2, 4, 3)), lambda lib, a, o=o: lib.linalg.matrix_norm(a, o), True)
        for o in ("fro", "nuc", 2, -2, 1, -1, math.inf, -math.inf)
    },
    "matrix_norm_dims": (
        normal((3, 2, 4)),
        lambda lib, a: lib.linalg.matrix_norm(a, 1, dim=(2, 0), keepdim=True),
        True,
    ),
    "matrix_norm_nuc_dims": (
        normal((3, 2, 4)),
        lambda lib, a: lib.linalg.matrix_norm(a, "nuc", dim=(0, 2)),
        True,
    ),
    "norm_default": (normal((3, 4, 2)), lambda lib, a: lib.linalg.norm(a), True),
    "norm_matrix": (normal((3, 4)), lambda lib, a: lib.linalg.norm(a, -1), True),
    "norm_vector": (normal(6), lambda lib, a: lib.linalg.norm(a, 4), True),
    "norm_dim": (normal((3, 4, 2)), lambda lib, a: lib.linalg.norm(a, math.inf, dim=1, keepdim=True), True),
    "norm_matrix_dims": (normal((3, 4, 2)), lambda lib, a: lib.linalg.norm(a, "nuc", dim=(2, 0)), True),
    "norm_fro_string": (normal((3, 4)), lambda lib, a: lib.linalg.norm(a, "fro"), True),
    # the Tensor methods and torch-level functions
    "inverse": (of(conditioned((2, 4, 4))), lambda lib, a: a.inverse(), True),
    "torch_inverse": (of(conditioned((3, 3))), lambda lib, a: lib.inverse(a), True),
    "det_method": (normal((2, 3, 3)), lambda lib, a: (a.det(), lib.det(a)), True),
    "logdet": (normal((4, 3, 3)), lambda lib, a: (a.logdet(), lib.logdet(a)), False),
    "logdet_spd": (of(spd((2, 4, 4))), lambda lib, a: a.logdet(), True),
    "slogdet_method": (normal((2, 3, 3)), lambda lib, a: (*a.slogdet(), *lib.slogdet(a)), True),
    "matrix_power_method": (normal((3, 3)), lambda lib, a: (a.matrix_power(3), lib.matrix_power(a, 2)), True),
    "matrix_exp_method": (normal((3, 3)), lambda lib, a: (a.matrix_exp(), lib.matrix_exp(a)), True),
    "pinverse": (of(conditioned((4, 3))), lambda lib, a: (a.pinverse(), lib.pinverse(a, rcond=0.2)), True),
    "cholesky_method": (
        of(spd((2, 4, 4))),
        _deprecated(lambda lib, a: (sym(a).cholesky(), lib.cholesky(sym(a), upper=True))),
        True,
    ),
    "cholesky_inverse": (
        of(spd((2, 4, 4))),
        lambda lib, a: lib.linalg.cholesky(a).cholesky_inverse(),
        False,
    ),
    "cholesky_inverse_of_factors": (
        lambda r: [
            np.tril(r.uniform(-1, 1, (2, 4, 4))) + 3 * np.eye(4),
            np.triu(r.uniform(-1, 1, (3, 3))) + 3 * np.eye(3),
        ],
        lambda lib, low, up: (low.tril().cholesky_inverse(), lib.cholesky_inverse(up.triu(), upper=True)),
        True,
    ),
    "cholesky_solve": (
        lambda r: [r.standard_normal((2, 1, 4, 3)), np.tril(r.uniform(-1, 1, (3, 4, 4))) + 3 * np.eye(4)],
        lambda lib, b, low: b.cholesky_solve(low.tril()),
        True,
    ),
    "cholesky_solve_upper": (
        lambda r: [r.standard_normal((4, 2)), np.triu(r.uniform(-1, 1, (4, 4))) + 3 * np.eye(4)],
        lambda lib, b, up: lib.cholesky_solve(b, up.triu(), upper=True),
        True,
    ),
    "qr_method": (normal((2, 5, 3)), _deprecated(lambda lib, a: (*a.qr(), *lib.qr(a.mT, some=False))), True),
    "svd_method": (
        of(conditioned((2, 5, 3))),
        lambda lib, a: (lambda u, s, v: (s, u * u, v * v))(*a.svd()),
        True,
    ),
    "svd_function_full": (
        of(conditioned((3, 5))),
        lambda lib, a: (lambda u, s, v: (s, u * u, v[:, :3] * v[:, :3]))(*lib.svd(a, some=False)),
        True,
    ),
    "svd_values_only": (normal((2, 4, 3)), lambda lib, a: tuple(a.svd(compute_uv=False)), True),
    "addmv": (
        normal(4, (4, 3), 3),
        lambda lib, s, m, v: (s.addmv(m, v), lib.addmv(s, m, v, beta=0.5, alpha=-2)),
        True,
    ),
    "addmv_broadcast_self": (normal(1, (4, 3), 3), lambda lib, s, m, v: lib.addmv(s, m, v, alpha=3), True),
    "addr": (normal((3, 4), 3, 4), lambda lib, s, a, b: (s.addr(a, b), lib.addr(s, a, b, beta=2, alpha=0.5)), True),
    "addbmm": (
        normal((3, 4), (5, 3, 2), (5, 2, 4)),
        lambda lib, s, a, b: (s.addbmm(a, b), lib.addbmm(s, a, b, beta=-1, alpha=2)),
        True,
    ),
    "baddbmm": (
        normal((1, 3, 4), (5, 3, 2), (5, 2, 4)),
        lambda lib, s, a, b: (s.baddbmm(a, b), lib.baddbmm(s, a, b, beta=0.5, alpha=2)),
        True,
    ),
    "vdot": (normal(5, 5), lambda lib, a, b: (a.vdot(b), lib.vdot(a, b)), True),
    "ger": (normal(3, 4), lambda lib, a, b: (a.ger(b), lib.ger(b, a)), True),
    **{
        f"dist_{p}": (normal((3, 4), 4), lambda lib, a, b, p=p: (a.dist(b, p), lib.dist(b, a, p)), p != 0)
        for p in (2, 1, 3.5, math.inf, -math.inf, 0)
    },
    "diagflat": (normal((2, 3)), lambda lib, a: (a.diagflat(), lib.diagflat(a, -2)), True),
    "chain_matmul": (
        normal((2, 5), (5, 3), (3, 4)),
        _deprecated(lambda lib, *ts: lib.chain_matmul(*ts)),
        True,
    ),
}

F64, F32 = np.float64, np.float32
#: (rtol, atol relative to the largest expected magnitude) of the values
TOL = {F64: 1e-9, F32: 3e-4}


def _case_inputs(name, dtype, rng):
    make, call, _ = CASES[name]
    arrays = [np.asarray(a, dtype) for a in make(rng)]
    return call, arrays


def _outputs(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _assert_close(got, want, dtype, what):
    got, want = got.detach().numpy(), want.detach().numpy()
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert str(got.dtype) == str(want.dtype).replace("torch.", ""), f"{what}: dtype {got.dtype}, expected {want.dtype}"
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    finite = want[np.isfinite(want)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=what)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_values_match_torch(name, dtype):
    call, arrays = _case_inputs(name, dtype, np.random.default_rng(7))
    want = _outputs(call(torch, *[torch.tensor(a) for a in arrays]))
    got = _outputs(call(dk, *[dk.tensor(a) for a in arrays]))
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        _assert_close(g, w, dtype, f"{name} output {i}")


def _weighted_gradients(lib, call, arrays, weights):
    """The gradients of sum(weights[i] * output i) with respect to the inputs (the arrays), in ``lib``."""
    inputs = [lib.tensor(a, requires_grad=True) for a in arrays]
    outputs = _outputs(call(lib, *inputs))
    sum((o * lib.tensor(w)).sum() for o, w in zip(outputs, weights) if o.requires_grad).backward()
    return [t.grad for t in inputs]


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(n for n, case in CASES.items() if case[2]))
def test_gradients_match_torch_and_finite_differences(name, dtype):
    """Against torch's autograd in both dtypes; by central differences in float64."""
    rng = np.random.default_rng(11)
    call, arrays = _case_inputs(name, dtype, rng)
    shapes = [tuple(o.shape) for o in _outputs(call(torch, *[torch.tensor(a) for a in arrays]))]
    weights = [rng.standard_normal(s).astype(dtype) for s in shapes]
    want = _weighted_gradients(torch, call, arrays, weights)
    got = _weighted_gradients(dk, call, arrays, weights)
    for i, (g, w) in enumerate(zip(got, want)):
        _assert_close(g, w, dtype, f"{name}: gradient of input {i}")
    if dtype == F64:
        gradcheck(lambda *ts: call(dk, *ts), *[dk.tensor(a, requires_grad=True) for a in arrays], tol=1e-6, rng=rng)


def test_cholesky_inverse_and_solve_read_one_triangle_and_differentiate_all_of_it_as_torch():
    """Only the factor's triangle is read, but PyTorch's gradient has entries in the other one too."""
    rng = np.random.default_rng(3)
    low = np.tril(rng.uniform(-1, 1, (2, 4, 4))) + 3 * np.eye(4)
    up = np.triu(rng.uniform(-1, 1, (4, 4))) + 3 * np.eye(4)
    b = rng.standard_normal((4, 3))
    weights = [rng.standard_normal((2, 4, 4)), rng.standard_normal((4, 3))]

    def call(lib, lower, upper, rhs):
        return lower.cholesky_inverse(), lib.cholesky_solve(rhs, upper, upper=True)

    want = _weighted_gradients(torch, call, [low, up, b], weights)
    got = _weighted_gradients(dk, call, [low, up, b], weights)
    assert np.abs(want[0].numpy()[..., 0, 1:]).min() > 0 and np.abs(want[1].numpy()[1:, 0]).min() > 0
    for i, (g, w) in enumerate(zip(got, want)):
        _assert_close(g, w, F64, f"gradient of input {i}")
    junk = rng.standard_normal((4, 4))
    arrays = [low + np.triu(junk, 1), up + np.tril(junk, -1), b]
    expected = call(torch, *map(torch.tensor, arrays))
    for i, (g, w) in enumerate(zip(call(dk, *map(dk.tensor, arrays)), expected)):
        _assert_close(g, w, F64, f"value {i} with the other triangle filled")


EMPTY_CALLS = {
    "inv": lambda lib, a: lib.linalg.inv(a),
    "det": lambda lib, a: lib.linalg.det(a),
    "slogdet": lambda lib, a: tuple(lib.linalg.slogdet(a)),
    "cholesky": lambda lib, a: lib.linalg.cholesky(a),
    "eigh": lambda lib, a: tuple(lib.linalg.eigh(a)),
    "matrix_exp": lambda lib, a: lib.linalg.matrix_exp(a),
    "matrix_power_0": lambda lib, a: lib.linalg.matrix_power(a, 0),
    "matrix_power_-2": lambda lib, a: lib.linalg.matrix_power(a, -2),
    "solve": lambda lib, a: lib.linalg.solve(a, lib.zeros(a.shape[:-1] + (2,), dtype=a.dtype)),
    "logdet": lambda lib, a: a.logdet(),
    "qr": lambda lib, a: tuple(lib.linalg.qr(a)),
    "qr_complete": lambda lib, a: tuple(lib.linalg.qr(a, mode="complete")),
    "svd": lambda lib, a: tuple(lib.linalg.svd(a)),
    "svd_reduced": lambda lib, a: tuple(lib.linalg.svd(a, full_matrices=False)),
    "svdvals": lambda lib, a: lib.linalg.svdvals(a),
    "pinv": lambda lib, a: lib.linalg.pinv(a),
    "matrix_rank": lambda lib, a: lib.linalg.matrix_rank(a),
    "lstsq": lambda lib, a: tuple(lib.linalg.lstsq(a, lib.zeros(a.shape[:-1] + (2,), dtype=a.dtype), driver="gelsd")),
    **{
        f"matrix_norm_{o}": lambda lib, a, o=o: lib.linalg.matrix_norm(a, o)
        for o in ("fro", "nuc", 2, 1, -1, math.inf, -math.inf)
    },
    "vector_norm": lambda lib, a: lib.linalg.vector_norm(a, 3, dim=-1),
}
SQUARE_ONLY = {"inv", "det", "slogdet", "cholesky", "eigh", "matrix_exp", "solve", "logdet"} | {
    f"matrix_power_{n}" for n in (0, -2)
}


EMPTY_SHAPES = [(0, 3, 3), (2, 0, 0), (0, 0), (3, 0), (0, 4), (2, 3, 0)]


@pytest.mark.parametrize(
    "name, shape",
    [(n, s) for n in sorted(EMPTY_CALLS) for s in EMPTY_SHAPES if n not in SQUARE_ONLY or s[-1] == s[-2]],
)
def test_empty_batches_and_matrices_match_torch(name, shape):
    try:
        want = _outputs(EMPTY_CALLS[name](torch, torch.zeros(shape, dtype=torch.float64)))
    except IndexError:  # a minimum over nothing (PyTorch's amin)
        with pytest.raises(IndexError):
            EMPTY_CALLS[name](dk, dk.zeros(shape, dtype=dk.float64))
        return
    got = _outputs(EMPTY_CALLS[name](dk, dk.zeros(shape, dtype=dk.float64)))
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        _assert_close(g, w, F64, f"{name} of {shape}: output {i}")


EMPTY_PRODUCTS = {
    "addbmm": lambda lib: lib.ones(3, 4).addbmm(lib.zeros(0, 3, 2), lib.zeros(0, 2, 4), beta=2),
    "baddbmm_no_batch": lambda lib: lib.zeros(0, 3, 4).baddbmm(lib.zeros(0, 3, 2), lib.zeros(0, 2, 4)),
    "baddbmm_inner_0": lambda lib: lib.ones(2, 3, 4).baddbmm(lib.zeros(2, 3, 0), lib.zeros(2, 0, 4), beta=0.5),
    "addmv": lambda lib: lib.ones(3).addmv(lib.zeros(3, 0), lib.zeros(0), beta=-1),
    "addr": lambda lib: lib.ones(0, 4).addr(lib.zeros(0), lib.ones(4)),
    "multi_dot": lambda lib: lib.linalg.multi_dot([lib.ones(2, 0), lib.ones(0, 3), lib.ones(3, 2)]),
    "vecdot": lambda lib: lib.linalg.vecdot(lib.ones(0, 3), lib.ones(0, 3)),
    "vector_norm": lambda lib: lib.linalg.vector_norm(lib.ones(2, 0), dim=1),
    "vdot": lambda lib: lib.vdot(lib.ones(0), lib.ones(0)),
}


@pytest.mark.parametrize("name", sorted(EMPTY_PRODUCTS))
def test_empty_products_match_torch(name):
    _assert_close(EMPTY_PRODUCTS[name](dk), EMPTY_PRODUCTS[name](torch), F32, name)


def _singular(lib):
    return lib.tensor([[1.0, 2.0], [2.0, 4.0]])


# name -> (the call on either library, regexes the message holds); the exception type is torch's.
ERRORS = {
    "inv_not_square": (lambda lib: lib.linalg.inv(lib.zeros(2, 3)), ["linalg.inv", "square", "2 by 3"]),
    "inv_vector": (lambda lib: lib.linalg.inv(lib.zeros(3)), ["linalg.inv", "at least 2 dimensions"]),
    "inv_singular": (lambda lib: lib.linalg.inv(_singular(lib)), ["linalg.inv", "diagonal element 2", "singular"]),
    "inv_singular_in_batch": (
        lambda lib: lib.linalg.inv(lib.stack([lib.eye(2), _singular(lib)])),
        ["linalg.inv", "Batch element 1", "singular"],
    ),
    "inv_integer": (lambda lib: lib.linalg.inv(lib.tensor([[1, 2], [3, 4]])), ["linalg.inv", "floating point", "Long"]),
    "inverse_singular": (lambda lib: _singular(lib).inverse(), ["inv", "singular"]),
    "det_not_square": (lambda lib: lib.det(lib.zeros(3, 2)), ["linalg.det", "3 by 2"]),
    "slogdet_not_square": (lambda lib: lib.linalg.slogdet(lib.zeros(2, 1, 3)), ["linalg.slogdet", "1 by 3"]),
    "solve_shapes": (
        lambda lib: lib.linalg.solve(lib.eye(3), lib.zeros(4, 2)),
        ["linalg.solve", "AX = B", "3x3 and 4x2"],
    ),
    "solve_vector_shape": (lambda lib: lib.linalg.solve(lib.eye(3), lib.zeros(4)), ["linalg.solve", "3x3 and 4x1"]),
    "solve_right_shapes": (
        lambda lib: lib.linalg.solve(lib.eye(3), lib.zeros(3, 2), left=False),
        ["linalg.solve", "XA = B", "3x3 and 3x2"],
    ),
    "solve_dtypes": (
        lambda lib: lib.linalg.solve(lib.eye(3), lib.zeros(3, 2, dtype=lib.float64)),
        ["linalg.solve", "same dtype", "Float", "Double"],
    ),
    "solve_singular": (lambda lib: lib.linalg.solve(_singular(lib), lib.ones(2)), ["linalg.solve", "singular"]),
    "solve_singular_in_batch": (
        lambda lib: lib.linalg.solve(lib.stack([lib.eye(2), _singular(lib)]), lib.ones(2, 2, 3)),
        ["linalg.solve", "Batch element 1", "singular"],
    ),
    "solve_batches": (
        lambda lib: lib.linalg.solve(lib.zeros(2, 3, 3), lib.zeros(5, 3, 2)),
        ["2", "5"],
    ),
    "cholesky_not_positive_definite": (
        lambda lib: lib.linalg.cholesky(lib.tensor([[1.0, 2.0], [2.0, 1.0]])),
        ["linalg.cholesky", "positive-definite", "order 2"],
    ),
    "cholesky_not_positive_definite_in_batch": (
        lambda lib: lib.linalg.cholesky(lib.stack([lib.eye(2), -lib.eye(2)])),
        ["linalg.cholesky", "Batch element 1", "order 1"],
    ),
    "cholesky_not_square": (lambda lib: lib.linalg.cholesky(lib.zeros(2, 3)), ["linalg.cholesky", "2 by 3"]),
    "qr_mode": (lambda lib: lib.linalg.qr(lib.zeros(3, 2), mode="foo"), ["qr", "'foo'", "reduced"]),
    "qr_vector": (lambda lib: lib.linalg.qr(lib.zeros(3)), ["linalg.qr", "at least 2 dimensions"]),
    "qr_integer": (lambda lib: lib.linalg.qr(lib.ones(3, 2, dtype=lib.int64)), ["linalg.qr", "Long"]),
    "qr_r_backward": (
        lambda lib: lib.linalg.qr(lib.ones(3, 2, requires_grad=True), mode="r").R.sum().backward(),
        ["linalg.qr", "mode='r'"],
    ),
    "qr_complete_tall_backward": (
        lambda lib: lib.linalg.qr(lib.eye(3, 2, requires_grad=True), mode="complete").Q.sum().backward(),
        ["not differentiable", "complete"],
    ),
    "eigh_uplo": (lambda lib: lib.linalg.eigh(lib.eye(3), UPLO="X"), ["UPLO", "but got X"]),
    "eigh_not_square": (lambda lib: lib.linalg.eigvalsh(lib.zeros(2, 3)), ["linalg.eigh", "2 by 3"]),
    "svd_driver": (lambda lib: lib.linalg.svd(lib.zeros(3, 2), driver="gesvd"), ["svd", "driver"]),
    "svd_vector": (lambda lib: lib.linalg.svdvals(lib.zeros(3)), ["linalg.svd", "at least 2 dimensions"]),
    "pinv_vector": (lambda lib: lib.linalg.pinv(lib.zeros(3)), ["linalg.pinv"]),
    "matrix_power_float_n": (lambda lib: lib.linalg.matrix_power(lib.eye(3), 2.5), ["matrix_power", "'n'", "int"]),
    "matrix_power_not_square": (lambda lib: lib.linalg.matrix_power(lib.zeros(2, 3), 2), ["matrix_power", "2 by 3"]),
    "matrix_power_singular": (lambda lib: lib.linalg.matrix_power(_singular(lib), -1), ["linalg.inv", "singular"]),
    "matrix_exp_integer": (lambda lib: lib.linalg.matrix_exp(lib.ones(2, 2, dtype=lib.int64)), ["matrix_exp", "Long"]),
    "matrix_exp_not_square": (lambda lib: lib.linalg.matrix_exp(lib.zeros(3, 2)), ["matrix_exp", "3 by 2"]),
    "vector_norm_empty_inf": (
        lambda lib: lib.linalg.vector_norm(lib.zeros(0), math.inf),
        ["vector_norm", "inf norm", "empty"],
    ),
    "vector_norm_empty_negative": (lambda lib: lib.linalg.vector_norm(lib.zeros(2, 0), -1, dim=1), ["-1 norm"]),
    "vector_norm_string_ord": (lambda lib: lib.linalg.vector_norm(lib.ones(3), "fro"), ["vector_norm", "ord"]),
    "vector_norm_narrowing": (
        lambda lib: lib.linalg.vector_norm(lib.ones(3, dtype=lib.float64), dtype=lib.float32),
        ["vector_norm", "narrowing", "Double", "Float"],
    ),
    "vector_norm_integer": (lambda lib: lib.linalg.vector_norm(lib.tensor([1, 2])), ["vector_norm", "Long"]),
    "matrix_norm_order": (lambda lib: lib.linalg.matrix_norm(lib.ones(3, 3), 3), ["matrix_norm", "Order 3"]),
    "matrix_norm_string_order": (lambda lib: lib.linalg.matrix_norm(lib.ones(3, 3), "foo"), ["Order foo"]),
    "matrix_norm_dims": (lambda lib: lib.linalg.matrix_norm(lib.ones(3, 3), dim=(0, 0)), ["dims must be different"]),
    "matrix_norm_one_dim": (lambda lib: lib.linalg.matrix_norm(lib.ones(3, 3), dim=(0,)), ["2-tuple"]),
    "matrix_norm_vector": (lambda lib: lib.linalg.matrix_norm(lib.ones(3)), ["matrix_norm", "at least 2"]),
    "matrix_norm_half": (
        lambda lib: lib.linalg.matrix_norm(lib.ones(3, 3, dtype=lib.float16), "nuc"),
        ["matrix_norm", "Low precision", "Half"],
    ),
    "norm_ord_without_dim": (lambda lib: lib.linalg.norm(lib.ones(2, 2, 2), 2), ["linalg.norm", "1D or 2D", "3D"]),
    "norm_three_dims": (
        lambda lib: lib.linalg.norm(lib.ones(2, 2, 2), dim=(0, 1, 2)),
        ["linalg.norm", "length 1 or 2"],
    ),
    "norm_string_vector": (lambda lib: lib.linalg.norm(lib.ones(3), "nuc"), ["matrix_norm", "at least 2"]),
    "multi_dot_one": (lambda lib: lib.linalg.multi_dot([lib.ones(2, 2)]), ["multi_dot", "at least 2"]),
    "multi_dot_first": (lambda lib: lib.linalg.multi_dot([lib.ones(2, 2, 2), lib.ones(2, 2)]), ["first", "3D"]),
    "multi_dot_middle": (
        lambda lib: lib.linalg.multi_dot([lib.ones(2, 3), lib.ones(3), lib.ones(3, 3)]),
        ["multi_dot", "tensor 1", "2D", "1D"],
    ),
    "multi_dot_shapes": (
        lambda lib: lib.linalg.multi_dot([lib.ones(2, 3), lib.ones(4, 3)]),
        ["tensors 0 and 1", r"\[2, 3\]", r"\[4, 3\]"],
    ),
    "multi_dot_dtypes": (
        lambda lib: lib.linalg.multi_dot([lib.ones(2, 3), lib.ones(3, 3, dtype=lib.float64)]),
        ["multi_dot", "same dtype"],
    ),
    "vecdot_dtypes": (lambda lib: lib.linalg.vecdot(lib.ones(3), lib.ones(3, dtype=lib.float64)), ["vecdot", "dtype"]),
    "vecdot_integer": (lambda lib: lib.linalg.vecdot(lib.tensor([1, 2]), lib.tensor([1, 2])), ["vecdot", "Long"]),
    "cross_length": (lambda lib: lib.linalg.cross(lib.ones(4), lib.ones(4)), ["linalg.cross", "length 3", "4 and 4"]),
    "cross_dims": (lambda lib: lib.linalg.cross(lib.ones(2, 3), lib.ones(3)), ["linalg.cross", "number of dimensions"]),
    "lstsq_rows": (lambda lib: lib.linalg.lstsq(lib.ones(3, 3), lib.ones(4, 2)), ["lstsq", r"size\(-2\)"]),
    "lstsq_driver": (lambda lib: lib.linalg.lstsq(lib.ones(3, 3), lib.ones(3, 2), driver="x"), ["lstsq", "driver"]),
    "lstsq_dtypes": (
        lambda lib: lib.linalg.lstsq(lib.ones(3, 3), lib.ones(3, 2, dtype=lib.float64)),
        ["lstsq", "dtype"],
    ),
    "lstsq_dims": (lambda lib: lib.linalg.lstsq(lib.ones(5, 3), lib.ones(2, 5, 2)), ["lstsq", r"input.dim\(\)"]),
    "addmv_dims": (lambda lib: lib.addmv(lib.zeros(2, 3), lib.ones(3, 4), lib.ones(4)), ["vector \\+ matrix @ vector"]),
    "addmv_sizes": (lambda lib: lib.addmv(lib.zeros(3), lib.ones(3, 4), lib.ones(5)), ["size mismatch", "3x4"]),
    "addmv_self": (lambda lib: lib.zeros(4).addmv(lib.ones(3, 4), lib.ones(4)), ["size mismatch", r"input \(4\)"]),
    "addmv_dtypes": (
        lambda lib: lib.addmv(lib.zeros(3, dtype=lib.float64), lib.ones(3, 4), lib.ones(4)),
        ["addmv", "same dtype"],
    ),
    "addr_matrix": (lambda lib: lib.addr(lib.zeros(3, 4), lib.ones(3, 1), lib.ones(4)), ["addr", "1-D", "vec1"]),
    "addbmm_batches": (
        lambda lib: lib.addbmm(lib.zeros(3, 4), lib.ones(2, 3, 5), lib.ones(3, 5, 4)),
        ["same number of batches", "2 and 3"],
    ),
    "addbmm_sizes": (
        lambda lib: lib.addbmm(lib.zeros(3, 4), lib.ones(2, 3, 5), lib.ones(2, 6, 4)),
        ["Incompatible matrix sizes", "3x5 and 6x4"],
    ),
    "baddbmm_sizes": (
        lambda lib: lib.baddbmm(lib.zeros(2, 3, 4), lib.ones(2, 3, 5), lib.ones(2, 6, 4)),
        ["batch2", r"\[2, 5\]", r"\[2, 6\]"],
    ),
    "baddbmm_dtypes": (
        lambda lib: lib.baddbmm(lib.zeros(2, 3, 4, dtype=lib.float64), lib.ones(2, 3, 5), lib.ones(2, 5, 4)),
        ["dtype"],
    ),
    "baddbmm_self": (
        lambda lib: lib.baddbmm(lib.zeros(3, 3, 4), lib.ones(2, 3, 5), lib.ones(2, 5, 4)),
        ["3, 3, 4", "2, 3, 4"],
    ),
    "addmm_in_place_shape": (
        lambda lib: lib.zeros(1, 4).addmm_(lib.ones(3, 5), lib.ones(5, 4)),
        ["1, 4", "3, 4"],
    ),
    "vdot_matrices": (lambda lib: lib.vdot(lib.ones(3, 1), lib.ones(3, 1)), ["1D tensors expected", "2D and 2D"]),
    "vdot_dtypes": (lambda lib: lib.ones(3).vdot(lib.ones(3, dtype=lib.float64)), ["same dtype", "Float", "Double"]),
    "vdot_sizes": (lambda lib: lib.vdot(lib.ones(3), lib.ones(4)), ["inconsistent tensor size", "3 and 4"]),
    "dist_integer": (lambda lib: lib.dist(lib.tensor([1, 2]), lib.tensor([1, 2])), ["Long"]),
    "dist_p": (lambda lib: lib.dist(lib.ones(3), lib.ones(3), "fro"), ["dist", "'p'"]),
    "cholesky_inverse_vector": (lambda lib: lib.cholesky_inverse(lib.ones(3)), ["cholesky_inverse", "at least 2"]),
    "cholesky_inverse_not_square": (lambda lib: lib.ones(2, 3).cholesky_inverse(), ["cholesky_inverse", "2 by 3"]),
    "cholesky_solve_sizes": (
        lambda lib: lib.cholesky_solve(lib.ones(3, 2), lib.eye(4)),
        ["cholesky_solve", "4 by 4", "3 by 2"],
    ),
    "cholesky_solve_vector": (lambda lib: lib.cholesky_solve(lib.ones(3), lib.eye(3)), ["at least 2 dimensions"]),
    "cholesky_solve_dtypes": (
        lambda lib: lib.ones(3, 2).cholesky_solve(lib.eye(3, dtype=lib.float64)),
        ["cholesky_solve", "same dtype", "Float", "Double"],
    ),
    "chain_matmul_none": (lambda lib: lib.chain_matmul(), ["chain_matmul", "one or more"]),
    "chain_matmul_3d": (lambda lib: lib.chain_matmul(lib.ones(2, 3, 3), lib.ones(3, 3)), ["3"]),
}


def _raised_by(call):
    """The exception ``call`` raises (warnings silenced), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except Exception as exc:  # noqa: BLE001 (any: it is what the test compares)
        return exc
    return None


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_match_torch(name):
    call, needles = ERRORS[name]
    expected = _raised_by(lambda: call(torch))
    assert expected is not None, f"torch raises nothing for {name}"
    kind = dk.linalg.LinAlgError if isinstance(expected, torch.linalg.LinAlgError) else type(expected)
    kind = RuntimeError if kind.__module__.startswith("torch") else kind
    with raises_naming(kind, *needles):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(dk)


def test_linalg_error_is_a_runtime_error():
    assert issubclass(dk.linalg.LinAlgError, RuntimeError)
    with pytest.raises(RuntimeError, match="singular"):
        dk.linalg.inv(dk.zeros(3, 3))


@pytest.mark.parametrize(
    "values",
    [[2.0, 1.0, 0.0], [1.5, 0.0, 0.0], [0.0, 0.0, 0.0]],
    ids=["rank 2 of 3", "rank 1 of 3", "zero"],
)
def test_det_gradient_at_singular_matrices_is_the_cofactor_matrix(values):
    """PyTorch's exact formula (its create_graph path, which its first-order path approximates with 0)."""
    a = _with_values(np.random.default_rng(5), (3, 3), np.array(values))
    ta = torch.tensor(a, requires_grad=True)
    (want,) = torch.autograd.grad(torch.linalg.det(ta), ta, create_graph=True)
    x = dk.tensor(a, requires_grad=True)
    dk.linalg.det(x).backward()
    _assert_close(x.grad, want, F64, "det gradient")


def test_det_gradient_at_a_matrix_of_rank_n_minus_1_by_finite_differences():
    a = _with_values(np.random.default_rng(5), (2, 4, 4), np.array([3.0, 2.0, 1.0, 0.0]))
    gradcheck(dk.linalg.det, dk.tensor(a, requires_grad=True), tol=1e-6)


def test_slogdet_and_logdet_of_singular_and_negative_determinants_match_torch():
    a = np.array([[[1.0, 2.0], [2.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]], [[2.0, 0.0], [0.0, 3.0]]])
    for lib in (torch, dk):
        sign, logabsdet = lib.linalg.slogdet(lib.tensor(a))
        np.testing.assert_array_equal(sign.numpy(), [0.0, -1.0, 1.0])
        np.testing.assert_allclose(logabsdet.numpy(), [-np.inf, 0.0, np.log(6.0)])
        logdet = lib.logdet(lib.tensor(a)).numpy()
        assert logdet[0] == -np.inf and np.isnan(logdet[1]) and np.isclose(logdet[2], np.log(6.0))
    grads = []
    for lib in (torch, dk):
        x = lib.tensor(a[0], requires_grad=True)
        lib.linalg.slogdet(x).logabsdet.backward()
        grads.append(x.grad.numpy())
    assert np.isinf(grads[0]).all() and np.isinf(grads[1]).all()  # log|det| has no finite slope there


def test_repeated_eigenvalues_and_singular_values_as_torch():
    """Eigenvectors' gradients are NaN/inf-prone at repeated eigenvalues in PyTorch (and here); gradients
    of the eigenvalues and singular values alone stay finite and exact."""
    a = np.diag([2.0, 2.0, 5.0])
    weights = np.array([1.0, -2.0, 0.5])
    for call in (
        lambda lib, x: lib.linalg.eigvalsh(x),
        lambda lib, x: lib.linalg.eigh(x).eigenvalues,
        lambda lib, x: lib.linalg.svdvals(x),
        lambda lib, x: lib.linalg.svd(x).S,
    ):
        want = _weighted_gradients(torch, call, [a], [weights])[0]
        assert np.isfinite(want.numpy()).all()
        _assert_close(_weighted_gradients(dk, call, [a], [weights])[0], want, F64, "values' gradient")
    vectors = lambda lib, x: lib.linalg.eigh(x).eigenvectors  # noqa: E731
    weights = np.arange(9.0).reshape(3, 3)
    want = _weighted_gradients(torch, vectors, [a], [weights])[0].numpy()
    got = _weighted_gradients(dk, vectors, [a], [weights])[0].numpy()
    assert not np.isfinite(want).all()
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))


@pytest.mark.parametrize("ord", [2, 1, 3, 0.5, -1, math.inf, -math.inf])
def test_vector_norm_gradient_at_zero_is_torchs(ord):
    weights = [np.array(1.0)]
    for shape in [(4,), (2, 3)]:
        zeros = np.zeros(shape)
        call = lambda lib, x: lib.linalg.vector_norm(x, ord)  # noqa: E731
        want = _weighted_gradients(torch, call, [zeros], weights)[0]
        _assert_close(_weighted_gradients(dk, call, [zeros], weights)[0], want, F64, f"gradient of the {ord}-norm at 0")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_vector_and_frobenius_norms_of_low_precision_tensors_match_torch(dtype):
    x = np.random.default_rng(2).standard_normal((3, 40)).astype(np.float32)
    t = torch.tensor(x).to(getattr(torch, dtype))
    d = dk.tensor(x).to(getattr(dk, dtype))
    for call in (
        lambda lib, a: lib.linalg.vector_norm(a, 3, dim=1),
        lambda lib, a: lib.linalg.matrix_norm(a),
        lambda lib, a: lib.linalg.vector_norm(a, dtype=lib.float64),
    ):
        want, got = call(torch, t), call(dk, d)
        assert str(got.dtype) == str(want.dtype).replace("torch.", "")
        np.testing.assert_allclose(got.float().numpy(), want.float().numpy(), rtol=1e-2)


PRODUCTS = {
    "addmv": (normal(4, (4, 3), 3), "addmv"),
    "addr": (normal((3, 4), 3, 4), "addr"),
    "addbmm": (normal((3, 4), (5, 3, 2), (5, 2, 4)), "addbmm"),
    "baddbmm": (normal((2, 3, 4), (2, 3, 5), (2, 5, 4)), "baddbmm"),
}


@pytest.mark.parametrize("name", sorted(PRODUCTS))
def test_beta_zero_ignores_nan_in_self_and_gives_it_a_zero_gradient(name):
    make, method = PRODUCTS[name]
    arrays = make(np.random.default_rng(4))
    arrays[0] = np.full_like(arrays[0], np.nan)
    results = []
    for lib in (torch, dk):
        ts = [lib.tensor(a, requires_grad=True) for a in arrays]
        out = getattr(ts[0], method)(*ts[1:], beta=0, alpha=1.5)
        out.sum().backward()
        results.append([out, *(t.grad for t in ts)])
    assert not np.isnan(results[1][0].detach().numpy()).any()
    for i, (g, w) in enumerate(zip(results[1], results[0])):
        _assert_close(g, w, F64, f"{name}: output and gradients, item {i}")


def test_addmm_in_place_with_beta_zero_ignores_nan_in_self():
    for lib in (torch, dk):
        out = lib.full((2, 3), math.nan).addmm_(lib.ones(2, 4), lib.ones(4, 3), beta=0, alpha=0.5)
        np.testing.assert_array_equal(out.numpy(), np.full((2, 3), 2.0))


@pytest.mark.parametrize("name", sorted([*PRODUCTS, "addmm"]))
def test_in_place_products_match_torch_and_are_recorded(name):
    make, method = PRODUCTS[name] if name in PRODUCTS else (normal((3, 4), (3, 2), (2, 4)), "addmm")
    arrays = make(np.random.default_rng(6))
    rng = np.random.default_rng(8)
    weights = rng.standard_normal(arrays[0].shape)
    results = []
    for lib in (torch, dk):
        ts = [lib.tensor(a, requires_grad=True) for a in arrays]
        target = ts[0] * 2  # a non-leaf: its in-place change is recorded
        returned = getattr(target, method + "_")(*ts[1:], beta=0.5, alpha=-1.5)
        assert returned is target
        (target * lib.tensor(weights)).sum().backward()
        results.append([target, *(t.grad for t in ts)])
    for i, (g, w) in enumerate(zip(results[1], results[0])):
        _assert_close(g, w, F64, f"{name}_: result and gradients, item {i}")


def test_deprecated_forms_warn_as_torch():
    a = dk.eye(3)
    for call, name in [
        (lambda: a.cholesky(), "deepkern.cholesky"),
        (lambda: dk.cholesky(a, upper=True), "deepkern.cholesky"),
        (lambda: a.qr(), "deepkern.qr"),
        (lambda: dk.qr(a, some=False), "deepkern.qr"),
        (lambda: dk.chain_matmul(a, a), "deepkern.chain_matmul"),
    ]:
        with pytest.warns(UserWarning, match=name):
            call()


@pytest.fixture
def fake_device(monkeypatch):
    """The fake device of tests/fake_device.py, registered for the test only."""
    from fake_device import FakeBackend

    monkeypatch.setattr(dk.backends, "_BACKENDS", dict(dk.backends._BACKENDS))
    dk.backends.register(FakeBackend())
    return "fake"


def test_factorizations_refuse_other_devices_and_products_run_there(fake_device):
    rng = np.random.default_rng(9)
    a = rng.standard_normal((2, 3, 3))
    x = dk.tensor(a).to(fake_device)
    for call, what in [
        (dk.linalg.inv, "linalg.inv"),
        (dk.linalg.det, "linalg.det"),
        (lambda t: dk.linalg.svd(t), "linalg.svd"),
        (lambda t: dk.linalg.solve(t, t), "linalg.solve"),
        (lambda t: t.pinverse(), "linalg.pinv"),
        (lambda t: dk.linalg.matrix_norm(t, "nuc"), "linalg.svd"),
    ]:
        with raises_naming(NotImplementedError, what, "fake"):
            call(x)
    for call in (
        lambda lib, t: lib.linalg.matrix_power(t, 3),
        lambda lib, t: lib.linalg.multi_dot([t[0], t[1], t[0]]),
        lambda lib, t: lib.linalg.matrix_norm(t, -math.inf),
        lambda lib, t: lib.linalg.vecdot(t, t),
        lambda lib, t: t.baddbmm(t, t, beta=0),
        lambda lib, t: t[0, 0].addmv(t[1], t[0, 1], alpha=2),
    ):
        got = call(dk, x)
        assert got.device.type == fake_device
        _assert_close(got.cpu(), call(torch, torch.tensor(a)), F64, "a product on the fake device")


def test_names_of_torch_are_there():
    for name in dk.linalg.__all__:
        assert hasattr(torch.linalg, name), name
    for name in dk.tensor_linalg.__all__:
        assert hasattr(torch, name) and hasattr(dk, name), name
    methods = ["inverse", "det", "logdet", "slogdet", "matrix_power", "matrix_exp", "pinverse", "cholesky"]
    methods += ["cholesky_inverse", "cholesky_solve", "qr", "svd", "addmv", "addmv_", "addr", "addr_", "addbmm"]
    methods += ["addbmm_", "baddbmm", "baddbmm_", "addmm_", "vdot", "ger", "dist", "diagflat"]
    for name in methods:
        assert hasattr(torch.Tensor, name) and hasattr(dk.Tensor, name), name
    assert set(dk.tensor_linalg.__all__) <= set(dk.__all__) and "linalg" in dk.__all__


SECOND_ORDER = {
    "inv": (of(conditioned((2, 3, 3))), lambda lib, a: lib.linalg.inv(a)),
    "solve": (
        of(conditioned((2, 1, 3, 3)), lambda r: r.standard_normal((3, 3, 2))),
        lambda lib, a, b: lib.linalg.solve(a, b),
    ),
    "matrix_exp": (normal((2, 3, 3)), lambda lib, a: lib.linalg.matrix_exp(a)),
}


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_second_derivatives_of_inv_solve_and_matrix_exp_match_torch(name):
    make, call = SECOND_ORDER[name]
    rng = np.random.default_rng(13)
    arrays = make(rng)
    weights = rng.standard_normal(call(torch, *map(torch.tensor, arrays)).shape)
    directions = [rng.standard_normal(a.shape) for a in arrays]
    results = []
    for lib in (torch, dk):
        ts = [lib.tensor(a, requires_grad=True) for a in arrays]
        grads = lib.autograd.grad((call(lib, *ts) * lib.tensor(weights)).sum(), ts, create_graph=True)
        sum((g * lib.tensor(d)).sum() for g, d in zip(grads, directions)).backward()
        results.append([t.grad for t in ts])
    for i, (g, w) in enumerate(zip(results[1], results[0])):
        _assert_close(g, w, F64, f"{name}: Hessian-vector product, input {i}")


NON_FINITE = {
    "inv": lambda lib, a: lib.linalg.inv(a),
    "det": lambda lib, a: lib.linalg.det(a),
    "solve": lambda lib, a: lib.linalg.solve(a, a),
    "qr": lambda lib, a: tuple(lib.linalg.qr(a)),
    "matrix_exp": lambda lib, a: lib.linalg.matrix_exp(a),
    "cholesky": lambda lib, a: lib.linalg.cholesky(a),
    "eigh": lambda lib, a: tuple(lib.linalg.eigh(a)),
    "eigvalsh": lambda lib, a: lib.linalg.eigvalsh(a),
    "svd": lambda lib, a: tuple(lib.linalg.svd(a)),
    "pinv": lambda lib, a: lib.linalg.pinv(a),
}


@pytest.mark.parametrize(
    "value, where",
    [(math.nan, (slice(None), slice(None))), (math.inf, (slice(None), slice(None))), (math.nan, (1, 0))],
    ids=["nan", "inf", "one nan"],
)
@pytest.mark.parametrize("name", sorted(NON_FINITE))
def test_non_finite_matrices_give_non_finite_results_or_raise_as_torch(name, value, where):
    """Non-finite results where PyTorch gives them; LinAlgError where it refuses (cholesky, eigh, svd). (A
    lone inf meets LAPACK's implementation details: PyTorch's MKL and NumPy's OpenBLAS differ there.)"""
    a = np.eye(3)
    a[where] = value
    expected = _raised_by(lambda: NON_FINITE[name](torch, torch.tensor(a)))
    if expected is not None:
        assert isinstance(expected, torch.linalg.LinAlgError)
        with raises_naming(dk.linalg.LinAlgError, "linalg", "converge|positive-definite"):
            NON_FINITE[name](dk, dk.tensor(a))
        return
    want = _outputs(NON_FINITE[name](torch, torch.tensor(a)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and silently, as PyTorch
        got = _outputs(NON_FINITE[name](dk, dk.tensor(a)))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isfinite(g.numpy()), np.isfinite(w.numpy()))
