#pragma once

// The agent's BPF programs (the vigil_bpf skeleton) behind an owner that cannot be copied.
// create() opens, sizes, loads and attaches in that order, so nothing can be configured after
// load; destruction detaches every program and frees every map.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "policy/exec_rules.hpp"

struct vigil_bpf;  // generated skeleton, only ever included by agent/src/bpf/*.cpp
struct bpf_object;
struct bpf_map;
struct btf;

namespace vigil::bpf {

struct LoadOptions {
  // Size of the vigil_events ring buffer in bytes: a power of two, a multiple of the page size.
  uint32_t ringBufferBytes = 8u << 20;
  // Bytes that wait in the ring buffer before the kernel wakes the reader; 0 wakes it for
  // every record. The reader also drains the buffer on a timer (RingReader).
  uint64_t wakeupBytes = 0;
  // Load the BPF-LSM exec program (deny with EPERM). Only where the probe found BPF-LSM usable.
  bool useLsm = false;
};

struct ProgramInfo {
  std::string name;
  std::string type;
  std::string attachTo;
  uint32_t id = 0;
};

class Skeleton {
 public:
  static Expected<std::unique_ptr<Skeleton>> create(const LoadOptions& options);
  ~Skeleton();
  Skeleton(const Skeleton&) = delete;
  Skeleton& operator=(const Skeleton&) = delete;

  int eventsMapFd() const;
  // Every per-CPU counter of enum vigil_stat, summed over CPUs, indexed by stat id.
  Expected<std::vector<uint64_t>> readStats() const;
  std::vector<ProgramInfo> programs() const;

  // Writes compiled exec rules into the inactive generation of the policy maps, flips the
  // active generation in one update, waits until no program can still be using the old one,
  // then deletes it. freshSlots get their hit counters reset.
  Status applyExecRules(const policy::CompiledRules& rules, const std::vector<uint32_t>& freshSlots);
  // Hit counters of the rule slots in use (the words of the last rule set), summed over CPUs.
  Expected<std::vector<uint64_t>> readRuleHits() const;
  // The generation execs are matched against now.
  uint32_t policyGeneration() const { return gen_; }

 private:
  explicit Skeleton(vigil_bpf* skel) : skel_(skel) {}
  Status deleteGeneration(uint32_t gen);
  vigil_bpf* skel_;
  uint32_t gen_ = 0;
  bool rulesActive_ = false;
  uint32_t slotsInUse_ = 0;  // 64 * nwords of the rule set in force
  int barrierInnerFd_ = -1;
};

// The loaded programs of a BPF object, with their section's type and target.
std::vector<ProgramInfo> programsOf(bpf_object* obj);
// Whether the running kernel's BTF has a type of that name and BTF_KIND_*, e.g.
// ("btf_trace_kfree_skb", BTF_KIND_TYPEDEF): how the data paths tell which hooks a kernel has.
// Loads vmlinux BTF on each call: ask for several names with the list form.
bool kernelHasTypes(const std::vector<std::pair<const char*, int>>& names,
                    std::vector<bool>* found);

// Calls fn with the running kernel's BTF, loaded once for all of fn's questions; false (fn not
// called) when the kernel has none.
bool withVmlinuxBtf(const std::function<void(const ::btf*)>& fn);
// How many arguments the kernel's tracepoint `name` (e.g. "sched_process_exit") passes to a
// tp_btf program, from its btf_trace_<name> prototype; -1 when the tracepoint is missing.
int tracepointArgCount(const ::btf* vmlinux, const std::string& name);

// entries consecutive u64 per-CPU counters (keys 0..entries-1 of a per-CPU array), summed.
Expected<std::vector<uint64_t>> sumPerCpu(bpf_map* map, uint32_t entries, const char* what);

// Which process holds a BPF program (or a link to it), from /proc/*/fdinfo:
// "pid 812 (xdp-loader)", or empty when no process does.
std::string programHolder(uint32_t progId);

// Name of stat id i ("exec_lost_ringbuf_full", ...), from the shared ABI header.
const char* statName(size_t id);
size_t statCount();

// Routes libbpf's own messages to the agent log (warnings and up, or everything at debug).
void installLibbpfLogger();

}  // namespace vigil::bpf
