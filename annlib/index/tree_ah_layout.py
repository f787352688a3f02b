"""A read-only view of a tree-AH index's structure and stage-wise scoring.

This is the seam through which the autotuner (and reports such as ``annlib info``) see the
index: partitions, point assignments and the scores each search stage computes, with the
index's own kernels, without touching its private state. Every array is a read-only view.
"""

from __future__ import annotations

import numpy as np

from annlib import _core
from annlib._vectors import normalize_rows
from annlib.config import TreeAhConfig


def _read_only(array: np.ndarray | None) -> np.ndarray | None:
    if array is None:
        return None
    view = array.view()
    view.flags.writeable = False
    return view


class TreeAhLayout:
    """Partitions, assignments and stage scores of one :class:`annlib.TreeAhIndex`.

    Queries given to the methods are validated float32 (nq, dim) matrices in the user's space:
    they are normalised here for ``cosine``, as a search does.
    """

    def __init__(self, config: TreeAhConfig, arrays: dict, handle):
        self._config = config
        self._arrays = arrays
        self._handle = handle
        self._core_metric = "squared_l2" if config.metric == "squared_l2" else "dot"
        self.metric: str = config.metric
        self.num_leaves: int = config.tree.num_leaves
        self.dims_per_block: int = config.ah.dims_per_block
        self.overretrieve_factor: float = float(config.tree.overretrieve_factor)
        self.has_reorder: bool = config.reorder is not None
        self.spilled: bool = "secondary_leaf" in arrays
        self.n: int = int(arrays["primary_leaf"].shape[0])
        self.dim: int = int(arrays["centers"].shape[1])
        self.centers = _read_only(arrays["centers"])
        #: The PQ codebook, 16 codewords per block (16 * dim floats).
        self.codebook = _read_only(arrays["codebook"])
        self.primary_leaf = _read_only(arrays["primary_leaf"])
        self.secondary_leaf = _read_only(arrays.get("secondary_leaf"))
        self.leaf_sizes = _read_only(np.diff(arrays["leaf_offsets"]))
        #: The float32 vectors reordering rescores with (unit-normalised for cosine), or None.
        self.reorder_vectors = _read_only(arrays.get("reorder_float"))
        #: ||x||^2 of every point (squared_l2 only, else None): the exact score is 2<q, x> - ||x||^2.
        self.point_sq_norms = _read_only(arrays.get("point_sq_norms"))

    def _prepared(self, queries: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            queries = normalize_rows(queries)
        return np.ascontiguousarray(queries, dtype=np.float32)

    def exact_neighbors(self, queries: np.ndarray, k: int, num_threads: int) -> np.ndarray | None:
        """Row ids of the exact top-``k`` of each query, best first, scored on :attr:`reorder_vectors`
        by the C++ exact kernel; None when the index keeps no float32 reordering data. Reads the
        index's own rows and norms: a :class:`annlib.BruteForce` over them would first copy (for
        cosine renormalise) every row and recompute the norms, 6-15% of the time (issue 16)."""
        if self.reorder_vectors is None or (self._core_metric == "squared_l2" and self.point_sq_norms is None):
            return None
        ids, _ = _core.exact_search(self.reorder_vectors, self.point_sq_norms if self._core_metric == "squared_l2"
                                    else None, self._prepared(queries), int(k), self._core_metric, int(num_threads))
        return ids

    def center_scores(self, queries: np.ndarray) -> np.ndarray:
        """(nq, num_leaves) partition scores as the search ranks them (larger is better)."""
        scores = _core.dot_block(self._prepared(queries), self._arrays["centers"])
        if self._core_metric == "squared_l2":
            scores = 2.0 * scores - self._arrays["center_sq_norms"][None, :]
        return scores

    def ah_ranks(self, queries: np.ndarray, truth: np.ndarray, exclude: np.ndarray | None, t1_grid: np.ndarray,
                 max_rank: int, num_threads: int) -> tuple[np.ndarray, np.ndarray]:
        """Rank of each true neighbour among the de-duplicated AH candidates of the ``t1`` best
        partitions, for every ``t1`` of ``t1_grid``, in one scan per query (autotuner statistics).

        Returns ``(ah_rank, entry_rank)``; see :mod:`annlib.autotune.statistics`.
        """
        return _core.autotune_ah_ranks(
            self._arrays, self._core_metric, self.n, self.dim, self.num_leaves, self.dims_per_block, self.spilled,
            self._prepared(queries), np.ascontiguousarray(truth, dtype=np.int64),
            None if exclude is None else np.ascontiguousarray(exclude, dtype=np.int64),
            np.ascontiguousarray(t1_grid, dtype=np.int64), int(max_rank), int(num_threads),
        )

    def ah_candidates(self, queries: np.ndarray, depth: int, leaves_to_search: int, num_threads: int) -> np.ndarray:
        """Ids of the ``depth`` best AH candidates (no reordering) of each query, best first."""
        ids, _ = self._handle.search(self._prepared(queries), int(depth), int(leaves_to_search), 0, int(num_threads),
                                     self.overretrieve_factor)
        return ids

    def ah_candidate_scores(self, queries: np.ndarray, depth: int, leaves_to_search: int,
                            num_threads: int, **core_filters) -> tuple[np.ndarray, np.ndarray]:
        """Row ids and raw AH ranking scores (larger is better; no distance conversion, which would
        round distinct scores to equal distances) of the ``depth`` best candidates of each query,
        without over-retrieval: what shards of one sharded index merge exactly. ``core_filters``:
        the core's filter arguments (:func:`annlib.filter.core_arguments`) with ``leaf_allowed``
        and ``leaf_sizes``, the widened leaf walk of the whole sharded index."""
        return self._handle.search(self._prepared(queries), int(depth), int(leaves_to_search), 0, int(num_threads),
                                   1.0, raw_scores=True, **core_filters)
