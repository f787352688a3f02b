"""Functions a spawn-mode worker process runs in the protocol tests (a spawned child imports them by name)."""

from __future__ import annotations


def search_in_worker(index, queries, k):
    result = index.search_batched(queries, k, num_threads=1)
    return type(index).__name__, result.ids, result.distances
