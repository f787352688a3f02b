// k-means training and nearest-center assignment: the partitioner's trainer
// (algorithms.md section 3.1) and the per-block codebook trainer of PQ (section 1.3).
// Public within the core; Python reaches it through bindings/bind_train.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace annlib {

/// Options of train_kmeans (ScaNN's names in brackets).
struct KMeansOptions {
  /// Number of centers k [num_children / num_leaves]; 1 <= k <= n.
  size_t num_centers = 0;
  /// Lloyd iterations after the initialisation [max_clustering_iterations]; 0 returns the initial centers.
  size_t max_iterations = 12;
  /// Re-normalise every center to unit norm after each update (spherical k-means, for cosine data).
  bool spherical = false;
  /// Seed of every random choice; the result is a function of (sample, options) only, never of num_threads.
  uint64_t seed = 0;
  /// Clusters smaller than this are re-seeded by splitting the largest cluster [min_cluster_size].
  /// Clamped to n / k so that it can always be satisfied.
  size_t min_cluster_size = 1;
  /// Stop when the relative change of the total distortion falls below this [clustering_convergence_tolerance].
  double tolerance = 1e-5;
  /// Worker threads; 0 = all hardware threads. Does not change the result.
  size_t num_threads = 0;
};

/// Trains k-means on `sample` (n x dim, row-major) and returns the centers (num_centers x dim, row-major).
///
/// Initialisation: seeded k-means++ (D^2 sampling) on a random subset of min(n, 32 k) points, shrunk so that
/// the k-means++ cost k * m * dim stays under ~4e9 multiply-adds; when that leaves fewer than 4 k points the
/// centers are k random distinct sample points instead (k-means++ would cost as much as many Lloyd rounds).
/// Lloyd iterations: assignment by the blocked SIMD inner-product kernel (squared L2), center sums in
/// double, one center per task, members in index order (so the result does not depend on num_threads).
/// A cluster below min_cluster_size is re-seeded by splitting the currently largest cluster L: a member x
/// is drawn with probability proportional to its squared distance to c_L (a far point), and the two centers
/// become c_L +- 0.01 (x - c_L), which cuts L in about half along the direction of x.
///
/// Throws std::invalid_argument if num_centers == 0, dim == 0 or n < num_centers.
std::vector<float> train_kmeans(const float* sample, size_t n, size_t dim, const KMeansOptions& opts);

/// Nearest center by squared L2 for every row of `data` (n x dim); with unit-norm centers (spherical k-means)
/// this is the center of largest inner product. Ties go to the lower center index. Runs the blocked SIMD
/// inner-product kernel on num_threads threads (0 = all); for dim <= 16 (PQ blocks) it computes the distances
/// directly instead, vectorised over centers. The result does not depend on num_threads.
///
/// \param out_assignment n center indices.
/// \param out_sq_dist    n squared L2 distances to the chosen center (recomputed exactly), or nullptr.
void assign_to_centers(const float* data, size_t n, size_t dim, const float* centers, size_t num_centers,
                       size_t num_threads, int32_t* out_assignment, float* out_sq_dist);

}  // namespace annlib
