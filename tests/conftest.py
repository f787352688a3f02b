"""Shared fixtures: the real datasets (skipped cleanly when absent), seeded RNGs, the Ray cluster."""

from __future__ import annotations

import pathlib
import zlib

import numpy as np
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
DEBIAN_MINILM = SHARED_DATASETS / "debian-minilm-384-angular.hdf5"
EMBEDDED_SAMPLE = REPO_ROOT / "datasets" / "debian-minilm-10k.hdf5"


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's node id, so every test is reproducible on its own."""
    return np.random.default_rng(zlib.adler32(request.node.nodeid.encode()))


def _load_hdf5(path: pathlib.Path):
    h5py = pytest.importorskip("h5py")
    if not path.exists():
        pytest.skip(f"dataset not present: {path}")
    with h5py.File(path, "r") as f:
        return {
            "train": np.asarray(f["train"], dtype=np.float32),
            "test": np.asarray(f["test"], dtype=np.float32),
            "neighbors": np.asarray(f["neighbors"]),
            "distances": np.asarray(f["distances"], dtype=np.float32),
            "distance": str(f.attrs["distance"]),
        }


@pytest.fixture(scope="session")
def debian_minilm():
    """The full shared real dataset (50k x 384, angular); skips when ../shared is absent."""
    return _load_hdf5(DEBIAN_MINILM)


@pytest.fixture(scope="session")
def real_sample():
    """The embedded real sample (10k x 384, angular) shipped in datasets/."""
    return _load_hdf5(EMBEDDED_SAMPLE)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster (2 CPUs) for the test modules that shard. Starting one costs ~8 s on
    this machine, so consecutive modules share it: it is started when missing and stopped once
    the next test no longer needs it (:func:`pytest_runtest_teardown`), not at each module's end."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield  # the test's fixtures (the modules' indexes and their actors) are torn down first
    if "ray_cluster" in item.fixturenames and (nextitem is None or "ray_cluster" not in nextitem.fixturenames):
        import ray  # noqa: PLC0415 - only where a test used the cluster

        ray.shutdown()
