"""The command line: `deepkern info` and a quick `deepkern bench` run end to end."""

import json
import os

import numpy as np
import pytest
from deepkern import cli


def test_info_prints_config(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "deepkern" in out and "cpu isa" in out and "threads" in out


def test_bench_quick_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--op", "gemm", "--quick", "--threads", "1", "--repeats", "1", "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "gemm" in printed and "geomean" in printed
    report = json.loads(path.read_text())
    assert report["rows"], "no benchmark rows"
    assert {"machine", "rows", "summary"} <= set(report)
    for row in report["rows"]:
        assert row["threads"] == 1
        assert row["deepkern_s"] > 0 and row["reference_s"] > 0
        assert row["ratio"] == pytest.approx(row["reference_s"] / row["deepkern_s"])
        assert row["rel_err"] < 1e-5  # the harness checked deepkern's result before timing it
    peaks = report["machine"]["peaks"]
    assert peaks and all(p["fma_gflops"] > 0 and p["stream_gbps"] > 0 for p in peaks)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["bench", "--op", "no-such-op"], "--op"),
        (["bench", "--threads", "0"], "--threads"),
        (["bench", "--threads", "2000"], "up to 1024"),
        (["bench", "--threads", "99999999999999999999"], "up to 1024"),
        (["bench", "--op", "allreduce", "--device", "cuda"], "not with --op allreduce"),
        (["bench", "--op", "allreduce", "--dtype", "bf16"], "not with --op allreduce"),
        (["train", "sunspots-lstm", "--lr", "inf"], "--lr"),
        (["train", "sunspots-lstm", "--seed", "-1"], "--seed"),
        (["train", "sunspots-lstm", "--resume", ""], "--resume: an empty path"),
        ([], ""),
    ],
)
def test_bad_arguments_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = cli.main(argv)
        raise SystemExit(code)
    assert exit_info.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("recipe", ["digits-gan", "digits-cnn", "sunspots-lstm"])
def test_batch_size_without_a_full_batch_is_an_error_not_a_crash(recipe, capsys):
    """A batch larger than the training set is refused with a message (digits-cnn and sunspots-lstm
    had trained one partial batch of everything)."""
    assert cli.main(["train", recipe, "--batch-size", "100000", "--epochs", "1", "--no-progress"]) == 1
    assert "batch size 100000 is larger than the training set" in capsys.readouterr().err


def test_output_folders_that_do_not_exist_are_made_before_the_work(tmp_path, capsys):
    checkpoint = tmp_path / "new" / "deeper" / "run.safetensors"
    assert cli.main(["train", "sunspots-lstm", "--epochs", "1", "--no-progress", "--checkpoint", str(checkpoint)]) == 0
    assert checkpoint.is_file()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["bench", "--op", "gemm", "--json", "{tmp}"], "--json {tmp}: is a directory"),
        (["bench", "--op", "gemm", "--json", "{tmp}/file/inside/a/file.json"], "cannot write in {tmp}/file"),
        (["train", "digits-cnn", "--plot", "{tmp}"], "--plot {tmp}: is a directory"),
        (["train", "digits-cnn", "--checkpoint", "{tmp}/file/x.safetensors"], "cannot write in {tmp}/file"),
        (["bench", "--op", "gemm", "--json", "{tmp}/new/"], "--json {tmp}/new/: is a directory"),
        (
            ["bench", "--op", "gemm", "--json", "{tmp}/locked"],
            "--json {tmp}/locked: the file exists and is not writable",
        ),
        (["train", "digits-cnn", "--plot", "{tmp}/locked"], "--plot {tmp}/locked: the file exists and is not writable"),
        (["train", "digits-cnn", "--checkpoint", "{tmp}/a.png", "--plot", "{tmp}/a.png"], "name the same file"),
        (["train", "digits-cnn", "--resume", "{tmp}/a.png", "--plot", "{tmp}/a.png"], "name the same file"),
        (["train", "digits-cnn", "--npro", "2"], "unrecognized arguments: --npro"),  # no abbreviations
        (["train", "digits-cnn", "--federated", "--amp", "bf16"], "--amp bf16: not with --federated"),
    ],
)
def test_output_paths_are_checked_before_the_work(argv, needle, tmp_path, capsys, monkeypatch):
    """A path that could not be written is refused at once (exit 2), not after minutes of work."""
    (tmp_path / "file").write_text("")
    (tmp_path / "locked").write_text("")
    locked, access = str(tmp_path / "locked"), os.access
    # A file this user may not write (made so for root too, whom no permission bit stops):
    monkeypatch.setattr(cli.os, "access", lambda p, mode: False if str(p) == locked else access(p, mode))
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(cli.main(argv))
    assert exit_info.value.code == 2
    assert needle.format(tmp=tmp_path) in capsys.readouterr().err


def test_bench_interleaves_rounds_of_each_library():
    """Each line times the libraries in ROUNDS rounds of alternating order (so a slow spell of a
    shared machine does not fall on one library's block), and each median is over all the calls."""
    from deepkern import bench

    calls = []
    inputs = [(np.ones(4, np.float32),)]
    case = bench.Case(
        op="fake",
        name="n=4",
        layout="-",
        group="fake",
        shape=(4,),
        flops=8.0,
        nbytes=16.0,
        make_inputs=lambda: inputs,
        impls={"deepkern": lambda x: calls.append("deepkern"), "numpy": lambda x: calls.append("numpy")},
    )
    suite = bench.Suite("fake", "a fake suite", lambda quick: [case])
    report = bench.run_suite(
        suite,
        [1],
        repeats=2 * bench.ROUNDS,
        references=["numpy"],
        progress=False,
        peak_stream_bytes=1 << 20,
        check=False,
    )

    def runs(names):  # consecutive calls of one library as one entry
        return [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name]

    blocks = [n for r in range(bench.ROUNDS) for n in (("deepkern", "numpy") if r % 2 == 0 else ("numpy", "deepkern"))]
    assert runs(calls) == runs(blocks)
    (row,) = report.rows
    assert row.repeats == 2 * bench.ROUNDS
    assert calls.count("deepkern") == calls.count("numpy") == 2 * bench.ROUNDS + 1  # + the warm-up


def test_bench_device_cuda_without_a_gpu_says_why_and_fails(capsys, monkeypatch):
    """``--device cuda`` where deepkern cannot use a GPU exits 1 at once, saying why."""
    from deepkern import bench

    monkeypatch.setattr(bench, "cuda_unavailable", lambda: "deepkern has no usable GPU: no CUDA driver")
    assert cli.main(["bench", "--device", "cuda", "--op", "optim-cuda", "--quick"]) == 1
    captured = capsys.readouterr()
    assert "deepkern bench --device cuda: deepkern has no usable GPU: no CUDA driver; nothing was timed" in captured.err
    assert captured.out == ""


@pytest.mark.skipif(__import__("deepkern").cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_bench_device_cuda_here_names_the_missing_gpu(capsys):
    assert cli.main(["bench", "--device", "cuda", "--quick"]) == 1
    assert "no usable GPU" in capsys.readouterr().err


def test_bench_device_without_cases_of_that_device_exits_2(capsys):
    """A suite with no case for the device asked is refused, naming the suites that have some."""
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(cli.main(["bench", "--op", "optim-cuda", "--quick"]))  # the default device is cpu
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--op optim-cuda has no cpu cases" in err and "optim" in err


def test_bench_reports_a_suite_it_cannot_run_without_building_its_cases(capsys, monkeypatch):
    """A suite whose reference or data package is missing is named with the reason, and its cases
    (which may need that package) are never built: a bare install's `deepkern bench` still runs."""
    from deepkern import bench

    def cases_needing_a_missing_package(quick):
        raise ImportError("the cases were built although the suite said it cannot run")

    suite = bench.Suite(
        name="needs-missing",
        description="a suite whose cases need a package that is not installed",
        cases=cases_needing_a_missing_package,
        unavailable=lambda: "its data ship with a package that is not installed",
    )
    monkeypatch.setitem(bench.SUITES, suite.name, suite)
    assert cli.main(["bench", "--op", "needs-missing", "--quick", "--threads", "1"]) == 0
    assert "needs-missing skipped: its data ship with a package that is not installed" in capsys.readouterr().out


def test_optim_cuda_suite_cases():
    """Adam and AdamW on the GPU, their bytes per step, deepkern beside fused torch.optim."""
    from deepkern import bench

    for quick in (False, True):
        cases = bench.get_suite("optim-cuda").cases(quick)
        assert {c.layout for c in cases} == {"adam", "adamw"}
        assert all(c.device == "cuda" and c.metric == "bytes" for c in cases)
        assert all(c.nbytes == 28 * c.shape[0] * c.shape[1] for c in cases)
        assert all(set(c.impls) == {"deepkern", "torch"} for c in cases)
    sizes = {c.shape for c in bench.get_suite("optim-cuda").cases(False)}
    assert sizes == {(1, 100_000_000), (200, 100_000)}


def test_info_into_a_closed_pipe_ends_quietly():
    """deepkern info | head -1: the reader goes away; the command ends without a traceback (here the
    reader, `true`, is gone before the command writes)."""
    import subprocess
    import sys

    done = subprocess.run(
        f"{sys.executable} -m deepkern info | true", shell=True, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


def test_the_bfloat16_peak_is_shown_where_bf16_rows_use_it(monkeypatch):
    """The bfloat16 GEMM's %peak is against the bfloat16 peak: the header line and the JSON name it."""
    from deepkern.bench import peak, report

    peaks = {1: peak.Peak(1, "avx512", 100.0, 40.0, 1 << 20), 2: peak.Peak(2, "avx512", 200.0, 50.0, 1 << 20)}
    monkeypatch.setattr(peak, "_BF16_PEAKS", {2: 412.5})
    lines = report.format_peaks(peaks).splitlines()
    assert "bfloat16" not in lines[0] and lines[1].endswith(", bfloat16 412.5 GFLOP/s")
    assert [p.get("bf16_gflops") for p in report.peaks_json(peaks)] == [None, 412.5]
