"""``deepkern.linalg``: PyTorch's ``torch.linalg`` (norms, inverses, determinants, linear solvers, the
Cholesky, QR, symmetric eigen- and singular value decompositions, pinv, matrix_exp, lstsq, ...) with its
names, arguments, defaults, batching over leading dimensions, dtype rules and errors.

The factorizations run NumPy's LAPACK on CPU tensors of float32 or float64, in that dtype (matrix_exp in
float64, rounded once); tensors on another device raise NotImplementedError naming the function and the
device. What is made of products and elementwise ops (matrix_power, multi_dot, vecdot, vector_norm, the
'fro', 1 and inf matrix norms) is built from Tensor ops: it runs on any device and is differentiable
through them, as lstsq is through pinv. The factorizations are Functions whose backward is PyTorch's
formula, batched, and differentiable in turn (create_graph=True): for all but inv, solve and matrix_exp it
is written once with Tensor ops, which the first-order backward runs unrecorded on the saved arrays.
"""

from __future__ import annotations

import math
import numbers
from collections import namedtuple

import numpy as np

from . import tensor as _t
from . import tensor_ops as F
from .autograd import Function, no_grad
from .ops._validate import is_bfloat16, is_floating_dtype

__all__ = [
    "LinAlgError",
    "vector_norm",
    "matrix_norm",
    "norm",
    "inv",
    "det",
    "slogdet",
    "solve",
    "cholesky",
    "qr",
    "eigh",
    "eigvalsh",
    "svd",
    "svdvals",
    "pinv",
    "matrix_power",
    "matrix_exp",
    "lstsq",
    "cross",
    "diagonal",
    "vecdot",
    "multi_dot",
    "matrix_rank",
    "matmul",
]


class LinAlgError(RuntimeError):
    """A matrix the operation cannot take (singular, not positive-definite), as torch.linalg.LinAlgError."""


# The result types, with PyTorch's names (torch.return_types.linalg_*) and fields.
SlogdetResult = namedtuple("linalg_slogdet", ["sign", "logabsdet"])
QRResult = namedtuple("linalg_qr", ["Q", "R"])
EighResult = namedtuple("linalg_eigh", ["eigenvalues", "eigenvectors"])
SVDResult = namedtuple("linalg_svd", ["U", "S", "Vh"])
LstsqResult = namedtuple("linalg_lstsq", ["solution", "residuals", "rank", "singular_values"])

_LSTSQ_DRIVERS = ("gels", "gelsy", "gelsd", "gelss")


# -- argument checks -------------------------------------------------------------------------------


def _dtype_name(dtype) -> str:
    """PyTorch's name of ``dtype`` in its messages: Float, Double, Long, BFloat16, ..."""
    name = "bfloat16" if is_bfloat16(dtype) else str(np.dtype(dtype))
    return _t._TYPE_NAMES.get(name, name + "Tensor")[: -len("Tensor")]


def _check_tensor(what: str, name: str, value) -> None:
    if not isinstance(value, _t.Tensor):
        raise TypeError(f"{what}(): argument '{name}' must be a Tensor, got {_t._kind_name(value)}")


def _check_floating(what: str, x, low_precision: bool = False) -> None:
    """``x`` is float32 or float64 (or, with ``low_precision``, float16 or bfloat16), as PyTorch asks."""
    if x.dtype.kind == "c":
        raise NotImplementedError(f"{what}: complex tensors are not supported by deepkern")
    if not is_floating_dtype(x.dtype):
        raise RuntimeError(f"{what}: Expected a floating point or complex tensor as input. Got {_dtype_name(x.dtype)}")
    if not low_precision and x.dtype not in (np.float32, np.float64):
        raise RuntimeError(f"{what}: Low precision dtypes not supported. Got {_dtype_name(x.dtype)}")


def _check_matrices(what: str, A, name: str = "A", square: bool = True) -> None:
    """``A`` is a Tensor holding a batch of matrices (square ones with ``square``)."""
    _check_tensor(what, name, A)
    if A.ndim < 2:
        raise RuntimeError(f"{what}: The input tensor {name} must have at least 2 dimensions.")
    if square and A.shape[-1] != A.shape[-2]:
        raise RuntimeError(
            f"{what}: {name} must be batches of square matrices, but they are {A.shape[-2]} by {A.shape[-1]} matrices"
        )


def _check_lapack(what: str, A, name: str = "A", square: bool = True) -> None:
    """:func:`_check_matrices`, and ``A`` is a float32/float64 CPU tensor (what NumPy's LAPACK takes)."""
    _check_matrices(what, A, name, square)
    _check_floating(what, A)
    if A.device.type != "cpu":
        raise NotImplementedError(
            f"{what} is not implemented on device '{A.device}': deepkern computes it with NumPy's LAPACK on the "
            "CPU (move the tensor there with .cpu())"
        )


def _listed(items) -> str:
    """``items`` joined as in a sentence: "a", "a and b", "a, b and c"."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _check_same_dtype(what: str, *named) -> None:
    """The (name, Tensor) pairs ``named`` share one dtype."""
    if len({t.dtype for _, t in named}) > 1:
        found = _listed(f"{name} of type {_dtype_name(t.dtype)}" for name, t in named)
        names = _listed(name for name, _ in named)
        raise RuntimeError(f"{what}: Expected {names} to have the same dtype, but found {found} instead")


def _narrowing_check(what: str, x, dtype) -> None:
    if not np.can_cast(x.dtype, dtype, "safe"):
        raise RuntimeError(
            f"{what}: the dtype of the input ({_dtype_name(x.dtype)}) should be convertible without narrowing to "
            f"the specified dtype ({_dtype_name(dtype)})"
        )


# -- host helpers ------------------------------------------------------------------------------------


def _mT(a):
    return np.swapaxes(a, -1, -2)


def _flat(a):
    """The batch of matrices ``a`` as one batch dimension (also when some dimension is 0)."""
    return a.reshape((math.prod(a.shape[:-2]),) + a.shape[-2:])


def _first_failing(a, fails) -> tuple:
    """(index in the flattened batch, matrix): the first matrix of ``a`` for which ``fails(matrix)`` (the
    caller knows there is one)."""
    return next((i, m) for i, m in enumerate(_flat(a)) if fails(m))


def _inverse_fails(m) -> bool:
    try:
        np.linalg.inv(m)
    except np.linalg.LinAlgError:
        return True
    return False


def _cholesky_fails(m) -> bool:
    """Whether LAPACK's potrf fails on ``m``: NumPy raises, or gives non-finite values for NaN or inf in it."""
    try:
        return not np.isfinite(np.linalg.cholesky(m)).all()
    except np.linalg.LinAlgError:
        return True


def _batch_prefix(a, index: int) -> str:
    """How PyTorch's messages name matrix ``index`` of the batch ``a`` (nothing for a single matrix)."""
    return f"(Batch element {index}): " if a.ndim > 2 else ""


def _zero_pivot(m) -> int:
    """LAPACK getrf's ``info`` for the singular matrix ``m``: the (1-based) step of its LU factorization with
    partial pivoting whose pivot is exactly 0 (the last one, should rounding in another order hide it)."""
    u = m.copy()
    n = len(u)
    for k in range(n):
        p = k + int(np.argmax(np.abs(u[k:, k])))
        if u[p, k] == 0:
            return k + 1
        u[[k, p]] = u[[p, k]]
        u[k + 1 :, k:] -= np.outer(u[k + 1 :, k] / u[k, k], u[k, k:])
    return n


def _failing_minor(m) -> int:
    """LAPACK potrf's ``info`` for ``m``: the order of its first leading minor that is not positive-definite
    (the last one, should rounding in another order hide it)."""
    n = len(m)
    factor = np.zeros_like(m)
    with np.errstate(invalid="ignore", over="ignore"):  # an infinite pivot: inf / inf, and NaN from then on
        for k in range(n):
            pivot = m[k, k] - factor[k, :k] @ factor[k, :k]
            if not pivot > 0:
                return k + 1
            factor[k, k] = np.sqrt(pivot)
            factor[k + 1 :, k] = (m[k + 1 :, k] - factor[k + 1 :, :k] @ factor[k, :k]) / factor[k, k]
    return n


def _singular_for_inverse(a) -> LinAlgError:
    index, m = _first_failing(a, _inverse_fails)
    return LinAlgError(
        f"linalg.inv: {_batch_prefix(a, index)}The diagonal element {_zero_pivot(m)} is zero, the inversion could "
        "not be completed because the input matrix is singular."
    )


def _eigh(a, uplo="L", vectors=True):
    """NumPy's eigh (``vectors``) or eigvalsh of the batch ``a``, read from its ``uplo`` triangle."""
    try:
        return np.linalg.eigh(a, UPLO=uplo) if vectors else np.linalg.eigvalsh(a, UPLO=uplo)
    except np.linalg.LinAlgError:  # NaN in the triangle read
        raise LinAlgError(
            "linalg.eigh: The algorithm failed to converge because the input matrix is ill-conditioned or has too "
            "many repeated eigenvalues."
        ) from None


def _svd(a, **options):
    """NumPy's svd of the batch ``a``, which must be finite (LAPACK's gesdd may not return on inf)."""
    if not np.isfinite(a).all():
        raise LinAlgError(
            "linalg.svd: The algorithm failed to converge because the input matrix contained non-finite values."
        )
    return np.linalg.svd(a, **options)


def _expm(a):
    """exp of each matrix of ``a``: scaling and squaring with the degree-13 Padé approximant (Higham 2005),
    in float64, rounded to ``a``'s dtype."""
    if a.size == 0:
        return a.copy()
    x = a.astype(np.float64)
    theta = 5.371920351148152  # the 1-norm up to which the degree-13 approximant is accurate to float64
    norms = np.abs(x).sum(-2).max(-1)
    norms = np.where(np.isfinite(norms), norms, 0)  # NaN or inf in: NaN out, unscaled
    squarings = np.ceil(np.log2(np.maximum(norms, theta) / theta)).astype(np.int64)
    x = x / np.exp2(squarings)[..., None, None]
    b = (
        64764752532480000.0,
        32382376266240000.0,
        7771770303897600.0,
        1187353796428800.0,
        129060195264000.0,
        10559470521600.0,
        670442572800.0,
        33522128640.0,
        1323241920.0,
        40840800.0,
        960960.0,
        16380.0,
        182.0,
        1.0,
    )
    eye = np.broadcast_to(np.eye(x.shape[-1]), x.shape)
    x2 = x @ x
    x4 = x2 @ x2
    x6 = x4 @ x2
    odd = x @ (x6 @ (b[13] * x6 + b[11] * x4 + b[9] * x2) + b[7] * x6 + b[5] * x4 + b[3] * x2 + b[1] * eye)
    even = x6 @ (b[12] * x6 + b[10] * x4 + b[8] * x2) + b[6] * x6 + b[4] * x4 + b[2] * x2 + b[0] * eye
    out = np.linalg.solve(even - odd, even + odd)
    for step in range(int(squarings.max())):
        out = np.where((step < squarings)[..., None, None], out @ out, out)
    return out.astype(a.dtype)


def _singular_values(a, hermitian: bool):
    """The singular values of each matrix of ``a`` (for Hermitian ones, the eigenvalues' magnitudes)."""
    return np.abs(_eigh(a, vectors=False)) if hermitian else _svd(a, compute_uv=False)


def _host_value(value):
    """A tolerance (a number or a Tensor) as a float64 host array."""
    if isinstance(value, _t.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _tolerances(A, atol, rtol) -> tuple:
    """PyTorch's (atol, rtol) of pinv and matrix_rank: atol 0 unless given; rtol eps * max(m, n) unless given,
    or 0 where a positive atol is given."""
    default = np.finfo(A.dtype).eps * max(A.shape[-2:])
    absolute = _host_value(0.0 if atol is None else atol)
    if rtol is not None:
        relative = _host_value(rtol)
    elif atol is not None:
        relative = np.where(absolute > 0, 0.0, default)
    else:
        relative = np.asarray(default)
    return absolute, relative


def _cutoff(s, atol, rtol):
    """max(atol, rtol * the largest of ``s``) per matrix, broadcast against ``s`` (the singular values)."""
    largest = np.max(s, axis=-1, keepdims=True, initial=0)
    return np.maximum(atol[..., None], rtol[..., None] * largest)


# -- Functions -------------------------------------------------------------------------------------


class _SavedArrays:
    """``backward_graph``'s ``io`` for the first-order backward: the saved arrays as Tensors outside any graph."""

    @staticmethod
    def input(i, value):
        return _t.Tensor._wrap(value)

    output = input


class _OneFormula(Function):
    """A Function whose first-order backward is its ``backward_graph`` (Tensor ops) run unrecorded on the
    saved arrays and the gradients: one formula for both passes."""

    @classmethod
    def backward(cls, ctx, *grads):
        with no_grad():
            out = cls.backward_graph(ctx, _SavedArrays, *map(_t.Tensor._wrap, grads))
        return tuple(None if g is None else g._array for g in (out if isinstance(out, tuple) else (out,)))


def _flows(g) -> bool:
    """Whether the output gradient ``g`` (a Tensor) carries anything: nonzero, or part of a graph (an output
    that got none has zeros that are not, as PyTorch's undefined gradient)."""
    return g.requires_grad or bool(g._array.any())


def _split(mask, when, otherwise, *args):
    """``when`` of the Tensors ``args`` (which lead with ``mask``'s dimensions) where ``mask`` holds,
    ``otherwise`` of them elsewhere, each run on its own batch elements only (PyTorch's masked_fmap)."""
    if not mask.any() or mask.all():
        return (when if mask.any() else otherwise)(*args)
    rows = np.flatnonzero(mask), np.flatnonzero(~mask)
    flat = [x.reshape((mask.size,) + tuple(x.shape[mask.ndim :])) for x in args]
    out = _t.cat([f(*(x[r] for x in flat)) for f, r in zip((when, otherwise), rows)])
    out = out[np.argsort(np.concatenate(rows))]
    return out.reshape(mask.shape + tuple(out.shape[1:]))


def _svd_cofactors(a):
    """The cofactor matrices det(A) A^-T of the batch of Tensors ``a`` through the SVD, exact at singular
    matrices: A = U S V^T has cofactors det(U) det(V) U adj(S) V^T, adj(S) the products of all singular
    values but one (PyTorch's form)."""
    u, s, vh = Svd.apply(a, False)
    others = _t.where(np.eye(s.shape[-1], dtype=bool), 1.0, s.unsqueeze(-2)).prod(-1)
    return (u * ((Det.apply(u) * Det.apply(vh)).unsqueeze(-1) * others).unsqueeze(-2)) @ vh


def _cofactors(a, det):
    """det(A) A^-T of the batch of Tensors ``a`` (determinants ``det``): through the inverse, and through the
    SVD where |det| < 100 eps (PyTorch's split)."""
    near = np.abs(det._array) < 100 * np.finfo(det.dtype).eps
    return _split(near, lambda a, det: _svd_cofactors(a), lambda a, det: det[..., None, None] * Inv.apply(a).mT, a, det)


class Inv(Function):
    """The inverse; its gradient is -A^-T G A^-T."""

    @staticmethod
    def forward(ctx, a):
        try:
            out = np.linalg.inv(a)
        except np.linalg.LinAlgError:
            raise _singular_for_inverse(a) from None
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return -(_mT(out) @ g @ _mT(out))

    @staticmethod
    def backward_graph(ctx, io, g):
        (out,) = ctx.saved_tensors
        inverse_t = io.output(0, out).mT
        return -(inverse_t @ g @ inverse_t)


class Det(_OneFormula):
    """The determinant; its gradient is G times the cofactors (exact also at singular matrices)."""

    @staticmethod
    @F._silent_floating_point
    def forward(ctx, a):
        det = np.asarray(np.linalg.det(a))
        ctx.save_for_backward(a, det)
        return det

    @staticmethod
    def backward_graph(ctx, io, g):
        a, det = ctx.saved_tensors
        return g[..., None, None] * _cofactors(io.input(0, a), io.output(0, det))


class Slogdet(_OneFormula):
    """(sign, log|det|); the sign has no gradient, log|det| has G A^-T (inf/NaN at a singular matrix)."""

    @staticmethod
    @F._silent_floating_point
    def forward(ctx, a):
        sign, logabsdet = (np.asarray(x) for x in np.linalg.slogdet(a))
        ctx.mark_non_differentiable(sign)
        ctx.save_for_backward(a, sign)
        return sign, logabsdet

    @staticmethod
    def backward_graph(ctx, io, _, g):
        a, sign = ctx.saved_tensors  # the cofactors over a zero determinant where singular
        inverse_t = _split(sign == 0, lambda a: _svd_cofactors(a) / 0.0, lambda a: Inv.apply(a).mT, io.input(0, a))
        return g[..., None, None] * inverse_t


class Solve(Function):
    """X with A X = B (matrices B, batches broadcast); gradients B: A^-T G, A: -(A^-T G) X^T."""

    @staticmethod
    def forward(ctx, a, b):
        try:
            x = np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            full = np.broadcast_to(a, np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + a.shape[-2:])
            index, _ = _first_failing(full, _inverse_fails)
            raise LinAlgError(
                f"linalg.solve: {_batch_prefix(full, index)}The solver failed because the input matrix is singular."
            ) from None
        ctx.shapes = (a.shape, b.shape)
        ctx.save_for_backward(a, x)
        return x

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        shape_a, shape_b = ctx.shapes
        grad_b = np.linalg.solve(_mT(a), g)
        return F.unbroadcast(-(grad_b @ _mT(x)), shape_a), F.unbroadcast(grad_b, shape_b)

    @staticmethod
    def backward_graph(ctx, io, g):
        a, x = ctx.saved_tensors
        shape_a, shape_b = ctx.shapes
        grad_b = Solve.apply(io.input(0, a).mT, g)
        grad_a = -(grad_b @ io.output(0, x).mT)
        return F.unbroadcast_tensor(grad_a, shape_a), F.unbroadcast_tensor(grad_b, shape_b)


class Cholesky(_OneFormula):
    """The lower Cholesky factor L of A = L L^T (``upper``: U = L^T); gradient L^-T Phi(L^T G) L^-1 with Phi
    the lower triangle, symmetrized with half the diagonal (PyTorch's cholesky_backward)."""

    @staticmethod
    def forward(ctx, a, upper):
        try:
            low = np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            low = None
        if low is None or not np.isfinite(low).all():
            index, m = _first_failing(a, _cholesky_fails)
            raise LinAlgError(
                f"linalg.cholesky: {_batch_prefix(a, index)}The factorization could not be completed because the "
                f"input is not positive-definite (the leading minor of order {_failing_minor(m)} is not "
                "positive-definite)."
            )
        ctx.upper = upper
        ctx.save_for_backward(low)
        return np.ascontiguousarray(_mT(low)) if upper else low

    @staticmethod
    def backward_graph(ctx, io, g):
        (low,) = ctx.saved_tensors
        if ctx.upper:
            low, g = io.output(0, _mT(low)).mT, g.mT
        else:
            low = io.output(0, low)
        phi = (low.mT @ g).tril()
        phi = (phi + phi.tril(-1).mT) * 0.5
        left = Solve.apply(low.mT, phi)  # L^-T Phi
        return Solve.apply(low.mT, left.mT).mT, None  # (L^-T Phi) L^-1


class Qr(_OneFormula):
    """Q and R of A = Q R ('reduced', 'complete' or 'r', where Q is empty); PyTorch's linalg_qr_backward."""

    @staticmethod
    def forward(ctx, a, mode):
        if mode == "r":
            q, r = np.empty((0,), a.dtype), np.linalg.qr(a, mode="r")
        else:
            q, r = np.linalg.qr(a, mode=mode)
        ctx.mode = mode
        ctx.save_for_backward(q, r)
        return q, r

    @staticmethod
    def backward_graph(ctx, io, gq, gr):
        q, r = ctx.saved_tensors
        if ctx.mode == "r":
            raise RuntimeError(
                "The derivative of linalg.qr depends on Q, which is not computed when mode='r'. Please use "
                "linalg.qr(A, mode='reduced') if you are going to differentiate through linalg.qr."
            )
        m, n = q.shape[-2], r.shape[-1]
        if ctx.mode == "complete" and m > n:
            raise RuntimeError("The QR decomposition is not differentiable when mode='complete' and nrows > ncols.")
        q, r = io.output(0, q), io.output(1, r)
        grad = gr @ r.mT - q.mT @ gq
        if m >= n:
            upper = grad.triu()
            grad = q @ (upper + upper.triu(1).mT) + gq
            return Solve.apply(r, grad.mT).mT, None  # grad R^-T
        grad = Solve.apply(r[..., :m], (q @ (grad.mT - grad).tril()).mT).mT  # grad R1^-T
        return _t.cat([grad, _t.zeros(grad.shape[:-1] + (n - m,), dtype=grad.dtype)], -1) + q @ gr, None


class Eigh(_OneFormula):
    """Eigenvalues (ascending) and orthonormal eigenvectors of symmetric matrices, read from the ``uplo``
    triangle; PyTorch's linalg_eig_backward for Hermitian input (NaN/inf where eigenvalues repeat and the
    eigenvectors get a gradient)."""

    @staticmethod
    def forward(ctx, a, uplo):
        w, v = _eigh(a, uplo)
        ctx.save_for_backward(w, v)
        return w, v

    @staticmethod
    def backward_graph(ctx, io, gw, gv):
        w, v = ctx.saved_tensors
        w, v = io.output(0, w), io.output(1, v)
        if not _flows(gv):  # eigenvalues only (eigvalsh): V diag(gw) V^T, finite for repeated eigenvalues
            return (v * gw.unsqueeze(-2)) @ v.mT, None
        diagonal = np.eye(w.shape[-1], dtype=bool)
        inner = v.mT @ gv
        gaps = _t.where(diagonal, 1.0, w.unsqueeze(-2) - w.unsqueeze(-1))
        inner = _t.where(diagonal, gw.diag_embed(), (inner - inner.mT) * 0.5 / gaps)
        return v @ inner @ v.mT, None


class Svd(_OneFormula):
    """U, S, Vh of A = U diag(S) Vh (``full_matrices``: U and Vh square); PyTorch's svd_backward, which reads
    the first min(m, n) columns of U and rows of Vh only."""

    @staticmethod
    def forward(ctx, a, full_matrices):
        u, s, vh = _svd(a, full_matrices=full_matrices)
        ctx.save_for_backward(u, s, vh)
        return u, s, vh

    @staticmethod
    def backward_graph(ctx, io, gu, gs, gvh):
        u, s, vh = ctx.saved_tensors
        k = s.shape[-1]
        u, s, vh = io.output(0, u)[..., :k], io.output(1, s), io.output(2, vh)[..., :k, :]
        gu, gvh = gu[..., :k], gvh[..., :k, :]
        m, n = u.shape[-2], vh.shape[-1]
        with_u, with_v = _flows(gu), _flows(gvh)
        if not (with_u or with_v):  # singular values only (svdvals): U diag(gs) Vh
            return (u * gs.unsqueeze(-2)) @ vh, None
        squares = s * s
        gaps = _t.where(np.eye(k, dtype=bool), 1.0, squares.unsqueeze(-2) - squares.unsqueeze(-1))
        if with_u:
            skew_u = u.mT @ gu - gu.mT @ u
        if with_v:
            skew_v = vh @ gvh.mT - gvh @ vh.mT
        if with_u and with_v:
            inner = (skew_u * s.unsqueeze(-2) + s.unsqueeze(-1) * skew_v) / gaps
        elif with_u:
            inner = skew_u / gaps * s.unsqueeze(-2)
        else:
            inner = s.unsqueeze(-1) * (skew_v / gaps)
        inner = inner + gs.diag_embed()
        if m > n and with_u:
            scaled = gu / s.unsqueeze(-2)
            return (u @ inner + scaled - u @ (u.mT @ scaled)) @ vh, None
        if m < n and with_v:
            scaled = gvh / s.unsqueeze(-1)
            return u @ (inner @ vh + scaled - (scaled @ vh.mT) @ vh), None
        return u @ inner @ vh, None


def _pinv_backward(g, p, a):
    """The gradient of pinv at ``a`` (pinv ``p``) for the output's gradient ``g``, Tensors (PyTorch's
    pinv_backward, exact where the rank does not change)."""
    m, n = a.shape[-2:]
    p_t, g_t = p.mT, g.mT
    if m <= n:
        k = g_t @ p
        k_p = k @ p_t
        return -(p @ k).mT + k_p - (a @ p) @ k_p + (p_t @ p) @ (g_t - k @ a)
    k = p @ g_t
    p_k = p_t @ k
    return -(k @ p).mT + (g_t - a @ k) @ p @ p_t + p_k - p_k @ p @ a


class Pinv(_OneFormula):
    """The pseudo-inverse: singular values (eigenvalue magnitudes with ``hermitian``) above max(atol, rtol *
    the largest) inverted, the others dropped; PyTorch's pinv_backward."""

    @staticmethod
    def forward(ctx, a, atol, rtol, hermitian):
        with np.errstate(divide="ignore"):
            if hermitian:
                w, v = _eigh(a)
                kept = np.where(np.abs(w) > _cutoff(np.abs(w), atol, rtol), 1 / w, 0)
                p = (v * kept[..., None, :]) @ _mT(v)
            else:
                u, s, vh = _svd(a, full_matrices=False)
                kept = np.where(s > _cutoff(s, atol, rtol), 1 / s, 0)
                p = (_mT(vh) * kept[..., None, :]) @ _mT(u)
        ctx.save_for_backward(a, p)
        return p

    @staticmethod
    def backward_graph(ctx, io, g):
        a, p = ctx.saved_tensors
        return _pinv_backward(g, io.output(0, p), io.input(0, a)), None, None, None


class MatrixExp(Function):
    """exp(A); the gradient is the top right block of exp([[A^T, G], [0, A^T]])."""

    @staticmethod
    @F._silent_floating_point
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return _expm(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        n = a.shape[-1]
        block = np.zeros(a.shape[:-2] + (2 * n, 2 * n), a.dtype)
        block[..., :n, :n] = block[..., n:, n:] = _mT(a)
        block[..., :n, n:] = g
        return _expm(block)[..., :n, n:]

    @staticmethod
    def backward_graph(ctx, io, g):
        (a,) = ctx.saved_tensors
        n = a.shape[-1]
        a_t = io.input(0, a).mT
        zeros = _t.zeros(a_t.shape, dtype=a.dtype, device=g.device)
        block = _t.cat([_t.cat([a_t, g], -1), _t.cat([zeros, a_t], -1)], -2)
        return MatrixExp.apply(block)[..., :n, n:]


# -- the functions ---------------------------------------------------------------------------------


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """The ``ord``-norm of ``x`` over ``dim`` (None: all elements): sum(|x|^ord)^(1/ord) for any real ord,
    max |x| (inf), min |x| (-inf), or the count of nonzeros (0; not differentiable). ``dtype``: the input is
    cast to it first. The gradient at a zero vector is 0, as PyTorch's."""
    return _vector_norm("linalg.vector_norm", x, ord, dim, keepdim, dtype)


def _vector_norm(what: str, x, ord, dim, keepdim, dtype):
    _check_tensor(what, "x", x)
    if isinstance(ord, bool) or not isinstance(ord, numbers.Real):
        raise TypeError(f"{what}(): argument 'ord' must be a number, not {type(ord).__name__}")
    _check_floating(what, x, low_precision=True)
    if dtype is not None:
        _narrowing_check(what, x, np.dtype(dtype))
        x = x.to(dtype)
    axes = F._axes(dim, x.ndim)
    ord = float(ord)
    if (ord < 0 or ord == math.inf) and any(x.shape[a] == 0 for a in axes):
        raise RuntimeError(
            f"{what} cannot compute the {ord:g} norm on an empty tensor because the operation does not have an identity"
        )
    if ord == 0:
        return (x != 0).sum(axes, keepdim=keepdim).to(x.dtype)
    if ord == -math.inf:
        return x.abs().amin(axes, keepdim)
    with np.errstate(divide="ignore"):  # a negative ord: |0|^ord is inf, and the norm 0
        return _t._in_float32(x, lambda x: F.Norm.apply(x, ord, axes, keepdim), F.Norm)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """The ``ord``-norm of the matrices in dims ``dim`` of ``A``: 'fro', 'nuc' (the sum of the singular values),
    2 and -2 (the largest and smallest singular value), 1 and -1 (the largest and smallest column sum of |A|),
    inf and -inf (row sums). ``dtype``: the input is cast to it first."""
    what = "linalg.matrix_norm"
    _check_tensor(what, "A", A)
    if A.ndim < 2:
        raise RuntimeError(f"{what}: The input tensor A must have at least 2 dimensions.")
    dims = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
    if len(dims) != 2:
        raise RuntimeError(f"{what}: dim must be a 2-tuple. Got {' '.join(map(str, dims))}")
    d0, d1 = (_t._wrap_dim(d, A.ndim, what) for d in dims)
    if d0 == d1:
        raise RuntimeError(f"{what}: dims must be different. Got ({dims[0]}, {dims[1]})")
    if ord not in ("fro", "nuc", 1, -1, 2, -2, math.inf, -math.inf) or isinstance(ord, bool):
        raise RuntimeError(f"{what}: Order {ord} not supported.")
    spectral = ord in ("nuc", 2, -2)
    _check_floating(what, A, low_precision=not spectral)
    if dtype is not None:
        _narrowing_check(what, A, np.dtype(dtype))
        A = A.to(dtype)
    if ord == "fro":
        return _vector_norm(what, A, 2, (d0, d1), keepdim, None)
    if A.numel() == 0 and (ord == "nuc" or ord > 0):  # PyTorch's norms of empty matrices
        shape = tuple(1 if i in (d0, d1) else n for i, n in enumerate(A.shape) if keepdim or i not in (d0, d1))
        return _t.zeros(shape, dtype=A.dtype, device=A.device)
    if spectral:
        s = svdvals(A.movedim((d0, d1), (-2, -1)))
        out = s.sum(-1) if ord == "nuc" else s.amax(-1) if ord == 2 else s.amin(-1)
        return out.unsqueeze(min(d0, d1)).unsqueeze(max(d0, d1)) if keepdim else out
    if abs(ord) == math.inf:  # the inf-norms are the 1-norms of the transpose
        d0, d1 = d1, d0
    sums = A.abs().sum(d0, keepdim=True)
    out = sums.amax(d1, keepdim=True) if ord > 0 else sums.amin(d1, keepdim=True)
    return out if keepdim else out.squeeze(max(d0, d1)).squeeze(min(d0, d1))


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """torch.linalg.norm: a matrix norm (:func:`matrix_norm`) where ``dim`` has two dimensions, or ``A`` is 2-D
    and ``dim`` is None, and ``ord`` is given; else a vector norm (:func:`vector_norm`, ``ord`` None: 2, over
    all of ``A`` when ``dim`` is None). A string ``ord`` is always a matrix norm."""
    what = "linalg.norm"
    _check_tensor(what, "A", A)
    if dim is not None:
        dim = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
        if len(dim) not in (1, 2):
            raise RuntimeError(f"{what}: If dim is specified, it must be of length 1 or 2. Got {list(dim)}")
    elif ord is not None and A.ndim not in (1, 2):
        raise RuntimeError(f"{what}: If dim is not specified but ord is, the input must be 1D or 2D. Got {A.ndim}D.")
    if ord is not None and (isinstance(ord, str) or len(dim or range(A.ndim)) == 2):
        return matrix_norm(A, ord, dim or (0, 1), keepdim, dtype=dtype)
    return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)


def inv(A):
    """The inverse of each square matrix of ``A``; LinAlgError for a singular one."""
    _check_lapack("linalg.inv", A)
    return Inv.apply(A)


def det(A):
    """The determinant of each square matrix of ``A``; its gradient is exact also at singular matrices."""
    _check_lapack("linalg.det", A)
    return Det.apply(A)


def slogdet(A):
    """(sign, logabsdet): the sign (-1, 0 or 1) and log |det| of each square matrix of ``A``."""
    _check_lapack("linalg.slogdet", A)
    return SlogdetResult(*Slogdet.apply(A))


def _is_vector_rhs(A, B) -> bool:
    """PyTorch's rule: ``B`` is (a batch of) vectors when 1-D, or when its shape is A's without the last dim."""
    return B.ndim == 1 or (B.ndim == A.ndim - 1 and B.shape == A.shape[:-1])


def _solve_matrices(A, B):
    """X with A X = B for the matrices B (batches broadcast); the checks are the caller's."""
    try:
        np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    except ValueError:
        raise RuntimeError(
            f"linalg.solve: the batch dimensions of A {A.shape} and B {B.shape} do not broadcast"
        ) from None
    return Solve.apply(A, B)


def solve(A, B, *, left=True):
    """X with A X = B (``left=False``: X A = B) for square ``A``; ``B`` is a (batch of) vector(s) by PyTorch's
    rule (1-D, or A's shape without its last dimension) or of matrices; batch dimensions broadcast.
    LinAlgError for a singular ``A``."""
    what = "linalg.solve"
    _check_lapack(what, A)
    _check_tensor(what, "B", B)
    _check_same_dtype(what, ("A", A), ("B", B))
    if B.ndim == 0:
        raise RuntimeError(f"{what}: B must have at least 1 dimension, got a 0-d tensor")
    vector = _is_vector_rhs(A, B)
    matrices = B.unsqueeze(-1) if vector else B
    n = A.shape[-1]
    if matrices.shape[-2 if left else -1] != n:
        raise RuntimeError(
            f"{what}: Incompatible shapes of A and B for the equation {'AX = B' if left else 'XA = B'} "
            f"({n}x{n} and {matrices.shape[-2]}x{matrices.shape[-1]})"
        )
    X = _solve_matrices(A, matrices) if left else _solve_matrices(A.mT, matrices.mT).mT
    return X.squeeze(-1) if vector else X


def cholesky(A, *, upper=False):
    """The lower Cholesky factor L (A = L L^T) of each symmetric positive-definite matrix of ``A``, read from
    its lower triangle (``upper``: U = L^T); LinAlgError naming the first leading minor that is not
    positive-definite."""
    _check_lapack("linalg.cholesky", A)
    return Cholesky.apply(A, bool(upper))


def qr(A, mode="reduced"):
    """(Q, R) with A = Q R, Q orthonormal columns, R upper triangular: 'reduced' (Q m x k, R k x n for
    k = min(m, n)), 'complete' (Q m x m) or 'r' (R only; Q empty)."""
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(
            f"qr received unrecognized mode '{mode}' but expected one of 'reduced' (default), 'r', or 'complete'"
        )
    _check_lapack("linalg.qr", A, square=False)
    return QRResult(*Qr.apply(A, mode))


def _check_uplo(UPLO) -> None:
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"Expected UPLO argument to be 'L' or 'U', but got {UPLO}")


def eigh(A, UPLO="L"):
    """(eigenvalues, eigenvectors) of each symmetric matrix of ``A``, read from its ``UPLO`` triangle:
    eigenvalues ascending, eigenvectors orthonormal columns (each one's sign is LAPACK's choice)."""
    _check_uplo(UPLO)
    _check_lapack("linalg.eigh", A)
    return EighResult(*Eigh.apply(A, UPLO))


def eigvalsh(A, UPLO="L"):
    """The eigenvalues (ascending) of each symmetric matrix of ``A``, read from its ``UPLO`` triangle."""
    _check_uplo(UPLO)
    _check_lapack("linalg.eigh", A)
    return Eigh.apply(A, UPLO)[0]


def _check_driver(what: str, driver) -> None:
    if driver is not None:
        raise RuntimeError(
            f"{what}: keyword argument `driver=` is only supported on CUDA inputs with cuSOLVER backend."
        )


def svd(A, full_matrices=True, *, driver=None):
    """(U, S, Vh) with A = U diag(S) Vh: S descending; U m x m and Vh n x n with ``full_matrices``, else
    m x k and k x n (k = min(m, n))."""
    _check_driver("linalg.svd", driver)
    _check_lapack("linalg.svd", A, square=False)
    return SVDResult(*Svd.apply(A, bool(full_matrices)))


def svdvals(A, *, driver=None):
    """The singular values (descending) of each matrix of ``A``; gradient U diag(G) Vh."""
    _check_driver("linalg.svdvals", driver)
    _check_lapack("linalg.svd", A, square=False)
    return Svd.apply(A, False)[1]


def pinv(A, *, atol=None, rtol=None, hermitian=False):
    """The Moore-Penrose pseudo-inverse of each matrix of ``A``: singular values at most max(atol, rtol * the
    largest) count as zero (atol 0 and rtol eps * max(m, n) by default; rtol 0 when a positive atol is
    given); ``hermitian``: ``A`` is symmetric (read from its lower triangle). Tolerances may be Tensors
    broadcast over the batch."""
    _check_lapack("linalg.pinv", A, square=hermitian)
    return Pinv.apply(A, *_tolerances(A, atol, rtol), bool(hermitian))


def matrix_rank(A, *, atol=None, rtol=None, hermitian=False):
    """The number of singular values above max(atol, rtol * the largest), per matrix of ``A`` (int64; the
    tolerances as :func:`pinv`'s)."""
    _check_lapack("linalg.matrix_rank", A, square=hermitian)
    s = _singular_values(A._array, hermitian)
    return _t.Tensor._wrap(np.asarray((s > _cutoff(s, *_tolerances(A, atol, rtol))).sum(-1), np.int64))


def matrix_power(A, n):
    """``A`` to the integer power ``n`` by repeated squaring (as PyTorch's order of products); n = 0 gives the
    identity, negative n powers of the inverse."""
    what = "linalg.matrix_power"
    _check_matrices(what, A)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{what}(): argument 'n' must be int, not {type(n).__name__}")
    if n == 0:
        return A.clone().copy_(_t.eye(A.shape[-1], dtype=A.dtype, device=A.device).expand(A.shape))
    if n < 0:
        A, n = inv(A), -n
    if n == 1:
        return A.clone()
    square = result = None
    while n:
        n, bit = divmod(n, 2)
        square = A if square is None else square @ square
        if bit:
            result = square if result is None else result @ square
    return result


def matrix_exp(A):
    """exp(A) of each square matrix of ``A`` (scaling and squaring, Padé 13, computed in float64)."""
    _check_lapack("linalg.matrix_exp", A)
    return MatrixExp.apply(A)


def lstsq(A, B, rcond=None, *, driver=None):
    """The least-squares (minimum-norm for rank-deficient ``A``) solution X of A X = B, as torch.linalg.lstsq
    on the CPU: (solution, residuals, rank, singular_values), where the residuals (squared column norms of
    A X - B) come for m > n with the drivers 'gelsd', 'gelss' (A of full rank) and 'gels'; the rank (int64)
    for all drivers but 'gels'; the singular values for 'gelsd' and 'gelss'; the others are empty. Singular
    values up to ``rcond`` (default eps * max(m, n)) times the largest count as zero. The solution is
    pinv(A) B, so its gradient is PyTorch's (through pinv); for 'gels' on a rank-deficient ``A`` it is also
    the minimum-norm solution, where LAPACK's gels would give an arbitrary one."""
    what = "linalg.lstsq"
    _check_lapack(what, A, square=False)
    _check_tensor(what, "B", B)
    if B.dtype != A.dtype:
        raise RuntimeError(
            f"{what}: Expected input and other to have the same dtype, but got input's dtype "
            f"{_dtype_name(A.dtype)} and other's dtype {_dtype_name(B.dtype)}"
        )
    if driver not in (None, *_LSTSQ_DRIVERS):
        raise RuntimeError(f"{what}: parameter `driver` should be one of ({', '.join(_LSTSQ_DRIVERS)})")
    driver = driver or "gelsy"
    if not (0 <= A.ndim - B.ndim <= 1):
        raise RuntimeError(
            f"{what}: input.dim() must be greater or equal to other.dim() and (input.dim() - other.dim()) <= 1"
        )
    vector = _is_vector_rhs(A, B)
    matrices = B.unsqueeze(-1) if vector else B
    m, n = A.shape[-2:]
    if matrices.shape[-2] != m:
        raise RuntimeError(f"{what}: input.size(-2) should match other.size(-2)")
    rcond = np.finfo(A.dtype).eps * max(m, n) if rcond is None else float(rcond)
    batch = np.broadcast_shapes(A.shape[:-2], matrices.shape[:-2])
    A = A.expand(batch + (m, n))
    X = pinv(A, rtol=rcond) @ matrices
    s = _singular_values(A._array, hermitian=False)
    ranks = (s > rcond * s[..., :1]).sum(-1)

    def empty(dtype):
        return _t.zeros((0,), dtype=dtype, device=A.device)

    rank = empty(np.int64) if driver == "gels" else _t.Tensor._wrap(np.asarray(ranks, np.int64))
    singular_values = _t.Tensor._wrap(s) if driver in ("gelsd", "gelss") else empty(A.dtype)
    if m > n and driver != "gelsy" and (driver == "gels" or bool((ranks == n).all())):
        residuals = ((A @ X - matrices) ** 2).sum(-2)
    else:
        residuals = empty(A.dtype)
    return LstsqResult(X.squeeze(-1) if vector else X, residuals, rank, singular_values)


def cross(input, other, *, dim=-1):
    """The cross product of the 3-vectors along ``dim`` of ``input`` and ``other`` (same number of
    dimensions, broadcast)."""
    what = "linalg.cross"
    _check_tensor(what, "input", input)
    _check_tensor(what, "other", other)
    if input.ndim != other.ndim:
        raise RuntimeError(f"{what}: inputs must have the same number of dimensions.")
    axis = _t._wrap_dim(dim, input.ndim, what)
    if input.shape[axis] != 3 or other.shape[axis] != 3:
        raise RuntimeError(
            f"{what}: inputs dimension {dim} must have length 3. Got {input.shape[axis]} and {other.shape[axis]}"
        )
    shape = _t._broadcast_shape(input.shape, other.shape, what, "input")
    return input.expand(shape).cross(other.expand(shape), axis)


def diagonal(A, *, offset=0, dim1=-2, dim2=-1):
    """The diagonal ``offset`` of the matrices in dims (``dim1``, ``dim2``) of ``A``, as its last dimension."""
    _check_tensor("linalg.diagonal", "A", A)
    return A.diagonal(offset, dim1, dim2)


def vecdot(x, y, *, dim=-1):
    """The dot products of the vectors along ``dim`` of ``x`` and ``y`` (broadcast; one dtype)."""
    what = "linalg.vecdot"
    _check_tensor(what, "x", x)
    _check_tensor(what, "y", y)
    _check_floating(what, x, low_precision=True)
    if x.dtype != y.dtype:
        raise RuntimeError(
            f"{what}: Expected x and y to have the same dtype, but found x of type {_dtype_name(x.dtype)} and y "
            f"of type {_dtype_name(y.dtype)} instead"
        )
    return (x * y).sum(dim)


def _chain_splits(sizes: list) -> list:
    """For the chain of matrices whose shapes are (sizes[i], sizes[i + 1]): split[i][j], where the cheapest
    order of the products of matrices i..j puts its last product (the textbook dynamic program)."""
    count = len(sizes) - 1
    cost = [[0] * count for _ in range(count)]
    split = [[0] * count for _ in range(count)]
    for length in range(1, count):
        for i in range(count - length):
            j = i + length
            options = [(cost[i][k] + cost[k + 1][j] + sizes[i] * sizes[k + 1] * sizes[j + 1], k) for k in range(i, j)]
            cost[i][j], split[i][j] = min(options)
    return split


def multi_dot(tensors):
    """The product of two or more matrices in the order of fewest multiplications; the first may be a 1-D
    row vector and the last a 1-D column vector (dropped from the result's shape, as in matmul)."""
    tensors = list(tensors)
    if len(tensors) < 2:
        raise RuntimeError(f"multi_dot(): expected at least 2 tensors but got {len(tensors)}")
    for i, t in enumerate(tensors):
        _check_tensor("multi_dot", f"tensors[{i}]", t)
        allowed = (1, 2) if i in (0, len(tensors) - 1) else (2,)
        if t.ndim not in allowed:
            where = "the first tensor" if i == 0 else "the last tensor" if i == len(tensors) - 1 else f"tensor {i}"
            raise RuntimeError(
                f"multi_dot(): {where} must be {' or '.join(f'{d}D' for d in allowed)} but got {t.ndim}D"
            )
        if t.dtype != tensors[0].dtype:
            raise RuntimeError(
                f"multi_dot(): all tensors must have the same dtype but tensor 0 is {tensors[0].dtype} and tensor "
                f"{i} {t.dtype}"
            )
    first, last = tensors[0].ndim == 1, tensors[-1].ndim == 1
    matrices = [tensors[0].unsqueeze(0) if first else tensors[0], *tensors[1:-1]]
    matrices.append(tensors[-1].unsqueeze(1) if last else tensors[-1])
    for i, (a, b) in enumerate(zip(matrices, matrices[1:])):
        if a.shape[1] != b.shape[0]:
            raise RuntimeError(
                f"multi_dot(): tensors {i} and {i + 1} with shapes {list(tensors[i].shape)} and "
                f"{list(tensors[i + 1].shape)} cannot be multiplied"
            )
    split = _chain_splits([matrices[0].shape[0]] + [m.shape[1] for m in matrices])

    def product(i, j):
        return matrices[i] if i == j else product(i, split[i][j]) @ product(split[i][j] + 1, j)

    out = product(0, len(matrices) - 1)
    return out.reshape(out.shape[int(first) : 2 - int(last)])


def matmul(input, other):
    """``deepkern.matmul``."""
    from .tensor_functions import matmul as product

    return product(input, other)
