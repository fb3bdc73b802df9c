// vigil-agent: flags and config -> Agent -> run until SIGINT/SIGTERM.

#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "bpf/xdp_datapath.hpp"
#include "common/log.hpp"
#include "server/agent.hpp"

int main(int argc, char** argv) {
  vigil::server::AgentConfig cfg;
  std::string logLevel = "info";

  CLI::App app{
      "vigil-agent: eBPF process observability for Kubernetes nodes.\n\n"
      "Loads BPF programs on the exec, exit and fork tracepoints, keeps a table of every\n"
      "process with its parent chain, and serves the events over gRPC (see `vigil events`).\n"
      "Enforces the policies of --policy-dir: exec-time kills, and XDP packet drops and rate\n"
      "limits on network interfaces (pinned under --pin-dir: enforcement survives restarts).\n"
      "Needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN for tp_btf) on Linux 5.8+ with BTF.",
      "vigil-agent"};
  app.footer(
      "\nExamples:\n"
      "  vigil-agent                                  defaults: API on unix:///run/vigil/vigil.sock\n"
      "  vigil-agent --listen tcp://127.0.0.1:4245    also serve the API on TCP\n"
      "  vigil-agent --event-ring-size 100000         keep more history for `vigil events --last`\n"
      "  vigil-agent --cleanup                        remove XDP enforcement left pinned\n");
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
  bool cleanup = false;
  app.add_flag("--cleanup", cleanup,
               "Detach Vigil's XDP filter from every interface, remove its pins under --pin-dir, "
               "and exit (this ends enforcement that outlived an agent)");
  app.add_option("--log-level", logLevel, "debug, info, warn or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "vigil-agent: " << e.what() << "\nRun 'vigil-agent --help' for usage.\n";
    return 2;
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
    return 0;
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
