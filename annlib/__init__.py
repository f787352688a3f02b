"""annlib: approximate nearest neighbor search with a C++/SIMD core.

The public API is what ``__all__`` lists; ``annlib._core`` is internal.
"""

from annlib import _simd, datasets, metrics
from annlib._simd import cpu_info, isa_override, set_isa, supported_isas
from annlib._threads import default_num_threads
from annlib.autobuild import build
from annlib.autotune import Tuning
from annlib.builder import Builder, builder
from annlib.datasets import Dataset, ground_truth
from annlib.datasets import load as load_dataset
from annlib.filter import Filter
from annlib.errors import AnnlibError, DatasetError, FormatError, InvalidTypeError, InvalidValueError, NotTrainedError
from annlib.index import (
    BruteForce,
    BruteForceSearchParams,
    Index,
    JaxSearchParams,
    TreeAhIndex,
    TreeAhSearchParams,
    load_index,
)
from annlib.metrics import id_recall, recall
from annlib.result import SearchResult

__version__ = "0.1.0"

_simd.apply_env_override()


def __getattr__(name):
    # The JAX path is optional and heavy to import: load it on first use.
    import importlib

    if name == "tpu_knn":
        return importlib.import_module("annlib.tpu_knn")
    if name == "JaxBruteForce":
        return importlib.import_module("annlib.index.jax_brute_force").JaxBruteForce
    raise AttributeError(f"module 'annlib' has no attribute {name!r}")

__all__ = [
    "AnnlibError",
    "BruteForce",
    "BruteForceSearchParams",
    "Builder",
    "Dataset",
    "DatasetError",
    "Filter",
    "FormatError",
    "Index",
    "InvalidTypeError",
    "InvalidValueError",
    "JaxSearchParams",
    "NotTrainedError",
    "SearchResult",
    "TreeAhIndex",
    "TreeAhSearchParams",
    "Tuning",
    "__version__",
    "build",
    "builder",
    "cpu_info",
    "datasets",
    "default_num_threads",
    "ground_truth",
    "id_recall",
    "isa_override",
    "load_dataset",
    "load_index",
    "metrics",
    "recall",
    "set_isa",
    "supported_isas",
]
