#include "bpf/mem_datapath.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cstring>

#include "common/unique_fd.hpp"
#include "vigil_mem.skel.h"

namespace vigil::bpf {
namespace {

constexpr const char* kMemStatNames[VIGIL_MEM_STAT_COUNT] = {
    "mem_write_failed", "oom_seen", "oom_lost_ringbuf_full"};

}  // namespace

const char* MemDataPath::statName(size_t id) {
  return id < VIGIL_MEM_STAT_COUNT ? kMemStatNames[id] : "unknown";
}

Expected<std::unique_ptr<MemDataPath>> MemDataPath::open() {
  std::unique_ptr<MemDataPath> dp(new MemDataPath());
  dp->skel_ = vigil_mem::open();
  if (!dp->skel_) return Error(errno, "open BPF object vigil_mem");
  // The victim's task (and uid) are the tracepoint's arguments since Linux 6.8; older kernels
  // pass only a pid, which this program cannot use.
  int oomArgs = -1;
  withVmlinuxBtf([&](const ::btf* vmlinux) {
    oomArgs = tracepointArgCount(vmlinux, "mark_victim");
    // Kernels before 6.2 keep the RSS counters as atomics (struct mm_rss_stat): exact. Later
    // ones keep per-CPU counters, read as their global counts.
    dp->exact_ = btf__find_by_name_kind(vmlinux, "mm_rss_stat", BTF_KIND_STRUCT) > 0;
    // Linux 6.16 moved sched_process_exit before exit_mm() and gave it group_dead: from then
    // on the exit program still sees the mm and reports the RSS at exit.
    dp->exitHasRss_ = tracepointArgCount(vmlinux, "sched_process_exit") >= 2;
  });
  const bool hasOom = oomArgs >= 2;
  bpf_program__set_autoload(dp->skel_->progs.vigil_oom_victim, hasOom);
  if (oomArgs < 0) dp->oomUnavailable_ = "this kernel has no oom/mark_victim tracepoint";
  if (oomArgs >= 0 && !hasOom)
    dp->oomUnavailable_ =
        "this kernel's oom/mark_victim passes only a pid (Linux 6.8+ passes the task)";
  if (int err = vigil_mem::load(dp->skel_)) {
    // Should the kernel still refuse the OOM program, the iterator goes on without it.
    if (!hasOom) return Error(err, "load memory programs (see libbpf log)");
    vigil_mem::destroy(dp->skel_);
    dp->skel_ = vigil_mem::open();
    if (!dp->skel_) return Error(errno, "open BPF object vigil_mem");
    bpf_program__set_autoload(dp->skel_->progs.vigil_oom_victim, false);
    dp->oomUnavailable_ = "the oom/mark_victim program was refused (" +
                          std::string(std::strerror(-err)) + "): its arguments differ here";
    if (int err2 = vigil_mem::load(dp->skel_))
      return Error(err2, "load memory programs (see libbpf log)");
  }
  dp->iterLink_ = bpf_program__attach_iter(dp->skel_->progs.vigil_mem_iter, nullptr);
  if (!dp->iterLink_) return Error(errno, "attach the task iterator vigil_mem_iter");
  if (dp->oomUnavailable_.empty()) {
    dp->oomLink_ = bpf_program__attach(dp->skel_->progs.vigil_oom_victim);
    if (!dp->oomLink_)
      dp->oomUnavailable_ = std::string("attach oom/mark_victim: ") + std::strerror(errno);
  }
  return dp;
}

MemDataPath::~MemDataPath() {
  bpf_link__destroy(oomLink_);
  bpf_link__destroy(iterLink_);
  if (skel_) vigil_mem::destroy(skel_);
}

int MemDataPath::oomRingFd() const {
  return oomLink_ ? bpf_map__fd(skel_->maps.vigil_mem_ring) : -1;
}

Expected<MemSnapshot> MemDataPath::snapshot() const {
  UniqueFd fd(bpf_iter_create(bpf_link__fd(iterLink_)));
  if (fd.get() < 0) return Error(errno, "start the task iterator");
  std::vector<uint8_t> buf;
  size_t used = 0;
  for (;;) {
    if (buf.size() - used < 64 * 1024) buf.resize(std::max<size_t>(buf.size() * 2, 256 * 1024));
    ssize_t n = ::read(fd.get(), buf.data() + used, buf.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      // EAGAIN: a task vanished under the iterator on some kernels; what was read stands.
      return Error(errno, "read the task iterator");
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  MemSnapshot s;
  s.bytesRead = used;
  if (used < sizeof(vigil_mem_iter_hdr)) return Error(EPROTO, "task iterator: no header");
  vigil_mem_iter_hdr h;
  std::memcpy(&h, buf.data(), sizeof h);
  if (h.version != VIGIL_MEM_ABI_VERSION || h.record_size != sizeof(vigil_mem_task))
    return Error(EPROTO, "task iterator: ABI version " + std::to_string(h.version) +
                             " record size " + std::to_string(h.record_size) +
                             ", this agent reads version " +
                             std::to_string(VIGIL_MEM_ABI_VERSION));
  size_t body = used - sizeof h;
  if (body % sizeof(vigil_mem_task) != 0)
    return Error(EPROTO, "task iterator: " + std::to_string(body) +
                             " bytes is not a whole number of records");
  s.tasks.resize(body / sizeof(vigil_mem_task));
  std::memcpy(s.tasks.data(), buf.data() + sizeof h, body);
  return s;
}

Expected<std::vector<uint64_t>> MemDataPath::stats() const {
  return sumPerCpu(skel_->maps.vigil_mem_stats, VIGIL_MEM_STAT_COUNT, "memory stats");
}

std::vector<ProgramInfo> MemDataPath::programs() const { return programsOf(skel_->obj); }

}  // namespace vigil::bpf
