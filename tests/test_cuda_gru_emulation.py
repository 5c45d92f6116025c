"""The GRU and Elman RNN kernels of csrc/cuda/lstm run on the host (tests/cuda_emulation, the
LSTM's driver): the fused cell passes against float64 NumPy, and the whole per-step layer (the GEMMs
through the GEMM dispatcher's FP32 kernel), forward and backward, against the float64 references
of tests/reference.py and the CPU op, whose cache the emulated backward also takes (the two
devices keep the same cache). Odd sizes, T = 1, I = 0, no state, no bias, reverse, inference and
cached forwards, sizes of 0, outputs prefilled with NaN. Needs the source tree and a C++ compiler,
not a GPU; the problems are small."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)
from test_cuda_lstm_emulation import CONFIGS, EMPTY, NULL, _arg, _driver, _nan, _sigmoid  # noqa: E402
from test_gru import GRAD_NAMES, KINDS, Kind, make_inputs  # noqa: E402
from test_lstm import Cfg  # noqa: E402

from checks import F32, check, rand  # noqa: E402

#: deepkern::cuda::CellKind codes (csrc/cuda/lstm/lstm.h).
CODES = {"gru": 1, "rnn_tanh": 2, "rnn_relu": 3}


def _f64(a):
    return 0.0 if a is None else a.astype(np.float64)


# ---- the cell kernels --------------------------------------------------------------------------


def _gru_forward_ref(pre, bias, hh, bias_hh, h_prev):
    """r, z, n, W_hn h + b_hn (B, 4H) and h from the gate sums pre (B, 4H: r, z, n, unused)."""
    hidden = pre.shape[1] // 4
    ih = _f64(pre)[:, : 3 * hidden] + _f64(bias)
    rec = (np.zeros_like(ih) if hh is None else _f64(hh)) + _f64(bias_hh)
    ih_r, ih_z, ih_n = np.split(ih, 3, axis=1)
    hh_r, hh_z, hh_n = np.split(rec, 3, axis=1)
    r, z = _sigmoid(ih_r + hh_r), _sigmoid(ih_z + hh_z)
    n = np.tanh(ih_n + r * hh_n)
    return np.concatenate([r, z, n, hh_n], axis=1), (1 - z) * n + z * _f64(h_prev)


@pytest.mark.parametrize(("batch", "hidden"), [(1, 1), (3, 5), (7, 37)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("state", [True, False], ids=["h_prev", "no_state"])
def test_gru_cell_forward_matches_float64(batch, hidden, bias, state, rng):
    pre = rand(rng, (batch, 4 * hidden), F32)
    b, b_hh = (rand(rng, 3 * hidden, F32), rand(rng, 3 * hidden, F32)) if bias else (None, None)
    hh, hp = (rand(rng, (batch, 3 * hidden), F32), rand(rng, (batch, hidden), F32)) if state else (None, None)
    act, h, y = _nan((batch, 4 * hidden)), _nan((batch, hidden)), _nan((batch, hidden))
    _driver().dk_cell_forward(CODES["gru"], batch, hidden, pre, _arg(b), _arg(hh), _arg(b_hh), _arg(hp), act, h, y)
    ref_act, ref_h = _gru_forward_ref(pre, b, hh, b_hh, hp)
    what = f"gru cell forward B={batch} H={hidden} bias={bias} state={state}"
    check(act, ref_act, F32, f"{what}: act")
    check(h, ref_h, F32, f"{what}: h")
    np.testing.assert_array_equal(y, h, err_msg=f"{what}: y is h")


def test_gru_cell_forward_in_place_and_without_optional_outputs(rng):
    """act may be pre itself (the cached forward: r, z, n, W_hn h + b_hn over the sums); act and y
    null write neither."""
    batch, hidden = 3, 6
    pre = rand(rng, (batch, 4 * hidden), F32)
    hh, hp = rand(rng, (batch, 3 * hidden), F32), rand(rng, (batch, hidden), F32)
    ref_act, ref_h = _gru_forward_ref(pre, None, hh, None, hp)
    inplace, h = pre.copy(), _nan((batch, hidden))
    _driver().dk_cell_forward(CODES["gru"], batch, hidden, inplace, NULL, hh, NULL, hp, inplace, h, NULL)
    check(inplace, ref_act, F32, "activations written over the sums")
    untouched, h = pre.copy(), _nan((batch, hidden))
    _driver().dk_cell_forward(CODES["gru"], batch, hidden, untouched, NULL, hh, NULL, hp, NULL, h, NULL)
    np.testing.assert_array_equal(untouched, pre, err_msg="act null: the sums are not written")
    check(h, ref_h, F32, "h")


@pytest.mark.parametrize(("batch", "hidden"), [(1, 1), (3, 5), (4, 33)])
@pytest.mark.parametrize("state", [True, False], ids=["h_prev", "no_state"])
@pytest.mark.parametrize("grad_y", [True, False])
def test_gru_cell_backward_matches_float64(batch, hidden, state, grad_y, rng):
    r, z = _sigmoid(rand(rng, (batch, hidden), F32)), _sigmoid(rand(rng, (batch, hidden), F32))
    n, hn = np.tanh(rand(rng, (batch, hidden), F32)), rand(rng, (batch, hidden), F32)
    act = np.concatenate([r, z, n, hn], axis=1).astype(F32)
    hp = rand(rng, (batch, hidden), F32) if state else None
    gy = rand(rng, (batch, hidden), F32) if grad_y else None
    dh = rand(rng, (batch, hidden), F32)
    dh_io, dg = dh.copy(), _nan((batch, 4 * hidden))
    _driver().dk_cell_backward(CODES["gru"], batch, hidden, act, NULL, _arg(hp), _arg(gy), dh_io, dg)
    r, z, n, hn = np.split(act.astype(np.float64), 4, axis=1)
    d = _f64(dh) + _f64(gy)
    dn = d * (1 - z) * (1 - n * n)
    ref = np.concatenate([dn * hn * r * (1 - r), d * (_f64(hp) - n) * z * (1 - z), dn * r, dn], axis=1)
    what = f"gru cell backward B={batch} H={hidden} state={state} grad_y={grad_y}"
    check(dg, ref, F32, f"{what}: dgates", floor=1e-6)
    check(dh_io, d * z, F32, f"{what}: dh, the part that bypasses W_hh")


@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize(("batch", "hidden"), [(1, 1), (3, 5), (7, 37)])
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_cell_matches_float64(kind, batch, hidden, bias, rng):
    pre = rand(rng, (batch, hidden), F32)
    b = rand(rng, hidden, F32) if bias else None
    h, y = _nan((batch, hidden)), _nan((batch, hidden))
    _driver().dk_cell_forward(CODES[kind], batch, hidden, pre, _arg(b), NULL, NULL, NULL, NULL, h, y)
    v = _f64(pre) + _f64(b)
    ref_h = np.maximum(v, 0.0) if kind == "rnn_relu" else np.tanh(v)
    what = f"{kind} cell B={batch} H={hidden} bias={bias}"
    check(h, ref_h, F32, f"{what}: h")
    np.testing.assert_array_equal(y, h, err_msg=f"{what}: y is h")
    gy, dh = rand(rng, (batch, hidden), F32), rand(rng, (batch, hidden), F32)
    dh_io, dg = dh.copy(), _nan((batch, hidden))
    _driver().dk_cell_backward(CODES[kind], batch, hidden, NULL, h, NULL, gy, dh_io, dg)
    d = _f64(dh) + _f64(gy)
    h64 = _f64(h)
    ref_dg = d * (h64 > 0) if kind == "rnn_relu" else d * (1 - h64 * h64)
    check(dg, ref_dg, F32, f"{what}: dgates", floor=1e-6)
    np.testing.assert_array_equal(dh_io, dh, err_msg=f"{what}: dh is only read")


# ---- the layers --------------------------------------------------------------------------------


def _bias_args(kind, b_ih, b_hh):
    """The driver's bias and bias_hh: the GRU's two, the RNN's sum."""
    if kind.nl is not None:
        return (None if b_ih is None else (b_ih + b_hh).astype(F32)), None
    return b_ih, b_hh


def _forward(kind, cfg, args, cached):
    """y, h_T and the cache (gates for the GRU, hidden; None for inference) from the emulated layer."""
    x, h0, w_ih, w_hh, b_ih, b_hh = args
    t, b, h = cfg.t, cfg.b, cfg.h
    outs = [_nan((t, b, h)), _nan((b, h))]
    gates = _nan((t, b, 4 * h)) if cached and kind.nl is None else None
    hidden = _nan((t, b, h)) if cached else None
    bias, bias_hh = _bias_args(kind, b_ih, b_hh)
    _driver().dk_recurrent_forward(
        CODES[kind.name], t, b, cfg.i, h, int(cfg.reverse), 0, x, _arg(h0), w_ih, w_hh, _arg(bias), _arg(bias_hh),
        *outs, _arg(gates), _arg(hidden),
    )  # fmt: skip
    return outs, gates, hidden


def _cpu_cache(kind, cfg, args):
    return kind.forward(*args, reverse=cfg.reverse, return_cache=True)[2]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cached", [True, False], ids=["cached", "inference"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=Cfg.id)
def test_layer_forward_matches_float64_and_the_cpu(kind, cfg, cached, rng):
    kind = Kind(kind)
    args = make_inputs(rng, kind, cfg, F32)
    outs, gates, hidden = _forward(kind, cfg, args, cached)
    what = f"{kind.name} {cfg.id()} {'cached' if cached else 'inference'}"
    for name, got, ref in zip(("y", "h_T"), outs, kind.ref(*args, reverse=cfg.reverse)):
        check(got, ref, F32, f"{what}: {name}")
    if cached:
        cpu = _cpu_cache(kind, cfg, args)
        check(hidden, cpu.hidden.astype(np.float64), F32, f"{what}: cache hidden against the CPU's")
        if gates is not None:
            check(gates, cpu.gates.astype(np.float64), F32, f"{what}: cache gates against the CPU's")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg", EMPTY, ids=Cfg.id)
def test_layer_without_a_gate_passes_the_state_through(kind, cfg, rng):
    kind = Kind(kind)
    args = make_inputs(rng, kind, cfg, F32)
    (y, h_t), _, _ = _forward(kind, cfg, args, True)
    ref_y, ref_h = kind.ref(*args)  # h0 (zeros when None)
    assert y.shape == ref_y.shape
    np.testing.assert_array_equal(h_t, ref_h.astype(F32))


def _backward(kind, cfg, args, gy, gh, gates, hidden):
    """The six gradients (the RNN's bias gradient twice) from the emulated backward, NaN-prefilled."""
    x, h0, w_ih, w_hh, _, _ = args
    t, b, i, h = cfg.t, cfg.b, cfg.i, cfg.h
    rows = kind.gates * h
    got = [_nan((t, b, i)), _nan((b, h)), _nan((rows, i)), _nan((rows, h)), _nan(rows), _nan(rows)]
    bias_hh = got[5] if kind.nl is None else None
    _driver().dk_recurrent_backward(
        CODES[kind.name], t, b, i, h, int(cfg.reverse), 0, _arg(gy), _arg(gh), x, _arg(h0), w_ih, w_hh,
        _arg(gates), hidden, *got[:5], _arg(bias_hh),
    )  # fmt: skip
    if kind.nl is not None:
        got[5] = got[4]
    return got


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("grads", ["all", "y_only", "none"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=Cfg.id)
def test_layer_backward_matches_float64_and_the_cpu(kind, cfg, grads, rng):
    """From the emulated forward's cache and from the CPU op's: the same gradients."""
    kind = Kind(kind)
    args = make_inputs(rng, kind, cfg, F32)
    x, h0, w_ih, w_hh = args[:4]
    gy = rand(rng, (cfg.t, cfg.b, cfg.h), F32) if grads != "none" else None
    gh = rand(rng, (cfg.b, cfg.h), F32) if grads == "all" else None
    _, gates, hidden = _forward(kind, cfg, args, True)
    cpu_cache = _cpu_cache(kind, cfg, args)
    cpu = kind.backward(gy, gh, x, h0, w_ih, w_hh, cpu_cache, reverse=cfg.reverse)
    refs = kind.backward_ref(gy, gh, *args, reverse=cfg.reverse)
    runs = (
        ("", _backward(kind, cfg, args, gy, gh, gates, hidden)),
        (" (the CPU's cache)", _backward(kind, cfg, args, gy, gh, getattr(cpu_cache, "gates", None), cpu_cache.hidden)),
    )
    for source, got in runs:
        for name, g, ref, c in zip(GRAD_NAMES, got, refs, cpu):
            what = f"{kind.name} {cfg.id()} {grads}{source}: {name}"
            if grads == "none":  # no gradient in: every gradient out is zero
                np.testing.assert_array_equal(g, np.zeros_like(g), err_msg=what)
                continue
            check(g, ref, F32, what, floor=1e-6)
            check(g, c.astype(np.float64), F32, f"{what} against the CPU's", floor=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg", EMPTY, ids=Cfg.id)
def test_layer_backward_without_a_gate(kind, cfg, rng):
    kind = Kind(kind)
    args = make_inputs(rng, kind, cfg, F32)
    t, b, h = cfg.t, cfg.b, cfg.h
    gy, gh = rand(rng, (t, b, h), F32), rand(rng, (b, h), F32)
    gates = np.zeros((t, b, 4 * h), F32) if kind.nl is None else None
    got = _backward(kind, cfg, args, gy, gh, gates, np.zeros((t, b, h), F32))
    refs = kind.backward_ref(gy, gh, *args)
    for name, g, ref in zip(GRAD_NAMES, got, refs):
        np.testing.assert_allclose(g, ref, rtol=1e-6, atol=0, err_msg=f"{kind.name} {cfg.id()}: {name}")
