"""Atomic, checksummed saving and loading of index files (the ``.annl`` format).

Every index type persists itself through :func:`save_index_file` and
:func:`load_index_file`; ``annlib info`` uses :func:`read_header`. The format is
self-describing and never uses pickle.

File layout, format version 1 (all integers little-endian)::

    offset  size  field
    0       4     magic b"ANNL"
    4       4     u32 format version (1)
    8       8     u64 header length L, in bytes
    16      L     header: UTF-8 JSON object
                    {"kind": str, "annlib_version": str, "config": {...},
                     "sections": [{"name": str, "dtype": str, "shape": [int, ...],
                                   "offset": int, "nbytes": int, "crc32": int}, ...]}
    16+L    4     u32 header crc32, over bytes [0, 16+L) (magic, version, length and JSON)
    ...           sections, in header order: each starts at the first multiple of 64 at or
                  after the end of what precedes it (zero bytes fill the gap), so a
                  memory map hands out 64-byte aligned arrays; ``offset`` is absolute
    end-16  8     u64 total file length
    end-8   4     u32 file checksum: crc32 of the header crc32 followed by every
                  section's crc32, each as u32, in section order
    end-4   4     trailer magic b"LNNA"

The trailer starts right after the last section's data (or after the header crc32
when there are no sections). ``dtype`` is numpy's ``dtype.str`` and is always
little-endian: one of ``|b1 |i1 |u1 <i2 <u2 <i4 <u4 <i8 <u8 <f2 <f4 <f8``.
``nbytes`` must equal ``prod(shape) * itemsize`` and each section's ``crc32`` is
the zlib crc32 of its bytes in C order.

Integrity: the header crc32 covers the whole header (and with it every section's
offset, size and crc32); the trailer's length catches truncation and appended
bytes; the section crc32s (checked when ``verify=True``, together with the zero
fill between sections) catch flipped bits in the data. Every single-bit flip and
every truncation is reported as :class:`~annlib.errors.FormatError`.

The first 16 bytes (magic, version, header length) keep this meaning in every
future format version, so any annlib can tell that a file came from a newer one.

Saves are atomic (:mod:`annlib._atomic`): the file is written to a temporary
``.<name>.annlib-tmp-<host>-<pid>-<random>`` in the target's directory, fsynced
and renamed over the target, so readers see the old file or the complete new one.
A save killed mid-write leaves its temporary behind; the next save of the same
target removes every such temporary whose writer (same host) is no longer alive,
and leaves those of live processes alone. Save errors name the target file.
"""

from __future__ import annotations

import json
import math
import mmap as _mmap
import os
import struct
import zlib

import numpy as np

from annlib import _atomic
from annlib.errors import FormatError

__all__ = ["FORMAT_VERSION", "load_index_file", "read_header", "save_index_file"]

FORMAT_VERSION = 3
"""The format version this annlib writes, and the newest it reads.

Version 2 (mutable indexes, issue 13): the same layout; an index may hold ``ids`` (int64 user
id per row) and ``live`` (uint8 per row, 0 = deleted) sections. Version 1 files have neither
and load as rows 0..n-1, all live. The bump keeps a version-1 reader, which would ignore the
``live`` section and return deleted points, from loading a version-2 file.

Version 3 (issue 13, deletes prune leaves): the same sections; a tree-AH row that ``live``
marks deleted may have no entries in its leaves (a delete drops them from the leaves it
leaves crowded with dead entries). Version 1 and 2 files hold every row's entries and load
unchanged. The bump makes a version-2 reader, whose checks demand every row's entries, say
that a newer annlib wrote the file instead of calling it corrupt."""

MAGIC = b"ANNL"
TRAILER_MAGIC = b"LNNA"
ALIGNMENT = 64
MAX_HEADER_BYTES = 64 << 20
"""Headers larger than this are refused: configs are small, bulk data belongs in arrays."""
MAX_NDIM = 32

_PREAMBLE = struct.Struct("<4sIQ")  # magic, format version, header length
_U32 = struct.Struct("<I")
_TRAILER = struct.Struct("<QI4s")  # total length, file checksum, trailer magic
_CHUNK = 16 << 20  # bytes per write / crc32 step, so huge arrays never need a copy

_SUPPORTED_DTYPES = tuple(
    np.dtype(name)
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
)
_DTYPE_BY_STR = {dt.newbyteorder("<").str: dt.newbyteorder("<") for dt in _SUPPORTED_DTYPES}
_SUPPORTED_NAMES = ", ".join(dt.name for dt in _SUPPORTED_DTYPES)


# --------------------------------------------------------------------------- helpers


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def _annlib_version() -> str:
    try:
        from annlib import __version__
    except ImportError:  # a partially initialised package must not stop a save
        return "unknown"
    return __version__ if isinstance(__version__, str) else "unknown"


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _crc32(buffer, crc: int = 0) -> int:
    """crc32 of a bytes-like object, in chunks of memoryview slices (no copies)."""
    view = memoryview(buffer).cast("B")
    for start in range(0, len(view), _CHUNK):
        crc = zlib.crc32(view[start : start + _CHUNK], crc)
    return crc


def _as_bytes_view(array: np.ndarray) -> memoryview:
    """The raw bytes of a C-contiguous array, without a copy (0-d and bool included)."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _write_chunks(file, data: memoryview) -> None:
    """Write ``data`` in bounded chunks (one place a test can make a write fail)."""
    for start in range(0, len(data), _CHUNK):
        file.write(data[start : start + _CHUNK])


def _file_checksum(header_crc: int, section_crcs) -> int:
    crc = zlib.crc32(_U32.pack(header_crc))
    for value in section_crcs:
        crc = zlib.crc32(_U32.pack(value), crc)
    return crc


# --------------------------------------------------------------------------- saving


def _check_config(value, where: str, active: set[int]) -> None:
    """Refuse anything that would not survive a JSON round trip unchanged (tuples become lists)."""
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"{where} is not valid UTF-8 text: {_short(value)}") from exc
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number to be stored as JSON, got {value!r}")
        return
    if isinstance(value, (dict, list, tuple)):
        if id(value) in active:
            raise ValueError(f"{where} refers back to itself (circular reference)")
        active.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"{where} has key {_short(key)} of type {type(key).__name__}; JSON object keys must be str"
                    )
                _check_config(item, f"{where}[{key!r}]", active)
        else:
            for i, item in enumerate(value):
                _check_config(item, f"{where}[{i}]", active)
        active.discard(id(value))
        return
    raise TypeError(
        f"{where} is not JSON-serialisable: got {type(value).__name__} {_short(value)}"
        " (use None, bool, int, float, str, list or dict; convert numpy scalars with int() or float())"
    )


def _prepare_array(name, array) -> np.ndarray:
    if not isinstance(name, str) or not name:
        raise TypeError(f"array names must be non-empty strings, got {_short(name)}")
    where = f"arrays[{name!r}]"
    if isinstance(array, np.generic):  # a numpy scalar is stored as a 0-d array
        array = np.asarray(array)
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{where} must be a numpy array, got {type(array).__name__}")
    dtype = array.dtype
    if dtype.fields is not None or dtype.subdtype is not None or dtype.newbyteorder("=") not in _SUPPORTED_DTYPES:
        raise TypeError(f"{where} has unsupported dtype {dtype}; supported: {_SUPPORTED_NAMES}")
    if array.ndim > MAX_NDIM:
        raise ValueError(f"{where} has {array.ndim} dimensions; at most {MAX_NDIM} are supported")
    # Stored little-endian and C-contiguous; copied only when needed. (Not ascontiguousarray:
    # it turns a 0-d array into a 1-d one.)
    return array.astype(dtype.newbyteorder("<"), order="C", copy=False)


def save_index_file(path, kind: str, config: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write an index file atomically: a complete new file, or the old one left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Destination. An existing file there is replaced only once the new one is
        complete and flushed to disk.
    kind : str
        The index type, e.g. ``"brute_force"``; :func:`load_index_file` returns it.
    config : dict
        JSON-serialisable settings (None, bool, int, finite float, str, list, dict
        with str keys). Tuples are stored as lists.
    arrays : dict of str to numpy.ndarray
        The sections, stored in this order. Supported dtypes: bool, int8/16/32/64,
        uint8/16/32/64, float16/32/64. Big-endian or non-contiguous arrays are
        converted (copied) to little-endian C order.

    Raises
    ------
    TypeError
        ``kind`` is not a string, ``config`` holds something JSON cannot store (the
        message names the key), or an array is not a numpy array of a supported dtype.
        Nothing is written in that case.
    ValueError
        A non-finite float or circular reference in ``config``, an empty ``kind``,
        too many dimensions, or a header over 64 MiB. Nothing is written.
    OSError
        The write failed (the message and ``filename`` name ``path``, not the
        temporary); the temporary file is removed and ``path`` is untouched.

    Notes
    -----
    The file is written to ``.<name>.annlib-tmp-<host>-<pid>-<random>`` next to
    ``path``, fsynced, moved onto ``path`` with :func:`os.replace`, and the
    directory is fsynced (:mod:`annlib._atomic`). A temporary left by a process
    killed mid-save is removed by the next save of the same ``path`` once its
    writer's pid is gone; temporaries of live processes are left alone. Arrays
    memory-mapped from an older file at ``path`` stay valid: the old file is
    replaced, not overwritten.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "index.annl")
    >>> save_index_file(path, "demo", {"metric": "dot"}, {"ids": np.arange(3)})
    >>> kind, config, arrays = load_index_file(path)
    >>> kind, config, arrays["ids"].tolist()
    ('demo', {'metric': 'dot'}, [0, 1, 2])
    """
    # Everything is validated before the file system is touched.
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a string, got {type(kind).__name__}")
    if not kind:
        raise ValueError("kind must be a non-empty string")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    _check_config(config, "config", set())
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays must be a dict of name -> numpy array, got {type(arrays).__name__}")
    prepared = {name: _prepare_array(name, array) for name, array in arrays.items()}
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not an index file path")

    sections = [
        {
            "name": name,
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "offset": 0,
            "nbytes": array.nbytes,
            "crc32": _crc32(_as_bytes_view(array)),
        }
        for name, array in prepared.items()
    ]
    header = {"kind": kind, "annlib_version": _annlib_version(), "config": config, "sections": sections}
    header_bytes, trailer_offset = _layout(header)
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ValueError(f"index header is {len(header_bytes)} bytes, over the {MAX_HEADER_BYTES} byte limit")
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes))
    header_crc = zlib.crc32(header_bytes, zlib.crc32(preamble))
    total = trailer_offset + _TRAILER.size
    trailer = _TRAILER.pack(total, _file_checksum(header_crc, [s["crc32"] for s in sections]), TRAILER_MAGIC)

    with _atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(preamble)
        f.write(header_bytes)
        f.write(_U32.pack(header_crc))
        position = len(preamble) + len(header_bytes) + _U32.size
        for section, array in zip(sections, prepared.values()):
            f.write(bytes(section["offset"] - position))
            _write_chunks(f, _as_bytes_view(array))
            position = section["offset"] + section["nbytes"]
        f.write(trailer)


def _layout(header: dict) -> tuple[bytes, int]:
    """Fill in section offsets and serialise the header; returns (header JSON, trailer offset).

    Offsets depend on the header's length, which depends on the offsets' digits,
    so iterate to the fixed point (two or three rounds at most).
    """
    data_start = 0
    while True:
        position = data_start
        for section in header["sections"]:
            section["offset"] = _align(position)
            position = section["offset"] + section["nbytes"]
        header_bytes = json.dumps(header, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        header_end = _PREAMBLE.size + len(header_bytes) + _U32.size
        # Offsets only grow from round to round, so header_end never falls below data_start:
        # it reaches it exactly, and then the offsets are those the reader will expect.
        if header_end == data_start:
            return header_bytes, position
        data_start = header_end


# --------------------------------------------------------------------------- loading


class _Header:
    """A parsed, validated header and the file facts needed to read the sections."""

    __slots__ = ("annlib_version", "config", "data_start", "file_size", "header_crc", "kind", "sections", "version")


def _read_exact(f, n: int, path: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise FormatError(f"{path}: file is truncated (ends inside the {what})")
    return data


def _parse(f, path: str) -> _Header:
    """Validate everything but the section data: magic, version, sizes, header crc, layout, trailer."""
    file_size = os.fstat(f.fileno()).st_size
    preamble = f.read(_PREAMBLE.size)
    if preamble[:4] != MAGIC[: len(preamble[:4])] or not preamble:
        shown = preamble[:4]
        raise FormatError(
            f"{path}: not an annlib index file (starts with {shown!r}, expected {MAGIC!r})"
            if shown
            else f"{path}: not an annlib index file (the file is empty)"
        )
    if len(preamble) < _PREAMBLE.size:
        raise FormatError(f"{path}: file is truncated ({file_size} bytes, too short for an annlib header)")
    _, version, header_len = _PREAMBLE.unpack(preamble)
    if version > FORMAT_VERSION:
        raise FormatError(
            f"{path}: written by a newer annlib (format version {version}); "
            f"this annlib reads up to {FORMAT_VERSION}, upgrade annlib"
        )
    if version < 1:
        raise FormatError(f"{path}: invalid format version {version}")
    minimum = _PREAMBLE.size + header_len + _U32.size + _TRAILER.size
    if header_len > MAX_HEADER_BYTES or minimum > file_size:
        raise FormatError(
            f"{path}: header length {header_len} does not fit the file ({file_size} bytes); "
            "the file is truncated or corrupt"
        )
    header_bytes = _read_exact(f, header_len, path, "header")
    (stored_crc,) = _U32.unpack(_read_exact(f, _U32.size, path, "header checksum"))
    header_crc = zlib.crc32(header_bytes, zlib.crc32(preamble))
    if header_crc != stored_crc:
        raise FormatError(
            f"{path}: header checksum mismatch (stored {stored_crc:#010x}, computed {header_crc:#010x}); "
            "the file is corrupt"
        )
    try:
        obj = json.loads(header_bytes.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{path}: header is not valid UTF-8 JSON ({exc})") from None
    except RecursionError:  # nesting deeper than the interpreter's recursion limit
        raise FormatError(f"{path}: header JSON is nested too deeply") from None

    parsed = _Header()
    parsed.version = version
    parsed.file_size = file_size
    parsed.header_crc = header_crc
    parsed.data_start = _PREAMBLE.size + header_len + _U32.size
    if not isinstance(obj, dict):
        raise FormatError(f"{path}: header must be a JSON object, got {type(obj).__name__}")
    for key, expected in (("kind", str), ("config", dict), ("sections", list)):
        if not isinstance(obj.get(key), expected):
            raise FormatError(f"{path}: header field {key!r} must be a {expected.__name__}, got {_short(obj.get(key))}")
    if not obj["kind"]:
        raise FormatError(f"{path}: header field 'kind' is empty")
    parsed.kind = obj["kind"]
    parsed.config = obj["config"]
    version_text = obj.get("annlib_version", "unknown")
    parsed.annlib_version = version_text if isinstance(version_text, str) else "unknown"
    parsed.sections = _check_sections(obj["sections"], parsed.data_start, path)

    # The layout fixes the file's length exactly; compare before reading any data.
    trailer_offset = parsed.sections[-1]["end"] if parsed.sections else parsed.data_start
    expected_size = trailer_offset + _TRAILER.size
    if file_size < expected_size:
        raise FormatError(f"{path}: file is truncated ({file_size} bytes, its header describes {expected_size})")
    if file_size > expected_size:
        raise FormatError(
            f"{path}: file has {file_size - expected_size} unexpected bytes after the end described by its header"
            f" ({expected_size} bytes)"
        )
    f.seek(trailer_offset)
    total, checksum, trailer_magic = _TRAILER.unpack(_read_exact(f, _TRAILER.size, path, "trailer"))
    if trailer_magic != TRAILER_MAGIC:
        raise FormatError(
            f"{path}: bad trailer magic {trailer_magic!r} (expected {TRAILER_MAGIC!r}); the file is corrupt"
        )
    if total != file_size:
        raise FormatError(f"{path}: trailer records {total} bytes but the file has {file_size}; the file is corrupt")
    expected_checksum = _file_checksum(header_crc, [s["crc32"] for s in parsed.sections])
    if checksum != expected_checksum:
        raise FormatError(
            f"{path}: file checksum mismatch (stored {checksum:#010x}, computed {expected_checksum:#010x}); "
            "the file is corrupt"
        )
    return parsed


def _reject_constant(name: str):
    # Strict JSON has no NaN or Infinity; the writer never produces them (allow_nan=False).
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise ValueError(f"number {text[:40]} is out of the float range")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_sections(entries: list, data_start: int, path: str) -> list[dict]:
    """Validate the section table against the canonical layout, with integer arithmetic only."""
    sections = []
    names = set()
    position = data_start
    for i, entry in enumerate(entries):
        where = f"{path}: section {i}"
        if not isinstance(entry, dict):
            raise FormatError(f"{where} must be a JSON object, got {_short(entry)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise FormatError(f"{where} has no valid name (got {_short(name)})")
        where = f"{path}: section {i} ({name!r})"
        if name in names:
            raise FormatError(f"{where} repeats an earlier section's name")
        names.add(name)
        dtype = _DTYPE_BY_STR.get(entry.get("dtype")) if isinstance(entry.get("dtype"), str) else None
        if dtype is None:
            raise FormatError(f"{where} has unsupported dtype {_short(entry.get('dtype'))}")
        shape = entry.get("shape")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_NDIM
            or not all(_is_int(n) and n >= 0 for n in shape)
        ):
            raise FormatError(
                f"{where}: shape must be a list of at most {MAX_NDIM} non-negative integers, got {_short(shape)}"
            )
        for key in ("offset", "nbytes", "crc32"):
            if not _is_int(entry.get(key)) or entry[key] < 0:
                raise FormatError(f"{where}: {key} must be a non-negative integer, got {_short(entry.get(key))}")
        if entry["crc32"] >= 1 << 32:
            raise FormatError(f"{where}: crc32 {entry['crc32']} does not fit in 32 bits")
        nbytes = math.prod(shape) * dtype.itemsize
        if entry["nbytes"] != nbytes:
            raise FormatError(
                f"{where}: nbytes is {entry['nbytes']} but shape {tuple(shape)} of {dtype} needs {nbytes}"
            )
        gap_start, expected_offset = position, _align(position)
        if entry["offset"] != expected_offset:
            raise FormatError(f"{where}: offset is {entry['offset']}, expected {expected_offset}")
        position = expected_offset + nbytes
        sections.append(
            {
                "name": name,
                "dtype": dtype,
                "shape": tuple(shape),
                "offset": expected_offset,
                "nbytes": nbytes,
                "crc32": entry["crc32"],
                "gap_start": gap_start,  # where the zero fill before this section begins
                "end": position,
            }
        )
    return sections


def _open(path):
    path_str = os.fspath(path)
    return path_str, open(path_str, "rb")  # closed by the callers' with-blocks


def read_header(path) -> dict:
    """Describe an index file without reading its array data (for ``annlib info``).

    Checks the magic, version, header checksum, section table, file length and
    trailer, but not the section crc32s (use :func:`load_index_file` for that).

    Returns
    -------
    dict
        ``kind`` (str), ``format_version`` (int), ``annlib_version`` (the annlib that
        wrote the file), ``config`` (dict), ``file_size`` (bytes) and ``sections``: a
        list of ``{"name", "dtype" (numpy name, e.g. "float32"), "shape" (tuple),
        "nbytes"}`` in file order.

    Raises
    ------
    FormatError
        The file is not an annlib index, is truncated or corrupt, or was written by a
        newer annlib.
    FileNotFoundError, IsADirectoryError
        As :func:`open` raises them.
    """
    path_str, f = _open(path)
    with f:
        parsed = _parse(f, path_str)
    return {
        "kind": parsed.kind,
        "format_version": parsed.version,
        "annlib_version": parsed.annlib_version,
        "config": parsed.config,
        "file_size": parsed.file_size,
        "sections": [
            {"name": s["name"], "dtype": s["dtype"].name, "shape": s["shape"], "nbytes": s["nbytes"]}
            for s in parsed.sections
        ],
    }


def load_index_file(path, mmap: bool = True, verify: bool = True,
                    mapped=None) -> tuple[str, dict, dict[str, np.ndarray]]:
    """Read an index file written by :func:`save_index_file`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    mmap : bool, default True
        Return read-only arrays backed by a memory map of the file (pages are read
        on first use; the map lives as long as any array does). With False, each
        array is read into a new, writable in-memory array.
    verify : bool, default True
        Check every section's crc32 (and the zero fill between sections). This reads
        the whole file once; with ``mmap=True`` it is done in chunks over the map,
        without copies. Magic, version, header checksum, sizes and trailer are
        checked either way.
    mapped : callable, optional
        With ``mmap=False``: ``mapped(kind, config)`` names the sections to memory-map
        anyway (an index's float32 rows that only a final rescoring reads). It sees the
        header's config before any check of its meaning, so it must accept any JSON.

    Returns
    -------
    kind : str
    config : dict
    arrays : dict of str to numpy.ndarray
        In the order they were saved, with their saved shapes and (little-endian) dtypes.

    Raises
    ------
    FormatError
        The file is not an annlib index, is truncated or corrupt, or was written by a
        newer annlib; the message names the file and the problem. Sizes are checked
        against the file before anything is allocated.
    FileNotFoundError, IsADirectoryError
        As :func:`open` raises them.

    Notes
    -----
    A memory-mapped file must not be modified in place while its arrays are alive;
    :func:`save_index_file` never does (it replaces the file).
    """
    path_str, f = _open(path)
    with f:
        parsed = _parse(f, path_str)
        sections = parsed.sections
        on_disk = set(mapped(parsed.kind, parsed.config)) if mapped is not None and not mmap else set()
        to_map = [s for s in sections if s["nbytes"] and (mmap or s["name"] in on_disk)]
        arrays = _read_into_memory(f, [s for s in sections if s not in to_map], verify, path_str, writable=not mmap)
        if to_map:
            buffer = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
            arrays.update(_from_map(buffer, to_map, verify, path_str))
    return parsed.kind, parsed.config, {s["name"]: arrays[s["name"]] for s in sections}


def _check_section_crc(crc: int, section: dict, path: str) -> None:
    if crc != section["crc32"]:
        raise FormatError(
            f"{path}: section {section['name']!r} checksum mismatch "
            f"(stored {section['crc32']:#010x}, computed {crc:#010x}); the file is corrupt"
        )


def _check_fill(fill, section: dict, path: str) -> None:
    if any(fill):
        raise FormatError(f"{path}: non-zero padding before section {section['name']!r}; the file is corrupt")


def _from_map(buffer, sections: list[dict], verify: bool, path: str) -> dict[str, np.ndarray]:
    view = memoryview(buffer)
    arrays = {}
    try:
        for s in sections:
            if verify:
                _check_fill(view[s["gap_start"] : s["offset"]], s, path)
                _check_section_crc(_crc32(view[s["offset"] : s["end"]]), s, path)
            count = math.prod(s["shape"])
            if count == 0:
                array = np.empty(s["shape"], dtype=s["dtype"])
                array.flags.writeable = False
            else:
                array = np.frombuffer(buffer, dtype=s["dtype"], count=count, offset=s["offset"]).reshape(s["shape"])
            arrays[s["name"]] = array
    finally:
        view.release()
    return arrays


def _read_into_memory(f, sections: list[dict], verify: bool, path: str, writable: bool) -> dict[str, np.ndarray]:
    arrays = {}
    for s in sections:
        # Safe to allocate: the layout check proved that nbytes fits inside the file.
        if verify:
            f.seek(s["gap_start"])
            _check_fill(_read_exact(f, s["offset"] - s["gap_start"], path, "padding"), s, path)
        f.seek(s["offset"])
        array = np.empty(s["shape"], dtype=s["dtype"])
        target = _as_bytes_view(array)
        crc = 0
        for start in range(0, len(target), _CHUNK):
            chunk = target[start : start + _CHUNK]
            if f.readinto(chunk) != len(chunk):
                raise FormatError(f"{path}: file is truncated (ends inside section {s['name']!r})")
            if verify:
                crc = zlib.crc32(chunk, crc)
        if verify:
            _check_section_crc(crc, s, path)
        array.flags.writeable = writable
        arrays[s["name"]] = array
    return arrays
