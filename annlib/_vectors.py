"""Row operations shared by the index types."""

from __future__ import annotations

import numpy as np

# Squared norms inside this range normalise accurately in float32; rows outside it
# (tiny or denormal coordinates, whose squares underflow, or huge ones, whose squares
# overflow) are normalised in float64, where every float32 row's squares are normal.
_FLOAT32_SAFE = (2.0**-100, 2.0**100)


def normalize_rows(rows: np.ndarray) -> np.ndarray:
    """Unit-norm float32 copy of each row, for cosine similarity.

    A zero row has no direction: it stays zero and scores 0 against every query.
    Every other finite row, however small (denormal coordinates included) or large,
    comes out with norm 1: its norm is never computed where it would underflow to
    zero or overflow to infinity.
    """
    with np.errstate(over="ignore", under="ignore"):
        squared = np.einsum("ij,ij->i", rows, rows)
    if squared.size == 1 and _FLOAT32_SAFE[0] <= squared[0] <= _FLOAT32_SAFE[1]:
        # One query (a single-query search): scalar compares, and the same float32 sqrt and
        # division as the rows below, so its bits equal the batched path's.
        return rows / np.sqrt(squared[0])
    if squared.size and _FLOAT32_SAFE[0] <= squared.min() and squared.max() <= _FLOAT32_SAFE[1]:
        # Every row nonzero and safely scaled (the usual case, and the one a single-query
        # search pays for on every call): one division, no masks.
        return (rows / np.sqrt(squared)[:, None]).astype(np.float32, copy=False)
    norms = np.sqrt(squared)[:, None]
    out = np.divide(rows, norms, out=np.zeros_like(rows, dtype=np.float32), where=norms > 0)
    unsafe = np.flatnonzero((squared < _FLOAT32_SAFE[0]) | ~(squared <= _FLOAT32_SAFE[1]))
    if unsafe.size:
        wide = rows[unsafe].astype(np.float64)
        wide_norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))[:, None]
        out[unsafe] = np.divide(wide, wide_norms, out=np.zeros_like(wide), where=wide_norms > 0)
    return out
