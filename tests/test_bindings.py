"""deepkern._C called directly, as a user could, past deepkern.ops (csrc/python/boundary.h).

Every binding checks what its kernel will touch before the kernel runs. For each binding a correct
call matches the float64 NumPy reference; each class of bad argument (dtype, size, shape, layout,
read-only output, overlap, gemm offsets and strides, options) raises TypeError or ValueError naming
the op and the argument, and leaves every array as it was.
"""

from __future__ import annotations

import deepkern
import numpy as np
import pytest
from deepkern import _C
from numpy.lib.stride_tricks import as_strided

from checks import F32, F64, check, raises_naming
from reference import (
    adam_step_ref,
    adaptive_avg_pool2d_backward_ref,
    adaptive_avg_pool2d_ref,
    attention_backward_ref,
    attention_mask_grad_ref,
    attention_ref,
    avg_pool2d_backward_ref,
    avg_pool2d_ref,
    conv2d_backward_ref,
    conv2d_out_size,
    conv2d_ref,
    cross_entropy_backward_ref,
    cross_entropy_ref,
    dropout_backward_ref,
    dropout_ref,
    gelu_backward_ref,
    gelu_ref,
    gru_backward_ref,
    gru_ref,
    lstm_backward_ref,
    lstm_ref,
    matmul_ref,
    max_pool2d_backward_ref,
    max_pool2d_ref,
    packed_layer_ref,
    relu_backward_ref,
    relu_ref,
    rmsprop_step_ref,
    rnn_backward_ref,
    rnn_ref,
    sgd_step_ref,
    softmax_backward_ref,
    softmax_ref,
)
from reference_nn import (
    batch_norm_backward_ref,
    batch_norm_ref,
    group_norm_backward_ref,
    group_norm_ref,
    layer_norm_backward_ref,
    layer_norm_ref,
)


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _nan(shape, dtype):
    """An output that shows every element the kernel leaves unwritten."""
    return np.full(shape, np.nan, dtype)


def _offsets(stack):
    """The element offset of each matrix of a stack (first axis) from the stack's first element."""
    return np.arange(stack.shape[0], dtype=np.int64) * (stack.strides[0] // stack.itemsize)


# ---- correct calls: (binding, keyword arguments, {argument: float64 reference}) per case ------------
# A key is an argument's name, or (list name, index) for an entry of an optimizer's list.


def _gemm(rng, dtype):
    """Two problems: a read through reversed rows (negative strides), b transposed, a bias per column."""
    a = _rand(rng, (2, 3, 5), dtype)[:, ::-1, :]
    b = _rand(rng, (2, 4, 5), dtype).transpose(0, 2, 1)
    c = _nan((2, 3, 4), dtype)
    bias = _rand(rng, 4, dtype)
    kw = dict(
        a=a,
        b=b,
        c=c,
        a_offsets=_offsets(a),
        b_offsets=_offsets(b),
        c_offsets=_offsets(c),
        k=5,
        alpha=1.5,
        beta=0.0,
        bias=bias,
        bias_axis=2,
        relu=False,
    )
    return "gemm", kw, {"c": 1.5 * matmul_ref(a, b) + bias}


def _gemm_shared_a(rng, dtype):
    """One a for both problems (offset 0 twice), beta, a bias per row and relu."""
    a, b, c = _rand(rng, (3, 5), dtype), _rand(rng, (2, 5, 4), dtype), _rand(rng, (2, 3, 4), dtype)
    bias = _rand(rng, 3, dtype)
    ref = np.maximum(matmul_ref(a, b) + 0.5 * c.astype(np.float64) + bias[:, None], 0.0)
    kw = dict(
        a=a,
        b=b,
        c=c,
        a_offsets=np.zeros(2, np.int64),
        b_offsets=_offsets(b),
        c_offsets=_offsets(c),
        k=5,
        alpha=1.0,
        beta=0.5,
        bias=bias,
        bias_axis=1,
        relu=True,
    )
    return "gemm", kw, {"c": ref}


_CONV = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
_X, _W = (2, 4, 7, 7), (6, 2, 3, 3)
_Y = (2, 6) + conv2d_out_size(_X[2:], _W[2:], **{k: v for k, v in _CONV.items() if k != "groups"})


def _conv_forward(rng, dtype):
    x, w, bias = _rand(rng, _X, dtype), _rand(rng, _W, dtype), _rand(rng, _W[0], dtype)
    kw = dict(x=x, w=w, bias=bias, y=_nan(_Y, dtype), **_CONV)
    return "conv2d_forward", kw, {"y": conv2d_ref(x, w, bias, **_CONV)}


def _conv_forward_same(rng, dtype):
    """padding='same' with an even kernel: one more padding at the end, so P and Q are one more."""
    x, w = _rand(rng, (1, 2, 5, 6), dtype), _rand(rng, (3, 2, 2, 2), dtype)
    kw = dict(
        x=x, w=w, bias=None, y=_nan((1, 3, 5, 6), dtype), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1
    )
    return "conv2d_forward", kw, {"y": conv2d_ref(x, w, padding="same")}


def _conv_backward_data(rng, dtype):
    grad_y, x, w = _rand(rng, _Y, dtype), _rand(rng, _X, dtype), _rand(rng, _W, dtype)
    kw = dict(grad_y=grad_y, w=w, grad_x=_nan(_X, dtype), **_CONV)
    return "conv2d_backward_data", kw, {"grad_x": conv2d_backward_ref(grad_y, x, w, **_CONV)[0]}


def _conv_backward_weight(rng, dtype):
    grad_y, x, w = _rand(rng, _Y, dtype), _rand(rng, _X, dtype), _rand(rng, _W, dtype)
    _, grad_w, grad_b = conv2d_backward_ref(grad_y, x, w, **_CONV)
    kw = dict(grad_y=grad_y, x=x, grad_w=_nan(_W, dtype), grad_bias=_nan(_W[0], dtype), **_CONV)
    return "conv2d_backward_weight", kw, {"grad_w": grad_w, "grad_bias": grad_b}


_T, _B, _I, _H = 3, 2, 4, 5


def _lstm_inputs(rng, dtype):
    return dict(
        x=_rand(rng, (_T, _B, _I), dtype),
        h0=_rand(rng, (_B, _H), dtype),
        c0=_rand(rng, (_B, _H), dtype),
        w_ih=_rand(rng, (4 * _H, _I), dtype) / 2,
        w_hh=_rand(rng, (4 * _H, _H), dtype) / 2,
    )


def _lstm_forward_kwargs(rng, dtype):
    kw = _lstm_inputs(rng, dtype)
    kw.update(
        bias=_rand(rng, 4 * _H, dtype),
        y=_nan((_T, _B, _H), dtype),
        h_last=_nan((_B, _H), dtype),
        c_last=_nan((_B, _H), dtype),
        gates=_nan((_T, _B, 4 * _H), dtype),
        cells=_nan((_T, _B, _H), dtype),
        hidden=_nan((_T, _B, _H), dtype),
        reverse=False,
    )
    return kw


# batch_sizes of a batch of lengths 3 and 1 (variable lengths: the calls ending in _packed)
_SIZES = (2, 1, 1)


def _layer_refs(forward_ref, backward_ref, kw, states, weights, grads=None, **ref_kw):
    """forward_ref's outputs (with grads: backward_ref's gradients too) for a call's kw, each
    sequence alone on its own steps when kw has batch_sizes."""
    sizes = kw.get("batch_sizes")
    if sizes is None:
        if grads is None:
            return forward_ref(kw["x"], *states, *weights, **ref_kw)
        return backward_ref(*grads, kw["x"], *states, *weights, **ref_kw)
    refs = packed_layer_ref(forward_ref, backward_ref, kw["x"], states, weights, sizes, grads, **ref_kw)
    return refs if grads is None else refs[1]


def _lstm_forward(rng, dtype, sizes=None):
    kw = _lstm_forward_kwargs(rng, dtype)
    if sizes:
        kw["batch_sizes"] = np.array(sizes, np.int64)
    states, weights = (kw["h0"], kw["c0"]), (kw["w_ih"], kw["w_hh"], kw["bias"])
    y, h, c = _layer_refs(lstm_ref, lstm_backward_ref, kw, states, weights)
    return "lstm_forward", kw, {"y": y, "h_last": h, "c_last": c, "hidden": y}


def _lstm_forward_packed(rng, dtype):
    return _lstm_forward(rng, dtype, _SIZES)


def _lstm_backward(rng, dtype, sizes=None):
    forward = _lstm_forward_kwargs(rng, dtype)
    forward["bias"] = None
    if sizes:
        forward["batch_sizes"] = np.array(sizes, np.int64)
    _C.lstm_forward(**forward)
    kw = {name: forward[name] for name in ("x", "h0", "c0", "w_ih", "w_hh", "gates", "cells", "hidden")}
    if sizes:
        kw["batch_sizes"] = forward["batch_sizes"]
    kw.update(
        grad_y=_rand(rng, (_T, _B, _H), dtype),
        grad_h_last=_rand(rng, (_B, _H), dtype),
        grad_c_last=_rand(rng, (_B, _H), dtype),
        grad_x=_nan((_T, _B, _I), dtype),
        grad_h0=_nan((_B, _H), dtype),
        grad_c0=_nan((_B, _H), dtype),
        grad_w_ih=_nan((4 * _H, _I), dtype),
        grad_w_hh=_nan((4 * _H, _H), dtype),
        grad_bias=_nan(4 * _H, dtype),
        reverse=False,
    )
    grads = (kw["grad_y"], kw["grad_h_last"], kw["grad_c_last"])
    refs = _layer_refs(lstm_ref, lstm_backward_ref, kw, (kw["h0"], kw["c0"]), (kw["w_ih"], kw["w_hh"]), grads)
    names = ("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_bias")
    return "lstm_backward", kw, dict(zip(names, refs))


def _lstm_backward_packed(rng, dtype):
    return _lstm_backward(rng, dtype, _SIZES)


# x (2, 3, 6, 6) pooled by 3 x 3 windows, stride 2, padding 1: a (2, 3, 3, 3) output.
_PX, _PY = (2, 3, 6, 6), (2, 3, 3, 3)
_POOL = (6, 6, 6, 3, 3, 3, 3, 2, 2, 1, 1, 1, 1)
_ADAPTIVE_Y = (2, 3, 4, 3)
_ADAPTIVE = (6, 6, 6, 4, 3, 1, 1, 1, 1, 0, 0, 1, 1)


def _max_pool(rng, dtype):
    x = _rand(rng, _PX, dtype)
    out, indices = max_pool2d_ref(x, 3, 2, 1)
    kw = dict(x=x, out=_nan(_PY, dtype), indices=np.full(_PY, -7, np.int64), shape=_POOL)
    return "max_pool2d", kw, {"out": out, "indices": indices}


def _max_pool_backward(rng, dtype):
    grad_out = _rand(rng, _PY, dtype)
    indices = max_pool2d_ref(_rand(rng, _PX, dtype), 3, 2, 1)[1]
    kw = dict(grad_out=grad_out, indices=indices, grad_x=_nan(_PX, dtype), shape=_POOL)
    return "max_pool2d_backward", kw, {"grad_x": max_pool2d_backward_ref(grad_out, _PX, indices)}


def _avg_pool(rng, dtype):
    x = _rand(rng, _PX, dtype)
    kw = dict(x=x, out=_nan(_PY, dtype), shape=_POOL, count_include_pad=False, divisor_override=0)
    return "avg_pool2d", kw, {"out": avg_pool2d_ref(x, 3, 2, 1, count_include_pad=False)}


def _avg_pool_backward(rng, dtype):
    grad_out = _rand(rng, _PY, dtype)
    kw = dict(grad_out=grad_out, grad_x=_nan(_PX, dtype), shape=_POOL, count_include_pad=True, divisor_override=5)
    return "avg_pool2d_backward", kw, {"grad_x": avg_pool2d_backward_ref(grad_out, _PX, 3, 2, 1, divisor_override=5)}


def _adaptive_pool(rng, dtype):
    x = _rand(rng, _PX, dtype)
    kw = dict(x=x, out=_nan(_ADAPTIVE_Y, dtype), shape=_ADAPTIVE)
    return "adaptive_avg_pool2d", kw, {"out": adaptive_avg_pool2d_ref(x, _ADAPTIVE_Y[2:])}


def _adaptive_pool_backward(rng, dtype):
    grad_out = _rand(rng, _ADAPTIVE_Y, dtype)
    kw = dict(grad_out=grad_out, grad_x=_nan(_PX, dtype), shape=_ADAPTIVE)
    return "adaptive_avg_pool2d_backward", kw, {"grad_x": adaptive_avg_pool2d_backward_ref(grad_out, _PX)}


_TENSORS = ((4,), (2, 3))  # the shapes of an optimizer call's two parameter tensors


def _tensors(rng, dtype, scale=1.0):
    return [_rand(rng, shape, dtype) * dtype.type(scale) for shape in _TENSORS]


def _sgd(rng, dtype):
    params, grads, buffers = _tensors(rng, dtype), _tensors(rng, dtype), _tensors(rng, dtype)
    options = dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False, maximize=True)
    expected = {}
    for i, first in enumerate((0, 1)):
        expected["params", i], expected["momentum_buffers", i] = sgd_step_ref(
            params[i], grads[i], buffers[i], first_step=bool(first), **options
        )
    kw = dict(params=params, grads=grads, momentum_buffers=buffers, first_steps=[0, 1], **options)
    return "sgd_step", kw, expected


def _adam(rng, dtype):
    params, grads, exp_avgs = _tensors(rng, dtype), _tensors(rng, dtype), _tensors(rng, dtype)
    exp_avg_sqs, max_sqs = _tensors(rng, dtype, 0.5), _tensors(rng, dtype, 0.5)
    exp_avg_sqs, max_sqs = [v * v for v in exp_avg_sqs], [v * v for v in max_sqs]
    options = dict(lr=0.01, eps=1e-8, weight_decay=0.1, amsgrad=True, maximize=False, decoupled_weight_decay=True)
    expected = {}
    for i, step in enumerate((1, 3)):
        (expected["params", i], expected["exp_avgs", i], expected["exp_avg_sqs", i], expected["max_exp_avg_sqs", i]) = (
            adam_step_ref(
                params[i],
                grads[i],
                exp_avgs[i],
                exp_avg_sqs[i],
                step=step,
                betas=(0.8, 0.9),
                max_exp_avg_sq=max_sqs[i],
                **options,
            )
        )
    kw = dict(
        params=params,
        grads=grads,
        exp_avgs=exp_avgs,
        exp_avg_sqs=exp_avg_sqs,
        max_exp_avg_sqs=max_sqs,
        steps=[1, 3],
        beta1=0.8,
        beta2=0.9,
        **options,
    )
    return "adam_step", kw, expected


def _rmsprop(rng, dtype):
    params, grads, buffers = _tensors(rng, dtype), _tensors(rng, dtype), _tensors(rng, dtype)
    square_avgs, grad_avgs = [v * v + 1 for v in _tensors(rng, dtype)], _tensors(rng, dtype, 0.1)
    options = dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.0, momentum=0.5, centered=True, maximize=False)
    expected = {}
    for i in range(2):
        (
            expected["params", i],
            expected["square_avgs", i],
            expected["momentum_buffers", i],
            expected["grad_avgs", i],
        ) = rmsprop_step_ref(
            params[i], grads[i], square_avgs[i], momentum_buffer=buffers[i], grad_avg=grad_avgs[i], **options
        )
    kw = dict(
        params=params, grads=grads, square_avgs=square_avgs, momentum_buffers=buffers, grad_avgs=grad_avgs, **options
    )
    return "rmsprop_step", kw, expected


def _relu(rng, dtype):
    x = _rand(rng, (3, 5), dtype)
    return "relu", dict(x=x, out=_nan((3, 5), dtype)), {"out": relu_ref(x)}


def _relu_backward(rng, dtype):
    grad, x = _rand(rng, 15, dtype), _rand(rng, (3, 5), dtype)  # any shapes of one element count
    return "relu_backward", dict(grad=grad, x=x, out=_nan(15, dtype)), {"out": relu_backward_ref(grad, x.ravel())}


def _gelu(rng, dtype):
    x = _rand(rng, 17, dtype)
    return "gelu", dict(x=x, out=_nan(17, dtype), approximate_tanh=False), {"out": gelu_ref(x)}


def _gelu_backward(rng, dtype):
    grad, x = _rand(rng, 17, dtype), _rand(rng, 17, dtype)
    kw = dict(grad=grad, x=x, out=_nan(17, dtype), approximate_tanh=True)
    return "gelu_backward", kw, {"out": gelu_backward_ref(grad, x, "tanh")}


def _softmax(rng, dtype):
    """Softmax over the middle axis of (2, 5, 3): interleaved rows."""
    x = _rand(rng, (2, 5, 3), dtype)
    kw = dict(x=x, out=_nan(30, dtype), outer=2, length=5, inner=3, log=False)
    return "softmax", kw, {"out": softmax_ref(x, 1).ravel()}


def _softmax_backward(rng, dtype):
    grad, y = _rand(rng, (4, 6), dtype), softmax_ref(_rand(rng, (4, 6), dtype), 1).astype(dtype)
    kw = dict(grad=grad, y=y, out=_nan((4, 6), dtype), outer=4, length=6, inner=1, log=False)
    return "softmax_backward", kw, {"out": softmax_backward_ref(grad, y, 1)}


def _cross_entropy_args(rng, dtype):
    x, weight = _rand(rng, (3, 4, 2), dtype), rng.uniform(0.5, 2, 4).astype(dtype)
    target = np.array([[0, 3], [-1, 2], [1, 1]], np.int64)
    return x, target, weight, dict(batch=3, classes=4, inner=2, ignore_index=-1, label_smoothing=0.2)


def _cross_entropy_forward(rng, dtype):
    x, target, weight, sizes = _cross_entropy_args(rng, dtype)
    kw = dict(x=x, target=target, weight=weight, loss=_nan((3, 2), dtype), stats=_nan((3, 2, 3), dtype), **sizes)
    loss, _ = cross_entropy_ref(x, target, weight, -1, 0.2)
    return "cross_entropy_forward", kw, {"loss": loss}


def _cross_entropy_backward(rng, dtype):
    x, target, weight, sizes = _cross_entropy_args(rng, dtype)
    loss, stats = np.empty((3, 2), dtype), np.empty((3, 2, 3), dtype)
    _C.cross_entropy_forward(x, target, weight, loss, stats, **sizes)
    grad = _rand(rng, (3, 2), dtype)
    kw = dict(grad=grad, x=x, target=target, weight=weight, stats=stats, out=_nan(x.shape, dtype), **sizes)
    return "cross_entropy_backward", kw, {"out": cross_entropy_backward_ref(grad, x, target, weight, -1, 0.2)}


def _dropout(rng, dtype):
    x = _rand(rng, (3, 7), dtype)
    y_ref, mask_ref = dropout_ref(x, 0.3, 2**63 + 1, 5)
    kw = dict(x=x, y=_nan(21, dtype), mask=np.zeros(21, np.bool_), p=0.3, seed=2**63 + 1, offset=5)
    return "dropout", kw, {"y": y_ref.ravel(), "mask": mask_ref.ravel()}


def _dropout_backward(rng, dtype):
    grad, mask = _rand(rng, 13, dtype), rng.random(13) < 0.5
    kw = dict(grad=grad, mask=mask, out=_nan(13, dtype), p=0.6)
    return "dropout_backward", kw, {"out": dropout_backward_ref(grad, mask, 0.6)}


_NORM = (4, 3, 5)  # (n, c, s)


def _norm_forward(rng, dtype):
    x, w, b = _rand(rng, (4, 3, 5), dtype), _rand(rng, 3, dtype), _rand(rng, 3, dtype)
    rm, rv = _rand(rng, 3, dtype), np.abs(_rand(rng, 3, dtype)) + dtype.type(0.5)
    ref, ref_m, ref_v = batch_norm_ref(x, rm, rv, w, b, training=True, momentum=0.2, eps=1e-3)
    kw = dict(
        x=x,
        weight=w,
        bias=b,
        running_mean=rm,
        running_var=rv,
        out=_nan((4, 3, 5), dtype),
        save_mean=_nan(3, F64),
        save_invstd=_nan(3, F64),
        shape=_NORM,
        training=True,
        momentum=0.2,
        eps=1e-3,
    )
    # save_mean and save_invstd (float64 for either dtype): test_norm_forward_saves_float64_statistics.
    return "batch_norm_forward", kw, {"out": ref, "running_mean": ref_m, "running_var": ref_v}


def _norm_backward(rng, dtype):
    g, x, w = _rand(rng, (4, 3, 5), dtype), _rand(rng, (4, 3, 5), dtype), _rand(rng, 3, dtype)
    mean, var = x.astype(np.float64).mean(axis=(0, 2)), x.astype(np.float64).var(axis=(0, 2))
    kw = dict(
        grad_out=g,
        x=x,
        weight=w,
        save_mean=mean,
        save_invstd=1 / np.sqrt(var + 1e-3),
        grad_x=_nan((4, 3, 5), dtype),
        grad_weight=_nan(3, dtype),
        grad_bias=_nan(3, dtype),
        shape=_NORM,
        training=True,
    )
    ref = batch_norm_backward_ref(g, x, w, mean, var, True, eps=1e-3)
    return "batch_norm_backward", kw, dict(zip(("grad_x", "grad_weight", "grad_bias"), ref))


def _one_state_forward_kwargs(rng, dtype, gates, sizes=None):
    """gru_forward's (gates 3) or rnn_forward's (gates 1) arguments, outputs NaN-filled (with
    batch_sizes when ``sizes`` are given)."""
    kw = _lstm_inputs(rng, dtype)
    del kw["c0"]
    kw.update(
        w_ih=_rand(rng, (gates * _H, _I), dtype) / 2,
        w_hh=_rand(rng, (gates * _H, _H), dtype) / 2,
        y=_nan((_T, _B, _H), dtype),
        h_last=_nan((_B, _H), dtype),
        hidden=_nan((_T, _B, _H), dtype),
        reverse=False,
    )
    if gates == 3:
        kw.update(b_ih=_rand(rng, 3 * _H, dtype), b_hh=_rand(rng, 3 * _H, dtype), gates=_nan((_T, _B, 4 * _H), dtype))
    else:
        kw.update(bias=_rand(rng, _H, dtype), relu=False)
    if sizes:
        kw["batch_sizes"] = np.array(sizes, np.int64)
    return kw


def _one_state_backward_kwargs(rng, dtype, forward, gates):
    """The backward's arguments after a forward call ``forward``, outputs NaN-filled."""
    kw = {
        name: forward[name]
        for name in ("x", "h0", "w_ih", "w_hh", "hidden", "reverse", "batch_sizes")
        if name in forward
    }
    kw.update(
        grad_y=_rand(rng, (_T, _B, _H), dtype),
        grad_h_last=_rand(rng, (_B, _H), dtype),
        grad_x=_nan((_T, _B, _I), dtype),
        grad_h0=_nan((_B, _H), dtype),
        grad_w_ih=_nan((gates * _H, _I), dtype),
        grad_w_hh=_nan((gates * _H, _H), dtype),
    )
    return kw


def _gru_forward(rng, dtype, sizes=None):
    kw = _one_state_forward_kwargs(rng, dtype, 3, sizes)
    y, h = _layer_refs(gru_ref, gru_backward_ref, kw, (kw["h0"],), (kw["w_ih"], kw["w_hh"], kw["b_ih"], kw["b_hh"]))
    return "gru_forward", kw, {"y": y, "h_last": h, "hidden": y}


def _gru_backward(rng, dtype, sizes=None):
    forward = _one_state_forward_kwargs(rng, dtype, 3, sizes)
    _C.gru_forward(**forward)
    kw = _one_state_backward_kwargs(rng, dtype, forward, 3)
    kw.update(gates=forward["gates"], grad_b_ih=_nan(3 * _H, dtype), grad_b_hh=_nan(3 * _H, dtype))
    weights = (kw["w_ih"], kw["w_hh"], forward["b_ih"], forward["b_hh"])
    refs = _layer_refs(gru_ref, gru_backward_ref, kw, (kw["h0"],), weights, (kw["grad_y"], kw["grad_h_last"]))
    names = ("grad_x", "grad_h0", "grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh")
    return "gru_backward", kw, dict(zip(names, refs))


def _rnn_forward(rng, dtype, sizes=None):
    kw = _one_state_forward_kwargs(rng, dtype, 1, sizes)
    kw["relu"] = True
    weights = (kw["w_ih"], kw["w_hh"], kw["bias"], None)
    y, h = _layer_refs(rnn_ref, rnn_backward_ref, kw, (kw["h0"],), weights, nonlinearity="relu")
    return "rnn_forward", kw, {"y": y, "h_last": h, "hidden": y}


def _rnn_backward(rng, dtype, sizes=None):
    forward = _one_state_forward_kwargs(rng, dtype, 1, sizes)
    _C.rnn_forward(**forward)
    kw = _one_state_backward_kwargs(rng, dtype, forward, 1)
    kw.update(grad_bias=_nan(_H, dtype), relu=False)
    weights = (kw["w_ih"], kw["w_hh"], forward["bias"], None)
    refs = _layer_refs(rnn_ref, rnn_backward_ref, kw, (kw["h0"],), weights, (kw["grad_y"], kw["grad_h_last"]))
    names = ("grad_x", "grad_h0", "grad_w_ih", "grad_w_hh", "grad_bias")
    return "rnn_backward", kw, dict(zip(names, refs))


def _gru_forward_packed(rng, dtype):
    return _gru_forward(rng, dtype, _SIZES)


def _gru_backward_packed(rng, dtype):
    return _gru_backward(rng, dtype, _SIZES)


def _rnn_forward_packed(rng, dtype):
    return _rnn_forward(rng, dtype, _SIZES)


def _rnn_backward_packed(rng, dtype):
    return _rnn_backward(rng, dtype, _SIZES)


def _layer_norm_forward(rng, dtype):
    x, w, b = _rand(rng, (6, 7), dtype), _rand(rng, 7, dtype), _rand(rng, 7, dtype)
    ref = layer_norm_ref(x, (7,), w, b, eps=1e-3)[0]
    kw = dict(
        x=x, weight=w, bias=b, out=_nan((6, 7), dtype), save_mean=_nan(6, F64), save_rstd=_nan(6, F64), shape=(6, 7)
    )
    # save_mean and save_rstd (float64): test_row_norm_forward_saves_float64_statistics.
    return "layer_norm_forward", dict(kw, eps=1e-3), {"out": ref}


def _layer_norm_backward(rng, dtype):
    g, x, w = _rand(rng, (6, 7), dtype), _rand(rng, (6, 7), dtype), _rand(rng, 7, dtype)
    _, mean, rstd = layer_norm_ref(x, (7,), eps=1e-3)
    kw = dict(grad_out=g, x=x, weight=w, save_mean=mean, save_rstd=rstd, grad_x=_nan((6, 7), dtype))
    kw.update(grad_weight=_nan(7, dtype), grad_bias=_nan(7, dtype), shape=(6, 7))
    ref = layer_norm_backward_ref(g, x, (7,), w, eps=1e-3)
    return "layer_norm_backward", kw, dict(zip(("grad_x", "grad_weight", "grad_bias"), ref))


_GROUP_NORM = (3, 6, 5)  # (n, c, s), 2 groups


def _group_norm_forward(rng, dtype):
    x, w, b = _rand(rng, _GROUP_NORM, dtype), _rand(rng, 6, dtype), _rand(rng, 6, dtype)
    ref = group_norm_ref(x, 2, w, b, eps=1e-3)[0]
    kw = dict(x=x, weight=w, bias=b, out=_nan(_GROUP_NORM, dtype), save_mean=_nan(6, F64), save_rstd=_nan(6, F64))
    kw.update(shape=_GROUP_NORM, groups=2, eps=1e-3)
    return "group_norm_forward", kw, {"out": ref}


def _group_norm_backward(rng, dtype):
    g, x, w = _rand(rng, _GROUP_NORM, dtype), _rand(rng, _GROUP_NORM, dtype), _rand(rng, 6, dtype)
    _, mean, rstd = group_norm_ref(x, 2, eps=1e-3)
    kw = dict(grad_out=g, x=x, weight=w, save_mean=mean.ravel(), save_rstd=rstd.ravel())
    kw.update(grad_x=_nan(_GROUP_NORM, dtype), grad_weight=_nan(6, dtype), grad_bias=_nan(6, dtype))
    kw.update(shape=_GROUP_NORM, groups=2)
    ref = group_norm_backward_ref(g, x, 2, w, eps=1e-3)
    return "group_norm_backward", kw, dict(zip(("grad_x", "grad_weight", "grad_bias"), ref))


def _attention_args(rng, dtype):
    """Three problems of (L=5, S=7, E=4, Ev=3) sharing two key matrices and one mask (L x 1: a key
    column broadcast over the queries is the (1, 7) row; here each query has its own value)."""
    q, k, v = _rand(rng, (3, 5, 4), dtype), _rand(rng, (2, 7, 4), dtype), _rand(rng, (3, 7, 3), dtype)
    mask = np.where(rng.random((1, 5, 7)) < 0.8, 0.0, -1.5).astype(dtype)
    kw = dict(q=q, k=k, v=v, k_index=np.array([0, 1, 1], np.int64), v_index=np.arange(3, dtype=np.int64))
    kw.update(mask=mask, mask_index=np.zeros(3, np.int64), scale=0.6, causal=False, dropout_p=0.0, seed=0, offset=0)
    return kw, (q, k[kw["k_index"]], v, mask[0], 0.6)


def _attention_forward(rng, dtype):
    kw, (q, k, v, mask, scale) = _attention_args(rng, dtype)
    kw.update(o=_nan((3, 5, 3), dtype), lse=_nan((3, 5), dtype))
    return "attention_forward", kw, {"o": attention_ref(q, k, v, mask, scale=scale)}


def _attention_backward(rng, dtype):
    kw, (q, k, v, mask, scale) = _attention_args(rng, dtype)
    o, lse = _nan((3, 5, 3), dtype), _nan((3, 5), dtype)
    _C.attention_forward(**kw, o=o, lse=lse)
    grad = _rand(rng, (3, 5, 3), dtype)
    kw.update(o=o, lse=lse, grad=grad, dq=_nan((3, 5, 4), dtype), dk=_nan((3, 7, 4), dtype), dv=_nan((3, 7, 3), dtype))
    refs = attention_backward_ref(grad, q, k, v, mask, scale=scale)
    return "attention_backward", kw, dict(zip(("dq", "dk", "dv"), refs))


def _attention_backward_mask_grad(rng, dtype):
    """With dmask: the mask's gradient per problem (the shared (1, 5, 7) mask's, before the sum)."""
    name, kw, refs = _attention_backward(rng, dtype)
    q, k, v = kw["q"], kw["k"][kw["k_index"]], kw["v"]
    mask = np.broadcast_to(kw["mask"], (3, 5, 7))
    kw.update(dmask=_nan((3, 5, 7), dtype))
    refs["dmask"] = attention_mask_grad_ref(kw["grad"], q, k, v, mask, scale=kw["scale"])
    return name, kw, refs


CALLS = {
    f.__name__.lstrip("_"): f
    for f in (
        _softmax,
        _softmax_backward,
        _attention_forward,
        _attention_backward,
        _attention_backward_mask_grad,
        _cross_entropy_forward,
        _cross_entropy_backward,
        _relu,
        _relu_backward,
        _gelu,
        _gelu_backward,
        _dropout,
        _dropout_backward,
        _gemm,
        _gemm_shared_a,
        _conv_forward,
        _conv_forward_same,
        _conv_backward_data,
        _conv_backward_weight,
        _lstm_forward,
        _lstm_backward,
        _gru_forward,
        _gru_backward,
        _rnn_forward,
        _rnn_backward,
        _lstm_forward_packed,
        _lstm_backward_packed,
        _gru_forward_packed,
        _gru_backward_packed,
        _rnn_forward_packed,
        _rnn_backward_packed,
        _max_pool,
        _max_pool_backward,
        _avg_pool,
        _avg_pool_backward,
        _adaptive_pool,
        _adaptive_pool_backward,
        _norm_forward,
        _norm_backward,
        _layer_norm_forward,
        _layer_norm_backward,
        _group_norm_forward,
        _group_norm_backward,
        _sgd,
        _adam,
        _rmsprop,
    )
}


@pytest.mark.parametrize("dtype", (F32, F64), ids=str)
@pytest.mark.parametrize("case", [_layer_norm_forward, _group_norm_forward], ids=["layer", "group"])
def test_row_norm_forward_saves_float64_statistics(case, dtype, rng):
    binding, kw, _ = case(rng, dtype)
    getattr(_C, binding)(**kw)
    if binding == "layer_norm_forward":
        _, mean, rstd = layer_norm_ref(kw["x"], (7,), eps=1e-3)
    else:
        _, mean, rstd = group_norm_ref(kw["x"], 2, eps=1e-3)
    np.testing.assert_allclose(kw["save_mean"], mean.ravel(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(kw["save_rstd"], rstd.ravel(), rtol=1e-13)


def _get(kw, key):
    return kw[key[0]][key[1]] if isinstance(key, tuple) else kw[key]


def _put(kw, key, value):
    if isinstance(key, tuple):
        kw[key[0]] = list(kw[key[0]])
        kw[key[0]][key[1]] = value
    else:
        kw[key] = value


@pytest.mark.parametrize("dtype", (F32, F64), ids=str)
@pytest.mark.parametrize("case", sorted(CALLS))
def test_correct_call_matches_reference(case, dtype, rng):
    binding, kw, expected = CALLS[case](rng, dtype)
    getattr(_C, binding)(**kw)
    for key, ref in expected.items():
        got = _get(kw, key)
        if got.dtype.kind in "ib":  # indices, masks: exact
            np.testing.assert_array_equal(got, ref, err_msg=f"{case}: {key}")
        else:
            check(got, ref, dtype, f"{case}: {key}")


@pytest.mark.parametrize("dtype", (F32, F64), ids=str)
def test_norm_forward_saves_float64_statistics(dtype, rng):
    _, kw, _ = _norm_forward(rng, dtype)
    _C.batch_norm_forward(**kw)
    x = kw["x"].astype(np.float64)
    mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
    np.testing.assert_allclose(kw["save_mean"], mean, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(kw["save_invstd"], 1 / np.sqrt(var + 1e-3), rtol=1e-13)


def test_optimizer_tensors_may_share_what_is_only_read(rng):
    """Two tensors whose gradients overlap (read by both, written by neither) are updated as if apart."""
    shared = _rand(rng, 6, F64)
    grads = [shared[:4], shared.reshape(2, 3)]
    params, buffers = _tensors(rng, F64), _tensors(rng, F64)
    options = dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)
    expected = [sgd_step_ref(p, g, b, first_step=False, **options) for p, g, b in zip(params, grads, buffers)]
    _C.sgd_step(params=params, grads=grads, momentum_buffers=buffers, first_steps=[0, 0], **options)
    for i, (p_ref, b_ref) in enumerate(expected):
        check(params[i], p_ref, F64, f"params[{i}]")
        check(buffers[i], b_ref, F64, f"momentum_buffers[{i}]")


@pytest.mark.parametrize("case", [_gemm, _gemm_shared_a], ids=["gemm", "gemm_shared_a"])
def test_gemm_takes_bfloat16(case, rng):
    """The gemm calls with bfloat16 arrays: bfloat16 c, and float32 c (the float32 accumulation)."""
    bf16 = deepkern.bfloat16
    for c_dtype, tol in ((bf16, 2.0**-7), (F32, 1e-5)):
        _, kw, expected = case(rng, bf16)
        kw["c"] = kw["c"].astype(c_dtype)
        if kw["bias"] is not None:
            kw["bias"] = kw["bias"].astype(c_dtype)
        _C.gemm(**kw)
        check(kw["c"].astype(np.float32), expected["c"], F32, f"bfloat16 gemm into {np.dtype(c_dtype)} c", tol=tol)


def test_gemm_output_interleaved_with_an_input_is_no_overlap(rng):
    # The spans of a and c intersect but no element is shared: numpy.shares_memory decides.
    buf = _nan((3, 10), F64)
    a, c = buf[:, ::2], buf[:, 1::2]
    a[...] = _rand(rng, (3, 5), F64)
    b = _rand(rng, (5, 5), F64)
    one = np.zeros(1, np.int64)
    _C.gemm(a, b, c, one, one, one, 5, 1.0, 0.0, None, 0, False)
    check(c, matmul_ref(a, b), F64, "c interleaved with a")


# ---- bad arguments: (case, change to its arguments, error, patterns the message must contain) ------


def _set(key, make):
    """Replaces argument `key` with make(its value)."""
    return lambda kw: _put(kw, key, make(_get(kw, key)))


def _as(key, dtype):
    return _set(key, lambda a: a.astype(dtype))


def _resized(key, delta):
    """`key` with `delta` more elements along its first axis (any layout: pooling)."""
    return _set(key, lambda a: np.resize(a, (a.shape[0] + delta,) + a.shape[1:]))


def _reshaped(key, shape):
    return _set(key, lambda a: np.resize(a, shape))


def _strided(key):
    """The same values in a non-contiguous view."""
    return _set(key, lambda a: np.repeat(a, 2, axis=-1)[..., ::2])


def _read_only(key):
    def make(a):
        a = a.copy()
        a.flags.writeable = False
        return a

    return _set(key, make)


def _overlapping(written, other):
    """`written` and `other` (values kept) as views of one buffer, `written` starting one element
    later; each keeps its dtype (the buffer is bytes)."""

    def change(kw):
        w, o = _get(kw, written), _get(kw, other)
        buf = np.zeros(w.nbytes + o.nbytes, np.uint8)
        o_view = buf[: o.nbytes].view(o.dtype).reshape(o.shape)
        o_view[...] = o
        start = w.itemsize
        _put(kw, other, o_view)
        _put(kw, written, buf[start : start + w.nbytes].view(w.dtype).reshape(w.shape))

    return change


def _value(key, value):
    return lambda kw: _put(kw, key, value)


def _misaligned(key):
    """The same values one byte past an aligned address."""

    def make(a):
        buf = np.zeros(a.nbytes + 1, np.uint8)
        view = buf[1:].view(a.dtype).reshape(a.shape)
        view[...] = a
        return view

    return _set(key, make)


def _odd_strides(kw):
    """a with byte strides that are not multiples of its item size."""
    a = kw["a"]
    kw["a"] = as_strided(np.zeros(64, a.dtype), shape=a.shape, strides=(1, a.itemsize * 5 + 1, a.itemsize))


def _aliasing_rows(kw):
    """c whose two problems are one writeable matrix (a zero stride)."""
    c = kw["c"]
    kw["c"] = as_strided(np.zeros(c[0].size, c.dtype), shape=c.shape, strides=(0,) + c.strides[1:])


BAD = [
    # gemm
    ("gemm", "a not an array", _value("a", [[1.0]]), TypeError, ["gemm: a must be a numpy.ndarray"]),
    ("gemm", "a int32", _as("a", np.int32), TypeError, ["gemm: a must be float32 or float64, got dtype int32"]),
    ("gemm", "b other float", _as("b", np.float16), TypeError, ["gemm: b must have dtype", "got float16"]),
    (
        "gemm",
        "c other float",
        _set("c", lambda c: c.astype(F64 if c.dtype == F32 else F32)),
        TypeError,
        ["gemm: c must have dtype"],
    ),
    ("gemm", "bias other float", _as("bias", np.float16), TypeError, ["gemm: bias must have dtype"]),
    ("gemm", "offsets int32", _as("a_offsets", np.int32), TypeError, ["gemm: a_offsets must have dtype int64"]),
    ("gemm", "a's k too large", _reshaped("a", (2, 3, 6)), ValueError, [r"gemm: a must have shape \(\.\.\., 3, 5\)"]),
    ("gemm", "b's k too small", _reshaped("b", (2, 4, 4)), ValueError, [r"gemm: b must have shape \(\.\.\., 5, 4\)"]),
    ("gemm", "c 1-D", _reshaped("c", (4,)), ValueError, ["gemm: c must have at least 2 dimensions"]),
    ("gemm", "offsets 2-D", _reshaped("a_offsets", (2, 1)), ValueError, ["gemm: a_offsets must be 1-D"]),
    (
        "gemm",
        "offsets of other lengths",
        _value("b_offsets", np.zeros(1, np.int64)),
        ValueError,
        [r"gemm: b_offsets must have shape \(2,\)", r"got shape \(1,\)"],
    ),
    (
        "gemm",
        "offsets strided",
        _value("c_offsets", np.array([0, 99, 12], np.int64)[::2]),
        ValueError,
        ["gemm: c_offsets must be C-contiguous"],
    ),
    (
        "gemm",
        "offset past the end",
        _value("b_offsets", np.array([0, 10**6], np.int64)),
        ValueError,
        [r"gemm: b_offsets\[1\] = 1000000", "outside", r"offsets 0 to 20 keep it inside"],
    ),
    (
        "gemm",
        "offset before the start",
        _value("c_offsets", np.array([-1, 12], np.int64)),
        ValueError,
        [r"c_offsets\[0\] = -1", "outside"],
    ),
    (
        "gemm",
        "offset near int64's end",
        _value("c_offsets", np.array([0, 2**63 - 1], np.int64)),
        ValueError,
        [r"c_offsets\[1\]"],
    ),
    (
        "gemm",
        "reversed rows read before the start",
        _value("a_offsets", np.array([-1, 15], np.int64)),
        ValueError,
        [r"a_offsets\[0\] = -1", r"strides \(-5, 1\)", "offsets 0 to 15 keep it inside"],
    ),
    (
        "gemm",
        "reversed rows read past the end",
        _value("a_offsets", np.array([0, 16], np.int64)),
        ValueError,
        [r"a_offsets\[1\] = 16"],
    ),
    (
        "gemm",
        "strides not multiples of the item size",
        _odd_strides,
        ValueError,
        ["gemm: a", r"strides \(1, 21, 4\)", "not multiples of its item size"],
    ),
    ("gemm", "a misaligned", _misaligned("a"), ValueError, ["gemm: a is not aligned"]),
    ("gemm", "c read-only", _read_only("c"), ValueError, ["gemm: c is read-only"]),
    ("gemm", "c aliases itself", _aliasing_rows, ValueError, ["gemm: c", "elements that share memory"]),
    ("gemm", "c overlaps a", _overlapping("c", "a"), ValueError, [r"gemm: c overlaps a \(shapes"]),
    ("gemm", "c overlaps its offsets", _overlapping("c", "c_offsets"), ValueError, ["gemm: c overlaps c_offsets"]),
    (
        "gemm",
        "bias too long",
        _resized("bias", 1),
        ValueError,
        [r"gemm: bias must have shape \(4,\)", r"got shape \(5,\)"],
    ),
    (
        "gemm_shared_a",
        "bias per column for rows",
        _resized("bias", 1),
        ValueError,
        [r"gemm: bias must have shape \(3,\)"],
    ),
    ("gemm", "bias strided", _strided("bias"), ValueError, ["gemm: bias must be C-contiguous"]),
    ("gemm", "bias overlaps c", _overlapping("bias", "c"), ValueError, ["gemm: bias overlaps c"]),
    ("gemm", "bias_axis out of range", _value("bias_axis", 3), ValueError, ["gemm: bias_axis", "got 3"]),
    ("gemm", "bias_axis without a bias", _value("bias", None), ValueError, ["gemm: bias_axis", "without one"]),
    # conv
    ("conv_forward", "x not an array", _value("x", 1.0), TypeError, ["conv2d_forward: x must be a numpy.ndarray"]),
    ("conv_forward", "x int32", _as("x", np.int32), TypeError, ["conv2d_forward: x must be float32 or float64"]),
    ("conv_forward", "w other float", _as("w", np.float16), TypeError, ["conv2d_forward: w must have dtype"]),
    ("conv_forward", "bias other float", _as("bias", np.float16), TypeError, ["conv2d_forward: bias must have dtype"]),
    ("conv_forward", "y other float", _as("y", np.float16), TypeError, ["conv2d_forward: y must have dtype"]),
    ("conv_forward", "x 3-D", _reshaped("x", _X[1:]), ValueError, [r"conv2d_forward: x must be 4-D \(N, C, H, W\)"]),
    ("conv_forward", "w for other groups", _reshaped("w", (6, 4, 3, 3)), ValueError, ["conv2d_forward: groups=2", "w"]),
    (
        "conv_forward",
        "groups not dividing C",
        _value("groups", 3),
        ValueError,
        ["conv2d_forward: groups=3 must divide"],
    ),
    (
        "conv_forward",
        "stride 0",
        _value("stride", (0, 1)),
        ValueError,
        [r"conv2d_forward: stride must be >= 1, got \(0, 1\)"],
    ),
    (
        "conv_forward",
        "padding negative",
        _value("padding", (1, -1)),
        ValueError,
        ["conv2d_forward: padding must be >= 0"],
    ),
    ("conv_forward", "dilation 0", _value("dilation", (1, 0)), ValueError, ["conv2d_forward: dilation must be >= 1"]),
    (
        "conv_forward",
        "padding past int64",
        _value("padding", (2**62, 0)),
        ValueError,
        ["conv2d_forward: ", "too large"],
    ),
    (
        "conv_forward",
        "y a row short",
        _reshaped("y", (2, 6, 3, 3)),
        ValueError,
        [r"conv2d_forward: y must have shape \(2, 6, 4, 3\)", r"got \(2, 6, 3, 3\)"],
    ),
    ("conv_forward", "y a row long", _reshaped("y", (2, 6, 5, 3)), ValueError, [r"y must have shape \(2, 6, 4, 3\)"]),
    (
        "conv_forward",
        "y other channels",
        _reshaped("y", (2, 5, 4, 3)),
        ValueError,
        [r"y must have shape \(2, 6, 4, 3\)"],
    ),
    (
        "conv_forward",
        "bias too short",
        _resized("bias", -1),
        ValueError,
        [r"conv2d_forward: bias must have shape \(6,\)"],
    ),
    ("conv_forward", "x strided", _strided("x"), ValueError, ["conv2d_forward: x must be C-contiguous"]),
    ("conv_forward", "x misaligned", _misaligned("x"), ValueError, ["conv2d_forward: x is not aligned"]),
    ("conv_forward", "y read-only", _read_only("y"), ValueError, ["conv2d_forward: y is read-only"]),
    ("conv_forward", "y overlaps x", _overlapping("y", "x"), ValueError, ["conv2d_forward: y overlaps x"]),
    ("conv_forward", "y overlaps bias", _overlapping("y", "bias"), ValueError, ["conv2d_forward: y overlaps bias"]),
    ("conv_backward_data", "grad_y too small", _resized("grad_y", -1), ValueError, ["conv2d_backward_data: grad_y"]),
    (
        "conv_backward_data",
        "grad_x strided",
        _strided("grad_x"),
        ValueError,
        ["conv2d_backward_data: grad_x must be C-contig"],
    ),
    (
        "conv_backward_data",
        "grad_x read-only",
        _read_only("grad_x"),
        ValueError,
        ["conv2d_backward_data: grad_x is read-only"],
    ),
    ("conv_backward_data", "grad_x overlaps w", _overlapping("grad_x", "w"), ValueError, ["grad_x overlaps w"]),
    (
        "conv_backward_weight",
        "grad_w other float",
        _as("grad_w", np.float16),
        TypeError,
        ["conv2d_backward_weight: grad_w"],
    ),
    (
        "conv_backward_weight",
        "grad_bias too long",
        _resized("grad_bias", 1),
        ValueError,
        [r"conv2d_backward_weight: grad_bias must have shape \(6,\)"],
    ),
    (
        "conv_backward_weight",
        "grad_bias overlaps grad_w",
        _overlapping("grad_bias", "grad_w"),
        ValueError,
        ["grad_bias overlaps grad_w"],
    ),
    (
        "conv_backward_weight",
        "x too large",
        _resized("x", 1),
        ValueError,
        [r"conv2d_backward_weight: grad_y must have shape"],
    ),
    # lstm
    ("lstm_forward", "x int64", _as("x", np.int64), TypeError, ["lstm_forward: x must be float32 or float64"]),
    ("lstm_forward", "w_ih other float", _as("w_ih", np.float16), TypeError, ["lstm_forward: w_ih must have dtype"]),
    (
        "lstm_forward",
        "h0 not an array",
        _value("h0", [[0.0] * _H] * _B),
        TypeError,
        ["lstm_forward: h0 must be a numpy"],
    ),
    (
        "lstm_forward",
        "w_hh not (4H, H)",
        _reshaped("w_hh", (4 * _H, _H + 1)),
        ValueError,
        [r"lstm_forward: w_hh must have shape \(4H, H\)"],
    ),
    (
        "lstm_forward",
        "w_ih for other inputs",
        _reshaped("w_ih", (4 * _H, _I + 1)),
        ValueError,
        [r"lstm_forward: w_ih must have shape \(20, 4\)"],
    ),
    (
        "lstm_forward",
        "h0 too wide",
        _reshaped("h0", (_B, _H + 1)),
        ValueError,
        [r"lstm_forward: h0 must have shape \(2, 5\)"],
    ),
    (
        "lstm_forward",
        "bias too short",
        _resized("bias", -1),
        ValueError,
        [r"lstm_forward: bias must have shape \(20,\)"],
    ),
    ("lstm_forward", "y a step short", _resized("y", -1), ValueError, [r"lstm_forward: y must have shape \(3, 2, 5\)"]),
    (
        "lstm_forward",
        "gates a unit short",
        _reshaped("gates", (_T, _B, 4 * _H - 1)),
        ValueError,
        [r"lstm_forward: gates must have shape \(3, 2, 20\)"],
    ),
    ("lstm_forward", "cache incomplete", _value("cells", None), ValueError, ["lstm_forward: gates, cells and hidden"]),
    (
        "lstm_forward",
        "empty batch, states of 2 rows",
        _value("x", np.zeros((_T, 0, _I), np.float32)),
        ValueError,
        [r"lstm_forward: h0 must have shape \(0, 5\)"],
    ),
    ("lstm_forward", "h_last strided", _strided("h_last"), ValueError, ["lstm_forward: h_last must be C-contiguous"]),
    ("lstm_forward", "c_last read-only", _read_only("c_last"), ValueError, ["lstm_forward: c_last is read-only"]),
    ("lstm_forward", "y overlaps x", _overlapping("y", "x"), ValueError, ["lstm_forward: y overlaps x"]),
    ("lstm_forward", "hidden overlaps y", _overlapping("hidden", "y"), ValueError, ["lstm_forward: hidden overlaps y"]),
    (
        "lstm_backward",
        "cells a step short",
        _resized("cells", -1),
        ValueError,
        [r"lstm_backward: cells must have shape"],
    ),
    (
        "lstm_backward",
        "hidden other float",
        _as("hidden", np.float16),
        TypeError,
        ["lstm_backward: hidden must have dtype"],
    ),
    ("lstm_backward", "grad_y strided", _strided("grad_y"), ValueError, ["lstm_backward: grad_y must be C-contiguous"]),
    (
        "lstm_backward",
        "grad_bias read-only",
        _read_only("grad_bias"),
        ValueError,
        ["lstm_backward: grad_bias is read-only"],
    ),
    (
        "lstm_backward",
        "grad_w_hh overlaps w_hh",
        _overlapping("grad_w_hh", "w_hh"),
        ValueError,
        ["grad_w_hh overlaps w_hh"],
    ),
    # gru, rnn
    ("gru_forward", "x int64", _as("x", np.int64), TypeError, ["gru_forward: x must be float32 or float64"]),
    (
        "gru_forward",
        "w_hh (4H, H)",
        _reshaped("w_hh", (4 * _H, _H)),
        ValueError,
        [r"gru_forward: w_hh must .*\(3H, H\)"],
    ),
    ("gru_forward", "b_hh too short", _resized("b_hh", -1), ValueError, [r"gru_forward: b_hh must have shape \(15,\)"]),
    ("gru_forward", "gates 3H wide", _reshaped("gates", (_T, _B, 3 * _H)), ValueError, [r"gates must have shape"]),
    ("gru_forward", "cache incomplete", _value("hidden", None), ValueError, ["gru_forward: gates and hidden"]),
    ("gru_forward", "y overlaps x", _overlapping("y", "x"), ValueError, ["gru_forward: y overlaps x"]),
    ("gru_backward", "gates a step short", _resized("gates", -1), ValueError, [r"gru_backward: gates must have shape"]),
    ("gru_backward", "grad_b_hh read-only", _read_only("grad_b_hh"), ValueError, ["grad_b_hh is read-only"]),
    (
        "rnn_forward",
        "w_hh (3H, H)",
        _reshaped("w_hh", (3 * _H, _H)),
        ValueError,
        [r"rnn_forward: w_hh must .*\(H, H\)"],
    ),
    ("rnn_forward", "h_last strided", _strided("h_last"), ValueError, ["rnn_forward: h_last must be C-contiguous"]),
    ("rnn_backward", "hidden other float", _as("hidden", np.float16), TypeError, ["rnn_backward: hidden must have"]),
    ("rnn_backward", "grad_x overlaps x", _overlapping("grad_x", "x"), ValueError, ["grad_x overlaps x"]),
    # variable lengths: batch_sizes (T,) int64, the first B, never increasing, each >= 1
    ("lstm_forward_packed", "batch_sizes int32", _as("batch_sizes", np.int32), TypeError, ["batch_sizes must have"]),
    ("lstm_forward_packed", "batch_sizes short", _resized("batch_sizes", -1), ValueError, ["batch_sizes must have"]),
    ("lstm_forward_packed", "batch_sizes strided", _strided("batch_sizes"), ValueError, ["batch_sizes must be C-"]),
    (
        "lstm_backward_packed",
        "batch_sizes start below B",
        _value("batch_sizes", np.array([1, 1, 1])),
        ValueError,
        [r"batch_sizes must start at B = 2 \(x has T = 3, B = 2\)", r"batch_sizes\[0\] = 1"],
    ),
    (
        "gru_forward_packed",
        "batch_sizes increase",
        _value("batch_sizes", np.array([2, 1, 2])),
        ValueError,
        [r"never increase", r"batch_sizes\[2\] = 2 after 1"],
    ),
    (
        "gru_backward_packed",
        "batch_sizes reach 0",
        _value("batch_sizes", np.array([2, 1, 0])),
        ValueError,
        [r"each >= 1", r"batch_sizes\[2\] = 0"],
    ),
    (
        "rnn_forward_packed",
        "batch_sizes above B",
        _value("batch_sizes", np.array([2, 2, 3])),
        ValueError,
        ["batch_sizes"],
    ),
    ("rnn_backward_packed", "batch_sizes a list", _value("batch_sizes", [2, 1, 1]), TypeError, ["batch_sizes"]),
    # pooling
    ("max_pool", "x float16", _as("x", np.float16), TypeError, ["max_pool2d: x must be float32 or float64"]),
    ("max_pool", "out other float", _as("out", np.float16), TypeError, ["max_pool2d: out must have dtype"]),
    ("max_pool", "indices int32", _as("indices", np.int32), TypeError, ["max_pool2d: indices must have dtype int64"]),
    (
        "max_pool",
        "x a plane short",
        _resized("x", -1),
        ValueError,
        ["max_pool2d: x must have 216 elements", "108 elements"],
    ),
    ("max_pool", "x a plane long", _resized("x", 1), ValueError, ["max_pool2d: x must have 216 elements"]),
    ("max_pool", "out too small", _resized("out", -1), ValueError, ["max_pool2d: out must have 54 elements"]),
    ("max_pool", "x strided", _strided("x"), ValueError, ["max_pool2d: x must be C-contiguous"]),
    ("max_pool", "out read-only", _read_only("out"), ValueError, ["max_pool2d: out is read-only"]),
    ("max_pool", "out overlaps x", _overlapping("out", "x"), ValueError, ["max_pool2d: out overlaps x"]),
    (
        "max_pool",
        "indices overlaps out",
        _overlapping("indices", "out"),
        ValueError,
        ["max_pool2d: indices overlaps out"],
    ),
    (
        "max_pool",
        "stride 0",
        _value("shape", _POOL[:7] + (0,) + _POOL[8:]),
        ValueError,
        [r"max_pool2d: shape\[7\] \(stride_h\) must be >= 1, got 0"],
    ),
    ("max_pool", "planes negative", _value("shape", (-1,) + _POOL[1:]), ValueError, [r"shape\[0\] \(planes\)"]),
    (
        "max_pool",
        "sizes past int64",
        _value("shape", (2**40, 2**40, 2**40) + _POOL[3:]),
        ValueError,
        ["max_pool2d: in_h \\* in_w \\* planes overflows"],
    ),
    (
        "max_pool_backward",
        "indices too small",
        _resized("indices", -1),
        ValueError,
        ["max_pool2d_backward: indices must have 54 elements"],
    ),
    (
        "max_pool_backward",
        "grad_x overlaps grad_out",
        _overlapping("grad_x", "grad_out"),
        ValueError,
        ["grad_x overlaps grad_out"],
    ),
    (
        "avg_pool",
        "dilation",
        _value("shape", _POOL[:11] + (2, 1)),
        ValueError,
        ["avg_pool2d: ", "dilation_h and dilation_w"],
    ),
    ("avg_pool", "out strided", _strided("out"), ValueError, ["avg_pool2d: out must be C-contiguous"]),
    (
        "avg_pool_backward",
        "grad_out too large",
        _resized("grad_out", 1),
        ValueError,
        ["avg_pool2d_backward: grad_out must"],
    ),
    (
        "adaptive_pool",
        "out too large",
        _resized("out", 1),
        ValueError,
        ["adaptive_avg_pool2d: out must have 72 elements"],
    ),
    (
        "adaptive_pool",
        "in_h * out_h past int64",
        _value("shape", (0, 1 << 40, 1, 1 << 40, 1) + (1, 1, 1, 1, 0, 0, 1, 1)),
        ValueError,
        ["adaptive_avg_pool2d: shape's in_h \\* out_h or in_w \\* out_w too large to index"],
    ),
    (
        "adaptive_pool_backward",
        "grad_x read-only",
        _read_only("grad_x"),
        ValueError,
        ["adaptive_avg_pool2d_backward: grad_x is read-only"],
    ),
    # batch normalization
    ("norm_forward", "x int32", _as("x", np.int32), TypeError, ["batch_norm_forward: x must be float32 or float64"]),
    ("norm_forward", "weight other float", _as("weight", np.float16), TypeError, ["batch_norm_forward: weight"]),
    ("norm_forward", "save_mean float32", _as("save_mean", np.float32), TypeError, ["batch_norm_forward: save_mean"]),
    ("norm_forward", "out too small", _resized("out", -1), ValueError, ["batch_norm_forward: out must have 60"]),
    ("norm_forward", "bias too large", _resized("bias", 1), ValueError, ["batch_norm_forward: bias must have 3"]),
    ("norm_forward", "x strided", _strided("x"), ValueError, ["batch_norm_forward: x must be C-contiguous"]),
    ("norm_forward", "running_var read-only", _read_only("running_var"), ValueError, ["running_var is read-only"]),
    ("norm_forward", "out overlaps x", _overlapping("out", "x"), ValueError, ["batch_norm_forward: out overlaps"]),
    (
        "norm_forward",
        "one value per channel",
        _value("shape", (1, 3, 1)),
        ValueError,
        ["batch_norm_forward: training needs more than 1 value per channel"],
    ),
    ("norm_forward", "negative eps", _value("eps", -1.0), ValueError, ["batch_norm_forward: eps must be"]),
    ("norm_forward", "n past 2**62", _value("shape", (1 << 62, 3, 5)), ValueError, [r"shape\[0\] \(n\)"]),
    (
        "norm_backward",
        "grad_x too small",
        _resized("grad_x", -1),
        ValueError,
        ["batch_norm_backward: grad_x must have 60"],
    ),
    ("norm_backward", "x other float", _as("x", np.float16), TypeError, ["batch_norm_backward: x"]),
    (
        "norm_backward",
        "grad_weight overlaps grad_bias",
        _overlapping("grad_weight", "grad_bias"),
        ValueError,
        ["batch_norm_backward: grad_"],
    ),
    # layer and group normalization
    ("layer_norm_forward", "x int32", _as("x", np.int32), TypeError, ["layer_norm_forward: x must be float32"]),
    ("layer_norm_forward", "weight too small", _resized("weight", -1), ValueError, ["layer_norm_forward: weight"]),
    ("layer_norm_forward", "save_rstd float32", _as("save_rstd", np.float32), TypeError, ["save_rstd"]),
    ("layer_norm_forward", "out overlaps x", _overlapping("out", "x"), ValueError, ["layer_norm_forward: out over"]),
    ("layer_norm_forward", "negative eps", _value("eps", -1.0), ValueError, ["layer_norm_forward: eps must be"]),
    ("layer_norm_forward", "NaN eps", _value("eps", float("nan")), ValueError, ["layer_norm_forward: eps must be"]),
    ("layer_norm_forward", "rows past 2**62", _value("shape", (1 << 62, 7)), ValueError, [r"shape\[0\] \(rows\)"]),
    ("layer_norm_forward", "len negative", _value("shape", (6, -7)), ValueError, [r"shape\[1\] \(len\)"]),
    ("layer_norm_forward", "product past int64", _value("shape", (1 << 40, 1 << 40)), ValueError, ["rows \\* len"]),
    ("layer_norm_backward", "x strided", _strided("x"), ValueError, ["layer_norm_backward: x must be C-contiguous"]),
    ("layer_norm_backward", "grad_x too small", _resized("grad_x", -1), ValueError, ["layer_norm_backward: grad_x"]),
    ("layer_norm_backward", "save_mean too small", _resized("save_mean", -1), ValueError, ["save_mean must have 6"]),
    ("layer_norm_backward", "grad_bias read-only", _read_only("grad_bias"), ValueError, ["grad_bias is read-only"]),
    ("group_norm_forward", "groups 4", _value("groups", 4), ValueError, ["group_norm_forward: groups", "c = 6"]),
    ("group_norm_forward", "groups 0", _value("groups", 0), ValueError, ["group_norm_forward: groups"]),
    ("group_norm_forward", "bias too large", _resized("bias", 1), ValueError, ["group_norm_forward: bias must have 6"]),
    ("group_norm_forward", "save_mean too small", _resized("save_mean", -1), ValueError, ["save_mean must have 6"]),
    ("group_norm_backward", "weight float16", _as("weight", np.float16), TypeError, ["group_norm_backward: weight"]),
    (
        "group_norm_backward",
        "grad_weight overlaps grad_bias",
        _overlapping("grad_weight", "grad_bias"),
        ValueError,
        ["group_norm_backward: grad_"],
    ),
    # optimizer steps
    (
        "sgd",
        "params[0] not an array",
        _value(("params", 0), [1.0] * 4),
        TypeError,
        [r"sgd_step: params\[0\] must be a numpy.ndarray"],
    ),
    ("sgd", "params[0] int32", _as(("params", 0), np.int32), TypeError, [r"sgd_step: params\[0\] must be float32 or"]),
    (
        "sgd",
        "grads[1] other float",
        _as(("grads", 1), np.float16),
        TypeError,
        [r"sgd_step: grads\[1\] must have dtype .* \(as params\[0\]\)"],
    ),
    (
        "sgd",
        "grads[1] too small",
        _reshaped(("grads", 1), (5,)),
        ValueError,
        [r"sgd_step: grads\[1\] must have 6 elements"],
    ),
    (
        "sgd",
        "momentum_buffers[0] strided",
        _strided(("momentum_buffers", 0)),
        ValueError,
        [r"sgd_step: momentum_buffers\[0\] must be C-contiguous"],
    ),
    ("sgd", "params[1] read-only", _read_only(("params", 1)), ValueError, [r"sgd_step: params\[1\] is read-only"]),
    (
        "sgd",
        "grads shorter",
        _set("grads", lambda g: g[:1]),
        ValueError,
        ["sgd_step: grads has 1 entries but params has 2"],
    ),
    ("sgd", "first_steps not ints", _value("first_steps", ["yes", 0]), TypeError, ["sgd_step: first_steps"]),
    (
        "adam",
        "exp_avgs[1] is params[1]",
        lambda kw: _put(kw, ("exp_avgs", 1), kw["params"][1]),
        ValueError,
        [r"adam_step: exp_avgs\[1\] overlaps params\[1\]"],
    ),
    (
        "adam",
        "max_exp_avg_sqs[0] overlaps grads[0]",
        _overlapping(("max_exp_avg_sqs", 0), ("grads", 0)),
        ValueError,
        [r"max_exp_avg_sqs\[0\] overlaps grads\[0\]"],
    ),
    ("adam", "steps below 1", _value("steps", [1, 0]), ValueError, ["adam_step: steps must be >= 1"]),
    # across tensors: threads update the tensors at once
    (
        "adam",
        "params[1] overlaps params[0]",
        _overlapping(("params", 1), ("params", 0)),
        ValueError,
        [r"adam_step: params\[1\] overlaps params\[0\]"],
    ),
    (
        "adam",
        "exp_avgs[0] overlaps grads[1]",
        _overlapping(("exp_avgs", 0), ("grads", 1)),
        ValueError,
        [r"adam_step: exp_avgs\[0\] overlaps grads\[1\]"],
    ),
    (
        "sgd",
        "grads[0] overlaps momentum_buffers[1]",
        _overlapping(("grads", 0), ("momentum_buffers", 1)),
        ValueError,
        [r"sgd_step: (grads\[0\] overlaps momentum_buffers\[1\]|momentum_buffers\[1\] overlaps grads\[0\])"],
    ),
    (
        "rmsprop",
        "square_avgs[0] too large",
        _reshaped(("square_avgs", 0), (5,)),
        ValueError,
        [r"rmsprop_step: square_avgs\[0\] must have 4 elements"],
    ),
    (
        "rmsprop",
        "grad_avgs longer",
        _set("grad_avgs", lambda g: g + g[:1]),
        ValueError,
        ["rmsprop_step: grad_avgs has 3"],
    ),
    # activations
    ("relu", "x int32", _as("x", np.int32), TypeError, ["relu: x must be float32 or float64, got dtype int32"]),
    ("relu", "out other float", _as("out", np.float16), TypeError, ["relu: out must have dtype"]),
    ("relu", "out too small", _resized("out", -1), ValueError, ["relu: out must have 15 elements"]),
    ("relu", "x strided", _strided("x"), ValueError, ["relu: x must be C-contiguous"]),
    ("relu", "out read-only", _read_only("out"), ValueError, ["relu: out is read-only"]),
    ("relu", "out overlaps x", _overlapping("out", "x"), ValueError, ["relu: out overlaps x"]),
    (
        "relu_backward",
        "grad too small",
        _resized("grad", -1),
        ValueError,
        ["relu_backward: grad must have 15 elements"],
    ),
    ("gelu", "x not an array", _value("x", [0.5] * 17), TypeError, ["gelu: x must be a numpy.ndarray"]),
    ("gelu", "out misaligned", _misaligned("out"), ValueError, ["gelu: out is not aligned"]),
    ("gelu_backward", "grad other float", _as("grad", np.float16), TypeError, ["gelu_backward: grad must have dtype"]),
    (
        "gelu_backward",
        "out overlaps grad",
        _overlapping("out", "grad"),
        ValueError,
        ["gelu_backward: out overlaps grad"],
    ),
    # attention family
    (
        "attention_forward",
        "q 2-D",
        _reshaped("q", (15, 4)),
        ValueError,
        ["attention_forward: q must be 3-D", r"\(15, 4\)"],
    ),
    ("attention_forward", "k other E", _reshaped("k", (2, 7, 5)), ValueError, ["attention_forward: k must have shape"]),
    ("attention_forward", "v other S", _reshaped("v", (3, 6, 3)), ValueError, ["attention_forward: v must have shape"]),
    (
        "attention_forward",
        "k_index out of range",
        _value("k_index", np.array([0, 2, 1], np.int64)),
        ValueError,
        [r"attention_forward: k_index\[1\] = 2 is out of range for 2 matrices"],
    ),
    ("attention_forward", "k_index int32", _as("k_index", np.int32), TypeError, ["k_index must have dtype int64"]),
    (
        "attention_forward",
        "mask rows",
        _reshaped("mask", (1, 4, 7)),
        ValueError,
        [r"attention_forward: mask must have shape \(Nm, 5 or 1, 7 or 1\), got \(1, 4, 7\)"],
    ),
    ("attention_forward", "mask float32", _as("mask", np.float16), TypeError, ["attention_forward: mask must have"]),
    ("attention_forward", "mask_index None", _value("mask_index", None), TypeError, ["mask_index"]),
    ("attention_forward", "o too small", _resized("o", -1), ValueError, ["attention_forward: o must have shape"]),
    ("attention_forward", "o overlaps q", _overlapping("o", "q"), ValueError, ["attention_forward: o overlaps q"]),
    ("attention_forward", "lse read-only", _read_only("lse"), ValueError, ["attention_forward: lse is read-only"]),
    (
        "attention_forward",
        "dropout_p 2",
        _value("dropout_p", 2.0),
        ValueError,
        ["attention_forward: dropout_p must be a probability"],
    ),
    ("attention_forward", "seed negative", _value("seed", -1), ValueError, ["attention_forward: seed"]),
    ("attention_backward", "grad strided", _strided("grad"), ValueError, ["attention_backward: grad must be C-contig"]),
    (
        "attention_backward",
        "dk overlaps dv",
        _overlapping("dk", "dv"),
        ValueError,
        ["attention_backward: dv overlaps dk"],
    ),
    ("attention_backward", "dv one problem", _reshaped("dv", (1, 7, 3)), ValueError, ["attention_backward: dv must"]),
    (
        "attention_backward_mask_grad",
        "dmask (1, 5, 7)",
        _reshaped("dmask", (1, 5, 7)),
        ValueError,
        [r"attention_backward: dmask must have shape \(3, 5, 7\)"],
    ),
    (
        "attention_backward_mask_grad",
        "dmask overlaps dq",
        _overlapping("dmask", "dq"),
        ValueError,
        ["attention_backward: (dmask overlaps dq|dq overlaps dmask)"],
    ),
    (
        "attention_backward_mask_grad",
        "dmask without a mask",
        lambda kw: [_value(key, None)(kw) for key in ("mask", "mask_index")],
        ValueError,
        ["attention_backward: dmask", "needs a mask"],
    ),
    # softmax family
    ("softmax", "x too small", _resized("x", -1), ValueError, ["softmax: x must have 30 elements"]),
    ("softmax", "negative size", _value("length", -5), ValueError, ["softmax: outer, length, inner must be >= 0"]),
    ("softmax", "out overlaps x", _overlapping("out", "x"), ValueError, ["softmax: out overlaps x"]),
    ("softmax_backward", "y int32", _as("y", np.int32), TypeError, ["softmax_backward: y must be float32 or float64"]),
    ("softmax_backward", "grad other float", _as("grad", np.float16), TypeError, ["softmax_backward: grad must have"]),
    (
        "cross_entropy_forward",
        "target out of range",
        _value("target", np.array([[0, 3], [4, 2], [1, 1]], np.int64)),
        ValueError,
        ["cross_entropy_forward: target 4 is out of range for 4 classes"],
    ),
    (
        "cross_entropy_forward",
        "target int32",
        _as("target", np.int32),
        TypeError,
        ["cross_entropy_forward: target must have dtype int64"],
    ),
    (
        "cross_entropy_forward",
        "label_smoothing above 1",
        _value("label_smoothing", 1.5),
        ValueError,
        ["cross_entropy_forward: label_smoothing must be in"],
    ),
    ("cross_entropy_forward", "weight too long", _resized("weight", 1), ValueError, ["cross_entropy_forward: weight"]),
    ("cross_entropy_forward", "stats read-only", _read_only("stats"), ValueError, ["cross_entropy_forward: stats"]),
    (
        "cross_entropy_backward",
        "target negative",
        _value("target", np.array([[0, 3], [-2, 2], [1, 1]], np.int64)),
        ValueError,
        ["cross_entropy_backward: target -2 is out of range"],
    ),
    ("cross_entropy_backward", "stats too small", _resized("stats", -1), ValueError, ["cross_entropy_backward: stats"]),
    ("cross_entropy_backward", "out overlaps x", _overlapping("out", "x"), ValueError, ["cross_entropy_backward: out"]),
    # dropout
    ("dropout", "x int32", _as("x", np.int32), TypeError, ["dropout: x must be float32 or float64"]),
    ("dropout", "mask uint8", _as("mask", np.uint8), TypeError, ["dropout: mask must have dtype"]),
    ("dropout", "mask too small", _resized("mask", -1), ValueError, ["dropout: mask must have 21 elements"]),
    ("dropout", "y strided", _strided("y"), ValueError, ["dropout: y must be C-contiguous"]),
    ("dropout", "mask read-only", _read_only("mask"), ValueError, ["dropout: mask is read-only"]),
    ("dropout", "y overlaps x", _overlapping("y", "x"), ValueError, ["dropout: y overlaps x"]),
    ("dropout", "p above 1", _value("p", 1.5), ValueError, [r"dropout: p must be a probability in \[0, 1\], got 1.5"]),
    ("dropout", "p NaN", _value("p", float("nan")), ValueError, ["dropout: p must be a probability"]),
    ("dropout", "seed negative", _value("seed", -1), ValueError, [r"dropout: seed must be in \[0, 2\*\*64\), got -1"]),
    ("dropout", "offset 2**64", _value("offset", 2**64), ValueError, [r"dropout: offset must be in \[0, 2\*\*64\)"]),
    ("dropout", "seed a float", _value("seed", 1.0), TypeError, ["dropout: seed must be an int, got float"]),
    ("dropout", "offset a bool", _value("offset", True), TypeError, ["dropout: offset must be an int, got bool"]),
    ("dropout_backward", "mask float", _as("mask", np.float32), TypeError, ["dropout_backward: mask must have dtype"]),
    ("dropout_backward", "mask strided", _strided("mask"), ValueError, ["dropout_backward: mask must be C-contiguous"]),
    (
        "dropout_backward",
        "out overlaps grad",
        _overlapping("out", "grad"),
        ValueError,
        ["dropout_backward: out overlaps"],
    ),
    ("dropout_backward", "p negative", _value("p", -0.5), ValueError, ["dropout_backward: p must be a probability"]),
]


def _arrays(kw):
    """Every array among the arguments (list entries included)."""
    for value in kw.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, np.ndarray):
                yield item


@pytest.mark.parametrize(
    "case,change,error,needles", [bad[:1] + bad[2:] for bad in BAD], ids=[f"{bad[0]}: {bad[1]}" for bad in BAD]
)
def test_bad_argument_raises_naming_it_and_writes_nothing(case, change, error, needles, rng):
    binding, kw, _ = CALLS[case](rng, F32)
    change(kw)
    before = [(arr, arr.copy()) for arr in _arrays(kw)]
    with raises_naming(error, *needles) as info:
        getattr(_C, binding)(**kw)
    assert str(info.value).startswith(binding + ": "), info.value
    for arr, copy in before:
        np.testing.assert_array_equal(arr, copy)
