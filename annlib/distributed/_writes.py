"""Writes through a sharded index: add, upsert, delete, compact, rebalance, health.

Routing by user id: an id that a shard holds is written on that shard (``upsert`` replaces it
there, ``delete`` removes it there); a new point goes to shard ``id % num_shards`` when shards
hold rows, or to the owner of its partition when they hold whole partitions (so routed searches
keep finding it on few shards). Writes to several shards are not one atomic step: a concurrent
search may see some shards written and others not, as it would see one of two single indexes.

Tree-AH shards share their centers and codebook, so ``rebalance`` retrains them once, on a
sample of the live points of every shard, and rebuilds every shard with them (shards by
partition are also placed again, points moving between actors through the object store, not
the driver). A shard rebuilt or written since the last ``save`` cannot be restored from its
file: :class:`ShardError` says so if its actor dies before the next save.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import ray

from annlib import _validate
from annlib.distributed import _routing
from annlib.index import mutable as _mutable
from annlib.index.ids import user_ids


class ShardWrites:
    """The write half of :class:`annlib.distributed.ShardedIndex` (its state, its ``_gather``)."""

    def _owner_slots(self) -> dict[int, int]:
        return {s: slot for slot, shards in self._assignment.items() for s in shards}

    def _checked_vectors(self, vectors) -> np.ndarray:
        array = _validate.database(vectors, "vectors")
        if array.shape[1] != self._dim:
            raise ValueError(f"vectors must have shape (m, {self._dim}), got {array.shape}")
        return array

    def _home_of_new(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The shard a new point goes to."""
        if self._leaf_owner is not None:
            return self._leaf_owner[_routing.nearest_leaf(vectors, self._shared["centers"], self._metric)].astype(
                np.int64)
        return np.mod(ids, self.num_shards)

    def _holders(self, ids: np.ndarray) -> np.ndarray:
        """The shard holding each id live, -1 for ids no shard holds."""
        ids_ref = ray.put(ids)
        return np.max(np.stack(self._gather(lambda slot: self._actors[slot].owners.remote(ids_ref))), axis=0)

    def _write(self, method: str, target: np.ndarray, vectors: np.ndarray, ids: np.ndarray) -> None:
        owner = self._owner_slots()
        refs, slots = [], set()
        for s in np.unique(target).tolist():
            picked = target == s
            refs.append(getattr(self._actors[owner[s]], method).remote(s, vectors[picked], ids[picked]))
            self._dirty.add(s)
            slots.add(owner[s])
        ray.get(refs, timeout=self.timeout_s)
        self._refresh_leaves(slots)

    def add(self, vectors, ids=None) -> np.ndarray:
        """Add points; returns their ids (``ids``, or fresh ones after the largest id any shard has
        used). A new point goes to shard ``id % num_shards`` (shards by rows) or to the shard
        owning its partition (shards by partition). An id already in the index is a KeyError
        naming it; nothing is added then.

        A shard written to is not restartable from its files until the next :meth:`save`.
        """
        array = self._checked_vectors(vectors)
        if ids is None:
            start = max(self._gather(lambda slot: self._actors[slot].next_id.remote()))
            new_ids = np.arange(start, start + len(array), dtype=np.int64)
        else:
            new_ids = user_ids(ids, len(array))
            if (new_ids == -1).any():
                raise ValueError("ids must not hold -1: it is the id of an empty result slot")
            if len(np.unique(new_ids)) != len(new_ids):
                raise ValueError("ids given to add must be unique")
            held = self._holders(new_ids) >= 0
            if held.any():
                raise KeyError(f"ids already in the index: {new_ids[held][:5].tolist()}")
        self._write("add", self._home_of_new(array, new_ids), array, new_ids)
        self._n += len(new_ids)
        return new_ids

    def upsert(self, ids, vectors) -> None:
        """Replace the vectors of ``ids`` the index holds (on the shard holding each) and add the
        others (routed as :meth:`add` routes)."""
        array = self._checked_vectors(vectors)
        new_ids = user_ids(ids, len(array))
        if (new_ids == -1).any():
            raise ValueError("ids must not hold -1: it is the id of an empty result slot")
        if len(np.unique(new_ids)) != len(new_ids):
            raise ValueError("ids given to upsert must be unique")
        target = self._holders(new_ids)
        fresh = target < 0
        if fresh.any():
            target[fresh] = self._home_of_new(array[fresh], new_ids[fresh])
        self._write("upsert", target, array, new_ids)
        self._n += int(fresh.sum())

    def delete(self, ids, missing: str = "raise") -> int:
        """Delete the points ``ids`` from whichever shards hold them; returns how many were deleted.
        ``missing="raise"``: an id in no shard is a KeyError naming it and nothing is deleted;
        ``"ignore"``: such ids are skipped."""
        if missing not in ("raise", "ignore"):
            raise ValueError(f"missing must be 'raise' or 'ignore', got {missing!r}")
        wanted = np.unique(user_ids(ids))
        if missing == "raise":
            held = self._holders(wanted) >= 0
            if not held.all():
                raise KeyError(f"ids not in the index: {wanted[~held][:5].tolist()}")
        ids_ref = ray.put(wanted)
        deleted = 0
        for per_shard in self._gather(lambda slot: self._actors[slot].delete.remote(ids_ref)):
            for s, count in per_shard.items():
                if count:
                    self._dirty.add(s)
                    deleted += count
        self._n -= deleted
        return deleted

    def compact(self) -> None:
        """Reclaim the slots of deleted points on every shard. The shards answer the same searches
        before and after, so a shard compacted since its save is still restored from its file."""
        self._gather(lambda slot: self._actors[slot].compact.remote())
        self._refresh_leaves()

    def health(self) -> dict:
        """The single-index :meth:`annlib.TreeAhIndex.health` figures summed over the shards, each
        shard's own report under ``shards``, ``shard_imbalance`` (largest shard's live points over
        the mean) and ``advice``: a shard's advice is the index's (``compact`` and ``rebalance``
        act on every shard); shards by partition also advise ``rebalance`` when the shards drifted
        apart (``shard_imbalance`` above :data:`annlib.index.mutable.REBALANCE_IMBALANCE`)."""
        per_shard: dict = {}
        for reports in self._gather(lambda slot: self._actors[slot].health.remote()):
            per_shard.update(reports)
        shards = [per_shard[s] for s in range(self.num_shards)]
        live = np.array([h["n"] for h in shards], dtype=np.float64)
        rows = int(sum(h["rows"] for h in shards))
        deleted = int(sum(h["deleted"] for h in shards))
        imbalance = float(live.max() / live.mean()) if live.mean() > 0 else None
        advice = sorted({a for h in shards for a in h["advice"]})
        if (self._shard_by == "partition" and imbalance is not None and imbalance > _mutable.REBALANCE_IMBALANCE
                and "rebalance" not in advice):
            advice.append("rebalance")
        return {"n": int(live.sum()), "rows": rows, "deleted": deleted,
                "deleted_fraction": deleted / rows if rows else 0.0, "shard_imbalance": imbalance,
                "shards": shards, "advice": advice}

    def rebalance(self, num_leaves: int | None = None, training_sample_size: int | None = None, seed: int = 0) -> None:
        """Retrain the shared centers and codebook on a sample of the live points of all shards
        (``training_sample_size``, default the build's) and rebuild every shard with them,
        dropping deleted points; shards by partition are placed again. Brute-force shards only
        compact. Needs tree-AH shards built with float32 reordering (the stored vectors)."""
        if self._shard_kind != "tree_ah":
            self.compact()
            return
        from annlib.config import TreeAhConfig  # noqa: PLC0415
        from annlib.index.tree_ah import TreeAhIndex  # noqa: PLC0415

        if self._shard_config["reorder"] is None:
            raise ValueError("rebalance needs the float32 vectors: build the shards with float32 reordering")
        config = TreeAhConfig.from_dict(self._shard_config)
        if num_leaves is not None:
            num_leaves = _validate.positive_int(num_leaves, "num_leaves")
            config = dataclasses.replace(config, tree=dataclasses.replace(
                config.tree, num_leaves=num_leaves,
                num_leaves_to_search=min(config.tree.num_leaves_to_search, num_leaves)))
        size = config.tree.training_sample_size if training_sample_size is None else training_sample_size
        size = _validate.positive_int(size, "training_sample_size")
        fraction = min(1.0, size / max(1, self._n))
        sample = [v for v in self._gather(lambda slot: self._actors[slot].sample_vectors.remote(fraction, seed + slot))
                  if v.size]
        trainer = TreeAhIndex.from_config(np.concatenate(sample), config, num_threads=self._actor_options[1])
        spec = {"config": TreeAhConfig.from_dict(trainer.config).to_dict(),
                "centers": np.array(trainer.layout.centers), "codebook": np.array(trainer.layout.codebook)}
        spec_ref = ray.put(spec)
        owner = self._owner_slots()
        if self._leaf_owner is None:
            refs = [self._actors[owner[s]].rebuild.remote(s, spec_ref) for s in range(self.num_shards)]
            sizes = ray.get(refs, timeout=self.timeout_s)
        else:
            leaf_owner, sizes = self._replace_partitions(spec, spec_ref, owner, seed)
            self._leaf_owner = leaf_owner
        self._ranges = list(zip(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist(),
                                [int(n) for n in sizes]))
        self._shared = {"centers": spec["centers"], "codebook": spec["codebook"]}
        self._shard_config = spec["config"]
        if num_leaves is not None:
            self._defaults = dataclasses.replace(self._defaults, leaves_to_search=min(
                self._defaults.leaves_to_search, num_leaves))
        values = dataclasses.asdict(self._defaults)
        self._gather(lambda slot: self._actors[slot].set_search_defaults.remote(values))
        self._dirty = set(range(self.num_shards))
        self._leaf_shards = None
        self._refresh_leaves()

    def _replace_partitions(self, spec, spec_ref, owner, seed):
        """Place the new partitions on the shards and move every live point to its new shard."""
        centers_ref = ray.put(spec["centers"])
        leaves = self._gather(lambda slot: [self._actors[slot].live_leaves.remote(s, centers_ref, self._metric)
                                            for s in self._assignment[slot]])
        held = {s: found for slot, per_slot in enumerate(leaves) for s, found in zip(self._assignment[slot], per_slot)}
        all_leaves = np.concatenate([held[s][1] for s in range(self.num_shards)])
        sizes = np.bincount(all_leaves, minlength=len(spec["centers"]))
        leaf_owner = _routing.place_partitions(spec["centers"], sizes, self.num_shards, self._metric, seed=seed)
        counts = np.zeros(self.num_shards, dtype=np.int64)
        moves = {t: [] for t in range(self.num_shards)}
        for s in range(self.num_shards):
            ids, leaf = held[s]
            goes_to = leaf_owner[leaf]
            for t in np.unique(goes_to).tolist():
                keep = ids[goes_to == t]
                counts[t] += len(keep)
                # Every extraction is submitted before any rebuild, and an actor runs one
                # caller's calls in order: no shard is replaced before all its points left it.
                moves[t].append(self._actors[owner[s]].live_vectors.remote(s, keep))
        if (counts == 0).any():
            raise ValueError(f"rebalance would leave shard(s) {np.flatnonzero(counts == 0).tolist()} empty: "
                             "use fewer shards")
        refs = [self._actors[owner[t]].build_from_parts.remote(t, "tree_ah", self._metric, spec_ref, *moves[t])
                for t in range(self.num_shards)]
        ray.get(refs, timeout=self.timeout_s)
        return leaf_owner, counts
