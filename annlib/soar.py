"""SOAR spilling (algorithms.md section 4): the secondary partition of every point.

Each point x with primary center c and residual r = x - c also lives in a second
partition c' (never c) chosen by

* ``spill="soar"``:    argmin ||x - c'||^2 + soar_lambda * <x - c', r_hat>^2,
  r_hat = r / ||r|| (0 when ||r||^2 < 1e-7), so the secondary residual is pushed to be
  orthogonal to the primary one (Sun et al. 2023);
* ``spill="nearest"``: argmin ||x - c'||^2, plain spilling to the second-nearest center
  (soar_lambda ignored), for comparison.

:func:`secondary_assignment` runs in the C++ core (blocked SIMD inner products, all
cores, GIL released); :func:`secondary_assignment_reference` is the plain numpy
statement of the same loss, used by the tests.
"""

from __future__ import annotations

import numpy as np

from annlib import _core, _validate
from annlib.config import SPILL_MODES
from annlib.errors import InvalidValueError

MIN_RESIDUAL_SQ_NORM = 1e-7  # below this the residual has no direction: r_hat = 0


def _check(data, centers, primary, soar_lambda, spill):
    data = np.ascontiguousarray(data, dtype=np.float32)
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    if data.ndim != 2 or centers.ndim != 2 or data.shape[1] != centers.shape[1]:
        raise ValueError(f"data and centers must be 2-D with the same number of columns, got {data.shape} and {centers.shape}")
    if centers.shape[0] == 0:
        raise ValueError("centers must not be empty")
    primary = np.asarray(primary)
    if primary.shape != (data.shape[0],) or (primary.size and not np.issubdtype(primary.dtype, np.integer)):
        raise ValueError(f"primary must be an integer array of shape ({data.shape[0]},), got {primary.dtype} {primary.shape}")
    if primary.size and (primary.min() < 0 or primary.max() >= centers.shape[0]):
        raise ValueError(f"primary holds center indices outside [0, {centers.shape[0]})")
    _validate.choice(spill, "spill", SPILL_MODES)
    if spill == "soar":
        if soar_lambda is None:
            raise InvalidValueError("soar_lambda must be a finite number >= 0 for spill='soar', got None")
        soar_lambda = _validate.real(soar_lambda, "soar_lambda", 0.0, what="a finite number >= 0")
    else:
        soar_lambda = 0.0
    return data, centers, np.ascontiguousarray(primary, dtype=np.int32), soar_lambda


def secondary_assignment(data, centers, primary, soar_lambda=1.5, spill: str = "soar", num_threads=0) -> np.ndarray:
    """Secondary leaf of every point (int32, shape (n,)), never equal to its primary leaf.

    Every point is spilled; with a single center there is nowhere to spill and every
    entry is -1. The result does not depend on ``num_threads`` (0 or None = all cores).
    """
    data, centers, primary, lam = _check(data, centers, primary, soar_lambda, spill)
    return _core.soar_assign(data, centers, primary, lam, spill, _validate.num_threads(num_threads))


def soar_losses_reference(data, centers, primary, soar_lambda=1.5, spill: str = "soar") -> np.ndarray:
    """The loss of every (point, center) pair in float64, shape (n, L); the primary's column is +inf."""
    data, centers, primary, lam = _check(data, centers, primary, soar_lambda, spill)
    x = data.astype(np.float64)
    c = centers.astype(np.float64)
    diff = x[:, None, :] - c[None, :, :]  # (n, L, d)
    loss = np.einsum("nld,nld->nl", diff, diff)
    if spill == "soar" and lam > 0:
        r = x - c[primary]
        sq = np.einsum("nd,nd->n", r, r)
        r_hat = np.where(sq[:, None] < MIN_RESIDUAL_SQ_NORM, 0.0, r / np.sqrt(np.maximum(sq, 1e-300))[:, None])
        parallel = np.einsum("nld,nd->nl", diff, r_hat)
        loss = loss + lam * parallel * parallel
    loss[np.arange(len(x)), primary] = np.inf
    return loss


def secondary_assignment_reference(data, centers, primary, soar_lambda=1.5, spill: str = "soar") -> np.ndarray:
    """Pure-numpy (float64) :func:`secondary_assignment`, for tests: small n only (n x L x d memory)."""
    data, centers, primary = np.asarray(data), np.asarray(centers), np.asarray(primary)
    n = data.shape[0]
    if centers.shape[0] == 1:
        return np.full(n, -1, dtype=np.int32)
    out = np.empty(n, dtype=np.int32)
    chunk = max(1, (1 << 22) // (centers.shape[0] * max(1, centers.shape[1])))  # (chunk, L, d) float64 temporary <= 32 MiB
    for begin in range(0, n, chunk):
        sl = slice(begin, begin + chunk)
        out[sl] = np.argmin(soar_losses_reference(data[sl], centers, primary[sl], soar_lambda, spill), axis=1)
    return out
