"""deepkern.testing (assert_close, make_tensor) and deepkern.utils.checkpoint against torch.testing and
torch.utils.checkpoint: assert_close's verdicts, default tolerances and messages; make_tensor's shapes,
ranges, layouts and errors; checkpointed gradients equal to the plain ones bit for bit (dropout, batch
norm in training mode), batch norm's running statistics updated twice as in torch, both variants,
warnings, errors, keyword and non-tensor arguments, tuple outputs, autograd.grad and double backward."""

from __future__ import annotations

import re
import warnings

import deepkern as dk
import numpy as np
import pytest
from deepkern import nn
from deepkern import testing as dt
from deepkern.utils import checkpoint as ck

from checks import create_graph_gradients, gradcheck


def normalized(message: str) -> str:
    """torch's message as deepkern words it: torch.Size([2, 3]) -> (2, 3), torch.float32 -> float32."""
    message = re.sub(
        r"torch\.Size\(\[([^\]]*)\]\)", lambda m: str(tuple(int(n) for n in m.group(1).split(",") if n)), message
    )
    classes = {"torch.nn.parameter.Parameter": "deepkern.nn.module.Parameter", "torch.Tensor": "deepkern.tensor.Tensor"}
    for theirs, ours in classes.items():
        message = message.replace(theirs, ours)
    return message.replace("torch.", "")


def outcome(call):
    """``(exception type name, message)`` of ``call()``, or None when it returns."""
    try:
        call()
    except Exception as error:  # noqa: BLE001 (any failure is compared)
        return type(error).__name__, normalized(str(error))
    return None


# (actual, expected, options): arrays stand for tensors of both libraries
CLOSE_CASES = [
    (np.float32([1, 2, 3]), np.float32([1, 2.1, 3]), {}),
    (np.float32([1, 2, 3]), np.float32([1, 2 + 1e-6, 3]), {}),
    (np.float64([1, 2, 3]), np.float64([1, 2.1, 3]), {}),
    (np.int64([1, 2, 3]), np.int64([1, 5, 3]), {}),
    (np.bool_([True, False]), np.bool_([True, True]), {}),
    (np.float64([[1, np.nan], [0, 4]]), np.float64([[1, np.nan], [1e-9, 4]]), {}),
    (np.float64([[1, np.nan], [0, 4]]), np.float64([[1, np.nan], [1e-9, 4]]), {"equal_nan": True}),
    (np.float64([1, -np.inf]), np.float64([1, np.inf]), {}),
    (np.float64([1, np.inf]), np.float64([1, np.inf]), {}),
    (np.float64(1.5), np.float64(1.6), {}),
    (np.float64([1, 2]), np.float64([1, 2.5]), {"rtol": 0.1, "atol": 0}),
    (np.float64([1, 2]), np.float64([1, 2.5]), {"rtol": 0.3, "atol": 0}),
    (np.float64([1, 2]), np.float64([1, 2.5]), {"rtol": 0.1}),
    (np.float64([1, 2]), np.float64([1, 2, 3]), {}),
    (np.float32([1, 2]), np.float64([1, 2]), {}),
    (np.float32([1, 2.1]), np.float64([1, 2]), {"check_dtype": False}),
    (np.float64([0, 2]), np.float64([1e-3, 0]), {}),
    (np.float64([0, 2]), np.float64([1e-3, 0]), {"msg": "custom"}),
    (np.float64([0, 2]), np.float64([1e-3, 0]), {"msg": lambda m: m.upper()}),
    (np.float16([1, 2]), np.float16([1, 2.001]), {}),
    (np.float16([1, 2]), np.float16([1, 2.01]), {}),
]
# (actual, expected, options) of Python objects, compared as they are
OBJECT_CASES = [
    (1, 1.0, {}),
    (1, 1.0, {"check_dtype": False}),
    (1.0, 1.1, {}),
    (1.0, 1.0 + 1e-8, {}),
    ([1.0, {"a": 2, "b": 3.0}], [1.0, {"a": 2, "b": 3.5}], {}),
    ({"a": 1}, {"b": 1}, {}),
    (None, 1, {}),
    (None, None, {}),
    (True, False, {}),
    ([1, 2], [1, 2, 3], {}),
    ((1, 2.0), [1, 2.0], {}),
    (np.float32(1.5), 1.5, {}),
    ("a", "a", {}),
    (1 + 2j, 1 + 2.1j, {}),
    (float("nan"), float("nan"), {}),
    (float("nan"), float("nan"), {"equal_nan": True}),
    (np.float64([1, 2]), np.float64([1, 3]), {}),
]


@pytest.mark.parametrize("index", range(len(CLOSE_CASES)))
def test_assert_close_on_tensors_matches_torch(index):
    torch = pytest.importorskip("torch")
    actual, expected, options = CLOSE_CASES[index]
    theirs = outcome(lambda: torch.testing.assert_close(torch.tensor(actual), torch.tensor(expected), **options))
    ours = outcome(lambda: dt.assert_close(dk.tensor(actual), dk.tensor(expected), **options))
    assert ours == theirs


@pytest.mark.parametrize("index", range(len(OBJECT_CASES)))
def test_assert_close_on_numbers_sequences_and_mappings_matches_torch(index):
    torch = pytest.importorskip("torch")
    actual, expected, options = OBJECT_CASES[index]
    assert outcome(lambda: dt.assert_close(actual, expected, **options)) == outcome(
        lambda: torch.testing.assert_close(actual, expected, **options)
    )


def test_assert_close_on_structures_of_tensors_matches_torch():
    torch = pytest.importorskip("torch")
    a, b = np.ones((2, 3)), np.arange(6.0).reshape(2, 3)
    cases = [
        (lambda lib: [lib.tensor(a), {"w": lib.tensor(b)}], lambda lib: [lib.tensor(a), {"w": lib.tensor(b + 1)}], {}),
        (lambda lib: lib.tensor(a), lambda lib: a.tolist(), {}),
        (lambda lib: lib.tensor(a).T, lambda lib: lib.tensor(a.T.copy()), {"check_stride": True}),
        (lambda lib: lib.tensor(a).T, lambda lib: lib.tensor(a.T.copy()), {}),
        (lambda lib: lib.tensor(a), lambda lib: lib.nn.Parameter(lib.tensor(a)), {"allow_subclasses": False}),
        (lambda lib: lib.tensor(a), lambda lib: lib.nn.Parameter(lib.tensor(a)), {}),
    ]
    for actual, expected, options in cases:
        theirs = outcome(lambda: torch.testing.assert_close(actual(torch), expected(torch), **options))  # noqa: B023
        ours = outcome(lambda: dt.assert_close(actual(dk), expected(dk), **options))  # noqa: B023
        assert ours == theirs


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64", "int32"])
def test_default_tolerances_decide_as_torch(dtype, rng):
    """Pairs at half and twice the default tolerances (and in between) pass or fail as in torch."""
    torch = pytest.importorskip("torch")
    rtol, atol = {"float16": (1e-3, 1e-5), "bfloat16": (0.016, 1e-5), "float32": (1.3e-6, 1e-5)}.get(
        dtype, (1e-7, 1e-7) if dtype == "float64" else (0, 0)
    )
    expected = rng.uniform(-4, 4, 40) * 10.0 ** rng.integers(-6, 3, 40)
    scale = rng.choice([0.5, 0.9, 1.5, 2.0], 40)
    actual = expected + scale * (atol + rtol * np.abs(expected)) * rng.choice([-1, 1], 40)
    if dtype == "int32":
        expected, actual = np.round(expected * 1e6), np.round(expected * 1e6) + rng.integers(0, 2, 40)
    for a, e in zip(actual, expected):
        pair = np.array([a]), np.array([e])
        ours = outcome(lambda: dt.assert_close(*(dk.tensor(v).to(getattr(dk, dtype)) for v in pair)))  # noqa: B023
        theirs = outcome(lambda: torch.testing.assert_close(*(torch.tensor(v).to(getattr(torch, dtype)) for v in pair)))  # noqa: B023
        assert (ours is None) == (theirs is None), (a, e, ours, theirs)


def test_make_tensor_shapes_dtypes_and_ranges():
    torch = pytest.importorskip("torch")
    for shape in ((2, 3), [(2, 3)], [[2, 3]]):
        assert dt.make_tensor(*shape, dtype=dk.float32, device="cpu").shape == (2, 3)
    assert dt.make_tensor(dtype=dk.float64, device="cpu").shape == ()
    ranges = {  # dtype: (lowest and highest drawn by default, or within low/high)
        "float32": (-9, 9, {}),
        "float64": (2.5, 3.0, {"low": 2.5, "high": 3.0}),
        "int64": (-9, 9, {}),
        "uint8": (0, 9, {}),
        "int8": (-128, 126, {"low": -1000, "high": 127}),
        "bool": (0, 1, {}),
        "float16": (-9, 9, {}),
        "bfloat16": (-9, 9, {}),
    }
    for dtype, (lowest, highest, options) in ranges.items():
        ours = dt.make_tensor(
            200, 30, dtype=np.dtype(dk.bfloat16) if dtype == "bfloat16" else dtype, device="cpu", **options
        )
        theirs = torch.testing.make_tensor(200, 30, dtype=getattr(torch, dtype), device="cpu", **options)
        values, reference = ours.float().numpy(), theirs.float().numpy()
        assert ours.dtype.name == dtype and not ours.requires_grad
        assert values.min() >= lowest and values.max() <= highest and reference.min() >= lowest, dtype
        assert abs(values.mean() - reference.mean()) < 0.15 * (highest - lowest), dtype  # both uniform on it
        if dtype in ("int64", "uint8", "bool"):
            assert set(np.unique(values)) == set(np.unique(reference)), dtype
    complex_values = dt.make_tensor(1000, dtype=np.complex128, device="cpu", low=-1, high=2).numpy()
    assert complex_values.dtype == np.complex128 and -1 <= complex_values.real.min() and complex_values.imag.max() < 2


def test_make_tensor_layout_zeros_gradients_and_seed():
    torch = pytest.importorskip("torch")
    ours = dt.make_tensor(4, 5, dtype=dk.float32, device="cpu", noncontiguous=True)
    theirs = torch.testing.make_tensor(4, 5, dtype=torch.float32, device="cpu", noncontiguous=True)
    assert not ours.is_contiguous() and ours.stride() == theirs.stride() == (10, 2) and ours.shape == (4, 5)
    assert dt.make_tensor(1, dtype=dk.float32, device="cpu", noncontiguous=True).is_contiguous()
    assert (dt.make_tensor(50, dtype=dk.int64, device="cpu", low=0, high=1, exclude_zero=True).numpy() == 1).all()
    assert dt.make_tensor(50, dtype=dk.bool, device="cpu", low=0, high=1, exclude_zero=True).numpy().all()
    assert (
        dt.make_tensor(50, dtype=dk.float16, device="cpu", low=-1e-3, high=1e-3, exclude_zero=True).numpy() != 0
    ).all()
    leaf = dt.make_tensor(3, dtype=dk.float64, device="cpu", requires_grad=True)
    assert leaf.requires_grad and leaf.is_leaf
    dk.manual_seed(5)
    first = dt.make_tensor(6, dtype=dk.float32, device="cpu").numpy()
    dk.manual_seed(5)
    np.testing.assert_array_equal(dt.make_tensor(6, dtype=dk.float32, device="cpu").numpy(), first)


@pytest.mark.parametrize(
    "options",
    [
        {"low": 5, "high": 2},
        {"low": float("nan")},
        {"low": 200, "high": 300, "dtype": "int8"},
        {"dtype": "int64", "requires_grad": True},
        {"low": 1, "high": 1},
    ],
)
def test_make_tensor_errors_and_warnings_match_torch(options):
    torch = pytest.importorskip("torch")
    dtype = options.pop("dtype", "float32")

    def run(lib, make):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = outcome(
                lambda: make(2, 3, dtype=getattr(lib, dtype) if lib is torch else dtype, device="cpu", **options)
            )
        return result, [(w.category, str(w.message)) for w in caught]

    assert run(dk, dt.make_tensor) == run(torch, torch.testing.make_tensor)


# -- checkpoint ----------------------------------------------------------------------------------------------


def mlp(dropout=0.3):
    dk.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(8, 8),
        nn.Tanh(),
        nn.Dropout(dropout),
        nn.Linear(8, 3),
    ).double()


def train_step(run, x, seed=1):
    """One forward and backward of a fresh MLP in training mode through ``run(model, input)``: the gradients,
    the output, batch norm's running mean and the next random draw."""
    model = mlp()
    model.train()
    inputs = dk.tensor(x, requires_grad=True)
    dk.manual_seed(seed)
    out = run(model, inputs)
    dk.rand(2)  # a draw between the forward and the backward
    (out**2).sum().backward()
    grads = [inputs.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]
    return grads, out.detach().numpy(), model[1].running_mean.numpy().copy(), dk.rand(3).numpy()


CHECKPOINTED = {
    "reentrant": lambda model, x: ck.checkpoint(model, x, use_reentrant=True),
    "non-reentrant": lambda model, x: ck.checkpoint(model, x, use_reentrant=False),
    "sequential reentrant": lambda model, x: ck.checkpoint_sequential(model, 3, x, use_reentrant=True),
    "sequential non-reentrant": lambda model, x: ck.checkpoint_sequential(model, 3, x, use_reentrant=False),
    "sequential list": lambda model, x: ck.checkpoint_sequential(list(model.children()), 2, x, use_reentrant=False),
}


@pytest.mark.parametrize("variant", sorted(CHECKPOINTED))
def test_checkpointed_gradients_equal_the_plain_ones_bit_for_bit(variant, rng):
    """Dropout draws the same masks in the recomputation (the random state is restored for it, and put back
    after it: the next draw is the plain run's); batch norm's running mean moves once more."""
    x = rng.standard_normal((6, 5))
    grads, out, running_mean, next_draw = train_step(CHECKPOINTED[variant], x)
    plain_grads, plain_out, plain_mean, plain_next = train_step(lambda model, t: model(t), x)
    assert all(np.array_equal(a, b) for a, b in zip(grads, plain_grads))
    np.testing.assert_array_equal(out, plain_out)
    np.testing.assert_array_equal(next_draw, plain_next)
    assert not np.array_equal(running_mean, plain_mean)


def test_without_preserving_the_random_state_dropout_masks_differ(rng):
    x = rng.standard_normal((6, 5))
    grads = train_step(lambda model, t: ck.checkpoint(model, t, use_reentrant=False, preserve_rng_state=False), x)[0]
    plain = train_step(lambda model, t: model(t), x)[0]
    assert not all(np.array_equal(a, b) for a, b in zip(grads, plain))


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradients_and_running_statistics_match_torch(use_reentrant, rng):
    """The same float64 weights in both libraries: checkpointed gradients equal torch's, and batch norm's
    running statistics moved twice (the forward and the recomputation), as torch's are."""
    torch = pytest.importorskip("torch")
    import torch.utils.checkpoint as tc

    arrays = [rng.standard_normal((8, 5)), rng.standard_normal(8), rng.uniform(1, 2, 8), rng.standard_normal(8)]
    arrays += [rng.standard_normal((3, 8)), rng.standard_normal(3)]
    x = rng.standard_normal((6, 5))

    def run(lib, checkpoint):
        model = lib.nn.Sequential(
            lib.nn.Linear(5, 8), lib.nn.BatchNorm1d(8), lib.nn.Tanh(), lib.nn.Linear(8, 3)
        ).double()
        with lib.no_grad():
            for parameter, value in zip(model.parameters(), arrays):
                parameter.copy_(lib.tensor(value))
        inputs = lib.tensor(x, requires_grad=True)
        (checkpoint(model, inputs, use_reentrant=use_reentrant) ** 2).sum().backward()
        statistics = [model[1].running_mean, model[1].running_var, model[1].num_batches_tracked]
        return [inputs.grad] + [p.grad for p in model.parameters()] + statistics

    for ours, theirs in zip(run(dk, ck.checkpoint), run(torch, tc.checkpoint)):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-13)


def test_use_reentrant_must_be_given_as_torch_warns():
    torch = pytest.importorskip("torch")
    import torch.utils.checkpoint as tc

    def messages(module, lib):
        x = lib.ones(2, requires_grad=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module.checkpoint(lambda t: t * 2, x)
            module.checkpoint_sequential([lambda t: t * 2, lambda t: t + 1], 2, x)
        return [(w.category, str(w.message)) for w in caught]

    assert messages(ck, dk) == messages(tc, torch) and len(messages(ck, dk)) == 2


def test_argument_errors_and_warnings_match_torch():
    torch = pytest.importorskip("torch")
    import torch.utils.checkpoint as tc

    def calls(module, lib):
        x, frozen = lib.ones(2, requires_grad=True), lib.ones(2)
        results = [
            outcome(lambda: module.checkpoint(lambda t, scale: t * scale, x, use_reentrant=True, scale=2, shift=1)),
            outcome(lambda: module.checkpoint(lambda t: t, x, use_reentrant=True, debug=True)),
            outcome(lambda: module.checkpoint_sequential([lambda t: t], 1, x, use_reentrant=True, extra=1)),
        ]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = module.checkpoint(lambda t: t * 2, frozen, use_reentrant=True)
        results.append([str(w.message) for w in caught] + [out.requires_grad])
        results.append(
            outcome(lambda: lib.autograd.grad(module.checkpoint(lambda t: t.exp(), x, use_reentrant=True).sum(), x))
        )
        detached = module.checkpoint(lambda t: t.detach() * 2, x, use_reentrant=True)  # recomputed without grad
        results.append(outcome(lambda: detached.sum().backward()))
        return results

    assert calls(ck, dk) == calls(tc, torch)


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_tuple_outputs_non_tensor_arguments_and_frozen_inputs(use_reentrant, rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    w = dk.tensor(rng.standard_normal(4), requires_grad=True)

    def function(x, y, power, label):
        assert label == "block"
        return (x * w) ** power, y.tanh() + x, 7

    def grads(run):
        x, y = dk.tensor(a, requires_grad=True), dk.tensor(b)  # y needs no gradient
        w.grad = None
        first, second, number = run(function, x, y, 3, "block")
        assert number == 7 and not isinstance(number, dk.Tensor)
        (first.sum() + (second**2).sum()).backward()
        assert y.grad is None
        return x.grad.numpy(), w.grad.numpy()

    checkpointed = grads(lambda *args: ck.checkpoint(*args, use_reentrant=use_reentrant))
    plain = grads(lambda f, *args: f(*args))
    for ours, expected in zip(checkpointed, plain):
        np.testing.assert_array_equal(ours, expected)


def test_non_reentrant_takes_keywords_and_autograd_grad(rng):
    """use_reentrant=False: keyword arguments reach the function; autograd.grad works (with respect to the
    input and to parameters); a non-leaf tensor read through a closure gets its gradient through its
    history."""
    a = rng.standard_normal((2, 3))
    w = dk.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    base = dk.tensor(rng.standard_normal(3), requires_grad=True)
    shift = base * 2  # a non-leaf read through the closure

    def block(x, *, scale):
        return ((x @ w).tanh() + shift) * scale

    def gradients(run):
        x = dk.tensor(a, requires_grad=True)
        out = run(x)
        return [g.numpy() for g in dk.autograd.grad((out**2).sum() + out.sum(), [x, w, base])]

    checkpointed = gradients(lambda x: ck.checkpoint(block, x, use_reentrant=False, scale=1.5))
    plain = gradients(lambda x: block(x, scale=1.5))
    for ours, expected in zip(checkpointed, plain):
        np.testing.assert_array_equal(ours, expected)


def test_non_reentrant_gradients_are_differentiable_with_create_graph(rng):
    """create_graph=True through use_reentrant=False: a gradient penalty's gradients (with respect to the
    input, a parameter that both the function and the graph before it read, a non-leaf read through a
    closure and its leaf) equal those of the plain call, dropout drawing the same mask in the
    recomputation; and they match their finite differences."""
    a = rng.standard_normal((2, 3))
    w = dk.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    base = dk.tensor(rng.standard_normal(3), requires_grad=True)

    def block(x, *, scale):
        return dk.nn.functional.dropout((x @ w).tanh() + base * 2, 0.3) * scale

    def penalty_gradients(run):
        dk.manual_seed(5)
        x = dk.tensor(a, requires_grad=True)
        out = run((x @ w).sin())  # w also before the checkpoint: its paths there count once
        g_x, g_w = dk.autograd.grad((out**3).sum(), [x, w], create_graph=True)
        penalty = (g_x * g_x).sum() + g_x.sum() + (g_w * g_w.cos()).sum()
        return [t.numpy() for t in (g_x.detach(), g_w.detach(), *dk.autograd.grad(penalty, [x, w, base]))]

    checkpointed = penalty_gradients(lambda x: ck.checkpoint(block, x, use_reentrant=False, scale=1.5))
    plain = penalty_gradients(lambda x: block(x, scale=1.5))
    for ours, expected in zip(checkpointed, plain):
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-14)

    def objective(x, w_):
        dk.manual_seed(5)
        return (ck.checkpoint(lambda t: (t @ w_).tanh() * t.cos(), x, use_reentrant=False) ** 2).sum()

    x = dk.tensor(a, requires_grad=True)
    gradcheck(create_graph_gradients(objective), x, dk.tensor(w.detach().numpy(), requires_grad=True), tol=1e-5)


def test_recomputation_that_differs_raises():
    calls = []

    def unsteady(x):
        calls.append(1)
        return x[: len(calls)] * 2

    out = ck.checkpoint(unsteady, dk.ones(3, requires_grad=True), use_reentrant=False)
    with pytest.raises(ck.CheckpointError, match=r"(?s)Recomputed values .* different metadata.*\(1,\).*\(2,\)"):
        out.sum().backward()
    calls.clear()
    out = ck.checkpoint(unsteady, dk.ones(3, requires_grad=True), use_reentrant=False, determinism_check="none")
    with pytest.raises(ValueError, match="shape"):  # unchecked: the gradient of the old shape does not fit
        out.sum().backward()
