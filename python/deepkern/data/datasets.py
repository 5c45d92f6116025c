"""Real data that ships inside installed packages (nothing is ever downloaded):

- :func:`digits`: scikit-learn's 8x8 handwritten digits (1797 images, 10 classes);
- :func:`sunspots`: statsmodels' yearly sunspot numbers 1700-2008, as windows for one-step-ahead
  forecasting;
- :func:`char_corpus`: the Python reference's help topics (``pydoc_data.topics``, part of the
  standard library, ~465k characters) for character-level language models.

scikit-learn and statsmodels come with ``pip install "deepkern[train]"``; each loader reads its
source once per process.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from .dataset import TensorDataset

__all__ = ["digits", "stratified_split", "sunspots", "sliding_windows", "Windows", "char_corpus", "CharCorpus"]


def _bundled_csv(
    package: str, pip_name: str, relative_path: str, loader: str, fallback, header: bool = False
) -> np.ndarray:
    """The numbers (float64, one row a line, after a header line when ``header``) of the CSV file
    ``relative_path`` inside the installed ``package``, read without importing the package
    (importing scikit-learn or statsmodels takes a second); ``fallback()`` builds the same array
    through the package's own loader when the file is not where it was. Raises ImportError naming
    the pip extra when ``package`` is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ImportError(
            f"deepkern.data.{loader} needs {pip_name}, which is not installed: "
            f'pip install "deepkern[train]" (or pip install {pip_name})'
        )
    path = os.path.join(spec.submodule_search_locations[0], *relative_path.split("/"))
    if not os.path.isfile(path):
        return fallback()
    return np.loadtxt(path, delimiter=",", skiprows=int(header), ndmin=2)


def _check_int(value, name: str, loader: str, low: int = 1, high: int | None = None, why: str = "") -> int:
    """``value`` must be an int in [low, high) (``why`` explains ``high``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value >= high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"{loader}: {name} must be an int {bounds}{why}, got {value!r}")
    return value


def _check_fraction(value, name: str, loader: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{loader}: {name} must be a number in (0, 1), got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Handwritten digits


@functools.lru_cache(maxsize=1)
def _digits_arrays():
    """All 1797 digits: images (N, 1, 8, 8) float32 in [0, 1] and labels (N,) int64 (read-only)."""
    table = _bundled_csv("sklearn", "scikit-learn", "datasets/data/digits.csv.gz", "digits", _sklearn_digits)
    images = (table[:, :64] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    labels = table[:, 64].astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _sklearn_digits() -> np.ndarray:
    """The digits as scikit-learn's own loader gives them: one row of 64 pixels and the label each."""
    import sklearn.datasets

    raw = sklearn.datasets.load_digits()
    return np.column_stack([raw.data, raw.target]).astype(np.float64)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """Sorted (train, test) indices: in each class, a seeded random ``round(test_fraction * count)``
    of its samples go to test, the rest to train."""
    test_fraction = _check_fraction(test_fraction, "test_fraction", "stratified_split")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"stratified_split: labels must be 1-D (one per sample), got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def digits(train: bool = True, test_fraction: float = 0.2, seed: int = 0) -> TensorDataset:
    """scikit-learn's handwritten digits as a TensorDataset of (images (N, 1, 8, 8) float32 in
    [0, 1], labels (N,) int64 in 0..9).

    ``train`` picks the training or the test part of a split stratified by class, with
    ``test_fraction`` of each class in the test part, drawn from ``seed``: the same arguments
    give the same, disjoint parts every time (1438 and 359 images with the defaults).
    """
    test_fraction = _check_fraction(test_fraction, "test_fraction", "digits")
    images, labels = _digits_arrays()
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    idx = train_idx if train else test_idx
    return TensorDataset(images[idx], labels[idx])


# ---------------------------------------------------------------------------------------------
# Sunspots


@functools.lru_cache(maxsize=1)
def _sunspots_series():
    """Years (N,) int64 and yearly sunspot numbers (N,) float64 (read-only)."""
    table = _bundled_csv(
        "statsmodels", "statsmodels", "datasets/sunspots/sunspots.csv", "sunspots", _statsmodels_sunspots, header=True
    )
    years = table[:, 0].astype(np.int64)
    values = table[:, 1].copy()
    years.flags.writeable = values.flags.writeable = False
    return years, values


def _statsmodels_sunspots() -> np.ndarray:
    """The series as statsmodels' own loader gives it: one row (year, sunspot number) a year."""
    import statsmodels.datasets.sunspots

    return statsmodels.datasets.sunspots.load_pandas().data[["YEAR", "SUNACTIVITY"]].to_numpy(np.float64)


def sliding_windows(series: np.ndarray, window: int):
    """Inputs x (N, window, 1) and one-step-ahead targets y (N, 1), float32, for a 1-D
    ``series`` of length L: ``x[i, :, 0] = series[i:i + window]``, ``y[i, 0] = series[i + window]``,
    N = L - window."""
    series = np.asarray(series, dtype=np.float32)
    if series.ndim != 1:
        raise ValueError(f"sliding_windows: series must be 1-D, got shape {series.shape}")
    _check_int(window, "window", "sliding_windows", 1, len(series), f" (len(series) = {len(series)})")
    x = np.lib.stride_tricks.sliding_window_view(series[:-1], window)[:, :, None]
    y = series[window:, None]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


class Windows:
    """A series split in time for one-step-ahead forecasting (see :func:`sunspots`).

    Attributes: ``train`` and ``test`` (TensorDatasets of x (N, window, 1) and y (N, 1), float32,
    normalised), ``mean`` and ``std`` (of the training part, used for the normalisation),
    ``window``, ``test_years`` (the year of each test target).
    """

    def __init__(
        self, train: TensorDataset, test: TensorDataset, mean: float, std: float, window: int, test_years: np.ndarray
    ):
        self.train, self.test = train, test
        self.mean, self.std = mean, std
        self.window = window
        self.test_years = test_years

    def denormalize(self, values: np.ndarray) -> np.ndarray:
        """Normalised values back in the series' units: ``values * std + mean``."""
        return np.asarray(values) * self.std + self.mean

    @staticmethod
    def persistence(x: np.ndarray) -> np.ndarray:
        """The persistence forecast (next value = last value) of inputs x (N, window, 1): (N, 1)."""
        return np.asarray(x)[:, -1, :]

    def persistence_mse(self, split: str = "test") -> float:
        """Mean squared error (normalised units) of the persistence forecast on ``split``
        ('train' or 'test'): the baseline a model's MSE on the same split is compared with."""
        if split not in ("train", "test"):
            raise ValueError(f"persistence_mse: split must be 'train' or 'test', got {split!r}")
        x, y = getattr(self, split).arrays
        return float(np.mean((self.persistence(x).astype(np.float64) - y) ** 2))


def sunspots(window: int = 20, test_fraction: float = 0.2) -> Windows:
    """statsmodels' yearly sunspot numbers (1700-2008, 309 values) as :class:`Windows`.

    The series is split in time: the first ``L - round(test_fraction * L)`` years are the
    training part, the rest the test part. Values are normalised with the mean and standard
    deviation of the training part only. Training windows predict training years; test windows
    predict test years (their inputs may reach back into the training years).
    Raises ValueError naming ``window`` when the training part has no window.
    """
    test_fraction = _check_fraction(test_fraction, "test_fraction", "sunspots")
    years, values = _sunspots_series()
    n_train = len(values) - int(round(test_fraction * len(values)))
    _check_int(window, "window", "sunspots", 1, n_train, f" (the training part has {n_train} of {len(values)} years)")
    mean, std = float(values[:n_train].mean()), float(values[:n_train].std())
    x, y = sliding_windows((values - mean) / std, window)
    split = n_train - window  # windows before it predict training years
    return Windows(
        TensorDataset(x[:split], y[:split]),
        TensorDataset(x[split:], y[split:]),
        mean,
        std,
        window,
        years[n_train:].copy(),
    )


# ---------------------------------------------------------------------------------------------
# Character corpus


@functools.lru_cache(maxsize=1)
def _topics_text() -> str:
    """The Python reference's help topics (``pydoc_data.topics``), joined in key order."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # a trimmed Python (some distributions and containers drop it)
        raise ImportError(
            "deepkern.data.char_corpus needs the standard library's pydoc_data module, "
            "which this Python installation lacks"
        ) from e
    return "\n\n".join(topics[key] for key in sorted(topics))


class CharCorpus:
    """A text as character ids, for next-character prediction.

    ``vocab`` is the sorted list of the distinct characters and a character's id its position;
    ``ids`` (int64) encodes the whole text. The first ``1 - val_fraction`` of the text is the
    training part, the rest validation; ``train`` and ``val`` are TensorDatasets of windows
    (input ids (seq_len,), target ids (seq_len,) = the inputs shifted by one character), one
    starting every ``stride`` characters (default ``seq_len``: non-overlapping). The windows
    are read-only views of ``ids`` (no copy); batches from a DataLoader are fresh arrays.
    """

    def __init__(self, text: str, seq_len: int, val_fraction: float = 0.1, stride: int | None = None):
        val_fraction = _check_fraction(val_fraction, "val_fraction", "CharCorpus")
        n_val = int(round(val_fraction * len(text)))
        shortest = min(len(text) - n_val, n_val)
        _check_int(
            seq_len,
            "seq_len",
            "CharCorpus",
            1,
            shortest,
            f" (the shorter part has {shortest} of {len(text)} characters, val_fraction={val_fraction})",
        )
        stride = _check_int(seq_len if stride is None else stride, "stride", "CharCorpus")
        self.text = text
        self.vocab = sorted(set(text))
        self._codes = _code_points(self.vocab)
        self.ids = self.encode(text)
        self.ids.flags.writeable = False
        self.seq_len, self.stride = seq_len, stride
        self.train = self._windows(self.ids[: len(text) - n_val])
        self.val = self._windows(self.ids[len(text) - n_val :])

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """The ids (int64) of ``text``'s characters; ValueError naming a character not in the vocabulary."""
        codes = _code_points(text)
        ids = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
        unknown = np.flatnonzero(self._codes[ids] != codes)
        if unknown.size:
            raise ValueError(
                f"CharCorpus.encode: character {text[unknown[0]]!r} (position {unknown[0]} of "
                f"text) is not in the vocabulary"
            )
        return ids.astype(np.int64)

    def decode(self, ids) -> str:
        """The text of character ``ids`` (any int sequence or array)."""
        return "".join(self.vocab[int(i)] for i in np.asarray(ids).reshape(-1))

    def unigram_entropy(self) -> float:
        """The entropy of the text's character frequencies in nats per character: the loss of a
        model that knows only how often each character occurs (a uniform guess would score
        ``log(vocab_size)``)."""
        p = np.bincount(self.ids, minlength=self.vocab_size) / len(self.ids)
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    def _windows(self, ids: np.ndarray) -> TensorDataset:
        view = np.lib.stride_tricks.sliding_window_view
        return TensorDataset(view(ids[:-1], self.seq_len)[:: self.stride], view(ids[1:], self.seq_len)[:: self.stride])


def _code_points(chars) -> np.ndarray:
    """The Unicode code points (uint32) of a str or a list of characters."""
    return np.frombuffer("".join(chars).encode("utf-32-le"), dtype=np.uint32)


def char_corpus(seq_len: int = 64, val_fraction: float = 0.1, stride: int | None = None) -> CharCorpus:
    """:class:`CharCorpus` of the Python reference's help topics (``pydoc_data.topics``, in the
    standard library: ~465k characters, ~100 distinct ones)."""
    return CharCorpus(_topics_text(), seq_len, val_fraction, stride)
