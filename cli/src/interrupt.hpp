#pragma once

#include <grpcpp/client_context.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace vigil::cli {

// Turns Ctrl-C (SIGINT) and SIGTERM into cancelling the gRPC call in progress, so that a
// command can end it cleanly instead of dying inside gRPC. Construct it first thing in main,
// before any other thread starts: it blocks both signals in the calling thread, every thread
// created afterwards inherits that mask, and its own thread receives them with sigwait(). A
// second signal ends the process at once with status 130.
class Interrupt {
 public:
  Interrupt();
  ~Interrupt();
  Interrupt(const Interrupt&) = delete;
  Interrupt& operator=(const Interrupt&) = delete;

  // Cancels `call` when a signal arrives, at once if one already has. nullptr forgets it; do
  // that before the context is destroyed.
  void watch(grpc::ClientContext* call);
  bool interrupted() const { return interrupted_.load(); }

 private:
  void waitForSignals();

  std::mutex mutex_;
  grpc::ClientContext* call_ = nullptr;  // Guarded by mutex_.
  std::atomic<bool> interrupted_{false};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace vigil::cli
