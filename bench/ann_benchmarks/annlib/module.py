"""annlib's quantization index in ann-benchmarks (erikbern/ann-benchmarks).

Lives at ``ann_benchmarks/algorithms/annlib/`` of an ann-benchmarks checkout (README.md).
``Annlib(metric, num_leaves, avq_threshold, dims_per_block, soar_lambda)`` builds a k-means tree
with anisotropic 4-bit PQ (LUT16) and exact reordering, with SOAR spilling when ``soar_lambda``
is set; the query arguments are ``[leaves_to_search, reorder]`` pairs, as ScaNN's module takes.
The JAX brute force is a separate algorithm folder (``annlib_jax``), so this one needs no JAX.
"""

import math

import numpy as np

import annlib

from ..base.module import BaseANN

# ann-benchmarks' distance (the @metric variable) -> annlib's metric
METRICS = {"angular": "cosine", "euclidean": "squared_l2"}


def annlib_metric(distance):
    if distance not in METRICS:
        raise ValueError(f"annlib runs angular and euclidean datasets, not {distance!r}")
    return METRICS[distance]


def no_threshold(value):
    # ScaNN's configs write .nan for "no anisotropic loss", YAML null reads as None
    return value is None or (isinstance(value, float) and math.isnan(value))


class Annlib(BaseANN):
    def __init__(self, metric, num_leaves, avq_threshold, dims_per_block, soar_lambda=None):
        self.metric = annlib_metric(metric)
        self.num_leaves = int(num_leaves)
        self.avq_threshold = None if no_threshold(avq_threshold) else float(avq_threshold)
        self.dims_per_block = int(dims_per_block)
        self.soar_lambda = None if soar_lambda is None else float(soar_lambda)
        self.index = None
        self.leaves_to_search, self.reorder = 1, 100
        soar = "" if self.soar_lambda is None else f" soar_lambda={self.soar_lambda}"
        self.build_name = (
            f"annlib num_leaves={self.num_leaves} avq_threshold={self.avq_threshold} "
            f"dims_per_block={self.dims_per_block}{soar}"
        )
        self.name = self.build_name

    def fit(self, X):
        # at most one leaf per point on the small test sets (random-xs: 10k points)
        self.num_leaves = min(self.num_leaves, len(X))
        self.index = annlib.TreeAhIndex(
            np.ascontiguousarray(X, dtype=np.float32),
            self.metric,
            num_leaves=self.num_leaves,
            num_leaves_to_search=1,
            training_sample_size=len(X),
            soar_lambda=self.soar_lambda,
            dims_per_block=self.dims_per_block,
            anisotropic_quantization_threshold=self.avq_threshold,
            reorder=100,
        )

    def set_query_arguments(self, leaves_reorder):
        leaves, reorder = leaves_reorder
        self.leaves_to_search = max(1, min(int(leaves), self.num_leaves))
        self.reorder = int(reorder)
        self.name = f"{self.build_name} leaves_to_search={self.leaves_to_search} reorder={self.reorder}"

    def query(self, v, n):
        ids = self.index.search(v, n, leaves_to_search=self.leaves_to_search, pre_reorder_num_neighbors=self.reorder).ids
        # the runner asserts unique ids: drop the -1 slots of partitions too small to fill n
        return ids[ids >= 0]

    def batch_query(self, X, n):
        # num_threads=None: the CPUs of the container's cpuset (annlib.default_num_threads)
        ids = self.index.search_batched(
            X, n, leaves_to_search=self.leaves_to_search, pre_reorder_num_neighbors=self.reorder
        ).ids
        self.res = [row[row >= 0] for row in ids]

    def get_additional(self):
        # annlib's own count of its arrays, next to the harness's RSS-based index_size
        return {} if self.index is None else {"annlib_index_bytes": int(self.index.stats()["total_bytes"])}

    def done(self):
        self.index = None
