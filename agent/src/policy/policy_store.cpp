#include "policy/policy_store.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace vigil::policy {
namespace fs = std::filesystem;
namespace {

std::string joinIssues(const std::vector<ParseIssue>& issues) {
  std::string out;
  for (const auto& i : issues) out += (out.empty() ? "" : "\n") + i.str();
  return out;
}

std::optional<std::string> readSmallFile(const std::string& path, std::string* error) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) {
    *error = path + ": " + ec.message();
    return std::nullopt;
  }
  if (size > kMaxFileBytes) {
    *error = path + ": file is larger than " + std::to_string(kMaxFileBytes) + " bytes";
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Whether two XDP rule sets would put the same thing into the kernel.
bool sameXdp(const CompiledXdp& a, const CompiledXdp& b) {
  if (a.entries.size() != b.entries.size() || a.allInterfaces != b.allInterfaces ||
      a.interfaces != b.interfaces || a.scopes != b.scopes || a.sourceTrie != b.sourceTrie ||
      a.destinationTrie != b.destinationTrie || a.slots.size() != b.slots.size())
    return false;
  if (!a.entries.empty() &&
      std::memcmp(a.entries.data(), b.entries.data(), a.entries.size() * sizeof a.entries[0]) != 0)
    return false;
  for (auto ia = a.slots.begin(), ib = b.slots.begin(); ia != a.slots.end(); ++ia, ++ib) {
    if (ia->first != ib->first || ia->second.policy != ib->second.policy ||
        ia->second.rule != ib->second.rule || ia->second.action != ib->second.action ||
        ia->second.mode != ib->second.mode || ia->second.rateLimited != ib->second.rateLimited)
      return false;
  }
  return true;
}

}  // namespace

PolicyStore::PolicyStore(Resolver resolver, ApplyFn apply)
    : PolicyStore(std::move(resolver), std::move(apply), XdpResolver{}, nullptr) {}

PolicyStore::PolicyStore(Resolver resolver, ApplyFn apply, XdpResolver xdpResolver,
                         XdpApplyFn xdpApply)
    : resolver_(std::move(resolver)),
      apply_(std::move(apply)),
      xdpResolver_(std::move(xdpResolver)),
      xdpApply_(std::move(xdpApply)) {
  if (!xdpResolver_.interface) {
    xdpResolver_.interface = [](const std::string&) -> std::optional<InterfaceInfo> {
      return std::nullopt;
    };
  }
}

void PolicyStore::adoptXdpSlots(
    const std::vector<std::tuple<std::string, std::string, uint32_t>>& slots) {
  std::lock_guard lock(mutex_);
  for (const auto& [policy, rule, slot] : slots) xdpSlots_.adopt(policy, rule, slot);
}

Status PolicyStore::commit(std::map<std::string, Entry> candidate,
                           std::vector<std::string>* warnings) {
  std::vector<const Policy*> ordered;
  for (const auto& [_, e] : candidate) ordered.push_back(&e.policy);
  SlotTable saved = slots_;  // a rejected version must not move any rule in force
  SlotTable savedXdp = xdpSlots_;
  CompileResult result = compileExecRules(ordered, slots_, resolver_);
  XdpCompileResult xdp = compileXdpRules(ordered, xdpSlots_, xdpResolver_);
  if (!xdpApply_ && !xdp.rules.empty()) {
    Position at;
    for (const Policy* p : ordered) {
      if (p->xdp) {
        at = p->xdp->position;
        break;
      }
    }
    xdp.errors.push_back({at, "XDP rules are not supported by this agent"});
  }
  if (warnings) {
    for (const auto& w : result.warnings) warnings->push_back(w.str());
    for (const auto& w : xdp.warnings) warnings->push_back(w.str());
  }
  if (!result.errors.empty() || !xdp.errors.empty()) {
    slots_ = std::move(saved);
    xdpSlots_ = std::move(savedXdp);
    auto errors = result.errors;
    errors.insert(errors.end(), xdp.errors.begin(), xdp.errors.end());
    return Error(EINVAL, joinIssues(errors));
  }
  // Slots that are new since the last commit start their counters from zero.
  auto fresh = slots_.commit(result.rules.slots);
  auto xdpFresh = xdpSlots_.commit(xdp.rules.slots);
  // Exec rules first: swapping them cannot fail half-way and is cheap to undo. XDP last:
  // attaching to interfaces is what fails most (a missing interface, another program's
  // attachment), and the data path puts its previous rule set back itself when it does.
  if (auto s = apply_(result.rules, fresh); !s) {
    slots_ = std::move(saved);
    xdpSlots_ = std::move(savedXdp);
    return s;
  }
  if (xdpApply_ && !sameXdp(xdp.rules, compiledXdp_)) {
    if (auto s = xdpApply_(xdp.rules, xdpFresh); !s) {
      slots_ = std::move(saved);
      xdpSlots_ = std::move(savedXdp);
      apply_(compiled_, {});  // the exec rules go back too: all or nothing
      return s;
    }
  }
  entries_ = std::move(candidate);
  compiled_ = std::move(result.rules);
  compiledXdp_ = std::move(xdp.rules);
  identities_ = resolveIdentities();
  refreshError_.clear();
  return {};
}

std::map<std::string, std::string> PolicyStore::resolveIdentities() const {
  std::map<std::string, std::string> ids;
  auto file = [&](const std::string& path) {
    auto id = resolver_.file(path);
    ids["file:" + path] = id ? std::to_string(id->dev) + ":" + std::to_string(id->ino) : "";
  };
  for (const auto& [_, e] : entries_) {
    if (e.policy.xdp) {
      // A recreated interface (a pod's veth) has a new ifindex.
      for (const auto& name : e.policy.xdp->interfaces) {
        auto i = xdpResolver_.interface(name);
        ids["if:" + name] = i ? std::to_string(i->ifindex) : "";
      }
    }
    for (const auto& r : e.policy.exec) {
      for (const auto& b : r.match.binaries) file(b);
      for (const auto& b : r.match.parentBinaries) file(b);
      for (const auto& c : r.match.cgroupPathPrefixes) {
        std::string path = c.size() > 1 && c.back() == '/' ? c.substr(0, c.size() - 1) : c;
        auto id = resolver_.cgroup(path);
        ids["cgroup:" + path] = id ? std::to_string(*id) : "";
      }
    }
  }
  return ids;
}

Expected<ApplyOutcome> PolicyStore::applyText(const std::string& text,
                                              const std::string& sourceName) {
  ParseResult parsed = parsePolicies(text, sourceName);
  if (!parsed.ok()) return Error(EINVAL, parsed.errorText());
  std::lock_guard lock(mutex_);
  auto candidate = entries_;
  ApplyOutcome outcome;
  for (auto& p : parsed.policies) {
    if (auto it = candidate.find(p.name); it != candidate.end() && it->second.source != "api") {
      return Error(EEXIST, p.position.str() + ": policy " + p.name + " is defined by " +
                               it->second.source + "; change it there");
    }
    outcome.names.push_back(p.name);
    std::string name = p.name;
    candidate[name] = Entry{std::move(p), "api"};
  }
  if (auto s = commit(std::move(candidate), &outcome.warnings); !s) {
    for (const auto& n : outcome.names) apiErrors_[n] = s.error().context();
    return s.error();
  }
  for (const auto& n : outcome.names) apiErrors_.erase(n);
  return outcome;
}

Status PolicyStore::remove(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    if (apiErrors_.erase(name)) return {};
    return Error(ENOENT, "no policy named " + name);
  }
  if (it->second.source != "api") {
    return Error(EPERM,
                 "policy " + name + " comes from " + it->second.source + "; remove it from there");
  }
  auto candidate = entries_;
  candidate.erase(name);
  return commit(std::move(candidate), nullptr);
}

void PolicyStore::syncDirectory(const std::string& dir) {
  std::map<std::string, std::string> contents;  // path -> text, for files that exist now
  std::map<std::string, std::string> readErrors;
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::string name = e.path().filename().string();
      // ConfigMap mounts: "..data" and "..2026_11_25_..." are the machinery, files are
      // symlinks through ..data. Hidden files and editor leftovers are not policies.
      if (name.empty() || name[0] == '.' || name.back() == '~') continue;
      if (!fs::is_regular_file(e.path(), ec)) continue;  // follows symlinks
      std::string ext = e.path().extension().string();
      if (ext != ".yaml" && ext != ".yml") continue;
      std::string err;
      if (auto text = readSmallFile(e.path().string(), &err)) {
        contents[e.path().string()] = std::move(*text);
      } else {
        readErrors[e.path().string()] = err;
      }
    }
  }

  std::lock_guard lock(mutex_);
  auto candidate = entries_;
  auto files = files_;
  std::vector<std::string> updated, removed;
  // A file that is gone takes its policies with it.
  for (const auto& [path, st] : files_) {
    if (contents.count(path) || readErrors.count(path)) continue;
    for (const auto& n : st.names) candidate.erase(n);
    files.erase(path);
    removed.push_back(path);
  }
  // A file that cannot be read keeps what it had in force.
  for (const auto& [path, err] : readErrors) files[path].error = err;
  for (const auto& [path, text] : contents) {
    if (auto old = files_.find(path);
        old != files_.end() && old->second.content == text && !old->second.retry)
      continue;
    FileState& st = files[path];
    st.content = text;
    st.retry = false;
    ParseResult parsed = parsePolicies(text, path);
    if (!parsed.ok()) {
      st.error = parsed.errorText();  // the file's own fault: parsed again once it changes
      continue;
    }
    std::string conflict;
    for (const auto& p : parsed.policies) {
      auto it = candidate.find(p.name);
      if (it != candidate.end() && it->second.source != "file:" + path) {
        conflict =
            p.position.str() + ": policy " + p.name + " is already defined by " + it->second.source;
        break;
      }
    }
    if (!conflict.empty()) {
      st.error = conflict;
      st.retry = true;  // the other source may let go of the name
      continue;
    }
    for (const auto& n : st.names) candidate.erase(n);
    st.names.clear();
    for (auto& p : parsed.policies) {
      st.names.push_back(p.name);
      std::string n = p.name;
      candidate[n] = Entry{std::move(p), "file:" + path};
    }
    st.error.clear();
    updated.push_back(path);
  }
  if (!updated.empty() || !removed.empty()) {
    if (auto s = commit(candidate, nullptr); !s) {
      // The new versions do not compile together (a missing binary, too many rules): every
      // policy stays as it was, and each changed file says why.
      for (const auto& path : updated) {
        auto old = files_.find(path);
        files[path].names = old == files_.end() ? std::vector<std::string>{} : old->second.names;
        files[path].error = s.error().context();
        files[path].retry = true;  // a binary may appear, the kernel may recover
      }
      for (const auto& path : removed) files[path] = files_[path];
    }
  }
  files_ = std::move(files);
}

void PolicyStore::refreshIdentities() {
  std::lock_guard lock(mutex_);
  auto now = resolveIdentities();
  if (now == identities_) return;
  if (auto s = commit(entries_, nullptr); !s) {
    // Keep the rules in force; say why they could not follow the change. Tried again on the
    // next pass, as identities_ still differ.
    refreshError_ = "could not re-apply after a binary or cgroup changed: " + s.error().context();
  }
}

std::vector<PolicyInfo> PolicyStore::list() const {
  std::lock_guard lock(mutex_);
  std::map<std::string, PolicyInfo> out;
  std::map<std::string, uint32_t> slotByName;
  for (const auto& [slot, ref] : compiled_.slots) slotByName[ref.policy + "/" + ref.rule] = slot;
  std::map<std::string, uint32_t> xdpSlotByName;
  for (const auto& [slot, ref] : compiledXdp_.slots)
    xdpSlotByName[ref.policy + "/" + ref.rule] = slot;
  for (const auto& [name, e] : entries_) {
    PolicyInfo& info = out[name];
    info.name = name;
    info.source = e.source;
    info.policy = e.policy;
    for (const auto& r : e.policy.exec) {
      if (auto it = slotByName.find(name + "/" + r.name); it != slotByName.end())
        info.ruleSlots[r.name] = it->second;
    }
    if (e.policy.xdp) {
      for (const auto& r : e.policy.xdp->rules) {
        if (auto it = xdpSlotByName.find(name + "/" + r.name); it != xdpSlotByName.end())
          info.xdpRuleSlots[r.name] = it->second;
      }
    }
  }
  for (const auto& [path, st] : files_) {
    if (st.error.empty()) continue;
    bool attached = false;
    for (const auto& n : st.names) {
      if (out.count(n)) {
        out[n].error = st.error;
        attached = true;
      }
    }
    if (!attached) {
      PolicyInfo& info = out["file:" + path];
      info.name = fs::path(path).filename().string();
      info.source = "file:" + path;
      info.error = st.error;
    }
  }
  if (!refreshError_.empty()) {
    for (auto& [_, info] : out)
      if (info.error.empty()) info.error = refreshError_;
  }
  for (const auto& [name, err] : apiErrors_) {
    PolicyInfo& info = out[name];
    if (info.name.empty()) {
      info.name = name;
      info.source = "api";
    }
    info.error = err;
  }
  std::vector<PolicyInfo> v;
  for (auto& [_, i] : out) v.push_back(std::move(i));
  return v;
}

std::optional<RuleRef> PolicyStore::ruleOf(uint32_t slot) const {
  std::lock_guard lock(mutex_);
  auto it = compiled_.slots.find(slot);
  if (it == compiled_.slots.end()) return std::nullopt;
  return it->second;
}

std::optional<XdpRuleRef> PolicyStore::xdpRuleOf(uint32_t slot) const {
  std::lock_guard lock(mutex_);
  auto it = compiledXdp_.slots.find(slot);
  if (it == compiledXdp_.slots.end()) return std::nullopt;
  return it->second;
}

bool PolicyStore::anyRejected() const {
  std::lock_guard lock(mutex_);
  if (!apiErrors_.empty() || !refreshError_.empty()) return true;
  for (const auto& [_, st] : files_)
    if (!st.error.empty()) return true;
  return false;
}

}  // namespace vigil::policy
