#include "server/event_hub.hpp"

#include <algorithm>

namespace vigil::server {

Subscription::Subscription(std::shared_ptr<const events::EventMatcher> matcher, size_t capacity)
    : matcher_(std::move(matcher)), capacity_(capacity == 0 ? 1 : capacity) {}

EventPtr Subscription::lostRecord(uint64_t count) const {
  auto ev = std::make_shared<v1::Event>();
  if (!queue_.empty()) *ev->mutable_time() = queue_.back()->time();
  ev->set_type(v1::EVENT_TYPE_LOST);
  ev->mutable_lost()->set_source("client");
  ev->mutable_lost()->set_count(count);
  return ev;
}

uint64_t Subscription::offer(const EventPtr& event) {
  if (!matcher_->matches(*event)) return 0;
  std::lock_guard lock(mutex_);
  if (closed_) return 0;
  // Report an earlier gap before the first event after it, so that order is kept.
  if (pendingLost_ > 0 && queue_.size() < capacity_) {
    queue_.push_back(lostRecord(pendingLost_));
    pendingLost_ = 0;
  }
  if (queue_.size() >= capacity_) {
    pendingLost_++;
    dropped_++;
    return 1;
  }
  queue_.push_back(event);
  ready_.notify_one();
  return 0;
}

std::optional<EventPtr> Subscription::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  ready_.wait_for(lock, timeout,
                  [&] { return closed_ || !queue_.empty() || pendingLost_ > 0; });
  if (!queue_.empty()) {
    EventPtr ev = std::move(queue_.front());
    queue_.pop_front();
    return ev;
  }
  if (pendingLost_ > 0) {
    EventPtr ev = lostRecord(pendingLost_);
    pendingLost_ = 0;
    return ev;
  }
  return std::nullopt;
}

bool Subscription::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

uint64_t Subscription::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

void Subscription::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  ready_.notify_all();
}

EventHub::EventHub(size_t ringCapacity, size_t clientQueueCapacity)
    : ringCapacity_(ringCapacity == 0 ? 1 : ringCapacity),
      clientQueueCapacity_(clientQueueCapacity) {}

void EventHub::publish(v1::Event event) {
  publish(std::make_shared<const v1::Event>(std::move(event)));
}

void EventHub::publish(EventPtr ev) {
  std::lock_guard lock(mutex_);
  if (ring_.size() >= ringCapacity_) ring_.pop_front();
  ring_.push_back(ev);
  published_++;
  for (auto& sub : subs_) clientDropped_ += sub->offer(ev);
}

std::vector<EventPtr> EventHub::historyLocked(const events::EventMatcher& matcher, uint32_t last,
                                              uint32_t first) const {
  std::vector<EventPtr> out;
  if (last == 0 && first > 0) {
    for (auto it = ring_.begin(); it != ring_.end() && out.size() < first; ++it) {
      if (matcher.matches(**it)) out.push_back(*it);
    }
    return out;
  }
  for (auto it = ring_.rbegin(); it != ring_.rend(); ++it) {
    if (last > 0 && out.size() >= last) break;
    if (matcher.matches(**it)) out.push_back(*it);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<EventPtr> EventHub::history(const events::EventMatcher& matcher, uint32_t last,
                                        uint32_t first) const {
  std::lock_guard lock(mutex_);
  return historyLocked(matcher, last, first);
}

std::shared_ptr<Subscription> EventHub::subscribe(
    std::shared_ptr<const events::EventMatcher> matcher, bool includeHistory, uint32_t last,
    std::vector<EventPtr>* history, size_t queueCapacity) {
  std::lock_guard lock(mutex_);
  if (includeHistory && history) *history = historyLocked(*matcher, last, 0);
  auto sub = std::make_shared<Subscription>(
      std::move(matcher), queueCapacity ? queueCapacity : clientQueueCapacity_);
  if (closed_) {
    sub->close();
  } else {
    subs_.push_back(sub);
  }
  return sub;
}

void EventHub::unsubscribe(const std::shared_ptr<Subscription>& sub) {
  std::lock_guard lock(mutex_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), sub), subs_.end());
}

void EventHub::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  for (auto& sub : subs_) sub->close();
  subs_.clear();
}

size_t EventHub::ringSize() const {
  std::lock_guard lock(mutex_);
  return ring_.size();
}

size_t EventHub::clients() const {
  std::lock_guard lock(mutex_);
  return subs_.size();
}

uint64_t EventHub::clientDropped() const {
  std::lock_guard lock(mutex_);
  return clientDropped_;
}

uint64_t EventHub::published() const {
  std::lock_guard lock(mutex_);
  return published_;
}

}  // namespace vigil::server
