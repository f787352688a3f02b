// How the dimension-major kernel (DotByDimArgs) tiles a (queries x points) block,
// shared by its SIMD paths. A path supplies kLanes, kMultiVectors, a register tile
// tile<NQ, NV> (NQ queries x NV vectors of points) and a masked tail<NQ>; each
// (query, point) sum is one FMA chain over d in every tile, so the tiling never
// changes a result's bits. Paths are defined in an anonymous namespace of their own
// ISA's translation unit, so each instantiation is compiled with that ISA's flags.
#pragma once

#include <cstddef>
#include <cstdint>

#include "simd/kernels.h"

namespace annlib::by_dim {

/// A tile of exactly `vectors` (< NV) whole vectors, so they too run side by side.
template <class Path, int NQ, int NV>
inline void remainder(const DotByDimArgs& a, size_t i0, size_t j0, size_t vectors) {
  if constexpr (NV > 0) {
    if (vectors == NV) {
      Path::template tile<NQ, NV>(a, i0, j0);
    } else {
      remainder<Path, NQ, NV - 1>(a, i0, j0, vectors);
    }
  }
}

/// Queries i0 .. i0+NQ against points [j, j_end); only the last range may end in a partial tile.
template <class Path, int NQ, int NV>
inline void rows(const DotByDimArgs& a, size_t i0, size_t j = 0, size_t j_end = SIZE_MAX) {
  constexpr size_t kWidth = Path::kLanes * NV;
  j_end = j_end < a.num_points ? j_end : a.num_points;
  for (; j + kWidth <= j_end; j += kWidth) Path::template tile<NQ, NV>(a, i0, j);
  const size_t vectors = (j_end - j) / Path::kLanes;
  remainder<Path, NQ, NV - 1>(a, i0, j, vectors);
  j += Path::kLanes * vectors;
  if (j < j_end) Path::template tail<NQ>(a, i0, j);
}

/// Points per range of a batch: every query group scores one range before the next, so the
/// range (64 KiB of 128-d centers) is read from memory once per batch, not once per four
/// queries. A multiple of every path's tile width.
constexpr size_t kBatchPointRange = 128;

/// One query: eight vectors of accumulators cover the FMA latency. Several: groups of
/// four queries x kMultiVectors vectors, each point vector loaded once for four queries.
template <class Path>
inline void run(const DotByDimArgs& a) {
  if (a.num_queries == 1) {
    rows<Path, 1, 8>(a, 0);
    return;
  }
  for (size_t j = 0; j < a.num_points; j += kBatchPointRange) {
    const size_t j_end = j + kBatchPointRange;
    size_t i = 0;
    for (; i + 4 <= a.num_queries; i += 4) rows<Path, 4, Path::kMultiVectors>(a, i, j, j_end);
    switch (a.num_queries - i) {
      case 3: rows<Path, 3, Path::kMultiVectors>(a, i, j, j_end); break;
      case 2: rows<Path, 2, Path::kMultiVectors>(a, i, j, j_end); break;
      case 1: rows<Path, 1, Path::kMultiVectors>(a, i, j, j_end); break;
      default: break;
    }
  }
}

}  // namespace annlib::by_dim
