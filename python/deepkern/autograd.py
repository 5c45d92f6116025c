"""Reverse-mode automatic differentiation: ``Function`` (a forward plus its backward), the graph
of ``Node``s that ``Function.apply`` records, and the engine that ``Tensor.backward`` runs.

A Function's ``forward(ctx, *args, **kwargs)`` receives the Tensors' arrays (NumPy arrays on the
CPU, a backend's arrays on another device; all Tensors of one call on one device) where the caller
passed Tensors (and everything else unchanged) and returns an array or a tuple of arrays; its
``backward(ctx, *grad_outputs)`` receives one gradient array per output and returns one gradient
(array or None) per positional argument of ``forward``. Arrays in, arrays out: the heavy
Functions call the deepkern kernels directly, and the graph bookkeeping stays in this file.

With ``create_graph=True`` the gradients are themselves differentiable (a gradient penalty, a
Hessian-vector product): that pass runs each node's ``backward_graph(ctx, io, *grads)`` on Tensors
(:class:`GraphIO` hands it its operands as Tensors of the graph), recording the gradients' own
graph; a Function without one raises NotImplementedError naming it. ``no_grad()`` and
``inference_mode()`` record nothing. ``grad(outputs, inputs)`` returns gradients without touching
``.grad``; hooks registered with ``Tensor.register_hook`` see (and may replace) a tensor's gradient.

In-place writes are checked as PyTorch checks them: every in-place write through deepkern stamps
the buffer it changes (the array that owns the memory; views share it) with a process-wide write
clock and counts its version, so a saved array changed before the backward that reads it, and a
view whose buffer changed after the view was recorded, raise instead of giving a wrong gradient.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref

import numpy as np

from .backends import as_array, backend_of

__all__ = [
    "Function",
    "Context",
    "no_grad",
    "enable_grad",
    "inference_mode",
    "is_grad_enabled",
    "set_grad_enabled",
    "grad",
    "RemovableHandle",
    "Variable",
    "gradcheck",
    "GradcheckError",
    "detect_anomaly",
    "set_detect_anomaly",
    "is_anomaly_enabled",
]

_state = threading.local()

# -- version counters ----------------------------------------------------------------------------
# Every in-place write through deepkern ticks one process-wide clock and stamps the written buffer
# (the array that owns the memory; views share their owner's) with the tick, and counts the
# buffer's writes (its version). A saved value or a view records only the clock when it is taken:
# it is stale when its buffer's stamp is later. Taking costs one read; checking is free while the
# clock has not moved (the usual case between a forward and its backward).

_clock = 0  # in-place writes so far, in the whole process
# Changes to modules so far, in the whole process: an attribute set or deleted, a parameter, buffer,
# submodule or hook added, a mode switched, a tensor's array replaced (``data =``, ``to``). (A removed
# hook needs none: no program is made while a layer has hooks.)
# Sequential's inference programs (nn/_inference.py) are kept while it and the write clock stand still.
module_changes = 0
# Autocast's hook, set by deepkern.amp: [regions open in all threads, the function that casts an
# op's arguments as the autocast policy says, the function telling whether this thread's autocast
# casts a Function's arguments]; Function.apply looks no further while none is open.
AUTOCAST = [0, None, None]


def autocast_casts(function=None) -> bool:
    """Whether this thread's autocast is on and casts the arguments of ``function`` (a Function class
    its policy names; None: any, i.e. whether it is on). The count of regions open anywhere is read
    first, so nothing thread-local is read while none is. The ops that compute bfloat16 in float32
    themselves leave that to autocast only where it casts them."""
    return bool(AUTOCAST[0]) and AUTOCAST[2](function)


_last_write: dict = {}  # id(buffer) -> the clock of its latest in-place write
_versions: dict = {}  # id(buffer) -> its in-place writes so far; absent: never written
_exposed: dict = {}  # id(buffer) -> the NumPy arrays it was handed out as (weak; None: for good), see expose
_exposures: dict = {}  # id(buffer) -> how many times it was handed out
_watched: set = set()  # id(buffer) of buffers that caches derived values from (see watch)


def buffer_of(arr):
    """The array that owns ``arr``'s memory: ``arr`` itself, or the array its view chain starts at."""
    base = getattr(arr, "base", None)
    while isinstance(base, np.ndarray) or (base is not None and type(base) is type(arr)):
        arr, base = base, getattr(base, "base", None)
    return arr


def version_of(arr) -> int:
    """How many in-place writes through deepkern ``arr``'s buffer has had."""
    return _versions.get(id(buffer_of(arr)), 0)


def written_since(arr, clock: int) -> bool:
    """Whether ``arr``'s buffer had an in-place write after the clock read ``clock``."""
    return _clock != clock and _last_write.get(id(buffer_of(arr)), -1) > clock


def expose(arr, handle=None) -> None:
    """Records that ``arr``'s buffer was handed out as the NumPy array ``handle`` (a view of it that
    ``Tensor.numpy()`` returns), through which it may be written without a version bump, for as long
    as ``handle`` (or a view of it) lives; with no handle, for good (``from_numpy``: the caller keeps the
    buffer's owner). Caches of values derived from an exposed buffer check its contents."""
    global _clock
    owner = buffer_of(arr)
    key = id(owner)
    is_exposed(arr)  # drops the handles that died
    if key in _watched:
        _clock += 1  # the caches built on it check again (nn/_inference.py's kept)
    if key not in _exposed:
        _track(owner, key)
        _exposed[key] = []
    handles = _exposed[key]
    if handle is not None:
        handles.append(weakref.ref(handle))
    elif None not in handles:  # one permanent record (an input handed in again each call kept growing it)
        handles.append(None)
    _exposures[key] = _exposures.get(key, 0) + 1


def watch(arr) -> None:
    """Records that a cache derived values from ``arr``'s buffer: handing it out then advances the write
    clock, so that the cache checks it (handing out other buffers, a model's outputs, does not)."""
    owner = buffer_of(arr)
    key = id(owner)
    _track(owner, key)
    _watched.add(key)


def exposures(arr) -> int:
    """How many times ``arr``'s buffer was handed out (see :func:`expose`): a cache built before the
    latest cannot know what was written through it since."""
    return _exposures.get(id(buffer_of(arr)), 0) if _exposures else 0


def is_exposed(arr) -> bool:
    """Whether ``arr``'s buffer is handed out (see :func:`expose`): a permanent record, or a handle alive."""
    if not _exposed:
        return False
    handles = _exposed.get(id(buffer_of(arr)))
    if not handles:
        return False
    live = [h for h in handles if h is None or h() is not None]
    if len(live) != len(handles):
        handles[:] = live
    return bool(live)


def _track(owner, key) -> None:
    """Makes the entries of buffer ``owner`` go with it, so a later array at the same address starts afresh."""
    if key not in _versions and key not in _exposures and key not in _watched:
        try:
            weakref.finalize(owner, _forget, key)
        except TypeError:  # a buffer type without weak references: kept for the process's life
            pass


def note_module_change() -> None:
    """Records a change to a module or to the array a tensor holds (see ``module_changes``)."""
    global module_changes
    module_changes += 1


def bump_version(arr) -> None:
    """Records one in-place write to ``arr``'s buffer (call it for every write deepkern makes to a
    Tensor's existing memory: in-place operators, optimizer steps, loading into parameters)."""
    global _clock
    owner = buffer_of(arr)
    key = id(owner)
    _track(owner, key)
    _clock += 1
    _last_write[key] = _clock
    _versions[key] = _versions.get(key, 0) + 1


def _forget(key) -> None:
    _versions.pop(key, None)
    _last_write.pop(key, None)
    _exposed.pop(key, None)
    _exposures.pop(key, None)
    _watched.discard(key)


def _describe(arr) -> str:
    return f"an array of shape {tuple(arr.shape)} and dtype {arr.dtype}"


def is_grad_enabled() -> bool:
    """Whether operations on Tensors that require grad are recorded (per thread)."""
    return getattr(_state, "enabled", True)


class set_grad_enabled:
    """Context manager / decorator that turns recording on or off, restoring it on exit.

    Re-entrant: one instance may be entered again before it exits (nested ``with`` blocks of the
    same object), and a decorated function enters a fresh one per call, so recursion restores the
    mode of each level."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._previous = []
        self._before = None  # the mode before this call set it (set_grad_enabled itself only)
        if type(self) is set_grad_enabled:  # PyTorch's: the call sets the mode, so it works as a function too
            self._before = is_grad_enabled()
            _state.enabled = self.mode

    def __enter__(self):
        before, self._before = self._before, None
        self._previous.append(is_grad_enabled() if before is None else before)
        _state.enabled = self.mode

    def __exit__(self, *exc):
        _state.enabled = self._previous.pop()
        return False

    def __call__(self, func):
        if self._before is not None:  # a decorator: the mode the call set is taken back
            _state.enabled, self._before = self._before, None
        mode = self.mode
        if inspect.isgeneratorfunction(func):  # the mode holds in the generator's body, step by step

            @functools.wraps(func)
            def generate_with_grad_mode(*args, **kwargs):
                return (yield from _stepped_in_mode(func(*args, **kwargs), mode))

            return generate_with_grad_mode

        @functools.wraps(func)
        def with_grad_mode(*args, **kwargs):
            with set_grad_enabled(mode):
                return func(*args, **kwargs)

        return with_grad_mode


def _stepped_in_mode(generator, mode: bool):
    """Runs ``generator``, each of its steps (and its close) in grad mode ``mode``, the caller's
    mode restored in between (as PyTorch's decorated generators)."""
    try:
        with set_grad_enabled(mode):
            response = generator.send(None)
        while True:
            try:
                request = yield response
            except GeneratorExit:
                with set_grad_enabled(mode):
                    generator.close()
                raise
            except BaseException as error:  # thrown in: the generator may handle it
                with set_grad_enabled(mode):
                    response = generator.throw(error)
            else:
                with set_grad_enabled(mode):
                    response = generator.send(request)
    except StopIteration as stop:
        return stop.value


class _Bare(set_grad_enabled):
    """A mode whose class may also decorate a function without parentheses (``@deepkern.no_grad``,
    as PyTorch's ``@torch.no_grad``): ``cls(func)`` is ``cls()(func)``."""

    def __new__(cls, *args, **kwargs):
        if len(args) == 1 and not kwargs and callable(args[0]) and not isinstance(args[0], bool):
            return cls()(args[0])
        return super().__new__(cls)


class no_grad(_Bare):
    """``with deepkern.no_grad():`` (or ``@deepkern.no_grad()``) records no graph."""

    def __init__(self):
        super().__init__(False)


class enable_grad(_Bare):
    """Turns recording back on inside a ``no_grad`` block."""

    def __init__(self):
        super().__init__(True)


class inference_mode(_Bare):
    """``with deepkern.inference_mode():`` records no graph, as ``no_grad`` (``mode=False`` records)."""

    def __init__(self, mode: bool = True):
        super().__init__(not mode)


class RemovableHandle:
    """What registering a hook returns: ``remove()`` takes the hook out of the dict it was put in."""

    _next_id = 0

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def add_hook(hooks: dict, hook) -> RemovableHandle:
    """Puts ``hook`` (a callable) into ``hooks`` (in registration order) and returns its handle."""
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}")
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    note_module_change()
    return handle


class Context:
    """What a Function's forward leaves for its backward.

    ``save_for_backward(*arrays)`` / ``saved_tensors``; ``needs_input_grad`` has one bool per
    positional argument of forward (True where that argument is a Tensor that requires grad);
    any other attribute may be set freely. ``mark_non_differentiable(*outputs)`` marks outputs
    (e.g. argmax indices) that get no gradient; integer and bool outputs never get one.
    """

    _KEPT = frozenset({"needs_input_grad", "_saved", "_saved_at", "_non_differentiable", "_released", "_function"})

    def __init__(self, needs_input_grad, function: str = ""):
        self.needs_input_grad = needs_input_grad
        self._saved = ()
        self._saved_at = 0  # the write clock when the values were saved
        self._non_differentiable = ()
        self._released = False
        self._function = function  # the Function's name, for the errors

    def save_for_backward(self, *arrays):
        self._saved = arrays
        self._saved_at = _clock

    @property
    def saved_tensors(self):
        if self._released:
            raise RuntimeError(
                "backward through the graph a second time: its saved values were freed after the "
                "first backward; pass retain_graph=True to the first backward to keep them"
            )
        if _clock != self._saved_at:  # something was written in place since: were these values?
            for a in self._saved:
                if getattr(a, "shape", None) is not None and written_since(a, self._saved_at):
                    raise RuntimeError(
                        "one of the variables needed for gradient computation has been modified by an inplace "
                        f"operation: {_describe(a)}, saved by {self._function}Backward, was changed after it "
                        f"was saved (its buffer is at version {version_of(a)} now). Compute the in-place change "
                        "out of place (y = y + 1 instead of y += 1), or clone() the tensor before changing it"
                    )
        return self._saved

    def _unshare_saved(self, buffer) -> None:
        """Replaces the saved arrays that live in ``buffer`` by copies: an in-place operator saves
        the value it is about to overwrite (``y *= w`` needs the old ``y`` for ``w``'s gradient)."""
        inside = [getattr(a, "shape", None) is not None and buffer_of(a) is buffer for a in self._saved]
        if any(inside):
            self._saved = tuple(a.copy() if copy else a for a, copy in zip(self._saved, inside))

    def mark_non_differentiable(self, *outputs):
        self._non_differentiable = tuple(id(o) for o in outputs)

    def release(self):
        """Frees what the backward read: the saved values and every attribute holding data. A later
        backward through this node raises only where something was freed; a node that kept nothing
        but numbers (an addition, a sum) runs again, as in PyTorch."""
        freed = [name for name, value in vars(self).items() if name not in self._KEPT and not _is_plain(value)]
        self._released = self._released or bool(self._saved) or bool(freed)
        self._saved = ()
        for name in freed:
            delattr(self, name)


def _is_plain(value) -> bool:
    """Whether ``value`` is a number, string, dtype, None or a tuple/list of them: what a Function's
    context keeps of its arguments (an axis, a shape) rather than data."""
    if isinstance(value, (tuple, list)):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str, np.dtype, np.generic))


class Node:
    """One recorded Function call: its backward, context, what it reads (per argument: a leaf Tensor;
    for a non-leaf the history it had when read, the tuple ``(node, output index, shape)``, so that an
    in-place operation giving the Tensor a new history later leaves this one alone; None where no
    gradient is needed), the shapes/dtypes of its outputs and, when an output is a view of an
    input's memory, ``view`` = (that input Tensor, its buffer, the write clock when the view was
    taken); None otherwise. ``hooks`` maps an output index to the gradient hooks of the tensor that
    holds that output (see Tensor.register_hook), with the retained-grad tensor, if any, under the
    key ``"retain"`` of that dict."""

    __slots__ = ("function", "ctx", "inputs", "output_meta", "view", "hooks", "__weakref__")

    def __init__(self, function, ctx, inputs, output_meta, view=None):
        self.function = function
        self.ctx = ctx
        self.inputs = inputs
        self.output_meta = output_meta
        self.view = view
        self.hooks = None

    def check_view_current(self) -> None:
        """Raises when this node's output is a view whose memory was written in place after the view
        was recorded: its graph no longer describes its values."""
        if self.view is not None and written_since(self.view[1], self.view[2]):
            raise RuntimeError(
                f"a view ({self.name()}) is used after its base tensor was modified by an inplace operation; "
                "its gradient would miss that change. Take the view again after the in-place operation"
            )

    def name(self) -> str:
        return self.function.__name__ + "Backward"

    def __repr__(self):
        return f"<{self.name()}>"


class Function:
    """Subclass with static ``forward(ctx, *args, **kwargs)`` and ``backward(ctx, *grads)``;
    call ``YourFunction.apply(*args, **kwargs)``. ``backward_graph(ctx, io, *grads)`` (optional; grads
    and results are Tensors, ``io`` a :class:`GraphIO`) is the backward as differentiable Tensor ops,
    for create_graph=True."""

    backward_graph = None

    @staticmethod
    def forward(ctx, *args, **kwargs):  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs):  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        if AUTOCAST[0]:
            args = AUTOCAST[1](cls, args)
        Tensor = _tensor_class()
        # One pass over the arguments: the arrays the forward gets and which of them need grad.
        arrays, needs = [], []
        on_cpu = True
        for a in args:
            if isinstance(a, Tensor):
                if a._view_base is not None:
                    a._rejoin_base()  # if its base gained a history after this view was taken
                arrays.append(a._array)
                needs.append(a._requires_grad)
                on_cpu = on_cpu and type(a._array) is _NDARRAY
            else:
                arrays.append(a)
                needs.append(False)
        if not on_cpu:  # the Tensors must share one device
            backend_of(*(a._array for a in args if isinstance(a, Tensor)), op=cls.__name__)
        if not (True in needs and is_grad_enabled()):  # nothing to record: the forward alone
            if args and getattr(args[0], "shape", None) is None and not any(isinstance(a, Tensor) for a in args):
                raise TypeError(  # a number, list or None where the op's input tensor belongs, as PyTorch's
                    f"{cls.__name__}: the input must be a Tensor (or an array), got {type(args[0]).__name__}"
                )
            out = cls.forward(Context((False,) * len(args)), *arrays, **kwargs)
            if isinstance(out, tuple):
                return tuple([Tensor._wrap(o) for o in out])
            return Tensor._wrap(out)
        ctx = Context(tuple(needs), cls.__name__)
        out = cls.forward(ctx, *arrays, **kwargs)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        inputs = []  # leaves as they are; a non-leaf as the history it has now
        for a, n in zip(args, needs):
            source = a._node if n else None
            if source is None:
                inputs.append(a if n else None)
                continue
            if source.view is not None:
                source.check_view_current()
            inputs.append((source, a._output_index, a._array.shape))
        view = None
        for o in outs:
            if getattr(o, "base", None) is not None:
                view = _view_of(o, args, arrays)
                break
        node = Node(cls, ctx, tuple(inputs), tuple((o.shape, o.dtype) for o in outs), view)
        skip = ctx._non_differentiable  # and, as in PyTorch, every integer or bool output (a cast's, indices)
        wrapped = tuple(
            Tensor._wrap(o) if id(o) in skip or o.dtype.kind in "biu" else Tensor._wrap(o, node, i)
            for i, o in enumerate(outs)
        )
        return wrapped[0] if single else wrapped


_TENSOR = None
_NDARRAY = np.ndarray


def _view_of(out, args, arrays):
    """``(input, buffer, write clock)`` when ``out`` is a view into the memory of the argument ``input``
    (reshape, indexing, transposes; ``arrays`` are the arguments' arrays), else None."""
    owner = buffer_of(out)
    for arg, a in zip(args, arrays):
        if getattr(a, "shape", None) is not None and buffer_of(a) is owner:
            return arg, owner, _clock
    return None


def _tensor_class():
    """deepkern.tensor.Tensor (imported on first use: tensor.py imports this module)."""
    global _TENSOR
    if _TENSOR is None:
        from .tensor import Tensor

        _TENSOR = Tensor
    return _TENSOR


def _topological_order(roots) -> list:
    """Nodes reachable from the ``roots`` (Nodes), each before every node it reads from (a depth-first
    post-order, reversed; iterative, so long chains do not hit the recursion limit)."""

    def parents(node):
        return (i[0] for i in node.inputs if type(i) is tuple)

    order, visited = [], set()
    for root in roots:
        if id(root) in visited:
            continue
        visited.add(id(root))
        stack = [(root, parents(root))]
        while stack:
            node, pending = stack[-1]
            for parent in pending:
                if id(parent) not in visited:
                    visited.add(id(parent))
                    stack.append((parent, parents(parent)))
                    break
            else:  # every parent is done: the node follows them
                stack.pop()
                order.append(node)
    order.reverse()
    return order


def run_hooks(hooks, g):
    """``g`` (a gradient array, or a Tensor of the graph in a create_graph pass) after each hook of
    ``hooks`` (a dict of callables taking and maybe returning a Tensor, see Tensor.register_hook), then
    given to the retained-grad tensor, if any."""
    if not hooks:
        return g
    Tensor = _tensor_class()
    graph = isinstance(g, Tensor)
    for key, hook in list(hooks.items()):
        if key == "retain":
            continue
        replaced = hook(g if graph else Tensor._wrap(g))
        if replaced is not None:
            if not isinstance(replaced, Tensor) or replaced.shape != g.shape:
                what = f"shape {replaced.shape}" if isinstance(replaced, Tensor) else type(replaced).__name__
                raise RuntimeError(f"hook {hook!r} returned {what}; expected a Tensor of shape {g.shape} or None")
            if replaced.dtype != g.dtype:
                raise RuntimeError(f"hook {hook!r} has changed the type of value (was {g.dtype} got {replaced.dtype})")
            g = replaced if graph else replaced._array
    retained = hooks.get("retain")
    target = retained() if retained is not None else None
    if target is not None:
        (_accumulate_graph if graph else accumulate_grad)(target, g)
    return g


# id(leaf) -> (a weak reference to the leaf, the array a new gradient of the leaf is written into)
_grad_homes: dict = {}


def set_grad_home(leaf, array, scale: float = 1.0) -> None:
    """Makes ``array`` (the leaf's shape and dtype, writeable) the memory of ``leaf``'s gradient:
    a backward that finds ``leaf.grad`` None writes the gradient times ``scale`` into ``array`` and
    makes ``.grad`` a Tensor on it, instead of allocating (DistributedDataParallel's
    ``gradient_as_bucket_view`` keeps the gradients in its buckets this way, divided by the world
    size on the way in). ``array=None`` removes it."""
    _grad_homes.pop(id(leaf), None)
    if array is None:
        return
    if tuple(array.shape) != tuple(leaf.shape) or array.dtype != leaf.dtype:
        raise ValueError(
            f"set_grad_home: array has shape {tuple(array.shape)} and dtype {array.dtype}; "
            f"the leaf has shape {tuple(leaf.shape)} and dtype {leaf.dtype}"
        )
    key = id(leaf)
    _grad_homes[key] = (weakref.ref(leaf, lambda _, key=key: _grad_homes.pop(key, None)), array, scale)


def accumulate_grad(tensor, g) -> None:
    """Adds the gradient array ``g`` to ``tensor.grad`` as PyTorch's AccumulateGrad does: in place
    when ``.grad`` exists (writeable, and ``g`` changes neither its shape nor its dtype), so views of
    the gradient keep seeing it, unless a create_graph pass recorded it (then a new Tensor, as the sum
    would otherwise change values its graph holds); else a new array (written into the tensor's gradient home, see
    :func:`set_grad_home`, when it has one)."""
    Tensor = _tensor_class()
    grad = tensor.grad
    if grad is None:
        home = _grad_homes.get(id(tensor))
        if home is not None and home[0]() is tensor:
            if home[2] == 1:
                np.copyto(home[1], g, casting="same_kind")
            else:
                np.multiply(g, home[2], out=home[1], casting="same_kind")
            bump_version(home[1])
            tensor.grad = Tensor._wrap(home[1])
        else:
            tensor.grad = Tensor._wrap(g.astype(tensor.dtype))
        return
    arr = grad._array
    if grad.requires_grad:  # recorded by a create_graph pass: a new Tensor, its graph left as it was
        tensor.grad = Tensor._wrap(arr + g)
        return
    writeable = getattr(getattr(arr, "flags", None), "writeable", True)
    if writeable and tuple(arr.shape) == tuple(g.shape) and np.result_type(arr.dtype, g.dtype) == arr.dtype:
        np.add(arr, g, out=arr)
        bump_version(arr)
    else:
        grad._array = arr + g


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None) -> None:
    """PyTorch's ``torch.autograd.backward``: propagates each of ``tensors`` (a Tensor or a sequence)
    times its gradient in ``grad_tensors`` (None for a one-element tensor) to every leaf Tensor that
    requires grad, in one pass, accumulating into their ``.grad``; each leaf's post-accumulate-grad hooks
    run once its gradient is complete, and the callbacks queued during the pass (:func:`queue_callback`)
    at its end. With ``create_graph`` the leaves' gradients are Tensors with their own graph
    (see the module docstring). ``inputs`` is not supported."""
    if inputs is not None:
        raise NotImplementedError("backward: inputs= is not supported; use deepkern.autograd.grad for chosen inputs")
    roots = _roots("backward", tensors, grad_tensors, "tensors", "grad_tensors", graph=create_graph)
    if create_graph:
        reached = {}
        _graph_engine(roots, lambda leaf, g: (_accumulate_graph(leaf, g), reached.setdefault(id(leaf), leaf)))
        for leaf in reached.values():
            if leaf._post_hooks:
                _run_post_hooks(leaf)
        return
    outer = getattr(_state, "callbacks", None)
    _state.callbacks = callbacks = []
    try:
        _engine(roots, bool(retain_graph), accumulate_grad, _run_post_hooks)
        while callbacks:  # a callback may queue another
            callbacks.pop(0)()
    finally:
        _state.callbacks = outer


class GraphIO:
    """A node's operands for its Function's ``backward_graph`` (create_graph=True), as Tensors that
    are part of the graph, so that gradients computed from them are differentiable with respect to
    everything they depend on."""

    def __init__(self, node) -> None:
        self.node = node

    def input(self, i: int, value):
        """Forward argument ``i`` holding ``value`` (the array the forward saved, or the number passed):
        the leaf Tensor itself, a Tensor on the graph edge it came through, or a constant (a number
        stays a number) where it needs no gradient."""
        edge = self.node.inputs[i] if i < len(self.node.inputs) else None
        if edge is None:
            return _tensor_class()._wrap(value) if isinstance(value, _NDARRAY) else value
        if type(edge) is not tuple:
            return edge
        return _tensor_class()._wrap(value, edge[0], edge[1])

    def output(self, i: int, value):
        """This node's output ``i`` (the array the forward saved) as a Tensor of the graph."""
        return _tensor_class()._wrap(value, self.node, i)

    def placeholder(self, i: int, like):
        """Forward argument ``i`` as a Tensor of the graph whose value the forward did not save, for a
        Function that does not read it (tensor_ops.MaskedGradient, loss._Change): the leaf itself, or
        zeros of ``like``'s shape and dtype (no memory) on the graph edge it came through."""
        return self.input(i, np.broadcast_to(np.zeros((), like.dtype), like.shape))


def _graph_engine(roots, to_leaf, wanted=None, only_leaves=None) -> None:
    """The backward pass of create_graph=True on Tensors: as :func:`_engine` (``roots``, ``to_leaf``,
    ``wanted``, ``only_leaves``), with each gradient a Tensor recorded as it is computed (by the nodes'
    ``backward_graph``) and nothing freed; gradient hooks see (and may replace) those Tensors, a leaf's
    once with its summed gradient."""
    Tensor = _tensor_class()
    pending, nodes = {}, []

    held = {}  # leaves with hooks: their gradient summed over their uses, for the hooks to see once

    def to_input(inp, g):
        if type(inp) is not tuple:
            if only_leaves is not None and id(inp) not in only_leaves:
                return
            if inp._hooks:
                held[id(inp)] = (inp, g if id(inp) not in held else held[id(inp)][1] + g)
            else:
                to_leaf(inp, g)
            return
        source, index, _ = inp
        slots = pending.setdefault(id(source), [None] * len(source.output_meta))
        slots[index] = g if slots[index] is None else slots[index] + g

    for root, gradient in roots:
        gradient = gradient if isinstance(gradient, Tensor) else Tensor._wrap(gradient)
        node = root._node
        if node is None:
            to_input(root, gradient)
            continue
        node.check_view_current()
        nodes.append(node)
        to_input((node, root._output_index, root.shape), gradient)
    order = _topological_order(nodes) if nodes else []
    leads = None if only_leaves is None else _leading(order, only_leaves, wanted)
    with enable_grad(), np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for node in order:
            grads = pending.pop(id(node), None)
            if grads is None:
                continue
            if node.hooks:
                grads = [g if g is None else run_hooks(node.hooks.get(i), g) for i, g in enumerate(grads)]
            if wanted:
                for i, g in enumerate(grads):
                    if (id(node), i) in wanted:
                        wanted[(id(node), i)] = g
            if leads is not None and not leads[id(node)]:
                continue
            if node.function.backward_graph is None:
                raise NotImplementedError(
                    f"create_graph=True: the gradient of {node.function.__name__} is not differentiable in "
                    f"deepkern (only its first-order gradient is: leave create_graph off for graphs through "
                    f"{node.function.__name__})"
                )
            if node.ctx._released:
                _ = node.ctx.saved_tensors  # raises: this part of the graph was already freed
            if any(g is None for g in grads):  # outputs that got no gradient: zeros on the others' device
                backend = backend_of(*(g._array for g in grads if g is not None), op=node.name())
                grads = [
                    Tensor._wrap(backend.zeros(shape, dtype)) if g is None else g
                    for g, (shape, dtype) in zip(grads, node.output_meta)
                ]
            in_grads = node.function.backward_graph(node.ctx, GraphIO(node), *grads)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            for inp, g in zip(node.inputs, in_grads):
                if inp is None or g is None:
                    continue
                dtype = inp[0].output_meta[inp[1]][1] if type(inp) is tuple else inp.dtype
                to_input(inp, g if g.dtype == dtype else g.to(dtype))
        for leaf, g in held.values():
            to_leaf(leaf, run_hooks(leaf._hooks, g))


def _accumulate_graph(leaf, g) -> None:
    """create_graph=True: ``leaf.grad`` becomes ``g`` (a Tensor with its graph), or the sum with the
    one it had, as PyTorch's (not written in place)."""
    leaf.grad = g if leaf.grad is None else leaf.grad + g


def _roots(op: str, outputs, gradients, noun: str, name: str, graph: bool = False) -> list:
    """The backward pass's roots, pairs (Tensor, its gradient as an array on its device in its dtype),
    of ``outputs`` (a Tensor or a sequence) and ``gradients`` (``name``: a list or tuple with one per
    output, None in it or for all of them: ones for one-element outputs; anything else is the one
    gradient of a single output). ``graph`` (create_graph=True): a gradient given as a Tensor that
    requires grad stays that Tensor (cast to the output's dtype), so the results are differentiable with
    respect to it, as PyTorch's. Errors name ``op`` and call the outputs ``noun``."""
    from .tensor import _on_device_of as on_device_of

    Tensor = _tensor_class()
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if gradients is None:
        gradients = [None] * len(outputs)
    elif not isinstance(gradients, (list, tuple)):  # one gradient (a Tensor, an array)
        gradients = [gradients]
    gradients = list(gradients)
    if len(gradients) != len(outputs):
        raise ValueError(f"{op}: {name} has {len(gradients)} entries for {len(outputs)} {noun}")
    roots = []
    for i, (out, g) in enumerate(zip(outputs, gradients)):
        if not isinstance(out, Tensor) or not out.requires_grad:
            raise RuntimeError(
                f"{op}: element {i} of {noun} does not require grad and does not have a grad_fn (no graph was recorded)"
            )
        backend = backend_of(out._array, op=op)
        if g is None:
            if out.numel() != 1:
                raise RuntimeError(
                    f"{op}: {name}[{i}] may be None only for a one-element tensor, got shape {out.shape}"
                )
            g = backend.full(out.shape, 1, out.dtype)
        else:
            recorded = g if graph and isinstance(g, Tensor) and g.requires_grad else None
            g = on_device_of(out, g, op)
            if g.shape != out.shape:
                raise ValueError(f"{op}: {name}[{i}] has shape {g.shape} but {noun}[{i}] has shape {out.shape}")
            g = g.astype(out.dtype, copy=False)
            if recorded is not None:
                g = recorded if recorded.dtype == out.dtype else recorded.to(out.dtype)
        roots.append((out, g))
    return roots


def queue_callback(callback) -> None:
    """Runs ``callback()`` once the backward pass now running has finished (PyTorch's
    ``Variable._execution_engine.queue_callback``); only callable during a backward pass (from a hook)."""
    callbacks = getattr(_state, "callbacks", None)
    if callbacks is None:
        raise RuntimeError("queue_callback: no backward pass is running; call it from a hook during backward()")
    if not callable(callback):
        raise TypeError(f"queue_callback: callback must be callable, got {type(callback).__name__}")
    callbacks.append(callback)


def _run_post_hooks(leaf) -> None:
    """Calls the post-accumulate-grad hooks of ``leaf`` (see Tensor.register_post_accumulate_grad_hook)."""
    for hook in list(leaf._post_hooks.values()):
        returned = hook(leaf)
        if returned is not None:
            raise TypeError(
                f"post accumulate grad hook {hook!r} must return None, it returned {type(returned).__name__}"
            )


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=None):
    """d sum(grad_outputs * outputs) / d input for each of ``inputs`` (Tensors that require grad), as a
    tuple, without changing any ``.grad``. ``grad_outputs`` may be None for one-element outputs;
    ``retain_graph`` defaults to False; an input the outputs do not depend on is an error unless
    ``allow_unused`` (then its gradient is None). With ``create_graph`` the gradients are Tensors with
    their own graph, differentiable in turn (see the module docstring)."""
    Tensor = _tensor_class()
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"grad: inputs[{i}] does not require grad (every input must be a Tensor that does)")
    roots = _roots("grad", outputs, grad_outputs, "outputs", "grad_outputs", graph=create_graph)
    leaves = {id(t): None for t in inputs if t._node is None}
    wanted = {(id(t._node), t._output_index): None for t in inputs if t._node is not None}

    def to_leaf(leaf, g):
        if id(leaf) in leaves:
            leaves[id(leaf)] = g if leaves[id(leaf)] is None else leaves[id(leaf)] + g

    if create_graph:
        _graph_engine(roots, to_leaf, wanted=wanted, only_leaves=leaves)
    else:
        _engine(roots, bool(retain_graph), to_leaf, wanted=wanted, only_leaves=leaves)
    result = []
    for i, t in enumerate(inputs):
        g = leaves[id(t)] if t._node is None else wanted[(id(t._node), t._output_index)]
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: inputs[{i}] (shape {t.shape}) appears not to have been used in the graph; "
                "pass allow_unused=True to get None for it"
            )
        result.append(g if g is None or isinstance(g, Tensor) else Tensor._wrap(g))
    return tuple(result)


def _engine(roots, retain_graph: bool, to_leaf, leaf_done=None, wanted=None, only_leaves=None) -> None:
    """Runs the backward pass from ``roots`` (pairs of a Tensor and its gradient array): each leaf
    that requires grad gets its gradient through ``to_leaf(leaf, g)`` (after its hooks, once, summed
    over its uses when it has hooks), and ``wanted`` (a dict keyed by (id(node), output index),
    optional) gets the gradients of those outputs. With ``leaf_done`` (optional), a leaf with
    post-accumulate-grad hooks gets its gradient (one ``to_leaf`` call) as soon as no node left to
    run reads it, and then ``leaf_done(leaf)``. With ``only_leaves`` (ids of leaves; autograd.grad's
    inputs), only the nodes on a path to those leaves or to a ``wanted`` output run (the rest of the
    graph is neither run nor freed, and other leaves' hooks are not called), as PyTorch's."""
    pending, nodes, held = {}, [], {}  # held: leaves whose gradient waits until it is complete

    def to_input(inp, g):
        if type(inp) is not tuple:  # a leaf
            if only_leaves is not None and id(inp) not in only_leaves:
                return
            if getattr(inp, "_hooks", None) or (leaf_done is not None and inp._post_hooks):
                held[id(inp)] = (inp, g if id(inp) not in held else held[id(inp)][1] + g)
            else:
                to_leaf(inp, g)
            return
        source, index, _ = inp
        slots = pending.setdefault(id(source), [None] * len(source.output_meta))
        prev = slots[index]
        slots[index] = g if prev is None else prev + g

    for root, gradient in roots:
        node = root._node
        if node is None:
            to_input(root, gradient)
            continue
        node.check_view_current()
        nodes.append(node)
        to_input((node, root._output_index, root.shape), gradient)

    def finish(leaves):  # leaves that no node left to run reads: their gradient is complete
        for leaf in leaves:
            entry = held.pop(id(leaf), None)
            if entry is not None:
                to_leaf(leaf, run_hooks(leaf._hooks, entry[1]))
                if leaf_done is not None and leaf._post_hooks:
                    leaf_done(leaf)

    # The backward functions record nothing (one switch for the whole pass), and inf/NaN arising in
    # them (a derivative at a pole, inf - inf when gradients meet) raise no NumPy warning, as in PyTorch.
    with no_grad(), np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if nodes:
            _run_backward(nodes, pending, retain_graph, to_input, wanted, finish if leaf_done else None, only_leaves)
        finish([leaf for leaf, _ in list(held.values())])


def _last_readers(order) -> list:
    """For each node of ``order``, the leaves with post-accumulate-grad hooks that it is the last to read."""
    last = {}
    for i, node in enumerate(order):
        for inp in node.inputs:
            if inp is not None and type(inp) is not tuple and inp._post_hooks:
                last[id(inp)] = (i, inp)
    by_node = [[] for _ in order]
    for i, leaf in last.values():
        by_node[i].append(leaf)
    return by_node


def _run_backward(roots, pending: dict, retain_graph: bool, to_input, wanted, finish=None, only_leaves=None) -> None:
    order = _topological_order(roots)
    done_after = _last_readers(order) if finish is not None else None
    leads = None if only_leaves is None else _leading(order, only_leaves, wanted)
    for step, node in enumerate(order):
        grads = pending.pop(id(node), None)
        if grads is not None:
            if leads is None or leads[id(node)]:
                _run_node(node, grads, retain_graph, to_input, wanted)
            elif wanted:
                _output_grads(node, grads, wanted)
        if done_after is not None and done_after[step]:
            finish(done_after[step])


def _leading(order, leaves, wanted) -> dict:
    """For each node of ``order`` (a topological order), whether running its backward reaches one of
    ``leaves`` (ids) or a ``wanted`` output (keys (id(node), index)) further down."""
    leads = {}
    for node in reversed(order):  # every node after those it reads from
        leads[id(node)] = any(
            (id(inp[0]), inp[1]) in wanted or leads[id(inp[0])] if type(inp) is tuple else id(inp) in leaves
            for inp in node.inputs
            if inp is not None
        )
    return leads


def _output_grads(node, grads, wanted) -> list:
    """``grads`` (one per output of ``node``) after the outputs' hooks; ``wanted`` gets those it asks for."""
    if node.hooks:
        grads = [g if g is None else run_hooks(node.hooks.get(i), g) for i, g in enumerate(grads)]
    if wanted:
        for i, g in enumerate(grads):
            if (id(node), i) in wanted:
                wanted[(id(node), i)] = g
    return grads


def _run_node(node, grads, retain_graph: bool, to_input, wanted) -> None:
    """Runs one node's backward on ``grads`` (one per output, None where none arrived) and passes
    the gradients of its inputs on through ``to_input``."""
    grads = _output_grads(node, grads, wanted)
    if any(g is None for g in grads):  # outputs that got no gradient: zeros, on the device of those that did
        backend = backend_of(*grads, op=node.name())
        grads = [backend.zeros(shape, dtype) if g is None else g for g, (shape, dtype) in zip(grads, node.output_meta)]
    if node.ctx._released:
        _ = node.ctx.saved_tensors  # raises: this part of the graph was already freed
    in_grads = node.function.backward(node.ctx, *grads)
    if not isinstance(in_grads, tuple):
        in_grads = (in_grads,)
    # Trailing arguments that are not Tensors needing grad may be left out; gradients past the inputs
    # must be None (PyTorch's rule).
    if len(in_grads) < len(node.inputs) and any(i is not None for i in node.inputs[len(in_grads) :]):
        raise RuntimeError(f"{node.name()} returned {len(in_grads)} gradients for {len(node.inputs)} inputs")
    if any(g is not None for g in in_grads[len(node.inputs) :]):
        expected = len(node.inputs)
        raise RuntimeError(
            f"{node.name()} returned an incorrect number of gradients (expected {expected}, got {len(in_grads)})"
        )
    if _ANOMALY[1]:
        for i, g in enumerate(in_grads):
            if g is not None and bool(np.isnan(g).any()):
                raise RuntimeError(f"Function '{node.name()}' returned nan values in its {i}th output.")
    if not retain_graph:
        node.ctx.release()
    for inp, g in zip(node.inputs, in_grads):
        if inp is None or g is None:
            continue
        if not isinstance(g, _NDARRAY):
            g = as_array(g)
        shape, dtype = (inp[2], inp[0].output_meta[inp[1]][1]) if type(inp) is tuple else (inp.shape, inp.dtype)
        if g.shape != shape:
            raise RuntimeError(f"{node.name()} returned a gradient of shape {g.shape} for an input of {shape}")
        if g.dtype != dtype:  # an input's gradient in its own dtype, as PyTorch's engine casts it
            g = g.astype(dtype)
        to_input(inp, g)


# -- debugging and checking tools ----------------------------------------------------------------

_ANOMALY = [False, False]  # anomaly detection on; with it, NaN gradients raise (check_nan)


def is_anomaly_enabled() -> bool:
    return _ANOMALY[0]


class set_detect_anomaly:
    """Anomaly detection on or off (for the process, as PyTorch's), as a call or a context manager:
    while on (with ``check_nan``), a backward function that returns a gradient holding NaN raises
    a RuntimeError naming it. (PyTorch also prints the forward call that made the node; deepkern does
    not record forward tracebacks.)"""

    def __init__(self, mode: bool, check_nan: bool = True):
        self.previous = tuple(_ANOMALY)
        _ANOMALY[:] = [bool(mode), bool(mode) and bool(check_nan)]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        _ANOMALY[:] = list(self.previous)


class detect_anomaly(set_detect_anomaly):
    """``set_detect_anomaly(True)`` inside a ``with`` block (or a decorated function) only."""

    def __init__(self, check_nan: bool = True):
        self.check_nan = check_nan

    def __enter__(self):
        super().__init__(True, self.check_nan)
        return self

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)

        return wrapped


def Variable(data, requires_grad: bool = False, volatile: bool = False):  # noqa: N802 (PyTorch's name)
    """PyTorch's legacy wrapper: a tensor is its own Variable. ``Variable(t)`` is a new leaf sharing
    ``t``'s memory (``t.detach()``) that requires grad when asked; other data becomes a tensor."""
    Tensor = _tensor_class()
    if not isinstance(data, Tensor):
        from .tensor import tensor

        return tensor(data, requires_grad=requires_grad)
    return data.detach().requires_grad_(requires_grad)


class GradcheckError(RuntimeError):
    """A gradcheck mismatch (PyTorch's torch.autograd.GradcheckError)."""


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, **options) -> bool:
    """Whether the gradients autograd computes for ``func(*inputs)`` match central differences: for
    each input that requires grad and each output, every element of the Jacobian, within
    ``atol + rtol * |numerical|``. Inputs should be float64 (a warning otherwise, as PyTorch).
    A mismatch raises GradcheckError naming the output, the input and the largest difference
    (or returns False with ``raise_exception=False``). PyTorch's other options are accepted; only the
    backward-mode check they default to is made."""
    import warnings

    Tensor = _tensor_class()
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: expected at least one input tensor to require gradient")
    if any(inputs[i].dtype != np.float64 for i in checked):
        warnings.warn(
            "gradcheck: an input that requires grad is not float64; the check is likely to fail",
            UserWarning,
            stacklevel=2,
        )

    def outputs():
        out = func(*inputs)
        return [out] if isinstance(out, Tensor) else [o for o in out if isinstance(o, Tensor)]

    def failed(message: str) -> bool:
        if raise_exception:
            raise GradcheckError(message)
        return False

    for k, out in enumerate(outputs()):
        if not out.requires_grad:
            continue
        flat = out.reshape(-1)
        analytic = {i: np.zeros((flat.shape[0], inputs[i].numel())) for i in checked}
        for row in range(flat.shape[0]):
            seed = np.zeros(flat.shape[0], dtype=out.dtype)
            seed[row] = 1
            grads = grad(
                flat,
                [inputs[i] for i in checked],
                grad_outputs=Tensor._wrap(seed),
                retain_graph=True,
                allow_unused=True,
            )
            for i, g in zip(checked, grads):
                if g is not None:
                    analytic[i][row] = g.numpy().reshape(-1)
        for i in checked:
            values = inputs[i].detach().numpy().reshape(-1)  # the input's own memory: perturbed in place
            numerical = np.zeros_like(analytic[i])
            for j in range(values.size):
                original = values[j]
                estimates = []
                for step in (eps, -eps):
                    values[j] = original + step
                    with no_grad():
                        estimates.append(outputs()[k].numpy().astype(np.float64).reshape(-1))
                values[j] = original
                numerical[:, j] = (estimates[0] - estimates[1]) / (2 * eps)
            difference = np.abs(analytic[i] - numerical)
            if np.any(difference > atol + rtol * np.abs(numerical)) or np.any(
                np.isnan(difference) != np.isnan(numerical)
            ):
                worst = np.unravel_index(np.nanargmax(difference), difference.shape) if difference.size else (0, 0)
                return failed(
                    f"gradcheck: Jacobian mismatch for output {k} with respect to input {i}: at (output element "
                    f"{worst[0]}, input element {worst[1]}) numerical {numerical[worst]:.6g}, analytical "
                    f"{analytic[i][worst]:.6g} (atol {atol}, rtol {rtol})"
                )
    return True
