"""LSTM: deepkern.ops.lstm (+ lstm_backward) beside torch.nn.LSTM, same group.

The shapes are deepkern.bench's (LSTM_SHAPES: (T, B, I, H) = (100, 32, 256, 256), (50, 64, 512, 512),
(100, 1, 128, 128), (200, 8, 64, 512), (35, 20, 650, 650)), float32, one layer, each timed as a forward
pass (``fwd``: ops.lstm vs torch.nn.LSTM under torch.no_grad()) and as a forward plus BPTT (``fwd+bwd``:
lstm(return_cache=True) then lstm_backward vs the module's forward and y.backward(grad_y) with its
parameters, x, h0 and c0 requiring grad), both libraries at the same thread count. Before deepkern is
timed its y (and gradients for fwd+bwd) is compared with torch.nn.LSTM in float64
(deepkern.bench.lstm_check). GFLOP/s count 2*T*B*4H*(I+H) per forward; the backward counts twice that.

    pytest bench/test_lstm.py --benchmark-only
    pytest bench/test_lstm.py --benchmark-only -k "B1-" --benchmark-group-by=group     # the batch-1 case
    DEEPKERN_BENCH_LSTM_QUICK=1 pytest bench/test_lstm.py --benchmark-only             # T / 5
"""

from __future__ import annotations

import os

import pytest

from deepkern.bench import lstm as dkb

from conftest import cached_inputs, run_rounds

LIBRARIES = ("deepkern", "torch")
QUICK = bool(os.environ.get("DEEPKERN_BENCH_LSTM_QUICK", "").strip())


def _shape(entry):
    t, b, i, h, _ = entry
    return (dkb.lstm_quick_t(t) if QUICK else t, b, i, h)


def _shape_id(shape) -> str:
    t, b, i, h = shape
    return f"T{t}-B{b}-I{i}-H{h}"


CASES = [
    pytest.param(_shape(entry), lstm_pass, library, entry[4], id=f"{_shape_id(_shape(entry))}-{lstm_pass}-{library}")
    for entry in dkb.LSTM_SHAPES
    for lstm_pass in dkb.LSTM_PASSES
    for library in LIBRARIES
]


def _inputs(shape, lstm_pass):
    return cached_inputs(("lstm", shape, lstm_pass), lambda: dkb.make_lstm_inputs(shape, lstm_pass))


@pytest.mark.parametrize("shape,lstm_pass,library,label", CASES)
def test_lstm(benchmark, bench_threads, shape, lstm_pass, library, label):
    torch = pytest.importorskip("torch", reason="the LSTM benchmarks compare with torch.nn.LSTM")
    sets = _inputs(shape, lstm_pass)
    fn = dkb.lstm_impls(shape, lstm_pass)[library]
    if library == "deepkern":
        err = dkb.lstm_check(shape, lstm_pass, sets[0])
        assert err < 1e-4, f"deepkern lstm {shape} {lstm_pass}: relative error {err:.2e} vs torch.nn.LSTM in float64"
    else:
        sets = [tuple(torch.from_numpy(a) for a in s) for s in sets]
    flops = dkb.lstm_flops(shape, lstm_pass)
    t, b, i, h = shape
    benchmark.group = f"lstm T={t} B={b} I={i} H={h} {lstm_pass} threads={bench_threads}"
    benchmark.extra_info.update(library=library, threads=bench_threads, flops=flops, copies=len(sets), label=label)
    run_rounds(benchmark, fn, sets, flops / 1e9, "gflops")
