"""The host emulation of the AMX tile instructions (csrc/cpu/gemm_bf16/amx_emulation.h) that the amx
tier of the bfloat16 GEMM runs on where the CPU has no AMX (tools/amx-emulation-check): TDPBF16PS on
every tile shape against float64, its order of float32 roundings and its denormal rules, loads and
stores of exactly the configured rows and bytes, and the uses the hardware refuses. The header is
compiled with a small driver (tests/amx_emulation_driver.cpp); needs the source tree and a C++
compiler, not AMX."""

from __future__ import annotations

import subprocess
from pathlib import Path

import deepkern
import numpy as np
import pytest
from test_cuda_emulation import FLAGS, INCLUDE, Driver, _compiler

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "csrc" / "cpu" / "gemm_bf16" / "amx_emulation.h"
DRIVER = ROOT / "tests" / "amx_emulation_driver.cpp"
BF16 = deepkern.bfloat16


@pytest.fixture(scope="module")
def amx(tmp_path_factory):
    """The driver, compiled for this module; its compiler errors fail the tests. Skips only where the
    sources or a compiler are missing."""
    if not HEADER.is_file():
        pytest.skip(f"the emulation's source ({HEADER}) is not here: the tests run against an installed package")
    compiler = _compiler()
    if compiler is None:
        pytest.skip("no C++ compiler ($CXX, g++ or c++) on PATH")
    library = tmp_path_factory.mktemp("amx_emulation") / "libamx_emulation_driver.so"
    command = [*compiler, *FLAGS, "-I", str(ROOT / "csrc"), "-I", str(INCLUDE), str(DRIVER), "-o", str(library)]
    build = subprocess.run(command, capture_output=True, text=True)
    assert build.returncode == 0, f"{DRIVER.name} did not compile:\n{build.stdout}{build.stderr}"
    driver = Driver(library)
    yield driver
    driver.amx_release()


def tile_config(shapes: dict, palette: int = 1) -> np.ndarray:
    """LDTILECFG's 64 bytes: the palette, then each tile's {tile: (rows, colsb)} (the others zero)."""
    config = np.zeros(64, np.uint8)
    config[0] = palette
    colsb = config[16:48].view(np.uint16)
    for tile, (rows, width) in shapes.items():
        colsb[tile] = width
        config[48 + tile] = rows
    return config


def in_wider_rows(x: np.ndarray, rng) -> np.ndarray:
    """x (2-D) as the left columns of a NaN-filled array with 1 to 3 more columns: the rows of a tile
    load stand further apart than they are long."""
    wider = np.full((x.shape[0], x.shape[1] + int(rng.integers(1, 4))), np.nan, x.dtype)
    wider[:, : x.shape[1]] = x
    return wider


def tile_product(amx, c, a, b, rng) -> np.ndarray:
    """C + A B by TDPBF16PS on tiles 0 (c: m x n float32), 1 (a: m x 2k bfloat16) and 2 (b: k x n x 2
    bfloat16, the VNNI pairs b[p, j, e] = B(2p + e, j)), loaded from and stored to row-padded arrays."""
    (m, n), k = c.shape, b.shape[0]
    amx.amx_loadconfig(tile_config({0: (m, 4 * n), 1: (m, 4 * k), 2: (k, 4 * n)}))
    for tile, x in enumerate((c, a, b.reshape(k, 2 * n))):
        source = in_wider_rows(x, rng)
        amx.amx_loadd(tile, source, source.strides[0])
    amx.amx_dpbf16ps(0, 1, 2)
    out = in_wider_rows(np.full((m, n), np.nan, np.float32), rng)
    amx.amx_stored(0, out, out.strides[0])
    assert np.isnan(out[:, n:]).all(), "the store wrote past colsb"
    return out[:, :n]


def pair_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum over p, e of a[m, 2p + e] * b[p, n, e] in float64 (exact for bfloat16 values)."""
    m, k = a.shape[0], b.shape[0]
    return np.einsum("mpe,pne->mn", a.astype(np.float64).reshape(m, k, 2), b.astype(np.float64))


@pytest.mark.parametrize("m", range(1, 17))
def test_tile_product_of_every_shape_matches_float64(amx, m, rng):
    """Every (rows, K pairs, columns) up to 16: within the float32 accumulation's bound of 2k roundings."""
    for k in range(1, 17):
        for n in range(1, 17):
            a = rng.standard_normal((m, 2 * k)).astype(BF16)
            b = rng.standard_normal((k, n, 2)).astype(BF16)
            c = rng.standard_normal((m, n)).astype(np.float32)
            got = tile_product(amx, c, a, b, rng)
            ref = c + pair_product(a, b)
            scale = np.abs(c) + pair_product(np.abs(a.astype(np.float32)), np.abs(b.astype(np.float32)))
            err = np.abs(got - ref)
            assert (err <= 2.0**-22 * k * scale).all(), f"{m} x {k} pairs x {n}: error {err.max():.3g}"


def test_each_multiply_add_is_one_float32_rounding_in_the_pseudo_code_order(amx, rng):
    """dst[m][n] += a[m][2p] b[p][2n], then += a[m][2p+1] b[p][2n+1], p ascending: each a fused
    multiply-add rounded to float32. The inputs keep every partial sum a multiple of 2^-23 below 2^9,
    so float64 holds it exactly and its float32 rounding is the fused multiply-add's."""
    m, k, n = 16, 16, 16
    a = (rng.choice([-1.0, 1.0], (m, 2 * k)) * (1 + rng.integers(0, 128, (m, 2 * k)) / 128)).astype(BF16)
    b = (rng.choice([-1.0, 1.0], (k, n, 2)) * (1 + rng.integers(0, 128, (k, n, 2)) / 128)).astype(BF16)
    c = (1 + rng.integers(0, 2**23, (m, n)) / 2**23).astype(np.float32)
    got = tile_product(amx, c, a, b, rng)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    expected = c.copy()
    for p in range(k):
        for e in range(2):
            expected = (expected + a64[:, 2 * p + e, None] * b64[None, p, :, e]).astype(np.float32)
    assert np.array_equal(got, expected)
    # and float32 rounding happened: the float64 sum rounded once differs somewhere
    assert not np.array_equal(got, (c + pair_product(a, b)).astype(np.float32))


def bf16_from_bits(bits: np.ndarray) -> np.ndarray:
    return bits.astype(np.uint16).view(BF16)


def flush(x: np.ndarray) -> np.ndarray:
    """Denormals (float32 or bfloat16, by magnitude) replaced by zero of their sign."""
    x64 = x.astype(np.float64)
    return np.where(np.abs(x64) < 2.0**-126, np.copysign(0.0, x64), x64)


def test_denormal_inputs_count_as_zero_and_denormal_results_are_flushed(amx, rng):
    """One K pair per output: (a0 b0 + 0) then + a1 b1 with a1 b1 a signed zero. a0 and b0 have
    exponents from bfloat16's denormals to 2^100, so some products have a denormal factor (worth
    more than float32's smallest normal without the rule), and some of normal factors fall among
    float32's denormals; the float64 reference applies the rules."""
    m, k, n = 16, 1, 16
    exponent_fields = np.array([0, 1, 2, 20, 40, 57, 60, 67, 70, 127, 140, 180])
    sign = rng.integers(0, 2, (m, 2 * k)) << 15

    def random_bf16(shape):
        signs = rng.integers(0, 2, shape) << 15
        return bf16_from_bits(signs | rng.choice(exponent_fields, shape) << 7 | rng.integers(1, 128, shape))

    a = random_bf16((m, 2 * k))
    a[:, 1] = bf16_from_bits(sign[:, 1])  # +0 or -0
    b = random_bf16((k, n, 2))
    b[..., 1] = bf16_from_bits(rng.integers(0, 2, (k, n)) << 15)
    c = np.zeros((m, n), np.float32)
    got = tile_product(amx, c, a, b, rng)

    daz_a, daz_b = flush(a), flush(b)
    first = flush((c + daz_a[:, 0, None] * daz_b[None, 0, :, 0]).astype(np.float32))
    expected = flush((first + daz_a[:, 1, None] * daz_b[None, 0, :, 1]).astype(np.float32)).astype(np.float32)
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    # both rules changed some results: the products of the raw factors, rounded to float32
    raw = (a[:, 0, None].astype(np.float64) * b[None, 0, :, 0].astype(np.float64)).astype(np.float32)
    denormal_factor = (flush(a[:, 0, None]) == 0) & (a[:, 0, None].astype(np.float64) != 0)
    assert (denormal_factor & (np.abs(raw) >= 2.0**-126)).any()
    assert ((raw != 0) & (np.abs(raw) < 2.0**-126) & ~denormal_factor).any()


def test_loads_and_stores_touch_the_configured_rows_and_bytes(amx, rng):
    for rows, width in [(1, 1), (16, 64), (3, 5), (16, 63), (7, 64), (2, 2)]:
        amx.amx_loadconfig(tile_config({3: (rows, width)}))
        source = rng.integers(0, 256, (rows, width + 9), dtype=np.uint8)
        amx.amx_loadd(3, source, source.strides[0])
        out = np.full((rows + 1, width + 5), 0xA5, np.uint8)
        amx.amx_stored(3, out, out.strides[0])
        assert np.array_equal(out[:rows, :width], source[:, :width]), f"{rows} x {width} bytes"
        assert (out[:rows, width:] == 0xA5).all() and (out[rows:] == 0xA5).all(), f"{rows} x {width}: wrote outside"
        amx.amx_zero(3)
        amx.amx_stored(3, out, out.strides[0])
        assert (out[:rows, :width] == 0).all(), f"{rows} x {width}: _tile_zero left bytes"


DPBF16PS = ("amx_dpbf16ps", 0, 1, 2)


@pytest.mark.parametrize(
    "calls, message",
    [
        ([("amx_release",), ("amx_loadd", 0)], "_tile_loadd before _tile_loadconfig"),
        ([("amx_release",), ("amx_zero", 0)], "_tile_zero before _tile_loadconfig"),
        ([("config", {0: (16, 64)}), ("amx_release",), ("amx_stored", 0)], "_tile_stored before _tile_loadconfig"),
        ([("config", {0: (17, 64)})], "tile 0: rows 17 > 16"),
        ([("config", {5: (16, 68)})], "tile 5: colsb 68 > 64"),
        ([("config", {8: (1, 4)})], "tile 8 configured, palette 1 has 8 tiles"),
        ([("config", {0: (16, 64)}, 0)], "palette 0"),
        ([("config", {0: (16, 64)}), ("amx_loadd", 1)], "_tile_loadd: tile 1 is not configured"),
        ([("config", {0: (16, 64)}), ("amx_loadd", 8)], "_tile_loadd: tile 8 does not exist"),
        ([("config", {0: (16, 64), 1: (8, 64), 2: (16, 64)}), DPBF16PS], r"rows\(a\) != rows\(dst\)"),
        ([("config", {0: (16, 64), 1: (16, 60), 2: (16, 64)}), DPBF16PS], r"colsb\(a\) / 4 != rows\(b\)"),
        ([("config", {0: (16, 64), 1: (16, 64), 2: (16, 32)}), DPBF16PS], r"colsb\(b\) != colsb\(dst\)"),
        ([("config", {0: (16, 64), 1: (16, 64)}), ("amx_dpbf16ps", 0, 1, 1)], "the tiles are not distinct"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_what_the_hardware_refuses_is_an_error_naming_it(amx, calls, message):
    buffer = np.zeros(17 * 68, np.uint8)
    with pytest.raises(RuntimeError, match=f"AMX emulation: .*{message}"):
        for name, *args in calls:
            if name == "config":
                amx.amx_loadconfig(tile_config(*args))
            elif name in ("amx_loadd", "amx_stored"):
                getattr(amx, name)(args[0], buffer, 68)
            else:
                getattr(amx, name)(*args)
