"""ShardedIndex on a local Ray cluster: equal to one index, saved and restored, surviving lost actors.

One ``ray.init(num_cpus=2)`` shared with the other sharding modules (``ray_cluster`` in
conftest.py). Skips cleanly when Ray (the ``ray`` extra) is absent.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import annlib  # noqa: E402
from annlib.distributed import ShardedIndex, ShardError  # noqa: E402
from annlib.errors import FormatError  # noqa: E402

from _sharded import assert_same, far_clusters, single_like  # noqa: E402

LEAVES = 40


@pytest.fixture(scope="module", autouse=True)
def cluster(ray_cluster):
    yield ray_cluster


@pytest.fixture(scope="module")
def sample(request):
    path = os.path.join(os.path.dirname(__file__), "..", "datasets", "debian-minilm-10k.hdf5")
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "r") as f:
        return np.asarray(f["train"][:4000], dtype=np.float32), np.asarray(f["test"][:100], dtype=np.float32)


@pytest.fixture(scope="module")
def l2_data():
    return far_clusters(17, 3000, 80, 32)


@pytest.fixture(scope="module")
def cosine_sharded(sample):
    x, _ = sample
    index = ShardedIndex.build(x, 3, "cosine", num_actors=2, cpus_per_actor=0.25, num_leaves=LEAVES,
                               num_leaves_to_search=6, reorder=30)
    yield index
    index.close()


SEARCHES = [{}, {"leaves_to_search": 2, "pre_reorder_num_neighbors": 12}, {"leaves_to_search": LEAVES}]


@pytest.mark.parametrize("params", SEARCHES, ids=["defaults", "few-candidates", "all-leaves"])
def test_sharded_tree_ah_equals_one_index_with_the_same_training(cosine_sharded, sample, params):
    x, q = sample
    single = single_like(cosine_sharded, x)
    assert_same(cosine_sharded.search_batched(q, 10, **params), single.search_batched(q, 10, **params))


def test_sharded_squared_l2_equals_one_index_bit_for_bit(l2_data):
    x, q = l2_data
    index = ShardedIndex.build(x, 4, "squared_l2", num_actors=2, cpus_per_actor=0.5, num_leaves=30,
                               num_leaves_to_search=3, reorder=20)
    try:
        single = single_like(index, x)
        for k in (1, 10, 25):
            assert_same(index.search_batched(q, k), single.search_batched(q, k))
        one = index.search(q[0], 5)
        assert one.ids.shape == (5,)
        assert_same(one, single.search(q[0], 5))
    finally:
        index.close()


def test_sharded_without_reordering_equals_one_index(l2_data):
    x, q = l2_data
    index = ShardedIndex.build(x, 3, "dot", num_actors=2, cpus_per_actor=0.5, num_leaves=30,
                               num_leaves_to_search=4, reorder=None)
    try:
        assert_same(index.search_batched(q, 10), single_like(index, x).search_batched(q, 10))
    finally:
        index.close()


def test_fast_merge_is_never_worse_than_one_index(cosine_sharded, sample):
    # Every shard reorders its own best candidates: a superset of the single index's list, so
    # the j-th best similarity can only be at least as high, rank by rank.
    x, q = sample
    single = single_like(cosine_sharded, x).search_batched(q, 10, leaves_to_search=2, pre_reorder_num_neighbors=12)
    fast = cosine_sharded.search_batched(q, 10, merge="fast", leaves_to_search=2, pre_reorder_num_neighbors=12)
    assert (fast.distances >= single.distances).all()
    assert (fast.distances > single.distances).any()  # it did rescore more than one index would


def test_sharded_brute_force_is_exact(l2_data):
    x, q = l2_data
    index = ShardedIndex.build(x, 3, "squared_l2", kind="brute_force", num_actors=2, cpus_per_actor=0.5)
    try:
        assert_same(index.search_batched(q, 10), annlib.BruteForce(x, "squared_l2").search_batched(q, 10))
    finally:
        index.close()


def test_k_beyond_the_data_is_padded(l2_data):
    x, q = l2_data
    index = ShardedIndex.build(x[:50], 2, "squared_l2", kind="brute_force", cpus_per_actor=0.5)
    try:
        ids, distances = index.search_batched(q[:3], 60)
        assert ids.shape == (3, 60)
        assert sorted(ids[0, :50]) == list(range(50))
        assert (ids[:, 50:] == -1).all() and np.isinf(distances[:, 50:]).all()
    finally:
        index.close()


def test_build_from_npy_files_equals_build_from_the_array(l2_data, tmp_path):
    x, q = l2_data
    paths = []
    for i, (a, b) in enumerate([(0, 1000), (1000, 1700), (1700, 3000)]):
        paths.append(str(tmp_path / f"part{i}.npy"))
        np.save(paths[-1], x[a:b])
    kwargs = dict(num_actors=2, cpus_per_actor=0.5, num_leaves=30, num_leaves_to_search=3, reorder=20)
    from_files = ShardedIndex.build(paths, None, "squared_l2", **kwargs)
    try:
        assert from_files.shard_ranges == [(0, 1000), (1000, 700), (1700, 1300)]
        assert_same(from_files.search_batched(q, 10), single_like(from_files, x).search_batched(q, 10))
    finally:
        from_files.close()


def test_save_then_load_on_a_different_number_of_actors(cosine_sharded, sample, tmp_path):
    _, q = sample
    expected = cosine_sharded.search_batched(q, 10)
    cosine_sharded.save(tmp_path / "saved")
    manifest = json.loads((tmp_path / "saved" / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and len(manifest["shards"]) == 3
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    assert set(manifest["shared"]) == {"centers", "codebook"}
    for actors in (1, 3):
        loaded = ShardedIndex.load(tmp_path / "saved", actors, cpus_per_actor=0.25)
        try:
            assert loaded.num_actors == actors and loaded.num_shards == 3
            assert_same(loaded.search_batched(q, 10), expected)
        finally:
            loaded.close()


def test_load_refuses_a_shard_that_does_not_match_the_manifest(cosine_sharded, tmp_path):
    cosine_sharded.save(tmp_path / "saved")
    shard = tmp_path / "saved" / "shard-00001.annl"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="shard 1"):
        ShardedIndex.load(tmp_path / "saved", 2, cpus_per_actor=0.5)
    with pytest.raises(FormatError, match="no manifest.json"):
        ShardedIndex.load(tmp_path / "nothing-here")


def test_a_killed_actor_is_restarted_from_its_saved_shards(l2_data, tmp_path):
    x, q = l2_data
    index = ShardedIndex.build(x, 4, "squared_l2", num_actors=2, cpus_per_actor=0.5, num_leaves=30,
                               num_leaves_to_search=3, reorder=20, save_dir=tmp_path / "saved")
    try:
        expected = single_like(index, x).search_batched(q, 10)
        ray.kill(index.actors[1])
        assert_same(index.search_batched(q, 10), expected)
        assert index.restarts == 1

        # Killed while a search is in flight: the search still returns the single index's results.
        many = np.repeat(q, 50, axis=0)
        expected_many = single_like(index, x).search_batched(many, 10)
        out = {}
        worker = threading.Thread(target=lambda: out.update(r=index.search_batched(many, 10)))
        worker.start()
        ray.kill(index.actors[0])
        worker.join(timeout=120)
        assert not worker.is_alive()
        assert_same(out["r"], expected_many)
        assert index.restarts == 2
    finally:
        index.close()


def test_a_lost_actor_without_saved_shards_fails_naming_its_shards(l2_data):
    x, q = l2_data
    index = ShardedIndex.build(x, 2, "squared_l2", kind="brute_force", cpus_per_actor=0.5)
    try:
        ray.kill(index.actors[1])
        with pytest.raises(ShardError, match=r"shard\(s\) \[1\].*never saved"):
            index.search_batched(q, 5)
    finally:
        index.close()


def test_restart_off_raises_instead_of_restoring(l2_data, tmp_path):
    x, q = l2_data
    index = ShardedIndex.build(x, 2, "squared_l2", kind="brute_force", save_dir=tmp_path / "s", restart=False,
                               cpus_per_actor=0.5)
    try:
        ray.kill(index.actors[0])
        with pytest.raises(ShardError, match=r"shard\(s\) \[0\] died"):
            index.search_batched(q, 5)
    finally:
        index.close()


def test_bad_arguments_are_refused_clearly(cosine_sharded, sample):
    _, q = sample
    with pytest.raises(TypeError, match="unknown search parameter 'leaves'"):
        cosine_sharded.search_batched(q, 5, leaves=3)
    with pytest.raises(ValueError, match="cannot exceed num_leaves"):
        cosine_sharded.search_batched(q, 5, leaves_to_search=LEAVES + 1)
    with pytest.raises(ValueError, match="merge must be one of"):
        cosine_sharded.search_batched(q, 5, merge="sloppy")
    with pytest.raises(ValueError, match="dimension|shape"):
        cosine_sharded.search_batched(q[:, :10], 5)
    with pytest.raises(ValueError, match="CPUs"):
        ShardedIndex.build(q, 4, "dot", kind="brute_force", cpus_per_actor=2)
    with pytest.raises(TypeError, match="does not pickle"):
        import pickle

        pickle.dumps(cosine_sharded)


# ---------------------------------------------------------------------- filters and writes through the shards
#
# Ids are global, so one filter means the same thing on the sharded index and on one index over
# all rows. Brute-force shards are exact whatever the route, so they equal one BruteForce bit for
# bit; tree-AH shards equal one tree-AH index on the exact route (filter_route="exact") and are
# held to the exact ground truth over the allowed live points on the index route.

numba = None
try:  # the filter extra; the predicate cases skip without it
    import numba
    from numba import types as _nt
except ImportError:  # pragma: no cover
    pass

FILTER_FORMS = ("ids", "allow", "deny", "bitmap", "predicate", "predicate_data", "callable", "per_query")

if numba is not None:
    @numba.cfunc(_nt.boolean(_nt.int64))
    def _every_third(user_id):
        return user_id % 3 == 1

    @numba.cfunc(_nt.boolean(_nt.int64, _nt.voidptr))
    def _flag_set(user_id, data):
        # data: uint8 flags by user id, 1 = allowed (covers ids 0 .. 9999)
        flags = numba.carray(data, (10000,), dtype=np.uint8)
        return flags[user_id] != 0


def _filter_of(form: str, n: int, nq: int, rng: np.random.Generator):
    """(filter value, allowed(id) -> bool per query) for ids 0..n-1."""
    subset = np.sort(rng.choice(n, n // 4, replace=False))
    if form == "ids":
        return subset, [set(subset.tolist())] * nq
    if form == "allow":
        return annlib.Filter.allow(subset), [set(subset.tolist())] * nq
    if form == "deny":
        return annlib.Filter.deny(subset), [set(range(n)) - set(subset.tolist())] * nq
    if form == "bitmap":
        mask = np.zeros(n, dtype=bool)
        mask[subset] = True
        return annlib.Filter.bitmap(mask), [set(subset.tolist())] * nq
    if form in ("predicate", "predicate_data"):
        pytest.importorskip("numba")
        if form == "predicate":
            return annlib.Filter.predicate(_every_third), [{i for i in range(n) if i % 3 == 1}] * nq
        flags = np.zeros(10000, dtype=np.uint8)
        flags[subset] = 1
        return annlib.Filter.predicate(_flag_set, flags), [set(subset.tolist())] * nq
    if form == "callable":
        return (lambda i: i % 5 == 2), [{i for i in range(n) if i % 5 == 2}] * nq
    # per query: two shared filters and a None (no filter) alternating
    a, b = annlib.Filter.allow(subset), annlib.Filter.deny(subset)
    value = [(a, b, None)[q % 3] for q in range(nq)]
    allowed = [(set(subset.tolist()), set(range(n)) - set(subset.tolist()), set(range(n)))[q % 3] for q in range(nq)]
    return value, allowed


@pytest.fixture(scope="module")
def bf_sharded(l2_data):
    x, _ = l2_data
    index = ShardedIndex.build(x, 3, "squared_l2", kind="brute_force", num_actors=2, cpus_per_actor=0.25, timeout_s=120)
    yield index
    index.close()


@pytest.mark.parametrize("form", FILTER_FORMS)
def test_filtered_brute_force_shards_equal_one_index(bf_sharded, l2_data, form):
    x, q = l2_data
    value, allowed = _filter_of(form, len(x), len(q), np.random.default_rng(1))
    single = annlib.BruteForce(x, "squared_l2")
    got = bf_sharded.search_batched(q, 10, filter=value)
    assert_same(got, single.search_batched(q, 10, filter=value))
    assert all(set(got.ids[i].tolist()) <= allowed[i] for i in range(len(q)))
    assert_same(bf_sharded.search(q[0], 10, filter=value if form != "per_query" else value[0]),
                 single.search(q[0], 10, filter=value if form != "per_query" else value[0]))


def _exact_truth(x, q, allowed_per_query, k):
    """Exact squared-L2 top-k over each query's allowed ids (by (distance, id))."""
    out = np.full((len(q), k), -1, dtype=np.int64)
    for i, allowed in enumerate(allowed_per_query):
        ids = np.array(sorted(allowed), dtype=np.int64)
        d = ((x[ids].astype(np.float64) - q[i]) ** 2).sum(axis=1)
        top = ids[np.lexsort((ids, d))[:k]]
        out[i, : len(top)] = top
    return out


@pytest.fixture(scope="module")
def ah_sharded(l2_data):
    x, _ = l2_data
    index = ShardedIndex.build(x, 3, "squared_l2", num_actors=2, cpus_per_actor=0.25, timeout_s=120, num_leaves=30,
                               num_leaves_to_search=4, reorder=40)
    yield index
    index.close()


@pytest.mark.parametrize("form", FILTER_FORMS)
def test_filtered_tree_ah_shards(ah_sharded, l2_data, form):
    x, q = l2_data
    value, allowed = _filter_of(form, len(x), len(q), np.random.default_rng(2))
    single = single_like(ah_sharded, x)
    # The exact route: every shard's exact top-k over its allowed points, merged = one index's exact route.
    exact = ah_sharded.search_batched(q, 10, filter=value, filter_route="exact", merge="exact")
    assert_same(exact, single.search_batched(q, 10, filter=value, filter_route="exact"))
    truth = _exact_truth(x, q, allowed, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.ids, truth)]) > 0.99
    # The index route with the exact merge (the default): one index's filtered search, bit for bit,
    # wherever the per-leaf counts are exact (id lists, bitmaps); a predicate's are estimates,
    # each shard's from its own sample, so its leaf walk may differ from one index's.
    one = single.search_batched(q, 10, filter=value, filter_route="index")
    got = ah_sharded.search_batched(q, 10, filter=value, filter_route="index")
    if form not in ("predicate", "predicate_data", "callable"):
        assert_same(got, one)
    # The fast merge (every shard's own filtered search, merged) and the exact merge alike: only
    # allowed ids, k of them, and at least the recall of one index searching the same way.
    single_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(one.ids, truth)])
    for got in (got, ah_sharded.search_batched(q, 10, filter=value, filter_route="index", merge="fast")):
        assert all(set(got.ids[i].tolist()) <= allowed[i] for i in range(len(q)))
        assert (got.ids >= 0).all()
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.ids, truth)])
        assert recall >= single_recall - 0.02 and recall > 0.8, (recall, single_recall)


def test_a_filter_passing_fewer_than_k_returns_exactly_those(ah_sharded, bf_sharded, l2_data):
    x, q = l2_data
    few = np.array([5, 1500, 2999])  # one in each shard
    for index in (ah_sharded, bf_sharded):
        for route in ("auto", "index", "exact"):
            got = index.search_batched(q[:5], 10, filter=few, filter_route=route)
            assert (np.sort(got.ids[:, :3], axis=1) == few).all()
            assert (got.ids[:, 3:] == -1).all() and np.isinf(got.distances[:, 3:]).all()
            d = got.distances[:, :3]
            assert (np.diff(d, axis=1) >= 0).all()


def test_the_exact_merge_plans_a_filter_as_one_index(ah_sharded, l2_data):
    # The planner's rules on the summed counts: fewer than k allowed -> exact, no filter -> the
    # index; a filter in between is priced with a shard's measured costs (timed, so one index may
    # choose otherwise): where the two chose alike, results are bit-identical.
    x, q = l2_data
    single = single_like(ah_sharded, x)
    few, half = annlib.Filter.allow([4, 999, 1003, 2100, 2998, 17]), annlib.Filter.allow(np.arange(0, len(x), 2))
    value = [(few, None, half)[i % 3] for i in range(len(q))]
    got = ah_sharded.search_batched(q, 10, filter=value, merge="exact")
    routes = ah_sharded.last_search_stats["routes"]
    one = single.search_batched(q, 10, filter=value)
    planned = single.last_filter_plan.planned
    assert (routes[0::3] == "exact").all() and (routes[1::3] == "index").all()
    agree = np.flatnonzero(routes == planned)
    assert len(agree) >= 2 * len(q) // 3
    np.testing.assert_array_equal(got.ids[agree], one.ids[agree])
    np.testing.assert_array_equal(got.distances[agree], one.distances[agree])
    assert (np.sort(got.ids[0, :6]) == [4, 17, 999, 1003, 2100, 2998]).all() and (got.ids[0, 6:] == -1).all()
    # One query alone (the single-query mode) takes the same path.
    assert_same(ah_sharded.search(q[1], 5, filter=half, filter_route="index"),
                 single.search(q[1], 5, filter=half, filter_route="index"))


def test_filter_route_is_checked(ah_sharded, l2_data):
    _, q = l2_data
    with pytest.raises(ValueError, match="filter_route must be one of"):
        ah_sharded.search_batched(q, 5, filter=[1, 2, 3], filter_route="fastest")


def test_a_predicate_on_a_raw_address_is_refused(ah_sharded, l2_data):
    pytest.importorskip("numba")
    _, q = l2_data
    flags = np.ones(10000, dtype=np.uint8)
    with pytest.raises(ValueError, match="raw address"):
        ah_sharded.search_batched(q, 5, filter=annlib.Filter.predicate(_flag_set, int(flags.ctypes.data)))


@pytest.mark.parametrize("kind", ["brute_force", "tree_ah"])
def test_deletes_and_adds_through_the_shards(l2_data, tmp_path, kind):
    x, q = l2_data
    kwargs = {} if kind == "brute_force" else dict(num_leaves=30, num_leaves_to_search=4, reorder=40)
    index = ShardedIndex.build(x, 3, "squared_l2", kind=kind, num_actors=2, cpus_per_actor=0.25, timeout_s=120,
                               save_dir=tmp_path / "saved", **kwargs)
    try:
        single = annlib.BruteForce(x, "squared_l2") if kind == "brute_force" else single_like(index, x)
        # Delete every query's current top 3 (so they would be returned if deletion leaked) and more.
        before = index.search_batched(q, 3).ids
        gone = np.unique(np.concatenate([before.ravel(), np.arange(0, 3000, 7)]))
        assert index.delete(gone) == len(gone) and single.delete(gone) == len(gone)
        assert index.n == len(x) - len(gone)
        with pytest.raises(KeyError, match="not in the index"):
            index.delete(gone[:2])
        assert index.delete(gone[:2], missing="ignore") == 0
        allowed = np.arange(0, 3000, 2)  # half of the allowed ids are deleted or not
        live_allowed = set(allowed.tolist()) - set(gone.tolist())
        for merge in ("exact", "fast"):
            plain = index.search_batched(q, 10, merge=merge)
            assert not np.isin(plain.ids, gone).any()
            if kind == "brute_force" or merge == "exact":
                assert_same(plain, single.search_batched(q, 10))
        for route in ("auto", "index", "exact"):
            got = index.search_batched(q, 10, filter=allowed, filter_route=route)
            assert not np.isin(got.ids, gone).any()
            assert all(set(row.tolist()) <= live_allowed for row in got.ids)
        exact = index.search_batched(q, 10, filter=allowed, filter_route="exact")
        # float32 distances of points ~60 from the origin round near-ties together: the float64
        # truth may order those differently, so it bounds the recall; one exact index matches exactly.
        truth = _exact_truth(x, q, [live_allowed] * len(q), 10)
        assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.ids, truth)]) > 0.98
        if kind == "brute_force":
            assert_same(exact, single.search_batched(q, 10, filter=allowed))

        # Adds go to shard id % 3 and are found through a filter (and without one).
        rng = np.random.default_rng(5)
        new_vectors = q[:20] + rng.standard_normal((20, x.shape[1])).astype(np.float32) * 0.01
        new_ids = index.add(new_vectors[:10], ids=np.arange(5000, 5010))
        fresh = index.add(new_vectors[10:])
        np.testing.assert_array_equal(fresh, np.arange(5010, 5020))
        single.add(new_vectors[:10], ids=new_ids)
        single.add(new_vectors[10:], ids=fresh)
        with pytest.raises(KeyError, match="already in the index"):
            index.add(new_vectors[:1], ids=[5003])
        assert index.n == len(x) - len(gone) + 20
        added = np.concatenate([new_ids, fresh])
        got = index.search_batched(q[:20], 1, filter=annlib.Filter.allow(added))
        np.testing.assert_array_equal(got.ids[:, 0], added)
        got = index.search_batched(q[:20], 25, filter=added)
        assert (np.sort(got.ids[:, :20], axis=1) == added).all() and (got.ids[:, 20:] == -1).all()
        bitmap = np.zeros(5020, dtype=bool)
        bitmap[added[::2]] = True
        got = index.search_batched(q[:20:2], 1, filter=annlib.Filter.bitmap(bitmap))
        np.testing.assert_array_equal(got.ids[:, 0], added[::2])
        if kind == "brute_force":
            assert_same(index.search_batched(q, 10), single.search_batched(q, 10))
            assert_same(index.search_batched(q, 10, filter=annlib.Filter.deny(added[:5])),
                         single.search_batched(q, 10, filter=annlib.Filter.deny(added[:5])))

        # A shard written to since its save is not silently restored from the stale file...
        ray.kill(index.actors[0])
        with pytest.raises(ShardError, match="changed"):
            index.search_batched(q, 5)
    finally:
        index.close()


def test_writes_survive_save_and_load(l2_data, tmp_path):
    x, q = l2_data
    index = ShardedIndex.build(x, 3, "squared_l2", num_actors=2, cpus_per_actor=0.25, timeout_s=120, num_leaves=30,
                               num_leaves_to_search=4, reorder=40)
    try:
        index.delete(np.arange(1000, 1100))
        index.add(q[:4], ids=[9000, 9001, 9002, 9003])
        expected = index.search_batched(q, 10, filter=np.arange(900, 9004))
        index.save(tmp_path / "saved")
        n = index.n
    finally:
        index.close()
    loaded = ShardedIndex.load(tmp_path / "saved", 1, cpus_per_actor=0.25, timeout_s=120)
    try:
        assert loaded.n == n
        assert_same(loaded.search_batched(q, 10, filter=np.arange(900, 9004)), expected)
        assert not np.isin(loaded.search_batched(q, 50).ids, np.arange(1000, 1100)).any()
    finally:
        loaded.close()
