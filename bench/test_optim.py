"""Optimizer steps: deepkern.ops' fused in-place steps beside torch.optim, same group.

The cases are deepkern.bench's optim suite: SGD with momentum, Adam, AdamW and RMSprop on one
float32 tensor of 1M, 10M and 100M parameters and on 200 tensors of 10k (deepkern: one *_step_multi
call), against torch.optim's ``opt.step()`` with fused=True (foreach=True for RMSprop, which has no
fused CPU kernel), inputs rotated when one set would fit in cache. GB/s count the bytes each step
must read and write: 28 per parameter for Adam/AdamW, 20 for SGD with momentum and RMSprop. Before
deepkern is timed, one step is compared with torch.optim in float64 (deepkern.bench.optim_check).

    pytest bench/test_optim.py --benchmark-only
    pytest bench/test_optim.py --benchmark-only -k "adam and 200x10k"
    DEEPKERN_BENCH_OPTIM_QUICK=1 pytest bench/test_optim.py --benchmark-only   # 1M and 200 x 10k only
"""

from __future__ import annotations

import os

import pytest

from deepkern.bench import optim as dkb

from conftest import cached_inputs, case_params, run_rounds

QUICK = bool(os.environ.get("DEEPKERN_BENCH_OPTIM_QUICK", "").strip())
CASES = dkb.optim_cases(quick=QUICK)
LIBRARIES = ("deepkern", "torch")
PARAMS = case_params(CASES, LIBRARIES)


def _inputs(index):
    return cached_inputs(("optim", index), lambda: CASES[index].make_inputs())


@pytest.mark.parametrize("index,library", PARAMS)
def test_optim(benchmark, bench_threads, index, library):
    torch = pytest.importorskip("torch", reason="the optimizer benchmarks compare with torch.optim")
    case = CASES[index]
    sets = _inputs(index)
    if library == "deepkern":
        err = case.check(sets[0])
        assert err < 1e-5, f"deepkern's step error {err:.2e} vs torch.optim in float64"
    else:
        sets = [tuple(torch.from_numpy(a) for a in s) for s in sets]
    fn = case.impls[library]
    benchmark.group = f"optim {case.name} {case.layout} threads={bench_threads}"
    benchmark.extra_info.update(library=library, threads=bench_threads, bytes=case.nbytes, copies=len(sets))
    run_rounds(benchmark, fn, sets, case.nbytes / 1e9, "gbps")
