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


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (2 CPUs) for every test module that shards: starting one costs ~10 s
    on this machine, so the modules share it; stopped at the end of the session."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
