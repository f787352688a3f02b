"""annlib.bench: one grid, one timing rule, one runner for `annlib bench` and bench/peers.py."""

from __future__ import annotations

import importlib.util
import itertools
import pathlib

import numpy as np
import pytest

from annlib import bench
from annlib.bench import adapters, grid, report, runner, timing
from annlib.bench.synthetic import clustered_angular

PEERS_SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "bench" / "peers.py"


# --------------------------------------------------------------------------- grid


@pytest.mark.parametrize(
    ("recalls", "stop"),
    [
        ([0.5, 0.7], False),
        ([0.995], True),
        ([0.80, 0.8005, 0.8008], False),  # flat, but below the plateau floor: keep going
        ([0.95, 0.9505, 0.9508], True),  # two steps in a row gaining < 0.001 past 0.9
        ([0.95, 0.9505, 0.96], False),  # only one flat step
        ([0.90, 0.95, 0.97], False),
    ],
)
def test_should_stop(recalls, stop):
    assert grid.should_stop(recalls) is stop


def test_tree_sweeps_cap_leaves_and_raise_reorder_to_k():
    sweeps = grid.tree_sweeps(num_leaves=12, k=50)
    reorders = [inner[0]["pre_reorder_num_neighbors"] for inner in sweeps]
    assert reorders == sorted(set(reorders)) and min(reorders) == 50
    assert all(p["leaves_to_search"] <= 12 for inner in sweeps for p in inner)
    assert grid.tree_sweeps(num_leaves=1, k=10)[0] == [{"leaves_to_search": 1, "pre_reorder_num_neighbors": 20}]
    assert [p["ef"] for p in grid.ef_sweeps(100)[0]][0] == 100


# --------------------------------------------------------------------------- timing


def test_median_of_passes_is_the_median():
    values = iter([3.0, 1.0, 2.0, 10.0, 0.5])
    assert timing.median_of_passes(lambda: next(values), 5) == 2.0
    with pytest.raises(ValueError, match="runs"):
        timing.median_of_passes(lambda: 1.0, 0)


def test_median_seconds_times_calls_and_ignores_their_results():
    calls = []
    seconds = timing.median_seconds(lambda: calls.append(1) or np.arange(3), runs=3, warmup=2)
    assert len(calls) == 5
    assert seconds >= 0.0


# --------------------------------------------------------------------------- adapters


def test_algorithm_names_are_one_set():
    assert adapters.ALGORITHMS == (
        "annlib", "annlib-soar", "scann", "faiss-ivfpq", "faiss-hnsw", "hnswlib", "jax-bruteforce",
    )
    assert set(adapters.REQUIRES) == set(adapters.ALGORITHMS)
    assert bench.ALGORITHMS == adapters.ALGORITHMS


def test_make_checks_names_and_build_parameters(rng):
    data = rng.standard_normal((100, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="unknown algorithm 'faiss-ivfpqfs'"):
        adapters.make("faiss-ivfpqfs", data, "dot", 10, 1)
    with pytest.raises(TypeError, match="num_leafs"):
        adapters.make("annlib", data, "dot", 10, 1, num_leafs=4)
    with pytest.raises(ValueError, match="annlib-soar"):
        adapters.make("annlib", data, "dot", 10, 1, soar_lambda=1.5)
    soar = adapters.make("annlib-soar", data, "dot", 10, 1, soar_lambda=1.5, num_leaves=5)
    assert (soar.family, soar.name) == ("annlib-soar", "annlib-soar L=5 T=0.2 soar=1.5")
    nearest = adapters.make("annlib-soar", data, "squared_l2", 10, 1, spill="nearest")
    assert nearest.name == "annlib-soar L=10 T=None spill=nearest"


# --------------------------------------------------------------------------- runner and report


@pytest.fixture(scope="module")
def small():
    return clustered_angular(1500, 16, num_queries=30, num_clusters=50, seed=3)


def test_synthetic_ground_truth_is_exact(small):
    sims = small.test @ small.train.T
    np.testing.assert_array_equal(small.neighbors[:, 0], np.argmax(sims, axis=1))
    np.testing.assert_allclose(small.distances[:, 0], 1.0 - sims.max(axis=1), atol=1e-5)


def test_run_modes_measures_every_build_in_every_mode(small):
    builds = {"annlib": [{"num_leaves": 8}, {"num_leaves": 16}], "annlib-soar": [{"num_leaves": 8, "soar_lambda": 1.5}]}
    seen = []
    results = runner.run_modes(
        small, ["annlib", "annlib-soar"], ("single", "batch"), k=10, runs=1, threads=1, progress=False,
        on_point=seen.append, notice=lambda line: None, builds=builds, single_queries=5,
    )
    assert set(results) == {"single", "batch"}
    names = ["annlib L=8 T=0.2", "annlib L=16 T=0.2", "annlib-soar L=8 T=0.2 soar=1.5"]
    for mode, result in results.items():
        assert result.names == names
        assert result.families == ["annlib", "annlib-soar"]
        assert {p.mode for p in result.points} == {mode}
        assert max(p.recall for p in result.points) >= 0.99  # the sweep reaches all 16 leaves
        assert all(p.qps > 0 for p in result.points)
    assert len(seen) == sum(len(r.points) for r in results.values())
    # recall does not depend on the mode: same index, same parameters
    single = {(p.name, tuple(p.params.items())): p.recall for p in results["single"].points}
    batch = {(p.name, tuple(p.params.items())): p.recall for p in results["batch"].points}
    shared = batch.keys() & single.keys()
    assert shared and {key: single[key] for key in shared} == {key: batch[key] for key in shared}

    rows = report.summary_rows(results["batch"], targets=(0.9,))
    assert [r["name"] for r in rows] == names
    plain = [r["at"][0.9]["vs_annlib"] for r in rows if r["algorithm"] == "annlib"]
    assert max(plain) == 1.0
    table = report.markdown(results["batch"], "cmd", targets=(0.9,))
    assert "| annlib | annlib L=16 T=0.2 |" in table and "vs annlib" in table and "median of 1 timed runs" in table


def test_run_rejects_bad_arguments(small):
    with pytest.raises(ValueError, match="unknown algorithm"):
        runner.run(small, ["annlib", "nope"])
    with pytest.raises(ValueError, match="mode"):
        runner.run_modes(small, ["annlib"], ("both",))
    with pytest.raises(ValueError, match="single_queries"):
        runner.run(small, ["annlib"], single_queries=0)


def _peers_module():
    spec = importlib.util.spec_from_file_location("bench_peers", PEERS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peers_script_build_grid_is_the_product_of_its_flags():
    peers = _peers_module()
    args = peers.parse_args(
        ["--annlib-leaves", "100", "200", "--annlib-threshold", "0.2", "0.3", "--soar-lambda", "1.5",
         "--nearest-spill", "--scann-soar-lambda", "1.5", "--hnswlib-m", "16", "32"]
    )
    builds = peers.builds_from(args)
    assert builds["annlib"] == [
        {"num_leaves": L, "threshold": T} for L, T in itertools.product([100, 200], [0.2, 0.3])
    ]
    assert len(builds["annlib-soar"]) == 8
    assert {b.get("spill", "soar") for b in builds["annlib-soar"]} == {"soar", "nearest"}
    assert [b.get("soar_lambda") for b in builds["scann"]] == [None, 1.5, None, 1.5]
    assert builds["hnswlib"] == [{"m": 16}, {"m": 32}]
    assert "annlib-soar" in args.algorithms
    assert peers.builds_from(peers.parse_args([]))["faiss-ivfpq"] == [{}]


def test_peers_script_runs_both_modes_through_the_harness(tmp_path, capsys):
    peers = _peers_module()
    out = tmp_path / "out"
    code = peers.main(
        ["--synthetic", "1500x16", "--synthetic-queries", "20", "--algorithms", "annlib", "--runs", "1",
         "--single-queries", "5", "--annlib-leaves", "8", "--targets", "0.9", "--out", str(out)]
    )
    assert code == 0
    for mode in ("single", "batch"):
        stem = out / f"synthetic-clustered-1500x16-{mode}-k10"
        assert stem.with_suffix(".csv").is_file() and stem.with_suffix(".png").is_file()
        table = stem.with_suffix(".md").read_text()
        assert "| annlib | annlib L=8 T=0.2 |" in table
        assert "command: `python bench/peers.py --synthetic 1500x16" in table
    assert "QPS @0.90" in capsys.readouterr().out
