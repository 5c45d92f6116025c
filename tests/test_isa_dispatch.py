"""Every family of per-ISA kernels follows the active ISA.

For each family (but roofline, which measures the machine rather than computing a result), each
ISA this CPU supports (the ``isa`` fixture) and float32/float64: the ISA records are reset, public
ops that reach the family run, ``deepkern._C.last_isa(family)`` must then name the active ISA, and
every result must match its float64 NumPy reference (tests/reference.py). The ops cover the
family's kernels: forward and backward passes, both depthwise paths (stride 1 through a bordered
copy, stride 2 direct), each pooling kind.
"""

from __future__ import annotations

import deepkern
import numpy as np
import pytest
from deepkern import ops

from checks import F32, F64, TOL, check, rand
from reference import (
    adam_step_ref,
    adaptive_avg_pool2d_backward_ref,
    adaptive_avg_pool2d_ref,
    attention_backward_ref,
    attention_ref,
    avg_pool2d_backward_ref,
    avg_pool2d_ref,
    conv2d_backward_ref,
    conv2d_ref,
    cross_entropy_backward_ref,
    cross_entropy_ref,
    dropout_backward_ref,
    dropout_ref,
    gelu_backward_ref,
    gelu_ref,
    gru_backward_ref,
    gru_ref,
    log_softmax_ref,
    lstm_backward_ref,
    lstm_ref,
    matmul_ref,
    max_pool2d_backward_ref,
    max_pool2d_ref,
    relu_backward_ref,
    relu_ref,
    rnn_backward_ref,
    rnn_ref,
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

# Optimizer steps are compared by their displacement p - p0 (the bound of tests/test_optim.py):
# float32 rounds each new parameter to its own magnitude, not to the step's.
OPTIM_TOL = {F32: 5e-5, F64: 1e-12}


def _gemm(rng, dtype):
    a, b = rand(rng, (37, 53), dtype), rand(rng, (53, 29), dtype)
    yield "matmul", ops.matmul(a, b), matmul_ref(a, b), None


def _gemm_bf16(rng, dtype):
    """A bfloat16 matmul, its result widened to ``dtype``; bound: bfloat16's rounding."""
    a, b = rand(rng, (37, 53), deepkern.bfloat16), rand(rng, (53, 29), deepkern.bfloat16)
    yield "matmul bfloat16", ops.matmul(a, b).astype(dtype), matmul_ref(a, b), 2.0**-7


def _conv_columns(rng, dtype):
    """A bfloat16 3x3 convolution and its data gradient (both write the GEMM's panels straight from
    the images), widened to ``dtype``; bound: bfloat16's rounding of sums of 117 products. The float32
    forward of that layer (its panels written the same way), widened; bound: float32's."""
    x, w = rand(rng, (3, 13, 5, 6), deepkern.bfloat16), rand(rng, (14, 13, 3, 3), deepkern.bfloat16)
    g = rand(rng, (3, 14, 5, 6), deepkern.bfloat16)
    yield "conv2d bfloat16", ops.conv2d(x, w, padding=1).astype(dtype), conv2d_ref(x, w, padding=1), 2.0**-6
    grad_x = ops.conv2d_backward(g, x, w, padding=1, needs=(True, False, False))[0]
    yield "conv2d grad_x bfloat16", grad_x.astype(dtype), conv2d_backward_ref(g, x, w, padding=1)[0], 2.0**-6
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    yield "conv2d float32", ops.conv2d(x32, w32, padding=1).astype(dtype), conv2d_ref(x32, w32, padding=1), TOL[F32]


def _conv_direct(rng, dtype):
    """A float32 convolution of few input channels (the direct convolution's row tiles, with a partial
    last vector), widened to ``dtype``; bound: float32's."""
    x, w, b = rand(rng, (2, 3, 9, 37), np.float32), rand(rng, (7, 3, 3, 3), np.float32), rand(rng, 7, np.float32)
    yield "conv2d float32", ops.conv2d(x, w, b, padding=1).astype(dtype), conv2d_ref(x, w, b, padding=1), TOL[F32]


def _cast(rng, dtype):
    """float32 to bfloat16 and back through ``_C.cast``; bound: bfloat16's rounding (at most half an ulp, 2**-8)."""
    x = rand(rng, 1037, np.float32)
    narrow, wide = np.empty(x.shape, deepkern.bfloat16), np.empty(x.shape, np.float32)
    deepkern._C.cast(x, narrow)
    deepkern._C.cast(narrow, wide)
    yield "cast float32 -> bfloat16 -> float32", wide.astype(dtype), x.astype(np.float64), 2.0**-8


def _conv(rng, dtype, x_shape, w_shape, **options):
    """conv2d with a bias and its three gradients, each with its reference."""
    x, w, b = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype), rand(rng, w_shape[0], dtype)
    y = ops.conv2d(x, w, b, **options)
    yield "conv2d", y, conv2d_ref(x, w, b, **options), None
    grad_y = rand(rng, y.shape, dtype)
    got = ops.conv2d_backward(grad_y, x, w, **options)
    for name, g, ref in zip(("grad_x", "grad_w", "grad_b"), got, conv2d_backward_ref(grad_y, x, w, **options)):
        yield f"conv2d_backward {name}", g, ref, None


def _conv_winograd(rng, dtype):
    # 3x3, stride 1, 64 channels in and out, 8x8 output: Winograd for forward, data and weight
    # gradients (csrc/cpu/conv/winograd.cpp's winograd_applies and winograd_applies_to_weight_grad).
    yield from _conv(rng, dtype, (2, 64, 8, 8), (64, 64, 3, 3), padding=1)


def _conv_depthwise(rng, dtype):
    yield from _conv(rng, dtype, (2, 6, 9, 11), (12, 1, 3, 3), padding=1, groups=6)  # bordered path
    yield from _conv(rng, dtype, (2, 6, 9, 11), (6, 1, 3, 3), stride=2, padding=1, groups=6)  # direct taps


def _lstm(rng, dtype):
    steps, batch, inputs, hidden = 4, 3, 5, 7
    x = rand(rng, (steps, batch, inputs), dtype)
    h0, c0 = rand(rng, (batch, hidden), dtype), rand(rng, (batch, hidden), dtype)
    w_ih, w_hh = rand(rng, (4 * hidden, inputs), dtype) * 0.5, rand(rng, (4 * hidden, hidden), dtype) * 0.5
    b_ih, b_hh = rand(rng, 4 * hidden, dtype), rand(rng, 4 * hidden, dtype)
    y, h_t, c_t, cache = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, return_cache=True)
    for name, got, ref in zip(("y", "h_T", "c_T"), (y, h_t, c_t), lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh)):
        yield f"lstm {name}", got, ref, None
    grad_y, grad_h, grad_c = rand(rng, y.shape, dtype), rand(rng, h_t.shape, dtype), rand(rng, c_t.shape, dtype)
    got = ops.lstm_backward(grad_y, grad_h, grad_c, x, h0, c0, w_ih, w_hh, cache)
    refs = lstm_backward_ref(grad_y, grad_h, grad_c, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    names = ("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh")
    for name, g, ref in zip(names, got, refs):
        yield f"lstm_backward {name}", g, ref, None
    # the GRU and the RNNs run on the same family's kernels
    names = ("grad_x", "grad_h0", "grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh")
    for kind, gates in (("gru", 3), ("tanh", 1), ("relu", 1)):
        w_ih, w_hh = w_ih[: gates * hidden], w_hh[: gates * hidden]
        b_ih, b_hh = b_ih[: gates * hidden], b_hh[: gates * hidden]
        args = (x, h0, w_ih, w_hh, b_ih, b_hh)
        if kind == "gru":
            y, h_t, cache = ops.gru(*args, return_cache=True)
            got = ops.gru_backward(grad_y, grad_h, x, h0, w_ih, w_hh, cache)
            refs = gru_ref(*args), gru_backward_ref(grad_y, grad_h, *args)
        else:
            y, h_t, cache = ops.rnn(*args, nonlinearity=kind, return_cache=True)
            got = ops.rnn_backward(grad_y, grad_h, x, h0, w_ih, w_hh, cache)
            refs = rnn_ref(*args, nonlinearity=kind), rnn_backward_ref(grad_y, grad_h, *args, nonlinearity=kind)
        for name, out, ref in zip(("y", "h_T"), (y, h_t), refs[0]):
            yield f"{kind} {name}", out, ref, None
        for name, g, ref in zip(names, got, refs[1]):
            yield f"{kind} backward {name}", g, ref, None


def _optim(rng, dtype):
    n = 1000
    p0, grad = rand(rng, n, dtype), rand(rng, n, dtype)
    exp_avg, exp_avg_sq = rand(rng, n, dtype) * 0.1, np.abs(rand(rng, n, dtype)) * 0.01
    options = dict(step=3, lr=0.01, weight_decay=0.1)
    ref_p, ref_m, ref_v, _ = adam_step_ref(p0, grad, exp_avg, exp_avg_sq, **options)
    p = p0.copy()
    ops.adam_step(p, grad, exp_avg, exp_avg_sq, **options)
    displacement = p.astype(np.float64) - p0
    yield "adam_step param - p0", displacement.astype(dtype), ref_p - p0, OPTIM_TOL[np.dtype(dtype)]
    yield "adam_step exp_avg", exp_avg, ref_m, None
    yield "adam_step exp_avg_sq", exp_avg_sq, ref_v, None


def _pool(rng, dtype):
    x = rand(rng, (2, 3, 11, 10), dtype)
    out, indices = ops.max_pool2d(x, 3, 2, 1, return_indices=True)
    ref_out, ref_indices = max_pool2d_ref(x, 3, 2, 1)
    yield "max_pool2d", out, ref_out, None
    assert (indices == ref_indices).all(), "max_pool2d indices"
    grad = rand(rng, out.shape, dtype)
    yield (
        "max_pool2d_backward",
        ops.max_pool2d_backward(grad, x.shape, indices),
        max_pool2d_backward_ref(grad, x.shape, indices),
        None,
    )
    avg = dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)
    out = ops.avg_pool2d(x, **avg)
    yield "avg_pool2d", out, avg_pool2d_ref(x, **avg), None
    grad = rand(rng, out.shape, dtype)
    yield (
        "avg_pool2d_backward",
        ops.avg_pool2d_backward(grad, x.shape, **avg),
        avg_pool2d_backward_ref(grad, x.shape, **avg),
        None,
    )
    out = ops.adaptive_avg_pool2d(x, (4, 3))
    yield "adaptive_avg_pool2d", out, adaptive_avg_pool2d_ref(x, (4, 3)), None
    grad = rand(rng, out.shape, dtype)
    yield (
        "adaptive_avg_pool2d_backward",
        ops.adaptive_avg_pool2d_backward(grad, x.shape),
        adaptive_avg_pool2d_backward_ref(grad, x.shape),
        None,
    )


def _activation(rng, dtype):
    x, grad = rand(rng, 37, dtype), rand(rng, 37, dtype)
    yield "relu", ops.relu(x), relu_ref(x), None
    yield "relu_backward", ops.relu_backward(grad, x), relu_backward_ref(grad, x), None
    for approximate in ("none", "tanh"):
        yield f"gelu {approximate}", ops.gelu(x, approximate=approximate), gelu_ref(x, approximate), None
        yield (
            f"gelu_backward {approximate}",
            ops.gelu_backward(grad, x, approximate=approximate),
            gelu_backward_ref(grad, x, approximate),
            None,
        )


def _softmax(rng, dtype):
    x, grad = rand(rng, (5, 37), dtype), rand(rng, (5, 37), dtype)
    yield "softmax", ops.softmax(x, 1), softmax_ref(x, 1), None
    yield "log_softmax dim 0", ops.log_softmax(x, 0), log_softmax_ref(x, 0), None
    y = ops.softmax(x, 1)
    yield "softmax_backward", ops.softmax_backward(grad, y, 1), softmax_backward_ref(grad, y, 1), None
    t = rng.integers(0, 37, 5)
    loss, stats = ops.cross_entropy(x, t, label_smoothing=0.1)
    yield "cross_entropy", loss, cross_entropy_ref(x, t, label_smoothing=0.1)[0], None
    g = rand(rng, 5, dtype)
    got = ops.cross_entropy_backward(g, x, t, stats, label_smoothing=0.1)
    yield "cross_entropy_backward", got, cross_entropy_backward_ref(g, x, t, label_smoothing=0.1), None


def _dropout(rng, dtype):
    x, grad = rand(rng, 1037, dtype), rand(rng, 1037, dtype)
    y, mask = ops.dropout(x, 0.4, 17, 2**64 - 9)
    y_ref, mask_ref = dropout_ref(x, 0.4, 17, 2**64 - 9)
    yield "dropout mask", mask.astype(dtype), mask_ref.astype(np.float64), None
    yield "dropout", y, y_ref, None
    yield "dropout_backward", ops.dropout_backward(grad, mask, 0.4), dropout_backward_ref(grad, mask, 0.4), None


def _norm(rng, dtype):
    x, grad = rand(rng, (5, 3, 4, 7), dtype), rand(rng, (5, 3, 4, 7), dtype)
    w, b = rand(rng, 3, dtype), rand(rng, 3, dtype)
    out, mean, invstd = ops.batch_norm(x, w, b, training=True)
    yield "batch_norm", out, batch_norm_ref(x, None, None, w, b, training=True)[0], None
    stats = x.astype(np.float64).mean(axis=(0, 2, 3)), x.astype(np.float64).var(axis=(0, 2, 3))
    refs = batch_norm_backward_ref(grad, x, w, *stats, True)
    for name, got, ref in zip(
        ("grad_x", "grad_weight", "grad_bias"), ops.batch_norm_backward(grad, x, w, mean, invstd, True), refs
    ):
        yield f"batch_norm_backward {name}", got, ref, None
    rows, rows_grad = x.reshape(-1, 35), grad.reshape(-1, 35)  # odd rows of 35: vector bodies and tails
    w35, b35 = rand(rng, 35, dtype), rand(rng, 35, dtype)
    out, mean, rstd = ops.layer_norm(rows, 35, w35, b35)
    yield "layer_norm", out, layer_norm_ref(rows, (35,), w35, b35)[0], None
    grads = ops.layer_norm_backward(rows_grad, rows, 35, w35, mean, rstd)
    for name, got, ref in zip(
        ("grad_x", "grad_weight", "grad_bias"), grads, layer_norm_backward_ref(rows_grad, rows, (35,), w35)
    ):
        yield f"layer_norm_backward {name}", got, ref, None
    out, mean, rstd = ops.group_norm(x, 3, w, b)
    yield "group_norm", out, group_norm_ref(x, 3, w, b)[0], None
    grads = ops.group_norm_backward(grad, x, 3, w, mean, rstd)
    for name, got, ref in zip(("grad_x", "grad_weight", "grad_bias"), grads, group_norm_backward_ref(grad, x, 3, w)):
        yield f"group_norm_backward {name}", got, ref, None


def _attention(rng, dtype):
    q, k, v = rand(rng, (2, 70, 9), dtype), rand(rng, (2, 261, 9), dtype), rand(rng, (2, 261, 5), dtype)
    mask = rng.random((70, 261)) < 0.8
    tol = 3e-5 if dtype == np.float32 else None  # sums of hundreds of exponentials and products
    out, lse = ops.scaled_dot_product_attention(q, k, v, mask)
    yield "attention", out, attention_ref(q, k, v, mask), tol
    grad = rand(rng, out.shape, dtype)
    got = ops.scaled_dot_product_attention_backward(grad, q, k, v, out, lse, mask)
    for name, g, ref in zip(("dq", "dk", "dv"), got, attention_backward_ref(grad, q, k, v, mask)):
        yield f"attention backward {name}", g, ref, tol
    out, _ = ops.scaled_dot_product_attention(q, k, v, dropout_p=0.3, seed=5, offset=9)
    yield "attention dropout", out, attention_ref(q, k, v, dropout=(0.3, 5, 9)), tol


# family -> generator of (what, result, float64 reference, tolerance or None for checks.TOL).
FAMILY_OPS = {
    "activation": _activation,
    "attention": _attention,
    "cast": _cast,
    "dropout": _dropout,
    "gemm": _gemm,
    "gemm_bf16": _gemm_bf16,
    "conv_winograd": _conv_winograd,
    "conv_depthwise": _conv_depthwise,
    "conv_columns": _conv_columns,
    "conv_direct": _conv_direct,
    "lstm": _lstm,
    "norm": _norm,
    "optim": _optim,
    "pool": _pool,
    "softmax": _softmax,
}


def test_every_family_but_roofline_is_covered():
    assert set(FAMILY_OPS) == set(deepkern._C.isa_families()) - {"roofline"}


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("family", sorted(FAMILY_OPS))
def test_family_runs_on_the_active_isa(isa, family, dtype, rng):
    deepkern._C.reset_isa_records()
    assert deepkern._C.last_isa(family) is None
    results = list(FAMILY_OPS[family](rng, dtype))  # runs every op before the record is read
    assert deepkern._C.last_isa(family) == isa
    for what, got, ref, tol in results:
        check(got, ref, dtype, f"{family} on {isa}: {what}", tol=tol if tol is not None else TOL[dtype])
