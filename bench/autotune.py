"""The autotuner against an exhaustive grid over the same search parameters (issue 6).

On the shared debian-minilm-384-angular dataset (50k x 384): one index with the build
defaults of ``annlib.autotune.structural_defaults``; for each target recall, the tuner
(tuning queries = held-out points drawn from train, never the test queries) against every
(leaves_to_search, pre_reorder_num_neighbors) of a grid, both measured on the 1000 test
queries, single-thread, CPU time of the searching thread. Prints a markdown table and
writes bench/out/autotune.png.

    python bench/autotune.py [--dataset PATH] [--targets 0.85 0.9 0.95 0.99]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import annlib
import annlib.autotune as at
from annlib.bench.report import describe_machine

DEFAULT_DATASET = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "debian-minilm-384-angular.hdf5"

K = 10
GRID_T1 = [1, 2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 224]
GRID_T2 = [10, 15, 20, 30, 40, 60, 80, 100, 150, 200, 300, 500, 1000]
OUT = pathlib.Path(__file__).resolve().parent / "out"


def measure(index, queries, truth, t1, t2, repeats=1):
    """(QPS, recall@10) on one thread; QPS from the median CPU time of the searching thread."""
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        result = index.search_batched(
            queries, final_num_neighbors=K, leaves_to_search=t1, pre_reorder_num_neighbors=t2, num_threads=1
        )
        times.append(time.thread_time() - start)
    return len(queries) / statistics.median(times), annlib.id_recall(result.ids, truth, K)


def pareto(points):
    """Measured frontier: grid points no other point beats in both QPS and recall."""
    ordered = sorted(points, key=lambda p: (-p["recall"], -p["qps"]))
    front, best_qps = [], -1.0
    for p in ordered:
        if p["qps"] > best_qps:
            front.append(p)
            best_qps = p["qps"]
    return sorted(front, key=lambda p: p["recall"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET))
    parser.add_argument("--targets", type=float, nargs="+", default=[0.85, 0.90, 0.95, 0.99])
    parser.add_argument("--tuner-threads", type=int, default=1, help="threads of the tuner (the grid runs on 1)")
    args = parser.parse_args(argv)

    ds = annlib.datasets.load_dataset(args.dataset)
    train, test, neighbors, distance = ds.train, ds.test, ds.neighbors, ds.distance
    metric = "cosine" if distance == "angular" else ("dot" if distance == "dot" else "squared_l2")
    truth = neighbors[:, :K]
    params = at.structural_defaults(len(train), train.shape[1], metric, K)
    start = time.perf_counter()
    index = annlib.TreeAhIndex(train, metric, **params)
    build_s = time.perf_counter() - start
    print(f"# autotune bench: {pathlib.Path(args.dataset).name}, {describe_machine()}")
    print(f"index: {params} built in {build_s:.1f} s")

    # Exhaustive grid, single thread, on the test queries.
    index.search_batched(test, final_num_neighbors=K, leaves_to_search=1, pre_reorder_num_neighbors=K, num_threads=1)
    grid = []
    start = time.perf_counter()
    for t1 in GRID_T1:
        for t2 in GRID_T2:
            qps, rec = measure(index, test, truth, t1, t2)
            grid.append({"t1": t1, "t2": t2, "qps": qps, "recall": rec})
    grid_s = time.perf_counter() - start
    front = pareto(grid)
    print(f"grid: {len(grid)} points in {grid_s:.1f} s")

    rows, choices = [], []
    for target in args.targets:
        start = time.perf_counter()
        cpu0 = time.process_time()
        tuning = index.autotune(target, set_default=False, num_threads=args.tuner_threads)
        tune_s = time.perf_counter() - start
        tune_cpu = time.process_time() - cpu0
        t1, t2 = tuning.leaves_to_search, tuning.pre_reorder_num_neighbors
        meeting = [p for p in grid if p["recall"] >= target]
        best = max(meeting, key=lambda p: p["qps"]) if meeting else None
        # Re-measure the tuned point and the best grid point alternately, 5 times each, for a fair QPS ratio.
        tuned_qps, grid_qps = [], []
        for _ in range(5):
            q, tuned_rec = measure(index, test, truth, t1, t2)
            tuned_qps.append(q)
            if best is not None:
                grid_qps.append(measure(index, test, truth, best["t1"], best["t2"])[0])
        tq = statistics.median(tuned_qps)
        gq = statistics.median(grid_qps) if grid_qps else float("nan")
        choices.append({"target": target, "qps": tq, "recall": tuned_rec, "tuning": tuning})
        rows.append(
            f"| {target:.2f} | {t1}, {t2} | {tuning.predicted_recall:.4f} | {tuned_rec:.4f} | "
            f"{tuning.predicted_qps:,.0f} | {tq:,.0f} | "
            + (f"{best['t1']}, {best['t2']} | {best['recall']:.4f} | {gq:,.0f} | {tq / gq:.2f} | " if best else "- | - | - | - | ")
            + f"{tune_s:.2f} ({tune_cpu:.2f} CPU) | {100 * tune_s / grid_s:.1f}% |"
            + (" best effort" if tuning.best_effort else "")
        )
        print(f"target {target}: stages {', '.join(f'{k} {v:.2f}s' for k, v in tuning.stage_seconds.items())}; "
              f"cost fit error {tuning.cost_model.fit_relative_error:.1%}")

    print()
    print(f"Grid: {len(GRID_T1)} leaves_to_search x {len(GRID_T2)} pre_reorder values = {len(grid)} points, "
          f"{grid_s:.1f} s on 1 thread ({len(test)} test queries each). Tuner: 1000 held-out train points, "
          f"{args.tuner_threads} thread(s).")
    print()
    print("| target | tuned (leaves, pre_reorder) | predicted recall | measured recall | predicted QPS | measured QPS "
          "| best grid point | its recall | its QPS | QPS ratio | tuner s | tuner / grid time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot")
        return 0
    OUT.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.scatter([p["recall"] for p in grid], [p["qps"] for p in grid], s=9, c="0.7", label="grid points (measured)")
    ax.plot([p["recall"] for p in front], [p["qps"] for p in front], "-", c="k", lw=1.2, label="grid Pareto frontier")
    predicted = choices[-1]["tuning"].frontier
    ax.plot([p.recall for p in predicted], [p.qps for p in predicted], "--", c="tab:blue", lw=1,
            label="tuner's predicted frontier")
    for c in choices:
        ax.scatter([c["recall"]], [c["qps"]], marker="*", s=160, c="tab:red", zorder=5)
        ax.annotate(f"{c['target']:.2f}", (c["recall"], c["qps"]), textcoords="offset points", xytext=(5, 5))
        ax.axvline(c["target"], c="tab:red", lw=0.5, ls=":")
    ax.scatter([], [], marker="*", s=160, c="tab:red", label="tuner choices (measured)")
    ax.set_xlim(max(0.5, min(args.targets) - 0.15), 1.002)
    ax.set_yscale("log")
    ax.set_xlabel(f"recall@{K} (test queries)")
    ax.set_ylabel("QPS, one thread")
    ax.set_title(f"autotuner vs exhaustive grid: {pathlib.Path(args.dataset).stem}")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(True, which="both", lw=0.3)
    fig.tight_layout()
    fig.savefig(OUT / "autotune.png", dpi=120)
    print(f"\nplot: {OUT / 'autotune.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
