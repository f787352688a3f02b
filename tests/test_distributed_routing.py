"""Shards by partition and routed search: a query goes only to the shards holding its best
partitions, and gets exactly what the fan-out search and one index with the same centers and
codebook return; writes (upsert, delete, compact, rebalance, health) route by id.

One ``ray.init(num_cpus=2)`` shared with the other sharding modules (``ray_cluster`` in
conftest.py). Skips cleanly when Ray (the ``ray`` extra) is absent.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import annlib  # noqa: E402
from annlib._vectors import normalize_rows  # noqa: E402
from annlib.distributed import ShardedIndex, ShardError  # noqa: E402
from annlib.distributed import _filter_plan, _routing  # noqa: E402

from _sharded import assert_same, single_like  # noqa: E402

LEAVES = 40
SAMPLE = os.path.join(os.path.dirname(__file__), "..", "datasets", "debian-minilm-10k.hdf5")


@pytest.fixture(scope="module", autouse=True)
def cluster(ray_cluster):
    yield ray_cluster


@pytest.fixture(scope="module")
def sample():
    h5py = pytest.importorskip("h5py")
    if not os.path.exists(SAMPLE):
        pytest.skip("datasets/debian-minilm-10k.hdf5 is not present")
    with h5py.File(SAMPLE, "r") as f:
        return np.asarray(f["train"][:4000], dtype=np.float32), np.asarray(f["test"][:100], dtype=np.float32)


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


def _core_walk(scores, leaves_to_search, allowed, sizes):
    """The leaves ``choose_leaves`` (csrc/core/tree_ah_search.cc) scans, written out as a loop."""
    order = np.argsort(-scores, kind="stable")
    target = sizes[order[:leaves_to_search]].sum()
    passing, j = 0, 0
    while j < len(order) and (j < leaves_to_search or passing < target):
        passing += allowed[order[j]]
        j += 1
    return {int(leaf) for leaf in order[:j] if allowed[leaf] > 0}


def test_the_driver_walks_the_leaves_one_index_walks():
    rng = np.random.default_rng(6)
    nq, num_leaves = 40, 60
    scores = rng.standard_normal((nq, num_leaves)).astype(np.float32)  # no near-ties
    sizes = rng.integers(0, 50, num_leaves)
    allowed = np.stack([sizes, (sizes * (rng.random(num_leaves) < 0.2)), np.minimum(sizes, 1)])
    fig = _filter_plan.Figures(allowed, sizes, allowed.sum(axis=1).astype(float), np.zeros(3, bool),
                               np.zeros(3, bool), int(sizes.sum()), {0: allowed[:, :30], 1: allowed[:, 30:]})
    q_filter = np.arange(nq) % 3
    for leaves in (1, 5, num_leaves):
        walked = _filter_plan.walked_leaves(scores, leaves, fig, q_filter)
        for i in range(nq):
            assert set(np.flatnonzero(walked[i]).tolist()) == _core_walk(scores[i], leaves, allowed[q_filter[i]],
                                                                         sizes)
    # The shards asked: those with an allowed entry in a walked leaf.
    fig = _filter_plan.Figures(allowed, sizes, fig.allowed, fig.estimated, fig.passes_all, fig.live,
                               {0: np.pad(allowed[:, :30], ((0, 0), (0, 30))),
                                1: np.pad(allowed[:, 30:], ((0, 0), (30, 0)))})
    walked = _filter_plan.walked_leaves(scores, 5, fig, q_filter)
    shards = _filter_plan.shards_of_walk(walked, fig, q_filter, 2)
    np.testing.assert_array_equal(shards[:, 0], walked[:, :30].any(axis=1))
    np.testing.assert_array_equal(shards[:, 1], walked[:, 30:].any(axis=1))


def test_a_shard_walks_by_the_sizes_it_is_given():
    # leaf_sizes replaces the index's own sizes in the widened walk's target: its own sizes change
    # nothing; larger ones make every query walk (and scan) more leaves.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    index = annlib.TreeAhIndex(x, "dot", num_leaves=20, num_leaves_to_search=2, reorder=None)
    layout, handle = index.layout, index._snap.handle
    q = rng.standard_normal((30, 16)).astype(np.float32)
    sizes = np.asarray(layout.leaf_sizes, dtype=np.int64)
    mask = rng.random(2000) < 0.3
    from annlib.index.tree_ah import _leaf_allowed  # noqa: PLC0415

    resolved = annlib.Filter.bitmap(mask).resolve(index._snap)
    counts = _leaf_allowed(index._snap, resolved)[None, :]
    from annlib.filter import core_arguments  # noqa: PLC0415

    args = dict(core_arguments([resolved], index._snap.ids, None), leaf_allowed=counts)
    plain = layout.ah_candidate_scores(q, 10, 2, 1, **args)
    scanned = handle.last_counters()["leaves_scanned"]
    same = layout.ah_candidate_scores(q, 10, 2, 1, leaf_sizes=sizes, **args)
    assert handle.last_counters()["leaves_scanned"] == scanned
    np.testing.assert_array_equal(plain[0], same[0])
    layout.ah_candidate_scores(q, 10, 2, 1, leaf_sizes=4 * sizes, **args)
    assert handle.last_counters()["leaves_scanned"] > scanned
    with pytest.raises(ValueError, match="leaf_sizes"):
        layout.ah_candidate_scores(q, 10, 2, 1, leaf_sizes=sizes[:-1], **args)


# ---------------------------------------------------------------------- routed search


@pytest.mark.parametrize("leaves", [1, 4, 12, LEAVES])
def test_routed_search_equals_one_index_bit_for_bit(by_partition, sample, leaves):
    x, q = sample
    assert by_partition.route
    single = single_like(by_partition, x)
    expected = single.search_batched(q, 10, leaves_to_search=leaves)
    assert_same(by_partition.search_batched(q, 10, leaves_to_search=leaves), expected)
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
            assert_same(routed, fanned)
            assert routed_bytes < by_partition.last_search_stats["payload_bytes_per_query"]
        one = q[3]
        by_partition.route = True
        assert_same(by_partition.search(one, 5, leaves_to_search=2),
                     single_like(by_partition, sample[0]).search(one, 5, leaves_to_search=2))
    finally:
        by_partition.route = True


@pytest.mark.parametrize("leaves", [1, 4])
def test_filtered_routed_search_equals_one_index_bit_for_bit(by_partition, sample, leaves):
    # The exact merge with a filter walks the whole index's widened leaves on every shard and asks
    # only the shards with allowed entries in them: routed == fan-out == one index.
    x, q = sample
    single = single_like(by_partition, x)
    rng = np.random.default_rng(8)
    subset = np.sort(rng.choice(len(x), len(x) // 10, replace=False))
    bitmap = annlib.Filter.bitmap(rng.random(len(x)) < 0.3)
    per_query = [(annlib.Filter.allow(subset), bitmap, None)[i % 3] for i in range(len(q))]
    try:
        for value in (subset, per_query):
            expected = single.search_batched(q, 10, filter=value, filter_route="index", leaves_to_search=leaves)
            by_partition.route = True
            assert_same(by_partition.search_batched(q, 10, filter=value, filter_route="index",
                                                     leaves_to_search=leaves), expected)
            routed = by_partition.last_search_stats
            by_partition.route = False
            assert_same(by_partition.search_batched(q, 10, filter=value, filter_route="index",
                                                     leaves_to_search=leaves), expected)
            fanned = by_partition.last_search_stats
            assert fanned["shards_per_query"] == by_partition.num_shards
            if leaves == 1:  # (at 4 of 40 a 10% filter widens the walk to about every leaf)
                assert routed["shards_per_query"] < by_partition.num_shards
                assert routed["payload_bytes_per_query"] < fanned["payload_bytes_per_query"]
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
        single = single_like(index, x)
        for k in (1, 10):
            assert_same(index.search_batched(q, k), single.search_batched(q, k))
        # The placement survives save -> load on another actor count; routing stays on.
        loaded = ShardedIndex.load(tmp_path / "saved", 3, cpus_per_actor=0.25)
        try:
            assert loaded.route and loaded.config["sharding"] == "partition"
            assert_same(loaded.search_batched(q, 10), single.search_batched(q, 10))
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
        single = single_like(index, x)
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
            assert_same(index.search_batched(q, 10), single.search_batched(q, 10))
        index.route = True
        health = index.health()
        assert health["n"] == index.n and health["deleted"] == len(gone) + int(np.isin(ids, np.arange(2000)).sum())
        assert len(health["shards"]) == 3 and "compact" not in health["advice"]
        index.compact()
        assert index.health()["deleted"] == 0
        assert_same(index.search_batched(q, 10), single.search_batched(q, 10))
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
        single = single_like(index, normalize_rows(x[live]), ids=live)
        assert_same(index.search_batched(q, 10), single.search_batched(q, 10))
        if shard_by == "partition":
            assert (index._leaf_shards.sum(axis=1) <= 1).all()
        ray.kill(index.actors[0])  # rebuilt shards differ from any file: not restored silently
        with pytest.raises(ShardError):
            index.search_batched(q, 5)
    finally:
        index.close()
