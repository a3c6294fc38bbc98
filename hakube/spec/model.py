"""The `cluster.yaml` model: typed, frozen, with defaults.

Field names in YAML are camelCase (Kubernetes style); attributes are snake_case.
Structural rules (types, ranges, unknown keys) live here; rules that relate several
fields to each other live in `hakube.spec.validate`, so that every problem is reported
with its field path in one pass.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

API_VERSION = "hakube.dev/v1alpha1"
KIND = "Cluster"

# RFC 1123 label: what Kubernetes accepts as a node name and what we use as a hostname.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Model(BaseModel):
    """Base of every spec object: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


Port = Annotated[int, Field(ge=1, le=65535)]
Role = Literal["server", "agent", "loadbalancer"]


class Metadata(Model):
    name: str = Field(description="Cluster name: a DNS label, used for contexts and state.")

    @field_validator("name")
    @classmethod
    def _label(cls, v: str) -> str:
        if not DNS_LABEL.match(v):
            raise ValueError(
                "must be a DNS label (lowercase letters, digits and '-', at most 63 characters)"
            )
        return v


class Distribution(Model):
    name: Literal["kubernetes", "k3s"] = "kubernetes"
    version: str = Field(description="e.g. 1.20.2 for kubernetes, v1.30.5+k3s1 for k3s")
    binaries: Path | None = Field(
        None, description="Local directory with the binaries (air-gapped install)."
    )
    images: Path | None = Field(
        None, description="Local directory of OCI image archives loaded into containerd."
    )

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.match(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$", v):
            raise ValueError("must look like 1.20.2 or v1.30.5+k3s1")
        return v

    @property
    def minor(self) -> tuple[int, int]:
        major, minor = self.version.lstrip("v").split(".")[:2]
        return int(major), int(minor)


class JumpHost(Model):
    address: str
    user: str | None = None
    port: Port = 22


class HostSSH(Model):
    """Per-host overrides of `spec.ssh`; unset fields inherit."""

    user: str | None = None
    port: Port | None = None
    key_file: Path | None = None
    jump_host: JumpHost | None = None


class SSH(Model):
    user: str = "root"
    port: Port = 22
    key_file: Path | None = Field(
        None, description="Private key; when unset, the SSH agent and default keys are used."
    )
    known_hosts: Path = Field(Path("~/.ssh/known_hosts"))
    host_key_policy: Literal["strict", "accept-new"] = Field(
        "strict",
        description="strict: unknown host keys are refused; accept-new: trust on first contact.",
    )
    sudo: bool | None = Field(None, description="Use sudo; default: when user is not root.")
    jump_host: JumpHost | None = None
    connect_timeout: float = Field(10.0, gt=0)
    max_parallel: int = Field(10, ge=1, description="Hosts worked on at once.")


class Taint(Model):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


class Host(Model):
    name: str
    address: ipaddress.IPv4Address
    roles: list[Role] = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    interface: str | None = Field(
        None, description="Interface carrying `address`; default: spec.controlPlane.vip.interface."
    )
    ssh: HostSSH | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS_LABEL.match(v):
            raise ValueError("must be a DNS label (lowercase letters, digits and '-')")
        return v

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists a role twice")
        return v

    def has(self, role: str) -> bool:
        return role in self.roles


class Endpoint(Model):
    vip: ipaddress.IPv4Address = Field(
        description="Virtual IP, or the external load balancer's address (vip.provider: none)."
    )
    port: Port = 6443
    dns_name: str | None = Field(None, alias="dnsName")

    @field_validator("dns_name")
    @classmethod
    def _dns(cls, v: str | None) -> str | None:
        if v is not None and not DNS_NAME.match(v):
            raise ValueError("must be a DNS name such as api.example.lan")
        return v


class VIP(Model):
    provider: Literal["keepalived", "pacemaker", "kube-vip", "none"] = "keepalived"
    interface: str = Field("eth0", description="Interface the VIP is added to.")
    virtual_router_id: int | None = Field(
        None, ge=1, le=255, description="VRRP router id; default derived from the cluster name."
    )
    advert_interval: float = Field(
        0.5, gt=0, le=255,
        description="VRRP advertisement interval, seconds; takeover takes about 3 of them. "
        "Below 1 s keepalived speaks VRRPv3 (measured: README, Figures).",
    )
    unicast: bool = Field(True, description="VRRP to listed peers instead of multicast.")
    check_interval: int = Field(1, ge=1, description="Track script interval, seconds.")
    check_fall: int = Field(2, ge=1)
    check_rise: int = Field(2, ge=1)
    majority_check: bool = Field(
        True, description="With 3 or more servers, a host competes for the VIP only while it reaches "
        "a majority of the servers: a host cut off from its peers does not claim the VIP.",
    )
    garp_refresh: int = Field(
        1, ge=0, description="Seconds between the holder's gratuitous ARP re-announcements (0: only on "
        "takeover); they correct clients that a wrongly claimed VIP misled.",
    )


class LoadBalancer(Model):
    provider: Literal["haproxy", "nginx"] = "haproxy"
    placement: Literal["servers", "dedicated", "agents-local"] = "servers"
    check_interval_ms: int = Field(1000, ge=100)
    check_fall: int = Field(2, ge=1)
    check_rise: int = Field(2, ge=1)
    connect_timeout_ms: int = Field(1000, ge=100)


class ControlPlane(Model):
    endpoint: Endpoint
    vip: VIP = Field(default_factory=VIP)
    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    apiserver_port: Port | None = Field(
        None,
        description="Port each apiserver listens on; default 6443, or 6444 when a load "
        "balancer shares its host and takes 6443.",
    )
    allow_two_servers: bool = Field(
        False, description="Accept 2 servers (they tolerate no failure)."
    )
    schedulable_servers: bool = Field(
        False, description="Let ordinary workloads run on servers (small clusters)."
    )


class EtcdTuning(Model):
    heartbeat_interval_ms: int = Field(100, ge=10)
    election_timeout_ms: int = Field(1000, ge=50)


class Datastore(Model):
    type: Literal["etcd", "external"] = Field(
        "etcd", description="etcd on the servers (k3s: embedded etcd), or external endpoints."
    )
    endpoints: list[str] = Field(default_factory=list)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    etcd: EtcdTuning = Field(default_factory=EtcdTuning)


class Network(Model):
    node_cidr: ipaddress.IPv4Network = Field(alias="nodeCIDR", description="The network the hosts' addresses are in.")
    pod_cidr: ipaddress.IPv4Network = Field(ipaddress.IPv4Network("10.244.0.0/16"), alias="podCIDR")
    service_cidr: ipaddress.IPv4Network = Field(ipaddress.IPv4Network("10.96.0.0/12"), alias="serviceCIDR")
    cluster_dns: ipaddress.IPv4Address = Field(ipaddress.IPv4Address("10.96.0.10"), alias="clusterDNS")
    cluster_domain: str = "cluster.local"
    node_port_range: str = "30000-32767"
    node_pod_cidr_size: int = Field(24, alias="nodePodCIDRSize", ge=16, le=28, description="Prefix of each node's pod CIDR.")

    @field_validator("node_cidr", "pod_cidr", "service_cidr", mode="before")
    @classmethod
    def _strict_net(cls, v):
        if isinstance(v, str):
            try:
                return ipaddress.IPv4Network(v, strict=True)
            except ValueError as e:
                raise ValueError(f"not a network address in CIDR form ({e})") from None
        return v

    @field_validator("node_port_range")
    @classmethod
    def _range(cls, v: str) -> str:
        m = re.match(r"^(\d+)-(\d+)$", v)
        if not m or not (1 <= int(m[1]) < int(m[2]) <= 65535):
            raise ValueError("must be FIRST-LAST with 1 <= FIRST < LAST <= 65535, e.g. 30000-32767")
        return v

    @field_validator("cluster_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not DNS_NAME.match(v):
            raise ValueError("must be a DNS name such as cluster.local")
        return v


class CoreDNS(Model):
    enabled: bool = True
    replicas: int = Field(2, ge=1)
    anti_affinity: Literal["required", "preferred"] = "required"
    pod_disruption_budget: bool = True
    image: str = "registry.k8s.io/coredns/coredns:v1.8.0"


class Monitoring(Model):
    enabled: bool = False
    hosts: list[str] | None = Field(
        None, description="Hosts running Prometheus and Alertmanager; default: the servers."
    )
    scrape_interval: str = "15s"
    retention: str = "15d"
    webhook_url: str | None = Field(None, description="Alertmanager webhook receiver.")


class Dashboard(Model):
    enabled: bool = False
    cluster_admin: bool = Field(False, description="Bind the dashboard account to cluster-admin.")


class Ingress(Model):
    enabled: bool = False
    http_node_port: Port = 30080
    https_node_port: Port = 30443


class MetalLB(Model):
    enabled: bool = False
    addresses: list[str] = Field(
        default_factory=list, description="Pool: CIDRs or FIRST-LAST ranges in the node network."
    )


class Addons(Model):
    coredns: CoreDNS = Field(default_factory=CoreDNS)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    dashboard: Dashboard = Field(default_factory=Dashboard)
    ingress: Ingress = Field(default_factory=Ingress)
    metallb: MetalLB = Field(default_factory=MetalLB)


class K3sOptions(Model):
    """Options that only the k3s distribution understands."""

    disable: list[str] = Field(
        default_factory=lambda: ["traefik", "servicelb"],
        description="Bundled K3s components to disable (coredns is added when the HA add-on runs).",
    )
    flannel_backend: Literal["vxlan", "host-gw", "wireguard-native", "none"] = "vxlan"
    extra_server_args: list[str] = Field(default_factory=list)
    extra_agent_args: list[str] = Field(default_factory=list)


class KubernetesOptions(Model):
    """Options that only the upstream kubernetes distribution understands."""

    feature_gates: dict[str, bool] = Field(default_factory=dict)
    apiserver_extra_args: dict[str, str] = Field(default_factory=dict)
    kubelet_extra_args: dict[str, str] = Field(default_factory=dict)


class ClusterSpec(Model):
    distribution: Distribution
    ssh: SSH = Field(default_factory=SSH)
    hosts: list[Host] = Field(min_length=1)
    control_plane: ControlPlane
    datastore: Datastore = Field(default_factory=Datastore)
    network: Network
    addons: Addons = Field(default_factory=Addons)
    k3s: K3sOptions | None = None
    kubernetes: KubernetesOptions | None = None


class Cluster(Model):
    """A whole `cluster.yaml`."""

    api_version: Literal["hakube.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Cluster"]
    metadata: Metadata
    spec: ClusterSpec

    # Where the file was read from: relative paths in the spec are relative to it.
    # Not a spec field; set by the loader.
    @property
    def name(self) -> str:
        return self.metadata.name

    def hosts_with(self, role: str) -> list[Host]:
        return [h for h in self.spec.hosts if h.has(role)]

    @property
    def servers(self) -> list[Host]:
        return self.hosts_with("server")

    @property
    def agents(self) -> list[Host]:
        return self.hosts_with("agent")

    @property
    def loadbalancers(self) -> list[Host]:
        return self.hosts_with("loadbalancer")
