#pragma once

// A resolved workload in the API's terms (vigil.v1.Workload).

#include "k8s/workload_resolver.hpp"
#include "vigil/v1/vigil.pb.h"

namespace vigil::k8s {

inline const char* kindName(Workload::Kind kind) {
  switch (kind) {
    case Workload::Kind::pod: return "pod";
    case Workload::Kind::container: return "container";
    default: return "host";
  }
}

inline void toProto(const Workload& w, v1::Workload* out) {
  out->set_kind(kindName(w.kind));
  out->set_namespace_(w.namespace_);
  out->set_pod(w.pod);
  out->set_pod_uid(w.podUid);
  out->set_container(w.container);
  out->set_container_id(w.containerId);
  out->set_runtime(w.runtime);
}

// False while there is more to learn: a pod whose names the log directory did not have yet,
// or a container whose name it did not have.
inline bool complete(const v1::Workload& w) {
  if (w.kind() != "pod") return true;
  return !w.pod().empty() && (w.container_id().empty() || !w.container().empty());
}

}  // namespace vigil::k8s
