"""ShardedIndex built from data files and from a ``ray.data.Dataset``, and batch search of a
Dataset of queries: every input gives the index the array gives, one index's results.

One ``ray.init(num_cpus=2)`` shared with the other sharding modules (``ray_cluster`` in
conftest.py). Skips cleanly when Ray is absent; the Dataset tests skip when Ray Data's own
dependencies (pandas, pyarrow) are missing.
"""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import annlib  # noqa: E402
from annlib.datasets import formats  # noqa: E402
from annlib.distributed import ShardedIndex, _sources  # noqa: E402
from annlib.errors import DatasetError, FormatError  # noqa: E402

from _sharded import assert_same, far_clusters, single_like  # noqa: E402

KW = dict(num_actors=2, cpus_per_actor=0.25, num_leaves=30, num_leaves_to_search=3, reorder=20)


@pytest.fixture(scope="module", autouse=True)
def cluster(ray_cluster):
    yield ray_cluster


@pytest.fixture(scope="module")
def data():
    return far_clusters(23, 2400, 60, 24)


@pytest.fixture(scope="module")
def files(data, tmp_path_factory):
    """The rows in three files of three formats: .npy, .fvecs and an ann-benchmarks .hdf5."""
    x, _ = data
    d = tmp_path_factory.mktemp("parts")
    paths = [str(d / "a.npy"), str(d / "b.fvecs"), str(d / "c.hdf5")]
    np.save(paths[0], x[:700])
    formats.write_fvecs(paths[1], x[700:1500])
    formats.write_hdf5(paths[2], x[1500:], distance="euclidean")
    return paths


def test_every_file_format_reads_the_rows_asked_for(data, files, tmp_path):
    # What a shard's actor reads: whole files, row lists and contiguous row ranges, as float32.
    x, _ = data
    for path, rows in zip(files, (x[:700], x[700:1500], x[1500:])):
        assert _sources.probe(("file", path, None)) == (len(rows), 24)
        np.testing.assert_array_equal(_sources.read(("file", path, None))[0], rows)
        np.testing.assert_array_equal(_sources.read(("file", path, [1, 5, 6]))[0], rows[[1, 5, 6]])
        np.testing.assert_array_equal(_sources.read(("file", path, range(3, 9)), np.array([0, 2]))[0], rows[[3, 5]])
    raw = np.random.default_rng(2).integers(0, 256, (50, 16)).astype(np.uint8)
    formats.write_bvecs(tmp_path / "a.bvecs", raw)
    got, ids = _sources.read(("file", str(tmp_path / "a.bvecs"), range(10, 20)))
    assert got.dtype == np.float32 and ids is None
    np.testing.assert_array_equal(got, raw[10:20].astype(np.float32))


@pytest.mark.parametrize(("num_shards", "shard_by", "ranges"), [
    (2, "rows", [(0, 1200), (1200, 1200)]),  # shards cut across the files
    (3, "partition", None),
])
def test_build_from_files_of_three_formats_equals_one_index(data, files, num_shards, shard_by, ranges):
    x, q = data
    index = ShardedIndex.build(files, num_shards, "squared_l2", shard_by=shard_by, progress=True, **KW)
    try:
        if ranges is not None:
            assert index.shard_ranges == ranges
        assert index.n == 2400 and index.dim == 24
        assert_same(index.search_batched(q, 10), single_like(index, x).search_batched(q, 10))
    finally:
        index.close()


def test_bad_files_are_refused_clearly(files, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        ShardedIndex.build([files[0], str(tmp_path / "missing.npy")], None, "squared_l2", **KW)
    (tmp_path / "bad.fvecs").write_bytes(b"\x04\x00\x00\x00abc")
    with pytest.raises(FormatError, match="not a multiple"):
        ShardedIndex.build([files[0], str(tmp_path / "bad.fvecs")], None, "squared_l2", **KW)
    np.save(tmp_path / "other_dim.npy", np.zeros((10, 5), np.float32))
    with pytest.raises(ValueError, match="one dimension"):
        ShardedIndex.build([files[0], str(tmp_path / "other_dim.npy")], None, "squared_l2", **KW)
    with pytest.raises(ValueError, match="not a data file"):
        ShardedIndex.build([files[0], str(tmp_path / "notes.txt")], None, "squared_l2", **KW)


@pytest.fixture(scope="module")
def ray_data():
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import ray.data  # noqa: PLC0415

    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray.data


def test_build_from_a_dataset_with_and_without_an_ids_column(ray_data, data):
    x, q = data
    pa = pytest.importorskip("pyarrow")
    # Four blocks; vectors as Arrow fixed-size lists (what Parquet embeddings read as).
    tables = [pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array(x[a:b].ravel()), 24),
                        "key": pa.array(1000 + 3 * np.arange(a, b))}) for a, b in ((0, 500), (500, 1300),
                                                                                 (1300, 1900), (1900, 2400))]
    ds = ray_data.from_arrow(tables)
    # Rows: 3 shards cut across 4 blocks, ids by row; partitions: ids from the column.
    for shard_by, ids_column in (("rows", None), ("partition", "key")):
        index = ShardedIndex.build(ds, 3, "squared_l2", shard_by=shard_by, column="emb", ids_column=ids_column, **KW)
        try:
            got = index.search_batched(q, 10)
            expected = single_like(index, x).search_batched(q, 10)
            np.testing.assert_array_equal(got.ids, expected.ids if ids_column is None else 1000 + 3 * expected.ids)
            np.testing.assert_array_equal(got.distances, expected.distances)
            if ids_column is not None:  # user ids from the column route writes too
                assert index.delete([1000, 1003]) == 2
        finally:
            index.close()


def test_a_dataset_without_the_vector_column_is_refused(ray_data, data):
    ds = ray_data.from_items([{"v": row} for row in data[0][:100]])
    with pytest.raises(ValueError, match="no column 'vector'"):
        ShardedIndex.build(ds, 2, "squared_l2", **KW)


def test_search_dataset_adds_the_results_of_search_batched(ray_data, data):
    x, q = data
    index = ShardedIndex.build(x, 3, "squared_l2", shard_by="partition", **KW)
    try:
        ds = ray_data.from_items([{"vector": v, "qid": i} for i, v in enumerate(q)], override_num_blocks=3)
        out = index.search_dataset(ds, 7, batch_size=16, leaves_to_search=5).take_all()
        out.sort(key=lambda row: row["qid"])
        want = index.search_batched(q, 7, leaves_to_search=5)
        np.testing.assert_array_equal(np.stack([r["neighbors"] for r in out]), want.ids)
        np.testing.assert_array_equal(np.stack([r["distances"] for r in out]), want.distances)
        assert [r["qid"] for r in out] == list(range(len(q)))
        with pytest.raises(ValueError, match="no column 'emb'"):
            index.search_dataset(ds, 7, column="emb")
        with pytest.raises(TypeError, match="ray.data.Dataset"):
            index.search_dataset(q, 7)
    finally:
        index.close()
