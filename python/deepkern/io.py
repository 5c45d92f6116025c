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
of every tensor's bytes is JSON under ``deepkern.crc32`` (name -> checksum), and the CRC-32 of the
header's content (every other metadata entry, and each tensor's dtype and shape) is under
``deepkern.header_crc32``; :func:`load` checks both, so damaged data or a damaged header is an error
instead of silently wrong weights; any safetensors reader still reads the file.

:func:`load` reads the file itself (the safetensors package only writes): it checks the whole
layout first (header length, header JSON, each tensor's dtype, shape and byte range, which must tile
the data section exactly), so whatever a file holds, it either returns the saved object or raises
:class:`CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import zlib

import numpy as np
import safetensors.numpy

from .ops._validate import bfloat16_dtype

__all__ = ["save", "load", "check_state_dict", "CheckpointError", "FORMAT", "VERSION", "MAX_DEPTH", "MAX_HEADER_BYTES"]

#: Value of the ``deepkern.format`` metadata entry.
FORMAT = "deepkern.checkpoint"
#: Version of the tree encoding; :func:`load` rejects other versions.
VERSION = 1

_JSON_SCALARS = (type(None), bool, int, float, str)
# The safetensors dtype names that deepkern stores and loads, and the names of their NumPy dtypes
# (the file is little-endian; loaded arrays are in native byte order). By name, so that bfloat16
# (ml_dtypes) is imported only to load a BF16 tensor.
_DTYPE_NAME_OF_NAME = {
    "BOOL": "bool",
    "I8": "int8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "U8": "uint8",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
}
_NAME_OF_DTYPE_NAME = {dtype: name for name, dtype in _DTYPE_NAME_OF_NAME.items()}


def _dtype_of_name(name: str) -> np.dtype:
    """The NumPy dtype of safetensors dtype ``name`` (one of ``_DTYPE_NAME_OF_NAME``)."""
    dtype_name = _DTYPE_NAME_OF_NAME[name]
    return bfloat16_dtype() if dtype_name == "bfloat16" else np.dtype(dtype_name)


_HEADER_CRC = "deepkern.header_crc32"
#: Largest safetensors header :func:`load` reads (the safetensors package's own limit).
MAX_HEADER_BYTES = 100_000_000
#: Most containers (dicts, lists, tuples) nested in one another that :func:`save` writes and
#: :func:`load` reads, the top-level dict included.
MAX_DEPTH = 100
# Most dimensions of a loaded tensor (NumPy's limit before 2.0).
_MAX_NDIM = 32


class CheckpointError(ValueError):
    """A file that :func:`load` cannot read as a checkpoint: not a safetensors file, truncated,
    damaged, or holding what deepkern does not load (e.g. float8 tensors). The message names the
    file and what is wrong."""


def save(obj: dict, path) -> None:
    """Write ``obj`` (a dict, see the module docstring) to ``path`` in the safetensors format.

    The file is written to a temporary file in the same directory, flushed to disk and renamed
    onto ``path``, so ``path`` holds either the old file or the complete new one, never part of
    one; on any error the temporary file is removed and an existing ``path`` is left untouched.
    Temporaries that an earlier save of ``path`` left behind when its process was killed (each
    names the process that wrote it) are removed first. A symbolic link at ``path`` stays one: the
    file it points to is replaced.
    Non-contiguous and non-native-byte-order arrays are stored as their values (C order). Each
    leaf is stored on its own: two leaves sharing memory (a tensor saved twice, a view beside its
    base) load as independent arrays (safetensors has no aliasing; ``torch.save`` keeps it).
    Raises TypeError naming the key path of a leaf that cannot be stored, ValueError naming the
    key path where containers nest deeper than :data:`MAX_DEPTH`.
    """
    if not isinstance(obj, dict):
        raise TypeError(f"save: obj must be a dict (e.g. a state dict), got {type(obj).__name__}")
    path = os.path.realpath(os.fspath(path))  # a symbolic link: its target is written, the link stays
    tensors: dict = {}
    tree = _encode(obj, (), tensors)
    metadata = {
        "deepkern.format": FORMAT,
        "deepkern.version": str(VERSION),
        "deepkern.tree": json.dumps(tree),
        "deepkern.crc32": json.dumps({name: _crc32(array) for name, array in tensors.items()}),
    }
    table = {name: (_NAME_OF_DTYPE_NAME[array.dtype.name], array.shape) for name, array in tensors.items()}
    metadata[_HEADER_CRC] = str(_header_crc32(metadata, table))
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
        with contextlib.suppress(FileNotFoundError):  # an interrupt after the rename: nothing left to remove
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def load(path, map_location=None) -> dict:
    """Read a checkpoint written by :func:`save`: the same structure, with every array a
    writeable, C-contiguous NumPy array (0-d for a NumPy scalar that was saved), tuples as tuples
    and int keys as ints. A safetensors file written by another tool loads as a flat dict of its
    tensors by name. ``map_location`` (a device, its name, or a dict mapping 'cpu' to one, as in
    PyTorch) puts the arrays on that device; None and 'cpu' leave them in host memory.

    Only JSON and raw array bytes are read; nothing is executed, and no array is allocated beyond
    the bytes the file holds. A file that is missing raises FileNotFoundError. Any other file that
    this does not return raises :class:`CheckpointError` (a ValueError) naming ``path`` and what is
    wrong: not a safetensors file, truncated or with bytes appended, a bad header (its JSON, or a
    tensor's dtype, shape or byte range), a dtype deepkern does not load (e.g. F8_E4M3), a deepkern
    tree of another version or nested deeper than :data:`MAX_DEPTH`, or a header or tensor whose
    bytes fail their checksum.
    """
    device = _map_location(map_location)
    if device is not None:
        from .backends import to_device

        return _map_arrays(load(path), lambda a: to_device(a, device))
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint file at {path!r}")
    with open(path, "rb") as f:
        table, metadata, data_start = _read_header(f, path)
        deepkern_file = _is_deepkern_checkpoint(path, metadata)
        if deepkern_file:
            _check_header_checksum(path, metadata, table)
        tensors = {name: _read_tensor(f, path, name, *entry, data_start) for name, entry in table.items()}
    if not deepkern_file:
        return tensors
    _verify_checksums(path, metadata, tensors)
    tree = _parse_json(path, metadata["deepkern.tree"], " has a damaged deepkern tree in its metadata: it {problem}")
    try:
        if not (isinstance(tree, dict) and "dict" in tree):
            raise ValueError("the root is not a dict")
        return _decode(tree, tensors, 0)
    except ValueError as e:
        raise CheckpointError(f"load: {path!r} has a damaged deepkern tree in its metadata ({e})") from None


def _map_location(map_location):
    """The device that :func:`load`'s ``map_location`` names, or None for host memory."""
    from .backends import Device

    target = map_location.get("cpu", "cpu") if isinstance(map_location, dict) else map_location
    if target is None:
        return None
    if hasattr(target, "type") and not isinstance(target, Device):  # e.g. a torch.device
        target = str(target)
    if not isinstance(target, (str, Device)):
        raise TypeError(
            f"load: map_location must be a device, a device name or a dict {{'cpu': device}}, got {map_location!r}"
        )
    device = Device(target)
    return None if device.type == "cpu" else device


def _map_arrays(obj, fn):
    """``obj`` (a loaded checkpoint: dicts, lists, tuples, arrays, JSON values) with ``fn`` applied
    to each array."""
    if isinstance(obj, dict):
        return {k: _map_arrays(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_arrays(v, fn) for v in obj)
    return fn(obj) if isinstance(obj, np.ndarray) else obj


def _fail(path: str, what: str):
    """Raises the error of every file that :func:`load` refuses: ``path`` and ``what``."""
    raise CheckpointError(f"load: {path!r}{what}")


def _read_header(f, path: str) -> tuple:
    """Reads and checks a safetensors header: returns ``(table, metadata, data_start)``, table
    mapping each tensor name to ``(dtype, shape, start, end)`` (byte offsets in the data section,
    which starts at byte ``data_start`` and which the tensors tile exactly)."""
    size = os.fstat(f.fileno()).st_size

    if size < 8:
        _invalid(path, f"it has {size} bytes, fewer than the 8 that give the header's length")
    header_size = int.from_bytes(f.read(8), "little")
    if header_size > size - 8:
        _invalid(path, f"its first 8 bytes give a header of {header_size} bytes, but only {size - 8} follow")
    if header_size > MAX_HEADER_BYTES:
        _invalid(path, f"its header has {header_size} bytes, more than the {MAX_HEADER_BYTES} allowed")
    raw = f.read(header_size)
    if len(raw) != header_size:
        _invalid(path, f"the file ended after {len(raw)} of the header's {header_size} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        _invalid(path, f"its header is not UTF-8 ({e})")
    header = _parse_json(path, text, " is not a valid safetensors file: its header {problem}")
    if not isinstance(header, dict):
        _invalid(path, f"its header is {_brief(header)}, not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        _invalid(path, "its __metadata__ is not an object of strings")
    data_size = size - 8 - header_size
    table = {name: _tensor_entry(path, name, entry, data_size) for name, entry in header.items()}
    position = 0  # the tensors, by offset, must tile the data section: no overlap, no gap
    for start, end, name in sorted((entry[2], entry[3], name) for name, entry in table.items()):
        if start < position:
            _invalid(
                path, f"tensor {name!r} (bytes {start}..{end}) overlaps the tensor before it (ending at {position})"
            )
        if start > position:
            _invalid(path, f"bytes {position}..{start} of the data section belong to no tensor")
        position = end
    if position != data_size:
        _invalid(path, f"{data_size - position} bytes follow the last tensor's data")
    return table, metadata, 8 + header_size


def _invalid(path: str, what: str):
    """Raises the error of a file that is not a valid safetensors file."""
    _fail(path, f" is not a valid safetensors file: {what}")


def _tensor_entry(path: str, name: str, entry, data_size: int) -> tuple:
    """``(dtype name, shape, start, end)`` of tensor ``name``'s header ``entry``, checked: a dtype that
    deepkern loads, a shape whose size in bytes is the span of its offsets, offsets inside the data
    section (``data_size`` bytes)."""

    if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}):
        _invalid(path, f"the entry of tensor {name!r} is {_brief(entry)}, not {{dtype, shape, data_offsets}}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str):
        _invalid(path, f"tensor {name!r} has dtype {_brief(dtype)}, not a str")
    if dtype not in _DTYPE_NAME_OF_NAME:  # e.g. F8_E4M3 or C64, which other libraries store
        _fail(
            path,
            f": tensor {name!r} has dtype {_brief(dtype)}, which deepkern does not load (it loads "
            f"{', '.join(_DTYPE_NAME_OF_NAME)})",
        )
    if not (isinstance(shape, list) and len(shape) <= _MAX_NDIM and all(_is_size(n) for n in shape)):
        _invalid(
            path, f"tensor {name!r} has shape {_brief(shape)}, not a list of at most {_MAX_NDIM} sizes (ints >= 0)"
        )
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_size(n) for n in offsets)):
        _invalid(path, f"tensor {name!r} has data_offsets {_brief(offsets)}, not [start, end] (ints >= 0)")
    start, end = offsets
    if not start <= end <= data_size:
        _invalid(
            path, f"tensor {name!r} has data_offsets [{start}, {end}], outside the data section's {data_size} bytes"
        )
    extent = math.prod(n for n in shape if n) * _dtype_of_name(dtype).itemsize
    nbytes = 0 if 0 in shape else extent
    if nbytes != end - start:
        _invalid(
            path,
            f"tensor {name!r} of shape {tuple(shape)} and dtype {dtype} has {nbytes} bytes, but its "
            f"data_offsets [{start}, {end}] span {end - start}",
        )
    if extent >= 2**63:  # NumPy's limit, which holds for empty arrays too
        _invalid(path, f"tensor {name!r} has shape {tuple(shape)}, too large for a NumPy array of {dtype}")
    return dtype, tuple(shape), start, end


def _is_size(n) -> bool:
    """A JSON int that NumPy takes as a size or offset."""
    return isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63


def _read_tensor(f, path: str, name: str, dtype: str, shape, start: int, end: int, data_start: int) -> np.ndarray:
    """Tensor ``name``'s bytes from the open file ``f``, read straight into a new array."""
    array = np.empty(shape, _dtype_of_name(dtype))
    buffer = memoryview(array.reshape(-1).view(np.uint8))
    f.seek(data_start + start)
    done = 0
    while done < end - start:
        n = f.readinto(buffer[done:])
        if not n:
            _fail(path, f": the file ended inside tensor {name!r} (it was truncated while being read)")
        done += n
    if sys.byteorder == "big":
        array.byteswap(inplace=True)
    return array


def _parse_json(path: str, text: str, message: str):
    """The value of the JSON ``text``, with no limit of Python's reachable: text nested too deeply
    for the parser, or too large for memory, is an error like a syntax error (``message``, its
    ``{problem}`` filled in)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError, MemoryError) as e:
        problem = "nests too deeply" if isinstance(e, RecursionError) else f"is not JSON ({type(e).__name__}: {e})"
        _fail(path, message.format(problem=problem))


def _brief(value) -> str:
    """A short description of a JSON value for a message (no repr of a whole, maybe deep, container)."""
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_deepkern_checkpoint(path: str, metadata: dict) -> bool:
    """Whether the file is a deepkern checkpoint of this version (else another tool's safetensors
    file); a file with deepkern metadata but another format or version is an error."""
    if metadata.get("deepkern.format") != FORMAT:
        ours = sorted(key for key in metadata if key.startswith("deepkern."))
        if ours:
            _fail(
                path,
                f" has deepkern metadata ({', '.join(ours)}) but its deepkern.format is "
                f"{_brief(metadata.get('deepkern.format'))}, not {FORMAT!r}: the header is damaged",
            )
        return False
    if metadata.get("deepkern.version") != str(VERSION):
        _fail(
            path,
            f" has deepkern checkpoint version {_brief(metadata.get('deepkern.version'))}; "
            f"this deepkern reads version {VERSION}",
        )
    if "deepkern.tree" not in metadata:
        _fail(path, " has no deepkern tree in its metadata: the header is damaged")
    return True


def _header_crc32(metadata: dict, table: dict) -> int:
    """CRC-32 of what a header says: the metadata entries but this checksum, and each tensor's
    dtype and shape (``table``: name -> (dtype name, shape)). The tensors' offsets need none: the
    tensors must tile the data section, and their data has checksums of its own."""
    content = {
        "metadata": {key: value for key, value in metadata.items() if key != _HEADER_CRC},
        "tensors": {name: [dtype, list(shape)] for name, (dtype, shape) in table.items()},
    }
    return zlib.crc32(json.dumps(content, sort_keys=True).encode())


def _check_header_checksum(path: str, metadata: dict, table: dict) -> None:
    """The header must match its checksum (files saved before the header had one have none)."""
    if _HEADER_CRC not in metadata:
        return
    names = {name: (dtype, shape) for name, (dtype, shape, _, _) in table.items()}
    if metadata[_HEADER_CRC] != str(_header_crc32(metadata, names)):
        _fail(
            path,
            ": its header (the tensors' names, dtypes and shapes, or the metadata) fails its checksum: "
            "the file is damaged",
        )


def _temporary_prefix(name: str) -> str:
    """Temporaries of a save of ``name`` are ``.<name>.<pid>.<random>.tmp`` beside it, the name cut to
    its first 200 characters (so that a name near the file system's 255 has a temporary too)."""
    return f".{name[:200]}."


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
    expected = _parse_json(path, metadata["deepkern.crc32"], " has damaged checksums in its metadata: they {problem}")
    if not (isinstance(expected, dict) and all(_is_size(v) for v in expected.values())):
        _fail(path, f" has damaged checksums in its metadata ({_brief(expected)}, not an object of ints)")
    for name, array in tensors.items():
        if name not in expected:
            _fail(path, f": tensor {name!r} has no checksum; the file was changed after it was saved")
        if _crc32(array) != expected[name]:
            _fail(
                path,
                f": the data of tensor {name!r} (shape {array.shape}, {array.dtype}) fails its checksum: the file "
                "is damaged",
            )


def check_state_dict(
    expected: dict, loaded: dict, strict: bool = True, where: str = "model", casting: str = "no"
) -> None:
    """Check that ``loaded`` (name -> array) fits ``expected`` (name -> (shape, dtype)).

    Raises one ValueError, starting with ``where``, that lists the missing and the unexpected keys
    (only when ``strict``, as PyTorch's load_state_dict) and every name whose shape differs or whose
    dtype cannot be cast to the expected one under NumPy's ``casting`` rule ("no": the same dtype; "same_kind": e.g.
    float64 into float32, as ``load_state_dict`` copies), with the expected and the found shape
    and dtype. Returns None when everything fits.
    """
    missing = [name for name in expected if name not in loaded] if strict else []
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
    if isinstance(node, (dict, list, tuple)) and len(keys) >= MAX_DEPTH:
        raise ValueError(
            f"save: containers nest deeper than {MAX_DEPTH} at {_where(keys[:8])}...; load reads at most {MAX_DEPTH}"
        )
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
        node = node.detach() if hasattr(node, "detach") else node  # a parameter: its values
        node = node.cpu() if hasattr(node, "cpu") else node  # a tensor, from any device
        node = node._host_array() if hasattr(node, "_host_array") else node.numpy()  # read, not handed out
    if not isinstance(node, (np.ndarray, np.generic)):
        if isinstance(node, _JSON_SCALARS):
            return {"value": node}
        raise TypeError(
            f"save: cannot store a {type(node).__name__} at {_where(keys)}; leaves must be arrays, "
            "objects with .numpy(), None, bool, int, float, str, or lists/tuples of those"
        )
    array = np.asarray(node)
    if array.dtype.name not in _NAME_OF_DTYPE_NAME:  # any byte order
        raise TypeError(
            f"save: the array at {_where(keys)} has dtype {array.dtype}, which safetensors "
            f"cannot store (bool, int8..int64, uint8..uint64, float16/32/64, bfloat16)"
        )
    name = ".".join(map(str, keys))
    unique, n = name, 1
    while unique in tensors or unique == "__metadata__":  # the header's own entry
        unique, n = f"{name}#{n}", n + 1
    tensors[unique] = np.asarray(array, dtype=array.dtype.newbyteorder("="), order="C")
    return {"array": unique}


def _decode(node, tensors: dict, depth: int):
    """The value the JSON tree ``node`` (nested in ``depth`` containers) stands for, its arrays
    taken from ``tensors``. Raises ValueError saying what is wrong with the tree."""
    if not (isinstance(node, dict) and len(node) == 1):
        raise ValueError(f"a node must be an object of one entry, got {_brief(node)}")
    ((kind, value),) = node.items()
    if kind in ("dict", "list", "tuple"):
        if not isinstance(value, list):
            raise ValueError(f"a {kind} node holds {_brief(value)}, not a list")
        if depth >= MAX_DEPTH:
            raise ValueError(f"its containers nest deeper than {MAX_DEPTH}")
    if kind == "dict":
        if not all(isinstance(item, list) and len(item) == 2 for item in value):
            raise ValueError("a dict node's items must be [key, node] pairs")
        return {_key(key): _decode(child, tensors, depth + 1) for key, child in value}
    if kind in ("list", "tuple"):
        items = [_decode(child, tensors, depth + 1) for child in value]
        return items if kind == "list" else tuple(items)
    if kind == "array" and isinstance(value, str):
        if value not in tensors:
            raise ValueError(f"it refers to tensor {value!r}, which the file does not hold")
        return tensors[value]
    if kind == "value" and isinstance(value, _JSON_SCALARS):
        return value
    raise ValueError(f"unknown node {{{kind!r}: {_brief(value)}}}")


def _key(key):
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise ValueError(f"a dict key must be a str or an int, got {_brief(key)}")
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
