"""The int8 code of the reordering rows: x ~ offset + q8 * inv_scale, per dimension.

Each dimension's values [lo, hi] are spread over all 256 codes -128..127. Scaling by max |x|
alone (algorithms.md 2.6) left half the codes unused on non-negative data; the code is affine.

A dimension whose values are all integers spanning at most 255 (8-bit sources such as SIFT, stored
as float32) gets step 1, so its codes are exact. The range rule alone gives it a step of
(hi - lo) / 255, which is not 1 unless the range is exactly 255; rounding to that grid moved
neighbours of equal-sized integer coordinates apart and cost 0.006-0.012 recall@10 against
float32 on 1M SIFT (bench/RESULTS.md, issue 15, second session).
"""

from __future__ import annotations

import numpy as np

from annlib import _core

LEVELS = 255  # steps between the lowest code (-128) and the highest (127)
_CHUNK = 65_536  # rows per step: bounds the float temporaries of large builds


def fit(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(offset, inv_scale)`` (float32, one per dimension) of ``data``'s rows."""
    lo = np.full(data.shape[1], np.inf, dtype=np.float64)
    hi = np.full(data.shape[1], -np.inf, dtype=np.float64)
    integral = np.ones(data.shape[1], dtype=bool)
    for begin in range(0, len(data), _CHUNK):
        rows = data[begin : begin + _CHUNK]
        lo = np.minimum(lo, rows.min(axis=0))
        hi = np.maximum(hi, rows.max(axis=0))
        integral &= (rows == np.rint(rows)).all(axis=0)
    span = hi - lo
    exact = integral & (span <= LEVELS)
    step = np.where(exact, 1.0, np.where(span > 0, span / LEVELS, 1.0))
    # lo sits on code -128: every value of an exact dimension is then a code.
    offset = lo + 128.0 * step
    return offset.astype(np.float32), step.astype(np.float32)


def quantize(vectors: np.ndarray, offset: np.ndarray, inv_scale: np.ndarray) -> np.ndarray:
    """int8 codes of ``vectors`` (values beyond the fitted range saturate)."""
    out = np.empty(vectors.shape, dtype=np.int8)
    for begin in range(0, len(vectors), _CHUNK):
        rows = vectors[begin : begin + _CHUNK]
        out[begin : begin + len(rows)] = np.clip(np.rint((rows - offset) / inv_scale), -128, 127)
    return out


def dequantized_sq_norms(codes: np.ndarray, offset: np.ndarray, inv_scale: np.ndarray) -> np.ndarray:
    """||offset + q8 * inv_scale||^2 of each row: squared L2 scores the decoded row, not the exact one."""
    out = np.empty(len(codes), dtype=np.float32)
    for begin in range(0, len(codes), _CHUNK):
        rows = codes[begin : begin + _CHUNK].astype(np.float32) * inv_scale + offset
        out[begin : begin + len(rows)] = _core.squared_norms(rows)
    return out
