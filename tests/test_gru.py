"""The contract of deepkern.ops.gru, gru_backward, gru_cell, rnn, rnn_backward and rnn_cell (one layer
of torch.nn.GRU / torch.nn.RNN and their cells: GRU weights w_ih (3H, I), w_hh (3H, H), biases (3H,),
gate order r, z, n; RNN weights (H, I), (H, H), biases (H,), tanh or relu).

Every result is compared with the float64 references of tests/reference.py (gru_ref, rnn_ref and
their BPTT gradients) computed from the same inputs, with the tolerances of checks.check; the
gradients also with central finite differences of the float64 kernels through whole sequences, and,
where PyTorch is installed, with torch.nn.GRU / torch.nn.RNN + autograd from the same weights.
These layers run on the LSTM's kernels: the cases cover the same team layouts (unit and row
splits, odd shares), every ISA at 1 and 2 threads, T = 1 and sizes of 0.
"""

from __future__ import annotations

import deepkern
import numpy as np
import pytest
from deepkern.ops import GRUCache, RNNCache, gru, gru_backward, gru_cell, rnn, rnn_backward, rnn_cell
from test_lstm import Cfg  # x (T, B, I), H, bias, state (h0), reverse

from checks import F32, F64, check, gradcheck, poison_heap, raises_naming, rand
from reference import gru_backward_ref, gru_cell_ref, gru_ref, rnn_backward_ref, rnn_cell_ref, rnn_ref

DTYPES = [F32, F64]
GRAD_NAMES = ("grad_x", "grad_h0", "grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh")
KINDS = ("gru", "rnn_tanh", "rnn_relu")


class Kind:
    """One of the layers: its op, backward, cell, references and gate count."""

    def __init__(self, name):
        self.name, self.gates = name, 3 if name == "gru" else 1
        self.nl = {"rnn_tanh": "tanh", "rnn_relu": "relu"}.get(name)

    def forward(self, *args, **kw):
        return gru(*args, **kw) if self.nl is None else rnn(*args, nonlinearity=self.nl, **kw)

    def backward(self, *args, **kw):
        return (gru_backward if self.nl is None else rnn_backward)(*args, **kw)

    def cell(self, *args):
        return gru_cell(*args) if self.nl is None else rnn_cell(*args, nonlinearity=self.nl)

    def ref(self, *args, reverse=False):
        if self.nl is None:
            return gru_ref(*args, reverse=reverse)
        return rnn_ref(*args, nonlinearity=self.nl, reverse=reverse)

    def backward_ref(self, gy, gh, *args, reverse=False):
        if self.nl is None:
            return gru_backward_ref(gy, gh, *args, reverse=reverse)
        return rnn_backward_ref(gy, gh, *args, nonlinearity=self.nl, reverse=reverse)

    def cell_ref(self, *args):
        return gru_cell_ref(*args) if self.nl is None else rnn_cell_ref(*args, nonlinearity=self.nl)


def make_inputs(rng, kind: Kind, cfg: Cfg, dtype):
    """(x, h0, w_ih, w_hh, b_ih, b_hh): weights U(-1/sqrt(H), 1/sqrt(H)) as PyTorch initialises
    them, x and h0 ~N(0, 1); None where cfg leaves them out."""
    bound = 1.0 / np.sqrt(max(cfg.h, 1))
    rows = kind.gates * cfg.h

    def uniform(*shape):
        return rng.uniform(-bound, bound, shape).astype(dtype)

    x = rand(rng, (cfg.t, cfg.b, cfg.i), dtype)
    h0 = rand(rng, (cfg.b, cfg.h), dtype) if cfg.state else None
    b_ih, b_hh = (uniform(rows), uniform(rows)) if cfg.bias else (None, None)
    return x, h0, uniform(rows, cfg.i), uniform(rows, cfg.h), b_ih, b_hh


def run_both(kind: Kind, args, reverse, gy, gh):
    """Forward (inference and cached) and backward from the cache: (outputs, cached outputs, grads)."""
    x, h0, w_ih, w_hh = args[:4]
    plain = kind.forward(*args, reverse=reverse)
    poison_heap((x.shape, x.dtype), (w_ih.shape, x.dtype), (w_hh.shape, x.dtype))
    y, h_t, cache = kind.forward(*args, reverse=reverse, return_cache=True)
    grads = kind.backward(gy, gh, x, h0, w_ih, w_hh, cache, reverse=reverse)
    return plain, (y, h_t), grads


def check_all(kind, cfg, args, dtype, rng, what):
    gy = rand(rng, (cfg.t, cfg.b, cfg.h), dtype)
    gh = rand(rng, (cfg.b, cfg.h), dtype)
    plain, cached, grads = run_both(kind, args, cfg.reverse, gy, gh)
    refs = kind.ref(*args, reverse=cfg.reverse)
    for outs in (plain, cached):
        for name, got, ref in zip(("y", "h_T"), outs, refs):
            check(got, ref, dtype, f"{what}: {name}")
    ref_grads = kind.backward_ref(gy, gh, *args, reverse=cfg.reverse)
    for name, got, ref in zip(GRAD_NAMES, grads, ref_grads):
        check(got, ref, dtype, f"{what}: {name}")


CONFIGS = [
    Cfg(1, 1, 1, 1),
    Cfg(1, 3, 5, 7),
    Cfg(5, 3, 7, 17),
    Cfg(7, 2, 3, 33, state=False),
    Cfg(6, 5, 9, 13, bias=False, reverse=True),
    Cfg(4, 4, 6, 11, state=False, bias=False, reverse=True),
    Cfg(3, 67, 9, 96, reverse=True),  # rows or units split, odd shares
    Cfg(4, 70, 5, 40, state=False),
    Cfg(3, 1, 20, 129),  # batch 1: GEMV steps, unequal unit shares
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", CONFIGS, ids=Cfg.id)
def test_layer_matches_reference(kind, cfg, dtype, rng):
    kind = Kind(kind)
    check_all(kind, cfg, make_inputs(rng, kind, cfg, dtype), dtype, rng, f"{kind.name} {cfg.id()} {dtype}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_isa_threads(kind, isa, threads, dtype, rng):
    kind = Kind(kind)
    for cfg in (Cfg(6, 5, 33, 17), Cfg(4, 32, 128, 64, state=False, reverse=True), Cfg(2, 1, 5, 260, bias=False)):
        check_all(kind, cfg, make_inputs(rng, kind, cfg, dtype), dtype, rng, f"{kind.name} {cfg.id()} {isa}")
    assert deepkern._C.last_isa("lstm") == isa


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "cfg",
    [Cfg(0, 3, 4, 5), Cfg(4, 0, 3, 5), Cfg(3, 2, 0, 5), Cfg(3, 2, 4, 0), Cfg(0, 2, 3, 4, state=False)],
    ids=Cfg.id,
)
def test_empty_sizes(kind, cfg, rng):
    """Sizes of 0: results of their shapes; the final state is h0 (zeros without it) when no step
    runs, gradients of x and the weights zero."""
    kind = Kind(kind)
    check_all(kind, cfg, make_inputs(rng, kind, cfg, F64), F64, rng, f"{kind.name} {cfg.id()}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg", [Cfg(3, 2, 3, 4), Cfg(2, 3, 2, 5, state=False, reverse=True)], ids=Cfg.id)
def test_backward_finite_differences(kind, cfg, rng):
    """The float64 gradients of L = sum(gy * y) + sum(gh * h_T) against central differences of the
    kernels' own forward, for every element of x, h0, the weights and the biases."""
    kind = Kind(kind)
    args = list(make_inputs(rng, kind, cfg, F64))
    if kind.nl == "relu":  # keep pre-activations away from the kink
        args[0] = args[0] + np.sign(args[0]) * 0.1
    gy = rand(rng, (cfg.t, cfg.b, cfg.h), F64)
    gh = rand(rng, (cfg.b, cfg.h), F64)
    _, _, grads = run_both(kind, tuple(args), cfg.reverse, gy, gh)

    def loss():
        y, h_t = kind.forward(*args, reverse=cfg.reverse)
        return float(np.sum(gy * y) + np.sum(gh * h_t))

    eps = 1e-6
    for index, name in (
        (0, "grad_x"),
        (1, "grad_h0"),
        (2, "grad_w_ih"),
        (3, "grad_w_hh"),
        (4, "grad_b_ih"),
        (5, "grad_b_hh"),
    ):
        if args[index] is None:
            continue
        numeric = np.zeros_like(args[index])
        for pos in np.ndindex(args[index].shape):
            keep = args[index][pos]
            args[index][pos] = keep + eps
            up = loss()
            args[index][pos] = keep - eps
            down = loss()
            args[index][pos] = keep
            numeric[pos] = (up - down) / (2 * eps)
        check(grads[index], numeric, F64, f"{kind.name} {cfg.id()}: {name} vs finite differences", tol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("state", [True, False])
def test_cell(kind, dtype, state, rng):
    kind = Kind(kind)
    cfg = Cfg(1, 5, 7, 9, state=state)
    x, h, w_ih, w_hh, b_ih, b_hh = make_inputs(rng, kind, cfg, dtype)
    check(kind.cell(x[0], h, w_ih, w_hh, b_ih, b_hh), kind.cell_ref(x[0], h, w_ih, w_hh, b_ih, b_hh), dtype, kind.name)


def test_reverse_is_the_flipped_sequence(rng):
    kind = Kind("gru")
    cfg = Cfg(5, 3, 4, 6)
    x, *rest = make_inputs(rng, kind, cfg, F64)
    y, h_t = gru(x, *rest, reverse=True)
    y_flipped, h_flipped = gru(x[::-1].copy(), *rest)
    np.testing.assert_array_equal(y, y_flipped[::-1])
    np.testing.assert_array_equal(h_t, h_flipped)


# ----------------------------------------------------------------------------------------------
# bad arguments


def test_bad_arguments(rng):
    x, h0, w_ih, w_hh, b_ih, b_hh = make_inputs(rng, Kind("gru"), Cfg(3, 2, 4, 5), F32)
    with raises_naming(ValueError, "gru", "w_hh", r"\(3H, H\)"):
        gru(x, h0, w_ih, w_hh[:-1])
    with raises_naming(ValueError, "gru", "w_ih", r"\(3H, I\)"):
        gru(x, h0, w_ih[:, :-1], w_hh)
    with raises_naming(ValueError, "gru", "h0", r"\(2, 5\)"):
        gru(x, h0[:1], w_ih, w_hh)
    with raises_naming(ValueError, "gru", "b_hh", r"\(3H,\)"):
        gru(x, h0, w_ih, w_hh, b_ih, b_hh[:-1])
    with raises_naming(ValueError, "gru", "x", "3-D"):
        gru(x[0], h0, w_ih, w_hh)
    with raises_naming(TypeError, "gru", "w_hh", "float64"):
        gru(x, h0, w_ih, w_hh.astype(F64))
    with raises_naming(ValueError, "rnn", "w_hh", r"\(H, H\)"):
        rnn(x, h0, w_ih, w_hh)
    with raises_naming(ValueError, "rnn", "nonlinearity", "sigmoid"):
        rnn(x, h0, w_ih[:5], w_hh[:5], nonlinearity="sigmoid")
    with raises_naming(ValueError, "gru_cell", "x", "2-D"):
        gru_cell(x, h0, w_ih, w_hh)
    y, _, cache = gru(x, h0, w_ih, w_hh, return_cache=True)
    with raises_naming(ValueError, "gru_backward", "reverse"):
        gru_backward(y, None, x, h0, w_ih, w_hh, cache, reverse=True)
    with raises_naming(TypeError, "gru_backward", "cache", "GRUCache"):
        gru_backward(y, None, x, h0, w_ih, w_hh, RNNCache(cache.hidden, False, "tanh"))
    with raises_naming(ValueError, "gru_backward", "cache.gates", r"\(T, B, 4H\)"):
        gru_backward(y, None, x, h0, w_ih, w_hh, GRUCache(cache.gates[:, :, 1:], cache.hidden, False))
    with raises_naming(ValueError, "gru_backward", "grad_y"):
        gru_backward(y[1:], None, x, h0, w_ih, w_hh, cache)
    y, _, cache = rnn(x, h0, w_ih[:5], w_hh[:5], return_cache=True)
    with raises_naming(ValueError, "rnn_backward", "cache.hidden", r"\(T, B, H\)"):
        rnn_backward(y, None, x, h0, w_ih[:5], w_hh[:5], RNNCache(cache.hidden[1:], False, "tanh"))


# ----------------------------------------------------------------------------------------------
# against PyTorch


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "cfg", [Cfg(4, 3, 5, 7), Cfg(1, 2, 3, 4, state=False), Cfg(3, 2, 4, 6, reverse=True)], ids=Cfg.id
)
def test_layer_matches_torch(kind, cfg, rng):
    torch = pytest.importorskip("torch")
    kind = Kind(kind)
    args = make_inputs(rng, kind, cfg, F64)
    x, h0, w_ih, w_hh, b_ih, b_hh = args
    if kind.nl is None:
        module = torch.nn.GRU(cfg.i, cfg.h, dtype=torch.float64)
    else:
        module = torch.nn.RNN(cfg.i, cfg.h, nonlinearity=kind.nl, dtype=torch.float64)
    with torch.no_grad():
        for name, value in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh), ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
            getattr(module, name).copy_(torch.from_numpy(value))
    xt = torch.from_numpy(x[::-1].copy() if cfg.reverse else x).requires_grad_()
    ht = torch.from_numpy(h0[None]).requires_grad_() if cfg.state else None
    yt, hn = module(xt, ht)
    gy = rand(rng, (cfg.t, cfg.b, cfg.h), F64)
    gh = rand(rng, (cfg.b, cfg.h), F64)
    gyt = torch.from_numpy(gy[::-1].copy() if cfg.reverse else gy)
    ((yt * gyt).sum() + (hn[0] * torch.from_numpy(gh)).sum()).backward()
    plain, _, grads = run_both(kind, args, cfg.reverse, gy, gh)
    y_torch = yt.detach().numpy()
    check(plain[0], y_torch[::-1] if cfg.reverse else y_torch, F64, "y vs torch")
    check(plain[1], hn[0].detach().numpy(), F64, "h_T vs torch")
    gx = xt.grad.numpy()
    torch_grads = [gx[::-1] if cfg.reverse else gx, None if ht is None else ht.grad.numpy()[0]]
    torch_grads += [
        getattr(module, n).grad.numpy() for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    ]
    for name, got, ref in zip(GRAD_NAMES, grads, torch_grads):
        if ref is not None:
            check(got, ref, F64, f"{kind.name} {cfg.id()}: {name} vs torch")


# ----------------------------------------------------------------------------------------------
# nn.GRU, nn.RNN, nn.GRUCell, nn.RNNCell

MODULE_KW = [
    dict(),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(num_layers=2, bias=False),
    dict(num_layers=3, bidirectional=True),
]


def _module_pair(torch, kind: Kind, kw, size=(6, 9)):
    """A torch module of ``kind`` and ours loaded from its state dict."""
    extra = {} if kind.nl is None else {"nonlinearity": kind.nl}
    theirs = (torch.nn.GRU if kind.nl is None else torch.nn.RNN)(*size, **kw, **extra)
    ours = (deepkern.nn.GRU if kind.nl is None else deepkern.nn.RNN)(*size, **kw, **extra)
    missing, unexpected = ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert not missing and not unexpected
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    return theirs, ours


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kw", MODULE_KW, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "default")
@pytest.mark.parametrize("states", [False, True], ids=["no-hx", "hx"])
def test_module_matches_torch(kind, kw, states, rng):
    """Outputs, final states and every gradient (input, h_0, each parameter) equal torch's from the
    same state dict, in float32."""
    torch = pytest.importorskip("torch")
    kind = Kind(kind)
    torch.manual_seed(0)
    theirs, ours = _module_pair(torch, kind, kw)
    dirs = 2 if ours.bidirectional else 1
    t, b = 5, 3
    x = rand(rng, (b, t, 6) if ours.batch_first else (t, b, 6), F32)
    h0 = rand(rng, (ours.num_layers * dirs, b, 9), F32)
    w_out = rand(rng, x.shape[:2] + (dirs * 9,), F32)
    w_h = rand(rng, h0.shape, F32)
    x_d, x_t = deepkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    h_d, h_t = deepkern.tensor(h0, requires_grad=True), torch.tensor(h0, requires_grad=True)
    out_d, hn_d = ours(x_d, h_d if states else None)
    out_t, hn_t = theirs(x_t, h_t if states else None)
    ((out_d * deepkern.tensor(w_out)).sum() + (hn_d * deepkern.tensor(w_h)).sum()).backward()
    ((out_t * torch.tensor(w_out)).sum() + (hn_t * torch.tensor(w_h)).sum()).backward()
    pairs = [("output", out_d, out_t), ("h_n", hn_d, hn_t), ("grad x", x_d.grad, x_t.grad)]
    if states:
        pairs.append(("grad h_0", h_d.grad, h_t.grad))
    pairs += [(f"grad {n}", getattr(ours, n).grad, p.grad) for n, p in theirs.named_parameters()]
    for what, got, want in pairs:
        check(got.detach().numpy(), want.detach().double().numpy(), F32, f"{kind.name} {kw}: {what}", tol=2e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_module_unbatched_and_dropout_match_torch(kind, rng):
    """Unbatched input (T, I) with h_0 (L * D, H); dropout is off in eval mode, on in training mode
    (outputs differ from eval's, but only by the dropped layer inputs: gradients stay finite)."""
    torch = pytest.importorskip("torch")
    kind = Kind(kind)
    theirs, ours = _module_pair(torch, kind, dict(num_layers=2, dropout=0.5, bidirectional=True))
    x, h0 = rand(rng, (4, 6), F32), rand(rng, (4, 9), F32)
    ours.eval()
    theirs.eval()
    out_d, hn_d = ours(deepkern.tensor(x), deepkern.tensor(h0))
    out_t, hn_t = theirs(torch.tensor(x), torch.tensor(h0))
    check(out_d.detach().numpy(), out_t.detach().double().numpy(), F32, "unbatched output", tol=2e-5)
    check(hn_d.detach().numpy(), hn_t.detach().double().numpy(), F32, "unbatched h_n", tol=2e-5)
    ours.train()
    deepkern.manual_seed(3)
    out_train, _ = ours(deepkern.tensor(x), deepkern.tensor(h0))
    assert not np.allclose(out_train.detach().numpy(), out_d.detach().numpy())


@pytest.mark.parametrize("kind", KINDS)
def test_module_gradcheck(kind, rng):
    """Every input and parameter gradient of a 2-layer bidirectional batch_first float64 module
    against finite differences (dropout on, with the same masks on every call)."""
    kind = Kind(kind)
    extra = {} if kind.nl is None else {"nonlinearity": kind.nl}
    cls = deepkern.nn.GRU if kind.nl is None else deepkern.nn.RNN
    m = cls(3, 2, num_layers=2, bidirectional=True, batch_first=True, dropout=0.3, dtype=F64, **extra)
    x = deepkern.tensor(rng.standard_normal((2, 3, 3)) + 0.1, requires_grad=True)
    h0 = deepkern.tensor(rng.standard_normal((4, 2, 2)), requires_grad=True)

    def fn(x, h0, *params):
        deepkern.manual_seed(5)
        return m(x, h0)

    gradcheck(fn, x, h0, *[p for _, p in m.named_parameters()])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_cell_module_matches_torch(kind, bias, rng):
    torch = pytest.importorskip("torch")
    kind = Kind(kind)
    extra = {} if kind.nl is None else {"nonlinearity": kind.nl}
    theirs = (torch.nn.GRUCell if kind.nl is None else torch.nn.RNNCell)(5, 7, bias=bias, **extra)
    ours = (deepkern.nn.GRUCell if kind.nl is None else deepkern.nn.RNNCell)(5, 7, bias=bias, **extra)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x, h = rand(rng, (3, 5), F32), rand(rng, (3, 7), F32)
    w = rand(rng, (3, 7), F32)
    x_d, x_t = deepkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    h_d, h_t = deepkern.tensor(h, requires_grad=True), torch.tensor(h, requires_grad=True)
    (ours(x_d, h_d) * deepkern.tensor(w)).sum().backward()
    (theirs(x_t, h_t) * torch.tensor(w)).sum().backward()
    check(ours(x_d[0]).detach().numpy(), theirs(x_t[0]).detach().double().numpy(), F32, "unbatched, no hx", tol=2e-5)
    pairs = [("grad x", x_d.grad, x_t.grad), ("grad h", h_d.grad, h_t.grad)]
    pairs += [(f"grad {n}", getattr(ours, n).grad, p.grad) for n, p in theirs.named_parameters()]
    for what, got, want in pairs:
        check(got.detach().numpy(), want.detach().double().numpy(), F32, f"{kind.name}: {what}", tol=2e-5)


def test_module_bad_arguments():
    with raises_naming(ValueError, "GRU", "hidden_size", "0"):
        deepkern.nn.GRU(3, 0)
    with raises_naming(ValueError, "RNN", "nonlinearity", "sigmoid"):
        deepkern.nn.RNN(3, 4, nonlinearity="sigmoid")
    with raises_naming(ValueError, "RNNCell", "nonlinearity", "gelu"):
        deepkern.nn.RNNCell(3, 4, nonlinearity="gelu")
    m = deepkern.nn.GRU(3, 4, num_layers=2)
    x = deepkern.tensor(np.zeros((5, 2, 3), F32))
    with raises_naming(ValueError, r"GRU\(input_size=3, hidden_size=4\)", "input", r"\(5, 2, 4\)"):
        m(deepkern.tensor(np.zeros((5, 2, 4), F32)))
    with raises_naming(ValueError, "GRU", "h_0", r"\(1, 2, 4\)", r"\(2, 2, 4\)"):
        m(x, deepkern.tensor(np.zeros((1, 2, 4), F32)))
    with raises_naming(TypeError, "GRU", "hx", "tuple"):
        m(x, (deepkern.tensor(np.zeros((2, 2, 4), F32)),))
    with raises_naming(TypeError, "RNN", "input", "float64"):
        deepkern.nn.RNN(3, 4)(deepkern.tensor(np.zeros((5, 2, 3))))
    with raises_naming(ValueError, "GRUCell", "h", r"\(2, 5\)"):
        deepkern.nn.GRUCell(3, 4)(deepkern.tensor(np.zeros((2, 3), F32)), deepkern.tensor(np.zeros((2, 5), F32)))
    assert "nonlinearity='relu'" in repr(deepkern.nn.RNN(3, 4, nonlinearity="relu"))
    for cls in (deepkern.nn.GRU, deepkern.nn.RNN):  # an LSTM-only argument, as in PyTorch
        with raises_naming(ValueError, cls.__name__, "proj_size", "only supported for LSTM"):
            cls(3, 4, proj_size=2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_relu_keeps_nan_like_torch(isa, dtype):
    """relu(NaN) is NaN, as PyTorch's: a NaN input reaches every output of its sequence (layer and
    cell) and no other; the backward passes the gradient where h is NaN (PyTorch's threshold backward):
    with all weights equal, the NaN sequence's input gradient is the others' (PyTorch's here too)."""
    x = np.ones((2, 3, 4), dtype)
    x[0, 1, 2] = np.nan
    h0, b = np.zeros((3, 5), dtype), np.zeros(5, dtype)
    w_ih, w_hh = np.full((5, 4), 0.1, dtype), np.full((5, 5), 0.1, dtype)
    y, h_t, cache = rnn(x, h0, w_ih, w_hh, b, b, nonlinearity="relu", return_cache=True)
    assert np.isnan(y[:, 1]).all() and np.isnan(h_t[1]).all()
    assert not np.isnan(y[:, [0, 2]]).any()
    h1 = rnn_cell(x[0], h0, w_ih, w_hh, b, b, nonlinearity="relu")
    assert np.isnan(h1[1]).all() and not np.isnan(h1[[0, 2]]).any()
    grad_x = rnn_backward(np.ones_like(y), None, x, h0, w_ih, w_hh, cache)[0]
    np.testing.assert_array_equal(grad_x[:, 1], grad_x[:, 0])  # through NaN h as through h > 0, as PyTorch
