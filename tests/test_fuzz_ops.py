"""Property-based fuzzing of every public op (``deepkern.ops`` and ``deepkern._C``), each batch of
ops in a child process (tests/fuzz_worker.py), so a crash or a hang fails the test naming the op
and its last input.

DEEPKERN_FUZZ_EXAMPLES sets the examples per op (default 100, about 20 s; run e.g. 2000 locally to hunt bugs);
the examples are derandomized, so a run is reproducible. DEEPKERN_FUZZ_TIMEOUT bounds each child
(seconds, default 240).
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys

import deepkern
import fuzz_worker
import numpy as np
import pytest

EXAMPLES = int(os.environ.get("DEEPKERN_FUZZ_EXAMPLES", "100"))
TIMEOUT = float(os.environ.get("DEEPKERN_FUZZ_TIMEOUT", "240"))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_worker.py")

#: Inputs left out until their fix lands: op -> regex over the input's description (the INPUT line
#: of the worker's log), with what fails. Remove an entry when the fix is in.
EXCLUDED: dict = {}

#: Public names of deepkern.ops that are not ops.
NOT_OPS = {
    "LSTMCache": "the cache type lstm returns",
    "GRUCache": "the cache type gru returns",
    "RNNCache": "the cache type rnn returns",
    "ConvPlan": "the packed weights conv2d takes in place of w",
}
#: deepkern._C attributes that are not functions.
NOT_C_FUNCTIONS = {"compiler", "__version__", "compiled_isas", "build_options"}


def batch_of(name: str) -> str:
    """The batch (one child process) an op runs in: its module's family (deepkern.ops.<family>),
    or the _C kernels, or the other _C functions."""
    if name.startswith("_C."):
        return "_C kernels" if name[3:] in fuzz_worker.C_OUTPUTS else "_C machine"
    return getattr(deepkern.ops, name).__module__.rsplit(".", 1)[-1]


BATCHES: dict = {}
for _name in fuzz_worker.REGISTRY:
    BATCHES.setdefault(batch_of(_name), []).append(_name)


def public_ops() -> set:
    """Every public function of deepkern.ops and deepkern._C (the latter as "_C.name")."""
    names = {n for n in deepkern.ops.__all__ if n not in NOT_OPS}
    names |= {n for n, v in vars(deepkern.ops).items() if inspect.isfunction(v) and not n.startswith("_")}
    c_names = {n for n in dir(deepkern._C) if not n.startswith("_") and n not in NOT_C_FUNCTIONS}
    return names | {f"_C.{n}" for n in c_names}


def test_every_public_op_has_a_fuzz_entry():
    registry = set(fuzz_worker.REGISTRY)
    missing, unknown = public_ops() - registry, registry - public_ops()
    assert not missing, f"public ops without a fuzz entry in tests/fuzz_worker.py REGISTRY: {sorted(missing)}"
    assert not unknown, f"fuzz entries for names that are not public ops: {sorted(unknown)}"


def parse_log(path: str) -> tuple:
    """(results: op -> None (passed) or the failure, the op running last, its last input)."""
    results, current, last_input = {}, None, ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            kind, _, rest = line.rstrip("\n").partition(" ")
            name, _, detail = rest.partition(" ")
            if kind == "START":
                current, last_input = name, ""
            elif kind == "INPUT":
                last_input = detail
            elif kind == "PASS":
                results[name], current = None, None
            elif kind == "FAIL":
                results[name], current = json.loads(detail), None
    return results, current, last_input


def run_batch(ops: list, log_path: str) -> dict:
    """op -> None or its failure; a child that dies or hangs fails its op, and the ops after it
    run in a new child."""
    results, pending = {}, list(ops)
    while pending:
        cmd = [sys.executable, WORKER, "--log", log_path, "--examples", str(EXAMPLES), "--exclude"]
        cmd += [json.dumps(EXCLUDED), *pending]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
            died = proc.returncode != 0
            how = f"exit status {proc.returncode}"
            if proc.returncode < 0:
                how = f"signal {signal.Signals(-proc.returncode).name}"
            output = (proc.stdout + proc.stderr)[-2000:]
        except subprocess.TimeoutExpired as err:
            died, how = True, f"no end within {TIMEOUT:g} s (a hang?)"
            output = ((err.stdout or b"") + (err.stderr or b""))[-2000:].decode(errors="replace")
        found, current, last_input = parse_log(log_path)
        results.update(found)
        if not died:
            missing = [op for op in pending if op not in results]
            assert not missing, f"the worker ended without running {missing}:\n{output}"
            break
        if current is None:  # it died before starting an op (an import error, bad arguments)
            pytest.fail(f"the fuzz worker failed ({how}) before running an op:\n{output}")
        results[current] = f"the process died ({how}) on the input:\n{last_input}\n{output}"
        pending = pending[pending.index(current) + 1 :]
    return results


@pytest.mark.parametrize("batch", sorted(BATCHES))
def test_fuzz(batch, tmp_path):
    results = run_batch(BATCHES[batch], str(tmp_path / "fuzz.log"))
    failures = {op: why for op, why in results.items() if why is not None}
    report = "\n\n".join(f"--- {op}:\n{why}" for op, why in sorted(failures.items()))
    assert not failures, f"{len(failures)} of {len(results)} ops failed the fuzz property:\n{report}"


# ---- what the fuzzing found, as plain regression tests (each ran into a crash, a hang or a bad message)


def _f32(*shape):
    return np.linspace(-1.0, 1.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda p, g: deepkern._C.sgd_step([p], [g], None, None, 0.1, 0.9, 0.0, 0.0, False, False), "momentum_buffers"),
        (
            lambda p, g: deepkern._C.adam_step(
                [p], [g], [p * 0], [p * 0], None, [1], 0.1, 0.9, 0.99, 1e-8, 0.0, True, False, False
            ),
            "max_exp_avg_sqs",
        ),
        (
            lambda p, g: deepkern._C.rmsprop_step(
                [p], [g], [p * 0], None, [p * 0], 0.1, 0.9, 1e-8, 0.0, 0.5, True, False
            ),
            "momentum_buffers",
        ),
        (
            lambda p, g: deepkern._C.rmsprop_step([p], [g], [p * 0], None, None, 0.1, 0.9, 1e-8, 0.0, 0.0, True, False),
            "grad_avgs",
        ),
    ],
)
def test_optimizer_binding_refuses_a_missing_state_it_would_use(call, needle):
    param, grad = _f32(5), _f32(5)
    before = param.copy()
    with pytest.raises(ValueError, match=needle):
        call(param, grad)
    np.testing.assert_array_equal(param, before)


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), 0.0, -1.0, 1e300])
def test_fma_peak_refuses_a_duration_it_cannot_keep(seconds):
    with pytest.raises(ValueError, match="seconds"):
        deepkern._C.measure_fma_gflops(deepkern._C.active_isa(), 1, seconds)


@pytest.mark.parametrize(
    "args, needle",
    [
        ((64, 1, 0), "repeats"),
        ((64, 1, 2**31 - 1), "repeats"),
        ((2**62, 1, 1), "bytes"),
        ((64, 2**31 - 1, 1), "threads"),
    ],
)
def test_copy_bandwidth_refuses_absurd_arguments(args, needle):
    with pytest.raises(ValueError, match=needle):
        deepkern._C.measure_copy_gbps(*args)


def test_set_num_threads_names_its_argument():
    before = deepkern._C.get_num_threads()
    with pytest.raises(ValueError, match=r"set_num_threads\(n\): num_threads must be >= 1, got 0"):
        deepkern._C.set_num_threads(0)
    assert deepkern._C.get_num_threads() == before


def test_an_unaligned_out_is_refused_naming_out():
    raw = np.zeros(4 * 6 + 1, np.uint8)
    out = raw[1:].view(np.float32).reshape(2, 3)
    assert not out.flags.aligned
    for call in (
        lambda: deepkern.ops.matmul(_f32(2, 4), _f32(4, 3), out=out),
        lambda: deepkern.ops.relu(_f32(2, 3), out=out),
    ):
        with pytest.raises(ValueError, match="out is not aligned"):
            call()
    assert not out.any()


def test_an_unaligned_grad_is_converted_by_the_optimizer_step():
    raw = np.zeros(4 * 5 + 1, np.uint8)
    grad = raw[1:].view(np.float32)
    grad[...] = _f32(5)
    param = _f32(5)
    want = param - 0.1 * grad
    deepkern.ops.sgd_step(param, grad, lr=0.1)
    np.testing.assert_allclose(param, want, rtol=1e-6)
