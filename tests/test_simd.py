"""The SIMD path report and the ANNLIB_SIMD override."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import annlib


def test_cpu_info_reports_features_and_path():
    info = annlib.cpu_info()
    assert info["isa"] in info["available"]
    assert info["available"][0] == "scalar"
    assert set(info["features"]) >= {"avx2", "fma", "avx512f"}
    if info["features"]["avx2"] and info["features"]["fma"]:
        assert "avx2" in info["available"]


def test_unknown_path_raises():
    with pytest.raises(ValueError, match="must be one of"):
        annlib.set_isa("sse9")


def test_unsupported_path_raises():
    missing = [isa for isa in ("avx2", "avx512") if isa not in annlib.supported_isas()]
    if not missing:
        pytest.skip("this CPU runs every SIMD path")
    with pytest.raises(ValueError, match="not supported by this CPU"):
        annlib.set_isa(missing[0])


def _run_with_env(value: str):
    code = "import annlib; print(annlib.cpu_info()['isa'])"
    env = dict(os.environ, ANNLIB_SIMD=value)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_env_var_forces_path(isa):
    if isa not in annlib.supported_isas():
        proc = _run_with_env(isa)
        assert proc.returncode != 0 and "not supported by this CPU" in proc.stderr
        return
    proc = _run_with_env(isa)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == isa


def test_env_var_rejects_unknown_path():
    proc = _run_with_env("neon9")
    assert proc.returncode != 0
    assert "ANNLIB_SIMD" in proc.stderr and "must be one of" in proc.stderr
