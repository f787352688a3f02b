"""The one timing rule of every benchmark, and the thread settings measurements run under.

Rule: one untimed pass first (it gives the recall and warms caches, JIT and thread pools), then
``runs`` timed passes; the figure is the **median** pass. In "single" mode a pass is every timed
query in its own call, each timed alone and summed (as ann-benchmarks times queries), with the
process pinned to one CPU; in "batch" mode a pass is one call with all queries on every core.
QPS = timed queries / median pass seconds.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator

__all__ = ["blas_threads", "median_of_passes", "median_seconds", "pinned_to_one_cpu"]


def median_seconds(run: Callable[[], object], runs: int, warmup: int = 0) -> float:
    """Median wall time of ``run()`` (timed with :func:`time.perf_counter`) over ``runs`` calls, after ``warmup``."""
    for _ in range(warmup):
        run()

    def timed() -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    return median_of_passes(timed, runs)


def median_of_passes(one_pass: Callable[[], float], runs: int) -> float:
    """Median of ``runs`` calls of ``one_pass()``, each returning the seconds it measured itself."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    return statistics.median(float(one_pass()) for _ in range(runs))


@contextlib.contextmanager
def pinned_to_one_cpu(enabled: bool = True) -> Iterator[None]:
    """Run the body on one CPU, as ann-benchmarks' runner pins itself for single-query mode."""
    if not enabled or not hasattr(os, "sched_getaffinity"):
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


def blas_threads(n: int):
    """A context limiting numpy's BLAS to ``n`` threads (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional, in [bench]
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")
