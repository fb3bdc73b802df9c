#pragma once

// The agent's table of recent process exits: what GetAccounting's `since` answers from. A
// bounded ring (the oldest exit goes first) filled from the exit events the decoder makes, so
// "what finished in the last ten minutes, and how much memory did it use" outlives the process
// and the event history (which exec events share). Thread-safe.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

class RecentExits {
 public:
  explicit RecentExits(size_t capacity) : capacity_(capacity) {}

  // Keeps an exit event as an accounting row; other events are ignored.
  void record(const v1::Event& event);
  // Rows of the processes that exited at or after sinceNs (nanoseconds since the epoch),
  // oldest first.
  std::vector<v1::AccountingRow> since(int64_t sinceNs) const;

  size_t size() const;
  size_t capacity() const { return capacity_; }
  // Exits pushed out by newer ones since the start.
  uint64_t evicted() const;

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<std::pair<int64_t, v1::AccountingRow>> rows_;  // exit time (ns), row
  uint64_t evicted_ = 0;
};

}  // namespace vigil::events
