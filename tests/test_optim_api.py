"""deepkern.optim (SGD, Adam, AdamW, RMSprop on the fused step kernels) and
deepkern.optim.lr_scheduler (StepLR, CosineAnnealingLR, OneCycleLR) against torch.optim, and
against float64 reference loops where torch is not installed (CI).

Trajectories: the parameters follow gradients from a fixed NumPy function of the parameters
(``grad_of``), computed by each run from its own parameters, for 100 steps.
"""

from __future__ import annotations

import copy
import functools
import math

import deepkern
import numpy as np
import pytest
from deepkern import optim
from deepkern.optim import lr_scheduler

from checks import raises_naming
from reference import adam_step_ref, rmsprop_step_ref, sgd_step_ref

try:
    import torch
except ImportError:  # CI: no torch; the float64 references still check the trajectories
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed: no torch.optim to compare with")

SHAPES = [(7,), (3, 5), (33,), (1,), (2, 3, 4)]
STEPS = 100


# -- problem: parameters and a gradient that is a fixed function of them -------------------------


def start_params(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def grad_of(i, p):
    """The gradient of parameter ``i`` at ``p`` (in p's dtype): a pull towards a fixed target plus
    a bounded wiggle, so the trajectory neither explodes nor settles at zero."""
    target = np.cos(np.arange(p.size, dtype=np.float64) + i).reshape(p.shape)
    return (0.5 * (p - target) + 0.1 * np.sin(3.0 * p)).astype(p.dtype)


def deepkern_params(arrays):
    return [deepkern.nn.Parameter(a.copy()) for a in arrays]


def set_grads(params, skip=()):
    for i, p in enumerate(params):
        p.grad = None if i in skip else deepkern.tensor(grad_of(i, p._array), dtype=p.dtype)


def run_deepkern(make, arrays, steps=STEPS, groups=None, skip=()):
    params = deepkern_params(arrays)
    opt = make(params if groups is None else groups(params))
    for _ in range(steps):
        set_grads(params, skip)
        opt.step()
    return [p._array for p in params], opt


def run_torch(make, arrays, steps=STEPS, groups=None, skip=()):
    params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    opt = make(params if groups is None else groups(params))
    for _ in range(steps):
        for i, p in enumerate(params):
            p.grad = None if i in skip else torch.from_numpy(grad_of(i, p.detach().numpy()))
        opt.step()
    return [p.detach().numpy() for p in params], opt


def assert_trajectories_close(got, want, rtol, atol, what=""):
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what}: parameter {i}")


# -- float64 reference loops: tests/reference.py's single steps, 100 times ---------------------------


def ref_sgd(ps, steps, **options):
    bufs = [None] * len(ps)
    for _ in range(steps):
        for i, p in enumerate(ps):
            ps[i], bufs[i] = sgd_step_ref(p, grad_of(i, p), bufs[i], first_step=bufs[i] is None, **options)
    return ps


def ref_adam(ps, steps, amsgrad=False, **options):
    m, v, vmax = ([np.zeros_like(p) for p in ps] for _ in range(3))
    for t in range(1, steps + 1):
        for i, p in enumerate(ps):
            ps[i], m[i], v[i], vmax[i] = adam_step_ref(
                p, grad_of(i, p), m[i], v[i], step=t, amsgrad=amsgrad, max_exp_avg_sq=vmax[i], **options
            )
    return ps


def ref_rmsprop(ps, steps, **options):
    sq, buf, gavg = ([np.zeros_like(p) for p in ps] for _ in range(3))
    for _ in range(steps):
        for i, p in enumerate(ps):
            ps[i], sq[i], buf[i], gavg[i] = rmsprop_step_ref(
                p, grad_of(i, p), sq[i], momentum_buffer=buf[i], grad_avg=gavg[i], **options
            )
    return ps


# One row per optimizer configuration: (name, class name, options, float64 reference).
CASES = [
    ("sgd", "SGD", dict(lr=0.05), ref_sgd),
    ("sgd-momentum", "SGD", dict(lr=0.05, momentum=0.9), ref_sgd),
    ("sgd-dampening-wd", "SGD", dict(lr=0.03, momentum=0.8, dampening=0.3, weight_decay=0.1), ref_sgd),
    ("sgd-nesterov-max", "SGD", dict(lr=0.005, momentum=0.9, nesterov=True, maximize=True), ref_sgd),
    ("adam", "Adam", dict(lr=0.01), ref_adam),
    ("adam-wd-amsgrad", "Adam", dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True), ref_adam),
    ("adam-maximize", "Adam", dict(lr=0.01, eps=1e-6, maximize=True), ref_adam),
    ("adamw", "AdamW", dict(lr=0.01), ref_adam),
    ("adamw-amsgrad", "AdamW", dict(lr=0.03, weight_decay=0.3, amsgrad=True, maximize=True), ref_adam),
    ("rmsprop", "RMSprop", dict(lr=0.01), ref_rmsprop),
    (
        "rmsprop-centered-momentum",
        "RMSprop",
        dict(lr=0.003, momentum=0.9, centered=True, weight_decay=0.05),
        ref_rmsprop,
    ),
    ("rmsprop-alpha-max", "RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-4, maximize=True), ref_rmsprop),
]
CASE_IDS = [c[0] for c in CASES]


def deepkern_maker(cls_name, options):
    return lambda params: getattr(optim, cls_name)(params, **options)


def torch_maker(cls_name, options):
    return lambda params: getattr(torch.optim, cls_name)(params, **options)


def ref_options(cls_name, options):
    return (
        dict(options, decoupled_weight_decay=True, weight_decay=options.get("weight_decay", 1e-2))
        if cls_name == "AdamW"
        else options
    )


# -- trajectories --------------------------------------------------------------------------------

# float32 against torch: the kernels perform torch's operations in torch's order, so most runs agree
# bit for bit (measured: <= 3e-7 relative, 2.4e-7 absolute on AVX-512). Where a kernel contracts a
# multiply-add into one FMA (or a narrower ISA does not) the two differ by ~1 ulp (6e-8) in that step;
# on these bounded trajectories such differences add up rather than grow: <= 100 steps x 1 ulp = 6e-6
# relative. atol covers values that pass near zero, where the same absolute error is a large relative one.
F32_RTOL, F32_ATOL = 1e-5, 1e-6
# float32 against the float64 reference: float32 rounding of every stored value, amplified by the
# adaptive methods' division by sqrt(v) where v is small (measured: <= 2.4e-5 relative away from zero).
F32_F64_RTOL, F32_F64_ATOL = 1e-4, 1e-5


@needs_torch
@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=CASE_IDS)
def test_trajectory_matches_torch(name, cls_name, options, ref):
    arrays = start_params(np.float32)
    got, _ = run_deepkern(deepkern_maker(cls_name, options), arrays)
    want, _ = run_torch(torch_maker(cls_name, options), arrays)
    assert_trajectories_close(got, want, F32_RTOL, F32_ATOL, name)
    moved = max(float(np.max(np.abs(w - a))) for w, a in zip(want, arrays))
    assert moved > 0.05, "the problem should move the parameters"


@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=CASE_IDS)
def test_trajectory_matches_float64_reference(name, cls_name, options, ref):
    """Runs without torch: deepkern in float64 follows the written-out algorithm to 1e-12."""
    arrays = start_params(np.float64)
    got, _ = run_deepkern(deepkern_maker(cls_name, options), arrays)
    want = ref([a.copy() for a in arrays], STEPS, **ref_options(cls_name, options))
    assert_trajectories_close(got, want, 1e-12, 1e-13, name)


@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=CASE_IDS)
def test_float32_trajectory_near_float64_reference(name, cls_name, options, ref):
    """Runs without torch: float32 stays within float32 rounding (see F32_RTOL) of float64."""
    arrays = start_params(np.float32)
    got, _ = run_deepkern(deepkern_maker(cls_name, options), arrays)
    want = ref([a.astype(np.float64) for a in arrays], STEPS, **ref_options(cls_name, options))
    assert_trajectories_close(got, [w.astype(np.float32) for w in want], F32_F64_RTOL, F32_F64_ATOL, name)


def two_groups(params):
    """Groups with different options (the second overrides lr and more)."""
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.005, "weight_decay": 0.2}]


@needs_torch
@pytest.mark.parametrize(
    "cls_name, options",
    [
        ("SGD", dict(lr=0.05, momentum=0.9)),
        ("Adam", dict(lr=0.01, amsgrad=True)),
        ("AdamW", dict(lr=0.01)),
        ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ],
)
def test_param_groups_with_different_options_match_torch(cls_name, options):
    arrays = start_params(np.float32)
    got, opt = run_deepkern(deepkern_maker(cls_name, options), arrays, groups=two_groups)
    want, topt = run_torch(torch_maker(cls_name, options), arrays, groups=two_groups)
    assert_trajectories_close(got, want, F32_RTOL, F32_ATOL, cls_name)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
    assert opt.param_groups[1]["weight_decay"] == 0.2
    assert opt.param_groups[0]["weight_decay"] == topt.param_groups[0]["weight_decay"]


def test_param_groups_with_different_options_float64():
    arrays = start_params(np.float64)
    got, _ = run_deepkern(deepkern_maker("SGD", dict(lr=0.05, momentum=0.9)), arrays, groups=two_groups)
    first = ref_sgd([a.copy() for a in arrays[:2]], STEPS, lr=0.05, momentum=0.9)
    # ref_sgd numbers parameters from 0; the second group's gradients use their global index
    second = [a.copy() for a in arrays[2:]]
    bufs = [None] * len(second)
    for _ in range(STEPS):
        for k, p in enumerate(second):
            second[k], bufs[k] = sgd_step_ref(
                p, grad_of(k + 2, p), bufs[k], first_step=bufs[k] is None, lr=0.005, momentum=0.9, weight_decay=0.2
            )
    assert_trajectories_close(got, first + second, 1e-12, 1e-13, "two groups")


@pytest.mark.parametrize(
    "cls_name, options",
    [
        ("SGD", dict(lr=0.05, momentum=0.9)),
        ("Adam", dict(lr=0.01)),
        ("RMSprop", dict(lr=0.01, momentum=0.5)),
    ],
)
def test_params_without_grad_are_skipped(cls_name, options):
    arrays = start_params(np.float32)
    got, opt = run_deepkern(deepkern_maker(cls_name, options), arrays, steps=10, skip={1, 3})
    for i in (1, 3):
        np.testing.assert_array_equal(got[i], arrays[i])
    params = opt.param_groups[0]["params"]
    assert params[1] not in opt.state and params[3] not in opt.state
    assert len(opt.state_dict()["state"]) == len(SHAPES) - 2
    if torch is not None:
        want, _ = run_torch(torch_maker(cls_name, options), arrays, steps=10, skip={1, 3})
        assert_trajectories_close(got, want, F32_RTOL, F32_ATOL, cls_name)


@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=CASE_IDS)
def test_strided_parameters_and_gradients_step_like_contiguous_ones(name, cls_name, options, ref):
    """A parameter made from a transposed or sliced array (and a strided gradient) steps on a
    contiguous copy written back into its own memory: the trajectory equals the contiguous run's bit
    for bit, and the parameter's memory (a view of ``owner``) is what changes."""
    arrays = start_params()
    want, _ = run_deepkern(deepkern_maker(cls_name, options), arrays, steps=5)
    owners = [np.zeros(a.shape[::-1] + (2,), a.dtype) for a in arrays]
    for owner, a in zip(owners, arrays):
        owner[..., 1] = a.T
    params = [deepkern.nn.Parameter(deepkern.from_numpy(owner[..., 1].T)) for owner in owners]
    assert not any(p.is_contiguous() for p in params if p.numel() > 1)
    opt = deepkern_maker(cls_name, options)(params)
    for _ in range(5):
        for i, p in enumerate(params):
            g = grad_of(i, p.detach().numpy())
            p.grad = deepkern.from_numpy(np.asfortranarray(g))  # strided where it has 2+ dimensions
        opt.step()
    for i, (p, owner) in enumerate(zip(params, owners)):
        np.testing.assert_array_equal(p.detach().numpy(), want[i], err_msg=f"{name}: parameter {i}")
        np.testing.assert_array_equal(owner[..., 1].T, want[i])
        assert owner[..., 0].sum() == 0  # nothing written beside it


@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=CASE_IDS)
def test_bfloat16_parameters_step_on_float32_copies(name, cls_name, options, ref):
    """A bfloat16 parameter (a model after Module.bfloat16()) steps as a float32 copy rounded back to
    bfloat16 after every step, with float32 state: bit for bit a float32 run whose parameters and
    gradients are rounded to bfloat16 at each step. A strided bfloat16 parameter steps the same."""
    bf16 = deepkern.bfloat16
    arrays = [a.astype(bf16) for a in start_params()]
    params = [deepkern.nn.Parameter(a.copy()) for a in arrays[:-1]]
    owner = np.zeros(arrays[-1].shape[::-1], bf16)
    owner[...] = arrays[-1].T
    params.append(deepkern.nn.Parameter(deepkern.from_numpy(owner).T))  # strided
    wide = [deepkern.nn.Parameter(a.astype(np.float32)) for a in arrays]
    opt, wide_opt = deepkern_maker(cls_name, options)(params), deepkern_maker(cls_name, options)(wide)
    for _ in range(20):
        for i, (p, w) in enumerate(zip(params, wide)):
            g = grad_of(i, p.detach().numpy().astype(np.float32)).astype(bf16)
            p.grad, w.grad = deepkern.from_numpy(g), deepkern.from_numpy(g.astype(np.float32))
        opt.step()
        wide_opt.step()
        for w in wide:
            w._array[...] = w._array.astype(bf16).astype(np.float32)
    for i, (p, w) in enumerate(zip(params, wide)):
        assert p.dtype == bf16
        np.testing.assert_array_equal(p.detach().numpy().astype(np.float32), w._array, err_msg=f"{name}: parameter {i}")
        assert all(v.dtype == np.float32 for v in opt.state[p].values() if isinstance(v, deepkern.Tensor))
    np.testing.assert_array_equal(owner.T, params[-1].detach().numpy())


def test_step_with_no_grads_does_nothing():
    params = deepkern_params(start_params())
    opt = optim.Adam(params)
    opt.step()
    assert len(opt.state) == 0


def test_mixed_dtypes_in_one_group():
    arrays = [a.astype(np.float64) if i % 2 else a for i, a in enumerate(start_params())]
    got, opt = run_deepkern(deepkern_maker("Adam", dict(lr=0.01)), arrays, steps=5)
    assert [g.dtype for g in got] == [a.dtype for a in arrays]
    assert all(opt.state[p]["exp_avg"].dtype == p.dtype for p in opt.param_groups[0]["params"])


# -- step(closure), zero_grad --------------------------------------------------------------------


def test_step_closure_runs_with_grad_enabled_and_returns_loss():
    w = deepkern.nn.Parameter(np.array([1.0, -2.0], np.float32))
    opt = optim.SGD([w], lr=0.1)
    seen = []

    def closure():
        opt.zero_grad()
        seen.append(deepkern.is_grad_enabled())
        loss = (w * w).sum()
        loss.backward()
        return loss

    with deepkern.no_grad():
        loss = opt.step(closure)
    assert seen == [True]
    assert float(loss) == pytest.approx(5.0)
    np.testing.assert_allclose(w._array, [0.8, -1.6], rtol=1e-6)
    assert opt.step() is None


def test_zero_grad_set_to_none_and_to_zero():
    params = deepkern_params(start_params())
    opt = optim.SGD(params, lr=0.1)
    set_grads(params)
    opt.zero_grad(set_to_none=False)
    for p in params:
        assert p.grad is not None and p.grad.shape == p.shape and not np.any(p.grad._array)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    opt.zero_grad(set_to_none=False)  # grads that are None stay None
    assert all(p.grad is None for p in params)


@needs_torch
def test_zero_grad_to_zero_still_steps_like_torch():
    """A zero gradient is a step (momentum and Adam's moments go on), a None gradient is not."""
    arrays = start_params()
    params = deepkern_params(arrays)
    tparams = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    opt, topt = optim.Adam(params, lr=0.01), torch.optim.Adam(tparams, lr=0.01)
    for step in range(6):
        set_grads(params)
        for i, p in enumerate(tparams):
            p.grad = torch.from_numpy(grad_of(i, p.detach().numpy()))
        if step % 2:
            opt.zero_grad(set_to_none=False)
            topt.zero_grad(set_to_none=False)
        opt.step()
        topt.step()
    assert_trajectories_close(
        [p._array for p in params], [p.detach().numpy() for p in tparams], F32_RTOL, F32_ATOL, "zeroed grads"
    )
    assert opt.state[params[0]]["step"] == 6.0


# -- construction, param groups, bad input --------------------------------------------------------


def test_defaults_and_group_options_follow_torch():
    p = [deepkern.nn.Parameter(np.zeros(3, np.float32))]
    assert optim.SGD(p).defaults["lr"] == 1e-3
    assert optim.Adam(p).defaults["betas"] == (0.9, 0.999)
    assert optim.AdamW(p).defaults["weight_decay"] == 1e-2
    assert optim.AdamW(p).defaults["decoupled_weight_decay"] is True
    assert optim.RMSprop(p).defaults["lr"] == 1e-2
    assert optim.RMSprop(p).defaults["alpha"] == 0.99
    if torch is not None:
        tp = [torch.nn.Parameter(torch.zeros(3))]
        for name in ("SGD", "Adam", "AdamW", "RMSprop"):
            ours = getattr(optim, name)(p).param_groups[0]
            theirs = getattr(torch.optim, name)(tp).param_groups[0]
            for key, value in ours.items():
                if key != "params":
                    assert theirs[key] == value, (name, key)


def test_params_as_named_pairs_and_generators():
    model = deepkern.nn.Module()
    model.w = deepkern.nn.Parameter(np.ones(2, np.float32))
    model.b = deepkern.nn.Parameter(np.ones(1, np.float32))
    opt = optim.SGD(model.parameters(), lr=0.1)
    group = opt.param_groups[0]["params"]
    assert len(group) == 2 and group[0] is model.w and group[1] is model.b
    named = optim.Adam(model.named_parameters())
    assert named.param_groups[0]["param_names"] == ["w", "b"]
    assert named.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]


def test_add_param_group():
    a, b = deepkern_params(start_params()[:2])
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert len(opt.param_groups) == 2
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["momentum"] == 0.9
    assert opt.param_groups[1]["params"][0] is b
    with raises_naming(ValueError, "more than one parameter group"):
        opt.add_param_group({"params": [a]})


@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda p: optim.SGD(p, lr=-1), ["Invalid learning rate: -1"]),
        (lambda p: optim.SGD(p, momentum=-0.5), ["Invalid momentum value: -0.5"]),
        (lambda p: optim.SGD(p, weight_decay=-1e-4), ["Invalid weight_decay value"]),
        (lambda p: optim.SGD(p, nesterov=True), ["Nesterov momentum requires a momentum and zero dampening"]),
        (lambda p: optim.SGD(p, momentum=0.9, dampening=0.1, nesterov=True), ["Nesterov"]),
        (lambda p: optim.Adam(p, lr=-0.01), ["Invalid learning rate: -0.01"]),
        (lambda p: optim.Adam(p, betas=(1.0, 0.999)), ["Invalid beta parameter at index 0: 1.0"]),
        (lambda p: optim.Adam(p, betas=(0.9, -0.1)), ["Invalid beta parameter at index 1: -0.1"]),
        (lambda p: optim.AdamW(p, eps=-1e-8), ["Invalid epsilon value"]),
        (lambda p: optim.AdamW(p, weight_decay=-1), ["Invalid weight_decay value: -1"]),
        (lambda p: optim.RMSprop(p, alpha=-0.9), ["Invalid alpha value: -0.9"]),
        (lambda p: optim.RMSprop(p, momentum=-1), ["Invalid momentum value"]),
        (lambda p: optim.SGD([], lr=0.1), ["empty parameter list"]),
    ],
)
def test_bad_hyperparameters_raise_naming_them(make, needles):
    params = deepkern_params(start_params()[:1])
    with raises_naming(ValueError, *needles):
        make(params)


def test_bad_params_raise():
    p = deepkern.nn.Parameter(np.ones(3, np.float32))
    with raises_naming(TypeError, "iterable of Tensors or dicts"):
        optim.SGD(p)
    with raises_naming(TypeError, "only optimize Tensors", "ndarray"):
        optim.SGD([np.ones(3, np.float32)])
    with raises_naming(TypeError, "ordered collections"):
        optim.SGD([{"params": {p}}])
    with raises_naming(ValueError, "non-leaf"):
        optim.SGD([p * 2])
    with raises_naming(ValueError, "more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}])


# -- state dicts ---------------------------------------------------------------------------------

RESUME_CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
]


def resumed_run(make, arrays, through=lambda sd: sd, groups=two_groups):
    """Half the steps, state_dict -> ``through`` -> a fresh optimizer on copies of the params ->
    load_state_dict -> the other half."""
    first, opt = run_deepkern(make, arrays, steps=STEPS // 2, groups=groups)
    saved = through(opt.state_dict())
    params = deepkern_params(first)
    fresh = make(groups(params))
    fresh.load_state_dict(saved)
    for _ in range(STEPS - STEPS // 2):
        set_grads(params)
        fresh.step()
    return [p._array for p in params], fresh


@pytest.mark.parametrize("cls_name, options", RESUME_CASES)
def test_state_dict_resume_equals_uninterrupted_run(cls_name, options):
    arrays = start_params()
    make = deepkern_maker(cls_name, options)
    whole, opt = run_deepkern(make, arrays, groups=two_groups)
    resumed, fresh = resumed_run(make, arrays)
    for w, r in zip(whole, resumed):
        np.testing.assert_array_equal(r, w)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for index, entry in a["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(np.asarray(b["state"][index][key]), np.asarray(value))


def test_state_dict_layout_and_copies():
    params = deepkern_params(start_params())
    opt = optim.Adam(two_groups(params), lr=0.01, amsgrad=True)
    set_grads(params, skip={3})
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2, 3, 4]]
    assert sorted(sd["state"]) == [0, 1, 2, 4]
    assert list(sd["state"][0]) == ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    assert sd["state"][0]["step"] == 1.0
    assert sd["param_groups"][1]["lr"] == 0.005 and sd["param_groups"][1]["betas"] == (0.9, 0.999)
    before = sd["state"][0]["exp_avg"].numpy().copy()
    set_grads(params)
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"].numpy(), before)  # a copy, not the live state
    sd["param_groups"][0]["lr"] = 123.0
    assert opt.param_groups[0]["lr"] == 0.01


def test_load_state_dict_copies_and_casts():
    params = deepkern_params(start_params())
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    set_grads(params)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["momentum_buffer"] = sd["state"][0]["momentum_buffer"].numpy().astype(np.float64)
    fresh = optim.SGD(params, lr=0.5, momentum=0.9)
    fresh.load_state_dict(sd)
    buf = fresh.state[params[0]]["momentum_buffer"]
    assert isinstance(buf, deepkern.Tensor) and buf.dtype == np.float32
    assert not np.shares_memory(buf._array, sd["state"][0]["momentum_buffer"])
    assert fresh.param_groups[0]["lr"] == 0.1 and fresh.param_groups[0]["params"] is not sd["param_groups"][0]["params"]


@pytest.mark.parametrize(
    "cls_name, missing", [("Adam", "decoupled_weight_decay"), ("SGD", "maximize"), ("RMSprop", "maximize")]
)
def test_load_state_dict_fills_options_it_lacks_from_the_defaults(cls_name, missing):
    """A state dict from before an option existed loads, and the option takes the optimizer's default
    (PyTorch's behaviour): the next step runs as with a complete state dict."""
    want, full_opt = run_deepkern(deepkern_maker(cls_name, dict(lr=0.1)), start_params(), steps=3)
    state = full_opt.state_dict()
    for group in state["param_groups"]:
        del group[missing]
    got, opt = run_deepkern(deepkern_maker(cls_name, dict(lr=0.1)), start_params(), steps=2)
    opt.load_state_dict(copy.deepcopy(full_opt.state_dict()) | {"param_groups": state["param_groups"]})
    assert opt.param_groups[0][missing] == opt.defaults[missing]
    params = opt.param_groups[0]["params"]
    set_grads(params)
    opt.step()
    assert all(p._array.dtype == np.float32 for p in params)


@pytest.mark.parametrize(
    "source, target", [("SGD", "Adam"), ("Adam", "RMSprop"), ("RMSprop", "Adagrad"), ("NAdam", "SGD")]
)
def test_load_state_dict_refuses_another_optimizers_state(source, target):
    """An SGD-momentum state dict loaded into Adam had its buffers kept beside fresh moments, silently."""
    options = {"SGD": dict(lr=0.1, momentum=0.9), "RMSprop": dict(lr=0.01, momentum=0.5, centered=True)}
    _, opt = run_deepkern(deepkern_maker(source, options.get(source, dict(lr=0.01))), start_params(), steps=2)
    fresh = deepkern_maker(target, dict(lr=0.01))(deepkern_params(start_params()))
    with raises_naming(ValueError, "load_state_dict", target, "another optimizer"):
        fresh.load_state_dict(opt.state_dict())


def test_load_state_dict_rejects_mismatches_naming_sizes():
    params = deepkern_params(start_params())
    opt = optim.Adam(two_groups(params))
    set_grads(params)
    opt.step()
    sd = opt.state_dict()
    with raises_naming(ValueError, "number of parameter groups", "2", "1"):
        optim.Adam(params).load_state_dict(sd)
    with raises_naming(
        ValueError, "doesn't match the size", "group 0 has 2 parameters in the state dict, 3 in the optimizer"
    ):
        optim.Adam([{"params": params[:3]}, {"params": params[3:]}]).load_state_dict(sd)
    bad = copy.deepcopy(sd)
    bad["state"][1]["exp_avg"] = np.zeros((5, 3), np.float32)
    target = optim.Adam(two_groups(params))
    with raises_naming(ValueError, r"state\[1\]\['exp_avg'\]", r"\(5, 3\)", r"\(3, 5\)"):
        target.load_state_dict(bad)
    assert len(target.state) == 0  # nothing loaded


def test_state_dict_through_deepkern_save_and_load(tmp_path):
    if not hasattr(deepkern, "save"):
        pytest.skip("deepkern.save/load (branch `data`) is not merged yet")
    make = deepkern_maker("Adam", dict(lr=0.01, amsgrad=True))
    arrays = start_params()
    whole, _ = run_deepkern(make, arrays, groups=two_groups)

    def through_file(sd):
        path = tmp_path / "optim.safetensors"
        deepkern.save(sd, path)
        return deepkern.load(path)

    resumed, _ = resumed_run(make, arrays, through=through_file)
    for w, r in zip(whole, resumed):
        np.testing.assert_array_equal(r, w)


@needs_torch
def test_loads_torch_state_dict_and_continues_like_torch():
    cls_name, options = "Adam", dict(lr=0.01, amsgrad=True)
    arrays = start_params()
    first, topt = run_torch(torch_maker(cls_name, options), arrays, steps=30)
    params = deepkern_params(first)
    opt = optim.Adam(params, **options)
    opt.load_state_dict(topt.state_dict())  # torch tensors, torch's extra group options
    assert opt.state[params[0]]["step"] == 30.0
    tparams = topt.param_groups[0]["params"]
    for _ in range(20):
        set_grads(params)
        for i, p in enumerate(tparams):
            p.grad = torch.from_numpy(grad_of(i, p.detach().numpy()))
        opt.step()
        topt.step()
    assert_trajectories_close(
        [p._array for p in params], [p.detach().numpy() for p in tparams], F32_RTOL, F32_ATOL, "from torch's state dict"
    )


# -- learning-rate schedulers ----------------------------------------------------------------------


def lr_sequences(make_sched, cls_name="SGD", options=None, steps=40, groups=True, key=None):
    """The learning rates (and ``key``'s values, e.g. momentum) of every group after each step,
    for deepkern and (when installed) torch."""
    options = options or dict(lr=0.1, momentum=0.9)

    def run(module, tensor_of):
        params = [tensor_of(a) for a in start_params()[:3]]
        groups_ = [{"params": params[:1]}, {"params": params[1:], "lr": 0.02}] if groups else params
        opt = getattr(module, cls_name)(groups_, **options)
        sched = make_sched(module.lr_scheduler, opt)
        seq = [(sched.get_last_lr(), [g.get(key) for g in opt.param_groups] if key else None)]
        for _ in range(steps):
            opt.step()
            sched.step()
            seq.append((list(sched.get_last_lr()), [g.get(key) for g in opt.param_groups] if key else None))
        return seq, sched, opt

    ours = run(optim_module, lambda a: deepkern.nn.Parameter(a))
    theirs = run(torch.optim, lambda a: torch.nn.Parameter(torch.from_numpy(a))) if torch is not None else None
    return ours, theirs


class _OptimModule:
    """``deepkern.optim`` seen with the attributes lr_sequences uses."""

    SGD, Adam, AdamW, RMSprop, lr_scheduler = optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, lr_scheduler


optim_module = _OptimModule

SCHEDULERS = [
    ("step", lambda m, o: m.StepLR(o, step_size=7, gamma=0.5), "SGD", None, None),
    ("cosine", lambda m, o: m.CosineAnnealingLR(o, T_max=12, eta_min=0.001), "SGD", None, None),
    ("cosine-no-min", lambda m, o: m.CosineAnnealingLR(o, T_max=5), "Adam", dict(lr=0.01), None),
    ("onecycle-cos", lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=40), "SGD", None, "momentum"),
    (
        "onecycle-linear",
        lambda m, o: m.OneCycleLR(
            o, max_lr=[0.5, 0.2], epochs=4, steps_per_epoch=10, anneal_strategy="linear", pct_start=0.25
        ),
        "SGD",
        None,
        "momentum",
    ),
    (
        "onecycle-three-phase",
        lambda m, o: m.OneCycleLR(
            o, max_lr=0.3, total_steps=40, three_phase=True, div_factor=10.0, final_div_factor=100.0
        ),
        "RMSprop",
        dict(lr=0.01, momentum=0.5),
        "momentum",
    ),
    (
        "onecycle-betas",
        lambda m, o: m.OneCycleLR(o, max_lr=0.01, total_steps=40, base_momentum=0.8, max_momentum=0.9),
        "Adam",
        dict(lr=0.01),
        "betas",
    ),
    (
        "onecycle-no-momentum",
        lambda m, o: m.OneCycleLR(o, max_lr=0.01, total_steps=40, cycle_momentum=False),
        "AdamW",
        dict(lr=0.01),
        "betas",
    ),
]


@needs_torch
@pytest.mark.parametrize("name, make, cls_name, options, key", SCHEDULERS, ids=[s[0] for s in SCHEDULERS])
def test_scheduler_matches_torch(name, make, cls_name, options, key):
    (ours, sched, opt), (theirs, tsched, _) = lr_sequences(make, cls_name, options, key=key)
    assert ours == theirs  # same formulas in the same order: equal floats
    assert sched.last_epoch == tsched.last_epoch == 40
    assert sched.base_lrs == tsched.base_lrs
    assert ours[-1][0] == [g["lr"] for g in opt.param_groups]


def test_step_lr_and_cosine_values():
    (seq, sched, _), _ = lr_sequences(lambda m, o: m.StepLR(o, step_size=7, gamma=0.5))
    lrs = [s[0][0] for s in seq]
    assert lrs[:7] == [0.1] * 7 and lrs[7] == 0.05 and lrs[14] == 0.025
    (seq, _, _), _ = lr_sequences(lambda m, o: m.CosineAnnealingLR(o, T_max=12, eta_min=0.001), steps=30)
    for t, (lr, _) in enumerate(seq):  # the recursion follows the closed form (also past T_max)
        assert lr[0] == pytest.approx(0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 12)) / 2, abs=1e-12)
        assert lr[1] == pytest.approx(0.001 + (0.02 - 0.001) * (1 + math.cos(math.pi * t / 12)) / 2, abs=1e-12)


def test_one_cycle_phases():
    (seq, _, opt), _ = lr_sequences(
        lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=40), key="momentum", steps=39, groups=False
    )
    lrs = [s[0][0] for s in seq]
    moms = [s[1][0] for s in seq]
    peak = int(np.argmax(lrs))
    assert peak == 11 and lrs[peak] == pytest.approx(0.5)  # pct_start 0.3 of 40 steps: the peak at step 11
    assert lrs[0] == pytest.approx(0.5 / 25) and lrs[-1] == pytest.approx(0.5 / 25 / 1e4)
    assert moms[0] == pytest.approx(0.95) and moms[peak] == pytest.approx(0.85) and moms[-1] == pytest.approx(0.95)
    assert opt.param_groups[0]["max_lr"] == 0.5
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=40)
    for _ in range(40):
        sched.step()
    with raises_naming(ValueError, "Tried to step 41 times", "total steps is 40"):
        sched.step()


@pytest.mark.parametrize("name, make, cls_name, options, key", SCHEDULERS, ids=[s[0] for s in SCHEDULERS])
def test_scheduler_state_dict_round_trip(name, make, cls_name, options, key, tmp_path):
    """Resuming: a new optimizer and scheduler loaded from state dicts (and through deepkern.save
    when it exists) continue the same sequence."""
    (whole, _, _), _ = lr_sequences(make, cls_name, options, key=key)
    params = deepkern_params(start_params()[:3])
    groups = [{"params": params[:1]}, {"params": params[1:], "lr": 0.02}]
    opt = getattr(optim, cls_name)(groups, **(options or dict(lr=0.1, momentum=0.9)))
    sched = make(lr_scheduler, opt)
    for _ in range(17):
        opt.step()
        sched.step()
    saved = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    if hasattr(deepkern, "save"):
        deepkern.save(saved, tmp_path / "ckpt.safetensors")
        saved = deepkern.load(tmp_path / "ckpt.safetensors")
    groups2 = [{"params": params[:1]}, {"params": params[1:], "lr": 0.02}]
    opt2 = getattr(optim, cls_name)(groups2, **(options or dict(lr=0.1, momentum=0.9)))
    sched2 = make(lr_scheduler, opt2)
    sched2.load_state_dict(saved["scheduler"])
    opt2.load_state_dict(saved["optimizer"])
    assert sched2.get_last_lr() == whole[17][0]
    for t in range(18, 41):
        opt2.step()
        sched2.step()
        assert sched2.get_last_lr() == whole[t][0], t
        if key:
            assert [g.get(key) for g in opt2.param_groups] == whole[t][1]


def test_scheduler_bad_input():
    opt = optim.SGD(deepkern_params(start_params()[:2]), lr=0.1)
    with raises_naming(TypeError, "is not an Optimizer"):
        lr_scheduler.StepLR(object(), step_size=2)
    with raises_naming(KeyError, "initial_lr", r"param_groups\[0\]"):
        lr_scheduler.StepLR(opt, step_size=2, last_epoch=3)
    with raises_naming(ValueError, "total_steps OR"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1)
    with raises_naming(ValueError, "positive integer total_steps", "-5"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=-5)
    with raises_naming(ValueError, "anneal_strategy", "'exp'"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10, anneal_strategy="exp")
    with raises_naming(ValueError, "pct_start", "1.5"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10, pct_start=1.5)
    with raises_naming(ValueError, "max_lr must have the same length", "2 values", "1"):
        lr_scheduler.OneCycleLR(optim.SGD(deepkern_params(start_params()[:1])), max_lr=[0.1, 0.2], total_steps=10)
    with raises_naming(ValueError, "momentum or beta1"):
        lr_scheduler.OneCycleLR(_NoMomentum(deepkern_params(start_params()[:1])), max_lr=0.1, total_steps=10)


class _NoMomentum(optim.Optimizer):
    def __init__(self, params):
        super().__init__(params, {"lr": 0.1})


def test_failed_step_leaves_state_as_it_was():
    params = deepkern_params(start_params()[:2])
    for cls_name, options in RESUME_CASES:
        opt = deepkern_maker(cls_name, options)(params)
        set_grads(params)
        # A gradient of another dtype than its parameter's (the .grad setter refuses one, so it goes in underneath).
        params[1].grad._array = np.zeros(params[1].shape, np.float64)
        before = [p._array.copy() for p in params]
        with raises_naming(TypeError, "float64", "float32"):
            opt.step()
        assert all(len(opt.state[p]) == 0 or opt.state[p].get("step", 0.0) == 0.0 for p in params), cls_name
        assert all("momentum_buffer" not in opt.state[p] for p in params if cls_name == "SGD")
        for p, b in zip(params, before):
            np.testing.assert_array_equal(p._array, b)


# -- options and parameters PyTorch takes --------------------------------------------------------

ALL_OPTIMIZERS = [
    ("SGD", dict(momentum=0.9, weight_decay=0.1)),
    ("Adam", dict(weight_decay=0.1)),
    ("AdamW", dict()),
    ("RMSprop", dict(momentum=0.5)),
    ("Adagrad", dict(weight_decay=0.1)),
    ("NAdam", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(weight_decay=0.1, decoupled_weight_decay=True)),
]


@pytest.mark.parametrize("cls_name, options", ALL_OPTIMIZERS, ids=[c[0] for c in ALL_OPTIMIZERS])
def test_tensor_options_step_as_their_numbers(cls_name, options):
    """``lr`` (and betas) given as 0-d Tensors, as PyTorch takes them, step exactly as the numbers:
    the NumPy-rule optimizers had left the parameters unchanged, the fused ones raised at step()."""
    cls = getattr(optim, cls_name)
    scalar = functools.partial(deepkern.tensor, dtype=deepkern.float64)  # holds the number exactly
    numbers = dict(options, lr=0.01)
    tensors = dict(options, lr=scalar(0.01))
    if cls_name in ("Adam", "NAdam"):
        numbers["betas"], tensors["betas"] = (0.8, 0.99), (scalar(0.8), scalar(0.99))
    want, _ = run_deepkern(lambda p: cls(p, **numbers), start_params(), steps=5)
    got, _ = run_deepkern(lambda p: cls(p, **tensors), start_params(), steps=5)
    for g, w, start in zip(got, want, start_params()):
        np.testing.assert_array_equal(g, w)
        assert not np.array_equal(g, start)


@pytest.mark.parametrize("cls_name, options", ALL_OPTIMIZERS, ids=[c[0] for c in ALL_OPTIMIZERS])
def test_gradient_sharing_the_parameters_memory_steps_as_a_copy(cls_name, options):
    """``p.grad = p.detach()`` (the gradient is the parameter's own memory, which PyTorch steps) steps
    on a copy of the gradient taken before the step, as a separate gradient of those values would."""
    cls = getattr(optim, cls_name)
    shared, copied = deepkern_params(start_params()[:2]), deepkern_params(start_params()[:2])
    opt_shared, opt_copied = cls(shared, lr=0.1, **options), cls(copied, lr=0.1, **options)
    for _ in range(3):
        for p, q in zip(shared, copied):
            p.grad, q.grad = p.detach(), q.detach().clone()
        opt_shared.step()
        opt_copied.step()
    for p, q, start in zip(shared, copied, start_params()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
        assert not np.array_equal(p.detach().numpy(), start)


def test_sgd_group_without_momentum_ignores_nesterov():
    """PyTorch checks Nesterov's needs on the defaults only; a group with momentum 0 under Nesterov
    defaults steps as plain SGD."""
    a, b = deepkern_params(start_params()[:2])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "momentum": 0}], lr=0.1, momentum=0.9, nesterov=True)
    b_start = b.detach().numpy().copy()
    set_grads([a, b])
    g = b.grad.numpy().copy()
    opt.step()
    np.testing.assert_array_equal(b.detach().numpy(), b_start - np.float32(0.1) * g)


def test_complex_parameters_are_refused():
    """The steps compute on real arrays: a complex parameter (its imaginary part had been dropped)
    is a TypeError naming the dtype."""
    p = deepkern.nn.Parameter(deepkern.tensor(np.array([1 + 2j, 3 - 1j], np.complex64)))
    for cls in (optim.SGD, optim.Adam, optim.Adagrad):
        with raises_naming(TypeError, "complex", "complex64"):
            cls([p], lr=0.1)
