"""``deepkern bench --op allreduce``: DistributedDataParallel's gradient all-reduce in 25 MB
buckets, both ways: ``copy`` (the default, ``gradient_as_bucket_view=False``: the gradients copied
into the buckets and the averages back into ``.grad``) and ``view`` (``gradient_as_bucket_view=True``:
the buckets are the gradients' storage, nothing is copied), beside one raw ``MPI_Allreduce`` over a
buffer of the same size, on 2 ranks of one machine. Before each timed call the gradients are put
where backward puts them (not timed: single-process training writes them too). It launches its own
MPI job (``mpiexec -n 2`` from deepkern[distributed]); the worker side is :func:`worker`, run as
``python -m mpi4py -m deepkern.bench.allreduce``.

Each size is timed in rounds that alternate the three, every call starting after a barrier; the
median over the calls is reported, with the ratios (MPI time / deepkern time: above 1, deepkern is
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
        f"{'size':>8} {'buckets':>7} {'copy ms':>8} {'view ms':>8} {'MPI ms':>8} {'copy':>5} {'view':>5} "
        f"{'view GB/s':>10} {'MPI GB/s':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r['size_mb']:>5g} MB {r['buckets']:>7d} {r['deepkern_ms']:>8.3f} {r['view_ms']:>8.3f} "
            f"{r['mpi_ms']:>8.3f} {r['ratio']:>5.2f} {r['view_ratio']:>5.2f} {r['view_gbps']:>10.2f} "
            f"{r['mpi_gbps']:>9.2f}"
        )
    return "\n".join(lines)


def _times(comm, fn, setup, repeats: int) -> List[float]:
    """Times ``repeats`` calls of ``fn``, each after ``setup()`` (not timed) and a barrier; the
    slowest rank's time of each call."""
    from mpi4py import MPI

    times = []
    for _ in range(repeats):
        setup()
        comm.Barrier()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times = np.array(times)
    comm.Allreduce(MPI.IN_PLACE, times, MPI.MAX)
    return times.tolist()


def _bucketed_allreduce(buckets) -> None:
    """What DistributedDataParallel does with the gradients in a backward: each bucket's all-reduce
    started (the gradients copied in first, unless the bucket is their storage), then every one
    waited for and its averages left in ``.grad``."""
    for i, b in enumerate(buckets):
        b.launch(last=i == len(buckets) - 1)
    for b in buckets:
        b.finish(lambda p: True)


def _ddp_gradients(n: int, rank: int, world: int, as_view: bool):
    """``PARAMS_PER_SIZE`` parameters of ``n`` float32 values in all, their buckets (the gradients'
    storage when ``as_view``), and the function that does what backward does before the all-reduce:
    gives each parameter the gradient ``rank + 1`` after ``optimizer.zero_grad()`` (into its
    bucket's view with ``as_view``, into a new array without)."""
    from .. import autograd
    from ..nn.module import Parameter
    from ..nn.parallel import _make_buckets

    params = [Parameter(np.zeros(n // PARAMS_PER_SIZE, np.float32)) for _ in range(PARAMS_PER_SIZE)]
    buckets = _make_buckets(params, BUCKET_CAP_MB * 2**20, as_view, world)
    grad = np.full(n // PARAMS_PER_SIZE, rank + 1, np.float32)

    def backward():
        for b in buckets:
            for p in b.params:
                p.grad = None
                if as_view:
                    b.before_accumulate(p, sync=True)
                autograd.accumulate_grad(p, grad)

    return params, buckets, backward


def worker(sizes_mb: Sequence[float], repeats: int, path: str) -> None:
    """One rank of the job: times the three all-reduces for each size; rank 0 writes the rows to ``path``."""
    from mpi4py import MPI

    from .. import distributed

    distributed.init_process_group("mpi")
    comm, rank, world = distributed._comm(), distributed.get_rank(), distributed.get_world_size()
    rows = []
    for size in sizes_mb:
        n = max(PARAMS_PER_SIZE, int(size * 2**20) // 4 // PARAMS_PER_SIZE * PARAMS_PER_SIZE)
        setups = {"deepkern": _ddp_gradients(n, rank, world, False), "view": _ddp_gradients(n, rank, world, True)}
        raw = np.empty(n, np.float32)
        calls = {
            name: (lambda b=buckets: _bucketed_allreduce(b), backward)
            for name, (_, buckets, backward) in setups.items()
        }
        calls["mpi"] = (lambda raw=raw: comm.Allreduce(MPI.IN_PLACE, raw, MPI.SUM), lambda raw=raw: raw.fill(rank + 1))
        err = 0.0
        for name, (params, _, _) in setups.items():  # the averaged gradients: the mean of 1 .. world
            calls[name][1]()
            calls[name][0]()
            err = max([err] + [float(np.abs(p.grad.numpy() - (world + 1) / 2).max()) for p in params])
        times = {name: [] for name in calls}
        for i in range(ROUNDS):
            for name in list(calls) if i % 2 == 0 else list(calls)[::-1]:
                times[name] += _times(comm, *calls[name], repeats)
        secs = {name: float(np.median(t)) for name, t in times.items()}
        nbytes = n * 4
        rows.append(
            {
                "size_mb": size,
                "buckets": len(setups["deepkern"][1]),
                "deepkern_ms": secs["deepkern"] * 1e3,
                "view_ms": secs["view"] * 1e3,
                "mpi_ms": secs["mpi"] * 1e3,
                "ratio": secs["mpi"] / secs["deepkern"],
                "view_ratio": secs["mpi"] / secs["view"],
                "deepkern_gbps": nbytes / secs["deepkern"] / 1e9,
                "view_gbps": nbytes / secs["view"] / 1e9,
                "mpi_gbps": nbytes / secs["mpi"] / 1e9,
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
