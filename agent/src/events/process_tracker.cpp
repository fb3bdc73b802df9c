#include "events/process_tracker.hpp"

#include "k8s/workload_proto.hpp"

#include <vigil/policy.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <unordered_map>

namespace vigil::events {
namespace fs = std::filesystem;
namespace {

// /proc start times have clock-tick resolution; kernel ones are exact.
constexpr uint64_t kStartToleranceNs = 20'000'000;
constexpr uint32_t kPfKthread = 0x00200000;

std::string absoluteFrom(const std::string& cwd, const std::string& path) {
  if (path.empty() || path.front() == '/') return fs::path(path).lexically_normal().string();
  return (fs::path(cwd.empty() ? "/" : cwd) / path).lexically_normal().string();
}

google::protobuf::Duration durationNs(uint64_t ns) {
  google::protobuf::Duration d;
  d.set_seconds(static_cast<int64_t>(ns / 1'000'000'000));
  d.set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  return d;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string readLink(const std::string& path) {
  std::error_code ec;
  auto target = fs::read_symlink(path, ec);
  return ec ? "" : target.string();
}

}  // namespace

std::string makeExecId(const std::string& node, uint64_t startNs, uint32_t pid) {
  return node + ":" + std::to_string(startNs) + ":" + std::to_string(pid);
}

ProcessTracker::ProcessTracker(TrackerOptions options, Clock clock, CgroupPaths* cgroups)
    : options_(std::move(options)),
      clock_(clock),
      cgroups_(cgroups),
      table_(options_.tableCapacity) {}

std::shared_ptr<v1::Event> ProcessTracker::onRecord(const Record& record) {
  if (auto* e = std::get_if<ExecRecord>(&record)) return onExec(*e);
  if (auto* e = std::get_if<ExitRecord>(&record)) return onExit(*e);
  if (auto* e = std::get_if<DeniedRecord>(&record)) return onDenied(*e);
  onFork(std::get<ForkRecord>(record));
  return nullptr;
}

std::string ProcessTracker::cgroupPath(uint64_t id, uint32_t pid) {
  return cgroups_ ? cgroups_->pathFor(id, pid) : "";
}

void ProcessTracker::setWorkload(v1::Process& p) {
  // No path, no answer: an unknown cgroup is not the host's.
  if (!options_.workloads || p.cgroup_path().empty()) return;
  k8s::toProto(options_.workloads->resolve(p.cgroup_path(), p.pid()), p.mutable_workload());
}

std::shared_ptr<v1::Event> ProcessTracker::newEvent(uint64_t ktimeNs, v1::EventType type,
                                                    uint32_t ppid) {
  auto ev = makeEvent();
  *ev->mutable_time() = clock_.toTimestamp(ktimeNs);
  ev->set_node_name(options_.nodeName);
  ev->set_type(type);
  table_.ancestors(ppid, options_.maxAncestors, ev->mutable_ancestors());
  return ev;
}

std::shared_ptr<v1::Event> ProcessTracker::onExec(const ExecRecord& r) {
  v1::Process p;
  p.set_exec_id(makeExecId(options_.nodeName, r.ktimeNs, r.pid));
  if (const v1::Process* parent = table_.find(r.ppid)) p.set_parent_exec_id(parent->exec_id());
  p.set_pid(r.pid);
  p.set_tid(r.tid);
  p.set_ppid(r.ppid);
  p.set_uid(r.uid);
  p.set_gid(r.gid);
  p.set_euid(r.euid);
  p.set_binary(r.path);
  for (const auto& a : r.args) p.add_args(a);
  p.set_args_truncated(r.argsTruncated());
  p.set_path_truncated(r.pathTruncated());
  p.set_cwd(r.cwd);
  p.set_comm(r.comm);
  p.set_cgroup_id(r.cgroupId);
  p.set_cgroup_path(cgroupPath(r.cgroupId, r.pid));
  setWorkload(p);
  if (r.viaInterpreter()) {
    p.set_script(absoluteFrom(r.cwd, r.filename));
    p.set_interpreter(r.interp);
  }
  *p.mutable_start_time() = clock_.toTimestamp(r.ktimeNs);

  auto ev = newEvent(r.ktimeNs, v1::EVENT_TYPE_EXEC, r.ppid);
  *ev->mutable_exec()->mutable_process() = table_.upsert(std::move(p), r.procStartNs);
  return ev;
}

void ProcessTracker::onFork(const ForkRecord& r) {
  v1::Process p;
  if (const v1::Process* parent = table_.find(r.ppid)) {
    p = *parent;
    p.set_parent_exec_id(parent->exec_id());
  } else {
    p.set_comm(r.comm);
  }
  p.set_exec_id(makeExecId(options_.nodeName, r.procStartNs, r.pid));
  p.set_pid(r.pid);
  p.set_tid(r.pid);
  p.set_ppid(r.ppid);
  p.set_forked_only(true);
  p.set_from_procfs(false);
  const bool moved = p.cgroup_id() != r.cgroupId || p.cgroup_path().empty();
  p.set_cgroup_id(r.cgroupId);
  if (moved) p.set_cgroup_path(cgroupPath(r.cgroupId, r.pid));
  if (moved || !k8s::complete(p.workload())) setWorkload(p);
  *p.mutable_start_time() = clock_.toTimestamp(r.procStartNs);
  table_.upsert(std::move(p), r.procStartNs);
}

std::shared_ptr<v1::Event> ProcessTracker::onExit(const ExitRecord& r) {
  std::optional<v1::Process> known;
  if (auto start = table_.startOf(r.pid)) {
    uint64_t diff = *start > r.procStartNs ? *start - r.procStartNs : r.procStartNs - *start;
    if (diff <= kStartToleranceNs) known = table_.remove(r.pid);
  }
  v1::Process p;
  if (known) {
    p = std::move(*known);
    if (!k8s::complete(p.workload())) setWorkload(p);  // names the pod has gained since
    auto [kept, fresh] = exited_.try_emplace(r.pid);
    if (fresh) exitedOrder_.push_back(r.pid);
    kept->second = p;
    kept->second.clear_args();
    while (exitedOrder_.size() > kExitedKept) {
      exited_.erase(exitedOrder_.front());
      exitedOrder_.pop_front();
    }
  } else {
    // Not seen before (its exec was lost, or it was evicted): what the exit record says.
    p.set_exec_id(makeExecId(options_.nodeName, r.procStartNs, r.pid));
    p.set_pid(r.pid);
    p.set_comm(r.comm);
    p.set_cgroup_id(r.cgroupId);
    p.set_cgroup_path(cgroupPath(r.cgroupId, 0));
    setWorkload(p);
    *p.mutable_start_time() = clock_.toTimestamp(r.procStartNs);
  }
  p.set_tid(r.tid);
  p.set_ppid(r.ppid);

  auto ev = newEvent(r.ktimeNs, v1::EVENT_TYPE_EXIT, r.ppid);
  v1::ExitEvent* exit = ev->mutable_exit();
  *exit->mutable_process() = std::move(p);
  exit->set_exit_code(r.exitCode());
  exit->set_signal(r.signal());
  exit->set_core_dumped(r.coreDumped());
  static const auto pageSize = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  exit->set_peak_rss_bytes(r.peakRssPages * pageSize);
  if (r.rssPages) exit->set_rss_bytes(*r.rssPages * pageSize);
  if (r.ktimeNs > r.procStartNs) *exit->mutable_lifetime() = durationNs(r.ktimeNs - r.procStartNs);
  return ev;
}

const v1::Process* ProcessTracker::findRecent(uint32_t pid) {
  if (const v1::Process* p = table_.find(pid)) return p;
  auto it = exited_.find(pid);
  return it == exited_.end() ? nullptr : &it->second;
}

std::shared_ptr<v1::Event> ProcessTracker::policyEventFor(const ExecRecord& rec,
                                                          const v1::Event& exec) const {
  auto ev = makeEvent();
  *ev->mutable_time() = exec.time();
  ev->set_node_name(exec.node_name());
  ev->set_type(v1::EVENT_TYPE_POLICY);
  *ev->mutable_ancestors() = exec.ancestors();
  v1::PolicyEvent* p = ev->mutable_policy();
  *p->mutable_process() = exec.exec().process();
  bool kill = rec.verdict == VIGIL_VERDICT_KILL;
  p->set_action(kill ? "kill" : "audit");
  if (kill) p->set_mechanism("sigkill");
  return ev;
}

std::shared_ptr<v1::Event> ProcessTracker::onDenied(const DeniedRecord& r) {
  // The process that tried, as it is (it keeps running its old program), and what it tried.
  auto ev = newEvent(r.ktimeNs, v1::EVENT_TYPE_POLICY, r.pid);
  v1::PolicyEvent* p = ev->mutable_policy();
  v1::Process* proc = p->mutable_process();
  if (const v1::Process* known = table_.find(r.pid)) *proc = *known;
  proc->set_pid(r.pid);
  proc->set_tid(r.tid);
  proc->set_ppid(r.ppid);
  proc->set_uid(r.uid);
  proc->set_comm(r.comm);
  proc->set_cgroup_id(r.cgroupId);
  proc->set_binary(r.path);
  proc->clear_args();
  p->set_action("kill");
  p->set_mechanism("lsm");
  return ev;
}

size_t ProcessTracker::seedFromProc(const std::string& procRoot) {
  struct Seed {
    v1::Process process;
    uint64_t startNs;
  };
  std::vector<Seed> seeds;
  const long ticks = sysconf(_SC_CLK_TCK);
  const int64_t suspended = Clock::suspendedNs();

  std::error_code ec;
  for (const auto& dirent : fs::directory_iterator(procRoot, ec)) {
    const std::string name = dirent.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const std::string dir = dirent.path().string();

    // "pid (comm) state ppid pgrp session tty tpgid flags ... starttime(22) ..."
    std::string stat = readFile(dir + "/stat");
    auto open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::vector<std::string> f{std::istream_iterator<std::string>(rest), {}};
    if (f.size() < 20) continue;
    uint32_t flags = static_cast<uint32_t>(std::strtoul(f[6].c_str(), nullptr, 10));
    if (flags & kPfKthread) continue;

    v1::Process p;
    p.set_pid(static_cast<uint32_t>(std::stoul(name)));
    p.set_tid(p.pid());
    p.set_ppid(static_cast<uint32_t>(std::strtoul(f[1].c_str(), nullptr, 10)));
    p.set_comm(stat.substr(open + 1, close - open - 1));
    uint64_t bootNs = std::strtoull(f[19].c_str(), nullptr, 10) * (1'000'000'000 / ticks);
    uint64_t startNs = bootNs > static_cast<uint64_t>(suspended) ? bootNs - suspended : bootNs;

    std::istringstream status(readFile(dir + "/status"));
    std::string line;
    while (std::getline(status, line)) {
      std::istringstream ls(line);
      std::string key;
      uint32_t real = 0, eff = 0;
      ls >> key >> real >> eff;
      if (key == "Uid:") {
        p.set_uid(real);
        p.set_euid(eff);
      } else if (key == "Gid:") {
        p.set_gid(real);
      }
    }
    p.set_binary(readLink(dir + "/exe"));
    p.set_cwd(readLink(dir + "/cwd"));
    for (auto& a : splitArgs(readFile(dir + "/cmdline"))) p.add_args(std::move(a));
    std::istringstream cg(readFile(dir + "/cgroup"));
    while (std::getline(cg, line)) {
      if (line.rfind("0::", 0) != 0 || !cgroups_) continue;
      p.set_cgroup_path(line.substr(3));
      if (auto id = cgroups_->idOf(p.cgroup_path())) p.set_cgroup_id(*id);
    }
    setWorkload(p);
    p.set_exec_id(makeExecId(options_.nodeName, startNs, p.pid()));
    *p.mutable_start_time() = clock_.toTimestamp(startNs);
    p.set_from_procfs(true);
    seeds.push_back({std::move(p), startNs});
  }

  std::unordered_map<uint32_t, std::string> ids;
  for (const auto& s : seeds) ids[s.process.pid()] = s.process.exec_id();
  // Oldest first, so that if the table is too small the newest processes stay.
  std::sort(seeds.begin(), seeds.end(), [](auto& a, auto& b) { return a.startNs < b.startNs; });
  for (auto& s : seeds) {
    if (auto it = ids.find(s.process.ppid()); it != ids.end())
      s.process.set_parent_exec_id(it->second);
    table_.upsert(std::move(s.process), s.startNs);
  }
  return seeds.size();
}

}  // namespace vigil::events
