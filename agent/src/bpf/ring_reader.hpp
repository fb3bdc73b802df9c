#pragma once

// Reads the vigil_events ring buffer on its own thread. The sink runs on that thread for each
// record and must not block: it checks, copies and queues (see server/pipeline).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <thread>

#include "common/error.hpp"

struct ring_buffer;

namespace vigil::bpf {

class RingReader {
 public:
  using Sink = std::function<void(std::span<const uint8_t> record)>;
  // Called on the reader thread after each batch of records (to wake a consumer once).
  using BatchDone = std::function<void()>;

  // The thread waits for a kernel wake-up, or drains the buffer every drainInterval anyway
  // (the programs wake it only once a batch has built up).
  static Expected<std::unique_ptr<RingReader>> create(int mapFd, Sink sink, BatchDone done,
                                                      std::chrono::milliseconds drainInterval);
  ~RingReader();
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;

  void start();
  void stop();  // joins the thread; idempotent

  // Bytes the kernel has written and the reader not yet consumed, out of the ring's size:
  // read from the ring's position pages (a read-only mapping of our own), so it costs no
  // syscall. Zero size when the pages could not be mapped.
  struct Usage {
    uint64_t pendingBytes = 0;
    uint64_t sizeBytes = 0;
  };
  Usage usage() const;

 private:
  RingReader(Sink sink, BatchDone done, std::chrono::milliseconds drainInterval)
      : sink_(std::move(sink)), done_(std::move(done)), drainInterval_(drainInterval) {}
  static int onRecord(void* self, void* data, size_t size);
  void run();

  Sink sink_;
  BatchDone done_;
  std::chrono::milliseconds drainInterval_;
  ring_buffer* rb_ = nullptr;
  void* positions_ = nullptr;  // consumer page, then producer page
  size_t pageSize_ = 0;
  uint64_t sizeBytes_ = 0;
  std::atomic<bool> running_{false};
  std::thread thread_;
};

}  // namespace vigil::bpf
