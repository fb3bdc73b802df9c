#include "cli/src/time_parse.hpp"

#include <google/protobuf/util/time_util.h>

#include <cctype>
#include <charconv>
#include <string>

namespace vigil::cli {
namespace {

// Longer than any retention the agent could have; keeps the arithmetic far from overflow.
constexpr double kMaxDurationNs = 100.0 * 365 * 24 * 3600 * 1e9;

std::optional<double> unitNanoseconds(std::string_view unit) {
  if (unit == "ms") return 1e6;
  if (unit == "s") return 1e9;
  if (unit == "m") return 60e9;
  if (unit == "h") return 3600e9;
  if (unit == "d") return 86400e9;
  return std::nullopt;
}

}  // namespace

std::optional<std::chrono::nanoseconds> parseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  double total = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    // A number: digits with an optional fraction. from_chars would also take signs and
    // exponents, which have no place here, so check the characters first.
    std::size_t end = pos;
    while (end < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '.')) {
      ++end;
    }
    if (end == pos) return std::nullopt;
    double value = 0;
    auto [ptr, ec] = std::from_chars(text.data() + pos, text.data() + end, value);
    if (ec != std::errc{} || ptr != text.data() + end) return std::nullopt;
    pos = end;
    while (end < text.size() && std::isalpha(static_cast<unsigned char>(text[end]))) ++end;
    auto unit = unitNanoseconds(text.substr(pos, end - pos));
    if (!unit) return std::nullopt;
    pos = end;
    total += value * *unit;
    if (total > kMaxDurationNs) return std::nullopt;
  }
  return std::chrono::nanoseconds(static_cast<std::int64_t>(total));
}

std::optional<google::protobuf::Timestamp> parseSince(std::string_view text,
                                                      std::chrono::system_clock::time_point now) {
  using google::protobuf::util::TimeUtil;
  google::protobuf::Timestamp result;
  if (auto ago = parseDuration(text)) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()) - *ago;
    result = TimeUtil::NanosecondsToTimestamp(ns.count());
    return result;
  }
  if (TimeUtil::FromString(std::string(text), &result)) return result;
  return std::nullopt;
}

}  // namespace vigil::cli
