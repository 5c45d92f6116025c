"""Dtype conversions of device arrays (``DeviceArray.astype``, Tensor ``.to(dtype)`` / ``.float()``)
against NumPy and ml_dtypes, for every pair of the eight device dtypes: bitwise equal results (NaN
for NaN), odd and zero sizes, strided and transposed sources. The conversion code (csrc/cuda/cast.h)
is plain C++ shared by host and device, so it is also compiled for the host and checked here
without a GPU, on values chosen to reach every rounding case."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import deepkern as dk
import numpy as np
import pytest

needs_gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
if dk.cuda.is_compiled():
    from deepkern import _cuda

DTYPES = ["float32", "float64", "float16", "bfloat16", "int32", "int64", "bool", "uint8"]  # csrc/cuda/array.h order
INTEGERS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**62), 2**62), "uint8": (0, 255)}


def numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        return np.dtype(pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes").bfloat16)
    return np.dtype(name)


def source_values(rng, src: str, dst: str, n: int) -> np.ndarray:
    """n values of ``src`` that reach the conversion's cases: every integer range; floats from
    subnormal to overflowing sizes, exact ties of float16 and bfloat16 rounding, NaN, infinities and
    signed zeros. For a float -> integer pair only values inside the integer's range (beyond it
    NumPy's result depends on the platform)."""
    dtype = numpy_dtype(src)
    if dtype == np.bool_:
        return rng.random(n) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)
        if dtype == np.int64:
            values[: n // 4] = rng.integers(-(2**40), 2**40, n // 4)
        return values
    x = rng.standard_normal(n) * np.exp2(rng.integers(-160, 140, n).astype(float))
    k = min(n, 100)
    x[:k] = rng.integers(-300, 300, k) + rng.random(k)
    special = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 65504.0, 65520.0, 2.0**-24, 2.0**-25]
    ties = list((1 + (2 * rng.integers(0, 512, 20) + 1) * 2.0**-11) * np.exp2(rng.integers(-20, 15, 20)))
    ties += list((1 + (2 * rng.integers(0, 64, 20) + 1) * 2.0**-8) * np.exp2(rng.integers(-130, 120, 20)))
    chosen = (special + ties)[: max(n - k, 0)]
    x[k : k + len(chosen)] = chosen
    with np.errstate(over="ignore", invalid="ignore"):
        values = x.astype(dtype)
    if dst in INTEGERS:
        low, high = INTEGERS[dst]
        wide = values.astype(np.float64)
        values = values[np.isfinite(wide) & (wide > low) & (wide < high)]
    return values


def assert_converted(got: np.ndarray, source: np.ndarray, dst: str) -> None:
    """``got`` is NumPy's ``source.astype(dst)`` bit for bit, a NaN for each NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        want = source.astype(numpy_dtype(dst))
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.kind in "iub":
        np.testing.assert_array_equal(got, want)
        return
    nan = np.isnan(want.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(got.astype(np.float64)), nan)
    unsigned = f"u{want.itemsize}"
    np.testing.assert_array_equal(got.view(unsigned)[~nan], want.view(unsigned)[~nan])


# ---- the conversion code on the host --------------------------------------------------------------

DRIVER = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "cuda/cast.h"
using namespace deepkern::cuda::cast;
template <class From, class To> void run(size_t n) {
  std::vector<From> in(n); std::vector<To> out(n);
  if (fread(in.data(), sizeof(From), n, stdin) != n) exit(2);
  for (size_t i = 0; i < n; ++i) out[i] = convert<To>(in[i]);
  fwrite(out.data(), sizeof(To), n, stdout);
}
template <class From> void to(int t, size_t n) {
  switch (t) {
    case 0: return run<From, float>(n);        case 1: return run<From, double>(n);
    case 2: return run<From, Half>(n);         case 3: return run<From, BFloat16>(n);
    case 4: return run<From, std::int32_t>(n); case 5: return run<From, std::int64_t>(n);
    case 6: return run<From, Bool>(n);         case 7: return run<From, std::uint8_t>(n);
  }
}
int main(int, char** argv) {
  const int t = atoi(argv[2]); const size_t n = strtoull(argv[3], nullptr, 10);
  switch (atoi(argv[1])) {
    case 0: to<float>(t, n); break;        case 1: to<double>(t, n); break;
    case 2: to<Half>(t, n); break;         case 3: to<BFloat16>(t, n); break;
    case 4: to<std::int32_t>(t, n); break; case 5: to<std::int64_t>(t, n); break;
    case 6: to<Bool>(t, n); break;         case 7: to<std::uint8_t>(t, n); break;
  }
}
"""


@pytest.fixture(scope="module")
def host_cast(tmp_path_factory):
    """cast.h compiled for the host: a program converting stdin (from, to, count) to stdout."""
    csrc = Path(__file__).resolve().parents[1] / "csrc"
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None or not (csrc / "cuda" / "cast.h").exists():
        pytest.skip("needs a C++ compiler and the source tree (csrc/cuda/cast.h)")
    folder = tmp_path_factory.mktemp("cast")
    (folder / "driver.cpp").write_text(DRIVER)
    program = folder / "driver"
    subprocess.run(
        [compiler, "-std=c++17", "-O1", "-I", str(csrc), str(folder / "driver.cpp"), "-o", str(program)], check=True
    )
    return program


@pytest.mark.parametrize("src,dst", [p for p in itertools.permutations(DTYPES, 2)])
def test_conversion_code_matches_numpy_on_the_host(host_cast, src, dst):
    rng = np.random.default_rng(DTYPES.index(src) * 8 + DTYPES.index(dst))
    values = np.ascontiguousarray(source_values(rng, src, dst, 5000))
    args = [str(host_cast), str(DTYPES.index(src)), str(DTYPES.index(dst)), str(values.size)]
    out = subprocess.run(args, input=values.tobytes(), capture_output=True, check=True).stdout
    assert_converted(np.frombuffer(out, dtype=numpy_dtype(dst)), values, dst)


# ---- on the GPU -----------------------------------------------------------------------------------


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("src,dst", list(itertools.product(DTYPES, DTYPES)))
def test_astype_every_pair_matches_numpy(src, dst):
    rng = np.random.default_rng(DTYPES.index(src) * 8 + DTYPES.index(dst))
    for n in (0, 1, 3, 4097):
        values = source_values(rng, src, dst, n)
        got = _cuda.from_cpu(values).astype(numpy_dtype(dst))
        assert got.is_contiguous() and got.dtype == numpy_dtype(dst)
        assert_converted(got.to_cpu(), values, dst)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize(
    "src,dst",
    [
        ("float64", "float16"),
        ("float32", "bfloat16"),
        ("int64", "float32"),
        ("float16", "int32"),
        ("bfloat16", "bool"),
        ("uint8", "float64"),
    ],
)
def test_astype_of_strided_views(src, dst):
    """Transposed, stepped, reversed and empty views of odd shapes convert element by element into
    a C-contiguous result."""
    rng = np.random.default_rng(1)
    values = source_values(rng, src, dst, 4000)  # float -> integer keeps the values in range: over half
    host = values[: 2 * 7 * 3 * 5 * 2].reshape(2 * 7, 3 * 5 * 2)
    device = _cuda.from_cpu(host)
    for view, host_view in [
        (device.T, host.T),
        (device[::3, 1::4], host[::3, 1::4]),
        (
            device.reshape(2, 7, 3, 5, 2).transpose((4, 2, 0, 3, 1))[:, ::-1],
            host.reshape(2, 7, 3, 5, 2).transpose((4, 2, 0, 3, 1))[:, ::-1],
        ),
        (device[3:3], host[3:3]),
    ]:
        got = view.astype(numpy_dtype(dst))
        assert got.is_contiguous()
        assert_converted(got.to_cpu(), np.ascontiguousarray(host_view), dst)


@pytest.mark.cuda
@needs_gpu
def test_astype_arguments():
    a = _cuda.from_cpu(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert a.astype(np.float32, copy=False) is a
    copied = a.astype(np.float32)
    assert copied is not a and copied.data_ptr != a.data_ptr
    np.testing.assert_array_equal(a.T.astype(np.float64, order="C").to_cpu(), np.arange(6.0).reshape(2, 3).T)
    with pytest.raises(ValueError, match="order must be 'C', 'K' or 'A'"):
        a.astype(np.float64, order="F")
    with pytest.raises(TypeError, match="complex64"):
        a.astype(np.complex64)


@pytest.mark.cuda
@needs_gpu
def test_tensor_casts_on_cuda_match_the_cpu():
    """Tensor.to(dtype), .float(), .double(), .long() on 'cuda' convert on the GPU as on the CPU, and
    a cast's gradient flows back to the source dtype."""
    rng = np.random.default_rng(2)
    host = (rng.standard_normal((5, 3)) * 40).astype(np.float64)
    for device in ("cpu", "cuda"):
        t = dk.tensor(host, device=device, requires_grad=True)
        for cast in (lambda x: x.float(), lambda x: x.to(np.float16), lambda x: x.long(), lambda x: x.to("int32")):
            got = cast(t)
            assert got.device.type == device
            assert_converted(got.detach().cpu().numpy(), host, str(got.dtype))
        t.float().backward(dk.ones(5, 3, device=device))
        assert t.grad.dtype == np.float64 and t.grad.device.type == device
        np.testing.assert_array_equal(t.grad.cpu().numpy(), np.ones_like(host))
