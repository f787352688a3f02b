"""Outputs of a benchmark run: the CSV of every point, the markdown tables and the Pareto plot.

The same files for ``annlib bench`` and ``bench/peers.py``. QPS at a recall level is the fastest
measured point with at least that recall (no interpolation); "vs annlib" divides it by the best
plain ``annlib`` build's QPS at the same level, in the same run and mode.
"""

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

    def __init__(self, path: str, dataset: str, k: int):
        self._path = path
        self._file = None  # opened with the first point: a run that fails early leaves nothing behind
        self._dataset, self._k = dataset, k

    def __call__(self, point) -> None:
        if self._file is None:
            os.makedirs(os.path.dirname(self._path) or ".", exist_ok=True)
            self._file = open(self._path, "w", newline="")  # noqa: SIM115 - closed by close()
            self._writer = csv.writer(self._file)
            self._writer.writerow(CSV_FIELDS)
        self._writer.writerow(
            [
                self._dataset,
                point.mode,
                self._k,
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
    """The CPU model, core count and annlib's SIMD path, for benchmark reports."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from annlib import cpu_info

    return f"{cpu}, {os.cpu_count()} cores, annlib SIMD path {cpu_info()['isa']}"


def describe(result) -> str:
    ds = result.dataset
    if result.mode == "single":
        timed = f", first {result.single_queries:,} timed" if result.single_queries else ""
        what = f"one query per call, one CPU{timed}"
    else:
        what = f"all queries per call, {result.threads} threads"
    return (
        f"{ds.name}: {ds.data.shape[0]:,} x {ds.data.shape[1]} ({ds.distance}), {len(ds.queries):,} queries, "
        f"recall@{result.k}; {result.mode} mode ({what}); QPS from the median of {result.runs} timed runs"
    )


def summary_rows(result, targets=TARGETS) -> list[dict]:
    """One dict per build: family, name, QPS (and ratio to annlib) at each target, build time, size."""
    rows = []
    for name in result.names:
        points = [p for p in result.points if p.name == name]
        row = {"algorithm": points[0].family, "name": name, "max_recall": max(p.recall for p in points), "at": {}}
        for target in targets:
            best = best_at(points, target)
            at = None if best is None else {"qps": best.qps, "params": best.params, "recall": best.recall}
            row["at"][target] = at
        row.update(build_s=points[0].build_s, index_mb=points[0].index_bytes / 2**20)
        rows.append(row)
    for target in targets:
        ref = [r["at"][target]["qps"] for r in rows if r["algorithm"] == "annlib" and r["at"][target]]
        for row in rows:
            if row["at"][target] is not None:
                row["at"][target]["vs_annlib"] = row["at"][target]["qps"] / max(ref) if ref else None
    return rows


def _versions(result) -> str:
    versions = dict(getattr(result, "versions", {}) or {})
    return ", ".join(f"{library} {v}" for library, v in versions.items()) + f", numpy {np.__version__}"


def markdown(result, command: str | None = None, targets=TARGETS) -> str:
    """The summary tables, with the machine, the versions and (optionally) the command that made them."""
    rows = summary_rows(result, targets)
    head = "| algorithm | build | " + " | ".join(f"QPS @{t:.2f} | vs annlib" for t in targets)
    lines = [
        f"### {describe(result)}",
        "",
        f"machine: {describe_machine()}; versions: {_versions(result)}"
        + (f"; command: `{command}`" if command else ""),
        "",
        head + " | max recall | build (s) | index (MB) |",
        "|---|---|" + "---:|---:|" * len(targets) + "---:|---:|---:|",
    ]
    for row in rows:
        cells = []
        for t in targets:
            at = row["at"][t]
            ratio = f"{at['vs_annlib']:.2f}x" if at and at.get("vs_annlib") is not None else ""
            cells += [f"{at['qps']:,.0f}" if at else "—", ratio]
        lines.append(
            f"| {row['algorithm']} | {row['name']} | " + " | ".join(cells)
            + f" | {row['max_recall']:.4f} | {row['build_s']:.1f} | {row['index_mb']:.1f} |"
        )
    lines += ["", "Parameters of the fastest point at each recall level:", ""]
    lines += ["| algorithm | build | " + " | ".join(f"@{t:.2f}" for t in targets) + " |", "|---|---|" + "---|" * len(targets)]
    for row in rows:
        cells = [params_str(row["at"][t]["params"]) if row["at"][t] else "—" for t in targets]
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
    one_build_each = len(result.names) == len(result.families)
    for i, name in enumerate(result.names):
        points = [p for p in result.points if p.name == name]
        frontier = pareto_frontier(points)
        frontier.sort(key=lambda p: p.recall)
        recalls = [p.recall for p in frontier]
        lowest = min(lowest, recalls[0])
        label = points[0].family if one_build_each else name
        ax.plot(recalls, [p.qps for p in frontier], marker=markers[i % len(markers)], markersize=4, linewidth=1.5, label=label)
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
