"""annlib: approximate nearest neighbor search with a C++/SIMD core.

The public API is what ``__all__`` lists; ``annlib._core`` is internal.
"""

from annlib import _simd, datasets, metrics
from annlib._simd import cpu_info, isa_override, set_isa, supported_isas
from annlib.brute_force import BruteForce
from annlib.datasets import Dataset, ground_truth, load
from annlib.errors import AnnlibError, DatasetError, FormatError, NotTrainedError
from annlib.metrics import id_recall, recall
from annlib.result import SearchResult

__version__ = "0.1.0"

_simd.apply_env_override()

__all__ = [
    "AnnlibError",
    "BruteForce",
    "Dataset",
    "DatasetError",
    "FormatError",
    "NotTrainedError",
    "SearchResult",
    "__version__",
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
