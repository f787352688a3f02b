"""Crafted index files with valid checksums (issue 12).

Every file here passes every checksum: what it gets wrong is its content, so the
loader's consistency checks (annlib/_format_checks.py) must refuse it with
FormatError before the C++ core sees it, and the C++ view itself must refuse
what it is handed directly. None may crash, over-allocate or load.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _crafting import write_index

import annlib
from annlib import _core
from annlib import io as annlib_io
from annlib.errors import FormatError

KIND = "tree_ah"
_VARIANTS = {
    "dot_float": {"metric": "dot"},
    "l2_soar": {"metric": "squared_l2", "soar_lambda": 1.5},
    "cosine_int8": {"metric": "cosine", "reorder_quantize": "int8"},
    "dot_soar_noreorder": {"metric": "dot", "soar_lambda": 1.0, "reorder": None},
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1212)
    return rng.standard_normal((400, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """Each variant saved once: (path, kind, config, arrays as writable copies)."""
    out = {}
    for name, kwargs in _VARIANTS.items():
        index = annlib.TreeAhIndex(data, num_leaves=10, num_leaves_to_search=3, num_threads=1, **kwargs)
        path = tmp_path_factory.mktemp("crafted") / f"{name}.annl"
        index.save(path)
        kind, config, arrays = annlib_io.load_index_file(path, mmap=False)
        out[name] = (path, config, {k: np.array(v) for k, v in arrays.items()})
    return out


def _craft(saved, variant, tmp_path, edit_config=None, edit_arrays=None, config_json=None):
    _, config, arrays = saved[variant]
    config, arrays = copy.deepcopy(config), {k: v.copy() for k, v in arrays.items()}
    if edit_config is not None:
        edit_config(config)
    if edit_arrays is not None:
        edit_arrays(arrays)
    path = tmp_path / "crafted.annl"
    write_index(path, KIND, config, arrays, config_json)
    return path


def _refused(path, match=None, queries=None):
    with pytest.raises(FormatError, match=match):
        index = annlib.TreeAhIndex.load(path)
        index.search_batched(queries if queries is not None else np.zeros((2, 12), np.float32), 5)


def test_the_crafting_helper_writes_files_that_load_and_search_like_the_originals(saved, data, tmp_path):
    for variant, (path, _, _) in saved.items():
        crafted = _craft(saved, variant, tmp_path)
        a, b = annlib.TreeAhIndex.load(path), annlib.TreeAhIndex.load(crafted)
        np.testing.assert_array_equal(a.search_batched(data[:20], 5).ids, b.search_batched(data[:20], 5).ids)


# ------------------------------------------------------------------ sections against the configuration


def test_an_int8_index_carrying_a_reorder_float_section_is_refused(saved, tmp_path):
    # The segfault: the core preferred the small float section and read past its end.
    path = _craft(saved, "cosine_int8", tmp_path,
                  edit_arrays=lambda a: a.update(reorder_float=np.ones((3, 12), np.float32)))
    _refused(path, "reorder_float")


@pytest.mark.parametrize(
    ("variant", "extra"),
    [
        ("dot_float", "secondary_leaf"),  # not spilled
        ("dot_float", "point_sq_norms"),  # not squared_l2
        ("dot_float", "reorder_int8"),
        ("dot_soar_noreorder", "reorder_float"),
        ("l2_soar", "junk"),
    ],
)
def test_sections_the_configuration_does_not_call_for_are_refused(saved, tmp_path, variant, extra):
    n = saved[variant][1]["n"]
    values = {"secondary_leaf": np.full(n, -1, np.int32), "point_sq_norms": np.ones(n, np.float32),
              "reorder_int8": np.zeros((n, 12), np.int8), "reorder_float": np.zeros((n, 12), np.float32),
              "junk": np.zeros(3, np.uint8)}
    path = _craft(saved, variant, tmp_path, edit_arrays=lambda a: a.update({extra: values[extra]}))
    _refused(path, extra)


@pytest.mark.parametrize(
    ("variant", "missing"),
    [("dot_float", "primary_leaf"), ("l2_soar", "secondary_leaf"), ("l2_soar", "entry_sq_norms"),
     ("cosine_int8", "reorder_int8_inv_scale"), ("dot_float", "reorder_float")],
)
def test_missing_sections_are_refused(saved, tmp_path, variant, missing):
    path = _craft(saved, variant, tmp_path, edit_arrays=lambda a: a.pop(missing))
    _refused(path, missing)


@pytest.mark.parametrize(
    ("variant", "name", "replacement"),
    [
        ("cosine_int8", "reorder_int8_inv_scale", lambda a: a[:5]),  # shorter than dim: the second segfault
        ("cosine_int8", "reorder_int8_inv_scale", lambda a: -a),
        ("cosine_int8", "reorder_int8", lambda a: a[:-1]),
        ("dot_float", "reorder_float", lambda a: a[:10]),
        ("dot_float", "reorder_float", lambda a: a.astype(np.float64)),
        ("dot_float", "centers", lambda a: a[:, :-1]),
        ("dot_float", "centers", lambda a: np.where(a == a.flat[0], np.nan, a).astype(np.float32)),
        ("dot_float", "codebook", lambda a: a[:-16]),
        ("dot_float", "entry_ids", lambda a: a.astype(np.int64)),
        ("dot_float", "packed_codes", lambda a: a[:-16]),
        ("l2_soar", "point_sq_norms", lambda a: a[:-1]),
        ("l2_soar", "entry_sq_norms", lambda a: -np.abs(a) - 1),  # reconstruction norms are >= 0
        ("l2_soar", "center_sq_norms", lambda a: -np.abs(a) - 1),
        ("l2_soar", "primary_leaf", lambda a: a[:-1]),
    ],
)
def test_sections_of_the_wrong_dtype_shape_or_values_are_refused(saved, tmp_path, variant, name, replacement):
    path = _craft(saved, variant, tmp_path, edit_arrays=lambda a: a.update({name: replacement(a[name])}))
    _refused(path, name)


# ------------------------------------------------------------------ entries, leaves, offsets


def _set(name, index, value):
    def edit(arrays):
        arrays[name][index] = value

    return edit


def _duplicate_entry(arrays):
    ids = arrays["entry_ids"]
    ids[1] = ids[0]  # a (point, leaf) pair twice and one point missing; counts unchanged


def _entry_in_a_foreign_leaf(arrays):
    ids, offsets = arrays["entry_ids"], arrays["leaf_offsets"]
    a, b = ids[offsets[0]], ids[offsets[1]]
    ids[offsets[0]], ids[offsets[1]] = b, a  # two points swapped between leaves 0 and 1


def _unsorted_offsets(arrays):
    offsets = arrays["leaf_offsets"]
    offsets[1], offsets[2] = offsets[2], offsets[1]


@pytest.mark.parametrize(
    ("variant", "edit", "match"),
    [
        ("dot_float", _set("entry_ids", 0, 400), "entry ids"),
        ("dot_float", _set("entry_ids", 0, -1), "entry ids"),
        ("dot_float", _duplicate_entry, "exactly once"),
        ("l2_soar", _duplicate_entry, "exactly once|primary and secondary"),
        ("dot_float", _entry_in_a_foreign_leaf, "primary leaf"),
        ("dot_float", _set("primary_leaf", 0, 10), "primary_leaf"),
        ("dot_float", _set("primary_leaf", 0, -1), "primary_leaf"),
        ("l2_soar", _set("secondary_leaf", 0, 10), "secondary_leaf"),
        ("l2_soar", _set("secondary_leaf", 0, -2), "secondary_leaf"),
        ("dot_soar_noreorder", _set("secondary_leaf", 3, -1), "secondary leaves"),  # entry left over
        ("dot_float", _unsorted_offsets, "leaf_offsets"),
        ("dot_float", _set("leaf_offsets", 0, 1), "leaf_offsets"),
        ("dot_float", _set("leaf_group_offsets", 1, 0), "leaf_group_offsets"),
    ],
)
def test_inconsistent_entries_leaves_and_offsets_are_refused(saved, tmp_path, variant, edit, match):
    _refused(_craft(saved, variant, tmp_path, edit_arrays=edit), match)


def test_secondary_leaf_equal_to_the_primary_is_refused(saved, tmp_path):
    def edit(arrays):
        arrays["secondary_leaf"][:] = arrays["primary_leaf"]

    _refused(_craft(saved, "l2_soar", tmp_path, edit_arrays=edit), "secondary_leaf")


# ------------------------------------------------------------------ the header against the arrays


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c.update(n=10**9), "primary_leaf|n="),
        (lambda c: c.update(n=2**40), "'n'"),
        (lambda c: c.update(n=399), "primary_leaf|entry"),
        (lambda c: c.update(dim=11), "centers"),
        (lambda c: c.update(n="400"), "'n'"),
        (lambda c: c.update(n=400.0), "'n'"),
        (lambda c: c.update(n=True), "'n'"),
        (lambda c: c.update(dim=None), "'dim'"),
        (lambda c: c.update(build_seconds="slow"), "build_seconds"),
        (lambda c: c.update(index=[1, 2]), "index configuration"),
        (lambda c: c.update(index="tree"), "index configuration"),
        (lambda c: c["index"].update(metric="hamming"), "metric"),
        (lambda c: c["index"].update(metric=3), "metric"),
        (lambda c: c["index"]["tree"].update(num_leaves="10"), "num_leaves"),
        (lambda c: c["index"]["tree"].update(num_leaves=11), "centers"),
        (lambda c: c["index"]["tree"].update(soar_lambda="abc"), "soar_lambda"),
        (lambda c: c["index"]["tree"].update(spherical="yes"), "spherical"),
        (lambda c: c["index"]["ah"].update(dims_per_block=2**64 - 1), "dims_per_block"),
        (lambda c: c["index"]["ah"].update(dims_per_block=3), "codes|packed_codes"),
        (lambda c: c["index"].update(reorder={"num_neighbors": 100, "quantize": "int8"}), "reorder"),
        (lambda c: c["index"].update(reorder=None), "reorder_float"),
        (lambda c: c["index"].update(tree=None), "tree"),
    ],
)
def test_header_values_of_the_wrong_type_or_size_are_format_errors(saved, tmp_path, edit, match):
    _refused(_craft(saved, "dot_float", tmp_path, edit_config=edit), match)


@pytest.mark.parametrize(
    "raw",
    [
        '{"index": %s, "n": 1e999, "dim": 12}',
        '{"index": %s, "n": NaN, "dim": 12}',
        '{"index": %s, "n": 400, "dim": -Infinity}',
        '{"index": %s, "n": 400, "dim": 12, "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"index": %s, "n": 1' + "0" * 5000 + ', "dim": 12}',
    ],
)
def test_raw_json_that_python_would_not_write_is_a_format_error(saved, tmp_path, raw):
    import json

    index_json = json.dumps(saved["dot_float"][1]["index"])
    path = _craft(saved, "dot_float", tmp_path, config_json=raw % index_json)
    _refused(path)
    with pytest.raises(FormatError):
        annlib_io.read_header(path)


# ------------------------------------------------------------------ the exact and JAX brute-force kinds


@pytest.mark.parametrize("kind", ["brute_force", "jax_brute_force"])
def test_flat_data_files_are_checked_against_their_section(tmp_path, data, kind):
    if kind == "jax_brute_force":
        pytest.importorskip("jax")
        annlib.JaxBruteForce(data, "dot", 5).save(tmp_path / "flat.annl")
    else:
        annlib.BruteForce(data, "dot").save(tmp_path / "flat.annl")
    kind_read, config, arrays = annlib_io.load_index_file(tmp_path / "flat.annl", mmap=False)
    assert kind_read == kind and annlib.load_index(tmp_path / "flat.annl").n == 400
    cases = [
        (config, {"data": arrays["data"].astype(np.float64)}, "float32"),
        (config, {"data": arrays["data"][:, :, None]}, "2-D"),
        (config, {"data": arrays["data"][:0]}, "empty"),
        (config, {**arrays, "norms": np.ones(400, np.float32)}, "sections"),
        ({**config, "metric": "hamming"}, arrays, "metric"),
        ({**config, "num_neighbors": "5"}, arrays, "num_neighbors"),
        (config, {"data": np.full((4, 12), 1e30, np.float32)}, "overflow"),
    ]
    if kind == "jax_brute_force":
        cases.append(({**config, "recall_target": 2.0}, arrays, "recall_target"))
    for i, (cfg, arrs, match) in enumerate(cases):
        crafted = tmp_path / f"flat{i}.annl"
        write_index(crafted, kind, cfg, arrs)
        with pytest.raises(FormatError, match=match):
            annlib.load_index(crafted)


# ------------------------------------------------------------------ the C++ view, handed bad arrays directly


def _handle(arrays, config, n=None):
    ic = config["index"]
    return _core.TreeAhHandle(arrays, "squared_l2" if ic["metric"] == "squared_l2" else "dot",
                              config["n"] if n is None else n, config["dim"], ic["tree"]["num_leaves"],
                              ic["ah"]["dims_per_block"], ic["tree"]["soar_lambda"] is not None)


def test_the_core_view_checks_a_float_section_next_to_int8_rows(saved):
    # int8 and float32 rows together are a two-stage index; a short float section must not be read past its end.
    _, config, arrays = saved["cosine_int8"]
    with pytest.raises(ValueError, match="reorder_float"):
        _handle({**arrays, "reorder_float": np.ones((3, 12), np.float32)}, config)


@pytest.mark.parametrize(
    ("name", "replacement", "match"),
    [
        ("reorder_int8_inv_scale", lambda a: a[:5], "reorder_int8_inv_scale"),
        ("reorder_int8", lambda a: a[:-1], "reorder_int8"),
        ("centers", lambda a: a[:-1], "centers"),
        ("entry_ids", lambda a: np.where(a == a[0], 10**6, a).astype(np.int32), "entry id"),
        ("leaf_offsets", lambda a: a[::-1].copy(), "leaf_offsets|start at 0"),
        ("packed_codes", lambda a: a[:-16], "packed_codes"),
    ],
)
def test_the_core_view_checks_sizes_and_offsets_itself(saved, name, replacement, match):
    _, config, arrays = saved["cosine_int8"]
    with pytest.raises(ValueError, match=match):
        _handle({**arrays, name: replacement(arrays[name])}, config)


def test_the_core_view_ignores_norm_sections_a_dot_index_does_not_use(saved, data):
    _, config, arrays = saved["dot_float"]
    reference = _handle(arrays, config).search(data[:8], 5, 3, 50, 1)
    bogus = {**arrays, "point_sq_norms": np.ones(1, np.float32), "center_sq_norms": np.ones(1, np.float32)}
    result = _handle(bogus, config).search(data[:8], 5, 3, 50, 1)
    np.testing.assert_array_equal(reference[0], result[0])


@pytest.mark.skipif(sys.platform != "linux", reason="reads ru_maxrss in kilobytes")
def test_a_spilled_view_does_not_size_scratch_from_an_overstated_n(saved, tmp_path):
    # The handle is told n = 2**28 while its entries name only 400 points: per-point
    # scratch sized from n would take 1 GiB per thread; sized from the entries, nothing.
    path, _, _ = saved["dot_soar_noreorder"]
    script = textwrap.dedent(
        f"""
        import resource, numpy as np
        from annlib import _core, io
        kind, config, arrays = io.load_index_file({str(path)!r}, mmap=False)
        ic = config["index"]
        handle = _core.TreeAhHandle(arrays, "dot", 2**28, config["dim"], ic["tree"]["num_leaves"],
                                    ic["ah"]["dims_per_block"], True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        handle.search(np.ones((16, config["dim"]), np.float32), 5, 3, 0, 1)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert int(out.stdout) < 64 * 1024  # kilobytes: far below the 1 GiB an n-sized buffer takes
