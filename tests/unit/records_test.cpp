// The decoder: every record shape the kernel produces, and every way a record can be broken.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include <vigil/records.h>

#include "events/records.hpp"

namespace vigil::events {
namespace {

struct ExecParts {
  std::string path = "/usr/bin/true";
  std::string args = std::string("true\0-x\0", 8);
  std::string cwd = "/root";
  std::string filename;
  std::string interp;
  uint32_t flags = 0;
};

std::vector<uint8_t> execBytes(const ExecParts& p) {
  vigil_exec_record r{};
  std::string data = p.path + p.args + p.cwd + p.filename + p.interp;
  r.hdr.type = VIGIL_REC_EXEC;
  r.hdr.version = VIGIL_ABI_VERSION;
  r.hdr.size = sizeof(r) + data.size();
  r.hdr.ktime_ns = 1000;
  r.pid = 42;
  r.tid = 42;
  r.ppid = 7;
  r.uid = 1000;
  r.gid = 100;
  r.euid = 0;
  r.cgroup_id = 99;
  r.proc_start_ns = 900;
  r.flags = p.flags;
  r.path_len = p.path.size();
  r.args_len = p.args.size();
  r.cwd_len = p.cwd.size();
  r.filename_len = p.filename.size();
  r.interp_len = p.interp.size();
  std::strcpy(r.comm, "true");
  std::vector<uint8_t> out(sizeof(r) + data.size());
  std::memcpy(out.data(), &r, sizeof(r));
  std::memcpy(out.data() + sizeof(r), data.data(), data.size());
  return out;
}

std::vector<uint8_t> exitBytes(uint32_t status) {
  vigil_exit_record r{};
  r.hdr = {VIGIL_REC_EXIT, VIGIL_ABI_VERSION, sizeof(r), 5000};
  r.pid = 42;
  r.exit_code = status;
  r.proc_start_ns = 900;
  std::strcpy(r.comm, "true");
  std::vector<uint8_t> out(sizeof(r));
  std::memcpy(out.data(), &r, sizeof(r));
  return out;
}

TEST(Decode, ExecWithEveryField) {
  auto rec = decode(execBytes({}));
  ASSERT_TRUE(rec.ok()) << rec.error().message();
  const auto& e = std::get<ExecRecord>(*rec);
  EXPECT_EQ(e.pid, 42u);
  EXPECT_EQ(e.ppid, 7u);
  EXPECT_EQ(e.uid, 1000u);
  EXPECT_EQ(e.gid, 100u);
  EXPECT_EQ(e.cgroupId, 99u);
  EXPECT_EQ(e.path, "/usr/bin/true");
  EXPECT_EQ(e.args, (std::vector<std::string>{"true", "-x"}));
  EXPECT_EQ(e.cwd, "/root");
  EXPECT_EQ(e.comm, "true");
  EXPECT_FALSE(e.argsTruncated());
  EXPECT_FALSE(e.viaInterpreter());
}

TEST(Decode, ExecThroughInterpreter) {
  ExecParts p;
  p.path = "/usr/bin/dash";
  p.filename = "./run.sh";
  p.interp = "/bin/sh";
  p.flags = VIGIL_EXEC_INTERP;
  auto rec = decode(execBytes(p));
  ASSERT_TRUE(rec.ok());
  const auto& e = std::get<ExecRecord>(*rec);
  EXPECT_TRUE(e.viaInterpreter());
  EXPECT_EQ(e.filename, "./run.sh");
  EXPECT_EQ(e.interp, "/bin/sh");
  EXPECT_EQ(e.cwd, "/root");
}

TEST(Decode, TruncatedArgsKeepThePartialLastArgument) {
  ExecParts p;
  p.args = std::string("echo\0abcdef", 11);  // cut in the middle of the second argument
  p.flags = VIGIL_EXEC_ARGS_TRUNCATED;
  auto rec = decode(execBytes(p));
  ASSERT_TRUE(rec.ok());
  const auto& e = std::get<ExecRecord>(*rec);
  EXPECT_TRUE(e.argsTruncated());
  EXPECT_EQ(e.args, (std::vector<std::string>{"echo", "abcdef"}));
}

TEST(Decode, RejectsRecordShorterThanHeader) {
  std::vector<uint8_t> raw(10, 0);
  auto rec = decode(raw);
  ASSERT_FALSE(rec.ok());
  EXPECT_NE(rec.error().message().find("shorter than a header"), std::string::npos);
  EXPECT_EQ(peekType(raw), 0);
}

TEST(Decode, RejectsUnknownVersion) {
  auto raw = execBytes({});
  reinterpret_cast<vigil_record_hdr*>(raw.data())->version = VIGIL_ABI_VERSION + 1;
  auto rec = decode(raw);
  ASSERT_FALSE(rec.ok());
  EXPECT_NE(rec.error().message().find("ABI version"), std::string::npos);
}

TEST(Decode, RejectsUnknownType) {
  auto raw = exitBytes(0);
  reinterpret_cast<vigil_record_hdr*>(raw.data())->type = 77;
  auto rec = decode(raw);
  ASSERT_FALSE(rec.ok());
  EXPECT_NE(rec.error().message().find("unknown record type 77"), std::string::npos);
}

TEST(Decode, RejectsRecordCutShort) {
  auto raw = execBytes({});
  raw.resize(raw.size() - 3);  // header still claims the full size
  EXPECT_FALSE(decode(raw).ok());
  // Even with a consistent header size, the field lengths no longer add up.
  reinterpret_cast<vigil_record_hdr*>(raw.data())->size = raw.size();
  auto rec = decode(raw);
  ASSERT_FALSE(rec.ok());
  EXPECT_NE(rec.error().message().find("add up"), std::string::npos);
}

TEST(Decode, RejectsFixedPartCutShort) {
  auto raw = execBytes({});
  raw.resize(sizeof(vigil_exec_record) - 8);
  reinterpret_cast<vigil_record_hdr*>(raw.data())->size = raw.size();
  EXPECT_FALSE(decode(raw).ok());
}

TEST(Decode, RejectsFieldLengthOverLimit) {
  auto raw = execBytes({});
  reinterpret_cast<vigil_exec_record*>(raw.data())->interp_len = VIGIL_INTERP_MAX + 1;
  EXPECT_FALSE(decode(raw).ok());
}

TEST(Decode, ExitStatusDecoding) {
  auto normal = decode(exitBytes(7 << 8));
  ASSERT_TRUE(normal.ok());
  EXPECT_EQ(std::get<ExitRecord>(*normal).exitCode(), 7);
  EXPECT_EQ(std::get<ExitRecord>(*normal).signal(), 0);

  auto killed = decode(exitBytes(9));
  ASSERT_TRUE(killed.ok());
  EXPECT_EQ(std::get<ExitRecord>(*killed).exitCode(), 0);
  EXPECT_EQ(std::get<ExitRecord>(*killed).signal(), 9);
  EXPECT_FALSE(std::get<ExitRecord>(*killed).coreDumped());

  auto core = decode(exitBytes(11 | 0x80));
  ASSERT_TRUE(core.ok());
  EXPECT_EQ(std::get<ExitRecord>(*core).signal(), 11);
  EXPECT_TRUE(std::get<ExitRecord>(*core).coreDumped());
}

TEST(Decode, ExitMemoryOnlyWhenTheKernelSawIt) {
  auto raw = exitBytes(0);
  auto* r = reinterpret_cast<vigil_exit_record*>(raw.data());
  r->peak_rss_pages = 300;
  r->rss_pages = 200;  // without the flag: a kernel whose tracepoint runs after exit_mm()
  auto without = decode(raw);
  ASSERT_TRUE(without.ok());
  EXPECT_EQ(std::get<ExitRecord>(*without).peakRssPages, 300u);
  EXPECT_FALSE(std::get<ExitRecord>(*without).rssPages.has_value());
  r->flags = VIGIL_EXIT_HAS_RSS;
  auto with = decode(raw);
  ASSERT_TRUE(with.ok());
  EXPECT_EQ(std::get<ExitRecord>(*with).rssPages, std::optional<uint64_t>(200));
}

TEST(Decode, ExitOfWrongSizeIsRejected) {
  auto raw = exitBytes(0);
  raw.push_back(0);
  reinterpret_cast<vigil_record_hdr*>(raw.data())->size = raw.size();
  EXPECT_FALSE(decode(raw).ok());
}

TEST(Decode, DeniedRecordAndItsPathLength) {
  vigil_denied_record r{};
  std::string path = "/tmp/evil";
  r.hdr = {VIGIL_REC_DENIED, VIGIL_ABI_VERSION, static_cast<__u32>(sizeof(r) + path.size()), 7};
  r.pid = 10;
  r.rule_slot = 3;
  r.path_len = path.size();
  std::vector<uint8_t> raw(sizeof(r) + path.size());
  std::memcpy(raw.data(), &r, sizeof r);
  std::memcpy(raw.data() + sizeof r, path.data(), path.size());
  auto rec = decode(raw);
  ASSERT_TRUE(rec.ok()) << rec.error().message();
  EXPECT_EQ(std::get<DeniedRecord>(*rec).path, "/tmp/evil");
  EXPECT_EQ(std::get<DeniedRecord>(*rec).ruleSlot, 3u);
  reinterpret_cast<vigil_denied_record*>(raw.data())->path_len = 99;
  EXPECT_FALSE(decode(raw).ok());
}

TEST(SplitArgs, HandlesEmptyArgumentsAndNoTrailingNul) {
  EXPECT_EQ(splitArgs(std::string_view("a\0\0b\0", 5)), (std::vector<std::string>{"a", "", "b"}));
  EXPECT_EQ(splitArgs(""), std::vector<std::string>{});
  EXPECT_EQ(splitArgs("abc"), std::vector<std::string>{"abc"});
}

}  // namespace
}  // namespace vigil::events
