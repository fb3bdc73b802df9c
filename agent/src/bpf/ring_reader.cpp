#include "bpf/ring_reader.hpp"

#include <bpf/libbpf.h>

#include "common/log.hpp"

namespace vigil::bpf {

Expected<std::unique_ptr<RingReader>> RingReader::create(int mapFd, Sink sink, BatchDone done,
                                                        std::chrono::milliseconds drainInterval) {
  std::unique_ptr<RingReader> r(new RingReader(std::move(sink), std::move(done), drainInterval));
  r->rb_ = ring_buffer__new(mapFd, &RingReader::onRecord, r.get(), nullptr);
  if (!r->rb_) return Error(errno, "open ring buffer");
  return r;
}

RingReader::~RingReader() {
  stop();
  ring_buffer__free(rb_);
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
