"""Outputs of ``annlib bench``: the CSV of every point, the markdown table and the Pareto plot."""

from __future__ import annotations

import csv
import os
import platform

import numpy as np

from annlib._optional import import_optional

#: Recall levels the table reports QPS at.
TARGETS = (0.80, 0.90, 0.95, 0.99)

CSV_FIELDS = ["dataset", "mode", "k", "family", "algorithm", "params", "recall", "qps", "build_s", "index_mb"]


def params_str(params: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in params.items())


class CsvWriter:
    """Appends each point as it is measured, so an interrupted run keeps what it measured."""

    def __init__(self, path: str, dataset: str, mode: str, k: int):
        self._path = path
        self._file = None  # opened with the first point: a run that fails early leaves nothing behind
        self._fixed = [dataset, mode, k]

    def __call__(self, point) -> None:
        if self._file is None:
            os.makedirs(os.path.dirname(self._path) or ".", exist_ok=True)
            self._file = open(self._path, "w", newline="")  # noqa: SIM115 - closed by close()
            self._writer = csv.writer(self._file)
            self._writer.writerow(CSV_FIELDS)
        self._writer.writerow(
            [
                *self._fixed,
                point.family,
                point.name,
                params_str(point.params),
                f"{point.recall:.4f}",
                f"{point.qps:.1f}",
                f"{point.build_s:.2f}",
                f"{point.index_bytes / 2**20:.2f}",
            ]
        )
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def pareto_frontier(points):
    """The points no other point beats in both recall and QPS, by recall descending.

    The same walk as ann-benchmarks' ``create_pointset``: sort by recall then QPS, both
    descending, and keep a point only when its QPS beats every point of higher recall.
    """
    ordered = sorted(points, key=lambda p: (-p.recall, -p.qps))
    frontier, best_qps = [], -np.inf
    for point in ordered:
        if point.qps > best_qps:
            frontier.append(point)
            best_qps = point.qps
    return frontier


def best_at(points, target: float):
    """The fastest point with recall >= target (no interpolation), or None."""
    ok = [p for p in points if p.recall >= target]
    return max(ok, key=lambda p: p.qps) if ok else None


def describe_machine() -> str:
    """The CPU model and core count, for benchmark reports."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def describe(result) -> str:
    ds = result.dataset
    what = "one query per call, one CPU" if result.mode == "single" else f"all queries per call, {result.threads} threads"
    return (
        f"{ds.name}: {ds.data.shape[0]:,} x {ds.data.shape[1]} ({ds.distance}), {len(ds.queries):,} queries, "
        f"recall@{result.k}; {result.mode} mode ({what}); QPS = best of {result.runs} runs"
    )


def summary_rows(result) -> list[dict]:
    """One dict per algorithm family: QPS at each target, parameters there, build time, size."""
    rows = []
    for family in result.families:
        points = [p for p in result.points if p.family == family]
        row = {"algorithm": family, "max_recall": max(p.recall for p in points), "at": {}}
        for target in TARGETS:
            best = best_at(points, target)
            row["at"][target] = None if best is None else {"qps": best.qps, "params": best.params, "recall": best.recall}
        # build time and size of the build that gave the fastest point at the middle target
        ref = best_at(points, 0.90) or max(points, key=lambda p: p.recall)
        row.update(name=ref.name, build_s=ref.build_s, index_mb=ref.index_bytes / 2**20)
        rows.append(row)
    return rows


def markdown(result, command: str | None = None) -> str:
    """The summary table, with the machine, the data and (optionally) the command that made it."""
    rows = summary_rows(result)
    head = "| algorithm | " + " | ".join(f"QPS @{t:.2f}" for t in TARGETS) + " | max recall | build (s) | index (MB) |"
    lines = [
        f"### {describe(result)}",
        "",
        f"machine: {describe_machine()}" + (f"; command: `{command}`" if command else ""),
        "",
        head,
        "|---|" + "---:|" * (len(TARGETS) + 3),
    ]
    for row in rows:
        cells = [f"{row['at'][t]['qps']:,.0f}" if row["at"][t] else "—" for t in TARGETS]
        lines.append(
            f"| {row['algorithm']} | " + " | ".join(cells)
            + f" | {row['max_recall']:.4f} | {row['build_s']:.1f} | {row['index_mb']:.1f} |"
        )
    lines += ["", "Parameters of the fastest point at each recall level:", ""]
    lines += ["| algorithm | build | " + " | ".join(f"@{t:.2f}" for t in TARGETS) + " |", "|---|---|" + "---|" * len(TARGETS)]
    for row in rows:
        cells = [params_str(row["at"][t]["params"]) if row["at"][t] else "—" for t in TARGETS]
        lines.append(f"| {row['algorithm']} | {row['name']} | " + " | ".join(cells) + " |")
    if result.skipped:
        lines += ["", "Skipped: " + "; ".join(f"{f} ({why})" for f, why in result.skipped.items())]
    return "\n".join(lines) + "\n"


def require_plotting():
    """matplotlib, or MissingDependencyError naming ``pip install "annlib[bench]"``."""
    return import_optional("matplotlib", "bench", "plotting the results of annlib bench")


def plot(result, path: str) -> None:
    """Recall vs QPS, one Pareto-frontier line per algorithm, log QPS axis (as ann-benchmarks draws it)."""
    matplotlib = require_plotting()
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    markers = "osv^D<>p*h"
    lowest = 1.0
    for i, family in enumerate(result.families):
        frontier = pareto_frontier([p for p in result.points if p.family == family])
        frontier.sort(key=lambda p: p.recall)
        recalls = [p.recall for p in frontier]
        lowest = min(lowest, recalls[0])
        ax.plot(recalls, [p.qps for p in frontier], marker=markers[i % len(markers)], markersize=4, linewidth=1.5, label=family)
    ax.set_yscale("log")
    ax.set_xlim(max(0.0, min(lowest, 0.8) - 0.02), 1.005)
    ax.set_xlabel(f"Recall@{result.k} (ann-benchmarks k-nn)")
    ax.set_ylabel("Queries per second (1/s)")
    ax.grid(True, which="both", linewidth=0.3)
    ax.set_title(describe(result).replace("; ", "\n", 1), fontsize=8)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
