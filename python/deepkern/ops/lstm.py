"""LSTM: the cell and one layer over a sequence, forward and backward (BPTT).

PyTorch's layout and gate order (i, f, g, o): ``w_ih`` (4H, I), ``w_hh`` (4H, H), ``b_ih`` and
``b_hh`` (4H,). The kernels (csrc/cpu/lstm) run the forward on one team of threads, each owning a
share of the hidden units: the input projection a chunk of steps at a time as one GEMM, then per
step one recurrent GEMM into the gates and one fused cell update, one barrier per step; backward
gets the weight and input gradients of all steps from single large GEMMs. Each thread keeps its
working memory (its packed share of the weights; backward's gate gradients) between calls, sized by
the largest layer run so far, so repeated calls do not fault fresh pages in. Multi-layer,
bidirectional and batch_first models compose these (reverse=True runs a sequence backwards in
time, as the reverse direction of a bidirectional layer).

Variable lengths: ``batch_sizes`` (T,) (integers; the first B, never increasing, each >= 1) says
how many rows of a batch sorted by decreasing length run at each step, as a PackedSequence's do.
Step t computes its first ``batch_sizes[t]`` rows only; a row keeps its states past its end (in y,
h_T, c_T and the cache), and in reverse it joins at its last step from h0/c0, so h_T and c_T hold
each sequence's own final states. x's entries past a sequence's end are never read by the forward
(backward multiplies them by zero gradients: keep them finite); their gradient is zero.

Any of T, B, I and H may be 0: the results have their shapes (empty where a size is 0); without a
step, a state or a batch row (T, H or B is 0) the final states are the initial ones and every
gradient but those of the initial states is zero.

dtypes: float32, float64, or bfloat16 (``deepkern.bfloat16``, CPU only) for all of x, the states,
the weights and the biases alike (mixing them is a TypeError). A bfloat16 layer runs its GEMMs on
the bfloat16 GEMM with float32 sums and keeps the gate math, the cell state and the weight and
state gradients in float32 until each output (y, h_T, c_T, every gradient) is rounded to bfloat16
once, like PyTorch's bfloat16 LSTM on the CPU; its caches' gates and cells are float32.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backends import backend_of
from .gemm import _as_operand as _layer_array


def _cache_dtype(dtype):
    """The dtype of the kernels' sums and of the caches' gates and cells: float32 for bfloat16."""
    return np.dtype(np.float32) if dtype.name == "bfloat16" else dtype


class LSTMCache(NamedTuple):
    """What :func:`lstm_backward` needs from the forward: the activated gates (T, B, 4H) and the
    cell and hidden states after each step (T, B, H), and the forward's batch_sizes (gates and
    cells are float32 for a bfloat16 layer). Keep it unchanged between the two calls."""

    gates: np.ndarray
    cells: np.ndarray
    hidden: np.ndarray
    reverse: bool
    batch_sizes: np.ndarray | None = None


def _arrays(op: str, x, h, c, w_ih, w_hh, b_ih, b_hh, *, sequence: bool, gates: int = 4):
    """Their backend, then the validated arrays of one float dtype, C-contiguous on it (the two
    biases separately), and H. The states are called h0/c0 for a sequence, h/c for a cell; the
    weights have ``gates`` gate blocks of H rows (the LSTM 4, the GRU 3, the RNN 1)."""
    x = _layer_array(x, "x", op)
    w_ih = _layer_array(w_ih, "w_ih", op)
    w_hh = _layer_array(w_hh, "w_hh", op)
    want = 3 if sequence else 2
    if x.ndim != want:
        layout = "(T, B, I)" if sequence else "(B, I)"
        raise ValueError(f"{op}: x must be {want}-D {layout}, got shape {x.shape}")
    rows = "H" if gates == 1 else f"{gates}H"
    if w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
        raise ValueError(f"{op}: w_hh must have shape ({rows}, H), got {w_hh.shape}")
    hidden = w_hh.shape[1]
    batch, inputs = x.shape[-2], x.shape[-1]
    if w_ih.shape != (gates * hidden, inputs):
        raise ValueError(
            f"{op}: w_ih must have shape ({rows}, I) = ({gates * hidden}, {inputs}) for x {x.shape} and w_hh "
            f"{w_hh.shape}, got {w_ih.shape}"
        )
    dtype = x.dtype
    named = {"w_ih": w_ih, "w_hh": w_hh}

    def optional(name, value, shape, layout):  # an optional input of a fixed shape, or None
        if value is None:
            return None
        value = _layer_array(value, name, op)
        if value.shape != shape:
            raise ValueError(f"{op}: {name} must have shape {layout} = {shape}, got {value.shape}")
        named[name] = value
        return value

    states = (("h0", h), ("c0", c)) if sequence else (("h", h), ("c", c))
    h, c = (optional(name, value, (batch, hidden), "(B, H)") for name, value in states)
    b_ih, b_hh = (
        optional(name, value, (gates * hidden,), f"({rows},)") for name, value in (("b_ih", b_ih), ("b_hh", b_hh))
    )
    for name, value in named.items():
        if value.dtype != dtype:
            raise TypeError(f"{op}: {name} has dtype {value.dtype} but x has {dtype}; use one dtype")
    backend = backend_of(x, h, c, w_ih, w_hh, b_ih, b_hh, op=op)
    if dtype.name == "bfloat16" and backend.name != "cpu":
        raise NotImplementedError(f"{op}: bfloat16 is not supported on {backend.name}")
    h, c, b_ih, b_hh = (None if v is None else backend.ascontiguousarray(v) for v in (h, c, b_ih, b_hh))
    return (
        backend,
        backend.ascontiguousarray(x),
        h,
        c,
        backend.ascontiguousarray(w_ih),
        backend.ascontiguousarray(w_hh),
        b_ih,
        b_hh,
        hidden,
    )


def _bias_sum(b_ih, b_hh):
    """The one bias of kernels that add both biases to the same sums: b_ih + b_hh (either may be None;
    bfloat16 ones are added in float32 and rounded once)."""
    if b_ih is None or b_hh is None:
        return b_hh if b_ih is None else b_ih
    if b_ih.dtype.name == "bfloat16":
        return (b_ih.astype(np.float32) + b_hh.astype(np.float32)).astype(b_ih.dtype)
    return b_ih + b_hh


def _batch_sizes(op: str, batch_sizes, x, backend) -> tuple:
    """``batch_sizes`` (see the module's docstring) checked against x (T, B, I), as the extra
    argument of the kernel entries: () for None, else (a C-contiguous int64 NumPy array,)."""
    if batch_sizes is None:
        return ()
    if backend.name != "cpu":
        raise NotImplementedError(f"{op}: batch_sizes (variable lengths) is not supported on {backend.name}")
    sizes = np.asarray(batch_sizes)
    if sizes.dtype.kind not in "iu":
        raise TypeError(f"{op}: batch_sizes must hold integers, got dtype {sizes.dtype}")
    steps, batch = x.shape[:2]
    if sizes.shape != (steps,):
        raise ValueError(f"{op}: batch_sizes must have shape (T,) = ({steps},) for x {x.shape}, got {sizes.shape}")
    if steps and (sizes[0] != batch or sizes.min() < 1 or (np.diff(sizes.astype(np.int64)) > 0).any()):
        raise ValueError(
            f"{op}: batch_sizes must start at B = {batch} for x {x.shape}, never increase and stay >= 1, "
            f"got {sizes.tolist()}"
        )
    return (np.array(sizes, dtype=np.int64, order="C"),)  # a copy: aligned, native byte order


def lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, reverse=False, return_cache=False, batch_sizes=None):
    """One LSTM layer over ``x`` (T, B, I) from states ``h0``, ``c0`` (B, H; None: zeros).

    Returns ``(y, h_T, c_T)``: ``y`` (T, B, H) is the hidden state after each step, ``h_T`` and
    ``c_T`` the states after the last step processed (step 0 when ``reverse``). With
    ``return_cache=True`` also returns the :class:`LSTMCache` that :func:`lstm_backward` needs.
    ``batch_sizes``: variable lengths (see the module's docstring).
    """
    backend, x, h0, c0, w_ih, w_hh, b_ih, b_hh, hidden = _arrays(
        "lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, sequence=True
    )
    packed = _batch_sizes("lstm", batch_sizes, x, backend)
    bias = _bias_sum(b_ih, b_hh)
    steps, batch, _ = x.shape
    dtype = x.dtype
    empty = backend.empty
    y = empty((steps, batch, hidden), dtype)
    h_last = empty((batch, hidden), dtype)
    c_last = empty((batch, hidden), dtype)
    cache, kept = None, (None, None, None)  # inference: the kernel keeps no per-step state beyond y
    if return_cache:
        cache = LSTMCache(
            empty((steps, batch, 4 * hidden), _cache_dtype(dtype)),
            empty((steps, batch, hidden), _cache_dtype(dtype)),
            empty((steps, batch, hidden), dtype),
            bool(reverse),
            *packed,
        )
        kept = cache[:3]
    backend.lstm_forward(x, h0, c0, w_ih, w_hh, bias, y, h_last, c_last, *kept, bool(reverse), *packed)
    return (y, h_last, c_last, cache) if return_cache else (y, h_last, c_last)


def lstm_backward(grad_y, grad_h_T, grad_c_T, x, h0, c0, w_ih, w_hh, cache: LSTMCache, *, reverse=False):
    """Backpropagation through time for :func:`lstm`.

    ``grad_y`` (T, B, H), ``grad_h_T`` and ``grad_c_T`` (B, H) are the gradients of the forward's
    outputs (None: zero); the forward's ``batch_sizes`` come with the cache. Returns ``(grad_x,
    grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)``; the two bias gradients are
    equal (each bias enters every gate sum once).
    """
    _, x, h0, c0, w_ih, w_hh, *_, hidden = _arrays("lstm_backward", x, h0, c0, w_ih, w_hh, None, None, sequence=True)
    steps, batch, inputs = x.shape
    dtype = x.dtype
    _check_cache("lstm_backward", cache, LSTMCache, "lstm", x, w_hh, reverse, gates=4, cells=1)
    packed = _batch_sizes("lstm_backward", cache.batch_sizes, x, backend_of(x, op="lstm_backward"))
    grads = _gradients(
        "lstm_backward",
        dtype,
        (
            ("grad_y", grad_y, (steps, batch, hidden)),
            ("grad_h_T", grad_h_T, (batch, hidden)),
            ("grad_c_T", grad_c_T, (batch, hidden)),
        ),
    )
    backend = backend_of(*grads, x, *cache[:3], op="lstm_backward")
    grad_y, grad_h_T, grad_c_T = (None if g is None else backend.ascontiguousarray(g) for g in grads)
    empty = backend.empty
    grad_x = empty((steps, batch, inputs), dtype)
    grad_h0 = empty((batch, hidden), dtype)
    grad_c0 = empty((batch, hidden), dtype)
    grad_w_ih = empty((4 * hidden, inputs), dtype)
    grad_w_hh = empty((4 * hidden, hidden), dtype)
    grad_b = empty(4 * hidden, dtype)
    backend.lstm_backward(
        grad_y,
        grad_h_T,
        grad_c_T,
        x,
        h0,
        c0,
        w_ih,
        w_hh,
        cache.gates,
        cache.cells,
        cache.hidden,
        grad_x,
        grad_h0,
        grad_c0,
        grad_w_ih,
        grad_w_hh,
        grad_b,
        bool(reverse),
        *packed,
    )
    return grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b, grad_b.copy()


def _check_cache(op: str, cache, kind, producer: str, x, w_hh, reverse, **blocks) -> None:
    """Checks that ``cache`` is a ``kind`` from ``producer`` (..., return_cache=True) for x, w_hh
    and ``reverse``: each field named in ``blocks`` a (T, B, blocks * H) array of the cache dtype
    (x's, or float32 for bfloat16), and ``hidden`` (T, B, H) of x's dtype."""
    steps, batch, _ = x.shape
    hidden = w_hh.shape[1]
    if not isinstance(cache, kind):
        raise TypeError(
            f"{op}: cache must be the {kind.__name__} from {producer}(..., return_cache=True), "
            f"got {type(cache).__name__}"
        )
    for name, count in {**blocks, "hidden": 1}.items():
        held = getattr(cache, name)
        width = count * hidden
        dtype = x.dtype if name == "hidden" else _cache_dtype(x.dtype)
        layout = "(T, B, H)" if count == 1 else f"(T, B, {count}H)"
        want = f"{op}: cache.{name} must be a {dtype} array of shape {layout} = {(steps, batch, width)}"
        if not hasattr(held, "shape"):
            raise TypeError(f"{want}, got {type(held).__name__}")
        if held.shape != (steps, batch, width) or held.dtype != dtype:
            raise ValueError(f"{want} for x {x.shape} and w_hh {w_hh.shape}, got {held.shape} {held.dtype}")
        flags = getattr(held, "flags", None)  # the kernels read it as the forward wrote it
        if flags is not None and not (flags.c_contiguous and flags.aligned):
            raise ValueError(f"{want}, C-contiguous and aligned as {producer} made it; got a copy that is not")
    if bool(cache.reverse) != bool(reverse):
        raise ValueError(f"{op}: reverse={reverse} but the cache was made with reverse={cache.reverse}")


def _gradients(op: str, dtype, named) -> list:
    """The given gradients (``named``: (name, value or None, shape) triples) as float arrays of
    ``dtype`` and their shapes, None where None; errors name them."""
    grads = []
    for name, value, shape in named:
        if value is not None:
            value = _layer_array(value, name, op)
            if value.shape != shape:
                raise ValueError(f"{op}: {name} must have shape {shape}, got {value.shape}")
            if value.dtype != dtype:
                raise TypeError(f"{op}: {name} has dtype {value.dtype} but x has {dtype}")
        grads.append(value)
    return grads


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step (torch.nn.LSTMCell): x (B, I), h and c (B, H) -> (h_next, c_next)."""
    _, x, h, c, w_ih, w_hh, *_ = _arrays("lstm_cell", x, h, c, w_ih, w_hh, b_ih, b_hh, sequence=False)
    _, h_next, c_next = lstm(x[None], h, c, w_ih, w_hh, b_ih, b_hh)
    return h_next, c_next


def lstm_cell_backward(grad_h_next, grad_c_next, x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """Gradients of :func:`lstm_cell` given those of ``h_next`` and ``c_next`` (None: zero).

    Returns ``(grad_x, grad_h, grad_c, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)``; a bias
    gradient is None when that bias is None.
    """
    op = "lstm_cell_backward"
    _, x, h, c, w_ih, w_hh, *_, hidden = _arrays(op, x, h, c, w_ih, w_hh, b_ih, b_hh, sequence=False)
    shape = (x.shape[0], hidden)  # h_next's
    grad_h_next, grad_c_next = _gradients(
        op, x.dtype, (("grad_h_next", grad_h_next, shape), ("grad_c_next", grad_c_next, shape))
    )
    *_, cache = lstm(x[None], h, c, w_ih, w_hh, b_ih, b_hh, return_cache=True)
    gx, gh, gc, gwi, gwh, gbi, gbh = lstm_backward(None, grad_h_next, grad_c_next, x[None], h, c, w_ih, w_hh, cache)
    return (gx[0], gh, gc, gwi, gwh, None if b_ih is None else gbi, None if b_hh is None else gbh)
