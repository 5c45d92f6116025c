"""deepkern.autocast and deepkern.amp.GradScaler: output dtypes per op class, nesting, threads,
the decorator form, gradients of a float32 model trained under autocast against a float64
reference, GradScaler's dynamic scaling (and PyTorch's, where torch is installed), and bfloat16
checkpoints."""

from __future__ import annotations

import threading

import deepkern as dk
import deepkern.nn.functional as F
import numpy as np
import pytest
from deepkern import nn
from deepkern.amp import GradScaler

from reference import gelu_backward_ref, gelu_ref

BF16, F32, F64 = np.dtype(dk.bfloat16), np.dtype(np.float32), np.dtype(np.float64)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def t(rng, *shape, dtype=np.float32, requires_grad=False):
    return dk.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=requires_grad)


def f64(x) -> np.ndarray:
    return np.asarray(x.detach().numpy() if isinstance(x, dk.Tensor) else x, dtype=np.float64)


def rounded(x) -> np.ndarray:
    """``x``'s values rounded to bfloat16, as float64."""
    return f64(x).astype(BF16).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Output dtypes per op class
# ---------------------------------------------------------------------------------------------


def lower_precision_ops(rng):
    """(name, fn, float64 reference of the result on bfloat16-rounded inputs)."""
    x, w, b = t(rng, 4, 5), t(rng, 3, 5), t(rng, 3)
    batch, mat = t(rng, 2, 4, 5), t(rng, 2, 5, 3)
    slope = dk.tensor(np.array([0.25], np.float32))
    linear_ref = rounded(x) @ rounded(w).T + rounded(b)
    return [
        ("F.linear", lambda: F.linear(x, w, b), linear_ref),
        ("matmul @", lambda: x @ w.T, rounded(x) @ rounded(w).T),
        ("deepkern.matmul", lambda: dk.matmul(x, w.T), rounded(x) @ rounded(w).T),
        ("deepkern.bmm", lambda: dk.bmm(batch, mat), rounded(batch) @ rounded(mat)),
        ("F.prelu", lambda: F.prelu(x, slope), np.where(rounded(x) > 0, rounded(x), 0.25 * rounded(x))),
    ]


@pytest.mark.parametrize("index", range(5))
def test_lower_precision_ops_compute_and_return_bfloat16(rng, index):
    name, fn, ref = lower_precision_ops(rng)[index]
    with dk.autocast("cpu"):
        out = fn()
    assert out.dtype == BF16, name
    # one bfloat16 rounding of the result (float32 accumulation), relative to the result's size
    np.testing.assert_allclose(f64(out), ref, rtol=2**-7, atol=2**-7 * np.abs(ref).max(), err_msg=name)
    assert fn().dtype == F32, f"{name} outside autocast"


def float32_ops(rng):
    x = t(rng, 4, 6, dtype=BF16)
    positive = dk.tensor(np.abs(rng.standard_normal((4, 6))).astype(BF16) + BF16.type(0.5))
    target, classes = t(rng, 4, 6), dk.tensor(rng.integers(0, 6, 4))
    probs = dk.tensor(rng.uniform(0.1, 0.9, (4, 6)).astype(BF16))
    image = t(rng, 2, 4, 3, 3, dtype=BF16)
    return [
        ("F.softmax", lambda: F.softmax(x, dim=-1)),
        ("F.log_softmax", lambda: F.log_softmax(x, dim=-1)),
        ("F.layer_norm", lambda: F.layer_norm(x, (6,))),
        ("nn.LayerNorm", lambda: nn.LayerNorm(6)(x)),
        ("F.group_norm", lambda: F.group_norm(image, 2)),
        ("nn.BatchNorm2d", lambda: nn.BatchNorm2d(4)(image)),
        ("Tensor.sum", lambda: x.sum()),
        ("Tensor.mean", lambda: x.mean(dim=0)),
        ("Tensor.exp", lambda: x.exp()),
        ("Tensor.log", lambda: positive.log()),
        ("Tensor.pow", lambda: positive**2),
        ("F.mse_loss", lambda: F.mse_loss(x, target)),
        ("F.l1_loss", lambda: F.l1_loss(x, target)),
        ("F.smooth_l1_loss", lambda: F.smooth_l1_loss(x, target)),
        ("F.huber_loss", lambda: F.huber_loss(x, target)),
        ("F.cross_entropy", lambda: F.cross_entropy(x, classes)),
        ("nn.CrossEntropyLoss", lambda: nn.CrossEntropyLoss()(x, classes)),
        ("F.nll_loss", lambda: F.nll_loss(x, classes)),
        ("F.binary_cross_entropy_with_logits", lambda: F.binary_cross_entropy_with_logits(x, probs)),
        ("F.binary_cross_entropy", lambda: F.binary_cross_entropy(probs, probs)),
        ("F.kl_div", lambda: F.kl_div(x, probs, reduction="batchmean")),
        ("F.triplet_margin_loss", lambda: F.triplet_margin_loss(x, target, x)),
    ]


@pytest.mark.parametrize("index", range(22))
def test_float32_ops_take_bfloat16_up_to_float32(rng, index):
    name, fn = float32_ops(rng)[index]
    with dk.autocast("cpu"):
        out = fn()
    assert out.dtype == F32, name


def test_float32_op_values_are_the_float32_computation(rng):
    x = t(rng, 3, 7, dtype=BF16)
    with dk.autocast("cpu"):
        out = F.log_softmax(x, dim=1)
    z = f64(x)
    ref = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    np.testing.assert_allclose(f64(out), ref, rtol=1e-6, atol=1e-6)


def test_promote_ops_take_the_widest_input_type(rng):
    low, high = t(rng, 2, 3, dtype=BF16), t(rng, 2, 3)
    with dk.autocast("cpu"):
        assert dk.cat([low, high]).dtype == F32
        assert dk.stack([low, high]).dtype == F32
        assert dk.where(high > 0, low, high).dtype == F32
        assert dk.cat([low, low]).dtype == BF16
        assert dk.cat([low, high.double()]).dtype == F64
        np.testing.assert_array_equal(f64(dk.cat([low, high])), np.concatenate([f64(low), f64(high)]))


def test_other_ops_run_in_their_inputs_type(rng):
    low, high = t(rng, 2, 3, dtype=BF16), t(rng, 2, 3)
    with dk.autocast("cpu"):
        assert (low + high).dtype == F32
        assert low.relu().dtype == BF16
        assert nn.ReLU()(low).dtype == BF16
        assert nn.Tanh()(low).dtype == BF16
        assert F.leaky_relu(low).dtype == BF16
        assert high.tanh().dtype == F32


def test_float64_is_left_alone(rng):
    a, b = t(rng, 3, 4, dtype=np.float64), t(rng, 4, 2, dtype=np.float64)
    with dk.autocast("cpu"):
        out = a @ b
        assert out.dtype == F64
        np.testing.assert_allclose(f64(out), f64(a) @ f64(b), rtol=1e-12)
        assert F.softmax(a, dim=1).dtype == F64


def test_integer_arguments_are_not_cast(rng):
    emb = nn.Embedding(10, 4)
    ids = dk.tensor(rng.integers(0, 10, (2, 3)))
    with dk.autocast("cpu"):
        assert emb(ids).dtype == F32
        assert dk.cat([ids, ids]).dtype == np.dtype(np.int64)


LAYERS_WITHOUT_BF16_KERNELS = {
    "Conv1d": lambda rng: (nn.Conv1d(2, 3, 3), t(rng, 1, 2, 6)),
    "Conv2d": lambda rng: (nn.Conv2d(2, 3, 3), t(rng, 1, 2, 5, 5)),
    "ConvTranspose2d": lambda rng: (nn.ConvTranspose2d(2, 3, 3), t(rng, 1, 2, 4, 4)),
    "LSTM": lambda rng: (nn.LSTM(3, 4), t(rng, 5, 2, 3)),
    "GRU": lambda rng: (nn.GRU(3, 4, batch_first=True), t(rng, 2, 5, 3)),
    "RNN": lambda rng: (nn.RNN(3, 4), t(rng, 5, 2, 3)),
    "LSTMCell": lambda rng: (nn.LSTMCell(3, 4), t(rng, 2, 3)),
    "GRUCell": lambda rng: (nn.GRUCell(3, 4), t(rng, 2, 3)),
    "RNNCell": lambda rng: (nn.RNNCell(3, 4), t(rng, 2, 3)),
    "attention": lambda rng: (
        lambda q: F.scaled_dot_product_attention(q, q, q),
        t(rng, 2, 4, 8),
    ),
}


@pytest.mark.parametrize("name", sorted(LAYERS_WITHOUT_BF16_KERNELS))
@pytest.mark.parametrize("input_dtype", [np.float32, BF16], ids=["f32", "bf16"])
def test_conv_recurrent_and_attention_ops_get_bfloat16(rng, name, input_dtype):
    """Lower-precision ops whose bfloat16 kernels deepkern may lack: under autocast the op gets
    bfloat16 inputs (float32 parameters cast), so it returns bfloat16 or raises a TypeError naming
    bfloat16; it never falls back to float32 silently."""
    layer, x = LAYERS_WITHOUT_BF16_KERNELS[name](rng)
    x = x.to(input_dtype)
    with dk.autocast("cpu"):
        try:
            out = layer(x)
        except TypeError as err:
            assert "bfloat16" in str(err), str(err)
            return
    out = out[0] if isinstance(out, tuple) else out
    assert out.dtype == BF16


@pytest.mark.parametrize("shape", [(0, 3), (1,), (5, 7), (3, 1, 33)])
def test_elementwise_ops_take_bfloat16_through_float32(rng, shape):
    """relu, gelu, dropout and their backward passes on bfloat16 arrays: the float64 result
    rounded once to bfloat16 (within one rounding of the float32 computation)."""
    x = rng.standard_normal(shape).astype(BF16)
    g = rng.standard_normal(shape).astype(BF16)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    checks = [
        (dk.ops.relu(x), np.maximum(x64, 0)),
        (dk.ops.relu_backward(g, x), np.where(x64 > 0, g64, 0)),
        (dk.ops.gelu(x), gelu_ref(x64)),
        (dk.ops.gelu_backward(g, x), gelu_backward_ref(g64, x64)),
    ]
    y, mask = dk.ops.dropout(x, 0.25, 7, 11)
    y32, mask32 = dk.ops.dropout(x.astype(np.float32), 0.25, 7, 11)
    np.testing.assert_array_equal(mask, mask32)  # the same Philox stream
    checks += [(y, x64 * mask / 0.75), (dk.ops.dropout_backward(g, mask, 0.25), g64 * mask / 0.75)]
    for got, ref in checks:
        assert got.dtype == BF16 and got.shape == shape
        np.testing.assert_allclose(got.astype(np.float64), ref, rtol=2**-8 + 1e-6, atol=1e-30)
    out = np.full(shape, np.nan, BF16)
    assert dk.ops.gelu(x, out=out) is out
    np.testing.assert_array_equal(out.view(np.uint16), dk.ops.gelu(x).view(np.uint16))
    with pytest.raises(TypeError, match="out must have dtype bfloat16"):
        dk.ops.relu(x, out=np.empty(shape, np.float32))
    with pytest.raises(TypeError, match="bfloat16"):
        dk.ops.gelu_backward(g, x.astype(np.float32))  # a mix of dtypes is refused


def test_mlp_with_gelu_and_dropout_under_autocast(rng):
    model = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Dropout(0.2), nn.Linear(8, 2))
    x = t(rng, 5, 6)
    with dk.autocast("cpu"):
        out = model(x)
        loss = out.float().pow(2).mean()
    assert out.dtype == BF16
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == F32 for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# The context manager: nesting, threads, decorator, arguments
# ---------------------------------------------------------------------------------------------


def test_nesting_and_restoring(rng):
    x, w = t(rng, 2, 3), t(rng, 4, 3)
    assert not dk.amp.is_autocast_enabled("cpu")
    with dk.autocast("cpu"):
        assert F.linear(x, w).dtype == BF16
        with dk.autocast("cpu", enabled=False):
            assert not dk.amp.is_autocast_enabled("cpu")
            assert F.linear(x, w).dtype == F32
            with dk.autocast("cpu"):
                assert F.linear(x, w).dtype == BF16
            assert F.linear(x, w).dtype == F32
        assert F.linear(x, w).dtype == BF16
    assert F.linear(x, w).dtype == F32
    with pytest.raises(KeyError):
        with dk.autocast("cpu"):
            raise KeyError("inside")
    assert not dk.amp.is_autocast_enabled("cpu")
    assert F.linear(x, w).dtype == F32


def test_the_same_object_nests_in_itself(rng):
    x = t(rng, 2, 3)
    region = dk.autocast("cpu")
    with region:
        with region:
            assert (x @ x.T).dtype == BF16
        assert (x @ x.T).dtype == BF16
    assert (x @ x.T).dtype == F32


def test_another_devices_autocast_leaves_cpu_tensors_alone(rng):
    x = t(rng, 2, 3)
    with dk.autocast("cuda"):
        assert dk.amp.is_autocast_enabled("cuda") and not dk.amp.is_autocast_enabled("cpu")
        assert (x @ x.T).dtype == F32


def test_autocast_is_thread_local(rng):
    x, w = t(rng, 2, 3), t(rng, 4, 3)
    seen = {}
    inside, leave = threading.Event(), threading.Event()

    def other():
        seen["before"] = F.linear(x, w).dtype
        with dk.autocast("cpu"):
            inside.set()
            seen["own region"] = F.linear(x, w).dtype
            leave.wait(10)

    with dk.autocast("cpu"):
        thread = threading.Thread(target=other)
        thread.start()
        assert inside.wait(10)
        assert F.linear(x, w).dtype == BF16
    # this thread left its region while the other thread is still in its own
    assert F.linear(x, w).dtype == F32
    leave.set()
    thread.join(10)
    assert seen == {"before": F32, "own region": BF16}


def _bfloat16_reductions():
    """sum, mean, norm, logsumexp and softmax of bfloat16 ones outside autocast: float32 inside,
    rounded once (a bfloat16 running sum of 4096 ones would stop at 256)."""
    ones = dk.ones(4096, dtype=BF16)
    return (
        ones.sum().item(),
        ones.mean().item(),
        ones.norm().item(),
        ones.logsumexp(0).item(),
        F.softmax(ones, 0).dtype,
        F.layer_norm(dk.ones(2, 8, dtype=BF16), (8,)).dtype,
    )


EXPECTED_BF16_REDUCTIONS = (4096.0, 1.0, 64.0, 9.3125, BF16, BF16)  # logsumexp: 1 + log(4096)


def test_bfloat16_ops_outside_this_threads_autocast_compute_in_float32():
    """Another thread's region, or a region with enabled=False here, leaves this thread's bfloat16
    reductions, softmax and norms computing in float32 and returning bfloat16 (they had summed in
    bfloat16, or raised, while any region was open anywhere)."""
    assert _bfloat16_reductions() == EXPECTED_BF16_REDUCTIONS
    inside, leave = threading.Event(), threading.Event()

    def other():
        with dk.autocast("cpu"):
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(10)
    try:
        assert _bfloat16_reductions() == EXPECTED_BF16_REDUCTIONS
    finally:
        leave.set()
        thread.join(10)
    with dk.autocast("cpu", enabled=False):
        assert _bfloat16_reductions() == EXPECTED_BF16_REDUCTIONS
    with dk.autocast("cpu"), dk.autocast("cpu", enabled=False):
        assert _bfloat16_reductions() == EXPECTED_BF16_REDUCTIONS


def test_logsumexp_and_prod_under_autocast_as_pytorch():
    """logsumexp (on no list) keeps bfloat16 and computes in float32; prod (PyTorch's float32 list) is float32."""
    ones = dk.ones(4096, dtype=BF16)
    values = dk.tensor(np.linspace(1.0, 1.3, 30)).to(BF16)
    with dk.autocast("cpu"):
        lse = ones.logsumexp(0)
        product = values.prod()
    assert lse.dtype == BF16 and lse.item() == 9.3125  # 1 + log(4096) = 9.3178, rounded
    exact = float(np.prod(values.float().numpy().astype(np.float64)))
    assert product.dtype == F32 and abs(product.item() - exact) < 1e-5 * exact


def test_a_bfloat16_model_with_batch_norm_runs_under_autocast(rng):
    """A model converted to bfloat16 keeps bfloat16 running statistics; under autocast its batch norm
    runs in float32 (the policy's) on float32 copies of them and writes the updated values back."""
    model = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)).to(BF16)
    x = dk.tensor(rng.standard_normal((8, 4, 5, 5)).astype(np.float32)).to(BF16)
    before = model[1].running_mean.float().numpy().copy()
    with dk.autocast("cpu"):
        y = model(x)
    assert y.dtype == F32 and model[1].running_mean.dtype == BF16
    assert not np.array_equal(model[1].running_mean.float().numpy(), before)
    y.sum().backward()
    assert model[0].weight.grad.dtype == BF16
    model.eval()
    with dk.autocast("cpu"):
        assert model(x).dtype == F32


def test_decorator_form(rng):
    x, w = t(rng, 2, 3), t(rng, 4, 3)

    @dk.autocast("cpu")
    def forward(a):
        return F.linear(a, w)

    @dk.amp.autocast("cpu", enabled=False)
    def forward_full(a):
        return F.linear(a, w)

    assert forward.__name__ == "forward"
    assert forward(x).dtype == BF16
    assert F.linear(x, w).dtype == F32
    with dk.autocast("cpu"):
        assert forward_full(x).dtype == F32
        assert F.linear(x, w).dtype == BF16
    results = []
    threads = [threading.Thread(target=lambda: results.append(forward(x).dtype)) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert results == [BF16] * 4


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"device_type": "tpu"}, ValueError, ["device_type", "tpu"]),
        ({"dtype": np.float16}, TypeError, ["dtype", "float16"]),
        ({"dtype": np.float32}, TypeError, ["dtype", "float32"]),
        ({"enabled": "yes"}, TypeError, ["enabled", "yes"]),
        ({"cache_enabled": 1}, TypeError, ["cache_enabled"]),
    ],
)
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error) as info:
        dk.autocast(**kwargs)
    for word in words:
        assert word in str(info.value)


# ---------------------------------------------------------------------------------------------
# Gradients: master weights in float32
# ---------------------------------------------------------------------------------------------


def mlp_reference(x, w1, b1, w2, b2, y):
    """Float64 loss and gradients of cross_entropy(tanh(x w1^T + b1) w2^T + b2, y)."""
    h_pre = x @ w1.T + b1
    h = np.tanh(h_pre)
    z = h @ w2.T + b2
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y]).mean()
    dz = p.copy()
    dz[np.arange(n), y] -= 1
    dz /= n
    dh_pre = (dz @ w2) * (1 - h * h)
    return loss, {"w1": dh_pre.T @ x, "b1": dh_pre.sum(0), "w2": dz.T @ h, "b2": dz.sum(0)}


@pytest.mark.parametrize("cache_enabled", [True, False])
def test_gradients_under_autocast_match_a_float64_reference(rng, cache_enabled):
    n, d_in, d_hidden, classes = 33, 17, 24, 5
    model = nn.Sequential(nn.Linear(d_in, d_hidden), nn.Tanh(), nn.Linear(d_hidden, classes))
    x, y = t(rng, n, d_in), dk.tensor(rng.integers(0, classes, n))
    with dk.autocast("cpu", cache_enabled=cache_enabled):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    assert logits.dtype == BF16 and loss.dtype == F32
    loss.backward()
    params = dict(zip(["w1", "b1", "w2", "b2"], model.parameters()))
    ref_loss, ref_grads = mlp_reference(f64(x), *(f64(params[k]) for k in ("w1", "b1", "w2", "b2")), y.numpy())
    assert abs(loss.item() - ref_loss) < 2e-2 * abs(ref_loss)
    for name, p in params.items():
        assert p.dtype == F32 and p.grad.dtype == F32, name
        err = np.linalg.norm(f64(p.grad) - ref_grads[name]) / np.linalg.norm(ref_grads[name])
        assert err < 3e-2, f"{name}: relative error {err:.3g}"


def test_a_parameter_used_twice_gets_both_gradients_and_changes_are_seen(rng):
    w = t(rng, 3, 3, requires_grad=True)
    x = t(rng, 2, 3)
    with dk.autocast("cpu"):
        out = F.linear(F.linear(x, w), w).float().sum()
        out.backward()
        ref_w = rounded(w)
        g_out = np.ones((2, 3))
        h = rounded(rounded(x) @ ref_w.T)
        ref_grad = g_out.T @ h + ((g_out @ ref_w).T @ rounded(x))
        np.testing.assert_allclose(f64(w.grad), ref_grad, rtol=3e-2, atol=3e-2 * np.abs(ref_grad).max())
        with dk.no_grad():
            w.mul_(2.0)  # an in-place change inside the region: the next cast sees it
        np.testing.assert_allclose(f64(F.linear(x, w)), rounded(x) @ rounded(w).T, rtol=2**-7, atol=1e-2)


def test_several_backward_passes_in_one_region(rng):
    """A parameter's cached cast is reused within a forward pass and made again after a backward
    pass freed its node, so a training loop may sit inside one region."""
    model = nn.Linear(4, 3)
    x, y = t(rng, 5, 4), dk.tensor(rng.integers(0, 3, 5))
    with dk.autocast("cpu"):
        F.cross_entropy(model(x), y).backward()
        first = f64(model.weight.grad)
        F.cross_entropy(model(x), y).backward()  # no step: the same gradient again, accumulated
        np.testing.assert_allclose(f64(model.weight.grad), 2 * first, rtol=1e-6)
        out = model(x).float().sum() + model(x).float().sum()  # one cast read twice in one graph
        out.backward()
    assert model.weight.grad.dtype == F32


def test_training_steps_under_autocast_lower_the_loss(rng):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = dk.optim.SGD(model.parameters(), lr=0.5)
    x = t(rng, 64, 8)
    y = dk.tensor((f64(x)[:, :3].argmax(1)).astype(np.int64))
    losses = []
    for _ in range(30):
        opt.zero_grad()
        with dk.autocast("cpu"):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.dtype == F32 for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0], losses


# ---------------------------------------------------------------------------------------------
# PyTorch's output dtypes for the same ops
# ---------------------------------------------------------------------------------------------


def test_output_dtypes_match_torch_autocast(rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    xs = rng.standard_normal((4, 5)).astype(np.float32)
    ws = rng.standard_normal((3, 5)).astype(np.float32)
    probs = rng.uniform(0.1, 0.9, (4, 5)).astype(np.float32)
    classes = rng.integers(0, 5, 4)
    # (name, deepkern call, torch call) on (x float32, x bfloat16, w, probs, class ids)
    cases = [
        ("linear", lambda x, xb, w, p, c, m: m.linear(x, w)),
        ("linear bf16 input", lambda x, xb, w, p, c, m: m.linear(xb, w)),
        ("matmul", lambda x, xb, w, p, c, m: x @ w.T),
        ("mse_loss", lambda x, xb, w, p, c, m: m.mse_loss(xb, x)),
        ("l1_loss", lambda x, xb, w, p, c, m: m.l1_loss(xb, x)),
        ("huber_loss", lambda x, xb, w, p, c, m: m.huber_loss(xb, x)),
        ("smooth_l1_loss", lambda x, xb, w, p, c, m: m.smooth_l1_loss(xb, x)),
        ("cross_entropy", lambda x, xb, w, p, c, m: m.cross_entropy(xb, c)),
        ("nll_loss", lambda x, xb, w, p, c, m: m.nll_loss(xb, c)),
        ("bce_with_logits", lambda x, xb, w, p, c, m: m.binary_cross_entropy_with_logits(xb, p)),
        ("kl_div", lambda x, xb, w, p, c, m: m.kl_div(xb, p, reduction="batchmean")),
        ("triplet_margin_loss", lambda x, xb, w, p, c, m: m.triplet_margin_loss(xb, x, x)),
        ("relu", lambda x, xb, w, p, c, m: m.relu(xb)),
        ("tanh", lambda x, xb, w, p, c, m: xb.tanh()),
        ("add", lambda x, xb, w, p, c, m: xb + x),
    ]
    mods = {"dk": F, "torch": tf}

    def run(lib, fn):
        as_t = dk.tensor if lib == "dk" else torch.tensor
        bf16 = dk.bfloat16 if lib == "dk" else torch.bfloat16
        x = as_t(xs)
        args = (x, x.to(bf16), as_t(ws), as_t(probs), as_t(classes), mods[lib])
        return fn(*args).dtype

    names = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float64: "float64"}
    for name, fn in cases:
        with dk.autocast("cpu"):
            ours = run("dk", fn)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            theirs = run("torch", fn)
        assert str(ours) == names[theirs], f"{name}: deepkern {ours}, torch {theirs}"
    # cat/stack (promote) with torch's list-taking signatures
    with dk.autocast("cpu"):
        ours = dk.cat([dk.tensor(xs).bfloat16(), dk.tensor(xs)]).dtype
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs = torch.cat([torch.tensor(xs).bfloat16(), torch.tensor(xs)]).dtype
    assert str(ours) == names[theirs]


# ---------------------------------------------------------------------------------------------
# GradScaler
# ---------------------------------------------------------------------------------------------


def scaler_run(lib, grads_per_step, **options):
    """Steps of SGD on one parameter through a GradScaler of ``lib`` ("dk" or "torch"): each step
    sets the parameter's gradient (scaled) to the given values and calls scale/step/update.
    Returns (scales after each update, parameter values after each step, final state dict)."""
    if lib == "dk":
        p = dk.tensor(np.zeros(3, np.float32), requires_grad=True)
        opt = dk.optim.SGD([p], lr=0.1)
        scaler = GradScaler("cpu", **options)
        as_t = dk.tensor
    else:
        import torch

        p = torch.zeros(3, requires_grad=True)
        opt = torch.optim.SGD([p], lr=0.1)
        scaler = torch.amp.GradScaler("cpu", **options)
        as_t = torch.tensor
    scales, values = [], []
    for g in grads_per_step:
        opt.zero_grad()
        loss = (p * as_t(np.asarray(g, np.float32))).sum()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        values.append(np.array(p.detach().numpy(), np.float64))
    return scales, values, scaler.state_dict()


GRADS = [[1.0, 2.0, 3.0], [np.inf, 1.0, 1.0], [0.5, 0.5, 0.5], [1.0, np.nan, 1.0], [1, 1, 1], [2, 2, 2], [3, 3, 3]]
GRADS += [[1e30, 1e30, 1.0], [1, 1, 1]]  # 1e30 * 2**16 overflows float32


def test_grad_scaler_dynamic_rules():
    scales, values, state = scaler_run("dk", GRADS, init_scale=2.0**16, growth_interval=2)
    expected, scale, tracker, param = [], 2.0**16, 0, np.zeros(3)
    for g in GRADS:
        scaled = np.float32(scale) * np.asarray(g, np.float32)
        if np.isfinite(scaled).all():
            param = param - 0.1 * np.asarray(g, np.float64)
            tracker += 1
            if tracker == 2:
                scale, tracker = scale * 2, 0
        else:
            scale, tracker = scale / 2, 0
        expected.append(scale)
        np.testing.assert_allclose(values[len(expected) - 1], param, rtol=1e-6)
    assert scales == expected
    assert state == {
        "scale": expected[-1],
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2,
        "_growth_tracker": tracker,
    }


def test_grad_scaler_matches_torch():
    pytest.importorskip("torch")
    for options in (
        {"init_scale": 2.0**16, "growth_interval": 2},
        {"init_scale": 3.0, "growth_factor": 3.0, "backoff_factor": 0.25, "growth_interval": 1},
    ):
        ours = scaler_run("dk", GRADS, **options)
        theirs = scaler_run("torch", GRADS, **options)
        assert ours[0] == theirs[0]
        for a, b in zip(ours[1], theirs[1]):
            np.testing.assert_array_equal(a, b)
        assert ours[2] == theirs[2]


def test_grad_scaler_unscale_and_state_errors():
    p = dk.tensor(np.ones(2, np.float32), requires_grad=True)
    opt = dk.optim.SGD([p], lr=1.0)
    scaler = GradScaler(init_scale=8.0)
    scaler.scale((p * 3).sum()).backward()
    np.testing.assert_array_equal(p.grad.numpy(), [24, 24])
    scaler.unscale_(opt)
    np.testing.assert_array_equal(p.grad.numpy(), [3, 3])  # e.g. for clipping before the step
    with pytest.raises(RuntimeError, match="unscale_"):
        scaler.unscale_(opt)
    scaler.step(opt)
    np.testing.assert_array_equal(p.detach().numpy(), [-2, -2])
    with pytest.raises(RuntimeError, match="step"):
        scaler.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        scaler.unscale_(opt)
    scaler.update()
    with pytest.raises(RuntimeError, match="no inf checks"):
        scaler.update()
    with pytest.raises(RuntimeError, match="Closure"):
        scaler.step(opt, closure=lambda: 0.0)
    scaler.update(new_scale=4.0)
    assert scaler.get_scale() == 4.0
    with pytest.raises(ValueError, match="new_scale"):
        scaler.update(new_scale=-1.0)
    with pytest.raises(RuntimeError, match="empty"):
        scaler.load_state_dict({})
    with pytest.raises(TypeError, match="outputs"):
        scaler.scale("loss")
    with pytest.raises(ValueError, match="growth_factor"):
        GradScaler(growth_factor=0.5)


def test_grad_scaler_state_dict_round_trip_and_disabled():
    a = GradScaler(init_scale=2.0**10, growth_interval=3)
    a._growth_tracker = 2
    b = GradScaler()
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict() and b.get_scale() == 2.0**10
    off = GradScaler(enabled=False)
    p = dk.tensor(np.ones(2, np.float32), requires_grad=True)
    opt = dk.optim.SGD([p], lr=1.0)
    loss = (p * 2).sum()
    assert off.scale(loss) is loss and off.get_scale() == 1.0 and off.state_dict() == {}
    loss.backward()
    off.step(opt)
    off.update()
    np.testing.assert_array_equal(p.detach().numpy(), [-1, -1])
    assert not off.is_enabled()


# ---------------------------------------------------------------------------------------------
# bfloat16 checkpoints
# ---------------------------------------------------------------------------------------------


def bf16_specials(rng) -> np.ndarray:
    """Random bfloat16 values with every special pattern: +-0, +-inf, NaNs (two payloads),
    subnormals, the largest and smallest normals."""
    bits = rng.integers(0, 2**16, 50, dtype=np.uint16)
    special = np.array([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0x0001, 0x807F, 0x7F7F, 0x0080], np.uint16)
    return np.concatenate([bits, special]).view(BF16).reshape(6, 10)


def test_bfloat16_checkpoint_round_trip_is_bit_exact(rng, tmp_path):
    values = bf16_specials(rng)
    model = nn.Linear(10, 6).to(dk.bfloat16)
    with dk.no_grad():
        model.weight.copy_(dk.tensor(values))
    path = tmp_path / "bf16.safetensors"
    dk.save({"model": model.state_dict(), "raw": values[:, ::2], "empty": np.zeros((0, 3), BF16)}, path)
    loaded = dk.load(path)
    for got, want in ((loaded["model"]["weight"], values), (loaded["raw"], values[:, ::2])):
        assert got.dtype == BF16 and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got).view(np.uint16), np.ascontiguousarray(want).view(np.uint16))
    assert loaded["empty"].dtype == BF16 and loaded["empty"].shape == (0, 3)
    fresh = nn.Linear(10, 6).to(dk.bfloat16)
    fresh.load_state_dict(loaded["model"])
    np.testing.assert_array_equal(fresh.weight.detach().numpy().view(np.uint16), values.view(np.uint16))


def test_bfloat16_checkpoint_is_read_by_safetensors_and_torch(rng, tmp_path):
    values = bf16_specials(rng)
    path = str(tmp_path / "bf16.safetensors")
    dk.save({"w": values}, path)
    import safetensors.numpy

    with open(path, "rb") as f:
        header = f.read(8 + int.from_bytes(f.read(8), "little"))
    assert b'"dtype":"BF16"' in header
    by_numpy = safetensors.numpy.load_file(path)["w"]
    np.testing.assert_array_equal(np.asarray(by_numpy).view(np.uint16), values.view(np.uint16))
    torch = pytest.importorskip("torch")
    import safetensors.torch

    by_torch = safetensors.torch.load_file(path)["w"]
    assert by_torch.dtype == torch.bfloat16
    np.testing.assert_array_equal(by_torch.view(torch.int16).numpy().view(np.uint16), values.view(np.uint16))


# ---------------------------------------------------------------------------------------------
# deepkern train --amp bf16
# ---------------------------------------------------------------------------------------------


def run_training(recipe, **options):
    import io as text_io

    from deepkern.training import TrainConfig, train

    out = text_io.StringIO()
    return train(TrainConfig(recipe=recipe, progress=False, **options), out=out), out.getvalue()


def test_train_with_amp_runs_under_autocast_and_checkpoints_float32_weights(tmp_path, monkeypatch):
    from deepkern import amp, training

    seen = []
    real_cast = amp.cast_arguments

    def spy(cls, args):  # records the dtypes the generator's and discriminator's GEMMs got
        result = real_cast(cls, args)
        if cls.__name__ == "Linear":
            seen.append(result[0].dtype)
        return result

    monkeypatch.setattr(dk.autograd, "AUTOCAST", [0, spy])
    path = tmp_path / "gan.safetensors"
    result, text = run_training("digits-gan", epochs=1, batch_size=256, amp="bf16", checkpoint=str(path))
    assert seen and set(seen) == {BF16}
    assert all(np.isfinite(v) for v in result["history"][-1].values())
    state = dk.load(path)
    assert state["config"]["amp"] == "bf16"
    weights = [v for m in state["models"].values() for v in m.values()]
    assert weights and all(np.asarray(w).dtype == F32 for w in weights)
    # resuming without --amp says so, and trains in float32
    seen.clear()
    _, text = run_training("digits-gan", epochs=2, resume=str(path))
    assert "amp bf16 -> None" in text
    assert seen == []
    assert training.AMP_CHOICES == ("bf16",)


def test_train_amp_refusals():
    with pytest.raises(ValueError, match="--amp fp16"):
        run_training("digits-gan", epochs=1, amp="fp16")
    with pytest.raises(ValueError, match="--amp"):
        run_training("digits-cnn", amp="bf16", federated=__import__("deepkern.training").training.FederatedConfig())
    # a layer without a bfloat16 kernel stops the run naming the option and the dtype, or the
    # recipe trains in bfloat16 once its layers have kernels
    try:
        run_training("digits-cnn", epochs=1, batch_size=512, amp="bf16")
    except ValueError as err:
        assert "--amp bf16" in str(err) and "bfloat16" in str(err)


def test_cli_amp_option(capsys):
    from deepkern import cli

    assert cli.main(["train", "digits-gan", "--amp", "fp16"]) == 2
    assert "--amp: invalid choice: 'fp16'" in capsys.readouterr().err


def test_grad_scaler_scales_a_bfloat16_loss_in_float32_like_torch():
    scaler = dk.amp.GradScaler(init_scale=3.0)
    loss = dk.tensor(1.0078125).to(BF16)
    scaled = scaler.scale(loss)
    assert scaled.dtype == F32 and float(scaled) == 3.0234375  # bfloat16 would round it to 3.03125
