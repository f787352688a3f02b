"""Input checks shared by every public entry point.

This is the one place where bad input is turned away: every index type, the
JAX path, the config dataclasses and the CLI call these helpers before any data
reaches the C++ core, so the core can assume well-formed, finite, C-contiguous
float32 arrays and integers that fit its C types.

Errors follow :mod:`annlib.errors`: a wrong type is an
:class:`~annlib.errors.InvalidTypeError` (a ``TypeError``), a bad value an
:class:`~annlib.errors.InvalidValueError` (a ``ValueError``); the message names
the argument, what was expected and what arrived.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

from annlib.errors import InvalidTypeError, InvalidValueError

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

MAX_COUNT = 2**31 - 1
"""Largest size a build parameter may have (leaves, block width, iterations): point ids are int32."""

MAX_INT = 2**63 - 1
"""Largest integer any argument may have: search counts (``k``, ``pre_reorder_num_neighbors``)
above the index size are clamped by the search, but never past what a C integer holds."""

MAX_SEED = 2**64 - 1
"""Seeds are unsigned 64-bit integers in the core."""

MAX_SQUARED_NORM = 2.0**120
"""Largest squared row norm accepted (norm about 1.15e18).

The core computes in float32 (largest value about 3.4e38 = 2**128). With every
row's squared norm at most 2**120, every dot product is at most 2**120 in
magnitude and every squared distance ``|q - x|^2 <= (|q| + |x|)^2`` at most
2**122, which leaves room for the ``2 <q, x> - |x|^2`` forms the kernels use.
Larger rows would overflow to infinity and rank nothing; they are refused."""

THREADS_PER_CORE_CAP = 4
MIN_THREAD_CAP = 64


def max_threads() -> int:
    """The most threads a call may use: ``max(64, 4 x hardware threads)``.

    More threads than cores never speed up annlib's CPU-bound loops, and the
    core's pool keeps every thread it ever started alive for the whole process,
    so larger requests are capped here (not refused: results never depend on
    the thread count).
    """
    return max(MIN_THREAD_CAP, THREADS_PER_CORE_CAP * (os.cpu_count() or 1))


def metric(name: str) -> str:
    """Return the canonical metric name for ``name`` (aliases such as ScaNN's "dot_product" allowed)."""
    if not isinstance(name, str):
        raise InvalidTypeError(f"metric must be a string, one of {METRICS}, got {type(name).__name__}")
    canonical = _METRIC_ALIASES.get(name.lower(), name.lower())
    if canonical not in METRICS:
        raise InvalidValueError(f"metric must be one of {METRICS} (or an alias such as 'dot_product'), got {name!r}")
    return canonical


def _as_float32_matrix(array, name: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except Exception as exc:  # ragged lists and the like
            raise InvalidTypeError(f"{name} must be a numeric array, got {type(array).__name__}") from exc
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise InvalidTypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise InvalidTypeError(f"{name} must be real-valued, got dtype {array.dtype}")
    # Documented conversion: any real numeric dtype becomes a C-contiguous float32 copy.
    # float64 values beyond float32's range become inf and are reported by _check_values.
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(array, dtype=np.float32)


_SMALL_CHECK = 4096  # entries checked through a float64 copy (see _check_values)


def _check_values(array: np.ndarray, name: str) -> None:
    """Every entry finite and every row's squared norm at most :data:`MAX_SQUARED_NORM`.

    Fast path: the float32 sum of all squares is finite and small only when every
    entry is finite (NaN or inf propagate) and every row is small. einsum, not a
    dot product: BLAS would wake its thread pool, which then spins on another core.
    """
    if not array.size:
        return
    if array.size <= _SMALL_CHECK:
        # A few rows (a single-query search): summed in float64, where float32 squares cannot
        # overflow, so no errstate context is needed; that context cost more than the sum.
        flat = array.reshape(-1).astype(np.float64)
        total = np.dot(flat, flat)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.einsum("ij,ij->", array, array) if array.ndim == 2 else np.vdot(array, array)
    if total <= MAX_SQUARED_NORM:  # False for NaN and inf
        return
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise InvalidValueError(f"{name} contains NaN or infinity (first at index {tuple(int(i) for i in bad)})")
    rows = array.reshape(array.shape[0], -1) if array.ndim >= 2 else array.reshape(1, -1)
    squared = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
    over = np.flatnonzero(squared > MAX_SQUARED_NORM)
    if over.size:
        i = int(over[0])
        raise InvalidValueError(
            f"{name} row {i} has squared norm {squared[i]:.3g}, over the limit 2**120 (about 1.3e36): "
            "its scores and distances would overflow float32; scale the data down"
        )


def database(data, name: str = "data") -> np.ndarray:
    """Validate a database matrix: 2-D, non-empty, finite, rows not too large; returned as C-contiguous float32."""
    array = _as_float32_matrix(data, name)
    if array.ndim != 2:
        raise InvalidValueError(f"{name} must be a 2-D array of shape (n, dim), got shape {array.shape}")
    if array.shape[0] == 0:
        raise InvalidValueError(f"{name} is empty: it must hold at least one point, got shape {array.shape}")
    if array.shape[1] == 0:
        raise InvalidValueError(f"{name} must have at least one dimension, got shape {array.shape}")
    if array.shape[0] > MAX_COUNT:
        raise InvalidValueError(f"{name} holds {array.shape[0]} points; at most {MAX_COUNT} are supported")
    _check_values(array, name)
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
        raise InvalidValueError(f"{name} must have shape {expected} with dim={dim}, got shape {array.shape}")
    if array.shape[1] != dim:
        raise InvalidValueError(f"{name} must have shape (n, {dim}), got {array.shape}")
    _check_values(array, name)
    return array, single


def finite_vector(values, name: str) -> np.ndarray:
    """Validate a 1-D array of finite numbers (e.g. precomputed norms); returned as C-contiguous float32."""
    array = _as_float32_matrix(values, name)
    if array.ndim != 1:
        raise InvalidValueError(f"{name} must be 1-D, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise InvalidValueError(f"{name} contains NaN or infinity (first at index {bad})")
    return array


def integer(value, name: str, minimum: int = 0, maximum: int = MAX_INT, what: str = "an integer") -> int:
    """Validate an integer argument in ``[minimum, maximum]``: an int (numpy ints too), never a bool or float."""
    if type(value) is int and minimum <= value <= maximum:  # the common case, without the ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum or value > maximum:
        raise InvalidValueError(f"{name} must be {what} in [{minimum}, {maximum}], got {value}")
    return value


def positive_int(value, name: str, maximum: int = MAX_INT) -> int:
    """Validate a strictly positive integer parameter (``k``, ``num_leaves``, ...), at most ``maximum``."""
    return integer(value, name, 1, maximum, "a positive integer")


def non_negative_int(value, name: str, maximum: int = MAX_INT) -> int:
    """Validate an integer parameter >= 0, at most ``maximum``."""
    return integer(value, name, 0, maximum, "a non-negative integer")


def seed(value, name: str = "seed") -> int:
    """Validate a random seed: an integer in ``[0, 2**64 - 1]``."""
    return integer(value, name, 0, MAX_SEED, "a non-negative integer seed")


def real(value, name: str, minimum: float = -math.inf, maximum: float = math.inf, what: str = "a number") -> float:
    """Validate a finite real number in ``[minimum, maximum]`` (an int or float, never a bool or string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise InvalidValueError(f"{name} must be {what} in [{minimum}, {maximum}], got {value}")
    return value


def boolean(value, name: str, allow_none: bool = False) -> bool | None:
    """Validate a flag: ``True`` or ``False`` (numpy bools too), or ``None`` when allowed; never a string."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        expected = "True, False or None" if allow_none else "True or False"
        raise InvalidTypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    return bool(value)


def choice(value, name: str, options: tuple) -> str:
    """Validate a string option."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"{name} must be one of {options}, got {type(value).__name__} {value!r}")
    if value not in options:
        raise InvalidValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def k(value, name: str = "k") -> int:
    """Validate the number of neighbors requested (k > n is allowed: results are padded)."""
    return positive_int(value, name)


def recall_target(value, name: str = "recall_target") -> float:
    """Validate an expected-recall target in ``(0, 1]`` (TPU-KNN, the autotuner's target)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{name} must be a number in (0, 1], got {value!r}")
    value = float(value)
    if not 0.0 < value <= 1.0:  # also turns away NaN
        raise InvalidValueError(f"{name} must be in (0, 1], got {value}")
    return value


def num_threads(value) -> int:
    """Validate ``num_threads``; ``None`` or 0 means the default (returned as 0: the core resolves it
    to :func:`annlib.default_num_threads`, which respects the affinity mask and cgroup quota).

    Requests above :func:`max_threads` are capped to it (see there why).
    """
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(
            f"num_threads must be a non-negative integer or None, got {type(value).__name__} {value!r}"
        )
    if value < 0:
        raise InvalidValueError(f"num_threads must be a non-negative integer or None, got {value}")
    return min(int(value), max_threads())


def worst_distance(metric_name: str) -> float:
    """The distance used to pad result slots that hold no point (id -1)."""
    return float("inf") if metric_name == "squared_l2" else float("-inf")


def row_ids(ids, n: int, name: str = "ids") -> np.ndarray:
    """Validate row ids of an index of ``n`` points: integers in [0, n); unknown ones are a KeyError."""
    array = np.asarray(ids)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise InvalidValueError(f"{name} must be a 1-D array of integers, got shape {array.shape}")
    if array.size and (array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer)):
        raise InvalidTypeError(f"{name} must be integers, got dtype {array.dtype}")
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
