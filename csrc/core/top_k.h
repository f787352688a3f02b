// Amortised top-k selection: keeps the k largest scores seen.
//
// Pushes below the running threshold are rejected with one compare; accepted
// ones are appended to a buffer of 2k slots, and only when it fills is it
// partially sorted back to k entries (the "FastTopNeighbors" idea of ScaNN,
// algorithms.md section 2.5). After the first k pushes nearly every push is a
// cheap rejection, and nothing is allocated once the buffer has its capacity.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace annlib {

struct ScoredId {
  float score;
  int64_t id;
};

/// Better = larger score; among equal scores the smaller id wins (deterministic ties).
inline bool better(const ScoredId& a, const ScoredId& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

class TopK {
 public:
  TopK() = default;
  explicit TopK(size_t k) { reset(k); }

  /// Empties the selection and sets k; reuses the buffer when it is large enough.
  void reset(size_t k) {
    k_ = k;
    const size_t capacity = std::max<size_t>(4 * k, 64);
    if (buffer_.size() < capacity) buffer_.resize(capacity);
    size_ = 0;
    threshold_ = -std::numeric_limits<float>::infinity();
  }

  /// A score must be strictly greater than this to be kept.
  float threshold() const { return threshold_; }
  size_t k() const { return k_; }

  void push(float score, int64_t id) {
    if (!(score > threshold_)) return;
    buffer_[size_++] = ScoredId{score, id};
    if (size_ == buffer_.size()) compact();
  }

  /// Number of entries that finish() will write: min(k, pushes accepted).
  size_t count() {
    if (size_ > k_) compact();
    return size_;
  }

  /// Writes the kept entries best first into out[0 .. count()) and returns count().
  size_t sorted(ScoredId* out) {
    const size_t n = count();
    std::copy(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(n), out);
    std::sort(out, out + n, [](const ScoredId& a, const ScoredId& b) { return better(a, b); });
    return n;
  }

  /// The kept entries, unordered (valid until the next push or reset).
  const ScoredId* data() const { return buffer_.data(); }
  size_t size() const { return size_; }

 private:
  void compact() {
    if (size_ <= k_) return;
    auto kth = buffer_.begin() + static_cast<std::ptrdiff_t>(k_ - 1);
    std::nth_element(buffer_.begin(), kth, buffer_.begin() + static_cast<std::ptrdiff_t>(size_),
                     [](const ScoredId& a, const ScoredId& b) { return better(a, b); });
    size_ = k_;
    // Later pushes must beat the k-th best; equal scores are dropped, which only
    // affects which of several exactly tied points is returned.
    threshold_ = kth->score;
  }

  size_t k_ = 0;
  size_t size_ = 0;
  float threshold_ = -std::numeric_limits<float>::infinity();
  std::vector<ScoredId> buffer_;
};

}  // namespace annlib
