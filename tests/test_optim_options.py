"""torch.optim's implementation options on deepkern's optimizers: ``foreach``, ``fused``,
``capturable`` and ``differentiable`` are accepted exactly where each torch optimizer accepts them
(same signature: names, positions, defaults), kept in the defaults and param groups (so state dicts
keep torch's keys), leave the trajectories unchanged, and ``differentiable=True`` is refused."""

from __future__ import annotations

import inspect

import deepkern
import numpy as np
import pytest
from deepkern import optim

from checks import raises_naming

torch = pytest.importorskip("torch")

CLASSES = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "NAdam", "RAdam", "Adadelta", "Adamax", "ASGD", "Rprop"]
OPTIONS = ("foreach", "fused", "capturable", "differentiable")
#: options that make a difference to the trajectory, so that every optimizer's rule is exercised
HYPER = {"SGD": {"lr": 0.05, "momentum": 0.9}, "RMSprop": {"momentum": 0.5, "centered": True}}


def _torch_options(name: str) -> list:
    return [p for p in inspect.signature(getattr(torch.optim, name)).parameters if p in OPTIONS]


def _params(dtype=np.float64):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]


def _grads(steps=6, dtype=np.float64):
    rng = np.random.default_rng(1)
    return [[rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)] for _ in range(steps)]


def _run(lib, name, options, steps=6):
    params = [lib.nn.Parameter(lib.tensor(a)) for a in _params()]
    opt = getattr(lib.optim, name)(params, **HYPER.get(name, {}), **options)
    for step in _grads(steps):
        for p, g in zip(params, step):
            p.grad = lib.tensor(g)
        opt.step()
    return [p.detach().numpy().copy() for p in params], opt


@pytest.mark.parametrize("name", CLASSES)
def test_signature_is_torchs(name):
    """Names, kinds (positional or keyword-only, hence positions) and defaults, parameter by parameter."""
    ours = inspect.signature(getattr(optim, name)).parameters
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


@pytest.mark.parametrize("name", CLASSES)
def test_defaults_and_state_dict_keys_are_torchs(name):
    params = [deepkern.nn.Parameter(deepkern.tensor(a)) for a in _params()]
    tparams = [torch.nn.Parameter(torch.tensor(a)) for a in _params()]
    ours, theirs = getattr(optim, name)(params), getattr(torch.optim, name)(tparams)
    assert ours.defaults == theirs.defaults
    for option in _torch_options(name):
        assert option in ours.defaults and ours.param_groups[0][option] == theirs.param_groups[0][option]
    assert set(ours.state_dict()["param_groups"][0]) == set(theirs.state_dict()["param_groups"][0])
    chosen = {o: True for o in _torch_options(name) if o in ("foreach", "capturable")}
    assert getattr(optim, name)(params, **chosen).state_dict()["param_groups"][0] | {"params": None} == (
        getattr(torch.optim, name)(tparams, **chosen).state_dict()["param_groups"][0] | {"params": None}
    )


@pytest.mark.parametrize("name", CLASSES)
def test_options_torch_lacks_are_refused_as_torch_refuses_them(name):
    params = [deepkern.nn.Parameter(deepkern.tensor(a)) for a in _params()]
    tparams = [torch.nn.Parameter(torch.tensor(a)) for a in _params()]
    for option in OPTIONS:
        if option in _torch_options(name):
            continue
        with pytest.raises(TypeError):
            getattr(torch.optim, name)(tparams, **{option: True})
        with raises_naming(TypeError, option):
            getattr(optim, name)(params, **{option: True})


@pytest.mark.parametrize("name", CLASSES)
def test_positional_options_land_where_torchs_do(name):
    """Every parameter torch takes positionally, given positionally, reaches the same option."""
    positional = [
        p
        for p in inspect.signature(getattr(torch.optim, name)).parameters.values()
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "params"
    ]
    values = [True if p.name in ("foreach", "capturable", "maximize") else p.default for p in positional]
    params = [deepkern.nn.Parameter(deepkern.tensor(a)) for a in _params()]
    tparams = [torch.nn.Parameter(torch.tensor(a)) for a in _params()]
    ours, theirs = getattr(optim, name)(params, *values), getattr(torch.optim, name)(tparams, *values)
    assert ours.defaults == theirs.defaults


@pytest.mark.parametrize("name", CLASSES)
def test_implementation_options_leave_the_trajectory_unchanged(name):
    accepted = _torch_options(name)
    plain, _ = _run(deepkern, name, {})
    reference, _ = _run(torch, name, {})
    for p, r in zip(plain, reference):  # (NAdam's rounding differs from torch's by ~1e-9 relative here)
        np.testing.assert_allclose(p, r, rtol=1e-8, atol=1e-12)
    choices = [{"foreach": True}, {"foreach": False}, {"capturable": True}, {"fused": True}, {"fused": False}]
    for options in choices:
        if not set(options) <= set(accepted):
            continue
        got, opt = _run(deepkern, name, options)
        for g, p in zip(got, plain):
            np.testing.assert_array_equal(g, p, err_msg=f"{name} {options}")
        assert all(opt.param_groups[0][k] == v for k, v in options.items())
        if "capturable" not in options:  # torch's capturable steps need accelerator parameters
            # torch's foreach path rounds a few scalars its own way (ASGD's eta and mu kept in float64
            # there, float32 in the single-tensor path; NAdam's mu_product): close, not equal
            theirs, _ = _run(torch, name, options)
            for g, r in zip(got, theirs):
                np.testing.assert_allclose(g, r, rtol=1e-7, atol=1e-9, err_msg=f"{name} {options}")


@pytest.mark.parametrize("name", CLASSES)
def test_differentiable_is_refused_clearly(name):
    params = [deepkern.nn.Parameter(deepkern.tensor(a)) for a in _params()]
    with raises_naming(NotImplementedError, name, "differentiable=True", "not supported", "autograd"):
        getattr(optim, name)(params, differentiable=True)
    getattr(optim, name)(params, differentiable=False)  # the default, stated
    opt = getattr(optim, name)(params[:1])
    with raises_naming(NotImplementedError, "differentiable=True"):
        opt.add_param_group({"params": params[1:], "differentiable": True})
    state = opt.state_dict()
    state["param_groups"][0]["differentiable"] = True
    with raises_naming(NotImplementedError, "load_state_dict", "differentiable=True"):
        opt.load_state_dict(state)
    assert opt.param_groups[0]["differentiable"] is False  # the refused load changed nothing


@pytest.mark.parametrize("name", [n for n in CLASSES if "fused" in _torch_options(n)])
def test_fused_and_foreach_together_are_refused_as_torch(name):
    params = [deepkern.nn.Parameter(deepkern.tensor(a)) for a in _params()]
    tparams = [torch.nn.Parameter(torch.tensor(a)) for a in _params()]
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
        getattr(torch.optim, name)(tparams, fused=True, foreach=True)
    with raises_naming(RuntimeError, "`fused` and `foreach` cannot be `True` together"):
        getattr(optim, name)(params, fused=True, foreach=True)
    getattr(optim, name)(params, fused=True, foreach=False)


def test_torch_state_dicts_with_the_options_load_and_keep_them():
    tparams = [torch.nn.Parameter(torch.tensor(a)) for a in _params()]
    topt = torch.optim.Adam(tparams, lr=0.01, foreach=True)
    for p, g in zip(tparams, _grads(1)[0]):
        p.grad = torch.tensor(g)
    topt.step()
    params = [deepkern.nn.Parameter(deepkern.tensor(a)) for a in _params()]
    opt = optim.Adam(params, lr=0.01)
    opt.load_state_dict(topt.state_dict())
    assert opt.param_groups[0]["foreach"] is True and opt.param_groups[0]["fused"] is None
    assert set(opt.state_dict()["param_groups"][0]) == set(topt.state_dict()["param_groups"][0])
