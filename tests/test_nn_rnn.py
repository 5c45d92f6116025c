"""deepkern.nn.LSTM and LSTMCell: PyTorch's parameter names, shapes and initialisation; forward
against the float64 per-layer reference (tests/reference.lstm_ref composed over layers and
directions); every input and parameter gradient against finite differences in float64; the same
outputs and gradients as torch.nn.LSTM / LSTMCell given its state dict (float32, where PyTorch is
installed); dropout between layers; clear errors on bad input; and a short training run.
"""

from __future__ import annotations

import math

import deepkern
import numpy as np
import pytest
from deepkern.nn.rnn import LSTM, LSTMCell

from checks import F32, F64, check, gradcheck, raises_naming, shape_pattern
from reference import lstm_cell_backward_ref, lstm_cell_ref, lstm_ref


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed (comparisons with torch.nn.LSTM)")


def _params(model):
    return [p for _, p in model.named_parameters()]


def _lstm_model_ref(model, x, h0=None, c0=None):
    """(output, h_n, c_n) of ``model`` (no dropout) in float64 from the per-layer reference."""
    x = np.asarray(x, np.float64)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None]
        h0, c0 = (None if s is None else s[:, None] for s in (h0, c0))
    elif model.batch_first:
        x = x.transpose(1, 0, 2)
    dirs = 2 if model.bidirectional else 1
    params = {n: p.detach().numpy().astype(np.float64) for n, p in model.named_parameters()}
    hs, cs = [], []
    for layer in range(model.num_layers):
        outs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            k = layer * dirs + d
            y, h, c = lstm_ref(
                x,
                None if h0 is None else h0[k],
                None if c0 is None else c0[k],
                params[f"weight_ih{sfx}"],
                params[f"weight_hh{sfx}"],
                params.get(f"bias_ih{sfx}"),
                params.get(f"bias_hh{sfx}"),
                reverse=bool(d),
            )
            outs.append(y)
            hs.append(h)
            cs.append(c)
        x = np.concatenate(outs, axis=2)
    h_n, c_n = np.stack(hs), np.stack(cs)
    if unbatched:
        return x[:, 0], h_n[:, 0], c_n[:, 0]
    return (x.transpose(1, 0, 2) if model.batch_first else x), h_n, c_n


# ----------------------------------------------------------------------------------------------
# construction


def test_parameter_names_shapes_and_init():
    deepkern.manual_seed(0)
    m = LSTM(3, 5, num_layers=2, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]
    expected = [
        f"{kind}_{w}_l{k}{sfx}"
        for k in range(2)
        for sfx in ("", "_reverse")
        for kind, w in (("weight", "ih"), ("weight", "hh"), ("bias", "ih"), ("bias", "hh"))
    ]
    assert names == expected
    shapes = dict((n, p.shape) for n, p in m.named_parameters())
    assert shapes["weight_ih_l0"] == (20, 3) and shapes["weight_ih_l1_reverse"] == (20, 10)
    assert shapes["weight_hh_l1"] == (20, 5) and shapes["bias_hh_l0_reverse"] == (20,)
    bound = 1 / math.sqrt(5)
    for p in m.parameters():
        assert p.dtype == F32 and p.requires_grad
        assert np.all(np.abs(p.detach().numpy()) <= bound) and np.std(p.detach().numpy()) > bound / 4
    deepkern.manual_seed(0)
    again = LSTM(3, 5, num_layers=2, bidirectional=True)
    for a, b in zip(m.parameters(), again.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    assert [n for n, _ in LSTM(3, 5, bias=False).named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    cell = LSTMCell(4, 6)
    assert [(n, p.shape) for n, p in cell.named_parameters()] == [
        ("weight_ih", (24, 4)),
        ("weight_hh", (24, 6)),
        ("bias_ih", (24,)),
        ("bias_hh", (24,)),
    ]
    assert [n for n, _ in LSTMCell(4, 6, bias=False).named_parameters()] == ["weight_ih", "weight_hh"]
    assert repr(m) == "LSTM(3, 5, num_layers=2, bidirectional=True)"


def test_parameter_names_match_torch():
    torch = _torch()
    for kw in (dict(num_layers=3, bidirectional=True), dict(bias=False, num_layers=2)):
        ours = {n: p.shape for n, p in LSTM(4, 6, **kw).named_parameters()}
        theirs = {n: tuple(p.shape) for n, p in torch.nn.LSTM(4, 6, **kw).named_parameters()}
        assert ours == theirs
    assert {n: p.shape for n, p in LSTMCell(4, 6).named_parameters()} == {
        n: tuple(p.shape) for n, p in torch.nn.LSTMCell(4, 6).named_parameters()
    }


# ----------------------------------------------------------------------------------------------
# forward against the float64 reference

CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3, batch_first=True),
    dict(num_layers=2, bidirectional=True, batch_first=True, bias=False),
]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
@pytest.mark.parametrize("states", [False, True], ids=["no-hx", "hx"])
def test_forward_matches_reference(rng, kw, states, dtype):
    m = LSTM(7, 5, **kw, dtype=dtype)
    dirs = 2 if m.bidirectional else 1
    t, b = 6, 3
    x = rng.standard_normal((b, t, 7) if m.batch_first else (t, b, 7)).astype(dtype)
    h0 = c0 = None
    if states:
        h0, c0 = (rng.standard_normal((m.num_layers * dirs, b, 5)).astype(dtype) for _ in range(2))
    out, (h_n, c_n) = m(deepkern.tensor(x), None if not states else (deepkern.tensor(h0), deepkern.tensor(c0)))
    ref = _lstm_model_ref(m, x, h0, c0)
    for got, want, what in zip((out, h_n, c_n), ref, ("output", "h_n", "c_n")):
        check(got.detach().numpy(), want, dtype, what, tol=1e-5 if dtype == F32 else 1e-12)
    assert out.shape == ((b, t, dirs * 5) if m.batch_first else (t, b, dirs * 5))
    assert h_n.shape == c_n.shape == (m.num_layers * dirs, b, 5)


def test_unbatched_input(rng):
    m = LSTM(4, 3, num_layers=2, bidirectional=True, batch_first=True)
    x = rng.standard_normal((5, 4)).astype(F32)
    h0, c0 = (rng.standard_normal((4, 3)).astype(F32) for _ in range(2))
    for hx in (None, (deepkern.tensor(h0), deepkern.tensor(c0))):
        out, (h_n, c_n) = m(x, hx)
        ref = _lstm_model_ref(m, x, *(hx and (h0, c0) or (None, None)))
        assert out.shape == (5, 6) and h_n.shape == c_n.shape == (4, 3)
        for got, want in zip((out, h_n, c_n), ref):
            check(got.detach().numpy(), want, F32)


def test_no_grad_records_nothing_and_gives_the_same_result(rng):
    m = LSTM(4, 3, num_layers=2)
    x = deepkern.tensor(rng.standard_normal((5, 2, 4)).astype(F32))
    out, (h_n, _) = m(x)
    with deepkern.no_grad():
        out2, (h_n2, _) = m(x)
    assert out.requires_grad and not out2.requires_grad and out2.grad_fn is None
    np.testing.assert_array_equal(out.detach().numpy(), out2.numpy())
    np.testing.assert_array_equal(h_n.detach().numpy(), h_n2.numpy())


# ----------------------------------------------------------------------------------------------
# gradients by finite differences (float64)


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_layers=2, bidirectional=True),
        dict(num_layers=2, batch_first=True, bias=False),
        dict(num_layers=1, bidirectional=True, batch_first=True),
    ],
    ids=["2layers-bidir", "2layers-batch_first-nobias", "bidir-batch_first"],
)
def test_gradcheck_every_input_and_parameter(rng, kw):
    m = LSTM(3, 2, **kw, dtype=F64)
    dirs = 2 if m.bidirectional else 1
    x = deepkern.tensor(rng.standard_normal((2, 3, 3)), requires_grad=True)
    h0, c0 = (
        deepkern.tensor(rng.standard_normal((m.num_layers * dirs, 2 if m.batch_first else 3, 2)), requires_grad=True)
        for _ in range(2)
    )

    def fn(x, h0, c0, *params):
        out, (h_n, c_n) = m(x, (h0, c0))
        return out, h_n, c_n

    gradcheck(fn, x, h0, c0, *_params(m))


def test_gradcheck_without_states_and_unbatched(rng):
    m = LSTM(3, 2, num_layers=2, bidirectional=True, dtype=F64)
    x = deepkern.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    gradcheck(lambda x, *ps: (m(x)[0], *m(x)[1]), x, *_params(m))


def test_gradcheck_with_dropout(rng):
    m = LSTM(3, 4, num_layers=3, dropout=0.4, dtype=F64)
    x = deepkern.tensor(rng.standard_normal((3, 2, 3)), requires_grad=True)

    def fn(x, *params):
        deepkern.manual_seed(5)  # the same dropout masks on every call
        out, (h_n, c_n) = m(x)
        return out, h_n, c_n

    gradcheck(fn, x, *_params(m))


def test_cell_gradcheck(rng):
    cell = LSTMCell(3, 4, dtype=F64)
    x = deepkern.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    h, c = (deepkern.tensor(rng.standard_normal((2, 4)), requires_grad=True) for _ in range(2))
    gradcheck(lambda x, h, c, *ps: cell(x, (h, c)), x, h, c, *_params(cell))
    gradcheck(lambda x, *ps: cell(x), x, *_params(cell))

    # Unrolled over three steps, as a user writes a loop.
    def unrolled(x, h, c, *ps):
        state = (h, c)
        for _ in range(3):
            state = cell(x, state)
        return state

    gradcheck(unrolled, x, h, c, *_params(cell))


def test_cell_matches_reference(rng):
    cell = LSTMCell(5, 3, bias=False)
    x = rng.standard_normal((4, 5)).astype(F32)
    h, c = (rng.standard_normal((4, 3)).astype(F32) for _ in range(2))
    w_ih, w_hh = (p.detach().numpy() for p in cell.parameters())
    ref = lstm_cell_ref(x, h, c, w_ih, w_hh)
    for got, want in zip(cell(deepkern.tensor(x), (deepkern.tensor(h), deepkern.tensor(c))), ref):
        check(got.detach().numpy(), want, F32)
    h1, c1 = cell(x[0])  # unbatched, zero state
    ref = lstm_cell_ref(x[:1], np.zeros((1, 3)), np.zeros((1, 3)), w_ih, w_hh)
    assert h1.shape == c1.shape == (3,)
    check(h1.detach().numpy(), ref[0][0], F32)


# ----------------------------------------------------------------------------------------------
# empty sizes, as torch.nn: a batch of 0 gives empty outputs and zero parameter gradients; LSTM needs
# T >= 1 (torch.nn.LSTM raises too); LSTMCell takes input_size and hidden_size 0


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(num_layers=2, bidirectional=True), dict(batch_first=True, bias=False)],
    ids=["1layer", "2layers-bidir", "batch_first-nobias"],
)
@pytest.mark.parametrize("states", [False, True], ids=["no-hx", "hx"])
def test_lstm_empty_batch(kw, states):
    m = LSTM(5, 4, **kw, dtype=F64)
    count = m.num_layers * (2 if m.bidirectional else 1)
    x = np.zeros((0, 3, 5) if m.batch_first else (3, 0, 5))
    h0 = c0 = np.zeros((count, 0, 4)) if states else None
    xt = deepkern.tensor(x, requires_grad=True)
    hx = (deepkern.tensor(h0, requires_grad=True), deepkern.tensor(c0, requires_grad=True)) if states else None
    out, (h_n, c_n) = m(xt, hx)
    for got, want, what in zip((out, h_n, c_n), _lstm_model_ref(m, x, h0, c0), ("output", "h_n", "c_n")):
        check(got.detach().numpy(), want, F64, what)
    (out.sum() + h_n.sum() + c_n.sum()).backward()
    assert xt.grad is not None and xt.grad.shape == x.shape
    for state in hx or ():
        assert state.grad is not None and state.grad.shape == (count, 0, 4)
    for name, param in m.named_parameters():
        assert param.grad is not None, f"{name} has no gradient"
        check(param.grad.numpy(), np.zeros(param.shape), F64, f"{name} gradient")


def test_lstm_refuses_an_empty_sequence():
    m = LSTM(8, 16)
    for model, shape in ((m, (0, 3, 8)), (m, (0, 8)), (LSTM(8, 16, batch_first=True), (3, 0, 8))):
        with raises_naming(ValueError, r"LSTM\(input_size=8, hidden_size=16\)", shape_pattern(shape), "T = 0"):
            model(deepkern.zeros(*shape))


@pytest.mark.parametrize("b, i, h", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)])
def test_cell_empty_sizes(rng, b, i, h):
    cell = LSTMCell(i, h, dtype=F64)
    x, hx, cx = rng.standard_normal((b, i)), rng.standard_normal((b, h)), rng.standard_normal((b, h))
    xt, ht, ct = (deepkern.tensor(a, requires_grad=True) for a in (x, hx, cx))
    h_next, c_next = cell(xt, (ht, ct))
    params = [p.detach().numpy() for p in _params(cell)]
    for got, want, what in zip((h_next, c_next), lstm_cell_ref(x, hx, cx, *params), ("h_next", "c_next")):
        check(got.detach().numpy(), want, F64, what)
    (h_next.sum() + c_next.sum()).backward()
    refs = lstm_cell_backward_ref(np.ones((b, h)), np.ones((b, h)), x, hx, cx, *params)
    for got, want, what in zip((xt, ht, ct, *_params(cell)), refs, ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh")):
        assert got.grad is not None, f"the gradient of {what} is None"
        check(got.grad.numpy(), want, F64, f"the gradient of {what}")


# ----------------------------------------------------------------------------------------------
# dropout


def test_dropout_only_in_training(rng):
    m = LSTM(4, 8, num_layers=3, dropout=0.5)
    x = deepkern.tensor(rng.standard_normal((6, 5, 4)).astype(F32))
    m.eval()
    out_eval = m(x)[0].detach().numpy()
    check(out_eval, _lstm_model_ref(m, x.numpy())[0], F32)
    m.train()
    deepkern.manual_seed(1)
    a = m(x)[0].detach().numpy()
    deepkern.manual_seed(1)
    b = m(x)[0].detach().numpy()
    np.testing.assert_array_equal(a, b)  # the deepkern generator drives the masks
    assert not np.allclose(a, out_eval)
    with pytest.warns(UserWarning, match="dropout"):
        LSTM(4, 8, num_layers=1, dropout=0.5)


# ----------------------------------------------------------------------------------------------
# PyTorch interop: load torch.nn.LSTM's state dict, same outputs and gradients


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_layers=2),
        dict(num_layers=2, bidirectional=True),
        dict(num_layers=3, bidirectional=True, batch_first=True),
        dict(num_layers=1, batch_first=True, bias=False),
    ],
    ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()),
)
@pytest.mark.parametrize("states", [False, True], ids=["no-hx", "hx"])
def test_matches_torch_lstm(rng, kw, states):
    torch = _torch()
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(6, 9, **kw)
    ours = LSTM(6, 9, **kw)
    missing, unexpected = ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert not missing and not unexpected
    dirs = 2 if ours.bidirectional else 1
    t, b = 7, 4
    x = rng.standard_normal((b, t, 6) if ours.batch_first else (t, b, 6)).astype(F32)
    hx = [rng.standard_normal((ours.num_layers * dirs, b, 9)).astype(F32) for _ in range(2)]
    weights = [
        rng.standard_normal(s).astype(F32)
        for s in ((b, t, dirs * 9) if ours.batch_first else (t, b, dirs * 9), hx[0].shape, hx[0].shape)
    ]
    x_d, x_t = deepkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    hx_d = [deepkern.tensor(s, requires_grad=True) for s in hx]
    hx_t = [torch.tensor(s, requires_grad=True) for s in hx]
    out_d, (h_d, c_d) = ours(x_d, tuple(hx_d) if states else None)
    out_t, (h_t, c_t) = theirs(x_t, tuple(hx_t) if states else None)
    sum(((o * deepkern.tensor(w)).sum() for o, w in zip((out_d, h_d, c_d), weights))).backward()
    sum(((o * torch.tensor(w)).sum() for o, w in zip((out_t, h_t, c_t), weights))).backward()
    pairs = [("output", out_d, out_t), ("h_n", h_d, h_t), ("c_n", c_d, c_t), ("grad x", x_d.grad, x_t.grad)]
    if states:
        pairs += [("grad h0", hx_d[0].grad, hx_t[0].grad), ("grad c0", hx_d[1].grad, hx_t[1].grad)]
    pairs += [(f"grad {n}", getattr(ours, n).grad, p.grad) for n, p in theirs.named_parameters()]
    for what, got, want in pairs:
        check(got.detach().numpy(), want.detach().double().numpy(), F32, what, tol=2e-5)


def test_cell_matches_torch(rng):
    torch = _torch()
    theirs = torch.nn.LSTMCell(5, 4)
    ours = LSTMCell(5, 4)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((3, 5)).astype(F32)
    h, c = (rng.standard_normal((3, 4)).astype(F32) for _ in range(2))
    x_d, x_t = deepkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    h_d, c_d = ours(x_d, (deepkern.tensor(h), deepkern.tensor(c)))
    h_t, c_t = theirs(x_t, (torch.tensor(h), torch.tensor(c)))
    (h_d.sum() + (c_d * 2).sum()).backward()
    (h_t.sum() + (c_t * 2).sum()).backward()
    for what, got, want in [("h", h_d, h_t), ("c", c_d, c_t), ("grad x", x_d.grad, x_t.grad)] + [
        (n, getattr(ours, n).grad, p.grad) for n, p in theirs.named_parameters()
    ]:
        check(got.detach().numpy(), want.detach().double().numpy(), F32, what, tol=2e-5)


# ----------------------------------------------------------------------------------------------
# bad input


def test_bad_input_names_the_layer_and_shapes():
    m = LSTM(8, 16)
    name = r"LSTM\(input_size=8, hidden_size=16\)"
    with raises_naming(ValueError, name, shape_pattern((5, 3, 7)), r"expected \(T, B, 8\)"):
        m(deepkern.zeros(5, 3, 7))
    with raises_naming(ValueError, name, shape_pattern((5, 3, 8, 1))):
        m(deepkern.zeros(5, 3, 8, 1))
    with raises_naming(ValueError, name, shape_pattern((4, 7)), r"expected \(T, 8\)"):
        m(deepkern.zeros(4, 7))
    with raises_naming(ValueError, r"expected \(B, T, 8\)"):
        LSTM(8, 16, batch_first=True)(deepkern.zeros(5, 3, 7))
    with raises_naming(ValueError, name, "h_0", shape_pattern((1, 2, 16)), shape_pattern((1, 3, 16))):
        m(deepkern.zeros(5, 3, 8), (deepkern.zeros(1, 2, 16), deepkern.zeros(1, 3, 16)))
    with raises_naming(ValueError, "c_0", shape_pattern((2, 3, 16)), shape_pattern((1, 3, 16))):
        m(deepkern.zeros(5, 3, 8), (deepkern.zeros(1, 3, 16), deepkern.zeros(2, 3, 16)))
    with raises_naming(TypeError, name, "float64", "float32"):
        m(deepkern.zeros(5, 3, 8, dtype=F64))
    with raises_naming(TypeError, "hx must be a tuple"):
        m(deepkern.zeros(5, 3, 8), deepkern.zeros(1, 3, 16))
    with raises_naming(ValueError, r"LSTMCell\(input_size=8, hidden_size=16\)", shape_pattern((3, 7))):
        LSTMCell(8, 16)(deepkern.zeros(3, 7))
    with raises_naming(ValueError, "LSTMCell", "h", shape_pattern((2, 16)), shape_pattern((3, 16))):
        LSTMCell(8, 16)(deepkern.zeros(3, 8), (deepkern.zeros(2, 16), deepkern.zeros(3, 16)))
    with raises_naming(ValueError, "hidden_size"):
        LSTM(8, 0)
    with raises_naming(ValueError, "dropout"):
        LSTM(8, 4, num_layers=2, dropout=1.5)
    with raises_naming(ValueError, "dropout"):
        LSTM(8, 4, num_layers=2, dropout=True)


def test_dropout_takes_any_real_number():
    """A NumPy scalar probability is taken as PyTorch takes it (and kept as a Python float)."""
    for value in (np.float32(0.25), np.float64(0.25), 0.25, 0, 1):
        m = LSTM(8, 4, num_layers=2, dropout=value)
        assert m.dropout == float(value) and type(m.dropout) is float


# ----------------------------------------------------------------------------------------------
# learning


def test_learns_to_predict_a_sine_wave():
    """An LSTM plus a linear read-out learns the next value of sine waves of random phase and
    frequency (plain Adam written here; the loss falls well below predicting the current value)."""
    from deepkern.nn.loss import MSELoss
    from deepkern.nn.module import Parameter

    deepkern.manual_seed(0)
    rng = np.random.default_rng(0)
    lstm = LSTM(1, 16, num_layers=2, batch_first=True)
    w = Parameter(rng.uniform(-0.25, 0.25, (16, 1)).astype(F32))
    b = Parameter(np.zeros(1, F32))
    params = _params(lstm) + [w, b]
    moments = [(np.zeros(p.shape, F32), np.zeros(p.shape, F32)) for p in params]
    loss_fn = MSELoss()

    def batch():
        t = np.arange(21)[None, :]
        freq = rng.uniform(0.2, 0.4, (32, 1))
        wave = np.sin(freq * t + rng.uniform(0, 2 * np.pi, (32, 1))).astype(F32)[..., None]
        return wave[:, :-1], wave[:, 1:]

    losses = []
    for step in range(1, 81):
        x, y = batch()
        out, _ = lstm(deepkern.tensor(x))
        loss = loss_fn(out @ w + b, y)
        for p in params:
            p.grad = None
        loss.backward()
        losses.append(loss.item())
        for p, (m1, m2) in zip(params, moments):
            g = p.grad.numpy()
            m1 += 0.1 * (g - m1)
            m2 += 0.001 * (g * g - m2)
            p.data = p.detach().numpy() - 0.02 * (m1 / (1 - 0.9**step)) / (np.sqrt(m2 / (1 - 0.999**step)) + 1e-8)
    x, y = batch()
    baseline = float(np.mean((x - y) ** 2))  # predicting "no change"
    first, last = np.mean(losses[:5]), np.mean(losses[-10:])
    assert last < 0.1 * first, (first, last)
    assert last < 0.5 * baseline, (baseline, last)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_pre_activations_keep_their_relative_precision(kind, dtype):
    """Gate sums near zero (tiny inputs, no bias): tanh(s) ~ s must keep its relative precision, where
    2 sigmoid(2s) - 1 cancels (the float32 outputs had been 1e-2 off relative, tanh(1e-8) gave 0); the
    outputs and the input weights' gradients against PyTorch's in float64."""
    torch = _torch()
    rng = np.random.default_rng(3)
    scale = 1e-5 if dtype == np.float32 else 1e-11
    cell = kind.endswith("Cell")
    x = (rng.standard_normal((3, 8) if cell else (5, 3, 8)) * scale).astype(dtype)
    torch.manual_seed(0)
    ref_layer = getattr(torch.nn, kind)(8, 6, bias=False).double()
    layer = getattr(deepkern.nn, kind)(8, 6, bias=False)
    layer.load_state_dict({k: v.numpy() for k, v in ref_layer.state_dict().items()})
    if dtype == np.float64:
        layer = layer.double()
    out = layer(deepkern.tensor(x))
    ref = ref_layer(torch.tensor(x, dtype=torch.float64))
    out, ref = (out, ref) if cell else (out[0], ref[0])
    out = out[0] if isinstance(out, tuple) else out  # LSTMCell: (h, c)
    ref = ref[0] if isinstance(ref, tuple) else ref
    tol = 1e-6 if dtype == np.float32 else 1e-13
    y = out.detach().numpy()
    assert np.max(np.abs(y - ref.detach().numpy())) <= tol * np.max(np.abs(ref.detach().numpy()))
    weights = rng.standard_normal(y.shape)
    (out * deepkern.tensor(weights.astype(dtype))).sum().backward()
    (ref * torch.tensor(weights)).sum().backward()
    name = "weight_ih" if cell else "weight_ih_l0"
    grad, ref_grad = getattr(layer, name).grad.numpy(), getattr(ref_layer, name).grad.numpy()
    assert np.max(np.abs(grad - ref_grad)) <= 10 * tol * np.max(np.abs(ref_grad))


@pytest.mark.parametrize("kind, kwargs", [("LSTM", dict(num_layers=2, bidirectional=True)), ("GRU", dict(bias=False))])
def test_all_weights_lists_the_parameters_as_torch(kind, kwargs):
    torch = _torch()
    ours, ref = getattr(deepkern.nn, kind)(3, 4, **kwargs), getattr(torch.nn, kind)(3, 4, **kwargs)
    assert [[tuple(w.shape) for w in layer] for layer in ours.all_weights] == [
        [tuple(w.shape) for w in layer] for layer in ref.all_weights
    ]
    names = {id(p): n for n, p in ours.named_parameters()}
    ref_names = {id(p): n for n, p in ref.named_parameters()}
    assert [[names[id(w)] for w in layer] for layer in ours.all_weights] == [
        [ref_names[id(w)] for w in layer] for layer in ref.all_weights
    ]
