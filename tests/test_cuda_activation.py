"""Activations on the GPU (``deepkern._cuda.relu``, ``relu_backward``, ``gelu``, ``gelu_backward``
and the ops on 'cuda' arrays) against the float64 references and error bounds of
test_activation.py and against the CPU op: NaN, infinities, -0 and subnormals among the inputs,
odd sizes and size 0, misaligned views (the kernels' scalar path), NaN-prefilled outputs, strided
operands through the ops. The binding's checks of its arguments run on a GPU too; those that need
no GPU (arguments that are not device arrays) run everywhere the module is built."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import ops
from test_activation import BACKWARD, DTYPES, OPS, _approximate, _check, _grads, _values

from checks import raises_naming

needs_gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
compiled = pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")

if dk.cuda.is_compiled():
    from deepkern import _cuda

SIZES = [0, 1, 3, 4, 5, 7, 33, 257, 8209, 100003]


def on_gpu(host: np.ndarray, misaligned: bool = False):
    """A device copy of ``host``; ``misaligned``: a view one element into a larger array, so its
    address is not a multiple of 16 bytes."""
    if not misaligned:
        return _cuda.from_cpu(host)
    padded = _cuda.from_cpu(np.concatenate([np.zeros(1, host.dtype), host.ravel()]))
    return padded[1:].reshape(host.shape)


def call(op: str, grad, x, out) -> None:
    """The _cuda binding of ``op`` (test_activation's names: gelu_tanh is gelu with the flag)."""
    tanh = "tanh" in op
    if op == "relu":
        _cuda.relu(x, out)
    elif op == "relu_backward":
        _cuda.relu_backward(grad, x, out)
    elif op in ("gelu", "gelu_tanh"):
        _cuda.gelu(x, out, tanh)
    else:
        _cuda.gelu_backward(grad, x, out, tanh)


def cpu_op(op: str, grad, x) -> np.ndarray:
    if op == "relu":
        return ops.relu(x)
    if op == "relu_backward":
        return ops.relu_backward(grad, x)
    if op in ("gelu", "gelu_tanh"):
        return ops.gelu(x, approximate=_approximate(op))
    return ops.gelu_backward(grad, x, approximate=_approximate(op))


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("misaligned", [False, True], ids=["aligned", "misaligned"])
def test_binding_matches_reference_and_cpu(op, dtype, size, misaligned, rng):
    x = _values(rng, size, dtype)
    grad = _grads(rng, size, dtype) if op in BACKWARD else None
    out = on_gpu(np.full(size, np.nan, dtype), misaligned)
    call(op, None if grad is None else on_gpu(grad, misaligned), on_gpu(x, misaligned), out)
    got = out.to_cpu()
    what = f"{op} {dtype} n={size} {'misaligned' if misaligned else 'aligned'}"
    _check(op, got, grad, x, what)
    # The CPU op within the same bounds: float64 shares its formula, float32 differs by roundings.
    _check(op, cpu_op(op, grad, x), grad, x, what + " (CPU)")


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("op", ["relu", "gelu_backward"])
def test_ops_on_cuda_arrays_any_layout(op, rng):
    """The ops dispatch to the GPU kernels for 'cuda' arrays, strided inputs and outputs included."""
    x = _values(rng, 6 * 10, np.float32).reshape(6, 10)
    grad = _grads(rng, 6 * 10, np.float32).reshape(6, 10) if op in BACKWARD else None
    xd = on_gpu(x.T.copy()).T  # a transposed view
    gd = None if grad is None else on_gpu(grad)
    out = on_gpu(np.full((10, 6), np.nan, np.float32)).T
    result = ops.relu(xd, out=out) if op == "relu" else ops.gelu_backward(gd, xd, out=out)
    assert result is out
    _check(op, result.to_cpu(), grad, x, op)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("op", ["relu", "gelu", "relu_backward", "gelu_backward"])
def test_binding_rejects_bad_arguments(op):
    fwd = op in ("relu", "gelu")
    x = on_gpu(np.ones((2, 3), np.float32))

    def run(grad=None, x=x, out=None):
        grad = on_gpu(np.ones((2, 3), np.float32)) if grad is None else grad
        out = on_gpu(np.ones((2, 3), np.float32)) if out is None else out
        args = (x, out) if fwd else (grad, x, out)
        getattr(_cuda, op)(*args, *(() if op.startswith("relu") else (False,)))

    with raises_naming(TypeError, op, "x", "int32"):
        run(x=on_gpu(np.ones((2, 3), np.int32)))
    with raises_naming(TypeError, op, "out", "float64"):
        run(out=on_gpu(np.ones((2, 3), np.float64)))
    with raises_naming(ValueError, op, "out", "6"):
        run(out=on_gpu(np.ones((7,), np.float32)))
    with raises_naming(ValueError, op, "out", "C-contiguous"):
        run(out=on_gpu(np.ones((3, 2), np.float32)).T)
    with raises_naming(ValueError, op, "out", "x"):
        run(out=x)
    if not fwd:
        with raises_naming(TypeError, op, "grad", "float64"):
            run(grad=on_gpu(np.ones((2, 3), np.float64)))
        with raises_naming(ValueError, op, "grad", "5"):
            run(grad=on_gpu(np.ones(5, np.float32)))
        g = on_gpu(np.ones((2, 3), np.float32))
        with raises_naming(ValueError, op, "out", "grad"):
            run(grad=g, out=g)


@compiled
@pytest.mark.parametrize("op", ["relu", "gelu", "relu_backward", "gelu_backward"])
def test_binding_wants_device_arrays(op):
    """Host arrays are refused with a TypeError naming the argument, before any GPU work."""
    host = np.ones(3, np.float32)
    args = (host, host) if op in ("relu", "gelu") else (host, host, host)
    with raises_naming(TypeError, op, "DeviceArray"):
        getattr(_cuda, op)(*args, *(() if op.startswith("relu") else (False,)))
