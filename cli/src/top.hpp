#pragma once

// `vigil top`: memory (and network bytes) per process, cgroup or pod, read from the kernel by
// the agent at each refresh (GetAccounting).

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "cli/src/policy.hpp"
#include "vigil/v1/vigil.pb.h"

namespace CLI {
class App;
}  // namespace CLI

namespace vigil::cli {

enum class TopFormat { kTable, kJson };

struct TopCommand {
  v1::GetAccountingRequest request;
  TopFormat format = TopFormat::kTable;
  bool once = false;
  std::chrono::nanoseconds interval = std::chrono::seconds(1);
  bool clearScreen = false;  // a refreshing view on a terminal
  // --since: a duration ("10m", a window that moves with each refresh) or an RFC 3339 time;
  // empty without exited processes.
  std::string since;
};

// The `top` subcommand and its flags. Not copyable: the parser keeps pointers into it.
class TopCommands {
 public:
  explicit TopCommands(CLI::App& app);
  TopCommands(const TopCommands&) = delete;
  TopCommands& operator=(const TopCommands&) = delete;

  const CLI::App* top() const { return top_; }
  // After parsing, when top() was parsed; throws CLI::ValidationError for bad values.
  TopCommand command(bool terminal) const;

 private:
  CLI::App* top_ = nullptr;
  bool once_ = false;
  std::string output_ = "table";
  std::string by_ = "process";
  std::string sort_ = "memory";
  std::string limit_;
  std::string interval_ = "1s";
  std::vector<std::string> pids_;
  std::string cgroup_;
  std::string since_;
};

// One snapshot as a table: a summary line, then the rows; with exits (--since), an EXITED
// column that says when and how each exited process ended.
std::string formatTop(const v1::GetAccountingResponse& response, const std::string& groupBy,
                      bool color, bool exits = false);

// Bytes as "1.5 GiB", "64.0 MiB", "512 KiB", "12 B".
std::string humanBytes(uint64_t bytes);

int runTop(const AgentCall& call, const TopCommand& command, std::ostream& out, std::ostream& err);

}  // namespace vigil::cli
