#pragma once

// Policies as validated C++ values. The YAML parser (document.hpp) produces these; the
// compiler (exec_rules.hpp) turns them into BPF map contents. Pure data: no libbpf, no I/O.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vigil::policy {

// Where something was written: 1-based line and column, as editors show them.
struct Position {
  std::string file;
  int line = 0;
  int column = 0;
  std::string str() const;  // "file:line:col"
};

enum class Mode { enforce, audit };
enum class ExecAction { kill, audit };

// Every list is OR'ed inside itself; the lists a rule sets are AND'ed. An unset list does not
// constrain. At least one list must be set.
struct ExecMatch {
  std::vector<std::string> binaries;            // absolute paths, matched by file identity
  std::vector<std::string> pathPrefixes;        // absolute, the resolved path starts with it
  std::vector<std::string> parentBinaries;      // absolute paths, the parent's executable
  std::vector<uint32_t> uids;                   // real uid of the new program
  std::vector<std::string> cgroupPathPrefixes;  // cgroup v2 paths, e.g. /kubepods.slice
  // Where each entry of binaries and parentBinaries was written (same order), so that a
  // binary that cannot be resolved is reported at its own line.
  std::vector<Position> binaryPositions;
  std::vector<Position> parentBinaryPositions;
  bool empty() const;
};

struct ExecRule {
  std::string name;
  ExecMatch match;
  ExecAction action = ExecAction::kill;
  std::optional<Mode> mode;  // overrides the policy's
  Position position;         // of the rule's mapping
  Mode effectiveMode(Mode policyMode) const { return mode.value_or(policyMode); }
};

struct Policy {
  std::string name;
  Mode mode = Mode::enforce;
  std::vector<ExecRule> exec;
  Position position;  // of the document
};

// Limits, enforced with errors, never by truncation.
inline constexpr size_t kMaxFileBytes = 1 << 20;
inline constexpr size_t kMaxRulesPerPolicy = 1024;
inline constexpr size_t kMaxValuesPerList = 256;
inline constexpr size_t kMaxNameLength = 63;

const char* toString(Mode m);
const char* toString(ExecAction a);

}  // namespace vigil::policy
