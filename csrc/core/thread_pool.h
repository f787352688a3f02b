// A persistent worker pool: threads are created once per process, never per call.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/cpu_limits.h"

namespace annlib {

/// Resolve a user's thread count: 0 means default_threads() (core/cpu_limits.h), the CPUs this
/// process may use.
size_t resolve_num_threads(size_t requested);

class ThreadPool {
 public:
  /// The process-wide pool.
  static ThreadPool& instance();

  /// Runs fn(task, worker) for task in [0, num_tasks) on up to num_threads threads
  /// (the caller is worker 0). worker < num_threads identifies per-thread scratch.
  /// Calls from several threads at once are serialised. An exception thrown by
  /// fn is rethrown in the caller after every task has stopped.
  void parallel_for(size_t num_tasks, size_t num_threads, const std::function<void(size_t, size_t)>& fn);

  ~ThreadPool();

 private:
  ThreadPool() = default;
  void ensure_workers(size_t count);
  void worker_loop(size_t worker);
  void run_tasks(size_t worker);

  std::mutex call_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(size_t, size_t)>* fn_ = nullptr;
  size_t num_tasks_ = 0;
  size_t next_task_ = 0;
  size_t active_workers_ = 0;   // workers (beyond the caller) taking part in this call
  size_t finished_workers_ = 0;
  size_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace annlib
