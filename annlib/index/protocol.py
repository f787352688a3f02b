"""The one protocol every index kind implements.

:class:`Index` owns what is the same for every kind: argument handling of ``search`` and
``search_batched`` (``k`` or ScaNN's ``final_num_neighbors``, keyword-only parameters,
unknown names refused), padding when ``k`` exceeds the indexed points, the atomic swap of
search defaults, saving, loading, pickling, ``len``, ``repr`` and ``autotune``. A kind
supplies its arrays, its configuration, its parameter type and the search itself.

Thread safety: a search reads ``self._snap`` (the index's arrays and ids, see
:mod:`annlib.index.mutable`) and ``self._defaults`` once each; :meth:`Index.set_search_defaults`
builds and validates a new frozen object before storing it, so concurrent searches see the
old or the new defaults, never a mix. Nothing about a call's arguments is cached.
"""

from __future__ import annotations

import abc
import os
from typing import Any, Callable, ClassVar

import numpy as np

from annlib import _validate
from annlib import io as _io
from annlib.errors import FormatError, InvalidTypeError, InvalidValueError
from annlib.index import params as _params
from annlib.index.ids import IdMap, user_ids
from annlib.index.mutable import Mutations
from annlib.result import SearchResult

#: A padded result larger than this many (query, slot) pairs is refused rather than allocated.
MAX_PADDED_SLOTS = 1 << 27

# Tuners by index kind, registered by annlib.autotune; the indexes never import the tuner.
_TUNERS: dict[str, Callable[..., Any]] = {}


def register_tuner(kind: str, tuner: Callable[..., Any]) -> None:
    """Make ``tuner(index, target_recall, queries, **kwargs)`` what ``index.autotune`` calls for ``kind``."""
    _TUNERS[kind] = tuner


class Index(Mutations, abc.ABC):
    """Base class of every index kind: ``BruteForce``, ``TreeAhIndex``, ``JaxBruteForce``.

    Subclasses set ``_metric``, ``_num_neighbors``, ``_dim``, ``_defaults`` (an instance of
    ``Params``) and ``_snap`` (an immutable snapshot with at least ``ids``, an
    :class:`annlib.index.ids.IdMap`) and implement :meth:`_search`, :meth:`_check_params`,
    :meth:`_state`, :meth:`_from_state`, :meth:`stats`, :attr:`config` and the write hooks of
    :class:`annlib.index.mutable.Mutations`.
    """

    kind: ClassVar[str]
    Params: ClassVar[type]

    _metric: str
    _num_neighbors: int
    _dim: int
    _snap: Any
    _defaults: Any

    # ------------------------------------------------------------------ shape

    @property
    def _n(self) -> int:
        return self._snap.ids.num_live

    @property
    def n(self) -> int:
        """Number of indexed (live) points."""
        return self._snap.ids.num_live

    @property
    def dim(self) -> int:
        """Dimension of the indexed points."""
        return self._dim

    @property
    def metric(self) -> str:
        """``"dot"``, ``"cosine"`` or ``"squared_l2"``."""
        return self._metric

    @property
    def num_neighbors(self) -> int:
        """The default ``k`` of searches."""
        return self._num_neighbors

    def __len__(self) -> int:
        return self._snap.ids.num_live

    # ------------------------------------------------------------------ search

    @property
    def search_defaults(self):
        """The search parameters used when a call does not name them (a frozen dataclass)."""
        return self._defaults

    def set_search_defaults(self, **params) -> None:
        """Replace the default search parameters (and those the saved file records).

        Names not given keep their current value. The new defaults are validated first and then
        swapped in as one object, so a search running concurrently sees either the old or the
        new defaults.
        """
        new = _params.override(self._defaults, params)
        self._check_params(new)
        self._defaults = new

    def search(self, query, k: int | None = None, *, final_num_neighbors: int | None = None, filter=None,
               filter_route: str = "auto", **params) -> SearchResult:
        """Search one query (1-D: returns 1-D ``ids`` and ``distances``) or a few (2-D) on one thread.

        ``k`` defaults to ``num_neighbors``; ``final_num_neighbors`` is ScaNN's name for it.
        Search parameters (see :attr:`search_defaults`) are keyword-only. When ``k`` exceeds the
        number of points, the extra slots hold id -1 and the metric's worst distance.

        ``filter``: only points it allows are returned (see :mod:`annlib.filter`): an array of
        allowed ids, an :class:`annlib.Filter`, a numba cfunc or a callable; for several queries
        also a sequence of one filter per query. A query returns ``k`` results whenever ``k``
        points pass, else exactly those that pass, padded with id -1. ``filter_route``: "auto"
        (the planner of :mod:`annlib.index.planner` picks), "index" or "exact";
        :attr:`last_filter_plan` reports the route taken.
        """
        queries, single = _validate.queries(query, self._dim, name="query", allow_1d=True)
        ids, distances = self._run(queries, k, final_num_neighbors, params, 1, filter, filter_route, "single")
        return SearchResult(ids[0], distances[0]) if single else SearchResult(ids, distances)

    def search_batched(self, queries, k: int | None = None, *, num_threads: int | None = None,
                       final_num_neighbors: int | None = None, filter=None, filter_route: str = "auto",
                       **params) -> SearchResult:
        """Search a batch of queries, shape (nq, dim), on ``num_threads`` threads (default: all cores).

        Arguments as for :meth:`search`; ``filter`` may be one filter for every query or a sequence
        of one per query.
        """
        queries, _ = _validate.queries(queries, self._dim)
        return SearchResult(*self._run(queries, k, final_num_neighbors, params, _validate.num_threads(num_threads),
                                       filter, filter_route, "batched"))

    @property
    def last_filter_plan(self):
        """The :class:`annlib.index.planner.FilterPlan` of the last filtered search (None before one):
        the route each query took ("index" or "exact") and why."""
        return self.__dict__.get("_last_filter_plan")

    def _run(self, queries: np.ndarray, k, final_num_neighbors, overrides: dict, num_threads: int, filter_value=None,
             filter_route: str = "auto", mode: str = "batched"):
        if final_num_neighbors is not None:
            if k is not None:
                raise InvalidTypeError("give k or final_num_neighbors (ScaNN's name for k), not both")
            k = _validate.k(final_num_neighbors, "final_num_neighbors")
        elif k is None:
            k = self._num_neighbors
        elif type(k) is not int or k <= 0:  # the common case (a positive int) skips the general validator
            k = _validate.k(k)
        p = self._defaults  # read once: a concurrent set_search_defaults cannot tear it
        if overrides:
            p = _params.override(p, overrides)
            self._check_params(p)
        snap = self._snap  # read once: a concurrent write swaps in a new snapshot, never tears this one
        n = snap.ids.num_live
        if filter_route != "auto":
            _validate.choice(filter_route, "filter_route", ("auto", "index", "exact"))
        if filter_value is not None:
            if k > n and queries.shape[0] * k > MAX_PADDED_SLOTS:
                raise InvalidValueError(
                    f"k ({k}) exceeds the number of indexed points ({n}); the padded result of {queries.shape[0]} x "
                    f"{k} slots is too large (limit {MAX_PADDED_SLOTS:,}): ask for at most {n}"
                )
            from annlib.index import filtered  # noqa: PLC0415 - imports the filter module, which imports ids

            ids, distances, plan = filtered.search(self, snap, queries, k, p, num_threads, filter_value, filter_route,
                                                   mode)
            self._last_filter_plan = plan
            return ids, distances
        if k <= n:
            rows, distances = self._search(snap, queries, k, p, num_threads)
            return snap.ids.to_user(rows), distances
        return self._padded(snap, queries, k, p, num_threads)

    def _padded(self, snap, queries: np.ndarray, k: int, p, num_threads: int):
        # No work buffer is sized by a k beyond the data: search for n, then pad.
        nq = queries.shape[0]
        n = snap.ids.num_live
        if nq * k > MAX_PADDED_SLOTS:
            raise InvalidValueError(
                f"k ({k}) exceeds the number of indexed points ({n}); the padded result of {nq} x {k} "
                f"slots is too large (limit {MAX_PADDED_SLOTS:,}): ask for at most {n}"
            )
        ids = np.full((nq, k), -1, dtype=np.int64)
        distances = np.full((nq, k), _validate.worst_distance(self._metric), dtype=np.float32)
        if n:
            found_rows, found_distances = self._search(snap, queries, n, p, num_threads)
            ids[:, :n] = snap.ids.to_user(found_rows)
            distances[:, :n] = found_distances
        return ids, distances

    @abc.abstractmethod
    def _search(self, snap, queries: np.ndarray, k: int, params, num_threads: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, distances)`` of validated float32 queries (nq, dim) for ``1 <= k <= live points``
        neighbours in snapshot ``snap``; the base maps rows to user ids."""

    def _search_filtered(self, snap, queries: np.ndarray, k: int, params, num_threads: int, filters: list,
                         filter_of_query: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, distances)`` of the index route of a filtered search: ``filters`` are
        :class:`annlib.filter.Resolved`, query ``i`` uses ``filters[filter_of_query[i]]`` (all
        ``filters[0]`` when None); ``1 <= k <= live points``; rows -1 where fewer pass."""
        raise NotImplementedError(f"{type(self).__name__} has no filtered search")

    def _exact_vectors(self, snap, rows: np.ndarray) -> np.ndarray | None:
        """Float32 vectors of ``rows`` in the space searches score (unit-normalised for cosine), for
        the exact route of a filtered search; None when the kind keeps none."""
        vectors = self._stored_vectors(snap)
        return None if vectors is None else np.ascontiguousarray(vectors[rows], dtype=np.float32)

    def _check_params(self, params) -> None:
        """Checks of search parameters that need the index (the dataclass checks the rest)."""

    # ------------------------------------------------------------------ inspection

    @property
    @abc.abstractmethod
    def config(self) -> dict:
        """Every build parameter and the current search defaults, as a JSON-serialisable dict."""

    @abc.abstractmethod
    def stats(self) -> dict:
        """Sizes: always ``n``, ``dim``, ``memory_bytes`` ({part: bytes}) and ``total_bytes``."""

    def _memory(self, arrays: dict) -> dict:
        memory = {name: int(a.nbytes) for name, a in arrays.items()}
        return {"memory_bytes": memory, "total_bytes": int(sum(memory.values()))}

    def _repr_params(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._repr_params()
        return (f"{type(self).__name__}(n={self._n}, dim={self._dim}, metric={self._metric!r}"
                f"{', ' + extra if extra else ''})")

    def get_vectors(self, ids) -> np.ndarray:
        """The stored float32 vectors of the points ``ids`` (user ids; unit-normalised for cosine),
        shape (len(ids), dim). An id not in the index is a KeyError naming it."""
        snap = self._snap
        vectors = self._stored_vectors(snap)
        if vectors is None:
            raise InvalidValueError(f"this {self.kind} index keeps no float32 vectors (build it with float32 reordering)")
        rows = snap.ids.require(user_ids(ids))
        return np.array(vectors[rows], dtype=np.float32)

    def _stored_vectors(self, snap) -> np.ndarray | None:
        """Float32 vectors by row of ``snap``, dead rows included, or None."""
        return None

    # ------------------------------------------------------------------ persistence

    @abc.abstractmethod
    def _state(self) -> tuple[dict, dict]:
        """(config, arrays): everything the index file and a pickle hold."""

    @classmethod
    @abc.abstractmethod
    def _from_state(cls, config: dict, arrays: dict, source: str):
        """Rebuild from :meth:`_state`'s output, checking it as an untrusted file (FormatError)."""

    def save(self, path) -> None:
        """Write the index to one self-describing, checksummed file, atomically (an existing file
        at ``path`` is replaced only once the new one is complete)."""
        config, arrays = self._state()
        _io.save_index_file(os.fspath(path), self.kind, config, arrays)

    @classmethod
    def load(cls, path, mmap: bool = True):
        """Load an index of this kind saved by :meth:`save` (arrays memory-mapped when ``mmap``;
        see :func:`annlib.load_index` for the sections that stay mapped with ``mmap=False``).

        :func:`annlib.load_index` loads a file of any kind.
        """
        kind, config, arrays = _io.load_index_file(
            os.fspath(path), mmap=mmap, mapped=lambda kind, config: cls._sections_on_disk(config) if kind == cls.kind
            else ())
        if kind != cls.kind:
            raise FormatError(f"{path}: holds a {kind!r} index, not {cls.kind!r} (annlib.load_index reads any kind)")
        return cls._from_state(config, arrays, os.fspath(path))

    @classmethod
    def _sections_on_disk(cls, config) -> tuple[str, ...]:
        """Sections a load with ``mmap=False`` leaves memory-mapped, given the file's header
        config (untrusted JSON: anything malformed names none, and the load's checks report it)."""
        return ()

    def __reduce__(self):
        # By arrays, not by file bytes: numpy arrays pickle without a copy through protocol 5,
        # and unpickling runs the same checks as loading a file.
        config, arrays = self._state()
        plain = {name: np.asarray(a).view(np.ndarray) for name, a in arrays.items()}
        return _unpickle, (self.kind, config, plain)

    # ------------------------------------------------------------------ tuning

    def autotune(self, target_recall: float | None = None, queries=None, **kwargs):
        """Pick search defaults for a recall target (default 0.95) or a cost budget (``max_cost=``).

        Returns an :class:`annlib.Tuning`; see :func:`annlib.autotune.autotune` for the arguments.
        """
        tuner = _TUNERS.get(self.kind)
        if tuner is None:
            raise NotImplementedError(f"no tuner is registered for {self.kind!r} indexes")
        return tuner(self, target_recall, queries, **kwargs)


def read_flat_state(kind: str, config: dict, arrays: dict, source: str) -> tuple[str, int, np.ndarray, IdMap]:
    """``(metric, num_neighbors, data, ids)`` of a kind that stores its rows as one float32 ``data``
    section and optionally their user ids as ``ids`` (the exact and JAX brute force), checked as
    an untrusted file."""
    try:
        metric = _validate.metric(config["metric"])
        num_neighbors = _validate.positive_int(config["num_neighbors"], "num_neighbors")
        if not {"data"} <= set(arrays) <= {"data", "ids"}:
            raise InvalidValueError(f"sections {sorted(arrays)}, expected ['data'] and optionally ['ids']")
        if arrays["data"].dtype != np.float32:
            raise InvalidValueError(f"data section has dtype {arrays['data'].dtype}, expected float32")
        data = _validate.database(arrays["data"], "data section")
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{source}: invalid {kind} index ({exc})") from None
    return metric, num_neighbors, data, IdMap.from_sections(arrays, data.shape[0], config.get("next_id"), source)


def _unpickle(kind: str, config: dict, arrays: dict):
    from annlib.index import index_class  # noqa: PLC0415 - the registry imports every kind's module

    return index_class(kind)._from_state(config, arrays, "<pickle>")

