"""Training stages of the quantization index: k-means and anisotropic PQ (algorithms.md 1 and 3).

Specifications checked against numpy on seeded data and, when present, the real 384-d angular set.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from annlib import _core

# Subset sizes keep the file fast on two cores.
KMEANS_N = 6000
KMEANS_K = 48
PQ_N = 4000
PQ_PARTITIONS = 16
# The anisotropy of the real-data check: eta = 4, i.e. T = ||x|| sqrt(eta / (d - 1 + eta)) (algorithms.md 1.1).
ETA = 4.0


def _threshold_for_eta(eta: float, dim: int, norm: float = 1.0) -> float:
    return norm * math.sqrt(eta / (dim - 1 + eta))


def _sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    x64, c64 = x.astype(np.float64), c.astype(np.float64)
    return (x64**2).sum(1)[:, None] + (c64**2).sum(1)[None, :] - 2.0 * x64 @ c64.T


def _distortion(x: np.ndarray, centers: np.ndarray) -> float:
    return float(_sq_dists(x, centers).min(axis=1).sum())


def _nearest_codes(cb: np.ndarray, dims_per_block: int, r: np.ndarray) -> np.ndarray:
    """Nearest-codeword PQ encoding in numpy (the isotropic reference)."""
    dim = r.shape[1]
    codes = []
    for off in range(0, dim, dims_per_block):
        bd = min(dims_per_block, dim - off)
        words = cb[16 * off : 16 * off + 16 * bd].reshape(16, bd)
        d2 = ((r[:, None, off : off + bd].astype(np.float64) - words[None].astype(np.float64)) ** 2).sum(-1)
        codes.append(d2.argmin(axis=1))
    return np.stack(codes, axis=1).astype(np.uint8)


@pytest.fixture(scope="module")
def minilm_subset(request):
    data = request.getfixturevalue("debian_minilm")
    return np.ascontiguousarray(data["train"][:KMEANS_N])


# --- k-means -------------------------------------------------------------------------------------------------


def test_kmeans_deterministic_for_seed_and_threads(minilm_subset):
    x = minilm_subset
    one = _core.train_kmeans(x, KMEANS_K, 12, False, 7, 1, 1)
    two = _core.train_kmeans(x, KMEANS_K, 12, False, 7, 1, 2)
    again = _core.train_kmeans(x, KMEANS_K, 12, False, 7, 1, 2)
    other_seed = _core.train_kmeans(x, KMEANS_K, 12, False, 8, 1, 2)
    assert one.shape == (KMEANS_K, x.shape[1])
    assert one.dtype == np.float32
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(two, again)
    assert not np.array_equal(one, other_seed)


def test_kmeans_init_picks_sample_points(rng):
    x = rng.standard_normal((500, 8)).astype(np.float32)
    init = _core.train_kmeans(x, 10, 0, False, 3, 1, 2)
    matches = (init[:, None, :] == x[None, :, :]).all(-1)
    assert matches.any(axis=1).all()
    assert len({tuple(row) for row in init}) == 10


def test_kmeans_lowers_distortion_and_fills_every_cluster(minilm_subset):
    x = minilm_subset
    init = _core.train_kmeans(x, KMEANS_K, 0, False, 1, 1, 2)
    trained = _core.train_kmeans(x, KMEANS_K, 12, False, 1, 1, 2)
    assert _distortion(x, trained) < 0.97 * _distortion(x, init)
    assignment, _ = _core.assign_to_centers(x, trained, 2)
    assert np.bincount(assignment, minlength=KMEANS_K).min() >= 1


def test_kmeans_min_cluster_size_reseeds_small_clusters(minilm_subset):
    # Re-seeding is best effort (a split made in the last round is not re-balanced), so the floor is loose.
    x = minilm_subset
    min_size = 60  # about half the mean cluster size
    plain = _core.train_kmeans(x, KMEANS_K, 12, False, 0, 1, 2)
    floored = _core.train_kmeans(x, KMEANS_K, 12, False, 0, min_size, 2)
    plain_min = np.bincount(_core.assign_to_centers(x, plain, 2)[0], minlength=KMEANS_K).min()
    floored_min = np.bincount(_core.assign_to_centers(x, floored, 2)[0], minlength=KMEANS_K).min()
    assert plain_min < min_size
    assert floored_min >= 0.8 * min_size


def test_assign_to_centers_matches_numpy(minilm_subset, rng):
    x = minilm_subset[:2000]
    centers = _core.train_kmeans(minilm_subset, KMEANS_K, 4, False, 2, 1, 2)
    assignment, sq_dist = _core.assign_to_centers(x, centers, 2)
    assert assignment.dtype == np.int32
    assert sq_dist.dtype == np.float32
    d2 = _sq_dists(x, centers)
    best = d2.min(axis=1)
    np.testing.assert_allclose(d2[np.arange(len(x)), assignment], best, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sq_dist, best, rtol=1e-4, atol=1e-5)
    assert (assignment == d2.argmin(axis=1)).mean() > 0.995


@pytest.mark.parametrize("dim", [1, 2, 5, 16, 17, 33])
def test_assign_to_centers_small_and_odd_dims(rng, dim):
    x = rng.standard_normal((700, dim)).astype(np.float32)
    centers = rng.standard_normal((19, dim)).astype(np.float32)
    assignment, sq_dist = _core.assign_to_centers(x, centers, 2)
    d2 = _sq_dists(x, centers)
    np.testing.assert_array_equal(assignment, d2.argmin(axis=1))
    np.testing.assert_allclose(sq_dist, d2.min(axis=1), rtol=1e-4, atol=1e-4)


def test_spherical_kmeans_centers_have_unit_norm(minilm_subset):
    centers = _core.train_kmeans(minilm_subset, KMEANS_K, 6, True, 0, 1, 2)
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, atol=1e-5)


def test_kmeans_rejects_fewer_points_than_centers(rng):
    x = rng.standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="fewer than num_centers"):
        _core.train_kmeans(x, 11, 5, False, 0, 1, 1)
    with pytest.raises(ValueError, match="positive"):
        _core.train_kmeans(x, 0, 5, False, 0, 1, 1)


# --- anisotropic PQ ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "dim", "eta"),
    [(0.1, 100, 1.0), (0.15, 100, 2.2788), (0.2, 100, 4.125), (0.3, 100, 9.79), (0.1, 200, 2.0101), (0.2, 768, 31.958)],
)
def test_parallel_cost_multiplier_worked_values(threshold, dim, eta):
    assert _core.parallel_cost_multiplier(threshold, 1.0, dim) == pytest.approx(eta, abs=5e-3)


def test_parallel_cost_multiplier_edges():
    assert _core.parallel_cost_multiplier(float("nan"), 1.0, 100) == 1.0
    assert _core.parallel_cost_multiplier(0.0, 1.0, 100) == 1.0
    assert _core.parallel_cost_multiplier(-0.5, 1.0, 100) == 1.0
    big = _core.parallel_cost_multiplier(1.5, 1.0, 100)
    assert math.isfinite(big)
    assert big >= 1e5
    assert _core.parallel_cost_multiplier(0.3, 0.0, 100) == big
    # The inverse formula T = ||x|| sqrt(eta / (d - 1 + eta)) at a non-unit norm.
    assert _core.parallel_cost_multiplier(_threshold_for_eta(ETA, 384, 3.0), 9.0, 384) == pytest.approx(ETA)


@pytest.mark.parametrize(("dim", "dims_per_block"), [(12, 2), (10, 3), (7, 7)])
def test_isotropic_encoding_is_nearest_codeword(rng, dim, dims_per_block):
    r = rng.standard_normal((1500, dim)).astype(np.float32)
    cb = _core.train_pq(r, dims_per_block, 8, 0, 2)
    num_blocks = -(-dim // dims_per_block)
    assert cb.shape == (16 * dim,)
    codes = _core.encode_pq(cb, dims_per_block, r, r, float("nan"), 2)
    assert codes.shape == (len(r), num_blocks)
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, _nearest_codes(cb, dims_per_block, r))
    # Threshold <= 0 is isotropic too; decode is the per-block codeword lookup.
    np.testing.assert_array_equal(_core.encode_pq(cb, dims_per_block, r, r, 0.0, 1), codes)
    decoded = _core.decode_pq(cb, dims_per_block, codes)
    for k, off in enumerate(range(0, dim, dims_per_block)):
        bd = min(dims_per_block, dim - off)
        words = cb[16 * off : 16 * off + 16 * bd].reshape(16, bd)
        np.testing.assert_array_equal(decoded[:, off : off + bd], words[codes[:, k]])


def test_train_pq_and_encode_independent_of_threads(rng):
    r = rng.standard_normal((800, 20)).astype(np.float32)
    x = r + 1.0
    cb1 = _core.train_pq(r, 4, 6, 5, 1)
    cb2 = _core.train_pq(r, 4, 6, 5, 2)
    np.testing.assert_array_equal(cb1, cb2)
    t = _threshold_for_eta(ETA, 20, float(np.linalg.norm(x, axis=1).mean()))
    np.testing.assert_array_equal(_core.encode_pq(cb1, 4, r, x, t, 1), _core.encode_pq(cb1, 4, r, x, t, 2))


def test_anisotropic_encoding_trades_plain_error_for_score_aware_loss(debian_minilm):
    x = np.ascontiguousarray(debian_minilm["train"][:PQ_N])
    dim = x.shape[1]
    centers = _core.train_kmeans(x, PQ_PARTITIONS, 8, True, 0, 1, 2)
    assignment, _ = _core.assign_to_centers(x, centers, 2)
    base = centers[assignment]
    residuals = np.ascontiguousarray(x - base)
    cb = _core.train_pq(residuals, 2, 8, 0, 2)
    threshold = _threshold_for_eta(ETA, dim)  # unit vectors: ~0.10, where T = 0.2 would give eta ~ 16
    assert _core.parallel_cost_multiplier(threshold, 1.0, dim) == pytest.approx(ETA)

    iso = base + _core.decode_pq(cb, 2, _core.encode_pq(cb, 2, residuals, x, float("nan"), 2))
    aniso = base + _core.decode_pq(cb, 2, _core.encode_pq(cb, 2, residuals, x, threshold, 2))
    # The core's loss agrees with its definition.
    e = (x - iso).astype(np.float64)
    par = (e * x).sum(1) / np.linalg.norm(x, axis=1)
    expected = float((e**2).sum() + (ETA - 1.0) * (par**2).sum())
    assert _core.score_aware_loss(x, iso, ETA) == pytest.approx(expected, rel=1e-6)

    assert _core.score_aware_loss(x, aniso, ETA) < 0.97 * _core.score_aware_loss(x, iso, ETA)
    assert _core.score_aware_loss(x, aniso, 1.0) > _core.score_aware_loss(x, iso, 1.0)


def test_pq_shape_errors(rng):
    r = rng.standard_normal((100, 8)).astype(np.float32)
    cb = _core.train_pq(r, 2, 2, 0, 1)
    with pytest.raises(ValueError, match="columns"):
        _core.encode_pq(cb, 2, r[:, :6].copy(), r[:, :6].copy(), float("nan"), 1)
    with pytest.raises(ValueError, match="same shape"):
        _core.encode_pq(cb, 2, r, r[:50].copy(), float("nan"), 1)
    with pytest.raises(ValueError, match="at least 16"):
        _core.train_pq(r[:15].copy(), 2, 2, 0, 1)
