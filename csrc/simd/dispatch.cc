// Fills the kernel tables and holds the active one.
#include "simd/dispatch.h"

#include <atomic>
#include <stdexcept>

namespace annlib {

namespace {

const KernelTable kScalarTable{Isa::kScalar, &dot_block_scalar, &dot_by_dim_scalar, &dot_f32_i8_scalar, &lut16_scalar, &lut16_keep_scalar, &greater_mask32_scalar, &l2_mask32_scalar, &quantize_lut_scalar, &build_lut_scalar, &pq_tables_scalar, &pq_order_scalar, &pq_descent_scalar};
#if defined(ANNLIB_X86)
const KernelTable kAvx2Table{Isa::kAvx2, &dot_block_avx2, &dot_by_dim_avx2, &dot_f32_i8_avx2, &lut16_avx2, &lut16_keep_avx2, &greater_mask32_avx2, &l2_mask32_avx2, &quantize_lut_avx2, &build_lut_avx2, &pq_tables_avx2, &pq_order_avx2, &pq_descent_avx2};
const KernelTable kAvx512Table{Isa::kAvx512, &dot_block_avx512, &dot_by_dim_avx512, &dot_f32_i8_avx512, &lut16_avx512, &lut16_keep_avx512, &greater_mask32_avx512, &l2_mask32_avx512, &quantize_lut_avx512, &build_lut_avx512, &pq_tables_avx512, &pq_order_avx512, &pq_descent_avx512};
#endif

std::atomic<const KernelTable*>& active_table() {
  static std::atomic<const KernelTable*> table{&kernels_for(best_isa())};
  return table;
}

}  // namespace

const KernelTable& kernels_for(Isa isa) {
  if (!isa_supported(isa)) {
    throw std::invalid_argument("SIMD path '" + isa_name(isa) + "' is not supported by this CPU");
  }
  switch (isa) {
    case Isa::kScalar:
      return kScalarTable;
#if defined(ANNLIB_X86)
    case Isa::kAvx2:
      return kAvx2Table;
    case Isa::kAvx512:
      return kAvx512Table;
#else
    default:
      break;
#endif
  }
  throw std::invalid_argument("SIMD path '" + isa_name(isa) + "' is not compiled into this build");
}

const KernelTable& kernels() { return *active_table().load(std::memory_order_acquire); }

void set_active_isa(Isa isa) { active_table().store(&kernels_for(isa), std::memory_order_release); }

Isa active_isa() { return kernels().isa; }

}  // namespace annlib
