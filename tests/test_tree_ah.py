"""The quantization index against exact search on the real sample, for every metric."""

from __future__ import annotations

import numpy as np
import pytest

import annlib

# recall@10 floors against exact search (ann-benchmarks recall, ties count), per metric
MODERATE_RECALL_FLOOR = {"dot": 0.90, "cosine": 0.90, "squared_l2": 0.90}
FULL_RECALL_FLOOR = {"dot": 0.99, "cosine": 0.99, "squared_l2": 0.99}
# maximum inner product over rows of varying norm is the hardest of the three: it probes more leaves
MODERATE_LEAVES = {"dot": 20, "cosine": 15, "squared_l2": 15}
METRICS = ["dot", "cosine", "squared_l2"]
NUM_LEAVES = 100


def recall_vs_exact(index, data, queries, metric, k=10, **search_args):
    exact = annlib.BruteForce(data, metric).search_batched(queries, k)
    found = index.search_batched(queries, k, **search_args)
    larger = metric != "squared_l2"
    return annlib.recall(found.distances, exact.distances, k, epsilon=1e-4, larger_is_better=larger), found


@pytest.fixture(scope="module")
def sample_data(request):
    real = request.getfixturevalue("real_sample")
    data = real["train"]
    # squared_l2 on unit vectors is the same ranking as dot; scale rows so norms differ and L2 is its own problem
    scales = np.random.default_rng(7).uniform(0.5, 2.0, size=(data.shape[0], 1)).astype(np.float32)
    return {"unit": data, "scaled": data * scales, "queries": real["test"]}


def data_for(sample_data, metric):
    return sample_data["unit"] if metric == "cosine" else sample_data["scaled"]


@pytest.fixture(scope="module")
def built(sample_data):
    cache = {}

    def get(metric, **kwargs):
        key = (metric, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = annlib.TreeAhIndex(
                data_for(sample_data, metric), metric, num_leaves=NUM_LEAVES, num_leaves_to_search=10,
                reorder=100, **kwargs
            )
        return cache[key]

    return get


@pytest.mark.parametrize("metric", METRICS)
def test_recall_at_moderate_setting(built, sample_data, metric):
    index = built(metric)
    recall, found = recall_vs_exact(index, data_for(sample_data, metric), sample_data["queries"], metric,
                                    leaves_to_search=MODERATE_LEAVES[metric], pre_reorder_num_neighbors=100)
    assert recall >= MODERATE_RECALL_FLOOR[metric], recall
    assert found.ids.dtype == np.int64 and found.distances.dtype == np.float32


@pytest.mark.parametrize("metric", METRICS)
def test_recall_searching_every_leaf(built, sample_data, metric):
    index = built(metric)
    recall, _ = recall_vs_exact(index, data_for(sample_data, metric), sample_data["queries"], metric,
                                leaves_to_search=NUM_LEAVES, pre_reorder_num_neighbors=500)
    assert recall >= FULL_RECALL_FLOOR[metric], recall


@pytest.mark.parametrize("metric", METRICS)
def test_reordered_distances_are_exact(built, sample_data, metric):
    index = built(metric)
    data, queries = data_for(sample_data, metric), sample_data["queries"][:20]
    ids, dist = index.search_batched(queries, 10, leaves_to_search=20)
    exact_index = annlib.BruteForce(data, metric)
    for q, row_ids, row_dist in zip(queries, ids, dist):
        x = data[row_ids].astype(np.float64)
        qq = q.astype(np.float64)
        if metric == "cosine":
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
            qq = qq / np.linalg.norm(qq)
        want = ((x - qq) ** 2).sum(1) if metric == "squared_l2" else x @ qq
        np.testing.assert_allclose(row_dist, want, rtol=1e-4, atol=1e-4)
    assert exact_index.n == data.shape[0]


def test_int8_reorder_recall(built, sample_data):
    index = built("dot", reorder_quantize="int8")
    recall, _ = recall_vs_exact(index, sample_data["scaled"], sample_data["queries"], "dot", leaves_to_search=30)
    float_recall, _ = recall_vs_exact(built("dot"), sample_data["scaled"], sample_data["queries"], "dot",
                                      leaves_to_search=30)
    # int8 rescoring swaps near-ties that float32 resolves; it must stay close to the float result
    assert recall >= 0.88 and recall >= float_recall - 0.06, (recall, float_recall)
    assert index.stats()["memory_bytes"]["reorder_int8"] * 4 == sample_data["scaled"].nbytes


def test_no_reorder_returns_ah_scores(sample_data):
    index = annlib.builder(sample_data["unit"], 10, "dot").tree(NUM_LEAVES, 10).score_ah(2, 0.2).build()
    recall, found = recall_vs_exact(index, sample_data["unit"], sample_data["queries"], "dot", leaves_to_search=15)
    assert 0.5 <= recall < 1.0
    with pytest.raises(ValueError, match="reorder"):
        index.search_batched(sample_data["queries"], 10, pre_reorder_num_neighbors=50)


def test_builder_equals_keyword_construction(sample_data):
    data = sample_data["unit"][:3000]
    a = (annlib.builder(data, 10, "dot").tree(30, 5).score_ah(2, 0.2).reorder(50).build())
    b = annlib.TreeAhIndex(data, "dot", num_leaves=30, num_leaves_to_search=5, reorder=50)
    q = sample_data["queries"][:50]
    np.testing.assert_array_equal(a.search_batched(q).ids, b.search_batched(q).ids)
    assert a.config == b.config
    assert a.config["tree"]["num_leaves"] == 30 and a.config["ah"]["dims_per_block"] == 2


def test_build_is_deterministic_and_threads_agree(sample_data):
    data = sample_data["unit"][:4000]
    q = sample_data["queries"]
    a = annlib.TreeAhIndex(data, "dot", num_leaves=40, num_leaves_to_search=5, num_threads=1)
    b = annlib.TreeAhIndex(data, "dot", num_leaves=40, num_leaves_to_search=5, num_threads=2)
    np.testing.assert_array_equal(a.search_batched(q, num_threads=1).ids, b.search_batched(q, num_threads=2).ids)


@pytest.mark.parametrize("metric", METRICS)
def test_single_query_matches_batch(built, sample_data, metric):
    """A batch scores its queries against the centers several at a time; every query
    must still get exactly the answer it gets alone (same ids, same distance bits)."""
    index = built(metric)
    q = sample_data["queries"][:23]  # tasks of four queries and a partial one
    batch = index.search_batched(q, 10, num_threads=2)
    for i in range(len(q)):
        ids, dist = index.search(q[i], 10)
        np.testing.assert_array_equal(ids, batch.ids[i])
        np.testing.assert_array_equal(dist, batch.distances[i])


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_simd_paths_give_identical_results(built, sample_data, isa):
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    index = built("dot")
    q = sample_data["queries"][:50]
    with annlib.isa_override("scalar"):
        ref = index.search_batched(q, 10, pre_reorder_num_neighbors=10)
    with annlib.isa_override(isa):
        got = index.search_batched(q, 10, pre_reorder_num_neighbors=10)
    # LUT16 sums are integer-exact across ISAs; only the float center/LUT scores may differ in the last bit
    assert (got.ids == ref.ids).mean() > 0.99


def test_save_load_round_trip(built, sample_data, tmp_path):
    index = built("squared_l2")
    path = tmp_path / "index.annl"
    index.save(path)
    for mmap in (True, False):
        loaded = annlib.TreeAhIndex.load(path, mmap=mmap)
        q = sample_data["queries"]
        a, b = index.search_batched(q, 10), loaded.search_batched(q, 10)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.distances, b.distances)
        assert loaded.config == index.config


def test_corrupt_and_truncated_files_raise(built, tmp_path):
    index = built("dot")
    path = tmp_path / "index.annl"
    index.save(path)
    blob = path.read_bytes()
    truncated = tmp_path / "truncated.annl"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(annlib.FormatError):
        annlib.TreeAhIndex.load(truncated)
    flipped = bytearray(blob)
    flipped[len(blob) // 3] ^= 0x10
    corrupt = tmp_path / "corrupt.annl"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(annlib.FormatError):
        annlib.TreeAhIndex.load(corrupt)
    # a failed save must not destroy the existing file
    index.save(path)
    assert annlib.TreeAhIndex.load(path).n == index.n


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_leaves": 10, "num_leaves_to_search": 11}, "cannot exceed num_leaves"),
        ({"num_leaves": 0}, "num_leaves must be a positive integer"),
        ({"num_leaves": 10, "num_leaves_to_search": 2, "dims_per_block": 0}, "dims_per_block"),
        ({"num_leaves": 10, "num_leaves_to_search": 2, "anisotropic_quantization_threshold": float("nan")}, "threshold"),
        ({"num_leaves": 10, "num_leaves_to_search": 2, "reorder_quantize": "int4"}, "quantize"),
        ({"num_leaves": 5000, "num_leaves_to_search": 2}, "cannot exceed the number of points"),
    ],
)
def test_invalid_parameters_raise(rng, kwargs, message):
    data = rng.standard_normal((300, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        annlib.TreeAhIndex(data, "dot", **kwargs)


def test_invalid_search_arguments_raise(built, sample_data):
    index = built("dot")
    q = sample_data["queries"][:3]
    with pytest.raises(ValueError, match="cannot exceed num_leaves"):
        index.search_batched(q, 10, leaves_to_search=NUM_LEAVES + 1)
    with pytest.raises(TypeError, match="leaves_to_serch"):
        index.search_batched(q, 10, leaves_to_serch=5)
    with pytest.raises(ValueError, match=r"shape \(n, 384\)"):
        index.search_batched(q[:, :10], 10)
    with pytest.raises(ValueError, match="NaN"):
        index.search_batched(np.full_like(q, np.nan), 10)


def test_odd_dimension_remainder_block(rng):
    data = rng.standard_normal((2000, 13)).astype(np.float32)
    index = annlib.TreeAhIndex(data, "squared_l2", num_leaves=20, num_leaves_to_search=20, dims_per_block=3, reorder=200)
    exact = annlib.BruteForce(data, "squared_l2").search_batched(data[:50], 10)
    found = index.search_batched(data[:50], 10)
    assert annlib.recall(found.distances, exact.distances, 10) >= 0.99


def test_k_larger_than_probed_points_pads(rng):
    data = rng.standard_normal((200, 8)).astype(np.float32)
    index = annlib.TreeAhIndex(data, "dot", num_leaves=20, num_leaves_to_search=1, reorder=300, num_neighbors=300)
    ids, dist = index.search_batched(data[:3], 250)
    assert (ids == -1).any()
    assert (dist[ids == -1] == -np.inf).all()
    assert all(len(set(r[r >= 0])) == (r >= 0).sum() for r in ids)


def test_anisotropic_lowers_score_aware_loss(sample_data):
    from annlib import _core

    data = sample_data["unit"][:5000]
    centers = _core.train_kmeans(data, 50, 10, True, 0, 1, 0)
    assignment, _ = _core.assign_to_centers(data, centers, 0)
    residuals = data - centers[assignment]
    codebook = _core.train_pq(residuals, 2, 10, 0, 0)
    threshold = 0.2
    eta = _core.parallel_cost_multiplier(threshold, 1.0, data.shape[1])
    losses = {}
    for name, t in (("plain", float("nan")), ("anisotropic", threshold)):
        codes = _core.encode_pq(codebook, 2, residuals, data, t, 0)
        recon = _core.decode_pq(codebook, 2, codes) + centers[assignment]
        losses[name] = _core.score_aware_loss(data, recon, eta)
    assert losses["anisotropic"] < losses["plain"]


@pytest.mark.parametrize("metric", ["squared_l2", "dot"])
def test_search_visits_exactly_the_nearest_leaves(rng, metric):
    """With every scanned entry reordered exactly, a search returns the exact top k of the points
    in the leaves_to_search best leaves: the leaf selection (a sampled cutoff when few leaves of
    many are wanted, a full selection otherwise) must pick exactly those leaves."""
    data = rng.standard_normal((6000, 24)).astype(np.float32)
    index = annlib.TreeAhIndex(data, metric, num_leaves=400, reorder=10)
    arrays = index._arrays
    offsets, entry_ids, centers = arrays["leaf_offsets"], arrays["entry_ids"], arrays["centers"].astype(np.float64)
    queries = rng.standard_normal((20, 24)).astype(np.float32)
    for leaves in (1, 3, 17, 25, 60, 400):  # 25 x 16 = 400: the last count with the cutoff
        for q in queries:
            q64 = q.astype(np.float64)
            scores = 2 * centers @ q64 - (centers**2).sum(1) if metric == "squared_l2" else centers @ q64
            best = np.argsort(-scores, kind="stable")[:leaves]
            members = np.concatenate([entry_ids[offsets[b]:offsets[b + 1]] for b in best])
            found = index.search(q, 5, leaves_to_search=leaves, pre_reorder_num_neighbors=len(members))
            exact = data[members].astype(np.float64) @ q64  # dot: the larger the nearer
            if metric == "squared_l2":
                exact = ((data[members].astype(np.float64) - q64) ** 2).sum(1)
                want = members[np.argsort(exact, kind="stable")[:5]]
            else:
                want = members[np.argsort(-exact, kind="stable")[:5]]
            got = found.ids[found.ids >= 0]  # a lone small leaf pads with -1
            np.testing.assert_array_equal(np.sort(got), np.sort(want))


@pytest.mark.parametrize("metric", ["squared_l2", "dot"])
def test_prefetching_scan_gives_the_same_results(rng, metric, monkeypatch):
    """Indexes whose leaves outgrow the cache scan each leaf in slices while prefetching the
    next one (lut16_leaf); small indexes scan whole leaves. ANNLIB_PREFETCH_NEXT_LEAF forces
    either way, and the two must agree bit for bit, single and batched."""
    data = rng.standard_normal((8000, 40)).astype(np.float32)
    queries = rng.standard_normal((30, 40)).astype(np.float32)
    results = []
    for forced in ("1", "0"):
        monkeypatch.setenv("ANNLIB_PREFETCH_NEXT_LEAF", forced)
        # ~200 entries (7 groups) a leaf; no reordering, so the distances are the LUT16 scores
        index = annlib.TreeAhIndex(data, metric, num_leaves=40)
        single = [index.search(q, 10, leaves_to_search=6) for q in queries]
        batch = index.search_batched(queries, 10, leaves_to_search=6, num_threads=2)
        results.append((np.stack([r.ids for r in single]), np.stack([r.distances for r in single]), batch.ids,
                        batch.distances))
    for with_prefetch, without in zip(*results):
        np.testing.assert_array_equal(with_prefetch, without)


@pytest.mark.parametrize("num_threads", [1, 2])
def test_a_deep_search_leaves_later_searches_as_they_were(sample_data, num_threads):
    """Searches reuse per-thread selection buffers. One left large by a deep search (4 x 2,000
    candidates) once held the score threshold down in every later shallow search: it rises only
    when the buffer fills, so three times the entries were kept, and a search ran up to a third
    slower after any deep one (the autotuner's statistics pass included). Entries past the
    threshold are what a filter is asked about, so with a filter that bars one point the count
    shows it: a shallow search is the same before and after a deep one, work and answer. A new
    index: one searched deeply before would start with large buffers."""
    index = annlib.TreeAhIndex(sample_data["unit"], "cosine", num_leaves=NUM_LEAVES, reorder=100)
    queries = sample_data["queries"][:64]
    mask = np.ones(index.n, dtype=bool)
    mask[0] = False
    one_barred = annlib.Filter.bitmap(mask)

    def shallow():
        found = index.search_batched(queries, 10, leaves_to_search=4, pre_reorder_num_neighbors=20,
                                     num_threads=num_threads, filter=one_barred, filter_route="index")
        return found, index.last_search_counters["filter_checks"]

    before, checks_before = shallow()
    assert checks_before > 0
    index.search_batched(queries, 10, leaves_to_search=NUM_LEAVES, pre_reorder_num_neighbors=2000,
                         num_threads=num_threads)
    after, checks_after = shallow()
    assert checks_after == checks_before
    np.testing.assert_array_equal(after.ids, before.ids)
