// SOAR secondary assignment (algorithms.md section 4): for every point, a second
// partition whose residual is as orthogonal as possible to the primary residual.
// Public within the core; Python reaches it through bindings/bind_soar.cc.
#pragma once

#include <cstddef>
#include <cstdint>

namespace annlib {

/// How the secondary ("spilled") center is chosen.
enum class SpillMode {
  /// Minimise ||x - c'||^2 + lambda * <x - c', r_hat>^2, r_hat = (x - c_primary) / ||x - c_primary||
  /// (r_hat = 0 when ||x - c_primary||^2 < kSoarMinResidualSqNorm).
  kSoar,
  /// Minimise ||x - c'||^2: plain spilling to the nearest other center (lambda ignored).
  kNearest,
};

/// Residuals with a smaller squared norm have no direction: r_hat = 0 (ScaNN's threshold).
constexpr double kSoarMinResidualSqNorm = 1e-7;

/// Secondary center of every row of `data` (n x dim) among `centers` (num_centers x dim), the primary
/// center excluded: every point is spilled (no "stay in the primary only" outcome) unless num_centers == 1,
/// where every output is -1.
///
/// Candidates are scored over blocks of points x tiles of centers with the blocked SIMD inner-product
/// kernel (X C^T and R_hat C^T, expanding ||x - c'||^2 = ||x||^2 - 2<x, c'> + ||c'||^2 and
/// <x - c', r_hat> = <x, r_hat> - <c', r_hat>); the few best candidates of each point are then rescored
/// exactly in double, and the lowest loss wins (ties: lower center index). Parallel over fixed blocks of
/// points on num_threads threads (0 = all); the result does not depend on num_threads.
///
/// Throws std::invalid_argument if num_centers == 0, dim == 0, lambda is negative or not finite
/// (kSoar only), or a primary index is out of range.
void soar_secondary_assignment(const float* data, size_t n, size_t dim, const float* centers, size_t num_centers,
                               const int32_t* primary, double lambda, SpillMode mode, size_t num_threads,
                               int32_t* out_secondary);

}  // namespace annlib
