"""Filters of a search: which points a query may return (issue 14).

A filter names the allowed points by their user ids, in one of these forms:

* ``Filter.allow(ids)`` (or a plain integer array): only these ids; ids not in the index are ignored;
* ``Filter.deny(ids)``: every id but these;
* ``Filter.bitmap(mask)``: a boolean mask over a dense id space, ``mask[id]`` true = allowed;
* ``Filter.predicate(cfunc, data=None)``: a numba ``@cfunc`` of signature ``boolean(int64)``, or
  ``boolean(int64, voidptr)`` called with ``data`` (a numpy array, or a raw address), e.g. to
  look up attributes by id. The core calls it with the GIL released, on the search threads, and
  only for points that would otherwise enter a query's top-k (so a predicate that passes
  everything costs almost nothing). It must be thread-safe and must not raise.
* ``Filter.callable(fn)`` (or a plain Python callable): ``fn(id) -> bool``, called from Python
  once per indexed point before the search: convenient and slow (about a microsecond a point).

Id lists and bitmaps are resolved to a bitmap over the index's rows (the core's slot ids), which
the scan tests; their selectivity is exact. A predicate's selectivity is estimated from a sample.
A :class:`Filter` built once and reused caches its resolution per index snapshot, so repeated
searches with the same filter resolve it once.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import numpy as np

from annlib import _core
from annlib._optional import import_optional
from annlib.errors import InvalidTypeError, InvalidValueError
from annlib.index.ids import IdMap, user_ids

__all__ = ["Filter", "Resolved", "query_filters"]

#: Live points a predicate is tried on to estimate its selectivity.
PREDICATE_SAMPLE = 2048

# Predicate kinds of the core's filter table (csrc/bindings/filter_args.h).
_PLAIN, _WITH_DATA = 1, 2

_SIGNATURES = "boolean(int64) or boolean(int64, voidptr)"


def _cfunc_kind(cfunc) -> int:
    """The core's kind of a numba cfunc: its signature checked (a wrong one names what arrived)."""
    numba = import_optional("numba", "filter", "a compiled filter predicate (annlib.Filter.predicate)")
    from numba.core.ccallback import CFunc  # noqa: PLC0415 - numba is an optional extra

    if not isinstance(cfunc, CFunc):
        raise InvalidTypeError(
            f"a predicate must be a numba @cfunc of signature {_SIGNATURES}, got {type(cfunc).__name__} "
            "(a plain Python callable goes through annlib.Filter.callable)"
        )
    sig = cfunc._sig
    types = numba.types
    args = tuple(sig.args)
    if sig.return_type == types.boolean and args == (types.int64,):
        return _PLAIN
    if sig.return_type == types.boolean and args == (types.int64, types.voidptr):
        return _WITH_DATA
    raise InvalidValueError(f"a predicate's signature must be {_SIGNATURES}, got {sig}")


def _data_address(data) -> tuple[int, Any]:
    """(address, the object that keeps it alive) of a predicate's user data."""
    if data is None:
        return 0, None
    if isinstance(data, np.ndarray):
        if not data.flags.c_contiguous:
            raise InvalidValueError("predicate data must be a C-contiguous array (np.ascontiguousarray copies one)")
        return int(data.ctypes.data), data
    if isinstance(data, (int, np.integer)) and not isinstance(data, (bool, np.bool_)):
        if not 0 <= int(data) < 2**64:
            raise InvalidValueError(f"predicate data address must be a non-negative 64-bit integer, got {data}")
        return int(data), None
    raise InvalidTypeError(f"predicate data must be a numpy array, a raw address (int) or None, got {type(data).__name__}")


class Filter:
    """Which points a search may return; see :mod:`annlib.filter` for the forms.

    Pass one as ``filter=`` to ``search`` / ``search_batched`` of any index (or, in a batch, a
    sequence of one filter per query). Build it with the class methods.
    """

    __slots__ = ("kind", "_ids", "_mask", "_fn", "_kind", "_address", "_data", "_data_address", "_cache")

    def __init__(self, kind: str):
        self.kind = kind
        self._ids = self._mask = self._fn = self._data = None
        self._kind = self._address = self._data_address = 0
        self._cache: tuple | None = None

    @classmethod
    def allow(cls, ids) -> Filter:
        """Only the points with these user ids (ids not in the index are ignored)."""
        self = cls("allow")
        self._ids = _filter_ids(ids, "allow")
        return self

    @classmethod
    def deny(cls, ids) -> Filter:
        """Every point but those with these user ids."""
        self = cls("deny")
        self._ids = _filter_ids(ids, "deny")
        return self

    @classmethod
    def bitmap(cls, mask) -> Filter:
        """``mask[id]`` true = the point with user id ``id`` is allowed: a boolean (or 0/1 uint8) array
        over a dense id space, at least as long as the largest id in the index plus one and no longer
        than the ids the index has used (``index`` ids 0..n-1: length n). Copied."""
        array = np.asarray(mask)
        if array.ndim != 1:
            raise InvalidValueError(f"a filter bitmap must be 1-D, got shape {array.shape}")
        if array.dtype == np.uint8:
            if array.size and int(array.max()) > 1:
                raise InvalidValueError("a uint8 filter bitmap must hold 0 and 1 only")
        elif array.dtype != np.bool_:
            raise InvalidTypeError(f"a filter bitmap must be a bool (or 0/1 uint8) array, got dtype {array.dtype}")
        self = cls("bitmap")
        self._mask = array.astype(bool, copy=True)
        return self

    @classmethod
    def predicate(cls, cfunc, data=None) -> Filter:
        """A numba ``@cfunc`` of signature ``boolean(int64)`` or ``boolean(int64, voidptr)`` over user ids.

        ``data`` (only with the second signature): a C-contiguous numpy array (the filter keeps
        it alive; the predicate receives its address) or a raw address. Needs the ``filter``
        extra (numba)."""
        kind = _cfunc_kind(cfunc)
        if kind == _PLAIN and data is not None:
            raise InvalidValueError("this predicate's signature is boolean(int64): it takes no data")
        self = cls("predicate")
        self._fn, self._kind, self._address = cfunc, kind, int(cfunc.address)
        self._data_address, self._data = _data_address(data)
        return self

    @classmethod
    def callable(cls, fn: Callable[[int], bool]) -> Filter:
        """``fn(id) -> bool`` in Python, called once per indexed point before each search (slow:
        prefer an id list, a bitmap or a compiled predicate)."""
        if not callable(fn):
            raise InvalidTypeError(f"a filter callable must be callable, got {type(fn).__name__}")
        self = cls("callable")
        self._fn = fn
        return self

    def __repr__(self) -> str:
        if self.kind in ("allow", "deny"):
            return f"Filter.{self.kind}({len(self._ids)} ids)"
        if self.kind == "bitmap":
            return f"Filter.bitmap({int(self._mask.sum())} of {len(self._mask)} set)"
        return f"Filter.{self.kind}({getattr(self._fn, '__name__', self._fn)!r})"

    # ------------------------------------------------------------------ resolution

    def resolve(self, snap, num_threads: int = 1) -> Resolved:
        """This filter over the rows of an index snapshot (anything with ``ids``, an IdMap)."""
        cache = self._cache
        if cache is not None and cache[0] is snap:
            return cache[1]
        ids: IdMap = snap.ids
        if self.kind == "predicate":
            return _sampled(self, ids, num_threads)
        mask = self._row_mask(ids)
        resolved = Resolved.from_mask(self, ids, mask)
        if self.kind != "callable":  # a callable may answer differently next time: never cached
            self._cache = (snap, resolved)  # one store: a concurrent search sees the old or the new pair
        return resolved

    def _row_mask(self, ids: IdMap) -> np.ndarray:
        """Allowed live rows as a bool array over the rows."""
        live = np.ones(ids.rows, dtype=bool) if ids.live is None else ids.live.astype(bool)
        if self.kind == "allow":
            mask = np.zeros(ids.rows, dtype=bool)
            rows = ids.rows_of(self._ids)
            mask[rows[rows >= 0]] = True
            return mask
        if self.kind == "deny":
            rows = ids.rows_of(self._ids)
            live[rows[rows >= 0]] = False
            return live
        if self.kind == "bitmap":
            return live & _bitmap_rows(self._mask, ids)
        # callable
        mask = np.zeros(ids.rows, dtype=bool)
        for row in np.flatnonzero(live):
            mask[row] = bool(self._fn(int(ids.row_ids[row])))
        return mask

    def table_row(self) -> tuple[int, int, int]:
        """(predicate address, data address, kind) for the core's filter table; zeros without a predicate."""
        return (self._address, self._data_address, self._kind) if self.kind == "predicate" else (0, 0, 0)


def _filter_ids(ids, what: str) -> np.ndarray:
    array = ids if isinstance(ids, np.ndarray) else np.asarray(ids) if not isinstance(ids, (str, bytes)) else None
    if array is None:
        raise InvalidTypeError(f"filter {what} ids must be an array of integers, got {type(ids).__name__}")
    if array.dtype == np.bool_:
        raise InvalidTypeError(
            f"filter {what} ids must be integers, got a bool array (a mask over ids is annlib.Filter.bitmap(mask))"
        )
    if array.dtype == object:
        try:
            array = np.asarray(array.tolist(), dtype=np.int64)
        except (OverflowError, TypeError, ValueError):
            raise InvalidValueError(f"filter {what} ids must be integers that fit in int64") from None
    return np.unique(user_ids(array, name=f"filter {what} ids"))


def _bitmap_rows(mask: np.ndarray, ids: IdMap) -> np.ndarray:
    """mask[user id of each row]; the mask must cover every live id and no more than the ids used."""
    live_ids = ids.live_ids()
    if live_ids.size:
        low, high = int(live_ids.min()), int(live_ids.max())
        if low < 0:
            raise InvalidValueError(f"a filter bitmap covers ids from 0, but the index holds id {low}: use Filter.allow")
        if len(mask) <= high:
            raise InvalidValueError(
                f"the filter bitmap has length {len(mask)}, but the index holds ids up to {high}: it must have "
                f"length {high + 1} to {ids.next_id}"
            )
    if len(mask) > max(ids.next_id, 1):
        raise InvalidValueError(
            f"the filter bitmap has length {len(mask)}, but the index's ids end at {ids.next_id - 1}: "
            f"it must have length {ids.next_id} or less (one entry per id)"
        )
    rows = ids.row_ids
    inside = (rows >= 0) & (rows < len(mask))
    out = np.zeros(ids.rows, dtype=bool)
    out[inside] = mask[rows[inside]]
    return out


@dataclasses.dataclass
class Resolved:
    """A filter over the rows of one index snapshot, as the search and the planner use it.

    ``bits``: the allowed rows packed (numpy packbits, little bit order), or None for a predicate
    alone; ``allowed``: the number of allowed live points, exact (``estimated`` False) or from a
    sample of a predicate; ``extras``: per-kind tables computed on first use (tree-AH: allowed
    entries per leaf).
    """

    filter: Filter | None
    num_rows: int
    bits: np.ndarray | None
    allowed: float
    estimated: bool
    row_mask: np.ndarray | None = None
    use_predicate: bool = True
    extras: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_mask(cls, f: Filter, ids: IdMap, mask: np.ndarray, predicate: bool = True) -> Resolved:
        """``mask``: allowed live rows. ``predicate=False``: the core tests the bitmap alone (a
        predicate already evaluated into it)."""
        count = int(np.count_nonzero(mask))
        # A filter that passes every live point is no filter: the scan then tests nothing.
        bits = None if count == ids.num_live else np.packbits(mask, bitorder="little")
        return cls(f, ids.rows, bits, float(count), False, mask, use_predicate=predicate)

    @classmethod
    def everything(cls, ids: IdMap) -> Resolved:
        """No filter (a None in a per-query sequence): every live point."""
        return cls(None, ids.rows, None, float(ids.num_live), False)

    def materialized(self, ids: IdMap, num_threads: int) -> Resolved:
        """A predicate evaluated on every live point once: a bitmap with an exact count."""
        mask = np.zeros(ids.rows, dtype=bool)
        mask[self.allowed_rows(ids, num_threads)] = True
        return Resolved.from_mask(self.filter, ids, mask, predicate=False)

    @property
    def is_predicate(self) -> bool:
        """A predicate the core calls (not one already evaluated into ``bits``)."""
        return self.filter is not None and self.filter.kind == "predicate" and self.use_predicate

    @property
    def passes_all(self) -> bool:
        """Known to pass every live point (nothing for the scan to test)."""
        return self.bits is None and not self.is_predicate

    def allowed_rows(self, ids: IdMap, num_threads: int) -> np.ndarray:
        """Every allowed live row, sorted (a predicate is evaluated on every live point, once)."""
        rows = self.extras.get("rows")
        if rows is None:
            if self.is_predicate:  # ask it about every live point
                live = ids.live_rows().astype(np.int64)
                passed = _core.evaluate_filter(None, _table([self]), ids.row_ids, live, num_threads)
                rows = live[passed.astype(bool)]
            elif self.row_mask is not None:
                rows = np.flatnonzero(self.row_mask).astype(np.int64)
            else:
                rows = ids.live_rows().astype(np.int64)
            self.extras["rows"] = rows
        return rows


@functools.lru_cache(maxsize=8)
def _sample_rows(ids: IdMap) -> np.ndarray:
    """Evenly spread live rows of an id map (by identity: maps are immutable)."""
    live = ids.live_rows().astype(np.int64)
    if len(live) > PREDICATE_SAMPLE:
        live = live[np.linspace(0, len(live) - 1, PREDICATE_SAMPLE).astype(np.int64)]
    return live


def _sampled(f: Filter, ids: IdMap, num_threads: int) -> Resolved:
    """A predicate with its selectivity estimated from evenly spread live points."""
    live = _sample_rows(ids)
    resolved = Resolved(f, ids.rows, None, 0.0, True)
    if len(live):
        passed = _core.evaluate_filter(None, _table([resolved]), ids.row_ids, live, num_threads)
        resolved.allowed = float(np.count_nonzero(passed)) / len(live) * ids.num_live
        resolved.estimated = len(live) < ids.num_live
    return resolved


def _table(resolved: list[Resolved]) -> np.ndarray:
    """The core's filter table (filters, 4): has_bits, predicate address, data address, kind."""
    table = np.zeros((len(resolved), 4), dtype=np.uint64)
    for i, r in enumerate(resolved):
        table[i] = (1 if r.bits is not None else 0, *(r.filter.table_row() if r.is_predicate else (0, 0, 0)))
    return table


def core_arguments(resolved: list[Resolved], ids: IdMap, filter_of_query: np.ndarray | None) -> dict:
    """Keyword arguments of the core's filtered searches for these filters and the queries' mapping."""
    bits = None
    if any(r.bits is not None for r in resolved):
        width = (ids.rows + 7) // 8
        bits = np.zeros((len(resolved), width), dtype=np.uint8)
        for i, r in enumerate(resolved):
            if r.bits is not None:
                bits[i] = r.bits
    predicates = any(r.is_predicate for r in resolved)
    return {
        "filter_bits": bits,
        "filter_table": _table(resolved),
        "filter_of_query": None if filter_of_query is None else np.ascontiguousarray(filter_of_query, dtype=np.int32),
        "row_ids": ids.row_ids if predicates else None,
    }


# ---------------------------------------------------------------------- what users pass

def as_filter(value) -> Filter:
    """One filter from what a user passed: a Filter, an id array, a numba cfunc or a Python callable."""
    if isinstance(value, Filter):
        return value
    if type(value).__name__ == "CFunc" and type(value).__module__.startswith("numba"):
        return Filter.predicate(value)
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise InvalidValueError(
                f"a filter array must be 1-D user ids, got shape {value.shape} (per-query filters: a list of them)"
            )
        return Filter.allow(value)
    if callable(value):
        return Filter.callable(value)
    if isinstance(value, (list, tuple, range)):
        return Filter.allow(np.asarray(value) if len(value) else np.empty(0, dtype=np.int64))
    raise InvalidTypeError(
        f"filter must be an array of allowed ids, an annlib.Filter, a numba cfunc or a callable, got {type(value).__name__}"
    )


def _is_per_query(value) -> bool:
    """A list or tuple of filters (rather than one list of ids)."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    return all(isinstance(v, (Filter, np.ndarray, list, tuple, range)) or callable(v) or v is None for v in value) \
        and not all(isinstance(v, (int, np.integer)) for v in value)


def query_filters(value, num_queries: int) -> tuple[list[Filter | None], np.ndarray | None]:
    """(distinct filters, filter index of each query or None when the one filter serves all).

    A list or tuple whose items are filters (Filter objects, id arrays, cfuncs, callables, or None
    for no filter) gives one per query and must have ``num_queries`` items; anything else is one
    filter for every query. Filters passed as the same object are resolved once."""
    if not _is_per_query(value):
        return [as_filter(value)], None
    if len(value) != num_queries:
        raise InvalidValueError(
            f"a per-query filter sequence must hold one filter per query ({num_queries}), got {len(value)}"
        )
    distinct: list[Filter | None] = []
    seen: dict[int, int] = {}
    of_query = np.empty(num_queries, dtype=np.int32)
    for q, item in enumerate(value):
        key = id(item)
        if key not in seen:
            seen[key] = len(distinct)
            distinct.append(None if item is None else as_filter(item))
        of_query[q] = seen[key]
    return distinct, of_query
