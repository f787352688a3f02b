"""``annlib.build``: build an index for a recall target or a cost budget, tuned, of the cheapest kind.

This sits above the index kinds and the autotuner: it picks the structure of a tree-AH index
(the autopilot's defaults, or, with a ``build_budget``, the best of a few trial builds on a sample:
:mod:`annlib.autotune.structure`), builds and tunes it, and keeps it, exact C++ search or the JAX
brute force, whichever is predicted cheapest for the target on this machine in the caller's
search mode (:mod:`annlib.autotune.kinds`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
import warnings

import numpy as np

from annlib import _validate
from annlib.autotune import AutotuneWarning, Tuning, resolve_objective, structural_defaults
from annlib.autotune import cost_model as _cost
from annlib.autotune import kinds as _kinds
from annlib.autotune import structure as _structure
from annlib.index import BruteForce, TreeAhIndex
from annlib.index.ids import IdMap

__all__ = ["BRUTE_FORCE_BELOW", "build"]

#: Below this many points exact search is used without building an index (autopilot's small-data rule).
BRUTE_FORCE_BELOW = 2000


def _check_budget(build_budget) -> float | None:
    if build_budget is None:
        return None
    if isinstance(build_budget, bool) or not isinstance(build_budget, numbers.Real) or not (
        math.isfinite(float(build_budget)) and float(build_budget) > 0
    ):
        raise ValueError(f"build_budget must be a positive number of seconds, got {build_budget!r}")
    return float(build_budget)


def build(
    data,
    metric: str = "dot",
    target_recall: float | None = None,
    *,
    max_cost: float | None = None,
    queries=None,
    k: int = 10,
    soar_lambda: float | None = None,
    build_budget: float | None = None,
    mode: str = "single",
    num_threads: int | None = None,
    kinds="auto",
    seed: int = 0,
    return_tuning: bool = False,
    ids=None,
    **tune_kwargs,
):
    """Build an index for ``data`` and tune it for ``target_recall`` (default 0.95) or ``max_cost``.

    Returns a tuned :class:`annlib.TreeAhIndex` (its search defaults set to the tuning), an
    :class:`annlib.BruteForce` or a :class:`annlib.JaxBruteForce`, whichever is predicted cheapest
    at the target; with ``return_tuning=True``, ``(index, Tuning)``. ``Tuning.index_kind``,
    ``Tuning.alternatives`` (each kind's predicted cost) and ``Tuning.message`` say which kind was
    picked and why; ``Tuning.structure`` and ``Tuning.structure_trials`` how the structure was chosen.

    Parameters
    ----------
    build_budget : float, optional
        Seconds ``build`` may spend in all. With it the structure (number of leaves, SOAR and its
        lambda, reorder float32 or int8) is chosen by trial builds on a sample, as many as fit;
        without it the autopilot's defaults (:func:`annlib.autotune.structural_defaults`) are used.
    mode : "single" or "batched"
        How the index will be searched: one query at a time on one thread, or batches on
        ``num_threads`` threads (default every core). Costs are compared in that mode.
    kinds : "auto" or a sequence of kinds
        The kinds weighed ("tree_ah", "brute_force", "jax_brute_force"). "auto": the tree-AH index
        and exact search, plus the JAX brute force where JAX runs on an accelerator.

    Exact search cost is timed on this machine the same way as the index's cost model (CPU time).
    The index owns a copy of ``data``. ``ids``: a 64-bit user id per point (default 0..n-1),
    which searches return; tuning runs before they are attached.
    """
    start = time.perf_counter()
    target, max_cost = resolve_objective(target_recall, max_cost)
    metric = _validate.metric(metric)
    budget = _check_budget(build_budget)
    if mode not in _cost.MODES:
        raise ValueError(f"mode must be one of {_cost.MODES}, got {mode!r}")
    mode, threads = _cost.check_mode(mode, num_threads)
    kinds = _kinds.check_kinds(kinds)
    source, data = data, _validate.database(data)
    data = _validate.owned(data, source, copy=True)
    n, dim = data.shape
    k = _validate.k(k)
    id_map = None if ids is None else IdMap.of(ids, n)  # checked before any work
    user_queries = None if queries is None else _validate.queries(queries, dim)[0]
    exact = BruteForce(data, metric, k)
    timing_queries = user_queries if user_queries is not None else data[
        np.sort(np.random.default_rng(seed).choice(n, min(n, _cost.BATCH["batched"]), replace=False))]
    costs: dict[str, float] = {}
    if "brute_force" in kinds:
        costs["brute_force"] = _kinds.exact_cost(exact, timing_queries, k, mode, threads)
    if "jax_brute_force" in kinds:
        jax_cost = _kinds.jax_cost(n, dim, mode)
        if jax_cost is not None:
            costs["jax_brute_force"] = jax_cost

    def finish(index, tuning: Tuning):
        if id_map is not None:
            index._set_ids(id_map)
        tuning = dataclasses.replace(tuning, tuner_seconds=time.perf_counter() - start,
                                     alternatives=tuple(sorted(costs.items(), key=lambda kv: kv[1])))
        return (index, tuning) if return_tuning else index

    def brute(kind: str, reason: str, structure=None, trials=()):
        cost = costs[kind]
        recall = 1.0 if kind == "brute_force" or target is None else target
        if kind == "brute_force":
            index = exact
        else:
            from annlib.index import JaxBruteForce  # noqa: PLC0415 - optional extra

            index = JaxBruteForce(data, metric, k, recall_target=recall, copy=False)
        tuning = Tuning(
            leaves_to_search=None, pre_reorder_num_neighbors=None, predicted_recall=recall,
            predicted_qps=1.0 / cost, predicted_cost=cost, frontier=(),
            tuning_queries_source="user" if user_queries is not None else "held-out sample",
            num_tuning_queries=len(timing_queries), k=k, target_recall=target, max_cost=max_cost, message=reason,
            index_kind=kind, mode=mode, num_threads=threads, structure=structure or {}, structure_trials=tuple(trials),
        )
        return finish(index, tuning)

    exact_kinds = [kind for kind in costs if kind != "tree_ah"]
    if "tree_ah" not in kinds or n < max(BRUTE_FORCE_BELOW, 4 * k):
        if not exact_kinds:
            raise ValueError(f"{n} points: too few for a tree-AH index, and kinds={kinds!r} names no exact kind")
        kind = min(exact_kinds, key=costs.get)
        why = f"{n} points: exact search" if "tree_ah" in kinds else "the only kinds weighed are exact"
        return brute(kind, why)

    params = structural_defaults(n, dim, metric, k)
    trials = []
    how = "autopilot defaults (pass build_budget= to choose by trial builds)"
    if budget is not None and target is not None:
        params, soar_lambda, trials = _structure.search(
            data, metric, params, target, k, budget - (time.perf_counter() - start), mode=mode,
            num_threads=threads, seed=seed, queries=user_queries, tune_kwargs=tune_kwargs)
        how = f"best of {len(trials)} trial builds on a sample within the {budget:.0f} s budget"
    structure = dict(params, soar_lambda=soar_lambda, chosen_by=how)
    index = TreeAhIndex(data, metric, soar_lambda=soar_lambda, seed=seed, num_threads=num_threads, copy=False,
                        **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AutotuneWarning)
        tuning = index.autotune(target, user_queries, max_cost=max_cost, k=k, data=data, num_threads=num_threads,
                                seed=seed, mode=mode, **tune_kwargs)
    tuning = dataclasses.replace(tuning, structure=structure, structure_trials=tuple(trials))
    if not tuning.best_effort:
        costs["tree_ah"] = tuning.predicted_cost
    if max_cost is not None and target is None:
        # A budget alone: exact search when it fits the budget (recall 1), else the index's best recall.
        fitting = [kind for kind in exact_kinds if costs[kind] <= max_cost]
        if fitting:
            return brute(min(fitting, key=costs.get), f"exact search fits the budget of {max_cost:.3g} s/query",
                         structure, trials)
        for w in caught:
            warnings.warn(w.message, w.category, stacklevel=2)
        return finish(index, tuning)
    candidates = [kind for kind in costs if max_cost is None or costs[kind] <= max_cost or kind == "tree_ah"]
    if not candidates:
        candidates = exact_kinds
    cheapest = min(candidates, key=costs.get) if candidates else None
    if cheapest is not None and cheapest != "tree_ah":
        index_note = (f"the tuned index ({tuning.predicted_cost * 1e6:.1f} us/query)" if not tuning.best_effort
                      else f"the tuned index (best predicted recall {tuning.predicted_recall:.4f})")
        label = {"brute_force": "exact search", "jax_brute_force": "the JAX brute force (exact scores)"}[cheapest]
        reason = f"{label} ({costs[cheapest] * 1e6:.1f} us/query) beats {index_note}"
        return brute(cheapest, reason, structure, trials)
    for w in caught:  # re-raise the tuner's warnings for the index we keep
        warnings.warn(w.message, w.category, stacklevel=2)
    return finish(index, tuning)
