"""The jitted TPU-KNN scan: exact scores by matmul, PartialReduce, final top-k.

1. the database is scanned in tiles of ``database_tile`` rows (``lax.fori_loop``),
   each tile scored against a tile of ``query_tile`` queries with one matmul, so no
   ``[nq, n]`` score matrix is ever materialised;
2. every tile is folded into the ``L`` strided bins of :mod:`.partial_reduce`, and
   the bins are carried across tiles, so the whole database is reduced into the
   same ``L`` bins;
3. an exact ``lax.top_k`` over the ``L`` bin winners gives the result.

``num_bins=None`` runs an exact, tiled top-k with a running merge instead. The
per-shard scan (:func:`reduce`) is shared with :mod:`.sharding`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from annlib import _validate
from annlib.jax.partial_reduce import bin_max

# Tiling defaults, chosen on a 2-core AVX2 machine (bench/RESULTS.md, TPU-KNN section).
# XLA:CPU copies a database slice before its matmul, which costs as much as the
# matmul itself when a search is memory-bound (few queries). So small query
# batches score the whole database in one matmul when the [b, n] score matrix fits
# _WHOLE_SCORES_BYTES; larger batches use database tiles whose [b, tile] score
# tile (_TILE_SCORES_BYTES) stays in a core's L2, where the reduction is cheap and
# the slice copy is amortised over b queries. (At 100 queries on 50k x 384,
# 2.4k-row tiles, 0.9 MB of scores, ran 1.02-1.05x the bare matmul on one and
# two cores; 4.1k-row tiles, 1.65 MB, 1.09x.)
QUERY_TILE_ROWS = 1024
_SMALL_BATCH = 32
_WHOLE_SCORES_BYTES = 64 << 20
_TILE_SCORES_BYTES = 1 << 20
# Clamp on the tile's rows: measured on 50k x 384, nq=100, ~21k-row tiles were
# 1.6x slower than 3-5k-row ones (bench/RESULTS.md, TPU-KNN section).
_MIN_TILE_ROWS = 2048
_MAX_TILE_ROWS = 4096
# On a GPU or TPU the scores live in device memory, not a core's L2, and every loop
# step is a kernel launch: tiles there are sized so that one matmul fills the chip
# (a [1024, 64k] float32 score tile is 256 MiB; an H200 holds 141 GB).
_ACCELERATOR_WHOLE_SCORES_BYTES = 1 << 30
_ACCELERATOR_TILE_SCORES_BYTES = 256 << 20
_ACCELERATOR_MIN_TILE_ROWS = 16384
_ACCELERATOR_MAX_TILE_ROWS = 1 << 20



def _precision(dtype):
    """float32 data is scored in full float32 on every backend.

    XLA's default on a GPU rounds float32 matmul inputs to TF32 (10-bit mantissa):
    on an H200 that took recall@10 of a squared-L2 search of points 0.01 apart
    from 0.95 to 0.38, silently. bfloat16 data (``dtype="bfloat16"``) is the way to
    trade precision for matmul speed, and keeps the backend's default.
    """
    return lax.Precision.HIGHEST if dtype == jnp.float32 else None


def _scores(queries, rows, column_term, metric: str):
    """Ranking scores ``[b, t]`` (larger is better) of query rows against database rows.

    dot: <q, x>; cosine: <q/|q|, x> / |x| (queries are normalised by the caller);
    squared_l2: 2 <q, x> - |x|^2, which ranks like -|q - x|^2 (the paper's L2 trick:
    one multiply-add per score instead of the full expansion).
    """
    # Spelt q @ x.T, not dot_general over (1, 1): XLA:CPU then runs the
    # single-query case as a fast gemv over x (measured 1.7x faster at nq=1).
    s = jnp.matmul(
        queries.astype(rows.dtype),
        rows.T,
        precision=_precision(rows.dtype),
        preferred_element_type=jnp.float32,
    )
    if metric == "squared_l2":
        s = 2.0 * s - column_term[None, :]
    elif metric == "cosine":
        s = s * column_term[None, :]
    return s


def _scores_by_row(queries, rows, column_term, metric: str):
    """:func:`_scores` transposed: ``[t, b]``, database-row-major.

    For a small query batch (2 to ``_SMALL_BATCH`` queries) XLA:CPU streams the
    database through one ``x @ q.T`` gemm without the transposed copy that
    ``q @ x.T`` makes (1.15-1.3x faster at 4-32 queries on 50k x 384). One query
    keeps ``q @ x.T``, which XLA:CPU runs as a fused gemv at streaming speed; the
    ``[1, t]`` result is the same memory as ``[t, 1]``.
    """
    if queries.shape[0] == 1:
        s = _scores(queries, rows, None, "dot").reshape(-1, 1)
    else:
        s = lax.dot_general(
            rows,
            queries.astype(rows.dtype),
            (((1,), (1,)), ((), ())),
            precision=_precision(rows.dtype),
            preferred_element_type=jnp.float32,
        )
    if metric == "squared_l2":
        s = 2.0 * s - column_term[:, None]
    elif metric == "cosine":
        s = s * column_term[:, None]
    return s


def _select_one_tile(queries, database, column_term, offset, *, k, num_bins, metric):
    """Whole-database PartialReduce fused with the final top-k, for small batches.

    Returns ``(best [b, k], ids [b, k])``, already the result (best first). The
    database is scored in one pass (``[n, b]``, row-major, see
    :func:`_scores_by_row`); its first ``W * L`` rows are viewed (no copy) as
    ``[W, L, b]`` and reduced over ``W``, an elementwise max of ``W`` contiguous
    ``[L, b]`` slabs; the last ``n mod L`` rows fold into bins ``0..n mod L - 1``
    without padding the score matrix. The arg-max is then found only for the
    ``k`` bins the top-k keeps, from a ``[W, k, b]`` gather, instead of a second
    full pass over the scores and an ``[W, L, b]`` index array. Same bins, same
    ties (smallest id in a bin) as :func:`_bin_max`.
    """
    n = database.shape[0]
    b = queries.shape[0]
    width = n // num_bins
    main_rows = width * num_bins
    rest = n - main_rows
    s = _scores_by_row(queries, database, column_term, metric)  # [n, b]
    main = s[:main_rows].reshape(width, num_bins, b)
    best = main.max(axis=0)  # [L, b]
    if rest:
        tail = jnp.pad(s[main_rows:], ((0, num_bins - rest), (0, 0)), constant_values=-jnp.inf)
        tail_wins = tail > best  # strict: the tail holds the largest ids
        best = jnp.where(tail_wins, tail, best)
    values, bins = lax.top_k(best.T, k)  # [b, k]
    cand = jnp.take_along_axis(main, bins.T[None], axis=1)  # [W, k, b]
    rows = lax.broadcasted_iota(jnp.int32, cand.shape, 0)
    row = jnp.min(jnp.where(cand == values.T[None], rows, width), axis=0).T  # [b, k]
    ids = row * num_bins + bins
    if rest:
        ids = jnp.where(
            jnp.take_along_axis(tail_wins.T, bins, axis=1), main_rows + bins, ids
        )
    return values, ids + offset


def _reduce_query_tile(
    queries,
    database,
    column_term,
    offset,
    *,
    k,
    num_bins,
    metric,
    database_tile,
    n_total,
    select_k=False,
):
    """Scan the database for one query tile; returns the carried state.

    Approximate (``num_bins`` set): ``(best [b, L], ids [b, L])``, the bin winners.
    Exact (``num_bins is None``): ``(best [b, k], ids [b, k])``, a running top-k.
    With ``select_k`` and the whole database in one tile (small batches, no
    padding), the approximate path returns ``(best [b, k], ids [b, k])``, the
    final top-k (see :func:`_select_one_tile`); :func:`finish` accepts both.
    ``offset`` is the global id of ``database[0]`` (a shard's offset; a multiple of
    L so that shards share the global strided bins); rows with global id
    ``>= n_total`` are padding and score -inf.
    """
    b = queries.shape[0]
    n = database.shape[0]
    exact = num_bins is None
    width = k if exact else num_bins
    mask_padding = n_total is not None

    def fold(state, rows, column, start, size):
        best, ids = state
        s = _scores(queries, rows, column, metric)
        if mask_padding:
            gid = offset + start + lax.broadcasted_iota(jnp.int32, (1, size), 1)
            s = jnp.where(gid < n_total, s, -jnp.inf)
        if exact:
            top, arg = lax.top_k(s, min(k, size))
            cand = jnp.concatenate([best, top], axis=1)
            cand_ids = jnp.concatenate(
                [ids, arg.astype(jnp.int32) + (offset + start)], axis=1
            )
            best, pick = lax.top_k(cand, k)
            return best, jnp.take_along_axis(cand_ids, pick, axis=1)
        pad = (-size) % num_bins  # only the last, partial tile can need it
        if pad:
            s = jnp.pad(s, ((0, 0), (0, pad)), constant_values=-jnp.inf)
        tile_best, row = bin_max(s, num_bins)
        tile_ids = (
            offset
            + start
            + row * num_bins
            + lax.broadcasted_iota(jnp.int32, tile_best.shape, 1)
        )
        better = tile_best > best  # strict: earlier tiles (smaller ids) win ties
        return jnp.where(better, tile_best, best), jnp.where(better, tile_ids, ids)

    def column_slice(start, size):
        if column_term is None:
            return None
        return lax.dynamic_slice_in_dim(column_term, start, size)

    state = (
        jnp.full((b, width), -jnp.inf, jnp.float32),
        jnp.full((b, width), -1, jnp.int32),
    )
    if database_tile >= n:  # one tile: no slice, hence no copy of the database
        if select_k and not exact and not mask_padding:
            return _select_one_tile(
                queries,
                database,
                column_term,
                offset,
                k=k,
                num_bins=num_bins,
                metric=metric,
            )
        return fold(state, database, column_term, 0, n)
    num_full = n // database_tile
    if num_full:

        def body(i, state):
            start = i * database_tile
            rows = lax.dynamic_slice_in_dim(database, start, database_tile)
            return fold(
                state, rows, column_slice(start, database_tile), start, database_tile
            )

        state = lax.fori_loop(0, num_full, body, state)
    rest = n - num_full * database_tile
    if rest:
        start = num_full * database_tile
        column = None if column_term is None else column_term[start:]
        state = fold(state, database[start:], column, start, rest)
    return state


def reduce(queries, database, column_term, offset, *, query_tile, **kwargs):
    """Run :func:`_reduce_query_tile` over query tiles (``lax.map``, sequential)."""
    nq, dim = queries.shape
    if nq <= query_tile:
        return _reduce_query_tile(queries, database, column_term, offset, **kwargs)
    num_tiles = -(-nq // query_tile)
    padded = jnp.pad(queries, ((0, num_tiles * query_tile - nq), (0, 0)))
    best, ids = lax.map(
        lambda q: _reduce_query_tile(q, database, column_term, offset, **kwargs),
        padded.reshape(num_tiles, query_tile, dim),
    )
    width = best.shape[-1]
    return best.reshape(-1, width)[:nq], ids.reshape(-1, width)[:nq]


def prepare_terms(queries, database, norms, metric):
    """Metric-specific query transform, per-row column term and per-query offset."""
    queries = queries.astype(jnp.float32)
    if metric == "dot":
        return queries, None, None
    if norms is None:
        x = database.astype(jnp.float32)
        norms = jnp.sum(x * x, axis=1)
    norms = norms.astype(jnp.float32)
    if metric == "cosine":
        qn = jnp.linalg.norm(queries, axis=1, keepdims=True)
        queries = jnp.where(qn > 0, queries / jnp.where(qn > 0, qn, 1.0), 0.0)
        inv = jnp.where(norms > 0, lax.rsqrt(jnp.where(norms > 0, norms, 1.0)), 0.0)
        return queries, inv, None
    return queries, norms, jnp.sum(queries * queries, axis=1)


def finish(best, ids, query_sq_norms, *, k, exact, metric):
    """Exact top-k over the bin winners, then scores to annlib distances.

    ``exact`` means ``best``/``ids`` already are the top-k, best first.
    """
    if not exact:
        best, pick = lax.top_k(best, k)
        ids = jnp.take_along_axis(ids, pick, axis=1)
    ids = jnp.where(best == -jnp.inf, -1, ids)
    if metric == "squared_l2":
        # |q - x|^2 = |q|^2 - (2<q, x> - |x|^2); padding (-inf) becomes +inf.
        best = jnp.maximum(query_sq_norms[:, None] - best, 0.0)
    return ids, best


def _check_traced(database, queries, norms, k, metric):
    if database.ndim != 2 or queries.ndim != 2:
        raise ValueError(
            f"database and queries must be 2-D, got shapes {database.shape} and {queries.shape}"
        )
    if database.shape[1] != queries.shape[1]:
        raise ValueError(
            f"queries must have shape (nq, {database.shape[1]}), got {queries.shape}"
        )
    for name, a in (("database", database), ("queries", queries)):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"{name} must have a floating dtype, got {a.dtype}")
    if norms is not None and norms.shape != (database.shape[0],):
        raise ValueError(
            f"norms must have shape ({database.shape[0]},), got {norms.shape}"
        )
    if metric not in _validate.METRICS:
        raise ValueError(f"metric must be one of {_validate.METRICS}, got {metric!r}")
    if k <= 0:
        raise ValueError(f"k must be a positive integer, got {k}")


@functools.partial(
    jax.jit, static_argnames=("k", "num_bins", "metric", "database_tile", "query_tile")
)
def knn(
    database: jax.Array,
    queries: jax.Array,
    norms: jax.Array | None = None,
    *,
    k: int,
    num_bins: int | None,
    metric: str = "dot",
    database_tile: int | None = None,
    query_tile: int = QUERY_TILE_ROWS,
) -> tuple[jax.Array, jax.Array]:
    """Jitted k-NN core on device arrays, with an explicit number of bins.

    The pure function under :func:`annlib.jax.search.search` (which validates input, picks
    ``num_bins`` from a recall target and returns numpy arrays).

    Args:
      database: ``[n, d]`` floating array (bfloat16 allowed; scores accumulate in
        float32).
      queries: ``[nq, d]`` floating array.
      norms: optional ``[n]`` squared norms ``|x|^2`` of the database rows, used by
        "squared_l2" and "cosine" (computed when omitted).
      k: neighbours per query (static).
      num_bins: L (static); ``None`` runs the exact tiled top-k. Needs
        ``k <= num_bins <= n``.
      metric: "dot", "cosine" or "squared_l2" (static).
      database_tile: rows per database tile, rounded down to a multiple of L;
        ``None`` sizes it from the query batch (see ``_database_tile``).
      query_tile: queries per tile.

    Returns:
      ``(ids, distances)``, int32 and float32 ``[nq, k]``, best first. Padding
      slots (k > n) hold id -1 and the worst distance. Ties between equal scores
      are broken towards the smaller id within a bin; across bins the order of
      equal scores follows ``lax.top_k``.

    >>> import jax.numpy as jnp
    >>> x = jnp.eye(4)
    >>> ids, d = knn(x, x[2:3] * 2, k=2, num_bins=None)
    >>> ids.tolist(), d.tolist()
    ([[2, 0]], [[2.0, 0.0]])
    """
    _check_traced(database, queries, norms, k, metric)
    n = database.shape[0]
    if num_bins is not None and not k <= num_bins <= n:
        raise ValueError(
            f"num_bins must satisfy k <= num_bins <= n, got k={k}, num_bins={num_bins}, n={n}"
        )
    tile = database_tile_rows(database_tile, num_bins, n, min(queries.shape[0], query_tile))
    q, column, q_sq = prepare_terms(queries, database, norms, metric)
    best, ids = reduce(
        q,
        database,
        column,
        0,
        query_tile=query_tile,
        k=k,
        num_bins=num_bins,
        metric=metric,
        database_tile=tile,
        n_total=None,
        select_k=True,
    )
    selected = num_bins is None or tile >= n  # see _select_one_tile
    return finish(best, ids, q_sq, k=k, exact=selected, metric=metric)


def database_tile_rows(rows: int | None, num_bins: int | None, n: int, batch: int,
                       backend: str | None = None) -> int:
    """Database rows per tile for a query tile of ``batch`` rows; ``>= n`` means one tile.

    ``rows=None`` picks the size from the score-tile budgets above (the CPU's, or the
    accelerators' for ``backend`` "gpu"/"tpu"; default JAX's default backend), then nudges it
    (:func:`_least_leftover`) so the tiles leave few rows over. A tile smaller
    than the database is a multiple of L, so tiles share the global strided bins.
    """
    step = num_bins or 1
    if rows is None:
        if backend is None:
            backend = jax.default_backend()
        if backend == "cpu":
            whole, tile_bytes = _WHOLE_SCORES_BYTES, _TILE_SCORES_BYTES
            small_batch, min_rows, max_rows = _SMALL_BATCH, _MIN_TILE_ROWS, _MAX_TILE_ROWS
        else:
            whole, tile_bytes = _ACCELERATOR_WHOLE_SCORES_BYTES, _ACCELERATOR_TILE_SCORES_BYTES
            small_batch, min_rows, max_rows = QUERY_TILE_ROWS, _ACCELERATOR_MIN_TILE_ROWS, _ACCELERATOR_MAX_TILE_ROWS
        if batch <= small_batch and 4 * batch * n <= whole:
            return n
        rows = min(max(tile_bytes // (4 * batch), min_rows), max_rows)
        if rows < n:
            rows = _least_leftover(n, step, rows)
    if rows >= n:
        return n
    return max(step, rows // step * step)


def _least_leftover(n: int, step: int, rows: int) -> int:
    """The tile of 3/4 to 5/4 of ``rows`` rows, a multiple of ``step``, leaving the fewest rows.

    Rows past the last whole tile are scored by a separate, odd-shaped matmul
    that runs less efficiently: on 50k x 384 with 100 queries, 4048-row tiles
    (1424 rows left) made the search 1.12x the bare matmul, 4136-row tiles
    (368 left) 1.09x, and with none left it was 1.05x. Ties go to the size
    nearest ``rows``.
    """
    low = -(-(3 * rows) // (4 * step)) * step
    high = (5 * rows) // (4 * step) * step
    if low > high:
        return rows
    return min(range(low, high + 1, step), key=lambda tile: (n % tile, abs(tile - rows)))
