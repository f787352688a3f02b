"""Benchmark datasets: reading, writing, fetching and ground truth for the files ANN benchmarks use.

Formats: the ann-benchmarks HDF5 layout and TEXMEX ``.fvecs``/``.ivecs``/``.bvecs``.

Files follow the ann-benchmarks layout (``train``, ``test``, ``neighbors``, ``distances`` and the
attribute ``distance``); the ann-benchmarks distance names map to annlib metrics as
``angular -> "cosine"``, ``euclidean -> "squared_l2"`` and ``dot -> "dot"``. Stored distances keep the
ann-benchmarks convention of the file: ``1 - cos`` for angular, the (not squared) L2 distance for
euclidean and the inner product (a similarity, larger is better) for dot.

Every writer is atomic: it writes a temporary file in the target directory, fsyncs it and
``os.replace``-s it into place, so a crash or an interrupted download never leaves a partial file
under the final name.

Examples
--------
>>> import annlib.datasets as ds
>>> sample = ds.load("debian-minilm-10k")            # doctest: +SKIP
>>> sample.train.shape, sample.metric                 # doctest: +SKIP
((10000, 384), 'cosine')
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from annlib import _validate
from annlib.errors import DatasetError, FormatError

__all__ = [
    "REGISTRY",
    "Dataset",
    "RegistryEntry",
    "data_dirs",
    "download",
    "ground_truth",
    "list_datasets",
    "load",
    "read_bvecs",
    "read_fvecs",
    "read_hdf5",
    "read_ivecs",
    "write_bvecs",
    "write_fvecs",
    "write_hdf5",
    "write_ivecs",
]

#: ann-benchmarks ``distance`` attribute -> annlib metric.
DISTANCE_TO_METRIC = {"angular": "cosine", "euclidean": "squared_l2", "dot": "dot"}
#: annlib metric -> ann-benchmarks ``distance`` attribute.
METRIC_TO_DISTANCE = {metric: distance for distance, metric in DISTANCE_TO_METRIC.items()}

_BASE_URL = "https://ann-benchmarks.com"
_DOWNLOAD_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60.0
_RESERVED_ATTRS = ("type", "distance", "point_type", "dimension")


# --------------------------------------------------------------------------------------------------
# Types


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A benchmark dataset held in memory.

    Parameters
    ----------
    name : str
        Registry name or file stem.
    train : numpy.ndarray
        float32 ``[n, dim]`` database points (float16 storage is widened on read).
    test : numpy.ndarray or None
        float32 ``[nq, dim]`` queries; None for train-only files (``.npy``, ``.fvecs``).
    neighbors : numpy.ndarray or None
        int32 ``[nq, k_gt]`` exact neighbor ids, nearest first.
    distances : numpy.ndarray or None
        float32 ``[nq, k_gt]`` their distances in the file's ``distance`` convention.
    distance : str or None
        The file's ann-benchmarks ``distance`` attribute ("angular", "euclidean", "dot", ...).
    metric : str or None
        The annlib metric for ``distance``; None when annlib has no equivalent (e.g. "jaccard").
    attrs : Mapping
        All HDF5 attributes of the file, as plain Python values.
    """

    name: str
    train: np.ndarray
    test: np.ndarray | None = None
    neighbors: np.ndarray | None = None
    distances: np.ndarray | None = None
    distance: str | None = None
    metric: str | None = None
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Number of dimensions of ``train``."""
        return int(self.train.shape[1])


@dataclasses.dataclass(frozen=True)
class RegistryEntry:
    """One known dataset: where it comes from and what it must look like.

    Parameters
    ----------
    name : str
        ann-benchmarks name, ``<name>-<dim>-<distance>``.
    url : str or None
        Download address; None for local-only datasets.
    dim : int
        Number of dimensions stored in the file.
    distance : str
        ann-benchmarks ``distance`` attribute of the file.
    n_train : int
        Number of ``train`` points.
    n_test : int
        Number of ``test`` queries.
    """

    name: str
    url: str | None
    dim: int
    distance: str
    n_train: int
    n_test: int

    @property
    def metric(self) -> str:
        """The annlib metric for this dataset."""
        return DISTANCE_TO_METRIC[self.distance]


def _remote(name: str, dim: int, distance: str, n_train: int, n_test: int) -> RegistryEntry:
    return RegistryEntry(name, f"{_BASE_URL}/{name}.hdf5", dim, distance, n_train, n_test)


#: Known datasets. ``lastfm-64-dot`` is stored by ann-benchmarks as 65-d "angular" vectors (the
#: inner-product problem reduced to cosine by one extra coordinate), so that is what it must hold.
REGISTRY: dict[str, RegistryEntry] = {
    entry.name: entry
    for entry in (
        _remote("glove-25-angular", 25, "angular", 1_183_514, 10_000),
        _remote("glove-50-angular", 50, "angular", 1_183_514, 10_000),
        _remote("glove-100-angular", 100, "angular", 1_183_514, 10_000),
        _remote("glove-200-angular", 200, "angular", 1_183_514, 10_000),
        _remote("sift-128-euclidean", 128, "euclidean", 1_000_000, 10_000),
        _remote("fashion-mnist-784-euclidean", 784, "euclidean", 60_000, 10_000),
        _remote("mnist-784-euclidean", 784, "euclidean", 60_000, 10_000),
        _remote("nytimes-256-angular", 256, "angular", 290_000, 10_000),
        _remote("gist-960-euclidean", 960, "euclidean", 1_000_000, 1_000),
        _remote("deep-image-96-angular", 96, "angular", 9_990_000, 10_000),
        _remote("lastfm-64-dot", 65, "angular", 292_385, 50_000),
        _remote("coco-i2i-512-angular", 512, "angular", 113_287, 10_000),
        _remote("coco-t2i-512-angular", 512, "angular", 113_287, 10_000),
        # Local only: the committed sample (datasets/make_sample.py) and the shared real dataset.
        RegistryEntry("debian-minilm-10k", None, 384, "angular", 10_000, 200),
        RegistryEntry("debian-minilm-384-angular", None, 384, "angular", 50_000, 1_000),
    )
}


# --------------------------------------------------------------------------------------------------
# Atomic writes


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; on success fsync it and move it into place."""
    final = pathlib.Path(path)
    directory = final.parent if str(final.parent) else pathlib.Path(".")
    if not directory.is_dir():
        raise DatasetError(f"cannot write {final}: directory {directory} does not exist")
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{final.name}.", suffix=".part")
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, final)
        _fsync_dir(directory)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: pathlib.Path) -> None:
    # Makes the rename durable; directories cannot be opened this way on Windows.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# HDF5 (ann-benchmarks layout)


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a dependency
        raise DatasetError("reading HDF5 datasets needs h5py: pip install h5py") from exc
    return h5py


def _attr_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _metric_for(distance: str | None) -> str | None:
    return DISTANCE_TO_METRIC.get(distance.lower()) if distance else None


def read_hdf5(path: str | os.PathLike, name: str | None = None) -> Dataset:
    """Read an ann-benchmarks HDF5 file into memory.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.hdf5`` file.
    name : str, optional
        Dataset name; defaults to the file stem.

    Returns
    -------
    Dataset
        ``train``/``test`` as float32 (float16 storage widened), ``neighbors`` int32, ``distances``
        float32; ``test``, ``neighbors`` and ``distances`` are None when the file lacks them.

    Raises
    ------
    DatasetError
        The file does not exist.
    FormatError
        The file is not HDF5, lacks ``train``, or holds arrays of the wrong rank, dtype or shape.

    Examples
    --------
    >>> ds = read_hdf5("glove-25-angular.hdf5")        # doctest: +SKIP
    >>> ds.metric                                       # doctest: +SKIP
    'cosine'
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    h5py = _h5py()
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"{path} is not a readable HDF5 file ({exc})") from exc
    with handle:
        if "train" not in handle:
            raise FormatError(f"{path} has no 'train' dataset (found: {sorted(handle.keys())})")
        attrs = {key: _attr_value(value) for key, value in handle.attrs.items()}
        train = _read_matrix(handle, "train", path, np.float32)
        test = _read_matrix(handle, "test", path, np.float32) if "test" in handle else None
        neighbors = _read_matrix(handle, "neighbors", path, np.int32) if "neighbors" in handle else None
        distances = _read_matrix(handle, "distances", path, np.float32) if "distances" in handle else None
    if test is not None and test.shape[1] != train.shape[1]:
        raise FormatError(f"{path}: 'test' has dim {test.shape[1]} but 'train' has dim {train.shape[1]}")
    if neighbors is not None and distances is not None and neighbors.shape != distances.shape:
        raise FormatError(
            f"{path}: 'neighbors' has shape {neighbors.shape} but 'distances' has shape {distances.shape}"
        )
    if neighbors is not None and test is not None and neighbors.shape[0] != test.shape[0]:
        raise FormatError(f"{path}: 'neighbors' has {neighbors.shape[0]} rows but 'test' has {test.shape[0]}")
    distance = attrs.get("distance")
    distance = str(distance) if distance is not None else None
    return Dataset(
        name=name or path.stem,
        train=train,
        test=test,
        neighbors=neighbors,
        distances=distances,
        distance=distance,
        metric=_metric_for(distance),
        attrs=attrs,
    )


def _read_matrix(handle, key: str, path: pathlib.Path, dtype) -> np.ndarray:
    node = handle[key]
    if not hasattr(node, "dtype") or node.ndim != 2:
        shape = getattr(node, "shape", "a group")
        raise FormatError(f"{path}: '{key}' must be a 2-D array, got {shape}")
    kind = node.dtype.kind
    wanted = np.dtype(dtype).kind
    if (wanted == "f" and kind not in "fiu") or (wanted == "i" and kind not in "iu"):
        raise FormatError(f"{path}: '{key}' must hold {'numbers' if wanted == 'f' else 'integers'}, got {node.dtype}")
    try:
        return np.asarray(node[()], dtype=dtype)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read '{key}' ({exc})") from exc


def _as_stored_floats(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, dim), got shape {array.shape}")
    if array.dtype in (np.float16, np.float32):
        return np.ascontiguousarray(array)
    if array.dtype.kind in "fiu" and array.dtype != np.bool_:
        return np.ascontiguousarray(array, dtype=np.float32)
    raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")


def write_hdf5(
    path: str | os.PathLike,
    train,
    test=None,
    neighbors=None,
    distances=None,
    distance: str = "angular",
    **attrs: Any,
) -> pathlib.Path:
    """Write an ann-benchmarks HDF5 file atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its directory must exist. Replaced atomically if present.
    train : array_like
        ``[n, dim]`` points. float16 and float32 are stored as given; other real dtypes as float32.
    test : array_like, optional
        ``[nq, dim]`` queries, stored like ``train``.
    neighbors : array_like, optional
        ``[nq, k]`` ids, stored as int32.
    distances : array_like, optional
        ``[nq, k]`` distances in the ``distance`` convention, stored as float32.
    distance : {"angular", "euclidean", "dot"}
        ann-benchmarks distance name (annlib names "cosine"/"squared_l2" are accepted and mapped).
    **attrs
        Extra file attributes (``source``, provenance...). ``type``, ``point_type`` and
        ``dimension`` are set by this function and may not be given.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    ValueError
        Shapes disagree, or ``distance`` or an attribute name is not allowed.
    TypeError
        An array is not numeric.
    DatasetError
        The destination directory does not exist.

    Examples
    --------
    >>> write_hdf5("tiny-2-euclidean.hdf5", np.eye(2), np.eye(2),
    ...            [[0], [1]], [[0.0], [0.0]], "euclidean")   # doctest: +SKIP
    """
    distance = METRIC_TO_DISTANCE.get(distance, distance)
    if distance not in DISTANCE_TO_METRIC:
        raise ValueError(f"distance must be one of {sorted(DISTANCE_TO_METRIC)}, got {distance!r}")
    reserved = sorted(set(attrs) & set(_RESERVED_ATTRS))
    if reserved:
        raise ValueError(f"attributes {reserved} are set by write_hdf5 and cannot be given")
    arrays = {"train": _as_stored_floats(train, "train")}
    dim = arrays["train"].shape[1]
    if test is not None:
        arrays["test"] = _as_stored_floats(test, "test")
        if arrays["test"].shape[1] != dim:
            raise ValueError(f"test must have shape (nq, {dim}), got {arrays['test'].shape}")
    if (neighbors is None) != (distances is None):
        raise ValueError("neighbors and distances must be given together")
    if neighbors is not None:
        if test is None:
            raise ValueError("neighbors and distances need test queries")
        ids = np.asarray(neighbors)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"neighbors must be an integer array, got dtype {ids.dtype}")
        dists = np.asarray(distances)
        if dists.dtype.kind not in "fiu" or dists.dtype == np.bool_:
            raise TypeError(f"distances must be a real numeric array, got dtype {dists.dtype}")
        expected = (arrays["test"].shape[0],)
        if ids.ndim != 2 or ids.shape[0] != expected[0]:
            raise ValueError(f"neighbors must have shape ({expected[0]}, k), got {ids.shape}")
        if dists.shape != ids.shape:
            raise ValueError(f"distances must have the shape of neighbors {ids.shape}, got {dists.shape}")
        arrays["neighbors"] = np.ascontiguousarray(ids, dtype=np.int32)
        arrays["distances"] = np.ascontiguousarray(dists, dtype=np.float32)
    h5py = _h5py()
    with _atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["type"] = "dense"
        handle.attrs["distance"] = distance
        handle.attrs["point_type"] = "float"
        handle.attrs["dimension"] = dim
        for key, value in attrs.items():
            handle.attrs[key] = value
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
    return pathlib.Path(path)


# --------------------------------------------------------------------------------------------------
# TEXMEX .fvecs / .ivecs / .bvecs: each row is a little-endian int32 dim, then dim values.

_VECS = {"fvecs": np.dtype("<f4"), "ivecs": np.dtype("<i4"), "bvecs": np.dtype("u1")}


def _read_vecs(path: str | os.PathLike, kind: str, check_rows: bool) -> np.ndarray:
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"{kind} file not found: {path}")
    dtype = _VECS[kind]
    size = path.stat().st_size
    if size < 4:
        raise FormatError(f"{path} is too small to be a {kind} file ({size} bytes; a row needs a 4-byte header)")
    dim = int(np.fromfile(path, dtype="<i4", count=1)[0])
    if dim <= 0:
        raise FormatError(f"{path}: first row header says dim={dim}; it must be a positive int32")
    row_bytes = 4 + dim * dtype.itemsize
    if size % row_bytes:
        raise FormatError(
            f"{path}: size {size} bytes is not a multiple of the row size {row_bytes} "
            f"(4-byte header + {dim} x {dtype.itemsize}-byte values): truncated or not a {kind} file"
        )
    n = size // row_bytes
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, row_bytes))
    if check_rows:
        headers = np.ascontiguousarray(raw[:, :4]).view("<i4").ravel()
        bad = np.flatnonzero(headers != dim)
        if bad.size:
            row = int(bad[0])
            raise FormatError(
                f"{path}: row {row} has dim {int(headers[row])} but row 0 has dim {dim}: corrupt or not a {kind} file"
            )
    if dtype.itemsize == 1:
        return raw[:, 4:]
    words = np.memmap(path, dtype=dtype, mode="r", shape=(n, 1 + dim))
    return words[:, 1:]


def read_fvecs(path: str | os.PathLike, check_rows: bool = True) -> np.ndarray:
    """Memory-map a TEXMEX ``.fvecs`` file (rows of int32 dim, then dim float32).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    check_rows : bool, default True
        Check every row's dim header (reads one int per row; turn off for huge files whose size
        check is enough).

    Returns
    -------
    numpy.ndarray
        A read-only ``[n, dim]`` float32 view of the mapped file (not C-contiguous: every row is
        preceded by its header; ``np.ascontiguousarray`` copies it).

    Raises
    ------
    DatasetError
        The file does not exist.
    FormatError
        Empty, truncated (size not a multiple of the row size) or a row with a different dim.

    Examples
    --------
    >>> base = read_fvecs("sift_base.fvecs")   # doctest: +SKIP
    >>> base.shape                              # doctest: +SKIP
    (1000000, 128)
    """
    return _read_vecs(path, "fvecs", check_rows)


def read_ivecs(path: str | os.PathLike, check_rows: bool = True) -> np.ndarray:
    """Memory-map a TEXMEX ``.ivecs`` file (rows of int32 dim, then dim int32); see :func:`read_fvecs`.

    Returns
    -------
    numpy.ndarray
        A read-only ``[n, dim]`` int32 view of the mapped file.

    Raises
    ------
    DatasetError
        The file does not exist.
    FormatError
        Empty, truncated or a row with a different dim.
    """
    return _read_vecs(path, "ivecs", check_rows)


def read_bvecs(path: str | os.PathLike, check_rows: bool = True) -> np.ndarray:
    """Memory-map a TEXMEX ``.bvecs`` file (rows of int32 dim, then dim uint8); see :func:`read_fvecs`.

    Returns
    -------
    numpy.ndarray
        A read-only ``[n, dim]`` uint8 view of the mapped file.

    Raises
    ------
    DatasetError
        The file does not exist.
    FormatError
        Empty, truncated or a row with a different dim.
    """
    return _read_vecs(path, "bvecs", check_rows)


def _write_vecs(path: str | os.PathLike, array: np.ndarray, kind: str) -> pathlib.Path:
    dtype = _VECS[kind]
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{kind} data must be a 2-D array of shape (n, dim) with dim >= 1, got shape {array.shape}")
    n, dim = array.shape
    header = np.full((n, 1), dim, dtype="<i4").view(np.uint8)
    body = np.ascontiguousarray(array, dtype=dtype).view(np.uint8).reshape(n, dim * dtype.itemsize)
    with _atomic_path(path) as tmp:
        np.concatenate([header, body], axis=1).tofile(tmp)
    return pathlib.Path(path)


def write_fvecs(path: str | os.PathLike, array) -> pathlib.Path:
    """Write ``[n, dim]`` real numbers as a ``.fvecs`` file (float32), atomically.

    Raises
    ------
    TypeError
        ``array`` is not real-valued.
    ValueError
        ``array`` is not 2-D with at least one column.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise TypeError(f"fvecs data must be a real numeric array, got dtype {array.dtype}")
    return _write_vecs(path, array, "fvecs")


def write_ivecs(path: str | os.PathLike, array) -> pathlib.Path:
    """Write ``[n, dim]`` integers as an ``.ivecs`` file (int32), atomically.

    Raises
    ------
    TypeError
        ``array`` is not an integer array.
    ValueError
        Not 2-D, or a value does not fit in int32.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise TypeError(f"ivecs data must be an integer array, got dtype {array.dtype}")
    info = np.iinfo(np.int32)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(f"ivecs values must fit in int32, got range [{array.min()}, {array.max()}]")
    return _write_vecs(path, array, "ivecs")


def write_bvecs(path: str | os.PathLike, array) -> pathlib.Path:
    """Write ``[n, dim]`` integers in ``[0, 255]`` as a ``.bvecs`` file (uint8), atomically.

    Raises
    ------
    TypeError
        ``array`` is not an integer array.
    ValueError
        Not 2-D, or a value is outside ``[0, 255]``.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise TypeError(f"bvecs data must be an integer array, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"bvecs values must lie in [0, 255], got range [{array.min()}, {array.max()}]")
    return _write_vecs(path, array, "bvecs")


# --------------------------------------------------------------------------------------------------
# Locations, download, load


def _repo_datasets_dir() -> pathlib.Path:
    # <repo>/datasets, beside the annlib package (a source checkout or an editable install).
    return pathlib.Path(__file__).resolve().parent.parent / "datasets"


def _cache_dir() -> pathlib.Path:
    return pathlib.Path.home() / ".cache" / "annlib"


def data_dirs() -> list[pathlib.Path]:
    """Directories searched for registry datasets, in order.

    ``$ANNLIB_DATA_DIR`` (when set), the repository's ``datasets/`` folder, the sample installed
    with the package (``annlib/data``), then ``~/.cache/annlib``.
    """
    dirs = []
    env = os.environ.get("ANNLIB_DATA_DIR")
    if env:
        dirs.append(pathlib.Path(env).expanduser())
    dirs += [_repo_datasets_dir(), pathlib.Path(__file__).resolve().parent / "data", _cache_dir()]
    return dirs


def _default_download_dir() -> pathlib.Path:
    env = os.environ.get("ANNLIB_DATA_DIR")
    return pathlib.Path(env).expanduser() if env else _cache_dir()


def _find_local(name: str) -> pathlib.Path | None:
    for directory in data_dirs():
        candidate = directory / f"{name}.hdf5"
        if candidate.is_file():
            return candidate
    return None


def _registry_entry(name: str) -> RegistryEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}") from None


def _check_shapes(path: pathlib.Path, entry: RegistryEntry) -> None:
    """Raise FormatError unless ``path`` holds ``train`` and ``test`` of the registry's dim."""
    h5py = _h5py()
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"{path} is not a readable HDF5 file ({exc})") from exc
    with handle:
        for key in ("train", "test"):
            if key not in handle:
                raise FormatError(f"{path} has no '{key}' dataset, expected for {entry.name}")
            shape = getattr(handle[key], "shape", None)
            if shape is None or len(shape) != 2 or shape[1] != entry.dim:
                raise FormatError(f"{path}: '{key}' must have shape (n, {entry.dim}) for {entry.name}, got {shape}")


def download(
    name: str,
    dir: str | os.PathLike | None = None,  # noqa: A002 - the public name the CLI mirrors (--dir)
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = _DOWNLOAD_TIMEOUT_S,
) -> pathlib.Path:
    """Download a registry dataset from ann-benchmarks.com (atomic; skipped when already valid).

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY` with a URL, e.g. ``"glove-100-angular"``.
    dir : str or os.PathLike, optional
        Target directory (created if needed); default ``$ANNLIB_DATA_DIR`` or ``~/.cache/annlib``.
    progress : callable, optional
        Called as ``progress(bytes_done, bytes_total_or_None)`` after each chunk.
    timeout : float, default 60
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        ``<dir>/<name>.hdf5``.

    Raises
    ------
    DatasetError
        Unknown or local-only name, or the server cannot be reached (no partial file is left).
    FormatError
        The downloaded file is not HDF5 or its shapes do not match the registry (it is removed).

    Examples
    --------
    >>> path = download("glove-25-angular")   # doctest: +SKIP
    """
    entry = _registry_entry(name)
    if entry.url is None:
        raise DatasetError(f"dataset {name!r} is local-only and cannot be downloaded")
    directory = pathlib.Path(dir).expanduser() if dir is not None else _default_download_dir()
    final = directory / f"{name}.hdf5"
    if final.is_file():
        try:
            _check_shapes(final, entry)
            return final
        except FormatError:
            pass  # an invalid file is replaced below
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create download directory {directory}: {exc}") from exc
    with _atomic_path(final) as tmp:
        _stream(entry.url, tmp, progress, timeout)
        _check_shapes(tmp, entry)
    return final


def _stream(url: str, target: pathlib.Path, progress, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
            total = int(length) if length and str(length).isdigit() else None
            done = 0
            while chunk := response.read(_DOWNLOAD_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if total is not None and done != total:
            raise DatasetError(f"download of {url} stopped after {done} of {total} bytes")
    except urllib.error.HTTPError as exc:
        raise DatasetError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DatasetError(f"cannot download {url}: {exc.reason} (are you offline?)") from exc
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise DatasetError(f"cannot download {url}: {exc or type(exc).__name__} (are you offline?)") from exc


def load(name_or_path: str | os.PathLike) -> Dataset:
    """Load a dataset by registry name or by path.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A :data:`REGISTRY` name (looked up as ``<name>.hdf5`` in :func:`data_dirs`; never
        downloaded implicitly), or a path to ``.hdf5``/``.h5`` (full dataset), ``.npy``,
        ``.fvecs`` or ``.bvecs`` (train only).

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        Unknown name (the message lists the known names), a registry dataset not present locally,
        a missing file, or an unsupported extension.
    FormatError
        The file is corrupt or not in the format its extension says.

    Examples
    --------
    >>> ds = load("debian-minilm-10k")   # doctest: +SKIP
    >>> ds.train.shape                    # doctest: +SKIP
    (10000, 384)
    """
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, str) and text in REGISTRY:
        found = _find_local(text)
        if found is None:
            searched = ", ".join(str(d) for d in data_dirs())
            hint = f"; run `annlib datasets download {text}`" if REGISTRY[text].url else ""
            raise DatasetError(f"dataset {text!r} is not present locally (searched {searched}){hint}")
        return read_hdf5(found, name=text)
    path = pathlib.Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".hdf5", ".h5", ".npy", ".fvecs", ".bvecs"):
        if not path.exists():
            raise DatasetError(
                f"{text!r} is neither a known dataset nor an existing file; "
                f"known datasets: {', '.join(sorted(REGISTRY))}"
            )
        raise DatasetError(f"{path}: unsupported file type {suffix!r}; expected .hdf5, .h5, .npy, .fvecs or .bvecs")
    if suffix in (".hdf5", ".h5"):
        return read_hdf5(path)
    if suffix == ".npy":
        train = _load_npy(path)
    else:
        reader = read_fvecs if suffix == ".fvecs" else read_bvecs
        train = np.ascontiguousarray(reader(path), dtype=np.float32)
    return Dataset(name=path.stem, train=train)


def _load_npy(path: pathlib.Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise FormatError(f"{path} is not a readable .npy file ({exc})") from exc
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise FormatError(f"{path} must hold a 2-D numeric array, got shape {array.shape} dtype {array.dtype}")
    return np.asarray(array, dtype=np.float32)


def list_datasets() -> list[dict[str, Any]]:
    """Describe every registry dataset and where it is available locally.

    Returns
    -------
    list of dict
        One dict per dataset with ``name``, ``url``, ``dim``, ``distance``, ``metric``,
        ``n_train``, ``n_test`` and ``path`` (str of the local file, or None).
    """
    rows = []
    for entry in REGISTRY.values():
        row = dataclasses.asdict(entry)
        row["metric"] = entry.metric
        local = _find_local(entry.name)
        row["path"] = str(local) if local is not None else None
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# Ground truth


def ground_truth(train, test, k: int, metric: str, num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbors in the ann-benchmarks convention of ``metric``.

    Computed by :class:`annlib.BruteForce` (float32 exact search).

    Parameters
    ----------
    train : array_like
        ``[n, dim]`` database points.
    test : array_like
        ``[nq, dim]`` queries.
    k : int
        Neighbors per query, ``1 <= k <= n``.
    metric : str
        "cosine" (or "angular"), "squared_l2" (or "euclidean"), "dot".
    num_threads : int, optional
        Threads for the search; None uses all cores.

    Returns
    -------
    neighbors : numpy.ndarray
        int32 ``[nq, k]``, best first.
    distances : numpy.ndarray
        float32 ``[nq, k]``: ``1 - cos`` for cosine, the L2 distance (square root of the squared
        distance) for squared_l2, the inner product (a similarity, larger is better) for dot.

    Raises
    ------
    ValueError
        Unknown metric, bad shapes, non-finite values, or ``k > n``.

    Examples
    --------
    >>> ids, dist = ground_truth(train, test, 100, "angular")   # doctest: +SKIP
    """
    from annlib.index import BruteForce  # lazy: needs the compiled core

    metric = _validate.metric(metric)
    train = _validate.database(train, "train")
    test, _ = _validate.queries(test, train.shape[1], "test")
    k = _validate.k(k)
    if k > train.shape[0]:
        raise ValueError(f"k must be at most the number of train points ({train.shape[0]}), got {k}")
    result = BruteForce(train, metric).search_batched(test, k, num_threads=num_threads)
    neighbors = np.ascontiguousarray(result.ids, dtype=np.int32)
    scores = np.asarray(result.distances, dtype=np.float32)
    if metric == "cosine":
        distances = np.float32(1.0) - scores
    elif metric == "squared_l2":
        distances = np.sqrt(np.maximum(scores, np.float32(0.0)))
    else:
        distances = scores.copy()
    return neighbors, np.ascontiguousarray(distances, dtype=np.float32)
