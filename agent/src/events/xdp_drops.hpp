#pragma once

// XDP drop records (bpf/abi/vigil/xdp.h) -> DropEvents. Pure: rule and interface names come
// in through a Names callback, time through a Clock.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "common/error.hpp"
#include "events/clock.hpp"
#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

struct XdpDropNames {
  // policy and rule of a rule slot, when it is still in force
  std::function<std::optional<std::pair<std::string, std::string>>(uint32_t slot)> rule;
  // interface name of an ifindex, when it still exists
  std::function<std::string(uint32_t ifindex)> interface;
};

// Checks the size, type and version, then builds the event. A record that does not fit the
// ABI gives an Error that says why.
Expected<v1::Event> decodeXdpDrop(std::span<const uint8_t> raw, const XdpDropNames& names,
                                  const Clock& clock, const std::string& nodeName);

}  // namespace vigil::events
