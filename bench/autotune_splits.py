"""How often the autotuner's choice reaches its target on unseen queries, over many random splits.

``bench/autotune.py`` measures one split of the test queries (even rows tune, odd rows measure),
so each of its cases is one draw of two sampling errors: the tuning half's (the tuner aims at its
recall there) and the measuring half's. This bench draws ``--splits`` random splits per dataset;
for each, the tuner is given ``--tuning-queries`` random test queries (half A) and its choice is
measured on as many others (half B, the bench's unseen queries) and on every query not tuned on
(the "population": the setting's recall on the query distribution, up to a far smaller error).
For each target and ``--safety`` (standard errors of margin), it reports in how many splits the
choice reached target - 0.005 on half B and on the population, the mean shortfall of the
population recall, and the predicted cost against the first safety's (the price of the margin).
One cost model is timed per split and every tuning of the split reuses it, so no choice there
is decided by the clock and the costs compare on one model.

    python bench/autotune_splits.py [--datasets minilm sift hard] [--sift-n 200000] [--splits 12]
        [--safety 1 2] [--targets 0.8 0.9 0.95 0.99]

Datasets and ground truth as in ``bench/autotune.py`` (its ``load``), with every test query: 10,000
for SIFT and the hard set. MiniLM has 1,000: its splits are complementary halves, so its
population is half B.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from autotune import K, load

import annlib
import annlib.autotune as at
from annlib.bench.report import describe_machine

TOLERANCE = 0.005  # issue 16 counts a target as met at target - 0.005
ALL_QUERIES = 10_000  # every test query of MiniLM (1,000) and SIFT; the hard set is drawn with as many


def run_dataset(name, args):
    train, test, truth, metric, extra, _ = load(name, args.sift_n, ALL_QUERIES)
    params = dict(at.structural_defaults(len(train), train.shape[1], metric, K), **extra)
    index = annlib.TreeAhIndex(train, metric, **params)
    m = args.tuning_queries
    if len(test) < 2 * m:
        raise SystemExit(f"{name}: {len(test)} test queries, fewer than two halves of {m}")
    print(f"\n## {name}: {len(train):,} x {train.shape[1]}, {len(test):,} test queries, "
          f"num_leaves={index.layout.num_leaves}; {args.splits} splits of {m} + {m}\n", flush=True)
    results = {}  # (target, safety) -> list of (recall B, population recall, cost / first safety's)
    for split in range(args.splits):
        order = np.random.default_rng(1000 + split).permutation(len(test))
        half_a, half_b, population = order[:m], order[m : 2 * m], order[m:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", at.AutotuneWarning)
            model = index.autotune(args.targets[0], queries=test[half_a], set_default=False).cost_model
        for target in args.targets:
            first_cost = None
            for safety in args.safety:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", at.AutotuneWarning)
                    tuning = index.autotune(target, queries=test[half_a], set_default=False, safety=safety,
                                            cost_model=model)
                first_cost = tuning.predicted_cost if first_cost is None else first_cost

                def recall(rows, tuning=tuning):
                    found = index.search_batched(test[rows], K, num_threads=args.threads, **tuning.params).ids
                    return annlib.id_recall(found, truth[rows], K)

                results.setdefault((target, safety), []).append(
                    (recall(half_b), recall(population), tuning.predicted_cost / first_cost))
        print(f"split {split} done", flush=True)
    rows = []
    for (target, safety), found in sorted(results.items()):
        on_b = sum(b >= target - TOLERANCE for b, _, _ in found)
        on_pop = sum(p >= target - TOLERANCE for _, p, _ in found)
        shortfall = statistics.mean(p - target for _, p, _ in found)
        lowest = min(p for _, p, _ in found)
        cost = statistics.median(c for _, _, c in found)
        rows.append(f"| {name} | {target:.2f} | {safety:g} | {on_b}/{len(found)} | {on_pop}/{len(found)} "
                    f"| {shortfall:+.4f} | {lowest:.4f} | {cost:.3f} |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["minilm", "sift", "hard"])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.80, 0.90, 0.95, 0.99])
    parser.add_argument("--safety", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--splits", type=int, default=12)
    parser.add_argument("--tuning-queries", type=int, default=500, help="queries in each half")
    parser.add_argument("--sift-n", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=2, help="threads of the recall measurements")
    args = parser.parse_args(argv)
    print(f"# autotune splits bench, {describe_machine()}")
    rows = []
    for name in args.datasets:
        rows += run_dataset(name, args)
    print("\n| dataset | target | safety | half B >= target - 0.005 | population >= target - 0.005 "
          "| mean population recall - target | lowest population recall | predicted cost / safety "
          f"{args.safety[0]:g}'s (median) |")
    print("|---" * 8 + "|")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
