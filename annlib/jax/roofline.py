"""Roofline cost model of a TPU-KNN search (TPU-KNN, section 6).

``predict_time(n, d, nq)`` is the larger of the compute time at the device's
matmul peak and the memory time at its streaming bandwidth. Both ceilings are
measured once per device and process by :func:`calibrate`. The autotuner uses the
prediction to choose between brute force and the quantization index.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from annlib import _validate
from annlib.jax.knn import QUERY_TILE_ROWS

# device -> (peak matmul FLOP/s, memory bandwidth bytes/s), measured once per process.
_CALIBRATION: dict[str, tuple[float, float]] = {}

_ROUNDS = 15


def _median_times(fns, rounds=_ROUNDS) -> list[float]:
    """Median seconds of each zero-argument function, timed in interleaved rounds.

    Interleaving puts every function through the same spells of machine noise, so
    the faster of two equivalent passes wins on merit, not on timing luck.
    """
    for fn in fns:
        jax.block_until_ready(fn())
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, seconds in zip(fns, times):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            seconds.append(time.perf_counter() - start)
    return [float(np.median(seconds)) for seconds in times]


def calibrate(device=None) -> tuple[float, float]:
    """Measure (peak matmul FLOP/s, memory bandwidth B/s) of ``device``; cached.

    The peak comes from a 512 x 1024 x 8192 float32 matmul (compute-bound). The
    bandwidth comes from the faster of two memory-bound passes over a 128 MiB
    matrix, larger than current L3 caches: a single-query matvec and a row sum,
    each one contiguous streaming read. A column sum is not used: XLA:CPU runs it
    about 2.5x slower than either.

    Each ceiling is a median over interleaved rounds, not a best time. The model
    predicts a search's typical time, which the autotuner compares and every
    benchmark quotes as a median. On a shared 2-core VM the best of a dozen
    streaming passes was 1.05-1.8x faster than their median (bench/RESULTS.md,
    TPU-KNN section), so a best-time ceiling made predictions optimistic by as
    much. Takes about a second on a 2-core CPU.
    """
    device = device or jax.devices()[0]
    key = str(device)
    if key not in _CALIBRATION:
        rng = np.random.default_rng(0)
        a = jax.device_put(rng.standard_normal((512, 1024), dtype=np.float32), device)
        b = jax.device_put(rng.standard_normal((8192, 1024), dtype=np.float32), device)
        matmul = jax.jit(lambda a, b: a @ b.T)
        (seconds,) = _median_times([lambda: matmul(a, b)])
        peak = 2 * 512 * 1024 * 8192 / seconds
        del a, b
        x = jax.device_put(rng.standard_normal((1 << 18, 128), dtype=np.float32), device)
        q = x[:1]
        row_sum = jax.jit(lambda x: jnp.sum(x, axis=1))
        seconds = min(_median_times([lambda: matmul(q, x), lambda: row_sum(x)]))
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
    itemsize = _validate.positive_int(itemsize, "itemsize")
    query_tile = QUERY_TILE_ROWS if query_tile is None else _validate.positive_int(query_tile, "query_tile")
    peak, bandwidth = calibrate(device)
    passes = -(-nq // query_tile)
    flops = 2.0 * n * d * nq
    traffic = itemsize * (n * d * passes + nq * d)
    return max(flops / peak, traffic / bandwidth)
