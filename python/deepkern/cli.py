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


def _int_at_least(text: str, minimum: int, what: str) -> int:
    """``text`` as an int >= ``minimum``; else an argparse error saying ``what``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def _nonnegative_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def _float_where(text: str, what: str, ok) -> float:
    """``text`` as a float for which ``ok(value)`` holds; else an argparse error saying ``what``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def _positive_float(text: str) -> float:
    return _float_where(text, "a finite positive number", lambda v: 0 < v < float("inf"))


def _nonnegative_float(text: str) -> float:
    return _float_where(text, "a finite number >= 0", lambda v: 0 <= v < float("inf"))


def _fraction(text: str) -> float:
    return _float_where(text, "a number in (0, 1]", lambda v: 0 < v <= 1)


#: The most threads ``deepkern bench --threads`` takes (the kernels' own limit is far above any machine).
MAX_THREADS = 1024


def _parse_threads(text: str) -> List[int]:
    """'1,2' -> [1, 2]: distinct positive thread counts, in the order given."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        value = _positive_int(part)
        if value > MAX_THREADS:
            raise argparse.ArgumentTypeError(f"thread counts go up to {MAX_THREADS}, got {value}")
        if value not in out:
            out.append(value)
    if not out:
        raise argparse.ArgumentTypeError(f"--threads needs at least one thread count, got {text!r}")
    return out


class _FullNamesParser(argparse.ArgumentParser):
    """A subcommand's parser that takes options by their full names only."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def _build_parser() -> argparse.ArgumentParser:
    from . import bench

    parser = argparse.ArgumentParser(
        prog="deepkern",
        description="deepkern: hand-written C++/CUDA deep-learning kernels.",
        allow_abbrev=False,
    )
    # Options by their full names only (an abbreviated --nproc had reached the ranks it launched).
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_FullNamesParser)
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
        f"the long {', '.join(sorted(n for n, s in bench.SUITES.items() if not s.in_all))}); or allreduce: "
        "DistributedDataParallel's bucketed gradient all-reduce beside raw MPI_Allreduce on 2 ranks it launches "
        "(needs deepkern[distributed])",
    )
    bench_parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (seconds)")
    bench_parser.add_argument(
        "--dtype",
        choices=("float32", "bf16"),
        default="float32",
        help="bf16: the bfloat16 suites (gemm-bf16, lstm-bf16, conv-bf16, train-bf16: bfloat16 beside PyTorch's; "
        "all but conv also the float32 ones of the same shapes or epochs); with --op gemm, lstm, conv, train or all "
        "(default: float32, the suites as named)",
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
        help="timed calls per library and case, over 3 interleaved rounds, so N rounded up to a multiple "
        "of 3 (1 with --quick, which times one round) (default: adaptive, ~0.2 s per library, at least 2 "
        "calls per round)",
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

    from .training import AMP_CHOICES, RECIPES, FederatedConfig

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
        "--seed",
        type=_nonnegative_int,
        default=None,
        help=f"seed of the data order, initialisation and sampling (default: 0{kept})",
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
    train.add_argument(
        "--amp",
        choices=AMP_CHOICES,
        default=None,
        help="mixed precision: forward passes and losses under deepkern.autocast (bfloat16 GEMMs, float32 "
        "master weights and optimizer steps)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--nproc",
        type=_positive_int,
        default=None,
        metavar="N",
        help="train data-parallel on N processes: runs this command again under the mpiexec installed with "
        "deepkern[distributed] (the same as `mpiexec -n N deepkern train ...`); --batch-size stays the global batch",
    )
    fed = train.add_argument_group(
        "federated learning",
        "--federated trains the recipe (digits-cnn) with FedAvg over simulated clients, each holding a part of "
        "the training set; the global model's test accuracy is printed after every round",
    )
    fed.add_argument("--federated", action="store_true", help="train with FedAvg (FedProx with --fedprox-mu)")
    defaults = FederatedConfig()
    for option, kind, meaning, text in FEDERATED_OPTIONS:
        default = getattr(defaults, option[2:].replace("-", "_")) if meaning is None else meaning
        fed.add_argument(option, type=kind, default=None, help=f"{text} (default: {default})")
    train.set_defaults(_parser=train)
    return parser


#: The options of ``deepkern train --federated`` (fields of training.FederatedConfig): (option,
#: type, what the default means where it is None, help).
FEDERATED_OPTIONS = (
    ("--clients", _positive_int, None, "number of clients the training set is split among"),
    ("--rounds", _positive_int, None, "communication rounds"),
    ("--local-epochs", _positive_int, None, "epochs each sampled client trains per round"),
    ("--dirichlet-alpha", _positive_float, "an IID split", "label skew: class shares ~ Dirichlet(alpha) per client"),
    ("--client-fraction", _fraction, None, "fraction of the clients sampled each round, at least one"),
    ("--fedprox-mu", _nonnegative_float, "FedAvg", "FedProx: proximal term mu/2 * ||w - w_global||^2"),
)


def _federated_config(args, parser: argparse.ArgumentParser):
    """The FederatedConfig of ``--federated`` (None without it); exits (2) naming a federated option
    given without --federated, or an option that a federated run does not take."""
    from .training import RECIPES, FederatedConfig

    given = {o: getattr(args, o[2:].replace("-", "_")) for o, *_ in FEDERATED_OPTIONS}
    if not args.federated:
        stray = [o for o, v in given.items() if v is not None]
        if stray:
            parser.error(f"{', '.join(stray)}: only with --federated")
        return None
    if not RECIPES[args.recipe].supports_federated:
        names = ", ".join(n for n, cls in RECIPES.items() if cls.supports_federated)
        parser.error(f"--federated: recipe {args.recipe} has no federated form; recipes that have one: {names}")
    for option in ("--epochs", "--checkpoint", "--resume", "--amp"):
        value = getattr(args, option[2:])
        if value is not None:
            parser.error(
                f"{option} {value}: not with --federated (it trains --rounds x --local-epochs in float32, "
                "no checkpoints)"
            )
    return FederatedConfig(**{o[2:].replace("-", "_"): v for o, v in given.items() if v is not None})


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


def _check_output_paths(parser: argparse.ArgumentParser, paths: dict, inputs: dict = ()) -> None:
    """Fails at once (exit 2) for an output path that could not be written after the work: a
    directory (existing, or named with a trailing slash), an existing file that is not writable, a
    file whose nearest existing folder is not a writable folder, or one path given to two outputs or
    to an output and an input of ``inputs`` (option -> (path, the outputs that must not write it));
    a later write would replace the file. Then makes the missing folders of the outputs."""
    named = [(option, path) for option, path in paths.items() if path is not None]
    for option, path in named:
        full = os.path.abspath(path)
        if os.path.isdir(full) or path.endswith(("/", os.sep)):
            parser.error(f"{option} {path}: is a directory; give a file path")
        if os.path.exists(full) and not os.access(full, os.W_OK):
            parser.error(f"{option} {path}: the file exists and is not writable")
        folder = os.path.dirname(full)
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            parser.error(f"{option} {path}: cannot write in {folder}")
    pairs = [(a, b) for i, a in enumerate(named) for b in named[i + 1 :]]
    pairs += [(a, (option, path)) for option, (path, outputs) in dict(inputs).items() for a in named if a[0] in outputs]
    for (option, path), (other, other_path) in pairs:
        if other_path is not None and os.path.realpath(path) == os.path.realpath(other_path):
            parser.error(f"{option} and {other} name the same file {path}; give each its own")
    for _, path in named:  # the folders they name, made before the work
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _suite_runs_on(suite, device: str, quick: bool) -> bool:
    """Whether ``deepkern bench --device DEVICE`` takes ``suite``: it has a case on that device, or its
    cases cannot even be built here for a package the suite itself reports missing (the run then
    says why it skipped the suite)."""
    try:
        cases = suite.cases(quick)
    except ImportError:
        if not suite.unavailable():
            raise
        return True
    return any(c.device == device for c in cases)


def _cmd_bench(args, parser: argparse.ArgumentParser) -> int:
    from . import bench

    if args.op == "allreduce":
        fixed = {"--device": (args.device, "cpu"), "--dtype": (args.dtype, "float32")}
        for option, (value, default) in fixed.items():
            if value != default:
                parser.error(f"{option} {value}: not with --op allreduce (it times float32 on the CPU)")
        return _cmd_bench_allreduce(args)
    if args.dtype == "bf16":
        bf16_suites = {"gemm": "gemm-bf16", "lstm": "lstm-bf16", "conv": "conv-bf16", "train": "train-bf16"}
        if args.op != "all" and args.op not in bf16_suites and args.op not in bf16_suites.values():
            parser.error(
                f"--dtype bf16 times the bfloat16 GEMM, LSTM, convolution and autocast training epochs "
                f"(--op gemm, lstm, conv, train or all), got --op {args.op}"
            )
        names = sorted(bf16_suites.values()) if args.op == "all" else [bf16_suites.get(args.op, args.op)]
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
    names = [n for n in names if _suite_runs_on(bench.get_suite(n), args.device, args.quick)]
    if not names:
        with_device = sorted(n for n, suite in bench.SUITES.items() if _suite_runs_on(suite, args.device, args.quick))
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


def _in_mpi_job() -> bool:
    """Whether this process is one rank of an MPI job of several."""
    from . import distributed

    return distributed.is_initialized() and distributed.get_world_size() > 1


def _abort_job() -> None:
    """Ends every rank of the MPI job this process belongs to (they would wait for it forever)."""
    from . import distributed

    if _in_mpi_job():
        sys.stderr.flush()
        distributed._comm().Abort(1)


def _relaunch(args, parser: argparse.ArgumentParser) -> int:
    """``deepkern train ... --nproc N``: the same command (without --nproc) on N MPI processes;
    returns their exit code."""
    import subprocess

    from . import distributed

    if distributed.is_initialized() or distributed.launched_world_size() > 1:
        parser.error("--nproc: this command already runs under an MPI launcher; leave out --nproc")
    if not distributed.is_available():
        parser.error(f"--nproc {args.nproc}: {distributed._INSTALL_HINT}")
    try:
        mpiexec = distributed.mpiexec_path()
    except FileNotFoundError as exc:
        parser.error(f"--nproc {args.nproc}: {exc}")
    argv = list(args._argv)
    i = argv.index("--nproc") if "--nproc" in argv else None
    argv = argv[:i] + argv[i + 2 :] if i is not None else [a for a in argv if not a.startswith("--nproc=")]
    command = [mpiexec, "-n", str(args.nproc), sys.executable, "-m", "mpi4py", "-m", "deepkern", *argv]
    return subprocess.run(command).returncode


def _cmd_bench_allreduce(args) -> int:
    """``deepkern bench --op allreduce``: its own 2-rank MPI job (see deepkern.bench.allreduce)."""
    from .bench import allreduce

    print(
        f"deepkern bench --op allreduce: {allreduce.RANKS} ranks, {allreduce.BUCKET_CAP_MB} MB buckets", file=sys.stderr
    )
    try:
        rows = allreduce.run(quick=args.quick, repeats=args.repeats)
        epochs = allreduce.run_epochs(quick=args.quick)
    except (ImportError, FileNotFoundError, RuntimeError) as exc:
        print(f"deepkern bench --op allreduce: {exc}", file=sys.stderr)
        return 1
    print(allreduce.format_rows(rows))
    print(
        "copy/view: DistributedDataParallel with gradient_as_bucket_view False/True; "
        "ratio: MPI time / deepkern time (above 1: deepkern faster); GB/s: bytes reduced per second."
    )
    print("\n" + allreduce.format_epoch_rows(epochs))
    print("Times from a machine shared with other work are noisy.")
    worst = max(r["max_abs_err"] for r in rows)
    if worst != 0:
        print(f"error: the averaged gradients differ from the exact mean by up to {worst}", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"command": " ".join(["deepkern"] + list(args._argv)), "rows": rows + epochs}, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _cmd_train(args, parser: argparse.ArgumentParser) -> int:
    from .training import ResumeError, TrainConfig, train

    if args.nproc is not None:
        return _relaunch(args, parser)
    if args.resume == "":
        parser.error("--resume: an empty path (an unset variable?); give the checkpoint to continue")

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
        federated=_federated_config(args, parser),
        amp=args.amp,
    )
    try:
        result = train(cfg)
    except ResumeError as exc:
        parser.error(str(exc))
    except (ValueError, ImportError, OSError) as exc:
        print(f"deepkern train: {exc}", file=sys.stderr)
        _abort_job()
        return 1
    except Exception:
        if _in_mpi_job():  # Abort ends this rank before the interpreter would print the traceback
            import traceback

            traceback.print_exc()
            _abort_job()
        raise
    if result["rank"] == 0:
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
            _check_output_paths(
                args._parser,
                {"--checkpoint": args.checkpoint, "--plot": args.plot},
                {"--resume": (args.resume, ("--plot",))},  # resuming into the same checkpoint is the usual case
            )
            return _cmd_train(args, args._parser)
    except SystemExit as exc:  # argparse's errors (exit 2) and --help (exit 0)
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output went away (deepkern info | head -1)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    parser.print_help(sys.stderr)
    return 2
