"""The autotuner: search parameters for a recall target or a cost budget by constrained optimization.

Sun, Guo and Kumar (ICLR 2023), algorithms.md section 5: one statistics pass over tuning
queries (:mod:`annlib.autotune.statistics`), a per-stage cost model timed on this machine
(:mod:`annlib.autotune.cost_model`), and a Lagrangian solve over the resulting model
(:mod:`annlib.autotune.solver`). No search is run per candidate setting; only the few settings
the fitted model cannot tell apart (its near-ties, all meeting the target) are timed against
each other at the end.

>>> tuning = index.autotune(target_recall=0.95)            # doctest: +SKIP
>>> tuning.leaves_to_search, tuning.pre_reorder_num_neighbors, tuning.predicted_recall  # doctest: +SKIP
>>> index = annlib.build(data, "cosine", target_recall=0.9)  # doctest: +SKIP

The search space is the whole useful range (issue 16): leaves up to the partitions holding all
the true neighbours for a cost budget, and for a recall target all but a hundredth of its
distance to 1 (:func:`annlib.autotune.statistics.coverage_for`); reordered candidates up to where
recall saturates. Costs are per query in a ``mode``: "single" (one thread) or "batched"
(``num_threads`` threads).
:mod:`annlib.autotune.kinds` weighs the tuned index against exact C++ search and the JAX brute
force; :mod:`annlib.autotune.structure` picks the build parameters from trial builds on a sample.

Every index kind is tuned through ``index.autotune(...)``: the tuner of each kind is registered
with the index protocol here, so the indexes never import the tuner. The tree-AH tuner reads
the index only through its public :attr:`annlib.TreeAhIndex.layout` and search API.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
import warnings

import numpy as np

from annlib import _validate
from annlib.errors import InvalidTypeError, InvalidValueError
from annlib.autotune import cost_model as _cost
from annlib.autotune import solver as _solver
from annlib.autotune import statistics as _stats
from annlib.autotune.cost_model import CostModel
from annlib.autotune.solver import FrontierPoint
from annlib.index import BruteForce
from annlib.index.planner import register_cost_model
from annlib.index.protocol import register_tuner

__all__ = ["AutotuneWarning", "CostModel", "FrontierPoint", "Tuning", "autotune", "structural_defaults"]


#: Settings the fitted model prices within this share of its choice are near-ties: refits of one
#: index move predicted costs between leaves-heavy and candidates-heavy settings by this much.
NEAR_TIE_BAND = 0.08
#: Most settings timed head to head (the model's choice among them).
NEAR_TIE_SETTINGS = 3


class AutotuneWarning(UserWarning):
    """The requested target could not be met; the result is a best effort."""


@dataclasses.dataclass(frozen=True)
class Tuning:
    """The autotuner's choice and what the model predicts for it.

    Costs are seconds per query in ``mode`` ("single": one query at a time on one thread;
    "batched": a batch on ``num_threads`` threads, wall time per query when the threads have their
    cores); ``predicted_qps = 1 / predicted_cost``.
    ``frontier`` is the predicted speed-recall Pareto frontier (the lower convex hull traced
    by the Lagrange multiplier), cheapest first. ``best_effort`` is True when the target
    (recall, or recall within the budget) cannot be met; ``message`` says why.
    """

    leaves_to_search: int | None
    pre_reorder_num_neighbors: int | None
    predicted_recall: float
    predicted_qps: float
    predicted_cost: float
    frontier: tuple[FrontierPoint, ...]
    tuning_queries_source: str  # "user" or "held-out sample"
    num_tuning_queries: int
    k: int
    target_recall: float | None = None
    max_cost: float | None = None
    best_effort: bool = False
    message: str = ""
    index_kind: str = "tree_ah"  # "tree_ah", "brute_force" or "jax_brute_force"
    predicted_recall_stderr: float = 0.0
    cost_model: CostModel | None = None
    tuner_seconds: float = 0.0
    stage_seconds: dict = dataclasses.field(default_factory=dict)  # ground truth, statistics, cost model, solve, near ties
    mode: str = "single"
    num_threads: int = 1
    max_rank: int | None = None  # deepest pre_reorder_num_neighbors the statistics recorded
    #: Predicted seconds per query of every kind weighed at the target (``annlib.build``), cheapest first.
    alternatives: tuple = ()
    #: The build parameters of the index (``annlib.build``), and the structures tried, with their predictions.
    structure: dict = dataclasses.field(default_factory=dict)
    structure_trials: tuple = ()

    @property
    def params(self) -> dict:
        """Keyword arguments for ``search_batched``."""
        if self.index_kind == "brute_force":
            return {}
        if self.index_kind == "jax_brute_force":
            return {"recall_target": self.predicted_recall}
        out = {"leaves_to_search": self.leaves_to_search}
        if self.pre_reorder_num_neighbors is not None:
            out["pre_reorder_num_neighbors"] = self.pre_reorder_num_neighbors
        return out

    def _mode_words(self) -> str:
        return "on one thread" if self.mode == "single" else f"batched on {self.num_threads} thread(s)"

    def __str__(self) -> str:
        lines = [
            f"{self.index_kind}: leaves_to_search={self.leaves_to_search} "
            f"pre_reorder_num_neighbors={self.pre_reorder_num_neighbors}",
            f"predicted recall@{self.k} {self.predicted_recall:.4f} (+-{self.predicted_recall_stderr:.4f}), "
            f"{self.predicted_qps:,.0f} QPS {self._mode_words()}; tuned on {self.num_tuning_queries} "
            f"{self.tuning_queries_source} queries in {self.tuner_seconds:.1f} s",
        ]
        if self.message:
            lines.append(("BEST EFFORT: " if self.best_effort else "") + self.message)
        if self.alternatives:
            lines.append("kinds weighed (predicted us/query at the target): " + ", ".join(
                f"{kind} {cost * 1e6:.1f}" for kind, cost in self.alternatives))
        if self.structure:
            lines.append("structure: " + ", ".join(f"{key}={value}" for key, value in self.structure.items()))
        for trial in self.structure_trials:
            lines.append(f"  trial {trial}")
        if self.frontier:
            lines.append("predicted frontier (cost us/query, QPS, recall, leaves_to_search, pre_reorder):")
            for p in self.frontier:
                lines.append(
                    f"  {p.cost * 1e6:9.1f} {p.qps:10,.0f} {p.recall:.4f} {p.leaves_to_search:6d} {p.pre_reorder_num_neighbors}"
                )
        return "\n".join(lines)


def resolve_objective(target_recall, max_cost) -> tuple[float | None, float | None]:
    """(recall target, cost budget): a budget alone maximises recall; neither means recall 0.95."""
    if max_cost is not None:
        return (None if target_recall is None else _check_target(target_recall)), _check_cost(max_cost)
    return _check_target(0.95 if target_recall is None else target_recall), None


def _check_target(target_recall) -> float:
    if isinstance(target_recall, bool) or not isinstance(target_recall, numbers.Real) or not (
        0.0 < float(target_recall) <= 1.0
    ):
        raise ValueError(f"target_recall must be a number in (0, 1], got {target_recall!r}")
    return float(target_recall)


def _check_cost(max_cost) -> float:
    if isinstance(max_cost, bool) or not isinstance(max_cost, numbers.Real) or not (
        math.isfinite(float(max_cost)) and float(max_cost) > 0
    ):
        raise ValueError(f"max_cost must be a positive number of seconds per query, got {max_cost!r}")
    return float(max_cost)


def autotune(index, target_recall: float | None = None, queries=None, **kwargs) -> Tuning:
    """Tune any index kind: the same as ``index.autotune(target_recall, queries, **kwargs)``.

    For a :class:`annlib.TreeAhIndex` see :func:`tune_tree_ah`; exact search has nothing to tune
    (its :class:`Tuning` reports its measured cost); the JAX brute force takes the target as its
    ``recall_target``.
    """
    return index.autotune(target_recall, queries, **kwargs)


def _check_tuning_args(safety, num_tuning_queries, max_rank, seed, set_default, mode, recall_tolerance) -> None:
    # Every argument is checked before any work: a bad value must never become a search default.
    if isinstance(safety, bool) or not isinstance(safety, numbers.Real) or not (
        math.isfinite(float(safety)) and 0.0 <= float(safety) <= 10.0
    ):
        raise ValueError(f"safety must be a number of standard errors in [0, 10], got {safety!r}")
    if isinstance(recall_tolerance, bool) or not isinstance(recall_tolerance, numbers.Real) or not (
        0.0 <= float(recall_tolerance) <= _solver.MAX_RECALL_TOLERANCE
    ):
        raise ValueError(f"recall_tolerance must be a number in [0, {_solver.MAX_RECALL_TOLERANCE}], got {recall_tolerance!r}")
    _validate.positive_int(num_tuning_queries, "num_tuning_queries")
    if max_rank is not None:
        _validate.positive_int(max_rank, "max_rank")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if not isinstance(set_default, bool):
        raise TypeError(f"set_default must be True or False, got {set_default!r}")
    if mode not in _cost.MODES:
        raise ValueError(f"mode must be one of {_cost.MODES}, got {mode!r}")


def _check_cost_model(model, index, mode: str, threads: int) -> None:
    if not isinstance(model, CostModel):
        raise InvalidTypeError(f"cost_model must be an annlib.autotune.CostModel, got {type(model).__name__}")
    if model.num_leaves != index.layout.num_leaves:
        raise InvalidValueError(
            f"cost_model was measured on an index of {model.num_leaves} leaves; this one has "
            f"{index.layout.num_leaves}"
        )
    if (model.mode, model.num_threads) != (mode, threads):
        raise InvalidValueError(
            f"cost_model is for mode={model.mode!r} on {model.num_threads} thread(s); this tuning is "
            f"mode={mode!r} on {threads}"
        )


def tune_tree_ah(
    index,
    target_recall: float | None = None,
    queries=None,
    *,
    max_cost: float | None = None,
    set_default: bool = True,
    k: int | None = None,
    data=None,
    num_tuning_queries: int = _stats.DEFAULT_NUM_TUNING_QUERIES,
    safety: float = 1.0,
    recall_tolerance: float = _solver.RECALL_TOLERANCE,
    max_rank: int | None = None,
    num_threads: int | None = None,
    seed: int = 0,
    mode: str = "single",
    cost_model: CostModel | None = None,
) -> Tuning:
    """Pick ``leaves_to_search`` and ``pre_reorder_num_neighbors`` of a :class:`annlib.TreeAhIndex`
    (what ``index.autotune(...)`` runs for that kind).

    Parameters
    ----------
    target_recall : float in (0, 1], optional
        Recall@k to reach at the lowest cost (default 0.95 when no ``max_cost`` is given).
    queries : array_like (nq, dim), optional
        Tuning queries, at most ``num_tuning_queries`` of them (a seeded sample of more). Default:
        ``num_tuning_queries`` indexed points drawn at random, each excluded from its own ground
        truth ("held-out sample").
    max_cost : float, optional
        Budget in seconds per query on one thread: the highest predicted recall within it
        (with ``target_recall`` too: the cheapest setting within the budget meeting the target).
    set_default : bool
        Make the tuned values the index's search defaults.
    k : int, optional
        Recall depth, default the index's ``num_neighbors``.
    data : array_like, optional
        The indexed vectors, for exact ground truth when the index keeps no float32 reordering data.
    safety : float
        The chosen setting's predicted recall must reach the target, and its predicted recall
        minus ``safety`` standard errors (over tuning queries) must reach the target less
        ``recall_tolerance``; 0 disables the margin. Where the full margin would cost more than
        5% of the speed (a flat stretch of the frontier) it shrinks, to no less than half
        (:func:`annlib.autotune.solver.margin_for`). The standard error treats queries that share
        their best partition as one cluster (they share its leaf coverage).
    recall_tolerance : float
        The shortfall under the target accepted on unseen queries, at the confidence ``safety``
        buys (default 0.005). With 0, the lower confidence bound must reach the target itself:
        safer, and slower where the frontier is flat.
    max_rank : int, optional
        Largest ``pre_reorder_num_neighbors`` considered (default: where recall saturates, found by
        a probe pass; at least max(250, 25 k), at most max(4 times that, n / 10)).
    mode : "single" or "batched"
        The cost to minimise: one query at a time on one thread, or batches on ``num_threads``
        threads (default every core); ``num_threads`` also runs the statistics pass.
    cost_model : CostModel, optional
        The per-stage costs to weigh settings by, e.g. an earlier ``Tuning.cost_model`` of this
        index: tuning for several targets or budgets then times nothing again, and compares
        them on one model. Default: measured now, on this machine, in ``mode``; then the
        settings it prices within :data:`NEAR_TIE_BAND` of its choice that also meet the target
        (at most :data:`NEAR_TIE_SETTINGS`), and the one a work-proportional prior would pick among
        those meeting it, are timed head to head and the fastest is returned.

    Raises
    ------
    ValueError
        ``target_recall`` outside (0, 1], a non-positive ``max_cost``, or a ``max_cost`` below
        the cheapest setting (the message names that cost).

    An unreachable target gives a :class:`Tuning` with ``best_effort=True`` and an
    :class:`AutotuneWarning`.
    """
    start = time.perf_counter()
    target, max_cost = resolve_objective(target_recall, max_cost)
    _check_tuning_args(safety, num_tuning_queries, max_rank, seed, set_default, mode, recall_tolerance)
    mode, search_threads = _cost.check_mode(mode, num_threads)
    if cost_model is not None:
        _check_cost_model(cost_model, index, mode, search_threads)
    k = index.num_neighbors if k is None else _validate.k(k)
    if k > index.n:
        raise ValueError(f"k ({k}) exceeds the number of indexed points ({index.n})")
    has_reorder = index.layout.has_reorder

    stages = {}
    tq, truth, exclude, source = _stats.tuning_queries(index, queries, data, k, num_tuning_queries, seed)
    stages["ground_truth"] = time.perf_counter() - start
    stats = _stats.gather(index, tq, truth, exclude, source=source, max_rank=max_rank, num_threads=num_threads,
                          coverage=_stats.coverage_for(None if max_cost is not None else target), seed=seed)
    stages["statistics"] = stats.seconds
    t2_grid = _solver.default_t2_grid(k, stats.max_rank) if has_reorder else None
    mark = time.perf_counter()
    guide = _cost.prior(index, mode, search_threads)
    surf = prior_surf = _solver.surface(stats, cost_model or guide, t2_grid)
    if cost_model is None:
        # Time the searches where this tuning's answer will lie: around the setting a
        # work-proportional prior picks (the fit must be right there, not at the grid's ends).
        design = None
        if target is not None:
            guess = _solver.solve_for_recall(surf, target, safety, tolerance=recall_tolerance)
            t1_guess, t2_guess = surf.params(guess.j, guess.i)
            design = _cost.design_around(stats.t1_grid, t2_grid, guess.j, guess.i, k,
                                         reorder_step=_cost.reorder_step(guide, index, t1_guess, t2_guess, k))
        model = _cost.measure(index, tq, k, stats.t1_grid, t2_grid, seed=seed, mode=mode,
                              num_threads=search_threads, design=design, run_seconds=_cost.RUN_SECONDS)
        surf = _solver.with_cost(surf, stats, model)
    else:
        model = cost_model
    stages["cost_model"] = time.perf_counter() - mark
    mark = time.perf_counter()

    if max_cost is not None:
        sol = _solver.solve_for_budget(surf, max_cost, target, safety, tolerance=recall_tolerance)
    else:
        sol = _solver.solve_for_recall(surf, target, safety, tolerance=recall_tolerance)
    if not sol.feasible:
        warnings.warn(sol.message, AutotuneWarning, stacklevel=2)
    stages["solve"] = time.perf_counter() - mark
    if cost_model is None and max_cost is None and sol.feasible:
        # The model's near-ties (every one meets the target with its margin) decided by the clock.
        mark = time.perf_counter()
        ties = _solver.near_ties(surf, sol, NEAR_TIE_BAND, NEAR_TIE_SETTINGS, prior=prior_surf)
        if len(ties) > 1:
            pick = _cost.fastest(index, tq, k, [surf.params(j, i) for j, i in ties],
                                 [surf.cost[j, i] for j, i in ties], mode=mode, num_threads=search_threads, seed=seed)
            sol = dataclasses.replace(sol, j=ties[pick][0], i=ties[pick][1])
        stages["near_ties"] = time.perf_counter() - mark
    t1, t2 = surf.params(sol.j, sol.i)
    cost = float(surf.cost[sol.j, sol.i])
    tuning = Tuning(
        leaves_to_search=t1,
        pre_reorder_num_neighbors=t2,
        predicted_recall=float(surf.recall[sol.j, sol.i]),
        predicted_qps=1.0 / cost,
        predicted_cost=cost,
        frontier=tuple(_solver.frontier(surf)),
        tuning_queries_source=source,
        num_tuning_queries=len(tq),
        k=k,
        target_recall=target,
        max_cost=max_cost,
        best_effort=not sol.feasible,
        message=sol.message,
        predicted_recall_stderr=float(surf.stderr[sol.j, sol.i]),
        cost_model=model,
        tuner_seconds=time.perf_counter() - start,
        stage_seconds=stages,
        mode=mode,
        num_threads=search_threads,
        max_rank=stats.max_rank if has_reorder else None,
    )
    if set_default:
        index.set_search_defaults(leaves_to_search=t1, pre_reorder_num_neighbors=t2)
    register_cost_model(index, model)  # the filtered-search planner weighs its routes with it
    return tuning


def _exact_tuning(index, target, max_cost, queries, k, start, message: str, index_kind: str, mode: str,
                  threads: int) -> Tuning:
    """The Tuning of a kind whose search is exact (or whose recall is its own parameter): its cost measured."""
    sample = queries[: _cost.BATCH[mode]]
    cost = _cost.cpu_seconds_per_query(lambda: index.search_batched(sample, k, num_threads=threads), len(sample),
                                       mode=mode, num_threads=threads)
    return Tuning(
        leaves_to_search=None, pre_reorder_num_neighbors=None,
        predicted_recall=1.0 if target is None or index_kind == "brute_force" else target,
        predicted_qps=1.0 / cost, predicted_cost=cost, frontier=(),
        tuning_queries_source="user" if queries is not None else "held-out sample",
        num_tuning_queries=len(sample), k=k, target_recall=target, max_cost=max_cost,
        best_effort=max_cost is not None and cost > max_cost, message=message, index_kind=index_kind,
        tuner_seconds=time.perf_counter() - start, mode=mode, num_threads=threads,
    )


def _tuning_sample(index, queries) -> np.ndarray:
    if queries is not None:
        return _validate.queries(queries, index.dim)[0]
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(index.n, min(index.n, 256), replace=False))
    return index.get_vectors(index.ids[rows])  # by user id: the index's ids need not be 0..n-1


def _check_common(index, target_recall, max_cost, k, data, num_tuning_queries, safety, max_rank, num_threads, seed,
                  set_default, mode, recall_tolerance):
    """The arguments every kind's tuner takes, checked the same way (those a kind has no use for too)."""
    target, max_cost = resolve_objective(target_recall, max_cost)
    _check_tuning_args(safety, num_tuning_queries, max_rank, seed, set_default, mode, recall_tolerance)
    mode, threads = _cost.check_mode(mode, num_threads)
    if data is not None:
        data = _validate.database(data)
        if data.shape != (index.n, index.dim):
            raise ValueError(f"data has shape {data.shape}, the index holds ({index.n}, {index.dim})")
    return target, max_cost, index.num_neighbors if k is None else _validate.k(k), mode, threads


def tune_brute_force(index, target_recall=None, queries=None, *, max_cost=None, set_default=True, k=None,
                     data=None, num_tuning_queries=_stats.DEFAULT_NUM_TUNING_QUERIES, safety=1.0,
                     recall_tolerance=_solver.RECALL_TOLERANCE, max_rank=None, num_threads=None, seed=0,
                     mode="single") -> Tuning:
    """Exact search has nothing to tune: the Tuning reports its measured cost in ``mode``."""
    start = time.perf_counter()
    target, max_cost, k, mode, threads = _check_common(index, target_recall, max_cost, k, data, num_tuning_queries,
                                                       safety, max_rank, num_threads, seed, set_default, mode,
                                                       recall_tolerance)
    return _exact_tuning(index, target, max_cost, _tuning_sample(index, queries), k, start,
                         "exact search: every target is met", "brute_force", mode, threads)


def tune_jax_brute_force(index, target_recall=None, queries=None, *, max_cost=None, set_default=True, k=None,
                         data=None, num_tuning_queries=_stats.DEFAULT_NUM_TUNING_QUERIES, safety=1.0,
                         recall_tolerance=_solver.RECALL_TOLERANCE, max_rank=None, num_threads=None, seed=0,
                         mode="single") -> Tuning:
    """The JAX brute force's one knob is its expected recall: the target becomes its ``recall_target``."""
    start = time.perf_counter()
    target, max_cost, k, mode, threads = _check_common(index, target_recall, max_cost, k, data, num_tuning_queries,
                                                       safety, max_rank, num_threads, seed, set_default, mode,
                                                       recall_tolerance)
    recall = 1.0 if target is None else target
    if set_default:
        index.set_search_defaults(recall_target=recall)
    return _exact_tuning(index, recall, max_cost, _tuning_sample(index, queries), k, start,
                         f"PartialReduce top-k at recall_target={recall}", "jax_brute_force", mode, threads)


register_tuner("tree_ah", tune_tree_ah)
register_tuner("brute_force", tune_brute_force)
register_tuner("jax_brute_force", tune_jax_brute_force)


def structural_defaults(n: int, dim: int, metric: str, k: int = 10) -> dict:
    """Build settings from the data size and dimension, autopilot-style (algorithms.md 0 and 5.4):
    about sqrt(n) partitions of at least ~64 points each, 4-bit AH on 2-dimension blocks with the
    anisotropic loss for inner-product metrics, float32 reordering."""
    num_leaves = int(round(math.sqrt(n)))
    num_leaves = max(1, min(num_leaves, n // 64 if n >= 64 else 1))
    return {
        "num_neighbors": k,
        "num_leaves": num_leaves,
        "num_leaves_to_search": max(1, num_leaves // 10),
        "dims_per_block": 2,
        "anisotropic_quantization_threshold": 0.2 if metric in ("dot", "cosine") else None,
        "reorder": max(2 * k, int(math.ceil(100 * math.sqrt(k)))),
        "reorder_quantize": "float32",
    }


