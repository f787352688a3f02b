"""QPS at recall 0.95 after writes (issue 13): a grown-then-rebalanced index against a fresh build,
and an index with 20% of its points deleted (not compacted) against the same index compacted.

    python bench/mutable_qps.py [--dataset PATH] [--queries 1000] [--runs 5] [--target 0.95]

MiniLM 50k, rows normalised, inner product, 224 leaves. Grow: build on the first 5k points, add
the other 45k in 9 calls, ``rebalance()``; fresh: one build on all 50k. Delete: build on 50k,
delete 10k random ids; compacted: a copy of it after ``compact()``. Each pair is swept over the
same (leaves_to_search, pre_reorder_num_neighbors) grid in alternation (one timed pass of each
index per grid point, repeated ``--runs`` times, median), in both modes: one query per call on one
thread, and all queries in one call on every core. Recall@10 is against exact search over the
index's live points. Reported: the best QPS among grid points reaching the target, and the ratio
within the pair.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import statistics
import time

import numpy as np

import annlib

DEFAULT_DATASET = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "debian-minilm-384-angular.hdf5"
K = 10
GRID = [(t1, t2) for t1 in (4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 34, 38, 44, 50) for t2 in (20, 30, 50, 80)]


def build(data, ids):
    # One training sample size for every build: rebalance() retrains with the index's own, so a
    # grown index built on 5k points with a 5k sample would retrain on 5k of its 50k points.
    return annlib.TreeAhIndex(data, "dot", num_leaves=224, num_leaves_to_search=10, reorder=100,
                              training_sample_size=100_000, ids=ids)


def truth(index, queries):
    live = np.sort(index.ids)
    vectors = index.get_vectors(live)
    exact = annlib.BruteForce(vectors, "dot", ids=live)
    return exact.search_batched(queries, K).ids


def sweep_pair(a, b, queries, truth_a, truth_b, runs, mode):
    threads = annlib.default_num_threads()
    best = {}
    for t1, t2 in GRID:
        times = {"a": [], "b": []}
        recall = {}
        for _ in range(runs):
            for name, index, tr in (("a", a, truth_a), ("b", b, truth_b)):
                start = time.perf_counter()
                if mode == "single":
                    sample = queries[:300]
                    ids = np.stack([index.search(q, K, leaves_to_search=t1, pre_reorder_num_neighbors=t2).ids
                                    for q in sample])
                    count, tr_used = len(sample), tr[: len(sample)]
                else:
                    ids = index.search_batched(queries, K, num_threads=threads, leaves_to_search=t1,
                                               pre_reorder_num_neighbors=t2).ids
                    count, tr_used = len(queries), tr
                times[name].append(count / (time.perf_counter() - start))
                recall[name] = annlib.id_recall(ids, tr_used, K)
        for name in ("a", "b"):
            best.setdefault(name, []).append((recall[name], statistics.median(times[name]), t1, t2))
    return best


def best_at(points, target):
    ok = [p for p in points if p[0] >= target]
    return max(ok, key=lambda p: p[1]) if ok else None


def report(title, names, best, target):
    print(f"\n{title}\n\n| mode | index | QPS @{target} | recall | setting | ratio |\n|---|---|---:|---:|---|---:|")
    for mode, pair in best.items():
        found = {name: best_at(pair[key], target) for key, name in zip(("a", "b"), names)}
        base = found[names[1]]
        for name, p in found.items():
            if p is None:
                print(f"| {mode} | {name} | not reached | | | |")
                continue
            ratio = p[1] / base[1] if base else float("nan")
            print(f"| {mode} | {name} | {p[1]:,.0f} | {p[0]:.4f} | leaves {p[2]}, reorder {p[3]} | {ratio:.2f}x |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.95)
    args = parser.parse_args(argv)
    ds = annlib.load_dataset(args.dataset)
    train = ds.train / np.linalg.norm(ds.train, axis=1, keepdims=True)
    queries = ds.test[: args.queries] / np.linalg.norm(ds.test[: args.queries], axis=1, keepdims=True)
    n = len(train)
    ids = np.arange(n, dtype=np.int64)

    grown = build(train[:5000], ids[:5000])
    for begin in range(5000, n, 5000):
        grown.add(train[begin : begin + 5000], ids=ids[begin : begin + 5000])
    grown.rebalance()
    fresh = build(train, ids)
    tr_grown, tr_fresh = truth(grown, queries), truth(fresh, queries)
    best = {mode: sweep_pair(grown, fresh, queries, tr_grown, tr_fresh, args.runs, mode) for mode in ("single", "batch")}
    report("Grown 5k -> 50k by 9 adds, then rebalance(), vs a fresh build of 50k", ("grown+rebalanced", "fresh"),
           best, args.target)

    deleted = build(train, ids)
    gone = np.random.default_rng(0).choice(n, size=n // 5, replace=False)
    deleted.delete(gone)
    compacted = copy.deepcopy(deleted)
    compacted.compact()
    tr_del, tr_comp = truth(deleted, queries), truth(compacted, queries)
    best = {mode: sweep_pair(deleted, compacted, queries, tr_del, tr_comp, args.runs, mode) for mode in ("single", "batch")}
    report("20% deleted, not compacted, vs the same index compacted", ("20% deleted", "compacted"), best, args.target)


if __name__ == "__main__":
    main()
