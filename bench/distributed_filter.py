"""Filtered search on a sharded index against one index with the same centers and codebook:
the exact merge (planned on counts summed over the shards, routed by the widened leaf walk),
the fast merge, and the single index, in alternation; QPS medians, ratios, equality.

    python bench/distributed_filter.py --subset 200000 --shards 2 4 --fraction 0.1

The filter is one random id list allowing ``--fraction`` of the points, forced onto the index
route (``filter_route="index"``), so every contender runs the same plan.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time

import numpy as np

import annlib
from annlib.config import TreeAhConfig

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SIFT = REPO_ROOT.parent / "shared" / "datasets" / "sift-debian-textures-1m-128-euclidean.hdf5"


def main() -> None:
    import ray

    from annlib.distributed import ShardedIndex

    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(SIFT))
    ap.add_argument("--subset", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--leaves", type=int, default=20)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    dataset = annlib.load_dataset(args.dataset)
    x = np.ascontiguousarray(dataset.train[: args.subset] if args.subset else dataset.train)
    q = np.ascontiguousarray(dataset.test[: args.queries])
    n = len(x)
    allowed = np.sort(np.random.default_rng(0).choice(n, int(n * args.fraction), replace=False))
    kw = dict(num_leaves=int(round(np.sqrt(n))), reorder=100)
    search = dict(filter=allowed, filter_route="index", leaves_to_search=args.leaves, pre_reorder_num_neighbors=100)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"n = {n}, {len(q)} queries, filter allows {len(allowed)} ids, leaves_to_search {args.leaves}, k = 10")
    print("| shards | exact merge QPS (x one index) | fast merge QPS (x one) | one index QPS | exact == one | "
          "shards / query (exact, routed) | payload B / query |")
    print("|---|---|---|---|---|---|---|")
    for shards in args.shards:
        sharded = ShardedIndex.build(x, shards, "squared_l2", shard_by="partition", cpus_per_actor=args.cpus / shards,
                                     num_threads=max(1, args.cpus // shards), **kw)
        shared = sharded.shared_arrays
        one = annlib.TreeAhIndex.from_trained(x, TreeAhConfig.from_dict(sharded.config["index"]), shared["centers"],
                                              shared["codebook"], num_threads=args.cpus)
        contenders = {
            "exact": lambda: sharded.search_batched(q, 10, merge="exact", **search),
            "fast": lambda: sharded.search_batched(q, 10, merge="fast", **search),
            "one": lambda: one.search_batched(q, 10, num_threads=args.cpus, **search),
        }
        results = {name: fn() for name, fn in contenders.items()}  # warm-up
        same = (np.array_equal(results["exact"].ids, results["one"].ids)
                and np.array_equal(results["exact"].distances, results["one"].distances))
        times: dict = {name: [] for name in contenders}
        stats = None
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
                if name == "exact":
                    stats = dict(sharded.last_search_stats)
        qps = {name: len(q) / statistics.median(t) for name, t in times.items()}
        print(f"| {shards} | {qps['exact']:,.0f} ({qps['exact'] / qps['one']:.2f}x) | {qps['fast']:,.0f} "
              f"({qps['fast'] / qps['one']:.2f}x) | {qps['one']:,.0f} | {'bit-identical' if same else 'DIFFERS'} | "
              f"{stats['shards_per_query']:.2f} of {shards} | {stats['payload_bytes_per_query']:,.0f} |", flush=True)
        sharded.close()
    ray.shutdown()


if __name__ == "__main__":
    main()
