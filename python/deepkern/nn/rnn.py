"""Recurrent layers: ``LSTM`` (num_layers, bidirectional, batch_first, dropout) and ``LSTMCell``,
with PyTorch's parameter names, shapes, initialisation, forward signatures and return values.

The heavy work is one autograd Function per layer and direction, whose forward is
``ops.lstm(..., return_cache=True)`` and whose backward is ``ops.lstm_backward`` with the saved
cache (the C++ kernels: all input projections as one GEMM, BPTT weight gradients as single
GEMMs). Multi-layer, bidirectional and batch_first models are composed from those: batch_first
transposes once at entry and once at exit, the two directions' outputs are concatenated once
per layer, and the final states are stacked once.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import ops
from ..autograd import Function
from ..backends import backend_of
from ..random import get_generator
from ..tensor import Tensor, tensor
from ..tensor_ops import Cat, Stack
from ._layer import factory_kwargs
from .functional import dropout
from .module import Module, Parameter

__all__ = ["LSTM", "LSTMCell"]


# ---------------------------------------------------------------------------------------------
# Functions (arrays in, arrays out)
# ---------------------------------------------------------------------------------------------


class _LSTMLayer(Function):
    """One layer, one direction: x (T, B, I), h0/c0 (B, H) or None -> (y (T, B, H), h_T, c_T)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False):
        if not any(ctx.needs_input_grad):  # inference: no cache to keep
            return ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse)
        # batch_first's transposed view: copied once, for both passes
        x = backend_of(x, op="LSTM").ascontiguousarray(x)
        y, h_t, c_t, cache = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse, return_cache=True)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, cache)
        return y, h_t, c_t

    @staticmethod
    def backward(ctx, grad_y, grad_h, grad_c):
        x, h0, c0, w_ih, w_hh, cache = ctx.saved_tensors
        return ops.lstm_backward(grad_y, grad_h, grad_c, x, h0, c0, w_ih, w_hh, cache, reverse=cache.reverse)


class _LSTMCellStep(Function):
    """One step: x (B, I), h/c (B, H) or None -> (h', c'); the layer kernel with T = 1, so the
    backward reuses the forward's gates instead of recomputing them."""

    @staticmethod
    def forward(ctx, x, h, c, w_ih, w_hh, b_ih, b_hh):
        if not any(ctx.needs_input_grad):
            return ops.lstm(x[None], h, c, w_ih, w_hh, b_ih, b_hh)[1:]
        _, h_next, c_next, cache = ops.lstm(x[None], h, c, w_ih, w_hh, b_ih, b_hh, return_cache=True)
        ctx.save_for_backward(x, h, c, w_ih, w_hh, cache)
        return h_next, c_next

    @staticmethod
    def backward(ctx, grad_h, grad_c):
        x, h, c, w_ih, w_hh, cache = ctx.saved_tensors
        gx, *rest = ops.lstm_backward(None, grad_h, grad_c, x[None], h, c, w_ih, w_hh, cache)
        return (gx[0], *rest)


class _Unbind(Function):
    """The slices of an array along axis 0, as one Function (one backward for all of them)."""

    @staticmethod
    def forward(ctx, a):
        return tuple(a)

    @staticmethod
    def backward(ctx, *grads):
        return np.stack(grads)


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor._wrap(x)


def _uniform_parameter(shape, bound, dtype, device):
    """U(-bound, bound) values from deepkern's generator, as a Parameter on ``device``."""
    return Parameter(tensor(get_generator().uniform(-bound, bound, shape).astype(dtype), device=device))


class LSTM(Module):
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
    training mode only.
    """

    def __init__(
        self,
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
        for name, value, low in (
            ("input_size", input_size, 1),
            ("hidden_size", hidden_size, 1),
            ("num_layers", num_layers, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"LSTM: {name} must be an int >= {low}, got {value!r}")
        if not (isinstance(dropout, (int, float)) and 0 <= dropout <= 1) or isinstance(dropout, bool):
            raise ValueError(f"LSTM: dropout must be a probability in [0, 1], got {dropout!r}")
        if proj_size:
            raise NotImplementedError("LSTM: proj_size is not supported by deepkern's LSTM kernels")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"LSTM: dropout={dropout} has no effect with num_layers=1 (it applies between layers)", stacklevel=2
            )
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), 0
        dirs = 2 if bidirectional else 1
        factory = factory_kwargs("LSTM", dtype, device)
        bound = 1.0 / math.sqrt(hidden_size)
        h4 = 4 * self.hidden_size
        names = []
        for layer in range(self.num_layers):
            layer_in = self.input_size if layer == 0 else dirs * self.hidden_size
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                group = [f"weight_ih{sfx}", f"weight_hh{sfx}"] + ([f"bias_ih{sfx}", f"bias_hh{sfx}"] if bias else [])
                shapes = [(h4, layer_in), (h4, self.hidden_size), (h4,), (h4,)]
                for name, shape in zip(group, shapes):
                    self.register_parameter(name, _uniform_parameter(shape, bound, **factory))
                names.append(tuple(group) + (None, None) * (not bias))
        self._layer_names = names  # per layer-direction: (w_ih, w_hh, b_ih, b_hh) parameter names

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for flag, default in (("bias", True), ("batch_first", False), ("bidirectional", False)):
            if getattr(self, flag) != default:
                s += f", {flag}={getattr(self, flag)}"
        return s + (f", dropout={self.dropout}" if self.dropout else "")

    def flatten_parameters(self):
        """A no-op kept for code written for torch.nn.LSTM (the kernels take each weight as it is)."""

    def _name(self):
        return f"LSTM(input_size={self.input_size}, hidden_size={self.hidden_size})"

    def _weights(self, index):
        params = self._parameters
        return tuple(None if n is None else params[n] for n in self._layer_names[index])

    def _check(self, x, hx):
        """Validates input and states; returns (unbatched, dtype)."""
        shape, size = tuple(x.shape), self.input_size
        batched = f"(B, T, {size})" if self.batch_first else f"(T, B, {size})"
        if x.ndim not in (2, 3) or shape[-1] != size:
            expected = (
                batched if x.ndim == 3 else f"(T, {size})" if x.ndim == 2 else f"{batched} or unbatched (T, {size})"
            )
            raise ValueError(f"{self._name()}: input has shape {shape}, expected {expected}")
        dtype = self._parameters[self._layer_names[0][0]].dtype
        if x.dtype != dtype:
            raise TypeError(
                f"{self._name()}: input has dtype {x.dtype} but the parameters have {dtype}; "
                "convert the input or the module (.float() / .double())"
            )
        unbatched = x.ndim == 2
        if shape[1 if self.batch_first and not unbatched else 0] == 0:  # as torch.nn.LSTM, which raises
            raise ValueError(f"{self._name()}: input has shape {shape}, a sequence of length T = 0; T must be >= 1")
        if hx is None:
            return unbatched
        if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(f"{self._name()}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        dirs = 2 if self.bidirectional else 1
        ld, batch = self.num_layers * dirs, shape[0 if self.batch_first else 1]
        want = (ld, self.hidden_size) if unbatched else (ld, batch, self.hidden_size)
        for name, state in zip(("h_0", "c_0"), hx):
            if tuple(np.shape(state)) != want:
                raise ValueError(
                    f"{self._name()}: {name} has shape {tuple(np.shape(state))}, expected {want} "
                    f"for input of shape {shape}"
                )
            if state.dtype != dtype:
                raise TypeError(f"{self._name()}: {name} has dtype {state.dtype} but the parameters have {dtype}")
        return unbatched

    def forward(self, input, hx=None):
        x = _as_tensor(input)
        if hx is not None and isinstance(hx, (tuple, list)):
            hx = tuple(_as_tensor(s) for s in hx)
        unbatched = self._check(x, hx)
        if unbatched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        dirs = 2 if self.bidirectional else 1
        count = self.num_layers * dirs
        if hx is None:
            h0s = c0s = (None,) * count
        else:
            h0, c0 = hx
            if unbatched:
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
            h0s, c0s = _Unbind.apply(h0), _Unbind.apply(c0)
        h_n, c_n = [], []
        drop = self.dropout > 0 and self.training
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                y, h, c = _LSTMLayer.apply(x, h0s[k], c0s[k], *self._weights(k), reverse=d == 1)
                outs.append(y)
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if dirs == 1 else Cat.apply(*outs, dim=2)
            if drop and layer < self.num_layers - 1:
                x = dropout(x, self.dropout, training=True)
        h_n, c_n = Stack.apply(*h_n, dim=0), Stack.apply(*c_n, dim=0)
        if unbatched:
            return x.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        if self.batch_first:
            x = x.transpose(0, 1)
        return x, (h_n, c_n)


class LSTMCell(Module):
    """One LSTM step (torch.nn.LSTMCell): ``forward(input, hx=None)`` with ``input`` (B, input_size)
    or unbatched (input_size,) and ``hx = (h, c)`` each (B, hidden_size) (zeros when omitted);
    returns ``(h', c')``. Parameters ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``,
    ``bias_hh`` (4H,), initialised U(-1/sqrt(H), 1/sqrt(H)). As in PyTorch, B, input_size and
    hidden_size may be 0 (empty results; the gradients of the parameters are then zeros)."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, device=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"LSTMCell: {name} must be an int >= 0, got {value!r}")
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        factory = factory_kwargs("LSTMCell", dtype, device)
        bound = 1.0 / math.sqrt(hidden_size) if hidden_size else 0.0
        h4 = 4 * self.hidden_size
        self.weight_ih = _uniform_parameter((h4, self.input_size), bound, **factory)
        self.weight_hh = _uniform_parameter((h4, self.hidden_size), bound, **factory)
        if bias:
            self.bias_ih = _uniform_parameter((h4,), bound, **factory)
            self.bias_hh = _uniform_parameter((h4,), bound, **factory)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _name(self):
        return f"LSTMCell(input_size={self.input_size}, hidden_size={self.hidden_size})"

    def forward(self, input, hx=None):
        x = _as_tensor(input)
        size, dtype = self.input_size, self.weight_ih.dtype
        if x.ndim not in (1, 2) or x.shape[-1] != size:
            raise ValueError(f"{self._name()}: input has shape {tuple(x.shape)}, expected (B, {size}) or ({size},)")
        if x.dtype != dtype:
            raise TypeError(
                f"{self._name()}: input has dtype {x.dtype} but the parameters have {dtype}; "
                "convert the input or the module (.float() / .double())"
            )
        unbatched = x.ndim == 1
        h = c = None
        if hx is not None:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"{self._name()}: hx must be a tuple (h, c), got {type(hx).__name__}")
            h, c = (_as_tensor(s) for s in hx)
            want = x.shape[:-1] + (self.hidden_size,)
            for name, state in (("h", h), ("c", c)):
                if tuple(state.shape) != want:
                    raise ValueError(
                        f"{self._name()}: {name} has shape {tuple(state.shape)}, expected {want} "
                        f"for input of shape {tuple(x.shape)}"
                    )
                if state.dtype != dtype:
                    raise TypeError(f"{self._name()}: {name} has dtype {state.dtype} but the parameters have {dtype}")
            if unbatched:
                h, c = h.unsqueeze(0), c.unsqueeze(0)
        if unbatched:
            x = x.unsqueeze(0)
        h_next, c_next = _LSTMCellStep.apply(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        if unbatched:
            return h_next.squeeze(0), c_next.squeeze(0)
        return h_next, c_next
