// How many CPUs this process may actually use: the affinity mask and the cgroup CPU quota,
// not only the machine's hardware thread count (containers, taskset, batch schedulers).
#pragma once

#include <cstddef>
#include <string>

namespace annlib {

/// Number of hardware threads (at least 1).
size_t hardware_threads();

/// CPUs in the calling thread's affinity mask (sched_getaffinity); 0 when unknown.
size_t affinity_cpus();

/// CPUs granted by the cgroup CPU quota, rounded up (v2 cpu.max, v1 cpu.cfs_quota_us /
/// cpu.cfs_period_us), the tightest over the process's cgroup and its ancestors; 0 when
/// there is no quota or no cgroup file could be read. The paths are parameters for tests.
size_t cgroup_quota_cpus(const std::string& cgroup_root = "/sys/fs/cgroup",
                         const std::string& proc_self_cgroup = "/proc/self/cgroup");

/// The thread count a call with num_threads == 0 uses: the smallest of hardware threads,
/// the affinity mask and the cgroup quota (at least 1).
size_t default_threads();

}  // namespace annlib
