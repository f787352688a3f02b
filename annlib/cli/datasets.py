"""``annlib datasets``: list, download, inspect and re-check benchmark datasets."""

from __future__ import annotations

import sys
from typing import Any

import click
import numpy as np

from annlib import datasets as _datasets
from annlib import metrics as _metrics
from annlib.cli.app import JSON_HELP, emit_json, main
from annlib.cli.inputs import (
    COUNT,
    THREADS,
    THREADS_HELP,
    check_writable,
    load_dataset,
    save,
)


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
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
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
        emit_json(rows)
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
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
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
        emit_json({"name": name, "path": str(path), "bytes": path.stat().st_size})
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
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def datasets_show(file: str, as_json: bool) -> None:
    """Show the shapes, metric and attributes of FILE (a path or a known dataset name).

    FILE may be .hdf5/.h5 (ann-benchmarks layout), .npy, .fvecs or .bvecs.

    \b
    Example:
      annlib datasets show datasets/debian-minilm-10k.hdf5
    """
    report = _describe(load_dataset(file))
    if as_json:
        emit_json(report)
        return
    click.echo(f"name      {report['name']}")
    click.echo(f"distance  {report['distance'] or '-'} (annlib metric: {report['metric'] or '-'})")
    for key, array in report["arrays"].items():
        click.echo(f"{key:<9} {tuple(array['shape'])} as {array['dtype']}")
    for key, value in sorted(report["attrs"].items()):
        click.echo(f"  {key}: {value}")


@datasets_group.command("ground-truth")
@click.argument("file")
@click.option("-k", "k", type=COUNT, default=100, show_default=True, help="Neighbors per query.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write train, test and the recomputed ground truth to this HDF5 file.",
)
@click.option("--threads", type=THREADS, default=None, help=THREADS_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def datasets_ground_truth(file: str, k: int, out: str | None, threads: int | None, as_json: bool) -> None:
    """Recompute exact ground truth for FILE and compare it with the stored one (or write it).

    Agreement is reported as id recall (shared ids) and ann-benchmarks distance recall (ties
    count) over the first min(k, stored k) neighbors, plus the largest distance difference.

    \b
    Examples:
      annlib datasets ground-truth datasets/debian-minilm-10k.hdf5 -k 10
      annlib datasets ground-truth my.hdf5 -k 100 --out my-fixed.hdf5
    """
    if out is not None:
        check_writable(out)
    ds = load_dataset(file)
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
        save(lambda path: _datasets.write_hdf5(path, ds.train, ds.test, neighbors, distances, ds.distance, **extra), out)
        report["out"] = out
    if as_json:
        emit_json(report)
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
