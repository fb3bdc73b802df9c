// vigil-agent: flags and config -> Agent -> run until SIGINT/SIGTERM.

#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "bpf/flow_datapath.hpp"
#include "bpf/xdp_datapath.hpp"
#include "common/cgroup_namespace.hpp"
#include "common/log.hpp"
#include "server/agent.hpp"

#ifndef VIGIL_VERSION
#define VIGIL_VERSION "dev"
#endif

int main(int argc, char** argv) {
  vigil::server::AgentConfig cfg;
  std::string logLevel = "info";

  CLI::App app{
      "vigil-agent: eBPF process observability for Kubernetes nodes.\n\n"
      "Loads BPF programs on the exec, exit and fork tracepoints, keeps a table of every\n"
      "process with its parent chain, and serves the events over gRPC (see `vigil events`).\n"
      "Tracks network flows on every interface (tc), counts traffic per cgroup, attributes\n"
      "flows to processes and reports kernel packet drops with their reason (`vigil observe`).\n"
      "Enforces the policies of --policy-dir: exec-time kills, and XDP packet drops and rate\n"
      "limits on network interfaces (pinned under --pin-dir: enforcement survives restarts).\n"
      "Needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN for tp_btf) on Linux 5.8+ with BTF.",
      "vigil-agent"};
  app.footer(
      "\nExamples:\n"
      "  vigil-agent                                  defaults: API on unix:///run/vigil/vigil.sock\n"
      "  vigil-agent --listen tcp://127.0.0.1:4245    also serve the API on TCP\n"
      "  vigil-agent --event-ring-size 100000         keep more history for `vigil events --last`\n"
      "  vigil-agent --flow-interfaces eth0,eth1      track flows on these interfaces only\n"
      "  vigil-agent --flow-interfaces none           no flow tracking\n"
      "  vigil-agent --metrics-addr :9610 --health-addr :9611   metrics and probes (DaemonSet)\n"
      "  vigil-agent --cleanup                        remove XDP enforcement left pinned\n");
  app.set_version_flag("--version", "vigil-agent " VIGIL_VERSION, "Print the version and exit");
  app.add_option("--api", cfg.apiAddress, "Unix socket for the gRPC API (created with mode 0600)")
      ->capture_default_str();
  app.add_option("--listen", cfg.listenAddress,
                 "Also serve the API on TCP, e.g. tcp://127.0.0.1:4245 (no authentication: "
                 "bind to loopback)");
  app.add_option("--node-name", cfg.nodeName, "Node name in events and exec ids (default: host name)");
  app.add_option("--ring-buffer-size", cfg.ringBufferBytes,
                 "Kernel ring buffer in bytes: a power of two, at least 4096")
      ->capture_default_str()
      ->check([](const std::string& v) -> std::string {
        unsigned long n = std::stoul(v);
        if (n < 4096 || (n & (n - 1)) != 0) return "must be a power of two of at least 4096";
        return "";
      });
  app.add_option("--ring-buffer-wakeup", cfg.wakeupBytes,
                 "Bytes waiting in the ring buffer before the kernel wakes the agent (batches "
                 "events: fewer context switches under load); 0 wakes it for every event")
      ->capture_default_str();
  app.add_option("--drain-interval-ms", cfg.drainIntervalMs,
                 "The agent also drains the ring buffer this often, so a quiet node's events "
                 "arrive within this delay")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000u));
  app.add_option("--event-ring-size", cfg.eventRingSize, "Recent events kept in memory for --last")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}));
  app.add_option("--exit-table-size", cfg.exitTableSize,
                 "Recent process exits kept with their memory for `vigil top --since` (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{10'000'000}));
  app.add_option("--client-queue-size", cfg.clientQueueSize,
                 "Events queued per following client before it is told it lost some")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}));
  app.add_option("--process-table-size", cfg.processTableSize,
                 "Processes tracked for parent chains (least recently used are evicted)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{64}, size_t{10'000'000}));
  app.add_option("--policy-dir", cfg.policyDir,
                 "Directory of policy files (*.yaml) to enforce, watched for changes; a mounted "
                 "ConfigMap works as it is. See docs/policy.md")
      ->capture_default_str();
  app.add_option("--pin-dir", cfg.pinDir,
                 "bpffs directory where XDP enforcement is pinned, so that it outlives the agent; "
                 "a restarted agent adopts it (bpffs is mounted at /sys/fs/bpf when missing)")
      ->capture_default_str();
  app.add_flag("--force", cfg.forceXdp,
               "Replace another program's XDP attachment on an interface a policy names "
               "(without it, Vigil refuses and says whose program it is)");
  app.add_option("--xdp-drop-samples", cfg.xdpDropSamples,
                 "Drop events per XDP rule per second (the rest is counted, not reported)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--xdp-rate-buckets", cfg.xdpRateBuckets,
                 "Rate-limit state entries (one per rule and source prefix; least recently "
                 "used are evicted)")
      ->capture_default_str()
      ->check(CLI::Range(1024u, 16u << 20));
  std::vector<std::string> flowInterfaces;
  app.add_option("--flow-interfaces", flowInterfaces,
                 "Interfaces whose flows are tracked (tc ingress and egress), comma-separated; "
                 "default: every interface but loopback, including ones that appear later (pod "
                 "veths). 'none' turns flow tracking, per-cgroup traffic and drop reasons off")
      ->delimiter(',')
      ->type_name("IF,...");
  app.add_option("--flow-tc-mode", cfg.flowTcMode,
                 "How tc programs attach: auto (tcx links on Linux 6.6+, else clsact filters), "
                 "tcx, or tc (clsact filters)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "tcx", "tc"}));
  app.add_option("--flow-table-size", cfg.flowTableSize,
                 "Flows the kernel tracks at once; when full, the least recently used are "
                 "evicted (ended with reason 'evicted' and counted)")
      ->capture_default_str()
      ->check(CLI::Range(1024u, 16u << 20));
  app.add_option("--socket-table-size", cfg.socketTableSize,
                 "Sockets remembered with their owning process, for flow attribution (LRU)")
      ->capture_default_str()
      ->check(CLI::Range(1024u, 16u << 20));
  app.add_option("--cgroup-table-size", cfg.cgroupTableSize,
                 "Per-cgroup traffic counters, one per cgroup and protocol (LRU)")
      ->capture_default_str()
      ->check(CLI::Range(256u, 1u << 20));
  app.add_option("--flow-ring-size", cfg.flowEventRingSize,
                 "Recent flow events kept in memory for `vigil observe --last`")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}));
  app.add_option("--flow-update-interval", cfg.flowUpdateIntervalS,
                 "Seconds between update events of a flow that is still active")
      ->capture_default_str()
      ->check(CLI::Range(1u, 86400u));
  app.add_option("--flow-idle-timeout", cfg.flowIdleTimeoutS,
                 "Seconds without a packet after which a UDP or ICMP flow ends")
      ->capture_default_str()
      ->check(CLI::Range(1u, 86400u));
  app.add_option("--flow-tcp-idle-timeout", cfg.flowTcpIdleTimeoutS,
                 "Seconds without a packet after which a TCP flow without FIN or RST ends")
      ->capture_default_str()
      ->check(CLI::Range(1u, 7u * 86400u));
  app.add_option("--drop-samples", cfg.dropSamples,
                 "Kernel drop events per drop reason per second (every drop is still counted)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--export-file", cfg.exportFile,
                 "Also write every event (execs, exits, policy kills, XDP drops, flows) to this "
                 "file, one JSON object per line (the protobuf JSON mapping, as `vigil events -o "
                 "json`), for log shippers; appended to, rotated by size");
  app.add_option("--export-max-size", cfg.exportMaxBytes,
                 "Rotate the export file before it grows past this many bytes: FILE becomes "
                 "FILE.1, FILE.1 becomes FILE.2, ...")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{4096}, uint64_t{1} << 40));
  app.add_option("--export-max-files", cfg.exportMaxFiles,
                 "Rotated export files kept (FILE.1 ... FILE.N); the oldest is removed")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1000u));
  app.add_option("--export-types", cfg.exportTypes,
                 "Only these event types in the export: exec, exit, policy, drop, flow, oom "
                 "(comma-separated; default all). Lost-event notices are always written")
      ->delimiter(',')
      ->type_name("TYPE,...")
      ->check(CLI::IsMember({"exec", "exit", "policy", "drop", "flow", "oom"}));
  app.add_option("--export-namespaces", cfg.exportNamespaces,
                 "Only events of processes (and flows with an endpoint) in these Kubernetes "
                 "namespaces in the export (comma-separated; default every namespace and the "
                 "host)")
      ->delimiter(',')
      ->type_name("NS,...");
  app.add_option("--export-pods", cfg.exportPods,
                 "Only events of these pods in the export: NAMESPACE/POD, or POD in any "
                 "namespace (comma-separated)")
      ->delimiter(',')
      ->type_name("[NS/]POD,...");
  app.add_option("--metrics-addr", cfg.metricsAddress,
                 "Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9610 or :9610 "
                 "(every address); default off. See docs/metrics.md")
      ->type_name("HOST:PORT");
  app.add_option("--metrics-max-pods", cfg.metricsMaxPods,
                 "Pods with their own network series in the metrics (the first seen keep theirs "
                 "until deleted); the others are summed into pod=\"_other\"")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{100000}));
  app.add_option("--health-addr", cfg.healthAddress,
                 "Serve the gRPC health service (grpc.health.v1, and nothing else) on TCP, for "
                 "kubelet gRPC probes, e.g. :9611; default off")
      ->type_name("HOST:PORT");
  app.add_option("--pod-log-dir", cfg.podLogDir,
                 "The kubelet's pod log directory (NAMESPACE_POD_UID/CONTAINER/), read to name "
                 "the pod of a process from the pod uid in its cgroup path")
      ->capture_default_str();
  app.add_option("--container-log-dir", cfg.containerLogDir,
                 "The kubelet's container log links (POD_NAMESPACE_CONTAINER-ID.log), read to "
                 "name the container of a container id")
      ->capture_default_str();
  bool cleanup = false;
  app.add_flag("--cleanup", cleanup,
               "Detach Vigil's XDP filter from every interface, remove its pins under --pin-dir, "
               "remove flow tc filters a crashed agent left (kernels before 6.6), and exit "
               "(this ends enforcement that outlived an agent)");
  app.add_option("--log-level", logLevel, "debug, info, warn or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "vigil-agent: " << e.what() << "\nRun 'vigil-agent --help' for usage.\n";
    return 2;
  }

  if (flowInterfaces.size() == 1 && flowInterfaces[0] == "none") {
    cfg.flows = false;
  } else {
    for (const auto& name : flowInterfaces) {
      if (name.empty() || name.size() >= 16 || name == "none" ||
          name.find_first_of("/ \t") != std::string::npos) {
        std::cerr << "vigil-agent: --flow-interfaces: '" << name
                  << "' is not an interface name (at most 15 characters, no '/' or spaces; "
                     "'none' alone turns flow tracking off)\nRun 'vigil-agent --help' for usage.\n";
        return 2;
      }
    }
    cfg.flowInterfaces = flowInterfaces;
  }

  using vigil::log::Level;
  vigil::log::setLevel(logLevel == "debug"  ? Level::debug
                       : logLevel == "warn" ? Level::warn
                       : logLevel == "error" ? Level::error
                                             : Level::info);
  if (geteuid() != 0) {
    vigil::log::warn("not running as root: loading BPF programs will likely fail");
  }
  if (cleanup) {
    if (auto s = vigil::bpf::XdpDataPath::cleanup(cfg.pinDir); !s) {
      vigil::log::error("cleanup: " + s.error().message());
      return 1;
    }
    vigil::log::info("cleanup: no Vigil XDP enforcement is left under " + cfg.pinDir);
    auto filters = vigil::bpf::FlowDataPath::cleanup();
    if (!filters) {
      vigil::log::error("cleanup: " + filters.error().message());
      return 1;
    }
    vigil::log::info("cleanup: removed " + std::to_string(*filters) +
                     " flow tc filter(s) left by an agent that did not stop (kernels before "
                     "6.6; tcx links go with the agent)");
    return 0;
  }

  // Before any thread starts: see the node's cgroup paths, not a container's view of them.
  if (auto ns = vigil::joinHostCgroupNamespace(cfg.procRoot); !ns) {
    vigil::log::warn("cgroup paths may be relative to this container's cgroup: " +
                     ns.error().message());
  } else if (*ns == vigil::CgroupNamespace::joined) {
    vigil::log::info("joined the host's cgroup namespace (that of pid 1): cgroup paths are the "
                     "node's");
  }

  // Events are allocated and freed at a high rate by two threads; keep freed memory instead
  // of returning it to the kernel and faulting it back in moments later.
  // One arena: the decoder allocates what the API threads free, and the main arena grows in
  // M_TOP_PAD steps rather than one mprotect() per page like per-thread arenas.
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_TOP_PAD, 16 << 20);

  // Block the stop signals in every thread; this one waits for them.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto agent = vigil::server::Agent::start(cfg);
  if (!agent) {
    vigil::log::error("cannot start: " + agent.error().message());
    return 1;
  }
  int sig = 0;
  sigwait(&stopSignals, &sig);
  vigil::log::info(std::string("received ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                   ", stopping");
  (*agent)->stop();
  return 0;
}
