// Python bindings of LUT16 packing, LUT quantization and the per-ISA scan kernels (for tests,
// benchmarks and the quantization index). Thin: shapes in, pointers through, GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/array_view.h"
#include "core/lut16_codes.h"
#include "core/tree_ah_search.h"
#include "simd/dispatch.h"
#include "simd/isa.h"

namespace py = pybind11;
using namespace annlib;
using namespace annlib_bindings;

namespace {

void require_packed(const ByteArray& packed, size_t n, size_t num_blocks) {
  const size_t expected = lut16_packed_bytes(n, num_blocks);
  if (packed.ndim() != 1 || static_cast<size_t>(packed.shape(0)) != expected) {
    throw std::invalid_argument("packed must have shape (" + std::to_string(expected) + ",) for n=" +
                                std::to_string(n) + ", num_blocks=" + std::to_string(num_blocks) + ", got " +
                                shape_str(packed));
  }
}

ByteArray pack_py(const ByteArray& codes) {
  if (codes.ndim() != 2) throw std::invalid_argument("codes must be 2-D (n, num_blocks), got " + shape_str(codes));
  const size_t n = codes.shape(0), num_blocks = codes.shape(1);
  ByteArray packed(static_cast<py::ssize_t>(lut16_packed_bytes(n, num_blocks)));
  {
    py::gil_scoped_release release;
    pack_lut16_codes(codes.data(), n, num_blocks, packed.mutable_data());
  }
  return packed;
}

ByteArray unpack_py(const ByteArray& packed, size_t n, size_t num_blocks) {
  require_packed(packed, n, num_blocks);
  ByteArray codes({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(num_blocks)});
  {
    py::gil_scoped_release release;
    unpack_lut16_codes(packed.data(), n, num_blocks, codes.mutable_data());
  }
  return codes;
}

py::tuple quantize_py(const FloatArray& lut, const std::string& isa) {
  if (lut.ndim() != 2 || lut.shape(1) != static_cast<py::ssize_t>(kLut16Codewords)) {
    throw std::invalid_argument("lut must have shape (num_blocks, 16), got " + shape_str(lut));
  }
  const size_t num_blocks = lut.shape(0);
  ByteArray out({lut.shape(0), lut.shape(1)});
  float m;
  if (isa.empty()) {
    py::gil_scoped_release release;
    m = quantize_lut16(lut.data(), num_blocks, out.mutable_data());
  } else {
    const KernelTable& kt = kernels_for(parse_isa(isa));
    py::gil_scoped_release release;
    m = kt.quantize_lut(lut.data(), num_blocks * kLut16Codewords, out.mutable_data());
  }
  return py::make_tuple(out, m);
}

Int32Array scan_py(const ByteArray& packed, size_t n, size_t num_blocks, const ByteArray& luts,
                   const std::string& isa) {
  require_packed(packed, n, num_blocks);
  if (luts.ndim() != 3 || static_cast<size_t>(luts.shape(1)) != num_blocks ||
      luts.shape(2) != static_cast<py::ssize_t>(kLut16Codewords)) {
    throw std::invalid_argument("luts must have shape (num_queries, " + std::to_string(num_blocks) + ", 16), got " +
                                shape_str(luts));
  }
  const KernelTable& kt = kernels_for(parse_isa(isa));
  const size_t num_queries = luts.shape(0);
  // Whole groups are written straight into the result; a partial last group goes through scratch.
  const size_t full_groups = n / kLut16GroupSize, tail = n % kLut16GroupSize;
  const uint8_t* tail_codes = packed.data() + full_groups * num_blocks * kLut16Codewords;
  Int32Array result({static_cast<py::ssize_t>(num_queries), static_cast<py::ssize_t>(n)});
  int32_t* res = result.mutable_data();
  const uint8_t* lut_data = luts.data();
  {
    py::gil_scoped_release release;
    for (size_t q0 = 0; q0 < num_queries; q0 += kLut16MaxQueries) {
      const size_t nq = std::min(kLut16MaxQueries, num_queries - q0);
      const uint8_t* lut_ptrs[kLut16MaxQueries];
      int32_t* out_ptrs[kLut16MaxQueries];
      int32_t scratch[kLut16MaxQueries][kLut16GroupSize];
      int32_t* scratch_ptrs[kLut16MaxQueries];
      for (size_t q = 0; q < nq; ++q) {
        lut_ptrs[q] = lut_data + (q0 + q) * num_blocks * kLut16Codewords;
        out_ptrs[q] = res + (q0 + q) * n;
        scratch_ptrs[q] = scratch[q];
      }
      if (full_groups > 0) kt.lut16(Lut16Args{packed.data(), full_groups, num_blocks, lut_ptrs, nq, out_ptrs});
      if (tail > 0) {
        kt.lut16(Lut16Args{tail_codes, 1, num_blocks, lut_ptrs, nq, scratch_ptrs});
        for (size_t q = 0; q < nq; ++q) {
          std::memcpy(out_ptrs[q] + full_groups * kLut16GroupSize, scratch[q], tail * sizeof(int32_t));
        }
      }
    }
  }
  return result;
}

ByteArray keep_py(const ByteArray& packed, size_t n, size_t num_blocks, const ByteArray& keep, const std::string& isa) {
  require_packed(packed, n, num_blocks);
  if (keep.ndim() != 1 || static_cast<size_t>(keep.shape(0)) != n) {
    throw std::invalid_argument("keep must have shape (" + std::to_string(n) + ",), got " + shape_str(keep));
  }
  const KernelTable& kt = kernels_for(parse_isa(isa));
  std::vector<uint32_t> masks(lut16_num_groups(n), 0);
  size_t kept = 0;
  for (size_t p = 0; p < n; ++p) {
    if (keep.data()[p]) {
      masks[p / 32] |= 1u << (p % 32);
      ++kept;
    }
  }
  ByteArray out(static_cast<py::ssize_t>(lut16_packed_bytes(kept, num_blocks)));
  {
    py::gil_scoped_release release;
    kt.lut16_keep(Lut16KeepArgs{packed.data(), masks.data(), masks.size(), num_blocks, out.mutable_data()});
  }
  return out;
}

FloatArray build_lut_py(const FloatArray& query, const FloatArray& codebook, size_t dims_per_block,
                        const std::string& isa) {
  const size_t dim = query.size();
  if (query.ndim() != 1 || codebook.ndim() != 1 || static_cast<size_t>(codebook.size()) != 16 * dim ||
      dims_per_block == 0) {
    throw std::invalid_argument("build_lut needs query (dim,), codebook (16 * dim,) and dims_per_block > 0");
  }
  const KernelTable& kt = kernels_for(parse_isa(isa));
  const size_t num_blocks = (dim + dims_per_block - 1) / dims_per_block;
  std::vector<float> by_dim(16 * dim);
  transpose_codebook(codebook.data(), dim, dims_per_block, by_dim.data());
  FloatArray out({static_cast<py::ssize_t>(num_blocks), static_cast<py::ssize_t>(16)});
  kt.build_lut(query.data(), by_dim.data(), dim, dims_per_block, out.mutable_data());
  return out;
}

}  // namespace

void bind_lut16(py::module_& m) {
  m.def("pack_lut16_codes", &pack_py, py::arg("codes"),
        "Pack uint8 codes (n, num_blocks), values 0..15, into the LUT16 scan layout (1-D uint8).");
  m.def("unpack_lut16_codes", &unpack_py, py::arg("packed"), py::arg("n"), py::arg("num_blocks"),
        "Inverse of pack_lut16_codes: uint8 codes of shape (n, num_blocks).");
  m.def("quantize_lut16", &quantize_py, py::arg("lut"), py::arg("isa") = "",
        "Float32 LUT (num_blocks, 16) -> (uint8 entries round(lut*m)+128, multiplier m); "
        "isa names a SIMD kernel, empty = the portable reference.");
  m.def("build_lut", &build_lut_py, py::arg("query"), py::arg("codebook"), py::arg("dims_per_block"), py::arg("isa"),
        "Float LUT16 table (num_blocks, 16) of one query with one SIMD path (for tests).");
  m.def("greater_mask32", [](const py::array_t<int32_t, py::array::c_style>& values, int32_t cutoff,
                             const std::string& isa) {
          if (values.ndim() != 1 || values.shape(0) != 32) throw std::invalid_argument("values must have shape (32,)");
          return kernels_for(parse_isa(isa)).greater_mask32(values.data(), cutoff);
        }, py::arg("values"), py::arg("cutoff"), py::arg("isa"), "Bit i set when values[i] > cutoff (for tests).");
  m.def("l2_mask32", [](const py::array_t<int32_t, py::array::c_style>& sums,
                        const py::array_t<float, py::array::c_style>& sq_norms, float two_bias, float two_inv_m,
                        float threshold, const std::string& isa) {
          if (sums.ndim() != 1 || sums.shape(0) % 32 != 0 || sq_norms.ndim() != 1 || sq_norms.shape(0) != sums.shape(0)) {
            throw std::invalid_argument("sums and sq_norms must have the same shape (32 * groups,)");
          }
          const size_t groups = static_cast<size_t>(sums.shape(0)) / 32;
          py::array_t<uint32_t> masks(static_cast<py::ssize_t>(groups));
          kernels_for(parse_isa(isa)).l2_mask32(
              L2MaskArgs{sums.data(), sq_norms.data(), groups, two_bias, two_inv_m, threshold, masks.mutable_data()});
          return masks;
        }, py::arg("sums"), py::arg("sq_norms"), py::arg("two_bias"), py::arg("two_inv_m"), py::arg("threshold"),
        py::arg("isa"),
        "uint32 mask per group of 32: bit i when (two_bias + sums[i] * two_inv_m) - sq_norms[i] >= threshold (for tests).");
  m.def("lut16_keep", &keep_py, py::arg("packed"), py::arg("n"), py::arg("num_blocks"), py::arg("keep"),
        py::arg("isa"),
        "The packed layout of the entries p with keep[p] != 0 (uint8, n), in order, moved with one SIMD path.");
  m.def("lut16_scan", &scan_py, py::arg("packed"), py::arg("n"), py::arg("num_blocks"), py::arg("luts"),
        py::arg("isa"),
        "int32 (num_queries, n): sum over blocks of (luts[q, k, code_k(p)] - 128), using one SIMD path.");
}
