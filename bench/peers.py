"""annlib vs scann vs faiss vs hnswlib side by side: `annlib bench` with build grids, both modes per build.

    python bench/peers.py [--dataset NAME|PATH | --synthetic NxD] [--mode {single,batch,both}]
                          [--algorithms annlib annlib-soar scann faiss-ivfpq faiss-hnsw hnswlib jax-bruteforce]
                          [--runs 3] [--single-queries 500] [--queries N] [--targets 0.90 0.95]
                          [--annlib-leaves L [..]] [--annlib-threshold T [..]] [--soar-lambda 1.5 [..]]
                          [--nearest-spill] [--scann-leaves L [..]] [--scann-threshold T [..]]
                          [--scann-soar-lambda 1.5 [..]] [--faiss-nlist N [..]] [--faiss-hnsw-m M [..]]
                          [--hnswlib-m M [..]] [--training-sample-size N] [--out bench/out]

A thin script over :mod:`annlib.bench` (the runner `annlib bench` uses): the same algorithm
names, sweep grid (annlib.bench.grid) and timing rule (annlib.bench.timing: one untimed pass
for recall and warm-up, then the median of --runs timed passes). What it adds: build grids
(every build flag takes one or more values; each combination is its own row), several builds per
family (--soar-lambda, --nearest-spill and --scann-soar-lambda add SOAR rows), a timed subset
in single mode (--single-queries; recall is always over every query), synthetic data, and
both modes from one build. Unset build flags take the harness's defaults (partitions ~ sqrt(n)).

Writes ``<out>/<dataset>-<mode>-k<k>.{csv,md,png}`` per mode and prints the tables: the fastest
point at each recall target (no interpolation), its ratio to the best plain annlib build, build
time and index size.
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import sys

from annlib import bench
from annlib.bench.adapters import ALGORITHMS
from annlib.bench.synthetic import clustered_angular

DEFAULT_DATASET = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "debian-minilm-384-angular.hdf5"
OUT_DIR = pathlib.Path(__file__).resolve().parent / "out"
DEFAULT_ALGORITHMS = ["annlib", "scann", "faiss-ivfpq", "faiss-hnsw", "hnswlib"]


def _given(**params) -> dict:
    return {key: value for key, value in params.items() if value is not None}


def _grid(leaves, thresholds, sample) -> list[dict]:
    return [
        _given(num_leaves=L, threshold=T, training_sample_size=sample)
        for L in (leaves or [None])
        for T in (thresholds or [None])
    ]


def builds_from(args) -> dict[str, list[dict]]:
    """Build-parameter dicts per family, from the build flags (the Cartesian product of their values)."""
    annlib_trees = _grid(args.annlib_leaves, args.annlib_threshold, args.training_sample_size)
    scann_trees = _grid(args.scann_leaves or args.annlib_leaves, args.scann_threshold, args.training_sample_size)
    soar = [{**t, "soar_lambda": lam} for t in annlib_trees for lam in (args.soar_lambda or [1.0])]
    if args.nearest_spill:
        soar += [{**t, "soar_lambda": 1.0, "spill": "nearest"} for t in annlib_trees]
    return {
        "annlib": annlib_trees,
        "annlib-soar": soar,
        "scann": [_given(**t, soar_lambda=lam) for t in scann_trees for lam in [None, *(args.scann_soar_lambda or [])]],
        "faiss-ivfpq": [_given(nlist=x) for x in (args.faiss_nlist or [None])],
        "faiss-hnsw": [_given(m=m, ef_construction=args.faiss_hnsw_efc) for m in (args.faiss_hnsw_m or [None])],
        "hnswlib": [_given(m=m, ef_construction=args.hnswlib_efc) for m in (args.hnswlib_m or [None])],
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1],
    )
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--dataset", default=str(DEFAULT_DATASET), help="registry name or ann-benchmarks file")
    data.add_argument("--synthetic", metavar="NxD", help="clustered synthetic unit vectors, e.g. 1000000x128")
    parser.add_argument("--mode", choices=["single", "batch", "both"], default="both")
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=DEFAULT_ALGORITHMS)
    parser.add_argument("-k", "--k", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="timed passes per point; the median counts")
    parser.add_argument("--single-queries", type=int, default=500, help="queries timed in single mode")
    parser.add_argument("--queries", type=int, help="use only the first N queries (quick runs)")
    parser.add_argument("--synthetic-queries", type=int, default=1000, help="queries of --synthetic data")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.90, 0.95], help="recall levels of the tables")
    parser.add_argument("--training-sample-size", type=int, help="tree k-means sample (default: all points)")
    parser.add_argument("--annlib-leaves", type=int, nargs="+")
    parser.add_argument("--annlib-threshold", type=float, nargs="+")
    parser.add_argument("--soar-lambda", type=float, nargs="+", help="SOAR lambdas of the annlib-soar rows (1.0)")
    parser.add_argument("--nearest-spill", action="store_true", help="add an annlib-soar row spilling to the nearest")
    parser.add_argument("--scann-leaves", type=int, nargs="+", help="default: the --annlib-leaves values")
    parser.add_argument("--scann-threshold", type=float, nargs="+")
    parser.add_argument("--scann-soar-lambda", type=float, nargs="+", help="add scann rows with SOAR")
    parser.add_argument("--faiss-nlist", type=int, nargs="+")
    parser.add_argument("--faiss-hnsw-m", type=int, nargs="+")
    parser.add_argument("--faiss-hnsw-efc", type=int, help="efConstruction (faiss's default 40)")
    parser.add_argument("--hnswlib-m", type=int, nargs="+")
    parser.add_argument("--hnswlib-efc", type=int, help="efConstruction (200)")
    parser.add_argument("--out", default=str(OUT_DIR))
    args = parser.parse_args(argv)
    if (args.soar_lambda or args.nearest_spill) and "annlib-soar" not in args.algorithms:
        args.algorithms = [*args.algorithms, "annlib-soar"]
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.synthetic:
        n, dim = (int(v) for v in args.synthetic.lower().split("x"))
        dataset = clustered_angular(n, dim, num_queries=args.synthetic_queries)
    else:
        dataset = args.dataset
    modes = bench.MODES if args.mode == "both" else (args.mode,)
    command = shlex.join(["python", "bench/peers.py", *argv])
    print(f"command: {command}", flush=True)
    results, files = bench.benchmark_modes(
        dataset,
        args.algorithms,
        modes,
        k=args.k,
        out=args.out,
        runs=args.runs,
        max_queries=args.queries,
        command=command,
        builds=builds_from(args),
        single_queries=args.single_queries,
        targets=tuple(args.targets),
    )
    for mode in modes:
        print()
        print(pathlib.Path(files[mode]["table"]).read_text(), end="")
    print(f"\nwrote {', '.join(path for paths in files.values() for path in paths.values())}"
          f" in {next(iter(results.values())).seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
