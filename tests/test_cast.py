"""float32 <-> bfloat16 conversion: ``deepkern._C.cast`` and the array helper every bfloat16 path
uses (``deepkern.ops._validate.astype``: Tensor.to, autocast's casts, the bfloat16 ops that compute
through float32).

The reference is an independent rounding of the float32 bits computed here in NumPy integers
(round to nearest, ties to even; NaN kept and made quiet), cross-checked against ml_dtypes' own
conversion, bit for bit: every one of the 65536 bfloat16 bit patterns widened, and float32 inputs
that cover ties, the values just beside them, subnormals, the overflow threshold, ±0, ±inf and NaNs
with payloads. Sizes leave vector tails and split over 2 threads unevenly; outputs are pre-filled
with NaN; each test runs on every ISA the CPU supports (``_C.last_isa('cast')`` confirms it).
"""

from __future__ import annotations

import deepkern
import numpy as np
import pytest
from deepkern import _C
from deepkern.ops._validate import astype

from checks import raises_naming

BF16 = np.dtype(deepkern.bfloat16)
F32 = np.dtype(np.float32)
SIZES = [0, 1, 15, 16, 17, 33, 1000, 65537, 200003]


def rounded_bits(x: np.ndarray) -> np.ndarray:
    """The bfloat16 bits of float32 ``x`` rounded to nearest even, computed on the integers: add
    half an ulp of bfloat16 minus one, plus the kept part's lowest bit (ties to even), truncate.
    A NaN becomes the quiet NaN of its sign (ml_dtypes' rule; its payload is dropped)."""
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, ((bits >> 16) & 0x8000) | 0x7FC0, rounded).astype(np.uint16)


def hard_floats(rng, n: int) -> np.ndarray:
    """n float32 values mixing random magnitudes with the cases rounding gets wrong: exact ties
    (low half 0x8000) with even and odd kept parts, one ulp beside them, subnormals, values at the
    overflow threshold, ±0, ±inf, NaNs with payloads (quiet and signalling)."""
    high = rng.integers(0, 1 << 16, n, dtype=np.uint32) << 16
    low = rng.choice(np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32), n)
    bits = high | np.where(rng.random(n) < 0.5, low, rng.integers(0, 1 << 16, n, dtype=np.uint32))
    special = np.array(
        [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FBF8000,
         0x7F7F8000, 0x7F7FFFFF, 0x7F7F7FFF, 0xFF7F8000, 0x00000001, 0x80008000, 0x00018000, 0x007FFFFF],
        np.uint32,
    )  # fmt: skip
    if n:
        bits[rng.choice(n, min(n, special.size), replace=False)] = special[: min(n, special.size)]
    return bits.view(np.float32)


def test_the_integer_reference_is_ml_dtypes_rounding(rng):
    x = hard_floats(rng, 100003)
    with np.errstate(invalid="ignore"):  # ml_dtypes warns on NaN inputs
        assert np.array_equal(rounded_bits(x), x.astype(BF16).view(np.uint16))


@pytest.mark.parametrize("n", SIZES)
def test_float32_to_bfloat16_rounds_every_value_to_nearest_even(isa, threads, rng, n):
    x = hard_floats(rng, n)
    out = np.full(n, np.nan, BF16)
    _C.reset_isa_records()
    _C.cast(x, out)
    assert np.array_equal(out.view(np.uint16), rounded_bits(x))
    if n:
        assert _C.last_isa("cast") == isa


def test_bfloat16_to_float32_widens_every_bit_pattern_exactly(isa, threads):
    bits = np.arange(1 << 16, dtype=np.uint16)
    out = np.full(bits.size, np.nan, F32)
    _C.reset_isa_records()
    _C.cast(bits.view(BF16), out)
    assert np.array_equal(out.view(np.uint32), bits.astype(np.uint32) << 16)
    assert _C.last_isa("cast") == isa


@pytest.mark.parametrize("n", [0, 17, 65537])
def test_bfloat16_to_float32_round_trips(rng, n):
    x = hard_floats(rng, n)
    narrow = astype(x, BF16)
    wide = astype(narrow, F32)
    assert np.array_equal(astype(wide, BF16).view(np.uint16), narrow.view(np.uint16))
    assert np.array_equal(wide.view(np.uint32), narrow.view(np.uint16).astype(np.uint32) << 16)


@pytest.mark.parametrize("shape", [(3, 0, 5), (7, 9, 13), (2, 3, 4, 1025)])
def test_astype_keeps_shape_and_values_for_contiguous_and_strided_arrays(rng, shape):
    x = hard_floats(rng, int(np.prod(shape))).reshape(shape)
    views = [x, x[..., ::2], np.swapaxes(x, 0, -1), x[::-1]]
    for view in views:
        got = astype(view, BF16)
        assert got.shape == view.shape and got.dtype == BF16
        assert np.array_equal(got.view(np.uint16), rounded_bits(np.ascontiguousarray(view)))
        back = astype(got, F32)
        assert back.dtype == F32 and np.array_equal(back.view(np.uint32), got.view(np.uint16).astype(np.uint32) << 16)


def test_astype_takes_unaligned_arrays(rng):
    x = hard_floats(rng, 1001)
    raw = np.empty(x.nbytes + 1, np.uint8)
    unaligned = raw[1:].view(F32)
    unaligned[...] = x
    assert not unaligned.flags.aligned
    assert np.array_equal(astype(unaligned, BF16).view(np.uint16), rounded_bits(x))


def test_astype_falls_back_to_numpy_for_other_dtypes_and_byte_orders(rng):
    x = rng.standard_normal((5, 6))
    assert astype(x, F32).dtype == F32 and np.array_equal(astype(x, F32), x.astype(F32))
    swapped = x.astype(F32).astype(">f4")  # non-native byte order: NumPy converts it
    assert np.array_equal(astype(swapped, BF16).view(np.uint16), rounded_bits(x.astype(F32)))
    same = x.astype(F32)
    copy = astype(same, F32)
    assert copy is not same and np.array_equal(copy, same)  # a new array, as ndarray.astype


def test_tensor_casts_use_the_conversion_and_stay_differentiable(rng):
    values = hard_floats(rng, 4099)
    x = deepkern.tensor(values, requires_grad=True)
    y = x.to(deepkern.bfloat16)
    assert y.dtype == BF16 and np.array_equal(y.detach().numpy().view(np.uint16), rounded_bits(values))
    g = astype(hard_floats(rng, y.shape[0]), BF16)
    y.backward(deepkern.tensor(g))
    assert x.grad.dtype == F32
    assert np.array_equal(x.grad.numpy().view(np.uint32), g.view(np.uint16).astype(np.uint32) << 16)


def test_cast_refuses_bad_arguments():
    x = np.ones((4, 5), F32)
    with raises_naming(TypeError, "cast", "src", "float64"):
        _C.cast(np.ones(3), np.empty(3, BF16))
    with raises_naming(TypeError, "cast", "src", "numpy.ndarray"):
        _C.cast([1.0, 2.0], np.empty(2, BF16))
    with raises_naming(TypeError, "cast", "out", "bfloat16", "float32"):
        _C.cast(x, np.empty((4, 5), F32))
    with raises_naming(TypeError, "cast", "out", "float32"):
        _C.cast(x.astype(BF16), np.empty((4, 5), BF16))
    with raises_naming(ValueError, "cast", "out", "20 elements", r"\(4, 4\)"):
        _C.cast(x, np.empty((4, 4), BF16))
    with raises_naming(ValueError, "cast", "src", "contiguous"):
        _C.cast(np.ones((4, 10), F32)[:, ::2], np.empty((4, 5), BF16))
    readonly = np.empty((4, 5), BF16)
    readonly.flags.writeable = False
    with raises_naming(ValueError, "cast", "out", "writeable|read-only"):
        _C.cast(x, readonly)
    buffer = np.zeros(40, F32)
    with raises_naming(ValueError, "cast", "out", "src"):  # out inside src's memory
        _C.cast(buffer, buffer.view(BF16)[:40])
