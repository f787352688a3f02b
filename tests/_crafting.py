"""Writing index files by hand, with valid checksums, for the crafted-file and fuzz tests.

Follows the layout documented in annlib/io.py independently of its writer, so a
test can store what ``save_index_file`` refuses to write (raw header JSON such as
``1e999`` or deep nesting, wrong dtypes, extra or missing sections) and every
checksum still matches: the loader's consistency checks, not its checksums,
must then turn the file away.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

_PREAMBLE = struct.Struct("<4sIQ")
_U32 = struct.Struct("<I")
_TRAILER = struct.Struct("<QI4s")
_PLACEHOLDER = "@@CONFIG@@"


def _align(n: int) -> int:
    return -(-n // 64) * 64


def index_bytes(kind: str, config, arrays: dict, config_json: str | None = None) -> bytes:
    """A complete file; ``config_json`` (raw JSON text) replaces the serialised ``config`` when given."""
    prepared = {
        name: np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False) for name, a in arrays.items()
    }
    raw = {name: a.reshape(-1).view(np.uint8).tobytes() for name, a in prepared.items()}
    sections = [
        {"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": 0, "nbytes": a.nbytes,
         "crc32": zlib.crc32(raw[name])}
        for name, a in prepared.items()
    ]
    text = json.dumps(config) if config_json is None else config_json
    data_start = 0
    while True:  # offsets depend on the header length and back: iterate to the fixed point
        position = data_start
        for s in sections:
            s["offset"] = _align(position)
            position = s["offset"] + s["nbytes"]
        header = {"kind": kind, "annlib_version": "crafted", "config": _PLACEHOLDER, "sections": sections}
        header_bytes = json.dumps(header).replace(json.dumps(_PLACEHOLDER), text, 1).encode()
        start = _PREAMBLE.size + len(header_bytes) + _U32.size
        if start == data_start:
            break
        data_start = start
    preamble = _PREAMBLE.pack(b"ANNL", 1, len(header_bytes))
    header_crc = zlib.crc32(header_bytes, zlib.crc32(preamble))
    out = bytearray(preamble + header_bytes + _U32.pack(header_crc))
    for s in sections:
        out += bytes(s["offset"] - len(out))
        out += raw[s["name"]]
    checksum = zlib.crc32(_U32.pack(header_crc))
    for s in sections:
        checksum = zlib.crc32(_U32.pack(s["crc32"]), checksum)
    out += _TRAILER.pack(len(out) + _TRAILER.size, checksum, b"LNNA")
    return bytes(out)


def write_index(path, kind: str, config, arrays: dict, config_json: str | None = None) -> None:
    with open(path, "wb") as f:
        f.write(index_bytes(kind, config, arrays, config_json))
