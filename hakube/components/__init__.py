"""One package per component, templates beside it. Order: the deploy pipeline's order."""

from importlib import import_module

NAMES = [
    "etcd",
    "etcd_backup",
    "kube_apiserver",
    "kube_controller_manager",
    "kube_scheduler",
    "containerd",
    "cni",
    "kubelet",
    "kube_proxy",
    "k3s",
    "haproxy",
    "nginx",
    "keepalived",
    "pacemaker",
    "kube_vip",
    "coredns",
    "monitoring",
    "addons",
    "rbac",
    "kubeconfig",
]

COMPONENTS = [import_module(f".{name}", __name__) for name in NAMES]
