"""Helpers shared by the benchmarks: loading the real dataset, timing, machine description."""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "debian-minilm-384-angular.hdf5"


def load_hdf5(path=DEFAULT_DATASET):
    """Return (train, test, neighbors, distances, metric) from an ann-benchmarks file."""
    import h5py

    with h5py.File(path, "r") as f:
        return (
            np.asarray(f["train"], dtype=np.float32),
            np.asarray(f["test"], dtype=np.float32),
            np.asarray(f["neighbors"]),
            np.asarray(f["distances"], dtype=np.float32),
            str(f.attrs["distance"]),
        )


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of fn() over `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    """One line describing the machine and the SIMD path, for RESULTS.md."""
    import annlib
    from annlib.bench.report import describe_machine

    return f"{describe_machine()}, annlib SIMD path {annlib.cpu_info()['isa']}"


def blas_threads(n: int):
    """A context limiting numpy's BLAS to n threads (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def dump(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
