#pragma once

// An agent run inside a privileged test process, with its API socket and policy directory in a
// temp directory of its own, removed with it.

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "bpf/xdp_datapath.hpp"
#include "server/agent.hpp"
#include "support/bpffs.hpp"

namespace vigil::testing {

struct TestAgent {
  std::filesystem::path dir;
  // Its pins live on a bpffs of its own, never the host's /sys/fs/bpf: unmounting it at the end
  // (or after a crash, by the next run) takes any XDP enforcement left there with it.
  std::unique_ptr<PrivateBpffs> bpffs;
  std::string pinDir;
  std::unique_ptr<server::Agent> agent;

  ~TestAgent() {
    agent.reset();  // detaches its programs before the directory goes
    if (!pinDir.empty()) bpf::XdpDataPath::cleanup(pinDir);  // and the XDP enforcement
    bpffs.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

// Starts the agent under /tmp/<prefix>-<pid>/; `adjust` may change the config first. On
// failure returns nullptr and says why in *error.
inline std::unique_ptr<TestAgent> startTestAgent(
    const std::string& prefix, const std::function<void(server::AgentConfig&)>& adjust,
    std::string* error) {
  // Directories of runs that crashed before their cleanup (their pid is gone).
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix + "-", 0) != 0) continue;
    const std::string pid = name.substr(prefix.size() + 1);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (!std::filesystem::exists("/proc/" + pid)) std::filesystem::remove_all(e.path(), ec);
  }
  auto env = std::make_unique<TestAgent>();
  env->dir = std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(env->dir);
  std::filesystem::create_directories(env->dir / "policies");
  server::AgentConfig cfg;
  cfg.apiAddress = "unix://" + (env->dir / "vigil.sock").string();
  cfg.policyDir = (env->dir / "policies").string();
  try {
    env->bpffs = PrivateBpffs::create();
  } catch (const std::exception& e) {
    *error = e.what();
    return nullptr;
  }
  cfg.pinDir = env->bpffs->path() + "/vigil";
  if (adjust) adjust(cfg);
  env->pinDir = cfg.pinDir;
  auto agent = server::Agent::start(cfg);
  if (!agent) {
    *error = agent.error().message();
    return nullptr;
  }
  env->agent = std::move(agent.value());
  return env;
}

}  // namespace vigil::testing
