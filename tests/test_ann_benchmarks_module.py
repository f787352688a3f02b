"""bench/ann_benchmarks/annlib driven exactly as ann-benchmarks' runner drives an algorithm.

The module is loaded by file path (no ann-benchmarks checkout: it falls back to its own minimal
BaseANN). Constructor arguments and query arguments come from its config.yml, expanded the way
``ann_benchmarks/definitions.py`` does (Cartesian product of the lists, ``@metric`` substituted);
then, as ``runner.run``: ``fit(X_train)``, and for each query-argument group
``set_query_arguments(*group)``, every query alone through ``query(q, 10)``, and the batch through
``batch_query`` + ``get_batch_results``. Recall is the harness's: distances recomputed from
X_train, a hit when within 1e-3 of the 10th true distance.
"""

from __future__ import annotations

import importlib.util
import itertools
import pathlib

import numpy as np
import pytest

MODULE_DIR = pathlib.Path(__file__).resolve().parent.parent / "bench" / "ann_benchmarks" / "annlib"
COUNT = 10


@pytest.fixture(scope="module")
def module():
    spec = importlib.util.spec_from_file_location("annlib_ann_benchmarks_module", MODULE_DIR / "module.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def config():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((MODULE_DIR / "config.yml").read_text())


def _combinations(args):
    """ann-benchmarks' ``_generate_combinations`` for list arguments."""
    args = [a if isinstance(a, list) else [a] for a in args]
    return [list(x) for x in itertools.product(*args)]


def _definitions(config, metric: str, run_group: str | None):
    """(name, constructor, args, query_argument_groups) for each run of ``metric``'s entries."""
    out = []
    for entry in config["float"][metric]:
        for group_name, group in entry["run_groups"].items():
            if run_group is not None and group_name not in (run_group, "base"):
                continue
            for arg_group in _combinations(group["args"]):
                args = [metric if a == "@metric" else a for a in entry["base_args"]] + arg_group
                out.append((entry["name"], entry["constructor"], args, _combinations(group.get("query_args", []))))
    return out


def _angular(v, x):
    """ann-benchmarks' angular distance, computed as the runner does (one pair at a time)."""
    return 1 - np.dot(v, x) / (np.linalg.norm(v) * np.linalg.norm(x))


def _check_and_score(candidates, v, X_train, true_distances):
    assert len(candidates) == len(set(candidates)), "Implementation returned duplicated candidates"
    assert len(candidates) <= COUNT
    distances = [_angular(v, X_train[int(idx)]) for idx in candidates]
    threshold = true_distances[COUNT - 1] + 1e-3
    return sum(d <= threshold for d in distances) / COUNT


def _run(algo, X_train, X_test, true_distances, batch: bool) -> float:
    if batch:
        algo.batch_query(X_test, COUNT)
        results = algo.get_batch_results()
        assert len(results) == len(X_test)
    else:
        results = [algo.query(v, COUNT) for v in X_test]
    return float(np.mean([_check_and_score(r, v, X_train, t) for r, v, t in zip(results, X_test, true_distances)]))


def test_config_layout(config, module):
    """Every entry has what definitions.py requires and names a constructor the module defines."""
    assert set(config) == {"float"}
    assert set(config["float"]) == {"angular", "euclidean"}
    names = set()
    for metric, entries in config["float"].items():
        for entry in entries:
            for key in ("name", "constructor", "module", "docker_tag", "base_args", "run_groups"):
                assert key in entry, (metric, entry.get("name"), key)
            assert entry["module"] == "ann_benchmarks.algorithms.annlib"
            assert hasattr(module, entry["constructor"])
            names.add(entry["name"])
            for group in entry["run_groups"].values():
                assert "args" in group and "query_args" in group
    assert names == {"annlib", "annlib-soar", "annlib-jax-bruteforce"}


@pytest.mark.parametrize("name", ["annlib", "annlib-soar", "annlib-jax-bruteforce"])
def test_driven_like_the_runner(module, config, real_sample, name):
    if name == "annlib-jax-bruteforce":
        pytest.importorskip("jax")
    X_train, X_test, true_distances = real_sample["train"], real_sample["test"], real_sample["distances"]
    runs = [d for d in _definitions(config, "angular", "small") if d[0] == name]
    assert len(runs) == 1
    _, constructor, args, query_groups = runs[0]
    algo = getattr(module, constructor)(*args)
    memory_before = algo.get_memory_usage()
    algo.fit(X_train.copy())  # the runner hands over its own array
    assert algo.get_memory_usage() - memory_before > X_train.nbytes / 1024 * 0.5
    names, recalls = set(), []
    for group in query_groups:
        algo.set_query_arguments(*group)
        names.add(str(algo))
        single = _run(algo, X_train, X_test, true_distances, batch=False)
        batched = _run(algo, X_train, X_test, true_distances, batch=True)
        assert abs(single - batched) <= 0.01, (group, single, batched)
        recalls.append(single)
    algo.done()
    assert len(names) == len(query_groups), "__str__ must be unique per query setting"
    # the sweep goes from cheap to exact: low recall first, (near) perfect last
    assert recalls[-1] >= 0.99, recalls
    assert max(recalls) >= 0.99 and min(recalls) < 0.95, recalls
    if name == "annlib-jax-bruteforce":
        targets = [g[0] for g in query_groups]
        for target, got in zip(targets, recalls):
            assert got >= target - 0.1, (target, got)
    else:
        assert np.mean(np.diff(recalls) >= -0.02) == 1.0, recalls  # more leaves never loses much


def test_soar_beats_plain_at_few_leaves(module, real_sample):
    X_train, X_test, true_distances = real_sample["train"], real_sample["test"], real_sample["distances"]
    found = {}
    for soar_lambda in (None, 1.0):
        algo = module.Annlib("angular", 100, 0.2, 2, soar_lambda)
        algo.fit(X_train)
        algo.set_query_arguments([4, 20])
        found[soar_lambda] = _run(algo, X_train, X_test, true_distances, batch=True)
    assert found[1.0] > found[None]


def test_euclidean_and_nan_threshold(module, real_sample):
    """euclidean groups: squared_l2 index; ScaNN-style .nan threshold means no anisotropic loss."""
    X_train, X_test = real_sample["train"][:2000], real_sample["test"][:20]
    algo = module.Annlib("euclidean", 40, float("nan"), 2, None)
    algo.fit(X_train)
    algo.set_query_arguments([40, 100])  # every leaf: exact after reorder
    d = ((X_test[:, None, :] - X_train[None]) ** 2).sum(-1)
    truth = np.sort(np.sqrt(d), axis=1)
    for v, t in zip(X_test, truth):
        ids = algo.query(v, COUNT)
        assert len(ids) == len(set(ids)) == COUNT
        got = np.sqrt(((X_train[ids] - v) ** 2).sum(-1))
        assert np.all(got <= t[COUNT - 1] + 1e-3)
