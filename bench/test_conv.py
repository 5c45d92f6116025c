"""2-D convolution: deepkern.ops.conv2d (+ conv2d_backward) beside PyTorch, same group.

The layers are deepkern.bench's (CONV_LAYERS: ResNet 3x3 and 1x1 layers, the 7x7/2 stem, a
depthwise 3x3), float32 NCHW at batch 32, each timed as a forward pass (``fwd``: conv2d vs
F.conv2d) and as a forward plus the grad_x and grad_w backward (``fwd+bwd``: conv2d then
conv2d_backward(needs=(True, True, False)) vs F.conv2d then aten.convolution_backward), both
libraries at the same thread count. Before deepkern is timed its result is compared with PyTorch
in float64 (deepkern.bench.conv_check). GFLOP/s count 2*N*K*P*Q*C/groups*R*S per pass; the
backward counts twice the forward.

    pytest bench/test_conv.py --benchmark-only
    pytest bench/test_conv.py --benchmark-only -k "fwd-" --benchmark-group-by=group
    DEEPKERN_BENCH_CONV_BATCH=2 pytest bench/test_conv.py --benchmark-only     # quick
"""

from __future__ import annotations

import os

import pytest

from deepkern.bench import conv as dkb

from conftest import cached_inputs, run_rounds

LIBRARIES = ("deepkern", "torch")
BATCH = int(os.environ.get("DEEPKERN_BENCH_CONV_BATCH", "") or dkb.CONV_BATCH)


def _layer_id(layer: dkb.ConvLayer) -> str:
    return layer.name().replace("=", "").replace(" ", "-")


# Case by case, the libraries side by side, so each case's inputs are made once.
CASES = [
    pytest.param(layer, conv_pass, library, id=f"{_layer_id(layer)}-{conv_pass}-{library}")
    for layer in dkb.CONV_LAYERS
    for conv_pass in dkb.CONV_PASSES
    for library in LIBRARIES
]


def _inputs(layer, conv_pass):
    return cached_inputs(("conv", layer, conv_pass), lambda: dkb.make_conv_inputs(layer, BATCH, conv_pass))


@pytest.mark.parametrize("layer,conv_pass,library", CASES)
def test_conv(benchmark, bench_threads, layer, conv_pass, library):
    torch = pytest.importorskip("torch", reason="the conv benchmarks compare with PyTorch")
    sets = _inputs(layer, conv_pass)
    fn = dkb.conv_impls(layer, conv_pass)[library]
    if library == "deepkern":
        err = dkb.conv_check(layer, conv_pass, sets[0])
        assert err < 1e-4, f"deepkern conv {layer.name()} {conv_pass} N={BATCH}: relative error {err:.2e} vs float64"
    else:
        sets = [tuple(torch.from_numpy(a) for a in s) for s in sets]
    flops = dkb.conv_flops(layer, BATCH, conv_pass)
    benchmark.group = f"conv {layer.name()} {conv_pass} N={BATCH} threads={bench_threads}"
    benchmark.extra_info.update(library=library, threads=bench_threads, batch=BATCH, flops=flops,
                                copies=len(sets), label=layer.label)
    run_rounds(benchmark, fn, sets, flops / 1e9, "gflops")
