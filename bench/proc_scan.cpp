// vigil_proc_scan: the memory part of what ps and top do, timed. Two modes.
//
// Scan (the default): list /proc, and for every process read /proc/PID/status and parse the
// memory lines a per-process memory view needs (VmRSS, RssAnon, RssFile, RssShmem, VmHWM,
// VmSwap, and the Name). One scan is timed from opening /proc to the last file closed, and the
// rows are kept in memory as a real tool would keep them. Prints one JSON object with the time
// of every scan and their median.
//
// Hold (--hold N): forks N children that block reading a pipe and keep them alive until this
// process gets SIGTERM, SIGINT or SIGHUP; then it kills and reaps them, a hundred at a time. If
// the holder dies any other way (SIGKILL), the pipe closes with it and the children still exit,
// on end-of-file and through PR_SET_PDEATHSIG: nothing is left behind.
// Once the children exist it prints one JSON line: how many were asked for, how many it could
// fork, and why it stopped early (EAGAIN at a process limit, say).
//
// Exit status: 0 on success, 1 when a scan or the hold failed, 2 on a usage error.

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Options {
  unsigned repeat = 10;
  unsigned warmup = 1;
  uint64_t hold = 0;  // 0: scan mode
};

// One process's memory, in KiB as /proc reports it. A kernel thread has no Vm*/Rss* lines: its
// fields stay 0.
struct Row {
  int pid = 0;
  char name[16] = {};
  uint64_t vmRss = 0;
  uint64_t rssAnon = 0;
  uint64_t rssFile = 0;
  uint64_t rssShmem = 0;
  uint64_t vmHwm = 0;
  uint64_t vmSwap = 0;
};

struct ScanResult {
  uint64_t ns = 0;
  size_t processes = 0;
  size_t vanished = 0;  // listed, but gone before its status could be read
  int error = 0;
};

uint64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Fills `o` from the command line. Returns 0, or the exit status on a usage error (--help
// prints and exits 0).
int parseArgs(int argc, char** argv, Options* o) {
  CLI::App app{"vigil_proc_scan: times scans of /proc/PID/status (the memory part of ps and "
               "top) and prints one JSON object; or, with --hold N, keeps N sleeping children "
               "alive until SIGTERM or SIGINT."};
  app.add_option("-n,--repeat", o->repeat, "Timed scans of /proc/PID/status")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
  app.add_option("-w,--warmup", o->warmup, "Untimed scans first")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1000u));
  app.add_option("--hold", o->hold,
                 "Fork N children that sleep until this process gets SIGTERM or SIGINT; prints "
                 "one JSON line once they exist")
      ->check(CLI::Range(uint64_t{1}, uint64_t{4000000}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::exit(app.exit(e));
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "vigil_proc_scan: %s\nRun 'vigil_proc_scan --help' for usage.\n",
                 e.what());
    return 2;
  }
  return 0;
}

// The number after "Key:" in a status line ("VmRSS:\t    1234 kB"), the line starting at `p`.
uint64_t valueAfterKey(const char* p, const char* lineEnd) {
  while (p < lineEnd && *p != ':') ++p;
  uint64_t v = 0;
  for (++p; p < lineEnd && (*p == ' ' || *p == '\t'); ++p) {
  }
  for (; p < lineEnd && *p >= '0' && *p <= '9'; ++p) v = v * 10 + uint64_t(*p - '0');
  return v;
}

bool startsWith(const char* p, const char* lineEnd, const char* key) {
  const size_t n = std::strlen(key);
  return size_t(lineEnd - p) >= n && std::memcmp(p, key, n) == 0;
}

void parseStatus(const char* buf, size_t len, Row* row) {
  const char* end = buf + len;
  for (const char* p = buf; p < end;) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', size_t(end - p)));
    const char* lineEnd = nl ? nl : end;
    if (startsWith(p, lineEnd, "Name:")) {
      const char* s = p + 5;
      while (s < lineEnd && (*s == ' ' || *s == '\t')) ++s;
      const size_t n = std::min(size_t(lineEnd - s), sizeof row->name - 1);
      std::memcpy(row->name, s, n);
      row->name[n] = '\0';
    } else if (startsWith(p, lineEnd, "VmRSS:")) {
      row->vmRss = valueAfterKey(p, lineEnd);
    } else if (startsWith(p, lineEnd, "RssAnon:")) {
      row->rssAnon = valueAfterKey(p, lineEnd);
    } else if (startsWith(p, lineEnd, "RssFile:")) {
      row->rssFile = valueAfterKey(p, lineEnd);
    } else if (startsWith(p, lineEnd, "RssShmem:")) {
      row->rssShmem = valueAfterKey(p, lineEnd);
    } else if (startsWith(p, lineEnd, "VmHWM:")) {
      row->vmHwm = valueAfterKey(p, lineEnd);
    } else if (startsWith(p, lineEnd, "VmSwap:")) {
      row->vmSwap = valueAfterKey(p, lineEnd);
    }
    p = lineEnd + 1;
  }
}

// One pass over /proc, the rows replacing `rows`' contents.
ScanResult scanOnce(std::vector<Row>* rows) {
  ScanResult res;
  rows->clear();
  const uint64_t t0 = nowNs();
  DIR* dir = opendir("/proc");
  if (dir == nullptr) {
    res.error = errno;
    return res;
  }
  const int dfd = dirfd(dir);
  char path[sizeof(dirent::d_name) + 8];
  char buf[8192];
  while (const dirent* e = readdir(dir)) {
    const char* name = e->d_name;
    if (name[0] < '1' || name[0] > '9') continue;
    bool numeric = true;
    for (const char* c = name; *c != '\0'; ++c) numeric = numeric && *c >= '0' && *c <= '9';
    if (!numeric) continue;
    std::snprintf(path, sizeof path, "%s/status", name);
    const int fd = openat(dfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      ++res.vanished;
      continue;
    }
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf && (n = read(fd, buf + len, sizeof buf - len)) != 0) {
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      len += size_t(n);
    }
    close(fd);
    if (len == 0) {
      ++res.vanished;
      continue;
    }
    Row row;
    row.pid = std::atoi(name);
    parseStatus(buf, len, &row);
    rows->push_back(row);
  }
  closedir(dir);
  res.ns = nowNs() - t0;
  res.processes = rows->size();
  return res;
}

int runScans(const Options& o) {
  std::vector<Row> rows;
  rows.reserve(1 << 16);
  for (unsigned i = 0; i < o.warmup; ++i) scanOnce(&rows);
  std::vector<uint64_t> times;
  ScanResult last;
  for (unsigned i = 0; i < o.repeat; ++i) {
    last = scanOnce(&rows);
    if (last.error != 0) {
      std::fprintf(stderr, "vigil_proc_scan: opendir /proc: %s\n", std::strerror(last.error));
      return 1;
    }
    times.push_back(last.ns);
  }
  std::vector<uint64_t> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median =
      n % 2 ? double(sorted[n / 2]) : (double(sorted[n / 2 - 1]) + double(sorted[n / 2])) / 2;
  // Totals over the last scan, so the parsing cannot be optimised away and can be checked.
  Row total;
  size_t withMemory = 0;
  for (const Row& r : rows) {
    total.vmRss += r.vmRss;
    total.rssAnon += r.rssAnon;
    total.rssFile += r.rssFile;
    total.rssShmem += r.rssShmem;
    total.vmHwm += r.vmHwm;
    total.vmSwap += r.vmSwap;
    if (r.vmRss != 0) ++withMemory;
  }
  std::printf(
      "{\"tool\":\"vigil_proc_scan\",\"fields\":\"VmRSS RssAnon RssFile RssShmem VmHWM "
      "VmSwap\",\"repeat\":%u,\"warmup\":%u,\"scan_ns\":[",
      o.repeat, o.warmup);
  for (size_t i = 0; i < times.size(); ++i) {
    std::printf("%s%llu", i ? "," : "", (unsigned long long)times[i]);
  }
  std::printf(
      "],\"median_ns\":%.0f,\"min_ns\":%llu,\"max_ns\":%llu,\"processes\":%zu,"
      "\"processes_with_memory\":%zu,\"vanished\":%zu,\"ns_per_process\":%.1f,"
      "\"totals_kb\":{\"VmRSS\":%llu,\"RssAnon\":%llu,\"RssFile\":%llu,"
      "\"RssShmem\":%llu,\"VmHWM\":%llu,\"VmSwap\":%llu}}\n",
      median, (unsigned long long)sorted.front(), (unsigned long long)sorted.back(), last.processes,
      withMemory, last.vanished, last.processes ? median / double(last.processes) : 0.0,
      (unsigned long long)total.vmRss, (unsigned long long)total.rssAnon,
      (unsigned long long)total.rssFile, (unsigned long long)total.rssShmem,
      (unsigned long long)total.vmHwm, (unsigned long long)total.vmSwap);
  std::fflush(stdout);
  return 0;
}

// Body of one held child: nothing but a blocking read. Never returns.
[[noreturn]] void heldChild(pid_t holder, int readFd, int writeFd, const sigset_t& oldMask) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != holder) _exit(0);
  sigprocmask(SIG_SETMASK, &oldMask, nullptr);
  close(writeFd);
  // No inherited stdio: whoever reads the holder's output must see its end when the holder
  // exits, not when the last child does.
  close(0);
  close(1);
  close(2);
  char c;
  while (read(readFd, &c, 1) < 0 && errno == EINTR) {
  }
  _exit(0);
}

int runHold(const Options& o) {
  sigset_t stopSignals, oldMask;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGTERM);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGHUP);
  // Blocked before the first fork, so a stop request during the forks waits for sigwait below
  // instead of killing the holder halfway.
  sigprocmask(SIG_BLOCK, &stopSignals, &oldMask);

  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "vigil_proc_scan: pipe: %s\n", std::strerror(errno));
    return 1;
  }
  const pid_t self = getpid();
  std::vector<pid_t> children;
  children.reserve(o.hold);
  int error = 0;
  const uint64_t t0 = nowNs();
  while (children.size() < o.hold) {
    const pid_t pid = fork();
    if (pid < 0) {
      error = errno;
      break;
    }
    if (pid == 0) heldChild(self, pipeFds[0], pipeFds[1], oldMask);
    children.push_back(pid);
  }
  const uint64_t alive = children.size();
  const uint64_t forkNs = nowNs() - t0;
  close(pipeFds[0]);
  std::printf("{\"requested\":%llu,\"alive\":%llu,\"fork_seconds\":%.3f,\"error\":\"%s\"}\n",
              (unsigned long long)o.hold, (unsigned long long)alive, double(forkNs) / 1e9,
              error ? std::strerror(error) : "");
  std::fflush(stdout);

  int sig = 0;
  while (sigwait(&stopSignals, &sig) != 0) {
  }
  // Ended in small batches, each reaped before the next: thousands of children waking at once
  // would all be runnable together and lift the load average by hundreds for a minute.
  constexpr size_t kBatch = 100;
  for (size_t i = 0; i < children.size(); i += kBatch) {
    const size_t end = std::min(children.size(), i + kBatch);
    for (size_t j = i; j < end; ++j) kill(children[j], SIGKILL);
    for (size_t j = i; j < end; ++j) {
      while (waitpid(children[j], nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  close(pipeFds[1]);  // a child that somehow survived reads end-of-file now
  while (true) {
    const pid_t p = waitpid(-1, nullptr, 0);
    if (p > 0) continue;
    if (p < 0 && errno == EINTR) continue;
    break;  // ECHILD: all reaped
  }
  return error != 0 && alive == 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (int rc = parseArgs(argc, argv, &o); rc != 0) return rc;
  return o.hold != 0 ? runHold(o) : runScans(o);
}
