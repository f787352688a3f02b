"""``annlib build``, ``annlib search`` and ``annlib tune``: make an index file, query it, tune it.

``search`` and ``tune`` work on a file of any index kind, through the index protocol only
(``search_batched``, ``search_defaults``, ``autotune``, ``config``); ``build`` makes a tree-AH
index, the kind its options describe.
"""

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
from annlib.autotune.solver import MAX_RECALL_TOLERANCE, RECALL_TOLERANCE
from annlib.cli.app import JSON_HELP, emit_json, main, mb
from annlib.cli.inputs import (
    COUNT,
    SEED,
    THREADS,
    THREADS_HELP,
    cap_k,
    check_dim,
    check_writable,
    load_index,
    load_matrix,
    save,
    search_defaults,
    search_params,
)

_SCORED_DISTANCES = ("angular", "euclidean", "dot")

#: The tuner's accepted shortfall under --target-recall, one option for `build` and `tune`.
_recall_tolerance_option = click.option(
    "--recall-tolerance",
    type=click.FloatRange(0, MAX_RECALL_TOLERANCE),
    default=RECALL_TOLERANCE,
    show_default=True,
    help="Shortfall under --target-recall accepted on unseen queries, at one standard error's confidence "
    "(0: the confidence bound must reach the target itself).",
)


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
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Index file to write (.annl).")
@click.option("--num-leaves", type=COUNT, default=None, help="Partitions (default: sqrt(n)).")
@click.option("--leaves-to-search", type=COUNT, default=None, help="Partitions probed per query (default: num_leaves/10).")
@click.option(
    "--reorder",
    type=click.IntRange(min=0, max=2**31 - 1),
    default=100,
    show_default=True,
    help="Candidates rescored exactly (pre_reorder_num_neighbors; 0: no reorder data).",
)
@click.option("--soar-lambda", type=click.FloatRange(min=0), default=None, help="Spill every point to a second partition by SOAR (e.g. 1.0).")
@click.option("--dims-per-block", type=COUNT, default=2, show_default=True, help="Dimensions per 4-bit PQ block.")
@click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    default=0.2,
    show_default=True,
    help="Anisotropic quantization threshold T (0: plain PQ).",
)
@click.option("-k", "k", type=COUNT, default=10, show_default=True, help="Default neighbors per query.")
@click.option("--training-sample-size", type=COUNT, default=100_000, show_default=True, help="Points k-means and PQ train on.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed.")
@click.option("--threads", type=THREADS, default=None, help=THREADS_HELP)
@click.option(
    "--target-recall",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="After building, tune leaves-to-search and reorder for this recall@k (held-out points) and save them.",
)
@_recall_tolerance_option
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
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
    recall_tolerance: float,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Build a quantization index (k-means tree + anisotropic 4-bit PQ + reorder) over DATA.

    DATA is an ann-benchmarks .hdf5 file (its 'train' rows), a .npy matrix, .fvecs/.bvecs, or a
    known dataset name.

    \b
    Examples:
      annlib build datasets/debian-minilm-10k.hdf5 --out minilm.annl
      annlib build vectors.npy --metric dot --num-leaves 1000 --soar-lambda 1.0 --out v.annl
      annlib build datasets/debian-minilm-10k.hdf5 --target-recall 0.95 --out tuned.annl
    """
    check_writable(out)
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
        tuning = index.autotune(target_recall=target_recall, k=k, set_default=True, num_threads=threads,
                                recall_tolerance=recall_tolerance)
    save(index.save, out)
    stats = index.stats()
    report = {
        "out": out,
        "kind": index.kind,
        "metric": metric,
        "points": stats["n"],
        "dim": stats["dim"],
        "partitions": stats["num_leaves"],
        **search_defaults(index),
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
            f"  tuned       leaves_to_search={tuning.leaves_to_search} pre_reorder_num_neighbors={tuning.pre_reorder_num_neighbors}: "
            f"predicted recall@{k} {tuning.predicted_recall:.3f}, {tuning.predicted_qps:,.0f} QPS single-thread"
            + (" (best effort: target not reachable)" if tuning.best_effort else "")
        )


def _recall(report: dict[str, Any], ids: np.ndarray, ds, rows: np.ndarray, index, k: int) -> None:
    """Add ``recall`` (or ``recall_note``, why not) when the query file has ground truth for the indexed data."""
    if ds is None or ds.distances is None or ds.test is not rows:
        return
    if ds.train.shape != (index.n, index.dim):
        report["recall_note"] = f"ground truth is for {ds.train.shape[0]} points, the index holds {index.n}"
    elif ds.distances.shape[1] < k or ds.distance not in _SCORED_DISTANCES:
        report["recall_note"] = f"ground truth has {ds.distances.shape[1]} neighbors ({ds.distance}); cannot score k={k}"
    else:
        report["recall"] = _metrics.recall_of_ids(ids, ds.train, ds.test, ds.distances, k, ds.distance)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in params.items())


@main.command()
@click.argument("index", type=click.Path(exists=True, dir_okay=False))
@click.argument("queries")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbors per query (more than the index holds are lowered to its size).")
@click.option("--leaves-to-search", type=COUNT, default=None, help="tree_ah: partitions probed (default: the index's).")
@click.option(
    "--reorder",
    type=click.IntRange(min=1),
    default=None,
    help="tree_ah: candidates rescored exactly, pre_reorder_num_neighbors (default: the index's; raised to k, capped at the index size).",
)
@click.option(
    "--exact-reorder",
    type=click.IntRange(min=0),
    default=None,
    help="tree_ah with two-stage reordering: of the int8-rescored candidates, the best rescored again with "
    "float32 rows, exact_reorder_num_neighbors (default: the index's; 0: int8 only).",
)
@click.option(
    "--recall-target",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="jax_brute_force: expected recall of the approximate top-k (default: the index's).",
)
@click.option("--threads", type=THREADS, default=None, help=THREADS_HELP)
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Write ids to FILE.npy, or ids and distances to FILE.csv.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON (with the ids unless --out is given; strict: NaN and infinite numbers, such as the distance of an empty slot, are written as null).",
)
def search(
    index: str,
    queries: str,
    k: int,
    leaves_to_search: int | None,
    reorder: int | None,
    exact_reorder: int | None,
    recall_target: float | None,
    threads: int | None,
    out: str | None,
    as_json: bool,
) -> None:
    """Search INDEX (any index kind) with the rows of QUERIES and report QPS (and recall when
    QUERIES has ground truth).

    QUERIES is .npy, .fvecs/.bvecs, or an ann-benchmarks .hdf5 file (its 'test' rows; when the
    file also holds ground truth for the indexed data, recall@k is printed, measured the
    ann-benchmarks way). A -k above the number of indexed points is lowered to it (with a note
    on stderr). Each search option belongs to the index kinds named in its help; given for
    another kind it is an error.

    \b
    Examples:
      annlib search minilm.annl datasets/debian-minilm-10k.hdf5 -k 10
      annlib search minilm.annl queries.npy -k 100 --leaves-to-search 20 --out ids.npy
    """
    if out is not None:
        if not out.lower().endswith((".npy", ".csv")):
            raise click.BadParameter(f"{out!r} must end in .npy or .csv", param_hint="--out")
        check_writable(out)
    idx = load_index(index)
    params = search_params(
        idx,
        {
            "--leaves-to-search": ("leaves_to_search", leaves_to_search),
            "--reorder": ("pre_reorder_num_neighbors", reorder),
            "--exact-reorder": ("exact_reorder_num_neighbors", exact_reorder),
            "--recall-target": ("recall_target", recall_target),
        },
    )
    rows, ds = load_matrix(queries, "queries")
    check_dim(rows, queries, idx, index)
    k = cap_k(k, idx)
    start = time.perf_counter()
    result = idx.search_batched(rows, k, num_threads=threads, **params)
    seconds = time.perf_counter() - start
    used = {**search_defaults(idx), **params}
    report: dict[str, Any] = {
        "index": index,
        "kind": idx.kind,
        "queries": int(rows.shape[0]),
        "k": k,
        **used,
        "seconds": seconds,
        "qps": rows.shape[0] / seconds if seconds > 0 else float("inf"),
    }
    _recall(report, result.ids, ds, rows, idx, k)
    if out is not None:
        save(lambda path: _write_results(path, result), out)
        report["out"] = out
    if as_json:
        if out is None:
            report["ids"] = result.ids
            report["distances"] = result.distances
        emit_json(report)
        return
    settings = ", ".join(filter(None, [f"k={k}", _params_text(used)]))
    click.echo(f"{report['queries']:,} queries, {settings}: {seconds * 1e3:,.1f} ms, {report['qps']:,.0f} QPS")
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
        with open(path, "wb") as f:  # np.save(path) would append ".npy" to a name that lacks it
            np.save(f, result.ids)
        return
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "rank", "id", "distance"])
        nq, k = result.ids.shape
        for q in range(nq):
            for r in range(k):
                writer.writerow([q, r, int(result.ids[q, r]), f"{float(result.distances[q, r]):.6g}"])


_TUNING_FIELDS = ("predicted_recall", "predicted_qps", "measured_recall", "message")


@main.command()
@click.argument("index", type=click.Path(exists=True, dir_okay=False))
@click.argument("queries", required=False)
@click.option("--target-recall", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True, help="Recall@k to reach.")
@_recall_tolerance_option
@click.option("-k", "k", type=click.IntRange(min=1), default=None, help="Neighbors per query (default: the index's; more than it holds are lowered to its size).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Save the index with the tuned defaults here.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def tune(index: str, queries: str | None, target_recall: float, recall_tolerance: float, k: int | None, out: str | None,
         as_json: bool) -> None:
    """Choose the search parameters of INDEX that reach --target-recall at the lowest cost.

    QUERIES (.npy, .fvecs or .hdf5 'test') are sample queries like the ones you will search
    with (the tuner takes a seeded sample of 1,000 of more); without them it holds out a sample
    of the indexed points. When QUERIES is an ann-benchmarks file with ground truth for the
    indexed data, the recall reached with the chosen parameters is measured too.

    \b
    Example:
      annlib tune minilm.annl datasets/debian-minilm-10k.hdf5 --target-recall 0.95 --out tuned.annl
    """
    if out is not None:
        check_writable(out)
    idx = load_index(index)
    rows, ds = (None, None) if queries is None else load_matrix(queries, "queries")
    if rows is not None:
        check_dim(rows, queries, idx, index)
    kwargs = {"recall_tolerance": recall_tolerance}
    if k is not None:
        kwargs["k"] = cap_k(k, idx)
    try:
        tuning = idx.autotune(target_recall=target_recall, queries=rows, **kwargs)
    except ImportError as exc:
        raise click.ClickException(f"the autotuner cannot be loaded: {exc}") from None
    except NotImplementedError as exc:
        raise click.ClickException(f"{index}: {exc}") from None
    fields = dataclasses.asdict(tuning)
    report = {key: value for key, value in fields.items() if value is None or isinstance(value, (bool, int, float, str))}
    report.update(index=index, kind=idx.kind, target_recall=target_recall, params=tuning.params)
    k_used = int(report.get("k") or idx.num_neighbors)
    if rows is not None:
        found = idx.search_batched(rows, k_used)  # the tuned parameters are the index's defaults now
        _recall(report, found.ids, ds, rows, idx, k_used)
        if "recall" in report:
            report["measured_recall"] = report.pop("recall")
    if out is not None:
        save(idx.save, out)
        report["out"] = out
    if as_json:
        emit_json(report)
        return
    click.echo(f"tuned {index} ({idx.kind}) for recall@{k_used} >= {target_recall}:")
    for key, value in tuning.params.items():
        click.echo(f"  {key:<26} {value}")
    for key in _TUNING_FIELDS:
        value = report.get(key)
        if value not in (None, ""):
            if isinstance(value, float):
                value = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4f}"
            click.echo(f"  {key:<26} {value}")
    if out is not None:
        click.echo(f"wrote {out}")
