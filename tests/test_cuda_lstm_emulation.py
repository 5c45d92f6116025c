"""The LSTM kernels of csrc/cuda/lstm run on the host (tests/cuda_emulation): the fused cell
passes and the bias sum against float64 NumPy, and the whole layer (the GEMMs through the GEMM
dispatcher's FP32 kernel) on both paths, the per-step one and the persistent one (its grid capped
to one block, the only grid a grid barrier can span here), forward and backward against the float64
references of tests/reference.py and the CPU op. Odd sizes, T = 0 and 1, I = 0, no state, no bias,
reverse, inference and cached forwards, outputs prefilled with NaN. Needs the source tree and a C++
compiler, not a GPU; the problems are small."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

emulation = pytest.importorskip(
    "test_cuda_emulation", reason="the CUDA emulation harness (tests/test_cuda_emulation.py) is not in this tree"
)
from test_cuda_lstm import check_layer_forward  # noqa: E402
from test_lstm import Cfg, make_inputs  # noqa: E402

from checks import F32, check, rand  # noqa: E402
from reference import lstm_backward_ref, lstm_ref  # noqa: E402

NULL = ctypes.c_void_p(None)
#: deepkern::cuda::LstmPath codes (csrc/cuda/lstm/lstm.h).
PATHS = {"automatic": 0, "per_step": 1, "persistent": 2}

CONFIGS = [
    Cfg(3, 3, 5, 7),
    Cfg(4, 2, 3, 5, reverse=True),
    Cfg(1, 1, 1, 1),
    Cfg(2, 5, 4, 3, bias=False, state=False),
    Cfg(3, 2, 0, 4),  # no input feature: the gate sums start from zero
    Cfg(5, 1, 2, 9, state=False, reverse=True),
]
EMPTY = [Cfg(0, 3, 5, 4), Cfg(0, 2, 3, 2, state=False), Cfg(3, 0, 2, 3), Cfg(2, 3, 4, 0)]


def _driver():
    return emulation.load_driver("lstm")


def _arg(a):
    return NULL if a is None else a


def _nan(shape):
    return np.full(shape, np.nan, np.float32)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


# ---- the cell kernels --------------------------------------------------------------------------


def _cell_forward_ref(pre, bias, c_prev):
    s = pre.astype(np.float64) + (0.0 if bias is None else bias.astype(np.float64))
    i, f, g, o = np.split(s, 4, axis=1)
    i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
    c = i * g + (0.0 if c_prev is None else f * c_prev.astype(np.float64))
    return np.concatenate([i, f, g, o], axis=1), c, o * np.tanh(c)


@pytest.mark.parametrize(("batch", "hidden"), [(1, 1), (3, 5), (7, 37), (2, 300)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("c_prev", [True, False])
def test_cell_forward_matches_float64(batch, hidden, bias, c_prev, rng):
    pre = rand(rng, (batch, 4 * hidden), F32) * 2
    b = rand(rng, 4 * hidden, F32) if bias else None
    cp = rand(rng, (batch, hidden), F32) if c_prev else None
    act, c, h, y = _nan((batch, 4 * hidden)), _nan((batch, hidden)), _nan((batch, hidden)), _nan((batch, hidden))
    _driver().dk_lstm_cell_forward(batch, hidden, pre, _arg(b), _arg(cp), act, c, h, y)
    ref_act, ref_c, ref_h = _cell_forward_ref(pre, b, cp)
    what = f"cell forward B={batch} H={hidden} bias={bias} c_prev={c_prev}"
    check(act, ref_act, F32, f"{what}: gates")
    check(c, ref_c, F32, f"{what}: c")
    check(h, ref_h, F32, f"{what}: h")
    np.testing.assert_array_equal(y, h, err_msg=f"{what}: y is h")


def test_cell_forward_in_place_and_without_optional_outputs(rng):
    """act may be pre itself (the cached forward); act and y null write neither."""
    batch, hidden = 3, 6
    pre = rand(rng, (batch, 4 * hidden), F32)
    ref_act, ref_c, ref_h = _cell_forward_ref(pre, None, None)
    inplace, c, h = pre.copy(), _nan((batch, hidden)), _nan((batch, hidden))
    _driver().dk_lstm_cell_forward(batch, hidden, inplace, NULL, NULL, inplace, c, h, NULL)
    check(inplace, ref_act, F32, "gates written over the sums")
    untouched = pre.copy()
    _driver().dk_lstm_cell_forward(batch, hidden, untouched, NULL, NULL, NULL, c, h, NULL)
    np.testing.assert_array_equal(untouched, pre, err_msg="act null: the sums are not written")
    check(h, ref_h, F32, "h")
    check(c, ref_c, F32, "c")


@pytest.mark.parametrize(("batch", "hidden"), [(1, 1), (3, 5), (4, 33)])
@pytest.mark.parametrize("c_prev", [True, False])
@pytest.mark.parametrize("grad_y", [True, False])
def test_cell_backward_matches_float64(batch, hidden, c_prev, grad_y, rng):
    gates = np.concatenate(
        [
            _sigmoid(rand(rng, (batch, hidden), F32)),
            _sigmoid(rand(rng, (batch, hidden), F32)),
            np.tanh(rand(rng, (batch, hidden), F32)),
            _sigmoid(rand(rng, (batch, hidden), F32)),
        ],
        axis=1,
    ).astype(F32)
    c, dh, dc = (rand(rng, (batch, hidden), F32) for _ in range(3))
    cp = rand(rng, (batch, hidden), F32) if c_prev else None
    gy = rand(rng, (batch, hidden), F32) if grad_y else None
    dc_io, dg = dc.copy(), _nan((batch, 4 * hidden))
    _driver().dk_lstm_cell_backward(batch, hidden, gates, c, _arg(cp), _arg(gy), dh, dc_io, dg)
    i, f, g, o = np.split(gates.astype(np.float64), 4, axis=1)
    tc = np.tanh(c.astype(np.float64))
    dhj = dh + (0.0 if gy is None else gy.astype(np.float64))
    dct = dc + dhj * o * (1 - tc * tc)
    c_in = 0.0 if cp is None else cp.astype(np.float64)
    ref = np.concatenate(
        [dct * g * i * (1 - i), dct * c_in * f * (1 - f), dct * i * (1 - g * g), dhj * tc * o * (1 - o)], axis=1
    )
    what = f"cell backward B={batch} H={hidden} c_prev={c_prev} grad_y={grad_y}"
    check(dg, ref, F32, f"{what}: dgates", floor=1e-6)
    check(dc_io, dct * f, F32, f"{what}: dc")


@pytest.mark.parametrize(("rows", "cols"), [(0, 5), (1, 1), (9, 33), (100, 70)])
def test_column_sums(rows, cols, rng):
    a = rand(rng, (rows, cols), F32)
    out = _nan(cols + 3)
    _driver().dk_lstm_column_sums(rows, cols, a, out)
    check(out[:cols], a.astype(np.float64).sum(axis=0), F32, f"column sums {rows}x{cols}", floor=1e-6)
    assert np.isnan(out[cols:]).all(), "wrote past the last column"


# ---- the layer ---------------------------------------------------------------------------------


def _forward(cfg, args, path, cached, max_blocks=1):
    """y, h_T, c_T (and the cache gates, cells, hidden when cached) from the emulated layer, and the
    path taken; the persistent grid capped to ``max_blocks``."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = args
    bias = None if b_ih is None else (b_ih + b_hh).astype(F32)
    t, b, h = cfg.t, cfg.b, cfg.h
    outs = [_nan((t, b, h)), _nan((b, h)), _nan((b, h))]
    cache = [_nan((t, b, 4 * h)), _nan((t, b, h)), _nan((t, b, h))] if cached else [None] * 3
    driver = _driver()
    driver.dk_lstm_forward(
        t, b, cfg.i, h, int(cfg.reverse), PATHS[path], max_blocks, 0, x, _arg(h0), _arg(c0), w_ih, w_hh, _arg(bias),
        *outs, *(_arg(a) for a in cache),
    )  # fmt: skip
    taken = np.zeros(1, np.int64)
    driver.dk_lstm_last_path(taken)
    return outs, cache, int(taken[0])


@pytest.mark.parametrize("path", ["per_step", "persistent"])
@pytest.mark.parametrize("cached", [True, False], ids=["cached", "inference"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=Cfg.id)
def test_layer_forward_matches_float64_and_the_cpu(cfg, path, cached, rng):
    args = make_inputs(rng, cfg, F32)
    outs, cache, taken = _forward(cfg, args, path, cached)
    assert taken == PATHS[path], f"{cfg.id()}: the forward took path {taken}, forced {path}"
    what = f"{cfg.id()} {path} {'cached' if cached else 'inference'}"
    check_layer_forward(cfg, args, outs, cache if cached else None, what)


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "inference"])
@pytest.mark.parametrize(
    ("cfg", "blocks"), [(Cfg(1, 33, 4, 7), 3), (Cfg(1, 40, 3, 10, reverse=True), 4), (Cfg(1, 32, 2, 5), 5)], ids=str
)
def test_persistent_kernel_splits_the_units_over_blocks(cfg, blocks, cached, rng):
    """Several blocks, each with its share of the hidden units (the last one's smaller); one step,
    the only sequence whose blocks need not wait for each other here."""
    args = make_inputs(rng, cfg, F32)
    outs, cache, taken = _forward(cfg, args, "persistent", cached, max_blocks=blocks)
    assert taken == PATHS["persistent"]
    check_layer_forward(cfg, args, outs, cache if cached else None, f"{cfg.id()} on {blocks} blocks")


def test_emulated_grid_barrier_needs_a_grid_of_one_block(rng):
    cfg = Cfg(2, 32, 2, 6)
    with pytest.raises(RuntimeError, match="grid_barrier.*one block"):
        _forward(cfg, make_inputs(rng, cfg, F32), "persistent", False, max_blocks=2)


@pytest.mark.parametrize("path", ["per_step", "persistent"])
@pytest.mark.parametrize("cfg", EMPTY, ids=Cfg.id)
def test_layer_without_a_gate_passes_the_states_through(cfg, path, rng):
    args = make_inputs(rng, cfg, F32)
    (y, h_t, c_t), _, _ = _forward(cfg, args, path, True)
    ref_y, ref_h, ref_c = lstm_ref(*args)  # h0 and c0 (zeros when None)
    assert y.shape == ref_y.shape
    np.testing.assert_array_equal(h_t, ref_h.astype(F32))
    np.testing.assert_array_equal(c_t, ref_c.astype(F32))


def test_forced_persistent_path_refuses_a_large_hidden_size(rng):
    cfg = Cfg(1, 1, 1, 257)
    with pytest.raises(RuntimeError, match="persistent path cannot take B = 1, H = 257"):
        _forward(cfg, make_inputs(rng, cfg, F32), "persistent", True)


def test_automatic_path_takes_the_persistent_kernel_for_small_layers(rng):
    cfg = Cfg(2, 2, 3, 4)
    args = make_inputs(rng, cfg, F32)
    (y, _, _), _, taken = _forward(cfg, args, "automatic", False)
    assert taken == PATHS["persistent"]
    check(y, lstm_ref(*args)[0], F32, "automatic path")


@pytest.mark.parametrize("grads", ["all", "y_only", "none"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=Cfg.id)
def test_layer_backward_matches_float64_and_the_cpu(cfg, grads, rng):
    deepkern_ops = pytest.importorskip("deepkern.ops")
    args = make_inputs(rng, cfg, F32)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = args
    t, b, i, h = cfg.t, cfg.b, cfg.i, cfg.h
    gy = rand(rng, (t, b, h), F32) if grads != "none" else None
    gh, gc = (rand(rng, (b, h), F32), rand(rng, (b, h), F32)) if grads == "all" else (None, None)
    _, (gates, cells, hidden), _ = _forward(cfg, args, "per_step", True)
    got = [_nan((t, b, i)), _nan((b, h)), _nan((b, h)), _nan((4 * h, i)), _nan((4 * h, h)), _nan(4 * h)]
    _driver().dk_lstm_backward(
        t, b, i, h, int(cfg.reverse), 0, _arg(gy), _arg(gh), _arg(gc), x, _arg(h0), _arg(c0), w_ih, w_hh,
        gates, cells, hidden, *got,
    )  # fmt: skip
    refs = lstm_backward_ref(gy, gh, gc, *args, reverse=cfg.reverse)
    *_, cache = deepkern_ops.lstm(*args, reverse=cfg.reverse, return_cache=True)
    cpu = deepkern_ops.lstm_backward(gy, gh, gc, x, h0, c0, w_ih, w_hh, cache, reverse=cfg.reverse)
    names = ("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_bias")
    for name, g, ref, c in zip(names, got, refs, cpu):
        if grads == "none":  # no gradient in: every gradient out is zero
            np.testing.assert_array_equal(g, np.zeros_like(g), err_msg=f"{cfg.id()}: {name}")
            continue
        check(g, ref, F32, f"{cfg.id()} {grads}: {name}", floor=1e-6)
        check(g, c.astype(np.float64), F32, f"{cfg.id()} {grads}: {name} against the CPU's", floor=1e-6)


@pytest.mark.parametrize("cfg", EMPTY, ids=Cfg.id)
def test_layer_backward_without_a_gate(cfg, rng):
    args = make_inputs(rng, cfg, F32)
    x, h0, c0, w_ih, w_hh, _, _ = args
    t, b, i, h = cfg.t, cfg.b, cfg.i, cfg.h
    gy, gh, gc = rand(rng, (t, b, h), F32), rand(rng, (b, h), F32), rand(rng, (b, h), F32)
    cache = [np.zeros((t, b, 4 * h), F32), np.zeros((t, b, h), F32), np.zeros((t, b, h), F32)]
    got = [_nan((t, b, i)), _nan((b, h)), _nan((b, h)), _nan((4 * h, i)), _nan((4 * h, h)), _nan(4 * h)]
    _driver().dk_lstm_backward(
        t, b, i, h, 0, 0, gy, gh, gc, x, _arg(h0), _arg(c0), w_ih, w_hh, *cache, *got
    )  # fmt: skip
    refs = lstm_backward_ref(gy, gh, gc, *args)
    for name, g, ref in zip(("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_bias"), got, refs):
        np.testing.assert_allclose(g, ref, rtol=1e-6, atol=0, err_msg=f"{cfg.id()}: {name}")
