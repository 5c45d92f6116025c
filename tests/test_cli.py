"""The command line: `deepkern info` and a quick `deepkern bench` run end to end."""

import json

import pytest

from deepkern import cli


def test_info_prints_config(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "deepkern" in out and "cpu isa" in out and "threads" in out


def test_bench_quick_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--op", "gemm", "--quick", "--threads", "1", "--repeats", "1",
                     "--json", str(path)]) == 0
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
    assert peaks and all(p["fma_gflops"] > 0 and p["copy_gbps"] > 0 for p in peaks)


@pytest.mark.parametrize("argv", [["bench", "--op", "no-such-op"], ["bench", "--threads", "0"], []])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = cli.main(argv)
        raise SystemExit(code)
    assert exit_info.value.code == 2
