#include "events/clock.hpp"

#include <time.h>

namespace vigil::events {
namespace {
int64_t nowNs(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

Clock::Clock() { recalibrate(); }

void Clock::recalibrate() {
  // Bracket the realtime read between two monotonic reads to halve the error.
  int64_t m1 = nowNs(CLOCK_MONOTONIC);
  int64_t r = nowNs(CLOCK_REALTIME);
  int64_t m2 = nowNs(CLOCK_MONOTONIC);
  offsetNs_ = r - (m1 + (m2 - m1) / 2);
}

google::protobuf::Timestamp Clock::toTimestamp(uint64_t monotonicNs) const {
  uint64_t ns = toRealtimeNs(monotonicNs);
  google::protobuf::Timestamp ts;
  ts.set_seconds(static_cast<int64_t>(ns / 1'000'000'000));
  ts.set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  return ts;
}

uint64_t Clock::monotonicNowNs() { return static_cast<uint64_t>(nowNs(CLOCK_MONOTONIC)); }

int64_t Clock::suspendedNs() { return nowNs(CLOCK_BOOTTIME) - nowNs(CLOCK_MONOTONIC); }

}  // namespace vigil::events
