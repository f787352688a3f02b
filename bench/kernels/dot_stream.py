"""Micro-benchmark of the dot_block kernel's memory order on data far larger than the caches.

One query takes the streaming path (rows read in memory order, 16 or 8 points per transposed
reduction); two queries take the register-blocked micro<2, NX> kernel, which reads NX rows side
by side. Both read every point once, so on memory-bound data their times per call say what the
access order costs: were the order free, two queries would take about as long as one. Each
round times each case once, in alternation; medians over the rounds. Usage::

    python bench/kernels/dot_stream.py [--n 1000000] [--dim 128] [--rounds 9] [--isa avx512]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import annlib
from annlib import _core


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--isa", default=None, help="default: every SIMD path this CPU runs")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    points = rng.integers(0, 256, size=(args.n, args.dim)).astype(np.float32)
    queries = rng.integers(0, 256, size=(2, args.dim)).astype(np.float32)
    isas = [args.isa] if args.isa else [i for i in annlib.supported_isas() if i != "scalar"]
    gib = points.nbytes / 2**30
    print(f"{args.n:,} x {args.dim} float32 ({gib:.2f} GiB), median of {args.rounds} rounds\n")
    print("| path | 1 query: ms | GB/s | 2 queries: ms | GB/s | time 2q / 1q |")
    print("|---|---:|---:|---:|---:|---:|")
    for isa in isas:
        cases = {1: queries[:1], 2: queries}
        for q in cases.values():
            _core.dot_block(q, points, isa)  # warm-up
        seconds = {1: [], 2: []}
        for _ in range(args.rounds):
            for nq, q in cases.items():
                start = time.perf_counter()
                _core.dot_block(q, points, isa)
                seconds[nq].append(time.perf_counter() - start)
        one, two = statistics.median(seconds[1]), statistics.median(seconds[2])
        per_round = statistics.median(b / a for a, b in zip(seconds[1], seconds[2]))
        print(f"| {isa} | {one * 1e3:.1f} | {points.nbytes / one / 1e9:.1f} | {two * 1e3:.1f} | "
              f"{points.nbytes / two / 1e9:.1f} | {per_round:.2f}x |")


if __name__ == "__main__":
    main()
