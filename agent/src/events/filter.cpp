#include "events/filter.hpp"

#include <algorithm>

namespace vigil::events {
namespace {
bool before(const google::protobuf::Timestamp& a, const google::protobuf::Timestamp& b) {
  return a.seconds() < b.seconds() || (a.seconds() == b.seconds() && a.nanos() < b.nanos());
}
}  // namespace

const v1::Process* processOf(const v1::Event& event) {
  switch (event.event_case()) {
    case v1::Event::kExec: return &event.exec().process();
    case v1::Event::kExit: return &event.exit().process();
    case v1::Event::kPolicy: return &event.policy().process();
    case v1::Event::kOomKill: return &event.oom_kill().process();
    default: return nullptr;
  }
}

Expected<EventFilter> EventFilter::fromRequest(const v1::GetEventsRequest& request) {
  EventFilter f;
  for (int t : request.types()) {
    if (t != v1::EVENT_TYPE_EXEC && t != v1::EVENT_TYPE_EXIT && t != v1::EVENT_TYPE_LOST &&
        t != v1::EVENT_TYPE_POLICY && t != v1::EVENT_TYPE_DROP && t != v1::EVENT_TYPE_OOM_KILL) {
      return Error(EINVAL, "types: unsupported event type " + std::to_string(t));
    }
    f.types_.push_back(static_cast<v1::EventType>(t));
  }
  for (uint32_t pid : request.pids()) {
    if (pid == 0) return Error(EINVAL, "pids: pid 0 matches no process");
    f.pids_.push_back(pid);
  }
  for (const std::string& b : request.binaries()) {
    if (b.empty()) return Error(EINVAL, "binaries: empty value");
    if (b.back() == '*') {
      f.prefixes_.push_back(b.substr(0, b.size() - 1));
    } else if (b.back() == '/') {
      f.prefixes_.push_back(b);
    } else {
      f.exact_.push_back(b);
    }
  }
  std::string why;
  if (!f.workloads_.add({request.namespaces().begin(), request.namespaces().end()},
                        {request.pods().begin(), request.pods().end()}, why)) {
    return Error(EINVAL, (why.rfind("pod", 0) == 0 ? "pods: " : "namespaces: ") + why);
  }
  if (request.has_since()) {
    const auto& s = request.since();
    if (s.seconds() < 0 || s.nanos() < 0 || s.nanos() >= 1'000'000'000) {
      return Error(EINVAL, "since: not a valid timestamp");
    }
    f.since_ = s;
  }
  return f;
}

bool EventFilter::matches(const v1::Event& event) const {
  if (event.type() == v1::EVENT_TYPE_LOST) return true;
  if (!types_.empty() && std::find(types_.begin(), types_.end(), event.type()) == types_.end())
    return false;
  if (since_ && before(event.time(), *since_)) return false;
  const v1::Process* p = processOf(event);
  if (!pids_.empty() && (!p || std::find(pids_.begin(), pids_.end(), p->pid()) == pids_.end()))
    return false;
  if (!exact_.empty() || !prefixes_.empty()) {
    if (!p) return false;
    const std::string& bin = p->binary();
    bool hit = std::find(exact_.begin(), exact_.end(), bin) != exact_.end() ||
               std::any_of(prefixes_.begin(), prefixes_.end(),
                           [&](const std::string& pre) { return bin.rfind(pre, 0) == 0; });
    if (!hit) return false;
  }
  return workloads_.matches(event);
}

}  // namespace vigil::events
