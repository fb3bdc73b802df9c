#include "events/recent_exits.hpp"

#include <google/protobuf/util/time_util.h>

#include <algorithm>

namespace vigil::events {

void RecentExits::record(const v1::Event& event) {
  if (!event.has_exit() || capacity_ == 0) return;
  const v1::ExitEvent& exit = event.exit();
  const v1::Process& p = exit.process();
  v1::AccountingRow row;
  row.set_pid(p.pid());
  row.set_comm(p.comm());
  row.set_cgroup_id(p.cgroup_id());
  row.set_cgroup_path(p.cgroup_path());
  if (p.has_workload()) *row.mutable_workload() = p.workload();
  row.set_processes(1);
  v1::MemoryCounters* m = row.mutable_memory();
  m->set_rss_bytes(exit.rss_bytes());
  m->set_peak_rss_bytes(std::max(exit.peak_rss_bytes(), exit.rss_bytes()));
  v1::ExitedProcess* e = row.mutable_exited();
  *e->mutable_time() = event.time();
  e->set_exit_code(exit.exit_code());
  e->set_signal(exit.signal());
  e->set_binary(p.binary());
  e->set_exec_id(p.exec_id());
  e->set_has_rss(exit.has_rss_bytes());
  const int64_t ns = google::protobuf::util::TimeUtil::TimestampToNanoseconds(event.time());

  std::lock_guard lock(mutex_);
  if (rows_.size() == capacity_) {
    rows_.pop_front();
    evicted_++;
  }
  // Exits arrive in ring order, which is time order per CPU; keep the deque sorted so that a
  // query is a binary search even when two CPUs' records interleave.
  auto at = std::upper_bound(rows_.begin(), rows_.end(), ns,
                             [](int64_t t, const auto& r) { return t < r.first; });
  rows_.emplace(at, ns, std::move(row));
}

std::vector<v1::AccountingRow> RecentExits::since(int64_t sinceNs) const {
  std::lock_guard lock(mutex_);
  auto from = std::lower_bound(rows_.begin(), rows_.end(), sinceNs,
                               [](const auto& r, int64_t t) { return r.first < t; });
  std::vector<v1::AccountingRow> out;
  out.reserve(static_cast<size_t>(rows_.end() - from));
  for (auto it = from; it != rows_.end(); ++it) out.push_back(it->second);
  return out;
}

size_t RecentExits::size() const {
  std::lock_guard lock(mutex_);
  return rows_.size();
}

uint64_t RecentExits::evicted() const {
  std::lock_guard lock(mutex_);
  return evicted_;
}

}  // namespace vigil::events
