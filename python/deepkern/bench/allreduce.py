"""``deepkern bench --op allreduce``: DistributedDataParallel's gradient all-reduce in 25 MB
buckets, both ways: ``copy`` (the default, ``gradient_as_bucket_view=False``: the gradients copied
into the buckets and the averages back into ``.grad``) and ``view`` (``gradient_as_bucket_view=True``:
the buckets are the gradients' storage, nothing is copied), beside one raw ``MPI_Allreduce`` over a
buffer of the same size, on 2 ranks of one machine. Before each timed call the gradients are put
where backward puts them (not timed: single-process training writes them too). It launches its own
MPI job (``mpiexec -n 2`` from deepkern[distributed]); the worker side is :func:`worker`, run as
``python -m mpi4py -m deepkern.bench.allreduce``.

Extra rows (:func:`run_epochs`) time steps of the project's training recipes (``deepkern train
digits-cnn`` and ``char-lstm``, as ``--nproc`` runs them) on 2 ranks x 1 thread against 1 process x 2
threads (and 1 x 1), with the same data and global batch, and on 2 ranks with the gradient
all-reduces overlapping backward (the bucketed path) or started only after it ends; they say how
much of the communication backward hides and check that every configuration ends with the same
parameters.

Each size is timed in rounds that alternate the three, every call starting after a barrier; the
median over the calls is reported, with the ratios (MPI time / deepkern time: above 1, deepkern is
faster) and the algorithmic bandwidth (bytes reduced per second). On a shared machine these times
are noisy: the ranks compete with everything else for the cores and the memory bus.
"""

from __future__ import annotations

import itertools
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


# -- the training recipes' steps: 2 ranks x 1 thread against 1 process x 2 threads ----------------

# recipe -> steps of its default global batch (45: digits-cnn's whole epoch), full and --quick
EPOCH_STEPS = {"digits-cnn": 45, "char-lstm": 30}
QUICK_EPOCH_STEPS = {"digits-cnn": 6, "char-lstm": 3}
EPOCH_BUCKET_MB = 0.25  # several buckets for these 0.6 and 1.4 MB models, so that the first ones can overlap backward
# (ranks, threads per rank, overlap): overlap off starts every all-reduce after backward ends
EPOCH_CONFIGS = ((1, 1, True), (1, 2, True), (2, 1, True), (2, 1, False))
PARAM_TOLERANCE = 0.01  # the final parameters' difference between configurations / the distance trained


class _StepClock:
    """Attached to a DistributedDataParallel: for each backward, ``ready``, when this rank's last
    parameter gradient was complete (its share of backward computed), and ``done``, when the
    averaged gradients were in place (:func:`exposed_seconds` compares them across the ranks)."""

    def __init__(self, ddp):
        self.ready, self.done, self.last_ready = [], [], 0.0
        on_ready, finish = ddp._on_grad_ready, ddp._finish_backward

        def timed_ready(param):
            self.last_ready = time.perf_counter()
            on_ready(param)

        def timed_finish():
            finish()
            self.ready.append(self.last_ready)
            self.done.append(time.perf_counter())

        ddp._on_grad_ready, ddp._finish_backward = timed_ready, timed_finish


def exposed_seconds(comm, clock: _StepClock) -> float:
    """The median over the steps of the communication backward did not hide: from the moment the
    last rank's backward had computed every gradient to the moment the last rank had the averages
    (the ranks of one machine share ``perf_counter``'s clock), so a rank that computes more slowly
    counts as compute, not as communication."""
    ready = np.max(comm.allgather(clock.ready), axis=0)
    done = np.max(comm.allgather(clock.done), axis=0)
    return float(np.median(done - ready))


def _defer_allreduces(ddp) -> None:
    """Overlap off: ``ddp`` starts no all-reduce while backward runs; every bucket's starts at its end."""
    launch = ddp._launch_ready
    ddp._launch_ready = lambda everything=False: launch(everything=True) if everything else None


def _recipe(name: str, rank: int, world: int):
    """Recipe ``name`` built as ``deepkern train`` builds it (its defaults, seed 0), on ``world``
    ranks with DistributedDataParallel (gradient_as_bucket_view, EPOCH_BUCKET_MB buckets). Its
    dropout is off: each rank draws the masks of its own rows, so with dropout the ranks' steps
    are not one process's and the configurations' final parameters could not be compared."""
    from .. import nn, random, training
    from ..nn.parallel import DistributedDataParallel

    cls = training.RECIPES[name]
    cfg = training.TrainConfig(name, seed=0, progress=False)
    for key, value in cls.defaults.items():
        setattr(cfg, key, type(value)(value))
    random.manual_seed(cfg.seed)
    recipe = cls(cfg)
    recipe.rank, recipe.world = rank, world
    recipe.build()
    for module in recipe.models["model"].modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    if world > 1:
        ddp = DistributedDataParallel(
            recipe.models["model"], bucket_cap_mb=EPOCH_BUCKET_MB, gradient_as_bucket_view=True
        )
        recipe.parallel = {"model": ddp}
    return recipe


def epoch_worker(threads: int, overlap: bool, steps: dict, path: str) -> None:
    """One rank of an epoch job: for each recipe of ``steps``, one warm-up step, then ``steps[recipe]``
    steps of the recipe's own training (its rows of each global batch on this rank), then the
    step's all-reduces alone, repeated; rank 0 writes the rows to ``path`` and each recipe's final
    parameters to ``path.<recipe>.npy``."""
    import deepkern

    from .. import distributed

    distributed.init_process_group("mpi")
    comm, rank, world = distributed._comm(), distributed.get_rank(), distributed.get_world_size()
    deepkern.set_num_threads(threads)
    rows = []
    for name, n in steps.items():
        recipe = _recipe(name, rank, world)
        start = _flat_parameters(recipe)
        if world > 1 and not overlap:
            _defer_allreduces(recipe.parallel["model"])
        recipe.train_epoch(lambda batches, total: itertools.islice(batches, 1))  # warm-up
        clock = _StepClock(recipe.parallel["model"]) if world > 1 else None
        comm.Barrier()
        t0 = time.perf_counter()
        recipe.train_epoch(lambda batches, total, n=n: itertools.islice(batches, n))
        epoch_s = comm.allreduce(time.perf_counter() - t0, op=_max())
        batch = recipe.cfg.batch_size
        row = {"kind": "epoch", "recipe": name, "ranks": world, "threads": threads, "overlap_on": overlap}
        row.update(steps=n, batch=batch, epoch_s=epoch_s, samples_per_s=n * batch / epoch_s)
        if rank == 0:
            np.save(f"{path}.{name}.start.npy", start)
            np.save(f"{path}.{name}.npy", _flat_parameters(recipe))
        if world > 1:
            buckets = recipe.parallel["model"]._buckets
            alone = _times(comm, lambda b=buckets: _bucketed_allreduce(b), lambda: None, max(5, n))
            row["buckets"] = len(buckets)
            row["alone_ms"] = float(np.median(alone)) * 1e3  # the all-reduces of one step, by themselves
            row["exposed_ms"] = exposed_seconds(comm, clock) * 1e3
            row["hidden"] = min(1.0, max(0.0, 1 - row["exposed_ms"] / row["alone_ms"]))
        rows.append(row)
    if rank == 0:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(rows, f)
    distributed.destroy_process_group()


def _flat_parameters(recipe) -> np.ndarray:
    """The recipe's model's parameters, in one flat array (a copy)."""
    return np.concatenate([p.detach().numpy().ravel() for p in recipe.models["model"].parameters()])


def _max():
    from mpi4py import MPI

    return MPI.MAX


def run_epochs(quick: bool = False) -> List[dict]:
    """The recipes' rows (``kind`` "epoch"), one job per (ranks, threads, overlap) of EPOCH_CONFIGS,
    each running every recipe of EPOCH_STEPS (QUICK_EPOCH_STEPS) for its steps from the same start
    on the same global batches: ``recipe``, ``ranks``, ``threads``, ``overlap_on``, ``steps``,
    ``batch``, ``epoch_s``, ``samples_per_s``, ``param_diff`` (see :func:`compare_finals`: more than
    PARAM_TOLERANCE is a RuntimeError); on
    several ranks also ``buckets``, ``alone_ms`` (a step's all-reduces by themselves),
    ``exposed_ms`` (per step, the median, the communication that backward did not hide: see
    :func:`exposed_seconds`) and ``hidden`` (1 - exposed / alone, clipped to [0, 1]: the share
    of the communication hidden under backward)."""
    from .. import distributed

    steps = QUICK_EPOCH_STEPS if quick else EPOCH_STEPS
    rows, first = [], {}
    for ranks, threads, overlap in EPOCH_CONFIGS:
        args = ["epoch", str(threads), str(int(overlap)), json.dumps(steps)]
        found, saved = _launch(ranks, args, distributed, extra=[f".{n}{s}.npy" for n in steps for s in (".start", "")])
        for row, start, final in zip(found, saved[::2], saved[1::2]):
            compare_finals(row, start, final, first)
        rows += found
    return rows


def compare_finals(row: dict, start: np.ndarray, final: np.ndarray, first: dict) -> None:
    """Sets ``row["param_diff"]``: how far the row's final parameters (``final``, flat, trained from
    ``start``) are from those of the first row of its recipe in ``first`` (recipe -> (row, start,
    final), filled here), relative to how far that row's training moved them (L2 norms; the
    kernels' sums round differently with the threads and the ranks, and Adam's steps carry that
    rounding into the weights). A RuntimeError names both configurations when it exceeds
    PARAM_TOLERANCE or the starts differ."""
    reference, ref_start, ref_final = first.setdefault(row["recipe"], (row, start, final))
    if start.shape != ref_start.shape or not np.array_equal(start, ref_start):
        raise RuntimeError(f"{row['recipe']}: {_config(row)} starts from other parameters than {_config(reference)}")
    moved = np.linalg.norm(ref_final.astype(np.float64) - ref_start)
    row["param_diff"] = float(np.linalg.norm(final.astype(np.float64) - ref_final) / moved) if moved else 0.0
    if not row["param_diff"] <= PARAM_TOLERANCE:
        raise RuntimeError(
            f"{row['recipe']}: the final parameters of {_config(row)} differ from {_config(reference)}'s "
            f"by {row['param_diff']:.3g} of the distance trained (> {PARAM_TOLERANCE})"
        )


def _config(row: dict) -> str:
    """``2 x 1 (overlap off)``: the configuration of an epoch row."""
    overlap = f" (overlap {'on' if row['overlap_on'] else 'off'})" if row["ranks"] > 1 else ""
    return f"{row['ranks']} x {row['threads']}{overlap}"


def _launch(ranks: int, args: Sequence[str], distributed, extra: Sequence[str] = ()):
    """Runs ``python -m mpi4py -m deepkern.bench.allreduce *args PATH`` on ``ranks`` ranks; returns
    the JSON that rank 0 wrote to PATH (and, with ``extra`` suffixes, the arrays it saved to PATH +
    each suffix as well)."""
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
            rows = json.load(f)
        if not extra:
            return rows
        return rows, [np.load(path + suffix) for suffix in extra]


def format_epoch_rows(rows: List[dict]) -> str:
    """The recipes' rows as a table, with the ratios of their times and a legend."""
    lines = [
        f"the training recipes' steps (their default global batch, dropout off, {EPOCH_BUCKET_MB} MB buckets):",
        f"{'recipe':<11} {'ranks x threads':>15} {'overlap':>7} {'steps':>5} {'epoch s':>8} {'samples/s':>9} "
        f"{'buckets':>7} {'alone ms':>8} {'exposed ms':>10} {'hidden':>6} {'param diff':>10}",
    ]
    for r in rows:
        comm = (
            f"{r['buckets']:>7d} {r['alone_ms']:>8.2f} {r['exposed_ms']:>10.2f} {r['hidden']:>6.0%}"
            if "hidden" in r
            else f"{'-':>7} {'-':>8} {'-':>10} {'-':>6}"
        )
        overlap = ("on" if r["overlap_on"] else "off") if r["ranks"] > 1 else "-"
        lines.append(
            f"{r['recipe']:<11} {r['ranks']:>9d} x {r['threads']:<3d} {overlap:>7} {r['steps']:>5d} "
            f"{r['epoch_s']:>8.3f} {r['samples_per_s']:>9.0f} {comm} {r['param_diff']:>10.2g}"
        )
    for name, ratios in epoch_ratios(rows).items():
        lines.append(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    lines.append(
        "alone ms: a step's all-reduces by themselves; exposed ms: the median step's communication after every "
        "rank's backward computed its gradients; hidden: 1 - exposed / alone; param diff: the distance of "
        "the final parameters from the first row's over the distance trained; the ratios divide epoch times "
        "(above 1: the second is faster)."
    )
    return "\n".join(lines)


def epoch_ratios(rows: List[dict]) -> dict:
    """Per recipe, the ratios of its epoch times in one run: ``1x2 / 2x1`` (1 process x 2 threads
    against 2 ranks x 1 thread, overlap on), ``off / on`` (2 ranks, overlap off against on) and
    ``1x1 / 2x1``."""
    ratios = {}
    for r in rows:
        ratios.setdefault(r["recipe"], {})[(r["ranks"], r["threads"], r["overlap_on"])] = r["epoch_s"]
    wanted = {"1x2 / 2x1": ((1, 2, True), (2, 1, True)), "off / on": ((2, 1, False), (2, 1, True))}
    wanted["1x1 / 2x1"] = ((1, 1, True), (2, 1, True))
    return {name: {k: t[a] / t[b] for k, (a, b) in wanted.items() if a in t and b in t} for name, t in ratios.items()}


if __name__ == "__main__":
    if sys.argv[1] == "epoch":
        epoch_worker(int(sys.argv[2]), bool(int(sys.argv[3])), json.loads(sys.argv[4]), sys.argv[5])
    else:
        worker(json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
