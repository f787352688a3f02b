"""bench/ann_benchmarks/{annlib,annlib_jax} run through ann-benchmarks' own flow against a stub harness.

No ann-benchmarks checkout is needed: the fixture ``harness`` puts a stub ``ann_benchmarks`` package
in ``sys.modules`` whose ``algorithms`` package path is ``bench/ann_benchmarks``, with
``ann_benchmarks.algorithms.base.module.BaseANN`` as upstream defines it (memory = RSS). The modules
are then imported by the name ``config.yml`` gives (``ann_benchmarks.algorithms.annlib`` +
``.module``), as ``definitions.instantiate_algorithm`` does, and their plain ``from ..base.module
import BaseANN`` resolves to the stub. The flow mirrors ``ann_benchmarks/runner.py``:
``run_docker`` turns a definition into a command line, ``run_from_cmdline`` parses it (JSON
arguments), ``run`` instantiates, ``build_index`` measures memory around ``fit``, and each query
argument group is run single (``query``) and batched (``batch_query``), distances recomputed by the
harness from ``X_train``. Recall is the ``knn`` metric of ann-benchmarks' plots: a hit when within
1e-3 of the count-th true distance.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import pathlib
import sys
import types

import numpy as np
import pytest

BENCH_DIR = pathlib.Path(__file__).resolve().parent.parent / "bench" / "ann_benchmarks"
MODULE_DIR = BENCH_DIR / "annlib"
EMBEDDED_SAMPLE = BENCH_DIR.parent.parent / "datasets" / "debian-minilm-10k.hdf5"
JAX_DIR = BENCH_DIR / "annlib_jax"
COUNT = 10
STUBBED = ("ann_benchmarks", "ann_benchmarks.algorithms", "ann_benchmarks.algorithms.base",
           "ann_benchmarks.algorithms.base.module")


# ------------------------------------------------------------------ the stub harness


class BaseANN:
    """``ann_benchmarks.algorithms.base.module.BaseANN``: the same methods and defaults."""

    def done(self):
        pass

    def get_memory_usage(self):
        # upstream: psutil.Process().memory_info().rss / 1024; the same number from /proc
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import resource

        return pages * resource.getpagesize() / 1024

    def fit(self, X):
        pass

    def query(self, q, n):
        return []

    def batch_query(self, X, n):
        from multiprocessing.pool import ThreadPool

        pool = ThreadPool()
        self.res = pool.map(lambda q: self.query(q, n), X)

    def get_batch_results(self):
        return self.res

    def get_additional(self):
        return {}

    def __str__(self):
        return self.name


def _package(name, path=None):
    mod = types.ModuleType(name)
    mod.__path__ = [] if path is None else [str(path)]
    return mod


@pytest.fixture(scope="module")
def harness():
    """The stub ``ann_benchmarks`` package; the annlib modules are importable under it."""
    saved = {name: sys.modules.get(name) for name in sys.modules if name.startswith("ann_benchmarks")}
    for name in saved:
        del sys.modules[name]
    base_module = types.ModuleType("ann_benchmarks.algorithms.base.module")
    base_module.BaseANN = BaseANN
    sys.modules.update({
        "ann_benchmarks": _package("ann_benchmarks"),
        "ann_benchmarks.algorithms": _package("ann_benchmarks.algorithms", BENCH_DIR),
        "ann_benchmarks.algorithms.base": _package("ann_benchmarks.algorithms.base"),
        "ann_benchmarks.algorithms.base.module": base_module,
    })
    yield
    for name in [n for n in sys.modules if n.startswith("ann_benchmarks")]:
        del sys.modules[name]
    sys.modules.update({k: v for k, v in saved.items() if v is not None})


def _norm(a):
    return np.sum(a**2) ** 0.5


# ann_benchmarks/distance.py's metrics (the runner recomputes every returned candidate's distance)
DISTANCES = {
    "angular": lambda a, b: 1 - np.dot(a, b) / (_norm(a) * _norm(b)),
    "euclidean": lambda a, b: _norm(a - b),
}


def _combinations(args):
    """definitions.py's ``_generate_combinations`` for list arguments."""
    args = [a if isinstance(a, list) else [a] for a in args]
    return [list(x) for x in itertools.product(*args)]


def definitions(config: dict, distance: str, run_groups=None) -> list[dict]:
    """definitions.py's ``create_definitions_from_algorithm`` over one config's ``float`` entries."""
    out = []
    for entry in config["float"][distance]:
        for group_name, group in entry["run_groups"].items():
            if run_groups is not None and group_name not in run_groups:
                continue
            for arg_group in _combinations(group["args"]):
                args = [distance if a == "@metric" else a for a in entry["base_args"] + arg_group]
                out.append({"algorithm": entry["name"], "module": entry["module"], "constructor": entry["constructor"],
                            "docker_tag": entry["docker_tag"], "arguments": args, "run_group": group_name,
                            "query_argument_groups": _combinations(group.get("query_args", [])),
                            "disabled": entry.get("disabled", False)})
    return out


def docker_command(definition: dict, dataset: str, runs: int, batch: bool) -> list[str]:
    """The container command ``runner.run_docker`` builds."""
    cmd = ["--dataset", dataset, "--algorithm", definition["algorithm"], "--module", definition["module"],
           "--constructor", definition["constructor"], "--runs", str(runs), "--count", str(COUNT)]
    if batch:
        cmd += ["--batch"]
    cmd.append(json.dumps(definition["arguments"]))
    cmd += [json.dumps(q) for q in definition["query_argument_groups"]]
    return cmd


def instantiate_algorithm(module: str, constructor: str, arguments: list):
    return getattr(importlib.import_module(f"{module}.module"), constructor)(*arguments)


def get_dataset(data_dir: pathlib.Path, name: str):
    """datasets.py's ``get_dataset`` when ``data/<name>.hdf5`` exists (no download is tried)."""
    h5py = pytest.importorskip("h5py")
    return h5py.File(data_dir / f"{name}.hdf5", "r")


def run_from_cmdline(argv: list[str], data_dir: pathlib.Path, registry: dict) -> list[tuple[dict, list]]:
    """runner.py's ``run_from_cmdline`` + ``run``; returns what ``store_results`` would store."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=registry.keys(), required=True)
    parser.add_argument("--algorithm", required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--constructor", required=True)
    parser.add_argument("--count", required=True, type=int)
    parser.add_argument("--runs", required=True, type=int)
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("build")
    parser.add_argument("queries", nargs="*", default=[])
    args = parser.parse_args(argv)
    algo = instantiate_algorithm(args.module, args.constructor, json.loads(args.build))
    query_groups = [json.loads(q) for q in args.queries]
    assert not query_groups or hasattr(algo, "set_query_arguments")
    with get_dataset(data_dir, args.dataset) as D:
        X_train, X_test, distance = np.array(D["train"]), np.array(D["test"]), D.attrs["distance"]
    stored = []
    try:
        memory_before = algo.get_memory_usage()  # build_index
        algo.fit(X_train)
        index_size = algo.get_memory_usage() - memory_before
        for query_arguments in query_groups or [[]]:
            if query_arguments:
                algo.set_query_arguments(*query_arguments)
            attrs, results = run_individual_query(algo, X_train, X_test, distance, args.count, args.batch)
            attrs.update(index_size=index_size, algo=args.algorithm, dataset=args.dataset)
            stored.append((attrs, results))
    finally:
        algo.done()
    return stored


def run_individual_query(algo, X_train, X_test, distance, count, batch):
    metric = DISTANCES[distance]
    if batch:
        algo.batch_query(X_test, count)
        results = algo.get_batch_results()
    else:
        results = [algo.query(v, count) for v in X_test]
    assert len(results) == len(X_test)
    out = []
    for v, candidates in zip(X_test, results):
        assert len(candidates) == len(set(candidates)), "Implementation returned duplicated candidates"
        assert len(candidates) <= count
        out.append([(int(i), float(metric(v, X_train[i]))) for i in candidates])
    attrs = {"batch_mode": batch, "name": str(algo), "distance": distance, "count": count, **algo.get_additional()}
    return attrs, out


def knn_recall(true_distances, results, count=COUNT, epsilon=1e-3) -> float:
    """plot.py's ``knn`` metric: the fraction of returned distances within the count-th true one."""
    hits = [sum(d <= t[count - 1] + epsilon for _, d in r[:count]) for t, r in zip(true_distances, results)]
    return float(np.mean(hits) / count)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def config():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((MODULE_DIR / "config.yml").read_text())


@pytest.fixture(scope="module")
def jax_config():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((JAX_DIR / "config.yml").read_text())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, real_sample):
    """ann-benchmarks' ``data/``: the embedded sample (angular) and a small euclidean set from it."""
    h5py = pytest.importorskip("h5py")
    d = tmp_path_factory.mktemp("data")
    (d / "debian-minilm-10k-angular.hdf5").symlink_to(EMBEDDED_SAMPLE)  # already in upstream's format
    train, test = real_sample["train"][:3000], real_sample["test"][:50]
    dist = np.sqrt(((test[:, None, :].astype(np.float64) - train[None]) ** 2).sum(-1))
    order = np.argsort(dist, axis=1, kind="stable")[:, :100]
    with h5py.File(d / "minilm-3k-euclidean.hdf5", "w") as f:
        f.attrs.update(distance="euclidean", point_type="float", type="dense", dimension=train.shape[1])
        f["train"], f["test"] = train, test
        f["neighbors"], f["distances"] = order, np.take_along_axis(dist, order, axis=1)
    return d


@pytest.fixture(scope="module")
def registry():
    """``DATASETS`` after the README's one added line per dataset (the function is never called)."""
    return {"glove-100-angular": None, "debian-minilm-10k-angular": lambda out_fn: None,
            "minilm-3k-euclidean": lambda out_fn: None}


def _true_distances(data_dir, name):
    with get_dataset(data_dir, name) as D:
        return np.array(D["distances"])


# ------------------------------------------------------------------ layout


def test_folders_mirror_upstream_layout():
    for folder in (MODULE_DIR, JAX_DIR):
        assert {"module.py", "config.yml", "Dockerfile"} <= {p.name for p in folder.iterdir()}
        assert not (folder / "__init__.py").exists()  # upstream algorithm folders have none
        text = (folder / "module.py").read_text()
        assert "from ..base.module import BaseANN" in text
        assert "def get_memory_usage" not in text  # the harness measures memory
        assert "except ImportError" not in text


def test_config_layout(config, jax_config):
    """What definitions.py requires; groups named after their build, not after dataset sizes."""
    for cfg, folder in ((config, "annlib"), (jax_config, "annlib_jax")):
        assert set(cfg) == {"float"} and set(cfg["float"]) == {"angular", "euclidean"}
        for entries in cfg["float"].values():
            for entry in entries:
                assert entry["module"] == f"ann_benchmarks.algorithms.{folder}"
                assert entry["docker_tag"] == f"ann-benchmarks-{folder}"  # install.py's tag for the folder
                assert entry["disabled"] is False
                for group in entry["run_groups"].values():
                    assert {"args", "query_args"} <= set(group)
    names = {e["name"] for entries in config["float"].values() for e in entries}
    assert names == {"annlib", "annlib-soar"}
    for entries in config["float"].values():
        for entry in entries:
            groups = entry["run_groups"]
            assert set(groups) == {"leaves-100", "leaves-400", "leaves-2000"}
            for name, group in groups.items():
                assert group["args"][0] == [int(name.split("-")[1])]


@pytest.mark.parametrize("distance", ["angular", "euclidean"])
def test_every_definition_instantiates(harness, config, distance):
    for d in definitions(config, distance):
        algo = instantiate_algorithm(d["module"], d["constructor"], json.loads(json.dumps(d["arguments"])))
        assert isinstance(algo, BaseANN)
        assert type(algo).get_memory_usage is BaseANN.get_memory_usage
        expected = "cosine" if distance == "angular" else "squared_l2"
        assert algo.metric == expected
        assert (algo.avq_threshold is None) == (distance == "euclidean")


def test_annlib_module_needs_no_jax_and_the_jax_module_fails_cleanly(harness, monkeypatch):
    """Without JAX: the annlib module imports; annlib_jax's import fails (run.py --local skips it)."""
    monkeypatch.setitem(sys.modules, "jax", None)
    for name in ("ann_benchmarks.algorithms.annlib.module", "ann_benchmarks.algorithms.annlib_jax.module"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert hasattr(importlib.import_module("ann_benchmarks.algorithms.annlib.module"), "Annlib")
    with pytest.raises(ImportError):
        importlib.import_module("ann_benchmarks.algorithms.annlib_jax.module")
    monkeypatch.delitem(sys.modules, "ann_benchmarks.algorithms.annlib_jax.module", raising=False)


# ------------------------------------------------------------------ the runner's flow


@pytest.mark.parametrize("name", ["annlib", "annlib-soar"])
def test_runner_flow_angular(harness, config, data_dir, registry, name):
    dataset = "debian-minilm-10k-angular"
    (d,) = [x for x in definitions(config, "angular", ["leaves-100"]) if x["algorithm"] == name]
    truth = _true_distances(data_dir, dataset)
    recalls = {}
    for batch in (False, True):
        stored = run_from_cmdline(docker_command(d, dataset, 1, batch), data_dir, registry)
        assert len(stored) == len(d["query_argument_groups"])
        assert len({attrs["name"] for attrs, _ in stored}) == len(stored), "str(algo) must be unique per setting"
        for attrs, _ in stored:
            assert attrs["batch_mode"] is batch and attrs["algo"] == name
            assert attrs["annlib_index_bytes"] > 10_000 * 384 // 2  # 4-bit codes + float data to reorder
            assert isinstance(attrs["index_size"], float)  # the harness's RSS difference
        recalls[batch] = [knn_recall(truth, results) for _, results in stored]
    assert np.allclose(recalls[False], recalls[True], atol=0.01), recalls
    single = recalls[False]
    # the sweep goes from cheap to exact, and more leaves never loses much
    assert single[0] < 0.95 and single[-1] >= 0.99, single
    assert all(b >= a - 0.02 for a, b in zip(single, single[1:])), single


def test_runner_flow_euclidean(harness, config, data_dir, registry):
    dataset = "minilm-3k-euclidean"
    (d,) = [x for x in definitions(config, "euclidean", ["leaves-100"]) if x["algorithm"] == "annlib"]
    assert d["arguments"][2] is None  # no anisotropic loss for euclidean
    stored = run_from_cmdline(docker_command(d, dataset, 1, False), data_dir, registry)
    recalls = [knn_recall(_true_distances(data_dir, dataset), results) for _, results in stored]
    assert recalls[-1] == 1.0, recalls  # 100 of 100 leaves, 200 reordered: exact


def test_unregistered_dataset_is_refused_like_upstream(harness, config, data_dir, registry):
    (d,) = [x for x in definitions(config, "angular", ["leaves-100"]) if x["algorithm"] == "annlib"]
    with pytest.raises(SystemExit):  # argparse: --dataset must be one of DATASETS
        run_from_cmdline(docker_command(d, "not-in-the-registry", 1, False), data_dir, {})


def test_soar_beats_plain_at_few_leaves(harness, real_sample):
    module = importlib.import_module("ann_benchmarks.algorithms.annlib.module")
    X_train, X_test = real_sample["train"], real_sample["test"]
    found = {}
    for soar_lambda in (None, 1.0):
        algo = module.Annlib("angular", 100, 0.2, 2, soar_lambda)
        algo.fit(X_train)
        algo.set_query_arguments([4, 20])
        algo.batch_query(X_test, COUNT)
        results = [[(0, DISTANCES["angular"](v, X_train[i])) for i in r] for v, r in zip(X_test, algo.get_batch_results())]
        found[soar_lambda] = knn_recall(real_sample["distances"], results)
    assert found[1.0] > found[None], found


def test_same_recall_as_annlib_bench_at_the_same_parameters(harness, real_sample):
    """The module and ``annlib bench``'s adapter build the same index and return the same ids."""
    from annlib.bench.adapters import AnnlibTreeAh  # noqa: PLC0415

    module = importlib.import_module("ann_benchmarks.algorithms.annlib.module")
    X_train, X_test = real_sample["train"], real_sample["test"]
    # the adapter applies the anisotropic loss to "dot" only, so compare with the threshold off
    algo = module.Annlib("angular", 100, None, 2, None)
    algo.fit(X_train)
    adapter = AnnlibTreeAh(X_train, "cosine", COUNT, num_leaves=100)
    adapter.build()
    truth = real_sample["neighbors"][:, :COUNT]
    for leaves, reorder in ((2, 20), (8, 40), (20, 100)):
        algo.set_query_arguments([leaves, reorder])
        algo.batch_query(X_test, COUNT)
        ours = np.array([np.pad(r, (0, COUNT - len(r)), constant_values=-1) for r in algo.get_batch_results()])
        theirs = adapter.search_batch(X_test, {"leaves_to_search": leaves, "pre_reorder_num_neighbors": reorder}, 1)
        np.testing.assert_array_equal(ours, theirs)
        recall = np.mean([len(set(o) & set(t)) / COUNT for o, t in zip(ours, truth)])
        assert 0.5 < recall <= 1.0


def test_jax_runner_flow(harness, jax_config, data_dir, registry):
    pytest.importorskip("jax")
    dataset = "debian-minilm-10k-angular"
    (d,) = definitions(jax_config, "angular")
    assert d["arguments"] == ["angular"]
    stored = run_from_cmdline(docker_command(d, dataset, 1, True), data_dir, registry)
    truth = _true_distances(data_dir, dataset)
    for target, (_, results) in zip([g[0] for g in d["query_argument_groups"]], stored):
        assert knn_recall(truth, results) >= target - 0.1, target
    assert knn_recall(truth, stored[-1][1]) >= 0.99  # recall_target 1.0 is exact
