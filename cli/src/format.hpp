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

// ANSI SGR sequences; empty means "leave the text as it is".
inline constexpr std::string_view kDim = "2";
inline constexpr std::string_view kGreen = "32";
inline constexpr std::string_view kYellow = "33";
inline constexpr std::string_view kRed = "31";
inline constexpr std::string_view kBoldRed = "1;31";
inline constexpr std::string_view kBold = "1";

// `text` wrapped in the SGR sequence when `color` is set.
std::string paint(std::string_view text, std::string_view sgr, bool color);

// Rows of cells, each with an optional colour, rendered in aligned columns. The last column
// is never padded, so lines carry no trailing spaces.
struct Cell {
  std::string text;
  std::string_view sgr = {};
};
using Row = std::vector<Cell>;

// Appends `row` padded to `widths`, after `indent`, with a newline.
void appendRow(std::string& out, const Row& row, const std::vector<std::size_t>& widths,
               std::string_view indent, bool color);
// The widest cell of each column.
std::vector<std::size_t> columnWidths(const std::vector<Row>& rows);
// The rows aligned, each indented by two spaces.
void appendTable(std::string& out, const std::vector<Row>& rows, bool color);
// Column names in bold.
Row headerRow(const std::vector<std::string>& names);
// "Label:         value\n", the value at column 17.
std::string labelled(std::string_view label, std::string_view value);

// "10.0.0.1:443", "[2001:db8::1]:443", or the address alone for port 0.
std::string endpoint(const std::string& ip, uint32_t port);
// "!! 42 exec events lost (kernel ring buffer full)".
std::string lostText(const v1::LostEvent& lost);

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

// Writes table rows as they arrive. With `streaming` every row is written at once, at fixed
// widths (a longer value pushes the rest of its line right); otherwise rows are held and
// aligned over the whole output at finish().
class TableWriter {
 public:
  TableWriter(std::ostream& out, Row header, std::vector<std::size_t> streamingWidths, bool color,
              bool streaming);
  TableWriter(const TableWriter&) = delete;
  TableWriter& operator=(const TableWriter&) = delete;

  void add(Row row);
  // Writes held rows (the header alone when there were none); call once, at the end.
  void finish();

 private:
  std::ostream& out_;
  const Row header_;
  const std::vector<std::size_t> streamingWidths_;
  const bool color_;
  const bool streaming_;
  bool headerPrinted_ = false;
  std::vector<Row> heldRows_;
};

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
  std::ostream& out_;
  EventFormat format_;
  bool color_;
  bool streaming_;
  TableWriter table_;
};

}  // namespace vigil::cli
