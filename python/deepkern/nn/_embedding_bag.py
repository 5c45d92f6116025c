"""``embedding_bag`` (``torch.nn.functional``'s): the sum, mean or max of the embedding rows of each
bag of indices. The rows are gathered with ``index_select`` and the sums taken with ``index_add``
(both differentiable, so the weight and ``per_sample_weights`` get PyTorch's gradients); the max is
a Function that sends each output element's gradient to the row that held it."""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..tensor import Tensor, tensor, zeros
from ..tensor_ops import LinearBackward

__all__ = ["embedding_bag"]


class BagMax(Function):
    """The elementwise max over the rows of each bag (rows ``(n, D)``, bag ``b`` the rows
    ``starts[b]:ends[b]``, 0 for an empty bag); the gradient goes to the first row holding it."""

    @staticmethod
    def forward(ctx, rows, starts, ends):
        out = np.zeros((len(starts), rows.shape[1]), rows.dtype)
        argmax = np.full(out.shape, -1, np.int64)
        for b, (start, end) in enumerate(zip(starts, ends)):
            if end > start:
                position = np.argmax(rows[start:end], axis=0)
                argmax[b] = start + position
                out[b] = np.take_along_axis(rows[start:end], position[None], axis=0)[0]
        ctx.meta = (rows.shape, argmax)
        return out

    @staticmethod
    def backward(ctx, g):
        shape, argmax = ctx.meta
        return _to_rows(g, shape, argmax), None, None

    @staticmethod
    def backward_graph(ctx, io, g):
        shape, argmax = ctx.meta
        return (
            LinearBackward.apply(g, lambda a: _to_rows(a, shape, argmax), lambda a: _from_rows(a, argmax)),
            None,
            None,
        )


def _to_rows(g, shape, argmax):
    """BagMax's gradient: each bag's gradient added at the rows its max came from (none for an empty bag)."""
    grad = np.zeros(shape, g.dtype)
    chosen = argmax >= 0
    np.add.at(grad, (argmax[chosen], np.nonzero(chosen)[1]), g[chosen])
    return grad


def _from_rows(a, argmax):
    """The transpose of :func:`_to_rows`: each bag's values read at its max's rows (0 for an empty bag)."""
    if a.shape[0] == 0:  # no rows: every bag is empty
        return np.zeros(argmax.shape, a.dtype)
    return np.where(argmax >= 0, np.take_along_axis(a, np.maximum(argmax, 0), axis=0), 0).astype(a.dtype)


def _bags(input: Tensor, offsets, include_last_offset: bool):
    """(flat indices array, bag start and end positions) of the bags: the rows of a 2-D ``input``, or
    the runs of a 1-D one that ``offsets`` start."""
    if input.dtype.kind not in "iu":
        raise TypeError(f"embedding_bag: input must hold integer indices, got dtype {input.dtype}")
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("embedding_bag: offsets must be None when input is 2-D (each row is a bag)")
        bags, length = input.shape
        starts = np.arange(bags) * length
        return input._array.reshape(-1), starts, starts + length
    if input.ndim != 1:
        raise ValueError(f"embedding_bag: input must be 1-D or 2-D, got shape {input.shape}")
    if offsets is None:
        raise ValueError("embedding_bag: offsets has to be a 1-D tensor but got None (input is 1-D)")
    starts = np.asarray(offsets._array if isinstance(offsets, Tensor) else offsets, dtype=np.int64).reshape(-1)
    n = input.shape[0]
    if starts.size and (starts[0] != 0 or np.any(np.diff(starts) < 0) or starts[-1] > n):
        raise ValueError(
            f"embedding_bag: offsets must start at 0, not decrease and stay within the {n} indices, "
            f"got {starts.tolist()}"
        )
    if include_last_offset:
        if starts.size == 0:
            raise ValueError("embedding_bag: include_last_offset needs at least one offset")
        if starts.size == 1:  # no bag
            return input._array[:0], starts[:0], starts[:0]
        return input._array, starts[:-1], np.append(starts[1:-1], n)  # the last bag runs to the end, as PyTorch
    return input._array, starts, np.append(starts[1:], n)


def embedding_bag(
    input,
    weight,
    offsets=None,
    max_norm=None,
    norm_type=2,
    scale_grad_by_freq=False,
    mode="mean",
    sparse=False,
    per_sample_weights=None,
    include_last_offset=False,
    padding_idx=None,
):
    """The ``mode`` ('sum', 'mean' or 'max') of ``weight``'s rows over each bag of ``input``: the rows
    of a 2-D input, or the runs of a 1-D input starting at ``offsets``; ``per_sample_weights`` (sum
    only) scales each index's row; indices equal to ``padding_idx`` are left out (of a mean's count
    too); an empty bag gives zeros."""
    for name, value in (
        ("max_norm", max_norm is not None),
        ("scale_grad_by_freq", scale_grad_by_freq),
        ("sparse", sparse),
    ):
        if value:
            raise NotImplementedError(f"embedding_bag: {name} is not supported")
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"embedding_bag: mode must be 'sum', 'mean' or 'max', got {mode!r}")
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError(f"embedding_bag: weight must be a 2-D Tensor, got {getattr(weight, 'shape', weight)!r}")
    if not isinstance(input, Tensor):
        input = tensor(input)
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(
            f"embedding_bag: per_sample_weights was not None; it is only supported for mode='sum', got mode={mode!r}"
        )
    indices, starts, ends = _bags(input, offsets, include_last_offset)
    rows_count = weight.shape[0]
    if indices.size and (indices.min() < 0 or indices.max() >= rows_count):
        raise IndexError(f"embedding_bag: an index is out of range for a weight of {rows_count} rows")
    bag_of = np.repeat(np.arange(len(starts)), ends - starts)
    keep = np.ones(indices.size, bool) if padding_idx is None else indices != padding_idx % rows_count
    kept = np.flatnonzero(keep)
    rows = weight.index_select(0, tensor(indices[kept], dtype=np.int64, device=weight.device))
    if per_sample_weights is not None:
        if per_sample_weights.shape != input.shape:
            raise ValueError(
                f"embedding_bag: per_sample_weights must have input's shape {input.shape}, "
                f"got {per_sample_weights.shape}"
            )
        rows = rows * per_sample_weights.reshape(-1)[tensor(kept, dtype=np.int64)].unsqueeze(1)
    if mode == "max":
        counts = np.bincount(bag_of[kept], minlength=len(starts))
        ends_kept = np.cumsum(counts)
        return BagMax.apply(rows, ends_kept - counts, ends_kept)
    bags = zeros((len(starts), weight.shape[1]), dtype=weight.dtype, device=weight.device)
    out = bags.index_add(0, tensor(bag_of[kept], dtype=np.int64), rows)
    if mode == "sum":
        return out
    counts = np.maximum(np.bincount(bag_of[kept], minlength=len(starts)), 1).astype(weight.dtype)
    return out / tensor(counts, dtype=weight.dtype, device=weight.device).unsqueeze(1)
