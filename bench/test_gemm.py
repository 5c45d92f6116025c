"""GEMM: deepkern.ops.matmul beside NumPy (``a @ b``) and PyTorch (``torch.matmul``), same group.

The cases are deepkern.bench's: square n = 256 ... 4096 in layouts NN, NT, TN and the
deep-learning shapes in NN, float32, inputs rotated when one set would fit in cache.

    pytest bench/test_gemm.py --benchmark-only
    pytest bench/test_gemm.py --benchmark-only -k "n256"
"""

from __future__ import annotations


import numpy as np
import pytest

import deepkern
from deepkern.bench import gemm as dkb

from conftest import cached_inputs, run_rounds

LIBRARIES = ("deepkern", "numpy", "torch")
SHAPES = [(n, n, n, layout, f"n{n}-{layout}") for n in dkb.GEMM_SQUARE for layout in dkb.GEMM_LAYOUTS] + [
    (m, n, k, "NN", f"M{m}-N{n}-K{k}-NN") for m, n, k, _ in dkb.GEMM_DL_SHAPES
]
# Case by case, the libraries side by side, so each case's inputs are made once.
CASES = [
    pytest.param(m, n, k, layout, library, id=f"{name}-{library}")
    for m, n, k, layout, name in SHAPES
    for library in LIBRARIES
]


def _inputs(m, n, k, layout):
    return cached_inputs(("gemm", m, n, k, layout), lambda: dkb.make_gemm_inputs(m, n, k, layout))


def _run(benchmark, fn, sets, threads, m, n, k, layout, library):
    benchmark.group = f"gemm M={m} N={n} K={k} {layout} threads={threads}"
    benchmark.extra_info.update(library=library, threads=threads, flops=2.0 * m * n * k, copies=len(sets))
    run_rounds(benchmark, fn, sets, 2.0 * m * n * k / 1e9, "gflops")


@pytest.mark.parametrize("m,n,k,layout,library", CASES)
def test_gemm(benchmark, bench_threads, m, n, k, layout, library):
    sets = _inputs(m, n, k, layout)
    if library == "deepkern":
        a, b = sets[0]
        ref = a[:8].astype(np.float64) @ b.astype(np.float64)
        np.testing.assert_allclose(deepkern.ops.matmul(a, b)[:8], ref, rtol=1e-3, atol=1e-3 * np.sqrt(k))
        fn = deepkern.ops.matmul
    elif library == "numpy":
        fn = np.matmul
    else:
        torch = pytest.importorskip("torch")
        sets = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in sets]
        fn = torch.matmul
    _run(benchmark, fn, sets, bench_threads, m, n, k, layout, library)
