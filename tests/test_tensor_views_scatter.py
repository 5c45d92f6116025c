"""Views of a tensor's memory and the rest of PyTorch's tensor long tail: unfold, as_strided and the
storage queries, the in-place shape changes (t_, squeeze_, resize_, ...), the scatters into views
(select/slice/diagonal_scatter), index_reduce, the splits, unique_consecutive, histogram(dd),
fill_diagonal_, apply_/map_, new and the conjugate family. Values, strides and gradients against
PyTorch in float64 and float32 (and int64 where it applies) on random inputs of odd, zero and
transposed shapes, gradients also by finite differences; writes through views reach their base
(and back) as in PyTorch; the in-place autograd rules and the errors as PyTorch's."""

from __future__ import annotations

import math
import warnings

import deepkern as dk
import numpy as np
import pytest
from deepkern import backends

from checks import gradcheck, raises_naming
from fake_device import FakeBackend

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore:index_reduce\\(\\) is in beta")

_INDEX = [0, 2, 0, 3, 2]
_MASK = [[True, False, True, False], [False, False, True, True], [True, True, False, False]]


def _index_reduce_case(reduce, include_self):
    return (
        lambda r: [r.standard_normal((4, 3)), r.standard_normal((5, 3))],
        lambda m, a, s: a.index_reduce(0, m.tensor(_INDEX), s, reduce, include_self=include_self),
    )


# name -> (inputs made from rng, the call on either library's module and tensors)
CASES = {
    "unfold_overlapping": (lambda r: [r.standard_normal((5, 7))], lambda m, a: a.unfold(1, 3, 2)),
    "unfold_with_gaps": (lambda r: [r.standard_normal((3, 8))], lambda m, a: a.unfold(-1, 2, 3)),
    "unfold_dim0_3d": (lambda r: [r.standard_normal((6, 2, 3))], lambda m, a: a.unfold(0, 4, 1)),
    "unfold_transposed": (lambda r: [r.standard_normal((7, 4))], lambda m, a: a.t().unfold(1, 3, 3)),
    "unfold_twice": (lambda r: [r.standard_normal((6, 7))], lambda m, a: a.unfold(0, 2, 1).unfold(1, 3, 2)),
    "unfold_whole": (lambda r: [r.standard_normal(5)], lambda m, a: a.unfold(0, 5, 1)),
    "unfold_scalar": (lambda r: [np.array(1.5)], lambda m, a: a.unfold(0, 1, 1)),
    "unfold_empty_windows": (lambda r: [r.standard_normal((4, 3))], lambda m, a: a.unfold(1, 0, 2)),
    "unfold_zero_size": (lambda r: [np.zeros((0, 3))], lambda m, a: a.unfold(1, 2, 1)),
    "as_strided": (lambda r: [r.standard_normal((4, 5))], lambda m, a: a.as_strided((3, 3), (4, 2), 1)),
    "as_strided_overlap": (lambda r: [r.standard_normal((3, 4))], lambda m, a: m.as_strided(a, (4, 3), (1, 2))),
    "as_strided_of_view": (lambda r: [r.standard_normal((5, 4))], lambda m, a: a[1:].as_strided((2, 3), (1, 4))),
    "as_strided_of_transposed": (
        lambda r: [r.standard_normal((3, 5))],
        lambda m, a: a.t().as_strided((5, 2), (1, 5), 2),
    ),
    "as_strided_reaching_outside": (
        lambda r: [r.standard_normal((4, 3))],
        lambda m, a: a[1:3].as_strided((2, 5), (3, 1), 0),
    ),
    "as_strided_of_expanded": (
        lambda r: [r.standard_normal((3, 1))],
        lambda m, a: a.expand(3, 4).as_strided((2, 2), (1, 0)),
    ),
    "as_strided_scalar": (lambda r: [r.standard_normal((2, 3))], lambda m, a: a.as_strided((), (), 4)),
    "select_scatter": (
        lambda r: [r.standard_normal((3, 4, 5)), r.standard_normal((3, 5))],
        lambda m, a, s: m.select_scatter(a, s, 1, -2),
    ),
    "select_scatter_transposed": (
        lambda r: [r.standard_normal((4, 3)), r.standard_normal(4)],
        lambda m, a, s: a.t().select_scatter(s, 0, 2),
    ),
    "slice_scatter": (
        lambda r: [r.standard_normal((4, 7)), r.standard_normal((4, 3))],
        lambda m, a, s: m.slice_scatter(a, s, 1, 1, 6, 2),
    ),
    "slice_scatter_default": (
        lambda r: [r.standard_normal((3, 2)), r.standard_normal((3, 2))],
        lambda m, a, s: a.slice_scatter(s),
    ),
    "slice_scatter_empty": (
        lambda r: [r.standard_normal((4, 3)), np.zeros((0, 3))],
        lambda m, a, s: a.slice_scatter(s, 0, 3, 1),
    ),
    "slice_scatter_negative": (
        lambda r: [r.standard_normal((6, 2)), r.standard_normal((2, 2))],
        lambda m, a, s: a.slice_scatter(s, 0, -3, -1),
    ),
    "diagonal_scatter": (
        lambda r: [r.standard_normal((4, 5)), r.standard_normal(4)],
        lambda m, a, s: m.diagonal_scatter(a, s, 1),
    ),
    "diagonal_scatter_3d": (
        lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((3, 1))],
        lambda m, a, s: a.diagonal_scatter(s, -1, 0, 2),
    ),
    **{
        f"index_reduce_{reduce}_{include}": _index_reduce_case(reduce, include)
        for reduce in ("prod", "mean", "amax", "amin")
        for include in (True, False)
    },
    "index_reduce_dim1": (
        lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 6))],
        lambda m, a, s: m.index_reduce(a, 1, m.tensor([1, 1, 3, 0, 1, 3]), s, "amin"),
    ),
    "index_reduce_transposed": (
        lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 5))],
        lambda m, a, s: a.t().index_reduce(0, m.tensor(_INDEX), s.t(), "mean"),
    ),
    "index_reduce_no_index": (
        lambda r: [r.standard_normal((3, 2)), np.zeros((0, 2))],
        lambda m, a, s: a.index_reduce(0, m.tensor([], dtype=m.int64), s, "mean", include_self=False),
    ),
    "index_reduce_ties": (  # self and source tie often: the gradient is shared among them
        lambda r: [np.round(r.standard_normal((4, 3))), np.round(r.standard_normal((5, 3)))],
        lambda m, a, s: a.index_reduce(0, m.tensor(_INDEX), s, "amax"),
    ),
    "index_reduce_prod_zeros": (
        lambda r: [np.array([[1.5, 0.0], [0.0, 3.0], [2.0, -1.0]]), np.array([[0.0, 2.0], [0.5, 0.0], [2.0, 4.0]])],
        lambda m, a, s: a.index_reduce(0, m.tensor([0, 0, 1]), s, "prod"),
    ),
    "narrow_copy": (lambda r: [r.standard_normal((4, 6))], lambda m, a: m.narrow_copy(a, 1, -4, 3)),
    "split_with_sizes": (lambda r: [r.standard_normal((3, 7))], lambda m, a: a.split_with_sizes([2, 0, 5], 1)),
    "unsafe_split_with_sizes": (
        lambda r: [r.standard_normal((4, 2))],
        lambda m, a: m.unsafe_split_with_sizes(a, [3, 1]),
    ),
    "unsafe_split": (lambda r: [r.standard_normal((5, 3))], lambda m, a: a.unsafe_split(2)),
    "unsafe_chunk": (lambda r: [r.standard_normal((5, 3))], lambda m, a: m.unsafe_chunk(a, 2, 1)),
    "hsplit": (lambda r: [r.standard_normal((3, 6))], lambda m, a: m.hsplit(a, [1, 4])),
    "hsplit_vector": (lambda r: [r.standard_normal(6)], lambda m, a: a.hsplit(3)),
    "vsplit": (lambda r: [r.standard_normal((6, 2))], lambda m, a: a.vsplit(3)),
    "dsplit": (lambda r: [r.standard_normal((2, 2, 4))], lambda m, a: m.dsplit(a, (3,))),
    "fill_diagonal_wrap": (lambda r: [r.standard_normal((7, 3))], lambda m, a: (a * 1).fill_diagonal_(-2.5, True)),
    "fill_diagonal_wide": (lambda r: [r.standard_normal((2, 5))], lambda m, a: (a * 1).fill_diagonal_(3, wrap=True)),
    "fill_diagonal_cube": (lambda r: [r.standard_normal((3, 3, 3))], lambda m, a: (a * 1).fill_diagonal_(4)),
    "fill_diagonal_transposed": (lambda r: [r.standard_normal((3, 5))], lambda m, a: (a * 1).t().fill_diagonal_(7)),
    "index_fill_tensor_value": (
        lambda r: [r.standard_normal((4, 3)), np.array(1.25)],
        lambda m, a, v: a.index_fill(1, m.tensor([0, 2]), v),
    ),
    "masked_fill_tensor_value": (
        lambda r: [r.standard_normal((3, 4)), np.array(-0.5)],
        lambda m, a, v: m.masked_fill(a, m.tensor(_MASK), v),
    ),
    "H": (lambda r: [r.standard_normal((3, 4))], lambda m, a: a.H),
    "mH": (lambda r: [r.standard_normal((2, 3, 4))], lambda m, a: a.mH),
    "adjoint": (lambda r: [r.standard_normal((2, 1, 3))], lambda m, a: m.adjoint(a)),
    "conjugates": (
        lambda r: [r.standard_normal((2, 3))],
        lambda m, a: a.conj() * m.conj_physical(a) + m.resolve_conj(a).resolve_neg() * a.real + m.real(a),
    ),
}

#: The cases whose ops PyTorch runs on int64 tensors too (the rest are float-only there, or need grads).
INTEGER_CASES = sorted(
    name
    for name in CASES
    if name.startswith(("unfold", "as_strided", "select", "slice", "diagonal", "index_reduce", "narrow", "split"))
    or name in ("hsplit", "vsplit", "dsplit", "unsafe_split", "unsafe_chunk", "H", "mH", "adjoint")
)

FLOAT_TOL = {np.float64: 1e-12, np.float32: 2e-6}


def _as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _lib_dtype(t) -> str:
    return str(t.dtype).replace("torch.", "")


def _run(lib, call, arrays, grad: bool):
    tensors = [lib.tensor(a, requires_grad=grad) for a in arrays]
    return tensors, _as_list(call(lib, *tensors))


def _compare(name, rng, dtype, grad=True):
    """Runs the case in both libraries: the same values, shapes, strides and dtypes, and with ``grad``
    the same gradients of a random weighting of the outputs."""
    arrays = [a.astype(dtype) if dtype != np.int64 else np.round(a * 3).astype(dtype) for a in CASES[name][0](rng)]
    call = CASES[name][1]
    ours, got = _run(dk, call, arrays, grad)
    theirs, ref = _run(torch, call, arrays, grad)
    assert len(got) == len(ref), name
    tol = FLOAT_TOL.get(np.dtype(dtype).type, 0)
    for o, r in zip(got, ref):
        assert o.shape == tuple(r.shape) and str(o.dtype) == _lib_dtype(r), (name, o.shape, r.shape, o.dtype, r.dtype)
        np.testing.assert_allclose(o.detach().numpy(), r.detach().numpy(), rtol=tol, atol=tol)
        if r._base is not None or r.is_contiguous():  # a view's layout (and a contiguous result's) is PyTorch's
            assert o.stride() == r.stride() or o.numel() <= 1, (name, o.stride(), r.stride())
    if not grad:
        return
    weights = [rng.standard_normal(o.shape).astype(dtype) for o in got]
    sum(
        ((o * dk.tensor(w)).sum() for o, w in zip(got, weights) if o.requires_grad), dk.tensor(0.0, dtype=dtype)
    ).backward()
    sum((r * torch.tensor(w)).sum() for r, w in zip(ref, weights) if r.requires_grad).backward()
    for t, r in zip(ours, theirs):
        expected = np.zeros(r.shape, dtype) if r.grad is None else r.grad.numpy()
        actual = np.zeros(t.shape, dtype) if t.grad is None else t.grad.numpy()
        np.testing.assert_allclose(actual, expected, rtol=10 * tol, atol=10 * tol, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_in_values_strides_and_gradients(name, dtype, rng):
    _compare(name, rng, dtype)


@pytest.mark.parametrize("name", INTEGER_CASES)
def test_matches_torch_on_integer_tensors(name, rng):
    _compare(name, rng, np.int64, grad=False)


FINITE_DIFFERENCE_CASES = [
    "unfold_overlapping",
    "unfold_transposed",
    "unfold_twice",
    "as_strided_overlap",
    "as_strided_of_view",
    "as_strided_of_expanded",
    "select_scatter",
    "slice_scatter",
    "diagonal_scatter_3d",
    "index_reduce_prod_True",
    "index_reduce_prod_False",
    "index_reduce_prod_zeros",
    "index_reduce_mean_False",
    "index_reduce_amax_True",
    "index_reduce_dim1",
    "fill_diagonal_wrap",
    "masked_fill_tensor_value",
]


@pytest.mark.parametrize("name", FINITE_DIFFERENCE_CASES)
def test_gradients_by_finite_differences(name, rng):
    tensors = [dk.tensor(a, requires_grad=True) for a in CASES[name][0](rng)]
    gradcheck(lambda *ts: CASES[name][1](dk, *ts), *tensors)


# -- unfold and as_strided: views of the memory ------------------------------------------------------


def _pair(array):
    return dk.tensor(array), torch.tensor(array)


def test_unfold_and_as_strided_write_through_to_their_base_and_back(rng):
    start = rng.standard_normal((4, 9))
    views = [
        lambda x: x.unfold(1, 2, 3),
        lambda x: x.t().unfold(0, 4, 5),
        lambda x: x.as_strided((2, 3), (9, 4), 2),
        lambda x: x[1:].as_strided((3,), (10,)),
    ]
    for view in views:
        results = []
        for x in _pair(start.copy()):
            v = view(x)
            v.mul_(-2)  # through the view: lands in the base
            v[..., 0] = 7.0
            x.add_(1)  # through the base: the view sees it
            results.append((x.numpy().copy(), v.numpy().copy(), v.storage_offset(), v.stride()))
        for ours, theirs in zip(*results):
            np.testing.assert_array_equal(ours, theirs)


def test_overlapping_views_refuse_in_place_writes_which_torch_does_in_an_unspecified_order(rng):
    x = dk.tensor(rng.standard_normal(6))
    before = x.numpy().copy()
    for view in (x.unfold(0, 3, 1), x.as_strided((2, 2), (1, 1)), x.as_strided((3,), (0,))):
        for write in (lambda v: v.add_(1), lambda v: v.fill_(0), lambda v: v.__setitem__(0, 2.0)):
            with raises_naming(RuntimeError, "read-only", "overlap"):
                write(view)
    np.testing.assert_array_equal(x.numpy(), before)
    leaf = dk.tensor(rng.standard_normal(6), requires_grad=True)
    with raises_naming(RuntimeError, "more than one element of the written-to tensor"):
        (leaf * 2).unfold(0, 2, 1).mul_(3)  # recorded: the write through the base is refused the same way
    # torch writes its storage; deepkern records a write through its base only, which must hold the elements
    with raises_naming(RuntimeError, "outside the tensor", r"\(4,\)"):
        (leaf * 2)[2:].as_strided((3,), (1,), 0).mul_(3)


def test_in_place_through_recorded_strided_views_matches_torch(rng):
    start, w0 = rng.standard_normal((3, 8)), rng.standard_normal(4)

    def run(lib):
        leaf, w = lib.tensor(start, requires_grad=True), lib.tensor(w0, requires_grad=True)
        y = leaf * 2
        windows = y.unfold(1, 2, 4)  # (3, 2, 2): disjoint
        windows.mul_(w.reshape(2, 2))
        out = windows.exp().sum()  # used before the next write into y (deepkern refuses it after)
        diag = y.as_strided((3,), (9,), 0)
        diag.add_(w[:3].exp())
        (out + (y * y).sum() + diag.sum()).backward()
        return y.detach().numpy(), leaf.grad.numpy(), w.grad.numpy()

    for ours, theirs in zip(run(dk), run(torch)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-13)

    def written(w):  # a tensor outside the graph written through its unfold view with values that need grad
        base = dk.zeros(2, 6, dtype=dk.float64)
        base.unfold(1, 3, 3)[:, 1].copy_(w.reshape(2, 3) * 3)
        return base.exp()

    w = dk.tensor(rng.standard_normal(6), requires_grad=True)
    assert written(w).requires_grad
    gradcheck(written, w)


def test_unfold_and_as_strided_errors_follow_torch():
    cases = [
        (
            RuntimeError,
            ["unfold", "maximum size for tensor at dimension 1 is 4 but size is 5"],
            lambda x: x.unfold(1, 5, 1),
        ),
        (RuntimeError, ["unfold", "step is 0 but must be > 0"], lambda x: x.unfold(1, 2, 0)),
        (RuntimeError, ["unfold", "size is -1 but must be >= 0"], lambda x: x.unfold(0, -1, 1)),
        (IndexError, ["unfold"], lambda x: x.unfold(2, 1, 1)),
        (RuntimeError, ["dimension 0 is 1 but size is 2"], lambda x: x[0, 0].unfold(0, 2, 1)),
        (
            RuntimeError,
            ["out of bounds for storage of size 48", "storage size of 56"],
            lambda x: x.as_strided((2, 2), (4, 4), 5),
        ),
        (RuntimeError, ["Negative strides", r"\[-1\]"], lambda x: x.as_strided((2,), (-1,), 5)),
        (RuntimeError, ["overflowed", r"sizes=\[-2\]"], lambda x: x.as_strided((-2,), (1,), 0)),
        (RuntimeError, ["invalid storage offset -1"], lambda x: x.as_strided((2,), (1,), -1)),
        (RuntimeError, ["mismatch in length of strides and shape"], lambda x: x.as_strided((2, 2), (1,), 0)),
        (RuntimeError, ["storage offset 12", "out of bounds"], lambda x: x[1].as_strided((), (), 12)),
    ]
    for exc, needles, make in cases:
        with raises_naming(exc, *needles):
            make(dk.zeros(3, 4))
        with pytest.raises(exc):
            make(torch.zeros(3, 4))
    for lib in (dk, torch):  # no elements: no bounds
        assert tuple(lib.zeros(3, 4).as_strided((0, 5), (100, 1), 13).shape) == (0, 5)


def test_storage_queries_match_torch(rng):
    a = rng.standard_normal((3, 4, 5))
    ours, theirs = _pair(a)
    for view in (
        lambda x: x,
        lambda x: x[1],
        lambda x: x[:, 2],
        lambda x: x.transpose(0, 2)[1],
        lambda x: x.permute(2, 0, 1)[3:, 1:],
        lambda x: x.unfold(2, 2, 3),
    ):
        o, t = view(ours), view(theirs)
        assert o.storage_offset() == t.storage_offset() and o.stride() == t.stride()
        assert o.data_ptr() - ours.data_ptr() == t.data_ptr() - theirs.data_ptr()
        assert o.is_set_to(view(ours)) and not o.is_set_to(o.clone())
    assert ours.is_set_to(ours.view(3, 4, 5)) and not ours.is_set_to(ours.view(12, 5))
    assert not ours.is_set_to(ours.transpose(0, 1)) and not theirs.is_set_to(theirs.transpose(0, 1))
    assert ours.element_size() == 8 and ours.nbytes == theirs.nbytes
    assert not ours.is_shared() and ours.share_memory_() is ours
    assert not ours.is_inference() and not dk.is_inference(ours) and not theirs.is_inference()
    with raises_naming(TypeError, "is_set_to", "tensor"):
        ours.is_set_to(3)


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 1, 3), (1, 3), (4,), (), (2, 3, 1, 5), (3, 1, 1, 2, 2)])
def test_dim_order_matches_torch(shape, rng):
    for _ in range(6):
        order = tuple(rng.permutation(len(shape)))
        ours = dk.zeros(*shape).permute(order)
        theirs = torch.zeros(shape).permute(order)
        assert ours.dim_order() == theirs.dim_order(), (shape, order)
        try:
            expected = theirs.dim_order(ambiguity_check=True)
        except RuntimeError:
            with raises_naming(RuntimeError, "unique dim order"):
                ours.dim_order(ambiguity_check=True)
        else:
            assert ours.dim_order(ambiguity_check=True) == expected
    with raises_naming(TypeError, "ambiguity_check"):
        dk.zeros(2).dim_order(ambiguity_check="yes")


def test_strided_creation_and_nonzero_static_match_torch(rng):
    for size, stride in (((2, 3), (1, 2)), ((2, 3), (3, 1)), ((4, 0, 2), (1, 5, 3)), ((), ())):
        for make in (
            lambda m, s=size, st=stride: m.empty_strided(s, st, dtype=m.float64),
            lambda m, s=size, st=stride: m.zeros(2, dtype=m.int32).new_empty_strided(s, st),
        ):
            o, t = make(dk), make(torch)
            assert o.shape == tuple(t.shape) and o.stride() == t.stride() and str(o.dtype) == _lib_dtype(t)
    assert dk.empty_strided((2,), (1,), requires_grad=True).requires_grad
    with raises_naming(RuntimeError, "empty_strided", "Negative strides"):
        dk.empty_strided((2,), (-1,))
    x = np.where(rng.random((4, 5)) < 0.4, rng.standard_normal((4, 5)), 0.0)
    for array in (x, x.astype(np.int64), np.array(3), np.array(0.0), np.zeros((2, 0))):
        for size, fill in ((3, -1), (7, 9), (0, -1)):
            got = dk.tensor(array).nonzero_static(size=size, fill_value=fill)
            ref = torch.tensor(array).nonzero_static(size=size, fill_value=fill)
            assert got.dtype == np.int64 and got.tolist() == ref.tolist() and got.shape == tuple(ref.shape)
    assert dk.nonzero_static(dk.tensor(x), size=2).tolist() == torch.nonzero_static(torch.tensor(x), size=2).tolist()
    with raises_naming(RuntimeError, "nonzero_static", "non-negative"):
        dk.tensor(x).nonzero_static(size=-1)
    with raises_naming(TypeError, "nonzero_static", "size", "float"):
        dk.tensor(x).nonzero_static(size=2.0)


# -- in-place shape changes ------------------------------------------------------------------------

SHAPE_CHANGES = {
    "t_": ((3, 4), lambda x: x.t_()),
    "t_vector": ((5,), lambda x: x.t_()),
    "transpose_": ((2, 3, 4), lambda x: x.transpose_(0, 2)),
    "swapaxes_": ((2, 3, 4), lambda x: x.swapaxes_(1, -1)),
    "swapdims_": ((2, 3, 4), lambda x: x.swapdims_(-3, 1)),
    "squeeze_": ((1, 3, 1), lambda x: x.squeeze_()),
    "squeeze_dim": ((1, 3, 1), lambda x: x.squeeze_(2)),
    "squeeze_dims": ((1, 3, 1), lambda x: x.squeeze_((0, 1))),
    "squeeze_not_one": ((2, 3), lambda x: x.squeeze_(0)),
    "unsqueeze_": ((2, 3), lambda x: x.unsqueeze_(1)),
    "unsqueeze_last": ((), lambda x: x.unsqueeze_(-1)),
    "as_strided_": ((3, 4), lambda x: x.as_strided_((2, 3), (1, 4), 1)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(SHAPE_CHANGES))
def test_in_place_shape_changes_match_torch(name, dtype, rng):
    shape, change = SHAPE_CHANGES[name]
    start = rng.standard_normal(shape).astype(dtype)
    x0 = rng.standard_normal(shape).astype(dtype)

    def run(lib):
        plain = lib.tensor(start.copy())
        assert change(plain) is plain
        leaf = lib.tensor(x0, requires_grad=True)
        y = leaf * 3
        change(y)
        y.mul_(y.detach() + 1)  # further in-place changes see the new shape
        weights = lib.tensor(np.arange(y.numel(), dtype=dtype).reshape(tuple(y.shape)))
        (y * weights).sum().backward()
        return plain.numpy(), plain.stride(), y.detach().numpy(), leaf.grad.numpy()

    for ours, theirs in zip(run(dk), run(torch)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-14 if dtype == np.float64 else 1e-6)


def test_in_place_shape_changes_follow_torchs_autograd_rules(rng):
    for lib in (dk, torch):
        leaf = lib.tensor(rng.standard_normal((2, 3)), requires_grad=True)
        with pytest.raises(RuntimeError, match="leaf"):
            leaf.t_()
        with pytest.raises(RuntimeError, match="leaf"):
            leaf[0].unsqueeze_(0)
        with lib.no_grad():
            leaf.t_()  # as an optimizer's step may
        assert leaf.shape == (3, 2) and leaf.is_leaf
        saved = leaf.exp()  # exp saves its output
        total = (saved * 1).sum()
        saved.squeeze_()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            total.backward()
    with raises_naming(RuntimeError, "t_", "3D"):
        dk.zeros(2, 3, 4).t_()
    with raises_naming(IndexError, "transpose"):
        dk.zeros(2, 3).transpose_(0, 2)


def test_in_place_shape_changes_of_views_keep_them_views_of_their_base(rng):
    def run(lib):
        a = lib.zeros(3, 4, dtype=lib.float64)
        row = a[1]
        row.unsqueeze_(0)  # still a view of a: writes reach it, with their history
        w = lib.tensor(rng.standard_normal(4), requires_grad=True)
        row.copy_(w.unsqueeze(0) * 3)
        leaf = lib.tensor(rng.standard_normal((3, 4)), requires_grad=True)
        y = leaf * 2
        col = y[:, 2]
        col.unsqueeze_(1).t_()  # a recorded view changed twice
        col.mul_(w[:3].reshape(1, 3))
        ((a + y) ** 2).sum().backward()
        return a.detach().numpy(), y.detach().numpy(), col.shape, w.grad.numpy(), leaf.grad.numpy()

    state = rng.bit_generator.state
    ours = run(dk)
    rng.bit_generator.state = state
    theirs = run(torch)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(o), np.asarray(t), rtol=1e-13)


def test_resize_matches_torch(rng):
    start = rng.standard_normal((3, 4))
    cases = [
        (lambda m, x: x.resize_(2, 5), 10),  # shrinks: the leading elements in memory order
        (lambda m, x: x.t().resize_(6), 6),  # of a transposed tensor: its storage's order
        (lambda m, x: x.resize_((4, 4)), 12),  # grows: the old elements first (the rest uninitialized in torch)
        (lambda m, x: x[1:].resize_(2, 2), 4),  # a view: from its own first element
        (lambda m, x: x.t().resize_(4, 3), 12),  # the same shape: a no-op keeping the strides
        (lambda m, x: m.resize_as_(x, m.zeros(0)), 0),
        (lambda m, x: x.resize_(0).resize_(2), 2),  # the storage keeps its elements
    ]
    for change, kept in cases:
        results = []
        for lib in (dk, torch):
            out = change(lib, lib.tensor(start.copy()))
            results.append((tuple(out.shape), out.stride(), out.reshape(-1)[:kept].tolist()))
        assert results[0] == results[1]
    for lib in (dk, torch):  # a shrunk view still shares its base's memory
        base = lib.tensor(start.copy())
        view = base[1:]
        view.resize_(2, 2)
        view.fill_(5.0)
        assert base[1:2].tolist() == [[5.0] * 4] and base[2].tolist() == start[2].tolist()
        with pytest.raises(RuntimeError, match="cannot resize variables that require grad"):
            lib.ones(3, requires_grad=True).resize_(2)
        with pytest.raises(RuntimeError, match="cannot resize variables that require grad"):
            (lib.ones(3, requires_grad=True) * 2).resize_as_(lib.ones(3))
    with raises_naming(RuntimeError, "resize_", "not resizable"):
        dk.from_numpy(np.arange(4.0)).resize_(10)
    with raises_naming(RuntimeError, "resize_", "negative dimension -1"):
        dk.ones(3).resize_(-1)
    grown = dk.tensor([1.0, 2.0]).resize_(2, 2)
    assert grown.tolist() == [[1.0, 2.0], [0.0, 0.0]]  # deepkern's new elements are zeros


# -- splits, narrow_copy, unique_consecutive -------------------------------------------------------


def test_splits_are_views_and_refuse_what_torch_refuses(rng):
    start = rng.standard_normal((4, 6))
    for split in (
        lambda x: x.split_with_sizes([1, 5], 1),
        lambda x: x.hsplit(2),
        lambda x: x.vsplit([1, 3]),
        lambda x: x.unsafe_split(3, 1),
        lambda x: x.unsafe_chunk(2),
    ):
        results = []
        for x in _pair(start.copy()):
            parts = split(x)
            parts[-1].mul_(-1)
            results.append(x.numpy().copy())
        np.testing.assert_array_equal(*results)
    copy = dk.tensor(start).narrow_copy(0, 1, 2)
    copy.fill_(0.0)
    assert np.all(dk.tensor(start).numpy() == start)
    x = dk.zeros(3, 4)
    cases = [
        (RuntimeError, ["sum exactly to 4", r"\[1, 2\]"], lambda: x.split_with_sizes([1, 2], 1)),
        (RuntimeError, ["non-negative entries", r"\[-1, 5\]"], lambda: x.split_with_sizes([-1, 5], 1)),
        (TypeError, ["split_with_sizes", "tuple of ints"], lambda: x.split_with_sizes(2, 1)),
        (RuntimeError, ["hsplit", "dimension 1", "size of the dimension 4", "split_size 3"], lambda: x.hsplit(3)),
        (RuntimeError, ["hsplit", "split_size 0"], lambda: x.hsplit(0)),
        (RuntimeError, ["hsplit", "at least 1 dimension", "0 dimensions"], lambda: dk.tensor(1.0).hsplit(1)),
        (RuntimeError, ["vsplit", "at least 2 dimension", "1 dimensions"], lambda: dk.zeros(6).vsplit(3)),
        (RuntimeError, ["vsplit", "split_size 2"], lambda: x.vsplit(2)),
        (RuntimeError, ["dsplit", "at least 3 dimension", "2 dimensions"], lambda: x.dsplit(2)),
        (TypeError, ["hsplit", "indices_or_sections"], lambda: x.hsplit(dk.tensor([1, 3]))),
        (RuntimeError, [r"start \(3\) \+ length \(2\) exceeds dimension size \(4\)"], lambda: x.narrow_copy(1, 3, 2)),
        (RuntimeError, [r"length \(-1\)"], lambda: x.narrow_copy(1, 1, -1)),
        (IndexError, ["start out of range", r"\[-4, 4\]", "5"], lambda: x.narrow_copy(1, 5, 0)),
        (RuntimeError, ["narrow", "0-dim"], lambda: dk.tensor(1.0).narrow_copy(0, 0, 1)),
    ]
    tx = torch.zeros(3, 4)
    for exc, needles, make in cases:
        with raises_naming(exc, *needles):
            make()
    for exc, make in [
        (RuntimeError, lambda: tx.split_with_sizes([1, 2], 1)),
        (RuntimeError, lambda: tx.hsplit(3)),
        (RuntimeError, lambda: torch.zeros(6).vsplit(3)),
        (RuntimeError, lambda: tx.narrow_copy(1, 3, 2)),
        (IndexError, lambda: tx.narrow_copy(1, 5, 0)),
    ]:
        with pytest.raises(exc):
            make()


@pytest.mark.parametrize(
    "make",
    [
        lambda r: r.integers(0, 3, 17),
        lambda r: r.integers(0, 2, (4, 5)),
        lambda r: np.repeat(r.standard_normal(4), r.integers(1, 4, 4)).astype(np.float32),
        lambda r: np.array([np.nan, np.nan, 1.0, -0.0, 0.0, np.inf, np.inf]),
        lambda r: r.integers(0, 2, 9).astype(bool),
        lambda r: np.zeros(0),
        lambda r: np.array(3.5),
    ],
)
def test_unique_consecutive_matches_torch(make, rng):
    a = make(rng)
    for kw in ({}, {"return_inverse": True}, {"return_counts": True}, {"return_inverse": True, "return_counts": True}):
        got, ref = (
            _as_list(dk.unique_consecutive(dk.tensor(a), **kw)),
            _as_list(torch.tensor(a).unique_consecutive(**kw)),
        )
        for o, r in zip(got, ref):
            assert o.shape == tuple(r.shape) and str(o.dtype) == _lib_dtype(r)
            np.testing.assert_array_equal(o.numpy(), r.numpy())
    assert not dk.tensor(a).unique_consecutive().requires_grad


def test_unique_consecutive_along_a_dimension_matches_torch(rng):
    rows = rng.integers(0, 2, (7, 3))[rng.integers(0, 7, 9)]
    rows[2] = rows[1]
    for array, dim in ((rows, 0), (rows.T, 1), (rows.T.astype(np.float64), -1), (np.zeros((0, 2)), 0)):
        got = dk.tensor(array).unique_consecutive(return_inverse=True, return_counts=True, dim=dim)
        ref = torch.tensor(array).unique_consecutive(return_inverse=True, return_counts=True, dim=dim)
        for o, r in zip(got, ref):
            assert o.shape == tuple(r.shape) and o.tolist() == r.tolist()
    with raises_naming(RuntimeError, "0 sized dimensions"):
        dk.zeros(2, 0).unique_consecutive(dim=0)
    with raises_naming(IndexError, "no dimensions"):
        dk.tensor(3.0).unique_consecutive(dim=0)


# -- scatters into views, index_reduce -------------------------------------------------------------


def test_scatter_views_refuse_what_torch_refuses():
    x = dk.zeros(3, 4)
    cases = [
        (
            RuntimeError,
            ["src size = \\[3\\]", "slice size = \\[4\\]"],
            lambda m, x: m.select_scatter(x, m.ones(3), 0, 1),
        ),
        (RuntimeError, ["slice size"], lambda m, x: m.select_scatter(x, m.ones(1), 0, 1)),
        (IndexError, ["index 3 out of range", "dimension 0"], lambda m, x: m.select_scatter(x, m.ones(4), 0, 3)),
        (IndexError, ["0-dim"], lambda m, x: m.select_scatter(m.tensor(1.0), m.tensor(2.0), 0, 0)),
        (TypeError, ["select_scatter", "src"], lambda m, x: m.select_scatter(x, 1.0, 0, 1)),
        (RuntimeError, ["src size = \\[3, 3\\]", "\\[3, 2\\]"], lambda m, x: x.slice_scatter(m.ones(3, 3), 1, 1, 4, 2)),
        (RuntimeError, ["slice step must be positive"], lambda m, x: x.slice_scatter(m.ones(3, 3), 1, 1, 4, 0)),
        (IndexError, ["0-dim"], lambda m, x: m.slice_scatter(m.tensor(1.0), m.tensor(2.0))),
        (RuntimeError, ["src size = \\[4\\]", "slice size = \\[3\\]"], lambda m, x: x.diagonal_scatter(m.ones(4), 1)),
        (
            RuntimeError,
            ["diagonal dimensions cannot be identical 1, 1"],
            lambda m, x: x.diagonal_scatter(m.ones(3), 0, 1, 1),
        ),
        (IndexError, ["diagonal_scatter|Dimension"], lambda m, x: m.zeros(3).diagonal_scatter(m.ones(3))),
    ]
    for exc, needles, make in cases:
        with raises_naming(exc, *needles):
            make(dk, x)
        with pytest.raises(exc):
            make(torch, torch.zeros(3, 4))
    # a source of another dtype is cast, as torch casts it
    mixed = dk.select_scatter(x, dk.tensor([1, 2, 3, 4]), 0, 1)
    assert mixed.dtype == np.float32 and mixed[1].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_index_reduce_in_place_and_integer_means_match_torch(rng):
    x, s = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))

    def run(lib):
        leaf, source = lib.tensor(x, requires_grad=True), lib.tensor(s, requires_grad=True)
        y = leaf * 1
        assert y.index_reduce_(0, lib.tensor(_INDEX), source, "prod", include_self=False) is y
        z = y * 1
        z.index_reduce_(0, lib.tensor([3, 1, 1, 0, 2], dtype=lib.int32), source * 2, "amax")
        scalar = leaf[0, 0] * 1  # 0-d: reduced as one element
        scalar.index_reduce_(0, lib.tensor(0), source[0, 0], "prod")
        ((z * z).sum() + scalar * scalar).backward()
        return z.detach().numpy(), scalar.detach().numpy(), leaf.grad.numpy(), source.grad.numpy()

    for ours, theirs in zip(run(dk), run(torch)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    ints, src = rng.integers(-9, 9, (3, 2)), rng.integers(-9, 9, (4, 2))
    for include in (True, False):
        for reduce in ("mean", "prod", "amax", "amin"):
            got = dk.tensor(ints).index_reduce(0, dk.tensor([0, 0, 2, 0]), dk.tensor(src), reduce, include_self=include)
            ref = torch.tensor(ints).index_reduce(
                0, torch.tensor([0, 0, 2, 0]), torch.tensor(src), reduce, include_self=include
            )
            assert got.dtype == np.int64 and got.tolist() == ref.tolist()
    scalar = dk.tensor(2.0).index_reduce(0, dk.tensor(0), dk.tensor(3.0), "prod")
    assert (
        scalar.shape == ()
        and scalar.item() == torch.tensor(2.0).index_reduce(0, torch.tensor(0), torch.tensor(3.0), "prod").item()
    )
    with raises_naming(RuntimeError, "index_reduce_", "leaf"):
        dk.ones(3, 2, requires_grad=True).index_reduce_(0, dk.tensor([0]), dk.ones(1, 2), "prod")


def test_index_reduce_refuses_what_torch_refuses():
    x, s, i = dk.full((3, 2), 2.0), dk.ones(3, 2), dk.tensor([0, 2, 0])
    cases = [
        (
            RuntimeError,
            ["one of prod, mean, amax or amin but got sum"],
            lambda m, x, s, i: x.index_reduce(0, i, s, "sum"),
        ),
        (
            RuntimeError,
            ["self \\(float32\\)|self \\(Float\\)", "same scalar type"],
            lambda m, x, s, i: x.index_reduce(0, i, s.double(), "prod"),
        ),
        (RuntimeError, ["int32/int64 for index"], lambda m, x, s, i: x.index_reduce(0, i.float(), s, "prod")),
        (
            IndexError,
            ["Index is supposed to be a vector", "dim: 2"],
            lambda m, x, s, i: x.index_reduce(0, i.reshape(3, 1), s, "prod"),
        ),
        (
            IndexError,
            ["index out of range in self"],
            lambda m, x, s, i: x.index_reduce(0, m.tensor([0, 3, 0]), s, "prod"),
        ),
        (
            IndexError,
            ["index out of range in self"],
            lambda m, x, s, i: x.index_reduce(0, m.tensor([0, -1, 0]), s, "prod"),
        ),
        (
            RuntimeError,
            ["Number of indices \\(3\\)", "source.size\\(dim\\): \\(2\\)"],
            lambda m, x, s, i: x.index_reduce(0, i, s[:2], "prod"),
        ),
        (
            RuntimeError,
            ["source tensor shape must match", "\\[3, 2\\]", "\\[3, 3\\]"],
            lambda m, x, s, i: x.index_reduce(0, i, m.ones(3, 3), "prod"),
        ),
        (IndexError, ["index_reduce|Dimension out of range"], lambda m, x, s, i: x.index_reduce(2, i, s, "prod")),
        (
            NotImplementedError,
            ["index_func_", "Bool"],
            lambda m, x, s, i: m.tensor([True]).index_reduce(0, m.tensor([0]), m.tensor([False]), "amax"),
        ),
    ]
    t = (torch.full((3, 2), 2.0), torch.ones(3, 2), torch.tensor([0, 2, 0]))
    for exc, needles, make in cases:
        with raises_naming(exc, *needles):
            make(dk, x, s, i)
        with pytest.raises(exc):
            make(torch, *t)


# -- histograms ------------------------------------------------------------------------------------


def _check_histogram(got, ref, dtype, what):
    """Counts exactly (or weighted sums within float rounding), and PyTorch's edges (its float32
    linspace may differ in the last place where it vectorizes)."""
    assert str(got.hist.dtype) == _lib_dtype(ref.hist) == np.dtype(dtype).name, what
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got.hist.numpy(), ref.hist.numpy(), rtol=tol, atol=tol, err_msg=what)
    for o, r in zip(_as_list(got.bin_edges), _as_list(ref.bin_edges)):
        assert str(o.dtype) == _lib_dtype(r)
        np.testing.assert_allclose(o.numpy(), r.numpy(), rtol=2e-7 if dtype == np.float32 else 1e-15, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_histogram_matches_torch(dtype, rng):
    data = rng.standard_normal((7, 31)).astype(dtype)
    weight = rng.uniform(0, 2, (7, 31)).astype(dtype)
    on_edges = np.repeat(np.linspace(-2, 2, 9), 3).astype(dtype)  # exactly on (float) bin edges
    cases = [
        (data, {"bins": 13}),
        (data, {"bins": 5, "range": (-1.0, 1.5)}),
        (data.T, {"bins": 4, "weight": weight.T, "density": True}),
        (data, {"bins": 6, "range": (-1, 1), "density": True}),
        (on_edges, {"bins": 8}),
        (on_edges, {"bins": 4, "range": (-2, 2), "weight": on_edges * 0 + 0.5}),
        (np.full(5, 2.0, dtype), {"bins": 4}),
        (np.zeros(0, dtype), {"bins": 3}),
        (np.array([1.0, np.nan, 2.0, np.inf], dtype), {"bins": 4, "range": (0.0, 3.0)}),
        (data, {}),
    ]
    for array, kw in cases:
        for call in (lambda m, a, kw: m.histogram(a, **kw), lambda m, a, kw: a.histogram(**kw)):

            def args(m, kw=kw):
                return {k: m.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}

            got, ref = call(dk, dk.tensor(array), args(dk)), call(torch, torch.tensor(array), args(torch))
            assert type(got).__name__ == type(ref).__name__ == "histogram"
            _check_histogram(got, ref, dtype, str(kw))
    for edges in ([-1.0, 0.0, 0.5, 2.0], [0.0, 1.0], np.linspace(-2, 2, 9)):
        e = np.asarray(edges, dtype)
        for kw in ({}, {"weight": weight, "density": True}):
            got = dk.histogram(
                dk.tensor(data),
                dk.tensor(e),
                **{k: dk.tensor(v) for k, v in kw.items() if k == "weight"},
                density=bool(kw),
            )
            ref = torch.histogram(
                torch.tensor(data),
                torch.tensor(e),
                **{k: torch.tensor(v) for k, v in kw.items() if k == "weight"},
                density=bool(kw),
            )
            _check_histogram(got, ref, dtype, f"edges {edges}")
    assert not dk.histogram(dk.tensor(data, requires_grad=True), 3).hist.requires_grad


def test_histogramdd_matches_torch(rng):
    points = rng.standard_normal((40, 3))
    weight = rng.uniform(0, 1, 40)
    edges = [np.sort(rng.standard_normal(4)), np.array([-1.0, 1.0]), np.linspace(-3, 3, 6)]
    cases = [
        (points, {"bins": 3}),
        (points, {"bins": [2, 4, 3], "weight": weight}),
        (points, {"bins": [2, 3, 1], "range": [-1.0, 1.0, -2.0, 0.5, 0.0, 3.0], "density": True}),
        (points.reshape(4, 10, 3), {"bins": 2, "weight": weight.reshape(4, 10)}),
        (points[:, :2].astype(np.float32), {"bins": [3, 5]}),
        (points, {"bins": edges}),
        (np.zeros((0, 2)), {"bins": 2}),
    ]
    for array, kw in cases:

        def args(m, kw=kw):
            out = {k: m.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
            if isinstance(kw["bins"], list) and isinstance(kw["bins"][0], np.ndarray):
                out["bins"] = [m.tensor(e) for e in kw["bins"]]
            return out

        got, ref = dk.histogramdd(dk.tensor(array), **args(dk)), torch.histogramdd(torch.tensor(array), **args(torch))
        assert type(got).__name__ == "histogramdd" and isinstance(got.bin_edges, tuple)
        _check_histogram(got, ref, array.dtype.type, str(kw))


def test_histograms_refuse_what_torch_refuses():
    x = np.array([1.0, 2.0, 1.0, 2.5, 4.0], np.float32)
    cases = [
        (RuntimeError, ["bins must be > 0, but got 0 for dimension 0"], lambda m, t: m.histogram(t, 0)),
        (RuntimeError, ["bins must be > 0", "-1"], lambda m, t: m.histogram(t, -1)),
        (RuntimeError, ["min should not exceed max", "min 3 max 1"], lambda m, t: m.histogram(t, 3, range=(3.0, 1.0))),
        (RuntimeError, ["range \\[0, inf\\] is not finite"], lambda m, t: m.histogram(t, 3, range=(0.0, math.inf))),
        (RuntimeError, ["range \\[nan, nan\\] is not finite"], lambda m, t: m.histogram(m.tensor([1.0, math.nan]), 4)),
        (NotImplementedError, ["histogramdd", "int64|Long"], lambda m, t: m.histogram(m.tensor([1, 2]), 4)),
        (RuntimeError, ["bins tensor should have one dimension"], lambda m, t: m.histogram(t, m.tensor([[0.0, 2.0]]))),
        (
            RuntimeError,
            ["same dtype", "bins for dimension 0"],
            lambda m, t: m.histogram(t, m.tensor([0.0, 2.0], dtype=m.float64)),
        ),
        (RuntimeError, ["bins must be > 0, but got 0"], lambda m, t: m.histogram(t, m.tensor([0.0]))),
        (TypeError, ["histogram"], lambda m, t: m.histogram(t, m.tensor([0.0, 1.0]), range=(0.0, 1.0))),
        (TypeError, ["histogram"], lambda m, t: m.histogram(t, [1, 2])),
        (
            RuntimeError,
            ["same shape", "weight with shape \\[2\\]"],
            lambda m, t: m.histogram(t, 3, weight=m.tensor([1.0, 2.0])),
        ),
        (
            RuntimeError,
            ["weight tensor should have the same dtype"],
            lambda m, t: m.histogram(t, 3, weight=m.tensor([1, 2, 3, 4, 5])),
        ),
        (
            RuntimeError,
            ["range should have 2 elements, but got 3"],
            lambda m, t: m.histogram(t, 2, range=(0.0, 1.0, 2.0)),
        ),
        (RuntimeError, ["at least 2 dimensions"], lambda m, t: m.histogramdd(t, bins=2)),
        (
            RuntimeError,
            ["size of bins must be equal to the innermost dimension"],
            lambda m, t: m.histogramdd(t.reshape(5, 1), bins=[2, 2]),
        ),
        (
            RuntimeError,
            ["range should have 4 elements, but got 2"],
            lambda m, t: m.histogramdd(m.zeros(2, 2), bins=2, range=[0.0, 1.0]),
        ),
    ]
    for exc, needles, make in cases:
        with raises_naming(exc, *needles):
            make(dk, dk.tensor(x))
        with pytest.raises(exc):
            make(torch, torch.tensor(x))


# -- fill_diagonal_, apply_, map_, new ------------------------------------------------------------------


def test_fill_diagonal_matches_torch(rng):
    for shape, value, wrap, view in (
        ((4, 4), 2.5, False, lambda x: x),
        ((9, 3), -1.0, True, lambda x: x),
        ((3, 7), 5, True, lambda x: x),
        ((5, 4), 1.5, False, lambda x: x.t()),
        ((3, 3, 3), 7, False, lambda x: x),
        ((0, 3), 1, False, lambda x: x),
    ):
        for dtype in (np.float64, np.float32, np.int64, np.bool_):
            start = (rng.standard_normal(shape) * 3).astype(dtype)
            results = []
            for x in _pair(start.copy()):
                assert view(x).fill_diagonal_(value, wrap=wrap) is not None
                results.append(x.numpy().copy())
            np.testing.assert_array_equal(*results)
    for lib in (dk, torch):
        with pytest.raises(RuntimeError, match="dimensions must larger than 1"):
            lib.zeros(3).fill_diagonal_(1)
        with pytest.raises(RuntimeError, match="all dimensions of input must be of equal length"):
            lib.zeros(2, 3, 3).fill_diagonal_(1)
        with pytest.raises(RuntimeError, match="leaf"):
            lib.zeros(2, 2, requires_grad=True).fill_diagonal_(1)
        with pytest.raises(TypeError, match="fill_value"):
            lib.zeros(2, 2).fill_diagonal_(lib.tensor(3.0, requires_grad=True))
        assert lib.zeros(2, 2).fill_diagonal_(lib.tensor(3.0)).tolist() == [[3.0, 0.0], [0.0, 3.0]]


def test_apply_and_map_match_torch(rng):
    floats = rng.standard_normal((3, 4))
    ints = rng.integers(-5, 5, (3, 4))
    cases = [
        (floats, lambda x, m: x.apply_(lambda v: v * v - 1)),
        (ints, lambda x, m: x.apply_(lambda v: v * 2.7)),  # ints truncate
        (floats, lambda x, m: x.t().apply_(lambda v: v + 3)),  # a view: written through
        (floats, lambda x, m: x[1].apply_(abs)),
        (ints > 0, lambda x, m: x.apply_(lambda v: not v)),
        (np.array(2.5), lambda x, m: x.apply_(lambda v: v / 2)),
        (floats, lambda x, m: x.map_(m.tensor(floats[1]), lambda a, b: a * b + 1)),
        (ints, lambda x, m: x.map_(m.tensor(ints[:, :1]), lambda a, b: max(a, b))),
    ]
    for start, call in cases:
        results = []
        for lib in (dk, torch):
            x = lib.tensor(start.copy())
            call(x, lib)
            results.append(x.numpy())
        np.testing.assert_array_equal(*results)
    refused = [
        (
            RuntimeError,
            "Can't call apply_\\(\\) on Variable that requires grad",
            lambda m, x: x.requires_grad_().apply_(abs),
        ),
        (
            RuntimeError,
            "Can't call map_\\(\\) on Variable that requires grad",
            lambda m, x: x.map_(m.ones(3, requires_grad=True), max),
        ),
        (TypeError, "must be real number, not str", lambda m, x: x.detach().apply_(lambda v: "a")),
        (TypeError, "not callable", lambda m, x: x.detach().apply_(3)),
        (TypeError, "map_.*LongTensor", lambda m, x: x.detach().map_(m.ones(3, dtype=m.int64), max)),
        (TypeError, "map_.*other.*float", lambda m, x: x.detach().map_(3.0, max)),
        (RuntimeError, None, lambda m, x: x.detach().map_(m.ones(2, 3), max)),  # messages differ: below
    ]
    for exc, pattern, make in refused:
        for lib in (dk, torch):
            x = lib.ones(3)
            with pytest.raises(exc, match=pattern):
                make(lib, x)
            assert x.tolist() == [1.0, 1.0, 1.0]
    with raises_naming(RuntimeError, "map_", r"\(2, 3\)", "does not broadcast"):
        dk.ones(3).map_(dk.ones(2, 3), max)
    with raises_naming(RuntimeError, "read-only"):
        dk.ones(3, 1).expand(3, 2).apply_(abs)
    # an in-place write deepkern counts (torch does not): a value saved for a backward then raises there
    w = dk.ones(3, requires_grad=True)
    x = dk.full((3,), 2.0)
    out = (w * x).sum()
    x.apply_(lambda v: v + 1)
    with raises_naming(RuntimeError, "modified by an inplace operation"):
        out.backward()


def test_new_matches_torch():
    for template in (np.zeros(2, np.float32), np.zeros((2, 2), np.int64)):
        ours, theirs = _pair(template)
        for args in ((), (2, 3), ([1, 2],), ([[1.5, 2]],), (np.array([3, 4]),), ([],), (0,), (3,)):
            o, t = ours.new(*args), theirs.new(*args)
            assert o.shape == tuple(t.shape) and str(o.dtype) == _lib_dtype(t), args
            if args and not isinstance(args[0], int):
                assert o.tolist() == t.tolist()
        assert ours.new((2, 3)).shape == (2, 3)  # a tuple is a shape (deepkern's shapes are tuples: torch.Size)
        assert ours.new(2, device="cpu").device == dk.device("cpu")
        with raises_naming(TypeError, "new", "data must be a sequence"):
            ours.new(2.5)
        other = dk.tensor(template + 1, requires_grad=template.dtype.kind == "f")
        alias = ours.new(other)  # an alias of a tensor of the same dtype, as torch's
        assert alias.requires_grad == other.requires_grad and alias.data_ptr() == other.data_ptr()
        with raises_naming(TypeError, "new", "dtype"):
            ours.new(dk.tensor([1, 2], dtype=dk.int32))
        with pytest.raises(TypeError):
            theirs.new(torch.tensor([1, 2], dtype=torch.int32))
        with pytest.raises(TypeError):
            ours.new(2, dtype=dk.float64)


# -- conjugates and transposes ---------------------------------------------------------------------


def test_conjugate_family_on_real_tensors_follows_torch(rng):
    ours, theirs = _pair(rng.standard_normal((2, 3)))
    for name in ("conj", "conj_physical", "resolve_conj", "resolve_neg"):
        assert getattr(ours, name)() is ours and getattr(theirs, name)() is theirs
        assert getattr(dk, name)(ours) is ours
    assert ours.real is ours and dk.real(ours) is ours and theirs.real is theirs
    assert ours.conj_physical_() is ours
    assert not (ours.is_conj() or ours.is_neg() or dk.is_conj(ours) or dk.is_neg(ours))
    leaf = dk.ones(3, requires_grad=True)
    assert leaf.conj() is leaf and leaf.real is leaf
    for lib, x, w in ((dk, ours, leaf), (torch, theirs, torch.ones(3, requires_grad=True))):
        with pytest.raises(RuntimeError, match="imag is not implemented for tensors with non-complex dtypes"):
            x.imag  # noqa: B018
        with pytest.raises(RuntimeError, match="imag is not implemented"):
            lib.imag(x)
        with pytest.raises(RuntimeError, match="leaf"):
            w.conj_physical_()
    z = np.array([1 + 2j, -3.5j, 2.0])
    got, ref = dk.tensor(z).conj(), torch.tensor(z).conj().resolve_conj()
    np.testing.assert_array_equal(got.numpy(), ref.numpy())
    got = dk.tensor(np.stack([z, z * 2])).H
    np.testing.assert_array_equal(got.numpy(), torch.tensor(np.stack([z, z * 2])).H.resolve_conj().numpy())
    with raises_naming(NotImplementedError, "real", "complex"):
        dk.tensor(z).real  # noqa: B018


def test_matrix_transposes_refuse_and_warn_as_torch():
    for lib in (dk, torch):
        for shape, good in (((3,), ()), ((2, 3, 4), ("mH", "adjoint"))):
            x = lib.zeros(shape)
            for name in ("H", "mH", "adjoint"):
                if name in good:
                    continue
                with pytest.raises(RuntimeError, match="only supported on matrices"):
                    x.adjoint() if name == "adjoint" else getattr(x, name)
        scalar = lib.tensor(2.0)
        for get in (lambda s: s.H, lambda s: s.mH, lambda s: s.adjoint()):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert get(scalar).item() == 2.0
            assert any("deprecated on 0-D tensors" in str(w.message) for w in caught)
    with raises_naming(RuntimeError, "tensor.H", "3-D", "mH"):
        dk.zeros(2, 3, 4).H  # noqa: B018


def test_new_names_exist_where_torch_has_them():
    methods = """unfold split_with_sizes unsafe_split unsafe_chunk unsafe_split_with_sizes hsplit vsplit dsplit
    narrow_copy unique_consecutive as_strided as_strided_ storage_offset data_ptr new_empty_strided nonzero_static
    is_set_to is_shared share_memory_ dim_order is_inference squeeze_ unsqueeze_ t_ transpose_ swapaxes_ swapdims_
    resize_ resize_as_ select_scatter slice_scatter diagonal_scatter index_reduce index_reduce_ histogram
    fill_diagonal_ apply_ map_ new H mH adjoint conj conj_physical conj_physical_ resolve_conj resolve_neg is_conj
    is_neg real imag""".split()
    functions = """split_with_sizes unsafe_split unsafe_chunk unsafe_split_with_sizes hsplit vsplit dsplit narrow_copy
    unique_consecutive as_strided as_strided_ empty_strided nonzero_static resize_as_ select_scatter slice_scatter
    diagonal_scatter index_reduce histogram histogramdd adjoint conj conj_physical conj_physical_ resolve_conj
    resolve_neg is_conj is_neg real imag is_inference""".split()
    assert [m for m in methods if not hasattr(torch.Tensor, m)] == []
    assert [f for f in functions if not hasattr(torch, f)] == []
    assert [m for m in methods if not hasattr(dk.Tensor, m)] == []
    assert [f for f in functions if not hasattr(dk, f)] == []


@pytest.fixture
def fake_device(monkeypatch):
    """tests/fake_device.py's second device, registered for the test."""
    monkeypatch.setattr(backends, "_BACKENDS", {n: b for n, b in backends._BACKENDS.items() if n != FakeBackend.name})
    backends.register(FakeBackend())
    return "fake"


def test_memory_views_refuse_other_devices_and_the_rest_keeps_the_device(fake_device, rng):
    a = rng.standard_normal((4, 3))
    x = dk.tensor(a, device=fake_device)
    refused = {
        "as_strided": lambda: x.as_strided((2,), (1,)),
        "unfold": lambda: x.unfold(0, 2, 1),
        "storage_offset": lambda: x.storage_offset(),
        "resize_": lambda: x.clone().resize_(2),
        "unsqueeze_": lambda: x[1].unsqueeze_(0),  # a view: kept a view of its base through its storage
        "empty_strided": lambda: dk.empty_strided((2,), (1,), device=fake_device),
    }
    for name, make in refused.items():
        with raises_naming(NotImplementedError, name, "host memory"):
            make()
    kept = [
        x.clone().t_().unsqueeze_(1),
        x.select_scatter(dk.ones(3, dtype=dk.float64, device=fake_device), 0, 1),
        x.slice_scatter(dk.ones(4, 1, dtype=dk.float64, device=fake_device), 1, 2),
        x.diagonal_scatter(dk.ones(3, dtype=dk.float64, device=fake_device)),
        x.index_reduce(0, dk.tensor([0, 0], device=fake_device), x[:2] * 2, "mean"),
        x.clone().fill_diagonal_(3.0),
        x.unique_consecutive(),
        x.nonzero_static(size=2),
        x.histogram(3).hist,
    ]
    for out in kept:
        assert out.device == dk.device(fake_device)
    np.testing.assert_array_equal(kept[0].cpu().numpy(), a.T[:, None])
    np.testing.assert_array_equal(
        kept[3].cpu().numpy(), dk.tensor(a).diagonal_scatter(dk.ones(3, dtype=dk.float64)).numpy()
    )


@pytest.mark.parametrize(
    "change",
    [lambda x: x.t_(), lambda x: x.transpose_(0, 1), lambda x: x.unsqueeze_(0), lambda x: x.resize_(9)],
    ids=["t_", "transpose_", "unsqueeze_", "resize_"],
)
def test_a_view_taken_before_its_base_changed_shape_refuses_to_join_the_graph(change):
    """A view of a tensor outside the graph follows the base once values that need grad are written
    into it, by taking its key again on the base; after an in-place shape change of the base that key
    would pick other elements (a transposed square base: silently), so it raises instead."""
    x = dk.tensor(np.arange(9.0).reshape(3, 3))
    view = x[0]
    change(x)
    w = dk.tensor(np.full(x.shape, 2.0), requires_grad=True)
    x.mul_(w)
    with raises_naming(RuntimeError, "taken before its base's shape or memory changed", "take the view again"):
        view * 1
    fresh = dk.tensor(np.arange(9.0).reshape(3, 3))
    view = fresh[0]
    fresh.mul_(dk.tensor(np.full((3, 3), 2.0), requires_grad=True))
    assert (view * 1).requires_grad  # without the change, the view follows its base
