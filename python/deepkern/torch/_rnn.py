"""LSTM and GRU layers as custom operators (one layer, one direction each: deepkern::lstm_layer,
deepkern::gru_layer and their backward operators), the multi-layer / bidirectional composition of
``torch._VF.lstm``/``gru``, and the modules LSTM and GRU."""

from __future__ import annotations

from typing import Optional

import torch

from .. import ops
from ._ops import as_numpy, check_tensor, from_numpy, shape_text

Tensor = torch.Tensor


def _empties(x: Tensor, count: int) -> tuple:
    """``count`` distinct empty (0,) tensors: the cache outputs of a layer run without one."""
    return tuple(x.new_empty(0) for _ in range(count))


def _layer_shapes(x: Tensor, w_hh: Tensor) -> tuple:
    """(T, B, H) of a layer's sequence x (T, B, I) and recurrent weight w_hh (G*H, H)."""
    if x.dim() != 3 or w_hh.dim() != 2:
        raise ValueError(
            f"deepkern: a layer's x must be (T, B, I) and w_hh (G*H, H), got {shape_text(x)} and {shape_text(w_hh)}"
        )
    return x.shape[0], x.shape[1], w_hh.shape[1]


# ---- LSTM layer ---------------------------------------------------------------------------------


@torch.library.custom_op("deepkern::lstm_layer", mutates_args=())
def _lstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor],
    b_hh: Optional[Tensor],
    reverse: bool,
    need_cache: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """deepkern.ops.lstm: (y, h_T, c_T, gates, cells, hidden); the last three (what the backward
    reads) are empty (0,) when ``need_cache`` is false."""
    arrays = (as_numpy(t, "lstm_layer") for t in (x, h0, c0, w_ih, w_hh, b_ih, b_hh))
    out = ops.lstm(*arrays, reverse=reverse, return_cache=need_cache)
    cache = tuple(from_numpy(a) for a in out[3][:3]) if need_cache else _empties(x, 3)
    return (*(from_numpy(a) for a in out[:3]), *cache)


@_lstm_layer.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, need_cache):
    steps, batch, hidden = _layer_shapes(x, w_hh)
    states = (x.new_empty(steps, batch, hidden), x.new_empty(batch, hidden), x.new_empty(batch, hidden))
    if not need_cache:
        return (*states, *_empties(x, 3))
    cache = (
        x.new_empty(steps, batch, 4 * hidden),
        x.new_empty(steps, batch, hidden),
        x.new_empty(steps, batch, hidden),
    )
    return (*states, *cache)


@torch.library.custom_op("deepkern::lstm_layer_backward", mutates_args=())
def _lstm_layer_backward(
    grad_y: Optional[Tensor],
    grad_h: Optional[Tensor],
    grad_c: Optional[Tensor],
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    gates: Tensor,
    cells: Tensor,
    hidden: Tensor,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """deepkern.ops.lstm_backward: gradients of x, h0, c0, w_ih, w_hh, b_ih, b_hh (None grads: zero)."""
    op = "lstm_layer_backward"
    grads = (as_numpy(t, op) for t in (grad_y, grad_h, grad_c, x, h0, c0, w_ih, w_hh))
    cache = ops.LSTMCache(*(as_numpy(t, op) for t in (gates, cells, hidden)), reverse)
    return tuple(from_numpy(g) for g in ops.lstm_backward(*grads, cache, reverse=reverse))


@_lstm_layer_backward.register_fake
def _(grad_y, grad_h, grad_c, x, h0, c0, w_ih, w_hh, gates, cells, hidden, reverse):
    bias = (w_hh.shape[0],)
    return tuple(t.new_empty(t.shape) for t in (x, h0, c0, w_ih, w_hh)) + (x.new_empty(bias), x.new_empty(bias))


def _lstm_setup(ctx, inputs, output):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, need_cache = inputs
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, *output[3:])
    ctx.mark_non_differentiable(*output[3:])
    ctx.reverse, ctx.need_cache = reverse, need_cache


def _no_cache(op: str) -> RuntimeError:
    return RuntimeError(
        f"deepkern::{op} ran with need_cache=False, so it kept nothing to differentiate; call it with "
        f"need_cache=True (deepkern.torch.{op.split('_')[0]} does when an input requires grad)"
    )


def _lstm_grad(ctx, grad_y, grad_h, grad_c, *cache_grads):
    if not ctx.need_cache:
        raise _no_cache("lstm_layer")
    grads = _lstm_layer_backward(grad_y, grad_h, grad_c, *ctx.saved_tensors, ctx.reverse)
    return (*(g if n else None for g, n in zip(grads, ctx.needs_input_grad)), None, None)


_lstm_layer.register_autograd(_lstm_grad, setup_context=_lstm_setup)


# ---- GRU layer ----------------------------------------------------------------------------------


@torch.library.custom_op("deepkern::gru_layer", mutates_args=())
def _gru_layer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor],
    b_hh: Optional[Tensor],
    reverse: bool,
    need_cache: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """deepkern.ops.gru: (y, h_T, gates, hidden); the last two empty (0,) without ``need_cache``."""
    arrays = (as_numpy(t, "gru_layer") for t in (x, h0, w_ih, w_hh, b_ih, b_hh))
    out = ops.gru(*arrays, reverse=reverse, return_cache=need_cache)
    cache = tuple(from_numpy(a) for a in out[2][:2]) if need_cache else _empties(x, 2)
    return (*(from_numpy(a) for a in out[:2]), *cache)


@_gru_layer.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, need_cache):
    steps, batch, hidden = _layer_shapes(x, w_hh)
    states = (x.new_empty(steps, batch, hidden), x.new_empty(batch, hidden))
    if not need_cache:
        return (*states, *_empties(x, 2))
    return (*states, x.new_empty(steps, batch, 4 * hidden), x.new_empty(steps, batch, hidden))


@torch.library.custom_op("deepkern::gru_layer_backward", mutates_args=())
def _gru_layer_backward(
    grad_y: Optional[Tensor],
    grad_h: Optional[Tensor],
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    gates: Tensor,
    hidden: Tensor,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """deepkern.ops.gru_backward: gradients of x, h0, w_ih, w_hh, b_ih, b_hh (None grads: zero)."""
    op = "gru_layer_backward"
    grads = (as_numpy(t, op) for t in (grad_y, grad_h, x, h0, w_ih, w_hh))
    cache = ops.GRUCache(as_numpy(gates, op), as_numpy(hidden, op), reverse)
    return tuple(from_numpy(g) for g in ops.gru_backward(*grads, cache, reverse=reverse))


@_gru_layer_backward.register_fake
def _(grad_y, grad_h, x, h0, w_ih, w_hh, gates, hidden, reverse):
    bias = (w_hh.shape[0],)
    return tuple(t.new_empty(t.shape) for t in (x, h0, w_ih, w_hh)) + (x.new_empty(bias), x.new_empty(bias))


def _gru_setup(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, reverse, need_cache = inputs
    ctx.save_for_backward(x, h0, w_ih, w_hh, *output[2:])
    ctx.mark_non_differentiable(*output[2:])
    ctx.reverse, ctx.need_cache = reverse, need_cache


def _gru_grad(ctx, grad_y, grad_h, *cache_grads):
    if not ctx.need_cache:
        raise _no_cache("gru_layer")
    grads = _gru_layer_backward(grad_y, grad_h, *ctx.saved_tensors, ctx.reverse)
    return (*(g if n else None for g, n in zip(grads, ctx.needs_input_grad)), None, None)


_gru_layer.register_autograd(_gru_grad, setup_context=_gru_setup)


# ---- layers and directions ----------------------------------------------------------------------


def _check_rnn(op, input, batch_first, states, params, has_biases, num_layers, bidirectional, gates) -> list:
    """Checks input (T, B, I) (or (B, T, I) with batch_first), the states (L*D, B, H) and params
    (torch's flat weight order: per layer and direction w_ih, w_hh[, b_ih, b_hh]); returns each
    (layer, direction)'s four weights (None biases without has_biases). Errors name the arguments
    as torch.nn.LSTM/GRU's parameters."""
    dtype = check_tensor(op, "input", input)
    if input.dim() != 3:
        raise ValueError(f"deepkern.torch.{op}: input must be 3-D (T, B, I) or (B, T, I), got {shape_text(input)}")
    batch = input.shape[0 if batch_first else 1]
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"deepkern.torch.{op}: num_layers must be an int >= 1, got {num_layers!r}")
    dirs, per = (2 if bidirectional else 1), (4 if has_biases else 2)
    if not isinstance(params, (list, tuple)) or len(params) != num_layers * dirs * per:
        got = f"{len(params)} tensors" if isinstance(params, (list, tuple)) else type(params).__name__
        raise ValueError(
            f"deepkern.torch.{op}: params must be a list of {per} tensors per layer and direction "
            f"({num_layers} layer(s) x {dirs} direction(s) = {num_layers * dirs * per}), got {got}"
        )
    check_tensor(op, "weight_hh_l0", params[1], dtype)
    if params[1].dim() != 2:
        raise ValueError(f"deepkern.torch.{op}: weight_hh_l0 must be 2-D ({gates}*H, H), got {shape_text(params[1])}")
    hidden = params[1].shape[1]
    for name, state in states.items():
        check_tensor(op, name, state, dtype)
        if shape_text(state) != (num_layers * dirs, batch, hidden):
            raise ValueError(
                f"deepkern.torch.{op}: {name} must have shape (num_layers * directions, B, H) = "
                f"{(num_layers * dirs, batch, hidden)} for input {shape_text(input)}, got {shape_text(state)}"
            )
    groups = []
    for index in range(num_layers * dirs):
        layer, direction = divmod(index, dirs)
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        weights = list(params[index * per : (index + 1) * per]) + [None] * (4 - per)
        inputs = input.shape[2] if layer == 0 else dirs * hidden
        shapes = ((gates * hidden, inputs), (gates * hidden, hidden), (gates * hidden,), (gates * hidden,))
        for kind, weight, shape in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), weights, shapes):
            if weight is not None:
                check_tensor(op, kind + suffix, weight, dtype)
                if shape_text(weight) != shape:
                    raise ValueError(
                        f"deepkern.torch.{op}: {kind}{suffix} must have shape {shape}, got {shape_text(weight)}"
                    )
        groups.append(weights)
    return groups


def _run_layers(layer, x, states: list, groups: list, num_layers, dropout, train, bidirectional):
    """Runs ``layer(x, states_i, w_ih, w_hh, b_ih, b_hh, reverse)`` -> (y, *final states) over the
    layers and directions of x (T, B, I); each layer's directions see the previous layer's outputs
    concatenated on the feature axis (dropout between layers when training). Returns the output and
    the stacked final states."""
    dirs = 2 if bidirectional else 1
    finals = [[] for _ in states]
    for layer_index in range(num_layers):
        outputs = []
        for direction in range(dirs):
            index = layer_index * dirs + direction
            y, *last = layer(x, [s[index] for s in states], *groups[index], direction == 1)
            outputs.append(y)
            for final, state in zip(finals, last):
                final.append(state)
        x = outputs[0] if dirs == 1 else torch.cat(outputs, dim=2)
        if dropout and train and layer_index < num_layers - 1:
            x = torch.nn.functional.dropout(x, dropout, training=True)
    return (x, *(torch.stack(final) for final in finals))


def _need_cache(*tensors) -> bool:
    """Whether autograd will differentiate through a layer: grad mode on and a tensor requiring grad."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _rnn(op, layer, input, states: dict, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    """The shared body of :func:`lstm` and :func:`gru`: checks, batch_first, zero states, layers."""
    gates = 4 if op == "lstm" else 3
    groups = _check_rnn(
        op,
        input,
        batch_first,
        {k: v for k, v in states.items() if v is not None},
        params,
        has_biases,
        num_layers,
        bidirectional,
        gates,
    )
    x = input.transpose(0, 1) if batch_first else input
    dirs = 2 if bidirectional else 1
    zeros = (num_layers * dirs, x.shape[1], params[1].shape[1])
    states = [x.new_zeros(zeros) if s is None else s for s in states.values()]
    cache = _need_cache(input, *states, *params)

    def one(x, layer_states, w_ih, w_hh, b_ih, b_hh, reverse):
        return layer(x, *layer_states, w_ih, w_hh, b_ih, b_hh, reverse, cache)

    output, *finals = _run_layers(one, x, states, groups, num_layers, dropout, train, bidirectional)
    return (output.transpose(0, 1) if batch_first else output, *finals)


def lstm(
    input,
    hx,
    params,
    has_biases=True,
    num_layers=1,
    dropout=0.0,
    train=False,
    bidirectional=False,
    batch_first=False,
):
    """``torch._VF.lstm`` (what torch.nn.LSTM runs) on deepkern's LSTM kernels: input (T, B, I), or
    (B, T, I) with batch_first; hx = (h0, c0), each (num_layers * directions, B, H), or None for
    zeros; params torch's flat weight list (per layer and direction: weight_ih, weight_hh, then
    bias_ih, bias_hh with has_biases). Returns (output, h_n, c_n). Each layer reads contiguous
    memory, so a batch_first or otherwise non-contiguous input is copied once per layer."""
    h0, c0 = (None, None) if hx is None else hx
    states = {"hx[0]": h0, "hx[1]": c0}

    def layer(x, h, c, *rest):
        return _lstm_layer(x, h, c, *rest)[:3]

    return _rnn(
        "lstm", layer, input, states, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
    )


def gru(
    input,
    hx,
    params,
    has_biases=True,
    num_layers=1,
    dropout=0.0,
    train=False,
    bidirectional=False,
    batch_first=False,
):
    """``torch._VF.gru`` on deepkern's GRU kernels: as :func:`lstm` with hx one tensor (or None);
    returns (output, h_n)."""

    def layer(x, h, *rest):
        return _gru_layer(x, h, *rest)[:2]

    return _rnn(
        "gru", layer, input, {"hx": hx}, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
    )


# ---- modules ------------------------------------------------------------------------------------


def _module_forward(module, run, input, states: tuple):
    """torch.nn.LSTM/GRU's forward around ``run(input, states, params...)``: unbatched (T, I) inputs
    and PackedSequence refusal included."""
    name = type(module).__name__
    if isinstance(input, torch.nn.utils.rnn.PackedSequence):
        raise NotImplementedError(f"deepkern.torch.{name}: PackedSequence inputs are not supported; pad the batch")
    unbatched = isinstance(input, Tensor) and input.dim() == 2
    if unbatched:
        input = input.unsqueeze(1)
        states = tuple(None if s is None else s.unsqueeze(1) for s in states)
    params = [w for weights in module.all_weights for w in weights]
    output, *finals = run(
        input,
        states,
        params,
        module.bias,
        module.num_layers,
        module.dropout,
        module.training,
        module.bidirectional,
        module.batch_first and not unbatched,
    )
    if unbatched:
        output, finals = output.squeeze(1), [f.squeeze(1) for f in finals]
    return output, finals


# The modules derive from torch.nn.RNNBase (what torch.nn.LSTM and GRU are, with the mode name), not
# from torch.nn.LSTM/GRU themselves: torch.compile refuses to trace those classes' instances.


class LSTM(torch.nn.RNNBase):
    """torch.nn.LSTM (same arguments, parameters, initialisation and state_dict) whose forward runs
    deepkern's LSTM kernels through :func:`lstm`. proj_size is not supported."""

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)
        if self.proj_size:
            raise NotImplementedError(f"deepkern.torch.LSTM: proj_size={self.proj_size} is not supported (use 0)")

    def forward(self, input, hx=None):
        states = (None, None) if hx is None else tuple(hx)

        output, (h_n, c_n) = _module_forward(self, lstm, input, states)
        return output, (h_n, c_n)


class GRU(torch.nn.RNNBase):
    """torch.nn.GRU (same arguments, parameters, initialisation and state_dict) whose forward runs
    deepkern's GRU kernels through :func:`gru`."""

    def __init__(self, *args, **kwargs):
        super().__init__("GRU", *args, **kwargs)

    def forward(self, input, hx=None):
        def run(input, states, *rest):
            return gru(input, states[0], *rest)

        output, (h_n,) = _module_forward(self, run, input, (hx,))
        return output, h_n
