"""Delete rate of the standard case: annlib without pruning, annlib, optionally an older annlib core, and ScaNN, in one run.

    python bench/mutable_delete.py [--dataset PATH] [--runs 5] [--threads 2] [--before-core PATH]

The standard case of bench/mutable.py: build on the first 40k of MiniLM 50k (rows normalised,
inner product, 224 leaves), add the last 10k with user ids in one call, then delete 10k random ids
in one call; only the delete is timed (wall clock). Contenders, in alternation within each run
(median over ``--runs``):

* ``annlib mask only``: the delete with its prune replaced by the identity (``tree_ah_mutation.pruned``),
  i.e. a liveness-mask flip, as deletes were before issue 13's second session: the ceiling;
* ``annlib before``: only with ``--before-core``, a ``_core`` extension built from an earlier commit
  (e.g. the merge of the second session) whose ``leaf_prune`` the delete calls instead, and the
  ``IdMap.killed`` of that commit (a full re-sort of the live ids);
* ``annlib``: the current delete (mask flip, then ``leaf_prune`` of the partitions it crowds);
* ``ScaNN`` ``delete`` (bench/mutable.py's adapter), rebuilt and grown the same way each run.

Each annlib contender deletes from its own deep copy of one index; ScaNN from an index built anew
per run. Reported: median points/s and the ratios to ScaNN, per run and then the median.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import statistics
import time

import numpy as np

from annlib.index import tree_ah_mutation
from annlib.index.ids import IdMap
from mutable import DEFAULT_DATASET, AnnlibTree, Scann, load_hdf5


@contextlib.contextmanager
def mask_only():
    pruned = tree_ah_mutation.pruned
    tree_ah_mutation.pruned = lambda arrays, *args, **kwargs: arrays
    try:
        yield
    finally:
        tree_ah_mutation.pruned = pruned


def load_core(path: str):
    """The ``_core`` extension at ``path`` as a module of its own (not annlib's)."""
    spec = importlib.util.spec_from_file_location("_core", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def before(core):
    def killed(self, rows):  # IdMap.killed of the second session: the live ids sorted anew
        live = np.ones(self.rows, dtype=np.uint8) if self.live is None else self.live.copy()
        live[rows] = 0
        return IdMap(self.row_ids, live, self.next_id)

    saved = tree_ah_mutation._core, IdMap.killed
    tree_ah_mutation._core, IdMap.killed = core, killed
    try:
        yield
    finally:
        tree_ah_mutation._core, IdMap.killed = saved


def delete_rate(lib, gone) -> float:
    start = time.perf_counter()
    lib.delete(gone)
    return len(gone) / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default=str(DEFAULT_DATASET))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", type=int, default=40_000)
    ap.add_argument("--add", type=int, default=10_000)
    ap.add_argument("--delete", type=int, default=10_000)
    ap.add_argument("--before-core", default=None, help="a _core .so built from an earlier commit")
    args = ap.parse_args()
    train, _ = load_hdf5(args.dataset)
    data = train[: args.build + args.add]
    data = np.ascontiguousarray(data / np.linalg.norm(data, axis=1, keepdims=True), dtype=np.float32)
    rng = np.random.default_rng(0)  # the ids and deletes of bench/mutable.py
    ids = rng.permutation(np.arange(len(data), dtype=np.int64) * 3 + 7)
    gone = ids[rng.choice(len(data), args.delete, replace=False)]
    first, rest = slice(0, args.build), slice(args.build, len(data))

    def grown(cls):
        lib = cls(args.threads)
        lib.build(np.ascontiguousarray(data[first]), ids[first])
        lib.add(np.ascontiguousarray(data[rest]), ids[rest])
        return lib

    base = grown(AnnlibTree)
    contenders = {"annlib mask only": mask_only}
    if args.before_core:
        core = load_core(args.before_core)
        contenders["annlib before"] = lambda: before(core)
    contenders["annlib"] = contextlib.nullcontext
    rates = {name: [] for name in [*contenders, "ScaNN"]}
    dead_entries = {}
    for _ in range(args.runs):
        for name, setting in contenders.items():
            lib = copy.copy(base)
            lib.index = copy.deepcopy(base.index)
            with setting():
                rates[name].append(delete_rate(lib, gone))
            dead_entries[name] = lib.index.health()["dead_entries"]
            del lib
        lib = grown(Scann)
        rates["ScaNN"].append(delete_rate(lib, gone))
        del lib
    print(f"\nDelete {args.delete} of {len(data)} (built on {args.build}, grown by {args.add}), "
          f"{args.threads} threads, {args.runs} runs\n")
    print("| contender | delete (points/s, median) | runs | vs ScaNN (median of per-run ratios) | dead entries after |")
    print("|---|---:|---|---:|---:|")
    for name, values in rates.items():
        ratio = statistics.median(a / s for a, s in zip(values, rates["ScaNN"]))
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):,.0f} | {runs} | {ratio:.2f}x | {dead_entries.get(name, '')} |")
    for other in [n for n in contenders if n != "annlib"]:
        ratio = statistics.median(a / b for a, b in zip(rates["annlib"], rates[other]))
        print(f"annlib / {other}: {ratio:.2f}x (median of per-run ratios)")


if __name__ == "__main__":
    main()
