#pragma once

// Namespace and pod selectors ("shop", "shop/cart-1", "cart-1") against an event's workload;
// used by the event and flow filters and by the JSON export.

#include <optional>
#include <string>
#include <vector>

#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

// The process an event is about, or nullptr for events without one (events/filter.cpp).
const v1::Process* processOf(const v1::Event& event);

// Kubernetes names: lowercase letters, digits, '-' and '.', 1-253 characters.
inline bool isKubernetesName(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  return true;
}

// "namespace/pod", or a pod name in any namespace.
struct PodMatch {
  std::string ns;  // empty: any namespace
  std::string pod;

  static std::optional<PodMatch> parse(const std::string& text, std::string& why) {
    auto slash = text.find('/');
    PodMatch m;
    if (slash == std::string::npos) {
      m.pod = text;
    } else {
      m.ns = text.substr(0, slash);
      m.pod = text.substr(slash + 1);
    }
    if ((slash != std::string::npos && !isKubernetesName(m.ns)) || !isKubernetesName(m.pod)) {
      why = "is not a pod (NAMESPACE/POD or POD: lowercase letters, digits, '-' and '.')";
      return std::nullopt;
    }
    return m;
  }
  bool matches(const v1::Workload& w) const {
    return w.kind() == "pod" && w.pod() == pod && (ns.empty() || w.namespace_() == ns);
  }
};

inline std::optional<std::string> parseNamespace(const std::string& text, std::string& why) {
  if (isKubernetesName(text)) return text;
  why = "is not a namespace (lowercase letters, digits, '-' and '.')";
  return std::nullopt;
}

inline bool inNamespace(const v1::Workload& w, const std::string& ns) {
  return w.kind() == "pod" && w.namespace_() == ns;
}

// Whether an event belongs to one of these namespaces or pods (both empty: every event). A
// process event by its process, a flow by either attributed side; other events (XDP drops)
// belong to no pod.
struct WorkloadSelector {
  std::vector<std::string> namespaces;
  std::vector<PodMatch> pods;

  // Values as flags give them; the error names the bad one.
  bool add(const std::vector<std::string>& ns, const std::vector<std::string>& podTexts,
           std::string& error) {
    for (const auto& n : ns) {
      std::string why;
      if (!parseNamespace(n, why)) {
        error = "namespace '" + n + "' " + why;
        return false;
      }
      namespaces.push_back(n);
    }
    for (const auto& t : podTexts) {
      std::string why;
      auto m = PodMatch::parse(t, why);
      if (!m) {
        error = "pod '" + t + "' " + why;
        return false;
      }
      pods.push_back(*m);
    }
    return true;
  }
  bool empty() const { return namespaces.empty() && pods.empty(); }
  bool matches(const v1::Workload& w) const {
    for (const auto& n : namespaces)
      if (inNamespace(w, n)) return true;
    for (const auto& p : pods)
      if (p.matches(w)) return true;
    return false;
  }
  bool matches(const v1::Event& e) const {
    if (empty()) return true;
    if (const v1::Process* p = processOf(e)) return matches(p->workload());
    return e.has_flow() &&
           (matches(e.flow().source().workload()) || matches(e.flow().destination().workload()));
  }
};

}  // namespace vigil::events
