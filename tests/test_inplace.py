"""In-place operations on Tensors: ``+= -= *= /=``, ``add_/sub_/mul_/div_/fill_/zero_/copy_`` and item
assignment write into the tensor's memory (views and shared arrays see it), are recorded in the graph
where PyTorch records them (gradients by finite differences in float64), are refused where PyTorch
refuses, and the version counters turn a saved value changed before backward into an error instead
of a wrong gradient."""

from __future__ import annotations

import deepkern as dk
import numpy as np
import pytest

from checks import gradcheck, raises_naming
from conftest import on_device, to_host

# name -> (in-place form, NumPy reference); each applies ``other`` to ``t`` in place
UPDATES = {
    "+=": (lambda t, o: t.__iadd__(o), np.add),
    "-=": (lambda t, o: t.__isub__(o), np.subtract),
    "*=": (lambda t, o: t.__imul__(o), np.multiply),
    "/=": (lambda t, o: t.__itruediv__(o), np.divide),
    "add_": (lambda t, o: t.add_(o), np.add),
    "add_ alpha": (lambda t, o: t.add_(o, alpha=-2.5), lambda a, b: a - 2.5 * b),
    "sub_ alpha": (lambda t, o: t.sub_(o, alpha=0.5), lambda a, b: a - 0.5 * b),
    "mul_": (lambda t, o: t.mul_(o), np.multiply),
    "div_": (lambda t, o: t.div_(o), np.divide),
    "**=": (lambda t, o: t.__ipow__(o), lambda a, b: np.abs(a) ** b),
    "pow_": (lambda t, o: t.pow_(o), lambda a, b: np.abs(a) ** b),
}
OTHER_SHAPES = [(3, 4), (4,), (1, 4), (3, 1), ()]


def host(t):
    return to_host(t.detach()._array)


def positive(rng, shape):
    return np.abs(rng.standard_normal(shape)) + 0.5


@pytest.mark.parametrize("name", sorted(UPDATES))
@pytest.mark.parametrize("other_shape", OTHER_SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["tensor", "array", "scalar"])
def test_updates_write_into_the_tensor_and_its_views(device, name, other_shape, kind, rng):
    inplace, reference = UPDATES[name]
    start = rng.standard_normal((3, 4))
    if "pow" in name or "**" in name:
        start = np.abs(start)  # real powers of a positive base
    other = positive(rng, other_shape)
    t = dk.tensor(start, device=device)
    alias = t[1:]  # a view: sees the write
    operand = {
        "tensor": dk.tensor(other, device=device),
        "array": on_device(device, other),
        "scalar": float(other.reshape(-1)[0]),
    }[kind]
    same = inplace(t, operand)
    assert same is t
    expected = reference(start, other if kind != "scalar" else float(other.reshape(-1)[0]))
    np.testing.assert_allclose(host(t), expected, rtol=1e-15)
    np.testing.assert_allclose(host(alias), expected[1:], rtol=1e-15)


def test_hand_written_sgd_loop_updates_the_model(rng):
    x, y = rng.standard_normal((16, 5)), rng.standard_normal((16, 1))
    w0 = rng.standard_normal((5, 1))
    w = dk.tensor(w0, requires_grad=True)
    b = dk.zeros(1, dtype=np.float64, requires_grad=True)
    lr, ref_w, ref_b = 0.1, w0.copy(), np.zeros(1)
    for _ in range(3):
        loss = ((dk.tensor(x) @ w + b - dk.tensor(y)) ** 2).mean()
        loss.backward()
        residual = x @ ref_w + ref_b - y
        ref_gw, ref_gb = 2 * x.T @ residual / len(x), 2 * residual.mean(0)
        with dk.no_grad():
            w -= lr * w.grad
            b[0] -= lr * b.grad[0]  # on a view
        ref_w, ref_b = ref_w - lr * ref_gw, ref_b - lr * ref_gb
        w.grad = b.grad = None
        np.testing.assert_allclose(w.detach().numpy(), ref_w, rtol=1e-12)
        np.testing.assert_allclose(b.detach().numpy(), ref_b, rtol=1e-12, atol=1e-15)
    assert w.is_leaf and w.requires_grad


def test_from_numpy_memory_sees_the_update():
    arr = np.arange(6.0).reshape(2, 3)
    t = dk.from_numpy(arr)
    t *= 2
    t[0, 1] = -1.0
    np.testing.assert_array_equal(arr, [[0, -1, 4], [6, 8, 10]])


def test_an_array_handed_in_every_call_keeps_one_record():
    # an input wrapped with from_numpy on each call (an inference loop) is recorded once, not once per call
    from deepkern import autograd

    arr = np.ones((2, 3))
    for _ in range(50):
        dk.from_numpy(arr)
        dk.Tensor(arr)
    assert autograd.is_exposed(arr)
    assert len(autograd._exposed[id(arr)]) == 1


# -- recorded in the graph -------------------------------------------------------------------------


def _chain(x, w, v):
    """A non-leaf updated in place by every operator, each with a differentiable operand."""
    y = x * 1.5
    y += w
    y *= v
    y -= w * w
    y /= v + 2.0
    y.add_(x, alpha=0.5).mul_(w)
    y **= 2
    y.pow_(v)
    return y.tanh()


def test_recorded_updates_have_finite_difference_gradients(device, rng):
    x = dk.tensor(rng.standard_normal((3, 4)), requires_grad=True, device=device)
    w = dk.tensor(rng.standard_normal(4), requires_grad=True, device=device)
    v = dk.tensor(positive(rng, (3, 1)), requires_grad=True, device=device)
    gradcheck(_chain, x, w, v)


def test_an_update_with_a_grad_operand_makes_a_plain_tensor_part_of_the_graph(rng):
    w = dk.tensor(rng.standard_normal(3), requires_grad=True)
    acc = dk.zeros(3, dtype=np.float64)
    acc += w * 2
    assert acc.requires_grad and not acc.is_leaf
    acc.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2, 2, 2])


def test_item_assignment_is_recorded(device, rng):
    def assign(x, w):
        y = x * 2
        y[0] = w[:4] * 3  # row 0 of y no longer depends on x
        y[1:, ::2] = 5.0
        y[2, 1] = w[4]
        return y * y

    x = dk.tensor(rng.standard_normal((3, 4)), requires_grad=True, device=device)
    w = dk.tensor(rng.standard_normal(5), requires_grad=True, device=device)
    gradcheck(assign, x, w)


def test_fill_zero_and_copy_are_recorded(device, rng):
    def overwrite(x, w, s):
        y = x * 3
        y[0].zero_()
        y[1].fill_(s)
        y[2].copy_(w)
        return y.exp()

    x = dk.tensor(rng.standard_normal((4, 3)), requires_grad=True, device=device)
    w = dk.tensor(rng.standard_normal(3), requires_grad=True, device=device)
    s = dk.tensor(rng.standard_normal(()), requires_grad=True, device=device)
    gradcheck(overwrite, x, w, s)


def test_update_of_a_recorded_view_goes_through_its_base(device, rng):
    def through_view(x, w):
        y = x * 2
        v = y[1:3]
        v += w  # changes y too, as in PyTorch
        return y.tanh(), (v * v)

    x = dk.tensor(rng.standard_normal((4, 3)), requires_grad=True, device=device)
    w = dk.tensor(rng.standard_normal(3), requires_grad=True, device=device)
    y_sin, v_sq = through_view(x, w)
    expected = 2 * host(x)
    expected[1:3] += host(w)
    np.testing.assert_allclose(host(y_sin), np.tanh(expected), rtol=1e-14)
    np.testing.assert_allclose(host(v_sq), expected[1:3] ** 2, rtol=1e-14)
    gradcheck(through_view, x, w)


def test_update_of_a_view_that_needs_the_views_old_value(device, rng):
    # pow_ and mul_ on y[1] save the view's value, which the write into y then overwrites
    def power(x, w):
        y = x * 2
        y[1].pow_(2)
        v = y[2]
        v.mul_(w)
        return y

    x = dk.tensor(rng.standard_normal((4, 3)), requires_grad=True, device=device)
    w = dk.tensor(rng.standard_normal(3), requires_grad=True, device=device)
    expected = 2 * host(x)
    expected[1] **= 2
    expected[2] *= host(w)
    np.testing.assert_allclose(host(power(x, w)), expected, rtol=1e-14)
    gradcheck(power, x, w)


def test_update_of_a_view_of_a_tensor_outside_the_graph_records_it_on_the_base(device, rng):
    # base needs no grad, its row is written with values that do: base joins the graph, as in PyTorch
    def written(w, p, write):
        base = dk.zeros(4, 3, dtype=dk.float64, device=device)
        write(base, w)
        return base * p

    writes = [
        lambda base, w: base[1].copy_(w * 3),
        lambda base, w: base[:, 2].add_(w[:1].expand(4) * w[2]),
        lambda base, w: base[2:][1].mul_(0).add_(w.exp()),  # a view of a view
    ]
    w = dk.tensor(rng.standard_normal(3), requires_grad=True, device=device)
    p = dk.tensor(rng.standard_normal((4, 3)), requires_grad=True, device=device)
    for write in writes:
        assert written(w, p, write).requires_grad
        gradcheck(lambda w, p, write=write: written(w, p, write), w, p)
    w.grad = None
    written(w, p, writes[0]).sum().backward()
    np.testing.assert_allclose(host(w.grad), 3 * host(p)[1], rtol=1e-14)
    base = dk.zeros(2, device=device)
    base[0].fill_(1.0)  # nothing needs grad: written directly, not recorded
    assert not base.requires_grad and host(base).tolist() == [1.0, 0.0]


def test_update_that_overwrites_a_value_its_own_backward_needs(rng):
    # y *= w needs the old y for w's gradient: it is kept, as PyTorch keeps it
    def scale(x, w):
        y = x + 0.0
        y *= w
        y /= w + 3.0
        return y

    x = dk.tensor(rng.standard_normal(5), requires_grad=True)
    w = dk.tensor(positive(rng, 5), requires_grad=True)
    gradcheck(scale, x, w)


# -- refused ---------------------------------------------------------------------------------------


def test_leaf_that_requires_grad_and_its_views_are_refused_while_recording(rng):
    p = dk.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    before = p.detach().numpy().copy()
    for update in (
        lambda: p.__iadd__(1.0),
        lambda: p.zero_(),
        lambda: p.copy_(np.ones(3)),
        lambda: p.__setitem__(0, 1.0),
        lambda: p[0].__imul__(2.0),
        lambda: p[:, 1].fill_(0.0),
    ):
        with raises_naming(RuntimeError, "leaf", "no_grad"):
            update()
    np.testing.assert_array_equal(p.detach().numpy(), before)
    with dk.no_grad():
        p += 1.0
    np.testing.assert_array_equal(p.detach().numpy(), before + 1)


@pytest.mark.parametrize(
    "update, needles",
    [
        (lambda t: t.__iadd__(1.5), ("float64", "int64")),
        (lambda t: t.__iadd__(np.ones((2, 3))), (r"\(3,\)", r"\(2, 3\)")),
        (lambda t: t.copy_(np.ones(4)), (r"\(4,\)", r"\(3,\)")),
        (lambda t: t.expand(2, 3).__iadd__(1), ("read-only",)),
    ],
)
def test_bad_updates_raise_and_leave_the_tensor_unchanged(update, needles):
    t = dk.tensor([1, 2, 3])
    with raises_naming((RuntimeError, ValueError, TypeError), *needles):
        update(t)
    np.testing.assert_array_equal(t.numpy(), [1, 2, 3])


@pytest.mark.parametrize(
    "view",
    [
        lambda y: y.t(),
        lambda y: y.permute(1, 0),
        lambda y: y.reshape(-1),
        lambda y: y.view(3, 4),
        lambda y: y.diagonal(),
        lambda y: y[1:].t(),
        lambda y: y.unsqueeze(0).transpose(0, 2),
    ],
)
def test_update_of_a_reshaped_or_permuted_view_in_the_graph_goes_through_its_base(view, rng):
    """As PyTorch: the view's new values land in its base, and the gradients see the change."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 3))

    def run(lib):
        leaf = lib.tensor(x.copy(), requires_grad=True)
        y = leaf * 2
        v = view(y)
        v.mul_(3)
        v.add_(v * 0.5)
        out = (y * y).sum() + (v * v).sum()
        out.backward()
        return y.detach().numpy(), leaf.grad.numpy()

    (y, grad), (ref_y, ref_grad) = run(dk), run(torch)
    np.testing.assert_allclose(y, ref_y, rtol=1e-15)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-14)


def test_update_of_a_batch_first_recurrent_output_matches_torch(rng):
    torch = pytest.importorskip("torch")
    ref = torch.nn.GRU(3, 5, batch_first=True).double()
    gru = dk.nn.GRU(3, 5, batch_first=True).double()
    gru.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x = rng.standard_normal((2, 4, 3))
    grads = []
    for lib, layer in ((dk, gru), (torch, ref)):
        xt = lib.tensor(x, requires_grad=True)
        y, _ = layer(xt)
        y.mul_(2).relu_()
        y.sum().backward()
        grads.append(xt.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-13)


def test_update_of_an_expanded_view_in_the_graph_is_refused(rng):
    y = dk.tensor(rng.standard_normal((1, 3)), requires_grad=True) * 2
    with raises_naming(RuntimeError, "Expand", "view"):
        y.expand(4, 3).__iadd__(1.0)


# -- version counters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "forward",
    [
        lambda x: x.exp(),  # saves its output
        lambda x: x.sigmoid(),
        lambda x: (x * 1).tanh(),
        lambda x: x * 1,  # leaves a value another op saves
    ],
)
def test_changing_a_saved_value_before_backward_raises(forward, rng):
    x = dk.tensor(rng.standard_normal(4), requires_grad=True)
    y = forward(x)
    z = y * y  # saves y
    y += 1
    with raises_naming(RuntimeError, "modified by an inplace operation", "MulBackward", "version 1 now"):
        z.sum().backward()


def test_changing_a_saved_value_through_a_view_or_shared_memory_raises(rng):
    x = dk.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    y = x.exp()
    with dk.no_grad():
        y[0] += 1.0  # writes y's memory through a view
    with raises_naming(RuntimeError, "modified by an inplace operation", "ExpBackward"):
        y.sum().backward()


def test_optimizer_step_before_backward_raises_where_a_weight_was_saved(rng):
    """A weight the backward needs (the second layer's, for the first layer's output gradient) changed
    by a step before the backward is the in-place error; the first layer's, whose input needs no
    gradient, is not saved (as in PyTorch), so stepping it first leaves that backward working."""
    first, second = dk.nn.Linear(3, 2), dk.nn.Linear(2, 2)
    x = dk.tensor(rng.standard_normal((4, 3)).astype(np.float32))
    loss = second(first(x)).pow(2).sum()
    for p in second.parameters():
        p.grad = dk.zeros_like(p)
    dk.optim.SGD(second.parameters(), lr=0.1).step()
    with raises_naming(RuntimeError, "modified by an inplace operation"):
        loss.backward()
    loss = first(x).pow(2).sum()
    expected = 2 * (first(x).detach().numpy().T @ x.numpy())
    for p in first.parameters():
        p.grad = dk.zeros_like(p)
    dk.optim.SGD(first.parameters(), lr=0.1).step()
    first.zero_grad()
    loss.backward()
    np.testing.assert_allclose(first.weight.grad.numpy(), expected, rtol=1e-5)


def test_updates_that_touch_nothing_saved_keep_backward_working(rng):
    x = dk.tensor(rng.standard_normal(4), requires_grad=True)
    y = x * 2  # saves x and 2, not y
    y += 1
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2, 2, 2])


def test_a_view_taken_before_its_base_changed_is_refused_when_used(rng):
    x = dk.tensor(rng.standard_normal(4), requires_grad=True)
    y = x * 2
    v = y[:2]
    early = v * 3  # used before the change: fine
    y += x
    with raises_naming(RuntimeError, "view", "inplace"):
        _ = v * 3
    early.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6, 6, 0, 0])


def test_in_place_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    x0, w0 = rng.standard_normal((3, 4)), rng.standard_normal(4)
    grads = []
    for lib, make in ((dk, dk.tensor), (torch, torch.tensor)):
        x, w = make(x0, requires_grad=True), make(w0, requires_grad=True)
        y = x * 2
        y[1:] += w
        y *= w
        v = y[:, 1:3]
        v -= x[:, :2] * 0.5
        (y * y).sum().backward()
        grads.append((np.asarray(y.detach()), np.asarray(x.grad), np.asarray(w.grad)))
        del lib
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-13)


def test_index_arrays_changed_in_place_before_backward_are_the_inplace_error():
    """The indices (integer or bool) of a read or a write are saved for its backward: changing them in
    place before it is PyTorch's error, not a gradient sent to the new positions."""
    x = dk.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    idx = dk.tensor([0, 1])
    y = x[idx]
    idx.add_(1)
    with raises_naming(RuntimeError, "modified by an inplace operation"):
        y.sum().backward()
    mask = dk.tensor([True, False, True])
    z = x * 1
    z[mask] = dk.tensor([5.0, 6.0], dtype=dk.float64)
    mask.copy_(dk.tensor([False, True, False]))
    with raises_naming(RuntimeError, "modified by an inplace operation"):
        z.sum().backward()


def test_writes_through_a_diagonal_are_recorded_on_its_base():
    d = dk.tensor([1.0, 2.0, 3.0], dtype=dk.float64, requires_grad=True)
    v = dk.tensor([1.0, 2.0, 3.0], dtype=dk.float64, requires_grad=True)
    m = dk.zeros(3, 3, dtype=dk.float64)
    m.diagonal().copy_(d * 2)
    assert m.requires_grad
    (m @ v).sum().backward()
    assert d.grad.tolist() == [2.0, 4.0, 6.0] and v.grad.tolist() == [2.0, 4.0, 6.0]
    w = dk.zeros(2, 4, dtype=dk.float64)
    w.diagonal(1).add_(d[:2])  # an offset diagonal
    w.sum().backward()
    assert d.grad.tolist() == [3.0, 5.0, 6.0]


def test_values_that_need_grad_written_into_integer_tensors_land_without_history():
    w = dk.tensor([2.0, 3.0], requires_grad=True)
    for write in (lambda t: t.__setitem__(0, w[0]), lambda t: t.copy_(w * 1), lambda t: t.fill_(w[1])):
        t = dk.zeros(2, dtype=dk.int64)
        write(t)
        assert not t.requires_grad and t.dtype == dk.int64


def test_an_operand_no_gradient_needs_is_not_saved():
    """matmul saves an operand only for the other's gradient (as PyTorch), so changing the other
    operand in place before the backward is no error."""
    leaf = dk.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    h = leaf * 1
    p = dk.tensor(np.ones((3, 2)))
    out = (h @ p).sum()
    h.mul_(2)  # h is not needed: p, which needs no gradient, would be its only reader
    out.backward()
    assert leaf.grad.tolist() == [[2.0, 2.0, 2.0]] * 2
    x = dk.tensor(np.ones((2, 3)))
    q = dk.tensor(np.ones((3, 2)), requires_grad=True)
    z = x @ q
    x.mul_(2)  # saved for q's gradient: the error
    with raises_naming(RuntimeError, "modified by an inplace operation"):
        z.sum().backward()


def test_a_view_taken_before_its_base_gained_a_history_joins_it():
    """As PyTorch regenerates a view's history: a view of a tensor outside the graph, taken before
    values that need grad were written into the tensor, reads (and writes) as the part of it it is."""
    w = dk.tensor([1.0, 2.0, 3.0], dtype=dk.float64, requires_grad=True)
    out = dk.zeros(2, 3, dtype=dk.float64)
    flat, column, transposed = out.view(-1), out[:, 1], out.t()
    out[0] = w * 2
    out[1] = w * 3
    assert flat.requires_grad and column.requires_grad and transposed.requires_grad
    ((flat * flat).sum() + out.sum() + column.sum() + transposed[0].sum()).backward()
    np.testing.assert_allclose(w.grad.numpy(), 26 * np.array([1.0, 2.0, 3.0]) + 5 + np.array([5.0, 5.0, 0.0]))


def test_a_view_taken_under_no_grad_of_a_leaf_that_needs_grad_is_not_written_with_grad_on():
    w = dk.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    with dk.no_grad():
        part = w[:2]
        part.mul_(2)  # under no_grad: allowed, as an optimizer step
    with raises_naming(RuntimeError, "no_grad", "leaf"):
        part.mul_(5)
    assert w.tolist() == [2.0, 4.0, 3.0, 4.0]
