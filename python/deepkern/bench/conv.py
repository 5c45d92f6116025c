"""The ``conv`` suite: float32 NCHW ``conv2d`` of ResNet-50 / MobileNet layers, forward and forward +
backward (grad_x, grad_w) at a training batch, and forward at inference batches (1 and 4), beside
PyTorch."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .gemm import _cuda_unavailable, _tf32_inputs
from .libraries import installed_torch, torch_missing
from .registry import BF16_CHECK_TOLERANCE, Case, Suite, register_suite
from .timing import rotation_copies


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    """One convolution layer (float32, NCHW, no bias, dilation 1), timed at some batch size."""

    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    label: str = ""

    @property
    def out_hw(self) -> Tuple[int, int]:
        p = (self.h + 2 * self.padding - self.r) // self.stride + 1
        q = (self.w + 2 * self.padding - self.s) // self.stride + 1
        return p, q

    @property
    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=1, groups=self.groups)

    def name(self) -> str:
        text = f"C={self.c} {self.h}x{self.w} K={self.k} {self.r}x{self.s}"
        if self.stride != 1:
            text += f" s{self.stride}"
        if self.padding:
            text += f" p{self.padding}"
        if self.groups != 1:
            text += f" g{self.groups}"
        return text

    def forward_flops(self, batch: int) -> float:
        """2 * N * K * P * Q * (C / groups) * R * S (one multiply-add = 2 FLOP)."""
        p, q = self.out_hw
        return 2.0 * batch * self.k * p * q * (self.c // self.groups) * self.r * self.s


#: The layers timed by ``deepkern bench --op conv`` and bench/test_suites.py (ResNet-50 / MobileNet shapes).
CONV_LAYERS = (
    ConvLayer(64, 56, 56, 64, 3, 3, 1, 1, label="ResNet 3x3, 56x56"),
    ConvLayer(128, 28, 28, 128, 3, 3, 1, 1, label="ResNet 3x3, 28x28"),
    ConvLayer(256, 14, 14, 256, 3, 3, 1, 1, label="ResNet 3x3, 14x14"),
    ConvLayer(3, 224, 224, 64, 7, 7, 2, 3, label="ResNet conv1 7x7/2"),
    ConvLayer(64, 56, 56, 256, 1, 1, label="bottleneck 1x1 expand"),
    ConvLayer(256, 56, 56, 64, 1, 1, label="bottleneck 1x1 reduce"),
    ConvLayer(128, 56, 56, 128, 3, 3, 1, 1, groups=128, label="depthwise 3x3"),
    ConvLayer(512, 7, 7, 512, 3, 3, 1, 1, label="ResNet 3x3, 7x7"),
)
CONV_BATCH = 32
CONV_BATCH_QUICK = 2
CONV_PASSES = ("fwd", "fwd+bwd")
GROUP_CONV_FWD = "forward"
GROUP_CONV_FWD_BWD = "forward+backward"

#: Inference: the forward of ``CONV_LAYERS`` plus ResNet's strided 1x1 downsample at these batch sizes
#: (``--quick``: the first only), each batch size its own summary group.
CONV_INFERENCE_LAYERS = CONV_LAYERS + (ConvLayer(256, 56, 56, 512, 1, 1, 2, label="downsample 1x1/2"),)
CONV_INFERENCE_BATCHES = (1, 4)


def inference_group(batch: int) -> str:
    """The summary group of the inference rows at ``batch``."""
    return f"{GROUP_CONV_FWD} N={batch}"


def conv_flops(layer: ConvLayer, batch: int, conv_pass: str) -> float:
    """FLOP of one call: the forward, or the forward plus grad_x and grad_w (each as many as the forward)."""
    return layer.forward_flops(batch) * (3.0 if conv_pass == "fwd+bwd" else 1.0)


def conv_bytes(layer: ConvLayer, batch: int, conv_pass: str) -> float:
    """Compulsory float32 traffic: read x and w, write y (and for the backward read grad_out, x and w,
    write grad_x and grad_w)."""
    p, q = layer.out_hw
    x = batch * layer.c * layer.h * layer.w
    w = layer.k * (layer.c // layer.groups) * layer.r * layer.s
    y = batch * layer.k * p * q
    total = x + w + y
    if conv_pass == "fwd+bwd":
        total += y + x + w + x + w
    return 4.0 * total


def make_conv_inputs(
    layer: ConvLayer, batch: int, conv_pass: str, *, copies: Optional[int] = None, seed: int = 0
) -> List[tuple]:
    """Rotation sets of C-contiguous float32 arrays: ``(x, w)`` for ``"fwd"``, ``(x, w, grad_out)`` for
    ``"fwd+bwd"``. ``copies`` defaults to :func:`rotation_copies` of one set's bytes."""
    if conv_pass not in CONV_PASSES:
        raise ValueError(f"make_conv_inputs: conv_pass must be one of {CONV_PASSES}, got {conv_pass!r}")
    rng = np.random.default_rng(seed)
    p, q = layer.out_hw
    base = [
        rng.standard_normal((batch, layer.c, layer.h, layer.w), dtype=np.float32),
        rng.standard_normal((layer.k, layer.c // layer.groups, layer.r, layer.s), dtype=np.float32),
    ]
    base[1] *= np.float32(1.0 / math.sqrt(base[1][0].size))  # unit-scale outputs, as with He init
    if conv_pass == "fwd+bwd":
        base.append(rng.standard_normal((batch, layer.k, p, q), dtype=np.float32))
    if copies is None:
        copies = rotation_copies(sum(a.nbytes for a in base))
    return [tuple(base) if i == 0 else tuple(a.copy() for a in base) for i in range(max(1, int(copies)))]


def conv_impls(layer: ConvLayer, conv_pass: str) -> Dict[str, Callable]:
    """Backend name -> the call to time, on the (converted) inputs of :func:`make_conv_inputs`.

    deepkern: ``ops.conv2d`` (then ``ops.conv2d_backward(needs=(True, True, False))``); PyTorch:
    ``F.conv2d`` (then ``aten.convolution_backward`` for grad_x and grad_w), when installed.
    """
    from ..ops import conv2d, conv2d_backward

    kw = layer.kwargs
    impls: Dict[str, Callable] = {}
    if conv_pass == "fwd":
        impls["deepkern"] = lambda x, w: conv2d(x, w, None, **kw)
    else:

        def deepkern_fwd_bwd(x, w, g):
            conv2d(x, w, None, **kw)
            return conv2d_backward(g, x, w, needs=(True, True, False), **kw)

        impls["deepkern"] = deepkern_fwd_bwd
    torch = installed_torch()
    if torch is not None:
        conv = torch.nn.functional.conv2d
        backward = torch.ops.aten.convolution_backward.default
        stride, padding, dilation = [layer.stride] * 2, [layer.padding] * 2, [1, 1]
        if conv_pass == "fwd":
            impls["torch"] = lambda x, w: conv(x, w, None, stride, padding, dilation, layer.groups)
        else:

            def torch_fwd_bwd(x, w, g):
                conv(x, w, None, stride, padding, dilation, layer.groups)
                return backward(
                    g, x, w, None, stride, padding, dilation, False, [0, 0], layer.groups, [True, True, False]
                )

            impls["torch"] = torch_fwd_bwd
    return impls


#: Images of the batch whose output and grad_x are compared with the float64 reference.
CONV_CHECK_IMAGES = 2


def _conv_references(layer: ConvLayer, conv_pass: str, inputs: tuple, head: slice) -> tuple:
    """PyTorch's float64 results on ``inputs``: the output of the images ``head`` (``"fwd"``), or
    grad_x of those images and grad_w of the whole batch (``"fwd+bwd"``), as NumPy arrays."""
    torch = installed_torch()
    if torch is None:
        raise RuntimeError("conv_check needs PyTorch for its float64 reference")
    stride, padding, dilation = [layer.stride] * 2, [layer.padding] * 2, [1, 1]
    x64, w64 = (torch.from_numpy(a.astype(np.float64)) for a in inputs[:2])
    with torch.no_grad():
        if conv_pass == "fwd":
            return (torch.nn.functional.conv2d(x64[head], w64, None, stride, padding, dilation, layer.groups).numpy(),)
        g64 = torch.from_numpy(inputs[2].astype(np.float64))
        backward = torch.ops.aten.convolution_backward.default
        common = (stride, padding, dilation, False, [0, 0], layer.groups)
        ref_x = backward(g64[head], x64[head], w64, None, *common, [True, False, False])[0]
        ref_w = backward(g64, x64, w64, None, *common, [False, True, False])[1]
        return ref_x.numpy(), ref_w.numpy()


def _relative_error(got, ref) -> float:
    denom = float(np.linalg.norm(ref)) or 1.0
    return float(np.linalg.norm(np.asarray(got).astype(np.float64) - ref)) / denom


def conv_check(layer: ConvLayer, conv_pass: str, inputs: tuple) -> float:
    """Largest relative error ``||out - ref|| / ||ref||`` of deepkern's results on ``inputs`` against
    PyTorch in float64: the output (``"fwd"``) or grad_x and grad_w (``"fwd+bwd"``).

    The whole batch runs through deepkern (the call that is timed); output and grad_x are compared on
    the first images, grad_w (a sum over the batch) on the whole batch.
    """
    from ..ops import conv2d, conv2d_backward

    x, w = inputs[0], inputs[1]
    head = slice(0, min(CONV_CHECK_IMAGES, x.shape[0]))
    refs = _conv_references(layer, conv_pass, inputs, head)
    if conv_pass == "fwd":
        return _relative_error(conv2d(x, w, None, **layer.kwargs)[head], refs[0])
    grad_x, grad_w, _ = conv2d_backward(inputs[2], x, w, needs=(True, True, False), **layer.kwargs)
    return max(_relative_error(grad_x[head], refs[0]), _relative_error(grad_w, refs[1]))


def _conv_case(layer: ConvLayer, batch: int, conv_pass: str, group: str, layout: str = "") -> Case:
    return Case(
        op="conv",
        name=layer.name(),
        layout=layout or conv_pass,
        group=group,
        shape=(batch, layer.c, layer.h, layer.w, layer.k, layer.r, layer.s, layer.stride, layer.padding, layer.groups),
        flops=conv_flops(layer, batch, conv_pass),
        nbytes=conv_bytes(layer, batch, conv_pass),
        make_inputs=lambda: make_conv_inputs(layer, batch, conv_pass),
        impls=conv_impls(layer, conv_pass),
        check=lambda inputs: conv_check(layer, conv_pass, inputs),
        label=f"{layer.label}, N={batch}",
    )


def conv_cases(quick: bool = False) -> List[Case]:
    """float32 NCHW convolutions at batch 32 (2 with ``quick``): each layer forward, then forward+backward;
    then the inference rows: ``CONV_INFERENCE_LAYERS`` forward at each of ``CONV_INFERENCE_BATCHES``
    (the first only with ``quick``)."""
    batch = CONV_BATCH_QUICK if quick else CONV_BATCH
    groups = {"fwd": GROUP_CONV_FWD, "fwd+bwd": GROUP_CONV_FWD_BWD}
    cases = [
        _conv_case(layer, batch, conv_pass, groups[conv_pass]) for layer in CONV_LAYERS for conv_pass in CONV_PASSES
    ]
    batches = CONV_INFERENCE_BATCHES[:1] if quick else CONV_INFERENCE_BATCHES
    cases += [
        _conv_case(layer, n, "fwd", inference_group(n), f"fwd N={n}")
        for n in batches
        for layer in CONV_INFERENCE_LAYERS
    ]
    return cases


register_suite(
    Suite(
        name="conv",
        description=(
            f"float32 NCHW conv2d, forward and forward+backward (grad_x, grad_w), batch {CONV_BATCH} "
            f"(--quick: {CONV_BATCH_QUICK}), and forward at batch "
            f"{' and '.join(map(str, CONV_INFERENCE_BATCHES))} (--quick: {CONV_INFERENCE_BATCHES[0]}), vs PyTorch"
        ),
        cases=conv_cases,
        summary_groups=(GROUP_CONV_FWD, GROUP_CONV_FWD_BWD) + tuple(map(inference_group, CONV_INFERENCE_BATCHES)),
        unavailable=lambda: torch_missing("torch.nn.functional.conv2d"),
    )
)


# ---- conv-bf16: the training layers in bfloat16 on the CPU -----------------------------------------


def _conv_bf16_impls(layer: ConvLayer, conv_pass: str) -> Dict[str, Callable]:
    """:func:`conv_impls` on bfloat16 views of the inputs' bits (uint16: PyTorch cannot take NumPy's
    bfloat16): deepkern's bfloat16 convolution and PyTorch's on bfloat16 tensors (oneDNN)."""
    import ml_dtypes

    plain = conv_impls(layer, conv_pass)
    ours = plain["deepkern"]
    impls: Dict[str, Callable] = {"deepkern": lambda *arrays: ours(*(a.view(ml_dtypes.bfloat16) for a in arrays))}
    torch = installed_torch()
    if torch is not None and "torch" in plain:
        theirs = plain["torch"]
        impls["torch"] = lambda *tensors: theirs(*(t.view(torch.bfloat16) for t in tensors))
    return impls


def conv_bf16_cases(quick: bool = False) -> List[Case]:
    """The ``conv`` suite's training rows (``CONV_LAYERS`` at batch 32, 2 with ``quick``, forward then
    forward+backward) with bfloat16 inputs, checked against PyTorch in float64 on the bfloat16 values."""
    import ml_dtypes

    batch = CONV_BATCH_QUICK if quick else CONV_BATCH
    groups = {"fwd": GROUP_CONV_FWD, "fwd+bwd": GROUP_CONV_FWD_BWD}
    cases = []
    for layer in CONV_LAYERS:
        for conv_pass in CONV_PASSES:
            case = _conv_case(layer, batch, conv_pass, groups[conv_pass], f"{conv_pass} bf16")
            case.op = "conv-bf16"
            case.tolerance = BF16_CHECK_TOLERANCE
            case.metric = "bf16_flops"
            case.nbytes /= 2
            case.make_inputs = lambda layer=layer, p=conv_pass: [
                tuple(a.astype(ml_dtypes.bfloat16).view(np.uint16) for a in s)
                for s in make_conv_inputs(layer, batch, p)
            ]
            case.impls = _conv_bf16_impls(layer, conv_pass)
            case.check = lambda inputs, layer=layer, p=conv_pass: conv_check(
                layer, p, tuple(a.view(ml_dtypes.bfloat16) for a in inputs)
            )
            cases.append(case)
    return cases


register_suite(
    Suite(
        name="conv-bf16",
        description=(
            f"bfloat16 NCHW conv2d on the CPU, forward and forward+backward (grad_x, grad_w), batch {CONV_BATCH} "
            f"(--quick: {CONV_BATCH_QUICK}), vs PyTorch's bfloat16 conv2d"
        ),
        cases=conv_bf16_cases,
        summary_groups=(GROUP_CONV_FWD, GROUP_CONV_FWD_BWD),
        unavailable=lambda: torch_missing("torch.nn.functional.conv2d"),
        in_all=False,
    )
)


# ---- conv-cuda: the same layers on the GPU -------------------------------------------------------

CONV_CUDA_PRECISIONS = ("fp32", "tf32", "bf16")

#: The ``conv`` suite's layers plus MobileNet's depthwise layers (the GPU's depthwise kernels) and its
#: pointwise 1x1 after them (the GEMM on the NCHW planes).
CONV_CUDA_LAYERS = CONV_LAYERS + (
    ConvLayer(256, 28, 28, 256, 3, 3, 1, 1, groups=256, label="MobileNet depthwise 3x3, 28x28"),
    ConvLayer(512, 14, 14, 512, 3, 3, 2, 1, groups=512, label="MobileNet depthwise 3x3/2, 14x14"),
    ConvLayer(256, 28, 28, 256, 1, 1, label="MobileNet pointwise 1x1, 28x28"),
)


def _conv_cuda_unavailable() -> Optional[str]:
    """Why the GPU suite cannot run here (no usable GPU, no PyTorch), or None."""
    return _cuda_unavailable() or torch_missing("torch.nn.functional.conv2d")


def _conv_cuda_impls(layer: ConvLayer, conv_pass: str, precision: str) -> Dict[str, Callable]:
    """:func:`conv_impls` on the GPU with the precision set alike for both libraries before each call
    (host-side assignments): deepkern's ``matmul.allow_tf32``; PyTorch's ``cudnn.allow_tf32``, with
    ``cudnn.benchmark`` on (cuDNN picks its fastest algorithm per shape); bfloat16 views for BF16
    (the inputs travel as bfloat16's bits in uint16)."""
    import ml_dtypes

    from ..backends import cuda as cuda_backend

    tf32, bf16 = precision == "tf32", precision == "bf16"
    plain = conv_impls(layer, conv_pass)
    ours = plain["deepkern"]

    def deepkern_conv(*arrays):
        cuda_backend.matmul.allow_tf32 = tf32
        return ours(*(a.view(ml_dtypes.bfloat16) if bf16 else a for a in arrays))

    impls: Dict[str, Callable] = {"deepkern": deepkern_conv}
    torch = installed_torch()
    if torch is not None and "torch" in plain:
        theirs = plain["torch"]

        def torch_conv(*tensors):
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = tf32
            return theirs(*(t.view(torch.bfloat16) if bf16 else t for t in tensors))

        impls["torch"] = torch_conv
    return impls


def conv_cuda_check(layer: ConvLayer, conv_pass: str, precision: str, inputs: tuple) -> float:
    """:func:`conv_check` for the GPU: deepkern's results on the device against PyTorch in float64
    on the same inputs rounded as the precision rounds them (TF32 inputs; bfloat16 results), so the
    check measures the kernels, not the precision's own rounding."""
    import ml_dtypes

    from ..backends import cuda as cuda_backend
    from ..backends import to_device
    from ..ops import conv2d, conv2d_backward

    values = tuple(a.view(ml_dtypes.bfloat16) if precision == "bf16" else a for a in inputs)
    head = slice(0, min(CONV_CHECK_IMAGES, values[0].shape[0]))
    rounded = tuple(_tf32_inputs(a) if precision == "tf32" else a.astype(np.float32) for a in values)
    refs = _conv_references(layer, conv_pass, rounded, head)
    if precision == "bf16":
        refs = tuple(r.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64) for r in refs)
    device = tuple(to_device(a, "cuda") for a in values)
    cuda_backend.matmul.allow_tf32 = precision == "tf32"
    try:
        if conv_pass == "fwd":
            got = (conv2d(device[0], device[1], None, **layer.kwargs)[head],)
        else:
            grad_x, grad_w, _ = conv2d_backward(device[2], *device[:2], needs=(True, True, False), **layer.kwargs)
            got = (grad_x[head], grad_w)
    finally:
        cuda_backend.matmul.allow_tf32 = False
    return max(_relative_error(to_device(g, "cpu"), r) for g, r in zip(got, refs))


def _conv_cuda_case(layer: ConvLayer, batch: int, conv_pass: str, precision: str) -> Case:
    itemsize = 2 if precision == "bf16" else 4

    def make_inputs():
        # One set: the GPU's caches hold none of these whole at batch 32.
        sets = make_conv_inputs(layer, batch, conv_pass, copies=1)
        if precision != "bf16":
            return sets
        import ml_dtypes

        return [tuple(a.astype(ml_dtypes.bfloat16).view(np.uint16) for a in s) for s in sets]

    return Case(
        op="conv",
        name=layer.name(),
        layout=f"{conv_pass} {precision}",
        group=f"{GROUP_CONV_FWD if conv_pass == 'fwd' else GROUP_CONV_FWD_BWD} {precision}",
        shape=(batch, layer.c, layer.h, layer.w, layer.k, layer.r, layer.s, layer.stride, layer.padding, layer.groups),
        flops=conv_flops(layer, batch, conv_pass),
        nbytes=conv_bytes(layer, batch, conv_pass) * itemsize / 4,
        make_inputs=make_inputs,
        impls=_conv_cuda_impls(layer, conv_pass, precision),
        check=lambda inputs: conv_cuda_check(layer, conv_pass, precision, inputs),
        label=f"{layer.label}, N={batch}",
        device="cuda",
    )


def conv_cuda_cases(quick: bool = False) -> List[Case]:
    """The ``conv`` suite's layers and MobileNet's (``CONV_CUDA_LAYERS``) on the GPU at batch 32 (2
    with ``quick``), forward and forward+backward, in FP32, TF32 and BF16."""
    batch = CONV_BATCH_QUICK if quick else CONV_BATCH
    return [
        _conv_cuda_case(layer, batch, conv_pass, precision)
        for precision in CONV_CUDA_PRECISIONS
        for layer in CONV_CUDA_LAYERS
        for conv_pass in CONV_PASSES
    ]


register_suite(
    Suite(
        name="conv-cuda",
        description=(
            f"NCHW conv2d on the GPU in FP32, TF32 and BF16, forward and forward+backward, batch {CONV_BATCH} "
            f"(--quick: {CONV_BATCH_QUICK}), vs PyTorch (cuDNN, benchmark mode)"
        ),
        cases=conv_cuda_cases,
        summary_groups=tuple(f"{g} {p}" for p in CONV_CUDA_PRECISIONS for g in (GROUP_CONV_FWD, GROUP_CONV_FWD_BWD)),
        unavailable=_conv_cuda_unavailable,
    )
)
