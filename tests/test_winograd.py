"""The two Winograd variants of the conv2d forward pass (csrc/cpu/conv/winograd.cpp).

F(4x4, 3x3) (36 multiplies per 4x4 output tile and input channel) runs where it costs less than
F(2x2, 3x3) (16 per 2x2 tile), counting the partial tiles at the edges and at least 32 tiles' worth
per transformed weight (``checks.winograd_tile``); F(2x2) keeps the outputs with a dimension of 2,
the 6 x 6 ones and calls with few tiles. ``_C.last_winograd_tile`` names the
variant a call ran. Each variant is compared with the float64 NumPy reference under every kernel
ISA this CPU supports, at 1 and 2 threads, on odd sizes, paddings 0 to 2 and batches 0 to 5; with
weights packed once (ops.ConvPlan, the eval-mode Conv2d cache, which hold the F(4x4) weights) and
with Inf or NaN operands (then the direct sums run). The backward passes keep F(2x2) (test_conv.py).
"""

from __future__ import annotations

import deepkern
import numpy as np
import pytest
from deepkern import nn, no_grad, ops, tensor

from checks import F32, F64, active_isa, check, check_non_finite, poison_heap, rand, winograd_tile
from conftest import TESTED_ISAS
from reference import conv2d_backward_ref, conv2d_ref, rel_error

DTYPES = [F32, F64]


def _ran():
    """(path, Winograd tile) of the last conv2d forward."""
    return deepkern._C.last_conv2d_forward_path(), deepkern._C.last_winograd_tile()


def _forward(x, weights, b, what, paths=None, **options):
    """conv2d of x with ``weights`` (an array or a ConvPlan) under every ISA on NaN-prefilled
    outputs: checked against the float64 reference and the Winograd variant each call ran (the
    tile of ``winograd_tile``, which it returns); ``paths`` (a set) collects the paths the calls ran."""
    w = weights if isinstance(weights, np.ndarray) else weights.weight
    ref = conv2d_ref(x, w, b, **options)
    tile = winograd_tile(*ref.shape[:1], *ref.shape[2:])
    for isa in TESTED_ISAS:
        with active_isa(isa):
            poison_heap((ref.shape, x.dtype))
            got = ops.conv2d(x, weights, b, **({} if isinstance(weights, ops.ConvPlan) else options))
            check(got, ref, x.dtype, f"{what} isa={isa}")
            if ref.size:
                path = _ran()[0]
                assert path == "winograd" or (path == "winograd_prepacked" and isinstance(weights, ops.ConvPlan))
                assert _ran()[1] == tile, f"{what} isa={isa}: ran {_ran()}, expected winograd F({tile}x{tile})"
                if paths is not None:
                    paths.add(path)
    return tile


# (C, H, W, K, padding, tile): odd sizes, paddings 0 to 2, partial edge tiles on either side; tile is
# the variant at batch 5 (enough tiles for F(4x4) wherever it does fewer multiplies); batch 1 runs
# F(2x2) (F(4x4) would have fewer than 32 tiles).
VARIANT_CASES = [
    (64, 9, 11, 64, 1, 4),  # 9 x 11 output: partial F(4x4) tiles on both axes
    (65, 12, 13, 70, 2, 4),
    (64, 10, 10, 66, 0, 4),  # 8 x 8 output: whole tiles
    (64, 17, 16, 64, (0, 2), 4),
    (72, 7, 7, 64, 1, 4),  # 7 x 7: F(4x4) saves 3.06x, F(2x2) 1.72x
    (64, 6, 6, 64, 1, 2),  # 6 x 6: both save 2.25x, F(2x2) kept
    (64, 4, 30, 64, 0, 2),  # 2 x 28: F(4x4) would waste half of each tile
    (66, 2, 9, 64, (1, 2), 2),  # 2 x 11 (padding 2 across)
]


@pytest.mark.parametrize("case", VARIANT_CASES, ids=str)
def test_each_variant_matches_float64(case, threads, rng):
    c, h, width, k, padding, tile = case
    for dtype in DTYPES:
        w, b = rand(rng, (k, c, 3, 3), dtype), rand(rng, k, dtype)
        ran = set()
        for batch in (0, 1, 2, 5):
            x = rand(rng, (batch, c, h, width), dtype)
            ran.add(_forward(x, w, b, f"{case} batch {batch} {dtype} threads={threads}", padding=padding))
        assert tile in ran, case


@pytest.mark.parametrize("case", VARIANT_CASES[:1] + VARIANT_CASES[-3:], ids=str)
def test_each_variant_on_packed_weights(case, threads, rng):
    """A ConvPlan packs the F(4x4) weights once (width 1, no input shape known), and in the layout of
    each input whose forward reads another (F(2x2), the GEMM's panels) on its first call: the calls run
    on packed weights, matching float64."""
    c, h, width, k, padding, tile = case
    for dtype in DTYPES:
        w, b = rand(rng, (k, c, 3, 3), dtype), rand(rng, k, dtype)
        plan = ops.ConvPlan(w, padding=padding)
        assert plan.winograd_weights.shape == (36, k, c) and plan.winograd_weights.dtype == dtype
        ran, paths = set(), set()
        for batch in (1, 3, 5, 16):
            x = rand(rng, (batch, c, h, width), dtype)
            what = f"plan {case} batch {batch} {dtype} threads={threads}"
            ran.add(_forward(x, plan, b, what, paths, padding=padding))
        assert tile in ran, case
        assert "winograd_prepacked" in paths, (case, paths)  # packed per input where not the shared layout


def _errors(rng, channels):
    """Relative errors against the float64 reference of one layer (16 images, enough tiles for any
    channel count to take Winograd) in float32 on each variant (F(4x4) on 8 x 8 images, F(2x2) on
    their 6 x 6 corners) and in float64 (F(4x4))."""
    x = rand(rng, (16, channels, 8, 8), F32)
    w = rand(rng, (channels, channels, 3, 3), F32)
    errors = {}
    for tile, crop in ((4, 8), (2, 6)):
        part = x[..., :crop, :crop]
        got = ops.conv2d(part, w, padding=1)
        assert _ran() == ("winograd", tile)
        errors[tile] = rel_error(got, conv2d_ref(part, w, None, padding=1))
    errors["float64"] = rel_error(
        ops.conv2d(x.astype(F64), w.astype(F64), padding=1), conv2d_ref(x, w, None, padding=1)
    )
    assert _ran() == ("winograd", 4)
    return errors


def test_variant_errors_against_float64(rng):
    """The relative error grows like the square root of the sum's length (9 C terms), with a factor
    per variant: F(4x4, 3x3)'s transforms multiply by up to 8 (A^T) and 5 (B^T) and round 1/6 and
    1/24 (G), F(2x2)'s only halve. Measured (float32, 64 to 512 channels): F(4x4) 2.2e-7 sqrt(C)
    (1.8e-6 to 4.8e-6), F(2x2) 3.4e-8 sqrt(C), float64 F(4x4) 4e-16 sqrt(C). Bounded at about twice
    that; F(4x4) reaches the 1e-5 of the float32 conv checks only near 2000 channels."""
    bounds = {4: 4.5e-7, 2: 7e-8, "float64": 8e-16}
    for channels in (64, 192, 512):
        errors = _errors(rng, channels)
        for variant, bound in bounds.items():
            assert errors[variant] < bound * np.sqrt(channels), (channels, variant, errors)
    assert errors[4] > errors[2]  # the measurement sees the variants apart


def test_non_finite_operands_take_the_direct_sums(rng):
    """Inf or NaN in x or w: the transforms could turn an Inf into NaN, so both variants hand the
    call to the direct sums (im2col), which give the reference's Inf and NaN."""
    for h, tile in ((12, 4), (6, 2)):
        for dtype in DTYPES:
            x, w = rand(rng, (4, 64, h, h), dtype), rand(rng, (64, 64, 3, 3), dtype)
            clean = ops.conv2d(x, w, padding=1)
            assert _ran() == ("winograd", tile)
            for name, array, at in (("x", x, (1, 3, 2, 4)), ("w", w, (5, 7, 1, 1))):
                for value in (np.inf, -np.inf, np.nan):
                    bad = array.copy()
                    bad[at] = value
                    xs, ws = (bad, w) if name == "x" else (x, bad)
                    ref = conv2d_ref(xs, ws, None, padding=1)
                    for isa in TESTED_ISAS:
                        with active_isa(isa):
                            got = ops.conv2d(xs, ws, padding=1)
                            ran = _ran()
                            assert ran[0].startswith("im2col"), f"{name}={value} F({tile}x{tile}) isa={isa}: ran {ran}"
                            check_non_finite(got, ref, dtype, f"{name}={value}")
            check(clean, conv2d_ref(x, w, None, padding=1), dtype, f"F({tile}x{tile}) {dtype} before the Inf")


def test_operands_large_enough_to_overflow_the_transforms_take_the_direct_sums(rng):
    """The transforms grow a sum of C products by up to 36100 C (F(4x4)'s B^T, A^T): a value beyond
    sqrt(max / (36100 C)) (about 1e16 in float32, 3e150 in float64, at 64 channels) hands the call to
    the direct sums, so a finite result stays finite (float32 inputs near 1e37 had given NaN); values
    below that bound keep Winograd. Forward (both variants), data and weight gradients, x and w."""
    for dtype, huge, large in ((F32, 3e37, 1e14), (F64, 1e152, 1e140)):
        x, w = rand(rng, (4, 64, 12, 12), dtype), rand(rng, (64, 64, 3, 3), dtype)
        g = rand(rng, (4, 64, 12, 12), dtype)
        for name, value in (("x", huge), ("w", huge), ("x", large), ("w", large)):
            xs, ws = x.copy(), w.copy()
            (xs if name == "x" else ws)[0, 3, 2, 1] = value
            expected = "winograd" if value == large else "im2col"
            for crop, tile in ((12, 4), (6, 2)):
                part = xs[..., :crop, :crop]
                got = ops.conv2d(part, ws, padding=1)
                assert _ran()[0].startswith(expected), f"{name}={value:g} {dtype} F({tile}x{tile}): ran {_ran()}"
                assert np.isfinite(got).all(), f"{name}={value:g} {dtype} F({tile}x{tile})"
                check(got, conv2d_ref(part, ws, None, padding=1), dtype, f"{name}={value:g} {dtype} F({tile}x{tile})")
            grad_x, grad_w, _ = ops.conv2d_backward(g, xs, ws, padding=1)
            ref_x, ref_w, _ = conv2d_backward_ref(g, xs, ws, padding=1)
            check(grad_x, ref_x, dtype, f"grad_x {name}={value:g} {dtype}")
            check(grad_w, ref_w, dtype, f"grad_w {name}={value:g} {dtype}")
        w_huge = w.copy()
        w_huge[1, 2, 0, 0] = huge
        assert ops.ConvPlan(w_huge, padding=1).winograd_weights is None  # cannot be packed
        assert ops.ConvPlan(w, padding=1).winograd_weights is not None


def test_eval_mode_conv2d_caches_the_packed_weights_for_either_variant(rng):
    """An eval-mode Conv2d packs its weights once per input shape in the layout that forward reads
    (F(4x4) or F(2x2), in the GEMM's panels at these few tiles) and runs on them, matching float64."""
    conv = nn.Conv2d(64, 64, 3, padding=1).eval()
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    for h, width, tile in ((12, 13, 4), (6, 6, 2), (12, 13, 4)):
        x = rand(rng, (2, 64, h, width), F32)
        with no_grad():
            got = conv(tensor(x)).numpy()
        assert _ran() == ("winograd_prepacked", tile)
        check(got, conv2d_ref(x, w, b, padding=1), F32, f"eval Conv2d {h} x {width}")
        packed = conv.__dict__["_plan"][3].packed[0]  # the kept plan's packed (Winograd, GEMM) weights
        assert packed is not None and packed.shape[0] == (tile + 2) ** 2 and packed.shape[2] % 64 == 0
