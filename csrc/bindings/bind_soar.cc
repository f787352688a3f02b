// Python binding of the SOAR secondary assignment (csrc/core/soar.h). Thin: shapes in,
// pointers through, GIL released; defaults and validation of options live in annlib/soar.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "core/soar.h"

namespace py = pybind11;
using namespace annlib;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Int32Array = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

SpillMode parse_mode(const std::string& mode) {
  if (mode == "soar") return SpillMode::kSoar;
  if (mode == "nearest") return SpillMode::kNearest;
  throw std::invalid_argument("mode must be 'soar' or 'nearest', got '" + mode + "'");
}

Int32Array soar_assign_py(const FloatArray& data, const FloatArray& centers, const Int32Array& primary,
                          double soar_lambda, const std::string& mode, size_t num_threads) {
  if (data.ndim() != 2 || centers.ndim() != 2) throw std::invalid_argument("data and centers must be 2-D");
  if (data.shape(1) != centers.shape(1)) {
    throw std::invalid_argument("data and centers differ in dimension: " + std::to_string(data.shape(1)) + " and " +
                                std::to_string(centers.shape(1)));
  }
  if (primary.ndim() != 1 || primary.shape(0) != data.shape(0)) {
    throw std::invalid_argument("primary must be 1-D with one entry per row of data");
  }
  const SpillMode m = parse_mode(mode);
  const size_t n = data.shape(0), dim = data.shape(1), k = centers.shape(0);
  Int32Array out(static_cast<py::ssize_t>(n));
  {
    py::gil_scoped_release release;
    soar_secondary_assignment(data.data(), n, dim, centers.data(), k, primary.data(), soar_lambda, m, num_threads,
                              out.mutable_data());
  }
  return out;
}

}  // namespace

void bind_soar(py::module_& m) {
  m.def("soar_assign", &soar_assign_py, py::arg("data"), py::arg("centers"), py::arg("primary"),
        py::arg("soar_lambda"), py::arg("mode") = "soar", py::arg("num_threads") = 0,
        "Secondary (spilled) center per point, primary excluded; int32[n], all -1 when there is one center.\n"
        "mode 'soar': argmin ||x - c'||^2 + soar_lambda * <x - c', r_hat>^2; 'nearest': argmin ||x - c'||^2.");
}
