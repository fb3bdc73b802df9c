#include "server/agent.hpp"

#include <cstring>

#include <fstream>

#include "k8s/workload_proto.hpp"
#include <google/protobuf/util/time_util.h>
#include <vigil/mem.h>
#include "common/mountinfo.hpp"
#include "events/accounting.hpp"

#include <net/if.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <vigil/flow.h>
#include <vigil/policy.h>
#include <vigil/records.h>
#include <vigil/stats.h>
#include <vigil/xdp.h>

#include <filesystem>
#include <limits>

#include "common/log.hpp"
#include "common/mountinfo.hpp"
#include "events/records.hpp"
#include "events/xdp_drops.hpp"

#ifndef VIGIL_VERSION
#define VIGIL_VERSION "dev"
#endif

namespace vigil::server {
namespace {

constexpr auto kLossCheckInterval = std::chrono::milliseconds(250);
constexpr size_t kMaxSpareBuffers = 4096;
constexpr auto kRecalibrateInterval = std::chrono::minutes(1);

std::string hostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

v1::EventType apiType(size_t recordType) {
  switch (recordType) {
    case VIGIL_REC_EXEC:
      return v1::EVENT_TYPE_EXEC;
    case VIGIL_REC_EXIT:
      return v1::EVENT_TYPE_EXIT;
    case VIGIL_REC_XDP_DROP:
      return v1::EVENT_TYPE_DROP;
    case VIGIL_REC_FLOW_NEW:
    case VIGIL_REC_KERNEL_DROP:
      return v1::EVENT_TYPE_FLOW;
    case VIGIL_REC_OOM_KILL:
      return v1::EVENT_TYPE_OOM_KILL;
    default:
      return v1::EVENT_TYPE_UNSPECIFIED;  // fork records: lineage only
  }
}

const char* recordName(size_t recordType) {
  switch (recordType) {
    case VIGIL_REC_EXEC:
      return "exec";
    case VIGIL_REC_EXIT:
      return "exit";
    case VIGIL_REC_FORK:
      return "fork";
    case VIGIL_REC_DENIED:
      return "denied-exec";
    case VIGIL_REC_XDP_DROP:
      return "XDP drop";
    case VIGIL_REC_FLOW_NEW:
      return "new-flow";
    case VIGIL_REC_KERNEL_DROP:
      return "kernel drop";
    case VIGIL_REC_OOM_KILL:
      return "OOM kill";
    default:
      return "unknown";
  }
}

bool isFlowRecord(size_t recordType) {
  return recordType == VIGIL_REC_FLOW_NEW || recordType == VIGIL_REC_KERNEL_DROP;
}

google::protobuf::Duration toDuration(std::chrono::steady_clock::duration d) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  google::protobuf::Duration out;
  out.set_seconds(ns / 1'000'000'000);
  out.set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  return out;
}

}  // namespace

Agent::Agent(const AgentConfig& config)
    : config_(config),
      hub_(config.eventRingSize, config.clientQueueSize),
      exits_(config.exitTableSize),
      flowHub_(config.flowEventRingSize, config.clientQueueSize) {}

Expected<std::unique_ptr<Agent>> Agent::start(const AgentConfig& config) {
  std::unique_ptr<Agent> agent(new Agent(config));
  AgentConfig& cfg = const_cast<AgentConfig&>(agent->config_);
  if (cfg.nodeName.empty()) cfg.nodeName = hostName();

  auto unixEndpoint = api::parseEndpoint(cfg.apiAddress);
  if (!unixEndpoint) return Error(EINVAL, "--api " + unixEndpoint.error().context());
  if (unixEndpoint->kind != api::Endpoint::Kind::unix_socket)
    return Error(EINVAL, "--api must be a unix:// address; use --listen for TCP");
  std::optional<api::Endpoint> tcpEndpoint;
  if (!cfg.listenAddress.empty()) {
    auto ep = api::parseEndpoint(cfg.listenAddress);
    if (!ep) return Error(EINVAL, "--listen " + ep.error().context());
    if (ep->kind != api::Endpoint::Kind::tcp)
      return Error(EINVAL, "--listen must be a tcp:// address");
    tcpEndpoint = *ep;
  }
  // Addresses are checked before anything is loaded: a typo fails at once.
  std::string healthHostPort, metricsHostPort;
  if (!cfg.healthAddress.empty()) {
    auto hp = api::parseHostPort(cfg.healthAddress);
    if (!hp) return Error(EINVAL, "--health-addr " + hp.error().context());
    healthHostPort = *hp;
  }
  if (!cfg.metricsAddress.empty()) {
    auto hp = api::parseHostPort(cfg.metricsAddress);
    if (!hp) return Error(EINVAL, "--metrics-addr " + hp.error().context());
    metricsHostPort = *hp;
  }

  bpf::installLibbpfLogger();
  agent->capabilities_ = bpf::probeKernel();
  for (const auto& c : agent->capabilities_) {
    log::info("capability " + c.name + ": " + (c.available ? "yes" : "no") + " (" + c.detail + ")");
  }
  auto has = [&](const char* name) {
    for (const auto& c : agent->capabilities_)
      if (c.name == name) return c.available;
    return false;
  };
  if (!has("btf")) return Error(ENOTSUP, "this kernel has no BTF; Vigil needs Linux 5.8+ with BTF");
  if (!has("ring_buffer")) return Error(ENOTSUP, "this kernel has no BPF ring buffer (5.8+)");
  if (!has("tp_btf"))
    return Error(ENOTSUP, "this kernel refuses tp_btf programs, which process events need");

  auto cgMount = findCgroup2Mount(cfg.procRoot + "/self/mountinfo");
  if (!cgMount) log::warn("no cgroup2 mount found: events will carry cgroup ids without paths");
  agent->cgroups_ = std::make_unique<events::CgroupPaths>(cgMount.value_or(""), cfg.procRoot);
  agent->workloads_ =
      std::make_unique<k8s::WorkloadResolver>(cfg.podLogDir, cfg.containerLogDir, cfg.procRoot);
  log::info("pod metadata: " + agent->workloads_->state());
  agent->tracker_ = std::make_unique<events::ProcessTracker>(
      events::TrackerOptions{cfg.nodeName, cfg.processTableSize, 32, agent->workloads_.get()},
      events::Clock(), agent->cgroups_.get());

  // Attach first, then seed: a process that starts in between is seen by both, and the
  // kernel's record simply replaces the /proc entry.
  uint64_t wakeup = std::min<uint64_t>(cfg.wakeupBytes, cfg.ringBufferBytes / 4);
  bool useLsm = has("bpf_lsm");
  auto skel = bpf::Skeleton::create({cfg.ringBufferBytes, wakeup, useLsm});
  if (!skel) return skel.error();
  agent->skel_ = std::move(skel.value());
  size_t seeded = agent->tracker_->seedFromProc(cfg.procRoot);
  log::info("process table seeded with " + std::to_string(seeded) + " processes from " +
            cfg.procRoot);

  Agent* self = agent.get();
  // Exec policy: SIGKILL from the exec tracepoint. BPF-LSM would deny the exec with EPERM
  // instead, but Vigil only uses it where the kernel runs BPF-LSM programs.
  std::string lsmDetail = "not probed";
  for (const auto& c : agent->capabilities_)
    if (c.name == "bpf_lsm") lsmDetail = c.detail;
  agent->enforcement_ =
      useLsm ? "lsm (exec denied with EPERM in bprm_check_security; SIGKILL from "
               "tp_btf/sched_process_exec as a backstop)"
             : "sigkill (SIGKILL from tp_btf/sched_process_exec, before the new program runs); "
               "bpf_lsm unavailable: " +
                   lsmDetail;
  log::info("exec policy enforcement: " + agent->enforcement_);
  if (auto s = agent->startXdp(); !s) return s.error();
  agent->startFlows();
  agent->startMem();
  agent->policies_ = std::make_unique<policy::PolicyStore>(
      policy::hostResolver(),
      [self](const policy::CompiledRules& rules, const std::vector<uint32_t>& fresh) {
        return self->skel_->applyExecRules(rules, fresh);
      },
      policy::hostXdpResolver(),
      [self](const policy::CompiledXdp& rules, const std::vector<uint32_t>& fresh) {
        return self->applyXdp(rules, fresh);
      });
  if (agent->xdp_ && agent->xdp_->adopted()) {
    std::vector<std::tuple<std::string, std::string, uint32_t>> slots;
    for (const auto& a : agent->xdp_->adoptedSlots()) slots.emplace_back(a.policy, a.rule, a.slot);
    agent->policies_->adoptXdpSlots(slots);
  }
  std::error_code dirError;
  if (!std::filesystem::is_directory(cfg.policyDir, dirError)) {
    log::info("policy directory " + cfg.policyDir +
              " does not exist (yet): no file policies; it is watched and read once it appears");
  }
  agent->policies_->syncDirectory(cfg.policyDir);
  for (const auto& p : agent->policies_->list()) {
    if (p.error.empty()) {
      log::info("policy " + p.name + " from " + p.source + " in force");
    } else {
      log::error("policy " + p.name + " from " + p.source + " rejected: " + p.error);
    }
  }

  // One reader per ring buffer, all feeding the one decoder queue.
  auto readRing = [&](int mapFd, std::unique_ptr<bpf::RingReader>* out) -> Status {
    auto reader = bpf::RingReader::create(
        mapFd, [self](std::span<const uint8_t> r) { self->onRecord(r); },
        [self] { self->queueReady_.notify_one(); }, std::chrono::milliseconds(cfg.drainIntervalMs));
    if (!reader) return reader.error();
    *out = std::move(reader.value());
    return {};
  };
  if (auto s = readRing(agent->skel_->eventsMapFd(), &agent->reader_); !s) return s.error();
  if (agent->xdp_) {
    if (auto s = readRing(agent->xdp_->eventsMapFd(), &agent->xdpReader_); !s) return s.error();
  }
  if (agent->flow_) {
    if (auto s = readRing(agent->flow_->ringFd(), &agent->flowReader_); !s) return s.error();
  }
  if (agent->mem_ && agent->mem_->oomRingFd() >= 0) {
    if (auto s = readRing(agent->mem_->oomRingFd(), &agent->memReader_); !s) return s.error();
  }

  api::PolicyHooks hooks{agent->policies_.get(), [self] { return self->ruleHits(); },
                         agent->enforcement_, [self] { return self->xdpCounters(); }};
  api::FlowHooks flowHooks;
  if (agent->flow_) {
    flowHooks.hub = &agent->flowHub_;
    flowHooks.traffic = [self](const v1::GetTrafficRequest& r) { return self->traffic(r); };
  }
  agent->service_ = std::make_unique<api::VigilService>(
      agent->hub_, [self] { return self->status(); }, hooks, flowHooks,
      [self](const v1::GetAccountingRequest& r) { return self->accounting(r); });
  auto server = api::ApiServer::start(*unixEndpoint, tcpEndpoint, agent->service_.get());
  if (!server) return server.error();
  agent->server_ = std::move(server.value());
  agent->apiDescription_ = cfg.apiAddress;
  if (tcpEndpoint) agent->apiDescription_ += " and " + cfg.listenAddress;
  if (!healthHostPort.empty()) {
    if (auto s = agent->server_->startHealthOnly(healthHostPort); !s) return s.error();
    std::string where = healthHostPort.substr(0, healthHostPort.rfind(':')) + ":" +
                        std::to_string(agent->server_->healthPort());
    {
      std::lock_guard lock(agent->descriptionMutex_);  // GetStatus is served already
      agent->healthDescription_ = where;
    }
    log::info("gRPC health (alone) on " + where);
  }
  if (!metricsHostPort.empty()) {
    auto metrics = api::MetricsServer::start(
        metricsHostPort, [self] { return self->metricsSnapshot(); }, {cfg.metricsMaxPods});
    if (!metrics) return metrics.error();
    agent->metrics_ = std::move(metrics.value());
    auto colon = metricsHostPort.rfind(':');
    std::string where = "http://" + metricsHostPort.substr(0, colon) + ":" +
                        std::to_string(agent->metrics_->port()) + "/metrics";
    {
      std::lock_guard lock(agent->descriptionMutex_);
      agent->metricsDescription_ = where;
    }
    log::info("Prometheus metrics on " + where);
  }

  if (!cfg.exportFile.empty()) {
    api::JsonExportOptions eo;
    eo.path = cfg.exportFile;
    eo.maxBytes = cfg.exportMaxBytes;
    eo.maxFiles = cfg.exportMaxFiles;
    eo.types = cfg.exportTypes;
    eo.namespaces = cfg.exportNamespaces;
    eo.pods = cfg.exportPods;
    auto exporter = api::JsonExporter::start(
        eo, {&agent->hub_, agent->flow_ ? &agent->flowHub_ : nullptr});
    if (!exporter) return exporter.error();
    agent->exporter_ = std::move(exporter.value());
    log::info("exporting events as JSON lines to " + cfg.exportFile + " (rotated at " +
              std::to_string(cfg.exportMaxBytes) + " bytes, " +
              std::to_string(cfg.exportMaxFiles) + " rotated files kept)");
  }
  agent->processor_ = std::thread([self] { self->processLoop(); });
  agent->policyThread_ = std::thread([self] { self->policyLoop(); });
  agent->reader_->start();
  if (agent->xdpReader_) agent->xdpReader_->start();
  if (agent->flowReader_) agent->flowReader_->start();
  if (agent->memReader_) agent->memReader_->start();
  for (const auto& p : agent->skel_->programs()) {
    log::info("attached " + p.name + " (" + p.type + "/" + p.attachTo + ", id " +
              std::to_string(p.id) + ")");
  }
  log::info("vigil-agent " VIGIL_VERSION " ready on node " + cfg.nodeName + ", API on " +
            agent->apiDescription_);
  return agent;
}

Agent::~Agent() { stop(); }

void Agent::stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lock(policyMutex_);
    policyStop_ = true;
  }
  policyWake_.notify_all();
  if (policyThread_.joinable()) policyThread_.join();
  // No scrape or probe runs past this point: both read state that is torn down below.
  metrics_.reset();
  if (server_) server_->stopHealth();
  if (reader_) reader_->stop();
  if (xdpReader_) xdpReader_->stop();
  if (flowReader_) flowReader_->stop();
  if (memReader_) memReader_->stop();
  {
    std::lock_guard lock(queueMutex_);
    stopping_ = true;
  }
  queueReady_.notify_all();
  if (processor_.joinable()) processor_.join();
  // Every decoded event is published now: the export file gets all of them.
  if (exporter_) {
    auto st = exporter_->stats();
    {
      std::lock_guard lock(exporterMutex_);  // GetStatus may be reading its stats
      exporter_.reset();
    }
    log::info("JSON export: " + std::to_string(st.lines) + " lines written to " +
              config_.exportFile + " and its rotations");
  }
  hub_.close();  // ends following streams, so the server can shut down promptly
  flowHub_.close();
  if (server_) server_->shutdown();
  reader_.reset();
  xdpReader_.reset();
  flowReader_.reset();
  memReader_.reset();
  mem_.reset();
  {
    std::lock_guard lock(flowMutex_);
    flow_.reset();  // closes its tcx, cgroup and tracepoint links; removes legacy tc filters
  }
  skel_.reset();  // detaches every program, frees every map
  {
    std::lock_guard lock(xdpMutex_);
    if (xdp_ && !xdp_->attachments().empty()) {
      log::info("XDP enforcement stays in force on " + std::to_string(xdp_->attachments().size()) +
                " interface(s), pinned under " + config_.pinDir +
                " (vigil-agent --cleanup removes it)");
    }
    xdp_.reset();
  }
  log::info("stopped: process event programs detached");
}

void Agent::onRecord(std::span<const uint8_t> raw) {
  size_t type = typeIndex(events::peekType(raw));
  std::lock_guard lock(queueMutex_);
  if (queue_.size() >= config_.recordQueueSize) {
    agentDropped_[type]++;
    return;
  }
  if (spare_.empty()) {
    queue_.emplace_back(raw.begin(), raw.end());
  } else {
    queue_.push_back(std::move(spare_.back()));
    spare_.pop_back();
    queue_.back().assign(raw.begin(), raw.end());
  }
}

void Agent::processLoop() {
  std::deque<std::vector<uint8_t>> batch;
  auto nextLossCheck = std::chrono::steady_clock::now();
  auto nextRecalibration = nextLossCheck + kRecalibrateInterval;
  const auto scanInterval = std::chrono::milliseconds(config_.flowScanIntervalMs);
  auto nextScan = nextLossCheck + scanInterval;
  size_t malformedLogged = 0;
  for (;;) {
    {
      std::unique_lock lock(queueMutex_);
      queueReady_.wait_for(lock, std::min<std::chrono::steady_clock::duration>(kLossCheckInterval, scanInterval),
                           [&] { return stopping_ || !queue_.empty(); });
      if (stopping_ && queue_.empty()) break;
      batch.swap(queue_);
    }
    for (const auto& raw : batch) {
      size_t type = typeIndex(events::peekType(raw));
      if (type == VIGIL_REC_XDP_DROP) {
        publishDrop(raw);
        continue;
      }
      if (isFlowRecord(type)) {
        publishFlow(raw);
        continue;
      }
      if (type == VIGIL_REC_OOM_KILL) {
        publishOom(raw);
        continue;
      }
      auto record = events::decode(raw);
      if (!record) {
        malformed_[type]++;
        if (malformedLogged++ < 10) log::warn(record.error().message());
        continue;
      }
      seen_[type]++;
      auto made = tracker_->onRecord(*record);
      if (!made) continue;
      if (made->has_exit()) exits_.record(*made);
      std::shared_ptr<v1::Event> policy;
      if (auto* denied = std::get_if<events::DeniedRecord>(&record.value())) {
        nameRule(made->mutable_policy(), denied->ruleSlot);
      } else if (auto* exec = std::get_if<events::ExecRecord>(&record.value());
                 exec && exec->verdict != VIGIL_VERDICT_NONE) {
        policy = tracker_->policyEventFor(*exec, *made);
        nameRule(policy->mutable_policy(), exec->ruleSlot);
      }
      hub_.publish(EventPtr(std::move(made)));
      if (policy) hub_.publish(EventPtr(std::move(policy)));
    }
    {
      std::lock_guard lock(queueMutex_);
      for (auto& buf : batch) {
        if (spare_.size() >= kMaxSpareBuffers) break;
        spare_.push_back(std::move(buf));
      }
    }
    batch.clear();
    tableSize_ = tracker_->table().size();
    tableEvictions_ = tracker_->table().evictions();
    auto now = std::chrono::steady_clock::now();
    if (now >= nextLossCheck) {
      reportLosses();
      nextLossCheck = now + kLossCheckInterval;
    }
    if (flowTracker_ && now >= nextScan) {
      scanFlows();
      nextScan = std::chrono::steady_clock::now() + scanInterval;
    }
    if (now >= nextRecalibration) {
      tracker_->recalibrateClock();
      nextRecalibration = now + kRecalibrateInterval;
    }
  }
  reportLosses();
}

std::vector<uint64_t> Agent::ruleHits() const {
  auto hits =
      skel_ ? skel_->readRuleHits() : Expected<std::vector<uint64_t>>(std::vector<uint64_t>{});
  return hits ? hits.value() : std::vector<uint64_t>{};
}

Status Agent::startXdp() {
  bool xdpOk = false;
  for (const auto& c : capabilities_) {
    if (c.name == "xdp") {
      xdpOk = c.available;
      if (!c.available) xdpUnavailable_ = c.detail;
    }
  }
  if (!xdpOk) {
    if (xdpUnavailable_.empty()) xdpUnavailable_ = "not probed";
    log::warn("XDP unavailable (" + xdpUnavailable_ + "): policies with spec.xdp are rejected");
    return {};
  }
  bpf::XdpOptions o;
  o.pinDir = config_.pinDir;
  o.ringBufferBytes = config_.xdpRingBytes;
  o.samplesPerSecond = config_.xdpDropSamples;
  o.bucketEntries = config_.xdpRateBuckets;
  o.force = config_.forceXdp;
  auto dp = bpf::XdpDataPath::open(o);
  if (!dp) return dp.error();
  std::lock_guard lock(xdpMutex_);
  xdp_ = std::move(dp.value());
  if (xdp_->adopted()) {
    xdpHold_ = true;
    log::info("adopted XDP enforcement pinned under " + config_.pinDir + " by an earlier agent (" +
              std::to_string(xdp_->attachments().size()) +
              " interface(s)); it stays in force "
              "until policies with XDP rules replace it");
  }
  return {};
}

Status Agent::applyXdp(const policy::CompiledXdp& rules, const std::vector<uint32_t>& fresh) {
  std::lock_guard lock(xdpMutex_);
  if (!xdp_) return Error(ENOTSUP, "XDP is not available on this node: " + xdpUnavailable_);
  if (rules.empty() && xdpHold_) {
    log::info(
        "no policy has XDP rules: keeping the XDP enforcement adopted from an earlier "
        "agent (remove it with vigil-agent --cleanup)");
    return {};
  }
  auto s = xdp_->apply(rules, fresh);
  if (s) xdpHold_ = false;
  return s;
}

std::map<uint32_t, api::XdpCounters> Agent::xdpCounters() const {
  std::map<uint32_t, api::XdpCounters> out;
  std::lock_guard lock(xdpMutex_);
  if (!xdp_) return out;
  auto c = xdp_->readCounters();
  if (!c) return out;
  return c.value();
}

std::string Agent::interfaceName(uint32_t ifindex) {
  auto it = ifnames_.find(ifindex);
  if (it != ifnames_.end()) return it->second;
  char buf[IF_NAMESIZE] = {};
  std::string name = if_indextoname(ifindex, buf) ? buf : "";
  if (!name.empty() && ifnames_.size() < 4096) ifnames_[ifindex] = name;
  return name;
}

void Agent::publishDrop(std::span<const uint8_t> raw) {
  events::XdpDropNames names{
      [this](uint32_t slot) -> std::optional<std::pair<std::string, std::string>> {
        if (auto r = policies_->xdpRuleOf(slot)) return std::make_pair(r->policy, r->rule);
        return std::nullopt;
      },
      [this](uint32_t ifindex) { return interfaceName(ifindex); }};
  auto ev = events::decodeXdpDrop(raw, names, events::Clock(), config_.nodeName);
  if (!ev) {
    malformed_[VIGIL_REC_XDP_DROP]++;
    log::warn(ev.error().message());
    return;
  }
  seen_[VIGIL_REC_XDP_DROP]++;
  auto drop = std::make_shared<const v1::Event>(std::move(ev.value()));
  if (flowTracker_) flowHub_.publish(events::FlowTracker::fromXdpDrop(*drop));
  hub_.publish(std::move(drop));
}

void Agent::startFlows() {
  if (!config_.flows) {
    flowUnavailable_ = "disabled (--flow-interfaces none)";
    log::info("flow tracking " + flowUnavailable_);
    return;
  }
  bpf::FlowOptions o;
  o.tableEntries = config_.flowTableSize;
  o.ownerEntries = config_.socketTableSize;
  o.cgroupEntries = config_.cgroupTableSize;
  o.ringBufferBytes = config_.flowRingBytes;
  o.dropSamples = config_.dropSamples;
  o.cgroupRoot = cgroups_->mountPoint();
  o.tcMode = config_.flowTcMode == "tcx"  ? bpf::TcMode::tcx
             : config_.flowTcMode == "tc" ? bpf::TcMode::legacy
                                          : bpf::TcMode::automatic;
  auto dp = bpf::FlowDataPath::open(o);
  if (!dp) {
    // Process events and policies do not depend on it: run without, and say so.
    flowUnavailable_ = dp.error().message();
    log::warn("flow tracking unavailable: " + flowUnavailable_);
    return;
  }
  for (const auto& h : dp.value()->hooks()) {
    if (h.available) {
      log::info("flows: " + h.name + ": " + h.detail);
    } else {
      log::warn("flows: " + h.name + " unavailable: " + h.detail);
    }
  }
  if (auto names = bpf::dropReasonNames()) {
    dropReasons_ = std::move(names.value());
  } else {
    log::warn("kernel drop reasons will be shown as numbers: " + names.error().message());
  }
  events::FlowTrackerOptions to;
  to.nodeName = config_.nodeName;
  struct stat netns{};
  if (::stat((config_.procRoot + "/self/ns/net").c_str(), &netns) == 0)
    to.netns = static_cast<uint32_t>(netns.st_ino);
  to.updateInterval = std::chrono::seconds(config_.flowUpdateIntervalS);
  to.idleTimeout = std::chrono::seconds(config_.flowIdleTimeoutS);
  to.tcpIdleTimeout = std::chrono::seconds(config_.flowTcpIdleTimeoutS);
  bpf::FlowDataPath* path = dp.value().get();
  events::FlowContext ctx;
  ctx.owner = [path](const vigil_sock_key& k) { return path->owner(k); };
  ctx.interface = [this](uint32_t ifindex) { return interfaceName(ifindex); };
  ctx.dropReason = [this](uint32_t reason) {
    auto it = dropReasons_.find(reason);
    return it == dropReasons_.end() ? std::string() : it->second;
  };
  ctx.describe = [this](v1::FlowEndpoint* e) {
    // Flow and process records come through different ring buffers: the process may have
    // exited already (findRecent still knows it), or its exec record may not be decoded yet
    // (the table still holds the program before the exec). A comm that differs from the
    // socket owner's says the latter, or a process that renamed itself: take the binary, and
    // look again at the flow's next event.
    const v1::Process* p = tracker_->findRecent(e->pid());
    if (p) {
      e->set_binary(p->binary());
      e->set_exec_id(p->exec_id());
    }
    e->set_cgroup_path(cgroups_->pathFor(e->cgroup_id(), e->pid()));
    if (p && p->cgroup_id() == e->cgroup_id() && p->has_workload() &&
        k8s::complete(p->workload())) {
      *e->mutable_workload() = p->workload();
    } else if (!e->cgroup_path().empty()) {
      k8s::toProto(workloads_->resolve(e->cgroup_path(), e->pid()), e->mutable_workload());
    }
    return p && p->comm() == e->comm() && !e->cgroup_path().empty() &&
           k8s::complete(e->workload());
  };
  flowTracker_ = std::make_unique<events::FlowTracker>(to, events::Clock(), std::move(ctx));
  std::lock_guard lock(flowMutex_);
  flow_ = std::move(dp.value());
  if (auto s = flow_->syncInterfaces(config_.flowInterfaces); !s)
    log::warn("flow tracking: " + s.error().message());
}

void Agent::publishFlow(std::span<const uint8_t> raw) {
  size_t type = typeIndex(events::peekType(raw));
  auto ev = flowTracker_ ? flowTracker_->onRecord(raw)
                         : Expected<EventPtr>(Error(ENOTSUP, "flow tracking is not running"));
  if (!ev) {
    malformed_[type]++;
    log::warn(ev.error().message());
    return;
  }
  seen_[type]++;
  if (*ev) flowHub_.publish(std::move(ev.value()));
}

void Agent::scanFlows() {
  const uint64_t start = events::Clock::monotonicNowNs();
  Expected<std::vector<vigil_flow_entry>> entries = std::vector<vigil_flow_entry>{};
  {
    std::lock_guard lock(flowMutex_);
    if (!flow_) return;
    entries = flow_->readFlows();
  }
  if (!entries) {
    log::warn("flow tracking: " + entries.error().message());
    return;
  }
  auto result = flowTracker_->onScan(*entries, start, events::Clock::monotonicNowNs());
  if (!result.expired.empty()) {
    std::lock_guard lock(flowMutex_);
    flow_->deleteFlows(result.expired);
  }
  for (auto& ev : result.events) flowHub_.publish(std::move(ev));
  flowTableEntries_ = entries->size() - result.expired.size();
  flowEvictions_ = flowTracker_->evictions();
}

v1::GetTrafficResponse Agent::traffic(const v1::GetTrafficRequest& request) const {
  v1::GetTrafficResponse out;
  std::vector<bpf::CgroupTrafficRow> rows;
  {
    std::lock_guard lock(flowMutex_);
    if (!flow_ || !flow_->running("cgroup_traffic")) {
      out.set_source("unavailable: " + (flow_ ? std::string("cgroup_skb programs not attached")
                                              : flowUnavailable_));
      return out;
    }
    out.set_source("cgroup_skb on " + cgroups_->mountPoint());
    auto r = flow_->readTraffic();
    if (!r) {
      out.set_source("unavailable: " + r.error().message());
      return out;
    }
    rows = std::move(r.value());
  }
  static constexpr const char* kProto[] = {"tcp", "udp", "icmp", "other"};
  for (const auto& row : rows) {
    std::string path = cgroups_->pathFor(row.cgroupId, 0);
    if (!request.cgroup_prefix().empty() && path.rfind(request.cgroup_prefix(), 0) != 0) continue;
    auto* t = out.add_rows();
    t->set_cgroup_id(row.cgroupId);
    t->set_cgroup_path(path);
    if (!path.empty()) k8s::toProto(workloads_->resolve(path), t->mutable_workload());
    t->set_protocol(row.proto < std::size(kProto) ? kProto[row.proto] : "other");
    for (auto [dst, src] : {std::pair{t->mutable_ingress(), &row.in},
                            std::pair{t->mutable_egress(), &row.out}}) {
      dst->set_packets(src->packets);
      dst->set_bytes(src->bytes);
      dst->set_payload_bytes(src->payload);
    }
  }
  return out;
}

void Agent::fillFlowStatus(v1::FlowStatus* out) const {
  std::lock_guard lock(flowMutex_);
  if (!flow_) {
    out->set_state("unavailable: " + flowUnavailable_);
    return;
  }
  out->set_state("tracking");
  for (const auto& a : flow_->attachments()) {
    auto* i = out->add_interfaces();
    i->set_name(a.ifname);
    i->set_ifindex(a.ifindex);
    i->set_mode(a.mode);
  }
  out->set_flows_seen(flowHub_.published());
  out->set_ring_size(flowHub_.ringSize());
  out->set_ring_capacity(flowHub_.ringCapacity());
  out->set_table_entries(flowTableEntries_);
  out->set_table_capacity(flow_->tableCapacity());
  out->set_table_evictions(flowEvictions_);
  uint64_t lost = flowHub_.clientDropped();
  for (size_t t : {VIGIL_REC_FLOW_NEW, VIGIL_REC_KERNEL_DROP})
    lost += agentDropped_[t].load();
  if (auto stats = flow_->readStats()) {
    lost += stats.value()[VIGIL_FLOW_STAT_FLOW_RECORDS_LOST] +
            stats.value()[VIGIL_FLOW_STAT_DROP_RECORDS_LOST];
    for (size_t i = 0; i < stats->size(); i++) {
      auto* k = out->add_stats();
      k->set_name(bpf::FlowDataPath::statName(i));
      k->set_value(stats.value()[i]);
    }
  }
  out->set_flows_lost(lost);
  if (auto drops = flow_->readDropCounts()) {
    for (size_t r = 0; r < drops->size(); r++) {
      if (drops.value()[r] == 0) continue;
      auto* d = out->add_drops();
      auto it = dropReasons_.find(static_cast<uint32_t>(r));
      d->set_reason(it != dropReasons_.end() ? it->second : "reason " + std::to_string(r));
      d->set_packets(drops.value()[r]);
    }
  }
  for (const auto& h : flow_->hooks()) {
    if (h.name == "socket_attribution")
      out->set_attribution(h.available ? h.detail : "unavailable: " + h.detail);
    if (h.name == "cgroup_traffic")
      out->set_cgroup_accounting(h.available ? h.detail : "unavailable: " + h.detail);
  }
}

void Agent::policyLoop() {
  const auto interval = std::chrono::milliseconds(config_.policyPollMs);
  // What the log last said about each policy: "" in force, else the error.
  std::map<std::string, std::string> logged;
  for (const auto& p : policies_->list()) logged[p.name] = p.error;
  std::string refreshError;
  std::string flowSyncError;
  auto logChanges = [&] {
    std::map<std::string, std::string> now;
    for (const auto& p : policies_->list()) {
      now[p.name] = p.error;
      auto it = logged.find(p.name);
      if (it != logged.end() && it->second == p.error) continue;
      if (p.error.empty()) {
        log::info("policy " + p.name + " from " + p.source + " in force");
      } else {
        log::error("policy " + p.name + " from " + p.source + " rejected: " + p.error);
      }
    }
    for (const auto& [name, _] : logged)
      if (!now.count(name)) log::info("policy " + name + " removed");
    logged = std::move(now);
  };
  for (unsigned tick = 1;; tick++) {
    {
      std::unique_lock lock(policyMutex_);
      if (policyWake_.wait_for(lock, interval, [&] { return policyStop_; })) return;
    }
    policies_->syncDirectory(config_.policyDir);
    {
      // Flow tracking follows interfaces as they come and go (pod veths).
      std::lock_guard lock(flowMutex_);
      if (flow_) {
        auto s = flow_->syncInterfaces(config_.flowInterfaces);
        std::string error = s ? "" : s.error().message();
        if (error != flowSyncError) {
          if (!error.empty()) log::warn("flow tracking: " + error);
          flowSyncError = error;
        }
      }
    }
    // A replaced binary (package upgrade: new inode) is looked up again about once a second.
    if (tick % 2 == 0) policies_->refreshIdentities();
    logChanges();
    {
      // Rules for every interface follow interfaces that appear (a new pod's veth).
      std::lock_guard lock(xdpMutex_);
      if (xdp_ && !xdpHold_) {
        auto s = xdp_->refreshInterfaces();
        std::string error = s ? "" : s.error().message();
        if (error != refreshError) {  // said once, not every tick
          if (!error.empty()) log::warn("XDP: " + error);
          refreshError = error;
        }
      }
    }
  }
}

void Agent::nameRule(v1::PolicyEvent* event, uint32_t slot) const {
  if (auto rule = policies_->ruleOf(slot)) {
    event->set_policy(rule->policy);
    event->set_rule(rule->rule);
  } else {
    event->set_rule("slot " + std::to_string(slot) + " (rule since removed)");
  }
}

std::array<uint64_t, Agent::kTypes> Agent::kernelLosses() const {
  std::array<uint64_t, kTypes> lost{};
  if (skel_) {
    if (auto stats = skel_->readStats()) {
      lost[VIGIL_REC_EXEC] = stats.value()[VIGIL_STAT_EXEC_LOST];
      lost[VIGIL_REC_EXIT] = stats.value()[VIGIL_STAT_EXIT_LOST];
      lost[VIGIL_REC_FORK] = stats.value()[VIGIL_STAT_FORK_LOST];
    }
  }
  std::lock_guard lock(xdpMutex_);
  if (xdp_) {
    if (auto stats = xdp_->readStats())
      lost[VIGIL_REC_XDP_DROP] = stats.value()[VIGIL_XDP_STAT_RECORDS_LOST];
  }
  std::lock_guard flowLock(flowMutex_);
  if (flow_) {
    if (auto stats = flow_->readStats()) {
      lost[VIGIL_REC_FLOW_NEW] = stats.value()[VIGIL_FLOW_STAT_FLOW_RECORDS_LOST];
      lost[VIGIL_REC_KERNEL_DROP] = stats.value()[VIGIL_FLOW_STAT_DROP_RECORDS_LOST];
    }
  }
  if (mem_) {
    if (auto stats = mem_->stats())
      lost[VIGIL_REC_OOM_KILL] = stats.value()[VIGIL_MEM_STAT_OOM_LOST];
  }
  return lost;
}

// Turns new kernel and agent-queue losses into LostEvents on the stream.
void Agent::reportLosses() {
  const auto kernelLost = kernelLosses();
  for (size_t t = 1; t < kTypes; t++) {
    uint64_t kernel = std::max(kernelLost[t], reportedKernelLost_[t]);
    uint64_t agent = agentDropped_[t].load();
    for (auto [total, reported, source] : {std::tuple{kernel, &reportedKernelLost_[t], "kernel"},
                                           std::tuple{agent, &reportedAgentLost_[t], "agent"}}) {
      if (total <= *reported) continue;
      v1::Event ev;
      *ev.mutable_time() = events::Clock().toTimestamp(events::Clock::monotonicNowNs());
      ev.set_node_name(config_.nodeName);
      ev.set_type(v1::EVENT_TYPE_LOST);
      ev.mutable_lost()->set_source(source);
      ev.mutable_lost()->set_count(total - *reported);
      ev.mutable_lost()->set_lost_type(apiType(t));
      log::warn(std::to_string(total - *reported) + " " + recordName(t) + " records lost in the " +
                source +
                (std::string(source) == "kernel" ? " (ring buffer full)" : " (queue full)"));
      *reported = total;
      (isFlowRecord(t) ? flowHub_ : hub_).publish(std::move(ev));
    }
  }
}

v1::GetStatusResponse Agent::status() const {
  v1::GetStatusResponse s;
  s.set_version(VIGIL_VERSION);
  s.set_node_name(config_.nodeName);
  utsname u{};
  if (uname(&u) == 0) s.set_kernel(std::string(u.sysname) + " " + u.release + " " + u.machine);
  *s.mutable_uptime() = toDuration(std::chrono::steady_clock::now() - started_);
  auto addCapability = [&](const bpf::Capability& c, bool inUse) {
    auto* cap = s.add_capabilities();
    cap->set_name(c.name);
    cap->set_available(c.available);
    cap->set_detail(c.detail);
    cap->set_in_use(inUse);
  };
  auto addPrograms = [&](const std::vector<bpf::ProgramInfo>& programs) {
    for (const auto& p : programs) {
      auto* prog = s.add_programs();
      prog->set_name(p.name);
      prog->set_type(p.type);
      prog->set_attach_to(p.attachTo);
      prog->set_id(p.id);
    }
  };
  for (const auto& c : capabilities_) {
    addCapability(c, c.name == "tp_btf" || c.name == "ring_buffer" || c.name == "btf" ||
                         c.name == "cgroup_v2" || (c.name == "xdp" && xdp_ != nullptr) ||
                         (c.name == "tc" && flow_ != nullptr));
  }
  if (skel_) addPrograms(skel_->programs());
  {
    bpf::Capability memCap{"memory_accounting", mem_ != nullptr,
                           mem_ ? std::string("task iterator read on demand (vigil top); ") +
                                      (mem_->exact() ? "exact RSS counters"
                                                     : "RSS as the kernel's global counts (per-CPU "
                                                       "batches not folded in)") +
                                      (mem_->exitHasRss()
                                           ? "; exit events carry the RSS at exit and the peak"
                                           : "; exit events carry the peak only (this kernel's "
                                             "exit tracepoint runs after the memory is "
                                             "released; 6.16+ runs it before)")
                                : memUnavailable_};
    addCapability(memCap, mem_ != nullptr);
    bpf::Capability oomCap{"oom_kill", mem_ && mem_->oomRingFd() >= 0,
                           !mem_                ? memUnavailable_
                           : mem_->oomUnavailable().empty()
                               ? "tp_btf oom/mark_victim: oom_kill events"
                               : mem_->oomUnavailable()};
    addCapability(oomCap, oomCap.available);
    if (mem_) addPrograms(mem_->programs());
  }
  {
    std::lock_guard lock(flowMutex_);
    if (flow_) {
      for (const auto& h : flow_->hooks()) addCapability(h, h.available);
      addPrograms(flow_->programs());
    }
  }
  std::vector<uint64_t> stats;
  if (skel_) {
    auto r = skel_->readStats();
    if (r) stats = r.value();
  }
  const auto kernelLost = kernelLosses();
  for (size_t t : {VIGIL_REC_EXEC, VIGIL_REC_EXIT, VIGIL_REC_XDP_DROP, VIGIL_REC_OOM_KILL}) {
    auto* c = s.add_events();
    c->set_type(apiType(t));
    c->set_seen(seen_[t]);
    c->set_malformed(malformed_[t]);
    c->set_lost_kernel(kernelLost[t]);
  }
  for (size_t i = 0; i < stats.size(); i++) {
    auto* k = s.add_kernel_stats();
    k->set_name(bpf::statName(i));
    k->set_value(stats[i]);
  }
  // Records that reached the agent but found its queue full, and fork records: as stats too.
  auto* k = s.add_kernel_stats();
  k->set_name("agent_queue_dropped");
  uint64_t dropped = 0;
  for (const auto& d : agentDropped_) dropped += d;
  k->set_value(dropped);
  k = s.add_kernel_stats();
  k->set_name("fork_records_seen");
  k->set_value(seen_[VIGIL_REC_FORK]);
  s.set_clients(static_cast<uint32_t>(hub_.clients() + flowHub_.clients()));
  s.set_client_events_dropped(hub_.clientDropped() + flowHub_.clientDropped());
  s.set_event_ring_size(hub_.ringSize());
  s.set_event_ring_capacity(hub_.ringCapacity());
  s.set_process_table_size(tableSize_);
  s.set_process_table_capacity(config_.processTableSize);
  s.set_process_table_evictions(tableEvictions_);
  s.set_recent_exits_size(exits_.size());
  s.set_recent_exits_capacity(exits_.capacity());
  s.set_api_address(apiDescription_);
  {
    std::lock_guard lock(descriptionMutex_);
    s.set_metrics_address(metricsDescription_);
    s.set_health_address(healthDescription_);
  }
  if (workloads_) s.set_pod_metadata(workloads_->state());
  auto addRing = [&](const char* name, const std::unique_ptr<bpf::RingReader>& r) {
    if (!r) return;
    auto u = r->usage();
    auto* ring = s.add_ring_buffers();
    ring->set_name(name);
    ring->set_pending_bytes(u.pendingBytes);
    ring->set_size_bytes(u.sizeBytes);
  };
  addRing("events", reader_);
  addRing("xdp", xdpReader_);
  addRing("flows", flowReader_);
  addRing("mem", memReader_);
  fillXdpStatus(s.mutable_xdp());
  fillFlowStatus(s.mutable_flows());
  std::lock_guard exporterLock(exporterMutex_);
  if (exporter_) {
    auto st = exporter_->stats();
    auto* e = s.mutable_export_();
    e->set_path(config_.exportFile);
    e->set_lines(st.lines);
    e->set_rotations(st.rotations);
    e->set_write_errors(st.writeErrors);
    e->set_last_error(st.lastError);
  }
  return s;
}

void Agent::startMem() {
  auto dp = bpf::MemDataPath::open();
  if (!dp) {
    memUnavailable_ = dp.error().message();
    log::warn("memory accounting unavailable: " + memUnavailable_);
    return;
  }
  mem_ = std::move(dp.value());
  if (!mem_->oomUnavailable().empty())
    log::warn("OOM kill events unavailable: " + mem_->oomUnavailable());
  for (const auto& m : readMountInfo(config_.procRoot + "/self/mountinfo")) {
    if (m.fsType == "cgroup" && m.mountPoint.find("memory") != std::string::npos &&
        ::access((m.mountPoint + "/memory.usage_in_bytes").c_str(), R_OK) == 0)
      memcgV1Root_ = m.mountPoint;
  }
  if (!memcgV1Root_.empty())
    memcgV1Paths_ = std::make_unique<events::CgroupPaths>(memcgV1Root_, config_.procRoot);
  // The cgroup charge comes from one hierarchy, found here once: a controller is on v2 or on
  // v1, never both.
  if (!cgroups_->mountPoint().empty() &&
      ::access((cgroups_->mountPoint() + "/memory.stat").c_str(), R_OK) == 0) {
    memcgRoot_ = cgroups_->mountPoint();
    memcgCurrentFile_ = "/memory.current";
    memcgPeakFile_ = "/memory.peak";
    memcgDescription_ = "cgroup v2 memory.current";
  } else if (!memcgV1Root_.empty()) {
    memcgRoot_ = memcgV1Root_;
    memcgCurrentFile_ = "/memory.usage_in_bytes";
    memcgPeakFile_ = "/memory.max_usage_in_bytes";
    memcgDescription_ = "cgroup v1 memory.usage_in_bytes at " + memcgV1Root_ +
                        " (same path as in the v2 hierarchy)";
  } else {
    memcgDescription_ = "unavailable: no memory controller on cgroup v2 or v1";
  }
  log::info(std::string("memory accounting: task iterator attached (") +
            (mem_->exact() ? "exact counters" : "global counts of per-CPU counters") + ")" +
            (memcgV1Root_.empty() ? "" : "; cgroup v1 memory controller at " + memcgV1Root_));
}

namespace {
std::optional<uint64_t> readNumber(const std::string& file) {
  std::ifstream in(file);
  uint64_t v = 0;
  if (in >> v) return v;
  return std::nullopt;
}
}  // namespace

void Agent::publishOom(std::span<const uint8_t> raw) {
  vigil_oom_record r{};
  if (raw.size() != sizeof r) {
    malformed_[VIGIL_REC_OOM_KILL]++;
    log::warn("OOM record of " + std::to_string(raw.size()) + " bytes, expected " +
              std::to_string(sizeof r));
    return;
  }
  std::memcpy(&r, raw.data(), sizeof r);
  if (r.hdr.version != VIGIL_ABI_VERSION) {
    malformed_[VIGIL_REC_OOM_KILL]++;
    return;
  }
  seen_[VIGIL_REC_OOM_KILL]++;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  auto ev = std::make_shared<v1::Event>();
  *ev->mutable_time() = events::Clock().toTimestamp(r.hdr.ktime_ns);
  ev->set_node_name(config_.nodeName);
  ev->set_type(v1::EVENT_TYPE_OOM_KILL);
  auto* oom = ev->mutable_oom_kill();
  v1::Process* p = oom->mutable_process();
  if (const v1::Process* known = tracker_->findRecent(r.pid)) {
    *p = *known;
  } else {
    p->set_pid(r.pid);
    p->set_comm(std::string(r.comm, strnlen(r.comm, sizeof r.comm)));
    p->set_cgroup_id(r.cgroup_id);
    p->set_cgroup_path(cgroups_->pathFor(r.cgroup_id, r.pid));
    if (!p->cgroup_path().empty())
      k8s::toProto(workloads_->resolve(p->cgroup_path(), r.pid), p->mutable_workload());
  }
  p->clear_args();
  // The kernel's comm at the kill is authoritative: the OOM ring and the process-event ring
  // are read apart, so the table may not have the victim's exec yet (it then shows the
  // program before the exec).
  const std::string comm(r.comm, strnlen(r.comm, sizeof r.comm));
  if (p->comm() != comm) {
    p->set_comm(comm);
    p->clear_binary();
    p->clear_exec_id();
  }
  oom->set_anon_rss_bytes(r.anon_pages * page);
  oom->set_file_rss_bytes(r.file_pages * page);
  oom->set_shmem_rss_bytes(r.shmem_pages * page);
  oom->set_total_vm_bytes(r.total_vm_pages * page);
  oom->set_oom_score_adj(r.oom_score_adj);
  oom->set_uid(r.uid);
  // Ids of the v1 memory hierarchy are its own (no /proc hint: that reads the v2 line).
  oom->set_memory_cgroup(memcgV1Paths_ ? memcgV1Paths_->pathFor(r.memcg_id, 0)
                                       : cgroups_->pathFor(r.memcg_id, r.pid));
  log::warn("OOM kill: pid " + std::to_string(r.pid) + " (" + p->comm() + ") in memory cgroup " +
            (oom->memory_cgroup().empty() ? "(unknown)" : oom->memory_cgroup()) + ", RSS " +
            std::to_string((r.anon_pages + r.file_pages + r.shmem_pages) * page) + " bytes");
  hub_.publish(EventPtr(std::move(ev)));
}

Expected<v1::GetAccountingResponse> Agent::accounting(
    const v1::GetAccountingRequest& request) const {
  return accounting(request, true);
}

Expected<v1::GetAccountingResponse> Agent::accounting(const v1::GetAccountingRequest& request,
                                                      bool cgroupFigures) const {
  if (auto s = events::checkAccountingRequest(request); !s) return s.error();
  if (!mem_) return Error(ENOTSUP, "memory accounting is unavailable: " + memUnavailable_);
  const auto start = std::chrono::steady_clock::now();
  auto snap = mem_->snapshot();
  if (!snap) return snap.error();
  const auto iterated = std::chrono::steady_clock::now();
  events::AccountingContext ctx;
  ctx.pageSize = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  ctx.cgroupPath = [this](uint64_t id, uint32_t pid) { return cgroups_->pathFor(id, pid); };
  ctx.workload = [this](const std::string& path, uint32_t pid) {
    v1::Workload w;
    k8s::toProto(workloads_->resolve(path, pid), &w);
    return w;
  };
  if (cgroupFigures && !memcgRoot_.empty()) {
    ctx.cgroupMemory = [this](const std::string& path) {
      return readNumber(memcgRoot_ + path + memcgCurrentFile_);
    };
    ctx.cgroupMemoryPeak = [this](const std::string& path) {
      return readNumber(memcgRoot_ + path + memcgPeakFile_);
    };
  }
  ctx.perProcess = [this](const std::string& path) { return workloads_->asksProcesses(path); };
  if (request.has_since()) {
    // Checked above to lie in 1970..9999; past 2262 nanoseconds overflow, and nothing exited.
    const auto& s = request.since();
    constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1'000'000'000 - 1;
    if (s.seconds() <= kMaxSeconds)
      ctx.exited = exits_.since(s.seconds() * 1'000'000'000 + s.nanos());
  }
  if (cgroupFigures) {
    std::lock_guard lock(flowMutex_);
    if (flow_ && flow_->running("cgroup_traffic")) {
      if (auto rows = flow_->readTraffic()) {
        for (const auto& row : rows.value()) {
          auto& n = ctx.network[row.cgroupId];
          n.first += row.in.bytes;
          n.second += row.out.bytes;
        }
      }
    }
  }
  auto out = events::buildAccounting(snap->tasks, request, ctx);
  out.set_snapshot_ns(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::steady_clock::now() - start)
                                                .count()));
  out.set_iterator_ns(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(iterated - start).count()));
  // Not TimeUtil::GetCurrentTime(): protobuf 3.21's has whole seconds only.
  *out.mutable_time() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  out.set_cgroup_memory(memcgDescription_);
  return out;
}

api::MetricsSnapshot Agent::metricsSnapshot() const {
  api::MetricsSnapshot m;
  m.status = status();
  v1::ListPoliciesRequest request;
  v1::ListPoliciesResponse policies;
  if (service_ && service_->ListPolicies(nullptr, &request, &policies).ok()) {
    m.policies.assign(policies.policies().begin(), policies.policies().end());
    m.hasPolicies = true;
  }
  if (flow_ && flow_->running("cgroup_traffic")) {
    m.traffic = traffic(v1::GetTrafficRequest());
    m.hasTraffic = true;
  }
  for (const auto& pod : workloads_->directory().pods()) m.livePods.insert(pod.uid);
  if (mem_) {
    v1::GetAccountingRequest byPod;
    byPod.set_group_by("pod");
    // Pod memory only: the traffic above has the network bytes, and no cgroup's charge is used.
    if (auto r = accounting(byPod, false)) {
      m.memory = std::move(r.value());
      m.hasMemory = true;
    }
  }
  return m;
}

void Agent::fillXdpStatus(v1::XdpStatus* out) const {
  out->set_records_received(seen_[VIGIL_REC_XDP_DROP]);
  out->set_records_malformed(malformed_[VIGIL_REC_XDP_DROP]);
  out->set_pin_dir(config_.pinDir);
  // Read the kernel under xdpMutex_, name the rules after: the policy store calls into the
  // data path with its own lock held, so the two locks are never taken in the other order.
  std::map<uint32_t, bpf::XdpRuleCounters> counters;
  std::vector<bpf::AdoptedSlot> adopted;
  {
    std::lock_guard lock(xdpMutex_);
    if (!xdp_) {
      out->set_state("unavailable: " + xdpUnavailable_);
      return;
    }
    out->set_program_id(xdp_->programId());
    auto attachments = xdp_->attachments();
    for (const auto& a : attachments) {
      auto* i = out->add_interfaces();
      i->set_name(a.ifname);
      i->set_ifindex(a.ifindex);
      i->set_mode(a.mode);
      i->set_link_id(a.linkId);
    }
    out->set_state(xdpHold_ ? "adopted" : attachments.empty() ? "idle" : "enforcing");
    if (auto c = xdp_->readCounters()) counters = std::move(c.value());
    adopted = xdp_->adoptedSlots();
    if (auto stats = xdp_->readStats()) {
      for (size_t i = 0; i < stats->size(); i++) {
        auto* k = out->add_stats();
        k->set_name(bpf::XdpDataPath::statName(i));
        k->set_value(stats.value()[i]);
      }
    }
  }
  for (const auto& [slot, c] : counters) {
    auto* r = out->add_rules();
    if (auto ref = policies_ ? policies_->xdpRuleOf(slot) : std::nullopt) {
      r->set_policy(ref->policy);
      r->set_rule(ref->rule);
    } else {
      for (const auto& a : adopted) {
        if (a.slot != slot) continue;
        r->set_policy(a.policy);
        r->set_rule(a.rule);
      }
    }
    r->set_packets(c.packets);
    r->set_bytes(c.bytes);
    r->set_limited_packets(c.limitedPackets);
    r->set_limited_bytes(c.limitedBytes);
  }
}

}  // namespace vigil::server
