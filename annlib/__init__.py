"""annlib: approximate nearest neighbor search with a C++/SIMD core.

The public API is what ``__all__`` lists; ``annlib._core`` is internal.
"""

from annlib import _simd, datasets, metrics
from annlib._simd import cpu_info, isa_override, set_isa, supported_isas
from annlib.autotune import Tuning, build
from annlib.brute_force import BruteForce
from annlib.builder import Builder, builder
from annlib.datasets import Dataset, ground_truth, load
from annlib.errors import AnnlibError, DatasetError, FormatError, NotTrainedError
from annlib.metrics import id_recall, recall
from annlib.result import SearchResult
from annlib.tree_ah import TreeAhIndex

__version__ = "0.1.0"

_simd.apply_env_override()


def __getattr__(name):
    # The JAX path is optional and heavy to import: load it on first use.
    import importlib

    if name == "tpu_knn":
        return importlib.import_module("annlib.tpu_knn")
    if name == "JaxBruteForce":
        return importlib.import_module("annlib.jax.index").JaxBruteForce
    raise AttributeError(f"module 'annlib' has no attribute {name!r}")

__all__ = [
    "AnnlibError",
    "BruteForce",
    "Builder",
    "Dataset",
    "DatasetError",
    "FormatError",
    "NotTrainedError",
    "SearchResult",
    "TreeAhIndex",
    "Tuning",
    "__version__",
    "build",
    "builder",
    "cpu_info",
    "datasets",
    "ground_truth",
    "id_recall",
    "isa_override",
    "load",
    "metrics",
    "recall",
    "set_isa",
    "supported_isas",
]
