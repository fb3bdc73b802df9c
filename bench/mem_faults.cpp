// vigil_mem_faults: a page-fault storm. Each worker process maps an anonymous region, writes one
// byte to every page of it (one minor fault per page), unmaps it and starts over, for a fixed
// time. Prints the pages touched per second over all workers as one JSON object on stdout.
//
// Every write to a fresh anonymous page takes the kernel's anonymous-fault path, which updates
// the process's RSS counters, and so fires tracepoint kmem:rss_stat: this is the workload where
// a tool hooked on every RSS change costs the most. Transparent huge pages are turned off for
// the regions (MADV_NOHUGEPAGE) so that a fault is always one 4 KiB page, whatever the host's
// THP setting.
//
// The workers are processes, not threads: two threads of one address space would contend on its
// mmap lock, which is not what we want to measure. They warm up, then all start together when
// the parent closes a pipe; each runs until the shared deadline and finishes the region it is
// in (a region is a few milliseconds of work). The rate is pages over the time from the start
// to the last worker's end. Each worker also reports its minor faults and its CPU time
// (getrusage around the timed loop): CPU per page moves much less than the rate when other work
// competes for the CPUs, and a BPF program on the fault path shows up there, in system time.
//
// Exit status: 0 on success, 1 when a worker failed (the JSON says which), 2 on a usage error.

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Options {
  double seconds = 4.0;
  unsigned workers = 1;
  uint64_t regionMib = 16;
  unsigned warmupRegions = 4;  // per worker, untimed
};

// One slot per worker in a shared mapping: written by the worker, read by the parent once the
// worker has been reaped.
struct WorkerResult {
  uint64_t pages;
  uint64_t regions;
  uint64_t elapsedNs;  // from the common start to this worker's end
  uint64_t minorFaults;
  uint64_t majorFaults;
  uint64_t userNs;
  uint64_t systemNs;
  int32_t error;  // errno of the first failure, 0 if none
  int32_t done;
};

uint64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

uint64_t timevalNs(const timeval& tv) {
  return uint64_t(tv.tv_sec) * 1000000000ull + uint64_t(tv.tv_usec) * 1000ull;
}

// Fills `o` from the command line. Returns 0, or the exit status on a usage error (--help
// prints and exits 0).
int parseArgs(int argc, char** argv, Options* o) {
  CLI::App app{"vigil_mem_faults: a page-fault storm. Prints one JSON object with "
               "pages_per_second on stdout."};
  app.add_option("-t,--seconds", o->seconds, "Length of the timed run")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            double v = 0;
            if (CLI::detail::lexical_cast(s, v) && v > 0 && v <= 3600) return "";
            return "Value " + s + " is not a number of seconds in (0, 3600]";
          },
          "FLOAT in (0 - 3600]"));
  app.add_option("-j,--workers", o->workers, "Worker processes")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  app.add_option("-r,--region-mib", o->regionMib,
                 "Size of the region mapped, touched and unmapped per iteration")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{4096}));
  app.add_option("-w,--warmup", o->warmupRegions, "Untimed regions per worker before the start")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1000u));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::exit(app.exit(e));
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "vigil_mem_faults: %s\nRun 'vigil_mem_faults --help' for usage.\n",
                 e.what());
    return 2;
  }
  return 0;
}

// Maps `bytes` of anonymous memory, writes one byte per page, unmaps it. Returns 0 or errno.
int touchRegion(size_t bytes, size_t pageSize) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return errno;
  // Not fatal: a kernel without THP has nothing to turn off.
  madvise(p, bytes, MADV_NOHUGEPAGE);
  volatile char* bytesOf = static_cast<volatile char*>(p);
  for (size_t off = 0; off < bytes; off += pageSize) bytesOf[off] = 1;
  if (munmap(p, bytes) != 0) return errno;
  return 0;
}

// Body of one worker: warm up, report ready, wait for the start, fault until the deadline, store
// the result. Never returns.
[[noreturn]] void worker(const Options& o, WorkerResult* result, int readyFd, int goFd) {
  const size_t pageSize = size_t(sysconf(_SC_PAGESIZE));
  const size_t bytes = size_t(o.regionMib) << 20;
  const uint64_t pagesPerRegion = bytes / pageSize;
  for (unsigned i = 0; i < o.warmupRegions; ++i) {
    if (int rc = touchRegion(bytes, pageSize); rc != 0) {
      result->error = rc;
      _exit(1);
    }
  }

  char byte = 'r';
  if (write(readyFd, &byte, 1) != 1) _exit(3);
  close(readyFd);
  // The parent writes the common start time (8 bytes, atomic on a pipe) once per worker.
  uint64_t start = 0;
  ssize_t n;
  while ((n = read(goFd, &start, sizeof start)) < 0 && errno == EINTR) {
  }
  close(goFd);
  if (n != ssize_t(sizeof start)) _exit(3);
  const uint64_t deadline = start + uint64_t(o.seconds * 1e9);

  rusage r0{}, r1{};
  getrusage(RUSAGE_SELF, &r0);
  uint64_t pages = 0, regions = 0;
  int error = 0;
  uint64_t end = nowNs();
  while (end < deadline) {
    if (int rc = touchRegion(bytes, pageSize); rc != 0) {
      error = rc;
      break;
    }
    pages += pagesPerRegion;
    ++regions;
    end = nowNs();
  }
  getrusage(RUSAGE_SELF, &r1);
  result->pages = pages;
  result->regions = regions;
  result->elapsedNs = end > start ? end - start : 0;
  result->minorFaults = uint64_t(r1.ru_minflt - r0.ru_minflt);
  result->majorFaults = uint64_t(r1.ru_majflt - r0.ru_majflt);
  result->userNs = timevalNs(r1.ru_utime) - timevalNs(r0.ru_utime);
  result->systemNs = timevalNs(r1.ru_stime) - timevalNs(r0.ru_stime);
  result->error = error;
  result->done = 1;
  _exit(error != 0 ? 1 : 0);
}

void killAll(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) kill(p, SIGKILL);
  for (pid_t p : pids) waitpid(p, nullptr, 0);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (int rc = parseArgs(argc, argv, &o); rc != 0) return rc;

  const size_t sharedBytes = sizeof(WorkerResult) * o.workers;
  void* shared =
      mmap(nullptr, sharedBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) {
    std::fprintf(stderr, "vigil_mem_faults: mmap: %s\n", std::strerror(errno));
    return 2;
  }
  auto* results = static_cast<WorkerResult*>(shared);
  std::memset(shared, 0, sharedBytes);

  int ready[2], go[2];
  if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "vigil_mem_faults: pipe: %s\n", std::strerror(errno));
    return 2;
  }

  std::vector<pid_t> workers;
  const pid_t parent = getpid();
  for (unsigned i = 0; i < o.workers; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      std::fprintf(stderr, "vigil_mem_faults: fork: %s\n", std::strerror(errno));
      killAll(workers);
      return 2;
    }
    if (pid == 0) {
      // A worker must not outlive its parent (a harness that kills the parent, say).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(3);
      close(ready[0]);
      close(go[1]);
      worker(o, &results[i], ready[1], go[0]);
    }
    workers.push_back(pid);
  }
  close(ready[1]);
  close(go[0]);

  unsigned nready = 0;
  char buf[64];
  while (nready < o.workers) {
    const ssize_t r = read(ready[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // a worker died during its warm-up
    nready += unsigned(r);
  }
  close(ready[0]);
  if (nready < o.workers) {
    std::fprintf(stderr, "vigil_mem_faults: only %u of %u workers became ready\n", nready,
                 o.workers);
    killAll(workers);
    return 2;
  }

  const uint64_t start = nowNs();
  for (unsigned i = 0; i < o.workers; ++i) {
    if (write(go[1], &start, sizeof start) != ssize_t(sizeof start)) {
      std::fprintf(stderr, "vigil_mem_faults: start pipe: %s\n", std::strerror(errno));
      killAll(workers);
      return 2;
    }
  }
  close(go[1]);
  bool crashed = false;
  for (pid_t p : workers) {
    int status = 0;
    while (waitpid(p, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) crashed = true;
  }

  uint64_t pages = 0, faults = 0, majors = 0, userNs = 0, systemNs = 0, wallNs = 0;
  int firstError = 0;
  for (unsigned i = 0; i < o.workers; ++i) {
    const WorkerResult& r = results[i];
    pages += r.pages;
    faults += r.minorFaults;
    majors += r.majorFaults;
    userNs += r.userNs;
    systemNs += r.systemNs;
    if (r.elapsedNs > wallNs) wallNs = r.elapsedNs;
    if (firstError == 0) firstError = r.error;
  }
  const double wall = double(wallNs) / 1e9;
  const double rate = wall > 0 ? double(pages) / wall : 0.0;

  std::printf(
      "{\"tool\":\"vigil_mem_faults\",\"workers\":%u,\"seconds_requested\":%.3f,"
      "\"region_bytes\":%llu,\"page_size\":%ld,\"wall_seconds\":%.6f,\"pages\":%llu,"
      "\"pages_per_second\":%.1f,\"minor_faults\":%llu,\"major_faults\":%llu,"
      "\"faults_per_second\":%.1f,\"cpu_seconds\":{\"user\":%.3f,\"system\":%.3f},"
      "\"cpu_ns_per_page\":%.1f,\"error\":\"%s\",\"per_worker\":[",
      o.workers, o.seconds, (unsigned long long)(o.regionMib << 20), sysconf(_SC_PAGESIZE), wall,
      (unsigned long long)pages, rate, (unsigned long long)faults, (unsigned long long)majors,
      wall > 0 ? double(faults) / wall : 0.0, double(userNs) / 1e9, double(systemNs) / 1e9,
      pages ? double(userNs + systemNs) / double(pages) : 0.0,
      firstError ? std::strerror(firstError) : "");
  for (unsigned i = 0; i < o.workers; ++i) {
    const WorkerResult& r = results[i];
    const double s = double(r.elapsedNs) / 1e9;
    std::printf(
        "%s{\"pid\":%d,\"done\":%s,\"pages\":%llu,\"regions\":%llu,\"seconds\":%.6f,"
        "\"pages_per_second\":%.1f,\"minor_faults\":%llu}",
        i ? "," : "", int(workers[i]), r.done ? "true" : "false", (unsigned long long)r.pages,
        (unsigned long long)r.regions, s, s > 0 ? double(r.pages) / s : 0.0,
        (unsigned long long)r.minorFaults);
  }
  std::printf("]}\n");
  std::fflush(stdout);
  munmap(shared, sharedBytes);
  return (crashed || firstError != 0) ? 1 : 0;
}
