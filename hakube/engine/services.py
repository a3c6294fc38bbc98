"""Which files and binary each systemd unit depends on: a change to any of them, and only
then, restarts the unit."""

from __future__ import annotations

from dataclasses import dataclass

from .. import paths
from ..components import (cni, containerd, etcd, haproxy, keepalived, kube_apiserver, kube_controller_manager,
                          kube_proxy, kube_scheduler, kubelet, nginx)


@dataclass(frozen=True)
class Service:
    unit: str
    components: tuple  # component modules whose rendered files the unit reads
    pki: tuple[str, ...] = ()  # certificate/key paths it reads
    binary: str | None = None  # binary hakube installs for it
    ignore: tuple[str, ...] = ()  # rendered files it does not need a restart for
    borrowed: tuple[str, ...] = ()  # files another component renders for it (its kubeconfig)
    settle: float = 0.0  # seconds it must stay running after a (re)start to pass the gate

    def depends_on(self, path: str, component_paths: set[str]) -> bool:
        if path in self.ignore:
            return False
        return path in component_paths or path in self.pki or path == self.binary or path in self.borrowed


ETCD = Service("etcd", (etcd,), (paths.ETCD_CA_CRT, paths.ETCD_SERVER_CRT, paths.ETCD_SERVER_KEY,
                                 paths.ETCD_PEER_CRT, paths.ETCD_PEER_KEY))
KUBE_APISERVER = Service(
    "kube-apiserver", (kube_apiserver,),
    (paths.CA_CRT, paths.ETCD_CA_CRT, paths.APISERVER_ETCD_CLIENT_CRT, paths.APISERVER_ETCD_CLIENT_KEY,
     paths.APISERVER_CRT, paths.APISERVER_KEY, paths.APISERVER_KUBELET_CLIENT_CRT,
     paths.APISERVER_KUBELET_CLIENT_KEY, paths.FRONT_PROXY_CA_CRT, paths.FRONT_PROXY_CLIENT_CRT,
     paths.FRONT_PROXY_CLIENT_KEY, paths.SA_KEY, paths.SA_PUB),
    f"{paths.BIN}/kube-apiserver",
    # kubectl on the server talks to its own apiserver; writing it needs no restart
    ignore=(paths.KUBECONFIG_ADMIN,), borrowed=(paths.KUBECONFIG_ADMIN,))
KUBE_CONTROLLER_MANAGER = Service(
    "kube-controller-manager", (kube_controller_manager,),
    (paths.CA_CRT, paths.CA_KEY, paths.SA_KEY, paths.CONTROLLER_MANAGER_CRT, paths.CONTROLLER_MANAGER_KEY),
    f"{paths.BIN}/kube-controller-manager", borrowed=(paths.KUBECONFIG_CONTROLLER_MANAGER,), settle=3.0)
KUBE_SCHEDULER = Service(
    "kube-scheduler", (kube_scheduler,),
    (paths.CA_CRT, paths.SCHEDULER_CRT, paths.SCHEDULER_KEY),
    f"{paths.BIN}/kube-scheduler", borrowed=(paths.KUBECONFIG_SCHEDULER,), settle=3.0)
HAPROXY = Service("haproxy", (haproxy,), (paths.CA_CRT, paths.LB_CHECK_PEM))
NGINX = Service("nginx", (nginx,))
# The track scripts are read afresh at every run: changing them needs no restart.
KEEPALIVED = Service("keepalived", (keepalived,), ignore=(keepalived.CHECK_SCRIPT, keepalived.MAJORITY_SCRIPT,
                                                          keepalived.NOTIFY_SCRIPT))

# every node (servers too): the runtime, the pod network, the kubelet, kube-proxy
CONTAINERD = Service("containerd", (containerd,))
POD_ROUTES = Service("hakube-pod-routes", (cni,))
KUBELET = Service("kubelet", (kubelet,),
                  (paths.CA_CRT, paths.KUBELET_CLIENT_CRT, paths.KUBELET_CLIENT_KEY, paths.KUBELET_SERVING_CRT,
                   paths.KUBELET_SERVING_KEY), f"{paths.BIN}/kubelet", borrowed=(paths.KUBECONFIG_KUBELET,))
KUBE_PROXY = Service("kube-proxy", (kube_proxy,), (paths.CA_CRT, paths.KUBE_PROXY_CRT, paths.KUBE_PROXY_KEY),
                     f"{paths.BIN}/kube-proxy", borrowed=(paths.KUBECONFIG_KUBE_PROXY,))

# Each Debian-packaged service and the rendered files it reads (components/monitoring renders
# them all; a change restarts only the service that reads the file).
MONITORING = [
    ("node-exporter", Service("prometheus-node-exporter", (), borrowed=("/etc/default/prometheus-node-exporter",))),
    ("prometheus", Service("prometheus", (), (paths.MONITORING_CA_CRT, paths.MONITORING_ETCD_CA_CRT,
                                               paths.MONITORING_CLIENT_CRT, paths.MONITORING_CLIENT_KEY,
                                               paths.MONITORING_ETCD_CLIENT_CRT, paths.MONITORING_ETCD_CLIENT_KEY),
                           borrowed=("/etc/default/prometheus", "/etc/prometheus/prometheus.yml",
                                     "/etc/prometheus/rules/hakube-ha.rules.yml"))),
    ("alertmanager", Service("prometheus-alertmanager", (), borrowed=("/etc/default/prometheus-alertmanager",
                                                                      "/etc/prometheus/alertmanager.yml"))),
    ("blackbox-exporter", Service("prometheus-blackbox-exporter", (), (paths.MONITORING_CA_CRT,),
                                  borrowed=("/etc/default/prometheus-blackbox-exporter", "/etc/prometheus/blackbox.yml"))),
]
# The VIP-presence exporter: a timer; its script is read afresh at every run.
VIP_PRESENCE = Service("hakube-vip-presence.timer", (),
                       borrowed=("/etc/systemd/system/hakube-vip-presence.service",
                                 "/etc/systemd/system/hakube-vip-presence.timer", f"{paths.LIBEXEC}/vip-presence"),
                       ignore=(f"{paths.LIBEXEC}/vip-presence",))

CONTROL_PLANE = (KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER)
LOAD_BALANCERS = {"haproxy": HAPROXY, "nginx": NGINX}

# Debian packages each component needs; present in the lab image, installed on real hosts.
PACKAGES = {
    "etcd": ["etcd-server", "etcd-client"],
    "kube-apiserver": ["curl", "ca-certificates"],
    "haproxy": ["haproxy"],
    "nginx": ["nginx", "libnginx-mod-stream"],
    "keepalived": ["keepalived", "curl", "iputils-ping"],
    "corosync": ["corosync"],
    "pacemaker": ["pacemaker", "crmsh", "resource-agents"],
    "containerd": ["containerd", "runc", "containernetworking-plugins", "iptables", "conntrack"],
    "kube-proxy": ["iptables", "conntrack", "ipset"],
    "node-exporter": ["prometheus-node-exporter"],
    "prometheus": ["prometheus"],
    "alertmanager": ["prometheus-alertmanager"],
    "blackbox-exporter": ["prometheus-blackbox-exporter"],
}

KUBERNETES_BINARIES = {
    "kube-apiserver": ["kube-apiserver", "kubectl"],
    "kube-controller-manager": ["kube-controller-manager"],
    "kube-scheduler": ["kube-scheduler"],
    "kubelet": ["kubelet"],
    "kube-proxy": ["kube-proxy"],
}
