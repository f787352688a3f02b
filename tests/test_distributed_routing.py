"""Shards by partition and routed search: a query goes only to the shards holding its best
partitions, and gets exactly what the fan-out search and one index with the same centers and
codebook return; writes (upsert, delete, compact, rebalance, health) route by id.

One ``ray.init(num_cpus=2)`` for the module. Skips cleanly when Ray (the ``ray`` extra) is absent.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import annlib  # noqa: E402
from annlib._vectors import normalize_rows  # noqa: E402
from annlib.config import TreeAhConfig  # noqa: E402
from annlib.distributed import ShardedIndex, ShardError  # noqa: E402
from annlib.distributed import _routing  # noqa: E402

LEAVES = 40
SAMPLE = os.path.join(os.path.dirname(__file__), "..", "datasets", "debian-minilm-10k.hdf5")


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sample():
    h5py = pytest.importorskip("h5py")
    if not os.path.exists(SAMPLE):
        pytest.skip("datasets/debian-minilm-10k.hdf5 is not present")
    with h5py.File(SAMPLE, "r") as f:
        return np.asarray(f["train"][:4000], dtype=np.float32), np.asarray(f["test"][:100], dtype=np.float32)


def _single_like(sharded: ShardedIndex, x: np.ndarray, ids=None) -> annlib.TreeAhIndex:
    shared = sharded.shared_arrays
    single = annlib.TreeAhIndex.from_trained(x, TreeAhConfig.from_dict(sharded.config["index"]), shared["centers"],
                                             shared["codebook"])
    if ids is not None:
        from annlib.index.ids import IdMap  # noqa: PLC0415

        single._set_ids(IdMap.of(np.asarray(ids, dtype=np.int64), len(x)))
    return single


def _assert_same(a, b):
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)


@pytest.fixture(scope="module")
def by_partition(sample):
    x, _ = sample
    index = ShardedIndex.build(x, 4, "cosine", shard_by="partition", num_actors=2, cpus_per_actor=0.25,
                               num_leaves=LEAVES, num_leaves_to_search=4, reorder=30)
    yield index
    index.close()


# ---------------------------------------------------------------------- pure pieces


def test_placement_gives_every_partition_one_balanced_owner():
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((200, 16)).astype(np.float32)
    sizes = rng.integers(1, 100, 200)
    owner = _routing.place_partitions(centers, sizes, 5, "squared_l2")
    assert owner.shape == (200,) and set(owner.tolist()) == set(range(5))
    load = np.bincount(owner, weights=sizes, minlength=5)
    assert load.max() <= 1.05 * sizes.sum() / 5 + sizes.max()


def test_placement_keeps_near_partitions_together():
    # Four well separated groups of 25 centers: four shards take one group each.
    rng = np.random.default_rng(4)
    groups = rng.standard_normal((4, 16)) * 50
    centers = (groups[np.repeat(np.arange(4), 25)] + rng.standard_normal((100, 16))).astype(np.float32)
    owner = _routing.place_partitions(centers, np.full(100, 10), 4, "squared_l2")
    for g in range(4):
        assert len(set(owner[g * 25:(g + 1) * 25].tolist())) == 1
    assert len(set(owner.tolist())) == 4


def test_chosen_leaves_hold_the_best_leaves_and_only_near_ties_more():
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((50, 30)).astype(np.float32)
    scores[0, 7] = scores[0, np.argsort(-scores[0])[2]]  # an exact tie at the 3rd place
    chosen = _routing.chosen_leaves(scores, 3)
    best = np.argsort(-scores, axis=1)[:, :3]
    assert np.take_along_axis(chosen, best, axis=1).all()
    assert chosen[0].sum() == 4 and (chosen[1:].sum(axis=1) == 3).all()
    assert _routing.chosen_leaves(scores, 30).all()


# ---------------------------------------------------------------------- routed search


@pytest.mark.parametrize("leaves", [1, 4, 12, LEAVES])
def test_routed_search_equals_one_index_bit_for_bit(by_partition, sample, leaves):
    x, q = sample
    assert by_partition.route
    single = _single_like(by_partition, x)
    expected = single.search_batched(q, 10, leaves_to_search=leaves)
    _assert_same(by_partition.search_batched(q, 10, leaves_to_search=leaves), expected)
    stats = by_partition.last_search_stats
    assert stats["queries"] == len(q)
    if leaves < LEAVES:
        assert stats["shards_per_query"] < by_partition.num_shards  # some shards were skipped
    else:
        assert stats["shards_per_query"] == by_partition.num_shards


def test_routed_equals_fan_out_for_both_merges(by_partition, sample):
    _, q = sample
    try:
        for merge in ("exact", "fast"):
            by_partition.route = True
            routed = by_partition.search_batched(q, 10, merge=merge, leaves_to_search=3)
            routed_bytes = by_partition.last_search_stats["payload_bytes_per_query"]
            by_partition.route = False
            fanned = by_partition.search_batched(q, 10, merge=merge, leaves_to_search=3)
            assert by_partition.last_search_stats["shards_per_query"] == by_partition.num_shards
            _assert_same(routed, fanned)
            assert routed_bytes < by_partition.last_search_stats["payload_bytes_per_query"]
        one = q[3]
        by_partition.route = True
        _assert_same(by_partition.search(one, 5, leaves_to_search=2),
                     _single_like(by_partition, sample[0]).search(one, 5, leaves_to_search=2))
    finally:
        by_partition.route = True


def test_every_partition_lives_on_one_shard(by_partition):
    held = by_partition._leaf_shards
    assert held.shape == (LEAVES, by_partition.num_shards)
    assert (held.sum(axis=1) <= 1).all()  # shards hold whole partitions (no spilling here)
    sizes = [n for _, n in by_partition.shard_ranges]
    assert sum(sizes) == by_partition.n and min(sizes) > 0


def test_routed_squared_l2_far_from_the_origin_equals_one_index(tmp_path):
    # |q|^2 - score rounds distinct scores together far from the origin; routing must not
    # change which candidates survive the merge.
    rng = np.random.default_rng(17)
    centers = rng.standard_normal((20, 32)).astype(np.float32) * 4 + 60
    x = centers[rng.integers(0, 20, 3000)] + rng.standard_normal((3000, 32)).astype(np.float32)
    q = centers[rng.integers(0, 20, 80)] + rng.standard_normal((80, 32)).astype(np.float32)
    index = ShardedIndex.build(x, 3, "squared_l2", shard_by="partition", num_actors=2, cpus_per_actor=0.25,
                               num_leaves=30, num_leaves_to_search=3, reorder=20, save_dir=tmp_path / "saved")
    try:
        single = _single_like(index, x)
        for k in (1, 10):
            _assert_same(index.search_batched(q, k), single.search_batched(q, k))
        # The placement survives save -> load on another actor count; routing stays on.
        loaded = ShardedIndex.load(tmp_path / "saved", 3, cpus_per_actor=0.25)
        try:
            assert loaded.route and loaded.config["sharding"] == "partition"
            _assert_same(loaded.search_batched(q, 10), single.search_batched(q, 10))
            assert loaded.last_search_stats["shards_per_query"] < 3
        finally:
            loaded.close()
    finally:
        index.close()


def test_partition_sharding_is_refused_where_it_has_no_meaning(sample):
    x, _ = sample
    with pytest.raises(ValueError, match="kind='tree_ah'"):
        ShardedIndex.build(x[:100], 2, "cosine", kind="brute_force", shard_by="partition")
    with pytest.raises(ValueError, match="shard_by"):
        ShardedIndex.build(x[:100], 2, "cosine", shard_by="columns")


# ---------------------------------------------------------------------- writes by id


def test_upsert_delete_compact_route_by_id_and_match_one_index(sample):
    x, q = sample
    x, q = x[:2000], q[:40]
    index = ShardedIndex.build(x, 3, "cosine", shard_by="partition", num_actors=2, cpus_per_actor=0.25,
                               num_leaves=30, num_leaves_to_search=4, reorder=30)
    try:
        single = _single_like(index, x)
        rng = np.random.default_rng(8)
        # Existing ids get new vectors (on the shard holding each), new ids are added.
        ids = np.concatenate([index.search_batched(q[:5], 2).ids.ravel(), [70_000, 70_001]])
        ids = np.unique(ids)
        vectors = q[rng.integers(0, len(q), len(ids))] + 0.05 * rng.standard_normal((len(ids), x.shape[1])).astype(
            np.float32)
        index.upsert(ids, vectors)
        single.upsert(ids, vectors)
        assert index.n == single.n == 2002
        gone = np.arange(0, 2000, 9)
        assert index.delete(gone) == single.delete(gone)
        for route in (True, False):
            index.route = route
            _assert_same(index.search_batched(q, 10), single.search_batched(q, 10))
        index.route = True
        health = index.health()
        assert health["n"] == index.n and health["deleted"] == len(gone) + int(np.isin(ids, np.arange(2000)).sum())
        assert len(health["shards"]) == 3 and "compact" not in health["advice"]
        index.compact()
        assert index.health()["deleted"] == 0
        _assert_same(index.search_batched(q, 10), single.search_batched(q, 10))
        with pytest.raises(ValueError, match="unique"):
            index.upsert([5, 5], q[:2])
    finally:
        index.close()


@pytest.mark.parametrize("shard_by", ["rows", "partition"])
def test_rebalance_retrains_once_for_all_shards(sample, shard_by):
    x, q = sample
    x, q = x[:2000], q[:40]
    index = ShardedIndex.build(x, 3, "cosine", shard_by=shard_by, num_actors=2, cpus_per_actor=0.25,
                               num_leaves=20, num_leaves_to_search=4, reorder=30)
    try:
        index.delete(np.arange(0, 2000, 4))
        old = index.shared_arrays["centers"]
        index.rebalance(num_leaves=25)
        centers = index.shared_arrays["centers"]
        assert centers.shape == (25, x.shape[1]) and not np.array_equal(old[:20], centers[:20])
        assert index.n == 1500 and index.health()["deleted"] == 0
        live = np.setdiff1d(np.arange(2000), np.arange(0, 2000, 4))
        # Still one index's results: the single index with the new training over the live points
        # as the shards stored them (unit-normalised for cosine, so normalised twice now).
        single = _single_like(index, normalize_rows(x[live]), ids=live)
        _assert_same(index.search_batched(q, 10), single.search_batched(q, 10))
        if shard_by == "partition":
            assert (index._leaf_shards.sum(axis=1) <= 1).all()
        ray.kill(index.actors[0])  # rebuilt shards differ from any file: not restored silently
        with pytest.raises(ShardError):
            index.search_batched(q, 5)
    finally:
        index.close()
