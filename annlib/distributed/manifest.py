"""The manifest of a saved sharded index: ``manifest.json`` next to one index file per shard.

::

    dir/manifest.json          format, format_version, kind, metric, n, dim, search defaults,
                               shards [{file, start, n, sha256, bytes}], shared {name: {file, sha256}}
    dir/shard-00000.annl ...   one annlib index file per shard (annlib.load_index reads each)
    dir/centers.npy, codebook.npy   tree-AH: the partition centers and PQ codebook every shard shares

The manifest is written last and atomically, so a directory with a manifest is complete.
Every file is listed with its SHA-256; loading checks them (a shard host checks its own).
"""

from __future__ import annotations

import json
import os

import numpy as np

from annlib.distributed._host import file_sha256
from annlib.errors import FormatError

FORMAT = "annlib-sharded"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def shard_file(shard_id: int) -> str:
    return f"shard-{shard_id:05d}.annl"


def write_shared(directory: str, arrays: dict[str, np.ndarray]) -> dict:
    entries = {}
    for name, array in arrays.items():
        file = f"{name}.npy"
        np.save(os.path.join(directory, file), array)
        entries[name] = {"file": file, "sha256": file_sha256(os.path.join(directory, file))}
    return entries


def write(directory: str, manifest: dict) -> None:
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    tmp = os.path.join(directory, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, MANIFEST))


def read(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise FormatError(f"{directory}: no {MANIFEST} (not a saved sharded index, or its save did not "
                          "finish)") from None
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FormatError(f"{path}: not an annlib sharded-index manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(f"{path}: format version {version!r}; this annlib reads version {FORMAT_VERSION}")
    try:
        shards = manifest["shards"]
        start = 0
        for i, shard in enumerate(shards):
            if int(shard["start"]) != start or int(shard["n"]) <= 0 or not isinstance(shard["sha256"], str):
                raise ValueError(f"shard {i} does not continue the row ranges")
            start += int(shard["n"])
        if start != int(manifest["n"]) or not shards:
            raise ValueError("shard sizes do not add up to n")
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{path}: invalid manifest ({exc})") from None
    return manifest


def read_shared(directory: str, manifest: dict) -> dict[str, np.ndarray]:
    arrays = {}
    for name, entry in manifest.get("shared", {}).items():
        path = os.path.join(directory, entry["file"])
        if file_sha256(path) != entry["sha256"]:
            raise FormatError(f"{path}: does not match the manifest's checksum")
        arrays[name] = np.load(path)
    return arrays
