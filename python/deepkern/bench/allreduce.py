"""``deepkern bench --op allreduce``: DistributedDataParallel's gradient all-reduce (the gradients
copied into 25 MB buckets, each bucket's nonblocking all-reduce, the average written back into
``.grad``) beside one raw ``MPI_Allreduce`` over a buffer of the same size, on 2 ranks of one
machine. It launches its own MPI job (``mpiexec -n 2`` from deepkern[distributed]); the worker
side is :func:`worker`, run as ``python -m mpi4py -m deepkern.bench.allreduce``.

Each size is timed in rounds that alternate the two, every call starting after a barrier; the
median over the calls is reported, with the ratio (MPI time / deepkern time: above 1, deepkern is
faster) and the algorithmic bandwidth (bytes reduced per second). On a shared machine these times
are noisy: the ranks compete with everything else for the cores and the memory bus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence

import numpy as np

SIZES_MB = (1, 4, 25, 100)
QUICK_SIZES_MB = (1, 4)
RANKS = 2
BUCKET_CAP_MB = 25
PARAMS_PER_SIZE = 4  # the buffer is the gradients of this many equal parameters
ROUNDS = 3


def run(quick: bool = False, repeats: Optional[int] = None, sizes_mb: Optional[Sequence[float]] = None) -> List[dict]:
    """Launches the 2-rank job and returns one row per size: ``size_mb``, ``buckets``,
    ``deepkern_ms``, ``mpi_ms``, ``ratio``, ``deepkern_gbps``, ``mpi_gbps``, ``max_abs_err`` (of the
    averaged gradients against the exact mean)."""
    from .. import distributed

    if not distributed.is_available():
        raise ImportError(distributed._INSTALL_HINT)
    sizes = list(sizes_mb or (QUICK_SIZES_MB if quick else SIZES_MB))
    repeats = repeats or (2 if quick else 5)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rows.json")
        command = [distributed.mpiexec_path(), "-n", str(RANKS), sys.executable, "-m", "mpi4py"]
        command += ["-m", "deepkern.bench.allreduce", json.dumps(sizes), str(repeats), path]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not os.path.exists(path):
            raise RuntimeError(
                f"the {RANKS}-rank all-reduce job failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
            )
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def format_rows(rows: List[dict]) -> str:
    """The rows as a table."""
    lines = [
        f"{'size':>8} {'buckets':>7} {'deepkern ms':>12} {'MPI ms':>9} {'ratio':>6} "
        f"{'deepkern GB/s':>14} {'MPI GB/s':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r['size_mb']:>5g} MB {r['buckets']:>7d} {r['deepkern_ms']:>12.3f} {r['mpi_ms']:>9.3f} "
            f"{r['ratio']:>6.2f} {r['deepkern_gbps']:>14.2f} {r['mpi_gbps']:>9.2f}"
        )
    return "\n".join(lines)


def _times(comm, fn, repeats: int) -> List[float]:
    """Times ``repeats`` calls of ``fn``, each after a barrier; the slowest rank's time of each call."""
    from mpi4py import MPI

    times = []
    for _ in range(repeats):
        comm.Barrier()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times = np.array(times)
    comm.Allreduce(MPI.IN_PLACE, times, MPI.MAX)
    return times.tolist()


def _bucketed_allreduce(buckets, world: int) -> None:
    """What DistributedDataParallel does with the gradients in a backward: each bucket flattened and
    its all-reduce started, then every one waited for and averaged back into ``.grad``."""
    for b in buckets:
        b.launch()
    for b in buckets:
        b.finish(world, lambda p: True)


def worker(sizes_mb: Sequence[float], repeats: int, path: str) -> None:
    """One rank of the job: times both all-reduces for each size; rank 0 writes the rows to ``path``."""
    from mpi4py import MPI

    from .. import distributed
    from ..nn.module import Parameter
    from ..nn.parallel import _make_buckets
    from ..tensor import Tensor

    distributed.init_process_group("mpi")
    comm, rank, world = distributed._comm(), distributed.get_rank(), distributed.get_world_size()
    rows = []
    for size in sizes_mb:
        n = max(PARAMS_PER_SIZE, int(size * 2**20) // 4 // PARAMS_PER_SIZE * PARAMS_PER_SIZE)
        params = [Parameter(np.zeros(n // PARAMS_PER_SIZE, np.float32)) for _ in range(PARAMS_PER_SIZE)]
        for p in params:
            p.grad = Tensor(np.full(p.shape, rank + 1, np.float32))
        buckets = _make_buckets(params, BUCKET_CAP_MB * 2**20)
        raw = np.ones(n, np.float32)
        calls = {
            "deepkern": lambda buckets=buckets: _bucketed_allreduce(buckets, world),
            "mpi": lambda raw=raw: comm.Allreduce(MPI.IN_PLACE, raw, MPI.SUM),
        }
        calls["deepkern"]()  # the averaged gradients: the mean of 1 .. world on every rank
        err = max(float(np.abs(p.grad.numpy() - (world + 1) / 2).max()) for p in params)
        times = {"deepkern": [], "mpi": []}
        for i in range(ROUNDS):
            for name in ("deepkern", "mpi") if i % 2 == 0 else ("mpi", "deepkern"):
                times[name] += _times(comm, calls[name], repeats)
        dk_s, mpi_s = (float(np.median(times[k])) for k in ("deepkern", "mpi"))
        nbytes = n * 4
        rows.append(
            {
                "size_mb": size,
                "buckets": len(buckets),
                "deepkern_ms": dk_s * 1e3,
                "mpi_ms": mpi_s * 1e3,
                "ratio": mpi_s / dk_s,
                "deepkern_gbps": nbytes / dk_s / 1e9,
                "mpi_gbps": nbytes / mpi_s / 1e9,
                "max_abs_err": comm.allreduce(err, op=MPI.MAX),
                "ranks": world,
            }
        )
    if rank == 0:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(rows, f)
    distributed.destroy_process_group()


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
