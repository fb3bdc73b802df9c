#include "bpf/skeleton.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <unistd.h>

#include <cstdarg>
#include <cstring>
#include <functional>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <vigil/policy.h>
#include <vigil/stats.h>

#include "common/log.hpp"
#include "vigil_bpf.skel.h"

namespace vigil::bpf {
namespace {

const char* const kStatNames[] = {
#define VIGIL_STAT_NAME(id, name) name,
    VIGIL_STATS(VIGIL_STAT_NAME)
#undef VIGIL_STAT_NAME
};
static_assert(std::size(kStatNames) == VIGIL_STAT_MAX);

int libbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  log::Level ours = level == LIBBPF_WARN ? log::Level::warn : log::Level::debug;
  if (!log::enabled(ours)) return 0;
  char buf[1024];
  int n = std::vsnprintf(buf, sizeof buf, format, args);
  std::string_view msg(buf, n < 0 ? 0 : std::min<size_t>(n, sizeof buf - 1));
  while (!msg.empty() && msg.back() == '\n') msg.remove_suffix(1);
  log::write(ours, std::string("libbpf: ").append(msg));
  return 0;
}

}  // namespace

const char* statName(size_t id) { return id < VIGIL_STAT_MAX ? kStatNames[id] : "unknown"; }
size_t statCount() { return VIGIL_STAT_MAX; }

void installLibbpfLogger() { libbpf_set_print(libbpfPrint); }

Expected<std::unique_ptr<Skeleton>> Skeleton::create(const LoadOptions& options) {
  vigil_bpf* skel = vigil_bpf::open();
  if (!skel) return Error(errno, "open BPF object vigil_bpf");
  std::unique_ptr<Skeleton> owner(new Skeleton(skel));

  int err = bpf_map__set_max_entries(skel->maps.vigil_events, options.ringBufferBytes);
  if (err) return Error(err, "size ring buffer to " + std::to_string(options.ringBufferBytes));
  skel->rodata->cfg_wakeup_bytes = options.wakeupBytes;
  bpf_program__set_autoload(skel->progs.vigil_lsm_exec, options.useLsm);
  if ((err = vigil_bpf::load(skel))) return Error(err, "load BPF programs (see libbpf log)");
  if ((err = vigil_bpf::attach(skel))) return Error(err, "attach BPF programs");
  return owner;
}

Skeleton::~Skeleton() {
  vigil_bpf::destroy(skel_);
  if (barrierInnerFd_ >= 0) close(barrierInnerFd_);
}

namespace {

template <typename Key>
Status putBitmaps(bpf_map* map, const char* what, uint32_t gen,
                  const std::function<Key(const void* src)>& makeKey,
                  const std::vector<std::pair<const void*, const policy::Bitmap*>>& entries) {
  for (const auto& [src, bits] : entries) {
    Key key = makeKey(src);
    vigil_rule_bitmap value{};
    std::memcpy(value.w, bits->data(), sizeof value.w);
    int err = bpf_map__update_elem(map, &key, sizeof key, &value, sizeof value, BPF_ANY);
    if (err) return Error(err, std::string("write ") + what + " rule for generation " +
                                   std::to_string(gen));
  }
  return {};
}

template <typename Key>
Status deleteKeys(bpf_map* map, const std::function<bool(const Key&)>& doomed) {
  std::vector<Key> keys;
  Key cur{}, next{};
  const void* prev = nullptr;
  while (bpf_map__get_next_key(map, prev, &next, sizeof next) == 0) {
    if (doomed(next)) keys.push_back(next);
    cur = next;
    prev = &cur;
  }
  for (const Key& k : keys) {
    int err = bpf_map__delete_elem(map, &k, sizeof k, 0);
    if (err && err != -ENOENT) return Error(err, std::string("delete from ") + bpf_map__name(map));
  }
  return {};
}

uint32_t prefixGen(const vigil_prefix_key& k) {
  uint32_t g;
  std::memcpy(&g, k.data, sizeof g);
  return g;
}

}  // namespace

Status Skeleton::deleteGeneration(uint32_t gen) {
  auto m = skel_->maps;
  if (auto s = deleteKeys<vigil_file_key>(m.vigil_rule_binaries,
                                          [&](const vigil_file_key& k) { return k.gen == gen; });
      !s)
    return s;
  if (auto s = deleteKeys<vigil_file_key>(m.vigil_rule_parents,
                                          [&](const vigil_file_key& k) { return k.gen == gen; });
      !s)
    return s;
  if (auto s = deleteKeys<vigil_uid_key>(m.vigil_rule_uids,
                                         [&](const vigil_uid_key& k) { return k.gen == gen; });
      !s)
    return s;
  if (auto s = deleteKeys<vigil_cgroup_key>(
          m.vigil_rule_cgroups, [&](const vigil_cgroup_key& k) { return k.gen == gen; });
      !s)
    return s;
  return deleteKeys<vigil_prefix_key>(
      m.vigil_rule_prefixes, [&](const vigil_prefix_key& k) { return prefixGen(k) == gen; });
}

Status Skeleton::applyExecRules(const policy::CompiledRules& rules,
                                const std::vector<uint32_t>& freshSlots) {
  auto m = skel_->maps;
  uint32_t next = rulesActive_ ? 1 - gen_ : gen_;
  // Leftovers of an apply that failed half-way.
  if (auto s = deleteGeneration(next); !s) return s;

  auto ruleset = std::make_unique<vigil_ruleset>();
  ruleset->nwords = rules.nwords;
  auto copy = [](vigil_rule_bitmap& dst, const policy::Bitmap& src) {
    std::memcpy(dst.w, src.data(), sizeof dst.w);
  };
  copy(ruleset->any_binary, rules.anyBinary);
  copy(ruleset->any_prefix, rules.anyPrefix);
  copy(ruleset->any_parent, rules.anyParent);
  copy(ruleset->any_uid, rules.anyUid);
  copy(ruleset->any_cgroup, rules.anyCgroup);
  copy(ruleset->kill, rules.kill);
  if (int err = bpf_map__update_elem(m.vigil_rulesets, &next, sizeof next, ruleset.get(),
                                     sizeof *ruleset, BPF_ANY))
    return Error(err, "write rule set");

  auto files = [&](bpf_map* map, const char* what,
                   const std::map<policy::FileId, policy::Bitmap>& src) {
    std::vector<std::pair<const void*, const policy::Bitmap*>> entries;
    for (const auto& [id, bits] : src) entries.emplace_back(&id, &bits);
    return putBitmaps<vigil_file_key>(map, what, next, [&](const void* p) {
      auto* id = static_cast<const policy::FileId*>(p);
      return vigil_file_key{next, id->dev, id->ino};
    }, entries);
  };
  if (auto s = files(m.vigil_rule_binaries, "binary", rules.binaries); !s) return s;
  if (auto s = files(m.vigil_rule_parents, "parent binary", rules.parents); !s) return s;
  {
    std::vector<std::pair<const void*, const policy::Bitmap*>> entries;
    for (const auto& [uid, bits] : rules.uids) entries.emplace_back(&uid, &bits);
    if (auto s = putBitmaps<vigil_uid_key>(m.vigil_rule_uids, "uid", next, [&](const void* p) {
          return vigil_uid_key{next, *static_cast<const uint32_t*>(p)};
        }, entries); !s)
      return s;
  }
  {
    std::vector<std::pair<const void*, const policy::Bitmap*>> entries;
    for (const auto& [id, bits] : rules.cgroups) entries.emplace_back(&id, &bits);
    if (auto s = putBitmaps<vigil_cgroup_key>(m.vigil_rule_cgroups, "cgroup", next,
                                              [&](const void* p) {
                                                return vigil_cgroup_key{
                                                    next, 0, *static_cast<const uint64_t*>(p)};
                                              }, entries); !s)
      return s;
  }
  {
    std::vector<std::pair<const void*, const policy::Bitmap*>> entries;
    for (const auto& [prefix, bits] : rules.prefixes) entries.emplace_back(&prefix, &bits);
    if (auto s = putBitmaps<vigil_prefix_key>(m.vigil_rule_prefixes, "path prefix", next,
                                              [&](const void* p) {
                                                auto* str = static_cast<const std::string*>(p);
                                                vigil_prefix_key k{};
                                                k.prefixlen = 32 + 8 * str->size();
                                                std::memcpy(k.data, &next, sizeof next);
                                                std::memcpy(k.data + 4, str->data(), str->size());
                                                return k;
                                              }, entries); !s)
      return s;
  }

  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> zeros(static_cast<size_t>(ncpu > 0 ? ncpu : 1), 0);
  for (uint32_t slot : freshSlots) {
    bpf_map__update_elem(m.vigil_rule_hits, &slot, sizeof slot, zeros.data(),
                         zeros.size() * sizeof(uint64_t), BPF_ANY);
  }

  // The flip: one update, read once by each exec.
  vigil_policy_state state{next, rules.empty() ? 0u : 1u};
  uint32_t zero = 0;
  if (int err = bpf_map__update_elem(m.vigil_policy_state, &zero, sizeof zero, &state,
                                     sizeof state, BPF_ANY))
    return Error(err, "switch to the new rule set");
  uint32_t old = gen_;
  bool hadOld = rulesActive_ && old != next;
  gen_ = next;
  rulesActive_ = !rules.empty();
  slotsInUse_ = rules.nwords * 64;

  // Wait for every program that may have read the old generation to finish: an update of a
  // map-in-map makes the kernel wait for an RCU grace period.
  if (barrierInnerFd_ < 0) {
    barrierInnerFd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "vigil_barrier", 4, 4, 1, nullptr);
    if (barrierInnerFd_ < 0) return Error(errno, "create policy barrier map");
  }
  if (int err = bpf_map__update_elem(m.vigil_policy_barrier, &zero, sizeof zero, &barrierInnerFd_,
                                     sizeof barrierInnerFd_, BPF_ANY))
    return Error(err, "wait for programs using the old rule set");
  if (hadOld) return deleteGeneration(old);
  return {};
}

Expected<std::vector<uint64_t>> Skeleton::readRuleHits() const {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return Error(ncpu, "count possible CPUs");
  std::vector<uint64_t> perCpu(static_cast<size_t>(ncpu));
  std::vector<uint64_t> sums(slotsInUse_, 0);
  for (uint32_t slot = 0; slot < slotsInUse_; slot++) {
    int err = bpf_map__lookup_elem(skel_->maps.vigil_rule_hits, &slot, sizeof slot, perCpu.data(),
                                   perCpu.size() * sizeof(uint64_t), 0);
    if (err) return Error(err, "read rule hit counters");
    for (uint64_t v : perCpu) sums[slot] += v;
  }
  return sums;
}

int Skeleton::eventsMapFd() const { return bpf_map__fd(skel_->maps.vigil_events); }

Expected<std::vector<uint64_t>> Skeleton::readStats() const {
  return sumPerCpu(skel_->maps.vigil_stats, VIGIL_STAT_MAX, "stats");
}

bool kernelHasTypes(const std::vector<std::pair<const char*, int>>& names,
                    std::vector<bool>* found) {
  found->assign(names.size(), false);
  return withVmlinuxBtf([&](const ::btf* vmlinux) {
    for (size_t i = 0; i < names.size(); i++)
      (*found)[i] = btf__find_by_name_kind(vmlinux, names[i].first, names[i].second) > 0;
  });
}

bool withVmlinuxBtf(const std::function<void(const ::btf*)>& fn) {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) return false;
  fn(vmlinux);
  btf__free(vmlinux);
  return true;
}

int tracepointArgCount(const ::btf* vmlinux, const std::string& name) {
  // typedef void (*btf_trace_<name>)(void *, args...): a typedef of a pointer to a prototype.
  int id = btf__find_by_name_kind(vmlinux, ("btf_trace_" + name).c_str(), BTF_KIND_TYPEDEF);
  const btf_type* t = id > 0 ? btf__type_by_id(vmlinux, static_cast<__u32>(id)) : nullptr;
  if (t) t = btf__type_by_id(vmlinux, t->type);
  if (t && btf_is_ptr(t)) t = btf__type_by_id(vmlinux, t->type);
  return t && btf_is_func_proto(t) ? static_cast<int>(btf_vlen(t)) - 1 : -1;
}

Expected<std::vector<uint64_t>> sumPerCpu(bpf_map* map, uint32_t entries, const char* what) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return Error(ncpu, "count possible CPUs");
  std::vector<uint64_t> perCpu(static_cast<size_t>(ncpu));
  std::vector<uint64_t> sums(entries, 0);
  for (uint32_t key = 0; key < entries; key++) {
    int err = bpf_map__lookup_elem(map, &key, sizeof key, perCpu.data(),
                                   perCpu.size() * sizeof(uint64_t), 0);
    if (err) return Error(err, std::string("read ") + what);
    for (uint64_t v : perCpu) sums[key] += v;
  }
  return sums;
}

std::vector<ProgramInfo> Skeleton::programs() const { return programsOf(skel_->obj); }

std::string programHolder(uint32_t progId) {
  const std::string needle = "prog_id:\t" + std::to_string(progId);
  std::error_code ec;
  for (const auto& proc : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = proc.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code fdError;
    for (const auto& fd : std::filesystem::directory_iterator(proc.path() / "fdinfo", fdError)) {
      std::ifstream in(fd.path());
      std::string line;
      while (std::getline(in, line)) {
        if (line != needle) continue;
        std::string comm;
        std::ifstream c(proc.path() / "comm");
        std::getline(c, comm);
        return "pid " + pid + " (" + comm + ")";
      }
    }
  }
  return {};
}

std::vector<ProgramInfo> programsOf(bpf_object* obj) {
  std::vector<ProgramInfo> out;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, obj) {
    if (!bpf_program__autoload(prog)) continue;
    ProgramInfo info;
    info.name = bpf_program__name(prog);
    std::string sec = bpf_program__section_name(prog);
    auto slash = sec.find('/');
    info.type = slash == std::string::npos ? sec : sec.substr(0, slash);
    info.attachTo = slash == std::string::npos ? "" : sec.substr(slash + 1);
    bpf_prog_info pinfo{};
    uint32_t len = sizeof pinfo;
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &pinfo, &len) == 0) info.id = pinfo.id;
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace vigil::bpf
