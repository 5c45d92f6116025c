"""The contract of deepkern.data: TensorDataset, Subset, random_split and DataLoader
(torch.utils.data semantics: lengths, batch shapes, drop_last, every sample once per epoch,
reproducible shuffles that change every epoch), and the loaders of bundled real data (digits,
sunspots, the pydoc character corpus): shapes, dtypes, ranges, disjoint splits, normalisation
from the training part only, the persistence baseline, encode/decode and the unigram entropy."""

from __future__ import annotations

import collections
import math
import time

import deepkern
import numpy as np
import pytest
from deepkern import data
from deepkern.data import DataLoader, Dataset, Subset, TensorDataset, default_collate, random_split

from checks import raises_naming, shape_pattern


class Squares(Dataset):
    """A dataset that is not a TensorDataset: (array of i, i squared, a label str)."""

    def __init__(self, n):
        self.n = n

    def __getitem__(self, i):
        return np.full(3, i, np.float32), i * i, f"item{i}"

    def __len__(self):
        return self.n


class FakeTensor:
    def __init__(self, array):
        self._array = array

    def numpy(self):
        return self._array


def ids_of(loader):
    """The first field of every batch (its first column), concatenated: the sample ids in the order seen."""
    return np.concatenate([batch[0].reshape(len(batch[0]), -1)[:, 0] for batch in loader])


# --- datasets -----------------------------------------------------------------------------------


def test_tensor_dataset(rng):
    x = rng.standard_normal((7, 3)).astype(np.float32)
    y = np.arange(7)
    ds = TensorDataset(x, FakeTensor(y))
    assert len(ds) == 7 and ds.arrays[0] is x
    xi, yi = ds[4]
    np.testing.assert_array_equal(xi, x[4])
    assert yi == 4


def test_tensor_dataset_rejects_bad_input():
    with raises_naming(ValueError, "first dimension", shape_pattern((5, 2)), shape_pattern((4,))):
        TensorDataset(np.zeros((5, 2)), np.zeros(4))
    with raises_naming(ValueError, "first dimension", r"\(\)"):
        TensorDataset(np.zeros(()))
    with raises_naming(TypeError, r"arrays\[1\]", "list"):
        TensorDataset(np.zeros(3), [1, 2, 3])
    with raises_naming(ValueError, "at least one"):
        TensorDataset()
    with raises_naming(ValueError, r"arrays\[0\]", "requires grad", "detach"):
        TensorDataset(deepkern.ones(3, 2, requires_grad=True))
    np.testing.assert_array_equal(TensorDataset(deepkern.ones(3, 2, requires_grad=True).detach())[1][0], [1, 1])


def test_subset_and_random_split():
    ds = TensorDataset(np.arange(10))
    sub = Subset(ds, [9, 0, 3])
    assert len(sub) == 3 and sub[0][0] == 9 and sub[2][0] == 3
    with raises_naming(ValueError, "indices", r"\[0, 10\)", "10"):
        Subset(ds, [0, 10])
    for not_integers in ([1.7, 2.9], np.array([1.0]), ["1"], [True]):  # never truncated to other samples
        with raises_naming(TypeError, "Subset", "integers"):
            Subset(ds, not_integers)
    assert len(Subset(ds, [])) == 0 and len(Subset(ds, np.array([2], np.uint8))) == 1
    np.testing.assert_array_equal(sub[[0, 2]][0], [9, 3])  # a list of positions, as PyTorch's

    parts = random_split(ds, [6, 3, 1], seed=5)
    assert [len(p) for p in parts] == [6, 3, 1]
    seen = np.concatenate([p.indices for p in parts])
    assert sorted(seen) == list(range(10))  # disjoint and complete
    again = random_split(ds, [6, 3, 1], seed=5)
    assert all(np.array_equal(a.indices, b.indices) for a, b in zip(parts, again))
    assert not np.array_equal(random_split(ds, [6, 3, 1], seed=6)[0].indices, parts[0].indices)

    assert [len(p) for p in random_split(ds, [0.5, 0.25, 0.25])] == [6, 2, 2]  # 5, 2, 2 and one left over
    assert [len(p) for p in random_split(ds, [np.float32(0.7), np.float32(0.3)])] == [7, 3]
    with raises_naming(ValueError, "lengths", "sum to len\\(dataset\\) = 10", r"\[6, 3\]"):
        random_split(ds, [6, 3])
    with raises_naming(ValueError, "fractional lengths", r"0\.5, 0\.6"):
        random_split(ds, [0.5, 0.6])


# --- DataLoader ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, batch_size, drop_last",
    [(10, 3, False), (10, 3, True), (9, 3, False), (9, 3, True), (2, 5, False), (2, 5, True), (1, 1, False)],
)
def test_loader_lengths_and_batch_shapes(n, batch_size, drop_last):
    ds = TensorDataset(np.arange(n), np.zeros((n, 2, 3), np.float32))
    loader = DataLoader(ds, batch_size=batch_size, drop_last=drop_last)
    batches = list(loader)
    assert len(batches) == len(loader) == (n // batch_size if drop_last else math.ceil(n / batch_size))
    sizes = [len(b[0]) for b in batches]
    assert all(s == batch_size for s in sizes[:-1])
    if batches:
        assert sizes[-1] == (batch_size if drop_last else n - batch_size * (len(batches) - 1))
    for ids, x in batches:
        assert ids.dtype == np.int64 and x.shape == (len(ids), 2, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(ids_of(loader) if batches else [], np.arange(sum(sizes)))


@pytest.mark.parametrize(
    "make",
    [
        lambda n: TensorDataset(np.arange(n)),
        lambda n: Subset(TensorDataset(np.arange(n)[::-1].copy()), np.arange(n)[::-1]),
        Squares,
    ],
    ids=["tensor_dataset", "subset", "generic"],
)
def test_shuffle_each_sample_once_reproducible_and_new_each_epoch(make):
    n = 103
    ds = make(n)
    first = DataLoader(ds, batch_size=10, shuffle=True, seed=42)
    epochs = [ids_of(first) for _ in range(3)]
    for order in epochs:
        assert sorted(order.astype(int)) == list(range(n))  # every sample exactly once
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    assert not np.array_equal(epochs[0], np.arange(n))
    second = DataLoader(ds, batch_size=7, shuffle=True, seed=42)  # same seed: same orders
    assert all(np.array_equal(ids_of(second), order) for order in epochs)
    other = DataLoader(ds, batch_size=10, shuffle=True, seed=43)
    assert not np.array_equal(ids_of(other), epochs[0])
    resumed = DataLoader(ds, batch_size=10, shuffle=True, seed=42)
    resumed.epoch = 2  # resuming at the third epoch gives the third epoch's order
    np.testing.assert_array_equal(ids_of(resumed), epochs[2])


def test_shuffle_with_drop_last_sees_each_sample_at_most_once():
    loader = DataLoader(TensorDataset(np.arange(50)), batch_size=8, shuffle=True, drop_last=True, seed=0)
    for _ in range(3):
        order = ids_of(loader)
        assert len(order) == 48 and len(set(order)) == 48


def test_shuffle_without_seed_still_changes_each_epoch():
    loader = DataLoader(TensorDataset(np.arange(100)), batch_size=100, shuffle=True)
    assert not np.array_equal(ids_of(loader), ids_of(loader))


def test_fast_path_matches_the_per_sample_collate(rng):
    x = rng.standard_normal((23, 4)).astype(np.float32)
    y = rng.integers(0, 5, 23)
    ds = TensorDataset(x, y)
    fast = list(DataLoader(ds, batch_size=5, shuffle=True, seed=3))
    slow = list(DataLoader(ds, batch_size=5, shuffle=True, seed=3, collate_fn=default_collate))
    assert len(fast) == len(slow)
    for (fx, fy), (sx, sy) in zip(fast, slow):
        np.testing.assert_array_equal(fx, sx)
        np.testing.assert_array_equal(fy, sy)
        assert fx.dtype == sx.dtype and fy.dtype == sy.dtype


def test_shuffle_without_seed_follows_manual_seed():
    """seed=None draws the loader's seed from deepkern's generator: manual_seed makes the orders repeat."""
    orders = []
    for _ in range(2):
        deepkern.manual_seed(11)
        loader = DataLoader(TensorDataset(np.arange(50)), batch_size=50, shuffle=True)
        orders.append([ids_of(loader), ids_of(loader)])
    np.testing.assert_array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0][0], orders[0][1])


class Offset(TensorDataset):
    """A TensorDataset subclass whose __getitem__ changes the samples."""

    def __getitem__(self, i):
        return tuple(a * 100 for a in super().__getitem__(i))


class Reversed(Subset):
    def __getitem__(self, i):
        return super().__getitem__(len(self) - 1 - i)


def test_subclasses_of_tensor_dataset_and_subset_are_batched_through_their_getitem():
    """The fast path (indexing the arrays at once) is only for the exact classes."""
    ((batch,),) = DataLoader(Offset(np.arange(4)), batch_size=4)
    np.testing.assert_array_equal(batch.numpy(), [0, 100, 200, 300])
    ((batch,),) = DataLoader(Reversed(TensorDataset(np.arange(10)), [2, 3, 4]), batch_size=3)
    np.testing.assert_array_equal(batch.numpy(), [4, 3, 2])
    ((batch,),) = DataLoader(Subset(Offset(np.arange(10)), [5, 1]), batch_size=2)
    np.testing.assert_array_equal(batch.numpy(), [500, 100])


def test_default_collate_of_dicts_strings_and_unequal_samples():
    """As PyTorch's: dicts batched per key (nested too), strings listed, samples of unequal length
    refused (a field would be lost), arrays of strings or objects refused."""
    batch = default_collate([{"x": np.full(2, i), "y": i, "meta": {"id": f"s{i}"}} for i in range(3)])
    assert set(batch) == {"x", "y", "meta"}
    np.testing.assert_array_equal(batch["x"].numpy(), [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(batch["y"].numpy(), [0, 1, 2])
    assert batch["meta"] == {"id": ["s0", "s1", "s2"]}
    assert default_collate([np.str_("cat"), np.str_("dog")]) == ["cat", "dog"]
    for samples in ([(1, 2), (3, 4, 5), (6, 7)], [(1, 2, 3), (4, 5)]):
        with raises_naming(RuntimeError, "default_collate", "equal size", "[2, 3]"):
            default_collate(samples)
    with raises_naming(TypeError, "default_collate", "<U3"):
        default_collate([np.array(["abc"]), np.array(["def"])])


def test_default_collate_of_tensors_keeps_their_graph():
    """Samples that are Tensors stack differentiably, as in PyTorch: the batch requires grad and the
    gradient reaches each sample."""
    rng = np.random.default_rng(0)
    samples = [deepkern.tensor(rng.standard_normal(3), requires_grad=True) for _ in range(4)]
    batch = default_collate(samples)
    assert batch.shape == (4, 3) and batch.requires_grad
    (batch * deepkern.tensor(np.arange(12.0).reshape(4, 3))).sum().backward()
    for i, s in enumerate(samples):
        np.testing.assert_array_equal(s.grad.numpy(), np.arange(3.0) + 3 * i)
    # Tuples of Tensors (a dataset's (input, target) pairs) too.
    x, y = default_collate([(s, deepkern.tensor(i)) for i, s in enumerate(samples)])
    assert x.requires_grad and not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), [0, 1, 2, 3])


def test_default_collate_of_a_generic_dataset():
    ((x, sq, names),) = list(DataLoader(Squares(4), batch_size=4))
    assert x.shape == (4, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(sq, [0, 1, 4, 9])
    assert names == ["item0", "item1", "item2", "item3"]


def test_default_collate_keeps_namedtuples_and_mapping_types():
    """As PyTorch's: a namedtuple sample gives a namedtuple of batched fields, an OrderedDict an
    OrderedDict (mapping types that cannot be made from a dict give a dict)."""
    Pair = collections.namedtuple("Pair", "x y")
    batch = default_collate([Pair(np.float32(2 * i), i) for i in range(3)])
    assert type(batch) is Pair
    np.testing.assert_array_equal(batch.x.numpy(), [0, 2, 4])
    np.testing.assert_array_equal(batch.y.numpy(), [0, 1, 2])
    ordered = default_collate([collections.OrderedDict(b=i, a=-i) for i in range(2)])
    assert type(ordered) is collections.OrderedDict and list(ordered) == ["b", "a"]
    counts = default_collate([collections.Counter(a=i) for i in range(2)])
    np.testing.assert_array_equal(counts["a"].numpy(), [0, 1])

    class Pairs(Dataset):
        def __getitem__(self, i):
            return Pair(np.full(2, i, np.float32), i)

        def __len__(self):
            return 3

    (batch,) = DataLoader(Pairs(), batch_size=3)
    assert type(batch) is Pair and batch.x.shape == (3, 2)


def test_default_collate_promotes_and_range_checks_as_pytorch():
    """Mixed dtypes promote as deepkern.stack (PyTorch's rules), not NumPy's: int32 and float32
    arrays give float32; Python floats float64, Python ints int64 (an int past int64 is an error,
    not a rounded float); big-endian arrays batch in the machine's order."""
    assert default_collate([np.arange(2, dtype=np.int32), np.ones(2, np.float32)]).dtype == np.float32
    assert default_collate([np.int64(1), np.float32(2.5)]).dtype == np.float32
    assert default_collate([1, 2.5]).dtype == np.float32
    assert default_collate([2.5, 1]).dtype == np.float64
    assert default_collate([1, 2]).dtype == np.int64 and default_collate([True, False]).dtype == np.bool_
    for big in ([2**63, 1], [1, 2**63 + 1], [2**64 + 5, 1]):
        with pytest.raises(OverflowError):
            default_collate(big)
    swapped = np.arange(3, dtype=">f4")
    batch = default_collate([swapped, swapped])
    assert batch.dtype == np.float32 and batch.dtype.isnative
    np.testing.assert_array_equal(batch.numpy(), [[0, 1, 2]] * 2)


def test_fast_path_batches_as_default_collate_for_any_array():
    """The TensorDataset shortcut gives what default_collate gives the same samples: big-endian
    arrays in native order, bfloat16 as bfloat16, arrays of strings as lists."""
    bf16 = np.arange(3, dtype=np.float32).astype(deepkern.bfloat16)
    ds = TensorDataset(np.arange(3, dtype=">f4"), bf16, np.array(["a", "b", "c"]))
    ((fx, fb, fs),) = DataLoader(ds, batch_size=3)
    ((sx, sb, ss),) = DataLoader(ds, batch_size=3, collate_fn=default_collate)
    for fast, slow in ((fx, sx), (fb, sb)):
        assert fast.dtype == slow.dtype and fast.dtype.isnative
        np.testing.assert_array_equal(fast.numpy().astype(np.float32), slow.numpy().astype(np.float32))
    assert fb.dtype == deepkern.bfloat16 and fs == ss == ["a", "b", "c"]


class ListSampler:
    """A sampler whose len() may differ from what it yields (PyTorch reads only what it yields)."""

    def __init__(self, items, length=None):
        self.items, self.length = items, len(items) if length is None else length

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return self.length


def test_sampler_indices_reach_the_dataset_as_given():
    """A sampler's indices are passed to ``dataset[index]`` unchanged: floats are refused by the
    dataset (not truncated to other samples), keys of a mapping dataset work, and the batches hold
    what the sampler yields, whatever its len() says."""
    ds = TensorDataset(np.arange(10) * 10)
    for floats in ([1.7, 2.9], [np.float64(3.5), 1.2]):
        with pytest.raises(IndexError):
            list(DataLoader(ds, batch_size=2, sampler=ListSampler(floats)))

    class ByKey(Dataset):
        table = {"a": 1.0, "b": 2.0, "c": 3.0}

        def __getitem__(self, key):
            return self.table[key]

        def __len__(self):
            return len(self.table)

    batches = [b.numpy().tolist() for b in DataLoader(ByKey(), batch_size=2, sampler=ListSampler(["c", "a", "b"]))]
    assert batches == [[3.0, 1.0], [2.0]]
    six = ListSampler(list(range(6)), length=3)
    assert [b[0].numpy().tolist() for b in DataLoader(ds, batch_size=2, sampler=six)] == [[0, 10], [20, 30], [40, 50]]
    three = ListSampler([0, 1, 2], length=6)
    assert [b[0].numpy().tolist() for b in DataLoader(ds, batch_size=2, sampler=three)] == [[0, 10], [20]]
    assert [b[0].numpy().tolist() for b in DataLoader(ds, batch_size=2, sampler=three, drop_last=True)] == [[0, 10]]


def test_negative_seeds_shuffle_reproducibly():
    """A negative seed (PyTorch takes them) shuffles, the same way each run; deepkern.manual_seed(-1)
    is manual_seed(2**64 - 1), as torch.manual_seed."""
    ds = TensorDataset(np.arange(20))
    orders = [ids_of(DataLoader(ds, batch_size=20, shuffle=True, seed=-1)) for _ in range(2)]
    np.testing.assert_array_equal(orders[0], orders[1])
    assert sorted(orders[0]) == list(range(20)) and not np.array_equal(orders[0], np.arange(20))
    draws = [deepkern.manual_seed(seed).random(3) for seed in (-1, 2**64 - 1)]
    np.testing.assert_array_equal(draws[0], draws[1])


def test_custom_collate_fn():
    loader = DataLoader(TensorDataset(np.arange(6)), batch_size=4, collate_fn=len)
    assert list(loader) == [4, 2]


def test_loader_rejects_bad_arguments():
    ds = TensorDataset(np.arange(4))
    for bad in (0, -1, 2.0, True, "8"):
        with raises_naming(ValueError, "batch_size", "int >= 1", repr(bad)):
            DataLoader(ds, batch_size=bad)
    with raises_naming(TypeError, "collate_fn", "int"):
        DataLoader(ds, collate_fn=3)
    with pytest.raises(TypeError):
        DataLoader(ds, seed=1.5)
    for bad in (-1, 1.0, True, "2"):
        with raises_naming(ValueError, "num_workers", "int >= 0", repr(bad)):
            DataLoader(ds, num_workers=bad)


def test_num_workers_gives_the_same_batches(rng):
    """``num_workers`` (PyTorch's worker processes) changes nothing in the batches: they are made in
    this process, in order, for a TensorDataset and for a generic dataset."""
    for ds in (TensorDataset(rng.standard_normal((7, 2)), np.arange(7)), Squares(7)):
        plain = list(DataLoader(ds, batch_size=3))
        for workers in (0, 3):
            batches = list(DataLoader(ds, batch_size=3, num_workers=workers))
            assert len(batches) == len(plain) == 3
            for got, want in zip(batches, plain):
                for g, w in zip(got, want):
                    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_torch_utils_data_spelling_is_deepkern_data():
    """``deepkern.utils.data`` (PyTorch's ``torch.utils.data``) is this module, however imported."""
    import deepkern
    import deepkern.utils.data as by_import
    from deepkern.utils.data import DataLoader as loader_by_name

    assert deepkern.utils.data is by_import is data and loader_by_name is DataLoader


# --- digits -------------------------------------------------------------------------------------


def test_digits_shapes_dtypes_ranges_and_split():
    start = time.perf_counter()
    train, test = data.digits(train=True), data.digits(train=False)
    x, y = train.arrays
    assert x.shape == (len(train), 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (len(train),) and y.dtype == np.int64
    assert len(train) + len(test) == 1797 and abs(len(test) - 0.2 * 1797) <= 10
    for images, labels in (train.arrays, test.arrays):
        assert images.min() == 0 and images.max() == 1
        assert set(np.unique(labels)) == set(range(10))
    # Stratified: every class has about 20% of its samples in the test part.
    counts_train, counts_test = np.bincount(y, minlength=10), np.bincount(test.arrays[1], minlength=10)
    assert np.all(np.abs(counts_test / (counts_train + counts_test) - 0.2) < 0.01)
    assert time.perf_counter() - start < 2  # read once, no heavy import


def test_digits_split_is_disjoint_deterministic_and_seeded():
    labels = data.digits(train=True).arrays[1]
    all_labels = np.concatenate([labels, data.digits(train=False).arrays[1]])
    train_idx, test_idx = data.stratified_split(np.sort(all_labels), 0.2, seed=0)
    assert not set(train_idx) & set(test_idx) and len(train_idx) + len(test_idx) == 1797
    np.testing.assert_array_equal(data.digits(seed=1).arrays[0], data.digits(seed=1).arrays[0])
    assert not np.array_equal(data.digits(seed=1).arrays[1], data.digits(seed=0).arrays[1])
    with raises_naming(ValueError, "test_fraction", "1.5"):
        data.digits(test_fraction=1.5)


def test_digits_read_from_the_csv_equal_scikit_learns_loader():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    raw = sklearn_datasets.load_digits()
    images, labels = data.datasets._digits_arrays()
    np.testing.assert_array_equal(images[:, 0] * 16, raw.images)
    np.testing.assert_array_equal(labels, raw.target)


def test_sunspots_read_from_the_csv_equal_statsmodels_loader():
    pytest.importorskip("statsmodels.datasets.sunspots")
    years, values = data.datasets._sunspots_series()
    np.testing.assert_array_equal(np.column_stack([years, values]), data.datasets._statsmodels_sunspots())


def test_package_loader_is_the_fallback_when_the_file_moved():
    table = data.datasets._bundled_csv("numpy", "numpy", "no/such/file.csv", "test", lambda: np.eye(2))
    np.testing.assert_array_equal(table, np.eye(2))


def test_digits_returned_arrays_are_private_copies():
    x = data.digits().arrays[0]
    x[:] = -1
    assert data.digits().arrays[0].min() == 0


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(data.datasets.importlib.util, "find_spec", lambda name: None)
    with raises_naming(ImportError, "scikit-learn", r"deepkern\[train\]"):
        data.datasets._bundled_csv("sklearn", "scikit-learn", "datasets/data/digits.csv.gz", "digits", None)


# --- sunspots -----------------------------------------------------------------------------------


def test_sliding_windows_against_a_loop(rng):
    series = rng.standard_normal(12)
    x, y = data.sliding_windows(series, 4)
    assert x.shape == (8, 4, 1) and y.shape == (8, 1) and x.dtype == y.dtype == np.float32
    for i in range(8):
        np.testing.assert_array_equal(x[i, :, 0], series[i : i + 4].astype(np.float32))
        assert y[i, 0] == np.float32(series[i + 4])
    with raises_naming(ValueError, "window", r"\[1, 12\)", "12"):
        data.sliding_windows(series, 12)
    with raises_naming(ValueError, "series must be 1-D", shape_pattern((3, 4))):
        data.sliding_windows(series.reshape(3, 4), 2)


def test_sunspots_windows_split_and_normalisation():
    years, values = data.datasets._sunspots_series()
    assert len(values) == 309 and years[0] == 1700 and years[-1] == 2008
    w = data.sunspots(window=10, test_fraction=0.2)
    n_test_years = round(0.2 * 309)
    n_train_years = 309 - n_test_years
    x_train, y_train = w.train.arrays
    x_test, y_test = w.test.arrays
    assert x_train.shape == (n_train_years - 10, 10, 1) and y_train.shape == (n_train_years - 10, 1)
    assert x_test.shape == (n_test_years, 10, 1) and y_test.shape == (n_test_years, 1)
    assert x_train.dtype == y_train.dtype == np.float32
    # Statistics of the training years only.
    assert w.mean == pytest.approx(values[:n_train_years].mean())
    assert w.std == pytest.approx(values[:n_train_years].std())
    assert w.mean != pytest.approx(values.mean())
    # Targets: training targets are the training years after the first window, test targets the test years.
    np.testing.assert_allclose(w.denormalize(y_train[:, 0]), values[10:n_train_years], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(w.denormalize(y_test[:, 0]), values[n_train_years:], rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(w.test_years, years[n_train_years:])
    # The first test window's inputs are the last training years.
    np.testing.assert_allclose(
        w.denormalize(x_test[0, :, 0]), values[n_train_years - 10 : n_train_years], rtol=1e-5, atol=1e-3
    )


def test_sunspots_persistence_baseline_against_a_loop():
    w = data.sunspots(window=5)
    for split in ("train", "test"):
        x, y = getattr(w, split).arrays
        total = 0.0
        for i in range(len(x)):
            total += (float(x[i, -1, 0]) - float(y[i, 0])) ** 2
        assert w.persistence_mse(split) == pytest.approx(total / len(x), rel=1e-9)
    assert w.persistence(w.test.arrays[0]).shape == (len(w.test), 1)
    with raises_naming(ValueError, "split", "'val'"):
        w.persistence_mse("val")


def test_sunspots_rejects_bad_window():
    with raises_naming(ValueError, "window", r"\[1, 247\)", "247 of 309 years", "500"):
        data.sunspots(window=500)
    with raises_naming(ValueError, "window", "0"):
        data.sunspots(window=0)


# --- character corpus ---------------------------------------------------------------------------


def test_char_corpus_vocab_windows_and_round_trip():
    start = time.perf_counter()
    corpus = data.char_corpus(seq_len=32)
    assert time.perf_counter() - start < 2
    assert len(corpus.text) > 100_000
    assert corpus.vocab == sorted(set(corpus.text)) and corpus.vocab_size == len(corpus.vocab)
    assert corpus.decode(corpus.ids) == corpus.text
    sample = "def f(x):\n    return x"
    np.testing.assert_array_equal(corpus.encode(sample), [corpus.vocab.index(c) for c in sample])
    assert corpus.decode(corpus.encode(sample)) == sample
    n_val = round(0.1 * len(corpus.text))
    n_train = len(corpus.text) - n_val
    assert len(corpus.train) == (n_train - 1 - 32) // 32 + 1
    assert len(corpus.val) == (n_val - 1 - 32) // 32 + 1
    ((x, y),) = [next(iter(DataLoader(corpus.train, batch_size=4)))]
    assert x.shape == y.shape == (4, 32) and x.dtype == np.int64
    np.testing.assert_array_equal(x[1], corpus.ids[32:64])
    np.testing.assert_array_equal(y[1], corpus.ids[33:65])  # targets: the next character
    assert corpus.decode(corpus.val[0][0]) == corpus.text[n_train : n_train + 32]  # val: after train
    with raises_naming(ValueError, "character '\u2603'", "position 2"):
        corpus.encode("ab\u2603")


def test_char_corpus_entropy_against_a_direct_count():
    corpus = data.CharCorpus("abracadabra, said the wizard " * 3, seq_len=4, val_fraction=0.25)
    counts = collections.Counter(corpus.text)
    total = len(corpus.text)
    expected = -sum(c / total * math.log(c / total) for c in counts.values())
    assert corpus.unigram_entropy() == pytest.approx(expected, rel=1e-12)
    assert corpus.unigram_entropy() < math.log(corpus.vocab_size)


def test_char_corpus_stride_and_bad_arguments():
    text = "".join(chr(97 + i % 26) for i in range(200))
    corpus = data.CharCorpus(text, seq_len=10, val_fraction=0.2, stride=1)
    assert len(corpus.train) == 160 - 10 and len(corpus.val) == 40 - 10
    with raises_naming(ValueError, "seq_len", r"\[1, 40\)", "40 of 200", "50"):
        data.CharCorpus(text, seq_len=50, val_fraction=0.2)
    with raises_naming(ValueError, "stride", ">= 1", "0"):
        data.CharCorpus(text, seq_len=5, stride=0)
    with raises_naming(ValueError, "val_fraction", "0"):
        data.CharCorpus(text, seq_len=5, val_fraction=0)


# -- samplers, batch samplers, streams and PyTorch's DataLoader arguments ----------------------------


def test_sequential_and_batch_samplers_match_torch():
    torch_data = pytest.importorskip("torch.utils.data")
    ds = TensorDataset(np.arange(11.0))
    for drop_last in (False, True):
        mine = list(data.BatchSampler(data.SequentialSampler(ds), 4, drop_last))
        ref = list(torch_data.BatchSampler(torch_data.SequentialSampler(range(11)), 4, drop_last))
        assert mine == ref and len(data.BatchSampler(data.SequentialSampler(ds), 4, drop_last)) == len(ref)
        loader = DataLoader(ds, batch_sampler=data.BatchSampler(data.SequentialSampler(ds), 4, drop_last))
        assert [b[0].tolist() for b in loader] == [[float(i) for i in batch] for batch in ref]
        assert len(loader) == len(ref)
    with raises_naming(ValueError, "batch_sampler", "mutually exclusive"):
        DataLoader(ds, batch_size=2, batch_sampler=[[0, 1]])


def test_random_samplers_draw_permutations_and_weighted_draws(rng):
    ds = TensorDataset(np.arange(10))
    deepkern.manual_seed(5)
    first = list(data.RandomSampler(ds))
    deepkern.manual_seed(5)
    assert list(data.RandomSampler(ds)) == first and sorted(first) == list(range(10))
    sampler = data.RandomSampler(ds, generator=7)
    epochs = [list(sampler), list(sampler)]
    assert epochs[0] != epochs[1] and all(sorted(e) == list(range(10)) for e in epochs)
    assert [list(data.RandomSampler(ds, generator=7)) for _ in range(2)] == [epochs[0]] * 2
    longer = list(data.RandomSampler(ds, num_samples=25, generator=1))
    assert len(longer) == 25 and sorted(longer[:20]) == sorted(list(range(10)) * 2)
    drawn = list(data.RandomSampler(ds, replacement=True, num_samples=200, generator=2))
    assert len(drawn) == 200 and set(drawn) <= set(range(10)) and len(set(drawn)) > 1
    subset = list(data.SubsetRandomSampler([3, 8, 5], generator=4))
    assert sorted(subset) == [3, 5, 8]
    weights = np.array([0.0, 1.0, 3.0, 0.0, 6.0])
    counts = np.bincount(list(data.WeightedRandomSampler(weights, 20000, generator=3)), minlength=5)
    np.testing.assert_allclose(counts / 20000, weights / weights.sum(), atol=0.02)
    assert counts[0] == counts[3] == 0
    unique = list(data.WeightedRandomSampler(weights, 3, replacement=False, generator=3))
    assert sorted(unique) == [1, 2, 4]
    with raises_naming(RuntimeError, "without replacement", "3 non-zero"):
        data.WeightedRandomSampler(weights, 4, replacement=False)
    with raises_naming(ValueError, "weights", "non-negative"):
        data.WeightedRandomSampler([1.0, -1.0], 2)
    with raises_naming(ValueError, "num_samples"):
        data.RandomSampler(ds, num_samples=0)


def test_dataloader_takes_torchs_arguments_in_torchs_order():
    ds = TensorDataset(np.arange(6.0))
    sampler = [5, 0, 3, 1, 4, 2]
    loader = DataLoader(ds, 4, False, sampler)  # torch's positions: dataset, batch_size, shuffle, sampler
    assert [b[0].tolist() for b in loader] == [[5.0, 0.0, 3.0, 1.0], [4.0, 2.0]]
    calls = []
    loader = DataLoader(ds, batch_size=2, num_workers=2, worker_init_fn=calls.append, persistent_workers=True)
    list(loader), list(loader)
    assert calls == [0]
    loader = DataLoader(ds, batch_size=2, num_workers=1, worker_init_fn=calls.append, prefetch_factor=2, timeout=5)
    list(loader), list(loader)
    assert calls == [0, 0, 0]
    with raises_naming(ValueError, "persistent_workers", "num_workers"):
        DataLoader(ds, persistent_workers=True)
    orders = [[b[0].tolist() for b in DataLoader(ds, 3, shuffle=True, generator=11)] for _ in range(2)]
    assert orders[0] == orders[1]


def test_iterable_dataset_streams_in_batches():
    class Stream(data.IterableDataset):
        def __iter__(self):
            return ((np.float64(i), i % 2) for i in range(7))

    batches = list(DataLoader(Stream(), batch_size=3))
    assert [b[0].tolist() for b in batches] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0]]
    assert [b[1].tolist() for b in batches][0] == [0, 1, 0]
    assert len(list(DataLoader(Stream(), batch_size=3, drop_last=True))) == 2
    with pytest.raises(TypeError):
        len(DataLoader(Stream(), batch_size=3))
    with raises_naming(ValueError, "IterableDataset", "shuffle"):
        DataLoader(Stream(), shuffle=True)


def test_concat_dataset_matches_torch():
    torch_data = pytest.importorskip("torch.utils.data")
    parts = [TensorDataset(np.arange(3.0)), TensorDataset(np.arange(10.0, 12.0)), TensorDataset(np.arange(20.0, 24.0))]
    mine = data.ConcatDataset(parts)
    ref = torch_data.ConcatDataset(parts)
    assert len(mine) == len(ref) == 9
    for i in range(-9, 9):
        assert mine[i] == ref[i]
    with raises_naming(IndexError, "index 9", "9 samples"):
        mine[9]
    assert [b[0].tolist() for b in DataLoader(mine, batch_size=4)][1] == [11.0, 20.0, 21.0, 22.0]


def test_random_split_takes_a_generator():
    torch = pytest.importorskip("torch")
    ds = TensorDataset(np.arange(10))
    by_generator = random_split(ds, [0.3, 0.7], generator=torch.Generator().manual_seed(3))
    by_seed = random_split(ds, [0.3, 0.7], seed=3)
    assert [list(s.indices) for s in by_generator] == [list(s.indices) for s in by_seed]


def test_batch_size_none_yields_converted_samples_as_torch():
    torch_data = pytest.importorskip("torch.utils.data")
    ds = TensorDataset(np.arange(4.0))
    ours, ref = list(DataLoader(ds, batch_size=None)), list(torch_data.DataLoader(ds, batch_size=None))
    assert len(DataLoader(ds, batch_size=None)) == 4
    assert [[t.item() for t in s] for s in ours] == [[t.item() for t in s] for s in ref]
    assert all(isinstance(s, list) and isinstance(s[0], deepkern.Tensor) for s in ours)
    arrays = [np.array([1, 2]), np.array([3, 4])]
    assert [t.tolist() for t in DataLoader(arrays, batch_size=None)] == [[1, 2], [3, 4]]

    class Stream(data.IterableDataset):
        def __iter__(self):
            return iter([np.ones(2), 3.0])

    streamed = list(DataLoader(Stream() + Stream(), batch_size=None))
    assert len(streamed) == 4 and streamed[1] == 3.0 and isinstance(streamed[0], deepkern.Tensor)
    with raises_naming(ValueError, "batch_size=None", "drop_last"):
        DataLoader(ds, batch_size=None, drop_last=True)
    joined = ds + TensorDataset(np.arange(10.0, 12.0))
    assert isinstance(joined, data.ConcatDataset) and len(joined) == 6 and joined[5][0] == 11.0
    with raises_naming(TypeError, "ChainDataset", "IterableDataset"):
        data.ChainDataset([ds])
