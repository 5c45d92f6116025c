"""The contract of deepkern.ops.lstm_cell, lstm_cell_backward, lstm and lstm_backward
(torch.nn.LSTMCell and one layer of torch.nn.LSTM: weights w_ih (4H, I), w_hh (4H, H), biases (4H,),
gate order i, f, g, o).

Every result is compared with the float64 references in tests/reference.py computed from the same
inputs: ||out - ref|| / ||ref|| below 1e-5 for float32 and 1e-12 for float64. Weights are drawn as
PyTorch initialises them, U(-1/sqrt(H), 1/sqrt(H)), inputs and states ~N(0, 1); with that scale the
recurrence is contractive and float32 rounding does not grow with the sequence length (measured:
about 3e-7 for T = 100, for PyTorch's float32 LSTM as well), so the long sequences keep the 1e-5 bound.

The gradients are checked against central finite differences in float64 through whole sequences
(every input, state, weight and bias), against the step-by-step BPTT reference on bigger cases, and,
where PyTorch is installed, against torch.nn.LSTMCell / torch.nn.LSTM (both directions of a
bidirectional one) + autograd. Before each call a NaN-filled block of the results' sizes is freed
(see test_conv.poison_heap) so an element the kernel forgets to write shows up as NaN. The cases run
on every device (the ``device`` fixture): the references are computed from the host arrays, the ops
run on copies on the device.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import deepkern
import numpy as np
import pytest
from deepkern.ops import lstm, lstm_backward, lstm_cell, lstm_cell_backward

from checks import F32, F64, check, poison_heap, raises_naming, rand, shape_pattern
from conftest import on_device, ones_on, to_host
from reference import lstm_backward_ref, lstm_cell_backward_ref, lstm_cell_ref, lstm_ref

DTYPES = [F32, F64]
GRAD_NAMES = ("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh")
CELL_GRAD_NAMES = ("grad_x", "grad_h", "grad_c", "grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh")


# ----------------------------------------------------------------------------------------------
# configurations


@dataclasses.dataclass(frozen=True)
class Cfg:
    """One LSTM layer call: x (T, B, I), hidden size H; ``bias``: b_ih and b_hh given (else None);
    ``state``: h0 and c0 given (else None, zeros); ``reverse``: steps T-1 .. 0."""

    t: int
    b: int
    i: int
    h: int
    bias: bool = True
    state: bool = True
    reverse: bool = False

    def id(self) -> str:
        return (
            f"T{self.t}-B{self.b}-I{self.i}-H{self.h}"
            + ("" if self.bias else "-nobias")
            + ("" if self.state else "-nostate")
            + ("-rev" if self.reverse else "")
        )

    def __str__(self) -> str:
        return (
            f"x ({self.t}, {self.b}, {self.i}), H={self.h}, bias={self.bias}, "
            f"h0/c0={'given' if self.state else 'None'}, reverse={self.reverse}"
        )

    @property
    def macs(self) -> int:
        return self.t * self.b * 4 * self.h * (self.i + self.h)


SIZES = (1, 3, 7, 17, 33)
MAX_MACS = 2_000_000  # keeps the float64 references (one NumPy step per t) and the file fast


def _random_configs(count: int, seed: int):
    rng = np.random.default_rng(seed)
    configs, seen = [], set()
    while len(configs) < count:
        cfg = Cfg(
            t=int(rng.choice([1, 2, 3, 5, 8, 13])),
            b=int(rng.choice(SIZES)),
            i=int(rng.choice(SIZES)),
            h=int(rng.choice(SIZES)),
            bias=bool(rng.random() < 0.7),
            state=bool(rng.random() < 0.7),
            reverse=bool(rng.random() < 0.5),
        )
        if cfg.macs > MAX_MACS or cfg.id() in seen:
            continue
        seen.add(cfg.id())
        configs.append(cfg)
    return configs


#: Named corner cases, each for a reason.
CORNERS = [
    Cfg(1, 1, 1, 1),  # everything 1
    Cfg(1, 1, 1, 1, bias=False, state=False, reverse=True),
    Cfg(1, 3, 7, 17),  # one step
    Cfg(1, 3, 7, 17, reverse=True),  # one step reversed: same as forward
    Cfg(5, 1, 33, 1),  # H = 1: gates are 4 single columns
    Cfg(5, 17, 1, 7, reverse=True),  # I = 1
    Cfg(4, 1, 17, 33, bias=False, state=False),  # batch 1, zero initial state
    Cfg(6, 7, 3, 33, state=False, reverse=True),
    Cfg(9, 33, 17, 3, bias=False),
    Cfg(20, 8, 64, 64),  # vector-width multiples
    Cfg(12, 5, 65, 63, reverse=True),  # one off the vector widths
    Cfg(8, 16, 256, 128, state=False),  # the benchmark's fast path
    Cfg(100, 2, 16, 17),  # a long sequence (see the module docstring)
    Cfg(100, 3, 9, 33, bias=False, reverse=True),
]

CONFIGS = CORNERS + _random_configs(30, seed=20240611)

CELL_CONFIGS = [  # (B, I, H, bias)
    (1, 1, 1, True),
    (1, 33, 1, False),
    (3, 7, 17, True),
    (7, 1, 3, True),
    (17, 33, 7, False),
    (33, 17, 33, True),
    (2, 3, 64, True),
    (5, 65, 63, True),
    (32, 256, 256, True),
    (1, 512, 129, False),
]
EMPTY_CELLS = [(0, 5, 4, True), (3, 0, 4, True), (3, 5, 0, False), (0, 0, 0, True)]  # see test_lstm_empty_sizes
CELL_CONFIGS += EMPTY_CELLS


def _cell_id(c):
    b, i, h, bias = c
    return f"B{b}-I{i}-H{h}" + ("" if bias else "-nobias")


# ----------------------------------------------------------------------------------------------
# helpers


def make_weights(rng, i, h, dtype, bias=True):
    """PyTorch's LSTM initialisation: every weight and bias ~U(-1/sqrt(H), 1/sqrt(H))."""
    k = 1.0 / math.sqrt(max(h, 1))
    w_ih = rng.uniform(-k, k, (4 * h, i)).astype(dtype)
    w_hh = rng.uniform(-k, k, (4 * h, h)).astype(dtype)
    if not bias:
        return w_ih, w_hh, None, None
    return w_ih, w_hh, rng.uniform(-k, k, 4 * h).astype(dtype), rng.uniform(-k, k, 4 * h).astype(dtype)


def make_inputs(rng, cfg: Cfg, dtype):
    """(x, h0, c0, w_ih, w_hh, b_ih, b_hh) for ``cfg``."""
    x = rand(rng, (cfg.t, cfg.b, cfg.i), dtype)
    h0 = rand(rng, (cfg.b, cfg.h), dtype) if cfg.state else None
    c0 = rand(rng, (cfg.b, cfg.h), dtype) if cfg.state else None
    return (x, h0, c0) + make_weights(rng, cfg.i, cfg.h, dtype, cfg.bias)


def make_cell_inputs(rng, b, i, h, dtype, bias=True):
    """(x, h, c, w_ih, w_hh, b_ih, b_hh) for one cell step."""
    return (rand(rng, (b, i), dtype), rand(rng, (b, h), dtype), rand(rng, (b, h), dtype)) + make_weights(
        rng, i, h, dtype, bias
    )


def _copies(arrays):
    return [None if a is None else a.copy() for a in arrays]


def assert_unmodified(arrays, before, what):
    for k, (a, a0) in enumerate(zip(arrays, before)):
        if a is not None:
            np.testing.assert_array_equal(to_host(a), a0, err_msg=f"{what}: input {k} was modified")


def run_lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, return_cache=False):
    t, b = x.shape[:2]
    hid = w_hh.shape[1]
    poison_heap(((t, b, hid), x.dtype), ((b, hid), x.dtype), ((b, hid), x.dtype))
    out = lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse, return_cache=return_cache)
    n = 4 if return_cache else 3
    assert isinstance(out, tuple) and len(out) == n, (
        f"lstm(return_cache={return_cache}) returned {type(out).__name__} of length "
        f"{len(out) if hasattr(out, '__len__') else '?'}, expected a tuple of {n}"
    )
    return out


def run_lstm_backward(gy, gh, gc, x, h0, c0, w_ih, w_hh, cache, reverse):
    hid = w_hh.shape[1]
    poison_heap(
        (x.shape, x.dtype),
        ((x.shape[1], hid), x.dtype),
        (w_ih.shape, x.dtype),
        (w_hh.shape, x.dtype),
        ((4 * hid,), x.dtype),
    )
    out = lstm_backward(gy, gh, gc, x, h0, c0, w_ih, w_hh, cache, reverse=reverse)
    assert isinstance(out, tuple) and len(out) == 7, (
        f"lstm_backward returned {type(out).__name__} of length {len(out) if hasattr(out, '__len__') else '?'}, "
        f"expected the tuple {GRAD_NAMES}"
    )
    return out


def run_cell_backward(gh, gc, x, h, c, w_ih, w_hh, b_ih, b_hh):
    poison_heap((x.shape, x.dtype), (h.shape, x.dtype), (w_ih.shape, x.dtype), (w_hh.shape, x.dtype))
    out = lstm_cell_backward(gh, gc, x, h, c, w_ih, w_hh, b_ih, b_hh)
    assert isinstance(out, tuple) and len(out) == 7, (
        f"lstm_cell_backward returned {type(out).__name__} of length "
        f"{len(out) if hasattr(out, '__len__') else '?'}, expected the tuple {CELL_GRAD_NAMES}"
    )
    return out


def check_grads(got, refs, dtype, what, names=GRAD_NAMES, tol=None):
    for name, g, r in zip(names, got, refs):
        if r is None:
            assert g is None, f"{what}: {name} should be None (no such bias), got {type(g).__name__}"
        else:
            assert g is not None, f"{what}: {name} is None"
            check(g, r, dtype, f"{what}: {name}", tol=tol)


def forward_and_backward(args, cfg_reverse, gy, gh, gc):
    """deepkern's (y, h_T, c_T) and its seven gradients, the forward run with return_cache=True."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = args
    y, h_t, c_t, cache = run_lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, cfg_reverse, return_cache=True)
    return (y, h_t, c_t), run_lstm_backward(gy, gh, gc, x, h0, c0, w_ih, w_hh, cache, cfg_reverse)


# ----------------------------------------------------------------------------------------------
# empty sizes: any of T, B, I and H may be 0 (PyTorch's LSTM cell takes them all; its layer raises
# for T = 0, where ops.lstm passes the states through). The results have their shapes, every
# gradient that no gate reaches is zero.

EMPTY_CONFIGS = [
    Cfg(0, 3, 5, 4),  # no step: h_T, c_T = h0, c0, weight gradients zeros
    Cfg(0, 3, 5, 4, bias=False, state=False, reverse=True),
    Cfg(4, 0, 5, 3),  # no batch row: weight gradients zeros
    Cfg(4, 0, 5, 3, state=False, reverse=True),
    Cfg(3, 2, 5, 0),  # no hidden unit: grad_x zeros
    Cfg(3, 2, 0, 4),  # no input feature
    Cfg(0, 0, 0, 0),
    Cfg(2, 0, 0, 0, bias=False),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", EMPTY_CONFIGS, ids=Cfg.id)
def test_lstm_empty_sizes(device, cfg, dtype, rng):
    args = make_inputs(rng, cfg, dtype)
    grads = (
        rand(rng, (cfg.t, cfg.b, cfg.h), dtype),
        rand(rng, (cfg.b, cfg.h), dtype),
        rand(rng, (cfg.b, cfg.h), dtype),
    )
    refs = lstm_ref(*args, reverse=cfg.reverse)
    grad_refs = lstm_backward_ref(*grads, *args, reverse=cfg.reverse)
    on_dev = on_device(device, *args, *grads)
    what = f"lstm {cfg} {dtype}"
    for name, got, ref in zip(("y", "h_T", "c_T"), run_lstm(*on_dev[:7], cfg.reverse), refs):
        check(got, ref, dtype, f"{what}: {name}")
    out, got_grads = forward_and_backward(on_dev[:7], cfg.reverse, *on_dev[7:])
    for name, got, ref in zip(("y", "h_T", "c_T"), out, refs):
        check(got, ref, dtype, f"{what} return_cache=True: {name}")
    check_grads(got_grads, grad_refs, dtype, "lstm_backward " + what)


# ----------------------------------------------------------------------------------------------
# the cell against the float64 references


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_CONFIGS, ids=_cell_id)
def test_lstm_cell_forward(device, cell, dtype, rng):
    b, i, h, bias = cell
    args = make_cell_inputs(rng, b, i, h, dtype, bias)
    before = _copies(args)
    ref_h, ref_c = lstm_cell_ref(*args)
    args = on_device(device, *args)
    poison_heap(((b, h), dtype), ((b, h), dtype))
    out = lstm_cell(*args)
    assert isinstance(out, tuple) and len(out) == 2, (
        f"lstm_cell returned {type(out).__name__}, expected (h_next, c_next)"
    )
    what = f"lstm_cell B={b} I={i} H={h} bias={bias} {dtype}"
    check(out[0], ref_h, dtype, what + " h_next")
    check(out[1], ref_c, dtype, what + " c_next")
    assert_unmodified(args, before, what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_CONFIGS, ids=_cell_id)
def test_lstm_cell_backward(device, cell, dtype, rng):
    b, i, h, bias = cell
    args = make_cell_inputs(rng, b, i, h, dtype, bias)
    gh, gc = rand(rng, (b, h), dtype), rand(rng, (b, h), dtype)
    for grads in ((gh, gc), (gh, None), (None, gc)):
        before = _copies(args + grads)
        refs = list(lstm_cell_backward_ref(*grads, *args))
        if not bias:
            refs[5] = refs[6] = None
        on_dev = on_device(device, *args, *grads)
        got = run_cell_backward(*on_dev[7:], *on_dev[:7])
        what = (
            f"lstm_cell_backward B={b} I={i} H={h} bias={bias} {dtype} grad_h_next "
            f"{'None' if grads[0] is None else 'given'}, grad_c_next {'None' if grads[1] is None else 'given'}"
        )
        check_grads(got, refs, dtype, what, CELL_GRAD_NAMES)
        assert_unmodified(on_dev, before, what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_lstm_cell_backward_one_bias(device, dtype, rng):
    """Each bias gradient is None exactly when that bias is None."""
    x, h, c, w_ih, w_hh, b_ih, b_hh = args = make_cell_inputs(rng, 3, 5, 7, dtype)
    gh, gc = rand(rng, (3, 7), dtype), rand(rng, (3, 7), dtype)
    dgh, dgc, dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh = on_device(device, gh, gc, *args)
    refs = lstm_cell_backward_ref(gh, gc, x, h, c, w_ih, w_hh, b_ih, None)
    got = run_cell_backward(dgh, dgc, dx, dh, dc, dw_ih, dw_hh, db_ih, None)
    check_grads(got, refs[:6] + (None,), dtype, f"lstm_cell_backward b_ih given, b_hh None {dtype}", CELL_GRAD_NAMES)
    refs = lstm_cell_backward_ref(gh, gc, x, h, c, w_ih, w_hh, None, b_hh)
    got = run_cell_backward(dgh, dgc, dx, dh, dc, dw_ih, dw_hh, None, db_hh)
    check_grads(
        got, refs[:5] + (None, refs[6]), dtype, f"lstm_cell_backward b_ih None, b_hh given {dtype}", CELL_GRAD_NAMES
    )
    check(
        lstm_cell(dx, dh, dc, dw_ih, dw_hh, None, db_hh)[0],
        lstm_cell_ref(x, h, c, w_ih, w_hh, None, b_hh)[0],
        dtype,
        f"lstm_cell b_ih None, b_hh given {dtype}",
    )


# ----------------------------------------------------------------------------------------------
# the layer against the float64 references


def test_configurations_cover_the_space():
    """The list really contains what the module promises (guards edits to the draw)."""
    assert {1} <= {c.t for c in CONFIGS} and max(c.t for c in CONFIGS) >= 100
    for field in ("b", "i", "h"):
        values = {getattr(c, field) for c in CONFIGS}
        assert {1, 3, 7, 17, 33} <= values, (field, values)
    for flags in [(b, s, r) for b in (False, True) for s in (False, True) for r in (False, True)]:
        assert any((c.bias, c.state, c.reverse) == flags for c in CONFIGS), flags


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", CONFIGS, ids=Cfg.id)
def test_lstm_forward(device, cfg, dtype, rng):
    args = make_inputs(rng, cfg, dtype)
    before = _copies(args)
    refs = lstm_ref(*args, reverse=cfg.reverse)
    args = on_device(device, *args)
    what = f"lstm {cfg} {dtype}"
    for return_cache in (False, True):
        out = run_lstm(*args, cfg.reverse, return_cache=return_cache)
        for name, got, ref in zip(("y", "h_T", "c_T"), out, refs):
            check(got, ref, dtype, f"{what} return_cache={return_cache}: {name}")
    assert_unmodified(args, before, what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", CONFIGS, ids=Cfg.id)
def test_lstm_backward(device, cfg, dtype, rng):
    args = make_inputs(rng, cfg, dtype)
    gy = rand(rng, (cfg.t, cfg.b, cfg.h), dtype)
    gh, gc = rand(rng, (cfg.b, cfg.h), dtype), rand(rng, (cfg.b, cfg.h), dtype)
    # All three output gradients, then each of them alone (the others None).
    for grads in ((gy, gh, gc), (gy, None, None), (None, gh, None), (None, None, gc)):
        before = _copies(args + grads)
        refs = lstm_backward_ref(*grads, *args, reverse=cfg.reverse)
        on_dev = on_device(device, *args, *grads)
        _, got = forward_and_backward(on_dev[:7], cfg.reverse, *on_dev[7:])
        given = "/".join(n for n, g in zip(("grad_y", "grad_h_T", "grad_c_T"), grads) if g is not None)
        what = f"lstm_backward {cfg} {dtype} given {given}"
        check_grads(got, refs, dtype, what)
        assert_unmodified(on_dev, before, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "cfg",
    [
        Cfg(9, 1, 7, 64),
        Cfg(7, 1, 5, 65, reverse=True),
        Cfg(6, 1, 33, 129, state=False),
        Cfg(5, 1, 3, 200, bias=False, reverse=True),
        Cfg(6, 3, 7, 64),
        Cfg(5, 17, 4, 97, state=False, reverse=True),
        Cfg(4, 9, 1, 70, bias=False),
        Cfg(3, 40, 6, 31),
        Cfg(3, 2, 3, 800, reverse=True),
        Cfg(5, 5, 3, 40),
        Cfg(4, 70, 5, 40, state=False),
        Cfg(3, 67, 9, 96, reverse=True),
        Cfg(3, 3, 4, 20),
    ],
    ids=Cfg.id,
)
def test_lstm_team(device, cfg, dtype, threads, rng):
    """Forward and backward run every step inside one parallel region, each thread owning a block
    of the work: a share of the hidden units (H >= 64 on 2 threads; odd H: unequal shares whose
    four gate blocks cross panel edges; H = 800 on one thread: a W_hh share of several column
    blocks, walked in alternating directions), or of the batch rows (H < 64, or 32+ rows per
    thread with a small W_hh; odd B: unequal shares); H = 20 with B = 3: a team of one. Forward
    with and without the cache, and the backward from that cache, against the float64 references."""
    args = make_inputs(rng, cfg, dtype)
    refs = lstm_ref(*args, reverse=cfg.reverse)
    on_dev = on_device(device, *args)
    for got_all in (lstm(*on_dev, reverse=cfg.reverse), lstm(*on_dev, reverse=cfg.reverse, return_cache=True)[:3]):
        for name, got, ref in zip(("y", "h_T", "c_T"), got_all, refs):
            check(got, ref, dtype, f"{cfg}, {threads} threads: {name}")
    y, _, _, cache = lstm(*on_dev, reverse=cfg.reverse, return_cache=True)
    grad_y = rand(rng, y.shape, dtype)
    grads = lstm_backward(on_device(device, grad_y), None, None, *on_dev[:5], cache, reverse=cfg.reverse)
    ref_grads = lstm_backward_ref(grad_y, None, None, *args, reverse=cfg.reverse)
    for name, got, ref in zip(GRAD_NAMES, grads, ref_grads):
        if ref is not None:
            check(got, ref, dtype, f"{cfg}, {threads} threads: {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("state", [True, False])
def test_lstm_forward_projects_in_chunks(device, dtype, reverse, state, rng):
    """The forward projects the input a few steps at a time (about 4 MB of gates per chunk: 7 steps
    here in float64, 8 in float32, so 17 / 21 steps end in a partial chunk); without return_cache
    it keeps no per-step cache: the same y, h_T, c_T as the cached path, bit for bit (the same
    kernels sum over K in the same order), and as the float64 reference; the backward from the
    chunked cache matches its reference too."""
    t, b, i, h = (17, 131, 5, 129) if dtype == F64 else (21, 160, 9, 200)
    cfg = Cfg(t, b, i, h, state=state, reverse=reverse)
    args = make_inputs(rng, cfg, dtype)
    refs = lstm_ref(*args, reverse=reverse)
    on_dev = on_device(device, *args)
    fast = lstm(*on_dev, reverse=reverse)
    *cached, cache = lstm(*on_dev, reverse=reverse, return_cache=True)
    for name, got, same, ref in zip(("y", "h_T", "c_T"), fast, cached, refs):
        check(got, ref, dtype, f"{cfg}: {name}")
        np.testing.assert_array_equal(
            to_host(got), to_host(same), err_msg=f"{cfg}: {name} differs from the cached path"
        )
    grad_y = rand(rng, (t, b, h), dtype)
    grads = lstm_backward(on_device(device, grad_y), None, None, *on_dev[:5], cache, reverse=reverse)
    for name, got, ref in zip(GRAD_NAMES, grads, lstm_backward_ref(grad_y, None, None, *args, reverse=reverse)):
        if ref is not None:
            check(got, ref, dtype, f"{cfg}: {name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_lstm_reverse_is_the_flipped_sequence(device, dtype, rng):
    """reverse=True equals the forward direction over x[::-1], with y flipped back."""
    cfg = Cfg(7, 3, 5, 9)
    x, *rest = make_inputs(rng, cfg, dtype)
    x, flipped, *rest = on_device(device, x, np.ascontiguousarray(x[::-1]), *rest)
    y_r, h_r, c_r = run_lstm(x, *rest, True)
    y_f, h_f, c_f = (to_host(r) for r in run_lstm(flipped, *rest, False))
    what = f"lstm {cfg} {dtype}: reverse vs forward over x[::-1]"
    check(y_r, y_f[::-1].astype(np.float64), dtype, what + " y")
    check(h_r, h_f.astype(np.float64), dtype, what + " h_T")
    check(c_r, c_f.astype(np.float64), dtype, what + " c_T")


# ----------------------------------------------------------------------------------------------
# finite differences (float64) through whole sequences

FD_CONFIGS = [
    Cfg(1, 1, 1, 1),
    Cfg(3, 2, 3, 3),
    Cfg(4, 2, 2, 3, reverse=True),
    Cfg(4, 1, 3, 2, bias=False),
    Cfg(3, 2, 1, 3, state=False, reverse=True),
    Cfg(2, 2, 3, 1),
]
FD_STEP = 1e-5
#: Central differences of a smooth loss: truncation ~ FD_STEP^2 and rounding ~ 1e-16 / FD_STEP.
FD_TOL = 1e-7


def _fd_entries(rng, arr):
    return [np.unravel_index(int(k), arr.shape) for k in rng.choice(arr.size, size=min(5, arr.size), replace=False)]


@pytest.mark.parametrize("cfg", FD_CONFIGS, ids=Cfg.id)
def test_lstm_backward_finite_differences(device, cfg, rng):
    """loss = sum(gy * y) + sum(gh * h_T) + sum(gc * c_T): central differences at a few random entries
    of x, h0, c0, w_ih, w_hh, b_ih, b_hh match lstm_backward. Without given initial states the
    perturbed h0 and c0 start from zeros (what None means); without biases the bias gradient is taken
    at zero biases."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = make_inputs(rng, cfg, F64)
    gy = rand(rng, (cfg.t, cfg.b, cfg.h), F64)
    gh, gc = rand(rng, (cfg.b, cfg.h), F64), rand(rng, (cfg.b, cfg.h), F64)
    on_dev = on_device(device, x, h0, c0, w_ih, w_hh, b_ih, b_hh, gy, gh, gc)
    grads = [to_host(g) for g in forward_and_backward(on_dev[:7], cfg.reverse, *on_dev[7:])[1]]
    zeros_state = np.zeros((cfg.b, cfg.h))
    zeros_bias = np.zeros(4 * cfg.h)
    point = dict(
        x=x,
        h0=zeros_state if h0 is None else h0,
        c0=zeros_state if c0 is None else c0,
        w_ih=w_ih,
        w_hh=w_hh,
        b_ih=zeros_bias if b_ih is None else b_ih,
        b_hh=zeros_bias if b_hh is None else b_hh,
    )

    def loss(p):
        y, h_t, c_t = (to_host(r) for r in lstm(*on_device(device, *p.values()), reverse=cfg.reverse))
        return float(np.sum(gy * y) + np.sum(gh * h_t) + np.sum(gc * c_t))

    for name, grad in zip(point, grads):
        arr = point[name]
        assert grad is not None and grad.shape == arr.shape, f"lstm_backward {cfg}: grad_{name} = {grad!r}"
        for idx in _fd_entries(rng, arr):
            plus = {k: v.copy() for k, v in point.items()}
            minus = {k: v.copy() for k, v in point.items()}
            plus[name][idx] += FD_STEP
            minus[name][idx] -= FD_STEP
            fd = (loss(plus) - loss(minus)) / (2 * FD_STEP)
            assert abs(fd - grad[idx]) <= FD_TOL * (1.0 + abs(fd)), (
                f"lstm_backward {cfg}: grad_{name}{tuple(map(int, idx))} = {grad[idx]!r}, finite difference {fd!r}"
            )


@pytest.mark.parametrize("cell", [(1, 1, 1, True), (2, 3, 3, True), (2, 2, 3, False)], ids=_cell_id)
def test_lstm_cell_backward_finite_differences(device, cell, rng):
    b, i, h, bias = cell
    args = dict(zip(("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"), make_cell_inputs(rng, b, i, h, F64, True)))
    if not bias:  # the bias gradients must then be None; the rest is taken without biases
        args["b_ih"] = args["b_hh"] = None
    gh, gc = rand(rng, (b, h), F64), rand(rng, (b, h), F64)
    grads = dict(zip(args, (to_host(g) for g in run_cell_backward(*on_device(device, gh, gc, *args.values())))))

    def loss(p):
        h_next, c_next = (to_host(r) for r in lstm_cell(*on_device(device, *p.values())))
        return float(np.sum(gh * h_next) + np.sum(gc * c_next))

    for name, arr in args.items():
        if arr is None:
            assert grads[name] is None, f"lstm_cell_backward {cell}: grad_{name} should be None without that bias"
            continue
        grad = grads[name]
        assert grad is not None and grad.shape == arr.shape, f"lstm_cell_backward {cell}: grad_{name} = {grad!r}"
        for idx in _fd_entries(rng, arr):
            plus = {k: (None if v is None else v.copy()) for k, v in args.items()}
            minus = {k: (None if v is None else v.copy()) for k, v in args.items()}
            plus[name][idx] += FD_STEP
            minus[name][idx] -= FD_STEP
            fd = (loss(plus) - loss(minus)) / (2 * FD_STEP)
            assert abs(fd - grad[idx]) <= FD_TOL * (1.0 + abs(fd)), (
                f"lstm_cell_backward {cell}: grad_{name}{tuple(map(int, idx))} = {grad[idx]!r}, "
                f"finite difference {fd!r}"
            )


def test_lstm_cell_is_a_one_step_lstm(device, rng):
    """lstm over T = 1 is lstm_cell, and its backward is lstm_cell_backward (float64)."""
    x, h, c, w_ih, w_hh, b_ih, b_hh = on_device(device, *make_cell_inputs(rng, 3, 4, 5, F64))
    gh, gc = on_device(device, rand(rng, (3, 5), F64), rand(rng, (3, 5), F64))
    h1, c1 = (to_host(r) for r in lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh))
    (y, h_t, c_t), seq = forward_and_backward((x[None], h, c, w_ih, w_hh, b_ih, b_hh), False, None, gh, gc)
    check(y[0], h1.astype(F64), F64, "lstm T=1 y[0] vs lstm_cell h_next")
    check(c_t, c1.astype(F64), F64, "lstm T=1 c_T vs lstm_cell c_next")
    cell = [to_host(g) for g in run_cell_backward(gh, gc, x, h, c, w_ih, w_hh, b_ih, b_hh)]
    check(seq[0][0], cell[0], F64, "lstm_backward T=1 grad_x[0] vs lstm_cell_backward")
    for name, a, b in zip(GRAD_NAMES[1:], seq[1:], cell[1:]):
        check(a, b, F64, f"lstm_backward T=1 {name} vs lstm_cell_backward")


# ----------------------------------------------------------------------------------------------
# non-contiguous inputs: transposed and sliced views


def _view(rng, shape, kind, dtype, scale=1.0, device="cpu"):
    """An array of ``shape`` (values ~N(0, scale^2)) on ``device`` whose storage is not C-contiguous."""

    def store(s):
        return on_device(device, (rng.standard_normal(s) * scale).astype(dtype))

    if kind == "transposed":  # reversed axes of a C array (Fortran order)
        return store(shape[::-1]).T
    if kind == "sliced":  # every other element of a larger array, offset by one
        big = store(tuple(2 * n + 1 for n in shape))
        return big[tuple(slice(1, 1 + 2 * n, 2) for n in shape)]
    assert kind == "negative"
    return store(shape)[(slice(None, None, -1),) * len(shape)]


def _weights_view(rng, i, h, kind, dtype, device):
    """w_ih, w_hh, b_ih, b_hh as views on ``device``, at about PyTorch's init scale."""
    scale = 1.0 / math.sqrt(3 * h)  # the standard deviation of U(-1/sqrt(H), 1/sqrt(H))
    return [_view(rng, s, kind, dtype, scale, device) for s in ((4 * h, i), (4 * h, h), (4 * h,), (4 * h,))]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["transposed", "sliced", "negative"])
def test_lstm_views(device, kind, dtype, rng):
    """x as (B, T, I) storage seen as (T, B, I), and every other argument a non-contiguous view."""
    for cfg in (Cfg(5, 3, 7, 9), Cfg(4, 2, 17, 33, reverse=True), Cfg(2, 5, 3, 1)):
        if kind == "transposed":
            x = on_device(device, rand(rng, (cfg.b, cfg.t, cfg.i), dtype)).transpose(1, 0, 2)
        else:
            x = _view(rng, (cfg.t, cfg.b, cfg.i), kind, dtype, device=device)
        h0, c0 = (_view(rng, (cfg.b, cfg.h), kind, dtype, device=device) for _ in range(2))
        w_ih, w_hh, b_ih, b_hh = _weights_view(rng, cfg.i, cfg.h, kind, dtype, device)
        gy = _view(rng, (cfg.t, cfg.b, cfg.h), kind, dtype, device=device)
        gh, gc = (_view(rng, (cfg.b, cfg.h), kind, dtype, device=device) for _ in range(2))
        args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        assert not x.flags.c_contiguous and not w_ih.flags.c_contiguous
        before = [to_host(a).copy() for a in args + (gy, gh, gc)]
        host_args, (host_gy, host_gh, host_gc) = before[:7], before[7:]
        what = f"lstm {cfg} {dtype}, {kind} views (x strides {x.strides}, w_ih strides {w_ih.strides})"
        (y, h_t, c_t), grads = forward_and_backward(args, cfg.reverse, gy, gh, gc)
        for name, got, ref in zip(("y", "h_T", "c_T"), (y, h_t, c_t), lstm_ref(*host_args, reverse=cfg.reverse)):
            check(got, ref, dtype, f"{what}: {name}")
        check_grads(
            grads,
            lstm_backward_ref(host_gy, host_gh, host_gc, *host_args, reverse=cfg.reverse),
            dtype,
            "lstm_backward " + what,
        )
        # the cell on views of one step
        cell_args = (x[0],) + args[1:]
        host_cell_args = (host_args[0][0],) + tuple(host_args[1:])
        hn, cn = lstm_cell(*cell_args)
        ref_h, ref_c = lstm_cell_ref(*host_cell_args)
        check(hn, ref_h, dtype, f"lstm_cell {what}: h_next")
        check(cn, ref_c, dtype, f"lstm_cell {what}: c_next")
        check_grads(
            run_cell_backward(gh, gc, *cell_args),
            lstm_cell_backward_ref(host_gh, host_gc, *host_cell_args),
            dtype,
            f"lstm_cell_backward {what}",
            CELL_GRAD_NAMES,
        )
        assert_unmodified(args + (gy, gh, gc), before, what)


# ----------------------------------------------------------------------------------------------
# every kernel ISA at 1 and 2 threads

# Batch 1: H = 129 splits unevenly over a team (gate blocks padded to whole panels); H = 260 makes
# backward's packed GEMV (4H x H) large enough to split over threads, with an odd panel count.
ISA_CONFIGS = [
    Cfg(6, 5, 33, 17),
    Cfg(4, 32, 128, 64, state=False, reverse=True),
    Cfg(3, 1, 256, 129, bias=False),
    Cfg(2, 1, 5, 260),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_lstm_isa_threads(device, isa, threads, dtype, rng):
    for cfg in ISA_CONFIGS:
        args = make_inputs(rng, cfg, dtype)
        gy = rand(rng, (cfg.t, cfg.b, cfg.h), dtype)
        gh, gc = rand(rng, (cfg.b, cfg.h), dtype), rand(rng, (cfg.b, cfg.h), dtype)
        what = f"lstm {cfg} {dtype} isa={isa} threads={threads}"
        on_dev = on_device(device, *args, gy, gh, gc)
        (y, h_t, c_t), grads = forward_and_backward(on_dev[:7], cfg.reverse, *on_dev[7:])
        for name, got, ref in zip(("y", "h_T", "c_T"), (y, h_t, c_t), lstm_ref(*args, reverse=cfg.reverse)):
            check(got, ref, dtype, f"{what}: {name}")
        check_grads(grads, lstm_backward_ref(gy, gh, gc, *args, reverse=cfg.reverse), dtype, "lstm_backward " + what)
        # the cell on the first step's shapes
        cell_args = (args[0][0], rand(rng, (cfg.b, cfg.h), dtype), rand(rng, (cfg.b, cfg.h), dtype)) + args[3:]
        on_dev = on_device(device, gh, gc, *cell_args)
        for name, got, ref in zip(("h_next", "c_next"), lstm_cell(*on_dev[2:]), lstm_cell_ref(*cell_args)):
            check(got, ref, dtype, f"lstm_cell {what}: {name}")
        refs = list(lstm_cell_backward_ref(gh, gc, *cell_args))
        if not cfg.bias:
            refs[5] = refs[6] = None
        check_grads(run_cell_backward(*on_dev), refs, dtype, f"lstm_cell_backward {what}", CELL_GRAD_NAMES)


# ----------------------------------------------------------------------------------------------
# against PyTorch (where it is installed)


def _torch_grads(torch, tensors):
    return [None if t is None else t.grad.detach().numpy() for t in tensors]


@pytest.mark.parametrize("cell", [(3, 7, 17, True), (1, 33, 1, True), (5, 4, 6, False)] + EMPTY_CELLS, ids=_cell_id)
def test_lstm_cell_matches_torch(device, cell, rng):
    torch = pytest.importorskip("torch")
    b, i, h, bias = cell
    for dtype in DTYPES:
        x, hx, cx, w_ih, w_hh, b_ih, b_hh = make_cell_inputs(rng, b, i, h, dtype, bias)
        gh, gc = rand(rng, (b, h), dtype), rand(rng, (b, h), dtype)
        mod = torch.nn.LSTMCell(i, h, bias=bias, dtype=torch.float64)
        with torch.no_grad():  # float64 torch on the same (float32-rounded) values
            mod.weight_ih.copy_(torch.from_numpy(w_ih.astype(F64)))
            mod.weight_hh.copy_(torch.from_numpy(w_hh.astype(F64)))
            if bias:
                mod.bias_ih.copy_(torch.from_numpy(b_ih.astype(F64)))
                mod.bias_hh.copy_(torch.from_numpy(b_hh.astype(F64)))
        xt, ht, ct = (torch.tensor(a.astype(F64), requires_grad=True) for a in (x, hx, cx))
        h_next, c_next = mod(xt, (ht, ct))
        (
            (h_next * torch.from_numpy(gh.astype(F64))).sum() + (c_next * torch.from_numpy(gc.astype(F64))).sum()
        ).backward()
        what = f"lstm_cell B={b} I={i} H={h} bias={bias} {dtype} vs torch.nn.LSTMCell"
        on_dev = on_device(device, gh, gc, x, hx, cx, w_ih, w_hh, b_ih, b_hh)
        ours_h, ours_c = lstm_cell(*on_dev[2:])
        check(ours_h, h_next.detach().numpy(), dtype, what + " h_next")
        check(ours_c, c_next.detach().numpy(), dtype, what + " c_next")
        params = [mod.weight_ih, mod.weight_hh] + ([mod.bias_ih, mod.bias_hh] if bias else [None, None])
        expected = _torch_grads(torch, [xt, ht, ct] + params)
        check_grads(run_cell_backward(*on_dev), expected, dtype, what, CELL_GRAD_NAMES)


TORCH_CONFIGS = [Cfg(6, 3, 7, 17), Cfg(5, 2, 33, 3, bias=False), Cfg(1, 4, 5, 6), Cfg(9, 1, 16, 33, state=False)]


@pytest.mark.parametrize("cfg", TORCH_CONFIGS, ids=Cfg.id)
def test_lstm_matches_torch(device, cfg, rng):
    """One layer against torch.nn.LSTM, and reverse=True against the reverse direction of a
    bidirectional torch.nn.LSTM (its *_l0_reverse parameters, the second half of y and h_n[1])."""
    torch = pytest.importorskip("torch")
    T, B, I, H = cfg.t, cfg.b, cfg.i, cfg.h  # noqa: E741
    for dtype in DTYPES:
        mod = torch.nn.LSTM(I, H, bias=cfg.bias, bidirectional=True, dtype=torch.float64)
        x = rand(rng, (T, B, I), dtype)
        states = rand(rng, (2, 2, B, H), dtype) if cfg.state else np.zeros((2, 2, B, H), dtype)
        gy = rand(rng, (T, B, 2 * H), dtype)
        gh, gc = rand(rng, (2, B, H), dtype), rand(rng, (2, B, H), dtype)
        params = {}
        with torch.no_grad():  # the module's weights rounded to dtype, so both sides see the same values
            for name, p in mod.named_parameters():
                p.copy_(torch.from_numpy(p.detach().numpy().astype(dtype).astype(F64)))
                params[name] = p.detach().numpy().astype(dtype)
        xt = torch.tensor(x.astype(F64), requires_grad=True)
        h0t = torch.tensor(states[0].astype(F64), requires_grad=True)
        c0t = torch.tensor(states[1].astype(F64), requires_grad=True)
        y, (h_n, c_n) = mod(xt, (h0t, c0t)) if cfg.state else mod(xt)
        loss = (
            (y * torch.from_numpy(gy.astype(F64))).sum()
            + (h_n * torch.from_numpy(gh.astype(F64))).sum()
            + (c_n * torch.from_numpy(gc.astype(F64))).sum()
        )
        loss.backward()
        grad_x_total = np.zeros((T, B, I))
        for d, suffix in enumerate(("", "_reverse")):
            names = [f"weight_ih_l0{suffix}", f"weight_hh_l0{suffix}", f"bias_ih_l0{suffix}", f"bias_hh_l0{suffix}"]
            w = [params.get(n) for n in names]
            h0, c0 = (states[0][d], states[1][d]) if cfg.state else (None, None)
            reverse = d == 1
            what = (
                f"lstm {cfg.__class__(T, B, I, H, cfg.bias, cfg.state, reverse)} {dtype} vs torch.nn.LSTM direction {d}"
            )
            on_dev = on_device(device, x, h0, c0, *w, gy[:, :, d * H : (d + 1) * H], gh[d], gc[d])
            (oy, oh, oc), grads = forward_and_backward(on_dev[:7], reverse, *on_dev[7:])
            grads = [to_host(g) for g in grads]
            check(oy, y.detach().numpy()[:, :, d * H : (d + 1) * H], dtype, what + " y")
            check(oh, h_n.detach().numpy()[d], dtype, what + " h_T")
            check(oc, c_n.detach().numpy()[d], dtype, what + " c_T")
            tparams = [getattr(mod, n) for n in names[:2]]
            expected = [None, None, None] + _torch_grads(torch, tparams)
            if cfg.bias:
                expected += _torch_grads(torch, [getattr(mod, n) for n in names[2:]])
            else:  # no bias in torch: both bias gradients are the batch sum of the gate gradients (the reference's)
                ref = lstm_backward_ref(gy[:, :, d * H : (d + 1) * H], gh[d], gc[d], x, h0, c0, *w, reverse=reverse)
                expected += [ref[5], ref[6]]
            if cfg.state:
                expected[1], expected[2] = h0t.grad.numpy()[d], c0t.grad.numpy()[d]
            else:
                ref = lstm_backward_ref(gy[:, :, d * H : (d + 1) * H], gh[d], gc[d], x, None, None, *w, reverse=reverse)
                expected[1], expected[2] = ref[1], ref[2]
            expected[0] = grads[0].astype(F64)  # compared as the sum of both directions below
            check_grads(grads, expected, dtype, what)
            grad_x_total += grads[0].astype(F64)
        check(
            grad_x_total.astype(dtype),
            xt.grad.numpy(),
            dtype,
            f"lstm {cfg} {dtype}: grad_x of both directions vs torch.nn.LSTM bidirectional",
        )


# ----------------------------------------------------------------------------------------------
# bad input: the right exception, a message naming the argument and the shapes or dtypes


def _n(name):
    return rf"\b{name}\b"


B_, I_, H_, T_ = 2, 3, 4, 5


def _good(device, dtype=np.float64):
    """Valid cell and layer arguments on ``device``: cell (x, h, c, w_ih, w_hh, b_ih, b_hh), layer x (T, B, I)."""
    rng = np.random.default_rng(0)
    cell = [
        on_device(device, rng.standard_normal(s).astype(dtype))
        for s in ((B_, I_), (B_, H_), (B_, H_), (4 * H_, I_), (4 * H_, H_), (4 * H_,), (4 * H_,))
    ]
    x = on_device(device, rng.standard_normal((T_, B_, I_)).astype(dtype))
    return cell, x


def _all_calls(cell, x_seq, **swap):
    """(name, callable) for the four ops with the arguments in ``swap`` replaced (keys: x, h, c,
    w_ih, w_hh, b_ih, b_hh; ``x`` is the layer's (T, B, I), ``xc`` the cell's (B, I)). The output
    gradients are None (zeros) so that only the swapped argument is wrong; lstm_backward gets the
    cache of a valid forward call."""
    a = dict(xc=cell[0], h=cell[1], c=cell[2], w_ih=cell[3], w_hh=cell[4], b_ih=cell[5], b_hh=cell[6], x=x_seq)
    cache = lstm(x_seq, *cell[1:], return_cache=True)[3]
    a.update(swap)
    return [
        ("lstm_cell", lambda: lstm_cell(a["xc"], a["h"], a["c"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])),
        (
            "lstm_cell_backward",
            lambda: lstm_cell_backward(None, None, a["xc"], a["h"], a["c"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"]),
        ),
        ("lstm", lambda: lstm(a["x"], a["h"], a["c"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])),
        ("lstm_backward", lambda: lstm_backward(None, None, None, a["x"], a["h"], a["c"], a["w_ih"], a["w_hh"], cache)),
    ]


def test_hidden_size_mismatch(device):
    cell, x = _good(device)
    bad = ones_on(device, (B_, H_ + 1))
    for which in ("h", "c"):
        for _op, call in _all_calls(cell, x, **{which: bad}):
            # the other shape: w_hh's, H, or the (B, H) that was expected
            with raises_naming(
                ValueError,
                rf"\b{which}0?\b",
                shape_pattern(bad.shape),
                shape_pattern(cell[4].shape) + rf"|\bH\s*=\s*{H_}\b|" + shape_pattern((B_, H_)),
            ):
                call()


def test_weight_shapes(device):
    cell, x = _good(device)
    for bad in [(4 * H_, I_ + 1), (4 * H_ + 4, I_), (H_, I_), (4 * H_, I_, 1), (4 * H_ * I_,)]:
        for _op, call in _all_calls(cell, x, w_ih=ones_on(device, bad)):
            with raises_naming(ValueError, "w_ih", shape_pattern(bad)):
                call()
    # w_hh (4H', H') consistent by itself but not with h / c: named with h's shape or w_hh's
    for _op, call in _all_calls(
        cell,
        x,
        w_hh=ones_on(device, (4 * (H_ + 1), H_ + 1)),
        w_ih=ones_on(device, (4 * (H_ + 1), I_)),
        b_ih=ones_on(device, 4 * (H_ + 1)),
        b_hh=ones_on(device, 4 * (H_ + 1)),
    ):
        with raises_naming(
            ValueError,
            shape_pattern((B_, H_)),
            shape_pattern((4 * (H_ + 1), H_ + 1)) + rf"|\bH\s*=\s*{H_ + 1}\b|" + shape_pattern((B_, H_ + 1)),
        ):
            call()


def test_hidden_size_not_inferable(device):
    """w_hh must be (4H, H): H is w_hh.shape[1]."""
    cell, x = _good(device)
    for bad in [(4 * H_, H_ + 1), (4 * H_ + 1, H_), (H_, H_), (4 * H_,), (4 * H_, H_, 1)]:
        for _op, call in _all_calls(cell, x, w_hh=ones_on(device, bad)):
            with raises_naming(ValueError, "w_hh", shape_pattern(bad)):
                call()


def test_wrong_ndim(device):
    cell, x = _good(device)
    for bad in [(B_, I_), (T_, B_, I_, 1), (I_,)]:
        for _op, call in _all_calls(cell, x, x=ones_on(device, bad))[2:]:
            with raises_naming(ValueError, _n("x"), shape_pattern(bad)):
                call()
    for bad in [(T_, B_, I_), (I_,)]:
        for _op, call in _all_calls(cell, x, xc=ones_on(device, bad))[:2]:
            with raises_naming(ValueError, _n("x"), shape_pattern(bad)):
                call()
    for which in ("h", "c"):
        for bad in [(1, B_, H_), (H_,)]:
            for _op, call in _all_calls(cell, x, **{which: ones_on(device, bad)}):
                with raises_naming(ValueError, rf"\b{which}0?\b", shape_pattern(bad)):
                    call()


def test_batch_mismatch(device):
    cell, x = _good(device)
    for which in ("h", "c"):
        bad = ones_on(device, (B_ + 1, H_))
        for _op, call in _all_calls(cell, x, **{which: bad}):
            with raises_naming(ValueError, rf"\b{which}0?\b", shape_pattern(bad.shape)):
                call()


def test_bias_shape(device):
    cell, x = _good(device)
    for which in ("b_ih", "b_hh"):
        for bad in [(4 * H_ + 1,), (H_,), (1, 4 * H_), ()]:
            for _op, call in _all_calls(cell, x, **{which: ones_on(device, bad)})[:3]:  # lstm_backward takes no bias
                with raises_naming(ValueError, which, shape_pattern(bad)):
                    call()


def test_grad_shapes(device):
    """lstm_backward / lstm_cell_backward: output gradients must have the outputs' shapes."""
    cell, x = _good(device)
    xc, h, c, w_ih, w_hh, b_ih, b_hh = cell
    y, h_t, c_t, cache = lstm(x, h, c, w_ih, w_hh, b_ih, b_hh, return_cache=True)
    for bad in [(T_ + 1, B_, H_), (T_, B_, H_ + 1), (B_, H_)]:
        with raises_naming(ValueError, "grad_y", shape_pattern(bad)):
            lstm_backward(ones_on(device, bad), None, None, x, h, c, w_ih, w_hh, cache)
    for name, pos in (("grad_h_T", 1), ("grad_c_T", 2)):
        args = [None, None, None]
        args[pos] = ones_on(device, (B_, H_ + 1))
        with raises_naming(ValueError, name, shape_pattern((B_, H_ + 1))):
            lstm_backward(*args, x, h, c, w_ih, w_hh, cache)
    for name, pos in (("grad_h_next", 0), ("grad_c_next", 1)):
        args = [None, None]
        args[pos] = ones_on(device, (B_ + 1, H_))
        with raises_naming(ValueError, name, shape_pattern((B_ + 1, H_))):
            lstm_cell_backward(*args, *cell)


@pytest.mark.parametrize(
    "bad", [np.int32, np.int64, np.float16, np.complex64, np.bool_], ids=lambda t: np.dtype(t).name
)
def test_unsupported_dtypes(device, bad):
    cell, x = _good(device, np.float32)
    name = np.dtype(bad).name
    for which in ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"):
        swap = {
            which: (x if which == "x" else cell[("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh").index(which)]).astype(
                bad
            )
        }
        calls = _all_calls(cell, x, **swap)
        if which == "x":
            calls = calls[2:] + [(op, c) for op, c in _all_calls(cell, x, xc=cell[0].astype(bad))[:2]]
        if which.startswith("b_"):
            calls = calls[:3]
        for _op, call in calls:
            with raises_naming(TypeError, rf"\b{which}0?\b", name):
                call()


def test_mixed_dtypes(device):
    cell32, x32 = _good(device, np.float32)
    for which in ("x", "h", "w_ih", "w_hh", "b_hh"):
        swap = {
            which: (
                x32 if which == "x" else cell32[("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh").index(which)]
            ).astype(np.float64)
        }
        if which == "x":
            swap["xc"] = cell32[0].astype(np.float64)
        calls = _all_calls(cell32, x32, **swap)
        if which.startswith("b_"):
            calls = calls[:3]
        for _op, call in calls:
            with raises_naming(TypeError, "float32", "float64"):
                call()


# ----------------------------------------------------------------------------------------------
# the benchmark suite (deepkern.bench.lstm): its cases, flop counts and the check run before timing

BENCH_SHAPES = [(100, 32, 256, 256), (50, 64, 512, 512), (100, 1, 128, 128), (200, 8, 64, 512), (35, 20, 650, 650)]
BENCH_SHAPES_MORE = [(100, 256, 32, 32), (20, 16, 1024, 1024)]


def test_bench_lstm_cases():
    """The goal's five shapes (batch 1 summarised on its own), then two more summarised apart, then
    the GRU's shapes in groups of their own."""
    from deepkern import bench
    from deepkern.bench import lstm as dkb

    for name in ("gemm", "conv", "pool"):
        assert name in bench.SUITES
    suite = bench.get_suite("lstm")
    assert [tuple(s[:4]) for s in dkb.LSTM_SHAPES] == BENCH_SHAPES
    assert [tuple(s[:4]) for s in dkb.LSTM_SHAPES_MORE] == BENCH_SHAPES_MORE
    every = BENCH_SHAPES + BENCH_SHAPES_MORE
    grus = [tuple(s[:4]) for s in dkb.GRU_SHAPES]
    for quick in (False, True):
        cases = [c for c in suite.cases(quick) if not c.name.startswith("GRU ")]
        gru_cases = [c for c in suite.cases(quick) if c.name.startswith("GRU ")]
        assert len(cases) == 2 * len(every) and len(gru_cases) == 2 * len(grus)
        assert {c.layout for c in cases} == {c.layout for c in gru_cases} == {"fwd", "fwd+bwd"}
        for case in gru_cases:
            t, b, i, h = case.shape
            full_t = [s[0] for s in grus if s[1:] == (b, i, h)][0]
            assert (t < full_t) if quick else (t == full_t)
            fwd = 2.0 * t * b * 3 * h * (i + h)
            assert case.flops == (fwd if case.layout == "fwd" else 3 * fwd), case.name
            assert case.group == ("GRU forward" if case.layout == "fwd" else "GRU forward+backward")
            assert case.group in suite.summary_groups and case.check is not None
        for case in cases:
            t, b, i, h = case.shape
            assert (b, i, h) in [s[1:] for s in every], case.shape
            full_t = [s[0] for s in every if s[1:] == (b, i, h)][0]
            assert (t < full_t) if quick else (t == full_t)
            fwd = 2.0 * t * b * 4 * h * (i + h)
            assert case.flops == (fwd if case.layout == "fwd" else 3 * fwd), case.name
            assert case.group in suite.summary_groups
            assert ("batch 1" in case.group) == (b == 1), case.group
            assert ("more shapes" in case.group) == ((t if not quick else full_t, b, i, h) in BENCH_SHAPES_MORE)
            assert "deepkern" in case.impls and case.check is not None


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("lstm_pass", ["fwd", "fwd+bwd"])
def test_bench_lstm_check_and_impls(lstm_pass, cell, monkeypatch):
    torch = pytest.importorskip("torch")
    from deepkern.bench import lstm as dkb

    shape = (7, 3, 16, 24)
    sets = dkb.make_lstm_inputs(shape, lstm_pass, copies=2, cell=cell)
    assert len(sets) == 2 and all(a.dtype == F32 for s in sets for a in s)
    assert len(sets[0]) == (7 if cell == "lstm" else 6) + (lstm_pass == "fwd+bwd")
    assert dkb.lstm_check(shape, lstm_pass, sets[0], cell=cell) < 1e-5
    impls = dkb.lstm_impls(shape, lstm_pass, cell)
    ours = impls["deepkern"](*sets[1])
    theirs = impls["torch"](*[torch.from_numpy(a) for a in sets[1]])
    if lstm_pass == "fwd":
        ours, theirs = [ours], [theirs]
    names = ("y", "grad_x", "grad_w_ih", "grad_w_hh")
    assert len(ours) == len(theirs) == (1 if lstm_pass == "fwd" else len(names))
    for name, a, b in zip(names, ours, theirs):
        check(a, b.detach().numpy().astype(np.float64), F32, f"bench impls {cell} {shape} {lstm_pass} {name}", tol=1e-4)

    real = getattr(deepkern.ops, cell)
    monkeypatch.setattr(
        deepkern.ops, cell, lambda *a, **k: (lambda r: (r[0] * np.float32(1.01),) + r[1:])(real(*a, **k))
    )
    assert dkb.lstm_check(shape, lstm_pass, sets[0], cell=cell) > 1e-3


def test_bench_lstm_skipped_without_torch(monkeypatch):
    from deepkern import bench

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails: PyTorch is not installed
    report = bench.run_suite(bench.get_suite("lstm"), [1], quick=True, progress=False)
    assert report.rows == []
    assert any("lstm skipped" in note and "PyTorch" in note for note in report.notes), report.notes


@pytest.mark.parametrize("name", ["gates", "cells", "hidden"])
@pytest.mark.parametrize("change", ["float64", "strided", "a step short", "read-only view"])
def test_a_changed_cache_array_is_refused_or_gives_the_same_gradients(name, change, rng):
    """An LSTMCache array replaced by one of another dtype, layout or size is refused naming it; a
    read-only view of the same values gives the same gradients (the cache is only read)."""
    T, B, I, H = 3, 2, 4, 5  # noqa: E741
    x = rand(rng, (T, B, I), np.float32)
    w_ih, w_hh = rand(rng, (4 * H, I), np.float32), rand(rng, (4 * H, H), np.float32)
    y, _, _, cache = lstm(x, None, None, w_ih, w_hh, return_cache=True)
    grad_y = rand(rng, y.shape, np.float32)
    expected = lstm_backward(grad_y, None, None, x, None, None, w_ih, w_hh, cache)
    arr = getattr(cache, name)
    if change == "read-only view":
        view = arr.view()
        view.flags.writeable = False
        got = lstm_backward(grad_y, None, None, x, None, None, w_ih, w_hh, cache._replace(**{name: view}))
        for g, e in zip(got, expected):
            assert (g is None and e is None) or np.array_equal(g, e)
        return
    bad = {
        "float64": arr.astype(np.float64),
        "strided": np.repeat(arr, 2, axis=-1)[..., ::2],
        "a step short": arr[:-1],
    }[change]
    with pytest.raises((TypeError, ValueError), match=rf"lstm_backward: .*{name}"):
        lstm_backward(grad_y, None, None, x, None, None, w_ih, w_hh, cache._replace(**{name: bad}))


def test_errors_name_the_arguments_as_the_caller_passed_them(rng):
    x, h, w_ih, w_hh = (rng.standard_normal(s) for s in ((2, 3, 4), (3, 5), (20, 4), (20, 5)))
    with pytest.raises(TypeError, match="lstm: c0 has dtype float32"):
        lstm(x, h, h.astype(np.float32), w_ih, w_hh)
    with pytest.raises(ValueError, match=r"lstm: h0 must have shape \(B, H\)"):
        lstm(x, h[:2], None, w_ih, w_hh)
    with pytest.raises(TypeError, match="lstm_cell_backward: grad_c_next has dtype float32"):
        lstm_cell_backward(None, h.astype(np.float32), x[0], h, h, w_ih, w_hh)
    *_, cache = lstm(x, h, h, w_ih, w_hh, return_cache=True)
    with pytest.raises(TypeError, match=r"lstm_backward: cache\.cells must be a float64 array.*got list"):
        lstm_backward(None, None, None, x, h, h, w_ih, w_hh, cache._replace(cells=cache.cells.tolist()))
    with pytest.raises(ValueError, match=r"cache\.hidden must be .* \(2, 3, 5\).*got \(2, 3, 4\)"):
        lstm_backward(None, None, None, x, h, h, w_ih, w_hh, cache._replace(hidden=cache.hidden[..., :4]))
