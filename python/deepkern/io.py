"""Checkpoints: :func:`save` and :func:`load` in the safetensors format (never pickle), and
:func:`check_state_dict`, which says why a state dict does not fit a model.

A checkpoint is a dict, possibly nested (str or int keys), whose leaves are arrays (NumPy arrays,
or objects with a ``.numpy()`` method such as deepkern Tensors) or JSON values (None, bool, int,
float, str, and lists and tuples of leaves), e.g. a model's state dict or an optimizer's.

File layout: every array is one safetensors tensor, named by its path of keys joined with '.'
("layer.weight", "state.0.exp_avg"), so other safetensors readers see the usual names; a name
that two paths would share gets a '#n' suffix. The tree itself (dict keys with their types, lists,
tuples, JSON values and the name of each array) is JSON in the header's metadata under
``deepkern.tree``, beside ``deepkern.format`` = :data:`FORMAT` and ``deepkern.version`` =
:data:`VERSION`, so nested dicts and dotted names never collide and int keys stay ints. The CRC-32
of every tensor's bytes is JSON under ``deepkern.crc32`` (name -> checksum), checked by
:func:`load`, so damaged data is an error instead of silently wrong weights; any safetensors reader
still reads the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib

import numpy as np
import safetensors
import safetensors.numpy

__all__ = ["save", "load", "check_state_dict", "FORMAT", "VERSION"]

#: Value of the ``deepkern.format`` metadata entry.
FORMAT = "deepkern.checkpoint"
#: Version of the tree encoding; :func:`load` rejects other versions.
VERSION = 1

_JSON_SCALARS = (type(None), bool, int, float, str)
# The NumPy dtypes safetensors stores.
_DTYPES = {
    np.dtype(t)
    for t in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
    )
}


def save(obj: dict, path) -> None:
    """Write ``obj`` (a dict, see the module docstring) to ``path`` in the safetensors format.

    The file is written to a temporary file in the same directory, flushed to disk and renamed
    onto ``path``, so ``path`` holds either the old file or the complete new one, never part of
    one; on any error the temporary file is removed and an existing ``path`` is left untouched.
    Temporaries that an earlier save of ``path`` left behind when its process was killed (each
    names the process that wrote it) are removed first.
    Non-contiguous and non-native-byte-order arrays are stored as their values (C order).
    Raises TypeError naming the key path of a leaf that cannot be stored.
    """
    if not isinstance(obj, dict):
        raise TypeError(f"save: obj must be a dict (e.g. a state dict), got {type(obj).__name__}")
    path = os.fspath(path)
    tensors: dict = {}
    tree = _encode(obj, (), tensors)
    metadata = {
        "deepkern.format": FORMAT,
        "deepkern.version": str(VERSION),
        "deepkern.tree": json.dumps(tree),
        "deepkern.crc32": json.dumps({name: _crc32(array) for name, array in tensors.items()}),
    }
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(directory, os.path.basename(path))
    fd, tmp = tempfile.mkstemp(
        prefix=f"{_temporary_prefix(os.path.basename(path))}{os.getpid()}.", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(safetensors.numpy.save(tensors, metadata=metadata))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_directory(directory)


def load(path) -> dict:
    """Read a checkpoint written by :func:`save`: the same structure, with every array a
    writeable, C-contiguous NumPy array (0-d for a NumPy scalar that was saved), tuples as tuples
    and int keys as ints. A safetensors file written by another tool loads as a flat dict of its
    tensors by name.

    Only JSON and raw array bytes are read; nothing is executed. A file that is missing raises
    FileNotFoundError; one that is not a safetensors file, is truncated, has a bad header, a
    deepkern tree of another version or a tensor whose bytes fail their checksum raises ValueError
    naming ``path`` (and the tensor).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint file at {path!r}")
    try:
        with safetensors.safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {name: np.require(f.get_tensor(name), requirements=("C", "W")) for name in f.keys()}
    except safetensors.SafetensorError as e:
        raise ValueError(f"load: {path!r} is not a valid safetensors file ({e})") from None
    if metadata.get("deepkern.format") != FORMAT:
        return tensors
    if metadata.get("deepkern.version") != str(VERSION):
        raise ValueError(
            f"load: {path!r} has deepkern checkpoint version {metadata.get('deepkern.version')!r}; "
            f"this deepkern reads version {VERSION}"
        )
    _verify_checksums(path, metadata, tensors)
    try:
        tree = json.loads(metadata["deepkern.tree"])
        if not (isinstance(tree, dict) and "dict" in tree):
            raise ValueError("the root is not a dict")
        return _decode(tree, tensors)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ValueError(f"load: {path!r} has a damaged deepkern tree in its metadata ({e!r})") from None


def _temporary_prefix(name: str) -> str:
    """Temporaries of a save of ``name`` are ``.<name>.<pid>.<random>.tmp`` beside it."""
    return f".{name}."


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Removes the temporaries of saves of ``name`` whose process no longer runs (killed mid-write);
    a save in progress in another process keeps its own."""
    prefix = _temporary_prefix(name)
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        pid_text = entry[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or _process_runs(int(pid_text)):
            continue
        try:
            os.unlink(os.path.join(directory, entry))
        except OSError:
            pass  # removed meanwhile, or not ours to remove


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _crc32(array: np.ndarray) -> int:
    """CRC-32 of a C-contiguous array's bytes, without copying them."""
    return zlib.crc32(array.reshape(-1).view(np.uint8)) if array.size else 0


def _verify_checksums(path: str, metadata: dict, tensors: dict) -> None:
    """Every tensor listed under ``deepkern.crc32`` must have its bytes' checksum (files written
    before checksums were stored have none to check)."""
    if "deepkern.crc32" not in metadata:
        return
    try:
        checksums = json.loads(metadata["deepkern.crc32"])
        expected = {str(name): int(value) for name, value in checksums.items()}
    except (TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"load: {path!r} has damaged checksums in its metadata ({e!r})") from None
    for name, array in tensors.items():
        if name not in expected:
            raise ValueError(
                f"load: {path!r}: tensor {name!r} has no checksum; the file was changed after it was saved"
            )
        if _crc32(array) != expected[name]:
            raise ValueError(
                f"load: {path!r}: the data of tensor {name!r} (shape {array.shape}, {array.dtype}) fails its "
                "checksum: the file is damaged"
            )


def check_state_dict(
    expected: dict, loaded: dict, strict: bool = True, where: str = "model", casting: str = "no"
) -> None:
    """Check that ``loaded`` (name -> array) fits ``expected`` (name -> (shape, dtype)).

    Raises one ValueError, starting with ``where``, that lists the missing keys, the unexpected
    keys (only when ``strict``) and every name whose shape differs or whose dtype cannot be cast
    to the expected one under NumPy's ``casting`` rule ("no": the same dtype; "same_kind": e.g.
    float64 into float32, as ``load_state_dict`` copies), with the expected and the found shape
    and dtype. Returns None when everything fits.
    """
    missing = [name for name in expected if name not in loaded]
    unexpected = [name for name in loaded if name not in expected] if strict else []
    mismatched = []
    for name, (shape, dtype) in expected.items():
        if name in loaded:
            found = loaded[name]
            want = (tuple(shape), np.dtype(dtype))
            got = (tuple(found.shape), np.dtype(found.dtype))
            if want[0] != got[0] or not np.can_cast(got[1], want[1], casting):
                mismatched.append(f"  {name}: expected shape {want[0]} {want[1]}, found shape {got[0]} {got[1]}")
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{where}: the state dict does not fit"]
    if missing:
        lines.append(f"  missing keys: {', '.join(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys: {', '.join(unexpected)}")
    if mismatched:
        lines.append("  shape or dtype mismatches:")
        lines.extend(mismatched)
    raise ValueError("\n".join(lines))


def _encode(node, keys: tuple, tensors: dict):
    """The JSON tree of ``node`` at key path ``keys``; its arrays are added to ``tensors``."""
    if isinstance(node, dict):
        items = []
        for key, value in node.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {key!r} at {_where(keys)}")
            items.append([key, _encode(value, keys + (key,), tensors)])
        return {"dict": items}
    if isinstance(node, (list, tuple)):
        kind = "list" if isinstance(node, list) else "tuple"
        return {kind: [_encode(value, keys + (i,), tensors) for i, value in enumerate(node)]}
    if not isinstance(node, (np.ndarray, np.generic)) and hasattr(node, "numpy"):
        node = (node.cpu() if hasattr(node, "cpu") else node).numpy()  # a tensor, from any device
    if not isinstance(node, (np.ndarray, np.generic)):
        if isinstance(node, _JSON_SCALARS):
            return {"value": node}
        raise TypeError(
            f"save: cannot store a {type(node).__name__} at {_where(keys)}; leaves must be arrays, "
            "objects with .numpy(), None, bool, int, float, str, or lists/tuples of those"
        )
    array = np.asarray(node)
    if array.dtype not in _DTYPES and array.dtype.newbyteorder("=") not in _DTYPES:
        raise TypeError(
            f"save: the array at {_where(keys)} has dtype {array.dtype}, which safetensors "
            f"cannot store (bool, int8..int64, uint8..uint64, float16/32/64)"
        )
    name = ".".join(map(str, keys))
    unique, n = name, 1
    while unique in tensors:
        unique, n = f"{name}#{n}", n + 1
    tensors[unique] = np.asarray(array, dtype=array.dtype.newbyteorder("="), order="C")
    return {"array": unique}


def _decode(node: dict, tensors: dict):
    """The value the JSON tree ``node`` stands for, its arrays taken from ``tensors``."""
    if not (isinstance(node, dict) and len(node) == 1):
        raise ValueError(f"a node must be a dict of one entry, got {node!r:.80}")
    ((kind, value),) = node.items()
    if kind == "dict":
        return {_key(key): _decode(child, tensors) for key, child in value}
    if kind == "list":
        return [_decode(child, tensors) for child in value]
    if kind == "tuple":
        return tuple(_decode(child, tensors) for child in value)
    if kind == "array":
        return tensors[value]
    if kind == "value" and isinstance(value, _JSON_SCALARS):
        return value
    raise ValueError(f"unknown node {node!r}")


def _key(key):
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise ValueError(f"a dict key must be a str or an int, got {key!r}")
    return key


def _where(keys: tuple) -> str:
    return "key path " + "".join(f"[{k!r}]" for k in keys) if keys else "the top level"


def _new_file_mode(path: str) -> int:
    """The permission bits of the existing file at ``path``, else those open() would give."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable where the system allows it (POSIX). Best effort: the
    new file is already in place, so a file system that cannot sync a directory is not an error."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
