"""Pooling: deepkern.ops max/avg pooling (forward and backward) beside PyTorch, same group.

The cases are deepkern.bench's pool suite: batch 32 float32 NCHW at CNN layer sizes, max and
average 2x2 stride 2 and 3x3 stride 2 pad 1, forward and backward, inputs rotated when one set
would fit in cache. Without PyTorch the reference is NumPy's strided-window implementation.

    pytest bench/test_pool.py --benchmark-only
    pytest bench/test_pool.py --benchmark-only -k "28x28 and max"
"""

from __future__ import annotations


import pytest

from deepkern.bench import pool as dkb

from conftest import cached_inputs, case_params, run_rounds

CASES = dkb.pool_cases()
LIBRARIES = ("deepkern", "torch", "numpy")
PARAMS = case_params(CASES, LIBRARIES)


def _inputs(index):
    return cached_inputs(("pool", index), lambda: CASES[index].make_inputs())


@pytest.mark.parametrize("index,library", PARAMS)
def test_pool(benchmark, bench_threads, index, library):
    case = CASES[index]
    if library not in case.impls:
        pytest.skip(f"{library} is not this case's reference")
    sets = _inputs(index)
    if library == "deepkern":
        err = case.check(sets[0])
        assert err < 1e-5, f"deepkern's relative error {err:.2e} vs the float64 reference"
    elif library == "torch":
        torch = pytest.importorskip("torch")
        sets = [tuple(torch.from_numpy(a) for a in s) for s in sets]
    fn = case.impls[library]
    benchmark.group = f"pool {case.name} {case.layout} threads={bench_threads}"
    benchmark.extra_info.update(library=library, threads=bench_threads, bytes=case.nbytes, copies=len(sets))
    run_rounds(benchmark, fn, sets, case.nbytes / 1e9, "gbps")
