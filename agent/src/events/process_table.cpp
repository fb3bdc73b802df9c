#include "events/process_table.hpp"

namespace vigil::events {

namespace {
v1::Ancestor summarize(const v1::Process& p) {
  v1::Ancestor a;
  a.set_exec_id(p.exec_id());
  a.set_pid(p.pid());
  a.set_binary(p.binary());
  size_t budget = kAncestorArgsBytes;
  for (const auto& arg : p.args()) {
    if (arg.size() + 1 > budget) {
      if (budget > 1) a.add_args(arg.substr(0, budget - 1));
      a.set_args_truncated(true);
      break;
    }
    a.add_args(arg);
    budget -= arg.size() + 1;
  }
  if (p.args_truncated()) a.set_args_truncated(true);
  return a;
}
}  // namespace

ProcessTable::ProcessTable(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {
  entries_.reserve(capacity_);
}

void ProcessTable::touch(Entry& e) { lru_.splice(lru_.begin(), lru_, e.lru); }

const v1::Process& ProcessTable::upsert(v1::Process process, uint64_t procStartNs) {
  uint32_t pid = process.pid();
  v1::Ancestor summary = summarize(process);
  if (auto it = entries_.find(pid); it != entries_.end()) {
    it->second.process = std::move(process);
    it->second.summary = std::move(summary);
    it->second.procStartNs = procStartNs;
    touch(it->second);
    return it->second.process;
  }
  if (entries_.size() >= capacity_) {
    entries_.erase(lru_.back());
    lru_.pop_back();
    evictions_++;
  }
  lru_.push_front(pid);
  auto [it, _] = entries_.emplace(
      pid, Entry{std::move(process), std::move(summary), procStartNs, lru_.begin()});
  return it->second.process;
}

const v1::Process* ProcessTable::find(uint32_t pid) {
  auto it = entries_.find(pid);
  if (it == entries_.end()) return nullptr;
  touch(it->second);
  return &it->second.process;
}

std::optional<uint64_t> ProcessTable::startOf(uint32_t pid) const {
  auto it = entries_.find(pid);
  if (it == entries_.end()) return std::nullopt;
  return it->second.procStartNs;
}

std::optional<v1::Process> ProcessTable::remove(uint32_t pid) {
  auto it = entries_.find(pid);
  if (it == entries_.end()) return std::nullopt;
  v1::Process p = std::move(it->second.process);
  lru_.erase(it->second.lru);
  entries_.erase(it);
  return p;
}

void ProcessTable::ancestors(uint32_t pid, size_t maxDepth,
                             google::protobuf::RepeatedPtrField<v1::Ancestor>* out) const {
  for (size_t depth = 0; pid != 0 && depth < maxDepth; depth++) {
    auto it = entries_.find(pid);
    if (it == entries_.end()) break;
    const v1::Process& p = it->second.process;
    *out->Add() = it->second.summary;
    if (p.ppid() == pid) break;  // pid 1 in a namespace can be its own parent here
    pid = p.ppid();
  }
}

}  // namespace vigil::events
