#pragma once

// Kernel flow records and flow-table scans -> flow events (v1::Event of type EVENT_TYPE_FLOW).
//
// The kernel announces a new flow (a record) and keeps its counters in the flow table; this
// tracker turns periodic scans of that table into FLOW_UPDATE events for long flows and
// FLOW_END events, and says which entries the agent should delete:
//   - TCP: FLOW_END "rst" or "fin" once RST was seen, or FIN both ways, and the flow has been
//     quiet for the linger time (so the last ACK is counted); "idle" after the TCP idle timeout;
//   - UDP, ICMP and others: "idle" after the idle timeout;
//   - "evicted": a flow the tracker knew vanished from the table without the agent deleting it
//     (the kernel's LRU made room); its counters are those of the previous scan.
// Owners (process, cgroup) are joined from the socket-owner table by address and port, once
// per flow end until found. Pure apart from the callbacks in FlowContext; single-threaded.

#include <vigil/flow.h>

#include <chrono>
#include <deque>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/error.hpp"
#include "events/clock.hpp"
#include "events/event_ptr.hpp"
#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

struct FlowTrackerOptions {
  std::string nodeName;
  // Inode of the agent's network namespace: interface indexes of drops in other namespaces
  // (pods) are not the agent's, and are shown with their namespace instead of a name.
  uint32_t netns = 0;
  std::chrono::nanoseconds updateInterval = std::chrono::seconds(30);
  std::chrono::nanoseconds idleTimeout = std::chrono::seconds(60);      // UDP, ICMP, other
  std::chrono::nanoseconds tcpIdleTimeout = std::chrono::seconds(600);  // TCP without FIN/RST
  std::chrono::nanoseconds tcpLinger = std::chrono::seconds(1);  // after FIN both ways or RST
};

// What the tracker learns from the rest of the agent.
struct FlowContext {
  std::function<std::optional<vigil_sock_owner>(const vigil_sock_key&)> owner;
  std::function<std::string(uint32_t ifindex)> interface;
  std::function<std::string(uint32_t reason)> dropReason;
  // Fills binary, exec_id and cgroup_path of an endpoint whose pid, comm and cgroup_id are
  // set. Returns whether that is final; otherwise the tracker asks again at the flow's next
  // event (the process or cgroup may not be known yet).
  std::function<bool(v1::FlowEndpoint*)> describe;
};

struct FlowScanResult {
  std::vector<EventPtr> events;
  std::vector<vigil_flow_key> expired;  // ended: delete them from the kernel table
};

class FlowTracker {
 public:
  FlowTracker(FlowTrackerOptions options, Clock clock, FlowContext context);

  // A VIGIL_REC_FLOW_NEW or VIGIL_REC_KERNEL_DROP record. A record that does not fit the ABI
  // gives an Error that says why.
  Expected<EventPtr> onRecord(std::span<const uint8_t> raw);

  // One scan of the kernel table, read at monotonic time nowNs (scanStartNs: when the read
  // began; flows the kernel created after it, by its coarse clock, may be missing from
  // `entries`).
  FlowScanResult onScan(std::span<const vigil_flow_entry> entries,
                        uint64_t scanStartNs, uint64_t nowNs);

  // The FLOW_DROP (or AUDIT) view of an XDP drop event.
  static EventPtr fromXdpDrop(const v1::Event& drop);

  size_t tracked() const { return known_.size(); }
  uint64_t evictions() const { return evictions_; }

 private:
  struct KeyHash {
    size_t operator()(const vigil_flow_key& k) const;
  };
  struct KeyEq {
    bool operator()(const vigil_flow_key& a, const vigil_flow_key& b) const;
  };
  // One end of a flow whose socket owner was found, with what the agent knew of it.
  struct Attribution {
    vigil_sock_owner owner{};
    std::string binary;
    std::string execId;
    std::string cgroupPath;
    std::shared_ptr<const v1::Workload> workload;  // null until known
    bool complete = false;  // describe() said so: not asked again
  };
  // What the tracker keeps per live flow: small, since a node may have 100,000s of them.
  struct Known {
    vigil_flow_value last{};
    uint64_t lastReportNs = 0;    // when the last event about it was made
    uint64_t reportedLastNs = 0;  // the flow's last_ns in that event
    uint64_t scan = 0;            // the scan that last saw it
    std::unique_ptr<Attribution> source;  // null until the owner is found
    std::unique_ptr<Attribution> destination;
  };

  EventPtr flowEvent(const vigil_flow_key& key, const vigil_flow_value& v, Known& k,
                     v1::FlowEventType type, uint64_t timeNs, const std::string& endReason);
  // Finds (or completes) the attribution of one end.
  void attribute(std::unique_ptr<Attribution>& a, const uint8_t (&local)[16], uint16_t lport,
                 const uint8_t (&remote)[16], uint16_t rport, uint8_t proto);
  std::optional<vigil_sock_owner> ownerOf(const uint8_t (&local)[16], uint16_t lport,
                                          const uint8_t (&remote)[16], uint16_t rport,
                                          uint8_t proto) const;
  // Sets the owner's fields on an endpoint and has the agent describe it; whether that is final.
  bool describe(const vigil_sock_owner& o, v1::FlowEndpoint* out) const;

  FlowTrackerOptions options_;
  Clock clock_;
  FlowContext context_;
  std::unordered_map<vigil_flow_key, Known, KeyHash, KeyEq> known_;
  // Flows this tracker ended in the last kEndedMemoryNs, by key: first_ns and end time. A new-flow
  // record of an ended flow that was still queued must not bring it back. endedOrder_ holds
  // (end time, key) oldest first, so forgetting costs only the entries that expire.
  void forgetEnded(uint64_t nowNs);
  void remember(const vigil_flow_key& key, uint64_t firstNs, uint64_t nowNs);
  std::unordered_map<vigil_flow_key, std::pair<uint64_t, uint64_t>, KeyHash, KeyEq> ended_;
  std::deque<std::pair<uint64_t, vigil_flow_key>> endedOrder_;
  uint64_t scan_ = 0;
  uint64_t evictions_ = 0;
};

// "SYN", "ACK", ... for the bits of a TCP flags byte, always in this order: SYN, ACK, PSH,
// FIN, RST, URG, ECE, CWR.
std::vector<std::string> tcpFlagNames(uint8_t flags);

}  // namespace vigil::events
