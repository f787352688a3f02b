"""Optional dependencies: imported on first use, with the extra that installs them in the error."""

from __future__ import annotations

import importlib
from types import ModuleType

from annlib.errors import MissingDependencyError

__all__ = ["import_optional"]


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming ``pip install "annlib[<extra>]"``.

    >>> import_optional("numpy", "core", "the core").__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f'{purpose} needs {top}, which is not installed: pip install "annlib[{extra}]"'
        ) from exc
