"""The GRU and the Elman RNN on the GPU (``deepkern._cuda.gru_forward``/``gru_backward``,
``rnn_forward``/``rnn_backward``, and ops.gru/ops.rnn, nn.GRU, nn.RNN and their cells on 'cuda'
tensors) against the float64 references of tests/reference.py and the CPU op: T = 0 and 1, odd B,
I and H, no state, no bias, reverse, inference and cached forwards, NaN-prefilled outputs, the
gradients of every input against the CPU's and the reference's (also from the CPU's cache: both
devices keep the same one), and the bindings' checks of their arguments. The checks that need no
GPU (arguments that are not device arrays) run wherever the module is built."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn
from test_cuda_lstm import CONFIGS, EMPTY, _gpu, _nan_gpu
from test_gru import GRAD_NAMES, KINDS, Kind, make_inputs
from test_lstm import Cfg

from checks import F32, F64, check, raises_naming, rand
from conftest import on_device, to_host

needs_gpu = pytest.mark.skipif(not dk.cuda.is_available(), reason=f"no usable GPU: {dk.cuda.unavailable_reason()}")
compiled = pytest.mark.skipif(not dk.cuda.is_compiled(), reason="deepkern._cuda is not built")

if dk.cuda.is_compiled():
    from deepkern import _cuda


def _host(*arrays):
    return tuple(None if a is None else a.to_cpu() for a in arrays)


# ---- what needs no GPU -------------------------------------------------------------------------


@compiled
def test_bindings_refuse_host_arrays():
    x = np.zeros((1, 1, 1), np.float32)
    h, w3, w1 = np.zeros((1, 1), np.float32), np.zeros((3, 1), np.float32), np.zeros((1, 1), np.float32)
    calls = {
        "gru_forward": lambda: _cuda.gru_forward(x, None, w3, w3, None, None, x, h, None, None, False),
        "gru_backward": lambda: _cuda.gru_backward(None, None, x, None, w3, w3, x, x, x, h, w3, w3, w3, w3, False),
        "rnn_forward": lambda: _cuda.rnn_forward(x, None, w1, w1, None, x, h, None, False, False),
        "rnn_backward": lambda: _cuda.rnn_backward(None, None, x, None, w1, w1, x, x, h, w1, w1, w1, True, False),
    }
    for op, call in calls.items():
        with raises_naming(TypeError, op, "x", "DeviceArray"):
            call()


# ---- the bindings on a GPU ---------------------------------------------------------------------


def _bias(kind, b_ih, b_hh):
    """The RNN binding's one bias, b_ih + b_hh (None without biases)."""
    return None if b_ih is None else (b_ih + b_hh).astype(F32)


def _forward(kind, cfg, args, cached, precision="fp32"):
    """The binding's (y, h_T) and cache ((gates, hidden) for the GRU, (hidden,) for the RNN; None for
    inference) in host memory, outputs NaN-prefilled."""
    x, h0, w_ih, w_hh, b_ih, b_hh = args
    t, b, h = cfg.t, cfg.b, cfg.h
    outs = _nan_gpu((t, b, h), (b, h))
    if kind.nl is None:
        cache = _nan_gpu((t, b, 4 * h), (t, b, h)) if cached else (None, None)
        _cuda.gru_forward(*_gpu(x, h0, w_ih, w_hh, b_ih, b_hh), *outs, *cache, cfg.reverse, precision)
    else:
        cache = _nan_gpu((t, b, h)) if cached else (None,)
        _cuda.rnn_forward(
            *_gpu(x, h0, w_ih, w_hh, _bias(kind, b_ih, b_hh)), *outs, *cache, kind.nl == "relu", cfg.reverse, precision
        )
    return _host(*outs), (_host(*cache) if cached else None)


def _backward(kind, cfg, args, gy, gh, cache):
    """The six gradients (the RNN's bias gradient twice) from the binding, in host memory."""
    x, h0, w_ih, w_hh = args[:4]
    t, b, i, h = cfg.t, cfg.b, cfg.i, cfg.h
    rows = kind.gates * h
    got = _nan_gpu((t, b, i), (b, h), (rows, i), (rows, h), (rows,), (rows,))
    inputs = _gpu(gy, gh, x, h0, w_ih, w_hh, *cache)
    if kind.nl is None:
        _cuda.gru_backward(*inputs, *got, cfg.reverse)
        return _host(*got)
    _cuda.rnn_backward(*inputs, *got[:5], kind.nl == "relu", cfg.reverse)
    grads = _host(*got[:5])
    return grads + (grads[4],)


def _cpu_cache(kind, cfg, args):
    """The CPU op's cache as the binding's tuple."""
    cache = kind.forward(*args, reverse=cfg.reverse, return_cache=True)[2]
    return (cache.gates, cache.hidden) if kind.nl is None else (cache.hidden,)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cached", [True, False], ids=["cached", "inference"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=Cfg.id)
def test_forward_matches_float64_and_the_cpu(kind, cfg, cached, rng):
    kind = Kind(kind)
    args = make_inputs(rng, kind, cfg, F32)
    outs, cache = _forward(kind, cfg, args, cached)
    what = f"{kind.name} {cfg.id()} {'cached' if cached else 'inference'}"
    for name, got, ref in zip(("y", "h_T"), outs, kind.ref(*args, reverse=cfg.reverse)):
        check(got, ref, F32, f"{what}: {name}")
    if cached:
        for got, cpu in zip(cache, _cpu_cache(kind, cfg, args)):
            check(got, cpu.astype(np.float64), F32, f"{what}: cache against the CPU's")


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg", EMPTY, ids=Cfg.id)
def test_forward_without_a_gate_passes_the_state_through(kind, cfg, rng):
    kind = Kind(kind)
    args = make_inputs(rng, kind, cfg, F32)
    (y, h_t), _ = _forward(kind, cfg, args, True)
    ref_y, ref_h = kind.ref(*args)
    assert y.shape == ref_y.shape
    np.testing.assert_array_equal(h_t, ref_h.astype(F32))


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("grads", ["all", "y_only", "none"])
@pytest.mark.parametrize("cfg", CONFIGS + EMPTY, ids=Cfg.id)
def test_backward_matches_float64_and_the_cpu(kind, cfg, grads, rng):
    """From the GPU forward's cache and from the CPU op's: the same gradients."""
    kind = Kind(kind)
    args = make_inputs(rng, kind, cfg, F32)
    x, h0, w_ih, w_hh = args[:4]
    gy = rand(rng, (cfg.t, cfg.b, cfg.h), F32) if grads != "none" else None
    gh = rand(rng, (cfg.b, cfg.h), F32) if grads == "all" else None
    _, cache = _forward(kind, cfg, args, True)
    cpu_cache = _cpu_cache(kind, cfg, args)
    refs = kind.backward_ref(gy, gh, *args, reverse=cfg.reverse)
    *_, op_cache = kind.forward(*args, reverse=cfg.reverse, return_cache=True)
    cpu = kind.backward(gy, gh, x, h0, w_ih, w_hh, op_cache, reverse=cfg.reverse)
    for source, c in (("", cache), (" (the CPU's cache)", cpu_cache)):
        for name, g, ref, want in zip(GRAD_NAMES, _backward(kind, cfg, args, gy, gh, c), refs, cpu):
            what = f"{kind.name} {cfg.id()} {grads}{source}: {name}"
            if grads == "none" or g.size == 0 or not np.any(ref):
                np.testing.assert_array_equal(g, ref.astype(F32), err_msg=what)
                continue
            check(g, ref, F32, what, floor=1e-6)
            check(g, want.astype(np.float64), F32, f"{what} against the CPU's", floor=1e-6)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("kind", KINDS)
def test_tf32_gemms_stay_close(kind, rng):
    kind = Kind(kind)
    cfg = Cfg(10, 16, 64, 96)
    args = make_inputs(rng, kind, cfg, F32)
    (y, _), _ = _forward(kind, cfg, args, False, precision="tf32")
    check(y, kind.ref(*args)[0], F32, f"{kind.name} tf32", tol=5e-3)


@pytest.mark.cuda
@needs_gpu
def test_bindings_check_their_arguments(rng):
    kind, cfg = Kind("gru"), Cfg(3, 2, 4, 5)
    x, h0, w_ih, w_hh, b_ih, b_hh = _gpu(*make_inputs(rng, kind, cfg, F32))
    y, hl = _nan_gpu((3, 2, 5), (2, 5))
    gates, hidden = _nan_gpu((3, 2, 20), (3, 2, 5))

    def gru(**changed):
        kw = dict(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, y=y, h_last=hl, gates=gates, hidden=hidden)
        kw.update(reverse=False)
        kw.update(changed)
        _cuda.gru_forward(**kw)

    gru()  # the correct call
    with raises_naming(ValueError, "gru_forward", "w_hh", r"\(3H, H\)", r"\(14, 5\)"):
        gru(w_hh=_gpu(np.zeros((14, 5), F32))[0])
    with raises_naming(ValueError, "gru_forward", "w_ih", r"\(3H, I\)", r"\(15, 4\)", r"\(12, 4\)"):
        gru(w_ih=_gpu(np.zeros((12, 4), F32))[0])
    with raises_naming(ValueError, "gru_forward", "gates", r"\(T, B, 4H\)", r"\(3, 2, 20\)", r"\(3, 2, 15\)"):
        gru(gates=_nan_gpu((3, 2, 15))[0])
    with raises_naming(ValueError, "gru_forward", "gates and hidden"):
        gru(hidden=None)
    with raises_naming(TypeError, "gru_forward", "b_hh", "float64"):
        gru(b_hh=_gpu(np.zeros(15, F64))[0])
    with raises_naming(ValueError, "gru_forward", "h_last", "overlaps", "h0"):
        gru(h_last=h0)
    with raises_naming(ValueError, "gru_forward", "precision", "'bf16'"):
        gru(precision="bf16")
    w1 = _gpu(np.zeros((5, 5), F32))[0]
    with raises_naming(ValueError, "rnn_forward", "w_ih", r"\(H, I\)", r"\(5, 4\)"):
        _cuda.rnn_forward(x, h0, w1, w1, None, y, hl, None, False, False)
    with raises_naming(ValueError, "rnn_backward", "grad_bias", r"\(H,\)", r"\(5,\)"):
        _cuda.rnn_backward(
            None, None, x, h0, _gpu(np.zeros((5, 4), F32))[0], w1, hidden, *_nan_gpu((3, 2, 4), (2, 5), (5, 4), (5, 5)),
            _nan_gpu((6,))[0], True, False,
        )  # fmt: skip


# ---- ops on device arrays, nn on 'cuda' tensors ------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg", [Cfg(4, 3, 5, 7), Cfg(3, 2, 4, 6, state=False, reverse=True)], ids=Cfg.id)
def test_ops_on_the_device_match_float64(device, kind, cfg, rng):
    """ops.gru / ops.rnn and their backward on ``device``'s arrays against the float64 references."""
    kind = Kind(kind)
    args = make_inputs(rng, kind, cfg, F32)
    gy, gh = rand(rng, (cfg.t, cfg.b, cfg.h), F32), rand(rng, (cfg.b, cfg.h), F32)
    dev = on_device(device, *args)
    y, h_t, cache = kind.forward(*dev, reverse=cfg.reverse, return_cache=True)
    what = f"{kind.name} {cfg.id()} on {device}"
    for name, got, ref in zip(("y", "h_T"), (y, h_t), kind.ref(*args, reverse=cfg.reverse)):
        check(to_host(got), ref, F32, f"{what}: {name}")
    grads = kind.backward(*on_device(device, gy, gh), *dev[:4], cache, reverse=cfg.reverse)
    for name, got, ref in zip(GRAD_NAMES, grads, kind.backward_ref(gy, gh, *args, reverse=cfg.reverse)):
        check(to_host(got), ref, F32, f"{what}: {name}", floor=1e-6)


def _np(t):
    """A Tensor's values in host memory."""
    return t.detach().cpu().numpy()


def _run_module(module, device, x, h0):
    """Outputs and gradients of (sum y + 2 sum h_n) through ``module`` on ``device``."""
    xt = dk.tensor(x, device=device, requires_grad=True)
    y, h_n = module(xt, dk.tensor(h0, device=device))
    (y.sum() + h_n.sum() * 2).backward()
    return [_np(y), _np(h_n), _np(xt.grad)], {name: _np(p.grad) for name, p in module.named_parameters()}


def _compare_modules(kind, bidirectional, device, rng):
    """A two-layer batch_first nn.GRU / nn.RNN on ``device`` against the same module on the CPU:
    outputs, final states and every gradient."""
    cls, extra = (nn.GRU, {}) if kind.nl is None else (nn.RNN, {"nonlinearity": kind.nl})
    kw = dict(num_layers=2, bidirectional=bidirectional, batch_first=True, **extra)
    cpu, other = cls(6, 9, **kw), cls(6, 9, **kw, device=device)
    other.load_state_dict(cpu.state_dict())
    x, h0 = rand(rng, (3, 5, 6), F32), rand(rng, (4 if bidirectional else 2, 3, 9), F32)
    (cpu_out, cpu_grads), (out, grads) = (_run_module(m, d, x, h0) for m, d in ((cpu, "cpu"), (other, device)))
    for name, g, c in zip(("y", "h_n", "x.grad"), out, cpu_out):
        check(g, c.astype(np.float64), F32, f"{cls.__name__} {kind.name} on {device}: {name}", floor=1e-6)
    for name in cpu_grads:
        check(grads[name], cpu_grads[name].astype(np.float64), F32, f"{kind.name} {name}.grad", floor=1e-6)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_nn_module_on_cuda_matches_the_cpu(kind, bidirectional, rng):
    _compare_modules(Kind(kind), bidirectional, "cuda", rng)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_nn_module_on_the_cuda_code_paths(kind, bidirectional, rng, monkeypatch):
    """The same through the CUDA backend's kernel entries and NumPy dispatch without a GPU
    (tests/cuda_standin.py: the CPU kernels on host memory behind them), so a step of the layers'
    glue that the GPU backend lacks, or that copies to the host, fails here too."""
    cuda_standin = pytest.importorskip("cuda_standin", exc_type=ImportError)
    monkeypatch.setitem(dk.backends._BACKENDS, "standin", cuda_standin.StandInBackend())
    for name in ("gru_forward", "gru_backward", "rnn_forward", "rnn_backward"):
        assert hasattr(cuda_standin.StandInBackend, name), f"the CUDA backend has no {name} entry"
    _compare_modules(Kind(kind), bidirectional, "standin", rng)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("kind", KINDS)
def test_nn_cell_on_cuda_matches_the_cpu(kind, rng):
    kind = Kind(kind)
    cls, extra = (nn.GRUCell, {}) if kind.nl is None else (nn.RNNCell, {"nonlinearity": kind.nl})
    cpu, gpu = cls(5, 7, **extra), cls(5, 7, **extra, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    x, h = rand(rng, (4, 5), F32), rand(rng, (4, 7), F32)
    outs = []
    for module, device in ((cpu, "cpu"), (gpu, "cuda")):
        out = module(dk.tensor(x, device=device), dk.tensor(h, device=device))
        out.sum().backward()
        outs.append((_np(out), {name: _np(p.grad) for name, p in module.named_parameters()}))
    (cpu_h, cpu_grads), (gpu_h, gpu_grads) = outs
    check(gpu_h, cpu_h.astype(np.float64), F32, f"{cls.__name__} {kind.name} h")
    for name in cpu_grads:
        check(gpu_grads[name], cpu_grads[name].astype(np.float64), F32, f"{kind.name} {name}.grad", floor=1e-6)
