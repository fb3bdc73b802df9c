#include "json_line.hpp"

#include <google/protobuf/util/json_util.h>

namespace vigil {

std::string jsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok())
    out = R"({"error":"cannot encode )" + std::string(message.GetTypeName()) + R"( as JSON"})";
  return out;
}

}  // namespace vigil
