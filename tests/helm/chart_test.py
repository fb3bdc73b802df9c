#!/usr/bin/env python3
"""Tests of the helm/vigil chart with the real helm binary.

Lints the chart, renders it with default and with changed values and checks the rendered
objects field by field, checks that values outside the schema are refused with a message that
names the field, and runs the policies that end up in the ConfigMap through
`vigil policy validate`, the agent's own parser.

Usage: chart_test.py --helm PATH --chart DIR [--vigil PATH]
Every failed check prints what was expected and what was rendered; the last line is
"N passed, N failed".
"""

import argparse
import os
import subprocess
import sys
import tempfile

import yaml

RELEASE = "edge"
NAMESPACE = "vigil-system"

# What the chart must grant when privileged is false: nothing more, nothing less.
CAPABILITIES = ["BPF", "PERFMON", "SYS_ADMIN", "NET_ADMIN", "SYS_RESOURCE", "SYS_PTRACE",
                "DAC_READ_SEARCH"]

# Every hostPath of the default rendering: volume name -> (host path, mount path, read-only,
# mount propagation or None, hostPath type).
HOST_PATHS = {
    "bpffs": ("/sys/fs/bpf", "/sys/fs/bpf", False, "HostToContainer", "Directory"),
    "btf": ("/sys/kernel/btf", "/sys/kernel/btf", True, None, "Directory"),
    "tracefs": ("/sys/kernel/tracing", "/sys/kernel/tracing", True, "HostToContainer",
                "Directory"),
    "cgroup": ("/sys/fs/cgroup", "/sys/fs/cgroup", True, "HostToContainer", "Directory"),
    "pod-logs": ("/var/log/pods", "/var/log/pods", True, None, "DirectoryOrCreate"),
    "container-logs": ("/var/log/containers", "/var/log/containers", True, None,
                       "DirectoryOrCreate"),
    "run": ("/run/vigil", "/run/vigil", False, None, "DirectoryOrCreate"),
}

DENY_TMP = """\
# Kills anything started from /tmp or /dev/shm.
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: deny-tmp-execs
spec:
  mode: enforce
  exec:
    - name: no-tmp
      action: kill
      match:
        pathPrefixes: [/tmp/, /dev/shm/]
"""

# Two documents, no final newline, trailing blanks on a comment line: toYaml must keep it all.
AUDIT_TWO = """\
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: audit-uid-1000
spec:
  mode: audit
  exec:
    - name: everything
      action: audit
      match: {uids: [1000]}
---
# report only\x20\x20
apiVersion: vigil.dev/v1alpha1
kind: Policy
metadata:
  name: edge-filter
spec:
  mode: audit
  xdp:
    rules:
      - name: block-scanners
        action: drop
        match:
          sourceCIDRs: [203.0.113.0/24]"""


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.case = ""

    def start(self, case):
        self.case = case
        print(f"--- {case}")

    def expect(self, ok, what, expected, rendered):
        if ok:
            self.passed += 1
            return True
        self.failed += 1
        print(f"FAIL [{self.case}] {what}\n  expected: {expected}\n  rendered: {rendered}")
        return False

    def equal(self, what, expected, rendered):
        return self.expect(expected == rendered, what, repr(expected), repr(rendered))


class Helm:
    def __init__(self, binary, chart, workdir):
        self.binary = binary
        self.chart = chart
        self.workdir = workdir
        self.count = 0
        # helm keeps caches and configuration under these; keep them out of $HOME.
        self.env = dict(os.environ)
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            self.env[var] = os.path.join(workdir, var.lower())

    def values_file(self, values):
        self.count += 1
        path = os.path.join(self.workdir, f"values-{self.count}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(values, f, sort_keys=False)
        return path

    def run(self, *args, values=None):
        cmd = [self.binary, *args]
        if values is not None:
            cmd += ["-f", self.values_file(values)]
        p = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=120)
        return p.returncode, p.stdout, p.stderr

    def template(self, values=None, *extra):
        return self.run("template", RELEASE, self.chart, "--namespace", NAMESPACE, *extra,
                        values=values)


def parse(checks, text):
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        checks.expect(False, "rendered output parses as YAML", "valid YAML", str(e))
        return []
    checks.expect(all(isinstance(d, dict) and "kind" in d for d in docs),
                  "every rendered document is an object with a kind", "kind in every document",
                  [type(d).__name__ for d in docs])
    return docs


def render(checks, helm, values=None, *extra):
    rc, out, err = helm.template(values, *extra)
    if not checks.expect(rc == 0, "helm template succeeds", "exit 0", f"exit {rc}: {err.strip()}"):
        return []
    return parse(checks, out)


def of_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(checks, docs, kind):
    found = of_kind(docs, kind)
    checks.expect(len(found) == 1, f"exactly one {kind}", 1, len(found))
    return found[0] if found else {}


def agent_container(ds):
    containers = ds.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    return next((c for c in containers if c.get("name") == "agent"), {})


def pod_spec(ds):
    return ds.get("spec", {}).get("template", {}).get("spec", {})


def volumes(ds):
    return {v["name"]: v for v in pod_spec(ds).get("volumes", [])}


def mounts(ds):
    return {m["name"]: m for m in agent_container(ds).get("volumeMounts", [])}


def arg(container, flag):
    """The value of --flag=VALUE in the container's args, or None."""
    for a in container.get("args", []):
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def check_labels(checks, docs):
    want = {
        "app.kubernetes.io/name": "vigil",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/version": "0.1.0",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": "vigil-0.1.0",
    }
    for d in docs:
        labels = d.get("metadata", {}).get("labels", {})
        got = {k: labels.get(k) for k in want}
        checks.equal(f"standard labels of {d['kind']} {d['metadata'].get('name')}", want, got)
    for ds in of_kind(docs, "DaemonSet"):
        labels = ds["spec"]["template"]["metadata"].get("labels", {})
        checks.equal("standard labels of the pod template", want, {k: labels.get(k) for k in want})


def check_defaults(checks, helm):
    checks.start("helm lint")
    for extra in ([], ["--strict"]):
        rc, out, err = helm.run("lint", helm.chart, *extra)
        checks.expect(rc == 0, f"helm lint {' '.join(extra)} passes", "exit 0",
                      f"exit {rc}: {out.strip()} {err.strip()}")

    rc, out, err = helm.run("package", helm.chart, "--destination", helm.workdir)
    checks.expect(rc == 0, "helm package", "exit 0", f"exit {rc}: {out.strip()} {err.strip()}")

    check_notes(checks, helm)

    checks.start("default values")
    docs = render(checks, helm)
    kinds = sorted(d["kind"] for d in docs)
    checks.equal("the objects rendered", ["ConfigMap", "DaemonSet", "Service", "ServiceAccount"],
                 kinds)
    checks.equal("no ServiceMonitor by default", [], of_kind(docs, "ServiceMonitor"))
    rbac = [d["kind"] for d in docs if d["kind"] in ("Role", "ClusterRole", "RoleBinding",
                                                      "ClusterRoleBinding")]
    checks.equal("no RBAC objects (the agent never calls the API)", [], rbac)
    for d in docs:
        checks.equal(f"namespace of {d['kind']}", NAMESPACE, d["metadata"].get("namespace"))
    check_labels(checks, docs)

    ds = one(checks, docs, "DaemonSet")
    spec = pod_spec(ds)
    c = agent_container(ds)
    checks.equal("hostPID", True, spec.get("hostPID"))
    checks.equal("hostNetwork", True, spec.get("hostNetwork"))
    checks.equal("dnsPolicy with hostNetwork", "ClusterFirstWithHostNet", spec.get("dnsPolicy"))
    checks.equal("tolerations: every taint", [{"operator": "Exists"}], spec.get("tolerations"))
    checks.equal("pod automountServiceAccountToken", False,
                 spec.get("automountServiceAccountToken"))
    checks.equal("priorityClassName", "system-node-critical", spec.get("priorityClassName"))
    checks.equal("terminationGracePeriodSeconds", 30, spec.get("terminationGracePeriodSeconds"))
    checks.equal("nodeSelector", {"kubernetes.io/os": "linux"}, spec.get("nodeSelector"))
    checks.equal("updateStrategy", {"type": "RollingUpdate", "rollingUpdate":
                                    {"maxUnavailable": 1}}, ds["spec"].get("updateStrategy"))
    checks.equal("selector is the pod labels' subset",
                 {"app.kubernetes.io/name": "vigil", "app.kubernetes.io/instance": RELEASE},
                 ds["spec"]["selector"]["matchLabels"])
    annotations = ds["spec"]["template"]["metadata"].get("annotations") or {}
    checks.equal("no checksum annotation on the pod template (policies reload in place)", [],
                 [k for k in annotations if k.startswith("checksum/")])
    checks.equal("image", "localhost/vigil-agent:0.1.0", c.get("image"))
    checks.equal("imagePullPolicy", "IfNotPresent", c.get("imagePullPolicy"))

    sc = c.get("securityContext", {})
    checks.equal("privileged", False, sc.get("privileged"))
    checks.equal("capabilities dropped", ["ALL"], sc.get("capabilities", {}).get("drop"))
    checks.equal("capabilities added", sorted(CAPABILITIES),
                 sorted(sc.get("capabilities", {}).get("add") or []))
    checks.equal("seccompProfile", {"type": "Unconfined"}, sc.get("seccompProfile"))
    checks.equal("appArmorProfile", {"type": "Unconfined"}, sc.get("appArmorProfile"))
    checks.equal("runAsUser root", 0, sc.get("runAsUser"))
    checks.expect(sc.get("allowPrivilegeEscalation") is not False,
                  "allowPrivilegeEscalation not false (refused with SYS_ADMIN)", "unset or true",
                  sc.get("allowPrivilegeEscalation"))
    checks.equal("readOnlyRootFilesystem", True, sc.get("readOnlyRootFilesystem"))

    vols, mnts = volumes(ds), mounts(ds)
    for name, (host, path, ro, prop, typ) in HOST_PATHS.items():
        v, m = vols.get(name, {}), mnts.get(name, {})
        checks.equal(f"volume {name}: hostPath", {"path": host, "type": typ}, v.get("hostPath"))
        checks.equal(f"mount {name}: mountPath", path, m.get("mountPath"))
        checks.equal(f"mount {name}: readOnly", ro, m.get("readOnly", False))
        checks.equal(f"mount {name}: mountPropagation", prop, m.get("mountPropagation"))
    hostproc = [v["name"] for v in vols.values()
                if v.get("hostPath", {}).get("path", "").startswith("/proc")]
    checks.equal("no hostPath of /proc (hostPID gives the host's processes)", [], hostproc)
    checks.equal("no subPath in any mount", [],
                 [m["name"] for m in mnts.values() if "subPath" in m or "subPathExpr" in m])

    cm = one(checks, docs, "ConfigMap")
    checks.equal("policy volume refers to the chart's ConfigMap",
                 {"name": cm.get("metadata", {}).get("name")}, vols.get("policies", {}).get(
                     "configMap"))
    checks.equal("policy ConfigMap mounted as a directory",
                 {"name": "policies", "mountPath": "/etc/vigil/policies", "readOnly": True},
                 mnts.get("policies"))
    checks.equal("default ConfigMap holds no policy (enforce nothing)", {}, cm.get("data"))

    for flag, want in (("--api", "unix:///run/vigil/vigil.sock"),
                       ("--node-name", "$(NODE_NAME)"),
                       ("--policy-dir", "/etc/vigil/policies"),
                       ("--pin-dir", "/sys/fs/bpf/vigil"),
                       ("--pod-log-dir", "/var/log/pods"),
                       ("--container-log-dir", "/var/log/containers"),
                       ("--metrics-addr", "0.0.0.0:9610"),
                       ("--health-addr", "0.0.0.0:9611"),
                       ("--log-level", "info")):
        checks.equal(f"arg {flag}", want, arg(c, flag))
    checks.equal("no export by default", None, arg(c, "--export-file"))
    env = {e["name"]: e for e in c.get("env", [])}
    checks.equal("NODE_NAME from the downward API",
                 {"fieldRef": {"fieldPath": "spec.nodeName"}}, env.get("NODE_NAME", {}).get(
                     "valueFrom"))
    ports = {p["name"]: p.get("containerPort") for p in c.get("ports", [])}
    checks.equal("container ports", {"metrics": 9610, "health": 9611}, ports)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        checks.equal(f"{probe} is gRPC on the health port", {"port": 9611},
                     c.get(probe, {}).get("grpc"))
    checks.expect(c.get("startupProbe", {}).get("failureThreshold", 0) *
                  c.get("startupProbe", {}).get("periodSeconds", 0) >= 30,
                  "start-up probe allows at least 30 s for loading BPF", ">= 30 s",
                  c.get("startupProbe"))
    res = c.get("resources", {})
    checks.expect(bool(res.get("requests", {}).get("cpu")) and
                  bool(res.get("requests", {}).get("memory")) and
                  bool(res.get("limits", {}).get("memory")),
                  "resources: cpu and memory requests, memory limit", "all three set", res)

    svc = one(checks, docs, "Service")
    checks.equal("metrics Service prometheus annotations",
                 {"prometheus.io/scrape": "true", "prometheus.io/port": "9610",
                  "prometheus.io/path": "/metrics"},
                 {k: v for k, v in (svc.get("metadata", {}).get("annotations") or {}).items()
                  if k.startswith("prometheus.io/")})
    checks.equal("metrics Service is headless", "None", svc.get("spec", {}).get("clusterIP"))
    checks.equal("metrics Service port",
                 [{"name": "metrics", "port": 9610, "targetPort": "metrics", "protocol": "TCP"}],
                 svc.get("spec", {}).get("ports"))
    pod_labels = ds["spec"]["template"]["metadata"].get("labels", {})
    sel = svc.get("spec", {}).get("selector") or {"missing": "selector"}
    checks.expect(all(pod_labels.get(k) == v for k, v in sel.items()),
                  "metrics Service selects the agent's pods", f"a subset of {pod_labels}", sel)

    sa = one(checks, docs, "ServiceAccount")
    checks.equal("ServiceAccount automountServiceAccountToken", False,
                 sa.get("automountServiceAccountToken"))
    checks.equal("pod uses the ServiceAccount", sa.get("metadata", {}).get("name"),
                 spec.get("serviceAccountName"))

    checks.start("Kubernetes 1.29: AppArmor by annotation")
    docs = render(checks, helm, None, "--kube-version", "1.29.0")
    ds = one(checks, docs, "DaemonSet")
    annotations = ds.get("spec", {}).get("template", {}).get("metadata", {}).get(
        "annotations") or {}
    checks.equal("AppArmor annotation", "unconfined",
                 annotations.get("container.apparmor.security.beta.kubernetes.io/agent"))
    checks.equal("no appArmorProfile field before 1.30", None,
                 agent_container(ds).get("securityContext", {}).get("appArmorProfile"))


def check_notes(checks, helm):
    checks.start("NOTES.txt")
    rc, out, err = helm.run("install", RELEASE, helm.chart, "--namespace", NAMESPACE,
                            "--dry-run=client")
    if not checks.expect(rc == 0, "helm install --dry-run=client", "exit 0",
                         f"exit {rc}: {err.strip()}"):
        return
    notes = out.split("\nNOTES:\n", 1)[-1] if "\nNOTES:\n" in out else ""
    selector = f"-l app.kubernetes.io/name=vigil,app.kubernetes.io/instance={RELEASE}"
    for want in (selector, "--field-selector spec.nodeName=NODE",
                 f'kubectl exec -n {NAMESPACE} "$POD" -- vigil status',
                 f'kubectl exec -n {NAMESPACE} "$POD" -- vigil observe -f',
                 f'kubectl exec -n {NAMESPACE} "$POD" -- vigil events -f',
                 f'kubectl exec -n {NAMESPACE} "$POD" -- vigil policy list',
                 "vigil --server unix:///run/vigil/vigil.sock status",
                 ":9610/metrics", "vigil-agent --cleanup"):
        checks.expect(want in notes, "NOTES mention " + want, want, notes or out)


def check_changed_values(checks, helm):
    values = {
        "privileged": True,
        "image": {"repository": "registry.example.com/vigil-agent", "tag": "0.2.0"},
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
        "policies": {"deny-tmp.yaml": DENY_TMP, "audit.yml": AUDIT_TWO},
        "metrics": {"port": 9700},
        "health": {"port": 9701},
        "agent": {"logLevel": "debug", "flowInterfaces": ["eth0", "eth1"]},
        "extraArgs": ["--flow-table-size=262144"],
        "extraEnv": [{"name": "EXTRA", "value": "1"}],
        "extraVolumes": [{"name": "scratch", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "nodeSelector": {"node-role.example.com/edge": "true"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "edge",
                         "effect": "NoSchedule"}],
        "resources": {"requests": {"cpu": "250m", "memory": "300Mi"},
                      "limits": {"cpu": "1", "memory": "1Gi"}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "20%"}},
        "priorityClassName": "",
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"example.com/tier": "node"},
        "export": {"enabled": True, "hostPath": "/var/log/vigil-x", "types": ["exec", "policy"],
                   "maxSize": 1048576, "maxFiles": 3},
        "mountTracefs": False,
    }
    checks.start("changed values: helm lint")
    rc, out, err = helm.run("lint", "--strict", helm.chart, values=values)
    checks.expect(rc == 0, "helm lint --strict with changed values", "exit 0",
                  f"exit {rc}: {out.strip()} {err.strip()}")

    checks.start("changed values")
    docs = render(checks, helm, values)
    ds = one(checks, docs, "DaemonSet")
    spec, c = pod_spec(ds), agent_container(ds)
    sc = c.get("securityContext", {})
    checks.equal("privileged=true", True, sc.get("privileged"))
    checks.equal("no capability list when privileged", None, sc.get("capabilities"))
    checks.equal("seccomp still Unconfined", {"type": "Unconfined"}, sc.get("seccompProfile"))
    checks.equal("bpffs propagation when privileged", "Bidirectional",
                 mounts(ds).get("bpffs", {}).get("mountPropagation"))
    checks.equal("image", "registry.example.com/vigil-agent:0.2.0", c.get("image"))
    checks.equal("version label follows the image tag", "0.2.0",
                 ds["metadata"]["labels"].get("app.kubernetes.io/version"))
    checks.equal("arg --metrics-addr", "0.0.0.0:9700", arg(c, "--metrics-addr"))
    checks.equal("arg --health-addr", "0.0.0.0:9701", arg(c, "--health-addr"))
    checks.equal("arg --log-level", "debug", arg(c, "--log-level"))
    checks.equal("arg --flow-interfaces", "eth0,eth1", arg(c, "--flow-interfaces"))
    checks.equal("extraArgs come last", "--flow-table-size=262144", (c.get("args") or [""])[-1])
    checks.equal("extraEnv", {"name": "EXTRA", "value": "1"},
                 next((e for e in c.get("env", []) if e["name"] == "EXTRA"), None))
    checks.equal("extraVolumes", {"name": "scratch", "emptyDir": {}}, volumes(ds).get("scratch"))
    checks.equal("extraVolumeMounts", {"name": "scratch", "mountPath": "/scratch"},
                 mounts(ds).get("scratch"))
    checks.equal("ports", {"metrics": 9700, "health": 9701},
                 {p["name"]: p.get("containerPort") for p in c.get("ports", [])})
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        checks.equal(f"{probe} on the health port", {"port": 9701}, c.get(probe, {}).get("grpc"))
    # Helm merges maps with the defaults: the os selector stays unless set to null.
    checks.equal("nodeSelector", {"kubernetes.io/os": "linux", **values["nodeSelector"]},
                 spec.get("nodeSelector"))
    checks.equal("tolerations", values["tolerations"], spec.get("tolerations"))
    checks.equal("resources", values["resources"], c.get("resources"))
    checks.equal("updateStrategy", values["updateStrategy"], ds["spec"].get("updateStrategy"))
    checks.equal("no priorityClassName when empty", None, spec.get("priorityClassName"))
    meta = ds["spec"]["template"]["metadata"]
    checks.equal("podAnnotations", "platform", (meta.get("annotations") or {}).get(
        "example.com/team"))
    checks.equal("podLabels", "node", meta.get("labels", {}).get("example.com/tier"))
    checks.equal("podLabels stay out of the selector", None,
                 ds["spec"]["selector"]["matchLabels"].get("example.com/tier"))
    checks.equal("export file", "/var/log/vigil-x/events.jsonl", arg(c, "--export-file"))
    checks.equal("export types", "exec,policy", arg(c, "--export-types"))
    checks.equal("export max size", "1048576", arg(c, "--export-max-size"))
    checks.equal("export max files", "3", arg(c, "--export-max-files"))
    checks.equal("export volume", {"path": "/var/log/vigil-x", "type": "DirectoryOrCreate"},
                 volumes(ds).get("export", {}).get("hostPath"))
    checks.equal("export mount", {"name": "export", "mountPath": "/var/log/vigil-x"},
                 mounts(ds).get("export"))
    checks.equal("no tracefs when mountTracefs is false", (None, None),
                 (volumes(ds).get("tracefs"), mounts(ds).get("tracefs")))

    svc = one(checks, docs, "Service")
    checks.equal("Service port", 9700, (svc.get("spec", {}).get("ports") or [{}])[0].get("port"))
    checks.equal("prometheus.io/port", "9700",
                 (svc.get("metadata", {}).get("annotations") or {}).get("prometheus.io/port"))

    sm = one(checks, docs, "ServiceMonitor")
    checks.equal("ServiceMonitor apiVersion", "monitoring.coreos.com/v1", sm.get("apiVersion"))
    checks.equal("ServiceMonitor label", "prom",
                 sm.get("metadata", {}).get("labels", {}).get("release"))
    endpoint = (sm.get("spec", {}).get("endpoints") or [{}])[0]
    checks.equal("ServiceMonitor endpoint", ("metrics", "/metrics", "15s"),
                 (endpoint.get("port"), endpoint.get("path"), endpoint.get("interval")))
    svc_labels = svc.get("metadata", {}).get("labels", {})
    sm_sel = sm.get("spec", {}).get("selector", {}).get("matchLabels") or {"missing": "selector"}
    checks.expect(all(svc_labels.get(k) == v for k, v in sm_sel.items()),
                  "ServiceMonitor selects the metrics Service", f"a subset of {svc_labels}",
                  sm_sel)
    checks.equal("ServiceMonitor namespaceSelector", {"matchNames": [NAMESPACE]},
                 sm.get("spec", {}).get("namespaceSelector"))

    cm = one(checks, docs, "ConfigMap")
    data = cm.get("data") or {}
    checks.equal("ConfigMap keys", ["audit.yml", "deny-tmp.yaml"], sorted(data))
    checks.equal("deny-tmp.yaml verbatim", DENY_TMP, data.get("deny-tmp.yaml"))
    checks.equal("audit.yml verbatim (two documents, no final newline)", AUDIT_TWO,
                 data.get("audit.yml"))

    checks.start("existingPolicyConfigMap")
    docs = render(checks, helm, {"existingPolicyConfigMap": "site-policies",
                                 "policies": {"ignored.yaml": DENY_TMP}})
    checks.equal("no ConfigMap rendered", [], of_kind(docs, "ConfigMap"))
    ds = one(checks, docs, "DaemonSet")
    checks.equal("policy volume names the given ConfigMap", {"name": "site-policies"},
                 volumes(ds).get("policies", {}).get("configMap"))
    checks.equal("still mounted as a directory", "/etc/vigil/policies",
                 mounts(ds).get("policies", {}).get("mountPath"))

    checks.start("metrics disabled")
    docs = render(checks, helm, {"metrics": {"enabled": False}})
    c = agent_container(one(checks, docs, "DaemonSet"))
    checks.equal("no metrics Service", [], of_kind(docs, "Service"))
    checks.equal("no --metrics-addr", None, arg(c, "--metrics-addr"))
    checks.equal("only the health port", ["health"], [p["name"] for p in c.get("ports", [])])

    checks.start("IPv6 and node-address binds, image digest")
    digest = "sha256:" + "ab" * 32
    docs = render(checks, helm, {"metrics": {"bindAddress": "::"},
                                 "health": {"bindAddress": "$(HOST_IP)"},
                                 "image": {"digest": digest}})
    c = agent_container(one(checks, docs, "DaemonSet"))
    checks.equal("IPv6 metrics address in brackets", "[::]:9610", arg(c, "--metrics-addr"))
    checks.equal("downward-API health address", "$(HOST_IP):9611", arg(c, "--health-addr"))
    checks.equal("image by digest", "localhost/vigil-agent@" + digest, c.get("image"))


# Values that the schema or the templates refuse: (what, values, words the error must contain).
REFUSED = [
    ("metrics.port not a number", {"metrics": {"port": "abc"}}, ["/metrics/port", "integer"]),
    ("metrics.port above 65535", {"metrics": {"port": 70000}}, ["/metrics/port", "maximum"]),
    ("health.port zero", {"health": {"port": 0}}, ["/health/port", "minimum"]),
    ("health.port not a number", {"health": {"port": "abc"}}, ["/health/port", "integer"]),
    ("unknown image.pullPolicy", {"image": {"pullPolicy": "Sometimes"}},
     ["/image/pullPolicy", "IfNotPresent"]),
    ("privileged as a string", {"privileged": "yes"}, ["/privileged", "boolean"]),
    ("unknown log level", {"agent": {"logLevel": "loud"}}, ["/agent/logLevel"]),
    ("policy file name without .yaml", {"policies": {"deny-tmp": DENY_TMP}},
     ["/policies", "deny-tmp"]),
    ("misspelt top-level value", {"privilegd": True}, ["privilegd", "not allowed"]),
    ("export size below 4096", {"export": {"enabled": True, "maxSize": 100}},
     ["/export/maxSize"]),
    ("unknown export type", {"export": {"types": ["exec", "everything"]}},
     ["/export/types/1"]),
    ("same port for metrics and health", {"metrics": {"port": 9611}},
     ["metrics.port", "health.port"]),
    ("ServiceMonitor without metrics",
     {"metrics": {"enabled": False}, "serviceMonitor": {"enabled": True}},
     ["serviceMonitor.enabled", "metrics.enabled"]),
]


def check_refused(checks, helm):
    checks.start("values outside the schema")
    for what, values, words in REFUSED:
        rc, out, err = helm.template(values)
        msg = err.strip()
        checks.expect(rc != 0, f"{what}: helm template fails", "non-zero exit",
                      f"exit 0 with {values}")
        checks.expect(all(w in msg for w in words), f"{what}: the message names the field",
                      f"a message containing {words}", msg or "(no message)")
    rc, out, err = helm.run("lint", helm.chart, values={"metrics": {"port": "abc"}})
    checks.expect(rc != 0 and "/metrics/port" in out + err, "helm lint refuses a bad port too",
                  "non-zero exit naming /metrics/port", f"exit {rc}: {(out + err).strip()}")


def values_example(chart):
    """The policies example in the comments of values.yaml, as a values map."""
    lines, inside = [], False
    with open(os.path.join(chart, "values.yaml")) as f:
        for line in f:
            if line.startswith("#   policies:"):
                inside = True
            elif inside and not line.startswith("#     "):
                break
            if inside:
                lines.append(line[1:])
    return yaml.safe_load("".join(lines)) if lines else None


def check_policies_validate(checks, helm, vigil, workdir):
    checks.start("rendered policies pass `vigil policy validate`")
    example = values_example(helm.chart)
    checks.expect(isinstance(example, dict) and example.get("policies"),
                  "values.yaml has a policies example in its comments", "a policies map",
                  example)
    policies = {"deny-tmp.yaml": DENY_TMP, "audit.yml": AUDIT_TWO}
    policies.update((example or {}).get("policies") or {})
    docs = render(checks, helm, {"policies": policies})
    data = one(checks, docs, "ConfigMap").get("data") or {}
    checks.equal("every policy file in the ConfigMap", sorted(policies), sorted(data))

    have_cli = vigil and os.access(vigil, os.X_OK)
    if not have_cli:
        print(f"NOTE: no vigil CLI at {vigil or '(none given)'}: policy files are parsed but "
              "not validated")
    for name, text in sorted(data.items()):
        try:
            parsed = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as e:
            checks.expect(False, f"{name} parses as YAML", "valid YAML", str(e))
            continue
        checks.expect(parsed and all(d.get("kind") == "Policy" for d in parsed),
                      f"{name}: every document is a Policy", "kind: Policy",
                      [d.get("kind") for d in parsed])
        if not have_cli:
            continue
        path = os.path.join(workdir, name)
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([vigil, "policy", "validate", "-f", path], capture_output=True,
                           text=True, timeout=60)
        checks.expect(p.returncode == 0, f"vigil policy validate -f {name}", "exit 0",
                      f"exit {p.returncode}: {(p.stdout + p.stderr).strip()}")

    if have_cli:
        # The validation must be able to fail: a rendered policy with a relative path.
        bad = DENY_TMP.replace("/tmp/", "tmp/")
        docs = render(checks, helm, {"policies": {"bad.yaml": bad}})
        path = os.path.join(workdir, "bad.yaml")
        with open(path, "w") as f:
            f.write((one(checks, docs, "ConfigMap").get("data") or {}).get("bad.yaml", ""))
        p = subprocess.run([vigil, "policy", "validate", "-f", path], capture_output=True,
                           text=True, timeout=60)
        checks.expect(p.returncode != 0 and "absolute" in p.stdout + p.stderr,
                      "vigil policy validate refuses a broken policy from the ConfigMap",
                      "non-zero exit, 'not an absolute path'",
                      f"exit {p.returncode}: {(p.stdout + p.stderr).strip()}")


def check_app_version(checks, chart, vigil):
    checks.start("the chart's appVersion is the version the build makes")
    with open(os.path.join(chart, "Chart.yaml")) as f:
        app_version = str(yaml.safe_load(f).get("appVersion"))
    if not (vigil and os.access(vigil, os.X_OK)):
        print(f"NOTE: no vigil CLI at {vigil or '(none given)'}: appVersion not compared")
        return
    p = subprocess.run([vigil, "--version"], capture_output=True, text=True, timeout=60)
    checks.equal("appVersion (the default image tag) against `vigil --version`",
                 f"vigil {app_version}", p.stdout.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--helm", required=True, help="the helm binary")
    ap.add_argument("--chart", required=True, help="the chart directory (helm/vigil)")
    ap.add_argument("--vigil", help="the built vigil CLI, for `vigil policy validate`")
    args = ap.parse_args()

    if not os.access(args.helm, os.X_OK):
        print(f"FAIL: helm not found at {args.helm}: run `make deps`")
        return 1
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="vigil-helm-test.") as workdir:
        helm = Helm(args.helm, os.path.abspath(args.chart), workdir)
        rc, out, _ = helm.run("version", "--short")
        print(f"helm {out.strip()} (exit {rc}), chart {helm.chart}")
        check_defaults(checks, helm)
        check_changed_values(checks, helm)
        check_refused(checks, helm)
        check_policies_validate(checks, helm, args.vigil, workdir)
        check_app_version(checks, helm.chart, args.vigil)
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
