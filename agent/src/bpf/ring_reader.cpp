#include "bpf/ring_reader.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mman.h>

#include <algorithm>
#include <unistd.h>

#include "common/log.hpp"

namespace vigil::bpf {

Expected<std::unique_ptr<RingReader>> RingReader::create(int mapFd, Sink sink, BatchDone done,
                                                        std::chrono::milliseconds drainInterval) {
  std::unique_ptr<RingReader> r(new RingReader(std::move(sink), std::move(done), drainInterval));
  r->rb_ = ring_buffer__new(mapFd, &RingReader::onRecord, r.get(), nullptr);
  if (!r->rb_) return Error(errno, "open ring buffer");
  bpf_map_info info{};
  __u32 len = sizeof info;
  r->pageSize_ = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  if (bpf_obj_get_info_by_fd(mapFd, &info, &len) != 0) {
    log::warn("ring buffer usage unavailable: read the map's info: " + Error(errno, "").message());
  } else {
    void* p = ::mmap(nullptr, 2 * r->pageSize_, PROT_READ, MAP_SHARED, mapFd, 0);
    if (p != MAP_FAILED) {
      r->positions_ = p;
      r->sizeBytes_ = info.max_entries;
    } else {
      log::warn("ring buffer usage unavailable: map its position pages: " +
                Error(errno, "").message());
    }
  }
  return r;
}

RingReader::~RingReader() {
  stop();
  ring_buffer__free(rb_);
  if (positions_) ::munmap(positions_, 2 * pageSize_);
}

RingReader::Usage RingReader::usage() const {
  if (!positions_) return {};
  auto* base = static_cast<const uint8_t*>(positions_);
  uint64_t consumer = __atomic_load_n(reinterpret_cast<const uint64_t*>(base), __ATOMIC_ACQUIRE);
  uint64_t producer =
      __atomic_load_n(reinterpret_cast<const uint64_t*>(base + pageSize_), __ATOMIC_ACQUIRE);
  uint64_t pending = producer >= consumer ? producer - consumer : 0;
  return {std::min(pending, sizeBytes_), sizeBytes_};
}

int RingReader::onRecord(void* self, void* data, size_t size) {
  auto* r = static_cast<RingReader*>(self);
  r->sink_(std::span<const uint8_t>(static_cast<const uint8_t*>(data), size));
  return 0;
}

void RingReader::start() {
  running_ = true;
  thread_ = std::thread([this] { run(); });
}

void RingReader::stop() {
  running_ = false;
  if (thread_.joinable()) thread_.join();
}

void RingReader::run() {
  while (running_) {
    int n = ring_buffer__poll(rb_, static_cast<int>(drainInterval_.count()));
    // A timeout: records may be waiting that did not ask for a wake-up.
    if (n == 0) n = ring_buffer__consume(rb_);
    if (n < 0 && n != -EINTR) {
      log::error("ring buffer poll failed: " + Error(n, "").message());
      break;
    }
    if (n > 0 && done_) done_();
  }
}

}  // namespace vigil::bpf
