// The decision helpers of bpf/include/vigil_bpf (decide.bpf.h, path.bpf.h), run in the kernel:
// decide_test.bpf.c wraps each in a SEC("syscall") program, and these tests drive them with
// BPF_PROG_TEST_RUN, which copies the context in and writes the modified context back.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "decide_test_abi.h"
#include "vigil_decide_test.skel.h"

namespace vigil::bpftest {
namespace {

constexpr std::uint32_t kPathMax = VIGIL_PATH_MAX;
constexpr std::uint32_t kNameMax = VIGIL_TEST_NAME_MAX;
// What userspace writes over the whole buffer before each path run: bytes the helper did not
// write keep it.
constexpr char kFill = '#';
constexpr std::uint32_t kOutSentinel = 0xa5a5a5a5;
// SIGNAL_GROUP_EXIT from the kernel's include/linux/sched/signal.h, spelled out here rather
// than taken from common.bpf.h so that a wrong constant there fails the test.
constexpr std::uint32_t kSignalGroupExit = 0x4;

struct SkelDeleter {
  void operator()(vigil_decide_test* skel) const { vigil_decide_test::destroy(skel); }
};
using SkelPtr = std::unique_ptr<vigil_decide_test, SkelDeleter>;

// One component for path__prepend: its bytes, and optionally a different length to pass or a
// kernel address to read from instead.
struct Component {
  std::string name;
  std::uint32_t len = UINT32_MAX;  // UINT32_MAX: name.size()
  std::uint64_t addr = 0;
};

Component named(std::string name) { return Component{std::move(name)}; }

class DecideTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      GTEST_SKIP() << "loading BPF programs needs root (CAP_BPF and CAP_PERFMON); "
                      "run the bpf tier as root";
    }
    skel_.reset(vigil_decide_test::open_and_load());
    ASSERT_TRUE(skel_) << "open and load vigil_decide_test: " << std::strerror(errno);
  }

  // Runs prog once on ctx (in place). Fails the test if the run itself fails or the program
  // returns non-zero.
  template <typename Ctx>
  void run(bpf_program* prog, Ctx& ctx) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &ctx, .ctx_size_in = sizeof(ctx));
    int err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
    ASSERT_EQ(err, 0) << "test run of " << bpf_program__name(prog) << ": " << std::strerror(-err);
    ASSERT_EQ(opts.retval, 0u) << bpf_program__name(prog) << " returned " << opts.retval;
  }

  std::uint32_t groupDead(std::int32_t live) {
    vigil_test_group_dead_ctx ctx{};
    ctx.live_threads = live;
    ctx.dead = kOutSentinel;
    run(skel_->progs.vigil_test_group_dead, ctx);
    return ctx.dead;
  }

  std::uint32_t lowestBit(std::uint64_t word) {
    vigil_test_lowest_bit_ctx ctx{};
    ctx.word = word;
    ctx.bit = kOutSentinel;
    run(skel_->progs.vigil_test_lowest_bit, ctx);
    return ctx.bit;
  }

  std::uint32_t isNewProcess(std::uint32_t pid, std::uint32_t tgid) {
    vigil_test_new_process_ctx ctx{};
    ctx.child_pid = pid;
    ctx.child_tgid = tgid;
    ctx.is_new = kOutSentinel;
    run(skel_->progs.vigil_test_new_process, ctx);
    return ctx.is_new;
  }

  std::uint32_t exitStatus(std::uint32_t flags, std::int32_t group, std::int32_t task) {
    vigil_test_exit_status_ctx ctx{};
    ctx.signal_flags = flags;
    ctx.group_exit_code = group;
    ctx.task_exit_code = task;
    ctx.status = kOutSentinel;
    run(skel_->progs.vigil_test_exit_status, ctx);
    return ctx.status;
  }

  vigil_test_args_len_ctx argsLen(std::uint64_t start, std::uint64_t end, std::uint32_t flags) {
    vigil_test_args_len_ctx ctx{};
    ctx.arg_start = start;
    ctx.arg_end = end;
    ctx.flags = flags;
    ctx.len = kOutSentinel;
    run(skel_->progs.vigil_test_args_len, ctx);
    return ctx;
  }

  // Fills the whole buffer with kFill, then prepends components (leaf first) from pos.
  std::unique_ptr<vigil_test_prepend_ctx> prepend(const std::vector<Component>& components,
                                                  std::uint32_t pos = kPathMax) {
    auto ctx = std::make_unique<vigil_test_prepend_ctx>();
    EXPECT_LE(components.size(), std::size_t{VIGIL_TEST_COMPONENTS});
    ctx->count = components.size();
    ctx->pos = pos;
    for (std::size_t i = 0; i < components.size() && i < VIGIL_TEST_COMPONENTS; i++) {
      const Component& c = components[i];
      EXPECT_LE(c.name.size(), std::size_t{VIGIL_TEST_NAME_SLOT});
      std::memcpy(ctx->name[i], c.name.data(),
                  std::min(c.name.size(), std::size_t{VIGIL_TEST_NAME_SLOT}));
      ctx->len[i] = c.len == UINT32_MAX ? c.name.size() : c.len;
      ctx->addr[i] = c.addr;
    }
    for (auto& r : ctx->ret) {
      r = INT64_MIN;
    }
    ctx->attempted = kOutSentinel;
    ctx->start = INT64_MIN;
    std::memset(ctx->path, 0, sizeof(ctx->path));

    vigil_test_path_buf buf;
    std::memset(buf.b, kFill, sizeof(buf.b));
    std::uint32_t key = 0;
    int err = bpf_map__update_elem(skel_->maps.vigil_test_path_buf, &key, sizeof(key), &buf,
                                   sizeof(buf), BPF_ANY);
    EXPECT_EQ(err, 0) << "fill vigil_test_path_buf: " << std::strerror(-err);
    run(skel_->progs.vigil_test_path_prepend, *ctx);
    return ctx;
  }

  // The whole buffer as the kernel left it (both halves).
  std::string readBuffer() {
    vigil_test_path_buf buf{};
    std::uint32_t key = 0;
    int err = bpf_map__lookup_elem(skel_->maps.vigil_test_path_buf, &key, sizeof(key), &buf,
                                   sizeof(buf), 0);
    EXPECT_EQ(err, 0) << "read vigil_test_path_buf: " << std::strerror(-err);
    return std::string(buf.b, sizeof(buf.b));
  }

  SkelPtr skel_;
};

// path[from, to) of a prepend run.
std::string slice(const vigil_test_prepend_ctx& ctx, std::size_t from, std::size_t to) {
  return std::string(ctx.path + from, ctx.path + to);
}

// The path the run built, path[start, VIGIL_PATH_MAX).
std::string builtPath(const vigil_test_prepend_ctx& ctx) {
  if (ctx.start < 0 || ctx.start > kPathMax) {
    ADD_FAILURE() << "start out of range: " << ctx.start;
    return {};
  }
  return slice(ctx, ctx.start, kPathMax);
}

// ---- decide__group_dead ----

TEST_F(DecideTest, GroupDeadOnlyWhenNoThreadIsLive) {
  EXPECT_EQ(groupDead(0), 1u);
  EXPECT_EQ(groupDead(1), 0u);
  EXPECT_EQ(groupDead(-1), 1u);
  EXPECT_EQ(groupDead(2), 0u);
  EXPECT_EQ(groupDead(INT32_MIN), 1u);
}

// ---- policy__lowest_bit: which rule of a matching bitmap word decides ----

TEST_F(DecideTest, LowestBitOfEveryPositionAndMixedWords) {
  for (std::uint32_t i = 0; i < 64; i++) {
    EXPECT_EQ(lowestBit(1ULL << i), i) << "single bit " << i;
    EXPECT_EQ(lowestBit(~0ULL << i), i) << "all bits from " << i;
  }
  EXPECT_EQ(lowestBit(0x8000000000000001ULL), 0u);
  EXPECT_EQ(lowestBit(0xa0ULL), 5u);
  EXPECT_EQ(lowestBit(0x0000000100000000ULL | (1ULL << 40)), 32u);
}

// ---- decide__is_new_process ----

TEST_F(DecideTest, NewProcessOnlyWhenChildLeadsItsThreadGroup) {
  EXPECT_EQ(isNewProcess(4242, 4242), 1u);
  EXPECT_EQ(isNewProcess(4243, 4242), 0u);  // a thread of 4242
  EXPECT_EQ(isNewProcess(4242, 4243), 0u);
  EXPECT_EQ(isNewProcess(1, 1), 1u);
}

// ---- decide__exit_status ----

TEST_F(DecideTest, ExitStatusFromSignalStructOnGroupExit) {
  // exit_group(3) from a thread while another thread's own code is 0.
  EXPECT_EQ(exitStatus(kSignalGroupExit, 3 << 8, 0), 3u << 8);
  // Killed by SIGKILL with a core flag, other flag bits set as well.
  EXPECT_EQ(exitStatus(kSignalGroupExit | 0x1 | 0x10, 0x80 | 9, 1 << 8), 0x89u);
}

TEST_F(DecideTest, ExitStatusFromTaskWithoutGroupExit) {
  EXPECT_EQ(exitStatus(0, 9, 7 << 8), 7u << 8);
  // Every flag but SIGNAL_GROUP_EXIT.
  EXPECT_EQ(exitStatus(~kSignalGroupExit, 9, 7 << 8), 7u << 8);
  // The status is passed through as raw bits.
  EXPECT_EQ(exitStatus(0, 9, -1), 0xffffffffu);
}

// ---- decide__args_len ----

TEST_F(DecideTest, ArgsLenEmptyWhenEndNotAfterStart) {
  auto r = argsLen(0x7ffd1000, 0x7ffd0fff, 0);
  EXPECT_EQ(r.len, 0u);
  EXPECT_EQ(r.flags, 0u);
  r = argsLen(0x7ffd1000, 0x7ffd1000, 0);
  EXPECT_EQ(r.len, 0u);
  EXPECT_EQ(r.flags, 0u);
}

TEST_F(DecideTest, ArgsLenFitsUpToArgsMax) {
  auto r = argsLen(0x7ffd1000, 0x7ffd1000 + 12, 0);
  EXPECT_EQ(r.len, 12u);
  EXPECT_EQ(r.flags, 0u);
  r = argsLen(0x7ffd1000, 0x7ffd1000 + VIGIL_ARGS_MAX, VIGIL_EXEC_INTERP);
  EXPECT_EQ(r.len, std::uint32_t{VIGIL_ARGS_MAX});
  EXPECT_EQ(r.flags, std::uint32_t{VIGIL_EXEC_INTERP});
}

TEST_F(DecideTest, ArgsLenTruncatesAboveArgsMaxAndKeepsOtherFlags) {
  auto r = argsLen(0x7ffd1000, 0x7ffd1000 + VIGIL_ARGS_MAX + 1, VIGIL_EXEC_INTERP);
  EXPECT_EQ(r.len, std::uint32_t{VIGIL_ARGS_MAX});
  EXPECT_EQ(r.flags, std::uint32_t{VIGIL_EXEC_INTERP | VIGIL_EXEC_ARGS_TRUNCATED});
  // A length that would look small if cut to 32 bits.
  r = argsLen(0x1000, 0x1000 + (std::uint64_t{1} << 32) + 1, 0);
  EXPECT_EQ(r.len, std::uint32_t{VIGIL_ARGS_MAX});
  EXPECT_EQ(r.flags, std::uint32_t{VIGIL_EXEC_ARGS_TRUNCATED});
}

// ---- path__prepend ----

TEST_F(DecideTest, PrependBuildsPathFromLeafFirstComponents) {
  auto ctx = prepend({named("true"), named("bin"), named("usr")});
  ASSERT_EQ(ctx->attempted, 3u);
  EXPECT_EQ(ctx->ret[0], kPathMax - 5);
  EXPECT_EQ(ctx->ret[1], kPathMax - 9);
  EXPECT_EQ(ctx->ret[2], kPathMax - 13);
  ASSERT_EQ(ctx->start, kPathMax - 13);
  EXPECT_EQ(builtPath(*ctx), "/usr/bin/true");
  // Nothing written before the start, nor in the buffer's second half.
  EXPECT_EQ(ctx->path[ctx->start - 1], kFill);
  std::string whole = readBuffer();
  EXPECT_EQ(whole.substr(0, kPathMax - 13), std::string(kPathMax - 13, kFill));
  EXPECT_EQ(whole.substr(kPathMax), std::string(kPathMax, kFill));
}

TEST_F(DecideTest, PrependTakesA255ByteComponent) {
  std::string longName(kNameMax, 'x');
  longName.front() = 'A';
  longName.back() = 'Z';
  auto ctx = prepend({named(longName), named("a")});
  ASSERT_EQ(ctx->attempted, 2u);
  EXPECT_EQ(ctx->ret[0], kPathMax - 256);
  EXPECT_EQ(ctx->ret[1], kPathMax - 258);
  EXPECT_EQ(builtPath(*ctx), "/a/" + longName);
}

TEST_F(DecideTest, PrependClampsNamesLongerThan255) {
  std::string slot(VIGIL_TEST_NAME_SLOT, 'n');
  slot.back() = 'Z';  // byte 256: must not be read
  for (std::uint32_t len : {256u, 300u, 4096u, UINT32_MAX - 1}) {
    SCOPED_TRACE("len " + std::to_string(len));
    auto ctx = prepend({Component{slot, len}});
    ASSERT_EQ(ctx->attempted, 1u);
    EXPECT_EQ(ctx->ret[0], kPathMax - 256);
    EXPECT_EQ(builtPath(*ctx), "/" + std::string(kNameMax, 'n'));
    EXPECT_EQ(ctx->path[kPathMax - 257], kFill);
  }
}

TEST_F(DecideTest, PrependEmptyComponentAddsOnlyASlash) {
  auto ctx = prepend({named("true"), named(""), named("usr")});
  ASSERT_EQ(ctx->attempted, 3u);
  EXPECT_EQ(ctx->ret[1], kPathMax - 6);
  EXPECT_EQ(builtPath(*ctx), "/usr//true");
  // An empty first component is the root-like "/".
  ctx = prepend({named("")});
  EXPECT_EQ(ctx->ret[0], kPathMax - 1);
  EXPECT_EQ(builtPath(*ctx), "/");
}

// 16 components of "/" + 255 bytes are exactly VIGIL_PATH_MAX bytes.
std::vector<Component> fullPath() {
  std::vector<Component> components;
  for (int i = 0; i < 16; i++) {
    components.push_back(named(std::string(kNameMax, static_cast<char>('a' + i))));
  }
  return components;
}

std::string fullPathString() {
  std::string path;
  for (int i = 15; i >= 0; i--) {
    path += "/" + std::string(kNameMax, static_cast<char>('a' + i));
  }
  return path;
}

TEST_F(DecideTest, PrependExactlyFillsPathMax) {
  auto ctx = prepend(fullPath());
  ASSERT_EQ(ctx->attempted, 16u);
  for (std::uint32_t i = 0; i < 16; i++) {
    EXPECT_EQ(ctx->ret[i], kPathMax - 256 * (i + 1)) << "component " << i;
  }
  ASSERT_EQ(ctx->start, 0);
  EXPECT_EQ(builtPath(*ctx), fullPathString());
  EXPECT_EQ(readBuffer().substr(kPathMax), std::string(kPathMax, kFill));
}

TEST_F(DecideTest, PrependOverflowAfterFullPathKeepsIt) {
  auto components = fullPath();
  components.push_back(named("x"));
  auto ctx = prepend(components);
  ASSERT_EQ(ctx->attempted, 17u);
  EXPECT_EQ(ctx->ret[15], 0);
  EXPECT_EQ(ctx->ret[16], -1);
  ASSERT_EQ(ctx->start, 0);
  EXPECT_EQ(builtPath(*ctx), fullPathString());
}

// 15 full components leave 256 bytes; one of 250 leaves 5.
std::vector<Component> pathLeaving5() {
  auto components = fullPath();
  components.resize(15);
  components.push_back(named(std::string(250, 'p')));
  return components;
}

TEST_F(DecideTest, PrependComponentThatJustFits) {
  auto components = pathLeaving5();
  components.push_back(named("abcd"));  // "/abcd" is 5 bytes
  auto ctx = prepend(components);
  ASSERT_EQ(ctx->attempted, 17u);
  EXPECT_EQ(ctx->ret[15], 5);
  EXPECT_EQ(ctx->ret[16], 0);
  EXPECT_EQ(slice(*ctx, 0, 6), "/abcd/");
}

TEST_F(DecideTest, PrependComponentOneByteTooLongLeavesPrefixUntouched) {
  auto components = pathLeaving5();
  components.push_back(named("abcde"));  // "/abcde" is 6 bytes
  auto ctx = prepend(components);
  ASSERT_EQ(ctx->attempted, 17u);
  EXPECT_EQ(ctx->ret[15], 5);
  EXPECT_EQ(ctx->ret[16], -1);
  ASSERT_EQ(ctx->start, 5);
  // No partial component: the 5 bytes before the start are as userspace left them.
  EXPECT_EQ(slice(*ctx, 0, 5), std::string(5, kFill));
  std::string path = builtPath(*ctx);
  EXPECT_EQ(path.substr(0, 252), "/" + std::string(250, 'p') + "/");
  EXPECT_EQ(path.size(), kPathMax - 5);
}

TEST_F(DecideTest, PrependRejectsStartBeyondPathMax) {
  auto ctx = prepend({named("a")}, kPathMax + 1);
  ASSERT_EQ(ctx->attempted, 1u);
  EXPECT_EQ(ctx->ret[0], -1);
  EXPECT_EQ(readBuffer(), std::string(2 * kPathMax, kFill));
}

TEST_F(DecideTest, PrependReportsReadFailure) {
  // Address 1 is below the kernel half: bpf_probe_read_kernel() fails.
  auto ctx = prepend({named("true"), Component{"", 3, 1}, named("usr")});
  ASSERT_EQ(ctx->attempted, 2u);
  EXPECT_EQ(ctx->ret[0], kPathMax - 5);
  EXPECT_EQ(ctx->ret[1], -2);
  ASSERT_EQ(ctx->start, kPathMax - 5);
  EXPECT_EQ(builtPath(*ctx), "/true");
  // The failed component's slash was not written.
  EXPECT_EQ(ctx->path[kPathMax - 5 - 4], kFill);

  // As the very first component too.
  ctx = prepend({Component{"", 4, 1}});
  ASSERT_EQ(ctx->attempted, 1u);
  EXPECT_EQ(ctx->ret[0], -2);
  EXPECT_EQ(ctx->start, kPathMax);
  EXPECT_EQ(ctx->path[kPathMax - 5], kFill);
}

}  // namespace
}  // namespace vigil::bpftest
