"""The ``train-cuda`` benchmark suite without a GPU: the ResNet-18-shaped model and its PyTorch twin
(same state-dict keys and shapes, same outputs and gradients from copied weights), the FLOP count,
and the suite's whole path (training steps, the losses' check, phase rows, the report) run by the
GPU runner on the CUDA backend's code paths (tests/cuda_standin.py) beside PyTorch on the CPU."""

import math

import deepkern
import numpy as np
import pytest
from deepkern import bench, nn
from deepkern.bench import models, registry, runner, train_cuda
from deepkern.bench.libraries import Backend
from deepkern.bench.timing import time_fn

from checks import raises_naming

#: A ResNet small enough for a CPU test; layer4's batch norm still sees 8 samples x 1 pixel.
TINY = train_cuda.ResNetSize(image=32, batch=8, classes=5, widths=(8, 8, 16, 16))


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("widths, image", [(models.RESNET18_WIDTHS, 32), ((4, 8, 8, 12), 29)], ids=["resnet18", "odd"])
def test_resnet18_and_its_torch_twin_agree_from_copied_weights(widths, image):
    """Same state-dict keys (in order) and shapes; from the deepkern weights copied by state dict,
    the same logits and the same parameter and input gradients, in training (batch statistics) and
    evaluation mode. In float64, so that the comparison sees the models and not float32 rounding
    (batch norm over the few values of the last stage amplifies it)."""
    torch = pytest.importorskip("torch")
    deepkern.manual_seed(1)
    ours = models.resnet18(nn, num_classes=7, widths=widths)
    theirs = models.resnet18(torch.nn, num_classes=7, widths=widths)
    state = ours.state_dict()
    assert list(state) == list(theirs.state_dict())
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert "layer2.0.downsample.0.weight" in state and "layer1.0.downsample.0.weight" not in state
    theirs.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in state.items()})
    ours.double()
    theirs.double()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 3, image, image))
    for training in (True, False):
        ours.train(training)
        theirs.train(training)
        xd, xt = deepkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        yd, yt = ours(xd), theirs(xt)
        assert tuple(yd.shape) == tuple(yt.shape) == (3, 7)
        assert _rel(yd.detach().numpy(), yt.detach().numpy()) < 1e-10, f"logits, training={training}"
        g = rng.standard_normal((3, 7))
        yd.backward(deepkern.tensor(g))
        yt.backward(torch.from_numpy(g))
        assert _rel(xd.grad.numpy(), xt.grad.numpy()) < 1e-10, f"input gradient, training={training}"
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            assert _rel(p.grad.numpy(), q.grad.numpy()) < 1e-10, f"{name} gradient, training={training}"
            p.grad, q.grad = None, None
    for key, value in ours.state_dict().items():  # the running statistics of the training pass
        assert _rel(value.numpy(), theirs.state_dict()[key].numpy()) < 1e-10, key


def test_resnet18_refuses_bad_widths():
    with raises_naming(ValueError, "widths", r"\(64, 128\)"):
        models.resnet18(nn, widths=(64, 128))
    with raises_naming(ValueError, "widths", "0"):
        models.resnet18(nn, widths=(8, 8, 0, 8))


def test_forward_flops_counts_the_convolutions_linears_and_lstms():
    """forward_flops (hooks) against the train suite's formula for the digits CNN and the LSTM
    suite's for an LSTM, plus the linear head; the model's mode is restored and nothing recorded."""
    from deepkern import training
    from deepkern.bench.lstm import lstm_flops

    cnn = training.DigitsCNN.model()
    x = deepkern.tensor(np.zeros((1, 1, 8, 8), np.float32))
    hw = 64
    expected = 2 * (hw * 32 * 9 + hw * 64 * 32 * 9 + (hw // 4) * 64 * 128 + 128 * 10)
    assert models.forward_flops(cnn, deepkern, x) == expected
    assert cnn.training

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(5, 7, batch_first=True)
            self.head = nn.Linear(7, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    model = Recurrent().eval()
    seq = deepkern.tensor(np.zeros((2, 11, 5), np.float32), requires_grad=True)
    flops = models.forward_flops(model, deepkern, seq)
    assert flops == lstm_flops((11, 2, 5, 7), "fwd") + 2 * 2 * 11 * 7 * 3
    assert not model.training and seq.grad is None


def test_train_cuda_suite_cases_build_nothing_and_skip_without_a_gpu(monkeypatch):
    """Three cases (the two recipes and the ResNet), each a training step on 'cuda' beside torch
    with phase rows; making them builds no model and loads no data (``deepkern bench`` lists every
    suite's cases); without a GPU the suite says why."""
    suite = registry.get_suite("train-cuda")
    monkeypatch.setattr(train_cuda, "_workload", lambda *args: pytest.fail("a model was built"))
    cases = suite.cases(False)
    assert [c.name.split()[0] for c in cases] == list(train_cuda.TRAIN_CUDA_MODELS)
    for case in cases:
        assert case.device == "cuda" and case.layout == "step" and set(case.impls) == {"deepkern", "torch"}
        assert case.phases is not None and math.isnan(case.flops)
    assert set(suite.summary_groups) == {train_cuda.GROUP_STEP, *train_cuda.PHASES}
    if not deepkern.cuda.is_available():
        assert "GPU" in suite.unavailable()
        report = bench.run_suite(suite, [1], device="cuda")
        assert report.rows == [] and report.notes[0].startswith("train-cuda skipped:")


def test_train_cuda_runs_on_the_gpu_code_paths(monkeypatch):
    """The GPU runner over the suite's three models (the ResNet tiny), deepkern on the CUDA
    backend's code paths (the stand-in device), torch on the CPU, host clocks for the events: the
    losses agree (the check), every case gives a step row and one row per phase, with the FLOP
    counted when the model was built."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    cuda_standin = pytest.importorskip("cuda_standin", exc_type=ImportError)
    monkeypatch.setitem(deepkern.backends._BACKENDS, "standin", cuda_standin.StandInBackend())
    monkeypatch.setattr(runner, "cuda_unavailable", lambda: None)
    monkeypatch.setattr(runner, "time_cuda_fn", time_fn)
    monkeypatch.setattr(deepkern.cuda, "get_device_name", lambda index: "a test GPU")
    here = [
        Backend(name, lambda: True, None, to_cuda=lambda x: x, cuda_missing=lambda: None)
        for name in ("deepkern", "torch")
    ]
    monkeypatch.setattr(runner, "backends", lambda: here)
    cases = [train_cuda.train_cuda_case(name, "standin", "cpu", TINY) for name in train_cuda.TRAIN_CUDA_MODELS]
    suite = registry.Suite("train-cuda-here", "the suite on the host", lambda quick: cases)
    report = bench.run_suite(suite, [1], quick=True, repeats=2, device="cuda", progress=False)
    assert report.notes == []
    layouts = ("step",) + train_cuda.PHASES
    assert [(r.case, r.layout) for r in report.rows] == [(c.name, layout) for c in cases for layout in layouts]
    for row in report.rows:
        assert row.reference == "torch" and row.threads == 0
        assert 0 <= row.rel_err < registry.CHECK_TOLERANCE, (row.case, row.rel_err)
        assert row.deepkern_s > 0 and row.reference_s > 0 and row.ratio == row.reference_s / row.deepkern_s
        assert row.repeats == (2 if row.layout == "step" else 3 + 2 - train_cuda.PHASE_WARMUP)
        assert math.isfinite(row.gflops) == (row.layout != "optimizer")
    for case in cases:
        step, forward, backward, _ = (r for r in report.rows if r.case == case.name)
        assert step.gflops * step.deepkern_s == pytest.approx(3 * forward.gflops * forward.deepkern_s)
        assert backward.gflops * backward.deepkern_s == pytest.approx(2 * forward.gflops * forward.deepkern_s)
    table = bench.format_table(report.rows)
    assert all(f"train  {case.name}" in table for case in cases) and "optimizer" in table
