#pragma once

// `vigil observe`: network flows and drops, filtered like `hubble observe`; and `vigil traffic`:
// per-cgroup network counters.

#include <array>
#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "cli/src/format.hpp"
#include "cli/src/policy.hpp"
#include "vigil/v1/vigil.pb.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace vigil::cli {

enum class FlowFormat { kCompact, kTable, kJson, kDict };
enum class TrafficFormat { kTable, kJson };

struct ObserveCommand {
  v1::GetFlowsRequest request;
  FlowFormat format = FlowFormat::kCompact;
  bool printNodeName = false;
};

struct TrafficCommand {
  v1::GetTrafficRequest request;
  TrafficFormat format = TrafficFormat::kTable;
};

// The `observe` and `traffic` subcommands: their flags, and the commands they make once the
// command line is parsed. Not copyable: the parser keeps pointers into it.
class FlowCommands {
 public:
  // The number of filter flags (--ip, --port, ...).
  static constexpr std::size_t kFilterCount = 18;

  explicit FlowCommands(CLI::App& app);
  FlowCommands(const FlowCommands&) = delete;
  FlowCommands& operator=(const FlowCommands&) = delete;

  const CLI::App* observe() const { return observe_; }
  const CLI::App* traffic() const { return traffic_; }

  // After parsing, when observe() was parsed. `args` is the command line as given: --not
  // applies to the filter flag right after it, which only the order of `args` tells. Throws
  // CLI::ValidationError (a usage error) for bad values and combinations.
  ObserveCommand observeCommand(const std::vector<std::string>& args,
                                std::chrono::system_clock::time_point now) const;
  // After parsing, when traffic() was parsed; throws CLI::ValidationError.
  TrafficCommand trafficCommand() const;

 private:
  CLI::App* observe_ = nullptr;
  CLI::App* traffic_ = nullptr;
  std::array<std::vector<std::string>, kFilterCount> filters_;  // by flag, in kFilterFlags order
  bool follow_ = false;
  std::string last_;
  std::string first_;
  std::string since_;
  std::string until_;
  std::string output_ = "compact";
  bool printNodeName_ = false;
  std::string trafficCgroup_;
  std::string trafficOutput_ = "table";
};

// One line per flow event, without the newline:
//   TIME [NODE] SOURCE -> DESTINATION PROTO [FLAGS] VERDICT WHAT [COUNTERS]
// where a side is "10.0.0.1:40000 curl(1234)", a drop's arrow is "-x>", and WHAT is
// "new", "update", "end (fin)", or for a drop its reason with the XDP policy and rule.
std::string formatFlowCompact(const v1::Event& event, bool color, bool nodeName);

// The cells of a flow's table row, in the order of flowTableHeader(nodeName).
Row flowTableRow(const v1::Event& event, bool nodeName);
Row flowTableHeader(bool nodeName);

// One "KEY: value" line per known field, keys right-aligned, ending in a newline.
std::string formatFlowDict(const v1::Event& event, bool color, bool nodeName);

// Writes flow events as they arrive, in any FlowFormat; see EventPrinter.
class FlowPrinter {
 public:
  FlowPrinter(std::ostream& out, FlowFormat format, bool color, bool nodeName, bool streaming);
  FlowPrinter(const FlowPrinter&) = delete;
  FlowPrinter& operator=(const FlowPrinter&) = delete;

  void print(const v1::Event& event);
  void finish();

 private:
  std::ostream& out_;
  FlowFormat format_;
  bool color_;
  bool nodeName_;
  bool streaming_;
  bool printedOne_ = false;
  TableWriter table_;
};

// `vigil traffic`: the counters' source, then a CGROUP PROTO IN/OUT table; ends in a newline.
std::string formatTraffic(const v1::GetTrafficResponse& traffic, bool color);

// Each returns the exit code: 0 on success (also when Ctrl-C ends `observe --follow`), 1 when
// the call fails (reported on `err`), 130 when Ctrl-C cancels `traffic`.
int runObserve(const AgentCall& call, const ObserveCommand& command, std::ostream& out,
               std::ostream& err);
int runTraffic(const AgentCall& call, const TrafficCommand& command, std::ostream& out,
               std::ostream& err);

}  // namespace vigil::cli
