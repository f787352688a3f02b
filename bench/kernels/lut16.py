"""Micro-benchmark of the LUT16 scan kernels: points scored per second per ISA.

Scores n points with B blocks (d = 2B at 2 dims/block) against 1 and 3 queries through
``annlib._core.lut16_scan`` (one ISA per call, binding overhead included), and reports the
median of several repeats. Packed codes are 64-byte aligned unless ``--unaligned``. Usage::

    python bench/kernels/lut16.py [--n 50000] [--num-blocks 192] [--repeats 15]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

import annlib
from annlib import _core


def aligned(a: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A copy of ``a`` whose data starts on an ``alignment``-byte boundary, as an index stores codes."""
    buf = np.empty(a.nbytes + alignment, dtype=np.uint8)
    offset = -buf.ctypes.data % alignment
    out = buf[offset : offset + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def time_scan(packed, n, num_blocks, luts, isa, repeats):
    _core.lut16_scan(
        packed, n, num_blocks, luts, isa
    )  # warm-up: page in codes and output
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _core.lut16_scan(packed, n, num_blocks, luts, isa)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--num-blocks", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--unaligned", action="store_true", help="offset the packed codes by 16 bytes"
    )
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    n, num_blocks = args.n, args.num_blocks
    codes = rng.integers(0, 16, size=(n, num_blocks), dtype=np.uint8)
    packed = aligned(_core.pack_lut16_codes(codes))
    if args.unaligned:
        packed = aligned(np.concatenate([np.zeros(16, np.uint8), packed]))[16:]
    print(
        f"# lut16 scan: n={n}, num_blocks={num_blocks} (d={2 * num_blocks}), "
        f"codes {packed.nbytes / 2**20:.1f} MiB, {platform.processor() or platform.machine()}"
    )
    print(
        f"{'isa':8} {'queries':>7} {'ms/call':>9} {'Mpoints/s':>10} {'Mpoint-queries/s':>17} {'GB/s codes':>11}"
    )
    for isa in annlib.supported_isas():
        for num_queries in (1, 3):
            luts = rng.integers(
                0, 256, size=(num_queries, num_blocks, 16), dtype=np.uint8
            )
            t = time_scan(packed, n, num_blocks, luts, isa, args.repeats)
            print(
                f"{isa:8} {num_queries:>7} {t * 1e3:>9.3f} {n / t / 1e6:>10.1f} "
                f"{n * num_queries / t / 1e6:>17.1f} {packed.nbytes / t / 1e9:>11.2f}"
            )


if __name__ == "__main__":
    main()
