"""annlib's JAX path (issue 5): TPU-KNN brute force with the PartialReduce top-k.

Chern et al., "TPU-KNN: K Nearest Neighbor Search at Peak FLOP/s" (NeurIPS 2022,
arXiv 2206.14286); ``docs/algorithms.md`` section 6. One stage per module:

* :mod:`.partial_reduce` - the recall model (``expected_recall``,
  ``bins_for_recall``) and the strided-bin reduction, also as an op on a score matrix;
* :mod:`.knn` - the jitted scan: scores by matmul tile by tile, folded into the bins,
  then an exact top-k over the bin winners;
* :mod:`.search` - the validated entry point (numpy or device arrays in, numpy out);
* :mod:`.sharding` - the same search with the database sharded over devices;
* :mod:`.roofline` - the calibrated roofline cost model;
* the index kind :class:`annlib.JaxBruteForce` lives in :mod:`annlib.index.jax_brute_force`.

The public names are re-exported by :mod:`annlib.tpu_knn` and ``annlib.JaxBruteForce``.
JAX is an optional dependency; ``annlib`` imports this package only on first use.
"""

from annlib._optional import import_optional

# The top-level JAX, not this package; a clear message (naming the extra) when it is missing.
import_optional("jax", "jax", "annlib's JAX path (annlib.tpu_knn, JaxBruteForce)")
