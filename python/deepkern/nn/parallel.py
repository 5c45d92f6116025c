"""deepkern.nn.parallel: data-parallel training across the ranks of an MPI job
(:class:`DistributedDataParallel`, PyTorch's ``torch.nn.parallel.DistributedDataParallel``)."""

from __future__ import annotations

import contextlib
import weakref

import numpy as np

from .. import autograd
from .. import distributed as dist
from ..ops._validate import is_bfloat16
from .module import Module

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters whose gradients are all-reduced together in one flat buffer (one dtype).

    Each gradient is divided by the world size on its way into the buffer, so the all-reduce's sum
    is the average. With ``as_view`` the buffer is the gradients' storage: each parameter's ``.grad``
    is a view of its slice, the autograd engine accumulates into it in place, and a gradient that
    finds ``.grad`` None in a backward that all-reduces is written into the view already divided
    (:meth:`before_accumulate`), so the average costs no pass over the buffer and nothing is copied
    in or out. Without ``as_view`` the gradients are copied in (divided) and the averages copied out."""

    def __init__(self, params, as_view: bool = False, world: int = 1):
        self.params = params
        self.as_view = as_view
        self.world = world
        offsets = np.cumsum([0] + [p._array.size for p in params])
        self.buffer = np.zeros(int(offsets[-1]), params[0]._array.dtype)
        self.views = [self.buffer[lo:hi].reshape(p._array.shape) for p, lo, hi in zip(params, offsets, offsets[1:])]
        self._view_of = {id(p): v for p, v in zip(params, self.views)}
        self.ready = set()  # ids of the parameters whose gradient is in for this backward
        self.scaled = set()  # ids of the parameters whose view the engine wrote already divided
        self.kept = {}  # (as_view) id -> the gradient of a parameter this backward did not reach
        self.work = None  # the all-reduce in flight
        # MPI has no bfloat16: such a bucket is summed in a float32 copy, rounded back at the end.
        self.wire = self.buffer.astype(np.float32) if is_bfloat16(self.buffer.dtype) else self.buffer
        if as_view:
            for p, view in zip(params, self.views):
                if p.grad is not None:
                    self._attach(p, view)
                autograd.set_grad_home(p, view)

    @staticmethod
    def _attach(p, view) -> None:
        """Makes ``view`` hold ``p``'s gradient (copied in unless it is already there) and be its ``.grad``."""
        from ..tensor import Tensor

        if p.grad._array is not view:
            np.copyto(view, p.grad._array)
            p.grad = Tensor._wrap(view)

    def before_accumulate(self, p, sync: bool) -> None:
        """(``as_view``) Backward is about to accumulate ``p``'s gradient: when ``.grad`` is None and
        this backward all-reduces (``sync``), the engine writes it into the view divided by the world size."""
        scaled = sync and p.grad is None
        autograd.set_grad_home(p, self._view_of[id(p)], 1 / self.world if scaled else 1)
        if scaled:
            self.scaled.add(id(p))
        else:
            self.scaled.discard(id(p))

    def launch(self, last: bool = False) -> None:
        """Puts the gradients divided by the world size in the buffer (zeros for a parameter without
        one; with ``as_view``, a gradient the engine wrote there divided is left as it is, and a
        ``.grad`` the user replaced is copied in and re-attached) and starts its all-reduce; the
        ``last`` bucket of a backward has nothing left to overlap and runs the faster blocking
        all-reduce (the same bucket on every rank, so the collectives match)."""
        for p, view in zip(self.params, self.views):
            if p.grad is None:
                view[...] = 0
            elif not self.as_view:
                np.divide(p.grad._array, self.world, out=view)
            elif id(p) not in self.scaled or p.grad._array is not view:
                self._attach(p, view)
                if id(p) not in self.ready:  # restored if no rank reached it (see finish)
                    self.kept[id(p)] = view.copy()
                np.divide(view, self.world, out=view)
        self.scaled.clear()
        if self.wire is not self.buffer:
            np.copyto(self.wire, self.buffer)
        self.work = dist.iallreduce(self.wire, dist.ReduceOp.SUM, async_op=not last)

    def finish(self, globally_used) -> None:
        """Waits for the all-reduce and leaves the average in each parameter's ``.grad``, except
        where no rank reached the parameter in this backward (by ``globally_used``): its ``.grad``
        stays what it was (None, or a gradient from before)."""
        from ..tensor import Tensor

        if self.work is not None:
            self.work.wait()
        self.work = None
        if self.wire is not self.buffer:
            np.copyto(self.buffer, self.wire, casting="unsafe")
        self.ready.clear()
        kept, self.kept = self.kept, {}
        for p, view in zip(self.params, self.views):
            if not globally_used(p):
                if id(p) in kept:
                    np.copyto(view, kept[id(p)])
                continue
            if self.as_view:
                if p.grad is None or p.grad._array is not view:
                    p.grad = Tensor._wrap(view)
            elif p.grad is None:
                p.grad = Tensor._wrap(view.copy())
            else:
                np.copyto(p.grad._array, view)
            autograd.bump_version(p.grad._array)


class DistributedDataParallel(Module):
    """Wraps ``module`` for data-parallel training: every rank runs it on its share of the batch,
    and ``backward()`` leaves on every rank the gradients averaged over the ranks.

    At construction rank 0's parameters and buffers are broadcast to the others (so ranks that
    started from different weights train one model). The parameters are grouped into buckets of
    about ``bucket_cap_mb`` megabytes, in the reverse order of their registration (roughly the
    order backward produces their gradients); when backward has accumulated the gradient of every
    parameter of a bucket, the gradients, divided by the world size, are put in the bucket's
    buffer and its all-reduce (a sum: the average) starts at once, so communication overlaps the
    rest of backward; the last bucket has nothing left to overlap and runs the blocking all-reduce.
    At the end of backward every all-reduce is waited for and the averages are left in ``.grad``.

    ``no_sync()``: inside it, backward only accumulates the local gradients (gradient accumulation);
    the first backward outside it all-reduces the accumulated sums. ``find_unused_parameters``: a
    parameter that got no gradient in a backward (nor in the ``no_sync`` backwards before it) counts
    as zero on that rank (without it, such a parameter is an error naming it). ``broadcast_buffers``:
    a forward first copies rank 0's buffers (e.g. BatchNorm's running statistics) to every rank, as
    PyTorch's does: the first forward and each one after a forward that ran with gradients outside
    ``no_sync`` (so an evaluation under ``no_grad`` after training sees rank 0's statistics).
    A backward that raised before its end leaves the all-reduces unfinished (the ranks' may no
    longer match): the next forward is a RuntimeError, as in PyTorch. bfloat16 parameters are
    summed in float32.

    ``gradient_as_bucket_view=True`` makes the buckets the gradients' storage: each parameter's
    ``.grad`` is a view into its bucket's buffer, backward accumulates into it in place (and writes
    a new gradient there already divided by the world size), and the all-reduce runs on the buffer
    with no copy in or out (a ``.grad`` the user
    replaced is copied into the bucket and re-attached at the next all-reduce; after
    ``zero_grad(set_to_none=True)`` the next backward writes into the bucket again). As in PyTorch it
    is off by default: with it, a gradient Tensor kept from an earlier step is overwritten by the
    next backward instead of left as it was.

    ``device_ids``, ``output_device``, ``dim`` and ``process_group`` are accepted for PyTorch's
    signature and change nothing (the default group, the CPU).

    The wrapper's hooks on the parameters hold it weakly and are removed when it is collected, so
    the module trains as before once the wrapper is deleted; a second wrapper around the same
    parameters takes them over (the first one's hooks are removed and its forward raises), so a
    backward all-reduces once.

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
        self.gradient_as_bucket_view = bool(gradient_as_bucket_view)
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
        params = [p for _, p in reversed(named)]
        world = dist.get_world_size()
        for _, p in named:  # a wrapper made before around these parameters stops serving them
            for hook in list((p._post_hooks or {}).values()):
                previous = hook.owner() if isinstance(hook, _WrapperHook) else None
                if previous is not None:
                    previous._detach()
        self._buckets = _make_buckets(params, bucket_cap_mb * 2**20, self.gradient_as_bucket_view, world)
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        self._reached = set()  # ids of the parameters whose gradient arrived in this backward
        self._accumulated = set()  # ids of those whose gradient arrived in no_sync backwards since the last sync
        self._sync_buffers_next = True  # PyTorch's require_forward_param_sync
        self._next_bucket = 0  # buckets start in index order on every rank (MPI matches collectives by order)
        self._detached = False
        handles = [p.register_post_accumulate_grad_hook(_WrapperHook(self, "_on_grad_ready")) for _, p in named]
        if self.gradient_as_bucket_view:
            handles += [p.register_hook(_WrapperHook(self, "_before_grad", p)) for _, p in named]
        # The hooks hold the wrapper weakly: once it is collected (or replaced, see _detach) they
        # are removed and the parameters' gradients go back to memory of their own.
        self._release = weakref.finalize(self, _release_parameters, handles, [p for _, p in named])

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
            comm.Bcast(buf.view(np.uint8), root=0)  # bytes: any dtype (MPI has no bfloat16)
            if buf is not t._array:
                np.copyto(t._array, buf)
            autograd.bump_version(t._array)

    def _detach(self) -> None:
        """A newer wrapper took over the parameters: this one's hooks and gradient homes are removed
        (so backward all-reduces once, through the newer one) and its forward raises."""
        self._detached = True
        self._release()

    def forward(self, *inputs, **kwargs):
        if self._detached:
            raise RuntimeError(
                "DistributedDataParallel: a newer DistributedDataParallel wraps this module's parameters; "
                "this wrapper no longer all-reduces, use the newer one"
            )
        if self._reached or self._next_bucket:
            raise RuntimeError(
                "DistributedDataParallel: the previous backward raised before it finished all-reducing the "
                "gradients, so the ranks' all-reduces may no longer match; wrap the module again to go on"
            )
        if self.broadcast_buffers and self._has_buffers and self._sync_buffers_next:
            self._sync_state(self.module.named_buffers(), "buffer", check=False)  # checked at construction
        self._sync_buffers_next = autograd.is_grad_enabled() and self.require_backward_grad_sync
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

    def _before_grad(self, param, grad) -> None:
        """(gradient_as_bucket_view) A gradient hook: ``param``'s gradient is about to be accumulated."""
        self._bucket_of[id(param)].before_accumulate(param, self.require_backward_grad_sync)

    def _on_grad_ready(self, param) -> None:
        """A parameter's gradient is complete: launch its bucket's all-reduce when the bucket is full."""
        if not self.require_backward_grad_sync:
            self._accumulated.add(id(param))
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
            self._next_bucket += 1
            bucket.launch(last=self._next_bucket == len(self._buckets))

    def _finish_backward(self) -> None:
        """End of backward: launch the buckets left (with unused parameters), wait for every
        all-reduce, write the averages into ``.grad``."""
        reached, self._reached = self._reached, set()
        accumulated, self._accumulated = self._accumulated, set()
        params = [p for b in self._buckets for p in b.params]
        missing = [self._names[id(p)] for p in params if id(p) not in reached]
        if missing and not self.find_unused_parameters:
            for b in self._buckets[: self._next_bucket]:  # leave no request behind before raising
                if b.work is not None:
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
            flags = np.array([id(p) in reached or id(p) in accumulated for p in params], np.uint8)
            MPI = dist._mpi()
            dist._comm().Allreduce(MPI.IN_PLACE, flags, MPI.MAX)
            used = {id(p): bool(f) for p, f in zip(params, flags)}
        for b in self._buckets:
            b.finish(lambda p: used[id(p)])


class _WrapperHook:
    """A parameter hook that calls ``owner.<method>(*args, hook's arguments)`` while the wrapper
    ``owner`` is alive, holding it weakly (so the hooks keep no wrapper alive), and does nothing after."""

    def __init__(self, owner, method: str, *args):
        self.owner = weakref.ref(owner)
        self.method, self.args = method, args

    def __call__(self, *hook_args):
        owner = self.owner()
        if owner is not None:
            getattr(owner, self.method)(*self.args, *hook_args)


def _release_parameters(handles, params) -> None:
    """Removes a wrapper's hooks (``handles``) and its buckets as ``params``' gradient homes."""
    for handle in handles:
        handle.remove()
    for p in params:
        autograd.set_grad_home(p, None)


def _make_buckets(params, cap_bytes: float, as_view: bool = False, world: int = 1) -> list:
    """Groups ``params`` (in the order given) into buckets of one dtype and at most ``cap_bytes``
    bytes each (a larger parameter gets a bucket of its own); ``as_view``, ``world``: see :class:`_Bucket`."""
    buckets, current, size = [], [], 0
    for p in params:
        nbytes = p._array.nbytes
        if current and (size + nbytes > cap_bytes or p._array.dtype != current[0]._array.dtype):
            buckets.append(_Bucket(current, as_view, world))
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        buckets.append(_Bucket(current, as_view, world))
    return buckets
