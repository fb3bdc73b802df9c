#pragma once

// Traffic over a VethPair: crafted frames in (RawSender), frames seen out (FrameCounter),
// datagrams and connections through the IP stack (UdpSink, UdpFlood, TcpListener, tcpProbe).
// Each object opens its socket in the namespace it is given ("" = the caller's own) and is
// ready when its constructor returns, so nothing sent afterwards is missed. Destroy these
// objects before the VethPair whose interfaces they use. Setup failures throw SupportError;
// reader threads never throw, they report through error().
//
// FrameCounter is an AF_PACKET tap: it sees a frame after XDP on that interface has passed it
// and before the IP stack looks at it, so XDP drops are never counted and frames the stack would
// reject (bad checksum, truncated, another MAC) are. One exception: a VLAN-tagged frame shorter
// than 20 bytes (no room for the tag and the inner type) is dropped by the kernel's VLAN untag
// step after XDP and before the tap, so the tap never sees it even when XDP passed it.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "support/frames.hpp"
#include "support/netns.hpp"

namespace vigil::testing {

using Clock = std::chrono::steady_clock;

// Builders preset for the direction peer -> host: eth(hostMac, peerMac) and the pair's
// addresses. Add the rest: peerToHostV4(pair).udp(1, 2).marker(7, 0).build().
FrameBuilder peerToHostV4(const VethPair& pair);
FrameBuilder peerToHostV6(const VethPair& pair);

// Polls `condition` every `step` until it holds or `timeout` passes; returns its last value.
bool waitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
               std::chrono::milliseconds step = std::chrono::milliseconds(2));

struct SendResult {
  uint64_t sent = 0;
  std::chrono::nanoseconds elapsed{0};  // from the first send to the last
  int error = 0;                        // errno of the send that stopped the run; 0 if none
};

// An AF_PACKET/SOCK_RAW socket in namespace `ns` bound to `ifname` there. Frames go out as
// given: no padding to 60 bytes, no checksum fixes. The kernel refuses frames shorter than the
// 14-byte Ethernet header (EINVAL).
class RawSender {
 public:
  RawSender(const std::string& ns, const std::string& ifname);
  ~RawSender();
  RawSender(const RawSender&) = delete;
  RawSender& operator=(const RawSender&) = delete;

  // Throws SupportError when the kernel refuses the frame.
  void send(const Frame& frame);
  // Sends `frame` `count` times, paced to `ratePps` (0: as fast as possible); stops at the
  // first error. Unpaced bursts can overflow the receiving CPU's backlog (netdev_max_backlog):
  // such frames count as sent here but never arrive.
  SendResult sendMany(const Frame& frame, uint64_t count, uint64_t ratePps = 0);

  int ifindex() const { return ifindex_; }

 private:
  int fd_ = -1;
  int ifindex_ = 0;
  std::string where_;
};

// Counts frames received on `ifname` in namespace `ns` (frames sent out of it are ignored),
// on a thread of its own. Frames carrying a marker (findMarker) are counted by tag and by
// (tag, seq); every frame is also counted by its exact bytes. A VLAN tag the kernel moved out
// of the frame before the tap is put back, so frames compare equal to what was sent.
class FrameCounter {
 public:
  FrameCounter(const std::string& ns, const std::string& ifname);
  ~FrameCounter();
  FrameCounter(const FrameCounter&) = delete;
  FrameCounter& operator=(const FrameCounter&) = delete;

  uint64_t count(uint32_t tag) const;
  uint64_t countSeq(uint32_t tag, uint32_t seq) const;
  uint64_t countExact(const Frame& frame) const;
  uint64_t marked() const;  // frames with any marker
  uint64_t total() const;   // every received frame, including the kernel's own ARP/ND/MLD
  // Frames the kernel dropped because this socket's queue was full (PACKET_STATISTICS).
  uint64_t socketDrops() const;
  // The last 256 frames received, oldest first.
  std::vector<Frame> recent() const;
  // Waits until count(tag) >= n; returns whether it got there within `timeout`.
  bool waitFor(uint32_t tag, uint64_t n, std::chrono::milliseconds timeout) const;
  // Empty unless the reader thread hit an error and stopped.
  std::string error() const;

 private:
  void run();
  void record(Frame frame);

  int fd_ = -1;
  int stopFd_ = -1;
  std::string where_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::unordered_map<uint32_t, uint64_t> byTag_;   // guarded by mutex_
  std::unordered_map<uint64_t, uint64_t> bySeq_;   // guarded by mutex_: key tag << 32 | seq
  std::unordered_map<uint64_t, uint64_t> byHash_;  // guarded by mutex_: FNV-1a of the bytes
  std::deque<Frame> recent_;                       // guarded by mutex_
  uint64_t marked_ = 0;                            // guarded by mutex_
  uint64_t total_ = 0;                             // guarded by mutex_
  mutable uint64_t drops_ = 0;                     // guarded by mutex_
  std::string error_;                              // guarded by mutex_
  std::thread thread_;
};

// A UDP socket bound to address:port (IPv4 or IPv6; port 0 picks a free one) in namespace `ns`,
// counting datagrams, bytes and marker tags (the marker at the start of each datagram, as
// UdpFlood sends it) on a thread of its own.
class UdpSink {
 public:
  explicit UdpSink(const std::string& address, uint16_t port = 0, const std::string& ns = "");
  ~UdpSink();
  UdpSink(const UdpSink&) = delete;
  UdpSink& operator=(const UdpSink&) = delete;

  uint16_t port() const { return port_; }
  uint64_t datagrams() const;
  uint64_t bytes() const;
  uint64_t count(uint32_t tag) const;
  // Datagrams the kernel dropped because the socket's queue was full (SO_RXQ_OVFL).
  uint64_t socketDrops() const;
  // Waits until datagrams() >= n; returns whether it got there within `timeout`.
  bool waitFor(uint64_t n, std::chrono::milliseconds timeout) const;
  std::string error() const;

 private:
  void run();

  int fd_ = -1;
  int stopFd_ = -1;
  uint16_t port_ = 0;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  uint64_t datagrams_ = 0;                        // guarded by mutex_
  uint64_t bytes_ = 0;                            // guarded by mutex_
  uint64_t drops_ = 0;                            // guarded by mutex_
  std::unordered_map<uint32_t, uint64_t> byTag_;  // guarded by mutex_
  std::string error_;                             // guarded by mutex_
  std::thread thread_;
};

struct FloodResult {
  uint64_t requested = 0;  // 0 when unpaced for a duration
  uint64_t sent = 0;
  uint64_t failed = 0;  // sendto errors; lastError says which
  int lastError = 0;
  Clock::time_point first{};  // just before the first sendto
  Clock::time_point last{};   // just before the last sendto
  // (sent - 1) / (last - first); 0 with fewer than two datagrams.
  double achievedPps() const;
};

// A UDP socket in namespace `ns` sending datagrams to dstAddress:dstPort from a fixed source
// port. Each datagram starts with a marker: the run's tag and a sequence number that continues
// across runs of the same UdpFlood.
class UdpFlood {
 public:
  UdpFlood(const std::string& ns, const std::string& dstAddress, uint16_t dstPort,
           uint16_t srcPort = 0);
  ~UdpFlood();
  UdpFlood(const UdpFlood&) = delete;
  UdpFlood& operator=(const UdpFlood&) = delete;

  uint16_t localPort() const { return localPort_; }
  // ratePps * duration datagrams, the i-th sent at first + i / ratePps (a late sender catches
  // up in a burst). With ratePps 0: unpaced until `duration` has passed.
  FloodResult run(uint64_t ratePps, std::chrono::milliseconds duration, uint32_t tag,
                  size_t payloadBytes = 64);
  // Exactly `count` datagrams at `ratePps` (0: unpaced).
  FloodResult send(uint64_t count, uint64_t ratePps, uint32_t tag, size_t payloadBytes = 64);

 private:
  FloodResult flood(uint64_t count, uint64_t ratePps, Clock::duration limit, uint32_t tag,
                    size_t payloadBytes);

  int fd_ = -1;
  uint16_t localPort_ = 0;
  std::vector<uint8_t> dst_;  // the destination sockaddr
  uint32_t nextSeq_ = 0;
};

// A TCP listener on address:port (port 0 picks one) in namespace `ns` that accepts and closes
// every connection on a thread of its own.
class TcpListener {
 public:
  explicit TcpListener(const std::string& address, uint16_t port = 0, const std::string& ns = "");
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  uint16_t port() const { return port_; }
  uint64_t accepted() const;

 private:
  void run();

  int fd_ = -1;
  int stopFd_ = -1;
  uint16_t port_ = 0;
  mutable std::mutex mutex_;
  uint64_t accepted_ = 0;  // guarded by mutex_
  std::thread thread_;
};

struct TcpProbeResult {
  bool connected = false;
  int error = 0;  // ECONNREFUSED (a RST came back), ETIMEDOUT (nothing came back), ...
  std::chrono::nanoseconds elapsed{0};
};

// Whether a TCP connection from namespace `ns` to address:port completes within `timeout`.
TcpProbeResult tcpProbe(const std::string& ns, const std::string& address, uint16_t port,
                        std::chrono::milliseconds timeout);

}  // namespace vigil::testing
