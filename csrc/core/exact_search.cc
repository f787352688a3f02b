#include "core/exact_search.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "core/thread_pool.h"
#include "core/top_k.h"
#include "simd/dispatch.h"

namespace annlib {

namespace {

// Each pass over the data serves one block of queries: the more queries per block, the fewer
// passes (at 1M x 128 the 64-query blocks streamed 512 MB eight times for 500 queries, and the
// search ran at 28 GMAC/s per core; 256-query blocks: 32). A block's rows stay within this much
// of L2, beside the point tile and its scores: 256 queries up to 384 dimensions, 64 at 1,536.
constexpr size_t kQueryBlockBytes = 384 * 1024;
constexpr size_t kMinQueryBlock = 64;
constexpr size_t kMaxQueryBlock = 256;
constexpr size_t kPointTile = 128;  // one tile of scores per query block: 128 KiB at most
constexpr size_t kMinShardPoints = 4096;

struct Task {
  size_t query_begin, query_end;
  size_t point_begin, point_end;
};

}  // namespace

void squared_norms(const float* data, size_t n, size_t dim, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const float* x = data + i * dim;
    double s = 0.0;
    for (size_t d = 0; d < dim; ++d) s += static_cast<double>(x[d]) * x[d];
    out[i] = static_cast<float>(s);
  }
}

void exact_search(const ExactSearchArgs& a) {
  if (a.k == 0 || a.dim == 0) throw std::invalid_argument("exact_search: k and dim must be positive");
  if (a.metric == Metric::kSquaredL2 && a.data_sq_norms == nullptr && a.n > 0) {
    throw std::invalid_argument("exact_search: squared_l2 needs the data's squared norms");
  }
  if (a.n > static_cast<size_t>(TopK::kMaxId) + 1) {
    throw std::invalid_argument("exact_search: at most 2^32 points per search");
  }
  if (a.num_queries == 0) return;
  const size_t threads = resolve_num_threads(a.num_threads);
  const size_t max_block =
      std::clamp(kQueryBlockBytes / (a.dim * sizeof(float)), kMinQueryBlock, kMaxQueryBlock);
  size_t query_blocks = (a.num_queries + max_block - 1) / max_block;
  // A whole number of blocks per thread, of equal size: 3 blocks of 200 on 2 threads would
  // leave one thread a third of the work.
  if (query_blocks >= threads) query_blocks = (query_blocks + threads - 1) / threads * threads;
  const size_t query_block = (a.num_queries + query_blocks - 1) / query_blocks;
  size_t shards = 1;
  if (query_blocks < threads && a.n >= 2 * kMinShardPoints) {
    shards = std::min((threads + query_blocks - 1) / query_blocks, a.n / kMinShardPoints);
  }

  std::vector<Task> tasks;
  const size_t shard_size = (a.n + shards - 1) / std::max<size_t>(shards, 1);
  for (size_t b = 0; b < query_blocks; ++b) {
    for (size_t s = 0; s < shards; ++s) {
      const size_t p0 = std::min(a.n, s * shard_size), p1 = std::min(a.n, (s + 1) * shard_size);
      const size_t q0 = std::min(a.num_queries, b * query_block);
      tasks.push_back({q0, std::min(a.num_queries, (b + 1) * query_block), p0, p1});
    }
  }

  // One TopK per (query, shard); merged afterwards when the data was sharded.
  std::vector<TopK> heaps(a.num_queries * shards);
  for (auto& h : heaps) h.reset(a.k);
  const KernelTable& kt = kernels();
  const size_t workers = std::min(threads, tasks.size());
  std::vector<std::vector<float>> scratch(workers, std::vector<float>(query_block * kPointTile));

  ThreadPool::instance().parallel_for(tasks.size(), workers, [&](size_t t, size_t worker) {
    const Task& task = tasks[t];
    const size_t shard = t % shards;
    const size_t nq = task.query_end - task.query_begin;
    float* scores = scratch[worker].data();
    for (size_t p = task.point_begin; p < task.point_end; p += kPointTile) {
      const size_t np = std::min(kPointTile, task.point_end - p);
      DotBlockArgs args{a.queries + task.query_begin * a.dim, nq, a.data + p * a.dim, np, a.dim, scores, kPointTile};
      kt.dot_block(args);
      for (size_t i = 0; i < nq; ++i) {
        TopK& heap = heaps[(task.query_begin + i) * shards + shard];
        const float* row = scores + i * kPointTile;
        const PointFilter* filter = a.filters.of(task.query_begin + i);
        if (filter != nullptr) {
          const float* norms = a.metric == Metric::kDot ? nullptr : a.data_sq_norms + p;
          for (size_t j = 0; j < np; ++j) {
            const float score = norms == nullptr ? row[j] : 2.f * row[j] - norms[j];
            if (score >= heap.threshold() && filter->allows(p + j)) heap.push(score, static_cast<int64_t>(p + j));
          }
        } else if (a.metric == Metric::kDot) {
          for (size_t j = 0; j < np; ++j) heap.push(row[j], static_cast<int64_t>(p + j));
        } else {
          const float* norms = a.data_sq_norms + p;
          for (size_t j = 0; j < np; ++j) heap.push(2.f * row[j] - norms[j], static_cast<int64_t>(p + j));
        }
      }
    }
  });

  std::vector<ScoredId> merged(a.k * shards);
  for (size_t q = 0; q < a.num_queries; ++q) {
    TopK& first = heaps[q * shards];
    for (size_t s = 1; s < shards; ++s) {
      TopK& other = heaps[q * shards + s];
      const size_t c = other.sorted(merged.data());
      for (size_t i = 0; i < c; ++i) first.push(merged[i].score, merged[i].id);
    }
    const size_t count = first.sorted(merged.data());
    int64_t* ids = a.out_ids + q * a.k;
    float* dist = a.out_distances + q * a.k;
    float q_norm = 0.f;
    if (a.metric == Metric::kSquaredL2) squared_norms(a.queries + q * a.dim, 1, a.dim, &q_norm);
    for (size_t i = 0; i < count; ++i) {
      ids[i] = merged[i].id;
      dist[i] = a.metric == Metric::kDot ? merged[i].score : std::max(0.f, q_norm - merged[i].score);
    }
    for (size_t i = count; i < a.k; ++i) {
      ids[i] = -1;
      dist[i] = worst_distance(a.metric);
    }
  }
}

}  // namespace annlib
