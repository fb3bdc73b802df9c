#include "events/records.hpp"

#include <cstring>
#include <string_view>

#include <vigil/records.h>

namespace vigil::events {
namespace {

Error malformed(const std::string& what) { return Error(0, "malformed record: " + what); }

std::string fixedString(const char* p, size_t max) { return std::string(p, strnlen(p, max)); }

template <typename Raw>
bool copyFixed(std::span<const uint8_t> raw, Raw& out) {
  if (raw.size() < sizeof(Raw)) return false;
  std::memcpy(&out, raw.data(), sizeof(Raw));
  return true;
}

Expected<Record> decodeExec(std::span<const uint8_t> raw) {
  vigil_exec_record r{};
  if (!copyFixed(raw, r)) return malformed("exec record shorter than its fixed part");
  const size_t lens[] = {r.path_len, r.args_len, r.cwd_len, r.filename_len, r.interp_len};
  const size_t limits[] = {VIGIL_PATH_MAX, VIGIL_ARGS_MAX, VIGIL_PATH_MAX, VIGIL_FILENAME_MAX,
                           VIGIL_INTERP_MAX};
  size_t total = 0;
  for (size_t i = 0; i < std::size(lens); i++) {
    if (lens[i] > limits[i]) return malformed("exec field length over its limit");
    total += lens[i];
  }
  if (sizeof(r) + total != raw.size()) {
    return malformed("exec lengths add up to " + std::to_string(sizeof(r) + total) +
                     " bytes, record has " + std::to_string(raw.size()));
  }
  ExecRecord e;
  e.ktimeNs = r.hdr.ktime_ns;
  e.pid = r.pid;
  e.tid = r.tid;
  e.ppid = r.ppid;
  e.uid = r.uid;
  e.gid = r.gid;
  e.euid = r.euid;
  e.cgroupId = r.cgroup_id;
  e.procStartNs = r.proc_start_ns;
  e.flags = r.flags;
  e.argc = r.argc;
  e.comm = fixedString(r.comm, sizeof r.comm);
  e.verdict = r.verdict;
  e.ruleSlot = r.rule_slot;
  e.ruleGen = r.rule_gen;
  std::string_view data(reinterpret_cast<const char*>(raw.data()) + sizeof(r), total);
  size_t off = 0;
  auto take = [&](size_t n) {
    auto s = data.substr(off, n);
    off += n;
    return s;
  };
  e.path = take(r.path_len);
  e.args = splitArgs(take(r.args_len));
  e.cwd = take(r.cwd_len);
  e.filename = take(r.filename_len);
  e.interp = take(r.interp_len);
  return Record(std::move(e));
}

Expected<Record> decodeExit(std::span<const uint8_t> raw) {
  vigil_exit_record r{};
  if (raw.size() != sizeof(r) || !copyFixed(raw, r)) return malformed("exit record size");
  ExitRecord e;
  e.ktimeNs = r.hdr.ktime_ns;
  e.pid = r.pid;
  e.tid = r.tid;
  e.ppid = r.ppid;
  e.status = r.exit_code;
  e.cgroupId = r.cgroup_id;
  e.procStartNs = r.proc_start_ns;
  e.comm = fixedString(r.comm, sizeof r.comm);
  e.peakRssPages = r.peak_rss_pages;
  if (r.flags & VIGIL_EXIT_HAS_RSS) e.rssPages = r.rss_pages;
  return Record(std::move(e));
}

Expected<Record> decodeFork(std::span<const uint8_t> raw) {
  vigil_fork_record r{};
  if (raw.size() != sizeof(r) || !copyFixed(raw, r)) return malformed("fork record size");
  ForkRecord e;
  e.ktimeNs = r.hdr.ktime_ns;
  e.pid = r.pid;
  e.ppid = r.ppid;
  e.cgroupId = r.cgroup_id;
  e.procStartNs = r.proc_start_ns;
  e.comm = fixedString(r.comm, sizeof r.comm);
  return Record(std::move(e));
}

Expected<Record> decodeDenied(std::span<const uint8_t> raw) {
  vigil_denied_record r{};
  if (!copyFixed(raw, r)) return malformed("denied record shorter than its fixed part");
  if (r.path_len > VIGIL_PATH_MAX || sizeof(r) + r.path_len != raw.size())
    return malformed("denied record path length does not match its size");
  DeniedRecord d;
  d.ktimeNs = r.hdr.ktime_ns;
  d.pid = r.pid;
  d.tid = r.tid;
  d.ppid = r.ppid;
  d.uid = r.uid;
  d.cgroupId = r.cgroup_id;
  d.ruleSlot = r.rule_slot;
  d.ruleGen = r.rule_gen;
  d.path.assign(reinterpret_cast<const char*>(raw.data()) + sizeof(r), r.path_len);
  d.comm = fixedString(r.comm, sizeof r.comm);
  return Record(std::move(d));
}

}  // namespace

bool ExecRecord::argsTruncated() const { return flags & VIGIL_EXEC_ARGS_TRUNCATED; }
bool ExecRecord::pathTruncated() const {
  return flags & (VIGIL_EXEC_PATH_TRUNCATED | VIGIL_EXEC_CWD_TRUNCATED);
}
bool ExecRecord::viaInterpreter() const { return flags & VIGIL_EXEC_INTERP; }

uint16_t peekType(std::span<const uint8_t> raw) {
  vigil_record_hdr h{};
  if (!copyFixed(raw, h)) return 0;
  return h.type;
}

Expected<Record> decode(std::span<const uint8_t> raw) {
  vigil_record_hdr h{};
  if (!copyFixed(raw, h)) {
    return malformed("only " + std::to_string(raw.size()) + " bytes, shorter than a header");
  }
  if (h.version != VIGIL_ABI_VERSION) {
    return malformed("ABI version " + std::to_string(h.version) + ", this agent reads " +
                     std::to_string(VIGIL_ABI_VERSION));
  }
  if (h.size != raw.size()) {
    return malformed("header says " + std::to_string(h.size) + " bytes, record has " +
                     std::to_string(raw.size()));
  }
  switch (h.type) {
    case VIGIL_REC_EXEC: return decodeExec(raw);
    case VIGIL_REC_EXIT: return decodeExit(raw);
    case VIGIL_REC_FORK: return decodeFork(raw);
    case VIGIL_REC_DENIED: return decodeDenied(raw);
    default: return malformed("unknown record type " + std::to_string(h.type));
  }
}

std::vector<std::string> splitArgs(std::string_view bytes) {
  std::vector<std::string> out;
  while (!bytes.empty()) {
    size_t nul = bytes.find('\0');
    if (nul == std::string_view::npos) {
      out.emplace_back(bytes);
      break;
    }
    out.emplace_back(bytes.substr(0, nul));
    bytes.remove_prefix(nul + 1);
  }
  return out;
}

}  // namespace vigil::events
