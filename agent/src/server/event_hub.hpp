#pragma once

// Fan-out of decoded events: a bounded ring of recent events (for --last) and one bounded
// queue per following client. publish() never blocks on a client: when a client's queue is
// full its events are counted as dropped, and the client receives a LostEvent in their place.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "events/event_ptr.hpp"
#include "events/filter.hpp"
#include "vigil/v1/vigil.pb.h"

namespace vigil::server {

using events::EventPtr;

class Subscription {
 public:
  Subscription(events::EventFilter filter, size_t capacity);

  // The next event, waiting up to timeout. Nothing on timeout or once the hub is closed.
  std::optional<EventPtr> next(std::chrono::milliseconds timeout);
  bool closed() const;
  // Events this client missed because its queue was full.
  uint64_t dropped() const;

 private:
  friend class EventHub;
  // Queues a matching event; counts it as dropped when the queue is full. Never blocks.
  // Returns the number of events dropped by this call (0 or 1).
  uint64_t offer(const EventPtr& event);
  void close();
  EventPtr lostRecord(uint64_t count) const;

  const events::EventFilter filter_;
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<EventPtr> queue_;  // guarded by mutex_
  uint64_t pendingLost_ = 0;    // guarded by mutex_: dropped, not yet reported to the client
  uint64_t dropped_ = 0;        // guarded by mutex_
  bool closed_ = false;         // guarded by mutex_
};

class EventHub {
 public:
  EventHub(size_t ringCapacity, size_t clientQueueCapacity);

  void publish(EventPtr event);
  void publish(v1::Event event);

  // The retained events that match, oldest first: all of them, or the newest `last`.
  std::vector<EventPtr> history(const events::EventFilter& filter, uint32_t last) const;

  // Registers a following client. History and subscription are taken under one lock, so that
  // the client sees no gap and no duplicate between them. includeHistory=false skips it.
  std::shared_ptr<Subscription> subscribe(events::EventFilter filter, bool includeHistory,
                                          uint32_t last, std::vector<EventPtr>* history);
  void unsubscribe(const std::shared_ptr<Subscription>& sub);

  // Wakes and ends every subscription; later subscriptions start closed.
  void close();

  size_t ringSize() const;
  size_t ringCapacity() const { return ringCapacity_; }
  size_t clients() const;
  uint64_t clientDropped() const;
  uint64_t published() const;

 private:
  std::vector<EventPtr> historyLocked(const events::EventFilter& filter, uint32_t last) const;

  const size_t ringCapacity_;
  const size_t clientQueueCapacity_;
  mutable std::mutex mutex_;
  std::deque<EventPtr> ring_;                        // guarded by mutex_
  std::vector<std::shared_ptr<Subscription>> subs_;  // guarded by mutex_
  uint64_t clientDropped_ = 0;                       // guarded by mutex_
  uint64_t published_ = 0;                           // guarded by mutex_
  bool closed_ = false;                              // guarded by mutex_
};

}  // namespace vigil::server
