"""Exact search: annlib vs faiss IndexFlatL2 / IndexFlatIP vs numpy (matmul + argpartition), same data, same process.

    python bench/exact.py [--dataset PATH] [--metric dot|squared_l2] [--k 10] [--repeats 5]
                          [--single-queries 200] [--batch-queries N] [--no-numpy]

Single-thread: one query per call (ann-benchmarks' default mode) over a query subset.
Batched: the batch queries in one call on every core. The contenders run in alternation,
one pass each per round, so load from other processes falls on all of them alike; the table
gives each one's median QPS over the rounds, the ratio of the medians and the median of the
per-round ratios. The metric defaults to the dataset's: angular data is normalised and
searched by inner product (cosine == dot), euclidean data by squared L2 (faiss IndexFlatL2);
``--metric dot`` on euclidean data searches the raw vectors by inner product (IndexFlatIP).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time

import numpy as np

import annlib
from annlib.bench.report import describe_machine
from annlib.bench.timing import blas_threads

DEFAULT_DATASET = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "debian-minilm-384-angular.hdf5"


def numpy_search(data, queries, k, metric, sq_norms):
    scores = queries @ data.T
    if metric == "squared_l2":
        scores = 2 * scores - sq_norms
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-top, axis=1)
    return np.take_along_axis(part, order, axis=1)


def alternate(contenders: dict, rounds: int) -> dict:
    """Seconds of each contender's pass, per round, the contenders one after another in each round."""
    for run in contenders.values():
        run()  # warm-up: caches, thread pools
    seconds = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def one_by_one(search, queries):
    def run():
        for q in queries:
            search(q)

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET))
    parser.add_argument("--metric", choices=["dot", "squared_l2"], default=None,
                        help="default: dot (normalised) for angular data, squared_l2 otherwise")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of alternation")
    parser.add_argument("--single-queries", type=int, default=200)
    parser.add_argument("--batch-queries", type=int, default=None, help="default: every test query")
    parser.add_argument("--no-numpy", action="store_true", help="leave numpy out (slow at 1M points)")
    args = parser.parse_args(argv)

    import faiss

    ds = annlib.datasets.load_dataset(args.dataset)
    data, queries = np.ascontiguousarray(ds.train, dtype=np.float32), np.ascontiguousarray(ds.test, dtype=np.float32)
    angular = ds.distance == "angular"
    metric = args.metric or ("dot" if angular else "squared_l2")
    if angular:
        # unit-norm: cosine == dot, which every contender computes directly
        data = data / np.linalg.norm(data, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    single = queries[: args.single_queries]
    if args.batch_queries:
        queries = queries[: args.batch_queries]
    k = args.k
    ours = annlib.BruteForce(data, metric)
    flat = (faiss.IndexFlatL2 if metric == "squared_l2" else faiss.IndexFlatIP)(data.shape[1])
    flat.add(data)
    sq_norms = (data.astype(np.float32) ** 2).sum(1) if metric == "squared_l2" else None
    threads = annlib.cpu_info()["threads"]

    ours_single = np.stack([ours.search(q, k).ids for q in single])
    faiss_single = flat.search(single, k)[1]
    agree = np.mean([len(set(a) & set(b)) / k for a, b in zip(ours_single, faiss_single)])
    print(f"annlib single-query top-{k} agrees with faiss on {agree:.4f}")

    def table(mode, nq, contenders):
        seconds = alternate(contenders, args.repeats)
        qps = {name: nq / statistics.median(s) for name, s in seconds.items()}
        per_round = {name: statistics.median(a / b for a, b in zip(s, seconds["annlib"]))
                     for name, s in seconds.items()}
        return mode, nq, qps, per_round

    rows = []
    faiss.omp_set_num_threads(1)
    with blas_threads(1):
        contenders = {"annlib": one_by_one(lambda q: ours.search(q, k), single),
                      "faiss": one_by_one(lambda q: flat.search(q[None], k), single)}
        if not args.no_numpy:
            contenders["numpy"] = one_by_one(lambda q: numpy_search(data, q[None], k, metric, sq_norms), single)
        rows.append(table("single-thread, one query per call", len(single), contenders))

    faiss.omp_set_num_threads(threads)
    with blas_threads(threads):
        contenders = {"annlib": lambda: ours.search_batched(queries, k, num_threads=threads),
                      "faiss": lambda: flat.search(queries, k)}
        if not args.no_numpy:
            contenders["numpy"] = lambda: numpy_search(data, queries, k, metric, sq_norms)
        rows.append(table(f"batched, {threads} threads", len(queries), contenders))

    peer = "IndexFlatL2" if metric == "squared_l2" else "IndexFlatIP"
    print(f"\n{describe_machine()}; data {data.shape}, metric {metric} (faiss {peer}), k={k}, "
          f"{args.repeats} rounds in alternation\n")
    names = [n for n in ("annlib", "faiss", "numpy") if n in rows[0][2]]
    print("| mode | queries | " + " | ".join(f"{n} QPS" for n in names) + " | "
          + " | ".join(f"annlib/{n} (of medians, per-round median)" for n in names[1:]) + " |")
    print("|---|---:|" + "---:|" * (2 * len(names) - 1))
    for mode, nq, qps, per_round in rows:
        cells = [f"{qps[n]:,.1f}" for n in names]
        cells += [f"{qps['annlib'] / qps[n]:.2f}x, {per_round[n]:.2f}x" for n in names[1:]]
        print(f"| {mode} | {nq} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
