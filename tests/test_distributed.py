"""deepkern.distributed, DistributedDataParallel and DistributedSampler.

The collectives and DDP run in MPI jobs of 2 and 3 ranks (``mpiexec -n N python -m mpi4py
tests/distributed_worker.py``, one job per world size, each check reported by name; ``-m mpi4py``
aborts the whole job when a rank raises, and each job has a timeout, so nothing hangs). They need
mpi4py and the MPICH wheel's ``mpiexec`` (both in the ``test`` extra)."""

from __future__ import annotations

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
    from mpi4py import MPI

    path = dist.mpiexec_path()
    prefixes = (os.path.realpath(sysconfig.get_path("scripts")), os.path.realpath(sys.prefix))
    assert os.path.realpath(path).startswith(prefixes), f"{path} is not under {prefixes}"
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    assert "HYDRA" in version
    if MPI.Get_library_version().startswith("MPICH"):  # the launcher of the library mpi4py uses
        wanted = MPI.Get_library_version().split()[2]
        assert wanted in version, f"mpi4py runs MPICH {wanted}; {path} says:\n{version}"


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
