"""The ``norm`` suite: float32 batch normalization in training (the fused forward with its
running-statistics update, and the fused backward) of CNN and MLP layers, and float32 layer
normalization (forward, and forward then backward) of transformer rows, beside PyTorch's
``batch_norm``/``layer_norm`` and their backward passes at the same threads (NumPy's formulas
without it); memory-bound, reported in GB/s of the compulsory bytes. The ``norm-cuda`` suite: the
layer normalization cases on the GPU, through autograd (``F.layer_norm`` then ``backward``) on both
sides, beside PyTorch's ``torch.nn.functional.layer_norm`` on 'cuda'."""

from __future__ import annotations

from typing import List

import numpy as np

from .libraries import cuda_unavailable, installed_torch
from .registry import Case, Suite, register_suite
from .timing import rotation_copies

#: (name, shape): ResNet's BatchNorm2d layers at batch 32 and a wide MLP's BatchNorm1d.
NORM_LAYERS = (
    ("C=64 56x56", (32, 64, 56, 56)),
    ("C=256 14x14", (32, 256, 14, 14)),
    ("C=512 7x7", (32, 512, 7, 7)),
    ("(N, C)=(4096, 1000)", (4096, 1000)),
)
NORM_LAYERS_QUICK = (("C=256 14x14", (32, 256, 14, 14)), ("(N, C)=(4096, 1000)", (4096, 1000)))
GROUP_NORM_FWD = "forward"
GROUP_NORM_BWD = "backward"
#: (name, (rows, D)): BERT-base and a 4096-wide model's token rows, and 32 sequences of 128 tokens at 512.
LAYER_NORM_ROWS = (
    ("(R, D)=(8192, 768)", (8192, 768)),
    ("(R, D)=(4096, 4096)", (4096, 4096)),
    ("(R, D)=(32*128, 512)", (32 * 128, 512)),
)
LAYER_NORM_ROWS_QUICK = (("(R, D)=(8192, 768)", (8192, 768)),)
#: The GPU's rows: BERT-base's and a 4096-wide model's.
LAYER_NORM_ROWS_CUDA = LAYER_NORM_ROWS[:2]
GROUP_LAYER_NORM_FWD = "layer_norm forward"
GROUP_LAYER_NORM_FWD_BWD = "layer_norm forward+backward"


def _axes(x: np.ndarray) -> tuple:
    return (0,) + tuple(range(2, x.ndim))


def _rotations(one: tuple) -> list:
    """``one`` set of inputs and enough copies of it to rotate through (cold caches)."""
    copies = rotation_copies(sum(a.nbytes for a in one))
    return [one] + [tuple(a.copy() for a in one) for _ in range(copies - 1)]


def _numpy_forward(x, w, b, rm, rv):
    """Training batch norm in NumPy (the reference when PyTorch is not installed)."""
    axes, shape = _axes(x), (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    rm *= 0.9
    rm += 0.1 * mean
    rv *= 0.9
    rv += 0.1 * var * (x.size // x.shape[1]) / (x.size // x.shape[1] - 1)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5) * w.reshape(shape) + b.reshape(shape)


def _norm_case(name: str, shape: tuple, backward: bool) -> Case:
    from ..ops import batch_norm, batch_norm_backward

    c = shape[1]
    torch = installed_torch()

    def make_inputs():
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32) * 2 + 1
        one = (x, np.ones(c, np.float32), np.zeros(c, np.float32), np.zeros(c, np.float32), np.ones(c, np.float32))
        if backward:
            one = (rng.standard_normal(shape, dtype=np.float32),) + one
        return _rotations(one)

    data = 4.0 * float(np.prod(shape))
    if not backward:  # x read twice (the statistics, then the normalization), out written
        nbytes = 3 * data
        impls = {"deepkern": lambda x, w, b, rm, rv: batch_norm(x, w, b, rm, rv, training=True)}
        if torch is not None:
            impls["torch"] = lambda x, w, b, rm, rv: torch.nn.functional.batch_norm(x, rm, rv, w, b, training=True)
        else:
            impls["numpy"] = _numpy_forward

        def check(inputs: tuple) -> float:
            x, w, b, rm, rv = (a.copy() for a in inputs)
            got = batch_norm(x, w, b, rm, rv, training=True)[0].astype(np.float64)
            ref = _numpy_forward(x.astype(np.float64), w, b, rm.astype(np.float64), rv.astype(np.float64))
            return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))

    else:  # grad_out and x read twice (the sums, then grad_x), grad_x written
        nbytes = 5 * data

        impls = {"deepkern": lambda g, x, w, b, rm, rv: batch_norm_backward(g, x, w, *_saved(x), True)}
        if torch is not None:
            impls["torch"] = lambda g, x, w, b, rm, rv: torch.ops.aten.native_batch_norm_backward(
                g, x, w, rm, rv, *_torch_saved(torch, x, w), True, 1e-5, [True, True, True]
            )

        def check(inputs: tuple) -> float:
            g, x, w = (a.astype(np.float64) for a in inputs[:3])
            got = batch_norm_backward(*inputs[:3], *_saved(inputs[1]), True)[0].astype(np.float64)
            axes, shp = _axes(x), (1, -1) + (1,) * (x.ndim - 2)
            xhat = (x - x.mean(axis=axes).reshape(shp)) / np.sqrt(x.var(axis=axes).reshape(shp) + 1e-5)
            n = x.size // x.shape[1]
            ref = g - (g.sum(axis=axes).reshape(shp) + xhat * (g * xhat).sum(axis=axes).reshape(shp)) / n
            ref = ref * w.reshape(shp) / np.sqrt(x.var(axis=axes).reshape(shp) + 1e-5)
            return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))

    return Case(
        op="norm",
        name=name,
        layout="train bwd" if backward else "train",
        group=GROUP_NORM_BWD if backward else GROUP_NORM_FWD,
        shape=shape,
        flops=0.0,
        nbytes=nbytes,
        make_inputs=make_inputs,
        impls=impls,
        check=check,
        label="float32, training",
        metric="bytes",
    )


_SAVED: dict = {}


def _saved(x: np.ndarray) -> tuple:
    """deepkern's saved statistics of x (computed once per input array, outside the timing)."""
    key = id(x)
    if key not in _SAVED:
        from ..ops import batch_norm

        _SAVED[key] = (x, batch_norm(x, training=True)[1:])
    return _SAVED[key][1]


def _torch_saved(torch, x, w) -> tuple:
    """PyTorch's saved mean and invstd of x (computed once per input array, outside the timing)."""
    key = ("torch", id(x))
    if key not in _SAVED:
        _, mean, invstd = torch.ops.aten.native_batch_norm(x, w, None, None, None, True, 0.1, 1e-5)
        _SAVED[key] = (x, (mean, invstd))
    return _SAVED[key][1]


def _layer_norm_numpy(x, w, b, g=None):
    """Layer norm of the rows of x in NumPy (and, given g, the input gradient), float64 inside."""
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=1, keepdims=True), x64.var(axis=1, keepdims=True)
    rstd = 1 / np.sqrt(var + 1e-5)
    xhat = (x64 - mean) * rstd
    if g is None:
        return xhat * w + b
    gw = g * w
    return rstd * (gw - gw.mean(axis=1, keepdims=True) - xhat * (gw * xhat).mean(axis=1, keepdims=True))


def _autograd_layer_norm(d: int):
    """deepkern's layer norm through autograd (forward, and with g the backward of all three
    inputs), returning the output or grad_x; the same steps as PyTorch's (_torch_autograd_layer_norm)."""
    from .. import tensor
    from ..nn import functional as F

    def run(x, w, b, g=None):
        leaves = [tensor(a, requires_grad=g is not None) for a in (x, w, b)]
        y = F.layer_norm(leaves[0], (d,), leaves[1], leaves[2])
        if g is None:
            return y._array
        y.backward(tensor(g))
        return leaves[0].grad._array

    return run


def _torch_autograd_layer_norm(torch, d: int):
    def run(x, w, b, g=None):
        if g is None:
            return torch.nn.functional.layer_norm(x, [d], w, b)
        leaves = [a.detach().requires_grad_() for a in (x, w, b)]
        torch.nn.functional.layer_norm(leaves[0], [d], leaves[1], leaves[2]).backward(g)
        return leaves[0].grad

    return run


def _layer_norm_case(name: str, shape: tuple, backward: bool, device: str = "cpu") -> Case:
    from ..ops import layer_norm, layer_norm_backward

    d = shape[1]
    torch = installed_torch()

    def make_inputs():
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32) * 2 + 1
        w, b = rng.standard_normal(d, dtype=np.float32), rng.standard_normal(d, dtype=np.float32)
        one = (x, w, b) + ((rng.standard_normal(shape, dtype=np.float32),) if backward else ())
        return [one] if device == "cuda" else _rotations(one)

    def ours(x, w, b, g=None):
        out, mean, rstd = layer_norm(x, d, w, b)
        return out if g is None else layer_norm_backward(g, x, d, w, mean, rstd)

    impls = {"deepkern": ours if device == "cpu" else _autograd_layer_norm(d)}
    if torch is not None and device == "cuda":
        impls["torch"] = _torch_autograd_layer_norm(torch, d)
    elif torch is not None:

        def theirs(x, w, b, g=None):
            out, mean, rstd = torch.native_layer_norm(x, [d], w, b, 1e-5)
            if g is None:
                return out
            return torch.ops.aten.native_layer_norm_backward(g, x, [d], mean, rstd, w, b, [True, True, True])

        impls["torch"] = theirs
    else:
        impls["numpy"] = _layer_norm_numpy

    def check(inputs: tuple) -> float:
        from ..backends import to_device

        run = impls["deepkern"]
        got = run(*(to_device(a, device) for a in inputs))
        got = np.asarray(to_device(got if not backward or device == "cuda" else got[0], "cpu"), np.float64)
        ref = _layer_norm_numpy(*(a.astype(np.float64) for a in inputs))
        return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))

    data = 4.0 * float(np.prod(shape))
    return Case(
        op="norm",
        name=name,
        layout="fwd+bwd" if backward else "fwd",
        group=GROUP_LAYER_NORM_FWD_BWD if backward else GROUP_LAYER_NORM_FWD,
        shape=shape,
        flops=0.0,
        # forward: x read, out written; backward: grad_out and x read, grad_x written
        nbytes=(5 if backward else 2) * data,
        make_inputs=make_inputs,
        impls=impls,
        check=check,
        label="float32 layer norm",
        metric="bytes",
        device=device,
    )


def norm_cases(quick: bool = False) -> List[Case]:
    """Training batch norm of float32 CNN (batch 32) and MLP layers, forward then backward; float32
    layer norm of transformer rows, forward and forward+backward."""
    layers = NORM_LAYERS_QUICK if quick else NORM_LAYERS
    rows = LAYER_NORM_ROWS_QUICK if quick else LAYER_NORM_ROWS
    return [_norm_case(name, shape, backward) for backward in (False, True) for name, shape in layers] + [
        _layer_norm_case(name, shape, backward) for backward in (False, True) for name, shape in rows
    ]


register_suite(
    Suite(
        name="norm",
        description="float32 batch normalization in training (fused forward with the running-statistics update, "
        "fused backward) of CNN and MLP layers, and float32 layer normalization (forward, forward+backward) of "
        "transformer rows, vs PyTorch at the same threads; GB/s of compulsory bytes",
        cases=norm_cases,
        summary_groups=(GROUP_NORM_FWD, GROUP_NORM_BWD, GROUP_LAYER_NORM_FWD, GROUP_LAYER_NORM_FWD_BWD),
    )
)
register_suite(
    Suite(
        name="norm-cuda",
        description="float32 layer normalization (forward, forward+backward through autograd) of transformer rows "
        "on the GPU (compiled kernels, timed with CUDA events) vs torch.nn.functional.layer_norm on 'cuda'; GB/s of "
        "compulsory bytes",
        cases=lambda quick=False: [
            _layer_norm_case(name, shape, backward, device="cuda")
            for backward in (False, True)
            for name, shape in (LAYER_NORM_ROWS_QUICK if quick else LAYER_NORM_ROWS_CUDA)
        ],
        summary_groups=(GROUP_LAYER_NORM_FWD, GROUP_LAYER_NORM_FWD_BWD),
        unavailable=cuda_unavailable,
        in_all=False,
    )
)
