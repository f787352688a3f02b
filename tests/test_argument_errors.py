"""One exception class per problem at every entry point (issue 12).

A wrong type is ``annlib.InvalidTypeError`` (an ``AnnlibError`` and a ``TypeError``),
a bad value ``annlib.InvalidValueError`` (an ``AnnlibError`` and a ``ValueError``),
whichever entry point sees it first; values that would overflow a C integer are
refused in Python with a message naming the argument, before pybind11 sees them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import annlib
from annlib import _validate
from annlib.config import AhConfig, ReorderConfig, TreeAhConfig, TreeConfig
from annlib.errors import AnnlibError, FormatError, InvalidTypeError, InvalidValueError


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(12)
    data = rng.standard_normal((300, 8)).astype(np.float32)
    tree = annlib.TreeAhIndex(data, "dot", num_leaves=8, num_leaves_to_search=2, reorder=20)
    return data, annlib.BruteForce(data, "dot"), tree


def test_the_classes_derive_from_the_library_base_and_the_standard_base():
    assert issubclass(InvalidValueError, AnnlibError) and issubclass(InvalidValueError, ValueError)
    assert issubclass(InvalidTypeError, AnnlibError) and issubclass(InvalidTypeError, TypeError)
    assert issubclass(FormatError, InvalidValueError)
    assert annlib.InvalidValueError is InvalidValueError and annlib.InvalidTypeError is InvalidTypeError


# (callable, argument name in the message, expected class)
def _calls(data, exact, tree):
    q = data[:3]
    return [
        (lambda: exact.search(q, k=True), "k", InvalidTypeError),
        (lambda: exact.search(q, k=3.0), "k", InvalidTypeError),
        (lambda: exact.search(q, k=0), "k", InvalidValueError),
        (lambda: exact.search(q, k=2**64), "k", ValueError),  # the protocol's k cap speaks first
        (lambda: exact.search_batched(q, 1, num_threads=2**64), None, None),  # capped, not refused
        (lambda: exact.search_batched(q, 1, num_threads=-1), "num_threads", InvalidValueError),
        (lambda: exact.search_batched(q, 1, num_threads=2.0), "num_threads", InvalidTypeError),
        (lambda: exact.search_batched(q, 1, num_threads="4"), "num_threads", InvalidTypeError),
        (lambda: exact.search(np.zeros((2, 3), np.float32), 1), "query", InvalidValueError),
        (lambda: exact.search(np.array(["a"] * 8), 1), "query", InvalidTypeError),
        (lambda: tree.search(q, final_num_neighbors=2**64), "final_num_neighbors|k", ValueError),
        (lambda: tree.search_batched(q, 1, num_threads=2**64), None, None),
        (lambda: annlib.BruteForce(data, 3), "metric", InvalidTypeError),
        (lambda: annlib.BruteForce(data, "hamming"), "metric", InvalidValueError),
        (lambda: annlib.BruteForce(np.zeros((0, 4), np.float32)), "data", InvalidValueError),
    ]


def test_search_and_constructor_arguments(small):
    data, exact, tree = small
    for call, name, expected in _calls(data, exact, tree):
        if expected is None:
            call()  # must simply work
            continue
        with pytest.raises(expected, match=name):
            call()


@pytest.mark.parametrize(
    ("kwargs", "name", "expected"),
    [
        ({"seed": 2**64}, "seed", InvalidValueError),
        ({"seed": -1}, "seed", InvalidValueError),
        ({"seed": 1.0}, "seed", InvalidTypeError),
        ({"dims_per_block": 2**64 - 1}, "dims_per_block", InvalidValueError),
        ({"dims_per_block": 2.0}, "dims_per_block", InvalidTypeError),
        ({"num_leaves": 2**64}, "num_leaves", InvalidValueError),
        ({"num_leaves": True}, "num_leaves", InvalidTypeError),
        ({"soar_lambda": "abc"}, "soar_lambda", InvalidTypeError),
        ({"soar_lambda": float("nan")}, "soar_lambda", InvalidValueError),
        ({"soar_lambda": -1.0}, "soar_lambda", InvalidValueError),
        ({"spherical": "yes"}, "spherical", InvalidTypeError),
        ({"spill": 3}, "spill", InvalidTypeError),
        ({"spill": "far"}, "spill", InvalidValueError),
        ({"training_iterations": 2**64}, "training_iterations", InvalidValueError),
        ({"anisotropic_quantization_threshold": "0.2"}, "anisotropic_quantization_threshold", InvalidTypeError),
        ({"reorder_quantize": "int4"}, "reorder quantize", InvalidValueError),
        ({"num_neighbors": 2**64}, "num_neighbors", InvalidValueError),
        ({"num_threads": 2.5}, "num_threads", InvalidTypeError),
    ],
)
def test_tree_ah_keyword_arguments(small, kwargs, name, expected):
    data = small[0]
    base = {"num_leaves": 8, "num_leaves_to_search": 2}
    with pytest.raises(expected, match=name):
        annlib.TreeAhIndex(data, "dot", **{**base, **kwargs})


def test_the_config_dataclasses_raise_the_same_classes_as_the_search_arguments():
    with pytest.raises(InvalidTypeError, match="num_leaves"):
        TreeConfig(num_leaves=4.0, num_leaves_to_search=1)
    with pytest.raises(InvalidValueError, match="num_leaves_to_search"):
        TreeConfig(num_leaves=4, num_leaves_to_search=5)
    with pytest.raises(InvalidTypeError, match="overretrieve_factor"):
        TreeConfig(num_leaves=4, num_leaves_to_search=1, overretrieve_factor="2")
    with pytest.raises(InvalidValueError, match="reorder num_neighbors"):
        ReorderConfig(0)
    with pytest.raises(InvalidTypeError, match="tree"):
        TreeAhConfig("dot", 10, {"num_leaves": 4}, AhConfig(), None)
    config = TreeAhConfig("dot_product", 10, TreeConfig(4, 1), AhConfig(), None)
    assert config.metric == "dot"  # stored canonical, as files carry it


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(tree=[1, 2]),
        lambda d: d.update(extra=1),
        lambda d: d.pop("ah"),
        lambda d: d["tree"].update(num_leaves="4"),
        lambda d: d["tree"].update(bogus=1),
        lambda d: d.update(reorder="float32"),
        lambda d: d.update(metric=["dot"]),
    ],
)
def test_from_dict_refuses_malformed_dicts_with_the_library_classes(mutate):
    d = TreeAhConfig("dot", 10, TreeConfig(4, 1), AhConfig(), ReorderConfig(20)).to_dict()
    mutate(d)
    with pytest.raises((InvalidTypeError, InvalidValueError)):
        TreeAhConfig.from_dict(d)


def test_num_threads_is_capped_at_a_multiple_of_the_cores():
    assert _validate.num_threads(100_000) == _validate.max_threads()
    assert _validate.num_threads(2**64) == _validate.max_threads()
    assert _validate.num_threads(3) == 3
    assert _validate.num_threads(None) == 0
    assert _validate.max_threads() >= 4 * (os.cpu_count() or 1)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_a_huge_num_threads_leaves_no_huge_thread_count_alive():
    # A fresh process, so the pool holds only what this search started.
    script = textwrap.dedent(
        """
        import os, numpy as np, annlib
        from annlib import _validate
        rng = np.random.default_rng(0)
        data = rng.standard_normal((2000, 8)).astype(np.float32)
        index = annlib.TreeAhIndex(data, "dot", num_leaves=16, num_leaves_to_search=2, reorder=None, num_threads=1)
        index.search_batched(rng.standard_normal((4000, 8)).astype(np.float32), 5, num_threads=100_000)
        annlib.BruteForce(data).search_batched(data, 5, num_threads=100_000)
        print(len(os.listdir("/proc/self/task")), _validate.max_threads())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    alive, cap = map(int, out.stdout.split())
    assert alive <= cap + 16  # the pool plus the interpreter's own threads (BLAS, ...)


def test_soar_secondary_assignment_names_its_arguments(small):
    from annlib import soar

    data = small[0]
    centers, primary = data[:4], np.zeros(len(data), np.int32)
    with pytest.raises(InvalidTypeError, match="soar_lambda"):
        soar.secondary_assignment(data, centers, primary, "abc")
    with pytest.raises(InvalidValueError, match="soar_lambda"):
        soar.secondary_assignment(data, centers, primary, -1.0)
    with pytest.raises(InvalidValueError, match="spill"):
        soar.secondary_assignment(data, centers, primary, 1.0, spill="far")


@pytest.mark.parametrize("config", [{"metric": "dot"}, None, "tree"])
def test_from_config_refuses_what_is_not_a_config(small, config):
    with pytest.raises(InvalidTypeError, match="TreeAhConfig"):
        annlib.TreeAhIndex.from_config(small[0], config)
