#pragma once

// Memory accounting as kernel state: the vigil_mem object's task iterator, read on demand (a
// snapshot of every process's RSS counters, no cost per page fault), and its OOM-kill program
// feeding a ring buffer.

#include <vigil/mem.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bpf/skeleton.hpp"
#include "common/error.hpp"

struct bpf_link;
struct vigil_mem;  // generated skeleton, only ever included by agent/src/bpf/*.cpp

namespace vigil::bpf {

struct MemSnapshot {
  std::vector<vigil_mem_task> tasks;
  uint64_t bytesRead = 0;
};

class MemDataPath {
 public:
  // Loads the iterator and attaches it; the OOM program too where the kernel has the
  // tracepoint (oomUnavailable() says why not). Errors say what failed.
  static Expected<std::unique_ptr<MemDataPath>> open();
  ~MemDataPath();
  MemDataPath(const MemDataPath&) = delete;
  MemDataPath& operator=(const MemDataPath&) = delete;

  // Runs the iterator once: every process with an mm, thread-group leaders only. Safe to call
  // from several threads (each read is its own iterator instance).
  Expected<MemSnapshot> snapshot() const;

  int oomRingFd() const;  // -1 without the OOM program
  const std::string& oomUnavailable() const { return oomUnavailable_; }
  // True where the kernel's counters are exact atomics (before 6.2); false where they are
  // per-CPU counters read as their global counts (up to a batch of pages per CPU behind).
  bool exact() const { return exact_; }
  // True where the exit tracepoint runs before the mm is released (6.16+): exit events then
  // carry the RSS at exit, not only the peak.
  bool exitHasRss() const { return exitHasRss_; }
  Expected<std::vector<uint64_t>> stats() const;
  static const char* statName(size_t id);
  std::vector<ProgramInfo> programs() const;

 private:
  MemDataPath() = default;
  vigil_mem* skel_ = nullptr;
  ::bpf_link* iterLink_ = nullptr;
  ::bpf_link* oomLink_ = nullptr;
  std::string oomUnavailable_;
  bool exact_ = false;
  bool exitHasRss_ = false;
};

}  // namespace vigil::bpf
