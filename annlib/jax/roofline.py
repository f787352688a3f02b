"""Roofline cost model of a TPU-KNN search (TPU-KNN, section 6).

``predict_time(n, d, nq)`` is a search's fixed cost per call plus the larger of
the compute time at the device's matmul peak and the memory time at its
streaming bandwidth. The three constants are measured once per device and
process by :func:`calibrate`. The autotuner uses the prediction to choose
between brute force and the quantization index.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from annlib import _validate
from annlib.jax.knn import QUERY_TILE_ROWS
from annlib.jax.search import search


class Ceilings(NamedTuple):
    """What :func:`calibrate` measures on a device."""

    peak_flops: float  # matmul FLOP/s
    bandwidth: float  # streaming read, bytes/s
    latency: float  # seconds of a search too small to touch either ceiling


# device -> its Ceilings, measured once per process.
_CALIBRATION: dict[str, Ceilings] = {}

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


def calibrate(device=None) -> Ceilings:
    """Measure the :class:`Ceilings` of ``device``: peak FLOP/s, bandwidth, latency; cached.

    The peak comes from a 512 x 1024 x 8192 float32 matmul (compute-bound). The
    bandwidth comes from the faster of two memory-bound passes over a 128 MiB
    matrix, larger than current L3 caches: a single-query matvec and a row sum,
    each one contiguous streaming read. A column sum is not used: XLA:CPU runs it
    about 2.5x slower than either. The latency is the time of a whole
    :func:`annlib.jax.search.search` of one query over 1024 x 16: validation,
    dispatch, the selection's several small kernels and the copy back, which a
    search pays however small it is (about 0.1 ms on a 2-core CPU, where it
    decides whether brute force beats an index on small data).

    Each constant is a median over interleaved rounds, not a best time. The model
    predicts a search's typical time, which the autotuner compares and every
    benchmark quotes as a median. On a shared 2-core VM the best of a dozen
    streaming passes was up to 2x faster than their median (bench/RESULTS.md,
    TPU-KNN section), so a best-time ceiling made predictions optimistic by as
    much. Takes about a second on a 2-core CPU.
    """
    device = device or jax.devices()[0]
    key = str(device)
    if key not in _CALIBRATION:
        rng = np.random.default_rng(0)
        # An accelerator finishes the CPU's problems in microseconds, which would
        # measure launch latency, not the ceilings: it gets 8x the rows of each.
        scale = 1 if device.platform == "cpu" else 8
        a = jax.device_put(rng.standard_normal((512 * scale, 1024), dtype=np.float32), device)
        b = jax.device_put(rng.standard_normal((8192, 1024), dtype=np.float32), device)
        # float32 at full precision, as the search scores it (knn._precision)
        matmul = jax.jit(lambda a, b: jnp.matmul(a, b.T, precision=lax.Precision.HIGHEST))
        (seconds,) = _median_times([lambda: matmul(a, b)])
        peak = 2 * a.shape[0] * 1024 * 8192 / seconds
        del a, b
        x = jax.device_put(rng.standard_normal(((1 << 18) * scale, 128), dtype=np.float32), device)
        q = x[:1]
        row_sum = jax.jit(lambda x: jnp.sum(x, axis=1))
        seconds = min(_median_times([lambda: matmul(q, x), lambda: row_sum(x)]))
        bandwidth = x.nbytes / seconds
        del x, q
        tiny = jax.device_put(rng.standard_normal((1024, 16), dtype=np.float32), device)
        (latency,) = _median_times([lambda: search(tiny, tiny[:1], 10)], rounds=5 * _ROUNDS)
        _CALIBRATION[key] = Ceilings(peak, bandwidth, latency)
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

    ``latency + max(flops / peak, bytes / bandwidth)`` with ``flops = 2 n d nq``
    and the database read once per query tile (``ceil(nq / query_tile)``
    passes), the queries once. The constants come from :func:`calibrate`. The
    paper's third ceiling (vector-unit instructions, section 6.2) is left out:
    PartialReduce's few compares per score are what keeps a search near the
    other two.
    """
    n = _validate.positive_int(n, "n")
    d = _validate.positive_int(d, "d")
    nq = _validate.positive_int(nq, "nq")
    itemsize = _validate.positive_int(itemsize, "itemsize")
    query_tile = QUERY_TILE_ROWS if query_tile is None else _validate.positive_int(query_tile, "query_tile")
    peak, bandwidth, latency = calibrate(device)
    passes = -(-nq // query_tile)
    flops = 2.0 * n * d * nq
    traffic = itemsize * (n * d * passes + nq * d)
    return latency + max(flops / peak, traffic / bandwidth)
