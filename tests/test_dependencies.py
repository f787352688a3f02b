"""The light install: the core never imports the extras, and a missing extra says how to install it.

Each check runs in a fresh interpreter where the optional packages are made unimportable
(``sys.modules[name] = None``, which is how Python spells "this module is absent").
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
OPTIONAL = ("jax", "jaxlib", "matplotlib", "numba", "faiss", "hnswlib", "scann")


def _run_without(blocked, body: str) -> subprocess.CompletedProcess:
    script = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


def test_core_indexes_work_without_any_extra_and_never_import_one(tmp_path):
    result = _run_without(
        OPTIONAL,
        f"""
        import numpy as np
        import annlib

        rng = np.random.default_rng(0)
        data = rng.standard_normal((2000, 32)).astype(np.float32)
        queries = data[:5]
        exact = annlib.BruteForce(data, "squared_l2")
        assert exact.search_batched(queries, 3).ids[:, 0].tolist() == [0, 1, 2, 3, 4]
        index = (
            annlib.builder(data, 10, "dot")
            .tree(num_leaves=20, num_leaves_to_search=5, training_sample_size=2000)
            .score_ah(2, anisotropic_quantization_threshold=0.2)
            .reorder(50)
            .build()
        )
        found = index.search_batched(queries, final_num_neighbors=10, leaves_to_search=5, pre_reorder_num_neighbors=50)
        path = {str(tmp_path / "index.annl")!r}
        index.save(path)
        load = getattr(annlib, "load_index", None) or type(index).load
        again = load(path).search_batched(
            queries, final_num_neighbors=10, leaves_to_search=5, pre_reorder_num_neighbors=50
        )
        assert (again.ids == found.ids).all()
        annlib.build(data, "dot", target_recall=0.9)
        annlib.datasets.ground_truth(data, queries, 5, "dot")
        loaded = sorted(name for name in {OPTIONAL!r} if sys.modules.get(name) is not None)
        print("optional modules imported:", loaded)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "optional modules imported: []" in result.stdout


def test_filters_work_without_numba_and_a_predicate_names_the_extra():
    result = _run_without(
        ("numba",),
        """
        import numpy as np
        import annlib

        data = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)
        index = annlib.BruteForce(data, "dot")
        assert set(index.search(data[0], 3, filter=[4, 9, 11]).ids.tolist()) == {4, 9, 11}
        try:
            annlib.Filter.predicate(object())
        except annlib.errors.MissingDependencyError as exc:
            print(exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "annlib[filter]"' in result.stdout


def test_importing_annlib_stays_light():
    heavy = ("jax", "matplotlib", "numba", "scipy", "h5py")
    result = _run_without((), f"import annlib\nprint(sorted(m for m in {heavy!r} if m in sys.modules))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "use",
    [
        "annlib.tpu_knn",
        "annlib.JaxBruteForce(np.eye(4, dtype=np.float32), 'dot')",
        "annlib.builder(np.eye(4, dtype=np.float32), 1, 'dot').brute_force(backend='jax').build()",
    ],
)
def test_jax_path_without_jax_names_the_extra(use):
    result = _run_without(
        ("jax", "jaxlib"),
        f"""
        import numpy as np
        import annlib
        try:
            {use}
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("no ImportError")
        """,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert 'pip install "annlib[jax]"' in result.stdout


def test_jax_package_without_jax_is_an_annlib_error():
    result = _run_without(
        ("jax", "jaxlib"),
        """
        from annlib.errors import MissingDependencyError
        try:
            import annlib.jax
        except MissingDependencyError as exc:
            print(exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "annlib[jax]"' in result.stdout


def test_bench_without_matplotlib_fails_first_and_names_the_extra(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from annlib import bench
    from annlib.cli import main
    from annlib.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "bench"
    with pytest.raises(MissingDependencyError, match=r'pip install "annlib\[bench\]"'):
        bench.benchmark("debian-minilm-10k", ["annlib"], mode="batch", out=str(out), max_queries=5, runs=1)
    assert not out.exists(), "nothing may be measured or written before the check"
    result = CliRunner().invoke(main, ["bench", "--algorithms", "annlib", "--queries", "5", "--out", str(out)])
    assert result.exit_code == 1
    assert 'pip install "annlib[bench]"' in result.output
    assert "Traceback" not in result.output


def _requirement_names(requirements) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower() for req in requirements}


def test_declared_dependencies_match_what_is_imported():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    required = _requirement_names(project["dependencies"])
    extras = {name: _requirement_names(reqs) for name, reqs in project["optional-dependencies"].items()}
    assert required == {"numpy", "h5py", "click", "tqdm"}
    # scipy was required for the cost fit's least squares until that became our own solve.
    sources = [path for path in (REPO_ROOT / "annlib").rglob("*.py")
               if re.search(r"^\s*(import|from)\s+scipy\b", path.read_text(), re.MULTILINE)]
    assert not sources, sources
    assert "numba" not in required and "matplotlib" not in required and "jax" not in required
    assert {"jax"} <= extras["jax"]
    assert {"matplotlib"} <= extras["bench"]
    # `.ci/run` installs `.[test]`: it must bring every optional package a test imports.
    assert {"pytest", "jax", "matplotlib", "pyyaml"} <= extras["test"]
