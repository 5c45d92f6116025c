"""``deepkern.utils.checkpoint``: PyTorch's ``torch.utils.checkpoint`` (activation checkpointing).

``checkpoint(function, *args)`` keeps none of ``function``'s intermediate values for the backward pass: the
backward runs ``function`` again, recording (with the random state of the forward restored, so dropout
draws the same masks, and the forward's autocast state), and backpropagates through that; the gradients
equal those of the plain call bit for bit. As in PyTorch, modules with running statistics (batch norm in
training mode) update them in both runs.

``use_reentrant=True`` (PyTorch's default when it is not passed, with its warning) runs the forward without
recording and, in the backward, a backward pass of its own that accumulates into the ``.grad`` of the
parameters the function reads; gradients reach only tensor arguments that require grad and those
parameters, and ``deepkern.autograd.grad`` through it raises, as in PyTorch.

``use_reentrant=False`` also takes keyword arguments and works with ``autograd.grad``: its forward records
on detached arguments to find the leaves (parameters) the outputs depend on and drops that graph when it
returns; the recorded Function takes those leaves as inputs. A non-leaf tensor that the function reads
through a closure (not an argument) is differentiated through its own history inside the checkpoint's
backward. With create_graph=True its backward recomputes the function on the arguments as they are in the
graph and differentiates that, so gradient penalties and Hessian-vector products run through it.
"""

from __future__ import annotations

import contextlib
import warnings

from .. import amp, autograd, random
from ..autograd import Function
from ..tensor import Tensor

__all__ = ["checkpoint", "checkpoint_sequential", "CheckpointError"]

#: PyTorch's warnings when use_reentrant is not passed (the first words differ between the two functions).
_USE_REENTRANT_WARNING = (
    "use_reentrant=False is recommended, but if you need to preserve the current default behavior, you can pass "
    "use_reentrant=True. Refer to docs for more details on the differences between the two variants."
)


class CheckpointError(RuntimeError):
    """The recomputation did not reproduce the forward (PyTorch's torch.utils.checkpoint.CheckpointError)."""


def _noop_context_fn():
    return contextlib.nullcontext(), contextlib.nullcontext()


def _flatten(obj, tensors: list):
    """``obj`` with each Tensor inside tuples, lists and dicts replaced by its index in ``tensors`` (appended)."""
    if isinstance(obj, Tensor):
        tensors.append(obj)
        return _Slot(len(tensors) - 1)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_flatten(o, tensors) for o in obj)
    if isinstance(obj, dict):
        return {k: _flatten(v, tensors) for k, v in obj.items()}
    return obj


def _rebuild(template, tensors):
    """:func:`_flatten`'s inverse, with ``tensors`` in the slots."""
    if isinstance(template, _Slot):
        return tensors[template.index]
    if isinstance(template, (tuple, list)):
        return type(template)(_rebuild(o, tensors) for o in template)
    if isinstance(template, dict):
        return {k: _rebuild(v, tensors) for k, v in template.items()}
    return template


class _Slot:
    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


class _Run:
    """One checkpointed call: the function, its arguments and the state it ran in, and its recomputation."""

    def __init__(self, function, args, kwargs, preserve_rng_state: bool, recompute_context):
        self.function, self.args, self.kwargs = function, args, kwargs
        self.rng_state = random.get_rng_state() if preserve_rng_state else None
        self.autocast = {d: amp.get_autocast_dtype(d) for d in ("cpu", "cuda") if amp.is_autocast_enabled(d)}
        self.recompute_context = recompute_context
        self.template = None  # the output with its tensors as slots (see _flatten)
        self.tensor_positions = _tensor_args(args)
        self.leaves = []  # use_reentrant=False: the leaves (that require grad) the outputs depend on
        self.forward_outputs = None  # (array, differentiable) per tensor output, until recorded
        self.output_meta = None  # (shape, dtype) of each tensor output, for the determinism check

    def call(self, args):
        """``function(*args, **kwargs)`` (``args``: this run's, with its tensors replaced)."""
        return self.function(*args, **self.kwargs)

    def recompute(self, args):
        """The function run again on ``args`` with recording, in the forward's random and autocast state
        (this thread's random state is put back afterwards)."""
        outer = random.get_rng_state() if self.rng_state is not None else None
        try:
            if outer is not None:
                random.set_rng_state(self.rng_state)
            with contextlib.ExitStack() as stack:
                stack.enter_context(autograd.enable_grad())
                for device, dtype in self.autocast.items():
                    stack.enter_context(amp.autocast(device, dtype))
                stack.enter_context(self.recompute_context)
                return self.call(args)
        finally:
            if outer is not None:
                random.set_rng_state(outer)


def _tensor_args(args) -> list:
    return [i for i, a in enumerate(args) if isinstance(a, Tensor)]


def _detached(args):
    """``args`` with each Tensor detached (requiring grad where it did), as the recomputation takes them."""
    return tuple(a.detach().requires_grad_(a.requires_grad) if isinstance(a, Tensor) else a for a in args)


class _Reentrant(Function):
    """PyTorch's CheckpointFunction: forward without recording; backward recomputes and runs a backward
    pass of its own."""

    @staticmethod
    def forward(ctx, run, *arrays):
        ctx.run = run
        ctx.save_for_backward(*arrays)
        with autograd.no_grad():
            outputs = run.call(run.args)
        tensors = []
        run.template = _flatten(outputs, tensors)
        return tuple(t._array for t in tensors)

    @staticmethod
    def backward(ctx, *grads):
        if getattr(autograd._state, "callbacks", None) is None:  # not inside backward(): grad()
            raise RuntimeError(
                "When use_reentrant=True, torch.utils.checkpoint is incompatible with .grad() or passing an "
                "`inputs` parameter to .backward(). To resolve this error, you can either set use_reentrant=False, "
                "or call .backward() without passing the `inputs` argument."
            )
        run = ctx.run
        args = list(run.args)
        for i, array in zip(run.tensor_positions, ctx.saved_tensors):
            args[i] = Tensor._wrap(array).requires_grad_(run.args[i].requires_grad)
        outputs = []
        _flatten(run.recompute(args), outputs)
        pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad]
        if not pairs:
            raise RuntimeError("none of output has requires_grad=True, this checkpoint() is not necessary")
        autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None,) + tuple(None if args[i].grad is None else args[i].grad._array for i in run.tensor_positions)


class _NonReentrant(Function):
    """The recorded checkpoint of use_reentrant=False: its inputs are the tensor arguments, then the leaves
    the outputs depend on (``run.leaves``); its outputs were computed before (``run.forward_outputs``)."""

    @staticmethod
    def forward(ctx, run, *arrays):
        ctx.run = run
        ctx.save_for_backward(*arrays)
        ctx.mark_non_differentiable(*(a for a, differentiable in run.forward_outputs if not differentiable))
        return tuple(a for a, _ in run.forward_outputs)

    @staticmethod
    def backward(ctx, *grads):
        count = len(ctx.run.tensor_positions)
        arrays, needs = ctx.saved_tensors[:count], ctx.needs_input_grad[1 : 1 + count]
        arguments = [Tensor._wrap(a).requires_grad_(n) for a, n in zip(arrays, needs)]
        return _recomputed_gradients(ctx, arguments, grads, graph=False)

    @staticmethod
    def backward_graph(ctx, io, *grads):
        """The function recomputed on the arguments as Tensors of the graph (each through a _Boundary)
        and differentiated with create_graph, the incoming gradients as graph Tensors."""
        count = len(ctx.run.tensor_positions)
        arguments = [_Boundary.apply(io.input(1 + i, a)) for i, a in enumerate(ctx.saved_tensors[:count])]
        try:
            return _recomputed_gradients(ctx, arguments, grads, graph=True)
        finally:
            for t in arguments:
                t._node.ctx.closed = False


def _recomputed_gradients(ctx, arguments, grads, graph: bool) -> tuple:
    """_NonReentrant's gradients: the function recomputed on ``arguments`` (its tensor arguments as the
    recomputation takes them), its outputs' gradients ``grads`` taken back to the arguments and to the
    leaves it reads; arrays, or Tensors of the graph where ``graph`` (create_graph=True)."""
    run = ctx.run
    args = list(run.args)
    for position, tensor in zip(run.tensor_positions, arguments):
        args[position] = tensor
    outputs = []
    _flatten(run.recompute(args), outputs)
    _check_recomputed(run, outputs)
    inputs = list(arguments) + run.leaves  # the leaves: the recomputation reads them itself
    wanted = [i for i, (t, n) in enumerate(zip(inputs, ctx.needs_input_grad[1:])) if n and t.requires_grad]
    pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad]
    result = [None] * len(inputs)
    if pairs and wanted:
        found = autograd.grad(
            [o for o, _ in pairs],
            [inputs[i] for i in wanted],
            [g for _, g in pairs],
            retain_graph=True,  # a closure's non-leaf tensor: its history is the caller's, kept
            create_graph=graph,
            allow_unused=True,
        )
        for i, g in zip(wanted, found):
            result[i] = g if graph or g is None else g._array
    return (None,) + tuple(result)


class _Boundary(Function):
    """An identity at a checkpoint's argument in its create_graph recomputation: the inner pass of the
    backward_graph that made it stops here (the argument's gradient is taken here, and a leaf that the
    function also reads is reached only through the recomputation, not again through the graph before
    the checkpoint); once that backward_graph has returned, every pass goes through it."""

    @staticmethod
    def forward(ctx, a):
        ctx.closed = True
        return a.reshape(a.shape)

    @staticmethod
    def backward(ctx, g):
        return g

    @staticmethod
    def backward_graph(ctx, io, g):
        return None if ctx.closed else g


def _check_recomputed(run, outputs) -> None:
    """PyTorch's determinism check: the recomputed outputs match the forward's in shape and dtype."""
    if run.output_meta is None:
        return
    meta = [(tuple(o.shape), o.dtype) for o in outputs]
    if meta != run.output_meta:
        lines = [
            f"tensor at position {i}:\nsaved metadata: {{'shape': {s}, 'dtype': {d}}}\n"
            f"recomputed metadata: {{'shape': {rs}, 'dtype': {rd}}}"
            for i, ((s, d), (rs, rd)) in enumerate(zip(run.output_meta, meta))
            if (s, d) != (rs, rd)
        ]
        if len(meta) != len(run.output_meta):
            lines.append(f"{len(run.output_meta)} tensors were saved and {len(meta)} recomputed")
        raise CheckpointError(
            "torch.utils.checkpoint: Recomputed values for the following tensors have different metadata than "
            "during the forward pass.\n" + "\n".join(lines)
        )


def _leaves(outputs, own) -> list:
    """The leaves that require grad (other than ``own``, the detached arguments) that the outputs' graph reads."""
    seen, leaves, stack = set(), {}, [o._node for o in outputs if o._node is not None]
    own = {id(t) for t in own}
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for inp in node.inputs:
            if type(inp) is tuple:
                stack.append(inp[0])
            elif inp is not None and id(inp) not in own:
                leaves[id(inp)] = inp
    leaves.update({id(o): o for o in outputs if o._node is None and o.requires_grad and id(o) not in own})
    return list(leaves.values())


def _checkpoint_without_reentrant(function, preserve: bool, context_fn, determinism_check: str, args, kwargs):
    forward_context, recompute_context = context_fn()
    run = _Run(function, args, kwargs, preserve, recompute_context)
    if not autograd.is_grad_enabled():
        with forward_context:
            return run.call(args)
    detached = _detached(args)
    with forward_context:
        result = run.call(detached)
    outputs = []
    template = _flatten(result, outputs)
    if not outputs:
        return result
    run.leaves = _leaves(outputs, [detached[i] for i in run.tensor_positions])
    run.forward_outputs = [(o._array, o.requires_grad) for o in outputs]
    if determinism_check != "none":
        run.output_meta = [(tuple(o.shape), o.dtype) for o in outputs]
    del result, outputs, detached  # the forward's graph goes with them
    recorded = _NonReentrant.apply(run, *(args[i] for i in run.tensor_positions), *run.leaves)
    run.forward_outputs = None
    return _rebuild(template, recorded if isinstance(recorded, tuple) else (recorded,))


def checkpoint(
    function,
    *args,
    use_reentrant=None,
    context_fn=_noop_context_fn,
    determinism_check="default",
    debug=False,
    early_stop=True,
    **kwargs,
):
    """``function(*args, **kwargs)`` without keeping its intermediate values: the backward pass recomputes
    them (see the module's documentation). ``preserve_rng_state`` (default True) restores the random state
    for the recomputation. ``use_reentrant`` should be given (a UserWarning otherwise, and True, as in
    PyTorch); keyword arguments for ``function``, ``context_fn`` and ``debug`` need use_reentrant=False.
    ``determinism_check="none"`` skips the check that the recomputation gives outputs of the same shapes
    and dtypes (CheckpointError otherwise); ``debug`` and ``early_stop`` are accepted."""
    if use_reentrant is None:
        warnings.warn(
            "torch.utils.checkpoint: the use_reentrant parameter should be passed explicitly. Starting in PyTorch "
            "2.9, calling checkpoint without use_reentrant will raise an exception. " + _USE_REENTRANT_WARNING,
            UserWarning,
            stacklevel=2,
        )
        use_reentrant = True
    preserve = kwargs.pop("preserve_rng_state", True)
    if kwargs and use_reentrant:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    if not use_reentrant:
        return _checkpoint_without_reentrant(function, preserve, context_fn, determinism_check, args, kwargs)
    if context_fn is not _noop_context_fn or debug is not False:
        raise ValueError("Passing `context_fn` or `debug` is only supported when use_reentrant=False.")
    if not any(isinstance(a, Tensor) and a.requires_grad for a in args):
        warnings.warn("None of the inputs have requires_grad=True. Gradients will be None", UserWarning, stacklevel=2)
    run = _Run(function, args, {}, preserve, contextlib.nullcontext())
    outputs = _Reentrant.apply(run, *(args[i] for i in run.tensor_positions))
    return _rebuild(run.template, outputs if isinstance(outputs, tuple) else (outputs,))


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """Runs ``functions`` (an nn.Sequential or a list of modules or functions of one tensor) on ``input``
    in ``segments`` pieces, checkpointing all but the last (PyTorch's split: ``len // segments`` functions
    each, the rest in the last)."""
    if use_reentrant is None:
        warnings.warn(
            "torch.utils.checkpoint.checkpoint_sequential: the use_reentrant parameter should be passed explicitly. "
            "In version 2.9 we will raise an exception if use_reentrant is not passed. " + _USE_REENTRANT_WARNING,
            UserWarning,
            stacklevel=2,
        )
        use_reentrant = True
    preserve = kwargs.pop("preserve_rng_state", True)
    if kwargs:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    from ..nn import Sequential  # (deepkern.nn is imported after this package's parent)

    if isinstance(functions, Sequential):
        functions = list(functions.children())

    def run_segment(start, end):
        def forward(x):
            for j in range(start, end + 1):
                x = functions[j](x)
            return x

        return forward

    size = len(functions) // segments
    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run_segment(start, end), input, use_reentrant=use_reentrant, preserve_rng_state=preserve)
    return run_segment(end + 1, len(functions) - 1)(input)
