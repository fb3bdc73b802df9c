#include "events/xdp_drops.hpp"

#include <vigil/xdp.h>

#include <cstring>

#include "events/net_names.hpp"

namespace vigil::events {
namespace {

const char* verdictName(uint8_t v) {
  switch (v) {
    case VIGIL_XDP_V_DROPPED:
      return "dropped";
    case VIGIL_XDP_V_AUDIT:
      return "audit";
    case VIGIL_XDP_V_RATE_DROPPED:
      return "rate-limited";
    case VIGIL_XDP_V_RATE_AUDIT:
      return "rate-limit-audit";
    default:
      return nullptr;
  }
}

}  // namespace

Expected<v1::Event> decodeXdpDrop(std::span<const uint8_t> raw, const XdpDropNames& names,
                                  const Clock& clock, const std::string& nodeName) {
  vigil_xdp_drop_record r{};
  if (raw.size() < sizeof r)
    return Error(EBADMSG, "malformed XDP drop record: " + std::to_string(raw.size()) +
                              " bytes, expected " + std::to_string(sizeof r));
  std::memcpy(&r, raw.data(), sizeof r);
  if (r.hdr.type != VIGIL_REC_XDP_DROP)
    return Error(EBADMSG, "malformed XDP drop record: type " + std::to_string(r.hdr.type));
  if (r.hdr.version != VIGIL_XDP_ABI_VERSION)
    return Error(EBADMSG, "XDP drop record of ABI version " + std::to_string(r.hdr.version) +
                              ", expected " + std::to_string(VIGIL_XDP_ABI_VERSION));
  if (r.hdr.size != sizeof r || raw.size() != sizeof r)
    return Error(EBADMSG, "malformed XDP drop record: size " + std::to_string(r.hdr.size) +
                              " in a " + std::to_string(raw.size()) + "-byte record");
  if (r.family != 4 && r.family != 6)
    return Error(EBADMSG, "malformed XDP drop record: family " + std::to_string(r.family));
  const char* verdict = verdictName(r.verdict);
  if (!verdict)
    return Error(EBADMSG, "malformed XDP drop record: verdict " + std::to_string(r.verdict));

  v1::Event ev;
  *ev.mutable_time() = clock.toTimestamp(r.hdr.ktime_ns);
  ev.set_node_name(nodeName);
  ev.set_type(v1::EVENT_TYPE_DROP);
  v1::DropEvent* d = ev.mutable_drop();
  if (auto rule = names.rule ? names.rule(r.slot) : std::nullopt) {
    d->set_policy(rule->first);
    d->set_rule(rule->second);
  } else {
    d->set_rule("slot " + std::to_string(r.slot) + " (rule since removed)");
  }
  d->set_verdict(verdict);
  d->set_ifindex(r.ifindex);
  std::string ifname = names.interface ? names.interface(r.ifindex) : std::string();
  d->set_interface(ifname.empty() ? "if" + std::to_string(r.ifindex) : ifname);
  d->set_protocol(protocolName(r.proto));
  const bool v4 = r.family == 4;
  d->set_source_ip(ipString(r.src, v4));
  d->set_destination_ip(ipString(r.dst, v4));
  d->set_source_port(r.src_port);
  d->set_destination_port(r.dst_port);
  d->set_length(r.pkt_len);
  d->set_fragment(r.pkt_flags & VIGIL_XDP_P_FRAGMENT);
  d->set_l4_missing(r.pkt_flags & VIGIL_XDP_P_NO_L4);
  d->set_vlan(r.pkt_flags & VIGIL_XDP_P_VLAN);
  d->set_suppressed(r.suppressed);
  return ev;
}

}  // namespace vigil::events
