// Python bindings of the training stages: k-means (partitioning, PQ codebooks) and
// anisotropic PQ encoding. Thin: shapes in, pointers through, GIL released.
//
// PQ codebooks cross the boundary as one flat float32 array of 16 * dim floats: block k's
// 16 x block_dim(k) codewords (row-major) at offset 16 * k * dims_per_block, blocks concatenated,
// the last block taking the remaining dim % dims_per_block dimensions when dim is not a multiple.
// With dim and dims_per_block that array is the whole PqCodebook (csrc/core/anisotropic_pq.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/array_view.h"
#include "core/anisotropic_pq.h"
#include "core/kmeans.h"
#include "simd/dispatch.h"
#include "simd/isa.h"

namespace py = pybind11;
using namespace annlib;
using namespace annlib_bindings;

namespace {

/// The PqCodebook described by a flat centers array and dims_per_block.
PqCodebook codebook_from(const FloatArray& centers, size_t dims_per_block) {
  if (centers.ndim() != 1 || centers.shape(0) == 0 || centers.shape(0) % kPqCentersPerBlock != 0) {
    throw std::invalid_argument("centers must be 1-D with 16 * dim floats, got shape " + shape_str(centers));
  }
  PqCodebook cb = make_pq_layout(static_cast<size_t>(centers.shape(0)) / kPqCentersPerBlock, dims_per_block);
  cb.centers.assign(centers.data(), centers.data() + centers.shape(0));
  return cb;
}

FloatArray train_kmeans_py(const FloatArray& sample, size_t num_centers, size_t max_iterations, bool spherical,
                           uint64_t seed, size_t min_cluster_size, size_t num_threads, double tolerance) {
  require_2d(sample, "sample");
  const size_t n = sample.shape(0), dim = sample.shape(1);
  KMeansOptions opts;
  opts.num_centers = num_centers;
  opts.max_iterations = max_iterations;
  opts.spherical = spherical;
  opts.seed = seed;
  opts.min_cluster_size = min_cluster_size;
  opts.tolerance = tolerance;
  opts.num_threads = num_threads;
  std::vector<float> centers;
  {
    py::gil_scoped_release release;
    centers = train_kmeans(sample.data(), n, dim, opts);
  }
  FloatArray out({static_cast<py::ssize_t>(num_centers), static_cast<py::ssize_t>(dim)});
  std::copy(centers.begin(), centers.end(), out.mutable_data());
  return out;
}

py::tuple assign_to_centers_py(const FloatArray& data, const FloatArray& centers, size_t num_threads,
                               bool with_sq_dist) {
  require_2d(data, "data");
  require_2d(centers, "centers");
  if (data.shape(1) != centers.shape(1)) {
    throw std::invalid_argument("data and centers differ in dimension: " + shape_str(data) + " and " +
                                shape_str(centers));
  }
  const size_t n = data.shape(0), dim = data.shape(1), k = centers.shape(0);
  Int32Array assignment(static_cast<py::ssize_t>(n));
  FloatArray sq_dist(static_cast<py::ssize_t>(with_sq_dist ? n : 0));
  {
    py::gil_scoped_release release;
    assign_to_centers(data.data(), n, dim, centers.data(), k, num_threads, assignment.mutable_data(),
                      with_sq_dist ? sq_dist.mutable_data() : nullptr);
  }
  return py::make_tuple(assignment, with_sq_dist ? py::object(sq_dist) : py::object(py::none()));
}

FloatArray train_pq_py(const FloatArray& residuals, size_t dims_per_block, size_t iterations, uint64_t seed,
                       size_t num_threads) {
  require_2d(residuals, "residuals");
  PqOptions opts;
  opts.dims_per_block = dims_per_block;
  opts.iterations = iterations;
  opts.seed = seed;
  opts.num_threads = num_threads;
  PqCodebook cb;
  {
    py::gil_scoped_release release;
    cb = train_pq(residuals.data(), residuals.shape(0), residuals.shape(1), opts);
  }
  FloatArray out(static_cast<py::ssize_t>(cb.centers.size()));
  std::copy(cb.centers.begin(), cb.centers.end(), out.mutable_data());
  return out;
}

ByteArray encode_pq_py(const FloatArray& centers, size_t dims_per_block, const FloatArray& residuals,
                       const FloatArray& originals, double threshold, size_t num_threads, const std::string& isa,
                       bool reference) {
  require_2d(residuals, "residuals");
  require_same_shape(residuals, "residuals", originals, "originals");
  const PqCodebook cb = codebook_from(centers, dims_per_block);
  if (static_cast<size_t>(residuals.shape(1)) != cb.dim) {
    throw std::invalid_argument("residuals must have " + std::to_string(cb.dim) + " columns (centers hold 16 * " +
                                std::to_string(cb.dim) + " floats), got shape " + shape_str(residuals));
  }
  const KernelTable& kt = isa.empty() ? kernels() : kernels_for(parse_isa(isa));
  const size_t n = residuals.shape(0);
  ByteArray codes({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(cb.num_blocks)});
  {
    py::gil_scoped_release release;
    if (reference) {
      encode_pq_reference(cb, residuals.data(), originals.data(), n, threshold, num_threads, codes.mutable_data());
    } else {
      encode_pq(cb, residuals.data(), originals.data(), n, threshold, num_threads, codes.mutable_data(), kt);
    }
  }
  return codes;
}

py::tuple encode_pq_entries_py(const FloatArray& centers, size_t dims_per_block, const FloatArray& data,
                               const FloatArray& partition_centers, const py::array_t<int64_t, py::array::c_style>& points,
                               const py::array_t<int64_t, py::array::c_style>& leaves, double threshold,
                               size_t num_threads, bool sq_norms) {
  require_2d(data, "data");
  require_2d(partition_centers, "partition_centers");
  const PqCodebook cb = codebook_from(centers, dims_per_block);
  if (static_cast<size_t>(data.shape(1)) != cb.dim || static_cast<size_t>(partition_centers.shape(1)) != cb.dim) {
    throw std::invalid_argument("data and partition_centers must have " + std::to_string(cb.dim) + " columns, got " +
                                shape_str(data) + " and " + shape_str(partition_centers));
  }
  if (points.ndim() != 1 || leaves.ndim() != 1 || points.size() != leaves.size()) {
    throw std::invalid_argument("points and leaves must be 1-D of one length");
  }
  const size_t m = points.size();
  for (size_t i = 0; i < m; ++i) {
    if (points.data()[i] < 0 || points.data()[i] >= data.shape(0)) {
      throw std::invalid_argument("points[" + std::to_string(i) + "] is not a row of data");
    }
    if (leaves.data()[i] < 0 || leaves.data()[i] >= partition_centers.shape(0)) {
      throw std::invalid_argument("leaves[" + std::to_string(i) + "] is not a row of partition_centers");
    }
  }
  ByteArray codes({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(cb.num_blocks)});
  std::optional<FloatArray> norms;
  if (sq_norms) norms.emplace(static_cast<py::ssize_t>(m));
  {
    py::gil_scoped_release release;
    encode_pq_entries(cb, data.data(), partition_centers.data(), points.data(), leaves.data(), m, threshold,
                      num_threads, codes.mutable_data(), norms ? norms->mutable_data() : nullptr);
  }
  return py::make_tuple(codes, norms ? py::object(*norms) : py::object(py::none()));
}

/// One point's encoder tables with one ISA's pq_tables kernel (for tests).
py::tuple pq_tables_py(const FloatArray& residual, const std::optional<FloatArray>& original,
                       const FloatArray& codebook_by_dim, size_t dims_per_block, float inv_norm,
                       const std::string& isa) {
  if (residual.ndim() != 1 || residual.shape(0) == 0) throw std::invalid_argument("residual must be 1-D, non-empty");
  const size_t dim = residual.shape(0);
  if (original && (original->ndim() != 1 || static_cast<size_t>(original->shape(0)) != dim)) {
    throw std::invalid_argument("original must have the residual's shape");
  }
  if (codebook_by_dim.size() != static_cast<py::ssize_t>(16 * dim)) {
    throw std::invalid_argument("codebook_by_dim must hold 16 * dim floats");
  }
  if (dims_per_block == 0) throw std::invalid_argument("dims_per_block must be positive");
  const size_t num_blocks = (dim + dims_per_block - 1) / dims_per_block;
  FloatArray rn({static_cast<py::ssize_t>(num_blocks), py::ssize_t{16}});
  FloatArray par({static_cast<py::ssize_t>(num_blocks), py::ssize_t{16}});
  ByteArray nearest(static_cast<py::ssize_t>(num_blocks));
  std::fill(par.mutable_data(), par.mutable_data() + par.size(), 0.f);
  PqTablesArgs a{residual.data(), original ? original->data() : nullptr, codebook_by_dim.data(), dim,
                 dims_per_block, inv_norm, rn.mutable_data(), par.mutable_data(), nearest.mutable_data()};
  kernels_for(parse_isa(isa)).pq_tables(a);
  return py::make_tuple(rn, par, nearest);
}

/// The descent's visiting order of one point with one ISA's pq_order kernel (for tests).
py::array_t<uint32_t> pq_order_py(const FloatArray& residual_norm, const ByteArray& code, const std::string& isa) {
  const size_t num_blocks = code.size();
  if (residual_norm.size() != static_cast<py::ssize_t>(16 * num_blocks)) {
    throw std::invalid_argument("pq_order: residual_norm needs 16 entries per block");
  }
  for (py::ssize_t i = 0; i < code.size(); ++i) {
    if (code.data()[i] >= 16) throw std::invalid_argument("pq_order: codes must be 0..15");
  }
  std::vector<uint32_t> keys((num_blocks + 15) / 16 * 16);
  py::array_t<uint32_t> order(static_cast<py::ssize_t>(num_blocks));
  kernels_for(parse_isa(isa)).pq_order(
      PqOrderArgs{residual_norm.data(), code.data(), num_blocks, keys.data(), order.mutable_data()});
  return order;
}

/// The coordinate descent of one point with one ISA's pq_descent kernel (for tests).
ByteArray pq_descent_py(const FloatArray& residual_norm, const FloatArray& parallel,
                        const py::array_t<uint32_t, py::array::c_style>& order, float eta, float p,
                        size_t max_rounds, const ByteArray& code, const std::string& isa) {
  const size_t num_blocks = code.size();
  if (residual_norm.size() != static_cast<py::ssize_t>(16 * num_blocks) ||
      parallel.size() != static_cast<py::ssize_t>(16 * num_blocks) ||
      order.size() != static_cast<py::ssize_t>(num_blocks)) {
    throw std::invalid_argument("pq_descent: tables need 16 entries and order one entry per block");
  }
  for (py::ssize_t i = 0; i < order.size(); ++i) {
    if (order.data()[i] >= num_blocks) throw std::invalid_argument("pq_descent: order names a missing block");
  }
  for (py::ssize_t i = 0; i < code.size(); ++i) {
    if (code.data()[i] >= 16) throw std::invalid_argument("pq_descent: codes must be 0..15");
  }
  ByteArray out(static_cast<py::ssize_t>(num_blocks));
  std::copy(code.data(), code.data() + num_blocks, out.mutable_data());
  PqDescentArgs a{residual_norm.data(), parallel.data(), order.data(), num_blocks, eta, p, max_rounds,
                  out.mutable_data()};
  kernels_for(parse_isa(isa)).pq_descent(a);
  return out;
}

FloatArray decode_pq_py(const FloatArray& centers, size_t dims_per_block, const ByteArray& codes) {
  const PqCodebook cb = codebook_from(centers, dims_per_block);
  if (codes.ndim() != 2 || static_cast<size_t>(codes.shape(1)) != cb.num_blocks) {
    throw std::invalid_argument("codes must have shape (n, " + std::to_string(cb.num_blocks) + "), got " +
                                shape_str(codes));
  }
  const size_t n = codes.shape(0);
  FloatArray out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(cb.dim)});
  {
    py::gil_scoped_release release;
    decode_pq(cb, codes.data(), n, out.mutable_data());
  }
  return out;
}

double score_aware_loss_py(const FloatArray& originals, const FloatArray& reconstructions, double eta) {
  require_2d(originals, "originals");
  require_same_shape(originals, "originals", reconstructions, "reconstructions");
  py::gil_scoped_release release;
  return score_aware_loss(originals.data(), reconstructions.data(), originals.shape(0), originals.shape(1), eta);
}

}  // namespace

void bind_train(py::module_& m) {
  m.def("train_kmeans", &train_kmeans_py, py::arg("sample"), py::arg("num_centers"), py::arg("max_iterations"),
        py::arg("spherical"), py::arg("seed"), py::arg("min_cluster_size"), py::arg("num_threads"),
        py::arg("tolerance") = 1e-5,
        "k-means centers (num_centers, dim) of sample (n, dim); deterministic for a seed, any num_threads. "
        "ValueError if n < num_centers.");
  m.def("assign_to_centers", &assign_to_centers_py, py::arg("data"), py::arg("centers"), py::arg("num_threads"),
        py::arg("with_sq_dist") = true,
        "Nearest center by squared L2: (assignment int32 (n,), squared distance float32 (n,), or None "
        "without with_sq_dist: the exact distances, summed in double, cost a fifth of an assignment).");
  m.def("train_pq", &train_pq_py, py::arg("residuals"), py::arg("dims_per_block"), py::arg("iterations"),
        py::arg("seed"), py::arg("num_threads"),
        "PQ codebooks, 16 centers per block by k-means: flat float32 (16 * dim,), block k's 16 x block_dim "
        "codewords at offset 16 * k * dims_per_block.");
  m.def("encode_pq", &encode_pq_py, py::arg("centers"), py::arg("dims_per_block"), py::arg("residuals"),
        py::arg("originals"), py::arg("threshold"), py::arg("num_threads"), py::arg("isa") = "",
        py::arg("reference") = false,
        "Anisotropic PQ codes uint8 (n, num_blocks); threshold NaN = nearest codeword. isa names the SIMD "
        "kernels (empty = the active path); reference=True runs the scalar double reference encoder (tests).");
  m.def("encode_pq_entries", &encode_pq_entries_py, py::arg("centers"), py::arg("dims_per_block"), py::arg("data"),
        py::arg("partition_centers"), py::arg("points"), py::arg("leaves"), py::arg("threshold"),
        py::arg("num_threads"), py::arg("sq_norms") = false,
        "(codes uint8 (m, num_blocks), norms) of index entries: entry i encodes data[points[i]] - "
        "partition_centers[leaves[i]] along data[points[i]] (encode_pq without the residual matrix); norms: "
        "float32 ||partition_centers[leaves[i]] + reconstruction||^2 when sq_norms, else None.");
  m.def("pq_tables", &pq_tables_py, py::arg("residual"), py::arg("original"), py::arg("codebook_by_dim"),
        py::arg("dims_per_block"), py::arg("inv_norm"), py::arg("isa"),
        "One point's encoder tables (residual_norm (B, 16), parallel (B, 16), nearest (B,)) with one SIMD "
        "path's kernel (for tests); original None = no parallel table.");
  m.def("pq_order", &pq_order_py, py::arg("residual_norm"), py::arg("code"), py::arg("isa"),
        "Blocks by descending residual_norm[k, code[k]], ties by index, with one SIMD path's kernel (for tests).");
  m.def("pq_descent", &pq_descent_py, py::arg("residual_norm"), py::arg("parallel"), py::arg("order"),
        py::arg("eta"), py::arg("p"), py::arg("max_rounds"), py::arg("code"), py::arg("isa"),
        "One point's coordinate descent from `code` with one SIMD path's kernel (for tests).");
  m.def("decode_pq", &decode_pq_py, py::arg("centers"), py::arg("dims_per_block"), py::arg("codes"),
        "Reconstruction float32 (n, dim) of PQ codes.");
  m.def("parallel_cost_multiplier", &parallel_cost_multiplier, py::arg("threshold"), py::arg("sq_norm"),
        py::arg("dim"), "eta = (dim - 1) (T^2/||x||^2) / (1 - T^2/||x||^2); 1 for T NaN or <= 0.");
  m.def("score_aware_loss", &score_aware_loss_py, py::arg("originals"), py::arg("reconstructions"), py::arg("eta"),
        "Sum of ||e||^2 + (eta - 1) <e, x/||x||>^2 over points, e = x - reconstruction.");
}
