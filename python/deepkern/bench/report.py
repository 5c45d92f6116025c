"""What a run produced (:class:`Row`, :class:`Report`) and how it is shown: the table, the peaks
line, the geomean summary and the JSON document."""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

from .machine import NOISY_CORES
from .peak import STREAM_DEFINITION, Peak, measured_bf16_peaks


@dataclasses.dataclass
class Row:
    """deepkern against one reference on one case at one thread count (times in seconds)."""

    op: str
    case: str
    shape: Tuple[int, ...]
    layout: str
    group: str
    threads: int
    deepkern_s: float
    deepkern_min_s: float
    deepkern_max_s: float
    reference: str
    reference_s: float
    reference_min_s: float
    reference_max_s: float
    ratio: float  # reference_s / deepkern_s: > 1 means deepkern is faster
    gflops: float  # deepkern
    reference_gflops: float
    peak_gflops: float  # measured FMA peak at `threads`
    pct_peak: float  # deepkern GFLOP/s as % of the FMA peak
    roofline_gflops: float  # min(FMA peak, intensity x stream GB/s)
    pct_roofline: float
    repeats: int
    rel_err: Optional[float] = None
    label: str = ""
    other_cores: Optional[float] = None  # cores other processes kept busy while this line was timed
    #: The unit of gflops, reference_gflops, peak_gflops and roofline_gflops: "GFLOP/s", or "GB/s" for a
    #: memory-bound case (then the peak and the roofline are the measured stream bandwidth).
    unit: str = "GFLOP/s"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclasses.dataclass
class Report:
    rows: List[Row]
    machine: dict
    peaks: Dict[int, Peak]
    notes: List[str]
    wall_s: float = 0.0


def _geomean(values: Sequence[float]) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values))) if values else float("nan")


def summarize(rows: Sequence[Row], groups: Optional[Sequence[str]] = None) -> List[dict]:
    """Geomean throughput ratio (reference time / deepkern time) per op, group, threads, reference."""
    buckets: Dict[tuple, List[Row]] = {}
    for row in rows:
        if groups and row.group not in groups:
            continue
        buckets.setdefault((row.op, row.group, row.threads, row.reference), []).append(row)
    out = []
    for (op, group, threads, ref), rs in buckets.items():
        out.append(
            {
                "op": op,
                "group": group,
                "threads": threads,
                "reference": ref,
                "cases": len(rs),
                "geomean_ratio": _geomean([r.ratio for r in rs]),
                "geomean_gflops": _geomean([r.gflops for r in rs]),
                "geomean_pct_peak": _geomean([r.pct_peak for r in rs]),
                "unit": rs[0].unit,
            }
        )
    order = {g: i for i, g in enumerate(groups or [])}
    out.sort(key=lambda d: (d["op"], order.get(d["group"], len(order)), d["group"], d["threads"], d["reference"]))
    return out


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 100 else f"{ms:.1f}"


def format_table(rows: Sequence[Row]) -> str:
    """Plain-text table: one line per case and thread count, the references side by side."""
    refs: List[str] = []
    for row in rows:
        if row.reference not in refs:
            refs.append(row.reference)
    lines: Dict[tuple, Dict[str, Row]] = {}
    for row in rows:
        lines.setdefault((row.op, row.case, row.layout, row.threads), {})[row.reference] = row
    # Memory-bound suites (every row in GB/s) show % of the stream bandwidth; the roofline is the same.
    by_bytes = bool(rows) and all(row.unit == "GB/s" for row in rows)
    header = ["op", "case", "layout", "thr", "deepkern ms"] + (
        ["GB/s", "%stream"] if by_bytes else ["GFLOP/s", "%peak", "%roof"]
    )
    for ref in refs:
        header += [f"{ref} ms", f"x{ref}"]
    header.append("")
    table = [header]
    for (op, case, layout, threads), by_ref in lines.items():
        first = next(iter(by_ref.values()))
        cells = [
            op,
            case,
            layout,
            str(threads),
            _fmt_ms(first.deepkern_s),
            f"{first.gflops:.1f}",
            f"{first.pct_peak:.0f}",
        ] + ([] if by_bytes else [f"{first.pct_roofline:.0f}"])
        for ref in refs:
            r = by_ref.get(ref)
            cells += [_fmt_ms(r.reference_s), f"{r.ratio:.2f}"] if r else ["-", "-"]
        noisy = first.other_cores is not None and first.other_cores > NOISY_CORES
        cells.append("*" if noisy else "")
        table.append(cells)
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    left = {0, 1, 2}
    out = []
    for j, line in enumerate(table):
        text = "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        out.append(text.rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths).rstrip())
    legend = (
        "x<ref> = <ref> time / deepkern time (>1: deepkern faster); "
        + (
            "GB/s = bytes read + written / time; %stream = as % of the measured stream bandwidth "
            "(GPU lines, thr 0: of a device-to-device copy of the same bytes in the same run); "
            if by_bytes
            else "%peak = deepkern GFLOP/s as % of the measured FMA peak (bfloat16 rows: of the measured "
            "bfloat16 peak); %roof = as % of min(FMA peak, intensity x stream GB/s); "
        )
        + f"* = timed while other processes used > {NOISY_CORES} core (noisy)"
    )
    return "\n".join(out + [legend])


def format_peaks(peaks: Dict[int, Peak]) -> str:
    """One line per thread count, then how the stream bandwidth is measured ("" without peaks)."""
    if not peaks:
        return ""
    bf16 = measured_bf16_peaks()
    return (
        "\n".join(
            f"peak at {p.threads} thread(s): FMA {p.fma_gflops:.1f} GFLOP/s ({p.isa}), stream {p.stream_gbps:.1f} GB/s "
            f"(2 x {p.stream_bytes >> 20} MB)"
            + (f", bfloat16 {bf16[p.threads]:.1f} GFLOP/s" if p.threads in bf16 else "")
            for _, p in sorted(peaks.items())
        )
        + f"\nstream = {STREAM_DEFINITION}"
    )


def peaks_json(peaks: Dict[int, Peak]) -> List[dict]:
    """The peaks as JSON-able dicts, by thread count (with ``bf16_gflops`` where it was measured)."""
    bf16 = measured_bf16_peaks()
    return [
        {**dataclasses.asdict(p), **({"bf16_gflops": bf16[t]} if t in bf16 else {})} for t, p in sorted(peaks.items())
    ]


def format_summary(summary: Sequence[dict]) -> str:
    if not summary:
        return ""
    lines = ["geomean throughput ratio (reference time / deepkern time; >1: deepkern faster):"]
    keys: Dict[tuple, List[dict]] = {}
    for s in summary:
        keys.setdefault((s["op"], s["group"], s["threads"]), []).append(s)
    for (op, group, threads), ss in keys.items():
        parts = "  ".join(f"vs {s['reference']} {s['geomean_ratio']:.2f}x" for s in ss)
        ceiling = "stream bandwidth" if ss[0]["unit"] == "GB/s" else "peak"
        lines.append(
            f"  {op:5s} {group:14s} threads={threads}  {parts}  "
            f"({ss[0]['cases']} cases, deepkern {ss[0]['geomean_gflops']:.0f} {ss[0]['unit']}, "
            f"{ss[0]['geomean_pct_peak']:.0f}% of {ceiling})"
        )
    return "\n".join(lines)


def to_json(report: Report, groups: Optional[Sequence[str]] = None) -> dict:
    """The report as JSON-able dicts: machine (with the peaks), rows, summary, notes."""
    machine = dict(report.machine)
    machine["peaks"] = peaks_json(report.peaks)
    return {
        "machine": machine,
        "rows": [r.to_dict() for r in report.rows],
        "summary": summarize(report.rows, groups),
        "notes": list(report.notes),
        "wall_s": report.wall_s,
    }
