"""The annlib command line, driven through click's CliRunner."""

from __future__ import annotations

import urllib.error
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner
from test_cli_errors import strict_loads  # every --json output must be strict JSON

import annlib
from annlib import datasets
from annlib.cli import main

FAKE_CPU = {
    "features": {"avx2": True, "fma": True, "avx512": False},
    "available": ["scalar", "avx2"],
    "isa": "avx2",
    "forced_by_env": False,
    "threads": 2,
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def small_file(tmp_path, rng):
    """A small angular dataset with exact ground truth (computed here with numpy)."""
    train = rng.standard_normal((200, 8)).astype(np.float32)
    test = rng.standard_normal((10, 8)).astype(np.float32)
    unit_train = train / np.linalg.norm(train, axis=1, keepdims=True)
    unit_test = test / np.linalg.norm(test, axis=1, keepdims=True)
    dist = 1.0 - unit_test.astype(np.float64) @ unit_train.T.astype(np.float64)
    ids = np.argsort(dist, axis=1, kind="stable")[:, :20]
    path = tmp_path / "small-8-angular.hdf5"
    datasets.write_hdf5(path, train, test, ids, np.take_along_axis(dist, ids, 1), "angular", source="cli test")
    return path


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"annlib {annlib.__version__}"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["info"],
        ["datasets"],
        ["datasets", "list"],
        ["datasets", "download"],
        ["datasets", "show"],
        ["datasets", "ground-truth"],
    ],
)
def test_every_command_has_help_with_example(runner, args):
    result = runner.invoke(main, [*args, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "annlib" in result.output


def test_info_with_fake_cpu(runner, monkeypatch):
    monkeypatch.setattr(annlib, "cpu_info", lambda: FAKE_CPU, raising=False)
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert annlib.__version__ in result.output
    assert np.__version__ in result.output
    assert "avx2 (available: scalar, avx2)" in result.output
    assert "avx512-" in result.output
    result = runner.invoke(main, ["info", "--json"])
    report = strict_loads(result.output)
    assert report["cpu"]["isa"] == "avx2"
    assert report["numpy"] == np.__version__
    assert report["annlib"] == annlib.__version__


def test_info_with_real_core(runner):
    if not callable(getattr(annlib, "cpu_info", None)):
        pytest.skip("annlib.cpu_info is not available")
    result = runner.invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    report = strict_loads(result.output)
    assert report["cpu"]["isa"] in report["cpu"]["available"]


def test_datasets_list(runner, tmp_path, monkeypatch, small_file):
    monkeypatch.setenv("ANNLIB_DATA_DIR", str(tmp_path))
    (tmp_path / "glove-25-angular.hdf5").write_bytes(small_file.read_bytes())
    result = runner.invoke(main, ["datasets", "list"])
    assert result.exit_code == 0, result.output
    assert "sift-128-euclidean" in result.output
    assert str(tmp_path / "glove-25-angular.hdf5") in result.output
    rows = strict_loads(runner.invoke(main, ["datasets", "list", "--json"]).output)
    by_name = {row["name"]: row for row in rows}
    assert by_name["glove-25-angular"]["path"] == str(tmp_path / "glove-25-angular.hdf5")
    assert by_name["sift-128-euclidean"]["dim"] == 128
    assert by_name["sift-128-euclidean"]["metric"] == "squared_l2"


def test_datasets_show(runner, small_file):
    result = runner.invoke(main, ["datasets", "show", str(small_file)])
    assert result.exit_code == 0, result.output
    assert "(200, 8)" in result.output
    assert "angular (annlib metric: cosine)" in result.output
    assert "source: cli test" in result.output
    report = strict_loads(runner.invoke(main, ["datasets", "show", str(small_file), "--json"]).output)
    assert report["arrays"]["neighbors"] == {"shape": [10, 20], "dtype": "int32"}
    assert report["attrs"]["dimension"] == 8
    assert report["metric"] == "cosine"


def test_datasets_show_fvecs(runner, tmp_path):
    path = tmp_path / "base.fvecs"
    datasets.write_fvecs(path, np.zeros((5, 3)))
    report = strict_loads(runner.invoke(main, ["datasets", "show", str(path), "--json"]).output)
    assert report["arrays"] == {"train": {"shape": [5, 3], "dtype": "float32"}}


def test_datasets_show_missing_file_is_one_line_error(runner, tmp_path):
    result = runner.invoke(main, ["datasets", "show", str(tmp_path / "missing.hdf5")])
    assert result.exit_code == 1
    _no_traceback(result)
    assert "Error: dataset file not found" in result.output
    assert "missing.hdf5" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["corrupt.hdf5", "corrupt.fvecs"])
def test_datasets_show_corrupt_file_is_one_line_error(runner, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x03\x00\x00\x00 definitely not a dataset")
    result = runner.invoke(main, ["datasets", "show", str(path)])
    assert result.exit_code == 1
    _no_traceback(result)
    assert result.output.startswith("Error: ")
    assert name in result.output


def test_datasets_show_unknown_name(runner):
    result = runner.invoke(main, ["datasets", "show", "no-such-dataset"])
    assert result.exit_code == 1
    assert "known datasets" in result.output


def test_datasets_download(runner, tmp_path, rng, monkeypatch, small_file):
    payload_path = tmp_path / "payload.hdf5"
    datasets.write_hdf5(
        payload_path,
        rng.standard_normal((30, 25)),
        rng.standard_normal((4, 25)),
        np.zeros((4, 2), np.int32),
        np.zeros((4, 2)),
        "angular",
    )
    payload = payload_path.read_bytes()

    class Response:
        def __init__(self):
            self.offset = 0
            self.headers = {"Content-Length": str(len(payload))}

        def read(self, size):
            chunk = payload[self.offset : self.offset + size]
            self.offset += len(chunk)
            return chunk

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Response())
    target = tmp_path / "out"
    result = runner.invoke(main, ["datasets", "download", "glove-25-angular", "--dir", str(target), "--json"])
    assert result.exit_code == 0, result.output
    report = strict_loads(result.output)
    assert report["path"] == str(target / "glove-25-angular.hdf5")
    assert report["bytes"] == len(payload)


def test_datasets_download_offline(runner, tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    result = runner.invoke(main, ["datasets", "download", "glove-25-angular", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    _no_traceback(result)
    assert "cannot download https://ann-benchmarks.com/glove-25-angular.hdf5" in result.output
    assert not list(tmp_path.iterdir())


def test_datasets_download_unknown_name(runner, tmp_path):
    result = runner.invoke(main, ["datasets", "download", "nope", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown dataset 'nope'" in result.output


def test_datasets_ground_truth_agrees_with_stored(runner, small_file):
    result = runner.invoke(main, ["datasets", "ground-truth", str(small_file), "-k", "10", "--json"])
    assert result.exit_code == 0, result.output
    report = strict_loads(result.output)
    assert report["compared_k"] == 10
    assert report["id_recall"] == 1.0
    assert report["distance_recall"] == 1.0
    assert report["max_abs_distance_diff"] < 1e-5
    text = runner.invoke(main, ["datasets", "ground-truth", str(small_file), "-k", "10"]).output
    assert "id recall 1.0000" in text


def test_datasets_ground_truth_writes_file(runner, small_file, tmp_path):
    out = tmp_path / "fixed.hdf5"
    result = runner.invoke(main, ["datasets", "ground-truth", str(small_file), "-k", "50", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "vs stored @20" in result.output
    written = datasets.read_hdf5(out)
    original = datasets.read_hdf5(small_file)
    assert written.neighbors.shape == (10, 50)
    np.testing.assert_array_equal(written.neighbors[:, :20], original.neighbors)
    assert written.attrs["source"] == "cli test"
    assert written.distance == "angular"


def test_datasets_ground_truth_errors(runner, tmp_path, small_file):
    result = runner.invoke(main, ["datasets", "ground-truth", str(small_file), "-k", "500"])
    assert result.exit_code == 1
    _no_traceback(result)
    assert "at most the number of train points (200)" in result.output
    assert runner.invoke(main, ["datasets", "ground-truth", str(small_file), "-k", "0"]).exit_code == 2
    train_only = tmp_path / "train.npy"
    np.save(train_only, np.zeros((4, 2), np.float32))
    result = runner.invoke(main, ["datasets", "ground-truth", str(train_only)])
    assert result.exit_code == 1
    assert "no 'test' queries" in result.output
    result = runner.invoke(main, ["datasets", "ground-truth", str(tmp_path / "missing.hdf5")])
    assert result.exit_code == 1
    _no_traceback(result)
