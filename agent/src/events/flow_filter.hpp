#pragma once

// Which flow events a GetFlows client asked for (`vigil observe`).
//
// `include`: every field that is set must match; a field matches when any of its values does.
// `exclude`: a flow that matches any value of any of its fields is rejected. since/until bound
// Event.time (since inclusive, until exclusive). Lost records always pass, so that a client
// always learns of its gaps; other non-flow events never match.
//
// Addresses: an IPv4 value ("10.0.0.0/8", "10.0.0.1") matches IPv4 addresses and IPv4-mapped
// IPv6 addresses (::ffff:10.0.0.1); an IPv6 value matches IPv6 addresses only, so "::/0" means
// "every IPv6 flow". Host bits after the prefix and IPv4-mapped IPv6 blocks are rejected, as in
// policies (the kernel reports IPv4 packets with IPv4 addresses).

#include <functional>
#include <optional>
#include <vector>

#include "common/error.hpp"
#include "events/event_matcher.hpp"
#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

class FlowFilter final : public EventMatcher {
 public:
  // Rejects values that cannot match anything and contradictory options; the message names
  // the field ("include.source_ip: '10.0.0.300' is not an IPv4 or IPv6 address block ...").
  static Expected<FlowFilter> fromRequest(const v1::GetFlowsRequest& request);

  bool matches(const v1::Event& event) const override;

 private:
  // One field of a v1::FlowFilter with its values compiled: true when any value matches.
  using FieldMatch = std::function<bool(const v1::Flow&)>;

  std::vector<FieldMatch> include_;
  std::vector<FieldMatch> exclude_;
  std::optional<google::protobuf::Timestamp> since_;
  std::optional<google::protobuf::Timestamp> until_;
};

}  // namespace vigil::events
