"""Reading what the commands are given: data and query matrices, index files, output paths."""

from __future__ import annotations

import os

import click
import numpy as np

import annlib
from annlib import datasets as _datasets


def load_matrix(path: str, what: str) -> tuple[np.ndarray, _datasets.Dataset]:
    """Rows of a data file: ``train`` of an HDF5 file for DATA, ``test`` for QUERIES; .npy/.fvecs/.bvecs as is."""
    try:
        ds = _datasets.load(path)
    except EOFError:  # numpy's answer to an empty or cut-off .npy
        raise click.ClickException(f"{path}: the file is empty or truncated") from None
    if what == "queries" and ds.test is not None:
        rows = ds.test
    elif what == "queries" and str(path).lower().endswith((".hdf5", ".h5")):
        raise click.ClickException(f"{path} has no 'test' queries")
    else:
        rows = ds.train
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise click.ClickException(f"{path} holds no {what} (shape {tuple(rows.shape)})")
    return rows, ds


def load_index(path: str):
    return annlib.TreeAhIndex.load(path)


def check_dim(rows: np.ndarray, queries: str, index, index_path: str) -> None:
    if rows.shape[1] != index.dim:
        raise click.ClickException(
            f"dimension mismatch: {queries} has {rows.shape[1]}-dim rows, {index_path} holds {index.dim}-dim points"
        )


def check_writable(path: str, option: str = "--out") -> None:
    """Fail before the work, not after it, when ``path`` cannot be written (and name ``path``, not a temporary)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise click.BadParameter(f"{path} is a directory", param_hint=option)
    if not os.path.isdir(directory):
        raise click.BadParameter(f"cannot write {path}: directory {directory} does not exist", param_hint=option)
    if not os.access(directory, os.W_OK):
        raise click.BadParameter(f"cannot write {path}: directory {directory} is not writable", param_hint=option)


def save(write, path: str) -> None:
    """Run ``write(path)``, reporting a failure as one line that names ``path``."""
    try:
        write(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise click.ClickException(f"cannot write {path}: {reason}") from None


THREADS = click.IntRange(min=0, max=1024)
THREADS_HELP = "Threads (default: all cores; at most 1024)."
