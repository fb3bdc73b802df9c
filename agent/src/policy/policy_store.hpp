#pragma once

// Every policy in force, where it came from, and what became of its last update. Policies come
// from a watched directory (a mounted ConfigMap) and from the API; each change is validated,
// compiled together with everything else and applied whole, or rejected with the previous
// version left in force.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "policy/document.hpp"
#include "policy/exec_rules.hpp"
#include "policy/xdp_rules.hpp"

namespace vigil::policy {

struct PolicyInfo {
  std::string name;
  std::string source;  // "api" or "file:PATH"
  std::optional<Policy> policy;  // the version in force, if any
  std::string error;             // why the newest version was rejected
  std::map<std::string, uint32_t> ruleSlots;     // exec rule name -> slot
  std::map<std::string, uint32_t> xdpRuleSlots;  // XDP rule name -> slot
};

struct ApplyOutcome {
  std::vector<std::string> names;
  std::vector<std::string> warnings;
};

class PolicyStore {
 public:
  // Puts compiled rules into force (the kernel maps); freshSlots need zeroed counters.
  using ApplyFn = std::function<Status(const CompiledRules&, const std::vector<uint32_t>&)>;

  // Puts compiled XDP rules into force; called only when they changed.
  using XdpApplyFn = std::function<Status(const CompiledXdp&, const std::vector<uint32_t>&)>;

  PolicyStore(Resolver resolver, ApplyFn apply);
  // With XDP rules: interfaces are looked up through xdpResolver.
  PolicyStore(Resolver resolver, ApplyFn apply, XdpResolver xdpResolver, XdpApplyFn xdpApply);

  // XDP rule slots an earlier agent left in the kernel (after a restart), so that rules keep
  // their slots and counters. Before the first apply.
  void adoptXdpSlots(const std::vector<std::tuple<std::string, std::string, uint32_t>>& slots);

  // vigil policy apply: all documents or none. Errors are "source:line:col: message" lines.
  Expected<ApplyOutcome> applyText(const std::string& text, const std::string& sourceName);
  // vigil policy delete: API policies only.
  Status remove(const std::string& name);

  // Reads every policy file of dir (following the symlinks a ConfigMap mount uses, skipping
  // dot-files and the ..data machinery) and applies what changed. A file that fails keeps its
  // previous policies in force, marked with the error.
  void syncDirectory(const std::string& dir);
  // Re-resolves binaries and cgroups; re-applies when one changed (a package upgrade gives a
  // binary a new inode, a recreated pod a new cgroup id). When that re-apply fails, the rules
  // in force stay and every policy shows the error.
  void refreshIdentities();

  std::vector<PolicyInfo> list() const;
  // The rule a kernel slot belongs to, for policy events.
  std::optional<RuleRef> ruleOf(uint32_t slot) const;
  std::optional<XdpRuleRef> xdpRuleOf(uint32_t slot) const;
  // Whether some file or API policy is rejected right now.
  bool anyRejected() const;

 private:
  struct Entry {
    Policy policy;
    std::string source;
  };
  struct FileState {
    std::string content;             // as last read
    std::vector<std::string> names;  // policies it has in force
    std::string error;
    // Rejected for a reason outside the file itself (a conflict with another source, a
    // missing binary, the kernel): read and tried again on the next pass even if unchanged.
    bool retry = false;
  };
  // Compiles `candidate` and applies it; on success it becomes the state.
  Status commit(std::map<std::string, Entry> candidate, std::vector<std::string>* warnings);
  // What each named binary and cgroup of the policies in force resolves to now.
  std::map<std::string, std::string> resolveIdentities() const;

  Resolver resolver_;
  ApplyFn apply_;
  XdpResolver xdpResolver_;
  XdpApplyFn xdpApply_;
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;        // guarded by mutex_
  std::map<std::string, FileState> files_;      // guarded by mutex_, by path
  std::map<std::string, std::string> apiErrors_;  // guarded by mutex_
  SlotTable slots_;                             // guarded by mutex_
  CompiledRules compiled_;                      // guarded by mutex_
  SlotTable xdpSlots_{VIGIL_XDP_MAX_RULES};     // guarded by mutex_
  CompiledXdp compiledXdp_;                     // guarded by mutex_
  std::map<std::string, std::string> identities_;  // guarded by mutex_, see resolveIdentities
  std::string refreshError_;                       // guarded by mutex_
};

}  // namespace vigil::policy
