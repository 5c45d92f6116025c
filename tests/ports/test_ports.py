"""Ports of well-known PyTorch example programs (the modules beside this file), each written once
against a ``torch`` namespace and run twice: with PyTorch, and with deepkern in its place. Both runs
start from the same weights (PyTorch's, copied through state_dict()/load_state_dict() as NumPy
arrays) and see the same data; their losses at every step and their final parameters and buffers
must agree: float64 runs to 1e-9, float32 runs to 1e-4 (relative to the largest value compared)."""

from __future__ import annotations

import dcgan
import deepkern as dk
import numpy as np
import pytest
import siamese
import time_sequence_prediction
import word_language_model as wlm

torch = pytest.importorskip("torch")

DTYPES = ["float64", "float32"]
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


@pytest.fixture(autouse=True)
def torch_on_one_thread():
    """PyTorch on one thread during each port: these programs are many small ops, which its thread
    pool only slows down (badly so on a busy machine). Its generator is seeded too, so a port's
    initial weights do not depend on which tests ran before it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


def copy_weights(theirs, ours) -> dict:
    """Loads PyTorch module ``theirs``'s state into deepkern module ``ours``; returns that state as
    NumPy arrays (copies), the starting point."""
    state = {k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()}
    missing, unexpected = ours.load_state_dict(state)
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
    return state


def assert_agree(theirs, ours, dtype: str, what: str) -> None:
    """``ours`` (deepkern's values: numbers, sequences or arrays) equals ``theirs`` (PyTorch's, finite)
    to the tolerance of ``dtype``, relative to the largest magnitude of ``theirs``."""
    theirs, ours = np.asarray(theirs, np.float64), np.asarray(ours, np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, PyTorch's {theirs.shape}"
    assert np.isfinite(theirs).all(), f"{what}: PyTorch's values are not finite"
    scale = np.abs(theirs).max(initial=0.0)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE[dtype] * scale, err_msg=what)


def assert_same_state(theirs, ours, start: dict, dtype: str, what: str) -> None:
    """The modules' final parameters and buffers agree (names, dtypes, values), and training moved
    one of them away from ``start`` by more than twice the tolerance (so that agreeing says something)."""
    mine, other = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(other), what
    moved = False
    for name, t in other.items():
        want, got = t.detach().numpy(), mine[name].detach().numpy()
        assert got.dtype == want.dtype, f"{what}.{name}: dtype {got.dtype}, PyTorch's {want.dtype}"
        assert_agree(want, got, dtype, f"{what}.{name}")
        if want.dtype.kind == "f":
            moved |= np.abs(want - start[name]).max() > 2 * TOLERANCE[dtype] * np.abs(want).max()
    assert moved, f"{what}: training left every parameter where it started"


# -- word_language_model ------------------------------------------------------------------------


def text(rng, lines=24, vocabulary=12) -> list:
    """Lines of 3 to 8 words that count up from a random word of a small vocabulary (so that the
    next word can be learned)."""
    starts, lengths = rng.integers(0, vocabulary, lines), rng.integers(3, 9, lines)
    return [" ".join(f"w{(s + i) % vocabulary}" for i in range(n)) for s, n in zip(starts, lengths)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("rnn_type", "tied"),
    [(r, t) for r in ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"] for t in (False, True)] + [("Transformer", False)],
)
def test_word_language_model(rnn_type, tied, dtype, rng):
    """An epoch of training (manual SGD, clipped gradients, repackaged hidden state) and an
    evaluation on the same batches: every batch's loss and the final weights agree with PyTorch.
    The learning rate is 5 (the example's 20 makes this small model diverge, where rounding
    differences of float32 grow without bound)."""
    lines, batch_size = text(rng), 4
    words, _ = wlm.corpus(torch, lines)
    theirs = wlm.build(torch, rnn_type, len(words), getattr(torch, dtype), tied=tied)
    ours = wlm.build(dk, rnn_type, len(words), getattr(dk, dtype), tied=tied)
    assert len(list(ours.parameters())) == len(list(theirs.parameters())), "tied weights count once"
    start = copy_weights(theirs, ours)
    losses = []
    for lib, model in ((torch, theirs), (dk, ours)):
        words_again, ids = wlm.corpus(lib, lines)
        assert words_again == words
        data = wlm.batchify(lib, ids, batch_size)
        losses.append((wlm.train(lib, model, data, batch_size, lr=5.0), wlm.evaluate(lib, model, data, batch_size)))
    (train_theirs, eval_theirs), (train_ours, eval_ours) = losses
    assert len(train_theirs) > 3
    assert_agree(train_theirs, train_ours, dtype, "training losses")
    assert_agree(eval_theirs, eval_ours, dtype, "evaluation loss")
    assert_same_state(theirs, ours, start, dtype, "model")


def test_word_language_model_with_dropout_trains_reproducibly(rng):
    """With dropout (deepkern alone: the dropout masks are the library's own): training lowers the
    evaluation loss, the same seed gives the same run, another seed another one."""
    lines = text(rng)

    def run(seed):
        dk.manual_seed(seed)
        words, ids = wlm.corpus(dk, lines)
        model = wlm.build(dk, "LSTM", len(words), dk.float64, dropout=0.3)
        data = wlm.batchify(dk, ids, 4)
        before = wlm.evaluate(dk, model, data, 4)
        epochs = [wlm.train(dk, model, data, 4, lr=2.0) for _ in range(4)]
        return before, epochs, wlm.evaluate(dk, model, data, 4)

    before, epochs, after = run(3)
    assert after < before - 0.02, f"evaluation loss {before} before training, {after} after"
    assert run(3) == (before, epochs, after)
    assert run(4)[1] != epochs


# -- time_sequence_prediction -------------------------------------------------------------------


def test_time_sequence_prediction():
    """LBFGS steps on sine waves and predictions of the future: the loss of every closure call, the
    test losses, the predicted waves and the final weights agree with PyTorch (float64, as there)."""
    data = time_sequence_prediction.sine_waves(np)
    theirs, ours = time_sequence_prediction.build(torch), time_sequence_prediction.build(dk)
    start = copy_weights(theirs, ours)
    closure_theirs, test_theirs, y_theirs = time_sequence_prediction.train(torch, theirs, data)
    closure_ours, test_ours, y_ours = time_sequence_prediction.train(dk, ours, data)
    assert len(closure_theirs) > 2 and closure_theirs[-1] < closure_theirs[0]
    assert_agree(closure_theirs, closure_ours, "float64", "closure losses")
    assert_agree(test_theirs, test_ours, "float64", "test losses")
    assert_agree(y_theirs, y_ours, "float64", "predicted waves")
    assert_same_state(theirs, ours, start, "float64", "model")


# -- dcgan ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_dcgan(dtype, rng):
    """Three batches (the last one smaller) of alternating discriminator and generator steps on
    random 32x32 images:
    errD, errG, D(x), D(G(z)) per batch, the generator's images of a fixed noise afterwards and both
    networks' final weights and batch-norm statistics agree with PyTorch."""
    count, batch_size, nz = 16, 6, 8
    images = rng.uniform(-1, 1, (count, 3, 32, 32)).astype(dtype)
    noises = rng.standard_normal((count, nz, 1, 1)).astype(dtype)
    fixed_noise = rng.standard_normal((4, nz, 1, 1)).astype(dtype)
    theirs, ours = dcgan.build(torch, getattr(torch, dtype), nz=nz), dcgan.build(dk, getattr(dk, dtype), nz=nz)
    starts = [copy_weights(t, o) for t, o in zip(theirs, ours)]
    history_theirs, fake_theirs = dcgan.train(torch, *theirs, images, noises, fixed_noise, batch_size)
    history_ours, fake_ours = dcgan.train(dk, *ours, images, noises, fixed_noise, batch_size)
    assert len(history_theirs) == 3
    assert_agree(history_theirs, history_ours, dtype, "errD, errG, D(x), D(G(z))")
    assert_agree(fake_theirs, fake_ours, dtype, "generated images")
    for t, o, start, name in zip(theirs, ours, starts, ["netG", "netD"]):
        assert_same_state(t, o, start, dtype, name)


# -- siamese --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["contrastive", "TripletMarginLoss", "triplet_by_hand"])
def test_siamese(loss, dtype, rng):
    """Batches of image pairs (contrastive loss, Adam) or triplets (triplet loss, SGD with momentum)
    through the shared embedding network: the loss per batch and the final weights agree with PyTorch."""

    count, batch_size = 14, 5

    def images():
        return rng.standard_normal((count, 1, 24, 24)).astype(dtype)

    if loss == "contrastive":
        classes, partners = rng.integers(0, 3, count), rng.permutation(count)
        batches = (images(), classes, partners, batch_size)
        assert 0 < np.mean(classes != classes[partners]) < 1
    else:
        batches = (images(), images(), images(), batch_size)
    theirs, ours = siamese.build(torch, getattr(torch, dtype)), siamese.build(dk, getattr(dk, dtype))
    start = copy_weights(theirs, ours)
    losses = []
    for lib, net in ((torch, theirs), (dk, ours)):
        if loss == "contrastive":
            losses.append(siamese.train_pairs(lib, net, *batches))
        else:
            losses.append(siamese.train_triplets(lib, net, *batches, by_hand=loss == "triplet_by_hand"))
    assert len(losses[0]) == 3
    assert_agree(losses[0], losses[1], dtype, f"{loss} losses")
    assert_same_state(theirs, ours, start, dtype, "net")
