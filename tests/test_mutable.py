"""Mutable indexes (issue 13): user ids, add / upsert / delete, compact, rebalance, health,
persistence and searches during writes, for every index kind, against exact search over the
live set on the embedded real sample (and the shared 50k MiniLM set when present)."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

import annlib
from annlib.index.mutable import COMPACT_DELETED_FRACTION

K = 10
NUM_QUERIES = 100


def _ids(n, rng):
    """Non-contiguous, signed 64-bit ids in random order."""
    return rng.choice(np.arange(-(2**40), 2**40, 2**24 + 7, dtype=np.int64), n, replace=False)


def _recall(index, queries, live_vectors, live_ids, metric, **params):
    truth = annlib.BruteForce(live_vectors, metric, ids=live_ids).search_batched(queries, K).ids
    found = index.search_batched(queries, K, **params).ids
    assert found.dtype == np.int64
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(truth, found)]))


def _tree(data, metric, ids=None, soar=None):
    return annlib.TreeAhIndex(data, metric, num_leaves=60, num_leaves_to_search=12, soar_lambda=soar,
                              training_iterations=8, ids=ids, num_threads=2)


KINDS = {
    "brute_force": lambda data, metric, ids: annlib.BruteForce(data, metric, ids=ids),
    "tree_ah": lambda data, metric, ids: _tree(data, metric, ids),
    "tree_ah_soar": lambda data, metric, ids: _tree(data, metric, ids, soar=1.5),
}


@pytest.fixture(scope="module")
def sample(real_sample):
    data = real_sample["train"][:6000]
    return data, real_sample["test"][:NUM_QUERIES]


# ---------------------------------------------------------------------------------------- ids


@pytest.mark.parametrize("kind", ["brute_force", "tree_ah"])
def test_user_ids_are_returned_for_the_rows_they_name(sample, rng, kind):
    data, queries = sample
    data = data[:3000]
    ids = _ids(len(data), rng)
    plain = KINDS[kind](data, "dot", None)
    named = KINDS[kind](data, "dot", ids)
    p, q = plain.search_batched(queries, K), named.search_batched(queries, K)
    np.testing.assert_array_equal(q.ids, ids[p.ids])
    np.testing.assert_array_equal(q.distances, p.distances)
    assert int(ids[5]) in named and int(ids[5]) + 1 not in named and 5 in plain
    np.testing.assert_array_equal(named.get_vectors(ids[[7, 3]]), plain.get_vectors([7, 3]))
    np.testing.assert_array_equal(np.sort(named.ids), np.sort(ids))


def test_empty_slots_stay_minus_one_with_user_ids(rng):
    data = rng.standard_normal((5, 8)).astype(np.float32)
    index = annlib.BruteForce(data, "squared_l2", ids=[10, 20, 30, 40, 50])
    result = index.search(data[0], k=8)
    assert sorted(result.ids[:5]) == [10, 20, 30, 40, 50]
    assert list(result.ids[5:]) == [-1, -1, -1]


def test_bad_ids_are_refused(rng):
    data = rng.standard_normal((6, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="unique; repeated: 3"):
        annlib.BruteForce(data, ids=[1, 2, 3, 3, 4, 5])
    with pytest.raises(ValueError, match="one id per vector"):
        annlib.BruteForce(data, ids=[1, 2])
    with pytest.raises(ValueError, match="must not hold -1"):
        annlib.BruteForce(data, ids=[1, 2, 3, -1, 4, 5])
    with pytest.raises(TypeError, match="integers"):
        annlib.BruteForce(data, ids=np.arange(6, dtype=np.float64))
    index = annlib.BruteForce(data, ids=np.arange(6) * 2)
    with pytest.raises(KeyError, match="already in the index: 4"):
        index.add(data[:2], ids=[4, 5])
    assert len(index) == 6  # nothing was added
    with pytest.raises(KeyError, match="not in the index: 7"):
        index.delete([2, 7])
    assert len(index) == 6 and 2 in index  # nothing was deleted
    assert index.delete([2, 7], missing="ignore") == 1
    with pytest.raises(ValueError, match=r"shape \(m, 4\)"):
        index.add(np.zeros((2, 5), np.float32))
    with pytest.raises(KeyError, match="not in the index: 2"):
        index.get_vectors([2])


def test_add_without_ids_continues_after_the_largest(rng):
    data = rng.standard_normal((6, 4)).astype(np.float32)
    index = annlib.BruteForce(data, ids=[5, 100, 7, 8, 9, 1])
    assert list(index.add(data[:2])) == [101, 102]
    index.delete([102])
    assert list(index.add(data[:1])) == [103]  # a deleted id is not handed out again


def test_build_with_ids(sample, rng):
    data, queries = sample
    ids = _ids(len(data), rng)
    index = annlib.build(data, "dot", target_recall=0.9, ids=ids, queries=queries[:50])
    plain_rows = annlib.BruteForce(data, "dot").search_batched(queries, K).ids
    found = index.search_batched(queries, K).ids
    assert np.isin(found, ids).all()
    recall = np.mean([len(set(ids[a]) & set(b)) / K for a, b in zip(plain_rows, found)])
    assert recall >= 0.85


# ---------------------------------------------------------------------------------------- writes


@pytest.mark.parametrize("kind,metric", [("brute_force", "squared_l2"), ("tree_ah", "dot"),
                                         ("tree_ah", "cosine"), ("tree_ah_soar", "squared_l2")])
def test_add_delete_upsert_compact_rebalance_keep_recall(sample, rng, kind, metric):
    data, queries = sample
    n0 = 5000
    ids = _ids(len(data), rng)
    index = KINDS[kind](data[:n0], metric, ids[:n0])
    exact = kind == "brute_force"
    fresh = KINDS[kind](data, metric, ids)
    floor = 0.999 if exact else _recall(fresh, queries, data, ids, metric) - 0.03

    assert list(index.add(data[n0:], ids[n0:])) == list(ids[n0:])
    assert len(index) == len(data) and index.n == len(data)
    assert _recall(index, queries, data, ids, metric) >= floor

    dead = rng.choice(len(data), len(data) // 3, replace=False)
    assert index.delete(ids[dead]) == len(dead)
    alive = np.setdiff1d(np.arange(len(data)), dead)
    assert len(index) == len(alive) and int(ids[dead[0]]) not in index
    result = index.search_batched(queries, 50)
    assert not np.isin(result.ids, ids[dead]).any()  # deleted points never come back
    assert (result.ids != -1).all()  # and the live ones fill every slot
    assert _recall(index, queries, data[alive], ids[alive], metric) >= floor

    # upsert: a third of the live points get another point's vector, plus new ids
    moved = alive[: len(alive) // 3]
    donors = rng.permutation(moved)
    new_ids = np.arange(1, 301, dtype=np.int64) * 3 + 2**50
    index.upsert(np.concatenate([ids[moved], new_ids]), np.concatenate([data[donors], data[dead[:300]]]))
    live_vectors = data.copy()
    live_vectors[moved] = data[donors]
    live = np.concatenate([live_vectors[alive], data[dead[:300]]])
    live_ids = np.concatenate([ids[alive], new_ids])
    assert len(index) == len(live_ids)
    expected = data[donors[:5]] / (np.linalg.norm(data[donors[:5]], axis=1, keepdims=True) if metric == "cosine" else 1)
    np.testing.assert_allclose(index.get_vectors(ids[moved[:5]]), expected, rtol=1e-6, atol=1e-6)
    assert _recall(index, queries, live, live_ids, metric) >= floor

    index.compact()
    assert index.health()["deleted"] == 0 and index.stats()["n"] == len(live_ids)
    assert _recall(index, queries, live, live_ids, metric) >= floor
    index.rebalance()
    assert _recall(index, queries, live, live_ids, metric) >= floor
    assert not np.isin(index.search_batched(queries, K).ids, ids[dead[300:]]).any()


@pytest.mark.parametrize("metric", ["dot", "squared_l2"])
def test_heavy_deletion_still_fills_k_from_live_points(sample, rng, metric):
    data, queries = sample
    index = _tree(data, metric)
    dead = rng.choice(len(data), int(0.9 * len(data)), replace=False)
    index.delete(dead)
    alive = np.setdiff1d(np.arange(len(data)), dead)
    result = index.search_batched(queries, K, leaves_to_search=60)
    assert (result.ids >= 0).all() and np.isin(result.ids, alive).all()
    # every leaf probed: the scan sees every live point, so the AH top-k is near exact
    assert _recall(index, queries, data[alive], alive, metric, leaves_to_search=60) >= 0.97


def test_jax_kind_is_mutable(sample, rng):
    pytest.importorskip("jax")
    data, queries = sample
    data = data[:2000]
    ids = _ids(len(data), rng)
    index = annlib.JaxBruteForce(data[:1500], "dot", ids=ids[:1500], recall_target=1.0)
    index.add(data[1500:], ids[1500:])
    dead = rng.choice(len(data), 500, replace=False)
    index.delete(ids[dead])
    alive = np.setdiff1d(np.arange(len(data)), dead)
    assert _recall(index, queries, data[alive], ids[alive], "dot") >= 0.999
    loaded = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(loaded.search_batched(queries, K).ids, index.search_batched(queries, K).ids)


# ---------------------------------------------------------------------------------------- health


def test_health_figures_move_the_way_they_should(sample, rng):
    data, _ = sample
    index = _tree(data[:1500], "dot")
    h0 = index.health()
    assert h0["deleted_fraction"] == 0.0 and h0["advice"] == [] and h0["growth_since_build"] == 1.0
    assert h0["quantization_error_added"] is None and 0 < h0["quantization_error_build"] < 1
    index.add(data[1500:])
    h1 = index.health()
    assert h1["growth_since_build"] == pytest.approx(len(data) / 1500)
    assert h1["quantization_error_added"] > 0 and "rebalance" in h1["advice"]
    index.delete(np.arange(0, len(data), 3))
    h2 = index.health()
    assert h2["deleted_fraction"] == pytest.approx(1 / 3, abs=1e-3)
    assert h2["deleted_fraction"] >= COMPACT_DELETED_FRACTION and "compact" in h2["advice"]
    index.compact()
    assert index.health()["deleted_fraction"] == 0.0
    index.rebalance()
    h3 = index.health()
    assert h3["advice"] == [] and h3["growth_since_build"] == 1.0 and h3["trained_n"] == len(index)


def test_new_points_from_elsewhere_raise_the_quantization_error(sample, rng):
    data, _ = sample
    index = _tree(data[:3000], "squared_l2")
    far = (data[3000:4000] + rng.standard_normal((1000, data.shape[1])).astype(np.float32) * 0.2)
    index.add(far)
    h = index.health()
    assert h["quantization_error_ratio"] > 1.25 and "rebalance" in h["advice"]


# ---------------------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("kind", ["brute_force", "tree_ah_soar"])
def test_a_mutated_index_saves_loads_and_pickles(sample, rng, tmp_path, kind):
    data, queries = sample
    ids = _ids(len(data), rng)
    index = KINDS[kind](data[:4000], "dot", ids[:4000])
    index.add(data[4000:], ids[4000:])
    index.delete(ids[rng.choice(len(data), 1000, replace=False)])
    expected = index.search_batched(queries, K)
    index.save(tmp_path / "m.annl")
    for copy in (annlib.load_index(tmp_path / "m.annl"), annlib.load_index(tmp_path / "m.annl", mmap=False),
                 pickle.loads(pickle.dumps(index))):
        got = copy.search_batched(queries, K)
        np.testing.assert_array_equal(got.ids, expected.ids)
        assert len(copy) == len(index) and copy.health()["deleted"] == index.health()["deleted"]
        # fresh ids continue after the largest id ever held, deleted ones included
        assert list(copy.add(data[:1])) == [int(ids.max()) + 1]
    # a loaded (memory-mapped) index stays writable by copy-on-write
    loaded = annlib.load_index(tmp_path / "m.annl")
    loaded.delete(loaded.ids[:10])
    assert len(loaded) == len(index) - 10


def test_files_without_id_sections_load_as_rows(sample, tmp_path):
    data, queries = sample
    index = _tree(data[:2000], "dot")
    index.save(tmp_path / "plain.annl")
    header = annlib.io.read_header(tmp_path / "plain.annl")
    names = {s["name"] for s in header["sections"]}
    assert "ids" not in names and "live" not in names  # an unmutated index writes the same file as before
    loaded = annlib.load_index(tmp_path / "plain.annl")
    np.testing.assert_array_equal(loaded.ids, np.arange(2000))


# ---------------------------------------------------------------------------------------- concurrency


def _states(data, rng):
    """A write sequence whose every state has a live set no other state has."""
    steps = []
    ids = np.arange(len(data), dtype=np.int64)
    start = len(data) // 2
    live = set(range(start))
    extra = np.arange(start, len(data))
    for i, chunk in enumerate(np.array_split(extra, 8)):
        steps.append(("add", chunk))
        live |= set(chunk.tolist())
        victims = np.array(sorted(live))[rng.choice(len(live), 40, replace=False)]
        steps.append(("delete", victims))
        live -= set(victims.tolist())
        if i == 3:
            steps.append(("compact", None))
        if i == 5:
            steps.append(("upsert", victims[:20]))
            live |= set(victims[:20].tolist())
    return ids, start, steps


@pytest.mark.parametrize("kind", ["brute_force", "tree_ah"])
def test_searches_during_writes_see_a_before_or_after_state(sample, rng, kind):
    data, queries = sample
    data = data[:4000]
    ids, start, steps = _states(data, rng)
    index = KINDS[kind](data[:start], "dot", ids[:start])
    # The live set after each write; a search's result must lie in one of them.
    live_sets = [frozenset(range(start))]
    live = set(range(start))
    exact = [annlib.BruteForce(data[:start], "dot", ids=ids[:start]).search_batched(queries[:8], K).ids]
    for op, arg in steps:
        if op == "add":
            live |= set(arg.tolist())
        elif op == "delete":
            live -= set(arg.tolist())
        elif op == "upsert":
            live |= set(arg.tolist())
        if op != "compact":
            live_sets.append(frozenset(live))
            rows = np.array(sorted(live))
            exact.append(annlib.BruteForce(data[rows], "dot", ids=rows).search_batched(queries[:8], K).ids)
    done = threading.Event()
    results, errors = [], []

    def searcher(seed):
        local = np.random.default_rng(seed)
        try:
            while not done.is_set():
                q = int(local.integers(8))
                results.append((q, index.search(queries[q], K, **({} if kind == "brute_force" else {
                    "leaves_to_search": 6})).ids.copy()))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for op, arg in steps:
        if op == "add":
            index.add(data[arg], ids[arg])
        elif op == "delete":
            index.delete(ids[arg])
        elif op == "upsert":
            index.upsert(ids[arg], data[arg])
        else:
            index.compact()
    done.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) > 50
    for q, found in results:
        assert (found != -1).all()
        found_set = set(found.tolist())
        matching = [i for i, s in enumerate(live_sets) if found_set <= s]
        assert matching, f"query {q}: ids {sorted(found_set)} are live together in no state"
        if kind == "brute_force":  # exact search: the result is exactly some state's answer
            assert any(np.array_equal(found, exact[i][q]) for i in matching)
    final = index.search_batched(queries[:8], K).ids
    if kind == "brute_force":
        np.testing.assert_array_equal(final, exact[-1])


# ---------------------------------------------------------------------------------------- 50k set


def test_minilm_50k_build_add_delete_matches_fresh_build(debian_minilm):
    data = debian_minilm["train"][:20000]
    queries = debian_minilm["test"][:200]
    rng = np.random.default_rng(0)
    params = dict(num_leaves=140, num_leaves_to_search=14, soar_lambda=1.5, num_threads=2)
    index = annlib.TreeAhIndex(data[:16000], "dot", **params)
    index.add(data[16000:])
    dead = rng.choice(len(data), 4000, replace=False)
    index.delete(dead)
    alive = np.setdiff1d(np.arange(len(data)), dead)
    fresh = annlib.TreeAhIndex(data[alive], "dot", ids=alive, **params)
    mutated, rebuilt = (_recall(i, queries, data[alive], alive, "dot") for i in (index, fresh))
    assert mutated >= rebuilt - 0.01 and mutated >= 0.9
