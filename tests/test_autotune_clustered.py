"""The recall standard error when tuning queries come in groups (issue 16): queries whose best
partition is the same share its leaf coverage, so a leaves setting's recall varies between query
samples by more than independent queries would suggest. Synthetic statistics with a known
population: every query of a group has the same true neighbours' partition ranks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from annlib.autotune import solver as so
from annlib.autotune import statistics as st
from annlib.autotune.cost_model import CostModel

K, GROUPS, PER_GROUP, LEAVES = 10, 25, 8, 60
MODEL = CostModel(fixed=2e-6, per_center=0.0, per_leaf=4e-7, per_entry=1e-8, per_reorder=0.0, num_leaves=LEAVES)


def _population(seed=0, size=2000):
    """Per group: the partition rank of each of its K true neighbours (1 = the query's own partition)."""
    rng = np.random.default_rng(seed)
    spread = rng.uniform(1.0, 20.0, size)[:, None]  # some groups sit near partition borders
    return np.minimum(1 + np.floor(rng.exponential(spread, (size, K))).astype(np.int64), LEAVES)


def _stats(leaf_ranks: np.ndarray, group: np.ndarray, clustered: bool) -> st.QueryStatistics:
    grid = np.arange(1, LEAVES + 1, dtype=np.int64)
    nq = len(leaf_ranks)
    probed = leaf_ranks[:, :, None] <= grid[None, None, :]
    ah_rank = np.where(probed, 1, 251).astype(np.int32)  # every probed neighbour survives the AH stage
    return st.QueryStatistics(
        k=K, t1_grid=grid, leaf_rank=leaf_ranks, ah_rank=ah_rank,
        entries=np.tile(grid * 100.0, (nq, 1)), valid=np.ones((nq, K), bool), max_rank=250,
        num_leaves=LEAVES, source="user", seconds=0.0, query_leaf=group if clustered else None)


def _draw(population, rng):
    groups = rng.choice(len(population), GROUPS, replace=False)
    group = np.repeat(groups, PER_GROUP)
    return population[group], group


def test_independent_queries_keep_the_usual_error():
    rng = np.random.default_rng(1)
    per_query = rng.uniform(0, 1, (50, 3, 4))
    usual = per_query.std(axis=0, ddof=1) / np.sqrt(50)
    np.testing.assert_allclose(so.recall_stderr(per_query, np.arange(50)), usual, rtol=1e-12)
    np.testing.assert_allclose(so.recall_stderr(per_query, None), usual, rtol=1e-12)


def test_clustered_error_matches_the_spread_between_query_samples():
    population = _population()
    rng = np.random.default_rng(2)
    j = 2  # three leaves: recall is the leaf coverage there
    means, clustered, independent = [], [], []
    for _ in range(300):
        ranks, group = _draw(population, rng)
        s = so.surface(_stats(ranks, group, True), MODEL, None)
        means.append(s.recall[j, 0])
        clustered.append(s.stderr[j, 0])
        independent.append(so.surface(_stats(ranks, group, False), MODEL, None).stderr[j, 0])
    spread = np.std(means, ddof=1)
    assert 0.8 * spread <= np.median(clustered) <= 1.25 * spread
    assert np.median(independent) < 0.5 * spread  # eight queries per group count as eight


@pytest.mark.parametrize("target", [0.80, 0.90])
def test_choices_meet_the_population_recall(target):
    """A one-standard-error margin should leave about one choice in six short of the target on the
    population (a normal tail); with the independent error, a third of the choices sit on a lucky
    sample's leaf coverage."""
    population = _population()
    coverage = np.array([(population <= t).mean() for t in range(1, LEAVES + 1)])  # population recall per t1
    rng = np.random.default_rng(3)
    short = {True: 0, False: 0}
    draws = 200
    for _ in range(draws):
        ranks, group = _draw(population, rng)
        for clustered in (True, False):
            sol = so.solve_for_recall(so.surface(_stats(ranks, group, clustered), MODEL, None), target, 1.0, adapt=False)
            short[clustered] += coverage[sol.j] < target
    assert short[True] <= 0.2 * draws
    assert short[False] >= 2 * short[True]
