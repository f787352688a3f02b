"""Sharded indexes on Ray (the ``ray`` extra: ``pip install "annlib[ray]"``).

:class:`ShardedIndex` splits a database into shards, each an annlib index held by a Ray
actor; see :mod:`annlib.distributed.sharded` for the search rounds, faults and persistence,
and :mod:`annlib.distributed.manifest` for the saved layout.
"""

from annlib.distributed.sharded import MERGES, ShardedIndex, ShardError

__all__ = ["MERGES", "ShardError", "ShardedIndex"]
