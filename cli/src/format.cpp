#include "cli/src/format.hpp"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "json_line.hpp"

namespace vigil::cli {
namespace {

using google::protobuf::util::TimeUtil;

// Terminal columns taken by UTF-8 text, counting one per code point.
std::size_t displayWidth(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  }));
}

std::string padRight(std::string_view text, std::size_t width) {
  std::string out(text);
  std::size_t shown = displayWidth(text);
  if (shown < width) out.append(width - shown, ' ');
  return out;
}

std::string basename(std::string_view path) {
  auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

const v1::Process* processOf(const v1::Event& event) {
  if (event.has_exec()) return &event.exec().process();
  if (event.has_exit()) return &event.exit().process();
  if (event.has_policy()) return &event.policy().process();
  if (event.has_oom_kill()) return &event.oom_kill().process();
  return nullptr;
}

// What the process runs: the script for a "#!" program, else the binary, else [comm].
std::string programOf(const v1::Process& process) {
  if (!process.script().empty()) return sanitize(process.script());
  if (!process.binary().empty()) return sanitize(process.binary());
  if (!process.comm().empty()) return "[" + sanitize(process.comm()) + "]";
  return "?";
}

// argv after argv[0], quoted, with a marker when the kernel cut it short.
std::string argsOf(const v1::Process& process) {
  std::string out;
  for (int i = 1; i < process.args_size(); ++i) {
    if (!out.empty()) out += ' ';
    out += quoteArg(process.args(i));
  }
  if (process.args_truncated()) out += out.empty() ? "…[truncated]" : " …[truncated]";
  return out;
}

std::string interpreterOf(const v1::Process& process) {
  if (process.script().empty()) return {};
  return sanitize(process.interpreter().empty() ? process.binary() : process.interpreter());
}

std::string exitResult(const v1::ExitEvent& exit) {
  std::string out = exit.signal() != 0 ? "signal=" + signalName(exit.signal())
                                       : "code=" + std::to_string(exit.exit_code());
  if (exit.core_dumped()) out += " (core dumped)";
  if (exit.has_lifetime()) out += " lifetime=" + formatDuration(exit.lifetime());
  // Bytes, as the oom line has them; the RSS only where the kernel still had the memory.
  if (exit.has_rss_bytes()) out += " rss=" + std::to_string(exit.rss_bytes());
  if (exit.peak_rss_bytes() != 0) out += " peak=" + std::to_string(exit.peak_rss_bytes());
  return out;
}

bool exitFailed(const v1::ExitEvent& exit) { return exit.signal() != 0 || exit.exit_code() != 0; }

// " pod=shop/cart-1/app", " container=docker/0123456789ab", or nothing on the host.
std::string workloadSummary(const v1::Workload& w) {
  if (w.kind() == "pod") {
    if (w.pod().empty()) return " pod=uid:" + sanitize(w.pod_uid());
    std::string out = " pod=" + sanitize(w.namespace_() + "/" + w.pod());
    if (!w.container().empty()) out += "/" + sanitize(w.container());
    return out;
  }
  if (w.kind() == "container") {
    std::string id = w.container_id().substr(0, 12);
    return " container=" + sanitize(w.runtime().empty() ? id : w.runtime() + "/" + id);
  }
  return {};
}

// "pid=1234 uid=0 /usr/bin/curl -s x": who ran what (and in which pod or container).
std::string processSummary(const v1::Process& process) {
  std::string out =
      "pid=" + std::to_string(process.pid()) + " uid=" + std::to_string(process.uid());
  if (process.euid() != process.uid()) out += " euid=" + std::to_string(process.euid());
  out += workloadSummary(process.workload());
  out += " " + programOf(process);
  if (std::string args = argsOf(process); !args.empty()) out += " " + args;
  return out;
}

// "  parent=bash(1200)" from the nearest ancestor, else "  ppid=1200", else nothing.
std::string parentSummary(const v1::Event& event, const v1::Process& process) {
  if (event.ancestors_size() > 0) {
    const auto& parent = event.ancestors(0);
    std::string name = parent.binary().empty() ? "?" : sanitize(basename(parent.binary()));
    return "  parent=" + name + "(" + std::to_string(parent.pid()) + ")";
  }
  if (process.ppid() != 0) return "  ppid=" + std::to_string(process.ppid());
  return {};
}

// What a policy match did, as the compact format's label: "KILL", "AUDIT", or "POLICY" for
// an action this client does not know.
std::string policyLabel(const v1::PolicyEvent& policy) {
  if (policy.action() == "kill") return "KILL";
  if (policy.action() == "audit") return "AUDIT";
  return "POLICY";
}

std::string_view policyColor(const v1::PolicyEvent& policy) {
  return policy.action() == "kill" ? kBoldRed : kYellow;
}

// "policy=deny-tmp rule=no-tmp (sigkill)".
std::string policyVerdict(const v1::PolicyEvent& policy) {
  std::string out = "policy=" + sanitize(policy.policy()) + " rule=" + sanitize(policy.rule());
  if (policy.action() != "kill" && policy.action() != "audit" && !policy.action().empty()) {
    out += " action=" + sanitize(policy.action());
  }
  if (policy.action() == "kill" && !policy.mechanism().empty()) {
    out += " (" + sanitize(policy.mechanism()) + ")";
  }
  return out;
}

// "DROP", "AUDIT", "RATE", "RATE-AUDIT" for a drop event's verdict.
std::string dropLabel(const v1::DropEvent& drop) {
  if (drop.verdict() == "dropped") return "DROP";
  if (drop.verdict() == "audit") return "AUDIT";
  if (drop.verdict() == "rate-limited") return "RATE";
  if (drop.verdict() == "rate-limit-audit") return "RATE-AUDIT";
  return "DROP?";
}

// "udp 10.0.0.2:5353 -> 10.0.0.1:53 on eth0 len=60 policy=p rule=r".
std::string dropSummary(const v1::DropEvent& d) {
  std::string out = sanitize(d.protocol()) + " " + endpoint(d.source_ip(), d.source_port()) +
                    " -> " + endpoint(d.destination_ip(), d.destination_port()) + " on " +
                    sanitize(d.interface()) + " len=" + std::to_string(d.length());
  if (d.fragment()) out += " [fragment]";
  if (d.l4_missing()) out += " [no L4 header]";
  if (d.vlan()) out += " [vlan]";
  out += "  policy=" + sanitize(d.policy()) + " rule=" + sanitize(d.rule());
  if (d.suppressed()) out += " suppressed=" + std::to_string(d.suppressed());
  return out;
}

Row eventRow(const std::vector<std::string>& cells) {
  Row row;
  for (const auto& cell : cells) row.push_back({cell});
  if (row.size() > 1) {
    const std::string& type = row[1].text;
    if (type == "lost") {
      row[1].sgr = kBoldRed;
      row.back().sgr = kBoldRed;
    } else {
      row[0].sgr = kDim;
      row[1].sgr = type == "exec"                                       ? kGreen
                   : type == "kill" || type == "drop" || type == "rate" ? kBoldRed
                                                                        : kYellow;
    }
  }
  return row;
}

std::string_view policyStateColor(std::string_view state) {
  if (state == "enforcing") return kGreen;
  if (state == "audit") return kYellow;
  if (state == "error") return kBoldRed;
  return {};
}

std::string_view ruleActionColor(std::string_view action) {
  if (action == "kill" || action == "drop") return kRed;
  if (action == "audit") return kYellow;
  return {};
}

std::string yesNo(bool value) { return value ? "yes" : "no"; }

// "name=3, other=1" for the counters that are not zero, or "all zero".
std::string nonZeroStats(const google::protobuf::RepeatedPtrField<v1::KernelStat>& stats) {
  std::string out;
  for (const auto& st : stats) {
    if (st.value() == 0) continue;
    out += (out.empty() ? "" : ", ") + sanitize(st.name()) + "=" + std::to_string(st.value());
  }
  return out.empty() ? "all zero" : out;
}

// The "Flows:" section of `vigil status`.
void appendFlowStatus(std::string& out, const v1::FlowStatus& f, bool color) {
  out +=
      "\nFlows: " + paint(sanitize(f.state()), f.state() == "tracking" ? kGreen : kYellow, color) +
      "\n";
  if (f.interfaces_size() > 0) {
    std::vector<Row> ifs = {headerRow({"INTERFACE", "IFINDEX", "MODE"})};
    for (const auto& i : f.interfaces()) {
      ifs.push_back({{sanitize(i.name())}, {std::to_string(i.ifindex())}, {sanitize(i.mode())}});
    }
    appendTable(out, ifs, color);
  }
  out += labelled(
      "  Flow events",
      std::to_string(f.flows_seen()) + " seen, " + std::to_string(f.ring_size()) + " / " +
          std::to_string(f.ring_capacity()) + " in the ring, " +
          paint(std::to_string(f.flows_lost()) + " lost", f.flows_lost() ? kRed : "", color));
  out += labelled("  Kernel table", std::to_string(f.table_entries()) + " / " +
                                        std::to_string(f.table_capacity()) + " flows, " +
                                        std::to_string(f.table_evictions()) + " evictions");
  if (f.drops_size() > 0) {
    std::vector<Row> drops = {headerRow({"DROP REASON", "PACKETS"})};
    for (const auto& d : f.drops()) {
      drops.push_back({{sanitize(d.reason())}, {std::to_string(d.packets())}});
    }
    appendTable(out, drops, color);
  }
  if (!f.attribution().empty()) out += labelled("  Attribution", sanitize(f.attribution()));
  if (!f.cgroup_accounting().empty()) {
    out += labelled("  Traffic", sanitize(f.cgroup_accounting()));
  }
  out += labelled("  Counters", nonZeroStats(f.stats()));
}

}  // namespace

std::string paint(std::string_view text, std::string_view sgr, bool color) {
  if (!color || sgr.empty() || text.empty()) return std::string(text);
  std::string out = "\x1b[";
  out.append(sgr).append("m").append(text).append("\x1b[0m");
  return out;
}

std::string endpoint(const std::string& ip, uint32_t port) {
  std::string a = sanitize(ip);
  if (a.find(':') != std::string::npos) a = "[" + a + "]";
  return port ? a + ":" + std::to_string(port) : a;
}

std::string lostText(const v1::LostEvent& lost) {
  std::string out = "!! " + std::to_string(lost.count()) + " ";
  if (lost.lost_type() == v1::EVENT_TYPE_EXEC || lost.lost_type() == v1::EVENT_TYPE_EXIT ||
      lost.lost_type() == v1::EVENT_TYPE_POLICY || lost.lost_type() == v1::EVENT_TYPE_DROP ||
      lost.lost_type() == v1::EVENT_TYPE_FLOW) {
    out += eventTypeName(lost.lost_type()) + " ";
  }
  out += lost.count() == 1 ? "event lost " : "events lost ";
  if (lost.source() == "kernel") {
    out += "(kernel ring buffer full)";
  } else if (lost.source() == "client") {
    out += "(this client read too slowly)";
  } else {
    out += "(source: " + sanitize(lost.source().empty() ? "unknown" : lost.source()) + ")";
  }
  return out;
}

void appendRow(std::string& out, const Row& row, const std::vector<std::size_t>& widths,
               std::string_view indent, bool color) {
  std::string line(indent);
  for (std::size_t i = 0; i < row.size(); ++i) {
    bool last = i + 1 == row.size();
    std::string text = last ? row[i].text : padRight(row[i].text, widths[i]);
    // Colour only the text, not the padding, so that alignment does not depend on colour.
    std::size_t textLen = row[i].text.size();
    line += paint(text.substr(0, textLen), row[i].sgr, color) + text.substr(textLen);
    if (!last) line += "  ";
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  out += line;
  out += '\n';
}

std::vector<std::size_t> columnWidths(const std::vector<Row>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (std::size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], displayWidth(row[i].text));
    }
  }
  return widths;
}

void appendTable(std::string& out, const std::vector<Row>& rows, bool color) {
  auto widths = columnWidths(rows);
  for (const auto& row : rows) appendRow(out, row, widths, "  ", color);
}

Row headerRow(const std::vector<std::string>& names) {
  Row row;
  for (const auto& name : names) row.push_back({name, kBold});
  return row;
}

std::string labelled(std::string_view label, std::string_view value) {
  return padRight(std::string(label) + ":", 16) + std::string(value) + "\n";
}

bool shouldUseColor(bool noColorFlag, bool noColorEnv, bool stdoutIsTty) {
  return stdoutIsTty && !noColorFlag && !noColorEnv;
}

std::string formatTimestamp(const google::protobuf::Timestamp& time) {
  if (time.seconds() == 0 && time.nanos() == 0) return {};
  std::time_t seconds = static_cast<std::time_t>(time.seconds());
  std::tm utc{};
  if (gmtime_r(&seconds, &utc) == nullptr) return "?";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                time.nanos() / 1000000);
  return buf;
}

std::string formatDuration(std::chrono::nanoseconds duration) {
  using namespace std::chrono;
  if (duration < nanoseconds::zero()) return "-" + formatDuration(-duration);
  char buf[48];
  auto count = duration.count();
  if (duration < 1ms) {
    std::snprintf(buf, sizeof(buf), "%" PRId64 "us", static_cast<int64_t>(count / 1000));
  } else if (duration < 1s) {
    std::snprintf(buf, sizeof(buf), "%" PRId64 "ms", static_cast<int64_t>(count / 1000000));
  } else if (duration < 1min) {
    std::snprintf(buf, sizeof(buf), "%.1fs", static_cast<double>(count) / 1e9);
  } else if (duration < 1h) {
    auto s = duration_cast<seconds>(duration).count();
    std::snprintf(buf, sizeof(buf), "%" PRId64 "m%" PRId64 "s", static_cast<int64_t>(s / 60),
                  static_cast<int64_t>(s % 60));
  } else if (duration < 24h) {
    auto m = duration_cast<minutes>(duration).count();
    std::snprintf(buf, sizeof(buf), "%" PRId64 "h%" PRId64 "m", static_cast<int64_t>(m / 60),
                  static_cast<int64_t>(m % 60));
  } else {
    auto h = duration_cast<hours>(duration).count();
    std::snprintf(buf, sizeof(buf), "%" PRId64 "d%" PRId64 "h", static_cast<int64_t>(h / 24),
                  static_cast<int64_t>(h % 24));
  }
  return buf;
}

std::string formatDuration(const google::protobuf::Duration& duration) {
  return formatDuration(std::chrono::nanoseconds(TimeUtil::DurationToNanoseconds(duration)));
}

std::string signalName(int signal) {
  // Linux numbering (x86, arm, arm64, riscv), independent of the machine running the CLI.
  static constexpr std::array<std::string_view, 32> kNames = {
      "",          "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",   "SIGTRAP", "SIGABRT", "SIGBUS",
      "SIGFPE",    "SIGKILL", "SIGUSR1",   "SIGSEGV", "SIGUSR2",  "SIGPIPE", "SIGALRM", "SIGTERM",
      "SIGSTKFLT", "SIGCHLD", "SIGCONT",   "SIGSTOP", "SIGTSTP",  "SIGTTIN", "SIGTTOU", "SIGURG",
      "SIGXCPU",   "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO",   "SIGPWR",  "SIGSYS"};
  if (signal > 0 && signal < static_cast<int>(kNames.size())) {
    return std::string(kNames[static_cast<std::size_t>(signal)]);
  }
  return "SIG" + std::to_string(signal);
}

std::string eventTypeName(v1::EventType type) {
  switch (type) {
    case v1::EVENT_TYPE_EXEC:
      return "exec";
    case v1::EVENT_TYPE_EXIT:
      return "exit";
    case v1::EVENT_TYPE_LOST:
      return "lost";
    case v1::EVENT_TYPE_POLICY:
      return "policy";
    case v1::EVENT_TYPE_DROP:
      return "drop";
    case v1::EVENT_TYPE_FLOW:
      return "flow";
    case v1::EVENT_TYPE_OOM_KILL:
      return "oom";
    default:
      return "unknown";
  }
}

std::vector<std::string> splitLines(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) lines.emplace_back(line);
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

// C0 and C1 control characters and DEL become \xNN.
std::string sanitize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    bool c1 = c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
              static_cast<unsigned char>(text[i + 1]) <= 0x9f;
    if (c < 0x20 || c == 0x7f || c1) {
      unsigned code = c1 ? static_cast<unsigned char>(text[++i]) : c;
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", code);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string quoteArg(std::string_view arg) {
  if (arg.empty()) return "''";
  bool plain = std::all_of(arg.begin(), arg.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x80 || std::isalnum(u) ||
           std::string_view("-_./:=@%+,^~").find(c) != std::string_view::npos;
  });
  std::string text = sanitize(arg);
  if (plain) return text;
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string formatJson(const google::protobuf::Message& message) { return jsonLine(message); }

std::string formatCompact(const v1::Event& event, bool color) {
  std::string time = event.has_time() ? formatTimestamp(event.time()) : "-";
  std::string out = paint(time, kDim, color) + " ";
  if (event.has_lost()) return out + paint(lostText(event.lost()), kBoldRed, color);

  if (event.has_drop()) {
    std::string label = dropLabel(event.drop());
    out += paint(label, label == "DROP" || label == "RATE" ? kBoldRed : kYellow, color) +
           std::string(label.size() < 5 ? 6 - label.size() : 1, ' ') + dropSummary(event.drop());
    return out;
  }
  const v1::Process* process = processOf(event);
  if (process == nullptr) return out + eventTypeName(event.type()) + " (no details)";

  if (event.has_exec()) {
    out += paint("exec", kGreen, color) + "  " + processSummary(*process);
    if (std::string interp = interpreterOf(*process); !interp.empty()) {
      out += "  interp=" + interp;
    }
    if (!process->cwd().empty()) out += "  cwd=" + quoteArg(process->cwd());
    if (process->path_truncated()) out += "  [path truncated]";
    return out + parentSummary(event, *process);
  }

  if (event.has_policy()) {
    const auto& policy = event.policy();
    // Labels padded to five columns, so that "KILL  pid=" and "AUDIT pid=" line up.
    std::string label = policyLabel(policy);
    out += paint(label, policyColor(policy), color) +
           std::string(label.size() < 5 ? 6 - label.size() : 1, ' ') + processSummary(*process);
    if (std::string interp = interpreterOf(*process); !interp.empty()) {
      out += "  interp=" + interp;
    }
    out += "  " + paint(policyVerdict(policy), policyColor(policy), color);
    if (process->path_truncated()) out += "  [path truncated]";
    return out + parentSummary(event, *process);
  }

  if (event.has_oom_kill()) {
    const auto& oom = event.oom_kill();
    const uint64_t rss = oom.anon_rss_bytes() + oom.file_rss_bytes() + oom.shmem_rss_bytes();
    out += paint("OOM", kBoldRed, color) + "   " + processSummary(*process) +
           "  rss=" + std::to_string(rss) + " (anon " + std::to_string(oom.anon_rss_bytes()) +
           ", file " + std::to_string(oom.file_rss_bytes()) + ", shmem " +
           std::to_string(oom.shmem_rss_bytes()) + ")";
    if (!process->cgroup_path().empty()) out += "  cgroup=" + sanitize(process->cgroup_path());
    if (!oom.memory_cgroup().empty() && oom.memory_cgroup() != process->cgroup_path())
      out += "  memcg=" + sanitize(oom.memory_cgroup());
    return out;
  }

  const auto& exit = event.exit();
  out += paint("exit", exitFailed(exit) ? kRed : kYellow, color) +
         "  pid=" + std::to_string(process->pid()) + " " + programOf(*process) + " " +
         exitResult(exit);
  return out;
}

std::vector<std::string> eventTableRow(const v1::Event& event) {
  std::string time = event.has_time() ? formatTimestamp(event.time()) : "-";
  if (event.has_lost()) return {time, "lost", "-", "-", "-", "-", lostText(event.lost())};
  if (event.has_drop()) {
    std::string type = dropLabel(event.drop());
    for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return {time, type, "-", "-", "-", sanitize(event.drop().interface()),
            dropSummary(event.drop())};
  }
  const v1::Process* process = processOf(event);
  if (process == nullptr) return {time, eventTypeName(event.type()), "-", "-", "-", "-", ""};

  std::string type;
  std::string result;
  if (event.has_exec() || event.has_policy()) {
    result = argsOf(*process);
    if (std::string interp = interpreterOf(*process); !interp.empty()) {
      result += (result.empty() ? "" : " ") + std::string("(interp ") + interp + ")";
    }
    type = "exec";
    if (event.has_policy()) {
      // The table's lower-case type names: "kill", "audit", "policy".
      type = policyLabel(event.policy());
      for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      result += (result.empty() ? "" : "  ") + policyVerdict(event.policy());
    }
  } else if (event.has_oom_kill()) {
    type = "oom";
    const auto& oom = event.oom_kill();
    result = "killed by the OOM killer, rss " +
             std::to_string(oom.anon_rss_bytes() + oom.file_rss_bytes() + oom.shmem_rss_bytes());
  } else {
    type = "exit";
    result = exitResult(event.exit());
  }
  return {time,
          type,
          std::to_string(process->pid()),
          std::to_string(process->ppid()),
          std::to_string(process->uid()),
          programOf(*process),
          result};
}

std::string formatPolicyList(const v1::ListPoliciesResponse& list, bool color) {
  std::string out;
  if (!list.enforcement().empty()) {
    out += "Enforcement: " + sanitize(list.enforcement()) + "\n\n";
  }
  if (list.policies_size() == 0) {
    return out + "No policies. Apply one with 'vigil policy apply -f FILE'.\n";
  }

  // Policy rows align with the header and each other; rule rows align with all other rules.
  std::vector<Row> policyRows = {headerRow({"POLICY", "SOURCE", "MODE", "STATE", "RULES", "HITS"})};
  std::vector<Row> ruleRows;
  for (const auto& policy : list.policies()) {
    std::uint64_t hits = 0;
    for (const auto& rule : policy.rules()) {
      std::string counters;
      if (rule.kind() == "xdp") {
        hits += rule.packets();
        counters = "packets=" + std::to_string(rule.packets()) +
                   " bytes=" + std::to_string(rule.bytes());
        if (rule.rate_limited())
          counters += " over-limit=" + std::to_string(rule.limited_packets());
      } else {
        hits += rule.hits();
        counters = "hits=" + std::to_string(rule.hits());
      }
      ruleRows.push_back({{sanitize(rule.name())},
                          {sanitize(rule.action()), ruleActionColor(rule.action())},
                          {sanitize(rule.mode()), rule.mode() == "audit" ? kYellow : ""},
                          {counters}});
    }
    policyRows.push_back({{sanitize(policy.name())},
                          {sanitize(policy.source())},
                          {sanitize(policy.mode())},
                          {sanitize(policy.state()), policyStateColor(policy.state())},
                          {std::to_string(policy.rules_size())},
                          {std::to_string(hits)}});
  }
  auto policyWidths = columnWidths(policyRows);
  auto ruleWidths = columnWidths(ruleRows);

  appendRow(out, policyRows[0], policyWidths, "", color);
  auto ruleRow = ruleRows.begin();
  for (int i = 0; i < list.policies_size(); ++i) {
    const auto& policy = list.policies(i);
    appendRow(out, policyRows[static_cast<std::size_t>(i) + 1], policyWidths, "", color);
    for (const auto& line : splitLines(policy.error())) {
      out += "  " + paint("error:", kBoldRed, color) + " " + sanitize(line) + "\n";
    }
    for (int r = 0; r < policy.rules_size(); ++r) {
      appendRow(out, *ruleRow++, ruleWidths, "  ", color);
    }
  }
  return out;
}

std::string formatPolicyApplied(const v1::ApplyPolicyResponse& applied, bool color) {
  std::string out;
  for (const auto& policy : applied.policies()) {
    std::string rules =
        std::to_string(policy.rules_size()) + (policy.rules_size() == 1 ? " rule" : " rules");
    out += sanitize(policy.name()) + ": " +
           (policy.state() == "error" ? "not applied (" : "applied (") +
           paint(sanitize(policy.state()), policyStateColor(policy.state()), color) + ", " + rules +
           ")\n";
    for (const auto& line : splitLines(policy.error())) {
      out += "  " + paint("error:", kBoldRed, color) + " " + sanitize(line) + "\n";
    }
  }
  return out;
}

std::string formatStatusText(const v1::GetStatusResponse& status, bool color) {
  std::string out;
  out += labelled("Version", status.version());
  out += labelled("Node", sanitize(status.node_name()));
  out += labelled("Kernel", sanitize(status.kernel()));
  out += labelled("Uptime", formatDuration(status.uptime()));
  if (!status.api_address().empty()) out += labelled("API", sanitize(status.api_address()));
  if (!status.metrics_address().empty())
    out += labelled("Metrics", sanitize(status.metrics_address()));
  if (!status.health_address().empty())
    out += labelled("Health", "gRPC health on " + sanitize(status.health_address()));
  if (!status.pod_metadata().empty()) out += labelled("Pods", sanitize(status.pod_metadata()));

  out += "\nCapabilities:\n";
  std::vector<Row> caps = {headerRow({"NAME", "AVAILABLE", "IN USE", "DETAIL"})};
  for (const auto& cap : status.capabilities()) {
    caps.push_back({{sanitize(cap.name())},
                    {yesNo(cap.available()), cap.available() ? kGreen : kYellow},
                    {yesNo(cap.in_use())},
                    {sanitize(cap.detail())}});
  }
  if (status.capabilities_size() > 0) {
    appendTable(out, caps, color);
  } else {
    out += "  none reported\n";
  }

  out += "\nPrograms (" + std::to_string(status.programs_size()) + " attached):\n";
  std::vector<Row> progs = {headerRow({"NAME", "TYPE", "ATTACH TO", "ID"})};
  for (const auto& prog : status.programs()) {
    progs.push_back({{sanitize(prog.name())},
                     {sanitize(prog.type())},
                     {sanitize(prog.attach_to())},
                     {std::to_string(prog.id())}});
  }
  if (status.programs_size() > 0) {
    appendTable(out, progs, color);
  } else {
    out += "  none\n";
  }

  out += "\nEvents:\n";
  std::vector<Row> events = {headerRow({"TYPE", "SEEN", "LOST IN KERNEL", "MALFORMED"})};
  for (const auto& counter : status.events()) {
    events.push_back({{eventTypeName(counter.type())},
                      {std::to_string(counter.seen())},
                      {std::to_string(counter.lost_kernel()), counter.lost_kernel() ? kRed : ""},
                      {std::to_string(counter.malformed()), counter.malformed() ? kRed : ""}});
  }
  if (status.events_size() > 0) {
    appendTable(out, events, color);
  } else {
    out += "  none reported\n";
  }

  if (status.kernel_stats_size() > 0) {
    out += "\nKernel counters:\n";
    std::vector<Row> stats = {headerRow({"NAME", "VALUE"})};
    for (const auto& stat : status.kernel_stats()) {
      stats.push_back({{sanitize(stat.name())}, {std::to_string(stat.value())}});
    }
    appendTable(out, stats, color);
  }

  if (status.has_xdp()) {
    const auto& x = status.xdp();
    out += "\nXDP filter: " + sanitize(x.state());
    if (x.program_id()) out += " (program id " + std::to_string(x.program_id()) + ")";
    out += "\n";
    if (!x.pin_dir().empty()) out += labelled("  Pinned under", sanitize(x.pin_dir()));
    if (x.interfaces_size() > 0) {
      std::vector<Row> ifs = {headerRow({"INTERFACE", "IFINDEX", "MODE", "LINK"})};
      for (const auto& i : x.interfaces()) {
        ifs.push_back({{sanitize(i.name())},
                       {std::to_string(i.ifindex())},
                       {sanitize(i.mode()), i.mode() == "generic" ? kYellow : kGreen},
                       {std::to_string(i.link_id())}});
      }
      appendTable(out, ifs, color);
    }
    if (x.rules_size() > 0) {
      std::vector<Row> rules = {
          headerRow({"POLICY", "RULE", "PACKETS", "BYTES", "OVER LIMIT"})};
      for (const auto& r : x.rules()) {
        rules.push_back({{sanitize(r.policy())},
                         {sanitize(r.rule())},
                         {std::to_string(r.packets())},
                         {std::to_string(r.bytes())},
                         {std::to_string(r.limited_packets())}});
      }
      appendTable(out, rules, color);
    }
    out += labelled("  Counters", nonZeroStats(x.stats()));
    out += labelled("  Drop records", std::to_string(x.records_received()) + " received, " +
                                          std::to_string(x.records_malformed()) + " malformed");
  }

  if (status.has_flows()) appendFlowStatus(out, status.flows(), color);

  out += "\n";
  out += labelled("Clients", std::to_string(status.clients()) + " connected, " +
                                 std::to_string(status.client_events_dropped()) +
                                 " events dropped for slow clients");
  out += labelled("Event ring", std::to_string(status.event_ring_size()) + " / " +
                                    std::to_string(status.event_ring_capacity()) + " events");
  if (status.ring_buffers_size() > 0) {
    std::string text;
    for (const auto& r : status.ring_buffers()) {
      if (!text.empty()) text += ", ";
      text += sanitize(r.name()) + " " + std::to_string(r.pending_bytes()) + " / " +
              std::to_string(r.size_bytes()) + " bytes";
    }
    out += labelled("Kernel rings", text + " unread");
  }
  if (status.has_export_()) {
    const auto& e = status.export_();
    std::string text = sanitize(e.path()) + ": " + std::to_string(e.lines()) + " lines, " +
                       std::to_string(e.rotations()) + " rotations";
    if (e.write_errors() > 0)
      text += ", " + paint(std::to_string(e.write_errors()) + " failed writes (" +
                               sanitize(e.last_error()) + ")",
                           kRed, color);
    out += labelled("JSON export", text);
  }
  out += labelled("Recent exits", std::to_string(status.recent_exits_size()) + " / " +
                                      std::to_string(status.recent_exits_capacity()) +
                                      " processes (vigil top --since)");
  out += labelled("Process table",
                  std::to_string(status.process_table_size()) + " / " +
                      std::to_string(status.process_table_capacity()) + " processes, " +
                      std::to_string(status.process_table_evictions()) + " evictions");
  return out;
}

TableWriter::TableWriter(std::ostream& out, Row header, std::vector<std::size_t> streamingWidths,
                         bool color, bool streaming)
    : out_(out),
      header_(std::move(header)),
      streamingWidths_(std::move(streamingWidths)),
      color_(color),
      streaming_(streaming) {}

void TableWriter::add(Row row) {
  if (!streaming_) {
    heldRows_.push_back(std::move(row));
    return;
  }
  std::string text;
  if (!headerPrinted_) {
    appendRow(text, header_, streamingWidths_, "", color_);
    headerPrinted_ = true;
  }
  appendRow(text, row, streamingWidths_, "", color_);
  out_ << text << std::flush;
}

void TableWriter::finish() {
  if (streaming_) return;
  std::vector<Row> rows = {header_};
  rows.insert(rows.end(), heldRows_.begin(), heldRows_.end());
  auto widths = columnWidths(rows);
  std::string text;
  for (const auto& row : rows) appendRow(text, row, widths, "", color_);
  out_ << text;
  heldRows_.clear();
}

EventPrinter::EventPrinter(std::ostream& out, EventFormat format, bool color, bool streaming)
    : out_(out),
      format_(format),
      color_(color),
      streaming_(streaming),
      // Fixed widths that fit typical values.
      table_(out, headerRow(kEventTableHeader), {24, 5, 7, 7, 5, 28, 0}, color, streaming) {}

void EventPrinter::print(const v1::Event& event) {
  switch (format_) {
    case EventFormat::kJson:
      out_ << formatJson(event) << '\n';
      break;
    case EventFormat::kCompact:
      out_ << formatCompact(event, color_) << '\n';
      break;
    case EventFormat::kTable:
      table_.add(eventRow(eventTableRow(event)));
      break;
  }
  if (streaming_) out_.flush();
}

void EventPrinter::finish() {
  if (format_ == EventFormat::kTable) table_.finish();
  out_.flush();
}

}  // namespace vigil::cli
