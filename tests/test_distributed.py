"""deepkern.distributed, DistributedDataParallel and DistributedSampler.

The collectives and DDP run in MPI jobs of 2 and 3 ranks (``mpiexec -n N python -m mpi4py
tests/distributed_worker.py``, one job per world size, each check reported by name; ``-m mpi4py``
aborts the whole job when a rank raises, and each job has a timeout, so nothing hangs). They need
mpi4py and the MPICH wheel's ``mpiexec`` (both in the ``test`` extra)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import sysconfig
import time

import deepkern as dk
import deepkern.distributed as dist
import distributed_worker
import numpy as np
import pytest
from deepkern.data import DataLoader, DistributedSampler, TensorDataset

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
JOB_TIMEOUT = 120  # seconds; the jobs take a few seconds


def mpi_command(n: int, *args) -> list:
    pytest.importorskip("mpi4py", reason='the MPI tests need mpi4py (pip install ".[test]")')
    return [dist.mpiexec_path(), "-n", str(n), sys.executable, "-m", "mpi4py", *args]


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}ranks")
def job(request, tmp_path_factory):
    """The results of every check of distributed_worker.py in one job of N ranks."""
    out = tmp_path_factory.mktemp(f"mpi{request.param}") / "results.json"
    proc = subprocess.run(
        mpi_command(request.param, WORKER, "checks", str(out)), capture_output=True, text=True, timeout=JOB_TIMEOUT
    )
    assert proc.returncode == 0 and out.exists(), (
        f"the job failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return json.loads(out.read_text())


@pytest.mark.parametrize("check", sorted(distributed_worker.CHECKS))
def test_mpi_job(job, check):
    assert job[check] == "ok", job[check]


def test_mpiexec_is_the_installed_wheels():
    pytest.importorskip("mpi4py")
    path = dist.mpiexec_path()
    prefixes = (os.path.realpath(sysconfig.get_path("scripts")), os.path.realpath(sys.prefix))
    assert os.path.realpath(path).startswith(prefixes), f"{path} is not under {prefixes}"
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    assert "HYDRA" in version
    # The library mpi4py loads (asked in a child, so that this process does not start MPI).
    library = subprocess.run(
        [sys.executable, "-c", "from mpi4py import MPI; print(MPI.Get_library_version())"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert library.startswith("MPICH"), library
    assert library.split()[2] in version, f"mpi4py runs {library.split()[2]}; {path} says:\n{version}"


def test_a_failing_rank_ends_the_job():
    start = time.perf_counter()
    proc = subprocess.run(mpi_command(2, WORKER, "raise", "-"), capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr
    assert time.perf_counter() - start < 30


def test_uninitialized_group_and_bad_backend():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dk.nn.parallel.DistributedDataParallel(dk.nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="num_replicas"):
        DistributedSampler(range(4))
    with pytest.raises(ValueError, match="backend must be 'mpi'.*gloo"):
        dist.init_process_group("gloo")
    assert not dist.is_initialized()


def test_without_mpi4py_one_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    assert not dist.is_available()
    with pytest.raises(ImportError, match=r'pip install "deepkern\[distributed\]"'):
        dist.init_process_group("mpi")


# -- DistributedSampler --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 11])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_matches_pytorch(n, replicas, drop_last):
    torch_sampler = pytest.importorskip("torch.utils.data.distributed").DistributedSampler
    data = list(range(n))
    for rank in range(replicas):
        ours = DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last)
        theirs = torch_sampler(data, num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs), (n, replicas, rank, drop_last)
        assert len(ours) == len(theirs)


@pytest.mark.parametrize("n, replicas", [(10, 3), (12, 4), (5, 8)])
def test_sampler_shuffle_partitions_each_epoch(n, replicas):
    samplers = [DistributedSampler(range(n), replicas, r, shuffle=True, seed=3) for r in range(replicas)]
    orders = []
    for epoch in range(3):
        for s in samplers:
            s.set_epoch(epoch)
        shares = [list(s) for s in samplers]
        assert len({len(x) for x in shares}) == 1
        together = [i for x in zip(*shares) for i in x]  # rank r holds positions r, r + replicas, ...
        assert sorted(set(together)) == list(range(n))  # every index, padding repeats some
        assert together[:n] == list(np.random.default_rng([3, epoch]).permutation(n))
        orders.append(together)
    assert orders[0] != orders[1]
    again = DistributedSampler(range(n), replicas, 0, shuffle=True, seed=3)
    again.set_epoch(2)
    assert list(again) == list(samplers[0])


def test_sampler_bad_arguments():
    with pytest.raises(ValueError, match=r"rank 3.*\[0, 2\]"):
        DistributedSampler(range(4), num_replicas=3, rank=3)
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(TypeError, match="rank"):
        DistributedSampler(range(4), num_replicas=2, rank=1.0)


def test_dataloader_with_sampler():
    x = np.arange(11.0)[:, None]
    sampler = DistributedSampler(range(11), num_replicas=3, rank=1, shuffle=False)
    loader = DataLoader(TensorDataset(x), batch_size=2, sampler=sampler)
    assert len(loader) == 2
    got = np.concatenate([b.numpy() for (b,) in loader])[:, 0]
    assert got.tolist() == [1.0, 4.0, 7.0, 10.0]
    with pytest.raises(ValueError, match="sampler.*shuffle"):
        DataLoader(TensorDataset(x), sampler=sampler, shuffle=True)


# -- deepkern train on several ranks ---------------------------------------------------------------


def run_cli(*args) -> subprocess.CompletedProcess:
    pytest.importorskip("mpi4py")
    proc = subprocess.run(
        [sys.executable, "-m", "deepkern", *map(str, args)], capture_output=True, text=True, timeout=JOB_TIMEOUT
    )
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def assert_same_models(path_a, path_b, what: str) -> None:
    a, b = dk.load(str(path_a))["models"]["model"], dk.load(str(path_b))["models"]["model"]
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=f"{what}: {name}")


def test_train_on_ranks_matches_one_process_and_resumes_on_another_count(tmp_path):
    """sunspots-lstm (no dropout) with a batch of 10: 2 ranks (5 rows each), then a resume on 3
    ranks (3, 3 and 4 rows) equal one process training the same epochs."""
    from deepkern.training import TrainConfig, train

    options = ["sunspots-lstm", "--batch-size", "10", "--no-progress"]
    first = run_cli("train", *options, "--epochs", 1, "--nproc", 2, "--checkpoint", tmp_path / "two.st")
    assert "data-parallel on 2 ranks" in first.stdout
    assert first.stdout.count("epoch   1/1") == 1 and first.stdout.count("trained sunspots-lstm") == 1
    second = run_cli("train", *options, "--epochs", 2, "--nproc", 3, "--resume", tmp_path / "two.st",
                     "--checkpoint", tmp_path / "three.st")  # fmt: skip
    assert "data-parallel on 3 ranks" in second.stdout and "resuming sunspots-lstm" in second.stdout
    for epochs, ranks_path in ((1, tmp_path / "two.st"), (2, tmp_path / "three.st")):
        single = tmp_path / f"single{epochs}.st"
        cfg = TrainConfig("sunspots-lstm", epochs=epochs, batch_size=10, progress=False, checkpoint=str(single))
        train(cfg, out=io.StringIO())
        assert_same_models(ranks_path, single, f"{epochs} epochs")


def test_nproc_needs_no_running_job(monkeypatch, capsys):
    from deepkern.cli import main

    monkeypatch.setenv("PMI_SIZE", "2")
    assert main(["train", "sunspots-lstm", "--nproc", "2"]) == 2
    assert "already runs under an MPI launcher" in capsys.readouterr().err


def test_bench_allreduce_launches_its_ranks(tmp_path, capsys):
    pytest.importorskip("mpi4py")
    from deepkern.bench import allreduce
    from deepkern.cli import main

    out = tmp_path / "allreduce.json"
    assert main(["bench", "--op", "allreduce", "--quick", "--repeats", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    everything = json.loads(out.read_text())["rows"]
    rows = [r for r in everything if r["kind"] == "allreduce"]
    epochs = [r for r in everything if r["kind"] == "epoch"]
    assert [r["size_mb"] for r in rows] == list(allreduce.QUICK_SIZES_MB)
    configs = [(ranks, threads, overlap, name) for ranks, threads, overlap in allreduce.EPOCH_CONFIGS
               for name in allreduce.QUICK_EPOCH_STEPS]  # fmt: skip
    assert [(r["ranks"], r["threads"], r["overlap_on"], r["recipe"]) for r in epochs] == configs
    assert {"digits-cnn", "char-lstm"} <= set(allreduce.QUICK_EPOCH_STEPS)
    for r in epochs:
        assert r["steps"] == allreduce.QUICK_EPOCH_STEPS[r["recipe"]] and r["epoch_s"] > 0
        assert r["samples_per_s"] == pytest.approx(r["steps"] * r["batch"] / r["epoch_s"])
        assert 0 <= r["param_diff"] <= allreduce.PARAM_TOLERANCE
        if r["ranks"] > 1:
            assert r["buckets"] > 1 and r["alone_ms"] > 0 and r["exposed_ms"] > 0
            assert 0 <= r["hidden"] <= 1
            assert r["hidden"] == pytest.approx(min(1, max(0, 1 - r["exposed_ms"] / r["alone_ms"])))
        else:
            assert "hidden" not in r
        overlap = ("on" if r["overlap_on"] else "off") if r["ranks"] > 1 else "-"
        assert f"{r['recipe']:<11} {r['ranks']:>9d} x {r['threads']:<3d} {overlap:>7}" in printed
    for name in allreduce.QUICK_EPOCH_STEPS:
        ratios = allreduce.epoch_ratios(epochs)[name]
        assert set(ratios) == {"1x2 / 2x1", "off / on", "1x1 / 2x1"} and all(v > 0 for v in ratios.values())
        assert f"{name}: 1x2 / 2x1 {ratios['1x2 / 2x1']:.2f}" in printed
    for r in rows:
        assert r["ranks"] == allreduce.RANKS and r["max_abs_err"] == 0 and r["buckets"] == 1
        assert r["deepkern_ms"] > 0 and r["view_ms"] > 0 and r["mpi_ms"] > 0
        assert r["ratio"] == pytest.approx(r["mpi_ms"] / r["deepkern_ms"])
        assert r["view_ratio"] == pytest.approx(r["mpi_ms"] / r["view_ms"])
        assert f"{r['size_mb']:>5g} MB" in printed


def test_buckets_split_at_the_cap_and_at_dtype_changes():
    from deepkern.nn.module import Parameter
    from deepkern.nn.parallel import _make_buckets

    sizes = [(10, np.float32), (30, np.float32), (20, np.float32), (5, np.float64), (50, np.float64), (7, np.float64)]
    params = [Parameter(np.zeros(n, dtype)) for n, dtype in sizes]
    buckets = _make_buckets(params, cap_bytes=160)  # 40 float32 or 20 float64 values
    assert [[len(p._array) for p in b.params] for b in buckets] == [[10, 30], [20], [5], [50], [7]]
    assert [b.buffer.dtype for b in buckets] == [np.float32] * 2 + [np.float64] * 3
    assert [len(b.buffer) for b in buckets] == [40, 20, 5, 50, 7]


def test_buckets_as_views_hold_the_gradients():
    """The engine writes a new gradient into its bucket view divided by the world size (the
    all-reduce's sum is then the average) and adds to an existing one in place."""
    from deepkern.nn.module import Parameter
    from deepkern.nn.parallel import _make_buckets

    rng = np.random.default_rng(0)
    world = 4
    params = [Parameter(rng.standard_normal(shape)) for shape in ((3, 4), (5,), (2, 2, 2))]
    params[1].grad = dk.from_numpy(rng.standard_normal(5))
    before = params[1].grad.numpy().copy()
    (bucket,) = _make_buckets(params, cap_bytes=1e6, as_view=True, world=world)
    assert params[0].grad is None and params[1].grad._array is bucket.views[1]
    np.testing.assert_array_equal(bucket.buffer[12:17], before)
    for p in params:
        bucket.before_accumulate(p, sync=True)
    grads = [rng.standard_normal(p.shape) for p in params]
    (sum((p * dk.from_numpy(g)).sum() for p, g in zip(params, grads))).backward()
    for p, view in zip(params, bucket.views):
        assert p.grad._array is view and np.shares_memory(view, bucket.buffer)
    assert bucket.scaled == {id(params[0]), id(params[2])}
    for i, want in ((0, grads[0] / world), (1, before + grads[1]), (2, grads[2] / world)):
        np.testing.assert_allclose(params[i].grad.numpy(), want, rtol=1e-15, atol=1e-15)
    for p in params:  # a backward inside no_sync: nothing divided
        p.grad = None
        bucket.before_accumulate(p, sync=False)
    (sum((p * dk.from_numpy(g)).sum() for p, g in zip(params, grads))).backward()
    assert not bucket.scaled
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=0, atol=0)


def test_accumulate_grad_in_place_and_into_its_home():
    from deepkern import autograd

    rng = np.random.default_rng(1)
    w = dk.from_numpy(rng.standard_normal((4, 3)).astype(np.float32)).requires_grad_()
    g1, g2 = (rng.standard_normal((4, 3)) for _ in range(2))
    (w * dk.from_numpy(g1.astype(np.float32))).sum().backward()
    kept = w.grad._array
    (w * dk.from_numpy(g2.astype(np.float32))).sum().backward()
    assert w.grad._array is kept and w.grad.dtype == np.float32  # accumulated in place, as PyTorch does
    np.testing.assert_allclose(kept, g1 + g2, rtol=1e-5, atol=1e-6)
    home = np.full((4, 3), np.nan, np.float32)
    autograd.set_grad_home(w, home)
    w.grad = None
    (w * dk.from_numpy(g1.astype(np.float32))).sum().backward()
    assert w.grad._array is home
    np.testing.assert_allclose(home, g1, rtol=1e-6, atol=1e-6)
    autograd.set_grad_home(w, None)
    w.grad = None
    (w * 2).sum().backward()
    assert not np.shares_memory(w.grad.numpy(), home)
    with pytest.raises(ValueError, match=r"shape \(3,\).*shape \(4, 3\)"):
        autograd.set_grad_home(w, np.zeros(3, np.float32))
    frozen = dk.from_numpy(np.zeros(2)).requires_grad_()
    frozen.grad = dk.from_numpy(np.broadcast_to(np.ones(1), (2,)))  # read-only: a new array instead
    (frozen * 3).sum().backward()
    np.testing.assert_array_equal(frozen.grad.numpy(), [4.0, 4.0])


def test_bench_epoch_final_parameters_are_compared():
    from deepkern.bench import allreduce

    rng = np.random.default_rng(0)
    start = rng.standard_normal(50).astype(np.float32)
    final = start + rng.standard_normal(50).astype(np.float32)
    rows = [{"recipe": "r", "ranks": ranks, "threads": threads, "overlap_on": on} for ranks, threads, on in
            allreduce.EPOCH_CONFIGS]  # fmt: skip
    first = {}
    allreduce.compare_finals(rows[0], start, final, first)
    near = final + rng.uniform(-1, 1, 50).astype(np.float32) * 1e-3
    allreduce.compare_finals(rows[1], start, near, first)
    moved = np.linalg.norm(final.astype(np.float64) - start)
    assert rows[0]["param_diff"] == 0
    assert rows[1]["param_diff"] == pytest.approx(np.linalg.norm(near.astype(np.float64) - final) / moved)
    far = final.copy()
    far[rng.integers(50)] += 2 * allreduce.PARAM_TOLERANCE * moved
    with pytest.raises(RuntimeError, match=r"r: the final parameters of 2 x 1 \(overlap off\) differ from 1 x 1"):
        allreduce.compare_finals(rows[3], start, far, first)
    with pytest.raises(RuntimeError, match=r"r: 2 x 1 \(overlap on\) starts from other parameters than 1 x 1"):
        allreduce.compare_finals(rows[2], start[:49], final[:49], first)


def test_bench_exposed_communication_starts_when_the_last_rank_computed():
    from deepkern.bench import allreduce

    rng = np.random.default_rng(1)
    steps = 7
    ready = [rng.uniform(0, 1, steps) for _ in range(2)]  # when each rank's backward computed its gradients
    done = [np.maximum(ready[0], ready[1]) + rng.uniform(0, 0.1, steps) for _ in range(2)]

    class Comm:  # the two ranks' values, as allgather returns them
        def allgather(self, mine):
            return [r.tolist() for r in (ready if mine is ready[0] else done)]

    class Clock:
        pass

    clock = Clock()
    clock.ready, clock.done = ready[0], done[0]
    want = np.median(np.maximum(done[0], done[1]) - np.maximum(ready[0], ready[1]))
    assert allreduce.exposed_seconds(Comm(), clock) == pytest.approx(want)
