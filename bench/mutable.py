"""Mutable indexes side by side: annlib tree-AH vs ScaNN vs faiss IVF-PQ fast-scan vs hnswlib.

    python bench/mutable.py [--dataset PATH] [--build 40000] [--add 10000] [--delete 10000]
                            [--queries 1000] [--threads 2] [--libs annlib scann faiss hnswlib]
                            [--scenarios standard grow delete-half] [--grow-batch 5000]

On the MiniLM 50k set (cosine; rows normalised, so every library ranks by inner product):
build on the first ``--build`` points, add the next ``--add`` points with user ids, delete
``--delete`` random ids, and report for each library the add and delete rates (points/s, one
call per batch where the library takes batches; hnswlib's ``mark_deleted`` takes one id) and
recall@10 against exact search over the live set at one fixed search setting, after the adds
and after the deletes; annlib also after ``compact()`` and ``rebalance()``, and a fresh
annlib build on the final live set at the same setting. Every library runs in this process on
the same data with ``--threads`` threads. Results: bench/RESULTS.md.

The two harder cases (annlib and ScaNN, the libraries that rebalance):

* ``grow``: build on the first 10% of the set and grow it to 100% by adds of ``--grow-batch``
  points (user ids), then ``compact()`` and ``rebalance()`` (annlib; ScaNN ``rebalance()``),
  against a fresh build on everything;
* ``delete-half``: build on the whole set, delete a random 50% in one call, then compact and
  rebalance, against a fresh build on the surviving half.

Each reports the add or delete rate, recall@10 at the fixed setting against exact search over
the live set, and memory after every step: annlib's index bytes (``stats()["total_bytes"]``, and
in parentheses the spare rows reserved for later adds, ``stats()["spare_bytes"]``, not resident
until an add writes them), ScaNN's serialized size (a proxy: its in-memory size is not exposed).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time

import numpy as np

import annlib

DEFAULT_DATASET = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "debian-minilm-384-angular.hdf5"


def load_hdf5(path):
    """(train, test) of an ann-benchmarks file (bench/common.py, which this imported, is gone)."""
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f["train"], dtype=np.float32), np.asarray(f["test"], dtype=np.float32)

K = 10
LEAVES, LEAVES_TO_SEARCH, REORDER, THRESHOLD = 224, 20, 100, 0.2


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(found, truth)]))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


class AnnlibTree:
    name = "annlib tree-AH"
    setting = f"leaves_to_search={LEAVES_TO_SEARCH}, reorder={REORDER}"

    def __init__(self, threads):
        self.threads = threads

    def build(self, data, ids):
        self.index = annlib.TreeAhIndex(data, "dot", num_leaves=LEAVES, num_leaves_to_search=LEAVES_TO_SEARCH,
                                        anisotropic_quantization_threshold=THRESHOLD, reorder=REORDER,
                                        spherical=True, ids=ids, num_threads=self.threads)

    def add(self, data, ids):
        self.index.add(data, ids)

    def delete(self, ids):
        self.index.delete(ids)

    def search(self, queries):
        return self.index.search_batched(queries, K, num_threads=self.threads).ids


class Scann:
    name = "ScaNN upsert/delete"
    setting = f"leaves_to_search={LEAVES_TO_SEARCH}, reorder={REORDER}"

    def __init__(self, threads):
        self.threads = threads

    def build(self, data, ids):
        import scann

        self.index = (
            scann.scann_ops_pybind.builder(data, K, "dot_product")
            .tree(num_leaves=LEAVES, num_leaves_to_search=LEAVES_TO_SEARCH, training_sample_size=len(data),
                  spherical=True)
            .score_ah(2, anisotropic_quantization_threshold=THRESHOLD)
            .reorder(REORDER)
            .build(docids=[str(i) for i in ids])
        )
        self.index.set_num_threads(self.threads)

    def add(self, data, ids):
        self.index.upsert([str(i) for i in ids], data, batch_size=len(ids))

    def delete(self, ids):
        self.index.delete([str(i) for i in ids])

    def rebalance(self):
        self.index.rebalance()

    def search(self, queries):
        found, _ = self.index.search_batched_parallel(queries, final_num_neighbors=K,
                                                      leaves_to_search=LEAVES_TO_SEARCH,
                                                      pre_reorder_num_neighbors=REORDER)
        return np.array([[int(x) for x in row] for row in found], dtype=np.int64)


class FaissFastScan:
    name = "faiss IVF-PQ fast-scan add_with_ids/remove_ids (no refine)"
    setting = f"nprobe={LEAVES_TO_SEARCH}"

    def __init__(self, threads):
        import faiss

        faiss.omp_set_num_threads(threads)

    def build(self, data, ids):
        import faiss

        self.index = faiss.index_factory(data.shape[1], f"IVF{LEAVES},PQ{data.shape[1] // 2}x4fs",
                                         faiss.METRIC_INNER_PRODUCT)
        self.index.train(data)
        self.index.add_with_ids(data, ids)
        faiss.extract_index_ivf(self.index).nprobe = LEAVES_TO_SEARCH

    def add(self, data, ids):
        self.index.add_with_ids(data, ids)

    def delete(self, ids):
        import faiss

        self.index.remove_ids(faiss.IDSelectorBatch(ids))

    def search(self, queries):
        return self.index.search(queries, K)[1]


class Hnswlib:
    name = "hnswlib M16 add_items/mark_deleted"
    setting = "ef=64"

    def __init__(self, threads):
        self.threads = threads

    def build(self, data, ids):
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=data.shape[1])
        self.index.init_index(max_elements=len(data) * 2, M=16, ef_construction=100)
        self.index.add_items(data, ids, num_threads=self.threads)
        self.index.set_ef(64)

    def add(self, data, ids):
        self.index.add_items(data, ids, num_threads=self.threads)

    def delete(self, ids):
        for i in ids:
            self.index.mark_deleted(int(i))

    def search(self, queries):
        return self.index.knn_query(queries, K, num_threads=self.threads)[0].astype(np.int64)


LIBS = {"annlib": AnnlibTree, "scann": Scann, "faiss": FaissFastScan, "hnswlib": Hnswlib}


def memory_mib(lib) -> str:
    """annlib: index bytes (+ the spare rows reserved for adds, not resident until written);
    ScaNN: its serialized size (a proxy)."""
    if isinstance(lib, AnnlibTree):
        stats = lib.index.stats()
        return f"{stats['total_bytes'] / 2**20:.1f} (+{stats.get('spare_bytes', 0) / 2**20:.1f})"
    with tempfile.TemporaryDirectory() as directory:
        lib.index.serialize(directory)
        return f"{sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)) / 2**20:.1f}"


def after_writes(lib, key, queries, truth, steps, threads):
    """compact / rebalance steps after the writes: (step, seconds, recall, MiB) rows."""
    out = []
    if key == "annlib":
        _, s = timed(lib.index.compact)
        out.append(("compact()", s, recall(lib.search(queries), truth), memory_mib(lib)))
        _, s = timed(lambda: lib.index.rebalance(num_threads=threads))
        out.append(("rebalance()", s, recall(lib.search(queries), truth), memory_mib(lib)))
    elif key == "scann":
        _, s = timed(lib.rebalance)
        out.append(("rebalance()", s, recall(lib.search(queries), truth), memory_mib(lib)))
    return steps + out


def scenario_grow(key, data, ids, queries, truth, threads, batch):
    """Build on the first 10%, add the rest in batches."""
    lib = LIBS[key](threads)
    start = len(data) // 10
    _, build_s = timed(lambda: lib.build(np.ascontiguousarray(data[:start]), ids[:start]))
    steps = [("build on 10%", build_s, None, memory_mib(lib))]
    add_s = 0.0
    for begin in range(start, len(data), batch):
        end = min(len(data), begin + batch)
        _, s = timed(lambda: lib.add(np.ascontiguousarray(data[begin:end]), ids[begin:end]))
        add_s += s
    rate = (len(data) - start) / add_s
    steps.append((f"add 90% ({-(-(len(data) - start) // batch)} calls)", add_s, recall(lib.search(queries), truth),
                  memory_mib(lib)))
    return lib, rate, after_writes(lib, key, queries, truth, steps, threads)


def scenario_delete_half(key, data, ids, queries, truth, threads, dead):
    """Build on everything, delete half in one call."""
    lib = LIBS[key](threads)
    _, build_s = timed(lambda: lib.build(data, ids))
    steps = [("build on 100%", build_s, None, memory_mib(lib))]
    _, s = timed(lambda: lib.delete(ids[dead]))
    rate = len(dead) / s
    steps.append(("delete 50% (1 call)", s, recall(lib.search(queries), truth), memory_mib(lib)))
    return lib, rate, after_writes(lib, key, queries, truth, steps, threads)


def run_hard_cases(args, data, ids, queries, rng, truth_all):
    """The grow and delete-half tables (annlib and ScaNN)."""
    keys = [k for k in args.libs if k in ("annlib", "scann")]
    dead = np.sort(rng.choice(len(data), len(data) // 2, replace=False))
    alive = np.setdiff1d(np.arange(len(data)), dead)
    results = []
    for scenario in [s for s in args.scenarios if s in ("grow", "delete-half")]:
        if scenario == "grow":
            truth, final = truth_all, np.arange(len(data))
        else:
            truth = annlib.BruteForce(data[alive], "dot", ids=ids[alive]).search_batched(
                queries, K, num_threads=args.threads).ids
            final = alive
        print(f"\n{scenario}: {len(data)} points, recall@10 at {AnnlibTree.setting} vs exact over the live set; "
              f"{args.threads} threads")
        print("| library | step | seconds | recall@10 | MiB |")
        print("|---|---|---:|---:|---:|")
        rates = {}
        for key in keys:
            if scenario == "grow":
                lib, rate, steps = scenario_grow(key, data, ids, queries, truth, args.threads, args.grow_batch)
            else:
                lib, rate, steps = scenario_delete_half(key, data, ids, queries, truth, args.threads, dead)
            del lib
            rates[key] = rate
            if key == "annlib":
                fresh = AnnlibTree(args.threads)
                _, s = timed(lambda: fresh.build(np.ascontiguousarray(data[final]), ids[final]))
                steps.append(("fresh build of the live set", s, recall(fresh.search(queries), truth), memory_mib(fresh)))
                del fresh
            for step, seconds, r, mib in steps:
                print(f"| {LIBS[key].name} | {step} | {seconds:.2f} | {'—' if r is None else f'{r:.4f}'} | {mib} |")
            results.append({"scenario": scenario, "library": LIBS[key].name, "rate_per_s": rate,
                            "steps": [dict(zip(("step", "seconds", "recall", "mib"), row)) for row in steps]})
        what = "add" if scenario == "grow" else "delete"
        print(" ".join(f"{LIBS[k].name}: {what} {v:,.0f} points/s." for k, v in rates.items()))
        if len(rates) == 2:
            print(f"annlib / ScaNN {what} rate: {rates['annlib'] / rates['scann']:.2f}x")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(DEFAULT_DATASET))
    ap.add_argument("--build", type=int, default=40_000)
    ap.add_argument("--add", type=int, default=10_000)
    ap.add_argument("--delete", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--libs", nargs="+", default=list(LIBS), choices=list(LIBS))
    ap.add_argument("--scenarios", nargs="+", default=["standard", "grow", "delete-half"],
                    choices=["standard", "grow", "delete-half"])
    ap.add_argument("--grow-batch", type=int, default=5000, help="points per add call in the grow case")
    ap.add_argument("--json", default=None, help="Also write the results here.")
    args = ap.parse_args()

    train, test, *_ = load_hdf5(args.dataset)
    data = train[: args.build + args.add]
    data = data / np.linalg.norm(data, axis=1, keepdims=True)
    queries = np.ascontiguousarray(test[: args.queries] / np.linalg.norm(test[: args.queries], axis=1, keepdims=True))
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(len(data), dtype=np.int64) * 3 + 7)  # user ids: not rows, not contiguous
    first, rest = slice(0, args.build), slice(args.build, len(data))
    dead = rng.choice(len(data), args.delete, replace=False)
    alive = np.setdiff1d(np.arange(len(data)), dead)
    truth_all = annlib.BruteForce(data, "dot", ids=ids).search_batched(queries, K, num_threads=args.threads).ids
    truth_live = annlib.BruteForce(data[alive], "dot", ids=ids[alive]).search_batched(
        queries, K, num_threads=args.threads).ids

    rows = []
    for key in args.libs if "standard" in args.scenarios else []:
        lib = LIBS[key](args.threads)
        _, build_s = timed(lambda: lib.build(np.ascontiguousarray(data[first]), ids[first]))
        _, add_s = timed(lambda: lib.add(np.ascontiguousarray(data[rest]), ids[rest]))
        r_add = recall(lib.search(queries), truth_all)
        _, del_s = timed(lambda: lib.delete(ids[dead]))
        found = lib.search(queries)
        r_del = recall(found, truth_live)
        row = {"library": lib.name, "setting": lib.setting, "build_s": build_s,
               "add_per_s": args.add / add_s, "delete_per_s": args.delete / del_s,
               "recall_after_add": r_add, "recall_after_delete": r_del,
               "deleted_returned": int(np.isin(found, ids[dead]).sum())}
        if key == "annlib":
            _, row["compact_s"] = timed(lib.index.compact)
            row["recall_after_compact"] = recall(lib.search(queries), truth_live)
            row["health_before_rebalance"] = {k: v for k, v in lib.index.health().items() if k != "advice"}
            _, row["rebalance_s"] = timed(lambda: lib.index.rebalance(num_threads=args.threads))
            row["recall_after_rebalance"] = recall(lib.search(queries), truth_live)
            fresh = AnnlibTree(args.threads)
            _, row["fresh_build_s"] = timed(lambda: fresh.build(np.ascontiguousarray(data[alive]), ids[alive]))
            row["recall_fresh_build"] = recall(fresh.search(queries), truth_live)
            del fresh
        if key == "scann":
            _, row["rebalance_s"] = timed(lib.rebalance)
            row["recall_after_rebalance"] = recall(lib.search(queries), truth_live)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del lib

    if rows:
        print()
        print(f"build {args.build}, add {args.add}, delete {args.delete} random; {args.queries} queries, "
              f"{args.threads} threads; recall@{K} vs exact over the live set")
        print("| library | setting | add (points/s) | delete (points/s) | recall after add / after delete "
              "| after compact / rebalance | fresh build |")
        print("|---|---|---:|---:|---|---|---|")
    for r in rows:
        extra = ""
        if "recall_after_compact" in r:
            extra = f"{r['recall_after_compact']:.4f} / {r['recall_after_rebalance']:.4f} ({r['rebalance_s']:.1f} s)"
        elif "recall_after_rebalance" in r:
            extra = f"— / {r['recall_after_rebalance']:.4f} ({r['rebalance_s']:.1f} s)"
        fresh = f"{r['recall_fresh_build']:.4f}" if "recall_fresh_build" in r else "—"
        print(f"| {r['library']} | {r['setting']} | {r['add_per_s']:,.0f} | {r['delete_per_s']:,.0f} | "
              f"{r['recall_after_add']:.4f} / {r['recall_after_delete']:.4f} | {extra or '—'} | {fresh} |")
    by = {r["library"]: r for r in rows}
    if AnnlibTree.name in by and Scann.name in by:
        a, s = by[AnnlibTree.name], by[Scann.name]
        print(f"\nannlib / ScaNN: add rate {a['add_per_s'] / s['add_per_s']:.2f}x, "
              f"delete rate {a['delete_per_s'] / s['delete_per_s']:.2f}x")
    hard = run_hard_cases(args, data, ids, queries, rng, truth_all)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"standard": rows, "hard": hard}, f, indent=1)


if __name__ == "__main__":
    main()
