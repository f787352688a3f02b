"""``annlib bench``: annlib and its peers on one dataset, measured the ann-benchmarks way.

>>> from annlib import bench
>>> result, files = bench.benchmark("debian-minilm-10k", ["annlib", "hnswlib"], mode="batch")  # doctest: +SKIP
>>> print(open(files["table"]).read())                                                       # doctest: +SKIP

Files: :mod:`annlib.bench.adapters` (one adapter per library), :mod:`annlib.bench.runner`
(sweeps and measurement), :mod:`annlib.bench.report` (CSV, markdown table, Pareto plot).
Peers come from ``pip install 'annlib[bench]'``; missing ones are skipped with a notice.
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
from annlib.bench.runner import Point, Result, run

__all__ = ["ALGORITHMS", "TARGETS", "Point", "Result", "benchmark", "markdown", "pareto_frontier", "run", "summary_rows"]


def _dataset_name(dataset: str) -> str:
    name = os.path.splitext(os.path.basename(os.fspath(dataset)))[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def benchmark(
    dataset: str = "debian-minilm-10k",
    algorithms=ALGORITHMS,
    mode: str = "single",
    k: int = 10,
    out: str = "annlib-bench",
    runs: int = 3,
    max_queries: int | None = None,
    command: str | None = None,
    progress: bool = True,
    notice=None,
) -> tuple[Result, dict[str, str]]:
    """Run :func:`run` and write ``<out>/<dataset>-<mode>-k<k>.{csv,md,png}``.

    Returns the result and the paths written (``csv``, ``table``, ``plot``).
    """
    require_plotting()  # before the sweeps, not after them
    name = _dataset_name(dataset)
    stem = os.path.join(out, f"{name}-{mode}-k{k}")
    files = {"csv": stem + ".csv", "table": stem + ".md", "plot": stem + ".png"}
    writer = CsvWriter(files["csv"], name, mode, k)
    try:
        result = run(dataset, algorithms, mode, k, runs, max_queries, progress=progress, on_point=writer, notice=notice)
    finally:
        writer.close()
    if not result.points:
        raise ValueError("no algorithm could be run: " + "; ".join(f"{f}: {why}" for f, why in result.skipped.items()))
    os.makedirs(out, exist_ok=True)
    with open(files["table"], "w") as f:
        f.write(markdown(result, command))
    plot(result, files["plot"])
    return result, files
