"""The README's first run: exact search and the quantization index on a real dataset.

:func:`run` builds an exact index and two tree-AH indexes (without and with SOAR) over a
dataset's ``train`` rows, searches its ``test`` rows and scores the results against the file's
ground truth, the ann-benchmarks way. ``annlib demo`` prints what it returns.

>>> from annlib import demo
>>> report = demo.run("debian-minilm-10k", k=10)    # doctest: +SKIP
>>> [(row.index, round(row.recall, 3)) for row in report.rows]   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import annlib
from annlib import datasets as _datasets
from annlib import metrics as _metrics
from annlib.errors import DatasetError

__all__ = ["DemoReport", "DemoRow", "run"]


@dataclasses.dataclass(frozen=True)
class DemoRow:
    """One index of the demo: its label, search parameters and what it reached."""

    index: str
    search_args: dict[str, Any]
    recall: float
    qps: float
    build_s: float


@dataclasses.dataclass(frozen=True)
class DemoReport:
    dataset: str
    n: int
    dim: int
    queries: int
    k: int
    rows: list[DemoRow]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _contenders(train, metric: str) -> list[tuple[str, Callable[[], Any], dict[str, int]]]:
    """(label, build, search parameters): sqrt(n) partitions, a tenth of them probed (half with SOAR)."""
    n = train.shape[0]
    num_leaves = max(1, round(n**0.5))
    leaves_to_search = max(1, num_leaves // 10)

    def tree(**extra):
        return lambda: annlib.TreeAhIndex(
            train, metric, num_leaves=num_leaves, num_leaves_to_search=leaves_to_search, **extra
        )

    return [
        ("BruteForce (exact)", lambda: annlib.BruteForce(train, metric), {}),
        (f"TreeAh L={num_leaves}", tree(), {"leaves_to_search": leaves_to_search}),
        (f"TreeAh L={num_leaves} +SOAR", tree(soar_lambda=1.5), {"leaves_to_search": max(1, leaves_to_search // 2)}),
    ]


def run(dataset: str = "debian-minilm-10k", k: int = 10) -> DemoReport:
    """Build, search and score the demo's indexes on ``dataset`` (a registry name or a file).

    ``k`` is lowered to the depth of the file's ground truth when that is shallower.
    Queries per second are measured over all test queries in one batched call, after a
    warm-up call.

    Raises
    ------
    DatasetError
        The dataset has no test queries or no ground truth, or its distance is not one annlib
        searches by.
    """
    ds = _datasets.load(dataset)
    if ds.test is None or ds.distances is None:
        raise DatasetError(f"{dataset}: the demo needs test queries and ground truth")
    if ds.metric is None:
        raise DatasetError(f"{dataset}: distance {ds.distance!r} is not supported (angular, euclidean, dot)")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = min(k, ds.distances.shape[1])
    rows = []
    for label, build, search_args in _contenders(ds.train, ds.metric):
        start = time.perf_counter()
        index = build()
        build_s = time.perf_counter() - start
        index.search_batched(ds.test[:10], k, **search_args)  # warm-up: first-touch pages, thread pool
        start = time.perf_counter()
        result = index.search_batched(ds.test, k, **search_args)
        search_s = time.perf_counter() - start
        found = _metrics.distances_in_file_convention(result.distances, ds.metric, ds.distance)
        rows.append(
            DemoRow(
                index=label,
                search_args=dict(search_args),
                recall=float(_metrics.recall(found, ds.distances, k)),
                qps=len(ds.test) / search_s if search_s > 0 else float("inf"),
                build_s=build_s,
            )
        )
    return DemoReport(
        dataset=ds.name, n=int(ds.train.shape[0]), dim=int(ds.train.shape[1]), queries=int(ds.test.shape[0]), k=k, rows=rows
    )
