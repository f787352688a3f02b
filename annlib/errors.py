"""Exception types raised by annlib.

Every error annlib raises on purpose derives from :class:`AnnlibError`, so
callers can catch the library's errors in one place while still catching the
standard base classes (``ValueError``, ``TypeError``) they expect.

One class per kind of problem, the same at every entry point (the index
classes, the config dataclasses, the builder, the JAX path, the CLI):

- an argument of the wrong type (a float where an int belongs, ``True`` for a
  count, a string for a flag) raises :class:`InvalidTypeError`, a ``TypeError``;
- an argument of the right type but a bad value (``k=0``, a wrong shape, NaN, a
  count that does not fit a C integer) raises :class:`InvalidValueError`, a
  ``ValueError``;
- a damaged or inconsistent file raises :class:`FormatError`, a ``ValueError``.
"""


class AnnlibError(Exception):
    """Base class of every error annlib raises on purpose."""


class InvalidValueError(AnnlibError, ValueError):
    """An argument has the right type but a value annlib cannot accept (the message names it)."""


class InvalidTypeError(AnnlibError, TypeError):
    """An argument has the wrong type (the message names it and what arrived)."""


class FormatError(InvalidValueError):
    """A saved index or dataset file is corrupt, truncated, inconsistent, or of an unknown version."""


class NotTrainedError(AnnlibError, RuntimeError):
    """An operation needs an index that has been built first."""


class DatasetError(AnnlibError, ValueError):
    """A dataset is missing, malformed, or cannot be downloaded."""


class MissingDependencyError(AnnlibError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install "annlib[...]"`` extra."""
