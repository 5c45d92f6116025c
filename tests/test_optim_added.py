"""deepkern.optim's Adadelta, Adamax, ASGD and Rprop, and lr_scheduler's ConstantLR, PolynomialLR,
MultiplicativeLR, CyclicLR and ChainedScheduler.

Optimizers: 20 steps of a fixed sequence of random gradients on parameters of odd shapes, float32
and float64, against torch.optim (parameters and state) and against float64 re-statements of the
rules written out below (no torch needed); state dicts (resume mid-run, torch's state dicts, the
entries' names); bad arguments. Schedulers: the learning rates (and the momentum CyclicLR cycles)
of two param groups over 50 steps against torch's, alone and inside SequentialLR and
ChainedScheduler, against the closed forms; state dicts through deepkern.save; bad arguments.
torch is imported inside the tests that compare with it (skipped where it is not installed)."""

from __future__ import annotations

import math
import warnings

import deepkern
import numpy as np
import pytest
from deepkern import backends, optim
from deepkern.optim import lr_scheduler

from checks import raises_naming
from fake_device import FakeArray, FakeBackend

SHAPES = [(7,), (3, 5), (2, 3, 4), (1,)]
STEPS = 20
# float32 against torch: the same operations in the same order; a multiply-add that one side
# contracts into an FMA differs by an ulp in that step (measured: <= 2.4e-7 absolute in 20 steps).
F32_RTOL, F32_ATOL = 1e-5, 1e-6
# float64 against torch and against the re-statements: a few ulp (measured: <= 2.3e-16 absolute)
F64_RTOL, F64_ATOL = 1e-12, 1e-14
# float32 against the float64 re-statement: float32 rounding of every stored value
F32_REF_RTOL, F32_REF_ATOL = 1e-4, 1e-5


def _torch():
    return pytest.importorskip("torch")


def start_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def gradient_sequence(dtype, steps=STEPS, seed=1):
    """``steps`` lists of one random gradient per parameter (not a function of the weights, so a
    rounding difference in one step is not amplified by the next gradients)."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]


def follow(lib, cls_name, options, arrays, grads, groups=None, skip=(), lr_change=None):
    """Steps ``lib.optim.<cls_name>`` (deepkern or torch) through ``grads`` from copies of
    ``arrays`` (no gradient for the indices in ``skip``; each group's lr times ``lr_change`` half
    way); returns the final weights as NumPy arrays and the optimizer."""
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


def two_groups(params):
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.03}]


def assert_close(got, want, rtol, atol, what=""):
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, (what, i, g.dtype, w.dtype, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what}: {i}")


def plain_state(state_dict):
    """A state dict's per-parameter state with arrays and scalars (deepkern's or torch's) as NumPy."""

    def plain(v):
        if hasattr(v, "detach"):
            v = v.detach()
        return np.asarray(v.numpy() if hasattr(v, "numpy") else v)

    return {k: {name: plain(v) for name, v in entry.items()} for k, entry in state_dict["state"].items()}


# -- float64 re-statements of the rules (torch's documented algorithms) -----------------------------


def _grad(p, g, o):
    g = -g if o.get("maximize") else g
    return g + o.get("weight_decay", 0) * p


def ref_adadelta(ps, grads, lr=1.0, rho=0.9, eps=1e-6, **o):
    sq, acc = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps]
    for step in grads:
        for i, p in enumerate(ps):
            g = _grad(p, step[i], o)
            sq[i] = rho * sq[i] + (1 - rho) * g * g
            delta = np.sqrt(acc[i] + eps) / np.sqrt(sq[i] + eps) * g
            acc[i] = rho * acc[i] + (1 - rho) * delta * delta
            ps[i] = p - lr * delta
    return ps, [{"square_avg": s, "acc_delta": a} for s, a in zip(sq, acc)]


def ref_adamax(ps, grads, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, **o):
    b1, b2 = betas
    m, u = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps]
    for t, step in enumerate(grads, 1):
        for i, p in enumerate(ps):
            g = _grad(p, step[i], o)
            m[i] = b1 * m[i] + (1 - b1) * g
            u[i] = np.maximum(b2 * u[i], np.abs(g) + eps)
            ps[i] = p - lr / (1 - b1**t) * m[i] / u[i]
    return ps, [{"exp_avg": a, "exp_inf": b} for a, b in zip(m, u)]


def f32(x):
    """torch keeps ASGD's eta and mu in 0-d float32 tensors."""
    return float(np.float32(x))


def ref_asgd(ps, grads, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, **o):
    eta, mu = f32(lr), 1.0
    ax = [np.zeros_like(p) for p in ps]
    for t, step in enumerate(grads, 1):
        for i, p in enumerate(ps):
            g = _grad(p, step[i], o)
            ps[i] = p * (1 - lambd * eta) - eta * g
            ax[i] = ax[i] + (ps[i] - ax[i]) * mu if mu != 1 else ps[i].copy()
        eta, mu = f32(lr / (1 + lambd * lr * t) ** alpha), f32(1 / max(1, t - t0))
    return ps, [{"ax": a, "eta": eta, "mu": mu} for a in ax]


def ref_rprop(ps, grads, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), **o):
    etaminus, etaplus = etas
    prev = [np.zeros_like(p) for p in ps]
    size = [np.full_like(p, lr) for p in ps]
    for step in grads:
        for i, p in enumerate(ps):
            g = _grad(p, step[i], o)
            s = np.sign(g * prev[i])
            size[i] = np.clip(size[i] * np.where(s > 0, etaplus, np.where(s < 0, etaminus, 1.0)), *step_sizes)
            g = np.where(s < 0, 0.0, g)
            ps[i] = p - np.sign(g) * size[i]
            prev[i] = g
    return ps, [{"prev": a, "step_size": b} for a, b in zip(prev, size)]


# (id, class name, options, reference): every option that changes a rule, alone and together
CASES = [
    ("adadelta", "Adadelta", dict(), ref_adadelta),
    ("adadelta-rho-eps", "Adadelta", dict(lr=0.5, rho=0.6, eps=1e-3), ref_adadelta),
    ("adadelta-wd", "Adadelta", dict(weight_decay=0.3), ref_adadelta),
    ("adadelta-maximize", "Adadelta", dict(lr=2.0, maximize=True), ref_adadelta),
    ("adadelta-all", "Adadelta", dict(lr=0.7, rho=0.95, eps=1e-5, weight_decay=0.1, maximize=True), ref_adadelta),
    ("adamax", "Adamax", dict(), ref_adamax),
    ("adamax-betas-eps", "Adamax", dict(lr=0.02, betas=(0.8, 0.95), eps=1e-3), ref_adamax),
    ("adamax-small-beta1", "Adamax", dict(lr=0.02, betas=(0.3, 0.5)), ref_adamax),  # torch's other lerp
    ("adamax-wd", "Adamax", dict(lr=0.01, weight_decay=0.2), ref_adamax),
    ("adamax-all", "Adamax", dict(lr=0.03, betas=(0.7, 0.9), weight_decay=0.1, maximize=True), ref_adamax),
    ("asgd", "ASGD", dict(), ref_asgd),
    ("asgd-averaging", "ASGD", dict(lr=0.05, t0=5), ref_asgd),
    ("asgd-lambd-alpha", "ASGD", dict(lr=0.1, lambd=0.02, alpha=0.5, t0=0), ref_asgd),
    ("asgd-wd", "ASGD", dict(lr=0.03, weight_decay=0.2, t0=12), ref_asgd),
    ("asgd-all", "ASGD", dict(lr=0.07, lambd=0.01, alpha=0.9, t0=3, weight_decay=0.1, maximize=True), ref_asgd),
    ("rprop", "Rprop", dict(), ref_rprop),
    ("rprop-etas", "Rprop", dict(lr=0.05, etas=(0.3, 1.5)), ref_rprop),
    ("rprop-step-sizes", "Rprop", dict(lr=0.1, step_sizes=(0.02, 0.15)), ref_rprop),  # both bounds reached
    ("rprop-maximize", "Rprop", dict(lr=0.02, maximize=True), ref_rprop),
    ("rprop-all", "Rprop", dict(lr=0.04, etas=(0.6, 1.1), step_sizes=(1e-3, 0.2), maximize=True), ref_rprop),
]
IDS = [c[0] for c in CASES]
DTYPES = [np.float32, np.float64]
CLASSES = ["Adadelta", "Adamax", "ASGD", "Rprop"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=IDS)
def test_trajectory_and_state_match_torch(name, cls_name, options, ref, dtype):
    torch = _torch()
    arrays, grads = start_params(dtype), gradient_sequence(dtype)
    got, opt = follow(deepkern, cls_name, options, arrays, grads)
    want, topt = follow(torch, cls_name, options, arrays, grads)
    rtol, atol = (F32_RTOL, F32_ATOL) if dtype == np.float32 else (F64_RTOL, F64_ATOL)
    assert_close(got, want, rtol, atol, name)
    ours, theirs = plain_state(opt.state_dict()), plain_state(topt.state_dict())
    assert sorted(ours) == sorted(theirs) == list(range(len(SHAPES)))
    for k in theirs:
        assert list(ours[k]) == list(theirs[k]), "state names, in torch's order"
        for key in theirs[k]:
            want_value = theirs[k][key]
            if want_value.ndim == 0:  # step, and ASGD's eta and mu: torch's float32 scalars
                assert float(ours[k][key]) == float(want_value), (k, key)
            else:
                assert_close([ours[k][key]], [want_value], rtol, atol, f"{name} state[{k}][{key!r}]")
    assert float(ours[0]["step"]) == STEPS
    moved = max(float(np.max(np.abs(w - a))) for w, a in zip(want, arrays))
    assert moved > 5e-3, "the gradients should move the parameters"


@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=IDS)
def test_float64_trajectory_matches_reference(name, cls_name, options, ref):
    arrays, grads = start_params(np.float64), gradient_sequence(np.float64)
    got, opt = follow(deepkern, cls_name, options, arrays, grads)
    want, want_states = ref([a.copy() for a in arrays], grads, **options)
    assert_close(got, want, F64_RTOL, F64_ATOL, name)
    for i, p in enumerate(opt.param_groups[0]["params"]):
        for key, value in want_states[i].items():
            got_value = opt.state[p][key]
            if isinstance(value, float):
                assert got_value == value, (i, key)
            else:
                assert_close([got_value.numpy()], [value], F64_RTOL, F64_ATOL, f"{name} state {key}")


@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=IDS)
def test_float32_trajectory_near_float64_reference(name, cls_name, options, ref):
    arrays, grads = start_params(np.float32), gradient_sequence(np.float32)
    got, _ = follow(deepkern, cls_name, options, arrays, grads)
    want, _ = ref([a.astype(np.float64) for a in arrays], [[g.astype(np.float64) for g in s] for s in grads], **options)
    assert_close(got, [w.astype(np.float32) for w in want], F32_REF_RTOL, F32_REF_ATOL, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cls_name", CLASSES)
def test_groups_skipped_params_and_lr_change_match_torch(cls_name, dtype):
    """Two groups (the second with its own lr), a parameter without gradient (not stepped, no state)
    and the lrs halved half way (ASGD's eta follows the group's lr, Rprop's step sizes do not)."""
    torch = _torch()
    arrays, grads = start_params(dtype), gradient_sequence(dtype)
    kw = dict(groups=two_groups, skip={1}, lr_change=0.5)
    got, opt = follow(deepkern, cls_name, dict(lr=0.05), arrays, grads, **kw)
    want, topt = follow(torch, cls_name, dict(lr=0.05), arrays, grads, **kw)
    rtol, atol = (F32_RTOL, F32_ATOL) if dtype == np.float32 else (F64_RTOL, F64_ATOL)
    assert_close(got, want, rtol, atol, cls_name)
    np.testing.assert_array_equal(got[1], arrays[1])
    assert sorted(opt.state_dict()["state"]) == sorted(topt.state_dict()["state"]) == [0, 2, 3]


@pytest.mark.parametrize("cls_name", CLASSES)
def test_tensor_options_and_shared_gradients_step_as_numbers(cls_name):
    """lr (and Adamax's betas) given as 0-d Tensors, as PyTorch takes them, and a gradient that is
    the parameter's own memory (``p.grad = p.detach()``) step exactly as numbers and a copy."""
    scalar = lambda x: deepkern.tensor(x, dtype=deepkern.float64)  # noqa: E731
    numbers, tensors = dict(RESUME[cls_name]), dict(RESUME[cls_name], lr=scalar(RESUME[cls_name]["lr"]))
    if cls_name == "Adamax":
        tensors["betas"] = tuple(map(scalar, numbers["betas"]))
    arrays, grads = start_params(np.float64), gradient_sequence(np.float64, steps=6)
    want, _ = follow(deepkern, cls_name, numbers, arrays, grads)
    got, _ = follow(deepkern, cls_name, tensors, arrays, grads)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    shared, copied = ([deepkern.nn.Parameter(a.copy()) for a in arrays] for _ in range(2))
    opt_shared, opt_copied = (getattr(optim, cls_name)(ps, **numbers) for ps in (shared, copied))
    for _ in range(4):
        for p, q in zip(shared, copied):
            p.grad, q.grad = p.detach(), q.detach().clone()
        opt_shared.step()
        opt_copied.step()
    for p, q, a in zip(shared, copied, arrays):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
        assert not np.array_equal(p.detach().numpy(), a)


@pytest.mark.parametrize("cls_name", CLASSES)
def test_float16_parameters_step_in_their_dtype_like_torch(cls_name):
    """As torch (and the other NumPy-rule optimizers): float16 state, float16 arithmetic."""
    torch = _torch()
    arrays, grads = start_params(np.float16), gradient_sequence(np.float16, steps=5)
    got, opt = follow(deepkern, cls_name, RESUME[cls_name], arrays, grads)
    want, _ = follow(torch, cls_name, RESUME[cls_name], arrays, grads)
    assert all(
        v.dtype == np.float16 for v in opt.state[opt.param_groups[0]["params"][0]].values() if hasattr(v, "dtype")
    )
    assert_close(got, want, 1e-2, 2e-3, cls_name)


@pytest.mark.parametrize("cls_name", CLASSES)
def test_steps_on_a_second_device(cls_name, monkeypatch):
    """On the fake device of tests/fake_device.py (host memory that refuses host arrays beside its
    own): the state stays on the device and the weights are the CPU run's."""
    monkeypatch.setattr(backends, "_BACKENDS", {n: b for n, b in backends._BACKENDS.items() if n != FakeBackend.name})
    backends.register(FakeBackend())
    arrays, grads = start_params(np.float64), gradient_sequence(np.float64, steps=6)
    params = [deepkern.nn.Parameter(deepkern.tensor(a.copy(), device="fake")) for a in arrays]
    opt = getattr(optim, cls_name)(params, **RESUME[cls_name])
    for step in grads:
        for p, g in zip(params, step):
            p.grad = deepkern.tensor(g.copy(), device="fake")
        opt.step()
    assert all(type(v._array) is FakeArray for s in opt.state.values() for v in s.values() if hasattr(v, "_array"))
    want, _ = follow(deepkern, cls_name, RESUME[cls_name], arrays, grads)
    for p, w in zip(params, want):
        assert p.device == "fake:0"
        np.testing.assert_allclose(p.detach().cpu().numpy(), w, rtol=1e-15, atol=1e-15)


# -- state dicts ----------------------------------------------------------------------------------

RESUME = {
    "Adadelta": dict(lr=0.5, rho=0.8, weight_decay=0.1),
    "Adamax": dict(lr=0.02, betas=(0.8, 0.99), maximize=True),
    "ASGD": dict(lr=0.05, t0=4, lambd=0.01),
    "Rprop": dict(lr=0.03, etas=(0.4, 1.3), step_sizes=(1e-3, 0.1)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cls_name", CLASSES)
def test_state_dict_resume_equals_uninterrupted_run(cls_name, dtype, tmp_path):
    """10 steps, the state dicts written and read back by deepkern.save/load, a fresh optimizer
    loads them and takes the other 10 steps: the weights and state of the 20-step run, bit for bit."""
    options = RESUME[cls_name]
    arrays, grads = start_params(dtype), gradient_sequence(dtype)
    whole, whole_opt = follow(deepkern, cls_name, options, arrays, grads, groups=two_groups)
    first, opt = follow(deepkern, cls_name, options, arrays, grads[:10], groups=two_groups)
    deepkern.save({"optimizer": opt.state_dict()}, tmp_path / "ckpt.safetensors")
    saved = deepkern.load(tmp_path / "ckpt.safetensors")["optimizer"]
    params = [deepkern.nn.Parameter(a.copy()) for a in first]
    fresh = getattr(optim, cls_name)(two_groups(params), lr=0.9)  # the groups' options come from the state dict
    fresh.load_state_dict(saved)
    assert fresh.param_groups[1]["lr"] == 0.03 and fresh.param_groups[0]["lr"] == options["lr"]
    for step in grads[10:]:
        for p, g in zip(params, step):
            p.grad = deepkern.tensor(g.copy())
        fresh.step()
    for w, p in zip(whole, params):
        np.testing.assert_array_equal(p.detach().numpy(), w)
    ours, theirs = plain_state(fresh.state_dict()), plain_state(whole_opt.state_dict())
    for k in theirs:
        for key in theirs[k]:
            np.testing.assert_array_equal(ours[k][key], theirs[k][key])


@pytest.mark.parametrize("cls_name", CLASSES)
def test_loads_torch_state_dict_and_continues_like_torch(cls_name):
    torch = _torch()
    options = RESUME[cls_name]
    arrays, grads = start_params(np.float64), gradient_sequence(np.float64)
    first, topt = follow(torch, cls_name, options, arrays, grads[:10])
    params = [deepkern.nn.Parameter(a.copy()) for a in first]
    opt = getattr(optim, cls_name)(params, **options)
    opt.load_state_dict(topt.state_dict())  # 0-d torch tensors for step (and ASGD's eta, mu)
    assert opt.state[params[0]]["step"] == 10.0
    tparams = topt.param_groups[0]["params"]
    for step in grads[10:]:
        for p, tp, g in zip(params, tparams, step):
            p.grad, tp.grad = deepkern.tensor(g.copy()), torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    assert_close(
        [p.detach().numpy() for p in params], [tp.detach().numpy() for tp in tparams], F64_RTOL, F64_ATOL, cls_name
    )


@pytest.mark.parametrize("cls_name", CLASSES)
def test_defaults_and_group_options_are_torchs(cls_name):
    torch = _torch()
    params = [deepkern.nn.Parameter(a) for a in start_params(np.float32)]
    tparams = [torch.nn.Parameter(torch.from_numpy(a)) for a in start_params(np.float32)]
    ours, theirs = getattr(optim, cls_name)(params).defaults, getattr(torch.optim, cls_name)(tparams).defaults
    assert set(theirs) == set(ours)
    assert ours == {k: theirs[k] for k in ours}


@pytest.mark.parametrize("cls_name", CLASSES)
def test_state_dict_of_another_optimizer_is_refused(cls_name):
    other = CLASSES[(CLASSES.index(cls_name) + 1) % len(CLASSES)]
    params = [deepkern.nn.Parameter(a) for a in start_params(np.float32)]
    source = getattr(optim, other)(params)
    for p in params:
        p.grad = deepkern.ones_like(p)
    source.step()
    with raises_naming(ValueError, f"{cls_name} does not keep", "another optimizer"):
        getattr(optim, cls_name)(params).load_state_dict(source.state_dict())


def test_adamax_first_moment_anchors_lerp_as_torch():
    """torch's lerp computes from the nearer end: with beta1 = 0 the first moment is the gradient
    itself, exactly (start + (grad - start) would be off by an ulp), and equals torch's bit for bit."""
    torch = _torch()
    arrays, grads = start_params(np.float64), gradient_sequence(np.float64, steps=3)
    options = dict(lr=0.01, betas=(0.0, 0.9))
    _, opt = follow(deepkern, "Adamax", options, arrays, grads)
    _, topt = follow(torch, "Adamax", options, arrays, grads)
    ours, theirs = plain_state(opt.state_dict()), plain_state(topt.state_dict())
    for i, g in enumerate(grads[-1]):
        np.testing.assert_array_equal(ours[i]["exp_avg"], g)
        np.testing.assert_array_equal(ours[i]["exp_avg"], theirs[i]["exp_avg"])


def test_bad_arguments_raise_naming_them():
    params = [deepkern.nn.Parameter(a) for a in start_params(np.float32)]
    cases = [
        (lambda: optim.Adadelta(params, lr=-1.0), ["Invalid learning rate", "-1.0"]),
        (lambda: optim.Adadelta(params, rho=1.5), ["Invalid rho value", "1.5"]),
        (lambda: optim.Adadelta(params, rho=-0.1), ["Invalid rho value", "-0.1"]),
        (lambda: optim.Adadelta(params, eps=-1e-6), ["Invalid epsilon value", "-1e-06"]),
        (lambda: optim.Adadelta(params, weight_decay=-0.5), ["Invalid weight_decay value", "-0.5"]),
        (lambda: optim.Adamax(params, lr=-0.1), ["Invalid learning rate", "-0.1"]),
        (lambda: optim.Adamax(params, eps=-1.0), ["Invalid epsilon value", "-1.0"]),
        (lambda: optim.Adamax(params, betas=(1.0, 0.9)), ["Invalid beta parameter at index 0", "1.0"]),
        (lambda: optim.Adamax(params, betas=(0.9, -0.2)), ["Invalid beta parameter at index 1", "-0.2"]),
        (lambda: optim.Adamax(params, betas=(0.9,)), ["betas must be a pair", r"\(0.9,\)"]),
        (lambda: optim.Adamax(params, weight_decay=-2), ["Invalid weight_decay value", "-2"]),
        (lambda: optim.ASGD(params, lr=-0.01), ["Invalid learning rate", "-0.01"]),
        (lambda: optim.ASGD(params, weight_decay=-0.3), ["Invalid weight_decay value", "-0.3"]),
        (lambda: optim.Rprop(params, lr=-1e-2), ["Invalid learning rate", "-0.01"]),
        (lambda: optim.Rprop(params, etas=(1.5, 1.2)), ["Invalid eta values", "1.5, 1.2"]),
        (lambda: optim.Rprop(params, etas=(0.5, 0.9)), ["Invalid eta values", "0.5, 0.9"]),
        (lambda: optim.Rprop(params, etas=(0.0, 1.2)), ["Invalid eta values", "0.0, 1.2"]),
        (lambda: optim.Rprop(params, etas=(0.5,)), ["etas must be a pair", r"\(0.5,\)"]),
        (lambda: optim.Rprop(params, step_sizes=(1e-6,)), ["step_sizes must be a pair", r"1e-06"]),
    ]
    for make, needles in cases:
        with raises_naming(ValueError, *needles):
            make()
    for cls in (optim.Adadelta, optim.Adamax, optim.ASGD, optim.Rprop):
        with raises_naming(ValueError, "empty parameter list"):
            cls([])
        with raises_naming(NotImplementedError, cls.__name__, "differentiable"):  # steps are not recorded
            cls(params, differentiable=True)
    # the bounds themselves are valid, as in torch
    optim.Adadelta(params, lr=0.0, rho=0.0, eps=0.0)
    optim.Adadelta(params, rho=1.0)
    optim.Adamax(params, betas=(0.0, 0.0))


# -- learning-rate schedulers ---------------------------------------------------------------------

SCHED_STEPS = 50


def decay(epoch):
    return 0.95


class Ramp:
    """A callable object: MultiplicativeLR and CyclicLR save its ``__dict__``."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, x):
        return self.rate ** (x % 7)


def chained(m, o):
    return m.ChainedScheduler([m.ConstantLR(o, factor=0.1, total_iters=20), m.ExponentialLR(o, gamma=0.9)])


# (id, make(module, optimizer), optimizer class and options, the group option cycled or None)
SCHEDULERS = [
    ("constant", lambda m, o: m.ConstantLR(o), "SGD", None),
    ("constant-factor", lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=10), "SGD", None),
    ("constant-zero-iters", lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=0), "SGD", None),
    ("polynomial", lambda m, o: m.PolynomialLR(o), "SGD", None),
    ("polynomial-power", lambda m, o: m.PolynomialLR(o, total_iters=30, power=2.0), "SGD", None),
    ("polynomial-sqrt", lambda m, o: m.PolynomialLR(o, total_iters=45, power=0.5), "Adam", None),
    ("multiplicative", lambda m, o: m.MultiplicativeLR(o, decay), "SGD", None),
    ("multiplicative-per-group", lambda m, o: m.MultiplicativeLR(o, [decay, Ramp(0.9)]), "SGD", None),
    ("cyclic", lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4), "SGD", "momentum"),
    (
        "cyclic-triangular2-betas",
        lambda m, o: m.CyclicLR(o, [0.001, 0.002], [0.01, 0.05], step_size_up=3, step_size_down=5, mode="triangular2"),
        "Adam",
        "betas",
    ),
    (
        "cyclic-exp-range",
        lambda m, o: m.CyclicLR(
            o, 0.01, 0.2, step_size_up=6, mode="exp_range", gamma=0.97, base_momentum=[0.7, 0.6], max_momentum=0.95
        ),
        "RMSprop",
        "momentum",
    ),
    (
        "cyclic-scale-fn-cycle",
        lambda m, o: m.CyclicLR(o, 0.02, 0.08, step_size_up=2, step_size_down=7, scale_fn=Ramp(0.8)),
        "SGD",
        "momentum",
    ),
    (
        "cyclic-scale-fn-iterations",
        lambda m, o: m.CyclicLR(
            o, 0.02, 0.08, step_size_up=5, scale_fn=Ramp(0.9), scale_mode="iterations", mode="exp_range"
        ),
        "Adamax",
        "betas",
    ),
    (
        "cyclic-no-momentum",
        lambda m, o: m.CyclicLR(o, 0.05, 0.5, step_size_up=3, cycle_momentum=False, mode="triangular2"),
        "Adadelta",
        None,
    ),
    ("chained", chained, "SGD", None),
    (
        "chained-three",
        lambda m, o: m.ChainedScheduler(
            [m.MultiplicativeLR(o, decay), m.PolynomialLR(o, total_iters=40, power=1.5), m.StepLR(o, 7, 0.5)], o
        ),
        "SGD",
        None,
    ),
    (
        "chained-cyclic",
        lambda m, o: m.ChainedScheduler([m.CyclicLR(o, 0.01, 0.1, step_size_up=5), m.ConstantLR(o, 0.5, 8)]),
        "SGD",
        "momentum",
    ),
    (
        "sequential-constant-exponential",
        lambda m, o: m.SequentialLR(o, [m.ConstantLR(o, factor=0.1, total_iters=20), m.ExponentialLR(o, 0.9)], [20]),
        "SGD",
        None,
    ),
    (
        "sequential-constant-switched-early",
        lambda m, o: m.SequentialLR(o, [m.ConstantLR(o, factor=0.2, total_iters=10), m.ConstantLR(o, 0.5, 6)], [4]),
        "SGD",
        None,
    ),
    (
        "sequential-linear-polynomial",
        lambda m, o: m.SequentialLR(
            o, [m.LinearLR(o, start_factor=0.1, total_iters=5), m.PolynomialLR(o, total_iters=30, power=2.0)], [5]
        ),
        "SGD",
        None,
    ),
    (
        "sequential-multiplicative-cyclic",
        lambda m, o: m.SequentialLR(
            o, [m.MultiplicativeLR(o, decay), m.CyclicLR(o, 0.01, 0.1, step_size_up=4), m.PolynomialLR(o, 10)], [8, 30]
        ),
        "SGD",
        "momentum",
    ),
    (
        "sequential-of-chained",
        lambda m, o: m.SequentialLR(o, [chained(m, o), m.PolynomialLR(o, total_iters=20)], [25]),
        "SGD",
        None,
    ),
    (
        "chained-of-sequential",
        lambda m, o: m.ChainedScheduler(
            [m.SequentialLR(o, [m.ConstantLR(o, 0.5, 3), m.PolynomialLR(o, 20)], [6]), m.ExponentialLR(o, 0.98)]
        ),
        "SGD",
        None,
    ),
]
SCHED_IDS = [s[0] for s in SCHEDULERS]
OPTIONS = {"SGD": dict(lr=0.1, momentum=0.9), "RMSprop": dict(lr=0.1), "Adadelta": dict(lr=0.1)}


def lr_run(module, tensor_of, make, cls_name, steps=SCHED_STEPS, key=None):
    """The learning rates (and ``key``'s values) of two param groups after construction and after
    each step."""
    params = [tensor_of(a) for a in start_params(np.float32)]
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.02}]
    opt = getattr(module, cls_name)(groups, **OPTIONS.get(cls_name, dict(lr=0.01)))
    sched = make(module.lr_scheduler, opt)
    seq = [(list(sched.get_last_lr()), [g.get(key) for g in opt.param_groups] if key else None)]
    for _ in range(steps):
        opt.step()
        sched.step()
        seq.append((list(sched.get_last_lr()), [g.get(key) for g in opt.param_groups] if key else None))
    return seq, sched, opt


def deepkern_lr_run(make, cls_name, steps=SCHED_STEPS, key=None):
    return lr_run(optim, deepkern.nn.Parameter, make, cls_name, steps, key)


def torch_lr_run(make, cls_name, steps=SCHED_STEPS, key=None):
    torch = _torch()
    return lr_run(torch.optim, lambda a: torch.nn.Parameter(torch.from_numpy(a)), make, cls_name, steps, key)


# torch warns when a ChainedScheduler first in a SequentialLR steps its schedulers at construction
@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
@pytest.mark.parametrize("name, make, cls_name, key", SCHEDULERS, ids=SCHED_IDS)
def test_scheduler_matches_torch(name, make, cls_name, key):
    """The same floats as torch's at every step: learning rates, cycled momentum or beta1, and the
    group's lr the optimizer steps with."""
    theirs, _, _ = torch_lr_run(make, cls_name, key=key)
    ours, _, opt = deepkern_lr_run(make, cls_name, key=key)
    for t, (o, w) in enumerate(zip(ours, theirs)):
        assert o == w, (name, t)
    assert ours[-1][0] == [g["lr"] for g in opt.param_groups]
    assert any(lrs != [0.1, 0.02] for lrs, _ in ours), "the schedule should change the learning rates"


def closed_form(name, t, base):
    """The learning rate at step ``t`` for initial rate ``base`` (the schedules' definitions)."""
    if name == "constant":
        return base / 3 if t < 5 else base
    if name == "constant-factor":
        return base * 0.5 if t < 10 else base
    if name == "polynomial-power":
        return base * (1 - min(t, 30) / 30) ** 2
    if name == "multiplicative":
        return base * 0.95**t
    if name == "cyclic":  # lr 0.01..0.1 on both groups (base_lr replaces the groups' lrs)
        x = t % 8
        return 0.01 + 0.09 * (x / 4 if x <= 4 else (8 - x) / 4)
    if name == "chained":
        return base * (0.1 if t < 20 else 1.0) * 0.9**t
    if name == "sequential-constant-exponential":
        return base * 0.1 if t < 20 else base * 0.9 ** (t - 20)
    raise KeyError(name)


@pytest.mark.parametrize(
    "name",
    [
        "constant",
        "constant-factor",
        "polynomial-power",
        "multiplicative",
        "cyclic",
        "chained",
        "sequential-constant-exponential",
    ],
)
def test_scheduler_follows_closed_form(name):
    make, cls_name = next((s[1], s[2]) for s in SCHEDULERS if s[0] == name)
    seq, _, _ = deepkern_lr_run(make, cls_name)
    for t, (lrs, _) in enumerate(seq):
        want = [closed_form(name, t, 0.1), closed_form(name, t, 0.02)]
        assert lrs == pytest.approx(want, rel=1e-12, abs=1e-15), (name, t)


def test_cyclic_modes_follow_closed_form_and_momentum_moves_inversely():
    """triangular2 halves the amplitude every cycle, exp_range scales it by gamma**iteration; the
    momentum is max_momentum minus the same fraction of its range."""
    for mode, scale in (("triangular2", lambda t, c: 0.5 ** (c - 1)), ("exp_range", lambda t, c: 0.9**t)):

        def make(m, o, mode=mode):
            return m.CyclicLR(o, 0.01, 0.11, step_size_up=3, step_size_down=2, mode=mode, gamma=0.9)

        seq, _, _ = deepkern_lr_run(make, "SGD", key="momentum")
        for t, (lrs, momentum) in enumerate(seq):
            cycle, x = 1 + t // 5, t % 5
            frac = (x / 3 if x <= 3 else (5 - x) / 2) * scale(t, cycle)
            assert lrs == pytest.approx([0.01 + 0.1 * frac] * 2, rel=1e-12, abs=1e-15), (mode, t)
            assert momentum == pytest.approx([0.9 - 0.1 * frac] * 2, rel=1e-12), (mode, t)


def test_closed_forms_by_epoch_match_torch():
    """step(epoch) (deprecated) uses ConstantLR's and PolynomialLR's closed forms, as torch."""
    epochs = [3, 0, 6, 7, 12, 10, 5, 40, 2, 6]  # total_iters (6 and 10) included
    for make in (
        lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=6),
        lambda m, o: m.PolynomialLR(o, total_iters=10, power=1.7),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = []
            for run in (torch_lr_run, deepkern_lr_run):
                _, sched, _ = run(make, "SGD", steps=3)
                seq = []
                for e in epochs:
                    sched.step(e)
                    seq.append(list(sched.get_last_lr()))
                out.append(seq)
        assert out[0] == out[1]


@pytest.mark.parametrize("name, make, cls_name, key", SCHEDULERS, ids=SCHED_IDS)
def test_scheduler_state_dict_round_trip(name, make, cls_name, key, tmp_path):
    """A new optimizer and scheduler loaded from state dicts written by deepkern.save continue the
    same sequence (with the same functions; a callable object's attributes are saved)."""
    whole, _, _ = deepkern_lr_run(make, cls_name, key=key)
    _, sched, opt = deepkern_lr_run(make, cls_name, steps=17, key=key)
    deepkern.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp_path / "ckpt.safetensors")
    saved = deepkern.load(tmp_path / "ckpt.safetensors")
    params = [deepkern.nn.Parameter(a) for a in start_params(np.float32)]
    opt2 = getattr(optim, cls_name)(
        [{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], **OPTIONS.get(cls_name, dict(lr=0.01))
    )
    sched2 = make(lr_scheduler, opt2)
    sched2.load_state_dict(saved["scheduler"])
    opt2.load_state_dict(saved["optimizer"])
    assert sched2.get_last_lr() == whole[17][0]
    for t in range(18, SCHED_STEPS + 1):
        opt2.step()
        sched2.step()
        assert (sched2.get_last_lr(), [g.get(key) for g in opt2.param_groups] if key else None) == whole[t], t


def test_callable_objects_state_is_saved_and_loaded():
    params = [deepkern.nn.Parameter(a) for a in start_params(np.float32)]
    opt = optim.SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1, momentum=0.9)
    ramp = Ramp(0.9)
    sched = lr_scheduler.MultiplicativeLR(opt, [decay, ramp])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [None, {"rate": 0.9}]
    state["lr_lambdas"][1] = {"rate": 0.5}
    sched.load_state_dict(state)
    assert ramp.rate == 0.5 and sched.lr_lambdas == [decay, ramp]
    scale = Ramp(0.8)
    cyclic = lr_scheduler.CyclicLR(opt, 0.01, 0.1, scale_fn=scale)
    state = cyclic.state_dict()
    assert state["_scale_fn_custom"] == {"rate": 0.8}
    state["_scale_fn_custom"] = {"rate": 0.3}
    cyclic.load_state_dict(state)
    assert scale.rate == 0.3 and state["_scale_fn_custom"] == {"rate": 0.3}  # the dict is left as it was
    assert lr_scheduler.CyclicLR(opt, 0.01, 0.1, scale_fn=lambda x: 1.0).state_dict()["_scale_fn_custom"] is None
    with raises_naming(ValueError, "scale_fn"):
        lr_scheduler.CyclicLR(opt, 0.01, 0.1).load_state_dict(dict(state))


def test_chained_scheduler_at_a_sequential_milestone_raises_as_torch():
    """A chain has no closed form to restart from at a milestone: torch raises NotImplementedError."""
    torch = _torch()
    results = []
    for module, tensor_of in (
        (torch.optim, lambda a: torch.nn.Parameter(torch.from_numpy(a))),
        (optim, deepkern.nn.Parameter),
    ):
        opt = module.SGD([tensor_of(start_params(np.float32)[0])], lr=0.1)
        m = module.lr_scheduler
        sched = m.SequentialLR(opt, [m.ExponentialLR(opt, 0.9), chained(m, opt)], milestones=[3])
        with pytest.raises(NotImplementedError):
            for _ in range(5):
                opt.step()
                sched.step()
        results.append(sched.last_epoch)
    assert results[0] == results[1] == 3


def test_scheduler_bad_arguments_raise_naming_them():
    params = [deepkern.nn.Parameter(a) for a in start_params(np.float32)]
    opt = optim.SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1, momentum=0.9)
    other = optim.SGD(params, lr=0.1)
    adagrad = optim.Adagrad(params)
    cases = [
        (ValueError, ["Constant multiplicative factor", "factor=1.5"], lambda: lr_scheduler.ConstantLR(opt, 1.5)),
        (ValueError, ["Constant multiplicative factor", "factor=-0.1"], lambda: lr_scheduler.ConstantLR(opt, -0.1)),
        (ValueError, ["Expected 2 lr_lambdas", "got 1"], lambda: lr_scheduler.MultiplicativeLR(opt, [decay])),
        (TypeError, ["lr_lambda should be a function", "float"], lambda: lr_scheduler.MultiplicativeLR(opt, 0.9)),
        (TypeError, ["is not an Optimizer"], lambda: lr_scheduler.MultiplicativeLR(object(), decay)),
        (TypeError, ["is not an Optimizer"], lambda: lr_scheduler.CyclicLR(object(), 0.01, 0.1)),
        (ValueError, ["mode is invalid", "'linear'"], lambda: lr_scheduler.CyclicLR(opt, 0.01, 0.1, mode="linear")),
        (
            ValueError,
            ["base_lr must have the same length", "3 values", "param_groups has 2"],
            lambda: lr_scheduler.CyclicLR(opt, [0.01] * 3, 0.1),
        ),
        (
            ValueError,
            ["max_momentum must have the same length", "1 values"],
            lambda: lr_scheduler.CyclicLR(opt, 0.01, 0.1, max_momentum=[0.9]),
        ),
        (ValueError, ["momentum or beta1", "cycle_momentum"], lambda: lr_scheduler.CyclicLR(adagrad, 0.01, 0.1)),
        (ValueError, ["at least one scheduler to be chained"], lambda: lr_scheduler.ChainedScheduler([])),
        (
            ValueError,
            ["ChainedScheduler expects all schedulers to belong to the same optimizer", "ExponentialLR at index 1"],
            lambda: lr_scheduler.ChainedScheduler(
                [lr_scheduler.ConstantLR(opt), lr_scheduler.ExponentialLR(other, 0.9)]
            ),
        ),
        (
            ValueError,
            ["ChainedScheduler does not support `ReduceLROnPlateau`", "index 0"],
            lambda: lr_scheduler.ChainedScheduler([lr_scheduler.ReduceLROnPlateau(opt)], opt),
        ),
        (
            TypeError,
            ["ChainedScheduler at index 0 should have `optimizer`"],
            lambda: lr_scheduler.ChainedScheduler([object()], opt),
        ),
    ]
    for exc, needles, make in cases:
        with raises_naming(exc, *needles):
            make()
    # a mode that is not one of the three is fine with a scale_fn, as in torch; Adagrad without cycling
    lr_scheduler.CyclicLR(opt, 0.01, 0.1, mode="custom", scale_fn=decay)
    lr_scheduler.CyclicLR(adagrad, 0.01, 0.1, cycle_momentum=False)


def test_new_names_are_exported():
    for name in ("Adadelta", "Adamax", "ASGD", "Rprop"):
        assert name in optim.__all__ and issubclass(getattr(optim, name), optim.Optimizer)
    for name in ("ConstantLR", "PolynomialLR", "MultiplicativeLR", "CyclicLR", "ChainedScheduler"):
        assert name in lr_scheduler.__all__ and issubclass(getattr(lr_scheduler, name), lr_scheduler.LRScheduler)
    assert math.isclose(optim.Adadelta([deepkern.nn.Parameter(np.zeros(2))]).defaults["lr"], 1.0)
