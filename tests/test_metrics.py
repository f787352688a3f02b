"""annlib.metrics: ann-benchmarks distance recall and id recall, checked on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from annlib import metrics

INF = np.inf


def test_recall_counts_points_within_kth_true_distance():
    truth = [[0.1, 0.2, 0.3, 0.4]]
    # Returned: the 1st and 3rd true neighbors, then two points beyond the 3rd true distance.
    found = [[0.1, 0.3, 0.35, 0.5]]
    assert metrics.recall(found, truth, k=3) == pytest.approx(2 / 3)
    np.testing.assert_allclose(metrics.recall_per_query(found, truth, k=3), [2 / 3])


def test_recall_tie_at_kth_distance_is_a_hit():
    # Two points tie at the 2nd true distance; the search returned the other one of the pair.
    truth = [[0.1, 0.5, 0.5]]
    found = [[0.1, 0.5]]
    assert metrics.recall(found, truth, k=2) == 1.0


def test_recall_epsilon_slack():
    truth = [[0.1, 0.2]]
    assert metrics.recall([[0.1, 0.2009]], truth, k=2) == 1.0  # within 1e-3
    assert metrics.recall([[0.1, 0.2011]], truth, k=2) == 0.5  # beyond 1e-3
    assert metrics.recall([[0.1, 0.2009]], truth, k=2, epsilon=0.0) == 0.5


def test_recall_worse_points_before_k_are_not_rescued_by_order():
    # Recall looks at the values, not the order: a good point in slot 2 still counts.
    truth = [[1.0, 2.0, 3.0]]
    found = [[9.0, 1.0, 2.0]]
    assert metrics.recall(found, truth, k=3) == pytest.approx(2 / 3)


def test_recall_padding_as_worst_distance_never_counts():
    truth = [[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]]
    found = [[0.1, INF, INF], [1.0, 2.0, 3.0]]
    np.testing.assert_allclose(metrics.recall_per_query(found, truth, k=3), [1 / 3, 1.0])
    assert metrics.recall(found, truth, k=3) == pytest.approx(2 / 3)


def test_recall_nan_never_counts():
    assert metrics.recall([[0.1, np.nan]], [[0.1, 0.2]], k=2) == 0.5


def test_recall_similarity_flips_the_comparison():
    truth = [[0.9, 0.8, 0.7]]  # similarities, larger is better
    found = [[0.9, 0.7995, 0.6, -INF]]  # 0.7995 is within 1e-3 below the 2nd; padding is -inf
    np.testing.assert_allclose(metrics.recall_per_query(found, truth, k=2, larger_is_better=True), [1.0])
    assert metrics.recall(found, truth, k=3, larger_is_better=True) == pytest.approx(2 / 3)
    assert metrics.recall([[0.9, -INF]], [[0.9, 0.8]], k=2, larger_is_better=True) == 0.5
    # The same numbers read as distances would all be "within" the 2nd-largest threshold.
    assert metrics.recall([[0.6, 0.7]], [[0.9, 0.8]], k=2) == 1.0
    assert metrics.recall([[0.6, 0.7]], [[0.9, 0.8]], k=2, larger_is_better=True) == 0.0


def test_recall_uses_only_first_k_columns():
    truth = [[1.0, 2.0, 3.0, 4.0]]
    found = [[1.0, 9.0, 2.0, 3.0]]
    assert metrics.recall(found, truth, k=2) == 0.5
    assert metrics.recall(found, truth, k=4) == 0.75


def test_recall_matches_loop_reference(rng):
    truth = np.sort(rng.random((40, 20)), axis=1)
    found = np.sort(truth + rng.normal(0, 0.05, truth.shape), axis=1).astype(np.float32)
    k = 10
    expected = [sum(d <= truth[i, k - 1] + 1e-3 for d in found[i, :k]) / k for i in range(truth.shape[0])]
    np.testing.assert_allclose(metrics.recall_per_query(found, truth, k), expected)
    assert metrics.recall(found, truth, k) == pytest.approx(np.mean(expected))


def test_recall_argument_errors():
    with pytest.raises(ValueError, match="same number of queries"):
        metrics.recall([[0.1]], [[0.1], [0.2]], k=1)
    with pytest.raises(ValueError, match="truth_distances must have at least k=3 columns"):
        metrics.recall([[0.1, 0.2, 0.3]], [[0.1, 0.2]], k=3)
    with pytest.raises(ValueError, match="found_distances must have at least k=3 columns"):
        metrics.recall([[0.1, 0.2]], [[0.1, 0.2, 0.3]], k=3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        metrics.recall([[0.1]], [[0.1]], k=0)
    with pytest.raises(ValueError, match="2-D"):
        metrics.recall([0.1], [[0.1]], k=1)
    with pytest.raises(TypeError, match="real"):
        metrics.recall([["a"]], [[0.1]], k=1)


def test_id_recall_overlap():
    truth = [[1, 2, 3, 4], [5, 6, 7, 8]]
    found = [[3, 1, 9, 2], [8, 7, 6, 5]]
    np.testing.assert_allclose(metrics.id_recall_per_query(found, truth, k=3), [2 / 3, 2 / 3])
    np.testing.assert_allclose(metrics.id_recall_per_query(found, truth, k=4), [3 / 4, 1.0])
    assert metrics.id_recall(found, truth, k=4) == pytest.approx(7 / 8)


def test_id_recall_ignores_padding_and_duplicates():
    truth = [[0, 1, 2], [-1, 4, 5]]
    found = [[2, -1, -1], [-1, 4, 4]]
    np.testing.assert_allclose(metrics.id_recall_per_query(found, truth, k=3), [1 / 3, 1 / 3])


def test_id_recall_penalises_ties_broken_differently():
    # ids 2 and 7 tie at the 2nd true distance; distance recall credits either, id recall one.
    truth_ids, truth_dist = [[0, 2, 7]], [[0.1, 0.5, 0.5]]
    found_ids, found_dist = [[0, 7]], [[0.1, 0.5]]
    assert metrics.id_recall(found_ids, truth_ids, k=2) == 0.5
    assert metrics.recall(found_dist, truth_dist, k=2) == 1.0


def test_id_recall_matches_set_reference(rng):
    truth = np.stack([rng.permutation(1000)[:30] for _ in range(50)])
    found = np.where(rng.random((50, 30)) < 0.5, truth, rng.integers(-1, 1000, (50, 30)))
    k = 20
    expected = [len({int(x) for x in found[i, :k] if x >= 0} & {int(x) for x in truth[i, :k]}) / k for i in range(50)]
    np.testing.assert_allclose(metrics.id_recall_per_query(found, truth, k), expected)


def test_id_recall_large_ids_and_int64():
    truth = np.array([[2**40, 5, 7]], dtype=np.int64)
    found = np.array([[7, 2**40, 6]], dtype=np.int64)
    assert metrics.id_recall(found, truth, k=3) == pytest.approx(2 / 3)


def test_id_recall_argument_errors():
    with pytest.raises(TypeError, match="integer"):
        metrics.id_recall([[0.5]], [[1]], k=1)
    with pytest.raises(ValueError, match="same number of queries"):
        metrics.id_recall([[1]], [[1], [2]], k=1)
    with pytest.raises(ValueError, match="at least k=2"):
        metrics.id_recall([[1]], [[1, 2]], k=2)


def test_empty_query_set():
    assert metrics.recall(np.zeros((0, 3)), np.zeros((0, 3)), k=3) == 0.0
    assert metrics.id_recall(np.zeros((0, 3), int), np.zeros((0, 3), int), k=3) == 0.0
