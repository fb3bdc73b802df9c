#pragma once

// A message in the protobuf JSON mapping on one line, the form every JSON output of Vigil
// takes (`vigil ... -o json`, the agent's --export-file): proto field names (snake_case),
// zero values included so every object of one type has the same keys, enums as names.

#include <google/protobuf/message.h>

#include <string>

namespace vigil {

// Without the newline. A message that cannot be encoded gives an {"error": ...} object
// rather than half a line.
std::string jsonLine(const google::protobuf::Message& message);

}  // namespace vigil
