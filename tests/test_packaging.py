"""Packaging: portable build flags, the cibuildwheel matrix, the ann-benchmarks Dockerfile's build steps.

The fast checks always run. The end-to-end checks need PyPI and several minutes, so they run only
with ``ANNLIB_PACKAGING_TEST=1``:

* ``python -m build`` makes an sdist and a wheel (the wheel built from the sdist, so the sdist is
  complete); the wheel goes into a fresh virtual environment (no system site-packages), pulls no
  plotting, JAX or Ray package, runs a search, and the test suite passes against it;
* the ``RUN`` lines of ``bench/ann_benchmarks/annlib/Dockerfile``, as they are, run in another fresh
  virtual environment with ``ANNLIB_SOURCE`` set to that sdist (the README's local route), which
  builds annlib from source there.

    ANNLIB_PACKAGING_TEST=1 python -m pytest -q tests/test_packaging.py
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "bench" / "ann_benchmarks" / "annlib" / "Dockerfile"
JAX_DOCKERFILE = REPO / "bench" / "ann_benchmarks" / "annlib_jax" / "Dockerfile"
# what a light `pip install annlib` must not pull in (plotting, JAX, Ray)
HEAVY = {"matplotlib", "plotly", "seaborn", "bokeh", "jax", "jaxlib", "ray"}

end_to_end = pytest.mark.skipif(os.environ.get("ANNLIB_PACKAGING_TEST") != "1",
                                reason="set ANNLIB_PACKAGING_TEST=1 (needs PyPI, takes minutes)")


def dockerfile_instructions(path: pathlib.Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, comments dropped, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def run_steps(path: pathlib.Path) -> list[str]:
    return [args for word, args in dockerfile_instructions(path) if word == "RUN"]


# ------------------------------------------------------------------ always


def _source_files():
    yield REPO / "CMakeLists.txt"
    yield REPO / "pyproject.toml"
    yield from (p for p in (REPO / "csrc").rglob("*") if p.is_file())


def test_nothing_is_built_for_the_build_machine():
    """A wheel built on one CPU must run on every CPU of its platform: no native-tuning flags."""
    for path in _source_files():
        text = path.read_text(errors="replace")
        for flag in ("march=native", "mtune=native", "mcpu=native", "-xHost"):
            assert flag not in text, f"{flag} in {path.relative_to(REPO)}"


def test_x86_kernels_are_compiled_on_x86_only():
    """Every -m<isa> flag and x86 kernel file sits inside the CMAKE_SYSTEM_PROCESSOR x86 block."""
    lines = (REPO / "csrc" / "CMakeLists.txt").read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("if(CMAKE_SYSTEM_PROCESSOR MATCHES") and "x86_64" in l)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("endif()"))
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("#") and re.search(r"-m(avx|fma|sse|bmi)|_avx2\.cc|_avx512\.cc", line):
            assert start < i < end, f"csrc/CMakeLists.txt:{i + 1} is outside the x86 block: {line.strip()}"
    for cc in (REPO / "csrc").rglob("*.cc"):
        if "avx" not in cc.name and "immintrin" in cc.read_text():
            pytest.fail(f"{cc.relative_to(REPO)} includes x86 intrinsics outside a per-ISA kernel file")


def test_cibuildwheel_matrix():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    assert config["build"] == ["cp310-*", "cp311-*", "cp312-*", "cp313-*"]
    assert set(config["linux"]["archs"]) == {"x86_64", "aarch64"}
    if shutil.which("cibuildwheel") is None and not (pathlib.Path(sys.executable).parent / "cibuildwheel").exists():
        return
    exe = shutil.which("cibuildwheel") or str(pathlib.Path(sys.executable).parent / "cibuildwheel")
    proc = subprocess.run([exe, "--print-build-identifiers", "--platform", "linux", "--archs", "x86_64,aarch64", str(REPO)],
                          capture_output=True, text=True, check=True, cwd=REPO)
    expected = {f"cp3{v}-manylinux_{arch}" for v in (10, 11, 12, 13) for arch in ("x86_64", "aarch64")}
    assert set(proc.stdout.split()) == expected


def test_dockerfiles_build_from_source_like_upstream_modules():
    for path in (DOCKERFILE, JAX_DOCKERFILE):
        instructions = dockerfile_instructions(path)
        assert instructions[0] == ("FROM", "ann-benchmarks")  # ann-benchmarks' base image: its Python
        assert ("ARG", "ANNLIB_SOURCE=annlib") in instructions
        # the module folder is copied to the same relative path, so a path argument means the same there
        assert ("COPY", "ann_benchmarks/algorithms/annlib ann_benchmarks/algorithms/annlib") in instructions
        steps = run_steps(path)
        assert 'pip3 install --no-binary annlib "$ANNLIB_SOURCE"' in steps  # a source build, never a wheel
        assert re.fullmatch(r"python3 -c '[^']*import annlib[^']*'", steps[-1])  # upstream's import check
        assert instructions[-1] == ("WORKDIR", "/home/app")  # where run_algorithm.py runs
    # the JAX image builds annlib the same way and adds JAX
    plain, jax = run_steps(DOCKERFILE), run_steps(JAX_DOCKERFILE)
    assert jax[: len(plain) - 1] == plain[:-1]
    assert any("jax" in step and step.startswith("pip3 install") for step in jax[len(plain) - 1:])


# ------------------------------------------------------------------ end to end


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _fresh_venv(path: pathlib.Path) -> pathlib.Path:
    """A venv without the system site-packages (what a user's clean environment is)."""
    _run([sys.executable, "-m", "venv", "--clear", str(path)])
    assert "include-system-site-packages = false" in (path / "pyvenv.cfg").read_text()
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    # Run from the output folder: in the checkout, the editable install's build/ folder is a
    # namespace package that shadows pypa's build (and would make an import check pass).
    probe = subprocess.run([sys.executable, "-c", "import build.__main__"], cwd=out, capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("pypa build is not installed (it is in the [test] extra)")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], cwd=out)
    sdists, wheels = sorted(out.glob("annlib-*.tar.gz")), sorted(out.glob("annlib-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list(out.iterdir())
    return sdists[0], wheels[0]


SMALL_SEARCH = (
    "import numpy as np, annlib\n"
    "assert 'site-packages' in annlib.__file__, annlib.__file__\n"
    "x = np.random.default_rng(0).standard_normal((2000, 32)).astype(np.float32)\n"
    "exact = annlib.BruteForce(x, 'squared_l2').search_batched(x[:20], 5).ids\n"
    "tree = annlib.TreeAhIndex(x, 'squared_l2', num_leaves=20, reorder=100)\n"
    "ids = tree.search_batched(x[:20], 5, leaves_to_search=20, pre_reorder_num_neighbors=100).ids\n"
    "assert (exact[:, 0] == np.arange(20)).all() and (ids == exact).all()\n"
    "print(annlib.__version__, annlib.cpu_info()['isa'], annlib.default_num_threads())\n"
)


@end_to_end
def test_wheel_in_a_fresh_venv_is_light_and_passes_the_suite(dist, tmp_path):
    _, wheel = dist
    assert re.search(r"-cp3\d+-cp3\d+-(linux|manylinux)\w*_(x86_64|aarch64)\.whl$", wheel.name), wheel.name
    py = _fresh_venv(tmp_path / "venv")
    _run([str(py), "-m", "pip", "install", "-q", str(wheel)])
    installed = {line.split("==")[0].lower().replace("_", "-")
                 for line in _run([str(py), "-m", "pip", "freeze", "--all"]).stdout.split()}
    assert "annlib" in installed
    assert not installed & HEAVY, sorted(installed & HEAVY)
    work = tmp_path / "elsewhere"  # away from the source tree, so the installed package is imported
    work.mkdir()
    # the suite against the installed wheel: the tracked tree copied without the package's Python
    # files (tests read bench/, csrc/, the stub and the embedded sample by path); a directory
    # annlib/ holding only the stub and py.typed, no __init__.py, does not shadow the installed package
    tracked = _run(["git", "ls-files"], cwd=REPO).stdout.split()
    for rel in tracked:
        if rel.startswith("annlib/") and rel not in ("annlib/_core.pyi", "annlib/py.typed"):
            continue
        if (REPO / rel).is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / rel, work / rel)
    _run([str(py), "-c", SMALL_SEARCH], cwd=work)  # asserts it imports the installed package
    # the suite's own requirements: the [test] extra of the same wheel
    _run([str(py), "-m", "pip", "install", "-q", f"annlib[test] @ {wheel.as_uri()}"])
    env = {k: v for k, v in os.environ.items() if k != "ANNLIB_PACKAGING_TEST"}
    proc = _run([str(py), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests"], cwd=work, env=env)
    print(proc.stdout[-2000:])


@end_to_end
def test_dockerfile_run_lines_build_the_sdist_in_a_fresh_venv(dist, tmp_path):
    """The Dockerfile's RUN lines, verbatim, with the venv's pip3/python3 first on PATH."""
    sdist, _ = dist
    venv = tmp_path / "venv"
    _fresh_venv(venv)
    assert (venv / "bin" / "pip3").exists() and (venv / "bin" / "python3").exists()
    context = tmp_path / "context"  # the image's WORKDIR after the COPY: the module folder plus the sdist
    module_copy = context / "ann_benchmarks" / "algorithms" / "annlib"
    shutil.copytree(DOCKERFILE.parent, module_copy)
    shutil.copy(sdist, module_copy / sdist.name)
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}",
               ANNLIB_SOURCE=f"ann_benchmarks/algorithms/annlib/{sdist.name}", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    for step in run_steps(DOCKERFILE):
        _run(["/bin/sh", "-c", step], cwd=context, env=env)
    proc = _run([str(venv / "bin" / "python3"), "-c", SMALL_SEARCH], cwd=tmp_path)
    print(proc.stdout)
