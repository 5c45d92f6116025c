"""2-D convolution on the GPU: forward, data gradient and weight gradient on each precision (FP32 on
the CUDA cores, TF32 with allow_tf32, BF16 for bfloat16 arrays) against float64 NumPy and the CPU
op, over odd sizes, stride, padding (also padding='same' with even kernels), dilation, groups,
zero batch and the weight gradient split along K; outputs prefilled with NaN (written, never read);
the depthwise kernels (groups == channels: stride, dilation, padding beyond half the kernel,
multipliers, the weight gradient bit for bit over two runs) and the 1x1 convolutions on the GEMM,
each checked to take its path; nn.Conv2d forward and backward on 'cuda' tensors; and the refusals of
the binding. The GPU cases
skip, with the reason, where no GPU is usable; the refusals that need none run everywhere."""

from __future__ import annotations

import contextlib

import deepkern as dk
import ml_dtypes
import numpy as np
import pytest
from deepkern import ops
from deepkern.backends import cuda as cuda_backend

from checks import raises_naming
from conftest import on_device, to_host
from reference import conv2d_backward_ref, conv2d_ref

AVAILABLE = dk.cuda.is_available()
BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.dtype(np.float32)
#: Largest error, relative to the same sums over absolute values, per element: FP32 as the CPU's
#: float32; TF32 inputs keep 10 mantissa bits; BF16 inputs are exact (made in bfloat16) and each
#: result is rounded to bfloat16 once.
TOL = {"fp32": 1e-5, "tf32": 2e-3, "bf16": 2e-2}
PRECISIONS = ["fp32", "tf32", "bf16"]

if dk.cuda.is_compiled():
    from deepkern import _cuda


def gpu(test):
    """Marks a test as needing a usable GPU (marker cuda; skipped with the reason elsewhere)."""
    skip = pytest.mark.skipif(not AVAILABLE, reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
    return pytest.mark.cuda(skip(test))


@contextlib.contextmanager
def precision_of(precision: str):
    """float32 convolutions inside run in TF32 when precision is 'tf32', else in FP32."""
    cuda_backend.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        cuda_backend.matmul.allow_tf32 = False


def rand(rng, shape, precision):
    return rng.standard_normal(shape).astype(BF16 if precision == "bf16" else F32)


def f64(a):
    return np.asarray(to_host(a)).astype(np.float64)


def check_scaled(got, ref, scale, precision, what):
    got = f64(got)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite values"
    error = np.abs(got - ref) / np.maximum(scale, 1e-30)
    assert error.max(initial=0.0) <= TOL[precision], f"{what}: max relative error {error.max()}"


# (x shape, w shape, options): odd sizes and every option; the first ones span two 128-tiles of M
# or N, the last splits the weight gradient along K on any GPU (a 16 x 144 weight, K = 8 * 32 * 32).
GEOMETRIES = [
    pytest.param((3, 5, 13, 11), (7, 5, 3, 3), dict(padding=1), id="odd-pad1"),
    pytest.param((2, 3, 9, 10), (130, 3, 3, 2), dict(stride=2), id="n-two-tiles-stride2"),
    pytest.param(
        (2, 6, 15, 12), (9, 2, 3, 3), dict(stride=(2, 1), padding=(2, 1), dilation=(2, 3), groups=3), id="options"
    ),  # fmt: skip
    pytest.param((2, 4, 8, 7), (5, 4, 4, 2), dict(padding="same"), id="same-even"),
    pytest.param((2, 8, 9, 9), (8, 1, 3, 3), dict(padding=1, groups=8), id="depthwise"),
    pytest.param((2, 33, 6, 5), (20, 33, 1, 1), {}, id="1x1"),
    pytest.param((8, 16, 32, 32), (16, 16, 3, 3), dict(padding=1), id="split-k"),
]


@gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("x_shape,w_shape,options", GEOMETRIES)
def test_forward_against_float64_and_the_cpu(rng, precision, x_shape, w_shape, options):
    x, w, b = rand(rng, x_shape, precision), rand(rng, w_shape, precision), rand(rng, w_shape[0], precision)
    with precision_of(precision):
        got = ops.conv2d(*on_device("cuda", x, w, b), **options)
    ref = conv2d_ref(x, w, b, **options)
    scale = conv2d_ref(np.abs(f64(x)), np.abs(f64(w)), np.abs(f64(b)), **options)
    check_scaled(got, ref, scale, precision, "forward")
    if precision == "fp32":  # the CPU op on the same float32 inputs
        check_scaled(got, f64(ops.conv2d(x, w, b, **options)), scale, precision, "forward vs the CPU op")


@gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("x_shape,w_shape,options", GEOMETRIES)
def test_backward_against_float64_and_the_cpu(rng, precision, x_shape, w_shape, options):
    x, w = rand(rng, x_shape, precision), rand(rng, w_shape, precision)
    gy = rand(rng, conv2d_ref(x, w, **options).shape, precision)
    with precision_of(precision):
        grads = ops.conv2d_backward(*on_device("cuda", gy, x, w), **options)
    refs = conv2d_backward_ref(gy, x, w, **options)
    a_gy, a_x, a_w = np.abs(f64(gy)), np.abs(f64(x)), np.abs(f64(w))
    scale_x, scale_w, scale_b = conv2d_backward_ref(a_gy, a_x, a_w, **options)
    for what, got, ref, scale in zip(("grad_x", "grad_w", "grad_b"), grads, refs, (scale_x, scale_w, scale_b)):
        check_scaled(got, ref, scale, precision, what)
    if precision == "fp32":
        cpu = ops.conv2d_backward(gy, x, w, **options)
        for what, got, theirs, scale in zip(("grad_x", "grad_w", "grad_b"), grads, cpu, (scale_x, scale_w, scale_b)):
            check_scaled(got, f64(theirs), scale, precision, f"{what} vs the CPU op")


# (x shape, w shape, options, path): depthwise shapes (3x3 and 5x5 keep their weights in
# registers, 2x3 does not) and 1x1 stride-1 convolutions, which run on the GEMM itself.
PATH_GEOMETRIES = [
    pytest.param((3, 7, 13, 11), (7, 1, 3, 3), dict(padding=1, groups=7), "depthwise", id="dw-odd"),
    pytest.param((2, 5, 17, 14), (5, 1, 3, 3), dict(stride=2, padding=1, groups=5), "depthwise", id="dw-stride2"),
    pytest.param((2, 4, 15, 13), (4, 1, 3, 3), dict(padding=2, dilation=2, groups=4), "depthwise", id="dw-dilation2"),
    pytest.param((1, 3, 9, 10), (3, 1, 3, 3), dict(padding=3, groups=3), "depthwise", id="dw-pad-beyond-half"),
    pytest.param((2, 6, 12, 9), (12, 1, 5, 5), dict(stride=2, padding=2, groups=6), "depthwise", id="dw-5x5-mult2"),
    pytest.param((2, 3, 9, 70), (6, 1, 2, 3), dict(stride=(2, 1), padding=(1, 2), groups=3), "depthwise", id="dw-2x3"),
    # 16 * 32 * 32 positions over 4 channels: the weight gradient splits them on any GPU.
    pytest.param((16, 4, 32, 32), (4, 1, 3, 3), dict(padding=1, groups=4), "depthwise", id="dw-split-positions"),
    pytest.param((3, 40, 7, 9), (24, 40, 1, 1), {}, "gemm_1x1", id="1x1-gemm"),
    pytest.param((2, 16, 8, 8), (8, 16, 1, 1), dict(stride=2), "implicit_gemm", id="1x1-stride2"),
]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("x_shape,w_shape,options,path", PATH_GEOMETRIES)
def test_each_path_against_float64_and_the_cpu(device, rng, precision, x_shape, w_shape, options, path):
    """Forward (with bias), data and weight gradient on the path the shape takes (on the GPU),
    against float64 NumPy and, in FP32, the CPU op; the weight gradient twice, bit for bit the same.
    On the CPU the same checks hold for float32."""
    if device != "cuda" and precision != "fp32":
        pytest.skip("TF32 and BF16 convolutions run on the GPU only")
    x, w, b = rand(rng, x_shape, precision), rand(rng, w_shape, precision), rand(rng, w_shape[0], precision)
    gy = rand(rng, conv2d_ref(x, w, **options).shape, precision)
    dx, dw, db, dgy = on_device(device, x, w, b, gy)

    def check_path():
        if device == "cuda":
            assert _cuda.last_conv2d_path() == path

    with precision_of(precision):
        y = ops.conv2d(dx, dw, db, **options)
        check_path()
        gx = ops.conv2d_backward(dgy, dx, dw, needs=(True, False, False), **options)[0]
        check_path()
        _, gw, gb = ops.conv2d_backward(dgy, dx, dw, needs=(False, True, True), **options)
        _, gw2, gb2 = ops.conv2d_backward(dgy, dx, dw, needs=(False, True, True), **options)
    assert to_host(gw).tobytes() == to_host(gw2).tobytes() and to_host(gb).tobytes() == to_host(gb2).tobytes()
    a_x, a_w, a_b, a_gy = (np.abs(f64(a)) for a in (x, w, b, gy))
    scales = (conv2d_ref(a_x, a_w, a_b, **options), *conv2d_backward_ref(a_gy, a_x, a_w, **options))
    refs = (conv2d_ref(x, w, b, **options), *conv2d_backward_ref(gy, x, w, **options))
    for what, got, ref, scale in zip(("y", "grad_x", "grad_w", "grad_b"), (y, gx, gw, gb), refs, scales):
        check_scaled(got, ref, scale, precision, what)
    if precision == "fp32":
        cpu = (ops.conv2d(x, w, b, **options), *ops.conv2d_backward(gy, x, w, **options))
        for what, got, theirs, scale in zip(("y", "grad_x", "grad_w", "grad_b"), (y, gx, gw, gb), cpu, scales):
            check_scaled(got, f64(theirs), scale, precision, f"{what} vs the CPU op")


@gpu
@pytest.mark.parametrize("precision", PRECISIONS)
def test_depthwise_binding_writes_every_element_of_nan_prefilled_outputs(rng, precision):
    x_shape, w_shape, options = (2, 5, 11, 9), (10, 1, 3, 3), dict(stride=(2, 1), padding=(1, 3), groups=5)
    x, w, b = rand(rng, x_shape, precision), rand(rng, w_shape, precision), rand(rng, 10, precision)
    ref_y = conv2d_ref(x, w, b, **options)
    gy = rand(rng, ref_y.shape, precision)
    dtype = x.dtype
    dx, dw, db, dgy = on_device("cuda", x, w, b, gy)
    y, gx = on_device("cuda", np.full(ref_y.shape, np.nan, dtype), np.full(x_shape, np.nan, dtype))
    gw, gb = on_device("cuda", np.full(w_shape, np.nan, dtype), np.full(10, np.nan, dtype))
    args = ((2, 1), (1, 3), (1, 1), 5, precision)
    _cuda.conv2d_forward(dx, dw, db, y, *args)
    _cuda.conv2d_backward_data(dgy, dw, gx, *args)
    _cuda.conv2d_backward_weight(dgy, dx, gw, gb, *args)
    assert _cuda.last_conv2d_path() == "depthwise"
    a_x, a_w, a_b, a_gy = (np.abs(f64(a)) for a in (x, w, b, gy))
    scales = (conv2d_ref(a_x, a_w, a_b, **options), *conv2d_backward_ref(a_gy, a_x, a_w, **options))
    refs = (ref_y, *conv2d_backward_ref(gy, x, w, **options))
    for what, got, ref, scale in zip(("y", "grad_x", "grad_w", "grad_b"), (y, gx, gw, gb), refs, scales):
        check_scaled(got, ref, scale, precision, what)


@gpu
def test_strided_and_transposed_inputs_are_copied_once(rng):
    """Views that are not C-contiguous (every other column, channels and rows swapped) give the
    results of their contiguous copies: ops copies them through the backend before the kernels."""
    x_store, w_store = rand(rng, (2, 5, 9, 16), "fp32"), rand(rng, (3, 4, 5, 3), "fp32")
    gy_store = rand(rng, (2, 3, 8, 8), "fp32")
    x, w = x_store[:, :, :, ::2], w_store.transpose(0, 2, 1, 3)  # (2, 5, 9, 8), (3, 5, 4, 3)
    dx, dw, dgy = on_device("cuda", x_store, w_store, gy_store)
    dx, dw = dx[:, :, :, ::2], dw.transpose(0, 2, 1, 3)
    options = dict(padding=(1, 1))
    a_x, a_w, a_gy = (np.abs(f64(a)) for a in (x, w, gy_store))
    got = ops.conv2d(dx, dw, **options)
    check_scaled(got, conv2d_ref(x, w, **options), conv2d_ref(a_x, a_w, **options), "fp32", "forward")
    grads = ops.conv2d_backward(dgy, dx, dw, **options)
    refs, scales = conv2d_backward_ref(gy_store, x, w, **options), conv2d_backward_ref(a_gy, a_x, a_w, **options)
    for what, g, ref, scale in zip(("grad_x", "grad_w", "grad_b"), grads, refs, scales):
        check_scaled(g, ref, scale, "fp32", what)


@gpu
@pytest.mark.parametrize("precision", PRECISIONS)
def test_binding_writes_every_element_of_nan_prefilled_outputs(rng, precision):
    x_shape, w_shape, options = (2, 6, 10, 9), (4, 3, 3, 3), dict(stride=(1, 2), padding=(1, 0), dilation=1, groups=2)
    x, w, b = rand(rng, x_shape, precision), rand(rng, w_shape, precision), rand(rng, 4, precision)
    ref_y = conv2d_ref(x, w, b, **options)
    gy = rand(rng, ref_y.shape, precision)
    ref_gx, ref_gw, ref_gb = conv2d_backward_ref(gy, x, w, **options)
    dtype = x.dtype
    dx, dw, db, dgy = on_device("cuda", x, w, b, gy)
    y, gx = on_device("cuda", np.full(ref_y.shape, np.nan, dtype), np.full(x_shape, np.nan, dtype))
    gw, gb = on_device("cuda", np.full(w_shape, np.nan, dtype), np.full(4, np.nan, dtype))
    args = ((1, 2), (1, 0), (1, 1), 2, precision)
    _cuda.conv2d_forward(dx, dw, db, y, *args)
    _cuda.conv2d_backward_data(dgy, dw, gx, *args)
    _cuda.conv2d_backward_weight(dgy, dx, gw, gb, *args)
    a_x, a_w, a_b, a_gy = (np.abs(f64(a)) for a in (x, w, b, gy))
    scales = (conv2d_ref(a_x, a_w, a_b, **options), *conv2d_backward_ref(a_gy, a_x, a_w, **options))
    refs = (ref_y, ref_gx, ref_gw, ref_gb)
    for what, got, ref, scale in zip(("y", "grad_x", "grad_w", "grad_b"), (y, gx, gw, gb), refs, scales):
        check_scaled(got, ref, scale, precision, what)  # NaN left anywhere fails too


@gpu
@pytest.mark.parametrize("precision", PRECISIONS)
def test_zero_batch(rng, precision):
    x, w, b = rand(rng, (0, 3, 5, 5), precision), rand(rng, (4, 3, 3, 3), precision), rand(rng, 4, precision)
    dx, dw, db = on_device("cuda", x, w, b)
    with precision_of(precision):
        y = ops.conv2d(dx, dw, db, padding=1)
        assert y.shape == (0, 4, 5, 5)
        gx, gw, gb = ops.conv2d_backward(on_device("cuda", np.zeros((0, 4, 5, 5), x.dtype)), dx, dw, padding=1)
    assert gx.shape == (0, 3, 5, 5)
    assert np.all(f64(gw) == 0.0) and np.all(f64(gb) == 0.0)


@gpu
def test_allow_tf32_chooses_the_precision_of_float32(rng):
    x, w = rand(rng, (4, 64, 12, 12), "fp32"), rand(rng, (32, 64, 3, 3), "fp32")
    ref = conv2d_ref(x, w, padding=1)
    dx, dw = on_device("cuda", x, w)
    with precision_of("fp32"):
        full = f64(ops.conv2d(dx, dw, padding=1))
    with precision_of("tf32"):
        tf32 = f64(ops.conv2d(dx, dw, padding=1))
    # TF32 keeps 10 mantissa bits of the inputs: over K = 576 its error is far above FP32's.
    assert np.linalg.norm(tf32 - ref) > 10 * np.linalg.norm(full - ref), "allow_tf32=True ran in full FP32"
    assert np.linalg.norm(tf32 - ref) < 1e-2 * np.linalg.norm(ref)


@gpu
def test_nn_conv2d_forward_and_backward_on_cuda(rng):
    x = rng.standard_normal((3, 4, 11, 10)).astype(np.float32)
    layer = dk.nn.Conv2d(4, 6, 3, stride=2, padding=1)
    xs = dk.tensor(x, requires_grad=True)
    out = layer(xs)
    out.sum().backward()
    expected = (out.detach().numpy(), xs.grad.numpy(), layer.weight.grad.numpy(), layer.bias.grad.numpy())
    layer.zero_grad()
    layer.to("cuda")
    xd = dk.tensor(x).to("cuda").requires_grad_()
    got = layer(xd)
    assert got.device.type == "cuda"
    got.sum().backward()
    for what, mine, theirs in zip(
        ("output", "x.grad", "weight.grad", "bias.grad"),
        (
            got.detach().cpu().numpy(),
            xd.grad.cpu().numpy(),
            layer.weight.grad.cpu().numpy(),
            layer.bias.grad.cpu().numpy(),
        ),  # fmt: skip
        expected,
    ):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4, err_msg=what)


@gpu
def test_float64_is_refused_naming_the_op(rng):
    x, w = on_device("cuda", rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)))
    with raises_naming(NotImplementedError, "conv2d_forward", "float64", "cuda"):
        ops.conv2d(x, w)


@gpu
def test_binding_refuses_bad_arguments_naming_them(rng):
    x, w = on_device("cuda", rand(rng, (2, 4, 6, 6), "fp32"), rand(rng, (3, 4, 3, 3), "fp32"))
    y = on_device("cuda", np.zeros((2, 3, 4, 4), np.float32))
    opts = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, precision="fp32")

    def forward(**changes):
        args = dict(x=x, w=w, bias=None, y=y, **opts)
        args.update(changes)
        _cuda.conv2d_forward(**args)

    with raises_naming(TypeError, "w", "float32", "bfloat16"):
        forward(w=on_device("cuda", rand(rng, (3, 4, 3, 3), "bf16")))
    with raises_naming(TypeError, "x", "bfloat16", "bf16"):
        forward(precision="bf16")
    with raises_naming(ValueError, "y", r"\(2, 3, 4, 4\)"):
        forward(y=on_device("cuda", np.zeros((2, 3, 5, 4), np.float32)))
    with raises_naming(ValueError, "groups=2"):
        forward(groups=2)
    with raises_naming(ValueError, "stride", ">= 1"):
        forward(stride=(0, 1))
    with raises_naming(ValueError, "w", "4-D"):
        forward(w=on_device("cuda", rand(rng, (3, 4, 9), "fp32")))
    with raises_naming(ValueError, "bias", r"\(3,\)"):
        forward(bias=on_device("cuda", np.zeros(4, np.float32)))
    with raises_naming(ValueError, "x", "C-contiguous"):
        forward(x=on_device("cuda", rand(rng, (2, 4, 6, 12), "fp32"))[:, :, :, ::2])
    with raises_naming(ValueError, "precision", "fp16"):
        forward(precision="fp16")
    grad_w = on_device("cuda", np.zeros((3, 4, 3, 3), np.float32))
    with raises_naming(ValueError, "grad_bias", "overlaps", "grad_w"):
        _cuda.conv2d_backward_weight(y, x, grad_w, grad_w.reshape(-1)[:3], **opts)
    buf = on_device("cuda", np.zeros(2 * 4 * 6 * 6, np.float32))
    with raises_naming(ValueError, "grad_x", "overlaps", "grad_y"):
        _cuda.conv2d_backward_data(buf[:96].reshape(2, 3, 4, 4), w, buf.reshape(2, 4, 6, 6), **opts)


# --- no GPU needed -----------------------------------------------------------------------------


@pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")
@pytest.mark.parametrize(
    "fn,args",
    [
        ("conv2d_forward", ("x", "w", None, "y")),
        ("conv2d_backward_data", ("grad_y", "w", "grad_x")),
        ("conv2d_backward_weight", ("grad_y", "x", "grad_w", None)),
    ],
)
def test_binding_refuses_host_arrays_naming_them(fn, args):
    host = np.zeros((1, 1, 3, 3), np.float32)
    call = [None if a is None else host for a in args]
    with raises_naming(TypeError, fn, args[0]):
        getattr(_cuda, fn)(*call, (1, 1), (0, 0), (1, 1), 1, "fp32")


def test_precision_follows_the_dtype_and_allow_tf32():
    assert cuda_backend._precision("conv2d_forward", np.zeros(1, BF16)) == "bf16"
    assert cuda_backend._precision("conv2d_forward", np.zeros(1, F32)) == "fp32"
    with precision_of("tf32"):
        assert cuda_backend._precision("conv2d_forward", np.zeros(1, F32)) == "tf32"
        assert cuda_backend._precision("conv2d_forward", np.zeros(1, BF16)) == "bf16"
    with raises_naming(NotImplementedError, "conv2d_backward_data", "float64", "cuda"):
        cuda_backend._precision("conv2d_backward_data", np.zeros(1))
