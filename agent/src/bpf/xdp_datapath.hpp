#pragma once

// The XDP packet filter in the kernel: the vigil_xdp skeleton, its pins in bpffs and its
// links on interfaces. Enforcement outlives the agent: maps are pinned under
// <pinDir>/xdp/maps, each interface's attachment is a pinned link under <pinDir>/xdp/links,
// and destroying this object leaves both in place. The next agent adopts them: it reuses the
// pinned maps (rule sets, counters, rate-limit buckets, drop-record ring) and swaps its own
// program into each pinned link atomically. Only removeAll() (a policy set without XDP rules)
// and cleanup() (vigil-agent --cleanup) take enforcement away.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "policy/xdp_rules.hpp"

struct vigil_xdp;  // generated skeleton, only ever included by agent/src/bpf/*.cpp

namespace vigil::bpf {

struct XdpOptions {
  // bpffs directory of the agent's pins; XDP uses <pinDir>/xdp. Empty: pin nothing (benchmarks
  // and data-path tests that must leave no trace and need no restart).
  std::string pinDir = "/sys/fs/bpf/vigil";
  uint32_t ringBufferBytes = 1u << 20;  // drop records; power of two, page multiple
  uint32_t samplesPerSecond = 100;      // drop records per rule per second (all CPUs)
  uint32_t bucketEntries = 65536;       // rate-limit buckets (LRU)
  bool force = false;                   // replace another program's XDP attachment
  // false: load and fill the maps but never attach to an interface (BPF_PROG_TEST_RUN users).
  bool attach = true;
};

struct XdpAttachment {
  std::string ifname;
  uint32_t ifindex = 0;
  std::string mode;  // "native" or "generic"
  uint32_t linkId = 0;
};

struct XdpRuleCounters {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t limitedPackets = 0;
  uint64_t limitedBytes = 0;
};

struct AdoptedSlot {
  uint32_t slot = 0;
  std::string policy;
  std::string rule;
};

class XdpDataPath {
 public:
  static Expected<std::unique_ptr<XdpDataPath>> open(const XdpOptions& options);
  ~XdpDataPath();
  XdpDataPath(const XdpDataPath&) = delete;
  XdpDataPath& operator=(const XdpDataPath&) = delete;

  // True when pins of an earlier agent were found and adopted.
  bool adopted() const { return adopted_; }
  // Rule slots the earlier agent had named (to keep their counters), when adopted.
  std::vector<AdoptedSlot> adoptedSlots() const;

  // Puts a rule set into force in one step (see xdp.h), then attaches to the interfaces it
  // needs and detaches from the others. An empty rule set detaches everything and removes the
  // pins. freshSlots get their counters reset.
  Status apply(const policy::CompiledXdp& rules, const std::vector<uint32_t>& freshSlots);
  // For rule sets that apply on every non-loopback interface: attaches to interfaces that
  // appeared since, forgets ones that are gone. Cheap when nothing changed.
  Status refreshInterfaces();

  std::vector<XdpAttachment> attachments() const;
  // Counters of the slots of the rule set in force, summed over CPUs.
  Expected<std::map<uint32_t, XdpRuleCounters>> readCounters() const;
  // enum vigil_xdp_stat, summed over CPUs.
  Expected<std::vector<uint64_t>> readStats() const;
  static const char* statName(size_t id);

  int programFd() const;
  int eventsMapFd() const;
  uint32_t programId() const;

  // Detaches every interface and removes every pin (and the pin directory).
  Status removeAll();
  // vigil-agent --cleanup: the same, for an agent that is not running.
  static Status cleanup(const std::string& pinDir);

 private:
  XdpDataPath() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool adopted_ = false;
};

}  // namespace vigil::bpf
