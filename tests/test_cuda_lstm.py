"""The LSTM on the GPU (``deepkern._cuda.lstm_forward``/``lstm_backward``, and ops.lstm, nn.LSTM
and nn.LSTMCell on 'cuda' tensors) against the float64 references of tests/reference.py and the
CPU op: both forward paths forced (per step, persistent), T = 0 and 1, odd B, I and H, no state,
no bias, reverse, inference and cached forwards, NaN-prefilled outputs, the gradients of every
input against the CPU's and the reference's, and the binding's checks of its arguments. The
checks that need no GPU (arguments that are not device arrays, path names, float64) run wherever
the module is built."""

from __future__ import annotations

import deepkern as dk
import ml_dtypes
import numpy as np
import pytest
from deepkern import nn, ops
from test_lstm import Cfg, make_inputs

from checks import F32, F64, check, raises_naming, rand
from reference import lstm_backward_ref, lstm_ref

needs_gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
compiled = pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")

if dk.cuda.is_compiled():
    from deepkern import _cuda

PATHS = ["per_step", "persistent"]
CONFIGS = [
    Cfg(1, 1, 1, 1),
    Cfg(1, 3, 5, 7),
    Cfg(5, 3, 5, 7),
    Cfg(4, 2, 3, 5, reverse=True),
    Cfg(3, 5, 4, 3, bias=False, state=False),
    Cfg(3, 2, 0, 4),
    Cfg(7, 33, 17, 65, state=False, reverse=True),
    Cfg(6, 64, 40, 256),
]
EMPTY = [Cfg(0, 3, 5, 4), Cfg(0, 2, 3, 2, state=False), Cfg(3, 0, 2, 3), Cfg(2, 3, 4, 0)]


@pytest.fixture
def path():
    """A function forcing the forward's path for the test; automatic again afterwards."""
    yield _cuda.set_lstm_path
    _cuda.set_lstm_path("automatic")


def _gpu(*arrays):
    return tuple(None if a is None else _cuda.from_cpu(np.ascontiguousarray(a)) for a in arrays)


def _host(*arrays):
    return tuple(a.to_cpu() for a in arrays)


def _nan_gpu(*shapes):
    return tuple(_cuda.from_cpu(np.full(s, np.nan, np.float32)) for s in shapes)


def _bias(b_ih, b_hh):
    return None if b_ih is None else (b_ih + b_hh).astype(F32)


# ---- what needs no GPU -------------------------------------------------------------------------


@compiled
def test_binding_refuses_host_arrays():
    x = np.zeros((1, 1, 1), np.float32)
    w = np.zeros((4, 1), np.float32)
    with raises_naming(TypeError, "lstm_forward", "x", "DeviceArray"):
        _cuda.lstm_forward(x, None, None, w, w, None, x, x, x, None, None, None, False)


@compiled
def test_path_names():
    try:
        for name in ("per_step", "persistent", "automatic"):
            _cuda.set_lstm_path(name)
            assert _cuda.lstm_path() == name
        with raises_naming(ValueError, "set_lstm_path", "'per_step'", "'fastest'"):
            _cuda.set_lstm_path("fastest")
        assert _cuda.lstm_path() == "automatic", "a refused name changed the path"
    finally:
        _cuda.set_lstm_path("automatic")


@compiled
def test_backend_refuses_float64_and_bfloat16():
    from deepkern.backends import cuda as cuda_backend

    for dtype in (np.float64, ml_dtypes.bfloat16):
        with raises_naming(NotImplementedError, "lstm_forward", np.dtype(dtype).name, "cuda", "float32 is"):
            cuda_backend._precision("lstm_forward", np.zeros(1, dtype), bfloat16=False)
    assert cuda_backend._precision("lstm_forward", np.zeros(1, np.float32), bfloat16=False) == "fp32"


# ---- the binding on a GPU ----------------------------------------------------------------------


def check_layer_forward(cfg, args, outs, cache, what):
    """A layer's (y, h_T, c_T) against the float64 reference and its cache (gates, cells, hidden;
    None for inference) against the CPU op's."""
    for name, got, ref in zip(("y", "h_T", "c_T"), outs, lstm_ref(*args, reverse=cfg.reverse)):
        check(got, ref, F32, f"{what}: {name}")
    if cache is not None:
        *_, cpu = ops.lstm(*args, reverse=cfg.reverse, return_cache=True)
        for name, got, c in zip(("gates", "cells", "hidden"), cache, cpu[:3]):
            check(got, c.astype(np.float64), F32, f"{what}: cache {name} against the CPU's")


def _forward(cfg, args, cached, precision="fp32"):
    """The binding's (y, h_T, c_T) and cache (or Nones) in host memory, outputs NaN-prefilled."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = args
    t, b, h = cfg.t, cfg.b, cfg.h
    outs = _nan_gpu((t, b, h), (b, h), (b, h))
    cache = _nan_gpu((t, b, 4 * h), (t, b, h), (t, b, h)) if cached else (None,) * 3
    _cuda.lstm_forward(
        *_gpu(x, h0, c0, w_ih, w_hh, _bias(b_ih, b_hh)), *outs, *cache, cfg.reverse, precision
    )  # fmt: skip
    return _host(*outs), (_host(*cache) if cached else None)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("which", PATHS)
@pytest.mark.parametrize("cached", [True, False], ids=["cached", "inference"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=Cfg.id)
def test_forward_matches_float64_and_the_cpu(cfg, which, cached, path, rng):
    path(which)
    args = make_inputs(rng, cfg, F32)
    outs, cache = _forward(cfg, args, cached)
    assert _cuda.last_lstm_path() == which
    check_layer_forward(cfg, args, outs, cache, f"{cfg.id()} {which} {'cached' if cached else 'inference'}")


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("which", PATHS)
@pytest.mark.parametrize("cfg", EMPTY, ids=Cfg.id)
def test_forward_without_a_gate_passes_the_states_through(cfg, which, path, rng):
    path(which)
    args = make_inputs(rng, cfg, F32)
    (y, h_t, c_t), cache = _forward(cfg, args, True)
    ref_y, ref_h, ref_c = lstm_ref(*args)
    assert y.shape == ref_y.shape and cache[0].shape == (cfg.t, cfg.b, 4 * cfg.h)
    np.testing.assert_array_equal(h_t, ref_h.astype(F32))
    np.testing.assert_array_equal(c_t, ref_c.astype(F32))


@pytest.mark.cuda
@needs_gpu
def test_forced_persistent_path_refuses_a_large_layer(path, rng):
    path("persistent")
    cfg = Cfg(2, 2, 3, 300)
    with raises_naming(ValueError, "persistent path", "H = 300"):
        _forward(cfg, make_inputs(rng, cfg, F32), False)


@pytest.mark.cuda
@needs_gpu
def test_automatic_path_is_persistent_for_a_small_layer(path, rng):
    cfg = Cfg(20, 8, 16, 32)
    args = make_inputs(rng, cfg, F32)
    (y, _, _), _ = _forward(cfg, args, False)
    assert _cuda.last_lstm_path() == "persistent"
    check(y, lstm_ref(*args)[0], F32, "automatic path")


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("grads", ["all", "y_only", "none"])
@pytest.mark.parametrize("cfg", CONFIGS + EMPTY, ids=Cfg.id)
def test_backward_matches_float64_and_the_cpu(cfg, grads, rng):
    args = make_inputs(rng, cfg, F32)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = args
    t, b, i, h = cfg.t, cfg.b, cfg.i, cfg.h
    gy = rand(rng, (t, b, h), F32) if grads != "none" else None
    gh, gc = (rand(rng, (b, h), F32), rand(rng, (b, h), F32)) if grads == "all" else (None, None)
    _, cache = _forward(cfg, args, True)
    got = _nan_gpu((t, b, i), (b, h), (b, h), (4 * h, i), (4 * h, h), (4 * h,))
    _cuda.lstm_backward(*_gpu(gy, gh, gc, x, h0, c0, w_ih, w_hh, *cache), *got, cfg.reverse)
    refs = lstm_backward_ref(gy, gh, gc, *args, reverse=cfg.reverse)
    *_, cpu_cache = ops.lstm(*args, reverse=cfg.reverse, return_cache=True)
    cpu = ops.lstm_backward(gy, gh, gc, x, h0, c0, w_ih, w_hh, cpu_cache, reverse=cfg.reverse)
    names = ("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_bias")
    for name, g, ref, c in zip(names, _host(*got), refs, cpu):
        what = f"{cfg.id()} {grads}: {name}"
        if grads == "none" or g.size == 0 or not np.any(ref):
            np.testing.assert_array_equal(g, ref.astype(F32), err_msg=what)
            continue
        check(g, ref, F32, what, floor=1e-6)
        check(g, c.astype(np.float64), F32, what + " against the CPU's", floor=1e-6)


@pytest.mark.cuda
@needs_gpu
def test_tf32_gemms_stay_close(rng):
    cfg = Cfg(10, 16, 64, 96)
    args = make_inputs(rng, cfg, F32)
    (y, _, _), _ = _forward(cfg, args, False, precision="tf32")
    check(y, lstm_ref(*args)[0], F32, "tf32", tol=5e-3)


@pytest.mark.cuda
@needs_gpu
def test_binding_checks_its_arguments(rng):
    cfg = Cfg(3, 2, 4, 5)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = make_inputs(rng, cfg, F32)
    gx, gh0, gc0, gwi, gwh, gb = _gpu(x, h0, c0, w_ih, w_hh, _bias(b_ih, b_hh))
    y, hl, cl = _nan_gpu((3, 2, 5), (2, 5), (2, 5))
    cache = _nan_gpu((3, 2, 20), (3, 2, 5), (3, 2, 5))

    def forward(**changed):
        kw = dict(x=gx, h0=gh0, c0=gc0, w_ih=gwi, w_hh=gwh, bias=gb, y=y, h_last=hl, c_last=cl)
        kw.update(gates=cache[0], cells=cache[1], hidden=cache[2], reverse=False)
        kw.update(changed)
        _cuda.lstm_forward(**kw)

    forward()  # the correct call
    with raises_naming(ValueError, "lstm_forward", "y", r"\(T, B, H\)", r"\(3, 2, 5\)", r"\(3, 2, 4\)"):
        forward(y=_nan_gpu((3, 2, 4))[0])
    with raises_naming(ValueError, "lstm_forward", "w_hh", r"\(4H, H\)"):
        forward(w_hh=_gpu(np.zeros((19, 5), F32))[0])
    with raises_naming(TypeError, "lstm_forward", "x", "float32", "float64"):
        forward(x=_gpu(x.astype(F64))[0])
    with raises_naming(TypeError, "lstm_forward", "h0", "float64"):
        forward(h0=_gpu(h0.astype(F64))[0])
    with raises_naming(ValueError, "lstm_forward", "c0", "C-contiguous"):
        forward(c0=_gpu(np.zeros((5, 2), F32))[0].T)
    with raises_naming(ValueError, "lstm_forward", "h_last", "overlaps", "h0"):
        forward(h_last=gh0)
    with raises_naming(ValueError, "lstm_forward", "gates, cells and hidden"):
        forward(cells=None)
    with raises_naming(ValueError, "lstm_forward", "precision", "'fp16'"):
        forward(precision="fp16")
    with raises_naming(TypeError, "lstm_forward", "bias", "DeviceArray"):
        forward(bias=np.zeros(20, F32))


# ---- ops and nn on 'cuda' tensors --------------------------------------------------------------


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("cell", [(3, 7, 17), (1, 33, 1)], ids=str)
def test_ops_lstm_cell_on_cuda_arrays(cell, rng):
    b, i, h = cell
    args = (rand(rng, (b, i), F32), rand(rng, (b, h), F32), rand(rng, (b, h), F32)) + make_inputs(
        rng, Cfg(1, b, i, h), F32
    )[3:]
    gh, gc = rand(rng, (b, h), F32), rand(rng, (b, h), F32)
    for got, cpu in zip(ops.lstm_cell(*_gpu(*args)), ops.lstm_cell(*args)):
        check(got.to_cpu(), cpu.astype(np.float64), F32, "lstm_cell")
    for got, cpu in zip(ops.lstm_cell_backward(*_gpu(gh, gc, *args)), ops.lstm_cell_backward(gh, gc, *args)):
        check(got.to_cpu(), cpu.astype(np.float64), F32, "lstm_cell_backward", floor=1e-6)


def _np(t):
    """A Tensor's values in host memory."""
    return t.detach().cpu().numpy()


def _module_grads(module):
    return {name: _np(p.grad) for name, p in module.named_parameters()}


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("bidirectional", [False, True])
def test_nn_lstm_on_cuda_matches_the_cpu(bidirectional, rng):
    cpu = nn.LSTM(6, 9, num_layers=2, bidirectional=bidirectional, batch_first=True)
    gpu = nn.LSTM(6, 9, num_layers=2, bidirectional=bidirectional, batch_first=True, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    x = rand(rng, (3, 5, 6), F32)
    h0 = rand(rng, (4 if bidirectional else 2, 3, 9), F32)
    outs = []
    for module, device in ((cpu, "cpu"), (gpu, "cuda")):
        xt = dk.tensor(x, device=device, requires_grad=True)
        state = (dk.tensor(h0, device=device), dk.tensor(np.zeros_like(h0), device=device))
        y, (h_n, c_n) = module(xt, state)
        (y.sum() + h_n.sum() * 2 + c_n.sum()).backward()
        outs.append(([_np(y), _np(h_n), _np(c_n), _np(xt.grad)], _module_grads(module)))
    (cpu_out, cpu_grads), (gpu_out, gpu_grads) = outs
    for name, g, c in zip(("y", "h_n", "c_n", "x.grad"), gpu_out, cpu_out):
        check(g, c.astype(np.float64), F32, f"nn.LSTM {name}", floor=1e-6)
    for name in cpu_grads:
        check(gpu_grads[name], cpu_grads[name].astype(np.float64), F32, f"nn.LSTM {name}.grad", floor=1e-6)


@pytest.mark.cuda
@needs_gpu
def test_nn_lstm_cell_on_cuda_matches_the_cpu(rng):
    cpu = nn.LSTMCell(5, 7)
    gpu = nn.LSTMCell(5, 7, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    x = rand(rng, (4, 5), F32)
    outs = []
    for module, device in ((cpu, "cpu"), (gpu, "cuda")):
        h, c = module(dk.tensor(x, device=device))
        (h.sum() + c.sum()).backward()
        outs.append(([_np(h), _np(c)], _module_grads(module)))
    (cpu_out, cpu_grads), (gpu_out, gpu_grads) = outs
    for name, g, c in zip(("h", "c"), gpu_out, cpu_out):
        check(g, c.astype(np.float64), F32, f"nn.LSTMCell {name}")
    for name in cpu_grads:
        check(gpu_grads[name], cpu_grads[name].astype(np.float64), F32, f"nn.LSTMCell {name}.grad", floor=1e-6)
