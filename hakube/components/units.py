"""Every systemd unit hakube runs on a host, in the order a booting machine starts them.

Kept with the components (not the engine) because more than the deploy needs it: the SSH
fault driver (chaos on real hosts) stops and starts exactly these.
"""

CLUSTER_UNITS = (
    "containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
    "hakube-pod-routes", "haproxy", "nginx", "corosync", "pacemaker", "keepalived", "k3s", "k3s-agent",
    "prometheus-node-exporter", "prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter",
    "hakube-vip-presence.timer", "hakube-etcd-backup.timer",
)
