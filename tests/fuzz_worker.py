"""The fuzz suite's worker: runs hypothesis examples of deepkern's public ops in its own process.

``python tests/fuzz_worker.py --log FILE --examples N OP...`` runs N examples of each named op
(a function of ``deepkern.ops`` or of ``deepkern._C``, see REGISTRY) and writes to FILE, line by
line and flushed before every call, ``START op``, ``INPUT op <description>``, then ``PASS op`` or
``FAIL op <message>``; test_fuzz_ops.py reads it, so a crash or a hang of this process names the op
and the last input it was given.

The property, for every example: a valid call (random sizes 0, 1, odd and larger, float32 or
float64) is changed by at most one mutation (a layout, dtype, aliasing, read-only, list or scalar
in place of an array, an absurd integer or number). Each mutation says whether the op must accept
it, must refuse it, or may do either. Accepted: the results equal the float64 reference of
tests/reference.py (tolerance by the result's dtype) and no input array changed. Refused: a
ValueError, TypeError, RuntimeError or NotImplementedError whose message names an argument, and no
array of the call changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import sys
import traceback

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import deepkern  # noqa: E402
from deepkern import _C, ops  # noqa: E402
from deepkern.backends.cpu import CPUBackend  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import reference as ref  # noqa: E402
import reference_nn as ref_nn  # noqa: E402

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
BF16 = np.dtype(deepkern.bfloat16)
REFUSED_ERRORS = (ValueError, TypeError, RuntimeError, NotImplementedError, MemoryError)
#: A MemoryError is a refusal only as the backend's allocation reports it (the shape and bytes asked).
ALLOCATION_FAILURE = "cannot allocate an array of shape"
#: Dtypes no kernel takes: every float array given one of these must be refused.
BAD_DTYPES = (np.float16, np.int32, np.int64, np.bool_, np.complex64)
#: Integer arguments no op can use (and 0, which some can).
ABSURD_INTS = (-1, 0, -(2**31), 2**31, 2**31 - 1, 2**62, 2**63, -(2**63), 2**64, 10**30)
#: Numbers and objects that are not a sensible float hyperparameter.
ABSURD_NUMBERS = (float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e308, True, "0.1", None, 1j, [0.1])
ACCEPT, REFUSE, EITHER = "accept", "refuse", "either"
TOLERANCE = {F32: 2e-4, F64: 1e-9, BF16: 0.0}  # bfloat16: only _C.cast's exact conversions

# ---- the call under test -----------------------------------------------------------------------


@dataclasses.dataclass
class Call:
    """One call of an op: its arguments (positional first), the role of each array in them, the
    float64 reference of what it must produce, and what it produced."""

    fn: object
    params: dict  # name -> value, in signature order
    positional: int  # how many of params go positionally
    roles: dict  # slot (a name, or (name, index) inside a list/tuple) -> "in" | "out" | "inplace" | "index" | "cache"
    reference: object  # params (copies taken before the call) -> {key: float64 array}
    actual: object  # (returned value, params) -> {key: array}
    ints: tuple = ()  # names of integer arguments (or of tuples of them: (name, index))
    numbers: tuple = ()  # names of float arguments
    optional: tuple = ()  # array slots that may be None
    mixed_dtypes: str = REFUSE  # what a float32/float64 mix gets
    compare: bool = True  # False: an accepted call is only checked for not crashing
    mutation: str = "none"
    expected: str = ""  # set by the builder: the outcome of an unmutated call (no mutation is added)
    strict: bool = False  # a _C binding: arrays exactly as the kernel takes them, or refused
    any_strides: tuple = ()  # arrays a strict call takes with any strides
    frozen: tuple = ()  # inputs whose values must not change (a cache was computed from them)

    def invoke(self):
        names = list(self.params)
        args = [self.params[n] for n in names[: self.positional]]
        kwargs = {n: self.params[n] for n in names[self.positional :]}
        return self.fn(*args, **kwargs)


def get(params: dict, slot):
    if isinstance(slot, tuple):
        return params[slot[0]][slot[1]]
    return params[slot]


def put(params: dict, slot, value) -> None:
    if not isinstance(slot, tuple):
        params[slot] = value
        return
    seq = list(params[slot[0]])
    seq[slot[1]] = value
    old = params[slot[0]]
    params[slot[0]] = old._make(seq) if hasattr(old, "_make") else type(old)(seq)


def describe(value) -> str:
    if isinstance(value, np.ndarray):
        flags = ("C" if value.flags.c_contiguous else "") + ("F" if value.flags.f_contiguous else "")
        flags += "" if value.flags.writeable else " ro"
        flags += "" if value.flags.aligned else " unaligned"
        return f"ndarray{value.shape} {value.dtype.str} strides={value.strides} [{flags}]"
    if isinstance(value, (list, tuple)) and any(isinstance(v, np.ndarray) for v in value):
        inner = ", ".join(describe(v) for v in value)
        return f"{type(value).__name__}[{inner}]"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def describe_call(name: str, call: Call) -> str:
    args = ", ".join(f"{k}={describe(v)}" for k, v in call.params.items())
    return f"{name}({args}) mutation={call.mutation}"


def array_slots(params: dict) -> list:
    slots = []
    for name, value in params.items():
        if isinstance(value, np.ndarray):
            slots.append(name)
        elif isinstance(value, (list, tuple)):
            slots += [(name, i) for i, v in enumerate(value) if isinstance(v, np.ndarray)]
    return slots


def snapshot(params: dict) -> dict:
    """A deep copy: every array copied (values, dtype, shape), containers rebuilt."""

    def copy(v):
        if isinstance(v, np.ndarray):
            return np.array(v, copy=True)
        if isinstance(v, (list, tuple)):
            items = [copy(x) for x in v]
            return v._make(items) if hasattr(v, "_make") else type(v)(items)
        return v

    return {k: copy(v) for k, v in params.items()}


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


# ---- random arrays ------------------------------------------------------------------------------

SIZES = st.sampled_from([0, 1, 1, 2, 3, 3, 5, 7, 7, 16, 33])


def values(data, shape, dtype, special=False) -> np.ndarray:
    """Random values of ``shape`` and ``dtype`` in [-2, 2] (``special``: some NaN, inf, -0, huge, tiny)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    out = rng.uniform(-2.0, 2.0, shape)
    if special and out.size:
        picks = rng.integers(0, out.size, max(1, out.size // 4))
        pool = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e30, -1e30, 1e-40, 30.0, -30.0, -10.0])
        out.flat[picks] = rng.choice(pool, picks.size)
    return out.astype(dtype)


def nan_like(shape, dtype) -> np.ndarray:
    return np.full(shape, np.nan, dtype)


def float_dtype(data):
    return data.draw(st.sampled_from([F32, F64]), label="dtype")


# ---- mutations ------------------------------------------------------------------------------------


def strided_copy(data, arr: np.ndarray) -> np.ndarray:
    """The same values in another layout: a negative / odd-stride view of a larger buffer, or
    Fortran order."""
    if arr.ndim == 0:
        return arr.copy()
    if data.draw(st.booleans(), label="fortran"):
        return np.asfortranarray(arr)
    steps = [data.draw(st.sampled_from([1, 2, -1, -3]), label="step") for _ in range(arr.ndim)]
    big = np.empty([max(1, n * abs(s)) for n, s in zip(arr.shape, steps)], arr.dtype)
    view = big[tuple(slice(None, None, s) for s in steps)]
    view = view[tuple(slice(0, n) for n in arr.shape)]
    view[...] = arr
    return view


def unaligned_copy(arr: np.ndarray) -> np.ndarray:
    raw = np.empty(arr.nbytes + 1, np.uint8)
    view = raw[1:].view(arr.dtype).reshape(arr.shape)
    view[...] = arr
    return view


def broadcast_view(data, arr: np.ndarray):
    """A zero-stride view (other values: one slice repeated along an axis), or None."""
    axes = [a for a, n in enumerate(arr.shape) if n > 1]
    if not axes:
        return None
    axis = data.draw(st.sampled_from(axes), label="axis")
    return np.broadcast_to(np.take(arr, [0], axis=axis), arr.shape)


def shifted_overlap(inp: np.ndarray, shape, dtype):
    """(input with ``inp``'s values, an array of ``shape`` sharing memory with it one element on)."""
    n_in, n_out = inp.size, int(np.prod(shape))
    if inp.dtype != dtype or n_in < 2 or n_out < 1:
        return None
    base = np.zeros(max(n_in, n_out) + 1, dtype)
    new_in = base[:n_in].reshape(inp.shape)
    new_in[...] = inp
    return new_in, base[1 : 1 + n_out].reshape(shape)


def float_count(call: Call) -> int:
    return sum(
        1
        for s in array_slots(call.params)
        if call.roles.get(s) in ("in", "out", "inplace") and get(call.params, s).dtype.kind == "f"
    )


def mutate(data, call: Call) -> str:
    """Applies one random mutation to ``call`` (or none) and returns what the op must do with it."""
    slots = [s for s in array_slots(call.params) if s in call.roles]
    kinds = ["none", "array"] * 2 + (["int"] * 2 if call.ints else []) + (["number"] if call.numbers else [])
    kinds += ["none_optional"] if call.optional else []
    kind = data.draw(st.sampled_from(kinds), label="mutation kind")
    if kind == "none" or (kind == "array" and not slots):
        call.mutation = "none"
        return ACCEPT
    if call.strict and kind in ("int", "number"):
        call.compare = False  # a binding takes the number as it is: the recorded results no longer apply
    if kind == "int":
        target = data.draw(st.sampled_from(call.ints), label="int argument")
        value = data.draw(st.sampled_from(ABSURD_INTS + (True, 1.5, "2", None)), label="int value")
        return _set(call, target, value, f"{target}={value!r}", EITHER)
    if kind == "number":
        target = data.draw(st.sampled_from(call.numbers), label="number argument")
        value = data.draw(st.sampled_from(ABSURD_NUMBERS), label="number value")
        if not (isinstance(value, float) and abs(value) <= 1e6):
            call.compare = False  # inf, NaN, near-overflow: the order of operations decides the result
        return _set(call, target, value, f"{target}={value!r}", EITHER)
    if kind == "none_optional":
        target = data.draw(st.sampled_from(call.optional), label="optional")
        return _set(call, target, None, f"{target}=None", ACCEPT)
    slot = data.draw(st.sampled_from(slots), label="slot")
    return mutate_array(data, call, slot)


def _set(call: Call, slot, value, label: str, outcome: str) -> str:
    put(call.params, slot, value)
    call.mutation = label
    return outcome


def mutate_array(data, call: Call, slot) -> str:
    arr, role = get(call.params, slot), call.roles[slot]
    name = slot[0] if isinstance(slot, tuple) else slot
    choices = ["strided", "readonly", "unaligned", "byteswap", "dtype", "other_float", "list", "scalar", "shape"]
    choices += ["broadcast"] if role != "cache" and name not in call.frozen else []
    choices += ["alias", "shifted"] if role in ("out", "inplace") else []
    how = data.draw(st.sampled_from(choices), label="array mutation")
    label = f"{slot}: {how}"
    written = role in ("out", "inplace")
    # A binding (strict) takes exactly the dtype and a C-contiguous, aligned array; an op converts
    # what it reads, and takes any strides for out=, but updates in place only C-contiguous arrays.
    converts = not call.strict and not written and role != "cache"
    if how == "strided":
        new = strided_copy(data, arr)
        if name in call.any_strides or new.flags.c_contiguous or (role == "out" and not call.strict):
            return _set(call, slot, new, label, ACCEPT)
        return _set(call, slot, new, label, ACCEPT if converts else EITHER if role == "cache" else REFUSE)
    if how == "readonly":
        new = arr.copy()
        new.flags.writeable = False
        return _set(call, slot, new, label, REFUSE if written else ACCEPT)
    if how in ("unaligned", "byteswap"):
        new = unaligned_copy(arr) if how == "unaligned" else arr.astype(arr.dtype.newbyteorder())
        if arr.dtype.itemsize == 1:  # bool masks: one-byte items are always aligned and have no byte order
            return _set(call, slot, new, label + " (one-byte items)", ACCEPT)
        if how == "unaligned" and not arr.size:
            return _set(call, slot, new, label, EITHER)  # no element to misalign
        if converts:
            return _set(call, slot, new, label, ACCEPT)
        return _set(call, slot, new, label, REFUSE if call.strict or role == "inplace" else EITHER)
    if how == "dtype":
        new = arr.astype(data.draw(st.sampled_from(BAD_DTYPES), label="bad dtype"))
        if new.dtype == arr.dtype:
            return _set(call, slot, new, label, ACCEPT)
        if role == "index" and not call.strict:
            return _set(call, slot, new, label, ACCEPT if new.dtype.kind in "iu" else EITHER)
        return _set(call, slot, new, label, REFUSE)
    if how == "other_float":
        if arr.dtype.kind != "f":
            return _set(
                call, slot, arr.astype(np.float64), label, EITHER if role == "index" and not call.strict else REFUSE
            )
        new = arr.astype(F64 if arr.dtype == F32 else F32)
        if not converts:
            return _set(call, slot, new, label, REFUSE)
        outs = [get(call.params, s) for s, role in call.roles.items() if role == "out"]
        mixed = call.mixed_dtypes == ACCEPT and all(o.dtype == F64 for o in outs)  # a mix gives float64
        return _set(call, slot, new, label, ACCEPT if float_count(call) == 1 or mixed else REFUSE)
    if how == "list":
        return _set(call, slot, arr.tolist(), label, EITHER if converts else REFUSE)
    if how == "scalar":
        return _set(call, slot, 0.5, label, EITHER if converts else REFUSE)
    if how == "shape":
        new = arr.reshape(-1)[: arr.size - 1] if arr.size else np.ones(1, arr.dtype)  # one element fewer or more
        return _set(call, slot, new, label, EITHER)
    if how == "broadcast":
        new = broadcast_view(data, arr)
        if new is None:
            return _set(call, slot, arr, label + " (no axis)", ACCEPT)
        if name in call.any_strides and not written:
            call.compare = False  # other values: the recorded results no longer apply
            return _set(call, slot, new, label, EITHER)
        # An empty zero-stride view is contiguous: a binding may take it as it takes any empty input.
        return _set(call, slot, new, label, ACCEPT if converts or (not written and new.flags.c_contiguous) else REFUSE)
    # alias / shifted: the written array shares memory with an input of its shape (or any input).
    slots = array_slots(call.params)
    inputs = [s for s in call.roles if call.roles[s] in ("in", "inplace") and s != slot and s in slots]
    inputs = [s for s in inputs if isinstance(get(call.params, s), np.ndarray)]
    if not inputs:
        return _set(call, slot, arr, label + " (no input)", ACCEPT)
    other = data.draw(st.sampled_from(inputs), label="aliased input")
    inp = get(call.params, other)
    if how == "alias" and inp.shape == arr.shape and inp.dtype == arr.dtype and arr.size:
        return _set(call, slot, inp, f"{slot} is {other}", REFUSE)
    pair = shifted_overlap(inp, arr.shape, arr.dtype)
    if pair is None:
        return _set(call, slot, arr, label + " (no overlap possible)", ACCEPT)
    put(call.params, other, pair[0])
    return _set(call, slot, pair[1], f"{slot} overlaps {other} one element on", REFUSE)


# ---- the property -------------------------------------------------------------------------------


#: The fields of the _C pooling functions' ``shape`` argument, which their errors name.
POOL_SHAPE_FIELDS = set("planes in_h in_w out_h out_w kernel_h kernel_w stride_h stride_w pad_h pad_w".split())
POOL_SHAPE_FIELDS |= {"dilation_h", "dilation_w"}


def argument_names(fn) -> set:
    try:
        names = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a pybind11 function: names from its docstring's signature
        names = set(re.findall(r"(\w+):", (fn.__doc__ or "").split("\n", 1)[0]))
    plurals = {n[:-1] for n in names if n.endswith("s")} | {n + "s" for n in names}
    return names | plurals | {"shape"} | (POOL_SHAPE_FIELDS if "shape" in names else set())


def names_an_argument(message: str, names: set) -> bool:
    words = set(re.findall(r"[A-Za-z_]\w*", message))
    return bool(words & names)


def check_close(got, want, what: str) -> None:
    if want is None:
        assert got is None, f"{what}: expected None, got {describe(got)}"
        return
    got = np.asarray(got) if isinstance(got, np.generic) and not want.ndim else got  # NumPy's 0-d result
    assert isinstance(got, np.ndarray), f"{what}: got {type(got).__name__}, not an ndarray"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if got.dtype.kind in "iub":  # indices, masks: exact
        assert np.array_equal(got, want), f"{what}: integers differ from the reference"
        return
    assert got.dtype in TOLERANCE, f"{what}: dtype {got.dtype}"
    tol = TOLERANCE[got.dtype]
    want = np.asarray(want, np.float64)
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max()) if finite.size else 1.0)
    g = got.astype(np.float64)
    same_special = (np.isnan(g) == np.isnan(want)) & ((g == want) | ~np.isinf(want) | np.isnan(want))
    bad = ~same_special | (np.isfinite(want) & ~(np.abs(g - want) <= tol * (scale + np.abs(want))))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {got.size} elements differ from the float64 reference; "
            f"first at {where}: got {got[where]!r}, expected {want[where]!r}"
        )


#: op -> compiled regex: inputs whose description matches are not run (test_fuzz_ops.EXCLUDED).
EXCLUDED = {}


def run_case(name: str, call: Call, outcome: str, log) -> None:
    """Calls the op as ``call`` says and checks the property (module docstring)."""
    before = snapshot(call.params)
    description = f"{describe_call(name, call)} expect={outcome}"
    if name in EXCLUDED and EXCLUDED[name].search(description):
        return
    log(f"INPUT {name} {description}")
    try:
        result = call.invoke()
    except REFUSED_ERRORS as err:
        message = str(err)
        assert outcome != ACCEPT, f"refused a valid call: {type(err).__name__}: {message}"
        assert not isinstance(err, MemoryError) or message.startswith(ALLOCATION_FAILURE), (
            f"a MemoryError that is not the allocation's report: {message!r}"
        )
        assert isinstance(err, MemoryError) or names_an_argument(message, argument_names(call.fn)), (
            f"the {type(err).__name__} names no argument of {name}: {message!r}"
        )
        for slot in array_slots(before):
            now = get(call.params, slot)
            assert isinstance(now, np.ndarray) and same_values(now, get(before, slot)), (
                f"{slot} was modified by a refused call ({type(err).__name__}: {message})"
            )
        return
    except BaseException as err:
        raise AssertionError(f"raised {type(err).__name__} (not ValueError/TypeError/RuntimeError): {err}") from err
    assert outcome != REFUSE, "accepted a call it must refuse"
    for slot in array_slots(before):
        if call.roles.get(slot) in ("in", "index", "cache"):
            assert same_values(get(call.params, slot), get(before, slot)), f"input {slot} was modified"
    if not call.compare:
        return
    try:
        want = call.reference(before)
    except Exception as err:
        raise AssertionError(f"accepted a call its reference refuses ({type(err).__name__}: {err})") from err
    got = call.actual(result, call.params)
    for key, expected in want.items():
        check_close(got[key], expected, f"{name} result {key}")


def run_op(name: str, examples: int, log) -> None:
    builder = REGISTRY[name]

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: the failure as found
    )
    @given(st.data())
    def prop(data):
        log(f"INPUT {name} (building an example: the op's own calls of deepkern and the references)")
        call = builder(data)
        if call.mutation == "no kernel call":
            return
        outcome = call.expected or mutate(data, call)
        run_case(name, call, outcome, log)

    prop()


# ---- ops: activations -----------------------------------------------------------------------------


def _shape(data, max_ndim=4, max_elements=4096):
    ndim = data.draw(st.integers(0, max_ndim), label="ndim")
    shape = tuple(data.draw(SIZES, label="size") for _ in range(ndim))
    while int(np.prod(shape)) > max_elements:
        shape = shape[:-1]
    return shape


def _out_role(params: dict, roles: dict, data, shape, dtype, name="out"):
    """Adds an ``out`` argument (NaN-filled) or leaves the default."""
    if data.draw(st.booleans(), label="with out"):
        params[name] = nan_like(shape, dtype)
        roles[name] = "out"


def _returned(result, params):
    return {"result": result}


def _activation(fn, reference, backward: bool, gelu: bool):
    def build(data):
        dtype, shape = float_dtype(data), _shape(data)
        params, roles = {}, {}
        if backward:
            params["grad"], roles["grad"] = values(data, shape, dtype, special=True), "in"
        params["x"], roles["x"] = values(data, shape, dtype, special=True), "in"
        if gelu:
            params["approximate"] = data.draw(st.sampled_from(["none", "tanh", "exact", None, 1]), label="approx")
        _out_role(params, roles, data, shape, dtype)
        approx = params.get("approximate")

        def reference_of(p):
            args = [p[k] for k in ("grad", "x") if k in p]
            if backward and gelu:  # grad times the derivative as the result's dtype holds it (an underflow is 0)
                x = np.asarray(p["x"])
                dtype = np.result_type(x.dtype, np.asarray(p["grad"]).dtype)
                args[0] = np.ones(x.shape)
                deriv = (reference(*args, approx) if gelu else reference(*args)).astype(dtype)
                return {"result": np.asarray(p["grad"], np.float64) * deriv}
            return {"result": reference(*args, approx) if gelu else reference(*args)}

        call = Call(fn, params, 2 if backward else 1, roles, reference_of, _returned)
        if gelu and approx not in ("none", "tanh"):
            call.mutation, call.expected = f"approximate={approx!r}", REFUSE
        return call

    return build


# ---- ops: attention -------------------------------------------------------------------------------


def _attention_inputs(data):
    """Random (params, roles) of a valid scaled_dot_product_attention call: leading dims with a
    heads axis (grouped key/value heads with enable_gqa), a bool or float mask broadcast from a
    smaller shape, or is_causal; dropout sometimes. The mask has no role: a float mask of the other
    float dtype is converted, not refused, unlike the float inputs."""
    dtype = float_dtype(data)
    small = st.sampled_from([0, 1, 2, 3, 5, 7])
    lead = tuple(data.draw(small, label="lead") for _ in range(data.draw(st.integers(0, 2), label="lead ndim")))
    n_q, s, e, ev = (data.draw(SIZES, label=name) for name in ("L", "S", "E", "Ev"))
    gqa = bool(lead) and lead[-1] % 2 == 0 and lead[-1] > 0 and data.draw(st.booleans(), label="gqa")
    kv_lead = lead[:-1] + (lead[-1] // 2,) if gqa else lead
    params = {
        "query": values(data, lead + (n_q, e), dtype),
        "key": values(data, kv_lead + (s, e), dtype),
        "value": values(data, kv_lead + (s, ev), dtype),
        "attn_mask": None,
        "dropout_p": data.draw(st.sampled_from([0.0, 0.0, 0.3]), label="dropout_p"),
        "is_causal": False,
        "scale": data.draw(st.sampled_from([None, 0.5]), label="scale"),
        "enable_gqa": gqa,
        "seed": data.draw(st.sampled_from([0, 2**64 - 1]), label="seed"),
        "offset": data.draw(st.sampled_from([0, 2**64 - 2]), label="offset"),
    }
    mask = data.draw(st.sampled_from(["none", "causal", "bool", "float"]), label="mask")
    if mask == "causal":
        params["is_causal"] = True
    elif mask != "none":
        shape = data.draw(st.sampled_from([(n_q, s), (1, s), (n_q, 1), lead[-1:] + (1, s)]), label="mask shape")
        rng = np.random.default_rng(data.draw(st.integers(0, 99), label="mask seed"))
        keep = rng.random(shape) < 0.7
        params["attn_mask"] = keep if mask == "bool" else np.where(keep, rng.uniform(-1, 1, shape), -np.inf)
    return params, {"query": "in", "key": "in", "value": "in"}


def _attention_options(p):
    dropout = (p["dropout_p"], p["seed"], p["offset"]) if p["dropout_p"] > 0 else None
    return dict(mask=p["attn_mask"], causal=p["is_causal"], scale=p["scale"], enable_gqa=p["enable_gqa"],
                dropout=dropout)  # fmt: skip


def build_attention(data):
    params, roles = _attention_inputs(data)

    def reference_of(p):
        return {"out": ref.attention_ref(p["query"], p["key"], p["value"], **_attention_options(p))}

    def actual(result, p):
        return {"out": result[0]}

    return Call(
        ops.scaled_dot_product_attention, params, 3, roles, reference_of, actual,
        ints=("seed", "offset"), numbers=("dropout_p",),
    )  # fmt: skip


def build_attention_backward(data):
    """The backward of a valid forward; its arguments other than the arrays stay as they were (the
    saved out and lse were computed with them)."""
    params, roles = _attention_inputs(data)
    qkv = (params.pop("query"), params.pop("key"), params.pop("value"))
    rest = dict(params)
    out, lse = ops.scaled_dot_product_attention(*qkv, **rest)
    grad = values(data, out.shape, out.dtype)
    params = dict(zip(("grad", "query", "key", "value", "out", "lse"), (grad,) + qkv + (out, lse)), **rest)
    roles = dict.fromkeys(("grad", "query", "key", "value", "out", "lse"), "in")

    def reference_of(p):
        grads = ref.attention_backward_ref(p["grad"], p["query"], p["key"], p["value"], **_attention_options(p))
        return dict(zip(("dq", "dk", "dv"), grads))

    def actual(result, p):
        return dict(zip(("dq", "dk", "dv"), result))

    call = Call(ops.scaled_dot_product_attention_backward, params, 6, roles, reference_of, actual)
    call.frozen = ("query", "key", "value", "out", "lse")
    return call


# ---- ops: softmax family ----------------------------------------------------------------------------


def _softmax(fn, backward: bool, log: bool):
    def build(data):
        dtype, shape = float_dtype(data), _shape(data, max_ndim=3, max_elements=2048)
        ndim = max(len(shape), 1)
        params, roles = {}, {}
        if backward:  # ordinary values: a float32 product may overflow where float64's does not
            params["grad"], roles["grad"] = values(data, shape, dtype), "in"
            params["y"], roles["y"] = values(data, shape, dtype), "in"
        else:
            params["x"], roles["x"] = values(data, shape, dtype, special=True), "in"
        params["dim"] = data.draw(st.integers(-ndim, ndim - 1), label="dim")
        _out_role(params, roles, data, shape, dtype)

        def reference_of(p):
            if backward:
                return {"result": ref.softmax_backward_ref(p["grad"], p["y"], p["dim"], log=log)}
            return {"result": (ref.log_softmax_ref if log else ref.softmax_ref)(p["x"], p["dim"])}

        return Call(fn, params, 3 if backward else 2, roles, reference_of, _returned, ints=("dim",))

    return build


def _cross_entropy_params(data):
    """Logits, valid targets (some ignored), optional weight and the options of a cross entropy."""
    dtype = float_dtype(data)
    classes = data.draw(SIZES, label="classes")
    if data.draw(st.booleans(), label="one sample"):
        x_shape, index_shape = (classes,), ()
    else:
        extra = tuple(data.draw(st.sampled_from([1, 2, 3]), label="d") for _ in range(data.draw(st.integers(0, 2))))
        batch = data.draw(SIZES, label="batch")
        x_shape, index_shape = (batch, classes) + extra, (batch,) + extra
    ignore_index = data.draw(st.sampled_from([-100, -1, 0, 2]), label="ignore_index")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    target = rng.integers(0, max(classes, 1), index_shape)
    target[rng.random(index_shape) < 0.2] = ignore_index
    if classes == 0:
        target[...] = ignore_index
    weight = None
    if data.draw(st.booleans(), label="weight"):
        weight = (np.abs(values(data, (classes,), dtype)) + 0.1).astype(dtype)
    params = {"x": values(data, x_shape, dtype), "target": target, "weight": weight}
    options = {
        "ignore_index": ignore_index,
        "label_smoothing": data.draw(st.sampled_from([0.0, 0.1, 1.0]), label="eps"),
    }
    return params, options


def build_cross_entropy(data):
    params, options = _cross_entropy_params(data)
    params.update(options)
    roles = {"x": "in", "target": "index", "weight": "in"}

    def reference_of(p):
        loss, weight = ref.cross_entropy_ref(p["x"], p["target"], p["weight"], p["ignore_index"], p["label_smoothing"])
        return {"loss": loss, "weight": weight}

    def actual(result, p):
        return {"loss": result[0], "weight": result[1][..., 2]}

    call = Call(ops.cross_entropy, params, 3, roles, reference_of, actual, ints=("ignore_index",))
    call.numbers, call.optional = ("label_smoothing",), ("weight",) if params["weight"] is not None else ()
    return call


def build_cross_entropy_backward(data):
    params, options = _cross_entropy_params(data)
    x, target, weight = params["x"], params["target"], params["weight"]
    stats = ops.cross_entropy(x, target, weight, **options)[1]
    per_sample = data.draw(st.booleans(), label="grad per sample")
    grad = values(data, target.shape if per_sample else (), x.dtype)
    params = {"grad": grad, "x": x, "target": target, "stats": stats, "weight": weight, **options}
    roles = {"grad": "in", "x": "in", "target": "index", "stats": "cache", "weight": "in"}
    _out_role(params, roles, data, x.shape, x.dtype)

    def reference_of(p):
        args = (p["grad"], p["x"], p["target"], p["weight"], p["ignore_index"], p["label_smoothing"])
        return {"result": ref.cross_entropy_backward_ref(*args)}

    # ignore_index and weight stay as they are: the stats were computed with them.
    call = Call(ops.cross_entropy_backward, params, 5, roles, reference_of, _returned, numbers=("label_smoothing",))
    call.frozen = ("x", "target", "weight")
    return call


def build_dropout(data):
    dtype, shape = float_dtype(data), _shape(data)
    params = {
        "x": values(data, shape, dtype, special=True),
        "p": data.draw(st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]), label="p"),
        "seed": data.draw(st.sampled_from([0, 1, 2**63 + 5, 2**64 - 1]), label="seed"),
        "offset": data.draw(st.sampled_from([0, 3, 2**64 - 2]), label="offset"),
    }
    roles = {"x": "in"}
    _out_role(params, roles, data, shape, dtype)
    if data.draw(st.booleans(), label="with mask"):
        params["mask"], roles["mask"] = np.zeros(shape, np.bool_), "out"

    def reference_of(p):
        y, mask = ref.dropout_ref(p["x"], p["p"], p["seed"], p["offset"])
        return {"y": y, "mask": mask.astype(np.int64)}

    def actual(result, p):
        return {"y": result[0], "mask": np.asarray(result[1]).astype(np.int64)}

    call = Call(ops.dropout, params, 4, roles, reference_of, actual, ints=("seed", "offset"), numbers=("p",))
    return call


def build_dropout_backward(data):
    dtype, shape = float_dtype(data), _shape(data)
    params = {
        "grad": values(data, shape, dtype, special=True),
        "mask": np.random.default_rng(data.draw(st.integers(0, 99), label="mask seed")).random(shape) < 0.5,
        "p": data.draw(st.sampled_from([0.0, 0.3, 0.99, 1.0]), label="p"),
    }
    roles = {"grad": "in", "mask": "in"}
    _out_role(params, roles, data, shape, dtype)

    def reference_of(p):
        return {"result": ref.dropout_backward_ref(p["grad"], p["mask"], p["p"])}

    return Call(ops.dropout_backward, params, 3, roles, reference_of, _returned, numbers=("p",))


# ---- ops: matrix multiply ---------------------------------------------------------------------------


def build_matmul(data):
    dtype = float_dtype(data)
    m, k, n = (data.draw(SIZES, label=d) for d in "mkn")
    batch = tuple(data.draw(st.sampled_from([1, 2, 3]), label="batch") for _ in range(data.draw(st.integers(0, 2))))
    a_shape = (k,) if data.draw(st.booleans(), label="a 1-D") else batch + (m, k)
    b_batch = tuple(1 if data.draw(st.booleans(), label="bcast") else s for s in batch)
    b_shape = (k,) if data.draw(st.booleans(), label="b 1-D") else b_batch + (k, n)
    params = {"a": values(data, a_shape, dtype), "b": values(data, b_shape, dtype)}
    roles = {"a": "in", "b": "in"}
    out_shape = np.matmul(np.empty(a_shape), np.empty(b_shape)).shape
    _out_role(params, roles, data, out_shape, dtype)
    call = Call(ops.matmul, params, 2, roles, lambda p: {"result": ref.matmul_ref(p["a"], p["b"])}, _returned)
    call.mixed_dtypes = ACCEPT
    return call


def build_gemm(data):
    dtype = float_dtype(data)
    m, k, n = (data.draw(SIZES, label=d) for d in "mkn")
    ta, tb = data.draw(st.booleans(), label="trans_a"), data.draw(st.booleans(), label="trans_b")
    beta = data.draw(st.sampled_from([0.0, 0.0, 1.0, -0.5]), label="beta")
    params = {
        "a": values(data, (k, m) if ta else (m, k), dtype),
        "b": values(data, (n, k) if tb else (k, n), dtype),
        "trans_a": ta,
        "trans_b": tb,
        "alpha": data.draw(st.sampled_from([1.0, 0.5, -2.0]), label="alpha"),
        "beta": beta,
        "c": None,
        "bias": values(data, (n,), dtype) if data.draw(st.booleans(), label="bias") else None,
        "relu": data.draw(st.booleans(), label="relu"),
    }
    roles = {"a": "in", "b": "in", "bias": "in"}
    if beta != 0 or data.draw(st.booleans(), label="with c"):
        params["c"] = values(data, (m, n), dtype) if beta != 0 else nan_like((m, n), dtype)
        roles["c"] = "out"

    def reference_of(p):
        keys = ("trans_a", "trans_b", "alpha", "beta", "c", "bias", "relu")
        kw = {key: p[key] for key in keys}
        if k == 0:  # no products, so alpha multiplies nothing (BLAS: C = beta * C), even a NaN alpha
            kw["alpha"] = 1.0
        return {"result": ref.gemm_ref(p["a"], p["b"], **kw)}

    optional = ("bias",) if params["bias"] is not None else ()
    return Call(ops.gemm, params, 2, roles, reference_of, _returned, numbers=("alpha", "beta"), optional=optional)


def build_linear(data):
    dtype = float_dtype(data)
    lead = _shape(data, max_ndim=3, max_elements=512)
    i, o = data.draw(SIZES, label="in"), data.draw(SIZES, label="out")
    params = {
        "x": values(data, lead + (i,), dtype),
        "weight": values(data, (o, i), dtype),
        "bias": values(data, (o,), dtype) if data.draw(st.booleans(), label="bias") else None,
        "relu": data.draw(st.booleans(), label="relu"),
    }
    roles = {"x": "in", "weight": "in", "bias": "in"}
    _out_role(params, roles, data, lead + (o,), dtype)

    def reference_of(p):
        return {"result": ref.linear_ref(p["x"], p["weight"], p["bias"], p["relu"])}

    optional = ("bias",) if params["bias"] is not None else ()
    return Call(ops.linear, params, 3, roles, reference_of, _returned, optional=optional)


# ---- ops: convolution -----------------------------------------------------------------------------


def _conv_draws(data) -> tuple:
    """What every convolution's fuzz geometry draws first: groups, C, K, R, S, stride, dilation."""
    groups = data.draw(st.sampled_from([1, 1, 2, 3]), label="groups")
    c = groups * data.draw(st.sampled_from([1, 2, 3]), label="c/g")
    k = groups * data.draw(st.sampled_from([1, 2]), label="k/g")
    r, s = (data.draw(st.sampled_from([1, 2, 3]), label="rs") for _ in range(2))
    stride = data.draw(st.sampled_from([1, 2, (1, 3)]), label="stride")
    dilation = data.draw(st.sampled_from([1, 2, (2, 1)]), label="dilation")
    return groups, c, k, r, s, stride, dilation


def _conv_geometry(data, dtype):
    groups, c, k, r, s, stride, dilation = _conv_draws(data)
    padding = data.draw(st.sampled_from([0, 1, (0, 2), "valid"] + (["same"] if stride == 1 else [])), label="pad")
    h, w = (data.draw(st.sampled_from([5, 6, 7, 9]), label="hw") for _ in range(2))
    n = data.draw(st.sampled_from([None, 0, 1, 2]), label="n")
    x_shape = (c, h, w) if n is None else (n, c, h, w)
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return x_shape, (k, c // groups, r, s), options


_CONV_INTS = ("stride", "padding", "dilation", "groups")


def _conv_builders(forward, backward, forward_ref, backward_ref, geometry, ints, out_channels):
    """The fuzz builders of a convolution op and its backward: ``geometry(data, dtype)`` draws the
    shapes and options, ``out_channels(w_shape, options)`` sizes the bias."""

    def build(data):
        dtype = float_dtype(data)
        x_shape, w_shape, options = geometry(data, dtype)
        params = {"x": values(data, x_shape, dtype), "w": values(data, w_shape, dtype)}
        has_bias = data.draw(st.booleans(), label="b")
        params["b"] = values(data, (out_channels(w_shape, options),), dtype) if has_bias else None
        params.update(options)
        roles = {"x": "in", "w": "in", "b": "in"}

        def reference_of(p):
            return {"result": forward_ref(p["x"], p["w"], p["b"], **{k: p[k] for k in ints})}

        optional = ("b",) if has_bias else ()
        return Call(forward, params, 3, roles, reference_of, _returned, ints=ints, optional=optional)

    def build_backward(data):
        dtype = float_dtype(data)
        x_shape, w_shape, options = geometry(data, dtype)
        x, w = values(data, x_shape, dtype), values(data, w_shape, dtype)
        y_shape = forward_ref(x, w, **options).shape
        params = {"grad_out": values(data, y_shape, dtype), "x": x, "w": w, **options}
        params["needs"] = tuple(data.draw(st.booleans(), label="need") for _ in range(3))
        roles = {"grad_out": "in", "x": "in", "w": "in"}

        def reference_of(p):
            grads = backward_ref(p["grad_out"], p["x"], p["w"], **{k: p[k] for k in ints})
            return {i: g if need else None for i, (g, need) in enumerate(zip(grads, p["needs"]))}

        def actual(result, p):
            return dict(enumerate(result))

        return Call(backward, params, 3, roles, reference_of, actual, ints=ints)

    return build, build_backward


build_conv2d, build_conv2d_backward = _conv_builders(
    ops.conv2d,
    ops.conv2d_backward,
    ref.conv2d_ref,
    ref.conv2d_backward_ref,
    _conv_geometry,
    _CONV_INTS,
    lambda w_shape, options: w_shape[0],
)


def _conv_transpose_geometry(data, dtype):
    """x and w shapes and options of a valid conv_transpose2d (output_padding below stride or
    dilation, a positive output)."""
    groups, c, k, r, s, stride, dilation = _conv_draws(data)
    output_padding = data.draw(st.sampled_from([0, 1, (0, 2)]), label="output_padding")
    padding = data.draw(st.sampled_from([0, 1, (0, 2)]), label="pad")
    h, w = (data.draw(st.sampled_from([1, 2, 5, 6]), label="hw") for _ in range(2))
    n = data.draw(st.sampled_from([None, 0, 1, 2]), label="n")
    pairs = [ref._pair(v, name) for v, name in ((stride, "s"), (dilation, "d"), (output_padding, "o"), (padding, "p"))]
    if any(o >= max(s_, d) for s_, d, o in zip(*pairs[:3])):
        output_padding = 0
    if any(
        (m - 1) * s_ - 2 * p + d * (kk - 1) + 1 < 1 for m, s_, d, p, kk in zip((h, w), *pairs[:2], pairs[3], (r, s))
    ):
        padding = 0
    x_shape = (c, h, w) if n is None else (n, c, h, w)
    options = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
    }
    return x_shape, (c, k // groups, r, s), options


build_conv_transpose2d, build_conv_transpose2d_backward = _conv_builders(
    ops.conv_transpose2d,
    ops.conv_transpose2d_backward,
    ref.conv_transpose2d_ref,
    ref.conv_transpose2d_backward_ref,
    _conv_transpose_geometry,
    ("stride", "padding", "output_padding", "groups", "dilation"),
    lambda w_shape, options: w_shape[1] * options["groups"],
)


# ---- ops: pooling ---------------------------------------------------------------------------------

_POOL_INTS = ("kernel_size", "stride", "padding")


def _pool_window(data, shape, dilation=True):
    kernel = data.draw(st.sampled_from([1, 2, 3, (2, 3), (3, 1)]), label="kernel")
    kmin = min(kernel) if isinstance(kernel, tuple) else kernel
    options = {
        "kernel_size": kernel,
        "stride": data.draw(st.sampled_from([None, 1, 2, (1, 3)]), label="stride"),
        "padding": data.draw(st.sampled_from([0, kmin // 2]), label="padding"),
        "ceil_mode": data.draw(st.booleans(), label="ceil"),
    }
    if dilation:
        options["dilation"] = data.draw(st.sampled_from([1, 2]), label="dilation")
        kernels = kernel if isinstance(kernel, tuple) else (kernel, kernel)
        if any((k - 1) * 2 + 1 > n for k, n in zip(kernels, shape[-2:])):  # a dilated window wider than x
            options["dilation"] = 1
    return options


def _pool_input_shape(data):
    h, w = (data.draw(st.sampled_from([3, 4, 7, 9]), label="hw") for _ in range(2))
    lead = (data.draw(st.sampled_from([1, 2, 3]), label="c"),)
    if data.draw(st.booleans(), label="batched"):
        lead = (data.draw(st.sampled_from([0, 1, 2]), label="n"),) + lead
    return lead + (h, w)


def build_max_pool2d(data):
    dtype = float_dtype(data)
    shape = _pool_input_shape(data)
    params = {"x": values(data, shape, dtype), **_pool_window(data, shape)}
    params["return_indices"] = data.draw(st.booleans(), label="return_indices")
    roles = {"x": "in"}
    opts = {k: params[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
    out_shape = ref.max_pool2d_ref(params["x"], **opts)[0].shape
    _out_role(params, roles, data, out_shape, dtype)

    def reference_of(p):
        out, idx = ref.max_pool2d_ref(p["x"], **{k: p[k] for k in opts})
        return {"out": out, "indices": idx} if p["return_indices"] else {"out": out}

    def actual(result, p):
        return {"out": result[0], "indices": result[1]} if p["return_indices"] else {"out": result}

    return Call(ops.max_pool2d, params, 1, roles, reference_of, actual, ints=_POOL_INTS + ("dilation",))


def build_max_pool2d_backward(data):
    dtype = float_dtype(data)
    shape = _pool_input_shape(data)
    x = values(data, shape, dtype)
    _, indices = ref.max_pool2d_ref(x, **_pool_window(data, shape))
    params = {"grad_out": values(data, indices.shape, dtype), "x_shape": shape, "indices": indices}
    roles = {"grad_out": "in", "indices": "index"}
    _out_role(params, roles, data, shape, dtype)

    def reference_of(p):
        return {"result": ref.max_pool2d_backward_ref(p["grad_out"], tuple(p["x_shape"]), p["indices"])}

    call = Call(ops.max_pool2d_backward, params, 3, roles, reference_of, _returned, ints=(("x_shape", 0),))
    if data.draw(st.booleans(), label="bad index"):  # an index outside its plane
        bad = indices.copy()
        if bad.size:
            bad.flat[data.draw(st.integers(0, bad.size - 1))] = data.draw(
                st.sampled_from([shape[-1] * shape[-2], -2, 2**31, 2**62, -(2**63)]), label="index"
            )
            params["indices"] = bad
            call.mutation, call.expected = "bad index", EITHER
    return call


def _avg_options(data, shape):
    options = _pool_window(data, shape, dilation=False)
    options["count_include_pad"] = data.draw(st.booleans(), label="count_include_pad")
    options["divisor_override"] = data.draw(st.sampled_from([None, None, 1, 3, -2]), label="divisor")
    return options


def build_avg_pool2d(data):
    dtype = float_dtype(data)
    shape = _pool_input_shape(data)
    params = {"x": values(data, shape, dtype), **_avg_options(data, shape)}
    opts = [k for k in params if k != "x"]
    roles = {"x": "in"}
    _out_role(params, roles, data, ref.avg_pool2d_ref(params["x"], **{k: params[k] for k in opts}).shape, dtype)

    def reference_of(p):
        return {"result": ref.avg_pool2d_ref(p["x"], **{k: p[k] for k in opts})}

    return Call(ops.avg_pool2d, params, 1, roles, reference_of, _returned, ints=_POOL_INTS + ("divisor_override",))


def build_avg_pool2d_backward(data):
    dtype = float_dtype(data)
    shape = _pool_input_shape(data)
    options = _avg_options(data, shape)
    y_shape = ref.avg_pool2d_ref(np.zeros(shape), **options).shape
    params = {"grad_out": values(data, y_shape, dtype), "x_shape": shape, **options}
    roles = {"grad_out": "in"}
    _out_role(params, roles, data, shape, dtype)

    def reference_of(p):
        return {"result": ref.avg_pool2d_backward_ref(p["grad_out"], tuple(p["x_shape"]), **{k: p[k] for k in options})}

    ints = _POOL_INTS + ("divisor_override", ("x_shape", 0))
    return Call(ops.avg_pool2d_backward, params, 2, roles, reference_of, _returned, ints=ints)


def build_adaptive_avg_pool2d(data):
    dtype = float_dtype(data)
    shape = _pool_input_shape(data)
    size = data.draw(st.sampled_from([1, 2, 3, (2, None), (None, 5), (0, 2), 8]), label="output_size")
    params = {"x": values(data, shape, dtype), "output_size": size}
    roles = {"x": "in"}
    _out_role(params, roles, data, ref.adaptive_avg_pool2d_ref(params["x"], size).shape, dtype)

    def reference_of(p):
        return {"result": ref.adaptive_avg_pool2d_ref(p["x"], p["output_size"])}

    return Call(ops.adaptive_avg_pool2d, params, 2, roles, reference_of, _returned, ints=("output_size",))


def build_adaptive_avg_pool2d_backward(data):
    dtype = float_dtype(data)
    shape = _pool_input_shape(data)
    oh, ow = (data.draw(st.sampled_from([1, 2, 3, 5]), label="out") for _ in range(2))
    params = {"grad_out": values(data, shape[:-2] + (oh, ow), dtype), "x_shape": shape}
    roles = {"grad_out": "in"}
    _out_role(params, roles, data, shape, dtype)

    def reference_of(p):
        return {"result": ref.adaptive_avg_pool2d_backward_ref(p["grad_out"], tuple(p["x_shape"]))}

    ints = (("x_shape", 0), ("x_shape", len(shape) - 1))
    return Call(ops.adaptive_avg_pool2d_backward, params, 2, roles, reference_of, _returned, ints=ints)


# ---- ops: batch normalization --------------------------------------------------------------------


def _norm_input(data, dtype):
    """x of shape (N, C) or (N, C, H, W) with more than one value per channel, and C."""
    c = data.draw(st.sampled_from([1, 2, 5]), label="C")
    spatial = data.draw(st.sampled_from([(), (1, 1), (2, 3), (5, 1)]), label="spatial")
    n = data.draw(st.sampled_from([2, 3, 7]), label="N")
    return values(data, (n, c) + spatial, dtype), c


def build_batch_norm(data):
    dtype = float_dtype(data)
    x, c = _norm_input(data, dtype)
    training = data.draw(st.booleans(), label="training")
    params, roles, optional = {"x": x}, {"x": "in"}, []
    for name in ("weight", "bias"):
        if data.draw(st.booleans(), label=name):
            params[name], roles[name] = values(data, (c,), dtype), "in"
            optional.append(name)
        else:
            params[name] = None
    with_running = not training or data.draw(st.booleans(), label="running")
    params["running_mean"] = values(data, (c,), dtype) if with_running else None
    params["running_var"] = np.abs(values(data, (c,), dtype)) + dtype.type(0.5) if with_running else None
    if with_running:
        roles.update(running_mean="inplace" if training else "in", running_var="inplace" if training else "in")
    params.update(training=training, momentum=0.3, eps=1e-3)
    _out_role(params, roles, data, x.shape, dtype)

    def reference_of(p):
        out, new_m, new_v = ref_nn.batch_norm_ref(
            p["x"], p["running_mean"], p["running_var"], p["weight"], p["bias"], p["training"], p["momentum"], p["eps"]
        )
        want = {"result": out}
        if p["running_mean"] is not None:
            want.update(running_mean=new_m, running_var=new_v)
        return want

    def actual(result, p):
        got = {"result": result[0]}
        if p["running_mean"] is not None:
            got.update(running_mean=p["running_mean"], running_var=p["running_var"])
        return got

    return Call(
        ops.batch_norm,
        params,
        1,
        roles,
        reference_of,
        actual,
        numbers=("momentum", "eps"),
        optional=tuple(optional),
        any_strides=("running_mean", "running_var"),
    )


def build_batch_norm_backward(data):
    dtype = float_dtype(data)
    x, c = _norm_input(data, dtype)
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.astype(np.float64).mean(axis=axes)
    invstd = 1 / np.sqrt(x.astype(np.float64).var(axis=axes) + 1e-3)
    with_weight = data.draw(st.booleans(), label="weight")
    params = {
        "grad_out": values(data, x.shape, dtype),
        "x": x,
        "weight": values(data, (c,), dtype) if with_weight else None,
        "save_mean": mean,
        "save_invstd": invstd,
        "training": data.draw(st.booleans(), label="training"),
        "needs": tuple(data.draw(st.booleans(), label="needs") for _ in range(3)),
    }
    roles = {name: "in" for name in ("grad_out", "x", "save_mean", "save_invstd")}
    if with_weight:
        roles["weight"] = "in"

    def reference_of(p):
        grads = ref_nn.batch_norm_backward_ref(
            p["grad_out"], p["x"], p["weight"], p["save_mean"], 1 / np.square(p["save_invstd"]), p["training"], eps=0.0
        )
        return {k: v for k, v, need in zip(("grad_x", "grad_weight", "grad_bias"), grads, p["needs"]) if need}

    def actual(result, p):
        assert all((r is None) != bool(n) for r, n in zip(result, p["needs"])), "a gradient not asked for"
        return {k: v for k, v in zip(("grad_x", "grad_weight", "grad_bias"), result) if v is not None}

    return Call(
        ops.batch_norm_backward, params, 6, roles, reference_of, actual, optional=("weight",) if with_weight else ()
    )


# ---- ops: layer and group normalization -----------------------------------------------------------


def _row_norm_call(data, forward: bool, layer: bool):
    """A call of layer_norm / group_norm (``forward``) or of its backward pass."""
    dtype = float_dtype(data)
    if layer:
        shape = data.draw(st.sampled_from([(3, 1), (2, 5), (4, 2, 3), (0, 4), (7,)]), label="shape")
        k = data.draw(st.sampled_from([1, len(shape)]), label="normalized axes")
        size, params_shape = tuple(shape[len(shape) - k :]), tuple(shape[len(shape) - k :])
        fn, ref_fn, ref_bwd = ops.layer_norm, ref_nn.layer_norm_ref, ref_nn.layer_norm_backward_ref
        ints = tuple(("size", i) for i in range(k))
    else:
        shape = data.draw(st.sampled_from([(2, 4), (3, 6, 2), (1, 2, 3, 2), (0, 4, 3)]), label="shape")
        size, params_shape = data.draw(st.sampled_from([1, 2]), label="num_groups"), (shape[1],)
        fn, ref_fn, ref_bwd = ops.group_norm, ref_nn.group_norm_ref, ref_nn.group_norm_backward_ref
        ints = ("size",)
    x = values(data, shape, dtype)
    weight = values(data, params_shape, dtype) if data.draw(st.booleans(), label="weight") else None
    if forward:
        bias = values(data, params_shape, dtype) if data.draw(st.booleans(), label="bias") else None
        params = {"x": x, "size": size, "weight": weight, "bias": bias, "eps": 1e-3}
        roles = {"x": "in", **{n: "in" for n in ("weight", "bias") if params[n] is not None}}
        _out_role(params, roles, data, shape, dtype)

        def reference_of(p):
            size = p["size"] if layer else int(p["size"])
            return {"result": ref_fn(p["x"], size, p["weight"], p["bias"], p["eps"])[0]}

        def actual(result, p):
            return {"result": result[0]}

        optional = tuple(n for n in ("weight", "bias") if params[n] is not None)
        return Call(fn, params, 2, roles, reference_of, actual, ints=ints, numbers=("eps",), optional=optional)

    _, mean, rstd = ref_fn(x, size, eps=1e-3)
    params = {
        "grad_out": values(data, shape, dtype),
        "x": x,
        "size": size,
        "weight": weight,
        "save_mean": mean,
        "save_rstd": rstd,
        "needs": tuple(data.draw(st.booleans(), label="needs") for _ in range(3)),
    }
    roles = {name: "in" for name in ("grad_out", "x", "save_mean", "save_rstd")}
    if weight is not None:
        roles["weight"] = "in"
    names = ("grad_x", "grad_weight", "grad_bias")

    def reference_of(p):
        grads = ref_bwd(p["grad_out"], p["x"], p["size"], p["weight"], eps=1e-3)
        return {k: v for k, v, need in zip(names, grads, p["needs"]) if need}

    def actual(result, p):
        assert all((r is None) != bool(n) for r, n in zip(result, p["needs"])), "a gradient not asked for"
        return {k: v for k, v in zip(names, result) if v is not None}

    optional = ("weight",) if weight is not None else ()
    backward = getattr(ops, fn.__name__ + "_backward")
    return Call(backward, params, 7, roles, reference_of, actual, ints=ints, optional=optional)


def build_layer_norm(data):
    return _row_norm_call(data, True, True)


def build_layer_norm_backward(data):
    return _row_norm_call(data, False, True)


def build_group_norm(data):
    return _row_norm_call(data, True, False)


def build_group_norm_backward(data):
    return _row_norm_call(data, False, False)


# ---- ops: LSTM ----------------------------------------------------------------------------------


def _lstm_arrays(data, dtype, sequence: bool, gates: int = 4):
    """x, h, c, w_ih, w_hh, b_ih, b_hh of a layer whose weights have ``gates`` gate blocks."""
    t, b = data.draw(st.sampled_from([0, 1, 3]), label="T"), data.draw(st.sampled_from([1, 2, 5]), label="B")
    i, h = data.draw(st.sampled_from([0, 1, 3, 7]), label="I"), data.draw(st.sampled_from([1, 2, 5]), label="H")
    x_shape = (t, b, i) if sequence else (b, i)
    arrays = {"x": values(data, x_shape, dtype), "h": values(data, (b, h), dtype), "c": values(data, (b, h), dtype)}
    arrays["w_ih"] = values(data, (gates * h, i), dtype) * 0.5
    arrays["w_hh"] = values(data, (gates * h, h), dtype) * 0.5
    for name in ("b_ih", "b_hh"):
        arrays[name] = values(data, (gates * h,), dtype) if data.draw(st.booleans(), label=name) else None
    return arrays


def _roles(params: dict, names) -> dict:
    return {n: "in" for n in names if n in params}


def _batch_sizes(data, steps: int, batch: int):
    """None, or the batch_sizes of a batch of random lengths in [1, steps] (the longest steps)."""
    if steps == 0 or not data.draw(st.booleans(), label="variable lengths"):
        return None
    lengths = [steps] + [data.draw(st.integers(1, steps), label="length") for _ in range(batch - 1)]
    return (np.array(lengths)[None, :] > np.arange(steps)[:, None]).sum(axis=1).astype(np.int64)


def _packed_params(params: dict, roles: dict, sizes) -> tuple:
    """Adds batch_sizes (when not None) to a layer's keyword params and its role; returns the
    optional slots it adds (it may be None: the layer then runs all rows)."""
    if sizes is None:
        return ()
    params["batch_sizes"] = sizes
    roles["batch_sizes"] = "index"
    return ("batch_sizes",)


def _layer_ref(reference, backward, p, states, grads=None, **kw):
    """The float64 layer ``reference`` on p's x and weights (with p's batch_sizes, when given,
    each row alone on its own steps); with ``grads``, (outputs, gradients) by ``backward``."""
    weights = [p[k] if k in p else None for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    sizes = p.get("batch_sizes")
    if sizes is None:
        sizes = np.full(np.shape(p["x"])[0], np.shape(p["x"])[1])
    return ref.packed_layer_ref(reference, backward, p["x"], states, weights, sizes, grads, p["reverse"], **kw)


def build_lstm(data):
    dtype = float_dtype(data)
    a = _lstm_arrays(data, dtype, True)
    params = {"x": a["x"], "h0": a["h"], "c0": a["c"], "w_ih": a["w_ih"], "w_hh": a["w_hh"]}
    params.update(b_ih=a["b_ih"], b_hh=a["b_hh"], reverse=data.draw(st.booleans(), label="reverse"))
    roles = _roles(params, list(params)[:7])
    packed = _packed_params(params, roles, _batch_sizes(data, *a["x"].shape[:2]))

    def reference_of(p):
        return dict(enumerate(_layer_ref(ref.lstm_ref, ref.lstm_backward_ref, p, (p["h0"], p["c0"]))))

    def actual(result, p):
        return dict(enumerate(result))

    optional = tuple(k for k in ("h0", "c0", "b_ih", "b_hh") if params[k] is not None) + packed
    return Call(ops.lstm, params, 7, roles, reference_of, actual, optional=optional, frozen=packed)


def build_lstm_backward(data):
    dtype = float_dtype(data)
    a = _lstm_arrays(data, dtype, True)
    a["b_ih"] = a["b_hh"] = None
    reverse = data.draw(st.booleans(), label="reverse")
    t, b, h = a["x"].shape[0], a["x"].shape[1], a["h"].shape[1]
    sizes = _batch_sizes(data, t, b)
    *_, cache = ops.lstm(
        a["x"], a["h"], a["c"], a["w_ih"], a["w_hh"], reverse=reverse, return_cache=True, batch_sizes=sizes
    )
    params = {"grad_y": values(data, (t, b, h), dtype), "grad_h_T": values(data, (b, h), dtype)}
    params.update(grad_c_T=values(data, (b, h), dtype), x=a["x"], h0=a["h"], c0=a["c"])
    params.update(w_ih=a["w_ih"], w_hh=a["w_hh"], cache=cache, reverse=reverse)
    roles = _roles(params, ("grad_y", "grad_h_T", "grad_c_T", "x", "h0", "c0", "w_ih", "w_hh"))
    roles.update({("cache", 0): "cache", ("cache", 1): "cache", ("cache", 2): "cache"})
    names = ("grad_y", "grad_h_T", "grad_c_T", "x", "h0", "c0", "w_ih", "w_hh")

    def reference_of(p):
        grads = (p["grad_y"], p["grad_h_T"], p["grad_c_T"])
        p = dict(p, batch_sizes=sizes)
        return dict(enumerate(_layer_ref(ref.lstm_ref, ref.lstm_backward_ref, p, (p["h0"], p["c0"]), grads)[1]))

    def actual(result, p):
        return dict(enumerate(result))

    optional = names[:3]  # not h0, c0: the cache was computed from them
    return Call(ops.lstm_backward, params, 9, roles, reference_of, actual, optional=optional, frozen=names[3:])


_CELL = ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh")


def build_lstm_cell(data):
    dtype = float_dtype(data)
    params = _lstm_arrays(data, dtype, False)

    def reference_of(p):
        return dict(enumerate(ref.lstm_cell_ref(*(p[k] for k in _CELL))))

    optional = tuple(k for k in ("b_ih", "b_hh") if params[k] is not None)
    return Call(
        ops.lstm_cell,
        params,
        7,
        _roles(params, _CELL),
        reference_of,
        lambda r, p: dict(enumerate(r)),
        optional=optional,
    )


def build_lstm_cell_backward(data):
    dtype = float_dtype(data)
    a = _lstm_arrays(data, dtype, False)
    shape = a["h"].shape
    params = {"grad_h_next": values(data, shape, dtype), "grad_c_next": values(data, shape, dtype), **a}
    names = ("grad_h_next", "grad_c_next") + _CELL

    def reference_of(p):
        grads = list(ref.lstm_cell_backward_ref(*(p[k] for k in names)))
        return {i: None if i >= 5 and p[_CELL[i]] is None else g for i, g in enumerate(grads)}

    optional = ("grad_h_next", "grad_c_next") + tuple(k for k in ("b_ih", "b_hh") if a[k] is not None)
    return Call(
        ops.lstm_cell_backward,
        params,
        9,
        _roles(params, names),
        reference_of,
        lambda r, p: dict(enumerate(r)),
        optional=optional,
    )


# ---- ops: GRU and RNN (the LSTM's arrays with 3 or 1 gate blocks and no c) -------------------------

_ONE_STATE = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")


def _recurrent_kind(data, name: str):
    """(gates, keywords of the op, the reference's nonlinearity keywords) of "gru" or "rnn"."""
    if name == "gru":
        return 3, {}, {}
    nl = data.draw(st.sampled_from(["tanh", "relu"]), label="nonlinearity")
    return 1, {"nonlinearity": nl}, {"nonlinearity": nl}


def _build_recurrent(name: str):
    """The fuzz entry of ops.gru or ops.rnn."""

    def build(data):
        dtype = float_dtype(data)
        gates, kw, ref_kw = _recurrent_kind(data, name)
        a = _lstm_arrays(data, dtype, True, gates)
        params = {"x": a["x"], "h0": a["h"], "w_ih": a["w_ih"], "w_hh": a["w_hh"], "b_ih": a["b_ih"], "b_hh": a["b_hh"]}
        params.update(reverse=data.draw(st.booleans(), label="reverse"), **kw)
        roles = _roles(params, _ONE_STATE)
        packed = _packed_params(params, roles, _batch_sizes(data, *a["x"].shape[:2]))
        refs = (ref.gru_ref, ref.gru_backward_ref) if name == "gru" else (ref.rnn_ref, ref.rnn_backward_ref)

        def reference_of(p):
            return dict(enumerate(_layer_ref(*refs, p, (p["h0"],), **ref_kw)))

        optional = tuple(k for k in ("h0", "b_ih", "b_hh") if params[k] is not None) + packed
        op = getattr(ops, name)
        return Call(
            op, params, 6, roles, reference_of, lambda r, p: dict(enumerate(r)), optional=optional, frozen=packed
        )

    return build


def _build_recurrent_backward(name: str):
    """The fuzz entry of ops.gru_backward or ops.rnn_backward."""

    def build(data):
        dtype = float_dtype(data)
        gates, kw, ref_kw = _recurrent_kind(data, name)
        a = _lstm_arrays(data, dtype, True, gates)
        reverse = data.draw(st.booleans(), label="reverse")
        t, b, h = a["x"].shape[0], a["x"].shape[1], a["h"].shape[1]
        sizes = _batch_sizes(data, t, b)
        *_, cache = getattr(ops, name)(
            a["x"], a["h"], a["w_ih"], a["w_hh"], reverse=reverse, return_cache=True, batch_sizes=sizes, **kw
        )
        params = {"grad_y": values(data, (t, b, h), dtype), "grad_h_T": values(data, (b, h), dtype)}
        params.update(x=a["x"], h0=a["h"], w_ih=a["w_ih"], w_hh=a["w_hh"], cache=cache, reverse=reverse)
        names = ("grad_y", "grad_h_T", "x", "h0", "w_ih", "w_hh")
        roles = _roles(params, names)
        roles.update({("cache", k): "cache" for k in range(2 if name == "gru" else 1)})
        refs = (ref.gru_ref, ref.gru_backward_ref) if name == "gru" else (ref.rnn_ref, ref.rnn_backward_ref)

        def reference_of(p):
            p = dict(p, batch_sizes=sizes)
            return dict(enumerate(_layer_ref(*refs, p, (p["h0"],), (p["grad_y"], p["grad_h_T"]), **ref_kw)[1]))

        op = getattr(ops, name + "_backward")
        return Call(
            op, params, 7, roles, reference_of, lambda r, p: dict(enumerate(r)), optional=names[:2], frozen=names[2:]
        )

    return build


def _build_recurrent_cell(name: str):
    """The fuzz entry of ops.gru_cell or ops.rnn_cell."""

    def build(data):
        dtype = float_dtype(data)
        gates, kw, ref_kw = _recurrent_kind(data, name)
        a = _lstm_arrays(data, dtype, False, gates)
        cell = ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh")
        params = {k: a[k] for k in cell}
        params.update(kw)
        reference = ref.gru_cell_ref if name == "gru" else ref.rnn_cell_ref

        def reference_of(p):
            return {0: reference(*(p[k] for k in cell), **ref_kw)}

        optional = ("h",) + tuple(k for k in ("b_ih", "b_hh") if a[k] is not None)
        op = getattr(ops, name + "_cell")
        return Call(op, params, 6, _roles(params, cell), reference_of, lambda r, p: {0: r}, optional=optional)

    return build


# ---- ops: optimizer steps --------------------------------------------------------------------------


def _optim(fn, multi: bool, states: dict, options: dict, reference, step_name=None):
    """An optimizer step: ``states`` name -> when it is used (options -> bool), ``options`` name ->
    values to draw from; ``reference`` the single-tensor float64 step returning the updated arrays
    in the order param, *states."""

    def build(data):
        dtype = float_dtype(data)
        count = data.draw(st.integers(0, 3), label="tensors") if multi else 1
        shapes = [_shape(data, max_ndim=3, max_elements=2048) for _ in range(count)]
        opts = {k: data.draw(st.sampled_from(v), label=k) for k, v in options.items()}
        used = {name: when(opts) for name, when in states.items()}
        plural = "s" if multi else ""
        per_tensor = []
        for shape in shapes:
            tensor = {"param": values(data, shape, dtype), "grad": values(data, shape, dtype)}
            for name in states:
                tensor[name] = np.asarray(np.abs(values(data, shape, dtype)) + (name == "square_avg"), dtype)
            if "grad_avg" in tensor:  # keeps square_avg - grad_avg**2 positive, as a real run does
                tensor["square_avg"] = np.asarray(tensor["square_avg"] + np.square(tensor["grad_avg"]), dtype)
            per_tensor.append(tensor)
        params = {}
        for name in ("param", "grad", *states):
            arrays = [t[name] for t in per_tensor]
            if used.get(name, True) or data.draw(st.booleans(), label="pass unused"):
                params[name + plural] = arrays if multi else arrays[0]
        roles = {}  # a state the options do not use is neither read nor written: any value goes
        for key in [k for k in params if used.get(k.removesuffix(plural), True)]:
            role = "in" if key.startswith("grad") and not key.startswith("grad_avg") else "inplace"
            roles.update({(key, i): role for i in range(count)} if multi else {key: role})
        if step_name:
            steps = [data.draw(st.integers(1, 5000), label="step") for _ in range(count)]
            opts[step_name] = steps if multi and data.draw(st.booleans(), label="list") else (steps or [1])[0]
        names = [k + plural for k in ("param", "grad")]
        positional = len([k for k in params if k.removesuffix("s") in ("param", "grad", *fn_positional(fn))])
        params.update(opts)

        def reference_of(p):
            out = {}
            for i in range(count):
                one = {k: (p[k + plural][i] if multi else p[k]) for k in states if k + plural in p and used[k]}
                pi, gi = (p[n][i] for n in names) if multi else (p[n] for n in names)
                kw = {k: v for k, v in p.items() if k in options}
                if step_name:
                    step = p[step_name]
                    kw["step"] = step[i] if isinstance(step, list) else step
                results = reference(pi, gi, **one, **kw)
                out[("param", i)] = results[0]
                for name, value in zip(states, results[1:]):
                    if used[name]:  # a state the (mutated) options leave unused must come back untouched
                        out[(name, i)] = one.get(name) if value is None else value
            return out

        def actual(result, p):
            assert result is None, f"returned {describe(result)}, not None"
            got = {}
            for i in range(count):
                for name in ("param", *states):
                    if name + plural in p:
                        got[(name, i)] = p[name + plural][i] if multi else p[name + plural]
            return got

        flags = ("nesterov", "maximize", "amsgrad", "centered", "first_step", "decoupled_weight_decay")
        numbers = tuple(k for k in options if k not in flags)
        ints = ()
        if step_name:
            ints = ((step_name, 0),) if isinstance(opts[step_name], list) else (step_name,)
            ints = ints if opts[step_name] != [] else ()
        return Call(fn, params, positional, roles, reference_of, actual, numbers=numbers, ints=ints)

    return build


def fn_positional(fn) -> list:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name.removesuffix("s") for p in inspect.signature(fn).parameters.values() if p.kind in kinds]


_SGD_OPTIONS = {
    "lr": [0.1, 0.01],
    "momentum": [0.0, 0.9],
    "dampening": [0.0, 0.1],
    "weight_decay": [0.0, 0.01],
    "nesterov": [False],
    "maximize": [False, True],
    "first_step": [False, True],
}
_ADAM_OPTIONS = {
    "lr": [1e-3, 0.1],
    "betas": [(0.9, 0.999), (0.5, 0.0)],
    "eps": [1e-8, 1e-3],
    "weight_decay": [0.0, 0.01],
    "amsgrad": [False, True],
    "maximize": [False, True],
}
_RMSPROP_OPTIONS = {
    "lr": [1e-2],
    "alpha": [0.99, 0.5],
    "eps": [1e-8, 1e-2],
    "weight_decay": [0.0, 0.1],
    "momentum": [0.0, 0.9],
    "centered": [False, True],
    "maximize": [False, True],
}


def _sgd(fn, multi):
    return _optim(fn, multi, {"momentum_buffer": lambda o: o["momentum"] != 0}, _SGD_OPTIONS, ref.sgd_step_ref)


def _adam(fn, multi, decoupled: bool):
    options = dict(_ADAM_OPTIONS)
    if fn in (ops.adam_step, ops.adam_step_multi):
        options["decoupled_weight_decay"] = [decoupled]

    def reference(*args, **kw):
        kw.setdefault("decoupled_weight_decay", True)
        return ref.adam_step_ref(*args, **kw)

    states = {"exp_avg": lambda o: True, "exp_avg_sq": lambda o: True, "max_exp_avg_sq": lambda o: o["amsgrad"]}
    return _optim(fn, multi, states, options, reference, "steps" if multi else "step")


def _rmsprop(fn, multi):
    states = {
        "square_avg": lambda o: True,
        "momentum_buffer": lambda o: o["momentum"] > 0,
        "grad_avg": lambda o: o["centered"],
    }
    return _optim(fn, multi, states, _RMSPROP_OPTIONS, ref.rmsprop_step_ref)


# ---- deepkern._C kernels: the call an op makes, then mutated --------------------------------------

#: The arrays each kernel binding writes (the others it reads).
C_OUTPUTS = {
    "gemm": {"c"},
    "conv2d_forward": {"y"},
    "conv2d_backward_data": {"grad_x"},
    "conv2d_backward_weight": {"grad_w", "grad_bias"},
    "max_pool2d": {"out", "indices"},
    "max_pool2d_backward": {"grad_x"},
    "avg_pool2d": {"out"},
    "avg_pool2d_backward": {"grad_x"},
    "adaptive_avg_pool2d": {"out"},
    "adaptive_avg_pool2d_backward": {"grad_x"},
    "batch_norm_forward": {"running_mean", "running_var", "out", "save_mean", "save_invstd"},
    "batch_norm_backward": {"grad_x", "grad_weight", "grad_bias"},
    "layer_norm_forward": {"out", "save_mean", "save_rstd"},
    "layer_norm_backward": {"grad_x", "grad_weight", "grad_bias"},
    "group_norm_forward": {"out", "save_mean", "save_rstd"},
    "group_norm_backward": {"grad_x", "grad_weight", "grad_bias"},
    "lstm_forward": {"y", "h_last", "c_last", "gates", "cells", "hidden"},
    "lstm_backward": {"grad_x", "grad_h0", "grad_c0", "grad_w_ih", "grad_w_hh", "grad_bias"},
    "gru_forward": {"y", "h_last", "gates", "hidden"},
    "gru_backward": {"grad_x", "grad_h0", "grad_w_ih", "grad_w_hh", "grad_b_ih", "grad_b_hh"},
    "rnn_forward": {"y", "h_last", "hidden"},
    "rnn_backward": {"grad_x", "grad_h0", "grad_w_ih", "grad_w_hh", "grad_bias"},
    "sgd_step": {"params", "momentum_buffers"},
    "adam_step": {"params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"},
    "rmsprop_step": {"params", "square_avgs", "momentum_buffers", "grad_avgs"},
    "relu": {"out"},
    "relu_backward": {"out"},
    "gelu": {"out"},
    "gelu_backward": {"out"},
    "softmax": {"out"},
    "softmax_backward": {"out"},
    "cross_entropy_forward": {"loss", "stats"},
    "cross_entropy_backward": {"out"},
    "dropout": {"y", "mask"},
    "dropout_backward": {"out"},
    "attention_forward": {"o", "lse"},
    "attention_backward": {"dq", "dk", "dv"},
}
#: Written arrays that kernels also read (updated in place), besides the optimizer steps' states.
C_UPDATED = {"running_mean", "running_var"}
#: The op whose valid calls reach each kernel binding.
C_VIA = {
    "gemm": "linear",
    "conv2d_forward": "conv2d",
    "conv2d_backward_data": "conv2d_backward",
    "conv2d_backward_weight": "conv2d_backward",
    "max_pool2d": "max_pool2d",
    "max_pool2d_backward": "max_pool2d_backward",
    "avg_pool2d": "avg_pool2d",
    "avg_pool2d_backward": "avg_pool2d_backward",
    "adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward": "adaptive_avg_pool2d_backward",
    "batch_norm_forward": "batch_norm",
    "batch_norm_backward": "batch_norm_backward",
    "layer_norm_forward": "layer_norm",
    "layer_norm_backward": "layer_norm_backward",
    "group_norm_forward": "group_norm",
    "group_norm_backward": "group_norm_backward",
    "lstm_forward": "lstm",
    "lstm_backward": "lstm_backward",
    "gru_forward": "gru",
    "gru_backward": "gru_backward",
    "rnn_forward": "rnn",
    "rnn_backward": "rnn_backward",
    "sgd_step": "sgd_step_multi",
    "adam_step": "adam_step_multi",
    "rmsprop_step": "rmsprop_step_multi",
    "relu": "relu",
    "relu_backward": "relu_backward",
    "gelu": "gelu",
    "gelu_backward": "gelu_backward",
    "softmax": "log_softmax",
    "softmax_backward": "softmax_backward",
    "cross_entropy_forward": "cross_entropy",
    "cross_entropy_backward": "cross_entropy_backward",
    "dropout": "dropout",
    "dropout_backward": "dropout_backward",
    "attention_forward": "scaled_dot_product_attention",
    "attention_backward": "scaled_dot_product_attention_backward",
}


def recorded_kernel_call(data, kernel: str):
    """The arguments (before) and the written arrays (after) of the first call of ``_C.<kernel>``
    that a valid call of its op makes, or None when the op made none (empty sizes)."""
    real = getattr(_C, kernel)
    seen = []

    def recorder(*args):
        if not seen:
            seen.append(snapshot(dict(enumerate(args))))
        real(*args)
        if len(seen) == 1:
            seen.append(snapshot(dict(enumerate(args))))

    op_call = REGISTRY[C_VIA[kernel]](data)
    if op_call.expected:  # a call the op refuses (or may refuse): no valid kernel call to start from
        return None
    setattr(CPUBackend, kernel, staticmethod(recorder))
    try:
        op_call.invoke()
    finally:
        setattr(CPUBackend, kernel, staticmethod(real))
    return seen if len(seen) == 2 else None


def c_kernel(kernel: str):
    fn = getattr(_C, kernel)
    names = re.findall(r"(\w+):", fn.__doc__.split("\n", 1)[0])

    def build(data):
        seen = recorded_kernel_call(data, kernel)
        if seen is None:
            return Call(fn, {}, 0, {}, None, None, compare=False, mutation="no kernel call")
        before, after = seen
        params = {names[i]: v for i, v in before.items()}
        written = C_OUTPUTS[kernel]
        roles = {}
        for slot in array_slots(params):
            name = slot[0] if isinstance(slot, tuple) else slot
            roles[slot] = "index" if get(params, slot).dtype == np.int64 else "in"
            if name in written:
                roles[slot] = "inplace"  # a binding takes only C-contiguous arrays it writes
        ints = tuple(n for n, v in params.items() if isinstance(v, int) and not isinstance(v, bool))
        ints += tuple(
            (n, i) for n, v in params.items() if isinstance(v, (tuple, list)) for i, x in enumerate(v) if type(x) is int
        )
        numbers = tuple(n for n, v in params.items() if isinstance(v, float))
        want = {}
        for slot in array_slots(params):
            name = slot[0] if isinstance(slot, tuple) else slot
            if name in written:
                index = names.index(name)
                want[slot] = get(after, (index, slot[1]) if isinstance(slot, tuple) else index)

        def actual(result, p):
            return {slot: get(p, slot) for slot in want}

        for slot in want:  # what the kernel only writes starts as NaN (-7 for indices)
            arr = get(params, slot)
            if not kernel.endswith("_step") and (slot[0] if isinstance(slot, tuple) else slot) not in C_UPDATED:
                arr[...] = -7 if arr.dtype.kind == "i" else np.nan
        call = Call(fn, params, len(params), roles, lambda p: want, actual, ints=ints, numbers=numbers, strict=True)
        call.any_strides = ("a", "b", "c") if kernel == "gemm" else ()
        return call

    return build


def build_c_cast(data):
    """_C.cast(src, out), float32 -> bfloat16 or back, any shape, against NumPy's conversion. No NaN
    among the values (bfloat16 arrays compare NaN as unequal), out pre-filled with -7."""
    shape, narrowing = _shape(data), data.draw(st.booleans(), label="float32 -> bfloat16")
    wide = values(data, shape, F32)
    src = wide if narrowing else wide.astype(BF16)
    target = BF16 if narrowing else F32
    want = {"out": src.astype(target)}
    params = {"src": src, "out": np.full(shape, -7, target)}
    return Call(
        _C.cast, params, 2, {"src": "in", "out": "inplace"}, lambda p: want, lambda r, p: {"out": p["out"]}, strict=True
    )


# ---- deepkern._C: the machine and dispatch functions ---------------------------------------------

ISA_NAMES = ("generic", "avx2", "avx512", "amx")
TEXT = st.sampled_from(["", "avx", "AVX2", "generic ", "gemm", "conv_winograd", "x" * 300, "\0", "é"])


def build_set_num_threads(data):
    n = data.draw(st.sampled_from([1, 2, 3, 7] + list(ABSURD_INTS) + [None, "2", 1.5, True]), label="n")
    valid = isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 64
    before = _C.get_num_threads()

    def fn(n):
        try:
            _C.set_num_threads(n)
            got = _C.get_num_threads()
            result = ops.relu(np.linspace(-1, 1, 100_003))  # a kernel runs with that many threads
            return got, result
        finally:
            _C.set_num_threads(before)

    def reference_of(p):
        return {"threads": np.array([p["n"]]), "relu": ref.relu_ref(np.linspace(-1, 1, 100_003))}

    def actual(result, p):
        return {"threads": np.array([result[0]]), "relu": result[1]}

    call = Call(fn, {"n": n}, 1, {}, reference_of, actual, mutation=f"n={n!r}")
    call.expected = ACCEPT if valid else EITHER
    return call


def build_set_active_isa(data):
    isa = data.draw(st.sampled_from(ISA_NAMES) | TEXT, label="isa")
    supported = ISA_NAMES[: ISA_NAMES.index(_C.detected_isa()) + 1]
    before = _C.active_isa()

    def fn(isa):
        try:
            _C.set_active_isa(isa)
            return _C.active_isa()
        finally:
            _C.set_active_isa(before)

    call = Call(fn, {"isa": isa}, 1, {}, None, None, compare=False, mutation=f"isa={isa!r}")
    call.expected = ACCEPT if isa in supported else REFUSE if isa not in ISA_NAMES else EITHER
    return call


def _plain(fn, arg_strategies: dict, valid):
    """A non-kernel _C function: arguments drawn from ``arg_strategies``; ``valid(args)``: True
    (must be accepted), False (must be refused) or None (either)."""

    def build(data):
        params = {k: data.draw(s, label=k) for k, s in arg_strategies.items()}
        call = Call(fn, params, len(params), {}, None, None, compare=False, mutation=repr(params))
        verdict = valid(params)
        call.expected = ACCEPT if verdict else EITHER if verdict is None else REFUSE
        return call

    return build


def _finite_small(v):
    return isinstance(v, float) and 0 < v <= 0.01


FAMILY_NAMES = tuple(_C.isa_families())

# ---- the registry ---------------------------------------------------------------------------------

REGISTRY = {
    "relu": _activation(ops.relu, ref.relu_ref, False, False),
    "relu_backward": _activation(ops.relu_backward, ref.relu_backward_ref, True, False),
    "gelu": _activation(ops.gelu, ref.gelu_ref, False, True),
    "gelu_backward": _activation(ops.gelu_backward, ref.gelu_backward_ref, True, True),
    "softmax": _softmax(ops.softmax, False, False),
    "log_softmax": _softmax(ops.log_softmax, False, True),
    "softmax_backward": _softmax(ops.softmax_backward, True, False),
    "log_softmax_backward": _softmax(ops.log_softmax_backward, True, True),
    "cross_entropy": build_cross_entropy,
    "cross_entropy_backward": build_cross_entropy_backward,
    "dropout": build_dropout,
    "dropout_backward": build_dropout_backward,
    "scaled_dot_product_attention": build_attention,
    "scaled_dot_product_attention_backward": build_attention_backward,
    "matmul": build_matmul,
    "gemm": build_gemm,
    "linear": build_linear,
    "conv2d": build_conv2d,
    "conv2d_backward": build_conv2d_backward,
    "conv_transpose2d": build_conv_transpose2d,
    "conv_transpose2d_backward": build_conv_transpose2d_backward,
    "max_pool2d": build_max_pool2d,
    "max_pool2d_backward": build_max_pool2d_backward,
    "avg_pool2d": build_avg_pool2d,
    "avg_pool2d_backward": build_avg_pool2d_backward,
    "adaptive_avg_pool2d": build_adaptive_avg_pool2d,
    "adaptive_avg_pool2d_backward": build_adaptive_avg_pool2d_backward,
    "batch_norm": build_batch_norm,
    "batch_norm_backward": build_batch_norm_backward,
    "layer_norm": build_layer_norm,
    "layer_norm_backward": build_layer_norm_backward,
    "group_norm": build_group_norm,
    "group_norm_backward": build_group_norm_backward,
    "lstm": build_lstm,
    "lstm_backward": build_lstm_backward,
    "lstm_cell": build_lstm_cell,
    "lstm_cell_backward": build_lstm_cell_backward,
    **{name: _build_recurrent(name) for name in ("gru", "rnn")},
    **{name + "_backward": _build_recurrent_backward(name) for name in ("gru", "rnn")},
    **{name + "_cell": _build_recurrent_cell(name) for name in ("gru", "rnn")},
    "sgd_step": _sgd(ops.sgd_step, False),
    "sgd_step_multi": _sgd(ops.sgd_step_multi, True),
    "adam_step": _adam(ops.adam_step, False, False),
    "adam_step_multi": _adam(ops.adam_step_multi, True, False),
    "adamw_step": _adam(ops.adamw_step, False, True),
    "adamw_step_multi": _adam(ops.adamw_step_multi, True, True),
    "rmsprop_step": _rmsprop(ops.rmsprop_step, False),
    "rmsprop_step_multi": _rmsprop(ops.rmsprop_step_multi, True),
}
REGISTRY.update({f"_C.{k}": c_kernel(k) for k in C_OUTPUTS})
REGISTRY.update(
    {
        "_C.set_num_threads": build_set_num_threads,
        "_C.cast": build_c_cast,
        "_C.set_active_isa": build_set_active_isa,
        "_C.get_num_threads": _plain(_C.get_num_threads, {}, lambda p: True),
        "_C.active_isa": _plain(_C.active_isa, {}, lambda p: True),
        "_C.detected_isa": _plain(_C.detected_isa, {}, lambda p: True),
        "_C.cpu_brand": _plain(_C.cpu_brand, {}, lambda p: True),
        "_C.isa_families": _plain(_C.isa_families, {}, lambda p: True),
        "_C.reset_isa_records": _plain(_C.reset_isa_records, {}, lambda p: True),
        "_C.gemm_kernel_name": _plain(
            _C.gemm_kernel_name,
            {"double_precision": st.sampled_from([True, False, None, 0, 2**63, "x"])},
            lambda p: isinstance(p["double_precision"], bool) or None,
        ),
        "_C.gemm_bf16_kernel_name": _plain(_C.gemm_bf16_kernel_name, {}, lambda p: True),
        "_C.last_conv2d_forward_path": _plain(_C.last_conv2d_forward_path, {}, lambda p: True),
        "_C.last_gemm_path": _plain(_C.last_gemm_path, {}, lambda p: True),
        "_C.last_gemm_bf16_path": _plain(_C.last_gemm_bf16_path, {}, lambda p: True),
        "_C.last_winograd_tile": _plain(_C.last_winograd_tile, {}, lambda p: True),
        "_C.conv2d_pack_winograd_weights": _plain(
            _C.conv2d_pack_winograd_weights,
            {
                "w": st.sampled_from(
                    [np.ones((64, 64, 3, 3), np.float32), np.ones((4, 2, 3, 3)), np.ones(3), np.ones((2, 2), int)]
                )
                | st.sampled_from([None, "x"]),
                **{
                    name: st.sampled_from([(1, 1), (2, 1), (0, 0), (-1, 1), (2**63, 1), None, 1])
                    for name in ("stride", "padding", "dilation")
                },
                "groups": st.sampled_from([1, 2, 0, -1, 2**63, None]),
            },
            lambda p: None,
        ),
        "_C.conv2d_pack_gemm_weights": _plain(
            _C.conv2d_pack_gemm_weights,
            {
                "w": st.sampled_from(
                    [np.ones((99, 40, 3, 3), np.float32), np.ones((4, 2, 3, 3)), np.ones(3), np.ones((2, 2), int)]
                )
                | st.sampled_from([None, "x"]),
                **{
                    name: st.sampled_from(
                        [
                            (1, 40, 7, 7),
                            (1, 99, 7, 7),
                            (1, 4, 5, 5),
                            (0, 4, 5, 5),
                            (1, 40, 7),
                            (-1, 40, 7, 7),
                            (2**63, 1, 1, 1),
                            None,
                        ]
                    )
                    for name in ("x_shape", "y_shape")
                },
                **{
                    name: st.sampled_from([(1, 1), (2, 1), (0, 0), (-1, 1), (2**63, 1), None, 1])
                    for name in ("stride", "padding", "dilation")
                },
                "groups": st.sampled_from([1, 2, 0, -1, 2**63, None]),
            },
            lambda p: None,
        ),
        "_C.last_isa": _plain(
            _C.last_isa,
            {"family": st.sampled_from(FAMILY_NAMES) | TEXT | st.sampled_from([None, 3])},
            lambda p: p["family"] in FAMILY_NAMES or (False if not isinstance(p["family"], str) else None),
        ),
        "_C.measure_fma_gflops": _plain(
            _C.measure_fma_gflops,
            {
                "isa": st.sampled_from(ISA_NAMES[: ISA_NAMES.index(_C.detected_isa()) + 1]) | TEXT,
                "threads": st.sampled_from([1, 2] + list(ABSURD_INTS)),
                "seconds": st.sampled_from([0.001, 0.005] + list(ABSURD_NUMBERS)),
            },
            lambda p: None,
        ),
        "_C.measure_bf16_gflops": _plain(
            _C.measure_bf16_gflops,
            {
                "threads": st.sampled_from([1, 2] + list(ABSURD_INTS)),
                "seconds": st.sampled_from([0.001, 0.005] + list(ABSURD_NUMBERS)),
            },
            lambda p: None,
        ),
        "_C.measure_copy_gbps": _plain(
            _C.measure_copy_gbps,
            {
                # not 2**31: a valid size, but 4 GiB of buffers
                "bytes": st.sampled_from([64, 4096, 100_000, -1, 0, 63, 2**62, 2**63, -(2**63), 10**30, 1.5]),
                "threads": st.sampled_from([1, 2] + list(ABSURD_INTS)),
                "repeats": st.sampled_from([1, 3] + list(ABSURD_INTS)),
            },
            lambda p: None,
        ),
    }
)


# ---- the command --------------------------------------------------------------------------------


def main(argv=None) -> int:
    """Runs the named ops' examples, logging as the module docstring says; exit status 0 unless
    the arguments are wrong (failures are in the log)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--log", required=True)
    parser.add_argument("--examples", type=int, required=True)
    parser.add_argument("--exclude", default="{}", help="JSON: op -> regex of inputs to leave out")
    parser.add_argument("ops", nargs="+", choices=sorted(REGISTRY))
    args = parser.parse_args(argv)
    EXCLUDED.update({op: re.compile(pattern) for op, pattern in json.loads(args.exclude).items()})
    with open(args.log, "a", encoding="utf-8", buffering=1) as log_file:

        def log(line: str) -> None:
            log_file.write(line.replace("\n", " ") + "\n")
            log_file.flush()

        for name in args.ops:
            log(f"START {name}")
            try:
                run_op(name, args.examples, log)
            except Exception:
                log(f"FAIL {name} {json.dumps(traceback.format_exc(limit=-3))}")
            else:
                log(f"PASS {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
