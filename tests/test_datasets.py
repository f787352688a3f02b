"""annlib.datasets: file formats round-trip, corrupt files are refused, downloads are atomic."""

from __future__ import annotations

import io
import pathlib
import urllib.error
import urllib.request

import h5py
import numpy as np
import pytest

from annlib import datasets
from annlib.errors import AnnlibError, DatasetError, FormatError

# ---------------------------------------------------------------------------------------------
# HDF5


def _small(rng, n=50, nq=7, dim=8, k=5):
    train = rng.standard_normal((n, dim)).astype(np.float32)
    test = rng.standard_normal((nq, dim)).astype(np.float32)
    neighbors = rng.integers(0, n, size=(nq, k)).astype(np.int32)
    distances = np.sort(rng.random((nq, k)).astype(np.float32), axis=1)
    return train, test, neighbors, distances


def test_hdf5_round_trip(tmp_path, rng):
    train, test, neighbors, distances = _small(rng)
    path = datasets.write_hdf5(
        tmp_path / "tiny-8-euclidean.hdf5", train, test, neighbors, distances, "euclidean", source="unit test", seed=3
    )
    ds = datasets.read_hdf5(path)
    assert ds.name == "tiny-8-euclidean"
    np.testing.assert_array_equal(ds.train, train)
    np.testing.assert_array_equal(ds.test, test)
    np.testing.assert_array_equal(ds.neighbors, neighbors)
    np.testing.assert_array_equal(ds.distances, distances)
    assert (ds.train.dtype, ds.neighbors.dtype, ds.distances.dtype) == (np.float32, np.int32, np.float32)
    assert (ds.distance, ds.metric, ds.dim) == ("euclidean", "squared_l2", 8)
    assert ds.attrs["type"] == "dense"
    assert ds.attrs["point_type"] == "float"
    assert ds.attrs["dimension"] == 8
    assert ds.attrs["source"] == "unit test"
    assert ds.attrs["seed"] == 3
    assert not list(tmp_path.glob("*.part")), "the temporary file must be gone"


@pytest.mark.parametrize(("distance", "metric"), [("angular", "cosine"), ("euclidean", "squared_l2"), ("dot", "dot")])
def test_hdf5_distance_maps_to_metric(tmp_path, rng, distance, metric):
    train, test, neighbors, distances = _small(rng)
    ds = datasets.read_hdf5(datasets.write_hdf5(tmp_path / "x.hdf5", train, test, neighbors, distances, distance))
    assert (ds.distance, ds.metric) == (distance, metric)


def test_hdf5_float16_storage_reads_as_float32(tmp_path, rng):
    train, test, neighbors, distances = _small(rng)
    path = datasets.write_hdf5(
        tmp_path / "half.hdf5", train.astype(np.float16), test.astype(np.float16), neighbors, distances, "angular"
    )
    with h5py.File(path, "r") as handle:
        assert handle["train"].dtype == np.float16
        assert handle["test"].dtype == np.float16
    ds = datasets.read_hdf5(path)
    assert ds.train.dtype == np.float32
    assert ds.test.dtype == np.float32
    np.testing.assert_array_equal(ds.train, train.astype(np.float16).astype(np.float32))


def test_hdf5_train_only(tmp_path, rng):
    train = rng.standard_normal((10, 3))
    ds = datasets.read_hdf5(datasets.write_hdf5(tmp_path / "t.hdf5", train, distance="dot"))
    assert ds.train.shape == (10, 3)
    assert ds.test is None
    assert ds.neighbors is None
    assert ds.distances is None


def test_hdf5_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.hdf5"
    with pytest.raises(DatasetError, match="nope.hdf5"):
        datasets.read_hdf5(missing)


def test_hdf5_not_hdf5_is_format_error(tmp_path):
    path = tmp_path / "fake.hdf5"
    path.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(FormatError, match="HDF5"):
        datasets.read_hdf5(path)


def test_hdf5_truncated_is_format_error(tmp_path, rng):
    train, test, neighbors, distances = _small(rng, n=2000, dim=32)
    path = datasets.write_hdf5(tmp_path / "t.hdf5", train, test, neighbors, distances, "angular")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError):
        datasets.read_hdf5(path)


def test_hdf5_without_train_is_format_error(tmp_path):
    path = tmp_path / "no-train.hdf5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("test", data=np.zeros((2, 3), np.float32))
    with pytest.raises(FormatError, match="'train'"):
        datasets.read_hdf5(path)


def test_hdf5_errors_are_annlib_and_value_errors(tmp_path):
    path = tmp_path / "bad.hdf5"
    path.write_bytes(b"garbage")
    with pytest.raises(AnnlibError):
        datasets.read_hdf5(path)
    with pytest.raises(ValueError, match="HDF5"):
        datasets.read_hdf5(path)


def test_write_hdf5_checks_arguments(tmp_path, rng):
    train, test, neighbors, distances = _small(rng)
    with pytest.raises(ValueError, match="distance must be one of"):
        datasets.write_hdf5(tmp_path / "a.hdf5", train, test, neighbors, distances, "hamming")
    with pytest.raises(ValueError, match=r"test must have shape \(nq, 8\)"):
        datasets.write_hdf5(tmp_path / "a.hdf5", train, test[:, :4], neighbors, distances, "angular")
    with pytest.raises(ValueError, match="distances must have the shape of neighbors"):
        datasets.write_hdf5(tmp_path / "a.hdf5", train, test, neighbors, distances[:, :2], "angular")
    with pytest.raises(ValueError, match="set by write_hdf5"):
        datasets.write_hdf5(tmp_path / "a.hdf5", train, test, neighbors, distances, "angular", dimension=3)
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.write_hdf5(tmp_path / "no" / "dir.hdf5", train, test, neighbors, distances, "angular")
    assert not list(tmp_path.iterdir())


def test_write_hdf5_replaces_existing_file(tmp_path, rng):
    path = tmp_path / "x.hdf5"
    datasets.write_hdf5(path, np.zeros((3, 2)), distance="dot")
    datasets.write_hdf5(path, np.ones((4, 2)), distance="dot")
    np.testing.assert_array_equal(datasets.read_hdf5(path).train, np.ones((4, 2)))
    assert [p.name for p in tmp_path.iterdir()] == ["x.hdf5"]


# ---------------------------------------------------------------------------------------------
# .fvecs / .ivecs / .bvecs


@pytest.mark.parametrize(("kind", "dtype"), [("fvecs", np.float32), ("ivecs", np.int32), ("bvecs", np.uint8)])
def test_vecs_round_trip(tmp_path, rng, kind, dtype):
    if kind == "fvecs":
        array = rng.standard_normal((13, 7)).astype(dtype)
    else:
        array = rng.integers(0, 256, size=(13, 7)).astype(dtype)
    path = tmp_path / f"x.{kind}"
    getattr(datasets, f"write_{kind}")(path, array)
    assert path.stat().st_size == 13 * (4 + 7 * np.dtype(dtype).itemsize)
    loaded = getattr(datasets, f"read_{kind}")(path)
    assert loaded.shape == (13, 7)
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded, array)


def test_fvecs_layout_is_texmex(tmp_path):
    path = tmp_path / "x.fvecs"
    datasets.write_fvecs(path, np.array([[1.5, -2.0]], dtype=np.float32))
    raw = path.read_bytes()
    assert np.frombuffer(raw[:4], "<i4")[0] == 2
    np.testing.assert_array_equal(np.frombuffer(raw[4:], "<f4"), [1.5, -2.0])


def test_read_fvecs_is_memory_mapped(tmp_path, rng):
    path = tmp_path / "x.fvecs"
    datasets.write_fvecs(path, rng.standard_normal((4, 3)))
    loaded = datasets.read_fvecs(path)
    assert isinstance(loaded.base, np.memmap) or isinstance(loaded, np.memmap)
    assert not loaded.flags.writeable


@pytest.mark.parametrize("kind", ["fvecs", "ivecs", "bvecs"])
def test_vecs_truncated_is_format_error(tmp_path, kind):
    path = tmp_path / f"x.{kind}"
    getattr(datasets, f"write_{kind}")(path, np.arange(30).reshape(5, 6))
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(FormatError, match="not a multiple of the row size"):
        getattr(datasets, f"read_{kind}")(path)


def test_fvecs_inconsistent_row_header_is_format_error(tmp_path):
    path = tmp_path / "x.fvecs"
    datasets.write_fvecs(path, np.zeros((4, 3)))
    raw = bytearray(path.read_bytes())
    raw[2 * 16 : 2 * 16 + 4] = np.array([5], "<i4").tobytes()  # row 2 claims dim 5
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="row 2 has dim 5"):
        datasets.read_fvecs(path)
    assert datasets.read_fvecs(path, check_rows=False).shape == (4, 3)


@pytest.mark.parametrize("payload", [b"", b"\x01\x00", np.array([-4], "<i4").tobytes()])
def test_fvecs_bad_header_is_format_error(tmp_path, payload):
    path = tmp_path / "x.fvecs"
    path.write_bytes(payload)
    with pytest.raises(FormatError):
        datasets.read_fvecs(path)


def test_vecs_missing_file_is_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="missing.fvecs"):
        datasets.read_fvecs(tmp_path / "missing.fvecs")


def test_vecs_writers_check_values(tmp_path):
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        datasets.write_bvecs(tmp_path / "x.bvecs", np.array([[0, 256]]))
    with pytest.raises(TypeError, match="integer"):
        datasets.write_ivecs(tmp_path / "x.ivecs", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        datasets.write_fvecs(tmp_path / "x.fvecs", np.zeros(3))
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Registry, load, list


def test_registry_entries_are_consistent():
    for name, entry in datasets.REGISTRY.items():
        assert entry.name == name
        assert entry.metric in ("cosine", "squared_l2", "dot")
        if entry.url is not None:
            assert entry.url == f"https://ann-benchmarks.com/{name}.hdf5"
    assert datasets.REGISTRY["sift-128-euclidean"].dim == 128
    assert datasets.REGISTRY["glove-100-angular"].metric == "cosine"


def test_load_unknown_name_lists_known_names():
    with pytest.raises(DatasetError, match="glove-100-angular") as info:
        datasets.load("no-such-dataset")
    assert "sift-128-euclidean" in str(info.value)


def test_load_registry_name_from_data_dir(tmp_path, rng, monkeypatch):
    monkeypatch.setenv("ANNLIB_DATA_DIR", str(tmp_path))
    train, test, neighbors, distances = _small(rng, dim=25)
    datasets.write_hdf5(tmp_path / "glove-25-angular.hdf5", train, test, neighbors, distances, "angular")
    ds = datasets.load("glove-25-angular")
    assert ds.name == "glove-25-angular"
    assert ds.metric == "cosine"
    np.testing.assert_array_equal(ds.train, train)
    listed = {row["name"]: row for row in datasets.list_datasets()}
    assert listed["glove-25-angular"]["path"] == str(tmp_path / "glove-25-angular.hdf5")
    assert listed["glove-25-angular"]["dim"] == 25


def test_load_registry_name_absent_says_how_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNLIB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DatasetError, match="annlib datasets download gist-960-euclidean"):
        datasets.load("gist-960-euclidean")


def test_load_paths_of_each_format(tmp_path, rng):
    array = rng.standard_normal((9, 4)).astype(np.float32)
    np.save(tmp_path / "a.npy", array)
    datasets.write_fvecs(tmp_path / "a.fvecs", array)
    datasets.write_bvecs(tmp_path / "a.bvecs", np.arange(36).reshape(9, 4))
    datasets.write_hdf5(tmp_path / "a.h5", array, distance="euclidean")
    for name in ("a.npy", "a.fvecs", "a.h5"):
        ds = datasets.load(tmp_path / name)
        assert ds.train.dtype == np.float32
        np.testing.assert_array_equal(ds.train, array)
    np.testing.assert_array_equal(datasets.load(str(tmp_path / "a.bvecs")).train, np.arange(36).reshape(9, 4))
    assert datasets.load(tmp_path / "a.npy").test is None


def test_load_unsupported_or_missing_path(tmp_path):
    (tmp_path / "a.txt").write_text("1 2 3")
    with pytest.raises(DatasetError, match="unsupported file type"):
        datasets.load(tmp_path / "a.txt")
    with pytest.raises(DatasetError, match="not found"):
        datasets.load(tmp_path / "missing.hdf5")


def test_load_embedded_sample(real_sample):
    ds = datasets.load("debian-minilm-10k")
    assert ds.train.shape == (10_000, 384)
    assert ds.test.shape == (200, 384)
    assert ds.neighbors.shape == (200, 100)
    assert ds.train.dtype == np.float32
    assert (ds.distance, ds.metric) == ("angular", "cosine")
    np.testing.assert_array_equal(ds.train, real_sample["train"])
    assert np.all(np.diff(ds.distances, axis=1) >= 0)
    # The stored ground truth is exact for the float32 arrays as loaded.
    train = ds.train.astype(np.float64)
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    test = ds.test[:5].astype(np.float64)
    test /= np.linalg.norm(test, axis=1, keepdims=True)
    expected = 1.0 - test @ train.T
    np.testing.assert_allclose(
        np.take_along_axis(expected, ds.neighbors[:5].astype(np.int64), 1), ds.distances[:5], atol=1e-6
    )
    np.testing.assert_array_equal(np.argmin(expected, axis=1), ds.neighbors[:5, 0])


def test_embedded_sample_is_small():
    path = pathlib.Path(datasets.__file__).resolve().parents[2] / "datasets" / "debian-minilm-10k.hdf5"
    if not path.exists():
        pytest.skip(f"embedded sample not present: {path}")
    assert path.stat().st_size <= 10 * 1000 * 1000


# ---------------------------------------------------------------------------------------------
# Download (no network: urlopen is replaced)


class _FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes, fail_after: int | None = None):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}
        self._fail_after = fail_after

    def read(self, size=-1):
        if self._fail_after is not None and self.tell() >= self._fail_after:
            raise TimeoutError("timed out")
        return super().read(min(size, 4096) if size and size > 0 else 4096)


def _hdf5_bytes(tmp_path, rng, dim) -> bytes:
    train, test, neighbors, distances = _small(rng, dim=dim)
    source = datasets.write_hdf5(tmp_path / "served.hdf5", train, test, neighbors, distances, "euclidean")
    payload = source.read_bytes()
    source.unlink()
    return payload


def _serve(monkeypatch, payload: bytes, calls: list, fail_after: int | None = None):
    def fake_urlopen(url, timeout=None):
        calls.append(url)
        return _FakeResponse(payload, fail_after)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)


def test_download_streams_then_skips_valid_file(tmp_path, rng, monkeypatch):
    calls = []
    _serve(monkeypatch, _hdf5_bytes(tmp_path, rng, dim=128), calls)
    target = tmp_path / "data"
    progress = []
    path = datasets.download("sift-128-euclidean", target, progress=lambda done, total: progress.append((done, total)))
    assert path == target / "sift-128-euclidean.hdf5"
    assert calls == ["https://ann-benchmarks.com/sift-128-euclidean.hdf5"]
    assert progress[-1][0] == progress[-1][1] == path.stat().st_size
    assert datasets.read_hdf5(path).dim == 128
    assert datasets.download("sift-128-euclidean", target) == path
    assert len(calls) == 1, "a valid file present must not be downloaded again"
    assert sorted(p.name for p in target.iterdir()) == ["sift-128-euclidean.hdf5"]


def test_download_default_dir_is_data_dir(tmp_path, rng, monkeypatch):
    monkeypatch.setenv("ANNLIB_DATA_DIR", str(tmp_path / "env"))
    _serve(monkeypatch, _hdf5_bytes(tmp_path, rng, dim=25), [])
    path = datasets.download("glove-25-angular")
    assert path == tmp_path / "env" / "glove-25-angular.hdf5"
    assert datasets.load("glove-25-angular").dim == 25


def test_download_wrong_dimension_is_rejected_and_removed(tmp_path, rng, monkeypatch):
    _serve(monkeypatch, _hdf5_bytes(tmp_path, rng, dim=16), [])
    with pytest.raises(FormatError, match=r"\(n, 128\)"):
        datasets.download("sift-128-euclidean", tmp_path / "d")
    assert not list((tmp_path / "d").iterdir())


def test_download_not_hdf5_is_rejected_and_removed(tmp_path, monkeypatch):
    _serve(monkeypatch, b"<html>not found</html>", [])
    with pytest.raises(FormatError):
        datasets.download("sift-128-euclidean", tmp_path)
    assert not list(tmp_path.iterdir())


def test_download_offline_is_clear_dataset_error(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError, match="cannot download https://ann-benchmarks.com/glove-25-angular.hdf5"):
        datasets.download("glove-25-angular", tmp_path)
    assert not list(tmp_path.iterdir())


def test_download_interrupted_leaves_no_partial_file(tmp_path, rng, monkeypatch):
    payload = _hdf5_bytes(tmp_path, rng, dim=128)
    _serve(monkeypatch, payload, [], fail_after=len(payload) // 2)
    with pytest.raises(DatasetError, match="timed out"):
        datasets.download("sift-128-euclidean", tmp_path)
    assert not list(tmp_path.iterdir())


def test_download_replaces_corrupt_existing_file(tmp_path, rng, monkeypatch):
    (tmp_path / "sift-128-euclidean.hdf5").write_bytes(b"partial junk")
    calls = []
    _serve(monkeypatch, _hdf5_bytes(tmp_path, rng, dim=128), calls)
    path = datasets.download("sift-128-euclidean", tmp_path)
    assert len(calls) == 1
    assert datasets.read_hdf5(path).dim == 128


def test_download_rejects_unknown_and_local_only_names(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        datasets.download("imagenet-4096-angular", tmp_path)
    with pytest.raises(DatasetError, match="local-only"):
        datasets.download("debian-minilm-10k", tmp_path)


# ---------------------------------------------------------------------------------------------
# Ground truth (through annlib.BruteForce)


def _numpy_truth(train, test, k, metric):
    train = train.astype(np.float64)
    test = test.astype(np.float64)
    if metric == "cosine":
        train = train / np.linalg.norm(train, axis=1, keepdims=True)
        test = test / np.linalg.norm(test, axis=1, keepdims=True)
        dist = 1.0 - test @ train.T
    elif metric == "squared_l2":
        dist = np.sqrt(((test[:, None, :] - train[None, :, :]) ** 2).sum(-1))
    else:
        dist = -(test @ train.T)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(dist, order, axis=1)
    return order, (-values if metric == "dot" else values)


@pytest.mark.parametrize("metric", ["cosine", "squared_l2", "dot"])
def test_ground_truth_matches_numpy(rng, metric):
    train = rng.standard_normal((300, 16)).astype(np.float32)
    test = rng.standard_normal((20, 16)).astype(np.float32)
    neighbors, distances = datasets.ground_truth(train, test, 10, metric)
    assert neighbors.dtype == np.int32
    assert distances.dtype == np.float32
    assert neighbors.shape == distances.shape == (20, 10)
    expected_ids, expected_dist = _numpy_truth(train, test, 10, metric)
    np.testing.assert_allclose(distances, expected_dist, rtol=1e-4, atol=1e-4)
    assert (neighbors == expected_ids).mean() > 0.99  # random data: ties are (almost surely) absent


def test_ground_truth_accepts_ann_benchmarks_names(rng):
    train = rng.standard_normal((50, 4)).astype(np.float32)
    ids_a, dist_a = datasets.ground_truth(train, train[:3], 5, "angular")
    ids_b, dist_b = datasets.ground_truth(train, train[:3], 5, "cosine")
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(dist_a, dist_b)
    np.testing.assert_array_equal(ids_a[:, 0], [0, 1, 2])


def test_ground_truth_checks_arguments(rng):
    train = rng.standard_normal((5, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="at most the number of train points"):
        datasets.ground_truth(train, train, 6, "dot")
    with pytest.raises(ValueError, match="metric"):
        datasets.ground_truth(train, train, 2, "hamming")
    with pytest.raises(ValueError, match=r"test must have shape \(n, 4\)"):
        datasets.ground_truth(train, train[:, :3], 2, "dot")


def test_ground_truth_reproduces_embedded_sample(real_sample):
    neighbors, distances = datasets.ground_truth(real_sample["train"], real_sample["test"][:50], 100, "angular")
    np.testing.assert_allclose(distances, real_sample["distances"][:50], atol=2e-5)
    assert (neighbors == real_sample["neighbors"][:50]).mean() > 0.99


# ---------------------------------------------------------------------------------------------
# .npy and the package surface


def test_npy_round_trip_and_refusals(tmp_path, rng):
    array = rng.standard_normal((6, 3)).astype(np.float64)
    path = datasets.write_npy(tmp_path / "a.npy", array)
    assert np.load(path).dtype == np.float64  # stored as given
    loaded = datasets.read_npy(path)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array.astype(np.float32))
    with pytest.raises(ValueError, match="2-D"):
        datasets.write_npy(tmp_path / "b.npy", np.zeros(3))
    with pytest.raises(TypeError, match="real numeric"):
        datasets.write_npy(tmp_path / "b.npy", np.array([["x"]]))
    np.save(tmp_path / "objects.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match="objects.npy"):
        datasets.read_npy(tmp_path / "objects.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "objects.npy"]


def test_package_surface():
    assert datasets.load_dataset is datasets.load
    assert all(hasattr(datasets, name) for name in datasets.__all__)
    assert {"read_hdf5", "load", "load_dataset", "download", "ground_truth", "Dataset", "list_datasets"} <= set(
        datasets.__all__
    )
