"""Dense layers: ``Linear``, ``Embedding`` and ``Flatten`` (PyTorch's signatures, defaults,
parameter names and initialisation)."""

from __future__ import annotations

import math

import numpy as np

from ..ops.gemm import _BIAS_COLS, _BIAS_NONE
from ..tensor import Tensor, tensor
from . import functional as F
from . import init
from ._inference import CPU, cached_plan, host_array, infer, member
from ._layer import (
    add_weight_and_bias,
    bad_shape,
    check_float,
    empty_parameter,
    factory_kwargs,
    reset_weight_and_bias,
    run_op,
    size_argument,
)
from .module import Module, Parameter

__all__ = ["Linear", "Bilinear", "Embedding", "EmbeddingBag", "Flatten"]

#: The GEMM kernel's batch offsets of a single problem.
_ONE = np.zeros(1, dtype=np.int64)
_ONE.flags.writeable = False


class Linear(Module):
    """``y = x @ weight.T + bias`` for input ``(..., in_features)``; weight
    ``(out_features, in_features)`` and bias ``(out_features,)`` initialised as PyTorch does:
    kaiming_uniform_(a=sqrt(5)) and U(-1/sqrt(in_features), 1/sqrt(in_features))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        factory = factory_kwargs("Linear", dtype, device)
        self.in_features = size_argument("Linear", "in_features", in_features)
        self.out_features = size_argument("Linear", "out_features", out_features)
        add_weight_and_bias(self, (self.out_features, self.in_features), bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_weight_and_bias(self)

    def forward(self, input):
        x = host_array(input)
        if x is not None:
            y = infer(self, x)
            if y is not None:
                return y
        self._checked(input)
        return F.linear(input, self.weight, self.bias)

    def _checked(self, input) -> None:
        check_float(self, input, self.weight.dtype, bfloat16=True)  # the bfloat16 GEMM's
        if input.ndim < 1 or input.shape[-1] != self.in_features:
            bad_shape(self, input, f"(..., {self.in_features})")

    def _infer_step(self, x, bn=None, relu=False):
        """The inference step for arrays shaped and typed as ``x`` (from _inference.host_array): one
        GEMM with the bias (and ReLU when ``relu``) in its epilogue, the arguments validated once per
        input shape. None where the ordinary path must run (bfloat16, weights on another device or
        not contiguous)."""
        bias = member(self, "bias")
        w, b = member(self, "weight")._array, None if bias is None else bias._array
        return cached_plan(self, x, (w, b), (relu,), lambda: self._gemm_step(x, w, b, relu))

    def _gemm_step(self, x, w, b, relu):
        """The step computing ``x @ w.T + b`` (ReLU'd when ``relu``) for arrays shaped and typed as
        ``x``, validated as the layer does; None unless x, w and b are float32/float64 contiguous
        NumPy arrays of one dtype."""
        self._checked(x)
        arrays = [a for a in (w, b) if a is not None]
        if x.dtype not in (np.float32, np.float64) or any(
            type(a) is not np.ndarray or not a.flags.c_contiguous or a.dtype != x.dtype for a in arrays
        ):
            return None
        k, wt, dtype, kernel = self.in_features, w.T, x.dtype, CPU.gemm
        bias_axis = _BIAS_NONE if b is None else _BIAS_COLS
        rows, n, out_shape = math.prod(x.shape[:-1]), self.out_features, x.shape[:-1] + (self.out_features,)
        flat = x.ndim == 2

        def step(x):
            y = np.empty(out_shape, dtype)
            x2, y2 = (x, y) if flat else (x.reshape(rows, k), y.reshape(rows, n))
            kernel(x2, wt, y2, _ONE, _ONE, _ONE, k, 1.0, 0.0, b, bias_axis, relu)
            return y

        return step

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _embedding_table(
    module,
    rows,
    dim,
    padding_idx,
    max_norm,
    norm_type,
    scale_grad_by_freq,
    sparse,
    weight,
    requires_grad,
    device,
    dtype,
) -> None:
    """Embedding's and EmbeddingBag's shared arguments checked and set, and their ``weight``: N(0, 1)
    with the ``padding_idx`` row zero, or the given ``weight`` (rows x dim)."""
    name = type(module).__name__
    for option, value in (
        ("max_norm", max_norm is not None),
        ("scale_grad_by_freq", scale_grad_by_freq),
        ("sparse", sparse),
    ):
        if value:
            raise NotImplementedError(f"{name}: {option} is not supported in this version")
    factory = factory_kwargs(name, dtype, device)
    module.num_embeddings = size_argument(name, "num_embeddings", rows)
    module.embedding_dim = size_argument(name, "embedding_dim", dim)
    module.padding_idx = F._padding_row(padding_idx, module.num_embeddings, name)
    module.max_norm, module.norm_type, module.scale_grad_by_freq, module.sparse = (
        max_norm,
        norm_type,
        scale_grad_by_freq,
        sparse,
    )
    shape = (module.num_embeddings, module.embedding_dim)
    if weight is None:
        module.weight = empty_parameter(shape, **factory)
        module.reset_parameters()
        return
    given = tensor(weight, dtype=factory["dtype"], device=factory["device"])
    if given.shape != shape:
        raise ValueError(f"{name}: _weight has shape {given.shape}, expected {shape}")
    module.weight = Parameter(given, requires_grad=requires_grad)


class Embedding(Module):
    """A lookup table: integer indices of any shape give rows of ``weight``
    ``(num_embeddings, embedding_dim)``, initialised N(0, 1) with the ``padding_idx`` row zero
    (that row gets no gradient)."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx=None,
        max_norm=None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight=None,
        _freeze: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        _embedding_table(
            self,
            num_embeddings,
            embedding_dim,
            padding_idx,
            max_norm,
            norm_type,
            scale_grad_by_freq,
            sparse,
            _weight,
            not _freeze,
            device,
            dtype,
        )

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight._array[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx=None, **kwargs) -> "Embedding":
        """An Embedding holding a copy of the 2-D ``embeddings`` (not trained when ``freeze``)."""
        shape = np.shape(getattr(embeddings, "_array", embeddings))
        if len(shape) != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape {shape}")
        dtype = getattr(embeddings, "dtype", None)
        return cls(
            shape[0],
            shape[1],
            padding_idx=padding_idx,
            _weight=embeddings,
            _freeze=freeze,
            dtype=dtype if dtype in (np.float32, np.float64) else None,
            **kwargs,
        )

    def forward(self, input):
        return run_op(self, F.embedding, input, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s


class EmbeddingBag(Module):
    """Sums, means or maxima (``mode``) of the embedding rows of bags of indices (F.embedding_bag):
    ``forward(input, offsets=None, per_sample_weights=None)``; ``weight`` as Embedding's."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        max_norm=None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        _weight=None,
        include_last_offset: bool = False,
        padding_idx=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"EmbeddingBag: mode must be 'sum', 'mean' or 'max', got {mode!r}")
        self.mode, self.include_last_offset = mode, bool(include_last_offset)
        _embedding_table(
            self,
            num_embeddings,
            embedding_dim,
            padding_idx,
            max_norm,
            norm_type,
            scale_grad_by_freq,
            sparse,
            _weight,
            True,
            device,
            dtype,
        )

    reset_parameters = Embedding.reset_parameters

    def forward(self, input, offsets=None, per_sample_weights=None):
        return F.embedding_bag(
            input,
            self.weight,
            offsets,
            mode=self.mode,
            per_sample_weights=per_sample_weights,
            include_last_offset=self.include_last_offset,
            padding_idx=self.padding_idx,
        )

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s


class Flatten(Module):
    """Merges dimensions ``start_dim`` to ``end_dim`` (default: all but the batch dimension)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        needed = max(d + 1 if d >= 0 else -d for d in (self.start_dim, self.end_dim))
        ndim = max(input.ndim, 1)
        if ndim < needed or self.start_dim % ndim > self.end_dim % ndim:
            bad_shape(self, input, f"at least {needed} dimensions, with start_dim no later than end_dim")
        x = host_array(input)
        if x is not None:  # inference: a view, nothing recorded
            return Tensor._wrap(self._view(x))
        return F.flatten(input, self.start_dim, self.end_dim)

    def _infer_step(self, x, bn=None, relu=False):
        """The inference step for arrays shaped as ``x`` (from _inference.host_array): the flattened
        view; None for a shape the layer refuses (the ordinary path raises)."""
        ndim = x.ndim
        start, end = self.start_dim, self.end_dim
        if not (-ndim <= start < ndim and -ndim <= end < ndim) or start % ndim > end % ndim:
            return None
        shape = self._view(x).shape
        return lambda x: x.reshape(shape)

    def _view(self, x):
        """``x`` with dimensions start_dim to end_dim merged (a view of a contiguous array)."""
        ndim = max(x.ndim, 1)
        start, end = self.start_dim % ndim, self.end_dim % ndim
        merged = math.prod(x.shape[start : end + 1])  # not -1, which an array of no elements cannot solve
        return x.reshape(x.shape[:start] + (merged,) + x.shape[end + 1 :])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Bilinear(Module):
    """``y = x1^T A x2 + b`` per output feature (F.bilinear): weight ``(out_features, in1_features,
    in2_features)`` and bias initialised U(-1/sqrt(in1_features), 1/sqrt(in1_features)), as PyTorch's."""

    def __init__(
        self, in1_features: int, in2_features: int, out_features: int, bias: bool = True, device=None, dtype=None
    ):
        super().__init__()
        factory = factory_kwargs("Bilinear", dtype, device)
        self.in1_features = size_argument("Bilinear", "in1_features", in1_features)
        self.in2_features = size_argument("Bilinear", "in2_features", in2_features)
        self.out_features = size_argument("Bilinear", "out_features", out_features)
        self.weight = empty_parameter((self.out_features, self.in1_features, self.in2_features), **factory)
        self.bias = empty_parameter((self.out_features,), **factory) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.in1_features) if self.in1_features else 0.0
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1, input2):
        for name, x, n in (("input1", input1, self.in1_features), ("input2", input2, self.in2_features)):
            if x.ndim < 1 or x.shape[-1] != n:
                bad_shape(self, x, f"(..., {n}) for {name}")
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
            f"out_features={self.out_features}, bias={self.bias is not None}"
        )
