"""LSTM with a projection (``proj_size``): each step's hidden state is ``(o * tanh(c)) @ W_hr^T``.
Against a float64 NumPy reference run sequence by sequence (every layer, direction, batch_first,
unbatched and packed variable-length input), finite differences for every input and parameter, and,
where PyTorch is installed, PyTorch itself (parameter names, shapes, repr, values, gradients)."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn

from checks import gradcheck
from reference import rel_error


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def lstm_projection_ref(model, x, lengths, h0, c0):
    """float64 (output (T, B, D*P), h_n, c_n) of ``model`` (an nn.LSTM with proj_size) on x (T, B, I),
    each sequence b run alone over its first ``lengths[b]`` steps; outputs past a sequence's end are 0."""
    p = {n: t.detach().numpy().astype(np.float64) for n, t in model.named_parameters()}
    dirs = 2 if model.bidirectional else 1
    steps, batch = x.shape[:2]
    size = model.proj_size
    h_n, c_n = np.zeros(h0.shape), np.zeros(c0.shape)
    layer_in = np.asarray(x, np.float64)
    for layer in range(model.num_layers):
        out = np.zeros((steps, batch, dirs * size))
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            k = layer * dirs + d
            for b in range(batch):
                h, c = h0[k, b].astype(np.float64), c0[k, b].astype(np.float64)
                order = range(lengths[b] - 1, -1, -1) if d else range(lengths[b])
                for t in order:
                    gates = p["weight_ih" + sfx] @ layer_in[t, b] + p["weight_hh" + sfx] @ h
                    if model.bias:
                        gates = gates + p["bias_ih" + sfx] + p["bias_hh" + sfx]
                    i, f, g, o = np.split(gates, 4)
                    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                    h = p["weight_hr" + sfx] @ (_sigmoid(o) * np.tanh(c))
                    out[t, b, d * size : (d + 1) * size] = h
                h_n[k, b], c_n[k, b] = h, c
        layer_in = out
    return layer_in, h_n, c_n


# (input, hidden, proj, layers, bidirectional, bias)
SHAPES = [(4, 6, 3, 1, False, True), (5, 7, 2, 2, True, True), (3, 5, 4, 2, False, False), (2, 3, 1, 1, True, True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("layout", ["seq-first", "batch-first", "unbatched", "packed", "packed-unsorted"])
def test_projected_lstm_matches_the_reference(shape, layout, dtype):
    i, hidden, size, layers, bidirectional, bias = shape
    rng = np.random.default_rng(hash((shape, layout)) % 2**32)
    model = nn.LSTM(
        i,
        hidden,
        layers,
        bias=bias,
        bidirectional=bidirectional,
        proj_size=size,
        dtype=dtype,
        batch_first=layout == "batch-first",
    )
    dirs = 2 if bidirectional else 1
    assert model.weight_hr_l0.shape == (size, hidden) and model.weight_hh_l0.shape == (4 * hidden, size)
    steps, batch = 5, 1 if layout == "unbatched" else 3
    x = rng.standard_normal((steps, batch, i)).astype(dtype)
    h0 = rng.standard_normal((layers * dirs, batch, size)).astype(dtype)
    c0 = rng.standard_normal((layers * dirs, batch, hidden)).astype(dtype)
    lengths = {"packed": [5, 3, 2], "packed-unsorted": [2, 5, 4]}.get(layout, [steps] * batch)
    ref_y, ref_h, ref_c = lstm_projection_ref(model, x, lengths, h0, c0)
    if layout == "batch-first":
        y, (h, c) = model(dk.tensor(x.transpose(1, 0, 2)), (dk.tensor(h0), dk.tensor(c0)))
        y = y.detach().numpy().transpose(1, 0, 2)
    elif layout == "unbatched":
        y, (h, c) = model(dk.tensor(x[:, 0]), (dk.tensor(h0[:, 0]), dk.tensor(c0[:, 0])))
        y, h, c = y.detach().numpy()[:, None], h.unsqueeze(1), c.unsqueeze(1)
    elif layout.startswith("packed"):
        packed = nn.utils.rnn.pack_padded_sequence(dk.tensor(x), lengths, enforce_sorted=layout == "packed")
        out, (h, c) = model(packed, (dk.tensor(h0), dk.tensor(c0)))
        y, got_lengths = nn.utils.rnn.pad_packed_sequence(out, total_length=steps)
        y = y.detach().numpy()
        np.testing.assert_array_equal(np.asarray(got_lengths), lengths)
    else:
        y, (h, c) = model(dk.tensor(x), (dk.tensor(h0), dk.tensor(c0)))
        y = y.detach().numpy()
    tol = 2e-6 if dtype == np.float32 else 1e-13
    assert y.dtype == dtype and y.shape == (steps, batch, dirs * size)
    for got, ref in ((y, ref_y), (h.detach().numpy(), ref_h), (c.detach().numpy(), ref_c)):
        assert rel_error(got, ref) < tol


@pytest.mark.parametrize("shape", SHAPES[:2], ids=str)
def test_projected_lstm_gradients_match_finite_differences(shape):
    i, hidden, size, layers, bidirectional, bias = shape
    rng = np.random.default_rng(5)
    model = nn.LSTM(i, hidden, layers, bias=bias, bidirectional=bidirectional, proj_size=size, dtype=np.float64)
    dirs = 2 if bidirectional else 1
    x = dk.tensor(rng.standard_normal((4, 2, i)), requires_grad=True)
    h0 = dk.tensor(rng.standard_normal((layers * dirs, 2, size)), requires_grad=True)
    c0 = dk.tensor(rng.standard_normal((layers * dirs, 2, hidden)), requires_grad=True)

    def run(*_):  # the model reads its parameters, which gradcheck perturbs in place
        y, (h, c) = model(x, (h0, c0))
        return y, h, c

    gradcheck(run, x, h0, c0, *model.parameters())
    gradcheck(lambda *_: model(nn.utils.rnn.pack_padded_sequence(x, [4, 2]))[0].data, x, *model.parameters())


def test_projected_lstm_refuses_bad_arguments_and_states():
    for bad in (6, 7):
        with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
            nn.LSTM(4, 6, proj_size=bad)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="proj_size should be a positive integer or zero"):
            nn.LSTM(4, 6, proj_size=bad)
    model = nn.LSTM(4, 6, proj_size=2)
    x = dk.tensor(np.ones((3, 2, 4), np.float32))
    states = (dk.tensor(np.ones((1, 2, 6), np.float32)), dk.tensor(np.ones((1, 2, 6), np.float32)))
    with pytest.raises(ValueError, match=r"h_0 has shape \(1, 2, 6\), expected \(1, 2, 2\)"):
        model(x, states)
    states = (dk.tensor(np.ones((1, 2, 2), np.float32)), dk.tensor(np.ones((1, 2, 2), np.float32)))
    with pytest.raises(ValueError, match=r"c_0 has shape \(1, 2, 2\), expected \(1, 2, 6\)"):
        model(x, states)


def test_projected_lstm_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    kwargs = dict(num_layers=2, proj_size=3, bidirectional=True, batch_first=True, dropout=0.25)
    theirs = torch.nn.LSTM(4, 6, **kwargs).double()
    ours = nn.LSTM(4, 6, dtype=np.float64, **kwargs).eval()
    theirs.eval()
    assert repr(ours) == repr(theirs)
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()
    ]
    assert [[tuple(w.shape) for w in ws] for ws in ours.all_weights] == [
        [tuple(w.shape) for w in ws] for ws in theirs.all_weights
    ]
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((3, 5, 4))
    tx, dx = torch.tensor(x, requires_grad=True), dk.tensor(x, requires_grad=True)
    t_y, (t_h, t_c) = theirs(tx)
    d_y, (d_h, d_c) = ours(dx)
    weights = [rng.standard_normal(tuple(t.shape)) for t in (t_y, t_h, t_c)]
    sum((t * torch.tensor(w)).sum() for t, w in zip((t_y, t_h, t_c), weights)).backward()
    sum((t * dk.tensor(w)).sum() for t, w in zip((d_y, d_h, d_c), weights)).backward()
    for d, t in ((d_y, t_y), (d_h, t_h), (d_c, t_c), (dx.grad, tx.grad)):
        np.testing.assert_allclose(d.detach().numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-12)
    their_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), their_params[name].grad.numpy(), rtol=1e-10, atol=1e-12)
