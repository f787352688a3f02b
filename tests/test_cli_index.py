"""The index commands of the CLI (build, info INDEX, tune, search, bench) on the embedded real sample."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import EMBEDDED_SAMPLE
from test_cli_errors import strict_loads  # every --json output must be strict JSON

import annlib
from annlib import datasets
from annlib.cli import main

SAMPLE = str(EMBEDDED_SAMPLE)


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory, runner):
    """One index over the embedded sample, built through the CLI."""
    if not EMBEDDED_SAMPLE.exists():
        pytest.skip(f"dataset not present: {EMBEDDED_SAMPLE}")
    path = tmp_path_factory.mktemp("cli") / "minilm.annl"
    result = runner.invoke(main, ["build", SAMPLE, "--out", str(path), "--num-leaves", "100", "--leaves-to-search", "20", "--json"])
    assert result.exit_code == 0, result.output
    return path, strict_loads(result.stdout)


def _clean_failure(result, code: int = 1) -> str:
    """A failed command: the expected exit status, no traceback, one 'Error:' line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("command", ["build", "search", "info", "tune", "bench"])
def test_help_has_an_example(runner, command):
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and f"annlib {command}" in result.output


def test_build_summary(built):
    path, report = built
    assert path.exists()
    assert report["points"] == 10_000 and report["dim"] == 384
    assert report["partitions"] == 100 and report["leaves_to_search"] == 20
    assert report["metric"] == "cosine"  # from the file's "angular"
    assert report["memory_bytes"] > 10_000 * 384 * 4
    assert report["build_seconds"] > 0


def test_build_text_and_soar(runner, tmp_path):
    out = tmp_path / "soar.annl"
    result = runner.invoke(main, ["build", SAMPLE, "--out", str(out), "--num-leaves", "50", "--soar-lambda", "1.0", "--reorder", "0"])
    assert result.exit_code == 0, result.output
    for word in ("points", "10,000 x 384", "partitions", "spilled by SOAR", "memory", "build time"):
        assert word in result.output
    index = annlib.TreeAhIndex.load(out)
    assert index.config["tree"]["soar_lambda"] == 1.0 and index.config["reorder"] is None


def test_build_npy_needs_metric_and_fvecs(runner, tmp_path, real_sample):
    npy = tmp_path / "data.npy"
    np.save(npy, real_sample["train"][:500])
    result = runner.invoke(main, ["build", str(npy), "--out", str(tmp_path / "x.annl")])
    assert "--metric" in _clean_failure(result, code=2)
    fvecs = tmp_path / "data.fvecs"
    datasets.write_fvecs(fvecs, real_sample["train"][:500])
    for data in (npy, fvecs):
        out = tmp_path / f"{data.suffix[1:]}.annl"
        result = runner.invoke(main, ["build", str(data), "--metric", "dot", "--num-leaves", "10", "--out", str(out), "--json"])
        assert result.exit_code == 0, result.output
        assert strict_loads(result.stdout)["points"] == 500


def test_info_index(runner, built):
    path, _ = built
    result = runner.invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    for word in ("format v3", "tree_ah", "metric cosine", "num_leaves=100", "partitions", "max/mean", "memory", "reorder_float"):
        assert word in result.output
    report = strict_loads(runner.invoke(main, ["info", str(path), "--json"]).stdout)
    assert report["format_version"] == 3 and report["kind"] == "tree_ah"
    assert report["points"] == 10_000 and report["partitions"] == 100
    sizes = report["partition_size"]
    assert sizes["min"] <= sizes["mean"] == 100.0 <= sizes["max"]
    assert report["config"]["tree"]["num_leaves_to_search"] == 20


def test_search_recall(runner, built, tmp_path):
    path, _ = built
    result = runner.invoke(main, ["search", str(path), SAMPLE, "-k", "10"])
    assert result.exit_code == 0, result.output
    assert "recall@10" in result.output and "QPS" in result.output
    report = strict_loads(runner.invoke(main, ["search", str(path), SAMPLE, "-k", "10", "--json"]).stdout)
    assert report["queries"] == 200 and report["leaves_to_search"] == 20
    assert report["recall"] >= 0.93
    ids = np.asarray(report["ids"])
    assert ids.shape == (200, 10)
    # the CLI's recall is the library's
    index = annlib.TreeAhIndex.load(path)
    ds = datasets.load(SAMPLE)
    direct = index.search_batched(ds.test, 10)
    np.testing.assert_array_equal(ids, direct.ids)
    assert report["recall"] == pytest.approx(annlib.metrics.recall_of_ids(direct.ids, ds.train, ds.test, ds.distances, 10, "angular"))
    # more leaves, more recall
    wide = strict_loads(runner.invoke(main, ["search", str(path), SAMPLE, "--leaves-to-search", "60", "--reorder", "200", "--json"]).stdout)
    assert wide["recall"] >= max(report["recall"], 0.99)


def test_search_writes_npy_and_csv(runner, built, tmp_path, real_sample):
    path, _ = built
    queries = tmp_path / "q.npy"
    np.save(queries, real_sample["test"][:7])
    out = tmp_path / "ids.npy"
    result = runner.invoke(main, ["search", str(path), str(queries), "-k", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "recall" not in result.output  # a .npy has no ground truth
    assert np.load(out).shape == (7, 5)
    out_csv = tmp_path / "ids.csv"
    assert runner.invoke(main, ["search", str(path), str(queries), "-k", "5", "--out", str(out_csv)]).exit_code == 0
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 35 and [int(r["id"]) for r in rows[:5]] == np.load(out)[0].tolist()


def test_tune_then_search(runner, built, tmp_path):
    index = annlib.TreeAhIndex.load(built[0])
    if not hasattr(index, "autotune"):
        pytest.skip("TreeAhIndex.autotune is not there yet")
    pytest.importorskip("annlib.autotune")
    tuned = tmp_path / "tuned.annl"
    result = runner.invoke(main, ["tune", str(built[0]), SAMPLE, "--target-recall", "0.95", "--out", str(tuned), "--json"])
    assert result.exit_code == 0, result.output
    report = strict_loads(result.stdout)
    assert report["measured_recall"] >= 0.93
    search = strict_loads(runner.invoke(main, ["search", str(tuned), SAMPLE, "--json"]).stdout)
    assert search["leaves_to_search"] == report["leaves_to_search"]
    assert search["recall"] >= 0.93


def test_tune_takes_the_recall_tolerance(runner, built):
    """--recall-tolerance reaches the tuner: by default the confidence bound need only reach
    target - 0.005; with 0 it must reach the target itself, and the message says which."""
    pytest.importorskip("annlib.autotune")
    messages = {}
    for tolerance in ("0.005", "0"):
        argv = ["tune", str(built[0]), SAMPLE, "--target-recall", "0.9", "--recall-tolerance", tolerance, "--json"]
        result = runner.invoke(main, argv)
        assert result.exit_code == 0, result.output
        report = strict_loads(result.stdout)
        assert report["predicted_recall"] >= 0.9
        messages[tolerance] = report["message"]
    assert "over 0.895" in messages["0.005"] and "over" not in messages["0"]


def test_bench_tiny(runner, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--algorithms", "annlib,annlib-soar", "--mode", "batch", "--queries", "50", "--runs", "1", "--out", str(out)]
    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = strict_loads(result.stdout)
    stem = out / "debian-minilm-10k-batch-k10"
    assert report["files"] == {"csv": f"{stem}.csv", "table": f"{stem}.md", "plot": f"{stem}.png"}
    with open(f"{stem}.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["family"] for r in rows} == {"annlib", "annlib-soar"}
    assert max(float(r["recall"]) for r in rows) >= 0.99
    with open(f"{stem}.md") as f:
        table = f.read()
    assert "QPS @0.90" in table and "| annlib |" in table and "| annlib-soar |" in table
    with open(f"{stem}.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    by_name = {row["algorithm"]: row for row in report["algorithms"]}
    assert by_name["annlib"]["at"]["0.90"]["qps"] > 0


def test_bench_skips_missing_peer(runner, tmp_path, monkeypatch):
    from annlib.bench import runner as bench_runner

    real = bench_runner.available
    monkeypatch.setattr(bench_runner, "available", lambda family: family != "hnswlib" and real(family))
    args = ["bench", "--algorithms", "annlib,hnswlib", "--mode", "batch", "--queries", "20", "--runs", "1", "--out", str(tmp_path)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "skipping hnswlib: python package 'hnswlib' is not installed" in result.stderr
    assert "Skipped: hnswlib" in result.stdout


# --------------------------------------------------------------------------- errors


def test_missing_files(runner, built, tmp_path):
    assert "does not exist" in _clean_failure(runner.invoke(main, ["info", str(tmp_path / "none.annl")]), code=2)
    assert "does not exist" in _clean_failure(runner.invoke(main, ["search", str(tmp_path / "none.annl"), SAMPLE]), code=2)
    assert "not found" in _clean_failure(runner.invoke(main, ["build", str(tmp_path / "none.hdf5"), "--out", str(tmp_path / "x")]))
    assert "not found" in _clean_failure(runner.invoke(main, ["search", str(built[0]), str(tmp_path / "none.npy")]))
    result = runner.invoke(main, ["bench", "--dataset", "no-such-data", "--out", str(tmp_path / "b")])
    assert "neither a known dataset" in _clean_failure(result)
    assert not (tmp_path / "b").exists()


def test_wrong_formats(runner, built, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    fake_h5 = tmp_path / "fake.hdf5"
    fake_h5.write_text("not hdf5")
    npy = tmp_path / "q.npy"
    np.save(npy, np.zeros((3, 384), np.float32))
    assert "unsupported file type" in _clean_failure(runner.invoke(main, ["build", str(text), "--out", str(tmp_path / "x")]))
    assert "not a readable HDF5" in _clean_failure(runner.invoke(main, ["build", str(fake_h5), "--out", str(tmp_path / "x")]))
    assert "not an annlib index" in _clean_failure(runner.invoke(main, ["info", str(npy)]))
    assert "not an annlib index" in _clean_failure(runner.invoke(main, ["search", str(text), str(npy)]))
    assert ".npy or .csv" in _clean_failure(runner.invoke(main, ["search", str(built[0]), str(npy), "--out", str(tmp_path / "r.txt")]), code=2)
    assert "unknown" in _clean_failure(runner.invoke(main, ["bench", "--algorithms", "annlib,nope"]), code=2)


def test_dimension_mismatch(runner, built, tmp_path):
    queries = tmp_path / "q128.npy"
    np.save(queries, np.ones((4, 128), np.float32))
    line = _clean_failure(runner.invoke(main, ["search", str(built[0]), str(queries)]))
    assert "dimension mismatch" in line and "128" in line and "384" in line


def test_corrupt_index(runner, built, tmp_path):
    path, _ = built
    flipped = tmp_path / "flipped.annl"
    shutil.copy(path, flipped)
    with open(flipped, "r+b") as f:
        f.seek(flipped.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    truncated = tmp_path / "truncated.annl"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    for bad, word in ((flipped, "corrupt"), (truncated, "truncated")):
        assert word in _clean_failure(runner.invoke(main, ["info", str(bad)]))
        assert word in _clean_failure(runner.invoke(main, ["search", str(bad), SAMPLE]))


def test_bad_parameters(runner, built, tmp_path):
    out = str(tmp_path / "x.annl")
    assert "exceeds --num-leaves" in _clean_failure(
        runner.invoke(main, ["build", SAMPLE, "--out", out, "--num-leaves", "5", "--leaves-to-search", "10"]), code=2
    )
    assert "leaves_to_search" in _clean_failure(runner.invoke(main, ["search", str(built[0]), SAMPLE, "--leaves-to-search", "500"]))


def test_build_with_target_recall_tunes_and_saves(tmp_path):
    from annlib.cli import main

    if not EMBEDDED_SAMPLE.exists():
        pytest.skip("embedded sample missing")
    out = tmp_path / "tuned.annl"
    result = CliRunner().invoke(main, ["build", str(EMBEDDED_SAMPLE), "--target-recall", "0.9", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = strict_loads(result.output)
    tuning = report["tuning"]
    assert tuning["predicted_recall"] >= 0.9 and not tuning["best_effort"]
    index = annlib.TreeAhIndex.load(out)
    assert index.config["tree"]["num_leaves_to_search"] == tuning["leaves_to_search"]


def test_demo_reports_exact_and_quantized_recall(runner):
    if not EMBEDDED_SAMPLE.exists():
        pytest.skip("embedded sample missing")
    result = runner.invoke(main, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    report = strict_loads(result.stdout)
    assert (report["n"], report["dim"], report["k"]) == (10_000, 384, 10)
    recalls = {row["index"]: row["recall"] for row in report["rows"]}
    assert recalls["BruteForce (exact)"] == 1.0
    assert min(recalls.values()) >= 0.85  # the two tree-AH rows on this sample reach about 0.9
    assert all(row["qps"] > 0 for row in report["rows"])
