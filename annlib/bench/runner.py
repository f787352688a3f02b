"""The one benchmark runner: every algorithm's sweep on one dataset, recall and QPS measured the same way.

Used by ``annlib bench`` (:func:`annlib.bench.benchmark`) and by ``bench/peers.py``.
Measurement follows ann-benchmarks (algorithms.md 7.4):

* recall is the "k-nn" recall: the distance of each returned id is recomputed from ``train`` in
  the dataset's convention and counts when within 1e-3 of the k-th true distance (ties count),
  over every query;
* QPS follows :mod:`annlib.bench.timing`: one untimed pass, then the median of ``runs`` timed
  passes. "single" mode times each query alone (one CPU, one thread per library), optionally
  over the first ``single_queries`` queries only; "batch" mode times one call with all queries
  on every core;
* build time is wall time of the build; index size is what each library reports or serialises.

Each inner sweep stops as :func:`annlib.bench.grid.should_stop` says, so a sweep spends its time
where the recall-QPS frontier is. Each build is measured in every requested mode before the
next build starts, so "single" and "batch" figures come from the same index.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from annlib import datasets as _datasets
from annlib import metrics as _metrics
from annlib.bench import adapters as _adapters
from annlib.bench.grid import should_stop
from annlib.bench.timing import blas_threads, median_of_passes, median_seconds, pinned_to_one_cpu

MODES = ("single", "batch")


@dataclasses.dataclass
class Point:
    """One measured (build, query-parameter, mode) setting."""

    family: str
    name: str
    params: dict
    recall: float
    qps: float
    build_s: float
    index_bytes: int
    mode: str = "single"


@dataclasses.dataclass
class Prepared:
    """A dataset ready for every library: data in the metric all of them share, plus ground truth."""

    name: str
    train: np.ndarray  # as stored, for recomputing distances
    test: np.ndarray
    data: np.ndarray  # as given to the libraries (unit-normalised for angular)
    queries: np.ndarray
    distances: np.ndarray
    distance: str  # the file's ann-benchmarks distance
    metric: str  # the metric the libraries use: "dot" or "squared_l2"


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.ascontiguousarray(np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0), dtype=np.float32)


def prepare_dataset(dataset, k: int, max_queries: int | None = None) -> Prepared:
    """Bring ``dataset`` (registry name, file, or :class:`annlib.datasets.Dataset`) into the adapters' form."""
    ds = dataset if isinstance(dataset, _datasets.Dataset) else _datasets.load_dataset(dataset)
    label = ds.name
    if ds.test is None or ds.distances is None:
        raise ValueError(f"{label}: a benchmark needs 'test' queries and ground-truth 'distances'")
    if ds.distance not in ("angular", "euclidean", "dot"):
        raise ValueError(f"{label}: distance {ds.distance!r} is not supported (angular, euclidean, dot)")
    if ds.distances.shape[1] < k:
        raise ValueError(f"{label}: ground truth holds {ds.distances.shape[1]} neighbors per query, fewer than k={k}")
    if k > ds.train.shape[0]:
        raise ValueError(f"k={k} exceeds the {ds.train.shape[0]} points of {label}")
    test, distances = ds.test, ds.distances
    if max_queries is not None:
        test, distances = test[:max_queries], distances[:max_queries]
    if ds.distance == "angular":
        data, queries, metric = _unit(ds.train), _unit(test), "dot"
    else:
        data, queries = np.ascontiguousarray(ds.train), np.ascontiguousarray(test)
        metric = "squared_l2" if ds.distance == "euclidean" else "dot"
    return Prepared(ds.name, ds.train, test, data, queries, distances, ds.distance, metric)


def available(family: str) -> bool:
    """Whether the Python package ``family`` needs is installed (checked without importing it)."""
    return importlib.util.find_spec(_adapters.REQUIRES[family]) is not None


def measure(
    algo, mode: str, params: dict, ds: Prepared, k: int, runs: int, threads: int, single_queries: int | None = None
) -> tuple[float, float]:
    """(recall, QPS) of one query setting, by the rule of :mod:`annlib.bench.timing`."""
    if mode == "single":
        ids = np.full((len(ds.queries), k), -1, dtype=np.int64)
        for i, q in enumerate(ds.queries):  # the untimed pass: recall on every query, and warm-up
            found = np.asarray(algo.search_one(q, params))[:k]
            ids[i, : len(found)] = found
        timed = ds.queries[:single_queries] if single_queries else ds.queries

        def one_pass() -> float:  # each query timed alone, as ann-benchmarks does
            total = 0.0
            for q in timed:
                start = time.perf_counter()
                algo.search_one(q, params)
                total += time.perf_counter() - start
            return total

        seconds = median_of_passes(one_pass, runs)
    else:
        ids = np.asarray(algo.search_batch(ds.queries, params, threads))  # the untimed pass
        timed = ds.queries
        seconds = median_seconds(lambda: algo.search_batch(ds.queries, params, threads), runs)
    recall = _metrics.recall_of_ids(ids, ds.train, ds.test, ds.distances, k, ds.distance)
    return recall, len(timed) / seconds


def sweep(
    algo,
    mode: str,
    ds: Prepared,
    k: int,
    runs: int,
    threads: int,
    on_point: Callable[[Point], None],
    bar=None,
    single_queries: int | None = None,
) -> list[Point]:
    """Walk every inner sweep of ``algo``; each stops when :func:`should_stop` says so."""
    points = []
    algo.prepare(mode, threads)
    for inner in algo.sweeps():
        recalls: list[float] = []
        for done, params in enumerate(inner, 1):
            recall, qps = measure(algo, mode, params, ds, k, runs, threads, single_queries)
            point = Point(algo.family, algo.name, params, recall, qps, algo.build_s, algo.index_bytes, mode)
            points.append(point)
            recalls.append(recall)
            on_point(point)
            if bar is not None:
                bar.update()
                bar.set_postfix_str(f"recall {recall:.3f} {qps:,.0f} QPS", refresh=False)
            if should_stop(recalls):
                if bar is not None:
                    bar.update(len(inner) - done)  # the skipped settings
                break
    return points


@dataclasses.dataclass
class Result:
    """What a benchmark run produced in one mode."""

    dataset: Prepared
    mode: str
    k: int
    runs: int
    threads: int
    points: list[Point]
    families: list[str]  # run, in order
    skipped: dict[str, str]  # family -> reason
    seconds: float
    versions: dict[str, str] = dataclasses.field(default_factory=dict)  # library (module) -> version
    single_queries: int | None = None  # single mode: queries timed (None: all)

    @property
    def names(self) -> list[str]:
        """Every build measured, in order (one per family unless builds were given)."""
        return list(dict.fromkeys(p.name for p in self.points))


def _check(algorithms, modes, k: int, runs: int) -> None:
    unknown = [a for a in algorithms if a not in _adapters.ALGORITHMS]
    if unknown:
        raise ValueError(f"unknown algorithm(s) {', '.join(unknown)}; choose from {', '.join(_adapters.ALGORITHMS)}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"mode must be 'single' or 'batch', got {bad or modes!r}")
    if k <= 0 or runs <= 0:
        raise ValueError("k and runs must be positive")


def run_modes(
    dataset="debian-minilm-10k",
    algorithms: Sequence[str] = _adapters.ALGORITHMS,
    modes: Sequence[str] = ("single",),
    k: int = 10,
    runs: int = 3,
    max_queries: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    on_point: Callable[[Point], None] | None = None,
    notice: Callable[[str], None] | None = None,
    builds: Mapping[str, Sequence[dict]] | None = None,
    single_queries: int | None = None,
) -> dict[str, Result]:
    """Benchmark ``algorithms`` on ``dataset`` in each of ``modes``; one :class:`Result` per mode.

    ``builds`` maps a family to the list of build-parameter dicts to run (see
    :func:`annlib.bench.adapters.make`); a family not in it runs once with its defaults.
    ``notice`` receives one-line messages (skipped peers, per-build summaries); ``on_point``
    every point as it is measured (the CSV writer).
    """
    modes = tuple(modes)
    _check(algorithms, modes, k, runs)
    if single_queries is not None and single_queries <= 0:
        raise ValueError(f"single_queries must be positive, got {single_queries}")
    notice = notice or (lambda line: print(line, file=sys.stderr, flush=True))
    on_point = on_point or (lambda point: None)
    threads = threads or os.cpu_count() or 1
    builds = dict(builds or {})
    ds = prepare_dataset(dataset, k, max_queries)
    start = time.perf_counter()
    points: dict[str, list[Point]] = {mode: [] for mode in modes}
    families, skipped, versions = [], {}, {}
    for family in algorithms:
        if not available(family):
            module = _adapters.REQUIRES[family]
            skipped[family] = f"python package {module!r} is not installed"
            notice(f'skipping {family}: {skipped[family]} (pip install "annlib[bench]")')
            continue
        ran = False
        for build in builds.get(family) or [{}]:
            algo = _adapters.make(family, ds.data, ds.metric, k, threads, **build)
            try:
                with blas_threads(threads):
                    algo.build()
            except ImportError as exc:  # installed but broken (e.g. a wheel for another CPU)
                skipped[family] = f"cannot import: {exc}"
                notice(f"skipping {family}: {skipped[family]}")
                break
            ran = True
            for mode in modes:
                points[mode] += _sweep_with_progress(
                    algo, mode, ds, k, runs, threads, on_point, progress, single_queries
                )
                found = [p for p in points[mode] if p.name == algo.name]
                best = max(found, key=lambda p: p.recall)
                notice(
                    f"{algo.name:<40} {mode:<6} built in {algo.build_s:6.1f} s, {algo.index_bytes / 2**20:6.1f} MB, "
                    f"{len(found):3d} points, max recall {best.recall:.4f}"
                )
            algo.release()
            gc.collect()
        if ran:
            families.append(family)
            versions[_adapters.REQUIRES[family]] = _adapters.version(family)
    seconds = time.perf_counter() - start
    return {
        mode: Result(ds, mode, k, runs, threads, points[mode], families, skipped, seconds, versions, single_queries)
        for mode in modes
    }


def _sweep_with_progress(algo, mode, ds, k, runs, threads, on_point, progress, single_queries) -> list[Point]:
    from tqdm.auto import tqdm

    total = sum(len(inner) for inner in algo.sweeps())
    bar = tqdm(
        total=total, desc=f"{algo.family:<14} {mode:<6}", unit="pt", disable=not progress or None, leave=False,
        file=sys.stderr,
    )
    with blas_threads(1 if mode == "single" else threads), pinned_to_one_cpu(mode == "single"), bar:
        return sweep(algo, mode, ds, k, runs, threads, on_point, bar, single_queries)


def run(
    dataset="debian-minilm-10k", algorithms: Sequence[str] = _adapters.ALGORITHMS, mode: str = "single", **options
) -> Result:
    """:func:`run_modes` in one mode ("single" or "batch"); ``options`` are those of :func:`run_modes`."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'single' or 'batch', got {mode!r}")
    return run_modes(dataset, algorithms, (mode,), **options)[mode]
