#include "events/accounting.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace vigil::events {
namespace {

void add(v1::MemoryCounters* to, const v1::MemoryCounters& m) {
  to->set_rss_bytes(to->rss_bytes() + m.rss_bytes());
  to->set_anon_bytes(to->anon_bytes() + m.anon_bytes());
  to->set_file_bytes(to->file_bytes() + m.file_bytes());
  to->set_shmem_bytes(to->shmem_bytes() + m.shmem_bytes());
  to->set_swap_bytes(to->swap_bytes() + m.swap_bytes());
  to->set_peak_rss_bytes(to->peak_rss_bytes() + m.peak_rss_bytes());
}

bool wantedPid(const v1::GetAccountingRequest& request, uint32_t pid) {
  return request.pids().empty() ||
         std::find(request.pids().begin(), request.pids().end(), pid) != request.pids().end();
}

bool underPrefix(const std::string& path, const std::string& prefix) {
  if (prefix.empty()) return true;
  if (!path.starts_with(prefix)) return false;
  return prefix.back() == '/' || path.size() == prefix.size() || path[prefix.size()] == '/';
}

}  // namespace

v1::MemoryCounters memoryOf(const vigil_mem_task& t, uint64_t pageSize) {
  v1::MemoryCounters m;
  const uint64_t rss = t.file_pages + t.anon_pages + t.shmem_pages;
  m.set_rss_bytes(rss * pageSize);
  m.set_anon_bytes(t.anon_pages * pageSize);
  m.set_file_bytes(t.file_pages * pageSize);
  m.set_shmem_bytes(t.shmem_pages * pageSize);
  m.set_swap_bytes(t.swap_entries * pageSize);
  // VmHWM: hiwater_rss is updated lazily (when RSS is about to drop); the current RSS may be
  // higher.
  m.set_peak_rss_bytes(std::max<uint64_t>(t.hiwater_pages, rss) * pageSize);
  return m;
}

Status checkAccountingRequest(const v1::GetAccountingRequest& r) {
  const std::string& g = r.group_by();
  if (!g.empty() && g != "process" && g != "cgroup" && g != "pod")
    return Error(EINVAL, "group_by: '" + g + "' is not process, cgroup or pod");
  const std::string& s = r.sort_by();
  if (!s.empty() && s != "memory" && s != "network")
    return Error(EINVAL, "sort_by: '" + s + "' is not memory or network");
  if (!r.cgroup_prefix().empty() && r.cgroup_prefix().front() != '/')
    return Error(EINVAL, "cgroup_prefix: '" + r.cgroup_prefix() + "' does not start with '/'");
  for (uint32_t pid : r.pids())
    if (pid == 0) return Error(EINVAL, "pids: pid 0 is no process");
  if (r.has_since()) {
    const auto& s = r.since();
    // The protobuf Timestamp range: 0001-01-01 to 9999-12-31; before 1970 is no exit time.
    if (s.seconds() < 0 || s.seconds() > 253402300799 || s.nanos() < 0 ||
        s.nanos() >= 1'000'000'000)
      return Error(EINVAL, "since: not a valid time (seconds " +
                               std::to_string(r.since().seconds()) + ", nanos " +
                               std::to_string(r.since().nanos()) + ")");
    if (!g.empty() && g != "process")
      return Error(EINVAL, "since: exited processes are process rows; it cannot be used with "
                           "group_by " + g);
  }
  return {};
}

v1::GetAccountingResponse buildAccounting(std::span<const vigil_mem_task> tasks,
                                          const v1::GetAccountingRequest& request,
                                          const AccountingContext& ctx) {
  v1::GetAccountingResponse out;
  const std::string groupBy = request.group_by().empty() ? "process" : request.group_by();
  std::map<std::string, v1::AccountingRow> groups;  // cgroup or pod key -> row
  std::map<std::string, std::map<uint64_t, bool>> groupCgroups;
  std::vector<v1::AccountingRow> rows;
  out.set_processes(static_cast<uint32_t>(tasks.size()));

  // Per cgroup id, once per snapshot: its path, and its workload when the path alone tells it
  // (a process-dependent answer, from a hybrid host's /proc fallback, is asked per process).
  struct CgroupInfo {
    std::string path;
    std::optional<v1::Workload> workload;
  };
  std::unordered_map<uint64_t, CgroupInfo> cgroups;
  for (const vigil_mem_task& t : tasks) {
    const v1::MemoryCounters mem = memoryOf(t, ctx.pageSize);
    add(out.mutable_total(), mem);
    if (!wantedPid(request, t.pid)) continue;
    auto [info, newCgroup] = cgroups.try_emplace(t.cgroup_id);
    if (newCgroup) {
      if (ctx.cgroupPath) info->second.path = ctx.cgroupPath(t.cgroup_id, t.pid);
      if (ctx.workload && !info->second.path.empty()) {
        v1::Workload byPath = ctx.workload(info->second.path, 0);
        if (byPath.kind() != "host" || !ctx.perProcess || !ctx.perProcess(info->second.path))
          info->second.workload = std::move(byPath);
      }
    }
    const std::string& path = info->second.path;
    if (!underPrefix(path, request.cgroup_prefix())) continue;
    v1::Workload workload;
    if (info->second.workload) {
      workload = *info->second.workload;
    } else if (ctx.workload && !path.empty()) {
      workload = ctx.workload(path, t.pid);
    }
    auto net = ctx.network.find(t.cgroup_id);

    if (groupBy == "process") {
      v1::AccountingRow row;
      row.set_pid(t.pid);
      row.set_comm(std::string(t.comm, strnlen(t.comm, sizeof t.comm)));
      row.set_threads(t.threads);
      row.set_cgroup_id(t.cgroup_id);
      row.set_cgroup_path(path);
      if (!path.empty()) *row.mutable_workload() = std::move(workload);
      *row.mutable_memory() = mem;
      row.set_processes(1);
      if (net != ctx.network.end()) {
        row.set_network_rx_bytes(net->second.first);
        row.set_network_tx_bytes(net->second.second);
      }
      rows.push_back(std::move(row));
      continue;
    }
    // Pods group their containers' cgroups; everything else groups by cgroup.
    const bool byPod = groupBy == "pod" && workload.kind() == "pod";
    const std::string key =
        byPod ? "pod:" + workload.pod_uid() : "cgroup:" + std::to_string(t.cgroup_id);
    auto [it, fresh] = groups.try_emplace(key);
    v1::AccountingRow& row = it->second;
    if (fresh) {
      if (byPod) {
        v1::Workload w;
        w.set_kind("pod");
        w.set_namespace_(workload.namespace_());
        w.set_pod(workload.pod());
        w.set_pod_uid(workload.pod_uid());
        *row.mutable_workload() = w;
      } else {
        row.set_cgroup_id(t.cgroup_id);
        row.set_cgroup_path(path);
        if (!path.empty()) *row.mutable_workload() = workload;
        if (ctx.cgroupMemory && !path.empty()) {
          if (auto charged = ctx.cgroupMemory(path)) row.set_cgroup_memory_bytes(*charged);
        }
        if (ctx.cgroupMemoryPeak && !path.empty()) {
          if (auto peak = ctx.cgroupMemoryPeak(path)) row.set_cgroup_memory_peak_bytes(*peak);
        }
      }
    }
    add(row.mutable_memory(), mem);
    row.set_processes(row.processes() + 1);
    row.set_threads(row.threads() + t.threads);
    // A cgroup's network bytes count once per group, however many processes it holds.
    if (net != ctx.network.end() && !groupCgroups[key][t.cgroup_id]) {
      groupCgroups[key][t.cgroup_id] = true;
      row.set_network_rx_bytes(row.network_rx_bytes() + net->second.first);
      row.set_network_tx_bytes(row.network_tx_bytes() + net->second.second);
    }
  }
  for (auto& [_, row] : groups) rows.push_back(std::move(row));
  if (groupBy == "process") {
    for (const v1::AccountingRow& e : ctx.exited) {
      if (!wantedPid(request, e.pid()) || !underPrefix(e.cgroup_path(), request.cgroup_prefix()))
        continue;
      v1::AccountingRow row = e;
      if (auto net = ctx.network.find(e.cgroup_id()); net != ctx.network.end()) {
        row.set_network_rx_bytes(net->second.first);
        row.set_network_tx_bytes(net->second.second);
      }
      rows.push_back(std::move(row));
    }
  }

  const bool byNetwork = request.sort_by() == "network";
  std::stable_sort(rows.begin(), rows.end(), [&](const auto& a, const auto& b) {
    if (byNetwork) {
      uint64_t na = a.network_rx_bytes() + a.network_tx_bytes();
      uint64_t nb = b.network_rx_bytes() + b.network_tx_bytes();
      if (na != nb) return na > nb;
    }
    if (a.memory().rss_bytes() != b.memory().rss_bytes())
      return a.memory().rss_bytes() > b.memory().rss_bytes();
    return a.pid() < b.pid();
  });
  if (request.limit() > 0 && rows.size() > request.limit()) rows.resize(request.limit());
  for (auto& r : rows) *out.add_rows() = std::move(r);
  return out;
}

}  // namespace vigil::events
