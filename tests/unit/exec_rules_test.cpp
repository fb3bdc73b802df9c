// Exec rules -> kernel map contents (bpf/abi/vigil/policy.h): the "any" bitmaps, the kill bitmap,
// prefix and cgroup closure, unresolvable values, and slot bookkeeping. Files and cgroups are
// resolved through a fake host, so no kernel and no real files are involved.

#include "fake_host.hpp"
#include "policy/exec_rules.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "policy/document.hpp"
#include "policy/model.hpp"

namespace vigil::policy {
namespace {

constexpr const char* kFile = "exec.yaml";

using testing::FakeHost;

constexpr FileId kSh{8, 100};
constexpr FileId kBash{8, 101};
constexpr FileId kNginx{8, 200};

FakeHost standardHost() {
  FakeHost host;
  host.files["/bin/sh"] = kSh;
  host.files["/bin/bash"] = kBash;
  host.files["/usr/sbin/nginx"] = kNginx;
  host.cgroups["/"] = 1;
  host.cgroups["/kubepods.slice"] = 10;
  host.cgroups["/kubepods.slice/burstable.slice"] = 11;
  host.cgroups["/kubepods.slice/burstable.slice/pod1.slice"] = 12;
  host.cgroups["/kubepods.slice-other"] = 13;
  host.cgroups["/system.slice"] = 20;
  return host;
}

// The slots whose bits are set, so that failures print something readable.
std::set<uint32_t> bitsOf(const Bitmap& b) {
  std::set<uint32_t> out;
  for (uint32_t s = 0; s < VIGIL_MAX_EXEC_RULES; s++) {
    if (b[s / 64] & (1ULL << (s % 64))) out.insert(s);
  }
  return out;
}

template <typename K>
std::set<uint32_t> bitsAt(const std::map<K, Bitmap>& m, const K& key) {
  auto it = m.find(key);
  return it == m.end() ? std::set<uint32_t>{} : bitsOf(it->second);
}

// Every key of a value->bitmap map whose bitmap holds `slot`.
template <typename K>
size_t entriesWith(const std::map<K, Bitmap>& m, uint32_t slot) {
  size_t n = 0;
  for (const auto& [_, b] : m) n += bitsOf(b).count(slot);
  return n;
}

uint32_t slotOf(const CompiledRules& c, const std::string& policy, const std::string& rule) {
  for (const auto& [slot, ref] : c.slots) {
    if (ref.policy == policy && ref.rule == rule) return slot;
  }
  ADD_FAILURE() << "no slot for " << policy << "/" << rule;
  return VIGIL_MAX_EXEC_RULES;
}

std::vector<Policy> parse(const std::string& text) {
  ParseResult r = parsePolicies(text, kFile);
  EXPECT_TRUE(r.ok()) << r.errorText();
  return r.policies;
}

std::vector<const Policy*> pointers(const std::vector<Policy>& policies) {
  std::vector<const Policy*> out;
  for (const auto& p : policies) out.push_back(&p);
  return out;
}

std::string issuesText(const std::vector<ParseIssue>& issues) {
  std::string out;
  for (const auto& i : issues) out += i.str() + "\n";
  return out;
}

// A policy built in code: `n` kill rules named r0..r<n-1>, each on its own uid.
Policy generatedPolicy(const std::string& name, size_t n) {
  Policy p;
  p.name = name;
  for (size_t i = 0; i < n; i++) {
    ExecRule r;
    r.name = "r" + std::to_string(i);
    r.action = ExecAction::kill;
    r.match.uids = {static_cast<uint32_t>(i)};
    p.exec.push_back(std::move(r));
  }
  return p;
}

TEST(ExecRules, EachRuleIsInTheAnyBitmapOfEveryDimensionItDoesNotConstrain) {
  FakeHost host = standardHost();
  auto policies = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: dims
spec:
  exec:
    - name: bin
      action: kill
      match:
        binaries: [/bin/sh]
    - name: pfx
      action: kill
      match:
        pathPrefixes: [/tmp/]
    - name: par
      action: kill
      match:
        parentBinaries: [/usr/sbin/nginx]
    - name: uid
      action: kill
      match:
        uids: [1000]
    - name: cg
      action: kill
      match:
        cgroupPathPrefixes: [/kubepods.slice]
    - name: two
      action: kill
      match:
        binaries: [/bin/bash]
        uids: [0]
)");
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_TRUE(r.errors.empty()) << issuesText(r.errors);
  EXPECT_TRUE(r.warnings.empty()) << issuesText(r.warnings);
  const CompiledRules& c = r.rules;
  ASSERT_EQ(c.slots.size(), 6u);
  const uint32_t bin = slotOf(c, "dims", "bin"), pfx = slotOf(c, "dims", "pfx"),
                 par = slotOf(c, "dims", "par"), uid = slotOf(c, "dims", "uid"),
                 cg = slotOf(c, "dims", "cg"), two = slotOf(c, "dims", "two");
  EXPECT_EQ(std::set<uint32_t>({bin, pfx, par, uid, cg, two}).size(), 6u) << "slots must differ";

  EXPECT_EQ(bitsOf(c.anyBinary), std::set<uint32_t>({pfx, par, uid, cg}));
  EXPECT_EQ(bitsOf(c.anyPrefix), std::set<uint32_t>({bin, par, uid, cg, two}));
  EXPECT_EQ(bitsOf(c.anyParent), std::set<uint32_t>({bin, pfx, uid, cg, two}));
  EXPECT_EQ(bitsOf(c.anyUid), std::set<uint32_t>({bin, pfx, par, cg}));
  EXPECT_EQ(bitsOf(c.anyCgroup), std::set<uint32_t>({bin, pfx, par, uid, two}));

  EXPECT_EQ(c.binaries.size(), 2u);
  EXPECT_EQ(bitsAt(c.binaries, kSh), std::set<uint32_t>({bin}));
  EXPECT_EQ(bitsAt(c.binaries, kBash), std::set<uint32_t>({two}));
  EXPECT_EQ(c.prefixes.size(), 1u);
  EXPECT_EQ(bitsAt(c.prefixes, std::string("/tmp/")), std::set<uint32_t>({pfx}));
  EXPECT_EQ(c.parents.size(), 1u);
  EXPECT_EQ(bitsAt(c.parents, kNginx), std::set<uint32_t>({par}));
  EXPECT_EQ(c.uids.size(), 2u);
  EXPECT_EQ(bitsAt(c.uids, 1000u), std::set<uint32_t>({uid}));
  EXPECT_EQ(bitsAt(c.uids, 0u), std::set<uint32_t>({two}));
  EXPECT_EQ(c.cgroups.size(), 1u);
  EXPECT_EQ(bitsAt(c.cgroups, uint64_t{10}), std::set<uint32_t>({cg}));
}

TEST(ExecRules, KillBitmapHoldsOnlyKillRulesInEnforceMode) {
  FakeHost host = standardHost();
  auto policies = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: enforcing
spec:
  exec:
    - name: kill-enforce
      action: kill
      match:
        uids: [1]
    - name: kill-audit
      action: kill
      mode: audit
      match:
        uids: [2]
    - name: audit-action
      action: audit
      match:
        uids: [3]
---
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: auditing
spec:
  mode: audit
  exec:
    - name: kill-inherits-audit
      action: kill
      match:
        uids: [4]
    - name: kill-overrides-enforce
      action: kill
      mode: enforce
      match:
        uids: [5]
    - name: audit-overrides-enforce
      action: audit
      mode: enforce
      match:
        uids: [6]
)");
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_TRUE(r.errors.empty()) << issuesText(r.errors);
  const CompiledRules& c = r.rules;
  ASSERT_EQ(c.slots.size(), 6u);
  EXPECT_EQ(bitsOf(c.kill), std::set<uint32_t>({slotOf(c, "enforcing", "kill-enforce"),
                                                slotOf(c, "auditing", "kill-overrides-enforce")}));

  // The rule references carry the effective mode, for events.
  const auto& ref = c.slots.at(slotOf(c, "auditing", "kill-inherits-audit"));
  EXPECT_EQ(ref.action, ExecAction::kill);
  EXPECT_EQ(ref.mode, Mode::audit);
  const auto& ref2 = c.slots.at(slotOf(c, "auditing", "kill-overrides-enforce"));
  EXPECT_EQ(ref2.mode, Mode::enforce);
  const auto& ref3 = c.slots.at(slotOf(c, "enforcing", "audit-action"));
  EXPECT_EQ(ref3.action, ExecAction::audit);
  EXPECT_EQ(ref3.mode, Mode::enforce);
}

TEST(ExecRules, LongerPrefixesCarryTheRulesOfShorterOnesNotTheOtherWayRound) {
  FakeHost host = standardHost();
  auto policies = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: prefixes
spec:
  exec:
    - name: tmp
      action: kill
      match:
        pathPrefixes: [/tmp/]
    - name: tmp-a
      action: audit
      match:
        pathPrefixes: [/tmp/a/]
    - name: tmp-bare
      action: audit
      match:
        pathPrefixes: [/tmp]
    - name: var
      action: kill
      match:
        pathPrefixes: [/var/, /tmp/a/b/]
)");
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_TRUE(r.errors.empty()) << issuesText(r.errors);
  const CompiledRules& c = r.rules;
  const uint32_t tmp = slotOf(c, "prefixes", "tmp"), tmpA = slotOf(c, "prefixes", "tmp-a"),
                 bare = slotOf(c, "prefixes", "tmp-bare"), var = slotOf(c, "prefixes", "var");
  ASSERT_EQ(c.prefixes.size(), 5u);
  // "/tmp" is a plain string prefix of all the /tmp entries (docs/policy.md: /tmp matches
  // /tmpfoo too), so it is carried into each of them.
  EXPECT_EQ(bitsAt(c.prefixes, std::string("/tmp")), std::set<uint32_t>({bare}));
  EXPECT_EQ(bitsAt(c.prefixes, std::string("/tmp/")), std::set<uint32_t>({bare, tmp}));
  EXPECT_EQ(bitsAt(c.prefixes, std::string("/tmp/a/")), std::set<uint32_t>({bare, tmp, tmpA}));
  EXPECT_EQ(bitsAt(c.prefixes, std::string("/tmp/a/b/")),
            std::set<uint32_t>({bare, tmp, tmpA, var}));
  EXPECT_EQ(bitsAt(c.prefixes, std::string("/var/")), std::set<uint32_t>({var}));
}

TEST(ExecRules, CgroupsCarryTheRulesOfRuleCgroupsAboveThem) {
  FakeHost host = standardHost();
  auto policies = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: cgroups
spec:
  exec:
    - name: pods
      action: kill
      match:
        cgroupPathPrefixes: [/kubepods.slice/]
    - name: pod1
      action: audit
      match:
        cgroupPathPrefixes: [/kubepods.slice/burstable.slice/pod1.slice]
    - name: sibling
      action: audit
      match:
        cgroupPathPrefixes: [/kubepods.slice-other, /system.slice]
    - name: root
      action: audit
      match:
        cgroupPathPrefixes: [/]
)");
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_TRUE(r.errors.empty()) << issuesText(r.errors);
  const CompiledRules& c = r.rules;
  const uint32_t pods = slotOf(c, "cgroups", "pods"), pod1 = slotOf(c, "cgroups", "pod1"),
                 sibling = slotOf(c, "cgroups", "sibling"), root = slotOf(c, "cgroups", "root");
  // Only cgroups named by rules get entries; the kernel finds the nearest one above an exec.
  ASSERT_EQ(c.cgroups.size(), 5u);
  EXPECT_EQ(bitsAt(c.cgroups, uint64_t{1}), std::set<uint32_t>({root}));
  // A trailing '/' names the same cgroup.
  EXPECT_EQ(bitsAt(c.cgroups, uint64_t{10}), std::set<uint32_t>({root, pods}));
  EXPECT_EQ(bitsAt(c.cgroups, uint64_t{12}), std::set<uint32_t>({root, pods, pod1}));
  // A sibling whose name merely starts with "kubepods.slice" is not below it.
  EXPECT_EQ(bitsAt(c.cgroups, uint64_t{13}), std::set<uint32_t>({root, sibling}));
  EXPECT_EQ(bitsAt(c.cgroups, uint64_t{20}), std::set<uint32_t>({root, sibling}));
  EXPECT_EQ(bitsAt(c.cgroups, uint64_t{11}), std::set<uint32_t>{}) << "no rule names it";
}

TEST(ExecRules, UidsMapEachUidToTheRulesThatListIt) {
  FakeHost host = standardHost();
  auto policies = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: uids
spec:
  exec:
    - name: root-and-web
      action: kill
      match:
        uids: [0, 33]
    - name: root
      action: audit
      match:
        uids: [0]
    - name: max
      action: audit
      match:
        uids: [4294967294]
)");
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_TRUE(r.errors.empty()) << issuesText(r.errors);
  const CompiledRules& c = r.rules;
  const uint32_t both = slotOf(c, "uids", "root-and-web"), root = slotOf(c, "uids", "root"),
                 max = slotOf(c, "uids", "max");
  ASSERT_EQ(c.uids.size(), 3u);
  EXPECT_EQ(bitsAt(c.uids, 0u), std::set<uint32_t>({both, root}));
  EXPECT_EQ(bitsAt(c.uids, 33u), std::set<uint32_t>({both}));
  EXPECT_EQ(bitsAt(c.uids, 4294967294u), std::set<uint32_t>({max}));
  EXPECT_EQ(bitsOf(c.anyUid), std::set<uint32_t>{});
}

TEST(ExecRules, TwoPathsToOneFileShareItsEntry) {
  FakeHost host = standardHost();
  host.files["/usr/bin/sh"] = kSh;  // a hard link, or a symlink that stat() follows
  auto policies = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: links
spec:
  exec:
    - name: a
      action: kill
      match:
        binaries: [/bin/sh]
    - name: b
      action: kill
      match:
        binaries: [/usr/bin/sh]
)");
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_TRUE(r.errors.empty()) << issuesText(r.errors);
  ASSERT_EQ(r.rules.binaries.size(), 1u);
  EXPECT_EQ(bitsAt(r.rules.binaries, kSh),
            std::set<uint32_t>({slotOf(r.rules, "links", "a"), slotOf(r.rules, "links", "b")}));
}

// Line 13 holds "/opt/missing", line 16 "/opt/missing-parent"; both start in column 13.
std::string missingBinariesPolicy(const std::string& policyMode, const std::string& action) {
  return R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: missing
spec:
  mode: )" +
         policyMode + R"(
  exec:
    - name: shells
      action: )" +
         action + R"(
      match:
        binaries:
          - /bin/sh
          - /opt/missing
        parentBinaries:
          - /usr/sbin/nginx
          - /opt/missing-parent
)";
}

TEST(ExecRules, MissingBinaryOfAnEnforcedKillRuleIsAnErrorAtItsOwnPosition) {
  FakeHost host = standardHost();
  auto policies = parse(missingBinariesPolicy("enforce", "kill"));
  ASSERT_EQ(policies.size(), 1u);
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_EQ(r.errors.size(), 2u) << issuesText(r.errors);
  EXPECT_TRUE(r.warnings.empty()) << issuesText(r.warnings);
  EXPECT_EQ(r.errors[0].position.file, kFile);
  EXPECT_EQ(r.errors[0].position.line, 13);
  EXPECT_EQ(r.errors[0].position.column, 13);
  EXPECT_NE(r.errors[0].message.find("/opt/missing"), std::string::npos) << r.errors[0].str();
  EXPECT_EQ(r.errors[0].str().rfind("exec.yaml:13:13: ", 0), 0u) << r.errors[0].str();
  EXPECT_EQ(r.errors[1].position.line, 16);
  EXPECT_EQ(r.errors[1].position.column, 13);
  EXPECT_NE(r.errors[1].message.find("/opt/missing-parent"), std::string::npos);
  // Nothing may be applied.
  EXPECT_TRUE(r.rules.empty());
  EXPECT_TRUE(r.rules.binaries.empty());
  EXPECT_EQ(r.rules.nwords, 0u);
  EXPECT_EQ(bitsOf(r.rules.kill), std::set<uint32_t>{});
}

void expectWarnedAndNeverMatchesThroughMissingFiles(const std::string& policyMode,
                                                    const std::string& action) {
  FakeHost host = standardHost();
  auto policies = parse(missingBinariesPolicy(policyMode, action));
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_TRUE(r.errors.empty()) << issuesText(r.errors);
  ASSERT_EQ(r.warnings.size(), 2u) << issuesText(r.warnings);
  EXPECT_EQ(r.warnings[0].str().rfind("exec.yaml:13:13: ", 0), 0u) << r.warnings[0].str();
  EXPECT_NE(r.warnings[0].message.find("/opt/missing"), std::string::npos);
  EXPECT_EQ(r.warnings[1].str().rfind("exec.yaml:16:13: ", 0), 0u) << r.warnings[1].str();
  const CompiledRules& c = r.rules;
  const uint32_t s = slotOf(c, "missing", "shells");
  EXPECT_EQ(bitsOf(c.kill), std::set<uint32_t>{});
  // The files that exist still select the rule; the missing ones add nothing, and the rule is
  // not turned into "any binary".
  EXPECT_EQ(c.binaries.size(), 1u);
  EXPECT_EQ(bitsAt(c.binaries, kSh), std::set<uint32_t>({s}));
  EXPECT_EQ(bitsAt(c.parents, kNginx), std::set<uint32_t>({s}));
  EXPECT_EQ(bitsOf(c.anyBinary).count(s), 0u);
  EXPECT_EQ(bitsOf(c.anyParent).count(s), 0u);
}

TEST(ExecRules, MissingBinaryOfAnAuditModeKillRuleIsAWarning) {
  expectWarnedAndNeverMatchesThroughMissingFiles("audit", "kill");
}

TEST(ExecRules, MissingBinaryOfAnAuditActionRuleIsAWarning) {
  expectWarnedAndNeverMatchesThroughMissingFiles("enforce", "audit");
}

TEST(ExecRules, RuleWhoseOnlyBinaryIsMissingNeverMatches) {
  FakeHost host = standardHost();
  auto policies = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: gone
spec:
  mode: audit
  exec:
    - name: nc
      action: kill
      match:
        binaries: [/usr/bin/nc]
    - name: other
      action: kill
      match:
        uids: [0]
)");
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_TRUE(r.errors.empty()) << issuesText(r.errors);
  ASSERT_EQ(r.warnings.size(), 1u) << issuesText(r.warnings);
  EXPECT_EQ(r.warnings[0].position.line, 11);
  EXPECT_EQ(r.warnings[0].position.column, 20);
  const CompiledRules& c = r.rules;
  const uint32_t nc = slotOf(c, "gone", "nc");
  EXPECT_EQ(entriesWith(c.binaries, nc), 0u);
  EXPECT_EQ(bitsOf(c.anyBinary), std::set<uint32_t>({slotOf(c, "gone", "other")}));
  // The rule keeps its slot (and so its counter) while it waits for the file.
  EXPECT_EQ(c.slots.count(nc), 1u);
}

TEST(ExecRules, MissingCgroupIsAnErrorForEnforcedKillAndAWarningOtherwise) {
  FakeHost host = standardHost();
  const std::string text = R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: cg
spec:
  mode: MODE
  exec:
    - name: pod
      action: kill
      match:
        cgroupPathPrefixes: [/kubepods.slice/gone.slice]
)";
  auto withMode = [&](const std::string& mode) {
    std::string t = text;
    t.replace(t.find("MODE"), 4, mode);
    return t;
  };
  {
    auto policies = parse(withMode("enforce"));
    SlotTable slots;
    CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
    ASSERT_EQ(r.errors.size(), 1u) << issuesText(r.errors);
    EXPECT_NE(r.errors[0].message.find("/kubepods.slice/gone.slice"), std::string::npos);
    EXPECT_EQ(r.errors[0].position.file, kFile);
    EXPECT_GT(r.errors[0].position.line, 0);
    EXPECT_TRUE(r.rules.empty());
  }
  {
    auto policies = parse(withMode("audit"));
    SlotTable slots;
    CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
    ASSERT_TRUE(r.errors.empty()) << issuesText(r.errors);
    ASSERT_EQ(r.warnings.size(), 1u);
    const uint32_t s = slotOf(r.rules, "cg", "pod");
    EXPECT_EQ(entriesWith(r.rules.cgroups, s), 0u);
    EXPECT_EQ(bitsOf(r.rules.anyCgroup).count(s), 0u);
  }
}

TEST(ExecRules, PrefixLongerThanAKernelKeyIsAnError) {
  FakeHost host = standardHost();
  std::vector<Policy> policies(1);
  policies[0].name = "long";
  ExecRule rule;
  rule.name = "r";
  rule.match.pathPrefixes = {"/" + std::string(VIGIL_PREFIX_MAX - 1, 'a'),
                             "/" + std::string(VIGIL_PREFIX_MAX, 'b')};
  policies[0].exec.push_back(rule);
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_EQ(r.errors.size(), 1u) << issuesText(r.errors);
  EXPECT_NE(r.errors[0].message.find("bbb"), std::string::npos) << r.errors[0].message;
  EXPECT_TRUE(r.rules.empty());
}

TEST(ExecRules, SlotsStayWithTheirRulesAndFreedSlotsAreReusedAsFresh) {
  FakeHost host = standardHost();
  auto p1 = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: p
spec:
  exec:
    - {name: r1, action: kill, match: {uids: [1]}}
    - {name: r2, action: kill, match: {uids: [2]}}
    - {name: r3, action: kill, match: {uids: [3]}}
)");
  SlotTable slots;
  CompileResult first = compileExecRules(pointers(p1), slots, host.resolver());
  ASSERT_TRUE(first.errors.empty()) << issuesText(first.errors);
  const uint32_t r1 = slotOf(first.rules, "p", "r1"), r2 = slotOf(first.rules, "p", "r2"),
                 r3 = slotOf(first.rules, "p", "r3");
  std::vector<uint32_t> fresh = slots.commit(first.rules.slots);
  EXPECT_EQ(std::set<uint32_t>(fresh.begin(), fresh.end()), std::set<uint32_t>({r1, r2, r3}));

  // The same rules again: same slots, nothing fresh.
  CompileResult again = compileExecRules(pointers(p1), slots, host.resolver());
  EXPECT_EQ(slotOf(again.rules, "p", "r1"), r1);
  EXPECT_EQ(slotOf(again.rules, "p", "r2"), r2);
  EXPECT_EQ(slotOf(again.rules, "p", "r3"), r3);
  EXPECT_TRUE(slots.commit(again.rules.slots).empty());

  // A new policy placed before p in the list does not move p's rules.
  auto p2 = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: a-first
spec:
  exec:
    - {name: x, action: audit, match: {uids: [9]}}
---
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: p
spec:
  exec:
    - {name: r1, action: kill, match: {uids: [1]}}
    - {name: r3, action: kill, match: {uids: [3]}}
)");
  CompileResult dropped = compileExecRules(pointers(p2), slots, host.resolver());
  ASSERT_TRUE(dropped.errors.empty()) << issuesText(dropped.errors);
  EXPECT_EQ(slotOf(dropped.rules, "p", "r1"), r1);
  EXPECT_EQ(slotOf(dropped.rules, "p", "r3"), r3);
  const uint32_t x = slotOf(dropped.rules, "a-first", "x");
  EXPECT_EQ(std::set<uint32_t>({r1, r2, r3, x}).size(), 4u) << "r2 was still held while compiling";
  EXPECT_EQ(dropped.rules.slots.count(r2), 0u);
  fresh = slots.commit(dropped.rules.slots);
  EXPECT_EQ(fresh, std::vector<uint32_t>({x}));

  // r2 is gone now: its slot goes to the next new rule, which must start counting from zero.
  auto p3 = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: p
spec:
  exec:
    - {name: r1, action: kill, match: {uids: [1]}}
    - {name: r3, action: kill, match: {uids: [3]}}
    - {name: r4, action: kill, match: {uids: [4]}}
)");
  CompileResult reused = compileExecRules(pointers(p3), slots, host.resolver());
  ASSERT_TRUE(reused.errors.empty()) << issuesText(reused.errors);
  EXPECT_EQ(slotOf(reused.rules, "p", "r4"), r2);
  EXPECT_EQ(slotOf(reused.rules, "p", "r1"), r1);
  EXPECT_EQ(slotOf(reused.rules, "p", "r3"), r3);
  fresh = slots.commit(reused.rules.slots);
  EXPECT_EQ(fresh, std::vector<uint32_t>({r2}));
}

TEST(ExecRules, SlotsHandedOutForARejectedCompileAreNotReportedFreshLater) {
  FakeHost host = standardHost();
  auto good = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: p
spec:
  exec:
    - {name: r1, action: kill, match: {uids: [1]}}
)");
  SlotTable slots;
  CompileResult first = compileExecRules(pointers(good), slots, host.resolver());
  const std::map<uint32_t, RuleRef> inForce = first.rules.slots;
  slots.commit(inForce);
  auto bad = parse(R"(apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: p
spec:
  exec:
    - {name: r1, action: kill, match: {uids: [1]}}
    - {name: r2, action: kill, match: {binaries: [/nope]}}
)");
  CompileResult rejected = compileExecRules(pointers(bad), slots, host.resolver());
  ASSERT_EQ(rejected.errors.size(), 1u);
  // What a caller does with a rejected compile: keep what is in force.
  EXPECT_TRUE(slots.commit(inForce).empty());
  CompileResult again = compileExecRules(pointers(good), slots, host.resolver());
  EXPECT_EQ(slotOf(again.rules, "p", "r1"), slotOf(first.rules, "p", "r1"));
  EXPECT_TRUE(slots.commit(again.rules.slots).empty());
}

TEST(ExecRules, NwordsCoversTheHighestSlotInUse) {
  FakeHost host = standardHost();
  SlotTable slots;
  {
    CompileResult r = compileExecRules({}, slots, host.resolver());
    EXPECT_TRUE(r.errors.empty());
    EXPECT_TRUE(r.rules.empty());
    EXPECT_EQ(r.rules.nwords, 0u);
  }
  std::vector<Policy> p64{generatedPolicy("p", 64)};
  CompileResult r64 = compileExecRules(pointers(p64), slots, host.resolver());
  ASSERT_TRUE(r64.errors.empty());
  EXPECT_EQ(r64.rules.nwords, 1u);
  slots.commit(r64.rules.slots);

  std::vector<Policy> p65{generatedPolicy("p", 65)};
  CompileResult r65 = compileExecRules(pointers(p65), slots, host.resolver());
  ASSERT_TRUE(r65.errors.empty());
  EXPECT_EQ(slotOf(r65.rules, "p", "r64"), 64u);
  EXPECT_EQ(r65.rules.nwords, 2u);
  EXPECT_EQ(bitsOf(r65.rules.kill).size(), 65u);
  slots.commit(r65.rules.slots);

  // Only the rule in slot 64 left: the kernel must still look at the second word.
  Policy last;
  last.name = "p";
  last.exec.push_back(p65[0].exec[64]);
  std::vector<Policy> pLast{last};
  CompileResult rLast = compileExecRules(pointers(pLast), slots, host.resolver());
  ASSERT_TRUE(rLast.errors.empty());
  EXPECT_EQ(rLast.rules.slots.size(), 1u);
  EXPECT_EQ(rLast.rules.slots.begin()->first, 64u);
  EXPECT_EQ(rLast.rules.nwords, 2u);
}

TEST(ExecRules, AllSlotsCanBeUsed) {
  FakeHost host = standardHost();
  std::vector<Policy> policies;
  for (int i = 0; i < 4; i++) policies.push_back(generatedPolicy("p" + std::to_string(i), 1024));
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_TRUE(r.errors.empty()) << r.errors.size() << " errors, first: " << r.errors[0].str();
  EXPECT_EQ(r.rules.slots.size(), size_t{VIGIL_MAX_EXEC_RULES});
  EXPECT_EQ(r.rules.nwords, uint32_t{VIGIL_RULE_WORDS});
  EXPECT_EQ(slotOf(r.rules, "p3", "r1023"), uint32_t{VIGIL_MAX_EXEC_RULES - 1});
}

TEST(ExecRules, MoreRulesThanSlotsAcrossPoliciesIsAnError) {
  FakeHost host = standardHost();
  std::vector<Policy> policies;
  // 4 * 1024 fill every slot; one more policy with a single rule is one too many.
  for (int i = 0; i < 4; i++) policies.push_back(generatedPolicy("p" + std::to_string(i), 1024));
  policies.push_back(generatedPolicy("straw", 1));
  policies.back().exec[0].position = Position{"straw.yaml", 7, 7};
  SlotTable slots;
  CompileResult r = compileExecRules(pointers(policies), slots, host.resolver());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].str().rfind("straw.yaml:7:7: ", 0), 0u) << r.errors[0].str();
  EXPECT_NE(r.errors[0].message.find("too many exec rules"), std::string::npos);
  EXPECT_NE(r.errors[0].message.find("4096"), std::string::npos);
  EXPECT_TRUE(r.rules.empty());
  EXPECT_EQ(r.rules.nwords, 0u);
}

// --- SlotTable on its own --------------------------------------------------------------------

// What commit() is given: the slots of the rules in force, by slot.
std::map<uint32_t, std::string> keep(std::initializer_list<uint32_t> slots) {
  std::map<uint32_t, std::string> out;
  for (uint32_t s : slots) out[s] = "rule";
  return out;
}

std::vector<uint32_t> sortedSlots(std::vector<uint32_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(SlotTable, CapacityIsTheOneGiven) {
  EXPECT_EQ(SlotTable().capacity(), uint32_t{VIGIL_MAX_EXEC_RULES});
  EXPECT_EQ(SlotTable(3).capacity(), 3u);
  EXPECT_EQ(SlotTable(16384).capacity(), 16384u);
}

TEST(SlotTable, FullTableHandsOutNothingUntilACommitFreesASlot) {
  SlotTable t(3);
  EXPECT_EQ(t.slotFor("p", "a"), std::optional<uint32_t>(0));
  EXPECT_EQ(t.slotFor("p", "b"), std::optional<uint32_t>(1));
  EXPECT_EQ(t.slotFor("p", "c"), std::optional<uint32_t>(2));
  EXPECT_EQ(t.slotFor("p", "d"), std::nullopt);
  EXPECT_EQ(t.slotFor("q", "d"), std::nullopt);
  // Rules that have a slot still get it.
  EXPECT_EQ(t.slotFor("p", "b"), std::optional<uint32_t>(1));

  // b is no longer in force; d never got a slot.
  EXPECT_EQ(sortedSlots(t.commit(keep({0, 2}))), std::vector<uint32_t>({0, 2}));
  EXPECT_EQ(t.slotFor("p", "d"), std::optional<uint32_t>(1));
  EXPECT_EQ(t.slotFor("p", "e"), std::nullopt);
  EXPECT_EQ(t.commit(keep({0, 1, 2})), std::vector<uint32_t>({1}));
  EXPECT_EQ(t.slotFor("p", "a"), std::optional<uint32_t>(0));
  EXPECT_EQ(t.slotFor("p", "e"), std::nullopt);
  EXPECT_TRUE(t.commit(keep({0, 1, 2})).empty());
}

TEST(SlotTable, FreedSlotsAreReusedLowestFirstAfterCommit) {
  SlotTable t(8);
  for (const char* r : {"a", "b", "c", "d", "e"}) ASSERT_TRUE(t.slotFor("p", r).has_value());
  EXPECT_EQ(sortedSlots(t.commit(keep({0, 1, 2, 3, 4}))), std::vector<uint32_t>({0, 1, 2, 3, 4}));

  // b (1) and d (3) go away.
  EXPECT_TRUE(t.commit(keep({0, 2, 4})).empty());
  EXPECT_EQ(t.slotFor("p", "x"), std::optional<uint32_t>(1));
  EXPECT_EQ(t.slotFor("p", "y"), std::optional<uint32_t>(3));
  EXPECT_EQ(t.slotFor("p", "z"), std::optional<uint32_t>(5));
  EXPECT_EQ(t.slotFor("p", "x"), std::optional<uint32_t>(1));
  // The reused slots are fresh: their counters belonged to rules that are gone.
  EXPECT_EQ(sortedSlots(t.commit(keep({0, 1, 2, 3, 4, 5}))), std::vector<uint32_t>({1, 3, 5}));

  // A name that comes back after it was freed gets a slot again, and a fresh one.
  EXPECT_TRUE(t.commit(keep({0, 2, 3, 4, 5})).empty());  // x (1) goes
  EXPECT_EQ(t.slotFor("p", "x"), std::optional<uint32_t>(1));
  EXPECT_EQ(t.commit(keep({0, 1, 2, 3, 4, 5})), std::vector<uint32_t>({1}));

  // A slot handed out for a version that was not applied is free again after the commit of
  // what stayed in force, and not fresh.
  EXPECT_EQ(t.slotFor("p", "never"), std::optional<uint32_t>(6));
  EXPECT_TRUE(t.commit(keep({0, 1, 2, 3, 4, 5})).empty());
  EXPECT_EQ(t.slotFor("p", "later"), std::optional<uint32_t>(6));
  EXPECT_EQ(t.commit(keep({0, 1, 2, 3, 4, 5, 6})), std::vector<uint32_t>({6}));
}

TEST(SlotTable, AdoptedSlotsAreKeptAndNeverFresh) {
  SlotTable t(8);
  t.adopt("edge", "scanners", 5);
  t.adopt("edge", "bogons", 2);
  t.adopt("edge", "too-far", 8);     // past the capacity: ignored
  t.adopt("other", "same-slot", 5);  // taken: ignored
  EXPECT_EQ(t.slotFor("edge", "scanners"), std::optional<uint32_t>(5));
  EXPECT_EQ(t.slotFor("edge", "new1"), std::optional<uint32_t>(0));
  EXPECT_EQ(t.slotFor("edge", "new2"), std::optional<uint32_t>(1));
  EXPECT_EQ(t.slotFor("edge", "new3"), std::optional<uint32_t>(3)) << "2 is adopted";
  EXPECT_EQ(t.slotFor("edge", "too-far"), std::optional<uint32_t>(4));
  EXPECT_EQ(t.slotFor("other", "same-slot"), std::optional<uint32_t>(6));

  // bogons is not in the new set: its adopted slot is let go. scanners keeps counting.
  EXPECT_EQ(sortedSlots(t.commit(keep({0, 1, 3, 4, 5, 6}))),
            std::vector<uint32_t>({0, 1, 3, 4, 6}));
  EXPECT_EQ(t.slotFor("edge", "bogons"), std::optional<uint32_t>(2));
  EXPECT_EQ(t.commit(keep({0, 1, 2, 3, 4, 5, 6})), std::vector<uint32_t>({2}))
      << "bogons came back after its slot was freed: counted from zero";
  EXPECT_EQ(t.slotFor("edge", "scanners"), std::optional<uint32_t>(5));
}

TEST(SlotTable, AdoptedSlotsCountAgainstTheCapacity) {
  SlotTable t(2);
  t.adopt("edge", "a", 1);
  EXPECT_EQ(t.slotFor("edge", "b"), std::optional<uint32_t>(0));
  EXPECT_EQ(t.slotFor("edge", "c"), std::nullopt);
  EXPECT_EQ(t.commit(keep({0, 1})), std::vector<uint32_t>({0}));
}

TEST(SlotTable, CopyRestoresAllocationState) {
  // The store keeps a copy and puts it back when a version is rejected.
  SlotTable t(4);
  t.slotFor("p", "a");
  t.commit(keep({0}));
  SlotTable saved = t;
  EXPECT_EQ(t.slotFor("p", "b"), std::optional<uint32_t>(1));
  EXPECT_EQ(t.slotFor("p", "c"), std::optional<uint32_t>(2));
  t = saved;
  EXPECT_EQ(t.slotFor("p", "c"), std::optional<uint32_t>(1));
  EXPECT_EQ(t.commit(keep({0, 1})), std::vector<uint32_t>({1}));
}

// A name adopted at two slots (the kernel's name map can hold a stale entry) must not take a
// slot out of use for good: once the rule's set is committed, the other slot is free again.
TEST(SlotTable, NameAdoptedTwiceDoesNotLoseASlot) {
  SlotTable t(2);
  t.adopt("edge", "a", 0);
  t.adopt("edge", "a", 1);
  auto slot = t.slotFor("edge", "a");
  ASSERT_TRUE(slot.has_value());
  EXPECT_TRUE(t.commit(keep({*slot})).empty());
  EXPECT_EQ(t.slotFor("edge", "b"), std::optional<uint32_t>(1 - *slot));
}

}  // namespace
}  // namespace vigil::policy
