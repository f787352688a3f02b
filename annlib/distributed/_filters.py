"""Filters sent to shard actors: what a ``filter=`` argument becomes on the way to another process.

Pure Python, no Ray. User ids are global (every shard's index holds its points under their
user ids), so an id list or a bitmap applies unchanged on every shard; the driver only has to
make each filter survive pickling:

* id lists and bitmaps travel as their arrays;
* a numba predicate (``Filter.predicate(cfunc, data)``) does not pickle (a ``CFunc`` holds a
  compiled library, and its ``address`` is a pointer into the driver's process). It travels as
  its Python function and signature, and the actor compiles it again with ``numba.cfunc`` (once
  per actor and function); ``data`` travels as the numpy array the filter keeps. A predicate
  given a raw address (an int) cannot be shipped: that memory is the driver's;
* a Python callable (``Filter.callable``) travels as itself: Ray pickles it with cloudpickle
  (by value for functions of ``__main__`` or local ones; a module-level function must be
  importable on the actors).

A batch's per-query sequence travels as its distinct filters and the filter index of each
query, so a filter object shared by many queries is resolved once per shard, as on one index.
"""

from __future__ import annotations

import numpy as np

from annlib.errors import InvalidValueError
from annlib.filter import Filter, query_filters

#: Compiled predicates of this process, by (function, signature): an actor compiles each once.
_COMPILED: dict = {}


def to_wire(value, num_queries: int) -> tuple[list, np.ndarray | None]:
    """(picklable specs of the distinct filters, filter index of each query or None)."""
    distinct, of_query = query_filters(value, num_queries)
    return [None if f is None else _spec(f) for f in distinct], of_query


def _spec(f: Filter) -> tuple:
    if f.kind in ("allow", "deny"):
        return (f.kind, f._ids)
    if f.kind == "bitmap":
        return ("bitmap", f._mask)
    if f.kind == "callable":
        return ("callable", f._fn)
    # predicate
    if f._data is None and f._data_address:
        raise InvalidValueError(
            "a predicate's data given as a raw address cannot reach the shards (it points into this process): "
            "pass the data as a numpy array, Filter.predicate(cfunc, data=array)"
        )
    cfunc = f._fn
    return ("predicate", cfunc._pyfunc, str(cfunc._sig), f._data)


def from_wire(specs: list, of_query: np.ndarray | None, next_id: int):
    """The ``filter=`` value a shard's index takes (one Filter, or a per-query list of them); a
    shard whose ids end at ``next_id - 1`` gets bitmaps cut to its own id space (a single index
    refuses a bitmap longer than the ids it has used; the tail names other shards' ids)."""
    filters = [None if s is None else _rebuild(s, next_id) for s in specs]
    if of_query is None:
        return filters[0]
    return [filters[i] for i in of_query.tolist()]


def _rebuild(spec: tuple, next_id: int) -> Filter:
    kind = spec[0]
    if kind == "allow":
        return Filter.allow(spec[1])
    if kind == "deny":
        return Filter.deny(spec[1])
    if kind == "bitmap":
        return Filter.bitmap(spec[1][: max(next_id, 1)])
    if kind == "callable":
        return Filter.callable(spec[1])
    _, pyfunc, signature, data = spec
    return Filter.predicate(_compiled(pyfunc, signature), data)


def _compiled(pyfunc, signature: str):
    import numba  # noqa: PLC0415 - the filter extra, present wherever a predicate was built
    from numba import types  # noqa: PLC0415

    # Ray's vendored copy: a plain `pip install ray` does not install the cloudpickle package
    # (the wheel's packaging test found this in a fresh venv).
    from ray import cloudpickle  # noqa: PLC0415 - Ray runs this

    key = (cloudpickle.dumps(pyfunc), signature)  # closures over other values compile apart
    found = _COMPILED.get(key)
    if found is None:
        args = (types.int64,) if signature.startswith("(int64,)") else (types.int64, types.voidptr)
        found = _COMPILED[key] = numba.cfunc(types.boolean(*args))(pyfunc)
    return found
