"""Array surgery behind the tree-AH index's writes: appending points, dropping dead ones.

Each function takes the arrays of one snapshot and returns new arrays, never changing what its
inputs show (they may be shared with running searches or memory-mapped from a file; see
:mod:`annlib.index.mutable`). New points go to the partitions trained at build time (with a
SOAR spill when the index spills) and are encoded with the build's codebook in the C++ core
(``encode_pq_entries``: no residual matrix). The leaf-major entry tables are rewritten by
``_core.leaf_append`` / ``_core.leaf_select``, which copy untouched leaves' packed codes as bytes;
an append repacks only a touched leaf's last partial group, and a leaf that lost entries (select,
prune) has its kept codes moved inside the packed layout (``lut16_keep``), never unpacked.

A delete leaves every per-row array as it is (the row is marked dead in the scan's liveness mask)
but drops the dead rows' entries from each leaf it pushes to :data:`PRUNE_DEAD_FRACTION` dead
entries or more (``_core.leaf_prune``, :func:`pruned`): the LUT16 scan reads every entry of a
probed leaf, so dead entries it only masks still cost their codes' reading. A dead row may
therefore have no entries (file format 3); :func:`compacted` reclaims its per-row slots.

Per-row arrays (the float or int8 vectors, norms, assignments) grow in place: a snapshot is a
view of the first ``rows`` rows of a buffer with spare rows, and an append writes the rows after
them, which no earlier snapshot shows, then returns the longer view (:func:`rows_appended`). So an
add costs what it adds, not a copy of every vector.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from annlib import _core
from annlib.config import TreeAhConfig
from annlib.index import int8_rows

#: Spare rows a buffer grown by an append gets, as a fraction of its rows (amortised appends); at
#: least as many as the append that grew it. Spare rows are address space until written, so doubling
#: costs no resident memory and halves the rows copied while an index grows (5k -> 50k by 5k adds:
#: 25k rows copied instead of 50k).
GROWTH = 1.0

#: A delete prunes a leaf its deleted rows have entries in once the leaf's dead entries reach this
#: fraction of its entries: the scan then pays for at most about this share of dead entries per
#: leaf, while a run of small deletes rewrites the tables (one copy of the packed codes) only once per
#: 1 / PRUNE_DEAD_FRACTION deletes in a leaf, not on every call.
PRUNE_DEAD_FRACTION = 0.1

#: Spare rows of the index's own copy of the float rows at build (:func:`reserved_copy`).
BUILD_SPARE = 0.25

# Rows of each grown buffer (by id) that some view shows: a view may be extended in place only when
# it shows all of them (another snapshot, e.g. of a shallow copy of the index, may show more). An
# entry leaves with its buffer.
_claimed: dict[int, int] = {}
_claims_lock = threading.Lock()


def num_blocks(config: TreeAhConfig, dim: int) -> int:
    return -(-dim // config.ah.dims_per_block)


def rows_appended(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``old`` followed by ``new`` (same dtype and trailing shape) without changing what ``old`` shows.

    When ``old`` is the first rows of a buffer this module grew and no other view shows more of
    it, ``new`` is written into the spare rows after ``old`` and a longer view returned; otherwise
    the rows go to a fresh buffer with spare rows (:data:`GROWTH`).
    """
    n, m = len(old), len(new)
    base = old.base
    with _claims_lock:
        if (isinstance(base, np.ndarray) and _claimed.get(id(base)) == n
                and base.dtype == old.dtype and base.shape[1:] == old.shape[1:] and len(base) >= n + m
                and old.__array_interface__["data"][0] == base.__array_interface__["data"][0]):
            _claimed[id(base)] = n + m
            base[n : n + m] = new
            return base[: n + m]
    buffer = np.empty((n + m + max(m, int(GROWTH * (n + m))),) + old.shape[1:], dtype=old.dtype)
    buffer[:n] = old
    buffer[n : n + m] = new
    with _claims_lock:
        _claimed[id(buffer)] = n + m
    weakref.finalize(buffer, _claimed.pop, id(buffer), None)
    return buffer[: n + m]


def reserved_copy(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` as the first rows of a buffer with :data:`BUILD_SPARE` spare rows, so the
    first add writes in place. The spare rows are never touched before an add writes them: address space,
    not resident memory, until then."""
    buffer = np.empty((len(array) + max(1, int(BUILD_SPARE * len(array))),) + array.shape[1:], dtype=array.dtype)
    buffer[: len(array)] = array
    with _claims_lock:
        _claimed[id(buffer)] = len(array)
    weakref.finalize(buffer, _claimed.pop, id(buffer), None)
    return buffer[: len(array)]


def spare_bytes(arrays: dict) -> int:
    """Bytes of the spare rows that :func:`rows_appended` reserved behind the views in ``arrays``."""
    bases = {}
    for a in arrays.values():
        base = getattr(a, "base", None)
        if isinstance(base, np.ndarray) and id(base) in _claimed:
            bases[id(base)] = (base.nbytes, a.nbytes)
    return int(sum(total - shown for total, shown in bases.values()))


def entries(arrays: dict, config: TreeAhConfig, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point row, leaf, unpacked codes) of every entry, in storage order (grouped by leaf)."""
    lo, go = arrays["leaf_offsets"], arrays["leaf_group_offsets"]
    nb = num_blocks(config, dim)
    counts = np.diff(lo)
    codes = np.empty((int(lo[-1]), nb), dtype=np.uint8)
    packed = arrays["packed_codes"]
    for leaf in np.flatnonzero(counts):
        g0, g1 = int(go[leaf]), int(go[leaf + 1])
        codes[lo[leaf] : lo[leaf + 1]] = _core.unpack_lut16_codes(
            np.ascontiguousarray(packed[g0 * nb * 16 : g1 * nb * 16]), int(counts[leaf]), nb
        )
    leaves = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    return np.asarray(arrays["entry_ids"], dtype=np.int64), leaves, codes


def empty_entry_tables(num_leaves: int, l2: bool) -> dict:
    """Entry tables of an index without entries (what a build appends its entries to)."""
    tables = {
        "leaf_offsets": np.zeros(num_leaves + 1, dtype=np.int64),
        "leaf_group_offsets": np.zeros(num_leaves + 1, dtype=np.int64),
        "entry_ids": np.zeros(0, dtype=np.int32),
        "packed_codes": np.zeros(0, dtype=np.uint8),
    }
    if l2:
        tables["entry_sq_norms"] = np.zeros(0, dtype=np.float32)
    return tables


def quantize_int8(arrays: dict, config: TreeAhConfig, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """int8 rows (and row scales, or None) of ``vectors`` in the build's code (int8_rows)."""
    return int8_rows.Code.of_arrays(arrays, shaped=config.metric != "squared_l2").encode(vectors)


def appended(arrays: dict, config: TreeAhConfig, vectors: np.ndarray, num_threads: int) -> dict:
    """Arrays with ``vectors`` (already normalised for cosine) as new rows after the existing ones."""
    rows = int(arrays["primary_leaf"].shape[0])
    dim = vectors.shape[1]
    m = vectors.shape[0]
    centers, codebook = arrays["centers"], arrays["codebook"]
    primary, _ = _core.assign_to_centers(vectors, centers, num_threads, with_sq_dist=False)
    primary = np.asarray(primary).astype(np.int64)
    new_points, new_leaves = np.arange(m, dtype=np.int64), primary
    secondary = None
    if "secondary_leaf" in arrays:
        from annlib import soar  # noqa: PLC0415 - optional stage

        secondary = soar.secondary_assignment(
            vectors, centers, primary.astype(np.int32), config.tree.soar_lambda, config.tree.spill, num_threads
        )
        spilled = np.flatnonzero(secondary >= 0)
        new_points = np.concatenate([new_points, spilled])
        new_leaves = np.concatenate([primary, np.asarray(secondary)[spilled].astype(np.int64)])
    l2 = "entry_sq_norms" in arrays
    ah = config.ah
    new_codes, new_norms = _core.encode_pq_entries(
        codebook, ah.dims_per_block, vectors, centers, new_points, new_leaves, ah.threshold_or_nan, num_threads, l2
    )
    out = dict(arrays)
    out.update(_core.leaf_append(arrays, num_blocks(config, dim), (new_points + rows).astype(np.int32), new_leaves,
                                 new_codes, new_norms, num_threads))
    out["primary_leaf"] = rows_appended(arrays["primary_leaf"], primary.astype(np.int32))
    if secondary is not None:
        out["secondary_leaf"] = rows_appended(arrays["secondary_leaf"], np.asarray(secondary, dtype=np.int32))
    if "reorder_float" in arrays:
        out["reorder_float"] = rows_appended(arrays["reorder_float"], vectors)
    if "reorder_int8" in arrays:
        # The build's code (tree_ah.TreeAhIndex._reorder_arrays).
        quantized, row_scale = quantize_int8(arrays, config, vectors)
        out["reorder_int8"] = rows_appended(arrays["reorder_int8"], quantized)
        if row_scale is not None:
            out["reorder_int8_row_scale"] = rows_appended(arrays["reorder_int8_row_scale"], row_scale)
    if "point_sq_norms" in arrays:
        # As the build: the norms of the rows reordering scores (the dequantized ones for int8
        # alone; with float32 rows too, theirs, and the int8 stage's in reorder_int8_sq_norms).
        decoded = None
        if "reorder_int8" in arrays:
            decoded = int8_rows.Code.of_arrays(arrays, False).sq_norms(quantized, row_scale)
        if "reorder_int8_sq_norms" in arrays:
            out["reorder_int8_sq_norms"] = rows_appended(arrays["reorder_int8_sq_norms"], decoded)
        exact = "reorder_float" in arrays or decoded is None
        out["point_sq_norms"] = rows_appended(arrays["point_sq_norms"],
                                              _core.squared_norms(vectors) if exact else decoded)
    return out


def pruned(arrays: dict, config: TreeAhConfig, dim: int, live: np.ndarray, rows: np.ndarray,
           num_threads: int = 0) -> dict:
    """Arrays whose entry tables no longer hold dead rows' entries in the leaves of ``rows`` (just
    deleted) where they reach :data:`PRUNE_DEAD_FRACTION`; ``arrays`` itself when no leaf does."""
    candidates = np.zeros(config.tree.num_leaves, dtype=np.uint8)
    candidates[arrays["primary_leaf"][rows]] = 1
    if "secondary_leaf" in arrays:
        secondary = arrays["secondary_leaf"][rows]
        candidates[secondary[secondary >= 0]] = 1
    tables = _core.leaf_prune(arrays, num_blocks(config, dim), live, candidates, PRUNE_DEAD_FRACTION, num_threads)
    if tables is None:
        return arrays
    out = dict(arrays)
    out.update(tables)
    return out


def dead_entries(arrays: dict, live: np.ndarray | None) -> int:
    """Entries of dead rows still in the entry tables (the scan reads and masks them)."""
    if live is None:
        return 0
    return int(np.count_nonzero(live[arrays["entry_ids"]] == 0))


def compacted(arrays: dict, config: TreeAhConfig, dim: int, kept: np.ndarray, num_threads: int = 0) -> dict:
    """Arrays holding only rows ``kept`` (sorted), renumbered 0..len(kept)-1, their entries in place."""
    rows = int(arrays["primary_leaf"].shape[0])
    renumber = np.full(rows, -1, dtype=np.int64)
    renumber[kept] = np.arange(len(kept), dtype=np.int64)
    out = dict(arrays)
    out.update(_core.leaf_select(arrays, num_blocks(config, dim), renumber, num_threads))
    for name in ("primary_leaf", "secondary_leaf", "point_sq_norms", "reorder_float", "reorder_int8",
                 "reorder_int8_sq_norms", "reorder_int8_row_scale"):
        if name in arrays:
            out[name] = np.ascontiguousarray(arrays[name][kept])
    return out


def relative_quantization_error(arrays: dict, config: TreeAhConfig, rows: np.ndarray) -> float | None:
    """Mean ||r - r~||^2 / mean ||r||^2 over the primary entries of ``rows``, where r is a point's
    residual to its partition center and r~ its PQ reconstruction; None without float vectors."""
    vectors = arrays.get("reorder_float")
    if vectors is None or not len(rows):
        return None
    dim = vectors.shape[1]
    points, leaves, codes = entries(arrays, config, dim)
    primary = np.asarray(arrays["primary_leaf"], dtype=np.int64)
    # The primary entry of each wanted row.
    wanted = np.zeros(len(primary), dtype=bool)
    wanted[rows] = True
    pick = wanted[points] & (leaves == primary[points])
    residuals = vectors[points[pick]] - arrays["centers"][leaves[pick]]
    reconstructed = _core.decode_pq(arrays["codebook"], config.ah.dims_per_block, np.ascontiguousarray(codes[pick]))
    total = float(np.einsum("ij,ij->", residuals, residuals, dtype=np.float64))
    if total == 0.0:
        return 0.0
    diff = residuals - reconstructed
    return float(np.einsum("ij,ij->", diff, diff, dtype=np.float64)) / total
