"""Structural parameters of a tree-AH index chosen by trial builds on a sample (issue 16).

The search space of the structure is small and each point costs a build, so it is walked
coordinate by coordinate: the number of leaves (half, once and twice the autopilot's sqrt(n)),
then SOAR spilling (off, lambda 1.0 or 1.5) at the best number of leaves, then the reorder dtype
(float32 or int8). Each trial builds the structure on a sample of the data, with the number of
leaves scaled to keep the points per leaf of the full index, and runs the autotuner on it for
the caller's target: the Lagrangian solve over per-query statistics gives its predicted cost at
the target, and the trial with the lowest predicted cost wins. The int8 reorder trial is checked
against its measured recall on the trial queries (the statistics assume exact reordering).

Trials stop when the time spent plus the next trial and the predicted full build would exceed
the build budget.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import numpy as np

from annlib import metrics as _metrics
from annlib.index import BruteForce, TreeAhIndex

#: Points of the sample trial indexes are built on, and held-out sample points used as trial queries.
TRIAL_SAMPLE = 20_000
TRIAL_QUERIES = 300
LEAF_FACTORS = (1.0, 0.5, 2.0)
SOAR_LAMBDAS = (1.0, 1.5)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial build: its structure, the tuned search setting and what the tuner predicted."""

    structure: dict
    build_seconds: float
    tune_seconds: float
    predicted_cost: float  # inf: the target is not reached
    predicted_recall: float
    measured_recall: float | None
    leaves_to_search: int | None
    pre_reorder_num_neighbors: int | None

    def __str__(self) -> str:
        s = ", ".join(f"{k}={v}" for k, v in self.structure.items() if k in ("num_leaves", "soar_lambda",
                                                                                "reorder_quantize"))
        cost = "unreachable" if math.isinf(self.predicted_cost) else f"{self.predicted_cost * 1e6:.1f} us/query"
        measured = "" if self.measured_recall is None else f", measured {self.measured_recall:.4f}"
        return (f"{s}: {cost} at recall {self.predicted_recall:.4f}{measured} (leaves {self.leaves_to_search}, "
                f"pre_reorder {self.pre_reorder_num_neighbors}); built in {self.build_seconds:.1f} s")


def _trial(sample, metric, structure, queries, truth, target, k, mode, num_threads, seed, soar_lambda,
           tune_kwargs) -> tuple[Trial, TreeAhIndex]:
    from annlib.autotune import AutotuneWarning  # noqa: PLC0415 - the package imports this module

    start = time.perf_counter()
    index = TreeAhIndex(sample, metric, soar_lambda=soar_lambda, seed=seed, num_threads=num_threads, copy=False,
                        **structure)
    built = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AutotuneWarning)
        tuning = index.autotune(target, queries, k=k, data=sample, set_default=False, mode=mode,
                                num_threads=num_threads, seed=seed, **tune_kwargs)
    measured = None
    cost = math.inf if tuning.best_effort else tuning.predicted_cost
    if structure.get("reorder_quantize", "float32") != "float32":
        ids = index.search_batched(queries, k, num_threads=num_threads, **tuning.params).ids
        measured = float(_metrics.id_recall(ids, truth, k))
        if measured < target - tuning.predicted_recall_stderr:
            cost = math.inf  # the approximate reordering loses what the statistics cannot see
    trial = Trial(dict(structure, soar_lambda=soar_lambda), built, time.perf_counter() - start - built, cost,
                  tuning.predicted_recall, measured, tuning.leaves_to_search, tuning.pre_reorder_num_neighbors)
    return trial, index


def search(data: np.ndarray, metric: str, defaults: dict, target: float, k: int, budget: float, *, mode: str,
           num_threads: int, seed: int, queries=None, tune_kwargs=None) -> tuple[dict, float | None, list[Trial]]:
    """(structure for the full data, its soar_lambda, the trials run) within ``budget`` seconds.

    ``defaults`` is the autopilot structure for the full data (:func:`structural_defaults`); the
    returned structure has its keys."""
    start = time.perf_counter()
    tune_kwargs = dict(tune_kwargs or {})
    tune_kwargs.pop("num_tuning_queries", None)
    n = data.shape[0]
    rng = np.random.default_rng(seed)
    if queries is None:
        picked = rng.permutation(n)[: min(n, TRIAL_SAMPLE + TRIAL_QUERIES)]
        trial_queries = data[np.sort(picked[:TRIAL_QUERIES])]
        sample = np.ascontiguousarray(data[np.sort(picked[TRIAL_QUERIES:])])
    else:
        trial_queries = queries[:TRIAL_QUERIES]
        sample = np.ascontiguousarray(data[np.sort(rng.permutation(n)[: min(n, TRIAL_SAMPLE)])])
    m = sample.shape[0]
    truth = BruteForce(sample, metric).search_batched(trial_queries, k).ids
    scale = m / n
    trials: list[Trial] = []

    def leaves_for(full_leaves: int) -> int:
        return int(max(1, min(m // 16, round(full_leaves * scale))))

    def affordable() -> bool:
        if not trials:
            return True
        last = trials[-1]
        full_build = max(t.build_seconds for t in trials) / scale
        return time.perf_counter() - start + last.build_seconds + last.tune_seconds + 1.2 * full_build <= budget

    def run(full_structure, soar_lambda):
        s = dict(full_structure, num_leaves=leaves_for(full_structure["num_leaves"]))
        s["num_leaves_to_search"] = max(1, s["num_leaves"] // 10)
        trial, _ = _trial(sample, metric, s, trial_queries, truth, target, k, mode, num_threads, seed, soar_lambda,
                          tune_kwargs)
        trials.append(dataclasses.replace(trial, structure=dict(full_structure, soar_lambda=soar_lambda)))
        return trial.predicted_cost

    best = (dict(defaults), None)
    best_cost = math.inf
    for factor in LEAF_FACTORS:
        structure = dict(defaults, num_leaves=max(1, int(round(defaults["num_leaves"] * factor))))
        if structure["num_leaves"] > n or not affordable():
            continue
        cost = run(structure, None)
        if cost < best_cost:
            best, best_cost = (structure, None), cost
    for lam in SOAR_LAMBDAS:
        if not affordable():
            break
        cost = run(best[0], lam)
        if cost < best_cost:
            best, best_cost = (best[0], lam), cost
    if defaults.get("reorder") and affordable():
        structure = dict(best[0], reorder_quantize="int8")
        cost = run(structure, best[1])
        if cost < best_cost:
            best, best_cost = (structure, best[1]), cost
    structure, lam = best
    structure = dict(structure, num_leaves_to_search=max(1, structure["num_leaves"] // 10))
    return structure, lam, trials
