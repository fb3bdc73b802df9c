#pragma once

// What a client asked for, as the event hub sees it: GetEvents' EventFilter, GetFlows'
// FlowFilter. Implementations are immutable after construction and safe to call from any thread.

#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

class EventMatcher {
 public:
  virtual ~EventMatcher() = default;
  virtual bool matches(const v1::Event& event) const = 0;
};

}  // namespace vigil::events
