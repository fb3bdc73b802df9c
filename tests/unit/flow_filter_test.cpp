// GetFlows filters: every field, OR inside a field, AND across fields, exclude, CIDRs of both
// families, time bounds, and the values and combinations that are rejected.
#include "events/flow_filter.hpp"

#include <gtest/gtest.h>

#include <string>

namespace vigil::events {
namespace {

v1::Event flowEvent(const std::string& src, uint32_t sport, const std::string& dst, uint32_t dport,
                    const std::string& protocol = "tcp") {
  v1::Event ev;
  ev.set_type(v1::EVENT_TYPE_FLOW);
  ev.mutable_time()->set_seconds(100);
  auto* f = ev.mutable_flow();
  f->set_event_type(v1::FLOW_NEW);
  f->set_verdict(v1::FORWARDED);
  f->set_protocol(protocol);
  f->mutable_source()->set_ip(src);
  f->mutable_source()->set_port(sport);
  f->mutable_destination()->set_ip(dst);
  f->mutable_destination()->set_port(dport);
  f->set_interface("eth0");
  return ev;
}

v1::Event sample() { return flowEvent("10.0.0.1", 40000, "192.0.2.10", 443); }

FlowFilter filterOf(const v1::GetFlowsRequest& req) {
  auto f = FlowFilter::fromRequest(req);
  EXPECT_TRUE(f.ok()) << f.error().context();
  return f.ok() ? f.value() : FlowFilter::fromRequest({}).value();
}

// The error for a request, or "" when it was accepted.
std::string errorOf(const v1::GetFlowsRequest& req) {
  auto f = FlowFilter::fromRequest(req);
  return f.ok() ? "" : f.error().context();
}

TEST(FlowFilter, EmptyMatchesEveryFlowAndLostAlwaysPasses) {
  auto f = filterOf({});
  EXPECT_TRUE(f.matches(sample()));
  v1::GetFlowsRequest req;
  req.mutable_include()->add_port(1);
  v1::Event lost;
  lost.set_type(v1::EVENT_TYPE_LOST);
  EXPECT_TRUE(filterOf(req).matches(lost));
  v1::Event exec;
  exec.set_type(v1::EVENT_TYPE_EXEC);
  EXPECT_FALSE(f.matches(exec)) << "a flow hub carries flows only";
}

TEST(FlowFilter, IpEitherSideSourceAndDestination) {
  v1::GetFlowsRequest either;
  either.mutable_include()->add_ip("192.0.2.10");
  EXPECT_TRUE(filterOf(either).matches(sample()));
  EXPECT_TRUE(filterOf(either).matches(flowEvent("192.0.2.10", 443, "10.0.0.1", 40000)));
  EXPECT_FALSE(filterOf(either).matches(flowEvent("10.0.0.2", 1, "10.0.0.3", 2)));

  v1::GetFlowsRequest src;
  src.mutable_include()->add_source_ip("10.0.0.0/24");
  EXPECT_TRUE(filterOf(src).matches(sample()));
  EXPECT_FALSE(filterOf(src).matches(flowEvent("192.0.2.10", 443, "10.0.0.1", 40000)));

  v1::GetFlowsRequest dst;
  dst.mutable_include()->add_destination_ip("192.0.2.0/25");
  EXPECT_TRUE(filterOf(dst).matches(sample()));
  EXPECT_FALSE(filterOf(dst).matches(flowEvent("192.0.2.10", 443, "192.0.2.200", 1)));
}

TEST(FlowFilter, CidrFamilies) {
  v1::GetFlowsRequest v4;
  v4.mutable_include()->add_ip("10.0.0.0/8");
  auto f4 = filterOf(v4);
  EXPECT_TRUE(f4.matches(flowEvent("10.200.1.1", 1, "192.0.2.1", 2)));
  EXPECT_FALSE(f4.matches(flowEvent("11.0.0.1", 1, "192.0.2.1", 2)));
  // IPv4-mapped IPv6 addresses are IPv4 addresses; other IPv6 addresses are not.
  EXPECT_TRUE(f4.matches(flowEvent("::ffff:10.1.2.3", 1, "::ffff:192.0.2.1", 2)));
  EXPECT_FALSE(f4.matches(flowEvent("::a00:1", 1, "2001:db8::1", 2)));

  v1::GetFlowsRequest v6;
  v6.mutable_include()->add_ip("2001:db8::/32");
  auto f6 = filterOf(v6);
  EXPECT_TRUE(f6.matches(flowEvent("2001:db8:1::5", 1, "2001:4860::1", 2)));
  EXPECT_FALSE(f6.matches(flowEvent("2001:db9::5", 1, "2001:4860::1", 2)));
  EXPECT_FALSE(f6.matches(sample()));

  v1::GetFlowsRequest all6;
  all6.mutable_include()->add_ip("::/0");
  EXPECT_FALSE(filterOf(all6).matches(sample())) << "::/0 means every IPv6 flow";
  EXPECT_TRUE(filterOf(all6).matches(flowEvent("fe80::1", 1, "fe80::2", 2)));

  v1::GetFlowsRequest all4;
  all4.mutable_include()->add_ip("0.0.0.0/0");
  EXPECT_TRUE(filterOf(all4).matches(sample()));
  EXPECT_FALSE(filterOf(all4).matches(flowEvent("fe80::1", 1, "fe80::2", 2)));

  v1::GetFlowsRequest odd;
  odd.mutable_include()->add_ip("10.0.0.0/9");
  EXPECT_TRUE(filterOf(odd).matches(flowEvent("10.127.255.255", 1, "1.1.1.1", 2)));
  EXPECT_FALSE(filterOf(odd).matches(flowEvent("10.128.0.0", 1, "1.1.1.1", 2)));
}

TEST(FlowFilter, Ports) {
  v1::GetFlowsRequest either;
  either.mutable_include()->add_port(443);
  EXPECT_TRUE(filterOf(either).matches(sample()));
  EXPECT_TRUE(filterOf(either).matches(flowEvent("192.0.2.10", 443, "10.0.0.1", 40000)));
  v1::GetFlowsRequest src;
  src.mutable_include()->add_source_port(443);
  EXPECT_FALSE(filterOf(src).matches(sample()));
  src.mutable_include()->add_source_port(40000);
  EXPECT_TRUE(filterOf(src).matches(sample()));
  v1::GetFlowsRequest dst;
  dst.mutable_include()->add_destination_port(40000);
  EXPECT_FALSE(filterOf(dst).matches(sample()));
  dst.mutable_include()->set_destination_port(0, 443);
  EXPECT_TRUE(filterOf(dst).matches(sample()));
}

TEST(FlowFilter, ProtocolIcmpMatchesIcmpv6) {
  v1::GetFlowsRequest icmp;
  icmp.mutable_include()->add_protocol("icmp");
  EXPECT_TRUE(filterOf(icmp).matches(flowEvent("10.0.0.1", 0, "10.0.0.2", 0, "icmp")));
  EXPECT_TRUE(filterOf(icmp).matches(flowEvent("fe80::1", 0, "fe80::2", 0, "icmpv6")));
  EXPECT_FALSE(filterOf(icmp).matches(sample()));
  v1::GetFlowsRequest v6only;
  v6only.mutable_include()->add_protocol("icmpv6");
  EXPECT_FALSE(filterOf(v6only).matches(flowEvent("10.0.0.1", 0, "10.0.0.2", 0, "icmp")));
  v1::GetFlowsRequest udp;
  udp.mutable_include()->add_protocol("udp");
  udp.mutable_include()->add_protocol("tcp");
  EXPECT_TRUE(filterOf(udp).matches(sample()));
}

TEST(FlowFilter, VerdictAndType) {
  v1::Event drop = sample();
  drop.mutable_flow()->set_event_type(v1::FLOW_DROP);
  drop.mutable_flow()->set_verdict(v1::DROPPED);

  v1::GetFlowsRequest dropped;
  dropped.mutable_include()->add_verdict(v1::DROPPED);
  EXPECT_TRUE(filterOf(dropped).matches(drop));
  EXPECT_FALSE(filterOf(dropped).matches(sample()));

  v1::GetFlowsRequest drops;
  drops.mutable_include()->add_type("drop");
  EXPECT_TRUE(filterOf(drops).matches(drop));
  EXPECT_FALSE(filterOf(drops).matches(sample()));

  v1::GetFlowsRequest flows;
  flows.mutable_include()->add_type("flow");
  EXPECT_FALSE(filterOf(flows).matches(drop));
  for (auto type : {v1::FLOW_NEW, v1::FLOW_UPDATE, v1::FLOW_END}) {
    v1::Event ev = sample();
    ev.mutable_flow()->set_event_type(type);
    EXPECT_TRUE(filterOf(flows).matches(ev)) << type;
  }
}

TEST(FlowFilter, TcpFlagSetsNeedEveryFlagInEitherDirection) {
  v1::Event ev = sample();
  ev.mutable_flow()->add_tcp_flags("SYN");
  ev.mutable_flow()->add_tcp_flags("ACK");
  ev.mutable_flow()->add_reply_tcp_flags("RST");

  v1::GetFlowsRequest synRst;
  synRst.mutable_include()->add_tcp_flags("SYN,RST");
  EXPECT_TRUE(filterOf(synRst).matches(ev));

  v1::GetFlowsRequest fin;
  fin.mutable_include()->add_tcp_flags("syn,fin");  // any case
  EXPECT_FALSE(filterOf(fin).matches(ev));
  fin.mutable_include()->add_tcp_flags("RST");  // OR'ed with the first set
  EXPECT_TRUE(filterOf(fin).matches(ev));
}

TEST(FlowFilter, ProcessFieldsMatchEitherEndpoint) {
  v1::Event ev = sample();
  auto* src = ev.mutable_flow()->mutable_source();
  src->set_pid(1234);
  src->set_binary("/usr/bin/curl");
  src->set_cgroup_id(77);
  src->set_cgroup_path("/system.slice/ssh.service");
  auto* dst = ev.mutable_flow()->mutable_destination();
  dst->set_pid(99);
  dst->set_binary("/usr/sbin/nginx");

  auto matchesWith = [&](auto set) {
    v1::GetFlowsRequest req;
    set(req.mutable_include());
    return filterOf(req).matches(ev);
  };
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_pid(1234); }));
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_pid(99); }));
  EXPECT_FALSE(matchesWith([](v1::FlowFilter* f) { f->add_pid(5); }));
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_binary("/usr/sbin/nginx"); }));
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_binary("/usr/bin/"); }));
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_binary("/usr/bin/cu*"); }));
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_binary("*"); }));
  EXPECT_FALSE(matchesWith([](v1::FlowFilter* f) { f->add_binary("/usr/bin/cur"); }));
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_cgroup("/system.slice"); }));
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_cgroup("/system.slice/"); }));
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_cgroup("/"); }));
  EXPECT_FALSE(matchesWith([](v1::FlowFilter* f) { f->add_cgroup("/system.sli"); }))
      << "a cgroup prefix ends at a path component";
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_cgroup("77"); }));
  EXPECT_FALSE(matchesWith([](v1::FlowFilter* f) { f->add_cgroup("78"); }));
  EXPECT_TRUE(matchesWith([](v1::FlowFilter* f) { f->add_interface("eth0"); }));
  EXPECT_FALSE(matchesWith([](v1::FlowFilter* f) { f->add_interface("eth"); }));

  v1::Event unattributed = sample();
  EXPECT_FALSE(filterOf([] {
                 v1::GetFlowsRequest r;
                 r.mutable_include()->add_binary("*");
                 return r;
               }())
                   .matches(unattributed))
      << "a flow without a process has no binary";
}

TEST(FlowFilter, PodsAndNamespaces) {
  v1::Event ev = sample();
  auto* src = ev.mutable_flow()->mutable_source()->mutable_workload();
  src->set_kind("pod");
  src->set_namespace_("shop");
  src->set_pod("cart-1");
  ev.mutable_flow()->mutable_destination()->mutable_workload()->set_kind("host");
  auto with = [](auto add) {
    v1::GetFlowsRequest req;
    add(*req.mutable_include());
    return req;
  };
  EXPECT_TRUE(filterOf(with([](auto& f) { f.add_pod("shop/cart-1"); })).matches(ev));
  EXPECT_TRUE(filterOf(with([](auto& f) { f.add_pod("cart-1"); })).matches(ev));
  EXPECT_FALSE(filterOf(with([](auto& f) { f.add_pod("web/cart-1"); })).matches(ev));
  EXPECT_TRUE(filterOf(with([](auto& f) { f.add_source_pod("shop/cart-1"); })).matches(ev));
  EXPECT_FALSE(filterOf(with([](auto& f) { f.add_destination_pod("cart-1"); })).matches(ev));
  EXPECT_TRUE(filterOf(with([](auto& f) { f.add_namespace_("shop"); })).matches(ev));
  EXPECT_FALSE(filterOf(with([](auto& f) { f.add_namespace_("kube-system"); })).matches(ev));
  // A host process is in no pod, whatever its names say.
  src->set_kind("host");
  EXPECT_FALSE(filterOf(with([](auto& f) { f.add_pod("cart-1"); })).matches(ev));
  EXPECT_EQ(errorOf(with([](auto& f) { f.add_pod("Cart"); })),
            "include.pod: 'Cart' is not a pod (NAMESPACE/POD or POD: lowercase letters, digits, "
            "'-' and '.')");
  EXPECT_NE(errorOf(with([](auto& f) { f.add_namespace_("a_b"); })).find("include.namespace: 'a_b'"),
            std::string::npos);
}

TEST(FlowFilter, ValuesOfOneFieldOrFieldsAnd) {
  v1::GetFlowsRequest req;
  req.mutable_include()->add_ip("10.0.0.9");
  req.mutable_include()->add_ip("10.0.0.1");
  req.mutable_include()->add_port(443);
  req.mutable_include()->add_protocol("tcp");
  auto f = filterOf(req);
  EXPECT_TRUE(f.matches(sample()));
  EXPECT_FALSE(f.matches(flowEvent("10.0.0.1", 40000, "192.0.2.10", 80)));
  EXPECT_FALSE(f.matches(flowEvent("10.0.0.1", 40000, "192.0.2.10", 443, "udp")));
  EXPECT_TRUE(f.matches(flowEvent("10.0.0.9", 40000, "192.0.2.10", 443)));
}

TEST(FlowFilter, ExcludeRejectsAnyValueOfAnyField) {
  v1::GetFlowsRequest req;
  req.mutable_include()->add_protocol("tcp");
  req.mutable_exclude()->add_ip("10.0.0.1");
  req.mutable_exclude()->add_port(22);
  auto f = filterOf(req);
  EXPECT_FALSE(f.matches(sample()));
  EXPECT_FALSE(f.matches(flowEvent("10.0.0.2", 22, "10.0.0.3", 40000)));
  EXPECT_TRUE(f.matches(flowEvent("10.0.0.2", 40000, "10.0.0.3", 443)));
  EXPECT_FALSE(f.matches(flowEvent("10.0.0.2", 40000, "10.0.0.3", 53, "udp")));

  // --not --ip 10.0.0.1 --ip 10.0.0.2: .2 only, never .1.
  v1::GetFlowsRequest mixed;
  mixed.mutable_include()->add_ip("10.0.0.2");
  mixed.mutable_exclude()->add_ip("10.0.0.1");
  EXPECT_TRUE(filterOf(mixed).matches(flowEvent("10.0.0.2", 1, "10.0.0.3", 2)));
  EXPECT_FALSE(filterOf(mixed).matches(flowEvent("10.0.0.2", 1, "10.0.0.1", 2)));
}

TEST(FlowFilter, SinceInclusiveUntilExclusive) {
  v1::GetFlowsRequest req;
  req.mutable_since()->set_seconds(100);
  req.mutable_until()->set_seconds(200);
  auto f = filterOf(req);
  auto at = [](int64_t s) {
    v1::Event ev = sample();
    ev.mutable_time()->set_seconds(s);
    return ev;
  };
  EXPECT_FALSE(f.matches(at(99)));
  EXPECT_TRUE(f.matches(at(100)));
  EXPECT_TRUE(f.matches(at(199)));
  EXPECT_FALSE(f.matches(at(200)));
}

TEST(FlowFilter, BadValuesNameTheirField) {
  struct Case {
    std::function<void(v1::GetFlowsRequest&)> set;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.mutable_include()->add_ip("10.0.0.300"); },
       "include.ip: '10.0.0.300' is not an IPv4 or IPv6 address block"},
      {[](auto& r) { r.mutable_include()->add_source_ip("10.0.0.1/33"); },
       "include.source_ip: '10.0.0.1/33' has an invalid prefix length"},
      {[](auto& r) { r.mutable_exclude()->add_destination_ip("10.0.0.1/8"); },
       "exclude.destination_ip: '10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?"},
      {[](auto& r) { r.mutable_include()->add_ip("2001:db8::/129"); },
       "include.ip: '2001:db8::/129'"},
      {[](auto& r) { r.mutable_include()->add_port(0); },
       "include.port: 0 is not a port (allowed: 1-65535)"},
      {[](auto& r) { r.mutable_include()->add_source_port(65536); }, "include.source_port: 65536"},
      {[](auto& r) { r.mutable_exclude()->add_destination_port(70000); },
       "exclude.destination_port: 70000"},
      {[](auto& r) { r.mutable_include()->add_protocol("sctp"); },
       "include.protocol: 'sctp' is not a protocol"},
      {[](auto& r) { r.mutable_include()->add_verdict(v1::VERDICT_UNSPECIFIED); },
       "include.verdict: 0 is not a verdict"},
      {[](auto& r) { r.mutable_include()->add_verdict(static_cast<v1::Verdict>(9)); },
       "include.verdict: 9"},
      {[](auto& r) { r.mutable_include()->add_type("exec"); },
       "include.type: 'exec' is not a flow event type (allowed: flow, drop)"},
      {[](auto& r) { r.mutable_include()->add_tcp_flags("SYN,BOGUS"); },
       "include.tcp_flags: 'SYN,BOGUS' has unknown flag 'BOGUS'"},
      {[](auto& r) { r.mutable_include()->add_tcp_flags("SYN,"); },
       "include.tcp_flags: 'SYN,' has an empty flag name"},
      {[](auto& r) { r.mutable_include()->add_pid(0); }, "include.pid: 0 matches no process"},
      {[](auto& r) { r.mutable_include()->add_binary(""); }, "include.binary: '' is not"},
      {[](auto& r) { r.mutable_include()->add_binary("curl"); }, "include.binary: 'curl' is not"},
      {[](auto& r) { r.mutable_include()->add_cgroup("system.slice"); },
       "include.cgroup: 'system.slice' is neither a cgroup path"},
      {[](auto& r) { r.mutable_include()->add_cgroup("0"); }, "include.cgroup: '0'"},
      {[](auto& r) { r.mutable_include()->add_interface(""); },
       "include.interface: '' is not an interface name"},
      {[](auto& r) {
         r.set_first(5);
         r.set_last(5);
       },
       "first: cannot be combined with last"},
      {[](auto& r) {
         r.set_first(5);
         r.set_follow(true);
       },
       "first: cannot be combined with follow"},
      {[](auto& r) {
         r.mutable_until()->set_seconds(5);
         r.set_follow(true);
       },
       "until: cannot be combined with follow"},
      {[](auto& r) {
         r.mutable_since()->set_seconds(10);
         r.mutable_until()->set_seconds(10);
       },
       "since: must be before until"},
      {[](auto& r) { r.mutable_since()->set_nanos(-1); }, "since: not a valid timestamp"},
      {[](auto& r) { r.mutable_until()->set_seconds(-1); }, "until: not a valid timestamp"},
  };
  for (const auto& c : cases) {
    v1::GetFlowsRequest req;
    c.set(req);
    const std::string error = errorOf(req);
    EXPECT_EQ(error.rfind(c.message, 0), 0u) << "got: " << error << "\nwant: " << c.message;
  }
}

}  // namespace
}  // namespace vigil::events
