"""Variable-length batches: deepkern.nn.utils.rnn (PackedSequence, pad_sequence, pack_padded_sequence,
pad_packed_sequence, pack_sequence) and the recurrent kernels' batch_sizes.

The kernels with batch_sizes (ops.lstm/gru/rnn and their backward passes) against the float64
references run on each sequence's own prefix, on 1 and 2 threads (teams splitting units and rows);
nn.LSTM/GRU/RNN on a PackedSequence against the same float64 layer run on each sequence alone
(outputs, final states and every gradient), against torch (where installed), and by finite
differences; the pad/pack functions against NumPy constructions and round trips; bad lengths and
batch sizes raise errors naming them.
"""

from __future__ import annotations

import copy

import deepkern
import numpy as np
import pytest
from deepkern import ops
from deepkern.nn import GRU, LSTM, RNN
from deepkern.nn.utils.rnn import (
    PackedSequence,
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
    pad_sequence,
    unpack_sequence,
    unpad_sequence,
)

from checks import F32, F64, check, gradcheck, raises_naming, rand
from reference import (
    gru_backward_ref,
    gru_ref,
    lstm_backward_ref,
    lstm_ref,
    packed_layer_ref,
    rnn_backward_ref,
    rnn_ref,
)


def _lengths(rng, batch, steps):
    """Random lengths in [1, steps] with steps and 1 among them (batch >= 2) and some ties."""
    lengths = rng.integers(1, steps + 1, batch)
    lengths[0] = steps
    if batch > 1:
        lengths[-1] = 1
    if batch > 3:
        lengths[2] = lengths[1]
    return lengths


def _batch_sizes(sorted_lengths, steps):
    return np.array([(sorted_lengths > t).sum() for t in range(steps)], np.int64)


# ----------------------------------------------------------------------------------------------
# the kernels: ops.lstm / gru / rnn with batch_sizes


_STATES = {"lstm": 2, "gru": 1, "rnn": 1}
_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
_REFS = {
    "lstm": (lstm_ref, lstm_backward_ref),
    "gru": (gru_ref, gru_backward_ref),
    "rnn": (rnn_ref, rnn_backward_ref),
}
_OPS = {"lstm": (ops.lstm, ops.lstm_backward), "gru": (ops.gru, ops.gru_backward), "rnn": (ops.rnn, ops.rnn_backward)}


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(
    "t, b, i, h",
    [(5, 4, 3, 6), (7, 70, 5, 16), (4, 3, 4, 80), (1, 3, 2, 5), (6, 1, 3, 4)],
    ids=["small", "row-teams", "unit-teams", "one-step", "one-row"],
)
def test_kernel_batch_sizes_match_each_sequence_alone(kind, reverse, dtype, t, b, i, h, threads, rng):
    """Forward (with and without the cache) and backward from that cache: y past each end and the
    gradients there are checked too (y keeps the row's state: its last, or h0 in reverse). x's
    entries past the ends are NaN: the forward never reads them."""
    lengths = -np.sort(-_lengths(rng, b, t))
    sizes = _batch_sizes(lengths, t)
    gates, n_states = _GATES[kind], _STATES[kind]
    x = rand(rng, (t, b, i), dtype)
    args = [x] + [rand(rng, (b, h), dtype) for _ in range(n_states)]
    args += [rand(rng, (gates * h, i), dtype) / 2, rand(rng, (gates * h, h), dtype) / 2]
    args += [rand(rng, gates * h, dtype), rand(rng, gates * h, dtype)]
    grad_y = rand(rng, (t, b, h), dtype)
    grad_states = [rand(rng, (b, h), dtype) for _ in range(n_states)]
    states, weights = args[1 : 1 + n_states], args[1 + n_states :]
    refs, ref_grads = packed_layer_ref(
        *_REFS[kind], x, states, weights, sizes, grads=(grad_y, *grad_states), reverse=reverse
    )
    past = np.arange(t)[:, None] >= lengths[None, :]  # (T, B): steps past each sequence's end
    poisoned = x.copy()
    poisoned[past] = np.nan
    forward, backward = _OPS[kind]
    run = [poisoned, *args[1:]]
    plain = forward(*run, reverse=reverse, batch_sizes=sizes)
    *outs, cache = forward(*run, reverse=reverse, batch_sizes=sizes, return_cache=True)
    for got_all in (plain, outs):
        for name, got, ref in zip(("y", "h_T", "c_T"), got_all, refs):
            check(got, ref, dtype, f"{kind} {name}, lengths {lengths}")
    # the backward reads x past the ends too (times zero gate gradients): finite values there
    grads = backward(grad_y, *grad_states, x, *args[1:-2], cache, reverse=reverse)
    assert len(grads) == len(ref_grads)
    for k, (got, ref) in enumerate(zip(grads, ref_grads)):
        check(got, ref, dtype, f"{kind} gradient {k}, lengths {lengths}")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_full_batch_sizes_are_the_unpacked_path(kind, rng):
    """batch_sizes all B runs exactly as no batch_sizes (bit for bit)."""
    t, b, i, h = 6, 5, 4, 7
    gates = _GATES[kind]
    args = [rand(rng, (t, b, i), F32)] + [rand(rng, (b, h), F32) for _ in range(_STATES[kind])]
    args += [rand(rng, (gates * h, i), F32), rand(rng, (gates * h, h), F32)]
    forward = _OPS[kind][0]
    for reverse in (False, True):
        plain = forward(*args, reverse=reverse)
        sized = forward(*args, reverse=reverse, batch_sizes=np.full(t, b))
        for got, want in zip(sized, plain):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_kernel_refuses_bad_batch_sizes(kind, rng):
    t, b, i, h = 4, 3, 2, 5
    gates = _GATES[kind]
    args = [rand(rng, (t, b, i), F32)] + [None] * _STATES[kind]
    args += [rand(rng, (gates * h, i), F32), rand(rng, (gates * h, h), F32)]
    forward = _OPS[kind][0]
    for bad in ([3, 2, 1], [3, 2, 2, 1, 1]):
        with raises_naming(ValueError, kind, "batch_sizes", r"\(4,\)", str(len(bad))):
            forward(*args, batch_sizes=np.array(bad))
    for bad in ([2, 2, 1, 1], [3, 2, 3, 1], [3, 2, 1, 0], [4, 3, 2, 1]):
        with raises_naming(ValueError, kind, "batch_sizes", "B = 3", "never increase", str(bad).replace("[", r"\[")):
            forward(*args, batch_sizes=np.array(bad))
    with raises_naming(TypeError, kind, "batch_sizes", "float"):
        forward(*args, batch_sizes=np.array([3.0, 2, 1, 1]))


# ----------------------------------------------------------------------------------------------
# the layers on a PackedSequence


def _model(kind, size, hidden, dtype, **kw):
    if kind == "rnn_relu":
        return RNN(size, hidden, nonlinearity="relu", dtype=dtype, **kw)
    return {"lstm": LSTM, "gru": GRU, "rnn": RNN}[kind](size, hidden, dtype=dtype, **kw)


def _as_float64(model):
    ref = copy.deepcopy(model).double()
    for p in ref.parameters():
        p.grad = None
    return ref


def _each_alone(ref, x, lengths, hx, w_out, w_states):
    """The float64 layer ``ref`` on each sequence alone (x (T, B, I) padded, time-major): the
    padded output (zero past the ends), the final states (L*D, B, H), the gradients of x and of
    the hx states of sum(w_out * output) + sum(w_states * states); the parameters' gradients
    accumulate in ``ref``."""
    out = np.zeros(w_out.shape)
    states = [np.zeros(w.shape) for w in w_states]
    grad_x = np.zeros(x.shape)
    grad_hx = [np.zeros(w.shape) for w in w_states] if hx is not None else None
    for b, n in enumerate(lengths):
        seq = x[:n, b : b + 1].astype(F64)  # (n, 1, I); (1, n, I) for a batch_first layer
        xb = deepkern.tensor(seq.transpose(1, 0, 2).copy() if ref.batch_first else seq, requires_grad=True)
        hb = None
        if hx is not None:
            hb = [deepkern.tensor(s[:, b : b + 1].astype(F64), requires_grad=True) for s in hx]
        y, finals = ref(xb, None if hb is None else (tuple(hb) if len(hb) > 1 else hb[0]))
        finals = finals if isinstance(finals, tuple) else (finals,)
        if ref.batch_first:
            y = y.transpose(0, 1)
        loss = (y * deepkern.tensor(w_out[:n, b : b + 1])).sum()
        for s, w in zip(finals, w_states):
            loss = loss + (s * deepkern.tensor(w[:, b : b + 1])).sum()
        loss.backward()
        out[:n, b] = y.detach().numpy()[:, 0]
        for total, s in zip(states, finals):
            total[:, b] = s.detach().numpy()[:, 0]
        grad_x[:n, b] = xb.grad.numpy()[0] if ref.batch_first else xb.grad.numpy()[:, 0]
        if hx is not None:
            for g, s in zip(grad_hx, hb):
                g[:, b] = s.grad.numpy()[:, 0]
    return out, states, grad_x, grad_hx


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("states", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize(
    "kw",
    [
        dict(num_layers=1),
        dict(num_layers=2, bidirectional=True),
        dict(num_layers=2, batch_first=True),
        dict(num_layers=1, bidirectional=True, bias=False),
    ],
    ids=["1layer", "2layers-bidir", "2layers-batch_first", "bidir-nobias"],
)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "rnn_relu"])
def test_layer_matches_each_sequence_alone(kind, kw, states, enforce_sorted, dtype, rng):
    t, b, i, h = 6, 5, 3, 4
    deepkern.manual_seed(int(rng.integers(1 << 30)))
    model = _model(kind, i, h, dtype, **kw)
    ref = _as_float64(model)
    dirs = 2 if model.bidirectional else 1
    lengths = _lengths(rng, b, t)
    if enforce_sorted:
        lengths = -np.sort(-lengths)
    n_states = 2 if kind == "lstm" else 1
    x = rand(rng, (t, b, i), dtype)
    hx = [rand(rng, (model.num_layers * dirs, b, h), dtype) for _ in range(n_states)] if states else None
    w_out = rng.standard_normal((t, b, dirs * h))
    w_states = [rng.standard_normal((model.num_layers * dirs, b, h)) for _ in range(n_states)]
    want_out, want_states, want_gx, want_ghx = _each_alone(ref, x, lengths, hx, w_out, w_states)

    # batch_first only matters for the padded tensors, never for the PackedSequence itself
    x_d = deepkern.tensor(x.transpose(1, 0, 2).copy() if model.batch_first else x, requires_grad=True)
    hx_d = None if hx is None else [deepkern.tensor(s, requires_grad=True) for s in hx]
    packed = pack_padded_sequence(x_d, deepkern.tensor(lengths), model.batch_first, enforce_sorted)
    out, finals = model(packed, None if hx_d is None else (tuple(hx_d) if n_states > 1 else hx_d[0]))
    assert isinstance(out, PackedSequence)
    assert out.batch_sizes is packed.batch_sizes and out.sorted_indices is packed.sorted_indices
    finals = finals if isinstance(finals, tuple) else (finals,)
    padded, got_lengths = pad_packed_sequence(out, batch_first=model.batch_first, total_length=t)
    np.testing.assert_array_equal(got_lengths.numpy(), lengths)
    padded_tm = padded.transpose(0, 1) if model.batch_first else padded
    loss = (padded_tm * deepkern.tensor(w_out.astype(dtype))).sum()
    for s, w in zip(finals, w_states):
        loss = loss + (s * deepkern.tensor(w.astype(dtype))).sum()
    loss.backward()

    what = f"{kind} {kw} lengths {lengths.tolist()}"
    check(padded_tm.detach().numpy(), want_out, dtype, f"{what}: output")
    for k, (got, want) in enumerate(zip(finals, want_states)):
        check(got.detach().numpy(), want, dtype, f"{what}: final state {k}")
    grad_x = x_d.grad.numpy()
    check(grad_x.transpose(1, 0, 2) if model.batch_first else grad_x, want_gx, dtype, f"{what}: grad x")
    if hx is not None:
        for k, (got, want) in enumerate(zip(hx_d, want_ghx)):
            check(got.grad.numpy(), want, dtype, f"{what}: grad of state {k}")
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        check(p.grad.numpy(), q.grad.numpy(), dtype, f"{what}: grad {name}")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_layer_gradcheck(kind, rng):
    """Finite differences through pack_padded_sequence, a 2-layer bidirectional layer and
    pad_packed_sequence, unsorted lengths, with initial states."""
    model = _model(kind, 2, 2, F64, num_layers=2, bidirectional=True)
    lengths = [2, 3, 1]
    x = deepkern.tensor(rng.standard_normal((3, 3, 2)), requires_grad=True)
    n_states = 2 if kind == "lstm" else 1
    hx = [deepkern.tensor(rng.standard_normal((4, 3, 2)), requires_grad=True) for _ in range(n_states)]

    def fn(x, *rest):
        states = rest[: len(hx)]
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, finals = model(packed, tuple(states) if len(states) > 1 else states[0])
        finals = finals if isinstance(finals, tuple) else (finals,)
        return (pad_packed_sequence(out)[0], *finals)

    gradcheck(fn, x, *hx, *model.parameters())


@pytest.mark.parametrize(
    "kind, kw",
    [
        ("LSTM", dict(num_layers=2, bidirectional=True)),
        ("GRU", dict(num_layers=2, batch_first=True)),
        ("RNN", dict(num_layers=1, bidirectional=True, nonlinearity="relu")),
    ],
    ids=["lstm", "gru", "rnn"],
)
def test_layer_matches_torch(kind, kw, rng):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (comparisons with torch.nn)")
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(3, 5, **kw)
    ours = getattr(deepkern.nn, kind)(3, 5, **kw)
    missing, unexpected = ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert not missing and not unexpected
    dirs = 2 if ours.bidirectional else 1
    t, b = 6, 5
    lengths = [4, 6, 1, 4, 2]
    x = rng.standard_normal((b, t, 3) if ours.batch_first else (t, b, 3)).astype(F32)
    n_states = 2 if kind == "LSTM" else 1
    hx = [rng.standard_normal((ours.num_layers * dirs, b, 5)).astype(F32) for _ in range(n_states)]
    x_d, x_t = deepkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    hx_d = [deepkern.tensor(s, requires_grad=True) for s in hx]
    hx_t = [torch.tensor(s, requires_grad=True) for s in hx]
    results = []
    for lib, nn_utils, model, xs, hs in (
        (deepkern, deepkern.nn.utils.rnn, ours, x_d, hx_d),
        (torch, torch.nn.utils.rnn, theirs, x_t, hx_t),
    ):
        packed = nn_utils.pack_padded_sequence(xs, lib.tensor(lengths), ours.batch_first, enforce_sorted=False)
        out, finals = model(packed, tuple(hs) if n_states > 1 else hs[0])
        finals = finals if isinstance(finals, tuple) else (finals,)
        padded, _ = nn_utils.pad_packed_sequence(out, batch_first=ours.batch_first)
        w = np.linspace(-1, 1, int(np.prod(padded.shape))).reshape(tuple(padded.shape))
        loss = (padded * lib.tensor(w.astype(F32))).sum() + sum((s * s).sum() for s in finals)
        loss.backward()
        results.append([padded, *finals, xs.grad, *(s.grad for s in hs)])
        results[-1] += [getattr(model, n).grad for n, _ in theirs.named_parameters()]
    names = ["output", *(f"final {k}" for k in range(n_states)), "grad x", *(f"grad hx {k}" for k in range(n_states))]
    names += [f"grad {n}" for n, _ in theirs.named_parameters()]
    for name, got, want in zip(names, *results):
        check(got.detach().numpy(), want.detach().double().numpy(), F32, f"{kind}: {name}", tol=2e-5)


def test_layer_refuses_bad_packed_input(rng):
    model = LSTM(3, 4)
    packed = pack_sequence([deepkern.tensor(rand(rng, (n, 3), F32)) for n in (3, 2)])
    with raises_naming(ValueError, "LSTM", "h_0", r"\(1, 2, 4\)", r"\(1, 3, 4\)"):
        model(packed, (deepkern.zeros(1, 3, 4), deepkern.zeros(1, 3, 4)))
    wrong = pack_sequence([deepkern.tensor(rand(rng, (n, 2), F32)) for n in (3, 2)])
    with raises_naming(ValueError, "LSTM", r"\(N, 3\)", r"\(5, 2\)"):
        model(wrong)
    with raises_naming(TypeError, "LSTM", "float64", "float32"):
        model(pack_sequence([deepkern.tensor(rand(rng, (2, 3), F64))]))


# ----------------------------------------------------------------------------------------------
# the pad/pack functions


def _pad_ref(seqs, batch_first, value, side):
    steps = max(len(s) for s in seqs)
    out = np.full((len(seqs), steps) + seqs[0].shape[1:], value)
    for b, s in enumerate(seqs):
        if side == "right":
            out[b, : len(s)] = s
        else:
            out[b, steps - len(s) :] = s
    return out if batch_first else out.swapaxes(0, 1)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_pad_sequence(batch_first, side, rng):
    seqs = [rng.standard_normal((n, 2, 3)) for n in (3, 0, 5, 1)]
    got = pad_sequence([deepkern.tensor(s) for s in seqs], batch_first, -2.5, side)
    np.testing.assert_array_equal(got.numpy(), _pad_ref(seqs, batch_first, -2.5, side))
    tensors = [deepkern.tensor(s, requires_grad=len(s) > 0) for s in seqs]  # gradcheck perturbs elements
    gradcheck(lambda *ts: pad_sequence(ts, batch_first, 0.0, side), *tensors)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_pack_padded_sequence_layout_and_round_trip(batch_first, enforce_sorted, rng):
    """data is step 0 of every sequence in decreasing length, then step 1, ...; padding back gives
    the input with zeros (or padding_value) past the ends, in the original order."""
    t, b = 5, 6
    lengths = _lengths(rng, b, t)
    if enforce_sorted:
        lengths = -np.sort(-lengths)
    x = rng.standard_normal((t, b, 2))
    padded_in = deepkern.tensor(x.swapaxes(0, 1).copy() if batch_first else x)
    packed = pack_padded_sequence(padded_in, lengths, batch_first, enforce_sorted)
    order = np.argsort(-lengths, kind="stable")
    want = np.concatenate([x[s, order[lengths[order] > s]] for s in range(t)])
    np.testing.assert_array_equal(packed.data.numpy(), want)
    np.testing.assert_array_equal(packed.batch_sizes.numpy(), _batch_sizes(lengths[order], t))
    assert packed.batch_sizes.dtype == np.int64
    if enforce_sorted:
        assert packed.sorted_indices is None and packed.unsorted_indices is None
    else:
        np.testing.assert_array_equal(packed.sorted_indices.numpy(), order)
        np.testing.assert_array_equal(order[packed.unsorted_indices.numpy()], np.arange(b))
    for total in (None, t + 2):
        padded, got_lengths = pad_packed_sequence(packed, batch_first, 7.0, total)
        expect = np.full((total or t, b, 2), 7.0)
        running = np.arange(t)[:, None] < lengths[None, :]
        expect[:t][running] = x[running]
        np.testing.assert_array_equal(padded.numpy(), expect.swapaxes(0, 1) if batch_first else expect)
        np.testing.assert_array_equal(got_lengths.numpy(), lengths)
    seqs = [x[: lengths[k], k] for k in range(b)]
    again = pack_sequence([deepkern.tensor(s) for s in seqs], enforce_sorted)
    for got, want in zip(again, packed):
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    xt = deepkern.tensor(x, requires_grad=True)
    gradcheck(lambda x: pad_packed_sequence(pack_padded_sequence(x, lengths, False, enforce_sorted))[0], xt)


def test_pack_functions_match_torch(rng):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (comparisons with torch.nn.utils.rnn)")
    lengths = [3, 5, 1, 4]  # distinct: torch's sort order of ties is unspecified
    x = rng.standard_normal((4, 5, 2)).astype(F32)
    ours = pack_padded_sequence(deepkern.tensor(x), lengths, batch_first=True, enforce_sorted=False)
    theirs = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), lengths, batch_first=True, enforce_sorted=False)
    for field in PackedSequence._fields:
        np.testing.assert_array_equal(getattr(ours, field).numpy(), getattr(theirs, field).numpy(), err_msg=field)
    seqs = [rng.standard_normal((n, 3)).astype(F32) for n in (2, 4, 1)]
    for side in ("right", "left"):
        got = pad_sequence([deepkern.tensor(s) for s in seqs], True, 1.5, side)
        want = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], True, 1.5, side)
        np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("batch_first", [False, True])
def test_unpad_and_unpack_give_the_sequences_back(batch_first, rng):
    """unpad_sequence inverts pad_sequence and unpack_sequence pack_sequence (unsorted lengths, the
    original order), as copies through which gradients flow to the padded batch."""
    seqs = [rng.standard_normal((n, 3)) for n in (2, 5, 1, 4)]
    padded = deepkern.tensor(pad_sequence([deepkern.tensor(s) for s in seqs], batch_first), requires_grad=True)
    got = unpad_sequence(padded, [len(s) for s in seqs], batch_first)
    for g, s in zip(got, seqs):
        np.testing.assert_array_equal(g.detach().numpy(), s)
    got[0].detach()[...] = 99.0  # a copy, not a view of the batch
    assert np.abs(padded.detach().numpy()).max() < 99
    sum(((g * (k + 1)).sum() for k, g in enumerate(got)), deepkern.tensor(0.0)).backward()
    weights = pad_sequence([deepkern.tensor(np.full((len(s), 3), k + 1.0)) for k, s in enumerate(seqs)], batch_first)
    np.testing.assert_array_equal(padded.grad.numpy(), weights.numpy())
    packed = pack_sequence([deepkern.tensor(s) for s in seqs], enforce_sorted=False)
    for g, s in zip(unpack_sequence(packed), seqs):
        np.testing.assert_array_equal(g.numpy(), s)
    with raises_naming(ValueError, "unpad_sequence", "lengths", "[2, 9]"):
        unpad_sequence(padded, [2, 9], batch_first)


def test_packed_sequence_moves_and_casts_like_a_tensor(rng):
    """PackedSequence.to / double / float / cpu (PyTorch's methods): data converted, batch_sizes and
    the indices kept as int64; the sequence itself when nothing changes."""
    packed = pack_sequence([deepkern.tensor(rng.standard_normal((n, 2)).astype(F32)) for n in (1, 3)], False)
    assert packed.to(deepkern.float32) is packed and packed.cpu() is packed and not packed.is_cuda
    for converted, dtype in ((packed.double(), np.float64), (packed.to(dtype=deepkern.float64), np.float64)):
        assert type(converted) is PackedSequence and converted.data.dtype == dtype
        np.testing.assert_array_equal(converted.data.numpy(), packed.data.numpy())
        for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
            np.testing.assert_array_equal(getattr(converted, field).numpy(), getattr(packed, field).numpy())
    assert packed.double().float().data.dtype == np.float32 and packed.long().data.dtype == np.int64
    assert not packed.is_pinned()


def test_bad_lengths_raise_naming_them(rng):
    x = deepkern.tensor(rand(rng, (4, 3, 2), F32))
    with raises_naming(ValueError, "pack_padded_sequence", "lengths", r"lengths\[1\] = 0"):
        pack_padded_sequence(x, [4, 0, 1], enforce_sorted=False)
    with raises_naming(ValueError, "pack_padded_sequence", "lengths", "decreasing", "enforce_sorted=False"):
        pack_padded_sequence(x, [2, 4, 1])
    with raises_naming(ValueError, "pack_padded_sequence", "len\\(lengths\\) = 2", "batch size 3"):
        pack_padded_sequence(x, [4, 1])
    with raises_naming(ValueError, "pack_padded_sequence", r"lengths\[0\] = 5", "4 steps"):
        pack_padded_sequence(x, [5, 2, 1])
    with raises_naming(ValueError, "pack_padded_sequence", "whole numbers", r"lengths\[1\] = 2.5"):
        pack_padded_sequence(x, [4.0, 2.5, 1.0])  # PyTorch would truncate it
    with raises_naming(TypeError, "pack_padded_sequence", "lengths", "integers"):
        pack_padded_sequence(x, ["4", "2", "1"])
    whole = pack_padded_sequence(x, deepkern.tensor([4.0, 2.0, 1.0]))  # a float mask's sums, as PyTorch takes
    np.testing.assert_array_equal(whole.batch_sizes.numpy(), pack_padded_sequence(x, [4, 2, 1]).batch_sizes.numpy())
    with raises_naming(ValueError, "pack_padded_sequence", "lengths", "1-D"):
        pack_padded_sequence(x, [[4, 2, 1]])
    packed = pack_padded_sequence(x, [4, 2, 1])
    with raises_naming(ValueError, "pad_packed_sequence", "total_length = 3", "4"):
        pad_packed_sequence(packed, total_length=3)
    with raises_naming(TypeError, "pad_packed_sequence", "PackedSequence", "Tensor"):
        pad_packed_sequence(x)
    with raises_naming(ValueError, "pad_sequence", "padding_side", "'middle'"):
        pad_sequence([x], padding_side="middle")
    with raises_naming(ValueError, "pad_sequence", "empty"):
        pad_sequence([])
    with raises_naming(ValueError, "pad_sequence", r"sequences\[1\]", r"\(2, 3\)"):
        pad_sequence([deepkern.zeros(2, 2), deepkern.zeros(2, 3)])
    with raises_naming(ValueError, "pack_padded_sequence", r"lengths\[1\] = 0"):
        pack_sequence([deepkern.zeros(2, 2), deepkern.zeros(0, 2)], enforce_sorted=False)
