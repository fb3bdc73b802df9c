#include "bpf/flow_datapath.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <net/if.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <set>

#include "common/interfaces.hpp"
#include "common/log.hpp"
#include "common/unique_fd.hpp"
#include "vigil_flow.skel.h"

namespace vigil::bpf {
namespace {

using Fd = UniqueFd;

const char* const kFlowStatNames[] = {
#define VIGIL_FLOW_STAT_NAME(id, name) name,
    VIGIL_FLOW_STATS(VIGIL_FLOW_STAT_NAME)
#undef VIGIL_FLOW_STAT_NAME
};
static_assert(std::size(kFlowStatNames) == VIGIL_FLOW_STAT_MAX);

// tcx (Linux 6.6) is newer than this libbpf's headers: the attach types and the flag that
// puts a link first, from the kernel's UAPI.
constexpr int kTcxIngress = 46;
constexpr int kTcxEgress = 47;
constexpr uint32_t kLinkBefore = 1u << 3;  // BPF_F_BEFORE
// Legacy clsact filters: a handle and priority of Vigil's own, so that re-attaching replaces
// an earlier agent's filter and detaching never touches another program's.
constexpr uint32_t kTcHandle = 0x7669;
constexpr uint32_t kTcPriority = 1;

int possibleCpus() {
  int n = libbpf_num_possible_cpus();
  return n > 0 ? n : 1;
}

}  // namespace

struct FlowDataPath::Impl {
  vigil_flow* skel = nullptr;
  FlowOptions options;
  TcMode tcMode = TcMode::automatic;  // decided at the first attach
  struct Attachment {
    uint32_t ifindex = 0;
    bool tcx = false;
    Fd ingress;  // tcx links
    Fd egress;
    bool createdQdisc = false;  // legacy: this agent created the clsact qdisc
  };
  std::map<std::string, Attachment> links;
  std::vector<bpf_link*> tracing;  // tracepoints and cgroup_skb
  std::set<std::string> missingLogged;

  ~Impl() {
    for (auto& [name, a] : links) detachOne(name, a);
    for (bpf_link* l : tracing) bpf_link__destroy(l);
    vigil_flow::destroy(skel);
  }

  Status attachLegacy(const std::string& ifname, Attachment& a) {
    // One clsact qdisc holds both hooks.
    LIBBPF_OPTS(bpf_tc_hook, qdisc, .ifindex = static_cast<int>(a.ifindex),
                .attach_point = BPF_TC_INGRESS);
    int err = bpf_tc_hook_create(&qdisc);
    if (err == 0) a.createdQdisc = true;
    if (err && err != -EEXIST) return Error(err, "create clsact qdisc on " + ifname);
    for (auto [point, prog] : {std::pair{BPF_TC_INGRESS, skel->progs.vigil_flow_ingress},
                               std::pair{BPF_TC_EGRESS, skel->progs.vigil_flow_egress}}) {
      LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(a.ifindex),
                  .attach_point = point);
      LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = bpf_program__fd(prog),
                  .flags = BPF_TC_F_REPLACE, .handle = kTcHandle, .priority = kTcPriority);
      if ((err = bpf_tc_attach(&hook, &opts)))
        return Error(err, "attach tc filter to " + ifname);
    }
    return {};
  }

  Status attachTcx(const std::string& ifname, Attachment& a) {
    for (auto [type, prog, fd] :
         {std::tuple{kTcxIngress, skel->progs.vigil_flow_ingress, &a.ingress},
          std::tuple{kTcxEgress, skel->progs.vigil_flow_egress, &a.egress}}) {
      LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = kLinkBefore);
      int link = bpf_link_create(bpf_program__fd(prog), static_cast<int>(a.ifindex),
                                 static_cast<bpf_attach_type>(type), &lo);
      if (link < 0) return Error(link, "attach tcx link to " + ifname);
      *fd = Fd(link);
    }
    a.tcx = true;
    return {};
  }

  Status attach(const std::string& ifname, uint32_t ifindex) {
    Attachment a;
    a.ifindex = ifindex;
    if (tcMode != TcMode::legacy) {
      auto s = attachTcx(ifname, a);
      if (s) {
        tcMode = TcMode::tcx;
      } else if (tcMode == TcMode::tcx ||
                 (s.error().code() != EINVAL && s.error().code() != EOPNOTSUPP)) {
        return s;  // not a kernel without tcx: the interface itself failed
      } else {
        // Kernels before 6.6 refuse the attach type: clsact filters from now on.
        log::info("tcx links unavailable (" + s.error().message() +
                  "): flow tracking uses clsact tc filters");
        a.ingress.reset();  // the ingress link, if only egress failed
        a.egress.reset();
        tcMode = TcMode::legacy;
      }
    }
    if (tcMode == TcMode::legacy) {
      if (auto s = attachLegacy(ifname, a); !s) {
        detachOne(ifname, a);
        return s;
      }
    }
    log::info("flow tracking attached to " + ifname + " (" + (a.tcx ? "tcx" : "tc") + ")");
    links.emplace(ifname, std::move(a));
    return {};
  }

  static void detachOne(const std::string& ifname, Attachment& a) {
    if (a.tcx) {
      a.ingress.reset();  // closing a tcx link detaches it
      a.egress.reset();
      return;
    }
    for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
      LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(a.ifindex),
                  .attach_point = point);
      LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
      int err = bpf_tc_detach(&hook, &opts);
      if (err && err != -ENOENT && err != -ENODEV && err != -EINVAL)
        log::warn("detach tc filter from " + ifname + ": " + std::strerror(-err));
    }
    if (a.createdQdisc) {
      LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(a.ifindex),
                  .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
      bpf_tc_hook_destroy(&hook);
    }
  }
};

FlowDataPath::FlowDataPath(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FlowDataPath::~FlowDataPath() = default;

const char* FlowDataPath::statName(size_t id) {
  return id < VIGIL_FLOW_STAT_MAX ? kFlowStatNames[id] : "unknown";
}

bool FlowDataPath::running(const std::string& hook) const {
  for (const auto& h : hooks_)
    if (h.name == hook) return h.available;
  return false;
}

Expected<std::unique_ptr<FlowDataPath>> FlowDataPath::open(const FlowOptions& options) {
  std::vector<bool> has;
  kernelHasTypes({{"btf_trace_sock_send_length", BTF_KIND_TYPEDEF},
                  {"btf_trace_sock_recv_length", BTF_KIND_TYPEDEF},
                  {"btf_trace_inet_sock_set_state", BTF_KIND_TYPEDEF},
                  {"btf_trace_kfree_skb", BTF_KIND_TYPEDEF},
                  {"skb_drop_reason", BTF_KIND_ENUM}},
                 &has);
  const bool hasSend = has[0] && has[1];
  const bool hasState = has[2];
  const bool hasDrops = has[3] && has[4];

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->tcMode = options.tcMode;
  impl->skel = vigil_flow::open();
  if (!impl->skel) return Error(errno, "open BPF object vigil_flow");
  auto* skel = impl->skel;
  auto size = [&](bpf_map* map, uint32_t n, const char* what) -> Status {
    if (int err = bpf_map__set_max_entries(map, n))
      return Error(err, std::string("size ") + what + " to " + std::to_string(n));
    return {};
  };
  if (auto s = size(skel->maps.vigil_flows, options.tableEntries, "flow table"); !s) return s.error();
  if (auto s = size(skel->maps.vigil_sock_owners, options.ownerEntries, "socket owner table"); !s)
    return s.error();
  if (auto s = size(skel->maps.vigil_cgroup_traffic, options.cgroupEntries, "cgroup counters"); !s)
    return s.error();
  if (auto s = size(skel->maps.vigil_flow_ring, options.ringBufferBytes, "flow ring buffer"); !s)
    return s.error();
  skel->rodata->cfg_drop_samples_per_cpu =
      std::max<uint32_t>(1, options.dropSamples / static_cast<uint32_t>(possibleCpus()));

  std::vector<Capability> hooks;
  const bool cgroups = !options.cgroupRoot.empty();
  bpf_program__set_autoload(skel->progs.vigil_sock_send, hasSend);
  bpf_program__set_autoload(skel->progs.vigil_sock_recv, hasSend);
  bpf_program__set_autoload(skel->progs.vigil_sock_state, hasState);
  bpf_program__set_autoload(skel->progs.vigil_kfree_skb, hasDrops);
  bpf_program__set_autoload(skel->progs.vigil_cgroup_ingress, cgroups);
  bpf_program__set_autoload(skel->progs.vigil_cgroup_egress, cgroups);
  if (int err = vigil_flow::load(skel)) return Error(err, "load flow programs (see libbpf log)");

  // Tracepoints and cgroup_skb: each failure costs that part only.
  auto attach = [&](bpf_program* prog, bpf_link* link) -> std::string {
    if (link) {
      impl->tracing.push_back(link);
      return {};
    }
    return std::string("attach ") + bpf_program__name(prog) + ": " + std::strerror(errno);
  };
  {
    std::string why;
    if (!hasSend) {
      why = "this kernel has no sock_send_length/sock_recv_length tracepoints (Linux 6.3+)";
    } else {
      why = attach(skel->progs.vigil_sock_send, bpf_program__attach(skel->progs.vigil_sock_send));
      if (why.empty())
        why = attach(skel->progs.vigil_sock_recv, bpf_program__attach(skel->progs.vigil_sock_recv));
    }
    std::string state;
    if (hasState) state = attach(skel->progs.vigil_sock_state,
                                 bpf_program__attach(skel->progs.vigil_sock_state));
    hooks.push_back(
        {"socket_attribution", why.empty(),
         why.empty()
             ? "tp_btf sock_send_length/sock_recv_length (and inet_sock_set_state for TCP "
               "connects" +
                   std::string(hasState && state.empty() ? "" : ": unavailable") +
                   "): a flow end is attributed to the process that sent or received on its "
                   "socket. Not attributed: traffic no local socket sends or receives "
                   "(forwarded, bridged, or another host's), sockets idle since the agent "
                   "started, and flows whose addresses NAT changed between socket and "
                   "interface"
             : why});
  }
  {
    std::string why = hasDrops ? attach(skel->progs.vigil_kfree_skb,
                                        bpf_program__attach(skel->progs.vigil_kfree_skb))
                               : "this kernel has no kfree_skb tracepoint with drop reasons "
                                 "(Linux 5.17+)";
    hooks.push_back({"kernel_drops", why.empty(),
                     why.empty() ? "tp_btf skb/kfree_skb, reasons named from the kernel's BTF "
                                   "enum skb_drop_reason"
                                 : why});
  }
  {
    std::string why = "no cgroup v2 mount found";
    if (cgroups) {
      Fd dir(::open(options.cgroupRoot.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (dir.get() < 0) {
        why = "open " + options.cgroupRoot + ": " + std::strerror(errno);
      } else {
        why = attach(skel->progs.vigil_cgroup_ingress,
                     bpf_program__attach_cgroup(skel->progs.vigil_cgroup_ingress, dir.get()));
        if (why.empty())
          why = attach(skel->progs.vigil_cgroup_egress,
                       bpf_program__attach_cgroup(skel->progs.vigil_cgroup_egress, dir.get()));
      }
    }
    hooks.push_back({"cgroup_traffic", why.empty(),
                     why.empty() ? "cgroup_skb ingress/egress on " + options.cgroupRoot +
                                       " (every socket in the cgroup v2 hierarchy)"
                                 : why});
  }
  hooks.push_back({"flow_tc", true,
                   options.tcMode == TcMode::legacy ? "clsact tc filters"
                                                    : "tcx links (Linux 6.6+), else clsact tc "
                                                      "filters"});
  std::unique_ptr<FlowDataPath> out(new FlowDataPath(std::move(impl)));
  out->options_ = options;
  out->hooks_ = std::move(hooks);
  return out;
}

Status FlowDataPath::syncInterfaces(const std::vector<std::string>& names) {
  std::map<std::string, uint32_t> want;
  if (names.empty()) {
    want = nonLoopbackInterfaces();
  } else {
    for (const auto& n : names) {
      unsigned idx = if_nametoindex(n.c_str());
      if (idx != 0) {
        want.emplace(n, idx);
        impl_->missingLogged.erase(n);
      } else if (impl_->missingLogged.insert(n).second) {
        log::info("flow interface " + n + " does not exist (yet): attached once it appears");
      }
    }
  }
  for (auto it = impl_->links.begin(); it != impl_->links.end();) {
    auto w = want.find(it->first);
    if (w == want.end() || w->second != it->second.ifindex) {
      log::info("flow tracking detached from " + it->first);
      Impl::detachOne(it->first, it->second);
      it = impl_->links.erase(it);
    } else {
      ++it;
    }
  }
  Status first;
  for (const auto& [name, ifindex] : want) {
    if (impl_->links.count(name)) continue;
    auto s = impl_->attach(name, ifindex);
    // An interface that vanished in between is not an error; others are reported, and the
    // remaining interfaces are still attached.
    if (!s && if_nametoindex(name.c_str()) != 0 && first) first = s;
  }
  for (auto& h : hooks_) {
    if (h.name != "flow_tc" || impl_->tcMode == TcMode::automatic) continue;
    h.detail = impl_->tcMode == TcMode::tcx ? "tcx links (BPF links on the interfaces)"
                                            : "clsact tc filters (handle 0x7669, priority 1)";
  }
  return first;
}

void FlowDataPath::detachAll() {
  for (auto& [name, a] : impl_->links) Impl::detachOne(name, a);
  impl_->links.clear();
}

std::vector<FlowAttachment> FlowDataPath::attachments() const {
  std::vector<FlowAttachment> out;
  for (const auto& [name, a] : impl_->links) out.push_back({name, a.ifindex, a.tcx ? "tcx" : "tc"});
  return out;
}

int FlowDataPath::ringFd() const { return bpf_map__fd(impl_->skel->maps.vigil_flow_ring); }

namespace {

// Every entry of a hash map, read in batches of `chunk`; `add` takes each batch's keys and
// values (valueBytes per entry: all CPUs of a per-CPU map).
template <typename Key>
Status readAll(int fd, size_t valueBytes, const char* what,
               const std::function<void(const Key*, const uint8_t*, uint32_t)>& add) {
  uint32_t chunk = 4096;
  std::vector<Key> keys(chunk);
  std::vector<uint8_t> values(chunk * valueBytes);
  uint64_t in = 0, out = 0;  // the kernel's batch position (a bucket index for hash maps)
  bool first = true;
  for (;;) {
    uint32_t count = chunk;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_batch(fd, first ? nullptr : &in, &out, keys.data(), values.data(),
                                   &count, &opts);
    if (err == -ENOSPC && count == 0) {  // one bucket holds more than a chunk
      chunk *= 2;
      keys.resize(chunk);
      values.resize(chunk * valueBytes);
      continue;
    }
    if (err && err != -ENOENT) return Error(err, std::string("read ") + what);
    add(keys.data(), values.data(), count);
    if (err == -ENOENT) return {};
    first = false;
    in = out;
  }
}

}  // namespace

Expected<std::vector<vigil_flow_entry>> FlowDataPath::readFlows() const {
  std::vector<vigil_flow_entry> out;
  out.reserve(options_.tableEntries / 4);
  auto s = readAll<vigil_flow_key>(
      bpf_map__fd(impl_->skel->maps.vigil_flows), sizeof(vigil_flow_value), "flow table",
      [&](const vigil_flow_key* keys, const uint8_t* values, uint32_t n) {
        for (uint32_t i = 0; i < n; i++) {
          vigil_flow_entry& e = out.emplace_back();
          e.key = keys[i];
          std::memcpy(&e.value, values + i * sizeof(vigil_flow_value), sizeof e.value);
        }
      });
  if (!s) return s.error();
  return out;
}

size_t FlowDataPath::deleteFlows(const std::vector<vigil_flow_key>& keys) {
  // In batches; a batch stops at a key the kernel evicted meanwhile: skip it, go on.
  const int fd = bpf_map__fd(impl_->skel->maps.vigil_flows);
  size_t deleted = 0;
  for (size_t at = 0; at < keys.size();) {
    auto count = static_cast<uint32_t>(keys.size() - at);
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_delete_batch(fd, keys.data() + at, &count, &opts);
    deleted += count;
    at += count;
    if (err) at++;  // the key that failed
  }
  return deleted;
}

std::optional<vigil_sock_owner> FlowDataPath::owner(const vigil_sock_key& key) const {
  vigil_sock_owner o{};
  if (bpf_map__lookup_elem(impl_->skel->maps.vigil_sock_owners, &key, sizeof key, &o, sizeof o,
                           0) != 0)
    return std::nullopt;
  return o;
}

Expected<std::vector<CgroupTrafficRow>> FlowDataPath::readTraffic() const {
  const size_t ncpu = static_cast<size_t>(possibleCpus());
  const size_t per = sizeof(vigil_cgroup_traffic);  // a multiple of 8: no per-CPU padding
  std::vector<CgroupTrafficRow> out;
  auto s = readAll<vigil_traffic_key>(
      bpf_map__fd(impl_->skel->maps.vigil_cgroup_traffic), per * ncpu, "cgroup traffic counters",
      [&](const vigil_traffic_key* keys, const uint8_t* values, uint32_t n) {
        for (uint32_t i = 0; i < n; i++) {
          CgroupTrafficRow row;
          row.cgroupId = keys[i].cgroup_id;
          row.proto = keys[i].proto;
          for (size_t c = 0; c < ncpu; c++) {
            vigil_cgroup_traffic t;
            std::memcpy(&t, values + (i * ncpu + c) * per, per);
            for (auto [dst, src] : {std::pair{&row.in, &t.in}, std::pair{&row.out, &t.out}}) {
              dst->packets += src->packets;
              dst->bytes += src->bytes;
              dst->payload += src->payload;
            }
          }
          out.push_back(row);
        }
      });
  if (!s) return s.error();
  return out;
}

Expected<std::vector<uint64_t>> FlowDataPath::readStats() const {
  return sumPerCpu(impl_->skel->maps.vigil_flow_stats, VIGIL_FLOW_STAT_MAX, "flow stats");
}

Expected<std::vector<uint64_t>> FlowDataPath::readDropCounts() const {
  return sumPerCpu(impl_->skel->maps.vigil_drop_counts, VIGIL_DROP_REASONS, "drop counters");
}

std::vector<ProgramInfo> FlowDataPath::programs() const {
  auto out = programsOf(impl_->skel->obj);
  for (auto& p : out) {  // section "tc" names no hook: say which
    if (p.name == "vigil_flow_ingress") p.attachTo = "ingress";
    if (p.name == "vigil_flow_egress") p.attachTo = "egress";
  }
  return out;
}

Expected<size_t> FlowDataPath::cleanup() {
  size_t removed = 0;
  // Most interfaces have no clsact qdisc: libbpf would warn about each query.
  libbpf_print_fn_t print = libbpf_set_print(nullptr);
  struct Restore {
    libbpf_print_fn_t print;
    ~Restore() { libbpf_set_print(print); }
  } restore{print};
  for (const auto& [name, ifindex] : nonLoopbackInterfaces()) {
    for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
      LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex), .attach_point = point);
      LIBBPF_OPTS(bpf_tc_opts, query, .handle = kTcHandle, .priority = kTcPriority);
      if (bpf_tc_query(&hook, &query) != 0) continue;
      Fd prog(bpf_prog_get_fd_by_id(query.prog_id));
      bpf_prog_info info{};
      uint32_t len = sizeof info;
      if (prog.get() < 0 || bpf_obj_get_info_by_fd(prog.get(), &info, &len) != 0) continue;
      if (std::string(info.name).rfind("vigil_flow_", 0) != 0) continue;  // not ours
      prog.reset();  // (or this process would be its holder)
      if (!programHolder(query.prog_id).empty()) continue;  // a running agent's
      LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
      if (int err = bpf_tc_detach(&hook, &opts))
        return Error(err, "remove the flow tc filter from " + name);
      removed++;
    }
  }
  return removed;
}

Expected<std::map<uint32_t, std::string>> dropReasonNames() {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (!vmlinux) return Error(errno, "load the kernel's BTF");
  std::map<uint32_t, std::string> out;
  int id = btf__find_by_name_kind(vmlinux, "skb_drop_reason", BTF_KIND_ENUM);
  if (id <= 0) {
    btf__free(vmlinux);
    return Error(ENOENT, "the kernel's BTF has no enum skb_drop_reason");
  }
  const btf_type* t = btf__type_by_id(vmlinux, id);
  const struct btf_enum* e = btf_enum(t);
  const std::string prefix = "SKB_DROP_REASON_";
  for (int i = 0; i < btf_vlen(t); i++) {
    std::string name = btf__name_by_offset(vmlinux, e[i].name_off);
    if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
    out.emplace(static_cast<uint32_t>(e[i].val), std::move(name));
  }
  btf__free(vmlinux);
  return out;
}

}  // namespace vigil::bpf
