"""The PartialReduce approximate top-k and its recall model (TPU-KNN, section 4).

A score row of length n is folded into ``L`` bins: each bin keeps only its best
score and that score's index - a compare and two selects per element, no sort -
and an exact top-k over the ``L`` winners gives the result. A true top-k element
is lost only when a better one shares its bin, which gives the expected recall
below; ``L`` is the smallest number of bins that meets a recall target.

Bin layout. Element ``i`` goes to bin ``i mod L`` (strided), not to a block of
consecutive ids. The recall formula assumes the true neighbours of a query fall
into bins independently of one another; with contiguous bins, data stored in an
order correlated with similarity (sorted, clustered, appended in batches of
near-duplicates) would put a query's neighbours into the same bin, where only one
survives. The strided layout puts consecutive ids into different bins. It is also
the layout a SIMD unit likes: a ``[b, W * L]`` tile is viewed as ``[b, W, L]`` and
reduced over the middle axis, an elementwise max of ``W`` rows of length ``L``.
Bins must still be assumed to be fixed, not random: shuffle the database if its
order is adversarial to the query set.

Unlike XLA's ``approx_max_k`` we do not round ``L`` up to a multiple of the
128-lane tiling: on CPU there is no lane constraint, and a larger ``L`` only adds
work to the final ``top_k``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from annlib import _validate

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
    recall_target = _validate.recall_target(recall_target)
    if k == 1:
        return 1
    if recall_target >= 1.0:
        raise ValueError(
            f"recall_target=1.0 needs unbounded bins for k={k}; search() runs an exact top-k for it"
        )
    # (1 - 1/L)^(k-1) <= E[recall], so this L meets the target; bisect below it
    # (cached: search() calls this on every query batch).
    return _bins_for_recall(k, recall_target)


def bin_max(scores, num_bins: int):
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


@functools.partial(jax.jit, static_argnames=("k", "recall_target"))
def partial_reduce(
    scores: jax.Array, k: int, recall_target: float = 0.95
) -> tuple[jax.Array, jax.Array]:
    """Approximate top-k along the last axis of a score matrix (larger is better).

    The same reduction :func:`annlib.jax.knn.knn` fuses into its tile loop, applied to a given
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
    best, row = bin_max(flat, num_bins)
    ids = row * num_bins + lax.broadcasted_iota(jnp.int32, best.shape, 1)
    values, pick = lax.top_k(best, k)
    ids = jnp.take_along_axis(ids, pick, axis=1)
    return values.astype(scores.dtype).reshape(*lead, k), ids.reshape(*lead, k)
