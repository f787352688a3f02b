"""Routed vs fan-out search of a sharded index whose shards hold whole partitions (issue 17).

    python bench/distributed_routing.py --subset 200000 --shards 1 2 4

For each shard count: build a ``shard_by="partition"`` index on a local Ray cluster, build one
plain index with the same centers and codebook (``TreeAhIndex.from_trained``), find the
``leaves_to_search`` reaching the recall target on the plain index, then time in alternation
the plain index and the sharded one with ``route`` off (fan-out) and on (routed), for both
merges. Reports QPS (medians), recall, shards asked per query and payload bytes per query
(``ShardedIndex.last_search_stats``), and whether the exact merge equals the plain index.
Then, from the placement alone (no actors), the shards a query touches at larger shard counts.
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
from annlib.distributed import _routing
from annlib.metrics import id_recall

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SIFT = REPO_ROOT.parent / "shared" / "datasets" / "sift-debian-textures-1m-128-euclidean.hdf5"
LEAF_GRID = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128)


def main() -> None:
    import ray

    from annlib.distributed import ShardedIndex

    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(SIFT))
    ap.add_argument("--subset", type=int, default=200_000, help="first N database rows (0 = all)")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--placement-shards", type=int, nargs="+", default=[2, 4, 8, 16, 64])
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reorder", type=int, default=100)
    ap.add_argument("--out", default=None)
    ap.add_argument("--placement-only", type=int, default=None, metavar="LEAVES",
                    help="no Ray, no timing: build one plain index and report the shards a query's LEAVES best "
                         "partitions fall on, for --placement-shards (cheap enough for the full 1M set)")
    args = ap.parse_args()
    if args.placement_only is not None:
        placement_only(args)
        return

    dataset = annlib.load_dataset(args.dataset)
    metric = {"euclidean": "squared_l2", "angular": "cosine", "dot": "dot"}[dataset.distance]
    x = dataset.train[: args.subset] if args.subset else dataset.train
    q = np.ascontiguousarray(dataset.test[: args.queries])
    truth = annlib.BruteForce(x, metric).search_batched(q, 10).ids
    n = len(x)
    num_leaves = int(round(np.sqrt(n)))
    kw = dict(num_leaves=num_leaves, num_leaves_to_search=max(1, num_leaves // 10), reorder=args.reorder)
    report: dict = {"n": n, "dim": x.shape[1], "queries": len(q), "metric": metric, "cpus": args.cpus, "runs": []}

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    plain = params = None
    for shards in args.shards:
        start = time.perf_counter()
        sharded = ShardedIndex.build(x, shards, metric, shard_by="partition", cpus_per_actor=args.cpus / shards,
                                     num_threads=max(1, args.cpus // shards), **kw)
        run = {"shards": shards, "build_s": time.perf_counter() - start,
               "shard_sizes": [size for _, size in sharded.shard_ranges]}
        if plain is None:  # the training sample and seed are the same for every shard count
            shared = sharded.shared_arrays
            plain = annlib.TreeAhIndex.from_trained(x, TreeAhConfig.from_dict(sharded.config["index"]),
                                                    shared["centers"], shared["codebook"], num_threads=args.cpus)
            for leaves in LEAF_GRID:
                params = {"leaves_to_search": min(leaves, num_leaves), "pre_reorder_num_neighbors": args.reorder}
                recall = id_recall(plain.search_batched(q, 10, num_threads=args.cpus, **params).ids, truth, 10)
                if recall >= args.target:
                    break
            report["params"], report["plain_recall"] = params, recall

        def sharded_call(route, merge):
            def call():
                sharded.route = route
                return sharded.search_batched(q, 10, merge=merge, **params)
            return call

        calls = {"plain": lambda: plain.search_batched(q, 10, num_threads=args.cpus, **params)}
        for merge in ("exact", "fast"):
            calls[f"fanout_{merge}"] = sharded_call(False, merge)
            calls[f"routed_{merge}"] = sharded_call(True, merge)
        results, stats = {}, {}
        for name, fn in calls.items():  # warm-up, results and per-search figures
            results[name] = fn()
            if name != "plain":
                stats[name] = dict(sharded.last_search_stats)
        seconds = {name: [] for name in calls}
        for _ in range(args.repeats):  # alternation: load from other jobs hits every contender alike
            for name, fn in calls.items():
                start = time.perf_counter()
                fn()
                seconds[name].append(time.perf_counter() - start)
        for name in calls:
            run[f"{name}_qps"] = len(q) / statistics.median(seconds[name])
            run[f"{name}_recall"] = id_recall(results[name].ids, truth, 10)
            if name != "plain":
                run[f"{name}_vs_plain"] = run[f"{name}_qps"] / run["plain_qps"]
                run[f"{name}_shards_per_query"] = stats[name]["shards_per_query"]
                run[f"{name}_payload_bytes_per_query"] = stats[name]["payload_bytes_per_query"]
                run[f"{name}_routing_us_per_query"] = stats[name]["routing_us_per_query"]
        for merge in ("exact", "fast"):
            run[f"routed_vs_fanout_{merge}"] = run[f"routed_{merge}_qps"] / run[f"fanout_{merge}_qps"]
            run[f"routed_equals_fanout_{merge}"] = bool(
                np.array_equal(results[f"routed_{merge}"].ids, results[f"fanout_{merge}"].ids)
                and np.array_equal(results[f"routed_{merge}"].distances, results[f"fanout_{merge}"].distances))
        run["routed_exact_equals_plain"] = bool(np.array_equal(results["routed_exact"].ids, results["plain"].ids)
                                                and np.array_equal(results["routed_exact"].distances,
                                                                   results["plain"].distances))
        report["runs"].append(run)
        print(json.dumps(run), flush=True)
        sharded.close()
    ray.shutdown()

    report["placement"] = placement(plain, q, metric, params["leaves_to_search"], args.placement_shards)
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


def placement(plain, q, metric, leaves, shard_counts) -> dict:
    """Shards a query's best partitions fall on at each shard count, from the placement alone
    (what routing would send), and how even the placement is."""
    centers = np.asarray(plain.layout.centers)
    sizes = np.asarray(plain.layout.leaf_sizes)
    num_leaves = len(centers)
    chosen = _routing.chosen_leaves(_routing.center_scores(q, centers, metric), leaves)
    placed = {}
    for s in shard_counts:
        start = time.perf_counter()
        owner = _routing.place_partitions(centers, sizes, s, metric)
        seconds = time.perf_counter() - start
        held = np.zeros((num_leaves, s), dtype=bool)
        held[np.arange(num_leaves), owner] = True
        per_query = _routing.shards_of_queries(chosen, held).sum(axis=1)
        load = np.bincount(owner, weights=sizes, minlength=s)
        placed[s] = {"mean_shards_per_query": float(per_query.mean()), "p99": float(np.percentile(per_query, 99)),
                     "largest_shard_over_mean": float(load.max() / load.mean()), "placement_s": seconds}
    return placed


def placement_only(args) -> None:
    dataset = annlib.load_dataset(args.dataset)
    metric = {"euclidean": "squared_l2", "angular": "cosine", "dot": "dot"}[dataset.distance]
    x = dataset.train[: args.subset] if args.subset else dataset.train
    q = np.ascontiguousarray(dataset.test[: args.queries])
    num_leaves = int(round(np.sqrt(len(x))))
    start = time.perf_counter()
    plain = annlib.TreeAhIndex(x, metric, num_threads=args.cpus, num_leaves=num_leaves, reorder=args.reorder)
    report = {"n": len(x), "num_leaves": num_leaves, "leaves_to_search": args.placement_only,
              "build_s": time.perf_counter() - start,
              "placement": placement(plain, q, metric, args.placement_only, args.placement_shards)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
