"""IdMap.appended merges the new ids into the sorted live ids, IdMap.killed filters them: the same map as
building it anew."""

from __future__ import annotations

import numpy as np
import pytest

from annlib.errors import InvalidValueError
from annlib.index.ids import IdMap


def _same(a: IdMap, b: IdMap) -> None:
    np.testing.assert_array_equal(a.row_ids, b.row_ids)
    assert (a.live is None) == (b.live is None)
    if a.live is not None:
        np.testing.assert_array_equal(a.live, b.live)
    assert (a.num_live, a.identity, a.next_id) == (b.num_live, b.identity, b.next_id)
    np.testing.assert_array_equal(a._keys, b._keys)
    np.testing.assert_array_equal(a._rows, b._rows)


@pytest.mark.parametrize("start", ["identity", "user", "with_dead"])
def test_appended_equals_a_map_built_anew(rng, start):
    rows = 500
    if start == "identity":
        m = IdMap.identity_map(rows)
    else:
        m = IdMap(rng.permutation(np.arange(rows, dtype=np.int64) * 7 + 3))
        if start == "with_dead":
            m = m.killed(rng.choice(rows, 100, replace=False))
    for new in (m.fresh(50), rng.permutation(np.arange(10_000, 10_300, dtype=np.int64)), np.array([], np.int64)):
        grown = m.appended(new)
        live = None if m.live is None else np.concatenate([m.live, np.ones(len(new), np.uint8)])
        _same(grown, IdMap(np.concatenate([m.row_ids, new]), live, m.next_id))
        np.testing.assert_array_equal(grown.rows_of(new), np.arange(m.rows, m.rows + len(new)))
        if len(new) == 50:  # fresh ids after an identity map keep it the identity
            assert grown.identity == (start == "identity")
        m = grown


@pytest.mark.parametrize("start", ["identity", "user"])
def test_killed_equals_a_map_built_anew(rng, start):
    rows = 500
    m = IdMap.identity_map(rows) if start == "identity" else IdMap(rng.permutation(np.arange(rows, dtype=np.int64) * 7 + 3))
    # one row, a batch, the rest but one, then the last live row: the map of no live row
    for dead in (np.array([0]), rng.choice(np.arange(1, rows), 200, replace=False), None, None):
        live_rows = m.live_rows()
        if dead is None:
            dead = live_rows[1:] if len(live_rows) > 1 else live_rows
        killed = m.killed(dead)
        live = np.ones(rows, np.uint8) if m.live is None else m.live.copy()
        live[dead] = 0
        _same(killed, IdMap(m.row_ids, live, m.next_id))
        assert (killed.rows_of(m.row_ids[dead]) == -1).all()
        m = killed
    assert m.num_live == 0


def test_killed_of_no_rows_is_the_same_map(rng):
    m = IdMap(rng.permutation(np.arange(50, dtype=np.int64)))
    _same(m.killed(np.array([], np.int64)), m)


def test_appended_refuses_a_live_id(rng):
    m = IdMap(np.arange(10, dtype=np.int64) * 2)
    with pytest.raises(InvalidValueError, match="unique"):
        m.appended(np.array([4], dtype=np.int64))
