"""annlib/_core.pyi describes the compiled module: the same names, the same parameters in order."""

from __future__ import annotations

import ast
import pathlib

import pytest

from annlib import _core

STUB = pathlib.Path(__file__).resolve().parent.parent / "annlib" / "_core.pyi"


def _stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text(), filename=str(STUB))


def _stub_functions(body) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in body if isinstance(node, ast.FunctionDef)}


def _stub_classes() -> dict[str, ast.ClassDef]:
    return {node.name: node for node in _stub_tree().body if isinstance(node, ast.ClassDef)}


def _public(names) -> set[str]:
    return {name for name in names if not name.startswith("_")}


def _stub_params(node: ast.FunctionDef) -> list[tuple[str, bool]]:
    args = node.args.args
    defaults = [False] * (len(args) - len(node.args.defaults)) + [True] * len(node.args.defaults)
    return [(arg.arg, has_default) for arg, has_default in zip(args, defaults) if arg.arg != "self"]


def _core_params(function) -> list[tuple[str, bool]]:
    """Parameter names (and whether each has a default) from pybind11's signature line."""
    first = function.__doc__.strip().splitlines()[0]
    name, rest = first.split("(", 1)
    tree = ast.parse(f"def {name.strip()}({rest.rsplit(') ->', 1)[0]}): pass")
    return _stub_params(tree.body[0])


def test_stub_names_are_the_module_names():
    tree = _stub_tree()
    stub = _public(_stub_functions(tree.body)) | _public(_stub_classes())
    assert stub == _public(dir(_core))


@pytest.mark.parametrize("name", sorted(_public(_stub_functions(_stub_tree().body))))
def test_stub_function_parameters_match(name):
    assert _stub_params(_stub_functions(_stub_tree().body)[name]) == _core_params(getattr(_core, name))


@pytest.mark.parametrize("cls", sorted(_public(_stub_classes())))
def test_stub_class_methods_match(cls):
    methods = _stub_functions(_stub_classes()[cls].body)
    real = getattr(_core, cls)
    assert _public(methods) == _public(name for name in vars(real) if callable(getattr(real, name)))
    for name, node in methods.items():
        assert _stub_params(node) == _core_params(getattr(real, name)), f"{cls}.{name}"


def test_py_typed_marker_ships_beside_the_stub():
    assert (STUB.parent / "py.typed").is_file()


def test_stubtest_agrees(tmp_path):
    """mypy's stubtest: every name, signature and type kind of the stub against the live module."""
    pytest.importorskip("mypy.stubtest")
    import os
    import subprocess
    import sys

    allowlist = pathlib.Path(__file__).resolve().parent / "stubtest_allowlist.txt"
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "annlib._core", "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "MYPY_CACHE_DIR": str(tmp_path / "mypy-cache")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
