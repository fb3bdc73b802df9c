#include "cli/src/top.hpp"

#include <CLI/CLI.hpp>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "cli/src/client.hpp"
#include "cli/src/flag_values.hpp"
#include "cli/src/format.hpp"
#include "cli/src/time_parse.hpp"
#include "vigil/v1/vigil.grpc.pb.h"

namespace vigil::cli {
namespace {

constexpr const char* kTopFooter = R"(
The agent reads every process's memory counters from the kernel at each refresh (a BPF task
iterator: nothing runs on the page-fault path). RSS = ANON + FILE + SHMEM, as VmRSS in
/proc/PID/status; PEAK is the kernel's high-water mark (VmHWM); threads share one count.
--by cgroup adds CHARGED, the kernel's own charge for the cgroup (memory.current), which also
counts page cache and kernel memory, and CHG PEAK, the high-water mark of that charge
(memory.peak). NET IN/OUT are IP bytes of the cgroups since the agent
started (with flow tracking on).

Examples:
  vigil top                                 refreshing, every second, largest RSS first
  vigil top --by pod                        per pod (processes outside pods by cgroup)
  vigil top --once -o json | jq '.rows[0]'  one snapshot for scripts
  vigil top --sort network --by cgroup -n 10
  vigil top --pid 1234 --once
  vigil top --since 10m --once              also what exited in the last 10 minutes

--since adds processes that exited since then (from the agent's table of recent exits,
agent --exit-table-size): RSS is their RSS as they exited (Linux 6.16+, "-" before), PEAK their
peak, and EXITED when and how they ended.)";

std::string workloadOf(const v1::AccountingRow& r) {
  const auto& w = r.workload();
  if (w.kind() == "pod") {
    if (w.pod().empty()) return "pod uid " + w.pod_uid();
    std::string s = w.namespace_() + "/" + w.pod();
    if (!w.container().empty()) s += "/" + w.container();
    return s;
  }
  if (w.kind() == "container") return w.runtime() + (w.runtime().empty() ? "" : "/") +
                                      w.container_id().substr(0, 12);
  return w.kind().empty() ? "-" : w.kind();
}

}  // namespace

std::string humanBytes(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  }
  return buf;
}

TopCommands::TopCommands(CLI::App& app) {
  top_ = app.add_subcommand("top", "Memory and network per process, cgroup or pod, refreshing");
  top_->footer(kTopFooter);
  top_->add_flag("--once", once_, "Print one snapshot and exit (for scripts)");
  top_->add_option("-o,--output", output_, "Output format: table or json (json implies --once)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  top_->add_option("--by", by_, "Group by process, cgroup or pod")
      ->type_name("GROUP")
      ->check(CLI::IsMember({"process", "cgroup", "pod"}))
      ->capture_default_str();
  top_->add_option("--sort", sort_, "Sort by memory (RSS) or network (bytes in and out)")
      ->type_name("KEY")
      ->check(CLI::IsMember({"memory", "network"}))
      ->capture_default_str();
  top_->add_option("-n,--limit", limit_,
                   "Show at most N rows (default: 25 when refreshing, all with --once)")
      ->type_name("N");
  top_->add_option("--interval", interval_, "Refresh every DURATION: 500ms, 2s")
      ->type_name("DURATION")
      ->capture_default_str();
  top_->add_option("--pid", pids_, "Only this process (repeatable, comma-separated)")
      ->type_name("PID")
      ->delimiter(',');
  top_->add_option("--cgroup", cgroup_, "Only cgroups under this path prefix (/kubepods.slice/)")
      ->type_name("PREFIX");
  top_->add_option("--since", since_,
                   "Also processes that exited since TIME: a duration (10m) or RFC 3339 time")
      ->type_name("TIME");
}

TopCommand TopCommands::command(bool terminal) const {
  TopCommand c;
  c.format = output_ == "json" ? TopFormat::kJson : TopFormat::kTable;
  c.once = once_ || c.format == TopFormat::kJson;
  c.clearScreen = terminal && !c.once;
  c.request.set_group_by(by_);
  c.request.set_sort_by(sort_);
  if (!limit_.empty()) {
    c.request.set_limit(countFlag("--limit", limit_));
  } else if (!c.once) {
    c.request.set_limit(25);
  }
  auto interval = parseDuration(interval_);
  if (!interval || *interval < std::chrono::milliseconds(100))
    throw CLI::ValidationError("--interval", "expected a duration of at least 100ms, such as "
                                             "1s or 500ms, got '" + interval_ + "'");
  c.interval = *interval;
  for (const auto& text : pids_) {
    auto pid = parseUint32(text);
    if (!pid || *pid == 0)
      throw CLI::ValidationError("--pid", "expected a process id, got '" + text + "'");
    c.request.add_pids(*pid);
  }
  if (!cgroup_.empty()) {
    if (cgroup_.front() != '/')
      throw CLI::ValidationError("--cgroup", "expected a cgroup path prefix starting with '/', "
                                             "such as /system.slice/, got '" + cgroup_ + "'");
    c.request.set_cgroup_prefix(cgroup_);
  }
  if (!since_.empty()) {
    if (!parseSince(since_, std::chrono::system_clock::now()))
      throw CLI::ValidationError("--since", "expected a duration such as 10m or an RFC 3339 "
                                            "time such as 2026-11-25T19:00:00Z, got '" +
                                                since_ + "'");
    if (by_ != "process")
      throw CLI::ValidationError("--since", "exited processes are shown as processes: use it "
                                            "with --by process, not --by " + by_);
    c.since = since_;
  }
  return c;
}

std::string formatTop(const v1::GetAccountingResponse& r, const std::string& groupBy,
                      bool color, bool exits) {
  std::string out = "Processes: " + std::to_string(r.processes()) + ", RSS " +
                    humanBytes(r.total().rss_bytes()) + " (anon " +
                    humanBytes(r.total().anon_bytes()) + ", file " +
                    humanBytes(r.total().file_bytes()) + ", shmem " +
                    humanBytes(r.total().shmem_bytes()) + "), swap " +
                    humanBytes(r.total().swap_bytes()) + "; snapshot " +
                    std::to_string(r.snapshot_ns() / 1000) + " us\n";
  const bool process = groupBy.empty() || groupBy == "process";
  std::vector<std::string> names =
      process ? std::vector<std::string>{"PID", "COMM", "THR", "RSS", "ANON", "FILE", "SHMEM",
                                         "SWAP", "PEAK", "NET IN", "NET OUT", "WORKLOAD"}
              : std::vector<std::string>{groupBy == "pod" ? "POD OR CGROUP" : "CGROUP", "PROCS",
                                         "RSS", "ANON", "FILE", "SHMEM", "SWAP", "CHARGED",
                                         "CHG PEAK", "NET IN", "NET OUT"};
  if (process && exits) names.push_back("EXITED");
  std::vector<Row> rows = {headerRow(names)};
  for (const auto& row : r.rows()) {
    const auto& m = row.memory();
    if (process) {
      Row out = {{std::to_string(row.pid())},
                 {sanitize(row.comm())},
                 {std::to_string(row.threads())},
                 {humanBytes(m.rss_bytes())},
                 {humanBytes(m.anon_bytes())},
                 {humanBytes(m.file_bytes())},
                 {humanBytes(m.shmem_bytes())},
                 {humanBytes(m.swap_bytes())},
                 {humanBytes(m.peak_rss_bytes())},
                 {humanBytes(row.network_rx_bytes())},
                 {humanBytes(row.network_tx_bytes())},
                 {sanitize(workloadOf(row))}};
      std::string exited = "-";
      if (row.has_exited()) {
        // What is known of a process that is gone: its RSS at exit (if the kernel gave it),
        // its peak, and when and how it ended; no threads and no breakdown.
        const auto& e = row.exited();
        for (size_t i : {2, 4, 5, 6, 7}) out[i] = {"-"};
        if (!e.has_rss()) out[3] = {"-"};
        const int64_t agoNs = google::protobuf::util::TimeUtil::TimestampToNanoseconds(r.time()) -
                              google::protobuf::util::TimeUtil::TimestampToNanoseconds(e.time());
        const std::string how = e.signal() != 0 ? signalName(e.signal())
                                                : "code " + std::to_string(e.exit_code());
        exited = formatDuration(std::chrono::nanoseconds(std::max<int64_t>(agoNs, 0))) +
                 " ago, " + how;
      }
      if (exits) out.push_back({exited});
      rows.push_back(std::move(out));
    } else {
      std::string name = row.workload().kind() == "pod" && row.cgroup_path().empty()
                             ? workloadOf(row)
                             : (row.cgroup_path().empty() ? std::to_string(row.cgroup_id())
                                                          : row.cgroup_path());
      rows.push_back({{sanitize(name)},
                      {std::to_string(row.processes())},
                      {humanBytes(m.rss_bytes())},
                      {humanBytes(m.anon_bytes())},
                      {humanBytes(m.file_bytes())},
                      {humanBytes(m.shmem_bytes())},
                      {humanBytes(m.swap_bytes())},
                      {row.cgroup_memory_bytes() ? humanBytes(row.cgroup_memory_bytes()) : "-"},
                      {row.cgroup_memory_peak_bytes() ? humanBytes(row.cgroup_memory_peak_bytes())
                                                      : "-"},
                      {humanBytes(row.network_rx_bytes())},
                      {humanBytes(row.network_tx_bytes())}});
    }
  }
  auto widths = columnWidths(rows);
  for (const auto& row : rows) appendRow(out, row, widths, "", color);
  return out;
}

int runTop(const AgentCall& call, const TopCommand& command, std::ostream& out,
           std::ostream& err) {
  auto stub = v1::Vigil::NewStub(makeChannel(call.server));
  v1::GetAccountingRequest request = command.request;
  for (;;) {
    // A duration moves with each refresh: "the last 10 minutes" stays the last 10 minutes.
    if (!command.since.empty()) {
      auto since = parseSince(command.since, std::chrono::system_clock::now());
      if (since) *request.mutable_since() = *since;
    }
    v1::GetAccountingResponse response;
    grpc::Status status;
    {
      UnaryCall rpc(call.timeout, call.interrupt);
      status = stub->GetAccounting(rpc.context(), request, &response);
      if (rpc.finish()) return command.once ? 130 : 0;
    }
    if (!status.ok()) return reportRpcError(err, "GetAccounting", call.server, status);
    if (command.format == TopFormat::kJson) {
      out << formatJson(response) << '\n';
    } else {
      if (command.clearScreen) out << "\033[H\033[2J";
      out << formatTop(response, command.request.group_by(), call.color, !command.since.empty());
    }
    out.flush();
    if (command.once) return 0;
    // Sleep in slices so that Ctrl-C ends the view at once.
    auto until = std::chrono::steady_clock::now() + command.interval;
    while (std::chrono::steady_clock::now() < until) {
      if (call.interrupt && call.interrupt->interrupted()) return 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!command.clearScreen) out << '\n';
  }
}

}  // namespace vigil::cli
