"""TPU-KNN with the database sharded over devices (``shard_map``).

Every device reduces its row shard into the same global strided bins; the merge
is an all-reduce over the bins, so the result equals the unsharded search.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from annlib.jax.knn import database_tile_rows, finish, prepare_terms, reduce
from annlib.jax.search import plan_search, to_numpy
from annlib.result import SearchResult

_INT32_MAX = np.iinfo(np.int32).max


@functools.lru_cache(maxsize=64)
def _sharded_fn(
    mesh, axis, k, num_bins, metric, database_tile, query_tile, n_total, shard_rows
):
    exact = num_bins is None

    def per_shard(database, column, queries):
        tile = database_tile_rows(
            database_tile, num_bins, shard_rows, min(queries.shape[0], query_tile)
        )
        offset = lax.axis_index(axis) * shard_rows
        best, ids = reduce(
            queries,
            database,
            column,
            offset,
            query_tile=query_tile,
            k=k,
            num_bins=num_bins,
            metric=metric,
            database_tile=tile,
            n_total=n_total,
        )
        if exact:
            # Each shard's running top-k, gathered in shard order (= id order, so
            # ties resolve as in the unsharded scan), then one more top-k.
            best = lax.all_gather(best, axis, axis=1, tiled=True)
            ids = lax.all_gather(ids, axis, axis=1, tiled=True)
            best, pick = lax.top_k(best, k)
            return best, jnp.take_along_axis(ids, pick, axis=1)
        # Shards hold multiples of L rows, so bin l of every shard is the global
        # strided bin l: the global winner is the max over shards, ties to the
        # smaller id, exactly as in the unsharded scan.
        top = lax.pmax(best, axis)
        ids = lax.pmin(jnp.where(best == top, ids, _INT32_MAX), axis)
        return top, ids

    column_spec = P(axis) if metric != "dot" else None
    sharded = jax.shard_map(
        per_shard,
        mesh=mesh,
        in_specs=(P(axis), column_spec, P()),
        out_specs=(P(), P()),
        # The scan carries start device-invariant and become per-shard; the outputs
        # are invariant again after pmax/pmin/all_gather. Skip the type tracking
        # rather than thread the axis name into the shared kernel.
        check_vma=False,
    )

    @jax.jit
    def run(database, norms, queries):
        q, column, q_sq = prepare_terms(queries, database, norms, metric)
        best, ids = sharded(database, column, q)
        return finish(best, ids, q_sq, k=k, exact=exact, metric=metric)

    return run


def search_sharded(
    database,
    queries,
    k: int,
    metric: str = "dot",
    recall_target: float = 0.95,
    *,
    mesh: Mesh | None = None,
    database_tile: int | None = None,
    query_tile: int | None = None,
    dtype=None,
    norms=None,
) -> SearchResult:
    """:func:`annlib.jax.search.search` with the database sharded over devices (``shard_map``).

    The database is split by rows over the first axis of ``mesh`` (default: a 1-D
    mesh over all of ``jax.devices()``), each shard padded to a multiple of L rows
    (padding scores -inf, never returned). Queries are replicated. Every device
    reduces its shard into the same L strided bins; the global merge is an
    all-reduce max over the bins (ids carry the shard offset), then the exact
    top-k. Because the bins are the global ones, the result equals the unsharded
    :func:`search` (up to float summation order in the matmul). For the exact path
    each device keeps its top-k and the k x devices candidates are merged.

    Arguments, returns and errors as :func:`search`, plus ``mesh``.
    """
    plan = plan_search(database, queries, k, metric, recall_target, database_tile, query_tile, dtype, norms)
    if mesh is None:
        mesh = jax.make_mesh((len(jax.devices()),), ("db",))
    elif not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    axis = mesh.axis_names[0]
    num_shards = mesh.shape[axis]
    database = plan["database"]
    n = database.shape[0]
    step = plan["num_bins"] or 1
    per_shard = -(-n // num_shards)
    shard_rows = -(-per_shard // step) * step
    padded = shard_rows * num_shards
    xp = jnp if isinstance(database, jax.Array) else np
    if padded != n:
        database = xp.concatenate(
            [database, xp.zeros((padded - n, database.shape[1]), database.dtype)]
        )
    norms = plan["norms"]
    if plan["metric"] != "dot":
        if norms is None:
            x = np.asarray(database, dtype=np.float32)
            norms = np.einsum("ij,ij->i", x, x)
        elif norms.shape[0] != padded:
            norms = jnp.concatenate(
                [jnp.asarray(norms, jnp.float32), jnp.zeros(padded - n, jnp.float32)]
            )
        norms = jax.device_put(norms, NamedSharding(mesh, P(axis)))
    else:
        norms = None
    database = jax.device_put(database, NamedSharding(mesh, P(axis)))
    queries = jax.device_put(plan["queries"], NamedSharding(mesh, P()))
    run = _sharded_fn(
        mesh,
        axis,
        plan["k"],
        plan["num_bins"],
        plan["metric"],
        plan["database_tile"],
        plan["query_tile"],
        n if padded != n else None,
        shard_rows,
    )
    ids, distances = run(database, norms, queries)
    return to_numpy(ids, distances, plan["single"])
