// k-means: seeded k-means++ initialisation, Lloyd iterations on the blocked SIMD
// kernel, re-seeding of small clusters. Every reduction runs in a fixed order, so
// the centers depend on (sample, options) and never on the number of threads.
#include "core/kmeans.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/metric.h"
#include "core/thread_pool.h"
#include "simd/dispatch.h"

namespace annlib {

namespace {

constexpr size_t kQueryBlock = 64;      // 64 x 384 floats = 96 KiB of points stay in L2
constexpr size_t kCenterTile = 128;     // scores of one block against one tile: 32 KiB
constexpr size_t kPointsPerTask = 256;  // assignment work unit (fixed, independent of threads)
constexpr size_t kInitChunk = 1024;     // k-means++ work unit
constexpr size_t kInitSamplePerCenter = 32;
constexpr size_t kInitMinSamplePerCenter = 4;
constexpr double kInitBudget = 4.0e9;   // multiply-adds allowed for k-means++ (~one Lloyd round at k=224, n=50k)
constexpr float kSplitStep = 0.01f;    // relative offset of the two halves of a split cluster
constexpr size_t kSmallDim = 16;        // at most this many dimensions (PQ blocks): direct distances, no dot kernel

/// splitmix64: tiny and portable, so a seed gives the same centers on every platform and standard library
/// (std::uniform_*_distribution are implementation-defined).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [0, n).
  size_t below(size_t n) { return std::min(n - 1, static_cast<size_t>(uniform() * static_cast<double>(n))); }

 private:
  uint64_t state_;
};

double exact_sq_dist(const float* a, const float* b, size_t dim) {
  double s = 0.0;
  for (size_t d = 0; d < dim; ++d) {
    const double diff = static_cast<double>(a[d]) - b[d];
    s += diff * diff;
  }
  return s;
}

void normalize(float* v, size_t dim) {
  double s = 0.0;
  for (size_t d = 0; d < dim; ++d) s += static_cast<double>(v[d]) * v[d];
  if (!(s > 0.0)) return;  // a zero center stays zero
  const double inv = 1.0 / std::sqrt(s);
  for (size_t d = 0; d < dim; ++d) v[d] = static_cast<float>(v[d] * inv);
}

/// First m entries of a seeded partial Fisher-Yates shuffle of [0, n): m distinct random indices.
std::vector<size_t> distinct_indices(size_t n, size_t m, Rng& rng) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  for (size_t i = 0; i < m; ++i) std::swap(idx[i], idx[i + rng.below(n - i)]);
  idx.resize(m);
  return idx;
}

/// Assignment for a few dimensions (PQ blocks), where the dot kernel's per-row overhead dominates: exact
/// squared distances to all centers at once, the loop over centers (transposed, contiguous) vectorised.
void assign_small_dim(const float* data, size_t n, size_t dim, const float* centers, size_t k, size_t num_threads,
                      int32_t* out_assignment, float* out_sq_dist) {
  std::vector<float> transposed(dim * k);
  for (size_t c = 0; c < k; ++c)
    for (size_t d = 0; d < dim; ++d) transposed[d * k + c] = centers[c * dim + d];
  const size_t num_tasks = (n + kPointsPerTask - 1) / kPointsPerTask;
  const size_t workers = std::min(resolve_num_threads(num_threads), num_tasks);
  std::vector<std::vector<float>> scratch(workers, std::vector<float>(k));
  ThreadPool::instance().parallel_for(num_tasks, workers, [&](size_t t, size_t worker) {
    float* __restrict dist = scratch[worker].data();
    const float* __restrict ct = transposed.data();
    const size_t end = std::min(n, (t + 1) * kPointsPerTask);
    for (size_t i = t * kPointsPerTask; i < end; ++i) {
      const float* x = data + i * dim;
      const float x0 = x[0];
      for (size_t c = 0; c < k; ++c) {
        const float diff = x0 - ct[c];
        dist[c] = diff * diff;
      }
      for (size_t d = 1; d < dim; ++d) {
        const float xd = x[d];
        const float* __restrict row = ct + d * k;
        for (size_t c = 0; c < k; ++c) {
          const float diff = xd - row[c];
          dist[c] += diff * diff;
        }
      }
      size_t best = 0;
      float best_dist = dist[0];
      for (size_t c = 1; c < k; ++c) {  // branch-free select; strict < keeps the lowest index
        const bool closer = dist[c] < best_dist;
        best = closer ? c : best;
        best_dist = closer ? dist[c] : best_dist;
      }
      out_assignment[i] = static_cast<int32_t>(best);
      if (out_sq_dist != nullptr) out_sq_dist[i] = best_dist;
    }
  });
}

void assign_impl(const float* data, size_t n, size_t dim, const float* centers, const float* center_sq_norms,
                 size_t k, size_t num_threads, int32_t* out_assignment, float* out_sq_dist) {
  const size_t num_tasks = (n + kPointsPerTask - 1) / kPointsPerTask;
  if (num_tasks == 0) return;
  if (dim <= kSmallDim) {
    assign_small_dim(data, n, dim, centers, k, num_threads, out_assignment, out_sq_dist);
    return;
  }
  const size_t workers = std::min(resolve_num_threads(num_threads), num_tasks);
  std::vector<std::vector<float>> scratch(workers, std::vector<float>(kQueryBlock * kCenterTile));
  const KernelTable& kt = kernels();

  ThreadPool::instance().parallel_for(num_tasks, workers, [&](size_t t, size_t worker) {
    float* scores = scratch[worker].data();
    float best[kQueryBlock];
    int32_t best_id[kQueryBlock];
    const size_t end = std::min(n, (t + 1) * kPointsPerTask);
    for (size_t q0 = t * kPointsPerTask; q0 < end; q0 += kQueryBlock) {
      const size_t nq = std::min(kQueryBlock, end - q0);
      std::fill(best, best + nq, std::numeric_limits<float>::infinity());
      std::fill(best_id, best_id + nq, 0);
      for (size_t c0 = 0; c0 < k; c0 += kCenterTile) {
        const size_t nc = std::min(kCenterTile, k - c0);
        DotBlockArgs args{data + q0 * dim, nq, centers + c0 * dim, nc, dim, scores, kCenterTile};
        kt.dot_block(args);
        // ||x - c||^2 - ||x||^2 = ||c||^2 - 2<x, c>; strict < keeps the lowest index among ties.
        for (size_t i = 0; i < nq; ++i) {
          const float* row = scores + i * kCenterTile;
          for (size_t j = 0; j < nc; ++j) {
            const float s = center_sq_norms[c0 + j] - 2.f * row[j];
            if (s < best[i]) {
              best[i] = s;
              best_id[i] = static_cast<int32_t>(c0 + j);
            }
          }
        }
      }
      for (size_t i = 0; i < nq; ++i) {
        out_assignment[q0 + i] = best_id[i];
        if (out_sq_dist != nullptr) {
          out_sq_dist[q0 + i] = static_cast<float>(
              exact_sq_dist(data + (q0 + i) * dim, centers + static_cast<size_t>(best_id[i]) * dim, dim));
        }
      }
    }
  });
}

/// k random distinct sample points.
std::vector<float> random_init(const float* sample, size_t n, size_t dim, size_t k, Rng& rng) {
  std::vector<float> centers(k * dim);
  const std::vector<size_t> idx = distinct_indices(n, k, rng);
  for (size_t c = 0; c < k; ++c) std::copy(sample + idx[c] * dim, sample + (idx[c] + 1) * dim, centers.data() + c * dim);
  return centers;
}

/// k-means++ (D^2 sampling) on m rows `sub` (m x dim).
std::vector<float> kmeans_pp(const float* sub, size_t m, size_t dim, size_t k, size_t num_threads, Rng& rng) {
  std::vector<float> centers(k * dim);
  std::vector<float> norms(m), dots(m);
  squared_norms(sub, m, dim, norms.data());
  std::vector<float> min_d2(m, std::numeric_limits<float>::infinity());
  const size_t num_chunks = (m + kInitChunk - 1) / kInitChunk;
  std::vector<double> chunk_sums(num_chunks);
  const KernelTable& kt = kernels();

  size_t pick = rng.below(m);
  for (size_t c = 0;; ++c) {
    float* center = centers.data() + c * dim;
    std::copy(sub + pick * dim, sub + (pick + 1) * dim, center);
    if (c + 1 == k) break;
    const float center_norm = norms[pick];
    ThreadPool::instance().parallel_for(num_chunks, num_threads, [&](size_t t, size_t) {
      const size_t begin = t * kInitChunk, count = std::min(kInitChunk, m - begin);
      DotBlockArgs args{sub + begin * dim, count, center, 1, dim, dots.data() + begin, 1};
      kt.dot_block(args);
      double sum = 0.0;
      for (size_t i = begin; i < begin + count; ++i) {
        const float d2 = std::max(0.f, norms[i] + center_norm - 2.f * dots[i]);
        min_d2[i] = std::min(min_d2[i], d2);
        sum += min_d2[i];
      }
      chunk_sums[t] = sum;
    });
    double total = 0.0;
    for (double s : chunk_sums) total += s;
    const double u = rng.uniform();
    if (!(total > 0.0) || !std::isfinite(total)) {
      pick = rng.below(m);  // every point coincides with a center already: any choice is as good
      continue;
    }
    // Walk the same chunk sums, then the points of the chosen chunk, in the order they were summed.
    double target = u * total;
    size_t t = 0;
    while (t + 1 < num_chunks && target >= chunk_sums[t]) target -= chunk_sums[t++];
    const size_t begin = t * kInitChunk, end = std::min(m, begin + kInitChunk);
    pick = end - 1;
    for (size_t i = begin; i < end; ++i) {
      if (min_d2[i] > 0.f) pick = i;  // last positive-weight point so far: the fallback against rounding
      target -= min_d2[i];
      if (target < 0.0 && min_d2[i] > 0.f) break;
    }
  }
  return centers;
}

std::vector<float> init_centers(const float* sample, size_t n, size_t dim, size_t k, size_t num_threads, Rng& rng) {
  size_t m = std::min(n, kInitSamplePerCenter * k);
  const double per_point = static_cast<double>(k) * static_cast<double>(dim);
  if (per_point * static_cast<double>(m) > kInitBudget) {
    m = std::max(k, static_cast<size_t>(kInitBudget / per_point));
    if (m < std::min(n, kInitMinSamplePerCenter * k)) return random_init(sample, n, dim, k, rng);
  }
  if (m == n) return kmeans_pp(sample, n, dim, k, num_threads, rng);
  std::vector<size_t> idx = distinct_indices(n, m, rng);
  std::sort(idx.begin(), idx.end());  // gather in memory order
  std::vector<float> sub(m * dim);
  for (size_t i = 0; i < m; ++i) std::copy(sample + idx[i] * dim, sample + (idx[i] + 1) * dim, sub.data() + i * dim);
  return kmeans_pp(sub.data(), m, dim, k, num_threads, rng);
}

/// Cluster members grouped by cluster, each group in index order (a stable counting sort).
struct Members {
  std::vector<size_t> offsets;  // k + 1
  std::vector<size_t> order;    // n point indices
  size_t count(size_t c) const { return offsets[c + 1] - offsets[c]; }
};

Members group_members(const std::vector<int32_t>& assignment, size_t k) {
  Members g;
  g.offsets.assign(k + 1, 0);
  for (int32_t a : assignment) ++g.offsets[static_cast<size_t>(a) + 1];
  for (size_t c = 0; c < k; ++c) g.offsets[c + 1] += g.offsets[c];
  g.order.resize(assignment.size());
  std::vector<size_t> next(g.offsets.begin(), g.offsets.end() - 1);
  for (size_t i = 0; i < assignment.size(); ++i) g.order[next[static_cast<size_t>(assignment[i])]++] = i;
  return g;
}

/// Centers = member means (double sums, members in index order, one center per task); empty clusters keep
/// their old center and are left to reseed_small_clusters.
void update_centers(const float* sample, size_t dim, const Members& g, size_t k, bool spherical, size_t num_threads,
                    float* centers) {
  const size_t workers = std::min(resolve_num_threads(num_threads), k);
  std::vector<std::vector<double>> acc(workers, std::vector<double>(dim));
  ThreadPool::instance().parallel_for(k, workers, [&](size_t c, size_t worker) {
    const size_t count = g.count(c);
    if (count == 0) return;
    double* sum = acc[worker].data();
    std::fill(sum, sum + dim, 0.0);
    for (size_t p = g.offsets[c]; p < g.offsets[c + 1]; ++p) {
      const float* x = sample + g.order[p] * dim;
      for (size_t d = 0; d < dim; ++d) sum[d] += x[d];
    }
    float* center = centers + c * dim;
    const double inv = 1.0 / static_cast<double>(count);
    for (size_t d = 0; d < dim; ++d) center[d] = static_cast<float>(sum[d] * inv);
    if (spherical) normalize(center, dim);
  });
}

/// Re-seeds every cluster with fewer than min_size members by splitting the currently largest cluster L:
/// a member x of L is drawn with probability proportional to its squared distance to c_L (far points
/// preferred), and c_L is replaced by the pair c_L +- kSplitStep (x - c_L). The hyperplane between the pair
/// passes through c_L, so each half takes about half of L (a far point alone would often take only itself
/// and fall below min_size again). The estimate of |L| is halved after each split so the next small cluster
/// may split another one. Returns the number of clusters re-seeded.
size_t reseed_small_clusters(const float* sample, size_t dim, const Members& g, const std::vector<float>& sq_dist,
                             size_t k, size_t min_size, bool spherical, Rng& rng, float* centers) {
  std::vector<size_t> estimate(k);
  for (size_t c = 0; c < k; ++c) estimate[c] = g.count(c);
  std::vector<char> fresh(k, 0);
  size_t reseeded = 0;
  for (size_t j = 0; j < k; ++j) {
    if (g.count(j) >= min_size) continue;
    size_t largest = k;
    for (size_t c = 0; c < k; ++c) {
      if (c == j || fresh[c] || g.count(c) == 0) continue;
      if (largest == k || estimate[c] > estimate[largest]) largest = c;
    }
    if (largest == k || estimate[largest] < 2) break;
    const size_t begin = g.offsets[largest], end = g.offsets[largest + 1];
    double total = 0.0;
    for (size_t p = begin; p < end; ++p) total += sq_dist[g.order[p]];
    const double u = rng.uniform();
    size_t chosen = g.order[begin + std::min(end - begin - 1, static_cast<size_t>(u * (end - begin)))];
    if (total > 0.0) {
      double target = u * total;
      for (size_t p = begin; p < end; ++p) {
        const size_t i = g.order[p];
        if (sq_dist[i] > 0.f) chosen = i;
        target -= sq_dist[i];
        if (target < 0.0 && sq_dist[i] > 0.f) break;
      }
    }
    const float* x = sample + chosen * dim;
    float* c_large = centers + largest * dim;
    float* c_new = centers + j * dim;
    for (size_t d = 0; d < dim; ++d) {
      const float step = kSplitStep * (x[d] - c_large[d]);
      c_new[d] = c_large[d] + step;
      c_large[d] -= step;
    }
    if (spherical) {
      normalize(c_new, dim);
      normalize(c_large, dim);
    }
    estimate[largest] -= estimate[largest] / 2;
    fresh[j] = 1;
    ++reseeded;
  }
  return reseeded;
}

}  // namespace

void assign_to_centers(const float* data, size_t n, size_t dim, const float* centers, size_t num_centers,
                       size_t num_threads, int32_t* out_assignment, float* out_sq_dist) {
  if (num_centers == 0 || dim == 0) throw std::invalid_argument("assign_to_centers: num_centers and dim must be positive");
  if (num_centers > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw std::invalid_argument("assign_to_centers: too many centers for int32 assignments");
  }
  std::vector<float> center_norms(num_centers);
  squared_norms(centers, num_centers, dim, center_norms.data());
  assign_impl(data, n, dim, centers, center_norms.data(), num_centers, num_threads, out_assignment, out_sq_dist);
}

std::vector<float> train_kmeans(const float* sample, size_t n, size_t dim, const KMeansOptions& opts) {
  const size_t k = opts.num_centers;
  if (k == 0 || dim == 0) throw std::invalid_argument("train_kmeans: num_centers and dim must be positive");
  if (n < k) {
    throw std::invalid_argument("train_kmeans: the sample has " + std::to_string(n) + " points, fewer than num_centers=" +
                                std::to_string(k));
  }
  if (k > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw std::invalid_argument("train_kmeans: num_centers must fit in int32");
  }
  Rng rng(opts.seed);
  std::vector<float> centers = init_centers(sample, n, dim, k, opts.num_threads, rng);
  if (opts.spherical) {
    for (size_t c = 0; c < k; ++c) normalize(centers.data() + c * dim, dim);
  }
  if (opts.max_iterations == 0) return centers;

  const size_t min_size = std::max<size_t>(1, std::min(opts.min_cluster_size, n / k));
  std::vector<int32_t> assignment(n);
  std::vector<float> sq_dist(n);
  assign_to_centers(sample, n, dim, centers.data(), k, opts.num_threads, assignment.data(), sq_dist.data());
  double distortion = 0.0;
  for (float d : sq_dist) distortion += d;

  for (size_t it = 0; it < opts.max_iterations; ++it) {
    const Members g = group_members(assignment, k);
    update_centers(sample, dim, g, k, opts.spherical, opts.num_threads, centers.data());
    const size_t reseeded =
        reseed_small_clusters(sample, dim, g, sq_dist, k, min_size, opts.spherical, rng, centers.data());
    assign_to_centers(sample, n, dim, centers.data(), k, opts.num_threads, assignment.data(), sq_dist.data());
    double next = 0.0;
    for (float d : sq_dist) next += d;
    const bool converged = reseeded == 0 && std::abs(distortion - next) <= opts.tolerance * distortion;
    distortion = next;
    if (converged) break;
  }
  return centers;
}

}  // namespace annlib
