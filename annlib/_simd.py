"""Which SIMD path the core runs, and the ``ANNLIB_SIMD`` override."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from annlib import _core, _threads

ENV_VAR = "ANNLIB_SIMD"


def supported_isas() -> list[str]:
    """The SIMD paths this CPU can run, scalar first (e.g. ``["scalar", "avx2"]``)."""
    return list(_core.supported_isas())


def set_isa(name: str) -> None:
    """Switch the process-wide SIMD path to ``"scalar"``, ``"avx2"`` or ``"avx512"``.

    Raises
    ------
    ValueError
        If the name is unknown or this CPU cannot run that path.
    """
    if name not in ("scalar", "avx2", "avx512"):
        raise ValueError(f"SIMD path must be one of 'scalar', 'avx2', 'avx512', got {name!r}")
    if name not in supported_isas():
        raise ValueError(
            f"SIMD path {name!r} is not supported by this CPU (supported: {', '.join(supported_isas())})"
        )
    _core.set_isa(name)


@contextlib.contextmanager
def isa_override(name: str) -> Iterator[None]:
    """Run a block with another SIMD path, restoring the previous one afterwards (for tests)."""
    previous = _core.active_isa()
    set_isa(name)
    try:
        yield
    finally:
        _core.set_isa(previous)


def cpu_info() -> dict:
    """Detected CPU features, the SIMD paths available, and the one in use.

    Returns
    -------
    dict
        ``{"features": {...}, "available": [...], "isa": str, "forced_by_env": bool, "threads": int,
        "cpu_limits": {...}}``; ``threads`` is the default thread count
        (:func:`annlib.default_num_threads`), ``cpu_limits`` what it was derived from.
    """
    return {
        "features": dict(_core.cpu_features()),
        "available": supported_isas(),
        "isa": _core.active_isa(),
        "forced_by_env": bool(os.environ.get(ENV_VAR)),
        "threads": _threads.default_num_threads(),
        "cpu_limits": _threads.cpu_limits(),
    }


def apply_env_override() -> None:
    """Honour ``ANNLIB_SIMD`` at import; an unknown or unsupported value raises a clear error."""
    requested = os.environ.get(ENV_VAR, "").strip().lower()
    if not requested:
        return
    try:
        set_isa(requested)
    except ValueError as exc:
        raise RuntimeError(f"{ENV_VAR}={requested!r}: {exc}") from None
