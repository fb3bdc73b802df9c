#pragma once

// Raw ring buffer records decoded into plain C++ values. Pure: no I/O, no kernel.

#include <cstdint>
#include <span>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/error.hpp"

namespace vigil::events {

struct ExecRecord {
  uint64_t ktimeNs = 0;
  uint32_t pid = 0, tid = 0, ppid = 0, uid = 0, gid = 0, euid = 0;
  uint64_t cgroupId = 0;
  uint64_t procStartNs = 0;
  uint32_t flags = 0;
  uint16_t argc = 0;
  std::string comm;
  std::string path;
  std::vector<std::string> args;
  std::string cwd;
  std::string filename;  // only for interpreter execs
  std::string interp;    // only for interpreter execs
  uint32_t verdict = 0;  // enum vigil_policy_verdict
  uint32_t ruleSlot = 0;
  uint32_t ruleGen = 0;

  bool argsTruncated() const;
  bool pathTruncated() const;
  bool viaInterpreter() const;
};

struct ExitRecord {
  uint64_t ktimeNs = 0;
  uint32_t pid = 0, tid = 0, ppid = 0;
  uint32_t status = 0;  // wait-status form
  uint64_t cgroupId = 0;
  uint64_t procStartNs = 0;
  std::string comm;
  uint64_t peakRssPages = 0;
  // The RSS as it exited, where the kernel's tracepoint still sees the mm (6.16+).
  std::optional<uint64_t> rssPages;

  // Decoded from the wait status.
  int exitCode() const { return signal() == 0 ? static_cast<int>((status >> 8) & 0xff) : 0; }
  int signal() const { return static_cast<int>(status & 0x7f); }
  bool coreDumped() const { return (status & 0x80) != 0; }
};

struct ForkRecord {
  uint64_t ktimeNs = 0;
  uint32_t pid = 0, ppid = 0;
  uint64_t cgroupId = 0;
  uint64_t procStartNs = 0;
  std::string comm;
};

// An exec the BPF-LSM program denied with EPERM; the process goes on with its old program.
struct DeniedRecord {
  uint64_t ktimeNs = 0;
  uint32_t pid = 0, tid = 0, ppid = 0, uid = 0;
  uint64_t cgroupId = 0;
  uint32_t ruleSlot = 0, ruleGen = 0;
  std::string path;  // the file it tried to run
  std::string comm;
};

using Record = std::variant<ExecRecord, ExitRecord, ForkRecord, DeniedRecord>;

// The record type from the header, or 0 when the buffer is too short to hold one.
uint16_t peekType(std::span<const uint8_t> raw);

// Validates sizes, version and every length, then decodes. A truncated record, an unknown
// version or type, or lengths that do not add up give an Error that says which.
Expected<Record> decode(std::span<const uint8_t> raw);

// Splits NUL-separated argv bytes. A last argument without its NUL (cut by truncation) is kept.
std::vector<std::string> splitArgs(std::string_view bytes);

}  // namespace vigil::events
