#pragma once

// The network side in the kernel: the vigil_flow skeleton (bpf/progs/flow.bpf.c), its tc
// attachments on the watched interfaces, its cgroup_skb attachment on the cgroup v2 root and
// its tracepoints. Unlike XDP enforcement nothing here outlives the agent: tcx links and the
// cgroup and tracepoint links close with the process; legacy tc filters (kernels before 6.6)
// are removed by the destructor.
//
// Each part is optional. A kernel without a hook loses that part only, and hooks() says which
// parts run and why the others do not.

#include <vigil/flow.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bpf/feature_probe.hpp"
#include "bpf/skeleton.hpp"
#include "common/error.hpp"

struct vigil_flow;  // generated skeleton, only ever included by agent/src/bpf/*.cpp

namespace vigil::bpf {

enum class TcMode {
  automatic,  // tcx links where the kernel has them (6.6+), else clsact filters
  tcx,
  legacy,
};

struct FlowOptions {
  uint32_t tableEntries = 65536;   // flows (LRU)
  uint32_t ownerEntries = 65536;   // socket owners (LRU)
  uint32_t cgroupEntries = 16384;  // (cgroup, protocol) traffic counters (LRU)
  uint32_t ringBufferBytes = 4u << 20;
  uint32_t dropSamples = 100;  // drop records per reason per second (all CPUs)
  // The cgroup v2 mount whose root gets the cgroup_skb programs; empty: no per-cgroup counters.
  std::string cgroupRoot;
  TcMode tcMode = TcMode::automatic;
};

struct FlowAttachment {
  std::string ifname;
  uint32_t ifindex = 0;
  std::string mode;  // "tcx" or "tc"
};

struct CgroupTrafficRow {
  uint64_t cgroupId = 0;
  uint32_t proto = 0;  // enum vigil_traffic_proto
  vigil_flow_counters in{};
  vigil_flow_counters out{};
};

class FlowDataPath {
 public:
  static Expected<std::unique_ptr<FlowDataPath>> open(const FlowOptions& options);
  ~FlowDataPath();
  FlowDataPath(const FlowDataPath&) = delete;
  FlowDataPath& operator=(const FlowDataPath&) = delete;

  // Attaches the tc programs to `names` (every non-loopback interface when empty) and detaches
  // from interfaces that are gone or no longer wanted. Cheap when nothing changed. A named
  // interface that does not exist is not an error: it is attached once it appears.
  Status syncInterfaces(const std::vector<std::string>& names);
  void detachAll();
  std::vector<FlowAttachment> attachments() const;

  // The parts of the data path and whether they run: "flow_tc", "cgroup_traffic",
  // "socket_attribution", "kernel_drops".
  const std::vector<Capability>& hooks() const { return hooks_; }
  bool running(const std::string& hook) const;

  int ringFd() const;
  uint32_t tableCapacity() const { return options_.tableEntries; }
  // Every live flow entry (batched reads; entries may change while it reads).
  Expected<std::vector<vigil_flow_entry>> readFlows() const;
  // Removes ended flows. Returns how many the kernel still had.
  size_t deleteFlows(const std::vector<vigil_flow_key>& keys);
  std::optional<vigil_sock_owner> owner(const vigil_sock_key& key) const;
  Expected<std::vector<CgroupTrafficRow>> readTraffic() const;
  // enum vigil_flow_stat and drops by reason value, summed over CPUs.
  Expected<std::vector<uint64_t>> readStats() const;
  Expected<std::vector<uint64_t>> readDropCounts() const;
  std::vector<ProgramInfo> programs() const;

  static const char* statName(size_t id);

  // Removes the clsact filters (kernels before 6.6) that an agent which did not stop cleanly
  // left on any interface: Vigil's handle and priority, and a program named vigil_flow_*.
  // Returns how many it removed.
  static Expected<size_t> cleanup();

 private:
  struct Impl;
  explicit FlowDataPath(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  FlowOptions options_;
  std::vector<Capability> hooks_;
};

// Names of this kernel's enum skb_drop_reason values, from its BTF, without the
// "SKB_DROP_REASON_" prefix ("NO_SOCKET", "NETFILTER_DROP"; SKB_CONSUMED stays as it is).
Expected<std::map<uint32_t, std::string>> dropReasonNames();

}  // namespace vigil::bpf
