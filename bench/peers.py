"""annlib vs scann vs faiss vs hnswlib: recall@10 / QPS sweeps, same process, same data.

    python bench/peers.py [--dataset PATH] [--mode {single,batch,both}] [--repeats 3]
                          [--single-queries 500] [--algos annlib scann faiss-ivfpqfs faiss-hnsw hnswlib]
                          [--annlib-leaves 224 [..]] [--annlib-threshold 0.2 [..]]
                          [--scann-leaves L [..]] [--scann-threshold 0.2 [..]]
                          [--faiss-nlist 256 [..]] [--faiss-hnsw-m 32] [--hnswlib-m 16 32]

Every build flag takes one or more values; each combination becomes its own row
(e.g. ``--annlib-leaves 160 224 320 --annlib-threshold 0.2 0.3``). A library whose package
is missing is skipped with a notice.

Modes (ann-benchmarks' two modes):
  single  one query per call, every library on one thread (annlib ``search``, scann ``search``
          with ``set_num_threads(1)``, faiss ``omp_set_num_threads(1)``, hnswlib ``num_threads=1``);
          timed over the first ``--single-queries`` queries.
  batch   all queries in one call on every core.

Recall@10 is ann-benchmarks' "k-nn" recall: each returned id's true distance (1 - dot on the
unit-norm data) is recomputed here and compared with the file's ``distances`` via
``annlib.metrics.recall`` (hit when <= k-th true distance + 1e-3); it is measured on all the
file's queries in both modes. QPS = timed queries / median wall time over ``--repeats`` runs
(after the untimed recall pass, which also warms up).

Writes ``bench/out/peers-<mode>.csv`` (every sweep point) and ``bench/out/peers.md`` (the
tables: best QPS among sweep points at recall >= 0.90 / 0.95, no interpolation, ratio to
annlib's, build time, index size), and prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import importlib.metadata
import itertools
import os
import shlex
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import common

import annlib
from annlib.metrics import recall as ab_recall

K = 10
TARGETS = (0.90, 0.95)
OUT_DIR = common.REPO_ROOT / "bench" / "out"

# Query-time sweeps. Tree-AH (annlib, scann): (leaves_to_search, pre_reorder_num_neighbors) grid,
# walked leaves-ascending per reorder value and cut short once recall stops moving.
TREE_LEAVES = [3, 4, 5, 6, 7, 8, 10, 12, 14, 17, 20, 24, 28, 33, 40, 48, 56, 64, 80, 100, 128, 160, 200]
TREE_REORDER = [20, 30, 40, 60, 100, 200]
IVF_NPROBE = [2, 3, 4, 5, 6, 8, 10, 12, 14, 17, 20, 24, 28, 33, 40, 48, 64, 80, 100]
IVF_KFACTOR = [2, 3, 4, 6, 10]
HNSW_EF = [10, 11, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48, 56, 64, 80, 100, 128, 160, 200]
STOP_RECALL = 0.99  # an inner sweep stops once it reaches this recall...
PLATEAU = 0.001  # ...or once a step gains less than this (past recall 0.85)


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


# --------------------------------------------------------------------------- contenders
#
# Each contender: name, build() -> None (sets build_s, index_mb), sweeps() -> list of inner sweeps
# (each a list of param dicts, ascending cost), prepare(mode, threads), search_one(q, p) -> ids,
# search_batch(Q, p, threads) -> ids [nq, k].


class Annlib:
    family = "annlib"

    def __init__(self, data, leaves, threshold, reorder_build, sample, soar_lambda=None, spill="soar"):
        spilling = "" if soar_lambda is None else (" spill=nearest" if spill == "nearest" else f" soar={soar_lambda}")
        self.name = f"annlib L={leaves} T={threshold}{spilling}"
        self.data, self.leaves, self.threshold, self.reorder_build, self.sample = data, leaves, threshold, reorder_build, sample
        self.soar_lambda, self.spill = soar_lambda, spill

    def build(self):
        start = time.perf_counter()
        self.index = (
            annlib.builder(self.data, K, "dot")
            .tree(num_leaves=self.leaves, num_leaves_to_search=min(20, self.leaves), training_sample_size=self.sample,
                  soar_lambda=self.soar_lambda, spill=self.spill)
            .score_ah(2, anisotropic_quantization_threshold=self.threshold)
            .reorder(self.reorder_build)
            .build()
        )
        self.build_s = time.perf_counter() - start
        self.index_mb = self.index.stats()["total_bytes"] / 2**20

    def sweeps(self):
        return tree_sweeps(self.leaves)

    def prepare(self, mode, threads):
        pass

    def search_one(self, q, p):
        return self.index.search(q, final_num_neighbors=K, leaves_to_search=p["leaves"], pre_reorder_num_neighbors=p["reorder"]).ids

    def search_batch(self, queries, p, threads):
        return self.index.search_batched(
            queries, final_num_neighbors=K, leaves_to_search=p["leaves"], pre_reorder_num_neighbors=p["reorder"], num_threads=threads
        ).ids


class Scann:
    family = "scann"

    def __init__(self, data, leaves, threshold, reorder_build, sample, soar_lambda=None):
        self.name = f"scann L={leaves} T={threshold}" + ("" if soar_lambda is None else f" soar={soar_lambda}")
        self.data, self.leaves, self.threshold, self.reorder_build, self.sample = data, leaves, threshold, reorder_build, sample
        self.soar_lambda = soar_lambda

    def build(self):
        import scann

        start = time.perf_counter()
        # as ann-benchmarks configures scann for angular data: spherical k-means, int8 centroid scoring
        self.index = (
            scann.scann_ops_pybind.builder(self.data, K, "dot_product")
            .tree(
                num_leaves=self.leaves,
                num_leaves_to_search=min(20, self.leaves),
                training_sample_size=self.sample,
                spherical=True,
                quantize_centroids=True,
                **({} if self.soar_lambda is None else {"soar_lambda": self.soar_lambda}),
            )
            .score_ah(2, anisotropic_quantization_threshold=self.threshold)
            .reorder(self.reorder_build)
            .build()
        )
        self.build_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            self.index.serialize(tmp)
            self.index_mb = dir_bytes(tmp) / 2**20

    def sweeps(self):
        return tree_sweeps(self.leaves)

    def prepare(self, mode, threads):
        self.index.set_num_threads(1 if mode == "single" else threads)

    def search_one(self, q, p):
        return self.index.search(q, final_num_neighbors=K, pre_reorder_num_neighbors=p["reorder"], leaves_to_search=p["leaves"])[0]

    def search_batch(self, queries, p, threads):
        return self.index.search_batched_parallel(
            queries, final_num_neighbors=K, pre_reorder_num_neighbors=p["reorder"], leaves_to_search=p["leaves"]
        )[0]


def tree_sweeps(num_leaves):
    leaves = [x for x in TREE_LEAVES if x <= num_leaves]
    return [[{"leaves": x, "reorder": r} for x in leaves] for r in TREE_REORDER]


class FaissIvfPqFs:
    family = "faiss-ivfpqfs"

    def __init__(self, data, nlist):
        self.data, self.nlist = data, nlist
        d = data.shape[1]
        self.factory = f"IVF{nlist},PQ{d // 2}x4fs"
        self.name = f"faiss {self.factory}+refine"

    def build(self):
        import faiss

        d = self.data.shape[1]
        start = time.perf_counter()
        self.base = faiss.index_factory(d, self.factory, faiss.METRIC_INNER_PRODUCT)
        self.index = faiss.IndexRefineFlat(self.base)
        self.index.train(self.data)
        self.index.add(self.data)
        self.build_s = time.perf_counter() - start
        self.index_mb = faiss.serialize_index(self.index).nbytes / 2**20
        self.ivf = faiss.extract_index_ivf(self.base)

    def sweeps(self):
        probes = [x for x in IVF_NPROBE if x <= self.nlist]
        return [[{"nprobe": x, "k_factor": kf} for x in probes] for kf in IVF_KFACTOR]

    def _set(self, p):
        self.ivf.nprobe = p["nprobe"]
        self.index.k_factor = p["k_factor"]

    def prepare(self, mode, threads):
        import faiss

        faiss.omp_set_num_threads(1 if mode == "single" else threads)

    def search_one(self, q, p):
        self._set(p)
        return self.index.search(q[None], K)[1][0]

    def search_batch(self, queries, p, threads):
        self._set(p)
        return self.index.search(queries, K)[1]


class FaissHnsw:
    family = "faiss-hnsw"

    def __init__(self, data, m, efc):
        self.data, self.m, self.efc = data, m, efc
        self.name = f"faiss HNSW{m} efC={efc}"

    def build(self):
        import faiss

        start = time.perf_counter()
        self.index = faiss.IndexHNSWFlat(self.data.shape[1], self.m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.efc
        self.index.add(self.data)
        self.build_s = time.perf_counter() - start
        self.index_mb = faiss.serialize_index(self.index).nbytes / 2**20

    def sweeps(self):
        return [[{"ef": ef} for ef in HNSW_EF]]

    def prepare(self, mode, threads):
        import faiss

        faiss.omp_set_num_threads(1 if mode == "single" else threads)

    def search_one(self, q, p):
        self.index.hnsw.efSearch = p["ef"]
        return self.index.search(q[None], K)[1][0]

    def search_batch(self, queries, p, threads):
        self.index.hnsw.efSearch = p["ef"]
        return self.index.search(queries, K)[1]


class Hnswlib:
    family = "hnswlib"

    def __init__(self, data, m, efc, threads):
        self.data, self.m, self.efc, self.threads = data, m, efc, threads
        self.name = f"hnswlib M={m} efC={efc}"

    def build(self):
        import hnswlib

        n, d = self.data.shape
        start = time.perf_counter()
        self.index = hnswlib.Index(space="ip", dim=d)
        self.index.init_index(max_elements=n, ef_construction=self.efc, M=self.m, random_seed=0)
        self.index.add_items(self.data, np.arange(n), num_threads=self.threads)
        self.build_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "hnswlib.bin")
            self.index.save_index(path)
            self.index_mb = os.path.getsize(path) / 2**20

    def sweeps(self):
        return [[{"ef": ef} for ef in HNSW_EF]]

    def prepare(self, mode, threads):
        self.index.set_num_threads(1 if mode == "single" else threads)

    def search_one(self, q, p):
        self.index.set_ef(p["ef"])
        return self.index.knn_query(q, k=K, num_threads=1)[0][0]

    def search_batch(self, queries, p, threads):
        self.index.set_ef(p["ef"])
        return self.index.knn_query(queries, k=K, num_threads=threads)[0]


# --------------------------------------------------------------------------- measuring


def recall_of(ids, data, queries, truth_distances):
    """ann-benchmarks recall@K: recompute each returned point's angular distance from the data."""
    ids = np.asarray(ids, dtype=np.int64)[:, :K]
    valid = (ids >= 0) & (ids < len(data))
    dots = np.einsum("qkd,qd->qk", data[np.where(valid, ids, 0)], queries)
    found = np.where(valid, 1.0 - dots, np.inf)
    return ab_recall(found, truth_distances, K)


def measure(algo, mode, params, queries, truth, data, args, threads):
    if mode == "single":
        # untimed pass over every query: the recall, and the warm-up
        ids = np.stack([np.asarray(algo.search_one(q, params)) for q in queries])
        timed = queries[: args.single_queries]

        def run():
            for q in timed:
                algo.search_one(q, params)
    else:
        ids = np.asarray(algo.search_batch(queries, params, threads))
        timed = queries

        def run():
            algo.search_batch(queries, params, threads)

    rec = recall_of(ids, data, queries, truth)
    seconds = common.median_time(run, args.repeats, warmup=0)
    return rec, len(timed) / seconds


def sweep(algo, mode, queries, truth, data, args, threads, writer):
    points = []
    algo.prepare(mode, threads)
    start = time.perf_counter()
    for inner in algo.sweeps():
        prev = None
        for params in inner:
            rec, qps = measure(algo, mode, params, queries, truth, data, args, threads)
            points.append((params, rec, qps))
            writer.writerow([algo.name, mode, params_str(params), f"{rec:.4f}", f"{qps:.1f}", f"{algo.build_s:.2f}", f"{algo.index_mb:.2f}"])
            if rec >= STOP_RECALL or (prev is not None and rec > 0.85 and rec - prev < PLATEAU):
                break
            prev = rec
    print(f"  {algo.name:<34} {mode:<6} {len(points):3d} points in {time.perf_counter() - start:6.1f} s, "
          f"max recall {max(p[1] for p in points):.4f}", flush=True)
    return points


def params_str(p) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items())


def best_at(points, target):
    ok = [(qps, params) for params, rec, qps in points if rec >= target]
    return max(ok, key=lambda t: t[0]) if ok else (None, None)


def table(mode, results, threads, args) -> str:
    """results: list of (algo, points) for one mode."""
    what = "single-thread, one query per call" if mode == "single" else f"batched, all {args.nq} queries per call, {threads} threads"
    timed = min(args.single_queries, args.nq) if mode == "single" else args.nq
    lines = [
        f"### {mode}: {what} ({timed} timed queries, median of {args.repeats})",
        "",
        "| algorithm | " + " | ".join(f"QPS @{t:.2f} | vs annlib | params @{t:.2f}" for t in TARGETS)
        + " | build (s) | index (MB) |",
        "|---|" + "---:|---:|---|" * len(TARGETS) + "---:|---:|",
    ]
    ref = {}
    for t in TARGETS:
        vals = [best_at(points, t)[0] for algo, points in results if algo.family == "annlib"]
        vals = [v for v in vals if v is not None]
        ref[t] = max(vals) if vals else None
    for algo, points in results:
        cells = [algo.name]
        for t in TARGETS:
            qps, params = best_at(points, t)
            if qps is None:
                cells += [f"— (max {max(p[1] for p in points):.3f})", "", ""]
            else:
                ratio = f"{qps / ref[t]:.2f}x" if ref[t] else ""
                cells += [f"{qps:,.0f}", ratio, params_str(params)]
        cells += [f"{algo.build_s:.1f}", f"{algo.index_mb:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def synthetic_angular(n, d, threads, num_queries=1000, num_clusters=10_000, noise=0.7, seed=0):
    """Clustered unit vectors (Gaussian blobs around random centers) with exact angular ground truth.

    10,000 blobs with noise 0.7 per coordinate (noise norm ~0.7x the center norm) make neighbors
    straddle partitions: at 1000 leaves plain partitioning needs tens of leaves for recall 0.9,
    the regime where spilling matters. Tighter blobs make every index trivially exact.
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_clusters, d)).astype(np.float32)
    points = np.empty((n + num_queries, d), dtype=np.float32)
    for begin in range(0, len(points), 200_000):
        m = min(200_000, len(points) - begin)
        points[begin:begin + m] = centers[rng.integers(0, num_clusters, m)] + noise * rng.standard_normal((m, d), dtype=np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    train, test = points[:n], points[n:]
    exact = annlib.BruteForce(train, "dot").search_batched(test, 100, num_threads=threads)
    return train, test, (1.0 - exact.distances).astype(np.float32), "angular"


def parse_lambdas(values):
    return [None if str(v).lower() == "none" else float(v) for v in values]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 1)[1])
    parser.add_argument("--dataset", default=str(common.DEFAULT_DATASET))
    parser.add_argument("--mode", choices=["single", "batch", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-queries", type=int, default=500)
    parser.add_argument("--algos", nargs="+", default=["annlib", "scann", "faiss-ivfpqfs", "faiss-hnsw", "hnswlib"],
                        choices=["annlib", "scann", "faiss-ivfpqfs", "faiss-hnsw", "hnswlib"])
    parser.add_argument("--training-sample-size", type=int, default=None, help="tree k-means sample (default: all points)")
    parser.add_argument("--annlib-leaves", type=int, nargs="+", default=[224])
    parser.add_argument("--annlib-threshold", type=float, nargs="+", default=[0.2])
    parser.add_argument("--annlib-soar", nargs="+", default=["none"],
                        help="SOAR lambdas for annlib rows ('none' = no spilling), e.g. --annlib-soar none 1.0")
    parser.add_argument("--annlib-nearest-spill", action="store_true", help="add an annlib row with plain spilling")
    parser.add_argument("--scann-soar", nargs="+", default=["none"], help="SOAR lambdas for scann rows")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.90, 0.95], help="recall targets of the table")
    parser.add_argument("--synthetic", default=None, metavar="NxD",
                        help="clustered synthetic unit vectors instead of --dataset, e.g. 1000000x128")
    parser.add_argument("--scann-leaves", type=int, nargs="+", default=None, help="default: the --annlib-leaves values")
    parser.add_argument("--scann-threshold", type=float, nargs="+", default=[0.2])
    parser.add_argument("--reorder-build", type=int, default=100, help="build-time reorder of annlib/scann (swept at query time)")
    parser.add_argument("--faiss-nlist", type=int, nargs="+", default=[256])
    parser.add_argument("--faiss-hnsw-m", type=int, nargs="+", default=[32])
    parser.add_argument("--faiss-hnsw-efc", type=int, default=40, help="faiss's default efConstruction")
    parser.add_argument("--hnswlib-m", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--hnswlib-efc", type=int, default=200)
    parser.add_argument("--out", default=str(OUT_DIR))
    args = parser.parse_args(argv)

    global TARGETS
    TARGETS = tuple(args.targets)
    modes = ["single", "batch"] if args.mode == "both" else [args.mode]
    threads = annlib.cpu_info()["threads"]
    if args.synthetic:
        n, d = (int(v) for v in args.synthetic.lower().split("x"))
        train, test, distances, metric = synthetic_angular(n, d, threads)
        args.dataset = f"synthetic clustered {n}x{d}"
    else:
        train, test, _, distances, metric = common.load_hdf5(args.dataset)
    if metric != "angular":
        sys.exit(f"{args.dataset}: this benchmark handles angular datasets, not {metric!r}")
    # angular data: normalise so that dot == cosine for every contender
    data = np.ascontiguousarray(train / np.linalg.norm(train, axis=1, keepdims=True), dtype=np.float32)
    queries = np.ascontiguousarray(test / np.linalg.norm(test, axis=1, keepdims=True), dtype=np.float32)
    args.nq = len(queries)
    sample = args.training_sample_size or len(data)

    versions = {"annlib": version("annlib")}
    available = {"annlib": True}
    for family, module, dist in [("scann", "scann", "scann"), ("faiss-ivfpqfs", "faiss", "faiss-cpu"),
                                 ("faiss-hnsw", "faiss", "faiss-cpu"), ("hnswlib", "hnswlib", "hnswlib")]:
        try:
            mod = __import__(module)
            available[family] = True
            versions[module] = getattr(mod, "__version__", None) or version(dist)
        except ImportError:
            available[family] = False
            print(f"skipping {family}: python package {module!r} is not installed")

    header = [
        f"machine: {common.machine()}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + f", numpy {np.__version__}",
        f"data: {args.dataset} ({data.shape[0]} x {data.shape[1]}, {len(queries)} queries, {metric}), recall@{K} (ann-benchmarks k-nn)",
        "command: " + shlex.join([sys.executable, *sys.argv] if argv is None else ["bench/peers.py", *argv]),
    ]
    print("\n".join(header), flush=True)

    algos = []
    for family in args.algos:
        if not available.get(family):
            continue
        if family == "annlib":
            for L, T, lam in itertools.product(args.annlib_leaves, args.annlib_threshold, parse_lambdas(args.annlib_soar)):
                algos.append(Annlib(data, L, T, args.reorder_build, sample, lam))
            if args.annlib_nearest_spill:
                algos += [Annlib(data, L, T, args.reorder_build, sample, 1.0, "nearest")
                          for L, T in itertools.product(args.annlib_leaves, args.annlib_threshold)]
        elif family == "scann":
            algos += [Scann(data, L, T, args.reorder_build, sample, lam)
                      for L, T, lam in itertools.product(args.scann_leaves or args.annlib_leaves, args.scann_threshold,
                                                         parse_lambdas(args.scann_soar))]
        elif family == "faiss-ivfpqfs":
            algos += [FaissIvfPqFs(data, nlist) for nlist in args.faiss_nlist]
        elif family == "faiss-hnsw":
            algos += [FaissHnsw(data, m, args.faiss_hnsw_efc) for m in args.faiss_hnsw_m]
        elif family == "hnswlib":
            algos += [Hnswlib(data, m, args.hnswlib_efc, threads) for m in args.hnswlib_m]

    os.makedirs(args.out, exist_ok=True)
    with contextlib.ExitStack() as stack:
        files = {mode: stack.enter_context(open(os.path.join(args.out, f"peers-{mode}.csv"), "w", newline="")) for mode in modes}
        writers = {mode: csv.writer(f) for mode, f in files.items()}
        for w in writers.values():
            w.writerow(["algorithm", "mode", "params", "recall", "qps", "build_s", "index_mb"])
        results = {mode: [] for mode in modes}
        total = time.perf_counter()
        for algo in algos:
            with common.blas_threads(threads):
                algo.build()
            print(f"built {algo.name}: {algo.build_s:.1f} s, {algo.index_mb:.1f} MB", flush=True)
            for mode in modes:
                with common.blas_threads(1 if mode == "single" else threads):
                    points = sweep(algo, mode, queries, distances, data, args, threads, writers[mode])
                results[mode].append((algo, points))
                files[mode].flush()
            # keep the measurements, free the index
            for attr in ("index", "base", "ivf"):
                if hasattr(algo, attr):
                    delattr(algo, attr)
            gc.collect()

    tables = [table(mode, results[mode], threads, args) for mode in modes]
    report = "\n".join(header) + f"\nwall time {time.perf_counter() - total:.0f} s\n\n" + "\n\n".join(tables) + "\n"
    print("\n" + "\n\n".join(tables))
    with open(os.path.join(args.out, "peers.md"), "w") as f:
        f.write(report)
    print(f"\nwrote {args.out}/peers.md and peers-{{{','.join(modes)}}}.csv")


if __name__ == "__main__":
    main()
