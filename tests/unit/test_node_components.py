"""Node and control-plane components, and K3s: fixture specs in, targeted checks on the
rendered files out (the golden-tree test covers whole files; these say what matters).

Specs: ha3 (kubernetes 1.20, HAProxy + keepalived on the servers), k8s127 (the same on
1.27, with feature gates and extra arguments), k3s3 (K3s, agents-local), k3s-kubevip (K3s
1.22 with kube-vip), k3s-external (K3s on PostgreSQL, dedicated load balancers).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from hakube import paths
from hakube.components import k3s, kube_vip
from hakube.components.base import File, RenderContext
from hakube.render import Rendered, render
from hakube.spec import loads
from hakube.topology import Topology, derive

from .conftest import FIXTURES, SECRETS, rendered, topology

K8S_SPECS = ["ha3", "k8s127"]
K3S_SPECS = ["k3s3", "k3s-kubevip", "k3s-external"]
# The systemd units these components write (other components write their own).
UNITS = {f"/etc/systemd/system/{n}.service" for n in (
    "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
    "hakube-pod-routes", "k3s", "k3s-agent")}


# ---- helpers ------------------------------------------------------------------------------


def files(r: Rendered, host: str) -> dict[str, File]:
    return {f.path: f for f in r.hosts[host]}


def exec_args(unit: str) -> list[str]:
    """ExecStart= of a unit as systemd splits it: continuations joined, then words."""
    lines = unit.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ExecStart="))
    cmd = lines[start][len("ExecStart="):]
    i = start
    while cmd.endswith("\\"):
        i += 1
        cmd = cmd[:-1] + " " + lines[i]
    return shlex.split(cmd)


def flags(unit: str) -> dict[str, str]:
    """--name=value words of ExecStart= (the binary and subcommands left out)."""
    return dict(a[2:].split("=", 1) for a in exec_args(unit) if a.startswith("--"))


def variant(spec: str, *replacements: tuple[str, str]) -> Topology:
    """A fixture spec with some text replaced: versions and layouts without more files."""
    text = (FIXTURES / "specs" / f"{spec}.yaml").read_text()
    for old, new in replacements:
        assert old in text, f"{old!r} not in {spec}.yaml"
        text = text.replace(old, new)
    return derive(loads(text, source=FIXTURES / "specs" / f"{spec}.yaml").cluster)


def server_addresses(t: Topology) -> set[str]:
    return {t.address(s) for s in t.servers}


# ---- every spec ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", K8S_SPECS + K3S_SPECS)
def test_rendering_twice_gives_identical_files(spec: str) -> None:
    a, b = rendered(spec), rendered(spec)
    assert a.hosts == b.hosts and a.cluster == b.cluster


@pytest.mark.parametrize("spec", K8S_SPECS + K3S_SPECS)
def test_files_only_where_the_component_runs(spec: str) -> None:
    t, r = topology(spec), rendered(spec)
    for h in t.hosts:
        got = files(r, h.name)
        assert ("/etc/systemd/system/kube-apiserver.service" in got) == h.runs("kube-apiserver")
        assert ("/etc/kubernetes/kubelet-config.yaml" in got) == h.runs("kubelet")
        assert ("/etc/containerd/config.toml" in got) == h.runs("containerd")
        assert (paths.K3S_CONFIG in got) == (h.runs("k3s-server") or h.runs("k3s-agent"))
        assert (kube_vip.MANIFEST in got) == h.runs("kube-vip")
        if not h.is_node:  # dedicated load balancers carry none of these
            assert not any(p.startswith((paths.K8S, "/etc/rancher", "/etc/cni")) for p in got)


@pytest.mark.parametrize("spec", K8S_SPECS + K3S_SPECS)
def test_kubeconfigs_and_k3s_files_are_private(spec: str) -> None:
    for fs in rendered(spec).hosts.values():
        for f in fs:
            if f.path.endswith(".kubeconfig") or f.path.startswith("/etc/rancher/k3s/"):
                assert f.mode == 0o600, f"{f.path} is {oct(f.mode)}"


@pytest.mark.parametrize("spec", K8S_SPECS + K3S_SPECS)
def test_units_have_the_sections_systemd_needs(spec: str) -> None:
    for fs in rendered(spec).hosts.values():
        for f in fs:
            if f.path in UNITS:
                for section in ("[Unit]", "[Service]", "[Install]"):
                    assert section in f.content.splitlines(), f"{f.path}: no {section}"
                words = exec_args(f.content)
                assert words[0].startswith("/"), f"{f.path}: ExecStart is not an absolute path"
                assert "\\" not in words, f"{f.path}: a stray continuation"


# ---- kube-apiserver -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", K8S_SPECS)
def test_apiserver_talks_to_its_own_etcd_member_only(spec: str) -> None:
    """Stacked etcd: a dead peer member can never hold up a surviving apiserver."""
    t, r = topology(spec), rendered(spec)
    for s in t.servers:
        etcd = flags(files(r, s)["/etc/systemd/system/kube-apiserver.service"].content)["etcd-servers"]
        assert etcd == f"https://{t.address(s)}:2379"


def test_apiserver_security_and_addresses() -> None:
    t, r = topology("ha3"), rendered("ha3")
    f = flags(files(r, "server-2")["/etc/systemd/system/kube-apiserver.service"].content)
    assert f["anonymous-auth"] == "false"
    assert f["authorization-mode"] == "Node,RBAC"
    assert f["enable-admission-plugins"] == "NodeRestriction"
    assert f["advertise-address"] == "192.168.56.12"
    assert f["secure-port"] == str(t.apiserver_port) == "6444"
    assert f["kubelet-certificate-authority"] == paths.CA_CRT
    assert f["service-account-issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert f["service-cluster-ip-range"] == "10.96.0.0/12"
    assert f["endpoint-reconciler-type"] == "lease" and "apiserver-count" not in f
    assert f["goaway-chance"] == "0.001"  # several apiservers behind a load balancer


def test_single_apiserver_gets_no_goaway() -> None:
    t = variant("ha3", ("    - {name: server-2, address: 192.168.56.12, roles: [server]}\n", ""),
                ("    - {name: server-3, address: 192.168.56.13, roles: [server]}\n", ""))
    f = flags(files(render(t, SECRETS), "server-1")["/etc/systemd/system/kube-apiserver.service"].content)
    assert "goaway-chance" not in f
    assert f["etcd-servers"] == "https://192.168.56.11:2379"


def test_apiserver_extra_args_and_feature_gates_come_last() -> None:
    unit = files(rendered("k8s127"), "server-1")["/etc/systemd/system/kube-apiserver.service"].content
    words = exec_args(unit)
    assert words[-2:] == ["--audit-log-maxage=7", "--default-not-ready-toleration-seconds=60"]
    assert flags(unit)["feature-gates"] == "GracefulNodeShutdown=true,InPlacePodVerticalScaling=false"


def test_apiserver_with_external_etcd(tmp_path: Path) -> None:
    for name in ("ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_text("x")
    # (an existing etcd is backed up by whoever runs it: no spec.backup)
    text = (FIXTURES / "specs" / "ha3.yaml").read_text().replace("  backup: {schedule: 12h, retention: 5}\n", "") + (
        "  datastore:\n    type: external\n"
        "    endpoints: [https://10.9.0.1:2379, https://10.9.0.2:2379]\n"
        "    caFile: ca.crt\n    certFile: client.crt\n    keyFile: client.key\n")
    t = derive(loads(text, source=tmp_path / "cluster.yaml").cluster)
    r = render(t, SECRETS)
    f = flags(files(r, "server-1")["/etc/systemd/system/kube-apiserver.service"].content)
    assert f["etcd-servers"] == "https://10.9.0.1:2379,https://10.9.0.2:2379"
    assert f["etcd-cafile"] == paths.ETCD_CA_CRT


# ---- version-aware flags ------------------------------------------------------------------


def test_version_aware_flags_differ_between_1_20_and_1_27() -> None:
    old, new = files(rendered("ha3"), "server-1"), files(rendered("k8s127"), "server-1")

    def unit(fs, name):
        return flags(fs[f"/etc/systemd/system/{name}.service"].content)

    assert unit(old, "kube-apiserver")["insecure-port"] == "0"
    assert "insecure-port" not in unit(new, "kube-apiserver")
    assert unit(old, "kube-controller-manager")["port"] == "0"
    assert "port" not in unit(new, "kube-controller-manager")
    assert unit(old, "kube-scheduler")["port"] == "0"
    assert "port" not in unit(new, "kube-scheduler")

    k_old, k_new = unit(old, "kubelet"), unit(new, "kubelet")
    assert k_old["container-runtime"] == "remote"
    assert k_old["container-runtime-endpoint"] == "unix:///run/containerd/containerd.sock"
    assert k_old["register-with-taints"] == "node-role.kubernetes.io/master:NoSchedule"
    for flag in ("container-runtime", "container-runtime-endpoint", "register-with-taints",
                 "pod-infra-container-image", "network-plugin"):
        assert flag not in k_new
    assert "network-plugin" not in k_old  # dockershim-only: never with containerd

    cfg_old = yaml.safe_load(old["/etc/kubernetes/kubelet-config.yaml"].content)
    cfg_new = yaml.safe_load(new["/etc/kubernetes/kubelet-config.yaml"].content)
    assert "containerRuntimeEndpoint" not in cfg_old and "registerWithTaints" not in cfg_old
    assert cfg_new["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"
    assert cfg_new["registerWithTaints"] == [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]

    pause = {s: tomllib.loads(files(rendered(s), "agent-1")["/etc/containerd/config.toml"].content)
             ["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] for s in K8S_SPECS}
    assert pause == {"ha3": "registry.k8s.io/pause:3.2", "k8s127": "registry.k8s.io/pause:3.9"}


def test_pod_infra_image_only_where_the_kubelet_uses_it() -> None:
    for version, expected in [("1.23.17", None), ("1.25.16", "registry.k8s.io/pause:3.8"),
                              ("1.27.4", None)]:
        t = variant("k8s127", ("version: 1.27.4", f"version: {version}"))
        fs = files(render(t, SECRETS), "agent-1")
        got = flags(fs["/etc/systemd/system/kubelet.service"].content).get("pod-infra-container-image")
        assert got == expected, version
        if expected:  # the kubelet protects the image containerd actually uses
            toml = tomllib.loads(fs["/etc/containerd/config.toml"].content)
            assert toml["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == expected


# ---- controller-manager and scheduler -----------------------------------------------------


@pytest.mark.parametrize("spec", K8S_SPECS)
def test_controller_manager_and_scheduler(spec: str) -> None:
    t, r = topology(spec), rendered(spec)
    fs = files(r, t.servers[0])
    cm = flags(fs["/etc/systemd/system/kube-controller-manager.service"].content)
    assert cm["leader-elect"] == "true" and cm["bind-address"] == "127.0.0.1"
    assert cm["allocate-node-cidrs"] == "false"
    assert cm["cluster-cidr"] == str(t.cluster.spec.network.pod_cidr)
    assert cm["cluster-signing-cert-file"] == paths.CA_CRT and cm["cluster-signing-key-file"] == paths.CA_KEY
    assert cm["use-service-account-credentials"] == "true"
    assert cm["kubeconfig"] == cm["authentication-kubeconfig"] == paths.KUBECONFIG_CONTROLLER_MANAGER
    sched = flags(fs["/etc/systemd/system/kube-scheduler.service"].content)
    assert sched["leader-elect"] == "true" and sched["bind-address"] == "127.0.0.1"
    assert sched["kubeconfig"] == sched["authorization-kubeconfig"] == paths.KUBECONFIG_SCHEDULER


# ---- kubeconfigs: who talks to which address ----------------------------------------------


def kubeconfig(f: File) -> dict:
    cfg = yaml.safe_load(f.content)
    assert not any(k.endswith("-data") for k in cfg["users"][0]["user"]), "embedded key"
    return cfg


@pytest.mark.parametrize("spec", K8S_SPECS)
def test_each_component_talks_to_the_right_api_address(spec: str) -> None:
    t, r = topology(spec), rendered(spec)
    front_door = f"https://{t.endpoint_host}:{t.endpoint_port}"
    for h in t.hosts:
        fs = files(r, h.name)
        server = lambda p: kubeconfig(fs[p])["clusters"][0]["cluster"]["server"]  # noqa: E731
        if "server" in h.roles:
            local = f"https://127.0.0.1:{t.apiserver_port}"
            assert server(paths.KUBECONFIG_CONTROLLER_MANAGER) == local
            assert server(paths.KUBECONFIG_SCHEDULER) == local
            node_api = front_door
        else:
            assert paths.KUBECONFIG_CONTROLLER_MANAGER not in fs
            node_api = t.agent_api_url
        assert server(paths.KUBECONFIG_KUBELET) == server(paths.KUBECONFIG_KUBE_PROXY) == node_api
        assert not any(node_api.startswith(f"https://{a}:") for a in server_addresses(t))


def test_agents_local_kubelets_use_their_local_proxy() -> None:
    t = variant("ha3", ("      dnsName: api.demo.lan\n",
                        "      dnsName: api.demo.lan\n    loadBalancer:\n      placement: agents-local\n"))
    r = render(t, SECRETS)
    agent = kubeconfig(files(r, "agent-1")[paths.KUBECONFIG_KUBELET])
    assert agent["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    server = kubeconfig(files(r, "server-1")[paths.KUBECONFIG_KUBELET])
    assert server["clusters"][0]["cluster"]["server"] == f"https://{t.endpoint_host}:{t.endpoint_port}"


def test_kubelet_kubeconfig_names_the_node_certificate() -> None:
    cfg = kubeconfig(files(rendered("ha3"), "agent-1")[paths.KUBECONFIG_KUBELET])
    assert cfg["users"][0]["user"] == {"client-certificate": paths.KUBELET_CLIENT_CRT,
                                       "client-key": paths.KUBELET_CLIENT_KEY}
    assert cfg["clusters"][0]["cluster"]["certificate-authority"] == paths.CA_CRT


@pytest.mark.parametrize("spec", K8S_SPECS + K3S_SPECS)
def test_admin_kubeconfig_template_points_at_the_front_door(spec: str) -> None:
    t = topology(spec)
    (f,) = [f for f in rendered(spec).cluster if f.path == "kubeconfig/admin.kubeconfig"]
    assert f.mode == 0o600
    cfg = kubeconfig(f)
    assert cfg["clusters"][0]["cluster"] == {"certificate-authority": "pki/ca.crt", "server": t.api_url}
    assert cfg["users"][0] == {"name": f"{t.name}-admin",
                               "user": {"client-certificate": "pki/admin.crt", "client-key": "pki/admin.key"}}
    assert cfg["current-context"] == t.name
    assert not any(t.api_url.startswith(f"https://{a}:") for a in server_addresses(t))


def test_servers_have_an_admin_kubeconfig_for_their_own_apiserver() -> None:
    t, r = topology("ha3"), rendered("ha3")
    cfg = kubeconfig(files(r, "server-1")[paths.KUBECONFIG_ADMIN])
    assert cfg["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{t.apiserver_port}"
    assert cfg["users"][0]["user"] == {"client-certificate": paths.ADMIN_CRT, "client-key": paths.ADMIN_KEY}
    assert paths.KUBECONFIG_ADMIN not in files(r, "agent-1")


# ---- kubelet, kube-proxy, containerd ------------------------------------------------------


@pytest.mark.parametrize("spec", K8S_SPECS)
def test_kubelet_config(spec: str) -> None:
    t, r = topology(spec), rendered(spec)
    for h in t.hosts:
        fs = files(r, h.name)
        cfg = yaml.safe_load(fs["/etc/kubernetes/kubelet-config.yaml"].content)
        assert cfg["kind"] == "KubeletConfiguration"
        assert cfg["authentication"]["anonymous"]["enabled"] is False
        assert cfg["authentication"]["webhook"]["enabled"] is True
        assert cfg["authentication"]["x509"]["clientCAFile"] == paths.CA_CRT
        assert cfg["authorization"]["mode"] == "Webhook"
        assert cfg["readOnlyPort"] == 0
        assert cfg["clusterDNS"] == [str(t.cluster.spec.network.cluster_dns)]
        assert cfg["clusterDomain"] == "cluster.local"
        assert cfg["podCIDR"] == h.pod_cidr
        assert (cfg["tlsCertFile"], cfg["tlsPrivateKeyFile"]) == (paths.KUBELET_SERVING_CRT,
                                                                   paths.KUBELET_SERVING_KEY)
        toml = tomllib.loads(fs["/etc/containerd/config.toml"].content)
        systemd_cgroup = toml["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"][
            "options"]["SystemdCgroup"]
        assert (cfg["cgroupDriver"] == "systemd") == systemd_cgroup, "kubelet and containerd disagree"
        unit = flags(fs["/etc/systemd/system/kubelet.service"].content)
        assert unit["node-ip"] == h.address and unit["hostname-override"] == h.name
        assert unit["config"] == "/etc/kubernetes/kubelet-config.yaml"
        assert unit["kubeconfig"] == paths.KUBECONFIG_KUBELET


def test_kubelet_labels_and_taints() -> None:
    def kubelet(spec, host):
        fs = files(rendered(spec), host)
        return (flags(fs["/etc/systemd/system/kubelet.service"].content),
                yaml.safe_load(fs["/etc/kubernetes/kubelet-config.yaml"].content))

    unit, _ = kubelet("ha3", "agent-1")
    assert unit["node-labels"] == "hakube.dev/role=agent,tier=web"
    assert "register-with-taints" not in unit
    unit, _ = kubelet("ha3", "agent-2")
    assert unit["register-with-taints"] == "dedicated=batch:NoSchedule"
    unit, _ = kubelet("ha3", "server-3")
    assert unit["node-labels"] == "hakube.dev/role=server"
    _, cfg = kubelet("k8s127", "agent-2")
    assert cfg["registerWithTaints"] == [{"key": "gpu", "effect": "NoExecute"}]
    # the kubelet may not set node-role.kubernetes.io labels itself (NodeRestriction)
    assert "node-role.kubernetes.io" not in kubelet("k8s127", "server-1")[0]["node-labels"]


def test_schedulable_servers_are_not_tainted() -> None:
    t = variant("k8s127", ("      dnsName: api.modern.lan\n",
                           "      dnsName: api.modern.lan\n    schedulableServers: true\n"))
    cfg = yaml.safe_load(files(render(t, SECRETS), "server-1")["/etc/kubernetes/kubelet-config.yaml"].content)
    assert "registerWithTaints" not in cfg


def test_kubelet_extra_args_are_quoted_for_systemd() -> None:
    unit = files(rendered("k8s127"), "agent-1")["/etc/systemd/system/kubelet.service"].content
    assert exec_args(unit)[-1] == "--eviction-hard=memory.available<5%%"  # `%` starts a specifier


def test_systemd_quote() -> None:
    from hakube.components.kube_apiserver import systemd_quote

    assert systemd_quote("--a=b") == "--a=b"
    assert systemd_quote("--a=5%") == "--a=5%%"
    assert systemd_quote("--a=$HOME") == "--a=$$HOME"
    assert systemd_quote('--a=x y"z') == '"--a=x y\\"z"'
    assert shlex.split(systemd_quote("--a=x y")) == ["--a=x y"]


@pytest.mark.parametrize("spec", K8S_SPECS)
def test_kube_proxy(spec: str) -> None:
    t, r = topology(spec), rendered(spec)
    for h in t.hosts:
        fs = files(r, h.name)
        cfg = yaml.safe_load(fs["/etc/kubernetes/kube-proxy-config.yaml"].content)
        assert cfg["mode"] == "iptables"
        assert cfg["clusterCIDR"] == str(t.cluster.spec.network.pod_cidr)
        assert cfg["hostnameOverride"] == h.name
        assert cfg["clientConnection"]["kubeconfig"] == paths.KUBECONFIG_KUBE_PROXY
        assert exec_args(fs["/etc/systemd/system/kube-proxy.service"].content)[1] == \
            "--config=/etc/kubernetes/kube-proxy-config.yaml"


def test_containerd_config_parses_and_names_the_cni_dirs() -> None:
    toml = tomllib.loads(files(rendered("ha3"), "server-1")["/etc/containerd/config.toml"].content)
    cri = toml["plugins"]["io.containerd.grpc.v1.cri"]
    assert toml["version"] == 2
    assert cri["restrict_oom_score_adj"] is True
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": "/etc/cni/net.d"}


# ---- pod network --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", K8S_SPECS)
def test_pod_routes_cover_every_other_node(spec: str) -> None:
    t, r = topology(spec), rendered(spec)
    nodes = [h for h in t.hosts if h.runs("kubelet")]
    for h in nodes:
        fs = files(r, h.name)
        conf = json.loads(fs["/etc/cni/net.d/10-hakube.conflist"].content)
        bridge = conf["plugins"][0]
        assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]
        assert bridge["ipam"]["ranges"] == [[{"subnet": h.pod_cidr}]]
        assert bridge["ipMasq"] is False and bridge["isGateway"] is True
        script = fs["/usr/local/lib/hakube/pod-routes"]
        assert script.mode == 0o755
        routes = {(w[3], w[5]) for w in (line.split() for line in script.content.splitlines())
                  if w[:3] == ["ip", "route", "replace"]}
        assert routes == {(o.pod_cidr, o.address) for o in nodes if o.name != h.name}
        unit = fs["/etc/systemd/system/hakube-pod-routes.service"].content
        assert "Type=oneshot" in unit and exec_args(unit) == ["/usr/local/lib/hakube/pod-routes"]
    cidrs = [ipaddress.ip_network(h.pod_cidr) for h in nodes]
    assert all(a == b or not a.overlaps(b) for a in cidrs for b in cidrs)


def test_pod_routes_script_is_valid_shell() -> None:
    script = files(rendered("ha3"), "agent-1")["/usr/local/lib/hakube/pod-routes"].content
    r = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _netns_available() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip") or not shutil.which("iptables"):
        return False
    r = subprocess.run(["unshare", "-rn", "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _netns_available(), reason="needs unprivileged user+network namespaces")
def test_pod_routes_script_runs_idempotently_in_a_network_namespace(tmp_path: Path) -> None:
    """The real script in a throwaway network namespace: it adds the routes, drops a stale
    one (a node that left), and a second run changes nothing."""
    t = topology("ha3")
    (tmp_path / "pod-routes").write_text(files(rendered("ha3"), "agent-1")["/usr/local/lib/hakube/pod-routes"].content)
    me = t.host("agent-1")
    setup = (f"ip link add v0 type veth peer name v1 && ip addr add {me.address}/24 dev v0 && "
             "ip link set v0 up && ip link set v1 up && "
             "ip route add 10.244.99.0/24 via 192.168.56.99 proto static && "
             f"sh {tmp_path}/pod-routes && ip -4 route show > {tmp_path}/first && "
             f"iptables -t nat -S POSTROUTING > {tmp_path}/nat1 && "
             f"sh {tmp_path}/pod-routes && ip -4 route show > {tmp_path}/second && "
             f"iptables -t nat -S POSTROUTING > {tmp_path}/nat2")
    r = subprocess.run(["unshare", "-rn", "sh", "-c", setup], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    first = (tmp_path / "first").read_text()
    assert first == (tmp_path / "second").read_text()
    assert (tmp_path / "nat1").read_text() == (tmp_path / "nat2").read_text()
    assert "10.244.99.0/24" not in first
    for other in t.hosts:
        if other.name != me.name and other.pod_cidr:
            assert f"{other.pod_cidr} via {other.address} " in first
    assert (tmp_path / "nat1").read_text().count("MASQUERADE") == 1


@pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="no CNI plugins installed")
def test_cni_version_is_supported_by_the_installed_plugins() -> None:
    conf = json.loads(files(rendered("ha3"), "agent-1")["/etc/cni/net.d/10-hakube.conflist"].content)
    for plugin in ("bridge", "portmap", "host-local"):
        r = subprocess.run([f"/usr/lib/cni/{plugin}"], env={"CNI_COMMAND": "VERSION"},
                           input="{}", capture_output=True, text=True)
        assert conf["cniVersion"] in json.loads(r.stdout)["supportedVersions"], plugin


# ---- K3s ----------------------------------------------------------------------------------


def k3s_config(spec: str, host: str) -> dict:
    return yaml.safe_load(files(rendered(spec), host)[paths.K3S_CONFIG].content)


@pytest.mark.parametrize("spec", K3S_SPECS)
def test_k3s_nodes_join_through_the_endpoint_never_a_server(spec: str) -> None:
    t = topology(spec)
    front_door = f"https://{t.endpoint_host}:{t.endpoint_port}"
    for a in t.agents:
        assert k3s_config(spec, a)["server"] == t.agent_api_url
    for s in t.servers:
        url = k3s_config(spec, s).get("server")
        assert url in (None, front_door)
    for h in t.hosts:
        if h.is_node:
            url = k3s_config(spec, h.name).get("server", "")
            assert not any(f"//{a}:" in url for a in server_addresses(t)), f"{h.name} -> {url}"


def test_k3s_agents_local_use_the_local_proxy() -> None:
    assert {k3s_config("k3s3", a)["server"] for a in ("worker-1", "worker-2")} == {"https://127.0.0.1:6443"}


@pytest.mark.parametrize("spec", ["k3s3", "k3s-kubevip"])
def test_k3s_bootstrap_server_inits_and_the_others_join(spec: str) -> None:
    t = topology(spec)
    first = k3s_config(spec, t.bootstrap_server)
    assert first["cluster-init"] is True and "server" not in first
    for s in t.servers[1:]:
        cfg = k3s_config(spec, s)
        assert "cluster-init" not in cfg
        assert cfg["server"] == f"https://{t.endpoint_host}:{t.endpoint_port}"


def test_k3s_bootstrap_server_joins_when_the_cluster_exists() -> None:
    """A bootstrap server that lost its data must not start a second cluster."""
    t = topology("k3s3")
    c = k3s.config_for(t, t.host(t.bootstrap_server), new_cluster=False)
    assert not c.cluster_init and c.server_url == f"https://{t.endpoint_host}:{t.endpoint_port}"


def test_k3s_external_datastore() -> None:
    t = topology("k3s-external")
    for s in t.servers:
        cfg = k3s_config("k3s-external", s)
        assert "cluster-init" not in cfg and "server" not in cfg
        assert cfg["datastore-endpoint"] == "postgres://k3s:not-a-real-password@db.extdb.lan:5432/k3s"
        assert "etcd-arg" not in cfg and "etcd-expose-metrics" not in cfg
        assert "node-taint" not in cfg  # schedulableServers


@pytest.mark.parametrize("spec", K3S_SPECS)
def test_k3s_token_only_in_the_token_file(spec: str) -> None:
    t, r = topology(spec), rendered(spec)
    for h in t.hosts:
        for f in r.hosts[h.name]:
            if f.path == paths.K3S_TOKEN:
                assert f.content.strip() == SECRETS.k3s_token and f.mode == 0o600
            else:
                assert SECRETS.k3s_token not in f.content, f.path
        if h.is_node:
            cfg = k3s_config(spec, h.name)
            assert cfg["token-file"] == paths.K3S_TOKEN and "token" not in cfg
            assert paths.K3S_TOKEN in files(r, h.name)


@pytest.mark.parametrize("spec", K3S_SPECS)
def test_k3s_server_settings(spec: str) -> None:
    t = topology(spec)
    spec_ = t.cluster.spec
    for s in t.servers:
        h = t.host(s)
        cfg = k3s_config(spec, s)
        assert cfg["https-listen-port"] == t.apiserver_port
        assert cfg["node-ip"] == h.address and cfg["node-name"] == s
        assert t.endpoint_host in cfg["tls-san"]
        if spec_.control_plane.endpoint.dns_name:
            assert spec_.control_plane.endpoint.dns_name in cfg["tls-san"]
        assert cfg["cluster-cidr"] == str(spec_.network.pod_cidr)
        assert cfg["service-cidr"] == str(spec_.network.service_cidr)
        assert cfg["cluster-dns"] == str(spec_.network.cluster_dns)
        assert cfg["cluster-domain"] == spec_.network.cluster_domain
        assert cfg["service-node-port-range"] == spec_.network.node_port_range
        assert ("coredns" in cfg["disable"]) == spec_.addons.coredns.enabled
        assert "hakube.dev/role=server" in cfg["node-label"]
    # settings K3s requires to match across servers are identical
    shared = ["tls-san", "cluster-cidr", "service-cidr", "cluster-dns", "cluster-domain", "disable",
              "flannel-backend", "etcd-arg", "datastore-endpoint"]
    views = [{k: k3s_config(spec, s).get(k) for k in shared} for s in t.servers]
    assert all(v == views[0] for v in views)


def test_k3s_embedded_etcd_tuning_metrics_and_disabled_components() -> None:
    cfg = k3s_config("k3s3", "k3s-2")
    assert cfg["etcd-arg"] == ["heartbeat-interval=100", "election-timeout=1000"]
    assert cfg["etcd-expose-metrics"] is True  # monitoring enabled
    assert cfg["disable"] == ["traefik", "servicelb", "coredns"]
    cfg = k3s_config("k3s-kubevip", "cp-2")
    assert cfg["etcd-arg"] == ["heartbeat-interval=50", "election-timeout=500"]
    assert "etcd-expose-metrics" not in cfg
    assert cfg["disable"] == ["traefik", "servicelb"]  # servicelb: MetalLB answers instead
    assert cfg["flannel-backend"] == "host-gw" and cfg["flannel-iface"] == "enp1s0"


def test_k3s_taints_are_version_aware() -> None:
    assert k3s_config("k3s3", "k3s-1")["node-taint"] == ["node-role.kubernetes.io/control-plane:NoSchedule"]
    assert k3s_config("k3s-kubevip", "cp-1")["node-taint"] == ["node-role.kubernetes.io/master:NoSchedule"]
    agent = k3s_config("k3s3", "worker-2")
    assert agent["node-taint"] == ["dedicated=batch:NoSchedule"]
    assert agent["flannel-iface"] == "ens4"
    assert k3s_config("k3s3", "worker-1")["node-label"] == ["hakube.dev/role=agent", "tier=web"]


def test_k3s_units_match_the_install_script() -> None:
    r = rendered("k3s-kubevip")
    server = files(r, "cp-1")["/etc/systemd/system/k3s.service"].content
    agent = files(r, "node-1")["/etc/systemd/system/k3s-agent.service"].content
    for unit in (server, agent):
        for line in ("Type=notify", "KillMode=process", "Delegate=yes", "LimitNOFILE=1048576",
                     "TasksMax=infinity", "TimeoutStartSec=0", "Restart=always",
                     "ExecStartPre=-/sbin/modprobe br_netfilter", "ExecStartPre=-/sbin/modprobe overlay"):
            assert line in unit.splitlines(), line
    assert exec_args(server) == ["/usr/local/bin/k3s", "server",
                                 "--kubelet-arg=eviction-hard=memory.available<5%%"]
    assert exec_args(agent) == ["/usr/local/bin/k3s", "agent", "--kubelet-arg=max-pods=200"]
    assert "EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env" in agent


def test_k3s_hosts_get_no_upstream_kubernetes_files() -> None:
    for spec in K3S_SPECS:
        for fs in rendered(spec).hosts.values():
            assert not any(f.path.startswith(("/etc/kubernetes/", "/etc/cni/")) for f in fs)


# ---- kube-vip -----------------------------------------------------------------------------


def test_kube_vip_manifest() -> None:
    t = topology("k3s-kubevip")
    docs = list(yaml.safe_load_all(files(rendered("k3s-kubevip"), "cp-1")[kube_vip.MANIFEST].content))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]
    ds = docs[-1]
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"].startswith("ghcr.io/kube-vip/kube-vip:v")
    assert env["address"] == t.endpoint_host and env["port"] == str(t.endpoint_port)
    assert env["vip_interface"] == "enp1s0" and env["vip_arp"] == "true"
    assert env["cp_enable"] == "true" and env["svc_enable"] == "false"
    assert env["vip_leaderelection"] == "true"
    lease, renew, retry = (int(env[k]) for k in ("vip_leaseduration", "vip_renewdeadline", "vip_retryperiod"))
    assert lease > renew > retry > 0
    assert pod["hostNetwork"] is True and pod["serviceAccountName"] == "kube-vip"
    assert {"NET_ADMIN", "NET_RAW"} <= set(container["securityContext"]["capabilities"]["add"])
    # identical on every server: K3s deploys whichever it reads first
    contents = {files(rendered("k3s-kubevip"), s)[kube_vip.MANIFEST].content for s in t.servers}
    assert len(contents) == 1
    assert kube_vip.MANIFEST not in files(rendered("k3s-kubevip"), "node-1")


def test_kube_vip_refuses_servers_with_different_interfaces() -> None:
    t = variant("k3s-kubevip", ("{name: cp-3, address: 172.16.5.13, roles: [server], interface: enp1s0}",
                                "{name: cp-3, address: 172.16.5.13, roles: [server], interface: eth1}"))
    with pytest.raises(ValueError, match="cp-3: eth1"):
        kube_vip.host_files(RenderContext(t, SECRETS), t.host("cp-1"))


# ---- the real 1.20 binaries the lab builds (skipped when they are not cached) -------------


def _lab_binaries():
    from hakube.lab import binaries

    return binaries.cached(topology("ha3").version)


needs_binaries = pytest.mark.skipif(_lab_binaries() is None,
                                    reason="no cached Kubernetes build (hakube lab builds one)")


@needs_binaries
@pytest.mark.parametrize("host,unit", [("server-1", "kube-apiserver"), ("server-1", "kube-controller-manager"),
                                       ("server-1", "kube-scheduler"), ("server-1", "kubelet"),
                                       ("agent-2", "kubelet")])
def test_the_real_binaries_accept_every_flag(host: str, unit: str) -> None:
    """Each binary parses its whole command line (names and typed values: addresses, taints,
    labels, ports) before `--version` prints and exits; an unknown flag fails."""
    args = exec_args(files(rendered("ha3"), host)[f"/etc/systemd/system/{unit}.service"].content)
    binary = _lab_binaries().bin_dir / unit
    r = subprocess.run([str(binary), *args[1:], "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("Kubernetes v")


@needs_binaries
def test_the_real_kube_proxy_accepts_its_configuration(tmp_path: Path) -> None:
    """kube-proxy loads (strictly), completes and validates --config before it acts on
    --write-config-to. (Writing then panics in this Go 1.19 build of 1.20, a json-iterator
    bug; reaching the write is what matters.)"""
    cfg = tmp_path / "kube-proxy-config.yaml"
    cfg.write_text(files(rendered("ha3"), "agent-1")["/etc/kubernetes/kube-proxy-config.yaml"].content)
    binary = _lab_binaries().bin_dir / "kube-proxy"
    r = subprocess.run([str(binary), f"--config={cfg}", f"--write-config-to={tmp_path / 'out.yaml'}"],
                       capture_output=True, text=True, timeout=60)
    for failure in ("strict decoding failed", "failed complete", "failed validate", "unknown flag"):
        assert failure not in r.stderr, r.stderr[:2000]
    assert r.returncode == 0 or "writeConfigFile" in r.stderr, r.stderr[:2000]
