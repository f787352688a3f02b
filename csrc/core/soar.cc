// SOAR secondary assignment: blocked candidate scoring on the SIMD inner-product
// kernel, then an exact double-precision rescoring of each point's best few.
#include "core/soar.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "simd/dispatch.h"

namespace annlib {

namespace {

constexpr size_t kPointBlock = 64;      // points scored together (64 x 384 floats of r_hat = 96 KiB)
constexpr size_t kCenterTile = 128;     // centers per kernel call
constexpr size_t kPointsPerTask = 256;  // work unit, fixed: the result does not depend on num_threads
constexpr size_t kRescore = 4;          // float candidates kept per point for the exact rescoring

struct Candidates {
  float score[kRescore];
  int32_t id[kRescore];
  size_t count;

  void reset() {
    count = 0;
    std::fill(score, score + kRescore, std::numeric_limits<float>::infinity());
    std::fill(id, id + kRescore, -1);
  }
  // Keeps the kRescore lowest scores; among equal scores the earlier (lower) center stays ahead.
  void offer(float s, int32_t c) {
    if (count == kRescore && !(s < score[kRescore - 1])) return;
    size_t pos = std::min(count, kRescore - 1);
    while (pos > 0 && s < score[pos - 1]) {
      score[pos] = score[pos - 1];
      id[pos] = id[pos - 1];
      --pos;
    }
    score[pos] = s;
    id[pos] = c;
    if (count < kRescore) ++count;
  }
};

/// r = x - c in double; returns ||r||^2.
double residual(const float* x, const float* c, size_t dim, double* r) {
  double s = 0.0;
  for (size_t d = 0; d < dim; ++d) {
    r[d] = static_cast<double>(x[d]) - c[d];
    s += r[d] * r[d];
  }
  return s;
}

}  // namespace

void soar_secondary_assignment(const float* data, size_t n, size_t dim, const float* centers, size_t num_centers,
                               const int32_t* primary, double lambda, SpillMode mode, size_t num_threads,
                               int32_t* out_secondary) {
  if (num_centers == 0 || dim == 0) {
    throw std::invalid_argument("soar_secondary_assignment: num_centers and dim must be positive");
  }
  if (num_centers > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw std::invalid_argument("soar_secondary_assignment: too many centers for int32 assignments");
  }
  if (mode == SpillMode::kSoar && !(std::isfinite(lambda) && lambda >= 0.0)) {
    throw std::invalid_argument("soar_secondary_assignment: lambda must be finite and >= 0, got " +
                                std::to_string(lambda));
  }
  for (size_t i = 0; i < n; ++i) {
    if (primary[i] < 0 || static_cast<size_t>(primary[i]) >= num_centers) {
      throw std::invalid_argument("soar_secondary_assignment: primary[" + std::to_string(i) + "] = " +
                                  std::to_string(primary[i]) + " is not a center index in [0, " +
                                  std::to_string(num_centers) + ")");
    }
  }
  if (n == 0) return;
  if (num_centers == 1) {
    std::fill(out_secondary, out_secondary + n, -1);
    return;
  }
  const bool amplify = mode == SpillMode::kSoar && lambda > 0.0;
  const float lam = static_cast<float>(lambda);

  std::vector<float> center_sq_norms(num_centers);
  for (size_t c = 0; c < num_centers; ++c) {
    double s = 0.0;
    for (size_t d = 0; d < dim; ++d) s += static_cast<double>(centers[c * dim + d]) * centers[c * dim + d];
    center_sq_norms[c] = static_cast<float>(s);
  }

  const size_t num_tasks = (n + kPointsPerTask - 1) / kPointsPerTask;
  const size_t workers = std::min(resolve_num_threads(num_threads), num_tasks);
  struct Scratch {
    std::vector<float> xc, rc, r_hat;  // X C^T tile, R_hat C^T tile, r_hat rows (float, for the kernel)
    std::vector<double> r_hat_exact;   // r_hat of the block in double, for the rescoring
    std::vector<double> diff;          // x - c' in double
  };
  std::vector<Scratch> scratch(workers);
  for (Scratch& s : scratch) {
    s.xc.resize(kPointBlock * kCenterTile);
    if (amplify) {
      s.rc.resize(kPointBlock * kCenterTile);
      s.r_hat.resize(kPointBlock * dim);
      s.r_hat_exact.resize(kPointBlock * dim);
    }
    s.diff.resize(dim);
  }
  const KernelTable& kt = kernels();

  ThreadPool::instance().parallel_for(num_tasks, workers, [&](size_t t, size_t worker) {
    Scratch& s = scratch[worker];
    Candidates cand[kPointBlock];
    float x_dot_rhat[kPointBlock];
    const size_t end = std::min(n, (t + 1) * kPointsPerTask);
    for (size_t p0 = t * kPointsPerTask; p0 < end; p0 += kPointBlock) {
      const size_t np = std::min(kPointBlock, end - p0);
      const float* xb = data + p0 * dim;
      if (amplify) {
        for (size_t i = 0; i < np; ++i) {
          const float* x = xb + i * dim;
          double* re = s.r_hat_exact.data() + i * dim;
          float* rf = s.r_hat.data() + i * dim;
          const double sq = residual(x, centers + static_cast<size_t>(primary[p0 + i]) * dim, dim, re);
          const double inv = sq < kSoarMinResidualSqNorm ? 0.0 : 1.0 / std::sqrt(sq);
          double xr = 0.0;
          for (size_t d = 0; d < dim; ++d) {
            re[d] *= inv;
            rf[d] = static_cast<float>(re[d]);
            xr += static_cast<double>(x[d]) * re[d];
          }
          x_dot_rhat[i] = static_cast<float>(xr);
        }
      }
      for (size_t i = 0; i < np; ++i) cand[i].reset();

      for (size_t c0 = 0; c0 < num_centers; c0 += kCenterTile) {
        const size_t nc = std::min(kCenterTile, num_centers - c0);
        kt.dot_block(DotBlockArgs{xb, np, centers + c0 * dim, nc, dim, s.xc.data(), kCenterTile});
        if (amplify) kt.dot_block(DotBlockArgs{s.r_hat.data(), np, centers + c0 * dim, nc, dim, s.rc.data(), kCenterTile});
        for (size_t i = 0; i < np; ++i) {
          // Loss minus the constant ||x||^2: ||c'||^2 - 2<x, c'> [+ lambda (<x, r_hat> - <c', r_hat>)^2].
          const float* xc = s.xc.data() + i * kCenterTile;
          const int32_t skip = primary[p0 + i];
          Candidates& ci = cand[i];
          if (amplify) {
            const float* rc = s.rc.data() + i * kCenterTile;
            const float xr = x_dot_rhat[i];
            for (size_t j = 0; j < nc; ++j) {
              const float par = xr - rc[j];
              const float sc = center_sq_norms[c0 + j] - 2.f * xc[j] + lam * par * par;
              const int32_t c = static_cast<int32_t>(c0 + j);
              if (c != skip) ci.offer(sc, c);
            }
          } else {
            for (size_t j = 0; j < nc; ++j) {
              const float sc = center_sq_norms[c0 + j] - 2.f * xc[j];
              const int32_t c = static_cast<int32_t>(c0 + j);
              if (c != skip) ci.offer(sc, c);
            }
          }
        }
      }

      // Exact rescoring of the best few in double; ties go to the lower center index.
      for (size_t i = 0; i < np; ++i) {
        const float* x = xb + i * dim;
        const double* re = amplify ? s.r_hat_exact.data() + i * dim : nullptr;
        double best = std::numeric_limits<double>::infinity();
        int32_t best_id = -1;
        for (size_t k = 0; k < cand[i].count; ++k) {
          const int32_t c = cand[i].id[k];
          const double sq = residual(x, centers + static_cast<size_t>(c) * dim, dim, s.diff.data());
          double loss = sq;
          if (amplify) {
            double par = 0.0;
            for (size_t d = 0; d < dim; ++d) par += s.diff[d] * re[d];
            loss += lambda * par * par;
          }
          if (loss < best || (loss == best && c < best_id)) {
            best = loss;
            best_id = c;
          }
        }
        out_secondary[p0 + i] = best_id;
      }
    }
  });
}

}  // namespace annlib
