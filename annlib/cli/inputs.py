"""Reading what the commands are given (data and query matrices, index files, output paths) and
the checks that keep bad values from reaching the library as huge allocations."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click
import numpy as np

import annlib
import annlib.io
from annlib import datasets as _datasets

COUNT = click.IntRange(min=1, max=2**31 - 1)
"""Counts (k, partitions, candidates): positive and small enough for the core's integer types."""
THREADS = click.IntRange(min=0, max=1024)
THREADS_HELP = "Threads (default: all cores; at most 1024)."
SEED = click.IntRange(min=0, max=2**32 - 1)


def note(message: str) -> None:
    """A remark about the run on stderr, kept off stdout so --json output stays parseable."""
    click.echo(f"note: {message}", err=True)


def load_dataset(path: str) -> _datasets.Dataset:
    try:
        return _datasets.load(path)
    except EOFError:  # numpy's answer to an empty or cut-off .npy
        raise click.ClickException(f"{path}: the file is empty or truncated") from None


def load_matrix(path: str, what: str) -> tuple[np.ndarray, _datasets.Dataset]:
    """Rows of a data file: ``train`` of an HDF5 file for DATA, ``test`` for QUERIES; .npy/.fvecs/.bvecs as is."""
    ds = load_dataset(path)
    if what == "queries" and ds.test is not None:
        rows = ds.test
    elif what == "queries" and str(path).lower().endswith((".hdf5", ".h5")):
        raise click.ClickException(f"{path} has no 'test' queries")
    else:
        rows = ds.train
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise click.ClickException(f"{path} holds no {what} (shape {tuple(rows.shape)})")
    return rows, ds


# A file whose header parses but whose configuration has the wrong shape can surface as one of
# these from the loader; they are the file's fault, so they are reported as such.
_MALFORMED = (AttributeError, KeyError, TypeError, IndexError, OverflowError, RecursionError)


def read_header(path: str) -> dict:
    try:
        return annlib.io.read_header(path)
    except _MALFORMED as exc:
        raise click.ClickException(f"{path}: malformed index header ({type(exc).__name__}: {exc})") from None


def load_index(path: str) -> annlib.Index:
    """The index in ``path``, whatever its kind (``annlib.load_index``)."""
    try:
        return annlib.load_index(path)
    except annlib.FormatError as exc:
        # Some loader errors (an unknown kind) do not say which file they are about.
        if path in str(exc):
            raise
        raise click.ClickException(f"{path}: {exc}") from None
    except ImportError as exc:  # a kind whose optional dependency (e.g. jax) is not installed
        raise click.ClickException(f"{path}: cannot load this kind of index here: {exc}") from None
    except _MALFORMED as exc:
        raise click.ClickException(f"{path}: malformed index file ({type(exc).__name__}: {exc})") from None


def search_defaults(index: annlib.Index) -> dict[str, Any]:
    """The index's default search parameters, by their protocol names."""
    return dataclasses.asdict(index.search_defaults)


def search_params(index, flags: dict[str, tuple[str, int | float | None]]) -> dict[str, Any]:
    """Keyword arguments for ``index.search_batched`` from ``{flag: (parameter, value)}``.

    A flag whose parameter the index's kind does not have is a one-line error, not silently
    ignored. (Candidate counts need no cap here: the search clamps them to the index size.)
    """
    defaults = search_defaults(index)
    chosen = {}
    for flag, (name, value) in flags.items():
        if value is None:
            continue
        if name not in defaults:
            has = ", ".join(sorted(defaults)) or "none"
            raise click.BadParameter(
                f"a {index.kind} index has no {name} search parameter (its parameters: {has})",
                param_hint=flag,
            )
        chosen[name] = value
    return chosen


def cap_k(k: int, index, flag: str = "-k") -> int:
    """At most one neighbor per indexed point: a larger k would only pad the results."""
    if k > index.n:
        note(f"{flag} {k} is more than the {index.n} points the index holds; returning {index.n} per query")
        return index.n
    return k


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
    """Run ``write(path)``, reporting a failure as one line that names ``path`` (not a temporary file)."""
    try:
        write(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise click.ClickException(f"cannot write {path}: {reason}") from None
