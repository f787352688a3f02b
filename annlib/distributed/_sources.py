"""Where a shard's rows come from, read where the shard is built (a task or an actor), never in
bulk by the driver.

Plain Python, no Ray import. A *piece* is a picklable description of some rows:

* ``("file", path, rows)``: a data file in a format annlib reads (``.npy``, ``.fvecs``,
  ``.bvecs``, ``.hdf5``/``.h5`` with the ann-benchmarks ``train`` matrix), all its rows
  (``rows=None``) or the given ascending row numbers;
* ``("array", array, rows)``: an array (the driver's, shipped through the object store);
* ``("block", ref, column, ids_column, rows)``: one block of a materialised
  ``ray.data.Dataset`` (an object ref of an Arrow table), rows of its vector column and, when
  ``ids_column`` is given, their user ids. Fetching a block by its ref in the actor that builds
  a shard skips Ray Data's streaming executor, which costs seconds per call to start.

Files are opened lazily (memory-mapped, or HDF5 slices), so a probe reads only the header and a
sample only its rows: the driver learns sizes and trains on a sample; the shards read the rest.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from annlib.errors import DatasetError, FormatError

FILE_SUFFIXES = (".npy", ".fvecs", ".bvecs", ".hdf5", ".h5")
_CHUNK = 65_536  # rows converted to float32 at a time: a chunk, not a file, is the peak extra memory


def is_data_file(value) -> bool:
    return isinstance(value, (str, os.PathLike)) and pathlib.Path(value).suffix.lower() in FILE_SUFFIXES


class _Hdf5Rows:
    """The ``train`` matrix of an HDF5 file, sliced on demand (h5py reads only what is asked)."""

    def __init__(self, path: pathlib.Path):
        from annlib.datasets.formats import open_hdf5  # noqa: PLC0415

        self._file = open_hdf5(path)
        if "train" not in self._file:
            raise FormatError(f"{path} has no 'train' dataset (found: {sorted(self._file.keys())})")
        self._node = self._file["train"]
        if self._node.ndim != 2 or self._node.dtype.kind not in "fiu":
            raise FormatError(f"{path}: 'train' must be a 2-D numeric array, got {self._node.shape} {self._node.dtype}")
        self.shape = self._node.shape

    def __getitem__(self, rows):
        return self._node[rows]

    def close(self) -> None:
        self._file.close()


def open_rows(path) -> object:
    """A lazily read (n, dim) matrix of a data file: ``shape``, ``[rows]``; FormatError /
    DatasetError when the file is missing, corrupt or of an unknown kind."""
    from annlib.datasets import formats  # noqa: PLC0415

    path = pathlib.Path(os.fspath(path))
    if not path.is_file():
        raise DatasetError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return formats.open_npy(path)
    if suffix == ".fvecs":
        return formats.read_fvecs(path, check_rows=False)
    if suffix == ".bvecs":
        return formats.read_bvecs(path, check_rows=False)
    if suffix in (".hdf5", ".h5"):
        return _Hdf5Rows(path)
    raise DatasetError(f"{path}: unsupported data file (expected one of {', '.join(FILE_SUFFIXES)})")


def _float32(matrix, rows) -> np.ndarray:
    """``matrix[rows]`` (all rows when None) as a new C-contiguous float32 array, chunk by chunk."""
    n = matrix.shape[0] if rows is None else len(rows)
    out = np.empty((n, matrix.shape[1]), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        out[start:stop] = _rows_of(matrix, rows, start, stop)
    return out


def _rows_of(matrix, rows, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the selection ``rows`` (None: all; a range; ascending row numbers)."""
    if rows is None:
        return matrix[start:stop]
    if isinstance(rows, range):  # contiguous: a slice reads faster than a fancy index
        return matrix[rows[start] : rows[start] + (stop - start)]
    picked = np.asarray(rows[start:stop], dtype=np.int64)
    lo, hi = int(picked[0]), int(picked[-1]) + 1
    if hi - lo <= 4 * len(picked):
        # Dense enough: one contiguous read, then a pick in memory (HDF5 point selections and
        # scattered memory-map reads are far slower than a span read).
        return np.asarray(matrix[lo:hi])[picked - lo]
    return matrix[picked]


def chunks(piece):
    """The float32 rows of a piece in chunks of at most :data:`_CHUNK` rows (bounded memory)."""
    if piece[0] == "block":
        yield read(piece)[0]
        return
    matrix = open_rows(piece[1]) if piece[0] == "file" else piece[1]
    rows = piece[2]
    try:
        n = matrix.shape[0] if rows is None else len(rows)
        for start in range(0, n, _CHUNK):
            yield np.ascontiguousarray(_rows_of(matrix, rows, start, min(n, start + _CHUNK)), dtype=np.float32)
    finally:
        getattr(matrix, "close", lambda: None)()


def probe(piece) -> tuple[int, int]:
    """(rows, dim) of a piece, reading only headers."""
    if piece[0] == "file":
        matrix = open_rows(piece[1])
        try:
            return int(matrix.shape[0]) if piece[2] is None else len(piece[2]), int(matrix.shape[1])
        finally:
            getattr(matrix, "close", lambda: None)()
    if piece[0] == "array":
        return (piece[1].shape[0] if piece[2] is None else len(piece[2])), int(piece[1].shape[1])
    if piece[0] == "block":
        vectors, _ = read(piece)
        return vectors.shape[0], (vectors.shape[1] if vectors.shape[0] else 0)
    raise ValueError(f"unknown piece kind {piece[0]!r}")


def read(piece, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(float32 rows, user ids or None) of a piece; ``rows``: only those (ascending) of it."""
    kind = piece[0]
    if kind == "block":
        return _read_block(piece, rows)
    selected = piece[2]
    if rows is not None:
        selected = rows if selected is None else np.asarray(selected)[rows]
    if kind == "array":
        return _float32(piece[1], selected), None
    if kind == "file":
        matrix = open_rows(piece[1])
        try:
            return _float32(matrix, selected), None
        finally:
            getattr(matrix, "close", lambda: None)()
    raise ValueError(f"unknown piece kind {kind!r}")


def read_all(pieces: list) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows (and ids, when every piece has them) of several pieces, concatenated."""
    parts = [read(p) for p in pieces]
    vectors = parts[0][0] if len(parts) == 1 else np.concatenate([v for v, _ in parts])
    ids = [i for _, i in parts]
    if any(i is None for i in ids):
        if not all(i is None for i in ids):
            raise ValueError("some pieces of a shard carry ids and others do not")
        return vectors, None
    return vectors, (ids[0] if len(ids) == 1 else np.concatenate(ids))


def _read_block(piece, rows):
    import ray  # noqa: PLC0415 - only a dataset's blocks need it, and Ray runs this
    from ray.data.block import BlockAccessor  # noqa: PLC0415

    _, ref, column, ids_column, selected = piece
    block = BlockAccessor.for_block(ray.get(ref))
    names = block.column_names()
    for name in (column, ids_column):
        if name is not None and name not in names:
            raise ValueError(f"the dataset has no column {name!r} (columns: {sorted(names)})")
    if block.num_rows() == 0:
        return np.empty((0, 0), dtype=np.float32), None
    matrix = _column_matrix(block.to_numpy(column), column)
    ids = None if ids_column is None else np.asarray(block.to_numpy(ids_column), dtype=np.int64).reshape(-1)
    for pick in (selected, rows):
        if pick is not None:
            pick = np.asarray(pick)
            matrix = matrix[pick]
            ids = None if ids is None else ids[pick]
    return np.ascontiguousarray(matrix, dtype=np.float32), ids


def _column_matrix(values, column: str) -> np.ndarray:
    """A batch's vector column as (rows, dim): Ray gives a 2-D array for fixed-shape tensors and
    an object array of 1-D arrays for lists."""
    array = np.asarray(values)
    if array.dtype == object:
        array = np.stack([np.asarray(v) for v in array]) if len(array) else np.empty((0, 0), np.float32)
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise ValueError(f"column {column!r} must hold numeric vectors of one length, got {array.shape} {array.dtype}")
    return array
