// Instruction-set detection and the process-wide choice of SIMD path. Public.
#pragma once

#include <string>
#include <vector>

namespace annlib {

/// The SIMD code paths annlib ships, in increasing order of capability.
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

/// CPU features that matter to annlib's kernels, read once from cpuid (and the OS's XSAVE state).
struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512dq = false;
  bool avx512vl = false;
};

/// The features of the running CPU (cached after the first call).
const CpuFeatures& cpu_features();

/// True when the running CPU and OS can execute `isa`'s kernels.
bool isa_supported(Isa isa);

/// Every ISA the running CPU supports, scalar first.
std::vector<Isa> supported_isas();

/// The best ISA the CPU supports.
Isa best_isa();

/// Lower-case name: "scalar", "avx2", "avx512".
std::string isa_name(Isa isa);

/// Parses a name from isa_name(); throws std::invalid_argument for an unknown one.
Isa parse_isa(const std::string& name);

}  // namespace annlib
