#pragma once

// A memory snapshot (one vigil_mem_task per process, from the task iterator) turned into the
// rows of GetAccounting: per process, per cgroup or per pod, with the cgroups' network bytes.
// Pure: everything it needs from the rest of the agent comes through AccountingContext.

#include <vigil/mem.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

struct AccountingContext {
  uint64_t pageSize = 4096;
  std::function<std::string(uint64_t cgroupId, uint32_t pid)> cgroupPath;
  std::function<v1::Workload(const std::string& cgroupPath, uint32_t pid)> workload;
  // Whether a cgroup's processes may have different workloads (a hybrid host's /proc
  // fallback); otherwise the cgroup is resolved once per snapshot. Unset: always once.
  std::function<bool(const std::string& cgroupPath)> perProcess;
  // Network bytes in and out per cgroup id (cgroup_skb counters); empty without flows.
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> network;
  // The kernel's charge for a cgroup (memory.current / memory.usage_in_bytes), if known.
  std::function<std::optional<uint64_t>(const std::string& cgroupPath)> cgroupMemory;
  // Its high-water mark (memory.peak / memory.max_usage_in_bytes), if known.
  std::function<std::optional<uint64_t>(const std::string& cgroupPath)> cgroupMemoryPeak;
  // Processes that exited since the request's `since` (RecentExits rows), for process rows.
  std::vector<v1::AccountingRow> exited;
};

// Rejects an unknown group_by or sort_by, a cgroup_prefix that is not a path, or a since that
// is not a valid time or comes with cgroup or pod rows, with a message naming the field.
Status checkAccountingRequest(const v1::GetAccountingRequest& request);

// Fills rows (sorted, limited), the process count and the node total. snapshot_ns and time
// are the caller's.
v1::GetAccountingResponse buildAccounting(std::span<const vigil_mem_task> tasks,
                                          const v1::GetAccountingRequest& request,
                                          const AccountingContext& context);

// Memory counters of one process, in bytes.
v1::MemoryCounters memoryOf(const vigil_mem_task& task, uint64_t pageSize);

}  // namespace vigil::events
