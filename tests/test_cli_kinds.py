"""``annlib info``, ``search`` and ``tune`` on a file of every index kind, through annlib.load_index."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner
from test_cli_errors import strict_loads

import annlib
from annlib import datasets
from annlib.cli import main

N, DIM, NQ = 600, 16, 20


def _build(kind: str, train: np.ndarray):
    if kind == "brute_force":
        return annlib.BruteForce(train, "cosine")
    if kind == "tree_ah":
        return annlib.TreeAhIndex(train, "cosine", num_leaves=12, num_leaves_to_search=4, reorder=50,
                                  reorder_quantize="int8", reorder_exact_num_neighbors=20)  # every tree_ah parameter
    pytest.importorskip("jax")
    return annlib.JaxBruteForce(train, "cosine")


KINDS = ["brute_force", "tree_ah", "jax_brute_force"]
# The search options each kind accepts; every other one must be refused.
OPTIONS = {
    "brute_force": {},
    "tree_ah": {"--leaves-to-search": "12", "--reorder": "100", "--exact-reorder": "100"},
    "jax_brute_force": {"--recall-target": "1.0"},
}
ALL_OPTIONS = {"--leaves-to-search": "12", "--reorder": "100", "--exact-reorder": "100", "--recall-target": "1.0"}
NAMES = {"--leaves-to-search": "leaves_to_search", "--reorder": "pre_reorder_num_neighbors",
         "--exact-reorder": "exact_reorder_num_neighbors", "--recall-target": "recall_target"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Clustered points in an ann-benchmarks file with exact ground truth (computed with numpy)."""
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((12, DIM))
    train = (centers[rng.integers(0, 12, N)] + 0.3 * rng.standard_normal((N, DIM))).astype(np.float32)
    test = (centers[rng.integers(0, 12, NQ)] + 0.3 * rng.standard_normal((NQ, DIM))).astype(np.float32)
    unit = train / np.linalg.norm(train, axis=1, keepdims=True)
    unit_q = test / np.linalg.norm(test, axis=1, keepdims=True)
    dist = 1.0 - unit_q.astype(np.float64) @ unit.T.astype(np.float64)
    ids = np.argsort(dist, axis=1, kind="stable")[:, :20]
    path = tmp_path_factory.mktemp("kinds") / f"clusters-{DIM}-angular.hdf5"
    datasets.write_hdf5(path, train, test, ids, np.take_along_axis(dist, ids, 1), "angular")
    return path, train, test


@pytest.fixture(scope="module", params=KINDS)
def index_file(request, sample, tmp_path_factory):
    kind = request.param
    path = tmp_path_factory.mktemp(kind) / f"{kind}.annl"
    _build(kind, sample[1]).save(path)
    return kind, path


def _ok(args: list[str]) -> dict:
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return strict_loads(result.stdout)


def test_info(index_file):
    kind, path = index_file
    report = _ok(["info", str(path)])
    assert report["kind"] == kind
    assert (report["points"], report["dim"], report["metric"]) == (N, DIM, "cosine")
    assert report["total_bytes"] >= N * DIM * 4  # every kind keeps the float32 data or codes plus reorder data
    assert set(report["search_defaults"]) == {NAMES[flag] for flag in OPTIONS[kind]}
    text = CliRunner().invoke(main, ["info", str(path)])
    assert text.exit_code == 0, text.output
    assert f"kind        {kind}, metric cosine" in text.output
    assert f"points      {N:,} x {DIM} dims" in text.output


def test_search_matches_the_library(index_file, sample):
    kind, path = index_file
    hdf5, _, test = sample
    report = _ok(["search", str(path), str(hdf5), "-k", "10"])
    assert report["kind"] == kind and report["k"] == 10 and report["queries"] == NQ
    direct = annlib.load_index(path).search_batched(test, 10)
    np.testing.assert_array_equal(np.asarray(report["ids"]), direct.ids)
    floor = {"brute_force": 1.0, "tree_ah": 0.9, "jax_brute_force": 0.9}[kind]
    assert report["recall"] >= floor


def test_search_options_of_the_kind(index_file, sample):
    kind, path = index_file
    hdf5 = str(sample[0])
    for flag, value in OPTIONS[kind].items():
        report = _ok(["search", str(path), hdf5, "-k", "10", flag, value])
        assert report[NAMES[flag]] == (float(value) if flag == "--recall-target" else int(value))
        assert report["recall"] >= 0.99  # every option above asks for (near) exhaustive search


def test_search_option_of_another_kind_is_one_line_error(index_file, sample):
    kind, path = index_file
    foreign = [flag for flag in ALL_OPTIONS if flag not in OPTIONS[kind]]
    assert foreign  # every kind lacks at least one of the options
    for flag in foreign:
        result = CliRunner().invoke(main, ["search", str(path), str(sample[0]), flag, ALL_OPTIONS[flag]])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output
        assert f"a {kind} index has no {NAMES[flag]} search parameter" in lines[0]
        assert flag in lines[0]


def test_tune_then_load(index_file, sample, tmp_path):
    kind, path = index_file
    hdf5 = sample[0]
    tuned = tmp_path / f"tuned-{kind}.annl"
    report = _ok(["tune", str(path), str(hdf5), "--target-recall", "0.9", "-k", "10", "--out", str(tuned)])
    assert report["kind"] == kind and report["index_kind"] == kind
    assert report["measured_recall"] >= 0.85
    reloaded = annlib.load_index(tuned)
    assert reloaded.kind == kind
    saved = {name: value for name, value in dataclasses.asdict(reloaded.search_defaults).items() if value is not None}
    # the tuned parameters are the file's defaults; one the tuner leaves alone (exact_reorder_num_neighbors) stays
    assert report["params"] == {name: saved[name] for name in report["params"]}
    assert set(saved) - set(report["params"]) <= {"exact_reorder_num_neighbors"}
    text = CliRunner().invoke(main, ["tune", str(path), "--target-recall", "0.9"])
    assert text.exit_code == 0, text.output
    assert f"({kind})" in text.output.splitlines()[0]


def test_huge_reorder_is_clamped_by_the_search(sample, tmp_path):
    """--reorder far above the index size searches like --reorder N (no huge allocation)."""
    path = tmp_path / "tree.annl"
    _build("tree_ah", sample[1]).save(path)
    huge = _ok(["search", str(path), str(sample[0]), "-k", "10", "--reorder", str(10**12)])
    exact = _ok(["search", str(path), str(sample[0]), "-k", "10", "--reorder", str(N)])
    assert huge["ids"] == exact["ids"]
