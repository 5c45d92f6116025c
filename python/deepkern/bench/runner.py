"""Running a suite: every case at each thread count on deepkern and each reference, in rounds of
alternating library order (:func:`run_suite`). A suite's GPU cases (``Case.device == "cuda"``) run
on their own (``device="cuda"``): inputs moved to the GPU once per library, calls timed with CUDA
events, memory-bound cases beside a device-to-device copy of the same bytes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

from .. import _C
from ..backends import get as get_backend_of_device
from .libraries import (
    backends,
    cuda_unavailable,
    idle_pause_s,
    installed_torch,
    limit_threads,
    threadpoolctl_available,
)
from .machine import NOISY_CORES, OtherLoad, machine_info
from .peak import measure_bf16_peak, measure_peak
from .registry import Suite
from .report import Report, Row
from .timing import Timing, time_cuda_fn, time_fn

#: ``deepkern bench`` times each line's libraries in this many rounds, in alternating order, and takes
#: each library's median over all its calls: a slow spell of a shared machine then falls on both
#: sides instead of on one library's block.
ROUNDS = 3


def _log(progress, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def run_suite(
    suite: Suite,
    threads: Sequence[int],
    *,
    quick: bool = False,
    repeats: Optional[int] = None,
    references: Optional[Sequence[str]] = None,
    progress: bool = True,
    peak_stream_bytes: Optional[int] = None,
    check: bool = True,
    device: str = "cpu",
) -> Report:
    """Time every case of ``suite`` for ``device`` at each thread count on deepkern and each reference.

    Loops case by case (inputs are made once per case), then thread count, then :data:`ROUNDS` rounds
    of every library in alternating order (one round with ``quick``), so each comparison is taken
    at nearly the same moments. ``references`` defaults to every installed one. With
    ``device="cuda"`` see :func:`run_cuda_cases`.
    """
    if device == "cuda":
        return run_cuda_cases(
            suite, quick=quick, repeats=repeats, references=references, progress=progress, check=check
        )
    start = time.perf_counter()
    notes: List[str] = []
    whole_run = OtherLoad()
    machine = machine_info()  # dated when the run starts
    reason = suite.unavailable()
    if reason:
        return Report(
            rows=[],
            machine=machine,
            peaks={},
            notes=[f"{suite.name} skipped: {reason}"],
            wall_s=time.perf_counter() - start,
        )
    threads = [int(t) for t in threads]
    all_backends = [b for b in backends() if b.available()]
    ref_names = [b.name for b in all_backends if b.name != "deepkern"]
    if references is not None:
        ref_names = [r for r in ref_names if r in references]
    if installed_torch() is None:
        notes.append(
            'PyTorch is not installed: comparing with NumPy only (install the bench extra: pip install ".[bench]").'
        )
    if not threadpoolctl_available():
        default = _C.get_num_threads()
        skipped = [t for t in threads if t != default]
        if skipped:
            notes.append(
                f"threadpoolctl is not installed, so NumPy's BLAS threads cannot be set: only the default "
                f"thread count ({default}) is compared fairly; skipped threads={skipped} (pip install threadpoolctl)."
            )
        else:
            notes.append("threadpoolctl is not installed: NumPy runs at its default thread count.")
        threads = [t for t in threads if t == default] or [default]
    names = ["deepkern"] + ref_names
    used = {b.name: b for b in all_backends if b.name in names}

    stream_bytes = peak_stream_bytes if peak_stream_bytes is not None else ((128 << 20) if quick else (512 << 20))
    peaks = {}
    for t in threads:
        _log(progress, f"measuring peak at {t} thread(s) ...")
        peaks[t] = measure_peak(t, stream_bytes=stream_bytes, fma_seconds=0.1 if quick else 0.2)

    rows: List[Row] = []
    cases = [case for case in suite.cases(quick) if case.device == "cpu"]
    rounds = 1 if quick else ROUNDS
    timer_kw = (
        dict(target_s=0.05, max_repeats=20, max_block_s=1.0)
        if quick
        else dict(target_s=0.2 / rounds, min_repeats=2, max_repeats=100 // rounds, max_block_s=2.0 / rounds)
    )
    block_repeats = None if repeats is None else max(1, -(-int(repeats) // rounds))
    prev_threads = max(threads)
    # A suite that does not time NumPy keeps its BLAS at one thread: re-sized OpenBLAS workers
    # otherwise spin on the cores the timed libraries use (measured: LSTM batch 1 at 2 threads
    # 0.42 ms instead of 0.32 ms after the 1-thread blocks).
    blas_limit = contextlib.ExitStack()
    if "numpy" in used and not any("numpy" in case.impls for case in cases):
        blas_limit.enter_context(used["numpy"].threads(1))
    with blas_limit:
        for index, case in enumerate(cases, 1):
            np_inputs = case.make_inputs()
            converted = {name: [tuple(used[name].convert(x) for x in s) for s in np_inputs] for name in names}
            rel_err = None
            if check and case.check is not None:
                with limit_threads(max(threads), ["deepkern"]):
                    rel_err = case.check(np_inputs[0])
                if rel_err > case.tolerance:
                    notes.append(
                        f"{case.op} {case.name} {case.layout}: deepkern's relative error {rel_err:.2e} vs float64"
                    )
            for t in threads:
                line_load = OtherLoad()
                timed = [name for name in names if name in case.impls]
                blocks: Dict[str, List[Timing]] = {name: [] for name in timed}
                prev_name = None
                for r in range(rounds):
                    for name in timed if r % 2 == 0 else timed[::-1]:
                        spinning = prev_name is None or prev_name == "numpy" or t != prev_threads
                        pause = idle_pause_s(max(t, prev_threads)) if spinning else 0.0
                        count = block_repeats if r == 0 else blocks[name][0].repeats  # later rounds: as many
                        with used[name].threads(t):
                            blocks[name].append(
                                time_fn(
                                    case.impls[name],
                                    converted[name],
                                    repeats=count,
                                    warmup=1 if r == 0 else 0,
                                    pause_s=pause,
                                    **timer_kw,
                                )
                            )
                        prev_threads, prev_name = t, name
                timings: Dict[str, Timing] = {name: Timing.merged(b) for name, b in blocks.items()}
                other = line_load.cores()
                dk = timings["deepkern"]
                peak = peaks[t]
                if case.metric == "bytes":
                    work, unit, peak_rate, roof = case.nbytes, "GB/s", peak.stream_gbps, peak.stream_gbps
                else:
                    if case.metric == "bf16_flops":  # against the bfloat16 GEMM's own peak
                        peak = dataclasses.replace(peak, fma_gflops=measure_bf16_peak(t))
                    work, unit, peak_rate = case.flops, "GFLOP/s", peak.fma_gflops
                    roof = peak.roofline_gflops(case.flops, case.nbytes)
                for ref in ref_names:
                    if ref in timings:
                        rows.append(_row(case, t, dk, ref, timings[ref], work, unit, peak_rate, roof, rel_err, other))
                parts = ", ".join(f"{name} {timings[name].median * 1e3:.3f} ms" for name in timings)
                noisy = f" (noisy: other processes used {other:.2f} cores)" if other and other > NOISY_CORES else ""
                _log(
                    progress, f"[{index}/{len(cases)}] {case.op} {case.name} {case.layout} threads={t}: {parts}{noisy}"
                )
            del np_inputs, converted
    other = whole_run.cores()
    machine["other_processes_cores"] = other
    noisy_lines = len(
        {(r.case, r.layout, r.threads) for r in rows if r.other_cores is not None and r.other_cores > NOISY_CORES}
    )
    if other is not None and (other > 0.1 or noisy_lines):
        notes.append(
            f"other processes kept {other:.2f} of {os.cpu_count()} cores busy on average during the run; "
            f"{noisy_lines} line(s) marked * were timed while they used more than {NOISY_CORES} core: "
            f"those times are noisy."
        )
    return Report(rows=rows, machine=machine, peaks=peaks, notes=notes, wall_s=time.perf_counter() - start)


#: The reference row of a memory-bound GPU case: a device-to-device copy of the case's bytes (half
#: read, half written), timed in the same run; its ratio is deepkern's share of the copy's bandwidth.
COPY_REFERENCE = "d2d copy"


def run_cuda_cases(
    suite: Suite,
    *,
    quick: bool = False,
    repeats: Optional[int] = None,
    references: Optional[Sequence[str]] = None,
    progress: bool = True,
    check: bool = True,
) -> Report:
    """Time the GPU cases of ``suite``: each library's inputs moved to the GPU once, then
    :data:`ROUNDS` rounds (one with ``quick``) of every library in alternating order, each call timed
    between CUDA events (:func:`time_cuda_fn`); ``repeats`` calls per library (default 20, 6 with
    ``quick``). Rows have threads 0 (the GPU's); a memory-bound case also gets a row against a
    device-to-device copy of the same bytes (:data:`COPY_REFERENCE`), whose bandwidth is its peak."""
    start = time.perf_counter()
    machine = machine_info()
    reason = suite.unavailable() or cuda_unavailable()
    if reason:
        return Report(rows=[], machine=machine, peaks={}, notes=[f"{suite.name} skipped: {reason}"], wall_s=0.0)
    from .. import cuda

    machine["gpu"] = cuda.get_device_name(0)
    notes: List[str] = []
    libraries = {b.name: b for b in backends() if b.to_cuda is not None}
    names = [n for n in libraries if n == "deepkern" or references is None or n in references]
    for name in list(names):
        missing = libraries[name].cuda_missing()
        if missing:
            notes.append(f"{name} is not timed on the GPU: {missing}")
            names.remove(name)
    rounds = 1 if quick else ROUNDS
    per_round = max(1, -(-int(repeats or (6 if quick else 20)) // rounds))
    rows: List[Row] = []
    cases = [case for case in suite.cases(quick) if case.device == "cuda"]
    for index, case in enumerate(cases, 1):
        np_inputs = case.make_inputs()
        timed = [name for name in names if name in case.impls]
        converted = {name: [tuple(libraries[name].to_cuda(x) for x in s) for s in np_inputs] for name in timed}
        rel_err = case.check(np_inputs[0]) if check and case.check is not None else None
        if rel_err is not None and rel_err > case.tolerance:
            notes.append(f"{case.op} {case.name} {case.layout}: deepkern's relative error {rel_err:.2e} vs float64")
        del np_inputs
        calls = {name: case.impls[name] for name in timed}
        if case.metric == "bytes":
            half = int(case.nbytes) // 2
            copy_from, copy_to = (get_backend_of_device("cuda").zeros((half,), "uint8") for _ in range(2))
            calls[COPY_REFERENCE] = _device_copy
            converted[COPY_REFERENCE] = [(copy_to, copy_from)]
        blocks: Dict[str, List[Timing]] = {name: [] for name in calls}
        for r in range(rounds):
            for name in list(calls) if r % 2 == 0 else list(calls)[::-1]:
                warmup = 3 if r == 0 else 1
                blocks[name].append(time_cuda_fn(calls[name], converted[name], repeats=per_round, warmup=warmup))
        timings = {name: Timing.merged(b) for name, b in blocks.items()}
        rows += _cuda_rows(case, timings, rel_err)
        if case.phases is not None:
            rows += _phase_rows(case, case.phases(), rel_err)
        parts = ", ".join(f"{name} {timings[name].median * 1e3:.3f} ms" for name in timings)
        _log(progress, f"[{index}/{len(cases)}] {case.op} {case.name} {case.layout} cuda: {parts}")
        del converted, calls
    return Report(rows=rows, machine=machine, peaks={}, notes=notes, wall_s=time.perf_counter() - start)


def _device_copy(dst, src) -> None:
    dst[...] = src


def _cuda_rows(case, timings: Dict[str, Timing], rel_err) -> List[Row]:
    """The rows of one GPU case: deepkern against each other timing. The peak of a memory-bound case
    is the copy's GB/s; a compute-bound one has no measured peak here (NaN)."""
    if case.metric == "bytes":
        work, unit, peak = case.nbytes, "GB/s", case.nbytes / timings[COPY_REFERENCE].median / 1e9
    else:
        work, unit, peak = case.flops, "GFLOP/s", float("nan")
    dk = timings["deepkern"]
    return [
        _row(case, 0, dk, ref, rt, work, unit, peak, peak, rel_err, None)
        for ref, rt in timings.items()
        if ref != "deepkern"
    ]


def _phase_rows(case, phases: Dict[str, Dict[str, Timing]], rel_err) -> List[Row]:
    """Where the time goes in one GPU case: per phase, deepkern's time in it against each other
    library's (a row with the phase as layout and group; FLOP from ``case.phase_flops``)."""
    rows = []
    for phase, by_library in phases.items():
        phase_case = dataclasses.replace(case, layout=phase, group=phase)
        work = case.phase_flops.get(phase, float("nan"))
        dk = by_library["deepkern"]
        rows += [
            _row(phase_case, 0, dk, ref, rt, work, "GFLOP/s", float("nan"), float("nan"), rel_err, None)
            for ref, rt in by_library.items()
            if ref != "deepkern"
        ]
    return rows


def _row(
    case,
    threads: int,
    dk: Timing,
    ref: str,
    rt: Timing,
    work: float,
    unit: str,
    peak: float,
    roof: float,
    rel_err,
    other,
) -> Row:
    """deepkern's timing ``dk`` against ``ref``'s ``rt`` on ``case``: ``work`` (FLOP or bytes, per
    ``unit``) over time, as % of ``peak`` and of ``roof``."""
    rate = work / dk.median / 1e9
    return Row(
        op=case.op,
        case=case.name,
        shape=tuple(case.shape),
        layout=case.layout,
        group=case.group,
        threads=threads,
        deepkern_s=dk.median,
        deepkern_min_s=dk.min,
        deepkern_max_s=dk.max,
        reference=ref,
        reference_s=rt.median,
        reference_min_s=rt.min,
        reference_max_s=rt.max,
        ratio=rt.median / dk.median,
        gflops=rate,
        reference_gflops=work / rt.median / 1e9,
        peak_gflops=peak,
        pct_peak=100.0 * rate / peak,
        roofline_gflops=roof,
        pct_roofline=100.0 * rate / roof,
        repeats=dk.repeats,
        rel_err=rel_err,
        label=case.label,
        other_cores=other,
        unit=unit,
    )
