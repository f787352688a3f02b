// Anisotropic product quantization: per-block k-means codebooks and the
// score-aware coordinate-descent encoder of ScaNN ("noise shaping", algorithms.md 1.3).
#include "core/anisotropic_pq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/kmeans.h"
#include "core/metric.h"
#include "core/thread_pool.h"
#include "simd/dispatch.h"

namespace annlib {

namespace {

constexpr size_t kMaxDescentRounds = 10;  // ScaNN's limit on coordinate-descent rounds
constexpr size_t kPointsPerTask = 256;

/// Seed of block k's k-means, decorrelated from the other blocks' (splitmix64 finaliser).
uint64_t block_seed(uint64_t seed, size_t k) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(k) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void check_codebook(const PqCodebook& cb) {
  if (cb.dim == 0 || cb.dims_per_block == 0 ||
      cb.num_blocks != (cb.dim + cb.dims_per_block - 1) / cb.dims_per_block ||
      cb.centers.size() != kPqCentersPerBlock * cb.dim) {
    throw std::invalid_argument("PqCodebook: inconsistent layout (dim " + std::to_string(cb.dim) +
                                ", dims_per_block " + std::to_string(cb.dims_per_block) + ", num_blocks " +
                                std::to_string(cb.num_blocks) + ", " + std::to_string(cb.centers.size()) +
                                " center floats; expected 16 * dim)");
  }
}

/// Per-thread tables of the reference encoder, kPqCentersPerBlock entries per block.
struct ReferenceScratch {
  std::vector<double> residual_norm;  // ||r_k - c_kj||^2
  std::vector<double> parallel;       // <r_k - c_kj, x_k> / ||x||
  std::vector<size_t> order;          // blocks, by descending residual norm of the current code
  std::vector<uint8_t> code;
};

/// One point, in double and scalar: the encoder as first written, kept as the reference
/// encode_pq is tested against (encode_pq_reference).
void encode_one_reference(const PqCodebook& cb, const float* r, const float* x, double threshold,
                          ReferenceScratch& s, uint8_t* out) {
  const size_t num_blocks = cb.num_blocks;
  double sq_norm = 0.0;
  for (size_t d = 0; d < cb.dim; ++d) sq_norm += static_cast<double>(x[d]) * x[d];
  const double eta = parallel_cost_multiplier(threshold, sq_norm, cb.dim);
  const double inv_norm = sq_norm > 0.0 ? 1.0 / std::sqrt(sq_norm) : 0.0;
  // From the nearest codewords, a move that shrinks the parallel error (d_par <= 0) changes
  // the loss by delta = d_norm - (1 - eta) d_par >= d_norm >= 0 when eta <= 1: the descent
  // can never move, so skip it and its parallel table. eta < 1 is common: a threshold T
  // small against the norms (L2 on SIFT, norms ~512, T = 0.2) gives eta ~ 2e-5.
  const bool anisotropic = eta > 1.0 && inv_norm > 0.0;

  // 1. Tables, and 2. the nearest codeword of every block.
  for (size_t k = 0; k < num_blocks; ++k) {
    const size_t off = cb.block_offset(k), bd = cb.block_dim(k);
    double* rn = s.residual_norm.data() + k * kPqCentersPerBlock;
    double* par = s.parallel.data() + k * kPqCentersPerBlock;
    size_t best = 0;
    for (size_t j = 0; j < kPqCentersPerBlock; ++j) {
      const float* c = cb.codeword(k, j);
      double norm = 0.0, dot = 0.0;
      if (anisotropic) {
        for (size_t d = 0; d < bd; ++d) {
          const double e = static_cast<double>(r[off + d]) - c[d];
          norm += e * e;
          dot += e * x[off + d];
        }
        par[j] = dot * inv_norm;
      } else {
        for (size_t d = 0; d < bd; ++d) {
          const double e = static_cast<double>(r[off + d]) - c[d];
          norm += e * e;
        }
      }
      rn[j] = norm;
      if (norm < rn[best]) best = j;
    }
    s.code[k] = static_cast<uint8_t>(best);
  }

  if (anisotropic) {
    double p = 0.0;  // <e, x^>, e = r - r~
    for (size_t k = 0; k < num_blocks; ++k) p += s.parallel[k * kPqCentersPerBlock + s.code[k]];
    for (size_t k = 0; k < num_blocks; ++k) s.order[k] = k;
    std::stable_sort(s.order.begin(), s.order.end(), [&](size_t a, size_t b) {
      return s.residual_norm[a * kPqCentersPerBlock + s.code[a]] > s.residual_norm[b * kPqCentersPerBlock + s.code[b]];
    });
    // 3. Coordinate descent on L = eta * par^2 + perp^2, one block at a time.
    for (size_t round = 0; round < kMaxDescentRounds; ++round) {
      bool changed = false;
      for (size_t k : s.order) {
        const double* rn = s.residual_norm.data() + k * kPqCentersPerBlock;
        const double* par = s.parallel.data() + k * kPqCentersPerBlock;
        const size_t old = s.code[k];
        size_t best = old;
        double best_delta = 0.0;
        for (size_t j = 0; j < kPqCentersPerBlock; ++j) {
          if (j == old) continue;
          const double p_new = p - par[old] + par[j];
          const double d_par = p_new * p_new - p * p;
          if (d_par > 0.0) continue;  // only moves that shrink the parallel error (as ScaNN)
          const double d_perp = (rn[j] - rn[old]) - d_par;
          const double delta = eta * d_par + d_perp;
          if (delta < best_delta) {
            best_delta = delta;
            best = j;
          }
        }
        if (best != old) {
          p += par[best] - par[old];
          s.code[k] = static_cast<uint8_t>(best);
          changed = true;
        }
      }
      if (!changed) break;
    }
  }
  std::copy(s.code.begin(), s.code.end(), out);
}

/// Per-thread tables of the encoder, kPqCentersPerBlock entries per block.
struct EncodeScratch {
  std::vector<float> residual_norm;  // ||r_k - c_kj||^2
  std::vector<float> parallel;       // <r_k - c_kj, x_k> / ||x||
  std::vector<uint32_t> keys;        // pq_order's scratch
  std::vector<uint32_t> order;       // blocks, by descending residual norm of the current code
  std::vector<uint8_t> code;
  std::vector<float> vector;         // encode_pq_entries: the residual, then the reconstruction
};

/// ||x||^2 in double, four partial sums (the reference sums in one chain; they differ in the last bits).
double squared_norm(const float* x, size_t dim) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  size_t d = 0;
  for (; d + 4 <= dim; d += 4) {
    s0 += static_cast<double>(x[d]) * x[d];
    s1 += static_cast<double>(x[d + 1]) * x[d + 1];
    s2 += static_cast<double>(x[d + 2]) * x[d + 2];
    s3 += static_cast<double>(x[d + 3]) * x[d + 3];
  }
  for (; d < dim; ++d) s0 += static_cast<double>(x[d]) * x[d];
  return (s0 + s1) + (s2 + s3);
}

/// One point: the steps of encode_one_reference in float, the tables and the descent in SIMD
/// kernels (simd/kernels.h), without allocations.
void encode_one(const PqCodebook& cb, const float* by_dim, const KernelTable& kt, const float* r, const float* x,
                double threshold, EncodeScratch& s, uint8_t* out) {
  const size_t num_blocks = cb.num_blocks;
  const double sq_norm = squared_norm(x, cb.dim);
  const double eta = parallel_cost_multiplier(threshold, sq_norm, cb.dim);
  const double inv_norm = sq_norm > 0.0 ? 1.0 / std::sqrt(sq_norm) : 0.0;
  const bool anisotropic = eta > 1.0 && inv_norm > 0.0;  // else nearest codewords (see the reference)

  // 1. Tables, and 2. the nearest codeword of every block.
  kt.pq_tables(PqTablesArgs{r, anisotropic ? x : nullptr, by_dim, cb.dim, cb.dims_per_block,
                            static_cast<float>(inv_norm), s.residual_norm.data(), s.parallel.data(), s.code.data()});

  if (anisotropic) {
    float p = 0.f;  // <e, x^>, e = r - r~
    for (size_t k = 0; k < num_blocks; ++k) p += s.parallel[k * kPqCentersPerBlock + s.code[k]];
    // Blocks by descending residual norm of their code, ties by block index (the reference's stable sort).
    kt.pq_order(PqOrderArgs{s.residual_norm.data(), s.code.data(), num_blocks, s.keys.data(), s.order.data()});
    // 3. Coordinate descent on L = eta * par^2 + perp^2, one block at a time.
    kt.pq_descent(PqDescentArgs{s.residual_norm.data(), s.parallel.data(), s.order.data(), num_blocks,
                                static_cast<float>(eta), p, kMaxDescentRounds, s.code.data()});
  }
  std::copy(s.code.begin(), s.code.end(), out);
}

}  // namespace

PqCodebook make_pq_layout(size_t dim, size_t dims_per_block) {
  if (dim == 0 || dims_per_block == 0) throw std::invalid_argument("PQ: dim and dims_per_block must be positive");
  PqCodebook cb;
  cb.dim = dim;
  cb.dims_per_block = dims_per_block;
  cb.num_blocks = (dim + dims_per_block - 1) / dims_per_block;
  return cb;
}

PqCodebook train_pq(const float* residuals, size_t n, size_t dim, const PqOptions& opts) {
  PqCodebook cb = make_pq_layout(dim, opts.dims_per_block);
  if (n < kPqCentersPerBlock) {
    throw std::invalid_argument("train_pq: need at least 16 training points, got " + std::to_string(n));
  }
  cb.centers.resize(kPqCentersPerBlock * dim);
  const size_t workers = std::min(resolve_num_threads(opts.num_threads), cb.num_blocks);
  std::vector<std::vector<float>> slices(workers);
  ThreadPool::instance().parallel_for(cb.num_blocks, workers, [&](size_t k, size_t worker) {
    const size_t off = cb.block_offset(k), bd = cb.block_dim(k);
    std::vector<float>& slice = slices[worker];
    slice.resize(n * bd);
    for (size_t i = 0; i < n; ++i) std::copy(residuals + i * dim + off, residuals + i * dim + off + bd, slice.data() + i * bd);
    KMeansOptions ko;
    ko.num_centers = kPqCentersPerBlock;
    ko.max_iterations = opts.iterations;
    ko.seed = block_seed(opts.seed, k);
    ko.num_threads = 1;  // blocks are the parallel unit; nested pool calls would serialise
    const std::vector<float> centers = train_kmeans(slice.data(), n, bd, ko);
    std::copy(centers.begin(), centers.end(), cb.centers.begin() + static_cast<std::ptrdiff_t>(cb.center_offset(k)));
  });
  return cb;
}

double parallel_cost_multiplier(double threshold, double sq_norm, size_t dim) {
  if (!(threshold > 0.0)) return 1.0;  // NaN or <= 0: isotropic
  const double parallel_fraction = threshold * threshold / sq_norm;
  if (!(parallel_fraction < 1.0)) return kMaxParallelCostMultiplier;  // also sq_norm == 0 or NaN
  const double eta = (static_cast<double>(dim) - 1.0) * parallel_fraction / (1.0 - parallel_fraction);
  return std::min(eta, kMaxParallelCostMultiplier);
}

namespace {

/// Runs encode_one over n points in parallel; point(i, scratch) gives point i's (residual, original).
template <typename PointFn, typename AfterFn>
void encode_points(const PqCodebook& cb, size_t n, double threshold, size_t num_threads, uint8_t* codes,
                   const KernelTable& kt, PointFn point, AfterFn after) {
  check_codebook(cb);
  const size_t num_tasks = (n + kPointsPerTask - 1) / kPointsPerTask;
  if (num_tasks == 0) return;
  // Codewords by dimension: a block's 16 values of one dimension are one vector in the kernels.
  std::vector<float> by_dim(kPqCentersPerBlock * cb.dim);
  for (size_t k = 0; k < cb.num_blocks; ++k) {
    const size_t off = cb.block_offset(k), bd = cb.block_dim(k);
    for (size_t j = 0; j < kPqCentersPerBlock; ++j) {
      for (size_t d = 0; d < bd; ++d) by_dim[(off + d) * kPqCentersPerBlock + j] = cb.codeword(k, j)[d];
    }
  }
  const size_t workers = std::min(resolve_num_threads(num_threads), num_tasks);
  std::vector<EncodeScratch> scratch(workers);
  for (auto& s : scratch) {
    s.residual_norm.resize(cb.num_blocks * kPqCentersPerBlock);
    s.parallel.resize(cb.num_blocks * kPqCentersPerBlock);
    s.keys.resize((cb.num_blocks + 15) / 16 * 16);
    s.order.resize(cb.num_blocks);
    s.code.resize(cb.num_blocks);
    s.vector.resize(cb.dim);
  }
  ThreadPool::instance().parallel_for(num_tasks, workers, [&](size_t t, size_t worker) {
    EncodeScratch& s = scratch[worker];
    const size_t end = std::min(n, (t + 1) * kPointsPerTask);
    for (size_t i = t * kPointsPerTask; i < end; ++i) {
      const auto [r, x] = point(i, s);
      encode_one(cb, by_dim.data(), kt, r, x, threshold, s, codes + i * cb.num_blocks);
      after(i, s);
    }
  });
}

}  // namespace

void encode_pq(const PqCodebook& cb, const float* residuals, const float* originals, size_t n, double threshold,
               size_t num_threads, uint8_t* codes, const KernelTable& kt) {
  encode_points(
      cb, n, threshold, num_threads, codes, kt,
      [&](size_t i, EncodeScratch&) { return std::pair(residuals + i * cb.dim, originals + i * cb.dim); },
      [](size_t, EncodeScratch&) {});
}

void encode_pq_entries(const PqCodebook& cb, const float* data, const float* centers, const int64_t* points,
                       const int64_t* leaves, size_t m, double threshold, size_t num_threads, uint8_t* codes,
                       float* sq_norms) {
  const size_t dim = cb.dim;
  encode_points(
      cb, m, threshold, num_threads, codes, kernels(),
      [&](size_t i, EncodeScratch& s) {
        const float* x = data + points[i] * dim;
        const float* c = centers + leaves[i] * dim;
        for (size_t d = 0; d < dim; ++d) s.vector[d] = x[d] - c[d];
        return std::pair<const float*, const float*>(s.vector.data(), x);
      },
      [&](size_t i, EncodeScratch& s) {
        if (!sq_norms) return;
        // The reconstruction c + r~, then its norm as squared_norms computes it.
        const float* c = centers + leaves[i] * dim;
        const uint8_t* code = codes + i * cb.num_blocks;
        for (size_t k = 0; k < cb.num_blocks; ++k) {
          const float* w = cb.codeword(k, code[k]);
          for (size_t d = cb.block_offset(k), e = 0; e < cb.block_dim(k); ++d, ++e) s.vector[d] = w[e] + c[d];
        }
        squared_norms(s.vector.data(), 1, dim, sq_norms + i);
      });
}

void encode_pq(const PqCodebook& cb, const float* residuals, const float* originals, size_t n, double threshold,
               size_t num_threads, uint8_t* codes) {
  encode_pq(cb, residuals, originals, n, threshold, num_threads, codes, kernels());
}

void encode_pq_reference(const PqCodebook& cb, const float* residuals, const float* originals, size_t n,
                         double threshold, size_t num_threads, uint8_t* codes) {
  check_codebook(cb);
  const size_t num_tasks = (n + kPointsPerTask - 1) / kPointsPerTask;
  if (num_tasks == 0) return;
  const size_t workers = std::min(resolve_num_threads(num_threads), num_tasks);
  std::vector<ReferenceScratch> scratch(workers);
  for (auto& s : scratch) {
    s.residual_norm.resize(cb.num_blocks * kPqCentersPerBlock);
    s.parallel.resize(cb.num_blocks * kPqCentersPerBlock);
    s.order.resize(cb.num_blocks);
    s.code.resize(cb.num_blocks);
  }
  ThreadPool::instance().parallel_for(num_tasks, workers, [&](size_t t, size_t worker) {
    const size_t end = std::min(n, (t + 1) * kPointsPerTask);
    for (size_t i = t * kPointsPerTask; i < end; ++i) {
      encode_one_reference(cb, residuals + i * cb.dim, originals + i * cb.dim, threshold, scratch[worker],
                           codes + i * cb.num_blocks);
    }
  });
}

void decode_pq(const PqCodebook& cb, const uint8_t* codes, size_t n, float* out) {
  check_codebook(cb);
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < cb.num_blocks; ++k) {
      const uint8_t code = codes[i * cb.num_blocks + k];
      if (code >= kPqCentersPerBlock) throw std::invalid_argument("decode_pq: code out of range 0..15");
      const float* c = cb.codeword(k, code);
      std::copy(c, c + cb.block_dim(k), out + i * cb.dim + cb.block_offset(k));
    }
  }
}

double score_aware_loss(const float* originals, const float* reconstructions, size_t n, size_t dim, double eta) {
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const float* x = originals + i * dim;
    const float* y = reconstructions + i * dim;
    double sq_norm = 0.0, err = 0.0, dot = 0.0;
    for (size_t d = 0; d < dim; ++d) {
      const double e = static_cast<double>(x[d]) - y[d];
      sq_norm += static_cast<double>(x[d]) * x[d];
      err += e * e;
      dot += e * x[d];
    }
    total += err;
    if (sq_norm > 0.0) total += (eta - 1.0) * dot * dot / sq_norm;
  }
  return total;
}

}  // namespace annlib
