"""ShardedIndex on a local Ray cluster: equal to one index, saved and restored, surviving lost actors.

One ``ray.init(num_cpus=2)`` for the module. Skips cleanly when Ray (the ``ray`` extra) is absent.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import annlib  # noqa: E402
from annlib.config import TreeAhConfig  # noqa: E402
from annlib.distributed import ShardedIndex, ShardError  # noqa: E402
from annlib.errors import FormatError  # noqa: E402

LEAVES = 40


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sample(request):
    path = os.path.join(os.path.dirname(__file__), "..", "datasets", "debian-minilm-10k.hdf5")
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "r") as f:
        return np.asarray(f["train"][:4000], dtype=np.float32), np.asarray(f["test"][:100], dtype=np.float32)


@pytest.fixture(scope="module")
def l2_data():
    # Far from the origin, as SIFT is: |q|^2 - score then rounds distinct scores to one
    # distance, which is why shards hand over raw scores, never distances, to be merged.
    rng = np.random.default_rng(17)
    centers = rng.standard_normal((20, 32)).astype(np.float32) * 4 + 60
    x = centers[rng.integers(0, 20, 3000)] + rng.standard_normal((3000, 32)).astype(np.float32)
    q = centers[rng.integers(0, 20, 80)] + rng.standard_normal((80, 32)).astype(np.float32)
    return x, q


def _single_like(sharded: ShardedIndex, x: np.ndarray) -> annlib.TreeAhIndex:
    """One index over all rows with the sharded index's centers and codebook."""
    shared = sharded.shared_arrays
    return annlib.TreeAhIndex.from_trained(x, TreeAhConfig.from_dict(sharded.config["index"]), shared["centers"],
                                           shared["codebook"])


def _assert_same(a, b):
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)


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
    single = _single_like(cosine_sharded, x)
    _assert_same(cosine_sharded.search_batched(q, 10, **params), single.search_batched(q, 10, **params))


def test_sharded_squared_l2_equals_one_index_bit_for_bit(l2_data):
    x, q = l2_data
    index = ShardedIndex.build(x, 4, "squared_l2", num_actors=2, cpus_per_actor=0.5, num_leaves=30,
                               num_leaves_to_search=3, reorder=20)
    try:
        single = _single_like(index, x)
        for k in (1, 10, 25):
            _assert_same(index.search_batched(q, k), single.search_batched(q, k))
        one = index.search(q[0], 5)
        assert one.ids.shape == (5,)
        _assert_same(one, single.search(q[0], 5))
    finally:
        index.close()


def test_sharded_without_reordering_equals_one_index(l2_data):
    x, q = l2_data
    index = ShardedIndex.build(x, 3, "dot", num_actors=2, cpus_per_actor=0.5, num_leaves=30,
                               num_leaves_to_search=4, reorder=None)
    try:
        _assert_same(index.search_batched(q, 10), _single_like(index, x).search_batched(q, 10))
    finally:
        index.close()


def test_fast_merge_is_never_worse_than_one_index(cosine_sharded, sample):
    # Every shard reorders its own best candidates: a superset of the single index's list, so
    # the j-th best similarity can only be at least as high, rank by rank.
    x, q = sample
    single = _single_like(cosine_sharded, x).search_batched(q, 10, leaves_to_search=2, pre_reorder_num_neighbors=12)
    fast = cosine_sharded.search_batched(q, 10, merge="fast", leaves_to_search=2, pre_reorder_num_neighbors=12)
    assert (fast.distances >= single.distances).all()
    assert (fast.distances > single.distances).any()  # it did rescore more than one index would


def test_sharded_brute_force_is_exact(l2_data):
    x, q = l2_data
    index = ShardedIndex.build(x, 3, "squared_l2", kind="brute_force", num_actors=2, cpus_per_actor=0.5)
    try:
        _assert_same(index.search_batched(q, 10), annlib.BruteForce(x, "squared_l2").search_batched(q, 10))
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
        _assert_same(from_files.search_batched(q, 10), _single_like(from_files, x).search_batched(q, 10))
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
            _assert_same(loaded.search_batched(q, 10), expected)
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
        expected = _single_like(index, x).search_batched(q, 10)
        ray.kill(index.actors[1])
        _assert_same(index.search_batched(q, 10), expected)
        assert index.restarts == 1

        # Killed while a search is in flight: the search still returns the single index's results.
        many = np.repeat(q, 50, axis=0)
        expected_many = _single_like(index, x).search_batched(many, 10)
        out = {}
        worker = threading.Thread(target=lambda: out.update(r=index.search_batched(many, 10)))
        worker.start()
        ray.kill(index.actors[0])
        worker.join(timeout=120)
        assert not worker.is_alive()
        _assert_same(out["r"], expected_many)
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
