"""Recurrent layers: ``LSTM``, ``GRU`` and ``RNN`` (num_layers, bidirectional, batch_first,
dropout; subclasses of ``RNNBase``) and ``LSTMCell``, ``GRUCell``, ``RNNCell`` (of ``RNNCellBase``),
with PyTorch's parameter names, shapes, initialisation, forward signatures and return values.

The heavy work is one autograd Function per layer and direction, whose forward is
``ops.lstm(..., return_cache=True)`` (``ops.gru``, ``ops.rnn``) and whose backward is
``ops.lstm_backward`` (``gru_backward``, ``rnn_backward``) with the saved cache (the C++ kernels:
all input projections as one GEMM, BPTT weight gradients as single GEMMs). Multi-layer,
bidirectional and batch_first models are composed from those: batch_first transposes once at
entry and once at exit, the two directions' outputs are concatenated once per layer, and the
final states are stacked once. A PackedSequence input is padded once at entry (in its sorted
order) and packed once at exit; the kernels take its batch sizes and compute only the steps that
exist, so each sequence's final states are its own.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings

import numpy as np

from .. import amp, ops
from ..autograd import Function, grad, written_since
from ..backends import backend_of
from ..random import get_generator
from ..tensor import Tensor, tensor
from ..tensor import zeros as tensor_zeros
from ..tensor_ops import Cat, Reshape, Stack
from ._inference import member
from ._layer import factory_kwargs
from .functional import dropout
from .module import Module, Parameter
from .utils.rnn import PackedSequence, _ints, _to_packed, _to_padded

__all__ = ["RNNBase", "RNNCellBase", "GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell"]


# ---------------------------------------------------------------------------------------------
# Functions (arrays in, arrays out)
# ---------------------------------------------------------------------------------------------


class _LSTMLayer(Function):
    """One layer, one direction: x (T, B, I), h0/c0 (B, H) or None -> (y (T, B, H), h_T, c_T);
    batch_sizes: variable lengths (ops.lstm's)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False, batch_sizes=None):
        packed = dict(reverse=reverse, batch_sizes=batch_sizes)
        if not any(ctx.needs_input_grad):  # inference: no cache to keep
            return ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, **packed)
        # batch_first's transposed view: copied once, for both passes
        x = backend_of(x, op="LSTM").ascontiguousarray(x)
        y, h_t, c_t, cache = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, return_cache=True, **packed)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, cache)
        ctx.biases, ctx.layer = (b_ih, b_hh), ("lstm", reverse, batch_sizes)
        return y, h_t, c_t

    @staticmethod
    def backward(ctx, grad_y, grad_h, grad_c):
        x, h0, c0, w_ih, w_hh, cache = ctx.saved_tensors
        return ops.lstm_backward(grad_y, grad_h, grad_c, x, h0, c0, w_ih, w_hh, cache, reverse=cache.reverse)

    @staticmethod
    def backward_graph(ctx, io, *grads):
        return _recomputed_gradient(ctx, io, grads)


class _Layer(Function):
    """One GRU or RNN layer, one direction: x (T, B, I), h0 (B, H) or None -> (y (T, B, H), h_T).
    ``mode``: "gru", "rnn_tanh" or "rnn_relu"; batch_sizes as _LSTMLayer's."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, mode="gru", reverse=False, batch_sizes=None):
        run = ops.gru if mode == "gru" else functools.partial(ops.rnn, nonlinearity=mode[4:])
        run = functools.partial(run, reverse=reverse, batch_sizes=batch_sizes)
        if not any(ctx.needs_input_grad):
            return run(x, h0, w_ih, w_hh, b_ih, b_hh)
        x = backend_of(x, op=mode.upper()).ascontiguousarray(x)
        y, h_t, cache = run(x, h0, w_ih, w_hh, b_ih, b_hh, return_cache=True)
        ctx.save_for_backward(x, h0, w_ih, w_hh, cache)
        ctx.biases, ctx.layer = (b_ih, b_hh), (mode, reverse, batch_sizes)
        return y, h_t

    @staticmethod
    def backward(ctx, grad_y, grad_h):
        x, h0, w_ih, w_hh, cache = ctx.saved_tensors
        run = ops.gru_backward if isinstance(cache, ops.GRUCache) else ops.rnn_backward
        return run(grad_y, grad_h, x, h0, w_ih, w_hh, cache, reverse=cache.reverse)

    @staticmethod
    def backward_graph(ctx, io, *grads):
        return _recomputed_gradient(ctx, io, grads)


class _LSTMCellStep(Function):
    """One step: x (B, I), h/c (B, H) or None -> (h', c'); the layer kernel with T = 1, so the
    backward reuses the forward's gates instead of recomputing them."""

    @staticmethod
    def forward(ctx, x, h, c, w_ih, w_hh, b_ih, b_hh):
        if not any(ctx.needs_input_grad):
            return ops.lstm(x[None], h, c, w_ih, w_hh, b_ih, b_hh)[1:]
        _, h_next, c_next, cache = ops.lstm(x[None], h, c, w_ih, w_hh, b_ih, b_hh, return_cache=True)
        ctx.save_for_backward(x, h, c, w_ih, w_hh, cache)
        ctx.biases, ctx.layer = (b_ih, b_hh), ("lstm", False, None)
        return h_next, c_next

    @staticmethod
    def backward(ctx, grad_h, grad_c):
        x, h, c, w_ih, w_hh, cache = ctx.saved_tensors
        gx, *rest = ops.lstm_backward(None, grad_h, grad_c, x[None], h, c, w_ih, w_hh, cache)
        return (gx[0], *rest)

    @staticmethod
    def backward_graph(ctx, io, grad_h, grad_c):
        return _recomputed_gradient(ctx, io, (grad_h, grad_c), step=True)


def _recomputed_gradient(ctx, io, grads, step=False):
    """backward_graph of the layer Functions above (create_graph=True): the node's forward recomputed
    as Tensor ops (:func:`_tensor_layer`, from its operands as Tensors of the graph) and differentiated
    with create_graph, so its gradients are differentiable in turn. ``step``: _LSTMCellStep's (x (B, I),
    outputs h', c'). Each input that needs a gradient enters through an identity (a reshape to its own
    shape), so that this inner pass stops there instead of running on into the graph before the node."""
    mode, reverse, batch_sizes = ctx.layer
    operands = ctx.saved_tensors[:-1] + ctx.biases  # the forward's positional arguments (no cache)
    for b in ctx.biases:
        if b is not None and written_since(b, ctx._saved_at):
            raise RuntimeError(
                f"create_graph=True: a bias of {ctx._function} (shape {tuple(b.shape)}) was modified by an inplace "
                "operation after the forward; its differentiable gradient would use the new values"
            )
    needed = [i for i, need in enumerate(ctx.needs_input_grad) if need]
    inputs = [io.input(i, value) for i, value in enumerate(operands)]
    for i in needed:
        inputs[i] = Reshape.apply(inputs[i], tuple(inputs[i].shape))
    x, states, weights = inputs[0], inputs[1:-4], inputs[-4:]
    outputs = _tensor_layer(mode, x.unsqueeze(0) if step else x, states, *weights, None, reverse, batch_sizes)
    pairs = [(o, g) for o, g in zip(outputs[1:] if step else outputs, grads) if o.requires_grad]
    found = grad(
        [o for o, _ in pairs], [inputs[i] for i in needed], [g for _, g in pairs], create_graph=True, allow_unused=True
    )
    result = [None] * len(operands)
    for i, g in zip(needed, found):
        result[i] = g
    return tuple(result)


class _Unbind(Function):
    """The slices of an array along axis 0, as one Function (one backward for all of them)."""

    @staticmethod
    def forward(ctx, a):
        return tuple(a)

    @staticmethod
    def backward(ctx, *grads):
        return np.stack(grads)

    @staticmethod
    def backward_graph(ctx, io, *grads):
        return Stack.apply(*grads, dim=0)


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor._wrap(x)


def _dtype_differs(t, dtype) -> bool:
    """Whether Tensor ``t`` has another dtype than the parameters' ``dtype`` while no autocast is on
    for its device (under autocast the layer's op gets its inputs and parameters in one dtype)."""
    return t.dtype != dtype and not amp.is_autocast_enabled(t.device.type)


def _uniform_parameter(shape, bound, dtype, device):
    """U(-bound, bound) values from deepkern's generator, as a Parameter on ``device``."""
    return Parameter(tensor(get_generator().uniform(-bound, bound, shape).astype(dtype), device=device))


#: RNNBase's modes: (gate blocks of H rows in each weight, the state names of hx).
_MODES = {"LSTM": (4, ("h_0", "c_0")), "GRU": (3, ("h_0",)), "RNN_TANH": (1, ("h_0",)), "RNN_RELU": (1, ("h_0",))}


class RNNBase(Module):
    """The multi-layer recurrent module of a ``mode`` ('LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU'), the
    base class of LSTM, GRU and RNN as in PyTorch: parameters, checks, and the
    layer/direction/dropout composition. A subclass gives ``_layer``."""

    def __init__(
        self,
        mode,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        proj_size=0,
        dtype=None,
        device=None,
    ):
        super().__init__()
        kind = type(self).__name__
        if mode not in _MODES:
            raise ValueError(f"{kind}: unrecognized RNN mode {mode!r}; expected one of {tuple(_MODES)}")
        self.mode = mode
        gates, self._states = _MODES[mode]
        for name, value, low in (
            ("input_size", input_size, 1),
            ("hidden_size", hidden_size, 1),
            ("num_layers", num_layers, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{kind}: {name} must be an int >= {low}, got {value!r}")
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size < 0:
            raise ValueError(
                f"{kind}: proj_size should be a positive integer or zero to disable projections, got {proj_size!r}"
            )
        if proj_size and mode != "LSTM":
            raise ValueError(f"{kind}: proj_size argument is only supported for LSTM, not RNN or GRU")
        if proj_size >= hidden_size:
            raise ValueError(
                f"{kind}: proj_size has to be smaller than hidden_size, got proj_size={proj_size} and "
                f"hidden_size={hidden_size}"
            )
        if not (isinstance(dropout, numbers.Real) and 0 <= dropout <= 1) or isinstance(dropout, bool):
            raise ValueError(f"{kind}: dropout must be a probability in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"{kind}: dropout={dropout} has no effect with num_layers=1 (it applies between layers)", stacklevel=3
            )
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), int(proj_size)
        dirs = 2 if bidirectional else 1
        factory = factory_kwargs(kind, dtype, device)
        bound = 1.0 / math.sqrt(hidden_size)
        rows, out = gates * self.hidden_size, self._output_size
        names = []
        for layer in range(self.num_layers):
            layer_in = self.input_size if layer == 0 else dirs * out
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                group = [f"weight_ih{sfx}", f"weight_hh{sfx}"] + ([f"bias_ih{sfx}", f"bias_hh{sfx}"] if bias else [])
                shapes = [(rows, layer_in), (rows, out)] + [(rows,), (rows,)] * bias
                if self.proj_size:
                    group.append(f"weight_hr{sfx}")
                    shapes.append((self.proj_size, self.hidden_size))
                for name, shape in zip(group, shapes):
                    self.register_parameter(name, _uniform_parameter(shape, bound, **factory))
                biases = tuple(group[2:4]) if bias else (None, None)
                names.append(tuple(group[:2]) + biases + ((group[-1],) if self.proj_size else ()))
        # per layer-direction: (w_ih, w_hh, b_ih, b_hh) parameter names, and w_hr's with a projection
        self._layer_names = names

    @property
    def _output_size(self) -> int:
        """The size of the hidden state h (and of each direction's output): proj_size, or hidden_size."""
        return self.proj_size or self.hidden_size

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for flag, default in (("bias", True), ("batch_first", False), ("dropout", 0), ("bidirectional", False)):
            if getattr(self, flag) != default:
                s += f", {flag}={getattr(self, flag)}"
        return s

    def flatten_parameters(self):
        """A no-op kept for code written for PyTorch (the kernels take each weight as it is)."""

    @property
    def all_weights(self) -> list:
        """The parameters per layer and direction, ``[weight_ih, weight_hh, bias_ih, bias_hh]`` (no
        biases with ``bias=False``), as PyTorch's."""
        return [[member(self, n) for n in names if n is not None] for names in self._layer_names]

    def _name(self):
        return f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size})"

    def _weights(self, index):
        return tuple(None if n is None else member(self, n) for n in self._layer_names[index])

    def _layer(self, x, states, weights, reverse, batch_sizes):
        """One layer and direction: x (T, B, I) Tensor, the initial states (Tensors or None) ->
        (y, *final states); batch_sizes (int64 (T,) or None): variable lengths."""
        raise NotImplementedError

    def _check(self, x, hx):
        """Validates input and the states of hx (a tuple of them); returns (unbatched, dtype)."""
        shape, size = tuple(x.shape), self.input_size
        batched = f"(B, T, {size})" if self.batch_first else f"(T, B, {size})"
        if x.ndim not in (2, 3) or shape[-1] != size:
            expected = (
                batched if x.ndim == 3 else f"(T, {size})" if x.ndim == 2 else f"{batched} or unbatched (T, {size})"
            )
            raise ValueError(f"{self._name()}: input has shape {shape}, expected {expected}")
        dtype = self._parameters[self._layer_names[0][0]].dtype
        if _dtype_differs(x, dtype):
            raise TypeError(
                f"{self._name()}: input has dtype {x.dtype} but the parameters have {dtype}; "
                "convert the input or the module (.float() / .double())"
            )
        unbatched = x.ndim == 2
        if shape[1 if self.batch_first and not unbatched else 0] == 0:  # as PyTorch, which raises
            raise ValueError(f"{self._name()}: input has shape {shape}, a sequence of length T = 0; T must be >= 1")
        self._check_states(hx, None if unbatched else shape[0 if self.batch_first else 1], shape, dtype)
        return unbatched

    def _check_states(self, hx, batch, shape, dtype):
        """Checks the states of hx (None: none given) against a batch of ``batch`` (None:
        unbatched) and the parameters' dtype; ``shape`` is the input's, for the messages."""
        if hx is None:
            return
        ld = self.num_layers * (2 if self.bidirectional else 1)
        for name, state in zip(self._states, hx):
            size = self.hidden_size if name == "c_0" else self._output_size
            want = (ld, size) if batch is None else (ld, batch, size)
            if tuple(np.shape(state)) != want:
                raise ValueError(
                    f"{self._name()}: {name} has shape {tuple(np.shape(state))}, expected {want} "
                    f"for input of shape {shape}"
                )
            if _dtype_differs(state, dtype):
                raise TypeError(f"{self._name()}: {name} has dtype {state.dtype} but the parameters have {dtype}")

    def _states_of(self, hx):
        """hx as a tuple of Tensors, one per name of _states (None stays None)."""
        if hx is None:
            return None
        if len(self._states) == 1:
            if isinstance(hx, (tuple, list)) or not hasattr(hx, "shape"):
                raise TypeError(f"{self._name()}: hx must be a tensor h_0, got {type(hx).__name__}")
            return (_as_tensor(hx),)
        if not (isinstance(hx, (tuple, list)) and len(hx) == len(self._states)):
            names = ", ".join(self._states)
            raise TypeError(f"{self._name()}: hx must be a tuple ({names}), got {type(hx).__name__}")
        return tuple(_as_tensor(s) for s in hx)

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        x = _as_tensor(input)
        hx = self._states_of(hx)
        unbatched = self._check(x, hx)
        if unbatched:
            x = x.unsqueeze(1)
            hx = None if hx is None else tuple(s.unsqueeze(1) for s in hx)
        elif self.batch_first:
            x = x.transpose(0, 1)
        x, states = self._run(x, hx)
        if unbatched:
            x, states = x.squeeze(1), [s.squeeze(1) for s in states]
        elif self.batch_first:
            x = x.transpose(0, 1)
        return x, (tuple(states) if len(states) > 1 else states[0])

    def _forward_packed(self, packed, hx):
        """forward of a PackedSequence: its output a PackedSequence of the same batch sizes and
        indices, hx and the final states in the original batch order."""
        data, batch_sizes = _as_tensor(packed.data), _ints(packed.batch_sizes)
        hx = self._states_of(hx)
        dtype = self._parameters[self._layer_names[0][0]].dtype
        if data.ndim != 2 or data.shape[1] != self.input_size or not len(batch_sizes):
            raise ValueError(
                f"{self._name()}: a PackedSequence's data must have shape (N, {self.input_size}) and it at least "
                f"one step, got data {tuple(data.shape)} and {len(batch_sizes)} batch sizes"
            )
        if _dtype_differs(data, dtype):
            raise TypeError(f"{self._name()}: input has dtype {data.dtype} but the parameters have {dtype}")
        self._check_states(hx, int(batch_sizes[0]), tuple(data.shape), dtype)
        if hx is not None and packed.sorted_indices is not None:
            hx = tuple(s.index_select(1, packed.sorted_indices) for s in hx)
        y, states = self._run(_to_padded(data, batch_sizes), hx, batch_sizes)
        if packed.unsorted_indices is not None:
            states = [s.index_select(1, packed.unsorted_indices) for s in states]
        data = _to_packed(y, batch_sizes)
        out = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        return out, (tuple(states) if len(states) > 1 else states[0])

    def _run(self, x, hx, batch_sizes=None):
        """The layers and directions over x (T, B, I) from hx (a (num_layers * D, B, H) Tensor per
        state, or None: zeros) -> (the last layer's output (T, B, D * H), [each final state])."""
        dirs = 2 if self.bidirectional else 1
        count = self.num_layers * dirs
        if hx is None:
            initial = [(None,) * count for _ in self._states]
        else:
            initial = [_Unbind.apply(s) for s in hx]
        finals = [[] for _ in self._states]
        drop = self.dropout > 0 and self.training
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                y, *last = self._layer(x, tuple(s[k] for s in initial), self._weights(k), d == 1, batch_sizes)
                outs.append(y)
                for final, state in zip(finals, last):
                    final.append(state)
            x = outs[0] if dirs == 1 else Cat.apply(*outs, dim=2)
            if drop and layer < self.num_layers - 1:
                x = dropout(x, self.dropout, training=True)
        return x, [Stack.apply(*final, dim=0) for final in finals]


class LSTM(RNNBase):
    """A multi-layer LSTM (torch.nn.LSTM).

    ``forward(input, hx=None)`` with ``input`` (T, B, input_size) — (B, T, input_size) when
    ``batch_first`` — or unbatched (T, input_size), and ``hx = (h_0, c_0)`` each
    (num_layers * D, B, hidden_size) (unbatched: (num_layers * D, hidden_size)), D = 2 when
    ``bidirectional``; zeros when omitted. Returns ``(output, (h_n, c_n))``: ``output`` holds the
    last layer's hidden state at every step, (T, B, D * hidden_size) (batch_first: (B, T, ...)),
    the directions concatenated; ``h_n`` and ``c_n`` the final states of every layer and direction.

    Parameters (PyTorch's names and layout, gates i, f, g, o): ``weight_ih_l{k}`` (4H, I or D*H),
    ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (4H,), with the suffix
    ``_reverse`` for the backward direction; all initialised U(-1/sqrt(H), 1/sqrt(H)) from
    deepkern's generator. ``dropout`` applies to the outputs of every layer but the last, in
    training mode only. ``proj_size`` P > 0 (PyTorch's projection): h is ``(o * tanh(c)) @
    weight_hr_l{k}^T`` with ``weight_hr_l{k}`` (P, H), so h_0/h_n and each direction's output have P
    features and ``weight_hh_l{k}`` is (4H, P); such a layer runs as Tensor ops step by step (the
    fused kernels have no projection).
    """

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)

    def _layer(self, x, states, weights, reverse, batch_sizes):
        if self.proj_size:
            return _tensor_layer("lstm", x, states, *weights, reverse, batch_sizes)
        return _LSTMLayer.apply(x, *states, *weights, reverse=reverse, batch_sizes=batch_sizes)


def _tensor_layer(mode, x, states, w_ih, w_hh, b_ih, b_hh, w_hr=None, reverse=False, batch_sizes=None):
    """One layer and direction of ``mode`` ("lstm", "gru", "rnn_tanh" or "rnn_relu") composed of Tensor
    ops step by step (their gradients), with PyTorch's formulas, gate order and bias placement: x (T, B,
    I), the initial states (h (B, P or H) and, for the LSTM, c (B, H); None: zeros) -> (y (T, B, P or H),
    *the final states). Runs the LSTM with a projection (``w_hr`` (P, H), which the fused kernels do not
    have: each step's hidden state is ``(o * tanh(c)) @ w_hr.T``, which the next step's recurrent product
    reads), and recomputes the kernels' layers for their create_graph gradients. With ``batch_sizes``
    step t advances its first rows only, the others keep their states (y is zero there), as the kernels do."""
    steps, batch = x.shape[:2]
    gates = {"lstm": 4, "gru": 3}.get(mode, 1)
    hidden = w_hh.shape[0] // gates
    size = hidden if w_hr is None else w_hr.shape[0]
    zeros = functools.partial(tensor_zeros, dtype=x.dtype, device=x.device)
    states = tuple(zeros((batch, size if k == 0 else hidden)) if s is None else s for k, s in enumerate(states))
    projected = x @ w_ih.t()
    if b_ih is not None:  # (both biases or neither) the GRU's b_hh enters each step: r scales its b_hn
        projected = projected + (b_ih if mode == "gru" else b_ih + b_hh)
    rows = [batch] * steps if batch_sizes is None else [int(b) for b in batch_sizes]
    outputs = [None] * steps
    for t in reversed(range(steps)) if reverse else range(steps):
        b = rows[t]
        h = states[0] if b == batch else states[0][:b]
        recurrent = h @ w_hh.t()
        if mode == "gru" and b_hh is not None:
            recurrent = recurrent + b_hh
        inputs = projected[t] if b == batch else projected[t, :b]
        if mode == "lstm":
            i, f, g, o = (inputs + recurrent).chunk(4, dim=1)
            c = f.sigmoid() * (states[1] if b == batch else states[1][:b]) + i.sigmoid() * g.tanh()
            h = o.sigmoid() * c.tanh()
            new = (h if w_hr is None else h @ w_hr.t(), c)
        elif mode == "gru":
            (x_r, x_z, x_n), (h_r, h_z, h_n) = inputs.chunk(3, dim=1), recurrent.chunk(3, dim=1)
            r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
            n = (x_n + r * h_n).tanh()
            new = ((1 - z) * n + z * h,)
        else:
            new = ((inputs + recurrent).tanh() if mode == "rnn_tanh" else (inputs + recurrent).relu(),)
        if b < batch:
            outputs[t] = Cat.apply(new[0], zeros((batch - b, size)), dim=0)
            states = tuple(Cat.apply(n, s[b:], dim=0) for n, s in zip(new, states))
        else:
            outputs[t], states = new[0], new
    return (Stack.apply(*outputs, dim=0), *states)


class GRU(RNNBase):
    """A multi-layer GRU (torch.nn.GRU): r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise,
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.

    ``forward(input, hx=None)`` as :class:`LSTM`'s, with ``hx`` the tensor h_0 (num_layers * D, B,
    hidden_size); returns ``(output, h_n)``. Parameters as LSTM's with 3H rows (gates r, z, n).
    """

    def __init__(self, *args, **kwargs):
        super().__init__("GRU", *args, **kwargs)

    def _layer(self, x, states, weights, reverse, batch_sizes):
        return _Layer.apply(x, *states, *weights, mode="gru", reverse=reverse, batch_sizes=batch_sizes)


def _nonlinearity(kind, value):
    if value not in ("tanh", "relu"):
        raise ValueError(f"{kind}: nonlinearity must be 'tanh' or 'relu', got {value!r}")
    return value


class RNN(RNNBase):
    """A multi-layer Elman RNN (torch.nn.RNN): h' = tanh (or relu, with ``nonlinearity="relu"``)
    of W_ih x + b_ih + W_hh h + b_hh. ``forward`` and parameters as :class:`GRU`'s, with H rows."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", *args, **kwargs):
        """torch.nn.RNN's signature: after nonlinearity, those of the base class from bias on."""
        checked = _nonlinearity("RNN", nonlinearity)
        super().__init__("RNN_" + checked.upper(), input_size, hidden_size, num_layers, *args, **kwargs)
        self.nonlinearity = checked

    def extra_repr(self):
        return super().extra_repr() + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")

    def _layer(self, x, states, weights, reverse, batch_sizes):
        mode = "rnn_" + self.nonlinearity
        return _Layer.apply(x, *states, *weights, mode=mode, reverse=reverse, batch_sizes=batch_sizes)


class RNNCellBase(Module):
    """The base class of the recurrent cells, as in PyTorch: one step of a cell of ``num_chunks``
    gates, ``forward(input, hx=None)`` with ``input`` (B, input_size) or unbatched (input_size,) and
    hx its states, each (B, hidden_size) (zeros when omitted). Parameters ``weight_ih``
    (num_chunks * H, I), ``weight_hh`` (num_chunks * H, H), ``bias_ih``, ``bias_hh`` (num_chunks * H,),
    initialised U(-1/sqrt(H), 1/sqrt(H)). As in PyTorch, B, input_size and hidden_size may be 0
    (empty results; the gradients of the parameters are then zeros). A subclass names ``_states``
    (("h", "c") or ("h",)) and ``_step``."""

    _states = ("h",)

    def __init__(self, input_size, hidden_size, bias, num_chunks, dtype=None, device=None):
        super().__init__()
        kind = type(self).__name__
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{kind}: {name} must be an int >= 0, got {value!r}")
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        factory = factory_kwargs(kind, dtype, device)
        bound = 1.0 / math.sqrt(hidden_size) if hidden_size else 0.0
        rows = num_chunks * self.hidden_size
        self.weight_ih = _uniform_parameter((rows, self.input_size), bound, **factory)
        self.weight_hh = _uniform_parameter((rows, self.hidden_size), bound, **factory)
        if bias:
            self.bias_ih = _uniform_parameter((rows,), bound, **factory)
            self.bias_hh = _uniform_parameter((rows,), bound, **factory)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _name(self):
        return f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size})"

    def _step(self, x, states):
        """x (B, I) Tensor, the states (Tensors or None) -> the next states."""
        raise NotImplementedError

    def forward(self, input, hx=None):
        x = _as_tensor(input)
        size, dtype = self.input_size, self.weight_ih.dtype
        if x.ndim not in (1, 2) or x.shape[-1] != size:
            raise ValueError(f"{self._name()}: input has shape {tuple(x.shape)}, expected (B, {size}) or ({size},)")
        if _dtype_differs(x, dtype):
            raise TypeError(
                f"{self._name()}: input has dtype {x.dtype} but the parameters have {dtype}; "
                "convert the input or the module (.float() / .double())"
            )
        unbatched = x.ndim == 1
        states = (None,) * len(self._states)
        if hx is not None:
            if len(self._states) == 1:
                if isinstance(hx, (tuple, list)) or not hasattr(hx, "shape"):
                    raise TypeError(f"{self._name()}: hx must be a tensor h, got {type(hx).__name__}")
                hx = (hx,)
            elif not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"{self._name()}: hx must be a tuple (h, c), got {type(hx).__name__}")
            states = tuple(_as_tensor(s) for s in hx)
            want = x.shape[:-1] + (self.hidden_size,)
            for name, state in zip(self._states, states):
                if tuple(state.shape) != want:
                    raise ValueError(
                        f"{self._name()}: {name} has shape {tuple(state.shape)}, expected {want} "
                        f"for input of shape {tuple(x.shape)}"
                    )
                if _dtype_differs(state, dtype):
                    raise TypeError(f"{self._name()}: {name} has dtype {state.dtype} but the parameters have {dtype}")
            if unbatched:
                states = tuple(s.unsqueeze(0) for s in states)
        if unbatched:
            x = x.unsqueeze(0)
        out = self._step(x, states)
        if unbatched:
            out = tuple(s.squeeze(0) for s in out)
        return out if len(out) > 1 else out[0]

    def _weights(self):
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh


class LSTMCell(RNNCellBase):
    """One LSTM step (torch.nn.LSTMCell): ``hx = (h, c)``; returns ``(h', c')``. Parameters of 4H
    rows (gates i, f, g, o); see the base class."""

    _states = ("h", "c")

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, device=None):
        super().__init__(input_size, hidden_size, bias, 4, dtype, device)

    def _step(self, x, states):
        return _LSTMCellStep.apply(x, *states, *self._weights())


class GRUCell(RNNCellBase):
    """One GRU step (torch.nn.GRUCell): ``hx`` the tensor h; returns h'. Parameters of 3H rows
    (gates r, z, n); see the base class."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, device=None):
        super().__init__(input_size, hidden_size, bias, 3, dtype, device)

    def _step(self, x, states):
        return _Layer.apply(x.unsqueeze(0), *states, *self._weights(), mode="gru")[1:]


class RNNCell(RNNCellBase):
    """One Elman RNN step (torch.nn.RNNCell), tanh or relu: ``hx`` the tensor h; returns h'.
    Parameters of H rows; see the base class."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=None, device=None):
        checked = _nonlinearity("RNNCell", nonlinearity)
        super().__init__(input_size, hidden_size, bias, 1, dtype, device)
        self.nonlinearity = checked

    def extra_repr(self):
        return super().extra_repr() + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")

    def _step(self, x, states):
        return _Layer.apply(x.unsqueeze(0), *states, *self._weights(), mode="rnn_" + self.nonlinearity)[1:]
