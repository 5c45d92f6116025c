"""deepkern.optim's Adafactor and Muon, and deepkern.optim.swa_utils (AveragedModel, the averaging
functions, SWALR, update_bn), against torch 2.13 in float64 and float32.

Optimizers: 12 steps of a fixed sequence of random gradients (not a function of the weights, so a
rounding difference is not amplified by the next gradients): weights and state against torch's for
option combinations, groups, state dicts (deepkern's resumed bit for bit, torch's continued like torch),
a second device, bad arguments with torch's messages. Muon's Newton-Schulz iteration runs in bfloat16
in torch: deepkern's is compared with torch's element by element, and Muon's trajectories are compared
twice, with torch's iteration replaced by deepkern's (everything else to float64 rounding) and as torch
runs (bfloat16 tolerance). swa_utils: the averaged parameters and buffers, learning rates and
batch-norm statistics, against torch's."""

from __future__ import annotations

import inspect

import deepkern
import numpy as np
import pytest
from deepkern import backends, optim
from deepkern.optim import muon as dk_muon
from deepkern.optim import swa_utils
from test_optim_added import assert_close, plain_state

from checks import raises_naming
from fake_device import FakeArray, FakeBackend

torch = pytest.importorskip("torch")
import torch.optim._muon as torch_muon  # noqa: E402  (after the skip)

STEPS = 12
DTYPES = [np.float32, np.float64]
# float32 against torch: the same operations in the same order; a multiply-add one side fuses, or a sum
# taken in another order, differs in the last bits (measured: <= 1.9e-6 absolute on weights up to 3.5)
F32_RTOL, F32_ATOL = 1e-5, 1e-6
# float64 against torch: a few ulp (measured: <= 1.8e-15 absolute)
F64_RTOL, F64_ATOL = 1e-12, 1e-13


def tol(dtype):
    return (F32_RTOL, F32_ATOL) if dtype == np.float32 else (F64_RTOL, F64_ATOL)


def arrays_of(shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(s)).astype(dtype) for s in shapes]


def follow(lib, cls_name, options, arrays, grads, groups=None, skip=(), lr_change=None):
    """Steps ``lib.optim.<cls_name>`` (deepkern or torch) through ``grads`` from copies of ``arrays`` (no
    gradient for the indices in ``skip``; the groups' lr times ``lr_change`` half way); returns the
    final weights as NumPy arrays and the optimizer."""
    params = [lib.nn.Parameter(lib.tensor(a.copy())) for a in arrays]
    opt = getattr(lib.optim, cls_name)(params if groups is None else groups(params), **options)
    for t, step in enumerate(grads):
        if lr_change is not None and t == len(grads) // 2:
            for group in opt.param_groups:
                group["lr"] *= lr_change
        for i, (p, g) in enumerate(zip(params, step)):
            p.grad = None if i in skip else lib.tensor(g.copy())
        opt.step()
    return [np.array(p.detach().numpy()) for p in params], opt


def assert_state_matches(opt, topt, rtol, atol, what):
    """Same entries in torch's order, equal counts, arrays within tolerance."""
    ours, theirs = plain_state(opt.state_dict()), plain_state(topt.state_dict())
    assert sorted(ours) == sorted(theirs)
    for k in theirs:
        assert list(ours[k]) == list(theirs[k]), (what, k, "state names in torch's order")
        for name, want in theirs[k].items():
            if name == "step":
                assert float(ours[k][name]) == float(want), (what, k)
            else:
                assert_close([ours[k][name]], [want], rtol, atol, f"{what} state[{k}][{name!r}]")


def moved(start, end):
    return max(float(np.max(np.abs(e - s))) for s, e in zip(start, end))


def two_groups(params):
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.03}]


# -- Adafactor ---------------------------------------------------------------------------------------

AF_SHAPES = [(7,), (3, 5), (2, 3, 4), (1,), ()]  # vectors and a scalar: `variance`; the others factored
AF_CASES = {
    "default": dict(),
    "lr-wd": dict(lr=0.1, weight_decay=0.2),
    "maximize-d-beta2-eps1": dict(maximize=True, d=1.5, beta2_decay=-0.5, eps=(1e-10, 1e-2)),
    "eps2-floor": dict(lr=0.5, eps=(None, 2.0)),  # max(eps2, RMS(p)) is eps2
    "all-foreach": dict(lr=0.05, beta2_decay=-0.6, eps=(1e-6, 1e-3), d=2.0, weight_decay=0.1, foreach=True),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(AF_CASES))
def test_adafactor_trajectory_and_state_match_torch(case, dtype):
    options = AF_CASES[case]
    arrays = arrays_of(AF_SHAPES, dtype, 0)
    grads = [arrays_of(AF_SHAPES, dtype, 1 + t) for t in range(STEPS)]
    got, opt = follow(deepkern, "Adafactor", options, arrays, grads)
    want, topt = follow(torch, "Adafactor", options, arrays, grads)
    assert_close(got, want, *tol(dtype), case)
    assert_state_matches(opt, topt, *tol(dtype), case)
    state = opt.state[opt.param_groups[0]["params"][1]]
    assert state["row_var"].shape == (3, 1) and state["col_var"].shape == (1, 5) and state["step"] == STEPS
    assert moved(arrays, want) > 1e-2


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_adafactor_groups_skipped_params_and_lr_change_match_torch(dtype):
    arrays = arrays_of(AF_SHAPES, dtype, 0)
    grads = [arrays_of(AF_SHAPES, dtype, 1 + t) for t in range(STEPS)]
    kw = dict(groups=two_groups, skip={1}, lr_change=0.5)
    got, opt = follow(deepkern, "Adafactor", dict(lr=0.05, weight_decay=0.1), arrays, grads, **kw)
    want, topt = follow(torch, "Adafactor", dict(lr=0.05, weight_decay=0.1), arrays, grads, **kw)
    assert_close(got, want, *tol(dtype))
    np.testing.assert_array_equal(got[1], arrays[1])
    assert sorted(opt.state_dict()["state"]) == sorted(topt.state_dict()["state"]) == [0, 2, 3, 4]


def test_adafactor_default_eps1_is_the_first_parameters_dtypes_for_the_group():
    """eps1=None: torch takes the machine epsilon of the first parameter's dtype for the whole group (here
    float32's, 1.2e-7, for a float64 parameter too, where it is the clamp that matters: tiny gradients)."""
    shapes = [(4,), (3, 4)]
    arrays = [arrays_of(shapes, np.float32, 0)[0], arrays_of(shapes, np.float64, 0)[1]]
    grads = [
        [g * 1e-6 for g in (arrays_of(shapes, np.float32, t)[0], arrays_of(shapes, np.float64, t)[1])] for t in range(5)
    ]
    got, _ = follow(deepkern, "Adafactor", dict(lr=0.1), arrays, grads)
    want, _ = follow(torch, "Adafactor", dict(lr=0.1), arrays, grads)
    assert_close(got[1:], want[1:], F64_RTOL, F64_ATOL)
    assert_close(got[:1], want[:1], F32_RTOL, F32_ATOL)
    alone, _ = follow(deepkern, "Adafactor", dict(lr=0.1), arrays[1:], [g[1:] for g in grads])
    assert not np.allclose(alone[0], got[1], rtol=1e-6, atol=0), "float64's epsilon would give other steps"


# -- Muon --------------------------------------------------------------------------------------------

MUON_SHAPES = [(6, 10), (12, 5), (8, 8)]  # wide, tall (transposed for the iteration), square
MUON_CASES = {
    "default": dict(),
    "lr-wd": dict(lr=0.02, weight_decay=0.05),
    "classic-momentum-match-rms": dict(lr=0.05, momentum=0.9, nesterov=False, adjust_lr_fn="match_rms_adamw"),
    "coefficients-steps-eps": dict(lr=0.03, ns_coefficients=(2.0, -1.5, 0.5), ns_steps=3, eps=1e-3),
    "no-momentum-original": dict(lr=0.01, momentum=0.0, weight_decay=0.0, adjust_lr_fn="original"),
}


def _deepkerns_iteration(grad, ns_coefficients, ns_steps, eps):
    """deepkern's Newton-Schulz iteration in torch's place (a bfloat16 tensor, as torch's returns)."""
    out = dk_muon._zeropower_via_newtonschulz(deepkern.tensor(grad.detach().numpy()), ns_coefficients, ns_steps, eps)
    assert out.dtype == np.float32
    return torch.from_numpy(np.array(out.numpy())).bfloat16()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(MUON_CASES))
def test_muon_trajectory_matches_torch_around_the_same_iteration(case, dtype, monkeypatch):
    """Momentum, Nesterov's lerp, weight decay and the learning-rate adjustment to float64 rounding: torch's
    Muon with deepkern's orthogonalization (compared with torch's below)."""
    options = MUON_CASES[case]
    arrays = arrays_of(MUON_SHAPES, dtype, 0)
    grads = [arrays_of(MUON_SHAPES, dtype, 1 + t) for t in range(STEPS)]
    got, opt = follow(deepkern, "Muon", options, arrays, grads)
    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", _deepkerns_iteration)
    want, topt = follow(torch, "Muon", options, arrays, grads)
    assert_close(got, want, *tol(dtype), case)
    assert_state_matches(opt, topt, *tol(dtype), case)
    assert moved(arrays, want) > 5e-3


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", ["default", "lr-wd", "classic-momentum-match-rms"])
def test_muon_trajectory_matches_torch(case, dtype):
    """As torch runs: the orthogonalized updates agree but for bfloat16 roundings (measured: equal here),
    each a few bfloat16 ulp of an update of size <= 1, times the step's learning rate."""
    options = MUON_CASES[case]
    arrays = arrays_of(MUON_SHAPES, dtype, 0)
    grads = [arrays_of(MUON_SHAPES, dtype, 1 + t) for t in range(STEPS)]
    got, _ = follow(deepkern, "Muon", options, arrays, grads)
    want, _ = follow(torch, "Muon", options, arrays, grads)
    lr = options.get("lr", 1e-3) * (0.2 * 12**0.5 if "adjust_lr_fn" in options else 12 / 5)
    assert_close(got, want, 0, STEPS * lr * 4 * 2**-8 + tol(dtype)[1], case)


@pytest.mark.parametrize("shape", [(6, 10), (12, 5), (24, 16), (32, 32)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_newton_schulz_iteration_is_torchs_in_bfloat16(shape, dtype):
    """Rounded to bfloat16 where torch's tensors are: most elements equal torch's bit for bit (measured:
    92-100%; an iteration without those roundings matches none), the others by a few bfloat16 ulp, where
    the two float32 sums of a product rounded to either side of a bfloat16 boundary. Scales from 1e-3 to
    1e3 (the iteration normalizes first); float64 inputs are rounded to float32 first, as torch's cast."""
    rng = np.random.default_rng(sum(shape))
    equal = total = 0
    for scale in (1e-3, 1.0, 1e3):
        g = (rng.standard_normal(shape) * scale).astype(dtype)
        want = torch_muon._zeropower_via_newtonschulz(torch.from_numpy(g), (3.4445, -4.7750, 2.0315), 5, 1e-7)
        got = dk_muon._zeropower_via_newtonschulz(deepkern.tensor(g), (3.4445, -4.7750, 2.0315), 5, 1e-7).numpy()
        want = want.float().numpy()
        assert got.shape == want.shape == shape
        np.testing.assert_allclose(got, want, rtol=0, atol=16 * 2**-8)
        equal, total = equal + int(np.sum(got == want)), total + got.size
    assert equal >= 0.85 * total, f"{equal} of {total} elements equal torch's"
    zeros = dk_muon._zeropower_via_newtonschulz(deepkern.zeros(shape), (3.4445, -4.7750, 2.0315), 5, 1e-7)
    np.testing.assert_array_equal(zeros.numpy(), np.zeros(shape, np.float32))  # eps keeps 0 / 0 away


def test_newton_schulz_rounds_float64_through_float32_as_torch():
    """float64 values just above the middle between two bfloat16 values: float32 makes them ties (rounded
    to even), as torch's cast does; rounded directly they would go up (80% of the outputs differ then)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 6)).astype(deepkern.bfloat16).astype(np.float64)
    g = base + np.ldexp(1.0, np.frexp(base)[1] - 9) * (1 + 2.0**-20)  # half a bfloat16 ulp and a bit
    want = torch_muon._zeropower_via_newtonschulz(torch.from_numpy(g), (3.4445, -4.7750, 2.0315), 5, 1e-7)
    got = dk_muon._zeropower_via_newtonschulz(deepkern.tensor(g), (3.4445, -4.7750, 2.0315), 5, 1e-7)
    np.testing.assert_array_equal(got.numpy(), want.float().numpy())


# -- state dicts, devices, defaults, arguments (both optimizers) --------------------------------------

OPTIMIZERS = {
    "Adafactor": (AF_SHAPES, dict(lr=0.05, weight_decay=0.1, maximize=True, eps=(1e-20, 1e-3))),
    "Muon": (MUON_SHAPES, dict(lr=0.02, weight_decay=0.05, nesterov=False)),
}


def first_groups(params):
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.03}]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cls_name", list(OPTIMIZERS))
def test_state_dict_resume_equals_uninterrupted_run(cls_name, dtype, tmp_path):
    """6 steps, the state dict through deepkern.save/load into a fresh optimizer (other options: the
    groups' come from the state dict), 6 more: the 12-step run's weights and state, bit for bit."""
    shapes, options = OPTIMIZERS[cls_name]
    arrays = arrays_of(shapes, dtype, 0)
    grads = [arrays_of(shapes, dtype, 1 + t) for t in range(STEPS)]
    whole, whole_opt = follow(deepkern, cls_name, options, arrays, grads, groups=first_groups)
    first, opt = follow(deepkern, cls_name, options, arrays, grads[:6], groups=first_groups)
    deepkern.save({"optimizer": opt.state_dict()}, tmp_path / "ckpt.safetensors")
    saved = deepkern.load(tmp_path / "ckpt.safetensors")["optimizer"]
    params = [deepkern.nn.Parameter(a.copy()) for a in first]
    fresh = getattr(optim, cls_name)(first_groups(params), lr=0.9)
    fresh.load_state_dict(saved)
    assert fresh.param_groups[1]["lr"] == 0.03 and fresh.param_groups[0]["lr"] == options["lr"]
    for step in grads[6:]:
        for p, g in zip(params, step):
            p.grad = deepkern.tensor(g.copy())
        fresh.step()
    for w, p in zip(whole, params):
        np.testing.assert_array_equal(p.detach().numpy(), w)
    ours, theirs = plain_state(fresh.state_dict()), plain_state(whole_opt.state_dict())
    assert list(ours) == list(theirs)
    for k in theirs:
        assert list(ours[k]) == list(theirs[k])
        for key in theirs[k]:
            np.testing.assert_array_equal(ours[k][key], theirs[k][key])


@pytest.mark.parametrize("cls_name", list(OPTIMIZERS))
def test_loads_torch_state_dict_and_continues_like_torch(cls_name, monkeypatch):
    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", _deepkerns_iteration)
    shapes, options = OPTIMIZERS[cls_name]
    arrays = arrays_of(shapes, np.float64, 0)
    grads = [arrays_of(shapes, np.float64, 1 + t) for t in range(STEPS)]
    first, topt = follow(torch, cls_name, options, arrays, grads[:6])
    params = [deepkern.nn.Parameter(a.copy()) for a in first]
    opt = getattr(optim, cls_name)(params, **options)
    opt.load_state_dict(topt.state_dict())
    tparams = topt.param_groups[0]["params"]
    for step in grads[6:]:
        for p, tp, g in zip(params, tparams, step):
            p.grad, tp.grad = deepkern.tensor(g.copy()), torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    assert_close([p.detach().numpy() for p in params], [tp.detach().numpy() for tp in tparams], F64_RTOL, F64_ATOL)
    assert_state_matches(opt, topt, F64_RTOL, F64_ATOL, cls_name)


def test_adafactor_state_of_the_wrong_shape_is_refused():
    params = [deepkern.nn.Parameter(a) for a in arrays_of(AF_SHAPES, np.float64, 0)]
    opt = optim.Adafactor(params)
    for p in params:
        p.grad = deepkern.ones_like(p)
    opt.step()
    state = opt.state_dict()
    state["state"][1]["row_var"] = np.zeros((1, 5))
    with raises_naming(ValueError, r"state\[1\]\['row_var'\]", r"\(1, 5\)", r"\(3, 1\)"):
        optim.Adafactor(params).load_state_dict(state)


@pytest.mark.parametrize("cls_name", list(OPTIMIZERS))
def test_steps_on_a_second_device(cls_name, monkeypatch):
    """On the fake device of tests/fake_device.py: the state stays there and the weights are the CPU's."""
    monkeypatch.setattr(backends, "_BACKENDS", {n: b for n, b in backends._BACKENDS.items() if n != FakeBackend.name})
    backends.register(FakeBackend())
    shapes, options = OPTIMIZERS[cls_name]
    arrays = arrays_of(shapes, np.float64, 0)
    grads = [arrays_of(shapes, np.float64, 1 + t) for t in range(4)]
    params = [deepkern.nn.Parameter(deepkern.tensor(a.copy(), device="fake")) for a in arrays]
    opt = getattr(optim, cls_name)(params, **options)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = deepkern.tensor(g.copy(), device="fake")
        opt.step()
    assert all(type(v._array) is FakeArray for s in opt.state.values() for v in s.values() if hasattr(v, "_array"))
    want, _ = follow(deepkern, cls_name, options, arrays, grads)
    for p, w in zip(params, want):
        assert p.device == "fake:0"
        np.testing.assert_array_equal(p.detach().cpu().numpy(), w)


@pytest.mark.parametrize("cls_name", list(OPTIMIZERS))
def test_signature_defaults_and_group_keys_are_torchs(cls_name):
    ours = inspect.signature(getattr(optim, cls_name)).parameters
    theirs = inspect.signature(getattr(torch.optim, cls_name)).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]
    shapes, _ = OPTIMIZERS[cls_name]
    params = [deepkern.nn.Parameter(a) for a in arrays_of(shapes, np.float32, 0)]
    tparams = [torch.nn.Parameter(torch.from_numpy(a)) for a in arrays_of(shapes, np.float32, 0)]
    ours, theirs = getattr(optim, cls_name)(params), getattr(torch.optim, cls_name)(tparams)
    assert list(ours.defaults.items()) == list(theirs.defaults.items())
    assert list(ours.state_dict()["param_groups"][0]) == list(theirs.state_dict()["param_groups"][0])


def test_tensor_lr_steps_as_a_number():
    for cls_name, (shapes, options) in OPTIMIZERS.items():
        arrays = arrays_of(shapes, np.float64, 0)
        grads = [arrays_of(shapes, np.float64, 1 + t) for t in range(4)]
        want, _ = follow(deepkern, cls_name, options, arrays, grads)
        lr = deepkern.tensor(options["lr"], dtype=deepkern.float64)
        got, _ = follow(deepkern, cls_name, dict(options, lr=lr), arrays, grads)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
        with raises_naming(ValueError, "Tensor lr must be 1-element"):
            getattr(optim, cls_name)([deepkern.nn.Parameter(a) for a in arrays], lr=deepkern.tensor([0.1, 0.2]))


def _raised(fn, *args, **kwargs):
    """The type and message of what ``fn(*args, **kwargs)`` raises (None if nothing)."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001  (the type and message are what is compared)
        return type(exc), str(exc)
    return None


def test_bad_arguments_raise_torchs_errors():
    """The exception types and messages of torch's checks, at construction and at the first step."""
    vector, matrix = np.ones(3), np.ones((3, 4))
    cases = [
        ("Adafactor", [vector], dict(lr=-0.1)),
        ("Adafactor", [vector], dict(beta2_decay=0.5)),
        ("Adafactor", [vector], dict(eps=(-1e-3, 1e-3))),
        ("Adafactor", [vector], dict(eps=(None, -2.0))),
        ("Adafactor", [vector], dict(d=0.5)),
        ("Adafactor", [vector], dict(weight_decay=-0.25)),
        ("Muon", [matrix], dict(lr=-1.0)),
        ("Muon", [matrix], dict(momentum=-0.5)),
        ("Muon", [matrix], dict(weight_decay=-0.1)),
        ("Muon", [matrix], dict(adjust_lr_fn="spectral")),
    ]
    for cls_name, arrays, options in cases:
        ours = _raised(getattr(optim, cls_name), [deepkern.nn.Parameter(a) for a in arrays], **options)
        theirs = _raised(
            getattr(torch.optim, cls_name), [torch.nn.Parameter(torch.tensor(a)) for a in arrays], **options
        )
        assert theirs is not None and ours == theirs, (cls_name, options, ours, theirs)
    with raises_naming(ValueError, "Muon only supports 2D parameters", r"\(3,\)"):
        optim.Muon([deepkern.nn.Parameter(matrix), deepkern.nn.Parameter(vector)])
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        torch.optim.Muon([torch.nn.Parameter(torch.tensor(vector))])
    for options, message in [
        (dict(ns_steps=100), "Number of steps must be less than 100"),
        (dict(ns_coefficients=(1.0, 2.0)), "Coefficients must be a tuple of exactly 3 values"),
    ]:
        results = []
        for lib in (deepkern, torch):
            p = lib.nn.Parameter(lib.tensor(matrix))
            opt = lib.optim.Muon([p], **options)
            p.grad = lib.tensor(matrix)
            results.append(_raised(opt.step))
        assert (
            results[0]
            == results[1]
            == (ValueError, message + (" for computational efficiency" if "steps" in message else ""))
        )


# -- swa_utils: AveragedModel and the averaging functions --------------------------------------------


def models(dtype):
    """The same small network (Linear, BatchNorm1d, ReLU, Linear) in torch and deepkern."""
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4, momentum=0.3), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    ).to(torch.float64 if dtype == np.float64 else torch.float32)
    model = deepkern.nn.Sequential(
        deepkern.nn.Linear(3, 4), deepkern.nn.BatchNorm1d(4, momentum=0.3), deepkern.nn.ReLU(), deepkern.nn.Linear(4, 2)
    ).to(dtype)
    model.load_state_dict(tmodel.state_dict())
    return model, tmodel


AVERAGES = {
    "swa": lambda su: dict(),
    "swa-buffers": lambda su: dict(use_buffers=True),
    "swa-avg-fn": lambda su: dict(avg_fn=su.get_swa_avg_fn()),
    "swa-multi": lambda su: dict(multi_avg_fn=su.get_swa_multi_avg_fn()),
    "ema-multi": lambda su: dict(multi_avg_fn=su.get_ema_multi_avg_fn(0.9)),
    "ema-multi-buffers": lambda su: dict(multi_avg_fn=su.get_ema_multi_avg_fn(0.7), use_buffers=True),
    "ema-avg-fn-buffers": lambda su: dict(avg_fn=su.get_ema_avg_fn(0.8), use_buffers=True),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", list(AVERAGES))
def test_averaged_model_matches_torch(kind, dtype):
    """5 updates, the model's weights moved and a training batch run (moving the batch-norm buffers)
    before each: the averaged parameters and buffers (num_batches_tracked included: averaged and
    truncated with use_buffers, copied otherwise), n_averaged, the state dict's keys, and the output."""
    model, tmodel = models(dtype)
    averaged = swa_utils.AveragedModel(model, **AVERAGES[kind](swa_utils))
    taveraged = torch.optim.swa_utils.AveragedModel(tmodel, **AVERAGES[kind](torch.optim.swa_utils))
    rng = np.random.default_rng(3)
    for _ in range(5):
        moves = [rng.standard_normal(p.shape).astype(dtype) for p in tmodel.parameters()]
        x = rng.standard_normal((6, 3)).astype(dtype)
        with torch.no_grad():
            for tp, m in zip(tmodel.parameters(), moves):
                tp.add_(torch.from_numpy(m))
        with deepkern.no_grad():
            for p, m in zip(model.parameters(), moves):
                p.add_(deepkern.tensor(m))
        model(deepkern.tensor(x))
        tmodel(torch.from_numpy(x))
        averaged.update_parameters(model)
        taveraged.update_parameters(tmodel)
    ours, theirs = averaged.state_dict(), taveraged.state_dict()
    assert list(ours) == list(theirs)
    assert list(theirs)[:2] == ["n_averaged", "module.0.weight"]
    for key, want in theirs.items():
        got = ours[key].numpy()
        assert got.dtype == want.numpy().dtype, key
        if want.dtype == torch.int64:
            assert got == want.item(), key
        else:
            np.testing.assert_allclose(got, want.numpy(), *tol(dtype), err_msg=key)
    assert int(ours["n_averaged"].item()) == 5
    assert not np.allclose(ours["module.0.weight"].numpy(), model[0].weight.detach().numpy())
    x = rng.standard_normal((4, 3)).astype(dtype)
    averaged.eval(), taveraged.eval()
    np.testing.assert_allclose(
        averaged(deepkern.tensor(x)).detach().numpy(), taveraged(torch.from_numpy(x)).detach().numpy(), *tol(dtype)
    )


def test_averaged_model_device_copy_and_arguments():
    model, _ = models(np.float64)
    averaged = swa_utils.AveragedModel(model, device="cpu")
    assert averaged.n_averaged.dtype == np.int64 and averaged.n_averaged.device == "cpu"
    assert averaged.module is not model and averaged.module[0].weight is not model[0].weight
    np.testing.assert_array_equal(averaged.module[0].weight.detach().numpy(), model[0].weight.detach().numpy())
    with pytest.raises(AssertionError, match="Only one of avg_fn and multi_avg_fn should be provided"):
        swa_utils.AveragedModel(model, avg_fn=swa_utils.get_swa_avg_fn(), multi_avg_fn=swa_utils.get_swa_multi_avg_fn())
    for name in ("get_ema_multi_avg_fn", "get_ema_avg_fn"):
        for decay in (-0.1, 1.5):
            ours = _raised(getattr(swa_utils, name), decay)
            assert ours == _raised(getattr(torch.optim.swa_utils, name), decay) and ours[0] is ValueError
    with raises_naming(RuntimeError, "int64"):  # torch's in-place division refuses integer buffers too
        averaged = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_swa_multi_avg_fn(), use_buffers=True)
        averaged.update_parameters(model)
        averaged.update_parameters(model)
    assert set(swa_utils.__all__) == set(torch.optim.swa_utils.__all__)


# -- swa_utils: SWALR ----------------------------------------------------------------------------------


def swalr_run(lib, make, steps=16, change_at=None):
    """SGD with two groups (lr 0.1 and 0.02) under ``make(swa_utils, opt)``: the learning rates after each
    step (both groups' lr times 3 at step ``change_at``: SWALR anneals from the current lr)."""
    params = [lib.nn.Parameter(lib.tensor(a)) for a in arrays_of([(3,), (2, 2)], np.float64, 0)]
    opt = lib.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], lr=0.1)
    sched = make(lib.optim.swa_utils, opt)
    out = [sched.get_last_lr()]
    for t in range(steps):
        if t == change_at:
            for group in opt.param_groups:
                group["lr"] *= 3
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
    return out, sched, opt


SWALRS = {
    "cos": (lambda su, o: su.SWALR(o, swa_lr=0.05, anneal_epochs=6), None),
    "linear-per-group": (lambda su, o: su.SWALR(o, [0.05, 0.001], anneal_epochs=4, anneal_strategy="linear"), None),
    "cos-lr-changed": (lambda su, o: su.SWALR(o, [0.01, 0.2], anneal_epochs=8), 3),
    "no-annealing": (lambda su, o: su.SWALR(o, 0.07, anneal_epochs=0, anneal_strategy="linear"), None),
    "one-epoch-cos": (lambda su, o: su.SWALR(o, 0.3, anneal_epochs=1), None),
}


@pytest.mark.parametrize("name", list(SWALRS))
def test_swalr_learning_rates_equal_torchs(name):
    make, change_at = SWALRS[name]
    ours, sched, opt = swalr_run(deepkern, make, change_at=change_at)
    theirs, _, _ = swalr_run(torch, make, change_at=change_at)
    assert ours == theirs, name  # the same floats, step by step
    assert ours[-1] == [g["swa_lr"] for g in opt.param_groups], "annealed to swa_lr"
    assert ours[0] != ours[-1] or name == "no-annealing"


def test_swalr_state_dict_round_trip(tmp_path):
    make = SWALRS["linear-per-group"][0]
    whole, _, _ = swalr_run(deepkern, make, steps=8)
    _, sched, opt = swalr_run(deepkern, make, steps=3)
    state = sched.state_dict()
    assert "anneal_func" not in state and state["_anneal_strategy"] == "linear"
    deepkern.save({"optimizer": opt.state_dict(), "scheduler": state}, tmp_path / "ckpt.safetensors")
    saved = deepkern.load(tmp_path / "ckpt.safetensors")
    params = [deepkern.nn.Parameter(a) for a in arrays_of([(3,), (2, 2)], np.float64, 0)]
    opt2 = optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.5)
    sched2 = swa_utils.SWALR(opt2, swa_lr=1.0, anneal_strategy="cos")
    opt2.load_state_dict(saved["optimizer"])  # swa_lr is the groups'
    sched2.load_state_dict(saved["scheduler"])
    assert sched2.anneal_func is swa_utils.SWALR._linear_anneal
    for t in range(4, 9):
        opt2.step()
        sched2.step()
        assert sched2.get_last_lr() == whole[t], t


def test_swalr_bad_arguments_raise_torchs_errors():
    for lib in (deepkern, torch):
        p = lib.nn.Parameter(lib.tensor(np.ones(2)))
        opt = lib.optim.SGD([{"params": [p]}, {"params": [lib.nn.Parameter(lib.tensor(np.ones(2)))]}], lr=0.1)
        su = lib.optim.swa_utils
        with raises_naming(ValueError, "anneal_strategy must be one of 'cos' or 'linear', instead got exp"):
            su.SWALR(opt, 0.1, anneal_strategy="exp")
        with raises_naming(ValueError, "anneal_epochs must be equal or greater than 0, got -1"):
            su.SWALR(opt, 0.1, anneal_epochs=-1)
        with raises_naming(ValueError, "anneal_epochs must be equal or greater than 0, got 2.5"):
            su.SWALR(opt, 0.1, anneal_epochs=2.5)
        with raises_naming(ValueError, "swa_lr must have the same length as optimizer.param_groups", "3 values"):
            su.SWALR(opt, [0.1, 0.2, 0.3])


# -- swa_utils: update_bn ------------------------------------------------------------------------------


def bn_models(dtype):
    """Conv2d, BatchNorm2d (momentum 0.2), InstanceNorm2d with running stats (not a batch norm: left
    alone), and Linear, BatchNorm1d (no affine), in torch and deepkern."""
    torch.manual_seed(1)

    def build(nn):
        return nn.Sequential(
            nn.Conv2d(2, 3, 3),
            nn.BatchNorm2d(3, momentum=0.2),
            nn.InstanceNorm2d(3, track_running_stats=True),
            nn.Flatten(),
            nn.Linear(12, 5),
            nn.BatchNorm1d(5, affine=False),
        )

    tmodel = build(torch.nn).to(torch.float64 if dtype == np.float64 else torch.float32)
    model = build(deepkern.nn).to(dtype)
    model.load_state_dict(tmodel.state_dict())
    return model, tmodel


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("batches", ["tensors", "pairs", "lists"])
def test_update_bn_matches_torch(batches, dtype):
    """Running statistics after one pass over 4 batches (momentum None: their cumulative average), the
    instance norm's untouched, momenta and the model's eval mode restored, as torch's."""
    model, tmodel = bn_models(dtype)
    rng = np.random.default_rng(5)
    data = [(rng.standard_normal((3 + i, 2, 4, 4)).astype(dtype) * (1 + i), np.zeros(3 + i)) for i in range(4)]

    def loader(lib):
        for x, y in data:
            x, y = lib.tensor(x), lib.tensor(y)
            yield {"tensors": x, "pairs": (x, y), "lists": [x, y]}[batches]

    for m, tm in ((model, tmodel), (model[2], tmodel[2])):  # the instance norm's statistics moved once
        m.train(), tm.train()
    x = rng.standard_normal((2, 2, 4, 4)).astype(dtype)
    model(deepkern.tensor(x)), tmodel(torch.from_numpy(x))
    model.eval(), tmodel.eval()
    swa_utils.update_bn(loader(deepkern), model)
    torch.optim.swa_utils.update_bn(loader(torch), tmodel)
    assert not model.training and model[1].momentum == 0.2 and model[5].momentum == 0.1
    ours, theirs = model.state_dict(), tmodel.state_dict()
    assert list(ours) == list(theirs)
    for key, want in theirs.items():
        if want.dtype == torch.int64:
            assert int(ours[key].item()) == want.item(), key
        else:
            np.testing.assert_allclose(ours[key].numpy(), want.numpy(), *tol(dtype), err_msg=key)
    assert int(ours["1.num_batches_tracked"].item()) == 4 and int(ours["2.num_batches_tracked"].item()) == 0


def test_update_bn_on_a_device_and_without_batch_norm():
    model, tmodel = bn_models(np.float32)
    model.train()
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4)).astype(np.float32)
    swa_utils.update_bn([deepkern.tensor(x)], model, device="cpu")
    torch.optim.swa_utils.update_bn([torch.from_numpy(x)], tmodel, device="cpu")
    assert model.training
    np.testing.assert_allclose(model[1].running_var.numpy(), tmodel[1].running_var.numpy(), F32_RTOL, F32_ATOL)
    plain = deepkern.nn.Linear(2, 2).eval()
    swa_utils.update_bn([object()], plain)  # no batch norm: nothing run, the mode left as it was
    assert not plain.training


def test_averaging_and_update_bn_on_a_second_device(monkeypatch):
    """AveragedModel(device="fake") of a CPU model (EMA of parameters and buffers) and update_bn(device="fake")
    on it: the arrays stay on the device, the values are those of the same run on the CPU."""
    monkeypatch.setattr(backends, "_BACKENDS", {n: b for n, b in backends._BACKENDS.items() if n != FakeBackend.name})
    backends.register(FakeBackend())
    x = deepkern.tensor(np.random.default_rng(0).standard_normal((6, 3)))
    runs = []
    for device in ("fake", None):
        model, _ = models(np.float64)
        averaged = swa_utils.AveragedModel(
            model, device=device, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.6), use_buffers=True
        )
        for t in range(3):
            with deepkern.no_grad():
                for p in model.parameters():
                    p.mul_(1.5 - t)
            model(x)
            averaged.update_parameters(model)
        swa_utils.update_bn([x * 2, (x, None)], averaged, device=device)
        runs.append(averaged.state_dict())
    assert all(type(t._array) is FakeArray for t in runs[0].values())
    for key, want in runs[1].items():
        np.testing.assert_array_equal(runs[0][key].cpu().numpy(), want.numpy(), err_msg=key)
