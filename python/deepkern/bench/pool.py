"""The ``pool`` suite: float32 max and average 2-D pooling of CNN layers, forward and backward, beside
PyTorch (NumPy strided windows without it); memory-bound, reported in GB/s."""

from __future__ import annotations

from typing import List

import numpy as np

from .libraries import installed_torch
from .registry import Case, Suite, register_suite
from .timing import rotation_copies

#: (C, H = W) of the pooling layers of ResNet/VGG-style CNNs, batch POOL_BATCH, float32 NCHW.
POOL_LAYERS = ((64, 56), (128, 28), (256, 14), (64, 112), (512, 7))
POOL_LAYERS_QUICK = ((128, 28), (512, 7))
POOL_BATCH = 32
#: (kind, kernel, stride, padding): the 2x2/2 pool of VGG and the 3x3/2 pad 1 pool of ResNet.
POOL_WINDOWS = (("max", 2, 2, 0), ("max", 3, 2, 1), ("avg", 2, 2, 0), ("avg", 3, 2, 1))
GROUP_POOL_FWD = "forward"
GROUP_POOL_BWD = "backward"


def pool_numpy(x: np.ndarray, kind: str, kernel: int, stride: int, padding: int) -> np.ndarray:
    """max_pool2d or avg_pool2d (count_include_pad, floor mode) in NumPy: the reduction over
    strided windows of the padded input (the reference when PyTorch is not installed)."""
    fill = -np.inf if kind == "max" else 0.0
    pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    xp = np.pad(x, pad, constant_values=fill) if padding else x
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return windows.max(axis=(-2, -1)) if kind == "max" else windows.mean(axis=(-2, -1))


def _pool_rotation(arrays: tuple) -> List[tuple]:
    copies = rotation_copies(sum(a.nbytes for a in arrays))
    return [arrays] + [tuple(a.copy() for a in arrays) for _ in range(copies - 1)]


def _pool_check_forward(kind, kernel, stride, padding):
    from ..ops import avg_pool2d, max_pool2d

    fn = max_pool2d if kind == "max" else avg_pool2d

    def check(inputs: tuple) -> float:
        x = inputs[0][:2]  # two images keep the float64 reference cheap
        ref = pool_numpy(x.astype(np.float64), kind, kernel, stride, padding)
        return float(np.linalg.norm(fn(x, kernel, stride, padding) - ref) / np.linalg.norm(ref))

    return check


def _pool_check_backward(kind, kernel, stride, padding):
    from ..ops import avg_pool2d_backward, max_pool2d_backward

    def check(inputs: tuple) -> float:
        g, x = inputs[0][:2].astype(np.float64), inputs[1][:2]
        if kind == "max":  # grad_x = grad_out added at the indices, plane by plane
            idx = inputs[2][:2]
            got = max_pool2d_backward(inputs[0][:2], x.shape, idx)
            planes = np.arange(idx.shape[0] * idx.shape[1]).reshape(idx.shape[:2] + (1, 1))
            ref = np.zeros(x.size)
            np.add.at(ref, (idx + planes * x.shape[2] * x.shape[3]).ravel(), g.ravel())
            ref = ref.reshape(x.shape)
        else:  # grad_x = each grad_out / k^2 added over its window (count_include_pad)
            got = avg_pool2d_backward(inputs[0][:2], x.shape, kernel, stride, padding)
            h, w = x.shape[2] + 2 * padding, x.shape[3] + 2 * padding
            ref = np.zeros(x.shape[:2] + (h, w))
            oh, ow = g.shape[2:]
            for i in range(kernel):
                for j in range(kernel):
                    ref[:, :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride] += (
                        g / kernel**2
                    )
            ref = ref[:, :, padding : h - padding, padding : w - padding]
        return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))

    return check


def _pool_case(channels: int, size: int, kind: str, kernel: int, stride: int, padding: int, backward: bool) -> Case:
    from ..ops import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

    shape = (POOL_BATCH, channels, size, size)
    out_size = (size + 2 * padding - kernel) // stride + 1
    out_shape = shape[:2] + (out_size, out_size)
    x_bytes, out_bytes = 4.0 * np.prod(shape), 4.0 * np.prod(out_shape)
    window = f"{kernel}x{kernel} s{stride}" + (f" p{padding}" if padding else "")
    torch = installed_torch()
    k2, s2, p2 = [kernel, kernel], [stride, stride], [padding, padding]

    def make_x():
        return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)

    if not backward:  # inputs (x,); bytes: x read, output written
        nbytes = x_bytes + out_bytes
        make_inputs = lambda: _pool_rotation((make_x(),))  # noqa: E731
        dk_fn = max_pool2d if kind == "max" else avg_pool2d
        impls = {"deepkern": lambda x: dk_fn(x, kernel, stride, padding)}
        if torch is not None:
            t_fn = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
            impls["torch"] = lambda x: t_fn(x, kernel, stride, padding)
        else:
            impls["numpy"] = lambda x: pool_numpy(x, kind, kernel, stride, padding)
        check = _pool_check_forward(kind, kernel, stride, padding)
    elif kind == "max":  # inputs (grad_out, x, indices); bytes: grad_out and indices read, grad_x written
        nbytes = out_bytes + 2 * out_bytes + x_bytes

        def make_inputs():
            x = make_x()
            _, idx = max_pool2d(x, kernel, stride, padding, return_indices=True)
            g = np.random.default_rng(1).standard_normal(out_shape, dtype=np.float32)
            return _pool_rotation((g, x, idx))

        impls = {"deepkern": lambda g, x, idx: max_pool2d_backward(g, x.shape, idx)}
        if torch is not None:
            impls["torch"] = lambda g, x, idx: torch.ops.aten.max_pool2d_with_indices_backward(
                g, x, k2, s2, p2, [1, 1], False, idx
            )
        check = _pool_check_backward(kind, kernel, stride, padding)
    else:  # inputs (grad_out, x); bytes: grad_out read, grad_x written
        nbytes = out_bytes + x_bytes

        def make_inputs():
            g = np.random.default_rng(1).standard_normal(out_shape, dtype=np.float32)
            return _pool_rotation((g, make_x()))

        impls = {"deepkern": lambda g, x: avg_pool2d_backward(g, x.shape, kernel, stride, padding)}
        if torch is not None:
            impls["torch"] = lambda g, x: torch.ops.aten.avg_pool2d_backward(g, x, k2, s2, p2, False, True, None)
        check = _pool_check_backward(kind, kernel, stride, padding)
    return Case(
        op="pool",
        name=f"C={channels} {size}x{size}",
        layout=f"{kind}{' bwd' if backward else ''} {window}",
        group=GROUP_POOL_BWD if backward else GROUP_POOL_FWD,
        shape=shape,
        flops=0.0,
        nbytes=float(nbytes),
        make_inputs=make_inputs,
        impls=impls,
        check=check,
        label=f"batch {POOL_BATCH} float32 NCHW",
        metric="bytes",
    )


def pool_cases(quick: bool = False) -> List[Case]:
    """Batch-32 float32 max and average pooling (2x2/2 and 3x3/2 pad 1), forward then backward."""
    layers = POOL_LAYERS_QUICK if quick else POOL_LAYERS
    return [
        _pool_case(c, hw, kind, k, s, p, backward)
        for backward in (False, True)
        for c, hw in layers
        for kind, k, s, p in POOL_WINDOWS
    ]


register_suite(
    Suite(
        name="pool",
        description="float32 max/avg 2-D pooling of CNN layers (batch 32 NCHW), forward and backward, vs PyTorch "
        "(NumPy strided windows without it); GB/s of bytes read + written",
        cases=pool_cases,
        summary_groups=(GROUP_POOL_FWD, GROUP_POOL_BWD),
    )
)
