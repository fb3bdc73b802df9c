#pragma once

// Which events a GetEvents client asked for. Repeated values of one filter are OR'ed,
// different filters AND'ed; lost records always pass so a client always learns of its gaps.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "events/event_matcher.hpp"
#include "events/workload_match.hpp"
#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

class EventFilter final : public EventMatcher {
 public:
  // Rejects values that cannot match anything (unknown types, empty binaries, pid 0).
  static Expected<EventFilter> fromRequest(const v1::GetEventsRequest& request);

  bool matches(const v1::Event& event) const override;

 private:
  std::vector<v1::EventType> types_;
  std::vector<uint32_t> pids_;
  std::vector<std::string> exact_;
  std::vector<std::string> prefixes_;
  std::optional<google::protobuf::Timestamp> since_;
  WorkloadSelector workloads_;  // namespaces and pods, OR'ed with each other
};

}  // namespace vigil::events
