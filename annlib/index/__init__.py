"""Every index kind, behind one protocol (:class:`annlib.index.protocol.Index`).

=====================  ===================  =========================================
kind                   class                search parameters
=====================  ===================  =========================================
``brute_force``        ``BruteForce``       none (exact)
``tree_ah``            ``TreeAhIndex``      ``leaves_to_search``, ``pre_reorder_num_neighbors``
``jax_brute_force``    ``JaxBruteForce``    ``recall_target`` (needs the ``jax`` extra)
=====================  ===================  =========================================

:func:`load_index` reads a file's kind and returns the right class.
"""

from __future__ import annotations

import importlib
import os

from annlib import io as _io
from annlib.errors import FormatError
from annlib.index.brute_force import BruteForce
from annlib.index.params import BruteForceSearchParams, JaxSearchParams, TreeAhSearchParams
from annlib.index.protocol import Index
from annlib.index.tree_ah import TreeAhIndex
from annlib.index.tree_ah_layout import TreeAhLayout

# The JAX kind is imported on first use: importing jax costs seconds and is an optional extra.
_KINDS = {
    "brute_force": ("annlib.index.brute_force", "BruteForce"),
    "tree_ah": ("annlib.index.tree_ah", "TreeAhIndex"),
    "jax_brute_force": ("annlib.index.jax_brute_force", "JaxBruteForce"),
}

KINDS = tuple(_KINDS)


def index_class(kind: str) -> type[Index]:
    """The class of index kind ``kind``; an unknown kind is a FormatError (it comes from a file)."""
    try:
        module, name = _KINDS[kind]
    except (KeyError, TypeError):
        raise FormatError(f"unknown index kind {kind!r} (known: {', '.join(KINDS)})") from None
    return getattr(importlib.import_module(module), name)


def load_index(path, mmap: bool = True) -> Index:
    """Load an index file of any kind written by ``index.save(path)``.

    Arrays are memory-mapped when ``mmap`` (the default), so loading is fast and pages are
    read on demand. With ``mmap=False`` they are read into memory, except the float32 rows of
    a tree-AH index with two-stage reordering (int8, then float32: ``exact_num_neighbors``),
    which stay memory-mapped: only its final rescoring reads them, a few rows per query.
    A corrupt, truncated, crafted or newer-version file raises :class:`annlib.FormatError`.
    """
    path = os.fspath(path)
    kind, config, arrays = _io.load_index_file(path, mmap=mmap, mapped=_sections_on_disk)
    return index_class(kind)._from_state(config, arrays, path)


def _sections_on_disk(kind, config) -> tuple[str, ...]:
    try:
        cls = index_class(kind)
    except FormatError:
        return ()  # load_index_file's caller reports the unknown kind
    return cls._sections_on_disk(config)


def __getattr__(name):
    if name == "JaxBruteForce":
        return index_class("jax_brute_force")
    raise AttributeError(f"module 'annlib.index' has no attribute {name!r}")


__all__ = [
    "KINDS",
    "BruteForce",
    "BruteForceSearchParams",
    "Index",
    "JaxBruteForce",
    "JaxSearchParams",
    "TreeAhIndex",
    "TreeAhLayout",
    "TreeAhSearchParams",
    "index_class",
    "load_index",
]
