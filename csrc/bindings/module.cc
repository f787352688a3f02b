// The only pybind11 translation unit: turns numpy arrays into pointers,
// releases the GIL around every call that touches data, converts results.
// Validation, normalisation and defaults live in the Python layer (annlib/_validate.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/array_view.h"
#include "bindings/filter_args.h"
#include "core/cpu_limits.h"
#include "core/exact_search.h"
#include "core/metric.h"
#include "core/point_filter.h"
#include "core/thread_pool.h"
#include "simd/dispatch.h"
#include "simd/isa.h"

namespace py = pybind11;
using namespace annlib;
using namespace annlib_bindings;

void bind_lut16(py::module_& m);  // bind_lut16.cc
void bind_train(py::module_& m);  // bind_train.cc
void bind_index(py::module_& m);  // bind_index.cc
void bind_soar(py::module_& m);   // bind_soar.cc
void bind_autotune(py::module_& m);  // bind_autotune.cc

namespace {


py::dict cpu_features_dict() {
  const CpuFeatures& f = cpu_features();
  py::dict d;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512dq"] = f.avx512dq;
  d["avx512vl"] = f.avx512vl;
  return d;
}

std::vector<std::string> supported_isa_names() {
  std::vector<std::string> out;
  for (Isa isa : supported_isas()) out.push_back(isa_name(isa));
  return out;
}

FloatArray squared_norms_py(const FloatArray& data) {
  require_2d(data, "data");
  const size_t n = data.shape(0), dim = data.shape(1);
  FloatArray out(static_cast<py::ssize_t>(n));
  {
    py::gil_scoped_release release;
    squared_norms(data.data(), n, dim, out.mutable_data());
  }
  return out;
}

py::tuple exact_search_py(const FloatArray& data, const py::object& data_sq_norms, const FloatArray& queries,
                          size_t k, const std::string& metric, size_t num_threads, const py::object& filter_bits,
                          const py::object& filter_table, const py::object& filter_of_query,
                          const py::object& row_ids) {
  require_2d(data, "data");
  require_2d(queries, "queries");
  if (data.shape(1) != queries.shape(1)) throw std::invalid_argument("data and queries differ in dimension");
  ExactSearchArgs a;
  a.data = data.data();
  a.n = data.shape(0);
  a.dim = data.shape(1);
  FloatArray norms;
  if (!data_sq_norms.is_none()) {
    norms = data_sq_norms.cast<FloatArray>();
    if (norms.ndim() != 1 || static_cast<size_t>(norms.shape(0)) != a.n) {
      throw std::invalid_argument("data_sq_norms must have shape (n,)");
    }
    a.data_sq_norms = norms.data();
  }
  a.queries = queries.data();
  a.num_queries = queries.shape(0);
  a.k = k;
  a.metric = parse_metric(metric);
  a.num_threads = num_threads;
  py::array_t<int64_t> ids({static_cast<py::ssize_t>(a.num_queries), static_cast<py::ssize_t>(k)});
  FloatArray distances({static_cast<py::ssize_t>(a.num_queries), static_cast<py::ssize_t>(k)});
  a.out_ids = ids.mutable_data();
  a.out_distances = distances.mutable_data();
  FilterArgs filters;
  make_filters(filters, filter_bits, filter_table, filter_of_query, row_ids, a.n, a.num_queries);
  a.filters = filters.query_filters;
  {
    py::gil_scoped_release release;
    exact_search(a);
  }
  return py::make_tuple(ids, distances);
}

py::array_t<uint8_t> evaluate_filter_py(const py::object& filter_bits, const py::object& filter_table,
                                        const py::object& row_ids, const py::array_t<int64_t, py::array::c_style>& rows,
                                        size_t num_threads) {
  if (row_ids.is_none()) throw std::invalid_argument("evaluate_filter needs row_ids");
  const size_t n = static_cast<size_t>(row_ids.cast<py::array>().size());
  FilterArgs filters;
  make_filters(filters, filter_bits, filter_table, py::none(), row_ids, n, 0);
  if (filters.filters.size() != 1) throw std::invalid_argument("evaluate_filter takes one filter");
  const size_t count = static_cast<size_t>(rows.size());
  const int64_t* r = rows.data();
  for (size_t i = 0; i < count; ++i) {
    if (r[i] < 0 || static_cast<size_t>(r[i]) >= n) throw std::invalid_argument("evaluate_filter: a row outside [0, n)");
  }
  py::array_t<uint8_t> out(static_cast<py::ssize_t>(count));
  {
    py::gil_scoped_release release;
    evaluate_filter(filters.filters[0], r, count, num_threads, out.mutable_data());
  }
  return out;
}

FloatArray dot_block_py(const FloatArray& queries, const FloatArray& points, const py::object& isa) {
  require_2d(queries, "queries");
  require_2d(points, "points");
  if (queries.shape(1) != points.shape(1)) throw std::invalid_argument("queries and points differ in dimension");
  const KernelTable& kt = isa.is_none() ? kernels() : kernels_for(parse_isa(isa.cast<std::string>()));
  FloatArray out({queries.shape(0), points.shape(0)});
  DotBlockArgs a{queries.data(), static_cast<size_t>(queries.shape(0)), points.data(),
                 static_cast<size_t>(points.shape(0)), static_cast<size_t>(queries.shape(1)),
                 out.mutable_data(), static_cast<size_t>(points.shape(0))};
  {
    py::gil_scoped_release release;
    kt.dot_block(a);
  }
  return out;
}

FloatArray dot_by_dim_py(const FloatArray& queries, const FloatArray& points, const std::string& isa) {
  require_2d(points, "points");
  const size_t n = points.shape(0), dim = points.shape(1);
  const bool one = queries.ndim() == 1;
  if (!(one || queries.ndim() == 2) || queries.shape(queries.ndim() - 1) != static_cast<py::ssize_t>(dim)) {
    throw std::invalid_argument("queries must have shape (dim,) or (num_queries, dim)");
  }
  const size_t nq = one ? 1 : queries.shape(0);
  std::vector<float> by_dim(n * dim);
  for (size_t j = 0; j < n; ++j)
    for (size_t d = 0; d < dim; ++d) by_dim[d * n + j] = points.data()[j * dim + d];
  const KernelTable& kt = kernels_for(parse_isa(isa));
  FloatArray out = one ? FloatArray(static_cast<py::ssize_t>(n))
                       : FloatArray({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(n)});
  {
    py::gil_scoped_release release;
    kt.dot_by_dim(DotByDimArgs{queries.data(), by_dim.data(), n, dim, out.mutable_data(), nq, n});
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "annlib's compiled core. Internal: use the annlib package instead.";

  m.def("cpu_features", &cpu_features_dict, "CPU features read from cpuid.");
  m.def("supported_isas", &supported_isa_names, "SIMD paths this CPU can run, scalar first.");
  m.def("active_isa", [] { return isa_name(active_isa()); }, "The SIMD path in use.");
  m.def("set_isa", [](const std::string& name) { set_active_isa(parse_isa(name)); }, py::arg("name"),
        "Switch the process-wide SIMD path; ValueError if this CPU cannot run it.");
  m.def("hardware_threads", &hardware_threads);
  m.def("affinity_cpus", &affinity_cpus, "CPUs in this thread's affinity mask (0 when unknown).");
  m.def("cgroup_quota_cpus", &cgroup_quota_cpus, py::arg("cgroup_root") = "/sys/fs/cgroup",
        py::arg("proc_self_cgroup") = "/proc/self/cgroup",
        "CPUs granted by the cgroup quota, rounded up; 0 when unlimited or unknown.");
  m.def("default_threads", &default_threads, "The thread count num_threads=0 resolves to.");

  m.def("squared_norms", &squared_norms_py, py::arg("data"));
  m.def("exact_search", &exact_search_py, py::arg("data"), py::arg("data_sq_norms"), py::arg("queries"),
        py::arg("k"), py::arg("metric"), py::arg("num_threads"), py::arg("filter_bits") = py::none(),
        py::arg("filter_table") = py::none(), py::arg("filter_of_query") = py::none(),
        py::arg("row_ids") = py::none());
  m.def("evaluate_filter", &evaluate_filter_py, py::arg("filter_bits"), py::arg("filter_table"), py::arg("row_ids"),
        py::arg("rows"), py::arg("num_threads"),
        "1 where the one filter allows the row, for each of ``rows`` (int64): predicates run on the "
        "search threads without the GIL.");
  m.def("dot_block", &dot_block_py, py::arg("queries"), py::arg("points"), py::arg("isa") = py::none(),
        "Inner products of every query with every point, on the calling thread, by the active SIMD path or "
        "by ``isa`` (tests). Not numpy's matmul: BLAS leaves its threads spinning on the other cores.");
  m.def(
      "dot_f32_i8",
      [](const FloatArray& q, const py::array_t<int8_t, py::array::c_style | py::array::forcecast>& x,
         const std::string& isa) {
        if (q.ndim() != 1 || x.ndim() != 1 || q.shape(0) != x.shape(0)) {
          throw std::invalid_argument("q and x must be 1-D of the same length");
        }
        return kernels_for(parse_isa(isa)).dot_f32_i8(q.data(), x.data(), static_cast<size_t>(q.shape(0)));
      },
      py::arg("q"), py::arg("x"), py::arg("isa"),
      "<q, x> of a float32 vector and an int8 vector via one SIMD path's kernel (for tests).");
  m.def("dot_by_dim", &dot_by_dim_py, py::arg("queries"), py::arg("points"), py::arg("isa"),
        "Inner products of one query (dim,) or several (nq, dim) with points via the dimension-major "
        "kernel of one SIMD path (for tests).");

  bind_lut16(m);
  bind_train(m);
  bind_index(m);
  bind_soar(m);
  bind_autotune(m);
}
