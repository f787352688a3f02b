"""10M x 128 on one machine (issue 15): the data recipe, cached ground truth, and annlib's build
memory, recall and QPS at that size.

    python bench/sift10m.py make       [--cache DIR]   # 10M rows from the 1M SIFT set (5.1 GB)
    python bench/sift10m.py truth      [--cache DIR]   # exact top-100 of 1,000 queries, cached
    python bench/sift10m.py run        [--cache DIR] [--leaves 6000] [--copy] [--queries 1000]
    python bench/sift10m.py compare    [--cache DIR] [--leaves 6000] [--queries 1000]   # vs faiss

The recipe: every train vector of ``sift-debian-textures-1m-128-euclidean`` once as it is, then
nine jittered copies, each coordinate plus an integer drawn uniformly from [-2, 2], clipped to
0-255 (SIFT's range): 10,000,000 x 128 float32, written chunk by chunk to ``DIR/data.npy``.
Nearby copies make the neighbourhoods ten times denser, as a real collection ten times larger
would. The queries are the set's first 1,000 test vectors; their exact 100 nearest (squared L2)
are computed once by annlib's exact search, chunk by chunk over the memory-mapped rows, and
cached in ``DIR/truth.npy``. DIR defaults to ``$ANNLIB_CACHE/sift10m`` or
``~/.cache/annlib/sift10m``: outside the repository.

``run`` builds the tree-AH index from the memory-mapped file in this process and reports the
build's peak resident memory (``ru_maxrss``, which counts the data's file pages the build
touched) and its peak anonymous memory (``RssAnon`` sampled every 20 ms: what the build
allocated), each over the raw data's 5.12 GB. Without ``--copy`` the index reorders from the
caller's array (``copy=False``), so the float32 rows stay the file's pages, which the OS can
drop and read back; with ``--copy`` the index owns a copy in RAM. Then recall@10 and QPS single
(one query per call, one thread) and batched (all queries, every core) over a small sweep.

``compare`` builds annlib's index (reorder rows from the file, as ``run``) and faiss
``IVF{leaves},PQ64x4fs`` + ``IndexRefineFlat`` (its float32 refine copy in RAM: faiss has no
file-backed refine) from the same memory-mapped rows and training sample size, in one process;
sweeps both, single and batched, and reports each one's best QPS at recall 0.90 / 0.95 / 0.99
and annlib's ratio.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import threading
import time

import numpy as np

import annlib

K = 10
N_COPIES = 10
SOURCE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sift-debian-textures-1m-128-euclidean.hdf5"


def default_cache() -> pathlib.Path:
    root = os.environ.get("ANNLIB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "annlib")
    return pathlib.Path(root) / "sift10m"


def load_source():
    import h5py

    with h5py.File(SOURCE, "r") as f:
        return np.asarray(f["train"], dtype=np.float32), np.asarray(f["test"][:1000], dtype=np.float32)


def make(cache: pathlib.Path, seed: int = 0) -> None:
    train, queries = load_source()
    n = len(train)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / "data.npy.partial"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(N_COPIES * n, train.shape[1]))
    rng = np.random.default_rng(seed)
    for copy in range(N_COPIES):
        for begin in range(0, n, 100_000):
            rows = train[begin : begin + 100_000]
            if copy:
                noise = rng.integers(-2, 3, size=rows.shape).astype(np.float32)
                rows = np.clip(rows + noise, 0.0, 255.0)
            out[copy * n + begin : copy * n + begin + len(rows)] = rows
        print(f"copy {copy + 1}/{N_COPIES} written", flush=True)
    out.flush()
    del out
    os.replace(tmp, cache / "data.npy")
    np.save(cache / "queries.npy", queries)


def truth(cache: pathlib.Path, depth: int = 100, chunk: int = 1_000_000) -> None:
    data = np.load(cache / "data.npy", mmap_mode="r")
    queries = np.load(cache / "queries.npy")
    best_ids = np.zeros((len(queries), 0), np.int64)
    best_dist = np.zeros((len(queries), 0), np.float32)
    start = time.perf_counter()
    for begin in range(0, len(data), chunk):
        part = np.ascontiguousarray(data[begin : begin + chunk])
        ids, dist = annlib.BruteForce(part, "squared_l2", copy=False).search_batched(queries, depth)
        best_ids = np.concatenate([best_ids, ids + begin], axis=1)
        best_dist = np.concatenate([best_dist, dist], axis=1)
        order = np.lexsort((best_ids, best_dist), axis=1)[:, :depth]  # distance, then id: ties as exact search
        best_ids = np.take_along_axis(best_ids, order, axis=1)
        best_dist = np.take_along_axis(best_dist, order, axis=1)
        print(f"rows to {begin + len(part):,}: {time.perf_counter() - start:.0f} s", flush=True)
    np.save(cache / "truth.npy", best_ids)
    np.save(cache / "truth_distances.npy", best_dist)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakAnon:
    """Peak anonymous resident memory (heap, not file pages), sampled every 20 ms."""

    def __enter__(self):
        self.peak = _status_kb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _status_kb("RssAnon"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kb("RssAnon"))


def recall_at_k(ids: np.ndarray, true_ids: np.ndarray, true_dist: np.ndarray, dist: np.ndarray) -> float:
    """ann-benchmarks' recall@10: a result counts when its distance is within the 10th true one + 1e-3."""
    del ids, true_ids
    threshold = true_dist[:, K - 1 : K] + 1e-3
    return float(np.mean(np.sum(dist[:, :K] <= threshold, axis=1) / K))


def run(cache: pathlib.Path, leaves: int, copy: bool, num_queries: int) -> None:
    data = np.load(cache / "data.npy", mmap_mode="r")
    queries = np.load(cache / "queries.npy")[:num_queries]
    true_ids = np.load(cache / "truth.npy")[:num_queries]
    true_dist = np.load(cache / "truth_distances.npy")[:num_queries]
    raw = data.nbytes
    before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    with PeakAnon() as anon:
        index = annlib.TreeAhIndex(data, "squared_l2", num_leaves=leaves, num_leaves_to_search=30,
                                   training_sample_size=250_000, dims_per_block=2, reorder=100, copy=copy,
                                   progress=True)
    build_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"\n10M x 128, {leaves} leaves, reorder float32 {'owned copy in RAM' if copy else 'from the memory-mapped file'}")
    print(f"build {build_s:.0f} s; peak RSS {peak / 1e9:.2f} GB ({peak / raw:.2f}x raw; {before_max / 1e9:.2f} GB "
          f"before the build); peak anonymous memory {anon.peak * 1024 / 1e9:.2f} GB ({anon.peak * 1024 / raw:.2f}x raw); "
          f"index {index.stats()['total_bytes'] / 1e9:.2f} GB")
    print("\n| mode | leaves_to_search | pre_reorder | recall@10 | QPS |\n|---|---|---|---|---|")
    threads = annlib.default_num_threads()
    for t1, t2 in [(20, 100), (40, 100), (60, 200), (100, 200), (160, 400)]:
        for mode in ("single", "batch"):
            if mode == "single":
                sample = queries[:200]
                start = time.perf_counter()
                results = [index.search(q, K, leaves_to_search=t1, pre_reorder_num_neighbors=t2) for q in sample]
                seconds = time.perf_counter() - start
                dist = np.stack([r.distances for r in results])
                rec = recall_at_k(None, None, true_dist[: len(sample)], dist)
                qps = len(sample) / seconds
            else:
                start = time.perf_counter()
                result = index.search_batched(queries, K, num_threads=threads, leaves_to_search=t1,
                                              pre_reorder_num_neighbors=t2)
                seconds = time.perf_counter() - start
                rec = recall_at_k(None, None, true_dist, result.distances)
                qps = len(queries) / seconds
            print(f"| {mode} | {t1} | {t2} | {rec:.4f} | {qps:,.0f} |", flush=True)


def _sweep(search_one, search_batch, settings, queries, true_dist, threads):
    """{mode: [(setting, recall, qps)]} over `settings` (single: 200 queries; batch: all)."""
    rows = {"single": [], "batch": []}
    for setting in settings:
        sample = queries[:200]
        search_one(sample[0], setting)  # warm-up
        start = time.perf_counter()
        dist = np.stack([search_one(q, setting) for q in sample])
        qps = len(sample) / (time.perf_counter() - start)
        rows["single"].append((setting, recall_at_k(None, None, true_dist[: len(sample)], dist), qps))
        start = time.perf_counter()
        dist = search_batch(queries, setting, threads)
        qps = len(queries) / (time.perf_counter() - start)
        rows["batch"].append((setting, recall_at_k(None, None, true_dist, dist), qps))
        print(f"  {setting}: single {rows['single'][-1][1]:.4f} {rows['single'][-1][2]:,.0f} QPS, "
              f"batch {rows['batch'][-1][1]:.4f} {rows['batch'][-1][2]:,.0f} QPS", flush=True)
    return rows


def compare(cache: pathlib.Path, leaves: int, num_queries: int) -> None:
    import faiss

    data = np.load(cache / "data.npy", mmap_mode="r")
    queries = np.load(cache / "queries.npy")[:num_queries]
    true_dist = np.load(cache / "truth_distances.npy")[:num_queries]
    threads = annlib.default_num_threads()
    start = time.perf_counter()
    index = annlib.TreeAhIndex(data, "squared_l2", num_leaves=leaves, num_leaves_to_search=30,
                               training_sample_size=250_000, dims_per_block=2, reorder=100, copy=False)
    annlib_s = time.perf_counter() - start
    print(f"annlib tree-AH L={leaves}: build {annlib_s:.0f} s", flush=True)
    start = time.perf_counter()
    factory = f"IVF{leaves},PQ{data.shape[1] // 2}x4fs"
    base = faiss.index_factory(data.shape[1], factory, faiss.METRIC_L2)
    refine = faiss.IndexRefineFlat(base)
    picks = np.sort(np.random.default_rng(0).choice(len(data), min(250_000, len(data)), replace=False))
    sample = np.ascontiguousarray(data[picks])
    refine.train(sample)
    del sample
    for begin in range(0, len(data), 1_000_000):
        refine.add(np.ascontiguousarray(data[begin : begin + 1_000_000]))
    ivf = faiss.extract_index_ivf(base)
    faiss_s = time.perf_counter() - start
    print(f"faiss {factory}+refine: build {faiss_s:.0f} s", flush=True)

    def annlib_one(q, s):
        return index.search(q, K, leaves_to_search=s[0], pre_reorder_num_neighbors=s[1]).distances

    def annlib_batch(qs, s, t):
        return index.search_batched(qs, K, num_threads=t, leaves_to_search=s[0], pre_reorder_num_neighbors=s[1]).distances

    def faiss_set(s, t):
        ivf.nprobe, refine.k_factor = s
        faiss.omp_set_num_threads(t)

    def faiss_one(q, s):
        faiss_set(s, 1)
        return refine.search(q[None], K)[0][0]

    def faiss_batch(qs, s, t):
        faiss_set(s, t)
        return refine.search(qs, K)[0]

    tree = [(t1, t2) for t1 in (20, 30, 40, 60, 80, 100, 160) if t1 <= leaves for t2 in (60, 100, 200)]
    ivf_settings = [(x, kf) for x in (20, 30, 40, 60, 80, 100, 160) if x <= leaves for kf in (6, 10, 20)]
    print("annlib sweep:", flush=True)
    mine = _sweep(annlib_one, annlib_batch, tree, queries, true_dist, threads)
    print("faiss sweep:", flush=True)
    theirs = _sweep(faiss_one, faiss_batch, ivf_settings, queries, true_dist, threads)
    print(f"\nbuild: annlib {annlib_s:.0f} s, faiss {faiss_s:.0f} s\n")
    print("| mode | target | annlib: setting, recall, QPS | faiss: setting, recall, QPS | annlib / faiss |")
    print("|---|---|---|---|---|")
    for mode in ("single", "batch"):
        for target in (0.90, 0.95, 0.99):
            best = []
            for rows in (mine[mode], theirs[mode]):
                reached = [r for r in rows if r[1] >= target]
                best.append(max(reached, key=lambda r: r[2]) if reached else None)
            cells = [f"{b[0]}, {b[1]:.4f}, {b[2]:,.0f}" if b else "not reached" for b in best]
            ratio = f"{best[0][2] / best[1][2]:.2f}x" if all(best) else "—"
            print(f"| {mode} | {target:.2f} | {cells[0]} | {cells[1]} | {ratio} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["make", "truth", "run", "compare"])
    parser.add_argument("--cache", type=pathlib.Path, default=default_cache())
    parser.add_argument("--leaves", type=int, default=6000)
    parser.add_argument("--copy", action="store_true", help="the index owns a copy of the rows in RAM")
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.step == "make":
        make(args.cache)
    elif args.step == "truth":
        truth(args.cache)
    elif args.step == "compare":
        compare(args.cache, args.leaves, args.queries)
    else:
        run(args.cache, args.leaves, args.copy, args.queries)


if __name__ == "__main__":
    main()
