"""bfloat16 in the floating-point ops of the network API: the activations relu (on deepkern's
kernel), silu, elu, softplus, prelu, hardtanh and mish, normalize, cosine_similarity, the losses,
Tensor.var/std and the random fills.

Each op takes bfloat16 inputs as PyTorch's CPU kernels do: widened to float32 (exact), computed in
float32 and rounded once to bfloat16. With u = 2^-8, bfloat16's unit roundoff, the result is within
u/2 |ref| of the float64 result on the same (exact) bfloat16 values, plus float32's own rounding:
the tests allow u |ref| + 1e-4 * scale (scale = the largest |ref|), which an op that rounded to
bfloat16 more than once (e.g. a bfloat16 difference, then its square, then a bfloat16 sum) misses.
The forward and backward passes are exactly the float32 path's, rounded once (the casts are exact).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib

import deepkern
import deepkern.nn.functional as F
import numpy as np
import pytest

from checks import raises_naming

BF16 = deepkern.bfloat16
U = 2.0**-8


def bf16(a) -> np.ndarray:
    return np.asarray(a, np.float64).astype(BF16)


def f64(a) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


def _log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _norm(x, axis):
    return np.sqrt((x * x).sum(axis=axis, keepdims=True))


def _var(x):
    """The unbiased variance along axis 1 (NaN for a single element, as PyTorch's)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=1) / (x.shape[1] - 1)


def _pick(x, t):
    return x[np.arange(len(t)), t]


# name -> (op on (F, *inputs): the same code calls deepkern's and torch's functional module,
#          float64 reference on the inputs' values, inputs (bfloat16 arrays; int64 targets) for a shape)
CASES = {
    "relu": (lambda F, x: F.relu(x), lambda x: np.maximum(x, 0), lambda r, s: [normal(r, s)]),
    "silu": (lambda F, x: F.silu(x), lambda x: x / (1 + np.exp(-x)), lambda r, s: [normal(r, s)]),
    "elu": (
        lambda F, x: F.elu(x, alpha=0.7),
        lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
        lambda r, s: [normal(r, s)],
    ),
    "softplus": (
        lambda F, x: F.softplus(x, beta=1.5, threshold=3.0),
        lambda x: np.where(1.5 * x > 3.0, x, np.log1p(np.exp(1.5 * x)) / 1.5),
        lambda r, s: [normal(r, s)],
    ),
    "hardtanh": (
        lambda F, x: F.hardtanh(x, min_val=-0.5, max_val=0.8),
        lambda x: np.clip(x, -0.5, 0.8),
        lambda r, s: [normal(r, s)],
    ),
    "mish": (lambda F, x: F.mish(x), lambda x: x * np.tanh(np.logaddexp(0, x)), lambda r, s: [normal(r, s)]),
    "prelu": (
        lambda F, x, w: F.prelu(x, w),
        lambda x, w: np.where(x > 0, x, w.reshape(1, -1) * x),
        lambda r, s: [normal(r, s), bf16(r.uniform(0, 0.5, s[1]))],
    ),
    "normalize": (
        lambda F, x: F.normalize(x, p=2.0, dim=1),
        lambda x: x / np.maximum(_norm(x, 1), 1e-12),
        lambda r, s: [normal(r, s)],
    ),
    "cosine_similarity": (
        lambda F, a, b: F.cosine_similarity(a, b, dim=1),
        lambda a, b: (a * b).sum(1) / (np.maximum(_norm(a, 1), 1e-8) * np.maximum(_norm(b, 1), 1e-8))[:, 0],
        lambda r, s: [normal(r, s), normal(r, s)],
    ),
    "var": (lambda F, x: x.var(dim=1), lambda x: _var(x), lambda r, s: [normal(r, s, 3.0)]),
    "std": (lambda F, x: x.std(1), lambda x: np.sqrt(_var(x)), lambda r, s: [normal(r, s, 3.0)]),
    "mse_loss": (
        lambda F, x, y: F.mse_loss(x, y),
        lambda x, y: ((x - y) ** 2).mean(),
        lambda r, s: [normal(r, s), normal(r, s)],
    ),
    "l1_loss": (
        lambda F, x, y: F.l1_loss(x, y, reduction="sum"),
        lambda x, y: np.abs(x - y).sum(),
        lambda r, s: [normal(r, s), normal(r, s)],
    ),
    "smooth_l1_loss": (
        lambda F, x, y: F.smooth_l1_loss(x, y, beta=0.5),
        lambda x, y: np.where(np.abs(x - y) < 0.5, (x - y) ** 2, np.abs(x - y) - 0.25).mean(),
        lambda r, s: [normal(r, s), normal(r, s)],
    ),
    "huber_loss": (
        lambda F, x, y: F.huber_loss(x, y, reduction="none", delta=0.7),
        lambda x, y: np.where(np.abs(x - y) < 0.7, 0.5 * (x - y) ** 2, 0.7 * (np.abs(x - y) - 0.35)),
        lambda r, s: [normal(r, s), normal(r, s)],
    ),
    "cross_entropy": (
        lambda F, x, t: F.cross_entropy(x, t),
        lambda x, t: -_pick(_log_softmax(x, 1), t).mean(),
        lambda r, s: [normal(r, s, 2.0), r.integers(0, s[1], s[0])],
    ),
    "binary_cross_entropy_with_logits": (
        lambda F, x, y: F.binary_cross_entropy_with_logits(x, y),
        lambda x, y: (np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))).mean(),
        lambda r, s: [normal(r, s, 2.0), bf16(r.uniform(0, 1, s))],
    ),
    "binary_cross_entropy": (
        lambda F, x, y: F.binary_cross_entropy(x, y, reduction="sum"),
        lambda x, y: -(y * np.log(x) + (1 - y) * np.log1p(-x)).sum(),
        lambda r, s: [bf16(r.uniform(0.05, 0.95, s)), bf16(r.uniform(0, 1, s))],
    ),
    # Sums and what is built on them accumulate in float32 and round once, as PyTorch's CPU kernels.
    "sum": (lambda F, x: x.sum(dim=1), lambda x: x.sum(1), lambda r, s: [normal(r, s)]),
    "mean": (lambda F, x: x.mean(), lambda x: x.mean(), lambda r, s: [normal(r, s)]),
    "cumsum": (lambda F, x: x.cumsum(1), lambda x: np.cumsum(x, 1), lambda r, s: [normal(r, s)]),
    "norm": (lambda F, x: x.norm(dim=1), lambda x: _norm(x, 1)[:, 0], lambda r, s: [normal(r, s)]),
    "logsumexp": (
        lambda F, x: x.logsumexp(1),
        lambda x: np.log(np.exp(x).sum(1)),
        lambda r, s: [normal(r, s)],
    ),
    "sigmoid": (lambda F, x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x)), lambda r, s: [normal(r, s)]),
    "softmax": (lambda F, x: F.softmax(x, dim=1), lambda x: np.exp(_log_softmax(x, 1)), lambda r, s: [normal(r, s)]),
    "log_softmax": (lambda F, x: F.log_softmax(x, dim=1), lambda x: _log_softmax(x, 1), lambda r, s: [normal(r, s)]),
    "layer_norm": (
        lambda F, x: F.layer_norm(x, (x.shape[1],)),
        lambda x: (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5),
        lambda r, s: [normal(r, s)],
    ),
    "clamp": (lambda F, x: x.clamp(-0.5, 0.8), lambda x: np.clip(x, -0.5, 0.8), lambda r, s: [normal(r, s)]),
    "pairwise_distance": (
        lambda F, a, b: F.pairwise_distance(a, b),
        lambda a, b: np.sqrt(((a - b + 1e-6) ** 2).sum(1)),
        lambda r, s: [normal(r, s), normal(r, s)],
    ),
}
ELEMENTWISE = ("silu", "elu", "softplus", "hardtanh", "mish", "prelu", "normalize", "var", "sigmoid", "clamp")
SHAPES = [(7, 5), (1, 1), (3, 33)]


def seed(*key) -> int:
    """A seed of its own for each case, the same in every run."""
    return zlib.crc32(repr(key).encode())


def normal(rng, shape, scale=1.5) -> np.ndarray:
    return bf16(scale * rng.standard_normal(shape))


def cases() -> list:
    return [
        pytest.param(name, shape, id=f"{name}-{shape}")
        for name in CASES
        for shape in SHAPES + ([(0, 5)] if name in ELEMENTWISE else [])
    ]


def run(name, inputs, dtype=None, requires_grad=False):
    """The op on Tensors of ``inputs`` (floating ones cast to ``dtype`` when given)."""
    tensors = []
    for a in inputs:
        floating = a.dtype.kind == "f" or a.dtype == BF16
        t = deepkern.tensor(a if dtype is None or not floating else a.astype(dtype))
        tensors.append(t.requires_grad_() if floating and requires_grad else t)
    return CASES[name][0](F, *tensors), tensors


@pytest.mark.parametrize("name, shape", cases())
def test_forward_within_one_rounding_of_float64(name, shape):
    rng = np.random.default_rng(seed(name, shape))
    inputs = CASES[name][2](rng, shape)
    got, _ = run(name, inputs)
    assert got.dtype == BF16
    ref = np.asarray(CASES[name][1](*(f64(a) if a.dtype == BF16 else a for a in inputs)))
    assert got.shape == ref.shape
    got64 = f64(got.numpy())
    nan = np.isnan(ref)  # var of one element
    np.testing.assert_array_equal(np.isnan(got64), nan)
    got64, ref = got64[~nan], ref[~nan]
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    err = np.abs(got64 - ref)
    assert np.all(np.isfinite(got64)), f"{name}: non-finite result"
    assert np.all(err <= U * np.abs(ref) + 1e-4 * scale), f"{name}: largest error {err.max()} at scale {scale}"


@pytest.mark.parametrize("name, shape", cases())
def test_forward_and_backward_are_the_float32_path_rounded(name, shape):
    rng = np.random.default_rng(seed(name, shape, "grad"))
    inputs = CASES[name][2](rng, shape)
    y, xs = run(name, inputs, requires_grad=True)
    y32, xs32 = run(name, inputs, dtype=np.float32, requires_grad=True)
    np.testing.assert_array_equal(f64(y.detach().numpy()), f64(y32.detach().numpy().astype(BF16)))
    g = normal(rng, y.shape)
    y.backward(deepkern.tensor(g))
    y32.backward(deepkern.tensor(g.astype(np.float32)))
    checked = 0
    for x, x32 in zip(xs, xs32):
        if x.requires_grad:
            assert x.grad.dtype == BF16, f"{name}: gradient of dtype {x.grad.dtype}"
            np.testing.assert_array_equal(f64(x.grad.numpy()), f64(x32.grad.numpy().astype(BF16)))
            checked += 1
    assert checked >= 1


@pytest.mark.parametrize("name", list(CASES))
def test_dtype_and_accuracy_match_torch(name):
    """PyTorch's result dtype, and an error from float64 at most half an ulp of the largest value
    above PyTorch's own (some of PyTorch's bfloat16 ops round more than once)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed(name))
    inputs = CASES[name][2](rng, (6, 9))
    ours, _ = run(name, inputs)
    tensors = [
        torch.from_numpy(a.astype(np.float32)).bfloat16() if a.dtype == BF16 else torch.from_numpy(a) for a in inputs
    ]
    theirs = CASES[name][0](torch.nn.functional, *tensors)
    assert str(theirs.dtype) == f"torch.{ours.dtype}"
    ref = np.asarray(CASES[name][1](*(f64(a) if a.dtype == BF16 else a for a in inputs)))
    our_error = np.abs(f64(ours.numpy()) - ref).max()
    torch_error = np.abs(theirs.float().numpy().astype(np.float64) - ref).max()
    assert our_error <= torch_error + U / 2 * np.abs(ref).max(), f"{name}: {our_error} vs PyTorch's {torch_error}"


def test_is_floating_point_and_requires_grad():
    assert deepkern.zeros(2, dtype=BF16).is_floating_point()
    assert deepkern.zeros(2).is_floating_point() and deepkern.zeros(2, dtype=deepkern.float64).is_floating_point()
    assert not deepkern.zeros(2, dtype=deepkern.int64).is_floating_point()
    assert not deepkern.zeros(2, dtype=deepkern.bool_).is_floating_point()
    assert deepkern.zeros(2, dtype=BF16).requires_grad_().requires_grad
    with raises_naming(RuntimeError, "int64"):
        deepkern.zeros(2, dtype=deepkern.int64).requires_grad_()


@pytest.mark.parametrize("fill", ["uniform_", "normal_"])
def test_random_fills_round_the_float64_draws_once(fill):
    args = (-2.0, 3.0)
    deepkern.manual_seed(7)
    t = getattr(deepkern.empty(4001, dtype=BF16), fill)(*args)
    deepkern.manual_seed(7)
    wide = getattr(deepkern.empty(4001, dtype=deepkern.float64), fill)(*args)
    assert t.dtype == BF16
    np.testing.assert_array_equal(f64(t.numpy()), f64(wide.numpy().astype(BF16)))
    assert np.unique(t.numpy()).size > 100  # drawn, not constant
    randn = deepkern.randn_like(t)
    assert randn.dtype == BF16 and randn.shape == t.shape


def test_non_floating_inputs_are_rejected_by_name():
    ints = deepkern.arange(6).reshape(2, 3)
    for op in ("silu", "elu", "softplus", "hardtanh", "mish", "normalize"):
        with raises_naming(TypeError, op, "int64"):
            getattr(F, op)(ints)
    with raises_naming(TypeError, "mse_loss", "input", "int64"):
        F.mse_loss(ints, ints)
    with raises_naming(TypeError, "cosine_similarity", "x2", "int64"):
        F.cosine_similarity(deepkern.zeros(2, 3, dtype=BF16), ints)
    with raises_naming(RuntimeError, "var", "int64"):
        ints.var()
    with raises_naming(RuntimeError, "uniform_", "int64"):
        ints.uniform_()


def test_keyword_arguments_are_widened_too():
    x = deepkern.tensor(normal(np.random.default_rng(11), (5, 7)))
    for op in (F.silu, F.mish, F.normalize):
        np.testing.assert_array_equal(f64(op(input=x).numpy()), f64(op(x).numpy()))


def test_array_ops_take_bfloat16_arrays_by_keyword():
    """The element-wise ops that widen bfloat16 to float32 (pooling, gelu, dropout) see arrays given by
    keyword as those given by position: the same results, and the same refusal of mixed dtypes."""
    from deepkern import ops

    rng = np.random.default_rng(12)
    bf16 = deepkern.bfloat16
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32).astype(bf16)
    g = rng.standard_normal((2, 3, 6, 6)).astype(np.float32).astype(bf16)
    for by_position, by_keyword in (
        (lambda: ops.max_pool2d(x, 2), lambda: ops.max_pool2d(x=x, kernel_size=2)),
        (lambda: ops.avg_pool2d(x, 3, 1, 1), lambda: ops.avg_pool2d(x=x, kernel_size=3, stride=1, padding=1)),
        (lambda: ops.gelu(x), lambda: ops.gelu(x=x)),
        (lambda: ops.gelu_backward(g, x), lambda: ops.gelu_backward(g, x=x)),
        (lambda: ops.dropout(x, 0.5, seed=1, offset=0), lambda: ops.dropout(x=x, p=0.5, seed=1, offset=0)),
    ):
        expected, got = by_position(), by_keyword()
        for e, r in zip(
            expected if isinstance(expected, tuple) else (expected,), got if isinstance(got, tuple) else (got,)
        ):
            assert r.dtype == e.dtype
            np.testing.assert_array_equal(f64(r), f64(e))
    with raises_naming(TypeError, "bfloat16", "float32"):
        ops.gelu_backward(g, x=x.astype(np.float32))


def test_unaligned_bfloat16_arrays_are_taken_as_float32_ones_are():
    """bfloat16 data at an odd address (np.frombuffer at an offset) is copied once, as float32 data is,
    by the GEMM and convolution ops."""
    from deepkern import ops

    rng = np.random.default_rng(13)
    bf16 = deepkern.bfloat16

    def unaligned(a):
        raw = np.empty(a.nbytes + 1, np.uint8)
        raw[1:] = a.reshape(-1).view(np.uint8)
        out = np.frombuffer(raw.data, dtype=a.dtype, offset=1).reshape(a.shape)
        assert not out.flags.aligned
        return out

    a = rng.standard_normal((5, 7)).astype(np.float32).astype(bf16)
    b = rng.standard_normal((7, 3)).astype(np.float32).astype(bf16)
    np.testing.assert_array_equal(f64(ops.matmul(unaligned(a), unaligned(b))), f64(ops.matmul(a, b)))
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32).astype(bf16)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32).astype(bf16)
    np.testing.assert_array_equal(f64(ops.conv2d(unaligned(x), unaligned(w))), f64(ops.conv2d(x, w)))


def test_losses_under_autocast_stay_float32():
    """Autocast's float32 list wins over the bfloat16 rounding (PyTorch's autocast semantics)."""
    x, y = (deepkern.tensor(normal(np.random.default_rng(3), (4, 5))) for _ in range(2))
    with deepkern.autocast("cpu"):
        assert F.mse_loss(x, y).dtype == deepkern.float32
    assert F.mse_loss(x, y).dtype == BF16


def test_import_does_not_load_ml_dtypes_until_bfloat16_is_used(tmp_path):
    script = f"""
import sys
import numpy as np
import deepkern
assert "ml_dtypes" not in sys.modules, "import deepkern loaded ml_dtypes"
t = deepkern.tensor([1.5, -2.0])
deepkern.save({{"t": t}}, {str(tmp_path / "f32.dk")!r})
assert deepkern.load({str(tmp_path / "f32.dk")!r})["t"].dtype == deepkern.float32
deepkern.nn.functional.silu(t.requires_grad_()).var().backward()
layer = deepkern.nn.Linear(2, 3)
layer(t.reshape(1, 2)).sum().backward()  # the GEMM's binding checks for bfloat16 arrays
deepkern.ops.matmul(np.ones((4, 5), np.float32), np.ones((5, 2), np.float32))
assert "ml_dtypes" not in sys.modules, "float32 work loaded ml_dtypes"
import ml_dtypes
assert deepkern.bfloat16 == np.dtype(ml_dtypes.bfloat16)
assert sys.modules["deepkern.tensor"].bfloat16 is deepkern.bfloat16
assert t.bfloat16().dtype == deepkern.bfloat16
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_bfloat16_checkpoint_round_trip_in_a_fresh_process(tmp_path):
    path = str(tmp_path / "bf16.dk")
    values = bf16(np.random.default_rng(5).standard_normal((3, 4)))
    deepkern.save({"w": deepkern.tensor(values)}, path)
    script = f"""
import json
import deepkern
w = deepkern.load({path!r})["w"]
assert w.dtype == deepkern.bfloat16, w.dtype  # a NumPy array
print(json.dumps(w.astype("float32").tolist()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.array(json.loads(done.stdout)), f64(values))


@pytest.mark.parametrize(
    "make",
    [
        deepkern.nn.ReLU,
        lambda: deepkern.nn.LeakyReLU(0.1),
        deepkern.nn.Tanh,
        deepkern.nn.Sigmoid,
        deepkern.nn.GELU,
        deepkern.nn.SiLU,
        deepkern.nn.Mish,
        deepkern.nn.ELU,
        deepkern.nn.Softplus,
        deepkern.nn.Hardtanh,
    ],
)
def test_activation_modules_take_bfloat16(make):
    """The activation layers accept what their functions accept: a bfloat16 input gives a bfloat16
    output within one rounding of the float64 result on the same values."""
    module = make()
    rng = np.random.default_rng(seed("modules", repr(module)))
    x = bf16(normal(rng, (4, 9)))
    out = module(deepkern.tensor(x)).numpy()
    assert out.dtype == x.dtype
    ref = module(deepkern.tensor(f64(x))).numpy()
    assert np.all(np.abs(f64(out) - ref) <= U * np.abs(ref) + 1e-6), repr(module)


def test_relu_keeps_nan_and_negative_zero_and_passes_nan_gradients():
    """ReLU on bfloat16 tensors as PyTorch's: NaN (either sign) stays NaN, -0 stays -0, -inf gives 0;
    the gradient flows where the output is positive or NaN."""
    values = np.array([np.nan, -np.nan, -0.0, 0.0, -np.inf, np.inf, -1.5, 2.5], np.float32)
    x = deepkern.tensor(values.astype(BF16), requires_grad=True)
    y = F.relu(x)
    got = y.detach().numpy().astype(np.float32)
    want = np.where(np.isnan(values) | (values > 0), values, np.where(values == 0, values, 0.0))
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    y.backward(deepkern.tensor(np.full(8, 3.0, np.float32).astype(BF16)))
    np.testing.assert_array_equal(
        x.grad.numpy().astype(np.float32), np.where(np.isnan(values) | (values > 0), 3.0, 0.0)
    )


def test_long_bfloat16_sums_accumulate_in_float32_like_torch():
    """4096 ones: a bfloat16 accumulator stops at 256 (256 + 1 rounds to 256); PyTorch sums in float32."""
    ones = deepkern.ones(4096).to(BF16)
    assert float(ones.sum()) == 4096 and float(ones.mean()) == 1 and float(ones.norm()) == 64
    assert float(ones.cumsum(0)[-1]) == 4096 and float(ones.sum(dim=0)) == 4096
    assert abs(float(ones.logsumexp(0)) - (1 + np.log(4096.0))) < 2 * U * (1 + np.log(4096.0))


@pytest.mark.parametrize(
    "equation, shapes",
    [("ij,jk->ik", [(3, 700), (700, 5)]), ("bij,bkj->bik", [(2, 4, 300), (2, 3, 300)]), ("i,i->", [(4096,), (4096,)])],
)
def test_einsum_of_bfloat16_sums_in_float32_and_rounds_once(equation, shapes):
    """NumPy's einsum refuses bfloat16; PyTorch's sums in float32: the result and both gradients are
    the float64 einsums of the bfloat16 values rounded once (within u |ref| plus float32's sums),
    where a bfloat16 accumulator would be off by far more over 300-4096 terms."""
    rng = np.random.default_rng(7)
    a, b = (bf16(rng.uniform(0.5, 1.5, shape)) for shape in shapes)  # positive terms: no cancellation
    ta, tb = (deepkern.tensor(v).requires_grad_() for v in (a, b))
    y = deepkern.einsum(equation, ta, tb)
    g = bf16(rng.uniform(0.5, 1.5, y.shape))
    y.backward(deepkern.tensor(g))
    lhs, out = equation.split("->")
    sa, sb = lhs.split(",")
    want = {
        "y": np.einsum(equation, f64(a), f64(b)),
        "grad a": np.einsum(f"{out},{sb}->{sa}", f64(g), f64(b)),
        "grad b": np.einsum(f"{out},{sa}->{sb}", f64(g), f64(a)),
    }
    for name, got in (("y", y.detach()), ("grad a", ta.grad), ("grad b", tb.grad)):
        assert got.dtype == BF16, name
        ref = want[name]
        np.testing.assert_array_less(np.abs(f64(got.numpy()) - ref), U * np.abs(ref) + 1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("loss", ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits", "kl_div"])
def test_a_bfloat16_input_with_a_float32_target_is_promoted_like_torch(loss):
    """PyTorch promotes the pair to float32: the loss is the float32 loss of the bfloat16 values."""
    rng = np.random.default_rng(4)
    x, t = normal(rng, (50000,)), rng.uniform(0, 1, 50000).astype(np.float32)
    options = {"reduction": "batchmean"} if loss == "kl_div" else {}
    got = getattr(F, loss)(deepkern.tensor(x), deepkern.tensor(t), **options)
    want = getattr(F, loss)(deepkern.tensor(x.astype(np.float32)), deepkern.tensor(t), **options)
    assert got.dtype == np.float32 and float(got) == float(want)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: deepkern.nn.Conv2d(3, 5, 3, padding=1), (2, 3, 7, 6)),
        (lambda: deepkern.nn.Conv2d(4, 6, 3, stride=2, groups=2, bias=False), (1, 4, 9, 9)),
        (lambda: deepkern.nn.Conv1d(3, 4, 3), (2, 3, 11)),
        (lambda: deepkern.nn.ConvTranspose2d(3, 4, 3, stride=2), (2, 3, 5, 5)),
        (lambda: deepkern.nn.LayerNorm(6), (3, 4, 6)),
        (lambda: deepkern.nn.GroupNorm(2, 4), (2, 4, 5, 3)),
        (lambda: deepkern.nn.BatchNorm2d(3), (4, 3, 5, 5)),
        (lambda: deepkern.nn.BatchNorm1d(4), (6, 4)),
        (lambda: deepkern.nn.MaxPool2d(2), (2, 3, 6, 7)),
        (lambda: deepkern.nn.AvgPool2d(3, stride=2, padding=1), (2, 3, 7, 7)),
        (lambda: deepkern.nn.AdaptiveAvgPool2d(2), (2, 3, 5, 7)),
    ],
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_modules_converted_to_bfloat16_run_in_bfloat16(make, shape, mode):
    """A layer converted with .to(bfloat16) takes a bfloat16 input as its functions do (eval mode
    under no_grad too, where convolutions otherwise run a plan of packed float weights): a bfloat16
    output within a rounding of the float64 layer on the same values (the transposed convolution
    adds its bias to its rounded sums: a rounding of the sum more), and bfloat16 gradients; a
    float32 layer with parameters still refuses a bfloat16 input, naming both dtypes. Batch norm
    runs in float32 and keeps its running statistics in bfloat16, updated in training."""
    module = make()
    rng = np.random.default_rng(seed("layers", repr(module), mode))
    x = bf16(normal(rng, shape))
    ref_module = make().double()
    state = module.to(BF16).state_dict()
    ref_module.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
    getattr(module, mode)()
    getattr(ref_module, mode)()
    with deepkern.no_grad():
        out = module(deepkern.tensor(x)).numpy()
    ref = ref_module(deepkern.tensor(f64(x))).detach().numpy()
    assert out.dtype == BF16 and out.shape == ref.shape
    bound = U * np.abs(ref) + 1e-5 * np.abs(ref).max()
    if isinstance(module, deepkern.nn.ConvTranspose2d):  # the sum rounded before the bias is added
        bound += U * np.abs(ref - f64(module.bias.detach().numpy()).reshape(-1, 1, 1))
    assert np.all(np.abs(f64(out) - ref) <= bound), repr(module)
    for name, kept in module.named_buffers():  # batch norm's running statistics: updated, in bfloat16
        if kept.is_floating_point():
            ref_kept = ref_module.get_buffer(name).numpy()
            assert kept.dtype == BF16 and np.all(np.abs(f64(kept.numpy()) - ref_kept) <= U * np.abs(ref_kept)), name
    xt = deepkern.tensor(x, requires_grad=True)
    module(xt).float().sum().backward()
    assert xt.grad.dtype == BF16 and all(p.grad.dtype == BF16 for p in module.parameters())
    if list(module.parameters()):
        with pytest.raises(TypeError, match="bfloat16.*float32"):
            make()(deepkern.tensor(x))
