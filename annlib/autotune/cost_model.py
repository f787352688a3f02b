"""Per-stage search cost measured on this machine (algorithms.md 5.2).

The cost per query is modelled as

    J(t1, t2) = fixed + per_center * num_leaves + per_leaf * t1 + per_entry * E[entries(t1)]
                + per_reorder * min(t2, E[entries(t1)])

``per_center`` comes from timing exact scoring of the centers (the same dot kernel the search
uses for partition selection); the other coefficients are a non-negative least-squares fit
to a few timed searches, with the work counts read from the index's ``last_search_counters``.
The autotuner places those searches around the setting a work-proportional prior
(:func:`prior`) picks for its target (:func:`design_around`), where the fit must be right, and
sizes each timed run to a few milliseconds (``run_seconds``): a dozen runs cost tens of
milliseconds, not seconds, however deep the index is searched. Times are CPU time, median of a
few repeats, so other processes on a shared machine disturb them little:

* ``mode="single"``: one query at a time on one thread, CPU time of the calling thread
  (``time.thread_time``) per query;
* ``mode="batched"``: ``search_batched`` of a batch on ``num_threads`` threads, CPU time of the
  whole process (``time.process_time``) per query divided by ``num_threads``: the wall time per
  query of a batch when the threads have their cores. Batched center scoring and exact search
  are matrix products, several times cheaper per query than one query at a time.
"""

from __future__ import annotations

import dataclasses
import math
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


#: CPU seconds (per thread in batched mode) one timed run of the tuner's cost model aims at.
RUN_SECONDS = 0.003
#: Fewest queries of a timed run: batched runs keep every thread on the leaf-major path, as a
#: large batch does (it scans query by query below 16 queries per thread).
MIN_RUN_QUERIES = {"single": 4, "batched": 32}
#: Fewest timed runs of a setting: a median of one is one hiccup away from a wrong fit.
MIN_REPEATS = 2


def prior(index, mode: str = "single", num_threads: int = 1) -> CostModel:
    """Coefficients proportional to each stage's work (LUT16 bytes per entry, floats per reordered
    candidate and per center), scaled as on a typical AVX2/AVX-512 core. Only for placing the timed
    searches: its absolute scale does not matter, only the stages' relative weights."""
    layout = index.layout
    blocks = math.ceil(layout.dim / layout.dims_per_block)
    return CostModel(fixed=2e-6, per_center=4e-11 * layout.dim, per_leaf=4e-7, per_entry=5e-11 * blocks,
                     per_reorder=2e-10 * layout.dim, num_leaves=layout.num_leaves, mode=mode,
                     num_threads=num_threads)


def _prior_cost(model: CostModel, index, t1: int, t2: int | None, k: int) -> float:
    """The prior's cost of a setting, with the entries of the t1 largest leaves (no query needed)."""
    sizes = np.sort(np.asarray(index.layout.leaf_sizes, dtype=np.float64))[::-1]
    entries = float(sizes[:t1].sum())
    return float(model.cost(t1, entries, min(entries, k if t2 is None else t2)))


def design_around(t1_grid: np.ndarray, t2_grid: np.ndarray | None, j: int, i: int, k: int,
                  below: float = 2.5, above: float = 1.6, reorder_step: int = 0) -> list[tuple[int, int | None]]:
    """Timed settings for a fit that must be right near grid point (j, i): that point, ``below``
    times fewer and ``above`` times more leaves, the same for candidates (the dear side nearer:
    its runs cost the most) but at least ``reorder_step`` more candidates, and the cheapest
    setting, which pins the fixed cost."""
    def nearest(grid, value):
        return int(grid[int(np.argmin(np.abs(np.log(grid / value))))])

    t1_grid = np.asarray(t1_grid, dtype=np.float64)
    t1 = float(t1_grid[j])
    t1s = [nearest(t1_grid, t1 / below), int(t1), nearest(t1_grid, t1 * above)]
    if t2_grid is None:
        return [(t1_value, None) for t1_value in sorted({int(t1_grid[0]), *t1s})]
    t2_grid = np.asarray(t2_grid, dtype=np.float64)
    t2 = float(t2_grid[i])
    points = {(int(t1_grid[0]), int(t2_grid[0])), (int(t1), int(t2))}
    points |= {(t1_value, int(t2)) for t1_value in t1s}
    points |= {(int(t1), nearest(t2_grid, t2 / below)), (int(t1), nearest(t2_grid, max(t2 * above, t2 + reorder_step)))}
    return sorted(points)


def reorder_step(model: CostModel, index, t1: int, t2: int | None, k: int, share: float = 0.4) -> int:
    """Candidates whose reordering costs ``share`` of the setting (t1, t2) under ``model``: a step
    in t2 that moves the timed cost well beyond the timing noise. At a few dozen candidates
    reordering is a sliver of a search and a fit over nearby settings prices it at zero."""
    if t2 is None or model.per_reorder <= 0:
        return 0
    return int(math.ceil(share * _prior_cost(model, index, t1, t2, k) / model.per_reorder))


def _design_points(t1_grid: np.ndarray, t2_grid: np.ndarray) -> list[tuple[int, int | None]]:
    # Fractions of the (geometric) grids: both ends and two inside, the cheap end denser in t1
    # where most choices fall; 4 x 3 points fit the 4 coefficients with room to spare.
    t1s = sorted({int(t1_grid[int(round(f * (len(t1_grid) - 1)))]) for f in (0.0, 0.3, 0.65, 1.0)})
    if t2_grid is None:
        return [(t1, None) for t1 in t1s]
    t2s = sorted({int(t2_grid[int(round(f * (len(t2_grid) - 1)))]) for f in (0.0, 0.5, 1.0)})
    return [(t1, t2) for t1 in t1s for t2 in t2s]


def measure(index, queries: np.ndarray, k: int, t1_grid, t2_grid, *, batch: int | None = None, repeats: int = 3,
            seed: int = 0, mode: str = "single", num_threads: int = 1, design=None,
            run_seconds: float | None = None) -> CostModel:
    """Fit the cost model of ``index`` from a few timed searches in ``mode``.

    ``design``: the (t1, t2) settings to time (default: spread over the grids). ``run_seconds``:
    size each timed run to about that much CPU time per thread, from one untimed run of the
    fewest queries (which also warms that setting); default: ``batch`` queries per run.
    Every timed run uses a different batch of tuning queries (rotating through them), so caches
    are no warmer than for a stream of fresh queries."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    rng = np.random.default_rng(seed)
    queries = queries[rng.permutation(len(queries))]
    now = clock(mode)
    batch = min(BATCH[mode] if batch is None else batch, len(queries))
    centers = np.ascontiguousarray(index.layout.centers)
    num_leaves = int(centers.shape[0])
    # Partition selection scores every center with the dot kernel: time that kernel on the centers.
    center_exact = BruteForce(centers, "dot")
    per_center = time_brute_force(center_exact, queries[:batch], 1, repeats, mode, num_threads) / num_leaves

    if design is None:
        design = _design_points(np.asarray(t1_grid), None if t2_grid is None else np.asarray(t2_grid))
    fewest = min(len(queries), MIN_RUN_QUERIES[mode])
    rows, seconds, cursor = [], [], 0

    def take(count):  # the next `count` queries, wrapping around
        nonlocal cursor
        picked = np.take(queries, np.arange(cursor, cursor + count) % len(queries), axis=0)
        cursor = (cursor + count) % len(queries)
        return picked

    def run(qs, t1, t2):
        start = now()
        index.search_batched(qs, k, num_threads=num_threads, leaves_to_search=t1, pre_reorder_num_neighbors=t2)
        return (now() - start) / len(qs) / num_threads

    # One untimed run warms the index; its time (against the prior's) scales the prior's
    # estimates that size the timed runs, rescaled by each setting timed since.
    guide = prior(index, mode, num_threads)
    scale = None
    for t1, t2 in design:
        size, runs = batch, repeats
        if scale is None:
            warm = run(take(fewest), t1, t2)
            scale = warm / _prior_cost(guide, index, t1, t2, k)
        if run_seconds is not None:
            estimate = scale * _prior_cost(guide, index, t1, t2, k)
            size = int(min(batch, max(fewest, math.ceil(run_seconds / max(estimate, 1e-9)))))
            # A run held up to the fewest queries can last several times run_seconds (a batched
            # run of a deep setting: the hard set's 32 queries take 2-3 times it); fewer repeats
            # keep each setting's timing near repeats * run_seconds, with as many queries timed.
            runs = min(repeats, max(MIN_REPEATS, round(repeats * run_seconds / max(estimate * size, 1e-12))))
        times, work = [], np.zeros(2)
        for _ in range(runs):
            qs = take(size)
            times.append(run(qs, t1, t2))
            counters = index.last_search_counters
            work += [counters["entries_scored"] / len(qs), counters["candidates_reordered"] / len(qs)]
        work /= runs
        scale = statistics.median(times) / _prior_cost(guide, index, t1, t2, k)
        rows.append([1.0, float(t1), work[0], work[1]])
        seconds.append(statistics.median(times) - per_center * num_leaves)
    x = np.array(rows)
    y = np.array(seconds)
    measured = y + per_center * num_leaves
    # Weighted by the whole query's time, not by what is left after the centers: where center
    # scoring is most of a query (a batched search of few leaves), the remainder is near zero or
    # below it by timing noise, and weighting by its inverse let one such point zero the fit.
    coef = _nnls(x, y, measured)
    predicted = x @ coef + per_center * num_leaves
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


def fastest(index, queries: np.ndarray, k: int, settings: list[tuple[int, int | None]], predicted, *,
            rounds: int = 3, mode: str = "single", num_threads: int = 1, run_seconds: float = RUN_SECONDS,
            seed: int = 0, now: Callable[[], float] | None = None) -> int:
    """Position in ``settings`` of the one that runs fastest when timed head to head (0 when none
    is timed).

    Each round draws a fresh batch of tuning queries and runs every setting once on it, in an
    order rotated from round to round; a setting's score is the median over rounds of its time
    relative to the first setting's on the same batch, so query difficulty and drift between rounds
    cancel. Ties go to the earlier setting. A run is sized to about ``run_seconds`` (per thread)
    by the ``predicted`` costs, and the whole to ``rounds`` runs of that per setting: where the
    fewest queries a run needs (batched: every thread on the leaf-major path) cost more, the
    dearest settings are left out, down to timing none. ``now``: the clock (default the mode's)."""
    predicted = [max(float(c), 1e-12) for c in predicted]
    budget = len(settings) * rounds * run_seconds
    count = len(settings)
    while count > 1:
        dearest = max(predicted[:count])
        size = int(min(len(queries), BATCH[mode], max(MIN_RUN_QUERIES[mode], math.ceil(run_seconds / dearest))))
        if sum(predicted[:count]) * size * rounds <= budget * 1.0001:
            break
        count -= 1  # settings come cheapest first after the first: the dearest goes
    if count < 2:
        return 0
    settings = settings[:count]
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    queries = queries[np.random.default_rng(seed + 1).permutation(len(queries))]
    now = clock(mode) if now is None else now
    ratios = [[] for _ in settings]
    for r in range(rounds):
        qs = np.take(queries, np.arange(r * size, (r + 1) * size) % len(queries), axis=0)
        times = [0.0] * count
        for offset in range(count):
            c = (r + offset) % count
            t1, t2 = settings[c]
            start = now()
            index.search_batched(qs, k, num_threads=num_threads, leaves_to_search=t1, pre_reorder_num_neighbors=t2)
            times[c] = now() - start
        for c in range(count):
            ratios[c].append(times[c] / max(times[0], 1e-12))
    return int(np.argmin([statistics.median(x) for x in ratios]))


def _nnls(x: np.ndarray, y: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Non-negative least squares, relative error weighting (each point scaled by 1 / ``scale``,
    default ``y``).

    Four coefficients: the least-squares fit over every subset of them (the rest held at 0) that
    comes out non-negative, the best of the 16 -- exact, and no scipy import (2 s cold on a busy
    machine, longer than the timed searches)."""
    weight = 1.0 / np.maximum(np.abs(y if scale is None else scale), 1e-9)
    xw, yw = x * weight[:, None], y * weight
    best, best_residual = np.zeros(x.shape[1]), float(np.sum(yw**2))
    for mask in range(1, 1 << x.shape[1]):
        cols = [c for c in range(x.shape[1]) if mask >> c & 1]
        coef, *_ = np.linalg.lstsq(xw[:, cols], yw, rcond=None)
        if (coef < 0).any():
            continue
        residual = float(np.sum((xw[:, cols] @ coef - yw) ** 2))
        if residual < best_residual - 1e-15:
            best = np.zeros(x.shape[1])
            best[cols] = coef
            best_residual = residual
    return best
