"""TPU-KNN: brute-force k-NN with the PartialReduce approximate top-k, in JAX (issue 5).

The public surface of :mod:`annlib.jax` (one module per stage, see its docstring).
Scores are exact, one matrix multiply per tile; only the top-k selection is
approximate, with an expected recall of at least ``recall_target``.

>>> import numpy as np
>>> from annlib import tpu_knn
>>> x = np.eye(4, dtype=np.float32)
>>> tpu_knn.search(x, x[2], k=1).ids.tolist()
[2]

JAX is an optional dependency: ``annlib`` imports this module only when
``annlib.tpu_knn`` is first used.
"""

from annlib.jax.knn import knn as knn
from annlib.jax.partial_reduce import bins_for_recall as bins_for_recall
from annlib.jax.partial_reduce import expected_recall as expected_recall
from annlib.jax.partial_reduce import partial_reduce as partial_reduce
from annlib.jax.roofline import calibrate as calibrate
from annlib.jax.roofline import predict_time as predict_time
from annlib.jax.search import search as search
from annlib.jax.sharding import search_sharded as search_sharded

__all__ = [
    "bins_for_recall",
    "calibrate",
    "expected_recall",
    "knn",
    "partial_reduce",
    "predict_time",
    "search",
    "search_sharded",
]
