"""deepkern.nn.parallel: data-parallel training across the ranks of an MPI job
(:class:`DistributedDataParallel`, PyTorch's ``torch.nn.parallel.DistributedDataParallel``)."""

from __future__ import annotations

import contextlib

import numpy as np

from .. import autograd
from .. import distributed as dist
from .module import Module

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters whose gradients are all-reduced together in one flat buffer (one dtype)."""

    def __init__(self, params):
        self.params = params
        self.offsets = np.cumsum([0] + [p._array.size for p in params])
        self.buffer = np.empty(int(self.offsets[-1]), params[0]._array.dtype)
        self.ready = set()  # ids of the parameters whose gradient is in for this backward
        self.work = None  # the all-reduce in flight

    def launch(self) -> None:
        """Copies the gradients (zeros for a parameter without one) into the buffer and starts its all-reduce."""
        for p, lo, hi in zip(self.params, self.offsets[:-1], self.offsets[1:]):
            if p.grad is None:
                self.buffer[lo:hi] = 0
            else:
                self.buffer[lo:hi] = p.grad._array.reshape(-1)
        self.work = dist.iallreduce(self.buffer, dist.ReduceOp.SUM, async_op=True)

    def finish(self, world: int, globally_used) -> None:
        """Waits for the all-reduce and writes the average into each parameter's ``.grad``
        (leaving None where no rank had a gradient, by ``globally_used``)."""
        from ..tensor import Tensor

        self.work.wait()
        self.work = None
        self.ready.clear()
        for p, lo, hi in zip(self.params, self.offsets[:-1], self.offsets[1:]):
            if not globally_used(p):
                continue
            total = self.buffer[lo:hi].reshape(p._array.shape)
            if p.grad is None:
                p.grad = Tensor._wrap(total / world)
            else:
                np.divide(total, world, out=p.grad._array)


class DistributedDataParallel(Module):
    """Wraps ``module`` for data-parallel training: every rank runs it on its share of the batch,
    and ``backward()`` leaves on every rank the gradients averaged over the ranks.

    At construction rank 0's parameters and buffers are broadcast to the others (so ranks that
    started from different weights train one model). The parameters are grouped into buckets of
    about ``bucket_cap_mb`` megabytes, in the reverse order of their registration (roughly the
    order backward produces their gradients); when backward has accumulated the gradient of every
    parameter of a bucket, the bucket is flattened into one buffer and its all-reduce starts at
    once, so communication overlaps the rest of backward. At the end of backward every all-reduce
    is waited for and the averages are copied into ``.grad``.

    ``no_sync()``: inside it, backward only accumulates the local gradients (gradient accumulation);
    the first backward outside it all-reduces the accumulated sums. ``find_unused_parameters``: a
    parameter that got no gradient in a backward counts as zero on that rank (without it, such a
    parameter is an error naming it). ``broadcast_buffers``: each forward first copies rank 0's
    buffers (e.g. BatchNorm's running statistics) to every rank.

    ``device_ids``, ``output_device``, ``dim``, ``process_group`` and ``gradient_as_bucket_view`` are
    accepted for PyTorch's signature and change nothing (the default group, the CPU).

    The wrapped model is ``module``; as in PyTorch, the wrapper's ``state_dict`` keys start with
    ``module.`` (save ``ddp.module.state_dict()`` to load the weights into an unwrapped model).
    """

    def __init__(
        self,
        module: Module,
        device_ids=None,
        output_device=None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group=None,
        bucket_cap_mb: float = 25,
        find_unused_parameters: bool = False,
        gradient_as_bucket_view: bool = False,
    ):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be an nn.Module, got {type(module).__name__}")
        if not dist.is_initialized():
            raise RuntimeError(
                "DistributedDataParallel: the default process group is not initialized; "
                "call deepkern.distributed.init_process_group() first"
            )
        if not (isinstance(bucket_cap_mb, (int, float)) and bucket_cap_mb > 0):
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a positive number, got {bucket_cap_mb!r}")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.bucket_cap_mb = bucket_cap_mb
        self.require_backward_grad_sync = True
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._names = {id(p): n for n, p in named}
        for name, p in named:
            if p.device.type != "cpu":
                raise ValueError(
                    f"DistributedDataParallel: parameter {name!r} is on {p.device}; "
                    "the MPI collectives take CPU tensors"
                )
        self._sync_state(module.named_parameters(), "parameter")
        self._sync_state(module.named_buffers(), "buffer")
        self._has_buffers = any(b is not None for _, b in module.named_buffers())
        self._buckets = _make_buckets([p for _, p in reversed(named)], bucket_cap_mb * 2**20)
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        self._reached = set()  # ids of the parameters whose gradient arrived in this backward
        self._next_bucket = 0  # buckets start in index order on every rank (MPI matches collectives by order)
        self._hook_handles = [p.register_post_accumulate_grad_hook(self._on_grad_ready) for _, p in named]

    def _sync_state(self, named, what: str, check: bool = True) -> None:
        """Broadcasts rank 0's tensors of ``named`` to every rank, first checking (with ``check``)
        that the ranks' tensors have the same names, shapes and dtypes."""
        named = [(n, t) for n, t in named if t is not None]
        comm = dist._comm()
        layouts = comm.allgather([(n, tuple(t.shape), str(t.dtype)) for n, t in named]) if check else []
        for rank, layout in enumerate(layouts):
            if layout != layouts[0]:
                diff = next((a, b) for a, b in zip(layouts[0] + [None], layout + [None]) if a != b)
                raise ValueError(
                    f"DistributedDataParallel: the ranks' models differ: {what} {diff[0]} on rank 0 "
                    f"but {diff[1]} on rank {rank}"
                )
        for _, t in named:
            buf = np.ascontiguousarray(t._array)
            comm.Bcast(buf, root=0)
            if buf is not t._array:
                np.copyto(t._array, buf)
            autograd.bump_version(t._array)

    def forward(self, *inputs, **kwargs):
        if (
            self.broadcast_buffers
            and self._has_buffers
            and self.require_backward_grad_sync
            and autograd.is_grad_enabled()
        ):
            self._sync_state(self.module.named_buffers(), "buffer", check=False)  # checked at construction
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside accumulate local gradients without all-reducing them."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def _on_grad_ready(self, param) -> None:
        """A parameter's gradient is complete: launch its bucket's all-reduce when the bucket is full."""
        if not self.require_backward_grad_sync:
            return
        if not self._reached:
            autograd.queue_callback(self._finish_backward)
        self._reached.add(id(param))
        bucket = self._bucket_of[id(param)]
        bucket.ready.add(id(param))
        self._launch_ready()

    def _launch_ready(self, everything: bool = False) -> None:
        """Starts, in index order, the all-reduces of the next buckets whose parameters are all
        ready (of every bucket left when ``everything``)."""
        while self._next_bucket < len(self._buckets):
            bucket = self._buckets[self._next_bucket]
            if not everything and len(bucket.ready) < len(bucket.params):
                return
            bucket.launch()
            self._next_bucket += 1

    def _finish_backward(self) -> None:
        """End of backward: launch the buckets left (with unused parameters), wait for every
        all-reduce, write the averages into ``.grad``."""
        reached, self._reached = self._reached, set()
        params = [p for b in self._buckets for p in b.params]
        missing = [self._names[id(p)] for p in params if id(p) not in reached]
        if missing and not self.find_unused_parameters:
            for b in self._buckets[: self._next_bucket]:  # leave no request behind before raising
                b.work.wait()
            for b in self._buckets:
                b.work = None
                b.ready.clear()
            self._next_bucket = 0
            raise RuntimeError(
                "DistributedDataParallel: these parameters got no gradient in this backward: "
                f"{', '.join(missing)}; pass find_unused_parameters=True if the forward does not use "
                "every parameter, or make the loss depend on them"
            )
        self._launch_ready(everything=True)
        self._next_bucket = 0
        used = {id(p): True for p in params}
        if self.find_unused_parameters:  # which parameters got a gradient on some rank
            flags = np.array([id(p) in reached for p in params], np.uint8)
            MPI = dist._mpi()
            dist._comm().Allreduce(MPI.IN_PLACE, flags, MPI.MAX)
            used = {id(p): bool(f) for p, f in zip(params, flags)}
        world = dist.get_world_size()
        for b in self._buckets:
            b.finish(world, lambda p: used[id(p)])


def _make_buckets(params, cap_bytes: float) -> list:
    """Groups ``params`` (in the order given) into buckets of one dtype and at most ``cap_bytes``
    bytes each (a larger parameter gets a bucket of its own)."""
    buckets, current, size = [], [], 0
    for p in params:
        nbytes = p._array.nbytes
        if current and (size + nbytes > cap_bytes or p._array.dtype != current[0]._array.dtype):
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets
