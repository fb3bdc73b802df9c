#include "policy/exec_rules.hpp"

#include "common/mountinfo.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>

namespace vigil::policy {
namespace {

void setBit(Bitmap& b, uint32_t slot) { b[slot / 64] |= 1ULL << (slot % 64); }

void orInto(Bitmap& dst, const Bitmap& src) {
  for (size_t i = 0; i < dst.size(); i++) dst[i] |= src[i];
}

// True when `ancestor` is `path` or a directory above it ("/a" and "/a/" are above "/a/b").
bool cgroupContains(const std::string& ancestor, const std::string& path) {
  if (ancestor == "/" || ancestor == path) return true;
  std::string base = ancestor.back() == '/' ? ancestor : ancestor + "/";
  return path.rfind(base, 0) == 0;
}

std::string trimSlash(const std::string& p) {
  return p.size() > 1 && p.back() == '/' ? p.substr(0, p.size() - 1) : p;
}

}  // namespace

std::optional<FileId> statFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileId{static_cast<uint32_t>((major(st.st_dev) << 20) | minor(st.st_dev)),
                static_cast<uint64_t>(st.st_ino)};
}

Resolver hostResolver() {
  std::string cgroupRoot = findCgroup2Mount("/proc/self/mountinfo").value_or("");
  return Resolver{
      [](const std::string& path) { return statFile(path); },
      [cgroupRoot](const std::string& path) -> std::optional<uint64_t> {
        if (cgroupRoot.empty()) return std::nullopt;
        struct stat st {};
        if (::stat((cgroupRoot + path).c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
          return std::nullopt;
        return static_cast<uint64_t>(st.st_ino);  // a cgroup v2 id is its directory's inode
      }};
}

std::optional<uint32_t> SlotTable::slotFor(const std::string& policy, const std::string& rule) {
  std::string key = policy + "/" + rule;
  if (auto it = byName_.find(key); it != byName_.end()) return it->second;
  const uint32_t n = capacity();
  for (uint32_t i = 0; i < n; i++) {
    uint32_t s = (cursor_ + i) % n;
    if (used_[s]) continue;
    used_[s] = true;
    cursor_ = (s + 1) % n;
    byName_[key] = s;
    fresh_.push_back(s);
    return s;
  }
  return std::nullopt;
}

void SlotTable::adopt(const std::string& policy, const std::string& rule, uint32_t slot) {
  // A slot already taken, or a name that already has one (the lower slot, read first, wins).
  if (slot >= capacity() || used_[slot] || byName_.count(policy + "/" + rule)) return;
  used_[slot] = true;
  byName_[policy + "/" + rule] = slot;
}

std::vector<uint32_t> SlotTable::commitKeeping(const std::vector<bool>& keep) {
  for (auto it = byName_.begin(); it != byName_.end();) {
    if (keep[it->second]) {
      ++it;
    } else {
      used_[it->second] = false;
      it = byName_.erase(it);
    }
  }
  std::vector<uint32_t> fresh;
  for (uint32_t s : fresh_)
    if (keep[s]) fresh.push_back(s);
  fresh_.clear();
  // Lowest slots first again, so that a small rule set keeps small slot numbers.
  cursor_ = 0;
  return fresh;
}

CompileResult compileExecRules(const std::vector<const Policy*>& policies, SlotTable& slots,
                               const Resolver& resolver) {
  CompileResult out;
  CompiledRules& c = out.rules;
  std::vector<std::pair<std::string, Bitmap>> cgroupRules;  // path -> rules on exactly it
  std::map<std::string, uint64_t> cgroupIds;
  uint32_t maxSlot = 0;

  for (const Policy* p : policies) {
    for (const ExecRule& r : p->exec) {
      auto slot = slots.slotFor(p->name, r.name);
      if (!slot) {
        out.errors.push_back({r.position, "too many exec rules in force (at most " +
                                              std::to_string(VIGIL_MAX_EXEC_RULES) + ")"});
        continue;
      }
      Mode mode = r.effectiveMode(p->mode);
      c.slots[*slot] = RuleRef{p->name, r.name, r.action, mode};
      maxSlot = std::max(maxSlot, *slot);
      if (r.action == ExecAction::kill && mode == Mode::enforce) setBit(c.kill, *slot);

      // A value that cannot be resolved: an error when the rule would kill, else a warning
      // (the rule then just cannot match through that value).
      auto unresolved = [&](const Position& pos, const std::string& what) {
        ParseIssue issue{pos, what};
        if (mode == Mode::enforce && r.action == ExecAction::kill) {
          out.errors.push_back(issue);
        } else {
          out.warnings.push_back(issue);
        }
      };
      const ExecMatch& m = r.match;
      if (m.binaries.empty()) setBit(c.anyBinary, *slot);
      for (size_t i = 0; i < m.binaries.size(); i++) {
        const Position& pos = i < m.binaryPositions.size() ? m.binaryPositions[i] : r.position;
        if (auto id = resolver.file(m.binaries[i])) {
          setBit(c.binaries[*id], *slot);
        } else {
          unresolved(pos, "binary " + m.binaries[i] + " does not exist on this node");
        }
      }
      if (m.parentBinaries.empty()) setBit(c.anyParent, *slot);
      for (size_t i = 0; i < m.parentBinaries.size(); i++) {
        const Position& pos =
            i < m.parentBinaryPositions.size() ? m.parentBinaryPositions[i] : r.position;
        if (auto id = resolver.file(m.parentBinaries[i])) {
          setBit(c.parents[*id], *slot);
        } else {
          unresolved(pos, "parent binary " + m.parentBinaries[i] + " does not exist on this node");
        }
      }
      if (m.uids.empty()) setBit(c.anyUid, *slot);
      for (uint32_t uid : m.uids) setBit(c.uids[uid], *slot);
      if (m.pathPrefixes.empty()) setBit(c.anyPrefix, *slot);
      for (const auto& prefix : m.pathPrefixes) {
        if (prefix.size() > VIGIL_PREFIX_MAX) {
          out.errors.push_back({r.position, "path prefix longer than " +
                                                std::to_string(VIGIL_PREFIX_MAX) +
                                                " bytes: " + prefix});
          continue;
        }
        setBit(c.prefixes[prefix], *slot);
      }
      if (m.cgroupPathPrefixes.empty()) setBit(c.anyCgroup, *slot);
      for (const auto& cg : m.cgroupPathPrefixes) {
        std::string path = trimSlash(cg);
        auto id = resolver.cgroup(path);
        if (!id) {
          unresolved(r.position, "cgroup " + cg + " does not exist on this node");
          continue;
        }
        cgroupIds[path] = *id;
        Bitmap b{};
        setBit(b, *slot);
        cgroupRules.emplace_back(path, b);
      }
    }
  }

  // A longer prefix matches only paths the shorter ones match too: carry their rules along, so
  // the kernel's longest-prefix lookup finds every rule that applies.
  for (auto& [prefix, bits] : c.prefixes) {
    for (const auto& [other, otherBits] : c.prefixes) {
      if (other.size() < prefix.size() && prefix.rfind(other, 0) == 0) orInto(bits, otherBits);
    }
  }
  // Likewise a cgroup carries the rules of the rule cgroups above it.
  for (const auto& [path, id] : cgroupIds) {
    Bitmap& bits = c.cgroups[id];
    for (const auto& [other, otherBits] : cgroupRules) {
      if (cgroupContains(other, path)) orInto(bits, otherBits);
    }
  }
  c.nwords = c.slots.empty() ? 0 : maxSlot / 64 + 1;
  if (!out.errors.empty()) out.rules = CompiledRules{};
  return out;
}

}  // namespace vigil::policy
