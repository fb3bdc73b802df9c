#pragma once

// Checked values of command-line flags shared by several commands. The throwing helpers throw
// CLI::ValidationError naming the flag, which the parser reports as a usage error (exit 2).

#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vigil::cli {

// How many events or flows a listing shows when no flag says otherwise.
inline constexpr std::uint32_t kDefaultLast = 20;

// Decimal digits only, no sign, within 32 bits.
std::optional<std::uint32_t> parseUint32(std::string_view text);

// A count such as --last N (0 allowed).
std::uint32_t countFlag(const std::string& flag, const std::string& text);

// A point in time: a duration before `now` ("5m") or RFC 3339, as --since and --until take it.
google::protobuf::Timestamp timeFlag(const std::string& flag, const std::string& text,
                                     std::chrono::system_clock::time_point now);

}  // namespace vigil::cli
