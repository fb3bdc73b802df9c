#pragma once

// What this kernel can do, probed at start-up by loading (and where it needs no target,
// attaching) a minimal program for each capability. Nothing is left loaded afterwards.

#include <string>
#include <vector>

namespace vigil::bpf {

struct Capability {
  std::string name;
  bool available = false;
  std::string detail;  // how it was detected, or why it is not there
};

std::vector<Capability> probeKernel();

}  // namespace vigil::bpf
