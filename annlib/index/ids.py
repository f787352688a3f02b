"""User ids of an index: the map between the user's 64-bit ids and the index's rows.

Every index kind stores its points in rows 0..rows-1; users name points by ids of their own
(any int64 values, not necessarily contiguous; ``0..n-1`` when they give none). An
:class:`IdMap` is immutable: every write builds a new one, so a search that read the index's
snapshot once keeps a consistent map however the index changes meanwhile (see
:mod:`annlib.index.mutable`). Rows may be *dead* (deleted but not yet compacted away); a dead
row keeps its slot until :meth:`IdMap.compacted` drops it, and its id is free for reuse.

Lookups go through the live ids sorted once per map (``np.searchsorted``), so a batch of
``m`` lookups costs O(m log n) and building a map O(n log n); a dict would cost the same
O(n) copy per write and be slower to query in bulk.
"""

from __future__ import annotations

import numpy as np

from annlib.errors import FormatError, InvalidTypeError, InvalidValueError

#: Ids shown in an error message before "...".
_SHOWN = 5


def _listing(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:_SHOWN])
    return shown + (f", ... ({len(values)} in all)" if len(values) > _SHOWN else "")


def user_ids(ids, count: int | None = None, name: str = "ids") -> np.ndarray:
    """Validate user ids: a 1-D array of integers (``count`` of them when given), as int64."""
    array = np.asarray(ids)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise InvalidValueError(f"{name} must be a 1-D array of integers, got shape {array.shape}")
    if array.size and (array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer)):
        raise InvalidTypeError(f"{name} must be integers, got dtype {array.dtype}")
    if array.dtype == np.uint64 and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise InvalidValueError(f"{name} must fit in int64, got {int(array.max())}")
    if count is not None and array.shape[0] != count:
        raise InvalidValueError(f"{name} must hold one id per vector ({count}), got {array.shape[0]}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _refuse_empty_slot_id(ids: np.ndarray) -> None:
    if (ids == -1).any():
        raise InvalidValueError("ids must not hold -1: it is the id of an empty result slot")


def _duplicates(ids: np.ndarray) -> np.ndarray:
    s = np.sort(ids)
    repeated = s[1:][s[1:] == s[:-1]]  # sorted: each duplicate once per extra copy
    return repeated[np.concatenate(([True], repeated[1:] != repeated[:-1]))] if repeated.size else repeated


class IdMap:
    """Rows <-> user ids of one snapshot of an index. Immutable; writes return a new map.

    ``row_ids[r]`` is the user id of row ``r``; ``live`` is None when every row is live, else a
    uint8 array (1 = live) shared with the index's search (the tree-AH scan reads it).
    """

    __slots__ = ("row_ids", "live", "num_live", "identity", "next_id", "_keys", "_rows")

    def __init__(self, row_ids: np.ndarray, live: np.ndarray | None = None, next_id: int | None = None):
        self.row_ids = row_ids
        if live is not None and live.all():
            live = None
        self.live = live
        rows = len(row_ids)
        live_rows = np.arange(rows, dtype=np.int64) if live is None else np.flatnonzero(live).astype(np.int64)
        self.num_live = int(len(live_rows))
        keys = row_ids[live_rows]
        self.identity = live is None and bool(np.array_equal(row_ids, np.arange(rows, dtype=np.int64)))
        if self.identity:
            self._keys, self._rows = keys, live_rows
        else:
            order = np.argsort(keys, kind="stable")
            self._keys, self._rows = keys[order], live_rows[order]
            if len(keys) > 1 and (self._keys[1:] == self._keys[:-1]).any():
                raise InvalidValueError(f"ids must be unique; repeated: {_listing(_duplicates(keys))}")
        # Fresh ids continue after every id ever held by a row (dead rows included).
        top = int(row_ids.max()) + 1 if rows else 0
        self.next_id = max(top, next_id or 0)

    # ------------------------------------------------------------------ construction

    @classmethod
    def identity_map(cls, rows: int) -> IdMap:
        return cls(np.arange(rows, dtype=np.int64))

    @classmethod
    def of(cls, ids, rows: int) -> IdMap:
        """The map of a new index of ``rows`` points: ``ids`` or 0..rows-1 when None."""
        if ids is None:
            return cls.identity_map(rows)
        ids = user_ids(ids, rows)
        _refuse_empty_slot_id(ids)
        return cls(ids)

    @classmethod
    def from_sections(cls, arrays: dict, rows: int, next_id: int | None, source: str) -> IdMap:
        """The map stored in a file's ``ids`` and ``live`` sections (absent: 0..rows-1, all live)."""
        row_ids = arrays.get("ids")
        live = arrays.get("live")
        try:
            if row_ids is None:
                row_ids = np.arange(rows, dtype=np.int64)
            elif row_ids.dtype != np.int64 or row_ids.shape != (rows,):
                raise InvalidValueError(f"ids section has dtype {row_ids.dtype} and shape {row_ids.shape}, "
                                 f"expected int64 ({rows},)")
            if live is not None:
                if live.dtype != np.uint8 or live.shape != (rows,):
                    raise InvalidValueError(f"live section has dtype {live.dtype} and shape {live.shape}, "
                                     f"expected uint8 ({rows},)")
                if (live > 1).any():
                    raise InvalidValueError("live section holds values other than 0 and 1")
            if next_id is not None and not isinstance(next_id, int):
                raise InvalidValueError(f"next_id must be an integer, got {next_id!r}")
            return cls(np.asarray(row_ids), None if live is None else np.asarray(live), next_id)
        except ValueError as exc:
            raise FormatError(f"{source}: invalid ids ({exc})") from None

    def sections(self) -> dict[str, np.ndarray]:
        """What a file stores: nothing for the default map, so files of unmutated indexes stay as before."""
        if self.live is not None:
            return {"ids": self.row_ids, "live": self.live}
        return {} if self.identity else {"ids": self.row_ids}

    # ------------------------------------------------------------------ queries

    @property
    def rows(self) -> int:
        """Rows, dead ones included."""
        return len(self.row_ids)

    @property
    def num_dead(self) -> int:
        return self.rows - self.num_live

    def live_ids(self) -> np.ndarray:
        """The live ids in row order."""
        return self.row_ids.copy() if self.live is None else self.row_ids[self.live.astype(bool)]

    def live_rows(self) -> np.ndarray:
        return np.arange(self.rows, dtype=np.int64) if self.live is None else np.flatnonzero(self.live)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id, -1 where the id is not live in the index."""
        if self.identity:
            found = (ids >= 0) & (ids < self.rows)
            return np.where(found, ids, -1)
        pos = np.searchsorted(self._keys, ids)
        pos_c = np.minimum(pos, max(len(self._keys) - 1, 0))
        if not len(self._keys):
            return np.full(len(ids), -1, dtype=np.int64)
        found = self._keys[pos_c] == ids
        return np.where(found, self._rows[pos_c], -1)

    def require(self, ids: np.ndarray) -> np.ndarray:
        """Rows of ``ids``, every one of which must be live: a KeyError names those that are not."""
        rows = self.rows_of(ids)
        missing = ids[rows < 0]
        if missing.size:
            raise KeyError(f"ids not in the index: {_listing(missing)}")
        return rows

    def __contains__(self, id_) -> bool:
        try:
            value = np.int64(id_)
        except (TypeError, ValueError, OverflowError):
            return False
        if isinstance(id_, (bool, np.bool_)) or value != id_:
            return False
        return bool(self.rows_of(np.array([value]))[0] >= 0)

    def to_user(self, rows: np.ndarray) -> np.ndarray:
        """User ids of search results given as rows; -1 (an empty slot) stays -1."""
        if self.identity:
            return rows
        return np.where(rows >= 0, self.row_ids[np.maximum(rows, 0)], -1)

    def fresh(self, count: int) -> np.ndarray:
        """``count`` ids no row has held: continuing after the largest."""
        return np.arange(self.next_id, self.next_id + count, dtype=np.int64)

    # ------------------------------------------------------------------ writes

    def check_new(self, ids: np.ndarray) -> None:
        """A KeyError names ids already live in the index; a ValueError names repeats within ``ids``."""
        _refuse_empty_slot_id(ids)
        dup = _duplicates(ids)
        if dup.size:
            raise InvalidValueError(f"ids must be unique; repeated: {_listing(dup)}")
        present = ids[self.rows_of(ids) >= 0]
        if present.size:
            raise KeyError(f"ids already in the index: {_listing(present)} (use upsert to replace them)")

    def appended(self, ids: np.ndarray) -> IdMap:
        """The map with new live rows for ``ids`` (checked with :meth:`check_new`) after the existing rows.

        O(n + m log m): the new ids are sorted and merged into the sorted live ids, not all re-sorted.
        """
        rows, m = self.rows, len(ids)
        live = None if self.live is None else np.concatenate([self.live, np.ones(m, dtype=np.uint8)])
        row_ids = np.concatenate([self.row_ids, ids])
        out = object.__new__(IdMap)
        out.row_ids, out.live, out.num_live = row_ids, live, self.num_live + m
        out.identity = self.identity and bool(np.array_equal(ids, np.arange(rows, rows + m, dtype=np.int64)))
        new_rows = np.arange(rows, rows + m, dtype=np.int64)
        if out.identity:
            out._keys = out._rows = np.arange(rows + m, dtype=np.int64)
        else:
            order = np.argsort(ids, kind="stable")
            at = np.searchsorted(self._keys, ids[order])
            out._keys = np.insert(self._keys, at, ids[order])
            out._rows = np.insert(self._rows, at, new_rows[order])
            if len(out._keys) > 1 and (out._keys[1:] == out._keys[:-1]).any():
                raise InvalidValueError(f"ids must be unique; repeated: {_listing(_duplicates(out._keys))}")
        out.next_id = max(self.next_id, int(ids.max()) + 1 if m else 0)
        return out

    def killed(self, rows: np.ndarray) -> IdMap:
        """The map with ``rows`` dead (their slots kept until compaction).

        O(n): the sorted live ids stay sorted when some are dropped, so they are filtered, not
        sorted again (a re-sort was most of a bulk delete's time once the prune got fast).
        """
        live = np.ones(self.rows, dtype=np.uint8) if self.live is None else self.live.copy()
        live[rows] = 0
        out = object.__new__(IdMap)
        out.row_ids, out.next_id = self.row_ids, self.next_id
        out.num_live = int(np.count_nonzero(live))
        out.live = None if out.num_live == self.rows else live
        out.identity = self.identity and out.live is None
        still = live[self._rows].view(bool)
        out._keys, out._rows = self._keys[still], self._rows[still]
        return out

    def compacted(self) -> tuple[IdMap, np.ndarray]:
        """(map without dead rows, the kept old rows in order)."""
        kept = self.live_rows()
        return IdMap(self.row_ids[kept], None, self.next_id), kept
