#pragma once

// Policy YAML -> validated model. One text may hold several documents ("---"); they are
// accepted or rejected together. Every error names file:line:col.

#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "policy/model.hpp"

namespace vigil::policy {

struct ParseIssue {
  Position position;
  std::string message;
  std::string str() const;  // "file:line:col: message"
};

struct ParseResult {
  std::vector<Policy> policies;     // empty when errors is not
  std::vector<ParseIssue> errors;   // the first few problems found
  bool ok() const { return errors.empty(); }
  std::string errorText() const;    // one issue per line
};

// `sourceName` is what errors call the file ("policies/deny.yaml", or "<stdin>").
ParseResult parsePolicies(const std::string& text, const std::string& sourceName);
ParseResult parsePolicyFile(const std::string& path);

// "10.0.0.0/8", "198.51.100.7", "2001:db8::/32" or "2001:db8::1" -> a Cidr (without position),
// or nothing with `why` saying what is wrong, to follow the quoted text in a message. Rejects
// host bits after the prefix and IPv4-mapped IPv6 blocks (IPv4 is written dotted).
std::optional<Cidr> parseCidr(const std::string& text, std::string& why);

}  // namespace vigil::policy
