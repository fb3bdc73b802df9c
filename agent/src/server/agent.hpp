#pragma once

// The running agent: kernel probes, BPF programs, the reader and decoder threads, the event
// hub and the API server, started in that order and stopped in reverse.

#include <vigil/records.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "bpf/feature_probe.hpp"
#include "bpf/flow_datapath.hpp"
#include "bpf/mem_datapath.hpp"
#include "bpf/ring_reader.hpp"
#include "bpf/skeleton.hpp"
#include "bpf/xdp_datapath.hpp"
#include "common/error.hpp"
#include "events/cgroups.hpp"
#include "events/flow_tracker.hpp"
#include "events/process_tracker.hpp"
#include "events/recent_exits.hpp"
#include "k8s/workload_resolver.hpp"
#include "export/api_server.hpp"
#include "export/json_export.hpp"
#include "export/metrics.hpp"
#include "export/grpc_service.hpp"
#include "policy/policy_store.hpp"
#include "server/config.hpp"
#include "server/event_hub.hpp"

namespace vigil::server {

class Agent {
 public:
  // Any failure here is fatal and explained: the error says what could not be done.
  static Expected<std::unique_ptr<Agent>> start(const AgentConfig& config);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Detaches every program and stops every thread; idempotent.
  void stop();

  v1::GetStatusResponse status() const;
  EventHub& hub() { return hub_; }
  EventHub& flowHub() { return flowHub_; }
  // Per-cgroup network counters (GetTraffic).
  v1::GetTrafficResponse traffic(const v1::GetTrafficRequest& request) const;
  // Memory (and network) per process, cgroup or pod, read from the kernel now (GetAccounting).
  Expected<v1::GetAccountingResponse> accounting(const v1::GetAccountingRequest& request) const;
  policy::PolicyStore& policies() { return *policies_; }
  // Kernel hit counter of every rule slot.
  std::vector<uint64_t> ruleHits() const;
  // How exec kills are done here, and why not the better way.
  const std::string& enforcement() const { return enforcement_; }
  // Kernel counters of the XDP rules, by slot.
  std::map<uint32_t, api::XdpCounters> xdpCounters() const;

 private:
  explicit Agent(const AgentConfig& config);
  void onRecord(std::span<const uint8_t> raw);  // reader thread; never blocks
  void processLoop();                           // decoder thread
  void reportLosses();
  void policyLoop();  // policy directory watcher thread
  // Fills in the policy and rule a kernel rule slot stands for.
  void nameRule(v1::PolicyEvent* event, uint32_t slot) const;
  Status startXdp();
  Status applyXdp(const policy::CompiledXdp& rules, const std::vector<uint32_t>& fresh);
  void publishDrop(std::span<const uint8_t> raw);
  std::string interfaceName(uint32_t ifindex);  // decoder thread
  void fillXdpStatus(v1::XdpStatus* out) const;
  void startFlows();
  void publishFlow(std::span<const uint8_t> raw);
  void scanFlows();  // decoder thread
  void fillFlowStatus(v1::FlowStatus* out) const;
  void startMem();
  void publishOom(std::span<const uint8_t> raw);  // decoder thread
  // cgroupFigures: the cgroups' network bytes and memory charges too (the metrics' pod
  // memory needs neither).
  Expected<v1::GetAccountingResponse> accounting(const v1::GetAccountingRequest& request,
                                                 bool cgroupFigures) const;
  api::MetricsSnapshot metricsSnapshot() const;  // a metrics scrape's view

  // Per record type (enum vigil_record_type), index 0 for types this agent does not know.
  static constexpr size_t kTypes = VIGIL_REC_TYPES;
  static size_t typeIndex(uint16_t type) { return type < kTypes ? type : 0; }
  // Records the kernel could not put into a ring buffer, by record type.
  std::array<uint64_t, kTypes> kernelLosses() const;
  using Counters = std::array<std::atomic<uint64_t>, kTypes>;

  const AgentConfig config_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::vector<bpf::Capability> capabilities_;
  std::unique_ptr<events::CgroupPaths> cgroups_;
  std::unique_ptr<k8s::WorkloadResolver> workloads_;  // thread-safe
  std::unique_ptr<events::ProcessTracker> tracker_;  // decoder thread only, after start
  EventHub hub_;
  events::RecentExits exits_;  // thread-safe
  std::unique_ptr<bpf::Skeleton> skel_;
  std::unique_ptr<bpf::RingReader> reader_;
  std::unique_ptr<policy::PolicyStore> policies_;
  // XDP filter; null where this kernel cannot run it (xdpUnavailable_ says why).
  mutable std::mutex xdpMutex_;
  std::unique_ptr<bpf::XdpDataPath> xdp_;  // guarded by xdpMutex_ (the pointer is set once)
  std::string xdpUnavailable_;
  // Enforcement adopted from an earlier agent is kept until a policy with XDP rules replaces
  // it: a restart never opens a hole, even when the policy files are missing or broken.
  bool xdpHold_ = false;  // guarded by xdpMutex_
  std::unique_ptr<bpf::RingReader> xdpReader_;
  std::map<uint32_t, std::string> ifnames_;  // decoder thread only
  // Network flows; null where this kernel cannot run them (flowUnavailable_ says why).
  mutable std::mutex flowMutex_;
  std::unique_ptr<bpf::FlowDataPath> flow_;  // guarded by flowMutex_ (the pointer is set once)
  std::string flowUnavailable_;
  std::unique_ptr<bpf::RingReader> flowReader_;
  std::unique_ptr<events::FlowTracker> flowTracker_;  // decoder thread only, after start
  // Memory accounting; null where this kernel cannot run it (memUnavailable_ says why).
  std::unique_ptr<bpf::MemDataPath> mem_;  // set once at start
  std::string memUnavailable_;
  std::unique_ptr<bpf::RingReader> memReader_;
  std::string memcgV1Root_;  // the cgroup v1 memory controller's mount, on hybrid hosts
  std::unique_ptr<events::CgroupPaths> memcgV1Paths_;  // ids in it, when memcgV1Root_ is set
  std::string memcgDescription_;  // which cgroup memory figures GetAccounting gives (set once)
  // Where a cgroup's charge and peak are read: <root><path><file>; root "" when nowhere.
  std::string memcgRoot_, memcgCurrentFile_, memcgPeakFile_;
  std::map<uint32_t, std::string> dropReasons_;       // set once at start
  EventHub flowHub_;
  std::atomic<uint64_t> flowTableEntries_{0};
  std::atomic<uint64_t> flowEvictions_{0};
  std::string enforcement_;
  std::thread policyThread_;
  std::mutex policyMutex_;
  std::condition_variable policyWake_;
  bool policyStop_ = false;  // guarded by policyMutex_
  mutable std::mutex exporterMutex_;
  std::unique_ptr<api::JsonExporter> exporter_;  // set once at start, reset at stop (mutex)
  std::unique_ptr<api::VigilService> service_;
  std::unique_ptr<api::ApiServer> server_;  // also the health-only server
  std::string apiDescription_;
  std::unique_ptr<api::MetricsServer> metrics_;
  mutable std::mutex descriptionMutex_;
  std::string metricsDescription_, healthDescription_;  // guarded by descriptionMutex_

  std::mutex queueMutex_;
  std::condition_variable queueReady_;
  std::deque<std::vector<uint8_t>> queue_;  // guarded by queueMutex_
  // Buffers the decoder is done with, reused by the reader: no allocation per record.
  std::vector<std::vector<uint8_t>> spare_;  // guarded by queueMutex_
  bool stopping_ = false;                    // guarded by queueMutex_
  std::thread processor_;

  Counters seen_{};
  Counters malformed_{};
  Counters agentDropped_{};
  std::atomic<uint64_t> tableSize_{0};
  std::atomic<uint64_t> tableEvictions_{0};
  // Loss counts already turned into LostEvents (decoder thread only).
  std::array<uint64_t, kTypes> reportedKernelLost_{};
  std::array<uint64_t, kTypes> reportedAgentLost_{};
  bool stopped_ = false;
};

}  // namespace vigil::server
