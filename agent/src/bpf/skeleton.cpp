#include "bpf/skeleton.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>

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
  if ((err = vigil_bpf::load(skel))) return Error(err, "load BPF programs (see libbpf log)");
  if ((err = vigil_bpf::attach(skel))) return Error(err, "attach BPF programs");
  return owner;
}

Skeleton::~Skeleton() { vigil_bpf::destroy(skel_); }

int Skeleton::eventsMapFd() const { return bpf_map__fd(skel_->maps.vigil_events); }

Expected<std::vector<uint64_t>> Skeleton::readStats() const {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return Error(ncpu, "count possible CPUs");
  std::vector<uint64_t> perCpu(static_cast<size_t>(ncpu));
  std::vector<uint64_t> sums(VIGIL_STAT_MAX, 0);
  for (uint32_t key = 0; key < VIGIL_STAT_MAX; key++) {
    int err = bpf_map__lookup_elem(skel_->maps.vigil_stats, &key, sizeof key, perCpu.data(),
                                   perCpu.size() * sizeof(uint64_t), 0);
    if (err) return Error(err, std::string("read stat ") + kStatNames[key]);
    for (uint64_t v : perCpu) sums[key] += v;
  }
  return sums;
}

std::vector<ProgramInfo> Skeleton::programs() const {
  std::vector<ProgramInfo> out;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel_->obj) {
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
