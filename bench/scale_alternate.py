"""annlib vs its peers at fixed settings on the 1M SIFT set, timed in alternation (issue 15).

    python bench/scale_alternate.py [--queries 300] [--rounds 7] [--mode single batch]
                                    [--peers faiss-ivfpqfs hnswlib] [--peer-cache DIR]

``scale.py`` sweeps each contender in turn, so on a shared machine a load spike during one
contender's sweep shows up as a ratio. This script takes one setting per contender and recall
target (defaults: the settings at which each reached 0.90 / 0.95 / 0.99 in scale.py's runs),
builds every contender once, and then times them round-robin: each round runs every
contender's full query pass once, in rotating order, and the reported QPS is the median over
rounds, with the median of the per-round ratios to annlib beside it. The recall of each
setting is measured first, so a row shows whether the setting reaches its target.

Contender classes and the recall definition are scale.py's.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale  # noqa: E402

# (target recall, {contender: settings}): the cheapest settings reaching each target on the first
# 500 queries (annlib leaves/reorder, faiss nprobe/k_factor, ScaNN leaves/reorder, HNSW ef), from
# recall sweeps on those queries (bench/RESULTS.md, "Quiet machine, fourth session"): annlib
# leaves 18-100 x reorder 30-150, faiss IVF-PQfs nprobe 16-120 x k_factor 3-20, ScaNN leaves
# 30-200 x reorder 40-400 (its builds vary, so its settings keep a little slack), hnswlib and
# faiss HNSW32 ef 12-256. annlib-int8 (int8 reorder rows, exact for SIFT's integer coordinates)
# is annlib's index at a quarter of the reorder memory.
DEFAULT_POINTS = {
    0.90: {"annlib": (25, 40), "annlib-int8": (25, 40), "faiss-ivfpqfs": (24, 6), "scann": (40, 60), "hnswlib": (40,),
           "faiss-hnsw": (24,)},
    0.95: {"annlib": (40, 80), "annlib-int8": (40, 80), "faiss-ivfpqfs": (38, 10), "scann": (60, 150), "hnswlib": (60,),
           "faiss-hnsw": (38,)},
    0.99: {"annlib": (100, 100), "annlib-int8": (100, 100), "faiss-ivfpqfs": (100, 15), "scann": (140, 200),
           "hnswlib": (144,), "faiss-hnsw": (88,)},
}


def params_of(key, values):
    if key in ("annlib", "annlib-int8", "scann"):
        return {"leaves": values[0], "reorder": values[1]}
    if key == "faiss-ivfpqfs":
        return {"nprobe": values[0], "k_factor": values[1]}
    return {"ef": values[0]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default=str(scale.DEFAULT_DATASET))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--mode", nargs="+", default=["single", "batch"], choices=["single", "batch"])
    ap.add_argument("--peers", nargs="+", default=["faiss-ivfpqfs"],
                    choices=["annlib-int8", "faiss-ivfpqfs", "scann", "hnswlib", "faiss-hnsw"])
    ap.add_argument("--peer-cache", default=None, help="scale.py's cache of built graph indexes")
    ap.add_argument("--leaves", type=int, default=2000)
    ap.add_argument("--gap", type=float, default=0.2, help="idle seconds before each timed pass")
    ap.add_argument("--limit", type=int, default=None, help="first LIMIT points only: a dry run (recall is wrong)")
    args = ap.parse_args(argv)

    import h5py

    with h5py.File(args.dataset, "r") as f:
        data = np.ascontiguousarray(f["train"][: args.limit], dtype=np.float32)
        queries = np.ascontiguousarray(f["test"][: args.queries], dtype=np.float32)
        kth = np.asarray(f["distances"][: args.queries, scale.K - 1], dtype=np.float32)
    threads = os.cpu_count() or 1
    makers = {
        "annlib": lambda: scale.Annlib(data, args.leaves),
        "annlib-int8": lambda: scale.Annlib(data, args.leaves, "int8"),
        "faiss-ivfpqfs": lambda: scale.FaissIvfPqFs(data, args.leaves),
        "scann": lambda: scale.Scann(data, args.leaves),
        "hnswlib": lambda: scale.Hnswlib(data, threads, cache=args.peer_cache),
        "faiss-hnsw": lambda: scale.FaissHnsw(data, cache=args.peer_cache),
    }
    keys = ["annlib"] + args.peers
    algos = {}
    for key in keys:
        algo = makers[key]()
        start = time.perf_counter()
        algo.build()
        print(f"built {algo.name}: {time.perf_counter() - start:.1f} s", flush=True)
        algos[key] = algo

    load = os.getloadavg()
    lines = [f"`python bench/scale_alternate.py {shlex.join(sys.argv[1:] if argv is None else argv)}`", "",
             f"{len(data):,} x {data.shape[1]}, {len(queries)} queries, {args.rounds} rounds in rotating order; "
             f"load average at start {load[0]:.1f}.", ""]
    for mode in args.mode:
        for key in keys:
            algos[key].prepare(mode, threads)
        lines += [f"**{mode}**:", "", "| target | contender | setting | recall | QPS (median) | annlib's lead (median of rounds) |",
                  "|---|---|---|---|---|---|"]
        for target, points in DEFAULT_POINTS.items():
            chosen = {key: params_of(key, points[key]) for key in keys}
            recall, seconds = {}, {key: [] for key in keys}
            for key in keys:  # recall pass, also the warm-up
                algo, p = algos[key], chosen[key]
                if mode == "single":
                    ids = np.stack([np.asarray(algo.search_one(q, p)) for q in queries])
                else:
                    ids = np.asarray(algo.search_batch(queries, p, threads))
                recall[key] = scale.recall_of(ids, data, queries, kth)
            for r in range(args.rounds):
                order = keys[r % len(keys):] + keys[: r % len(keys)]
                for key in order:
                    algo, p = algos[key], chosen[key]
                    # Another library's idle workers may still spin after its pass (OpenMP's
                    # default wait policy): let them settle, so no contender pays for the one before.
                    time.sleep(args.gap)
                    start = time.perf_counter()
                    if mode == "single":
                        for q in queries:
                            algo.search_one(q, p)
                    else:
                        algo.search_batch(queries, p, threads)
                    seconds[key].append(time.perf_counter() - start)
            base = np.asarray(seconds["annlib"])
            for key in keys:
                mine = np.asarray(seconds[key])
                qps = len(queries) / np.median(mine)
                ratio = np.median(mine / base)  # annlib's QPS over this contender's, per round
                setting = ",".join(str(v) for v in chosen[key].values())
                lines.append(f"| {target:.2f} | {algos[key].name} | {setting} | {recall[key]:.4f} | {qps:,.0f} | "
                             f"{'—' if key == 'annlib' else f'{ratio:.2f}x'} |")
                print(lines[-1], flush=True)
        lines.append("")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
