"""bfloat16 recurrent layers on the CPU: ops.lstm / gru / rnn, their cells and backward passes, and
nn.LSTM with bfloat16 parameters.

The reference is the float64 layer (tests/reference.py) on the bfloat16 inputs (exact values). The
kernels round only where PyTorch's bfloat16 LSTM does: h after each step (the next step's GEMM
operand), the gate gradients (the backward GEMMs' operand) and each output once, so with u = 2^-8,
bfloat16's unit roundoff, and weights of norm about 1 (the tests' 1/sqrt(H) scale):

- forward: every step adds at most u/2 |h| <= u/2 to the state, which the next steps carry at a
  gain of about 1, and the output is rounded once: |err| <= u (|ref| + T);
- backward: each gate gradient is rounded (u/2 relative) before the GEMMs that sum T * B of them in
  float32, and the state gradients carry the forward's error: |err| <= 4 u (|ref| + T * scale),
  scale = the largest |ref| among all the gradients of the call (a weight gradient that is a sum
  cancelling down to a small value keeps the rounding errors of its terms, which are of that scale).

Every case runs on every ISA the CPU has (the ``isa`` fixture: the emulated bfloat16 GEMM on
generic/avx2, AVX512-BF16 under avx512 where the CPU has it, AMX under amx) and on 1 and 2
threads, with odd sizes. Where PyTorch is installed its bfloat16 LSTM is a second yardstick:
deepkern's largest error is at most twice PyTorch's on the same inputs.
"""

from __future__ import annotations

import deepkern
import numpy as np
import pytest
from deepkern import _C, nn, ops

import reference
from checks import raises_naming

BF16 = deepkern.bfloat16
U = 2.0**-8

# (T, B, I, H): odd sizes, tails in every GEMM tile dimension, batch 1, a single unit.
SHAPES = [(5, 3, 7, 9), (3, 1, 1, 1), (4, 5, 33, 17), (2, 13, 16, 65)]
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def bf16(a) -> np.ndarray:
    return np.asarray(a, np.float32).astype(BF16)


def f64(a) -> np.ndarray:
    return np.asarray(a, np.float64)


def layer_inputs(rng, cell: str, steps, batch, inputs, hidden):
    """bfloat16 x (T, B, I), states (B, H) and weights at PyTorch's 1/sqrt(H) scale."""
    g, scale = GATES[cell], 1.0 / np.sqrt(max(hidden, 1))
    x = bf16(rng.standard_normal((steps, batch, inputs)))
    states = [bf16(0.5 * rng.standard_normal((batch, hidden))) for _ in range(2 if cell == "lstm" else 1)]
    weights = [bf16(rng.uniform(-scale, scale, shape)) for shape in ((g * hidden, inputs), (g * hidden, hidden))]
    biases = [bf16(rng.uniform(-scale, scale, g * hidden)) for _ in range(2)]
    return x, states, weights, biases


def assert_close(got, ref, bound, what):
    """``got`` (bfloat16) within ``bound`` (array or scalar) of the float64 ``ref``; no NaN."""
    got64 = f64(np.asarray(got, np.float32))
    assert got.dtype == BF16, f"{what}: dtype {got.dtype}, expected bfloat16"
    assert got64.shape == ref.shape, f"{what}: shape {got64.shape}, expected {ref.shape}"
    assert not np.isnan(got64).any(), f"{what}: NaN in the result (an element not written?)"
    excess = np.abs(got64 - ref) - bound
    if excess.size:
        worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
        limit = np.broadcast_to(bound, ref.shape)[worst]
        assert excess[worst] <= 0, f"{what}: error {abs(got64 - ref)[worst]:.3g} above the bound {limit:.3g} at {worst}"


def forward_bound(ref, steps):
    return U * (np.abs(ref) + steps)


def backward_bound(ref, steps, refs):
    """The bound of the module docstring for ``ref``, one of the gradients ``refs`` of a call."""
    scale = max((np.abs(r).max() for r in refs if r.size), default=0.0)
    return 4 * U * (np.abs(ref) + steps * scale) + 1e-30


def run_layer(cell, x, states, weights, biases, reverse=False, batch_sizes=None):
    """deepkern's forward (outputs, cache) of ``cell`` on the arrays."""
    kw = {"reverse": reverse, "return_cache": True, "batch_sizes": batch_sizes}
    if cell == "lstm":
        *out, cache = ops.lstm(x, *states, *weights, *biases, **kw)
    elif cell == "gru":
        *out, cache = ops.gru(x, *states, *weights, *biases, **kw)
    else:
        *out, cache = ops.rnn(x, *states, *weights, *biases, nonlinearity=cell[4:], **kw)
    return out, cache


def run_backward(cell, grads, x, states, weights, cache, reverse=False):
    if cell == "lstm":
        return ops.lstm_backward(*grads, x, *states, *weights, cache, reverse=reverse)
    backward = ops.gru_backward if cell == "gru" else ops.rnn_backward
    return backward(*grads, x, *states, *weights, cache, reverse=reverse)


def references(cell, x, states, weights, biases, grads, reverse=False):
    """float64 (outputs, gradients) of ``cell`` on the bfloat16 values."""
    args = [f64(x.astype(np.float32))] + [f64(v.astype(np.float32)) for v in (*states, *weights, *biases)]
    g64 = [None if g is None else f64(g.astype(np.float32)) for g in grads]
    if cell == "lstm":
        return reference.lstm_ref(*args, reverse=reverse), reference.lstm_backward_ref(*g64, *args, reverse=reverse)
    if cell == "gru":
        return reference.gru_ref(*args, reverse=reverse), reference.gru_backward_ref(*g64, *args, reverse=reverse)
    if cell == "rnn_relu":  # h and the biases' sum rounded to bfloat16, as the kernel's (see relu_step)
        x64, h0, w_ih, w_hh, b_ih, b_hh = args
        bias = f64(bf16(b_ih + b_hh).astype(np.float32))
        step = relu_step(w_ih, w_hh, bias, np.zeros_like(b_hh))
        out, grads = reference._sequence_ref(step, x64, h0, w_hh, *g64, reverse)
        return out, reference._shaped(grads, w_ih, w_hh)
    kw = {"nonlinearity": cell[4:], "reverse": reverse}
    return reference.rnn_ref(*args, **kw), reference.rnn_backward_ref(*g64, *args, **kw)


def relu_step(w_ih, w_hh, b_ih, b_hh):
    """The float64 relu RNN step with h rounded to bfloat16 after it, as the kernel rounds it (and
    given the biases' sum rounded to bfloat16 once, as ops.rnn passes it to the kernel). relu's
    derivative jumps at 0: a pre-activation within bfloat16's rounding of 0 takes the other branch
    in an unrounded reference, and its whole gradient would differ. With the kernel's roundings the
    two see the same sign but where float32 and float64 sums straddle 0."""

    def step(x64, h64):
        h, vjp = reference._rnn_step(x64, h64, w_ih, w_hh, b_ih, b_hh, "relu")
        return f64(bf16(h).astype(np.float32)), vjp

    return step


@pytest.mark.parametrize("cell", list(GATES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_layer_forward_and_backward_on_every_tier(isa, threads, cell, shape, reverse, rng):
    steps, batch, inputs, hidden = shape
    x, states, weights, biases = layer_inputs(rng, cell, *shape)
    _C.reset_isa_records()
    out, cache = run_layer(cell, x, states, weights, biases, reverse)
    assert _C.last_isa("gemm_bf16") == isa and _C.last_isa("lstm") == isa
    grads = [bf16(rng.standard_normal(o.shape)) for o in out]
    got = run_backward(cell, grads, x, states, weights, cache, reverse)
    ref_out, ref_grads = references(cell, x, states, weights, biases, grads, reverse)
    for name, g, r in zip(("y", "h_T", "c_T"), out, ref_out):
        assert_close(g, r, forward_bound(r, steps), f"{cell} {name} {shape} on {isa}")
    names = ("grad_x", "grad_h0", "grad_c0") if cell == "lstm" else ("grad_x", "grad_h0")
    names += ("grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh")
    for name, g, r in zip(names, got, ref_grads):
        assert_close(g, r, backward_bound(r, steps, ref_grads), f"{cell} {name} {shape} on {isa}")


@pytest.mark.parametrize("batch", [*range(1, 14), 32, 33])
def test_lstm_batches_of_every_strip(isa, threads, batch, rng):
    """The recurrent GEMM's row counts are the batch (or a thread's share of it): every count of rows
    of the AVX512-BF16 strips (1-2 rows four panels wide, 3 three, 4-6 two, 7-12 one; several strips
    from 13 rows), with an odd H (a masked column tail, the units split over 2 threads) and an odd I above
    the strips' block of 256 K values (the input projection's T * B rows run in several blocks of K,
    the last one odd)."""
    steps, inputs, hidden = 3, 301, 97
    x, states, weights, biases = layer_inputs(rng, "lstm", steps, batch, inputs, hidden)
    _C.reset_isa_records()
    out, cache = run_layer("lstm", x, states, weights, biases)
    assert _C.last_isa("gemm_bf16") == isa
    grads = [bf16(rng.standard_normal(o.shape)) for o in out]
    got = run_backward("lstm", grads, x, states, weights, cache)
    ref_out, ref_grads = references("lstm", x, states, weights, biases, grads)
    for name, g, r in zip(("y", "h_T", "c_T"), out, ref_out):
        assert_close(g, r, forward_bound(r, steps), f"{name} at batch {batch} on {isa}")
    names = ("grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh")
    for name, g, r in zip(names, got, ref_grads):
        assert_close(g, r, backward_bound(r, steps, ref_grads), f"{name} at batch {batch} on {isa}")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_caches_are_float32(cell, rng):
    x, states, weights, biases = layer_inputs(rng, cell, 3, 2, 5, 4)
    _, cache = run_layer(cell, x, states, weights, biases)
    assert cache.gates.dtype == np.float32 and cache.hidden.dtype == BF16
    if cell == "lstm":
        assert cache.cells.dtype == np.float32


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_variable_lengths(isa, cell, rng):
    """batch_sizes: each row as a layer of its own length (packed_layer_ref), forward and backward
    (relu's cell kernel is the every-tier test's)."""
    batch_sizes = np.array([4, 4, 3, 1, 1])
    steps, batch, inputs, hidden = len(batch_sizes), 4, 6, 11
    x, states, weights, biases = layer_inputs(rng, cell, steps, batch, inputs, hidden)
    for reverse in (False, True):
        out, cache = run_layer(cell, x, states, weights, biases, reverse, batch_sizes)
        grads = [bf16(rng.standard_normal(o.shape)) for o in out]
        got = run_backward(cell, grads, x, states, weights, cache, reverse)
        refs = {
            "lstm": (reference.lstm_ref, reference.lstm_backward_ref),
            "gru": (reference.gru_ref, reference.gru_backward_ref),
        }
        forward_ref, backward_ref = refs.get(cell, (reference.rnn_ref, reference.rnn_backward_ref))
        kw = {} if cell in refs else {"nonlinearity": cell[4:]}
        as64 = lambda vs: [f64(v.astype(np.float32)) for v in vs]  # noqa: E731
        ref_out, ref_grads = reference.packed_layer_ref(
            forward_ref,
            backward_ref,
            *as64([x]),
            as64(states),
            as64(weights + biases),
            batch_sizes,
            grads=as64(grads),
            reverse=reverse,
            **kw,
        )
        for k, (g, r) in enumerate(zip(out, ref_out)):
            assert_close(g, r, forward_bound(r, steps), f"{cell} output {k} reverse={reverse}")
        for k, (g, r) in enumerate(zip(got, ref_grads)):
            assert_close(g, r, backward_bound(r, steps, ref_grads), f"{cell} gradient {k} reverse={reverse}")


@pytest.mark.parametrize("shape", [(0, 3, 4, 5), (4, 0, 3, 5), (3, 2, 0, 5), (3, 2, 4, 0)])
def test_zero_sizes(shape, rng):
    x, (h0, c0), weights, biases = layer_inputs(rng, "lstm", *shape)
    (y, h, c), cache = run_layer("lstm", x, [h0, c0], weights, biases)
    assert y.shape == shape[:2] + (shape[3],) and y.dtype == BF16
    if shape[0] == 0 or shape[3] == 0:  # no step: the states pass through
        assert np.array_equal(h.view(np.uint16), h0.view(np.uint16))
        assert np.array_equal(c.view(np.uint16), c0.view(np.uint16))
    grads = run_backward("lstm", (None, h0, c0), x, [h0, c0], weights, cache)
    assert all(g.dtype == BF16 for g in grads)
    ref_out, ref_grads = references("lstm", x, [h0, c0], weights, biases, (np.zeros(y.shape, BF16), h0, c0))
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, backward_bound(r, max(shape[0], 1), ref_grads), f"gradient at {shape}")


def test_kernel_writes_every_output_element(rng):
    """The binding on NaN-filled outputs and cache: every element written, caches in float32."""
    steps, batch, inputs, hidden = 4, 3, 5, 7
    x, (h0, c0), (w_ih, w_hh), (b_ih, b_hh) = layer_inputs(rng, "lstm", steps, batch, inputs, hidden)
    bias = bf16(b_ih.astype(np.float32) + b_hh.astype(np.float32))

    def nan(shape, dtype=BF16):
        return np.full(shape, np.nan, dtype)

    y, h, c = nan((steps, batch, hidden)), nan((batch, hidden)), nan((batch, hidden))
    gates, cells, hid = (
        nan((steps, batch, 4 * hidden), np.float32),
        nan((steps, batch, hidden), np.float32),
        nan(y.shape),
    )
    _C.lstm_forward(x, h0, c0, w_ih, w_hh, bias, y, h, c, gates, cells, hid, False)
    for name, a in {"y": y, "h": h, "c": c, "gates": gates, "cells": cells, "hidden": hid}.items():
        assert not np.isnan(a.astype(np.float32)).any(), name
    grads = [nan(a.shape) for a in (x, h0, c0, w_ih, w_hh, bias)]
    _C.lstm_backward(y, h, c, x, h0, c0, w_ih, w_hh, gates, cells, hid, *grads, False)
    for k, a in enumerate(grads):
        assert not np.isnan(a.astype(np.float32)).any(), k
    with pytest.raises((TypeError, ValueError), match="gates"):  # a bfloat16 layer's cache is float32
        _C.lstm_forward(x, h0, c0, w_ih, w_hh, bias, y, h, c, nan(gates.shape), cells, hid, False)


def test_mixed_dtypes_are_rejected(rng):
    """PyTorch raises for a bfloat16 input with float32 weights (or states); so do the ops, naming both."""
    x, (h0, c0), (w_ih, w_hh), _ = layer_inputs(rng, "lstm", 3, 2, 4, 5)
    with raises_naming(TypeError, "w_ih", "bfloat16", "float32"):
        ops.lstm(x, h0, c0, w_ih.astype(np.float32), w_hh)
    with raises_naming(TypeError, "c0", "bfloat16", "float64"):
        ops.lstm(x, h0, c0.astype(np.float64), w_ih, w_hh)
    with raises_naming(TypeError, "h0"):
        ops.gru(x, h0.astype(np.float32), w_ih[:15], w_hh[:15])
    *_, cache = ops.lstm(x, h0, c0, w_ih, w_hh, return_cache=True)
    with raises_naming(TypeError, "grad_y", "bfloat16"):
        ops.lstm_backward(np.zeros((3, 2, 5), np.float32), None, None, x, h0, c0, w_ih, w_hh, cache)
    float_cache = cache._replace(gates=cache.gates.astype(BF16))
    with raises_naming(ValueError, "cache.gates", "float32"):
        ops.lstm_backward(None, h0, None, x, h0, c0, w_ih, w_hh, float_cache)


def test_cells(rng):
    x, (h, c), (w_ih, w_hh), (b_ih, b_hh) = layer_inputs(rng, "lstm", 1, 3, 5, 7)
    h1, c1 = ops.lstm_cell(x[0], h, c, w_ih, w_hh, b_ih, b_hh)
    (_, ref_h, ref_c), ref_grads = references("lstm", x, [h, c], [w_ih, w_hh], [b_ih, b_hh], [None, h1, c1])
    assert_close(h1, ref_h, forward_bound(ref_h, 1), "lstm_cell h")
    assert_close(c1, ref_c, forward_bound(ref_c, 1), "lstm_cell c")
    grads = ops.lstm_cell_backward(h1, c1, x[0], h, c, w_ih, w_hh, b_ih, b_hh)
    ref_grads = (ref_grads[0][0],) + ref_grads[1:]
    for k, (g, r) in enumerate(zip(grads, ref_grads)):
        assert_close(g, r, backward_bound(r, 1, ref_grads), f"lstm_cell_backward {k}")
    xg, (hg,), (wi, wh), (bi, bh) = layer_inputs(rng, "gru", 1, 3, 5, 7)
    ref = reference.gru_ref(*(f64(v.astype(np.float32)) for v in (xg, hg, wi, wh, bi, bh)))[1]
    assert_close(ops.gru_cell(xg[0], hg, wi, wh, bi, bh), ref, forward_bound(ref, 1), "gru_cell")
    xr, (hr,), (wi, wh), (bi, bh) = layer_inputs(rng, "rnn_tanh", 1, 3, 5, 7)
    ref = reference.rnn_ref(*(f64(v.astype(np.float32)) for v in (xr, hr, wi, wh, bi, bh)))[1]
    assert_close(ops.rnn_cell(xr[0], hr, wi, wh, bi, bh), ref, forward_bound(ref, 1), "rnn_cell")


@pytest.mark.parametrize("module", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_nn_modules_with_bfloat16_parameters(module, bidirectional, rng):
    """nn.LSTM / GRU / RNN (2 layers, batch_first) in bfloat16 against the same module in float64 on
    the same (bfloat16) parameters and input, forward and backward."""
    deepkern.manual_seed(3)
    kind = getattr(nn, module)
    model = kind(6, 9, num_layers=2, batch_first=True, bidirectional=bidirectional).bfloat16()
    reference = kind(6, 9, num_layers=2, batch_first=True, bidirectional=bidirectional).double()
    reference.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    x = bf16(rng.standard_normal((3, 5, 6)))
    xb = deepkern.tensor(x, requires_grad=True)
    x64 = deepkern.tensor(f64(x.astype(np.float32)), requires_grad=True)
    (y, states), (y64, states64) = model(xb), reference(x64)
    states, states64 = (states, states64) if module == "LSTM" else ((states,), (states64,))
    steps = 5 * 2  # two layers: the second carries the first's error
    for k, (got, ref) in enumerate(zip((y, *states), (y64, *states64))):
        assert got.dtype == BF16
        ref = ref.detach().numpy()
        assert_close(got.detach().numpy(), ref, forward_bound(ref, steps), f"nn.{module} output {k}")
    (y.float().sum() + states[0].float().sum()).backward()
    (y64.sum() + states64[0].sum()).backward()
    params64 = dict(reference.named_parameters())
    refs = [x64.grad.numpy()] + [p.grad.numpy() for p in params64.values()]
    assert_close(xb.grad.numpy(), refs[0], backward_bound(refs[0], steps, refs), f"nn.{module} x.grad")
    for name, p in model.named_parameters():
        ref = params64[name].grad.numpy()
        assert p.grad.dtype == BF16, name
        assert_close(p.grad.numpy(), ref, backward_bound(ref, steps, refs), f"nn.{module} {name}.grad")


@pytest.mark.parametrize("shape", [(6, 4, 33, 17), (5, 8, 64, 65)], ids=lambda s: "x".join(map(str, s)))
def test_no_worse_than_twice_pytorch(isa, shape, rng):
    """deepkern's largest error (vs the float64 reference) on each output and gradient is at most
    twice PyTorch's bfloat16 nn.LSTM's on the same inputs, plus half a unit of the largest value."""
    torch = pytest.importorskip("torch")
    steps, batch, inputs, hidden = shape
    x, (h0, c0), (w_ih, w_hh), (b_ih, b_hh) = layer_inputs(rng, "lstm", *shape)
    module = torch.nn.LSTM(inputs, hidden).bfloat16()
    with torch.no_grad():
        for name, value in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), (w_ih, w_hh, b_ih, b_hh)):
            getattr(module, name).copy_(torch.from_numpy(value.astype(np.float32)))
    as_torch = lambda a: torch.from_numpy(a.astype(np.float32)).bfloat16().requires_grad_()  # noqa: E731
    tx, th, tc = as_torch(x), as_torch(h0[None]), as_torch(c0[None])
    ty, (thn, tcn) = module(tx, (th, tc))
    grads = [bf16(rng.standard_normal(s)) for s in ((steps, batch, hidden), (batch, hidden), (batch, hidden))]
    torch.autograd.backward([ty, thn[0], tcn[0]], [torch.from_numpy(g.astype(np.float32)).bfloat16() for g in grads])
    torch_out = [t.detach().float().numpy() for t in (ty, thn[0], tcn[0])]
    torch_grads = [t.float().numpy() for t in (tx.grad, th.grad[0], tc.grad[0])]
    torch_grads += [getattr(module, n).grad.float().numpy() for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0")]
    out, cache = run_layer("lstm", x, [h0, c0], [w_ih, w_hh], [b_ih, b_hh])
    got = run_backward("lstm", grads, x, [h0, c0], [w_ih, w_hh], cache)
    ref_out, ref_grads = references("lstm", x, [h0, c0], [w_ih, w_hh], [b_ih, b_hh], grads)
    pairs = list(zip(out, torch_out, ref_out)) + list(zip(got[:6], torch_grads, ref_grads[:6]))
    for k, (mine, theirs, ref) in enumerate(pairs):
        mine_err = np.abs(f64(mine.astype(np.float32)) - ref).max()
        torch_err = np.abs(f64(theirs) - ref).max()
        assert mine_err <= 2 * torch_err + U / 2 * np.abs(ref).max(), (k, mine_err, torch_err)


def test_bench_suite_times_bf16_beside_float32():
    """The lstm-bf16 suite (``deepkern bench --op lstm --dtype bf16``): each bfloat16 case beside its
    float32 twin; the bfloat16 calls agree with each other and with the float64 check."""
    torch = pytest.importorskip("torch")
    from deepkern.bench import lstm as bench_lstm

    cases = bench_lstm.lstm_bf16_cases(quick=True)
    assert {c.layout for c in cases} == {"fwd bf16", "fwd f32", "fwd+bwd bf16", "fwd+bwd f32"}
    assert len(cases) == 4 * len(bench_lstm.LSTM_SHAPES)
    case = next(c for c in cases if c.layout == "fwd+bwd bf16" and c.shape[1] == 1)
    inputs = case.make_inputs()[0]
    assert all(a.dtype == np.uint16 for a in inputs)  # bfloat16 bits
    assert case.check(inputs) < 4 * U
    ours = case.impls["deepkern"](*inputs)
    theirs = case.impls["torch"](*(torch.from_numpy(a.copy()) for a in inputs))
    for mine, other in zip(ours, theirs):
        mine64, other64 = f64(mine.astype(np.float32)), f64(other.detach().float().numpy())
        assert np.abs(mine64 - other64).max() <= 8 * U * (np.abs(other64).max() + 1)


def test_cli_dtype_bf16_names_its_suites(capsys):
    from deepkern import cli

    assert cli.main(["bench", "--op", "pool", "--dtype", "bf16"]) == 2
    assert "--op gemm, lstm, conv, train or all" in capsys.readouterr().err
