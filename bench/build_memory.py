"""Peak memory of building a quantization index, relative to the raw data's size.

    python bench/build_memory.py [--n 1000000] [--dim 128] [--soar-lambda 1.0]

Generates clustered float32 data, records the process's peak RSS before and after
the build (ru_maxrss), and prints peak RSS / data bytes. The data itself counts as 1x.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

import annlib


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--num-leaves", type=int, default=1000)
    parser.add_argument("--soar-lambda", type=float, default=None)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((1000, args.dim)).astype(np.float32)
    data = np.empty((args.n, args.dim), dtype=np.float32)
    for begin in range(0, args.n, 100_000):
        m = min(100_000, args.n - begin)
        data[begin:begin + m] = centers[rng.integers(0, 1000, m)] + 0.6 * rng.standard_normal((m, args.dim), dtype=np.float32)
    del centers
    before = peak_rss_bytes()
    start = time.perf_counter()
    index = annlib.TreeAhIndex(data, "squared_l2", num_leaves=args.num_leaves, num_leaves_to_search=50,
                               soar_lambda=args.soar_lambda, reorder=100)
    seconds = time.perf_counter() - start
    after = peak_rss_bytes()
    print(f"{args.n} x {args.dim} float32 = {data.nbytes / 2**20:.0f} MiB; build {seconds:.1f} s")
    print(f"peak RSS before build {before / 2**20:.0f} MiB, after {after / 2**20:.0f} MiB "
          f"= {after / data.nbytes:.2f}x the data (the data itself is 1x; index {index.stats()['total_bytes'] / 2**20:.0f} MiB, "
          f"of which the float32 reorder copy shares the data's memory)")


if __name__ == "__main__":
    main()
