#pragma once

// A bounded table of live processes, keyed by pid, so that every event can carry its parent
// chain. Least recently used entries are evicted when full, and counted.

#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

#include "vigil/v1/vigil.pb.h"

namespace vigil::events {

// argv bytes kept in an ancestor summary.
inline constexpr size_t kAncestorArgsBytes = 256;

class ProcessTable {
 public:
  explicit ProcessTable(size_t capacity);

  // Inserts or replaces the entry for process.pid(). procStartNs is the kernel's start time of
  // the thread group (fork time), kept to recognise a reused pid.
  const v1::Process& upsert(v1::Process process, uint64_t procStartNs);
  const v1::Process* find(uint32_t pid);
  // The start time recorded with the entry, when there is one.
  std::optional<uint64_t> startOf(uint32_t pid) const;
  std::optional<v1::Process> remove(uint32_t pid);

  // The chain of known ancestors starting at pid (the parent of the event's process), nearest
  // first, stopping at a pid that is not known, at pid 0, or after maxDepth entries.
  // Appended to out, so an event is filled in place.
  void ancestors(uint32_t pid, size_t maxDepth,
                 google::protobuf::RepeatedPtrField<v1::Ancestor>* out) const;

  size_t size() const { return entries_.size(); }
  size_t capacity() const { return capacity_; }
  uint64_t evictions() const { return evictions_; }

 private:
  struct Entry {
    v1::Process process;
    v1::Ancestor summary;  // what descendants' events carry, built once
    uint64_t procStartNs;
    std::list<uint32_t>::iterator lru;
  };
  void touch(Entry& e);

  size_t capacity_;
  uint64_t evictions_ = 0;
  std::unordered_map<uint32_t, Entry> entries_;
  std::list<uint32_t> lru_;  // most recently used first
};

}  // namespace vigil::events
