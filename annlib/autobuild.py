"""``annlib.build``: build an index for a recall target or a cost budget, tuned, of the cheapest kind.

This sits above the index kinds and the autotuner: it builds a tree-AH index with
structural defaults for the data, tunes it, and keeps it or exact search, whichever is
predicted cheaper for the target on this machine.
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from annlib import _validate
from annlib.autotune import AutotuneWarning, Tuning, resolve_objective, structural_defaults
from annlib.autotune import cost_model as _cost
from annlib.index import BruteForce, TreeAhIndex
from annlib.index.ids import IdMap

__all__ = ["BRUTE_FORCE_BELOW", "build"]

#: Below this many points exact search is used without building an index (autopilot's small-data rule).
BRUTE_FORCE_BELOW = 2000


def build(
    data,
    metric: str = "dot",
    target_recall: float | None = None,
    *,
    max_cost: float | None = None,
    queries=None,
    k: int = 10,
    soar_lambda: float | None = None,
    num_threads: int | None = None,
    seed: int = 0,
    return_tuning: bool = False,
    ids=None,
    **tune_kwargs,
):
    """Build an index for ``data`` and tune it for ``target_recall`` (default 0.95) or ``max_cost``.

    Returns a tuned :class:`annlib.TreeAhIndex` (its search defaults set to the tuning), or an
    :class:`annlib.BruteForce` when exact search is predicted to be cheaper for the target
    (tiny data, or hard data at high recall) or is the only way to reach it; with
    ``return_tuning=True``, ``(index, Tuning)``; ``Tuning.index_kind`` and ``Tuning.message``
    say which kind was picked and why. Either kind has the whole index protocol (search with
    ``k`` and keyword parameters, save, :func:`annlib.load_index`, pickle, autotune). Exact
    search cost is timed on this machine the same way as the index's cost model (one thread,
    CPU time). The index owns a copy of ``data``. ``ids``: a 64-bit user id per point
    (default 0..n-1), which searches return; tuning runs before they are attached.
    """
    start = time.perf_counter()
    target, max_cost = resolve_objective(target_recall, max_cost)
    metric = _validate.metric(metric)
    source, data = data, _validate.database(data)
    data = _validate.owned(data, source, copy=True)
    n, dim = data.shape
    k = _validate.k(k)
    id_map = None if ids is None else IdMap.of(ids, n)  # checked before any work
    result = _build(data, metric, target, max_cost, queries, k, soar_lambda, num_threads, seed, start, tune_kwargs)
    if id_map is not None:
        result[0]._set_ids(id_map)
    return result if return_tuning else result[0]


def _build(data, metric, target, max_cost, queries, k, soar_lambda, num_threads, seed, start, tune_kwargs):
    n, dim = data.shape
    exact = BruteForce(data, metric, k)

    def exact_cost(sample_queries) -> float:
        return _cost.time_brute_force(exact, sample_queries[:200], k)

    def brute(reason: str, tq, source: str, cost: float | None = None):
        cost = exact_cost(tq) if cost is None else cost
        tuning = Tuning(
            leaves_to_search=None, pre_reorder_num_neighbors=None, predicted_recall=1.0, predicted_qps=1.0 / cost,
            predicted_cost=cost, frontier=(), tuning_queries_source=source, num_tuning_queries=len(tq), k=k,
            target_recall=target, max_cost=max_cost, message=reason, index_kind="brute_force",
            tuner_seconds=time.perf_counter() - start,
        )
        return exact, tuning

    if n < max(BRUTE_FORCE_BELOW, 4 * k):
        tq = data[: min(n, 200)] if queries is None else _validate.queries(queries, dim)[0]
        return brute(f"{n} points: exact search", tq, "user" if queries is not None else "held-out sample")

    params = structural_defaults(n, dim, metric, k)
    index = TreeAhIndex(data, metric, soar_lambda=soar_lambda, seed=seed, num_threads=num_threads, copy=False,
                        **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AutotuneWarning)
        tuning = index.autotune(target, queries, max_cost=max_cost, k=k, data=data, num_threads=num_threads,
                                seed=seed, **tune_kwargs)
    sample = index.get_vectors(np.arange(min(n, 200))) if queries is None else _validate.queries(queries, dim)[0]
    bf_cost = exact_cost(sample)
    if max_cost is not None and target is None:
        pick_exact = bf_cost <= max_cost
    else:
        pick_exact = tuning.best_effort or bf_cost <= tuning.predicted_cost
        if max_cost is not None and bf_cost > max_cost:
            pick_exact = False
    if pick_exact:
        reason = (
            f"exact search ({bf_cost * 1e6:.1f} us/query) beats the tuned index "
            f"({tuning.predicted_cost * 1e6:.1f} us/query, predicted recall {tuning.predicted_recall:.4f})"
        )
        return brute(reason, sample, tuning.tuning_queries_source, bf_cost)
    for w in caught:  # re-raise the tuner's warnings for the index we keep
        warnings.warn(w.message, w.category, stacklevel=2)
    tuning = dataclasses.replace(tuning, tuner_seconds=time.perf_counter() - start)
    return index, tuning
