"""Sharded index on a local Ray cluster vs one plain index: build time, batched QPS at a recall
target, per-query fan-out overhead, per-shard memory, and the shard fan-out a routed search
would have.

    python bench/distributed.py --subset 200000 --shards 1 2 4

The plain index and the sharded one share centers and codebook (the plain one is built with
``TreeAhIndex.from_trained``), so with ``merge="exact"`` they return identical results: one
parameter setting reaches the same recall on both, and QPS ratios compare the same work.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import numpy as np

import annlib
from annlib.config import TreeAhConfig
from annlib.metrics import id_recall

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SIFT = REPO_ROOT.parent / "shared" / "datasets" / "sift-debian-textures-1m-128-euclidean.hdf5"


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    import ray

    from annlib.distributed import ShardedIndex

    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(SIFT))
    ap.add_argument("--subset", type=int, default=200_000, help="first N database rows (0 = all)")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reorder", type=int, default=100)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    dataset = annlib.load_dataset(args.dataset)  # bench/common.py, which this used, is gone
    train, test, distance = dataset.train, dataset.test, dataset.distance
    metric = {"euclidean": "squared_l2", "angular": "cosine", "dot": "dot"}[distance]
    x = train[: args.subset] if args.subset else train
    q = np.ascontiguousarray(test[: args.queries])
    del train
    truth = annlib.BruteForce(x, metric).search_batched(q, 10).ids  # ground truth of the subset
    n = len(x)
    num_leaves = int(round(np.sqrt(n)))
    kw = dict(num_leaves=num_leaves, num_leaves_to_search=max(1, num_leaves // 10), reorder=args.reorder)
    report: dict = {"n": n, "dim": x.shape[1], "queries": len(q), "metric": metric, "cpus": args.cpus, "runs": []}

    start = time.perf_counter()
    plain_built = annlib.TreeAhIndex(x, metric, num_threads=args.cpus, **kw)
    report["plain_build_s"] = time.perf_counter() - start
    del plain_built

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    plain = None
    for shards in args.shards:
        cpus_per_actor = args.cpus / shards
        start = time.perf_counter()
        sharded = ShardedIndex.build(x, shards, metric, cpus_per_actor=cpus_per_actor,
                                     num_threads=max(1, args.cpus // shards), **kw)
        build_s = time.perf_counter() - start
        if plain is None:
            # Same centers/codebook as every sharded build (the sample and seed are the same).
            shared = sharded.shared_arrays
            plain = annlib.TreeAhIndex.from_trained(x, TreeAhConfig.from_dict(sharded.config["index"]),
                                                    shared["centers"], shared["codebook"], num_threads=args.cpus)
            params = None
            for leaves in sorted({1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128}):
                if leaves > num_leaves:
                    break
                p = {"leaves_to_search": leaves, "pre_reorder_num_neighbors": args.reorder}
                recall = id_recall(plain.search_batched(q, 10, num_threads=args.cpus, **p).ids, truth, 10)
                if recall >= args.target:
                    params = p
                    break
            report["params"], report["recall"] = params, recall
            one = q[:200]
            single_s, _ = timed(lambda: [plain.search(v, 10, **params) for v in one], 1)
            report["plain_latency_us"] = 1e6 * single_s / len(one)
            stats = plain.stats()
            report["plain_bytes_per_vector"] = stats["total_bytes"] / n
            report["plain_memory_bytes"] = stats["memory_bytes"]
            # Routed search: with partitions spread over S shards (round robin by size), how many
            # shards hold a query's leaves_to_search best partitions?
            scores = plain.layout.center_scores(q)
            top = np.argsort(-scores, axis=1)[:, : params["leaves_to_search"]]
            order = np.argsort(-plain.layout.leaf_sizes, kind="stable")
            routed = {}
            for s in (2, 4, 8, 16, 64):
                owner = np.empty(num_leaves, dtype=np.int64)
                owner[order] = np.arange(num_leaves) % s
                routed[s] = float(np.mean([len(set(owner[row])) for row in top]))
            report["routed_mean_shards_per_query"] = routed
        run = {"shards": shards, "build_s": build_s}
        # Plain and sharded searches alternate, so load from other jobs on the machine hits
        # both alike; the ratio is of medians within this run.
        calls = {
            "plain": lambda: plain.search_batched(q, 10, num_threads=args.cpus, **params),
            "exact": lambda: sharded.search_batched(q, 10, merge="exact", **params),
            "fast": lambda: sharded.search_batched(q, 10, merge="fast", **params),
        }
        seconds = {name: [] for name in calls}
        results = {name: fn() for name, fn in calls.items()}  # warm-up
        for _ in range(args.repeats):
            for name, fn in calls.items():
                start = time.perf_counter()
                fn()
                seconds[name].append(time.perf_counter() - start)
        for name in calls:
            run[f"{name}_qps"] = len(q) / statistics.median(seconds[name])
            run[f"{name}_recall"] = id_recall(results[name].ids, truth, 10)
        run["exact_equals_plain"] = bool(np.array_equal(results["exact"].ids, results["plain"].ids)
                                         and np.array_equal(results["exact"].distances, results["plain"].distances))
        one = q[:200]
        single_s, _ = timed(lambda: [sharded.search(v, 10, **params) for v in one], 1)
        run["latency_us"] = 1e6 * single_s / len(one)
        st = sharded.stats()
        run["shard_total_bytes"] = [s["total_bytes"] for s in st["shards"]]
        run["exact_vs_plain"] = run["exact_qps"] / run["plain_qps"]
        run["fast_vs_plain"] = run["fast_qps"] / run["plain_qps"]
        report["runs"].append(run)
        print(json.dumps(run), flush=True)
        sharded.close()
    ray.shutdown()
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
