#include "export/metrics.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>

namespace vigil::api {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<std::pair<std::string, std::string>>;

// Families by name, so that series of one name gathered from several places share one
// HELP/TYPE header.
class Families {
 public:
  void add(const std::string& name, MetricType type, const std::string& help,
           const Labels& labels, double value) {
    auto [it, fresh] = families_.try_emplace(name);
    MetricFamily& f = it->second;
    if (fresh) {
      f.name = name;
      f.help = help;
      f.type = type;
    }
    ClientMetric m;
    for (const auto& [k, v] : labels) m.label.push_back({k, v});
    if (type == MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    f.metric.push_back(std::move(m));
  }
  void counter(const std::string& name, const std::string& help, const Labels& labels,
               double value) {
    add(name, MetricType::Counter, help, labels, value);
  }
  void gauge(const std::string& name, const std::string& help, const Labels& labels,
             double value) {
    add(name, MetricType::Gauge, help, labels, value);
  }
  std::vector<MetricFamily> take() {
    std::vector<MetricFamily> out;
    out.reserve(families_.size());
    for (auto& [_, f] : families_) out.push_back(std::move(f));
    return out;
  }

 private:
  std::map<std::string, MetricFamily> families_;
};

std::string eventTypeName(v1::EventType t) {
  switch (t) {
    case v1::EVENT_TYPE_EXEC: return "exec";
    case v1::EVENT_TYPE_EXIT: return "exit";
    case v1::EVENT_TYPE_POLICY: return "policy";
    case v1::EVENT_TYPE_DROP: return "drop";
    case v1::EVENT_TYPE_FLOW: return "flow";
    case v1::EVENT_TYPE_OOM_KILL: return "oom";
    default: return "other";
  }
}

void addEvents(const v1::GetStatusResponse& s, Families& f) {
  for (const auto& e : s.events()) {
    Labels l{{"type", eventTypeName(e.type())}};
    f.counter("vigil_events_total", "Events the agent received from the kernel, by type", l,
              static_cast<double>(e.seen()));
    f.counter("vigil_events_lost_total",
              "Events lost before the agent could read them (ring buffer full), by type", l,
              static_cast<double>(e.lost_kernel()));
    f.counter("vigil_events_malformed_total",
              "Records the agent rejected as truncated or malformed, by type", l,
              static_cast<double>(e.malformed()));
  }
  if (s.has_flows() && s.flows().state() == "tracking") {
    Labels l{{"type", "flow"}};
    f.counter("vigil_events_total", "Events the agent received from the kernel, by type", l,
              static_cast<double>(s.flows().flows_seen()));
    double lost = 0;  // the kernel's, as for the other types (not slow API clients)
    for (const auto& k : s.flows().stats()) {
      if (k.name() == "flow_records_lost_ringbuf_full" ||
          k.name() == "drop_records_lost_ringbuf_full")
        lost += static_cast<double>(k.value());
    }
    f.counter("vigil_events_lost_total",
              "Events lost before the agent could read them (ring buffer full), by type", l,
              lost);
  }
  f.counter("vigil_client_events_dropped_total",
            "Events not delivered to a following API client that could not keep up", {},
            static_cast<double>(s.client_events_dropped()));
  for (const auto& k : s.kernel_stats()) {
    if (k.name() == "agent_queue_dropped") {
      f.counter("vigil_agent_queue_dropped_total",
                "Records read from a ring buffer but dropped because the agent's decoder "
                "queue was full",
                {}, static_cast<double>(k.value()));
    }
  }
}

void addStats(const std::string& source, const google::protobuf::RepeatedPtrField<v1::KernelStat>& stats,
              Families& f) {
  for (const auto& k : stats) {
    if (k.name() == "agent_queue_dropped") continue;  // its own metric
    f.counter("vigil_bpf_stat_total",
              "Counters kept by Vigil's BPF programs (failed ring reserves, full maps, "
              "truncations, ...), by data path and name",
              {{"source", source}, {"name", k.name()}}, static_cast<double>(k.value()));
  }
}

void addStores(const v1::GetStatusResponse& s, Families& f) {
  const char* ringHelp = "Bytes written by the kernel and not yet read by the agent, by ring buffer";
  for (const auto& r : s.ring_buffers()) {
    Labels l{{"ring", r.name()}};
    f.gauge("vigil_ring_buffer_used_bytes", ringHelp, l, static_cast<double>(r.pending_bytes()));
    f.gauge("vigil_ring_buffer_size_bytes", "Size of each kernel ring buffer", l,
            static_cast<double>(r.size_bytes()));
  }
  f.gauge("vigil_event_store_events", "Recent events kept in memory for --last, by store",
          {{"store", "events"}}, static_cast<double>(s.event_ring_size()));
  f.gauge("vigil_event_store_capacity", "Capacity of each in-memory event store",
          {{"store", "events"}}, static_cast<double>(s.event_ring_capacity()));
  if (s.has_flows() && s.flows().state() == "tracking") {
    f.gauge("vigil_event_store_events", "Recent events kept in memory for --last, by store",
            {{"store", "flows"}}, static_cast<double>(s.flows().ring_size()));
    f.gauge("vigil_event_store_capacity", "Capacity of each in-memory event store",
            {{"store", "flows"}}, static_cast<double>(s.flows().ring_capacity()));
  }
  f.gauge("vigil_event_store_events", "Recent events kept in memory for --last, by store",
          {{"store", "exits"}}, static_cast<double>(s.recent_exits_size()));
  f.gauge("vigil_event_store_capacity", "Capacity of each in-memory event store",
          {{"store", "exits"}}, static_cast<double>(s.recent_exits_capacity()));
  f.gauge("vigil_process_table_entries", "Processes in the agent's process table", {},
          static_cast<double>(s.process_table_size()));
  f.gauge("vigil_process_table_capacity", "Capacity of the agent's process table", {},
          static_cast<double>(s.process_table_capacity()));
  f.counter("vigil_process_table_evictions_total",
            "Processes evicted from a full process table (least recently used first)", {},
            static_cast<double>(s.process_table_evictions()));
  f.gauge("vigil_api_clients", "API clients following events or flows", {},
          static_cast<double>(s.clients()));
}

void addPolicies(const std::vector<v1::PolicyStatus>& policies, Families& f) {
  std::map<std::string, double> byState;
  for (const auto& p : policies) {
    byState[p.state()]++;
    for (const auto& r : p.rules()) {
      const bool audit = r.mode() == "audit";
      if (r.kind() == "exec") {
        f.counter("vigil_exec_policy_actions_total",
                  "Execs that matched an exec policy rule, by policy, rule and action (kill: "
                  "the process was killed; audit: it was reported and ran)",
                  {{"policy", p.name()},
                   {"rule", r.name()},
                   {"action", !audit && r.action() == "kill" ? "kill" : "audit"}},
                  static_cast<double>(r.hits()));
        continue;
      }
      if (r.kind() != "xdp") continue;
      // The rule's own matches, then those over its rate limit.
      std::string action = audit && r.action() == "drop" ? "audit" : r.action();
      Labels l{{"policy", p.name()}, {"rule", r.name()}, {"action", action}};
      f.counter("vigil_xdp_packets_total",
                "Packets an XDP rule matched, by policy, rule and action (drop, pass, audit: "
                "an audit-mode drop that passed, rate_limit: over the rule's rate and "
                "dropped, rate_limit_audit: over it and passed)",
                l, static_cast<double>(r.packets()));
      f.counter("vigil_xdp_bytes_total",
                "Bytes (from the Ethernet header) of the packets an XDP rule matched", l,
                static_cast<double>(r.bytes()));
      if (r.rate_limited()) {
        Labels rl{{"policy", p.name()},
                  {"rule", r.name()},
                  {"action", audit ? "rate_limit_audit" : "rate_limit"}};
        f.counter("vigil_xdp_packets_total", "", rl, static_cast<double>(r.limited_packets()));
        f.counter("vigil_xdp_bytes_total", "", rl, static_cast<double>(r.limited_bytes()));
      }
    }
  }
  for (const char* state : {"enforcing", "audit", "error"}) {
    f.gauge("vigil_policies", "Policies loaded, by state (error: rejected, not in force)",
            {{"state", state}}, byState[state]);
  }
}

void addFlows(const v1::FlowStatus& flows, Families& f) {
  if (flows.state() != "tracking") return;
  f.gauge("vigil_flow_table_entries", "Flows in the kernel flow table", {},
          static_cast<double>(flows.table_entries()));
  f.gauge("vigil_flow_table_capacity", "Capacity of the kernel flow table (--flow-table-size)",
          {}, static_cast<double>(flows.table_capacity()));
  f.counter("vigil_flow_table_evictions_total",
            "Flows the full kernel table evicted before they ended", {},
            static_cast<double>(flows.table_evictions()));
  for (const auto& d : flows.drops()) {
    f.counter("vigil_kernel_drops_total",
              "Packets the kernel dropped, by drop reason (skb_drop_reason, from kfree_skb)",
              {{"reason", d.reason()}}, static_cast<double>(d.packets()));
  }
  addStats("flow", flows.stats(), f);
}

void addTraffic(const TrafficTotals& t, Families& f) {
  const char* dirs[2] = {"ingress", "egress"};
  for (int d = 0; d < 2; d++) {
    f.counter("vigil_node_network_bytes_total",
              "IP bytes sent and received by every cgroup of the node (cgroup_skb), by "
              "direction",
              {{"direction", dirs[d]}}, t.node().bytes[d]);
    f.counter("vigil_node_network_packets_total",
              "Packets sent and received by every cgroup of the node, by direction",
              {{"direction", dirs[d]}}, t.node().packets[d]);
  }
  auto podSeries = [&](const std::string& ns, const std::string& pod,
                       const TrafficTotals::Counts& c) {
    for (int d = 0; d < 2; d++) {
      Labels l{{"namespace", ns}, {"pod", pod}, {"direction", dirs[d]}};
      f.counter("vigil_network_bytes_total",
                "IP bytes sent and received by a live pod's cgroups, by namespace, pod and "
                "direction (pods beyond --metrics-max-pods are summed into pod=\"_other\")",
                l, c.bytes[d]);
      f.counter("vigil_network_packets_total",
                "Packets sent and received by a live pod's cgroups, by namespace, pod and "
                "direction",
                l, c.packets[d]);
    }
  };
  for (const auto& [key, c] : t.pods()) podSeries(key.first, key.second, c);
  if (t.podsInOther() > 0 || t.other().bytes[0] + t.other().bytes[1] > 0)
    podSeries("_other", "_other", t.other());
  f.gauge("vigil_metrics_pods",
          "Live pods with network counters: reported with their own series, or summed into "
          "pod=\"_other\" over the --metrics-max-pods cap",
          {{"series", "own"}}, static_cast<double>(t.pods().size()));
  f.gauge("vigil_metrics_pods", "", {{"series", "other"}}, static_cast<double>(t.podsInOther()));
}

void addMemory(const v1::GetAccountingResponse& m, const std::set<std::string>& livePods,
               size_t maxPods, Families& f) {
  f.gauge("vigil_node_memory_rss_bytes", "RSS of every process on the node (anon + file + shmem)",
          {}, static_cast<double>(m.total().rss_bytes()));
  f.gauge("vigil_memory_snapshot_seconds", "Time the last memory snapshot took (task iterator)",
          {}, static_cast<double>(m.snapshot_ns()) / 1e9);
  // Rows come largest RSS first: the biggest pods get their own series.
  size_t own = 0;
  double otherRss = 0, otherPeak = 0;
  bool other = false;
  for (const auto& row : m.rows()) {
    const auto& w = row.workload();
    if (w.kind() != "pod" || w.pod().empty() || !livePods.count(w.pod_uid())) continue;
    if (own >= maxPods) {
      other = true;
      otherRss += static_cast<double>(row.memory().rss_bytes());
      otherPeak += static_cast<double>(row.memory().peak_rss_bytes());
      continue;
    }
    own++;
    Labels l{{"namespace", w.namespace_()}, {"pod", w.pod()}};
    f.gauge("vigil_memory_rss_bytes",
            "RSS of a live pod's processes (anon + file + shmem, as VmRSS), by namespace and pod "
            "(pods beyond --metrics-max-pods are summed into pod=\"_other\")",
            l, static_cast<double>(row.memory().rss_bytes()));
    f.gauge("vigil_memory_peak_rss_bytes",
            "Sum of the peak RSS (VmHWM) of a live pod's processes, by namespace and pod", l,
            static_cast<double>(row.memory().peak_rss_bytes()));
  }
  if (other) {
    Labels l{{"namespace", "_other"}, {"pod", "_other"}};
    f.gauge("vigil_memory_rss_bytes", "", l, otherRss);
    f.gauge("vigil_memory_peak_rss_bytes", "", l, otherPeak);
  }
}

void addSelf(const SelfUsage& self, Families& f) {
  f.counter("vigil_agent_cpu_seconds_total", "CPU time the agent used, by mode",
            {{"mode", "user"}}, self.userSeconds);
  f.counter("vigil_agent_cpu_seconds_total", "", {{"mode", "system"}}, self.systemSeconds);
  f.gauge("vigil_agent_resident_memory_bytes", "The agent's resident memory (VmRSS)", {},
          self.residentBytes);
  f.gauge("vigil_agent_virtual_memory_bytes", "The agent's virtual memory size (VmSize)", {},
          self.virtualBytes);
  f.gauge("vigil_agent_open_fds", "File descriptors the agent holds open", {}, self.openFds);
  f.gauge("vigil_agent_threads", "Threads of the agent", {}, self.threads);
  f.gauge("vigil_agent_start_time_seconds", "When the agent started, in seconds since the epoch",
          {}, self.startTimeSeconds);
}

}  // namespace

void TrafficTotals::update(const v1::GetTrafficResponse& rows,
                           const std::set<std::string>& livePods, size_t maxPods) {
  // Deleted pods lose their series (and their place under the cap).
  for (auto it = pods_.begin(); it != pods_.end();) {
    auto uid = podUids_.find(it->first);
    if (uid == podUids_.end() || !livePods.count(uid->second)) {
      podUids_.erase(it->first);
      it = pods_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = podsInOther_.begin(); it != podsInOther_.end();)
    it = livePods.count(*it) ? std::next(it) : podsInOther_.erase(it);

  std::map<std::pair<uint64_t, std::string>, Row> seen;
  for (const auto& row : rows.rows()) {
    Row now{{static_cast<double>(row.ingress().bytes()), static_cast<double>(row.egress().bytes())},
            {static_cast<double>(row.ingress().packets()),
             static_cast<double>(row.egress().packets())}};
    auto key = std::make_pair(row.cgroup_id(), row.protocol());
    Row gain = now;
    if (auto it = last_.find(key); it != last_.end()) {
      const Row& before = it->second;
      // A row that went down was evicted and made again: all of it is new.
      bool restarted = false;
      for (int d = 0; d < 2; d++)
        restarted |= now.bytes[d] < before.bytes[d] || now.packets[d] < before.packets[d];
      if (!restarted) {
        for (int d = 0; d < 2; d++) {
          gain.bytes[d] -= before.bytes[d];
          gain.packets[d] -= before.packets[d];
        }
      }
    }
    seen[key] = now;
    auto add = [&](Counts& c) {
      for (int d = 0; d < 2; d++) {
        c.bytes[d] += gain.bytes[d];
        c.packets[d] += gain.packets[d];
      }
    };
    add(node_);
    const auto& w = row.workload();
    if (w.kind() != "pod" || w.pod().empty() || !livePods.count(w.pod_uid())) continue;
    PodKey pod{w.namespace_(), w.pod()};
    auto own = pods_.find(pod);
    if (own == pods_.end() && !podsInOther_.count(w.pod_uid()) && pods_.size() < maxPods) {
      own = pods_.emplace(pod, Counts{}).first;
      podUids_[pod] = w.pod_uid();
    }
    if (own != pods_.end()) {
      add(own->second);
    } else {
      podsInOther_.insert(w.pod_uid());
      add(other_);
    }
  }
  last_ = std::move(seen);  // rows gone from the table keep what they added
}

SelfUsage readSelfUsage(const std::string& procRoot) {
  SelfUsage u;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  std::ifstream statFile(procRoot + "/self/stat");
  std::string stat((std::istreambuf_iterator<char>(statFile)), std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may hold spaces.
  auto close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream in(stat.substr(close + 2));
    std::vector<std::string> fields;
    for (std::string x; in >> x;) fields.push_back(x);
    // fields[0] is field 3 (state): utime 14, stime 15, num_threads 20, starttime 22,
    // vsize 23, rss 24.
    auto field = [&](size_t n) { return n - 3 < fields.size() ? std::stod(fields[n - 3]) : 0.0; };
    u.userSeconds = field(14) / tick;
    u.systemSeconds = field(15) / tick;
    u.threads = field(20);
    u.virtualBytes = field(23);
    u.residentBytes = field(24) * page;
    double bootTime = 0;
    std::ifstream kstat(procRoot + "/stat");
    for (std::string line; std::getline(kstat, line);) {
      if (line.rfind("btime ", 0) == 0) bootTime = std::stod(line.substr(6));
    }
    u.startTimeSeconds = bootTime + field(22) / tick;
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(procRoot + "/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    u.openFds++;
  }
  return u;
}

std::vector<MetricFamily> buildFamilies(const MetricsSnapshot& snap, const SelfUsage& self,
                                        const TrafficTotals* traffic, size_t maxPods) {
  Families f;
  const auto& s = snap.status;
  f.gauge("vigil_build_info", "Always 1; the labels say which agent this is",
          {{"version", s.version()}, {"node", s.node_name()}, {"kernel", s.kernel()}}, 1);
  for (const auto& c : s.capabilities()) {
    f.gauge("vigil_capability_available",
            "1 when the kernel offers a capability Vigil probes for (vigil status says why "
            "one is missing)",
            {{"name", c.name()}}, c.available() ? 1 : 0);
  }
  addEvents(s, f);
  addStats("process", s.kernel_stats(), f);
  addStores(s, f);
  if (snap.hasPolicies) addPolicies(snap.policies, f);
  if (s.has_xdp()) addStats("xdp", s.xdp().stats(), f);
  if (s.has_flows()) addFlows(s.flows(), f);
  if (traffic) addTraffic(*traffic, f);
  if (snap.hasMemory) addMemory(snap.memory, snap.livePods, maxPods, f);
  for (const auto& e : s.events()) {
    if (e.type() == v1::EVENT_TYPE_OOM_KILL)
      f.counter("vigil_oom_kills_total", "Processes the kernel's OOM killer chose (oom/mark_victim)",
                {}, static_cast<double>(e.seen()));
  }
  if (s.has_export_()) {
    f.counter("vigil_export_lines_total", "Events written to the JSON export file", {},
              static_cast<double>(s.export_().lines()));
    f.counter("vigil_export_rotations_total", "Rotations of the JSON export file", {},
              static_cast<double>(s.export_().rotations()));
    f.counter("vigil_export_write_errors_total", "Failed writes to the JSON export file", {},
              static_cast<double>(s.export_().write_errors()));
  }
  addSelf(self, f);
  return f.take();
}

class AgentCollector : public prometheus::Collectable {
 public:
  AgentCollector(MetricsServer::SnapshotFn snapshot, MetricsOptions options)
      : snapshot_(std::move(snapshot)), options_(options) {}
  std::vector<MetricFamily> Collect() const override {
    MetricsSnapshot snap = snapshot_();
    std::lock_guard lock(mutex_);  // the exposer may serve two scrapes at once
    if (snap.hasTraffic) traffic_.update(snap.traffic, snap.livePods, options_.maxPods);
    return buildFamilies(snap, readSelfUsage(), snap.hasTraffic ? &traffic_ : nullptr,
                         options_.maxPods);
  }

 private:
  MetricsServer::SnapshotFn snapshot_;
  MetricsOptions options_;
  mutable std::mutex mutex_;
  mutable TrafficTotals traffic_;  // guarded by mutex_
};

Expected<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& hostPort,
                                                              SnapshotFn snapshot,
                                                              MetricsOptions options) {
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  try {
    // Two threads: a scrape never waits behind a slow one.
    server->exposer_ = std::make_unique<prometheus::Exposer>(hostPort, 2);
  } catch (const std::exception& e) {
    return Error(EADDRNOTAVAIL, "serve metrics on " + hostPort + ": " + e.what());
  }
  server->collector_ = std::make_shared<AgentCollector>(std::move(snapshot), options);
  server->exposer_->RegisterCollectable(server->collector_, "/metrics");
  auto ports = server->exposer_->GetListeningPorts();
  server->port_ = ports.empty() ? 0 : ports.front();
  return server;
}

MetricsServer::~MetricsServer() {
  // The exposer's threads stop before the collector they call goes away.
  exposer_.reset();
}

}  // namespace vigil::api
