"""Search parameters of each index kind: frozen dataclasses, one per kind.

An index holds one instance as its ``search_defaults``; a search call overrides fields by
keyword. Changing the defaults swaps the whole object (one attribute store), so a search
running in another thread sees the old or the new defaults, never a mix. The dataclasses
check each field's type and range on their own; checks that need the index (no more leaves
than it has) are the index's.
"""

from __future__ import annotations

import dataclasses

from annlib import _validate
from annlib.errors import InvalidTypeError


@dataclasses.dataclass(frozen=True)
class BruteForceSearchParams:
    """Exact search has no search-time knobs; the class exists so every kind has one."""


@dataclasses.dataclass(frozen=True)
class TreeAhSearchParams:
    """Search knobs of the tree-AH index (ScaNN's names).

    ``leaves_to_search``: partitions probed per query (ScaNN's ``leaves_to_search``).
    ``pre_reorder_num_neighbors``: AH candidates rescored exactly; ``None`` for an index built
    without reordering. A search raises it to at least ``k`` and caps it at the index size.
    ``exact_reorder_num_neighbors``: for an index with two-stage reordering (int8, then float32:
    ``reorder(..., quantize="int8", exact_num_neighbors=...)``), the best of the int8 rescoring
    rescored again with the float32 rows; raised to at least ``k``, capped at the candidates
    reordered; 0 returns the int8 scores. ``None`` for other indexes.
    """

    leaves_to_search: int
    pre_reorder_num_neighbors: int | None = None
    exact_reorder_num_neighbors: int | None = None

    def __post_init__(self):
        _validate.positive_int(self.leaves_to_search, "leaves_to_search")
        if self.pre_reorder_num_neighbors is not None:
            _validate.positive_int(self.pre_reorder_num_neighbors, "pre_reorder_num_neighbors")
        if self.exact_reorder_num_neighbors is not None:
            _validate.non_negative_int(self.exact_reorder_num_neighbors, "exact_reorder_num_neighbors")


@dataclasses.dataclass(frozen=True)
class JaxSearchParams:
    """Search knob of the JAX brute force: the expected recall of the PartialReduce top-k."""

    recall_target: float = 0.95

    def __post_init__(self):
        object.__setattr__(self, "recall_target", _validate.recall_target(self.recall_target))


_NAMES: dict[type, tuple[str, ...]] = {}


def names(params_type) -> tuple[str, ...]:
    """The keyword names a kind's search accepts."""
    found = _NAMES.get(params_type)
    if found is None:
        found = _NAMES[params_type] = tuple(f.name for f in dataclasses.fields(params_type))
    return found


def override(defaults, overrides: dict):
    """``defaults`` with the non-None ``overrides`` applied; an unknown name is a TypeError naming it.

    Every call builds (and so validates) a new object from the values given: nothing about
    earlier calls' arguments is reused. Only the field names of each class are cached.
    """
    cls = type(defaults)
    allowed = _NAMES.get(cls) or names(cls)
    merged = None
    for name, value in overrides.items():
        if name not in allowed:
            unknown = [n for n in overrides if n not in allowed]
            accepted = ", ".join(allowed) if allowed else "none"
            raise InvalidTypeError(
                f"unknown search parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                f"for {cls.__name__} (accepted: {accepted})"
            )
        if value is not None:
            if merged is None:
                merged = {n: getattr(defaults, n) for n in allowed}
            merged[name] = value
    if merged is None:
        return defaults
    # The constructor, not dataclasses.replace: the same __post_init__ validation, a third of the
    # cost, which a single-query search pays on every call that names a parameter.
    return cls(**merged)
