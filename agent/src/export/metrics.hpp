#pragma once

// Prometheus metrics on --metrics-addr: /metrics over HTTP (prometheus-cpp's exposer).
//
// Nothing is counted twice: every scrape reads the agent's own counters (the same ones
// `vigil status` and `vigil policy list` show) and the kernel's maps, and turns them into
// metric families. So the metrics cost nothing between scrapes, and a scrape always agrees
// with the CLI. Names follow the Prometheus conventions: the vigil_ prefix, _total for
// counters, base units (bytes, seconds). docs/metrics.md lists every series.

#include <functional>
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
  v1::GetTrafficResponse traffic;          // rows carry their cgroup's workload
  bool hasTraffic = false;
  // Uids of the pods in the pod log directory now: only these get per-pod series.
  std::set<std::string> livePods;
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
  // Per-pod series are reported for at most this many pods (those with the most bytes);
  // the rest are summed into one series with pod="_other" and namespace="_other".
  size_t maxPods = 500;
};

// Pure: the families of one scrape (sorted by name, labels in a fixed order).
std::vector<prometheus::MetricFamily> buildFamilies(const MetricsSnapshot& snapshot,
                                                    const SelfUsage& self,
                                                    const MetricsOptions& options);

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
