"""``annlib add`` and ``annlib delete``: change a saved index in place (or into ``--out``).

Each loads the index, applies one write through the Python API (``index.add`` /
``index.delete``) and saves it atomically: the file at the destination is replaced only once
the new one is complete, so a crash leaves the old index, never half of the new one.
"""

from __future__ import annotations

import os

import click
import numpy as np

from annlib.cli.app import JSON_HELP, emit_json, main
from annlib.cli.inputs import check_dim, check_writable, load_index, load_matrix, save


def read_ids(path: str, option: str) -> np.ndarray:
    """Integer ids from a .npy file, or from a text file of integers separated by whitespace or commas."""
    if not os.path.isfile(path):
        raise click.BadParameter(f"{path}: no such file", param_hint=option)
    if path.lower().endswith(".npy"):
        ids = np.load(path, allow_pickle=False)
    else:
        with open(path, encoding="utf-8") as f:
            words = f.read().replace(",", " ").split()
        try:
            ids = np.array([int(w) for w in words], dtype=np.int64)
        except ValueError as exc:
            raise click.BadParameter(f"{path}: ids must be integers ({exc})", param_hint=option) from None
    ids = np.asarray(ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise click.BadParameter(f"{path}: expected a 1-D array of integer ids, got {ids.dtype} {ids.shape}",
                                 param_hint=option)
    return ids.astype(np.int64)


def _report(as_json: bool, out: str, index, action: str, count: int) -> None:
    health = index.health()
    report = {"out": out, "kind": index.kind, action: count, "points": len(index),
              "deleted_fraction": health["deleted_fraction"], "advice": health["advice"]}
    if as_json:
        emit_json(report)
        return
    click.echo(f"{action} {count:,} points: {out} holds {len(index):,}")
    if health["advice"]:
        click.echo(f"  advice      {', '.join(health['advice'])} (see index.health())")


@main.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(exists=True, dir_okay=False))
@click.argument("vectors")
@click.option("--ids", "ids_path", default=None, help="User ids of the new points (.npy or text; default: after the largest).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Write here instead of INDEX.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def add(index_path: str, vectors: str, ids_path: str | None, out: str | None, as_json: bool) -> None:
    """Add the rows of VECTORS (.npy/.fvecs/.hdf5 train) to the index in INDEX."""
    out = out or index_path
    check_writable(out)
    index = load_index(index_path)
    rows, _ = load_matrix(vectors, "data")
    check_dim(rows, vectors, index, index_path)
    ids = None if ids_path is None else read_ids(ids_path, "--ids")
    if ids is not None and len(ids) != len(rows):
        raise click.BadParameter(f"{ids_path} holds {len(ids)} ids for {len(rows)} vectors", param_hint="--ids")
    try:
        added = index.add(rows, ids)
    except KeyError as exc:  # an id already in the index: the library's message, without KeyError's quotes
        raise click.ClickException(str(exc.args[0])) from None
    save(index.save, out)
    _report(as_json, out, index, "added", len(added))


@main.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(exists=True, dir_okay=False))
@click.argument("ids_path", metavar="IDS")
@click.option("--ignore-missing", is_flag=True, help="Skip ids the index does not hold instead of failing.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Write here instead of INDEX.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def delete(index_path: str, ids_path: str, ignore_missing: bool, out: str | None, as_json: bool) -> None:
    """Delete the points whose ids are in IDS (.npy or text) from the index in INDEX."""
    out = out or index_path
    check_writable(out)
    index = load_index(index_path)
    ids = read_ids(ids_path, "IDS")
    try:
        count = index.delete(ids, missing="ignore" if ignore_missing else "raise")
    except KeyError as exc:
        raise click.ClickException(f"{exc.args[0]} (--ignore-missing skips them)") from None
    save(index.save, out)
    _report(as_json, out, index, "deleted", count)
