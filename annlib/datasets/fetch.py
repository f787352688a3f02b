"""Downloading registry datasets from ann-benchmarks.com: streamed, checked, atomic."""

from __future__ import annotations

import http.client
import os
import pathlib
import urllib.error
import urllib.request
from collections.abc import Callable

from annlib._atomic import atomic_path
from annlib.datasets.formats import open_hdf5
from annlib.datasets.registry import RegistryEntry, default_download_dir, registry_entry
from annlib.errors import DatasetError, FormatError

__all__ = ["download"]

_DOWNLOAD_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60.0


def _check_shapes(path: pathlib.Path, entry: RegistryEntry) -> None:
    """Raise FormatError unless ``path`` holds ``train`` and ``test`` of the registry's dim."""
    with open_hdf5(path) as handle:
        for key in ("train", "test"):
            if key not in handle:
                raise FormatError(f"{path} has no '{key}' dataset, expected for {entry.name}")
            shape = getattr(handle[key], "shape", None)
            if shape is None or len(shape) != 2 or shape[1] != entry.dim:
                raise FormatError(f"{path}: '{key}' must have shape (n, {entry.dim}) for {entry.name}, got {shape}")


def download(
    name: str,
    dir: str | os.PathLike | None = None,  # noqa: A002 - the public name the CLI mirrors (--dir)
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = _DOWNLOAD_TIMEOUT_S,
) -> pathlib.Path:
    """Download a registry dataset from ann-benchmarks.com (atomic; skipped when already valid).

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY` with a URL, e.g. ``"glove-100-angular"``.
    dir : str or os.PathLike, optional
        Target directory (created if needed); default ``$ANNLIB_DATA_DIR`` or ``~/.cache/annlib``.
    progress : callable, optional
        Called as ``progress(bytes_done, bytes_total_or_None)`` after each chunk.
    timeout : float, default 60
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        ``<dir>/<name>.hdf5``.

    Raises
    ------
    DatasetError
        Unknown or local-only name, or the server cannot be reached (no partial file is left).
    FormatError
        The downloaded file is not HDF5 or its shapes do not match the registry (it is removed).

    Examples
    --------
    >>> path = download("glove-25-angular")   # doctest: +SKIP
    """
    entry = registry_entry(name)
    if entry.url is None:
        raise DatasetError(f"dataset {name!r} is local-only and cannot be downloaded")
    directory = pathlib.Path(dir).expanduser() if dir is not None else default_download_dir()
    final = directory / f"{name}.hdf5"
    if final.is_file():
        try:
            _check_shapes(final, entry)
            return final
        except FormatError:
            pass  # an invalid file is replaced below
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create download directory {directory}: {exc}") from exc
    with atomic_path(final) as tmp:
        _stream(entry.url, tmp, progress, timeout)
        _check_shapes(tmp, entry)
    return final


def _stream(url: str, target: pathlib.Path, progress, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
            total = int(length) if length and str(length).isdigit() else None
            done = 0
            while chunk := response.read(_DOWNLOAD_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if total is not None and done != total:
            raise DatasetError(f"download of {url} stopped after {done} of {total} bytes")
    except urllib.error.HTTPError as exc:
        raise DatasetError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DatasetError(f"cannot download {url}: {exc.reason} (are you offline?)") from exc
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise DatasetError(f"cannot download {url}: {exc or type(exc).__name__} (are you offline?)") from exc

