"""The contract of deepkern.ops' pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d and their
backward passes.

Every result is compared with the float64 references in tests/reference.py (max: exactly, values
and indices; averages: ||out - ref|| / ||ref|| below 1e-5 for float32, 1e-12 for float64), every
backward also with finite differences in float64, and, where PyTorch is installed, everything
with torch.nn.functional on the same inputs. Outputs are pre-filled with NaN (some as views of a
bigger NaN array whose other elements must stay untouched). The cases are drawn once from a fixed
seed over batch 1/3 (and 3-D input), C 1/odd, H and W 1..37 (some smaller than the window),
square and non-square kernels 1..5, stride 1..3, padding 0..k/2, dilation 1..2 and ceil_mode. The
cases run on every device (the ``device`` fixture): inputs, outputs and their views live there.
"""

from __future__ import annotations

import re

import deepkern
import numpy as np
import pytest
from deepkern.ops import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)

from checks import active_isa, check_non_finite, rand, sprinkle_non_finite
from conftest import TESTED_ISAS, on_device, to_host
from reference import (
    _avg_divisor,
    adaptive_avg_pool2d_backward_ref,
    adaptive_avg_pool2d_ref,
    avg_pool2d_backward_ref,
    avg_pool2d_ref,
    max_pool2d_backward_ref,
    max_pool2d_ref,
    pool_output_size_ref,
    rel_error,
)

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]
TOL = {F32: 1e-5, F64: 1e-12}


# ----------------------------------------------------------------------------------------------
# cases


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def _draw_cases(kind: str, count: int, seed: int) -> list:
    """``count`` valid pooling configurations (dicts), drawn from a fixed seed."""
    rng = np.random.default_rng(seed)
    kernels = [1, 2, 3, 5, (2, 3), (3, 1), (1, 5), (5, 2), 2, 3]
    strides = [None, 1, 2, 3, (1, 2), (3, 2), 2]
    sizes = [1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 37]
    cases = []
    while len(cases) < count:
        kernel = kernels[len(cases) % len(kernels)]
        kh, kw = _pair(kernel)
        ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
        case = dict(
            batch=[None, 1, 3][int(rng.integers(3))],
            channels=[1, 3, 5][int(rng.integers(3))],
            h=int(rng.choice(sizes)),
            w=int(rng.choice(sizes)),
            kernel_size=kernel,
            stride=strides[int(rng.integers(len(strides)))],
            padding=ph if ph == pw else (ph, pw),
            ceil_mode=bool(rng.integers(2)),
        )
        if kind == "max":
            case["dilation"] = [1, 2, (1, 2), 1][int(rng.integers(4))]
        else:
            case["count_include_pad"] = bool(rng.integers(2))
            case["divisor_override"] = None if rng.integers(6) else int(rng.integers(1, 10))
        dh, dw = _pair(case.get("dilation", 1))
        sh, sw = _pair(kernel if case["stride"] is None else case["stride"])
        if (
            min(
                pool_output_size_ref(case["h"], kh, sh, ph, dh, case["ceil_mode"]),
                pool_output_size_ref(case["w"], kw, sw, pw, dw, case["ceil_mode"]),
            )
            >= 1
        ):
            cases.append(case)
    return cases


MAX_CASES = _draw_cases("max", 40, 1)
AVG_CASES = _draw_cases("avg", 40, 2)
LAYOUTS = ["C", "T", "slice", "F"]


def _case_id(case) -> str:
    parts = [
        f"{'' if case['batch'] is None else str(case['batch']) + 'x'}{case['channels']}x{case['h']}x{case['w']}",
        f"k{case['kernel_size']}",
        f"s{case['stride']}",
        f"p{case['padding']}",
    ]
    for key, tag in (
        ("dilation", "d"),
        ("ceil_mode", "ceil"),
        ("count_include_pad", "cip"),
        ("divisor_override", "div"),
    ):
        if key in case:
            parts.append(f"{tag}{case[key]}")
    return "-".join(parts).replace(" ", "")


def _params(case) -> dict:
    return {k: v for k, v in case.items() if k not in ("batch", "channels", "h", "w")}


def _shape(case) -> tuple:
    lead = () if case["batch"] is None else (case["batch"],)
    return lead + (case["channels"], case["h"], case["w"])


def make_input(rng, shape, dtype, layout="C", device="cpu"):
    """Random normal values of ``shape`` on ``device``, in a C-contiguous array or a non-contiguous
    view (taken there)."""

    def stored(storage_shape):
        return on_device(device, rng.standard_normal(storage_shape).astype(dtype))

    if layout == "C":
        return stored(shape)
    if layout == "T":  # the first two axes swapped
        return stored((shape[1], shape[0]) + shape[2:]).swapaxes(0, 1)
    if layout == "slice":  # every other row, columns from an offset
        return stored(shape[:-2] + (2 * shape[-2], shape[-1] + 3))[..., ::2, 2:-1]
    if layout == "F":  # the transpose of a C-contiguous array holding it
        return on_device(device, rng.standard_normal(shape).astype(dtype).T.copy()).T
    raise AssertionError(layout)


def make_out(shape, dtype, strided: bool, device="cpu"):
    """A NaN-filled output on ``device``: C-contiguous, or a strided view of a bigger NaN array
    (returned too)."""
    if not strided:
        out = on_device(device, np.full(shape, np.nan, dtype=dtype))
        return out, out
    big = on_device(device, np.full(shape[:-1] + (2 * shape[-1] + 1,), np.nan, dtype=dtype))
    return big[..., 1::2], big


def check(got, ref, dtype, what=""):
    """``got`` (on any device) equals ``ref`` to the tolerance, NaN where ``ref`` is NaN only."""
    got = to_host(got)
    dtype = np.dtype(dtype)
    assert isinstance(got, np.ndarray) and got.dtype == dtype, (
        f"{what}: got {type(got).__name__} {getattr(got, 'dtype', '')}"
    )
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    assert not np.isnan(got[~np.isnan(ref)]).any(), f"{what}: NaN where the reference is not (not written?)"
    assert (np.isnan(got) == np.isnan(ref)).all(), f"{what}: NaN positions differ from the reference"
    err = rel_error(np.nan_to_num(got, nan=0.0), np.nan_to_num(ref, nan=0.0))
    assert err < TOL[dtype], f"{what}: relative error {err:.3g} >= {TOL[dtype]:g}"


def check_untouched(big, out, what=""):
    mask = np.ones(big.shape, dtype=bool)
    if out is not big:
        mask[..., 1::2] = False
        assert np.isnan(to_host(big)[mask]).all(), f"{what}: elements outside the output view were written"


# ----------------------------------------------------------------------------------------------
# max_pool2d


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("index,case", list(enumerate(MAX_CASES)), ids=[_case_id(c) for c in MAX_CASES])
def test_max_pool2d(device, index, case, dtype, rng):
    x = make_input(rng, _shape(case), dtype, LAYOUTS[index % len(LAYOUTS)], device)
    ref, ref_idx = max_pool2d_ref(to_host(x), **_params(case))
    out, big = make_out(ref.shape, dtype, index % 3 == 2, device)
    got, idx = max_pool2d(x, **_params(case), return_indices=True, out=out)
    assert got is out
    assert idx.dtype == np.int64 and idx.shape == ref.shape
    np.testing.assert_array_equal(to_host(got), ref.astype(dtype), err_msg=_case_id(case))
    np.testing.assert_array_equal(to_host(idx), ref_idx, err_msg=_case_id(case))
    check_untouched(big, out, _case_id(case))
    np.testing.assert_array_equal(to_host(max_pool2d(x, **_params(case))), to_host(got))  # no indices, new array

    g = rng.standard_normal(ref.shape).astype(dtype)
    gx_out, gx_big = make_out(x.shape, dtype, index % 3 == 1, device)
    gx = max_pool2d_backward(on_device(device, g), x.shape, idx, out=gx_out)
    assert gx is gx_out
    check(gx, max_pool2d_backward_ref(g, x.shape, ref_idx), dtype, f"backward {_case_id(case)}")
    check_untouched(gx_big, gx_out, _case_id(case))


def test_max_pool2d_nan_propagates(device, rng):
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    x[0, 0, 2, 3] = x[1, 2, 8, 10] = x[0, 1, 4, 4] = x[0, 1, 4, 5] = np.nan
    x[1, 1] = np.nan  # a whole plane
    dx, dx64 = on_device(device, x, x.astype(np.float64))
    for params in (
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=2, ceil_mode=True),
        dict(kernel_size=(3, 2), stride=1, dilation=2),
    ):
        ref, ref_idx = max_pool2d_ref(x, **params)
        got, idx = (to_host(r) for r in max_pool2d(dx, **params, return_indices=True))
        assert np.isnan(got).sum() > 0
        np.testing.assert_array_equal(got, ref.astype(np.float32))  # NaN positions equal too
        np.testing.assert_array_equal(idx, ref_idx)  # the window's last NaN
        assert np.isnan(to_host(max_pool2d(dx64, **params))).sum() == np.isnan(ref).sum()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_max_pool2d_2x2_without_indices(threads, dtype, rng):
    """2x2 windows of stride 2 (no padding, no dilation) without indices take their own CPU loop: on
    every ISA, even and odd sizes (the last row and column unread), NaN, +-inf and ties, batches of
    planes large enough to split over threads, it equals the reference and the indices path bit for
    bit, into a NaN-filled strided output."""
    for shape in ((2, 3, 8, 8), (1, 5, 9, 11), (3, 70, 16, 30), (1, 1, 2, 3), (2, 4, 3, 2)):
        x = (np.round(rng.standard_normal(shape) * 2) / 2).astype(dtype)  # ties, +0 against -0 among them
        specials = rng.choice(x.size, max(3, x.size // 10), replace=False)
        x.flat[specials] = rng.choice([np.nan, np.inf, -np.inf], size=specials.size)
        ref, _ = max_pool2d_ref(x, 2)
        for isa in TESTED_ISAS:
            with active_isa(isa):
                out, big = make_out(ref.shape, dtype, True)
                got = max_pool2d(x, 2, out=out)
                with_indices, _ = max_pool2d(x, 2, return_indices=True)
                what = f"{shape} {dtype} isa={isa} threads={threads}"
                assert got is out, what
                np.testing.assert_array_equal(got, ref.astype(dtype), err_msg=what)
                assert np.array_equal(got.view(f"u{x.itemsize}"), with_indices.view(f"u{x.itemsize}")), what
                check_untouched(big, out, what)


def test_max_pool2d_minus_inf_and_empty_windows(device):
    # All -inf: the index is the window's first in-bounds tap (PyTorch).
    x = on_device(device, np.full((1, 1, 1, 4), -np.inf, dtype=np.float32))
    got, idx = (to_host(r) for r in max_pool2d(x, (1, 2), stride=1, padding=(0, 1), return_indices=True))
    np.testing.assert_array_equal(got, np.full((1, 1, 1, 5), -np.inf))
    np.testing.assert_array_equal(idx.ravel(), [0, 0, 1, 2, 3])
    # A window over padding only (dilation 2 on a 1x1 input): -inf and index -1, no gradient.
    x = on_device(device, np.ones((1, 1, 1, 1)))
    got, idx = max_pool2d(x, 2, padding=1, dilation=2, return_indices=True)
    assert got.shape == (1, 1, 1, 1) and to_host(got)[0, 0, 0, 0] == -np.inf and to_host(idx)[0, 0, 0, 0] == -1
    gx = max_pool2d_backward(on_device(device, np.ones(got.shape)), x.shape, idx)
    np.testing.assert_array_equal(to_host(gx), np.zeros(x.shape))


def test_max_pool2d_backward_rejects_bad_indices(device, rng):
    x = rng.standard_normal((2, 3, 6, 6))
    out, idx = max_pool2d(x, 2, return_indices=True)
    g = on_device(device, np.ones_like(out))
    for bad in (36, -2):
        wrong = idx.copy()
        wrong[1, 2, 0, 1] = bad
        with pytest.raises(ValueError, match=re.escape(f"index {bad}") + ".*outside"):
            max_pool2d_backward(g, x.shape, on_device(device, wrong))
    wrong = idx.astype(np.uint64)
    wrong[0, 0, 0, 0] = 2**64 - 1  # -1 once wrapped to int64: the gradient would be dropped
    with pytest.raises(ValueError, match="indices holds 18446744073709551615, past the int64 range"):
        max_pool2d_backward(g, x.shape, on_device(device, wrong))
    np.testing.assert_array_equal(
        to_host(max_pool2d_backward(g, x.shape, on_device(device, idx.astype(np.uint64)))),
        to_host(max_pool2d_backward(g, x.shape, on_device(device, idx))),
    )
    with pytest.raises(TypeError, match="indices"):
        max_pool2d_backward(g, x.shape, on_device(device, idx.astype(np.float64)))
    with pytest.raises(ValueError, match=r"indices must have grad_out's shape \(2, 3, 3, 3\)"):
        max_pool2d_backward(g, x.shape, on_device(device, idx[:, :, :2]))


# ----------------------------------------------------------------------------------------------
# avg_pool2d


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("index,case", list(enumerate(AVG_CASES)), ids=[_case_id(c) for c in AVG_CASES])
def test_avg_pool2d(device, index, case, dtype, rng):
    x = make_input(rng, _shape(case), dtype, LAYOUTS[index % len(LAYOUTS)], device)
    ref = avg_pool2d_ref(to_host(x), **_params(case))
    out, big = make_out(ref.shape, dtype, index % 3 == 2, device)
    got = avg_pool2d(x, **_params(case), out=out)
    assert got is out
    check(got, ref, dtype, _case_id(case))
    check_untouched(big, out, _case_id(case))

    g = rng.standard_normal(ref.shape).astype(dtype)
    gx_out, gx_big = make_out(x.shape, dtype, index % 3 == 1, device)
    gx = avg_pool2d_backward(on_device(device, g), x.shape, **_params(case), out=gx_out)
    assert gx is gx_out
    check(gx, avg_pool2d_backward_ref(g, x.shape, **_params(case)), dtype, f"backward {_case_id(case)}")
    check_untouched(gx_big, gx_out, _case_id(case))


def test_avg_pool2d_wide_rows(device, rng):
    # Output rows longer than the backward pass's 256-element chunks, with edges on both sides.
    x = rng.standard_normal((1, 2, 3, 700))
    for params in (
        dict(kernel_size=3, stride=1, padding=1, count_include_pad=False),
        dict(kernel_size=(1, 5), stride=(1, 2), padding=(0, 2), ceil_mode=True),
    ):
        got = avg_pool2d(on_device(device, x), **params)
        check(got, avg_pool2d_ref(x, **params), F64, str(params))
        g = rng.standard_normal(got.shape)
        check(
            avg_pool2d_backward(on_device(device, g), x.shape, **params),
            avg_pool2d_backward_ref(g, x.shape, **params),
            F64,
            str(params),
        )


# ----------------------------------------------------------------------------------------------
# adaptive_avg_pool2d

ADAPTIVE_CASES = [
    ((2, 3, 7, 7), 1),
    ((1, 1, 1, 1), 1),
    ((3, 5, 37, 29), (5, 4)),
    ((2, 3, 5, 7), (None, 3)),
    ((2, 3, 5, 7), (4, None)),
    ((3, 6, 6), (9, 13)),
    ((1, 3, 13, 17), (13, 17)),
    ((3, 1, 10, 10), (3, 7)),
    ((1, 5, 2, 31), (2, 1)),
    ((4, 8, 8), (3, 3)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("index,shape,size", [(i, s, o) for i, (s, o) in enumerate(ADAPTIVE_CASES)])
def test_adaptive_avg_pool2d(device, index, shape, size, dtype, rng):
    x = make_input(rng, shape, dtype, LAYOUTS[index % len(LAYOUTS)], device)
    ref = adaptive_avg_pool2d_ref(to_host(x), size)
    out, big = make_out(ref.shape, dtype, index % 2 == 1, device)
    got = adaptive_avg_pool2d(x, size, out=out)
    assert got is out
    check(got, ref, dtype, f"{shape} -> {size}")
    check_untouched(big, out)
    g = rng.standard_normal(ref.shape).astype(dtype)
    dg, gx_out = on_device(device, g, np.full(x.shape, np.nan, dtype=dtype))
    gx = adaptive_avg_pool2d_backward(dg, x.shape, out=gx_out)
    check(gx, adaptive_avg_pool2d_backward_ref(g, x.shape), dtype, f"backward {shape} -> {size}")


def test_adaptive_avg_pool2d_empty_output(device):
    x, g = on_device(device, np.ones((2, 3, 4, 4), dtype=np.float32), np.ones((2, 3, 0, 3), np.float32))
    assert adaptive_avg_pool2d(x, (0, 3)).shape == (2, 3, 0, 3)
    np.testing.assert_array_equal(to_host(adaptive_avg_pool2d_backward(g, x.shape)), np.zeros(x.shape, np.float32))


# ----------------------------------------------------------------------------------------------
# threads: shapes big enough to be split (planes and output rows over 2 threads)


def test_pool_threads(device, threads, rng):
    x = rng.standard_normal((3, 7, 37, 33)).astype(np.float32)
    dx = on_device(device, x)
    for params in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)):
        ref, ref_idx = max_pool2d_ref(x, **params)
        got, idx = max_pool2d(dx, **params, return_indices=True)
        np.testing.assert_array_equal(to_host(got), ref.astype(np.float32))
        np.testing.assert_array_equal(to_host(idx), ref_idx)
        g = rng.standard_normal(got.shape).astype(np.float32)
        dg = on_device(device, g)
        check(max_pool2d_backward(dg, x.shape, idx), max_pool2d_backward_ref(g, x.shape, ref_idx), F32, "max bw")
        check(avg_pool2d(dx, **params), avg_pool2d_ref(x, **params), F32, "avg")
        check(avg_pool2d_backward(dg, x.shape, **params), avg_pool2d_backward_ref(g, x.shape, **params), F32, "avg bw")
    check(adaptive_avg_pool2d(dx, (5, 3)), adaptive_avg_pool2d_ref(x, (5, 3)), F32, "adaptive")
    g = rng.standard_normal((3, 7, 5, 3)).astype(np.float32)
    check(
        adaptive_avg_pool2d_backward(on_device(device, g), x.shape),
        adaptive_avg_pool2d_backward_ref(g, x.shape),
        F32,
        "adaptive bw",
    )


# ----------------------------------------------------------------------------------------------
# finite differences (float64): d/dt <g, f(x + t v)> at t = 0 equals <backward(g), v>, and for a
# small input every element's partial derivative.


def _directional(f, x, g, v, eps):
    return (np.vdot(g, to_host(f(x + eps * v))) - np.vdot(g, to_host(f(x - eps * v)))) / (2 * eps)


def _on(device, op):
    """``op`` with its first argument (a NumPy array) put on ``device`` first."""
    return lambda first, *args, **kwargs: op(on_device(device, first), *args, **kwargs)


def _distinct_input(rng, shape):
    """Values at least 1 apart (shuffled), so a perturbation of 1e-3 never changes a window's max."""
    return rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) - np.prod(shape) / 2


FD_MAX = [c for c in MAX_CASES if (max_pool2d_ref(np.zeros(_shape(c)), **_params(c))[1] >= 0).all()][:12]


@pytest.mark.parametrize("case", FD_MAX, ids=[_case_id(c) for c in FD_MAX])
def test_max_pool2d_backward_finite_differences(device, case, rng):
    forward, backward = _on(device, max_pool2d), _on(device, max_pool2d_backward)
    x = _distinct_input(rng, _shape(case))
    out, idx = forward(x, **_params(case), return_indices=True)
    g, v = rng.standard_normal(out.shape), rng.standard_normal(x.shape)
    gx = to_host(backward(g, x.shape, idx))
    fd = _directional(lambda z: forward(z, **_params(case)), x, g, v, 1e-3)
    assert abs(fd - np.vdot(gx, v)) <= 1e-7 * (1 + abs(fd))  # rounding of x +- eps v at |x| ~ size


@pytest.mark.parametrize("case", AVG_CASES[:12], ids=[_case_id(c) for c in AVG_CASES[:12]])
def test_avg_pool2d_backward_finite_differences(device, case, rng):
    forward, backward = _on(device, avg_pool2d), _on(device, avg_pool2d_backward)
    x = rng.standard_normal(_shape(case))
    out = forward(x, **_params(case))
    g, v = rng.standard_normal(out.shape), rng.standard_normal(x.shape)
    gx = to_host(backward(g, x.shape, **_params(case)))
    fd = _directional(lambda z: forward(z, **_params(case)), x, g, v, 1e-4)
    assert abs(fd - np.vdot(gx, v)) <= 1e-8 * (1 + abs(fd))


@pytest.mark.parametrize("shape,size", ADAPTIVE_CASES)
def test_adaptive_avg_pool2d_backward_finite_differences(device, shape, size, rng):
    forward, backward = _on(device, adaptive_avg_pool2d), _on(device, adaptive_avg_pool2d_backward)
    x = rng.standard_normal(shape)
    out = forward(x, size)
    g, v = rng.standard_normal(out.shape), rng.standard_normal(shape)
    fd = _directional(lambda z: forward(z, size), x, g, v, 1e-4)
    assert abs(fd - np.vdot(to_host(backward(g, shape)), v)) <= 1e-8 * (1 + abs(fd))


def test_backward_finite_differences_every_element(device, rng):
    shape = (1, 2, 5, 6)
    x = _distinct_input(rng, shape)
    max_fw, max_bw = _on(device, max_pool2d), _on(device, max_pool2d_backward)
    avg_fw, avg_bw = _on(device, avg_pool2d), _on(device, avg_pool2d_backward)
    adaptive_fw, adaptive_bw = _on(device, adaptive_avg_pool2d), _on(device, adaptive_avg_pool2d_backward)
    ops = [
        (
            lambda z: max_fw(z, 3, 2, 1, ceil_mode=True),
            lambda g: max_bw(g, shape, max_fw(x, 3, 2, 1, ceil_mode=True, return_indices=True)[1]),
        ),
        (
            lambda z: avg_fw(z, (3, 2), 2, (1, 0), ceil_mode=True, count_include_pad=False),
            lambda g: avg_bw(g, shape, (3, 2), 2, (1, 0), ceil_mode=True, count_include_pad=False),
        ),
        (lambda z: adaptive_fw(z, (3, 4)), lambda g: adaptive_bw(g, shape)),
    ]
    for forward, backward in ops:
        g = rng.standard_normal(forward(x).shape)
        gx = to_host(backward(g))
        numeric = np.empty(shape)
        for i in np.ndindex(*shape):
            e = np.zeros(shape)
            e[i] = 1.0
            numeric[i] = _directional(forward, x, g, e, 1e-3)
        np.testing.assert_allclose(gx, numeric, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# PyTorch on the same inputs


def _torch_max(torch, x, params, g):
    F = torch.nn.functional
    tx = torch.from_numpy(x).requires_grad_()
    out, idx = F.max_pool2d(tx, **params, return_indices=True)
    out.backward(torch.from_numpy(g))
    return out.detach().numpy(), idx.numpy(), tx.grad.numpy()


@pytest.mark.parametrize("index,case", list(enumerate(MAX_CASES)), ids=[_case_id(c) for c in MAX_CASES])
def test_max_pool2d_matches_torch(device, index, case, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(_shape(case)).astype(np.float32)
    got, idx = max_pool2d(on_device(device, x), **_params(case), return_indices=True)
    if (to_host(idx) < 0).any():  # PyTorch's index for a window over padding only points outside the plane
        pytest.skip("windows over padding only: PyTorch gives no usable index")
    g = rng.standard_normal(got.shape).astype(np.float32)
    t_out, t_idx, t_gx = _torch_max(torch, x, _params(case), g)
    np.testing.assert_array_equal(to_host(got), t_out)
    np.testing.assert_array_equal(to_host(idx), t_idx)
    np.testing.assert_allclose(
        to_host(max_pool2d_backward(on_device(device, g), x.shape, idx)), t_gx, rtol=1e-6, atol=1e-6
    )


def test_max_pool2d_nan_matches_torch(device, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    got, idx = (to_host(r) for r in max_pool2d(on_device(device, x), 3, 2, 1, return_indices=True))
    t_out, t_idx, _ = _torch_max(torch, x, dict(kernel_size=3, stride=2, padding=1), np.ones(got.shape, np.float32))
    np.testing.assert_array_equal(got, t_out)
    np.testing.assert_array_equal(idx, t_idx)


@pytest.mark.parametrize("index,case", list(enumerate(AVG_CASES)), ids=[_case_id(c) for c in AVG_CASES])
def test_avg_pool2d_matches_torch(device, index, case, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(_shape(case)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_()
    t_out = torch.nn.functional.avg_pool2d(tx, **_params(case))
    g = rng.standard_normal(tuple(t_out.shape)).astype(np.float32)
    t_out.backward(torch.from_numpy(g))
    dx, dg = on_device(device, x, g)
    np.testing.assert_allclose(to_host(avg_pool2d(dx, **_params(case))), t_out.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        to_host(avg_pool2d_backward(dg, x.shape, **_params(case))), tx.grad.numpy(), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("shape,size", ADAPTIVE_CASES)
def test_adaptive_avg_pool2d_matches_torch(device, shape, size, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_()
    t_out = torch.nn.functional.adaptive_avg_pool2d(tx, size)
    g = rng.standard_normal(tuple(t_out.shape)).astype(np.float32)
    t_out.backward(torch.from_numpy(g))
    dx, dg = on_device(device, x, g)
    np.testing.assert_allclose(to_host(adaptive_avg_pool2d(dx, size)), t_out.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_host(adaptive_avg_pool2d_backward(dg, shape)), tx.grad.numpy(), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# bad input

X4 = np.zeros((2, 3, 8, 8), dtype=np.float32)
G4 = np.zeros((2, 3, 4, 4), dtype=np.float32)

BAD = [
    (lambda on: max_pool2d(on(np.zeros((8, 8), np.float32)), 2), ValueError, r"x must be 3-D .* got shape \(8, 8\)"),
    (lambda on: max_pool2d(on(np.zeros((1, 2, 3, 8, 8), np.float32)), 2), ValueError, r"x must be .*\(1, 2, 3, 8, 8\)"),
    (
        lambda on: max_pool2d(on(np.zeros((2, 0, 8, 8), np.float32)), 2),
        ValueError,
        r"non-zero C, H and W.*\(2, 0, 8, 8\)",
    ),
    (lambda on: max_pool2d(on(X4).astype(np.int32), 2), TypeError, r"x must be float32 or float64, got dtype int32"),
    (
        lambda on: avg_pool2d(on(X4).astype(np.float16), 2),
        TypeError,
        r"x must be float32 or float64, got dtype float16",
    ),
    (lambda on: max_pool2d(on(X4), 0), ValueError, r"kernel_size must be positive, got \(0, 0\)"),
    (lambda on: max_pool2d(on(X4), (2, -1)), ValueError, r"kernel_size must be positive, got \(2, -1\)"),
    (lambda on: max_pool2d(on(X4), 2, stride=0), ValueError, r"stride must be positive, got \(0, 0\)"),
    (lambda on: max_pool2d(on(X4), 2, dilation=(1, 0)), ValueError, r"dilation must be positive, got \(1, 0\)"),
    (
        lambda on: max_pool2d(on(X4), 2, padding=2),
        ValueError,
        r"padding must be between 0 and half of kernel_size, got padding=\(2, 2\) and kernel_size=\(2, 2\)",
    ),
    (lambda on: avg_pool2d(on(X4), 3, padding=(1, -1)), ValueError, r"padding must be between .*\(1, -1\)"),
    (
        lambda on: max_pool2d(on(X4), 9),
        ValueError,
        r"output would be empty: input \(2, 3, 8, 8\) gives output size \(0, 0\)",
    ),
    (lambda on: avg_pool2d(on(X4), (9, 1)), ValueError, r"output would be empty"),
    (lambda on: max_pool2d(on(X4), 2.0), TypeError, r"kernel_size must be an int or a pair of ints, got 2.0"),
    (
        lambda on: max_pool2d(on(X4), (2, 2, 2)),
        ValueError,
        r"kernel_size must be an int or a pair \(H, W\), got \(2, 2, 2\)",
    ),
    (lambda on: max_pool2d(on(X4), True), TypeError, r"kernel_size must be an int"),
    (lambda on: avg_pool2d(on(X4), 2, divisor_override=0), ValueError, r"divisor_override must be nonzero"),
    (lambda on: avg_pool2d(on(X4), 2, divisor_override=2.5), TypeError, r"divisor_override must be an int, got 2\.5"),
    (
        lambda on: max_pool2d(on(X4), 2, out=on(np.zeros((2, 3, 4, 5), np.float32))),
        ValueError,
        r"out must have shape \(2, 3, 4, 4\), got \(2, 3, 4, 5\)",
    ),
    (
        lambda on: avg_pool2d(on(X4), 2, out=on(np.zeros((2, 3, 4, 4)))),
        TypeError,
        r"out must have dtype float32, got float64",
    ),
    (
        lambda on: max_pool2d_backward(on(G4), (2, 3, 8), on(np.zeros(G4.shape, np.int64))),
        ValueError,
        r"x_shape \(2, 3, 8\) must be .* grad_out \(2, 3, 4, 4\)",
    ),
    (
        lambda on: max_pool2d_backward(on(G4), (2, 4, 8, 8), on(np.zeros(G4.shape, np.int64))),
        ValueError,
        r"x_shape \(2, 4, 8, 8\)",
    ),
    (
        lambda on: max_pool2d_backward(on(G4), "2,3,8,8", on(np.zeros(G4.shape, np.int64))),
        TypeError,
        r"x_shape must be a tuple of ints",
    ),
    (
        lambda on: max_pool2d_backward(on(G4).astype(np.int64), X4.shape, on(np.zeros(G4.shape, np.int64))),
        TypeError,
        r"grad_out must be float32 or float64",
    ),
    (
        lambda on: avg_pool2d_backward(on(G4), X4.shape, 3),
        ValueError,
        r"grad_out must have shape \(2, 3, 2, 2\) .*x_shape \(2, 3, 8, 8\)\), got \(2, 3, 4, 4\)",
    ),
    (lambda on: avg_pool2d_backward(on(G4), X4.shape, 2, padding=3), ValueError, r"padding must be between"),
    (
        lambda on: avg_pool2d_backward(on(G4)[0, 0], X4.shape, 2),
        ValueError,
        r"grad_out must be 3-D or 4-D .* got shape \(4, 4\)",
    ),
    (
        lambda on: adaptive_avg_pool2d(on(X4), (2, 2, 2)),
        ValueError,
        r"output_size must be an int or a pair \(H, W\), got \(2, 2, 2\)",
    ),
    (
        lambda on: adaptive_avg_pool2d(on(X4), (-1, 2)),
        ValueError,
        r"output_size must be non-negative, got \(-1, 2\) for input \(2, 3, 8, 8\)",
    ),
    (lambda on: adaptive_avg_pool2d(on(X4), 1.5), TypeError, r"output_size must be an int"),
    (lambda on: adaptive_avg_pool2d_backward(on(G4), (2, 3, 0, 8)), ValueError, r"x_shape \(2, 3, 0, 8\)"),
]


@pytest.mark.parametrize("call,error,message", BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_input(device, call, error, message):
    with pytest.raises(error, match=message):
        call(lambda array: on_device(device, array))


def test_errors_name_the_op(device):
    x4, g4, indices = on_device(device, X4, G4, np.full(G4.shape, 99, np.int64))
    with pytest.raises(ValueError, match=r"^avg_pool2d: "):
        avg_pool2d(x4, 0)
    with pytest.raises(ValueError, match=r"^max_pool2d_backward: "):
        max_pool2d_backward(g4, (2, 3, 8, 8), indices)


def test_ops_exported():
    for name in (
        "max_pool2d",
        "max_pool2d_backward",
        "avg_pool2d",
        "avg_pool2d_backward",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool2d_backward",
    ):
        assert name in deepkern.ops.__all__ and callable(getattr(deepkern.ops, name))


# ----------------------------------------------------------------------------------------------
# the benchmark suite (deepkern bench --op pool) on small layers: its checks, references, GB/s rows


def test_bench_pool_suite_small_layers():
    from deepkern import bench
    from deepkern.bench import pool as dkb

    cases = [
        dkb._pool_case(3, 9, kind, k, s, p, backward)
        for kind, k, s, p in dkb.POOL_WINDOWS
        for backward in (False, True)
    ]
    for case in cases:
        sets = case.make_inputs()
        assert case.check(sets[0]) < 1e-5, f"{case.name} {case.layout}"
        if "numpy" in case.impls:  # the reference without PyTorch: strided windows of the padded input
            x = sets[0][0]
            np.testing.assert_allclose(case.impls["numpy"](x), case.impls["deepkern"](x), rtol=1e-5, atol=1e-6)
    kind, k, s, p = dkb.POOL_WINDOWS[1]
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(dkb.pool_numpy(x, kind, k, s, p), max_pool2d(x, k, s, p))
    suite = bench.Suite("pool-test", "small pooling cases", lambda quick: cases[:2])
    report = bench.run_suite(suite, [1], quick=True, repeats=1, progress=False, peak_stream_bytes=1 << 20)
    assert report.rows and all(r.unit == "GB/s" and r.ratio > 0 and r.rel_err < 1e-5 for r in report.rows)
    row = report.rows[0]
    assert row.pct_peak == pytest.approx(100 * row.gflops / report.peaks[1].stream_gbps)
    assert "GB/s" in bench.format_table(report.rows).splitlines()[0] and "%stream" in bench.format_table(report.rows)
    assert "GB/s" in bench.format_summary(bench.summarize(report.rows))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: max_pool2d(x, 2, stride=2**64), "stride"),
        (lambda x: max_pool2d(x, (2, 2**70)), "kernel_size"),
        (lambda x: avg_pool2d(x, 2, padding=-(2**63)), "padding"),
        (lambda x: avg_pool2d(x, 2, divisor_override=2**70), "divisor_override"),
        (lambda x: adaptive_avg_pool2d(x, (2**64, 1)), "output_size"),
        (lambda x: max_pool2d_backward(x[..., :3, :3], (1, 2, 2**64, 6), np.zeros((1, 2, 3, 3), np.int64)), "x_shape"),
    ],
)
def test_integers_past_int64_are_named(call, name):
    """An integer argument too large for the kernels' int64 indexing is a short ValueError naming it."""
    x = np.ones((1, 2, 6, 6), np.float32)
    with pytest.raises(ValueError, match=rf"^\w+: {name} must be between -2\*\*62 and 2\*\*62, got -?\d+$"):
        call(x)


# Windows that are mostly padding: the taps that never reach the input are dropped before the kernel
# runs (exact for every op: the averages take their divisors from the whole windows).
MOSTLY_PADDING = [  # (H, W, kernel, stride, padding, dilation)
    (3, 4, 9, 1, 4, 1),
    (5, 2, (11, 7), (2, 1), (5, 3), 1),
    (4, 6, 7, 3, 3, 1),
    (5, 6, 5, 1, 2, 2),
    (6, 1, (13, 3), (1, 2), (6, 1), (1, 1)),
]


@pytest.mark.parametrize("h, w, kernel, stride, padding, dilation", MOSTLY_PADDING)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_windows_mostly_padding_match_the_reference(h, w, kernel, stride, padding, dilation, dtype, rng):
    x = rand(rng, (2, 3, h, w), dtype)
    out, idx = max_pool2d(x, kernel, stride, padding, dilation, return_indices=True)
    ref_out, ref_idx = max_pool2d_ref(x, kernel, stride, padding, dilation)
    check(out, ref_out, dtype, "max_pool2d")
    np.testing.assert_array_equal(idx, ref_idx)
    g = rand(rng, out.shape, dtype)
    check(max_pool2d_backward(g, x.shape, idx), max_pool2d_backward_ref(g, x.shape, idx), dtype, "max backward")
    if dilation not in (1, (1, 1)):
        return
    for avg in (dict(count_include_pad=False), dict(divisor_override=7), dict(count_include_pad=True)):
        got = avg_pool2d(x, kernel, stride, padding, **avg)
        check(got, avg_pool2d_ref(x, kernel, stride, padding, **avg), dtype, f"avg_pool2d {avg}")
        g = rand(rng, got.shape, dtype)
        check(
            avg_pool2d_backward(g, x.shape, kernel, stride, padding, **avg),
            avg_pool2d_backward_ref(g, x.shape, kernel, stride, padding, **avg),
            dtype,
            f"avg_pool2d_backward {avg}",
        )


def test_a_huge_window_over_a_small_input_is_cheap(rng):
    """kernel_size 2**20 with padding 2**19 on 5x5 planes: every window covers the whole plane (the
    work is bounded by the input, as in PyTorch, not by the window)."""
    x = rand(rng, (2, 3, 5, 5), F64)
    k, p = 2**20, 2**19
    out, idx = max_pool2d(x, k, 1, p, return_indices=True)
    assert out.shape == (2, 3, 6, 6)
    np.testing.assert_array_equal(out, np.broadcast_to(x.max(axis=(2, 3))[..., None, None], out.shape))
    np.testing.assert_array_equal(idx, np.broadcast_to(x.reshape(2, 3, 25).argmax(-1)[..., None, None], idx.shape))
    mean = avg_pool2d(x, k, 1, p, count_include_pad=False)
    check(mean, np.broadcast_to(x.mean(axis=(2, 3))[..., None, None], mean.shape), F64, "avg")


# Average pooling counting the padding with a huge window: the taps that reach no input are dropped
# as for the other divisors, and the divisor still counts the padded window (PyTorch's rule).
HUGE_WINDOWS = [  # (kernel, stride, padding, ceil_mode)
    (2**20, 1, 2**19, False),
    ((2**20, 3), (1, 2), (2**19, 1), True),
    ((2**18 + 1, 2**20), (5, 3), (2**17, 2**19), False),
    (2**40, 2**39, 2**39, True),
]


def _window_cover(n_in, n_out, kernel, stride, pad):
    """The (n_out, n_in) 0/1 matrix of the input positions each window covers."""
    start = np.arange(n_out)[:, None] * stride - pad
    pos = np.arange(n_in)[None, :]
    return ((pos >= start) & (pos - start < kernel)).astype(np.float64)


def _avg_pool2d_by_cover(x, g, kernel, stride, padding, ceil_mode, avg):
    """avg_pool2d of x and avg_pool2d_backward of g in float64, at a cost that follows the input and
    the output, not the window: out = Ch @ x @ Cw^T / divisor and grad_x = Ch^T @ (g / divisor) @ Cw,
    C the windows' cover of each axis and the divisor the reference's, per output."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    h, w = x.shape[-2:]
    oh, ow = (pool_output_size_ref(n, k, s, p, 1, ceil_mode) for n, k, s, p in ((h, kh, sh, ph), (w, kw, sw, pw)))
    ch, cw = _window_cover(h, oh, kh, sh, ph), _window_cover(w, ow, kw, sw, pw)
    divisor = _avg_divisor(x.shape, kernel, stride, padding, ceil_mode, **avg, out_hw=(oh, ow))
    out = np.einsum("ph,...hw,qw->...pq", ch, np.asarray(x, np.float64), cw) / divisor
    return out, np.einsum("ph,...pq,qw->...hw", ch, np.asarray(g, np.float64) / divisor, cw)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kernel, stride, padding, ceil_mode", HUGE_WINDOWS)
def test_avg_pool2d_huge_window_counting_the_padding(device, kernel, stride, padding, ceil_mode, dtype, rng):
    x = rand(rng, (2, 3, 5, 4), dtype)
    out_hw = (
        pool_output_size_ref(n, k, s, p, 1, ceil_mode)
        for n, k, s, p in zip((5, 4), *map(_pair, (kernel, stride, padding)))
    )
    g = rand(rng, (2, 3, *out_hw), dtype)
    for avg in (
        dict(count_include_pad=True, divisor_override=None),
        dict(count_include_pad=False, divisor_override=None),
        dict(count_include_pad=True, divisor_override=3),
    ):
        ref, ref_gx = _avg_pool2d_by_cover(x, g, kernel, stride, padding, ceil_mode, avg)
        what = f"kernel={kernel} stride={stride} padding={padding} ceil_mode={ceil_mode} {avg} {dtype}"
        out, _ = make_out(ref.shape, dtype, False, device)
        got = avg_pool2d(on_device(device, x), kernel, stride, padding, ceil_mode, **avg, out=out)
        assert got is out
        check(got, ref, dtype, "avg_pool2d " + what)
        gx, _ = make_out(x.shape, dtype, False, device)
        got = avg_pool2d_backward(on_device(device, g), x.shape, kernel, stride, padding, ceil_mode, **avg, out=gx)
        assert got is gx
        check(got, ref_gx, dtype, "avg_pool2d_backward " + what)


def test_avg_pool2d_huge_window_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rand(rng, (2, 3, 5, 4), F64)
    for kernel, stride, padding, ceil_mode in HUGE_WINDOWS[:3]:
        for count_include_pad in (True, False):
            args = (kernel, stride, padding, ceil_mode, count_include_pad)
            xt = torch.tensor(x, requires_grad=True)
            out = torch.nn.functional.avg_pool2d(xt, *args)
            g = rand(rng, tuple(out.shape), F64)
            out.backward(torch.tensor(g))
            check(avg_pool2d(x, *args), out.detach().numpy(), F64, f"avg_pool2d {args} vs torch")
            check(avg_pool2d_backward(g, x.shape, *args), xt.grad.numpy(), F64, f"avg_pool2d_backward {args} vs torch")


# Inf and NaN give what the direct float64 sums and maxima give (PyTorch's results): a window's NaN
# or its Inf - Inf is NaN, an Inf alone is Inf.
NON_FINITE_POOLS = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=1, ceil_mode=True),
    dict(kernel_size=4, stride=(1, 3), padding=2),
]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("params", NON_FINITE_POOLS, ids=str)
def test_pooling_inf_and_nan(device, params, dtype, rng):
    shape = (2, 3, 9, 11)
    x = sprinkle_non_finite(rng, rand(rng, shape, dtype), 12)
    dx = on_device(device, x)
    what = f"{params} {dtype}"
    ref, ref_idx = max_pool2d_ref(x, **params)
    out, idx = max_pool2d(dx, **params, return_indices=True)
    check_non_finite(out, ref, dtype, "max_pool2d " + what)
    np.testing.assert_array_equal(to_host(idx), ref_idx, err_msg="max_pool2d indices " + what)
    g = sprinkle_non_finite(rng, rand(rng, ref.shape, dtype), 6)
    dg = on_device(device, g)
    check_non_finite(
        max_pool2d_backward(dg, shape, idx), max_pool2d_backward_ref(g, shape, ref_idx), dtype, "max backward " + what
    )
    for avg in (dict(count_include_pad=True), dict(count_include_pad=False), dict(divisor_override=5)):
        check_non_finite(
            avg_pool2d(dx, **params, **avg), avg_pool2d_ref(x, **params, **avg), dtype, f"avg_pool2d {avg} {what}"
        )
        check_non_finite(
            avg_pool2d_backward(dg, shape, **params, **avg),
            avg_pool2d_backward_ref(g, shape, **params, **avg),
            dtype,
            f"avg_pool2d_backward {avg} {what}",
        )
    check_non_finite(adaptive_avg_pool2d(dx, (4, 3)), adaptive_avg_pool2d_ref(x, (4, 3)), dtype, "adaptive " + what)
    g = sprinkle_non_finite(rng, rand(rng, shape[:2] + (4, 3), dtype), 4)
    check_non_finite(
        adaptive_avg_pool2d_backward(on_device(device, g), shape),
        adaptive_avg_pool2d_backward_ref(g, shape),
        dtype,
        "adaptive backward " + what,
    )


# Windows farther apart than the input is long (ceil_mode's last window past a stride > input):
# each window's in-bounds taps are visited directly (with a huge window and stride the clipped tap
# range would be as long as the stride).
WINDOWS_APART = [  # (H, W, kernel, stride, padding, dilation), all with ceil_mode
    (3, 4, 7, 5, 3, 1),
    (6, 2, (5, 5), (7, 3), 2, (2, 1)),
    (1, 6, (4, 6), (2, 7), (2, 3), 1),
    (2, 5, 7, (4, 1), 3, 1),  # apart along H only
]


@pytest.mark.parametrize("h, w, kernel, stride, padding, dilation", WINDOWS_APART)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_windows_apart_match_the_reference(device, h, w, kernel, stride, padding, dilation, dtype, rng):
    x = on_device(device, rand(rng, (2, 3, h, w), dtype))
    hx = to_host(x)
    ref_out, ref_idx = max_pool2d_ref(hx, kernel, stride, padding, dilation, ceil_mode=True)
    assert ref_out.shape[-2:] != (1, 1)
    out, _ = make_out(ref_out.shape, dtype, False, device)
    idx = max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=True, return_indices=True, out=out)[1]
    check(out, ref_out, dtype, "max_pool2d")
    np.testing.assert_array_equal(to_host(idx), ref_idx)
    if dilation != 1:
        return
    for avg in (dict(count_include_pad=False), dict(divisor_override=7), dict(count_include_pad=True)):
        out, _ = make_out(ref_out.shape, dtype, False, device)
        avg_pool2d(x, kernel, stride, padding, True, **avg, out=out)
        check(out, avg_pool2d_ref(hx, kernel, stride, padding, True, **avg), dtype, f"avg_pool2d {avg}")
        g = rand(rng, ref_out.shape, dtype)
        gx, _ = make_out(hx.shape, dtype, False, device)
        avg_pool2d_backward(on_device(device, g), hx.shape, kernel, stride, padding, True, **avg, out=gx)
        ref_gx = avg_pool2d_backward_ref(g, hx.shape, kernel, stride, padding, True, **avg)
        check(gx, ref_gx, dtype, f"avg_pool2d_backward {avg}")


def test_max_pool2d_huge_windows_apart(rng):
    """kernel 2**40, stride and padding 2**39, ceil_mode: two windows along each axis, each covering
    the whole 5x4 plane."""
    x = rand(rng, (2, 3, 5, 4), F64)
    out, idx = max_pool2d(x, 2**40, 2**39, 2**39, ceil_mode=True, return_indices=True)
    assert out.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(out, np.broadcast_to(x.max(axis=(2, 3))[..., None, None], out.shape))
    np.testing.assert_array_equal(idx, np.broadcast_to(x.reshape(2, 3, 20).argmax(-1)[..., None, None], idx.shape))


# Strides far past the input (one window along the axis): the kernels use no scratch that follows
# the stride, and the results are the float64 references'.
HUGE_STRIDES = [  # (x shape, kernel, stride, padding)
    ((1, 3, 3), 3, 2**31, 0),
    ((3, 3, 3), (2, 3), 2**31, 0),
    ((2, 3, 5, 4), (2, 3), 2**31 - 1, 1),
    ((2, 3, 6, 5), 2, (1, 2**40), 1),  # several windows along H, one along W
    ((2, 3, 5, 7), (3, 2), (2**62 - 1, 3), (1, 0)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape, kernel, stride, padding", HUGE_STRIDES)
def test_huge_strides_match_the_reference(device, shape, kernel, stride, padding, dtype, rng):
    x = rand(rng, shape, dtype)
    dx = on_device(device, x)
    ref, ref_idx = max_pool2d_ref(x, kernel, stride, padding)
    out, idx = max_pool2d(dx, kernel, stride, padding, return_indices=True)
    check(out, ref, dtype, "max_pool2d")
    np.testing.assert_array_equal(to_host(idx), ref_idx)
    g = rand(rng, ref.shape, dtype)
    dg = on_device(device, g)
    check(max_pool2d_backward(dg, shape, idx), max_pool2d_backward_ref(g, shape, ref_idx), dtype, "max backward")
    for avg in (dict(count_include_pad=True), dict(count_include_pad=False), dict(divisor_override=-2)):
        check(avg_pool2d(dx, kernel, stride, padding, **avg), avg_pool2d_ref(x, kernel, stride, padding, **avg), dtype)
        check(
            avg_pool2d_backward(dg, shape, kernel, stride, padding, **avg),
            avg_pool2d_backward_ref(g, shape, kernel, stride, padding, **avg),
            dtype,
            f"avg_pool2d_backward {avg}",
        )


def test_kernels_take_strides_below_2_62(rng):
    """deepkern._C's pooling shape (planes, in_h, in_w, out_h, out_w, kernel_h, kernel_w, stride_h,
    stride_w, pad_h, pad_w, dilation_h, dilation_w): a stride of 2**62 - 1 over one window runs as
    the reference; 2**62 is refused, naming the field."""
    x = rand(rng, (3, 3, 9), F64)
    out, idx = np.full((3, 1, 3), np.nan), np.full((3, 1, 3), -7, dtype=np.int64)
    deepkern._C.max_pool2d(x, out, idx, (3, 3, 9, 1, 3, 3, 1, 2**62 - 1, 3, 0, 0, 1, 1))
    ref, ref_idx = max_pool2d_ref(x, (3, 1), (2**62 - 1, 3))
    check(out, ref, F64, "_C.max_pool2d")
    np.testing.assert_array_equal(idx, ref_idx)
    g, gx = rand(rng, (3, 4, 1), F64), np.full((3, 9, 4), np.nan)
    deepkern._C.avg_pool2d_backward(g, gx, (3, 9, 4, 4, 1, 2, 3, 2, 2**62 - 1, 0, 0, 1, 1), True, -2)
    check(gx, avg_pool2d_backward_ref(g, (3, 9, 4), (2, 3), (2, 2**62 - 1), divisor_override=-2), F64, "_C backward")
    with pytest.raises(ValueError, match=re.escape(f"shape[7] (stride_h) must be < 2**62, got {2**62}")):
        deepkern._C.max_pool2d(x, out, idx, (3, 3, 9, 1, 3, 3, 1, 2**62, 3, 0, 0, 1, 1))
    with pytest.raises(ValueError, match=re.escape("shape[8] (stride_w) must be < 2**62")):
        deepkern._C.avg_pool2d_backward(g, gx, (3, 9, 4, 4, 1, 2, 3, 2, 2**62, 0, 0, 1, 1), True, -2)
    # No planes: nothing is written, whatever the output size claims.
    empty = np.zeros((0, 3, 9))
    deepkern._C.max_pool2d(empty, np.zeros((0, 1)), None, (0, 3, 9, 1, 2**31, 3, 1, 1, 1, 0, 0, 1, 1))


def test_max_pool2d_backward_refused_leaves_out_untouched(device, rng):
    """Bad indices in two planes (of an input large enough for several threads): the first is named,
    and out keeps its contents."""
    x = rng.standard_normal((4, 16, 32, 32))
    _, idx = max_pool2d(x, 2, return_indices=True)
    g = on_device(device, rng.standard_normal(idx.shape))
    wrong = idx.copy()
    wrong[3, 15, 2, 1] = -5
    wrong[2, 7, 0, 3] = 1024  # the planes before it would be scattered first
    first = np.ravel_multi_index((2, 7, 0, 3), idx.shape)
    out = on_device(device, np.full(x.shape, np.nan))
    with pytest.raises(ValueError, match=f"index 1024 at flat position {first} is outside"):
        max_pool2d_backward(g, x.shape, on_device(device, wrong), out=out)
    assert np.isnan(to_host(out)).all(), "a refused call wrote into out"


def test_max_pool2d_backward_takes_unaligned_indices(rng):
    x = rng.standard_normal((2, 3, 6, 5))
    _, idx = max_pool2d(x, (2, 3), 1, return_indices=True)
    raw = np.zeros(idx.nbytes + 1, dtype=np.uint8)
    unaligned = raw[1:].view(np.int64).reshape(idx.shape)
    unaligned[...] = idx
    assert not unaligned.flags.aligned
    g = rng.standard_normal(idx.shape)
    check(max_pool2d_backward(g, x.shape, unaligned), max_pool2d_backward_ref(g, x.shape, idx), F64, "unaligned")
