"""The contract of deepkern.ops' dropout and of the Philox4x32-10 stream behind it.

Philox itself is checked against the known-answer vectors published with the generator (Random123's
kat_vectors) through a scalar pure-Python Philox written here from the algorithm, and the NumPy
reference of tests/reference.py against that. The kernels must then give exactly the reference's
mask (element i keeps word i % 4 of Philox(offset + i // 4, seed)) and exactly x * (1 / (1 - p)
rounded to the dtype) for the kept elements, x * 0 for the others, on every ISA, thread count and
device (so the CPU and the GPU agree bit for bit), for odd and zero sizes, strided inputs and outputs
and NaN-prefilled outputs; the fraction kept lies within binomial bounds; p = 0 and p = 1 are exact.
F.dropout, nn.Dropout and nn.LSTM's dropout take (seed, offset) from deepkern's Philox state and
are reproducible from deepkern.manual_seed.
"""

from __future__ import annotations

import math
import warnings

import deepkern
import numpy as np
import pytest
from deepkern import nn
from deepkern.nn import functional as F
from deepkern.ops import dropout, dropout_backward
from deepkern.random import get_philox_state, philox_seed_offset, set_philox_state

from checks import raises_naming
from conftest import on_device, to_host
from reference import dropout_backward_ref, dropout_ref, dropout_words_ref, philox4x32_10_ref

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
DTYPES = [F32, F64]
#: Around a Philox block (4), a tile of the CPU kernel (256), the threads' cut (64) and split (8192).
SIZES = [0, 1, 3, 4, 5, 63, 64, 65, 257, 8191, 16385, 65537, 100003]
PROBABILITIES = [0.0, 1e-9, 0.1, 0.5, 0.9, 1 - 1e-9, 1.0]
BIG_SEED = 0x1234_5678_9ABC_DEF0  # both key words non-zero


def philox_scalar(counter, key):
    """Philox4x32-10 in plain Python integers, from the algorithm (Salmon et al., SC 2011, fig. 2)."""
    c, (k0, k1) = list(counter), key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) % 2**32, (k1 + 0xBB67AE85) % 2**32
        hi0, lo0 = divmod(0xD2511F53 * c[0], 2**32)
        hi1, lo1 = divmod(0xCD9E8D57 * c[2], 2**32)
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return c


#: Random123 1.09, examples/kat_vectors: "philox4x32 10 <counter> <key> <expected>".
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((2**32 - 1,) * 4, (2**32 - 1,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _scale(p: float, dtype) -> np.ndarray:
    """The kernels' multiplier of a kept element: 1 / (1 - p) rounded once to dtype (0 for p = 1)."""
    return np.asarray(1 / (1 - p) if p < 1 else 0.0).astype(dtype)


def _exact(x: np.ndarray, mask: np.ndarray, p: float) -> np.ndarray:
    """What the kernels compute, in x's dtype: x * (mask ? scale : 0), one rounding."""
    with np.errstate(invalid="ignore"):  # inf * 0
        return x * np.where(mask, _scale(p, x.dtype), x.dtype.type(0))


def _values(rng, n, dtype):
    x = rng.standard_normal(n)
    x[rng.random(n) < 0.01] = np.nan
    x[rng.random(n) < 0.01] = np.inf
    return x.astype(dtype)


def _check(y, mask, x, p, seed, offset, what):
    y, mask = to_host(y), to_host(mask)
    y_ref, mask_ref = dropout_ref(x, p, seed, offset)
    assert mask.dtype == np.bool_ and mask.shape == x.shape, f"{what}: mask {mask.dtype} {mask.shape}"
    assert y.dtype == x.dtype and y.shape == x.shape, f"{what}: y {y.dtype} {y.shape}"
    wrong = np.flatnonzero((mask != mask_ref).ravel())
    assert wrong.size == 0, f"{what}: {wrong.size} mask entries differ from the reference, first at {wrong[0]}"
    np.testing.assert_array_equal(y, _exact(x, mask_ref, p), err_msg=what)
    # and against float64: the kept elements within one rounding of x / (1 - p)
    close = np.isclose(y, y_ref, rtol=2 * np.finfo(x.dtype).eps, atol=0, equal_nan=True)
    assert close.all(), f"{what}: y differs from the float64 reference"


# ---- Philox ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_python_philox_gives_the_published_answers(counter, key, expected):
    assert tuple(philox_scalar(counter, key)) == expected
    assert tuple(int(v) for v in philox4x32_10_ref([counter], key)[0]) == expected


def test_numpy_reference_matches_the_scalar_philox(rng):
    counters = rng.integers(0, 2**32, (200, 4), dtype=np.uint64)
    for key in [(0, 0), (2**32 - 1, 1), tuple(int(k) for k in rng.integers(0, 2**32, 2))]:
        got = philox4x32_10_ref(counters, key)
        want = np.array([philox_scalar([int(v) for v in row], key) for row in counters], np.uint32)
        np.testing.assert_array_equal(got, want, err_msg=f"key {key}")


def test_element_words_follow_the_counter_with_its_carry():
    """Element i takes word i % 4 of the 128-bit counter offset + i // 4; past 2**64 - 1 the carry
    goes into word 2."""
    seed, offset = BIG_SEED, 2**64 - 2
    key = (seed % 2**32, seed >> 32)
    words = dropout_words_ref(13, seed, offset)
    for i in range(13):
        counter = offset + i // 4
        block = philox_scalar([(counter >> (32 * j)) % 2**32 for j in range(4)], key)
        assert words[i] == block[i % 4], f"element {i}"


# ---- the kernels against the reference --------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mask_and_output_match_reference(size, dtype, isa, threads, device, rng):
    x = _values(rng, size, dtype)
    p = float(rng.choice([0.1, 0.37, 0.5, 0.8]))
    seed, offset = int(rng.integers(0, 2**63)) * 2 + 1, int(rng.integers(0, 2**40))
    out = on_device(device, np.full(size, np.nan, dtype))
    mask = on_device(device, np.zeros(size, np.bool_))
    deepkern._C.reset_isa_records()
    y, m = dropout(on_device(device, x), p, seed, offset, out=out, mask=mask)
    assert y is out and m is mask
    if size and device == "cpu":
        assert deepkern._C.last_isa("dropout") == isa
    _check(y, m, x, p, seed, offset, f"n={size} {dtype} p={p} {isa} {threads} threads on {device}")


@pytest.mark.parametrize("p", PROBABILITIES)
def test_every_probability_and_counter_carry(p, device, rng):
    x = _values(rng, 1001, F32).reshape(7, 11, 13)
    for seed, offset in [(0, 0), (BIG_SEED, 2**64 - 100), (2**64 - 1, 2**63)]:
        y, m = dropout(on_device(device, x), p, seed, offset)
        _check(y, m, x, p, seed, offset, f"p={p} seed={seed} offset={offset} on {device}")


def test_same_masks_for_any_thread_count(rng):
    x = rng.standard_normal(200_003).astype(np.float32)
    previous = deepkern.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3, 7):
            with warnings.catch_warnings():  # more threads than this machine's CPUs: slower, same result
                warnings.simplefilter("ignore", RuntimeWarning)
                deepkern.set_num_threads(n)
            results.append(dropout(x, 0.3, 99, 5))
    finally:
        deepkern.set_num_threads(previous)
    for y, m in results[1:]:
        np.testing.assert_array_equal(m, results[0][1])
        np.testing.assert_array_equal(y, results[0][0])


def test_a_call_continues_where_the_last_stopped(rng):
    """Two calls on n1 and n2 elements (n1 a multiple of 4), the second at offset + n1 / 4, draw the
    mask of one call on n1 + n2 elements."""
    x = rng.standard_normal(1000)
    _, whole = dropout(x, 0.5, 7, 40)
    _, first = dropout(x[:400], 0.5, 7, 40)
    _, second = dropout(x[400:], 0.5, 7, 40 + 100)
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.75, 0.99])
def test_fraction_kept_lies_within_binomial_bounds(p, device):
    n = 1_000_000
    x = on_device(device, np.ones(n, np.float32))
    for seed in (1, 2**40 + 3):
        y, m = dropout(x, p, seed, 0)
        kept = int(to_host(m).sum())
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(kept - n * (1 - p)) < 5 * sigma, f"p={p}: kept {kept} of {n}, expected {n * (1 - p):.0f}"
        np.testing.assert_array_equal(to_host(y)[to_host(m)], _scale(p, F32))


def test_p0_keeps_everything_and_p1_drops_everything(device, rng):
    x = _values(rng, 4099, F64)
    y, m = dropout(on_device(device, x), 0.0, 3, 0)
    assert to_host(m).all()
    np.testing.assert_array_equal(to_host(y), x)
    y, m = dropout(on_device(device, x), 1.0, 3, 0)
    assert not to_host(m).any()
    with np.errstate(invalid="ignore"):  # zeros, NaN where x is NaN or inf (PyTorch's x * 0)
        np.testing.assert_array_equal(to_host(y), x * 0.0)


def test_strided_input_and_outputs(device, rng):
    x = _values(rng, (40, 30), F32)
    out = on_device(device, np.full((30, 40), np.nan, np.float32)).T
    mask = on_device(device, np.zeros((30, 40), np.bool_)).T
    y, m = dropout(on_device(device, x.T.copy()).T, 0.4, 11, 3, out=out, mask=mask)
    assert y is out and m is mask
    _check(y, m, x, 0.4, 11, 3, f"transposed arrays on {device}")


@pytest.mark.parametrize("size", [0, 1, 5, 257, 100003])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_backward_multiplies_by_the_saved_mask(size, dtype, threads, device, rng):
    x, grad = rng.standard_normal(size).astype(dtype), _values(rng, size, dtype)
    p = 0.35
    _, mask = dropout(on_device(device, x), p, 5, 0)
    out = on_device(device, np.full(size, np.nan, dtype))
    got = dropout_backward(on_device(device, grad), mask, p, out=out)
    assert got is out
    np.testing.assert_array_equal(to_host(got), _exact(grad, to_host(mask), p))
    np.testing.assert_allclose(to_host(got), dropout_backward_ref(grad, to_host(mask), p), rtol=2e-7)


def test_backward_takes_a_strided_mask(rng):
    grad = rng.standard_normal((6, 9))
    mask = rng.random((9, 6)) < 0.5
    got = dropout_backward(grad, mask.T, 0.25)
    np.testing.assert_array_equal(got, _exact(grad, mask.T, 0.25))


# ---- bad arguments ------------------------------------------------------------------------------------


def test_bad_arguments_raise_naming_them(rng):
    x = rng.standard_normal(10)
    for p in (1.5, -0.1, float("nan")):
        with raises_naming(ValueError, "dropout", "p", str(p)):
            dropout(x, p, 0, 0)
    with raises_naming(TypeError, "dropout", "p"):
        dropout(x, "0.5", 0, 0)
    for name, args in (("seed", (-1, 0)), ("offset", (0, 2**64))):
        with raises_naming(ValueError, "dropout", name):
            dropout(x, 0.5, *args)
    with raises_naming(TypeError, "dropout", "seed"):
        dropout(x, 0.5, 1.0, 0)
    with raises_naming(TypeError, "dropout", "x"):
        dropout(x.astype(np.int32), 0.5, 0, 0)
    with raises_naming(TypeError, "dropout", "mask"):
        dropout(x, 0.5, 0, 0, mask=np.zeros(10, np.uint8))
    with raises_naming(ValueError, "dropout", "out", "x"):
        dropout(x, 0.5, 0, 0, out=x)
    with raises_naming(ValueError, "dropout", "mask", "(9,)"):
        dropout(x, 0.5, 0, 0, mask=np.zeros(9, np.bool_))
    with raises_naming(TypeError, "dropout_backward", "mask"):
        dropout_backward(x, np.ones(10), 0.5)
    with raises_naming(ValueError, "dropout_backward", "mask", "(10,)"):
        dropout_backward(x, np.ones(11, np.bool_), 0.5)
    with raises_naming(ValueError, "dropout_backward", "p"):
        dropout_backward(x, np.ones(10, np.bool_), 2.0)


# ---- the layers: deepkern's Philox state ----------------------------------------------------------------


def test_functional_dropout_draws_from_the_philox_state(device, rng):
    x = rng.standard_normal((3, 7, 5)).astype(np.float32)
    deepkern.manual_seed(1234)
    assert get_philox_state() == (1234, 0)
    a = F.dropout(deepkern.tensor(x, device=device), 0.4)
    assert get_philox_state() == (1234, 27)  # ceil(105 / 4) counters consumed
    b = F.dropout(deepkern.tensor(x, device=device), 0.4)
    y_a, mask_a = dropout_ref(x, 0.4, 1234, 0)
    y_b, _ = dropout_ref(x, 0.4, 1234, 27)
    np.testing.assert_array_equal(to_host(a.detach()._array), _exact(x, mask_a, 0.4))
    np.testing.assert_allclose(to_host(b.detach()._array), y_b, rtol=1e-6)
    assert not np.array_equal(to_host(a.detach()._array), to_host(b.detach()._array))
    deepkern.manual_seed(1234)
    np.testing.assert_array_equal(
        to_host(F.dropout(deepkern.tensor(x, device=device), 0.4).detach()._array), to_host(a.detach()._array)
    )
    assert y_a.shape == x.shape


def test_functional_dropout_backward_uses_the_forward_mask(device, rng):
    x = deepkern.tensor(rng.standard_normal((9, 4)), device=device, requires_grad=True)
    deepkern.manual_seed(5)
    y = F.dropout(x, 0.3)
    g = rng.standard_normal((9, 4))
    y.backward(deepkern.tensor(g, device=device))
    _, mask = dropout_ref(np.zeros((9, 4)), 0.3, 5, 0)
    np.testing.assert_array_equal(to_host(x.grad._array), _exact(g, mask, 0.3))


def test_philox_state_round_trips_and_checks_its_arguments():
    deepkern.manual_seed(3)
    assert philox_seed_offset(10) == (3, 0)
    state = get_philox_state()
    assert state == (3, 10)
    philox_seed_offset(5)
    set_philox_state(state)
    assert philox_seed_offset(0) == (3, 10)
    with raises_naming(ValueError, "increment"):
        philox_seed_offset(-1)
    with raises_naming(ValueError, "offset"):
        set_philox_state((0, 2**64))


def test_dropout_layer_and_lstm_repeat_from_manual_seed(device, rng):
    x = deepkern.tensor(rng.standard_normal((5, 3, 4)).astype(np.float32), device=device)
    layer = nn.Dropout(0.5)
    deepkern.manual_seed(8)
    lstm = nn.LSTM(4, 6, num_layers=3, dropout=0.5).to(device)
    runs = []
    for _ in range(2):
        deepkern.manual_seed(21)
        runs.append((to_host(layer(x).detach()._array), to_host(lstm(x)[0].detach()._array)))
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    deepkern.manual_seed(22)
    assert not np.array_equal(to_host(lstm(x)[0].detach()._array), runs[0][1])


# ---- the GPU draws the CPU's masks ----------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not deepkern.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cpu_and_gpu_give_identical_masks_and_outputs(dtype, rng):
    for size in (1, 3, 4097, 1_000_003):
        x = _values(rng, size, dtype)
        y_cpu, m_cpu = dropout(x, 0.3, BIG_SEED, 2**64 - 7)
        y_gpu, m_gpu = dropout(on_device("cuda", x), 0.3, BIG_SEED, 2**64 - 7)
        np.testing.assert_array_equal(to_host(m_gpu), m_cpu, err_msg=f"mask n={size}")
        np.testing.assert_array_equal(to_host(y_gpu), y_cpu, err_msg=f"y n={size}")
        g = _values(rng, size, dtype)
        np.testing.assert_array_equal(
            to_host(dropout_backward(on_device("cuda", g), m_gpu, 0.3)), dropout_backward(g, m_cpu, 0.3)
        )
