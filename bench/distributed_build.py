"""Sharded builds from an in-memory array, from data files and from a ``ray.data.Dataset``:
build time and the driver's peak RSS, at several shard counts.

    python bench/distributed_build.py --subset 200000 --files 4 --shards 1 2 4 --repeats 2

The subset of SIFT is first written once to ``--files`` ``.npy`` files in a scratch folder
(not timed). Each case then runs in a fresh child process (so its peak RSS is its own):
``ray.init``, then the build alone is timed. The array case loads the files into the driver
first (as a user with an array would have it); the file case passes the paths; the Dataset
case passes ``ray.data.read_numpy(paths).materialize()`` (materialised before the timer: Ray
tasks read the files into the object store). "driver peak RSS" is the child's ``VmHWM``;
"base" its RSS just before the build (imports, Ray client, and the array for the array case).
Cases alternate within each repeat; times are medians.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SIFT = REPO_ROOT.parent / "shared" / "datasets" / "sift-debian-textures-1m-128-euclidean.hdf5"


def _rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(source: str, shards: int, files: list[str], cpus: int, shard_by: str) -> dict:
    import ray

    from annlib.distributed import ShardedIndex

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    if source == "array":
        data = np.concatenate([np.load(p) for p in files])
    elif source == "files":
        data = files
    else:
        data = ray.data.read_numpy(files, override_num_blocks=max(shards, len(files))).materialize()
    n = sum(np.load(p, mmap_mode="r").shape[0] for p in files)
    num_leaves = int(round(np.sqrt(n)))
    base = _rss_mib()
    start = time.perf_counter()
    index = ShardedIndex.build(data, shards, "squared_l2", cpus_per_actor=cpus / shards,
                               num_threads=max(1, cpus // shards), num_leaves=num_leaves, reorder=100,
                               shard_by=shard_by, **({"column": "data"} if source == "dataset" else {}))
    seconds = time.perf_counter() - start
    assert index.n == n, (index.n, n)
    # VmHWM, not ru_maxrss: the latter carries over the parent's peak through fork and exec.
    peak = _rss_mib("VmHWM")
    index.close()
    ray.shutdown()
    return {"source": source, "shards": shards, "build_s": seconds, "base_mib": base, "peak_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(SIFT))
    ap.add_argument("--subset", type=int, default=200_000, help="first N rows (0 = all)")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--sources", nargs="+", default=["array", "files", "dataset"])
    ap.add_argument("--shard-by", default="rows", choices=["rows", "partition"])
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--paths", nargs="*", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.paths, args.cpus, args.shard_by)))
        return

    import annlib

    with tempfile.TemporaryDirectory(prefix="annlib-build-bench-") as tmp:
        train = annlib.load_dataset(args.dataset).train
        x = train[: args.subset] if args.subset else train
        paths = []
        for i, rows in enumerate(np.array_split(np.arange(len(x)), args.files)):
            paths.append(f"{tmp}/part{i}.npy")
            np.save(paths[-1], np.ascontiguousarray(x[rows[0] : rows[-1] + 1], dtype=np.float32))
        n = len(x)
        del train, x
        results: dict = {}
        for _ in range(args.repeats):
            for shards in args.shards:
                for source in args.sources:
                    out = subprocess.run([sys.executable, __file__, "--one", source, str(shards), "--cpus",
                                          str(args.cpus), "--shard-by", args.shard_by, "--paths", *paths],
                                         capture_output=True, text=True, check=True)
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    results.setdefault((shards, source), []).append(row)
                    print(json.dumps(row), flush=True)
    print(f"\nn = {n}, {args.files} files, shard_by={args.shard_by}, medians of {args.repeats}\n")
    print("| shards | input | build (s) | x array | driver base RSS (MiB) | driver peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for shards in args.shards:
        ref = statistics.median(r["build_s"] for r in results[(shards, "array")]) if "array" in args.sources else None
        for source in args.sources:
            rows = results[(shards, source)]
            t = statistics.median(r["build_s"] for r in rows)
            ratio = f"{t / ref:.2f}x" if ref else "-"
            print(f"| {shards} | {source} | {t:.1f} | {ratio} | {statistics.median(r['base_mib'] for r in rows):,.0f} "
                  f"| {max(r['peak_mib'] for r in rows):,.0f} |")


if __name__ == "__main__":
    main()
