"""Creating, inspecting and removing a whole lab: `lab up`, `lab status`, `lab down`.

`up` is idempotent: it reads what exists on the host, creates only what is missing and
says what it changed (or that nothing changed). `down` removes, by exact name, every
object the lab's record lists, then checks that none of them is left.

Example:
    >>> from hakube.lab import lifecycle
    >>> result = lifecycle.up("demo", servers=3, agents=2)   # doctest: +SKIP
    >>> result.lab.cluster_yaml                               # doctest: +SKIP
    PosixPath('/root/.local/share/hakube/labs/demo/cluster.yaml')
    >>> lifecycle.down("demo")                                # doctest: +SKIP
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import binaries, cache, clusterspec, doctor, hostprep, image, keys, labstate, machines, netfilter, network, plan, ssh
from .errors import LabError
from .labstate import Lab, Machine
from .proc import run
from .progress import Progress

BOOT_TIMEOUT = 120  # seconds for a machine to reach `systemctl is-system-running` = running
# What the machine's first process (node/init.sh) could not set up but booted without.
INIT_WARNINGS = "/run/hakube-init.warnings"


@dataclass
class UpResult:
    lab: Lab
    changes: list[str]
    # machine -> "running" / "degraded: unit, unit" as systemd reports it
    systems: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def check_host() -> None:
    """The conditions every lab operation needs on this host (root, ip_forward 0)."""
    failed = [c for c in (doctor.check_root(), doctor.check_ip_forward()) if c.verdict == doctor.FAIL]
    if failed:
        raise LabError(failed[0].line())


def prepare_host() -> list[str]:
    """Check this host as `lab doctor` does and prepare what machines need (cgroup
    hierarchies systemd would have mounted, inotify limits); one sentence per change.

    Raises LabError naming every failed check and its fix, before anything is started.
    """
    report = doctor.run_checks(with_caches=False)
    failed = report.failures()
    if failed:
        raise LabError("this host cannot run lab machines: "
                       + "; ".join(c.line() for c in failed)
                       + " (`hakube lab doctor` shows every check)")
    try:
        changes = hostprep.apply(report.cgroups) + hostprep.raise_inotify_limits()
    except hostprep.PrepareError as e:
        raise LabError(f"preparing this host for lab machines failed: {e}; "
                       "`hakube lab doctor` shows the host's layout") from None
    return [f"host: {c}" for c in changes]


def prepare(progress: Progress | None = None) -> tuple[str, binaries.Kubernetes]:
    """Build (once) the node image and the Kubernetes binaries; return both."""
    progress = progress or Progress()
    check_host()
    for change in prepare_host():
        progress.note(change)
    return image.ensure(progress), binaries.ensure(progress=progress)


def up(name: str = plan.DEFAULT_NAME, servers: int = 3, agents: int = 2,
       loadbalancers: int = 0, progress: Progress | None = None, etcd: int = 0) -> UpResult:
    """Create lab `name` (or repair it) and write its cluster.yaml."""
    progress = progress or Progress()
    if problem := plan.check_name(name):
        raise LabError(problem)
    if servers < 1:
        raise LabError("a lab needs at least 1 server for its cluster.yaml; use --servers 1 or more")
    try:
        plan.machines(plan.subnet(1), servers, agents, loadbalancers, etcd)
    except ValueError as e:
        raise LabError(f"cannot create lab {name!r}: {e}") from None
    check_host()
    changes: list[str] = prepare_host()
    node_image, k8s = image.ensure(progress), binaries.ensure(progress=progress)
    with cache.locked(labstate.labs_root() / ".lock"):
        lab = labstate.load(name)
        if lab is None:
            used = {other.index for other in labstate.all_labs()} | network.used_subnet_indexes()
            index = plan.allocate_index(name, used)
            if index is None:
                raise LabError(f"every /24 of {plan.POOL} is in use; remove a lab with "
                               "`hakube lab down --name NAME`")
            lab = labstate.new(name, index, node_image, str(k8s.root), servers, agents,
                               loadbalancers, etcd)
            # Recorded before anything exists, so `lab down` can clean up a failed `up`.
            lab.save()
            changes.append(f"allocated {lab.subnet} to lab {name!r}")
        else:
            want = {"server": servers, "agent": agents, "loadbalancer": loadbalancers, "etcd": etcd}
            if lab.counts() != want:
                have = ", ".join(f"{v} {k}s" for k, v in lab.counts().items())
                raise LabError(f"lab {name!r} already exists with {have}; remove it with "
                               f"`hakube lab down --name {name}` to create it with other counts")
            if lab.image != node_image:
                progress.note(f"lab {name!r} runs image {lab.image}; the recipe now builds "
                              f"{node_image} (`lab down` then `lab up` to use it)")

    changes += keys.ensure(lab)
    changes += network.ensure_bridge(lab)
    if not netfilter.exists(lab.nft_table):
        apply_faults(lab)
        changes.append(f"created nftables table bridge {lab.nft_table}")

    result = UpResult(lab, changes)
    with progress.step(f"Starting {len(lab.machines)} machines on {lab.subnet}"):
        with ThreadPoolExecutor(max_workers=min(8, len(lab.machines))) as pool:
            for machine_changes in pool.map(lambda m: _ensure_machine(lab, m), lab.machines):
                changes += machine_changes
    with progress.step("Waiting for SSH and systemd on every machine"):
        with ThreadPoolExecutor(max_workers=min(8, len(lab.machines))) as pool:
            result.systems = dict(zip([m.name for m in lab.machines],
                                      pool.map(lambda m: _wait_ready(lab, m), lab.machines)))

    if clusterspec.write(lab, k8s):
        changes.append(f"wrote {lab.cluster_yaml}")
    if network.ip_forward() != "0":
        raise LabError("net.ipv4.ip_forward became 1 during `lab up`; something on this host "
                       "turned it on; run `sysctl -w net.ipv4.ip_forward=0`")
    return result


def apply_faults(lab: Lab) -> None:
    """Make the lab's nftables table match its recorded faults."""
    ports = {m.name: m.veth for m in lab.machines}
    netfilter.apply(netfilter.render(lab.nft_table, ports, lab.faults.isolated,
                                     lab.faults.cuts, lab.faults.silenced))


def _ensure_machine(lab: Lab, m: Machine) -> list[str]:
    changes = network.ensure_nic(lab, m)
    changes += machines.ensure_created(lab, m)
    if machines.state(m) == "paused":
        return changes  # paused by a fault: `lab fault resume` ends that, not `lab up`
    changes += machines.power_on(lab, m)
    return changes


def _wait_ready(lab: Lab, m: Machine) -> str:
    if machines.state(m) == "paused":
        return "paused"
    ssh.wait(lab, m, stopped=lambda: machines.not_running_reason(lab, m))
    warnings = ssh.run(lab, m, f"cat {INIT_WARNINGS} 2>/dev/null", check=False).stdout.strip()
    res = ssh.run(lab, m, f"timeout {BOOT_TIMEOUT} systemctl is-system-running --wait",
                  timeout=BOOT_TIMEOUT + 10, check=False)
    state = res.stdout.strip() or "unknown"
    if state != "running":
        failed = ssh.run(lab, m, "systemctl --failed --no-legend --plain | awk '{print $1}'",
                         check=False).stdout.split()
        state += f" (failed units: {', '.join(failed) or 'none'})"
    if warnings:
        state += f" (hakube-init: {' | '.join(warnings.splitlines())})"
    return state


# ---- status --------------------------------------------------------------------------------


def status(name: str = plan.DEFAULT_NAME) -> dict:
    """The lab and each machine's name, role, address, state and faults."""
    lab = labstate.require(name)
    isolated = set(lab.faults.isolated)
    rows = []
    for m in lab.machines:
        faults = []
        if m.name in isolated:
            faults.append("isolated")
        faults += [f"cut from {b if a == m.name else a}" for a, b in lab.faults.cuts
                   if m.name in (a, b)]
        st = machines.state(m)
        rows.append({"name": m.name, "role": m.role, "address": str(m.address), "state": st,
                     "link": "up" if network.is_plugged(m) else "down", "faults": faults,
                     "container": m.container})
    return {"name": lab.name, "subnet": str(lab.subnet), "hostAddress": str(lab.host_address),
            "bridge": lab.bridge, "vipRange": f"{lab.vip_first}-{lab.vip_last}",
            "image": lab.image, "clusterYaml": str(lab.cluster_yaml), "machines": rows}


# ---- down ----------------------------------------------------------------------------------


def down(name: str = plan.DEFAULT_NAME) -> list[str]:
    """Remove every object of lab `name`; return what was removed ([] when none existed).

    Raises LabError when something is still there afterwards, naming it.
    """
    if problem := plan.check_name(name):
        raise LabError(problem)
    check_host()
    lab = labstate.load(name)
    if lab is None:
        return _down_unrecorded(name)
    changes: list[str] = []
    with ThreadPoolExecutor(max_workers=min(8, len(lab.machines))) as pool:
        for c in pool.map(lambda m: machines.remove(lab, m) + network.remove_nic(m), lab.machines):
            changes += c
    if netfilter.remove(lab.nft_table):
        changes.append(f"removed nftables table bridge {lab.nft_table}")
    changes += network.remove_bridge(lab)
    leftovers = leftovers_of(lab)
    if leftovers:
        raise LabError(f"lab {name!r} could not be removed completely: {'; '.join(leftovers)}; "
                       f"run `hakube lab down --name {name}` again")
    if labstate.remove(name):
        changes.append(f"removed {lab.dir} (keys, known_hosts, cluster.yaml, record)")
    return changes


def leftovers_of(lab: Lab) -> list[str]:
    """Every object of the lab still present on this host (empty after a clean down)."""
    left = []
    for m in lab.machines:
        if machines.inspect(m.container) is not None:
            left.append(f"container {m.container}")
        for vol in m.volumes.values():
            if run(["podman", "volume", "exists", vol], check=False).returncode == 0:
                left.append(f"volume {vol}")
        if network.link(m.veth) is not None:
            left.append(f"link {m.veth}")
        if network.netns_exists(m.netns):
            left.append(f"netns {m.netns}")
        leaf = f"hakube-{machines.machine_id(lab, m)}"
        if any(machines.CGROUP_ROOT.glob(f"*/{leaf}")) or (machines.CGROUP_ROOT / leaf).exists():
            left.append(f"cgroup {leaf}")
    if network.link(lab.bridge) is not None:
        left.append(f"bridge {lab.bridge}")
    if netfilter.exists(lab.nft_table):
        left.append(f"nftables table bridge {lab.nft_table}")
    return left


def _down_unrecorded(name: str) -> list[str]:
    """No record: remove containers and volumes labelled with exactly this lab's name.

    This covers a record deleted by hand; the label value is matched exactly, never as a
    pattern, so other labs and other users' containers are never touched.
    """
    changes = []
    names = run(["podman", "ps", "-a", "--filter", f"label=hakube.lab={name}",
                 "--format", "{{.Names}}"]).stdout.split()
    for c in names:
        info = machines.inspect(c)
        if info and info.get("Config", {}).get("Labels", {}).get("hakube.lab") == name:
            run(["podman", "rm", "--force", "--time", "0", c], timeout=120)
            changes.append(f"removed machine {c}")
            machine = info["Config"]["Labels"].get("hakube.machine")
            if machine and network.netns_exists(plan.netns(name, machine)):
                run(["ip", "netns", "del", plan.netns(name, machine)])
                changes.append(f"removed netns {plan.netns(name, machine)}")
    vols = run(["podman", "volume", "ls", "--filter", f"label=hakube.lab={name}",
                "--format", "{{.Name}}"]).stdout.split()
    for v in vols:
        run(["podman", "volume", "rm", "--force", v])
        changes.append(f"removed volume {v}")
    if netfilter.remove(plan.nft_table(name)):
        changes.append(f"removed nftables table bridge {plan.nft_table(name)}")
    return changes
