"""Where things live on a host. One place, so components, PKI and deploy agree.

The layout follows kubeadm's (/etc/kubernetes/pki, /etc/kubernetes/*.kubeconfig) because
that is where people who run Kubernetes by hand look first.
"""

K8S = "/etc/kubernetes"
PKI = f"{K8S}/pki"

# cluster CA (servers also hold its key: the controller-manager signs CSRs with it)
CA_CRT = f"{PKI}/ca.crt"
CA_KEY = f"{PKI}/ca.key"
# etcd's own CA and certificates
ETCD_CA_CRT = f"{PKI}/etcd/ca.crt"
ETCD_SERVER_CRT = f"{PKI}/etcd/server.crt"
ETCD_SERVER_KEY = f"{PKI}/etcd/server.key"
ETCD_PEER_CRT = f"{PKI}/etcd/peer.crt"
ETCD_PEER_KEY = f"{PKI}/etcd/peer.key"
ETCD_HEALTH_CRT = f"{PKI}/etcd/healthcheck-client.crt"
ETCD_HEALTH_KEY = f"{PKI}/etcd/healthcheck-client.key"
APISERVER_ETCD_CLIENT_CRT = f"{PKI}/apiserver-etcd-client.crt"
APISERVER_ETCD_CLIENT_KEY = f"{PKI}/apiserver-etcd-client.key"
# apiserver
APISERVER_CRT = f"{PKI}/apiserver.crt"
APISERVER_KEY = f"{PKI}/apiserver.key"
APISERVER_KUBELET_CLIENT_CRT = f"{PKI}/apiserver-kubelet-client.crt"
APISERVER_KUBELET_CLIENT_KEY = f"{PKI}/apiserver-kubelet-client.key"
FRONT_PROXY_CA_CRT = f"{PKI}/front-proxy-ca.crt"
FRONT_PROXY_CLIENT_CRT = f"{PKI}/front-proxy-client.crt"
FRONT_PROXY_CLIENT_KEY = f"{PKI}/front-proxy-client.key"
SA_KEY = f"{PKI}/sa.key"
SA_PUB = f"{PKI}/sa.pub"
# per-node client and serving certificates
KUBELET_CLIENT_CRT = f"{PKI}/kubelet-client.crt"
KUBELET_CLIENT_KEY = f"{PKI}/kubelet-client.key"
KUBELET_SERVING_CRT = f"{PKI}/kubelet.crt"
KUBELET_SERVING_KEY = f"{PKI}/kubelet.key"
# control-plane component client certificates (referenced by their kubeconfigs)
CONTROLLER_MANAGER_CRT = f"{PKI}/controller-manager.crt"
CONTROLLER_MANAGER_KEY = f"{PKI}/controller-manager.key"
SCHEDULER_CRT = f"{PKI}/scheduler.crt"
SCHEDULER_KEY = f"{PKI}/scheduler.key"
KUBE_PROXY_CRT = f"{PKI}/kube-proxy.crt"
KUBE_PROXY_KEY = f"{PKI}/kube-proxy.key"
ADMIN_CRT = f"{PKI}/admin.crt"  # on servers, for kubectl there (/etc/kubernetes/admin.kubeconfig)
ADMIN_KEY = f"{PKI}/admin.key"
# load-balancer health checks and the keepalived track script authenticate with this
# client certificate (anonymous auth is off): see components/haproxy/haproxy.cfg.j2
LB_CHECK_CRT = f"{PKI}/lb-check.crt"
LB_CHECK_KEY = f"{PKI}/lb-check.key"
LB_CHECK_PEM = f"{PKI}/lb-check.pem"  # certificate + key, the form HAProxy reads

# kubeconfigs of the components (they reference the files above, no embedded keys)
KUBECONFIG_CONTROLLER_MANAGER = f"{K8S}/controller-manager.kubeconfig"
KUBECONFIG_SCHEDULER = f"{K8S}/scheduler.kubeconfig"
KUBECONFIG_KUBELET = f"{K8S}/kubelet.kubeconfig"
KUBECONFIG_KUBE_PROXY = f"{K8S}/kube-proxy.kubeconfig"
KUBECONFIG_ADMIN = f"{K8S}/admin.kubeconfig"

# binaries installed by hakube (from spec.distribution.binaries or a release download)
BIN = "/usr/local/bin"

# Prometheus reads its client certificate as user prometheus, so it has its own copy.
PROMETHEUS_PKI = "/etc/prometheus/pki"
MONITORING_CA_CRT = f"{PROMETHEUS_PKI}/ca.crt"
MONITORING_ETCD_CA_CRT = f"{PROMETHEUS_PKI}/etcd-ca.crt"
MONITORING_CLIENT_CRT = f"{PROMETHEUS_PKI}/monitoring.crt"
MONITORING_CLIENT_KEY = f"{PROMETHEUS_PKI}/monitoring.key"
MONITORING_ETCD_CLIENT_CRT = f"{PROMETHEUS_PKI}/etcd-client.crt"
MONITORING_ETCD_CLIENT_KEY = f"{PROMETHEUS_PKI}/etcd-client.key"

# hakube's own helper scripts and the node-exporter textfile directory
LIBEXEC = "/usr/local/lib/hakube"
# hakube's own configuration folder (the cluster manifests it applies, the pacemaker script)
ETC = "/etc/hakube"
# hakube's bookkeeping on a host (the digest book of big files; see facts/host.py)
STATE_DIR = "/var/lib/hakube"
# keepalived's current VRRP state, written by its notify script, read by `hakube status`
VRRP_STATE = "/run/hakube/vrrp-state"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"

# K3s
K3S_CONFIG = "/etc/rancher/k3s/config.yaml"
K3S_TOKEN = "/etc/rancher/k3s/token"
K3S_TLS = "/var/lib/rancher/k3s/server/tls"  # custom CA files go here before first start
K3S_MANIFESTS = "/var/lib/rancher/k3s/server/manifests"
