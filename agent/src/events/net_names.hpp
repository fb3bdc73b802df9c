#pragma once

// Names of network things in events: protocols and addresses.

#include <cstdint>
#include <string>

namespace vigil::events {

// "tcp", "udp", "icmp", "icmpv6", or the number.
std::string protocolName(uint8_t proto);

// A 16-byte address as text: IPv4 when v4 is set (from its last 4 bytes), else IPv6.
std::string ipString(const uint8_t (&addr)[16], bool v4);
// The same, IPv4 for an IPv4-mapped address (::ffff:a.b.c.d).
std::string ipString(const uint8_t (&addr)[16]);

}  // namespace vigil::events
