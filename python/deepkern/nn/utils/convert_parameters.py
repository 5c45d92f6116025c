"""``torch.nn.utils.parameters_to_vector`` and ``vector_to_parameters``: a model's parameters as
one flat vector and back (for second-order methods, evolution strategies, flat averaging)."""

from __future__ import annotations

from ...tensor import Tensor, cat

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def _checked(parameters, op: str) -> list:
    """``parameters`` (an iterable of Tensors, or one Tensor) as a list of Tensors on one device."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for k, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: parameters must be Tensors, got {type(p).__name__} at position {k}")
        if p.device != params[0].device:
            raise TypeError(
                f"{op}: found two parameters on different devices, {params[0].device} and {p.device} "
                f"(position {k}); all must be on one device"
            )
    return params


def parameters_to_vector(parameters) -> Tensor:
    """The parameters flattened and concatenated in order into one 1-D Tensor (differentiable: its
    gradient flows back to each parameter)."""
    params = _checked(parameters, "parameters_to_vector")
    if not params:
        raise ValueError("parameters_to_vector: parameters is empty (there is nothing to concatenate)")
    return cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec, parameters) -> None:
    """Sets the parameters' data, in order, from consecutive slices of the 1-D Tensor ``vec`` (which
    they then share memory with, as PyTorch's ``param.data = ...``); extra elements are left unused."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: vec must be a Tensor, got {type(vec).__name__}")
    if vec.ndim != 1:
        raise ValueError(f"vector_to_parameters: vec must be 1-D, got shape {tuple(vec.shape)}")
    params = _checked(parameters, "vector_to_parameters")
    needed = sum(p.numel() for p in params)
    if vec.shape[0] < needed:
        raise ValueError(
            f"vector_to_parameters: vec has {vec.shape[0]} elements, fewer than the {needed} of the parameters"
        )
    if params and vec.device != params[0].device:
        raise TypeError(f"vector_to_parameters: vec is on {vec.device} but the parameters are on {params[0].device}")
    pointer = 0
    for p in params:
        n = p.numel()
        p.data = vec[pointer : pointer + n].view(p.shape).data
        pointer += n
