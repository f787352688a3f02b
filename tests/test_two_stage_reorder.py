"""int8 reordering against float32 on real data, and two-stage reordering (int8 in memory, then
float32 rows memory-mapped from the index file) (issue 15).

The recall bounds compare searches of one index that differ only in how candidates are rescored:
``exact_reorder_num_neighbors=0`` returns the int8 scores, ``= pre_reorder`` rescores every
candidate with the float32 rows (the float32 reordering's result), a small value is two-stage.
"""

from __future__ import annotations

import copy
import mmap
import pathlib

import numpy as np
import pytest

import annlib
from annlib import io as annlib_io
from annlib.errors import FormatError, InvalidValueError
from conftest import SHARED_DATASETS
from _crafting import write_index

SIFT = SHARED_DATASETS / "sift-debian-textures-1m-128-euclidean.hdf5"
K = 10


def _strict_recall(ids, truth) -> float:
    return float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(ids, truth)]))


def _truth(train, queries, metric) -> np.ndarray:
    return annlib.BruteForce(train, metric).search_batched(queries, K).ids


def _recalls(index, queries, truth, leaves, pre, exact):
    def run(e):
        ids = index.search_batched(queries, K, leaves_to_search=leaves, pre_reorder_num_neighbors=pre,
                                   exact_reorder_num_neighbors=e, num_threads=2).ids
        return _strict_recall(ids, truth)

    return run(pre), run(0), run(exact)


@pytest.fixture(scope="module")
def sift_50k():
    """The first 50k rows of the shared 1M SIFT set (integers 0-255 as float32), 300 queries."""
    h5py = pytest.importorskip("h5py")
    if not SIFT.exists():
        pytest.skip(f"dataset not present: {SIFT}")
    with h5py.File(SIFT, "r") as f:
        train = np.asarray(f["train"][:50_000], dtype=np.float32)
        queries = np.asarray(f["test"][:300], dtype=np.float32)
    return train, queries, _truth(train, queries, "squared_l2")


@pytest.fixture(scope="module")
def minilm_20k(debian_minilm):
    train = np.ascontiguousarray(debian_minilm["train"][:20_000])
    queries = np.ascontiguousarray(debian_minilm["test"][:300])
    return train, queries, _truth(train, queries, "cosine")


def _two_stage(train, metric, **kw):
    return annlib.TreeAhIndex(train, metric, num_leaves=int(np.sqrt(len(train))), reorder=100,
                              reorder_quantize="int8", reorder_exact_num_neighbors=20, num_threads=2, **kw)


# ------------------------------------------------------------------ int8 against float32 on real data


def test_int8_codes_of_8_bit_sift_are_exact_and_lose_no_recall(sift_50k):
    train, queries, truth = sift_50k
    index = _two_stage(train, "squared_l2")
    arrays = index._arrays
    decoded = arrays["reorder_int8"].astype(np.float32) * arrays["reorder_int8_inv_scale"] + arrays["reorder_int8_offset"]
    np.testing.assert_array_equal(decoded, train)
    assert "reorder_int8_row_scale" not in arrays  # the exact per-dimension code
    f32, int8, two = _recalls(index, queries, truth, leaves=12, pre=100, exact=20)
    assert f32 >= 0.9
    assert abs(f32 - int8) <= 0.002  # equal rows: only float rounding of tied distances differs
    assert abs(f32 - two) <= 0.002


def test_int8_reordering_of_minilm_loses_at_most_0_005_recall(minilm_20k):
    train, queries, truth = minilm_20k
    index = _two_stage(train, "cosine")
    assert "reorder_int8_row_scale" in index._arrays  # continuous data: the row-scaled code
    for leaves, pre in ((16, 100), (32, 100)):
        f32, int8, two = _recalls(index, queries, truth, leaves=leaves, pre=pre, exact=20)
        assert f32 >= 0.9
        assert f32 - int8 <= 0.005, (leaves, pre, f32, int8)
        assert abs(f32 - two) <= 0.002, (leaves, pre, f32, two)  # the two-stage reordering: float32's recall


def test_row_scaled_codes_decode_within_half_a_step_before_shaping(minilm_20k):
    from annlib.index import int8_rows

    train = minilm_20k[0][:2000]
    code = int8_rows.fit(train, shaped=False)
    codes, scale = code.encode(train)
    error = np.abs(code.decode(codes, scale) - train)
    assert (error <= 0.5 * scale[:, None] * (1 + 1e-5)).all()
    assert np.abs(codes).max() == 127  # each row's largest centred coordinate takes the last code


def test_noise_shaping_cuts_the_error_along_each_row(minilm_20k):
    from annlib.index import int8_rows

    train = minilm_20k[0][:2000]
    along = []
    for shaped in (False, True):
        code = int8_rows.fit(train, shaped=shaped)
        codes, scale = code.encode(train)
        along.append(np.abs(np.einsum("ij,ij->i", code.decode(codes, scale) - train, train)).mean())
    assert along[1] < 0.5 * along[0]


# ------------------------------------------------------------------ two-stage search semantics


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(20, 24)).astype(np.float32)
    data = (centers[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 24))).astype(np.float32)
    return data, (data[:40] + 0.05 * rng.normal(size=(40, 24))).astype(np.float32)


@pytest.mark.parametrize("metric", ["squared_l2", "dot", "cosine"])
def test_rescoring_every_candidate_exactly_returns_the_float32_reordering(small, metric):
    data, queries = small
    kw = {"num_leaves": 30, "reorder": 60, "num_threads": 1}
    f32 = annlib.TreeAhIndex(data, metric, **kw).search_batched(queries, K, leaves_to_search=6)
    two = annlib.TreeAhIndex(data, metric, reorder_quantize="int8", reorder_exact_num_neighbors=60, **kw)
    got = two.search_batched(queries, K, leaves_to_search=6)
    np.testing.assert_array_equal(got.ids, f32.ids)
    np.testing.assert_allclose(got.distances, f32.distances, rtol=1e-5, atol=1e-4)
    assert two.last_search_counters["candidates_rescored_exactly"] == 60 * len(queries)


def test_the_second_stage_rescores_at_least_k_and_at_most_the_candidates(small):
    data, queries = small
    index = annlib.TreeAhIndex(data, "dot", num_leaves=30, reorder=50, reorder_quantize="int8",
                               reorder_exact_num_neighbors=20)
    for exact, rescored in ((3, K), (20, 20), (500, 50), (0, 0)):
        index.search_batched(queries, K, exact_reorder_num_neighbors=exact)
        assert index.last_search_counters["candidates_rescored_exactly"] == rescored * len(queries), exact
    assert index.search_defaults.exact_reorder_num_neighbors == 20
    assert index.config["reorder"] == {"num_neighbors": 50, "quantize": "int8", "exact_num_neighbors": 20}


def test_two_stage_parameters_are_checked(small):
    data, _ = small
    with pytest.raises(InvalidValueError, match="quantize='int8'"):
        annlib.TreeAhIndex(data, "dot", num_leaves=10, reorder=50, reorder_exact_num_neighbors=10)
    plain = annlib.TreeAhIndex(data, "dot", num_leaves=10, reorder=50, reorder_quantize="int8")
    with pytest.raises(InvalidValueError, match="exact_reorder_num_neighbors"):
        plain.search(data[0], K, exact_reorder_num_neighbors=10)
    assert "exact_num_neighbors" not in plain.config["reorder"]  # files stay readable by older annlib
    two = annlib.builder(data, K, "dot").tree(10, 3).score_ah(2).reorder(50, "int8", exact_num_neighbors=10).build()
    with pytest.raises(ValueError, match="exact_reorder_num_neighbors"):
        two.search(data[0], K, exact_reorder_num_neighbors=-1)


def test_points_added_to_a_two_stage_index_get_both_rows_and_both_norms(small):
    data, queries = small
    index = annlib.TreeAhIndex(data[:2000], "squared_l2", num_leaves=20, reorder=50, reorder_quantize="int8",
                               reorder_exact_num_neighbors=50)
    index.add(data[2000:], ids=np.arange(2000, 3000))
    a = index._arrays
    np.testing.assert_array_equal(a["reorder_float"][2000:], data[2000:])
    np.testing.assert_allclose(a["point_sq_norms"][2000:], np.einsum("ij,ij->i", data[2000:], data[2000:]), rtol=1e-5)
    decoded = (a["reorder_int8"][2000:].astype(np.float32) * a["reorder_int8_row_scale"][2000:, None]
               * a["reorder_int8_inv_scale"] + a["reorder_int8_offset"])
    np.testing.assert_allclose(a["reorder_int8_sq_norms"][2000:], np.einsum("ij,ij->i", decoded, decoded), rtol=1e-5)
    exact = annlib.BruteForce(data, "squared_l2").search_batched(queries, K).ids
    # Every leaf and every point reordered: the two stages alone rank, and the second is exact.
    found = index.search_batched(queries, K, leaves_to_search=20, pre_reorder_num_neighbors=3000,
                                 exact_reorder_num_neighbors=3000).ids
    np.testing.assert_array_equal(found, exact)


# ------------------------------------------------------------------ float32 rows stay in the file


def _mapping_of(address: int) -> str | None:
    """The file backing ``address`` in this process (/proc/self/maps), or None for anonymous memory."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            begin, end = (int(x, 16) for x in fields[0].split("-"))
            if begin <= address < end:
                return fields[5].strip() if len(fields) == 6 and fields[5].strip().startswith("/") else None
    return None


def _is_mapped(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.obj if isinstance(base, memoryview) else base.base
    return isinstance(base, mmap.mmap)


@pytest.mark.skipif(not pathlib.Path("/proc/self/maps").exists(), reason="needs /proc/self/maps")
def test_a_loaded_two_stage_index_keeps_only_its_float32_rows_in_the_file(small, tmp_path):
    data, queries = small
    index = annlib.TreeAhIndex(data, "squared_l2", num_leaves=20, reorder=50, reorder_quantize="int8",
                               reorder_exact_num_neighbors=20)
    path = tmp_path / "two.annl"
    index.save(path)
    for loaded in (annlib.load_index(path, mmap=False), annlib.TreeAhIndex.load(path, mmap=False)):
        arrays = loaded._arrays
        rows = arrays["reorder_float"]
        assert _is_mapped(rows) and not rows.flags.writeable
        assert _mapping_of(rows.ctypes.data) == str(path.resolve())
        for name in ("reorder_int8", "packed_codes", "point_sq_norms", "reorder_int8_sq_norms"):
            assert not _is_mapped(arrays[name]) and _mapping_of(arrays[name].ctypes.data) is None, name
        np.testing.assert_array_equal(loaded.search_batched(queries, K).ids, index.search_batched(queries, K).ids)
    float_index = annlib.TreeAhIndex(data, "squared_l2", num_leaves=20, reorder=50)
    float_index.save(tmp_path / "f.annl")
    assert not _is_mapped(annlib.load_index(tmp_path / "f.annl", mmap=False)._arrays["reorder_float"])


# ------------------------------------------------------------------ crafted and truncated files


@pytest.fixture(scope="module")
def saved_two_stage(small, tmp_path_factory):
    data, _ = small
    out = {}
    for metric in ("squared_l2", "cosine"):
        index = annlib.TreeAhIndex(data[:400], metric, num_leaves=10, reorder=50, reorder_quantize="int8",
                                   reorder_exact_num_neighbors=20, num_threads=1)
        path = tmp_path_factory.mktemp("two") / f"{metric}.annl"
        index.save(path)
        _, config, arrays = annlib_io.load_index_file(path, mmap=False)
        out[metric] = (path, config, {k: np.array(v) for k, v in arrays.items()})
    return out


def _crafted(saved, metric, tmp_path, edit_config=None, edit_arrays=None):
    _, config, arrays = saved[metric]
    config, arrays = copy.deepcopy(config), {k: v.copy() for k, v in arrays.items()}
    if edit_config:
        edit_config(config)
    if edit_arrays:
        edit_arrays(arrays)
    path = tmp_path / "crafted.annl"
    write_index(path, "tree_ah", config, arrays)
    return path


@pytest.mark.parametrize(
    ("metric", "edit_config", "edit_arrays", "match"),
    [
        ("squared_l2", None, lambda a: a.pop("reorder_int8_sq_norms"), "reorder_int8_sq_norms"),
        ("squared_l2", None, lambda a: a.pop("reorder_float"), "reorder_float"),
        ("squared_l2", None, lambda a: a.update(reorder_float=a["reorder_float"][:-1]), "reorder_float"),
        ("squared_l2", None, lambda a: a.update(reorder_int8_sq_norms=-a["reorder_int8_sq_norms"]), "negative"),
        ("cosine", None, lambda a: a.update(reorder_int8_row_scale=a["reorder_int8_row_scale"][:5]), "row_scale"),
        ("cosine", None, lambda a: a.update(reorder_int8_row_scale=np.zeros_like(a["reorder_int8_row_scale"])),
         "row_scale"),
        ("cosine", None, lambda a: a.update(reorder_int8_sq_norms=np.ones(400, np.float32)), "not used"),
        ("cosine", lambda c: c["index"]["reorder"].update(quantize="float32"), None, "exact_num_neighbors"),
        ("cosine", lambda c: c["index"]["reorder"].update(exact_num_neighbors="20"), None, "exact_num_neighbors"),
        ("cosine", lambda c: c["index"]["reorder"].update(exact_num_neighbors=0), None, "exact_num_neighbors"),
        ("cosine", lambda c: c["index"]["reorder"].pop("exact_num_neighbors"), None, "reorder_float"),
        ("cosine", lambda c: c.update(index=[1]), None, "config"),
    ],
)
def test_crafted_two_stage_files_are_refused(saved_two_stage, tmp_path, metric, edit_config, edit_arrays, match):
    path = _crafted(saved_two_stage, metric, tmp_path, edit_config, edit_arrays)
    for mapped in (True, False):
        with pytest.raises(FormatError, match=match):
            annlib.load_index(path, mmap=mapped)


def test_truncated_two_stage_files_are_refused(saved_two_stage, tmp_path):
    path = saved_two_stage["squared_l2"][0]
    raw = path.read_bytes()
    for cut in (len(raw) // 3, len(raw) - 100, len(raw) - 1):
        short = tmp_path / f"cut{cut}.annl"
        short.write_bytes(raw[:cut])
        for mapped in (True, False):
            with pytest.raises(FormatError):
                annlib.load_index(short, mmap=mapped)
