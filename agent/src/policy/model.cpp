#include "policy/model.hpp"

namespace vigil::policy {

std::string Position::str() const {
  std::string out = file.empty() ? "<input>" : file;
  // Line 0 means "the whole file" (unreadable, too large, no documents): no line:col to show.
  if (line > 0) {
    out += ':' + std::to_string(line) + ':' + std::to_string(column);
  }
  return out;
}

bool ExecMatch::empty() const {
  return binaries.empty() && pathPrefixes.empty() && parentBinaries.empty() && uids.empty() &&
         cgroupPathPrefixes.empty();
}

const char* toString(Mode m) {
  switch (m) {
    case Mode::enforce:
      return "enforce";
    case Mode::audit:
      return "audit";
  }
  return "unknown";
}

const char* toString(ExecAction a) {
  switch (a) {
    case ExecAction::kill:
      return "kill";
    case ExecAction::audit:
      return "audit";
  }
  return "unknown";
}

}  // namespace vigil::policy
