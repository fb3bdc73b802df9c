#include "support/traffic.hpp"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vigil::testing {
namespace {

constexpr size_t kRecentFrames = 256;
constexpr size_t kMaxExactEntries = size_t{1} << 20;
constexpr int kRcvBufBytes = 16 << 20;

// Paces the i-th of a run of sends to start + i / ratePps; rate 0 does not wait.
class Pacer {
 public:
  explicit Pacer(uint64_t ratePps) : rate_(ratePps) {}
  void wait(uint64_t i) {
    if (rate_ == 0) return;
    if (i == 0) {
      start_ = Clock::now();
      return;
    }
    const auto offset = std::chrono::nanoseconds(
        static_cast<int64_t>(static_cast<unsigned __int128>(i) * 1'000'000'000u / rate_));
    std::this_thread::sleep_until(start_ + offset);
  }

 private:
  uint64_t rate_;
  Clock::time_point start_{};
};

// sockaddr_in or sockaddr_in6 bytes for address:port; the family from the address text.
std::vector<uint8_t> socketAddress(const std::string& address, uint16_t port, int* family) {
  if (address.find(':') != std::string::npos) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(port);
    if (inet_pton(AF_INET6, address.c_str(), &sa.sin6_addr) != 1) {
      throw SupportError("bad IPv6 address '" + address + "'");
    }
    *family = AF_INET6;
    const auto* p = reinterpret_cast<const uint8_t*>(&sa);
    return {p, p + sizeof(sa)};
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, address.c_str(), &sa.sin_addr) != 1) {
    throw SupportError("bad IPv4 address '" + address + "'");
  }
  *family = AF_INET;
  const auto* p = reinterpret_cast<const uint8_t*>(&sa);
  return {p, p + sizeof(sa)};
}

const sockaddr* asSockaddr(const std::vector<uint8_t>& bytes) {
  return reinterpret_cast<const sockaddr*>(bytes.data());
}

uint16_t boundPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    throw SupportError(errnoMessage("getsockname", errno));
  }
  return ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// A socket of `type` in `ns` bound to address:port. Closes it again if binding fails.
int boundSocket(const std::string& ns, const std::string& address, uint16_t port, int type) {
  int family = 0;
  const std::vector<uint8_t> sa = socketAddress(address, port, &family);
  const int fd = socketIn(ns, family, type, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, asSockaddr(sa), static_cast<socklen_t>(sa.size())) != 0) {
    const int err = errno;
    ::close(fd);
    throw SupportError(errnoMessage(
        "bind " + address + ":" + std::to_string(port) + (ns.empty() ? "" : " in netns " + ns),
        err));
  }
  return fd;
}

void growReceiveBuffer(int fd) {
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &kRcvBufBytes, sizeof(kRcvBufBytes)) != 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kRcvBufBytes, sizeof(kRcvBufBytes));
  }
}

int makeEventFd() {
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  if (fd < 0) throw SupportError(errnoMessage("eventfd", errno));
  return fd;
}

void signalStop(int stopFd) {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stopFd, &one, sizeof(one));
}

// Blocks until `fd` is readable (true) or `stopFd` is signalled (false). Sets *err on failure.
bool waitReadable(int fd, int stopFd, int* err) {
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stopFd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return false;
    }
    if (fds[1].revents != 0) return false;
    return true;
  }
}

void closeFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Ends a reader thread (it watches stopFd) and closes both descriptors.
void stopReader(int& stopFd, std::thread& thread, int& fd) {
  signalStop(stopFd);
  if (thread.joinable()) thread.join();
  closeFd(fd);
  closeFd(stopFd);
}

uint64_t fnv1a(std::span<const uint8_t> bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

}  // namespace

FrameBuilder peerToHostV4(const VethPair& pair) {
  FrameBuilder b;
  b.eth(pair.hostMac(), pair.peerMac()).ipv4(pair.peerV4(), pair.hostV4());
  return b;
}

FrameBuilder peerToHostV6(const VethPair& pair) {
  FrameBuilder b;
  b.eth(pair.hostMac(), pair.peerMac()).ipv6(pair.peerV6(), pair.hostV6());
  return b;
}

bool waitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
               std::chrono::milliseconds step) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(step);
  }
}

// ---- RawSender ----

RawSender::RawSender(const std::string& ns, const std::string& ifname)
    : where_(ifname + (ns.empty() ? "" : " in netns " + ns)) {
  ifindex_ = ifindexIn(ns, ifname);
  // Protocol 0: this socket only sends, it never queues received frames.
  fd_ = socketIn(ns, AF_PACKET, SOCK_RAW, 0);
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = ifindex_;
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
    const int err = errno;
    closeFd(fd_);
    throw SupportError(errnoMessage("bind AF_PACKET to " + where_, err));
  }
}

RawSender::~RawSender() { closeFd(fd_); }

namespace {

ssize_t sendFrame(int fd, int ifindex, const Frame& frame) {
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = ifindex;
  if (frame.size() >= ETH_HLEN) {
    std::memcpy(&sll.sll_protocol, &frame[12], 2);  // already in network order
    sll.sll_halen = ETH_ALEN;
    std::memcpy(sll.sll_addr, frame.data(), ETH_ALEN);
  }
  return ::sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&sll),
                  sizeof(sll));
}

}  // namespace

void RawSender::send(const Frame& frame) {
  if (sendFrame(fd_, ifindex_, frame) < 0) {
    throw SupportError(
        errnoMessage("send " + std::to_string(frame.size()) + "-byte frame on " + where_, errno));
  }
}

SendResult RawSender::sendMany(const Frame& frame, uint64_t count, uint64_t ratePps) {
  SendResult result;
  Pacer pacer(ratePps);
  Clock::time_point first{};
  Clock::time_point last{};
  for (uint64_t i = 0; i < count; ++i) {
    pacer.wait(i);
    last = Clock::now();
    if (i == 0) first = last;
    if (sendFrame(fd_, ifindex_, frame) < 0) {
      result.error = errno;
      break;
    }
    ++result.sent;
  }
  result.elapsed = last - first;
  return result;
}

// ---- FrameCounter ----

FrameCounter::FrameCounter(const std::string& ns, const std::string& ifname)
    : where_(ifname + (ns.empty() ? "" : " in netns " + ns)) {
  const int ifindex = ifindexIn(ns, ifname);
  // Created with protocol 0 and bound with ETH_P_ALL to one interface, so frames of other
  // interfaces never get in, not even between socket() and bind().
  fd_ = socketIn(ns, AF_PACKET, SOCK_RAW, 0);
  try {
    const int one = 1;
    if (::setsockopt(fd_, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)) != 0) {
      throw SupportError(errnoMessage("PACKET_AUXDATA on " + where_, errno));
    }
    growReceiveBuffer(fd_);
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
      throw SupportError(errnoMessage("bind AF_PACKET to " + where_, errno));
    }
    stopFd_ = makeEventFd();
  } catch (...) {
    closeFd(fd_);
    throw;
  }
  thread_ = std::thread([this] { run(); });
}

FrameCounter::~FrameCounter() { stopReader(stopFd_, thread_, fd_); }

void FrameCounter::run() {
  std::vector<uint8_t> buf(256 * 1024);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(tpacket_auxdata))];
  int err = 0;
  while (waitReadable(fd_, stopFd_, &err)) {
    for (;;) {
      sockaddr_ll from{};
      iovec iov{buf.data(), buf.size()};
      msghdr msg{};
      msg.msg_name = &from;
      msg.msg_namelen = sizeof(from);
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      const ssize_t n = ::recvmsg(fd_, &msg, MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        err = errno;
        break;
      }
      if (from.sll_pkttype == PACKET_OUTGOING) continue;
      Frame frame(buf.begin(), buf.begin() + std::min<ssize_t>(n, ssize_t(buf.size())));
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
        tpacket_auxdata aux;
        std::memcpy(&aux, CMSG_DATA(c), sizeof(aux));
        // The receive path moves the outer VLAN tag into skb metadata before taps see the
        // frame; put it back where it was.
        if ((aux.tp_status & TP_STATUS_VLAN_VALID) != 0 && frame.size() >= 2 * ETH_ALEN) {
          const uint16_t tpid =
              (aux.tp_status & TP_STATUS_VLAN_TPID_VALID) != 0 ? aux.tp_vlan_tpid : ETH_P_8021Q;
          const uint8_t tag[4] = {uint8_t(tpid >> 8), uint8_t(tpid), uint8_t(aux.tp_vlan_tci >> 8),
                                  uint8_t(aux.tp_vlan_tci)};
          frame.insert(frame.begin() + 2 * ETH_ALEN, tag, tag + 4);
        }
      }
      record(std::move(frame));
    }
    if (err != 0) break;
  }
  if (err != 0) {
    std::lock_guard lock(mutex_);
    error_ = errnoMessage("receive on " + where_, err);
  }
  changed_.notify_all();
}

void FrameCounter::record(Frame frame) {
  const std::optional<Marker> marker = findMarker(frame);
  const uint64_t hash = fnv1a(frame);
  {
    std::lock_guard lock(mutex_);
    ++total_;
    if (marker) {
      ++marked_;
      ++byTag_[marker->tag];
      ++bySeq_[uint64_t{marker->tag} << 32 | marker->seq];
    }
    auto it = byHash_.find(hash);
    if (it != byHash_.end()) {
      ++it->second;
    } else if (byHash_.size() < kMaxExactEntries) {
      byHash_.emplace(hash, 1);
    }
    recent_.push_back(std::move(frame));
    if (recent_.size() > kRecentFrames) recent_.pop_front();
  }
  changed_.notify_all();
}

uint64_t FrameCounter::count(uint32_t tag) const {
  std::lock_guard lock(mutex_);
  auto it = byTag_.find(tag);
  return it == byTag_.end() ? 0 : it->second;
}

uint64_t FrameCounter::countSeq(uint32_t tag, uint32_t seq) const {
  std::lock_guard lock(mutex_);
  auto it = bySeq_.find(uint64_t{tag} << 32 | seq);
  return it == bySeq_.end() ? 0 : it->second;
}

uint64_t FrameCounter::countExact(const Frame& frame) const {
  const uint64_t hash = fnv1a(frame);
  std::lock_guard lock(mutex_);
  auto it = byHash_.find(hash);
  return it == byHash_.end() ? 0 : it->second;
}

uint64_t FrameCounter::marked() const {
  std::lock_guard lock(mutex_);
  return marked_;
}

uint64_t FrameCounter::total() const {
  std::lock_guard lock(mutex_);
  return total_;
}

uint64_t FrameCounter::socketDrops() const {
  tpacket_stats stats{};
  socklen_t len = sizeof(stats);
  std::lock_guard lock(mutex_);
  // Reading the statistics resets them, so they are added up here.
  if (::getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &stats, &len) == 0) {
    drops_ += stats.tp_drops;
  }
  return drops_;
}

std::vector<Frame> FrameCounter::recent() const {
  std::lock_guard lock(mutex_);
  return {recent_.begin(), recent_.end()};
}

bool FrameCounter::waitFor(uint32_t tag, uint64_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] {
    auto it = byTag_.find(tag);
    return (it != byTag_.end() && it->second >= n) || !error_.empty();
  }) && error_.empty();
}

std::string FrameCounter::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

// ---- UdpSink ----

UdpSink::UdpSink(const std::string& address, uint16_t port, const std::string& ns) {
  fd_ = boundSocket(ns, address, port, SOCK_DGRAM);
  try {
    growReceiveBuffer(fd_);
    const int one = 1;
    if (::setsockopt(fd_, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one)) != 0) {
      throw SupportError(errnoMessage("SO_RXQ_OVFL", errno));
    }
    port_ = boundPort(fd_);
    stopFd_ = makeEventFd();
  } catch (...) {
    closeFd(fd_);
    throw;
  }
  thread_ = std::thread([this] { run(); });
}

UdpSink::~UdpSink() { stopReader(stopFd_, thread_, fd_); }

void UdpSink::run() {
  std::vector<uint8_t> buf(65536);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint32_t))];
  int err = 0;
  while (waitReadable(fd_, stopFd_, &err)) {
    for (;;) {
      iovec iov{buf.data(), buf.size()};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      const ssize_t n = ::recvmsg(fd_, &msg, MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        err = errno;
        break;
      }
      std::optional<uint32_t> dropped;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
          uint32_t v;
          std::memcpy(&v, CMSG_DATA(c), sizeof(v));
          dropped = v;
        }
      }
      const auto marker =
          findMarker(std::span<const uint8_t>(buf.data(), std::min<size_t>(size_t(n), buf.size())));
      {
        std::lock_guard lock(mutex_);
        ++datagrams_;
        bytes_ += static_cast<uint64_t>(n);
        if (dropped) drops_ = *dropped;  // the kernel's running total for this socket
        if (marker) ++byTag_[marker->tag];
      }
      changed_.notify_all();
    }
    if (err != 0) break;
  }
  if (err != 0) {
    std::lock_guard lock(mutex_);
    error_ = errnoMessage("UDP receive", err);
  }
  changed_.notify_all();
}

uint64_t UdpSink::datagrams() const {
  std::lock_guard lock(mutex_);
  return datagrams_;
}

uint64_t UdpSink::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

uint64_t UdpSink::count(uint32_t tag) const {
  std::lock_guard lock(mutex_);
  auto it = byTag_.find(tag);
  return it == byTag_.end() ? 0 : it->second;
}

uint64_t UdpSink::socketDrops() const {
  std::lock_guard lock(mutex_);
  return drops_;
}

bool UdpSink::waitFor(uint64_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return datagrams_ >= n || !error_.empty(); }) &&
         error_.empty();
}

std::string UdpSink::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

// ---- UdpFlood ----

double FloodResult::achievedPps() const {
  const double secs = std::chrono::duration<double>(last - first).count();
  return sent < 2 || secs <= 0 ? 0.0 : static_cast<double>(sent - 1) / secs;
}

UdpFlood::UdpFlood(const std::string& ns, const std::string& dstAddress, uint16_t dstPort,
                   uint16_t srcPort) {
  int family = 0;
  dst_ = socketAddress(dstAddress, dstPort, &family);
  // Bound explicitly so the source port is known (and fixed) before the first datagram.
  fd_ = boundSocket(ns, family == AF_INET6 ? "::" : "0.0.0.0", srcPort, SOCK_DGRAM);
  try {
    localPort_ = boundPort(fd_);
  } catch (...) {
    closeFd(fd_);
    throw;
  }
}

UdpFlood::~UdpFlood() { closeFd(fd_); }

FloodResult UdpFlood::run(uint64_t ratePps, std::chrono::milliseconds duration, uint32_t tag,
                          size_t payloadBytes) {
  if (ratePps == 0) return flood(UINT64_MAX, 0, duration, tag, payloadBytes);
  const uint64_t count = ratePps * static_cast<uint64_t>(duration.count()) / 1000;
  return flood(count, ratePps, Clock::duration::max(), tag, payloadBytes);
}

FloodResult UdpFlood::send(uint64_t count, uint64_t ratePps, uint32_t tag, size_t payloadBytes) {
  return flood(count, ratePps, Clock::duration::max(), tag, payloadBytes);
}

FloodResult UdpFlood::flood(uint64_t count, uint64_t ratePps, Clock::duration limit, uint32_t tag,
                            size_t payloadBytes) {
  FloodResult result;
  result.requested = count == UINT64_MAX ? 0 : count;
  std::vector<uint8_t> payload = markerBytes(tag, 0, std::max(payloadBytes, kMarkerSize));
  Pacer pacer(ratePps);
  for (uint64_t i = 0; i < count; ++i) {
    pacer.wait(i);
    const auto now = Clock::now();
    if (i == 0) {
      result.first = now;
    } else if (limit != Clock::duration::max() && now - result.first >= limit) {
      break;
    }
    result.last = now;
    const uint32_t seq = nextSeq_++;
    payload[12] = uint8_t(seq >> 24);
    payload[13] = uint8_t(seq >> 16);
    payload[14] = uint8_t(seq >> 8);
    payload[15] = uint8_t(seq);
    if (::sendto(fd_, payload.data(), payload.size(), 0, asSockaddr(dst_),
                 static_cast<socklen_t>(dst_.size())) < 0) {
      ++result.failed;
      result.lastError = errno;
    } else {
      ++result.sent;
    }
  }
  return result;
}

// ---- TcpListener ----

TcpListener::TcpListener(const std::string& address, uint16_t port, const std::string& ns) {
  fd_ = boundSocket(ns, address, port, SOCK_STREAM | SOCK_NONBLOCK);
  try {
    if (::listen(fd_, 128) != 0) throw SupportError(errnoMessage("listen", errno));
    port_ = boundPort(fd_);
    stopFd_ = makeEventFd();
  } catch (...) {
    closeFd(fd_);
    throw;
  }
  thread_ = std::thread([this] { run(); });
}

TcpListener::~TcpListener() { stopReader(stopFd_, thread_, fd_); }

void TcpListener::run() {
  int err = 0;
  while (waitReadable(fd_, stopFd_, &err)) {
    for (;;) {
      const int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) break;  // EAGAIN: all taken; other errors: the peer gave up already
      ::close(conn);
      std::lock_guard lock(mutex_);
      ++accepted_;
    }
  }
}

uint64_t TcpListener::accepted() const {
  std::lock_guard lock(mutex_);
  return accepted_;
}

// ---- tcpProbe ----

TcpProbeResult tcpProbe(const std::string& ns, const std::string& address, uint16_t port,
                        std::chrono::milliseconds timeout) {
  int family = 0;
  const std::vector<uint8_t> sa = socketAddress(address, port, &family);
  const int fd = socketIn(ns, family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  TcpProbeResult result;
  const auto start = Clock::now();
  if (::connect(fd, asSockaddr(sa), static_cast<socklen_t>(sa.size())) == 0) {
    result.connected = true;
  } else if (errno != EINPROGRESS) {
    result.error = errno;
  } else {
    pollfd p{fd, POLLOUT, 0};
    int rc;
    while ((rc = ::poll(&p, 1, static_cast<int>(timeout.count()))) < 0 && errno == EINTR) {
    }
    if (rc == 0) {
      result.error = ETIMEDOUT;
    } else {
      int soError = 0;
      socklen_t len = sizeof(soError);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len);
      result.connected = soError == 0;
      result.error = soError;
    }
  }
  result.elapsed = Clock::now() - start;
  ::close(fd);
  return result;
}

}  // namespace vigil::testing
