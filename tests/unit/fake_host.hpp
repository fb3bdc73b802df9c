#pragma once

// A node's files, cgroups and network interfaces, by name, for tests of the policy compilers and
// the store.

#include <map>
#include <optional>
#include <string>

#include "policy/exec_rules.hpp"
#include "policy/xdp_rules.hpp"

namespace vigil::policy::testing {

struct FakeHost {
  std::map<std::string, FileId> files;
  std::map<std::string, uint64_t> cgroups;
  std::map<std::string, InterfaceInfo> interfaces;  // by interface name

  Resolver resolver() const {
    return Resolver{[this](const std::string& path) -> std::optional<FileId> {
                      auto it = files.find(path);
                      if (it == files.end()) return std::nullopt;
                      return it->second;
                    },
                    [this](const std::string& path) -> std::optional<uint64_t> {
                      auto it = cgroups.find(path);
                      if (it == cgroups.end()) return std::nullopt;
                      return it->second;
                    }};
  }

  XdpResolver xdpResolver() const {
    return XdpResolver{[this](const std::string& name) -> std::optional<InterfaceInfo> {
      auto it = interfaces.find(name);
      if (it == interfaces.end()) return std::nullopt;
      return it->second;
    }};
  }
};

}  // namespace vigil::policy::testing
