// The kernel table: one function pointer per kernel family, filled for the
// active ISA. Everything outside simd/ calls kernels only through kernels().
#pragma once

#include "simd/isa.h"
#include "simd/kernels.h"

namespace annlib {

struct KernelTable {
  Isa isa;
  DotBlockFn dot_block;
  DotByDimFn dot_by_dim;
  DotF32I8Fn dot_f32_i8;
  Lut16Fn lut16;
  Lut16KeepFn lut16_keep;
  GreaterMask32Fn greater_mask32;
  L2Mask32Fn l2_mask32;
  QuantizeLutFn quantize_lut;
  BuildLutFn build_lut;
  PqTablesFn pq_tables;
  PqOrderFn pq_order;
  PqDescentFn pq_descent;
};

/// The table for `isa`; throws std::invalid_argument if the CPU cannot run it.
const KernelTable& kernels_for(Isa isa);

/// The active table (the best supported ISA unless set_active_isa chose another).
const KernelTable& kernels();

/// Switch the process-wide SIMD path; throws std::invalid_argument if unsupported.
void set_active_isa(Isa isa);

/// The ISA of the active table.
Isa active_isa();

}  // namespace annlib
