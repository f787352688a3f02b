"""Adds at scale: annlib tree-AH vs ScaNN on the 1M SIFT set (squared L2).

    python bench/mutable_scale.py [--dataset PATH] [--add 10000] [--leaves 2000] [--libs annlib scann]

Builds each library on all but the last ``--add`` points (2000 leaves, 100k training sample, AH
2 dims per block with T = 0.2, float32 reordering: bench/scale.py's settings), then adds the last
``--add`` points with ids in one call (ScaNN: ``upsert``), and once more the same number of fresh
copies (annlib's second add writes into the spare rows the first one reserved). Reports the add
rates and recall@10 against exact search over the first 1000 test queries after the adds. One
library per process run, in this process, with every CPU. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import numpy as np

import annlib

K = 10
DEFAULT_DATASET = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets"
                   / "sift-debian-textures-1m-128-euclidean.hdf5")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(DEFAULT_DATASET))
    ap.add_argument("--add", type=int, default=10_000)
    ap.add_argument("--leaves", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--libs", nargs="+", default=["annlib", "scann"], choices=["annlib", "scann"])
    args = ap.parse_args()

    import h5py

    with h5py.File(args.dataset, "r") as f:
        data = np.ascontiguousarray(f["train"][:], dtype=np.float32)
        queries = np.ascontiguousarray(f["test"][: args.queries], dtype=np.float32)
    n = len(data)
    base, extra = data[: n - args.add], data[n - args.add :]
    # second batch: the same points nudged, so both adds encode new vectors
    extra2 = extra + np.float32(0.5)
    everything = np.concatenate([data, extra2])
    truth = annlib.BruteForce(everything, "squared_l2").search_batched(queries, K).ids
    threads = os.cpu_count() or 1
    print(f"{n} points, build on {len(base)}, add {args.add} twice; {threads} threads", flush=True)

    for key in args.libs:
        start = time.perf_counter()
        if key == "annlib":
            index = annlib.TreeAhIndex(base, "squared_l2", num_leaves=args.leaves, training_sample_size=100_000,
                                       dims_per_block=2, anisotropic_quantization_threshold=0.2, reorder=100,
                                       num_leaves_to_search=40)
            build_s = time.perf_counter() - start
            rates = []
            for batch, first in ((extra, n - args.add), (extra2, n)):
                t = time.perf_counter()
                index.add(batch, ids=np.arange(first, first + args.add))
                rates.append(args.add / (time.perf_counter() - t))
            found = index.search_batched(queries, K, leaves_to_search=40, pre_reorder_num_neighbors=100).ids
        else:
            import scann

            index = (scann.scann_ops_pybind.builder(base, K, "squared_l2")
                     .tree(num_leaves=args.leaves, num_leaves_to_search=40, training_sample_size=100_000)
                     .score_ah(2, anisotropic_quantization_threshold=0.2).reorder(100)
                     .build(docids=[str(i) for i in range(len(base))]))
            index.set_num_threads(threads)
            build_s = time.perf_counter() - start
            rates = []
            for batch, first in ((extra, n - args.add), (extra2, n)):
                t = time.perf_counter()
                index.upsert([str(i) for i in range(first, first + args.add)], batch, batch_size=args.add)
                rates.append(args.add / (time.perf_counter() - t))
            found, _ = index.search_batched_parallel(queries, final_num_neighbors=K, leaves_to_search=40,
                                                     pre_reorder_num_neighbors=100)
            found = np.array([[int(x) for x in row] for row in found], dtype=np.int64)
        recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(found, truth)]))
        print(f"| {key} | {build_s:.1f} | {rates[0]:,.0f} | {rates[1]:,.0f} | {recall:.4f} |", flush=True)
        del index


if __name__ == "__main__":
    main()
