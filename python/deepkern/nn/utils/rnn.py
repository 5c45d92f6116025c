"""Variable-length batches for the recurrent layers (``torch.nn.utils.rnn``).

A :class:`PackedSequence` holds a batch of sequences of different lengths without padding: ``data``
(N, *) is every sequence's step 0, then every step 1, ..., the batch sorted by decreasing length,
so step t has ``batch_sizes[t]`` rows (N is their sum). ``sorted_indices[j]`` is the batch column of
sorted row j, ``unsorted_indices`` its inverse (both None when the batch came sorted). ``LSTM``,
``GRU`` and ``RNN`` take one and return one; their kernels compute only the steps that exist. Every
function here is differentiable; lengths and batch sizes are host (CPU) integers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...autograd import Function
from ...backends import backend_of
from ...ops._validate import bfloat16_dtype
from ...tensor import Tensor, float32, float64, int32, int64, tensor
from ...tensor_ops import Cat, LinearBackward

__all__ = [
    "PackedSequence",
    "pack_padded_sequence",
    "pack_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "unpack_sequence",
    "unpad_sequence",
]


class _Fields(NamedTuple):
    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None
    unsorted_indices: Tensor | None


class PackedSequence(_Fields):
    """A packed batch (torch.nn.utils.rnn.PackedSequence): a named tuple (data, batch_sizes,
    sorted_indices, unsorted_indices); see the module's docstring. ``unsorted_indices`` is computed
    from ``sorted_indices`` when omitted. Build one with :func:`pack_padded_sequence` or
    :func:`pack_sequence` rather than by hand."""

    __slots__ = ()

    def __new__(cls, data, batch_sizes, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None and sorted_indices is not None:
            unsorted_indices = tensor(np.argsort(_ints(sorted_indices), kind="stable"))
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def to(self, *args, **kwargs) -> PackedSequence:
        """``data.to(*args, **kwargs)``, the indices moved to its device (batch_sizes stays on the
        host); this sequence itself when data does not change, as PyTorch's."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        indices = (None if i is None else i.to(data.device) for i in (self.sorted_indices, self.unsorted_indices))
        return type(self)(data, self.batch_sizes, *indices)

    def cpu(self) -> PackedSequence:
        return self.to("cpu")

    def cuda(self, *args, **kwargs) -> PackedSequence:
        return self.to(self.data.cuda(*args, **kwargs).device)

    def double(self) -> PackedSequence:
        return self.to(dtype=float64)

    def float(self) -> PackedSequence:
        return self.to(dtype=float32)

    def bfloat16(self) -> PackedSequence:
        return self.to(dtype=bfloat16_dtype())

    def long(self) -> PackedSequence:
        return self.to(dtype=int64)

    def int(self) -> PackedSequence:
        return self.to(dtype=int32)

    def pin_memory(self) -> PackedSequence:
        return type(self)(self.data.pin_memory(), self.batch_sizes, self.sorted_indices, self.unsorted_indices)

    def is_pinned(self) -> bool:
        return self.data.is_pinned()

    @property
    def is_cuda(self) -> bool:
        return self.data.device.type == "cuda"


def _ints(value) -> np.ndarray:
    """An index or size argument (a Tensor, an array or a list) as a host int64 array."""
    return np.asarray(value._array if isinstance(value, Tensor) else value, dtype=np.int64)


def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor._wrap(x)


class _Take(Function):
    """Rows ``index`` (distinct) of ``a`` along axis 0; backward puts the gradient back (zeros elsewhere)."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.meta = (a.shape[0], index)
        return a[index]

    @staticmethod
    def backward(ctx, g):
        rows, index = ctx.meta
        return _put_rows(g, index, rows, 0), None

    @staticmethod
    def backward_graph(ctx, io, g):
        rows, index = ctx.meta
        return LinearBackward.apply(g, lambda a: _put_rows(a, index, rows, 0), lambda a: a[index]), None


class _Place(Function):
    """``a``'s rows placed at rows ``index`` (distinct) of a new array of ``rows`` rows filled with
    ``value``; backward takes their gradient back."""

    @staticmethod
    def forward(ctx, a, index, rows, value):
        ctx.index = index
        return _put_rows(a, index, rows, value)

    @staticmethod
    def backward(ctx, g):
        return g[ctx.index], None, None, None

    @staticmethod
    def backward_graph(ctx, io, g):
        index, rows = ctx.index, g.shape[0]
        return LinearBackward.apply(g, lambda a: a[index], lambda a: _put_rows(a, index, rows, 0)), None, None, None


def _put_rows(a, index, rows: int, value):
    """A new array of ``rows`` rows filled with ``value`` holding ``a``'s rows at rows ``index``: _Take's
    backward and _Place's forward (with value 0, each one's transpose is the other's row gather)."""
    out = backend_of(a, op="PackedSequence").full((rows,) + a.shape[1:], value, a.dtype)
    out[index] = a
    return out


def _padded_rows(batch_sizes: np.ndarray, columns: np.ndarray, steps: int, batch_first: bool) -> np.ndarray:
    """For each packed row (step t, sorted row j, in packed order), its row in a padded array of
    ``steps`` steps and len(columns) columns viewed as (steps * B, ...) ((B * steps, ...) when
    ``batch_first``); sorted row j is the padded array's column ``columns[j]``."""
    batch = len(columns)
    t, j = np.nonzero(np.arange(batch)[None, :] < batch_sizes[:, None])  # row-major: the packed order
    col = columns[j]
    return col * steps + t if batch_first else t * batch + col


def _to_padded(data: Tensor, batch_sizes: np.ndarray) -> Tensor:
    """Packed ``data`` (N, F) as a zero-padded (T, B, F) Tensor in sorted order (the recurrent
    layers' input; differentiable)."""
    steps, batch = len(batch_sizes), int(batch_sizes[0])
    rows = _padded_rows(batch_sizes, np.arange(batch), steps, False)
    return _Place.apply(data, rows, steps * batch, 0.0).reshape(steps, batch, data.shape[1])


def _to_packed(padded: Tensor, batch_sizes: np.ndarray) -> Tensor:
    """The inverse of :func:`_to_padded`: the running rows of ``padded`` (T, B, F) as (N, F)."""
    steps, batch, features = padded.shape
    rows = _padded_rows(batch_sizes, np.arange(batch), steps, False)
    return _Take.apply(padded.reshape(steps * batch, features), rows)


def _lengths(op: str, lengths) -> np.ndarray:
    """``lengths`` (a 1-D CPU Tensor, array or list of whole numbers: PyTorch takes floats such as a
    float mask's sums, 3.0) as an int64 host array; a fractional length is refused (PyTorch would
    truncate it)."""
    if isinstance(lengths, Tensor) and lengths.device.type != "cpu":
        raise ValueError(
            f"{op}: lengths must be a 1-D CPU int64 tensor or a list of ints, got a tensor on {lengths.device}"
        )
    raw = lengths._array if isinstance(lengths, Tensor) else np.asarray(lengths)
    if raw.dtype.kind == "f" or raw.dtype.name == "bfloat16":
        wrong = ~np.isfinite(raw) | (raw != np.round(raw))
        if wrong.any():
            bad = int(np.argmax(wrong))
            raise ValueError(f"{op}: lengths must be whole numbers, got lengths[{bad}] = {raw[bad]}")
    elif raw.dtype.kind not in "iu" and raw.size:
        raise TypeError(f"{op}: lengths must hold integers, got dtype {raw.dtype}")
    if raw.ndim != 1:
        raise ValueError(f"{op}: lengths must be 1-D, got shape {raw.shape}")
    return raw.astype(np.int64)


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Tensors (L_i, *) stacked into one (T, B, *) Tensor ((B, T, *) when ``batch_first``), T the
    longest L_i, each padded with ``padding_value`` after its end (``padding_side="left"``: before
    its start)."""
    op = "pad_sequence"
    if padding_side not in ("left", "right"):
        raise ValueError(f"{op}: padding_side must be 'left' or 'right', got {padding_side!r}")
    seqs = [_as_tensor(s) for s in sequences]
    if not seqs:
        raise ValueError(f"{op}: sequences is empty; pass at least one tensor")
    first = seqs[0]
    for i, s in enumerate(seqs):
        if s.ndim < 1 or s.shape[1:] != first.shape[1:] or s.dtype != first.dtype:
            raise ValueError(
                f"{op}: every sequence must have shape (L, *rest) with the rest and the dtype of sequences[0] "
                f"{tuple(first.shape)} {first.dtype}; sequences[{i}] has {tuple(s.shape)} {s.dtype}"
            )
    lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    steps, batch = int(lengths.max()), len(seqs)
    t = np.concatenate([np.arange(n) for n in lengths])
    col = np.repeat(np.arange(batch), lengths)
    if padding_side == "left":
        t = t + (steps - lengths)[col]
    rows = col * steps + t if batch_first else t * batch + col
    joined = seqs[0] if batch == 1 else Cat.apply(*seqs, dim=0)
    out = _Place.apply(joined, rows, steps * batch, padding_value)
    return out.reshape(*((batch, steps) if batch_first else (steps, batch)), *first.shape[1:])


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """A :class:`PackedSequence` of the padded batch ``input`` (T, B, *) ((B, T, *) when
    ``batch_first``) whose column b holds a sequence of ``lengths[b]`` steps (a 1-D CPU integer
    tensor or a list; each >= 1 and <= T). ``enforce_sorted``: the lengths must be in decreasing
    order; otherwise the batch is sorted and the indices kept to restore its order."""
    op = "pack_padded_sequence"
    x = _as_tensor(input)
    lengths = _lengths(op, lengths)
    if x.ndim < 2:
        raise ValueError(f"{op}: input must have at least 2 dimensions (T, B, *), got shape {tuple(x.shape)}")
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
    if len(lengths) != batch:
        raise ValueError(
            f"{op}: len(lengths) = {len(lengths)} must equal the batch size {batch} of input {tuple(x.shape)}"
        )
    if batch == 0:
        raise ValueError(f"{op}: input {tuple(x.shape)} has an empty batch; there is nothing to pack")
    if lengths.min() <= 0:
        bad = int(np.argmin(lengths))
        raise ValueError(
            f"{op}: every length must be >= 1, got lengths[{bad}] = {lengths[bad]} (lengths {lengths.tolist()})"
        )
    if lengths.max() > steps:
        bad = int(np.argmax(lengths))
        raise ValueError(
            f"{op}: lengths[{bad}] = {lengths[bad]} exceeds the {steps} steps of input {tuple(x.shape)} "
            f"(batch_first={batch_first})"
        )
    if enforce_sorted:
        if (np.diff(lengths) > 0).any():
            raise ValueError(
                f"{op}: lengths must be in decreasing order when enforce_sorted=True, got {lengths.tolist()}; "
                "pass enforce_sorted=False to sort the batch"
            )
        order, sorted_indices = np.arange(batch), None
    else:
        order = np.argsort(-lengths, kind="stable")
        sorted_indices = tensor(order)
    batch_sizes = (lengths[order][None, :] > np.arange(int(lengths.max()))[:, None]).sum(axis=1)
    rows = _padded_rows(batch_sizes, order, steps, batch_first)
    data = _Take.apply(x.reshape(steps * batch, *x.shape[2:]), rows)
    return PackedSequence(data, tensor(batch_sizes.astype(np.int64)), sorted_indices)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """The inverse of :func:`pack_padded_sequence`: ``(padded, lengths)``, ``padded`` (T, B, *)
    ((B, T, *) when ``batch_first``) in the original batch order with ``padding_value`` past each
    sequence's end, T the longest length or ``total_length`` (not less than it), and ``lengths``
    the int64 Tensor of the sequences' lengths."""
    op = "pad_packed_sequence"
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"{op}: sequence must be a PackedSequence, got {type(sequence).__name__}")
    data = _as_tensor(sequence.data)
    batch_sizes = _ints(sequence.batch_sizes)
    steps, batch = len(batch_sizes), int(batch_sizes[0]) if len(batch_sizes) else 0
    if total_length is not None:
        if int(total_length) < steps:
            raise ValueError(f"{op}: total_length = {total_length} is less than the longest sequence's length {steps}")
        steps = int(total_length)
    columns = np.arange(batch) if sequence.sorted_indices is None else _ints(sequence.sorted_indices)
    rows = _padded_rows(batch_sizes, columns, steps, batch_first)
    padded = _Place.apply(data, rows, steps * batch, padding_value)
    padded = padded.reshape(*((batch, steps) if batch_first else (steps, batch)), *data.shape[1:])
    lengths = (batch_sizes[None, :] > np.arange(batch)[:, None]).sum(axis=1)  # of the sorted rows
    if sequence.unsorted_indices is not None:
        lengths = lengths[_ints(sequence.unsorted_indices)]
    return padded, tensor(lengths.astype(np.int64))


def pack_sequence(sequences, enforce_sorted=True):
    """Tensors (L_i, *) packed into a :class:`PackedSequence` (each L_i >= 1; in decreasing order
    when ``enforce_sorted``)."""
    seqs = [_as_tensor(s) for s in sequences]
    padded = pad_sequence(seqs)  # checks the sequences
    return pack_padded_sequence(padded, [s.shape[0] for s in seqs], enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences, lengths, batch_first=False) -> list:
    """The sequences of a padded batch (the inverse of :func:`pad_sequence`): sequence i is the first
    ``lengths[i]`` steps of column i, (T, B, *) or with ``batch_first`` (B, T, *); copies, differentiable."""
    padded = _as_tensor(padded_sequences)
    steps = _lengths("unpad_sequence", lengths)
    columns = padded.shape[0] if batch_first else padded.shape[1] if padded.ndim > 1 else 0
    if len(steps) != columns or (len(steps) and steps.max() > padded.shape[1 if batch_first else 0]):
        raise ValueError(
            f"unpad_sequence: lengths {steps.tolist()} do not fit a padded batch of shape {tuple(padded.shape)} "
            f"(batch_first={batch_first})"
        )
    return [(padded[i, :n] if batch_first else padded[:n, i]).clone() for i, n in enumerate(steps.tolist())]


def unpack_sequence(packed_sequences: PackedSequence) -> list:
    """The sequences of a packed batch, in their original order (the inverse of :func:`pack_sequence`)."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
