"""The contract of deepkern.save / deepkern.load (safetensors checkpoints) and
deepkern.io.check_state_dict: exact round trips of nested state (arrays of every stored dtype, 0-d,
empty and non-contiguous arrays, int keys, dotted names, JSON leaves), atomic writes, clear errors
for state dicts that do not fit, and for files that are not checkpoints: whatever bytes a file
holds, load returns the saved object or raises io.CheckpointError naming the file (random mutations
of valid checkpoints, and the crafted files that once crashed it, run in a subprocess)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc

import deepkern
import numpy as np
import pytest
import safetensors.numpy
from deepkern import cli, io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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
        assert got.tobytes() == np.ascontiguousarray(want).tobytes()  # bit-equal: NaN payloads, -0.0
    else:
        assert type(got) is type(want) and repr(got) == repr(want)  # repr: -0.0 is not 0.0, nan is nan


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


def test_an_interrupt_just_after_the_rename_stays_an_interrupt(tmp_path, monkeypatch):
    """Ctrl-C landing after the new file took the checkpoint's name: the KeyboardInterrupt goes on
    (it had become a FileNotFoundError from removing the renamed temporary), the new file is whole."""
    path = tmp_path / "ckpt.safetensors"
    real_replace = os.replace

    def replaced_then_interrupted(src, dst):
        real_replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replaced_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        deepkern.save({"w": np.arange(3.0)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]
    assert_same(deepkern.load(path), {"w": np.arange(3.0)})


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
        with raises_naming(io.CheckpointError, name, "not a valid safetensors file"):
            deepkern.load(tmp_path / name)
    with raises_naming(FileNotFoundError, "missing.safetensors"):
        deepkern.load(tmp_path / "missing.safetensors")


def write_with_metadata(path, metadata):
    safetensors.numpy.save_file({"w": np.zeros(2)}, str(path), metadata=metadata)


def test_load_rejects_bad_trees(tmp_path):
    path = tmp_path / "t.safetensors"
    base = {"deepkern.format": io.FORMAT, "deepkern.version": str(io.VERSION)}
    write_with_metadata(path, dict(base, **{"deepkern.version": "99"}))
    with raises_naming(io.CheckpointError, "t.safetensors", "version '99'"):
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
        with raises_naming(io.CheckpointError, "t.safetensors", "damaged deepkern tree"):
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
        with raises_naming(io.CheckpointError, "bad.safetensors", repr(name), "checksum"):
            deepkern.load(tmp_path / "bad.safetensors")
    assert set(deepkern.load(path)) == {"w", "b", "bits"}  # the undamaged file loads


def test_damaged_or_missing_checksums(tmp_path):
    path = tmp_path / "t.safetensors"
    tree = json.dumps({"dict": [["w", {"array": "w"}]]})
    base = {"deepkern.format": io.FORMAT, "deepkern.version": str(io.VERSION), "deepkern.tree": tree}
    write_with_metadata(path, dict(base, **{"deepkern.crc32": "{not json"}))
    with raises_naming(io.CheckpointError, "t.safetensors", "damaged checksums"):
        deepkern.load(path)
    write_with_metadata(path, dict(base, **{"deepkern.crc32": json.dumps({"other": 1})}))
    with raises_naming(io.CheckpointError, "t.safetensors", "'w' has no checksum"):
        deepkern.load(path)
    write_with_metadata(path, base)  # written before checksums were stored: nothing to check
    assert set(deepkern.load(path)) == {"w"}


def safetensors_bytes(header, data=b"", header_size=None):
    """A file's bytes: the 8-byte header length (``header_size``, default the header's), the
    header (JSON text, or a value to write as JSON) and the data section."""
    raw = (header if isinstance(header, str) else json.dumps(header)).encode()
    return (len(raw) if header_size is None else header_size).to_bytes(8, "little") + raw + data


def split_file(raw):
    """(header as a dict, data section) of a safetensors file's bytes."""
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def deep(n, open_, close, inner=""):
    """JSON text nesting ``inner`` ``n`` levels deep."""
    return open_ * n + inner + close * n


W = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def crafted_files(valid):
    """Files that are not checkpoints, by name: (bytes, regexes their error must contain besides the
    file name). ``valid`` is a checkpoint of {"w": 2 float32, "b": {"c": 1}} to damage."""
    header, data = split_file(valid)
    meta = header["__metadata__"]
    no_header_crc = {k: v for k, v in meta.items() if k != "deepkern.header_crc32"}

    def with_meta(**changes):  # another checkpoint's metadata, with no header checksum to fail first
        return safetensors_bytes(dict(header, __metadata__=dict(no_header_crc, **changes)), data)

    entry = header["w"]
    return {
        # the file and its header
        "short": (b"\x01\x00", ["fewer than the 8"]),
        "header_past_end": (safetensors_bytes({}, header_size=2**64 - 1), ["header of 18446744073709551615 bytes"]),
        "header_not_utf8": (safetensors_bytes("", b"\xff", header_size=1), ["not UTF-8"]),
        "header_not_json": (safetensors_bytes("{'w': 1}"), ["not JSON"]),
        "header_not_object": (safetensors_bytes([1, 2]), ["not a JSON object"]),
        "header_deep": (safetensors_bytes(deep(10**5, "[", "]")), ["header", "nests too deeply"]),
        "header_deep_entry": (safetensors_bytes('{"w": ' + deep(10**5, '{"a":', "}", "1") + "}"), ["nests too deeply"]),
        "metadata_not_strings": (safetensors_bytes({"__metadata__": {"a": [1]}}), ["__metadata__"]),
        # each tensor's entry
        "entry_not_object": (safetensors_bytes({"w": [0, 8]}, bytes(8)), ["entry of tensor 'w'"]),
        "entry_extra_key": (safetensors_bytes({"w": dict(W, x=1)}, bytes(8)), ["entry of tensor 'w'"]),
        "float8": (
            safetensors_bytes({"w": dict(W, dtype="F8_E4M3", shape=[8])}, bytes(8)),
            ["'w'", "F8_E4M3", "does not load"],
        ),
        "dtype_not_str": (
            safetensors_bytes({"w": dict(W, dtype=[])}, bytes(8)),
            ["'w'", "dtype a JSON array", "not a str"],
        ),
        "shape_negative": (safetensors_bytes({"w": dict(W, shape=[-2])}, bytes(8)), ["'w'", "shape"]),
        "shape_float": (safetensors_bytes({"w": dict(W, shape=[2.0])}, bytes(8)), ["'w'", "shape"]),
        "shape_past_int64": (safetensors_bytes({"w": dict(W, shape=[2**64, 0])}, bytes(8)), ["'w'", "shape"]),
        "shape_huge": (safetensors_bytes({"w": dict(W, shape=[2**62])}, bytes(8)), ["'w'", "span 8"]),
        "shape_huge_empty": (safetensors_bytes({"w": dict(W, shape=[2**62, 2**62, 0])}, bytes(8)), ["span 8"]),
        "shape_past_numpy": (
            safetensors_bytes({"w": dict(W, shape=[2**62, 0], data_offsets=[0, 0])}),
            ["'w'", "too large for a NumPy array"],
        ),
        "shape_too_many_dims": (safetensors_bytes({"w": dict(W, shape=[1] * 33)}, bytes(8)), ["at most 32"]),
        "shape_deep": (safetensors_bytes('{"w": {"dtype": "F32", "shape": ' + deep(10**5, "[", "]") + "}}"), ["deep"]),
        "shape_wrong": (safetensors_bytes({"w": dict(W, shape=[3])}, bytes(8)), ["12 bytes", "span 8"]),
        "offsets_huge": (safetensors_bytes({"w": dict(W, data_offsets=[0, 2**62])}, bytes(8)), ["outside the data"]),
        "offsets_reversed": (safetensors_bytes({"w": dict(W, data_offsets=[8, 0])}, bytes(8)), ["outside the data"]),
        "offsets_negative": (safetensors_bytes({"w": dict(W, data_offsets=[-8, 0])}, bytes(8)), ["data_offsets"]),
        "offsets_one": (safetensors_bytes({"w": dict(W, data_offsets=[8])}, bytes(8)), ["data_offsets"]),
        "overlap": (
            safetensors_bytes({"w": W, "v": dict(W, data_offsets=[4, 12])}, bytes(12)),
            ["'v'", "overlaps"],
        ),
        "gap": (safetensors_bytes({"w": W, "v": dict(W, data_offsets=[12, 20])}, bytes(20)), ["8..12", "no tensor"]),
        "appended": (valid + b"\x00\x00", ["2 bytes follow"]),
        "truncated": (valid[:-1], ["outside the data section"]),
        # the deepkern metadata
        "format_damaged": (
            safetensors_bytes(
                dict(header, __metadata__=dict(meta, **{"deepkern.format": "deepkern.checkpoinT"})), data
            ),
            ["deepkern.format"],
        ),
        "no_tree": (
            safetensors_bytes(dict(header, __metadata__={k: v for k, v in meta.items() if k != "deepkern.tree"}), data),
            ["no deepkern tree"],
        ),
        "shape_changed": (
            safetensors_bytes(dict(header, w=dict(entry, shape=[1, 2])), data),
            ["header", "fails its checksum"],
        ),
        "tree_changed": (
            safetensors_bytes(dict(header, __metadata__=dict(meta, **{"deepkern.tree": '{"dict": []}'})), data),
            ["header", "fails its checksum"],
        ),
        "tree_deep": (
            with_meta(
                **{"deepkern.tree": '{"dict": [["k", ' + deep(10**5, '{"list": [', "]}", '{"value": 1}') + "]]}"}
            ),
            ["damaged deepkern tree", "nests too deeply"],
        ),
        "tree_deeper_than_max_depth": (
            with_meta(**{"deepkern.tree": deep(io.MAX_DEPTH + 1, '{"dict": [["k", ', "]]}", '{"value": 1}')}),
            ["damaged deepkern tree", f"deeper than {io.MAX_DEPTH}"],
        ),
        "tree_missing_tensor": (
            with_meta(**{"deepkern.tree": '{"dict": [["w", {"array": "nothing"}]]}'}),
            ["damaged deepkern tree", "'nothing'", "does not hold"],
        ),
        "tree_bad_node": (with_meta(**{"deepkern.tree": '{"dict": [["w", {"dict": 5}]]}'}), ["damaged deepkern tree"]),
        "checksums_deep": (with_meta(**{"deepkern.crc32": deep(10**5, "[", "]")}), ["checksums", "nests too deeply"]),
        "checksums_inf": (with_meta(**{"deepkern.crc32": '{"w": 1e999}'}), ["damaged checksums"]),
        "checksums_bool": (with_meta(**{"deepkern.crc32": '{"w": true}'}), ["damaged checksums"]),
    }


# Loads each file named on the command line; prints one JSON line per file: the exception's type and
# message, or "returned". Catches BaseException, so that a Rust panic (PanicException) is reported too.
LOADER = textwrap.dedent(
    """
    import json, sys
    import deepkern
    for path in sys.argv[1:]:
        try:
            deepkern.load(path)
            outcome = ["returned", ""]
        except BaseException as e:
            outcome = [type(e).__name__, str(e)]
        print(json.dumps([path] + outcome), flush=True)
    """
)


def test_crafted_files_raise_one_error_naming_the_file(tmp_path):
    """Every crafted file, the ones that once crashed load included (RecursionError, a Rust panic,
    a TypeError naming no file), raises CheckpointError naming the file and what is wrong. They load
    in a subprocess, so that a crash or a hang fails this test instead of ending the run."""
    valid_path = tmp_path / "valid.safetensors"
    deepkern.save({"w": np.arange(2, dtype=np.float32), "b": {"c": 1}}, valid_path)
    files = crafted_files(valid_path.read_bytes())
    for name, (content, _) in files.items():
        (tmp_path / f"{name}.safetensors").write_bytes(content)
    paths = [str(tmp_path / f"{name}.safetensors") for name in files]
    done = subprocess.run(
        [sys.executable, "-c", LOADER, *paths], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    outcomes = {
        os.path.basename(path)[: -len(".safetensors")]: (kind, message)
        for path, kind, message in map(json.loads, done.stdout.splitlines())
    }
    problems = []
    for name, (_, needles) in files.items():
        kind, message = outcomes.get(name, ("nothing (the subprocess died)", done.stderr[-2000:]))
        if kind != "CheckpointError" or f"{name}.safetensors" not in message:
            problems.append(f"{name}: {kind}: {message[:300]}")
        elif not all(re.search(needle, message) for needle in needles):
            problems.append(f"{name}: the message lacks {needles}: {message[:300]}")
    assert not problems, "\n".join(problems)
    assert done.returncode == 0


STORED_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
STORED_DTYPES += [np.float16, np.float32, np.float64]
KEYS = st.text(max_size=4) | st.integers(-(2**70), 2**70)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | hnp.arrays(st.sampled_from(STORED_DTYPES), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
)
CHECKPOINTS = st.dictionaries(
    KEYS,
    st.recursive(
        LEAVES,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.lists(inner, max_size=3).map(tuple)
            | st.dictionaries(KEYS, inner, max_size=3)
        ),
        max_leaves=8,
    ),
    max_size=4,
)
# Placeholders that a mutated header's JSON text gets in place of a value nested 10**5 levels deep
# (too deep for json.dumps to write): as JSON, and as a JSON string holding a deep deepkern tree.
DEEP = "@@deep@@"
DEEP_TREE = "@@deep tree@@"
DEEP_TEXT = {
    json.dumps(DEEP): deep(10**5, "[", "]"),
    json.dumps(DEEP_TREE): json.dumps('{"dict": [["k", ' + deep(10**5, '{"list": [', "]}", '{"value": 1}') + "]]}"),
}
BAD_FIELDS = {
    "dtype": st.sampled_from(["BF16", "F8_E4M3", "C64", "F32", "F64", "I8", "U64", "BOOL", "f32", "", 5, None, []]),
    "shape": st.lists(st.integers(-2, 2**64) | st.sampled_from([0, 1, 2**62, 2**63]), max_size=4)
    | st.sampled_from([DEEP, "x", None, {}, [[2]], [2.0]]),
    "data_offsets": st.lists(st.integers(-1, 2**62) | st.integers(0, 64), max_size=3)
    | st.sampled_from([DEEP, [0.0, 8.0], [True, 1]]),
}
# Values of deepkern metadata entries that no checkpoint has (with the header checksum dropped,
# they must still be an error).
BAD_METADATA = ["", "{not json", "[1, 2]", "1e999", '{"w": 1e999}', '{"dict": [["w", {"dict": 5}]]}', DEEP_TREE, DEEP]
BAD_METADATA += ['{"dict": [["w", {"array": "nothing"}]]}']
METADATA_KEYS = ["deepkern.tree", "deepkern.crc32", "deepkern.format", "deepkern.version", "deepkern.header_crc32"]


def mutate(raw, data):
    """``raw`` (a checkpoint's bytes) damaged by one mutation drawn from ``data``: a changed byte,
    truncation, appended bytes, another header length, or an edit of the header's JSON (a tensor
    entry's field or the entry itself, a deepkern metadata entry, a deeply nested entry)."""
    kind = data.draw(st.sampled_from(["byte", "truncate", "append", "length", "entry", "metadata", "deep"]))
    if kind == "byte":  # anywhere, or in the data section (small beside the header here)
        data_start = 8 + int.from_bytes(raw[:8], "little")
        anywhere = st.integers(0, len(raw) - 1)
        i = data.draw(anywhere | st.integers(data_start, len(raw) - 1) if data_start < len(raw) else anywhere)
        x = data.draw(st.integers(1, 255))
        return raw[:i] + bytes([raw[i] ^ x]) + raw[i + 1 :]
    if kind == "truncate":
        return raw[: data.draw(st.integers(0, len(raw) - 1))]
    if kind == "append":
        return raw + data.draw(st.binary(min_size=1, max_size=16))
    if kind == "length":
        size = data.draw(st.integers(0, 2**64 - 1) | st.integers(0, len(raw)) | st.sampled_from([2**62, 2**63]))
        return size.to_bytes(8, "little") + raw[8:]
    header, body = split_file(raw)
    meta = header["__metadata__"]
    if kind == "entry":
        name = data.draw(st.sampled_from(sorted(set(header) - {"__metadata__"}) + ["new"]))
        field = data.draw(st.sampled_from([*BAD_FIELDS, "delete"]))
        if field == "delete":
            header.pop(name, None)
        else:
            header[name] = dict(header.get(name, W), **{field: data.draw(BAD_FIELDS[field])})
    elif kind == "metadata":
        key, value = data.draw(st.sampled_from(METADATA_KEYS)), data.draw(st.sampled_from(BAD_METADATA))
        meta[key] = value
        if data.draw(st.booleans()):
            meta.pop("deepkern.header_crc32")  # as in files saved before headers had a checksum
    else:
        header[data.draw(st.sampled_from(["x", "__metadata__"]))] = DEEP
    text = json.dumps(header)
    for placeholder, value in DEEP_TEXT.items():
        text = text.replace(placeholder, value)
    return safetensors_bytes(text, body)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(obj=CHECKPOINTS, data=st.data())
def test_any_damage_is_an_error_naming_the_file_or_harmless(obj, data, tmp_path, monkeypatch):
    """Whatever one mutation does to a valid checkpoint, load returns the saved object bit-equal
    (the mutation changed nothing that matters, e.g. a space of the header's padding) or raises
    CheckpointError naming the file; any other exception fails the test."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not the question here; speed is
    path = tmp_path / "mutated.safetensors"
    deepkern.save(obj, path)
    path.write_bytes(mutate(path.read_bytes(), data))
    try:
        got = deepkern.load(path)
    except io.CheckpointError as e:
        assert "mutated.safetensors" in str(e)
    else:
        assert_same(got, obj)


def test_resume_from_a_damaged_checkpoint_is_a_one_line_error(tmp_path, capsys):
    """deepkern train --resume reports what load found (naming the file) and exits 1."""
    valid_path = tmp_path / "valid.safetensors"
    deepkern.save({"w": np.arange(2, dtype=np.float32), "b": {"c": 1}}, valid_path)
    files = crafted_files(valid_path.read_bytes())
    for name in ["tree_deep", "float8", "shape_huge", "checksums_inf"]:
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(files[name][0])
        argv = ["train", "sunspots-lstm", "--epochs", "1", "--no-progress", "--resume", str(path)]
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("deepkern train: load: ") and f"{name}.safetensors" in err and err.count("\n") == 1


def test_load_reads_each_tensor_once_into_its_array(tmp_path):
    """The file's data is not held twice: load's peak memory is the arrays it returns."""
    big = np.arange(4 << 20, dtype=np.float32).reshape(4, -1)  # 16 MiB
    path = tmp_path / "big.safetensors"
    deepkern.save({"a": big, "b": [big[:1]]}, path)
    tracemalloc.start()
    try:
        got = deepkern.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_same(got, {"a": big, "b": [big[:1]]})
    returned = big.nbytes + big[:1].nbytes
    assert peak < returned + (1 << 20), f"peak {peak} bytes while loading {returned} bytes of arrays"


def test_checkpoint_error_is_a_value_error():
    """Callers that catch ValueError (deepkern train --resume reports it and exits 1) catch it."""
    assert issubclass(io.CheckpointError, ValueError)


def test_header_past_the_size_limit(tmp_path):
    """A header longer than safetensors allows is refused before it is read (a sparse file)."""
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.write((io.MAX_HEADER_BYTES + 1).to_bytes(8, "little"))
        f.truncate(io.MAX_HEADER_BYTES + 16)
    with raises_naming(io.CheckpointError, "big.safetensors", f"more than the {io.MAX_HEADER_BYTES}"):
        deepkern.load(path)


def nested(depth):
    """A dict in which ``depth`` containers (the dict, then lists and dicts alternating) nest."""
    obj = np.arange(3)
    for i in range(depth - 1):
        obj = {"k": obj} if i % 2 else [obj]
    return {"top": obj}


def test_nesting_up_to_max_depth_round_trips(tmp_path):
    """save writes what load reads: MAX_DEPTH nested containers; one more (or a dict that holds
    itself) is a ValueError of save naming the key path."""
    assert_same(round_trip(nested(io.MAX_DEPTH), tmp_path), nested(io.MAX_DEPTH))
    with raises_naming(ValueError, f"deeper than {io.MAX_DEPTH}", r"\['top'\]\['k'\]\[0\]"):
        deepkern.save(nested(io.MAX_DEPTH + 1), tmp_path / "deep.safetensors")
    loop = {}
    loop["self"] = loop
    with raises_naming(ValueError, f"deeper than {io.MAX_DEPTH}", r"\['self'\]\['self'\]"):
        deepkern.save(loop, tmp_path / "loop.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["ckpt.safetensors"]


def test_a_key_named_like_the_header_metadata_round_trips(tmp_path):
    obj = {"__metadata__": np.arange(2.0), "x": {"__metadata__": 1}}
    assert_same(round_trip(obj, tmp_path), obj)


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


def test_check_state_dict_not_strict_ignores_missing_and_unexpected_keys_not_mismatches():
    loaded = {name: np.zeros(shape, dtype) for name, (shape, dtype) in EXPECTED.items()}
    io.check_state_dict(EXPECTED, dict(loaded, extra=np.zeros(1)), strict=False)
    del loaded["emb"]
    io.check_state_dict(EXPECTED, dict(loaded, extra=np.zeros(1)), strict=False)
    loaded["fc.bias"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"fc\.bias: expected shape \(4,\)") as info:
        io.check_state_dict(EXPECTED, dict(loaded, extra=np.zeros(1)), strict=False)
    assert "extra" not in str(info.value) and "emb" not in str(info.value)


def test_save_through_a_symbolic_link_and_under_a_long_name(tmp_path):
    """A link at the path stays a link (its target gets the new file); a name near the file system's
    limit of 255 characters saves too (its temporary's name is cut)."""
    target = tmp_path / "run1.safetensors"
    deepkern.save({"w": np.zeros(2)}, target)
    link = tmp_path / "latest.safetensors"
    link.symlink_to(target.name)
    deepkern.save({"w": np.ones(2)}, link)
    assert link.is_symlink()
    np.testing.assert_array_equal(deepkern.load(target)["w"], np.ones(2))
    long = tmp_path / ("c" * 240 + ".safetensors")
    deepkern.save({"w": np.full(2, 3.0)}, long)
    np.testing.assert_array_equal(deepkern.load(long)["w"], np.full(2, 3.0))


def test_save_takes_tensors_that_require_grad(tmp_path):
    """torch.save stores a parameter's values: so does save (the tensor is not changed or detached)."""
    layer = deepkern.nn.Linear(3, 2)
    deepkern.save({"w": layer.weight, "params": dict(layer.named_parameters())}, tmp_path / "p.safetensors")
    loaded = deepkern.load(tmp_path / "p.safetensors")
    np.testing.assert_array_equal(loaded["w"], layer.weight.detach().numpy())
    np.testing.assert_array_equal(loaded["params"]["bias"], layer.bias.detach().numpy())
    assert layer.weight.requires_grad


def test_load_state_dict_not_strict_like_torch():
    """strict=False loads what the state dict has and returns the keys either side lacks, as a named
    tuple; a shape mismatch still raises, before anything is written."""
    model = deepkern.nn.Linear(3, 2)
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    bias = model.bias.detach().numpy().copy()
    result = model.load_state_dict({"weight": weight, "extra": np.zeros(1)}, strict=False)
    assert result == (["bias"], ["extra"])
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(model.weight.detach().numpy(), weight)
    np.testing.assert_array_equal(model.bias.detach().numpy(), bias)
    with pytest.raises(ValueError, match="missing keys: bias"):
        model.load_state_dict({"weight": weight})
    with pytest.raises(ValueError, match=r"weight: expected shape \(2, 3\)"):
        model.load_state_dict({"weight": weight.T, "bias": bias + 1}, strict=False)
    np.testing.assert_array_equal(model.bias.detach().numpy(), bias)


def test_load_state_dict_without_num_batches_tracked_keeps_the_count_like_torch():
    """A checkpoint lacking BatchNorm's num_batches_tracked (older PyTorch versions wrote none) loads
    strictly, in a nested model too: the other entries are copied, the count keeps its value and is
    not reported missing; a missing running_mean still is."""
    model = deepkern.nn.Sequential(deepkern.nn.Conv2d(1, 2, 1), deepkern.nn.BatchNorm2d(2))
    model.train()(deepkern.randn(4, 1, 3, 3))
    state = {k: v.numpy().copy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["1.running_mean"] += 1.0
    assert model.load_state_dict(state) == ([], [])
    np.testing.assert_array_equal(model[1].running_mean.numpy(), state["1.running_mean"])
    assert int(model[1].num_batches_tracked.item()) == 1
    del state["1.running_mean"]
    with pytest.raises(ValueError, match="missing keys: 1.running_mean"):
        model.load_state_dict(state)


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
