// Signatures of the SIMD kernels and their argument structs. Public within the core.
// Each kernel family has one implementation per ISA (kernel_<family>_<isa>), all
// reached through the KernelTable in dispatch.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace annlib {

/// Inner products of a block of queries with a block of points:
/// out[i * out_stride + j] = <queries[i], points[j]> for i < num_queries, j < num_points.
/// Rows are dense float32 with `dim` entries each.
struct DotBlockArgs {
  const float* queries;
  size_t num_queries;
  const float* points;
  size_t num_points;
  size_t dim;
  float* out;
  size_t out_stride;
};

using DotBlockFn = void (*)(const DotBlockArgs&);

void dot_block_scalar(const DotBlockArgs& args);
void dot_block_avx2(const DotBlockArgs& args);
void dot_block_avx512(const DotBlockArgs& args);

}  // namespace annlib
