#pragma once

// Exec rules -> the contents of the kernel's policy maps (see bpf/abi/vigil/policy.h). Pure:
// files and cgroups are looked up through a Resolver, so this is unit-tested without a kernel.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <vigil/policy.h>

#include "policy/document.hpp"
#include "policy/model.hpp"

namespace vigil::policy {

// A file as the kernel knows it: superblock dev_t (MAJOR << 20 | MINOR) and inode number.
struct FileId {
  uint32_t dev = 0;
  uint64_t ino = 0;
  auto operator<=>(const FileId&) const = default;
};

using Bitmap = std::array<uint64_t, VIGIL_RULE_WORDS>;

struct Resolver {
  // The identity of the file at an absolute path (symlinks followed), or nothing.
  std::function<std::optional<FileId>(const std::string& path)> file;
  // The id of a cgroup v2 directory given as a path from the hierarchy's root, or nothing.
  std::function<std::optional<uint64_t>(const std::string& cgroupPath)> cgroup;
};

// stat() on the host: st_dev converted to the kernel's encoding.
std::optional<FileId> statFile(const std::string& path);

// Looks files and cgroups up on this host (cgroup v2 found through /proc/self/mountinfo).
Resolver hostResolver();

struct RuleRef {
  std::string policy;
  std::string rule;
  ExecAction action = ExecAction::kill;
  Mode mode = Mode::enforce;
};

struct CompiledRules {
  std::map<uint32_t, RuleRef> slots;  // every rule by slot (its bit)
  uint32_t nwords = 0;
  Bitmap anyBinary{}, anyPrefix{}, anyParent{}, anyUid{}, anyCgroup{}, kill{};
  std::map<FileId, Bitmap> binaries;
  std::map<FileId, Bitmap> parents;
  std::map<uint32_t, Bitmap> uids;
  std::map<std::string, Bitmap> prefixes;  // each holds the rules of every shorter prefix too
  std::map<uint64_t, Bitmap> cgroups;      // each holds the rules of every rule cgroup above
  bool empty() const { return slots.empty(); }
};

// Slots stay with a rule (policy/rule name) across recompiles, so that its kernel hit counter
// keeps counting; a slot freed by a deleted rule is reused later. Exec and XDP rules each have
// their own table (and kernel counter map).
class SlotTable {
 public:
  explicit SlotTable(uint32_t capacity = VIGIL_MAX_EXEC_RULES) : used_(capacity, false) {}
  // The slot of policy/rule, allocating one if needed; nothing when all are taken.
  std::optional<uint32_t> slotFor(const std::string& policy, const std::string& rule);
  // Records that policy/rule owns slot (read back from the kernel after a restart), so that
  // its counters carry on. Not "fresh": the counters are kept.
  void adopt(const std::string& policy, const std::string& rule, uint32_t slot);
  // Frees every slot not in keep; returns the slots that were allocated since the last call
  // (their counters must start from zero).
  template <typename V>
  std::vector<uint32_t> commit(const std::map<uint32_t, V>& keep) {
    std::vector<bool> k(used_.size(), false);
    for (const auto& entry : keep) {
      if (entry.first < k.size()) k[entry.first] = true;
    }
    return commitKeeping(k);
  }
  uint32_t capacity() const { return static_cast<uint32_t>(used_.size()); }

 private:
  std::vector<uint32_t> commitKeeping(const std::vector<bool>& keep);
  std::map<std::string, uint32_t> byName_;
  std::vector<bool> used_;  // by slot
  uint32_t cursor_ = 0;     // where the search for a free slot starts
  std::vector<uint32_t> fresh_;
};

struct CompileResult {
  CompiledRules rules;
  std::vector<ParseIssue> errors;    // nothing may be applied when there are any
  std::vector<ParseIssue> warnings;  // e.g. a missing binary in an audit-mode rule
};

CompileResult compileExecRules(const std::vector<const Policy*>& policies, SlotTable& slots,
                               const Resolver& resolver);

}  // namespace vigil::policy
