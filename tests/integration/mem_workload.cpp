// A process with known memory, for the memory accounting tests:
//   vigil_mem_workload ANON_MIB FILE_MIB SHMEM_MIB THREADS
// touches ANON_MIB of private anonymous memory, maps and reads FILE_MIB of a file it creates
// (page cache mapped into it: RssFile), and touches SHMEM_MIB of shared anonymous memory
// (RssShmem); starts THREADS-1 extra threads that sleep. Then prints "ready" and waits for
// commands on stdin: "free" unmaps everything (and prints "freed"), end of input exits.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kMiB = 1 << 20;

char* touch(size_t bytes, int flags, int fd) {
  if (bytes == 0) return nullptr;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(2);
  }
  volatile char* c = static_cast<char*>(p);
  const long page = sysconf(_SC_PAGESIZE);
  for (size_t i = 0; i < bytes; i += static_cast<size_t>(page)) {
    if (fd >= 0) {
      (void)c[i];  // a read maps the file's page cache page
    } else {
      c[i] = 1;
    }
  }
  return static_cast<char*>(p);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s ANON_MIB FILE_MIB SHMEM_MIB THREADS\n", argv[0]);
    return 2;
  }
  const size_t anon = std::strtoul(argv[1], nullptr, 10) * kMiB;
  const size_t file = std::strtoul(argv[2], nullptr, 10) * kMiB;
  const size_t shmem = std::strtoul(argv[3], nullptr, 10) * kMiB;
  const int threads = std::atoi(argv[4]);

  char* a = touch(anon, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  char* f = nullptr;
  if (file > 0) {
    char path[] = "/tmp/vigil-mem-workload-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(file)) != 0) return 2;
    std::vector<char> block(kMiB, 'f');
    for (size_t done = 0; done < file; done += kMiB)
      if (write(fd, block.data(), kMiB) != static_cast<ssize_t>(kMiB)) return 2;
    unlink(path);
    f = touch(file, MAP_SHARED, fd);
    close(fd);
  }
  char* s = touch(shmem, MAP_SHARED | MAP_ANONYMOUS, -1);

  std::vector<std::thread> sleepers;
  for (int i = 1; i < threads; i++)
    sleepers.emplace_back([] {
      for (;;) pause();
    });
  for (auto& t : sleepers) t.detach();

  std::cout << "ready" << std::endl;
  for (std::string line; std::getline(std::cin, line);) {
    if (line == "free") {
      if (a) munmap(a, anon);
      if (f) munmap(f, file);
      if (s) munmap(s, shmem);
      a = f = s = nullptr;
      std::cout << "freed" << std::endl;
    }
  }
  _exit(0);  // the sleeping threads do not end on their own
}
