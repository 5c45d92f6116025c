"""Training epochs: `deepkern train digits-cnn` and `sunspots-lstm` beside the same models in PyTorch.

Each benchmark is ONE training epoch (the recipe's DataLoader batches, forward, loss, backward and Adam
step over the whole training set, at the recipe's batch size) in deepkern (the recipe's own
``train_epoch``) and in PyTorch (the same layers in torch.nn, weights copied from the deepkern model's
state_dict, torch.optim.Adam, the same batches in the same order), both at the same thread count, in
the same group. Before deepkern is timed, its loss and torch's on one batch from the same weights, before
and after one Adam step, must agree to float32 rounding (deepkern.bench.train_check). ``gflops`` in
extra_info is an estimate (deepkern.bench.train_flops: conv/LSTM/linear multiply-adds, backward twice
the forward).

    pytest bench/test_train.py --benchmark-only
    DEEPKERN_BENCH_THREADS=1 pytest bench/test_train.py --benchmark-only
"""

from __future__ import annotations

import pytest

from deepkern.bench import train as dkb

from conftest import run_rounds

LIBRARIES = ("deepkern", "torch")

CASES = [pytest.param(name, library, id=f"{name}-{library}") for name in dkb.TRAIN_RECIPES for library in LIBRARIES]

_CASES = {}


def _case(name):
    """One case per recipe (its models built once and kept, so both libraries' epochs continue)."""
    if name not in _CASES:
        _CASES[name] = dkb.train_cases()[dkb.TRAIN_RECIPES.index(name)]
    return _CASES[name]


@pytest.mark.parametrize("name,library", CASES)
def test_train(benchmark, bench_threads, name, library):
    pytest.importorskip("torch", reason="the training benchmarks compare with the same models in PyTorch")
    case = _case(name)
    if library == "deepkern":
        err = dkb.train_check(name)
        assert err < 1e-5, f"{name}: deepkern's loss differs from torch's by {err:.2e} (relative) after one step"
    benchmark.group = f"train {name} {case.layout} threads={bench_threads}"
    benchmark.extra_info.update(library=library, threads=bench_threads, flops=case.flops, label=case.label)
    run_rounds(benchmark, case.impls[library], case.make_inputs(), case.flops / 1e9, "gflops")
