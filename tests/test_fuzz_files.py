"""Fuzzing index files (issue 12): mutated files load with FormatError or answer soundly, never crash.

Valid small index files of every kind and layout are mutated, seeded: raw bit
flips, truncations, appended and zeroed bytes (the checksums must catch them:
an accepted file must answer exactly like the original), and re-checksummed
mutations of header values and sections (values, bits, sizes, dtypes, missing
and extra sections, with every crc recomputed, so the consistency checks must
catch them: an accepted file must return well-formed results). Each batch of
cases runs in a subprocess (tests/_fuzz_worker.py), so a signal fails the test
and names the case instead of killing pytest.

``ANNLIB_FUZZ_CASES`` sets the number of cases (default 3000, about 15 s on
two cores); ``ANNLIB_FUZZ_SEED`` the seed.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

import annlib

CASES = int(os.environ.get("ANNLIB_FUZZ_CASES", "3000"))
SEED = int(os.environ.get("ANNLIB_FUZZ_SEED", "20261202"))
BATCH = 1000
WORKER = pathlib.Path(__file__).with_name("_fuzz_worker.py")


def _write_bases(directory: pathlib.Path) -> None:
    rng = np.random.default_rng(SEED)
    data = rng.standard_normal((120, 6)).astype(np.float32)
    layouts = {
        "dot_float": {"metric": "dot"},
        "l2_soar": {"metric": "squared_l2", "soar_lambda": 1.5},
        "cosine_int8": {"metric": "cosine", "reorder_quantize": "int8"},
        "l2_soar_noreorder": {"metric": "squared_l2", "soar_lambda": 1.0, "reorder": None},
    }
    for name, kwargs in layouts.items():
        index = annlib.TreeAhIndex(data, num_leaves=6, num_leaves_to_search=3, dims_per_block=4, num_threads=1,
                                   **{"reorder": 30, **kwargs})
        index.save(directory / f"{name}.annl")
    annlib.BruteForce(data[:50], "cosine").save(directory / "brute_force.annl")
    try:
        import jax  # noqa: F401
    except ImportError:
        return
    annlib.JaxBruteForce(data[:40], "squared_l2", 5, recall_target=1.0).save(directory / "jax.annl")


def _describe(base_dir: pathlib.Path, case: int) -> str:
    sys.path.insert(0, str(WORKER.parent))
    try:
        import _fuzz_worker
    finally:
        sys.path.pop(0)
    bases = [_fuzz_worker.Base(p) for p in sorted(base_dir.glob("*.annl"))]
    return _fuzz_worker.make_case(bases, SEED, case)[2]


def test_mutated_index_files_are_refused_or_answer_soundly_never_crash(tmp_path):
    base_dir, work_dir = tmp_path / "bases", tmp_path / "work"
    base_dir.mkdir()
    work_dir.mkdir()
    _write_bases(base_dir)
    outcomes: Counter = Counter()
    bad = []
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    for first in range(0, CASES, BATCH):
        stop = min(CASES, first + BATCH)
        proc = subprocess.run(
            [sys.executable, str(WORKER), str(base_dir), str(work_dir), str(SEED), str(first), str(stop)],
            capture_output=True, text=True, timeout=600, env=env,
        )
        lines = proc.stdout.splitlines()
        started = [int(line.split()[1]) for line in lines if line.startswith("start ")]
        finished = {int(line.split()[1]) for line in lines if line.startswith("done ")}
        if proc.returncode != 0:
            crashed = [i for i in started if i not in finished]
            where = f"case {crashed[0]}: {_describe(base_dir, crashed[0])}" if crashed else "before the first case"
            pytest.fail(f"fuzz worker exited with {proc.returncode} at {where}\n{proc.stderr[-2000:]}")
        for line in lines:
            if line.startswith("done "):
                _, case, outcome, *detail = line.split(" ", 3)
                outcomes[outcome] += 1
                if outcome == "bad":
                    bad.append(f"case {case}: {_describe(base_dir, int(case))}: {' '.join(detail)}")
    assert sum(outcomes.values()) == CASES
    assert not bad, f"{len(bad)} unsound outcomes of {CASES}:\n" + "\n".join(bad[:20])
    # The mix exercised both sides: files turned away and mutated files that still answer.
    assert outcomes["refused"] > CASES // 4 and outcomes["sound"] > 0, outcomes
