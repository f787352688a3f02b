// Amortised top-k selection: keeps the k largest scores seen.
//
// Pushes below the running threshold are rejected with one compare; accepted
// ones are appended to a buffer of 4k slots, and only when it fills is it
// partially sorted back to k entries (the "FastTopNeighbors" idea of ScaNN,
// algorithms.md section 2.5). After the first k pushes nearly every push is a
// cheap rejection, and nothing is allocated once the buffer has its capacity.
//
// Entries are stored as 64-bit keys, (order-preserving score bits << 32) |
// (2^32 - 1 - id), so that "larger key" is exactly better() below and the partial
// sort compares plain integers: it was 12% of a batched tree-AH search when it
// compared {float, int64} pairs with a tie-breaking comparator. Ids must fit in
// 32 bits unsigned.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

namespace annlib {

/// Maps a float to unsigned bits whose integer order is the float order (NaN excluded;
/// -0 sorts just below +0). Packed into 64-bit keys with an id, for integer selection.
inline uint32_t orderable_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/// The inverse of orderable_bits.
inline float from_orderable_bits(uint32_t u) {
  u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

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

  /// Largest id a TopK can hold.
  static constexpr int64_t kMaxId = std::numeric_limits<uint32_t>::max();

  /// Empties the selection and sets k; reuses the buffer when it is large enough. The buffer
  /// fills to 4k slots whatever its size: a buffer left large by a deep search would hold the
  /// threshold down for longer (it only rises at a compaction), so a later shallow search
  /// kept most pushes and ran a third slower after any deep one (the autotuner's included).
  void reset(size_t k) {
    k_ = k;
    capacity_ = std::max<size_t>(4 * k, 64);
    if (keys_.size() < capacity_) keys_.resize(capacity_);
    size_ = 0;
    threshold_ = -std::numeric_limits<float>::infinity();
    threshold_key_ = 0;
  }

  /// A score must be at least this to be kept (and, when equal, come with a smaller id
  /// than the k-th best's).
  float threshold() const { return threshold_; }
  size_t k() const { return k_; }

  /// Keeps (score, id) if it is better() than the k-th best kept so far; NaN never is.
  /// 0 <= id <= kMaxId. The kept set is the k best by (score, id) whatever the push order.
  void push(float score, int64_t id) {
    if (!(score >= threshold_)) return;
    const uint64_t key = pack(score, id);
    if (key <= threshold_key_) return;  // ties with the threshold score: the id decides
    keys_[size_++] = key;
    if (size_ == k_ && threshold_key_ == 0) {
      // The first k keys: their minimum is the k-th best so far, so later pushes already
      // have a bar to clear (else every push fills the buffer until the first compaction).
      threshold_key_ = *std::min_element(keys_.begin(), keys_.begin() + static_cast<std::ptrdiff_t>(k_));
      threshold_ = unpack(threshold_key_).score;
    }
    if (size_ == capacity_) compact();
  }

  /// Number of entries kept: min(k, pushes accepted).
  size_t count() {
    if (size_ > k_) compact();
    return size_;
  }

  /// Writes the kept entries best first into out[0 .. count()) and returns count().
  size_t sorted(ScoredId* out) {
    const size_t n = count();
    std::sort(keys_.begin(), keys_.begin() + static_cast<std::ptrdiff_t>(n), std::greater<uint64_t>());
    for (size_t i = 0; i < n; ++i) out[i] = unpack(keys_[i]);
    return n;
  }

  /// Writes the kept entries, unordered, into out[0 .. count()) and returns count().
  size_t unordered(ScoredId* out) {
    const size_t n = count();
    for (size_t i = 0; i < n; ++i) out[i] = unpack(keys_[i]);
    return n;
  }

 private:
  static uint64_t pack(float score, int64_t id) {
    if (score == 0.f) score = 0.f;  // -0 ties with +0, as the float compare says
    return (static_cast<uint64_t>(orderable_bits(score)) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(id));
  }

  static ScoredId unpack(uint64_t key) {
    return ScoredId{from_orderable_bits(static_cast<uint32_t>(key >> 32)),
                    static_cast<int64_t>(0xFFFFFFFFu - static_cast<uint32_t>(key))};
  }

  void compact() {
    if (size_ <= k_) return;
    auto kth = keys_.begin() + static_cast<std::ptrdiff_t>(k_ - 1);
    std::nth_element(keys_.begin(), kth, keys_.begin() + static_cast<std::ptrdiff_t>(size_), std::greater<uint64_t>());
    size_ = k_;
    // Later pushes must beat the k-th best key, so among tied scores the smaller ids
    // stay whatever order they came in: leaf-major and per-query scans agree.
    threshold_key_ = *kth;
    threshold_ = unpack(*kth).score;
  }

  size_t k_ = 0;
  size_t capacity_ = 0;  // slots filled before a compaction: 4k, at least 64
  size_t size_ = 0;
  float threshold_ = -std::numeric_limits<float>::infinity();
  uint64_t threshold_key_ = 0;  // below every key of a non-NaN score
  std::vector<uint64_t> keys_;
};

}  // namespace annlib
