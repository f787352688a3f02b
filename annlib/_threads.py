"""How many threads ``num_threads=None`` (or 0) uses: what the process may run on, not the machine.

The core decides it (``csrc/core/cpu_limits.cc``), so every parallel call, from Python or not, agrees;
this module only reports it.
"""

from __future__ import annotations

from annlib import _core


def default_num_threads() -> int:
    """The thread count annlib uses when ``num_threads`` is None or 0.

    The smallest of the hardware thread count, the process's CPU affinity mask
    (``os.sched_getaffinity``, e.g. under ``taskset``) and the cgroup CPU quota of a
    container (``docker --cpus``, Kubernetes CPU limits), rounded up; at least 1.
    """
    return int(_core.default_threads())


def cpu_limits() -> dict:
    """The inputs of :func:`default_num_threads`; 0 means "no limit found" for the last two."""
    return {
        "hardware_threads": int(_core.hardware_threads()),
        "affinity_cpus": int(_core.affinity_cpus()),
        "cgroup_quota_cpus": int(_core.cgroup_quota_cpus()),
    }
