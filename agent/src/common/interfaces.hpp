#pragma once

// The network interfaces of the agent's network namespace.

#include <cstdint>
#include <map>
#include <string>

namespace vigil {

// True when `ifname` is a loopback interface (from /sys/class/net/<ifname>/flags).
bool isLoopback(const std::string& ifname);

// Every interface but loopback, by name, with its index.
std::map<std::string, uint32_t> nonLoopbackInterfaces();

}  // namespace vigil
