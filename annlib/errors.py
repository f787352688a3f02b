"""Exception types raised by annlib.

Every error annlib raises on purpose derives from :class:`AnnlibError`, so
callers can catch the library's errors in one place while still catching the
standard base classes (``ValueError``) they expect.
"""


class AnnlibError(Exception):
    """Base class of every error annlib raises on purpose."""


class FormatError(AnnlibError, ValueError):
    """A saved index or dataset file is corrupt, truncated, or of an unknown version."""


class NotTrainedError(AnnlibError, RuntimeError):
    """An operation needs an index that has been built first."""


class DatasetError(AnnlibError, ValueError):
    """A dataset is missing, malformed, or cannot be downloaded."""


class MissingDependencyError(AnnlibError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install "annlib[...]"`` extra."""
