"""int8 reordering against float32, and two-stage reordering with the float32 rows on disk (issue 15).

    python bench/two_stage_reorder.py quality [--dataset sift|minilm|PATH] [--queries 1000]
    python bench/two_stage_reorder.py disk    [--dataset sift] [--queries 1000] [--repeats 5]
                                              [--leaves 40] [--pre 100] [--exact 20]

``quality`` builds one index with two-stage reordering (``reorder_quantize="int8"``,
``reorder_exact_num_neighbors``) and searches it over a (leaves, pre_reorder) grid three ways:
``exact_reorder_num_neighbors=0`` (int8 scores only), ``= pre_reorder`` (every candidate
rescored with the float32 rows: the float32 reordering's result) and ``= --exact`` (two-stage).
Same AH stage, same candidates: the recall differences are the reordering's alone.

``disk`` builds a float32-reorder index and a two-stage one (same seed, so the same partitions
and codes), saves both, loads both with ``mmap=False`` and reports each one's anonymous memory
(``RssAnon`` added by the load: what the index holds in RAM) and, alternating between them, the
single-query QPS (one query per call, one thread; median over ``--repeats`` passes) and recall
at one setting. The two-stage float32 rows stay memory-mapped from its file; before the first
("cold") pass their pages are dropped from the page cache (``posix_fadvise(DONTNEED)`` on that
file only), so the first pass reads them from disk.

Recall@10 is ann-benchmarks' (a returned point counts when its true distance is within the
10th true distance + 1e-3; SIFT distances tie often). Self-contained: annlib's public API only.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

import annlib

K = 10
DATASETS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets"
NAMED = {
    "sift": (DATASETS / "sift-debian-textures-1m-128-euclidean.hdf5", "squared_l2", 2000,
             [(l, r) for l in (10, 20, 40, 80, 120) for r in (30, 100, 300)]),
    "minilm": (DATASETS / "debian-minilm-384-angular.hdf5", "cosine", 224,
               [(l, r) for l in (8, 16, 32, 64) for r in (30, 100, 300)]),
}


def load(name: str, queries: int):
    import h5py

    path, metric, leaves, grid = NAMED.get(name, (pathlib.Path(name), "squared_l2", None, None))
    with h5py.File(path, "r") as f:
        train = np.asarray(f["train"], dtype=np.float32)
        test = np.asarray(f["test"][:queries], dtype=np.float32)
        distances = np.asarray(f["distances"][:queries, :K], dtype=np.float32)
        neighbors = np.asarray(f["neighbors"][:queries, :K], dtype=np.int64)
    if leaves is None:
        leaves = int(2 * np.sqrt(len(train)))
        grid = [(l, r) for l in (leaves // 100, leaves // 50, leaves // 25) for r in (30, 100, 300)]
    return train, test, (distances, neighbors), metric, leaves, grid


def true_distances(train, queries, ids, metric):
    rows = train[ids]  # (nq, k, dim)
    if metric == "squared_l2":
        return np.sqrt(((rows - queries[:, None, :]) ** 2).sum(-1))  # the file's distances are L2
    unit = rows / np.linalg.norm(rows, axis=-1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=-1, keepdims=True)
    return 1.0 - np.einsum("qkd,qd->qk", unit, q)  # angular: 1 - cosine


def recall(train, queries, truth, ids, metric) -> float:
    truth_distances, _ = truth
    found = true_distances(train, queries, ids, metric)
    return float((found <= truth_distances[:, -1:] + 1e-3).sum() / truth_distances.size)


def id_recall(truth, ids) -> float:
    """Strict recall@10: returned ids among the true 10 (ties count against; 1e-3 hides MiniLM's gaps)."""
    _, neighbors = truth
    return float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(ids, neighbors)]))


def build(train, metric, leaves, quantize, exact):
    kwargs = {"reorder_quantize": quantize, "reorder_exact_num_neighbors": exact} if quantize == "int8" else {}
    start = time.perf_counter()
    index = annlib.TreeAhIndex(train, metric, num_leaves=leaves, num_leaves_to_search=20, training_sample_size=100_000,
                               dims_per_block=2, anisotropic_quantization_threshold=0.2, reorder=100, copy=False,
                               **kwargs)
    return index, time.perf_counter() - start


def quality(args):
    train, test, truth, metric, leaves, grid = load(args.dataset, args.queries)
    index, seconds = build(train, metric, leaves, "int8", args.exact)
    print(f"{args.dataset}: {train.shape[0]:,} x {train.shape[1]}, {metric}, {leaves} leaves, {len(test)} queries; "
          f"two-stage index built in {seconds:.1f} s")
    print("recall@10 ann-benchmarks style / strict (ids among the true 10)")
    print(f"| leaves | pre_reorder | float32 | int8 | int8 loss | int8 + float32 top {args.exact} | its loss |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    worst = [0.0, 0.0]
    for leaves_to_search, pre in grid:
        def run(exact):
            ids = index.search_batched(test, K, leaves_to_search=leaves_to_search, pre_reorder_num_neighbors=pre,
                                       exact_reorder_num_neighbors=exact, num_threads=1).ids
            return np.array([recall(train, test, truth, ids, metric), id_recall(truth, ids)])
        f32, int8, two = run(pre), run(0), run(args.exact)
        for j in range(2):
            if f32[j] >= 0.9:
                worst[j] = max(worst[j], f32[j] - int8[j])

        def cell(a):
            return f"{a[0]:.4f} / {a[1]:.4f}"

        def loss(a):
            return f"{f32[0] - a[0]:+.4f} / {f32[1] - a[1]:+.4f}"
        print(f"| {leaves_to_search} | {pre} | {cell(f32)} | {cell(int8)} | {loss(int8)} | {cell(two)} | {loss(two)} |",
              flush=True)
    print(f"largest int8 loss where float32 recall >= 0.90: {worst[0]:.4f} (ann-benchmarks) / {worst[1]:.4f} (strict)")


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def disk(args):
    train, test, truth, metric, leaves, _ = load(args.dataset, args.queries)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        paths = {}
        for name, quantize in (("float32 in RAM", "float32"), ("int8 in RAM + float32 on disk", "int8")):
            index, seconds = build(train, metric, leaves, quantize, args.exact)
            paths[name] = os.path.join(tmp, quantize + ".annl")
            index.save(paths[name])
            print(f"{name}: built in {seconds:.1f} s, file {os.path.getsize(paths[name]) / 2**20:.0f} MiB", flush=True)
            del index
        loaded, anon = {}, {}
        for name, path in paths.items():
            before = rss_anon()
            loaded[name] = annlib.load_index(path, mmap=False)
            anon[name] = rss_anon() - before
        two_stage_path = paths["int8 in RAM + float32 on disk"]
        fd = os.open(two_stage_path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # this file's pages only
        os.close(fd)
        params = {"leaves_to_search": args.leaves, "pre_reorder_num_neighbors": args.pre}
        qps = {name: [] for name in loaded}
        recalls = {}
        for repeat in range(args.repeats):
            for name, index in loaded.items():
                ids = np.empty((len(test), K), dtype=np.int64)
                start = time.perf_counter()
                for i, q in enumerate(test):
                    ids[i] = index.search(q, K, **params).ids
                qps[name].append(len(test) / (time.perf_counter() - start))
                recalls[name] = f"{recall(train, test, truth, ids, metric):.4f} / {id_recall(truth, ids):.4f}"
        print(f"\n{args.dataset}, {len(test)} queries one at a time, one thread, leaves {args.leaves}, "
              f"pre_reorder {args.pre}, exact {args.exact}; {args.repeats} passes alternating")
        print("| index | RssAnon of the load MiB | recall@10 (a-b / strict) | QPS first pass | QPS median | vs float32 |")
        print("|---|---:|---:|---:|---:|---:|")
        base = statistics.median(qps["float32 in RAM"])
        for name in loaded:
            median = statistics.median(qps[name])
            print(f"| {name} | {anon[name] / 2**20:.0f} | {recalls[name]} | {qps[name][0]:,.0f} | {median:,.0f} | "
                  f"{median / base:.2f}x |")
        del loaded


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["quality", "disk"])
    ap.add_argument("--dataset", default="sift")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--exact", type=int, default=20, help="float32 rows rescored after the int8 stage")
    ap.add_argument("--leaves", type=int, default=40)
    ap.add_argument("--pre", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tmp", default=None, help="directory for the saved indexes (default: the system's)")
    args = ap.parse_args(argv)
    print("$ python bench/two_stage_reorder.py " + " ".join(sys.argv[1:] if argv is None else argv))
    quality(args) if args.what == "quality" else disk(args)


if __name__ == "__main__":
    main()
