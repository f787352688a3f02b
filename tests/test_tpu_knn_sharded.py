"""annlib.tpu_knn.search_sharded over 4 CPU devices equals the unsharded search (issue 5).

XLA reads ``--xla_force_host_platform_device_count`` once, when JAX initialises
its backend, so the check runs in a fresh interpreter with the flag set and
leaves the JAX of this test process (one device) untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK = textwrap.dedent(
    """
    import jax
    import numpy as np
    from annlib import tpu_knn

    assert len(jax.devices()) == 4, jax.devices()
    rng = np.random.default_rng(5)
    for n, k, target, metric in [
        (10007, 10, 0.95, "dot"),        # approximate, shards padded to a multiple of L
        (10007, 10, 0.95, "squared_l2"),
        (4000, 7, 0.9, "cosine"),
        (2003, 12, 1.0, "squared_l2"),   # exact path: per-shard top-k, then merge
        (3, 5, 0.95, "dot"),             # k > n: some shards hold only padding
    ]:
        database = rng.standard_normal((n, 16), dtype=np.float32)
        queries = rng.standard_normal((33, 16), dtype=np.float32)
        one = tpu_knn.search(database, queries, k, metric, target, database_tile=1000, query_tile=16)
        four = tpu_knn.search_sharded(database, queries, k, metric, target, database_tile=1000, query_tile=16)
        np.testing.assert_array_equal(one.ids, four.ids, err_msg=f"{n} {k} {target} {metric}")
        np.testing.assert_allclose(one.distances, four.distances, rtol=1e-5, atol=1e-5)
    mesh = jax.make_mesh((2,), ("shards",), devices=jax.devices()[:2])
    two = tpu_knn.search_sharded(database, queries, 2, "dot", 0.95, mesh=mesh)
    np.testing.assert_array_equal(two.ids, tpu_knn.search(database, queries, 2, "dot", 0.95).ids)
    print("ok")
    """
)


def test_sharded_equals_unsharded_on_four_cpu_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [REPO_ROOT, env.get("PYTHONPATH", "")])
    )
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("ok")
