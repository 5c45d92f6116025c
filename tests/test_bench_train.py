"""The ``train`` and ``train-bf16`` benchmark suites (deepkern bench --op train [--dtype bf16]): one
training epoch of a recipe beside the same model in PyTorch from the same weights, and under
bfloat16 autocast beside torch.autocast. Their checks compare the two libraries' losses before and
after one Adam step; a whole run of a suite times real epochs here."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("torch")

from deepkern import bench  # noqa: E402
from deepkern.bench import registry, train  # noqa: E402


def test_the_bf16_suite_pairs_each_autocast_epoch_with_its_float32_epoch():
    suite = registry.get_suite("train-bf16")
    assert not suite.in_all and set(suite.summary_groups) == {train.GROUP_TRAIN_BF16, train.GROUP_TRAIN_F32}
    cases = suite.cases(True)
    assert "char-lstm" in train.TRAIN_BF16_RECIPES
    assert [(c.name, c.group) for c in cases] == [
        (name, group) for name in train.TRAIN_BF16_RECIPES for group in (train.GROUP_TRAIN_BF16, train.GROUP_TRAIN_F32)
    ]
    assert all(c.layout.endswith(" bf16") == (c.group == train.GROUP_TRAIN_BF16) for c in cases)
    for case in cases:  # char-lstm times the first batches of its epoch, and says so
        first = f"first {train.TIMED_BATCHES.get(case.name)} batches"
        assert (first in case.layout and first in case.label) == (case.name in train.TIMED_BATCHES)
    pair = train._TrainPair("digits-cnn", "bf16")
    assert pair._build().cfg.amp == "bf16" and train._TrainPair("digits-cnn")._build().cfg.amp is None


@pytest.mark.parametrize("name", ["digits-cnn", "char-lstm"])
@pytest.mark.parametrize("amp, tolerance", [(None, 1e-4), ("bf16", 3e-2)])
def test_the_losses_agree_with_pytorch(name, amp, tolerance):
    """float32: rounding only (~1e-6); autocast: both libraries round activations to bfloat16 (~1e-3)."""
    err = train.train_check(name, amp)
    assert 0 <= err < tolerance, err


@pytest.mark.parametrize("amp, tolerance", [(None, 1e-5), ("bf16", 1e-2)])
def test_char_lstm_trains_the_first_batches_alike_in_both_libraries(amp, tolerance):
    """Each call steps each optimizer once per timed batch; from the same weights over the same
    batches, clipped alike, the mean losses agree (in float32 within rounding; without the clipping
    on PyTorch's side they would differ by ~4e-4)."""
    pair = train._TrainPair("char-lstm", amp)
    ours, theirs = pair.deepkern()["train_loss"], pair.torch()["train_loss"]
    assert math.isfinite(ours) and math.isfinite(theirs)
    assert abs(ours - theirs) <= tolerance * abs(theirs), (ours, theirs)
    steps = [state["step"] for state in pair.recipe.optimizers["model"].state.values()]
    steps += [state["step"] for state in pair.torch_parts[2].state.values()]
    assert len(steps) > 2 and all(int(s) == train.TIMED_BATCHES["char-lstm"] for s in steps)


def test_char_lstm_flops_count_each_weight_once_per_position():
    """The LSTM's and the head's weights each take part in one multiply-add per position of a sample
    (the embedding is a lookup, the biases adds), forward once and backward twice, over the samples of
    the timed batches."""
    recipe = train._train_recipe("char-lstm")
    params = dict(recipe.models["model"].named_parameters())
    weights = sum(params[k].numel() for k in ("lstm.weight_ih_l0", "lstm.weight_hh_l0", "head.weight"))
    positions = recipe.loader.dataset.arrays[0].shape[1]
    samples = train.TIMED_BATCHES["char-lstm"] * recipe.cfg.batch_size
    assert samples < len(recipe.loader.dataset)
    assert train.train_flops("char-lstm", recipe) == 3 * 2 * weights * positions * samples


def test_both_libraries_train_from_the_same_weights_whichever_runs_first():
    """sunspots-lstm has no dropout: the same start, batches and steps give the same epoch loss up to
    float32 rounding, although deepkern's epoch runs before the twin's first."""
    pair = train._TrainPair("sunspots-lstm")
    [ours], [theirs] = pair.deepkern().values(), pair.torch().values()  # train_mse, train_loss
    assert abs(ours - theirs) <= 1e-4 * abs(theirs), (ours, theirs)


def test_an_autocast_epoch_runs_through_the_bench(monkeypatch):
    """The bf16 and float32 epochs of digits-cnn timed beside PyTorch's: both libraries' losses fall
    from the same start, and the report has a row per case."""
    cases = [c for c in train.train_bf16_cases(True) if c.name == "digits-cnn"]
    suite = registry.Suite("train-bf16-here", "digits-cnn only", lambda quick: cases)
    report = bench.run_suite(suite, [1], quick=True, repeats=1, progress=False)
    assert [(r.case, r.layout) for r in report.rows] == [(c.name, c.layout) for c in cases]
    for row in report.rows:
        assert row.reference == "torch" and row.deepkern_s > 0 and row.reference_s > 0
        assert math.isfinite(row.ratio) and row.rel_err is not None
