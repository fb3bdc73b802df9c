#include "bpf/xdp_datapath.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <vigil/xdp.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "bpf/skeleton.hpp"
#include "common/interfaces.hpp"
#include "common/log.hpp"
#include "common/unique_fd.hpp"
#include "vigil_xdp.skel.h"

namespace vigil::bpf {
namespace {

const char* const kXdpStatNames[] = {
#define VIGIL_XDP_STAT_NAME(id, name) name,
    VIGIL_XDP_STATS(VIGIL_XDP_STAT_NAME)
#undef VIGIL_XDP_STAT_NAME
};
static_assert(std::size(kXdpStatNames) == VIGIL_XDP_STAT_MAX);

using Fd = UniqueFd;

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

Status makeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return Error(errno, "create " + path);
  return {};
}

bool onBpffs(const std::string& path) {
  struct statfs fs {};
  return ::statfs(path.c_str(), &fs) == 0 && fs.f_type == BPF_FS_MAGIC;
}

// bpffs must hold the pins. Where the pin directory is under /sys/fs/bpf and nothing is
// mounted there (a host that never mounted it), mount it, as Cilium and Tetragon do.
Status ensureBpffs(const std::string& pinDir) {
  std::string parent = pinDir.substr(0, pinDir.find_last_of('/'));
  if (parent.empty()) parent = "/";
  if (onBpffs(parent)) return {};
  const std::string standard = "/sys/fs/bpf";
  if (parent == standard || pinDir.rfind(standard + "/", 0) == 0) {
    if (::mount("bpffs", standard.c_str(), "bpf", 0, "mode=0700") != 0)
      return Error(errno, "mount bpffs at " + standard + " (needed to pin XDP enforcement)");
    log::info("mounted bpffs at " + standard);
    if (onBpffs(parent)) return {};
  }
  return Error(0, "pin directory " + pinDir + " is not on a bpf filesystem (mount -t bpf)");
}

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    out.push_back(e.path().filename().string());
  return out;
}

std::string progName(uint32_t id) {
  Fd fd(bpf_prog_get_fd_by_id(id));
  if (fd.get() < 0) return "?";
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return "?";
  return info.name;
}

// The XDP link attached to ifindex, if an XDP program is attached through a link.
Fd findXdpLink(uint32_t ifindex) {
  uint32_t id = 0;
  while (bpf_link_get_next_id(id, &id) == 0) {
    Fd fd(bpf_link_get_fd_by_id(id));
    if (fd.get() < 0) continue;
    bpf_link_info info{};
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) continue;
    if (info.type == BPF_LINK_TYPE_XDP && info.xdp.ifindex == ifindex) return fd;
  }
  return Fd();
}

struct LinkState {
  Fd fd;
  uint32_t ifindex = 0;
  std::string mode;
  uint32_t linkId = 0;
};

}  // namespace

struct XdpDataPath::Impl {
  XdpOptions options;
  vigil_xdp* skel = nullptr;
  std::string dir;  // <pinDir>/xdp, or empty
  bool pinned = false;
  uint32_t gen = 0;
  std::map<std::string, LinkState> links;  // by interface name
  policy::CompiledXdp current;
  bool haveRules = false;
  std::vector<AdoptedSlot> adoptedSlots;
  Fd barrierInner;

  ~Impl() {
    links.clear();  // closes fds; pinned links stay attached
    if (skel) vigil_xdp::destroy(skel);
  }

  std::vector<bpf_map*> pinnedMaps() const {
    auto& m = skel->maps;
    return {m.vigil_xdp_src,   m.vigil_xdp_dst,  m.vigil_xdp_src4,  m.vigil_xdp_dst4,
            m.vigil_xdp_ents,  m.vigil_xdp_ifs,  m.vigil_xdp_state, m.vigil_xdp_ctrs,
            m.vigil_xdp_names, m.vigil_xdp_bkts, m.vigil_xdp_ring,  m.vigil_xdp_stats};
  }
  // The maps that hold one rule set per slot.
  std::vector<bpf_map*> outerMaps() const {
    auto& m = skel->maps;
    return {m.vigil_xdp_ents, m.vigil_xdp_src,  m.vigil_xdp_dst,
            m.vigil_xdp_src4, m.vigil_xdp_dst4, m.vigil_xdp_ifs};
  }
  std::string mapPin(bpf_map* map) const { return dir + "/maps/" + bpf_map__name(map); }
  std::string linkPin(const std::string& ifname) const { return dir + "/links/" + ifname; }
  int progFd() const { return bpf_program__fd(skel->progs.vigil_xdp_filter); }

  uint32_t progId() const {
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(progFd(), &info, &len) != 0) return 0;
    return info.id;
  }

  Status pinMaps() {
    if (dir.empty() || pinned) return {};
    if (auto s = ensureBpffs(options.pinDir); !s) return s;
    if (auto s = makeDir(options.pinDir); !s) return s;
    for (const char* sub : {"", "/maps", "/links"}) {
      if (auto s = makeDir(dir + sub); !s) return s;
    }
    for (bpf_map* map : pinnedMaps()) {
      if (int err = bpf_map__pin(map, mapPin(map).c_str()))
        return Error(err, "pin map " + mapPin(map));
    }
    pinned = true;
    return {};
  }

  Status waitForPrograms() {
    if (barrierInner.get() < 0) {
      barrierInner = Fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, "vigil_xdp_bari", 4, 4, 1, nullptr));
      if (barrierInner.get() < 0) return Error(errno, "create XDP barrier map");
    }
    uint32_t zero = 0;
    int fd = barrierInner.get();
    if (int err = bpf_map__update_elem(skel->maps.vigil_xdp_bar, &zero, sizeof zero, &fd, sizeof fd,
                                       BPF_ANY))
      return Error(err, "wait for XDP programs using the old rule set");
    return {};
  }

  Status adoptLinks() {
    for (const std::string& name : listDir(dir + "/links")) {
      const std::string path = linkPin(name);
      Fd fd(bpf_obj_get(path.c_str()));
      if (fd.get() < 0) {
        log::warn("cannot open pinned XDP link " + path + ": " + std::strerror(errno));
        continue;
      }
      bpf_link_info info{};
      uint32_t len = sizeof info;
      if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0 || info.xdp.ifindex == 0) {
        // The interface is gone; so is the attachment.
        ::unlink(path.c_str());
        continue;
      }
      LIBBPF_OPTS(bpf_link_update_opts, uopts);
      if (bpf_link_update(fd.get(), progFd(), &uopts) != 0)
        return Error(errno, "swap the new XDP program into the link on " + name);
      LIBBPF_OPTS(bpf_xdp_query_opts, q);
      std::string mode = "native";
      if (bpf_xdp_query(static_cast<int>(info.xdp.ifindex), 0, &q) == 0 &&
          q.attach_mode == XDP_ATTACHED_SKB)
        mode = "generic";
      links[name] = LinkState{std::move(fd), info.xdp.ifindex, mode, info.id};
      log::info("adopted XDP enforcement on " + name + " (" + mode + " mode)");
    }
    return {};
  }

  void readAdoptedSlots() {
    vigil_xdp_name n{};
    for (uint32_t slot = 0; slot < VIGIL_XDP_MAX_RULES; slot++) {
      if (bpf_map__lookup_elem(skel->maps.vigil_xdp_names, &slot, sizeof slot, &n, sizeof n, 0))
        continue;
      if (n.policy[0] == '\0') continue;
      n.policy[sizeof n.policy - 1] = n.rule[sizeof n.rule - 1] = '\0';
      adoptedSlots.push_back({slot, n.policy, n.rule});
    }
  }

  // Another program's XDP attachment on ifindex, described ("XDP program "x" (id 7, native
  // mode, held by pid 812 (xdp-loader))"), or empty when there is none (or it is ours).
  std::string foreignProgram(uint32_t ifindex, bpf_xdp_query_opts* q) const {
    if (bpf_xdp_query(static_cast<int>(ifindex), 0, q) != 0 || q->prog_id == 0 ||
        q->prog_id == progId())
      return {};
    const char* mode = q->attach_mode == XDP_ATTACHED_SKB     ? "generic"
                       : q->attach_mode == XDP_ATTACHED_HW    ? "offload"
                       : q->attach_mode == XDP_ATTACHED_MULTI ? "multiple"
                                                              : "native";
    std::string holder = programHolder(q->prog_id);
    return "XDP program \"" + progName(q->prog_id) + "\" (id " + std::to_string(q->prog_id) + ", " +
           mode + " mode" + (holder.empty() ? std::string() : ", held by " + holder) + ")";
  }

  Status refuseForeign(const std::string& ifname, const std::string& who) const {
    return Error(0, "interface " + ifname + " already has " + who +
                        "; Vigil does not replace another program's attachment unless "
                        "vigil-agent runs with --force");
  }

  // Before anything changes: every interface the rule set needs and does not have yet is
  // free, or --force allows taking it.
  Status checkInterfaces(const policy::CompiledXdp& rules) const {
    if (!options.attach || options.force) return {};
    for (const auto& [name, ifindex] : wantedInterfaces(rules)) {
      if (links.count(name)) continue;
      LIBBPF_OPTS(bpf_xdp_query_opts, q);
      if (std::string who = foreignProgram(ifindex, &q); !who.empty())
        return refuseForeign(name, who);
    }
    return {};
  }

  Status attach(const std::string& ifname, uint32_t ifindex) {
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    if (std::string who = foreignProgram(ifindex, &q); !who.empty()) {
      if (!options.force) return refuseForeign(ifname, who);
      log::warn("replacing " + who + " on " + ifname + " (--force)");
      if (Fd other = findXdpLink(ifindex); other.get() >= 0) {
        if (bpf_link_detach(other.get()) != 0)
          return Error(errno, "detach the XDP link of " + who + " from " + ifname);
      } else {
        uint32_t flags = q.attach_mode == XDP_ATTACHED_SKB  ? XDP_FLAGS_SKB_MODE
                         : q.attach_mode == XDP_ATTACHED_HW ? XDP_FLAGS_HW_MODE
                                                            : XDP_FLAGS_DRV_MODE;
        if (bpf_xdp_detach(static_cast<int>(ifindex), flags, nullptr) != 0)
          return Error(errno, "detach " + who + " from " + ifname);
      }
    }

    std::string mode = "native";
    LIBBPF_OPTS(bpf_link_create_opts, native, .flags = XDP_FLAGS_DRV_MODE);
    int fd = bpf_link_create(progFd(), static_cast<int>(ifindex), BPF_XDP, &native);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EINVAL)) {
      int nativeErr = errno;
      LIBBPF_OPTS(bpf_link_create_opts, generic, .flags = XDP_FLAGS_SKB_MODE);
      fd = bpf_link_create(progFd(), static_cast<int>(ifindex), BPF_XDP, &generic);
      if (fd >= 0) {
        mode = "generic";
        log::warn(ifname + ": the driver has no native XDP (" + std::strerror(nativeErr) +
                  "); attached in generic mode, which filters after the kernel has built an "
                  "skb and costs more per packet");
      }
    }
    if (fd < 0) return Error(errno, "attach XDP to " + ifname);
    Fd link(fd);
    if (!dir.empty()) {
      const std::string path = linkPin(ifname);
      ::unlink(path.c_str());  // a stale pin of an interface that was recreated
      if (bpf_obj_pin(link.get(), path.c_str()) != 0) return Error(errno, "pin XDP link " + path);
    }
    bpf_link_info info{};
    uint32_t len = sizeof info;
    bpf_obj_get_info_by_fd(link.get(), &info, &len);
    links[ifname] = LinkState{std::move(link), ifindex, mode, info.id};
    log::info("XDP filter attached to " + ifname + " (" + mode + " mode)");
    return {};
  }

  void detach(const std::string& ifname) {
    auto it = links.find(ifname);
    if (it == links.end()) return;
    bpf_link_detach(it->second.fd.get());
    if (!dir.empty()) ::unlink(linkPin(ifname).c_str());
    links.erase(it);
    log::info("XDP filter detached from " + ifname);
  }

  // The interfaces a rule set needs, by name.
  static std::map<std::string, uint32_t> wantedInterfaces(const policy::CompiledXdp& rules) {
    std::map<std::string, uint32_t> want = rules.interfaces;
    if (rules.allInterfaces) want.merge(nonLoopbackInterfaces());
    return want;
  }

  Status syncInterfaces() {
    if (!options.attach) return {};
    auto want = wantedInterfaces(current);
    for (auto it = links.begin(); it != links.end();) {
      auto w = want.find(it->first);
      if (w == want.end() || w->second != it->second.ifindex) {
        std::string name = (it++)->first;
        detach(name);
      } else {
        ++it;
      }
    }
    for (const auto& [name, ifindex] : want) {
      if (links.count(name)) continue;
      if (auto s = attach(name, ifindex); !s) return s;
    }
    return {};
  }

  Status unpinAll() {
    for (auto it = links.begin(); it != links.end();) {
      std::string name = (it++)->first;
      detach(name);
    }
    if (dir.empty()) return {};
    if (pinned) {
      for (bpf_map* map : pinnedMaps()) bpf_map__unpin(map, nullptr);
    }
    pinned = false;
    return cleanup(options.pinDir);
  }
};

Expected<std::unique_ptr<XdpDataPath>> XdpDataPath::open(const XdpOptions& options) {
  std::unique_ptr<XdpDataPath> self(new XdpDataPath());
  self->impl_ = std::make_unique<Impl>();
  Impl& d = *self->impl_;
  d.options = options;
  d.skel = vigil_xdp::open();
  if (!d.skel) return Error(errno, "open BPF object vigil_xdp");
  auto& m = d.skel->maps;
  if (int err = bpf_map__set_max_entries(m.vigil_xdp_ring, options.ringBufferBytes))
    return Error(err,
                 "size the XDP drop-record ring to " + std::to_string(options.ringBufferBytes));
  if (int err = bpf_map__set_max_entries(m.vigil_xdp_bkts, options.bucketEntries))
    return Error(err, "size the rate-limit table");

  if (!options.pinDir.empty()) {
    // bpffs is mounted and the directories made only when there is something to pin.
    d.dir = options.pinDir + "/xdp";
    self->adopted_ = exists(d.dir + "/maps/vigil_xdp_state");
    if (self->adopted_) {
      // libbpf reuses a pinned map when its type, sizes and flags fit, and fails the load
      // otherwise.
      for (bpf_map* map : d.pinnedMaps()) {
        if (int err = bpf_map__set_pin_path(map, d.mapPin(map).c_str()))
          return Error(err, "use pinned map " + d.mapPin(map));
      }
      d.pinned = true;
    }
  }

  if (int err = vigil_xdp::load(d.skel)) {
    if (self->adopted_)
      return Error(err, "load the XDP filter over the maps pinned in " + d.dir +
                            " (left by an incompatible Vigil version? `vigil-agent --cleanup` "
                            "removes them, and the enforcement they hold)");
    return Error(err, "load the XDP filter (see libbpf log)");
  }

  uint32_t zero = 0;
  vigil_xdp_state st{};
  if (self->adopted_) {
    bpf_map__lookup_elem(m.vigil_xdp_state, &zero, sizeof zero, &st, sizeof st, 0);
    if (st.abi != 0 && st.abi != VIGIL_XDP_ABI_VERSION)
      return Error(0, "the XDP rule set pinned in " + d.dir + " has ABI version " +
                          std::to_string(st.abi) + ", this agent " +
                          std::to_string(VIGIL_XDP_ABI_VERSION) +
                          "; `vigil-agent --cleanup` removes it");
    d.gen = st.gen & 1;
    d.haveRules = st.flags & VIGIL_XDP_S_ACTIVE;
    d.readAdoptedSlots();
    if (auto s = d.adoptLinks(); !s) return s.error();
  } else {
    st.abi = VIGIL_XDP_ABI_VERSION;
    st.sample_per_cpu = 1;
    if (int err = bpf_map__update_elem(m.vigil_xdp_state, &zero, sizeof zero, &st, sizeof st, 0))
      return Error(err, "initialise the XDP state");
  }
  return self;
}

XdpDataPath::~XdpDataPath() = default;

std::vector<AdoptedSlot> XdpDataPath::adoptedSlots() const { return impl_->adoptedSlots; }

namespace {

Fd createInner(bpf_map_type type, const char* name, uint32_t keySize, uint32_t valueSize,
               uint32_t maxEntries, uint32_t flags) {
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
  return Fd(bpf_map_create(type, name, keySize, valueSize, maxEntries ? maxEntries : 1, &opts));
}

using Trie = std::map<policy::LpmPrefix, std::vector<uint32_t>>;

vigil_xdp_candidates candidates(const std::vector<uint32_t>& list) {
  vigil_xdp_candidates value{};
  value.count = static_cast<uint32_t>(std::min<size_t>(list.size(), VIGIL_XDP_CANDIDATES));
  for (uint32_t i = 0; i < value.count; i++) value.entry[i] = list[i];
  return value;
}

// Whether a prefix lies inside ::ffff:0:0/96, the IPv4-mapped space.
bool inIpv4Space(const policy::LpmPrefix& p) {
  if (p.bits < 96) return false;
  for (int i = 0; i < 10; i++)
    if (p.addr[i] != 0) return false;
  return p.addr[10] == 0xff && p.addr[11] == 0xff;
}

// Whether p (shorter than /96) contains all of ::ffff:0:0/96.
bool containsIpv4Space(const policy::LpmPrefix& p) {
  if (p.bits > 96) return false;
  static const std::array<uint8_t, 16> kMapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  for (uint32_t bit = 0; bit < p.bits; bit++) {
    uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((p.addr[bit / 8] & mask) != (kMapped[bit / 8] & mask)) return false;
  }
  return true;
}

// One compiled trie (both families, IPv4 mapped) as the kernel's two: the IPv6 part as it
// is, and the IPv4 part with 4-byte keys, whose /0 holds the candidates of the longest
// shorter prefix that contains all of IPv4 (a packet of any IPv4 address starts there).
struct SplitTrie {
  Trie v6;
  std::vector<std::pair<vigil_xdp_lpm4_key, const std::vector<uint32_t>*>> v4;
};

SplitTrie splitTrie(const Trie& trie) {
  SplitTrie out;
  const std::vector<uint32_t>* root = nullptr;
  uint32_t rootBits = 0;
  bool haveV4Zero = false;
  for (const auto& [prefix, list] : trie) {
    if (inIpv4Space(prefix)) {
      vigil_xdp_lpm4_key key{};
      key.prefixlen = prefix.bits - 96;
      std::memcpy(key.addr, prefix.addr.data() + 12, 4);
      out.v4.emplace_back(key, &list);
      haveV4Zero = haveV4Zero || key.prefixlen == 0;
      continue;
    }
    out.v6.emplace(prefix, list);
    if (containsIpv4Space(prefix) && (!root || prefix.bits >= rootBits)) {
      root = &list;
      rootBits = prefix.bits;
    }
  }
  if (root && !haveV4Zero) out.v4.emplace_back(vigil_xdp_lpm4_key{}, root);
  return out;
}

}  // namespace

Status XdpDataPath::apply(const policy::CompiledXdp& rules,
                          const std::vector<uint32_t>& freshSlots) {
  Impl& d = *impl_;
  auto& m = d.skel->maps;
  uint32_t zero = 0;

  if (rules.empty()) {
    d.current = rules;
    vigil_xdp_state st{d.gen, 0, 1, VIGIL_XDP_ABI_VERSION};
    bpf_map__update_elem(m.vigil_xdp_state, &zero, sizeof zero, &st, sizeof st, BPF_ANY);
    d.haveRules = false;
    return d.unpinAll();
  }
  if (auto s = d.checkInterfaces(rules); !s) return s;
  if (auto s = d.pinMaps(); !s) return s;

  const uint32_t next = 1 - d.gen;
  const uint32_t nEntries = static_cast<uint32_t>(rules.entries.size());
  Fd ents = createInner(BPF_MAP_TYPE_ARRAY, "vigil_xdp_ent", 4, sizeof(vigil_xdp_entry), nEntries,
                        BPF_F_INNER_MAP);
  if (ents.get() < 0) return Error(errno, "create the XDP entry array");
  if (nEntries > 0) {
    std::vector<uint32_t> keys(nEntries);
    for (uint32_t i = 0; i < nEntries; i++) keys[i] = i;
    uint32_t count = nEntries;
    LIBBPF_OPTS(bpf_map_batch_opts, bopts);
    if (bpf_map_update_batch(ents.get(), keys.data(), rules.entries.data(), &count, &bopts) != 0)
      return Error(errno, "write the XDP entries");
  }
  // An LPM trie of candidate lists; absent (-1) when it would be empty.
  auto makeTrie = [](uint32_t keySize, size_t n, const char* what, Fd& out) -> Status {
    if (n == 0) return {};
    out = createInner(BPF_MAP_TYPE_LPM_TRIE, "vigil_xdp_trie", keySize,
                      sizeof(vigil_xdp_candidates), static_cast<uint32_t>(n), BPF_F_NO_PREALLOC);
    if (out.get() < 0) return Error(errno, std::string("create the ") + what + " address trie");
    return {};
  };
  auto trie = [&](const Trie& t, const char* what, Fd& out6, Fd& out4) -> Status {
    SplitTrie split = splitTrie(t);
    if (auto s = makeTrie(sizeof(vigil_xdp_lpm_key), split.v6.size(), what, out6); !s) return s;
    if (auto s = makeTrie(sizeof(vigil_xdp_lpm4_key), split.v4.size(), what, out4); !s) return s;
    for (const auto& [prefix, list] : split.v6) {
      vigil_xdp_lpm_key key{};
      key.prefixlen = prefix.bits;
      std::memcpy(key.addr, prefix.addr.data(), 16);
      vigil_xdp_candidates value = candidates(list);
      if (bpf_map_update_elem(out6.get(), &key, &value, BPF_ANY) != 0)
        return Error(errno, std::string("write the ") + what + " IPv6 address trie");
    }
    for (const auto& [key, list] : split.v4) {
      vigil_xdp_candidates value = candidates(*list);
      if (bpf_map_update_elem(out4.get(), &key, &value, BPF_ANY) != 0)
        return Error(errno, std::string("write the ") + what + " IPv4 address trie");
    }
    return {};
  };
  Fd src, dst, src4, dst4, ifs;
  if (auto s = trie(rules.sourceTrie, "source", src, src4); !s) return s;
  if (auto s = trie(rules.destinationTrie, "destination", dst, dst4); !s) return s;
  if (rules.scoped()) {
    ifs = createInner(BPF_MAP_TYPE_HASH, "vigil_xdp_scope", 4, 8,
                      static_cast<uint32_t>(rules.scopes.size()), 0);
    if (ifs.get() < 0) return Error(errno, "create the XDP interface table");
    for (const auto& [ifindex, bits] : rules.scopes) {
      if (bpf_map_update_elem(ifs.get(), &ifindex, &bits, BPF_ANY) != 0)
        return Error(errno, "write the XDP interface table");
    }
  }

  // Into the inactive slot of each outer map. Absent parts are removed from that slot.
  auto place = [&](bpf_map* outer, const Fd& inner, const char* what) -> Status {
    if (inner.get() >= 0) {
      int fd = inner.get();
      if (int err = bpf_map__update_elem(outer, &next, sizeof next, &fd, sizeof fd, BPF_ANY))
        return Error(err, std::string("install the new ") + what);
    } else {
      int err = bpf_map__delete_elem(outer, &next, sizeof next, 0);
      if (err && err != -ENOENT) return Error(err, std::string("clear the old ") + what);
    }
    return {};
  };
  if (auto s = place(m.vigil_xdp_ents, ents, "XDP entries"); !s) return s;
  if (auto s = place(m.vigil_xdp_src, src, "source trie"); !s) return s;
  if (auto s = place(m.vigil_xdp_dst, dst, "destination trie"); !s) return s;
  if (auto s = place(m.vigil_xdp_src4, src4, "IPv4 source trie"); !s) return s;
  if (auto s = place(m.vigil_xdp_dst4, dst4, "IPv4 destination trie"); !s) return s;
  if (auto s = place(m.vigil_xdp_ifs, ifs, "interface table"); !s) return s;

  // Names (so that a restarted agent keeps the counters with their rules), fresh counters.
  std::set<uint32_t> before;
  for (const auto& [slot, _] : d.current.slots) before.insert(slot);
  for (const AdoptedSlot& a : d.adoptedSlots) before.insert(a.slot);
  for (const auto& [slot, ref] : rules.slots) {
    vigil_xdp_name n{};
    std::strncpy(n.policy, ref.policy.c_str(), sizeof n.policy - 1);
    std::strncpy(n.rule, ref.rule.c_str(), sizeof n.rule - 1);
    if (int err = bpf_map__update_elem(m.vigil_xdp_names, &slot, sizeof slot, &n, sizeof n, 0))
      return Error(err, "write XDP rule names");
    before.erase(slot);
  }
  for (uint32_t slot : before) {
    vigil_xdp_name n{};
    bpf_map__update_elem(m.vigil_xdp_names, &slot, sizeof slot, &n, sizeof n, 0);
  }
  int ncpu = libbpf_num_possible_cpus();
  std::vector<vigil_xdp_counter> zeros(static_cast<size_t>(ncpu > 0 ? ncpu : 1));
  for (uint32_t slot : freshSlots) {
    bpf_map__update_elem(m.vigil_xdp_ctrs, &slot, sizeof slot, zeros.data(),
                         zeros.size() * sizeof zeros[0], 0);
  }

  // The flip: one update, read once per packet.
  vigil_xdp_state previous{};
  bpf_map__lookup_elem(m.vigil_xdp_state, &zero, sizeof zero, &previous, sizeof previous, 0);
  vigil_xdp_state st{};
  st.gen = next;
  st.flags = VIGIL_XDP_S_ACTIVE | (src.get() >= 0 || src4.get() >= 0 ? VIGIL_XDP_S_SRC : 0) |
             (dst.get() >= 0 || dst4.get() >= 0 ? VIGIL_XDP_S_DST : 0) |
             (rules.scoped() ? VIGIL_XDP_S_SCOPED : 0);
  // The budget is per CPU: the rule's share on each CPU that can receive packets now (online,
  // not possible: a host with many possible CPUs and few online would report too little).
  const long online = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  st.sample_per_cpu = std::max<uint32_t>(
      1, static_cast<uint32_t>((d.options.samplesPerSecond + online - 1) / online));
  st.abi = VIGIL_XDP_ABI_VERSION;
  if (int err = bpf_map__update_elem(m.vigil_xdp_state, &zero, sizeof zero, &st, sizeof st, 0))
    return Error(err, "switch to the new XDP rule set");
  const uint32_t old = d.gen;
  policy::CompiledXdp previousRules = std::move(d.current);
  std::set<std::string> linkedBefore;
  for (const auto& [name, _] : d.links) linkedBefore.insert(name);
  d.gen = next;
  d.current = rules;

  // Interfaces last: attaching is what can still fail (an interface that went away, another
  // program that took it since the check). Then the old rule set, still in its slot, goes
  // back into force, and the interfaces this apply attached are detached again.
  Status attached = d.syncInterfaces();
  if (!attached) {
    bpf_map__update_elem(m.vigil_xdp_state, &zero, sizeof zero, &previous, sizeof previous, 0);
    d.gen = old;
    d.current = std::move(previousRules);
    for (auto it = d.links.begin(); it != d.links.end();) {
      std::string name = (it++)->first;
      if (!linkedBefore.count(name)) d.detach(name);
    }
    for (uint32_t slot : freshSlots) {
      vigil_xdp_name n{};
      bpf_map__update_elem(m.vigil_xdp_names, &slot, sizeof slot, &n, sizeof n, 0);
    }
    if (auto s = d.waitForPrograms(); !s) return s;
    for (bpf_map* outer : d.outerMaps()) bpf_map__delete_elem(outer, &next, sizeof next, 0);
    return attached;
  }
  d.haveRules = true;
  d.adoptedSlots.clear();

  // No packet may still be reading the old slot when it is emptied (and later refilled).
  if (auto s = d.waitForPrograms(); !s) return s;
  for (bpf_map* outer : d.outerMaps()) {
    bpf_map__delete_elem(outer, &old, sizeof old, 0);
  }
  return {};
}

Status XdpDataPath::refreshInterfaces() {
  if (!impl_->haveRules) return {};
  return impl_->syncInterfaces();
}

std::vector<XdpAttachment> XdpDataPath::attachments() const {
  std::vector<XdpAttachment> out;
  for (const auto& [name, l] : impl_->links) out.push_back({name, l.ifindex, l.mode, l.linkId});
  return out;
}

Expected<std::map<uint32_t, XdpRuleCounters>> XdpDataPath::readCounters() const {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return Error(ncpu, "count possible CPUs");
  std::vector<vigil_xdp_counter> perCpu(static_cast<size_t>(ncpu));
  std::map<uint32_t, XdpRuleCounters> out;
  std::set<uint32_t> slots;
  for (const auto& [slot, _] : impl_->current.slots) slots.insert(slot);
  for (const AdoptedSlot& a : impl_->adoptedSlots) slots.insert(a.slot);
  for (uint32_t slot : slots) {
    if (int err = bpf_map__lookup_elem(impl_->skel->maps.vigil_xdp_ctrs, &slot, sizeof slot,
                                       perCpu.data(), perCpu.size() * sizeof perCpu[0], 0))
      return Error(err, "read XDP rule counters");
    XdpRuleCounters& c = out[slot];
    for (const auto& v : perCpu) {
      c.packets += v.packets;
      c.bytes += v.bytes;
      c.limitedPackets += v.limited_packets;
      c.limitedBytes += v.limited_bytes;
    }
  }
  return out;
}

Expected<std::vector<uint64_t>> XdpDataPath::readStats() const {
  return sumPerCpu(impl_->skel->maps.vigil_xdp_stats, VIGIL_XDP_STAT_MAX, "XDP stats");
}

const char* XdpDataPath::statName(size_t id) {
  return id < VIGIL_XDP_STAT_MAX ? kXdpStatNames[id] : "unknown";
}

int XdpDataPath::programFd() const { return impl_->progFd(); }
int XdpDataPath::eventsMapFd() const { return bpf_map__fd(impl_->skel->maps.vigil_xdp_ring); }
uint32_t XdpDataPath::programId() const { return impl_->progId(); }

Status XdpDataPath::removeAll() {
  impl_->current = {};
  impl_->haveRules = false;
  return impl_->unpinAll();
}

Status XdpDataPath::cleanup(const std::string& pinDir) {
  const std::string dir = pinDir + "/xdp";
  if (!exists(dir)) return {};
  for (const std::string& name : listDir(dir + "/links")) {
    const std::string path = dir + "/links/" + name;
    Fd fd(bpf_obj_get(path.c_str()));
    if (fd.get() >= 0) bpf_link_detach(fd.get());
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error(errno, "remove " + path);
  }
  for (const std::string& name : listDir(dir + "/maps")) {
    const std::string path = dir + "/maps/" + name;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error(errno, "remove " + path);
  }
  for (const std::string& sub : {dir + "/links", dir + "/maps", dir}) {
    if (::rmdir(sub.c_str()) != 0 && errno != ENOENT) return Error(errno, "remove " + sub);
  }
  ::rmdir(pinDir.c_str());  // only when empty: other parts of Vigil may pin there too
  return {};
}

}  // namespace vigil::bpf
