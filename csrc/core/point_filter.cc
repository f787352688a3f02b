#include "core/point_filter.h"

#include <algorithm>

#include "core/thread_pool.h"

namespace annlib {

void evaluate_filter(const PointFilter& filter, const int64_t* rows, size_t count, size_t num_threads,
                     uint8_t* out) {
  constexpr size_t kChunk = 4096;  // predicate calls per task
  const size_t tasks = (count + kChunk - 1) / kChunk;
  if (tasks == 0) return;
  const size_t workers = std::min(resolve_num_threads(num_threads), tasks);
  auto run = [&](size_t task, size_t) {
    const size_t end = std::min(count, (task + 1) * kChunk);
    for (size_t i = task * kChunk; i < end; ++i) out[i] = filter.allows(static_cast<size_t>(rows[i])) ? 1 : 0;
  };
  if (workers == 1) {
    for (size_t t = 0; t < tasks; ++t) run(t, 0);
  } else {
    ThreadPool::instance().parallel_for(tasks, workers, run);
  }
}

}  // namespace annlib
