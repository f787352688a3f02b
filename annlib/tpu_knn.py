"""TPU-KNN: brute-force k-NN with the PartialReduce approximate top-k, in JAX (issue 5).

Implements Chern et al., "TPU-KNN: K Nearest Neighbor Search at Peak FLOP/s"
(NeurIPS 2022, arXiv 2206.14286); see ``docs/algorithms.md`` section 6. Scores are
exact (one matrix multiply per tile); only the top-k selection is approximate:

1. the database is scanned in tiles of ``database_tile`` rows (``lax.fori_loop``),
   each tile scored against a tile of ``query_tile`` queries with one matmul, so no
   ``[nq, n]`` score matrix is ever materialised;
2. every tile is folded into ``L`` bins (the paper's PartialReduce): each bin keeps
   only its best score and that score's id — a compare and two selects per
   element, no sort — and the bins are carried across tiles, so the whole database
   is reduced into the same ``L`` bins;
3. an exact ``lax.top_k`` over the ``L`` bin winners gives the result.

Bin layout. Point ``i`` goes to bin ``i mod L`` (strided), not to a block of
consecutive ids. The recall formula assumes the true neighbours of a query fall
into bins independently of one another; with contiguous bins, data stored in an
order correlated with similarity (sorted, clustered, appended in batches of
near-duplicates) would put a query's neighbours into the same bin, where only one
survives. The strided layout puts consecutive ids into different bins. It is also
the layout a SIMD unit likes: a ``[b, W * L]`` tile is viewed as ``[b, W, L]`` and
reduced over the middle axis, which is an elementwise max of ``W`` rows of length
``L``. Bins must still be assumed to be fixed, not random: shuffle the database if
its order is adversarial to the query set.

The number of bins ``L`` is the smallest giving an expected recall of at least
``recall_target`` for ``k`` (:func:`bins_for_recall`). Unlike XLA's
``approx_max_k`` we do not round ``L`` up to a multiple of the 128-lane tiling: on
CPU there is no lane constraint, and a larger ``L`` only adds work to the final
``top_k``. ``recall_target=1.0`` (or ``L >= n``) runs an exact, tiled top-k with a
running merge instead.

JAX is an optional dependency: this module imports it at import time, and
``annlib`` imports this module only when ``annlib.tpu_knn`` is used.
"""

from __future__ import annotations

import functools
import math
import numbers
import time

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P
except ImportError as exc:  # pragma: no cover - exercised only without jax
    raise ImportError(
        "annlib.tpu_knn needs JAX; install it with `pip install 'annlib[jax]'`"
    ) from exc

from . import _validate
from .result import SearchResult

__all__ = [
    "bins_for_recall",
    "calibrate",
    "expected_recall",
    "knn",
    "partial_reduce",
    "predict_time",
    "search",
    "search_sharded",
]

# Tiling defaults, chosen on a 2-core AVX2 machine (bench/RESULTS.md, TPU-KNN section).
# XLA:CPU copies a database slice before its matmul, which costs as much as the
# matmul itself when a search is memory-bound (few queries). So small query
# batches score the whole database in one matmul when the [b, n] score matrix fits
# _WHOLE_SCORES_BYTES; larger batches use database tiles whose [b, tile] score
# tile (_TILE_SCORES_BYTES) stays in L3, where the reduction is cheap and the
# slice copy is amortised over b queries.
_QUERY_TILE_ROWS = 1024
_SMALL_BATCH = 32
_WHOLE_SCORES_BYTES = 64 << 20
_TILE_SCORES_BYTES = 8 << 20
# Clamp on the tile's rows: measured on 50k x 384, nq=100, ~21k-row tiles were
# 1.6x slower than 3-5k-row ones (bench/RESULTS.md, TPU-KNN section).
_MIN_TILE_ROWS = 2048
_MAX_TILE_ROWS = 4096

_INT32_MAX = np.iinfo(np.int32).max


# --------------------------------------------------------------------------- recall model


def expected_recall(num_bins: int, k: int) -> float:
    """Expected recall@k of the PartialReduce with ``num_bins`` bins.

    A true top-k element is lost only when a better top-k element shares its bin.
    With the k true neighbours placed independently and uniformly over the L bins,
    the expected number of occupied bins is ``L (1 - (1 - 1/L)^k)``, so the exact
    expectation is ``E[recall] = (L / k) * (1 - (1 - 1/L)^k)``. XLA sizes
    ``approx_max_k`` with the weaker bound ``(1 - 1/L)^(k - 1)``, which needs about
    twice as many bins for the same target.

    Args:
      num_bins: L, the number of bins (positive int).
      k: K, the number of neighbours (positive int).

    Returns:
      The expected recall in ``(0, 1]``.

    >>> round(expected_recall(88, 10), 4)
    0.9504
    >>> expected_recall(1, 1)
    1.0
    """
    num_bins = _validate.positive_int(num_bins, "num_bins")
    k = _validate.k(k)
    # 1 - (1 - 1/L)^k, computed without cancellation for large L.
    occupied = -math.expm1(k * math.log1p(-1.0 / num_bins)) if num_bins > 1 else 1.0
    return min(1.0, num_bins / k * occupied)


@functools.lru_cache(maxsize=256)
def _bins_for_recall(k: int, recall_target: float) -> int:
    lo, hi = 1, math.ceil(1.0 / -math.expm1(math.log(recall_target) / (k - 1))) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if expected_recall(mid, k) >= recall_target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def bins_for_recall(k: int, recall_target: float) -> int:
    """The smallest number of bins L with ``expected_recall(L, k) >= recall_target``.

    The result is not rounded to a multiple of 128 as XLA does for TPU lanes: on
    CPU there is no lane constraint, and extra bins only cost final-top-k work.
    The result may be smaller than ``k`` for low targets (L bins can return at
    most L results); :func:`search` uses ``max(L, k)``.

    Args:
      k: K, the number of neighbours.
      recall_target: r, in ``(0, 1)``; ``1.0`` is allowed only for ``k == 1``
        (one bin is an exact arg-max), since for ``k > 1`` no finite L reaches it.

    Returns:
      L, a positive int.

    Raises:
      ValueError: recall_target outside ``(0, 1]``, or ``1.0`` with ``k > 1``.

    >>> bins_for_recall(10, 0.95)
    88
    >>> bins_for_recall(1, 0.99)
    1
    """
    k = _validate.k(k)
    recall_target = _recall_target(recall_target)
    if k == 1:
        return 1
    if recall_target >= 1.0:
        raise ValueError(
            f"recall_target=1.0 needs unbounded bins for k={k}; search() runs an exact top-k for it"
        )
    # (1 - 1/L)^(k-1) <= E[recall], so this L meets the target; bisect below it
    # (cached: search() calls this on every query batch).
    return _bins_for_recall(k, recall_target)


def _recall_target(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"recall_target must be a number in (0, 1], got {value!r}")
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"recall_target must be in (0, 1], got {value}")
    return value


# --------------------------------------------------------------------------- kernels


def _scores(queries, rows, column_term, metric: str):
    """Ranking scores ``[b, t]`` (larger is better) of query rows against database rows.

    dot: <q, x>; cosine: <q/|q|, x> / |x| (queries are normalised by the caller);
    squared_l2: 2 <q, x> - |x|^2, which ranks like -|q - x|^2 (the paper's L2 trick:
    one multiply-add per score instead of the full expansion).
    """
    # Spelt q @ x.T, not dot_general over (1, 1): XLA:CPU then runs the
    # single-query case as a fast gemv over x (measured 1.7x faster at nq=1).
    s = jnp.matmul(
        queries.astype(rows.dtype), rows.T, preferred_element_type=jnp.float32
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


def _bin_max(scores, num_bins: int):
    """PartialReduce of a ``[b, W * L]`` tile: per strided bin, the max and its row ``w``.

    Element ``j`` of the tile lies in bin ``j mod L`` and row ``j // L``. Ties go
    to the smallest ``w`` (the smallest id). The arg-max is found as the min row
    index equal to the max, two single-operand reductions XLA vectorises, rather
    than one variadic (value, index) reduction, which it does not.
    """
    b = scores.shape[0]
    tile = scores.reshape(b, -1, num_bins)
    best = tile.max(axis=1)
    rows = lax.broadcasted_iota(jnp.int32, tile.shape, 1)
    arg = jnp.min(jnp.where(tile == best[:, None, :], rows, tile.shape[1]), axis=1)
    return best, arg


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
    final top-k (see :func:`_select_one_tile`); :func:`_finish` accepts both.
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
        tile_best, row = _bin_max(s, num_bins)
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


def _reduce(queries, database, column_term, offset, *, query_tile, **kwargs):
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


def _prepare_terms(queries, database, norms, metric):
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


def _finish(best, ids, query_sq_norms, *, k, exact, metric):
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
    query_tile: int = _QUERY_TILE_ROWS,
) -> tuple[jax.Array, jax.Array]:
    """Jitted k-NN core on device arrays, with an explicit number of bins.

    The pure function under :func:`search` (which validates input, picks
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
    tile = _database_tile(database_tile, num_bins, n, min(queries.shape[0], query_tile))
    q, column, q_sq = _prepare_terms(queries, database, norms, metric)
    best, ids = _reduce(
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
    return _finish(best, ids, q_sq, k=k, exact=selected, metric=metric)


def _database_tile(rows: int | None, num_bins: int | None, n: int, batch: int) -> int:
    """Database rows per tile for a query tile of ``batch`` rows; ``>= n`` means one tile.

    ``rows=None`` picks the size from the score-tile budgets above. A tile smaller
    than the database is a multiple of L, so tiles share the global strided bins.
    """
    if rows is None:
        if batch <= _SMALL_BATCH and 4 * batch * n <= _WHOLE_SCORES_BYTES:
            return n
        rows = min(
            max(_TILE_SCORES_BYTES // (4 * batch), _MIN_TILE_ROWS), _MAX_TILE_ROWS
        )
    if rows >= n:
        return n
    step = num_bins or 1
    return max(step, rows // step * step)


@functools.partial(jax.jit, static_argnames=("k", "recall_target"))
def partial_reduce(
    scores: jax.Array, k: int, recall_target: float = 0.95
) -> tuple[jax.Array, jax.Array]:
    """Approximate top-k along the last axis of a score matrix (larger is better).

    The same reduction :func:`knn` fuses into its tile loop, applied to a given
    ``[..., n]`` array, like ``jax.lax.approx_max_k(scores, k, recall_target=...)``
    but effective on every backend (XLA's op falls back to an exact sort off TPU).

    Returns:
      ``(values, indices)`` ``[..., k]``, best first, indices int32.

    >>> import jax.numpy as jnp
    >>> partial_reduce(jnp.arange(8.0), 2, recall_target=1.0)[1].tolist()
    [7, 6]
    """
    n = scores.shape[-1]
    if k > n:
        raise ValueError(f"k must be at most the size of the last axis {n}, got {k}")
    if recall_target >= 1.0 and k > 1:
        return lax.top_k(scores, k)
    num_bins = max(bins_for_recall(k, recall_target), k)
    if num_bins >= n:
        return lax.top_k(scores, k)
    lead = scores.shape[:-1]
    flat = scores.reshape(-1, n).astype(jnp.float32)
    pad = (-n) % num_bins
    flat = jnp.pad(flat, ((0, 0), (0, pad)), constant_values=-jnp.inf)
    best, row = _bin_max(flat, num_bins)
    ids = row * num_bins + lax.broadcasted_iota(jnp.int32, best.shape, 1)
    values, pick = lax.top_k(best, k)
    ids = jnp.take_along_axis(ids, pick, axis=1)
    return values.astype(scores.dtype).reshape(*lead, k), ids.reshape(*lead, k)


# --------------------------------------------------------------------------- public search


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


def _plan(
    database, queries, k, metric, recall_target, database_tile, query_tile, dtype, norms
):
    """Shared validation of :func:`search` and :func:`search_sharded`."""
    metric = _validate.metric(metric)
    k = _validate.k(k)
    recall_target = _recall_target(recall_target)
    database, _ = _as_input(database, "database")
    n, dim = database.shape
    queries, single = _as_input(queries, "queries", dim)
    if norms is not None:
        if isinstance(norms, jax.Array):
            if norms.shape != (n,):
                raise ValueError(f"norms must have shape ({n},), got {norms.shape}")
        else:
            norms = _validate.database(
                np.reshape(np.asarray(norms), (1, -1))
                if np.ndim(norms) == 1
                else norms,
                "norms",
            )
            if norms.shape != (1, n):
                raise ValueError(
                    f"norms must have shape ({n},), got {norms.shape[1:] if norms.shape[0] == 1 else norms.shape}"
                )
            norms = norms[0]
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
        "query_tile": _tile(query_tile, "query_tile", _QUERY_TILE_ROWS),
    }


def _to_numpy(ids, distances, single) -> SearchResult:
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
    plan = _plan(
        database,
        queries,
        k,
        metric,
        recall_target,
        database_tile,
        query_tile,
        dtype,
        norms,
    )
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
    return _to_numpy(ids, distances, plan["single"])


# --------------------------------------------------------------------------- sharded search


@functools.lru_cache(maxsize=64)
def _sharded_fn(
    mesh, axis, k, num_bins, metric, database_tile, query_tile, n_total, shard_rows
):
    exact = num_bins is None

    def per_shard(database, column, queries):
        tile = _database_tile(
            database_tile, num_bins, shard_rows, min(queries.shape[0], query_tile)
        )
        offset = lax.axis_index(axis) * shard_rows
        best, ids = _reduce(
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
        q, column, q_sq = _prepare_terms(queries, database, norms, metric)
        best, ids = sharded(database, column, q)
        return _finish(best, ids, q_sq, k=k, exact=exact, metric=metric)

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
    """:func:`search` with the database sharded over devices (``shard_map``).

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
    plan = _plan(
        database,
        queries,
        k,
        metric,
        recall_target,
        database_tile,
        query_tile,
        dtype,
        norms,
    )
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
    return _to_numpy(ids, distances, plan["single"])


# --------------------------------------------------------------------------- cost model

# device -> (peak matmul FLOP/s, memory bandwidth bytes/s), measured once per process.
_CALIBRATION: dict[str, tuple[float, float]] = {}


def _best_time(fn, *args, repeats=7):
    """Fastest of ``repeats`` timed calls: a ceiling is what the device can reach."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def calibrate(device=None) -> tuple[float, float]:
    """Measure (peak matmul FLOP/s, memory bandwidth B/s) of ``device``; cached.

    The roofline's two ceilings, each the best of several runs: the peak from a
    512 x 1024 x 8192 float32 matmul (compute-bound); the bandwidth from the faster
    of two memory-bound passes over a 128 MiB matrix (more than current L3 caches):
    a single-query matvec and a row sum, each one contiguous streaming read of the
    matrix. (A column sum was used before; XLA:CPU runs it about 2.5x slower than
    either, so it never set the ceiling.) Takes about a second on a 2-core CPU.
    """
    device = device or jax.devices()[0]
    key = str(device)
    if key not in _CALIBRATION:
        rng = np.random.default_rng(0)
        a = jax.device_put(rng.standard_normal((512, 1024), dtype=np.float32), device)
        b = jax.device_put(rng.standard_normal((8192, 1024), dtype=np.float32), device)
        matmul = jax.jit(lambda a, b: a @ b.T)
        peak = 2 * 512 * 1024 * 8192 / _best_time(matmul, a, b)
        del a, b
        x = jax.device_put(
            rng.standard_normal((1 << 18, 128), dtype=np.float32), device
        )
        q = x[:1]
        row_sum = jax.jit(lambda x: jnp.sum(x, axis=1))
        seconds = min(_best_time(matmul, q, x), _best_time(row_sum, x))
        _CALIBRATION[key] = (peak, x.nbytes / seconds)
    return _CALIBRATION[key]


def predict_time(
    n: int,
    d: int,
    nq: int,
    device=None,
    *,
    query_tile: int | None = None,
    itemsize: int = 4,
) -> float:
    """Roofline prediction, in seconds, of a brute-force search of nq queries over n x d.

    ``max(flops / peak, bytes / bandwidth)`` with ``flops = 2 n d nq`` and the
    database read once per query tile (``ceil(nq / query_tile)`` passes), the
    queries once. The ceilings come from :func:`calibrate`. The paper's third
    ceiling (vector-unit instructions, section 6.2) is left out: PartialReduce's
    few compares per score are what keeps a search near the other two.
    """
    n = _validate.positive_int(n, "n")
    d = _validate.positive_int(d, "d")
    nq = _validate.positive_int(nq, "nq")
    query_tile = _tile(query_tile, "query_tile", _QUERY_TILE_ROWS)
    peak, bandwidth = calibrate(device)
    passes = -(-nq // query_tile)
    flops = 2.0 * n * d * nq
    traffic = itemsize * (n * d * passes + nq * d)
    return max(flops / peak, traffic / bandwidth)
