#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vigil::server {

// Everything vigil-agent can be told at start-up. The defaults are the built-in behaviour of
// `make run`: observe everything, enforce nothing, API on a unix socket.
struct AgentConfig {
  std::string apiAddress = "unix:///run/vigil/vigil.sock";
  std::string listenAddress;  // optional extra TCP listener, "tcp://HOST:PORT"
  std::string nodeName;       // default: the host name
  std::string procRoot = "/proc";
  uint32_t ringBufferBytes = 8u << 20;  // kernel -> agent ring buffer
  // The kernel wakes the agent once this much waits in the ring buffer (0: on every record);
  // otherwise the agent drains it every drainIntervalMs. Bounded to a quarter of the ring.
  uint64_t wakeupBytes = 64u << 10;
  uint32_t drainIntervalMs = 50;
  size_t recordQueueSize = 65536;       // records between the reader and the decoder
  size_t eventRingSize = 8192;          // recent events kept for --last
  size_t exitTableSize = 4096;          // recent exits kept for vigil top --since
  size_t clientQueueSize = 4096;        // per following client
  size_t processTableSize = 32768;
  // Watched for policy files (*.yaml, *.yml); a mounted ConfigMap works as it is.
  std::string policyDir = "/etc/vigil/policies";
  uint32_t policyPollMs = 500;
  // XDP packet filter. Its maps and links are pinned under <pinDir>/xdp and outlive the agent.
  std::string pinDir = "/sys/fs/bpf/vigil";
  bool forceXdp = false;               // replace another program's XDP attachment
  uint32_t xdpDropSamples = 100;       // drop records per rule per second
  uint32_t xdpRingBytes = 1u << 20;    // drop-record ring buffer
  uint32_t xdpRateBuckets = 65536;     // rate-limit buckets (sources x rules), LRU

  // Network flows: tc programs on these interfaces (empty: every non-loopback interface,
  // following interfaces as they come and go), per-cgroup counters, kernel drops.
  bool flows = true;
  std::vector<std::string> flowInterfaces;
  std::string flowTcMode = "auto";        // auto | tcx | tc
  uint32_t flowTableSize = 65536;         // kernel flow table (LRU)
  uint32_t socketTableSize = 65536;       // socket owners (LRU)
  uint32_t cgroupTableSize = 16384;       // (cgroup, protocol) counters (LRU)
  uint32_t flowRingBytes = 4u << 20;      // new-flow and drop records
  size_t flowEventRingSize = 16384;       // recent flow events kept for `vigil observe`
  uint32_t flowUpdateIntervalS = 30;      // FLOW_UPDATE for flows still active
  uint32_t flowIdleTimeoutS = 60;         // UDP/ICMP flows end after this long without packets
  uint32_t flowTcpIdleTimeoutS = 600;     // TCP flows without FIN/RST
  uint32_t flowScanIntervalMs = 1000;     // how often the agent reads the flow table
  uint32_t dropSamples = 100;             // kernel drop records per reason per second

  // JSON lines export (empty: none), rotated by size.
  std::string exportFile;
  uint64_t exportMaxBytes = 100ull << 20;
  uint32_t exportMaxFiles = 5;
  std::vector<std::string> exportTypes;  // empty: every type
  std::vector<std::string> exportNamespaces;  // empty: every namespace (and the host)
  std::vector<std::string> exportPods;        // "namespace/pod" or "pod"; empty: every pod

  // Prometheus /metrics over HTTP, and gRPC health alone on TCP ("" when off).
  std::string metricsAddress;
  size_t metricsMaxPods = 500;
  std::string healthAddress;

  // Pod metadata: the kubelet's log directories, mounted read-only.
  std::string podLogDir = "/var/log/pods";
  std::string containerLogDir = "/var/log/containers";
};

}  // namespace vigil::server
