"""deepkern.optim's NumPy-rule optimizers (Adagrad, NAdam, RAdam, LBFGS) against torch.optim from
the same weights and gradients (float32, torch's single-tensor order), against float64 NumPy
re-statements of each rule written out below (no torch needed), their state dicts (resume, torch's
state dicts), and bad input. LBFGS minimises the Rosenbrock function with the iterates torch's has.

The start weights, the resumed runs and the torch helpers are test_optim_api.py's."""

from __future__ import annotations

import math

import deepkern
import numpy as np
import pytest
from deepkern import optim
from test_optim_api import (
    STEPS,
    deepkern_maker,
    deepkern_params,
    grad_of,
    needs_torch,
    run_deepkern,
    run_torch,
    set_grads,
    start_params,
    torch,
    torch_maker,
    two_groups,
)

from checks import raises_naming

# The trajectories follow a fixed sequence of random gradients (not a function of the weights), so
# a rounding difference in one step is not amplified by the next gradients: after 100 steps deepkern
# and torch (both float32, torch doing some multiply-adds as FMAs) differ by a few ulp.
F32_RTOL, F32_ATOL = 2e-5, 2e-6
# float32 against the float64 re-statement: float32 rounding of the stored values, amplified by the
# division by sqrt(v) where v is small
F32_F64_RTOL, F32_F64_ATOL = 2e-4, 2e-5


def gradient_sequence(arrays, steps=STEPS, seed=1):
    """``steps`` lists of one float64 gradient per parameter."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(a.shape) for a in arrays] for _ in range(steps)]


def follow(lib, make, arrays, grads, groups=None, skip=()):
    """Steps an optimizer of ``lib`` (deepkern or torch) made by ``make`` through ``grads`` (cast to
    the parameters' dtype; none for the indices in ``skip``) from copies of ``arrays``; returns the
    final weights as NumPy arrays."""
    params = [lib.nn.Parameter(lib.tensor(a.copy())) for a in arrays]
    opt = make(params if groups is None else groups(params))
    for step in grads:
        for i, (p, g) in enumerate(zip(params, step)):
            p.grad = None if i in skip else lib.tensor(g.astype(arrays[i].dtype))
        opt.step()
    return [np.array(p.detach().numpy()) for p in params]


def assert_trajectories_close(got, want, rtol, atol, what=""):
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what}: parameter {i}")


# -- float64 re-statements of the rules (the papers' formulas as torch writes them) --------------


def _grad(p, g, o):
    """The gradient the rule uses and the parameter after decoupled weight decay."""
    g = -g if o.get("maximize") else g
    wd = o.get("weight_decay", 0)
    if wd and o.get("decoupled_weight_decay"):
        return g, p * (1 - o["lr"] * wd)
    return g + wd * p, p


def ref_adagrad(ps, grads, **o):
    o = dict({"lr": 1e-2, "lr_decay": 0, "eps": 1e-10}, **o)
    sums = [np.full_like(p, o.get("initial_accumulator_value", 0)) for p in ps]
    for t, step in enumerate(grads, 1):
        for i, p in enumerate(ps):
            g, p = _grad(p, step[i], o)
            sums[i] = sums[i] + g * g
            ps[i] = p - o["lr"] / (1 + (t - 1) * o["lr_decay"]) * g / (np.sqrt(sums[i]) + o["eps"])
    return ps


def ref_nadam(ps, grads, **o):
    o = dict({"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "momentum_decay": 4e-3}, **o)
    (b1, b2), lr = o["betas"], o["lr"]
    m, v = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps]
    mu_product = 1.0
    for t, step in enumerate(grads, 1):
        mu = b1 * (1 - 0.5 * 0.96 ** (t * o["momentum_decay"]))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * o["momentum_decay"]))
        mu_product *= mu  # the same for every parameter: all step together here
        for i, p in enumerate(ps):
            g, p = _grad(p, step[i], o)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            denom = np.sqrt(v[i] / (1 - b2**t)) + o["eps"]
            ps[i] = (
                p
                - lr * (1 - mu) / (1 - mu_product) * g / denom
                - lr * mu_next / (1 - mu_product * mu_next) * m[i] / denom
            )
    return ps


def ref_radam(ps, grads, **o):
    o = dict({"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}, **o)
    (b1, b2), lr = o["betas"], o["lr"]
    m, v = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps]
    rho_inf = 2 / (1 - b2) - 1
    for t, step in enumerate(grads, 1):
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        for i, p in enumerate(ps):
            g, p = _grad(p, step[i], o)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1**t)
            if rho > 5:
                r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                ps[i] = p - lr * m_hat * r * math.sqrt(1 - b2**t) / (np.sqrt(v[i]) + o["eps"])
            else:
                ps[i] = p - lr * m_hat
    return ps


CASES = [
    ("adagrad", "Adagrad", dict(lr=0.1), ref_adagrad),
    (
        "adagrad-decay-init-wd",
        "Adagrad",
        dict(lr=0.2, lr_decay=0.05, initial_accumulator_value=0.3, weight_decay=0.1, eps=1e-6),
        ref_adagrad,
    ),
    ("adagrad-maximize", "Adagrad", dict(lr=0.05, maximize=True), ref_adagrad),
    ("nadam", "NAdam", dict(lr=0.01), ref_nadam),
    ("nadam-wd", "NAdam", dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01), ref_nadam),
    (
        "nadamw-maximize",
        "NAdam",
        dict(lr=0.01, weight_decay=0.2, decoupled_weight_decay=True, maximize=True),
        ref_nadam,
    ),
    ("radam", "RAdam", dict(lr=0.01), ref_radam),
    ("radam-wd-beta", "RAdam", dict(lr=0.02, betas=(0.7, 0.9), weight_decay=0.1, eps=1e-6), ref_radam),
    (
        "radamw-maximize",
        "RAdam",
        dict(lr=0.01, weight_decay=0.3, decoupled_weight_decay=True, maximize=True),
        ref_radam,
    ),
]
IDS = [c[0] for c in CASES]


@needs_torch
@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=IDS)
def test_trajectory_matches_torch(name, cls_name, options, ref):
    arrays = start_params(np.float32)
    grads = gradient_sequence(arrays)
    got = follow(deepkern, deepkern_maker(cls_name, options), arrays, grads)
    want = follow(torch, torch_maker(cls_name, options), arrays, grads)
    assert_trajectories_close(got, want, F32_RTOL, F32_ATOL, name)
    moved = max(float(np.max(np.abs(w - a))) for w, a in zip(want, arrays))
    assert moved > 0.05, "the gradients should move the parameters"


@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=IDS)
def test_trajectory_matches_float64_reference(name, cls_name, options, ref):
    arrays = start_params(np.float64)
    grads = gradient_sequence(arrays)
    got = follow(deepkern, deepkern_maker(cls_name, options), arrays, grads)
    want = ref([a.copy() for a in arrays], grads, **options)
    assert_trajectories_close(got, want, 1e-12, 1e-13, name)


@pytest.mark.parametrize("name, cls_name, options, ref", CASES, ids=IDS)
def test_float32_trajectory_near_float64_reference(name, cls_name, options, ref):
    arrays = start_params(np.float32)
    grads = gradient_sequence(arrays)
    got = follow(deepkern, deepkern_maker(cls_name, options), arrays, grads)
    want = ref([a.astype(np.float64) for a in arrays], [[g.astype(np.float32) for g in s] for s in grads], **options)
    assert_trajectories_close(got, [w.astype(np.float32) for w in want], F32_F64_RTOL, F32_F64_ATOL, name)


@needs_torch
@pytest.mark.parametrize("cls_name", ["Adagrad", "NAdam", "RAdam"])
def test_param_groups_and_skipped_params_match_torch(cls_name):
    arrays = start_params(np.float32)
    grads = gradient_sequence(arrays)
    got = follow(deepkern, deepkern_maker(cls_name, dict(lr=0.03)), arrays, grads, two_groups, skip={1})
    want = follow(torch, torch_maker(cls_name, dict(lr=0.03)), arrays, grads, two_groups, skip={1})
    assert_trajectories_close(got, want, F32_RTOL, F32_ATOL, cls_name)
    np.testing.assert_array_equal(got[1], arrays[1])  # no gradient: not moved


@pytest.mark.parametrize("cls_name", ["Adagrad", "NAdam", "RAdam"])
def test_state_dict_resume_equals_uninterrupted_run(cls_name):
    arrays = start_params()
    make = deepkern_maker(cls_name, dict(lr=0.02, weight_decay=0.1))
    whole, _ = run_deepkern(make, arrays, groups=two_groups)
    first, opt = run_deepkern(make, arrays, steps=STEPS // 2, groups=two_groups)
    params = deepkern_params(first)
    fresh = make(two_groups(params))
    fresh.load_state_dict(opt.state_dict())
    for _ in range(STEPS - STEPS // 2):
        set_grads(params)
        fresh.step()
    for w, p in zip(whole, params):
        np.testing.assert_array_equal(p._array, w)


def test_state_names_and_adagrad_state_at_construction():
    params = deepkern_params(start_params())
    opt = optim.Adagrad(params, initial_accumulator_value=0.5)
    assert sorted(opt.state_dict()["state"]) == [0, 1, 2, 3, 4]  # before any step, as torch
    np.testing.assert_array_equal(opt.state[params[0]]["sum"].numpy(), np.full(params[0].shape, 0.5, np.float32))
    for cls, names in ((optim.NAdam, ["step", "mu_product", "exp_avg", "exp_avg_sq"]), (optim.RAdam, None)):
        opt = cls(params)
        set_grads(params)
        opt.step()
        assert list(opt.state[params[0]]) == (names or ["step", "exp_avg", "exp_avg_sq"])


@needs_torch
@pytest.mark.parametrize("cls_name", ["Adagrad", "NAdam", "RAdam"])
def test_loads_torch_state_dict_and_continues_like_torch(cls_name):
    options = dict(lr=0.01, weight_decay=0.05)
    arrays = start_params()
    first, topt = run_torch(torch_maker(cls_name, options), arrays, steps=30)
    params = deepkern_params(first)
    opt = getattr(optim, cls_name)(params, **options)
    opt.load_state_dict(topt.state_dict())  # 0-d torch tensors for step and mu_product
    assert opt.state[params[0]]["step"] == 30.0
    tparams = topt.param_groups[0]["params"]
    for _ in range(20):
        set_grads(params)
        for i, p in enumerate(tparams):
            p.grad = torch.from_numpy(grad_of(i, p.detach().numpy()))
        opt.step()
        topt.step()
    got, want = [p._array for p in params], [p.detach().numpy() for p in tparams]
    assert_trajectories_close(got, want, F32_RTOL, F32_ATOL, cls_name)


@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda p: optim.Adagrad(p, lr=-1), ["learning rate", "-1"]),
        (lambda p: optim.Adagrad(p, lr_decay=-0.5), ["lr_decay", "-0.5"]),
        (lambda p: optim.Adagrad(p, initial_accumulator_value=-2), ["initial_accumulator_value", "-2"]),
        (lambda p: optim.Adagrad(p, eps=-1e-3), ["epsilon", "-0.001"]),
        (lambda p: optim.Adagrad(p, weight_decay=-3), ["weight_decay", "-3"]),
        (lambda p: optim.NAdam(p, betas=(1.0, 0.9)), ["beta parameter at index 0", "1.0"]),
        (lambda p: optim.NAdam(p, momentum_decay=-1), ["momentum_decay", "-1"]),
        (lambda p: optim.RAdam(p, betas=(0.9, -0.1)), ["beta parameter at index 1", "-0.1"]),
        (lambda p: optim.RAdam(p, betas=(0.9,)), ["betas", r"\(0.9,\)"]),
        (lambda p: optim.LBFGS(p, lr=-0.1), ["learning rate", "-0.1"]),
        (lambda p: optim.LBFGS(p, line_search_fn="armijo"), ["line_search_fn", "armijo"]),
        (lambda p: optim.LBFGS(p, history_size=0), ["history_size", "0"]),
        (lambda p: optim.LBFGS(p, max_iter=2.5), ["max_iter", "2.5"]),
        (lambda p: optim.LBFGS(two_groups(p)), ["parameter groups"]),
    ],
)
def test_bad_hyperparameters_raise_naming_them(make, needles):
    with raises_naming(ValueError, *needles):
        make(deepkern_params(start_params()))


# -- LBFGS on the Rosenbrock function ----------------------------------------------------------


def rosenbrock(xy):
    """(1 - x)^2 + 100 (y - x^2)^2 for a Tensor (deepkern or torch) holding (x, y)."""
    x, y = xy[0], xy[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def rosenbrock_closure(opt, xy, calls=None):
    """The closure LBFGS.step calls: the gradient of the Rosenbrock function at ``xy`` (each call
    appended to ``calls`` when given)."""

    def closure():
        if calls is not None:
            calls.append(1)
        opt.zero_grad()
        loss = rosenbrock(xy)
        loss.backward()
        return loss

    return closure


def lbfgs_iterates(lib, make, start, steps):
    """The point after each ``step`` of an LBFGS made by ``make`` from ``start``, with ``lib``
    (deepkern or torch) computing the function and its gradient; also the optimizer."""
    xy = lib.nn.Parameter(lib.tensor(start))
    opt = make([xy])

    closure = rosenbrock_closure(opt, xy)

    points = []
    for _ in range(steps):
        opt.step(closure)
        points.append(np.array(xy.detach().numpy()))
    return np.array(points), opt


LBFGS_OPTIONS = [
    dict(lr=1, max_iter=20),
    dict(lr=0.5, max_iter=7, history_size=3),
    dict(line_search_fn="strong_wolfe"),
    dict(lr=0.8, max_iter=10, max_eval=12, history_size=4, line_search_fn="strong_wolfe"),
]


@needs_torch
@pytest.mark.parametrize("options", LBFGS_OPTIONS, ids=str)
def test_lbfgs_rosenbrock_iterates_match_torch(options):
    """float64: deepkern performs torch's operations, and the points after each of the first two
    steps (7 to 20 iterations each) agree to rounding (measured: <= 5e-11). Rosenbrock's valley
    amplifies those last-bit differences over the following iterations (a fixed step more than
    the line search), so later points are compared loosely; the iteration and evaluation counts
    are the same throughout."""
    start = np.array([-1.5, 2.0])
    ours, opt = lbfgs_iterates(deepkern, lambda p: optim.LBFGS(p, **options), start, 6)
    theirs, topt = lbfgs_iterates(torch, lambda p: torch.optim.LBFGS(p, **options), start, 6)
    np.testing.assert_allclose(ours[:2], theirs[:2], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)
    state, tstate = opt.state[opt._params[0]], topt.state[topt._params[0]]
    assert (state["func_evals"], state["n_iter"]) == (tstate["func_evals"], tstate["n_iter"])


@needs_torch
@pytest.mark.parametrize("options", LBFGS_OPTIONS, ids=str)
def test_lbfgs_float32_first_step_matches_torch(options):
    """float32: torch keeps LBFGS's scalars (dot products, step sizes) as float32 tensors where
    deepkern keeps Python floats, so only the first step's point is compared (measured: <= 2e-5);
    with the line search both then reach the minimum."""
    start = np.array([-1.5, 2.0], np.float32)
    ours, _ = lbfgs_iterates(deepkern, lambda p: optim.LBFGS(p, **options), start, 6)
    theirs, _ = lbfgs_iterates(torch, lambda p: torch.optim.LBFGS(p, **options), start, 6)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-4, atol=1e-4)
    if options.get("line_search_fn"):
        np.testing.assert_allclose(ours[-1], [1, 1], atol=1e-4)
        np.testing.assert_allclose(theirs[-1], [1, 1], atol=1e-4)


@pytest.mark.parametrize("options", LBFGS_OPTIONS[:1] + LBFGS_OPTIONS[2:3], ids=str)
def test_lbfgs_minimises_rosenbrock(options):
    points, opt = lbfgs_iterates(deepkern, lambda p: optim.LBFGS(p, **options), np.array([-1.5, 2.0]), 10)
    np.testing.assert_allclose(points[-1], [1.0, 1.0], atol=1e-4)  # stopped by tolerance_change
    assert float(rosenbrock(deepkern.tensor(points[-1]))) < 1e-9
    assert opt.state[opt._params[0]]["n_iter"] > 10


def test_lbfgs_direction_is_the_two_loop_recursion_of_its_history():
    """After a step, the stored direction equals -H g computed with the dense BFGS inverse-Hessian
    update from H_diag over the stored (s, y) pairs (float64, written out here)."""
    xy = deepkern.nn.Parameter(deepkern.tensor(np.array([-1.2, 1.0])))
    opt = optim.LBFGS([xy], max_iter=5, history_size=3)

    closure = rosenbrock_closure(opt, xy)

    opt.step(closure)
    st = opt.state[xy]
    assert st["n_iter"] == 5 and len(st["old_dirs"]) == 3
    # the last direction was computed from the history as it was then: redo it with dense matrices
    s_list, y_list = [s.numpy() for s in st["old_stps"]], [y.numpy() for y in st["old_dirs"]]
    g = st["prev_flat_grad"].numpy()
    H = st["H_diag"] * np.eye(2)
    for s, y in zip(s_list, y_list):
        rho = 1 / (y @ s)
        V = np.eye(2) - rho * np.outer(s, y)
        H = V @ H @ V.T + rho * np.outer(s, s)
    np.testing.assert_allclose(st["d"].numpy(), -H @ g, rtol=1e-10)


def test_lbfgs_state_dict_resume_equals_uninterrupted_run():
    make = lambda p: optim.LBFGS(p, max_iter=4, history_size=3, line_search_fn="strong_wolfe")  # noqa: E731
    start = np.array([-1.5, 2.0])
    whole, _ = lbfgs_iterates(deepkern, make, start, 4)
    half, opt = lbfgs_iterates(deepkern, make, start, 2)
    xy = deepkern.nn.Parameter(deepkern.tensor(half[-1]))
    fresh = make([xy])
    fresh.load_state_dict(opt.state_dict())

    closure = rosenbrock_closure(fresh, xy)

    for k in range(2):
        fresh.step(closure)
        np.testing.assert_array_equal(xy.detach().numpy(), whole[2 + k])


@needs_torch
def test_lbfgs_loads_torch_state_dict():
    options = dict(max_iter=4, history_size=3)
    start = np.array([-1.5, 2.0])
    _, topt = lbfgs_iterates(torch, lambda p: torch.optim.LBFGS(p, **options), start, 2)
    theirs = topt._params[0]
    xy = deepkern.nn.Parameter(deepkern.tensor(theirs.detach().numpy().copy()))
    opt = optim.LBFGS([xy], **options)
    opt.load_state_dict(topt.state_dict())

    closure = rosenbrock_closure(opt, xy)

    tclosure = rosenbrock_closure(topt, theirs)

    for _ in range(2):
        opt.step(closure)
        topt.step(tclosure)
    np.testing.assert_allclose(xy.detach().numpy(), theirs.detach().numpy(), rtol=1e-9)


def test_lbfgs_needs_a_closure_and_stops_at_an_optimum():
    xy = deepkern.nn.Parameter(deepkern.tensor([1.0, 1.0]))
    opt = optim.LBFGS([xy])
    with raises_naming(TypeError, "closure"):
        opt.step(None)
    calls = []

    closure = rosenbrock_closure(opt, xy, calls)

    assert float(opt.step(closure)) == 0.0
    assert len(calls) == 1 and xy.detach().numpy().tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "cls_name, options", [("Adagrad", dict(lr=0.1, weight_decay=0.1)), ("NAdam", {}), ("RAdam", {})]
)
def test_steps_run_on_every_device(cls_name, options, device):
    """The rules are NumPy operations on the parameters' backend arrays: on each device the same
    trajectory as on the CPU, with the state on the parameters' device."""
    arrays = start_params(np.float64)
    grads = gradient_sequence(arrays, steps=10)
    results = []
    for where in ("cpu", device):
        params = [deepkern.nn.Parameter(deepkern.tensor(a, device=where)) for a in arrays]
        opt = getattr(optim, cls_name)(params, **options)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = deepkern.tensor(g, device=where)
            opt.step()
        assert all(
            v.device == params[0].device for v in opt.state[params[0]].values() if isinstance(v, deepkern.Tensor)
        )
        results.append([p.detach().cpu().numpy() for p in params])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_runs_on_every_device(line_search_fn, device):
    points = []
    for where in ("cpu", device):
        xy = deepkern.nn.Parameter(deepkern.tensor(np.array([-1.5, 2.0]), device=where))
        opt = optim.LBFGS([xy], max_iter=10, line_search_fn=line_search_fn)
        for _ in range(3):
            opt.step(rosenbrock_closure(opt, xy))
        assert opt.state[xy]["d"].device == xy.device
        points.append(xy.detach().cpu().numpy())
    np.testing.assert_allclose(points[1], points[0], rtol=1e-12)


def test_lbfgs_counts_take_numpy_ints_and_whole_floats():
    """As PyTorch's: max_iter, max_eval and history_size may be NumPy ints or whole floats."""
    for counts in (dict(max_iter=np.int64(5)), dict(history_size=np.int32(3)), dict(max_iter=5.0, max_eval=7.0)):
        opt = optim.LBFGS(deepkern_params(start_params()[:1]), **counts)
        group = opt.param_groups[0]
        assert all(type(group[name]) is int for name in ("max_iter", "max_eval", "history_size"))
    for bad in (float("inf"), float("nan"), 0.0, True):
        with raises_naming(ValueError, "max_iter"):
            optim.LBFGS(deepkern_params(start_params()[:1]), max_iter=bad)
