#pragma once

// Network namespaces and veth pairs for the privileged network tests. A VethPair puts one end
// in the test process's namespace and the other in a namespace of its own, both addressed from
// ranges no real network uses (10.250.0.0/16, fd00:7669::/32), so traffic between them never
// reaches another host. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for setns).
//
// Setup failures throw SupportError with the failing step and its stderr or errno; a test that
// does not catch it fails with that message. Destructors never throw.

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/frames.hpp"

namespace vigil::testing {

class SupportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "<context>: <strerror(err)>".
std::string errnoMessage(const std::string& context, int err);

struct CommandResult {
  int status = -1;  // exit code; 128 + signal when killed; -1 when it could not be started
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH) with argv, without a shell, and collects its output.
CommandResult runCommand(const std::vector<std::string>& argv);
// Runs `ip <args>`; returns its stdout, or throws SupportError carrying its stderr.
std::string ipCommand(const std::vector<std::string>& args);

class VethPair {
 public:
  // Creates namespace "vigil-<tag>-<pid>-<n>" and a veth pair: host end "vgh<pid>-<n>" here,
  // peer end "vgp<pid>-<n>" in the namespace, both up with 10.250.x.y/30 (host .1, peer .2) and
  // fd00:7669:<slot>::1/64 and ::2 (nodad: usable at once), loopback up in the namespace. The
  // address slot is one no other live pair on this host holds. `tag` is [A-Za-z0-9_], at most
  // 24 characters. The first call in a process also runs removeStale(). Throws SupportError.
  static std::unique_ptr<VethPair> create(const std::string& tag);

  // Deletes the host end (which takes the peer end with it) and then the namespace.
  ~VethPair();
  VethPair(const VethPair&) = delete;
  VethPair& operator=(const VethPair&) = delete;

  const std::string& nsName() const { return ns_; }
  const std::string& hostIf() const { return hostIf_; }
  const std::string& peerIf() const { return peerIf_; }
  int hostIfindex() const { return hostIfindex_; }  // in the creating namespace
  int peerIfindex() const { return peerIfindex_; }  // in nsName()
  const std::string& hostV4() const { return hostV4_; }
  const std::string& peerV4() const { return peerV4_; }
  const std::string& hostV6() const { return hostV6_; }
  const std::string& peerV6() const { return peerV6_; }
  const Mac& hostMac() const { return hostMac_; }
  const Mac& peerMac() const { return peerMac_; }
  int slot() const { return slot_; }  // 0..16383; picks the /30 and the /64

  // Deletes "vigil-<tag>-<pid>-<n>" namespaces and "vgh<pid>-<n>" links left by processes that
  // are gone (a crashed earlier run). Leaves everything of live processes alone.
  static void removeStale();

 private:
  VethPair() = default;

  std::string ns_;
  std::string hostIf_;
  std::string peerIf_;
  bool nsCreated_ = false;
  bool linkCreated_ = false;
  int hostIfindex_ = 0;
  int peerIfindex_ = 0;
  int slot_ = -1;
  std::string hostV4_;
  std::string peerV4_;
  std::string hostV6_;
  std::string peerV6_;
  Mac hostMac_{};
  Mac peerMac_{};
};

// Runs `fn` on a temporary thread that has joined network namespace /run/netns/<ns> (or on the
// calling thread when `ns` is empty). Sockets created there stay in that namespace for life and
// may be used from any thread. An exception thrown by `fn` is rethrown here.
void runIn(const std::string& ns, const std::function<void()>& fn);

// A socket (SOCK_CLOEXEC added) created inside namespace `ns` ("" = the current one). The caller
// owns the descriptor. Throws SupportError.
int socketIn(const std::string& ns, int domain, int type, int protocol);

// The index of interface `ifname` as seen in namespace `ns`. Throws SupportError.
int ifindexIn(const std::string& ns, const std::string& ifname);

}  // namespace vigil::testing
