"""The quantization index: k-means tree + anisotropic 4-bit PQ scored with LUT16 + exact reordering.

Build orchestration lives here (sampling, chunking, grouping points by leaf); the
heavy loops (k-means, PQ training and encoding, LUT16 scans, reordering) run in
the C++ core on every core, with the GIL released.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from annlib import _core, _format_checks, _validate
from annlib._vectors import normalize_rows
from annlib.config import AhConfig, ReorderConfig, TreeAhConfig, TreeConfig
from annlib.errors import FormatError, InvalidTypeError, InvalidValueError
from annlib.filter import core_arguments
from annlib.index import int8_rows
from annlib.index import tree_ah_mutation as _mutation
from annlib.index.ids import IdMap
from annlib.index.params import TreeAhSearchParams
from annlib.index.protocol import Index
from annlib.index.tree_ah_layout import TreeAhLayout

KIND = "tree_ah"


def _progress(enabled: bool, total: int, desc: str):
    from tqdm.auto import tqdm  # progress bars on stderr

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, unit="step")


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """What one search reads (see :mod:`annlib.index.mutable`).

    ``arrays`` are the index's arrays by row (dead rows included) without the id sections;
    rows below ``trained_rows`` are those the partitions and codebook were trained on, of which
    there were ``trained_n``.
    """

    arrays: dict
    handle: Any
    layout: TreeAhLayout
    ids: IdMap
    trained_rows: int
    trained_n: int


def _soar_assign(data, centers, primary, soar_lambda, spill, num_threads):
    from annlib import soar  # noqa: PLC0415 - optional stage, imported when used

    return soar.secondary_assignment(data, centers, primary, soar_lambda, spill, num_threads)


class TreeAhIndex(Index):
    """A ScaNN-style partitioned index with anisotropic 4-bit PQ and reordering.

    Build it with :func:`annlib.builder` or with keywords::

        index = annlib.TreeAhIndex(data, metric="dot", num_leaves=224, num_leaves_to_search=16,
                                   dims_per_block=2, anisotropic_quantization_threshold=0.2, reorder=100)
        ids, distances = index.search_batched(queries, k=10, leaves_to_search=20)

    Search parameters (:class:`annlib.TreeAhSearchParams`): ``leaves_to_search`` and
    ``pre_reorder_num_neighbors``; their defaults are the build's ``num_leaves_to_search`` and
    ``reorder``. A search for more neighbours than ``pre_reorder_num_neighbors`` rescores ``k``
    candidates instead of refusing; candidate counts are capped at the number of points.

    The index keeps a copy of ``data`` for float32 reordering unless ``copy=False``.
    ``reorder_quantize="int8"`` keeps int8 rows instead (a quarter of the memory); with
    ``reorder_exact_num_neighbors`` it keeps both, and rescores the best of the int8 rescoring
    with the float32 rows: with ``copy=False`` over a memory-mapped array, or after a save and
    ``annlib.load_index(path, mmap=False)``, those rows stay in the file and only the few the
    second stage reads are paged in, while everything else is in memory.
    ``ids``: a 64-bit user id per point (default 0..n-1); searches return them. ``add``,
    ``upsert`` and ``delete`` (:mod:`annlib.index.mutable`) keep the trained partitions and
    codebook; deleted points are masked out of the LUT16 scan, and dropped from a partition's
    entries once a tenth of them are dead; :meth:`compact` reclaims their rows, and
    :meth:`rebalance` retrains on the live points.
    Distances follow :class:`annlib.SearchResult`: similarity for "dot" and "cosine",
    squared distance for "squared_l2".
    """

    kind = KIND
    Params = TreeAhSearchParams

    def __init__(
        self,
        data,
        metric: str = "dot",
        *,
        num_neighbors: int = 10,
        num_leaves: int | None = None,
        num_leaves_to_search: int | None = None,
        training_sample_size: int = 100_000,
        training_iterations: int = 12,
        spherical: bool | None = None,
        seed: int = 0,
        soar_lambda: float | None = None,
        spill: str = "soar",
        dims_per_block: int = 2,
        anisotropic_quantization_threshold: float | None = 0.2,
        reorder: int | None = 100,
        reorder_quantize: str = "float32",
        reorder_exact_num_neighbors: int | None = None,
        num_threads: int | None = None,
        progress: bool = False,
        copy: bool = True,
        ids=None,
    ):
        source, data = data, _validate.database(data)
        n = data.shape[0]
        id_map = IdMap.of(ids, n)
        if num_leaves is None:
            num_leaves = max(1, int(round(math.sqrt(n))))
        if num_leaves_to_search is None:
            num_leaves_to_search = max(1, num_leaves // 10)
        config = TreeAhConfig(
            metric=_validate.metric(metric),
            num_neighbors=num_neighbors,
            tree=TreeConfig(
                num_leaves=num_leaves,
                num_leaves_to_search=num_leaves_to_search,
                training_sample_size=training_sample_size,
                training_iterations=training_iterations,
                spherical=spherical,
                seed=seed,
                soar_lambda=soar_lambda,
                spill=spill,
            ),
            ah=AhConfig(dims_per_block=dims_per_block, anisotropic_quantization_threshold=anisotropic_quantization_threshold),
            reorder=ReorderConfig(reorder, reorder_quantize, reorder_exact_num_neighbors) if reorder else None,
        )
        self._init_built(_owned(data, source, config, copy), config, _validate.num_threads(num_threads), progress,
                         id_map)

    # ------------------------------------------------------------------ build

    @classmethod
    def from_config(cls, data, config: TreeAhConfig, num_threads: int | None = None, progress: bool = False,
                    copy: bool = True, ids=None):
        """Build from a :class:`TreeAhConfig` (what the builder does)."""
        if not isinstance(config, TreeAhConfig):
            raise InvalidTypeError(
                f"config must be a TreeAhConfig (TreeAhConfig.from_dict converts a dict), got {type(config).__name__}"
            )
        self = cls.__new__(cls)
        array = _owned(_validate.database(data), data, config, copy)
        self._init_built(array, config, _validate.num_threads(num_threads), progress, IdMap.of(ids, array.shape[0]))
        return self

    @classmethod
    def from_trained(cls, data, config: TreeAhConfig, centers, codebook, num_threads: int | None = None,
                     progress: bool = False, copy: bool = True):
        """Build with given partition ``centers`` (num_leaves, dim) and PQ ``codebook`` (16 * dim,),
        skipping k-means and PQ training (what shards of one sharded index share, so their scores
        compare). ``centers`` must be those of the metric's space (unit-normalised data for cosine).
        Partitions may be empty, so ``data`` may hold fewer points than ``num_leaves``.
        """
        array = _validate.database(data)
        dim = array.shape[1]
        centers = np.ascontiguousarray(centers, dtype=np.float32)
        codebook = np.ascontiguousarray(codebook, dtype=np.float32)
        if centers.shape != (config.tree.num_leaves, dim):
            raise InvalidValueError(f"centers have shape {centers.shape}, expected ({config.tree.num_leaves}, {dim})")
        if codebook.shape != (16 * dim,):
            raise InvalidValueError(f"codebook has shape {codebook.shape}, expected ({16 * dim},)")
        self = cls.__new__(cls)
        array = _owned(array, data, config, copy)
        self._init_built(array, config, _validate.num_threads(num_threads), progress, IdMap.of(None, array.shape[0]),
                         trained=(centers, codebook))
        return self

    def _init_built(self, data: np.ndarray, config: TreeAhConfig, num_threads: int, progress: bool,
                    ids: IdMap, trained: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        start = time.perf_counter()
        n, dim = data.shape
        tree, ah = config.tree, config.ah
        if trained is None and tree.num_leaves > n:
            raise InvalidValueError(f"num_leaves ({tree.num_leaves}) cannot exceed the number of points ({n})")
        if config.metric == "cosine":
            data = normalize_rows(data)
        spherical = tree.spherical if tree.spherical is not None else config.metric in ("dot", "cosine")
        rng = np.random.default_rng(tree.seed)
        arrays: dict[str, np.ndarray] = {}
        with _progress(progress, 5, "annlib build") as bar:
            if trained is None:
                sample = data[np.sort(rng.choice(n, min(n, tree.training_sample_size), replace=False))]
                centers = _core.train_kmeans(
                    sample, tree.num_leaves, tree.training_iterations, spherical, tree.seed, tree.min_partition_size,
                    num_threads,
                )
            else:
                centers, codebook = trained
            bar.update()
            primary, _ = _core.assign_to_centers(data, centers, num_threads, with_sq_dist=False)
            secondary = None
            if tree.soar_lambda is not None:
                secondary = _soar_assign(data, centers, primary, tree.soar_lambda, tree.spill, num_threads)
            bar.update()

            if trained is None:
                ah_sample_idx = np.sort(rng.choice(n, min(n, ah.training_sample_size), replace=False))
                residual_sample = data[ah_sample_idx] - centers[primary[ah_sample_idx]]
                codebook = _core.train_pq(residual_sample, ah.dims_per_block, ah.training_iterations, tree.seed,
                                          num_threads)
                del residual_sample
            bar.update()

            # Entries: (point, leaf) pairs; within a leaf, spilled copies come after primaries.
            entry_points = np.arange(n, dtype=np.int64)
            entry_leaves = primary.astype(np.int64)
            if secondary is not None:
                spilled = np.flatnonzero(secondary >= 0)
                entry_points = np.concatenate([entry_points, spilled])
                entry_leaves = np.concatenate([entry_leaves, secondary[spilled].astype(np.int64)])
            # Encoded in point order (rows read in sequence); leaf_append groups them by leaf, stably.
            # For squared L2 also the squared norm of each entry's reconstruction x~ = c + r~: L2 ranks
            # entries by 2<q, x~> - ||x~||^2 = ||q||^2 - ||q - x~||^2, the distance to the reconstruction.
            # Pairing the approximate 2<q, x~> with the exact ||x||^2 instead leaves an error 2<q, x - x~>
            # that grows with ||q|| (SIFT: ~512), where the reconstructed distance's error
            # 2<q - x, x - x~> + ||x - x~||^2 shrinks with the distance to the neighbour.
            centers = np.ascontiguousarray(centers, dtype=np.float32)
            l2 = config.metric == "squared_l2"
            codes, entry_sq_norms = _core.encode_pq_entries(
                codebook, ah.dims_per_block, data, centers, entry_points, entry_leaves, ah.threshold_or_nan,
                num_threads, l2,
            )
            bar.update()

            # Leaf-major tables: the entries appended, in this order, to an index without any.
            tables = _mutation.empty_entry_tables(tree.num_leaves, l2)
            tables.update(_core.leaf_append(tables, codes.shape[1], entry_points.astype(np.int32), entry_leaves, codes,
                                            entry_sq_norms, num_threads))
            del codes
            arrays.update(tables)
            arrays.update(
                centers=np.ascontiguousarray(centers, dtype=np.float32),
                codebook=np.ascontiguousarray(codebook, dtype=np.float32),
                primary_leaf=primary.astype(np.int32),
            )
            if secondary is not None:
                arrays["secondary_leaf"] = secondary.astype(np.int32)
            if config.metric == "squared_l2":
                point_sq_norms = _core.squared_norms(data)
                arrays["point_sq_norms"] = point_sq_norms
                arrays["center_sq_norms"] = _core.squared_norms(arrays["centers"])
            if config.reorder is not None:
                arrays.update(self._reorder_arrays(data, config.reorder, config.metric == "squared_l2"))
            bar.update()
        self._setup(config, arrays, dim, build_seconds=time.perf_counter() - start, ids=ids, trained_rows=n, trained_n=n)

    @staticmethod
    def _reorder_arrays(data: np.ndarray, reorder: ReorderConfig, l2: bool) -> dict[str, np.ndarray]:
        if reorder.quantize == "float32":
            return {"reorder_float": data}
        # For L2 the int8 stage scores with the decoded rows' norms, so its score is the distance
        # to that row, not mixed with the exact norm. With float32 rows too, point_sq_norms stay
        # theirs (exact), as every reader of reorder_float expects.
        code = int8_rows.fit(data, shaped=not l2)
        quantized, row_scale = code.encode(data)
        arrays = {"reorder_int8": quantized, "reorder_int8_inv_scale": code.inv_scale,
                  "reorder_int8_offset": code.offset}
        if row_scale is not None:
            arrays["reorder_int8_row_scale"] = row_scale
        if l2:
            norms = code.sq_norms(quantized, row_scale)
            arrays["reorder_int8_sq_norms" if reorder.two_stage else "point_sq_norms"] = norms
        if reorder.two_stage:
            arrays["reorder_float"] = data
        return arrays

    def _setup(self, config: TreeAhConfig, arrays: dict, dim: int, build_seconds: float | None, ids: IdMap,
               trained_rows: int, trained_n: int) -> None:
        self._build_config = config
        self._metric = config.metric
        self._num_neighbors = config.num_neighbors
        self._dim = dim
        self._build_seconds = build_seconds
        reorder = config.reorder
        defaults = TreeAhSearchParams(
            config.tree.num_leaves_to_search, reorder.num_neighbors if reorder else None,
            reorder.exact_num_neighbors if reorder else None,
        )
        self._check_params(defaults)
        self._defaults = defaults
        # Read on every search: kept as plain attributes.
        self._has_reorder = config.reorder is not None
        self._two_stage = config.reorder is not None and config.reorder.two_stage
        self._spilled = "secondary_leaf" in arrays
        self._overretrieve = float(config.tree.overretrieve_factor)
        self._snap = self._snapshot(arrays, ids, trained_rows, trained_n)

    def _snapshot(self, arrays: dict, ids: IdMap, trained_rows: int, trained_n: int) -> _Snapshot:
        config = self._build_config
        core_metric = "squared_l2" if config.metric == "squared_l2" else "dot"
        searched = dict(arrays)
        if ids.live is not None:
            searched["live"] = ids.live  # the scan's liveness mask (TreeAhView::live)
        handle = _core.TreeAhHandle(
            searched, core_metric, ids.rows, self._dim, config.tree.num_leaves, config.ah.dims_per_block,
            "secondary_leaf" in arrays,
        )
        return _Snapshot(arrays, handle, TreeAhLayout(config, searched, handle), ids, trained_rows, trained_n)

    # ------------------------------------------------------------------ search

    def _check_params(self, params: TreeAhSearchParams, config: TreeAhConfig | None = None) -> None:
        num_leaves = (config or self._build_config).tree.num_leaves
        if params.leaves_to_search > num_leaves:
            raise InvalidValueError(f"leaves_to_search ({params.leaves_to_search}) cannot exceed num_leaves ({num_leaves})")
        if params.pre_reorder_num_neighbors is not None and self._build_config.reorder is None:
            raise InvalidValueError("pre_reorder_num_neighbors needs an index built with reorder(...)")
        reorder = self._build_config.reorder
        if params.exact_reorder_num_neighbors is not None and (reorder is None or not reorder.two_stage):
            raise InvalidValueError(
                "exact_reorder_num_neighbors needs an index built with reorder(..., quantize='int8', "
                "exact_num_neighbors=...)"
            )

    def _pre_reorder(self, params: TreeAhSearchParams, k: int, n: int) -> int:
        """Candidates reordered: never fewer than k, never more than the index holds (bounds the buffers)."""
        return min(max(params.pre_reorder_num_neighbors or k, k), n) if self._has_reorder else 0

    def _exact_reorder(self, params: TreeAhSearchParams, k: int, pre: int) -> int:
        """Candidates the float32 rows rescore after the int8 stage: 0 (none), or in [k, pre]."""
        wanted = params.exact_reorder_num_neighbors if self._two_stage else 0
        return min(max(wanted, k), pre) if wanted else 0

    def _overretrieve_for(self, k: int, pre: int) -> float:
        factor = self._overretrieve
        if self._spilled:
            # A point has at most two entries: keeping 2k entries before de-duplication guarantees k
            # unique points whenever the probed partitions hold them.
            factor = max(factor, min(2.0, 2.0 * k / max(pre, k)))
        return factor

    def _search(self, snap: _Snapshot, queries: np.ndarray, k: int, params: TreeAhSearchParams, num_threads: int):
        if self._metric == "cosine":
            queries = normalize_rows(queries)
        pre = self._pre_reorder(params, k, snap.ids.num_live)
        return snap.handle.search(queries, k, params.leaves_to_search, pre, num_threads, self._overretrieve_for(k, pre),
                                  exact_reorder=self._exact_reorder(params, k, pre))

    def _search_filtered(self, snap: _Snapshot, queries: np.ndarray, k: int, params: TreeAhSearchParams,
                         num_threads: int, filters: list, filter_of_query: np.ndarray | None):
        # The filter is tested in the LUT16 scan where candidates form (after the score threshold),
        # and each query widens its leaves by its filter's allowed entries per leaf (see
        # TreeAhParams::leaf_allowed and annlib.index.planner).
        if self._metric == "cosine":
            queries = normalize_rows(queries)
        pre = self._pre_reorder(params, k, snap.ids.num_live)
        leaf_allowed = np.stack([_leaf_allowed(snap, r) for r in filters])
        if (leaf_allowed == np.diff(snap.arrays["leaf_offsets"])).all():
            leaf_allowed = None  # every filter allows (about) every entry: no widening, the plain leaf order
        return snap.handle.search(queries, k, params.leaves_to_search, pre, num_threads, self._overretrieve_for(k, pre),
                                  leaf_allowed=leaf_allowed, exact_reorder=self._exact_reorder(params, k, pre),
                                  **core_arguments(filters, snap.ids, filter_of_query))

    def _filter_leaf_counts(self, snap: _Snapshot, resolved) -> np.ndarray:
        """Entries of each leaf a resolved filter allows (the planner's view of the widened scan)."""
        return _leaf_allowed(snap, resolved)

    def _exact_vectors(self, snap: _Snapshot, rows: np.ndarray) -> np.ndarray | None:
        arrays = snap.arrays
        if "reorder_float" in arrays:
            return np.ascontiguousarray(arrays["reorder_float"][rows])
        if "reorder_int8" in arrays:  # the rows reordering scores (int8_rows)
            scale = arrays.get("reorder_int8_row_scale")
            return int8_rows.Code.of_arrays(arrays, False).decode(arrays["reorder_int8"][rows],
                                                                  None if scale is None else scale[rows])
        return None

    @property
    def _arrays(self) -> dict:
        """The current snapshot's arrays by row (tests and tools read them; never written)."""
        return self._snap.arrays

    @property
    def last_search_counters(self) -> dict:
        """Work of the last search call: ``entries_scored`` (LUT16), ``candidates_reordered``,
        ``leaves_scanned`` (a filtered search widens its leaves; ``last_filter_plan`` has its route)
        and ``filter_checks`` (entries past the score threshold that the filter was asked about)."""
        return dict(self._snap.handle.last_counters())

    @property
    def layout(self) -> TreeAhLayout:
        """Read-only view of the partitions, assignments and stage-wise scoring (the autotuner's seam).

        Of the current snapshot: rows, dead ones included (see ``ids`` and ``health()``)."""
        return self._snap.layout

    # ------------------------------------------------------------------ writes (see annlib.index.mutable)

    def _appended(self, snap: _Snapshot, vectors: np.ndarray, ids: np.ndarray) -> _Snapshot:
        if self._metric == "cosine":
            vectors = normalize_rows(vectors)
        arrays = _mutation.appended(snap.arrays, self._build_config, vectors, _validate.num_threads(None))
        return self._snapshot(arrays, snap.ids.appended(ids), snap.trained_rows, snap.trained_n)

    def _deleted(self, snap: _Snapshot, rows: np.ndarray) -> _Snapshot:
        ids = snap.ids.killed(rows)
        arrays = _mutation.pruned(snap.arrays, self._build_config, self._dim, ids.live, rows,
                                  _validate.num_threads(None))
        return self._snapshot(arrays, ids, snap.trained_rows, snap.trained_n)

    def _compacted(self, snap: _Snapshot) -> _Snapshot:
        ids, kept = snap.ids.compacted()
        arrays = _mutation.compacted(snap.arrays, self._build_config, self._dim, kept)
        trained_rows = int(np.count_nonzero(kept < snap.trained_rows))  # rows keep their order
        return self._snapshot(arrays, ids, trained_rows, snap.trained_n)

    def _rebalanced(self, snap: _Snapshot, num_leaves: int | None = None, num_threads: int | None = None) -> _Snapshot:
        vectors = snap.arrays.get("reorder_float")
        if vectors is None:
            raise InvalidValueError("rebalance needs the float32 vectors: build the index with float32 reordering")
        ids, kept = snap.ids.compacted()
        config = self._current_config()
        if num_leaves is not None:
            config = dataclasses.replace(config, tree=dataclasses.replace(config.tree, num_leaves=num_leaves))
        fresh = TreeAhIndex.from_config(np.ascontiguousarray(vectors[kept]), config, num_threads=num_threads)
        self._build_config = fresh._build_config
        return self._snapshot(fresh._snap.arrays, ids, ids.rows, ids.rows)

    def _health(self, snap: _Snapshot) -> dict:
        arrays, ids = snap.arrays, snap.ids
        num_leaves = self._build_config.tree.num_leaves
        primary = np.asarray(arrays["primary_leaf"], dtype=np.int64)
        live_rows = ids.live_rows()
        trained = live_rows[live_rows < snap.trained_rows]
        added = live_rows[live_rows >= snap.trained_rows]

        def imbalance(rows):  # largest partition over the mean, by primary assignment
            sizes = np.bincount(primary[rows], minlength=num_leaves)
            return float(sizes.max()) / float(sizes.mean()) if len(rows) else None

        now, at_build = imbalance(live_rows), imbalance(trained)
        rng = np.random.default_rng(0)
        sample = 4096
        trained = np.sort(rng.choice(trained, min(sample, len(trained)), replace=False)) if len(trained) else trained
        added = added[-sample:]  # the most recent additions
        build_error = _mutation.relative_quantization_error(arrays, self._build_config, trained)
        added_error = _mutation.relative_quantization_error(arrays, self._build_config, added)
        dead_entries = _mutation.dead_entries(arrays, ids.live)
        return {
            "trained_n": snap.trained_n,
            # what the scan still reads of deleted points (pruned per leaf as deletes go, gone after compact)
            "dead_entries": dead_entries,
            "dead_entry_fraction": dead_entries / len(arrays["entry_ids"]) if len(arrays["entry_ids"]) else 0.0,
            "growth_since_build": ids.num_live / snap.trained_n if snap.trained_n else None,
            "partition_imbalance_build": at_build,
            "partition_imbalance_now": now,
            "partition_imbalance": now / at_build if now is not None and at_build else None,
            "quantization_error_build": build_error,
            "quantization_error_added": added_error,
            "quantization_error_ratio": (added_error / build_error
                                         if added_error is not None and build_error else None),
        }

    # ------------------------------------------------------------------ inspection

    def _current_config(self) -> TreeAhConfig:
        c, d = self._build_config, self._defaults
        tree = dataclasses.replace(c.tree, num_leaves_to_search=d.leaves_to_search)
        reorder = c.reorder
        if reorder is not None and d.pre_reorder_num_neighbors is not None:
            reorder = dataclasses.replace(reorder, num_neighbors=d.pre_reorder_num_neighbors)
        if reorder is not None and reorder.two_stage and d.exact_reorder_num_neighbors:
            reorder = dataclasses.replace(reorder, exact_num_neighbors=d.exact_reorder_num_neighbors)
        return dataclasses.replace(c, tree=tree, reorder=reorder)

    @property
    def config(self) -> dict:
        """Every build parameter, with the current search defaults, as a plain dict."""
        return self._current_config().to_dict()

    def stats(self) -> dict:
        """Sizes of the partitions and of each part of the index in bytes."""
        snap = self._snap
        offsets = snap.arrays["leaf_offsets"]
        sizes = np.diff(offsets)
        entries = int(offsets[-1])
        entry_leaves = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
        spilled = int(np.count_nonzero(snap.arrays["primary_leaf"][snap.arrays["entry_ids"]] != entry_leaves))
        return {
            "n": snap.ids.num_live,
            "dim": self._dim,
            "rows": snap.ids.rows,
            "deleted": snap.ids.num_dead,
            "num_leaves": int(len(sizes)),
            "entries": entries,
            "spilled_points": spilled,
            # entries of deleted points a search still reads (and masks): see tree_ah_mutation.pruned
            "dead_entries": _mutation.dead_entries(snap.arrays, snap.ids.live),
            "partition_size": {
                "min": int(sizes.min()),
                "mean": float(sizes.mean()),
                "max": int(sizes.max()),
                "empty": int((sizes == 0).sum()),
            },
            **self._memory({**snap.arrays, "ids": snap.ids.row_ids}),
            # allocated beyond total_bytes: spare rows behind the per-row arrays, for later adds
            "spare_bytes": _mutation.spare_bytes(snap.arrays),
            "build_seconds": self._build_seconds,
        }

    def _repr_params(self) -> str:
        c, d = self._build_config, self._defaults
        parts = [f"num_leaves={c.tree.num_leaves}", f"leaves_to_search={d.leaves_to_search}"]
        if c.reorder is not None:
            parts.append(f"pre_reorder_num_neighbors={d.pre_reorder_num_neighbors} ({c.reorder.quantize})")
            if c.reorder.two_stage:
                parts.append(f"exact_reorder_num_neighbors={d.exact_reorder_num_neighbors} (float32)")
        if c.tree.soar_lambda is not None:
            parts.append(f"soar_lambda={c.tree.soar_lambda}")
        return ", ".join(parts)

    def _stored_vectors(self, snap: _Snapshot) -> np.ndarray | None:
        return snap.arrays.get("reorder_float")

    # ------------------------------------------------------------------ persistence

    def _state(self) -> tuple[dict, dict]:
        snap = self._snap
        config = {"index": self.config, "n": snap.ids.rows, "dim": self._dim, "build_seconds": self._build_seconds}
        sections = snap.ids.sections()
        if sections or snap.trained_rows != snap.ids.rows or snap.trained_n != snap.ids.rows:
            config.update(next_id=snap.ids.next_id, trained_rows=snap.trained_rows, trained_n=snap.trained_n)
        return config, {**snap.arrays, **sections}

    @classmethod
    def _sections_on_disk(cls, config) -> tuple[str, ...]:
        # Two-stage reordering reads the float32 rows only for its last few candidates.
        index = config.get("index") if isinstance(config, dict) else None
        reorder = index.get("reorder") if isinstance(index, dict) else None
        if isinstance(reorder, dict) and reorder.get("exact_num_neighbors") is not None:
            return ("reorder_float",)
        return ()

    @classmethod
    def _from_state(cls, config: dict, arrays: dict, source: str) -> TreeAhIndex:
        index_config, n, dim = _format_checks.tree_ah_header(source, config)
        try:
            trained_rows = config.get("trained_rows", n)
            trained_n = config.get("trained_n", n)
            if (type(trained_rows) is not int or type(trained_n) is not int or not 0 <= trained_rows <= n
                    or trained_n < 0):
                raise InvalidValueError(f"trained_rows {trained_rows!r} / trained_n {trained_n!r} for {n} rows")
        except ValueError as exc:
            raise FormatError(f"{source}: invalid index configuration ({exc})") from None
        core = {name: a for name, a in arrays.items() if name not in ("ids", "live")}
        # The core sections first: they prove n against the arrays before the id map is sized by it.
        _format_checks.check_tree_ah_arrays(source, index_config, core, n, dim, arrays.get("live"))
        ids = IdMap.from_sections(arrays, n, config.get("next_id"), source)
        arrays = core
        self = cls.__new__(cls)
        try:
            self._setup(index_config, arrays, dim, config.get("build_seconds"), ids, trained_rows, trained_n)
        except ValueError as exc:
            raise FormatError(f"{source}: invalid index configuration ({exc})") from None
        return self


def _leaf_allowed(snap: _Snapshot, resolved) -> np.ndarray:
    """Entries of each leaf the filter allows (int64, num_leaves): counted for id lists and bitmaps,
    the sampled fraction of each leaf's entries for a predicate (cached with the resolution)."""
    found = resolved.extras.get("leaf_allowed")
    if found is not None and found[0] is snap:
        return found[1]
    offsets = snap.arrays["leaf_offsets"]
    if resolved.row_mask is not None:
        cumulative = np.concatenate([[0], np.cumsum(resolved.row_mask[snap.arrays["entry_ids"]], dtype=np.int64)])
        counts = cumulative[offsets[1:]] - cumulative[offsets[:-1]]
    else:
        sizes = np.diff(offsets)
        fraction = resolved.allowed / max(snap.ids.num_live, 1)
        counts = np.ceil(sizes * fraction).astype(np.int64)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    resolved.extras["leaf_allowed"] = (snap, counts)
    return counts


def _owned(data: np.ndarray, source, config: TreeAhConfig, copy: bool) -> np.ndarray:
    """Copy the caller's array only when the index would keep it (float32 reordering; cosine copies anyway).
    The copy has spare rows for adds (tree_ah_mutation.reserved_copy: not resident until written)."""
    keeps = (config.reorder is not None and (config.reorder.quantize == "float32" or config.reorder.two_stage)
             and config.metric != "cosine")
    if keeps and copy and isinstance(source, np.ndarray) and np.may_share_memory(data, source):
        return _mutation.reserved_copy(data)
    return _validate.owned(data, source, copy) if keeps else data

