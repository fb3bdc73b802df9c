#pragma once

#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <optional>
#include <string_view>

namespace vigil::cli {

// Parses a duration such as "30s", "5m", "2h", "1h30m", "1.5s", "250ms" or "7d". Every number
// needs a unit. Returns nullopt for anything else, including negative or absurdly long values.
std::optional<std::chrono::nanoseconds> parseDuration(std::string_view text);

// Parses a --since value: a duration before `now` ("5m") or an RFC 3339 time
// ("2026-11-25T19:44:15Z", "2026-11-25T21:44:15.5+02:00"). Returns nullopt when it is neither.
std::optional<google::protobuf::Timestamp> parseSince(std::string_view text,
                                                      std::chrono::system_clock::time_point now);

}  // namespace vigil::cli
