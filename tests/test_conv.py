"""The contract of deepkern.ops.conv2d and deepkern.ops.conv2d_backward (PyTorch's F.conv2d).

Every result is compared with the float64 references in tests/reference.py computed from the same
inputs: ||out - ref|| / ||ref|| below 1e-5 for float32 and 1e-12 for float64. The gradients are also
checked against central finite differences in float64 and, where PyTorch is installed, against
torch.nn.functional.conv2d + autograd.

The configurations are a seeded random draw over the space (batch 1 and 3; C and K from 1, odd and
even; H and W from 1 to 37; kernels 1x1, 3x3, 5x5, 7x7, 1x3, 3x1, 5x3; stride 1-3; padding 0-3, pairs,
"same" and "valid"; dilation 1-2; groups 1, 2 and depthwise with K == C and K == 2C) plus named corner
cases. Each one runs on every device (the ``device`` fixture) and every kernel ISA this CPU supports.
conv2d has no ``out`` argument, so before
each call a NaN-filled block of the result's size is freed (NumPy and malloc tend to hand it back to
the next allocation of that size): an element the kernel forgets to write then shows up as NaN.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import sys

import deepkern
import numpy as np
import pytest
from deepkern.ops import conv2d, conv2d_backward

from checks import (
    F32,
    F64,
    TOL,
    active_isa,
    check,
    check_non_finite,
    poison_heap,
    raises_naming,
    rand,
    shape_pattern,
    sprinkle_non_finite,
)
from conftest import TESTED_ISAS, on_device, ones_on, to_host
from reference import conv2d_backward_ref, conv2d_out_size, conv2d_ref

DTYPES = [F32, F64]


# ----------------------------------------------------------------------------------------------
# configurations


@dataclasses.dataclass(frozen=True)
class Cfg:
    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True

    @property
    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def w_shape(self):
        return (self.k, self.c // self.groups, self.r, self.s)

    @property
    def out_hw(self):
        return conv2d_out_size((self.h, self.w), (self.r, self.s), self.stride, self.padding, self.dilation)

    @property
    def out_shape(self):
        return (self.n, self.k) + tuple(self.out_hw)

    @property
    def macs(self) -> int:
        p, q = self.out_hw
        return self.n * self.k * (self.c // self.groups) * self.r * self.s * max(p, 0) * max(q, 0)

    def id(self) -> str:
        def fmt(v):
            return f"{v[0]}x{v[1]}" if isinstance(v, tuple) else str(v)

        return (
            f"n{self.n}-c{self.c}-{self.h}x{self.w}-k{self.k}-{self.r}x{self.s}-st{fmt(self.stride)}"
            f"-pad{fmt(self.padding)}-dil{fmt(self.dilation)}-g{self.groups}" + ("" if self.bias else "-nobias")
        )

    def __str__(self) -> str:
        return (
            f"x {self.x_shape}, w {self.w_shape}, stride={self.stride!r}, padding={self.padding!r}, "
            f"dilation={self.dilation!r}, groups={self.groups}, bias={self.bias}"
        )


KERNELS = [(1, 1), (3, 3), (5, 5), (7, 7), (1, 3), (3, 1), (5, 3)]
MAX_MACS = 300_000  # keeps the float64 references and the whole file fast


def _draw(rng) -> Cfg:
    def pick(values):
        return values[int(rng.integers(len(values)))]

    kind = pick(["dense", "dense", "groups2", "depthwise", "depthwise2"])
    if kind == "dense":
        groups, c, k = 1, pick([1, 2, 3, 4, 5, 7, 8, 13, 16]), pick([1, 2, 3, 5, 8, 16, 17])
    elif kind == "groups2":
        groups, c, k = 2, 2 * pick([1, 2, 3, 5]), 2 * pick([1, 2, 3, 4])
    else:
        c = pick([1, 2, 3, 5, 8, 16])
        groups, k = c, (c if kind == "depthwise" else 2 * c)
    r, s = pick(KERNELS)

    def small_int_or_pair(lo, hi):
        if rng.random() < 0.6:
            return int(rng.integers(lo, hi + 1))
        return (int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)))

    stride = small_int_or_pair(1, 3)
    dilation = small_int_or_pair(1, 2)
    mode = pick(["int", "int", "pair", "same", "valid"])
    if mode == "same":
        padding, stride = "same", 1
    elif mode == "valid":
        padding = "valid"
    elif mode == "int":
        padding = int(rng.integers(0, 4))
    else:
        padding = (int(rng.integers(0, 4)), int(rng.integers(0, 4)))

    def extent(kernel_len):
        # Often small (down to 1, smaller than the kernel), else anything up to 37.
        if rng.random() < 0.35:
            return int(rng.integers(1, kernel_len + 3))
        return int(rng.integers(1, 38))

    return Cfg(
        n=pick([1, 3]),
        c=c,
        h=extent(r),
        w=extent(s),
        k=k,
        r=r,
        s=s,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bool(rng.random() < 0.75),
    )


def _random_configs(count: int, seed: int):
    rng = np.random.default_rng(seed)
    configs, seen = [], set()
    while len(configs) < count:
        cfg = _draw(rng)
        p, q = cfg.out_hw
        if p <= 0 or q <= 0 or cfg.macs > MAX_MACS or cfg.id() in seen:
            continue  # an empty output is an error (tested below), not a configuration
        seen.add(cfg.id())
        configs.append(cfg)
    return configs


#: Named corner cases, each for a reason.
CORNERS = [
    Cfg(1, 3, 1, 1, 4, 3, 3, padding=1),  # 1x1 image, 3x3 kernel all padding but one tap
    Cfg(3, 2, 2, 3, 5, 5, 5, padding=2),  # image smaller than the kernel
    Cfg(1, 4, 1, 37, 3, 1, 3, padding=(0, 1)),  # one row
    Cfg(3, 3, 37, 1, 2, 3, 1, stride=2),  # one column, stride 2
    Cfg(1, 3, 37, 37, 8, 7, 7, stride=2, padding=3),  # ResNet conv1 shape, odd image
    Cfg(3, 8, 15, 15, 16, 1, 1, stride=2),  # 1x1 downsample
    Cfg(1, 5, 10, 11, 3, 1, 1, stride=3),  # stride > kernel: inputs never read
    Cfg(3, 2, 5, 4, 3, 1, 1, padding=3),  # border outputs are the bias only
    Cfg(3, 7, 5, 5, 5, 5, 5),  # output exactly 1x1
    Cfg(1, 1, 6, 7, 1, 3, 3, padding=1),  # C = K = 1
    Cfg(3, 5, 17, 19, 4, 5, 3, stride=(1, 3), padding=(0, 2), dilation=(2, 1)),  # nothing square
    Cfg(3, 3, 9, 8, 4, 2, 2, padding="same"),  # "same", odd total padding (extra at the end)
    Cfg(1, 2, 7, 6, 3, 4, 1, padding="same"),  # "same", 4x1: pads 1 top, 2 bottom
    Cfg(3, 4, 7, 6, 4, 3, 3, padding="same", dilation=2),  # "same" with dilation
    Cfg(1, 3, 11, 9, 2, 5, 3, padding="same", dilation=(1, 2)),  # "same" 5x3 with a dilation pair
    Cfg(3, 4, 6, 4, 5, 5, 3, padding="valid"),  # "valid"
    Cfg(3, 4, 4, 4, 3, 3, 3, padding=1, dilation=2),  # dilated kernel larger than the image
    Cfg(1, 4, 8, 8, 2, 3, 3, stride=2, padding=1, groups=2),  # groups 2, one output channel per group
    Cfg(3, 8, 13, 11, 8, 3, 3, padding=1, groups=8),  # depthwise K == C
    Cfg(1, 5, 9, 12, 10, 3, 3, stride=2, padding=1, groups=5),  # depthwise K == 2C
    Cfg(3, 1, 9, 9, 3, 3, 3, padding=1, groups=1),  # C == 1 (depthwise and dense at once)
    Cfg(1, 33, 9, 9, 17, 3, 3, padding=1),  # channel counts off every vector width
    Cfg(1, 64, 12, 12, 48, 3, 3, padding=1),  # many channels (the fast paths)
    Cfg(3, 16, 37, 37, 16, 3, 3, padding=1, bias=False),  # biggest image, no bias
    Cfg(3, 17, 37, 37, 32, 1, 1),  # 1x1 over an odd image
    Cfg(1, 16, 37, 37, 16, 3, 3, padding=1, groups=16),  # depthwise on the biggest image
    Cfg(3, 3, 6, 5, 6, 3, 5, padding=(3, 4), groups=3),  # depthwise stride 1, pads beyond the kernel
    Cfg(1, 4, 5, 7, 4, 1, 5, padding=(0, 2), groups=4),  # depthwise 1x5, stride 1
    Cfg(1, 6, 16, 16, 9, 7, 7, stride=3, padding=3, dilation=2, groups=3),  # all at once
]

CONFIGS = CORNERS + _random_configs(200, seed=20240607)
BACKWARD_CONFIGS = CORNERS + CONFIGS[len(CORNERS) :: 2]

#: The benchmark's layers (deepkern.bench.conv's suite) at batch 1: (C, H, W, K, R, S, stride, padding, groups).
LAYERS = [
    (64, 56, 56, 64, 3, 3, 1, 1, 1),
    (128, 28, 28, 128, 3, 3, 1, 1, 1),
    (256, 14, 14, 256, 3, 3, 1, 1, 1),
    (3, 224, 224, 64, 7, 7, 2, 3, 1),
    (64, 56, 56, 256, 1, 1, 1, 0, 1),
    (256, 56, 56, 64, 1, 1, 1, 0, 1),
    (128, 56, 56, 128, 3, 3, 1, 1, 128),
    (512, 7, 7, 512, 3, 3, 1, 1, 1),
]


# ----------------------------------------------------------------------------------------------
# helpers


def make_inputs(rng, cfg: Cfg, dtype):
    x = rand(rng, cfg.x_shape, dtype)
    w = rand(rng, cfg.w_shape, dtype)
    b = rand(rng, (cfg.k,), dtype) if cfg.bias else None
    return x, w, b


def check_unread_zero(gx, ref_gx, what):
    """Input positions no output reads (stride > kernel extent) have a gradient of exactly 0."""
    unread = ref_gx == 0.0  # random normal gradients never sum to exactly 0 where something is read
    bad = int(np.count_nonzero(to_host(gx)[unread] != 0.0))
    assert bad == 0, f"{what}: {bad} grad_x elements at input positions no output reads are not 0"


def small_floors(cfg, x, w, b, g=None):
    """For results of a few elements that may cancel: half the norm each has without cancellation,
    at random-sign scale (see reference.magnitude_floor); 0 for larger results."""
    cg = cfg.c // cfg.groups
    taps = cg * cfg.r * cfg.s
    absx, absw = np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64))
    absb = None if b is None else np.abs(b.astype(np.float64))
    if g is None:
        if int(np.prod(cfg.out_shape)) > 64:
            return 0.0
        return 0.5 * float(np.linalg.norm(conv2d_ref(absx, absw, absb, **cfg.kwargs))) / math.sqrt(taps)
    absg = np.abs(g.astype(np.float64))
    npq = g.shape[0] * g.shape[2] * g.shape[3]
    kg_taps = (cfg.k // cfg.groups) * cfg.r * cfg.s
    floor_b = 0.5 * float(np.linalg.norm(absg.sum(axis=(0, 2, 3)))) / math.sqrt(npq)
    if x.size > 64 and w.size > 64:
        return 0.0, 0.0, floor_b
    gx, gw, _ = conv2d_backward_ref(absg, absx, absw, **cfg.kwargs)
    return (
        0.5 * float(np.linalg.norm(gx)) / math.sqrt(kg_taps),
        0.5 * float(np.linalg.norm(gw)) / math.sqrt(npq),
        floor_b,
    )


def run_backward(g, x, w, kwargs, needs=(True, True, True)):
    poison_heap((x.shape, x.dtype), (w.shape, w.dtype), ((w.shape[0],), x.dtype))
    result = conv2d_backward(g, x, w, needs=needs, **kwargs)
    assert isinstance(result, tuple) and len(result) == 3, (
        f"conv2d_backward returned {type(result).__name__} "
        f"of length {len(result) if hasattr(result, '__len__') else '?'}, expected a tuple (grad_x, grad_w, grad_b)"
    )
    return result


# ----------------------------------------------------------------------------------------------
# forward and backward against the float64 references


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", CONFIGS, ids=Cfg.id)
def test_conv2d_forward(device, cfg, dtype, rng):
    x, w, b = make_inputs(rng, cfg, dtype)
    inputs = on_device(device, x, w, b)
    ref = conv2d_ref(x, w, b, **cfg.kwargs)
    floor = small_floors(cfg, x, w, b)
    for isa in TESTED_ISAS:
        with active_isa(isa):
            poison_heap((ref.shape, dtype))
            got = conv2d(*inputs, **cfg.kwargs)
        check(got, ref, dtype, f"conv2d {cfg} {dtype} isa={isa}", floor)
    for a, a0 in zip(inputs, (x, w, b)):
        np.testing.assert_array_equal(to_host(a), a0, err_msg="conv2d modified an input")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", BACKWARD_CONFIGS, ids=Cfg.id)
def test_conv2d_backward(device, cfg, dtype, rng):
    x, w, _ = make_inputs(rng, cfg, dtype)
    g = rand(rng, cfg.out_shape, dtype)
    inputs = on_device(device, g, x, w)
    ref_gx, ref_gw, ref_gb = conv2d_backward_ref(g, x, w, **cfg.kwargs)
    fx, fw, fb = small_floors(cfg, x, w, None, g)
    for isa in TESTED_ISAS:
        with active_isa(isa):
            gx, gw, gb = run_backward(*inputs, cfg.kwargs)
        what = f"conv2d_backward {cfg} {dtype} isa={isa}"
        check(gx, ref_gx, dtype, what + " grad_x", fx)
        check_unread_zero(gx, ref_gx, what)
        check(gw, ref_gw, dtype, what + " grad_w", fw)
        check(gb, ref_gb, dtype, what + " grad_b", fb)
    for a, a0 in zip(inputs, (g, x, w)):
        np.testing.assert_array_equal(to_host(a), a0, err_msg="conv2d_backward modified an input")


def test_configurations_cover_the_space():
    """The drawn list really contains what the module docstring promises (guards edits to _draw)."""
    assert {(c.r, c.s) for c in CONFIGS} >= set(KERNELS)
    strides = {v for c in CONFIGS for v in (c.stride if isinstance(c.stride, tuple) else (c.stride,))}
    assert strides == {1, 2, 3}
    dilations = {v for c in CONFIGS for v in (c.dilation if isinstance(c.dilation, tuple) else (c.dilation,))}
    assert dilations == {1, 2}
    paddings = {type(c.padding).__name__ if not isinstance(c.padding, str) else c.padding for c in CONFIGS}
    assert paddings >= {"int", "tuple", "same", "valid"}
    assert {c.padding for c in CONFIGS if isinstance(c.padding, int)} >= {0, 1, 2, 3}
    assert {c.n for c in CONFIGS} == {1, 3}
    assert any(c.groups == 2 for c in CONFIGS)
    assert any(c.groups == c.c > 1 and c.k == c.c for c in CONFIGS)
    assert any(c.groups == c.c > 1 and c.k == 2 * c.c for c in CONFIGS)
    assert {1, 37} <= {c.h for c in CONFIGS} and {1, 37} <= {c.w for c in CONFIGS}
    assert any(c.h < c.r or c.w < c.s for c in CONFIGS)
    assert 1 in {c.c for c in CONFIGS} and 1 in {c.k for c in CONFIGS}
    assert any(c.c % 2 and c.c > 1 for c in CONFIGS) and any(c.k % 2 and c.k > 1 for c in CONFIGS)


# ----------------------------------------------------------------------------------------------
# finite differences (float64)

FD_CONFIGS = [
    Cfg(2, 3, 5, 6, 4, 3, 3, padding=1),
    Cfg(2, 2, 7, 6, 3, 3, 1, stride=2, padding=(1, 2), dilation=2),
    Cfg(1, 4, 6, 5, 6, 3, 3, stride=(2, 1), padding=1, groups=2),
    Cfg(2, 3, 5, 5, 6, 3, 3, padding=1, groups=3),  # depthwise K == 2C
    Cfg(2, 2, 5, 6, 3, 2, 2, padding="same"),  # asymmetric "same"
    Cfg(1, 2, 7, 8, 2, 5, 3, padding="same", dilation=(1, 2)),
    Cfg(2, 3, 7, 7, 2, 1, 1, stride=3),  # unread inputs
    Cfg(1, 2, 3, 4, 3, 1, 1, padding=3),  # padding only
    Cfg(1, 2, 3, 2, 2, 5, 5, padding=2, stride=2),  # image smaller than the kernel
]


@pytest.mark.parametrize("cfg", FD_CONFIGS, ids=Cfg.id)
def test_conv2d_backward_finite_differences(device, cfg, rng):
    """Central differences of loss = sum(grad_out * conv2d(x, w, b)) at a few random entries of x, w
    and b match conv2d_backward (the loss is linear in each, so only rounding separates them)."""
    x, w, _ = make_inputs(rng, cfg, F64)
    b = rand(rng, (cfg.k,), F64)
    g = rand(rng, cfg.out_shape, F64)

    def loss(x_, w_, b_):
        return float(np.sum(g * to_host(conv2d(*on_device(device, x_, w_, b_), **cfg.kwargs))))

    grads = {name: to_host(grad) for name, grad in zip("xwb", run_backward(*on_device(device, g, x, w), cfg.kwargs))}
    args = dict(x=x, w=w, b=b)
    h = 1e-3
    for name, arr in args.items():
        grad = grads[name]
        assert grad is not None and grad.shape == arr.shape, f"grad_{name}: {grad!r} for shape {arr.shape}"
        for flat in rng.choice(arr.size, size=min(4, arr.size), replace=False):
            idx = np.unravel_index(int(flat), arr.shape)
            plus = {k: v.copy() for k, v in args.items()}
            minus = {k: v.copy() for k, v in args.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            fd = (loss(**{k + "_": v for k, v in plus.items()}) - loss(**{k + "_": v for k, v in minus.items()})) / (
                2 * h
            )
            assert abs(fd - grad[idx]) <= 1e-7 * (1.0 + abs(fd)), (
                f"conv2d_backward {cfg}: grad_{name}{tuple(map(int, idx))} = {grad[idx]!r}, finite difference {fd!r}"
            )


# ----------------------------------------------------------------------------------------------
# needs flags, views, unbatched input


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_conv2d_backward_needs(device, dtype, rng):
    cfg = Cfg(3, 4, 9, 8, 6, 3, 3, stride=2, padding=1, groups=2)
    x, w, _ = make_inputs(rng, cfg, dtype)
    g = rand(rng, cfg.out_shape, dtype)
    refs = conv2d_backward_ref(g, x, w, **cfg.kwargs)
    for needs in itertools.product((False, True), repeat=3):
        got = run_backward(*on_device(device, g, x, w), cfg.kwargs, needs=needs)
        for name, need, gr, ref in zip(("grad_x", "grad_w", "grad_b"), needs, got, refs):
            what = f"conv2d_backward {cfg} {dtype} needs={needs} {name}"
            if need:
                check(gr, ref, dtype, what)
            else:
                assert gr is None, f"{what}: not asked for, got {type(gr).__name__} instead of None"


def _stored(rng, shape, dtype, device):
    return on_device(device, rand(rng, shape, dtype))


def _fortran(rng, shape, dtype, device):
    """Column-major: the transpose of a C-contiguous array holding it, on ``device``."""
    return on_device(device, rand(rng, shape, dtype).T.copy()).T


def _x_view(rng, shape, layout, dtype, device):
    n, c, h, w = shape
    if layout == "nhwc":  # channels-last storage seen as NCHW
        return _stored(rng, (n, h, w, c), dtype, device).transpose(0, 3, 1, 2)
    if layout == "sliced":
        return _stored(rng, (n, 2 * c, h + 3, 2 * w), dtype, device)[:, ::2, 3:, 1::2]
    if layout == "negative":
        return _stored(rng, shape, dtype, device)[::-1, :, ::-1, ::-1]
    if layout == "fortran":
        return _fortran(rng, shape, dtype, device)
    if layout == "swapped":  # non-native byte order
        return on_device(device, rand(rng, shape, dtype).astype(np.dtype(dtype).newbyteorder("S")))
    raise AssertionError(layout)


def _w_view(rng, shape, layout, dtype, device):
    k, c, r, s = shape
    if layout == "hwio":
        return _stored(rng, (r, s, c, k), dtype, device).transpose(3, 2, 0, 1)
    if layout == "negative":
        return _stored(rng, shape, dtype, device)[:, :, ::-1, ::-1]
    if layout == "sliced":
        return _stored(rng, (2 * k, c, r, s + 1), dtype, device)[::2, :, :, 1:]
    if layout == "fortran":
        return _fortran(rng, shape, dtype, device)
    raise AssertionError(layout)


VIEW_PAIRS = [
    ("nhwc", "hwio"),
    ("sliced", "negative"),
    ("negative", "sliced"),
    ("fortran", "fortran"),
    ("swapped", "hwio"),
    ("nhwc", "negative"),
]
VIEW_CONFIGS = [
    Cfg(3, 5, 11, 9, 6, 3, 3, padding=1),
    Cfg(2, 6, 10, 13, 4, 5, 3, stride=2, padding=(2, 1), groups=2),
    Cfg(2, 4, 9, 9, 8, 3, 3, padding="same", dilation=2, groups=4),
    Cfg(1, 16, 12, 12, 24, 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("x_layout,w_layout", VIEW_PAIRS, ids=lambda v: v)
def test_conv2d_views(device, x_layout, w_layout, dtype, rng):
    for cfg in VIEW_CONFIGS:
        x = _x_view(rng, cfg.x_shape, x_layout, dtype, device)
        w = _w_view(rng, cfg.w_shape, w_layout, dtype, device)
        b = _stored(rng, (2 * cfg.k,), dtype, device)[::-2]
        g = _stored(rng, cfg.out_shape[:2] + cfg.out_shape[:1:-1], dtype, device).transpose(0, 1, 3, 2)[:, ::-1]
        assert g.shape == cfg.out_shape
        hx, hw, hb, hg = before = [to_host(a).copy() for a in (x, w, b, g)]
        what = f"{cfg} x {x_layout} strides {x.strides}, w {w_layout} strides {w.strides} {dtype}"
        check(conv2d(x, w, b, **cfg.kwargs), conv2d_ref(hx, hw, hb, **cfg.kwargs), dtype, "conv2d " + what)
        refs = conv2d_backward_ref(hg, hx, hw, **cfg.kwargs)
        for name, got, ref in zip(("grad_x", "grad_w", "grad_b"), run_backward(g, x, w, cfg.kwargs), refs):
            check(got, ref, dtype, f"conv2d_backward {what}, grad_out strides {g.strides}: {name}")
        for a, a0 in zip((x, w, b, g), before):
            np.testing.assert_array_equal(to_host(a), a0, err_msg=f"an input was modified ({what})")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_conv2d_unbatched(device, dtype, rng):
    for cfg in [
        Cfg(1, 3, 9, 8, 4, 3, 3, padding=1),
        Cfg(1, 4, 7, 6, 4, 2, 2, padding="same", groups=2),
        Cfg(1, 3, 12, 11, 6, 5, 3, stride=2, dilation=(1, 2), groups=3),
    ]:
        x, w, b = make_inputs(rng, cfg, dtype)
        x3 = x[0]
        ref = conv2d_ref(x3, w, b, **cfg.kwargs)
        assert ref.shape == cfg.out_shape[1:]
        check(conv2d(*on_device(device, x3, w, b), **cfg.kwargs), ref, dtype, f"conv2d unbatched {cfg} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_conv2d_backward_unbatched(device, dtype, rng):
    """PyTorch's autograd gives an unbatched (C, H, W) gradient for an unbatched input."""
    cfg = Cfg(1, 4, 9, 8, 6, 3, 3, stride=2, padding=1, groups=2)
    x, w, _ = make_inputs(rng, cfg, dtype)
    g = rand(rng, cfg.out_shape[1:], dtype)
    refs = conv2d_backward_ref(g, x[0], w, **cfg.kwargs)
    assert refs[0].shape == x[0].shape
    grads = run_backward(*on_device(device, g, x[0], w), cfg.kwargs)
    for name, got, ref in zip(("grad_x", "grad_w", "grad_b"), grads, refs):
        check(got, ref, dtype, f"conv2d_backward unbatched x {x[0].shape} grad_out {g.shape} {dtype}: {name}")


# ----------------------------------------------------------------------------------------------
# how the work is cut: small images batched into one GEMM, row blocks of big im2col matrices,
# blocks spread over threads (per-thread partial grad_w summed), at 1 and 2 threads

BLOCKING_CONFIGS = [
    Cfg(13, 5, 6, 7, 7, 3, 3, padding=1),  # 42 pixels: up to 13 images per GEMM, uneven split
    Cfg(7, 4, 10, 10, 6, 3, 3, stride=2, padding=1, groups=2),
    Cfg(9, 6, 5, 4, 6, 3, 3, padding=1, groups=6),  # depthwise over a batch
    Cfg(5, 8, 24, 24, 12, 1, 1),  # 576 pixels, 1x1: im2col-free path, one image per block
    Cfg(3, 1024, 10, 37, 4, 3, 3, padding=1, bias=False),  # im2col rows of 37 KB (float32) / 74 KB: several row blocks
    Cfg(2, 16, 37, 37, 8, 5, 5, padding=2, dilation=(2, 1)),  # >= 512 pixels per image
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", BLOCKING_CONFIGS, ids=Cfg.id)
def test_conv2d_blocking(device, cfg, dtype, threads, rng):
    x, w, b = make_inputs(rng, cfg, dtype)
    g = rand(rng, cfg.out_shape, dtype)
    ref = conv2d_ref(x, w, b, **cfg.kwargs)
    refs = conv2d_backward_ref(g, x, w, **cfg.kwargs)
    what = f"{cfg} {dtype} threads={threads}"
    dx, dw, db, dg = on_device(device, x, w, b, g)
    poison_heap((ref.shape, dtype))
    check(conv2d(dx, dw, db, **cfg.kwargs), ref, dtype, "conv2d " + what)
    for name, got, exp in zip(("grad_x", "grad_w", "grad_b"), run_backward(dg, dx, dw, cfg.kwargs), refs):
        check(got, exp, dtype, f"conv2d_backward {what}: {name}")


# ----------------------------------------------------------------------------------------------
# the benchmark's layers at batch 1 (float32 fast paths)


def _layer_id(layer):
    c, h, w, k, r, s, stride, pad, groups = layer
    return f"c{c}-{h}x{w}-k{k}-{r}x{s}-st{stride}-pad{pad}" + (f"-g{groups}" if groups > 1 else "")


@pytest.mark.parametrize("layer", LAYERS, ids=_layer_id)
def test_conv2d_benchmark_layers(device, layer, threads, rng):
    c, h, w_, k, r, s, stride, pad, groups = layer
    cfg = Cfg(1, c, h, w_, k, r, s, stride=stride, padding=pad, groups=groups)
    x, w, b = make_inputs(rng, cfg, F32)
    g = rand(rng, cfg.out_shape, F32)
    ref = conv2d_ref(x, w, b, **cfg.kwargs)
    ref_gx, ref_gw, ref_gb = conv2d_backward_ref(g, x, w, **cfg.kwargs)
    x, w, b, g = on_device(device, x, w, b, g)
    p, q = cfg.out_hw
    # grad_w and grad_b sum over N*P*Q terms: up to 12544 here, past the 4096 the float32 tolerance is
    # stated for, so their bound grows with sqrt(terms / 4096) like a rounding error does.
    reduce_tol = TOL[F32] * max(1.0, math.sqrt(p * q / 4096))
    for isa in TESTED_ISAS:
        with active_isa(isa):
            poison_heap((ref.shape, F32))
            out = conv2d(x, w, b, **cfg.kwargs)
            gx, gw, gb = run_backward(g, x, w, cfg.kwargs)
        what = f"{cfg} float32 isa={isa} threads={threads}"
        check(out, ref, F32, "conv2d " + what)
        check(gx, ref_gx, F32, "conv2d_backward grad_x " + what)
        check(gw, ref_gw, F32, "conv2d_backward grad_w " + what, tol=reduce_tol)
        check(gb, ref_gb, F32, "conv2d_backward grad_b " + what, tol=reduce_tol)


# ----------------------------------------------------------------------------------------------
# against PyTorch (where it is installed)

TORCH_CONFIGS = [
    Cfg(3, 5, 13, 11, 7, 3, 3, padding=1),
    Cfg(2, 3, 23, 21, 8, 7, 7, stride=2, padding=3),
    Cfg(2, 6, 12, 10, 4, 5, 3, stride=(2, 1), padding=(2, 0), dilation=(1, 2), groups=2),
    Cfg(3, 8, 10, 10, 16, 3, 3, padding="same", dilation=2, groups=8),
    Cfg(1, 4, 9, 8, 6, 2, 2, padding="same"),
    Cfg(3, 12, 9, 9, 10, 1, 1, stride=2, padding="valid", bias=False),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("cfg", TORCH_CONFIGS, ids=Cfg.id)
def test_conv2d_matches_torch(device, cfg, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = make_inputs(rng, cfg, F64)
    g = rand(rng, cfg.out_shape, F64)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b if b is not None else np.zeros(cfg.k), requires_grad=True)
    out_t = F.conv2d(xt, wt, bt if cfg.bias else None, **cfg.kwargs)
    if not cfg.bias:  # grad_b of an absent bias is still the sum of grad_out: ask torch for it this way
        out_t = out_t + bt[None, :, None, None]
    out_t.backward(torch.tensor(g))
    torch_results = [out_t.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()]
    names = ("output", "grad_x", "grad_w", "grad_b")
    for dtype in DTYPES:  # float32 against torch's float64 numbers: the float32 tolerance
        xd, wd, gd = x.astype(dtype), w.astype(dtype), g.astype(dtype)
        bd = None if b is None else b.astype(dtype)
        if dtype == F32:  # float64 torch on the same float32-rounded inputs
            xt2, wt2 = (
                torch.tensor(xd.astype(F64), requires_grad=True),
                torch.tensor(wd.astype(F64), requires_grad=True),
            )
            bt2 = torch.tensor(bd.astype(F64) if bd is not None else np.zeros(cfg.k), requires_grad=True)
            o = F.conv2d(xt2, wt2, bt2 if cfg.bias else None, **cfg.kwargs)
            if not cfg.bias:
                o = o + bt2[None, :, None, None]
            o.backward(torch.tensor(gd.astype(F64)))
            expected = [o.detach().numpy(), xt2.grad.numpy(), wt2.grad.numpy(), bt2.grad.numpy()]
        else:
            expected = torch_results
        xd, wd, bd, gd = on_device(device, xd, wd, bd, gd)
        ours = [conv2d(xd, wd, bd, **cfg.kwargs)] + list(run_backward(gd, xd, wd, cfg.kwargs))
        for name, got, exp in zip(names, ours, expected):
            check(got, exp, dtype, f"{cfg} {dtype}: deepkern {name} vs torch")


# ----------------------------------------------------------------------------------------------
# bad input: the right exception, a message naming the argument and the shapes or values


W_NAME = r"\bw\b|weight"
B_NAME = r"\bb\b|bias"


def _x_channels(shape):
    """x named by its shape or by its channel count ("C=3")."""
    c = shape[-3]
    return shape_pattern(shape) + rf"|\bC\s*=\s*{c}\b"


def test_channel_mismatch(device):
    x, w = ones_on(device, (2, 3, 5, 5)), ones_on(device, (4, 2, 3, 3))
    with raises_naming(ValueError, "conv2d", r"\bx\b|input", _x_channels(x.shape), shape_pattern(w.shape)):
        conv2d(x, w)
    with raises_naming(ValueError, "conv2d", r"\bx\b|input", _x_channels(x.shape), shape_pattern(w.shape)):
        conv2d_backward(ones_on(device, (2, 4, 3, 3)), x, w)
    x6 = ones_on(device, (2, 6, 5, 5))
    with raises_naming(ValueError, "conv2d", _x_channels(x6.shape), shape_pattern(w.shape), r"groups\s*=?\s*2"):
        conv2d(x6, w, groups=2)  # 6 != 2 * 2
    with raises_naming(ValueError, "conv2d", _x_channels((3, 5, 5)), shape_pattern(w.shape)):
        conv2d(ones_on(device, (3, 5, 5)), w)  # unbatched


def test_groups_must_divide_channels(device):
    with raises_naming(ValueError, "conv2d", "groups", r"\b2\b", r"\b5\b"):
        conv2d(ones_on(device, (1, 5, 6, 6)), ones_on(device, (4, 2, 3, 3)), groups=2)  # C = 5
    with raises_naming(ValueError, "conv2d", "groups", r"\b2\b", r"\b3\b"):
        conv2d(ones_on(device, (1, 4, 6, 6)), ones_on(device, (3, 2, 3, 3)), groups=2)  # K = 3
    with raises_naming(ValueError, "conv2d", "groups", r"\b2\b", r"\b3\b"):
        conv2d_backward(
            ones_on(device, (1, 3, 4, 4)), ones_on(device, (1, 4, 6, 6)), ones_on(device, (3, 2, 3, 3)), groups=2
        )
    for bad in (0, -1):
        with raises_naming(ValueError, "conv2d", "groups", re.escape(str(bad))):
            conv2d(ones_on(device, (1, 4, 6, 6)), ones_on(device, (4, 4, 3, 3)), groups=bad)


@pytest.mark.parametrize(
    "kwargs,x_shape,w_shape",
    [
        (dict(), (1, 3, 2, 2), (4, 3, 3, 3)),
        (dict(), (2, 3, 5, 2), (4, 3, 3, 3)),
        (dict(dilation=3), (1, 3, 6, 6), (4, 3, 3, 3)),
        (dict(padding="valid"), (1, 2, 4, 9), (2, 2, 5, 5)),
        (dict(padding=(1, 0)), (1, 2, 4, 1), (2, 2, 3, 3)),
    ],
    ids=["small", "narrow", "dilated", "valid", "pad-pair"],
)
def test_empty_output(device, kwargs, x_shape, w_shape):
    x, w = ones_on(device, x_shape), ones_on(device, w_shape)
    with raises_naming(
        ValueError,
        "conv2d",
        "output",
        shape_pattern(x_shape) + "|" + shape_pattern(x_shape[2:]) + "|" + f"{x_shape[2]}x{x_shape[3]}",
    ):
        conv2d(x, w, **kwargs)
    with raises_naming(ValueError, "conv2d", "output"):
        conv2d_backward(ones_on(device, (x_shape[0], w_shape[0], 1, 1)), x, w, **kwargs)


@pytest.mark.parametrize(
    "x_shape,w_shape",
    [
        ((1, 32, 8, 8), (0, 32, 3, 3)),  # no output channels
        ((1, 64, 14, 14), (0, 64, 3, 3)),  # ... on a Winograd-shaped layer
        ((2, 0, 8, 8), (5, 0, 3, 3)),  # no input channels: the output is the bias
        ((1, 0, 14, 14), (64, 0, 3, 3)),
        ((0, 0, 5, 5), (0, 0, 3, 3)),
    ],
    ids=str,
)
def test_zero_channels(x_shape, w_shape, threads, rng):
    """Layers with no input or no output channels give the float64 reference's forward and gradients
    (zeros, the bias, empty arrays), under every ISA, instead of failing."""
    for dtype in (F32, F64):
        x, w, b = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype), rand(rng, w_shape[0], dtype)
        ref = conv2d_ref(x, w, b, padding=1)
        g = rand(rng, ref.shape, dtype)
        refs = conv2d_backward_ref(g, x, w, padding=1)
        for isa in TESTED_ISAS:
            with active_isa(isa):
                what = f"x {x_shape} w {w_shape} {dtype} isa={isa} threads={threads}"
                got = conv2d(x, w, b, padding=1)
                assert got.shape == ref.shape, what
                if ref.size:
                    check(got, ref, dtype, what)
                for name, grad, expected in zip(
                    ("grad_x", "grad_w", "grad_b"), conv2d_backward(g, x, w, padding=1), refs
                ):
                    assert grad.shape == expected.shape, f"{what} {name}"
                    if expected.size:
                        check(grad, expected, dtype, f"{what} {name}")


def test_wrong_ndim(device):
    w = ones_on(device, (4, 3, 3, 3))
    for shape in [(5, 5), (1, 1, 3, 5, 5), (3,)]:
        with raises_naming(ValueError, "conv2d", r"\bx\b|input", shape_pattern(shape)):
            conv2d(ones_on(device, shape), w)
    for shape in [(4, 3, 3), (4, 3, 3, 3, 1), (4, 27)]:
        with raises_naming(ValueError, "conv2d", W_NAME, shape_pattern(shape)):
            conv2d(ones_on(device, (1, 3, 5, 5)), ones_on(device, shape))
    with raises_naming(ValueError, "conv2d", r"\bx\b|input", shape_pattern(())):
        conv2d(on_device(device, np.array(1.0)), w)


@pytest.mark.parametrize(
    "name,value",
    [
        ("stride", 0),
        ("stride", -1),
        ("stride", (1, 0)),
        ("stride", (-2, 1)),
        ("dilation", 0),
        ("dilation", -1),
        ("dilation", (0, 1)),
        ("padding", -1),
        ("padding", (0, -2)),
    ],
    ids=str,
)
def test_bad_stride_padding_dilation(device, name, value):
    x, w = ones_on(device, (1, 3, 8, 8)), ones_on(device, (4, 3, 3, 3))
    bad = value if isinstance(value, int) else [v for v in value if v <= 0 and not (name == "padding" and v == 0)][0]
    with raises_naming(ValueError, "conv2d", name, re.escape(str(bad))):
        conv2d(x, w, **{name: value})
    with raises_naming(ValueError, "conv2d", name, re.escape(str(bad))):
        conv2d_backward(ones_on(device, (1, 4, 6, 6)), x, w, **{name: value})


@pytest.mark.parametrize("kernel", [(0, 3), (3, 0), (0, 0)], ids=str)
def test_empty_kernel_is_refused(device, kernel):
    """A kernel of 0 rows or columns is an error, as in PyTorch (it gave a bias-filled output larger
    than the input)."""
    x, w = ones_on(device, (1, 2, 5, 5)), ones_on(device, (3, 2, *kernel))
    with raises_naming(ValueError, "conv2d", "kernel size", re.escape(str((3, 2, *kernel)))):
        conv2d(x, w, dilation=3)
    with raises_naming(ValueError, "conv2d", "kernel size"):
        conv2d_backward(ones_on(device, (1, 3, 5, 5)), x, w)
    with raises_naming(ValueError, "conv_transpose2d", "kernel size"):
        deepkern.ops.conv_transpose2d(x, ones_on(device, (2, 3, *kernel)))


def test_bad_padding_string_and_same_with_stride(device):
    x, w = ones_on(device, (1, 3, 8, 8)), ones_on(device, (4, 3, 3, 3))
    with raises_naming(ValueError, "conv2d", "padding", "full"):
        conv2d(x, w, padding="full")
    for stride in (2, (1, 2)):
        with raises_naming(ValueError, "conv2d", "same", "stride"):
            conv2d(x, w, padding="same", stride=stride)
        with raises_naming(ValueError, "conv2d", "same", "stride"):
            conv2d_backward(ones_on(device, (1, 4, 8, 8)), x, w, padding="same", stride=stride)


def test_bias_shape(device):
    x, w = ones_on(device, (1, 3, 8, 8)), ones_on(device, (4, 3, 3, 3))
    for shape in [(5,), (1, 4), (3,), ()]:
        with raises_naming(ValueError, "conv2d", B_NAME, shape_pattern(shape), r"\(4,\)|\b4\b"):
            conv2d(x, w, ones_on(device, shape))


def test_grad_out_shape(device):
    x, w = ones_on(device, (2, 3, 8, 8)), ones_on(device, (4, 3, 3, 3))  # output (2, 4, 6, 6)
    for shape in [(2, 4, 6, 5), (2, 3, 6, 6), (1, 4, 6, 6), (4, 6, 6), (2, 4, 36)]:
        with raises_naming(
            ValueError, "conv2d_backward", "grad_out", shape_pattern(shape), shape_pattern((2, 4, 6, 6))
        ):
            conv2d_backward(ones_on(device, shape), x, w)


@pytest.mark.parametrize(
    "bad", [np.int32, np.int64, np.float16, np.complex64, np.complex128, np.bool_], ids=lambda t: np.dtype(t).name
)
def test_unsupported_dtypes(device, bad):
    x, w, b = (ones_on(device, shape, np.float32) for shape in ((1, 3, 5, 5), (4, 3, 3, 3), 4))
    name = np.dtype(bad).name
    with raises_naming(TypeError, "conv2d", r"\bx\b|input", name):
        conv2d(x.astype(bad), w)
    with raises_naming(TypeError, "conv2d", W_NAME, name):
        conv2d(x, w.astype(bad))
    with raises_naming(TypeError, "conv2d", B_NAME, name):
        conv2d(x, w, b.astype(bad))
    with raises_naming(TypeError, "conv2d", "grad_out", name):
        conv2d_backward(ones_on(device, (1, 4, 3, 3), bad), x, w)
    with raises_naming(TypeError, "conv2d", r"\bx\b|input", name):
        conv2d_backward(ones_on(device, (1, 4, 3, 3), np.float32), x.astype(bad), w)


def test_mixed_dtypes(device):
    x32, w64 = ones_on(device, (1, 3, 5, 5), np.float32), ones_on(device, (4, 3, 3, 3))
    with raises_naming(TypeError, "conv2d", "float32", "float64"):
        conv2d(x32, w64)
    with raises_naming(TypeError, "conv2d", "float32", "float64"):
        conv2d(x32.astype(np.float64), w64.astype(np.float32))
    with raises_naming(TypeError, "conv2d", "float32", "float64"):
        conv2d_backward(ones_on(device, (1, 4, 3, 3), np.float32), x32, w64)


# ----------------------------------------------------------------------------------------------
# the benchmark suite (deepkern.bench.conv): its cases, flop counts and the check run before timing


def test_bench_conv_cases():
    from deepkern import bench
    from deepkern.bench import conv as dkb

    assert "gemm" in bench.SUITES
    suite = bench.get_suite("conv")
    inference_groups = {dkb.inference_group(n): n for n in dkb.CONV_INFERENCE_BATCHES}
    assert set(suite.summary_groups) == {dkb.GROUP_CONV_FWD, dkb.GROUP_CONV_FWD_BWD, *inference_groups}
    assert dkb.CONV_INFERENCE_BATCHES == (1, 4)
    layers = [(c, h, w, k, r, s, st, p, g) for c, h, w, k, r, s, st, p, g in LAYERS]
    assert [(l.c, l.h, l.w, l.k, l.r, l.s, l.stride, l.padding, l.groups) for l in dkb.CONV_LAYERS] == layers  # noqa: E741
    downsample = (256, 56, 56, 512, 1, 1, 2, 0, 1)
    inference_layers = [*layers, downsample]
    for quick, batch in ((False, 32), (True, dkb.CONV_BATCH_QUICK)):
        cases = suite.cases(quick)
        training = [case for case in cases if case.group not in inference_groups]
        inference = [case for case in cases if case.group in inference_groups]
        assert len(training) == 2 * len(LAYERS)
        batches = (1,) if quick else (1, 4)
        assert len(inference) == len(batches) * len(inference_layers)
        assert sorted({case.shape[0] for case in inference}) == list(batches)
        assert 2 <= dkb.CONV_BATCH_QUICK <= 4
        for case in cases:
            n, c, h, w, k, r, s, stride, pad, groups = case.shape
            if case in inference:
                assert n == inference_groups[case.group] and case.layout == f"fwd N={n}", case.name
                assert (c, h, w, k, r, s, stride, pad, groups) in inference_layers
            else:
                assert n == batch and (c, h, w, k, r, s, stride, pad, groups) in layers
                assert case.group == (dkb.GROUP_CONV_FWD if case.layout == "fwd" else dkb.GROUP_CONV_FWD_BWD)
            p, q = conv2d_out_size((h, w), (r, s), stride, pad, 1)
            fwd = 2.0 * n * k * p * q * (c // groups) * r * s
            assert case.flops == (3 * fwd if case.layout == "fwd+bwd" else fwd), case.name
            assert "deepkern" in case.impls and case.check is not None


@pytest.mark.parametrize("conv_pass", ["fwd", "fwd+bwd"])
def test_bench_conv_check_and_impls(conv_pass, monkeypatch):
    torch = pytest.importorskip("torch")
    from deepkern.bench import conv as dkb

    for layer in [dkb.ConvLayer(4, 9, 8, 6, 3, 3, 2, 1, label="tiny"), dkb.ConvLayer(6, 7, 7, 6, 3, 3, 1, 1, 6)]:
        sets = dkb.make_conv_inputs(layer, 3, conv_pass, copies=2)
        assert len(sets) == 2 and all(a.dtype == F32 and a.flags.c_contiguous for s in sets for a in s)
        assert dkb.conv_check(layer, conv_pass, sets[0]) < 1e-5
        impls = dkb.conv_impls(layer, conv_pass)
        ours = impls["deepkern"](*sets[1])
        theirs = impls["torch"](*[torch.from_numpy(a) for a in sets[1]])
        if conv_pass == "fwd":
            ours, theirs = [ours], [theirs]
        else:
            assert ours[2] is None and theirs[2] is None  # grad_b is not part of the timed backward
            ours, theirs = ours[:2], theirs[:2]
        for a, b in zip(ours, theirs):
            check(a, b.numpy().astype(np.float64), F32, f"bench impls {layer} {conv_pass}", tol=1e-4)

    # The check must see a wrong result.
    layer = dkb.ConvLayer(4, 9, 8, 6, 3, 3, 2, 1)
    sets = dkb.make_conv_inputs(layer, 3, conv_pass, copies=1)
    real_fwd, real_bwd = deepkern.ops.conv2d, deepkern.ops.conv2d_backward
    monkeypatch.setattr(deepkern.ops, "conv2d", lambda *a, **k: real_fwd(*a, **k) * np.float32(1.01))
    monkeypatch.setattr(
        deepkern.ops,
        "conv2d_backward",
        lambda *a, **k: tuple(None if v is None else v * np.float32(1.01) for v in real_bwd(*a, **k)),
    )
    assert dkb.conv_check(layer, conv_pass, sets[0]) > 1e-3


def test_bench_conv_skipped_without_torch(monkeypatch):
    from deepkern import bench

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails: PyTorch is not installed
    report = bench.run_suite(bench.get_suite("conv"), [1], quick=True, progress=False)
    assert report.rows == []
    assert any("conv skipped" in note and "PyTorch" in note for note in report.notes), report.notes


# ----------------------------------------------------------------------------------------------
# Winograd: 3x3 stride-1 layers with >= 64 channels in and out and outputs whose partial edge
# tiles still save >= 2x (csrc/cpu/conv/winograd.cpp): the forward on F(4x4, 3x3) (these sizes),
# the data gradient on F(2x2, 3x3); test_winograd.py covers each forward variant.

WINOGRAD_CFGS = [
    Cfg(2, 64, 9, 11, 64, 3, 3, padding=1),
    Cfg(3, 64, 8, 8, 70, 3, 3, padding=0),
    Cfg(1, 65, 12, 13, 64, 3, 3, padding=2),
    Cfg(5, 64, 16, 17, 66, 3, 3, padding=1, bias=False),
    Cfg(4, 64, 10, 10, 64, 3, 3, padding=(0, 2)),
    Cfg(2, 64, 14, 14, 64, 3, 3, padding="same"),
    Cfg(3, 80, 6, 30, 64, 3, 3, padding=(2, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", WINOGRAD_CFGS, ids=str)
def test_conv2d_winograd_layers(device, cfg, dtype, threads, rng):
    x, w, b = make_inputs(rng, cfg, dtype)
    g = rand(rng, cfg.out_shape, dtype)
    dx, dw, db, dg = on_device(device, x, w, b, g)
    what = f"{cfg} {dtype} threads={threads}"
    poison_heap((cfg.out_shape, dtype))
    check(conv2d(dx, dw, db, **cfg.kwargs), conv2d_ref(x, w, b, **cfg.kwargs), dtype, "conv2d " + what)
    ref_gx, ref_gw, _ = conv2d_backward_ref(g, x, w, **cfg.kwargs)
    gx, gw, _ = run_backward(dg, dx, dw, cfg.kwargs, needs=(True, True, False))
    check(gx, ref_gx, dtype, "conv2d_backward grad_x " + what)
    check(gw, ref_gw, dtype, "conv2d_backward grad_w " + what)


@pytest.mark.parametrize("name", ["stride", "padding", "dilation"])
def test_integers_past_int64_are_named(name):
    """An integer argument too large for the kernels' int64 indexing is a short ValueError naming it."""
    x, w = np.ones((1, 2, 6, 6), np.float32), np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=rf"^conv2d: {name} must be between -2\*\*62 and 2\*\*62, got \d+$"):
        conv2d(x, w, **{name: 2**64})


# ----------------------------------------------------------------------------------------------
# Inf and NaN: every path gives the direct float64 sums' Inf and NaN (PyTorch's float64 results):
# the forward and grad_w sum over the zero-padded input, padding included (0 * Inf is NaN), grad_x
# over the (output, tap) pairs that read each input element. Winograd's transforms add and subtract
# inputs (Inf - Inf is NaN), so such calls leave it for im2col + GEMM; the depthwise kernels add the
# padding terms they skip where a factor is not finite.


def _conv_path(cfg, x, w, g, needs):
    """The path ("winograd", "depthwise" or "im2col") that one pass of ``cfg`` ran on (finite inputs:
    the path its shape takes), from the ISA families that recorded a call."""
    deepkern._C.reset_isa_records()
    if needs is None:
        conv2d(x, w, **cfg.kwargs)
    else:
        conv2d_backward(g, x, w, needs=needs, **cfg.kwargs)
    if deepkern._C.last_isa("conv_winograd") is not None:
        return "winograd"
    if deepkern._C.last_isa("conv_depthwise") is not None:
        return "depthwise"
    assert deepkern._C.last_isa("gemm") is not None, f"{cfg}: no convolution kernel recorded a call"
    return "im2col"


def _random_path_configs(rng, path, count):
    """``count`` random shapes that take ``path`` in all three passes, as (paths, cfg)."""
    configs = []
    while len(configs) < count:
        n = int(rng.integers(1, 4))
        if path == "winograd":  # even outputs: the tiles save 2.25x, so the weight gradient takes it too
            pad = int(rng.integers(0, 3))
            h, w = (int(rng.integers(3 - pad, 9 - pad)) * 2 for _ in range(2))
            cfg = Cfg(n, int(rng.integers(64, 72)), h, w, int(rng.integers(64, 72)), 3, 3, padding=pad)
        else:
            c = int(rng.integers(2, 7))
            groups = c if path == "depthwise" else int(rng.choice([1, 2])) if c % 2 == 0 and c > 2 else 1
            k = c * int(rng.integers(1, 3)) if path == "depthwise" else groups * int(rng.integers(1, 5))
            r, s = (int(rng.choice([1, 2, 3, 5])) for _ in range(2))
            stride, dilation = (tuple(int(v) for v in rng.integers(1, 3, 2)) for _ in range(2))
            padding = tuple(int(rng.integers(0, 1 + d * (t - 1))) for d, t in zip(dilation, (r, s)))
            h, w = (int(rng.integers(1 + d * (t - 1), 12)) for d, t in zip(dilation, (r, s)))
            cfg = Cfg(n, c, h, w, k, r, s, stride=stride, padding=padding, dilation=dilation, groups=groups)
        configs.append(((path,) * 3, cfg))
    return configs


_PATH_RNG = np.random.default_rng(20260412)
NON_FINITE_CFGS = [
    entry for path in ("winograd", "depthwise", "im2col") for entry in _random_path_configs(_PATH_RNG, path, 4)
]
NON_FINITE_CFGS += [
    (("im2col",) * 3, Cfg(2, 6, 24, 24, 5, 1, 1)),  # 1x1 without im2col
    (("im2col",) * 3, Cfg(13, 5, 6, 7, 7, 3, 3, padding=1)),  # small images, several per GEMM
    (("im2col",) * 3, Cfg(1, 64, 5, 5, 64, 3, 3, padding=1)),  # 3x3 whose odd tiles do not pay for Winograd
    (("winograd", "winograd", "im2col"), Cfg(2, 64, 7, 7, 64, 3, 3, padding=1)),  # grad_w: im2col
    (("depthwise",) * 3, Cfg(2, 4, 9, 8, 4, 3, 3, padding="same", dilation=2, groups=4)),
    (("depthwise",) * 3, Cfg(2, 5, 8, 9, 10, 3, 3, padding=1, groups=5)),  # stride 1: the bordered planes
]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("paths,cfg", NON_FINITE_CFGS, ids=lambda v: "-".join(v) if isinstance(v, tuple) else v.id())
def test_conv2d_inf_and_nan_as_direct_sums(device, paths, cfg, dtype, threads, rng):
    x, w, b = make_inputs(rng, cfg, dtype)
    g = rand(rng, cfg.out_shape, dtype)
    for path, needs in zip(paths, (None, (True, False, False), (False, True, False))):
        ran = _conv_path(cfg, *on_device(device, x, w, g), needs)
        assert ran == path, f"{cfg} {dtype} needs={needs}: ran on {ran}, the test expects {path}"
    # Non-finite values in each operand alone, then in all of them (a few each: the rest stays finite).
    for where in ("x", "w", "g", "x w g"):
        xs, ws, gs = (
            sprinkle_non_finite(rng, a, 2) if name in where.split() else a for name, a in zip("xwg", (x, w, g))
        )
        ref = conv2d_ref(xs, ws, b, **cfg.kwargs)
        ref_gx, ref_gw, ref_gb = conv2d_backward_ref(gs, xs, ws, **cfg.kwargs)
        dx, dw, db, dg = on_device(device, xs, ws, b, gs)
        what = f"{cfg} {dtype} threads={threads}, Inf/NaN in {where}"
        poison_heap((ref.shape, dtype))
        check_non_finite(conv2d(dx, dw, db, **cfg.kwargs), ref, dtype, "conv2d " + what)
        for name, got, exp in zip(
            ("grad_x", "grad_w", "grad_b"), run_backward(dg, dx, dw, cfg.kwargs), (ref_gx, ref_gw, ref_gb)
        ):
            check_non_finite(got, exp, dtype, f"conv2d_backward {what}: {name}")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_conv2d_inf_and_nan_match_torch(rng):
    """The reference's padding semantics are PyTorch's: a float64 F.conv2d and its gradients have Inf
    and NaN where conv2d_ref and conv2d_backward_ref have them (an Inf weight on a tap that reads
    padding gives NaN)."""
    torch = pytest.importorskip("torch")
    for cfg in (Cfg(2, 3, 7, 6, 4, 3, 3, padding=1), Cfg(1, 4, 9, 8, 8, 3, 3, stride=2, padding=(1, 2), groups=4)):
        x, w, b = make_inputs(rng, cfg, F64)
        g = rand(rng, cfg.out_shape, F64)
        x, w, g = (sprinkle_non_finite(rng, a, 2) for a in (x, w, g))
        xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        out = torch.nn.functional.conv2d(xt, wt, torch.tensor(b), **cfg.kwargs)
        out.backward(torch.tensor(g))
        ref_gx, ref_gw, _ = conv2d_backward_ref(g, x, w, **cfg.kwargs)
        for name, theirs, ours in (
            ("output", out.detach().numpy(), conv2d_ref(x, w, b, **cfg.kwargs)),
            ("grad_x", xt.grad.numpy(), ref_gx),
            ("grad_w", wt.grad.numpy(), ref_gw),
        ):
            check_non_finite(theirs, ours, F64, f"{cfg}: torch's {name} vs the reference")
