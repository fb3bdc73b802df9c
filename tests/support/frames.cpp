#include "support/frames.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace vigil::testing {
namespace {

// An IPv6 option type from the RFC 4727 experimental range whose two high bits say "skip if
// unknown"; it fills long option headers, since Linux drops runs of more than 7 padding bytes.
constexpr uint8_t kExperimentalSkipOption = 0x1e;
constexpr uint8_t kPad1 = 0;
constexpr uint8_t kPadN = 1;
constexpr uint16_t kLocalExperimentalEthertype = 0x88b5;

void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void put32(std::vector<uint8_t>& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v >> 16));
  put16(out, static_cast<uint16_t>(v));
}

void set16(std::vector<uint8_t>& out, size_t at, uint16_t v) {
  out[at] = static_cast<uint8_t>(v >> 8);
  out[at + 1] = static_cast<uint8_t>(v);
}

void append(std::vector<uint8_t>& out, std::span<const uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// One's complement sum of big-endian 16-bit words, not yet folded.
uint32_t sumWords(std::span<const uint8_t> bytes, uint32_t sum = 0) {
  size_t i = 0;
  for (; i + 1 < bytes.size(); i += 2) sum += (uint32_t{bytes[i]} << 8) | bytes[i + 1];
  if (i < bytes.size()) sum += uint32_t{bytes[i]} << 8;
  return sum;
}

uint16_t foldComplement(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

void checkExtLength(size_t length, const char* what) {
  if (length < 8 || length > 2048 || length % 8 != 0) {
    throw std::invalid_argument(std::string(what) + " length " + std::to_string(length) +
                                ": must be a multiple of 8 in 8..2048");
  }
}

// Fills `length` bytes of TLV options that a receiver skips: experimental options while more
// than 7 bytes remain, then Pad1/PadN.
void appendFillOptions(std::vector<uint8_t>& out, size_t length) {
  while (length > 7) {
    size_t data = std::min<size_t>(length - 2, 255);
    if (length - (data + 2) == 1) --data;  // never leave a lone byte after a full option
    out.push_back(kExperimentalSkipOption);
    out.push_back(static_cast<uint8_t>(data));
    out.insert(out.end(), data, 0);
    length -= data + 2;
  }
  if (length == 1) {
    out.push_back(kPad1);
  } else if (length >= 2) {
    out.push_back(kPadN);
    out.push_back(static_cast<uint8_t>(length - 2));
    out.insert(out.end(), length - 2, 0);
  }
}

}  // namespace

Mac parseMac(const std::string& text) {
  Mac mac{};
  unsigned int b[6];
  char tail = 0;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4],
                  &b[5], &tail) != 6) {
    throw std::invalid_argument("malformed MAC address '" + text + "'");
  }
  for (size_t i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(b[i]);
  return mac;
}

std::string macToString(const Mac& mac) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return buf;
}

std::vector<uint8_t> markerBytes(uint32_t tag, uint32_t seq, size_t size) {
  std::vector<uint8_t> out(kMarkerMagic.begin(), kMarkerMagic.end());
  put32(out, tag);
  put32(out, seq);
  // Filler that is not all zeros, so a receiver can tell it from padding.
  for (size_t i = out.size(); i < size; ++i) out.push_back(static_cast<uint8_t>(i));
  return out;
}

std::optional<Marker> findMarker(std::span<const uint8_t> bytes) {
  auto it = std::search(bytes.begin(), bytes.end(), kMarkerMagic.begin(), kMarkerMagic.end());
  if (it == bytes.end() || bytes.end() - it < static_cast<ptrdiff_t>(kMarkerSize)) {
    return std::nullopt;
  }
  auto at = [&](size_t i) { return uint32_t{*(it + i)}; };
  Marker m;
  m.tag = (at(8) << 24) | (at(9) << 16) | (at(10) << 8) | at(11);
  m.seq = (at(12) << 24) | (at(13) << 16) | (at(14) << 8) | at(15);
  return m;
}

Frame truncate(const Frame& frame, size_t n) {
  return Frame(frame.begin(), frame.begin() + static_cast<ptrdiff_t>(std::min(n, frame.size())));
}

uint16_t internetChecksum(std::span<const uint8_t> bytes) {
  return foldComplement(sumWords(bytes));
}

FrameBuilder& FrameBuilder::eth(const Mac& dst, const Mac& src) {
  dst_ = dst;
  src_ = src;
  return *this;
}

FrameBuilder& FrameBuilder::etherType(uint16_t type) {
  etherType_ = type;
  return *this;
}

FrameBuilder& FrameBuilder::vlan(uint16_t vid, uint8_t pcp) {
  if (vlanTci_.size() == 2) throw std::invalid_argument("at most two VLAN tags");
  vlanTci_.push_back(static_cast<uint16_t>((pcp & 7) << 13 | (vid & 0x0fff)));
  return *this;
}

FrameBuilder& FrameBuilder::ipv4(const std::string& src, const std::string& dst) {
  if (inet_pton(AF_INET, src.c_str(), ipSrc_.data()) != 1 ||
      inet_pton(AF_INET, dst.c_str(), ipDst_.data()) != 1) {
    throw std::invalid_argument("bad IPv4 address in ipv4(" + src + ", " + dst + ")");
  }
  l3_ = L3::kIpv4;
  return *this;
}

FrameBuilder& FrameBuilder::options(std::vector<uint8_t> bytes) {
  while (bytes.size() % 4 != 0) bytes.push_back(0);
  if (bytes.size() > 40) throw std::invalid_argument("IPv4 options longer than 40 bytes");
  options_ = std::move(bytes);
  return *this;
}

FrameBuilder& FrameBuilder::fragment(uint16_t offset8, bool more) {
  if (offset8 > 0x1fff) throw std::invalid_argument("fragment offset over 13 bits");
  fragOffset8_ = offset8;
  moreFragments_ = more;
  return *this;
}

FrameBuilder& FrameBuilder::dontFragment(bool df) {
  dontFragment_ = df;
  return *this;
}

FrameBuilder& FrameBuilder::ipId(uint16_t id) {
  ipId_ = id;
  return *this;
}

FrameBuilder& FrameBuilder::ttl(uint8_t ttl) {
  ttl_ = ttl;
  return *this;
}

FrameBuilder& FrameBuilder::ipv6(const std::string& src, const std::string& dst) {
  if (inet_pton(AF_INET6, src.c_str(), ipSrc_.data()) != 1 ||
      inet_pton(AF_INET6, dst.c_str(), ipDst_.data()) != 1) {
    throw std::invalid_argument("bad IPv6 address in ipv6(" + src + ", " + dst + ")");
  }
  l3_ = L3::kIpv6;
  return *this;
}

FrameBuilder& FrameBuilder::hopByHop(size_t lengthBytes) {
  checkExtLength(lengthBytes, "hop-by-hop header");
  ext_.push_back({.type = kProtoHopByHop, .length = lengthBytes});
  return *this;
}

FrameBuilder& FrameBuilder::routingHeader(size_t lengthBytes, uint8_t routingType,
                                          uint8_t segmentsLeft) {
  checkExtLength(lengthBytes, "routing header");
  ext_.push_back({.type = kProtoRouting,
                  .length = lengthBytes,
                  .routingType = routingType,
                  .segmentsLeft = segmentsLeft});
  return *this;
}

FrameBuilder& FrameBuilder::destOptions(size_t lengthBytes) {
  checkExtLength(lengthBytes, "destination options header");
  ext_.push_back({.type = kProtoDestOptions, .length = lengthBytes});
  return *this;
}

FrameBuilder& FrameBuilder::fragmentHeader(uint16_t offset8, bool more, uint32_t id) {
  if (offset8 > 0x1fff) throw std::invalid_argument("fragment offset over 13 bits");
  ext_.push_back({.type = kProtoFragment,
                  .length = 8,
                  .fragOffset8 = offset8,
                  .fragMore = more,
                  .fragId = id});
  return *this;
}

FrameBuilder& FrameBuilder::protocol(uint8_t proto) {
  protocol_ = proto;
  return *this;
}

FrameBuilder& FrameBuilder::udp(uint16_t sport, uint16_t dport) {
  l4_ = L4::kUdp;
  sport_ = sport;
  dport_ = dport;
  return *this;
}

FrameBuilder& FrameBuilder::tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq,
                                uint32_t ack) {
  l4_ = L4::kTcp;
  sport_ = sport;
  dport_ = dport;
  tcpFlags_ = flags;
  tcpSeq_ = seq;
  tcpAck_ = ack;
  return *this;
}

FrameBuilder& FrameBuilder::icmpEcho(uint16_t id, uint16_t seq) {
  l4_ = L4::kIcmpEcho;
  sport_ = id;
  dport_ = seq;
  return *this;
}

FrameBuilder& FrameBuilder::payload(std::vector<uint8_t> bytes) {
  payload_ = std::move(bytes);
  return *this;
}

FrameBuilder& FrameBuilder::marker(uint32_t tag, uint32_t seq, size_t size) {
  return payload(markerBytes(tag, seq, size));
}

uint8_t FrameBuilder::l4Protocol() const {
  switch (l4_) {
    case L4::kUdp:
      return kProtoUdp;
    case L4::kTcp:
      return kProtoTcp;
    case L4::kIcmpEcho:
      return l3_ == L3::kIpv6 ? kProtoIcmpv6 : kProtoIcmp;
    case L4::kNone:
      break;
  }
  return l3_ == L3::kIpv6 ? kProtoNoNext : 253;  // 253: RFC 3692 experimental
}

// The L4 header and payload, checksummed with the pseudo-header of protocol `proto`.
std::vector<uint8_t> FrameBuilder::buildL4(uint8_t proto) const {
  std::vector<uint8_t> out;
  size_t csumAt = 0;
  bool pseudo = true;
  switch (l4_) {
    case L4::kNone:
      return payload_;
    case L4::kUdp:
      put16(out, sport_);
      put16(out, dport_);
      put16(out, static_cast<uint16_t>(8 + payload_.size()));
      put16(out, 0);
      csumAt = 6;
      break;
    case L4::kTcp:
      put16(out, sport_);
      put16(out, dport_);
      put32(out, tcpSeq_);
      put32(out, tcpAck_);
      out.push_back(5 << 4);  // data offset: 5 words, no options
      out.push_back(tcpFlags_);
      put16(out, 65535);  // window
      put16(out, 0);      // checksum
      put16(out, 0);      // urgent pointer
      csumAt = 16;
      break;
    case L4::kIcmpEcho:
      out.push_back(l3_ == L3::kIpv6 ? 128 : 8);  // echo request
      out.push_back(0);
      put16(out, 0);
      put16(out, sport_);  // identifier
      put16(out, dport_);  // sequence
      csumAt = 2;
      pseudo = l3_ == L3::kIpv6;  // ICMPv4 has no pseudo-header
      break;
  }
  append(out, payload_);

  uint32_t sum = 0;
  if (pseudo && l3_ == L3::kIpv4) {
    sum = sumWords(std::span(ipSrc_).first(4), sum);
    sum = sumWords(std::span(ipDst_).first(4), sum);
    sum += proto;
    sum += static_cast<uint32_t>(out.size());
  } else if (pseudo && l3_ == L3::kIpv6) {
    sum = sumWords(ipSrc_, sum);
    sum = sumWords(ipDst_, sum);
    sum += static_cast<uint32_t>(out.size() >> 16) + static_cast<uint32_t>(out.size() & 0xffff);
    sum += proto;
  }
  uint16_t csum = foldComplement(sumWords(out, sum));
  if (l4_ == L4::kUdp && csum == 0) csum = 0xffff;  // 0 would mean "no checksum"
  set16(out, csumAt, csum);
  return out;
}

Frame FrameBuilder::build() const {
  const uint8_t l4proto = l4Protocol();
  const uint8_t proto = protocol_.value_or(l4proto);
  std::vector<uint8_t> l4 = buildL4(l4_ == L4::kNone ? proto : l4proto);

  std::vector<uint8_t> l3;
  uint16_t type = etherType_.value_or(kLocalExperimentalEthertype);
  if (l3_ == L3::kIpv4) {
    const size_t headerLen = 20 + options_.size();
    l3.push_back(static_cast<uint8_t>(0x40 | (headerLen / 4)));
    l3.push_back(0);  // DSCP/ECN
    put16(l3, static_cast<uint16_t>(headerLen + l4.size()));
    put16(l3, ipId_);
    put16(l3, static_cast<uint16_t>((dontFragment_ ? 0x4000 : 0) | (moreFragments_ ? 0x2000 : 0) |
                                    fragOffset8_));
    l3.push_back(ttl_);
    l3.push_back(proto);
    put16(l3, 0);
    append(l3, std::span(ipSrc_).first(4));
    append(l3, std::span(ipDst_).first(4));
    append(l3, options_);
    set16(l3, 10, internetChecksum(l3));
    if (!etherType_) type = kEthIpv4;
  } else if (l3_ == L3::kIpv6) {
    std::vector<uint8_t> exts;
    for (size_t i = 0; i < ext_.size(); ++i) {
      const ExtHeader& h = ext_[i];
      const uint8_t next = i + 1 < ext_.size() ? ext_[i + 1].type : proto;
      exts.push_back(next);
      if (h.type == kProtoFragment) {
        exts.push_back(0);  // reserved
        put16(exts, static_cast<uint16_t>(h.fragOffset8 << 3 | (h.fragMore ? 1 : 0)));
        put32(exts, h.fragId);
        continue;
      }
      exts.push_back(static_cast<uint8_t>(h.length / 8 - 1));
      if (h.type == kProtoRouting) {
        exts.push_back(h.routingType);
        exts.push_back(h.segmentsLeft);
        exts.insert(exts.end(), h.length - 4, 0);
      } else {
        appendFillOptions(exts, h.length - 2);
      }
    }
    put32(l3, 6u << 28);
    put16(l3, static_cast<uint16_t>(exts.size() + l4.size()));
    l3.push_back(ext_.empty() ? proto : ext_.front().type);
    l3.push_back(ttl_);
    append(l3, ipSrc_);
    append(l3, ipDst_);
    append(l3, exts);
    if (!etherType_) type = kEthIpv6;
  }

  Frame frame;
  frame.reserve(22 + l3.size() + l4.size());
  append(frame, dst_);
  append(frame, src_);
  for (size_t i = 0; i < vlanTci_.size(); ++i) {
    put16(frame, vlanTci_.size() == 2 && i == 0 ? kEthQinq : kEthVlan);
    put16(frame, vlanTci_[i]);
  }
  put16(frame, type);
  append(frame, l3);
  append(frame, l4);
  return frame;
}

std::string xdpActionName(uint32_t action) {
  switch (action) {
    case 0:
      return "XDP_ABORTED";
    case 1:
      return "XDP_DROP";
    case 2:
      return "XDP_PASS";
    case 3:
      return "XDP_TX";
    case 4:
      return "XDP_REDIRECT";
  }
  return "retval " + std::to_string(action);
}

}  // namespace vigil::testing
