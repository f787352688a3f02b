"""Writes to an index: ``add``, ``upsert``, ``delete``, ``compact``, ``rebalance``, ``health``.

Design: copy-on-write snapshots swapped by one attribute store.

Everything a search reads (the arrays, the core search handle, the :class:`IdMap`) lives in
one immutable snapshot object, ``index._snap``. A search reads ``index._snap`` once and uses
only that object, so it sees the index as it was before or after any write, never a mix. A
write runs under the index's writer lock (writers are serialised; readers never take it),
builds a complete new snapshot from the current one without touching the arrays it shares
(every changed array is a new array; mapped files are never written), and publishes it with a
single store to ``index._snap`` (atomic in CPython). The old snapshot stays alive as long as a
search still holds it. Searches therefore never wait for writes at all.

Why this and not a readers-writer lock or epochs: searches release the GIL in the C++ core
and run for milliseconds, so a lock would make writes wait for every running search and
searches wait for writes; epochs need reclamation bookkeeping in the core. Copy-on-write needs
no change to the core's search but one optional per-point liveness mask, and costs the
writer O(size of the changed arrays) per call: batch writes (one ``add`` of 10,000 points
costs about as much as one of 100). Deleted tree-AH points are marked dead in that mask, and a
delete also drops their entries from every partition it leaves with a tenth or more dead entries
(``tree_ah_mutation.pruned``: the scan reads every entry of a probed partition, masked or not);
their rows stay until :meth:`compact`. The exact kinds drop their rows at once.

Policy (advisory, :meth:`health`): ``advice`` lists ``"compact"`` when at least
:data:`COMPACT_DELETED_FRACTION` of the rows are dead, and ``"rebalance"`` when the partitions
drifted: the largest partition's share of the live points grew :data:`REBALANCE_IMBALANCE`
times over its share at build time (``partition_imbalance``, largest over mean size, now over
then), or points added since the build are quantized with more than :data:`REBALANCE_ERROR_RATIO`
times the build's relative error, or the index has grown :data:`REBALANCE_GROWTH` times since
its partitions were trained. Nothing runs automatically: a write never pays a rebuild the
caller did not ask for.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from annlib import _validate
from annlib.errors import InvalidTypeError, InvalidValueError
from annlib.index.ids import user_ids

COMPACT_DELETED_FRACTION = 0.2
REBALANCE_IMBALANCE = 2.0
REBALANCE_ERROR_RATIO = 1.25
REBALANCE_GROWTH = 2.0

_LOCK_GUARD = threading.Lock()


def advice(health: dict) -> list[str]:
    """The policy above applied to a :meth:`Mutations.health` report."""
    out = []
    if health.get("deleted_fraction", 0.0) >= COMPACT_DELETED_FRACTION:
        out.append("compact")
    imbalance = health.get("partition_imbalance")
    ratio = health.get("quantization_error_ratio")
    growth = health.get("growth_since_build")
    if ((imbalance is not None and imbalance > REBALANCE_IMBALANCE)
            or (ratio is not None and ratio > REBALANCE_ERROR_RATIO)
            or (growth is not None and growth >= REBALANCE_GROWTH)):
        out.append("rebalance")
    return out


class Mutations:
    """The write half of the index protocol; a kind supplies ``_appended``, ``_deleted``,
    ``_compacted`` (and optionally ``_rebalanced`` and ``_health``), each mapping a snapshot to a
    new one without changing it."""

    def _writer(self) -> threading.Lock:
        lock = self.__dict__.get("_write_lock")
        if lock is None:
            with _LOCK_GUARD:
                lock = self.__dict__.setdefault("_write_lock", threading.Lock())
        return lock

    def _vectors(self, vectors, name: str = "vectors") -> np.ndarray:
        array = _validate.database(vectors, name)
        if array.shape[1] != self._dim:
            raise InvalidValueError(f"{name} must have shape (m, {self._dim}), got {array.shape}")
        return array

    # ------------------------------------------------------------------ ids

    def __contains__(self, id_) -> bool:
        return id_ in self._snap.ids

    @property
    def ids(self) -> np.ndarray:
        """The user ids of the live points, in storage order."""
        return self._snap.ids.live_ids()

    def _set_ids(self, ids) -> None:
        """Give a freshly built index (no dead rows) the user ids ``ids`` (an IdMap of its rows)."""
        with self._writer():
            snap = self._snap
            if snap.ids.num_dead or ids.rows != snap.ids.rows:
                raise InvalidValueError(f"ids must name the {snap.ids.rows} rows of an index without deletions")
            self._snap = dataclasses.replace(snap, ids=ids)

    # ------------------------------------------------------------------ writes

    def add(self, vectors, ids=None) -> np.ndarray:
        """Add points; returns their ids (``ids``, or fresh ones after the largest id ever used).

        An id already in the index is a KeyError naming it (use :meth:`upsert` to replace).
        Tree-AH: new points go to the existing partitions (spilled with SOAR when the index
        spills) and are encoded with the existing codebook.
        """
        array = self._vectors(vectors)
        with self._writer():
            snap = self._snap
            new_ids = snap.ids.fresh(len(array)) if ids is None else user_ids(ids, len(array))
            snap.ids.check_new(new_ids)
            self._snap = self._appended(snap, array, new_ids)
        return new_ids

    def upsert(self, ids, vectors) -> None:
        """Replace the vectors of ``ids`` that exist and add the others, in one atomic step."""
        array = self._vectors(vectors)
        new_ids = user_ids(ids, len(array))
        with self._writer():
            snap = self._snap
            if len(np.unique(new_ids)) != len(new_ids):
                raise InvalidValueError("ids given to upsert must be unique")
            rows = snap.ids.rows_of(new_ids)
            replaced = rows[rows >= 0]
            if replaced.size:
                snap = self._deleted(snap, replaced)
            self._snap = self._appended(snap, array, new_ids)

    def delete(self, ids, missing: str = "raise") -> int:
        """Delete the points ``ids``; returns how many were deleted.

        ``missing="raise"`` (default): an id not in the index is a KeyError naming it and
        nothing is deleted; ``"ignore"``: such ids are skipped.
        """
        if missing not in ("raise", "ignore"):
            raise InvalidValueError(f"missing must be 'raise' or 'ignore', got {missing!r}")
        wanted = np.unique(user_ids(ids))
        with self._writer():
            snap = self._snap
            rows = snap.ids.require(wanted) if missing == "raise" else snap.ids.rows_of(wanted)
            rows = rows[rows >= 0]
            if rows.size:
                self._snap = self._deleted(snap, rows)
        return int(rows.size)

    def compact(self) -> None:
        """Reclaim the slots of deleted points (tree-AH; the exact kinds hold none)."""
        with self._writer():
            snap = self._snap
            if snap.ids.num_dead:
                self._snap = self._compacted(snap)

    def rebalance(self, **kwargs) -> None:
        """Retrain what the kind trained at build time on the live points (tree-AH: partitions and
        codebook) and compact. The exact kinds only compact."""
        with self._writer():
            self._snap = self._rebalanced(self._snap, **kwargs)

    def health(self) -> dict:
        """Figures that decide when to :meth:`compact` or :meth:`rebalance`, and ``advice``
        (see :mod:`annlib.index.mutable` for the policy)."""
        snap = self._snap
        ids = snap.ids
        report = {
            "n": ids.num_live,
            "rows": ids.rows,
            "deleted": ids.num_dead,
            "deleted_fraction": ids.num_dead / ids.rows if ids.rows else 0.0,
        }
        report.update(self._health(snap))
        report["advice"] = advice(report)
        return report

    # ------------------------------------------------------------------ kind hooks

    def _rebalanced(self, snap, **kwargs):
        if kwargs:
            raise InvalidTypeError(f"{type(self).__name__}.rebalance takes no arguments, got {', '.join(kwargs)}")
        return self._compacted(snap) if snap.ids.num_dead else snap

    def _health(self, snap) -> dict:
        return {}
