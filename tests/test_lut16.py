"""LUT16 packing, LUT quantization and the scan kernels (algorithms.md §2.2-2.4; issue 3).

Every SIMD path must equal the scalar kernel bit for bit (aesthetics §10.9), and the scalar
kernel must equal a numpy reference.
"""

from __future__ import annotations

import numpy as np
import pytest

import annlib
from annlib import _core

ISAS = ("scalar", "avx2", "avx512")
NUM_BLOCKS = (1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 64, 192, 255, 256, 257, 300, 600)
NS = (1, 31, 32, 33, 100, 1000)
LUT_KINDS = ("max", "min", "random")


def reference_scan(codes: np.ndarray, luts: np.ndarray) -> np.ndarray:
    """out[q, p] = sum_k (luts[q, k, codes[p, k]] - 128), in int64."""
    num_blocks = codes.shape[1]
    picked = luts[:, np.arange(num_blocks)[None, :], codes].astype(
        np.int64
    )  # (nq, n, B)
    return (picked - 128).sum(axis=-1)


def make_luts(
    rng: np.random.Generator, kind: str, num_queries: int, num_blocks: int
) -> np.ndarray:
    shape = (num_queries, num_blocks, 16)
    if kind == "max":
        return np.full(shape, 255, dtype=np.uint8)
    if kind == "min":
        return np.zeros(shape, dtype=np.uint8)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def require_isa(isa: str) -> None:
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run the {isa} path")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("num_blocks", NUM_BLOCKS)
def test_scan_matches_scalar_bit_for_bit(rng, isa, num_blocks):
    require_isa(isa)
    for n in NS:
        codes = rng.integers(0, 16, size=(n, num_blocks), dtype=np.uint8)
        packed = _core.pack_lut16_codes(codes)
        for kind in LUT_KINDS:
            for num_queries in (1, 2, 3):
                luts = make_luts(rng, kind, num_queries, num_blocks)
                expected = _core.lut16_scan(packed, n, num_blocks, luts, "scalar")
                got = _core.lut16_scan(packed, n, num_blocks, luts, isa)
                assert got.dtype == np.int32
                assert got.shape == (num_queries, n)
                np.testing.assert_array_equal(
                    got, expected, err_msg=f"n={n} kind={kind} nq={num_queries}"
                )


@pytest.mark.parametrize("num_blocks", (1, 3, 16, 33, 257, 600))
@pytest.mark.parametrize("kind", LUT_KINDS)
def test_scalar_scan_matches_numpy(rng, num_blocks, kind):
    for n in NS:
        codes = rng.integers(0, 16, size=(n, num_blocks), dtype=np.uint8)
        luts = make_luts(rng, kind, 3, num_blocks)
        got = _core.lut16_scan(
            _core.pack_lut16_codes(codes), n, num_blocks, luts, "scalar"
        )
        np.testing.assert_array_equal(got, reference_scan(codes, luts))


@pytest.mark.parametrize("isa", ISAS)
def test_scan_more_queries_than_one_pass(rng, isa):
    require_isa(isa)
    n, num_blocks = 100, 17
    codes = rng.integers(0, 16, size=(n, num_blocks), dtype=np.uint8)
    luts = rng.integers(0, 256, size=(7, num_blocks, 16), dtype=np.uint8)
    got = _core.lut16_scan(_core.pack_lut16_codes(codes), n, num_blocks, luts, isa)
    np.testing.assert_array_equal(got, reference_scan(codes, luts))


@pytest.mark.parametrize("isa", ISAS)
def test_scan_extreme_codes(rng, isa):
    """Codes that hit the table's extreme entries in every block (worst case for 16-bit sums)."""
    require_isa(isa)
    n, num_blocks = 64, 600
    codes = np.where(rng.random((n, num_blocks)) < 0.5, 0, 15).astype(np.uint8)
    luts = np.zeros((2, num_blocks, 16), dtype=np.uint8)
    luts[:, :, 15] = 255
    luts[1] = 255 - luts[1]
    got = _core.lut16_scan(_core.pack_lut16_codes(codes), n, num_blocks, luts, isa)
    np.testing.assert_array_equal(got, reference_scan(codes, luts))


def test_scan_rejects_unknown_or_unsupported_isa(rng):
    codes = rng.integers(0, 16, size=(32, 2), dtype=np.uint8)
    luts = np.zeros((1, 2, 16), dtype=np.uint8)
    packed = _core.pack_lut16_codes(codes)
    with pytest.raises(ValueError, match="neon|unknown|SIMD"):
        _core.lut16_scan(packed, 32, 2, luts, "neon")
    for isa in ISAS:
        if isa not in annlib.supported_isas():
            with pytest.raises(ValueError, match="not supported"):
                _core.lut16_scan(packed, 32, 2, luts, isa)


def test_scan_rejects_mismatched_shapes(rng):
    codes = rng.integers(0, 16, size=(40, 3), dtype=np.uint8)
    packed = _core.pack_lut16_codes(codes)
    with pytest.raises(ValueError, match="packed must have shape"):
        _core.lut16_scan(packed, 100, 3, np.zeros((1, 3, 16), np.uint8), "scalar")
    with pytest.raises(ValueError, match="luts must have shape"):
        _core.lut16_scan(packed, 40, 3, np.zeros((1, 4, 16), np.uint8), "scalar")


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("num_blocks", (1, 2, 7, 192))
def test_pack_unpack_round_trip(rng, n, num_blocks):
    codes = rng.integers(0, 16, size=(n, num_blocks), dtype=np.uint8)
    packed = _core.pack_lut16_codes(codes)
    assert packed.shape == (-(-n // 32) * num_blocks * 16,)
    np.testing.assert_array_equal(
        _core.unpack_lut16_codes(packed, n, num_blocks), codes
    )


def test_pack_layout_by_hand():
    """Group g, block k, byte m: low nibble = code_k(32g + m), high nibble = code_k(32g + m + 16)."""
    n, num_blocks = 40, 2
    p = np.arange(n)
    codes = np.stack([p % 16, (p // 2 + 3) % 16], axis=1).astype(np.uint8)
    packed = _core.pack_lut16_codes(codes)
    assert packed.shape == (2 * num_blocks * 16,)
    expected = np.zeros(64, dtype=np.uint8)
    for g in range(2):
        for k in range(2):
            for m in range(16):
                lo = 32 * g + m
                hi = lo + 16
                low = codes[lo, k] if lo < n else 0  # padding points get code 0
                high = codes[hi, k] if hi < n else 0
                expected[g * 32 + k * 16 + m] = low | (high << 4)
    np.testing.assert_array_equal(packed, expected)
    # Block 0, m=1: point 1 (code 1) low, point 17 (code 1) high.
    assert packed[1] == 0x11
    # Block 1, m=0: point 0 (code 3) low, point 16 (code 11) high.
    assert packed[16] == 0xB3
    # Group 1, block 1, m=1: point 33 (code 3) low, point 49 is padding (code 0) high.
    assert packed[32 + 16 + 1] == 0x03


def test_pack_layout_written_out():
    codes = np.zeros((17, 1), dtype=np.uint8)
    codes[0, 0], codes[1, 0], codes[15, 0], codes[16, 0] = 5, 10, 15, 2
    expected = np.zeros(16, dtype=np.uint8)
    expected[0] = 0x25  # point 0 low nibble, point 16 high nibble
    expected[1] = 0x0A  # point 1; point 17 is padding
    expected[15] = 0x0F  # point 15; point 31 is padding
    np.testing.assert_array_equal(_core.pack_lut16_codes(codes), expected)


def test_pack_rejects_codes_above_15():
    codes = np.zeros((3, 2), dtype=np.uint8)
    codes[2, 1] = 16
    with pytest.raises(ValueError, match="0..15"):
        _core.pack_lut16_codes(codes)


@pytest.mark.parametrize("num_blocks", (1, 7, 192, 600))
@pytest.mark.parametrize("scale", (1e-3, 1.0, 250.0))
def test_quantize_lut16_decode_error(rng, num_blocks, scale):
    lut = (rng.standard_normal((num_blocks, 16)) * scale).astype(np.float32)
    entries, m = _core.quantize_lut16(lut)
    assert entries.dtype == np.uint8
    assert entries.shape == (num_blocks, 16)
    assert m == pytest.approx(127.0 / np.abs(lut).max(), rel=1e-6)
    assert entries.min() >= 1  # round(lut*m) stays within [-127, 127]
    codes = rng.integers(0, 16, size=(500, num_blocks), dtype=np.uint8)
    decoded = reference_scan(codes, entries[None])[0] / m
    exact = lut.astype(np.float64)[np.arange(num_blocks)[None, :], codes].sum(axis=1)
    bound = num_blocks * 0.5 / m
    assert np.abs(decoded - exact).max() <= bound * (1 + 1e-6)


def test_quantize_lut16_zero_table():
    entries, m = _core.quantize_lut16(np.zeros((3, 16), dtype=np.float32))
    assert m == 1.0
    np.testing.assert_array_equal(entries, 128)


def test_quantize_lut16_extremes_map_to_1_and_255():
    lut = np.zeros((2, 16), dtype=np.float32)
    lut[0, 3] = -2.5
    lut[1, 7] = 2.5
    entries, m = _core.quantize_lut16(lut)
    assert m == pytest.approx(127 / 2.5)
    assert entries[0, 3] == 1
    assert entries[1, 7] == 255


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
@pytest.mark.parametrize("num_blocks", [1, 2, 3, 17, 192, 300])
def test_simd_lut_quantization_equals_reference(isa, num_blocks):
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    rng = np.random.default_rng(num_blocks)
    for lut in (
        rng.standard_normal((num_blocks, 16)).astype(np.float32),
        np.zeros((num_blocks, 16), np.float32),
        np.full((num_blocks, 16), -3.5, np.float32),
        (rng.integers(-4, 5, size=(num_blocks, 16)) * 0.5).astype(np.float32),  # exact .5 ties: round to even
    ):
        ref_bytes, ref_m = _core.quantize_lut16(lut)
        got_bytes, got_m = _core.quantize_lut16(lut, isa)
        assert got_m == ref_m
        np.testing.assert_array_equal(got_bytes, ref_bytes)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize(("dim", "dims_per_block"), [(1, 1), (7, 2), (16, 2), (33, 4), (384, 2), (100, 3)])
def test_simd_lut_building_matches_scalar(isa, dim, dims_per_block):
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    rng = np.random.default_rng(dim * 31 + dims_per_block)
    query = rng.standard_normal(dim).astype(np.float32)
    codebook = rng.standard_normal(16 * dim).astype(np.float32)
    scalar = _core.build_lut(query, codebook, dims_per_block, "scalar")
    simd = _core.build_lut(query, codebook, dims_per_block, isa)
    # each entry sums <= dims_per_block products: FMA vs multiply-then-add differ by a few ulp
    np.testing.assert_allclose(simd, scalar, rtol=1e-5, atol=1e-5 * dims_per_block)
    # and the scalar table is the definition: <query block, codeword>
    start = 0
    for k in range(scalar.shape[0]):
        width = min(dims_per_block, dim - start)
        words = codebook[16 * start : 16 * (start + width)].reshape(16, width)
        np.testing.assert_allclose(scalar[k], words @ query[start : start + width], rtol=1e-5, atol=1e-5)
        start += width


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_greater_mask_kernel(isa):
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    rng = np.random.default_rng(5)
    for cutoff in (-(2**31), -5, 0, 7, 2**31 - 1):
        values = rng.integers(-10, 10, size=32).astype(np.int32)
        values[3] = cutoff
        want = sum(1 << i for i, v in enumerate(values) if v > cutoff)
        assert _core.greater_mask32(values, cutoff, isa) == want


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_l2_mask_kernel(isa):
    """Bit i of group g: (2<q,c> + sums[p] * 2/m) - ||x~_p||^2 >= threshold, p = 32 g + i, rounded step by step in float32."""
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    rng = np.random.default_rng(11)
    for trial in range(30):
        groups = 1 + trial % 5
        sums = rng.integers(-20_000, 20_000, size=32 * groups).astype(np.int32)
        norms = rng.uniform(1e4, 5e5, size=32 * groups).astype(np.float32)
        two_bias = np.float32(rng.uniform(1e4, 6e5))
        two_inv_m = np.float32(rng.uniform(1.0, 400.0))
        scores = (two_bias + sums.astype(np.float32) * two_inv_m) - norms  # float32 at every step
        # thresholds at a score itself (the >= edge), between scores, and beyond all of them
        for threshold in (scores[trial % 32], np.float32(np.median(scores)), np.float32(-np.inf), np.float32(np.inf)):
            bits = (scores >= threshold).reshape(groups, 32).astype(np.uint64)
            want = (bits << np.arange(32, dtype=np.uint64)).sum(axis=1)
            got = _core.l2_mask32(sums, norms, float(two_bias), float(two_inv_m), float(threshold), isa)
            np.testing.assert_array_equal(got.astype(np.uint64), want)


def keep_patterns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Which entries a prune keeps: the edges of a leaf, of its groups and of the halves a group's bytes hold."""
    def keep_all_but(*dropped):
        keep = np.ones(n, dtype=np.uint8)
        keep[list(dropped)] = 0
        return keep

    patterns = {
        "all": np.ones(n, dtype=np.uint8),
        "none": np.zeros(n, dtype=np.uint8),
        "first removed": keep_all_but(0),
        "last removed": keep_all_but(n - 1),
        "only the last": (np.arange(n) == n - 1).astype(np.uint8),
        "every other": (np.arange(n) % 2).astype(np.uint8),
        "20% dead": (rng.random(n) >= 0.2).astype(np.uint8),
        "90% dead": (rng.random(n) >= 0.9).astype(np.uint8),
        # whole groups kept before the first removed entry (copied as bytes), and after it
        "first removed after two groups": keep_all_but(min(n - 1, 64)),
        "a group boundary removed": keep_all_but(*[i for i in (31, 32) if i < n]),
        "a half boundary removed": keep_all_but(*[i for i in (15, 16) if i < n]),
        # a whole group gone: the next one lands aligned again
        "the second group removed": np.where((np.arange(n) >= 32) & (np.arange(n) < 64), 0, 1).astype(np.uint8),
    }
    return patterns


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("num_blocks", (1, 2, 3, 4, 5, 7, 8, 9, 192))
def test_keep_moves_the_kept_codes_in_the_packed_layout(rng, isa, num_blocks):
    """lut16_keep gives the bytes of packing the kept entries' codes again, on every path."""
    require_isa(isa)
    for n in (1, 15, 16, 31, 32, 33, 64, 65, 100, 223):
        codes = rng.integers(0, 16, size=(n, num_blocks), dtype=np.uint8)
        packed = _core.pack_lut16_codes(codes)
        for name, keep in keep_patterns(rng, n).items():
            want = _core.pack_lut16_codes(np.ascontiguousarray(codes[keep.astype(bool)]))
            got = _core.lut16_keep(packed, n, num_blocks, keep, isa)
            np.testing.assert_array_equal(got, want, err_msg=f"n={n}, {name}")


def test_keep_rejects_mismatched_shapes(rng):
    packed = _core.pack_lut16_codes(rng.integers(0, 16, size=(40, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="keep must have shape"):
        _core.lut16_keep(packed, 40, 3, np.ones(39, np.uint8), "scalar")
    with pytest.raises(ValueError, match="packed must have shape"):
        _core.lut16_keep(packed, 40, 4, np.ones(40, np.uint8), "scalar")
