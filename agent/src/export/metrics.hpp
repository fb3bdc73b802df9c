#pragma once

// Prometheus metrics on --metrics-addr: /metrics over HTTP (prometheus-cpp's exposer).
//
// Nothing is counted twice: every scrape reads the agent's own counters (the same ones
// `vigil status` and `vigil policy list` show) and the kernel's maps, and turns them into
// metric families. So the metrics cost nothing between scrapes, and a scrape always agrees
// with the CLI. Names follow the Prometheus conventions: the vigil_ prefix, _total for
// counters, base units (bytes, seconds). docs/metrics.md lists every series.

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <prometheus/metric_family.h>

#include "common/error.hpp"
#include "vigil/v1/vigil.pb.h"

namespace prometheus {
class Exposer;
}

namespace vigil::api {

// What one scrape reads.
struct MetricsSnapshot {
  v1::GetStatusResponse status;
  std::vector<v1::PolicyStatus> policies;  // with their rules' kernel counters
  bool hasPolicies = false;                // false: the list could not be read
  v1::GetTrafficResponse traffic;          // rows carry their cgroup's workload
  bool hasTraffic = false;
  // Uids of the pods in the pod log directory now: only these get per-pod series.
  std::set<std::string> livePods;
  // Memory per pod (GetAccounting grouped by pod) and OOM kills, where memory accounting runs.
  v1::GetAccountingResponse memory;
  bool hasMemory = false;
};

// The agent process's own resource use, from /proc/self.
struct SelfUsage {
  double userSeconds = 0, systemSeconds = 0;
  double residentBytes = 0, virtualBytes = 0;
  double openFds = 0, threads = 0;
  double startTimeSeconds = 0;  // since the epoch
};
SelfUsage readSelfUsage(const std::string& procRoot = "/proc");

struct MetricsOptions {
  // Per-pod series are reported for at most this many live pods (the first seen keep theirs);
  // the others are summed into one series with pod="_other" and namespace="_other".
  size_t maxPods = 500;
};

// Network counters that only grow, from successive reads of the kernel's per-cgroup table.
// The table is an LRU map whose rows go (evicted, or their cgroup removed) and come back
// from zero, so summing its rows could go down; Prometheus would take every dip for a
// counter reset. Each update adds what each row gained since the previous read (all of a row
// that is new or restarted), so the totals never go down.
class TrafficTotals {
 public:
  struct Counts {
    double bytes[2] = {0, 0};    // ingress, egress
    double packets[2] = {0, 0};
  };
  using PodKey = std::pair<std::string, std::string>;  // namespace, pod

  // Rows carry their workload; livePods holds the uids of the pods that exist now. A pod gets
  // its own series while live and while fewer than maxPods have one; a deleted pod's series
  // goes, and its place is free for a new pod.
  void update(const v1::GetTrafficResponse& rows, const std::set<std::string>& livePods,
              size_t maxPods);

  const Counts& node() const { return node_; }
  const std::map<PodKey, Counts>& pods() const { return pods_; }
  const Counts& other() const { return other_; }
  size_t podsInOther() const { return podsInOther_.size(); }

 private:
  struct Row {
    double bytes[2], packets[2];
  };
  std::map<std::pair<uint64_t, std::string>, Row> last_;  // (cgroup id, protocol)
  Counts node_, other_;
  std::map<PodKey, Counts> pods_;                 // live pods with their own series
  std::map<PodKey, std::string> podUids_;         // their uids, to notice deletion
  std::set<std::string> podsInOther_;             // uids of live pods summed into _other
};

// Pure: the families of one scrape (sorted by name, labels in a fixed order).
std::vector<prometheus::MetricFamily> buildFamilies(const MetricsSnapshot& snapshot,
                                                    const SelfUsage& self,
                                                    const TrafficTotals* traffic,
                                                    size_t maxPods = 500);

class MetricsServer {
 public:
  using SnapshotFn = std::function<MetricsSnapshot()>;
  // Serves GET /metrics on hostPort ("0.0.0.0:9610", "127.0.0.1:0", "[::1]:9610").
  static Expected<std::unique_ptr<MetricsServer>> start(const std::string& hostPort,
                                                        SnapshotFn snapshot,
                                                        MetricsOptions options);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<class AgentCollector> collector_;
  int port_ = 0;
};

}  // namespace vigil::api
