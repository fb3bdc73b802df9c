#include "events/net_names.hpp"

#include <arpa/inet.h>

#include <algorithm>

namespace vigil::events {

std::string protocolName(uint8_t proto) {
  switch (proto) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 1:
      return "icmp";
    case 58:
      return "icmpv6";
    default:
      return std::to_string(proto);
  }
}

std::string ipString(const uint8_t (&a)[16]) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return ipString(a, std::equal(a, a + 12, kMapped));
}

std::string ipString(const uint8_t (&a)[16], bool v4) {
  char buf[INET6_ADDRSTRLEN] = {};
  const char* s =
      v4 ? inet_ntop(AF_INET, a + 12, buf, sizeof buf) : inet_ntop(AF_INET6, a, buf, sizeof buf);
  return s ? s : "?";
}

}  // namespace vigil::events
