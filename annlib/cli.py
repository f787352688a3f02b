"""The ``annlib`` command line: a thin client of the public Python API.

Every command accepts ``--help`` (with an example) and, where it prints data, ``--json``. Errors
annlib raises on purpose (and OS errors such as a missing file) become one line on stderr and exit
status 1, never a traceback.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import platform
import sys
import time
from typing import Any

import click
import numpy as np

import annlib
import annlib.io
from annlib import datasets as _datasets
from annlib import metrics as _metrics
from annlib.errors import AnnlibError


def _clean_errors(command):
    """Turn AnnlibError / OSError / ValueError into a one-line ClickException (exit 1)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (AnnlibError, OSError, ValueError) as exc:
            raise click.ClickException(str(exc) or type(exc).__name__) from None

    return wrapper


def _emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _version() -> str:
    return str(getattr(annlib, "__version__", "unknown"))


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"annlib {_version()}")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the annlib version and exit.",
)
def main() -> None:
    """annlib: approximate nearest neighbor search with a C++/SIMD core.

    \b
    Examples:
      annlib info
      annlib datasets list
      annlib build datasets/debian-minilm-10k.hdf5 --out minilm.annlib
      annlib search minilm.annlib datasets/debian-minilm-10k.hdf5 -k 10
      annlib info minilm.annlib
      annlib bench --mode batch
    """


# ---------------------------------------------------------------------------------------------
# info


@main.command()
@click.argument("index", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_clean_errors
def info(index: str | None, as_json: bool) -> None:
    """Without INDEX: the annlib and numpy versions and the CPU's SIMD path.

    With INDEX: the file's format version, build parameters, sizes and partition balance
    (the file is loaded, so its checksums are verified too).

    \b
    Examples:
      annlib info --json
      annlib info minilm.annlib
    """
    if index is not None:
        _index_info(index, as_json)
        return
    from annlib import cpu_info  # lazy: needs the compiled core

    cpu = cpu_info()
    report = {
        "annlib": _version(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
    }
    if as_json:
        _emit_json(report)
        return
    click.echo(f"annlib    {report['annlib']}")
    click.echo(f"numpy     {report['numpy']}")
    click.echo(f"python    {report['python']} ({report['platform']})")
    click.echo(f"simd      {cpu.get('isa', '?')} (available: {', '.join(cpu.get('available', []))})")
    features = cpu.get("features", {})
    if features:
        click.echo("features  " + " ".join(f"{name}{'+' if on else '-'}" for name, on in sorted(features.items())))
    if "threads" in cpu:
        click.echo(f"threads   {cpu['threads']}")


# ---------------------------------------------------------------------------------------------
# datasets


@main.group("datasets")
def datasets_group() -> None:
    """List, download, inspect and re-check benchmark datasets (ann-benchmarks HDF5 layout).

    \b
    Examples:
      annlib datasets list
      annlib datasets download glove-25-angular --dir ~/data
      annlib datasets show debian-minilm-10k
      annlib datasets ground-truth datasets/debian-minilm-10k.hdf5 -k 10
    """


@datasets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_clean_errors
def datasets_list(as_json: bool) -> None:
    """List the known datasets and where each is available locally.

    Local files are looked for in $ANNLIB_DATA_DIR, the repository's datasets/ folder and
    ~/.cache/annlib.

    \b
    Example:
      annlib datasets list --json
    """
    rows = _datasets.list_datasets()
    if as_json:
        _emit_json(rows)
        return
    width = max(len(row["name"]) for row in rows)
    click.echo(f"{'name':<{width}}  {'dim':>5}  {'metric':<10}  {'n_train':>10}  local")
    for row in rows:
        local = row["path"] or ("-" if row["url"] else "- (local only)")
        click.echo(f"{row['name']:<{width}}  {row['dim']:>5}  {row['metric']:<10}  {row['n_train']:>10,}  {local}")


@datasets_group.command("download")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Target directory (default: $ANNLIB_DATA_DIR or ~/.cache/annlib).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_clean_errors
def datasets_download(name: str, directory: str | None, as_json: bool) -> None:
    """Download NAME from ann-benchmarks.com (skipped when a valid copy is already there).

    The file is streamed to a temporary file and moved into place only once complete and checked,
    so an interrupted download leaves nothing behind.

    \b
    Example:
      annlib datasets download glove-25-angular --dir ~/data
    """
    show_progress = not as_json and sys.stderr.isatty()

    def progress(done: int, total: int | None) -> None:
        if show_progress:
            of = f" / {total / 1e6:,.1f}" if total else ""
            click.echo(f"\r{name}: {done / 1e6:,.1f}{of} MB", err=True, nl=False)

    path = _datasets.download(name, directory, progress=progress)
    if show_progress:
        click.echo("", err=True)
    if as_json:
        _emit_json({"name": name, "path": str(path), "bytes": path.stat().st_size})
    else:
        click.echo(str(path))


def _describe(ds: _datasets.Dataset) -> dict[str, Any]:
    arrays = {}
    for key in ("train", "test", "neighbors", "distances"):
        value = getattr(ds, key)
        if value is not None:
            arrays[key] = {"shape": list(value.shape), "dtype": str(value.dtype)}
    return {
        "name": ds.name,
        "dim": ds.dim,
        "distance": ds.distance,
        "metric": ds.metric,
        "arrays": arrays,
        "attrs": dict(ds.attrs),
    }


@datasets_group.command("show")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_clean_errors
def datasets_show(file: str, as_json: bool) -> None:
    """Show the shapes, metric and attributes of FILE (a path or a known dataset name).

    FILE may be .hdf5/.h5 (ann-benchmarks layout), .npy, .fvecs or .bvecs.

    \b
    Example:
      annlib datasets show datasets/debian-minilm-10k.hdf5
    """
    report = _describe(_datasets.load(file))
    if as_json:
        _emit_json(report)
        return
    click.echo(f"name      {report['name']}")
    click.echo(f"distance  {report['distance'] or '-'} (annlib metric: {report['metric'] or '-'})")
    for key, array in report["arrays"].items():
        click.echo(f"{key:<9} {tuple(array['shape'])} as {array['dtype']}")
    for key, value in sorted(report["attrs"].items()):
        click.echo(f"  {key}: {value}")


@datasets_group.command("ground-truth")
@click.argument("file")
@click.option("-k", "k", type=click.IntRange(min=1), default=100, show_default=True, help="Neighbors per query.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write train, test and the recomputed ground truth to this HDF5 file.",
)
@click.option("--threads", type=click.IntRange(min=0), default=None, help="Threads (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_clean_errors
def datasets_ground_truth(file: str, k: int, out: str | None, threads: int | None, as_json: bool) -> None:
    """Recompute exact ground truth for FILE and compare it with the stored one (or write it).

    Agreement is reported as id recall (shared ids) and ann-benchmarks distance recall (ties
    count) over the first min(k, stored k) neighbors, plus the largest distance difference.

    \b
    Examples:
      annlib datasets ground-truth datasets/debian-minilm-10k.hdf5 -k 10
      annlib datasets ground-truth my.hdf5 -k 100 --out my-fixed.hdf5
    """
    ds = _datasets.load(file)
    if ds.test is None:
        raise click.ClickException(f"{file} has no 'test' queries to compute ground truth for")
    if ds.metric is None:
        raise click.ClickException(f"{file}: distance {ds.distance!r} is not supported (angular, euclidean, dot)")
    neighbors, distances = _datasets.ground_truth(ds.train, ds.test, k, ds.metric, num_threads=threads)
    report: dict[str, Any] = {"file": file, "k": k, "queries": int(ds.test.shape[0]), "distance": ds.distance}
    if ds.neighbors is not None and ds.distances is not None:
        depth = min(k, ds.neighbors.shape[1])
        report["compared_k"] = depth
        report["id_recall"] = _metrics.id_recall(neighbors, ds.neighbors, depth)
        report["distance_recall"] = _metrics.recall(
            distances, ds.distances, depth, larger_is_better=ds.distance == "dot"
        )
        report["max_abs_distance_diff"] = float(np.max(np.abs(distances[:, :depth] - ds.distances[:, :depth])))
    if out is not None:
        extra = {
            key: value for key, value in ds.attrs.items() if key not in ("type", "distance", "point_type", "dimension")
        }
        _datasets.write_hdf5(out, ds.train, ds.test, neighbors, distances, ds.distance, **extra)
        report["out"] = out
    if as_json:
        _emit_json(report)
        return
    click.echo(f"computed exact top {k} for {report['queries']} queries ({ds.distance})")
    if "compared_k" in report:
        click.echo(
            f"vs stored @{report['compared_k']}: id recall {report['id_recall']:.4f}, "
            f"distance recall {report['distance_recall']:.4f}, "
            f"max |distance diff| {report['max_abs_distance_diff']:.3g}"
        )
    else:
        click.echo("the file stores no ground truth to compare with")
    if out is not None:
        click.echo(f"wrote {out}")


# ---------------------------------------------------------------------------------------------
# demo: the README's main job


@main.command()
@click.option("--dataset", default="debian-minilm-10k", show_default=True, help="Registry name or file.")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbors per query.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_clean_errors
def demo(dataset: str, k: int, as_json: bool) -> None:
    """Search the embedded real sample exactly and with the quantization index (with and
    without SOAR); print recall@k against the file's ground truth and queries per second.

    \b
    Example:
      annlib demo
      annlib demo --dataset ../shared/datasets/debian-minilm-384-angular.hdf5
    """
    import time

    ds = _datasets.load(dataset)
    if ds.test is None or ds.distances is None:
        raise click.ClickException(f"{dataset}: needs test queries and ground truth")
    k = min(k, ds.distances.shape[1])
    n = ds.train.shape[0]
    num_leaves = max(1, int(round(n**0.5)))
    leaves_to_search = max(1, num_leaves // 10)
    contenders = [
        ("BruteForce (exact)", lambda: annlib.BruteForce(ds.train, ds.metric), {}),
        (
            f"TreeAh L={num_leaves}",
            lambda: annlib.TreeAhIndex(ds.train, ds.metric, num_leaves=num_leaves, num_leaves_to_search=leaves_to_search),
            {"leaves_to_search": leaves_to_search},
        ),
        (
            f"TreeAh L={num_leaves} +SOAR",
            lambda: annlib.TreeAhIndex(
                ds.train, ds.metric, num_leaves=num_leaves, num_leaves_to_search=leaves_to_search, soar_lambda=1.5
            ),
            {"leaves_to_search": max(1, leaves_to_search // 2)},
        ),
    ]
    rows = []
    for name, build, search_args in contenders:
        start = time.perf_counter()
        index = build()
        build_s = time.perf_counter() - start
        index.search_batched(ds.test[:10], k, **search_args)  # warm-up
        start = time.perf_counter()
        result = index.search_batched(ds.test, k, **search_args)
        search_s = time.perf_counter() - start
        found = _metrics.distances_in_file_convention(result.distances, ds.metric, ds.distance)
        rows.append(
            {
                "index": name,
                "search_args": search_args,
                "recall": _metrics.recall(found, ds.distances, k),
                "qps": len(ds.test) / search_s,
                "build_s": build_s,
            }
        )
    report = {"dataset": ds.name, "n": int(ds.train.shape[0]), "dim": int(ds.train.shape[1]), "k": k, "rows": rows}
    if as_json:
        _emit_json(report)
        return
    click.echo(f"{ds.name}: {report['n']} points x {report['dim']} dims, {len(ds.test)} queries, k={k}")
    for row in rows:
        click.echo(
            f"  {row['index']:<26} recall@{k} {row['recall']:.4f}   {row['qps']:>10,.0f} QPS   build {row['build_s']:.2f}s"
        )


# ---------------------------------------------------------------------------------------------
# indexes: build, search, info INDEX, tune


def _mb(nbytes: float) -> str:
    if nbytes < 2**20:
        return f"{nbytes / 2**10:,.1f} KB"
    return f"{nbytes / 2**20:,.1f} MB"


def _load_index(path: str) -> annlib.TreeAhIndex:
    return annlib.TreeAhIndex.load(path)


def _load_matrix(path: str, what: str) -> tuple[np.ndarray, _datasets.Dataset]:
    """Rows of a data file: ``train`` of an HDF5 file for DATA, ``test`` for QUERIES; .npy/.fvecs/.bvecs as is."""
    ds = _datasets.load(path)
    if what == "queries" and ds.test is not None:
        return ds.test, ds
    if what == "queries" and str(path).lower().endswith((".hdf5", ".h5")):
        raise click.ClickException(f"{path} has no 'test' queries")
    return ds.train, ds


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
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_clean_errors
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
    train, ds = _load_matrix(data, "data")
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
        _emit_json(report)
        return
    soar = f", {stats['spilled_points']:,} spilled by SOAR" if soar_lambda is not None else ""
    click.echo(f"built {out}")
    click.echo(f"  points      {stats['n']:,} x {stats['dim']} dims ({metric})")
    click.echo(f"  partitions  {stats['num_leaves']:,} (search {report['leaves_to_search']}){soar}")
    click.echo(f"  memory      {_mb(stats['total_bytes'])} (file {_mb(report['file_bytes'])})")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the ids unless --out is given).")
@_clean_errors
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
    idx = _load_index(index)
    rows, ds = _load_matrix(queries, "queries")
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
        _emit_json(report)
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


def _index_info(path: str, as_json: bool) -> None:
    header = annlib.io.read_header(path)
    idx = _load_index(path)  # verifies every section's checksum
    stats = idx.stats()
    sizes = stats["partition_size"]
    report = {
        "file": path,
        "kind": header["kind"],
        "format_version": header["format_version"],
        "written_by": header["annlib_version"],
        "file_bytes": header["file_size"],
        "config": idx.config,
        "points": stats["n"],
        "dim": stats["dim"],
        "partitions": stats["num_leaves"],
        "entries": stats["entries"],
        "spilled_points": stats["spilled_points"],
        "partition_size": sizes,
        "imbalance": sizes["max"] / sizes["mean"] if sizes["mean"] else None,
        "memory_bytes": stats["memory_bytes"],
        "total_bytes": stats["total_bytes"],
        "build_seconds": stats["build_seconds"],
    }
    if as_json:
        _emit_json(report)
        return
    c = idx.config
    tree, ah, reorder = c["tree"], c["ah"], c["reorder"]
    click.echo(f"file        {path} ({_mb(header['file_size'])}, format v{header['format_version']}, written by annlib {header['annlib_version']})")
    click.echo(f"kind        {header['kind']}, metric {c['metric']}, k={c['num_neighbors']}")
    click.echo(f"points      {stats['n']:,} x {stats['dim']} dims, {stats['entries']:,} entries ({stats['spilled_points']:,} spilled)")
    click.echo(
        f"tree        num_leaves={tree['num_leaves']} num_leaves_to_search={tree['num_leaves_to_search']} "
        f"soar_lambda={tree['soar_lambda']} seed={tree['seed']} training_sample_size={tree['training_sample_size']}"
    )
    click.echo(f"ah          dims_per_block={ah['dims_per_block']} anisotropic_quantization_threshold={ah['anisotropic_quantization_threshold']}")
    click.echo("reorder     " + (f"{reorder['num_neighbors']} ({reorder['quantize']})" if reorder else "off"))
    click.echo(
        f"partitions  min {sizes['min']:,} / mean {sizes['mean']:,.1f} / max {sizes['max']:,}, "
        f"{sizes['empty']} empty, max/mean {report['imbalance']:.2f}"
    )
    parts = sorted(stats["memory_bytes"].items(), key=lambda kv: -kv[1])
    click.echo(f"memory      {_mb(stats['total_bytes'])}: " + ", ".join(f"{name} {_mb(n)}" for name, n in parts))
    if stats["build_seconds"] is not None:
        click.echo(f"build time  {stats['build_seconds']:.2f} s")


# ---------------------------------------------------------------------------------------------
# tune: written against TreeAhIndex.autotune(target_recall=..., queries=...), which another
# developer is finishing (annlib/autotune/). It reports cleanly when the method or its package
# is missing; revisit the printed fields once annlib.autotune.Tuning is settled.


@main.command()
@click.argument("index", type=click.Path(exists=True, dir_okay=False))
@click.argument("queries", required=False)
@click.option("--target-recall", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True, help="Recall@k to reach.")
@click.option("-k", "k", type=click.IntRange(min=1), default=None, help="Neighbors per query (default: the index's).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Save the index with the tuned defaults here.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_clean_errors
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
    idx = _load_index(index)
    if not hasattr(idx, "autotune"):
        raise click.ClickException("autotuning is not available in this annlib version (TreeAhIndex.autotune is missing)")
    rows, ds = (None, None) if queries is None else _load_matrix(queries, "queries")
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
        _emit_json(report)
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


# ---------------------------------------------------------------------------------------------
# bench


def _algorithm_list(_ctx, _param, value: str) -> list[str]:
    from annlib.bench import ALGORITHMS

    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALGORITHMS]
    if unknown or not names:
        raise click.BadParameter(f"unknown {', '.join(unknown) or '(none)'}; choose from {','.join(ALGORITHMS)}")
    return names


@main.command("bench")
@click.option("--dataset", default="debian-minilm-10k", show_default=True, help="Registry name or ann-benchmarks .hdf5 file.")
@click.option(
    "--algorithms",
    default="annlib,annlib-soar,scann,faiss-ivfpq,faiss-hnsw,hnswlib,jax-bruteforce",
    show_default=True,
    callback=_algorithm_list,
    help="Comma-separated; peers that are not installed are skipped.",
)
@click.option(
    "--mode",
    type=click.Choice(["single", "batch"]),
    default="single",
    show_default=True,
    help="single: one query per call on one CPU (ann-benchmarks' default); batch: all queries per call, all cores.",
)
@click.option("-k", "--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbors per query.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True, help="Timed runs per point; the best counts.")
@click.option("--queries", "max_queries", type=click.IntRange(min=1), default=None, help="Use only the first N queries (quick runs).")
@click.option("--out", "out", type=click.Path(file_okay=False), default="annlib-bench", show_default=True, help="Output directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_clean_errors
def bench_command(
    dataset: str, algorithms: list[str], mode: str, k: int, runs: int, max_queries: int | None, out: str, as_json: bool
) -> None:
    """Benchmark annlib and its peers (recall vs QPS sweeps) on one dataset, ann-benchmarks style.

    Writes <out>/<dataset>-<mode>-k<k>.csv (every point), .md (QPS at recall 0.80/0.90/0.95/0.99,
    build time, index size) and .png (recall-vs-QPS Pareto frontiers, log QPS axis). Peers come
    from `pip install 'annlib[bench]'`.

    \b
    Examples:
      annlib bench
      annlib bench --dataset ../shared/datasets/debian-minilm-384-angular.hdf5 --mode batch --out bench/out
      annlib bench --algorithms annlib,hnswlib --queries 100 --runs 1
    """
    from annlib import bench as _bench

    command = f"annlib bench --dataset {dataset} --algorithms {','.join(algorithms)} --mode {mode} --k {k} --runs {runs}"
    if max_queries is not None:
        command += f" --queries {max_queries}"

    def notice(line: str) -> None:
        click.echo(line, err=True)

    result, files = _bench.benchmark(
        dataset, algorithms, mode, k, out, runs, max_queries, command=command, progress=not as_json, notice=notice
    )
    if as_json:
        rows = _bench.summary_rows(result)
        for row in rows:
            row["at"] = {f"{target:.2f}": value for target, value in row["at"].items()}
        _emit_json({"files": files, "seconds": result.seconds, "skipped": result.skipped, "algorithms": rows})
        return
    with open(files["table"]) as f:
        click.echo(f.read())
    click.echo(f"wrote {files['csv']}, {files['table']}, {files['plot']} in {result.seconds:.0f} s")


if __name__ == "__main__":  # pragma: no cover
    main()
