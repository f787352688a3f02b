"""A sharded index on Ray: shards held by actors, fan-out or routed search, exact merge, restart of lost actors.

The database is split into shards; each shard is an annlib index held by a Ray actor
(:class:`annlib.distributed._host.ShardHost`), and an actor may hold several shards. With
``shard_by="rows"`` a shard holds contiguous global rows ``[start, start + n)`` and its points
get the ids ``start + row``; with ``shard_by="partition"`` (tree-AH) it holds whole partitions
(:mod:`annlib.distributed._routing` places them) and its points keep their global row ids. A
``ray.data.Dataset`` with an ids column gives its points those ids instead.

Inputs (:mod:`annlib.distributed._sources`): an array (the driver's, put in the object store
once per shard), data files or Dataset blocks. Files and blocks are read by Ray tasks (sizes,
the training sample, the partition of every row for ``shard_by="partition"``) and by the
actors that build shards, never in bulk by the driver, which holds only the sample and, for
partition sharding, one partition number per row.

Routing (``route=True``, the default with ``shard_by="partition"``): the driver ranks the
partitions of each query against the shared centers and asks only the shards holding entries
of its ``leaves_to_search`` best ones; a shard not asked would have found nothing, so routed
results are the fan-out results. A filtered exact-merge search routes by its widened leaf walk
(below); a filtered fast-merge search fans out (each shard widens by its own counts).

Tree-AH shards share one set of partition centers and one PQ codebook, trained once on a sample
of the whole database, so AH scores compare across shards. With ``merge="exact"`` (the default)
a search runs in two rounds that reproduce what one index built with the same centers and
codebook computes: (1) every shard returns its best ``pre_reorder_num_neighbors`` AH candidates
and the driver merges them by (score, id) into the single index's candidate list; (2) every
shard rescores its members of that list with the core's dot kernel and the driver merges the
exact top-k. ``merge="fast"`` is one round: every shard runs its own full search (reordering its
own candidates) and the driver merges; it rescores more candidates than one index would, so its
recall is never lower, but results may differ from the single index's.

Ids are user ids, global across shards: a shard's points carry their ids, so writes route by
id (see :mod:`annlib.distributed._writes`).

Filters (``filter=``, as on one index: id lists, ``Filter.allow/deny/bitmap``, numba predicates,
Python callables, or one per query in a batch) apply unchanged on every shard, since ids are
global; :mod:`annlib.distributed._filters` makes them survive the trip to the actors (a numba
predicate is compiled again there from its Python function). A filtered search runs every
With ``merge="exact"`` a filtered search is planned in the driver as one index plans it
(:mod:`annlib.distributed._filter_plan`): every shard reports its per-leaf allowed counts and
leaf sizes, the driver sums them and chooses each filter's route by the single index's rules
(fewer than ``k`` allowed: exact; otherwise the cheaper, priced with one shard's measured
costs), the index route runs the two rounds with every shard walking its leaves by the whole
index's counts (so it scans the leaves one index scans), and queries it leaves short of ``k``
although ``k`` points pass are rerun on the exact route: every shard's exact top-k over its
allowed points, merged. Results equal one index's filtered search bit for bit where both take
the same routes (always, with a forced ``filter_route``) and the counts are exact (id lists and
bitmaps; a predicate's are per-shard sample estimates). ``merge="fast"`` with a filter runs
every shard's own filtered search (its own planner and fallback) and merges: results pass the
filter, and a query gets ``k`` of them whenever ``k`` live points pass.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import numpy as np

from annlib import _validate
from annlib.distributed import _filter_plan, _filters, _host, _routing, _sources, manifest as _manifest
from annlib.distributed._merge import merge_top_k
from annlib.distributed._writes import ShardWrites
from annlib.index import params as _params
from annlib.result import SearchResult

try:
    import ray
    import ray.exceptions
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('annlib.distributed needs Ray: pip install "annlib[ray]"') from exc

MERGES = ("exact", "fast")
SHARD_BY = ("rows", "partition")
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


class ShardedIndex(ShardWrites):
    """An index split into shards held by Ray actors; search, save and load like one index.

    Build with :meth:`build` (from an array, a list of data files or a ``ray.data.Dataset``) or
    :meth:`load` a saved one; write with ``add``, ``upsert``, ``delete``, ``compact``,
    ``rebalance`` (:mod:`annlib.distributed._writes`); search a Dataset of queries with
    :meth:`search_dataset`. ``search`` and ``search_batched`` take the protocol's arguments
    (``k``, ``final_num_neighbors``, keyword search parameters of the shard kind) plus
    ``merge=`` ("exact" or "fast", see the module docs).

    Faults: a call that finds an actor dead restarts it from the shard files of the last
    :meth:`save` / :meth:`load` and retries, within ``timeout_s`` (``restart=True``, the
    default); otherwise, or for shards never saved, it raises :class:`ShardError` naming the
    shards.
    """

    kind = "sharded"

    def __init__(self, *, shard_kind, metric, dim, ranges, actors, assignment, defaults, params_type,
                 shard_config, shared, actor_options, restart, timeout_s, merge, saved=None, shard_by="rows",
                 leaf_owner=None, route=None):
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
        self._shard_by = shard_by
        self._leaf_owner = None if leaf_owner is None else np.asarray(leaf_owner, dtype=np.int32)
        if route and shard_kind != "tree_ah":
            raise ValueError("route=True needs tree-AH shards (routing goes by partition)")
        self.route = (shard_by == "partition") if route is None else bool(route)
        self._leaf_shards = None  # (num_leaves, num_shards) bool: which shards hold entries of a leaf
        self._routing_s = 0.0
        #: Figures of the last search: queries, shards and actors asked per query, payload bytes per
        #: query (queries, candidate lists and results; Ray's framing excluded); after a filtered
        #: exact-merge search also ``routes``, each query's planned route ("index" or "exact").
        self.last_search_stats: dict = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, data, num_shards: int | None = None, metric: str = "dot", *, kind: str = "tree_ah",
              shard_by: str = "rows", column: str = "vector", ids_column: str | None = None,
              num_actors: int | None = None, cpus_per_actor: float = 1.0, num_threads: int | None = None,
              merge: str = "exact", route: bool | None = None, restart: bool = True, timeout_s: float = 300.0,
              progress: bool = False, save_dir=None, **index_kwargs) -> ShardedIndex:
        """Split ``data`` into ``num_shards`` shards and build one index per shard in parallel.

        ``data``: an (n, dim) array; a list of data files (``.npy``, ``.fvecs``, ``.bvecs``,
        ``.hdf5``/``.h5`` with a ``train`` matrix), each read by the actor(s) that build from it,
        so the paths must be visible to every node (default ``num_shards``: one per file); or a
        ``ray.data.Dataset`` whose column ``column`` holds the vectors and, optionally,
        ``ids_column`` their user ids (default ``num_shards``: 1). The shared centers and
        codebook are trained once on a sample drawn across all files / blocks.

        ``shard_by``: ``"rows"`` (contiguous rows; files grouped in order) or ``"partition"``
        (tree-AH: each shard holds whole partitions, placed by a balanced k-means over the
        partition centers, so a query's best partitions sit on few shards). ``route``: send a
        query only to the shards holding its ``leaves_to_search`` best partitions (default: on
        with ``shard_by="partition"``); results equal the fan-out search's.
        ``kind``: ``"tree_ah"`` (``index_kwargs`` as for :class:`annlib.TreeAhIndex`;
        ``num_leaves`` and ``num_leaves_to_search`` default from the total size) or
        ``"brute_force"``. ``num_threads``: threads per actor (default: ``cpus_per_actor``
        rounded, at least 1). ``progress``: progress bars for the reads and the shard builds.
        ``save_dir``: save right after building, so lost actors can be restored.
        """
        metric = _validate.metric(metric)
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        if shard_by not in SHARD_BY:
            raise ValueError(f"shard_by must be one of {SHARD_BY}, got {shard_by!r}")
        if shard_by == "partition" and kind != "tree_ah":
            raise ValueError("shard_by='partition' needs kind='tree_ah' (only it has partitions)")
        if not ray.is_initialized():
            raise RuntimeError("Ray is not initialised: call ray.init(...) (or ray.init(address='auto')) first")
        parts = _Parts.of(data, num_shards, column, ids_column, progress, timeout_s)
        if num_shards is None:
            num_shards = parts.default_shards
        num_shards = _validate.positive_int(num_shards, "num_shards")
        if num_shards > parts.n:
            raise ValueError(f"num_shards ({num_shards}) exceeds the number of points ({parts.n})")
        num_threads = _threads(num_threads, cpus_per_actor)

        shared: dict[str, np.ndarray] = {}
        if kind == "tree_ah":
            spec, params_type, defaults, shard_config = _train_tree_ah(parts, index_kwargs, metric, num_threads,
                                                                       progress, timeout_s)
            shared = {"centers": spec["centers"], "codebook": spec["codebook"]}
        elif kind == "brute_force":
            from annlib.index.params import BruteForceSearchParams  # noqa: PLC0415

            if set(index_kwargs) - {"num_neighbors"}:
                raise TypeError(f"unknown brute_force arguments: {sorted(set(index_kwargs) - {'num_neighbors'})}")
            spec = {"num_neighbors": _validate.positive_int(index_kwargs.get("num_neighbors", 10), "num_neighbors")}
            params_type, defaults, shard_config = BruteForceSearchParams, BruteForceSearchParams(), dict(spec)
        else:
            raise ValueError(f"sharding supports the kinds 'tree_ah' and 'brute_force', not {kind!r}")

        leaf_owner = None
        if shard_by == "rows":
            jobs = parts.by_rows(num_shards)
        else:
            leaves = parts.leaves(spec["centers"], metric, progress, timeout_s)
            sizes = np.bincount(np.concatenate(leaves), minlength=len(spec["centers"]))
            leaf_owner = _routing.place_partitions(spec["centers"], sizes, num_shards, metric,
                                                   seed=int(index_kwargs.get("seed", 0)))
            jobs = parts.by_partition(leaves, leaf_owner, num_shards)
        if any(size == 0 for size, _, _ in jobs):
            raise ValueError("every shard needs at least one point (fewer shards, or shard_by='rows')")
        ranges = list(zip(np.concatenate([[0], np.cumsum([j[0] for j in jobs])[:-1]]).astype(int).tolist(),
                          [int(j[0]) for j in jobs]))

        num_actors = num_actors or len(ranges)
        options = {"num_cpus": cpus_per_actor}
        actors, assignment = _start_actors(len(ranges), num_actors, options, num_threads)
        self = cls(shard_kind=kind, metric=metric, dim=parts.dim, ranges=ranges, actors=actors,
                   assignment=assignment, defaults=defaults, params_type=params_type, shard_config=shard_config,
                   shared=shared, actor_options=(options, num_threads), restart=restart, timeout_s=timeout_s,
                   merge=merge, shard_by=shard_by, leaf_owner=leaf_owner, route=route)
        spec_ref = ray.put(spec)
        refs = []
        for slot, shard_ids in assignment.items():
            for s in shard_ids:
                _, source, ids = jobs[s]
                refs.append(actors[slot].build.remote(s, ranges[s][0], source, kind, metric, spec_ref, ids))
        _wait_all(refs, progress, "annlib sharded build", timeout_s)
        self._refresh_leaves()
        if save_dir is not None:
            self.save(save_dir)
        return self

    @classmethod
    def load(cls, directory, num_actors: int | None = None, *, cpus_per_actor: float = 1.0,
             num_threads: int | None = None, merge: str = "exact", route: bool | None = None, restart: bool = True,
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
                   restart=restart, timeout_s=timeout_s, merge=merge, saved=saved,
                   shard_by=m.get("sharding", "rows"), leaf_owner=m.get("leaf_owner"), route=route)
        self._global_ids = bool(m.get("global_ids", False))
        refs = [actors[slot].load.remote(s, ranges[s][0], *saved[s], self._global_ids)
                for slot, ids in assignment.items() for s in ids]
        try:
            self._n = int(sum(_wait_all(refs, progress, "annlib sharded load", timeout_s)))
        except ValueError as exc:
            from annlib.errors import FormatError  # noqa: PLC0415

            self.close()
            raise FormatError(str(exc)) from None
        self._refresh_leaves()
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
        """(start, n) of every shard's build: with ``shard_by="rows"`` and no ids column, the global
        rows it was built from (ids ``start .. start + n - 1``); otherwise ``n`` points whose ids
        are their own, ``start`` only their running count. Later adds and deletes do not change
        them; :meth:`rebalance` does."""
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
                "sharding": self._shard_by, "route": self.route, "index": self._shard_config, "search_defaults": dataclasses.asdict(self._defaults)}

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
        ids, distances = self._run(queries, k, final_num_neighbors, merge, params, 1, filter, filter_route, "single")
        return SearchResult(ids[0], distances[0]) if single else SearchResult(ids, distances)

    def search_batched(self, queries, k: int | None = None, *, num_threads: int | None = None,
                       final_num_neighbors: int | None = None, merge: str | None = None, filter=None,
                       filter_route: str = "auto", **params) -> SearchResult:
        """A batch (nq, dim), fanned out to every shard; ``num_threads`` per actor (default: the
        actor's own). ``filter`` may be one filter or a sequence of one per query."""
        queries, _ = _validate.queries(queries, self._dim)
        threads = self._actor_options[1] if num_threads is None else _validate.num_threads(num_threads)
        return SearchResult(*self._run(queries, k, final_num_neighbors, merge, params, threads, filter, filter_route))

    def search_dataset(self, dataset, k: int | None = None, *, column: str = "vector", ids_column: str = "neighbors",
                       distances_column: str = "distances", batch_size: int = 1024, num_threads: int | None = None,
                       concurrency: int | None = None, **search_kwargs):
        """Search every row of a ``ray.data.Dataset`` of queries (vectors in ``column``) with
        ``map_batches``; returns the dataset (lazy, as Ray Data is) with ``ids_column`` and
        ``distances_column`` added, (k,) arrays per row, equal to :meth:`search_batched` of the
        same queries. ``search_kwargs``: ``merge``, ``filter`` and search parameters, as for
        :meth:`search_batched`. Workers never restart dead actors (see
        :mod:`annlib.distributed._offline`)."""
        from annlib.distributed import _offline  # noqa: PLC0415

        if not _is_ray_dataset(dataset):
            raise TypeError(f"search_dataset takes a ray.data.Dataset, got {type(dataset).__name__}")
        batch_size = _validate.positive_int(batch_size, "batch_size")
        k = None if k is None else _validate.k(k)
        if search_kwargs.get("filter") is not None:
            _filters.to_wire(search_kwargs["filter"], 1)  # a filter the actors cannot take fails here, not in a worker
        names = dataset.schema().names
        if column not in names:
            raise ValueError(f"the query dataset has no column {column!r} (columns: {sorted(names)})")
        fn = _offline.DatasetSearch(type(self), _offline.client_state(self), k, column, ids_column, distances_column,
                                    num_threads, search_kwargs)
        options = {} if concurrency is None else {"concurrency": concurrency}
        return dataset.map_batches(fn, batch_format="numpy", batch_size=batch_size, **options)

    def _run(self, queries, k, final_num_neighbors, merge, overrides, num_threads, filter_value=None,
             filter_route="auto", mode="batched"):
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
        merge = self._merge if merge is None else merge
        p = self._defaults
        if overrides:
            p = _params.override(p, overrides)
            self._check_params(p)
        found = max(1, min(k, self._n))
        two_rounds = self._shard_kind == "tree_ah" and merge == "exact" and self.num_shards > 1
        if wire is not None and two_rounds and filter_route != "exact":
            ids, distances = self._filtered_two_rounds(queries, found, p, num_threads, wire, filter_route, mode)
        elif wire is None and two_rounds:
            start = time.perf_counter()
            slots = self._routed_slots(queries, p)
            self._routing_s = time.perf_counter() - start
            ids, distances = self._two_rounds(queries, slots, found, p, num_threads)
        else:
            # One round: every shard's own (filtered) search, merged. With a filter on the exact
            # route that is the exact filtered top-k; otherwise each shard plans for itself.
            start = time.perf_counter()
            slots = self._routed_slots(queries, p) if wire is None else None
            self._routing_s = time.perf_counter() - start
            values = dataclasses.asdict(p)
            w_ref = None if wire is None else ray.put(wire)
            sent = self._queries_per_slot(queries, slots)
            parts = self._gather(lambda slot: self._actors[slot].search.remote(
                sent[slot][0], found, num_threads, values, self._metric, w_ref, filter_route), list(sent))
            self._account(queries, sent, _nbytes(parts))
            parts = {slot: _scatter(part, sent[slot][1], len(queries)) for slot, part in parts.items()}
            ids, distances = merge_top_k(list(parts.values()) or [_empty(len(queries), found, self._metric)],
                                         found, self._metric)
        if ids.shape[1] != k:
            ids, distances = merge_top_k([(ids, distances)], k, self._metric)
            ids, distances = ids[:, :k], distances[:, :k]
        return ids, distances

    def _routed_slots(self, queries, p) -> np.ndarray | None:
        """(nq, num_actors) bool, the actors a routed search asks about each query; None: all."""
        if not self.route or self._shard_kind != "tree_ah" or self._leaf_shards is None or len(self._actors) == 1:
            return None  # (one actor gets every query anyway: ranking partitions would only cost)
        scores = _routing.center_scores(queries, self._shared["centers"], self._metric)
        chosen = _routing.chosen_leaves(scores, p.leaves_to_search)
        return self._slots_of(_routing.shards_of_queries(chosen, self._leaf_shards))

    def _queries_per_slot(self, queries, slots) -> dict:
        """{slot: (object ref of its queries, their rows or None for all)}, for the asked slots."""
        if slots is None:
            q_ref = ray.put(queries)
            self._shards_asked = np.full(len(queries), self.num_shards)
            return {slot: (q_ref, None) for slot in range(len(self._actors))}
        out = {}
        for slot in range(len(self._actors)):
            rows = np.flatnonzero(slots[:, slot])
            if len(rows):
                out[slot] = (ray.put(np.ascontiguousarray(queries[rows])), rows)
        return out

    def _account(self, queries, sent, payload_bytes: int) -> None:
        """``payload_bytes``: what went to and came back from the actors besides the queries."""
        nq = len(queries)
        self._stats(queries, sum(nq if rows is None else len(rows) for _, rows in sent.values()), payload_bytes)

    def _stats(self, queries, asked: int, payload_bytes: int) -> None:
        """``asked``: queries sent to actors, summed over the actors."""
        nq = len(queries)
        total = asked * queries.shape[1] * 4 + payload_bytes
        self.last_search_stats = {
            "queries": nq, "shards_per_query": float(np.mean(self._shards_asked)) if nq else 0.0,
            "actors_per_query": asked / nq if nq else 0.0,
            "payload_bytes_per_query": total / nq if nq else 0.0,
            "routing_us_per_query": 1e6 * self._routing_s / nq if nq else 0.0,  # the driver ranking partitions
        }

    def _refresh_leaves(self, slots=None) -> None:
        """Re-read which shards hold entries of which partitions (after builds and writes)."""
        if self._shard_kind != "tree_ah":
            return
        num_leaves = self._shard_config["tree"]["num_leaves"]
        if self._leaf_shards is None:
            self._leaf_shards = np.zeros((num_leaves, self.num_shards), dtype=bool)
        asked = range(len(self._actors)) if slots is None else slots
        masks = self._gather(lambda slot: self._actors[slot].leaf_masks.remote(), asked)
        for per_shard in masks.values():
            for s, mask in per_shard.items():
                self._leaf_shards[:, s] = mask

    def _filtered_two_rounds(self, queries, k, p, num_threads, wire, route, mode):
        """The exact merge with a filter, as one index plans and runs it (see
        :mod:`annlib.distributed._filter_plan`): the shards' per-leaf counts summed, each filter's
        route chosen on them, the index route's two rounds walking the whole index's leaves, and
        the exact route (and the index route's queries left short of ``k``) as every shard's
        exact top-k over its allowed points, merged."""
        specs, of_query = wire
        nq = len(queries)
        q_filter = np.zeros(nq, dtype=np.int64) if of_query is None else np.asarray(of_query, dtype=np.int64)
        specs_ref = ray.put(specs)
        per_shard = {}
        for counts in self._gather(lambda slot: self._actors[slot].filter_counts.remote(specs_ref, num_threads)):
            per_shard.update(counts)
        fig = _filter_plan.Figures.summed(per_shard)
        reorder = self._shard_config["reorder"] is not None
        depth = min(max(p.pre_reorder_num_neighbors or k, k), self._n) if reorder else k
        threads = 1 if mode == "single" else num_threads

        def costs():
            return self._gather(lambda slot: self._actors[slot].route_costs.remote(mode, threads, k), [0])[0]

        of_filter, _ = _filter_plan.routes(fig, k, route, reorder, p.leaves_to_search, depth if reorder else 0, costs)
        planned = np.array(of_filter, dtype=object)[q_filter]
        ids = np.full((nq, k), -1, dtype=np.int64)
        distances = np.full((nq, k), _validate.worst_distance(self._metric), dtype=np.float32)
        payload = actors_asked = 0
        on_index = np.flatnonzero(planned == "index")
        exact = np.flatnonzero(planned == "exact")
        self._routing_s = 0.0
        self._shards_asked = np.zeros(nq)
        if on_index.size:
            sub_q = np.ascontiguousarray(queries[on_index])
            sub_f = q_filter[on_index]
            slots = None
            if self.route and self._leaf_shards is not None and len(self._actors) > 1:
                start = time.perf_counter()
                scores = _routing.center_scores(sub_q, self._shared["centers"], self._metric)
                walked = _filter_plan.walked_leaves(scores, p.leaves_to_search, fig, sub_f)
                slots = self._slots_of(_filter_plan.shards_of_walk(walked, fig, sub_f, self.num_shards))
                self._routing_s = time.perf_counter() - start
            filtered = (specs_ref, None if of_query is None else sub_f.astype(np.int32), fig.leaf_allowed,
                        fig.leaf_sizes)
            r, d, (asked_index, sent_bytes) = self._two_rounds(sub_q, slots, k, p, num_threads, filtered=filtered,
                                                               account=False)
            ids[on_index], distances[on_index] = r, d
            payload += sent_bytes
            actors_asked += asked_index
            asked = self._shards_asked if slots is not None else np.full(len(on_index), self.num_shards)
            # Short of k although k points (may) pass: rerun exactly, as one index does.
            short = (r[:, -1] < 0) & ((fig.allowed[sub_f] >= k) | fig.estimated[sub_f])
            if reorder and short.any():
                exact = np.sort(np.concatenate([exact, on_index[short]]))
            self._shards_asked = np.zeros(nq)
            self._shards_asked[on_index] = asked
        if exact.size:
            sub_wire = (specs, None if of_query is None else q_filter[exact])
            q_ref = ray.put(np.ascontiguousarray(queries[exact]))
            values = dataclasses.asdict(p)
            parts = self._gather(lambda slot: self._actors[slot].search.remote(
                q_ref, k, num_threads, values, self._metric, sub_wire, "exact"))
            payload += _nbytes(dict(enumerate(parts)))
            actors_asked += len(exact) * len(self._actors)
            ids[exact], distances[exact] = merge_top_k(parts, k, self._metric)
            self._shards_asked[exact] = self.num_shards
        self._stats(queries, actors_asked, payload)
        self.last_search_stats["routes"] = planned
        return ids, distances

    def _slots_of(self, shards: np.ndarray) -> np.ndarray:
        """(nq, num_actors) bool from (nq, num_shards) bool: the actors holding the shards asked."""
        self._shards_asked = shards.sum(axis=1)
        slot_of = np.empty(self.num_shards, dtype=np.int64)
        for slot, ids in self._assignment.items():
            slot_of[ids] = slot
        out = np.zeros((len(shards), len(self._actors)), dtype=bool)
        for slot in range(len(self._actors)):
            out[:, slot] = shards[:, slot_of == slot].any(axis=1)
        return out

    def _two_rounds(self, queries, slots, k, p, num_threads, filtered=None, account=True):
        """The exact merge: the actors' AH candidates merged into one index's candidate list, then
        each actor rescores only its own members of that list. ``filtered``: (filter specs ref,
        filter of each query or None, the whole index's leaf_allowed and leaf_sizes); then
        returns the payload bytes too, and accounts nothing (the caller does)."""
        leaves = p.leaves_to_search
        nq = len(queries)
        reorder = self._shard_config["reorder"] is not None
        depth = min(max(p.pre_reorder_num_neighbors or k, k), self._n) if reorder else k
        sent = self._queries_per_slot(queries, slots)
        order = list(sent)
        if filtered is None:
            first = self._gather(lambda slot: self._actors[slot].ah_candidates.remote(
                sent[slot][0], depth, leaves, num_threads, self._metric), order)
        else:
            specs_ref, of_query, leaf_allowed, leaf_sizes = filtered
            la_ref, ls_ref = ray.put(leaf_allowed), ray.put(leaf_sizes)

            def call(slot):
                rows = sent[slot][1]
                mine = None if of_query is None else (of_query if rows is None else of_query[rows])
                return self._actors[slot].ah_candidates.remote(sent[slot][0], depth, leaves, num_threads,
                                                               self._metric, specs_ref, mine, la_ref, ls_ref)

            first = self._gather(call, order)
        payload = _nbytes(first)
        first = {slot: _scatter(part, sent[slot][1], nq, larger_better=True) for slot, part in first.items()}
        if not first:
            ids, scores = _empty(nq, k, self._metric, larger_better=True)
            return self._two_rounds_done(queries, sent, payload, ids, scores, account)
        ids, scores, source = merge_top_k([first[slot] for slot in order], depth, self._metric,
                                          larger_better=True, sources=True)
        if reorder:
            second_sent = {}
            for j, slot in enumerate(order):
                mine = source == j
                q_ref, asked = sent[slot]
                local = np.flatnonzero(mine.any(axis=1) if asked is None else mine[asked].any(axis=1))
                if len(local):
                    rows = local if asked is None else asked[local]
                    # Only this actor's candidates, moved to the front of their rows (order kept).
                    width = int(mine[rows].sum(axis=1).max())
                    front = np.argsort(~mine[rows], axis=1, kind="stable")[:, :width]
                    candidates = np.take_along_axis(np.where(mine[rows], ids[rows], -1), front, axis=1)
                    payload += candidates.nbytes + 4 * local.size
                    local = local.astype(np.int32)
                    second_sent[slot] = (q_ref, ray.put(candidates), rows, ray.put(local))
            second = self._gather(lambda slot: self._actors[slot].rescore.remote(
                second_sent[slot][0], second_sent[slot][1], k, self._metric, second_sent[slot][3]), list(second_sent))
            payload += _nbytes(second)
            second = [_scatter(part, second_sent[slot][2], nq, larger_better=True) for slot, part in second.items()]
            ids, scores = merge_top_k(second or [_empty(nq, k, self._metric, larger_better=True)], k, self._metric,
                                      larger_better=True)
        return self._two_rounds_done(queries, sent, payload, ids, scores, account)

    def _two_rounds_done(self, queries, sent, payload, ids, scores, account):
        if account:
            self._account(queries, sent, payload)
            return ids, self._distances(queries, ids, scores)
        asked = sum(len(queries) if rows is None else len(rows) for _, rows in sent.values())
        return ids, self._distances(queries, ids, scores), (asked, payload)

    def _distances(self, queries, ids, scores):
        """Distances from ranking scores, computed as the core computes them (bit-equal)."""
        if self._metric != "squared_l2":
            return scores
        distances = np.maximum(np.float32(0), _sequential_sq_norms(queries)[:, None] - scores)
        return np.where(ids >= 0, distances, np.float32(np.inf)).astype(np.float32)

    # ------------------------------------------------------------------ faults

    def _gather(self, call, slots=None):
        """``call(slot)`` on every actor (a list of results by slot) or on ``slots`` (a dict
        {slot: result}). A dead actor is restarted from its saved shards and the call retried,
        all within ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        asked = range(len(self._actors)) if slots is None else list(slots)
        pending = {slot: call(slot) for slot in asked}
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
        if slots is not None:
            return {slot: results[slot] for slot in asked}
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
            # Optional keys (a reader that ignores them gets a correct fan-out index): how rows were
            # dealt, and for shards by partition the owner shard of every partition.
            "sharding": self._shard_by,
            **({"leaf_owner": self._leaf_owner.tolist()} if self._leaf_owner is not None else {}),
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


def _scatter(part, rows, nq: int, larger_better: bool = False):
    """An actor's answer for the queries ``rows`` (None: all) as full-height (nq, width) arrays,
    empty (-1) rows for the queries it was not asked about."""
    ids, values = part
    if rows is None:
        return ids, values
    full_ids = np.full((nq, ids.shape[1]), -1, dtype=np.int64)
    full_values = np.full((nq, ids.shape[1]), -np.inf if larger_better else np.inf, dtype=np.float32)
    full_ids[rows], full_values[rows] = ids, values
    return full_ids, full_values


def _nbytes(parts: dict) -> int:
    return int(sum(ids.nbytes + values.nbytes for ids, values in parts.values()))


def _empty(nq: int, k: int, metric: str, larger_better: bool = False):
    worst = -np.inf if larger_better else _validate.worst_distance(metric)
    return np.full((nq, k), -1, dtype=np.int64), np.full((nq, k), worst, dtype=np.float32)


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


def _wait_all(refs, progress: bool, desc: str, timeout_s: float, unit: str = "shard") -> list:
    from tqdm.auto import tqdm  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    with tqdm(total=len(refs), desc=desc, disable=not progress, leave=False, unit=unit) as bar:
        remaining = list(refs)
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise ShardError(f"{desc}: {len(remaining)} {unit}(s) not ready within {timeout_s:g} s "
                                 "(actors waiting for CPUs, or a slow build: raise timeout_s)")
            ray.get(done)  # raises the shard's error, if any
            bar.update(len(done))
    return ray.get(refs)


def _train_tree_ah(parts: _Parts, index_kwargs, metric, num_threads, progress, timeout_s):
    """Partition centers and PQ codebook trained once on a sample drawn across all parts."""
    from annlib.config import TreeAhConfig  # noqa: PLC0415
    from annlib.index.params import TreeAhSearchParams  # noqa: PLC0415
    from annlib.index.tree_ah import TreeAhIndex  # noqa: PLC0415

    kwargs = dict(index_kwargs)
    for name in ("copy", "num_threads", "progress"):
        if name in kwargs:
            raise TypeError(f"{name!r} is an argument of ShardedIndex.build itself, not of the shards")
    n = parts.n
    kwargs.setdefault("num_leaves", max(1, int(round(math.sqrt(n)))))
    kwargs.setdefault("num_leaves_to_search", max(1, kwargs["num_leaves"] // 10))
    sample_size = min(n, int(kwargs.get("training_sample_size", 100_000)))
    rng = np.random.default_rng(kwargs.get("seed", 0))
    picks = np.sort(rng.choice(n, sample_size, replace=False))
    sample = parts.sample(picks, progress, timeout_s)
    trainer = TreeAhIndex(sample, metric, copy=False, num_threads=num_threads, **kwargs)
    config = TreeAhConfig.from_dict(trainer.config)
    spec = {"config": config.to_dict(), "centers": np.array(trainer.layout.centers),
            "codebook": np.array(trainer.layout.codebook)}
    return spec, TreeAhSearchParams, trainer.search_defaults, config.to_dict()


@ray.remote
def _read_task(piece, rows):
    return _sources.read(piece, rows)[0]


@ray.remote
def _leaves_task(piece, centers, metric):
    parts = [_routing.nearest_leaf(chunk, centers, metric) for chunk in _sources.chunks(piece)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)


class _Parts:
    """The input of a build as parts (the array; one piece per file; one per dataset split),
    with their sizes: what the driver samples from and deals out to the shards. Files and
    dataset splits are only read by Ray tasks and by the actors building shards."""

    def __init__(self, pieces: list, sizes: list[int], dim: int, array=None, default_shards: int = 1,
                 ids_carried: bool = False):
        self.pieces, self.sizes, self.dim, self.array = pieces, sizes, dim, array
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.n = int(sum(sizes))
        self.default_shards = default_shards
        self.ids_carried = ids_carried

    @classmethod
    def of(cls, data, num_shards, column, ids_column, progress, timeout_s) -> _Parts:
        if isinstance(data, (list, tuple)) and data and all(isinstance(p, (str, os.PathLike)) for p in data):
            for p in data:
                if not _sources.is_data_file(p):
                    raise ValueError(f"{p}: not a data file annlib reads ({', '.join(_sources.FILE_SUFFIXES)})")
            pieces = [("file", os.path.abspath(os.fspath(p)), None) for p in data]
            shapes = _run_tasks([_probe_task.remote(piece) for piece in pieces], progress, "annlib probe files",
                                timeout_s, unit="file")
            dims = {d for _, d in shapes}
            if len(dims) != 1:
                raise ValueError(f"every data file must hold vectors of one dimension, got {sorted(dims)}")
            if any(n == 0 for n, _ in shapes):
                raise ValueError("a data file holds no rows")
            return cls(pieces, [n for n, _ in shapes], dims.pop(), default_shards=len(pieces))
        if _is_ray_dataset(data):
            refs = data.materialize().to_arrow_refs()
            pieces = [("block", ref, column, ids_column, None) for ref in refs]
            shapes = _run_tasks([_probe_task.remote(piece) for piece in pieces], progress, "annlib probe blocks",
                                timeout_s, unit="block")
            keep = [i for i, (n, _) in enumerate(shapes) if n]
            if not keep:
                raise ValueError("the dataset holds no rows")
            dims = {shapes[i][1] for i in keep}
            if len(dims) != 1:
                raise ValueError(f"the vectors of column {column!r} must have one length, got {sorted(dims)}")
            return cls([pieces[i] for i in keep], [shapes[i][0] for i in keep], dims.pop(),
                       default_shards=1, ids_carried=ids_column is not None)
        array = _validate.database(data)
        return cls([("array", array, None)], [array.shape[0]], int(array.shape[1]), array=array)

    def sample(self, picks: np.ndarray, progress, timeout_s) -> np.ndarray:
        if self.array is not None:
            return np.ascontiguousarray(self.array[picks], dtype=np.float32)
        refs = []
        for piece, start, size in zip(self.pieces, self.starts, self.sizes):
            local = picks[(picks >= start) & (picks < start + size)] - start
            if len(local):
                refs.append(_read_task.remote(piece, local))
        rows = _run_tasks(refs, progress, "annlib training sample", timeout_s, unit="part")
        return np.ascontiguousarray(np.concatenate(rows))

    def by_rows(self, num_shards: int) -> list[tuple[int, object, np.ndarray | None]]:
        """(size, source, ids) of every shard: contiguous global rows (their ids, unless the
        dataset carries its own)."""
        if self.array is not None:
            return [(size, ray.put(self.array[start : start + size]), None)
                    for start, size in _row_ranges(self.n, num_shards)]
        if num_shards == len(self.pieces):
            return [(size, [piece], None) for piece, size in zip(self.pieces, self.sizes)]
        jobs = []
        for start, size in _row_ranges(self.n, num_shards):
            pieces = []
            for piece, p_start, p_size in zip(self.pieces, self.starts, self.sizes):
                lo, hi = max(start, p_start), min(start + size, p_start + p_size)
                if lo < hi:
                    pieces.append(_with_rows(piece, range(int(lo - p_start), int(hi - p_start))))
            jobs.append((size, pieces, None))
        return jobs

    def leaves(self, centers, metric, progress, timeout_s) -> list[np.ndarray]:
        """The primary partition of every row, part by part (Ray tasks for files and splits)."""
        if self.array is not None:
            return [_routing.nearest_leaf(self.array, centers, metric)]
        c_ref = ray.put(centers)
        refs = [_leaves_task.remote(piece, c_ref, metric) for piece in self.pieces]
        return _run_tasks(refs, progress, "annlib partition assignment", timeout_s, unit="part")

    def by_partition(self, leaves, leaf_owner, num_shards: int):
        """(size, source, ids) of every shard: the rows of the partitions it owns."""
        jobs = []
        for s in range(num_shards):
            picked = [np.flatnonzero(leaf_owner[leaf] == s) for leaf in leaves]
            size = int(sum(len(p) for p in picked))
            ids = None if self.ids_carried else np.concatenate(
                [start + p for start, p in zip(self.starts, picked)]).astype(np.int64)
            if self.array is not None:
                source = ray.put(self.array[picked[0]])
            else:
                source = [_with_rows(piece, p) for piece, p in zip(self.pieces, picked) if len(p)]
            jobs.append((size, source, ids))
        return jobs


@ray.remote
def _probe_task(piece):
    return _sources.probe(piece)


def _with_rows(piece, rows):
    return (*piece[:-1], rows)


def _is_ray_dataset(value) -> bool:
    try:
        from ray.data import Dataset  # noqa: PLC0415
    except ImportError:  # pragma: no cover - ray without its data extra
        return False
    return isinstance(value, Dataset)


def _run_tasks(refs, progress, desc, timeout_s, unit="task") -> list:
    try:
        return _wait_all(refs, progress, desc, timeout_s, unit=unit)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        raise (cause.cause if getattr(cause, "cause", None) is not None else cause) from None
