"""The autotuner (issue 6): recall targets met on queries not used for tuning, predictions honest,
cost budgets respected, bad targets rejected, and the statistics pass exact."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import annlib
import annlib.autotune as at
from annlib.autotune import statistics as st

K = 10


@pytest.fixture(scope="module")
def sample(request):
    real = request.getfixturevalue("real_sample")
    index = annlib.TreeAhIndex(real["train"], "cosine", num_leaves=100, num_leaves_to_search=10, reorder=100)
    return real, index


def _measure(index, queries, truth, **params):
    result = index.search_batched(queries, K, num_threads=1, **params)
    return annlib.id_recall(result.ids, truth, K)


@pytest.mark.parametrize("target", [0.85, 0.90, 0.95])
def test_target_met_on_held_out_queries(sample, target):
    real, index = sample
    tuning = index.autotune(target, set_default=False)  # tuned on held-out train points
    assert tuning.tuning_queries_source == "held-out sample" and tuning.num_tuning_queries == 1000
    assert not tuning.best_effort and tuning.predicted_recall >= target
    measured = _measure(index, real["test"], real["neighbors"], **tuning.params)  # test queries: never tuned on
    assert measured >= target - 0.01, (tuning, measured)
    assert abs(tuning.predicted_recall - measured) <= 0.02, (tuning, measured)


def test_user_queries_and_set_default(sample):
    real, index = sample
    test, truth = real["test"], real["neighbors"]
    tuning = index.autotune(0.9, queries=test[0::2])
    assert tuning.tuning_queries_source == "user" and tuning.num_tuning_queries == 100
    assert index.config["tree"]["num_leaves_to_search"] == tuning.leaves_to_search
    assert index.config["reorder"]["num_neighbors"] == tuning.pre_reorder_num_neighbors
    # the model is exact on its own tuning queries ...
    on_tuning = annlib.id_recall(index.search_batched(test[0::2]).ids, truth[0::2], K)  # the new defaults
    assert abs(on_tuning - tuning.predicted_recall) <= 0.005
    # ... and generalises within the sampling band of 100 validation queries
    assert annlib.id_recall(index.search_batched(test[1::2]).ids, truth[1::2], K) >= 0.9 - 0.04
    index.set_search_defaults(leaves_to_search=10, pre_reorder_num_neighbors=100)


def test_frontier_is_monotone(sample):
    _, index = sample
    # One cost model for the whole test: with it nothing is timed (no near-ties decided by the
    # clock), so the choice is the model's cheapest admitted setting.
    model = index.autotune(0.9, set_default=False).cost_model
    tuning = index.autotune(0.9, set_default=False, cost_model=model)
    costs = [p.cost for p in tuning.frontier]
    recalls = [p.recall for p in tuning.frontier]
    assert len(tuning.frontier) >= 5
    assert costs == sorted(costs) and recalls == sorted(recalls)
    assert tuning.predicted_recall >= 0.9
    # A cheaper point of the frontier is short of the target or within the safety margin of it
    # (at most one standard error, of about the choice's size); one clear of it would be admitted.
    cheaper = [p for p in tuning.frontier if p.cost < tuning.predicted_cost - 1e-15]
    assert all(p.recall < 0.9 + 2 * tuning.predicted_recall_stderr for p in cheaper)


def test_cost_budget_is_respected(sample):
    """On one cost model, the budget that the 0.90 setting costs buys a setting within it whose
    recall is at least that setting's (the budget solve maximises recall under the cost). A model
    timed again would compare the two on different clocks: on a busy machine the second fit put
    every setting above the first's budget but the cheapest (recall 0.72)."""
    _, index = sample
    reference = index.autotune(0.9, set_default=False)
    budget = reference.predicted_cost
    tuning = index.autotune(max_cost=budget, set_default=False, cost_model=reference.cost_model)
    assert tuning.cost_model is reference.cost_model
    assert tuning.predicted_cost <= budget
    assert tuning.predicted_recall >= reference.predicted_recall - 0.005


def test_cost_model_of_another_index_or_mode_is_refused(sample, real_sample):
    _, index = sample
    model = index.autotune(0.9, set_default=False).cost_model
    other = annlib.TreeAhIndex(real_sample["train"], "cosine", num_leaves=50, num_leaves_to_search=5, reorder=50)
    with pytest.raises(annlib.InvalidValueError, match="50"):
        other.autotune(0.9, set_default=False, cost_model=model)
    with pytest.raises(annlib.InvalidValueError, match="batched"):
        index.autotune(0.9, set_default=False, cost_model=model, mode="batched", num_threads=2)
    with pytest.raises(annlib.InvalidTypeError, match="cost_model"):
        index.autotune(0.9, set_default=False, cost_model={"fixed": 1e-6})


@pytest.mark.parametrize("target", [0.0, -0.1, 1.5, float("nan"), True, "0.9"])
def test_bad_recall_targets_raise(sample, target):
    _, index = sample
    with pytest.raises(ValueError, match="target_recall"):
        index.autotune(target)


def test_budget_below_cheapest_raises(sample):
    _, index = sample
    with pytest.raises(ValueError, match="cheapest setting"):
        index.autotune(max_cost=1e-9, num_tuning_queries=200)
    with pytest.raises(ValueError, match="max_cost"):
        index.autotune(max_cost=-1.0)


def test_unreachable_recall_is_best_effort(sample):
    _, index = sample
    with pytest.warns(at.AutotuneWarning, match="unreachable"):
        tuning = index.autotune(1.0, max_rank=12, num_tuning_queries=300, set_default=False)
    assert tuning.best_effort and "unreachable" in tuning.message
    assert tuning.predicted_recall < 1.0 and "BEST EFFORT" in str(tuning)


def test_statistics_match_the_search(sample):
    """The C++ statistics pass ranks exactly as the index's own search orders its AH candidates."""
    _, index = sample
    tq, truth, exclude, _ = st.tuning_queries(index, None, None, K, num_queries=100)
    fast = st.gather(index, tq, truth, exclude)
    slow = st.gather(index, tq, truth, exclude, t1_grid=fast.t1_grid, force_python=True)
    np.testing.assert_array_equal(fast.ah_rank, slow.ah_rank)
    assert (exclude[:, None] != truth).all()  # the query point is not its own neighbor
    # the model's recall at a grid point is the search's recall on the tuning queries
    j = len(fast.t1_grid) // 2
    t1, t2 = int(fast.t1_grid[j]), 30
    predicted = (fast.ah_rank[:, :, j] <= t2).mean()
    measured = annlib.id_recall(index.search_batched(tq, K + 1, leaves_to_search=t1, pre_reorder_num_neighbors=t2 + 1).ids[:, 1:], truth, K)
    assert abs(predicted - measured) <= 0.01


@pytest.mark.parametrize("metric", ["cosine", "squared_l2"])
def test_ground_truth_is_exact_search(real_sample, metric):
    """The tuner's ground truth, scored in place on the index's own rows and norms, is what exact
    search over the data returns: for the user's queries and for held-out indexed points (each
    without itself), and with ``data=`` given instead."""
    train, test = real_sample["train"][:3000], real_sample["test"][:50]
    index = annlib.TreeAhIndex(train, metric, num_leaves=20, reorder=50)
    exact = annlib.BruteForce(train, metric)
    for data in (None, train):
        _, truth, exclude, source = st.tuning_queries(index, test, data, K)
        assert source == "user" and exclude is None
        np.testing.assert_array_equal(truth, exact.search_batched(test, K).ids)
        _, truth, exclude, _ = st.tuning_queries(index, None, data, K, num_queries=40, seed=5)
        ids = exact.search_batched(train[exclude], K + 1).ids
        assert (ids[:, 0] == exclude).all()  # distinct points: each is its own nearest
        np.testing.assert_array_equal(truth, ids[:, 1:])


def test_user_queries_beyond_the_cap_are_sampled(real_sample):
    """A caller's query log is cut to ``num_tuning_queries`` rows of it, drawn by the seed, each
    with its own exact ground truth: the tuner's exact search grows with its queries, not with the
    log. Up to the cap, every query is used as given."""
    train, test = real_sample["train"][:3000], real_sample["test"]
    index = annlib.TreeAhIndex(train, "cosine", num_leaves=20, reorder=50)
    exact = annlib.BruteForce(train, "cosine")
    picked, truth, _, source = st.tuning_queries(index, test, None, K, num_queries=60, seed=3)
    assert source == "user" and picked.shape == (60, test.shape[1])
    rows = [int(np.flatnonzero((test == row).all(axis=1))[0]) for row in picked]
    assert len(set(rows)) == 60 and rows == sorted(rows)  # distinct rows of the log, in its order
    np.testing.assert_array_equal(truth, exact.search_batched(picked, K).ids)
    again, _, _, _ = st.tuning_queries(index, test, None, K, num_queries=60, seed=3)
    other, _, _, _ = st.tuning_queries(index, test, None, K, num_queries=60, seed=4)
    np.testing.assert_array_equal(again, picked)
    assert not np.array_equal(other, picked)
    whole, _, _, _ = st.tuning_queries(index, test[:60], None, K, num_queries=60)
    np.testing.assert_array_equal(whole, test[:60])
    tuning = index.autotune(0.9, queries=test, num_tuning_queries=60, set_default=False)
    assert tuning.num_tuning_queries == 60 and tuning.tuning_queries_source == "user"


def test_near_ties_are_timed_only_with_a_model_timed_now(sample):
    """The tuner times its model's near-ties when it fitted that model itself, and keeps one that
    meets the target with its margin (never less than half a standard error); a given model times
    nothing."""
    _, index = sample
    measured = index.autotune(0.9, set_default=False, num_tuning_queries=300)
    assert "near_ties" in measured.stage_seconds and "without" not in measured.message
    assert measured.predicted_recall - 0.5 * measured.predicted_recall_stderr >= 0.9 - 1e-12
    given = index.autotune(0.9, set_default=False, num_tuning_queries=300, cost_model=measured.cost_model)
    assert "near_ties" not in given.stage_seconds


def test_build_returns_a_working_index(real_sample):
    train, test, truth = real_sample["train"], real_sample["test"], real_sample["neighbors"]
    index, tuning = annlib.build(train, "cosine", target_recall=0.9, return_tuning=True, num_tuning_queries=500)
    assert isinstance(index, (annlib.TreeAhIndex, annlib.BruteForce))
    ids = index.search_batched(test, K).ids
    assert annlib.id_recall(ids, truth, K) >= 0.89
    if isinstance(index, annlib.TreeAhIndex):
        assert tuning.index_kind == "tree_ah" and index.config["tree"]["num_leaves_to_search"] == tuning.leaves_to_search
    else:
        assert tuning.index_kind == "brute_force" and "exact search" in tuning.message


def test_build_picks_brute_force_on_tiny_data(rng):
    data = rng.standard_normal((500, 16)).astype(np.float32)
    index, tuning = annlib.build(data, "squared_l2", target_recall=0.95, return_tuning=True)
    assert isinstance(index, annlib.BruteForce) and tuning.index_kind == "brute_force"
    assert tuning.predicted_recall == 1.0
    with pytest.raises(ValueError, match="target_recall"):
        annlib.build(data, "dot", target_recall=2.0)


def test_index_without_float_data_needs_data(rng):
    data = rng.standard_normal((3000, 16)).astype(np.float32)
    index = annlib.TreeAhIndex(data, "dot", num_leaves=30, num_leaves_to_search=3, reorder=None)
    with pytest.raises(ValueError, match="data="):
        index.autotune(0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", at.AutotuneWarning)
        tuning = index.autotune(0.9, data=data, num_tuning_queries=300)
    assert tuning.pre_reorder_num_neighbors is None and 1 <= tuning.leaves_to_search <= 30
