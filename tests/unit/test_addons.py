"""nginx, pacemaker/corosync, CoreDNS, add-on and RBAC rendering.

nginx.conf is checked by `nginx -t` and corosync.conf by `corosync -t`, the real programs
that read them, under a temporary prefix so that nothing is written outside it. The crm
script cannot be checked the same way (`crm configure verify` needs a running cluster),
so its statements are parsed and checked structurally. Manifests are parsed document by
document and checked field by field.

Each component is asked directly (host_files / cluster_files) with fixed secrets, so
these tests do not depend on the other components of the pipeline.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hakube.components import addons, coredns, nginx, pacemaker, rbac
from hakube.components.base import HEADER, File, RenderContext, header

from .conftest import SECRETS, topology

SPECS = ["ha3", "nginx-dedicated", "agents-local", "pacemaker", "pacemaker-two-node"]
MINE = (nginx, pacemaker, coredns, addons, rbac)


def ctx(spec: str) -> RenderContext:
    return RenderContext(topology(spec), SECRETS)


def host_files(spec: str, host: str) -> dict[str, File]:
    c = ctx(spec)
    h = c.topo.host(host)
    return {f.path: f for comp in MINE for f in comp.host_files(c, h)}


def cluster_files(spec: str) -> dict[str, File]:
    c = ctx(spec)
    return {f.path: f for comp in MINE for f in getattr(comp, "cluster_files", lambda _: [])(c)}


def docs(spec: str, path: str) -> list[dict]:
    return list(yaml.safe_load_all(cluster_files(spec)[path].content))


def one(documents: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# ---- nginx ----------------------------------------------------------------------------------

needs_nginx = pytest.mark.skipif(
    not shutil.which("nginx") or not Path(nginx.STREAM_MODULE).exists(),
    reason="nginx / libnginx-mod-stream not installed: run scripts/setup.sh")

NGINX_CASES = [("pacemaker", "server-1"), ("nginx-dedicated", "lb-1"), ("agents-local", "agent-1")]


def nginx_test(text: str, tmp_path: Path, dump: bool = False) -> subprocess.CompletedProcess:
    """`nginx -t` (or -T) on `text`; only the pid file moves into tmp_path (nginx -t creates it)."""
    assert text.count("pid /run/nginx.pid;") == 1
    conf = tmp_path / "nginx.conf"
    conf.write_text(text.replace("pid /run/nginx.pid;", f"pid {tmp_path}/nginx.pid;"))
    return subprocess.run(["nginx", "-T" if dump else "-t", "-p", f"{tmp_path}/", "-e", "stderr",
                           "-c", str(conf)], capture_output=True, text=True)


@needs_nginx
@pytest.mark.parametrize("spec,host", NGINX_CASES)
def test_nginx_accepts_rendered_config(spec, host, tmp_path) -> None:
    r = nginx_test(host_files(spec, host)[nginx.CONFIG].content, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


@needs_nginx
def test_nginx_rejects_a_broken_config(tmp_path) -> None:
    """The check can fail: a typo in the rendered text is caught."""
    text = host_files("pacemaker", "server-1")[nginx.CONFIG].content
    assert nginx_test(text.replace("least_conn;", "least_con;"), tmp_path).returncode != 0


@needs_nginx
@pytest.mark.parametrize("spec,host,listen", [
    ("pacemaker", "server-1", "6443"),          # servers placement: every address, VIP included
    ("nginx-dedicated", "lb-1", "6443"),        # dedicated: every address
    ("agents-local", "agent-1", "127.0.0.1:6443"),  # local proxy for this agent only
])
def test_nginx_listens_on_the_front_door_only(spec, host, listen, tmp_path) -> None:
    """The whole effective configuration (nginx -T) has one listener and no http block."""
    r = nginx_test(host_files(spec, host)[nginx.CONFIG].content, tmp_path, dump=True)
    assert r.returncode == 0, r.stderr
    effective = [ln.split("#")[0].strip() for ln in r.stdout.splitlines()]
    listens = [ln.split()[1] for ln in effective if ln.startswith("listen ")]
    assert listens == [listen]
    assert not any(re.match(r"^http\s*\{", ln) for ln in effective), "an http block would serve port 80"
    assert not any(re.match(r"^include\s", ln) for ln in effective)


def test_nginx_upstreams_and_timeouts() -> None:
    t = topology("nginx-dedicated")
    text = host_files("nginx-dedicated", "lb-2")[nginx.CONFIG].content
    for s in t.servers:
        assert (f"server {t.address(s)}:{t.apiserver_port} max_fails={nginx.MAX_FAILS} "
                f"fail_timeout={nginx.FAIL_TIMEOUT_S}s;") in text
    assert text.count(" max_fails=") == len(t.servers)
    assert "proxy_connect_timeout 500ms;" in text  # spec connectTimeoutMs
    assert "proxy_next_upstream on;" in text
    assert f"proxy_timeout {nginx.PROXY_TIMEOUT};" in text
    assert "zone kube_apiserver" in text  # failure state shared by all workers
    assert text.startswith(header() + "\n")


def test_nginx_on_servers_forwards_to_the_moved_apiserver_port() -> None:
    t = topology("pacemaker")
    assert t.apiserver_port == 6444 and t.endpoint_port == 6443
    text = host_files("pacemaker", "server-2")[nginx.CONFIG].content
    assert "listen 6443 " in text and f"{t.address('server-1')}:6444 " in text


def test_nginx_only_where_it_runs_and_restarted_unless_pacemaker_manages_it() -> None:
    assert nginx.CONFIG not in host_files("ha3", "server-1")  # haproxy there
    assert nginx.CONFIG not in host_files("nginx-dedicated", "server-1")
    assert nginx.CONFIG not in host_files("agents-local", "server-1")
    dropin = host_files("agents-local", "agent-3")[nginx.UNIT_DROPIN].content
    assert "Restart=on-failure" in dropin
    assert nginx.UNIT_DROPIN in host_files("nginx-dedicated", "lb-1")
    # pacemaker starts, stops and restarts nginx on the servers: systemd must not
    assert nginx.UNIT_DROPIN not in host_files("pacemaker", "server-1")


# ---- corosync / pacemaker -------------------------------------------------------------------

needs_corosync = pytest.mark.skipif(not shutil.which("corosync"), reason="corosync not installed: run scripts/setup.sh")


def corosync_test(files: dict[str, File], tmp_path: Path) -> subprocess.CompletedProcess:
    """`corosync -t` on the rendered config with the rendered key.

    Changed for the test, nothing else: the key file's path (into tmp_path), stderr logging
    (to read errors), and the first member's address becomes 127.0.0.1, because corosync
    refuses a configuration in which this machine is not a member.
    """
    key = tmp_path / "authkey"
    key.write_text(files[pacemaker.COROSYNC_AUTHKEY].content)
    os.chmod(key, files[pacemaker.COROSYNC_AUTHKEY].mode)
    text = files[pacemaker.COROSYNC_CONF].content
    first = re.search(r"ring0_addr: (\S+)", text).group(1)
    text = (text.replace(f"keyfile: {pacemaker.COROSYNC_AUTHKEY}", f"keyfile: {key}")
                .replace("to_stderr: no", "to_stderr: yes")
                .replace(f"ring0_addr: {first}\n", "ring0_addr: 127.0.0.1\n", 1))
    conf = tmp_path / "corosync.conf"
    conf.write_text(text)
    return subprocess.run(["corosync", "-t", "-c", str(conf)], capture_output=True, text=True)


@needs_corosync
@pytest.mark.parametrize("spec,host", [("pacemaker", "server-1"), ("pacemaker-two-node", "lb-b"),
                                       ("agents-local", "server-2")])
def test_corosync_accepts_rendered_config(spec, host, tmp_path) -> None:
    r = corosync_test(host_files(spec, host), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_corosync
def test_corosync_rejects_a_broken_config(tmp_path) -> None:
    """The check can fail: a wrong value, or a duplicate node id, is caught."""
    files = host_files("pacemaker", "server-1")
    conf = files[pacemaker.COROSYNC_CONF]
    for bad in (conf.content.replace("crypto_cipher: aes256", "crypto_cipher: aes999"),
                conf.content.replace("nodeid: 2", "nodeid: 1")):
        files[pacemaker.COROSYNC_CONF] = File(conf.path, bad)
        assert corosync_test(files, tmp_path).returncode != 0


def parse_corosync(text: str) -> list:
    """corosync.conf as nested [(key, value-or-list)], keeping repeated sections."""
    root: list = []
    stack = [root]
    for raw in text.splitlines():
        line = raw.split("#")[0].strip()
        if not line:
            continue
        if line.endswith("{"):
            section: list = []
            stack[-1].append((line[:-1].strip(), section))
            stack.append(section)
        elif line == "}":
            stack.pop()
        else:
            k, v = line.split(":", 1)
            stack[-1].append((k.strip(), v.strip()))
    assert len(stack) == 1, "unbalanced braces"
    return root


def section(items: list, name: str) -> dict:
    found = [v for k, v in items if k == name]
    assert len(found) == 1, name
    return dict(found[0])


@pytest.mark.parametrize("spec", ["pacemaker", "pacemaker-two-node", "agents-local"])
def test_corosync_members_crypto_and_quorum(spec) -> None:
    t = topology(spec)
    confs = {h: host_files(spec, h)[pacemaker.COROSYNC_CONF].content for h in t.vip_hosts}
    assert len(set(confs.values())) == 1, "corosync.conf must be identical on every member"
    parsed = parse_corosync(next(iter(confs.values())))
    totem = section(parsed, "totem")
    assert totem["cluster_name"] == t.name
    assert (totem["transport"], totem["crypto_cipher"], totem["crypto_hash"]) == ("knet", "aes256", "sha256")
    assert totem["keyfile"] == pacemaker.COROSYNC_AUTHKEY
    nodelist = next(v for k, v in parsed if k == "nodelist")
    nodes = [dict(v) for k, v in nodelist if k == "node"]
    assert [(n["name"], n["ring0_addr"], n["nodeid"]) for n in nodes] == \
        [(h, t.address(h), str(i + 1)) for i, h in enumerate(t.vip_hosts)]
    quorum = section(parsed, "quorum")
    assert quorum["provider"] == "corosync_votequorum"
    assert quorum.get("two_node") == ("1" if len(t.vip_hosts) == 2 else None)
    logging = section(parsed, "logging")
    assert logging["to_syslog"] == "yes" and logging["to_logfile"] == "no"


def test_authkey_is_the_secret_readable_by_root_only() -> None:
    t = topology("pacemaker-two-node")
    for h in t.vip_hosts:
        key = host_files("pacemaker-two-node", h)[pacemaker.COROSYNC_AUTHKEY]
        assert key.mode == 0o400 and key.owner == "root" and key.secret
        assert key.content == SECRETS.corosync_authkey
    assert not any(p.startswith("/etc/corosync") for p in host_files("pacemaker-two-node", "server-1"))


def crm_statements(text: str) -> list[list[str]]:
    """The crm script's statements as token lists: comments dropped, continuations joined."""
    out, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            assert not current, "a comment or blank line inside a continued statement"
            continue
        current += raw.strip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        out.append(current.split())
        current = ""
    assert not current, "the script ends inside a continued statement"
    return out


def params(tokens: list[str], keyword: str) -> dict[str, str]:
    """name=value pairs after `keyword` up to the next keyword."""
    i = tokens.index(keyword)
    out = {}
    for tok in tokens[i + 1:]:
        if "=" not in tok:
            break
        k, v = tok.split("=", 1)
        out[k] = v
    return out


@pytest.mark.parametrize("spec,lb,nic", [("pacemaker", "nginx", "ens3"),
                                         ("pacemaker-two-node", "haproxy", None),
                                         ("agents-local", None, "eth0")])
def test_crm_script_groups_the_vip_with_the_load_balancer(spec, lb, nic) -> None:
    t = topology(spec)
    text = host_files(spec, t.vip_hosts[0])[pacemaker.CRM_SCRIPT].content
    assert all(host_files(spec, h)[pacemaker.CRM_SCRIPT].content == text for h in t.vip_hosts)
    stmts = crm_statements(text)
    by_kind: dict[str, list[list[str]]] = {}
    for s in stmts:
        assert s[0] in ("property", "primitive", "group"), s
        by_kind.setdefault(s[0], []).append(s)

    prop = params(by_kind["property"][0], "cib-bootstrap-options:")
    assert prop == {"stonith-enabled": "false", "no-quorum-policy": "stop"}

    primitives = {s[1]: s for s in by_kind["primitive"]}
    vip = primitives[pacemaker.VIP_RESOURCE]
    assert vip[2] == "ocf:heartbeat:IPaddr2"
    expected = {"ip": t.endpoint_host, "cidr_netmask": str(t.cluster.spec.network.node_cidr.prefixlen)}
    if nic:
        expected["nic"] = nic
    assert params(vip, "params") == expected
    assert "monitor" in vip

    (group,) = by_kind["group"]
    members = group[2:group.index("meta")]
    if lb:
        assert primitives[pacemaker.LB_RESOURCE][2] == f"systemd:{lb}"
        assert "monitor" in primitives[pacemaker.LB_RESOURCE]
        # one unit, load balancer first: the VIP arrives where something listens
        assert members == [pacemaker.LB_RESOURCE, pacemaker.VIP_RESOURCE]
    else:
        assert pacemaker.LB_RESOURCE not in primitives
        assert members == [pacemaker.VIP_RESOURCE]
    meta = params(group, "meta")
    assert meta["migration-threshold"] == "2" and meta["failure-timeout"] == "60s"
    assert set(members) <= set(primitives)


def test_crm_script_explains_fencing_and_keeps_comments_xml_safe() -> None:
    text = host_files("pacemaker-two-node", "lb-a")[pacemaker.CRM_SCRIPT].content
    assert "stonith-enabled=true" in text and "fence" in text  # what production should do
    # crmsh keeps comments in the CIB as XML comments, where "--" is not allowed
    assert not any("--" in ln for ln in text.splitlines() if ln.lstrip().startswith("#"))


def test_pacemaker_only_on_vip_hosts() -> None:
    for spec in ("pacemaker", "pacemaker-two-node", "agents-local"):
        t = topology(spec)
        for h in t.hosts:
            has = pacemaker.CRM_SCRIPT in host_files(spec, h.name)
            assert has == (h.name in t.vip_hosts), (spec, h.name)
    assert pacemaker.COROSYNC_CONF not in host_files("ha3", "server-1")


# ---- manifests --------------------------------------------------------------------------------


def test_every_manifest_document_starts_with_the_header() -> None:
    for spec in SPECS:
        for path, f in cluster_files(spec).items():
            assert not path.startswith("/") and path.startswith("manifests/")
            for part in f.content.split("\n---\n"):
                assert part.startswith(f"# {HEADER}\n"), (spec, path, part[:80])
                assert yaml.safe_load(part)["apiVersion"]


def test_coredns_ha3_spreads_two_replicas_over_tolerated_nodes() -> None:
    d = docs("ha3", coredns.MANIFEST)
    assert [(x["apiVersion"], x["kind"]) for x in d] == [
        ("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"), ("policy/v1beta1", "PodDisruptionBudget"), ("v1", "Service")]
    assert all(x["metadata"]["namespace"] == "kube-system" for x in d if x["kind"] not in
               ("ClusterRole", "ClusterRoleBinding"))
    # agent-2 is tainted dedicated=batch:NoSchedule, which CoreDNS does not tolerate
    assert coredns.eligible_nodes(topology("ha3")) == ("server-1", "server-2", "server-3", "agent-1")
    dep = one(d, "Deployment")
    assert dep["spec"]["replicas"] == 2  # min(spec 2, 4 eligible nodes)
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = dep["spec"]["template"]["spec"]
    terms = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["topologyKey"] == "kubernetes.io/hostname"
    assert terms[0]["labelSelector"]["matchExpressions"] == [
        {"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    tolerated = {t["key"] for t in pod["tolerations"]}
    assert {"CriticalAddonsOnly", "node-role.kubernetes.io/control-plane"} <= tolerated
    (c,) = pod["containers"]
    assert c["image"] == "registry.k8s.io/coredns/coredns:v1.8.0"
    assert (c["readinessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["port"]) == ("/ready", 8181)
    assert (c["livenessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["port"]) == ("/health", 8080)
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    assert c["securityContext"]["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()

    pdb = one(d, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    svc = one(d, "Service", "kube-dns")
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sorted((p["port"], p["protocol"]) for p in svc["spec"]["ports"]) == [
        (53, "TCP"), (53, "UDP"), (9153, "TCP")]

    role = one(d, "ClusterRole")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               if set(rule["verbs"]) == {"list", "watch"}}
    assert granted == {("", "endpoints"), ("", "services"), ("", "pods"), ("", "namespaces"),
                       ("discovery.k8s.io", "endpointslices")}

    corefile = one(d, "ConfigMap")["data"]["Corefile"]
    for line in ("errors", "lameduck 5s", "ready", "kubernetes cluster.local in-addr.arpa ip6.arpa {",
                 "pods insecure", "fallthrough in-addr.arpa ip6.arpa", "prometheus :9153",
                 "forward . /etc/resolv.conf", "cache 30", "loop", "reload", "loadbalance"):
        assert line in corefile, line


def test_coredns_never_asks_for_more_required_replicas_than_nodes() -> None:
    d = docs("pacemaker", coredns.MANIFEST)
    dep = one(d, "Deployment")
    # 6 asked for; 3 servers + agent-1 eligible (agent-2's gpu:NoExecute taint is not tolerated)
    assert dep["spec"]["replicas"] == 4
    # every eligible node holds a replica: the update removes one before adding one
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert one(d, "PodDisruptionBudget")["apiVersion"] == "policy/v1"  # Kubernetes 1.21
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/coredns/coredns:v1.8.4"


def test_coredns_tolerates_the_server_taint_of_every_version() -> None:
    """Servers register with node-role.kubernetes.io/master (< 1.24) or /control-plane."""
    for spec, minor in (("ha3", (1, 20)), ("pacemaker-two-node", (1, 30))):
        t = topology(spec)
        assert t.cluster.spec.distribution.minor == minor
        assert not t.cluster.spec.control_plane.schedulable_servers
        assert set(t.servers) <= set(coredns.eligible_nodes(t))
    # k3s 1.30, 3 servers and no agent: 3 replicas, one per server
    dep = one(docs("pacemaker-two-node", coredns.MANIFEST), "Deployment")
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_coredns_preferred_spread_keeps_the_requested_replicas() -> None:
    d = docs("agents-local", coredns.MANIFEST)
    dep = one(d, "Deployment")
    assert dep["spec"]["replicas"] == 8
    anti = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert list(anti) == ["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] == \
        "kubernetes.io/hostname"
    assert one(d, "Service")["spec"]["clusterIP"] == "10.32.0.53"
    assert "kubernetes lab.internal in-addr.arpa ip6.arpa" in one(d, "ConfigMap")["data"]["Corefile"]


def test_coredns_disabled_renders_nothing() -> None:
    assert coredns.MANIFEST not in cluster_files("nginx-dedicated")


def test_dashboard_is_read_only_by_default() -> None:
    d = docs("ha3", addons.DASHBOARD)
    bindings = [x for x in d if x["kind"] == "ClusterRoleBinding"]
    assert {b["roleRef"]["name"] for b in bindings} == {"view", "hakube:dashboard-cluster-reader"}
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": addons.DASHBOARD_ACCOUNT,
                                  "namespace": "kubernetes-dashboard"}]
    reader = one(d, "ClusterRole", "hakube:dashboard-cluster-reader")
    for rule in reader["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
        assert "secrets" not in rule["resources"] and "*" not in rule["resources"]
    secret = one(d, "Secret")
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == addons.DASHBOARD_ACCOUNT
    assert secret["metadata"]["namespace"] == "kubernetes-dashboard"
    assert one(d, "ServiceAccount")["metadata"]["name"] == addons.DASHBOARD_ACCOUNT


def test_dashboard_cluster_admin_only_when_asked() -> None:
    d = docs("pacemaker-two-node", addons.DASHBOARD)
    (binding,) = [x for x in d if x["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == "cluster-admin"


@pytest.mark.parametrize("spec,ports,image", [
    ("ha3", (30080, 30443), "registry.k8s.io/ingress-nginx/controller:v1.2.0@sha256:"),
    ("pacemaker-two-node", (31080, 31443), "registry.k8s.io/ingress-nginx/controller:v1.11.5"),
])
def test_ingress_controller_on_node_ports(spec, ports, image) -> None:
    d = docs(spec, addons.INGRESS)
    svc = one(d, "Service", "ingress-nginx-controller")
    assert svc["spec"]["type"] == "NodePort"
    assert {p["name"]: p["nodePort"] for p in svc["spec"]["ports"]} == {"http": ports[0], "https": ports[1]}
    dep = one(d, "Deployment", "ingress-nginx-controller")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"].startswith(image)
    assert {p["name"] for p in c["ports"]} >= {p["targetPort"] for p in svc["spec"]["ports"]}
    assert "--controller-class=k8s.io/ingress-nginx" in c["args"]
    assert one(d, "IngressClass")["spec"]["controller"] == "k8s.io/ingress-nginx"
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == one(d, "ServiceAccount")["metadata"]["name"]
    assert all(x["metadata"].get("namespace", "ingress-nginx") == "ingress-nginx" for x in d)


def test_metallb_renders_the_pool_only() -> None:
    d = docs("pacemaker-two-node", addons.METALLB)
    assert [(x["apiVersion"], x["kind"]) for x in d] == [
        ("metallb.io/v1beta1", "IPAddressPool"), ("metallb.io/v1beta1", "L2Advertisement")]
    pool, l2 = d
    assert pool["spec"]["addresses"] == ["192.168.70.200-192.168.70.220", "192.168.70.240/29"]
    assert l2["spec"]["ipAddressPools"] == [pool["metadata"]["name"]]
    assert {x["metadata"]["namespace"] for x in d} == {"metallb-system"}


def test_disabled_addons_render_nothing() -> None:
    files = cluster_files("nginx-dedicated")
    assert set(files) == {rbac.MANIFEST}


def test_health_check_rbac_for_the_lb_check_certificate() -> None:
    d = docs("ha3", rbac.MANIFEST)
    role = one(d, "ClusterRole", "hakube:health-check")
    (rule,) = role["rules"]
    assert rule["verbs"] == ["get"] and "resources" not in rule
    assert {"/readyz", "/readyz/*", "/livez", "/livez/*", "/healthz"} <= set(rule["nonResourceURLs"])
    binding = one(d, "ClusterRoleBinding", "hakube:health-check")
    assert binding["roleRef"]["name"] == "hakube:health-check"
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "hakube:lb-check"}]
    kubelet = one(d, "ClusterRoleBinding", "hakube:apiserver-kubelet-api-admin")
    assert kubelet["roleRef"]["name"] == "system:kubelet-api-admin"
    assert kubelet["subjects"][0]["name"] == "kube-apiserver-kubelet-client"


def test_k3s_binds_its_own_kubelet_client() -> None:
    d = docs("pacemaker-two-node", rbac.MANIFEST)
    assert [x["metadata"]["name"] for x in d] == ["hakube:health-check", "hakube:health-check"]


# ---- determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_rendering_is_deterministic(spec) -> None:
    def everything() -> list[tuple]:
        c = ctx(spec)
        out = [(h.name, f) for h in c.topo.hosts for comp in MINE for f in comp.host_files(c, h)]
        out += [("_cluster", f) for comp in MINE for f in getattr(comp, "cluster_files", lambda _: [])(c)]
        return out

    first = everything()
    assert first == everything()
    paths = [(where, f.path) for where, f in first]
    assert len(paths) == len(set(paths)), "two of these components render the same path"
