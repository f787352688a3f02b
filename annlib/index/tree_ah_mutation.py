"""Array surgery behind the tree-AH index's writes: appending points, dropping dead ones.

Each function takes the arrays of one snapshot and returns new arrays, never changing its
inputs (they may be shared with running searches or memory-mapped from a file; see
:mod:`annlib.index.mutable`). New points go to the partitions trained at build time (with a
SOAR spill when the index spills) and are encoded with the build's codebook; the leaf-major
entry tables and packed LUT16 codes are then rebuilt, which costs one pass over the codes
(C++, a few milliseconds per 100k entries) per call.
"""

from __future__ import annotations

import numpy as np

from annlib import _core
from annlib.config import TreeAhConfig

#: Points encoded per step when appending: bounds the residual buffer.
_CHUNK = 65_536


def num_blocks(config: TreeAhConfig, dim: int) -> int:
    return -(-dim // config.ah.dims_per_block)


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


def leaf_major(points: np.ndarray, leaves: np.ndarray, codes: np.ndarray, num_leaves: int) -> dict:
    """The entry tables and packed codes of entries (points, leaves, codes), grouped by leaf
    (stable: within a leaf, entries keep their order)."""
    order = np.argsort(leaves, kind="stable")
    points, leaves, codes = points[order], leaves[order], codes[order]
    counts = np.bincount(leaves, minlength=num_leaves).astype(np.int64)
    groups = (counts + 31) // 32
    leaf_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    leaf_group_offsets = np.concatenate([[0], np.cumsum(groups)]).astype(np.int64)
    nb = codes.shape[1]
    packed = np.empty(int(leaf_group_offsets[-1]) * nb * 16, dtype=np.uint8)
    for leaf in np.flatnonzero(counts):
        e0, e1 = leaf_offsets[leaf], leaf_offsets[leaf + 1]
        g0, g1 = leaf_group_offsets[leaf], leaf_group_offsets[leaf + 1]
        packed[g0 * nb * 16 : g1 * nb * 16] = _core.pack_lut16_codes(np.ascontiguousarray(codes[e0:e1]))
    return {
        "leaf_offsets": leaf_offsets,
        "leaf_group_offsets": leaf_group_offsets,
        "entry_ids": points.astype(np.int32),
        "packed_codes": packed,
    }


def _encode(vectors, centers, codebook, config: TreeAhConfig, points, leaves, num_threads) -> np.ndarray:
    ah = config.ah
    codes = np.empty((len(points), num_blocks(config, vectors.shape[1])), dtype=np.uint8)
    for begin in range(0, len(points), _CHUNK):
        p = points[begin : begin + _CHUNK]
        originals = vectors[p]
        residuals = originals - centers[leaves[begin : begin + _CHUNK]]
        codes[begin : begin + len(p)] = _core.encode_pq(
            codebook, ah.dims_per_block, residuals, originals, ah.threshold_or_nan, num_threads
        )
    return codes


def appended(arrays: dict, config: TreeAhConfig, vectors: np.ndarray, num_threads: int) -> dict:
    """Arrays with ``vectors`` (already normalised for cosine) as new rows after the existing ones."""
    rows = int(arrays["primary_leaf"].shape[0])
    dim = vectors.shape[1]
    m = vectors.shape[0]
    centers, codebook = arrays["centers"], arrays["codebook"]
    primary, _ = _core.assign_to_centers(vectors, centers, num_threads)
    primary = np.asarray(primary).astype(np.int64)
    local = np.arange(m, dtype=np.int64)
    new_points, new_leaves = local, primary
    secondary = None
    if "secondary_leaf" in arrays:
        from annlib import soar  # noqa: PLC0415 - optional stage

        secondary = soar.secondary_assignment(
            vectors, centers, primary.astype(np.int32), config.tree.soar_lambda, config.tree.spill, num_threads
        )
        spilled = np.flatnonzero(secondary >= 0)
        new_points = np.concatenate([local, spilled])
        new_leaves = np.concatenate([primary, np.asarray(secondary)[spilled].astype(np.int64)])
    new_codes = _encode(vectors, centers, codebook, config, new_points, new_leaves, num_threads)
    old_points, old_leaves, old_codes = entries(arrays, config, dim)
    out = dict(arrays)
    out.update(leaf_major(
        np.concatenate([old_points, new_points + rows]), np.concatenate([old_leaves, new_leaves]),
        np.concatenate([old_codes, new_codes]), config.tree.num_leaves,
    ))
    out["primary_leaf"] = np.concatenate([arrays["primary_leaf"], primary.astype(np.int32)])
    if secondary is not None:
        out["secondary_leaf"] = np.concatenate([arrays["secondary_leaf"], np.asarray(secondary, dtype=np.int32)])
    if "point_sq_norms" in arrays:
        out["point_sq_norms"] = np.concatenate([arrays["point_sq_norms"], _core.squared_norms(vectors)])
        out["entry_sq_norms"] = np.ascontiguousarray(out["point_sq_norms"][out["entry_ids"]])
    if "reorder_float" in arrays:
        out["reorder_float"] = np.concatenate([arrays["reorder_float"], vectors])
    if "reorder_int8" in arrays:
        # The build's per-dimension multipliers; values beyond the build's range saturate.
        scaled = np.rint(vectors / arrays["reorder_int8_inv_scale"])
        out["reorder_int8"] = np.concatenate([arrays["reorder_int8"], np.clip(scaled, -127, 127).astype(np.int8)])
    return out


def compacted(arrays: dict, config: TreeAhConfig, dim: int, kept: np.ndarray) -> dict:
    """Arrays holding only rows ``kept`` (sorted), renumbered 0..len(kept)-1, their entries in place."""
    rows = int(arrays["primary_leaf"].shape[0])
    renumber = np.full(rows, -1, dtype=np.int64)
    renumber[kept] = np.arange(len(kept), dtype=np.int64)
    points, leaves, codes = entries(arrays, config, dim)
    keep = renumber[points] >= 0
    out = dict(arrays)
    out.update(leaf_major(renumber[points[keep]], leaves[keep], codes[keep], config.tree.num_leaves))
    for name in ("primary_leaf", "secondary_leaf", "point_sq_norms", "reorder_float", "reorder_int8"):
        if name in arrays:
            out[name] = np.ascontiguousarray(arrays[name][kept])
    if "entry_sq_norms" in arrays:
        out["entry_sq_norms"] = np.ascontiguousarray(out["point_sq_norms"][out["entry_ids"]])
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
