#pragma once

// Kernel timestamps (CLOCK_MONOTONIC ns) to wall-clock time.

#include <cstdint>

#include <google/protobuf/timestamp.pb.h>

namespace vigil::events {

class Clock {
 public:
  // Measures the offset between CLOCK_REALTIME and CLOCK_MONOTONIC now.
  Clock();
  // Uses a fixed offset (tests).
  explicit Clock(int64_t realtimeMinusMonotonicNs) : offsetNs_(realtimeMinusMonotonicNs) {}

  void recalibrate();
  uint64_t toRealtimeNs(uint64_t monotonicNs) const { return monotonicNs + offsetNs_; }
  google::protobuf::Timestamp toTimestamp(uint64_t monotonicNs) const;

  static uint64_t monotonicNowNs();
  // CLOCK_BOOTTIME minus CLOCK_MONOTONIC: time spent suspended.
  static int64_t suspendedNs();

 private:
  int64_t offsetNs_ = 0;
};

}  // namespace vigil::events
