"""Add rate of the grow case, annlib before/after the add-path changes and ScaNN, in one run.

    python bench/mutable_add.py [--dataset PATH] [--runs 5] [--threads 2] [--grow-batch 5000]

The grow case of bench/mutable.py: build on the first 10% of MiniLM 50k (rows normalised, inner
product, 224 leaves), then add the other 90% in calls of ``--grow-batch`` points with user ids.
Contenders, timed in alternation within each run (median over ``--runs``):

* ``annlib before``: the add path as it was before the second session of issue 13, emulated in
  this process: row buffers grown by half their rows (``tree_ah_mutation.GROWTH = 0.5``) and the
  exact center distances of every assigned point computed (``assign_to_centers`` with
  ``with_sq_dist=True``), which the add then discards;
* ``annlib``: the current add path;
* ``ScaNN`` ``upsert`` (bench/mutable.py's adapter, one call per batch).

Each index is built once per run outside the timing; only the adds are timed (wall clock).
Reported: median points/s and the ratios to ScaNN, taken per run and then the median.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np

from annlib import _core
from annlib.index import tree_ah_mutation
from mutable import DEFAULT_DATASET, AnnlibTree, Scann, load_hdf5


class _Before:
    """The two add-path settings this session changed, restored on exit."""

    def __enter__(self):
        self.growth, self.assign = tree_ah_mutation.GROWTH, _core.assign_to_centers
        assign = self.assign
        tree_ah_mutation.GROWTH = 0.5
        _core.assign_to_centers = lambda data, centers, threads, with_sq_dist=True: assign(data, centers, threads, True)

    def __exit__(self, *exc):
        tree_ah_mutation.GROWTH, _core.assign_to_centers = self.growth, self.assign


def grow_seconds(lib, data, ids, start, batch):
    seconds = 0.0
    for begin in range(start, len(data), batch):
        end = min(len(data), begin + batch)
        chunk, chunk_ids = np.ascontiguousarray(data[begin:end]), ids[begin:end]
        t = time.perf_counter()
        lib.add(chunk, chunk_ids)
        seconds += time.perf_counter() - t
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default=str(DEFAULT_DATASET))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grow-batch", type=int, default=5000)
    args = ap.parse_args()
    train, _ = load_hdf5(args.dataset)
    data = np.ascontiguousarray(train / np.linalg.norm(train, axis=1, keepdims=True), dtype=np.float32)
    ids = np.random.default_rng(0).permutation(np.arange(len(data), dtype=np.int64) * 3 + 7)
    start = len(data) // 10
    added = len(data) - start

    base = AnnlibTree(args.threads)
    base.build(np.ascontiguousarray(data[:start]), ids[:start])
    rates = {"annlib before": [], "annlib": [], "ScaNN": []}
    for _ in range(args.runs):
        for name in rates:
            if name == "ScaNN":
                lib = Scann(args.threads)
                lib.build(np.ascontiguousarray(data[:start]), ids[:start])
                rates[name].append(added / grow_seconds(lib, data, ids, start, args.grow_batch))
                continue
            lib = copy.copy(base)
            lib.index = copy.deepcopy(base.index)
            if name == "annlib before":
                with _Before():
                    rates[name].append(added / grow_seconds(lib, data, ids, start, args.grow_batch))
            else:
                rates[name].append(added / grow_seconds(lib, data, ids, start, args.grow_batch))
    print(f"\nGrow {start} -> {len(data)} by adds of {args.grow_batch}, {args.threads} threads, {args.runs} runs\n")
    print("| contender | add (points/s, median) | runs | vs ScaNN (median of per-run ratios) |\n|---|---:|---|---:|")
    for name, values in rates.items():
        ratio = statistics.median(a / s for a, s in zip(values, rates["ScaNN"]))
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):,.0f} | {runs} | {ratio:.2f}x |")
    after_before = statistics.median(a / b for a, b in zip(rates["annlib"], rates["annlib before"]))
    print(f"\nannlib after / before: {after_before:.2f}x (median of per-run ratios)")


if __name__ == "__main__":
    main()
