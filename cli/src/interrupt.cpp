#include "cli/src/interrupt.hpp"

#include <pthread.h>

#include <csignal>
#include <cstdlib>

namespace vigil::cli {
namespace {

sigset_t interruptSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

Interrupt::Interrupt() {
  sigset_t set = interruptSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  thread_ = std::thread([this] { waitForSignals(); });
}

Interrupt::~Interrupt() {
  stopping_.store(true);
  // The signal is blocked in that thread, so it stays pending until sigwait() takes it.
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

void Interrupt::watch(grpc::ClientContext* call) {
  std::lock_guard lock(mutex_);
  call_ = call;
  if (call_ != nullptr && interrupted_.load()) call_->TryCancel();
}

void Interrupt::waitForSignals() {
  sigset_t set = interruptSignals();
  while (true) {
    int signal = 0;
    if (sigwait(&set, &signal) != 0) continue;
    if (stopping_.load()) return;
    // A second Ctrl-C means the first did not end things quickly enough.
    if (interrupted_.exchange(true)) std::_Exit(130);
    std::lock_guard lock(mutex_);
    if (call_ != nullptr) call_->TryCancel();
  }
}

}  // namespace vigil::cli
