"""The default thread count follows what the process may run on: affinity mask and cgroup quota."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import annlib
from annlib import _core

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no sched_getaffinity here")


@needs_affinity
def test_default_is_at_most_the_affinity_mask():
    assert 1 <= annlib.default_num_threads() <= len(os.sched_getaffinity(0))
    assert annlib.cpu_info()["threads"] == annlib.default_num_threads()


@needs_affinity
@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset is not installed")
def test_taskset_one_cpu_gives_one_default_thread():
    code = (
        "import json, os, numpy as np, annlib\n"
        "x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)\n"
        "ids = annlib.BruteForce(x, 'squared_l2').search_batched(x[:5], 1).ids[:, 0].tolist()\n"
        "print(json.dumps({'mask': len(os.sched_getaffinity(0)), 'default': annlib.default_num_threads(),\n"
        "                  'info': annlib.cpu_info()['threads'], 'ids': ids}))\n"
    )
    proc = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["mask"] == 1
    assert got["default"] == got["mask"] == got["info"]
    assert got["ids"] == [0, 1, 2, 3, 4]  # the default-threaded search still runs and is right


def _tree(tmp_path, proc_cgroup: str, files: dict[str, str]):
    for rel, text in files.items():
        path = tmp_path / "cg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "cgroup").write_text(proc_cgroup)
    return str(tmp_path / "cg"), str(tmp_path / "cgroup")


def test_cgroup_v2_quota_rounds_up_and_takes_the_tightest_ancestor(tmp_path):
    root, proc = _tree(tmp_path, "0::/kubepods/pod1\n", {
        "kubepods/pod1/cpu.max": "150000 100000\n",  # 1.5 CPUs -> 2 threads
        "kubepods/cpu.max": "max 100000\n",
    })
    assert _core.cgroup_quota_cpus(root, proc) == 2
    (tmp_path / "cg" / "kubepods" / "cpu.max").write_text("50000 100000\n")  # parent: half a CPU
    assert _core.cgroup_quota_cpus(root, proc) == 1


def test_cgroup_v2_without_quota_is_unlimited(tmp_path):
    root, proc = _tree(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert _core.cgroup_quota_cpus(root, proc) == 0


def test_cgroup_v1_cfs_quota_in_a_container_mount(tmp_path):
    # inside a container the cpu controller's root is the container's cgroup, while
    # /proc/self/cgroup still names the host path
    root, proc = _tree(tmp_path, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n", {
        "cpu,cpuacct/cpu.cfs_quota_us": "300000\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert _core.cgroup_quota_cpus(root, proc) == 3
    (tmp_path / "cg" / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _core.cgroup_quota_cpus(root, proc) == 0


def test_missing_cgroup_files_mean_no_limit(tmp_path):
    assert _core.cgroup_quota_cpus(str(tmp_path / "nowhere"), str(tmp_path / "no-such-file")) == 0
    root, proc = _tree(tmp_path, "garbage line\n0::/x\n", {"x/cpu.max": "not numbers\n"})
    assert _core.cgroup_quota_cpus(root, proc) == 0


@pytest.mark.parametrize(("cpu_max", "cpus"), [
    ("  250000\t100000\n", 3),          # blanks around the numbers
    ("1e400 100000\n", 0),              # overflows a double: no usable limit
    ("100000000000000 1\n", 0),         # more CPUs than any machine: no limit
    ("garbage\n", 0), ("100000\n", 0),  # no period
    ("-1 100000\n", 0), ("max\n", 0),
])
def test_cgroup_v2_odd_files_parse_without_crashing(tmp_path, cpu_max, cpus):
    """The parser needs no locale (an iostream's number parser crashed on an H200 host whose
    libstdc++ was older than the compiler's headers); odd contents mean no limit, never a crash."""
    root, proc = _tree(tmp_path, "0::/process_api/abc\n", {"process_api/cpu.max": cpu_max})
    assert _core.cgroup_quota_cpus(root, proc) == cpus


def test_cgroup_path_without_a_slash_is_read_as_the_root(tmp_path):
    root, proc = _tree(tmp_path, "0::weird\n", {"cpu.max": "200000 100000\n"})
    assert _core.cgroup_quota_cpus(root, proc) == 2
