"""Filtered brute force on the JAX path: exact scores, rejected points set to -inf before the top-k.

The index route of :class:`annlib.JaxBruteForce` under a filter (:mod:`annlib.index.filtered`):
each chunk of queries is scored against the whole database in one matmul, the scores of points
its filter rejects are masked, and ``lax.approx_max_k`` (exact ``lax.top_k`` at recall target 1)
keeps the best. A masked point can never be returned: a query whose filter passes fewer than
``k`` points gets id -1 in the remaining slots.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

#: Queries per device call (rounded up to a power of two, so few shapes are compiled).
QUERY_CHUNK = 256


@functools.partial(jax.jit, static_argnames=("k", "metric", "recall_target"))
def _masked_top_k(database, norms, queries, allowed, *, k: int, metric: str, recall_target: float):
    scores = jnp.matmul(queries, database.T, preferred_element_type=jnp.float32)
    if metric == "squared_l2":
        scores = 2.0 * scores - norms[None, :]
    scores = jnp.where(allowed, scores, -jnp.inf)
    if recall_target >= 1.0:
        return lax.top_k(scores, k)
    return lax.approx_max_k(scores, k, recall_target=recall_target)


def _chunk_rows(count: int) -> int:
    return min(QUERY_CHUNK, 1 << max(0, (count - 1).bit_length()))


def search(database, norms, queries: np.ndarray, allowed: np.ndarray, filter_of_query: np.ndarray | None, k: int,
           metric: str, recall_target: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, distances) of float32 ``queries`` (already normalised for cosine) over the device
    ``database``; ``allowed`` is bool (filters, n), query i uses row ``filter_of_query[i]`` (row 0
    for all when None). ``metric``: "dot" (also for cosine) or "squared_l2"."""
    nq = queries.shape[0]
    rows = np.empty((nq, k), dtype=np.int64)
    distances = np.empty((nq, k), dtype=np.float32)
    shared = jnp.asarray(allowed[:1]) if filter_of_query is None else None
    chunk = _chunk_rows(nq)
    for begin in range(0, nq, chunk):
        end = min(nq, begin + chunk)
        block = np.zeros((chunk, queries.shape[1]), dtype=np.float32)
        block[: end - begin] = queries[begin:end]
        if shared is not None:
            mask = shared
        else:
            mask_rows = np.zeros((chunk, allowed.shape[1]), dtype=bool)
            mask_rows[: end - begin] = allowed[filter_of_query[begin:end]]
            mask = jnp.asarray(mask_rows)
        values, ids = _masked_top_k(database, norms, jnp.asarray(block), mask, k=k, metric=metric,
                                    recall_target=float(recall_target))
        values = np.asarray(values)[: end - begin]
        ids = np.asarray(ids)[: end - begin].astype(np.int64)
        empty = ~np.isfinite(values)
        ids[empty] = -1
        if metric == "squared_l2":
            q_norms = np.einsum("ij,ij->i", queries[begin:end], queries[begin:end])
            dist = np.maximum(0.0, q_norms[:, None] - values)
            dist[empty] = np.inf
        else:
            dist = values
        rows[begin:end] = ids
        distances[begin:end] = dist
    return rows, distances
