"""Exact search: annlib vs numpy (matmul + argpartition) vs faiss IndexFlatIP, same data, same process.

    python bench/exact.py [--dataset PATH] [--k 10] [--repeats 5]

Single-thread: one query at a time (as ann-benchmarks' default mode) over a query subset.
Batched: all queries in one call on every core. Prints a markdown table with ratios.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

import annlib
from annlib.bench.report import describe_machine
from annlib.bench.timing import blas_threads, median_seconds

DEFAULT_DATASET = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "debian-minilm-384-angular.hdf5"


def numpy_search(data, queries, k):
    scores = queries @ data.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-top, axis=1)
    return np.take_along_axis(part, order, axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--single-queries", type=int, default=200)
    args = parser.parse_args(argv)

    import faiss

    ds = annlib.datasets.load_dataset(args.dataset)
    train, test = ds.train, ds.test
    # angular data is unit-norm: cosine == dot, which every contender computes directly
    data = train / np.linalg.norm(train, axis=1, keepdims=True)
    queries = test / np.linalg.norm(test, axis=1, keepdims=True)
    k = args.k
    ours = annlib.BruteForce(data, "dot")
    flat = faiss.IndexFlatIP(data.shape[1])
    flat.add(data)
    threads = annlib.cpu_info()["threads"]

    ref = numpy_search(data, queries, k)
    for name, ids in [
        ("annlib", ours.search_batched(queries, k).ids),
        ("faiss", flat.search(queries, k)[1]),
    ]:
        agree = np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, ref)])
        print(f"{name} agrees with numpy on {agree:.4f} of the top-{k}")

    single = queries[: args.single_queries]
    rows = []

    def one_by_one(fn):
        def run():
            for q in single:
                fn(q)

        return run

    faiss.omp_set_num_threads(1)
    with blas_threads(1):
        t_numpy = median_seconds(one_by_one(lambda q: numpy_search(data, q[None], k)), args.repeats, warmup=1)
        t_faiss = median_seconds(one_by_one(lambda q: flat.search(q[None], k)), args.repeats, warmup=1)
        t_ours = median_seconds(one_by_one(lambda q: ours.search(q, k)), args.repeats, warmup=1)
    rows.append(("single-thread, one query per call", len(single), t_ours, t_numpy, t_faiss))

    faiss.omp_set_num_threads(threads)
    with blas_threads(threads):
        t_numpy = median_seconds(lambda: numpy_search(data, queries, k), args.repeats, warmup=1)
        t_faiss = median_seconds(lambda: flat.search(queries, k), args.repeats, warmup=1)
        t_ours = median_seconds(lambda: ours.search_batched(queries, k, num_threads=threads), args.repeats, warmup=1)
    rows.append((f"batched, {threads} threads", len(queries), t_ours, t_numpy, t_faiss))

    print(f"\n{describe_machine()}; data {data.shape}, k={k}, median of {args.repeats}\n")
    print("| mode | queries | annlib QPS | numpy QPS | faiss QPS | annlib/numpy | annlib/faiss |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode, nq, t_o, t_n, t_f in rows:
        print(f"| {mode} | {nq} | {nq / t_o:,.0f} | {nq / t_n:,.0f} | {nq / t_f:,.0f} | {t_n / t_o:.2f}x | {t_f / t_o:.2f}x |")


if __name__ == "__main__":
    main()
