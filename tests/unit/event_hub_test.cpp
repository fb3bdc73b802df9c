// Filters, the recent-event ring and per-client queues (a slow client never blocks publish).
#include <gtest/gtest.h>

#include "events/filter.hpp"
#include "server/event_hub.hpp"

namespace vigil::server {
namespace {

v1::Event execEvent(uint32_t pid, const std::string& bin, int64_t secs = 100) {
  v1::Event ev;
  ev.set_type(v1::EVENT_TYPE_EXEC);
  ev.mutable_time()->set_seconds(secs);
  auto* p = ev.mutable_exec()->mutable_process();
  p->set_pid(pid);
  p->set_binary(bin);
  return ev;
}

events::EventFilter filterOf(const v1::GetEventsRequest& req) {
  auto f = events::EventFilter::fromRequest(req);
  EXPECT_TRUE(f.ok());
  return f.value();
}

TEST(EventFilter, RepeatedValuesOrDifferentFiltersAnd) {
  v1::GetEventsRequest req;
  req.add_pids(1);
  req.add_pids(2);
  req.add_binaries("/usr/bin/");
  auto f = filterOf(req);
  EXPECT_TRUE(f.matches(execEvent(1, "/usr/bin/curl")));
  EXPECT_TRUE(f.matches(execEvent(2, "/usr/bin/wget")));
  EXPECT_FALSE(f.matches(execEvent(3, "/usr/bin/curl")));
  EXPECT_FALSE(f.matches(execEvent(1, "/bin/sh")));
}

TEST(EventFilter, BinaryExactOrPrefix) {
  v1::GetEventsRequest req;
  req.add_binaries("/usr/bin/cu*");
  req.add_binaries("/bin/sh");
  auto f = filterOf(req);
  EXPECT_TRUE(f.matches(execEvent(1, "/usr/bin/curl")));
  EXPECT_TRUE(f.matches(execEvent(1, "/bin/sh")));
  EXPECT_FALSE(f.matches(execEvent(1, "/bin/shx")));
  EXPECT_FALSE(f.matches(execEvent(1, "/usr/bin/wget")));
}

TEST(EventFilter, TypesSinceAndLostAlwaysPasses) {
  v1::GetEventsRequest req;
  req.add_types(v1::EVENT_TYPE_EXIT);
  req.mutable_since()->set_seconds(50);
  auto f = filterOf(req);
  EXPECT_FALSE(f.matches(execEvent(1, "/x", 100)));
  v1::Event exit;
  exit.set_type(v1::EVENT_TYPE_EXIT);
  exit.mutable_time()->set_seconds(100);
  exit.mutable_exit()->mutable_process()->set_pid(1);
  EXPECT_TRUE(f.matches(exit));
  exit.mutable_time()->set_seconds(10);
  EXPECT_FALSE(f.matches(exit));
  v1::Event lost;
  lost.set_type(v1::EVENT_TYPE_LOST);
  EXPECT_TRUE(f.matches(lost));
}

TEST(EventFilter, RejectsValuesThatMatchNothing) {
  v1::GetEventsRequest bad;
  bad.add_types(static_cast<v1::EventType>(42));
  EXPECT_FALSE(events::EventFilter::fromRequest(bad).ok());
  v1::GetEventsRequest empty;
  empty.add_binaries("");
  EXPECT_FALSE(events::EventFilter::fromRequest(empty).ok());
  v1::GetEventsRequest zero;
  zero.add_pids(0);
  EXPECT_FALSE(events::EventFilter::fromRequest(zero).ok());
  v1::GetEventsRequest since;
  since.mutable_since()->set_nanos(-1);
  EXPECT_FALSE(events::EventFilter::fromRequest(since).ok());
}

TEST(EventHub, RingKeepsNewestAndLastReturnsTail) {
  EventHub hub(3, 10);
  for (uint32_t i = 1; i <= 5; i++) hub.publish(execEvent(i, "/x"));
  EXPECT_EQ(hub.ringSize(), 3u);
  auto all = hub.history(filterOf({}), 0);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all.front()->exec().process().pid(), 3u);
  auto last2 = hub.history(filterOf({}), 2);
  ASSERT_EQ(last2.size(), 2u);
  EXPECT_EQ(last2[0]->exec().process().pid(), 4u);
  EXPECT_EQ(last2[1]->exec().process().pid(), 5u);
}

TEST(EventHub, LastCountsOnlyMatchingEvents) {
  EventHub hub(100, 10);
  for (uint32_t i = 1; i <= 10; i++) hub.publish(execEvent(i % 2 ? 7 : 8, "/x"));
  v1::GetEventsRequest req;
  req.add_pids(7);
  auto h = hub.history(filterOf(req), 3);
  ASSERT_EQ(h.size(), 3u);
  for (auto& e : h) EXPECT_EQ(e->exec().process().pid(), 7u);
}

TEST(EventHub, FirstReturnsOldestMatchesAndLastWins) {
  EventHub hub(100, 10);
  for (uint32_t i = 1; i <= 10; i++) hub.publish(execEvent(i, i % 2 ? "/odd" : "/even"));
  v1::GetEventsRequest req;
  req.add_binaries("/even");
  auto h = hub.history(filterOf(req), 0, 2);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0]->exec().process().pid(), 2u);
  EXPECT_EQ(h[1]->exec().process().pid(), 4u);
  auto last = hub.history(filterOf(req), 1, 2);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0]->exec().process().pid(), 10u);
  EXPECT_EQ(hub.history(filterOf({}), 0, 50).size(), 10u);
}

TEST(EventHub, SlowClientIsToldWhatItMissedInOrder) {
  EventHub hub(100, 2);
  std::vector<EventPtr> history;
  auto sub = hub.subscribe(filterOf({}), false, 0, &history);
  for (uint32_t i = 1; i <= 5; i++) hub.publish(execEvent(i, "/x"));  // never blocks
  EXPECT_EQ(hub.clientDropped(), 3u);
  EXPECT_EQ(sub->dropped(), 3u);

  auto a = sub->next(std::chrono::milliseconds(0));
  auto b = sub->next(std::chrono::milliseconds(0));
  auto lost = sub->next(std::chrono::milliseconds(0));
  ASSERT_TRUE(a && b && lost);
  EXPECT_EQ((*a)->exec().process().pid(), 1u);
  EXPECT_EQ((*b)->exec().process().pid(), 2u);
  ASSERT_EQ((*lost)->type(), v1::EVENT_TYPE_LOST);
  EXPECT_EQ((*lost)->lost().count(), 3u);
  EXPECT_EQ((*lost)->lost().source(), "client");

  // After the gap the stream continues, the gap marked before the next event.
  hub.publish(execEvent(6, "/x"));
  auto c = sub->next(std::chrono::milliseconds(0));
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)->exec().process().pid(), 6u);
  EXPECT_FALSE(sub->next(std::chrono::milliseconds(0)));
}

TEST(EventHub, GapReportedBeforeLaterEvents) {
  EventHub hub(100, 2);
  auto sub = hub.subscribe(filterOf({}), false, 0, nullptr);
  for (uint32_t i = 1; i <= 3; i++) hub.publish(execEvent(i, "/x"));  // 3 is dropped
  ASSERT_TRUE(sub->next(std::chrono::milliseconds(0)));                // 1
  hub.publish(execEvent(4, "/x"));  // room for the gap marker, not for 4
  auto two = sub->next(std::chrono::milliseconds(0));
  auto gap = sub->next(std::chrono::milliseconds(0));
  ASSERT_TRUE(two && gap);
  EXPECT_EQ((*two)->exec().process().pid(), 2u);
  EXPECT_EQ((*gap)->type(), v1::EVENT_TYPE_LOST);
  EXPECT_EQ((*gap)->lost().count(), 1u);
  auto gap2 = sub->next(std::chrono::milliseconds(0));
  ASSERT_TRUE(gap2);
  EXPECT_EQ((*gap2)->lost().count(), 1u);  // event 4
}

TEST(EventHub, SubscribeReturnsHistoryWithoutGapOrDuplicate) {
  EventHub hub(100, 100);
  hub.publish(execEvent(1, "/x"));
  hub.publish(execEvent(2, "/x"));
  std::vector<EventPtr> history;
  auto sub = hub.subscribe(filterOf({}), true, 1, &history);
  hub.publish(execEvent(3, "/x"));
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0]->exec().process().pid(), 2u);
  auto next = sub->next(std::chrono::milliseconds(0));
  ASSERT_TRUE(next);
  EXPECT_EQ((*next)->exec().process().pid(), 3u);
  EXPECT_EQ(hub.clients(), 1u);
  hub.unsubscribe(sub);
  EXPECT_EQ(hub.clients(), 0u);
}

TEST(EventHub, CloseWakesSubscribers) {
  EventHub hub(10, 10);
  auto sub = hub.subscribe(filterOf({}), false, 0, nullptr);
  hub.close();
  EXPECT_FALSE(sub->next(std::chrono::seconds(5)));
  EXPECT_TRUE(sub->closed());
  EXPECT_TRUE(hub.subscribe(filterOf({}), false, 0, nullptr)->closed());
}

}  // namespace
}  // namespace vigil::server
