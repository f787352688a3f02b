"""Sharded indexes on Ray (the ``ray`` extra: ``pip install "annlib[ray]"``).

:class:`ShardedIndex` splits a database into shards, each an annlib index held by a Ray
actor; see :mod:`annlib.distributed.sharded` for the search rounds, faults and persistence,
and :mod:`annlib.distributed.manifest` for the saved layout.
"""

__all__ = ["MERGES", "ShardError", "ShardedIndex"]


def __getattr__(name):
    # Ray is imported on first use, so the pure pieces (the merge, the manifest) work without it.
    if name in __all__:
        from annlib.distributed import sharded  # noqa: PLC0415

        return getattr(sharded, name)
    raise AttributeError(f"module 'annlib.distributed' has no attribute {name!r}")
