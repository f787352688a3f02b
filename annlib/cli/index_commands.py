"""``annlib build``, ``annlib search`` and ``annlib tune``: make an index file, query it, tune it."""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time
from typing import Any

import click
import numpy as np

import annlib
from annlib import metrics as _metrics
from annlib.cli.app import JSON_HELP, emit_json, main, mb
from annlib.cli.inputs import load_index, load_matrix


def _progress_default(value: bool | None) -> bool:
    return sys.stderr.isatty() if value is None else value


@main.command()
@click.argument("data")
@click.option(
    "--metric",
    type=click.Choice(["dot", "cosine", "squared_l2"]),
    default=None,
    help="Similarity to search by (default: the HDF5 file's distance: angular -> cosine, euclidean -> squared_l2).",
)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Index file to write.")
@click.option("--num-leaves", type=click.IntRange(min=1), default=None, help="Partitions (default: sqrt(n)).")
@click.option(
    "--leaves-to-search", type=click.IntRange(min=1), default=None, help="Partitions probed per query (default: num_leaves/10)."
)
@click.option("--reorder", type=click.IntRange(min=0), default=100, show_default=True, help="Candidates rescored exactly (0: off).")
@click.option("--soar-lambda", type=click.FloatRange(min=0), default=None, help="Spill every point to a second partition by SOAR (e.g. 1.0).")
@click.option("--dims-per-block", type=click.IntRange(min=1), default=2, show_default=True, help="Dimensions per 4-bit PQ block.")
@click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    default=0.2,
    show_default=True,
    help="Anisotropic quantization threshold T (0: plain PQ).",
)
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Default neighbors per query.")
@click.option("--training-sample-size", type=click.IntRange(min=1), default=100_000, show_default=True, help="Points k-means and PQ train on.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed.")
@click.option("--threads", type=click.IntRange(min=0), default=None, help="Threads (default: all cores).")
@click.option(
    "--target-recall",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="After building, tune leaves-to-search and reorder for this recall@k (held-out points) and save them.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (strict: NaN and infinite numbers are written as null).")
def build(
    data: str,
    metric: str | None,
    out: str,
    num_leaves: int | None,
    leaves_to_search: int | None,
    reorder: int,
    soar_lambda: float | None,
    dims_per_block: int,
    threshold: float,
    k: int,
    training_sample_size: int,
    seed: int,
    threads: int | None,
    target_recall: float | None,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Build a quantization index (k-means tree + anisotropic 4-bit PQ + reorder) over DATA.

    DATA is an ann-benchmarks .hdf5 file (its 'train' rows), a .npy matrix, .fvecs/.bvecs, or a
    known dataset name.

    \b
    Examples:
      annlib build datasets/debian-minilm-10k.hdf5 --out minilm.annlib
      annlib build vectors.npy --metric dot --num-leaves 1000 --soar-lambda 1.0 --out v.annlib
      annlib build datasets/debian-minilm-10k.hdf5 --target-recall 0.95 --out tuned.annlib
    """
    train, ds = load_matrix(data, "data")
    metric = metric or ds.metric
    if metric is None:
        raise click.UsageError(f"{data} does not say which metric it uses; pass --metric dot|cosine|squared_l2")
    if num_leaves is not None and leaves_to_search is not None and leaves_to_search > num_leaves:
        raise click.BadParameter(f"{leaves_to_search} exceeds --num-leaves {num_leaves}", param_hint="--leaves-to-search")
    index = annlib.TreeAhIndex(
        train,
        metric,
        num_neighbors=k,
        num_leaves=num_leaves,
        num_leaves_to_search=leaves_to_search,
        training_sample_size=training_sample_size,
        seed=seed,
        soar_lambda=soar_lambda,
        dims_per_block=dims_per_block,
        anisotropic_quantization_threshold=threshold or None,
        reorder=reorder,
        num_threads=threads,
        progress=_progress_default(progress),
    )
    tuning = None
    if target_recall is not None:
        tuning = index.autotune(target_recall=target_recall, k=k, set_default=True, num_threads=threads)
    index.save(out)
    stats = index.stats()
    config = index.config
    report = {
        "out": out,
        "metric": metric,
        "points": stats["n"],
        "dim": stats["dim"],
        "partitions": stats["num_leaves"],
        "leaves_to_search": config["tree"]["num_leaves_to_search"],
        "spilled_points": stats["spilled_points"],
        "memory_bytes": stats["total_bytes"],
        "file_bytes": os.path.getsize(out),
        "build_seconds": stats["build_seconds"],
    }
    if tuning is not None:
        report["tuning"] = {
            "target_recall": target_recall,
            "leaves_to_search": tuning.leaves_to_search,
            "pre_reorder_num_neighbors": tuning.pre_reorder_num_neighbors,
            "predicted_recall": tuning.predicted_recall,
            "predicted_qps": tuning.predicted_qps,
            "best_effort": tuning.best_effort,
        }
    if as_json:
        emit_json(report)
        return
    soar = f", {stats['spilled_points']:,} spilled by SOAR" if soar_lambda is not None else ""
    click.echo(f"built {out}")
    click.echo(f"  points      {stats['n']:,} x {stats['dim']} dims ({metric})")
    click.echo(f"  partitions  {stats['num_leaves']:,} (search {report['leaves_to_search']}){soar}")
    click.echo(f"  memory      {mb(stats['total_bytes'])} (file {mb(report['file_bytes'])})")
    click.echo(f"  build time  {stats['build_seconds']:.2f} s")
    if tuning is not None:
        click.echo(
            f"  tuned       leaves_to_search={tuning.leaves_to_search} pre_reorder={tuning.pre_reorder_num_neighbors}: "
            f"predicted recall@{k} {tuning.predicted_recall:.3f}, {tuning.predicted_qps:,.0f} QPS single-thread"
            + (" (best effort: target not reachable)" if tuning.best_effort else "")
        )


@main.command()
@click.argument("index", type=click.Path(exists=True, dir_okay=False))
@click.argument("queries")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbors per query.")
@click.option("--leaves-to-search", type=click.IntRange(min=1), default=None, help="Partitions probed (default: the index's).")
@click.option("--reorder", type=click.IntRange(min=1), default=None, help="Candidates rescored exactly (default: the index's).")
@click.option("--threads", type=click.IntRange(min=0), default=None, help="Threads (default: all cores).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Write ids to FILE.npy, or ids and distances to FILE.csv.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the ids unless --out is given; strict: NaN and infinite numbers are written as null).")
def search(
    index: str,
    queries: str,
    k: int,
    leaves_to_search: int | None,
    reorder: int | None,
    threads: int | None,
    out: str | None,
    as_json: bool,
) -> None:
    """Search INDEX with the rows of QUERIES and report QPS (and recall when QUERIES has ground truth).

    QUERIES is .npy, .fvecs/.bvecs, or an ann-benchmarks .hdf5 file (its 'test' rows; when the
    file also holds ground truth for the indexed data, recall@k is printed, measured the
    ann-benchmarks way).

    \b
    Examples:
      annlib search minilm.annlib datasets/debian-minilm-10k.hdf5 -k 10
      annlib search minilm.annlib queries.npy -k 100 --leaves-to-search 20 --out ids.npy
    """
    if out is not None and not out.lower().endswith((".npy", ".csv")):
        raise click.BadParameter(f"{out!r} must end in .npy or .csv", param_hint="--out")
    idx = load_index(index)
    rows, ds = load_matrix(queries, "queries")
    if rows.shape[1] != idx.dim:
        raise click.ClickException(f"dimension mismatch: {queries} has {rows.shape[1]}-dim rows, {index} holds {idx.dim}-dim points")
    start = time.perf_counter()
    result = idx.search_batched(rows, k, num_threads=threads, leaves_to_search=leaves_to_search,
                                 pre_reorder_num_neighbors=reorder)
    seconds = time.perf_counter() - start
    config = idx.config
    report: dict[str, Any] = {
        "index": index,
        "queries": int(rows.shape[0]),
        "k": k,
        "leaves_to_search": leaves_to_search or config["tree"]["num_leaves_to_search"],
        "reorder": reorder or (config["reorder"] or {}).get("num_neighbors"),
        "seconds": seconds,
        "qps": rows.shape[0] / seconds if seconds > 0 else float("inf"),
    }
    if ds.distances is not None and ds.test is rows:
        if ds.train.shape != (idx.n, idx.dim):
            report["recall_note"] = f"ground truth is for {ds.train.shape[0]} points, the index holds {idx.n}"
        elif ds.distances.shape[1] < k or ds.distance not in ("angular", "euclidean", "dot"):
            report["recall_note"] = f"ground truth has {ds.distances.shape[1]} neighbors ({ds.distance}); cannot score k={k}"
        else:
            report["recall"] = _metrics.recall_of_ids(result.ids, ds.train, ds.test, ds.distances, k, ds.distance)
    if out is not None:
        _write_results(out, result)
        report["out"] = out
    if as_json:
        if out is None:
            report["ids"] = result.ids
            report["distances"] = result.distances
        emit_json(report)
        return
    click.echo(
        f"{report['queries']:,} queries, k={k}, leaves_to_search={report['leaves_to_search']}, "
        f"reorder={report['reorder']}: {seconds * 1e3:,.1f} ms, {report['qps']:,.0f} QPS"
    )
    if "recall" in report:
        click.echo(f"recall@{k} {report['recall']:.4f} (ann-benchmarks k-nn, against {queries})")
    elif "recall_note" in report:
        click.echo(f"recall not measured: {report['recall_note']}")
    if out is not None:
        click.echo(f"wrote {out}")
    else:
        for i in range(min(3, rows.shape[0])):
            click.echo(f"query {i}: " + " ".join(str(int(x)) for x in result.ids[i]))
        if rows.shape[0] > 3:
            click.echo("... (--out FILE.npy|.csv saves every result)")


def _write_results(path: str, result) -> None:
    if path.lower().endswith(".npy"):
        np.save(path, result.ids)
        return
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "rank", "id", "distance"])
        nq, k = result.ids.shape
        for q in range(nq):
            for r in range(k):
                writer.writerow([q, r, int(result.ids[q, r]), f"{float(result.distances[q, r]):.6g}"])




@main.command()
@click.argument("index", type=click.Path(exists=True, dir_okay=False))
@click.argument("queries", required=False)
@click.option("--target-recall", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True, help="Recall@k to reach.")
@click.option("-k", "k", type=click.IntRange(min=1), default=None, help="Neighbors per query (default: the index's).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Save the index with the tuned defaults here.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def tune(index: str, queries: str | None, target_recall: float, k: int | None, out: str | None, as_json: bool) -> None:
    """Choose the search parameters of INDEX that reach --target-recall at the lowest cost.

    QUERIES (.npy, .fvecs or .hdf5 'test') are sample queries like the ones you will search
    with; without them the tuner holds out a sample of the indexed points. When QUERIES is an
    ann-benchmarks file with ground truth for the indexed data, the recall reached with the
    chosen parameters is measured too.

    \b
    Example:
      annlib tune minilm.annlib datasets/debian-minilm-10k.hdf5 --target-recall 0.95 --out tuned.annlib
    """
    idx = load_index(index)
    if not hasattr(idx, "autotune"):
        raise click.ClickException("autotuning is not available in this annlib version (TreeAhIndex.autotune is missing)")
    rows, ds = (None, None) if queries is None else load_matrix(queries, "queries")
    if rows is not None and rows.shape[1] != idx.dim:
        raise click.ClickException(f"dimension mismatch: {queries} has {rows.shape[1]}-dim rows, {index} holds {idx.dim}-dim points")
    kwargs = {} if k is None else {"k": k}
    try:
        tuning = idx.autotune(target_recall=target_recall, queries=rows, **kwargs)
    except ImportError as exc:
        raise click.ClickException(f"the autotuner cannot be loaded: {exc}") from None
    fields = dataclasses.asdict(tuning) if dataclasses.is_dataclass(tuning) else dict(tuning)
    report = {key: value for key, value in fields.items() if value is None or isinstance(value, (bool, int, float, str))}
    report.update(index=index, target_recall=target_recall)
    k_used = int(report.get("k") or idx.config["num_neighbors"])
    if ds is not None and ds.distances is not None and ds.train.shape == (idx.n, idx.dim) and ds.distances.shape[1] >= k_used:
        found = idx.search_batched(rows, k_used, leaves_to_search=report.get("leaves_to_search"),
                                   pre_reorder_num_neighbors=report.get("pre_reorder_num_neighbors"))
        report["measured_recall"] = _metrics.recall_of_ids(found.ids, ds.train, ds.test, ds.distances, k_used, ds.distance)
    if out is not None:
        idx.save(out)
        report["out"] = out
    if as_json:
        emit_json(report)
        return
    click.echo(f"tuned {index} for recall@{k_used} >= {target_recall}:")
    for key in ("leaves_to_search", "pre_reorder_num_neighbors", "predicted_recall", "predicted_qps", "measured_recall", "message"):
        value = report.get(key)
        if value not in (None, ""):
            if isinstance(value, float):
                value = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4f}"
            click.echo(f"  {key:<26} {value}")
    if out is not None:
        click.echo(f"wrote {out}")

