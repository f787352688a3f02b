"""Dataset file formats: the ann-benchmarks HDF5 layout, TEXMEX ``.fvecs``/``.ivecs``/``.bvecs`` and ``.npy``.

HDF5 files follow the ann-benchmarks layout (``train``, ``test``, ``neighbors``, ``distances`` and
the attribute ``distance``; see :mod:`annlib.datasets.dataset` for how distances map to metrics).
TEXMEX files hold rows of a little-endian int32 dim followed by dim values.

Every writer is atomic (:func:`annlib._atomic.atomic_path`): a crash never leaves a partial file
under the final name.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from annlib._atomic import atomic_path
from annlib.datasets.dataset import DISTANCE_TO_METRIC, METRIC_TO_DISTANCE, Dataset, metric_for
from annlib.errors import DatasetError, FormatError

__all__ = [
    "read_bvecs",
    "read_fvecs",
    "read_hdf5",
    "read_ivecs",
    "open_npy",
    "read_npy",
    "write_bvecs",
    "write_fvecs",
    "write_hdf5",
    "write_ivecs",
    "write_npy",
]

_RESERVED_ATTRS = ("type", "distance", "point_type", "dimension")


def _writable_target(path: str | os.PathLike) -> pathlib.Path:
    """``path`` as a Path; DatasetError when its directory is missing (writers never create one)."""
    final = pathlib.Path(path)
    directory = final.parent if str(final.parent) else pathlib.Path(".")
    if not directory.is_dir():
        raise DatasetError(f"cannot write {final}: directory {directory} does not exist")
    return final


# --------------------------------------------------------------------------------------------------
# HDF5 (ann-benchmarks layout)


def h5py_module():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a dependency
        raise DatasetError("reading HDF5 datasets needs h5py: pip install h5py") from exc
    return h5py


def open_hdf5(path: pathlib.Path):
    """An HDF5 file opened for reading; FormatError when it is not one."""
    try:
        return h5py_module().File(path, "r")
    except OSError as exc:
        raise FormatError(f"{path} is not a readable HDF5 file ({exc})") from exc


def _attr_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


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
    with open_hdf5(path) as handle:
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
        metric=metric_for(distance),
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
    h5py = h5py_module()
    with atomic_path(_writable_target(path)) as tmp, h5py.File(tmp, "w") as handle:
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
    """A read-only ``[n, dim]`` int32 view of a mapped TEXMEX ``.ivecs`` file (int32 dim, then dim int32).

    Parameters and errors as :func:`read_fvecs`.
    """
    return _read_vecs(path, "ivecs", check_rows)


def read_bvecs(path: str | os.PathLike, check_rows: bool = True) -> np.ndarray:
    """A read-only ``[n, dim]`` uint8 view of a mapped TEXMEX ``.bvecs`` file (int32 dim, then dim uint8).

    Parameters and errors as :func:`read_fvecs`.
    """
    return _read_vecs(path, "bvecs", check_rows)


def _write_vecs(path: str | os.PathLike, array: np.ndarray, kind: str) -> pathlib.Path:
    dtype = _VECS[kind]
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{kind} data must be a 2-D array of shape (n, dim) with dim >= 1, got shape {array.shape}")
    n, dim = array.shape
    header = np.full((n, 1), dim, dtype="<i4").view(np.uint8)
    body = np.ascontiguousarray(array, dtype=dtype).view(np.uint8).reshape(n, dim * dtype.itemsize)
    with atomic_path(_writable_target(path)) as tmp:
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


def _write_integer_vecs(path: str | os.PathLike, array, kind: str, what: str) -> pathlib.Path:
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{kind} data must be an integer array, got dtype {array.dtype}")
    info = np.iinfo(_VECS[kind])
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(f"{kind} values must {what}, got range [{array.min()}, {array.max()}]")
    return _write_vecs(path, array, kind)


def write_ivecs(path: str | os.PathLike, array) -> pathlib.Path:
    """Write ``[n, dim]`` integers as an ``.ivecs`` file (int32), atomically.

    Raises
    ------
    TypeError
        ``array`` is not an integer array.
    ValueError
        Not 2-D, or a value does not fit in int32.
    """
    return _write_integer_vecs(path, array, "ivecs", "fit in int32")


def write_bvecs(path: str | os.PathLike, array) -> pathlib.Path:
    """Write ``[n, dim]`` integers in ``[0, 255]`` as a ``.bvecs`` file (uint8), atomically.

    Raises
    ------
    TypeError
        ``array`` is not an integer array.
    ValueError
        Not 2-D, or a value is outside ``[0, 255]``.
    """
    return _write_integer_vecs(path, array, "bvecs", "lie in [0, 255]")


# --------------------------------------------------------------------------------------------------
# .npy


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """Read a 2-D numeric ``.npy`` file as float32 (pickled objects are refused).

    Raises
    ------
    DatasetError
        The file does not exist.
    FormatError
        Not a readable ``.npy`` file, or not a 2-D numeric array.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    return np.asarray(open_npy(path), dtype=np.float32)


def open_npy(path: str | os.PathLike) -> np.ndarray:
    """A 2-D numeric ``.npy`` file memory-mapped read-only, in its own dtype (rows are read only
    when indexed); FormatError as :func:`read_npy`."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise FormatError(f"{path} is not a readable .npy file ({exc})") from exc
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise FormatError(f"{path} must hold a 2-D numeric array, got shape {array.shape} dtype {array.dtype}")
    return array


def write_npy(path: str | os.PathLike, array) -> pathlib.Path:
    """Write a 2-D real array as a ``.npy`` file (its dtype kept), atomically.

    Raises
    ------
    TypeError
        ``array`` is not real-valued.
    ValueError
        ``array`` is not 2-D.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise TypeError(f"npy data must be a real numeric array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"npy data must be a 2-D array of shape (n, dim), got shape {array.shape}")
    with atomic_path(_writable_target(path)) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    return pathlib.Path(path)
