"""Input checks shared by every public entry point.

This is the one place where bad input is turned away: every index type, the
JAX path and the CLI call these helpers before any data reaches the C++ core,
so the core can assume well-formed, finite, C-contiguous float32 arrays.
"""

from __future__ import annotations

import numbers

import numpy as np

METRICS = ("dot", "cosine", "squared_l2")
_METRIC_ALIASES = {
    "dot_product": "dot",
    "ip": "dot",
    "inner_product": "dot",
    "angular": "cosine",
    "l2": "squared_l2",
    "euclidean": "squared_l2",
    "squared_euclidean": "squared_l2",
}


def metric(name: str) -> str:
    """Return the canonical metric name for ``name`` (aliases such as ScaNN's "dot_product" allowed)."""
    if not isinstance(name, str):
        raise TypeError(f"metric must be a string, one of {METRICS}, got {type(name).__name__}")
    canonical = _METRIC_ALIASES.get(name.lower(), name.lower())
    if canonical not in METRICS:
        raise ValueError(f"metric must be one of {METRICS} (or an alias such as 'dot_product'), got {name!r}")
    return canonical


def _as_float32_matrix(array, name: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be a numeric array, got {type(array).__name__}") from exc
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real-valued, got dtype {array.dtype}")
    # Documented conversion: any real numeric dtype becomes a C-contiguous float32 copy.
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_finite(array: np.ndarray, name: str) -> None:
    # Fast path: a finite sum proves every entry finite (NaN or inf would propagate);
    # only an overflowing or non-finite sum needs the element-wise scan. A sum, not a
    # dot product: BLAS would wake its thread pool, which then spins on another core.
    if array.size and np.isfinite(np.add.reduce(array, axis=None)):
        return
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{name} contains NaN or infinity (first at index {tuple(int(i) for i in bad)})")


def database(data, name: str = "data") -> np.ndarray:
    """Validate a database matrix: 2-D, non-empty, finite; returned as C-contiguous float32."""
    array = _as_float32_matrix(data, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, dim), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: it must hold at least one point, got shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one dimension, got shape {array.shape}")
    _check_finite(array, name)
    return array


def queries(queries_, dim: int, name: str = "queries", allow_1d: bool = False) -> tuple[np.ndarray, bool]:
    """Validate queries against the index dimension.

    Returns the queries as a C-contiguous float32 (nq, dim) matrix and whether the
    input was a single 1-D query (so the caller can squeeze the result).
    """
    if type(queries_) is np.ndarray and queries_.dtype == np.float32 and queries_.flags.c_contiguous:
        array = queries_  # the common case: nothing to convert
    else:
        array = _as_float32_matrix(queries_, name)
    single = False
    if array.ndim == 1 and allow_1d:
        array = array.reshape(1, -1)
        single = True
    if array.ndim != 2:
        expected = "(dim,) or (n, dim)" if allow_1d else "(n, dim)"
        raise ValueError(f"{name} must have shape {expected} with dim={dim}, got shape {array.shape}")
    if array.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {array.shape}")
    _check_finite(array, name)
    return array, single


def positive_int(value, name: str) -> int:
    """Validate a strictly positive integer parameter (``k``, ``num_leaves``, ...)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def k(value, name: str = "k") -> int:
    """Validate the number of neighbors requested (k > n is allowed: results are padded)."""
    return positive_int(value, name)


def recall_target(value, name: str = "recall_target") -> float:
    """Validate an expected-recall target in ``(0, 1]`` (TPU-KNN, the autotuner's target)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}")
    value = float(value)
    if not 0.0 < value <= 1.0:  # also turns away NaN
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value


def num_threads(value) -> int:
    """Validate ``num_threads``; ``None`` or 0 means all cores (returned as 0)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"num_threads must be a non-negative integer or None, got {value!r}")
    return int(value)


def worst_distance(metric_name: str) -> float:
    """The distance used to pad result slots that hold no point (id -1)."""
    return float("inf") if metric_name == "squared_l2" else float("-inf")


def row_ids(ids, n: int, name: str = "ids") -> np.ndarray:
    """Validate row ids of an index of ``n`` points: integers in [0, n); unknown ones are a KeyError."""
    array = np.asarray(ids)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integers, got shape {array.shape}")
    if array.size and (array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    bad = array[(array < 0) | (array >= n)]
    if bad.size:
        shown = ", ".join(str(int(i)) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise KeyError(f"{name} not in the index ({n} points): {shown}")
    return array


def owned(array: np.ndarray, source, copy: bool) -> np.ndarray:
    """``array`` (validated from ``source``) as memory the index owns: copied when it still shares
    the caller's buffer, unless ``copy=False`` (the caller promises not to change it)."""
    if copy and isinstance(source, np.ndarray) and np.may_share_memory(array, source):
        return array.copy()
    return array
