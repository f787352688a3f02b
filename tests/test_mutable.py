"""Mutable indexes (issue 13): user ids, add / upsert / delete, compact, rebalance, health,
persistence and searches during writes, for every index kind, against exact search over the
live set on the embedded real sample (and the shared 50k MiniLM set when present)."""

from __future__ import annotations

import base64
import pickle
import threading
import zlib

import numpy as np
import pytest

import annlib
from annlib import _format_checks
from annlib.errors import FormatError
from annlib.index.mutable import COMPACT_DELETED_FRACTION
from annlib.index.tree_ah_mutation import PRUNE_DEAD_FRACTION

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


# ---------------------------------------------------------------------------------------- pruning


def _dead_fraction_per_leaf(index):
    a = index._arrays
    dead = index._snap.ids.live[a["entry_ids"]] == 0
    sizes = np.diff(a["leaf_offsets"])
    leaf = np.repeat(np.arange(len(sizes)), sizes)
    return np.bincount(leaf, weights=dead, minlength=len(sizes)) / np.maximum(sizes, 1)


@pytest.mark.parametrize("metric", ["dot", "squared_l2"])
def test_deletes_prune_dead_entries_from_the_leaves_they_crowd(sample, rng, metric):
    data, queries = sample
    index = KINDS["tree_ah_soar"](data, metric, None)
    index.search_batched(queries, K)
    scored_before = index.last_search_counters["entries_scored"]
    entries_before = index.stats()["entries"]

    # One point in a large leaf: masked in the scan, the tables stay as they are (no copy).
    sizes = np.diff(index._arrays["leaf_offsets"])
    big = int(np.argmax(sizes))
    victim = int(np.flatnonzero(index._arrays["primary_leaf"] == big)[0])
    tables = index._arrays["packed_codes"]
    index.delete([victim])
    assert index._arrays["packed_codes"] is tables
    assert index.health()["dead_entries"] >= 1 and index.stats()["entries"] == entries_before

    # A fifth of the points: every leaf they push past the threshold loses its dead entries.
    dead = np.union1d(rng.choice(len(data), len(data) // 5, replace=False), [victim])
    index.delete(np.setdiff1d(dead, [victim]))
    assert (_dead_fraction_per_leaf(index) < PRUNE_DEAD_FRACTION).all()
    health, stats = index.health(), index.stats()
    assert health["deleted"] == len(dead)  # rows stay until compact; their entries need not
    assert health["dead_entry_fraction"] < PRUNE_DEAD_FRACTION
    dead_rows_entries = len(dead) + int(np.count_nonzero(index._arrays["secondary_leaf"][dead] >= 0))
    assert stats["entries"] == entries_before - dead_rows_entries + health["dead_entries"]
    assert health["dead_entries"] < 0.1 * dead_rows_entries
    # the scan reads fewer entries for the same queries and leaves, and never returns a deleted point
    result = index.search_batched(queries, K)
    assert index.last_search_counters["entries_scored"] < 0.9 * scored_before
    assert not np.isin(result.ids, dead).any() and (result.ids >= 0).all()
    alive = np.setdiff1d(np.arange(len(data)), dead)
    fresh = KINDS["tree_ah_soar"](data[alive], metric, alive)
    assert _recall(index, queries, data[alive], alive, metric) >= _recall(fresh, queries, data[alive], alive,
                                                                             metric) - 0.02

    # a run of single deletes keeps every leaf below the threshold too
    for row in rng.choice(alive, 60, replace=False):
        index.delete([row])
    assert (_dead_fraction_per_leaf(index) < PRUNE_DEAD_FRACTION).all()


def test_a_file_check_wants_every_live_point_in_its_leaves(sample, rng, tmp_path):
    data, _ = sample
    index = KINDS["tree_ah_soar"](data[:3000], "dot", None)
    index.delete(rng.choice(3000, 900, replace=False))
    config, arrays = index._state()
    live = arrays["live"]
    core = {k: v for k, v in arrays.items() if k not in ("ids", "live")}
    cfg = index._build_config
    _format_checks.check_tree_ah_arrays("f", cfg, core, 3000, data.shape[1], live)  # pruned dead rows: fine
    revived = live.copy()
    revived[np.flatnonzero(live == 0)[0]] = 1  # a row marked live whose entries were pruned
    with pytest.raises(FormatError, match="exactly once in its primary leaf"):
        _format_checks.check_tree_ah_arrays("f", cfg, core, 3000, data.shape[1], revived)
    with pytest.raises(FormatError, match="exactly once in its primary leaf"):
        _format_checks.check_tree_ah_arrays("f", cfg, core, 3000, data.shape[1], None)
    with pytest.raises(FormatError, match="section 'live'"):
        _format_checks.check_tree_ah_arrays("f", cfg, core, 3000, data.shape[1], live[:10])


# A tree-AH file of format version 2 (before deletes pruned leaves; zlib-compressed, base64):
# TreeAhIndex(rows 0..63 of standard_normal((96, 4)) from default_rng(2), "squared_l2", num_leaves=4,
# soar_lambda=1.5, ids 1000 + 3 * row), then add(rows 64..95), delete(ids of rows 0, 4, 8, ...).
# Its dead rows keep their entries. Every later annlib must load it.
FIXTURE_TREE_AH_V2 = (
    "eNq1mHlUU9e+x0PCKJOzWAURURTBZiIQaM5vB0QLCs6iosYAQVNDAkkALWKdagWVSYuCirOCVVtFsbbmbKxaJ7SKE461dW4dEel1"
    "fjvc7euRK/e++8c7a33X5wy//Rv3SbKijI0dzOfxeF878JqOLJ+pWn2ST6iP2ajRqNRTfAJ81Hq9TpugytAYTVqDnjwS9hP1E5IH"
    "iQZ9snayT2iWD1mimWY9SdGYjdpEYmNKS1cbNUkqnZgY6tNTVHqNdvKUBIPR5BMqEgY0ubcusD7SadQZGnJfGsC5VJkNKpNGbUyc"
    "4hMqttqrtXqtfrLKpE5J1WlUJu3nZL1MynmiNWuMajNJ8Z+uUrR6VaraaNZab1F7UYCPKXWKhqSo1vmE6tN1OnJDoyH1kpRMBrVR"
    "pVOnJCSpiWW/IKutVqezFkOekDIMpAVGa4GaDI0qWZ1oNhibDLNJj6ZYi0nSpphUqRqjKkFnSJzalLdarzUZzEZDqjZRRVqiN2s/"
    "b8pRZZ5i1JimGHTW2P1aLFAktB4tFCkSkshGjcGYpDG+6+V7bSYLaUziyidZZ1CbJWKfbLKKjFEuC7Am3NSrhHStLom0m0w0yWRN"
    "SCgTScUhYmGwNbxMLAsh3dBrpplVWpKvSBwioymRCRsNmSbOJMgdvfUy29rZRJppPElOnWJNggw3WWVITjZpzCbS0iTz9FTr7U+0"
    "IeTKNEVtvYoPmkCa3WRDgslDrPsiYbq5aYuQkhKNiaSKUJFELg8KksrE8uyA991PNhrSU/+rIGKhNOSDQeRSEkIqkYk5MTR6s3E6"
    "acT7rqUc1yK5mOtcJBL/7TxYFvK/3iXEc5BcFhLM8Z6qTpxKephoSNJwA8xIF3ECiINk3AAhIcK/A5BnfweQBQuDSf5yyb/kb0pT"
    "6Q3GlPeKSG65CIlIImuhCIlcKJGLpHIRJ0YiCUI+L1p0Lg2Qcp3LhZwZW7cS9S0Olskk8iC5UMj1TVqTYDBMbdG57H3fspCWmiOV"
    "SGTC97tv1KaoSXes+6jF8cq5zZeKxZzcJSF/Jy8VCWXkkIqlnAD/fMf+yxAkyQ+HEImCJGJJCGkStwaDVm/+z/N9P4RcLv5wCIlE"
    "KpJJyC761/H+5xjcQQRJgjk7SPT3HMRSqUgulAvfK4J+rKmaPrT+TQ3v7SPyqnJeBNIbThBhsJi8ByHB3Gk3f4dDWmqPTB7cwu4X"
    "BQmDZPIg0iPup5A2Q9Piu/ue42Dydv7tWM7Jl2x7kTRIFCLPnpDdY6fNt7x/f/hSjqXMoazm/d8OPqUtpT2l439Y14rIjegjIh8i"
    "CVEwUQh9bkN9Wv04EbUmakPUhagbkT9RPyIRkZhIRhRKpCBCRIOIBhPFEg0nGkVrnEjUnyiGaDRRHNE4mrcDjeVM5ELUlqgdUQei"
    "zkSeRF5E3kQ9aO96EvUi8iMKoDlJiYJoTmFEnxAxRAIiO1q7K1F7Ig/ag95EQiI5ERBF0DwHEH1KFEVzHko0gmgkkZIonGggUTTR"
    "EKJ4ovFEKtpDO9pDazx32sM+tH99iT7mxA2l83Sms7HW3pGoE62/K6cH3encuH1414NATg+sdUfS3N71ewzNE3FqezevYbS+CZz9"
    "JaB7oTXt2bucPOh+6Er3RHfax0DOvlDQfr6brwvtQ1s6V286vz6cfnD34rv5Ne/1MLpvxtNcVXRmkXRmsXRWw+msRtG63+3BQ6ro"
    "7gVXA2qrElaW3PR+ODxwoK1G6196efgtc3nh6MaBTjx7Pvd9sbV1s+NeZ/kqwq5MKj5ZeztPLLz/gHmV/3zmUOfd2ea3cXvu1JdL"
    "wmNDYm8KXHiu9nxnnpub25++c7Jc3V34DgKBg7uzs82IP3t9jeIL/jQuLZp4oOhWnEKwPq6V8IIT3jivSDFrWZidnZstT+BmJ3Cy"
    "cxXw7WwFAntb91b2js58gXMrXqtWP15eGV+49cLQ8ctPXnW4JxK+XHrWQdlwm3nwyBwY2ddrzQjtqJmvPhHznJ3cXJxc7ezHbYtd"
    "Ei2vt3dwc3Mnnl1TF21CDxp/QTEj61BbWIlUxQ9Qfoq7MufCKrTwwXXU6cx3CAXsgswFm8B9rBj1vjRc2a5dLrreaRUSsN+BPswD"
    "Ve/UIAffLkr7BimKvN4FxXQ/gYa8tqCDY64hJ3cjWr25CAkCs+HNtHmoOIantPrzyypqWreyKx8cT3g02VjvNzzjK4+fWY/62vZA"
    "cp0E7bjAouhZYnQhazi6Hj0PFvabg84M0qEJbBTs/kWBDnQrhih8Ew3YEoFUi4bB+tEFkFa9CUVrAN2QfITcP8uGolMWtPb8E7Sl"
    "dxRS3xwCb5TfQjb+AnrVzkK/l5mQ9Vr9cA0k+nVF7muK0KPnT6CfsRTxrndGth1Lmnydwl7KWzs3Nq2/7xqFgg4ASufvgiVzroPV"
    "zqo/XNegZY8tyL7SUbmgfinyCCtEQxuTUZnratSmw2pYvu8hjBsUjFzLhoLXtf7Iy4uHmNWe6FC/11B+ugo9+zITFfPaK632y7z7"
    "Iqvt1Y5foZo7t+HYUwP6bI8M9p28An43jzbdq35V0XTfavNXzffMiW05aMUCJar5YVbT+R+7Pm2ye6eFuzag8x0fI+c2dkjRZRay"
    "Xk84Xokqr+cgc8yLJtuJX8ianlnjz6w4D0f8F6K6gO/R1fAkWLGoEKZFxYPj9B5K67ncsRgd4m+EmIgGCC47jmIfD0H50zqg8AoZ"
    "evtxPdpf4YxedbuFjE9dUFvdZqQyTkQeVVeQfadA9NJ5IlpQ/g3cqQ5EwfFzof1JL3TXfTHItJ6oYul+8Cubh0pHdFSqvOejJpG1"
    "VruRV4tR6y0GtKq6BNk55aCbTxOQNSfr+vGblcixoiuynutCj4A1ln7gBriUthe8tw5EXR+shrtDjyH5cSEa7ReB9oAczYMqyEl5"
    "xCSoA9jGDUU4qDQNz9M7g9/bSYrJcwcoNg2Jh/0VfvuSs+sUVSUx0LNNIGOaNArbve2hWI1N+KexjvsM34axe9w7gcuzbey1eSE4"
    "90gUruElQnJMBvxjiCN+E8Wv7tUrDevOrIe768YreOf0cHPdYujxpkSx9NFF8K0bx9q23oVHeafvm3N+AC7b/gZ+gXZMYcoXzN5C"
    "X/yrezfmsa8UHn6XyfBLZIxCHYMLpptg0tgB7HPf9eD7cyFurD+CMyos2Lt9f/zTpQewLqFG8dfLi2z6yG4QWjoKgvNOMGdHL2YK"
    "ftgBjVsLmRepdmzwr6sZEdqBB9SHwUb7Dfhkgh9u7fAdey8qEreJOc2WZVRgR08eWnb/Avac7Y8vXeyhmOTxipW45YFobjQ86/yN"
    "RcD5bngnPv3Os+Gc85rd436ncO0FHAo417xm181tuf5tmtnwOeKu4zfLvbkP7m8r/r+J2zyv5nG4tjyOb34L+fOa5czj1CFoFpfX"
    "zBevWf+4MfnNauc+FzTLh1sz//+QV3MJPlCf4ANrbT6QA/8DfeU1q6l5bi3No3kdzWMLmuUr+EBfBB/Yv+/Wf9vpJErtWI5yXb6H"
    "7WdMoA62gMueOXDxmKOy33iMjm28A2M+dkeZO9aig8H90d61L1FjvjfapKtBOJUHZwM9lSPD9Wj6Hx1R1pfzkejiNgis2AtrLXlo"
    "1YgB0C7vLmyJVaNVC+tQneYkOrmtFJnv56IG5zx4lXkOIu380e+ZcpT6ZhsqU02DiLtnkWPlONQQWgBCwQK498Vv6MmzYzDVoQaM"
    "T9yRwesi2jPZHzUeQijuQQXq1bcY5Y29ipyynVHNV87KYWdvQaV0OJjPWpDH44+U4socVHzTS7m0508oKPohCu8uRca0A8j5dD78"
    "Y0Mq2hD6DSopn4FifQcjU0g26nwuAq2rHIseLvdV4kW7UN/BfOUfw45AYswhdKPEjCokeajrZyNR3lxbtPnXrsrxU2ejgtnhaNbh"
    "TLR/rQ6C212BuGH30RR3XzTrYB4a+OwIGtezI6r5sTMYJs5GkSmtlIezw9DuJVJ0YtIl+ChPgwZtWQ6t6neA/dlTwPsvD9kyJVNX"
    "a4fbZJ9hecqu1afG3wYHcxHUrtrECj0GQN2LfGbUYVd8Rfk5RNqsZlfEl7Pdj0Xj/o/vMmN7H7c4L3eG+aldcJ9fbZi2uiSMPouD"
    "yEWIKUUVTFFgLTNr0my8eOanYLdWgGZ8fxrHT7iKh5VV40vaOGh1UsB4O+RC2JMQ6LEmjjGlFDI7zwWy2hETYUFpAf7t9QW28eA0"
    "5tnS23C/MgJv9srFyyStsdxnGkRtTGWl8yrA5dtH2GgqgC8y5sH54t24qL8nU79qBdx226Uw3Ce/cd50QhfRIiYyL5/dlhiJC+70"
    "hBWmKDbaKZhNLbpguTKhF5zOXoDf1B7A6w92qXbRl8Bz72WK5YP2Q6ql7b7brxW4V2UDk3hppUWYswbvXZKAz/T8HdJSdjNlwnOM"
    "cPliNqNQiPMikkAz4Lzl3shw/HqME1tzbjKetCKcWZBbANucRuMFl6rA954/bu/hyaR4jsZlhYls977hCvv8a2zGYwl+mhOIc4OH"
    "44R/HMEN6+ezK5NOMA6Lp8D88p7Ai/RECv/1TMmGe+zewkfAOM/HvR5mwsR5Zuwdu5tJaXiJT8iSYYuzD/t8byY2nD8PUQ8j4O2a"
    "MIX6HIOfrxRZnlzxYxty5VAeOxg61PvjxetdsCHIEadUbcXmtE44DVksob8LQcyvgP2PYnGNiyvU5d9gr/9ii+KKBlo0C3kwotyA"
    "x+QMwcE5sczRdQdZ5vddzKV7h3Hv6X1gTP9krJp2BV7sWML2My2CU3k7cV3ZZebeqEQ8P+o5O27m0U82xa1j5w7+ihmbDPBjVz+Y"
    "2afScnPedhz9OgYPM3/Kvj3uUD1uAYI9iens/a2z2KNHjPDxK39oH5vAVPadhZc+KmM+ZnYws2clYGbhl3DLlg+bu77C66qfK9b8"
    "thb/bCyEhJJYyAhfjG2/SsDm5acUZ3LN7GX5Acj4TgGxpQVsyKl2cLU1v7p4UxlzqWYCjIRgtuRUEM641BpuVL6APkeHMRON+din"
    "9V5gzI+xUy0PXr5ojyvD9OCXORbXmSpAYylhPJ2u4rsbX+HIC2vZH8o3Qp/2fGZpRo7i54I01uHOJ/BCuJ/5IiefOdFxBl7qvBym"
    "Tt8O+4s24Z2D2iFRYwjcv/ycfbT/Ke7o1xva7HWDkVke+KLwFr78MB/aruyIixY8YV27ydBOoSPq1NsM9QH3WI+IXlAqaFt9OvCS"
    "wjQ3HFflbcCjS47h7QZ78LxRpSjN68E82xgH9cvH4HV+ZfiJ6ga+UfYNW1ISDln8zuwLb184FLAMbxU+ZlPI76S6Y6txmOAh3O45"
    "DsbbReBdnftjNPAzi/zr77HF91emrGIjTqqwsImBc/G27c/Y8YlbcNjwo5g/KhN7d+iH8ctiNnrgYsWotAOw79EQsJkxmz16Tg5F"
    "8ULsP2UvzN/iAj0XbcP1k5Sg/3MoHL/et9pvLuBry+vZ7IuNeEDJAlx62IgdT9vAkPMlTFi73mjilaNsu1VLIOLztYqjVblMtX4p"
    "nrC8AZ9J7I+zPCNgUskx6L36I9jm9ZZJ2Tsas4kHoc5mK6y/6YADHiks4a9nYsOJH2Gz6ymm/46fLOJRpxgo+Y3Z+W0tu/LPMnxo"
    "2AZ8fM41HN/nPrPslSv6KOsiDl3hymTrahl96xn47chhjH7KInx4Uwns9vbApfUnFOn+H0NUmyus68BbWMVzxOUjIiC92zbL5Zip"
    "zIroXOxQ0Zbx04bCl9EdFLXyBrhweCT7V/SXON39F/zQvAQ8LWmWMzNmw9cj/mAO8E/BSfd1cC52P7shdBEz7UEuVAWX4caqvVDi"
    "swIc12ZBn/0xbNjOUmanTT6OV6coZk/siE2f7lBshtfszthCJr6hGNqv3Yyn3tbBnqdvsCq2VXVhZoOl55wrYcerfme+vFqL5XPS"
    "LTvybZj8LWvgYsVZi43OAQpCPsfD3RAb5HmT3e8shYge2fgu/XL/k/Ih5RPKBsq/KF9Qvha8/4ebgNKe0onShdKdsi1lB0oPyi6U"
    "XpTdKX0p/Sj9KQMphZQSShmlnPITSqAMp4yk/JRyEGUs5TDKkZRxlOMoJ1BOokykTKbUUuooDZRGynTKaZRZlDMpZ1POo/yKMpdy"
    "MWUB5RLKYsoSypWUqynXUW6kLKf8hnI75Q7KXZR7KH+gtFBWUx6g/JnyKGUN5S+UtZTnKOsoL1Neo/yN8iblHco/KB9QPqZ8StlI"
    "+ZzyFeVbSj7998ru3b9YNjY2/5/6zuufYdq1HTFhcGys8n8AG6WPqA=="
)


def test_a_format_2_file_with_deletions_loads_and_prunes_on_the_next_delete(tmp_path):
    data = np.random.default_rng(2).standard_normal((96, 4)).astype(np.float32)
    ids = np.arange(1000, 1000 + 3 * 96, 3, dtype=np.int64)
    path = tmp_path / "v2.annl"
    path.write_bytes(zlib.decompress(base64.b64decode(FIXTURE_TREE_AH_V2)))
    assert annlib.io.read_header(path)["format_version"] == 2
    index = annlib.load_index(path)
    alive = np.setdiff1d(np.arange(96), np.arange(0, 96, 4))
    assert len(index) == len(alive) and index.health()["deleted"] == 24
    assert index.health()["dead_entries"] > 0  # written before pruning: the dead rows' entries are there
    np.testing.assert_array_equal(np.sort(index.ids), ids[alive])
    np.testing.assert_array_equal(index.get_vectors(ids[alive]), data[alive])
    truth = annlib.BruteForce(data[alive], "squared_l2", ids=ids[alive]).search_batched(data[:8], 5).ids
    found = index.search_batched(data[:8], 5, leaves_to_search=4).ids
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(truth, found)]) >= 0.8
    index.delete(ids[alive[:3]])  # the next delete prunes what the old file kept
    assert index.health()["dead_entries"] == 0
    index.save(tmp_path / "v3.annl")
    assert annlib.io.read_header(tmp_path / "v3.annl")["format_version"] == annlib.io.FORMAT_VERSION == 3
    again = annlib.load_index(tmp_path / "v3.annl")
    np.testing.assert_array_equal(again.search_batched(data[:8], 5, leaves_to_search=4).ids,
                                  index.search_batched(data[:8], 5, leaves_to_search=4).ids)


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
