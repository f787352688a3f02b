"""The ``annlib`` command line: a thin client of the public Python API.

One module per command group; importing them registers their commands on :data:`main`:
:mod:`~annlib.cli.app` (the group, one-line errors, strict JSON), :mod:`~annlib.cli.info`,
:mod:`~annlib.cli.index_commands` (build, search, tune), :mod:`~annlib.cli.datasets`,
:mod:`~annlib.cli.bench`, :mod:`~annlib.cli.demo` and :mod:`~annlib.cli.mutate` (add, delete).
"""

from annlib.cli import bench, datasets, demo, index_commands, info, mutate  # noqa: F401  (register the commands)
from annlib.cli.app import main

__all__ = ["main"]
