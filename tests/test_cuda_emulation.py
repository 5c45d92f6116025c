"""CUDA kernel sources run on the host (tests/cuda_emulation/README.md): the emulation's own
semantics pinned to the layouts documented in csrc/cuda/ptx.h and to CUDA's rules, then the kernels
of csrc/cuda/ against NumPy. Needs the source tree and a C++ compiler, not a GPU."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "cuda_emulation"
INCLUDE = HARNESS / "include"
KERNELS = ROOT / "csrc" / "cuda"
FLAGS = ("-std=c++17", "-O1", "-fPIC", "-shared", "-pthread", "-Wall", "-Wno-unknown-pragmas")
# Where AddressSanitizer is preloaded (tools/sanitize-check), the drivers are built with it too, so a
# kernel's access outside the arrays it was given is reported.
if "libasan" in os.environ.get("LD_PRELOAD", ""):
    FLAGS += ("-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer")


def _compiler() -> list | None:
    """The command of $CXX (which may carry options), else g++, else c++; None when not on PATH."""
    words = shlex.split(os.environ.get("CXX", ""))
    if words:
        return words if shutil.which(words[0]) else None
    found = shutil.which("g++") or shutil.which("c++")
    return [found] if found else None


def _why_not_buildable() -> str | None:
    """Why the drivers cannot be built here (the only reasons these tests skip), or None."""
    if not KERNELS.is_dir():
        return f"the kernel sources ({KERNELS}) are not here: the tests run against an installed package"
    if _compiler() is None:
        return "no C++ compiler ($CXX, g++ or c++) on PATH"
    return None


@functools.lru_cache(maxsize=None)
def _sources_digest() -> str:
    """A hash of the compiler's version, the flags and every source a driver can include."""
    digest = hashlib.sha256()
    compiler = _compiler()
    version = subprocess.run([*compiler, "--version"], capture_output=True, text=True, check=True).stdout
    digest.update(f"{compiler}\n{version}\n{FLAGS}".encode())
    for root in (HARNESS, ROOT / "csrc"):  # the kernels include CPU headers too (cpu/optim/rules.h)
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in (".h", ".cuh", ".cu", ".cpp"):
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def _library_path(name: str) -> Path:
    cache = Path(tempfile.gettempdir()) / "deepkern-cuda-emulation"
    return cache / f"lib{name}_driver-{_sources_digest()}.so"


def _driver_lines(name: str, key: str) -> list:
    """The words of the driver's `// emulation-<key>:` lines."""
    words = []
    for line in (HARNESS / f"{name}_driver.cpp").read_text().splitlines():
        if line.startswith(f"// emulation-{key}:"):
            words += line.split(":", 1)[1].split()
    return words


def _driver_sources(name: str) -> list:
    """The driver, then the files its `// emulation-sources:` lines name (paths from the repository
    root), each compiled as its own translation unit."""
    extra = [str(ROOT / path) for path in _driver_lines(name, "sources")]
    return [str(HARNESS / f"{name}_driver.cpp"), *extra]


def _compile_command(name: str, output: Path) -> list:
    """The g++ command of one driver: the common flags, then its `// emulation-flags:` (the options
    nvcc's build gives its sources, in g++'s words: they apply to every file of the driver)."""
    include = ["-include", str(INCLUDE / "dk_emulation" / "prelude.h"), "-I", str(INCLUDE), "-I", str(ROOT / "csrc")]
    flags = [*FLAGS, *_driver_lines(name, "flags")]
    return [*_compiler(), *flags, *include, "-x", "c++", *_driver_sources(name), "-o", str(output)]


@functools.lru_cache(maxsize=None)
def _build_all() -> dict:
    """Compiles every tests/cuda_emulation/*_driver.cpp not yet cached, concurrently; returns
    {name: library path, or the compiler's output where it failed}."""
    names = sorted(p.name[: -len("_driver.cpp")] for p in HARNESS.glob("*_driver.cpp"))
    jobs, built = {}, {}
    for name in names:
        path = built[name] = _library_path(name)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            command = _compile_command(name, partial)
            jobs[name] = (partial, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for name, (partial, job) in jobs.items():
        output = job.communicate()[0].decode(errors="replace")
        if job.returncode == 0:
            os.replace(partial, built[name])
        else:
            built[name] = output
    return built


def _c_argument(value):
    """A NumPy array as the address of its first element, an int as int64_t, a float as double;
    ctypes values pass unchanged."""
    if isinstance(value, np.ndarray):
        return ctypes.c_void_p(value.ctypes.data)
    if isinstance(value, ctypes._SimpleCData):
        return value
    if isinstance(value, (bool, int, np.integer)):
        return ctypes.c_int64(int(value))
    if isinstance(value, (float, np.floating)):
        return ctypes.c_double(float(value))
    raise TypeError(f"cannot pass {type(value).__name__} to a driver")


class Driver:
    """A compiled driver: driver.NAME(*args) calls its entry point NAME (arrays are "device
    memory": their addresses go to the kernels) and raises RuntimeError with the driver's message
    when the entry point reports an error."""

    def __init__(self, path: Path):
        self.path = path
        self._library = ctypes.CDLL(str(path))
        self._library.dk_emulation_last_error.restype = ctypes.c_char_p

    def __getattr__(self, name: str):
        entry = getattr(self._library, name)
        entry.restype = ctypes.c_int

        def call(*args):
            if entry(*map(_c_argument, args)) != 0:
                raise RuntimeError(self._library.dk_emulation_last_error().decode())

        return call


@functools.lru_cache(maxsize=None)
def load_driver(name: str) -> Driver:
    """The driver tests/cuda_emulation/<name>_driver.cpp, compiled (all drivers at once, cached in
    the temp dir by a hash of every source involved) and loaded; its compiler errors fail the test.
    Skips only where the sources or a compiler are missing."""
    reason = _why_not_buildable()
    if reason:
        pytest.skip(reason)
    built = _build_all()[name]
    assert isinstance(built, Path), f"tests/cuda_emulation/{name}_driver.cpp did not compile:\n{built}"
    return Driver(built)


# --- the emulated PTX, pinned to the documented layouts ------------------------------------------


def _float_bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def _round_bits(bits: np.ndarray, dropped: int, ties_away: bool) -> np.ndarray:
    """float32 bits rounded to (32 - dropped) bits, checked as a property: the result is the nearer
    of the two neighbours (magnitude truncated, and one unit above it), ties away from zero or to
    even. Overflow goes to infinity. Finite inputs only."""
    unit = np.uint32(1 << dropped)
    lower = bits & ~np.uint32(unit - 1)
    upper = lower + unit

    def value(b):
        with np.errstate(over="ignore"):
            v = b.view(np.float32).astype(np.float64)
        exponent_overflow = (b & np.uint32(0x7FFFFFFF)) == np.uint32(0x7F800000)
        return np.where(exponent_overflow, np.copysign(2.0**128, v), v)

    x = bits.view(np.float32).astype(np.float64)
    below, above = np.abs(x - value(lower)), np.abs(value(upper) - x)
    tie_up = np.full(bits.shape, True) if ties_away else (lower & unit) != 0
    return np.where((above < below) | ((above == below) & tie_up), upper, lower)


def _tf32(x: np.ndarray) -> np.ndarray:
    return _round_bits(_float_bits(x), 13, ties_away=True).view(np.float32)


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    return (_round_bits(_float_bits(x), 16, ties_away=False) >> 16).astype(np.uint16)


def _bf16(x: np.ndarray) -> np.ndarray:
    return (_bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def _check_tile_products(d, a, b, c):
    """d = a @ b + c per tile, up to rounding the float64 result (a, b already rounded)."""
    a64, b64, c64 = (np.asarray(m, dtype=np.float64) for m in (a, b, c))
    reference = a64 @ b64 + c64
    scale = np.abs(a64) @ np.abs(b64) + np.abs(c64)
    assert np.all(np.abs(d - reference) <= 2.0**-22 * scale), np.max(np.abs(d - reference) / scale)


@pytest.mark.parametrize("tiles", [1, 7])
def test_mma_tf32_matches_the_documented_fragment_layout(rng, tiles):
    a = rng.standard_normal((tiles, 16, 8)).astype(np.float32)
    b = rng.standard_normal((tiles, 8, 8)).astype(np.float32)
    c = rng.standard_normal((tiles, 16, 8)).astype(np.float32)
    d = np.full_like(c, np.nan)
    load_driver("ptx").dk_mma_tf32(a, b, c, d, tiles, 32)
    _check_tile_products(d, _tf32(a), _tf32(b), c)
    # the inputs were rounded: the exact product differs
    assert not np.allclose(d, a.astype(np.float64) @ b + c, rtol=1e-7, atol=0)


@pytest.mark.parametrize("tiles", [1, 5])
def test_mma_bf16_matches_the_documented_fragment_layout(rng, tiles):
    a = rng.standard_normal((tiles, 16, 16)).astype(np.float32)
    b = rng.standard_normal((tiles, 16, 8)).astype(np.float32)
    c = rng.standard_normal((tiles, 16, 8)).astype(np.float32)
    d = np.full_like(c, np.nan)
    load_driver("ptx").dk_mma_bf16(a, b, c, d, tiles)
    _check_tile_products(d, _bf16(a), _bf16(b), c)


def test_mma_needs_the_whole_warp(rng):
    a, b, c = np.zeros((16, 8), np.float32), np.zeros((8, 8), np.float32), np.zeros((16, 8), np.float32)
    with pytest.raises(RuntimeError, match=r"mma_tf32_tile_kernel.*mma needs all 32 lanes"):
        load_driver("ptx").dk_mma_tf32(a, b, c, np.empty_like(c), 1, 16)


def _conversion_inputs(rng) -> np.ndarray:
    """Random floats of every magnitude, exact ties of both roundings, and the special values."""
    random_bits = rng.integers(0, 2**32, 4000, dtype=np.uint64).astype(np.uint32)
    finite = random_bits[(random_bits & 0x7F800000) != 0x7F800000]
    tf32_ties = (finite[:300] & ~np.uint32(0x1FFF)) | 0x1000
    bf16_ties = (finite[300:600] & ~np.uint32(0xFFFF)) | 0x8000
    specials = np.array([0.0, -0.0, 1.0, -1.5, 1e-45, -1e-40, 3.4028235e38, -3.4028235e38], np.float32)
    edges = np.array([0x7F7FF000, 0x7F7FEFFF, 0xFF7FF000, 0x7F7F8000, 0x7F7F7FFF, 0x00001000], np.uint32)
    bits = np.concatenate([finite, tf32_ties, bf16_ties, edges])
    values = np.concatenate([bits.view(np.float32), specials])
    values = np.concatenate([values, np.array([np.inf, -np.inf, np.nan], np.float32)])
    return values if values.size % 2 else np.append(values, np.float32(0.5))  # odd: the last pair is short


def test_tf32_and_bf16_conversions_round_as_documented(rng):
    x = _conversion_inputs(rng)
    n = x.size
    tf32, bf16 = np.zeros(n, np.uint32), np.zeros(n, np.uint16)
    pair, back, unpacked = np.zeros(n, np.uint32), np.full(n, np.nan, np.float32), np.zeros((n, 2), np.float32)
    load_driver("ptx").dk_convert(x, n, tf32, bf16, pair, back, unpacked)
    finite = np.isfinite(x)
    # to_tf32: cvt.rna, the low 13 bits cleared
    np.testing.assert_array_equal(tf32[finite], _round_bits(_float_bits(x[finite]), 13, ties_away=True))
    assert np.all(tf32 & 0x1FFF == 0)
    np.testing.assert_array_equal(tf32[~finite & ~np.isnan(x)], _float_bits(x[~finite & ~np.isnan(x)]))
    assert np.isnan(tf32[np.isnan(x)].view(np.float32)).all()
    # __float2bfloat16_rn: to nearest, ties to even; __bfloat162float exact; pairs low half first
    np.testing.assert_array_equal(bf16[finite], _bf16_bits(x[finite]))
    np.testing.assert_array_equal(back[~np.isnan(x)], (bf16.astype(np.uint32) << 16).view(np.float32)[~np.isnan(x)])
    assert np.isnan(back[np.isnan(x)]).all()
    np.testing.assert_array_equal(back[np.isinf(x)], x[np.isinf(x)])
    partner = np.arange(n) ^ 1
    partner[partner == n] = n - 1  # the last element of an odd count pairs with itself
    np.testing.assert_array_equal(pair, bf16.astype(np.uint32) | bf16[partner].astype(np.uint32) << 16)
    # __bfloat1622float2: the pair's low half is .x
    np.testing.assert_array_equal(unpacked, np.stack([back, back[partner]], axis=1))


@pytest.mark.parametrize("mode, matrices, trans", [(0, 4, False), (1, 4, True), (2, 2, False), (3, 2, True)])
def test_ldmatrix_delivers_the_documented_elements(rng, mode, matrices, trans):
    tile = rng.integers(0, 2**16, (32, 8), dtype=np.uint64).astype(np.uint16)
    rows = rng.permutation(32).astype(np.int32)  # lane l points at shared row rows[l]
    out = np.zeros((32, 4), np.uint32)
    load_driver("ptx").dk_ldmatrix(tile, rows, mode, out)
    for lane in range(32):
        group, quad = divmod(lane, 4)
        for i in range(4):
            if i >= matrices:
                expected = 0xDEADBEEF
            else:
                matrix = tile[rows[8 * i : 8 * i + 8]]  # row r comes from lane 8 i + r's address
                # register i: (group, 2 quad), (group, 2 quad + 1); .trans: (2 quad, group), (2 quad + 1, group)
                lo, hi = (matrix[2 * quad : 2 * quad + 2, group]) if trans else matrix[group, 2 * quad : 2 * quad + 2]
                expected = int(lo) | int(hi) << 16
            assert out[lane, i] == expected, (lane, i)


@pytest.mark.parametrize("k", [16, 48])
def test_ldmatrix_fed_mma_computes_a_product(rng, k):
    """The usual tensor-core pattern (cp.async tiles, ldmatrix_x4 for a, ldmatrix_x2_trans for b)
    gives a @ b: the ldmatrix and mma layouts fit together as PTX documents them."""
    a, b = rng.standard_normal((16, k)).astype(np.float32), rng.standard_normal((k, 8)).astype(np.float32)
    c = np.full((16, 8), np.nan, np.float32)
    load_driver("ptx").dk_ldmatrix_mma(_bf16_bits(a), _bf16_bits(b), k, c)
    _check_tile_products(c, _bf16(a), _bf16(b), np.zeros((16, 8)))


def test_cp_async_copies_or_zero_fills_into_dynamic_shared_memory(rng):
    threads = 64
    src = rng.standard_normal(5 * threads).astype(np.float32)
    valid16 = rng.integers(0, 2, threads).astype(np.int32)
    valid4 = rng.integers(0, 2, threads).astype(np.int32)
    out = np.full(5 * threads + 1, np.nan, np.float32)
    # 64 KiB: above the default 48 KiB, so launch raises the kernel's limit first
    load_driver("ptx").dk_cp_async(src, valid16, valid4, out, threads, 64 * 1024, 0)
    expected = src.copy()
    expected[: 4 * threads] *= np.repeat(valid16, 4)
    expected[4 * threads :] *= valid4
    np.testing.assert_array_equal(out[:-1], expected)
    assert out[-1] == 0  # the buffer is 128-byte aligned


def test_misaligned_cp_async_is_an_error_naming_the_kernel(rng):
    ones, flags = np.ones(64 * 5 + 1, np.float32), np.ones(64, np.int32)
    pattern = r"kernel cp_async_kernel: thread \(\d+, 0, 0\) of block \(0, 0, 0\) threw: cp_async_16: .*16-byte aligned"
    with pytest.raises(RuntimeError, match=pattern):
        load_driver("ptx").dk_cp_async(ones, flags, flags, ones, 64, 8192, 1)


def test_too_much_shared_memory_is_refused():
    ones = np.ones(64 * 5 + 1, np.float32)
    flags = np.ones(64, np.int32)
    with pytest.raises(RuntimeError, match="cp_async_kernel failed: invalid argument"):
        load_driver("ptx").dk_cp_async(ones, flags, flags, ones, 64, 166912 + 16, 0)


@pytest.mark.parametrize("width", [32, 16, 8, 1])
def test_shuffles_follow_the_documented_lane_rules(rng, width):
    blocks, threads = 2, 64
    values = rng.integers(-1000, 1000, blocks * threads).astype(np.int32)
    args = rng.integers(0, 64, blocks * threads).astype(np.int32)
    out = np.zeros((blocks * threads, 6), np.int32)
    load_driver("ptx").dk_shuffle(values, args, width, out, blocks, threads)
    for t in range(blocks * threads):
        warp_base, lane = t - t % 32, t % 32
        group_start = lane - lane % width
        group_end = group_start + width
        a = int(args[t])
        xor, down, up = lane ^ (a % 32), lane + a % 32, lane - a % 32
        sources = [
            group_start + a % width,  # __shfl_sync: srcLane modulo width, within the group
            xor if xor < group_end else lane,  # later groups give the caller's own value
            down if down < group_end else lane,
            up if up >= group_start else lane,
            lane ^ 1,
            lane ^ (1 if lane < 16 else 2),
        ]
        expected = [values[warp_base + s] for s in sources]
        assert list(out[t]) == expected, (t, list(out[t]), expected)


def test_a_lane_left_out_of_its_own_mask_is_an_error():
    out = np.zeros(32, np.int32)
    with pytest.raises(RuntimeError, match=r"kernel bad_mask_kernel: .*__shfl_sync: mask 0x00000001 leaves out"):
        load_driver("ptx").dk_bad_mask(out)


def test_barriers_count_only_threads_that_have_not_returned(rng):
    blocks, threads, active = 3, 100, 77  # a partial last warp, and threads that return at once
    values = rng.integers(-50, 50, (blocks, threads)).astype(np.float32)
    out = np.full((blocks, threads), np.nan, np.float32)
    count, total = np.zeros(1, np.int32), np.zeros(1, np.float32)
    load_driver("ptx").dk_barrier(values, active, out, count, total, blocks, threads)
    doubled = 2 * values[:, :active][:, ::-1]
    np.testing.assert_array_equal(out[:, :active], np.roll(doubled, -1, axis=1))
    assert np.isnan(out[:, active:]).all()
    assert count[0] == blocks * active
    assert total[0] == values[:, :active].sum()


def test_every_thread_of_a_3d_grid_runs_and_blocks_run_x_fastest():
    grid, block = (3, 2, 2), (4, 3, 2)
    n_blocks, n_threads = np.prod(grid), np.prod(block)
    out = np.zeros(n_blocks * n_threads, np.int32)
    order, counter = np.full(n_blocks, -1, np.int32), np.zeros(1, np.int32)
    load_driver("ptx").dk_index(out, order, counter, *grid, *block)
    np.testing.assert_array_equal(out, np.arange(1, out.size + 1))
    np.testing.assert_array_equal(order, np.arange(n_blocks))


@pytest.mark.parametrize(
    "grid, block",
    [((1, 1, 1), (1025, 1, 1)), ((1, 1, 1), (1, 1, 65)), ((0, 1, 1), (32, 1, 1)), ((1, 65536, 1), (1, 1, 1))],
)
def test_bad_launch_configurations_are_refused(grid, block):
    out = np.zeros(2048, np.int32)
    with pytest.raises(RuntimeError, match="launch of index_kernel failed: invalid configuration argument"):
        load_driver("ptx").dk_index(out, out, out, *grid, *block)
    assert not out.any()


@pytest.mark.parametrize("blocks, launches", [(2, 1), (1, 2)])
def test_a_missing_barrier_gives_a_wrong_result_in_two_blocks_or_two_launches(blocks, launches):
    threads = 8
    correct = np.tile((np.arange(threads) + 1) % threads, blocks)
    runs = []
    for _ in range(launches):
        out = np.full(blocks * threads, -7, np.int32)
        load_driver("ptx").dk_missing_barrier(out, blocks, threads)
        runs.append(out)
    got = np.concatenate(runs)
    # Read before its neighbour wrote it: the poison of unwritten shared memory (-1), in one order.
    assert (got == -1).any(), got
    assert set(np.unique(got)) <= {-1, *correct.tolist()}, got


def test_a_deadlock_is_an_error_naming_the_kernel_the_thread_and_its_barrier():
    driver = load_driver("ptx")
    expected = r"kernel deadlock_kernel deadlocked: thread \(0, 0, 0\) of block \(0, 0, 0\) waits in __syncthreads"
    with pytest.raises(RuntimeError, match=expected):
        driver.dk_deadlock()
    # The emulation goes on: the next launch runs every thread.
    out, order, counter = np.zeros(4, np.int32), np.full(1, -1, np.int32), np.zeros(1, np.int32)
    driver.dk_index(out, order, counter, 1, 1, 1, 4, 1, 1)
    np.testing.assert_array_equal(out, np.arange(1, 5))


# --- csrc/cuda/copy_kernels.cu -------------------------------------------------------------------

ELEMENT_TYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _random_layout(rng, shape, dtype, broadcast: bool):
    """(storage, view): a view of `shape` into random-bits storage with random steps (negative
    too), its axes in a random memory order, and with `broadcast` some axes of stride 0; the
    storage has 8 more elements on each side of what the view spans."""
    order = rng.permutation(len(shape))
    steps = rng.choice([1, 2, 3, -1, -2], len(shape))
    stored = [shape[k] for k in order]
    spans = [(n - 1) * abs(int(s)) + 1 for n, s in zip(stored, steps)]
    storage = rng.integers(0, 256, (int(np.prod(spans)) + 16) * np.dtype(dtype).itemsize, dtype=np.uint8).view(dtype)
    buffer = storage[8:-8].reshape(spans)
    view = buffer[tuple(slice(None, None, int(s)) for s in steps)]
    view = view[tuple(slice(0, n) for n in stored)].transpose(np.argsort(order))
    if broadcast:
        strides = [0 if rng.random() < 0.3 else s for s in view.strides]
        view = np.lib.stride_tricks.as_strided(view, shape, strides)
    return storage, view


def _same_view(storage, view, other):
    """The view into `other` (a copy of `storage`) that `view` is into `storage`."""
    offset = view.ctypes.data - storage.ctypes.data
    start = other.view(np.uint8)[offset:].view(other.dtype)
    return np.lib.stride_tricks.as_strided(start, view.shape, view.strides)


def _random_shapes(rng, count):
    for i in range(count):
        ndim = 1 + i % 6
        shape = tuple(int(n) for n in rng.integers(1, 7 if ndim > 3 else 40, ndim))
        if np.prod(shape) <= 4000:
            yield shape


def _walk_arguments(shape, view):
    itemsize = view.itemsize
    return len(shape), np.array(shape, np.int64), np.array(view.strides, np.int64) // itemsize, itemsize


@pytest.mark.parametrize("itemsize", sorted(ELEMENT_TYPES))
def test_strided_copy_matches_numpy(rng, itemsize):
    dtype = ELEMENT_TYPES[itemsize]
    for shape in _random_shapes(rng, 12):
        dst_storage, dst = _random_layout(rng, shape, dtype, broadcast=False)
        _, src = _random_layout(rng, shape, dtype, broadcast=True)
        expected = dst_storage.copy()
        _same_view(dst_storage, dst, expected)[...] = src
        ndim, shape_arg, dst_strides, _ = _walk_arguments(shape, dst)
        src_strides = np.array(src.strides, np.int64) // itemsize
        load_driver("copy").dk_strided_copy(dst, src, ndim, shape_arg, dst_strides, src_strides, itemsize)
        np.testing.assert_array_equal(dst_storage, expected, err_msg=f"shape {shape}")


@pytest.mark.parametrize("itemsize", sorted(ELEMENT_TYPES))
def test_fill_matches_numpy(rng, itemsize):
    dtype = ELEMENT_TYPES[itemsize]
    for shape in _random_shapes(rng, 8):
        storage, view = _random_layout(rng, shape, dtype, broadcast=False)
        pattern = int(rng.integers(0, 2**64, dtype=np.uint64))
        expected = storage.copy()
        _same_view(storage, view, expected)[...] = pattern & (2 ** (8 * itemsize) - 1)
        ndim, shape_arg, strides, _ = _walk_arguments(shape, view)
        load_driver("copy").dk_fill(view, ctypes.c_uint64(pattern), ndim, shape_arg, strides, itemsize)
        np.testing.assert_array_equal(storage, expected, err_msg=f"shape {shape}")


def test_copy_of_nothing_is_refused_as_on_a_gpu():
    """n = 0 means a grid of 0 blocks, which the GPU refuses: callers return before launching."""
    dst = np.zeros(4, np.uint32)
    shape, strides = np.array([0, 4], np.int64), np.array([4, 1], np.int64)
    with pytest.raises(RuntimeError, match="launch of strided_copy_kernel failed: invalid configuration"):
        load_driver("copy").dk_strided_copy(dst, dst, 2, shape, strides, strides, 4)
    with pytest.raises(RuntimeError, match="launch of fill_kernel failed: invalid configuration"):
        load_driver("copy").dk_fill(dst, ctypes.c_uint64(7), 2, shape, strides, 4)
    assert not dst.any()


def test_copy_of_an_unsupported_element_size_is_refused():
    dst = np.zeros(4, np.uint32)
    shape, strides = np.array([4], np.int64), np.array([1], np.int64)
    with pytest.raises(RuntimeError, match="strided copy: element size 3 is not 1, 2, 4 or 8"):
        load_driver("copy").dk_strided_copy(dst, dst, 1, shape, strides, strides, 3)
