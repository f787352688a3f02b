"""The leaf-major entry tables after builds and writes: _core.leaf_append / leaf_select / leaf_prune against a
plain numpy statement, the arrays a build and an add produce, and the in-place row growth."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import annlib
from annlib import _core
from annlib.index import tree_ah_mutation as mutation
from annlib.index import int8_rows

NB = 5


def _tables(points, leaves, codes, num_leaves, values=None):
    """Leaf-major tables of entries (points, leaves, codes) in numpy: a stable sort by leaf, packed per leaf."""
    order = np.argsort(leaves, kind="stable")
    counts = np.bincount(leaves, minlength=num_leaves)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    groups = np.concatenate([[0], np.cumsum((counts + 31) // 32)]).astype(np.int64)
    packed = np.zeros(int(groups[-1]) * codes.shape[1] * 16, dtype=np.uint8)
    sorted_codes = codes[order]
    for leaf in np.flatnonzero(counts):
        packed[groups[leaf] * codes.shape[1] * 16 : groups[leaf + 1] * codes.shape[1] * 16] = _core.pack_lut16_codes(
            np.ascontiguousarray(sorted_codes[offsets[leaf] : offsets[leaf + 1]]))
    out = {"leaf_offsets": offsets, "leaf_group_offsets": groups, "entry_ids": points[order].astype(np.int32),
           "packed_codes": packed}
    if values is not None:
        out["entry_sq_norms"] = values[order].astype(np.float32)
    return out


def _assert_tables_equal(got, want):
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _entries(rng, count, num_leaves, first_id=0):
    points = np.arange(first_id, first_id + count, dtype=np.int64)
    leaves = rng.integers(0, num_leaves, count).astype(np.int64)
    # skewed leaves: some empty, some with several groups
    leaves[: count // 3] = leaves[: count // 3] % 3
    codes = rng.integers(0, 16, (count, NB)).astype(np.uint8)
    values = rng.random(count).astype(np.float32)
    return points, leaves, codes, values


@pytest.mark.parametrize("with_values", [False, True])
@pytest.mark.parametrize("old_count, new_count", [(0, 500), (500, 0), (700, 300), (64, 1), (1000, 2000)])
def test_leaf_append_is_the_stable_leaf_major_layout(rng, with_values, old_count, new_count):
    num_leaves = 17
    p0, l0, c0, v0 = _entries(rng, old_count, num_leaves)
    p1, l1, c1, v1 = _entries(rng, new_count, num_leaves, first_id=old_count)
    old = _tables(p0, l0, c0, num_leaves, v0 if with_values else None)
    got = _core.leaf_append(old, NB, p1.astype(np.int32), l1, c1, v1 if with_values else None, 2)
    want = _tables(np.concatenate([p0, p1]), np.concatenate([l0, l1]), np.concatenate([c0, c1]), num_leaves,
                   np.concatenate([v0, v1]) if with_values else None)
    _assert_tables_equal(got, want)


@pytest.mark.parametrize("with_values", [False, True])
@pytest.mark.parametrize("dead_fraction", [0.0, 0.1, 0.5, 1.0])
def test_leaf_select_keeps_and_renumbers_the_live_entries(rng, with_values, dead_fraction):
    num_leaves, rows = 13, 900
    points = np.concatenate([np.arange(rows), rng.choice(rows, 300, replace=False)]).astype(np.int64)  # spilled copies
    leaves = rng.integers(0, num_leaves, len(points)).astype(np.int64)
    codes = rng.integers(0, 16, (len(points), NB)).astype(np.uint8)
    values = rng.random(len(points)).astype(np.float32)
    tables = _tables(points, leaves, codes, num_leaves, values if with_values else None)
    kept = np.sort(rng.choice(rows, int(round(rows * (1 - dead_fraction))), replace=False))
    renumber = np.full(rows, -1, dtype=np.int64)
    renumber[kept] = np.arange(len(kept))
    got = _core.leaf_select(tables, NB, renumber, 2)
    # numpy: the stored entries in storage order, filtered, renumbered; the layout keeps their order
    stored_points = tables["entry_ids"].astype(np.int64)
    stored_leaves = np.repeat(np.arange(num_leaves), np.diff(tables["leaf_offsets"]))
    stored_codes = codes[np.argsort(leaves, kind="stable")]
    keep = renumber[stored_points] >= 0
    want = _tables(renumber[stored_points[keep]], stored_leaves[keep], stored_codes[keep], num_leaves,
                   tables["entry_sq_norms"][keep] if with_values else None)
    _assert_tables_equal(got, want)


@pytest.mark.parametrize("with_values", [False, True])
@pytest.mark.parametrize("min_dead_fraction", [0.0, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("all_candidates", [False, True])
def test_leaf_prune_drops_dead_entries_only_from_crowded_candidate_leaves(rng, with_values, min_dead_fraction,
                                                                          all_candidates):
    num_leaves, rows = 13, 900
    points = np.concatenate([np.arange(rows), rng.choice(rows, 300, replace=False)]).astype(np.int64)
    leaves = rng.integers(0, num_leaves, len(points)).astype(np.int64)
    codes = rng.integers(0, 16, (len(points), NB)).astype(np.uint8)
    values = rng.random(len(points)).astype(np.float32)
    tables = _tables(points, leaves, codes, num_leaves, values if with_values else None)
    # leaves differ in how many of their entries are dead: none, a few, many
    live = np.ones(rows, dtype=np.uint8)
    share = rng.choice([0.0, 0.05, 0.2, 0.6], num_leaves)
    for leaf in range(num_leaves):
        mine = points[leaves == leaf]
        live[mine[rng.random(len(mine)) < share[leaf]]] = 0
    candidates = None if all_candidates else (rng.random(num_leaves) < 0.6).astype(np.uint8)
    got = _core.leaf_prune(tables, NB, live, candidates, min_dead_fraction, 2)
    # numpy: an entry goes when its point is dead and its leaf is a candidate with >= the fraction dead (and > 0)
    stored_points = tables["entry_ids"].astype(np.int64)
    stored_leaves = np.repeat(np.arange(num_leaves), np.diff(tables["leaf_offsets"]))
    stored_codes = codes[np.argsort(leaves, kind="stable")]
    dead = live[stored_points] == 0
    dead_per_leaf = np.bincount(stored_leaves, weights=dead, minlength=num_leaves)
    size = np.bincount(stored_leaves, minlength=num_leaves)
    crowded = (dead_per_leaf > 0) & (dead_per_leaf >= min_dead_fraction * size)
    if candidates is not None:
        crowded &= candidates.astype(bool)
    drop = dead & crowded[stored_leaves]
    if not drop.any():
        assert got is None
        return
    keep = ~drop
    want = _tables(stored_points[keep], stored_leaves[keep], stored_codes[keep], num_leaves,
                   tables["entry_sq_norms"][keep] if with_values else None)
    _assert_tables_equal(got, want)


def test_leaf_prune_refuses_bad_input(rng):
    p, leaves, codes, _ = _entries(rng, 100, 4)
    tables = _tables(p, leaves, codes, 4)
    live = np.zeros(100, np.uint8)
    with pytest.raises(ValueError, match="names point"):
        _core.leaf_prune(tables, NB, live[:50], None, 0.1, 1)
    with pytest.raises(ValueError, match="one flag per leaf"):
        _core.leaf_prune(tables, NB, live, np.ones(3, np.uint8), 0.1, 1)
    with pytest.raises(ValueError, match="min_dead_fraction"):
        _core.leaf_prune(tables, NB, live, None, 1.5, 1)


def test_leaf_edits_refuse_bad_input(rng):
    p, leaves, codes, _ = _entries(rng, 100, 4)
    tables = _tables(p, leaves, codes, 4)
    with pytest.raises(ValueError, match="names leaf"):
        _core.leaf_append(tables, NB, np.array([5], np.int32), np.array([4], np.int64), codes[:1], None, 1)
    with pytest.raises(ValueError, match="new_codes must have shape"):
        _core.leaf_append(tables, NB, np.array([5], np.int32), np.array([1], np.int64), codes[:1, :3].copy(), None, 1)
    with pytest.raises(ValueError, match="0..15"):
        _core.leaf_append(tables, NB, np.array([5], np.int32), np.array([1], np.int64), codes[:1] + 16, None, 1)
    with pytest.raises(ValueError, match="new_values"):
        _core.leaf_append(tables, NB, np.array([5], np.int32), np.array([1], np.int64), codes[:1],
                          np.ones(1, np.float32), 1)
    bad = dict(tables, leaf_group_offsets=tables["leaf_group_offsets"] + np.arange(5))
    with pytest.raises(ValueError, match="groups"):
        _core.leaf_select(bad, NB, np.arange(100, dtype=np.int64), 1)
    with pytest.raises(ValueError, match="names point"):
        _core.leaf_select(tables, NB, np.arange(50, dtype=np.int64), 1)


# ---------------------------------------------------------------------------- builds and adds


@pytest.fixture(scope="module")
def sample(real_sample):
    data = real_sample["train"][:6000]
    return np.ascontiguousarray(data / np.linalg.norm(data, axis=1, keepdims=True))


def _index(data, metric, **kw):
    kw = {"num_leaves": 40, "num_leaves_to_search": 8, "anisotropic_quantization_threshold": 0.2, "reorder": 50,
          "num_threads": 2, **kw}
    return annlib.TreeAhIndex(data, metric, **kw)


def _expected_entry_tables(index, data, batches=None):
    """The entry tables by the pre-core recipe: encode_pq of each entry's residual, stable sort by leaf,
    pack per leaf; for squared L2 the reconstruction norms ||c + r~||^2. Entries in write order: per
    batch of rows (the build, then each add) the primaries, then the spilled copies."""
    a = index._arrays
    rows = len(a["primary_leaf"])
    points, leaves = [], []
    for begin, end in batches or [(0, rows)]:
        batch = np.arange(begin, end, dtype=np.int64)
        points.append(batch)
        leaves.append(a["primary_leaf"][begin:end].astype(np.int64))
        if "secondary_leaf" in a:
            spilled = batch[a["secondary_leaf"][begin:end] >= 0]
            points.append(spilled)
            leaves.append(a["secondary_leaf"][spilled].astype(np.int64))
    points, leaves = np.concatenate(points), np.concatenate(leaves)
    ah = index._build_config.ah
    centers = a["centers"][leaves]
    codes = _core.encode_pq(a["codebook"], ah.dims_per_block, data[points] - centers, data[points], ah.threshold_or_nan, 2)
    norms = None
    if "entry_sq_norms" in a:
        norms = _core.squared_norms(_core.decode_pq(a["codebook"], ah.dims_per_block, codes) + centers)
    return _tables(points, leaves, codes, len(a["centers"]), norms)


@pytest.mark.parametrize("metric, extra", [("dot", {}), ("squared_l2", {}), ("squared_l2", {"soar_lambda": 1.0})])
def test_build_and_add_give_the_entry_tables_of_the_plain_recipe(sample, metric, extra):
    index = _index(sample[:4000], metric, **extra)
    _assert_tables_equal({k: index._arrays[k] for k in _expected_entry_tables(index, sample[:4000])},
                         _expected_entry_tables(index, sample[:4000]))
    index.add(sample[4000:5000])
    index.add(sample[5000:])
    got = index._arrays
    want = _expected_entry_tables(index, sample, [(0, 4000), (4000, 5000), (5000, len(sample))])
    _assert_tables_equal({k: got[k] for k in want}, want)
    if metric == "squared_l2":  # the scan's norms stay the reconstructions', not the points'
        assert not np.array_equal(got["entry_sq_norms"], got["point_sq_norms"][got["entry_ids"]])


def test_compact_keeps_the_reconstruction_norms(sample, rng):
    index = _index(sample[:4000], "squared_l2", soar_lambda=1.0)
    index.add(sample[4000:])
    dead = rng.choice(len(sample), 1500, replace=False)
    before = index._arrays
    index.delete(dead)  # prunes (most of) the dead entries already; compact drops the rest and renumbers
    index.compact()
    alive = np.setdiff1d(np.arange(len(sample)), dead)
    built = int(np.count_nonzero(alive < 4000))
    want = _expected_entry_tables(index, sample[alive], [(0, built), (built, len(alive))])
    _assert_tables_equal({k: index._arrays[k] for k in want}, want)
    assert len(index._arrays["entry_sq_norms"]) < len(before["entry_sq_norms"])


def test_added_int8_rows_use_the_build_code(sample):
    index = _index(sample[:4000], "squared_l2", reorder_quantize="int8")
    index.add(sample[4000:])
    a = index._arrays
    offset, inv_scale, row_scale = a["reorder_int8_offset"], a["reorder_int8_inv_scale"], a["reorder_int8_row_scale"]
    assert np.abs(offset).max() > 0  # the centred code: a plain scale would be off by offset
    code = int8_rows.Code.of_arrays(a, shaped=False)
    want, want_scale = code.encode(sample[4000:])
    np.testing.assert_array_equal(a["reorder_int8"][4000:], want)
    np.testing.assert_array_equal(row_scale[4000:], want_scale)
    # the build's own rows are the same code
    built, built_scale = code.encode(sample[:4000])
    np.testing.assert_array_equal(a["reorder_int8"][:4000], built)
    dequantized = want.astype(np.float32) * want_scale[:, None] * inv_scale + offset
    np.testing.assert_allclose(a["point_sq_norms"][4000:], np.einsum("ij,ij->i", dequantized, dequantized), rtol=1e-5)


# ---------------------------------------------------------------------------- in-place row growth


def test_rows_appended_grows_in_place_without_changing_earlier_views(rng):
    first = rng.random((100, 3)).astype(np.float32)
    a = mutation.rows_appended(first, rng.random((10, 3)).astype(np.float32))
    a_copy = a.copy()
    b = mutation.rows_appended(a, rng.random((5, 3)).astype(np.float32))
    assert b.base is a.base  # written into a's spare rows
    np.testing.assert_array_equal(a, a_copy)
    np.testing.assert_array_equal(b[:110], a_copy)
    # a second extension of `a` (a shallow copy's snapshot) must not overwrite b's rows
    b_copy = b.copy()
    c = mutation.rows_appended(a, np.zeros((5, 3), np.float32))
    assert c.base is not a.base
    np.testing.assert_array_equal(b, b_copy)
    np.testing.assert_array_equal(c[110:], 0)
    # a view that is not a buffer's first rows is copied
    d = mutation.rows_appended(b[1:], np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(d[:-1], b[1:])


def test_adds_to_shallow_copies_do_not_share_rows(sample):
    index = _index(sample[:3000], "dot")
    index.add(sample[3000:3500])
    twin = copy.copy(index)
    index.add(sample[3500:4000])
    twin.add(sample[4000:4500])
    np.testing.assert_array_equal(index._arrays["reorder_float"][3500:], sample[3500:4000])
    np.testing.assert_array_equal(twin._arrays["reorder_float"][3500:], sample[4000:4500])
    q = sample[3600:3610]
    assert (index.search_batched(q, 1).ids[:, 0] == np.arange(3600, 3610)).all()


def test_stats_count_the_spare_rows(sample):
    row = sample.shape[1] * 4
    index = _index(sample[:3000], "dot")  # its copy of the float rows has 25% spare rows
    assert index.stats()["spare_bytes"] == 750 * row
    before = index._arrays["reorder_float"]
    index.add(sample[3000:3100])
    after = index._arrays["reorder_float"]
    assert after.base is before.base and len(before) == 3000  # written in place, the old view unchanged
    assert after.base.nbytes - after.nbytes == 650 * row
    shared = _index(sample[:3000], "dot", copy=False)  # the caller's array: nothing reserved, nothing written
    assert shared.stats()["spare_bytes"] == 0
    shared.add(sample[3000:3100])
    assert shared.stats()["spare_bytes"] >= 100 * row
