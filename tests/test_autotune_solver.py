"""The autotuner's solve on model surfaces built by hand (issue 16): the safety margin is sized by
the frontier's slope at the target, and the fitted cost model's non-negative least squares is exact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from annlib.autotune import cost_model as cm
from annlib.autotune import solver as so


def _surface(recall, cost, stderr=0.01):
    recall = np.asarray(recall, dtype=np.float64)[None, :]
    cost = np.asarray(cost, dtype=np.float64)[None, :]
    t2 = np.arange(10, 10 + recall.shape[1], dtype=np.int64)
    return so.Surface(np.array([1]), t2, recall, np.full_like(recall, stderr), cost)


def test_full_margin_where_it_is_cheap():
    # Recall climbs fast with cost: one standard error (0.01) above the target costs 2% more.
    s = _surface([0.80, 0.805, 0.81, 0.815, 0.82], [1.00, 1.01, 1.02, 1.03, 1.04])
    sol = so.solve_for_recall(s, 0.80, 1.0)
    assert s.recall[0, sol.i] - s.stderr[0, sol.i] >= 0.80 and s.cost[0, sol.i] == 1.02
    assert "margin of 1.00" in sol.message


def test_margin_shrinks_where_the_frontier_is_flat():
    # Each 0.002 of recall costs 5%: the full margin would cost 10% over half of it; the solve
    # takes the largest margin within 5% of the half margin's cost, never less than half.
    recall = [0.800, 0.802, 0.804, 0.806, 0.808, 0.810, 0.812]
    cost = [1.0 * 1.05**i for i in range(7)]
    s = _surface(recall, cost)
    sol = so.solve_for_recall(s, 0.80, 1.0)
    half = so.solve_for_recall(s, 0.80, 0.5, adapt=False)
    full = so.solve_for_recall(s, 0.80, 1.0, adapt=False)
    assert s.cost[0, full.i] > 1.09 * s.cost[0, half.i]
    assert s.cost[0, half.i] <= s.cost[0, sol.i] <= (1 + so.MARGIN_COST) * s.cost[0, half.i]
    assert s.recall[0, sol.i] - 0.5 * 0.01 >= 0.80


def test_no_margin_asked_means_none():
    s = _surface([0.79, 0.80, 0.81], [1.0, 2.0, 3.0])
    assert so.solve_for_recall(s, 0.80, 0.0).i == 1


@pytest.mark.parametrize("seed", range(5))
def test_nnls_matches_an_exhaustive_check(seed):
    """The cost fit's non-negative least squares: no feasible coefficient vector nearby fits better."""
    rng = np.random.default_rng(seed)
    x = np.c_[np.ones(6), rng.uniform(1, 100, 6), rng.uniform(100, 1e4, 6), rng.uniform(10, 3000, 6)]
    y = x @ rng.normal(0, 1e-8, 4) + rng.uniform(1e-6, 1e-5, 6)
    coef = cm._nnls(x, y)
    assert (coef >= 0).all()
    w = 1 / np.abs(y)
    best = np.sum(((x @ coef - y) * w) ** 2)
    for _ in range(2000):
        trial = np.maximum(coef + rng.normal(0, 1, 4) * np.maximum(coef, 1e-10) * 0.1, 0)
        assert np.sum(((x @ trial - y) * w) ** 2) >= best - 1e-12


def test_cost_fit_is_not_thrown_by_a_remainder_near_zero():
    """Where center scoring is most of a query (a batched search of few leaves), the time left
    after it is near zero, or below zero by timing noise; weighted by the whole query's time,
    that one point cannot zero the fit (it did, weighted by the remainder: a 97% fit error)."""
    true = np.array([2e-6, 4e-7, 5e-10, 2e-8])
    x = np.array([[1, t1, entries, reordered] for t1, entries, reordered in
                  [(4, 700, 50), (10, 1800, 100), (20, 3600, 200), (50, 9000, 600), (79, 14000, 1000), (2, 50, 10)]],
                 dtype=np.float64)
    centers = 3e-5  # per query, timed apart and subtracted
    total = x @ true + centers
    total[-1] = centers * 0.999  # the cheapest setting came out faster than its center scoring
    remainder = total - centers
    coef = cm._nnls(x, remainder, total)
    rel = np.abs(x @ coef + centers - total) / total
    assert np.median(rel) < 0.05
    assert np.max(rel[:-1]) < 0.10


def _two_leaf_settings():
    # MiniLM at 0.95: 19 leaves cover 0.9534, within one standard error of the target; more
    # candidates reach 0.9510 there. 23 leaves reach the target with fewer candidates at 7% more.
    recall = np.array([[0.9440, 0.9490, 0.9510, 0.9525], [0.9480, 0.9508, 0.9530, 0.9560]])
    cost = np.array([[1.00, 1.01, 1.02, 1.04], [1.06, 1.07, 1.08, 1.10]])
    return so.Surface(np.array([19, 23]), np.array([20, 24, 30, 40]), recall, np.full_like(recall, 0.0056), cost)


def test_a_leaves_setting_near_its_coverage_is_judged_like_any_other():
    """Over 12 random splits of MiniLM, asking the full margin over the target of leaves settings
    whose coverage was within one standard error of it (the rule of an earlier session) sent the
    0.95 choice to 22-23 leaves and few candidates, 7-10% slower than 19 leaves with 30: 1 of 12
    cases met both of issue 16's targets, 9 of 12 without that rule, and no more recall missed
    (bench/autotune_feasibility.py). The margin's standard errors already hold the coverage's
    error: the cheapest setting whose estimate reaches the target within the tolerance is taken."""
    sol = so.solve_for_recall(_two_leaf_settings(), 0.95, 1.0, tolerance=0.005)
    assert (sol.j, sol.i) == (0, 2)
    # Without the tolerance, one standard error over the target is out of 19 leaves' reach.
    strict = so.solve_for_recall(_two_leaf_settings(), 0.95, 1.0, adapt=False)
    assert (strict.j, strict.i) == (1, 3)


def test_tolerance_takes_the_point_estimate_where_the_error_is_within_it():
    """A caller who accepts 0.005 under the target on unseen queries: with a standard error of
    0.004, one standard error under the estimate is within that, so the cheapest setting whose
    estimate reaches the target is taken; without the tolerance the margin costs two steps."""
    s = _surface([0.946, 0.950, 0.952, 0.954, 0.956], [1.0, 1.1, 1.2, 1.3, 1.4], stderr=0.004)
    assert so.solve_for_recall(s, 0.95, 1.0, adapt=False, tolerance=0.005).i == 1
    assert so.solve_for_recall(s, 0.95, 1.0, adapt=False, tolerance=0.0).i == 3
    assert "over 0.945" in so.solve_for_recall(s, 0.95, 1.0, adapt=False, tolerance=0.005).message


def test_tolerance_never_admits_an_estimate_under_the_target():
    # 0.9499 with a tiny error is within the tolerance of 0.95 but under it: not admitted.
    s = _surface([0.9499, 0.9501], [1.0, 1.1], stderr=0.0001)
    assert so.solve_for_recall(s, 0.95, 1.0, tolerance=0.005).i == 1


def test_tolerance_only_shortens_a_wide_margin():
    # A standard error of 0.011 (few or varied tuning queries): the margin is 0.011 - 0.005 = 0.006.
    s = _surface([0.800, 0.803, 0.805, 0.806, 0.812], [1.0, 1.1, 1.2, 1.3, 1.4], stderr=0.011)
    assert so.solve_for_recall(s, 0.80, 1.0, adapt=False, tolerance=0.005).i == 3
    assert so.solve_for_recall(s, 0.80, 1.0, adapt=False, tolerance=0.0).i == 4


def test_admission_never_drops_as_candidates_grow():
    """MiniLM at 0.90: eight leaves, a standard error of 0.0078. Every setting of more candidates
    than an admitted one, and so of more recall, is admitted too."""
    recall = np.array([[0.895, 0.9018, 0.9030, 0.9060, 0.9088]])
    s = so.Surface(np.array([8]), np.arange(20, 25), recall, np.full_like(recall, 0.0078),
                   np.array([[1.0, 1.1, 1.2, 1.3, 1.4]]))
    sol = so.solve_for_recall(s, 0.90, 1.0, adapt=False, tolerance=0.005)
    assert sol.i == 2  # 0.9030 - (0.0078 - 0.005) >= 0.90
    assert (np.diff(sol.admitted[0].astype(int)) >= 0).all()


def _tie_surface():
    # One standard error of 0.001 over a target of 0.90 admits recall >= 0.901: per leaves setting
    # (rows) the cheapest admitted costs 1.20, 1.13, 1.16 and 1.32; cheaper cells fall short.
    recall = np.array([[0.80, 0.90, 0.95], [0.88, 0.91, 0.96], [0.89, 0.905, 0.97], [0.85, 0.91, 0.99]])
    cost = np.array([[1.00, 1.10, 1.20], [1.00, 1.13, 1.30], [0.99, 1.16, 1.40], [1.10, 1.32, 1.50]])
    return so.Surface(np.array([4, 5, 6, 7]), np.array([20, 30, 50]), recall, np.full_like(recall, 0.001), cost)


def test_near_ties_are_the_admitted_cheapest_of_other_leaves_within_the_band():
    s = _tie_surface()
    sol = so.solve_for_recall(s, 0.90, 1.0, adapt=False)
    assert (sol.j, sol.i) == (1, 1)
    # 8% over 1.13 is 1.22: six leaves (1.16) and four (1.20) are ties, seven (1.32) is not.
    assert so.near_ties(s, sol, 0.08, 3) == [(1, 1), (2, 1), (0, 2)]
    assert so.near_ties(s, sol, 0.08, 2) == [(1, 1), (2, 1)]
    assert so.near_ties(s, sol, 0.02, 3) == [(1, 1)]
    assert all(s.recall[j, i] - s.stderr[j, i] >= 0.90 for j, i in so.near_ties(s, sol, 1.0, 4))


def test_near_ties_include_the_priors_cheapest_admitted_setting():
    # A fit that priced leaves at nothing: the prior (cost growing with leaves) would take four
    # leaves, 50 candidates, far outside the fit's band; it is timed second, whatever the band.
    s = _tie_surface()
    sol = so.solve_for_recall(s, 0.90, 1.0, adapt=False)
    prior = dataclasses.replace(s, cost=np.array([[1.0, 1.1, 1.2]]) + np.arange(4)[:, None] * 0.5)
    assert so.near_ties(s, sol, 0.02, 3, prior=prior) == [(1, 1), (0, 2)]
    assert so.near_ties(s, sol, 0.08, 3, prior=prior) == [(1, 1), (0, 2), (2, 1)]
    same = dataclasses.replace(s, cost=s.cost * 2)  # the prior agrees with the fit: nothing added
    assert so.near_ties(s, sol, 0.08, 3, prior=same) == so.near_ties(s, sol, 0.08, 3)


class _ClockedIndex:
    """Runs nothing: each search advances a fake clock by its setting's cost per query."""

    def __init__(self, per_query, drift=1.0):
        self.now, self.per_query, self.drift, self.calls = 0.0, per_query, drift, []

    def search_batched(self, queries, k, num_threads, leaves_to_search, pre_reorder_num_neighbors):
        setting = (leaves_to_search, pre_reorder_num_neighbors)
        self.calls.append((setting, len(queries)))
        self.now += self.per_query[setting] * len(queries) * self.drift ** len(self.calls)


def test_fastest_times_the_settings_head_to_head():
    settings = [(5, 30), (6, 30), (4, 50)]
    # The model priced (5, 30) cheapest; the clock says (6, 30), even with every run 10% dearer
    # than the one before (a machine getting busier).
    index = _ClockedIndex({(5, 30): 10e-6, (6, 30): 9e-6, (4, 50): 12e-6}, drift=1.1)
    queries = np.zeros((300, 4), dtype=np.float32)
    pick = cm.fastest(index, queries, 10, settings, [10e-6, 10.4e-6, 10.6e-6], rounds=3, now=lambda: index.now)
    assert pick == 1
    assert [setting for setting, _ in index.calls[:3]] == settings  # round 0 in order, then rotated
    assert [setting for setting, _ in index.calls[3:6]] == settings[1:] + settings[:1]
    assert len({size for _, size in index.calls}) == 1 and len(index.calls) == 9
    even = _ClockedIndex({s: 10e-6 for s in settings})
    assert cm.fastest(even, queries, 10, settings, [10e-6] * 3, now=lambda: even.now) == 0  # ties: the model's


def test_fastest_keeps_to_its_budget():
    # Batched runs need 32 queries: at 0.2 ms a query three rounds of even two settings cost more
    # than three runs of 3 ms each per setting, so nothing is timed and the model's choice stands.
    settings = [(70, 900), (78, 800), (60, 1000)]
    index = _ClockedIndex({s: 2e-4 for s in settings})
    queries = np.zeros((300, 4), dtype=np.float32)
    assert cm.fastest(index, queries, 10, settings, [2e-4] * 3, mode="batched", num_threads=2,
                      now=lambda: index.now) == 0
    assert index.calls == []
