"""Package configuration: show_config/config, thread count, kernel ISA choice, CUDA queries."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import warnings

import deepkern
import numpy as np
import pytest

from conftest import ISA_ORDER, SUPPORTED_ISAS

CONFIG_KEYS = {
    "version",
    "compiler",
    "cpu",
    "cpu_isa_detected",
    "cpu_isa_active",
    "gemm_kernel_f32",
    "gemm_kernel_f64",
    "threads",
    "cuda_compiled",
    "cuda_archs",
    "cuda_devices",
    "cuda_status",
}


def test_version_matches_package_metadata():
    assert deepkern.__version__ == deepkern._C.__version__ == importlib.metadata.version("deepkern")


def test_config_keys_and_values():
    cfg = deepkern.config()
    assert CONFIG_KEYS <= set(cfg), f"missing keys: {CONFIG_KEYS - set(cfg)}"
    assert cfg["version"] == deepkern.__version__
    assert cfg["compiler"] == deepkern._C.compiler and cfg["compiler"]
    assert isinstance(cfg["cpu"], str) and cfg["cpu"]
    assert cfg["cpu_isa_detected"] == deepkern._C.detected_isa() and cfg["cpu_isa_detected"] in ISA_ORDER
    assert cfg["cpu_isa_active"] == deepkern._C.active_isa() and cfg["cpu_isa_active"] in SUPPORTED_ISAS
    assert cfg["gemm_kernel_f32"] == deepkern._C.gemm_kernel_name(False)
    assert cfg["gemm_kernel_f64"] == deepkern._C.gemm_kernel_name(True)
    assert cfg["threads"] == deepkern.get_num_threads()
    assert cfg["cuda_compiled"] is deepkern.cuda.is_compiled()
    assert cfg["cuda_archs"] == deepkern.cuda.compiled_archs()
    assert isinstance(cfg["cuda_devices"], list) and len(cfg["cuda_devices"]) == deepkern.cuda.device_count()
    assert isinstance(cfg["cuda_status"], str) and cfg["cuda_status"]


def test_show_config_prints_every_section(capsys, threads):
    deepkern.show_config()
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == f"deepkern {deepkern.__version__}"
    by_label = {}
    for line in lines[1:]:
        label, _, value = line.strip().partition(":")
        by_label[label] = value.strip()
    for label in ("compiler", "build options", "installed at", "cpu isa", "threads", "cuda compiled", "cuda devices"):
        assert label in by_label, f"show_config has no '{label}:' line:\n{text}"
    assert by_label["installed at"] == os.path.dirname(os.path.abspath(deepkern.__file__))
    assert f"cuda={'on' if deepkern._C.build_options['cuda'] else 'off'}" in by_label["build options"]
    assert by_label["compiler"] == deepkern._C.compiler
    assert by_label["cpu isa"].startswith(deepkern._C.active_isa())
    assert f"detected: {deepkern._C.detected_isa()}" in by_label["cpu isa"]
    assert by_label["threads"] == str(threads)
    assert by_label["cuda compiled"].startswith("yes" if deepkern.cuda.is_compiled() else "no")
    if not deepkern.cuda.is_available():
        assert by_label["cuda devices"].startswith("none")
    else:
        assert deepkern.cuda.get_device_name(0) in by_label["cuda devices"]


def isa_label(isa: str) -> str:
    """How deepkern info names an ISA: amx on a build with the AMX emulation says so."""
    return f"{isa} (emulated)" if isa == "amx" and deepkern._C.build_options["amx_emulation"] else isa


def test_show_config_follows_active_isa(isa, capsys):
    deepkern.show_config()
    text = capsys.readouterr().out
    compiled = ", ".join(deepkern._C.compiled_isas)
    detected = isa_label(deepkern._C.detected_isa())
    line = rf"^\s*cpu isa:\s+{re.escape(isa_label(isa))} \(detected: {re.escape(detected)}; compiled: {compiled}\)$"
    assert re.search(line, text, re.M), text
    assert deepkern.config()["cpu_isa_active"] == isa
    # the float GEMM has no amx kernels: it runs its avx512 ones there
    float_gemm_isa = "avx512" if isa == "amx" else isa
    assert deepkern._C.gemm_kernel_name(False).startswith(float_gemm_isa)
    assert deepkern._C.gemm_kernel_name(True).startswith(float_gemm_isa)


def test_num_threads_round_trip():
    previous = deepkern.get_num_threads()
    assert isinstance(previous, int) and previous >= 1
    cpus = deepkern.usable_cpus()
    try:
        for n in (1, cpus, 1):
            deepkern.set_num_threads(n)
            assert deepkern.get_num_threads() == n
            assert deepkern.config()["threads"] == n
        # more threads than CPUs: allowed (as in PyTorch), and said
        with pytest.warns(RuntimeWarning, match=rf"set_num_threads\({cpus + 1}\): .* {cpus} CPU"):
            deepkern.set_num_threads(cpus + 1)
        assert deepkern.get_num_threads() == cpus + 1
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            deepkern.set_num_threads(previous)
    assert deepkern.get_num_threads() == previous


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_set_num_threads_rejects(bad):
    previous = deepkern.get_num_threads()
    with pytest.raises(
        ValueError, match=r"set_num_threads: n must be an int >= 1, got " + repr(bad).replace(".", r"\.")
    ):
        deepkern.set_num_threads(bad)
    assert deepkern.get_num_threads() == previous


def test_backend_set_num_threads_rejects_zero():
    previous = deepkern.get_num_threads()
    with pytest.raises(ValueError, match="num_threads must be >= 1, got 0"):
        deepkern._C.set_num_threads(0)
    assert deepkern.get_num_threads() == previous


def test_set_active_isa_rejects_unknown_and_unsupported():
    previous = deepkern._C.active_isa()
    with pytest.raises(ValueError, match="isa must be one of 'amx', 'avx512', 'avx2', 'generic', got 'sse9'"):
        deepkern._C.set_active_isa("sse9")
    with pytest.raises(ValueError, match="got 'AVX2'"):
        deepkern._C.set_active_isa("AVX2")
    assert deepkern._C.active_isa() == previous
    # ISAs above the detected one (none on an AVX-512 machine) are refused too.
    for name in ISA_ORDER[len(SUPPORTED_ISAS) :]:
        with pytest.raises(ValueError, match=f"isa '{name}' is not supported by this CPU"):
            deepkern._C.set_active_isa(name)
        assert deepkern._C.active_isa() == previous


def test_cuda_queries_never_raise():
    available = deepkern.cuda.is_available()
    assert isinstance(available, bool)
    count = deepkern.cuda.device_count()
    assert isinstance(count, int) and count >= 0
    assert available == (count > 0)
    archs = deepkern.cuda.compiled_archs()
    assert isinstance(archs, list) and all(isinstance(a, str) and a.isdigit() for a in archs)
    assert isinstance(deepkern.cuda.is_compiled(), bool)
    if not deepkern.cuda.is_compiled():
        assert archs == [] and count == 0
    reason = deepkern.cuda.unavailable_reason()
    assert isinstance(reason, str)
    assert (reason == "") == available, f"available={available} but unavailable_reason()={reason!r}"


@pytest.mark.parametrize("index", [99, -1, deepkern.cuda.device_count()])
def test_cuda_bad_device_index(index):
    with pytest.raises(ValueError, match=f"device index {index} is out of range"):
        deepkern.cuda.get_device_name(index)
    with pytest.raises(ValueError, match=f"device index {index} is out of range"):
        deepkern.cuda.get_device_properties(index)


@pytest.mark.cuda
def test_cuda_device_roundtrip():
    if not deepkern.cuda.is_available():
        pytest.skip(f"no usable CUDA device: {deepkern.cuda.unavailable_reason()}")
    got = np.asarray(deepkern.backends.cuda._cuda.iota_on_device(1000))
    assert got.shape == (1000,)
    np.testing.assert_array_equal(got, np.arange(1000))
    for i in range(deepkern.cuda.device_count()):
        name = deepkern.cuda.get_device_name(i)
        assert isinstance(name, str) and name.strip()
        props = deepkern.cuda.get_device_properties(i)
        assert props["name"] == name
        major, minor = props["capability"]
        assert major >= 1 and minor >= 0
        assert props["total_memory"] > 0


def _import_with_isa(value: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEEPKERN_ISA=value)
    code = "import deepkern; print(deepkern._C.active_isa())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value", ["AVX2", "avx-512", "", "sse2"])
def test_an_isa_request_that_cannot_be_followed_is_reported(value):
    run = _import_with_isa(value)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == deepkern._C.detected_isa()
    assert "RuntimeWarning" in run.stderr and f"DEEPKERN_ISA={value!r} is not one of" in run.stderr


@pytest.mark.parametrize("isa", SUPPORTED_ISAS)
def test_a_supported_isa_request_is_followed_quietly(isa):
    run = _import_with_isa(isa)
    assert run.returncode == 0 and run.stdout.strip() == isa and "DEEPKERN_ISA" not in run.stderr, run.stderr


def test_compiled_isas_hold_every_isa_the_kernels_can_choose():
    compiled = deepkern._C.compiled_isas
    assert compiled[-1] == "generic" and len(set(compiled)) == len(compiled)
    assert deepkern._C.detected_isa() in compiled and deepkern._C.active_isa() in compiled
    assert deepkern.config()["cpu_isas_compiled"] == list(compiled)
    if compiled == ("generic",):  # a portable-only build: no x86 kernel can be chosen
        with pytest.raises(ValueError, match="not supported"):
            deepkern._C.set_active_isa("avx2")
