#include "common/interfaces.hpp"

#include <net/if.h>

#include <fstream>

namespace vigil {

bool isLoopback(const std::string& ifname) {
  std::ifstream in("/sys/class/net/" + ifname + "/flags");
  unsigned long flags = 0;
  in >> std::hex >> flags;
  return in && (flags & IFF_LOOPBACK);
}

std::map<std::string, uint32_t> nonLoopbackInterfaces() {
  std::map<std::string, uint32_t> out;
  if (struct if_nameindex* all = if_nameindex()) {
    for (auto* i = all; i->if_index != 0; i++) {
      if (!isLoopback(i->if_name)) out.emplace(i->if_name, i->if_index);
    }
    if_freenameindex(all);
  }
  return out;
}

}  // namespace vigil
