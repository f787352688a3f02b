// The metrics the core understands. Cosine is dot product over normalised
// vectors; the Python layer normalises, so the core sees only these two.
#pragma once

#include <cstddef>
#include <limits>

namespace annlib {

enum class Metric { kDot = 0, kSquaredL2 = 1 };

/// Squared L2 norms of n rows of dimension dim.
void squared_norms(const float* data, size_t n, size_t dim, float* out);

/// Distance reported for an empty result slot: -inf similarity for dot, +inf distance for L2.
inline float worst_distance(Metric metric) {
  return metric == Metric::kDot ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
}

}  // namespace annlib
