"""create_graph=True through the recurrent layers (nn.LSTM, GRU, RNN tanh/relu and the three cells):
the differentiable gradient is checked by finite differences of the first-order gradient it returns,
its values against the kernels' first-order backward, and a gradient penalty's parameter gradients
and an input-Hessian-vector product against PyTorch's double backward in float64."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn

from checks import create_graph_gradients, gradcheck

# name -> (deepkern/torch class name, constructor keywords)
LAYERS = {
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
    "rnn_tanh": ("RNN", {}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
}
CELLS = {
    "lstm": ("LSTMCell", {}),
    "gru": ("GRUCell", {}),
    "rnn_tanh": ("RNNCell", {}),
    "rnn_relu": ("RNNCell", {"nonlinearity": "relu"}),
}
# name -> (layer keywords, input shape, whether h0 (and c0) are given)
CONFIGS = {
    "one layer, no state": ({}, (4, 3, 3), False),
    "one layer, states": ({}, (3, 2, 3), True),
    "two layers, bidirectional, batch_first, states": (
        {"num_layers": 2, "bidirectional": True, "batch_first": True},
        (2, 3, 3),
        True,
    ),
    "two layers, no bias, no state": ({"num_layers": 2, "bias": False}, (3, 2, 3), False),
    "unbatched, bidirectional, states": ({"bidirectional": True}, (3, 3), True),
}


def _torch():
    return pytest.importorskip("torch")


def _pair(torch, kind, args, kw):
    """A torch module of class ``kind`` (float64) and deepkern's with its weights (via state_dict)."""
    theirs = getattr(torch.nn, kind)(*args, **kw).double()
    ours = getattr(nn, kind)(*args, **kw).double()
    ours.load_state_dict({k: dk.tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()})
    return ours, theirs


def _states_shape(model, batch_shape):
    count = model.num_layers * (2 if model.bidirectional else 1)
    sizes = [model.proj_size or model.hidden_size] + ([model.hidden_size] if model.mode == "LSTM" else [])
    return [(count, *batch_shape, size) for size in sizes]


def _call(model, x, states):
    """The outputs of ``model`` (a layer or a cell) on x and the states (a list; empty: none) as a list;
    a cell given a sequence x (T, B, I) runs over its steps (the same weights in every step's node)."""
    hx = None if not states else states[0] if len(states) == 1 else tuple(states)
    if type(model).__name__.endswith("Cell") and x.ndim == 3:
        outs = []
        for t in range(x.shape[0]):
            hx = model(x[t], hx)
            outs += list(hx) if isinstance(hx, tuple) else [hx]
        return outs
    out = model(x, hx)
    if isinstance(out, tuple) and isinstance(out[1], tuple):  # LSTM: (y, (h, c))
        return [out[0], *out[1]]
    return list(out) if isinstance(out, tuple) else [out]


def _second_order(lib, model, arrays, weights, v):
    """For loss = sum of w * sin(output) * output over the outputs: the create_graph gradient of the loss
    w.r.t. the inputs (x and states) and parameters; then the parameters' and inputs' gradients of
    the penalty sum(g_inputs^2) + sum(tanh(g_params)); then the input-Hessian-vector product
    d (g_x . v) / d x. All as NumPy arrays."""
    inputs = [lib.tensor(a, requires_grad=True) for a in arrays]
    params = list(model.parameters())
    outs = _call(model, inputs[0], inputs[1:])
    loss = sum(((o.sin() * o) * lib.tensor(w)).sum() for o, w in zip(outs, weights))
    grads = lib.autograd.grad(loss, inputs + params, create_graph=True)
    penalty = sum((g * g).sum() for g in grads[: len(inputs)]) + sum(g.tanh().sum() for g in grads[len(inputs) :])
    second = lib.autograd.grad(penalty, inputs + params, retain_graph=True, allow_unused=True)
    (hvp,) = lib.autograd.grad((grads[0] * lib.tensor(v)).sum(), inputs[0])
    arrays = [g.detach().numpy() for g in grads] + [hvp.numpy()]
    return arrays + [np.zeros(t.shape) if g is None else g.numpy() for g, t in zip(second, inputs + params)]


def _compare_with_torch(torch, ours, theirs, arrays, rng):
    outs = _call(theirs, *(lambda t: (t[0], t[1:]))([torch.tensor(a) for a in arrays]))
    weights = [rng.standard_normal(tuple(o.shape)) for o in outs]
    v = rng.standard_normal(arrays[0].shape)
    mine, reference = _second_order(dk, ours, arrays, weights, v), _second_order(torch, theirs, arrays, weights, v)
    for a, b in zip(mine, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _kernel_gradients_match(model, arrays, rng):
    """The create_graph gradients (the backward_graph's) equal the kernels' first-order ones."""
    inputs = [dk.tensor(a, requires_grad=True) for a in arrays]
    weights = [dk.tensor(rng.standard_normal(o.shape)) for o in _call(model, inputs[0], inputs[1:])]
    results = []
    for create_graph in (False, True):
        loss = sum((o.tanh() * w).sum() for o, w in zip(_call(model, inputs[0], inputs[1:]), weights))
        grads = dk.autograd.grad(loss, inputs + list(model.parameters()), create_graph=create_graph)
        assert all(g.requires_grad == create_graph for g in grads)
        results.append([g.detach().numpy() for g in grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("mode", list(LAYERS))
def test_layer_double_backward_matches_pytorch(mode, config):
    torch = _torch()
    kind, kw = LAYERS[mode]
    options, shape, with_states = CONFIGS[config]
    rng = np.random.default_rng(len(mode) * 31 + len(config))
    ours, theirs = _pair(torch, kind, (3, 4), {**kw, **options})
    batch = () if len(shape) == 2 else (shape[0 if ours.batch_first else 1],)
    arrays = [rng.standard_normal(shape)]
    if with_states:
        arrays += [rng.standard_normal(s) for s in _states_shape(ours, batch)]
    _kernel_gradients_match(ours, arrays, rng)
    _compare_with_torch(torch, ours, theirs, arrays, rng)


def test_projected_lstm_double_backward_matches_pytorch():
    torch = _torch()
    rng = np.random.default_rng(5)
    ours, theirs = _pair(torch, "LSTM", (3, 4), {"proj_size": 2, "num_layers": 2, "bidirectional": True})
    arrays = [rng.standard_normal((3, 2, 3))] + [rng.standard_normal(s) for s in _states_shape(ours, (2,))]
    _compare_with_torch(torch, ours, theirs, arrays, rng)


@pytest.mark.parametrize("mode", list(LAYERS))
def test_variable_lengths_double_backward_matches_pytorch(mode):
    """The layers' batch_sizes path (a PackedSequence's, here padded as RNNBase._run gets it) against
    PyTorch's packed sequence, both directions, two layers."""
    torch = _torch()
    kind, kw = LAYERS[mode]
    rng = np.random.default_rng(6)
    ours, theirs = _pair(torch, kind, (3, 4), {**kw, "num_layers": 2, "bidirectional": True})
    lengths = [4, 3, 1]
    arrays = [rng.standard_normal((4, 3, 3))] + [rng.standard_normal(s) for s in _states_shape(ours, (3,))]
    # (the padded steps' outputs are zeros, constants, in both; their inputs get zero gradients)
    weights = [rng.standard_normal((4, 3, 8))] + [rng.standard_normal(a.shape) for a in arrays[1:]]
    v = rng.standard_normal(arrays[0].shape)
    batch_sizes = np.array([3, 2, 2, 1])

    def run_ours(x, states):
        y, finals = ours._run(x, tuple(states), batch_sizes)
        return [y, *finals]

    def run_theirs(x, states):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths)
        y, finals = theirs(packed, states[0] if len(states) == 1 else tuple(states))
        finals = finals if isinstance(finals, tuple) else (finals,)
        return [torch.nn.utils.rnn.pad_packed_sequence(y, total_length=4)[0], *finals]

    results = []
    for lib, model, run in ((dk, ours, run_ours), (torch, theirs, run_theirs)):
        inputs = [lib.tensor(a, requires_grad=True) for a in arrays]
        params = list(model.parameters())
        outs = run(inputs[0], inputs[1:])
        loss = sum(((o.sin() * o) * lib.tensor(w)).sum() for o, w in zip(outs, weights))
        grads = lib.autograd.grad(loss, inputs + params, create_graph=True)
        penalty = sum((g * g).sum() for g in grads[: len(inputs)]) + sum(g.tanh().sum() for g in grads[len(inputs) :])
        second = lib.autograd.grad(penalty, inputs + params, retain_graph=True)
        (hvp,) = lib.autograd.grad((grads[0] * lib.tensor(v)).sum(), inputs[0])
        results.append([g.detach().numpy() for g in (*grads, *second, hvp)])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# name -> (input shape, hidden size, bias, whether the states are given)
CELL_CONFIGS = {
    "states": ((3, 3), 4, True, True),
    "no state, no bias": ((2, 3), 4, False, False),
    "unbatched": ((3,), 4, True, True),
    "three steps": ((3, 2, 3), 4, True, True),
    "zero batch": ((0, 3), 4, True, True),
    "zero hidden size": ((2, 3), 0, True, True),
}


@pytest.mark.parametrize("config", list(CELL_CONFIGS))
@pytest.mark.parametrize("mode", list(CELLS))
def test_cell_double_backward_matches_pytorch(mode, config):
    torch = _torch()
    kind, kw = CELLS[mode]
    shape, hidden, bias, with_states = CELL_CONFIGS[config]
    rng = np.random.default_rng(len(mode) * 17 + len(config))
    ours, theirs = _pair(torch, kind, (3, hidden), {**kw, "bias": bias})
    arrays = [rng.standard_normal(shape)]
    if with_states:
        batch = shape[-2:-1]
        arrays += [rng.standard_normal((*batch, hidden)) for _ in range(2 if mode == "lstm" else 1)]
    _kernel_gradients_match(ours, arrays, rng)
    _compare_with_torch(torch, ours, theirs, arrays, rng)


# name -> (module constructor, input shape, the states' shapes)
GRADCHECK_CASES = {
    "lstm, two layers, bidirectional": (lambda: nn.LSTM(2, 2, num_layers=2, bidirectional=True), (3, 2, 2), 2),
    "gru, batch_first": (lambda: nn.GRU(2, 3, batch_first=True), (2, 3, 2), 1),
    "rnn tanh, bidirectional": (lambda: nn.RNN(2, 2, bidirectional=True), (3, 2, 2), 1),
    "rnn relu, two layers": (lambda: nn.RNN(2, 2, num_layers=2, nonlinearity="relu"), (3, 2, 2), 1),
    "lstm, dropout between layers": (lambda: nn.LSTM(2, 2, num_layers=2, dropout=0.4), (3, 2, 2), 0),
    "lstm cell": (lambda: nn.LSTMCell(2, 3), (2, 2), 2),
    "gru cell": (lambda: nn.GRUCell(2, 3), (2, 2), 1),
    "rnn tanh cell": (lambda: nn.RNNCell(3, 2), (2, 3), 1),
    "rnn relu cell": (lambda: nn.RNNCell(3, 2, nonlinearity="relu"), (2, 3), 1),
}


@pytest.mark.parametrize("name", list(GRADCHECK_CASES))
def test_recurrent_gradients_with_create_graph_are_differentiable(name):
    """g = d loss / d (x, states, parameters) with create_graph=True: its own gradient (through the
    recorded graph) matches its finite differences."""
    make, shape, state_count = GRADCHECK_CASES[name]
    rng = np.random.default_rng(len(name))
    dk.manual_seed(0)
    model = make().double()
    cell = isinstance(model, nn.RNNCellBase)
    if cell:
        state_shapes = [(*shape[:-1], model.hidden_size)] * state_count
    else:
        state_shapes = _states_shape(model, (shape[0 if model.batch_first else 1],))[:state_count]
    arrays = [rng.standard_normal(shape)] + [rng.standard_normal(s) for s in state_shapes]
    tensors = [dk.tensor(a, requires_grad=True) for a in arrays] + list(model.parameters())
    count = len(arrays)
    weights = [dk.tensor(rng.standard_normal(o.shape)) for o in _call(model, tensors[0], tensors[1:count])]

    def objective(*tensors):
        if model.training and getattr(model, "dropout", 0):
            dk.manual_seed(7)  # the same dropout mask in every evaluation
        outs = _call(model, tensors[0], list(tensors[1:count]))
        return sum(((o.sin() * o) * w).sum() for o, w in zip(outs, weights))

    gradcheck(create_graph_gradients(objective), *tensors, tol=1e-5)


def test_a_bias_changed_in_place_after_the_forward_is_an_error_with_create_graph():
    """The differentiable gradient recomputes the forward from its inputs: a bias written in place since
    (which the kernels' first-order backward does not read) would give a wrong gradient, so it raises."""
    rng = np.random.default_rng(9)
    model = nn.GRU(3, 4).double()
    x = dk.tensor(rng.standard_normal((2, 2, 3)), requires_grad=True)
    for create_graph in (False, True):
        y, _ = model(x)
        with dk.no_grad():
            model.bias_hh_l0.add_(1.0)
        if create_graph:
            with pytest.raises(RuntimeError, match="bias of _Layer .* modified by an inplace operation"):
                dk.autograd.grad(y.tanh().sum(), x, create_graph=True)
        else:
            dk.autograd.grad(y.tanh().sum(), x)
