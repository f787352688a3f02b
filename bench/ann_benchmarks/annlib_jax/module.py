"""annlib's JAX brute force in ann-benchmarks: exact scores by matmul, PartialReduce approximate top-k.

Lives at ``ann_benchmarks/algorithms/annlib_jax/`` (see ``annlib/README.md``). It is a folder of
its own because it needs JAX: without it this module fails to import, which ``run.py --local``
reports as an unavailable algorithm and skips, instead of crashing the run.
``AnnlibJax(metric)``; the query argument is ``recall_target``, the expected recall of the top-k.
"""

import jax  # noqa: F401  (the import check: no JAX, no algorithm)
import numpy as np

import annlib

from ..base.module import BaseANN

METRICS = {"angular": "cosine", "euclidean": "squared_l2"}


class AnnlibJax(BaseANN):
    def __init__(self, metric):
        if metric not in METRICS:
            raise ValueError(f"annlib runs angular and euclidean datasets, not {metric!r}")
        self.metric = METRICS[metric]
        self.recall_target = 0.95
        self.index = None
        self.name = "annlib-jax"

    def fit(self, X):
        self.index = annlib.JaxBruteForce(np.ascontiguousarray(X, dtype=np.float32), self.metric)

    def set_query_arguments(self, recall_target):
        self.recall_target = float(recall_target)
        self.name = f"annlib-jax recall_target={self.recall_target}"

    def query(self, v, n):
        ids = self.index.search(v, n, recall_target=self.recall_target).ids
        return ids[ids >= 0]  # -1 pads only when n exceeds the dataset; the runner wants unique ids

    def batch_query(self, X, n):
        ids = self.index.search_batched(X, n, recall_target=self.recall_target).ids
        self.res = [row[row >= 0] for row in ids]

    def get_additional(self):
        return {} if self.index is None else {"annlib_index_bytes": int(self.index.stats()["total_bytes"])}

    def done(self):
        self.index = None
