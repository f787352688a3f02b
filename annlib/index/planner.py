"""The route of a filtered search: the index with the filter, or an exact scan of the allowed points.

For each distinct filter of a call (one per batch, or one per query) the planner compares two
predicted costs per query, both from figures measured on this machine:

* **index**: the kind's own search with the filter applied inside it. For tree-AH the
  autotuner's cost model (:class:`annlib.autotune.cost_model.CostModel`: seconds per leaf, per
  LUT16-scanned entry, per reordered candidate) evaluated at the widened search: a query keeps
  scanning leaves until it has passed as many allowed entries as its ``leaves_to_search`` best
  leaves hold (the unfiltered number of passing candidates), about ``leaves_to_search / s`` leaves
  and ``entries / s`` entries at an allowed fraction ``s`` (no more than the leaves holding an
  allowed entry). For the exact kinds: their masked scan of every point (C++, or the JAX device),
  timed on the index;
* **exact**: the allowed points gathered and scored exactly, at the measured seconds per
  gathered-and-scored point (the exact route itself, timed on a sample of the index's rows).

The allowed fraction is exact for id lists and bitmaps and sampled for predicates. The measured
figures are cached on the index per search mode ("single" for ``search``, "batched" for
``search_batched``); a tree-AH index that was autotuned in that mode reuses the tuner's model.
A filter passing fewer than ``k`` points always goes exact. ``filter_route="index"`` or
``"exact"`` forces a route.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from annlib import _core
from annlib.errors import InvalidValueError

ROUTES = ("auto", "index", "exact")
#: Rows of the index the exact-route cost is timed on (and queries per timing in batched mode).
_COST_SAMPLE_ROWS = 4096
_COST_QUERIES = {"single": 32, "batched": 128}


@dataclasses.dataclass(frozen=True)
class FilterPlan:
    """What the last filtered search of an index did (``index.last_filter_plan``).

    Per query: ``routes`` ("index" or "exact", as run), ``planned`` (the planner's choice), ``allowed``
    (points the query's filter allows, exact or ``estimated`` from a sample). ``fallback``: queries
    the index route left short of ``k`` results although the filter allows ``k`` points, rerun
    exactly. ``predicted`` maps each distinct filter's position to its predicted (index, exact)
    seconds per query, where the planner weighed them.
    """

    routes: np.ndarray
    planned: np.ndarray
    allowed: np.ndarray
    estimated: np.ndarray
    fallback: int
    forced: bool
    predicted: dict

    @property
    def route(self) -> str:
        """"index", "exact", or "mixed" when the queries of the call took different routes."""
        kinds = set(self.routes.tolist())
        return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "none")


@dataclasses.dataclass(frozen=True)
class RouteCosts:
    """Measured seconds per query: per indexed point of the exact kinds' masked scan (their index
    route: C++ or the JAX device), per allowed point of the exact route (gather + exact scores);
    for tree-AH its cost model and how many scanned entries reach the filter."""

    per_scanned_point: float
    per_exact_point: float
    model: object | None = None
    #: tree-AH: filter checks per LUT16-scanned entry (entries past the score threshold), measured
    checks_per_entry: float | None = None


def register_cost_model(index, model) -> None:
    """Let the planner use a cost model the autotuner measured for ``index`` (in the model's mode)."""
    key = (model.mode, int(model.num_threads))
    index.__dict__.setdefault("_tuner_models", {})[key] = model
    costs = index.__dict__.get("_filter_costs", {})
    if key in costs:
        costs[key] = dataclasses.replace(costs[key], model=model)


def choose(index, snap, resolved: list, k: int, params, route: str, mode: str, num_threads: int,
           exact_available: bool) -> tuple[list[str], dict]:
    """The route of each filter, and the predicted (index, exact) costs of those weighed."""
    if route == "exact" and not exact_available:
        raise InvalidValueError(
            f"filter_route='exact' needs the index's vectors; this {index.kind} index keeps none "
            "(build it with reorder=... float32 or int8)"
        )
    if route != "auto":
        return [route] * len(resolved), {}
    n = snap.ids.num_live
    routes, predicted = [], {}
    for i, r in enumerate(resolved):
        if r.passes_all or not exact_available:
            routes.append("index")
        elif not r.estimated and r.allowed < k:
            routes.append("exact")
        else:
            costs = route_costs(index, snap, mode, num_threads, k)
            index_cost, exact_cost = _predict(index, snap, r, k, params, costs, n)
            predicted[i] = (index_cost, exact_cost)
            routes.append("exact" if exact_cost < index_cost else "index")
    return routes, predicted


def _predict(index, snap, r, k: int, params, costs: RouteCosts, n: int) -> tuple[float, float]:
    if index.kind != "tree_ah" or costs.model is None:
        return n * costs.per_scanned_point, max(float(r.allowed), 1.0) * costs.per_exact_point
    layout = snap.layout
    counts = None if r.estimated else index._filter_leaf_counts(snap, r)
    pre = index._pre_reorder(params, k, n) if layout.has_reorder else 0
    return predict_tree_ah(costs, float(r.allowed), n, np.asarray(layout.leaf_sizes), counts,
                           params.leaves_to_search, pre)


def predict_tree_ah(costs: RouteCosts, allowed: float, n: int, leaf_sizes: np.ndarray, counts: np.ndarray | None,
                    leaves_to_search: int, pre_reorder: int) -> tuple[float, float]:
    """Predicted (index, exact) seconds per query of a tree-AH filtered search from figures alone:
    the filter's ``allowed`` points of ``n``, the leaf sizes, its exact per-leaf allowed
    ``counts`` (None for an estimate) and ``pre_reorder`` (0 without reordering). A sharded
    index plans with the figures summed over its shards."""
    allowed = max(float(allowed), 1.0)
    exact_cost = allowed * costs.per_exact_point
    fraction = min(1.0, allowed / max(n, 1))
    num_leaves = len(leaf_sizes)
    entries = float(np.sum(leaf_sizes))
    t1 = leaves_to_search
    leaves = min(num_leaves, t1 / fraction)
    scanned = min(entries, t1 * entries / num_leaves / fraction)
    if counts is not None:
        # Exact per-leaf counts: leaves without an allowed entry are never scanned, which caps
        # the widened scan (a filter whose points cluster in a few leaves scans only those).
        nonzero = counts > 0
        leaves = min(leaves, float(np.count_nonzero(nonzero)))
        scanned = min(scanned, float(np.sum(leaf_sizes[nonzero])))
    reordered = min(pre_reorder, allowed)
    return float(costs.model.cost(leaves, scanned, reordered)), exact_cost


def route_costs(index, snap, mode: str, num_threads: int, k: int) -> RouteCosts:
    """The measured figures of ``index`` in ``mode`` (timed on first use, then cached on the index)."""
    threads = 1 if mode == "single" else (num_threads or _core.default_threads())
    key = (mode, threads)
    cache = index.__dict__.setdefault("_filter_costs", {})
    found = cache.get(key)
    if found is None:
        found = _measure(index, snap, mode, threads, k)
        cache[key] = found
    return found


def _measure(index, snap, mode: str, threads: int, k: int) -> RouteCosts:
    from annlib.autotune import cost_model as _cost  # noqa: PLC0415 - the tuner imports the index package
    from annlib.filter import Resolved  # noqa: PLC0415 - the filter module imports the index package
    from annlib.index import filtered  # noqa: PLC0415

    rng = np.random.default_rng(0)
    live = snap.ids.live_rows()
    sample = np.sort(rng.choice(live, min(len(live), _COST_SAMPLE_ROWS), replace=False)).astype(np.int64)
    vectors = index._exact_vectors(snap, sample)
    if vectors is None:  # a tree-AH index without stored vectors (no exact route): its centers
        vectors = np.asarray(snap.layout.centers, dtype=np.float32)
    nq = min(_COST_QUERIES[mode], len(vectors))
    queries = np.ascontiguousarray(vectors[rng.choice(len(vectors), nq, replace=False)])
    queries += rng.normal(scale=float(np.std(queries)) * 0.1 + 1e-6, size=queries.shape).astype(np.float32)
    kk = min(k, len(sample))

    def exact_route():
        if mode == "single":
            for q in queries:
                filtered.exact_rows(index, snap, q[None], kk, sample, 1)
        else:
            filtered.exact_rows(index, snap, queries, kk, sample, threads)

    # A filter that tests (and passes) every point: the kind's own filtered search at its dearest.
    everything = Resolved.everything(snap.ids)
    everything.bits = np.full((snap.ids.rows + 7) // 8, 255, dtype=np.uint8)

    def masked_scan():  # the index route of the exact kinds (C++ masked scan, JAX masked top-k)
        if mode == "single":
            for q in queries:
                index._search_filtered(snap, q[None], kk, index.search_defaults, 1, [everything], None)
        else:
            index._search_filtered(snap, queries, kk, index.search_defaults, threads, [everything], None)

    per_exact = float("inf")
    if index._exact_vectors(snap, sample[:0]) is not None:
        per_exact = _cost.cpu_seconds_per_query(exact_route, nq, repeats=3, mode=mode, num_threads=threads)
        per_exact /= len(sample)
    per_scan = float("nan")
    if index.kind != "tree_ah":  # tree-AH prices its index route with the cost model instead
        per_scan = _cost.cpu_seconds_per_query(masked_scan, nq, repeats=3, mode=mode, num_threads=threads)
        per_scan /= max(1, snap.ids.num_live)
    model = None
    if index.kind == "tree_ah":
        model = index.__dict__.get("_tuner_models", {}).get((mode, threads))
        if model is None:
            layout = snap.layout
            t1_grid = np.unique(np.geomspace(1, layout.num_leaves, 6).astype(np.int64))
            t2_grid = None
            if layout.has_reorder:
                t2_grid = np.unique(np.minimum([k, 4 * k, 16 * k], snap.ids.num_live)).astype(np.int64)
            model = _cost.measure(index, queries, kk, t1_grid, t2_grid, batch=nq, repeats=1, mode=mode,
                                  num_threads=threads)
    checks = None
    if index.kind == "tree_ah":
        # How many scanned entries reach the filter (those past the score threshold).
        index._search_filtered(snap, queries, kk, index.search_defaults, threads, [everything], None)
        counters = index.last_search_counters
        checks = counters["filter_checks"] / max(1, counters["entries_scored"])
    return RouteCosts(per_scan, per_exact, model, checks)


def materialize(index, snap, r, num_queries: int, k: int, params, mode: str, num_threads: int) -> bool:
    """Whether to evaluate a predicate on every point once (a bitmap) rather than lazily in the scan.

    Tree-AH only: a query calls the predicate for the scanned entries that pass the score threshold
    (a measured fraction of them, :attr:`RouteCosts.checks_per_entry`), so a batch whose queries
    would call it more often than there are points evaluates it once per point instead; its
    selectivity is then exact too. A single query keeps the lazy calls."""
    if index.kind != "tree_ah" or not r.is_predicate:
        return False
    costs = route_costs(index, snap, mode, num_threads, k)
    n = snap.ids.num_live
    layout = snap.layout
    entries = float(np.sum(layout.leaf_sizes))
    fraction = min(1.0, max(float(r.allowed), 1.0) / max(n, 1))
    scanned = min(entries, params.leaves_to_search * entries / layout.num_leaves / fraction)
    return num_queries * scanned * (costs.checks_per_entry or 1.0) > n
