"""What one Ray actor runs: the shards it holds and the searches over them.

Plain Python, no Ray import: :mod:`annlib.distributed.sharded` wraps :class:`ShardHost` in
``ray.remote``. An actor may hold several shards (a saved index loaded onto fewer actors than
wrote it); each shard is an annlib index whose points carry their global user ids (``offset +
row`` for a shard of contiguous rows, the ids given at build for a shard of whole partitions or
of a Dataset with an ids column, the given ids for later adds), so every id in and out of a
host, filters included, is global: none is translated. A shard's rows come from an array, a
.npy path or pieces of files and Dataset blocks (:mod:`annlib.distributed._sources`), read here.

The two-phase search (``ah_candidates`` then ``rescore``) reproduces, across shards, the one
candidate list a single tree-AH index would reorder. It reads two arrays a tree index keeps
(the float32 reorder rows and, for squared L2, their squared norms); they are a seam to add to
:class:`annlib.TreeAhLayout` when the layout grows (only ``reorder_vectors`` is there now).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from annlib import _core
from annlib._vectors import normalize_rows
from annlib.distributed import _filters, _sources
from annlib.distributed._merge import merge_top_k
from annlib.index.ids import IdMap


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def build_shard(kind: str, data, metric: str, spec: dict, num_threads: int | None):
    """One shard's index. ``spec`` for tree_ah: {"config": dict, "centers", "codebook"}; for
    brute_force: {"num_neighbors"}."""
    if kind == "tree_ah":
        from annlib.config import TreeAhConfig  # noqa: PLC0415
        from annlib.index.tree_ah import TreeAhIndex  # noqa: PLC0415

        config = TreeAhConfig.from_dict(spec["config"])
        return TreeAhIndex.from_trained(data, config, spec["centers"], spec["codebook"], num_threads=num_threads)
    if kind == "brute_force":
        from annlib.index.brute_force import BruteForce  # noqa: PLC0415

        return BruteForce(data, metric, spec["num_neighbors"])
    raise ValueError(f"sharding supports the kinds 'tree_ah' and 'brute_force', not {kind!r}")


def _read_rows(source) -> tuple[np.ndarray, np.ndarray | None]:
    """A shard's rows and, when its source carries them, their user ids: an array, the path of
    a .npy file, or a list of pieces (:mod:`annlib.distributed._sources`), read here, where the
    shard lives."""
    if isinstance(source, (str, os.PathLike)):
        return np.load(os.fspath(source), mmap_mode="r"), None
    if isinstance(source, list):
        return _sources.read_all(source)
    return source, None


def _global_ids(index, offset: int) -> None:
    """Give a shard built (or saved before shards kept user ids) with rows 0..n-1 the global ids
    ``offset + row``."""
    if offset:
        index._set_ids(IdMap.of(np.arange(offset, offset + index.n, dtype=np.int64), index.n))


class ShardHost:
    """The shards of one actor: {shard_id: index}, each holding its points under global ids."""

    def __init__(self, num_threads: int | None = None):
        self._shards: dict[int, object] = {}
        self._num_threads = num_threads

    def ready(self) -> list[int]:
        return sorted(self._shards)

    # ------------------------------------------------------------------ building and loading

    def build(self, shard_id: int, offset: int, rows, kind: str, metric: str, spec: dict, ids=None) -> dict:
        """Build shard ``shard_id`` from ``rows`` (see :func:`_read_rows`); its points get the
        ids ``ids``, else those the source carries, else ``offset + row``."""
        vectors, carried = _read_rows(rows)
        ids = carried if ids is None else ids
        index = build_shard(kind, vectors, metric, spec, self._num_threads)
        if ids is None:
            _global_ids(index, offset)
        else:
            index._set_ids(IdMap.of(np.asarray(ids, dtype=np.int64), index.n))
        self._shards[shard_id] = index
        return {"shard": shard_id, "n": index.n}

    def load(self, shard_id: int, offset: int, path: str, sha256: str | None, global_ids: bool = False) -> int:
        """``global_ids``: the file holds the global ids (saved by this version); else (an older
        save) its rows 0..n-1 are given the ids ``offset + row``."""
        from annlib.index import load_index  # noqa: PLC0415

        if sha256 is not None and file_sha256(path) != sha256:
            raise ValueError(f"shard {shard_id}: {path} does not match the manifest's checksum")
        index = load_index(path, mmap=True)
        if not global_ids:
            _global_ids(index, offset)
        self._shards[shard_id] = index
        return index.n

    def save(self, shard_id: int, path: str) -> dict:
        self._shards[shard_id].save(path)
        return {"sha256": file_sha256(path), "bytes": os.path.getsize(path)}

    def stats(self) -> dict:
        return {shard_id: index.stats() for shard_id, index in self._shards.items()}

    def set_search_defaults(self, params: dict) -> None:
        for index in self._shards.values():
            index.set_search_defaults(**params)

    # ------------------------------------------------------------------ writes (global user ids)

    def live(self) -> dict:
        """{shard_id: live points}."""
        return {shard_id: index.n for shard_id, index in self._shards.items()}

    def next_id(self) -> int:
        """One past the largest id any of these shards ever held."""
        return max((index._snap.ids.next_id for index in self._shards.values()), default=0)

    def add(self, shard_id: int, vectors: np.ndarray, ids: np.ndarray) -> int:
        self._shards[shard_id].add(vectors, ids)
        return self._shards[shard_id].n

    def delete(self, ids: np.ndarray) -> dict:
        """Delete whichever of ``ids`` these shards hold: {shard_id: points deleted}."""
        return {shard_id: index.delete(ids, missing="ignore") for shard_id, index in self._shards.items()}

    def upsert(self, shard_id: int, vectors: np.ndarray, ids: np.ndarray) -> int:
        self._shards[shard_id].upsert(ids, vectors)
        return self._shards[shard_id].n

    def owners(self, ids: np.ndarray) -> np.ndarray:
        """The shard holding each of ``ids`` live, -1 where none of these shards does."""
        owner = np.full(len(ids), -1, dtype=np.int64)
        for shard_id, index in self._shards.items():
            owner[index._snap.ids.rows_of(ids) >= 0] = shard_id
        return owner

    def compact(self) -> dict:
        """Compact every shard: {shard_id: whether it had dead rows to reclaim}."""
        out = {}
        for shard_id, index in self._shards.items():
            out[shard_id] = bool(index._snap.ids.num_dead)
            index.compact()
        return out

    def health(self) -> dict:
        return {shard_id: index.health() for shard_id, index in self._shards.items()}

    def leaf_masks(self) -> dict:
        """{shard_id: (num_leaves,) bool, which partitions hold a live entry of the shard}
        (tree-AH; primary and spilled entries alike): what routing sends queries by."""
        out = {}
        for shard_id, index in self._shards.items():
            snap = index._snap
            layout = snap.layout
            live = snap.ids.live_rows()
            mask = np.zeros(layout.num_leaves, dtype=bool)
            mask[np.asarray(layout.primary_leaf)[live]] = True
            if layout.secondary_leaf is not None:
                secondary = np.asarray(layout.secondary_leaf)[live]
                mask[secondary[secondary >= 0]] = True
            out[shard_id] = mask
        return out

    def sample_vectors(self, fraction: float, seed: int) -> np.ndarray:
        """About ``fraction`` of the live stored vectors (unit-normalised for cosine)."""
        rng = np.random.default_rng(seed)
        parts = []
        for index in self._shards.values():
            ids = index.ids
            picked = ids[rng.random(len(ids)) < fraction]
            if len(picked):
                parts.append(index.get_vectors(picked))
        return np.concatenate(parts) if parts else np.empty((0, 0), dtype=np.float32)

    def live_vectors(self, shard_id: int, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, ids) of the live points of a shard (those whose id is in ``keep`` when given)."""
        index = self._shards[shard_id]
        ids = index.ids
        if keep is not None:
            ids = ids[np.isin(ids, keep)]
        return index.get_vectors(ids), ids

    def live_leaves(self, shard_id: int, centers: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, primary partition under ``centers``) of the live points of a shard."""
        from annlib.distributed._routing import nearest_leaf  # noqa: PLC0415

        vectors, ids = self.live_vectors(shard_id)
        return ids, nearest_leaf(vectors, centers, metric)

    def rebuild(self, shard_id: int, spec: dict) -> int:
        """Rebuild a tree-AH shard from its live stored vectors with new centers and codebook."""
        vectors, ids = self.live_vectors(shard_id)
        return self.build_from_parts(shard_id, "tree_ah", self._shards[shard_id].metric, spec, (vectors, ids))

    def build_from_parts(self, shard_id: int, kind: str, metric: str, spec: dict, *parts) -> int:
        """(Re)build a shard from (vectors, ids) parts, e.g. points other shards handed over."""
        vectors = np.concatenate([v for v, _ in parts])
        ids = np.concatenate([i for _, i in parts])
        index = build_shard(kind, vectors, metric, spec, self._num_threads)
        index._set_ids(IdMap.of(ids, index.n))
        self._shards[shard_id] = index
        return index.n

    # ------------------------------------------------------------------ search

    def search(self, queries: np.ndarray, k: int, num_threads: int, params: dict, metric: str,
               filter_wire=None, filter_route: str = "auto"):
        """Each shard's full search (its own reordering), merged; global ids. ``filter_wire``:
        a filter as :func:`annlib.distributed._filters.to_wire` sends it, applied by every shard's
        own filtered search (its planner, its fallback to exact when short of ``k``)."""
        parts = []
        for index in self._shards.values():
            if filter_wire is None:
                ids, distances = index.search_batched(queries, k, num_threads=num_threads, **params)
            else:
                value = _filters.from_wire(*filter_wire, index._snap.ids.next_id)
                ids, distances = index.search_batched(queries, k, num_threads=num_threads, filter=value,
                                                      filter_route=filter_route, **params)
            parts.append((ids, distances))
        return merge_top_k(parts, k, metric)

    def filter_counts(self, specs: list, num_threads: int) -> dict:
        """{shard_id: figures} of the distinct filters ``specs`` (as :func:`_filters.to_wire`
        sends them) over each tree-AH shard: ``leaf_allowed`` (filters, num_leaves) entries each
        allows per leaf, ``allowed`` (filters,) points, ``estimated`` (a predicate's sample),
        ``passes_all``, and the shard's ``leaf_sizes`` (entries per leaf) and ``live`` points.
        Summed over the shards, they are what one index over all of them plans a filtered search by."""
        from annlib.index.tree_ah import _leaf_allowed  # noqa: PLC0415

        out = {}
        for shard_id, index in self._shards.items():
            snap = index._snap
            resolved = _resolved(specs, snap, num_threads)
            out[shard_id] = {
                "leaf_allowed": np.stack([_leaf_allowed(snap, r) for r in resolved]),
                "allowed": np.array([r.allowed for r in resolved], dtype=np.float64),
                "estimated": np.array([r.estimated for r in resolved], dtype=bool),
                "passes_all": np.array([r.passes_all for r in resolved], dtype=bool),
                "leaf_sizes": np.diff(snap.arrays["leaf_offsets"]).astype(np.int64),
                "live": int(snap.ids.num_live),
            }
        return out

    def route_costs(self, mode: str, num_threads: int, k: int):
        """The filtered-search planner's measured figures of one shard (cached on it): a sharded
        index prices its routes with them, at the whole index's counts."""
        from annlib.index import planner  # noqa: PLC0415

        index = next(iter(self._shards.values()))
        return planner.route_costs(index, index._snap, mode, num_threads, k)

    def ah_candidates(self, queries: np.ndarray, depth: int, leaves_to_search: int, num_threads: int, metric: str,
                      specs: list | None = None, of_query: np.ndarray | None = None,
                      leaf_allowed: np.ndarray | None = None, leaf_sizes: np.ndarray | None = None):
        """Phase 1 of an exact-merge search: each shard's ``depth`` best AH candidates, merged,
        as (global ids, ranking scores), scores larger-better.

        The same (score, id) order a single index's candidate selection uses, restricted to
        these shards' rows: so the driver's merge is the single index's candidate list. Raw
        scores, not distances: |q|^2 - score rounds distinct scores to equal distances.
        With a filter (``specs`` and ``of_query`` as :func:`_filters.to_wire` sends them) each
        shard walks its leaves by the whole index's ``leaf_allowed`` and ``leaf_sizes``, so it
        scans the leaves one index would, and only allowed points become candidates.
        """
        from annlib.filter import core_arguments  # noqa: PLC0415

        parts = []
        for index in self._shards.values():
            snap = index._snap  # one snapshot: its rows, ids and liveness agree
            d = min(depth, snap.ids.num_live)
            if d == 0:
                continue
            core_filters = {}
            if specs is not None:
                resolved = _resolved(specs, snap, num_threads)
                core_filters = core_arguments(resolved, snap.ids, of_query)
                if leaf_allowed is not None:
                    core_filters.update(leaf_allowed=leaf_allowed, leaf_sizes=leaf_sizes)
            rows, scores = snap.layout.ah_candidate_scores(queries, d, leaves_to_search, num_threads, **core_filters)
            parts.append((snap.ids.to_user(rows), scores))
        if not parts:
            nq = queries.shape[0]
            return np.full((nq, depth), -1, dtype=np.int64), np.full((nq, depth), -np.inf, dtype=np.float32)
        return merge_top_k(parts, depth, metric, larger_better=True)

    def rescore(self, queries: np.ndarray, candidates: np.ndarray, k: int, metric: str, rows: np.ndarray | None = None):
        """Phase 2: exact scores of the given global candidate ids this host holds; the best
        ``k`` per query as (ids, scores) with scores larger-better (2<q,x> - |x|^2 for L2).
        ``rows``: the queries (of those phase 1 got) the candidate rows belong to; None: all.
        The queries are phase 1's object again, so they cross the network once.

        Scores come from the core's own dot kernel, the one a search reorders with.
        """
        if rows is not None:
            queries = queries[rows]
        prepared = normalize_rows(queries) if metric == "cosine" else queries
        isa = _core.active_isa()
        nq = queries.shape[0]
        parts = []
        for index in self._shards.values():
            snap = index._snap
            vectors = snap.layout.reorder_vectors
            sq_norms = snap.layout.point_sq_norms if metric == "squared_l2" else None
            local = snap.ids.rows_of(candidates.ravel()).reshape(candidates.shape)
            mine = (candidates >= 0) & (local >= 0)
            width = max(1, int(mine.sum(axis=1).max(initial=0)))
            ids = np.full((nq, width), -1, dtype=np.int64)
            scores = np.full((nq, width), -np.inf, dtype=np.float32)
            for q in np.flatnonzero(mine.any(axis=1)):
                rows = local[q][mine[q]]
                dots = _core.dot_block(prepared[q : q + 1], np.ascontiguousarray(vectors[rows]), isa)[0]
                if sq_norms is not None:
                    dots = np.float32(2.0) * dots - sq_norms[rows]
                ids[q, : len(rows)] = candidates[q][mine[q]]
                scores[q, : len(rows)] = dots
            parts.append((ids, scores))
        return merge_top_k(parts, k, metric, larger_better=True)


def _resolved(specs: list, snap, num_threads: int) -> list:
    """The distinct filters of ``specs`` resolved over one shard's snapshot (None: every point)."""
    from annlib.filter import Resolved  # noqa: PLC0415

    filters = _filters.from_wire(specs, np.arange(len(specs)), snap.ids.next_id)
    return [Resolved.everything(snap.ids) if f is None else f.resolve(snap, num_threads) for f in filters]
