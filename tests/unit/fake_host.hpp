#pragma once

// A node's files and cgroups, by path, for tests of the policy compiler and store.

#include <map>
#include <optional>
#include <string>

#include "policy/exec_rules.hpp"

namespace vigil::policy::testing {

struct FakeHost {
  std::map<std::string, FileId> files;
  std::map<std::string, uint64_t> cgroups;

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
};

}  // namespace vigil::policy::testing
