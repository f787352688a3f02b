"""The anisotropic PQ encoder: its SIMD kernels against the scalar path on every ISA the CPU runs,
and the float encoder against the scalar double reference it replaced, on real data."""

from __future__ import annotations

import numpy as np
import pytest

from annlib import _core

ISAS = ["scalar", "avx2", "avx512"]


def _require(isa: str) -> None:
    if isa not in _core.supported_isas():
        pytest.skip(f"this CPU does not run {isa}")


def _by_dim(codebook: np.ndarray, dim: int, dims_per_block: int) -> np.ndarray:
    """Codewords as dim x 16 (the kernels' layout)."""
    out = np.empty((dim, 16), dtype=np.float32)
    for begin in range(0, dim, dims_per_block):
        width = min(dims_per_block, dim - begin)
        out[begin : begin + width] = codebook[16 * begin : 16 * (begin + width)].reshape(16, width).T
    return np.ascontiguousarray(out)


def _point_loss(codebook, dims_per_block, residuals, originals, threshold, codes) -> np.ndarray:
    """Per point ||e||^2 + (eta - 1) <e, x/||x||>^2, e = r - r~, eta from ||x|| (float64)."""
    e = residuals.astype(np.float64) - _core.decode_pq(codebook, dims_per_block, codes)
    x = originals.astype(np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    eta = np.array([_core.parallel_cost_multiplier(threshold, s, x.shape[1]) for s in sq])
    par = np.einsum("ij,ij->i", e, x) / np.sqrt(sq)
    return np.einsum("ij,ij->i", e, e) + (eta - 1.0) * par**2


# ---------------------------------------------------------------------------- kernels vs scalar


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dim, dims_per_block", [(384, 2), (128, 4), (37, 3), (20, 1), (9, 16)])
def test_pq_tables_kernel_matches_scalar_bits(isa, dim, dims_per_block, rng):
    _require(isa)
    codebook = rng.standard_normal(16 * dim).astype(np.float32)
    by_dim = _by_dim(codebook, dim, dims_per_block)
    for _ in range(5):
        r = rng.standard_normal(dim).astype(np.float32)
        x = (r + rng.standard_normal(dim)).astype(np.float32)
        inv_norm = float(1.0 / np.linalg.norm(x))
        for original in (x, None):
            want = _core.pq_tables(r, original, by_dim, dims_per_block, inv_norm, "scalar")
            got = _core.pq_tables(r, original, by_dim, dims_per_block, inv_norm, isa)
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)
    # Against float64 and the nearest codeword: the scalar path computes what kernels.h says.
    rn, par, nearest = _core.pq_tables(r, x, by_dim, dims_per_block, inv_norm, isa)
    num_blocks = -(-dim // dims_per_block)
    for k in range(num_blocks):
        sl = slice(k * dims_per_block, min(dim, (k + 1) * dims_per_block))
        e = r[sl].astype(np.float64)[None, :] - by_dim[sl].T
        np.testing.assert_allclose(rn[k], (e**2).sum(1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(par[k], e @ x[sl] * inv_norm, rtol=1e-4, atol=1e-5)
        assert nearest[k] == int(np.argmin(rn[k]))


@pytest.mark.parametrize("isa", ISAS)
def test_pq_tables_nearest_takes_the_lowest_of_tied_codewords(isa):
    _require(isa)
    dim = 4
    by_dim = np.zeros((dim, 16), dtype=np.float32)
    by_dim[:, [3, 9, 12]] = 1.0  # three codewords at the same distance
    by_dim[:, [0, 1, 2]] = 5.0
    _, _, nearest = _core.pq_tables(np.ones(dim, np.float32), None, by_dim, 2, 1.0, isa)
    np.testing.assert_array_equal(nearest, [3, 3])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("num_blocks", [1, 7, 16, 17, 192, 300])
def test_pq_order_kernel_is_the_stable_descending_sort(isa, num_blocks, rng):
    _require(isa)
    rn = rng.random((num_blocks, 16)).astype(np.float32)
    rn[rng.random((num_blocks, 16)) < 0.2] = 0.0  # zeros: the largest key
    code = rng.integers(0, 16, num_blocks).astype(np.uint8)
    # Ties between blocks: copy some blocks' current norms onto others.
    if num_blocks > 4:
        for k in rng.choice(num_blocks, num_blocks // 3):
            j = int(rng.integers(num_blocks))
            rn[k, code[k]] = rn[j, code[j]]
    keys = rn[np.arange(num_blocks), code]
    want = np.argsort(-keys.astype(np.float64), kind="stable")
    np.testing.assert_array_equal(_core.pq_order(rn, code, isa), want)


def _descent_case(rng, num_blocks):
    rn = (rng.random((num_blocks, 16)) * 0.01).astype(np.float32)
    par = (rng.standard_normal((num_blocks, 16)) * 0.01).astype(np.float32)
    code = rn.argmin(1).astype(np.uint8)
    p = np.float32(0.0)
    for k in range(num_blocks):
        p = np.float32(p + par[k, code[k]])
    order = np.argsort(-rn[np.arange(num_blocks), code].astype(np.float64), kind="stable").astype(np.uint32)
    return rn, par, order, float(p), code


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("eta", [1.5, 16.0, 1e6])
def test_pq_descent_kernel_matches_scalar_codes(isa, eta, rng):
    _require(isa)
    moved = 0
    for num_blocks in (1, 5, 64, 192):
        for _ in range(10):
            rn, par, order, p, code = _descent_case(rng, num_blocks)
            want = _core.pq_descent(rn, par, order, eta, p, 10, code, "scalar")
            np.testing.assert_array_equal(_core.pq_descent(rn, par, order, eta, p, 10, code, isa), want)
            moved += int((want != code).sum())
    assert moved > 0  # the cases exercise moves, not only the nearest-codeword start


@pytest.mark.parametrize("isa", ISAS)
def test_pq_descent_follows_the_documented_step(isa, rng):
    """One round by hand in float32 (kernels.h) gives the kernel's codes."""
    _require(isa)
    rn, par, order, p, code = _descent_case(rng, 24)
    eta = np.float32(16.0)
    want, pf = code.copy(), np.float32(p)
    for k in order:
        old = want[k]
        p_new = (pf - par[k, old]) + par[k]
        d_par = p_new * p_new - pf * pf
        delta = eta * d_par + ((rn[k] - rn[k, old]) - d_par)
        ok = (d_par <= 0) & (delta < 0)
        ok[old] = False
        if ok.any():
            best = int(np.flatnonzero(ok & (delta == delta[ok].min()))[0])
            pf = np.float32(pf + (par[k, best] - par[k, old]))
            want[k] = best
    np.testing.assert_array_equal(_core.pq_descent(rn, par, order, float(eta), p, 1, code, isa), want)


def test_pq_descent_without_rounds_keeps_the_start(rng):
    rn, par, order, p, code = _descent_case(rng, 16)
    np.testing.assert_array_equal(_core.pq_descent(rn, par, order, 16.0, p, 0, code, "scalar"), code)


# ---------------------------------------------------------------------------- encoder vs reference


@pytest.mark.parametrize("isa", ISAS)
def test_encode_pq_same_codes_on_every_isa(isa, rng):
    _require(isa)
    r = rng.standard_normal((700, 70)).astype(np.float32)
    x = (r + rng.standard_normal((700, 70))).astype(np.float32)
    cb = _core.train_pq(r, 3, 5, 1, 2)
    for threshold in (float("nan"), 2.0, 5.0):
        want = _core.encode_pq(cb, 3, r, x, threshold, 2, isa="scalar")
        np.testing.assert_array_equal(_core.encode_pq(cb, 3, r, x, threshold, 2, isa=isa), want)


@pytest.fixture(scope="module")
def minilm_residuals(debian_minilm):
    """MiniLM rows 40k..50k (normalised) and their residuals to a 224-leaf k-means tree of rows 0..40k,
    with a PQ codebook (2 dims per block) trained on those residuals: what an add encodes."""
    data = debian_minilm["train"]
    data = data / np.linalg.norm(data, axis=1, keepdims=True)
    base = np.ascontiguousarray(data[:40_000])
    centers = _core.train_kmeans(base[::4].copy(), 224, 8, True, 0, 1, 2)
    primary, _ = _core.assign_to_centers(base, centers, 2)
    codebook = _core.train_pq(np.ascontiguousarray(base[::2] - centers[primary[::2]]), 2, 10, 0, 2)
    x = np.ascontiguousarray(data[40_000:])
    leaf, _ = _core.assign_to_centers(x, centers, 2)
    return codebook, np.ascontiguousarray(x - centers[leaf]), x


# Measured on the MiniLM residuals (10,000 points x 192 blocks): identical codes for every point at
# T = 0.2 and for all but one at T = 0.5; the floors leave room for a few more float-rounding ties.
@pytest.mark.parametrize("threshold, floor", [(0.2, 0.999), (0.5, 0.999), (float("nan"), 0.999)])
def test_encoder_matches_the_double_reference_on_real_data(minilm_residuals, threshold, floor):
    codebook, residuals, x = minilm_residuals
    ref = _core.encode_pq(codebook, 2, residuals, x, threshold, 2, reference=True)
    new = _core.encode_pq(codebook, 2, residuals, x, threshold, 2)
    identical = float(np.all(new == ref, axis=1).mean())
    assert identical >= floor, identical
    assert float((new == ref).mean()) >= 0.9999
    t = 0.0 if np.isnan(threshold) else threshold  # NaN: the isotropic loss, eta = 1
    loss_ref = _point_loss(codebook, 2, residuals, x, t, ref).sum()
    loss_new = _point_loss(codebook, 2, residuals, x, t, new).sum()
    assert loss_new <= loss_ref * (1 + 1e-6)


def test_encoder_matches_the_reference_on_large_norms(rng):
    """SIFT-like magnitudes (integers up to ~200, norms ~500) with an anisotropic threshold."""
    x = np.floor(rng.gamma(0.6, 40.0, (3000, 64))).astype(np.float32)
    centers = _core.train_kmeans(x, 16, 5, False, 0, 1, 2)
    leaf, _ = _core.assign_to_centers(x, centers, 2)
    r = np.ascontiguousarray(x - centers[leaf])
    cb = _core.train_pq(r, 2, 8, 0, 2)
    threshold = float(np.median(np.linalg.norm(x, axis=1))) * 0.5
    ref = _core.encode_pq(cb, 2, r, x, threshold, 2, reference=True)
    new = _core.encode_pq(cb, 2, r, x, threshold, 2)
    assert float(np.all(new == ref, axis=1).mean()) >= 0.995
    assert _point_loss(cb, 2, r, x, threshold, new).sum() <= _point_loss(cb, 2, r, x, threshold, ref).sum() * (1 + 1e-6)
