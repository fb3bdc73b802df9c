#pragma once

// Fan-out of decoded events: a bounded ring of recent events (for --last) and one bounded
// queue per following client. The agent has one hub per stream (process events, flows); which
// events a client gets is up to the events::EventMatcher it brings. publish() never blocks on a
// client: when a client's queue is full its events are counted as dropped, and the client receives
// a LostEvent in their place.

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "events/event_matcher.hpp"
#include "events/event_ptr.hpp"
#include "vigil/v1/vigil.pb.h"

namespace vigil::server {

using events::EventPtr;

class Subscription {
 public:
  Subscription(std::shared_ptr<const events::EventMatcher> matcher, size_t capacity);

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

  const std::shared_ptr<const events::EventMatcher> matcher_;
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

  // The retained events that match, oldest first: all of them, the newest `last`, or the
  // oldest `first` (`last` wins when both are set).
  std::vector<EventPtr> history(const events::EventMatcher& matcher, uint32_t last,
                                uint32_t first = 0) const;

  // Registers a following client. History (as history(matcher, last)) and subscription are
  // taken under one lock, so that the client sees no gap and no duplicate between them.
  // includeHistory=false skips it.
  // queueCapacity 0: the hub's client queue size.
  std::shared_ptr<Subscription> subscribe(std::shared_ptr<const events::EventMatcher> matcher,
                                          bool includeHistory, uint32_t last,
                                          std::vector<EventPtr>* history, size_t queueCapacity = 0);
  template <std::derived_from<events::EventMatcher> Matcher>
  std::shared_ptr<Subscription> subscribe(Matcher matcher, bool includeHistory, uint32_t last,
                                          std::vector<EventPtr>* history) {
    return subscribe(std::make_shared<const Matcher>(std::move(matcher)), includeHistory, last,
                     history);
  }
  void unsubscribe(const std::shared_ptr<Subscription>& sub);

  // Wakes and ends every subscription; later subscriptions start closed.
  void close();

  size_t ringSize() const;
  size_t ringCapacity() const { return ringCapacity_; }
  size_t clients() const;
  uint64_t clientDropped() const;
  uint64_t published() const;

 private:
  std::vector<EventPtr> historyLocked(const events::EventMatcher& matcher, uint32_t last,
                                      uint32_t first) const;

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
