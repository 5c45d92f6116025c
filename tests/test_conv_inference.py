"""conv2d at inference batch sizes (0 to 5) and ops.ConvPlan (weights packed once).

The forward paths that small batches take (csrc/cpu/conv): the inference plan of conv.cpp (row
blocks of single images spread over the threads; im2col or, for 1x1 stride-1 layers, the planes
themselves), the stride-2 im2col (even and odd columns split once), the depthwise 3x3 planes
accumulated in registers, Winograd with its phases split over the threads (fewer blocks than
threads), Winograd's switch to im2col for few tiles with large weights, and Winograd on packed
weights. Each is reached (``_C.last_conv2d_forward_path`` names the path) and compared with the
float64 NumPy reference under every kernel ISA this CPU supports, at 1 and 2 threads, on
NaN-prefilled outputs and on strided and transposed input views.
"""

from __future__ import annotations

import deepkern
import numpy as np
import pytest
from deepkern import ops

from checks import (
    F32,
    F64,
    active_isa,
    check,
    check_non_finite,
    poison_heap,
    raises_naming,
    rand,
    runs_transposed,
    winograd_tile,
)
from conftest import TESTED_ISAS
from reference import conv2d_backward_ref, conv2d_ref

DTYPES = [F32, F64]


def _path():
    return deepkern._C.last_conv2d_forward_path()


def _shifted_planes(x, w, options):
    """Whether each row of the layer's col(X) is its input plane shifted: stride 1, dilation 1 along
    the width and an output as wide as the input, and not a 1x1 layer without padding (whose columns
    are the input planes themselves: they are read in place)."""
    stride, dilation = (_kernel_options(options)[i] for i in (0, 2))
    padding = _kernel_options(options)[1]
    width = x.shape[3] + 2 * padding[1] - dilation[1] * (w.shape[3] - 1)
    plain_1x1 = w.shape[2:] == (1, 1) and padding == (0, 0)
    return stride == (1, 1) and dilation[1] == 1 and width == x.shape[3] and not plain_1x1


def _direct(x, w, options):
    """Whether the layer's float32 forward is the direct convolution (csrc/cpu/conv/direct.cpp): one
    group, stride 1 or 2 and no dilation along the width, at most 4 input channels and 256 terms
    (C * R * S) per output."""
    stride, _, dilation, groups = _kernel_options(options)
    channels, taps = w.shape[1], w.shape[1] * w.shape[2] * w.shape[3]
    return x.dtype == F32 and groups == 1 and stride[1] in (1, 2) and dilation[1] == 1 and channels <= 4 and taps <= 256


def _expected_path(path, x, w, options):
    """``path``, except that float32 layers with few input channels run the direct convolution, and
    float32 GEMM blocks ("im2col", "im2col_row_blocks") of a layer whose col(X) rows are shifted input
    planes write them straight into the GEMM's panels ("im2col_shifted_panels")."""
    if _direct(x, w, options):
        return "direct"
    shifted = x.dtype == F32 and _shifted_planes(x, w, options)
    return "im2col_shifted_panels" if shifted and path in ("im2col", "im2col_row_blocks") else path


def _run(x, w, b, expected_path, what, **options):
    """conv2d on NaN-prefilled outputs under every ISA: checked against the float64 reference
    (computed once) and the path each call took (_expected_path of ``expected_path``)."""
    expected_path = _expected_path(expected_path, x, w, options)
    ref = conv2d_ref(x, w, b, **options)
    for isa in TESTED_ISAS:
        with active_isa(isa):
            poison_heap((ref.shape, x.dtype))
            got = ops.conv2d(x, w, b, **options)
            assert got.shape == ref.shape, f"{what} isa={isa}: shape {got.shape}, expected {ref.shape}"
            check(got, ref, x.dtype, f"{what} isa={isa}")
            if ref.size:  # a batch of 0 computes nothing
                assert _path() == expected_path, f"{what} isa={isa}: ran on {_path()!r}, expected {expected_path!r}"


# (x shape without the batch, w shape, options, path). The inference plan needs output images of at
# least 512 pixels; each image here has an im2col matrix of over 512 KB, so it is cut into row blocks
# (as many per thread) and even batch 1 keeps 2 threads busy. 1x1 stride-1 layers read the planes in
# place; stride-2 rows with at most 240 output channels are split and written straight into the GEMM's
# packed panels.
ROW_BLOCK_CASES = [
    ((3, 67, 61), (10, 3, 7, 7), dict(stride=2, padding=3), "im2col_packed_panels"),  # stem-like
    ((3, 75, 80), (5, 3, 7, 7), dict(stride=2, padding=3), "im2col_packed_panels"),
    ((3, 47, 45), (241, 3, 7, 7), dict(stride=2, padding=3), "im2col_row_blocks"),  # too many output channels
    ((3, 47, 45), (240, 3, 7, 7), dict(stride=2, padding=(3, 4)), "im2col_packed_panels"),
    ((5, 90, 47), (6, 5, 3, 5), dict(stride=(1, 2), padding=(1, 2)), "im2col_packed_panels"),  # stride 2 across
    ((16, 120, 101), (6, 8, 3, 3), dict(stride=2, padding=(0, 1), groups=2), "im2col_packed_panels"),
    ((16, 48, 45), (6, 8, 3, 3), dict(stride=1, padding=1, groups=2), "im2col_row_blocks"),
    ((12, 50, 29), (4, 12, 3, 3), dict(stride=1, padding=(2, 0), dilation=(2, 1)), "im2col_row_blocks"),
    ((6, 150, 151), (7, 6, 1, 1), dict(), "im2col_row_blocks"),  # 1x1 stride 1: the planes, no im2col
    ((96, 81, 85), (9, 96, 1, 1), dict(stride=2), "im2col_row_blocks"),  # the strided 1x1 downsample
    ((12, 70, 57), (3, 12, 4, 3), dict(stride=2, padding=1, dilation=(1, 2)), "im2col_row_blocks"),  # gather
]


def _run_batches(case, path_of_batch, threads, rng, batches=(0, 1, 2, 3, 4, 5)):
    """_run on the batches of the case (x shape without the batch, w shape, options), with a bias
    and, on a transposed (non-contiguous) view of x, without; path_of_batch(batch): the path expected."""
    x_shape, w_shape, options = case
    for dtype in DTYPES:
        w, b = rand(rng, w_shape, dtype), rand(rng, w_shape[0], dtype)
        for batch in batches:
            x = rand(rng, (batch, *x_shape), dtype)
            what = f"x {x.shape} w {w_shape} {options} {dtype} threads={threads}"
            _run(x, w, b, path_of_batch(batch), what, **options)
            view = np.swapaxes(x, 2, 3).copy().swapaxes(2, 3)
            _run(view, w, None, path_of_batch(batch), f"{what} strided", **options)


@pytest.mark.parametrize("case", ROW_BLOCK_CASES, ids=str)
def test_inference_plan_matches_reference(case, threads, rng):
    # Batches up to 4 take the inference plan; 5 and more the split over images. The output-channel
    # threshold cases (240 and 241 channels) are the costly ones: they run one batch on each side of
    # that rule, the other cases every batch from 0 to 5.
    *case, path = case
    batches = (1, 5) if case[1][0] >= 240 else (0, 1, 2, 3, 4, 5)
    _run_batches(case, lambda batch: path if batch <= 4 else "im2col", threads, rng, batches)


def test_inference_plan_reads_strided_and_transposed_views(threads, rng):
    x = rand(rng, (2, 3, 70, 66), F32)
    w = rand(rng, (8, 3, 7, 7), F32)
    for view in (x[:, :, ::2, :], x.transpose(0, 1, 3, 2), x[::-1, ::-1]):
        _run(view, w, None, "im2col_packed_panels", f"view {view.strides}", stride=2, padding=3)
        _run(view, w[:, :, ::-1, ::-1], None, "im2col_packed_panels", "flipped w", stride=2, padding=3)
        _run(view, w[:, :, :1, :1], None, "im2col_row_blocks", f"view {view.strides} 1x1", stride=2)


def test_depthwise_3x3_planes(threads, rng):
    """The register-accumulated 3x3 taps: forward (from the bias, or zero without one) and data
    gradient (flipped taps), odd sizes, a channel multiplier of 2, batches 0 to 5 (several planes per
    thread, each prefetching the next), strided input views."""
    for dtype in DTYPES:
        for batch in (0, 1, 2, 3, 4, 5):
            x, w, b = rand(rng, (batch, 6, 13, 21), dtype), rand(rng, (12, 1, 3, 3), dtype), rand(rng, 12, dtype)
            what = f"depthwise batch {batch} {dtype} threads={threads}"
            for padding in (1, 0, (2, 1)):
                _run(x, w, b, "depthwise", f"{what} padding {padding}", padding=padding, groups=6)
            _run(x, w, None, "depthwise", f"{what} no bias", padding=1, groups=6)
            wide = rand(rng, (batch, 12, 11, 34), dtype)
            _run(wide[:, ::2, :, ::2], w, b, "depthwise", f"{what} strided view", padding=1, groups=6)
            g = rand(rng, (batch, 12, 13, 21), dtype)
            ref = conv2d_backward_ref(g, x, w, padding=1, groups=6)[0]
            for isa in TESTED_ISAS:
                with active_isa(isa):
                    grad_x, _, _ = ops.conv2d_backward(g, x, w, padding=1, groups=6, needs=(True, False, False))
                check(grad_x, ref, dtype, f"{what} grad_x isa={isa}")


def test_depthwise_other_kernel_sizes(threads, rng):
    """Depthwise layers off the 3x3 path: a 5x5 and a 1x3 window on the bordered planes (stride 1)
    and a 3x3 stride-2 window on the general loops, batches 0 to 5."""
    for dtype in DTYPES:
        for batch in (0, 1, 4, 5):
            x = rand(rng, (batch, 8, 19, 23), dtype)
            for w_shape, options in (
                ((8, 1, 5, 5), dict(padding=2)),
                ((16, 1, 1, 3), dict(padding=(0, 1))),
                ((8, 1, 3, 3), dict(stride=2, padding=1)),
            ):
                w, b = rand(rng, w_shape, dtype), rand(rng, w_shape[0], dtype)
                what = f"depthwise w {w_shape} {options} batch {batch} {dtype} threads={threads}"
                _run(x, w, b, "depthwise", what, groups=8, **options)


# (x shape without the batch, w shape, options): images under 512 output pixels, so a batch of 1
# is one block whose GEMM and im2col (split by input channels) use all the threads, and so is a batch
# up to 4 of a layer with more output channels than the batch has output pixels.
SMALL_IMAGE_CASES = [
    ((7, 11, 13), (5, 7, 3, 3), dict(padding=1)),  # shifted planes
    ((5, 15, 17), (6, 5, 5, 5), dict(stride=2, padding=2)),  # stride-2 split rows
    ((6, 9, 10), (4, 3, 3, 2), dict(padding=(2, 1), dilation=(2, 1), groups=2)),
    ((1, 12, 9), (3, 1, 3, 3), dict(stride=(2, 1))),  # one input channel: one thread builds it
    ((40, 7, 7), (49, 40, 3, 3), dict(padding=1)),  # as many output channels as pixels: not transposed
    ((4, 1, 241), (250, 4, 3, 3), dict(padding=1)),  # 241 pixels: too many to run transposed
]


@pytest.mark.parametrize("case", SMALL_IMAGE_CASES, ids=str)
def test_small_images_split_im2col_over_threads(case, threads, rng):
    _run_batches(case, lambda batch: "im2col", threads, rng, batches=(0, 1, 5))


# (x shape without the batch, w shape, options): float32 layers whose col(X) rows are shifted input
# planes (stride 1, dilation 1 along the width, output as wide as the input), written into the GEMM's
# panels by masked loads: kernels 3x3, 5x5, 1x3, 3x1 and 1x1 with padding, dilation along the height,
# groups, images of 1 to 40 columns (a panel's 32 columns crossing images, or an image crossing
# panels), and one image of several row blocks; 5 input channels or more (fewer: the direct convolution).
SHIFTED_CASES = [
    ((32, 8, 8), (64, 32, 3, 3), dict(padding=1)),  # the digits CNN's second layer
    ((5, 7, 5), (4, 5, 5, 5), dict(padding=2)),
    ((5, 6, 1), (5, 5, 3, 1), dict(padding=(1, 0))),
    ((5, 3, 40), (3, 5, 1, 3), dict(padding=(0, 1))),
    ((5, 5, 6), (6, 5, 1, 1), dict(padding=(1, 0))),
    ((6, 11, 9), (8, 3, 3, 3), dict(padding=(2, 1), dilation=(2, 1), groups=2)),
    ((5, 33, 33), (7, 5, 3, 3), dict(padding=1)),  # 1089 pixels: row blocks at batches up to 4
]


@pytest.mark.parametrize("case", SHIFTED_CASES, ids=str)
def test_shifted_panels_read_only_inside_the_planes(case, threads, rng):
    """The float32 shifted-plane panels (with W packed per call and beforehand, bias and ReLU or not)
    match the float64 reference under every ISA at batches 1 to 5, on an input whose neighbouring
    memory holds NaN (a tap reading padding from outside the array, or another plane, would show),
    into NaN-prefilled outputs."""
    x_shape, w_shape, options = case
    kernel_options = _kernel_options(options)
    w, b = rand(rng, w_shape, F32), rand(rng, w_shape[0], F32)
    for batch in (1, 2, 5):
        values = rand(rng, (batch, *x_shape), F32)
        surrounded = np.full(values.size + 64, np.nan, F32)
        x = surrounded[32:-32].reshape(values.shape)
        x[...] = values
        ref = conv2d_ref(values, w, b, **options)
        for isa in TESTED_ISAS:
            with active_isa(isa):
                packed = deepkern._C.conv2d_pack_gemm_weights(w, x.shape, ref.shape, *kernel_options)
                for gemm_weights in (None, packed):
                    for relu in (False, True):
                        y = np.full(ref.shape, np.nan, F32)
                        deepkern._C.conv2d_forward(x, w, b, y, *kernel_options, None, gemm_weights, relu)
                        what = f"{case} batch {batch} isa={isa} threads={threads} {_path()} relu={relu}"
                        assert _path().startswith("im2col_shifted_panels"), what
                        check(y, np.maximum(ref, 0) if relu else ref, F32, what)


# (x shape without the batch, w shape, options): float32 layers with at most 4 input channels, which the
# direct convolution computes row tile by row tile: stride 1 and 2 along the width (2: rows split into
# phases), stride and dilation along the height, kernels from 1x1 to 8x8 (256 terms per output, wider
# than the image), padding 0 to 3 and uneven, output rows of 1 to 200 pixels (several row tiles, a
# partial last vector), output channels that fill no whole tile (1, 5, 7, 13), and no input channel.
DIRECT_CASES = [
    ((3, 67, 61), (10, 3, 7, 7), dict(stride=2, padding=3)),  # the stem's geometry
    ((1, 8, 8), (13, 1, 3, 3), dict(padding=1)),  # the digits CNN's first layer
    ((4, 9, 200), (7, 4, 2, 3), dict(stride=(3, 1), padding=(0, 2), dilation=(2, 1))),
    ((2, 5, 33), (5, 2, 5, 4), dict(stride=2, padding=(2, 1))),
    ((3, 4, 1), (1, 3, 1, 1), dict()),
    ((1, 30, 131), (6, 1, 7, 1), dict(stride=(1, 2), padding=(3, 0))),
    ((4, 3, 3), (12, 4, 8, 8), dict(padding=3)),
    ((0, 5, 6), (3, 0, 3, 3), dict(padding=1)),  # no input channel: the bias alone
]


@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_direct_convolution_reads_only_its_input(case, threads, rng):
    """The direct convolution (bias and ReLU or not) matches the float64 reference under every ISA at
    batches 0 to 3 and 9 (more blocks of rows than threads), on an input whose neighbouring memory holds
    NaN (a tap reading outside the image would show), into NaN-prefilled outputs; nothing is packed for it."""
    x_shape, w_shape, options = case
    kernel_options = _kernel_options(options)
    w, b = rand(rng, w_shape, F32), rand(rng, w_shape[0], F32)
    for batch in (0, 1, 2, 3, 9):
        values = rand(rng, (batch, *x_shape), F32)
        surrounded = np.full(values.size + 64, np.nan, F32)
        x = surrounded[32:-32].reshape(values.shape)
        x[...] = values
        for bias in (b, None):
            ref = conv2d_ref(values, w, bias, **options)
            for isa in TESTED_ISAS:
                with active_isa(isa):
                    assert deepkern._C.conv2d_pack_gemm_weights(w, x.shape, ref.shape, *kernel_options) is None
                    for relu in (False, True):
                        y = np.full(ref.shape, np.nan, F32)
                        deepkern._C.conv2d_forward(x, w, bias, y, *kernel_options, None, None, relu)
                        what = f"{case} batch {batch} bias {bias is not None} isa={isa} threads={threads} relu={relu}"
                        check(y, np.maximum(ref, 0) if relu else ref, F32, what)
                        assert _path() == ("direct" if ref.size else _path()), what


def test_direct_convolution_non_finite_values_as_the_direct_sum(threads):
    """Inf and NaN give what the direct sum gives (as PyTorch): an infinite weight times the zero padding
    is NaN at the borders, a NaN input reaches the outputs that read it, and ReLU keeps NaN."""
    x = np.ones((1, 3, 9, 40), F32)
    x[0, 1, 4, 20] = np.nan
    w = np.full((5, 3, 3, 3), 0.5, F32)
    w[2, 0, 0, 0] = np.inf
    with np.errstate(invalid="ignore"):
        ref = conv2d_ref(x, w, None, padding=1)
    for isa in TESTED_ISAS:
        with active_isa(isa):
            y = ops.conv2d(x, w, padding=1)
            assert _path() == "direct"
            check_non_finite(y, ref, F32, f"isa={isa} threads={threads}")
            y = np.full(ref.shape, np.nan, F32)
            deepkern._C.conv2d_forward(x, -w, None, y, *_kernel_options(dict(padding=1)), None, None, True)
            check_non_finite(y, np.where(np.isnan(ref), np.nan, np.maximum(-ref, 0)), F32, f"relu isa={isa}")


# (x shape without the batch, w shape, options): blocks with fewer pixels (at most 240) than each
# thread's share of the output channels run as Y^T = col^T W^T, the pixels the GEMM's rows, at batch
# 1 (ResNet's 512-channel 7 x 7 layer); the first case at every batch up to 4 (its weights outnumber
# the batch's pixels, so the batch is one block), then batch 5 on the split over images.
TRANSPOSED_CASES = [
    ((6, 5, 4), (90, 6, 3, 3), dict(padding=1)),
    ((40, 7, 7), (50, 40, 3, 3), dict(padding=1)),  # one more channel than pixels: 1 thread only
    ((40, 7, 7), (98, 40, 3, 3), dict(padding=1)),  # a share of 49 channels on 2 threads: not there
    ((40, 7, 7), (99, 40, 3, 3), dict(padding=1)),  # one more: transposed on 2 threads too
    ((4, 16, 15), (481, 4, 3, 3), dict(padding=1)),  # 240 pixels, the most a transposed block has
    ((8, 9, 11), (240, 4, 3, 3), dict(stride=2, padding=2, dilation=2, groups=2)),
    ((5, 10, 13), (51, 5, 1, 1), dict(stride=(2, 3))),  # a strided 1x1
    ((3, 11, 12), (73, 3, 7, 7), dict(stride=2, padding=3)),  # stride-2 split rows
]


def _transposed_or_not(case, threads):
    """The path a batch of the case takes: transposed while its block's pixels times the threads are
    fewer than the group's output channels (and at most 240), else im2col."""
    x_shape, w_shape, options = case
    pixels = int(np.prod(ops.conv2d(np.zeros((1, *x_shape), F32), np.zeros(w_shape, F32), **options).shape[2:]))
    group_out = w_shape[0] // options.get("groups", 1)

    def path(batch):
        columns = pixels * max(batch, 1)
        transposed = batch <= 4 and columns * threads < group_out and columns <= 240
        return "im2col_transposed" if transposed else "im2col"

    return path


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=str)
def test_few_pixels_run_transposed(case, threads, rng):
    path = _transposed_or_not(case, threads)
    assert path(1) == ("im2col" if case[1][0] in (50, 98) and threads == 2 else "im2col_transposed"), case
    _run_batches(case, path, threads, rng, batches=(0, 1, 2, 3, 4, 5) if case is TRANSPOSED_CASES[0] else (0, 1))


# (x shape without the batch, w shape, options): transposed blocks at least 20 input rows (C/groups x R
# x S) deep per pixel, whose product the GEMM's dot path takes (col^T is built row by row, so that
# both operands run along the sum): at batch 1, and no longer once the batch's pixels make it shallower.
DOT_PATH_CASES = [
    ((24, 3, 3), (40, 24, 3, 3), dict(padding=1)),  # 9 pixels, 216 rows
    ((48, 6, 5), (70, 24, 3, 3), dict(stride=2, padding=1, groups=2)),
    ((30, 4, 4), (45, 30, 3, 3), dict(padding=(0, 1), dilation=(1, 2))),  # 4 pixels, 270 rows
]


@pytest.mark.parametrize("case", DOT_PATH_CASES, ids=str)
def test_transposed_blocks_take_the_dot_path(case, threads, rng):
    """A transposed block deep enough for the GEMM's dot path runs on it (the rows of col^T and the
    weights in place) under every ISA and matches the float64 reference, with a bias and without, on
    NaN-prefilled outputs; batches up to 4 take the dot path while their block has at most 32 pixels and
    at most 1/20 as many pixels as rows, the blocked GEMM on the im2col block after (as C^T = W col
    where that pads less)."""
    x_shape, w_shape, options = case
    conv_path = _transposed_or_not(case, threads)
    pixels = int(np.prod(ops.conv2d(np.zeros((1, *x_shape), F32), np.zeros(w_shape, F32), **options).shape[2:]))
    rows = int(np.prod(w_shape[1:]))
    assert conv_path(1) == "im2col_transposed" and 20 * pixels <= rows, case  # the case reaches the dot path
    for dtype in DTYPES:
        w, b = rand(rng, w_shape, dtype), rand(rng, w_shape[0], dtype)
        for batch in (1, 2, 3, 4):
            x = rand(rng, (batch, *x_shape), dtype)
            for bias in (b, None):
                ref = conv2d_ref(x, w, bias, **options)
                for isa in TESTED_ISAS:
                    what = f"{case} batch {batch} {dtype} isa={isa} threads={threads}"
                    with active_isa(isa):
                        poison_heap((ref.shape, dtype))
                        check(ops.conv2d(x, w, bias, **options), ref, dtype, what)
                        assert _path() == _expected_path(conv_path(batch), x, w, options), what
                        if _path() == "im2col_transposed":  # the blocked GEMM as the narrow-C rule says
                            m, n = pixels * batch, w_shape[0] // options.get("groups", 1)
                            name = deepkern._C.gemm_kernel_name(double_precision=dtype == F64)
                            blocked = "transposed blocked" if runs_transposed(m, n, name) else "blocked"
                            dot = pixels * batch <= 32 and 20 * pixels * batch <= rows  # the dot path's rule
                            expected = "dot" if dot else blocked
                            assert deepkern._C.last_gemm_path() == expected, what


def _kernel_options(options):
    """The kernel bindings' (stride, padding, dilation, groups) of a case's options (ints or pairs)."""
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    return (
        *(pair(options.get(name, default)) for name, default in (("stride", 1), ("padding", 0), ("dilation", 1))),
        options.get("groups", 1),
    )


def _panel_sizes(dtype):
    """The active GEMM kernel's (mr, nr): its name ends in "<mr>x<nr>"."""
    mr, nr = deepkern._C.gemm_kernel_name(np.dtype(dtype) == F64).rsplit(" ", 1)[1].split("x")
    return int(mr), int(nr)


# Layers whose blocks write col(X) as the GEMM's panels, so that W packed beforehand is their A: the
# stride-2 split rows (row blocks of one image) and float32 shifted planes (one image, several, row blocks).
PANEL_CASES = [
    ((3, 37, 33), (10, 3, 7, 7), dict(stride=2, padding=3)),
    ((32, 8, 8), (64, 32, 3, 3), dict(padding=1)),
    ((5, 9, 7), (13, 5, 3, 3), dict(padding=(1, 1), groups=1)),
    ((6, 30, 25), (26, 3, 5, 3), dict(padding=(0, 1), dilation=(2, 1), groups=2)),
]


@pytest.mark.parametrize("case", TRANSPOSED_CASES + PANEL_CASES, ids=str)
def test_blocks_run_on_weights_packed_once(case, threads, rng):
    """conv2d_pack_gemm_weights packs W in the GEMM's panels for exactly the batches whose blocks run
    on them (W^T as B, nr wide, for transposed blocks; W as A, mr tall, for blocks writing col(X) as
    B panels), and the forward on them (any bias, strided x made contiguous) matches the float64
    reference under every ISA; weights packed for another kernel's panel width are not used (the
    forward packs its own) and the result is the same; weights packed from other values change the
    result (they are read)."""
    x_shape, w_shape, options = case
    kernel_options = _kernel_options(options)
    groups = kernel_options[3]
    for dtype in DTYPES:
        w, b = rand(rng, w_shape, dtype), rand(rng, w_shape[0], dtype)
        for batch in (1, 2, 4, 5):
            x = rand(rng, (batch, *x_shape), dtype)
            ref = conv2d_ref(x, w, b, **options)
            packs = {}
            for isa in TESTED_ISAS:
                with active_isa(isa):
                    plain = np.full(ref.shape, np.nan, dtype)
                    deepkern._C.conv2d_forward(x, w, b, plain, *kernel_options)
                    path = _path()
                    packed = deepkern._C.conv2d_pack_gemm_weights(w, x.shape, ref.shape, *kernel_options)
                    what = f"{case} batch {batch} {dtype} isa={isa} threads={threads} {path}"
                    mr, nr = _panel_sizes(dtype)
                    widths = {"im2col_transposed": nr, "im2col_packed_panels": mr, "im2col_shifted_panels": mr}
                    if path not in widths:
                        assert packed is None, what
                        continue
                    width = widths[path]
                    k_group, col_rows = w_shape[0] // groups, int(np.prod(w_shape[1:]))
                    assert packed.shape == (groups, -(-k_group // width), col_rows, width), what
                    assert packed.dtype == dtype and packed.flags.c_contiguous, what
                    packs[isa] = packed
                    y = np.full(ref.shape, np.nan, dtype)
                    deepkern._C.conv2d_forward(x, w, b, y, *kernel_options, gemm_weights=packed)
                    assert _path() == path + "_prepacked", what
                    check(y, ref, dtype, what)
                    # The same products as on W packed per call, but for a transposed block on 2 threads
                    # (it splits the depth when W^T is not packed beforehand).
                    if path != "im2col_transposed" or threads == 1:
                        assert np.array_equal(y, plain), what
                    other = deepkern._C.conv2d_pack_gemm_weights(2 * w, x.shape, ref.shape, *kernel_options)
                    deepkern._C.conv2d_forward(x, w, b, y, *kernel_options, gemm_weights=other)
                    check(y, conv2d_ref(x, 2 * w, b, **options), dtype, what + " weights packed from 2 w")
            for isa in TESTED_ISAS:  # weights packed under each other ISA
                with active_isa(isa):
                    for packed_isa, packed in packs.items():
                        y = np.full(ref.shape, np.nan, dtype)
                        deepkern._C.conv2d_forward(x, w, None, y, *kernel_options, gemm_weights=packed)
                        width = _panel_sizes(dtype)[1 if _path().startswith("im2col_transposed") else 0]
                        assert _path().endswith("_prepacked") == (packed.shape[3] == width), (packed_isa, isa)
                        check(y, ref - b[:, None, None], dtype, f"{case} packed under {packed_isa}, run under {isa}")


# One layer per forward path (x shape, w shape, options, path), at both thread counts.
RELU_CASES = [
    ((1, 16, 9, 9), (16, 1, 3, 3), dict(padding=1, groups=16), "depthwise"),
    ((1, 64, 9, 11), (66, 64, 3, 3), dict(padding=1), "winograd"),
    ((7, 5, 9, 9), (7, 5, 3, 3), dict(padding=(1, 0)), "im2col"),  # blocks of several images
    ((7, 5, 9, 9), (7, 5, 3, 3), dict(padding=1), "im2col"),  # the same, shifted panels in float32
    ((1, 3, 67, 61), (10, 3, 7, 7), dict(stride=2, padding=3), "im2col_packed_panels"),
    ((1, 16, 48, 45), (6, 8, 3, 3), dict(padding=1, groups=2), "im2col_row_blocks"),
    ((1, 40, 7, 7), (99, 40, 3, 3), dict(padding=1), "im2col_transposed"),
]


def test_forward_applies_relu_on_every_path(threads, rng):
    """_C.conv2d_forward(relu=True) is the forward without it (on the same weights, packed or not)
    followed by torch.relu (NaN and -0 kept), bit for bit, on every forward path (the prepacked
    transposed one too, and the transposed one whose depth 2 threads split) and ISA; float32 and float64
    also against the float64 reference, bfloat16 on its paths. A NaN bias channel stays NaN."""
    import ml_dtypes

    ran = set()
    for x_shape, w_shape, options, path in RELU_CASES:
        kernel_options = _kernel_options(options)
        for dtype in (F32, F64, np.dtype(ml_dtypes.bfloat16)):
            x, w, b = (rand(rng, shape, np.float32).astype(dtype) for shape in (x_shape, w_shape, w_shape[0]))
            b[1] = np.nan
            ref = conv2d_ref(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **options)
            for isa in TESTED_ISAS:
                with active_isa(isa):
                    plain, fused = np.full(ref.shape, np.nan, dtype), np.full(ref.shape, -1, dtype)
                    packed = deepkern._C.conv2d_pack_gemm_weights(w, x.shape, ref.shape, *kernel_options)
                    for gemm_weights in (None, packed) if packed is not None else (None,):
                        deepkern._C.conv2d_forward(x, w, b, plain, *kernel_options, None, gemm_weights)
                        deepkern._C.conv2d_forward(x, w, b, fused, *kernel_options, None, gemm_weights, True)
                        ran.add(_path())
                        what = f"{x_shape} {w_shape} {options} {dtype} isa={isa} threads={threads} {_path()}"
                        expected = np.where(plain < 0, np.zeros((), dtype), plain)
                        bits = f"u{dtype.itemsize}"
                        assert np.array_equal(fused.view(bits), expected.view(bits)), what
                        assert np.isnan(fused[:, 1].astype(np.float32)).all(), what
                    if dtype != np.dtype(ml_dtypes.bfloat16):
                        expected = _expected_path(path, x, w, options)
                        assert _path() in (expected, expected + "_prepacked"), what
                        keep = np.arange(ref.shape[1]) != 1
                        check(fused[:, keep], np.maximum(ref[:, keep], 0), dtype, what)
    prepacked = {"im2col_transposed_prepacked", "im2col_packed_panels_prepacked", "im2col_shifted_panels_prepacked"}
    assert {case[3] for case in RELU_CASES} | prepacked <= ran, ran


def test_packed_gemm_weights_are_checked(rng):
    """Bad packed GEMM weights and bad shapes given to the packing raise errors that name them;
    bfloat16 weights (no prepacked path) pack to None."""
    x, w = rand(rng, (1, 40, 7, 7), F32), rand(rng, (99, 40, 3, 3), F32)
    options = _kernel_options(dict(padding=1))
    y_shape = (1, 99, 7, 7)
    packed = deepkern._C.conv2d_pack_gemm_weights(w, x.shape, y_shape, *options)
    assert packed is not None
    y = np.empty(y_shape, F32)
    bad = {
        "3-D": (packed[0], ValueError),
        "width 0": (np.zeros((*packed.shape[:3], 0), F32), ValueError),
        "too few panels": (packed[:, 1:], ValueError),
        "too shallow": (packed[:, :, 1:], ValueError),
        "float64": (packed.astype(F64), TypeError),
        "strided": (np.repeat(packed, 2, axis=3)[..., ::2], ValueError),
        "a list": (packed.tolist(), TypeError),
    }
    for gemm_weights, exc in bad.values():
        with raises_naming(exc, "conv2d_forward", "gemm_weights"):
            deepkern._C.conv2d_forward(x, w, None, y, *options, gemm_weights=gemm_weights)
    with raises_naming(ValueError, "conv2d_pack_gemm_weights", "x_shape", "4 entries"):
        deepkern._C.conv2d_pack_gemm_weights(w, x.shape[1:], y_shape, *options)
    with raises_naming(ValueError, "conv2d_pack_gemm_weights", "y"):
        deepkern._C.conv2d_pack_gemm_weights(w, x.shape, (1, 98, 7, 7), *options)
    with raises_naming(ValueError, "conv2d_pack_gemm_weights", "x"):
        deepkern._C.conv2d_pack_gemm_weights(w, (1, 41, 7, 7), y_shape, *options)
    bf16 = w.astype(deepkern.bfloat16)
    assert deepkern._C.conv2d_pack_gemm_weights(bf16, x.shape, y_shape, *options) is None


WINOGRAD_SPLIT_CASES = [  # (batch, C, H, W, K, padding): batches with fewer image blocks than threads
    (1, 64, 30, 29, 64, 1),
    (1, 70, 17, 18, 65, 2),
    (2, 64, 23, 23, 72, 0),
    (3, 66, 16, 19, 64, (1, 0)),
]


@pytest.mark.parametrize("case", WINOGRAD_SPLIT_CASES, ids=str)
def test_winograd_phases_split_over_threads(case, threads, rng):
    n, c, h, width, k, padding = case
    for dtype in DTYPES:
        x, w, b = rand(rng, (n, c, h, width), dtype), rand(rng, (k, c, 3, 3), dtype), rand(rng, k, dtype)
        _run(x, w, b, "winograd", f"{case} {dtype} threads={threads}", padding=padding)


# (batch, C, H, W, K): Winograd blocks whose K x C weight pairs outnumber their tiles' values (C + K per
# tile point), so the weights are transformed into the GEMMs' packed panels, and the transform and the
# GEMMs split those panels over the threads alike: 3 panels of 32 (65 and 70 channels: the last one
# partly or nearly empty) split unevenly, F(2x2) and F(4x4); blocks run in one region per thread
# (transformed input up to 1 MB), and in phases (256 channels at 14 x 14, batch 2: 1.2 MB).
PANEL_SPLIT_CASES = [
    (1, 64, 6, 6, 70),
    (1, 64, 8, 6, 65),
    (2, 66, 8, 8, 100),
    (1, 80, 12, 12, 96),
    (2, 256, 14, 14, 256),
]


@pytest.mark.parametrize("case", PANEL_SPLIT_CASES, ids=str)
def test_winograd_weights_in_panels_split_over_threads(case, threads, rng):
    n, c, h, width, k = case
    tile = winograd_tile(n, h, width)
    tiles = n * -(-h // tile) * -(-width // tile)
    assert k * c > (c + k) * tiles, case  # the weights outnumber the tiles' values
    for dtype in DTYPES:
        x, w, b = rand(rng, (n, c, h, width), dtype), rand(rng, (k, c, 3, 3), dtype), rand(rng, k, dtype)
        _run(x, w, b, "winograd", f"{case} {dtype} threads={threads}", padding=1)
        _run(x, w, None, "winograd", f"{case} {dtype} threads={threads} no bias", padding=1)
        assert deepkern._C.last_winograd_tile() == tile, case


def test_winograd_needs_enough_tiles_for_large_weights(rng):
    """Above 128 x 128 channel pairs, Winograd needs at most 2048 pairs per F(2x2) tile of the call
    (batch x tiles per image) or 128 tiles; below both im2col + GEMM runs. Small weights stay on
    Winograd at any tile count."""
    x = rand(rng, (8, 520, 8, 8), F32)  # 16 tiles per image
    w = rand(rng, (520, 520, 3, 3), F32)  # 270400 pairs: more than 2048 per tile below 133 tiles
    for batch, path in ((7, "im2col"), (8, "winograd")):
        _run(x[:batch], w, None, path, f"520 channels, batch {batch}", padding=1)
    for batch, path in ((1, "im2col_transposed"), (2, "winograd")):  # 40000 pairs: 2048 per tile from 20
        _run(x[:batch, :200], w[:200, :200], None, path, f"200 channels, batch {batch}", padding=1)
    _run(x[:1, :64], w[:64, :64], None, "winograd", "64 channels", padding=1)


def test_winograd_error_against_float64(rng):
    """Winograd (F(4x4, 3x3) at this size) in float32 stays within a few float32 roundings of the
    float64 reference, with packed and with unpacked weights: the relative error is measured and
    bounded as in test_winograd.py (4.5e-7 sqrt(C))."""
    x, w = rand(rng, (1, 128, 24, 24), F32), rand(rng, (128, 128, 3, 3), F32)
    ref = conv2d_ref(x, w, None, padding=1)
    errors = {}
    for name, weights, path in (
        ("packed", ops.ConvPlan(w, padding=1), "winograd_prepacked"),
        ("unpacked", w, "winograd"),
    ):
        got = ops.conv2d(x, weights, padding=1)
        assert _path() == path and deepkern._C.last_winograd_tile() == 4
        errors[name] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    assert max(errors.values()) < 4.5e-7 * np.sqrt(128), errors


# ---- ConvPlan ------------------------------------------------------------------------------------


def test_plan_packs_the_gemm_weights_per_input_shape(threads, rng):
    """A ConvPlan packs W^T in the GEMM's panels on the first call of each input shape whose forward runs
    transposed, keeps the last MAX_INPUT_SHAPES of them, and every call (under any ISA: another kernel's
    panel width packs per call) matches the float64 reference."""
    for dtype in DTYPES:
        w, b = rand(rng, (99, 40, 3, 3), dtype), rand(rng, 99, dtype)
        plan = ops.ConvPlan(w, padding=1)
        shapes = [(1, 40, 7, 7), (1, 40, 6, 5), (1, 40, 3, 9), (1, 40, 4, 4), (1, 40, 5, 5), (1, 40, 7, 7)]
        for shape in shapes:
            x = rand(rng, shape, dtype)
            ref = conv2d_ref(x, w, b, padding=1)
            for isa in TESTED_ISAS:
                with active_isa(isa):
                    poison_heap((ref.shape, dtype))
                    check(ops.conv2d(x, plan, b), ref, dtype, f"{shape} {dtype} isa={isa} threads={threads}")
                    width = plan._by_input[shape]["gemm_weights"].shape[3]
                    assert _path() == (
                        "im2col_transposed_prepacked" if width == _panel_sizes(dtype)[1] else "im2col_transposed"
                    )
        assert len(plan._by_input) == ops.ConvPlan.MAX_INPUT_SHAPES
        assert list(plan._by_input) == [(1, 40, 3, 9), (1, 40, 4, 4), (1, 40, 5, 5), (1, 40, 7, 7)]
        x = rand(rng, (5, 40, 7, 7), dtype)  # 245 pixels: not transposed; float32 packs W as the GEMM's A
        check(ops.conv2d(x, plan, b), conv2d_ref(x, w, b, padding=1), dtype, "batch 5")
        if dtype == F32:
            packed = plan._by_input[x.shape]["gemm_weights"]
            assert _path() == "im2col_shifted_panels_prepacked" and packed.shape[3] == _panel_sizes(dtype)[0]
        else:
            assert _path() == "im2col" and "gemm_weights" not in plan._by_input[x.shape]
        plan.invalidate()
        assert not plan._by_input


PLAN_CASES = [  # (x shape without the batch, w shape, options, winograd weights packed?)
    ((64, 11, 12), (66, 64, 3, 3), dict(padding=1), True),
    ((64, 10, 10), (64, 64, 3, 3), dict(padding="same"), True),
    ((64, 9, 10), (64, 64, 3, 3), dict(padding=(0, 2)), True),
    ((64, 12, 12), (64, 64, 3, 3), dict(padding=1, stride=2), False),  # strided: never Winograd
    ((64, 12, 12), (64, 32, 3, 3), dict(padding=1, groups=2), False),
    ((63, 12, 12), (64, 63, 3, 3), dict(padding=1), False),  # too few channels
    ((3, 40, 40), (8, 3, 7, 7), dict(stride=2, padding=3), False),
    ((6, 12, 12), (6, 1, 3, 3), dict(padding=1, groups=6), False),
]


@pytest.mark.parametrize("case", PLAN_CASES, ids=str)
def test_plan_matches_the_unpacked_call(case, threads, rng):
    x_shape, w_shape, options, packs = case
    for dtype in DTYPES:
        w, b = rand(rng, w_shape, dtype), rand(rng, w_shape[0], dtype)
        plan = ops.ConvPlan(w, **options)
        assert (plan.winograd_weights is not None) == packs and plan.valid
        for batch in (0, 1, 3, 5):
            x = rand(rng, (batch, *x_shape), dtype)
            ref = conv2d_ref(x, w, b, **options)
            for isa in TESTED_ISAS:
                what = f"plan {case} batch {batch} {dtype} isa={isa}"
                with active_isa(isa):
                    poison_heap((ref.shape, dtype))
                    check(ops.conv2d(x, plan, b), ref, dtype, what)
                    check(ops.conv2d(x, plan, b, **options), ref, dtype, what + " (options repeated)")
        check(ops.conv2d(x[0], plan), conv2d_ref(x[:1], w, None, **options)[0], dtype, what + " unbatched")


def test_plan_keeps_its_weights_until_invalidated(rng):
    w = rand(rng, (64, 64, 3, 3), F32)
    x = rand(rng, (2, 64, 10, 10), F32)
    plan = ops.ConvPlan(w, padding=1)
    expected = conv2d_ref(x, w, None, padding=1)
    w[...] = 0  # the caller changes the weights: the plan holds its copy until invalidated
    check(ops.conv2d(x, plan), expected, F32, "plan after w changed")
    plan.invalidate()
    assert not plan.valid
    with raises_naming(RuntimeError, "conv2d", "invalidated"):
        ops.conv2d(x, plan)
    fresh = ops.ConvPlan(w, padding=1)
    assert not np.any(ops.conv2d(x, fresh))


def test_plan_of_non_finite_weights_packs_none_and_gives_the_direct_sums(rng):
    w = rand(rng, (64, 64, 3, 3), F64)
    w[3, 5, 1, 1] = np.inf
    x = rand(rng, (1, 64, 12, 12), F64)
    plan = ops.ConvPlan(w, padding=1)
    assert plan.winograd_weights is None
    got, ref = ops.conv2d(x, plan), conv2d_ref(x, w, None, padding=1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))


def test_plan_bad_arguments_raise_naming_them(rng):
    w = rand(rng, (64, 64, 3, 3), F32)
    plan = ops.ConvPlan(w, padding=1)
    x = rand(rng, (1, 64, 9, 9), F32)
    with raises_naming(ValueError, "conv2d", "padding=2", "padding=1"):
        ops.conv2d(x, plan, padding=2)
    with raises_naming(ValueError, "conv2d", "stride=2"):
        ops.conv2d(x, plan, stride=2)
    with raises_naming(TypeError, "conv2d", "float64", "float32"):
        ops.conv2d(x.astype(F64), plan)
    with raises_naming(ValueError, "conv2d", "C=63"):
        ops.conv2d(x[:, :63], plan)
    with raises_naming(ValueError, "ConvPlan", "4-D"):
        ops.ConvPlan(w[0])
    with raises_naming(ValueError, "ConvPlan", "groups=3"):
        ops.ConvPlan(w, groups=3)
    with raises_naming(ValueError, "ConvPlan", "stride"):
        ops.ConvPlan(w, stride=0)
    with raises_naming(ValueError, "ConvPlan", "padding"):
        ops.ConvPlan(w, padding="full")
    # The same option written as an int or a pair is the same option.
    check(ops.conv2d(x, plan, padding=(1, 1)), conv2d_ref(x, w, None, padding=1), F32, "padding (1, 1)")
    pair_plan = ops.ConvPlan(w, stride=(2, 2), padding=(1, 1))
    check(ops.conv2d(x, pair_plan, stride=2, padding=1), conv2d_ref(x, w, None, 2, 1), F32, "stride 2")


def test_threads_sharing_a_plan_get_every_result(rng):
    """A plan shared by Python threads calling conv2d on more input shapes than it keeps (its cache
    of packed weights changes under them): every result is right and the cache stays within bounds."""
    import threading

    w = rand(rng, (99, 40, 3, 3), F32)
    plan = ops.ConvPlan(w, padding=1)
    shapes = [(1, 40, h, h) for h in range(3, 11)]
    inputs = {shape: rand(rng, shape, F32) for shape in shapes}
    expected = {shape: conv2d_ref(x, w, None, padding=1) for shape, x in inputs.items()}
    errors = []

    def serve(offset):
        try:
            for i in range(40):
                shape = shapes[(i + offset) % len(shapes)]
                check(ops.conv2d(inputs[shape], plan), expected[shape], F32, f"shape {shape}")
        except Exception as err:  # noqa: BLE001 - reported below, with the thread's error
            errors.append(err)

    workers = [threading.Thread(target=serve, args=(k,)) for k in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors, errors[0]
    assert len(plan._by_input) <= ops.ConvPlan.MAX_INPUT_SHAPES


def test_packed_weights_binding_checks_its_arguments(rng):
    """_C.conv2d_forward's winograd_weights: the exact (36, K, C) shape and dtype, and only for options
    that can take the Winograd path."""
    C = deepkern._C
    opts = ((1, 1), (1, 1), (1, 1), 1)
    w = rand(rng, (64, 64, 3, 3), F32)
    x, y = rand(rng, (1, 64, 16, 16), F32), np.empty((1, 64, 16, 16), F32)
    packed = C.conv2d_pack_winograd_weights(w, *opts)
    assert packed.shape == (36, 64, 64) and packed.dtype == F32
    C.conv2d_forward(x, w, None, y, *opts, winograd_weights=packed)
    check(y, conv2d_ref(x, w, None, padding=1), F32, "binding with packed weights")
    with raises_naming(ValueError, "winograd_weights", r"\(36, 64, 64\)", r"\(36, 64, 63\)"):
        C.conv2d_forward(x, w, None, y, *opts, winograd_weights=packed[:, :, :63])
    with raises_naming(TypeError, "winograd_weights", "float32"):
        C.conv2d_forward(x, w, None, y, *opts, winograd_weights=packed.astype(F64))
    with raises_naming(ValueError, "winograd_weights", "never take the Winograd path"):
        C.conv2d_forward(x, w, None, np.empty((1, 64, 8, 8), F32), (2, 2), (1, 1), (1, 1), 1, winograd_weights=packed)
    assert C.conv2d_pack_winograd_weights(w, (2, 2), (1, 1), (1, 1), 1) is None
    with raises_naming(ValueError, "conv2d_pack_winograd_weights", "w"):
        C.conv2d_pack_winograd_weights(w[0], *opts)
    with raises_naming(ValueError, "conv2d_pack_winograd_weights", "groups"):
        C.conv2d_pack_winograd_weights(w, (1, 1), (1, 1), (1, 1), 0)


@pytest.mark.parametrize("shape", [(1, 64, 8, 8), (1, 128, 14, 14), (2, 64, 12, 13), (16, 64, 8, 8)], ids=str)
def test_winograd_weights_packed_for_an_input_run_as_they_are(shape, threads, rng):
    """conv2d_pack_winograd_weights with x_shape and y_shape packs in the layout that forward reads
    (F(2x2) or F(4x4); the GEMM's panels where the weights outnumber the tiles' values): the forward on
    them runs "winograd_prepacked" and gives bit for bit the output of the forward that transforms w
    itself; weights packed for another input (another layout) are not used, the result the same."""
    C = deepkern._C
    n, c, h, width = shape
    opts = ((1, 1), (1, 1), (1, 1), 1)
    w, b = rand(rng, (c, c, 3, 3), F32), rand(rng, c, F32)
    x = rand(rng, shape, F32)
    packed = C.conv2d_pack_winograd_weights(w, *opts, shape, shape)
    assert packed is not None and packed.shape[0] in (16, 36) and packed.shape[2] % c == 0
    plain, prepacked = (np.full(shape, np.nan, F32) for _ in range(2))
    C.conv2d_forward(x, w, b, plain, *opts)
    assert C.last_conv2d_forward_path() == "winograd"
    C.conv2d_forward(x, w, b, prepacked, *opts, winograd_weights=packed)
    assert C.last_conv2d_forward_path() == "winograd_prepacked"
    np.testing.assert_array_equal(prepacked, plain)
    check(plain, conv2d_ref(x, w, b, padding=1), F32, f"winograd {shape}")
    other_shape = (64 // n, c, h, width)  # another batch: another layout (or the same, then used)
    other = rand(rng, other_shape, F32)
    got, ref = np.empty(other_shape, F32), np.empty(other_shape, F32)
    C.conv2d_forward(other, w, b, got, *opts, winograd_weights=packed)
    C.conv2d_forward(other, w, b, ref, *opts)
    np.testing.assert_array_equal(got, ref)


def test_winograd_weights_of_another_layout_or_shape_are_refused(rng):
    C = deepkern._C
    opts = ((1, 1), (1, 1), (1, 1), 1)
    w = rand(rng, (64, 64, 3, 3), F32)
    x, y = rand(rng, (1, 64, 8, 8), F32), np.empty((1, 64, 8, 8), F32)
    with raises_naming(ValueError, "winograd_weights", r"\(25, 64, 64\)", r"\(36, 64, 64\)", "packed for this input"):
        C.conv2d_forward(x, w, None, y, *opts, winograd_weights=np.zeros((25, 64, 64), F32))
    with raises_naming(ValueError, "winograd_weights", r"\(16, 3, 1344\)"):
        C.conv2d_forward(x, w, None, y, *opts, winograd_weights=np.zeros((16, 3, 21 * 64), F32))
    with raises_naming(ValueError, "conv2d_pack_winograd_weights", "x_shape and y_shape"):
        C.conv2d_pack_winograd_weights(w, *opts, (1, 64, 8, 8))
    with raises_naming(ValueError, "conv2d_pack_winograd_weights", "x_shape", "4 entries"):
        C.conv2d_pack_winograd_weights(w, *opts, (1, 64, 8), (1, 64, 8, 8))
    assert C.conv2d_pack_winograd_weights(w, (2, 2), (1, 1), (1, 1), 1, (1, 64, 8, 8), (1, 64, 4, 4)) is None


def test_empty_batch_on_a_winograd_layer(rng):
    """Batch 0 of a layer that Winograd takes at any batch (small weights): empty outputs and grad_x,
    a zero grad_w, as the reference (the Winograd tiling of an empty batch divided by zero)."""
    x, w = rand(rng, (0, 64, 8, 8), F32), rand(rng, (64, 64, 3, 3), F32)
    g = rand(rng, (0, 64, 8, 8), F32)
    assert ops.conv2d(x, w, padding=1).shape == (0, 64, 8, 8)
    got = ops.conv2d_backward(g, x, w, padding=1)
    for name, value, ref in zip(("grad_x", "grad_w", "grad_b"), got, conv2d_backward_ref(g, x, w, padding=1)):
        assert value.shape == ref.shape, name
        check(value, ref, F32, f"batch 0 {name}")
