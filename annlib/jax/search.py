"""TPU-KNN search, validated: numpy or device arrays in, a numpy SearchResult out.

Input checks happen here, before tracing; :func:`annlib.jax.knn.knn` is the pure
jitted function underneath. :func:`plan_search` is shared with :mod:`.sharding`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from annlib import _validate
from annlib.jax.knn import QUERY_TILE_ROWS, knn
from annlib.jax.partial_reduce import bins_for_recall
from annlib.result import SearchResult

def _as_input(array, name, dim=None):
    """Validate a database or query matrix; device arrays stay on device.

    numpy input goes through :mod:`annlib._validate` (float32 copy, NaN/inf check).
    A ``jax.Array`` is checked for shape and dtype only: a finiteness check would
    cost a full pass over device memory, which is the whole budget of a
    memory-bound search.
    """
    if isinstance(array, jax.Array):
        if not jnp.issubdtype(array.dtype, jnp.floating):
            raise TypeError(f"{name} must have a floating dtype, got {array.dtype}")
        if dim is None:
            if array.ndim != 2 or 0 in array.shape:
                raise ValueError(
                    f"{name} must be a non-empty 2-D array of shape (n, dim), got shape {array.shape}"
                )
            return array, False
        single = array.ndim == 1
        if single:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != dim:
            raise ValueError(
                f"{name} must have shape (n, {dim}) or ({dim},), got {array.shape}"
            )
        return array, single
    if dim is None:
        return _validate.database(array, name), False
    return _validate.queries(array, dim, name, allow_1d=True)


def _compute_dtype(dtype):
    if dtype is None:
        return None
    try:
        dt = jnp.dtype(dtype)
    except TypeError as exc:
        raise TypeError(
            f"dtype must be None, 'float32' or 'bfloat16', got {dtype!r}"
        ) from exc
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        raise ValueError(f"dtype must be None, 'float32' or 'bfloat16', got {dtype!r}")
    return dt


def _tile(value, name, default):
    if value is None:
        return default
    return _validate.positive_int(value, name)


def plan_search(
    database, queries, k, metric, recall_target, database_tile, query_tile, dtype, norms
):
    """Shared validation of :func:`search` and :func:`annlib.jax.sharding.search_sharded`."""
    metric = _validate.metric(metric)
    k = _validate.k(k)
    recall_target = _validate.recall_target(recall_target)
    database, _ = _as_input(database, "database")
    n, dim = database.shape
    queries, single = _as_input(queries, "queries", dim)
    if norms is not None:
        if isinstance(norms, jax.Array):
            if norms.shape != (n,):
                raise ValueError(f"norms must have shape ({n},), got {norms.shape}")
        else:
            norms = _validate.finite_vector(norms, "norms")
            if norms.shape != (n,):
                raise ValueError(f"norms must have shape ({n},), got {norms.shape}")
    dt = _compute_dtype(dtype)
    if dt is not None:
        database = jnp.asarray(database).astype(dt)
        queries = jnp.asarray(queries).astype(dt)
    exact = recall_target >= 1.0 and k > 1
    num_bins = None if exact else max(bins_for_recall(k, recall_target), k)
    if num_bins is not None and num_bins >= n:
        num_bins = None  # every bin would hold at most one point: exact is cheaper
    return {
        "database": database,
        "queries": queries,
        "norms": norms,
        "single": single,
        "k": k,
        "metric": metric,
        "num_bins": num_bins,
        "database_tile": _tile(database_tile, "database_tile", None),
        "query_tile": _tile(query_tile, "query_tile", QUERY_TILE_ROWS),
    }


def to_numpy(ids, distances, single) -> SearchResult:
    # One transfer for both arrays: on a GPU each separate copy back is a round trip.
    ids, distances = jax.device_get((ids, distances))
    ids = np.asarray(ids).astype(np.int64)
    distances = np.asarray(distances, dtype=np.float32)
    if single:
        return SearchResult(ids[0], distances[0])
    return SearchResult(ids, distances)


def search(
    database,
    queries,
    k: int,
    metric: str = "dot",
    recall_target: float = 0.95,
    *,
    database_tile: int | None = None,
    query_tile: int | None = None,
    dtype=None,
    norms=None,
) -> SearchResult:
    """Brute-force k-NN with exact scores and the PartialReduce approximate top-k.

    Args:
      database: ``[n, d]`` array. numpy (or array-like) input is validated and
        converted to float32; a ``jax.Array`` is used in place (checked for shape
        and dtype, not for NaN).
      queries: ``[nq, d]`` or ``[d]`` array.
      k: neighbours per query; ``k > n`` returns the n points padded with id -1
        and the worst distance (-inf for "dot"/"cosine", +inf for "squared_l2").
      metric: "dot" or "cosine" (distances are similarities, larger first) or
        "squared_l2" (squared distances, smaller first); aliases as in annlib.
      recall_target: expected recall@k, in ``(0, 1]``; L =
        ``max(bins_for_recall(k, recall_target), k)`` bins. ``1.0`` (or L >= n)
        gives the exact top-k.
      database_tile: database rows scored per matmul (rounded to a multiple of L).
      query_tile: queries scored per matmul.
      dtype: None or "float32" (inputs as float32), or "bfloat16" (inputs cast to
        bfloat16, float32 accumulation; for accelerators, slow on most CPUs).
      norms: optional precomputed ``|x|^2`` per database row, ``[n]``; saves a
        pass over the database per call for "squared_l2" and "cosine".

    Returns:
      :class:`annlib.SearchResult` ``(ids, distances)``: int64 and float32 numpy
      arrays ``[nq, k]`` (``[k]`` for a 1-D query), best first.

    Raises:
      TypeError: non-numeric or complex input, bad ``recall_target`` type.
      ValueError: bad shapes, NaN/inf, unknown metric, ``k <= 0``,
        ``recall_target`` outside ``(0, 1]``.

    Within a bin, ties go to the smaller id; the recall guarantee is an
    expectation over queries whose neighbours are spread over the strided bins
    independently (see the module docstring).

    >>> import numpy as np
    >>> x = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> ids, dist = search(x, x[:1], k=2, metric="squared_l2", recall_target=1.0)
    >>> ids.tolist(), dist.tolist()
    ([[0, 1]], [[0.0, 8.0]])
    """
    plan = plan_search(database, queries, k, metric, recall_target, database_tile, query_tile, dtype, norms)
    ids, distances = knn(
        plan["database"],
        plan["queries"],
        plan["norms"],
        k=plan["k"],
        num_bins=plan["num_bins"],
        metric=plan["metric"],
        database_tile=plan["database_tile"],
        query_tile=plan["query_tile"],
    )
    return to_numpy(ids, distances, plan["single"])
