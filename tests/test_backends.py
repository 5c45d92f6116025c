"""The backend seam: the registry, the choice of backend from the arrays, and a second device.

The second device is the fake of fake_device.py, registered for the test: whatever the ops,
tensors, layers and optimizers allocate for its arrays must come from its backend, since a NumPy
array mixed in is a device error, so the end-to-end runs below (training recipes included) fail on
any allocation that bypasses the backend.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import deepkern as dk
import numpy as np
import pytest
from deepkern import backends, nn, ops, optim
from deepkern.backends import Device
from deepkern.backends.cpu import CPUBackend

from checks import F32, F64, check, raises_naming, rand
from conftest import DEVICES
from fake_device import FakeArray, FakeBackend, fake
from reference import conv2d_ref, matmul_ref


@pytest.fixture
def registry(monkeypatch):
    """The registry without the fake device, restored after the test (which may register backends)."""
    monkeypatch.setattr(backends, "_BACKENDS", {n: b for n, b in backends._BACKENDS.items() if n != FakeBackend.name})


@pytest.fixture
def fake_backend(registry):
    return backends.register(FakeBackend())


# ----------------------------------------------------------------------------------------------
# the registry


def test_registry_lookups():
    cpu = backends.get("cpu")
    assert isinstance(cpu, CPUBackend) and cpu.array_type is np.ndarray and "cpu" in backends.names()
    assert backends.get(Device("cpu")) is cpu and backends.get("cpu:0") is cpu
    for name in ("cpu", "cuda", "cuda:1"):
        assert str(Device(name)) == name
    assert Device("cuda", 1) == "cuda:1" and Device("cpu") != "cuda"


def test_a_device_without_a_backend_is_a_clear_error(registry):
    if "cuda" in backends.names():
        pytest.skip("this build registers a CUDA backend")
    with raises_naming(RuntimeError, "no deepkern backend", "cuda", "available: cpu"):
        backends.get("cuda")
    with raises_naming(RuntimeError, "cuda"):
        backends.to_device(np.ones(3), "cuda")
    with raises_naming(ValueError, "tpu"):
        Device("tpu")


def test_register_refuses_a_second_backend_for_a_device_type(registry):
    with raises_naming(ValueError, "register", "cpu"):
        backends.register(CPUBackend())
    clash = FakeBackend()
    clash.device_type = backends.get("cpu").device_type
    with raises_naming(ValueError, "register", "fake", "DLPack device type 1"):
        backends.register(clash)


def test_cpu_backend_allocates_numpy_arrays():
    cpu = backends.get("cpu")
    prototype = np.ones((2, 3), np.float32)
    for array in (
        cpu.empty((2, 3), F64),
        cpu.zeros((2, 3), F64),
        cpu.full((2, 3), 7.0, F64),
        cpu.zeros_like(prototype, F64),
        cpu.full_like(prototype, 7.0, F64),
        cpu.empty_like(prototype, F64),
    ):
        assert type(array) is np.ndarray and array.shape == (2, 3) and array.dtype == F64
    assert cpu.zeros_like(prototype).dtype == F32 and not cpu.zeros((2,), F32).any()
    assert (cpu.full_like(prototype, 7.0) == 7).all()
    assert cpu.to_cpu(prototype) is prototype and cpu.from_cpu(prototype) is prototype


def test_backend_of_numpy_scalars_lists_and_tensors():
    cpu = backends.get("cpu")
    a = np.ones((2, 2))
    assert backends.backend_of(a, op="t") is cpu
    assert backends.backend_of(None, a, None, op="t") is cpu
    assert backends.backend_of(op="t") is cpu and backends.backend_of(None, op="t") is cpu
    assert backends.backend_of(2.0, [1.0, 2.0], np.float32(1), a, op="t") is cpu
    assert backends.backend_of(dk.tensor([1.0]), a, op="t") is cpu
    assert backends.backend_of(a[::2].T, np.asfortranarray(a), op="t") is cpu  # views are NumPy arrays too
    assert backends.device_of(a) == "cpu" and backends.device_of(dk.tensor([1.0])) == "cpu"


def test_an_unregistered_device_type_is_a_clear_error(registry):
    with raises_naming(RuntimeError, "matmul", "no deepkern backend", "DLPack device type 12"):
        backends.backend_of(np.ones(2).view(FakeArray), op="matmul")


def test_cuda_backend_when_a_gpu_is_usable():
    """The cuda cases of the device fixture exist exactly when deepkern can use a GPU."""
    if "cuda" not in backends.names():
        pytest.skip("no CUDA backend is registered: device='cuda' test cases are not generated")
    assert ("cuda" in DEVICES) == dk.cuda.is_available()


# ----------------------------------------------------------------------------------------------
# a second device


def test_backend_of_finds_the_second_device(fake_backend):
    a = fake(np.ones((2, 2)))
    assert backends.backend_of(a, None, a.T, op="t") is fake_backend
    assert backends.device_of(a) == Device("fake", 0) and str(backends.device_of(a)) == "fake:0"
    assert Device("fake:0").type == "fake"


@pytest.mark.parametrize("host", [np.ones((3, 2)), [[1.0, 2.0]] * 3, 2.0], ids=["ndarray", "list", "scalar"])
def test_mixing_devices_names_the_op_and_both_devices(fake_backend, host):
    a = fake(np.ones((2, 3)))
    with raises_naming(RuntimeError, "matmul", "same device", r"fake:0 \(FakeArray of shape \(2, 3\)\)", r"\bcpu\b"):
        backends.backend_of(a, host, op="matmul")
    with raises_naming(RuntimeError, "gemm", "same device", "fake:0", "cpu"):
        ops.gemm(host, a) if np.ndim(host) == 2 else ops.gemm(a, a.T, c=np.zeros((2, 2)))


def test_an_output_on_another_device_is_refused(fake_backend):
    a = fake(np.ones((2, 2)))
    with raises_naming(RuntimeError, "matmul", "fake:0", "cpu"):
        ops.matmul(a, a, out=np.empty((2, 2)))
    with raises_naming(RuntimeError, "max_pool2d", "fake:0", "cpu"):
        ops.max_pool2d(fake(np.ones((1, 4, 4))), 2, out=np.empty((1, 2, 2)))


def test_a_kernel_the_backend_lacks_names_it_and_the_device(registry):
    backends.register(FakeBackend(kernels={"gemm"}))
    x, w = fake(np.ones((1, 2, 5, 5))), fake(np.ones((3, 2, 3, 3)))
    assert ops.matmul(x[0, 0], x[0, 0]).shape == (5, 5)
    with raises_naming(NotImplementedError, "conv2d_forward", "fake"):
        ops.conv2d(x, w)
    with raises_naming(NotImplementedError, "sgd_step", "fake"):
        ops.sgd_step(fake(np.ones(3)), fake(np.ones(3)), lr=0.1)


def test_ops_run_the_second_devices_kernels_and_leave_results_there(fake_backend, rng):
    x, w, b = rand(rng, (2, 3, 7, 6), F64), rand(rng, (4, 3, 3, 3), F64), rand(rng, (4,), F64)
    y = ops.conv2d(fake(x), fake(w), fake(b), padding=1)
    assert type(y) is FakeArray and fake_backend.calls == ["conv2d_forward"]
    check(y, conv2d_ref(x, w, b, padding=1), F64, "conv2d on the fake device")
    gx, gw, gb = ops.conv2d_backward(fake(np.ones(y.shape)), fake(x), fake(w), padding=1)
    assert all(type(g) is FakeArray for g in (gx, gw, gb))
    a, m = rand(rng, (5, 4), F32), rand(rng, (3, 4, 6), F32)
    out = fake(np.full((3, 5, 6), np.nan, F32))
    assert ops.matmul(fake(a), fake(m), out=out) is out
    check(out, matmul_ref(a, m), F32, "batched matmul into a fake-device out")
    assert type(ops.linear(fake(a), fake(m[0].T), relu=True)) is FakeArray
    pooled, indices = ops.max_pool2d(fake(x), 2, return_indices=True)
    assert type(pooled) is FakeArray and type(indices) is FakeArray
    np.testing.assert_array_equal(pooled, ops.max_pool2d(x, 2))
    assert type(ops.max_pool2d_backward(fake(np.ones(pooled.shape)), x.shape, indices)) is FakeArray
    assert type(ops.adaptive_avg_pool2d_backward(fake(np.ones((2, 3, 1, 1))), x.shape)) is FakeArray
    seq, w_ih, w_hh = rand(rng, (4, 2, 3), F32), rand(rng, (8, 3), F32), rand(rng, (8, 2), F32)
    hidden, h_t, c_t, cache = ops.lstm(fake(seq), None, None, fake(w_ih), fake(w_hh), return_cache=True)
    assert all(type(r) is FakeArray for r in (hidden, h_t, c_t, *cache[:3]))
    grads = ops.lstm_backward(
        fake(np.ones(hidden.shape, F32)), None, None, fake(seq), None, None, fake(w_ih), fake(w_hh), cache
    )
    assert all(type(g) is FakeArray for g in grads)
    param, moment, square = fake(np.ones(3)), fake(np.zeros(3)), fake(np.zeros(3))
    ops.adam_step(param, fake(np.ones(3)), moment, square, step=1, lr=0.5)
    assert np.allclose(param, 0.5) and type(param) is FakeArray
    assert {
        "gemm",
        "max_pool2d",
        "max_pool2d_backward",
        "adaptive_avg_pool2d_backward",
        "lstm_forward",
        "lstm_backward",
        "adam_step",
        "conv2d_backward_data",
        "conv2d_backward_weight",
    } <= set(fake_backend.calls)


# ----------------------------------------------------------------------------------------------
# tensors, autograd, layers, optimizers and training on the second device


def test_tensor_device_and_to(fake_backend, rng):
    x = dk.tensor(rand(rng, (3, 4), F32), requires_grad=True)
    assert x.device == "cpu" and x.to("cpu") is x and x.cpu() is x
    on_fake = x.to("fake")
    assert on_fake.device == Device("fake", 0) and type(on_fake._array) is FakeArray
    assert "device='fake:0'" in repr(on_fake)
    assert on_fake.to("fake:0") is on_fake and on_fake.to(Device("fake")) is on_fake
    back = on_fake.cpu()
    assert back.device == "cpu" and type(back._array) is np.ndarray
    np.testing.assert_array_equal(back.detach().numpy(), x.detach().numpy())
    with raises_naming(TypeError, "fake:0", r"\.cpu\(\)"):
        on_fake.detach().numpy()
    (on_fake * 2).sum().backward()  # the gradient comes back through the copy
    assert x.grad.device == "cpu"
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 4), 2, F32))
    both = dk.tensor(np.ones(3), device="fake").to(dk.float32)
    assert both.device == "fake:0" and both.dtype == F32
    assert dk.zeros(2, 3, device="fake").device == "fake:0" and dk.zeros_like(on_fake).device == "fake:0"
    assert dk.randn(2, device="fake").device == "fake:0" and dk.ones_like(x).device == "cpu"


def test_tensors_on_two_devices_do_not_mix(fake_backend):
    a, b = dk.ones(2, 2), dk.ones(2, 2, device="fake")
    with raises_naming(RuntimeError, "same device", "fake:0", "cpu"):
        a + b
    with raises_naming(RuntimeError, "same device"):
        a @ b
    with raises_naming(RuntimeError, "add_", "fake:0", "cpu"):
        with dk.no_grad():
            b.add_(a)


def test_autograd_stays_on_the_second_device(fake_backend, rng):
    x = dk.tensor(rand(rng, (2, 3, 6, 6), F64), device="fake", requires_grad=True)
    w = dk.tensor(rand(rng, (4, 3, 3, 3), F64), device="fake", requires_grad=True)
    y = nn.functional.conv2d(x, w, padding=1)
    values, indices = y.max(dim=1)  # a multi-output Function whose indices get no gradient
    loss = (values.relu() + y[:, :2].mean() + nn.functional.max_pool2d(y, 2).sum()).sum()
    loss.backward()
    assert x.grad.device == "fake:0" and w.grad.device == "fake:0" and type(x.grad._array) is FakeArray
    x_cpu = x.detach().cpu().requires_grad_()
    w_cpu = w.detach().cpu().requires_grad_()
    y_cpu = nn.functional.conv2d(x_cpu, w_cpu, padding=1)
    (y_cpu.max(dim=1).values.relu() + y_cpu[:, :2].mean() + nn.functional.max_pool2d(y_cpu, 2).sum()).sum().backward()
    np.testing.assert_allclose(x.grad.cpu().numpy(), x_cpu.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(w.grad.cpu().numpy(), w_cpu.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("opt_class", [optim.SGD, optim.Adam, optim.RMSprop])
def test_a_model_trains_on_the_second_device(fake_backend, opt_class):
    def run(device):
        dk.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, device=device),
            nn.BatchNorm2d(4, device=device),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(16, 3, device=device),
        )
        extra = {"momentum": 0.9} if opt_class is not optim.Adam else {}
        opt = opt_class(model.parameters(), lr=0.05, **extra)
        x = dk.randn(5, 1, 4, 4, device=device)
        y = dk.tensor([0, 1, 2, 1, 0], device=device)
        for _ in range(3):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        return model, opt, loss.item()

    model, opt, loss = run("fake")
    assert all(p.device == "fake:0" for p in model.parameters())
    assert all(b.device == "fake:0" for b in model.buffers())
    assert all(
        type(s._array) is FakeArray for state in opt.state.values() for s in state.values() if isinstance(s, dk.Tensor)
    )
    cpu_model, _, cpu_loss = run("cpu")
    assert loss == pytest.approx(cpu_loss, rel=1e-6)
    for (name, p), q in zip(model.state_dict().items(), cpu_model.state_dict().values()):
        np.testing.assert_allclose(p.cpu().numpy(), q.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    cpu_model.load_state_dict(model.state_dict())  # across devices, both ways
    model.load_state_dict(cpu_model.state_dict())
    assert all(p.device == "fake:0" for p in model.parameters())


def test_lstm_modules_on_the_second_device(fake_backend, rng):
    dk.manual_seed(1)
    lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True, device="fake")
    dk.manual_seed(1)
    same_on_cpu = nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)
    x = dk.tensor(rand(rng, (2, 4, 3), F32), device="fake", requires_grad=True)
    out, (h, c) = lstm(x)
    (out.sum() + h.sum()).backward()
    assert out.device == h.device == x.grad.device == "fake:0"
    assert all(p.grad.device == "fake:0" for p in lstm.parameters())
    np.testing.assert_allclose(out.detach().cpu().numpy(), same_on_cpu(x.detach().cpu())[0].detach().numpy(), rtol=1e-6)
    cell = nn.LSTMCell(3, 5, device="fake")
    h_next, c_next = cell(x[:, 0])
    assert h_next.device == c_next.device == cell.weight_ih.device == "fake:0"


@pytest.mark.parametrize("recipe", ["sunspots-lstm", "digits-cnn", "digits-gan"])
def test_a_training_recipe_runs_on_the_second_device(fake_backend, recipe, tmp_path):
    """The same run on both devices gives the same metrics (the same kernels run on the same
    numbers); its checkpoint holds host arrays and resumes on the fake device."""
    from deepkern import training

    def run(device, epochs, **options):
        cfg = training.TrainConfig(recipe, epochs=epochs, device=device, progress=False, **options)
        return training.train(cfg, out=io.StringIO())["history"]

    checkpoint = str(tmp_path / "fake.safetensors")
    on_fake, on_cpu = run("fake", 2, checkpoint=checkpoint), run("cpu", 2)
    for fake_epoch, cpu_epoch in zip(on_fake, on_cpu):
        for key, value in cpu_epoch.items():
            if key != "seconds":
                assert fake_epoch[key] == pytest.approx(value, rel=1e-6), key
    models = dk.load(checkpoint)["models"]
    assert all(isinstance(v, np.ndarray) for model in models.values() for v in model.values())
    resumed = run("fake", 3, resume=checkpoint)
    assert [h["epoch"] for h in resumed] == [1, 2, 3]


class _DeviceLike:
    """What ops' overlap check reads of a device array: data_ptr, shape, byte strides, itemsize, size."""

    def __init__(self, data_ptr, shape, strides, itemsize=4):
        self.data_ptr, self.shape, self.strides, self.itemsize = data_ptr, shape, strides, itemsize
        self.size = int(np.prod(shape))


@pytest.mark.parametrize(
    "x, y, expected",
    [
        (_DeviceLike(1000, (4,), (4,)), _DeviceLike(1016, (4,), (4,)), False),  # adjacent
        (_DeviceLike(1000, (4,), (4,)), _DeviceLike(1012, (4,), (4,)), True),  # last element shared
        (_DeviceLike(1012, (4,), (-4,)), _DeviceLike(1000, (1,), (4,)), True),  # reversed view reaches back
        (_DeviceLike(1000, (2, 3), (24, 4)), _DeviceLike(1016, (1,), (4,)), True),  # between rows: the spans meet
        (_DeviceLike(1000, (2, 3), (24, 4)), _DeviceLike(1036, (2,), (4,)), False),  # just past the last row
        (_DeviceLike(1000, (0, 3), (12, 4)), _DeviceLike(1000, (3,), (4,)), False),  # empty
    ],
)
def test_overlap_of_device_arrays_by_byte_span(x, y, expected):
    from deepkern.ops._validate import overlaps

    assert overlaps(x, y) is expected and overlaps(y, x) is expected
    assert overlaps(x, np.zeros(3)) is False  # arrays on two devices never share memory


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not _glibc(), reason="the malloc thresholds are glibc's")
@pytest.mark.skipif(dk._C.build_options["sanitize"], reason="the sanitizers' allocator replaces glibc's malloc")
@pytest.mark.parametrize("keep", ["1", "0"])
def test_freed_arrays_stay_mapped_for_the_next_step(keep):
    """With glibc, importing deepkern pins malloc's thresholds: 80 MB of 2 MB arrays freed at once
    stay mapped (the next training step reuses them without page faults);
    DEEPKERN_KEEP_FREED_MEMORY=0 keeps glibc's own behaviour, which hands them back."""
    code = """
import os, numpy as np, deepkern.backends.cpu as cpu
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
arrays = [np.ones(1 << 18) for _ in range(40)]
before = resident()
del arrays
print(cpu.KEEPS_FREED_HEAP_MEMORY, (before - resident()) >> 20)
"""
    env = dict(os.environ, DEEPKERN_KEEP_FREED_MEMORY=keep)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    kept, released_mb = run.stdout.split()
    assert kept == ("True" if keep == "1" else "False")
    if keep == "1":
        assert int(released_mb) < 8, f"{released_mb} MB of the freed 80 MB handed back"
    else:
        assert int(released_mb) > 60, f"only {released_mb} MB of the freed 80 MB handed back"
