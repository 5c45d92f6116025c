"""``deepkern bench --op allreduce``: DistributedDataParallel's gradient all-reduce in 25 MB
buckets, both ways: ``copy`` (the default, ``gradient_as_bucket_view=False``: the gradients copied
into the buckets and the averages back into ``.grad``) and ``view`` (``gradient_as_bucket_view=True``:
the buckets are the gradients' storage, nothing is copied), beside one raw ``MPI_Allreduce`` over a
buffer of the same size, on 2 ranks of one machine. Before each timed call the gradients are put
where backward puts them (not timed: single-process training writes them too). It launches its own
MPI job (``mpiexec -n 2`` from deepkern[distributed]); the worker side is :func:`worker`, run as
``python -m mpi4py -m deepkern.bench.allreduce``.

Extra rows time a training epoch of a small convolution + LSTM model (:func:`run_epochs`) on 2 ranks
x 1 thread against 1 rank x 2 threads (and 1 x 1) with the same global batch, and how much of the
all-reduce time backward hides.

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
    """Launches the 2-rank job and returns one row per size (``kind`` "allreduce"): ``size_mb``,
    ``buckets``, ``deepkern_ms`` (copy), ``view_ms``, ``mpi_ms``, ``ratio`` and ``view_ratio`` (MPI
    time / theirs), the three GB/s and ``max_abs_err`` (of the averaged gradients against the exact
    mean)."""
    from .. import distributed

    sizes = list(sizes_mb or (QUICK_SIZES_MB if quick else SIZES_MB))
    repeats = repeats or (2 if quick else 5)
    return _launch(RANKS, [json.dumps(sizes), str(repeats)], distributed)


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
                "kind": "allreduce",
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


# -- a training epoch: 2 ranks x 1 thread against 1 rank x 2 threads -------------------------------

EPOCH_SAMPLES, QUICK_EPOCH_SAMPLES = 2048, 256
EPOCH_BATCH = 64  # the global batch: each of R ranks trains on EPOCH_BATCH / R rows per step
EPOCH_BUCKET_MB = 0.1  # several buckets for a 0.5 MB model, so that the first ones overlap backward
EPOCH_CONFIGS = ((2, 1), (1, 2), (1, 1))  # (ranks, threads per rank)


def _epoch_model():
    """A small convolution + LSTM classifier of (B, 1, 16, 16) images (0.5 MB of float32 weights):
    a 3 x 3 convolution to 8 channels, its 16 rows read as a sequence by an LSTM of 128 units, a
    linear head to 10 classes."""
    from .. import nn

    class ConvLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.lstm = nn.LSTM(8 * 16, 128, batch_first=True)
            self.head = nn.Linear(128, 10)

        def forward(self, x):
            h = self.conv(x).relu()  # (B, 8, 16, 16)
            out, _ = self.lstm(h.permute(0, 2, 1, 3).reshape(h.shape[0], 16, 8 * 16))
            return self.head(out[:, -1])

    return ConvLSTM()


class _Clock:
    """Wrapped around the bucket class while active: ``seconds``, the time spent in the buckets'
    ``launch`` and ``finish`` (the communication backward does not hide: the blocking last bucket,
    the waits), and ``window``, the time from each backward's first launch to its last finish (the
    communication's span; :meth:`end_step` closes it)."""

    def __init__(self, bucket_cls):
        self.cls, self.seconds, self.window = bucket_cls, 0.0, 0.0
        self.first = self.last = None
        self.saved = {name: getattr(bucket_cls, name) for name in ("launch", "finish")}

    def end_step(self) -> None:
        if self.first is not None:
            self.window += self.last - self.first
        self.first = None

    def __enter__(self):
        for name, method in self.saved.items():
            setattr(self.cls, name, self._timed(method))
        return self

    def __exit__(self, *exc):
        for name, method in self.saved.items():
            setattr(self.cls, name, method)

    def _timed(self, method):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            method(*args, **kwargs)
            self.last = time.perf_counter()
            self.seconds += self.last - t0
            if self.first is None:
                self.first = t0

        return timed


def epoch_worker(threads: int, samples: int, path: str) -> None:
    """One rank of an epoch job: one warm-up step, then an epoch of ``samples`` images in global
    batches of EPOCH_BATCH (this rank's rows of each, DistributedDataParallel with
    gradient_as_bucket_view on several ranks), then the gradient all-reduce alone, repeated; rank 0
    writes the row to ``path``."""
    import deepkern

    from .. import distributed, nn, optim
    from ..nn.parallel import DistributedDataParallel, _Bucket

    distributed.init_process_group("mpi")
    comm, rank, world = distributed._comm(), distributed.get_rank(), distributed.get_world_size()
    deepkern.set_num_threads(threads)
    deepkern.manual_seed(0)
    model = _epoch_model()
    if world > 1:
        model = DistributedDataParallel(model, bucket_cap_mb=EPOCH_BUCKET_MB, gradient_as_bucket_view=True)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((samples, 1, 16, 16)).astype(np.float32)
    labels = rng.integers(0, 10, samples)
    share = EPOCH_BATCH // world

    def step(start: int, clock=None) -> None:
        rows = slice(start + rank * share, start + (rank + 1) * share)
        opt.zero_grad()
        loss_fn(model(deepkern.from_numpy(images[rows])), deepkern.from_numpy(labels[rows])).backward()
        if clock is not None:
            clock.end_step()
        opt.step()

    step(0)  # warm-up
    steps = samples // EPOCH_BATCH
    with _Clock(_Bucket) as clock:
        comm.Barrier()
        t0 = time.perf_counter()
        for i in range(steps):
            step(i * EPOCH_BATCH, clock)
        epoch_s = comm.allreduce(time.perf_counter() - t0, op=_max())
    row = {"kind": "epoch", "ranks": world, "threads": threads, "samples": steps * EPOCH_BATCH}
    row["epoch_s"] = epoch_s
    row["samples_per_s"] = row["samples"] / epoch_s
    if world > 1:
        buckets = model._buckets
        comm_s = _times(comm, lambda: _bucketed_allreduce(buckets), lambda: None, max(3, steps))
        row["buckets"] = len(buckets)
        row["alone_ms"] = float(np.median(comm_s)) * 1e3  # the all-reduces of one step, by themselves
        row["comm_ms"] = comm.allreduce(clock.window, op=_max()) / steps * 1e3
        row["exposed_ms"] = comm.allreduce(clock.seconds, op=_max()) / steps * 1e3
        row["overlap"] = 1 - row["exposed_ms"] / row["comm_ms"]
    if rank == 0:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(row, f)
    distributed.destroy_process_group()


def _max():
    from mpi4py import MPI

    return MPI.MAX


def run_epochs(quick: bool = False) -> List[dict]:
    """The epoch rows (``kind`` "epoch"), one job per (ranks, threads) of EPOCH_CONFIGS: ``epoch_s``,
    ``samples_per_s``; on several ranks also ``buckets``, ``alone_ms`` (one step's all-reduces by
    themselves), ``comm_ms`` (per step, from backward's first bucket launch to its last finish),
    ``exposed_ms`` (per step, the time in launching and waiting that backward did not hide, the wait
    for a slower rank included) and ``overlap`` (1 - exposed / comm: the share hidden under backward)."""
    from .. import distributed

    rows = []
    samples = QUICK_EPOCH_SAMPLES if quick else EPOCH_SAMPLES
    for ranks, threads in EPOCH_CONFIGS:
        rows.append(_launch(ranks, ["epoch", str(threads), str(samples)], distributed))
    return rows


def _launch(ranks: int, args: Sequence[str], distributed):
    """Runs ``python -m mpi4py -m deepkern.bench.allreduce *args PATH`` on ``ranks`` ranks; returns
    the JSON that rank 0 wrote to PATH."""
    if not distributed.is_available():
        raise ImportError(distributed._INSTALL_HINT)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rows.json")
        command = [distributed.mpiexec_path(), "-n", str(ranks), sys.executable, "-m", "mpi4py"]
        command += ["-m", "deepkern.bench.allreduce", *args, path]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not os.path.exists(path):
            raise RuntimeError(f"the {ranks}-rank job failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def format_epoch_rows(rows: List[dict]) -> str:
    """The epoch rows as a table."""
    lines = [
        f"{'ranks x threads':>15} {'epoch s':>8} {'samples/s':>10} {'buckets':>7} {'alone ms':>8} "
        f"{'comm ms':>8} {'exposed ms':>10} {'overlap':>7}"
    ]
    for r in rows:
        comm = (
            f"{r['buckets']:>7d} {r['alone_ms']:>8.3f} {r['comm_ms']:>8.3f} {r['exposed_ms']:>10.3f} "
            f"{r['overlap']:>7.0%}"
            if "comm_ms" in r
            else f"{'-':>7} {'-':>8} {'-':>8} {'-':>10} {'-':>7}"
        )
        lines.append(f"{r['ranks']:>9d} x {r['threads']:<3d} {r['epoch_s']:>8.3f} {r['samples_per_s']:>10.0f} {comm}")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "epoch":
        epoch_worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        worker(json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
