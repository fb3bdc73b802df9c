#pragma once

// Helpers shared by the CLI unit tests (cli_test.cpp, cli_observe_test.cpp).

#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "cli/src/app.hpp"

namespace vigil::cli::test_support {

inline google::protobuf::Timestamp timestamp(const std::string& rfc3339) {
  google::protobuf::Timestamp ts;
  EXPECT_TRUE(google::protobuf::util::TimeUtil::FromString(rfc3339, &ts)) << rfc3339;
  return ts;
}

// A fixed "now" (1795000000 s after the epoch), no colour, no TTY.
inline Environment testEnvironment() {
  Environment env;
  env.now = std::chrono::system_clock::time_point(std::chrono::seconds(1'795'000'000));
  return env;
}

// Parses `args` and returns the command of type Command; fails the test if there is none.
template <typename Command>
Command parseCommand(const std::vector<std::string>& args) {
  std::ostringstream out;
  std::ostringstream err;
  ParseResult result = parseCommandLine(args, out, err, testEnvironment());
  EXPECT_TRUE(result.invocation.has_value()) << err.str();
  if (!result.invocation) return {};
  const auto* command = std::get_if<Command>(&result.invocation->command);
  EXPECT_NE(command, nullptr);
  return command != nullptr ? *command : Command{};
}

// Runs `args` and checks that it is a usage error: exit 2, nothing on standard output, and on
// standard error "vigil: " with `message`, then a pointer to `help --help` ("vigil events").
inline void expectUsageError(const std::vector<std::string>& args, const std::string& message,
                             const std::string& help) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(run(args, out, err, testEnvironment()), 2) << message;
  EXPECT_EQ(err.str().rfind("vigil: ", 0), 0u) << err.str();
  EXPECT_NE(err.str().find(message), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("Run '" + help + " --help' for usage."), std::string::npos)
      << err.str();
  EXPECT_EQ(out.str(), "");
}

}  // namespace vigil::cli::test_support
