"""A sharded index on Ray: shards held by actors, fan-out search, exact merge, restart of lost actors.

The database is split into contiguous row ranges (shards); each shard is an annlib index held
by a Ray actor (:class:`annlib.distributed._host.ShardHost`), and an actor may hold several
shards. Ids are global row ids: a shard over rows ``[start, start + n)`` adds ``start`` to its
ids.

Tree-AH shards share one set of partition centers and one PQ codebook, trained once on a sample
of the whole database, so AH scores compare across shards. With ``merge="exact"`` (the default)
a search runs in two rounds that reproduce what one index built with the same centers and
codebook computes: (1) every shard returns its best ``pre_reorder_num_neighbors`` AH candidates
and the driver merges them by (score, id) into the single index's candidate list; (2) every
shard rescores its members of that list with the core's dot kernel and the driver merges the
exact top-k. ``merge="fast"`` is one round: every shard runs its own full search (reordering its
own candidates) and the driver merges; it rescores more candidates than one index would, so its
recall is never lower, but results may differ from the single index's.

Ids are user ids, global across shards: a shard's points carry their ids (``start + row`` at
build), so ``add`` routes new points to shard ``id % num_shards`` and ``delete`` goes to every
actor (each deletes the ids it holds).

Filters (``filter=``, as on one index: id lists, ``Filter.allow/deny/bitmap``, numba predicates,
Python callables, or one per query in a batch) apply unchanged on every shard, since ids are
global; :mod:`annlib.distributed._filters` makes them survive the trip to the actors (a numba
predicate is compiled again there from its Python function). A filtered search runs every
shard's own filtered search (its planner, its exact fallback when short of ``k``) and merges:
results pass the filter, and a query gets ``k`` of them whenever ``k`` live points pass. The
two-round exact merge does not take a filter: a filtered single index widens its leaves by the
filter's allowed entries per leaf over the whole index, which no shard sees, so the rounds
cannot reproduce its candidate list. So ``merge=None`` (the index default) with a filter merges
the shards' filtered searches ("fast"); an explicit ``merge="exact"`` is refused with a filter
unless ``filter_route="exact"``, whose result (every shard's exact top-k over its allowed
points, merged) is the exact filtered top-k, as one index's exact route computes it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import numpy as np

from annlib import _validate
from annlib.distributed import _filters, _host, manifest as _manifest
from annlib.distributed._merge import merge_top_k
from annlib.index import params as _params
from annlib.result import SearchResult

try:
    import ray
    import ray.exceptions
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('annlib.distributed needs Ray: pip install "annlib[ray]"') from exc

MERGES = ("exact", "fast")
FILTER_ROUTES = ("auto", "index", "exact")
_ACTOR_FAILURES = (ray.exceptions.RayActorError,)
_MAX_ATTEMPTS = 3  # per actor and call: a shard that dies again right after a restart is not retried forever


class ShardError(RuntimeError):
    """A shard could not answer: its actor died and could not be restored, or it timed out."""


@ray.remote
class _ShardActor(_host.ShardHost):
    pass


def _sequential_sq_norms(queries: np.ndarray) -> np.ndarray:
    """|q|^2 summed in dimension order in float32, as the core's search computes it (bit-equal)."""
    total = np.zeros(queries.shape[0], dtype=np.float32)
    for d in range(queries.shape[1]):
        total += queries[:, d] * queries[:, d]
    return total


def _row_ranges(n: int, num_shards: int) -> list[tuple[int, int]]:
    bounds = [s * n // num_shards for s in range(num_shards + 1)]
    return [(bounds[s], bounds[s + 1] - bounds[s]) for s in range(num_shards)]


class ShardedIndex:
    """An index split into shards held by Ray actors; search, save and load like one index.

    Build with :meth:`build` (from an array or a list of ``.npy`` files, one per shard) or
    :meth:`load` a saved one. ``search`` and ``search_batched`` take the protocol's arguments
    (``k``, ``final_num_neighbors``, keyword search parameters of the shard kind) plus
    ``merge=`` ("exact" or "fast", see the module docs).

    Faults: a call that finds an actor dead restarts it from the shard files of the last
    :meth:`save` / :meth:`load` and retries, within ``timeout_s`` (``restart=True``, the
    default); otherwise, or for shards never saved, it raises :class:`ShardError` naming the
    shards.
    """

    kind = "sharded"

    def __init__(self, *, shard_kind, metric, dim, ranges, actors, assignment, defaults, params_type,
                 shard_config, shared, actor_options, restart, timeout_s, merge, saved=None):
        self._shard_kind = shard_kind
        self._metric = metric
        self._dim = dim
        self._ranges = ranges
        self._n = sum(n for _, n in ranges)
        self._actors = actors
        self._assignment = assignment  # actor slot -> [shard ids]
        self._defaults = defaults
        self._params_type = params_type
        self._shard_config = shard_config
        self._shared = shared
        self._actor_options = actor_options
        self.restart = restart
        self.timeout_s = timeout_s
        self._merge = merge
        self._saved = saved or {}  # shard id -> (path, sha256)
        self._dirty: set[int] = set()  # shards written to since their last save (not restartable)
        self._global_ids = False  # how the saved shard files hold ids (see ShardHost.load)
        self.restarts = 0  # actors restarted so far (observability for tests and ops)

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, data, num_shards: int | None = None, metric: str = "dot", *, kind: str = "tree_ah",
              num_actors: int | None = None, cpus_per_actor: float = 1.0, num_threads: int | None = None,
              merge: str = "exact", restart: bool = True, timeout_s: float = 300.0, progress: bool = False,
              save_dir=None, **index_kwargs) -> ShardedIndex:
        """Split ``data`` into ``num_shards`` row ranges and build one index per shard in parallel.

        ``data``: an (n, dim) array, or a list of ``.npy`` paths (one shard each, read by the
        actor that builds it, so the paths must be visible to every node). ``kind``:
        ``"tree_ah"`` (``index_kwargs`` as for :class:`annlib.TreeAhIndex`; ``num_leaves`` and
        ``num_leaves_to_search`` default from the total size) or ``"brute_force"``.
        ``num_threads``: threads per actor (default: ``cpus_per_actor`` rounded, at least 1).
        ``save_dir``: save right after building, so lost actors can be restored.
        """
        metric = _validate.metric(metric)
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        files, rows = _inputs(data)
        if files is not None:
            if num_shards not in (None, len(files)):
                raise ValueError(f"num_shards ({num_shards}) must match the number of files ({len(files)})")
            sizes = [int(r.shape[0]) for r in rows]
            dim = int(rows[0].shape[1])
            if any(r.ndim != 2 or r.shape[1] != dim for r in rows):
                raise ValueError("every .npy file must hold a 2-D array of the same dimension")
            ranges = list(zip(np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist(), sizes))
        else:
            num_shards = _validate.positive_int(num_shards if num_shards is not None else 1, "num_shards")
            rows = [_validate.database(rows)]
            dim = int(rows[0].shape[1])
            if num_shards > rows[0].shape[0]:
                raise ValueError(f"num_shards ({num_shards}) exceeds the number of points ({rows[0].shape[0]})")
            ranges = _row_ranges(rows[0].shape[0], num_shards)
        if any(n == 0 for _, n in ranges):
            raise ValueError("every shard needs at least one point")
        n = sum(size for _, size in ranges)
        num_threads = _threads(num_threads, cpus_per_actor)

        shared: dict[str, np.ndarray] = {}
        if kind == "tree_ah":
            spec, params_type, defaults, shard_config = _train_tree_ah(rows, ranges, n, metric, index_kwargs,
                                                                       num_threads)
            shared = {"centers": spec["centers"], "codebook": spec["codebook"]}
        elif kind == "brute_force":
            from annlib.index.params import BruteForceSearchParams  # noqa: PLC0415

            if set(index_kwargs) - {"num_neighbors"}:
                raise TypeError(f"unknown brute_force arguments: {sorted(set(index_kwargs) - {'num_neighbors'})}")
            spec = {"num_neighbors": _validate.positive_int(index_kwargs.get("num_neighbors", 10), "num_neighbors")}
            params_type, defaults, shard_config = BruteForceSearchParams, BruteForceSearchParams(), dict(spec)
        else:
            raise ValueError(f"sharding supports the kinds 'tree_ah' and 'brute_force', not {kind!r}")

        num_actors = num_actors or len(ranges)
        options = {"num_cpus": cpus_per_actor}
        actors, assignment = _start_actors(len(ranges), num_actors, options, num_threads)
        self = cls(shard_kind=kind, metric=metric, dim=dim, ranges=ranges, actors=actors, assignment=assignment,
                   defaults=defaults, params_type=params_type, shard_config=shard_config, shared=shared,
                   actor_options=(options, num_threads), restart=restart, timeout_s=timeout_s, merge=merge)
        spec_ref = ray.put(spec)
        refs = []
        for slot, shard_ids in assignment.items():
            for s in shard_ids:
                start, size = ranges[s]
                source = files[s] if files is not None else ray.put(rows[0][start : start + size])
                refs.append(actors[slot].build.remote(s, start, source, kind, metric, spec_ref))
        _wait_all(refs, progress, "annlib sharded build", timeout_s)
        if save_dir is not None:
            self.save(save_dir)
        return self

    @classmethod
    def load(cls, directory, num_actors: int | None = None, *, cpus_per_actor: float = 1.0,
             num_threads: int | None = None, merge: str = "exact", restart: bool = True,
             timeout_s: float = 300.0, progress: bool = False) -> ShardedIndex:
        """Restore a sharded index saved by :meth:`save` onto ``num_actors`` actors (default: one
        per shard; fewer actors each hold several shards). Every file is checked against the
        manifest's checksum; a mismatch is a :class:`annlib.FormatError`."""
        directory = os.path.abspath(os.fspath(directory))
        m = _manifest.read(directory)
        shared = _manifest.read_shared(directory, m)
        ranges = [(int(s["start"]), int(s["n"])) for s in m["shards"]]
        num_actors = num_actors or len(ranges)
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        kind = m["kind"]
        params_type = _params_type(kind)
        defaults = params_type(**m["search_defaults"])
        num_threads = _threads(num_threads, cpus_per_actor)
        options = {"num_cpus": cpus_per_actor}
        actors, assignment = _start_actors(len(ranges), num_actors, options, num_threads)
        saved = {i: (os.path.join(directory, s["file"]), s["sha256"]) for i, s in enumerate(m["shards"])}
        self = cls(shard_kind=kind, metric=m["metric"], dim=int(m["dim"]), ranges=ranges, actors=actors,
                   assignment=assignment, defaults=defaults, params_type=params_type,
                   shard_config=m["shard_config"], shared=shared, actor_options=(options, num_threads),
                   restart=restart, timeout_s=timeout_s, merge=merge, saved=saved)
        self._global_ids = bool(m.get("global_ids", False))
        refs = [actors[slot].load.remote(s, ranges[s][0], *saved[s], self._global_ids)
                for slot, ids in assignment.items() for s in ids]
        try:
            self._n = int(sum(_wait_all(refs, progress, "annlib sharded load", timeout_s)))
        except ValueError as exc:
            from annlib.errors import FormatError  # noqa: PLC0415

            self.close()
            raise FormatError(str(exc)) from None
        return self

    # ------------------------------------------------------------------ shape

    @property
    def n(self) -> int:
        """Live points over all shards."""
        return self._n

    def __len__(self) -> int:
        return self._n

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def num_neighbors(self) -> int:
        """The default ``k`` of searches."""
        return int(self._shard_config["num_neighbors"])

    @property
    def num_shards(self) -> int:
        return len(self._ranges)

    @property
    def num_actors(self) -> int:
        return len(self._actors)

    @property
    def shard_kind(self) -> str:
        return self._shard_kind

    @property
    def shard_ranges(self) -> list[tuple[int, int]]:
        """(start, n) of the global rows every shard was built from (ids ``start .. start + n - 1``;
        later adds and deletes do not change them)."""
        return list(self._ranges)

    @property
    def shared_arrays(self) -> dict[str, np.ndarray]:
        """What every shard shares (tree-AH: ``centers`` and ``codebook``)."""
        return dict(self._shared)

    @property
    def actors(self) -> list:
        """The Ray actor handles, by slot (``shards_of(slot)`` names their shards)."""
        return list(self._actors)

    def shards_of(self, slot: int) -> list[int]:
        return list(self._assignment[slot])

    @property
    def config(self) -> dict:
        return {"kind": self.kind, "shard_kind": self._shard_kind, "metric": self._metric,
                "num_shards": self.num_shards, "shards": [list(r) for r in self._ranges],
                "index": self._shard_config, "search_defaults": dataclasses.asdict(self._defaults)}

    def stats(self) -> dict:
        per_actor = self._gather(lambda slot: self._actors[slot].stats.remote())
        shards = {}
        for result in per_actor:
            shards.update(result)
        memory = {_manifest.shard_file(s).removesuffix(".annl"): int(shards[s]["total_bytes"]) for s in sorted(shards)}
        return {"n": self._n, "dim": self._dim, "num_shards": self.num_shards, "num_actors": self.num_actors,
                "shards": [shards[s] for s in sorted(shards)], "memory_bytes": memory,
                "total_bytes": int(sum(memory.values())), "restarts": self.restarts}

    def __repr__(self) -> str:
        return (f"ShardedIndex(n={self._n}, dim={self._dim}, metric={self._metric!r}, shard_kind="
                f"{self._shard_kind!r}, num_shards={self.num_shards}, num_actors={self.num_actors})")

    def __reduce__(self):
        raise TypeError("a ShardedIndex holds Ray actors and does not pickle: save(dir) it and load(dir) it")

    # ------------------------------------------------------------------ search

    @property
    def search_defaults(self):
        return self._defaults

    def set_search_defaults(self, **params) -> None:
        new = _params.override(self._defaults, params)
        self._check_params(new)
        self._defaults = new
        values = dataclasses.asdict(new)
        self._gather(lambda slot: self._actors[slot].set_search_defaults.remote(values))

    def _check_params(self, p) -> None:
        if self._shard_kind == "tree_ah":
            leaves = self._shard_config["tree"]["num_leaves"]
            if p.leaves_to_search > leaves:
                raise ValueError(f"leaves_to_search ({p.leaves_to_search}) cannot exceed num_leaves ({leaves})")
            if p.pre_reorder_num_neighbors is not None and self._shard_config["reorder"] is None:
                raise ValueError("pre_reorder_num_neighbors needs an index built with reorder(...)")

    def search(self, query, k: int | None = None, *, final_num_neighbors: int | None = None,
               merge: str | None = None, filter=None, filter_route: str = "auto", **params) -> SearchResult:
        """One query (1-D -> 1-D results) or a few (2-D); each shard searches on one thread.

        ``filter`` / ``filter_route``: as for one index (:meth:`annlib.TreeAhIndex.search`); see the
        module docs for how they meet ``merge``."""
        queries, single = _validate.queries(query, self._dim, name="query", allow_1d=True)
        ids, distances = self._run(queries, k, final_num_neighbors, merge, params, 1, filter, filter_route)
        return SearchResult(ids[0], distances[0]) if single else SearchResult(ids, distances)

    def search_batched(self, queries, k: int | None = None, *, num_threads: int | None = None,
                       final_num_neighbors: int | None = None, merge: str | None = None, filter=None,
                       filter_route: str = "auto", **params) -> SearchResult:
        """A batch (nq, dim), fanned out to every shard; ``num_threads`` per actor (default: the
        actor's own). ``filter`` may be one filter or a sequence of one per query."""
        queries, _ = _validate.queries(queries, self._dim)
        threads = self._actor_options[1] if num_threads is None else _validate.num_threads(num_threads)
        return SearchResult(*self._run(queries, k, final_num_neighbors, merge, params, threads, filter, filter_route))

    def _run(self, queries, k, final_num_neighbors, merge, overrides, num_threads, filter_value=None,
             filter_route="auto"):
        if final_num_neighbors is not None:
            if k is not None:
                raise TypeError("give k or final_num_neighbors (ScaNN's name for k), not both")
            k = _validate.k(final_num_neighbors, "final_num_neighbors")
        k = self.num_neighbors if k is None else _validate.k(k)
        if filter_route not in FILTER_ROUTES:
            raise ValueError(f"filter_route must be one of {FILTER_ROUTES}, got {filter_route!r}")
        if merge is not None and merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        wire = None
        if filter_value is not None:
            wire = _filters.to_wire(filter_value, queries.shape[0])  # checked here, before any actor sees it
            if merge == "exact" and filter_route != "exact" and self._shard_kind == "tree_ah":
                raise ValueError(
                    "merge='exact' cannot reproduce a filtered search of one index (it widens its leaves by the "
                    "filter's allowed entries per leaf over all shards): use merge='fast' (every shard's own "
                    "filtered search, merged) or filter_route='exact' (the exact filtered top-k)")
            merge = "fast"
        merge = self._merge if merge is None else merge
        p = self._defaults
        if overrides:
            p = _params.override(p, overrides)
            self._check_params(p)
        found = max(1, min(k, self._n))
        q_ref = ray.put(queries)
        if self._shard_kind == "tree_ah" and merge == "exact" and self.num_shards > 1:
            ids, distances = self._two_rounds(q_ref, queries, found, p, num_threads)
        else:
            values = dataclasses.asdict(p)
            w_ref = None if wire is None else ray.put(wire)
            parts = self._gather(lambda slot: self._actors[slot].search.remote(q_ref, found, num_threads, values,
                                                                                 self._metric, w_ref, filter_route))
            ids, distances = merge_top_k(parts, found, self._metric)
        if ids.shape[1] != k:
            ids, distances = merge_top_k([(ids, distances)], k, self._metric)
            ids, distances = ids[:, :k], distances[:, :k]
        return ids, distances

    # ------------------------------------------------------------------ writes

    def add(self, vectors, ids=None) -> np.ndarray:
        """Add points; returns their ids (``ids``, or fresh ones after the largest id any shard has
        used). The point with id ``i`` goes to shard ``i % num_shards``. An id already in the index
        is a KeyError naming it; nothing is added then.

        A shard written to is not restartable from its files until the next :meth:`save`.
        """
        from annlib.index.ids import user_ids  # noqa: PLC0415

        array = _validate.database(vectors, "vectors")
        if array.shape[1] != self._dim:
            raise ValueError(f"vectors must have shape (m, {self._dim}), got {array.shape}")
        if ids is None:
            start = max(self._gather(lambda slot: self._actors[slot].next_id.remote()))
            new_ids = np.arange(start, start + len(array), dtype=np.int64)
        else:
            new_ids = user_ids(ids, len(array))
            if (new_ids == -1).any():
                raise ValueError("ids must not hold -1: it is the id of an empty result slot")
            if len(np.unique(new_ids)) != len(new_ids):
                raise ValueError("ids given to add must be unique")
            ids_ref = ray.put(new_ids)
            held = np.logical_or.reduce(self._gather(lambda slot: self._actors[slot].contains.remote(ids_ref)))
            if held.any():
                raise KeyError(f"ids already in the index: {new_ids[held][:5].tolist()}")
        owner = {s: slot for slot, shards in self._assignment.items() for s in shards}
        target = np.mod(new_ids, self.num_shards)
        refs = []
        for s in np.unique(target).tolist():
            picked = target == s
            refs.append(self._actors[owner[s]].add.remote(s, array[picked], new_ids[picked]))
            self._dirty.add(s)
        ray.get(refs, timeout=self.timeout_s)
        self._n += len(new_ids)
        return new_ids

    def delete(self, ids, missing: str = "raise") -> int:
        """Delete the points ``ids`` from whichever shards hold them; returns how many were deleted.
        ``missing="raise"``: an id in no shard is a KeyError naming it and nothing is deleted;
        ``"ignore"``: such ids are skipped."""
        from annlib.index.ids import user_ids  # noqa: PLC0415

        if missing not in ("raise", "ignore"):
            raise ValueError(f"missing must be 'raise' or 'ignore', got {missing!r}")
        wanted = np.unique(user_ids(ids))
        ids_ref = ray.put(wanted)
        if missing == "raise":
            held = np.logical_or.reduce(self._gather(lambda slot: self._actors[slot].contains.remote(ids_ref)))
            if not held.all():
                raise KeyError(f"ids not in the index: {wanted[~held][:5].tolist()}")
        deleted = 0
        for per_shard in self._gather(lambda slot: self._actors[slot].delete.remote(ids_ref)):
            for s, count in per_shard.items():
                if count:
                    self._dirty.add(s)
                    deleted += count
        self._n -= deleted
        return deleted

    def _two_rounds(self, q_ref, queries, k, p, num_threads):
        leaves = p.leaves_to_search
        reorder = self._shard_config["reorder"] is not None
        depth = min(max(p.pre_reorder_num_neighbors or k, k), self._n) if reorder else k
        parts = self._gather(lambda slot: self._actors[slot].ah_candidates.remote(q_ref, depth, leaves, num_threads,
                                                                                    self._metric))
        ids, scores = merge_top_k(parts, depth, self._metric, larger_better=True)
        if reorder:
            c_ref = ray.put(ids)
            parts = self._gather(lambda slot: self._actors[slot].rescore.remote(q_ref, c_ref, k, self._metric))
            ids, scores = merge_top_k(parts, k, self._metric, larger_better=True)
        return ids, self._distances(queries, ids, scores)

    def _distances(self, queries, ids, scores):
        """Distances from ranking scores, computed as the core computes them (bit-equal)."""
        if self._metric != "squared_l2":
            return scores
        distances = np.maximum(np.float32(0), _sequential_sq_norms(queries)[:, None] - scores)
        return np.where(ids >= 0, distances, np.float32(np.inf)).astype(np.float32)

    # ------------------------------------------------------------------ faults

    def _gather(self, call) -> list:
        """``call(slot)`` on every actor; results by slot. A dead actor is restarted from its saved
        shards and the call retried, all within ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        pending = {slot: call(slot) for slot in range(len(self._actors))}
        attempts = dict.fromkeys(pending, 1)
        results = {}
        while pending:
            slot, ref = next(iter(pending.items()))
            try:
                results[slot] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
                del pending[slot]
            except ray.exceptions.GetTimeoutError:
                raise ShardError(f"shard(s) {self._assignment[slot]} did not answer within "
                                 f"{self.timeout_s:g} s") from None
            except _ACTOR_FAILURES as exc:
                shards = self._assignment[slot]
                if not self.restart:
                    raise ShardError(f"the actor of shard(s) {shards} died ({type(exc).__name__}); "
                                     "restart=False") from exc
                if attempts[slot] >= _MAX_ATTEMPTS:
                    raise ShardError(f"the actor of shard(s) {shards} died {attempts[slot]} times in one call") from exc
                self._respawn(slot, deadline)
                attempts[slot] += 1
                pending[slot] = call(slot)
        return [results[slot] for slot in range(len(self._actors))]

    def _respawn(self, slot: int, deadline: float) -> None:
        shards = self._assignment[slot]
        changed = [s for s in shards if s in self._dirty]
        if changed:
            raise ShardError(f"the actor of shard(s) {shards} died and shard(s) {changed} changed (add/delete) since "
                             "they were last saved: their files would lose those writes")
        unsaved = [s for s in shards if s not in self._saved]
        if unsaved:
            raise ShardError(f"the actor of shard(s) {shards} died and shard(s) {unsaved} were never saved: "
                             "save(dir) a sharded index (or build it with save_dir=) to make it restartable")
        options, num_threads = self._actor_options
        actor = _ShardActor.options(**options).remote(num_threads)
        refs = [actor.load.remote(s, self._ranges[s][0], *self._saved[s], self._global_ids) for s in shards]
        try:
            ray.get(refs, timeout=max(0.0, deadline - time.monotonic()))
            if dataclasses.asdict(self._defaults):
                ray.get(actor.set_search_defaults.remote(dataclasses.asdict(self._defaults)),
                        timeout=max(0.0, deadline - time.monotonic()))
        except ray.exceptions.GetTimeoutError:
            ray.kill(actor)
            raise ShardError(f"restarting the actor of shard(s) {shards} took longer than "
                             f"{self.timeout_s:g} s") from None
        except Exception as exc:
            ray.kill(actor)
            raise ShardError(f"restarting the actor of shard(s) {shards} from {self._saved[shards[0]][0]} failed: "
                             f"{exc}") from exc
        self._actors[slot] = actor
        self.restarts += 1

    # ------------------------------------------------------------------ persistence

    def save(self, directory) -> None:
        """Write one index file per shard, the shared arrays once, and ``manifest.json`` last."""
        directory = os.path.abspath(os.fspath(directory))
        os.makedirs(directory, exist_ok=True)
        paths = {s: os.path.join(directory, _manifest.shard_file(s)) for s in range(self.num_shards)}

        written = {}
        saves = self._gather(lambda slot: [self._actors[slot].save.remote(s, paths[s]) for s in self._assignment[slot]])
        for slot, results in enumerate(saves):
            for s, info in zip(self._assignment[slot], results):
                written[s] = info
        shards = [{"file": _manifest.shard_file(s), "start": self._ranges[s][0], "n": self._ranges[s][1],
                   "sha256": written[s]["sha256"], "bytes": written[s]["bytes"]} for s in range(self.num_shards)]
        _manifest.write(directory, {
            "kind": self._shard_kind, "metric": self._metric,
            "n": sum(size for _, size in self._ranges),  # the rows the shards were built from (start, n each)
            "live": self._n, "dim": self._dim,
            "shard_config": self._shard_config, "search_defaults": dataclasses.asdict(self._defaults),
            "shards": shards, "shared": _manifest.write_shared(directory, self._shared),
            "global_ids": True,  # shard files hold their points' global ids (older saves: start + row)
        })
        self._saved = {s: (paths[s], written[s]["sha256"]) for s in range(self.num_shards)}
        self._global_ids = True
        self._dirty = set()

    def close(self) -> None:
        """Stop the actors (their saved files stay)."""
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []


# ------------------------------------------------------------------ helpers


def _inputs(data):
    if isinstance(data, (list, tuple)) and data and all(isinstance(p, (str, os.PathLike)) for p in data):
        files = [os.path.abspath(os.fspath(p)) for p in data]
        return files, [np.load(f, mmap_mode="r") for f in files]
    return None, data


def _threads(num_threads, cpus_per_actor) -> int:
    if num_threads is not None:
        return _validate.num_threads(num_threads)
    return max(1, int(round(cpus_per_actor)))


def _params_type(kind: str):
    from annlib.index.params import BruteForceSearchParams, TreeAhSearchParams  # noqa: PLC0415

    return {"tree_ah": TreeAhSearchParams, "brute_force": BruteForceSearchParams}[kind]


def _start_actors(num_shards: int, num_actors: int, options: dict, num_threads: int):
    num_actors = _validate.positive_int(num_actors, "num_actors")
    if num_actors > num_shards:
        raise ValueError(f"num_actors ({num_actors}) cannot exceed the number of shards ({num_shards})")
    if not ray.is_initialized():
        raise RuntimeError("Ray is not initialised: call ray.init(...) (or ray.init(address='auto')) first")
    # Actors that can never be placed would wait forever: refuse them. Actors waiting for CPUs
    # other actors hold are bounded by the build's timeout instead (freed CPUs show up late).
    cpus = ray.cluster_resources().get("CPU", 0.0)
    wanted = num_actors * options["num_cpus"]
    if wanted > cpus + 1e-9:
        raise ValueError(f"{num_actors} actors x {options['num_cpus']} CPUs = {wanted:g} CPUs, but the cluster has "
                         f"{cpus:g}: lower cpus_per_actor or num_actors")
    actors = [_ShardActor.options(**options).remote(num_threads) for _ in range(num_actors)]
    assignment = {slot: [] for slot in range(num_actors)}
    for s in range(num_shards):
        assignment[s * num_actors // num_shards].append(s)
    return actors, assignment


def _wait_all(refs, progress: bool, desc: str, timeout_s: float) -> list:
    from tqdm.auto import tqdm  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    with tqdm(total=len(refs), desc=desc, disable=not progress, leave=False, unit="shard") as bar:
        remaining = list(refs)
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise ShardError(f"{desc}: {len(remaining)} shard(s) not ready within {timeout_s:g} s "
                                 "(actors waiting for CPUs, or a slow build: raise timeout_s)")
            ray.get(done)  # raises the shard's error, if any
            bar.update(len(done))
    return ray.get(refs)


def _train_tree_ah(rows, ranges, n, metric, index_kwargs, num_threads):
    """Partition centers and PQ codebook trained once on a sample of all shards."""
    from annlib.config import TreeAhConfig  # noqa: PLC0415
    from annlib.index.params import TreeAhSearchParams  # noqa: PLC0415
    from annlib.index.tree_ah import TreeAhIndex  # noqa: PLC0415

    kwargs = dict(index_kwargs)
    for name in ("copy", "num_threads", "progress"):
        if name in kwargs:
            raise TypeError(f"{name!r} is an argument of ShardedIndex.build itself, not of the shards")
    kwargs.setdefault("num_leaves", max(1, int(round(math.sqrt(n)))))
    kwargs.setdefault("num_leaves_to_search", max(1, kwargs["num_leaves"] // 10))
    sample_size = min(n, int(kwargs.get("training_sample_size", 100_000)))
    rng = np.random.default_rng(kwargs.get("seed", 0))
    picks = np.sort(rng.choice(n, sample_size, replace=False))
    sample = _gather_rows(rows, ranges, picks)
    trainer = TreeAhIndex(sample, metric, copy=False, num_threads=num_threads, **kwargs)
    config = TreeAhConfig.from_dict(trainer.config)
    spec = {"config": config.to_dict(), "centers": np.array(trainer.layout.centers),
            "codebook": np.array(trainer.layout.codebook)}
    return spec, TreeAhSearchParams, trainer.search_defaults, config.to_dict()


def _gather_rows(rows, ranges, picks: np.ndarray) -> np.ndarray:
    if len(rows) == 1:
        return np.ascontiguousarray(rows[0][picks], dtype=np.float32)
    parts = []
    for (start, size), r in zip(ranges, rows):
        local = picks[(picks >= start) & (picks < start + size)] - start
        parts.append(np.asarray(r[local], dtype=np.float32))
    return np.ascontiguousarray(np.concatenate(parts))
