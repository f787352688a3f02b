"""The benchmark harness: annlib and its peers on one dataset, measured the ann-benchmarks way.

One runner for ``annlib bench`` and the scripts in ``bench/`` (``bench/peers.py``):

>>> from annlib import bench
>>> result, files = bench.benchmark("debian-minilm-10k", ["annlib", "hnswlib"], mode="batch")  # doctest: +SKIP
>>> print(open(files["table"]).read())                                                       # doctest: +SKIP

Files: :mod:`annlib.bench.adapters` (one adapter per library, the algorithm names),
:mod:`annlib.bench.grid` (the sweep grid and when a sweep stops), :mod:`annlib.bench.timing`
(the timing rule: median of the timed runs), :mod:`annlib.bench.runner` (sweeps and
measurement), :mod:`annlib.bench.report` (CSV, markdown tables, Pareto plot) and
:mod:`annlib.bench.synthetic` (clustered synthetic data with exact ground truth).
Peers come from ``pip install "annlib[bench]"``; missing ones are skipped with a notice.
"""

from __future__ import annotations

import os
import re

from annlib.bench.adapters import ALGORITHMS
from annlib.bench.report import (
    TARGETS,
    CsvWriter,
    markdown,
    pareto_frontier,
    plot,
    require_plotting,
    summary_rows,
)
from annlib.bench.runner import MODES, Point, Result, run, run_modes

__all__ = [
    "ALGORITHMS",
    "MODES",
    "TARGETS",
    "Point",
    "Result",
    "benchmark",
    "benchmark_modes",
    "markdown",
    "pareto_frontier",
    "run",
    "run_modes",
    "summary_rows",
]


def _dataset_name(dataset) -> str:
    raw = getattr(dataset, "name", None) or os.path.splitext(os.path.basename(os.fspath(dataset)))[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def benchmark(
    dataset="debian-minilm-10k", algorithms=ALGORITHMS, mode: str = "single", *args, **kwargs
) -> tuple[Result, dict[str, str]]:
    """:func:`benchmark_modes` in one mode: ``<out>/<dataset>-<mode>-k<k>.{csv,md,png}``.

    The parameters after ``mode`` are those of :func:`benchmark_modes` (``k``, ``out``, ``runs``,
    ``max_queries``, ``command``, ``progress``, ``notice``, then keyword-only options). Returns
    the result and the paths written (``csv``, ``table``, ``plot``).
    """
    results, files = benchmark_modes(dataset, algorithms, (mode,), *args, **kwargs)
    return results[mode], files[mode]


def benchmark_modes(
    dataset="debian-minilm-10k",
    algorithms=ALGORITHMS,
    modes=MODES,
    k: int = 10,
    out: str = "annlib-bench",
    runs: int = 3,
    max_queries: int | None = None,
    command: str | None = None,
    progress: bool = True,
    notice=None,
    *,
    builds=None,
    single_queries: int | None = None,
    targets=TARGETS,
    threads: int | None = None,
) -> tuple[dict[str, Result], dict[str, dict[str, str]]]:
    """:func:`run_modes` (each build measured in every mode), then each mode's CSV, table and plot.

    Returns ``{mode: Result}`` and ``{mode: {"csv", "table", "plot": path}}``. ``builds``,
    ``single_queries`` and ``threads`` are passed to :func:`run_modes`; ``targets`` are the recall
    levels of the tables. matplotlib (``annlib[bench]``) is checked before anything is measured.
    """
    require_plotting()  # before the sweeps, not after them
    modes = tuple(modes)
    name = _dataset_name(dataset)
    files, writers = {}, {}
    for m in modes:
        stem = os.path.join(out, f"{name}-{m}-k{k}")
        files[m] = {"csv": stem + ".csv", "table": stem + ".md", "plot": stem + ".png"}
        writers[m] = CsvWriter(files[m]["csv"], name, k)
    try:
        results = run_modes(
            dataset, algorithms, modes, k, runs, max_queries, threads, progress,
            on_point=lambda point: writers[point.mode](point), notice=notice, builds=builds,
            single_queries=single_queries,
        )
    finally:
        for writer in writers.values():
            writer.close()
    for m, result in results.items():
        if not result.points:
            why = "; ".join(f"{family}: {reason}" for family, reason in result.skipped.items())
            raise ValueError(f"no algorithm could be run: {why}")
        os.makedirs(out, exist_ok=True)
        with open(files[m]["table"], "w") as f:
            f.write(markdown(result, command, targets))
        plot(result, files[m]["plot"])
    return results, files
