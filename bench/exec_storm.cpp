// vigil_exec_storm: starts a program (by default /bin/true) N times as fast as it can, from one
// or more parallel spawner processes, and prints the achieved exec rate as one JSON object on
// stdout.
//
// Each spawner is its own process (not a thread), so parallel spawners do not contend on one
// address space's locks the way threads calling fork() would. A spawner runs a strictly
// sequential loop: create a child, the child calls execve(), the spawner waits for that child to
// exit, then starts the next. The default way to create the child is fork(), as a shell does;
// --method vfork and --method posix_spawn are there to compare cheaper ways.
//
// All spawners are created and warmed up first, then released together through a pipe; wall time
// runs from that release to the moment the last spawner has been reaped. Per-exec latencies
// (create child .. child reaped) go to a shared anonymous mapping so the parent can report
// percentiles without a second channel.
//
// Exit status: 0 when every exec succeeded, 1 when some failed (the JSON still says how many),
// 2 on a usage or set-up error.

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

namespace {

enum class Method { Fork, Vfork, PosixSpawn };

const char* method_name(Method m) {
  switch (m) {
    case Method::Fork:
      return "fork+execve";
    case Method::Vfork:
      return "vfork+execve";
    case Method::PosixSpawn:
      return "posix_spawn";
  }
  return "?";
}

struct Options {
  uint64_t execs = 10000;
  unsigned parallel = 1;
  uint64_t warmup = 20;  // per spawner, not counted
  std::string binary = "/bin/true";
  Method method = Method::Fork;
};

// One slot per spawner in the shared mapping. Written by the spawner, read by the parent after
// the spawner has been reaped (waitpid gives the ordering).
struct SpawnerResult {
  uint64_t ok;
  uint64_t failed;
  uint64_t elapsed_ns;
  // CPU of the timed loop: the spawner itself plus every child it reaped.
  uint64_t user_ns;
  uint64_t system_ns;
  int32_t first_error;  // first failure code, 0 if none
  int32_t done;
};

uint64_t tv_ns(const timeval& tv) {
  return uint64_t(tv.tv_sec) * 1000000000ull + uint64_t(tv.tv_usec) * 1000ull;
}

// user and system CPU of this process plus its reaped children, in ns.
void cpu_ns(uint64_t* user, uint64_t* sys) {
  rusage self{}, children{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  *user = tv_ns(self.ru_utime) + tv_ns(children.ru_utime);
  *sys = tv_ns(self.ru_stime) + tv_ns(children.ru_stime);
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

void usage(FILE* out) {
  std::fprintf(out,
               "usage: vigil_exec_storm [-n EXECS] [-j PARALLEL] [--binary PATH]\n"
               "                        [--method fork|vfork|posix_spawn] [--warmup N]\n"
               "\n"
               "  -n, --execs N       total execs over all spawners (default 10000)\n"
               "  -j, --parallel P    parallel spawner processes (default 1)\n"
               "  -b, --binary PATH   program to execute, with no arguments (default /bin/true)\n"
               "  -m, --method M      fork (default), vfork or posix_spawn\n"
               "  -w, --warmup N      untimed execs per spawner before the start (default 20)\n"
               "\n"
               "Prints one JSON object with execs_per_second on stdout.\n");
}

bool parse_u64(const char* s, uint64_t* out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || s[0] == '-') return false;
  *out = v;
  return true;
}

int parse_args(int argc, char** argv, Options* o) {
  static const option longopts[] = {
      {"execs", required_argument, nullptr, 'n'},
      {"parallel", required_argument, nullptr, 'j'},
      {"binary", required_argument, nullptr, 'b'},
      {"method", required_argument, nullptr, 'm'},
      {"warmup", required_argument, nullptr, 'w'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  int c;
  uint64_t v;
  while ((c = getopt_long(argc, argv, "n:j:b:m:w:h", longopts, nullptr)) != -1) {
    switch (c) {
      case 'n':
        if (!parse_u64(optarg, &v) || v == 0) {
          std::fprintf(stderr, "vigil_exec_storm: bad --execs '%s'\n", optarg);
          return 2;
        }
        o->execs = v;
        break;
      case 'j':
        if (!parse_u64(optarg, &v) || v == 0 || v > 1024) {
          std::fprintf(stderr, "vigil_exec_storm: bad --parallel '%s' (1..1024)\n", optarg);
          return 2;
        }
        o->parallel = unsigned(v);
        break;
      case 'b':
        o->binary = optarg;
        break;
      case 'm':
        if (std::strcmp(optarg, "fork") == 0) {
          o->method = Method::Fork;
        } else if (std::strcmp(optarg, "vfork") == 0) {
          o->method = Method::Vfork;
        } else if (std::strcmp(optarg, "posix_spawn") == 0) {
          o->method = Method::PosixSpawn;
        } else {
          std::fprintf(stderr, "vigil_exec_storm: bad --method '%s'\n", optarg);
          return 2;
        }
        break;
      case 'w':
        if (!parse_u64(optarg, &v)) {
          std::fprintf(stderr, "vigil_exec_storm: bad --warmup '%s'\n", optarg);
          return 2;
        }
        o->warmup = v;
        break;
      case 'h':
        usage(stdout);
        std::exit(0);
      default:
        usage(stderr);
        return 2;
    }
  }
  if (optind != argc) {
    std::fprintf(stderr, "vigil_exec_storm: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (o->execs < o->parallel) {
    std::fprintf(stderr, "vigil_exec_storm: --execs must be >= --parallel\n");
    return 2;
  }
  return 0;
}

// Failure codes of run_once() besides errno values.
constexpr int kChildNonZeroExit = -1;  // exit status != 0 (127: execve failed)
constexpr int kChildSignaled = -2;

std::string describe(int code) {
  if (code == kChildNonZeroExit) return "child exited with a non-zero status";
  if (code == kChildSignaled) return "child was killed by a signal";
  return code != 0 ? std::strerror(code) : "";
}

// Starts `binary` once and waits for it. Returns 0 when the child exited with status 0, else
// an errno value (the child could not be created or waited for) or one of the codes above.
int run_once(const Options& o, char* const child_argv[]) {
  pid_t pid = -1;
  switch (o.method) {
    case Method::Fork:
      pid = fork();
      if (pid == 0) {
        execve(o.binary.c_str(), child_argv, environ);
        _exit(127);
      }
      break;
    case Method::Vfork:
      pid = vfork();
      if (pid == 0) {
        execve(o.binary.c_str(), child_argv, environ);
        _exit(127);
      }
      break;
    case Method::PosixSpawn: {
      int rc = posix_spawn(&pid, o.binary.c_str(), nullptr, nullptr, child_argv, environ);
      if (rc != 0) return rc;
      break;
    }
  }
  if (pid < 0) return errno != 0 ? errno : EAGAIN;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return errno;
  }
  if (WIFSIGNALED(status)) return kChildSignaled;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return kChildNonZeroExit;
  return 0;
}

// Body of one spawner process: warm up, report ready, wait for the start signal, run
// `count` execs, store the results. Never returns.
[[noreturn]] void spawner(const Options& o, uint64_t count, uint64_t* latencies,
                          SpawnerResult* result, int ready_fd, int go_fd) {
  char* argv0 = const_cast<char*>(o.binary.c_str());
  char* child_argv[] = {argv0, nullptr};

  for (uint64_t i = 0; i < o.warmup; ++i) run_once(o, child_argv);

  char byte = 'r';
  if (write(ready_fd, &byte, 1) != 1) _exit(3);
  close(ready_fd);
  // Blocks until the parent closes the write end: every spawner starts at once.
  while (read(go_fd, &byte, 1) < 0 && errno == EINTR) {
  }
  close(go_fd);

  uint64_t ok = 0, failed = 0;
  int first_errno = 0;
  uint64_t u0, s0, u1, s1;
  cpu_ns(&u0, &s0);
  const uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t s = now_ns();
    int rc = run_once(o, child_argv);
    latencies[i] = now_ns() - s;
    if (rc == 0) {
      ++ok;
    } else {
      ++failed;
      if (first_errno == 0) first_errno = rc;
    }
  }
  const uint64_t t1 = now_ns();
  cpu_ns(&u1, &s1);
  result->user_ns = u1 - u0;
  result->system_ns = s1 - s0;
  result->ok = ok;
  result->failed = failed;
  result->elapsed_ns = t1 - t0;
  result->first_error = first_errno;
  result->done = 1;
  _exit(0);
}

std::string json_escape(const std::string& in) {
  std::string out;
  for (unsigned char c : in) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += char(c);
    }
  }
  return out;
}

double percentile(const std::vector<uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  const double rank = p * double(sorted.size() - 1);
  const size_t lo = size_t(rank);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - double(lo);
  return double(sorted[lo]) * (1.0 - frac) + double(sorted[hi]) * frac;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (int rc = parse_args(argc, argv, &o); rc != 0) return rc;

  if (access(o.binary.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "vigil_exec_storm: %s is not executable: %s\n", o.binary.c_str(),
                 std::strerror(errno));
    return 2;
  }

  // Shared between the parent and the spawners: per-spawner results, then one latency slot per
  // counted exec.
  const size_t results_bytes = sizeof(SpawnerResult) * o.parallel;
  const size_t lat_offset = (results_bytes + 63) & ~size_t(63);
  const size_t shared_bytes = lat_offset + sizeof(uint64_t) * o.execs;
  void* shared =
      mmap(nullptr, shared_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) {
    std::fprintf(stderr, "vigil_exec_storm: mmap %zu bytes: %s\n", shared_bytes,
                 std::strerror(errno));
    return 2;
  }
  auto* results = static_cast<SpawnerResult*>(shared);
  auto* latencies = reinterpret_cast<uint64_t*>(static_cast<char*>(shared) + lat_offset);
  std::memset(shared, 0, lat_offset);

  int ready[2], go[2];
  if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "vigil_exec_storm: pipe: %s\n", std::strerror(errno));
    return 2;
  }

  std::vector<pid_t> spawners;
  std::vector<uint64_t> counts(o.parallel), offsets(o.parallel);
  uint64_t off = 0;
  for (unsigned i = 0; i < o.parallel; ++i) {
    counts[i] = o.execs / o.parallel + (i < o.execs % o.parallel ? 1 : 0);
    offsets[i] = off;
    off += counts[i];
  }

  const pid_t parent = getpid();
  for (unsigned i = 0; i < o.parallel; ++i) {
    pid_t pid = fork();
    if (pid < 0) {
      std::fprintf(stderr, "vigil_exec_storm: fork spawner: %s\n", std::strerror(errno));
      for (pid_t p : spawners) kill(p, SIGKILL);
      return 2;
    }
    if (pid == 0) {
      // A spawner must not outlive the parent (killed by a benchmark harness, say).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(3);
      close(ready[0]);
      close(go[1]);
      spawner(o, counts[i], latencies + offsets[i], &results[i], ready[1], go[0]);
    }
    spawners.push_back(pid);
  }
  close(ready[1]);
  close(go[0]);

  // Wait until every spawner is warmed up.
  unsigned nready = 0;
  char buf[64];
  while (nready < o.parallel) {
    ssize_t r = read(ready[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // a spawner died before it was ready
    nready += unsigned(r);
  }
  close(ready[0]);
  if (nready < o.parallel) {
    std::fprintf(stderr, "vigil_exec_storm: only %u of %u spawners became ready\n", nready,
                 o.parallel);
    for (pid_t p : spawners) kill(p, SIGKILL);
    for (pid_t p : spawners) waitpid(p, nullptr, 0);
    return 2;
  }

  const uint64_t t0 = now_ns();
  close(go[1]);  // release every spawner
  bool spawner_crashed = false;
  for (pid_t p : spawners) {
    int status = 0;
    while (waitpid(p, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) spawner_crashed = true;
  }
  const uint64_t t1 = now_ns();

  uint64_t ok = 0, failed = 0, user_ns = 0, system_ns = 0;
  int first_errno = 0;
  for (unsigned i = 0; i < o.parallel; ++i) {
    if (!results[i].done) {
      failed += counts[i];
      continue;
    }
    user_ns += results[i].user_ns;
    system_ns += results[i].system_ns;
    ok += results[i].ok;
    failed += results[i].failed;
    if (first_errno == 0) first_errno = results[i].first_error;
  }

  std::vector<uint64_t> lat(latencies, latencies + o.execs);
  std::sort(lat.begin(), lat.end());

  const double wall = double(t1 - t0) / 1e9;
  const double rate = wall > 0 ? double(ok) / wall : 0.0;

  std::printf(
      "{\"tool\":\"vigil_exec_storm\",\"method\":\"%s\",\"binary\":\"%s\","
      "\"execs\":%llu,\"parallel\":%u,\"warmup_per_spawner\":%llu,"
      "\"ok\":%llu,\"failed\":%llu,\"first_error\":\"%s\","
      "\"wall_seconds\":%.6f,\"execs_per_second\":%.1f,",
      method_name(o.method), json_escape(o.binary).c_str(), (unsigned long long)o.execs, o.parallel,
      (unsigned long long)o.warmup, (unsigned long long)ok, (unsigned long long)failed,
      json_escape(describe(first_errno)).c_str(), wall, rate);
  std::printf("\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f},",
              percentile(lat, 0.50) / 1e3, percentile(lat, 0.90) / 1e3, percentile(lat, 0.99) / 1e3,
              lat.empty() ? 0.0 : double(lat.back()) / 1e3);
  std::printf("\"spawners\":[");
  for (unsigned i = 0; i < o.parallel; ++i) {
    const double s = double(results[i].elapsed_ns) / 1e9;
    std::printf("%s{\"execs\":%llu,\"seconds\":%.6f,\"execs_per_second\":%.1f}", i ? "," : "",
                (unsigned long long)results[i].ok, s, s > 0 ? double(results[i].ok) / s : 0.0);
  }
  // CPU of the timed part only (spawners and their children), and per successful exec: less
  // sensitive than the wall-clock rate to other load on a shared machine.
  std::printf("],\"cpu_seconds\":{\"user\":%.3f,\"system\":%.3f},\"cpu_us_per_exec\":%.1f}\n",
              double(user_ns) / 1e9, double(system_ns) / 1e9,
              ok ? double(user_ns + system_ns) / 1e3 / double(ok) : 0.0);
  std::fflush(stdout);
  munmap(shared, shared_bytes);
  return (failed != 0 || spawner_crashed) ? 1 : 0;
}
