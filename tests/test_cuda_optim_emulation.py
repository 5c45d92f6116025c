"""The GPU optimizer steps (csrc/cuda/optim/optim_kernels.cu) on the host against the CPU steps,
bit for bit: lists of tensors of mixed sizes (0, 1, 3, 4097, ...), 16-byte aligned and misaligned
(the vector and the element-by-element paths), more than one launch's table of tensors, several
steps, float32 and float64, every option that changes the arithmetic. The driver is built with the
GPU file's arithmetic (tests/cuda_emulation/optim_driver.cpp): multiply-adds fused only where a rule
says so, float32 denormals flushed. The CPU reference runs its FMA kernels, as on a GPU machine
(tests/test_cuda_optim.py); float64 inputs stay clear of denormals, which the CPU flushes and the
GPU keeps. Needs the source tree and a C++ compiler, not a GPU."""

from __future__ import annotations

import numpy as np
import pytest
from test_cuda_emulation import load_driver
from test_cuda_optim import STATES, bits, call, fma_cpu, initial_state, option_grid  # noqa: F401 (fixture)

# The OptimTensor slot of each state (csrc/cpu/optim/optim.h).
SLOTS = {
    "momentum_buffer": {"sgd": 0, "rmsprop": 1},
    "exp_avg": {"adam": 0},
    "exp_avg_sq": {"adam": 1},
    "max_exp_avg_sq": {"adam": 2},
    "square_avg": {"rmsprop": 0},
    "grad_avg": {"rmsprop": 2},
}
MARGIN = 8  # elements of sentinel bytes before and after each emulated device array
SENTINEL = 0xA5


def device_copy(host: np.ndarray, misaligned: bool) -> tuple:
    """A copy of ``host`` at an address that is a multiple of 16 bytes (plus one element where
    ``misaligned``), inside a buffer whose margins hold SENTINEL bytes; returns (copy, buffer)."""
    item = host.dtype.itemsize
    buffer = np.full((host.size + 2 * MARGIN + 16) * item, SENTINEL, np.uint8)
    start = (-buffer.ctypes.data) % 16 + MARGIN * item + (item if misaligned else 0)
    copy = buffer[start : start + host.nbytes].view(host.dtype)
    copy[:] = host
    return copy, buffer


def emulated_step(kind: str, arrays: dict, options: dict, step: int) -> None:
    """One step of ``kind`` with the GPU kernels on ``arrays`` (name -> list of arrays), the
    arguments as test_cuda_optim.call gives them to the CPU op."""
    rows = np.zeros((len(arrays["param"]), 7), np.int64)
    for i, p in enumerate(arrays["param"]):
        rows[i, 0], rows[i, 1] = p.ctypes.data, arrays["grad"][i].ctypes.data
        for name in STATES[kind](options):
            rows[i, 2 + SLOTS[name][kind]] = arrays[name][i].ctypes.data
        rows[i, 5] = p.size
        rows[i, 6] = arrays["steps"][i] if kind == "adam" else int(step == 1)
    o, driver, item = options, load_driver("optim"), arrays["param"][0].dtype.itemsize
    maximize = int(o.get("maximize", False))
    if kind == "sgd":
        args = (o["lr"], o["momentum"], o["dampening"], o["weight_decay"], int(o["nesterov"]), maximize)
        driver.dk_sgd_step(item, rows, len(rows), *args)
    elif kind == "adam":
        beta1, beta2 = o["betas"]
        args = (o["lr"], beta1, beta2, o["eps"], o["weight_decay"], int(o["amsgrad"]), maximize)
        driver.dk_adam_step(item, rows, len(rows), *args, int(o.get("decoupled_weight_decay", False)))
    else:
        args = (o["lr"], o["alpha"], o["eps"], o.get("weight_decay", 0.0), o["momentum"], int(o["centered"]), maximize)
        driver.dk_rmsprop_step(item, rows, len(rows), *args)


def run_both(rng, kind, options, sizes, dtype, misaligned, steps, tiny=0.0):
    """Steps the same tensors with the CPU op and the emulated GPU kernels ``steps`` times (fresh
    gradients each time, Adam's step counts differing per tensor) and asserts after each step that
    every parameter and state is bitwise the same and no byte around the device arrays changed.
    ``tiny``: the fraction of the parameters, gradients and first moments scaled into float32's
    denormals (not the squares: a flushed square_avg under a grad_avg would make centered RMSprop's
    square root NaN)."""

    def draw(name, n):
        x = initial_state(rng, name, (n,), dtype) if name != "grad" else rng.standard_normal(n).astype(dtype)
        if tiny and name in ("param", "grad", "exp_avg", "momentum_buffer"):
            x = np.where(rng.random(n) < tiny, x * dtype(1e-39), x).astype(dtype)
        return x

    names = ["param"] + STATES[kind](options)
    host = {n: [draw(n, s) for s in sizes] for n in names}
    device, buffers = {}, []
    for n, lst in host.items():
        pairs = [device_copy(a, misaligned[i]) for i, a in enumerate(lst)]
        device[n] = [c for c, _ in pairs]
        buffers += [b for _, b in pairs]
    for step in range(1, steps + 1):
        host["grad"] = [draw("grad", s) for s in sizes]
        pairs = [device_copy(g, misaligned[i]) for i, g in enumerate(host["grad"])]
        device["grad"], grad_buffers = [c for c, _ in pairs], [b for _, b in pairs]
        host["steps"] = device["steps"] = [step + i % 3 for i in range(len(sizes))]
        call(kind, True, host, options, step)
        emulated_step(kind, device, options, step)
        for n in names:
            for i, want in enumerate(host[n]):
                where = f"{kind} {options} {np.dtype(dtype).name} step {step}: {n}[{i}] (size {sizes[i]})"
                np.testing.assert_array_equal(bits(device[n][i]), bits(want), err_msg=where)
        for buffer, copy in zip(buffers + grad_buffers, [c for n in names for c in device[n]] + device["grad"]):
            inside = copy.ctypes.data - buffer.ctypes.data
            outside = np.concatenate([buffer[:inside], buffer[inside + copy.nbytes :]])
            assert np.all(outside == SENTINEL), f"{kind} {options}: a write outside a tensor's arrays"


KINDS = ["sgd", "adam", "rmsprop"]
DTYPES = [np.float32, np.float64]
SIZES = [0, 1, 3, 4097, 4, 5, 17, 0, 4097, 3]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("fma_cpu")
def test_every_option_matches_cpu_bitwise(kind, dtype):
    """Every combination of options on one list of aligned and misaligned tensors, two steps (the
    second from the states the first left)."""
    rng = np.random.default_rng(len(kind))
    misaligned = [i % 2 == 1 for i in range(len(SIZES))]
    for options in option_grid(kind):
        run_both(rng, kind, options, SIZES, dtype, misaligned, steps=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("fma_cpu")
def test_more_tensors_than_one_launch(kind, dtype):
    """300 tensors of mixed sizes, about a third misaligned: two launches of the kernel's table."""
    rng = np.random.default_rng(300)
    sizes = [0, 1, 3, 4097, 16385] + [int(n) for n in rng.integers(0, 40, 295)]
    misaligned = [bool(m) for m in rng.random(len(sizes)) < 0.3]
    for options in [next(iter(option_grid(kind))), list(option_grid(kind))[-2]]:
        run_both(rng, kind, options, sizes, np.dtype(dtype).type, misaligned, steps=2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("fma_cpu")
def test_float32_denormals_flush_as_on_the_cpu(kind):
    """A fifth of the inputs in float32's denormal range: both sides flush them (FTZ/DAZ)."""
    rng = np.random.default_rng(39)
    misaligned = [i % 2 == 1 for i in range(len(SIZES))]
    for options in [next(iter(option_grid(kind))), list(option_grid(kind))[-2]]:
        run_both(rng, kind, options, SIZES, np.float32, misaligned, steps=2, tiny=0.2)
