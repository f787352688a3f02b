"""annlib vs ScaNN vs faiss (vs hnswlib) at 1M real SIFT vectors, squared L2 (issue 15).

    python bench/scale.py [--dataset PATH] [--queries 500] [--mode single batch] [--repeats 3]
                          [--algos annlib annlib-int8 scann faiss-ivfpqfs faiss-hnsw hnswlib]
                          [--leaves 2000] [--exact-queries 20] [--out bench/out/scale.md]
    python bench/scale.py --ah-stage [--limit 200000] [--leaves 894] [--queries 300]
    python bench/scale.py --build-memory [--algos ...]

Every contender is built and searched in this one process on the same data (the file's
``train``, the first ``--queries`` of its ``test``): one query per call on one thread
("single"), and all the queries in one call on every core ("batch"). Sweeps walk each
query-time knob ascending until recall@10 reaches 0.995 or stops moving, so each library
shows the recall it can reach. Recall@10 is ann-benchmarks' (a returned point counts when
its true distance is within the 10th true distance + 1e-3; SIFT distances tie often).

Reported per contender: the best QPS among sweep points reaching recall 0.90 / 0.95 / 0.99
(no interpolation) and its ratio to annlib's, the build time, the index size, and with
``--exact-queries`` the exact single-query brute force of annlib vs faiss ``IndexFlatL2``.
``--build-memory`` builds each contender in a fresh process of its own and reports its build
time and the peak resident memory the build added above the loaded data (sampled every
20 ms): in one process, memory an earlier contender freed is reused by the next one.

``--ah-stage`` measures the first stage alone, without reordering: the fraction of the true
10 nearest among the best N AH candidates (N = 30, 100, 300) at 8 and 32 leaves, annlib vs
ScaNN built alike, to see which stage loses neighbours (issue 15's recall gap).

Self-contained: imports only annlib's public API and the peers' packages.
"""

from __future__ import annotations

import argparse
import gc
import os
import pathlib
import platform
import shlex
import sys
import tempfile
import threading
import time

import numpy as np

import annlib

K = 10
TARGETS = (0.90, 0.95, 0.99)
STOP_RECALL = 0.995
PLATEAU = 0.0005
DEFAULT_DATASET = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sift-debian-textures-1m-128-euclidean.hdf5"
TREE_LEAVES = [4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 320]
TREE_REORDER = [30, 60, 100, 200, 400]
IVF_NPROBE = [4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 320]
IVF_KFACTOR = [3, 6, 10, 20, 40]
HNSW_EF = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]


class PeakRss:
    """Peak resident set size above the level at entry, sampled every 20 ms."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.added_mb = (self.peak - self.base) / 2**20


def dir_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


# --------------------------------------------------------------------------- contenders


class Annlib:
    def __init__(self, data, leaves, quantize="float32"):
        self.data, self.leaves, self.quantize = data, leaves, quantize
        self.name = f"annlib tree-AH L={leaves}" + (" int8 reorder" if quantize == "int8" else "")

    def build(self):
        self.index = annlib.TreeAhIndex(
            self.data, "squared_l2", num_leaves=self.leaves, training_sample_size=100_000, dims_per_block=2,
            anisotropic_quantization_threshold=0.2, reorder=100, reorder_quantize=self.quantize,
        )

    def index_bytes(self):
        memory = self.index.stats()["memory_bytes"]
        # float32 reorder rows are the caller's data array (no copy), counted as ScaNN's are
        return sum(memory.values())

    def sweeps(self):
        return tree_sweeps(self.leaves)

    def prepare(self, mode, threads):
        pass

    def search_one(self, q, p):
        return self.index.search(q, K, leaves_to_search=p["leaves"], pre_reorder_num_neighbors=p["reorder"]).ids

    def search_batch(self, queries, p, threads):
        return self.index.search_batched(
            queries, K, leaves_to_search=p["leaves"], pre_reorder_num_neighbors=p["reorder"], num_threads=threads
        ).ids


class Scann:
    def __init__(self, data, leaves):
        self.data, self.leaves = data, leaves
        self.name = f"scann tree-AH L={leaves}"

    def build(self):
        import scann

        self.index = (
            scann.scann_ops_pybind.builder(self.data, K, "squared_l2")
            .tree(num_leaves=self.leaves, num_leaves_to_search=20, training_sample_size=100_000)
            .score_ah(2, anisotropic_quantization_threshold=0.2)
            .reorder(100)
            .build()
        )

    def index_bytes(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.index.serialize(tmp)
            return dir_bytes(tmp)

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
    return [[{"leaves": x, "reorder": r} for x in TREE_LEAVES if x <= num_leaves] for r in TREE_REORDER]


class FaissIvfPqFs:
    def __init__(self, data, nlist):
        self.data, self.nlist = data, nlist
        self.factory = f"IVF{nlist},PQ{data.shape[1] // 2}x4fs"
        self.name = f"faiss {self.factory}+refine"

    def build(self):
        import faiss

        self.base = faiss.index_factory(self.data.shape[1], self.factory, faiss.METRIC_L2)
        self.index = faiss.IndexRefineFlat(self.base)
        self.index.train(self.data)
        self.index.add(self.data)
        self.ivf = faiss.extract_index_ivf(self.base)

    def index_bytes(self):
        import faiss

        return faiss.serialize_index(self.index).nbytes

    def sweeps(self):
        probes = [x for x in IVF_NPROBE if x <= self.nlist]
        return [[{"nprobe": x, "k_factor": kf} for x in probes] for kf in IVF_KFACTOR]

    def prepare(self, mode, threads):
        import faiss

        faiss.omp_set_num_threads(1 if mode == "single" else threads)

    def _set(self, p):
        self.ivf.nprobe = p["nprobe"]
        self.index.k_factor = p["k_factor"]

    def search_one(self, q, p):
        self._set(p)
        return self.index.search(q[None], K)[1][0]

    def search_batch(self, queries, p, threads):
        self._set(p)
        return self.index.search(queries, K)[1]


class GraphCache:
    """Saves a built graph index (and the seconds its build took) under ``--peer-cache``, keyed
    by the contender and the data, so later runs load it instead of rebuilding for minutes.
    A loaded contender reports the build time of the run that built it."""

    def __init__(self, directory, key, data):
        self.path = None if directory is None else pathlib.Path(directory) / f"{key}-{data.shape[0]}x{data.shape[1]}"
        self.build_s = None

    def load(self, read) -> bool:
        """Calls ``read(path)`` and returns True when a saved build exists."""
        if self.path is None or not self.path.with_suffix(".json").exists():
            return False
        import json

        read(str(self.path.with_suffix(".bin")))
        self.build_s = json.loads(self.path.with_suffix(".json").read_text())["build_s"]
        return True

    def store(self, write, build_s):
        if self.path is None:
            return
        import json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write(str(self.path.with_suffix(".bin")))
        self.path.with_suffix(".json").write_text(json.dumps({"build_s": build_s}))


class FaissHnsw:
    def __init__(self, data, m=32, efc=200, cache=None):
        self.data, self.m, self.efc = data, m, efc
        self.name = f"faiss HNSW{m} efC={efc}"
        self.cache = GraphCache(cache, f"faiss-hnsw{m}-efc{efc}", data)

    def build(self):
        import faiss

        if self.cache.load(lambda path: setattr(self, "index", faiss.read_index(path))):
            return
        start = time.perf_counter()
        self.index = faiss.IndexHNSWFlat(self.data.shape[1], self.m, faiss.METRIC_L2)
        self.index.hnsw.efConstruction = self.efc
        self.index.add(self.data)
        self.cache.store(lambda path: faiss.write_index(self.index, path), time.perf_counter() - start)

    def index_bytes(self):
        import faiss

        return faiss.serialize_index(self.index).nbytes

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
    def __init__(self, data, threads, m=16, efc=200, cache=None):
        self.data, self.threads, self.m, self.efc = data, threads, m, efc
        self.name = f"hnswlib M={m} efC={efc}"
        self.cache = GraphCache(cache, f"hnswlib-m{m}-efc{efc}", data)

    def build(self):
        import hnswlib

        n, d = self.data.shape
        self.index = hnswlib.Index(space="l2", dim=d)
        if self.cache.load(lambda path: self.index.load_index(path, max_elements=n)):
            return
        start = time.perf_counter()
        self.index.init_index(max_elements=n, ef_construction=self.efc, M=self.m, random_seed=0)
        self.index.add_items(self.data, np.arange(n), num_threads=self.threads)
        self.cache.store(self.index.save_index, time.perf_counter() - start)

    def index_bytes(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "hnswlib.bin")
            self.index.save_index(path)
            return os.path.getsize(path)

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


def recall_of(ids, data, queries, kth_distance):
    """ann-benchmarks recall@K from each returned point's recomputed euclidean distance."""
    ids = np.asarray(ids, dtype=np.int64)[:, :K]
    valid = (ids >= 0) & (ids < len(data))
    diff = data[np.where(valid, ids, 0)] - queries[:, None, :]
    dist = np.where(valid, np.sqrt(np.einsum("qkd,qkd->qk", diff, diff)), np.inf)
    return float(np.mean(dist <= kth_distance[:, None] + 1e-3))


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(algo, mode, params, queries, kth, data, repeats, threads):
    if mode == "single":
        ids = np.stack([np.asarray(algo.search_one(q, params)) for q in queries])  # recall pass, also warms up

        def run():
            for q in queries:
                algo.search_one(q, params)
    else:
        ids = np.asarray(algo.search_batch(queries, params, threads))

        def run():
            algo.search_batch(queries, params, threads)

    return recall_of(ids, data, queries, kth), len(queries) / median_seconds(run, repeats)


def sweep(algo, mode, queries, kth, data, repeats, threads, log):
    points = []
    algo.prepare(mode, threads)
    for inner in algo.sweeps():
        prev = None
        for params in inner:
            rec, qps = measure(algo, mode, params, queries, kth, data, repeats, threads)
            points.append((params, rec, qps))
            log(f"  {mode:6s} {algo.name:32s} {params}  recall {rec:.4f}  QPS {qps:9.1f}")
            if rec >= STOP_RECALL or (prev is not None and rec > 0.85 and rec - prev < PLATEAU):
                break
            prev = rec
    return points


def best_at(points, target):
    ok = [(qps, params) for params, rec, qps in points if rec >= target]
    return max(ok, key=lambda t: t[0]) if ok else (None, None)


def exact_single(data, queries, repeats):
    """Exact single-query brute force, annlib BruteForce vs faiss IndexFlatL2 (one thread)."""
    import faiss

    faiss.omp_set_num_threads(1)
    flat = faiss.IndexFlatL2(data.shape[1])
    flat.add(data)
    brute = annlib.BruteForce(data, "squared_l2")
    ours = np.stack([brute.search(q, K).ids for q in queries])
    theirs = np.stack([flat.search(q[None], K)[1][0] for q in queries])
    agree = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ours, theirs)]))
    t_ours = median_seconds(lambda: [brute.search(q, K) for q in queries], repeats)
    t_faiss = median_seconds(lambda: [flat.search(q[None], K) for q in queries], repeats)
    del flat, brute
    return len(queries) / t_ours, len(queries) / t_faiss, agree


def ah_stage(data, queries, leaves, log):
    """Recall of the true 10 nearest among the top-N AH candidates (no reordering), annlib vs ScaNN."""
    import scann

    exact = annlib.BruteForce(data, "squared_l2").search_batched(queries, K).ids
    ours = annlib.TreeAhIndex(data, "squared_l2", num_leaves=leaves, training_sample_size=len(data), dims_per_block=2,
                              anisotropic_quantization_threshold=0.2, reorder=None)
    theirs = (scann.scann_ops_pybind.builder(data, K, "squared_l2")
              .tree(num_leaves=leaves, num_leaves_to_search=10, training_sample_size=len(data))
              .score_ah(2, anisotropic_quantization_threshold=0.2).build())

    def hits(ids):
        return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(ids, exact)]))

    lines = [f"AH stage alone, {len(data):,} points, {leaves} leaves, {len(queries)} queries: true 10 nearest among the top N",
             "", "| leaves | N | annlib | ScaNN |", "|---:|---:|---:|---:|"]
    for probe in (8, 32):
        for n in (30, 100, 300):
            a = ours.search_batched(queries, n, leaves_to_search=probe).ids
            b = theirs.search_batched(queries, final_num_neighbors=n, leaves_to_search=probe, pre_reorder_num_neighbors=n)[0]
            lines.append(f"| {probe} | {n} | {hits(a):.3f} | {hits(b):.3f} |")
            log(lines[-1])
    return lines


def fmt(x, digits=0):
    return "—" if x is None else f"{x:,.{digits}f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default=str(DEFAULT_DATASET))
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--mode", nargs="+", default=["single", "batch"], choices=["single", "batch"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--algos", nargs="+", default=["annlib", "annlib-int8", "scann", "faiss-ivfpqfs"],
                    choices=["annlib", "annlib-int8", "scann", "faiss-ivfpqfs", "faiss-hnsw", "hnswlib"])
    ap.add_argument("--leaves", type=int, default=2000, help="tree leaves / IVF lists (about 2 sqrt(n))")
    ap.add_argument("--limit", type=int, default=None, help="use only the first LIMIT train points (quick runs)")
    ap.add_argument("--exact-queries", type=int, default=20)
    ap.add_argument("--build-memory", action="store_true", help="only build, each contender in its own process")
    ap.add_argument("--build-one", default=None, help=argparse.SUPPRESS)  # the child of --build-memory
    ap.add_argument("--ah-stage", action="store_true", help="only the AH-stage recall, annlib vs ScaNN (no reordering)")
    ap.add_argument("--peer-cache", default=None,
                    help="directory (outside the repo) where the graph peers' built indexes are saved and reused")
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent / "out" / "scale.md"))
    args = ap.parse_args(argv)

    import h5py

    with h5py.File(args.dataset, "r") as f:
        data = np.ascontiguousarray(f["train"][: args.limit], dtype=np.float32)
        queries = np.ascontiguousarray(f["test"][: args.queries], dtype=np.float32)
        truth = np.asarray(f["distances"][: args.queries, :K], dtype=np.float32)
    if args.limit is not None:  # ground truth of the subset
        brute = annlib.BruteForce(data, "squared_l2").search_batched(queries, K)
        truth = np.sqrt(np.maximum(brute.distances, 0))
    kth = truth[:, K - 1]
    threads = os.cpu_count() or 1
    lines = []

    def log(line):
        print(line, flush=True)

    if args.ah_stage:
        lines = [f"`python bench/scale.py {shlex.join(sys.argv[1:] if argv is None else argv)}`", ""]
        lines += ah_stage(data, queries, args.leaves, log)
        print("\n".join(lines))
        return

    if args.build_memory:
        import json
        import subprocess

        lines = [f"`python bench/scale.py {shlex.join(sys.argv[1:] if argv is None else argv)}`", "",
                 "| contender | build s | build peak +RSS MiB (above the loaded data) | index MiB |", "|---|---:|---:|---:|"]
        for key in args.algos:
            cmd = [sys.executable, __file__, "--build-one", key, "--dataset", args.dataset, "--leaves", str(args.leaves)]
            if args.limit is not None:
                cmd += ["--limit", str(args.limit)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            row = json.loads(out)
            lines.append(f"| {row['name']} | {row['build_s']:.1f} | {row['rss_mb']:.0f} | {row['size_mb']:.0f} |")
            log(lines[-1])
        print("\n".join(lines))
        return

    makers = {
        "annlib": lambda: Annlib(data, args.leaves),
        "annlib-int8": lambda: Annlib(data, args.leaves, "int8"),
        "scann": lambda: Scann(data, args.leaves),
        "faiss-ivfpqfs": lambda: FaissIvfPqFs(data, args.leaves),
        "faiss-hnsw": lambda: FaissHnsw(data, cache=args.peer_cache),
        "hnswlib": lambda: Hnswlib(data, threads, cache=args.peer_cache),
    }
    if args.build_one is not None:
        import json

        algo = makers[args.build_one]()
        start = time.perf_counter()
        with PeakRss() as rss:
            algo.build()
        build_s = time.perf_counter() - start
        print(json.dumps({"name": algo.name, "build_s": build_s, "rss_mb": rss.added_mb,
                          "size_mb": algo.index_bytes() / 2**20}))
        return

    results = []
    for key in args.algos:
        algo = makers[key]()
        gc.collect()
        start = time.perf_counter()
        algo.build()
        build_s = time.perf_counter() - start
        cached = getattr(getattr(algo, "cache", None), "build_s", None)
        if cached is not None:  # loaded from --peer-cache: the build time of the run that built it
            build_s = cached
        size_mb = algo.index_bytes() / 2**20
        log(f"built {algo.name}: {build_s:.1f} s{' (cached build)' if cached is not None else ''}, index {size_mb:.0f} MiB")
        row = {"name": algo.name, "build_s": build_s, "size_mb": size_mb}
        for mode in args.mode:
            row[mode] = sweep(algo, mode, queries, kth, data, args.repeats, threads, log)
        results.append(row)
        del algo
        gc.collect()

    n, d = data.shape
    lines.append(f"`python bench/scale.py {shlex.join(sys.argv[1:] if argv is None else argv)}`")
    lines.append("")
    lines.append(f"{n:,} x {d} points, {len(queries)} queries, k={K}, {threads} threads in batch mode; "
                 f"{platform.processor() or platform.machine()}, annlib SIMD {annlib.cpu_info()['isa']}.")
    lines.append("")
    for mode in args.mode:
        lines.append(f"**{mode}** ({'one query per call, one thread' if mode == 'single' else f'all queries in one call, {threads} threads'}):")
        lines.append("")
        header = "| contender | " + " | ".join(f"QPS @{t:.2f} | vs annlib" for t in TARGETS) + " | max recall | build s | index MiB |"
        lines.append(header)
        lines.append("|---" * (1 + 2 * len(TARGETS) + 3) + "|")
        base = {t: best_at(results[0][mode], t)[0] for t in TARGETS} if results else {}
        for row in results:
            cells = [row["name"]]
            for t in TARGETS:
                qps, params = best_at(row[mode], t)
                ratio = None if qps is None or not base.get(t) else qps / base[t]
                cells += [fmt(qps) + ("" if params is None else f" ({','.join(str(v) for v in params.values())})"),
                          "—" if ratio is None else f"{ratio:.2f}x"]
            cells += [f"{max(r for _, r, _ in row[mode]):.4f}", f"{row['build_s']:.1f}", f"{row['size_mb']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if args.exact_queries:
        ours, theirs, agree = exact_single(data, queries[: args.exact_queries], args.repeats)
        lines.append(f"Exact single-query brute force ({args.exact_queries} queries, one thread): annlib BruteForce "
                     f"{ours:,.1f} QPS, faiss IndexFlatL2 {theirs:,.1f} QPS, ratio {ours / theirs:.2f}x "
                     f"(top-10 agreement {agree:.3f}).")
        lines.append("")
    text = "\n".join(lines)
    print("\n" + text)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
