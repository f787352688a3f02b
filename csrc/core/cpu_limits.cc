#include "core/cpu_limits.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace annlib {

namespace {

// Plain C I/O and strtod: on an H200 host, `istream >> double` crashed inside the locale's
// number parser (a libstdc++ older than the compiler's headers), and these few control files
// need no locale. Files are small; a read stops at 4 KiB.
bool read_file(const std::string& path, std::string& out) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return false;
  char buffer[4096];
  const size_t got = std::fread(buffer, 1, sizeof(buffer) - 1, f);
  const bool ok = std::ferror(f) == 0;
  std::fclose(f);
  if (!ok) return false;
  out.assign(buffer, got);
  return true;
}

// The number at the start of `text` (after blanks), or NaN when there is none.
double leading_number(const char* text, const char** end) {
  char* stop = nullptr;
  const double value = std::strtod(text, &stop);
  if (stop == text) {
    *end = text;
    return std::nan("");
  }
  *end = stop;
  return value;
}

size_t cpus_for(double quota, double period) {
  if (!(quota > 0) || !(period > 0) || !std::isfinite(quota / period)) return 0;
  const double cpus = std::ceil(quota / period);
  // A quota of more CPUs than any machine has is no limit (and would not fit a size_t).
  return cpus >= 1e6 ? 0 : static_cast<size_t>(std::max(1.0, cpus));
}

// v2: "max 100000" (no limit) or "<quota> <period>".
size_t cpus_from_cpu_max(const std::string& dir) {
  std::string text;
  if (!read_file(dir + "/cpu.max", text)) return 0;
  const char* rest = text.c_str();
  while (*rest == ' ' || *rest == '\t') ++rest;
  if (std::strncmp(rest, "max", 3) == 0) return 0;
  const double quota = leading_number(rest, &rest);
  const double period = leading_number(rest, &rest);
  return cpus_for(quota, period);
}

// v1: cpu.cfs_quota_us is -1 without a limit.
size_t cpus_from_cfs(const std::string& dir) {
  std::string q, p;
  if (!read_file(dir + "/cpu.cfs_quota_us", q) || !read_file(dir + "/cpu.cfs_period_us", p)) return 0;
  const char* end = nullptr;
  const double quota = leading_number(q.c_str(), &end);
  const double period = leading_number(p.c_str(), &end);
  return cpus_for(quota, period);
}

size_t tighter(size_t a, size_t b) {
  if (a == 0) return b;
  if (b == 0) return a;
  return std::min(a, b);
}

// The tightest limit from `base + path` up to `base`. A container usually mounts its own cgroup
// as the root while /proc/self/cgroup still names the host's path; then only `base` exists.
size_t walk_up(const std::string& base, std::string path, size_t (*read)(const std::string&)) {
  size_t best = 0;
  while (!path.empty() && path != "/") {
    best = tighter(best, read(base + path));
    const size_t slash = path.rfind('/');
    path.resize(slash == std::string::npos ? 0 : slash);
  }
  return tighter(best, read(base));
}

bool has_controller(const std::string& list, const std::string& name) {
  std::istringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item == name) return true;
  }
  return false;
}

}  // namespace

size_t hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

size_t affinity_cpus() {
#if defined(__linux__)
  // The mask may be larger than the default cpu_set_t (more than 1024 CPUs): grow until it fits.
  for (size_t cpus = 1024; cpus <= (1u << 20); cpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(cpus);
    if (set == nullptr) return 0;
    const size_t bytes = CPU_ALLOC_SIZE(cpus);
    CPU_ZERO_S(bytes, set);
    if (sched_getaffinity(0, bytes, set) == 0) {
      const int count = CPU_COUNT_S(bytes, set);
      CPU_FREE(set);
      return count > 0 ? static_cast<size_t>(count) : 0;
    }
    CPU_FREE(set);
  }
#endif
  return 0;
}

size_t cgroup_quota_cpus(const std::string& cgroup_root, const std::string& proc_self_cgroup) {
  std::string text;
  if (!read_file(proc_self_cgroup, text)) return 0;
  size_t best = 0;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    // "<id>:<controllers>:<path>"; v2 is "0::<path>".
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (controllers.empty()) {
      best = tighter(best, walk_up(cgroup_root, path, &cpus_from_cpu_max));
    } else if (has_controller(controllers, "cpu")) {
      best = tighter(best, walk_up(cgroup_root + "/" + controllers, path, &cpus_from_cfs));
      if (controllers != "cpu") best = tighter(best, walk_up(cgroup_root + "/cpu", path, &cpus_from_cfs));
    }
  }
  return best;
}

size_t default_threads() {
  size_t n = tighter(hardware_threads(), affinity_cpus());
  // The quota is read once: it is fixed for a container's life and costs several file reads.
  static const size_t quota = cgroup_quota_cpus();
  n = tighter(n, quota);
  return std::max<size_t>(n, 1);
}

}  // namespace annlib
