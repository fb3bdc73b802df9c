#include "support/netns.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <set>
#include <thread>

extern char** environ;

namespace vigil::testing {
namespace {

constexpr char kNetnsDir[] = "/run/netns";
constexpr char kNsPrefix[] = "vigil-";
constexpr char kHostPrefix[] = "vgh";
constexpr char kPeerPrefix[] = "vgp";
// Held while a pair picks its address slot and claims it on the host end, so concurrent test
// processes never pick the same one.
// Address slots are handed out under an flock on this directory (a lock file would be left
// behind).
constexpr char kSlotLock[] = "/run";
constexpr int kSlots = 16384;  // /30 blocks in 10.250.0.0/16
constexpr auto kLinkUpTimeout = std::chrono::seconds(5);

std::atomic<unsigned> pairCounter{0};
std::once_flag staleOnce;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string joinArgs(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

bool allDigits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

bool pidAlive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

std::vector<std::string> listDir(const char* path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path);
  if (dir == nullptr) return names;
  while (dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  return names;
}

// The pid in "vigil-<tag>-<pid>-<n>", or 0 when the name is not in that form.
pid_t nsOwner(const std::string& name) {
  if (name.rfind(kNsPrefix, 0) != 0) return 0;
  const size_t lastDash = name.rfind('-');
  if (lastDash == std::string::npos || lastDash == 0) return 0;
  const size_t pidDash = name.rfind('-', lastDash - 1);
  if (pidDash == std::string::npos || pidDash < std::strlen(kNsPrefix)) return 0;
  const std::string pid = name.substr(pidDash + 1, lastDash - pidDash - 1);
  if (!allDigits(pid) || !allDigits(name.substr(lastDash + 1)) || pid.size() > 9) return 0;
  return static_cast<pid_t>(std::stol(pid));
}

// The pid in "vgh<pid>-<n>" / "vgp<pid>-<n>", or 0.
pid_t linkOwner(const std::string& name) {
  if (name.rfind(kHostPrefix, 0) != 0 && name.rfind(kPeerPrefix, 0) != 0) return 0;
  const size_t dash = name.find('-');
  if (dash == std::string::npos) return 0;
  const std::string pid = name.substr(3, dash - 3);
  if (!allDigits(pid) || !allDigits(name.substr(dash + 1)) || pid.size() > 9) return 0;
  return static_cast<pid_t>(std::stol(pid));
}

// Slots already taken by address blocks on interfaces of this namespace.
std::set<int> usedSlots() {
  std::set<int> used;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) throw SupportError(errnoMessage("getifaddrs", errno));
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    if (a->ifa_addr->sa_family == AF_INET) {
      const uint32_t ip = ntohl(reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
      if ((ip >> 16) == ((10u << 8) | 250u)) used.insert(static_cast<int>((ip & 0xffff) >> 2));
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      const uint8_t* b = reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr.s6_addr;
      if (b[0] == 0xfd && b[1] == 0x00 && b[2] == 0x76 && b[3] == 0x69) {
        used.insert((b[4] << 8) | b[5]);
      }
    }
  }
  ::freeifaddrs(list);
  return used;
}

// An exclusive flock on kSlotLock for the lifetime of the object.
class SlotLock {
 public:
  SlotLock() : fd_(::open(kSlotLock, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    if (fd_.get() < 0) throw SupportError(errnoMessage(std::string("open ") + kSlotLock, errno));
    while (::flock(fd_.get(), LOCK_EX) != 0) {
      if (errno != EINTR)
        throw SupportError(errnoMessage(std::string("flock ") + kSlotLock, errno));
    }
  }  // closing the descriptor releases the lock

 private:
  Fd fd_;
};

unsigned ifFlags(int sock, const std::string& ifname) {
  ifreq req{};
  std::strncpy(req.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (::ioctl(sock, SIOCGIFFLAGS, &req) != 0) {
    throw SupportError(errnoMessage("SIOCGIFFLAGS " + ifname, errno));
  }
  return static_cast<unsigned>(req.ifr_flags);
}

Mac ifMac(int sock, const std::string& ifname) {
  ifreq req{};
  std::strncpy(req.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (::ioctl(sock, SIOCGIFHWADDR, &req) != 0) {
    throw SupportError(errnoMessage("SIOCGIFHWADDR " + ifname, errno));
  }
  Mac mac;
  std::memcpy(mac.data(), req.ifr_hwaddr.sa_data, mac.size());
  return mac;
}

}  // namespace

std::string errnoMessage(const std::string& context, int err) {
  return context + ": " + std::strerror(err);
}

CommandResult runCommand(const std::vector<std::string>& argv) {
  CommandResult result;
  int outPipe[2];
  int errPipe[2];
  if (::pipe2(outPipe, O_CLOEXEC) != 0) {
    result.err = errnoMessage("pipe", errno);
    return result;
  }
  if (::pipe2(errPipe, O_CLOEXEC) != 0) {
    result.err = errnoMessage("pipe", errno);
    ::close(outPipe[0]);
    ::close(outPipe[1]);
    return result;
  }
  Fd outRead(outPipe[0]);
  Fd errRead(errPipe[0]);

  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1);
  ::posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::close(outPipe[1]);
  ::close(errPipe[1]);
  if (rc != 0) {
    result.err = errnoMessage("spawn " + argv[0], rc);
    return result;
  }

  // Drain both pipes together so a chatty child cannot block on a full one.
  pollfd fds[2] = {{outRead.get(), POLLIN, 0}, {errRead.get(), POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open = 2;
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string ipCommand(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = runCommand(argv);
  if (r.status != 0) {
    while (!r.err.empty() && r.err.back() == '\n') r.err.pop_back();
    throw SupportError(joinArgs(argv) + ": exit status " + std::to_string(r.status) + ": " + r.err);
  }
  return r.out;
}

void runIn(const std::string& ns, const std::function<void()>& fn) {
  if (ns.empty()) {
    fn();
    return;
  }
  std::exception_ptr error;
  std::thread worker([&] {
    try {
      const std::string path = std::string(kNetnsDir) + "/" + ns;
      Fd nsFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (nsFd.get() < 0) throw SupportError(errnoMessage("open " + path, errno));
      if (::setns(nsFd.get(), CLONE_NEWNET) != 0) {
        throw SupportError(errnoMessage("setns " + path, errno));
      }
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  });
  worker.join();
  if (error) std::rethrow_exception(error);
}

int socketIn(const std::string& ns, int domain, int type, int protocol) {
  int fd = -1;
  runIn(ns, [&] {
    fd = ::socket(domain, type | SOCK_CLOEXEC, protocol);
    if (fd < 0) {
      throw SupportError(errnoMessage("socket(" + std::to_string(domain) + ", " +
                                          std::to_string(type) + ") in netns '" + ns + "'",
                                      errno));
    }
  });
  return fd;
}

int ifindexIn(const std::string& ns, const std::string& ifname) {
  int index = 0;
  runIn(ns, [&] {
    index = static_cast<int>(::if_nametoindex(ifname.c_str()));
    if (index == 0) {
      throw SupportError(errnoMessage("interface " + ifname + " in netns '" + ns + "'", errno));
    }
  });
  return index;
}

std::unique_ptr<VethPair> VethPair::create(const std::string& tag) {
  if (tag.empty() || tag.size() > 24 ||
      tag.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
          std::string::npos) {
    throw SupportError("VethPair tag '" + tag + "': want 1..24 of [A-Za-z0-9_]");
  }
  std::call_once(staleOnce, [] { removeStale(); });

  const pid_t pid = ::getpid();
  const unsigned n = pairCounter.fetch_add(1) % 10000;  // keeps interface names <= 15 chars
  const std::string id = std::to_string(pid) + "-" + std::to_string(n);
  std::unique_ptr<VethPair> pair(new VethPair());
  pair->ns_ = kNsPrefix + tag + "-" + id;
  pair->hostIf_ = kHostPrefix + id;
  pair->peerIf_ = kPeerPrefix + id;
  const std::string& ns = pair->ns_;
  // From here on, a throw destroys `pair`, which removes whatever was created.
  {
    SlotLock lock;
    const std::set<int> used = usedSlots();
    int slot = static_cast<int>((static_cast<unsigned>(pid) * 131u + n * 7u) % kSlots);
    for (int tries = 0; used.count(slot) != 0; ++tries) {
      if (tries == kSlots) throw SupportError("no free 10.250.0.0/16 slot for a veth pair");
      slot = (slot + 1) % kSlots;
    }
    pair->slot_ = slot;
    const int base = slot * 4;
    const std::string v4 = "10.250." + std::to_string(base >> 8) + ".";
    pair->hostV4_ = v4 + std::to_string((base & 0xff) + 1);
    pair->peerV4_ = v4 + std::to_string((base & 0xff) + 2);
    char v6[32];
    std::snprintf(v6, sizeof(v6), "fd00:7669:%x::", slot);
    pair->hostV6_ = std::string(v6) + "1";
    pair->peerV6_ = std::string(v6) + "2";
    char macs[2][18];
    for (int end = 0; end < 2; ++end) {
      std::snprintf(macs[end], sizeof(macs[end]), "02:76:67:%02x:%02x:%02x", slot >> 8, slot & 0xff,
                    end + 1);
    }

    ipCommand({"netns", "add", ns});
    pair->nsCreated_ = true;
    // The peer is created directly in the namespace, so it never exists in this one.
    ipCommand({"link", "add", pair->hostIf_, "address", macs[0], "type", "veth", "peer", "name",
               pair->peerIf_, "address", macs[1], "netns", ns});
    pair->linkCreated_ = true;
    ipCommand({"addr", "add", pair->hostV4_ + "/30", "dev", pair->hostIf_});
    ipCommand({"-6", "addr", "add", pair->hostV6_ + "/64", "dev", pair->hostIf_, "nodad"});
  }
  ipCommand({"-n", ns, "addr", "add", pair->peerV4_ + "/30", "dev", pair->peerIf_});
  ipCommand({"-n", ns, "-6", "addr", "add", pair->peerV6_ + "/64", "dev", pair->peerIf_, "nodad"});
  ipCommand({"-n", ns, "link", "set", "lo", "up"});
  ipCommand({"-n", ns, "link", "set", pair->peerIf_, "up"});
  ipCommand({"link", "set", pair->hostIf_, "up"});

  pair->hostIfindex_ = ifindexIn("", pair->hostIf_);
  pair->peerIfindex_ = ifindexIn(ns, pair->peerIf_);

  // Wait until both ends are operationally up: before that the kernel drops what is sent.
  Fd hostSock(socketIn("", AF_INET, SOCK_DGRAM, 0));
  Fd peerSock(socketIn(ns, AF_INET, SOCK_DGRAM, 0));
  const auto deadline = std::chrono::steady_clock::now() + kLinkUpTimeout;
  while ((ifFlags(hostSock.get(), pair->hostIf_) & IFF_RUNNING) == 0 ||
         (ifFlags(peerSock.get(), pair->peerIf_) & IFF_RUNNING) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw SupportError("veth " + pair->hostIf_ + "/" + pair->peerIf_ + " not running after " +
                         std::to_string(kLinkUpTimeout.count()) + "s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  pair->hostMac_ = ifMac(hostSock.get(), pair->hostIf_);
  pair->peerMac_ = ifMac(peerSock.get(), pair->peerIf_);
  return pair;
}

VethPair::~VethPair() {
  try {
    // Deleting the host end removes both ends at once; deleting only the namespace would leave
    // the host end to the kernel's asynchronous namespace cleanup.
    if (linkCreated_) runCommand({"ip", "link", "del", hostIf_});
    if (nsCreated_) runCommand({"ip", "netns", "del", ns_});
  } catch (...) {
    // Nothing sensible to do in a destructor; removeStale() catches leftovers next run.
  }
}

void VethPair::removeStale() {
  for (const std::string& name : listDir(kNetnsDir)) {
    const pid_t owner = nsOwner(name);
    if (owner <= 0 || pidAlive(owner)) continue;
    const std::string id = name.substr(name.rfind('-', name.rfind('-') - 1) + 1);
    runCommand({"ip", "link", "del", kHostPrefix + id});
    runCommand({"ip", "netns", "del", name});
  }
  for (const std::string& name : listDir("/sys/class/net")) {
    const pid_t owner = linkOwner(name);
    if (owner > 0 && !pidAlive(owner)) runCommand({"ip", "link", "del", name});
  }
}

}  // namespace vigil::testing
