#pragma once

// Crafted Ethernet frames for the XDP tests: VLAN tags, IPv4 with options and fragments, IPv6
// with extension header chains, UDP/TCP/ICMP with correct lengths and checksums, and a payload
// marker (magic, tag, sequence) that a receiver recognises wherever it sits in a frame.
//
//   Frame f = FrameBuilder().eth(dst, src).vlan(100).ipv4("10.0.0.1", "10.0.0.2")
//                 .udp(1000, 2000).marker(7, 0).build();
//
// Calls may come in any order, except IPv6 extension headers, which are chained in call order.
// Invalid arguments (a bad address, options over 40 bytes, an extension header length that is
// not a multiple of 8) throw std::invalid_argument.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace vigil::testing {

using Frame = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

inline constexpr Mac kBroadcastMac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// "aa:bb:cc:dd:ee:ff" <-> Mac. parseMac throws std::invalid_argument on malformed text.
Mac parseMac(const std::string& text);
std::string macToString(const Mac& mac);

// "XDP_DROP", "XDP_PASS", ... for an XDP program's return value; "retval N" otherwise.
std::string xdpActionName(uint32_t action);

// Ethertypes, IP protocol numbers and TCP flags the builder knows.
inline constexpr uint16_t kEthIpv4 = 0x0800;
inline constexpr uint16_t kEthIpv6 = 0x86dd;
inline constexpr uint16_t kEthVlan = 0x8100;  // 802.1Q
inline constexpr uint16_t kEthQinq = 0x88a8;  // 802.1ad outer tag
inline constexpr uint8_t kProtoHopByHop = 0;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoRouting = 43;
inline constexpr uint8_t kProtoFragment = 44;
inline constexpr uint8_t kProtoIcmpv6 = 58;
inline constexpr uint8_t kProtoNoNext = 59;
inline constexpr uint8_t kProtoDestOptions = 60;
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;

// The payload marker: 8 bytes of magic, then tag and sequence as big-endian u32.
inline constexpr std::array<uint8_t, 8> kMarkerMagic = {'v', 'i', 'g', 'i', 'l', 'm', 'r', 'k'};
inline constexpr size_t kMarkerSize = 16;

struct Marker {
  uint32_t tag = 0;
  uint32_t seq = 0;
  bool operator==(const Marker&) const = default;
};

// kMarkerSize marker bytes followed by filler up to `size` bytes (at least kMarkerSize).
std::vector<uint8_t> markerBytes(uint32_t tag, uint32_t seq, size_t size = kMarkerSize);
// The first marker anywhere in `bytes`, if any.
std::optional<Marker> findMarker(std::span<const uint8_t> bytes);

// The first `n` bytes of `frame` (all of it when shorter). Lengths inside stay as they were.
Frame truncate(const Frame& frame, size_t n);

// The Internet checksum (RFC 1071) of `bytes`, folded and complemented.
uint16_t internetChecksum(std::span<const uint8_t> bytes);

class FrameBuilder {
 public:
  // Ethernet header. The ethertype follows from the L3 header; etherType() sets it for frames
  // without one (default 0x88b5, the IEEE local experimental type) or overrides it.
  FrameBuilder& eth(const Mac& dst, const Mac& src);
  FrameBuilder& etherType(uint16_t type);
  // Adds one VLAN tag. One tag is 802.1Q (0x8100); with two, the first is the outer 802.1ad
  // tag (0x88a8) and the second the inner 802.1Q tag.
  FrameBuilder& vlan(uint16_t vid, uint8_t pcp = 0);

  // IPv4 header: TTL 64, id 1, no flags unless set below.
  FrameBuilder& ipv4(const std::string& src, const std::string& dst);
  // IPv4 options, padded with zero bytes (End of Options List) to a multiple of 4; at most 40.
  FrameBuilder& options(std::vector<uint8_t> bytes);
  // IPv4 fragment offset in 8-byte units and the More Fragments flag.
  FrameBuilder& fragment(uint16_t offset8, bool more);
  FrameBuilder& dontFragment(bool df = true);
  FrameBuilder& ipId(uint16_t id);
  // IPv4 TTL or IPv6 hop limit.
  FrameBuilder& ttl(uint8_t ttl);

  // IPv6 header, hop limit 64.
  FrameBuilder& ipv6(const std::string& src, const std::string& dst);
  // IPv6 extension headers, chained in call order. `lengthBytes` is the whole header (a
  // multiple of 8, 8..2048); option headers are filled with PadN.
  FrameBuilder& hopByHop(size_t lengthBytes = 8);
  FrameBuilder& routingHeader(size_t lengthBytes = 8, uint8_t routingType = 0,
                              uint8_t segmentsLeft = 0);
  FrameBuilder& destOptions(size_t lengthBytes = 8);
  FrameBuilder& fragmentHeader(uint16_t offset8, bool more, uint32_t id = 1);

  // The protocol number written in the IP header (or the last extension header). Normally it
  // follows from the L4 call; set it for frames whose L4 bytes come from payload() or to lie.
  FrameBuilder& protocol(uint8_t proto);

  // L4 headers. Lengths and checksums cover the header and the payload actually present (a
  // first fragment's UDP checksum is therefore not that of the reassembled datagram).
  FrameBuilder& udp(uint16_t sport, uint16_t dport);
  FrameBuilder& tcp(uint16_t sport, uint16_t dport, uint8_t flags = kTcpSyn, uint32_t seq = 1,
                    uint32_t ack = 0);
  // ICMP echo request for IPv4, ICMPv6 echo request for IPv6.
  FrameBuilder& icmpEcho(uint16_t id, uint16_t seq);

  // Bytes after the L4 header (or the L3 header when there is none).
  FrameBuilder& payload(std::vector<uint8_t> bytes);
  // payload(markerBytes(tag, seq, size)).
  FrameBuilder& marker(uint32_t tag, uint32_t seq, size_t size = kMarkerSize);

  Frame build() const;

 private:
  enum class L3 { kNone, kIpv4, kIpv6 };
  enum class L4 { kNone, kUdp, kTcp, kIcmpEcho };
  struct ExtHeader {
    uint8_t type = 0;
    size_t length = 0;
    uint8_t routingType = 0;
    uint8_t segmentsLeft = 0;
    uint16_t fragOffset8 = 0;
    bool fragMore = false;
    uint32_t fragId = 0;
  };

  std::vector<uint8_t> buildL4(uint8_t proto) const;
  uint8_t l4Protocol() const;

  Mac dst_ = kBroadcastMac;
  Mac src_ = {0x02, 0, 0, 0, 0, 1};
  std::optional<uint16_t> etherType_;
  std::vector<uint16_t> vlanTci_;
  L3 l3_ = L3::kNone;
  std::array<uint8_t, 16> ipSrc_{};
  std::array<uint8_t, 16> ipDst_{};
  std::vector<uint8_t> options_;
  uint16_t fragOffset8_ = 0;
  bool moreFragments_ = false;
  bool dontFragment_ = false;
  uint16_t ipId_ = 1;
  uint8_t ttl_ = 64;
  std::vector<ExtHeader> ext_;
  std::optional<uint8_t> protocol_;
  L4 l4_ = L4::kNone;
  uint16_t sport_ = 0;
  uint16_t dport_ = 0;
  uint8_t tcpFlags_ = 0;
  uint32_t tcpSeq_ = 0;
  uint32_t tcpAck_ = 0;
  std::vector<uint8_t> payload_;
};

}  // namespace vigil::testing
