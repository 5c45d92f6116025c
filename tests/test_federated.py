"""deepkern.federated: FedAvg against plain and centralized training and a NumPy average, FedProx's
proximal gradient by finite differences, the client splits, `deepkern train --federated`, and the
Flower adapter against Flower's own aggregation."""

from __future__ import annotations

import importlib
import sys

import deepkern
import numpy as np
import pytest
from deepkern import cli, data, federated, nn, optim, training
from deepkern.federated import FedAvg, LocalTrainer, SimulationRunner, weighted_average


def mlp(seed: int = 0, dtype=np.float32) -> nn.Module:
    deepkern.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    return model.double() if dtype == np.float64 else model


def classification_set(n: int, seed: int = 0) -> data.TensorDataset:
    rng = np.random.default_rng(seed)
    return data.TensorDataset(rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 3, n))


def sgd(params):
    return optim.SGD(params, lr=0.1)


def adam(params):
    return optim.Adam(params, lr=1e-2)


def run_fedavg(model, datasets, trainer, rounds, **server_options):
    server = FedAvg(SimulationRunner(model, datasets, trainer, seed=3), model, seed=4, **server_options)
    for _ in range(rounds):
        server.run_round()
    return server


def assert_states_equal(a, b):
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


# ---------------------------------------------------------------------------------------------
# FedAvg against plain and centralized training


@pytest.mark.parametrize("make_opt, rounds, epochs", [(sgd, 3, 2), (adam, 1, 3)])
def test_one_client_equals_plain_training(make_opt, rounds, epochs):
    """One client, all of it sampled: R rounds of E local epochs are R*E epochs of plain training
    on the same batches (SGD keeps no state between rounds; Adam's state starts fresh each round,
    so its run is one round)."""
    ds = classification_set(37)
    criterion = nn.CrossEntropyLoss()
    server = run_fedavg(mlp(), [ds], LocalTrainer(criterion, make_opt, epochs, batch_size=8), rounds)

    plain = mlp()
    loader = data.DataLoader(ds, 8, shuffle=True, seed=server.runner.loaders[0].seed)
    opt = make_opt(plain.parameters())
    for _ in range(rounds * epochs):
        for x, y in loader:
            opt.zero_grad()
            criterion(plain(x), y).backward()
            opt.step()
    assert_states_equal(server.state, federated.host_state(plain))


def linear_regression(n: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, 1))


def gd_reference(x, y, w, b, lr, steps):
    """Full-batch gradient descent on the mean squared error of x @ w.T + b, in float64."""
    for _ in range(steps):
        r = x @ w.T + b - y
        w, b = w - lr * 2 * r.T @ x / len(x), b - lr * 2 * r.mean(0)
    return w, b


def linear_model(d: int) -> nn.Module:
    deepkern.manual_seed(1)
    return nn.Linear(d, 1).double()


def test_identical_clients_equal_centralized_gradient_descent():
    """Every client holds the same data and takes full-batch steps: each returns the centralized
    iterate, so R rounds of E epochs are R*E steps of gradient descent."""
    x, y = linear_regression(23, 4, seed=5)
    model = linear_model(4)
    start = federated.host_state(model)
    trainer = LocalTrainer(nn.MSELoss(), lambda p: optim.SGD(p, lr=0.05), local_epochs=2, batch_size=23)
    server = run_fedavg(model, [data.TensorDataset(x, y)] * 4, trainer, rounds=3)
    w, b = gd_reference(x, y, start["weight"], start["bias"], 0.05, steps=6)
    np.testing.assert_allclose(server.state["weight"], w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(server.state["bias"], b, rtol=1e-12, atol=1e-14)


def test_one_full_batch_step_per_round_is_centralized_gradient_descent():
    """Clients with different amounts of different data, one full-batch step each: the
    sample-weighted average of their steps is one step on the whole data (FedSGD)."""
    x, y = linear_regression(31, 3, seed=6)
    parts = [slice(0, 4), slice(4, 17), slice(17, 31)]
    model = linear_model(3)
    start = federated.host_state(model)
    trainer = LocalTrainer(nn.MSELoss(), lambda p: optim.SGD(p, lr=0.1), local_epochs=1, batch_size=64)
    server = run_fedavg(model, [data.TensorDataset(x[s], y[s]) for s in parts], trainer, rounds=4)
    w, b = gd_reference(x, y, start["weight"], start["bias"], 0.1, steps=4)
    np.testing.assert_allclose(server.state["weight"], w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(server.state["bias"], b, rtol=1e-12, atol=1e-14)


def test_clients_are_sampled_by_fraction_and_seed():
    datasets = [classification_set(3, seed=k) for k in range(10)]
    trainer = LocalTrainer(nn.CrossEntropyLoss(), sgd)
    runner = SimulationRunner(mlp(), datasets, trainer)
    for fraction, count in ((1.0, 10), (0.3, 3), (0.25, 2), (0.01, 1)):
        server = FedAvg(runner, runner.model, client_fraction=fraction, seed=7)
        draws = [server.sample_clients(r) for r in range(1, 6)]
        assert all(len(d) == count == len(set(d.tolist())) and d.min() >= 0 and d.max() < 10 for d in draws)
        again = FedAvg(runner, runner.model, client_fraction=fraction, seed=7)
        assert all(np.array_equal(d, again.sample_clients(r)) for r, d in enumerate(draws, start=1))
    server = FedAvg(runner, runner.model, client_fraction=0.3, seed=7)
    info = server.run_round()
    assert info["clients"] == server.sample_clients(1).tolist()
    assert info["num_samples"] == 9 and np.isfinite(info["train_loss"])


def test_batchnorm_buffers_are_averaged_and_counts_stay_integers():
    deepkern.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    datasets = [classification_set(n, seed=n) for n in (6, 14, 10)]
    trainer = LocalTrainer(nn.CrossEntropyLoss(), sgd, local_epochs=2, batch_size=4)
    server = FedAvg(SimulationRunner(model, datasets, trainer), model)
    updates = server.runner.fit([0, 1, 2], server.state, 1)
    counts = np.array([u.state["1.num_batches_tracked"] for u in updates])
    np.testing.assert_array_equal(counts, [4, 8, 6])  # 2 epochs of ceil(n / 4) batches
    average = weighted_average([u.state for u in updates], [6, 14, 10])
    assert average["1.num_batches_tracked"].dtype == np.int64
    assert average["1.num_batches_tracked"] == np.rint((6 * 4 + 14 * 8 + 10 * 6) / 30)
    reference = sum(n * u.state["1.running_mean"].astype(np.float64) for n, u in zip((6, 14, 10), updates)) / 30
    np.testing.assert_allclose(average["1.running_mean"], reference, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The weighted average


def random_state(rng, shapes):
    return {
        "w": rng.standard_normal(shapes[0]).astype(np.float32),
        "b": rng.standard_normal(shapes[1]),
        "empty": np.zeros((0, 3), np.float32),
        "count": rng.integers(0, 1000, size=()),
    }


@pytest.mark.parametrize("clients", [1, 2, 7])
def test_weighted_average_matches_numpy(clients):
    rng = np.random.default_rng(clients)
    states = [random_state(rng, ((5, 3), (7,))) for _ in range(clients)]
    states[0]["w"] = deepkern.from_numpy(states[0]["w"])  # Tensors and arrays alike
    weights = rng.integers(1, 50, clients).tolist()
    out = weighted_average(states, weights)
    assert list(out) == ["w", "b", "empty", "count"]
    total = float(sum(weights))
    for name in out:
        ref = sum(w * np.asarray(s[name], dtype=np.float64) for w, s in zip(weights, states)) / total
        assert out[name].dtype == np.asarray(states[-1][name]).dtype and out[name].shape == ref.shape
        if name == "count":
            assert out[name] == np.rint(ref)
        else:
            np.testing.assert_allclose(out[name], ref, rtol=1e-6 if name == "w" else 1e-13)


@pytest.mark.parametrize(
    "change, weights, needle",
    [
        (lambda s: s.pop("b"), [1, 1], "entries"),
        (lambda s: s.update(w=np.zeros((3, 5), np.float32)), [1, 1], "'w' is (3, 5) float32"),
        (lambda s: s.update(b=np.zeros(7, np.float32)), [1, 1], "'b' is (7,) float32"),
        (None, [1, -1], "weights[1]"),
        (None, [0, 0], "must not all be zero"),
        (None, [1], "2 state dicts but 1 weights"),
        (None, [1, float("nan")], "weights[1]"),
    ],
)
def test_weighted_average_rejects_what_does_not_fit(change, weights, needle):
    rng = np.random.default_rng(0)
    states = [random_state(rng, ((5, 3), (7,))) for _ in range(2)]
    if change is not None:
        change(states[1])
    with pytest.raises(ValueError, match="weighted_average") as info:
        weighted_average(states, weights)
    assert needle in str(info.value)
    with pytest.raises(ValueError, match="at least one state dict"):
        weighted_average([], [])


# ---------------------------------------------------------------------------------------------
# FedProx


def test_fedprox_with_mu_zero_equals_fedavg():
    datasets = [classification_set(n, seed=n) for n in (11, 20, 7, 16)]
    criterion = nn.CrossEntropyLoss()
    states = {}
    for mu in (None, 0.0, 1.0):
        trainer = LocalTrainer(criterion, adam, local_epochs=2, batch_size=5, mu=mu)
        states[mu] = run_fedavg(mlp(), datasets, trainer, rounds=2, client_fraction=0.5).state
    assert_states_equal(states[None], states[0.0])
    assert any(not np.array_equal(states[1.0][k], states[None][k]) for k in states[None])


def test_fedprox_pulls_clients_towards_the_global_weights():
    ds = classification_set(40, seed=9)
    start = federated.host_state(mlp())
    moved = []
    for mu in (None, 10.0):
        model = mlp()
        LocalTrainer(nn.CrossEntropyLoss(), sgd, local_epochs=3, batch_size=8, mu=mu).fit(
            model, data.DataLoader(ds, 8), start
        )
        end = federated.host_state(model)
        moved.append(sum(float(np.sum((end[k] - start[k]) ** 2)) for k in start))
    assert 0 < moved[1] < moved[0] / 2


def test_fedprox_gradient_matches_finite_differences():
    """d/dw [loss(w) + mu/2 * ||w - w_global||^2], float64, by central differences."""
    rng = np.random.default_rng(3)
    model = mlp(dtype=np.float64)
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    anchor = {k: v + rng.standard_normal(v.shape) for k, v in federated.host_state(model).items()}
    mu, criterion = 0.7, nn.CrossEntropyLoss()

    def objective():
        with deepkern.no_grad():
            loss = criterion(model(deepkern.from_numpy(x)), deepkern.from_numpy(y)).item()
        return loss + mu / 2 * sum(
            float(np.sum((p.detach().numpy() - anchor[k]) ** 2)) for k, p in model.named_parameters()
        )

    model.zero_grad()
    criterion(model(deepkern.from_numpy(x)), deepkern.from_numpy(y)).backward()
    federated.add_proximal_gradient(model, anchor, mu)
    for name, p in model.named_parameters():
        values = p.detach().numpy()
        numeric = np.zeros_like(values)
        for i in np.ndindex(values.shape):
            keep = values[i]
            values[i] = keep + 1e-6
            up = objective()
            values[i] = keep - 1e-6
            numeric[i] = (up - objective()) / 2e-6
            values[i] = keep
        np.testing.assert_allclose(p.grad.numpy(), numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_trainer_and_server_reject_bad_arguments():
    criterion, ds = nn.CrossEntropyLoss(), classification_set(4)
    for options, needle in (
        ({"local_epochs": 0}, "local_epochs must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be an int >= 1, got 2.5"),
        ({"mu": -1.0}, "mu must be a finite number in [0.0, inf], got -1.0"),
    ):
        with pytest.raises(ValueError, match="LocalTrainer") as info:
            LocalTrainer(criterion, sgd, **options)
        assert needle in str(info.value)
    with pytest.raises(TypeError, match="callable"):
        LocalTrainer(criterion, "sgd")
    runner = SimulationRunner(mlp(), [ds], LocalTrainer(criterion, sgd))
    for fraction in (0, 1.5, float("nan")):
        with pytest.raises(
            ValueError, match=f"client_fraction must be a finite number in \\(0.0, 1.0\\], got {fraction}"
        ):
            FedAvg(runner, runner.model, client_fraction=fraction)
    with pytest.raises(TypeError, match="runner must be a ClientRunner"):
        FedAvg([ds], runner.model)
    with pytest.raises(ValueError, match=r"clients \[1\] have none"):
        SimulationRunner(mlp(), [ds, data.Subset(ds, [])], LocalTrainer(criterion, sgd))
    with pytest.raises(ValueError, match="FedProx .* needs the global state"):
        LocalTrainer(criterion, sgd, mu=0.1).fit(runner.model, runner.loaders[0])
    with pytest.raises(ValueError, match="the global state has no entry '2.bias'"):
        state = federated.host_state(runner.model)
        del state["2.bias"]
        LocalTrainer(criterion, sgd, mu=0.1).fit(runner.model, runner.loaders[0], state)


# ---------------------------------------------------------------------------------------------
# Splits


def skewed_labels(n: int, classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, n)


SPLITS = {
    "iid": lambda labels, k, seed: federated.iid_split(len(labels), k, seed=seed),
    "dirichlet": lambda labels, k, seed: federated.dirichlet_split(labels, k, 0.3, seed=seed, min_size=5),
    "shard": lambda labels, k, seed: federated.shard_split(labels, k, 3, seed=seed),
}


@pytest.mark.parametrize("name", SPLITS)
@pytest.mark.parametrize("n, clients", [(1001, 7), (120, 12), (97, 1)])
def test_splits_partition_the_data_deterministically(name, n, clients):
    labels = skewed_labels(n, 10, seed=n)
    split = SPLITS[name]
    parts = split(labels, clients, 4)
    assert len(parts) == clients
    assert all(p.dtype == np.int64 and p.ndim == 1 and np.all(np.diff(p) > 0) for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))  # disjoint and complete
    assert all(np.array_equal(a, b) for a, b in zip(parts, split(labels, clients, 4)))
    if clients > 1:
        assert any(not np.array_equal(a, b) for a, b in zip(parts, split(labels, clients, 5)))
    if name == "dirichlet":
        assert min(map(len, parts)) >= 5
    if name == "shard":  # 3 shards, each a contiguous range of labels: at most 3 ranges per client
        assert all(1 + np.count_nonzero(np.diff(np.unique(labels[p])) > 1) <= 3 for p in parts)
    if name == "iid":
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_skew_grows_as_alpha_falls():
    labels = skewed_labels(3000, 10, seed=1)
    entropy = [
        np.mean([federated.label_entropy(labels, federated.dirichlet_split(labels, 20, a, seed=s)) for s in range(3)])
        for a in (0.05, 0.3, 1.0, 100.0)
    ]
    assert entropy[0] < entropy[1] < entropy[2] < entropy[3]
    iid = federated.label_entropy(labels, federated.iid_split(len(labels), 20))
    assert entropy[3] > 0.97 * iid and entropy[0] < 0.5 * iid
    assert federated.label_entropy(labels, federated.shard_split(labels, 20, 1)) < 0.3 * iid


def test_label_entropy_of_known_splits():
    labels = np.repeat(np.arange(4), 5)
    one_class = [np.flatnonzero(labels == c) for c in range(4)]
    assert federated.label_entropy(labels, one_class) == 0
    assert federated.label_entropy(labels, [np.arange(20)]) == pytest.approx(np.log(4))


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda y: federated.dirichlet_split(y, 4, 0.0), "alpha must be a positive finite number, got 0.0"),
        (lambda y: federated.dirichlet_split(y, 4, float("nan")), "alpha must be a positive finite number, got nan"),
        (lambda y: federated.dirichlet_split(y, 0, 1.0), "num_clients must be an int >= 1, got 0"),
        (lambda y: federated.dirichlet_split(y, 4, 1.0, min_size=20), "4 clients with at least 20 samples"),
        (lambda y: federated.dirichlet_split(y, 4, 1.0, min_size=0), "min_size must be an int >= 1, got 0"),
        (lambda y: federated.dirichlet_split(y, 8, 1e-3, min_size=7, max_tries=3), "no draw in 3"),
        (lambda y: federated.dirichlet_split(y.reshape(6, 10), 2, 1.0), "labels must be a 1-d array"),
        (lambda y: federated.dirichlet_split(y * 0.5, 2, 1.0), "labels must be a 1-d array of integer"),
        (lambda y: federated.dirichlet_split(y - 5, 2, 1.0), "labels must be >= 0, got -5"),
        (lambda y: federated.shard_split(y, 31, 2), "31 clients with at least 2 samples"),
        (lambda y: federated.shard_split(y, 3, 0), "shards_per_client must be an int >= 1, got 0"),
        (lambda y: federated.iid_split(5, 6), "6 clients with at least 1 samples"),
        (lambda y: federated.iid_split(60, 3, seed=-1), "seed must be an int >= 0, got -1"),
    ],
)
def test_splits_name_bad_arguments(call, needle):
    with pytest.raises(ValueError) as info:
        call(np.arange(60) % 3)
    assert needle in str(info.value)


# ---------------------------------------------------------------------------------------------
# deepkern train --federated


@pytest.fixture
def small_digits(monkeypatch):
    """digits-cnn on 150 training and 60 test images."""
    pytest.importorskip("sklearn", reason="the digits ship with scikit-learn (deepkern[train])")
    full = training.data.digits

    def small(train=True, seed=0):
        images, labels = full(train=train, seed=seed).arrays
        n = 150 if train else 60
        return data.TensorDataset(images[:n], labels[:n])

    monkeypatch.setattr(training.data, "digits", small)


def test_cli_federated_run_prints_accuracy_per_round(small_digits, tmp_path, capsys):
    plot = tmp_path / "rounds.png"
    argv = ["train", "digits-cnn", "--federated", "--clients", "3", "--rounds", "2", "--dirichlet-alpha", "0.5"]
    assert cli.main(argv + ["--client-fraction", "0.7", "--fedprox-mu", "0.01", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "FedProx (mu 0.01): 3 clients (Dirichlet label skew, alpha 0.5;" in out and "2 per round" in out
    rounds = [line for line in out.splitlines() if line.startswith("round ")]
    assert [r.split()[1] for r in rounds] == ["1/2", "2/2"] and all("test_acc" in r for r in rounds)
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_federated_run_with_a_metric_not_finite_says_so(small_digits):
    """As a centralized run: a learning rate that blows the model up ends with the warning."""
    out = __import__("io").StringIO()
    fed = training.FederatedConfig(clients=2, rounds=1, local_epochs=1)
    training.train(training.TrainConfig("digits-cnn", lr=1e30, progress=False, federated=fed), out=out)
    assert "warning: a metric is not finite" in out.getvalue()


def test_federated_run_matches_the_library(small_digits):
    """The command's global model is deepkern.federated's FedAvg on the same split and seeds."""
    fed = training.FederatedConfig(clients=3, rounds=1, local_epochs=1)
    result = training.train(
        training.TrainConfig("digits-cnn", progress=False, federated=fed), out=__import__("io").StringIO()
    )
    recipe = result["recipe"]
    assert len(result["history"]) == 1 and 0 <= result["history"][0]["test_acc"] <= 1
    train_set = recipe.train_set
    parts = federated.iid_split(len(train_set), 3, seed=0)
    deepkern.manual_seed(0)
    model = training.DigitsCNN.model()
    trainer = LocalTrainer(recipe.loss, lambda p: optim.Adam(p, lr=2e-3), batch_size=32)
    server = FedAvg(SimulationRunner(model, [data.Subset(train_set, p) for p in parts], trainer), model)
    server.run_round()
    assert_states_equal(server.state, result["server"].state)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--rounds", "2"], "--rounds: only with --federated"),
        (["--federated", "--client-fraction", "0"], "--client-fraction: expected a number in (0, 1], got 0.0"),
        (["--federated", "--fedprox-mu", "-1"], "--fedprox-mu: expected a finite number >= 0, got -1.0"),
        (["--federated", "--clients", "0"], "--clients: expected a positive integer, got 0"),
        (["--federated", "--dirichlet-alpha", "0"], "--dirichlet-alpha: expected a finite positive number, got 0.0"),
        (["--federated", "--epochs", "3"], "--epochs 3: not with --federated"),
        (["--federated", "--resume", "x.safetensors"], "--resume x.safetensors: not with --federated"),
    ],
)
def test_cli_names_bad_federated_arguments(extra, needle, capsys):
    assert cli.main(["train", "digits-cnn"] + extra) == 2
    assert needle in capsys.readouterr().err


def test_cli_refuses_recipes_without_a_federated_form(capsys):
    assert cli.main(["train", "char-lstm", "--federated"]) == 2
    assert "recipe char-lstm has no federated form; recipes that have one: digits-cnn" in capsys.readouterr().err


def test_cli_refuses_more_clients_than_samples(small_digits, capsys):
    assert cli.main(["train", "digits-cnn", "--federated", "--clients", "151", "--no-progress"]) == 1
    assert "--clients 151: more clients than the 150 training samples" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Flower


def test_flower_adapter_without_flower_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flwr", None)  # makes `import flwr...` raise ImportError
    monkeypatch.setitem(sys.modules, "flwr.client", None)
    monkeypatch.delitem(sys.modules, "deepkern.federated.flower", raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module("deepkern.federated.flower")
    assert str(info.value) == (
        'deepkern.federated.flower needs Flower (flwr); install it with pip install "deepkern[federated]"'
    )


def flower_clients(datasets):
    from deepkern.federated.flower import DeepkernClient

    criterion = nn.CrossEntropyLoss()
    trainer = LocalTrainer(criterion, sgd, local_epochs=2, batch_size=4)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    return model, [DeepkernClient(model, ds, trainer, seed=k) for k, ds in enumerate(datasets)]


def test_flower_fedavg_aggregation_equals_deepkerns():
    pytest.importorskip("flwr")
    from flwr.server.strategy.aggregate import aggregate

    datasets = [classification_set(n, seed=n) for n in (6, 14, 10)]
    deepkern.manual_seed(0)
    model, clients = flower_clients(datasets)
    start = clients[0].get_parameters({})
    results = [client.fit([a.copy() for a in start], {}) for client in clients]
    assert [n for _, n, _ in results] == [6, 14, 10]
    flower = aggregate([(params, n) for params, n, _ in results])
    names = list(model.state_dict())
    ours = weighted_average([dict(zip(names, params)) for params, _, _ in results], [n for _, n, _ in results])
    for name, theirs in zip(names, flower):
        if ours[name].dtype.kind == "f":
            np.testing.assert_allclose(ours[name], theirs, rtol=1e-6, atol=1e-7, err_msg=name)
        else:  # num_batches_tracked: Flower's mean is a float, ours its nearest integer
            assert ours[name] == np.rint(theirs), name


def test_flower_client_round_trips_parameters_and_evaluates():
    pytest.importorskip("flwr")
    deepkern.manual_seed(0)
    model, (client,) = flower_clients([classification_set(10)])
    names = list(model.state_dict())
    params = client.get_parameters({})
    assert [p.shape for p in params] == [tuple(v.shape) for v in model.state_dict().values()]
    shifted = [p + 1 for p in params]
    client.set_parameters(shifted)
    assert_states_equal(federated.host_state(model), dict(zip(names, shifted)))
    new, n, metrics = client.fit(params, {})
    assert n == 10 and np.isfinite(metrics["train_loss"])
    assert any(not np.array_equal(a, b) for a, b in zip(new, params))
    loss, n, metrics = client.evaluate(new, {})
    ref = federated.evaluate_model(model, classification_set(10), nn.CrossEntropyLoss())
    assert n == 10 and loss == pytest.approx(ref["loss"]) and metrics["accuracy"] == ref["accuracy"]
    with pytest.raises(ValueError, match=f"got 2 arrays for the model's {len(names)} state-dict entries"):
        client.set_parameters(params[:2])


def test_cli_federated_clients_on_ranks_give_the_simulations_rounds():
    """``--nproc 2``: the clients train on two MPI ranks (rank 0 the server) and every round's
    metrics are the one-process simulation's."""
    import io
    import os
    import re
    import subprocess

    pytest.importorskip("mpi4py", reason='the MPI tests need mpi4py (pip install ".[test]")')
    pytest.importorskip("sklearn", reason="the digits ship with scikit-learn (deepkern[train])")
    argv = ["train", "digits-cnn", "--federated", "--clients", "5", "--rounds", "2", "--client-fraction", "0.6"]
    argv += ["--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process on both sides: the sums round alike
    proc = subprocess.run(
        [sys.executable, "-m", "deepkern", *argv, "--nproc", "2"], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "clients on 2 ranks" in proc.stdout and proc.stdout.count("trained digits-cnn") == 1
    out = io.StringIO()
    fed = training.FederatedConfig(clients=5, rounds=2, client_fraction=0.6)
    threads = deepkern.get_num_threads()
    deepkern.set_num_threads(1)
    try:
        training.train(training.TrainConfig("digits-cnn", progress=False, federated=fed), out=out)
    finally:
        deepkern.set_num_threads(threads)

    def rounds(text):  # the round lines without their times
        return [re.sub(r"\(.*\)", "", line) for line in text.splitlines() if line.startswith("round ")]

    assert len(rounds(out.getvalue())) == 2
    assert rounds(proc.stdout) == rounds(out.getvalue())
