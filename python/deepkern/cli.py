"""The ``deepkern`` command: ``deepkern info``, ``deepkern bench`` and ``deepkern train``.

``deepkern bench`` times deepkern's kernels beside NumPy (and PyTorch when installed) at equal thread
counts and prints a table, the machine's measured peak and geomean ratios; ``--json PATH`` also
writes every row with the machine information. The op families come from the suite registry in
:mod:`deepkern.bench` (``--op gemm``; each op family registers its own suite there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List, Optional, Sequence


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _parse_threads(text: str) -> List[int]:
    """'1,2' -> [1, 2]: distinct positive thread counts, in the order given."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        value = _positive_int(part)
        if value not in out:
            out.append(value)
    if not out:
        raise argparse.ArgumentTypeError(f"--threads needs at least one thread count, got {text!r}")
    return out


def _build_parser() -> argparse.ArgumentParser:
    from . import bench

    parser = argparse.ArgumentParser(
        prog="deepkern",
        description="deepkern: hand-written C++/CUDA deep-learning kernels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sub.add_parser(
        "info",
        help="print the version, compiler, CPU ISA, threads and CUDA build",
        description="Print deepkern's build and run-time configuration.",
    )

    ops = ", ".join(sorted(bench.SUITES))
    bench_parser = sub.add_parser(
        "bench",
        help="time deepkern's kernels against NumPy and PyTorch",
        description="Time deepkern's kernels beside NumPy/OpenBLAS (and PyTorch when installed) on the same "
        "inputs at the same thread count; report ms, GFLOP/s (GB/s for memory-bound ops such as "
        "pooling), the ratio to each reference and the % of this machine's measured peak "
        "(FMA throughput, or memory stream bandwidth).",
    )
    bench_parser.add_argument(
        "--op",
        default="all",
        metavar="OP",
        help=f"op family to benchmark: one of {ops}, or 'all' (default: all; 'all' leaves out "
        f"the long {', '.join(sorted(n for n, s in bench.SUITES.items() if not s.in_all))})",
    )
    bench_parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (seconds)")
    bench_parser.add_argument(
        "--dtype",
        choices=("float32", "bf16"),
        default="float32",
        help="bf16: the bfloat16 GEMM suite (gemm-bf16: bfloat16 beside PyTorch's, and the float32 GEMM "
        "of the same shapes); with --op gemm or all (default: float32, the suites as named)",
    )
    bench_parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the timed cases run: cpu (default), or cuda: the suites' GPU cases, beside PyTorch on "
        "the GPU and a device-to-device copy of the same bytes (needs a GPU deepkern can use)",
    )
    bench_parser.add_argument(
        "--threads",
        type=_parse_threads,
        default=None,
        metavar="N[,N...]",
        help="thread counts, e.g. 1,2 (default: deepkern's default thread count, "
        "plus 1 when threadpoolctl is installed)",
    )
    bench_parser.add_argument(
        "--repeats",
        type=_positive_int,
        default=None,
        metavar="N",
        help="timed calls per library and case, over 3 interleaved rounds (default: "
        "adaptive, ~0.2 s per library, at least 2 calls per round)",
    )
    bench_parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="also write all rows and the machine information (cpu, isa, peaks, date, command)",
    )
    bench_parser.add_argument(
        "--no-check", action="store_true", help="skip the accuracy check of deepkern's result before timing"
    )
    bench_parser.set_defaults(_parser=bench_parser)

    from .training import RECIPES

    train = sub.add_parser(
        "train",
        help="train a real model end to end (digits CNN, sunspots LSTM, char LSTM, digits GAN)",
        description="Train one of deepkern's recipes on data that ships inside installed packages "
        '(pip install "deepkern[train]"): '
        + "; ".join(f"{name}: {cls.description}" for name, cls in RECIPES.items())
        + ".",
    )
    train.add_argument("recipe", choices=list(RECIPES), metavar="RECIPE", help=", ".join(RECIPES))
    train.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="total epochs (default: the recipe's; with --resume, the checkpoint's run's)",
    )
    kept = "; with --resume, the checkpoint's, and another value is refused"
    train.add_argument(
        "--batch-size", type=_positive_int, default=None, help=f"batch size (default: the recipe's{kept})"
    )
    train.add_argument("--lr", type=_positive_float, default=None, help=f"learning rate (default: the recipe's{kept})")
    train.add_argument(
        "--seed", type=int, default=None, help=f"seed of the data order, initialisation and sampling (default: 0{kept})"
    )
    train.add_argument(
        "--device",
        default="cpu",
        help="the device to train on: cpu (the default), or another with a deepkern backend in this build",
    )
    train.add_argument(
        "--checkpoint", default=None, metavar="PATH", help="save model and optimizer state after every epoch"
    )
    train.add_argument(
        "--resume",
        default=None,
        metavar="PATH",
        help="continue the run of a checkpoint of the same recipe, up to --epochs in all; the learning-rate "
        "schedule spans the new total",
    )
    train.add_argument("--plot", default=None, metavar="PATH", help="write the curves (GAN: a grid of samples) as PNG")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(_parser=train)
    return parser


def _cmd_info(_args) -> int:
    import deepkern

    deepkern.show_config()
    return 0


def _default_threads() -> List[int]:
    from . import _C, bench

    default = _C.get_num_threads()
    threads = [default]
    if bench.threadpoolctl_available() and default != 1:
        threads.insert(0, 1)
    return threads


def _check_output_paths(parser: argparse.ArgumentParser, paths: dict) -> None:
    """Fails at once (exit 2) for an output path that could not be written after the work: an
    existing directory, or a file whose nearest existing folder is not a writable folder."""
    for option, path in paths.items():
        if path is None:
            continue
        full = os.path.abspath(path)
        if os.path.isdir(full):
            parser.error(f"{option} {path}: is a directory; give a file path")
        folder = os.path.dirname(full)
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            parser.error(f"{option} {path}: cannot write in {folder}")


def _cmd_bench(args, parser: argparse.ArgumentParser) -> int:
    from . import bench

    if args.dtype == "bf16":
        if args.op not in ("all", "gemm", "gemm-bf16"):
            parser.error(f"--dtype bf16 times the bfloat16 GEMM (--op gemm or all), got --op {args.op}")
        names = ["gemm-bf16"]
    elif args.op == "all":
        names = sorted(name for name, suite in bench.SUITES.items() if suite.in_all)
    elif args.op in bench.SUITES:
        names = [args.op]
    else:
        parser.error(f"unknown op {args.op!r}; available: {', '.join(sorted(bench.SUITES))} (or 'all')")
    if args.device == "cuda":
        reason = bench.cuda_unavailable()
        if reason:
            print(f"deepkern bench --device cuda: {reason}; nothing was timed", file=sys.stderr)
            return 1
    names = [n for n in names if any(c.device == args.device for c in bench.get_suite(n).cases(args.quick))]
    if not names:
        with_device = sorted(
            n for n, suite in bench.SUITES.items() if any(c.device == args.device for c in suite.cases(args.quick))
        )
        parser.error(
            f"--op {args.op} has no {args.device} cases; suites with {args.device} cases: {', '.join(with_device)}"
        )
    threads = sorted(args.threads) if args.threads else _default_threads()

    start = time.perf_counter()
    reports = []
    for name in names:
        suite = bench.get_suite(name)
        print(
            f"deepkern bench --op {name}{' --quick' if args.quick else ''}: {suite.description}",
            file=sys.stderr,
            flush=True,
        )
        reports.append(
            (
                suite,
                bench.run_suite(
                    suite,
                    threads,
                    quick=args.quick,
                    repeats=args.repeats,
                    progress=True,
                    check=not args.no_check,
                    device=args.device,
                ),
            )
        )
    wall = time.perf_counter() - start

    machine = reports[0][1].machine
    peaks = {}
    for _, report in reports:
        peaks.update(report.peaks)
    print(
        f"deepkern {machine['deepkern']} on {machine['cpu']} ({machine['isa']}, {machine['cores']} cores), "
        f"{machine['numpy']}"
        + (f", torch {machine['torch']}" if machine["torch"] else "")
        + (f", GPU {machine['gpu']}" if machine.get("gpu") else "")
    )
    print(bench.format_peaks(peaks))
    for suite, report in reports:
        print()
        if report.rows:
            print(bench.format_table(report.rows))
        summary = bench.format_summary(bench.summarize(report.rows, suite.summary_groups or None))
        if summary:
            print()
            print(summary)
        for note in report.notes:
            print(f"note: {note}")
    print(f"\nwall time: {wall:.1f} s")

    if args.json:
        doc = {
            "machine": dict(machine),
            "suites": {},
            "rows": [],
            "summary": [],
            "notes": [],
            "wall_s": wall,
        }
        doc["machine"]["command"] = " ".join(["deepkern"] + list(args._argv))
        doc["machine"]["peaks"] = bench.peaks_json(peaks)
        for suite, report in reports:
            part = bench.to_json(report, suite.summary_groups or None)
            doc["suites"][suite.name] = {"description": suite.description, "wall_s": report.wall_s}
            doc["rows"] += part["rows"]
            doc["summary"] += part["summary"]
            doc["notes"] += part["notes"]
        directory = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(directory, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _cmd_train(args, parser: argparse.ArgumentParser) -> int:
    from .training import ResumeError, TrainConfig, train

    cfg = TrainConfig(
        recipe=args.recipe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        checkpoint=args.checkpoint,
        resume=args.resume,
        plot=args.plot,
        progress=not args.no_progress,
    )
    try:
        result = train(cfg)
    except ResumeError as exc:
        parser.error(str(exc))
    except (ValueError, ImportError, OSError) as exc:
        print(f"deepkern train: {exc}", file=sys.stderr)
        return 1
    print(f"trained {args.recipe} in {result['seconds']:.1f} s")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``deepkern`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        args._argv = argv
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "bench":
            _check_output_paths(args._parser, {"--json": args.json})
            return _cmd_bench(args, args._parser)
        if args.command == "train":
            _check_output_paths(args._parser, {"--checkpoint": args.checkpoint, "--plot": args.plot})
            return _cmd_train(args, args._parser)
    except SystemExit as exc:  # argparse's errors (exit 2) and --help (exit 0)
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    parser.print_help(sys.stderr)
    return 2
