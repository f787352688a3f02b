"""Per-stage search cost measured on this machine (algorithms.md 5.2).

The cost per query is modelled as

    J(t1, t2) = fixed + per_center * num_leaves + per_leaf * t1 + per_entry * E[entries(t1)]
                + per_reorder * min(t2, E[entries(t1)])

``per_center`` comes from timing exact scoring of the centers (the same dot kernel the search
uses for partition selection); the other coefficients are a non-negative least-squares fit
to a few timed searches at spread-out (t1, t2), with the work counts read from the index's
``last_search_counters``. Times are CPU time, median of a few repeats, so other processes on a
shared machine disturb them little:

* ``mode="single"``: one query at a time on one thread, CPU time of the calling thread
  (``time.thread_time``) per query;
* ``mode="batched"``: ``search_batched`` of a batch on ``num_threads`` threads, CPU time of the
  whole process (``time.process_time``) per query divided by ``num_threads``: the wall time per
  query of a batch when the threads have their cores. Batched center scoring and exact search
  are matrix products, several times cheaper per query than one query at a time.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import numpy as np

from annlib.index import BruteForce


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Seconds per query (in ``mode`` on ``num_threads`` threads), per unit of work of each stage."""

    fixed: float
    per_center: float
    per_leaf: float
    per_entry: float
    per_reorder: float
    num_leaves: int
    fit_relative_error: float = float("nan")  # median |predicted - measured| / measured over the timed points
    mode: str = "single"
    num_threads: int = 1

    def cost(self, t1, entries, reordered):
        """Predicted seconds per query (broadcasts over arrays)."""
        return (
            self.fixed
            + self.per_center * self.num_leaves
            + self.per_leaf * np.asarray(t1, dtype=np.float64)
            + self.per_entry * np.asarray(entries, dtype=np.float64)
            + self.per_reorder * np.asarray(reordered, dtype=np.float64)
        )


MODES = ("single", "batched")
#: Queries per timed call: one thread walks a batch query by query; batched mode times a batch
#: large enough to keep every thread busy.
BATCH = {"single": 100, "batched": 256}


def check_mode(mode: str, num_threads: int | None) -> tuple[str, int]:
    """(mode, threads): single mode runs one thread; batched mode defaults to every core."""
    from annlib import _validate  # noqa: PLC0415

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    threads = _validate.num_threads(num_threads)
    return mode, (1 if mode == "single" else threads)


def clock(mode: str) -> Callable[[], float]:
    """The CPU clock of a mode: the calling thread's, or the whole process's (all search threads)."""
    return time.thread_time if mode == "single" else time.process_time


def cpu_seconds_per_query(fn, num_queries: int, repeats: int = 3, warmup: int = 1, mode: str = "single",
                          num_threads: int = 1) -> float:
    """Median CPU time per query of ``fn()`` in ``mode`` (see the module docstring)."""
    now = clock(mode)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = now()
        fn()
        times.append(now() - start)
    return statistics.median(times) / max(1, num_queries) / num_threads


def time_search(index, queries, k: int, t1: int, t2: int | None, repeats: int = 3, mode: str = "single",
                num_threads: int = 1) -> tuple[float, dict]:
    """Seconds per query of the index at (t1, t2) in ``mode``, and the work counters per query."""
    nq = len(queries)

    def run():
        index.search_batched(queries, k, num_threads=num_threads, leaves_to_search=t1, pre_reorder_num_neighbors=t2)

    seconds = cpu_seconds_per_query(run, nq, repeats, mode=mode, num_threads=num_threads)
    counters = {name: value / max(1, nq) for name, value in index.last_search_counters.items()}
    return seconds, counters


def time_brute_force(exact: BruteForce, queries, k: int, repeats: int = 3, mode: str = "single",
                     num_threads: int = 1) -> float:
    """Seconds per query of exact search in ``mode``."""
    queries = queries[: BATCH[mode]]
    return cpu_seconds_per_query(lambda: exact.search_batched(queries, k, num_threads=num_threads), len(queries),
                                 repeats, mode=mode, num_threads=num_threads)


def _design_points(t1_grid: np.ndarray, t2_grid: np.ndarray) -> list[tuple[int, int | None]]:
    # Fractions of the (geometric) grids: both ends and two inside, the cheap end denser in t1
    # where most choices fall; 4 x 3 points fit the 4 coefficients with room to spare.
    t1s = sorted({int(t1_grid[int(round(f * (len(t1_grid) - 1)))]) for f in (0.0, 0.3, 0.65, 1.0)})
    if t2_grid is None:
        return [(t1, None) for t1 in t1s]
    t2s = sorted({int(t2_grid[int(round(f * (len(t2_grid) - 1)))]) for f in (0.0, 0.5, 1.0)})
    return [(t1, t2) for t1 in t1s for t2 in t2s]


def measure(index, queries: np.ndarray, k: int, t1_grid, t2_grid, *, batch: int | None = None, repeats: int = 3,
            seed: int = 0, mode: str = "single", num_threads: int = 1) -> CostModel:
    """Fit the cost model of ``index`` from a few timed searches in ``mode``.

    Every timed run uses a different batch of ``batch`` tuning queries (rotating through them),
    so caches are no warmer than for a stream of fresh queries."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    rng = np.random.default_rng(seed)
    queries = queries[rng.permutation(len(queries))]
    now = clock(mode)
    batch = min(BATCH[mode] if batch is None else batch, len(queries))
    num_batches = max(1, len(queries) // batch)
    batches = [queries[b * batch : (b + 1) * batch] for b in range(num_batches)]
    centers = np.ascontiguousarray(index.layout.centers)
    num_leaves = int(centers.shape[0])
    # Partition selection scores every center with the dot kernel: time that kernel on the centers.
    center_exact = BruteForce(centers, "dot")
    per_center = time_brute_force(center_exact, batches[0], 1, repeats, mode, num_threads) / num_leaves

    index.search_batched(batches[0], k, num_threads=num_threads, leaves_to_search=int(t1_grid[0]),
                         pre_reorder_num_neighbors=None if t2_grid is None else int(t2_grid[0]))
    rows, seconds, turn = [], [], 0
    for t1, t2 in _design_points(np.asarray(t1_grid), None if t2_grid is None else np.asarray(t2_grid)):
        times, work = [], np.zeros(2)
        for _ in range(repeats):
            qs = batches[turn % num_batches]
            turn += 1
            start = now()
            index.search_batched(qs, k, num_threads=num_threads, leaves_to_search=t1, pre_reorder_num_neighbors=t2)
            times.append((now() - start) / len(qs) / num_threads)
            counters = index.last_search_counters
            work += [counters["entries_scored"] / len(qs), counters["candidates_reordered"] / len(qs)]
        work /= repeats
        rows.append([1.0, float(t1), work[0], work[1]])
        seconds.append(statistics.median(times) - per_center * num_leaves)
    x = np.array(rows)
    y = np.array(seconds)
    coef = _nnls(x, y)
    predicted = x @ coef + per_center * num_leaves
    measured = y + per_center * num_leaves
    rel = float(np.median(np.abs(predicted - measured) / np.maximum(measured, 1e-12)))
    return CostModel(
        fixed=float(coef[0]),
        per_center=float(per_center),
        per_leaf=float(coef[1]),
        per_entry=float(coef[2]),
        per_reorder=float(coef[3]),
        num_leaves=num_leaves,
        fit_relative_error=rel,
        mode=mode,
        num_threads=num_threads,
    )


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares, relative error weighting (each point scaled by 1 / y)."""
    weight = 1.0 / np.maximum(np.abs(y), 1e-9)
    xw, yw = x * weight[:, None], y * weight
    try:
        from scipy.optimize import nnls

        coef, _ = nnls(xw, yw)
        return coef
    except ImportError:  # pragma: no cover - scipy is normally present
        coef, *_ = np.linalg.lstsq(xw, yw, rcond=None)
        return np.maximum(coef, 0.0)
