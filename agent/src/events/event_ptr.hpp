#pragma once

// Events are built once and then shared, read-only, by the recent-event ring and every
// client queue. Each one lives on its own protobuf arena, so building it costs a few block
// allocations instead of one malloc per string and sub-message, and freeing it is one call.

#include <memory>

#include <google/protobuf/arena.h>

#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

using EventPtr = std::shared_ptr<const v1::Event>;

// A new, empty event on its own arena; the arena lives as long as the last pointer. Its
// first block is firstBlockBytes: enough for a typical event of the kind, so that most events
// cost one allocation and a ring of them no more memory than they use.
inline std::shared_ptr<v1::Event> makeEvent(size_t firstBlockBytes = 2048) {
  struct Holder {
    explicit Holder(const google::protobuf::ArenaOptions& o) : arena(o) {}
    google::protobuf::Arena arena;
  };
  google::protobuf::ArenaOptions options;
  options.start_block_size = firstBlockBytes;
  options.max_block_size = 16384;
  auto holder = std::make_shared<Holder>(options);
  v1::Event* event = google::protobuf::Arena::CreateMessage<v1::Event>(&holder->arena);
  return std::shared_ptr<v1::Event>(holder, event);
}

}  // namespace vigil::events
