"""Consistency checks of a loaded index file's configuration and sections.

:mod:`annlib.io` proves a file intact (magic, version, layout, checksums); this
module proves it *consistent*: that every section the core or the autotuner
reads has the dtype, shape and value ranges the configuration and the header's
``n`` and ``dim`` imply, and that no section the configuration does not call
for is present. A file that passes can be handed to the C++ core: no crafted
file with valid checksums can make it read out of bounds, allocate more than
the file holds, or search data that disagrees with its configuration
(issue 12). Every problem is a :class:`~annlib.errors.FormatError` naming the
file and the section. (The exact and JAX brute-force kinds hold a single
``data`` section, checked by :func:`annlib.index.protocol.read_flat_state`.)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from annlib import _validate
from annlib.config import TreeAhConfig
from annlib.errors import FormatError

_F32, _I8, _U8, _I32, _I64 = (np.dtype(t) for t in ("<f4", "|i1", "|u1", "<i4", "<i8"))
_GROUP = 32  # entries per packed LUT16 group
_CODE_BYTES_PER_GROUP_BLOCK = 16  # 32 entries x 4 bits


def _fail(path, what: str):
    raise FormatError(f"{path}: inconsistent index file: {what}")


def _header_int(path, config: dict, key: str, maximum: int = _validate.MAX_COUNT) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, f"header field {key!r} must be an integer, got {type(value).__name__} {_short(value)}")
    if not 1 <= value <= maximum:
        _fail(path, f"header field {key!r} must be in [1, {maximum}], got {_short(value)}")
    return value


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tree_ah_header(path, config: dict) -> tuple[TreeAhConfig, int, int]:
    """The :class:`TreeAhConfig`, ``n`` and ``dim`` of a tree-AH file's header config.

    Types are checked, never coerced: a string, float or bool where an integer
    belongs, or a section that is not an object, is a FormatError.
    """
    if not isinstance(config, dict):
        _fail(path, f"header config must be an object, got {type(config).__name__}")
    n = _header_int(path, config, "n")
    dim = _header_int(path, config, "dim")
    build_seconds = config.get("build_seconds")
    if build_seconds is not None and (
        isinstance(build_seconds, bool)
        or not isinstance(build_seconds, numbers.Real)
        or not math.isfinite(build_seconds)
    ):
        _fail(path, f"header field 'build_seconds' must be a number or null, got {_short(build_seconds)}")
    try:
        index_config = TreeAhConfig.from_dict(config.get("index"))
    except (TypeError, ValueError) as exc:  # the config classes raise InvalidTypeError / InvalidValueError
        raise FormatError(f"{path}: invalid index configuration ({exc})") from None
    if index_config.tree.num_leaves > n:
        _fail(path, f"num_leaves ({index_config.tree.num_leaves}) exceeds n ({n})")
    return index_config, n, dim


def _expected_sections(config: TreeAhConfig) -> set[str]:
    names = {"centers", "codebook", "leaf_offsets", "leaf_group_offsets", "entry_ids", "packed_codes", "primary_leaf"}
    if config.tree.soar_lambda is not None:
        names.add("secondary_leaf")
    if config.metric == "squared_l2":
        names |= {"point_sq_norms", "entry_sq_norms", "center_sq_norms"}
    if config.reorder is not None:
        if config.reorder.quantize == "float32" or config.reorder.two_stage:
            names.add("reorder_float")
        if config.reorder.quantize == "int8":
            names |= {"reorder_int8", "reorder_int8_inv_scale"}
            if config.reorder.two_stage and config.metric == "squared_l2":
                names.add("reorder_int8_sq_norms")
    return names


def _check_array(path, arrays: dict, name: str, dtype: np.dtype, shape: tuple) -> np.ndarray:
    array = arrays[name]
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        _fail(path, f"section {name!r} is not a C-contiguous array")
    if array.dtype != dtype:
        _fail(path, f"section {name!r} has dtype {array.dtype}, expected {dtype}")
    if array.shape != shape:
        _fail(path, f"section {name!r} has shape {array.shape}, expected {shape}")
    return array


def _check_finite(path, name: str, array: np.ndarray, non_negative: bool = False, positive: bool = False,
                  maximum: float = _validate.MAX_SQUARED_NORM) -> None:
    """Every value finite and at most ``maximum`` in magnitude (so the core's float32 arithmetic cannot overflow)."""
    flat = array.reshape(-1)
    step = 1 << 22  # bounded temporaries for large sections
    for start in range(0, flat.size, step):
        chunk = flat[start : start + step]
        if not np.isfinite(chunk).all():
            _fail(path, f"section {name!r} holds NaN or infinity")
        if chunk.size and np.abs(chunk).max() > maximum:
            _fail(path, f"section {name!r} holds values over {maximum:.3g} in magnitude")
        if non_negative and (chunk < 0).any():
            _fail(path, f"section {name!r} holds negative values")
        if positive and (chunk <= 0).any():
            _fail(path, f"section {name!r} holds values <= 0")


def _check_rows(path, name: str, array: np.ndarray) -> None:
    """Rows finite with squared norms at most 2**120: the limit search data obey (see _validate)."""
    step = 1 << 16
    for start in range(0, array.shape[0], step):
        try:
            _validate._check_values(array[start : start + step], name)
        except ValueError as exc:
            _fail(path, f"section {exc}")


def _check_offsets(path, name: str, offsets: np.ndarray, total: int) -> None:
    # Comparisons only, no subtraction: differences of arbitrary int64 values could wrap.
    if offsets[0] != 0 or offsets[-1] != total:
        _fail(path, f"section {name!r} must run from 0 to {total}, got {int(offsets[0])} .. {int(offsets[-1])}")
    if (offsets[1:] < offsets[:-1]).any():
        _fail(path, f"section {name!r} is not non-decreasing")


def check_tree_ah_arrays(path, config: TreeAhConfig, arrays: dict, n: int, dim: int,
                         live: np.ndarray | None = None) -> None:
    """Check every section of a tree-AH file against ``config``, ``n`` and ``dim``; raise FormatError if any disagrees.

    Checked: the set of sections (each one the configuration calls for, no other);
    each section's dtype and shape; the leaf offsets (from 0, non-decreasing, ending
    at the number of entries) and the group offsets (ceil(count / 32) groups per
    leaf, matching the packed codes' size); the entry ids (in ``[0, n)``, every
    live point exactly once in its primary leaf and, when spilled, exactly once in its
    secondary leaf, nowhere else, so no (point, leaf) pair repeats; a point dead in
    ``live`` (the file's uint8 liveness section, None when every point is live) at
    most once in each, since format 3 drops deleted points' entries from the leaves
    they crowd);
    ``primary_leaf``/``secondary_leaf`` ranges; float sections finite and within
    the magnitudes search data may have (rows' squared norms at most 2**120,
    codewords and int8 scales at most 2**60), norms non-negative, int8 scales
    positive.
    """
    expected = _expected_sections(config)
    present = set(arrays)
    optional = {"reorder_int8_offset", "reorder_int8_row_scale"} if "reorder_int8" in expected else set()
    if expected - present:
        _fail(path, f"missing sections {sorted(expected - present)} that the configuration needs")
    if present - expected - optional:
        _fail(path, f"sections {sorted(present - expected - optional)} are not used by this configuration")

    leaves = config.tree.num_leaves
    num_blocks = -(-dim // config.ah.dims_per_block)
    centers = _check_array(path, arrays, "centers", _F32, (leaves, dim))
    codebook = _check_array(path, arrays, "codebook", _F32, (16 * dim,))
    offsets = _check_array(path, arrays, "leaf_offsets", _I64, (leaves + 1,))
    group_offsets = _check_array(path, arrays, "leaf_group_offsets", _I64, (leaves + 1,))
    entry_ids = arrays["entry_ids"]
    if not isinstance(entry_ids, np.ndarray) or entry_ids.ndim != 1:
        _fail(path, "section 'entry_ids' must be 1-D")
    num_entries = entry_ids.shape[0]
    _check_array(path, arrays, "entry_ids", _I32, (num_entries,))
    packed = arrays["packed_codes"]
    if not isinstance(packed, np.ndarray) or packed.ndim != 1:
        _fail(path, "section 'packed_codes' must be 1-D")
    group_bytes = num_blocks * _CODE_BYTES_PER_GROUP_BLOCK
    if packed.shape[0] % group_bytes:
        _fail(path, f"section 'packed_codes' has {packed.shape[0]} bytes, not a multiple of {group_bytes}")
    _check_array(path, arrays, "packed_codes", _U8, (packed.shape[0],))
    primary = _check_array(path, arrays, "primary_leaf", _I32, (n,))
    spilled = config.tree.soar_lambda is not None
    secondary = _check_array(path, arrays, "secondary_leaf", _I32, (n,)) if spilled else None

    _check_offsets(path, "leaf_offsets", offsets, num_entries)
    _check_offsets(path, "leaf_group_offsets", group_offsets, packed.shape[0] // group_bytes)
    counts = np.diff(offsets)
    if (np.diff(group_offsets) != (counts + _GROUP - 1) // _GROUP).any():
        _fail(path, "leaf_group_offsets do not hold ceil(entries / 32) groups per leaf")
    if live is not None and (not isinstance(live, np.ndarray) or live.dtype != _U8 or live.shape != (n,)
                             or (live > 1).any()):
        _fail(path, f"section 'live' must be uint8 0/1 of shape ({n},)")
    alive = np.ones(n, dtype=bool) if live is None else live.astype(bool)
    num_live = int(np.count_nonzero(alive))
    if not num_live <= num_entries <= (2 * n if spilled else n):
        _fail(path, f"{num_entries} entries for n={n} points ({'spilled' if spilled else 'not spilled'})")

    _check_rows(path, "centers", centers)
    _check_finite(path, "codebook", codebook, maximum=2.0**60)
    if num_entries and (entry_ids.min() < 0 or entry_ids.max() >= n):
        _fail(path, f"entry ids outside [0, {n})")
    if primary.min() < 0 or primary.max() >= leaves:
        _fail(path, f"primary_leaf values outside [0, {leaves})")
    entry_leaf = np.repeat(np.arange(leaves, dtype=np.int32), counts)
    in_primary = primary[entry_ids] == entry_leaf
    in_own = np.bincount(entry_ids[in_primary], minlength=n)
    if (in_own[alive] != 1).any() or (in_own[~alive] > 1).any():
        _fail(path, "entries do not hold every point exactly once in its primary leaf")
    if secondary is None:
        if not in_primary.all():
            _fail(path, "entries hold points outside their primary leaf in an index without spilling")
    else:
        if secondary.min() < -1 or secondary.max() >= leaves or (secondary == primary).any():
            _fail(path, f"secondary_leaf values outside [-1, {leaves}) or equal to the primary leaf")
        others = entry_ids[~in_primary]
        if (secondary[others] != entry_leaf[~in_primary]).any():
            _fail(path, "entries hold points outside their primary and secondary leaves")
        in_other, has_other = np.bincount(others, minlength=n), secondary >= 0
        if (in_other[alive] != has_other[alive]).any() or (in_other[~alive] > has_other[~alive]).any():
            _fail(path, "entries do not hold every spilled point exactly once in its secondary leaf")

    if config.metric == "squared_l2":
        point_norms = _check_array(path, arrays, "point_sq_norms", _F32, (n,))
        entry_norms = _check_array(path, arrays, "entry_sq_norms", _F32, (num_entries,))
        center_norms = _check_array(path, arrays, "center_sq_norms", _F32, (leaves,))
        for name, values in (("point_sq_norms", point_norms), ("center_sq_norms", center_norms)):
            _check_finite(path, name, values, non_negative=True)  # at most 2**120, like the rows
        # The norms of the entries' reconstructions (c + r~), not of their points: finite and >= 0.
        _check_finite(path, "entry_sq_norms", entry_norms, non_negative=True)
    if config.reorder is not None:
        if "reorder_float" in expected:
            _check_rows(path, "reorder_float", _check_array(path, arrays, "reorder_float", _F32, (n, dim)))
        if "reorder_int8_sq_norms" in expected:
            _check_finite(path, "reorder_int8_sq_norms",
                          _check_array(path, arrays, "reorder_int8_sq_norms", _F32, (n,)), non_negative=True)
        if config.reorder.quantize == "int8":
            _check_array(path, arrays, "reorder_int8", _I8, (n, dim))
            scale = _check_array(path, arrays, "reorder_int8_inv_scale", _F32, (dim,))
            _check_finite(path, "reorder_int8_inv_scale", scale, positive=True, maximum=2.0**60)
            if "reorder_int8_offset" in arrays:  # range-centred codes; files without it are centred on 0
                offset = _check_array(path, arrays, "reorder_int8_offset", _F32, (dim,))
                _check_finite(path, "reorder_int8_offset", offset)
            if "reorder_int8_row_scale" in arrays:  # row-scaled codes; files without it scale every row by 1
                row_scale = _check_array(path, arrays, "reorder_int8_row_scale", _F32, (n,))
                _check_finite(path, "reorder_int8_row_scale", row_scale, positive=True, maximum=2.0**60)

