"""The value every search returns."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class SearchResult(NamedTuple):
    """Neighbors of each query, best first.

    ``ids`` is int64 of shape (nq, k): row ids into the indexed data, ``-1`` for a slot
    that could not be filled (k larger than the data, or the probed partitions held
    fewer than k points). ``distances`` is float32 of shape (nq, k):

    * ``"dot"``: the inner product <q, x> (larger is better); empty slots hold ``-inf``.
    * ``"cosine"``: the cosine similarity (larger is better); empty slots hold ``-inf``.
    * ``"squared_l2"``: the squared Euclidean distance (smaller is better); empty slots hold ``+inf``.

    It unpacks like a tuple: ``ids, distances = index.search_batched(queries, k)``.
    """

    ids: np.ndarray
    distances: np.ndarray
