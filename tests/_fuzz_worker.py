"""Subprocess side of test_fuzz_files.py: mutate valid index files, load and search each.

Usage: python _fuzz_worker.py BASE_DIR WORK_DIR SEED FIRST STOP

BASE_DIR holds valid index files (``*.annl``). Case i (FIRST <= i < STOP) is
generated from ``(SEED, i)`` alone, so the parent can regenerate and describe
the case a crash interrupted. For each case the worker prints ``start i`` before
touching it and ``done i OUTCOME DETAIL`` after, flushing both; OUTCOME is
``refused`` (FormatError), ``same`` (results identical to the intact file's),
``sound`` (a re-checksummed file that loaded and returned well-formed results)
or ``bad`` (anything else: another exception, malformed or changed results).
A signal kills the process and leaves a ``start`` line without its ``done``.
"""

from __future__ import annotations

import copy
import os
import pathlib
import sys
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _crafting import index_bytes  # noqa: E402

import annlib  # noqa: E402
from annlib import io as annlib_io  # noqa: E402
from annlib.errors import FormatError  # noqa: E402

RAW_OPS = ("flip", "truncate", "append", "zero")
RECRC_OPS = ("section_bits", "section_value", "section_resize", "section_dtype", "section_drop", "section_add",
             "config_value", "config_drop", "combo")
_CONFIG_PALETTE = (None, True, False, 0, -1, 1, 2, 3, 7, 12, 400, 2**31, 2**63, 2**64, -(2**64), 0.5, 1e308,
                   "x", "dot", "squared_l2", "cosine", "int8", "float32", [], {}, [1], {"a": 1})
_FLOAT_PALETTE = (0.0, -0.0, np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, 1.0, 2.0**61)
_DTYPES = ("<f4", "<f8", "<f2", "<i4", "<i8", "|u1", "|i1", "<u4")
_KNOWN_SECTIONS = ("centers", "codebook", "leaf_offsets", "leaf_group_offsets", "entry_ids", "packed_codes",
                   "primary_leaf", "secondary_leaf", "point_sq_norms", "entry_sq_norms", "center_sq_norms",
                   "reorder_float", "reorder_int8", "reorder_int8_inv_scale", "data")
NUM_QUERIES, K = 6, 7


class Base:
    def __init__(self, path: pathlib.Path):
        self.path = path
        self.raw = path.read_bytes()
        self.kind, self.config, arrays = annlib_io.load_index_file(path, mmap=False)
        self.arrays = {name: np.array(a) for name, a in arrays.items()}
        index = load(path, self.kind)
        self.dim, self.n = index.dim, index.n
        self.queries = np.random.default_rng(7).standard_normal((NUM_QUERIES, index.dim)).astype(np.float32)
        self.result = search(index, self.queries)


def load(path, kind, mmap=True):
    index = annlib.load_index(path, mmap=mmap)
    if index.kind != kind:
        raise FormatError(f"loaded a {index.kind!r} index from a {kind!r} file")  # a mutated kind is refused too
    return index


def search(index, queries):
    return index.search_batched(queries, K)


def _section_value(rng, array: np.ndarray, n: int):
    if np.issubdtype(array.dtype, np.floating):
        return rng.choice(_FLOAT_PALETTE)
    info = np.iinfo(array.dtype)
    return int(np.clip(rng.choice([0, -1, 1, n - 1, n, n + 1, 31, 32, 33, info.max, info.min]), info.min, info.max))


def _config_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _config_paths(item, (*prefix, key))


def _mutate_config(rng, config, drop: bool):
    paths = [p for p in _config_paths(config) if p]
    path = paths[rng.integers(len(paths))]
    node = config
    for key in path[:-1]:
        node = node[key]
    if drop:
        del node[path[-1]]
        return f"del config{list(path)}"
    value = copy.deepcopy(_CONFIG_PALETTE[rng.integers(len(_CONFIG_PALETTE))])
    node[path[-1]] = value
    return f"config{list(path)} = {value!r}"


def _mutate_section(rng, arrays: dict, op: str, n: int) -> str:
    names = list(arrays)
    name = names[rng.integers(len(names))]
    array = arrays[name]
    if op == "section_bits":
        raw = array.reshape(-1).view(np.uint8).copy()
        if raw.size == 0:
            return f"{name}: empty, unchanged"
        positions = rng.integers(raw.size * 8, size=rng.integers(1, 9))
        for bit in positions:
            raw[bit // 8] ^= np.uint8(1 << (bit % 8))
        arrays[name] = raw.view(array.dtype).reshape(array.shape)
        return f"{name}: flipped bits {positions.tolist()}"
    if op == "section_value":
        if array.size == 0:
            return f"{name}: empty, unchanged"
        flat = array.reshape(-1).copy()
        i = int(rng.integers(flat.size))
        value = _section_value(rng, array, n)
        with np.errstate(over="ignore", invalid="ignore"):
            flat[i] = value
        arrays[name] = flat.reshape(array.shape)
        return f"{name}[{i}] = {value!r}"
    if op == "section_resize":
        delta = int(rng.integers(-3, 4)) or 1
        if array.ndim == 0:
            arrays[name] = array.reshape(1)
            return f"{name}: reshaped to (1,)"
        if rng.random() < 0.3 and array.ndim == 2:
            arrays[name] = array.reshape(-1)
            return f"{name}: flattened"
        if delta < 0:
            arrays[name] = array[: max(0, array.shape[0] + delta)]
        else:
            arrays[name] = np.concatenate([array, array[-1:].repeat(delta, axis=0) if len(array) else array])
        return f"{name}: first axis {delta:+d}"
    if op == "section_dtype":
        dtype = np.dtype(_DTYPES[rng.integers(len(_DTYPES))])
        with np.errstate(over="ignore", invalid="ignore"):
            arrays[name] = array.astype(dtype)
        return f"{name}: as {dtype}"
    if op == "section_drop":
        del arrays[name]
        return f"dropped {name}"
    if op == "section_add":
        new = _KNOWN_SECTIONS[rng.integers(len(_KNOWN_SECTIONS))]
        if new in arrays:
            new = "extra"
        arrays[new] = array.copy()
        return f"added {new} (a copy of {name})"
    raise AssertionError(op)


def make_case(bases: list[Base], seed: int, i: int) -> tuple[Base, bytes, str, bool]:
    """(base, file bytes, description, raw?) of case i; raw mutations keep the stale checksums."""
    rng = np.random.default_rng([seed, i])
    base = bases[int(rng.integers(len(bases)))]
    if rng.random() < 0.4:
        op = RAW_OPS[rng.integers(len(RAW_OPS))]
        data = bytearray(base.raw)
        if op == "flip":
            bits = rng.integers(len(data) * 8, size=rng.integers(1, 4))
            for bit in bits:
                data[bit // 8] ^= 1 << (bit % 8)
            what = f"flipped bits {bits.tolist()}"
        elif op == "truncate":
            size = int(rng.integers(len(data)))
            data = data[:size]
            what = f"truncated to {size} bytes"
        elif op == "append":
            extra = rng.integers(256, size=rng.integers(1, 100)).astype(np.uint8).tobytes()
            data += extra
            what = f"appended {len(extra)} bytes"
        else:
            start = int(rng.integers(len(data)))
            length = int(rng.integers(1, 65))
            data[start : start + length] = bytes(len(data[start : start + length]))
            what = f"zeroed {length} bytes at {start}"
        return base, bytes(data), f"{base.path.name}: {what}", True
    op = RECRC_OPS[rng.integers(len(RECRC_OPS))]
    config, arrays = copy.deepcopy(base.config), {k: v.copy() for k, v in base.arrays.items()}
    if op in ("config_value", "config_drop"):
        what = _mutate_config(rng, config, op == "config_drop")
    elif op == "combo":
        what = _mutate_config(rng, config, False) + "; " + _mutate_section(rng, arrays, "section_value", base.n)
    else:
        what = _mutate_section(rng, arrays, op, base.n)
    return base, index_bytes(base.kind, config, arrays), f"{base.path.name}: re-checksummed, {what}", False


def well_formed(result, n: int, metric: str) -> str | None:
    """None when the result is a possible answer of some index over n points, else what is wrong."""
    ids, distances = np.asarray(result.ids), np.asarray(result.distances)
    if ids.shape != (NUM_QUERIES, K) or distances.shape != (NUM_QUERIES, K):
        return f"shapes {ids.shape} {distances.shape}"
    worst = np.inf if metric == "squared_l2" else -np.inf
    for row_ids, row_d in zip(ids, distances):
        found = row_ids >= 0
        if (row_ids < -1).any() or (row_ids >= n).any():
            return f"ids out of range: {row_ids.tolist()}"
        if not found[: found.sum()].all():
            return f"-1 before a found id: {row_ids.tolist()}"
        if len(set(row_ids[found].tolist())) != found.sum():
            return f"duplicate ids: {row_ids.tolist()}"
        if not np.isfinite(row_d[found]).all() or not (row_d[~found] == worst).all():
            return f"distances {row_d.tolist()}"
        d = row_d[found]
        if (np.diff(d) < 0).any() if metric == "squared_l2" else (np.diff(d) > 0).any():
            return f"distances not best first: {d.tolist()}"
    return None


def run_case(base: Base, data: bytes, raw: bool, path: pathlib.Path, mmap: bool) -> tuple[str, str]:
    path.write_bytes(data)
    try:
        index = load(path, base.kind, mmap=mmap)
        result = search(index, base.queries)
    except FormatError as exc:
        return "refused", str(exc).split(": ", 1)[-1][:120]
    except Exception:  # noqa: BLE001 - any other exception is the finding
        return "bad", traceback.format_exc(limit=3).replace("\n", " | ")[-400:]
    finally:
        path.unlink()
    if raw:
        same = np.array_equal(result.ids, base.result.ids) and np.array_equal(result.distances, base.result.distances)
        return ("same", "") if same else ("bad", "a damaged file loaded and answered differently")
    problem = well_formed(result, index.n, index.metric)
    return ("sound", "") if problem is None else ("bad", problem)


def main(argv: list[str]) -> int:
    base_dir, work_dir, seed, first, stop = pathlib.Path(argv[0]), pathlib.Path(argv[1]), *map(int, argv[2:5])
    bases = [Base(p) for p in sorted(base_dir.glob("*.annl"))]
    print("ready", flush=True)
    for i in range(first, stop):
        base, data, _, raw = make_case(bases, seed, i)
        print(f"start {i}", flush=True)
        outcome, detail = run_case(base, data, raw, work_dir / f"case-{i}.annl", mmap=bool(i % 2))
        print(f"done {i} {outcome} {detail}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
