"""The `cluster.yaml` model: typed, frozen, with defaults.

Field names in YAML are camelCase (Kubernetes style); attributes are snake_case.
Structural rules (types, ranges, unknown keys, the syntax of every string) live here; rules
that relate several fields to each other live in `hakube.spec.validate`, so that every
problem is reported with its field path in one pass.

Types are strict: `port: true` or `port: "6443"` is an error, not port 1 or 6443; only
addresses, networks and paths are parsed from strings. Every string that ends up in a
file on a host (an interface in keepalived.conf, a label on the kubelet's command line, an
extra argument in a systemd unit) is checked against the syntax of the program that reads
it, so no value can carry a newline or a second setting into such a file.

Security overrides: `spec.kubernetes.apiserverExtraArgs`/`kubeletExtraArgs` and
`spec.k3s.extraServerArgs`/`extraAgentArgs` may not change a setting hakube hardens
(anonymous auth, authorization mode, client CA, TLS and etcd certificates, the kubelet's
read-only port, profiling, ...; the list is `hakube.spec.validate.SECURITY_FLAGS`) unless
the same block's `securityOverrides` names it as `COMPONENT:FLAG`, e.g.
`kube-apiserver:anonymous-auth` or `kubelet:read-only-port`; each allowed override is then
reported as a warning. Flags that hakube derives from other fields (the secure port, the
CIDRs, feature gates, ...) cannot be overridden at all: set the field instead.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

API_VERSION = "hakube.dev/v1alpha1"
KIND = "Cluster"

# RFC 1123 label: what Kubernetes accepts as a node name and what we use as a hostname.
# Patterns are used with fullmatch: `$` would also match before a trailing newline.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def bad(message: str, fix: str = "") -> PydanticCustomError:
    """A validation error with a fix; the loader turns it into a Problem."""
    return PydanticCustomError("spec_value", "{message}", {"message": message, "fix": fix})


# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _control(v: str) -> str | None:
    m = _CONTROL.search(v)
    if not m:
        return None
    names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL"}
    return names.get(m[0], f"the control character U+{ord(m[0]):04X}")


def _printable(v: str) -> str:
    if (c := _control(v)):
        raise bad(f"contains {c}", "write the value on one line, without control characters")
    return v


def _string_first(v):
    """Parsed types (addresses, paths) are given as strings: 167772161 is no address."""
    if isinstance(v, (int, float, bool, list, dict)) or v is None:
        raise PydanticCustomError("string_type", "Input should be a valid string")
    return v


def _path_text(v):
    v = _string_first(v)
    if isinstance(v, str):
        _printable(v)
        if not v:
            raise bad("is empty", "give a path, or remove the field")
    return v


class Model(BaseModel):
    """Base of every spec object: camelCase keys, unknown keys rejected, immutable, strict
    types (no `true` for a number, no number for a string)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
        strict=True, allow_inf_nan=False,
    )


Port = Annotated[int, Field(ge=1, le=65535)]
# Parsed from strings, so not strict; but never from numbers.
LocalPath = Annotated[Path, BeforeValidator(_path_text), Field(strict=False)]
IPv4 = Annotated[ipaddress.IPv4Address, BeforeValidator(_string_first), Field(strict=False)]
IPv4Net = Annotated[ipaddress.IPv4Network, BeforeValidator(_string_first), Field(strict=False)]
Text = Annotated[str, AfterValidator(_printable)]


def _ifname(v: str) -> str:
    """The kernel's dev_valid_name(): 1 to IFNAMSIZ-1 (15) bytes, not . or .., no '/', ':'
    or whitespace; control characters are refused too."""
    fix = "give the interface's name as `ip link` shows it, e.g. eth0 or enp1s0"
    if not v:
        raise bad("is empty: not an interface name", fix)
    for ch in v:
        if ch in "/:" or ch.isspace() or _CONTROL.match(ch):
            what = {"/": "'/'", ":": "':'"}.get(ch) or (_control(ch) or "whitespace")
            raise bad(f"contains {what}, which no interface name has", fix)
    if len(v.encode()) > 15:
        raise bad(f"is {len(v.encode())} bytes long; interface names have at most 15", fix)
    if v in (".", ".."):
        raise bad("is not an interface name", fix)
    return v


IfName = Annotated[str, AfterValidator(_ifname)]

# Kubernetes' syntax (k8s.io/apimachinery/pkg/util/validation): a qualified name is an
# optional DNS-subdomain prefix (at most 253) and '/', then a name of at most 63.
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_RULE = ("at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter "
              "or digit")


def _qualified_name(v: str, what: str) -> str:
    fix = f"use a {what} such as example.com/zone or zone: an optional DNS prefix and '/', then {_NAME_RULE}"
    if (c := _control(v)):
        raise bad(f"{what} {v!r} contains {c}", fix)
    parts = v.split("/")
    if len(parts) > 2:
        raise bad(f"{what} {v!r} has more than one '/'", fix)
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix or len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix):
            raise bad(f"{what} {v!r}: the prefix {prefix!r} is not a DNS subdomain "
                      "(lowercase letters, digits, '-' and '.', at most 253)", fix)
    if not name or len(name) > 63 or not _QUALIFIED.fullmatch(name):
        raise bad(f"{what} {v!r}: the name {name!r} is not {_NAME_RULE}", fix)
    return v


def _label_value(v: str, what: str = "label value") -> str:
    fix = f"use e.g. web or batch-1 ({_NAME_RULE}; may be empty)"
    if (c := _control(v)):
        raise bad(f"{what} {v!r} contains {c}", fix)
    if v and (len(v) > 63 or not _QUALIFIED.fullmatch(v)):
        raise bad(f"{what} {v!r} is not empty or {_NAME_RULE}", fix)
    return v



# Labels a kubelet may set on its own node (k8s.io/kubelet/pkg/apis: IsKubeletLabel); any
# other label in the kubernetes.io or k8s.io namespaces makes the kubelet refuse to start.
KUBELET_LABELS = {
    "kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/arch", "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
}
KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
ROLE_LABEL = "hakube.dev/role"  # set by hakube on every node: server or agent


def _node_label_key(v: str) -> str:
    _qualified_name(v, "label key")
    if v == ROLE_LABEL:
        raise bad(f"{ROLE_LABEL} is set by hakube (server or agent)", "remove it")
    ns = v.split("/")[0] if "/" in v else ""

    def within(*domains: str) -> bool:
        return any(ns == d or ns.endswith("." + d) for d in domains)

    if within("kubernetes.io", "k8s.io") and v not in KUBELET_LABELS and not within(*KUBELET_LABEL_NAMESPACES):
        raise bad(f"the kubelet may not set {v} on its own node (NodeRestriction) and refuses to start with it",
                  "use a label outside kubernetes.io and k8s.io (e.g. example.com/role), or set it with "
                  "kubectl label once the node has joined")
    return v


NodeLabelKey = Annotated[str, AfterValidator(_node_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
TaintKey = Annotated[str, AfterValidator(lambda v: _qualified_name(v, "taint key"))]
TaintValue = Annotated[str, AfterValidator(lambda v: _label_value(v, "taint value"))]

# Prometheus' duration syntax (prometheus/common model.ParseDuration), not empty.
DURATION = re.compile(r"(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?")
_DURATION_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


def _duration(v: str) -> str:
    fix = "give a Prometheus duration: units y, w, d, h, m, s, ms in that order, e.g. 15s, 1m, 1h30m, 15d"
    m = DURATION.fullmatch(v)
    if not v or not m:
        raise bad(f"{v!r} is not a Prometheus duration", fix)
    ms = sum(int(n) * unit for n, unit in zip(m.groups()[1::2], _DURATION_MS) if n)
    if ms == 0:
        raise bad(f"{v!r} is zero", "give a duration longer than 0, e.g. 15s")
    if ms >= 2 ** 63 // 1_000_000:  # Prometheus keeps durations in int64 nanoseconds
        raise bad(f"{v!r} is too long for Prometheus", fix)
    return v


Duration = Annotated[str, AfterValidator(_duration)]

# An OCI image reference (distribution/reference's grammar): [domain[:port]/]path[:tag][@digest].
_IMAGE = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")


def _image(v: str) -> str:
    if len(v) > 512 or not _IMAGE.fullmatch(v):
        raise bad(f"{v!r} is not an image reference",
                  "give REGISTRY/REPOSITORY:TAG, e.g. registry.k8s.io/coredns/coredns:v1.8.0")
    return v


Image = Annotated[str, AfterValidator(_image)]


def _url(v: str) -> str:
    fix = "give an http:// or https:// URL, e.g. https://hooks.example.com/alerts"
    _printable(v)
    if any(ch.isspace() for ch in v):
        raise bad("contains whitespace, which a URL cannot", fix + " (spaces written as %20)")
    try:
        u = urlsplit(v)
        u.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise bad(f"{v!r} is not a URL ({e})", fix) from None
    if u.scheme not in ("http", "https") or not u.hostname or len(v) > 2048:
        raise bad(f"{v!r} is not an http(s) URL", fix)
    return v


URL = Annotated[str, AfterValidator(_url)]

_ENDPOINT = re.compile(r"[a-z][a-z0-9+.-]*://[^\s,]+")


def _endpoint(v: str) -> str:
    _printable(v)
    if not _ENDPOINT.fullmatch(v):
        raise bad(f"{v!r} is not an endpoint URL",
                  "give one URL per list item, without spaces or commas, e.g. https://etcd-1:2379")
    return v


# POSIX-portable user names (no leading '-', so no user name reads as an option).
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")


def _user(v: str) -> str:
    if not _USER.fullmatch(v):
        raise bad(f"{v!r} is not a user name",
                  "use letters, digits, '_', '.', '-' (not first), at most 32, e.g. admin")
    return v


UserName = Annotated[str, AfterValidator(_user)]
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\.?")


def _hostname(v: str) -> str:
    if not _HOSTNAME.fullmatch(v):
        raise bad(f"{v!r} is not a host name or IPv4 address", "give e.g. bastion.lan or 192.168.1.5")
    return v


HostName = Annotated[str, AfterValidator(_hostname)]

# Command-line flags of the Kubernetes components and K3s: lowercase words and '-'.
FLAG_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def _arg_name(v: str) -> str:
    if not FLAG_NAME.fullmatch(v.removeprefix("--")):
        raise bad(f"{v!r} is not a flag name",
                  "give the flag without its value: lowercase letters, digits and '-', e.g. audit-log-maxage")
    return v


def _arg_value(v: str) -> str:
    if (c := _control(v)):
        raise bad(f"the value contains {c}", "give the value on one line, without control characters")
    if len(v) > 4096:
        raise bad("the value is longer than 4096 characters", "shorten it, or put it in a file the flag reads")
    return v


ArgName = Annotated[str, AfterValidator(_arg_name)]
ArgValue = Annotated[str, AfterValidator(_arg_value)]


def _k3s_arg(v: str) -> str:
    _arg_value(v)
    if v.startswith("-"):
        name = v.lstrip("-").split("=", 1)[0]
        if not v.startswith("--") or not FLAG_NAME.fullmatch(name):
            raise bad(f"{v!r} is not a K3s flag",
                      "write each flag as --name=value, e.g. --kubelet-arg=max-pods=200")
    return v


K3sArg = Annotated[str, AfterValidator(_k3s_arg)]


def _feature_gate(v: str) -> str:
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", v):
        raise bad(f"{v!r} is not a feature gate name", "give its name as Kubernetes spells it, e.g. GracefulNodeShutdown")
    return v


FeatureGate = Annotated[str, AfterValidator(_feature_gate)]

SECURITY_COMPONENTS = ("kube-apiserver", "kubelet", "kube-controller-manager", "kube-scheduler",
                       "kube-proxy", "etcd", "k3s")


def _override(v: str) -> str:
    comp, _, flag = v.partition(":")
    if comp not in SECURITY_COMPONENTS or not FLAG_NAME.fullmatch(flag):
        raise bad(f"{v!r} is not COMPONENT:FLAG",
                  f"e.g. kube-apiserver:anonymous-auth; components: {', '.join(SECURITY_COMPONENTS)}")
    return v


SecurityOverride = Annotated[str, AfterValidator(_override)]
# etcd: a host that runs only an etcd member of this cluster (servers then use it, not a local one)
Role = Literal["server", "agent", "loadbalancer", "etcd"]


class Metadata(Model):
    name: str = Field(description="Cluster name: a DNS label, used for contexts and state.")

    @field_validator("name")
    @classmethod
    def _label(cls, v: str) -> str:
        if not DNS_LABEL.fullmatch(v):
            raise ValueError(
                "must be a DNS label (lowercase letters, digits and '-', at most 63 characters)"
            )
        return v


class Distribution(Model):
    name: Literal["kubernetes", "k3s"] = "kubernetes"
    version: str = Field(description="e.g. 1.20.2 for kubernetes, v1.30.5+k3s1 for k3s")
    binaries: LocalPath | None = Field(
        None, description="Local directory with the binaries (air-gapped install)."
    )
    images: LocalPath | None = Field(
        None, description="Local directory of OCI image archives loaded into containerd."
    )

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.fullmatch(r"v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?", v):
            raise ValueError("must look like 1.20.2 or v1.30.5+k3s1")
        return v

    @property
    def minor(self) -> tuple[int, int]:
        major, minor = self.version.lstrip("v").split(".")[:2]
        return int(major), int(minor)


class JumpHost(Model):
    address: HostName
    user: UserName | None = None
    port: Port = 22


class HostSSH(Model):
    """Per-host overrides of `spec.ssh`; unset fields inherit."""

    user: UserName | None = None
    port: Port | None = None
    key_file: LocalPath | None = None
    jump_host: JumpHost | None = None


class SSH(Model):
    user: UserName = "root"
    port: Port = 22
    key_file: LocalPath | None = Field(
        None, description="Private key; when unset, the SSH agent and default keys are used."
    )
    known_hosts: LocalPath = Field(Path("~/.ssh/known_hosts"))
    host_key_policy: Literal["strict", "accept-new"] = Field(
        "strict",
        description="strict: unknown host keys are refused; accept-new: trust on first contact.",
    )
    sudo: bool | None = Field(None, description="Use sudo; default: when user is not root.")
    jump_host: JumpHost | None = None
    connect_timeout: float = Field(10.0, gt=0, le=3600)
    max_parallel: int = Field(10, ge=1, le=1000, description="Hosts worked on at once.")


class Taint(Model):
    key: TaintKey
    value: TaintValue = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


class Host(Model):
    name: str
    address: IPv4
    roles: list[Role] = Field(min_length=1)
    labels: dict[NodeLabelKey, LabelValue] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    interface: IfName | None = Field(
        None, description="Interface carrying `address`; default: spec.controlPlane.vip.interface."
    )
    ssh: HostSSH | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS_LABEL.fullmatch(v):
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
    vip: IPv4 = Field(
        description="Virtual IP, or the external load balancer's address (vip.provider: none)."
    )
    port: Port = 6443
    dns_name: str | None = Field(None, alias="dnsName")

    @field_validator("dns_name")
    @classmethod
    def _dns(cls, v: str | None) -> str | None:
        if v is not None and not DNS_NAME.fullmatch(v):
            raise ValueError("must be a DNS name such as api.example.lan")
        return v


class VIP(Model):
    provider: Literal["keepalived", "pacemaker", "kube-vip", "none"] = "keepalived"
    interface: IfName = Field("eth0", description="Interface the VIP is added to.")
    virtual_router_id: int | None = Field(
        None, ge=1, le=255, description="VRRP router id; default derived from the cluster name."
    )
    advert_interval: float = Field(
        0.5, gt=0, le=255,
        description="VRRP advertisement interval, seconds; takeover takes about 3 of them. "
        "Below 1 s keepalived speaks VRRPv3 (measured: README, Figures).",
    )
    unicast: bool = Field(True, description="VRRP to listed peers instead of multicast.")
    check_interval: int = Field(1, ge=1, le=3600, description="Track script interval, seconds.")
    check_fall: int = Field(2, ge=1, le=100)
    check_rise: int = Field(2, ge=1, le=100)
    majority_check: bool = Field(
        True, description="With 3 or more VIP hosts and servers together, a host competes for the VIP "
        "only while it reaches a majority of them: a host cut off from its peers does not claim the VIP.",
    )
    garp_refresh: int = Field(
        1, ge=0, le=3600, description="Seconds between the holder's gratuitous ARP re-announcements (0: only on "
        "takeover); they correct clients that a wrongly claimed VIP misled.",
    )


class LoadBalancer(Model):
    provider: Literal["haproxy", "nginx"] = "haproxy"
    placement: Literal["servers", "dedicated", "agents-local"] = "servers"
    check_interval_ms: int = Field(1000, ge=100, le=3_600_000)
    check_fall: int = Field(2, ge=1, le=100)
    check_rise: int = Field(2, ge=1, le=100)
    connect_timeout_ms: int = Field(1000, ge=100, le=3_600_000)


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
    heartbeat_interval_ms: int = Field(100, ge=10, le=10_000)
    election_timeout_ms: int = Field(1000, ge=50, le=50_000, description="etcd refuses more than 50 s.")


class Datastore(Model):
    type: Literal["etcd", "external"] = Field(
        "etcd", description="etcd run by hakube: on the servers (k3s: embedded etcd), or on the hosts "
        "with the role etcd when there are any; or external: an existing etcd given by endpoints."
    )
    endpoints: list[Annotated[str, AfterValidator(_endpoint)]] = Field(default_factory=list)
    ca_file: LocalPath | None = None
    cert_file: LocalPath | None = None
    key_file: LocalPath | None = None
    etcd: EtcdTuning = Field(default_factory=EtcdTuning)


class Network(Model):
    node_cidr: IPv4Net = Field(alias="nodeCIDR", description="The network the hosts' addresses are in.")
    pod_cidr: IPv4Net = Field(ipaddress.IPv4Network("10.244.0.0/16"), alias="podCIDR")
    service_cidr: IPv4Net = Field(ipaddress.IPv4Network("10.96.0.0/12"), alias="serviceCIDR")
    cluster_dns: IPv4 = Field(ipaddress.IPv4Address("10.96.0.10"), alias="clusterDNS")
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
        m = re.fullmatch(r"([0-9]{1,5})-([0-9]{1,5})", v)
        if not m or not (1 <= int(m[1]) < int(m[2]) <= 65535):
            raise ValueError("must be FIRST-LAST with 1 <= FIRST < LAST <= 65535, e.g. 30000-32767")
        return v

    @field_validator("cluster_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not DNS_NAME.fullmatch(v):
            raise ValueError("must be a DNS name such as cluster.local")
        return v


    def node_pod_cidr(self, address) -> str:
        """A node's slice of the pod network, chosen by its address: the host at offset N
        of nodeCIDR gets slice N of podCIDR. By address, not by place in the host list:
        adding or removing a host must not move another node's pods to a new range (its
        running pods would keep the old addresses while every other node routed the new
        ones to it). When nodeCIDR has more addresses than podCIDR has slices, the offset
        wraps around; validate.networks_disjoint refuses two nodes on the same slice."""
        size = self.node_pod_cidr_size
        slices = 1 << (size - self.pod_cidr.prefixlen)
        offset = (int(address) - int(self.node_cidr.network_address)) % slices
        base = int(self.pod_cidr.network_address) + offset * (1 << (32 - size))
        return f"{ipaddress.IPv4Address(base)}/{size}"

class CoreDNS(Model):
    enabled: bool = True
    replicas: int = Field(2, ge=1, le=1000)
    anti_affinity: Literal["required", "preferred"] = "required"
    pod_disruption_budget: bool = True
    image: Image = "registry.k8s.io/coredns/coredns:v1.8.0"


class Monitoring(Model):
    enabled: bool = False
    hosts: list[Text] | None = Field(
        None, description="Hosts running Prometheus and Alertmanager; default: the servers."
    )
    scrape_interval: Duration = Field("15s", description="A Prometheus duration, e.g. 15s or 1m.")
    retention: Duration = Field("15d", description="A Prometheus duration, e.g. 15d or 1y.")
    webhook_url: URL | None = Field(None, description="Alertmanager webhook receiver.")


class Dashboard(Model):
    enabled: bool = False
    cluster_admin: bool = Field(False, description="Bind the dashboard account to cluster-admin.")


class Ingress(Model):
    enabled: bool = False
    http_node_port: Port = 30080
    https_node_port: Port = 30443


class MetalLB(Model):
    enabled: bool = False
    addresses: list[Text] = Field(
        default_factory=list, description="Pool: CIDRs or FIRST-LAST ranges in the node network."
    )


class Addons(Model):
    coredns: CoreDNS = Field(default_factory=CoreDNS)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    dashboard: Dashboard = Field(default_factory=Dashboard)
    ingress: Ingress = Field(default_factory=Ingress)
    metallb: MetalLB = Field(default_factory=MetalLB)


def _k3s_component(v: str) -> str:
    if not FLAG_NAME.fullmatch(v):
        raise bad(f"{v!r} is not a K3s component name",
                  "use names `k3s server --disable` takes: traefik, servicelb, local-storage, metrics-server, coredns")
    return v


class K3sOptions(Model):
    """Options that only the k3s distribution understands."""

    disable: list[Annotated[str, AfterValidator(_k3s_component)]] = Field(
        default_factory=lambda: ["traefik", "servicelb"],
        description="Bundled K3s components to disable (coredns is added when the HA add-on runs).",
    )
    flannel_backend: Literal["vxlan", "host-gw", "wireguard-native", "none"] = "vxlan"
    extra_server_args: list[K3sArg] = Field(
        default_factory=list, description="More `k3s server` flags, each `--name=value`.")
    extra_agent_args: list[K3sArg] = Field(
        default_factory=list, description="More `k3s agent` flags, each `--name=value`.")
    security_overrides: list[SecurityOverride] = Field(
        default_factory=list,
        description="Hardened settings the extra args may change, as COMPONENT:FLAG "
        "(e.g. kube-apiserver:anonymous-auth for --kube-apiserver-arg=anonymous-auth=..., "
        "k3s:write-kubeconfig-mode); each one used is reported as a warning.",
    )


class KubernetesOptions(Model):
    """Options that only the upstream kubernetes distribution understands."""

    feature_gates: dict[FeatureGate, bool] = Field(default_factory=dict)
    apiserver_extra_args: dict[ArgName, ArgValue] = Field(
        default_factory=dict, description="More kube-apiserver flags, `name: value`.")
    kubelet_extra_args: dict[ArgName, ArgValue] = Field(
        default_factory=dict, description="More kubelet flags, `name: value`.")
    security_overrides: list[SecurityOverride] = Field(
        default_factory=list,
        description="Hardened settings the extra args may change, as COMPONENT:FLAG "
        "(kube-apiserver:FLAG or kubelet:FLAG); each one used is reported as a warning.",
    )


# How often every etcd host's timer fires, aligned to the clock (so every member's timer
# fires at the same moment and only the leader's run takes the snapshot): a number of
# minutes that divides an hour, or of hours that divides a day.
BACKUP_SCHEDULES = tuple(f"{m}m" for m in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)) + \
    tuple(f"{h}h" for h in (1, 2, 3, 4, 6, 8, 12, 24))


def _backup_schedule(v: str) -> str:
    if v not in BACKUP_SCHEDULES:
        raise bad(f"{v!r} is not a backup schedule",
                  "give minutes that divide an hour or hours that divide a day: " + ", ".join(BACKUP_SCHEDULES))
    return v


BackupSchedule = Annotated[str, AfterValidator(_backup_schedule)]


class Backup(Model):
    """Scheduled etcd snapshots on the etcd hosts (`hakube backup` takes one to this machine)."""
    schedule: BackupSchedule = Field("12h", description="How often, aligned to the clock: 30m, 1h, 12h, 24h, ...")
    retention: int = Field(5, ge=1, le=1000, description="Snapshots each host keeps (the newest).")


class Certificates(Model):
    """Leaf certificates (2 years and a quarter, 825 days) are renewed by `hakube up` once
    they are this close to their expiry; the CAs (10 years) are kept."""
    renew_before_days: int = Field(90, ge=1, le=800, description="Days before a leaf certificate's expiry "
                                   "from which `hakube up` renews it (and says so).")


class ClusterSpec(Model):
    distribution: Distribution
    ssh: SSH = Field(default_factory=SSH)
    hosts: list[Host] = Field(min_length=1)
    control_plane: ControlPlane
    datastore: Datastore = Field(default_factory=Datastore)
    network: Network
    addons: Addons = Field(default_factory=Addons)
    backup: Backup | None = Field(None, description="Scheduled etcd snapshots on the etcd hosts; off when absent.")
    certificates: Certificates = Field(default_factory=Certificates)
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

    @property
    def etcd_hosts(self) -> list[Host]:
        """Hosts of their own for etcd (role etcd); empty when etcd runs on the servers."""
        return self.hosts_with("etcd")

    @property
    def etcd_on_servers(self) -> bool:
        """etcd members run on the servers (stacked), as opposed to hosts of their own or
        an existing etcd given by endpoints."""
        return self.spec.datastore.type == "etcd" and not self.etcd_hosts
