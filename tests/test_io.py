"""The contract of deepkern.save / deepkern.load (safetensors checkpoints) and
deepkern.io.check_state_dict: exact round trips of nested state (arrays of every stored dtype, 0-d,
empty and non-contiguous arrays, int keys, dotted names, JSON leaves), atomic writes, and clear
errors for files that are not checkpoints and for state dicts that do not fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import deepkern
import numpy as np
import pytest
import safetensors.numpy
from deepkern import io

from checks import raises_naming, shape_pattern


class FakeTensor:
    """Stands for a deepkern Tensor: anything with .numpy() is stored as its array."""

    def __init__(self, array):
        self._array = array

    def numpy(self):
        return self._array


def assert_same(got, want):
    """``got`` equals ``want`` in structure, types of keys and containers, and array dtypes/values."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        assert [type(k) for k in got] == [type(k) for k in want]
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    elif isinstance(want, (np.ndarray, np.generic)):
        assert isinstance(got, np.ndarray)
        assert got.dtype == want.dtype and got.shape == np.shape(want)
        assert got.flags.c_contiguous and got.flags.writeable
        np.testing.assert_array_equal(got, want)
    else:
        assert type(got) is type(want) and (got == want or (got != got and want != want))


def round_trip(obj, tmp_path):
    path = tmp_path / "ckpt.safetensors"
    deepkern.save(obj, path)
    return deepkern.load(path)


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.float16, np.int64, np.int32, np.int8, np.uint8, np.uint64, np.bool_]
)
def test_round_trip_dtypes(dtype, tmp_path, rng):
    a = (rng.standard_normal((3, 5)) * 50).astype(dtype)
    assert_same(round_trip({"a": a}, tmp_path), {"a": a})


def test_round_trip_shapes_and_layouts(tmp_path, rng):
    base = rng.standard_normal((6, 7, 4)).astype(np.float32)
    obj = {
        "zero_d": np.array(3.5, np.float64),
        "numpy_scalar": np.float32(-2.0),
        "empty": np.zeros((0, 3), np.float32),
        "transposed": base.transpose(2, 0, 1),
        "strided": base[::2, 1::3, ::-1],
        "big_endian": np.arange(5, dtype=">i8"),
        "fortran": np.asfortranarray(base[0]),
    }
    want = {
        k: np.ascontiguousarray(v).astype(np.asarray(v).dtype.newbyteorder("=")).reshape(np.shape(v))
        for k, v in obj.items()
    }
    got = round_trip(obj, tmp_path)
    assert_same(got, want)


def test_round_trip_nested_state(tmp_path, rng):
    weight = rng.standard_normal((4, 3)).astype(np.float32)
    obj = {
        "model": {"layer.weight": weight, "layer.bias": np.zeros(4, np.float32)},
        "model.layer": {"weight": weight + 1},  # the same dotted path as model -> "layer.weight"
        "optimizer": {
            "state": {0: {"step": 7, "exp_avg": weight * 2}, 1: {"step": 7, "exp_avg": weight * 3}},
            "param_groups": [
                {
                    "lr": 1e-3,
                    "betas": (0.9, 0.999),
                    "eps": 1e-8,
                    "amsgrad": False,
                    "params": [0, 1],
                    "name": "all",
                    "foreign": None,
                }
            ],
        },
        "mixed": [1, "two", 3.0, np.arange(3), (True, None)],
        "tensor": FakeTensor(np.arange(6, dtype=np.int64).reshape(2, 3)),
        "nan": float("nan"),
        "": {"": np.ones(1)},
        "1": "a str key that looks like an int",
        1: "an int key",
    }
    want = dict(obj, tensor=np.arange(6, dtype=np.int64).reshape(2, 3))
    assert_same(round_trip(obj, tmp_path), want)


def test_file_is_plain_safetensors_with_the_state_dict_names(tmp_path):
    """Other safetensors readers see the arrays under their dotted names."""
    path = tmp_path / "m.safetensors"
    deepkern.save({"layer.weight": np.ones((2, 3), np.float32), "opt": {"state": {0: {"m": np.zeros(2)}}}}, path)
    flat = safetensors.numpy.load_file(str(path))
    assert sorted(flat) == ["layer.weight", "opt.state.0.m"]
    assert flat["layer.weight"].shape == (2, 3)


def test_foreign_safetensors_file_loads_flat(tmp_path):
    path = tmp_path / "foreign.safetensors"
    safetensors.numpy.save_file({"encoder.w": np.eye(3, dtype=np.float32)}, str(path), metadata={"a": "b"})
    got = deepkern.load(path)
    assert_same(got, {"encoder.w": np.eye(3, dtype=np.float32)})


def test_save_rejects_what_it_cannot_store(tmp_path):
    path = tmp_path / "x.safetensors"
    with raises_naming(TypeError, "obj must be a dict", "list"):
        deepkern.save([np.ones(2)], path)
    with raises_naming(TypeError, r"\['a'\]\[0\]", "object"):
        deepkern.save({"a": [object()]}, path)
    with raises_naming(TypeError, "dict keys must be str or int", r"\(1, 2\)", r"\['a'\]"):
        deepkern.save({"a": {(1, 2): np.ones(1)}}, path)
    with raises_naming(TypeError, r"\['c'\]", "complex128"):
        deepkern.save({"c": np.ones(2, np.complex128)}, path)
    assert not os.listdir(tmp_path)


def test_save_is_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the old checkpoint intact and no temporary file behind."""
    path = tmp_path / "ckpt.safetensors"
    deepkern.save({"w": np.arange(4.0)}, path)
    old_bytes = path.read_bytes()

    real_save = safetensors.numpy.save

    def half_written(tensors, metadata=None):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(safetensors.numpy, "save", half_written)
    with pytest.raises(OSError, match="simulated"):
        deepkern.save({"w": np.zeros(1000)}, path)
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]

    # A failure after part of the data reached the temporary file: the same.
    def fsync_fails(fd):
        raise OSError("fsync failed (simulated)")

    monkeypatch.setattr(safetensors.numpy, "save", real_save)
    monkeypatch.setattr(os, "fsync", fsync_fails)
    with pytest.raises(OSError, match="fsync failed"):
        deepkern.save({"w": np.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]
    assert_same(deepkern.load(path), {"w": np.arange(4.0)})


def test_save_removes_temporaries_of_killed_saves(tmp_path):
    """A save killed mid-write leaves its temporary; the next save of that path removes it, and
    keeps a temporary whose process still runs (a save in progress) and every other file."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(done.stdout)
    path = tmp_path / "ckpt.safetensors"
    stale = tmp_path / f".ckpt.safetensors.{dead_pid}.abc123.tmp"
    in_progress = tmp_path / f".ckpt.safetensors.{os.getpid()}.def456.tmp"
    others = [tmp_path / ".other.safetensors.1.x.tmp", tmp_path / "ckpt.safetensors.notes"]
    for f in [stale, in_progress, *others]:
        f.write_bytes(b"partial")
    deepkern.save({"w": np.arange(3.0)}, path)
    assert not stale.exists()
    assert in_progress.exists() and all(f.exists() for f in others)
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in [path, in_progress, *others])
    assert_same(deepkern.load(path), {"w": np.arange(3.0)})


def test_save_replaces_and_keeps_permissions(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    deepkern.save({"w": np.arange(4.0)}, path)
    os.chmod(path, 0o640)
    deepkern.save({"w": np.arange(2.0)}, path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert_same(deepkern.load(path), {"w": np.arange(2.0)})


def test_load_rejects_bad_files(tmp_path):
    good = tmp_path / "good.safetensors"
    deepkern.save({"w": np.arange(100.0), "b": {"c": 1}}, good)
    data = good.read_bytes()

    cases = {
        "text.safetensors": b"this is not a checkpoint at all, just some text",
        "empty.safetensors": b"",
        "truncated.safetensors": data[: len(data) - 10],
        "header_cut.safetensors": data[:20],
        "pickle.safetensors": b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.",
        "huge_header.safetensors": (10**12).to_bytes(8, "little") + b"{}",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with raises_naming(ValueError, name, "not a valid safetensors file"):
            deepkern.load(tmp_path / name)
    with raises_naming(FileNotFoundError, "missing.safetensors"):
        deepkern.load(tmp_path / "missing.safetensors")


def write_with_metadata(path, metadata):
    safetensors.numpy.save_file({"w": np.zeros(2)}, str(path), metadata=metadata)


def test_load_rejects_bad_trees(tmp_path):
    path = tmp_path / "t.safetensors"
    base = {"deepkern.format": io.FORMAT, "deepkern.version": str(io.VERSION)}
    write_with_metadata(path, dict(base, **{"deepkern.version": "99"}))
    with raises_naming(ValueError, "t.safetensors", "version '99'"):
        deepkern.load(path)
    for tree in [
        "{not json",
        json.dumps({"dict": [["w", {"array": "missing"}]]}),
        json.dumps({"dict": [["w", {"code": "import os"}]]}),
        json.dumps([1, 2]),
        json.dumps({"value": 1}),
        json.dumps({"dict": [[None, {"value": 1}]]}),
    ]:
        write_with_metadata(path, dict(base, **{"deepkern.tree": tree}))
        with raises_naming(ValueError, "t.safetensors", "damaged deepkern tree"):
            deepkern.load(path)


@pytest.mark.parametrize("name", ["w", "b", "bits"])
def test_damaged_tensor_data_is_an_error_naming_the_tensor(name, tmp_path, rng):
    """One flipped bit anywhere in a tensor's bytes fails its checksum (stored in the metadata)."""
    path = tmp_path / "c.safetensors"
    deepkern.save(
        {"w": rng.standard_normal((7, 5)), "b": np.arange(3, dtype=np.int32), "bits": np.eye(3, dtype=bool)}, path
    )
    raw = path.read_bytes()  # safetensors: 8-byte header length, JSON header, then the data
    header_len = int.from_bytes(raw[:8], "little")
    start, end = json.loads(raw[8 : 8 + header_len])[name]["data_offsets"]
    for offset in (start, (start + end) // 2, end - 1):
        data = bytearray(path.read_bytes())
        data[8 + header_len + offset] ^= 0x01
        (tmp_path / "bad.safetensors").write_bytes(bytes(data))
        with raises_naming(ValueError, "bad.safetensors", repr(name), "checksum"):
            deepkern.load(tmp_path / "bad.safetensors")
    assert set(deepkern.load(path)) == {"w", "b", "bits"}  # the undamaged file loads


def test_damaged_or_missing_checksums(tmp_path):
    path = tmp_path / "t.safetensors"
    tree = json.dumps({"dict": [["w", {"array": "w"}]]})
    base = {"deepkern.format": io.FORMAT, "deepkern.version": str(io.VERSION), "deepkern.tree": tree}
    write_with_metadata(path, dict(base, **{"deepkern.crc32": "{not json"}))
    with raises_naming(ValueError, "t.safetensors", "damaged checksums"):
        deepkern.load(path)
    write_with_metadata(path, dict(base, **{"deepkern.crc32": json.dumps({"other": 1})}))
    with raises_naming(ValueError, "t.safetensors", "'w' has no checksum"):
        deepkern.load(path)
    write_with_metadata(path, base)  # written before checksums were stored: nothing to check
    assert set(deepkern.load(path)) == {"w"}


EXPECTED = {"fc.weight": ((4, 3), np.float32), "fc.bias": ((4,), np.float32), "emb": ((10, 2), "float32")}


def test_check_state_dict_accepts_a_fitting_dict():
    loaded = {name: np.zeros(shape, dtype) for name, (shape, dtype) in EXPECTED.items()}
    assert io.check_state_dict(EXPECTED, loaded) is None


def test_check_state_dict_names_every_problem():
    loaded = {
        "fc.weight": np.zeros((3, 4), np.float32),
        "fc.bias": np.zeros(4, np.float64),
        "extra": np.zeros(1),
        "another": np.zeros(2),
    }
    with raises_naming(
        ValueError,
        "^classifier: the state dict does not fit",
        "missing keys: emb",
        "unexpected keys: extra, another",
        r"fc\.weight: expected shape "
        + shape_pattern((4, 3))
        + " float32, found shape "
        + shape_pattern((3, 4))
        + " float32",
        r"fc\.bias: expected shape \(4,\) float32, found shape \(4,\) float64",
    ):
        io.check_state_dict(EXPECTED, loaded, where="classifier")


def test_check_state_dict_not_strict_ignores_unexpected_keys_only():
    loaded = {name: np.zeros(shape, dtype) for name, (shape, dtype) in EXPECTED.items()}
    io.check_state_dict(EXPECTED, dict(loaded, extra=np.zeros(1)), strict=False)
    del loaded["emb"]
    with pytest.raises(ValueError, match="missing keys: emb") as info:
        io.check_state_dict(EXPECTED, dict(loaded, extra=np.zeros(1)), strict=False)
    assert "extra" not in str(info.value)


def test_saved_checkpoint_that_does_not_fit_names_the_shapes(tmp_path):
    """A checkpoint from another model is rejected naming both shapes."""
    path = tmp_path / "other.safetensors"
    deepkern.save(
        {
            "fc.weight": np.zeros((8, 3), np.float32),
            "fc.bias": np.zeros(8, np.float32),
            "emb": np.zeros((10, 2), np.float32),
        },
        path,
    )
    with raises_naming(
        ValueError,
        "fc.weight",
        shape_pattern((4, 3)),
        shape_pattern((8, 3)),
        "fc.bias",
        shape_pattern((4,)),
        shape_pattern((8,)),
    ):
        io.check_state_dict(EXPECTED, deepkern.load(path))


def test_resumed_training_continues_the_same_trajectory(tmp_path, rng):
    """Model, optimizer state (int-keyed, with a step count) and the loader's epoch saved after
    one epoch and loaded into a fresh run give, after the second epoch, bitwise the parameters of
    an uninterrupted run (plain NumPy SGD with momentum stands for deepkern.optim here)."""
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)
    dataset = deepkern.data.TensorDataset(x, y)

    def fresh():
        model = {"linear.weight": np.zeros(3, np.float32)}
        optimizer = {"state": {}, "param_groups": [{"lr": 0.05, "momentum": 0.9, "params": [0]}]}
        return model, optimizer, deepkern.data.DataLoader(dataset, batch_size=8, shuffle=True, seed=7)

    def epoch(model, optimizer, loader):
        w = model["linear.weight"]
        group = optimizer["param_groups"][0]
        for xb, yb in loader:
            grad = 2 * xb.T @ (xb @ w - yb) / len(xb)
            state = optimizer["state"].setdefault(0, {"step": 0, "momentum_buffer": np.zeros_like(w)})
            state["momentum_buffer"] = group["momentum"] * state["momentum_buffer"] + grad
            state["step"] += 1
            w -= group["lr"] * state["momentum_buffer"]

    model, optimizer, loader = fresh()
    epoch(model, optimizer, loader)
    path = tmp_path / "resume.safetensors"
    deepkern.save({"model": model, "optimizer": optimizer, "epoch": loader.epoch}, path)
    epoch(model, optimizer, loader)

    checkpoint = deepkern.load(path)
    model2, optimizer2, loader2 = fresh()
    io.check_state_dict({k: (v.shape, v.dtype) for k, v in model2.items()}, checkpoint["model"])
    model2, optimizer2, loader2.epoch = checkpoint["model"], checkpoint["optimizer"], checkpoint["epoch"]
    epoch(model2, optimizer2, loader2)
    assert optimizer2["state"][0]["step"] == optimizer["state"][0]["step"] == 10
    np.testing.assert_array_equal(model2["linear.weight"], model["linear.weight"])
