// Metrics: the families one scrape builds from the agent's status, policies and traffic
// (names, labels, values, the per-pod cap), and /metrics served over real HTTP.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <prometheus/text_serializer.h>

#include "export/metrics.hpp"

namespace vigil::api {
namespace {

std::string render(const MetricsSnapshot& snap, TrafficTotals& traffic, size_t maxPods = 500) {
  SelfUsage self;
  self.userSeconds = 1.5;
  self.residentBytes = 4096;
  if (snap.hasTraffic) traffic.update(snap.traffic, snap.livePods, maxPods);
  return prometheus::TextSerializer().Serialize(
      buildFamilies(snap, self, snap.hasTraffic ? &traffic : nullptr));
}

std::string render(const MetricsSnapshot& snap, size_t maxPods = 500) {
  TrafficTotals traffic;
  return render(snap, traffic, maxPods);
}

bool hasLine(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

v1::CgroupTraffic* addRow(v1::GetTrafficResponse& t, const std::string& ns,
                          const std::string& pod, uint64_t in, uint64_t out) {
  auto* row = t.add_rows();
  row->set_cgroup_id(static_cast<uint64_t>(t.rows_size()));  // one cgroup per row
  row->set_protocol("udp");
  row->mutable_ingress()->set_bytes(in);
  row->mutable_ingress()->set_packets(in / 100);
  row->mutable_egress()->set_bytes(out);
  row->mutable_egress()->set_packets(out / 100);
  auto* w = row->mutable_workload();
  w->set_kind(pod.empty() ? "host" : "pod");
  w->set_namespace_(ns);
  w->set_pod(pod);
  w->set_pod_uid("uid-" + ns + "-" + pod);
  return row;
}

MetricsSnapshot sample() {
  MetricsSnapshot snap;
  auto& s = snap.status;
  s.set_version("0.1.0");
  s.set_node_name("node-a");
  auto* e = s.add_events();
  e->set_type(v1::EVENT_TYPE_EXEC);
  e->set_seen(120);
  e->set_lost_kernel(3);
  auto* ring = s.add_ring_buffers();
  ring->set_name("events");
  ring->set_pending_bytes(512);
  ring->set_size_bytes(8 << 20);
  s.mutable_flows()->set_state("tracking");
  auto* lostStat = s.mutable_flows()->add_stats();
  lostStat->set_name("flow_records_lost_ringbuf_full");
  lostStat->set_value(4);
  s.mutable_flows()->set_flows_seen(42);
  auto* d = s.mutable_flows()->add_drops();
  d->set_reason("NO_SOCKET");
  d->set_packets(7);

  v1::PolicyStatus p;
  p.set_name("no-shells");
  p.set_state("enforcing");
  auto* kill = p.add_rules();
  kill->set_kind("exec");
  kill->set_name("deny-sh");
  kill->set_action("kill");
  kill->set_mode("enforce");
  kill->set_hits(5);
  auto* audit = p.add_rules();
  audit->set_kind("exec");
  audit->set_name("watch-curl");
  audit->set_action("kill");
  audit->set_mode("audit");
  audit->set_hits(2);
  auto* xdp = p.add_rules();
  xdp->set_kind("xdp");
  xdp->set_name("flood");
  xdp->set_action("pass");
  xdp->set_mode("enforce");
  xdp->set_rate_limited(true);
  xdp->set_packets(1000);
  xdp->set_bytes(64000);
  xdp->set_limited_packets(9000);
  xdp->set_limited_bytes(576000);
  snap.policies.push_back(p);
  snap.hasPolicies = true;

  snap.hasTraffic = true;
  addRow(snap.traffic, "", "", 10, 20);                 // the host
  addRow(snap.traffic, "shop", "cart-1", 1000, 3000);
  addRow(snap.traffic, "shop", "cart-1", 500, 0);       // a second container of the pod
  addRow(snap.traffic, "web", "front-1", 200, 100);
  addRow(snap.traffic, "web", "", 7, 7)->mutable_workload()->set_pod_uid("gone");  // no name
  // Deleted: its names are known (cached) but its directory is gone.
  addRow(snap.traffic, "web", "old-1", 9, 9);
  snap.livePods = {"uid-shop-cart-1", "uid-web-front-1"};
  return snap;
}

TEST(Metrics, NamesLabelsAndValues) {
  std::string text = render(sample());
  EXPECT_TRUE(hasLine(text, "# TYPE vigil_events_total counter")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_events_total{type=\"exec\"} 120")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_events_lost_total{type=\"exec\"} 3")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_events_total{type=\"flow\"} 42")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_events_lost_total{type=\"flow\"} 4")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_kernel_drops_total{reason=\"NO_SOCKET\"} 7")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_ring_buffer_used_bytes{ring=\"events\"} 512")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_ring_buffer_size_bytes{ring=\"events\"} 8388608")) << text;
  EXPECT_TRUE(hasLine(text,
                      "vigil_exec_policy_actions_total{policy=\"no-shells\",rule=\"deny-sh\","
                      "action=\"kill\"} 5"))
      << text;
  EXPECT_TRUE(hasLine(text,
                      "vigil_exec_policy_actions_total{policy=\"no-shells\",rule=\"watch-curl\","
                      "action=\"audit\"} 2"))
      << text;
  EXPECT_TRUE(hasLine(
      text, "vigil_xdp_packets_total{policy=\"no-shells\",rule=\"flood\",action=\"pass\"} 1000"))
      << text;
  EXPECT_TRUE(hasLine(text,
                      "vigil_xdp_bytes_total{policy=\"no-shells\",rule=\"flood\","
                      "action=\"rate_limit\"} 576000"))
      << text;
  EXPECT_TRUE(hasLine(text, "vigil_policies{state=\"enforcing\"} 1")) << text;
  // A pod's containers are summed; the host and a deleted pod have no pod series.
  EXPECT_TRUE(hasLine(text,
                      "vigil_network_bytes_total{namespace=\"shop\",pod=\"cart-1\","
                      "direction=\"ingress\"} 1500"))
      << text;
  EXPECT_TRUE(hasLine(text,
                      "vigil_network_packets_total{namespace=\"web\",pod=\"front-1\","
                      "direction=\"egress\"} 1"))
      << text;
  EXPECT_EQ(text.find("pod=\"\""), std::string::npos) << text;
  EXPECT_EQ(text.find("old-1"), std::string::npos) << text;
  EXPECT_TRUE(hasLine(text, "vigil_node_network_bytes_total{direction=\"ingress\"} 1726")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_metrics_pods{series=\"own\"} 2")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_agent_cpu_seconds_total{mode=\"user\"} 1.5")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_agent_resident_memory_bytes 4096")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_build_info{version=\"0.1.0\",node=\"node-a\",kernel=\"\"} 1"))
      << text;
  // Every counter ends in _total, and each family has one header.
  size_t pos = 0;
  while ((pos = text.find("# TYPE ", pos)) != std::string::npos) {
    auto end = text.find('\n', pos);
    std::string line = text.substr(pos, end - pos);
    if (line.ends_with(" counter")) {
      EXPECT_NE(line.find("_total counter"), std::string::npos) << line;
    }
    pos = end;
  }
  EXPECT_EQ(text.find("# TYPE vigil_xdp_packets_total"),
            text.rfind("# TYPE vigil_xdp_packets_total"));
}

TEST(Metrics, WhatIsNotRunningHasNoSeries) {
  MetricsSnapshot snap = sample();
  snap.status.mutable_flows()->set_state("unavailable: no tc");
  snap.hasTraffic = false;  // cgroup_skb not attached
  snap.hasPolicies = false;  // the policy list could not be read
  std::string text = render(snap);
  for (const char* name : {"vigil_flow_table", "type=\"flow\"", "vigil_node_network",
                           "vigil_network_bytes", "vigil_policies", "vigil_exec_policy"}) {
    EXPECT_EQ(text.find(name), std::string::npos) << name << "\n" << text;
  }
}

TEST(Metrics, PodSeriesAreCappedAndTheRestSummed) {
  MetricsSnapshot snap;
  snap.hasTraffic = true;
  for (int i = 0; i < 5; i++) {
    addRow(snap.traffic, "ns", "p" + std::to_string(i), 100 * (i + 1), 0);
    snap.livePods.insert("uid-ns-p" + std::to_string(i));
  }
  TrafficTotals traffic;
  std::string text = render(snap, traffic, 2);
  // The first two pods seen keep their series; p2..p4 (300+400+500) are summed.
  EXPECT_TRUE(hasLine(
      text, "vigil_network_bytes_total{namespace=\"ns\",pod=\"p0\",direction=\"ingress\"} 100"));
  EXPECT_TRUE(hasLine(
      text, "vigil_network_bytes_total{namespace=\"ns\",pod=\"p1\",direction=\"ingress\"} 200"));
  EXPECT_EQ(text.find("pod=\"p2\""), std::string::npos) << text;
  EXPECT_TRUE(hasLine(text,
                      "vigil_network_bytes_total{namespace=\"_other\",pod=\"_other\","
                      "direction=\"ingress\"} 1200"))
      << text;
  EXPECT_TRUE(hasLine(text, "vigil_metrics_pods{series=\"own\"} 2")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_metrics_pods{series=\"other\"} 3")) << text;

  // Busier pods do not take a series away: the same two keep theirs on the next scrape.
  snap.traffic.mutable_rows(4)->mutable_ingress()->set_bytes(100000);
  text = render(snap, traffic, 2);
  EXPECT_TRUE(hasLine(
      text, "vigil_network_bytes_total{namespace=\"ns\",pod=\"p0\",direction=\"ingress\"} 100"));
  EXPECT_TRUE(hasLine(text,
                      "vigil_network_bytes_total{namespace=\"_other\",pod=\"_other\","
                      "direction=\"ingress\"} 100700"))
      << text;

  // p0 is deleted: its series goes and the next live pod seen takes its place.
  snap.livePods.erase("uid-ns-p0");
  snap.traffic.mutable_rows(2)->mutable_ingress()->set_bytes(350);
  text = render(snap, traffic, 2);
  EXPECT_EQ(text.find("pod=\"p0\""), std::string::npos) << text;
  EXPECT_TRUE(hasLine(text, "vigil_metrics_pods{series=\"own\"} 1")) << text;
  EXPECT_TRUE(hasLine(text, "vigil_metrics_pods{series=\"other\"} 3")) << text;
}

TEST(Metrics, CountersNeverGoDownWhenTheKernelTableForgetsRows) {
  MetricsSnapshot snap;
  snap.hasTraffic = true;
  addRow(snap.traffic, "", "", 1000, 10);  // host
  addRow(snap.traffic, "shop", "cart-1", 500, 50);
  snap.livePods = {"uid-shop-cart-1"};
  TrafficTotals traffic;
  render(snap, traffic);
  EXPECT_EQ(traffic.node().bytes[0], 1500);

  // The host row is evicted from the LRU table; the pod's grows.
  snap.traffic.mutable_rows()->DeleteSubrange(0, 1);
  snap.traffic.mutable_rows(0)->mutable_ingress()->set_bytes(800);
  std::string text = render(snap, traffic);
  EXPECT_EQ(traffic.node().bytes[0], 1800);
  EXPECT_TRUE(hasLine(text,
                      "vigil_network_bytes_total{namespace=\"shop\",pod=\"cart-1\","
                      "direction=\"ingress\"} 800"))
      << text;

  // The pod's row is evicted and made again, from zero: what it counts now is added.
  snap.traffic.mutable_rows(0)->mutable_ingress()->set_bytes(30);
  text = render(snap, traffic);
  EXPECT_EQ(traffic.node().bytes[0], 1830);
  EXPECT_TRUE(hasLine(text,
                      "vigil_network_bytes_total{namespace=\"shop\",pod=\"cart-1\","
                      "direction=\"ingress\"} 830"))
      << text;
}

TEST(Metrics, SelfUsageFromProc) {
  SelfUsage u = readSelfUsage();
  EXPECT_GT(u.residentBytes, 0);
  EXPECT_GE(u.threads, 1);
  EXPECT_GT(u.openFds, 2);
  EXPECT_GT(u.startTimeSeconds, 1.6e9);
}

std::string httpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  (void)!::write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST(MetricsServer, ServesTheSnapshotOverHttp) {
  int scrapes = 0;
  auto server = MetricsServer::start(
      "127.0.0.1:0",
      [&] {
        scrapes++;
        return sample();
      },
      {});
  ASSERT_TRUE(server.ok()) << server.error().message();
  ASSERT_GT((*server)->port(), 0);
  std::string response = httpGet((*server)->port(), "/metrics");
  EXPECT_NE(response.find("200 OK"), std::string::npos) << response;
  EXPECT_NE(response.find("\nvigil_events_total{type=\"exec\"} 120\n"), std::string::npos)
      << response;
  EXPECT_EQ(scrapes, 1);
  // A second server on the same port is refused with the address in the message.
  auto again = MetricsServer::start("127.0.0.1:" + std::to_string((*server)->port()),
                                    [] { return MetricsSnapshot(); }, {});
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message().find("serve metrics on 127.0.0.1:"), std::string::npos);
}

}  // namespace
}  // namespace vigil::api
