"""The int8 code of the reordering rows: x_ij ~ offset_j + row_scale_i * inv_scale_j * q8_ij.

Two codes, chosen per index from its data:

- **Exact** (every dimension integral and spanning at most 255: 8-bit sources such as SIFT,
  stored as float32): step 1 per dimension, so the codes are the values. The range rule,
  (max - min) / 254, gives a step that is not 1 unless the range is exactly 254; rounding to
  that grid cost up to 0.012 recall@10 against float32 on 1M SIFT.
- **Row-scaled** (anything else): q8 = round((x - mean) / s_i) with one scale per row,
  s_i = max_j |x_ij - mean_j| / 127, stored as ``reorder_int8_row_scale``. A row's largest
  centred coordinate sets its step, not the largest over every row (on 50k MiniLM rows the
  per-dimension range spans about +-4.5 sigma, a row's largest coordinate about 3). For inner
  products the rounding is then noise-shaped: coordinates move by one step where that cuts the
  error along the row, ||e||^2 + 10 <x/||x||, e>^2 (ScaNN's anisotropic rounding; a neighbour's
  score error is mostly that component). On MiniLM the per-dimension range code lost 0.006
  recall@10 against float32 rescoring of the true top 100; this code loses 0.003
  (bench/RESULTS.md, issue 15, second session).

``row_scale`` is None for the exact code (and in files written before it): 1 for every row.
"""

from __future__ import annotations

import numpy as np

from annlib import _core

_CHUNK = 65_536  # rows per step: bounds the float temporaries of large builds
_SHAPING_WEIGHT = 10.0  # weight of the error along the row in the noise-shaped rounding
_SHAPING_ROUNDS = 2


class Code:
    """The fitted per-dimension parameters and which code they belong to."""

    def __init__(self, offset: np.ndarray, inv_scale: np.ndarray, row_scaled: bool, shaped: bool):
        self.offset, self.inv_scale, self.row_scaled, self.shaped = offset, inv_scale, row_scaled, shaped

    @classmethod
    def of_arrays(cls, arrays: dict, shaped: bool) -> Code:
        """The code of a built index's arrays (files before offsets are centred on 0)."""
        inv_scale = arrays["reorder_int8_inv_scale"]
        offset = arrays.get("reorder_int8_offset")
        offset = np.zeros_like(inv_scale) if offset is None else offset
        return cls(offset, inv_scale, "reorder_int8_row_scale" in arrays, shaped)

    def encode(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(codes int8, row_scale float32 or None)`` of ``vectors`` (beyond the exact code's range: saturated)."""
        codes = np.empty(vectors.shape, dtype=np.int8)
        scales = np.empty(len(vectors), dtype=np.float32) if self.row_scaled else None
        for begin in range(0, len(vectors), _CHUNK):
            rows = np.asarray(vectors[begin : begin + _CHUNK], dtype=np.float32)
            end = begin + len(rows)
            if not self.row_scaled:
                codes[begin:end] = np.clip(np.rint((rows - self.offset) / self.inv_scale), -128, 127)
                continue
            centred = (rows - self.offset) / self.inv_scale
            s = np.abs(centred).max(axis=1) / 127.0
            s[s == 0] = 1.0
            q = np.clip(np.rint(centred / s[:, None]), -127, 127)
            if self.shaped:
                q = _shaped(rows, centred, q, s)
            codes[begin:end] = q
            scales[begin:end] = s
        return codes, scales

    def decode(self, codes: np.ndarray, row_scale: np.ndarray | None) -> np.ndarray:
        rows = codes.astype(np.float32)
        if row_scale is not None:
            rows *= row_scale[:, None]
        return rows * self.inv_scale + self.offset

    def sq_norms(self, codes: np.ndarray, row_scale: np.ndarray | None) -> np.ndarray:
        """||decoded row||^2: squared L2 scores the decoded row, not the exact one."""
        out = np.empty(len(codes), dtype=np.float32)
        for begin in range(0, len(codes), _CHUNK):
            end = min(begin + _CHUNK, len(codes))
            out[begin:end] = _core.squared_norms(
                self.decode(codes[begin:end], None if row_scale is None else row_scale[begin:end]))
        return out


def fit(data: np.ndarray, shaped: bool) -> Code:
    """The code for ``data``'s rows; ``shaped``: noise-shaped rounding (for inner-product scores)."""
    dim = data.shape[1]
    lo, hi = np.full(dim, np.inf), np.full(dim, -np.inf)
    total = np.zeros(dim)
    integral = True
    for begin in range(0, len(data), _CHUNK):
        rows = data[begin : begin + _CHUNK]
        lo, hi = np.minimum(lo, rows.min(axis=0)), np.maximum(hi, rows.max(axis=0))
        total += rows.sum(axis=0, dtype=np.float64)
        integral = integral and bool((rows == np.rint(rows)).all())
    if integral and (hi - lo <= 255).all():
        # lo sits on code -128: every value is a code.
        return Code((lo + 128.0).astype(np.float32), np.ones(dim, dtype=np.float32), False, False)
    return Code((total / max(len(data), 1)).astype(np.float32), np.ones(dim, dtype=np.float32), True, shaped)


def _shaped(rows: np.ndarray, centred: np.ndarray, q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Coordinate descent on ||e||^2 + w <x^, e>^2 over one-step moves of each coordinate toward
    its value (e = centred - q s). Dimension-major copies: each step reads contiguous columns."""
    norms = np.linalg.norm(rows, axis=1)
    unit = np.ascontiguousarray((rows / np.where(norms > 0, norms, 1.0)[:, None]).T)
    err = np.ascontiguousarray((centred - q * s[:, None]).T)
    codes = np.ascontiguousarray(q.T)
    along = np.einsum("ji,ji->i", unit, err)
    for _ in range(_SHAPING_ROUNDS):
        for j in range(len(codes)):
            e = err[j]
            step = np.where(e >= 0, 1.0, -1.0).astype(np.float32)
            moved = codes[j] + step
            e_new = e - step * s
            along_new = along + unit[j] * (e_new - e)
            gain = e * e - e_new * e_new + _SHAPING_WEIGHT * (along * along - along_new * along_new)
            take = (gain > 0) & (np.abs(moved) <= 127)
            codes[j] = np.where(take, moved, codes[j])
            err[j] = np.where(take, e_new, e)
            along = np.where(take, along_new, along)
    return codes.T
