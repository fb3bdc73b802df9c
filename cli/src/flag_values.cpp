#include "cli/src/flag_values.hpp"

#include <CLI/CLI.hpp>
#include <charconv>
#include <limits>

#include "cli/src/time_parse.hpp"

namespace vigil::cli {

std::optional<std::uint32_t> parseUint32(std::string_view text) {
  std::uint32_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

std::uint32_t countFlag(const std::string& flag, const std::string& text) {
  auto value = parseUint32(text);
  if (!value) {
    throw CLI::ValidationError(flag, "expected a whole number from 0 to " +
                                         std::to_string(std::numeric_limits<std::uint32_t>::max()) +
                                         ", got '" + text + "'");
  }
  return *value;
}

google::protobuf::Timestamp timeFlag(const std::string& flag, const std::string& text,
                                     std::chrono::system_clock::time_point now) {
  auto time = parseSince(text, now);
  if (!time) {
    throw CLI::ValidationError(flag,
                               "expected a duration such as 30s, 5m or 2h, or an RFC 3339 time "
                               "such as 2026-11-25T19:44:15Z, got '" +
                                   text + "'");
  }
  return *time;
}

}  // namespace vigil::cli
