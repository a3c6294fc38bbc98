"""The deploy's view of what the components declare (components/*: UNITS, PACKAGES,
BINARIES, beside their templates): every unit by name, the packages and binaries each
host component needs, and the groups the steps converge together. Nothing here is
written twice: a unit, package or binary is named only by the component that needs it.
"""

from __future__ import annotations

from ..components import COMPONENTS
from ..components.base import Unit

Service = Unit  # (the steps' name for it)


def _merged(attr: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in COMPONENTS:
        for key, names in getattr(m, attr, {}).items():
            out.setdefault(key, []).extend(n for n in names if n not in out.get(key, []))
    return out


UNITS: dict[str, Unit] = {u.unit: u for m in COMPONENTS for u in getattr(m, "UNITS", ())}
# Debian packages each host component needs; present in the lab image, installed on real hosts.
PACKAGES = _merged("PACKAGES")
KUBERNETES_BINARIES = _merged("BINARIES")

ETCD = UNITS["etcd"]
CONTROL_PLANE = (UNITS["kube-apiserver"], UNITS["kube-controller-manager"], UNITS["kube-scheduler"])
# every node (servers too): the runtime, the pod network, the kubelet, kube-proxy
CONTAINERD, POD_ROUTES = UNITS["containerd"], UNITS["hakube-pod-routes"]
KUBELET, KUBE_PROXY = UNITS["kubelet"], UNITS["kube-proxy"]
# the monitoring services, each with the host component that runs it
MONITORING = [(u.needs, u) for u in UNITS.values() if u.needs]
VIP_PRESENCE = UNITS["hakube-vip-presence.timer"]
ETCD_BACKUP = UNITS["hakube-etcd-backup.timer"]
