"""deepkern.nn's layers: each against a float64 NumPy reference from its own parameters; against
PyTorch with the same weights (the torch model's state dict as NumPy arrays, loaded with
load_state_dict) in train and eval mode: outputs, input and parameter gradients, BatchNorm's
running statistics and num_batches_tracked, state-dict names and reprs; bad input named with
the layer and the shapes."""

from __future__ import annotations

import re

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn

from checks import check, gradcheck, raises_naming, shape_pattern
from reference import adaptive_avg_pool2d_ref, avg_pool2d_ref, conv2d_ref, linear_ref, max_pool2d_ref
from reference_nn import batch_norm_ref, gelu_ref, leaky_relu_ref, log_softmax_ref, sigmoid_ref, softmax_ref

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def _w(m, name):
    p = getattr(m, name)
    return None if p is None else p.detach().numpy()


def _bn_ref(m, x):
    track = m.track_running_stats
    out, _, _ = batch_norm_ref(
        x,
        _w(m, "running_mean") if track else None,
        _w(m, "running_var") if track else None,
        _w(m, "weight"),
        _w(m, "bias"),
        training=m.training or not track,
        eps=m.eps,
    )
    return out


# name -> (layer from a module namespace (deepkern.nn or torch.nn), input shape (or "idx" for
#          Embedding's integer input), float64 reference of the layer's output from its parameters)
LAYERS = {
    "Linear": (lambda nn: nn.Linear(5, 3), (4, 5), lambda m, x: linear_ref(x, _w(m, "weight"), _w(m, "bias"))),
    "Linear_nobias_3d": (
        lambda nn: nn.Linear(5, 3, bias=False),
        (2, 3, 5),
        lambda m, x: linear_ref(x, _w(m, "weight")),
    ),
    "Conv2d": (
        lambda nn: nn.Conv2d(3, 4, 3, stride=2, padding=1),
        (2, 3, 7, 6),
        lambda m, x: conv2d_ref(x, _w(m, "weight"), _w(m, "bias"), stride=2, padding=1),
    ),
    "Conv2d_groups": (
        lambda nn: nn.Conv2d(4, 6, (3, 2), padding=(2, 1), dilation=2, groups=2, bias=False),
        (2, 4, 8, 7),
        lambda m, x: conv2d_ref(x, _w(m, "weight"), None, padding=(2, 1), dilation=2, groups=2),
    ),
    "Conv2d_same_unbatched": (
        lambda nn: nn.Conv2d(3, 4, 3, padding="same"),
        (3, 6, 5),
        lambda m, x: conv2d_ref(x, _w(m, "weight"), _w(m, "bias"), padding="same"),
    ),
    "MaxPool2d": (
        lambda nn: nn.MaxPool2d(3, stride=2, padding=1),
        (2, 3, 7, 8),
        lambda m, x: max_pool2d_ref(x, 3, 2, 1)[0],
    ),
    "MaxPool2d_ceil": (
        lambda nn: nn.MaxPool2d(2, ceil_mode=True),
        (2, 3, 7, 7),
        lambda m, x: max_pool2d_ref(x, 2, ceil_mode=True)[0],
    ),
    "AvgPool2d": (
        lambda nn: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        (2, 3, 7, 8),
        lambda m, x: avg_pool2d_ref(x, 3, 2, 1, count_include_pad=False),
    ),
    "AdaptiveAvgPool2d": (
        lambda nn: nn.AdaptiveAvgPool2d((2, 3)),
        (2, 3, 7, 8),
        lambda m, x: adaptive_avg_pool2d_ref(x, (2, 3)),
    ),
    "Flatten": (lambda nn: nn.Flatten(), (2, 3, 4, 5), lambda m, x: x.reshape(2, -1).astype(F64)),
    "ReLU": (lambda nn: nn.ReLU(), (4, 6), lambda m, x: np.maximum(x, 0).astype(F64)),
    "LeakyReLU": (lambda nn: nn.LeakyReLU(0.2), (4, 6), lambda m, x: leaky_relu_ref(x, 0.2)),
    "Tanh": (lambda nn: nn.Tanh(), (4, 6), lambda m, x: np.tanh(x.astype(F64))),
    "Sigmoid": (lambda nn: nn.Sigmoid(), (4, 6), lambda m, x: sigmoid_ref(x)),
    "GELU": (lambda nn: nn.GELU(), (4, 6), lambda m, x: gelu_ref(x)),
    "GELU_tanh": (lambda nn: nn.GELU(approximate="tanh"), (4, 6), lambda m, x: gelu_ref(x, "tanh")),
    "Softmax": (lambda nn: nn.Softmax(dim=1), (3, 4, 2), lambda m, x: softmax_ref(x, 1)),
    "LogSoftmax": (lambda nn: nn.LogSoftmax(dim=-1), (3, 5), lambda m, x: log_softmax_ref(x, -1)),
    "Dropout_eval_only": (lambda nn: nn.Dropout(0.3), (4, 6), None),
    "BatchNorm1d": (lambda nn: nn.BatchNorm1d(4), (6, 4), _bn_ref),
    "BatchNorm1d_3d_cumulative": (lambda nn: nn.BatchNorm1d(4, momentum=None), (5, 4, 3), _bn_ref),
    "BatchNorm1d_no_affine": (lambda nn: nn.BatchNorm1d(4, affine=False), (6, 4), _bn_ref),
    "BatchNorm2d": (lambda nn: nn.BatchNorm2d(3, momentum=0.2, eps=1e-3), (4, 3, 5, 5), _bn_ref),
    "BatchNorm2d_no_bias": (lambda nn: nn.BatchNorm2d(3, bias=False), (4, 3, 5, 5), _bn_ref),
    "BatchNorm2d_no_running_stats": (lambda nn: nn.BatchNorm2d(3, track_running_stats=False), (4, 3, 5, 5), _bn_ref),
    "Embedding": (
        lambda nn: nn.Embedding(10, 4, padding_idx=2),
        "idx",
        lambda m, idx: _w(m, "weight")[idx].astype(F64),
    ),
}


def make_input(rng, shape, dtype):
    if shape == "idx":
        return rng.integers(0, 10, size=(3, 5))
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("name", sorted(n for n in LAYERS if LAYERS[n][2] is not None))
def test_layer_matches_reference(name, dtype, rng):
    make, shape, ref = LAYERS[name]
    layer = make(nn).to(dtype)
    for training in (True, False):
        layer.train(training)
        x = make_input(rng, shape, dtype)
        expected = ref(layer, x)  # before the forward: BatchNorm's eval uses the running values
        out = layer(dk.tensor(x))
        check(out.detach().numpy(), expected, dtype, f"{name} training={training}")


def _sync_grads(ours, theirs, x, xt, what, dtype):
    """Input and parameter gradients equal torch's (a gradient that is zero in exact arithmetic,
    e.g. a conv bias before BatchNorm in training, is compared in absolute terms)."""
    if xt.grad is not None:
        check(x.grad.numpy(), xt.grad.numpy(), dtype, f"{what}: input gradient", tol=_TOL[dtype])
    params = dict(ours.named_parameters())
    for pname, p in theirs.named_parameters():
        check(params[pname].grad.numpy(), p.grad.numpy(), dtype, f"{what}: {pname}.grad", tol=_TOL[dtype], floor=1e-3)


# float32 against torch's float32: both round, so their difference is twice a rounding error
_TOL = {F32: 2e-5, F64: 1e-10}


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_loads_torch_state_dict_and_matches_torch(name, dtype, rng):
    torch = pytest.importorskip("torch")
    make, shape, _ = LAYERS[name]
    torch.manual_seed(0)
    theirs = make(torch.nn).to(torch.float64 if dtype == F64 else torch.float32)
    ours = make(nn).to(dtype)
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    assert list(ours.state_dict()) == list(state)
    assert ours.load_state_dict(state) == ([], [])
    assert repr(ours) == repr(theirs)
    modes = (False,) if name.startswith("Dropout") else (True, True, False)
    for step, training in enumerate(modes):
        ours.train(training)
        theirs.train(training)
        x_arr = make_input(rng, shape, dtype)
        floating = shape != "idx"
        x, xt = dk.tensor(x_arr, requires_grad=floating), torch.tensor(x_arr, requires_grad=floating)
        out, out_t = ours(x), theirs(xt)
        what = f"{name} step {step} training={training}"
        check(out.detach().numpy(), out_t.detach().numpy(), dtype, f"{what}: output", tol=_TOL[dtype])
        g = rng.standard_normal(out.shape).astype(dtype)
        out.backward(g)
        out_t.backward(torch.tensor(g))
        _sync_grads(ours, theirs, x, xt, what, dtype)
        ours.zero_grad()
        theirs.zero_grad()
        for key, value in theirs.state_dict().items():  # running statistics, num_batches_tracked
            got = ours.state_dict()[key].numpy()
            if value.dtype == torch.int64:
                assert got.dtype == np.int64 and got == value.item(), f"{what}: {key}"
            else:
                check(got, value.numpy(), dtype, f"{what}: {key}", tol=_TOL[dtype])


def test_cnn_and_mlp_load_torch_models_and_match(rng):
    torch = pytest.importorskip("torch")

    def cnn(nn):
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(16, 10),
            nn.LogSoftmax(dim=1),
        )

    def mlp(nn):
        return nn.Sequential(
            nn.Linear(12, 32),
            nn.BatchNorm1d(32),
            nn.LeakyReLU(),
            nn.Linear(32, 16),
            nn.Tanh(),
            nn.Linear(16, 4),
            nn.Softmax(dim=-1),
        )

    for make, shape in ((cnn, (4, 3, 16, 16)), (mlp, (8, 12))):
        torch.manual_seed(1)
        theirs, ours = make(torch.nn).double(), make(nn).double()
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
        for training in (True, False):
            theirs.train(training)
            ours.train(training)
            if training:  # no dropout mask to share: the comparison runs with the Dropout layers off
                for m in list(ours.modules()) + list(theirs.modules()):
                    if type(m).__name__ == "Dropout":
                        m.eval()
            x_arr = rng.standard_normal(shape)
            x, xt = dk.tensor(x_arr, requires_grad=True), torch.tensor(x_arr, requires_grad=True)
            out, out_t = ours(x), theirs(xt)
            check(out.detach().numpy(), out_t.detach().numpy(), F64, f"{make.__name__} output", tol=1e-10)
            g = rng.standard_normal(out.shape)
            out.backward(g)
            out_t.backward(torch.tensor(g))
            _sync_grads(ours, theirs, x, xt, make.__name__, F64)
            ours.zero_grad()
            theirs.zero_grad()
        for key, value in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[key].numpy(), value.numpy(), rtol=1e-10, err_msg=key)


def test_layer_stack_gradients_by_finite_differences(rng):
    # (a bias straight before a BatchNorm in training has gradient 0: nothing to compare)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.GELU(),
        nn.BatchNorm2d(3),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 5),
        nn.Tanh(),
        nn.BatchNorm1d(5),
        nn.Linear(5, 4),
        nn.LogSoftmax(dim=1),
    ).double()
    x = dk.tensor(rng.standard_normal((3, 2, 4, 4)), requires_grad=True)
    gradcheck(lambda x, *params: model(x), x, *model.parameters())
    model.eval()
    gradcheck(lambda x, *params: model(x), x, *model.parameters())


# ---- construction -----------------------------------------------------------------------------


def test_parameters_are_float32_by_default_and_follow_dtype():
    for layer in (nn.Linear(3, 2), nn.Conv2d(2, 4, 3), nn.BatchNorm2d(3), nn.Embedding(5, 2)):
        assert all(p.dtype == F32 and p.requires_grad for p in layer.parameters())
    lin = nn.Linear(3, 2, dtype=dk.float64)
    assert lin.weight.dtype == F64 and lin.bias.dtype == F64
    bn = nn.BatchNorm1d(3).double()
    assert bn.running_mean.dtype == F64 and bn.num_batches_tracked.dtype == np.int64
    assert nn.Linear(3, 2, bias=False).bias is None
    assert [n for n, _ in nn.Conv2d(2, 4, 3, bias=False).named_parameters()] == ["weight"]


def test_reprs():
    assert repr(nn.Linear(3, 2)) == "Linear(in_features=3, out_features=2, bias=True)"
    assert (
        repr(nn.Conv2d(3, 8, 3, stride=2, padding=1, groups=1, bias=False))
        == "Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)"
    )
    assert (
        repr(nn.BatchNorm1d(4))
        == "BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)"
    )
    assert repr(nn.Embedding(10, 3, padding_idx=-1)) == "Embedding(10, 3, padding_idx=9)"
    assert repr(nn.Dropout()) == "Dropout(p=0.5, inplace=False)"
    assert repr(nn.GELU()) == "GELU(approximate='none')"
    assert repr(nn.ReLU()) == "ReLU()"


def test_embedding_from_pretrained_is_frozen_by_default():
    w = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    emb = nn.Embedding.from_pretrained(w)
    assert not emb.weight.requires_grad
    np.testing.assert_array_equal(emb(dk.tensor([3, 0])).numpy(), w[[3, 0]])
    assert nn.Embedding.from_pretrained(w, freeze=False).weight.requires_grad


def test_dropout_layer_trains_and_evaluates():
    layer = nn.Dropout(0.25)
    x = dk.ones(100, 100)
    dk.manual_seed(0)
    out = layer(x).numpy()
    assert abs((out == 0).mean() - 0.25) < 0.02
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())


def test_batch_norm_momentum_none_is_a_cumulative_average(rng):
    bn = nn.BatchNorm1d(3, momentum=None)
    batches = [rng.standard_normal((8, 3)).astype(F32) * (k + 1) + k for k in range(4)]
    for b in batches:
        bn(dk.tensor(b))
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean([b.var(0, ddof=1) for b in batches], axis=0), rtol=1e-5)
    assert int(bn.num_batches_tracked) == 4
    bn.eval()
    bn(dk.tensor(batches[0]))
    assert int(bn.num_batches_tracked) == 4


# ---- bad input --------------------------------------------------------------------------------

_LIN = re.escape("Linear(in_features=3, out_features=2")
_NCHW = re.escape("(N, C, H, W) or (C, H, W)")
BAD_INPUT = [
    (lambda: nn.Linear(3, 2), (4, 5), F32, ValueError, [_LIN, shape_pattern((4, 5)), re.escape("(..., 3)")]),
    (lambda: nn.Linear(3, 2), (4, 3), F64, TypeError, [_LIN, "float64", "float32"]),
    (
        lambda: nn.Conv2d(3, 8, 3),
        (2, 4, 8, 8),
        F32,
        ValueError,
        [re.escape("Conv2d(3, 8, kernel_size=(3, 3)"), shape_pattern((2, 4, 8, 8)), re.escape("(N, 3, H, W)")],
    ),
    (lambda: nn.Conv2d(3, 8, 3), (8, 8), F32, ValueError, [r"Conv2d\(3, 8", shape_pattern((8, 8))]),
    (lambda: nn.Conv2d(3, 8, 3), (1, 3, 2, 2), F32, ValueError, [r"Conv2d\(3, 8", "output size", "2x2"]),
    (lambda: nn.MaxPool2d(2), (4, 5), F32, ValueError, [r"MaxPool2d\(kernel_size=2", shape_pattern((4, 5)), _NCHW]),
    (
        lambda: nn.MaxPool2d(5),
        (1, 2, 3, 3),
        F32,
        ValueError,
        [r"MaxPool2d\(kernel_size=5", shape_pattern((1, 2, 3, 3))],
    ),
    (lambda: nn.AvgPool2d(2), (1, 2, 4, 4), np.int64, TypeError, [r"AvgPool2d\(kernel_size=2", "int64"]),
    (
        lambda: nn.AdaptiveAvgPool2d(2),
        (1, 1, 2, 4, 4),
        F32,
        ValueError,
        [r"AdaptiveAvgPool2d\(output_size=2\)", shape_pattern((1, 1, 2, 4, 4))],
    ),
    (
        lambda: nn.BatchNorm1d(4),
        (6, 5),
        F32,
        ValueError,
        [r"BatchNorm1d\(4, eps", shape_pattern((6, 5)), re.escape("(N, 4) or (N, 4, L)")],
    ),
    (
        lambda: nn.BatchNorm1d(4),
        (1, 4),
        F32,
        ValueError,
        [r"BatchNorm1d\(4", "more than 1 value", shape_pattern((1, 4))],
    ),
    (
        lambda: nn.BatchNorm2d(3),
        (2, 3, 4),
        F32,
        ValueError,
        [r"BatchNorm2d\(3", shape_pattern((2, 3, 4)), re.escape("(N, 3, H, W)")],
    ),
    (lambda: nn.Softmax(dim=3), (2, 3), F32, IndexError, [re.escape("Softmax(dim=3)"), "dim 3", "2 dimensions"]),
    (lambda: nn.Flatten(start_dim=2), (4, 5), F32, ValueError, ["Flatten", shape_pattern((4, 5)), "at least 3"]),
    (lambda: nn.ReLU(), (3,), np.int64, TypeError, [r"ReLU\(\)", "int64"]),
    (lambda: nn.Embedding(5, 2), (3,), F32, TypeError, [r"Embedding\(5, 2\)", "integer", "float32"]),
]


@pytest.mark.parametrize("case", range(len(BAD_INPUT)))
def test_bad_input_names_the_layer_and_shapes(case):
    make, shape, dtype, exc, needles = BAD_INPUT[case]
    layer = make()
    with raises_naming(exc, *needles):
        layer(dk.tensor(np.ones(shape, dtype)))


def test_bad_embedding_indices_and_constructor_arguments():
    emb = nn.Embedding(5, 2)
    with raises_naming(IndexError, r"Embedding\(5, 2\)", "index 5", "5 rows"):
        emb(dk.tensor([[0, 5]]))
    with raises_naming(ValueError, "Embedding", "padding_idx=5"):
        nn.Embedding(5, 2, padding_idx=5)
    with raises_naming(ValueError, "Conv2d", "groups=2", "in_channels=3"):
        nn.Conv2d(3, 4, 3, groups=2)
    with raises_naming(ValueError, "Dropout", "1.5"):
        nn.Dropout(1.5)
    with raises_naming(ValueError, "GELU", "'fast'"):
        nn.GELU(approximate="fast")
    with raises_naming(TypeError, "Linear", "int32"):
        nn.Linear(2, 2, dtype=np.int32)
    with raises_naming(ValueError, "Conv2d", "padding_mode", "'mirror'"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with raises_naming(ValueError, "ConvTranspose2d", "padding_mode", "'reflect'"):
        nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect")


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("layer, padding", [("Conv2d", (1, 2)), ("Conv2d", "same"), ("Conv1d", 2), ("Conv2d", 0)])
def test_padding_modes_match_torch(mode, layer, padding, rng):
    torch = pytest.importorskip("torch")
    kernel = 3 if layer == "Conv1d" else (3, 4)
    ref = getattr(torch.nn, layer)(2, 3, kernel, padding=padding, padding_mode=mode, dilation=1).double()
    ours = getattr(nn, layer)(2, 3, kernel, padding=padding, padding_mode=mode).double()
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    assert repr(ours) == repr(ref)
    shape = (2, 2, 7) if layer == "Conv1d" else (2, 2, 6, 7)
    x = rng.standard_normal(shape)
    xt, xd = torch.tensor(x, requires_grad=True), dk.tensor(x, requires_grad=True)
    out_t, out = ref(xt), ours(xd)
    np.testing.assert_allclose(out.detach().numpy(), out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(tuple(out_t.shape))
    out_t.backward(torch.tensor(g))
    out.backward(dk.tensor(g))
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad.numpy(), ref.weight.grad.numpy(), rtol=1e-11, atol=1e-12)


def test_module_to_moves_every_buffer_and_casts_only_floating_ones():
    """As PyTorch's: to(dtype)/double() leave integer, bool and complex parameters and buffers as
    they are (they had been cast), to(device) moves them all (integer buffers had stayed)."""
    m = dk.nn.BatchNorm1d(3)
    m.register_buffer("flags", dk.tensor([True, False]))
    m.steps = dk.nn.Parameter(dk.tensor([1, 2]), requires_grad=False)
    m.double()
    assert m.running_mean.dtype == np.float64 and m.num_batches_tracked.dtype == np.int64
    assert m.flags.dtype == np.bool_ and m.steps.dtype == np.int64
    m.to(dk.float32)
    assert m.weight.dtype == np.float32 and m.steps.dtype == np.int64


def test_module_details_pytorch_keeps():
    """A Parameter takes user attributes; a parameter replaced by a plain tensor still computes
    under no_grad; a buffer registered as None is got as None; ParameterList refuses a single
    Tensor (it had split one into rows); state_dict's prefix is prepended as given; a class with its
    own __call__ runs it inside a Sequential under no_grad."""
    p = dk.nn.Parameter(dk.zeros(2))
    p.no_weight_decay = True
    assert p.no_weight_decay
    lin = dk.nn.Linear(2, 2)
    del lin.weight
    lin.weight = dk.ones(2, 2)
    x = dk.ones(1, 2)
    with dk.no_grad():
        assert lin(x).tolist() == (x @ dk.ones(2, 2).T + lin.bias).tolist()
    m = dk.nn.Module()
    m.register_buffer("empty", None)
    assert m.get_buffer("empty") is None
    with pytest.raises(TypeError, match="iterable of Parameters"):
        dk.nn.ParameterList(dk.nn.Parameter(dk.ones(3, 2)))
    assert list(dk.nn.Linear(1, 1).state_dict(prefix="enc_")) == ["enc_weight", "enc_bias"]

    class Doubled(dk.nn.ReLU):
        def __call__(self, x):
            return super().__call__(x) * 2

    model = dk.nn.Sequential(dk.nn.Linear(2, 2), Doubled())
    with dk.no_grad():
        fast = model(x).numpy()
    np.testing.assert_allclose(fast, model(x).detach().numpy())


@pytest.mark.parametrize("input_requires_grad", [True, False])
def test_full_backward_hooks_see_and_replace_gradients_as_torch(input_requires_grad, rng):
    """register_full_backward_hook: called with the gradients of the module's inputs (None for an input
    that does not require grad) and outputs, a returned tuple replacing grad_input;
    register_full_backward_pre_hook: called with the output gradients, a returned tuple replacing them."""
    torch = pytest.importorskip("torch")

    def build(lib):
        return lib.nn.Sequential(lib.nn.Linear(4, 5), lib.nn.Tanh(), lib.nn.Linear(5, 3))

    ref = build(torch).double()
    ours = build(dk).double()
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x = rng.standard_normal((2, 4))

    def run(lib, model):
        seen = []

        def record(name):
            def hook(module, grad_input, grad_output):
                seen.append((name, [None if g is None else g.detach().numpy().copy() for g in grad_input]))
                seen.append((name, [g.detach().numpy().copy() for g in grad_output]))
                return (grad_input[0] * 2,) if name == "tanh" else None

            return hook

        handles = [
            model[1].register_full_backward_hook(record("tanh")),
            model[0].register_full_backward_hook(record("lin")),
        ]
        handles.append(model[2].register_full_backward_pre_hook(lambda module, grad_output: (grad_output[0] * -1,)))
        xt = lib.tensor(x, requires_grad=input_requires_grad)
        model(xt).sum().backward()
        for h in handles:
            h.remove()
        model(xt).sum().backward()  # removed: no more calls
        return seen, model[0].weight.grad.numpy(), None if xt.grad is None else xt.grad.numpy()

    (seen, weight_grad, x_grad), (ref_seen, ref_weight_grad, ref_x_grad) = run(dk, ours), run(torch, ref)
    assert [name for name, _ in seen] == [name for name, _ in ref_seen] == ["tanh", "tanh", "lin", "lin"]
    for (_, grads), (_, ref_grads) in zip(seen, ref_seen):
        assert [g is None for g in grads] == [g is None for g in ref_grads]
        for g, r in zip(grads, ref_grads):
            if r is not None:
                np.testing.assert_allclose(g, r, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(weight_grad, ref_weight_grad, rtol=1e-13)
    if input_requires_grad:
        np.testing.assert_allclose(x_grad, ref_x_grad, rtol=1e-13)


def test_module_cuda_half_and_share_memory():
    model = nn.Linear(2, 3)
    assert model.share_memory() is model
    assert model.half().weight.dtype == np.float16
    if not dk.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            model.cuda()
