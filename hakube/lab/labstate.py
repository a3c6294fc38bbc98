"""A lab's record on disk: what `lab up` created, so `lab down` can remove exactly that.

`hakube.state.home()/labs/<name>/` (mode 0700) holds `state.json`, the SSH client key,
the machines' host keys, the lab's `known_hosts` and the generated `cluster.yaml`. The
record is written BEFORE anything is created on the host, so an interrupted `lab up`
still leaves a record that `lab down` can act on.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

from pydantic import BaseModel, Field

from hakube import state as hakube_state

from . import plan
from .errors import LabError

STATE_FILE = "state.json"
# Per-machine podman volumes: purpose -> path inside the machine.
MOUNTS = {"containerd": "/var/lib/containerd", "journal": "/var/log/journal"}


class Machine(BaseModel):
    name: str
    role: str
    address: ipaddress.IPv4Address
    container: str
    netns: str
    veth: str
    volumes: dict[str, str] = Field(description="purpose -> podman volume name")
    mounts: dict[str, str] = Field(description="purpose -> path inside the machine")


class Faults(BaseModel):
    """Network faults in force; the lab's nftables table is rendered from these."""

    isolated: list[str] = Field(default_factory=list)
    cuts: list[tuple[str, str]] = Field(default_factory=list)
    silenced: list[str] = Field(default_factory=list, description="paused machines")


class Lab(BaseModel):
    name: str
    index: int
    subnet: ipaddress.IPv4Network
    host_address: ipaddress.IPv4Address
    bridge: str
    nft_table: str
    vip_first: ipaddress.IPv4Address
    vip_last: ipaddress.IPv4Address
    image: str
    kubernetes: str = Field(description="cache folder of the Kubernetes build")
    machines: list[Machine]
    faults: Faults = Field(default_factory=Faults)

    # ---- files of the lab --------------------------------------------------------------
    @property
    def dir(self) -> Path:
        return lab_dir(self.name)

    @property
    def key_file(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def cluster_yaml(self) -> Path:
        return self.dir / "cluster.yaml"

    def host_key(self, machine: str) -> Path:
        return self.dir / "hostkeys" / f"{machine}_ed25519"

    # ---- lookups ---------------------------------------------------------------------------
    def machine(self, name: str) -> Machine:
        for m in self.machines:
            if m.name == name:
                return m
        names = ", ".join(m.name for m in self.machines)
        raise LabError(f"lab {self.name!r} has no machine {name!r}; its machines are {names}")

    def counts(self) -> dict[str, int]:
        return {role: sum(m.role == role for m in self.machines)
                for role in plan.ROLE_PREFIX}

    def save(self) -> None:
        d = ensure_dir(self.name)
        tmp = d / f".{STATE_FILE}.tmp"
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(tmp, d / STATE_FILE)


def labs_root() -> Path:
    return hakube_state.home() / "labs"


def lab_dir(name: str) -> Path:
    return labs_root() / name


def ensure_dir(name: str) -> Path:
    d = lab_dir(name)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    d.chmod(0o700)
    return d


def load(name: str) -> Lab | None:
    """The lab's record, or None when there is no such lab."""
    path = lab_dir(name) / STATE_FILE
    try:
        return Lab.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise LabError(f"lab record {path} is unreadable ({str(e).splitlines()[0]}); "
                       f"remove the lab's machines by hand and delete {path.parent}") from None


def require(name: str) -> Lab:
    lab = load(name)
    if lab is None:
        raise LabError(f"there is no lab named {name!r} (no {lab_dir(name) / STATE_FILE}); "
                       f"create it with `hakube lab up --name {name}`")
    return lab


def all_labs() -> list[Lab]:
    root = labs_root()
    if not root.is_dir():
        return []
    labs = []
    for p in sorted(root.iterdir()):
        if (p / STATE_FILE).is_file():
            lab = load(p.name)
            if lab:
                labs.append(lab)
    return labs


def remove(name: str) -> bool:
    """Delete the lab's folder (keys, record, cluster.yaml). True when there was one."""
    d = lab_dir(name)
    if d.exists():
        shutil.rmtree(d)
        return True
    return False


def new(name: str, index: int, image: str, kubernetes: str, servers: int, agents: int,
        loadbalancers: int, etcd: int = 0) -> Lab:
    """The record of a lab about to be created (nothing exists on the host yet)."""
    net = plan.subnet(index)
    first, last = plan.vip_range(net)
    machines = [
        Machine(
            name=m.name, role=m.role, address=m.address,
            container=plan.container(name, m.name), netns=plan.netns(name, m.name),
            veth=plan.veth(index, m.name),
            # containerd's snapshots must not be overlay-on-overlay: a real folder instead.
            # The journal: podman's systemd mode would put a tmpfs there, and a crashed
            # machine's logs must survive the crash.
            volumes={p: plan.volume(name, m.name, p) for p in MOUNTS},
            mounts=dict(MOUNTS),
        )
        for m in plan.machines(net, servers, agents, loadbalancers, etcd)
    ]
    return Lab(name=name, index=index, subnet=net, host_address=plan.host_address(net),
               bridge=plan.bridge(index), nft_table=plan.nft_table(name), vip_first=first,
               vip_last=last, image=image, kubernetes=kubernetes, machines=machines)

