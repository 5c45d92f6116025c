"""The linear-algebra and matrix-product methods of PyTorch's Tensor (``inverse``, ``det``, ``svd``,
``cholesky_solve``, ``addmv``, ``baddbmm``, ``vdot``, ...) as :class:`LinalgMethods`, a base class of
:class:`deepkern.Tensor`, and their torch-level function forms (``deepkern.det(A)``, ...).

The factorizations are deepkern.linalg's (CPU tensors of float32 or float64); the products are Tensor
matmuls, so they run on any device and their gradients come from matmul's. Names, arguments, defaults,
deprecation warnings and errors are PyTorch's.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections import namedtuple

import numpy as np

from . import linalg as _linalg
from . import tensor as _t
from .tensor_long_tail import _ByMethod

__all__ = [
    "inverse",
    "det",
    "logdet",
    "slogdet",
    "matrix_power",
    "matrix_exp",
    "pinverse",
    "cholesky",
    "cholesky_inverse",
    "cholesky_solve",
    "qr",
    "svd",
    "addmv",
    "addr",
    "addbmm",
    "baddbmm",
    "vdot",
    "ger",
    "dist",
    "diagflat",
    "chain_matmul",
]

#: ``svd``'s result, as PyTorch's torch.return_types.svd (V, not Vh).
SvdResult = namedtuple("svd", ["U", "S", "V"])


def _deprecated(name: str, replacement: str) -> None:
    """The UserWarning of a form PyTorch deprecated, for ``deepkern.<name>``, pointing at its caller."""
    warnings.warn(
        f"deepkern.{name} is deprecated, as in PyTorch: use {replacement} instead",
        UserWarning,
        stacklevel=3,
    )


def _triangle(L, upper: bool):
    """``L``'s upper or lower triangle as its value, with the gradient of all of ``L``: the Cholesky factor
    as LAPACK's potri and potrs read it, differentiated as PyTorch differentiates them (the formula's
    gradient in all of a triangular ``L``, entries outside its triangle included)."""
    return L + ((L.triu() if upper else L.tril()) - L).detach()


def _plus_product(what: str, self, product, beta, alpha):
    """``beta * self + alpha * product``, ``self`` broadcast to the product's shape; with ``beta=0`` the
    values of ``self`` are not read (NaN and inf in it do not propagate) and its gradient is 0, as PyTorch's."""
    try:
        fits = np.broadcast_shapes(self.shape, product.shape) == product.shape
    except ValueError:
        fits = False
    if not fits:
        raise RuntimeError(
            f"{what}: self of shape {self.shape} cannot be broadcast to the result's shape {product.shape}"
        )
    if alpha != 1:
        product = product * alpha
    if beta == 0:
        return _t.where(_t.zeros((), dtype=bool, device=product.device), self, product)
    return (self if beta == 1 else self * beta) + product


def _scaled_in_place(name: str):
    """``name + "_"``: the result of ``name`` (which takes ``beta`` and ``alpha``) written into the tensor."""

    def method(self, *args, beta=1, alpha=1):
        return self._inplace(name + "_", _ByMethod(name, beta=beta, alpha=alpha), *args)

    method.__name__ = method.__qualname__ = name + "_"
    method.__doc__ = f"In-place ``{name}``."
    return method


def _check_batches(what: str, batch1, batch2) -> None:
    for name, t in (("batch1", batch1), ("batch2", batch2)):
        _linalg._check_tensor(what, name, t)
        if t.ndim != 3:
            raise RuntimeError(f"{what}: {name} must be a 3D tensor, got shape {t.shape}")


class LinalgMethods:
    """Tensor methods of linear algebra and matrix products (see the module's docstring)."""

    __slots__ = ()

    # -- deepkern.linalg as methods ----------------------------------------------------------------

    def inverse(self):
        """``deepkern.linalg.inv``."""
        return _linalg.inv(self)

    def det(self):
        """``deepkern.linalg.det``."""
        return _linalg.det(self)

    def slogdet(self):
        """``deepkern.linalg.slogdet``: (sign, logabsdet)."""
        return _linalg.slogdet(self)

    def logdet(self):
        """log det of each square matrix: NaN where the determinant is negative, -inf where it is 0."""
        sign, logabsdet = _linalg.slogdet(self)
        return _t.where(sign < 0, math.nan, logabsdet)

    def matrix_power(self, n):
        """``deepkern.linalg.matrix_power``."""
        return _linalg.matrix_power(self, n)

    def matrix_exp(self):
        """``deepkern.linalg.matrix_exp``."""
        return _linalg.matrix_exp(self)

    def pinverse(self, rcond=1e-15):
        """The pseudo-inverse, singular values up to ``rcond`` times the largest dropped (linalg.pinv's rtol)."""
        return _linalg.pinv(self, rtol=rcond)

    def cholesky(self, upper=False):
        """Deprecated, as torch.cholesky: ``deepkern.linalg.cholesky``."""
        _deprecated("cholesky", "deepkern.linalg.cholesky(A) (and .mH of it for upper=True)")
        return _linalg.cholesky(self, upper=upper)

    def qr(self, some=True):
        """Deprecated, as torch.qr: ``deepkern.linalg.qr`` in mode 'reduced' (``some``) or 'complete'."""
        _deprecated("qr", "deepkern.linalg.qr(A, 'reduced' if some else 'complete')")
        return _linalg.qr(self, "reduced" if some else "complete")

    def svd(self, some=True, compute_uv=True):
        """(U, S, V) with A = U diag(S) V^T, as torch.svd (V where linalg.svd gives Vh): reduced with ``some``;
        without ``compute_uv`` only S, with U and V zero-filled, (m, m) and (n, n)."""
        if not compute_uv:
            S = _linalg.svdvals(self)
            zeros = [_t.zeros(self.shape[:-2] + (k, k), dtype=self.dtype, device=self.device) for k in self.shape[-2:]]
            return SvdResult(zeros[0], S, zeros[1])
        U, S, Vh = _linalg.svd(self, full_matrices=not some)
        return SvdResult(U, S, Vh.mT)

    def cholesky_inverse(self, upper=False):
        """(L L^T)^-1 from its Cholesky factor L, this tensor (``upper``: (U^T U)^-1 from U). Its triangle is
        read, as LAPACK's potri; the gradient is with respect to all of it, as PyTorch's."""
        _linalg._check_lapack("cholesky_inverse", self)
        inverse = _triangle(self, upper).inverse()
        return inverse @ inverse.mT if upper else inverse.mT @ inverse

    def cholesky_solve(self, input2, upper=False):
        """X with A X = B for B this tensor and A = L L^T given by its Cholesky factor ``input2`` (``upper``:
        A = U^T U); batch dimensions broadcast. The factor's triangle is read, as LAPACK's potrs; the gradient
        is with respect to all of it, as PyTorch's."""
        what = "cholesky_solve"
        _linalg._check_lapack(what, input2, "A")
        if self.ndim < 2:
            raise RuntimeError(f"{what}: b should have at least 2 dimensions, but has {self.ndim} dimensions instead")
        _linalg._check_same_dtype(what, ("b", self), ("A", input2))
        n = input2.shape[-1]
        if self.shape[-2] != n:
            raise RuntimeError(
                f"Incompatible matrix sizes for {what}: each A matrix is {n} by {n} but each b matrix is "
                f"{self.shape[-2]} by {self.shape[-1]}"
            )
        factor = _triangle(input2, upper)
        first, second = (factor.mT, factor) if upper else (factor, factor.mT)  # A = first @ second
        return _linalg._solve_matrices(second, _linalg._solve_matrices(first, self))

    # -- products ------------------------------------------------------------------------------------

    def addmv(self, mat, vec, *, beta=1, alpha=1):
        """``beta * self + alpha * (mat @ vec)`` (``beta=0``: this tensor's values are not read)."""
        what = "addmv"
        _linalg._check_tensor(what, "mat", mat)
        _linalg._check_tensor(what, "vec", vec)
        if self.ndim > 1 or mat.ndim != 2 or vec.ndim != 1:
            raise RuntimeError(f"{what}: vector + matrix @ vector expected, got {self.ndim}, {mat.ndim}, {vec.ndim}")
        if mat.shape[1] != vec.shape[0] or (self.ndim and self.shape[0] not in (1, mat.shape[0])):
            raise RuntimeError(
                f"{what}: size mismatch, got input ({', '.join(map(str, self.shape))}), mat "
                f"({mat.shape[0]}x{mat.shape[1]}), vec ({vec.shape[0]})"
            )
        _linalg._check_same_dtype(what, ("self", self), ("mat", mat), ("vec", vec))
        return _plus_product(what, self, mat @ vec, beta, alpha)

    def addr(self, vec1, vec2, *, beta=1, alpha=1):
        """``beta * self + alpha * outer(vec1, vec2)`` (``beta=0``: this tensor's values are not read)."""
        for name, v in (("vec1", vec1), ("vec2", vec2)):
            _linalg._check_tensor("addr", name, v)
            if v.ndim != 1:
                raise RuntimeError(f"addr: Expected 1-D argument {name}, but got {v.ndim}-D")
        return _plus_product("addr", self, vec1.outer(vec2), beta, alpha)

    def addbmm(self, batch1, batch2, *, beta=1, alpha=1):
        """``beta * self + alpha * sum_b(batch1[b] @ batch2[b])`` (``beta=0``: this tensor's values are not
        read); computed as one product of the batches laid side by side."""
        what = "addbmm"
        _check_batches(what, batch1, batch2)
        (b, n, m), (b2, m2, p) = batch1.shape, batch2.shape
        if b != b2:
            raise RuntimeError(f"{what}: batch1 and batch2 must have same number of batches, got {b} and {b2}")
        if m != m2:
            raise RuntimeError(f"{what}: Incompatible matrix sizes for bmm ({n}x{m} and {m2}x{p})")
        _linalg._check_same_dtype(what, ("self", self), ("batch1", batch1), ("batch2", batch2))
        product = batch1.permute(1, 0, 2).reshape(n, b * m) @ batch2.reshape(b * m, p)
        return _plus_product(what, self, product, beta, alpha)

    def baddbmm(self, batch1, batch2, *, beta=1, alpha=1):
        """``beta * self + alpha * (batch1 @ batch2)`` for (b, n, m) and (b, m, p) batches (``beta=0``: this
        tensor's values are not read, as attention code relies on)."""
        what = "baddbmm"
        _check_batches(what, batch1, batch2)
        b, _, m = batch1.shape
        if batch2.shape[:2] != (b, m):
            raise RuntimeError(
                f"{what}: Expected size for first two dimensions of batch2 tensor to be: [{b}, {m}] but got: "
                f"[{batch2.shape[0]}, {batch2.shape[1]}]."
            )
        _linalg._check_same_dtype(what, ("self", self), ("batch1", batch1), ("batch2", batch2))
        return _plus_product(what, self, batch1 @ batch2, beta, alpha)

    addmm_, addmv_, addr_, addbmm_, baddbmm_ = map(_scaled_in_place, ["addmm", "addmv", "addr", "addbmm", "baddbmm"])

    def vdot(self, other):
        """The dot product of two 1-D tensors of one length and dtype (of real tensors: ``dot``)."""
        what = "vdot"
        _linalg._check_tensor(what, "other", other)
        if self.ndim != 1 or other.ndim != 1:
            raise RuntimeError(f"{what}: 1D tensors expected, but got {self.ndim}D and {other.ndim}D tensors")
        if self.dtype != other.dtype:
            raise RuntimeError(
                f"{what}: expected both vectors to have same dtype, but found {_linalg._dtype_name(self.dtype)} and "
                f"{_linalg._dtype_name(other.dtype)}"
            )
        if self.shape != other.shape:
            raise RuntimeError(
                f"{what}: inconsistent tensor size, expected tensor [{self.shape[0]}] and src [{other.shape[0]}] to "
                f"have the same number of elements, but got {self.shape[0]} and {other.shape[0]} elements respectively"
            )
        return (self * other).sum(dtype=self.dtype)

    def ger(self, vec2):
        """``outer`` (PyTorch's older name)."""
        return self.outer(vec2)

    def dist(self, other, p=2):
        """The ``p``-norm of ``self - other`` (broadcast), as ``linalg.vector_norm``."""
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"dist(): argument 'p' must be a number, not {type(p).__name__}")
        return _linalg._vector_norm("dist", self - other, p, None, False, None)

    def diagflat(self, offset=0):
        """The square matrix with this tensor's elements (flattened) on diagonal ``offset``, zeros elsewhere."""
        return self.reshape(-1).diag(offset)


def _function_form(name: str):
    """``deepkern.<name>(input, ...)``: ``input.<name>(...)`` (tensor_functions' method forms, which this
    module cannot import: tensor.py imports it before it defines Tensor)."""

    def function(input, *args, **kwargs):
        _linalg._check_tensor(name, "input", input)
        return getattr(input, name)(*args, **kwargs)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"``input.{name}(...)``: see :meth:`deepkern.Tensor.{name}`."
    return function


inverse, det, logdet, slogdet, matrix_power, matrix_exp, pinverse = map(
    _function_form, ["inverse", "det", "logdet", "slogdet", "matrix_power", "matrix_exp", "pinverse"]
)
cholesky, cholesky_inverse, cholesky_solve, qr, svd = map(
    _function_form, ["cholesky", "cholesky_inverse", "cholesky_solve", "qr", "svd"]
)
addmv, addr, addbmm, baddbmm, vdot, ger, dist, diagflat = map(
    _function_form, ["addmv", "addr", "addbmm", "baddbmm", "vdot", "ger", "dist", "diagflat"]
)


def chain_matmul(*matrices):
    """Deprecated, as torch.chain_matmul: the product of the 2-D ``matrices`` (``linalg.multi_dot``; one
    matrix: a copy of it)."""
    _deprecated("chain_matmul", "deepkern.linalg.multi_dot, which takes a list of two or more tensors")
    if not matrices:
        raise RuntimeError("chain_matmul(): Expected one or more matrices")
    for i, m in enumerate(matrices):
        _linalg._check_tensor("chain_matmul", f"matrices[{i}]", m)
        if m.ndim != 2:
            raise RuntimeError(f"chain_matmul(): tensor {i} has {m.ndim} dimensions, expected 2")
    return matrices[0].clone() if len(matrices) == 1 else _linalg.multi_dot(matrices)
