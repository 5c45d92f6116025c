"""`deepkern train`: each recipe learns in a short run, a resumed run continues the same
trajectory, checkpoints that do not fit are rejected, and the CLI reports bad options."""

from __future__ import annotations

import io

import deepkern
import numpy as np
import pytest
from deepkern import cli, data, training
from deepkern.training import TrainConfig, train

pytest.importorskip("sklearn", reason="the recipes' data ship with scikit-learn and statsmodels (deepkern[train])")
pytest.importorskip("statsmodels", reason="the recipes' data ship with scikit-learn and statsmodels (deepkern[train])")


def run(recipe, **options):
    return train(TrainConfig(recipe=recipe, progress=False, **options), out=io.StringIO())


def test_digits_cnn_learns():
    history = run("digits-cnn", epochs=3)["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.85  # chance is 0.1


def test_sunspots_lstm_beats_persistence():
    last = run("sunspots-lstm", epochs=15)["history"][-1]
    assert last["test_mse"] < last["persistence_mse"]


def test_char_lstm_learns_below_the_unigram_entropy(monkeypatch):
    small = data.CharCorpus(data.datasets._topics_text()[:40_000], seq_len=32)
    monkeypatch.setattr(training.data, "char_corpus", lambda seq_len: small)
    monkeypatch.setattr(training.CharLSTM, "sample_chars", 20)
    result = run("char-lstm", epochs=2, batch_size=16)
    last = result["history"][-1]
    assert last["val_loss"] < last["unigram_entropy"]
    assert result["summary"][-1].startswith("sample:\nThe ") and len(result["summary"][-1]) > 20


def test_digits_gan_trains_and_draws(tmp_path):
    result = run("digits-gan", epochs=2, plot=str(tmp_path / "grid.png"))
    last = result["history"][-1]
    assert all(np.isfinite(v) for v in last.values())
    samples = result["recipe"].samples()
    assert samples.shape == (64, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_curves_are_plotted(tmp_path):
    run("sunspots-lstm", epochs=2, plot=str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


class Interrupt(Exception):
    pass


def test_resumed_run_continues_the_same_trajectory(tmp_path, monkeypatch):
    """Stop a 3-epoch run after its second epoch's checkpoint, resume it, compare with a run
    that was never interrupted: the same metrics and the same final weights, bit for bit."""
    straight = run("digits-cnn", epochs=3, batch_size=64)
    path = str(tmp_path / "ck.safetensors")
    original = training.DigitsCNN.train_epoch
    calls = []

    def stop_at_third(self, progress):
        calls.append(1)
        if len(calls) == 3:
            raise Interrupt
        return original(self, progress)

    monkeypatch.setattr(training.DigitsCNN, "train_epoch", stop_at_third)
    with pytest.raises(Interrupt):
        run("digits-cnn", epochs=3, batch_size=64, checkpoint=path)
    monkeypatch.setattr(training.DigitsCNN, "train_epoch", original)
    resumed = run("digits-cnn", epochs=3, batch_size=64, resume=path)

    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in straight["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed["history"]] == strip
    a = straight["recipe"].models["model"].state_dict()
    b = resumed["recipe"].models["model"].state_dict()
    for name in a:
        np.testing.assert_array_equal(a[name].numpy(), b[name].numpy(), err_msg=name)


def test_resume_rejects_another_recipes_checkpoint(tmp_path):
    path = str(tmp_path / "sun.safetensors")
    run("sunspots-lstm", epochs=1, checkpoint=path)
    with pytest.raises(ValueError, match="sunspots-lstm"):
        run("digits-cnn", epochs=1, resume=path)


def test_a_checkpoint_that_does_not_fit_the_model_is_rejected(tmp_path):
    path = str(tmp_path / "ck.safetensors")
    run("sunspots-lstm", epochs=1, checkpoint=path)
    state = deepkern.load(path)
    state["models"]["model"]["head.weight"] = np.zeros((2, 32), np.float32)
    deepkern.save(state, path)
    with pytest.raises(ValueError, match=r"head\.weight.*\(1, 32\).*\(2, 32\)"):
        run("sunspots-lstm", epochs=2, resume=path)


def test_cli_train_reports_bad_options(capsys):
    assert cli.main(["train", "no-such-recipe"]) == 2
    assert cli.main(["train", "digits-cnn", "--device", "cuda", "--no-progress"]) == 1
    assert "--device cuda" in capsys.readouterr().err
    assert cli.main(["train", "digits-cnn", "--epochs", "0"]) == 2
    assert cli.main(["train", "digits-cnn", "--lr", "-1"]) == 2


def test_cli_train_runs_a_recipe(capsys, tmp_path):
    assert (
        cli.main(
            [
                "train",
                "sunspots-lstm",
                "--epochs",
                "2",
                "--no-progress",
                "--checkpoint",
                str(tmp_path / "c.safetensors"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "persistence baseline" in out and "trained sunspots-lstm" in out
