"""``deepkern.autograd.functional``: PyTorch's ``torch.autograd.functional`` (vjp, jvp, jacobian, hessian,
vhp, hvp), with its arguments, result structure (a Tensor or tuples of Tensors as the function's inputs
and outputs are) and errors.

Built on :func:`deepkern.autograd.grad`; the products with the Jacobian's columns (jvp, hvp, forward-mode
jacobian) use PyTorch's double-backward trick: J v is the gradient of <J^T u, v> with respect to u. As
deepkern's ``grad`` takes its ``grad_outputs`` as constants, a vector that must stay in the graph (u, or a
``v`` that requires grad under ``create_graph``) enters as the differentiable inner product sum(out * u)
instead. ``vectorize=True`` is accepted and computes the same results by the loop (deepkern has no vmap).
"""

from __future__ import annotations

from . import autograd
from .tensor import Tensor, eye, stack, zeros_like

__all__ = ["vjp", "jvp", "jacobian", "hessian", "vhp", "hvp"]

_STRATEGIES = ("forward-mode", "reverse-mode")


def _as_tuple(value, arg_name: str, fn_name: str):
    """``(is_tuple, tuple of Tensors)``; PyTorch's TypeError for anything else."""
    is_tuple = isinstance(value, tuple)
    values = value if is_tuple else (value,)
    for i, v in enumerate(values):
        if not isinstance(v, Tensor):
            where = f"the value at index {i}" if is_tuple else f"the given {arg_name}"
            raise TypeError(
                f"The {arg_name} given to {fn_name} must be either a Tensor or a tuple of Tensors but {where} has "
                f"type {type(v)}."
            )
    return is_tuple, values


def _unpack(result, is_outer_tuple: bool, is_inner_tuple=None):
    """A tuple of results as the caller's structure: its first element where it was not a tuple (and
    likewise inside, with ``is_inner_tuple``)."""
    if is_inner_tuple is not None and not is_inner_tuple:
        result = tuple(r[0] for r in result)
    return result if is_outer_tuple else result[0]


def _prepare(tensors, create_graph: bool, need_graph: bool) -> tuple:
    """The tensors the function is called on: with ``create_graph`` a tensor that requires grad stays in its
    graph (as a view); otherwise a detached one (requiring grad when ``need_graph``)."""
    return tuple(
        t.view_as(t) if create_graph and t.requires_grad else t.detach().requires_grad_(need_graph) for t in tensors
    )


def _finish(tensors, create_graph: bool):
    """The results (nested tuples of Tensors), detached unless ``create_graph``."""
    if isinstance(tensors, Tensor):
        return tensors if create_graph else tensors.detach()
    return tuple(_finish(t, create_graph) for t in tensors)


def _validate_v(v, other, is_other_tuple: bool) -> None:
    if len(other) != len(v):
        if is_other_tuple:
            raise RuntimeError(f"v is a tuple of invalid length: should be {len(other)} but got {len(v)}.")
        raise RuntimeError("The given v should contain a single Tensor.")
    for i, (el_v, el_other) in enumerate(zip(v, other)):
        if el_v.shape != el_other.shape:
            prefix = f"Entry {i} in " if is_other_tuple else ""
            raise RuntimeError(f"{prefix}v has invalid size: should be {el_other.shape} but got {el_v.shape}.")


_GRAD_INDEPENDENT = {
    "jacobian": (
        "While computing the hessian, found that the jacobian of the user-provided function with respect to input "
        "{i} is independent of the input. This is not allowed in strict mode. You should ensure that your function "
        "is twice differentiable and that the jacobian depends on the inputs (this would be violated by a linear "
        "function for example)."
    ),
    "grad_inputs": (
        "The gradient with respect to input {i} is independent of the inputs of the user-provided function. This "
        "is not allowed in strict mode."
    ),
    "outputs": (
        "Output {i} of the user-provided function does not require gradients. The outputs must be computed in a "
        "differentiable manner from the input when running in strict mode."
    ),
}


def _check_requires_grad(tensors, kind: str, strict: bool) -> None:
    """In strict mode, PyTorch's RuntimeError for a missing gradient or one outside the graph (``kind``:
    which tensors these are)."""
    if not strict:
        return
    for i, t in enumerate(tensors):
        if t is None:
            raise RuntimeError(
                f"The output of the user-provided function is independent of input {i}. This is not allowed in "
                "strict mode."
            )
        if not t.requires_grad:
            raise RuntimeError(_GRAD_INDEPENDENT[kind].format(i=i))


def _grad(outputs, inputs, vs=None, create_graph: bool = False, retain_graph=None) -> tuple:
    """d sum_i <outputs_i, vs_i> / d inputs over the outputs that require grad (None per input where none
    does or the input is unused; ``vs`` None: ones for one-element outputs). A ``v`` that requires grad,
    with ``create_graph``, stays in the graph."""
    vs = (None,) * len(outputs) if vs is None else vs
    pairs = [(o, v) for o, v in zip(outputs, vs) if o is not None and o.requires_grad]
    if not pairs:
        return (None,) * len(inputs)
    options = {"allow_unused": True, "create_graph": create_graph, "retain_graph": retain_graph}
    if create_graph and any(v is not None and v.requires_grad for _, v in pairs):
        total = sum((o * v).sum() for o, v in pairs)
        return autograd.grad(total, inputs, **options)
    return autograd.grad([o for o, _ in pairs], inputs, [v for _, v in pairs], **options)


_ZERO_MESSAGES = {
    "back": "The output of the user-provided function is independent of input {i}. This is not allowed in strict mode.",
    "back_trick": (
        "The gradient with respect to the input is independent of entry {i} in the grad_outputs when using the "
        "double backward trick to compute forward mode gradients. This is not allowed in strict mode."
    ),
    "double_back": (
        "The jacobian of the user-provided function is independent of input {i}. This is not allowed in strict mode."
    ),
    "double_back_trick": (
        "The hessian of the user-provided function is independent of entry {i} in the grad_jacobian. This is not "
        "allowed in strict mode as it prevents from using the double backward trick to replace forward mode AD."
    ),
}


def _fill_in_zeros(grads, refs, strict: bool, create_graph: bool, stage: str) -> tuple:
    """``grads`` with zeros (of the matching ``refs``) for None; in strict mode PyTorch's errors instead, and
    for a gradient outside the graph under ``create_graph``."""
    filled = []
    for i, g in enumerate(grads):
        if g is None:
            if strict:
                raise RuntimeError(_ZERO_MESSAGES[stage].format(i=i))
            g = zeros_like(refs[i])
        elif strict and create_graph and not g.requires_grad:
            what = "hessian" if "double" in stage else "jacobian"
            raise RuntimeError(
                f"The {what} of the user-provided function is independent of input {i}. This is not allowed in "
                "strict mode when create_graph=True."
            )
        filled.append(g)
    return tuple(filled)


def _call(func, inputs, fn_name: str, strict: bool):
    """``func(*inputs)`` as ``(is_tuple, outputs)``, checked as PyTorch checks it."""
    is_tuple, outputs = _as_tuple(func(*inputs), "outputs of the user-provided function", fn_name)
    _check_requires_grad(outputs, "outputs", strict)
    return is_tuple, outputs


def _vector(v, refs, is_refs_tuple: bool, fn_name: str, create_graph: bool, none_message: str):
    """``v`` as a tuple matching ``refs`` (None only where ``refs`` is one single-element tensor: then None)."""
    if v is None:
        if len(refs) != 1 or refs[0].numel() != 1:
            raise RuntimeError(none_message)
        return None
    _, v = _as_tuple(v, "v", fn_name)
    v = _prepare(v, create_graph, need_graph=False)
    _validate_v(v, refs, is_refs_tuple)
    return v


_V_FOR_INPUT = (
    "The vector v can only be None if the input to the user-provided function is a single Tensor with a single element."
)


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(*inputs), v^T J)``: the vector-Jacobian product, one entry per input (``v``: one per output;
    optional for a single one-element output)."""
    with autograd.enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "vjp")
        inputs = _prepare(inputs, create_graph, need_graph=True)
        is_outputs_tuple, outputs = _call(func, inputs, "vjp", strict)
        v = _vector(
            v,
            outputs,
            is_outputs_tuple,
            "vjp",
            create_graph,
            "The vector v can only be None if the user-provided function returns a single Tensor with a single "
            "element.",
        )
    with autograd.set_grad_enabled(create_graph or autograd.is_grad_enabled()):
        result = _fill_in_zeros(_grad(outputs, inputs, v, create_graph), inputs, strict, create_graph, "back")
    return (
        _unpack(_finish(outputs, create_graph), is_outputs_tuple),
        _unpack(_finish(result, create_graph), is_inputs_tuple),
    )


def _double_backward(outputs, refs, inputs, v, create_graph: bool, strict: bool, stage: str):
    """J v (one entry per output; ``refs``: tensors of the outputs' shapes, which may be None) by the
    double-backward trick: the gradient of <J^T u, v> with respect to u, u zeros that require grad."""
    with autograd.enable_grad():
        u = tuple(zeros_like(r, requires_grad=True) for r in refs)
        grad_inputs = _grad(outputs, inputs, u, create_graph=True)
        if stage == "back_trick":
            _check_requires_grad(grad_inputs, "grad_inputs", strict)
    with autograd.set_grad_enabled(create_graph or autograd.is_grad_enabled()):
        return _fill_in_zeros(_grad(grad_inputs, u, v, create_graph), refs, strict, create_graph, stage)


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(*inputs), J v)``: the Jacobian-vector product, one entry per output (``v``: one per input;
    optional for a single one-element input)."""
    with autograd.enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "jvp")
        inputs = _prepare(inputs, create_graph, need_graph=True)
        v = _vector(v, inputs, is_inputs_tuple, "jvp", create_graph, _V_FOR_INPUT)
        is_outputs_tuple, outputs = _call(func, inputs, "jvp", strict)
    result = _double_backward(outputs, outputs, inputs, v, create_graph, strict, "back_trick")
    return (
        _unpack(_finish(outputs, create_graph), is_outputs_tuple),
        _unpack(_finish(result, create_graph), is_outputs_tuple),
    )


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False, strategy="reverse-mode"):
    """The Jacobian of ``func`` at ``inputs``: for each output and input a Tensor of shape
    ``output.shape + input.shape`` (nested as the outputs and inputs are tuples or not). ``strategy``
    "reverse-mode" builds it row by row from vector-Jacobian products; "forward-mode" (with
    ``vectorize=True``, as in PyTorch) column by column from Jacobian-vector products."""
    if strategy not in _STRATEGIES:
        raise AssertionError(
            'Expected strategy to be either "forward-mode" or "reverse-mode". Hint: If your function has more '
            'outputs than inputs, "forward-mode" tends to be more performant. Otherwise, prefer to use '
            '"reverse-mode".'
        )
    if strategy == "forward-mode":
        if create_graph:
            raise NotImplementedError(
                'torch.autograd.functional.jacobian: `create_graph=True` and `strategy="forward-mode"` are not '
                'supported together (yet). Please either set `create_graph=False` or `strategy="reverse-mode"`.'
            )
        if strict:
            raise RuntimeError(
                'torch.autograd.functional.jacobian: `strict=True` and `strategy="forward-mode"` are not supported '
                'together (yet). Please either set `strict=False` or `strategy="reverse-mode"`.'
            )
        if not vectorize:
            raise NotImplementedError(
                "Computing Jacobian using forward-AD or forward-over-reverse Hessian isonly implemented for "
                "`vectorize=True`."
            )
    with autograd.enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "jacobian")
        inputs = _prepare(inputs, create_graph, need_graph=True)
        is_outputs_tuple, outputs = _call(func, inputs, "jacobian", strict)
        if vectorize and strict:
            raise RuntimeError(
                "torch.autograd.functional.jacobian: `strict=True` and `vectorized=True` are not supported together. "
                "Please either set `strict=False` or `vectorize=False`."
            )
        if strategy == "forward-mode":
            columns = _forward_columns(outputs, inputs)
        else:
            jac = tuple(_reverse_rows(i, out, inputs, create_graph, strict) for i, out in enumerate(outputs))
            columns = None
    if columns is not None:
        jac = tuple(
            tuple(
                stack([col[i] for col in columns[j]], dim=-1).reshape(out.shape + inp.shape)
                if inp.numel()
                else out.new_zeros(out.shape + inp.shape)
                for j, inp in enumerate(inputs)
            )
            for i, out in enumerate(outputs)
        )
    return _unpack(_finish(jac, create_graph), is_outputs_tuple, is_inputs_tuple)


def _reverse_rows(i: int, out, inputs, create_graph: bool, strict: bool) -> tuple:
    """The Jacobian of output ``out`` (number ``i``) with respect to each input, one gradient per element of
    ``out`` (PyTorch's loop and strict-mode errors)."""
    rows = tuple([] for _ in inputs)
    flat = out.reshape(-1)
    for k in range(out.numel()):
        grads = _grad((flat[k],), inputs, retain_graph=True, create_graph=create_graph)
        for j, (g, inp) in enumerate(zip(grads, inputs)):
            if g is None:
                if strict:
                    raise RuntimeError(
                        f"Output {i} of the user-provided function is independent of input {j}. This is not allowed "
                        "in strict mode."
                    )
                g = zeros_like(inp)
            elif strict and create_graph and not g.requires_grad:
                raise RuntimeError(
                    f"The jacobian of the user-provided function is independent of input {i}. This is not allowed "
                    "in strict mode when create_graph=True."
                )
            rows[j].append(g)
    return tuple(
        stack(r, dim=0).reshape(out.shape + inp.shape) if r else inp.new_zeros(out.shape + inp.shape)
        for r, inp in zip(rows, inputs)
    )


def _forward_columns(outputs, inputs) -> list:
    """For each input, the Jacobian-vector products (one tuple over the outputs) with the standard basis
    vectors of that input, in the order of its elements."""
    columns = []
    for j, inp in enumerate(inputs):
        identity = eye(inp.numel(), dtype=inp.dtype, device=inp.device)
        columns.append(
            [
                _double_backward(
                    outputs,
                    outputs,
                    inputs,
                    tuple(identity[k].reshape(inp.shape) if i == j else zeros_like(t) for i, t in enumerate(inputs)),
                    False,
                    False,
                    "back_trick",
                )
                for k in range(inp.numel())
            ]
        )
    return columns


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False, outer_jacobian_strategy="reverse-mode"):
    """The Hessian of ``func`` (returning a one-element Tensor) at ``inputs``: the Jacobian of its gradient,
    a Tensor of shape ``input.shape + input.shape`` per pair of inputs (nested as ``inputs`` is a tuple or not)."""
    is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "hessian")
    if outer_jacobian_strategy not in _STRATEGIES:
        raise AssertionError('Expected strategy to be either "forward-mode" or "reverse-mode".')

    def single_output(*inp):
        out = func(*inp)
        is_out_tuple, t_out = _as_tuple(out, "outputs of the user-provided function", "hessian")
        _check_requires_grad(t_out, "outputs", strict)
        if is_out_tuple or not isinstance(out, Tensor):
            raise RuntimeError("The function given to hessian should return a single Tensor")
        if out.numel() != 1:
            raise RuntimeError("The Tensor returned by the function given to hessian should contain a single element")
        return out.squeeze()

    def jac_func(*inp):
        if outer_jacobian_strategy == "forward-mode":
            inp = tuple(t.requires_grad_(True) for t in inp)
        jac = jacobian(single_output, inp, create_graph=True)
        _check_requires_grad(jac, "jacobian", strict)
        return jac

    res = jacobian(
        jac_func,
        inputs,
        create_graph=create_graph,
        strict=strict,
        vectorize=vectorize,
        strategy=outer_jacobian_strategy,
    )
    return _unpack(res, is_inputs_tuple, is_inputs_tuple)


def _hessian_setup(func, inputs, v, create_graph: bool, strict: bool, fn_name: str):
    """The shared start of vhp and hvp: the prepared inputs and ``v``, the function's single one-element
    output and its gradient (with its graph)."""
    is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", fn_name)
    inputs = _prepare(inputs, create_graph, need_graph=True)
    v = _vector(v, inputs, is_inputs_tuple, fn_name, create_graph, _V_FOR_INPUT)
    is_outputs_tuple, outputs = _call(func, inputs, fn_name, strict)
    if is_outputs_tuple or not isinstance(outputs[0], Tensor):
        raise RuntimeError(f"The function given to {fn_name} should return a single Tensor")
    if outputs[0].numel() != 1:
        raise RuntimeError(f"The Tensor returned by the function given to {fn_name} should contain a single element")
    jac = _grad(outputs, inputs, create_graph=True)
    _check_requires_grad(jac, "jacobian", strict)
    return is_inputs_tuple, inputs, v, is_outputs_tuple, outputs, jac


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(*inputs), v^T H)``: the vector-Hessian product of a function returning a one-element Tensor."""
    with autograd.enable_grad():
        is_inputs_tuple, inputs, v, is_outputs_tuple, outputs, jac = _hessian_setup(
            func, inputs, v, create_graph, strict, "vhp"
        )
    with autograd.set_grad_enabled(create_graph or autograd.is_grad_enabled()):
        result = _fill_in_zeros(_grad(jac, inputs, v, create_graph), inputs, strict, create_graph, "double_back")
    return (
        _unpack(_finish(outputs, create_graph), is_outputs_tuple),
        _unpack(_finish(result, create_graph), is_inputs_tuple),
    )


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(*inputs), H v)``: the Hessian-vector product of a function returning a one-element Tensor, by
    the double-backward trick (equal to vhp for a twice continuously differentiable function)."""
    with autograd.enable_grad():
        is_inputs_tuple, inputs, v, is_outputs_tuple, outputs, jac = _hessian_setup(
            func, inputs, v, create_graph, strict, "hvp"
        )
    result = _double_backward(jac, inputs, inputs, v, create_graph, strict, "double_back_trick")
    return (
        _unpack(_finish(outputs, create_graph), is_outputs_tuple),
        _unpack(_finish(result, create_graph), is_inputs_tuple),
    )
