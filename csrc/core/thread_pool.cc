#include "core/thread_pool.h"

#include <exception>

namespace annlib {

size_t resolve_num_threads(size_t requested) { return requested == 0 ? default_threads() : requested; }

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
}

void ThreadPool::ensure_workers(size_t count) {
  while (workers_.size() < count) {
    const size_t worker = workers_.size() + 1;  // the caller is worker 0
    workers_.emplace_back([this, worker] { worker_loop(worker); });
  }
}

void ThreadPool::run_tasks(size_t worker) {
  for (;;) {
    size_t task;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (next_task_ >= num_tasks_ || error_) return;
      task = next_task_++;
    }
    try {
      (*fn_)(task, worker);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      return;
    }
  }
}

void ThreadPool::worker_loop(size_t worker) {
  size_t seen_generation = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] { return stop_ || generation_ != seen_generation; });
      if (stop_) return;
      seen_generation = generation_;
      if (worker > active_workers_) continue;  // not needed for this call
    }
    run_tasks(worker);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++finished_workers_;
    }
    done_cv_.notify_all();
  }
}

void ThreadPool::parallel_for(size_t num_tasks, size_t num_threads, const std::function<void(size_t, size_t)>& fn) {
  if (num_tasks == 0) return;
  num_threads = resolve_num_threads(num_threads);
  if (num_threads > num_tasks) num_threads = num_tasks;
  if (num_threads <= 1) {
    for (size_t t = 0; t < num_tasks; ++t) fn(t, 0);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ensure_workers(num_threads - 1);
    fn_ = &fn;
    num_tasks_ = num_tasks;
    next_task_ = 0;
    active_workers_ = num_threads - 1;
    finished_workers_ = 0;
    error_ = nullptr;
    ++generation_;
  }
  work_cv_.notify_all();
  run_tasks(0);
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [&] { return finished_workers_ == active_workers_; });
    fn_ = nullptr;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace annlib
