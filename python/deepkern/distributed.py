"""deepkern.distributed: collectives across the processes of an MPI job, with PyTorch's names
(``torch.distributed``) and behaviour.

Launch the processes with MPI (``mpiexec -n 4 python -m mpi4py train.py``, or ``deepkern train
--nproc 4``) and call ``init_process_group(backend="mpi")``: the world (its size, each process's rank)
is the MPI job's. ``-m mpi4py`` makes an exception that one process does not catch abort the whole
job; without it the other processes wait in their next collective for ever (MPI has no timeout: the
``timeout`` arguments are accepted for PyTorch's signatures and change nothing). The collectives
work in place on NumPy arrays and CPU Tensors: ``all_reduce`` (with ``ReduceOp.SUM``, ``AVG``,
``MAX``, ``MIN``, ``PRODUCT``), ``broadcast``, ``all_gather``, ``reduce_scatter`` and
``reduce_scatter_tensor``. ``async_op=True`` starts the operation without waiting and returns a
:class:`Work` whose ``wait()`` finishes it. A non-contiguous array is copied to a contiguous
buffer and the result written back (at ``wait()`` for an asynchronous call).
Before each collective the processes compare their arguments' shapes and dtypes, so a mismatch is
a ValueError on every rank instead of a wrong result or a hang.

Needs mpi4py and an MPI library: ``pip install "deepkern[distributed]"`` installs both (the MPICH
wheel brings ``mpiexec``: see :func:`mpiexec_path`).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

import numpy as np

from . import autograd

__all__ = [
    "ReduceOp",
    "Work",
    "is_available",
    "init_process_group",
    "is_initialized",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "barrier",
    "all_reduce",
    "broadcast",
    "all_gather",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "mpiexec_path",
    "launched_world_size",
]

_INSTALL_HINT = 'deepkern.distributed needs mpi4py and an MPI library: pip install "deepkern[distributed]"'


def _mpi():
    """mpi4py's MPI module (importing it initializes MPI), or one ImportError naming the extra."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from None
    return MPI


def is_available() -> bool:
    """Whether mpi4py can be imported (distributed training can run)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def mpiexec_path() -> str:
    """The ``mpiexec`` installed with this Python's packages (the MPICH wheel puts it in the
    environment's scripts folder); raises FileNotFoundError naming the extra when there is none."""
    folders = [sysconfig.get_path("scripts"), os.path.join(sys.prefix, "bin"), os.path.dirname(sys.executable)]
    for folder in dict.fromkeys(folders):
        found = shutil.which("mpiexec", path=folder)
        if found:
            return found
    raise FileNotFoundError(
        f"no mpiexec next to this Python ({', '.join(dict.fromkeys(folders))}); "
        'pip install "deepkern[distributed]" installs MPICH\'s'
    )


def launched_world_size() -> int:
    """How many processes the MPI launcher that started this one started (1 outside one), read from
    the environment (MPICH's Hydra sets PMI_SIZE, Open MPI OMPI_COMM_WORLD_SIZE) without starting MPI."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


class ReduceOp:
    """How ``all_reduce`` and ``reduce_scatter`` combine the ranks' values (PyTorch's names)."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


_OPS = (ReduceOp.SUM, ReduceOp.AVG, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX)
# The dtypes MPI reduces natively (NumPy's kinds: signed, unsigned, float, complex).
_DTYPES = tuple(
    np.dtype(t)
    for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")
) + (np.dtype("complex64"), np.dtype("complex128"))


class _Group:
    comm = None  # the world communicator (a duplicate of MPI.COMM_WORLD) while initialized


def is_initialized() -> bool:
    """Whether :func:`init_process_group` has run (and :func:`destroy_process_group` not since)."""
    return _Group.comm is not None


def init_process_group(backend: str = "mpi", init_method=None, timeout=None, world_size: int = -1, rank: int = -1):
    """Joins the processes of the MPI job into the default group. ``backend`` must be ``"mpi"``;
    ``world_size`` and ``rank``, when given, must be the job's (MPI decides them)."""
    if backend != "mpi":
        raise ValueError(f"init_process_group: backend must be 'mpi' (the only one deepkern has), got {backend!r}")
    if is_initialized():
        raise RuntimeError("init_process_group: trying to initialize the default process group twice")
    MPI = _mpi()
    world = MPI.COMM_WORLD
    for name, given, actual in (("world_size", world_size, world.Get_size()), ("rank", rank, world.Get_rank())):
        if given not in (-1, None) and given != actual:
            raise ValueError(f"init_process_group: {name}={given} but the MPI job has {name} {actual}")
    _Group.comm = world.Dup()


def destroy_process_group(group=None) -> None:
    """Leaves the default group (MPI itself is finalized when the process exits)."""
    if _Group.comm is not None:
        _Group.comm.Free()
        _Group.comm = None


def _comm():
    if _Group.comm is None:
        raise RuntimeError(
            "Default process group has not been initialized, please make sure to call init_process_group"
        )
    return _Group.comm


def get_rank(group=None) -> int:
    """This process's rank in the default group, 0 .. world size - 1."""
    return _comm().Get_rank()


def get_world_size(group=None) -> int:
    """The number of processes in the default group."""
    return _comm().Get_size()


def barrier(group=None, async_op: bool = False):
    """Waits until every rank has called barrier."""
    comm = _comm()
    if async_op:
        return Work(comm.Ibarrier())
    comm.Barrier()
    return None


class Work:
    """An asynchronous collective started with ``async_op=True``: ``wait()`` blocks until it is done
    (and writes the result where a staged copy was used); ``is_completed()`` tests without blocking."""

    def __init__(self, request, finish=None, keep=()):
        self._request = request
        self._keep = keep  # buffers MPI reads or writes until the request completes
        self._finish = finish
        self._done = False

    def _complete(self) -> None:
        self._done = True
        if self._finish is not None:
            finish, self._finish = self._finish, None
            finish()

    def wait(self, timeout=None) -> bool:
        if not self._done:
            self._request.Wait()
            self._complete()
            self._keep = ()
        return True

    def is_completed(self) -> bool:
        if not self._done and self._request.Test():
            self._complete()
            self._keep = ()
        return self._done


def _array(x, name: str, op: str):
    """The array of ``x`` (a NumPy array or a CPU Tensor) that the collective writes into."""
    from .tensor import Tensor

    arr = x._array if isinstance(x, Tensor) else x
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{op}: {name} must be a NumPy array or a CPU Tensor, got {type(x).__name__}")
    if arr.dtype not in _DTYPES:
        raise TypeError(f"{op}: {name} has dtype {arr.dtype}, which MPI does not reduce; use one of {_DTYPES}")
    if not arr.flags.writeable:
        raise ValueError(f"{op}: {name} (shape {arr.shape}) is read-only; the collective writes into it")
    return arr


def _check_op(op, arr, opname: str) -> None:
    if op not in _OPS:
        raise ValueError(f"{opname}: op must be one of ReduceOp.SUM, AVG, PRODUCT, MIN, MAX, got {op!r}")
    if op == ReduceOp.AVG and arr.dtype.kind not in "fc":
        raise TypeError(f"{opname}: ReduceOp.AVG needs a floating-point array, got dtype {arr.dtype}")
    if op in (ReduceOp.MIN, ReduceOp.MAX) and arr.dtype.kind == "c":
        raise TypeError(f"{opname}: ReduceOp.{op.upper()} is not defined for complex dtype {arr.dtype}")


def _agree(comm, opname: str, what: str, value) -> None:
    """Raises ValueError on every rank when the ranks' ``value`` (shapes, dtypes, src) differ."""
    values = comm.allgather(value)
    if any(v != values[0] for v in values):
        listed = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
        raise ValueError(f"{opname}: the ranks' {what} differ ({listed})")


def _mpi_op(op):
    MPI = _mpi()
    return {
        ReduceOp.SUM: MPI.SUM,
        ReduceOp.AVG: MPI.SUM,
        ReduceOp.PRODUCT: MPI.PROD,
        ReduceOp.MIN: MPI.MIN,
        ReduceOp.MAX: MPI.MAX,
    }[op]


def _staged(arr):
    """A contiguous buffer for ``arr`` (``arr`` itself when it is C-contiguous) and the function
    that writes the buffer back into ``arr`` (None when there is nothing to write)."""
    if arr.flags.c_contiguous:
        return arr, None
    buf = np.ascontiguousarray(arr)
    return buf, lambda: np.copyto(arr, buf)


def _run(request, async_op: bool, *finishers, keep=()):
    """Waits for ``request`` (or returns its Work) and then runs the ``finishers`` (None skipped);
    ``keep`` holds the temporary buffers of the request until it completes."""
    steps = [f for f in finishers if f is not None]

    def finish():
        for f in steps:
            f()

    work = Work(request, finish, keep)
    if async_op:
        return work
    work.wait()
    return None


def _written(arr):
    return lambda: autograd.bump_version(arr)


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Replaces ``tensor`` (same shape and dtype on every rank) by the reduction of all ranks' values."""
    comm = _comm()
    arr = _array(tensor, "tensor", "all_reduce")
    _check_op(op, arr, "all_reduce")
    _agree(comm, "all_reduce", "tensor shapes and dtypes", (arr.shape, str(arr.dtype)))
    return iallreduce(arr, op, async_op)


def iallreduce(arr: np.ndarray, op=ReduceOp.SUM, async_op: bool = True):
    """all_reduce without the argument checks or the comparison across ranks (for callers that
    know the ranks agree, as DistributedDataParallel's buckets do). Without ``async_op`` it is the
    blocking MPI_Allreduce (MPICH's blocking algorithms beat its nonblocking ones by 10-20%); every
    rank must make the same choice, as a blocking collective does not match a nonblocking one."""
    MPI = _mpi()
    comm = _comm()
    buf, write_back = _staged(arr)
    average = None
    if op == ReduceOp.AVG:

        def average():
            np.divide(buf, comm.Get_size(), out=buf)

    if async_op:
        request = comm.Iallreduce(MPI.IN_PLACE, buf, _mpi_op(op))
        return _run(request, True, average, write_back, _written(arr), keep=(buf,))
    comm.Allreduce(MPI.IN_PLACE, buf, _mpi_op(op))
    for finish in (average, write_back, _written(arr)):
        if finish is not None:
            finish()
    return None


def broadcast(tensor, src: int, group=None, async_op: bool = False):
    """Replaces ``tensor`` on every rank by rank ``src``'s."""
    comm = _comm()
    arr = _array(tensor, "tensor", "broadcast")
    size = comm.Get_size()
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < size:
        raise ValueError(f"broadcast: src must be a rank in 0..{size - 1}, got {src!r}")
    _agree(comm, "broadcast", "tensor shapes, dtypes and src", (arr.shape, str(arr.dtype), int(src)))
    buf, write_back = _staged(arr)
    return _run(comm.Ibcast(buf, root=int(src)), async_op, write_back, _written(arr), keep=(buf,))


def _output_list(tensor_list, arr, size: int, opname: str, listname: str):
    """The arrays of ``tensor_list``: one per rank, each of ``arr``'s shape and dtype."""
    if not isinstance(tensor_list, (list, tuple)) or len(tensor_list) != size:
        got = len(tensor_list) if isinstance(tensor_list, (list, tuple)) else type(tensor_list).__name__
        raise ValueError(f"{opname}: {listname} must be a list of world size ({size}) tensors, got {got}")
    arrays = [_array(t, f"{listname}[{i}]", opname) for i, t in enumerate(tensor_list)]
    for i, a in enumerate(arrays):
        if a.shape != arr.shape or a.dtype != arr.dtype:
            raise ValueError(
                f"{opname}: {listname}[{i}] has shape {a.shape} and dtype {a.dtype}; "
                f"every entry must have the shape {arr.shape} and dtype {arr.dtype} of the single tensor"
            )
    return arrays


def all_gather(tensor_list, tensor, group=None, async_op: bool = False):
    """Fills ``tensor_list[r]`` with rank r's ``tensor`` (same shape and dtype on every rank)."""
    comm = _comm()
    arr = _array(tensor, "tensor", "all_gather")
    outs = _output_list(tensor_list, arr, comm.Get_size(), "all_gather", "tensor_list")
    _agree(comm, "all_gather", "tensor shapes and dtypes", (arr.shape, str(arr.dtype)))
    gathered = np.empty((len(outs),) + arr.shape, arr.dtype)

    def scatter_out():
        for out, part in zip(outs, gathered):
            np.copyto(out, part)
            autograd.bump_version(out)

    send = np.ascontiguousarray(arr)
    return _run(comm.Iallgather(send, gathered), async_op, scatter_out, keep=(send, gathered))


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Fills ``output`` on rank r with the reduction over the ranks of their ``input_list[r]``."""
    comm = _comm()
    out = _array(output, "output", "reduce_scatter")
    _check_op(op, out, "reduce_scatter")
    ins = _output_list(input_list, out, comm.Get_size(), "reduce_scatter", "input_list")
    send = np.stack(ins) if ins else np.empty((0,) + out.shape, out.dtype)
    return _reduce_scatter(comm, out, send, op, async_op, "reduce_scatter")


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Fills ``output`` on rank r with the reduction over the ranks of their r-th block of ``input``
    (``input`` has world size times ``output``'s elements: shape (world * n, ...) for output (n, ...),
    or (world, *output.shape))."""
    comm = _comm()
    out = _array(output, "output", "reduce_scatter_tensor")
    arr = _array(input, "input", "reduce_scatter_tensor")
    _check_op(op, out, "reduce_scatter_tensor")
    size = comm.Get_size()
    if arr.dtype != out.dtype or arr.size != size * out.size:
        raise ValueError(
            f"reduce_scatter_tensor: input (shape {arr.shape}, dtype {arr.dtype}) must have world size ({size}) "
            f"times the elements of output (shape {out.shape}, dtype {out.dtype}) and its dtype"
        )
    return _reduce_scatter(comm, out, arr, op, async_op, "reduce_scatter_tensor")


def _reduce_scatter(comm, out, send, op, async_op, opname):
    _agree(comm, opname, "shapes and dtypes", (out.shape, send.shape, str(out.dtype)))
    buf, write_back = _staged(out)
    average = None
    if op == ReduceOp.AVG:

        def average():
            buf[...] /= comm.Get_size()

    send = np.ascontiguousarray(send)
    request = comm.Ireduce_scatter_block(send, buf, _mpi_op(op))
    return _run(request, async_op, average, write_back, _written(out), keep=(send, buf))
