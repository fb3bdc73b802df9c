#include "bpf/feature_probe.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "common/error.hpp"
#include "common/log.hpp"
#include "common/mountinfo.hpp"
#include "vigil_probe.skel.h"

namespace vigil::bpf {
namespace {

struct ProbeSpec {
  const char* capability;
  const char* program;
  bool attach;     // attach as well as load (only for programs that need no target)
  const char* why; // what an EPERM/EINVAL usually means for this one
};

const ProbeSpec kProbes[] = {
    {"tp_btf", "probe_tp_btf", true, "BTF-enabled tracepoints (5.5+)"},
    {"raw_tracepoint", "probe_raw_tp", true, "raw tracepoints"},
    {"tracepoint", "probe_tracepoint", true, "tracepoints through tracefs and perf events"},
    {"kprobe", "probe_kprobe", true, "the kernel may be built without CONFIG_KPROBES"},
    {"fentry", "probe_fentry", false, "fentry/fexit trampolines"},
    {"bpf_lsm", "probe_lsm", false, "needs CONFIG_BPF_LSM and \"bpf\" in the lsm= boot list"},
    {"xdp", "probe_xdp", false, "XDP programs"},
    {"tc", "probe_tc", false, "tc clsact programs"},
    {"cgroup_skb", "probe_cgroup_skb", false, "cgroup socket buffer programs"},
    {"iter_task", "probe_iter_task", true, "BPF task iterators"},
    {"helpers", "probe_helpers", false, "bpf_ringbuf_output and bpf_send_signal"},
};

bpf_program* findProgram(vigil_probe* skel, const char* name) {
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel->obj) {
    if (std::strcmp(bpf_program__name(prog), name) == 0) return prog;
  }
  return nullptr;
}

// Loads only `spec.program` (and attaches it when asked), then unloads everything.
Capability runProbe(const ProbeSpec& spec) {
  Capability cap{spec.capability, false, ""};
  vigil_probe* skel = vigil_probe::open();
  if (!skel) {
    cap.detail = Error(errno, "open probe object").message();
    return cap;
  }
  bpf_program* target = findProgram(skel, spec.program);
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel->obj) {
    bpf_program__set_autoload(prog, prog == target);
  }
  int err = vigil_probe::load(skel);
  if (err) {
    cap.detail = Error(err, "load refused").message() + " (" + spec.why + ")";
  } else if (spec.attach) {
    bpf_link* link = bpf_program__attach(target);
    if (!link) {
      cap.detail = Error(errno, "loads, attach refused").message() + " (" + spec.why + ")";
    } else {
      if (std::strcmp(spec.capability, "iter_task") == 0) {
        int fd = bpf_iter_create(bpf_link__fd(link));
        if (fd < 0) {
          cap.detail = Error(errno, "attaches, iterator read refused").message();
        } else {
          char buf[64];
          while (read(fd, buf, sizeof buf) > 0) {
          }
          close(fd);
          cap.available = true;
        }
      } else {
        cap.available = true;
      }
      bpf_link__destroy(link);
    }
  } else {
    cap.available = true;
  }
  if (cap.available) {
    cap.detail = !spec.attach                                       ? "loads"
                 : std::strcmp(spec.capability, "iter_task") == 0 ? "loads, attaches and reads"
                                                                   : "loads and attaches";
  }
  vigil_probe::destroy(skel);
  return cap;
}

bool fileHasWord(const std::string& path, const std::string& word, std::string* content) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (content) *content = s;
  std::istringstream parts(s);
  std::string item;
  while (std::getline(parts, item, ',')) {
    if (item == word) return true;
  }
  return false;
}

// Where a filesystem of this type is mounted, if anywhere.
std::optional<std::string> mountOf(const std::string& fsType) {
  for (const Mount& m : readMountInfo("/proc/self/mountinfo")) {
    if (m.fsType == fsType) return m.mountPoint;
  }
  return std::nullopt;
}

}  // namespace

std::vector<Capability> probeKernel() {
  std::vector<Capability> caps;
  // libbpf explains each refused probe at warning level; here a refusal is an answer, and the
  // table says why. Keep its messages for --log-level debug only.
  libbpf_print_fn_t previous = libbpf_set_print(nullptr);
  if (log::enabled(log::Level::debug)) libbpf_set_print(previous);

  bool btf = access("/sys/kernel/btf/vmlinux", R_OK) == 0;
  caps.push_back({"btf", btf,
                  btf ? "/sys/kernel/btf/vmlinux" : "no /sys/kernel/btf/vmlinux: CO-RE needs "
                                                    "a kernel built with CONFIG_DEBUG_INFO_BTF"});

  int rb = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr);
  caps.push_back({"ring_buffer", rb == 1,
                  rb == 1 ? "BPF_MAP_TYPE_RINGBUF" : "BPF ring buffer needs Linux 5.8+"});

  for (const auto& spec : kProbes) {
    caps.push_back(runProbe(spec));
  }

  bool tracefs = mountOf("tracefs").has_value();
  for (auto& c : caps) {
    if (c.name == "tracepoint" && !tracefs) {
      c.detail += "; tracefs is not mounted (not needed: Vigil attaches through tp_btf)";
    }
  }

  std::string lsms;
  bool bpfLsm = fileHasWord("/sys/kernel/security/lsm", "bpf", &lsms);
  for (auto& c : caps) {
    if (c.name == "bpf_lsm" && c.available && !bpfLsm) {
      c.available = false;
      c.detail = "loads, but \"bpf\" is not in the active LSM list (" +
                 (lsms.empty() ? std::string("unreadable") : lsms) + ")";
    }
  }

  auto cg = findCgroup2Mount("/proc/self/mountinfo");
  caps.push_back({"cgroup_v2", cg.has_value(),
                  cg ? "mounted at " + *cg : "no cgroup2 mount in /proc/self/mountinfo"});
  auto bpffs = mountOf("bpf");
  caps.push_back({"bpffs", bpffs.has_value(),
                  bpffs ? "mounted at " + *bpffs : "no bpf filesystem mounted"});
  libbpf_set_print(previous);
  return caps;
}

}  // namespace vigil::bpf
