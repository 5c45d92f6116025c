"""Tensor.register_post_accumulate_grad_hook (PyTorch's semantics) and autograd.queue_callback."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest
from deepkern import autograd


def record_hooks(lib, params, log):
    """Registers on each of ``params`` a hook that logs (its index, its .grad then, which other
    params had a .grad then)."""
    for i, p in enumerate(params):

        def hook(t, i=i):
            others = [j for j, q in enumerate(params) if q.grad is not None and j != i]
            log.append((i, np.array(t.grad.detach().numpy()), others))

        p.register_post_accumulate_grad_hook(hook)


def two_layer_run(lib, w1, w2, x, backward_twice=False):
    """Hooks on the weights of y = tanh(x @ w1) @ w2 (w1 also used a second time); the log."""
    a = lib.tensor(w1, requires_grad=True)
    b = lib.tensor(w2, requires_grad=True)
    log = []
    record_hooks(lib, [a, b], log)
    for _ in range(2 if backward_twice else 1):
        xs = lib.tensor(x)
        loss = ((xs @ a).tanh() @ b).sum() + (a * a).sum()
        loss.backward()
    return log


def test_hooks_see_the_complete_gradient_once_per_backward_like_pytorch(rng):
    torch = pytest.importorskip("torch")
    w1, w2, x = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal((5, 3))
    ours = two_layer_run(dk, w1, w2, x, backward_twice=True)
    theirs = two_layer_run(torch, w1, w2, x, backward_twice=True)
    assert [(i, others) for i, _, others in ours] == [(i, others) for i, _, others in theirs]
    assert len(ours) == 4  # each hook once per backward
    for (_, g, _), (_, h, _) in zip(ours, theirs):
        np.testing.assert_allclose(g, h, rtol=1e-12, atol=1e-12)


def test_hook_fires_before_the_deeper_layers_backward():
    """w2's gradient is complete before the backward reaches w1: its hook runs with w1.grad still None."""
    log = two_layer_run(dk, np.ones((3, 4)), np.ones((4, 2)), np.ones((2, 3)))
    assert log[0][0] == 1 and log[0][2] == []
    assert log[1][0] == 0 and log[1][2] == [1]


def test_hook_after_gradient_hooks_and_on_a_leaf_root(rng):
    w = dk.tensor(rng.standard_normal(3), requires_grad=True)
    w.register_hook(lambda g: g * 2)
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    (w * 3).sum().backward()
    np.testing.assert_allclose(seen[0], np.full(3, 6.0))
    leaf = dk.tensor(rng.standard_normal(2), requires_grad=True)
    got = []
    leaf.register_post_accumulate_grad_hook(lambda t: got.append(t.grad.numpy().copy()))
    leaf.backward(dk.tensor(np.array([1.0, 2.0])))
    np.testing.assert_allclose(got[0], [1.0, 2.0])


def test_grad_calls_no_hook_and_remove_unregisters(rng):
    w = dk.tensor(rng.standard_normal(3), requires_grad=True)
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    autograd.grad((w * w).sum(), w)
    assert calls == [] and w.grad is None
    (w * w).sum().backward()
    assert calls == [1]
    handle.remove()
    (w * w).sum().backward()
    assert calls == [1]


def test_unused_leaf_gets_no_call(rng):
    a = dk.tensor(rng.standard_normal(2), requires_grad=True)
    b = dk.tensor(rng.standard_normal(2), requires_grad=True)
    calls = []
    b.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    (a * 2).sum().backward()
    assert calls == [] and b.grad is None


@pytest.mark.parametrize("lib_name", ["deepkern", "torch"])
def test_hook_returning_a_value_is_an_error(lib_name):
    lib = dk if lib_name == "deepkern" else pytest.importorskip("torch")
    w = lib.tensor(np.ones(2), requires_grad=True)
    w.register_post_accumulate_grad_hook(lambda t: "a value")
    with pytest.raises(TypeError, match="str"):
        (w * 2).sum().backward()


def test_bad_registrations():
    w = dk.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        dk.tensor(np.ones(2)).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(TypeError, match="callable"):
        w.register_post_accumulate_grad_hook(3)


def test_queue_callback_runs_after_every_gradient():
    a = dk.tensor(np.ones(2), requires_grad=True)
    b = dk.tensor(np.ones(2), requires_grad=True)
    seen = []

    def at_end():
        seen.append((a.grad is not None, b.grad is not None))

    b.register_post_accumulate_grad_hook(lambda t: autograd.queue_callback(at_end))
    ((a * 2) * b).sum().backward()
    assert seen == [(True, True)]
    with pytest.raises(RuntimeError, match="no backward pass is running"):
        autograd.queue_callback(at_end)
