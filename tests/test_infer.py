"""Inference paths of the layers (nn/_inference.py): under no_grad the layers run their kernels with
arguments validated once per input shape, Sequential fuses Conv2d + BatchNorm2d (+ ReLU) and
Linear + ReLU in eval mode, and nn.utils.fuse_modules fuses the groups of a model with its own
forward. Every result is checked against float64 references (or the ordinary, unfused path), after
weight updates and back in training mode; nothing is recorded; hooks still fire."""

from __future__ import annotations

import deepkern
import numpy as np
import pytest
from deepkern import nn, no_grad, optim, tensor
from deepkern.bench.models import resnet18, resnet18_fusion_groups
from deepkern.nn.utils import fuse_modules

from reference import adaptive_avg_pool2d_ref, conv2d_ref, linear_ref, max_pool2d_ref, rel_error
from reference_nn import batch_norm_ref

TOL = {np.float32: 3e-6, np.float64: 1e-12}


def _randomize_norms(model, rng) -> None:
    """Random running statistics and affine parameters for every BatchNorm2d (through
    load_state_dict, as a user loads them)."""
    state = {k: arr(v) for k, v in model.state_dict().items()}
    for prefix, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and m.track_running_stats:
            dot = f"{prefix}." if prefix else ""
            c = m.num_features
            state[dot + "running_mean"] = rng.standard_normal(c)
            state[dot + "running_var"] = rng.uniform(0.3, 2.0, c)
            if m.affine:
                state[dot + "weight"] = rng.uniform(0.5, 1.5, c)
                state[dot + "bias"] = rng.standard_normal(c)
    model.load_state_dict(state)


def arr(t):
    """A parameter's or buffer's values (a copy), None for None; read without handing the array out
    (numpy() would: the layers' plans are then made again, to see writes through it)."""
    return None if t is None else t.detach()._array.copy()


def _reference(model, x) -> np.ndarray:
    """float64 result of a Sequential of the layers used here, in eval mode, from the references."""
    out = np.asarray(x, np.float64)
    for m in model:
        if isinstance(m, nn.Conv2d):
            out = conv2d_ref(out, arr(m.weight), arr(m.bias), m.stride, m.padding, m.dilation, m.groups)
        elif isinstance(m, nn.BatchNorm2d):
            out = batch_norm_ref(out, arr(m.running_mean), arr(m.running_var), arr(m.weight), arr(m.bias), eps=m.eps)[0]
        elif isinstance(m, nn.ReLU):
            out = np.maximum(out, 0)
        elif isinstance(m, nn.MaxPool2d):
            out = max_pool2d_ref(out, m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)[0]
        elif isinstance(m, nn.Flatten):
            out = out.reshape(out.shape[0], -1)
        elif isinstance(m, nn.Linear):
            out = linear_ref(out, arr(m.weight), arr(m.bias))
        elif not isinstance(m, nn.Dropout):
            raise AssertionError(f"no reference for {m!r}")
    return out


def _cnn(rng, dtype=np.float32, c=3, hw=(7, 9), bias=True):
    """Conv-BN-ReLU, Conv-ReLU, Conv-BN, pool, flatten, dropout, Linear-ReLU, Linear: every fused
    group and every lone layer with an inference path; random batch-norm statistics."""
    deepkern.manual_seed(int(rng.integers(1 << 30)))
    features = [-(-((n - 1) // 2 + 1) // 2) for n in hw]  # after the stride-2 conv and the ceil-mode pool
    model = nn.Sequential(
        nn.Conv2d(c, 5, 3, padding=1, bias=bias, dtype=dtype),
        nn.BatchNorm2d(5, dtype=dtype),
        nn.ReLU(),
        nn.Conv2d(5, 6, 3, stride=2, padding=1, dtype=dtype),
        nn.ReLU(),
        nn.Conv2d(6, 4, 1, bias=False, dtype=dtype),
        nn.BatchNorm2d(4, dtype=dtype),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * features[0] * features[1], 7, dtype=dtype),
        nn.ReLU(),
        nn.Linear(7, 3, dtype=dtype),
    )
    _randomize_norms(model, rng)
    return model.eval()


def _infer(model, x):
    with no_grad():
        out = model(tensor(x))
    assert out.grad_fn is None and not out.requires_grad
    return out.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_sequential_inference_matches_the_float64_reference(dtype, batch, bias):
    rng = np.random.default_rng(batch + 10 * bias)
    model = _cnn(rng, dtype, bias=bias)
    x = rng.standard_normal((batch, 3, 7, 9)).astype(dtype)
    ref = _reference(model, x)
    for _ in range(2):  # the first call makes the plans and the folded weights, the second uses them
        assert rel_error(_infer(model, x), ref) < TOL[dtype]
    unfused = model(tensor(x))  # grad enabled: the ordinary path, recorded
    assert unfused.grad_fn is not None
    np.testing.assert_allclose(_infer(model, x), unfused.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_the_fast_path_takes_new_shapes_and_odd_layouts():
    rng = np.random.default_rng(1)
    model = _cnn(rng, hw=(7, 9))
    for shape in [(2, 3, 7, 9), (1, 3, 8, 10), (3, 3, 8, 9)]:  # the classifier fixes 2 x 3 pooled pixels
        x = rng.standard_normal(shape).astype(np.float32)
        assert rel_error(_infer(model, x), _reference(model, x)) < TOL[np.float32]
    x = rng.standard_normal((3, 9, 7, 2)).astype(np.float32).transpose(3, 0, 2, 1)  # not contiguous
    assert rel_error(_infer(model, x), _reference(model, np.ascontiguousarray(x))) < TOL[np.float32]
    conv = nn.Conv2d(2, 3, 3).eval()
    for shape in [(1, 2, 5, 5), (2, 2, 6, 4), (0, 2, 5, 5), (2, 5, 5)]:  # an empty batch, unbatched
        x = rng.standard_normal(shape).astype(np.float32)
        with no_grad():
            got = conv(tensor(x)).numpy()
        w, b = arr(conv.weight), arr(conv.bias)
        ref = conv2d_ref(x[None] if x.ndim == 3 else x, w, b)
        assert got.shape == (ref[0] if x.ndim == 3 else ref).shape
        assert rel_error(got, ref[0] if x.ndim == 3 else ref) < TOL[np.float32]


def test_moving_or_training_a_model_drops_its_caches():
    model = _cnn(np.random.default_rng(8))
    x = np.random.default_rng(9).standard_normal((1, 3, 7, 9)).astype(np.float32)
    _infer(model, x)
    assert "_plan" in model[0].__dict__
    model.double()
    assert not any("_plan" in m.__dict__ for m in model.modules())
    assert rel_error(_infer(model, x.astype(np.float64)), _reference(model, x)) < TOL[np.float64]
    model.train()
    assert not any("_plan" in m.__dict__ for m in model.modules())


def test_unbatched_pooling_and_linear_take_the_fast_path():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 7, 6)).astype(np.float32)
    pool, lin = nn.MaxPool2d(3, stride=2, padding=1), nn.Linear(6, 4)
    with no_grad():
        pooled, lined = pool(tensor(x)).numpy(), lin(tensor(x)).numpy()
    assert "_plan" in pool.__dict__ and "_plan" in lin.__dict__
    assert rel_error(pooled, max_pool2d_ref(x[None], 3, 2, 1)[0][0]) == 0
    assert rel_error(lined, linear_ref(x, arr(lin.weight), arr(lin.bias))) < TOL[np.float32]


def test_changed_layer_settings_are_followed():
    rng = np.random.default_rng(2)
    conv, pool = nn.Conv2d(2, 3, 3), nn.MaxPool2d(2)
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    with no_grad():
        conv(tensor(x)), pool(tensor(x))
        conv.padding, conv.stride = (2, 1), (1, 2)
        pool.kernel_size, pool.stride = 3, 1
        got, pooled = conv(tensor(x)).numpy(), pool(tensor(x)).numpy()
    assert rel_error(got, conv2d_ref(x, arr(conv.weight), arr(conv.bias), (1, 2), (2, 1))) < 3e-6
    assert rel_error(pooled, max_pool2d_ref(x, 3, 1)[0]) == 0


def test_bad_input_raises_on_the_fast_path_as_on_the_ordinary_one():
    model = _cnn(np.random.default_rng(3))
    with no_grad():
        model(tensor(np.zeros((1, 3, 7, 9), np.float32)))  # plans made
        with pytest.raises(ValueError, match=r"Conv2d\(3, 5.*input has shape \(1, 4, 7, 9\)"):
            model(tensor(np.zeros((1, 4, 7, 9), np.float32)))
        with pytest.raises(TypeError, match="input has dtype float64 but the layer's parameters are float32"):
            model(tensor(np.zeros((1, 3, 7, 9))))
        with pytest.raises(ValueError, match=r"Linear\(in_features=24.*input has shape \(1, 36\)"):
            model(tensor(np.zeros((1, 3, 9, 9), np.float32)))
        with pytest.raises(ValueError, match="output size"):
            nn.Conv2d(1, 1, 5)(tensor(np.zeros((1, 1, 3, 3), np.float32)))


def test_folded_weights_follow_in_place_updates_replacements_and_training():
    rng = np.random.default_rng(4)
    model = _cnn(rng)
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)

    def check():
        assert rel_error(_infer(model, x), _reference(model, x)) < TOL[np.float32]

    check()
    with no_grad():
        model[0].weight.mul_(1.5)  # an in-place write through deepkern
        model[1].running_var.add_(0.25)
    check()
    model[0].bias = nn.Parameter(tensor(rng.standard_normal(5).astype(np.float32)))  # replaced
    check()
    opt = optim.SGD(model.parameters(), lr=0.1)
    model(tensor(x)).sum().backward()  # eval mode, recorded: the ordinary path
    opt.step()
    check()
    model[1].eps = 0.5
    check()
    model.train()
    before = arr(model[1].running_mean)
    with no_grad():  # training mode: batch statistics, running ones updated, nothing fused
        out = model[:3](tensor(x)).numpy()
    conv = conv2d_ref(x, arr(model[0].weight), arr(model[0].bias), 1, 1)
    bn = model[1]
    ref = batch_norm_ref(conv, before, None, arr(bn.weight), arr(bn.bias), True, eps=bn.eps)[0]
    assert rel_error(out, np.maximum(ref, 0)) < 1e-5
    assert not np.allclose(bn.running_mean.numpy(), before)
    model.eval()
    check()  # refolded with the new running statistics
    with no_grad():  # the functional form updates the running statistics in place too
        nn.functional.batch_norm(
            tensor(rng.standard_normal((4, 5)).astype(np.float32) * 10),
            bn.running_mean,
            bn.running_var,
            training=True,
            momentum=1.0,
        )
    check()


def _packed(conv, name):
    """The weights packed as ``name`` in the convolution's kept plan (None: none made)."""
    winograd, gemm = conv.__dict__["_plan"][3].packed
    return {"winograd_weights": winograd, "gemm_weights": gemm}[name]


# (channels in, out, input height and width, the packed weights, the path that uses them): a
# Winograd-shaped layer, one whose few pixels run as Y^T = col^T W^T on W^T packed in the GEMM's
# panels (99 output channels outnumber 49 pixels on 1 and 2 threads), and one whose col(X) is written
# as the GEMM's B panels against W packed as its A (the digits CNN's second layer).
PACKED_LAYERS = [
    (64, 64, (12, 10), "winograd_weights", "winograd_prepacked"),
    (40, 99, (7, 7), "gemm_weights", "im2col_transposed_prepacked"),
    (32, 64, (8, 8), "gemm_weights", "im2col_shifted_panels_prepacked"),
]


@pytest.mark.parametrize("layer", PACKED_LAYERS, ids=lambda layer: layer[3])
@pytest.mark.parametrize("bn", [False, True])
def test_packed_weights_follow_in_place_updates_and_replacements(layer, bn):
    """A layer in eval mode convolves with weights packed once (kept beside the layer); an in-place
    write, an optimizer step or a replaced weight makes them again."""
    c, k, (h, w), name, path = layer
    rng = np.random.default_rng(5)
    layers = [nn.Conv2d(c, k, 3, padding=1)] + ([nn.BatchNorm2d(k)] if bn else [])
    model = nn.Sequential(*layers).eval()
    _randomize_norms(model, rng)
    conv = model[0]
    x = rng.standard_normal((1, c, h, w)).astype(np.float32)

    def check():
        assert rel_error(_infer(model, x), _reference(model, x)) < TOL[np.float32]
        assert deepkern._C.last_conv2d_forward_path() == path
        assert _packed(conv, name) is not None  # the packed weights were used

    check()
    packed = _packed(conv, name)
    check()
    assert _packed(conv, name) is packed  # kept, not made again
    with no_grad():
        conv.weight.mul_(-0.5)
    check()
    opt = optim.SGD(model.parameters(), lr=0.5)
    model(tensor(x)).sum().backward()
    opt.step()
    check()
    conv.weight = nn.Parameter(tensor(rng.standard_normal((k, c, 3, 3)).astype(np.float32)))
    check()


@pytest.mark.parametrize("layer", PACKED_LAYERS, ids=lambda layer: layer[3])
@pytest.mark.parametrize("bn", [False, True])
def test_packed_weights_follow_writes_through_numpy_views(layer, bn):
    """Writes through a NumPy view of a parameter or buffer (``detach().numpy()`` shares its memory and
    bumps no version) are seen too: the packed weights are made again from the new values, whether the
    view was taken before or after they were packed, and kept while the values stay as they are."""
    c, k, (h, w), name, path = layer
    rng = np.random.default_rng(6)
    model = nn.Sequential(*([nn.Conv2d(c, k, 3, padding=1)] + ([nn.BatchNorm2d(k)] if bn else []))).eval()
    _randomize_norms(model, rng)
    conv = model[0]
    x = rng.standard_normal((1, c, h, w)).astype(np.float32)
    _infer(model, x)  # packs
    weights = conv.weight.detach().numpy()  # taken after the packing, nothing else run in between
    weights *= -0.5
    got = _infer(model, x)
    assert rel_error(got, _reference(model, x)) < TOL[np.float32]
    packed = _packed(conv, name)
    assert rel_error(_infer(model, x), _reference(model, x)) < TOL[np.float32]
    assert _packed(conv, name) is packed  # unchanged values: kept
    conv.bias.detach().numpy()[...] = 3.0
    if bn:
        model[1].running_mean.numpy()[...] += 1.0
    weights[0] = 0.25  # through the view taken before the last packing
    assert rel_error(_infer(model, x), _reference(model, x)) < TOL[np.float32]
    assert deepkern._C.last_conv2d_forward_path() == path
    assert conv.__dict__["_plan"][5] is not None  # a view is alive: the weights are compared with a copy
    del weights
    _infer(model, x)
    assert conv.__dict__["_plan"][5] is None  # none is: made once more, then checked by versions alone
    own = rng.standard_normal((k, c, 3, 3)).astype(np.float32)  # the caller's array, shared by from_numpy
    conv.weight = nn.Parameter(deepkern.from_numpy(own))
    _infer(model, x)
    own *= -1.0
    got = _infer(model, x)
    assert rel_error(got, _reference(model, x)) < TOL[np.float32]


def test_hooks_fire_and_see_each_layer_alone():
    rng = np.random.default_rng(5)
    model = _cnn(rng)
    x = rng.standard_normal((1, 3, 7, 9)).astype(np.float32)
    seen = {}
    for i in (0, 1, 2, 10):
        model[i].register_forward_hook(lambda m, args, out, i=i: seen.__setitem__(i, out.numpy().copy()))
    pre = model[3].register_forward_pre_hook(lambda m, args: seen.__setitem__("pre", args[0].numpy().copy()))
    got = _infer(model, x)
    assert rel_error(got, _reference(model, x)) < TOL[np.float32]
    w, b = arr(model[0].weight), arr(model[0].bias)
    conv = conv2d_ref(x, w, b, 1, 1)
    assert rel_error(seen[0], conv) < TOL[np.float32]  # the convolution's own output, not the fused one
    assert rel_error(seen[1], _reference(model[:2], x)) < TOL[np.float32]
    assert rel_error(seen[2], _reference(model[:3], x)) < TOL[np.float32]
    np.testing.assert_array_equal(seen["pre"], seen[2])
    assert rel_error(seen[10], _reference(model[:11], x)) < TOL[np.float32]
    pre.remove()
    seen.clear()
    _infer(model, x)
    assert sorted(seen) == [0, 1, 2, 10]


def test_subclasses_that_override_forward_run_their_own_forward():
    """A subclass of a layer with an inference path that overrides ``forward`` (a weight-standardised
    Conv2d, a scaled Linear, a shifted ReLU, a BatchNorm2d after a Conv2d, pooling, Flatten) runs its
    own forward inside a Sequential under no_grad, in eval and training mode: the results equal those
    with gradients recorded (which run every forward)."""
    rng = np.random.default_rng(11)

    class StdConv2d(nn.Conv2d):
        def forward(self, x):
            w = self.weight
            mean = w.mean(dim=(1, 2, 3), keepdim=True)
            return nn.functional.conv2d(x, w - mean, self.bias, self.stride, self.padding)

    class ScaledLinear(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 10.0

    def shifted(base):
        return type("Shifted" + base.__name__, (base,), {"forward": lambda self, x: base.forward(self, x) + 0.5})

    model = nn.Sequential(
        StdConv2d(2, 4, 3, padding=1),
        shifted(nn.BatchNorm2d)(4),
        shifted(nn.ReLU)(),
        nn.Conv2d(4, 4, 3, padding=1),
        shifted(nn.ReLU)(),
        shifted(nn.MaxPool2d)(2),
        shifted(nn.AdaptiveAvgPool2d)(2),
        shifted(nn.Flatten)(),
        ScaledLinear(16, 3),
        shifted(nn.ReLU)(),
    )
    _randomize_norms(model, rng)
    x = tensor(rng.standard_normal((2, 2, 6, 6)).astype(np.float32))
    for training in (False, True):
        model.train(training)
        recorded = model(x).detach().numpy()
        with no_grad():
            np.testing.assert_allclose(model(x).numpy(), recorded, rtol=1e-5, atol=1e-6)
        model[0].__class__ = nn.Conv2d  # the check can fail: the base's path gives other values
        with no_grad():
            assert not np.allclose(model(x).numpy(), recorded, rtol=1e-3)
        model[0].__class__ = StdConv2d


def test_no_grad_records_nothing_and_grad_mode_records_as_before():
    rng = np.random.default_rng(6)
    model = _cnn(rng)
    x = tensor(rng.standard_normal((2, 3, 7, 9)).astype(np.float32))
    with no_grad():
        for layer in model:
            x_next = layer(x)
            assert x_next.grad_fn is None and not x_next.requires_grad, layer
            x = x_next
    x = tensor(rng.standard_normal((2, 3, 7, 9)).astype(np.float32), requires_grad=True)
    out = model(x)
    assert out.requires_grad and out.grad_fn is not None
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())


def _tiny_resnet(rng, dtype=np.float32):
    deepkern.manual_seed(int(rng.integers(1 << 30)))
    model = resnet18(nn, widths=(4, 6, 6, 8))
    _randomize_norms(model, rng)
    return model.to(dtype).eval()


@pytest.mark.parametrize("batch", [1, 2])
def test_fuse_modules_matches_the_unfused_model(batch):
    rng = np.random.default_rng(7 + batch)
    model = _tiny_resnet(rng)
    reference = _tiny_resnet(np.random.default_rng(7 + batch), np.float64)  # the same weights, float64
    x = rng.standard_normal((batch, 3, 33, 31)).astype(np.float32)
    ref = reference(tensor(x.astype(np.float64))).detach().numpy()  # recorded: the ordinary path
    assert fuse_modules(model, resnet18_fusion_groups(model)) is model
    for _ in range(2):
        assert rel_error(_infer(model, x), ref) < 1e-5
    assert model.layer1[0].conv1.__dict__.get("_fusion") is not None
    model.layer1[0].relu(tensor(x))  # the block's ReLU, shared, still computes on other inputs
    np.testing.assert_array_equal(model.layer1[0].relu(tensor(x)).detach().numpy(), np.maximum(x, 0))
    with no_grad():  # a weight update refolds
        model.layer2[0].bn1.weight.mul_(-1)
        reference.layer2[0].bn1.weight.mul_(-1)
    ref = reference(tensor(x.astype(np.float64))).detach().numpy()
    assert rel_error(_infer(model, x), ref) < 1e-5
    model.train()
    reference.train()
    with no_grad():  # training: batch statistics, as the unfused model
        got = model(tensor(x)).numpy()
        ref = reference(tensor(x.astype(np.float64))).numpy()
    assert rel_error(got, ref) < 1e-5


def test_fuse_modules_rejects_what_it_cannot_fuse():
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3, track_running_stats=False), nn.ReLU(), nn.Linear(3, 3), nn.BatchNorm2d(4)
    )
    with pytest.raises(ValueError, match=r"cannot fuse \['3', '4'\] \(Linear, BatchNorm2d\)"):
        fuse_modules(model, [["3", "4"]])
    with pytest.raises(ValueError, match=r"1 \(BatchNorm2d.*cannot be folded into 0 .*needs running statistics"):
        fuse_modules(model, ["0", "1"])
    with pytest.raises(ValueError, match=r"4 \(BatchNorm2d\(4, .*cannot be folded into 0"):  # 3 channels
        fuse_modules(model, [["0", "2"], ["0", "4", "2"]])
    with pytest.raises(AttributeError, match="no attribute `9`"):
        fuse_modules(model, [["0", "9"]])
    assert all("_fusion" not in m.__dict__ for m in model.modules())  # nothing fused on an error


def test_the_infer_bench_suite_runs_quick():
    pytest.importorskip("torch")
    from deepkern.bench import get_suite, run_suite
    from deepkern.bench.registry import CHECK_TOLERANCE

    report = run_suite(get_suite("infer"), [1], quick=True, repeats=1, progress=False, peak_stream_bytes=1 << 20)
    cases = {row.case for row in report.rows}
    assert cases == {"resnet18", "digits-cnn", "resnet18-tiny"}
    for row in report.rows:
        assert row.reference == "torch" and row.deepkern_s > 0 and row.reference_s > 0
        assert row.rel_err is not None and row.rel_err < CHECK_TOLERANCE, row


def _mixed(rng, dtype=np.float32):
    """A Sequential whose layers with an array inference path (conv, pool, flatten, dropout,
    linear, ReLU) surround layers without one (Tanh, a nested Sequential's BatchNorm1d) and an
    Identity, so that the array path hands over to the ordinary one and back."""
    deepkern.manual_seed(int(rng.integers(1 << 30)))
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=dtype),
        nn.Tanh(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.ReLU(),
        nn.Identity(),
        nn.Flatten(),
        nn.Sequential(nn.Linear(4 * 3 * 2, 6, dtype=dtype), nn.BatchNorm1d(6, dtype=dtype)),
        nn.Dropout(0.5),
        nn.Linear(6, 3, dtype=dtype),
        nn.ReLU(),
    )
    _randomize_norms(model, rng)
    with no_grad():
        model[6][1].running_mean.copy_(tensor(rng.standard_normal(6).astype(dtype)))
    return model


def _layer_by_layer(model, x) -> np.ndarray:
    """``model(x)`` with each child called alone (the layers' own paths, no Sequential fusion)."""
    out = tensor(x)
    with no_grad():
        for m in model:
            out = m(out)
    return out.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 2, 5, 3), (3, 2, 6, 4), (2, 2, 5, 4)])
def test_the_array_path_matches_the_layer_by_layer_and_recorded_paths(dtype, shape):
    rng = np.random.default_rng(len(shape) + shape[0])
    model = _mixed(rng, dtype).eval()
    x = rng.standard_normal(shape).astype(dtype)
    expected = _layer_by_layer(model, x)
    recorded = model(tensor(x)).detach().numpy()  # grad enabled: every layer recorded
    for _ in range(2):  # the plans are made, then used
        got = _infer(model, x)
        np.testing.assert_allclose(got, expected, rtol=TOL[dtype], atol=TOL[dtype])
        np.testing.assert_allclose(got, recorded, rtol=1e-5, atol=1e-6)
    tanh_in = {}
    model[1].register_forward_pre_hook(lambda m, args: tanh_in.__setitem__("x", args[0]))
    np.testing.assert_array_equal(_infer(model, x), got)  # a hook in the middle: same result
    assert isinstance(tanh_in["x"], deepkern.Tensor) and tanh_in["x"].shape == shape[:-3] + (4,) + shape[-2:]


def test_hooks_on_layers_of_the_array_path_fire_with_tensors():
    rng = np.random.default_rng(11)
    model = _mixed(rng).eval()
    x = rng.standard_normal((2, 2, 6, 4)).astype(np.float32)
    plain = _infer(model, x)
    calls = []
    handles = [
        model[i].register_forward_hook(lambda m, args, out, i=i: calls.append((i, type(args[0]), out.numpy().copy())))
        for i in (2, 5, 7, 9)
    ]
    np.testing.assert_array_equal(_infer(model, x), plain)
    assert [c[0] for c in calls] == [2, 5, 7, 9] and all(c[1] is deepkern.Tensor for c in calls)
    np.testing.assert_array_equal(calls[-1][2], plain)
    assert calls[1][2].shape == (2, 4 * 3 * 2)
    replaced = model[5].register_forward_hook(lambda m, args, out: out * 0)  # a hook's value replaces the output
    np.testing.assert_allclose(_infer(model, x), _infer_zeros(model), rtol=1e-6)
    replaced.remove()
    for h in handles:
        h.remove()
    calls.clear()
    np.testing.assert_array_equal(_infer(model, x), plain)
    assert calls == []


def _infer_zeros(model) -> np.ndarray:
    """The model's output when the flattened features are all zero (what follows model[5])."""
    out = tensor(np.zeros((2, 4 * 3 * 2), np.float32))
    with no_grad():
        for m in list(model)[6:]:
            out = m(out)
    return out.numpy()


def test_training_mode_under_no_grad_keeps_dropout_and_batch_statistics():
    rng = np.random.default_rng(12)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(40, 8), nn.BatchNorm1d(8)).train()
    x = rng.uniform(1, 2, (16, 4, 10)).astype(np.float32)
    before = arr(model[3].running_mean)
    with no_grad():
        dropped = model[:2](tensor(x)).numpy()
        model(tensor(x))
    flat = x.reshape(16, -1)
    kept = dropped != 0
    assert 0 < kept.mean() < 1  # a mask was drawn
    np.testing.assert_allclose(dropped[kept], 2 * flat[kept], rtol=1e-6)
    assert not np.allclose(arr(model[3].running_mean), before)  # batch statistics were used and tracked
    model.eval()
    with no_grad():
        same = model[:2](tensor(x))
    np.testing.assert_array_equal(same.numpy(), flat)


def test_in_place_writes_and_replacements_after_a_cached_call_are_seen():
    rng = np.random.default_rng(13)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 5), nn.ReLU(), nn.Linear(5, 2)
    ).eval()
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)

    def check():
        assert rel_error(_infer(model, x), _reference(model, x)) < TOL[np.float32]

    check()
    with no_grad():
        model[0].weight.mul_(-2.0)
        model[3].bias.add_(1.0)
        model[5].weight.mul_(0.5)
    check()
    opt = optim.SGD(model.parameters(), lr=0.5)
    model(tensor(x)).sum().backward()
    opt.step()
    check()
    model[3].weight.data = rng.standard_normal((5, 36)).astype(np.float32)  # a new array
    model[0].bias = None
    check()
    model[2].start_dim = 2  # a changed setting: (2, 4, 9) into Linear(36) is refused
    with no_grad(), pytest.raises(ValueError, match=r"Linear\(in_features=36.*input has shape \(2, 4, 9\)"):
        model(tensor(x))


def test_the_array_path_returns_the_input_tensor_for_identities_and_refuses_bad_dtypes():
    x = tensor(np.ones((2, 3), np.float32))
    with no_grad():
        assert nn.Sequential(nn.Dropout(0.3), nn.Identity()).eval()(x) is x
        with pytest.raises(TypeError, match="Dropout"):
            nn.Sequential(nn.Flatten(), nn.Dropout(0.3)).eval()(tensor(np.ones((2, 3), np.int64)))
        with pytest.raises(TypeError, match="ReLU"):
            nn.Sequential(nn.ReLU())(tensor(np.ones((2, 3), np.int64)))


@pytest.mark.parametrize("output_size", [1, (2, 3), (None, 2)])
def test_adaptive_average_pooling_takes_the_fast_path(output_size):
    rng = np.random.default_rng(14)
    pool = nn.AdaptiveAvgPool2d(output_size)
    for shape in [(2, 3, 5, 7), (3, 4, 6)]:  # batched, unbatched
        x = rng.standard_normal(shape).astype(np.float64)
        with no_grad():
            got = pool(tensor(x))
        size = (output_size, output_size) if isinstance(output_size, int) else output_size
        size = tuple(shape[-2 + i] if v is None else v for i, v in enumerate(size))
        ref = adaptive_avg_pool2d_ref(x if len(shape) == 4 else x[None], size)
        assert "_plan" in pool.__dict__ and got.grad_fn is None
        assert rel_error(got.numpy(), ref if len(shape) == 4 else ref[0]) < TOL[np.float64]
    with no_grad(), pytest.raises(ValueError, match=r"AdaptiveAvgPool2d.*input has shape \(5, 6\)"):
        pool(tensor(np.zeros((5, 6))))


def test_autocast_regions_take_the_ordinary_path_and_compute_in_bfloat16():
    """Under autocast the layers' casts happen in their ops: a no_grad eval forward inside an
    autocast region gives what the same forward records with grad enabled (bfloat16 where the
    policy says so), and the fast path resumes after the region."""
    rng = np.random.default_rng(11)
    model = _cnn(rng)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    x = tensor(rng.standard_normal((2, 3, 7, 9)).astype(np.float32))
    with deepkern.autocast("cpu"):
        recorded = model(x).detach().numpy()
        with no_grad():
            got = model(x)
    assert got.dtype == deepkern.bfloat16 and recorded.dtype == deepkern.bfloat16
    np.testing.assert_array_equal(got.numpy().astype(np.float32), recorded.astype(np.float32))
    with no_grad():
        plain = model(x).numpy()
    assert plain.dtype == np.float32
    assert rel_error(plain, _reference(model, x.numpy())) < TOL[np.float32]


def _conv_bn_relu(rng):
    deepkern.manual_seed(int(rng.integers(1 << 30)))
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 25, 4)
    )
    _randomize_norms(model, rng)
    return model.eval()


def _recorded(model, x) -> np.ndarray:
    """The model's output on the ordinary path (grad enabled: no fast path, no cached plan)."""
    return model(tensor(x)).detach()._array.copy()


@pytest.mark.parametrize("share", ["Parameter(ndarray)", "Tensor(ndarray)", ".data = ndarray", "as_tensor", "dlpack"])
def test_weights_sharing_memory_with_outside_arrays_are_checked(share):
    """A weight made from (or handed out as) memory the caller keeps: writes there after a fast-path
    call are seen by the next one (the plans of weights shared that way had never been checked)."""
    rng = np.random.default_rng(0)
    model, x = _conv_bn_relu(rng), rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    conv = model[0]
    outside = conv.weight.detach()._array.copy()
    if share == "Parameter(ndarray)":
        conv.weight = nn.Parameter(outside)
    elif share == "Tensor(ndarray)":
        conv.weight = nn.Parameter(deepkern.Tensor(outside))
    elif share == ".data = ndarray":
        conv.weight.data = outside
    elif share == "as_tensor":
        conv.weight = nn.Parameter(deepkern.as_tensor(outside))
    else:  # the tensor's memory handed to another library, which writes it
        outside = np.from_dlpack(conv.weight.detach())
    with no_grad():
        model(tensor(x))
        outside[...] *= -1.5
        got = model(tensor(x)).detach()._array.copy()
    np.testing.assert_allclose(got, _recorded(model, x), rtol=1e-5, atol=1e-6)


def test_views_derived_from_a_handed_out_array_are_checked():
    """numpy().reshape(-1) writes the weight after the first handed-out array is gone: still seen."""
    rng = np.random.default_rng(1)
    model, x = _conv_bn_relu(rng), rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    flat = model[0].weight.detach().numpy().reshape(-1)
    with no_grad():
        model(tensor(x))
        flat[:50] = 3.0
        got = model(tensor(x)).detach()._array.copy()
    np.testing.assert_allclose(got, _recorded(model, x), rtol=1e-5, atol=1e-6)


def test_a_forward_set_on_an_instance_runs_in_a_sequential():
    """conv.forward = f (set on the layer, not its class) runs under no_grad too, as in PyTorch."""
    rng = np.random.default_rng(2)
    model, x = _conv_bn_relu(rng), rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    for layer in (model[0], model[1], model[2], model[4]):
        plain = type(layer).forward.__get__(layer)
        layer.forward = lambda t, plain=plain: plain(t) * 2.0
        with no_grad():
            got = model(tensor(x)).detach()._array.copy()
        np.testing.assert_allclose(got, _recorded(model, x), rtol=1e-5, atol=1e-6)
        del layer.forward


def test_batch_statistics_after_the_running_ones_are_removed():
    """bn.running_mean = bn.running_var = None after a fast-path call: the next call uses the batch's
    statistics (the fused group had been kept, and folding None crashed)."""
    rng = np.random.default_rng(3)
    model, x = _conv_bn_relu(rng), rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    with no_grad():
        model(tensor(x))
        model[1].running_mean = model[1].running_var = None
        got = model(tensor(x)).detach()._array.copy()
    np.testing.assert_allclose(got, _recorded(model, x), rtol=1e-5, atol=1e-6)


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


@pytest.mark.parametrize("replaced", ["bn", "relu"])
def test_replacing_a_fused_module_ends_the_fusion(replaced):
    """After fuse_modules, model.bn (or model.relu) replaced: the new module runs, the old one is
    neither folded in nor applied (it had been, with the new one on top)."""
    rng = np.random.default_rng(4)
    deepkern.manual_seed(4)
    model = _Block()
    _randomize_norms(model, rng)
    fuse_modules(model.eval(), ["conv", "bn", "relu"])
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    with no_grad():
        model(tensor(x))
    if replaced == "bn":
        model.bn = nn.BatchNorm2d(8).eval()
    else:
        model.relu = nn.LeakyReLU(0.2)
    with no_grad():
        got = model(tensor(x)).detach()._array.copy()
    np.testing.assert_allclose(got, _recorded(model, x), rtol=1e-5, atol=1e-6)


def test_padding_mode_set_later_is_what_inference_computes(rng):
    """The inference paths (the layer alone, and fused with a batch norm in a Sequential) pad in the
    layer's padding mode, also one set after the first call had cached a plan."""
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU()).eval()
    model[1].running_mean = tensor(rng.standard_normal(3).astype(np.float32))
    x = rng.standard_normal((2, 2, 6, 5)).astype(np.float32)
    with no_grad():
        model(tensor(x))
        model[0].padding_mode = "reflect"
        got = model(tensor(x)).detach()._array.copy()
        alone = model[0](tensor(x)).detach()._array.copy()
    np.testing.assert_allclose(got, _recorded(model, x), rtol=1e-5, atol=1e-6)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    model[0].padding_mode = "zeros"
    model[0].padding = (0, 0)
    with no_grad():
        np.testing.assert_allclose(alone, model[0](tensor(padded)).detach()._array, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="padding_mode"):
        model[0].padding_mode = "mirror"


def _program(model):
    """The program a Sequential keeps for its latest input (None: none)."""
    return model.__dict__["_groups"][2]


def _replace_weight(model, rng):
    model[3].weight = nn.Parameter(tensor(rng.standard_normal((6, 5, 3, 3)).astype(np.float32)))


def _replace_data(model, rng):
    model[10].weight.data = rng.standard_normal(model[10].weight.shape).astype(np.float32)


def _replace_running_var(model, rng):
    model[1].running_var = tensor(rng.uniform(0.1, 3.0, 5).astype(np.float32))


def _register_no_bias(model, rng):
    model[3].register_parameter("bias", None)


def _write_in_place(model, rng):
    with no_grad():
        model[0].weight.mul_(-0.5)
        model[6].running_mean.add_(1.0)
        model[12].bias.sub_(2.0)


def _set_eps(model, rng):
    model[6].eps = 0.75


def _set_dilation(model, rng):
    model[0].dilation, model[0].padding = (2, 2), (2, 2)


def _replace_child(model, rng):
    model[4] = nn.Dropout(0.1).eval()  # no ReLU there any more


def _load_state(model, rng):
    _randomize_norms(model, rng)


def _step_optimizer(model, rng):
    model.train()
    optim.SGD(model.parameters(), lr=0.1).zero_grad()
    loss = model(tensor(rng.standard_normal((2, 3, 7, 9)).astype(np.float32))).sum()
    loss.backward()
    optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()


@pytest.mark.parametrize(
    "change",
    [
        _replace_weight,
        _replace_data,
        _replace_running_var,
        _register_no_bias,
        _write_in_place,
        _set_eps,
        _set_dilation,
        _replace_child,
        _load_state,
        _step_optimizer,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_a_sequentials_program_follows_every_change_of_its_layers(change):
    """After its first call on an input a Sequential runs the kept steps alone (its program): every
    change of a layer (a parameter, buffer or child replaced, a value written in place, a setting set,
    a state loaded, an optimizer step) is in the next result, which is then kept again."""
    rng = np.random.default_rng(31)
    model = _cnn(rng)
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    for _ in range(2):
        assert rel_error(_infer(model, x), _reference(model, x)) < TOL[np.float32]
    assert _program(model) is not None
    before = _infer(model, x)
    change(model, rng)
    ref = _reference(model, x)
    assert rel_error(before, ref) > 1e-3  # the change matters
    for _ in range(2):
        assert rel_error(_infer(model, x), ref) < TOL[np.float32]
    assert _program(model) is not None


def test_a_sequentials_program_follows_hooks_modes_and_shapes():
    """Hooks added to a layer after the program was made fire (and stop when removed); training mode
    uses the batch's statistics; an input of another shape or dtype gets its own program."""
    rng = np.random.default_rng(32)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).eval()
    _randomize_norms(model, rng)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    ref = _reference(model, x)
    for _ in range(2):
        assert rel_error(_infer(model, x), ref) < TOL[np.float32]
    seen = []
    handle = model[1].register_forward_hook(lambda m, args, out: seen.append(out.shape))
    assert rel_error(_infer(model, x), ref) < TOL[np.float32]
    assert seen == [(2, 4, 5, 6)]
    handle.remove()
    for _ in range(2):
        assert rel_error(_infer(model, x), ref) < TOL[np.float32]
    assert len(seen) == 1 and _program(model) is not None
    model.train()
    conv = conv2d_ref(x, arr(model[0].weight), arr(model[0].bias), padding=1)
    mean, var = conv.mean(axis=(0, 2, 3)), conv.var(axis=(0, 2, 3))
    batch = batch_norm_ref(conv, mean, var, arr(model[1].weight), arr(model[1].bias), eps=model[1].eps)[0]
    assert rel_error(_infer(model, x), np.maximum(batch, 0)) < 1e-5
    model.eval()
    ref = _reference(model, x)  # the running statistics moved in training mode
    for shape in [(1, 3, 4, 4), (3, 3, 4, 7), (2, 3, 5, 6)]:  # other shapes, the first again
        y = rng.standard_normal(shape).astype(np.float32)
        for _ in range(2):
            got = _infer(model, y)
            assert got.shape == (shape[0], 4) + shape[2:]
            assert rel_error(got, _reference(model, y)) < TOL[np.float32]
    assert rel_error(_infer(model, x), ref) < TOL[np.float32]
    model.double()
    for _ in range(2):
        assert rel_error(_infer(model, x.astype(np.float64)), ref) < TOL[np.float64]


class _ConvBnRelu(nn.Module):
    """A model with its own forward (picklable: defined at module level), fused by fuse_modules."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def test_models_pickle_and_copy_after_inference_without_their_caches():
    """A model that ran inference (plans, packed weights, a program, fused layers) pickles and deep-copies
    as its parameters and settings; the copy computes the same."""
    import copy
    import pickle

    rng = np.random.default_rng(33)
    model = _cnn(rng)
    x = rng.standard_normal((1, 3, 7, 9)).astype(np.float32)
    tiny = resnet18(nn, num_classes=3, widths=(4, 6, 6, 8)).eval()
    fuse_modules(tiny, resnet18_fusion_groups(tiny))
    images = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    fused = _ConvBnRelu().eval()
    _randomize_norms(fused, rng)
    fuse_modules(fused, [["conv", "bn", "relu"]])
    for m, inp in ((model, x), (tiny, images), (fused, images)):
        expected = _infer(m, inp)
        twins = [copy.deepcopy(m)] + ([pickle.loads(pickle.dumps(m))] if m is not tiny else [])  # tiny's class is local
        for twin in twins:
            assert "_plan" not in twin.modules().__next__().__dict__
            np.testing.assert_allclose(_infer(twin, inp), expected, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(_infer(twin, inp), expected, rtol=1e-5, atol=1e-6)


def test_a_sequentials_program_follows_a_model_moved_back_and_forth():
    """model.double().float() gives the layers new arrays of the old values: writes through a NumPy
    view of a new one (which bump no version) are in the next result."""
    rng = np.random.default_rng(34)
    model = _cnn(rng)
    x = rng.standard_normal((1, 3, 7, 9)).astype(np.float32)
    for _ in range(2):
        _infer(model, x)
    model.double().float()
    weights = model[3].weight.detach().numpy()
    weights *= -2.0
    for _ in range(2):
        assert rel_error(_infer(model, x), _reference(model, x)) < TOL[np.float32]
