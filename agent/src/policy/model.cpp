#include "policy/model.hpp"

#include <arpa/inet.h>

namespace vigil::policy {

std::string Position::str() const {
  std::string out = file.empty() ? "<input>" : file;
  // Line 0 means "the whole file" (unreadable, too large, no documents): no line:col to show.
  if (line > 0) {
    out += ':' + std::to_string(line) + ':' + std::to_string(column);
  }
  return out;
}

bool ExecMatch::empty() const {
  return binaries.empty() && pathPrefixes.empty() && parentBinaries.empty() && uids.empty() &&
         cgroupPathPrefixes.empty();
}

const char* toString(Mode m) {
  switch (m) {
    case Mode::enforce:
      return "enforce";
    case Mode::audit:
      return "audit";
  }
  return "unknown";
}

const char* toString(ExecAction a) {
  switch (a) {
    case ExecAction::kill:
      return "kill";
    case ExecAction::audit:
      return "audit";
  }
  return "unknown";
}

std::string Cidr::str() const {
  char buf[INET6_ADDRSTRLEN];
  const char* text = v4 ? inet_ntop(AF_INET, addr.data() + 12, buf, sizeof buf)
                        : inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
  return std::string(text ? text : "?") + "/" + std::to_string(prefix);
}

const char* toString(XdpAction a) {
  switch (a) {
    case XdpAction::drop:
      return "drop";
    case XdpAction::pass:
      return "pass";
  }
  return "unknown";
}

const char* toString(Protocol p) {
  switch (p) {
    case Protocol::tcp:
      return "tcp";
    case Protocol::udp:
      return "udp";
    case Protocol::icmp:
      return "icmp";
    case Protocol::icmpv6:
      return "icmpv6";
  }
  return "unknown";
}

}  // namespace vigil::policy
