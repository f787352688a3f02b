"""annlib: approximate nearest neighbor search with a C++/SIMD core.

The public API is what ``__all__`` lists; ``annlib._core`` is internal.
"""

from annlib import _simd
from annlib._simd import cpu_info, isa_override, set_isa, supported_isas
from annlib.brute_force import BruteForce
from annlib.errors import AnnlibError, DatasetError, FormatError, NotTrainedError
from annlib.result import SearchResult

__version__ = "0.1.0"

_simd.apply_env_override()

__all__ = [
    "AnnlibError",
    "BruteForce",
    "DatasetError",
    "FormatError",
    "NotTrainedError",
    "SearchResult",
    "__version__",
    "cpu_info",
    "isa_override",
    "set_isa",
    "supported_isas",
]
