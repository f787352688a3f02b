"""Run every algorithm's parameter sweep on one dataset and measure recall and QPS, ann-benchmarks style.

Measurement follows ann-benchmarks (algorithms.md 7.4):

* recall is the "k-nn" recall: the distance of each returned id is recomputed from ``train`` in
  the dataset's convention and counts when within 1e-3 of the k-th true distance (ties count);
* QPS = 1 / best over ``runs`` of the mean time per query. In "single" mode each query is its own
  call, timed alone, with the process pinned to one CPU as the harness does; in "batch" mode all
  queries go in one call on every core;
* build time is wall time of the build; index size is what each library reports or serialises.

Each adapter's inner sweep stops once recall reaches :data:`STOP_RECALL` or stops improving, so a
sweep spends its time where the recall-QPS frontier is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

from annlib import datasets as _datasets
from annlib import metrics as _metrics
from annlib.bench import adapters as _adapters

STOP_RECALL = 0.995  # an inner sweep stops once recall reaches this...
PLATEAU = 0.001  # ...or once two steps in a row gain less than this each (past recall 0.9)


@dataclasses.dataclass
class Point:
    """One measured (build, query-parameter) setting."""

    family: str
    name: str
    params: dict
    recall: float
    qps: float
    build_s: float
    index_bytes: int


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


def prepare_dataset(dataset: str, k: int, max_queries: int | None = None) -> Prepared:
    """Load ``dataset`` (registry name or file) and bring it into the form the adapters expect."""
    ds = _datasets.load(dataset)
    if ds.test is None or ds.distances is None:
        raise ValueError(f"{dataset}: a benchmark needs 'test' queries and ground-truth 'distances'")
    if ds.distance not in ("angular", "euclidean", "dot"):
        raise ValueError(f"{dataset}: distance {ds.distance!r} is not supported (angular, euclidean, dot)")
    if ds.distances.shape[1] < k:
        raise ValueError(f"{dataset}: ground truth holds {ds.distances.shape[1]} neighbors per query, fewer than k={k}")
    if k > ds.train.shape[0]:
        raise ValueError(f"k={k} exceeds the {ds.train.shape[0]} points of {dataset}")
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


@contextlib.contextmanager
def _pinned(mode: str) -> Iterator[None]:
    """Single-query mode runs on one CPU, as ann-benchmarks' runner pins itself."""
    if mode != "single" or not hasattr(os, "sched_getaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {sorted(before)[len(before) // 2]})
        yield
    finally:
        # the mask is per thread: thread pools started while pinned inherited it, so free them all
        for tid in _thread_ids():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, before)


def _thread_ids() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _blas_threads(n: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def measure(algo, mode: str, params: dict, ds: Prepared, k: int, runs: int, threads: int) -> tuple[float, float]:
    """(recall, QPS) of one query setting; the first pass gives the recall and warms up."""
    if mode == "single":
        ids = np.full((len(ds.queries), k), -1, dtype=np.int64)
        best = float("inf")
        for run in range(runs + 1):
            total = 0.0
            for i, q in enumerate(ds.queries):
                start = time.perf_counter()
                found = algo.search_one(q, params)
                total += time.perf_counter() - start
                if run == 0:
                    found = np.asarray(found)[:k]
                    ids[i, : len(found)] = found
            if run > 0:
                best = min(best, total)
    else:
        ids = np.asarray(algo.search_batch(ds.queries, params, threads))
        best = float("inf")
        for _ in range(runs):
            start = time.perf_counter()
            algo.search_batch(ds.queries, params, threads)
            best = min(best, time.perf_counter() - start)
    recall = _metrics.recall_of_ids(ids, ds.train, ds.test, ds.distances, k, ds.distance)
    return recall, len(ds.queries) / best


def sweep(
    algo, mode: str, ds: Prepared, k: int, runs: int, threads: int, on_point: Callable[[Point], None], bar=None
) -> list[Point]:
    """Walk every inner sweep of ``algo``; each stops at STOP_RECALL or on a recall plateau."""
    points = []
    algo.prepare(mode, threads)
    for inner in algo.sweeps():
        prev, flat = None, 0
        for done, params in enumerate(inner, 1):
            recall, qps = measure(algo, mode, params, ds, k, runs, threads)
            point = Point(algo.family, algo.name, params, recall, qps, algo.build_s, algo.index_bytes)
            points.append(point)
            on_point(point)
            if bar is not None:
                bar.update()
                bar.set_postfix_str(f"recall {recall:.3f} {qps:,.0f} QPS", refresh=False)
            flat = flat + 1 if prev is not None and recall > 0.9 and recall - prev < PLATEAU else 0
            if recall >= STOP_RECALL or flat >= 2:
                if bar is not None:
                    bar.update(len(inner) - done)  # the skipped settings
                break
            prev = recall
    return points


@dataclasses.dataclass
class Result:
    """What a benchmark run produced."""

    dataset: Prepared
    mode: str
    k: int
    runs: int
    threads: int
    points: list[Point]
    families: list[str]  # run, in order
    skipped: dict[str, str]  # family -> reason
    seconds: float


def run(
    dataset: str = "debian-minilm-10k",
    algorithms: tuple[str, ...] | list[str] = _adapters.ALGORITHMS,
    mode: str = "single",
    k: int = 10,
    runs: int = 3,
    max_queries: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    on_point: Callable[[Point], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> Result:
    """Benchmark ``algorithms`` on ``dataset`` and return every measured point.

    ``notice`` receives one-line messages (skipped peers, per-algorithm summaries);
    ``on_point`` every point as it is measured (the CSV writer).
    """
    if mode not in ("single", "batch"):
        raise ValueError(f"mode must be 'single' or 'batch', got {mode!r}")
    unknown = [a for a in algorithms if a not in _adapters.ALGORITHMS]
    if unknown:
        raise ValueError(f"unknown algorithm(s) {', '.join(unknown)}; choose from {', '.join(_adapters.ALGORITHMS)}")
    if k <= 0 or runs <= 0:
        raise ValueError("k and runs must be positive")
    notice = notice or (lambda line: print(line, file=sys.stderr, flush=True))
    on_point = on_point or (lambda point: None)
    threads = threads or os.cpu_count() or 1
    ds = prepare_dataset(dataset, k, max_queries)
    start = time.perf_counter()
    points: list[Point] = []
    families, skipped = [], {}
    for family in algorithms:
        if not available(family):
            module = _adapters.REQUIRES[family]
            skipped[family] = f"python package {module!r} is not installed"
            notice(f"skipping {family}: {skipped[family]} (pip install 'annlib[bench]')")
            continue
        algo = _adapters.make(family, ds.data, ds.metric, k, threads)
        try:
            with _blas_threads(threads):
                algo.build()
        except ImportError as exc:  # installed but broken (e.g. a wheel for another CPU)
            skipped[family] = f"cannot import: {exc}"
            notice(f"skipping {family}: {skipped[family]}")
            continue
        total = sum(len(inner) for inner in algo.sweeps())
        from tqdm.auto import tqdm

        with _blas_threads(1 if mode == "single" else threads), _pinned(mode), tqdm(
            total=total, desc=f"{family:<14}", unit="pt", disable=not progress or None, leave=False, file=sys.stderr
        ) as bar:
            found = sweep(algo, mode, ds, k, runs, threads, on_point, bar)
        points += found
        families.append(family)
        best = max(found, key=lambda p: p.recall)
        notice(
            f"{algo.name:<40} built in {algo.build_s:6.1f} s, {algo.index_bytes / 2**20:6.1f} MB, "
            f"{len(found):3d} points, max recall {best.recall:.4f}"
        )
        algo.release()
        gc.collect()
    return Result(ds, mode, k, runs, threads, points, families, skipped, time.perf_counter() - start)
