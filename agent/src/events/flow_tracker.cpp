#include "events/flow_tracker.hpp"

#include <cstring>
#include <string_view>

#include "events/net_names.hpp"

namespace vigil::events {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kFin = VIGIL_TCP_FIN;
constexpr uint8_t kRst = VIGIL_TCP_RST;

// Checks a record's header against the ABI and copies it out.
template <typename Record>
Expected<Record> readRecord(std::span<const uint8_t> raw, uint16_t type, const char* what) {
  Record r{};
  if (raw.size() != sizeof r)
    return Error(EBADMSG, std::string("malformed ") + what + " record: " +
                              std::to_string(raw.size()) + " bytes, expected " +
                              std::to_string(sizeof r));
  std::memcpy(&r, raw.data(), sizeof r);
  if (r.hdr.type != type)
    return Error(EBADMSG, std::string("malformed ") + what + " record: type " +
                              std::to_string(r.hdr.type));
  if (r.hdr.version != VIGIL_FLOW_ABI_VERSION)
    return Error(EBADMSG, std::string(what) + " record of ABI version " +
                              std::to_string(r.hdr.version) + ", expected " +
                              std::to_string(VIGIL_FLOW_ABI_VERSION));
  if (r.hdr.size != sizeof r)
    return Error(EBADMSG, std::string("malformed ") + what + " record: size " +
                              std::to_string(r.hdr.size) + " in a " +
                              std::to_string(raw.size()) + "-byte record");
  return r;
}

void setCounters(v1::FlowCounters* out, const vigil_flow_counters& c) {
  out->set_packets(c.packets);
  out->set_bytes(c.bytes);
  out->set_payload_bytes(c.payload);
}

void setFlags(google::protobuf::RepeatedPtrField<std::string>* out, uint8_t flags) {
  for (auto& name : tcpFlagNames(flags)) out->Add(std::move(name));
}

bool isIcmp(uint8_t proto) { return proto == 1 || proto == 58; }

// A flow event with both ends attributed takes about 1.2 KiB of arena (measured).
constexpr size_t kFlowEventBlock = 1536;

std::shared_ptr<v1::Event> newFlowEvent(const Clock& clock, uint64_t timeNs,
                                        const std::string& node) {
  auto ev = makeEvent(kFlowEventBlock);
  *ev->mutable_time() = clock.toTimestamp(timeNs);
  ev->set_node_name(node);
  ev->set_type(v1::EVENT_TYPE_FLOW);
  return ev;
}

}  // namespace

std::vector<std::string> tcpFlagNames(uint8_t flags) {
  static constexpr std::pair<uint8_t, const char*> kNames[] = {
      {VIGIL_TCP_SYN, "SYN"}, {VIGIL_TCP_ACK, "ACK"}, {VIGIL_TCP_PSH, "PSH"},
      {VIGIL_TCP_FIN, "FIN"}, {VIGIL_TCP_RST, "RST"}, {VIGIL_TCP_URG, "URG"},
      {VIGIL_TCP_ECE, "ECE"}, {VIGIL_TCP_CWR, "CWR"}};
  std::vector<std::string> out;
  for (auto [bit, name] : kNames)
    if (flags & bit) out.emplace_back(name);
  return out;
}

size_t FlowTracker::KeyHash::operator()(const vigil_flow_key& k) const {
  return std::hash<std::string_view>()(
      std::string_view(reinterpret_cast<const char*>(&k), sizeof k));
}

bool FlowTracker::KeyEq::operator()(const vigil_flow_key& a, const vigil_flow_key& b) const {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

FlowTracker::FlowTracker(FlowTrackerOptions options, Clock clock, FlowContext context)
    : options_(std::move(options)), clock_(clock), context_(std::move(context)) {}

std::optional<vigil_sock_owner> FlowTracker::ownerOf(const uint8_t (&local)[16], uint16_t lport,
                                                     const uint8_t (&remote)[16], uint16_t rport,
                                                     uint8_t proto) const {
  if (!context_.owner) return std::nullopt;
  // The connected socket, then one bound to this address only, then to the port on any address.
  vigil_sock_key k{};
  std::memcpy(k.laddr, local, 16);
  std::memcpy(k.raddr, remote, 16);
  k.lport = lport;
  k.rport = rport;
  k.proto = proto;
  auto o = context_.owner(k);
  if (!o) {
    std::memset(k.raddr, 0, 16);
    k.rport = 0;
    o = context_.owner(k);
  }
  if (!o) {
    std::memset(k.laddr, 0, 16);
    o = context_.owner(k);
  }
  return o;
}

bool FlowTracker::describe(const vigil_sock_owner& o, v1::FlowEndpoint* out) const {
  out->set_pid(o.tgid);
  out->set_uid(o.uid);
  out->set_comm(std::string(o.comm, strnlen(o.comm, sizeof o.comm)));
  out->set_cgroup_id(o.cgroup_id);
  return context_.describe ? context_.describe(out) : true;
}

void FlowTracker::attribute(std::unique_ptr<Attribution>& a, const uint8_t (&local)[16],
                            uint16_t lport, const uint8_t (&remote)[16], uint16_t rport,
                            uint8_t proto) {
  if (!a) {
    auto o = ownerOf(local, lport, remote, rport, proto);
    if (!o) return;
    a = std::make_unique<Attribution>();
    a->owner = *o;
  } else if (a->complete) {
    return;
  }
  // Newly found, or a process or cgroup the agent had not learned of at the previous event.
  v1::FlowEndpoint e;
  a->complete = describe(a->owner, &e);
  a->binary = e.binary();
  a->execId = e.exec_id();
  a->cgroupPath = e.cgroup_path();
  if (e.has_workload()) {
    // The host's workload is the same everywhere: one shared copy.
    static const auto host = [] {
      auto w = std::make_shared<v1::Workload>();
      w->set_kind("host");
      return std::shared_ptr<const v1::Workload>(std::move(w));
    }();
    a->workload = e.workload().kind() == "host" && e.workload().ByteSizeLong() == host->ByteSizeLong()
                      ? host
                      : std::make_shared<const v1::Workload>(e.workload());
  }
}

EventPtr FlowTracker::flowEvent(const vigil_flow_key& key, const vigil_flow_value& v, Known& k,
                                v1::FlowEventType type, uint64_t timeNs,
                                const std::string& endReason) {
  // The source is the end that sent the first packet.
  const bool aIsSource = v.origin == VIGIL_FLOW_AB;
  const auto& src = aIsSource ? key.a_addr : key.b_addr;
  const auto& dst = aIsSource ? key.b_addr : key.a_addr;
  const uint16_t sport = aIsSource ? key.a_port : key.b_port;
  const uint16_t dport = aIsSource ? key.b_port : key.a_port;
  attribute(k.source, src, sport, dst, dport, key.proto);
  attribute(k.destination, dst, dport, src, sport, key.proto);

  auto ev = newFlowEvent(clock_, timeNs, options_.nodeName);
  v1::Flow* f = ev->mutable_flow();
  f->set_event_type(type);
  f->set_verdict(v1::FORWARDED);
  f->set_protocol(protocolName(key.proto));
  for (auto [e, a, ip, port] : {std::tuple{f->mutable_source(), k.source.get(), &src, sport},
                                std::tuple{f->mutable_destination(), k.destination.get(), &dst,
                                           dport}}) {
    e->set_ip(ipString(*ip));
    e->set_port(port);
    if (!a) continue;
    e->set_pid(a->owner.tgid);
    e->set_uid(a->owner.uid);
    e->set_comm(std::string(a->owner.comm, strnlen(a->owner.comm, sizeof a->owner.comm)));
    e->set_cgroup_id(a->owner.cgroup_id);
    e->set_binary(a->binary);
    e->set_exec_id(a->execId);
    e->set_cgroup_path(a->cgroupPath);
    if (a->workload) *e->mutable_workload() = *a->workload;
  }
  f->set_ifindex(key.ifindex);
  std::string ifname = context_.interface ? context_.interface(key.ifindex) : std::string();
  f->set_interface(ifname.empty() ? "if" + std::to_string(key.ifindex) : ifname);
  f->set_direction(v.hook == VIGIL_FLOW_EGRESS ? "egress" : "ingress");
  const int sent = v.origin & 1;
  const int reply = 1 - sent;
  if (key.proto == kTcp) {
    setFlags(f->mutable_tcp_flags(), static_cast<uint8_t>(v.tcp_flags >> (8 * sent)));
    setFlags(f->mutable_reply_tcp_flags(), static_cast<uint8_t>(v.tcp_flags >> (8 * reply)));
  }
  setCounters(f->mutable_sent(), v.dir[sent]);
  setCounters(f->mutable_reply(), v.dir[reply]);
  *f->mutable_first_seen() = clock_.toTimestamp(v.first_ns);
  *f->mutable_last_seen() = clock_.toTimestamp(v.last_ns);
  f->set_end_reason(endReason);
  if (isIcmp(key.proto)) {
    f->set_icmp_type(v.icmp_type);
    f->set_icmp_code(v.icmp_code);
  }
  return ev;
}

Expected<EventPtr> FlowTracker::onRecord(std::span<const uint8_t> raw) {
  if (raw.size() < sizeof(vigil_record_hdr))
    return Error(EBADMSG, "malformed flow record: " + std::to_string(raw.size()) + " bytes");
  vigil_record_hdr hdr;
  std::memcpy(&hdr, raw.data(), sizeof hdr);
  if (hdr.type == VIGIL_REC_FLOW_NEW) {
    auto r = readRecord<vigil_flow_new_record>(raw, VIGIL_REC_FLOW_NEW, "new-flow");
    if (!r) return r.error();
    if (r->origin > 1 || r->hook > 1)
      return Error(EBADMSG, "malformed new-flow record: origin " + std::to_string(r->origin) +
                                ", hook " + std::to_string(r->hook));
    vigil_flow_value v{};
    v.first_ns = v.last_ns = r->hdr.ktime_ns;
    v.dir[r->origin] = r->first;
    v.tcp_flags = static_cast<uint32_t>(r->tcp_flags) << (8 * r->origin);
    v.origin = r->origin;
    v.hook = r->hook;
    v.icmp_type = r->icmp_type;
    v.icmp_code = r->icmp_code;
    if (auto e = ended_.find(r->key); e != ended_.end() && e->second.first == r->hdr.ktime_ns)
      return EventPtr();  // a scan announced and ended it before this record was read
    auto [it, fresh] = known_.try_emplace(r->key);
    Known& k = it->second;
    if (!fresh) return EventPtr();  // a scan announced it first
    k.last = v;
    k.lastReportNs = r->hdr.ktime_ns;
    k.reportedLastNs = v.last_ns;
    k.scan = scan_;
    return flowEvent(r->key, v, k, v1::FLOW_NEW, r->hdr.ktime_ns, "");
  }
  if (hdr.type == VIGIL_REC_KERNEL_DROP) {
    auto r = readRecord<vigil_drop_record>(raw, VIGIL_REC_KERNEL_DROP, "kernel drop");
    if (!r) return r.error();
    auto ev = newFlowEvent(clock_, r->hdr.ktime_ns, options_.nodeName);
    v1::Flow* f = ev->mutable_flow();
    f->set_event_type(v1::FLOW_DROP);
    f->set_verdict(v1::DROPPED);
    std::string reason = context_.dropReason ? context_.dropReason(r->reason) : std::string();
    f->set_drop_reason(reason.empty() ? "reason " + std::to_string(r->reason) : reason);
    f->set_ifindex(r->ifindex);
    if (r->ifindex != 0 && r->netns == 0) {
      f->set_interface("if" + std::to_string(r->ifindex));  // of a namespace the kernel hid
    } else if (r->ifindex != 0 && r->netns != options_.netns) {
      f->set_interface("netns:" + std::to_string(r->netns) + "/if" + std::to_string(r->ifindex));
    } else if (r->ifindex != 0) {
      std::string ifname = context_.interface ? context_.interface(r->ifindex) : std::string();
      f->set_interface(ifname.empty() ? "if" + std::to_string(r->ifindex) : ifname);
    }
    f->set_length(r->len);
    f->set_suppressed(r->suppressed);
    if (r->flags & VIGIL_DROP_F_IP) {
      f->set_protocol(protocolName(r->proto));
      const bool ports = (r->flags & VIGIL_DROP_F_PORTS) && !isIcmp(r->proto);
      f->mutable_source()->set_ip(ipString(r->saddr));
      f->mutable_destination()->set_ip(ipString(r->daddr));
      if (ports) {
        f->mutable_source()->set_port(r->sport);
        f->mutable_destination()->set_port(r->dport);
        if (auto o = ownerOf(r->saddr, r->sport, r->daddr, r->dport, r->proto))
          describe(*o, f->mutable_source());
        if (auto o = ownerOf(r->daddr, r->dport, r->saddr, r->sport, r->proto))
          describe(*o, f->mutable_destination());
      }
      if (r->proto == kTcp) setFlags(f->mutable_tcp_flags(), r->tcp_flags);
      if (isIcmp(r->proto) && (r->flags & VIGIL_DROP_F_PORTS)) {
        f->set_icmp_type(r->icmp_type);
        f->set_icmp_code(r->icmp_code);
      }
    }
    return EventPtr(std::move(ev));
  }
  return Error(EBADMSG, "not a flow record: type " + std::to_string(hdr.type));
}

FlowScanResult FlowTracker::onScan(
    std::span<const vigil_flow_entry> entries, uint64_t scanStartNs,
    uint64_t nowNs) {
  FlowScanResult out;
  const uint64_t scan = ++scan_;
  auto elapsed = [&](uint64_t since) { return nowNs > since ? nowNs - since : 0; };
  for (const auto& [key, v] : entries) {
    auto [it, fresh] = known_.try_emplace(key);
    Known& k = it->second;
    k.scan = scan;
    if (fresh) {
      // Its new-flow record was lost (ring full) or the flow predates the agent.
      k.lastReportNs = nowNs;
      k.reportedLastNs = v.last_ns;
      out.events.push_back(flowEvent(key, v, k, v1::FLOW_NEW, v.first_ns, ""));
    }
    k.last = v;
    const uint64_t quiet = elapsed(v.last_ns);
    std::string end;
    if (key.proto == kTcp) {
      const uint8_t ab = v.tcp_flags & 0xff, ba = (v.tcp_flags >> 8) & 0xff;
      const bool rst = (ab | ba) & kRst;
      const bool fin = (ab & kFin) && (ba & kFin);
      if ((rst || fin) && quiet >= static_cast<uint64_t>(options_.tcpLinger.count())) {
        end = rst ? "rst" : "fin";
      } else if (quiet >= static_cast<uint64_t>(options_.tcpIdleTimeout.count())) {
        end = "idle";
      }
    } else if (quiet >= static_cast<uint64_t>(options_.idleTimeout.count())) {
      end = "idle";
    }
    if (!end.empty()) {
      out.events.push_back(flowEvent(key, v, k, v1::FLOW_END, nowNs, end));
      out.expired.push_back(key);
      remember(key, v.first_ns, nowNs);
      known_.erase(it);
      continue;
    }
    if (!fresh && elapsed(k.lastReportNs) >= static_cast<uint64_t>(options_.updateInterval.count()) &&
        v.last_ns > k.reportedLastNs) {
      k.lastReportNs = nowNs;
      k.reportedLastNs = v.last_ns;
      out.events.push_back(flowEvent(key, v, k, v1::FLOW_UPDATE, nowNs, ""));
    }
  }
  // Known flows the scan did not see: evicted by the kernel (those created after the read
  // began may simply have been missed by it, and wait for the next scan).
  // Flow times come from the kernel's coarse clock, up to a tick behind: allow for it.
  constexpr uint64_t kCoarseClockNs = 20'000'000;
  for (auto it = known_.begin(); it != known_.end();) {
    if (it->second.scan == scan || it->second.last.first_ns + kCoarseClockNs >= scanStartNs) {
      ++it;
      continue;
    }
    evictions_++;
    out.events.push_back(
        flowEvent(it->first, it->second.last, it->second, v1::FLOW_END, nowNs, "evicted"));
    remember(it->first, it->second.last.first_ns, nowNs);
    it = known_.erase(it);
  }
  forgetEnded(nowNs);
  return out;
}

// A queued record is read within moments: ten seconds is ample.
constexpr uint64_t kEndedMemoryNs = 10'000'000'000ull;

void FlowTracker::remember(const vigil_flow_key& key, uint64_t firstNs, uint64_t nowNs) {
  ended_[key] = {firstNs, nowNs};
  endedOrder_.emplace_back(nowNs, key);
}

void FlowTracker::forgetEnded(uint64_t nowNs) {
  while (!endedOrder_.empty() && nowNs - endedOrder_.front().first > kEndedMemoryNs) {
    const auto& [endedNs, key] = endedOrder_.front();
    // A key that ended again later is forgotten with its newer entry.
    if (auto it = ended_.find(key); it != ended_.end() && it->second.second == endedNs)
      ended_.erase(it);
    endedOrder_.pop_front();
  }
}

EventPtr FlowTracker::fromXdpDrop(const v1::Event& drop) {
  const v1::DropEvent& d = drop.drop();
  auto ev = makeEvent(kFlowEventBlock);
  *ev->mutable_time() = drop.time();
  ev->set_node_name(drop.node_name());
  ev->set_type(v1::EVENT_TYPE_FLOW);
  v1::Flow* f = ev->mutable_flow();
  f->set_event_type(v1::FLOW_DROP);
  const bool audit = d.verdict() == "audit" || d.verdict() == "rate-limit-audit";
  const bool rate = d.verdict() == "rate-limited" || d.verdict() == "rate-limit-audit";
  f->set_verdict(audit ? v1::AUDIT : v1::DROPPED);
  f->set_drop_reason(rate ? "VIGIL_XDP_RATE_LIMIT" : "VIGIL_XDP_POLICY");
  f->set_policy(d.policy());
  f->set_rule(d.rule());
  f->set_protocol(d.protocol());
  f->mutable_source()->set_ip(d.source_ip());
  f->mutable_source()->set_port(d.source_port());
  f->mutable_destination()->set_ip(d.destination_ip());
  f->mutable_destination()->set_port(d.destination_port());
  f->set_interface(d.interface());
  f->set_ifindex(d.ifindex());
  f->set_direction("ingress");
  f->set_length(d.length());
  f->set_suppressed(d.suppressed());
  return ev;
}

}  // namespace vigil::events
