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


@pytest.mark.parametrize("name", ["curves.pdf", "curves", "curves.xyz"])
def test_a_plot_path_not_ending_in_png_is_refused_before_training(name, tmp_path, capsys):
    """The plot is a PNG: another suffix (or none, which the plotting library would extend) fails at
    once, before an epoch runs, naming the option."""
    path = str(tmp_path / name)
    with pytest.raises(ValueError, match=f"--plot {path}: the plot is written as PNG"):
        run("sunspots-lstm", epochs=1, plot=path)
    assert cli.main(["train", "sunspots-lstm", "--no-progress", "--epochs", "1", "--plot", path]) == 1
    captured = capsys.readouterr()
    assert "epoch" not in captured.out and f"--plot {path}: the plot is written as PNG" in captured.err
    assert not list(tmp_path.iterdir())


class Interrupt(Exception):
    pass


@pytest.fixture
def small_digits(monkeypatch):
    """The digits recipes on 160 training and 160 test images, so that a run of several epochs
    takes a second."""
    full = training.data.digits

    def small(train=True, seed=0):
        images, labels = full(train=train, seed=seed).arrays
        return data.TensorDataset(images[:160], labels[:160])

    monkeypatch.setattr(training.data, "digits", small)


@pytest.fixture
def small_corpus(monkeypatch):
    """char-lstm on 5k characters of its corpus with a small LSTM, and a 20-character sample."""
    small = data.CharCorpus(data.datasets._topics_text()[:5_000], seq_len=16)
    monkeypatch.setattr(training.data, "char_corpus", lambda seq_len: small)
    model = training.CharModel
    monkeypatch.setattr(training, "CharModel", lambda vocab: model(vocab, embed=8, hidden=24))
    monkeypatch.setattr(training.CharLSTM, "sample_chars", 20)


def interrupted(monkeypatch, recipe, epochs, after, **options):
    """Runs ``recipe`` for ``epochs`` epochs but raises Interrupt when epoch ``after + 1`` starts,
    as a run stopped by the user after the checkpoint of epoch ``after``."""
    cls = training.RECIPES[recipe]
    original = cls.train_epoch
    calls = []

    def stop(self, progress):
        calls.append(1)
        if len(calls) > after:
            raise Interrupt
        return original(self, progress)

    monkeypatch.setattr(cls, "train_epoch", stop)
    with pytest.raises(Interrupt):
        run(recipe, epochs=epochs, **options)
    monkeypatch.setattr(cls, "train_epoch", original)


def assert_same_state(a, b):
    """Two finished runs hold the same training state, bit for bit: history (but the timings),
    parameters, optimizer state (step counts included), schedulers, data order, random generator."""

    def strip(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert strip(a["history"]) == strip(b["history"])
    ra, rb = a["recipe"], b["recipe"]
    for name in ra.models:
        sa, sb = ra.models[name].state_dict(), rb.models[name].state_dict()
        assert list(sa) == list(sb)
        for key in sa:
            np.testing.assert_array_equal(sa[key].numpy(), sb[key].numpy(), err_msg=f"{name}.{key}")
    for name in ra.optimizers:
        oa, ob = ra.optimizers[name].state_dict(), rb.optimizers[name].state_dict()
        assert oa["param_groups"] == ob["param_groups"]
        assert oa["state"].keys() == ob["state"].keys() and oa["state"]
        for index, entry in oa["state"].items():
            assert entry["step"] == ob["state"][index]["step"] > 0
            for key, value in entry.items():
                if key != "step":
                    np.testing.assert_array_equal(value.numpy(), ob["state"][index][key].numpy(), err_msg=key)
    assert {k: s.state_dict() for k, s in ra.schedulers.items()} == {
        k: s.state_dict() for k, s in rb.schedulers.items()
    }
    assert [loader.epoch for loader in ra.loaders] == [loader.epoch for loader in rb.loaders]
    assert a["generator"] == b["generator"]


def run_and_generator(recipe, **options):
    result = run(recipe, **options)
    result["generator"] = deepkern.random.get_generator().bit_generator.state
    return result


RECIPES_SMALL = [
    ("digits-cnn", {"batch_size": 64}),
    ("sunspots-lstm", {}),
    ("char-lstm", {"batch_size": 16}),
    ("digits-gan", {}),
]


@pytest.mark.parametrize("recipe, options", RECIPES_SMALL, ids=[r for r, _ in RECIPES_SMALL])
def test_an_interrupted_run_resumed_equals_the_straight_run(
    recipe, options, tmp_path, monkeypatch, small_digits, small_corpus
):
    """3 epochs in one run, and the same 3-epoch run stopped after epoch 2 then resumed (without
    --epochs: the checkpoint's 3): the same training state, bit for bit."""
    straight = run_and_generator(recipe, epochs=3, **options)
    path = str(tmp_path / "ck.safetensors")
    interrupted(monkeypatch, recipe, 3, 2, checkpoint=path, **options)
    assert deepkern.load(path)["epoch"] == 2
    assert_same_state(straight, run_and_generator(recipe, resume=path))


@pytest.mark.parametrize("recipe, options", RECIPES_SMALL[1:], ids=[r for r, _ in RECIPES_SMALL[1:]])
def test_k_epochs_then_m_more_equal_k_plus_m_in_one_run(recipe, options, tmp_path, small_digits, small_corpus):
    """`--epochs 2` then `--resume --epochs 3` equals `--epochs 3`, bit for bit, for the recipes
    without a learning-rate schedule. (digits-cnn's cosine schedule spans the epochs of each run,
    so its first 2 epochs differ: test_extending_a_run_continues_the_schedule_of_the_new_total.)"""
    straight = run_and_generator(recipe, epochs=3, **options)
    path = str(tmp_path / "ck.safetensors")
    run(recipe, epochs=2, checkpoint=path, **options)
    assert_same_state(straight, run_and_generator(recipe, epochs=3, resume=path))


def record_learning_rates(monkeypatch) -> list:
    """The learning rate of every Adam step from now on, in order."""
    rates = []
    original = deepkern.optim.Adam.step

    def step(self, closure=None):
        rates.append(self.param_groups[0]["lr"])
        return original(self, closure)

    monkeypatch.setattr(deepkern.optim.Adam, "step", step)
    return rates


def cosine_rates(base, epochs, first, last, steps_per_epoch):
    """float64 reference: the rate of each step of epochs first..last (1-based) of a cosine
    schedule from ``base`` to 0 over ``epochs`` epochs, one value per epoch."""
    return np.repeat(
        [base * (1 + np.cos(np.pi * (e - 1) / epochs)) / 2 for e in range(first, last + 1)], steps_per_epoch
    )


def test_extending_a_run_continues_the_schedule_of_the_new_total(tmp_path, monkeypatch, small_digits):
    """`--epochs 2` then `--resume --epochs 5`: the resumed epochs 3..5 run at the rates of a
    5-epoch cosine schedule at those epochs (the rates a straight 5-epoch run uses there), not at
    the end of the 2-epoch schedule (0)."""
    base = training.DigitsCNN.defaults["lr"]
    path = str(tmp_path / "ck.safetensors")
    rates = record_learning_rates(monkeypatch)
    first = run("digits-cnn", epochs=2, batch_size=64, checkpoint=path)
    steps = len(first["recipe"].loader)
    np.testing.assert_allclose(rates, cosine_rates(base, 2, 1, 2, steps), rtol=1e-12)
    rates.clear()
    resumed = run("digits-cnn", epochs=5, batch_size=64, resume=path)
    resumed_rates = list(rates)
    np.testing.assert_allclose(resumed_rates, cosine_rates(base, 5, 3, 5, steps), rtol=1e-12)
    rates.clear()
    run("digits-cnn", epochs=5, batch_size=64)
    assert resumed_rates == rates[2 * steps :]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4, 5]
    assert resumed["recipe"].schedulers["model"].T_max == 5


def checkpoint_of(tmp_path, recipe="sunspots-lstm", **options) -> str:
    path = str(tmp_path / "ck.safetensors")
    run(recipe, checkpoint=path, **options)
    return path


@pytest.mark.parametrize("option", ["batch_size", "lr", "seed"])
def test_resume_refuses_another_value_of_what_defines_the_run(option, tmp_path, capsys):
    """A resume keeps the checkpoint's batch size, learning rate and seed: another value is
    refused (exit 2) before any work, naming the option, the checkpoint's value and the given one."""
    path = checkpoint_of(tmp_path, epochs=1, batch_size=24, lr=3e-3, seed=5)
    saved = deepkern.load(path)["config"][option]
    other = saved * 2
    before = open(path, "rb").read()
    flag = "--" + option.replace("_", "-")
    with pytest.raises(training.ResumeError, match=f"{flag} {other}: .* with {flag} {saved},"):
        run("sunspots-lstm", epochs=2, resume=path, **{option: other})
    capsys.readouterr()
    argv = ["train", "sunspots-lstm", "--no-progress", "--epochs", "2", "--resume", path, flag, str(other)]
    assert cli.main(argv + ["--checkpoint", path]) == 2
    captured = capsys.readouterr()
    assert f"{flag} {other}: the checkpoint {path} was trained with {flag} {saved}" in captured.err
    assert "epoch" not in captured.out and open(path, "rb").read() == before
    # The same value as the checkpoint's is no change.
    assert cli.main(argv[:-1] + [str(saved)]) == 0
    assert "changed epochs 1 -> 2" in capsys.readouterr().out


def test_resume_takes_the_checkpoints_options_and_announces_them(tmp_path, capsys):
    """Options not given with --resume are the checkpoint's, not the recipe's defaults; one line
    says what is kept and what changed."""
    path = checkpoint_of(tmp_path, epochs=1, batch_size=24, lr=3e-3, seed=5)
    resumed = run("sunspots-lstm", epochs=3, resume=path)
    cfg = resumed["recipe"].cfg
    assert (cfg.batch_size, cfg.lr, cfg.seed, cfg.epochs) == (24, 3e-3, 5, 3)
    assert resumed["recipe"].loader.batch_size == 24
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    argv = ["train", "sunspots-lstm", "--no-progress", "--resume", path, "--epochs", "2"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"resuming sunspots-lstm from {path} after epoch 1: "
        f"kept batch_size 24, lr {3e-3}, seed 5; changed epochs 1 -> 2"
    )
    assert lines[1].startswith("epoch   2/2")
    # A checkpoint of a 3-epoch run on another device, stopped after epoch 1: without --epochs the
    # run goes on to its 3 epochs, on the device given now.
    state = deepkern.load(path)
    state["config"].update(epochs=3, device="cuda")
    deepkern.save(state, path)
    assert cli.main(argv[:-2]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("seed 5; changed device cuda -> cpu")
    assert lines[1].startswith("epoch   2/3") and lines[2].startswith("epoch   3/3")


def test_resume_with_nothing_changed_says_so(tmp_path, monkeypatch, capsys):
    path = str(tmp_path / "ck.safetensors")
    interrupted(monkeypatch, "sunspots-lstm", 2, 1, checkpoint=path)
    assert cli.main(["train", "sunspots-lstm", "--no-progress", "--resume", path, "--epochs", "2", "--seed", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("; changed nothing")


@pytest.mark.parametrize("epochs", [None, 1, 2])
def test_resume_with_no_epochs_left_is_refused(epochs, tmp_path, capsys):
    """--epochs at or below the epochs done (or none, when the checkpoint finished its run): exit 2,
    nothing trained, a message saying how many epochs are done and what to give."""
    path = checkpoint_of(tmp_path, epochs=2)
    before = open(path, "rb").read()
    argv = ["train", "sunspots-lstm", "--no-progress", "--resume", path, "--checkpoint", path]
    assert cli.main(argv + ([] if epochs is None else ["--epochs", str(epochs)])) == 2
    captured = capsys.readouterr()
    assert "give --epochs above 2 to train further" in captured.err
    assert (f"--epochs {epochs}: " if epochs else "all its 2 epochs") in captured.err
    assert "epoch" not in captured.out and open(path, "rb").read() == before


def test_resume_rejects_another_recipes_checkpoint(tmp_path, capsys):
    path = checkpoint_of(tmp_path, epochs=1)
    with pytest.raises(training.ResumeError, match="recipe 'sunspots-lstm', not 'digits-cnn'"):
        run("digits-cnn", epochs=2, resume=path)
    assert cli.main(["train", "digits-cnn", "--no-progress", "--epochs", "2", "--resume", path]) == 2
    assert "the checkpoint is of recipe 'sunspots-lstm', not 'digits-cnn'" in capsys.readouterr().err
    state = deepkern.load(path)
    state["recipe"] = "resnet"  # a recipe deepkern train does not have: no command to suggest
    deepkern.save(state, path)
    with pytest.raises(training.ResumeError, match="deepkern train has no recipe 'resnet'"):
        run("digits-cnn", epochs=2, resume=path)


def test_resume_rejects_a_file_that_is_not_a_training_checkpoint(tmp_path):
    path = str(tmp_path / "weights.safetensors")
    deepkern.save({"weight": np.zeros(3, np.float32)}, path)
    with pytest.raises(ValueError, match="not a checkpoint of deepkern train.*recipe, epoch"):
        run("sunspots-lstm", epochs=2, resume=path)
    path = checkpoint_of(tmp_path, epochs=1)
    state = deepkern.load(path)
    del state["config"]["lr"]
    deepkern.save(state, path)
    with pytest.raises(ValueError, match=r"not a checkpoint of deepkern train \(missing config\.lr\)"):
        run("sunspots-lstm", epochs=2, resume=path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.update(models={}), r"has no models\['model'\] \(it has \[\]\)"),
        (lambda s: s["models"].update(model=[1, 2]), r"models\['model'\] does not load"),
        (lambda s: s["optimizers"].update(model={}), r"optimizers\['model'\] does not load: KeyError"),
        (lambda s: s.update(history=None), r"history is a NoneType, not a list"),
        (lambda s: s.update(generator=[0]), r"generator is a list, not a dict"),
        (lambda s: s.update(generator={"state": 1}), r"random generators' state does not load"),
        (lambda s: s.update(epoch="abc"), r"epoch must be a whole number >= 0, got 'abc'"),
        (lambda s: s.update(epoch=-5), r"epoch must be a whole number >= 0, got -5"),
        (lambda s: s["config"].update(lr="abc"), r"config\.lr: expected a finite positive number, got 'abc'"),
        (lambda s: s["config"].update(batch_size=0), r"config\.batch_size: expected an integer >= 1, got 0"),
        (lambda s: s["config"].update(epochs=2.5), r"config\.epochs: expected an integer >= 1, got 2\.5"),
        (lambda s: s.update(config=[1]), r"config is a list, not a dict"),
        (lambda s: s.update(history=["x", "y"]), r"history\[0\] must map metric names to numbers"),
        (lambda s: s["history"][0].update(test_mse="abc"), r"history\[0\] must map metric names to numbers"),
        (
            lambda s: s["optimizers"]["model"]["param_groups"][0].update(betas="x"),
            r"param_groups\[0\]\['betas'\] must be a tuple of 2 numbers",
        ),
        (
            lambda s: s["optimizers"]["model"]["param_groups"][0].update(amsgrad=3.5),
            r"param_groups\[0\]\['amsgrad'\] must be a flag",
        ),
    ],
)
def test_a_checkpoint_with_entries_of_another_form_is_one_clear_error(edit, message, tmp_path, capsys):
    """A file that loads (valid safetensors) but whose entries are not what a training run writes
    (edited by hand, another program's) is a ValueError naming the entry, and one line from the
    command, before any epoch runs."""
    path = checkpoint_of(tmp_path, epochs=1)
    state = deepkern.load(path)
    edit(state)
    deepkern.save(state, path)
    with pytest.raises(ValueError, match=message):
        run("sunspots-lstm", epochs=3, resume=path)
    assert cli.main(["train", "sunspots-lstm", "--no-progress", "--epochs", "3", "--resume", path]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"deepkern train: --resume {path}: ") and len(captured.err.splitlines()) == 1
    assert "epoch   2" not in captured.out


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
    if not deepkern.cuda.is_available():
        assert cli.main(["train", "digits-cnn", "--device", "cuda", "--no-progress"]) == 1
        assert "--device cuda" in capsys.readouterr().err
    assert cli.main(["train", "digits-cnn", "--epochs", "0"]) == 2
    assert cli.main(["train", "digits-cnn", "--lr", "-1"]) == 2


@pytest.mark.parametrize(
    "options, needle",
    [
        (dict(epochs=0), "epochs"),
        (dict(epochs=-5), "epochs"),
        (dict(epochs="2"), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(lr=float("inf")), "lr"),
        (dict(lr=0), "lr"),
        (dict(seed=-1), "seed"),
        (dict(resume=""), "resume"),
        (dict(federated=training.FederatedConfig(rounds=0)), "--rounds"),
    ],
    ids=str,
)
def test_the_python_api_checks_its_options_as_the_command_line_does(options, needle):
    """train() refuses what `deepkern train` refuses (it trained nothing for epochs=0, or failed obscurely)."""
    with pytest.raises(ValueError, match=needle):
        run("digits-cnn", **options)


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


@pytest.mark.parametrize("recipe, options", RECIPES_SMALL, ids=[r for r, _ in RECIPES_SMALL])
def test_every_recipe_trains_on_the_gpu_code_paths(recipe, options, monkeypatch, small_digits, small_corpus):
    """Two epochs of each recipe on the CUDA backend's code paths (tests/cuda_standin.py: the CUDA
    arrays' NumPy dispatch with the CUDA module's op tables, and the kernel entries the CUDA backend
    has, over host memory and computed by the CPU's kernels) train exactly as on the CPU: no step
    needs a NumPy function the GPU lacks, a kernel entry the CUDA backend lacks, or an implicit
    copy to the host."""
    cuda_standin = pytest.importorskip("cuda_standin", exc_type=ImportError)
    monkeypatch.setitem(deepkern.backends._BACKENDS, "standin", cuda_standin.StandInBackend())
    on_cpu = run(recipe, epochs=2, **options)
    on_standin = run(recipe, epochs=2, device="standin", **options)
    for cpu, gpu in zip(on_cpu["history"], on_standin["history"], strict=True):
        assert {k: v for k, v in cpu.items() if k != "seconds"} == {k: v for k, v in gpu.items() if k != "seconds"}
    for name, model in on_cpu["recipe"].models.items():
        gpu_state = on_standin["recipe"].models[name].state_dict()
        for key, value in model.state_dict().items():
            assert gpu_state[key].device.type == "standin", key
            np.testing.assert_array_equal(gpu_state[key].cpu().numpy(), value.numpy(), err_msg=f"{name}.{key}")
