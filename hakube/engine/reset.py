"""`hakube reset`: take off a host everything hakube put there, and leave it as it was
before the first `up` (engine/originals.py holds what "as it was" means per path).

Per host, in this order (the reverse of the deploy, so nothing restarts what was just
stopped, and no data is deleted under a running service):
1. stop hakube's units, newest layer first (monitoring, nodes, front door, control plane,
   etcd); each is disabled unless the host had it enabled before;
2. the containers the kubelet started (containerd keeps them running after it stops),
   kube-proxy's and the pod network's rules, the pod bridge and routes, the VIP address;
3. every file hakube wrote: the host's own copy back where there was one, else removed;
4. the folders services filled (etcd data, kubelet, containerd, Prometheus): emptied
   where the host had them, removed where hakube created them; then the folders hakube
   created for its files, and its own state (/var/lib/hakube, /run/hakube).
Debian packages hakube installed stay installed: removing them could take away what
something else on the host needs (the report names them).

`plan` is pure (fixture-tested): what reset does on one host, from the topology, the
render and the host's record.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass

import httpx

from .. import paths, state
from ..components import cni
from ..components import etcd as etcd_component
from ..errors import HakubeError
from ..facts import etcd as etcd_facts
from ..facts import host as facts
from ..spec import Loaded
from ..topology import Topology, derive
from ..verify.clients import api_client, etcd_client
from ..verify.status import etcd_endpoints
from . import originals, services
from .context import Deploy, session
from .plan import Action, execute
from .ui import Reporter

@dataclass(frozen=True)
class HostReset:
    """What reset does on one host: the plan's sentences come from these."""

    host: str
    units: tuple[str, ...]            # stopped, in this order
    keep_enabled: tuple[str, ...]     # of those, enabled again: the host had them enabled before
    restore: tuple[str, ...]          # files put back from the host's own copy
    remove: tuple[str, ...]           # files removed
    empty: tuple[str, ...]            # folders emptied (the host had them before)
    remove_folders: tuple[str, ...]   # folders removed, deepest first (hakube created them)
    containers: bool                  # a node: its containers, pod network and kube-proxy rules go
    vip: str | None                   # the VIP address to take off, where it may be
    recorded: bool                    # False: no record of the host before hakube (see `plan`)

    def as_dict(self) -> dict:
        return {"host": self.host, "units": list(self.units), "keepEnabled": list(self.keep_enabled),
                "restore": list(self.restore), "remove": list(self.remove), "empty": list(self.empty),
                "removeFolders": list(self.remove_folders), "containers": self.containers, "vip": self.vip,
                "recorded": self.recorded}


def plan(topo: Topology, host: str, c: originals.Candidates, before: originals.Before) -> HostReset:
    """The reset of `host` from its candidates (the current spec's) and its record.

    With a record, only what it holds is touched, from every run it covers (a component
    since turned off left its files): a file back from the host's copy, or removed; a
    service folder emptied where the host had it, removed where it did not; the folders
    hakube's writes created, removed. Without one (a host deployed by an older hakube),
    nothing is taken for the host's own: the current spec's files are removed, its
    service folders emptied, never removed (they may be a package's)."""
    h = topo.host(host)
    if before.exists:
        files = before.files
        restore = sorted(files & before.present)
        remove = sorted(files - before.present)
        leaves = {x for u in services.UNITS.values() for x in u.leaves}
        empty = sorted(leaves & before.present)
        gone = (before.absent - files) - set(originals.OWN)
    else:
        restore, remove = [], sorted(c.files)
        empty, gone = sorted(c.folders), set()
    units = tuple(c.units)
    return HostReset(
        host=host, units=units, keep_enabled=tuple(u for u in units if u in before.enabled),
        restore=tuple(restore), remove=tuple(remove), empty=tuple(empty),
        remove_folders=tuple(sorted(gone, key=lambda p: (-p.count("/"), p))),
        containers=h.runs("containerd"), vip=topo.endpoint_host if host in topo.vip_hosts else None,
        recorded=before.exists)


# -- carrying it out -------------------------------------------------------------------------

def _q(items) -> str:
    return " ".join(shlex.quote(x) for x in items)


def _stop_loaded(units) -> str:
    """`systemctl stop` of those of `units` that systemd has loaded: a host that a failed
    deploy left half-way has no unit for what never got there, and that is no error."""
    return (f"set --; for u in {_q(units)}; do "
            "[ \"$(systemctl show -p LoadState --value \"$u\")\" = loaded ] && set -- \"$@\" \"$u\"; done; "
            "[ $# = 0 ] || systemctl stop \"$@\"")


def _stop_containers() -> str:
    """Every container of every containerd namespace killed and deleted (a task survives
    its containerd: the shim keeps it), then what the kubelet and containerd mounted."""
    return ("command -v ctr >/dev/null && systemctl is-active --quiet containerd && "
            "for ns in $(ctr namespaces ls -q); do "
            "for t in $(ctr -n \"$ns\" tasks ls -q); do ctr -n \"$ns\" tasks kill -s SIGKILL \"$t\" || true; done; "
            "for t in $(ctr -n \"$ns\" tasks ls -q); do ctr -n \"$ns\" tasks rm -f \"$t\" || true; done; "
            "for c in $(ctr -n \"$ns\" containers ls -q); do ctr -n \"$ns\" containers rm \"$c\" || true; done; "
            "done; true")


def _unmount(folders) -> str:
    """Unmount what the kubelet and containerd mounted inside their folders (pod volumes,
    container root filesystems, shm, pod network namespaces), deepest first, and a folder
    the kubelet bind-mounted onto itself; never a folder's own file system (a disk or
    volume the host gives /var/lib/containerd stays mounted)."""
    inside = "|".join(f"^{x}/" for x in folders)
    itself = "|".join(f"^{x} .*\\[{x}\\]$" for x in folders)
    return (f"findmnt -rn -o TARGET,SOURCE | grep -E {shlex.quote(inside)} | cut -d' ' -f1 | sort -r | "
            "while read -r m; do umount -l \"$m\" || true; done; "
            f"findmnt -rn -o TARGET,SOURCE | grep -E {shlex.quote(itself)} | cut -d' ' -f1 | "
            "while read -r m; do umount -l \"$m\" || true; done; "
            "for n in $(ip netns list 2>/dev/null | cut -d' ' -f1); do case \"$n\" in cni-*) ip netns del \"$n\";; esac; done; true")


def _network(topo: Topology) -> str:
    """kube-proxy's chains (its own --cleanup), the pod bridge, the routes to other nodes'
    pods and the masquerade rule of hakube-pod-routes."""
    pods = shlex.quote(str(topo.network.pod_cidr))
    rule = (f"-s {pods} ! -d {pods} -m comment --comment hakube-pod-egress -j MASQUERADE")
    return (f"[ -x {paths.BIN}/kube-proxy ] && {paths.BIN}/kube-proxy --cleanup >/dev/null 2>&1; "
            f"ip link del {cni.BRIDGE} 2>/dev/null; "
            f"ip -4 route show root {pods} proto static | while read -r dst _; do ip route del \"$dst\" proto static; done; "
            f"while iptables -t nat -C POSTROUTING {rule} 2>/dev/null; do iptables -t nat -D POSTROUTING {rule}; done; true")


def actions(d: Deploy, r: HostReset) -> list[Action]:
    """The reset of one host as plan actions (a dry run prints them)."""
    conn = d.conns[r.host]
    run = conn.run
    out: list[Action] = []
    if r.units:
        disable = [u for u in r.units if u not in r.keep_enabled]
        first = r.units[:r.units.index("containerd")] if "containerd" in r.units else ()
        if first:  # a node: what uses the containers stops first, then the containers go
            out.append(Action(r.host, f"stop {', '.join(first)}",
                              lambda: run(_stop_loaded(first), what="stopping the node's services",
                                          timeout=180)))
            out.append(Action(r.host, "delete every container (each killed first)",
                              lambda: run(_stop_containers(), what="deleting containers", timeout=180)))
        out.append(Action(r.host, f"stop {', '.join(u for u in r.units if u not in first)}"
                          + (f", disabling {', '.join(disable)}" if disable else ""),
                          lambda: run(f"systemctl stop {_q(r.units)}; "
                                      + (f"systemctl disable --quiet {_q(disable)} 2>/dev/null; " if disable else "")
                                      + "true", what="stopping hakube's services", timeout=180)))
    if r.containers:
        out.append(Action(r.host, "remove kube-proxy's rules, the pod bridge, routes and masquerade rule",
                          lambda: run(_network(d.topo), what="cleaning the pod network", timeout=60)))
        leaves = [x for u in r.units if u in services.UNITS for x in services.UNITS[u].leaves]
        out.append(Action(r.host, "unmount what the kubelet and containerd mounted",
                          lambda: run(_unmount(leaves), what="unmounting", timeout=60)))
    if r.vip:
        vip = shlex.quote(f"{r.vip}/32")
        out.append(Action(r.host, f"remove the VIP {r.vip} from its interface if it is there",
                          lambda: run(f"for i in $(ip -o -4 addr show to {vip} | cut -d' ' -f2); do "
                                      f"ip addr del {vip} dev \"$i\"; done; true", what="removing the VIP")))
    if r.restore:
        cmd = "; ".join(f"cp -a {shlex.quote(originals.COPIES + p)} {shlex.quote(p)}" for p in r.restore)
        out.append(Action(r.host, f"restore the host's own {', '.join(r.restore)}",
                          lambda: run(f"set -e; {cmd}", what="restoring the host's files")))
    if r.remove:
        out.append(Action(r.host, f"remove {len(r.remove)} files hakube wrote",
                          lambda: run(f"rm -f {_q(r.remove)}", what="removing hakube's files")))
    if r.empty:
        out.append(Action(r.host, f"clear {', '.join(r.empty)} (the host had them before)",
                          lambda: run("; ".join(f"find {shlex.quote(p)} -xdev -mindepth 1 -delete 2>/dev/null"
                                                for p in r.empty) + "; true", what="emptying data folders")))
    gone = [*r.remove_folders, *originals.OWN]
    out.append(Action(r.host, f"remove the folders hakube created ({', '.join(gone)})",
                      lambda: run(f"rm -rf --one-file-system {_q(gone)}; systemctl daemon-reload; "
                                  "systemctl reset-failed; true", what="removing hakube's folders", timeout=120)))
    return out


async def reset_hosts(d: Deploy, hosts: list[str]) -> list[HostReset]:
    """Plan and carry out the reset of `hosts`, all at once (they leave together)."""
    plans: dict[str, HostReset] = {}
    with d.ui.phase("reset") as report:
        async def one(h: str) -> None:
            before = originals.parse(await facts.read_text(d.conns[h], originals.MANIFEST))
            plans[h] = plan(d.topo, h, originals.candidates(d, h), before)
            if not before.exists:
                d.ui.warn(h, "no record of this host before hakube (deployed by an older hakube): its files "
                             "are removed and its data folders emptied, none put back")
            await execute(d, report, actions(d, plans[h]))
            if not d.dry_run:
                d.ui.ok(h, "reset: hakube's services, files and data are gone")
        # every host goes on to the end even when another fails (a host cut off half-way
        # is worse than one that stopped on its own error); the failures are told together
        results = await asyncio.gather(*(one(h) for h in hosts), return_exceptions=True)
        failed = [(h, r) for h, r in zip(hosts, results) if isinstance(r, BaseException)]
        for _, r in failed:
            if not isinstance(r, Exception):
                raise r
        if failed:
            raise HakubeError("reset did not finish on " + ", ".join(h for h, _ in failed) + ":\n" +
                              "\n".join(f"  {h}: {r}" for h, r in failed) +
                              "\nfix what it says and run `hakube reset` again: it goes on from where it stopped")
    return [plans[h] for h in hosts]


# -- the command -----------------------------------------------------------------------------

async def still_in_cluster(loaded: Loaded, targets: list[str]) -> list[str]:
    """Sentences for each of `targets` that the cluster the other hosts run still counts
    as an etcd member or a node (read from this machine, through etcd's gateway and the
    API). Resetting such a host would take a member away without telling the others:
    `hakube remove` does that safely."""
    topo = derive(loaded.cluster)
    sdir = state.cluster_dir(topo.name, create=False)
    if not (sdir / "pki" / "admin.crt").exists():
        return []
    out: list[str] = []
    others = [(s, ep) for s, ep in etcd_endpoints(topo) if s not in targets]
    async with etcd_client(sdir) as etcd, api_client(sdir) as api:
        for _, ep in others:
            try:
                r = await etcd.post(f"{ep}/v3/cluster/member/list", json={})
                r.raise_for_status()
            except httpx.HTTPError:
                continue
            names = {m.name for m in etcd_facts.parse_member_list(r.text)}
            peers = {u for m in etcd_facts.parse_member_list(r.text) for u in m.peer_urls}
            for t in targets:
                if t in names or etcd_component.peer_url(topo.address(t)) in peers:
                    out.append(f"{t} is still a member of the cluster's etcd")
            break
        if set(topo.servers) - set(targets):
            try:
                r = await api.get(f"{topo.api_url}/api/v1/nodes")
                r.raise_for_status()
                nodes = {n["metadata"]["name"] for n in r.json().get("items", [])}
                out += [f"{t} is still a node of the cluster" for t in targets if t in nodes]
            except (httpx.HTTPError, ValueError, KeyError):
                pass
    return out


async def reset(loaded: Loaded, hosts: list[str] | None = None, dry_run: bool = False,
                ui: Reporter | None = None) -> list[HostReset]:
    """Reset `hosts` (default: every host of the spec). A part of the cluster only when
    those hosts no longer count as its members (else a HakubeError that says to `remove`)."""
    ui = ui or Reporter()
    names = [h.name for h in loaded.cluster.spec.hosts]
    targets = loaded.named(hosts, "reset works on the hosts the spec names")
    if len(targets) < len(names):
        members = await still_in_cluster(loaded, targets)
        if members:
            raise HakubeError("refusing to reset part of a running cluster: " + "; ".join(members) +
                              f". Take them out first with `hakube remove {loaded.source.name} "
                              f"{' '.join(targets)}`: it hands off, removes them from etcd, the node list, the "
                              "load balancers and the VIP, then resets them")
    async with session(loaded, dry_run, ui, "reset", hosts=targets) as d:
        done = await reset_hosts(d, targets)
    if not dry_run:
        left = [h for h in (state.converged_hosts(loaded.cluster.name) or []) if h not in targets]
        state.record_converged(loaded.cluster.name, left)
    return done
