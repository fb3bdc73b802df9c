#pragma once

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "vigil/v1/vigil.pb.h"

namespace vigil::cli {

enum class EventFormat { kCompact, kJson, kTable };
enum class StatusFormat { kText, kJson };

// Colour is for people: only on a terminal, and never when --no-color or NO_COLOR is set.
bool shouldUseColor(bool noColorFlag, bool noColorEnv, bool stdoutIsTty);

// "2026-11-25T19:44:15.123Z": UTC, millisecond precision. Empty for an unset timestamp.
std::string formatTimestamp(const google::protobuf::Timestamp& time);
// "850us", "120ms", "1.2s", "3m4s", "2h5m", "3d4h".
std::string formatDuration(std::chrono::nanoseconds duration);
std::string formatDuration(const google::protobuf::Duration& duration);
// "SIGKILL" for 9; "SIG70" for a number without a name.
std::string signalName(int signal);
// "exec", "exit", "lost", "policy".
std::string eventTypeName(v1::EventType type);

// Text from the agent or a traced process, made safe for a terminal: control characters are
// escaped as \xNN; everything else passes through as UTF-8.
std::string sanitize(std::string_view text);

// The non-empty lines of `text`, without their line ends.
std::vector<std::string> splitLines(std::string_view text);

// One command-line argument as a reader should see it: quoted when it contains spaces or shell
// metacharacters, with control characters escaped so that they cannot drive the terminal.
std::string quoteArg(std::string_view arg);

// The protobuf JSON mapping on one line, with proto field names (snake_case) and zero values
// included, so every object of one type has the same keys.
std::string formatJson(const google::protobuf::Message& message);

// One line per event, without the newline:
//   2026-11-25T19:44:15.123Z exec  pid=1234 uid=0 /usr/bin/curl -s x  cwd=/root  parent=bash(1200)
//   2026-11-25T19:44:16.323Z exit  pid=1234 /usr/bin/curl code=0 lifetime=1.2s
//   2026-11-25T19:44:16.400Z !! 42 exec events lost (kernel ring buffer full)
//   2026-11-25T20:00:00.000Z KILL  pid=1234 uid=1000 /tmp/x/evil --arg  policy=deny-tmp
//       rule=no-tmp (sigkill)  parent=bash(1200)            (one line; AUDIT for an audit)
std::string formatCompact(const v1::Event& event, bool color);

// The cells of an event's table row, in the order of kEventTableHeader.
std::vector<std::string> eventTableRow(const v1::Event& event);
inline const std::vector<std::string> kEventTableHeader = {"TIME", "TYPE",   "PID",        "PPID",
                                                           "UID",  "BINARY", "ARGS/RESULT"};

// `vigil policy list`: the enforcement mechanism, then one row per policy (POLICY SOURCE MODE
// STATE RULES HITS) with its error and its rules on indented lines below it. Ends in a newline.
std::string formatPolicyList(const v1::ListPoliciesResponse& list, bool color);

// `vigil policy apply`: one line per applied policy, "deny-tmp: applied (enforcing, 2 rules)",
// with the error below it for a policy in state "error".
std::string formatPolicyApplied(const v1::ApplyPolicyResponse& applied, bool color);

// The human-readable `vigil status` report, ending in a newline.
std::string formatStatusText(const v1::GetStatusResponse& status, bool color);

// Writes events as they arrive. The table format aligns columns over the whole output, so it
// holds rows until finish() unless `streaming` is set, in which case it uses fixed widths.
class EventPrinter {
 public:
  EventPrinter(std::ostream& out, EventFormat format, bool color, bool streaming);
  EventPrinter(const EventPrinter&) = delete;
  EventPrinter& operator=(const EventPrinter&) = delete;

  void print(const v1::Event& event);
  // Writes held rows; call once when the stream ends, however it ends.
  void finish();

 private:
  void printTableRow(const std::vector<std::string>& cells);

  std::ostream& out_;
  EventFormat format_;
  bool color_;
  bool streaming_;
  bool headerPrinted_ = false;
  std::vector<std::vector<std::string>> heldRows_;
};

}  // namespace vigil::cli
