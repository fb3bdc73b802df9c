#pragma once

#include <deque>
#include <unordered_map>

// Turns decoded kernel records into API events, keeping the process table that gives each
// event its parent chain and exec ids.

#include <optional>
#include <string>

#include "events/cgroups.hpp"
#include "events/clock.hpp"
#include "events/event_ptr.hpp"
#include "events/process_table.hpp"
#include "events/records.hpp"
#include "k8s/workload_resolver.hpp"
#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

struct TrackerOptions {
  std::string nodeName;
  size_t tableCapacity = 32768;
  size_t maxAncestors = 32;
  // Pod and container of each process, from its cgroup path (none: no workload field).
  k8s::WorkloadResolver* workloads = nullptr;
};

// "<node>:<start ns>:<pid>": unique on a node, stable for one execution.
std::string makeExecId(const std::string& node, uint64_t startNs, uint32_t pid);

class ProcessTracker {
 public:
  ProcessTracker(TrackerOptions options, Clock clock, CgroupPaths* cgroups);

  // An event for exec and exit records, a policy event (without the policy and rule names,
  // which the caller knows) for denied ones; nothing for fork records, which only feed the
  // table.
  std::shared_ptr<v1::Event> onRecord(const Record& record);

  // The policy event for an exec the kernel matched against a rule (rec.verdict set), built
  // from its exec event; the caller names the policy and rule.
  std::shared_ptr<v1::Event> policyEventFor(const ExecRecord& rec, const v1::Event& exec) const;

  // Seeds the table with the processes alive now, from procRoot (normally /proc). Returns how
  // many were added.
  size_t seedFromProc(const std::string& procRoot);

  const ProcessTable& table() const { return table_; }
  ProcessTable& table() { return table_; }
  // A process by pid: the live one from the table, else one of the last kExitedKept to exit
  // (without its argv), for records that arrive after the exit record (network flows).
  const v1::Process* findRecent(uint32_t pid);
  static constexpr size_t kExitedKept = 4096;
  // Re-reads the realtime/monotonic offset, so that NTP adjustments reach event times.
  void recalibrateClock() { clock_.recalibrate(); }

 private:
  std::shared_ptr<v1::Event> onExec(const ExecRecord& r);
  std::shared_ptr<v1::Event> onExit(const ExitRecord& r);
  void onFork(const ForkRecord& r);
  std::shared_ptr<v1::Event> onDenied(const DeniedRecord& r);
  std::shared_ptr<v1::Event> newEvent(uint64_t ktimeNs, v1::EventType type, uint32_t ppid);
  std::string cgroupPath(uint64_t id, uint32_t pid);
  // Sets p's workload from its cgroup path (and pid, for hybrid hosts).
  void setWorkload(v1::Process& p);

  TrackerOptions options_;
  Clock clock_;
  CgroupPaths* cgroups_;
  ProcessTable table_;
  std::unordered_map<uint32_t, v1::Process> exited_;  // the last kExitedKept exits, by pid
  std::deque<uint32_t> exitedOrder_;                   // oldest first
};

}  // namespace vigil::events
