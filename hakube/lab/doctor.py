"""`hakube lab doctor`: is this host ready for lab machines, and what would be prepared.

Every check returns a `Check`: its name, a verdict (ok, warn, fail), what was found, and
for anything but ok the fix. `lab up` runs the same checks first and stops on a failed
one, so a host problem is named before a machine is started, not 90 s later.

The cgroup check does not change the host: it reports what `lab up` prepares
(hostprep.plan), so doctor can run on a host you only want to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass

from . import binaries, cache, hostprep, image, network

OK, WARN, FAIL = "ok", "warn", "fail"

# A cold prepare needs room for debootstrap, the Kubernetes source tree and Go's build
# cache (about 6 GiB seen); with both caches built, machines' volumes need far less.
DISK_COLD_GIB = 8
DISK_WARM_GIB = 2


@dataclass(frozen=True)
class Check:
    name: str
    verdict: str   # ok, warn, fail
    found: str     # what the host has
    fix: str = ""  # how to get to ok

    def line(self) -> str:
        return f"{self.name}: {self.found}" + (f"; fix: {self.fix}" if self.fix else "")


@dataclass
class Report:
    checks: list[Check]
    cgroups: hostprep.CgroupPlan

    @property
    def verdict(self) -> str:
        verdicts = {c.verdict for c in self.checks}
        return FAIL if FAIL in verdicts else WARN if WARN in verdicts else OK

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == FAIL]

    def as_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "checks": [asdict(c) for c in self.checks],
            "cgroups": {
                "layout": self.cgroups.layout,
                "summary": self.cgroups.summary(),
                "mounted": self.cgroups.mounted,
                "prepared": self.cgroups.prepared,
                "availableV2": list(self.cgroups.available_v2),
                "toPrepare": [a.sentence(done=False) for a in self.cgroups.actions],
                "missingRequired": self.cgroups.missing_required,
                "missingOptional": self.cgroups.missing_optional,
            },
        }


def run_checks(with_caches: bool = True) -> Report:
    """Every check, read from this host. `with_caches=False` skips the cache checks
    (`lab up` builds missing caches itself)."""
    cg = hostprep.read_host()
    checks = [check_root(), check_ip_forward(), *check_cgroups(cg), check_inotify(),
              check_tool("podman", ["podman", "--version"], required=True),
              check_tool("runc", ["runc", "--version"], required=True),
              check_netfilter(), check_disk()]
    if with_caches:
        checks += check_caches()
    return Report(checks, cg)


def check_root() -> Check:
    if os.geteuid() == 0:
        return Check("user", OK, "root")
    return Check("user", FAIL, f"uid {os.geteuid()}",
                 "the lab creates interfaces and privileged containers: run it as root "
                 "(sudo hakube lab ...)")


def check_ip_forward() -> Check:
    value = network.ip_forward()
    if value == "0":
        return Check("ip_forward", OK, "net.ipv4.ip_forward = 0 (nothing can route lab traffic out)")
    return Check("ip_forward", FAIL, f"net.ipv4.ip_forward = {value}",
                 "the lab requires 0 so that nothing can route lab traffic out: "
                 "`sysctl -w net.ipv4.ip_forward=0`")


def check_cgroups(cg: hostprep.CgroupPlan) -> list[Check]:
    out = [Check("cgroup layout", OK if cg.layout != "none" else FAIL, cg.summary(),
                 "" if cg.layout != "none" else
                 "mount cgroup2 on /sys/fs/cgroup (`mount -t cgroup2 none /sys/fs/cgroup`)")]
    if cg.actions:
        out.append(Check("cgroup preparation", OK,
                         "lab up will " + "; ".join(a.sentence(done=False) for a in cg.actions)))
    else:
        out.append(Check("cgroup preparation", OK, "nothing to prepare"))
    if cg.missing_required:
        out.append(Check("kubelet controllers", FAIL,
                         "missing: " + "; ".join(f"{c} ({why})" for c, why in cg.missing_required.items()),
                         _controller_fix(cg)))
    else:
        out.append(Check("kubelet controllers", OK,
                         "all present: " + " ".join(hostprep.REQUIRED_V2 if cg.layout == "v2"
                                                    else hostprep.REQUIRED_V1)))
    if cg.missing_optional:
        out.append(Check("optional controllers", WARN,
                         "missing: " + "; ".join(f"{c} ({why})" for c, why in cg.missing_optional.items()),
                         "pods that ask for these limits cannot get them; " + _controller_fix(cg)))
    return out


def _controller_fix(cg: hostprep.CgroupPlan) -> str:
    if cg.layout == "v2":
        return ("enable them for this cgroup's parent (systemd: `Delegate=yes` on the unit, "
                "or boot with `systemd.unified_cgroup_hierarchy=1`)")
    return "enable them on the kernel command line (`cgroup_enable=NAME`) and reboot"


def check_inotify() -> Check:
    limits = hostprep.inotify_limits()
    low = {k: v for k, v in limits.items() if v is None or v < hostprep.INOTIFY_MINIMUMS[k]}
    found = ", ".join(f"{k.replace('/', '.')} = {v}" for k, v in limits.items())
    if not low:
        return Check("inotify", OK, found)
    return Check("inotify", OK if os.geteuid() == 0 else WARN,
                 found + " (lab up raises " + ", ".join(
                     f"{k.replace('/', '.')} to {hostprep.INOTIFY_MINIMUMS[k]}" for k in low) + ")",
                 "" if os.geteuid() == 0 else "run the lab as root, which raises them")


def _version(cmd: list[str]) -> str | None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    first = (res.stdout or res.stderr).strip().splitlines()
    m = re.search(r"\d+\.\d+(\.\d+)?", first[0]) if first else None
    return m.group(0) if m else (first[0] if first else "")


def check_tool(name: str, cmd: list[str], required: bool) -> Check:
    if not shutil.which(cmd[0]):
        return Check(name, FAIL if required else WARN, "not installed",
                     "run scripts/setup.sh (or `apt-get install " + name + "`)")
    version = _version(cmd)
    if version is None:
        return Check(name, FAIL if required else WARN, f"`{' '.join(cmd)}` failed",
                     f"reinstall {name} (`apt-get install --reinstall {name}`)")
    return Check(name, OK, f"version {version}")


def check_netfilter() -> Check:
    """Lab faults are nftables rules; SSH faults and kube-proxy in machines use iptables."""
    nft = shutil.which("nft")
    ipt = shutil.which("iptables")
    if nft and ipt:
        return Check("netfilter", OK, f"nft {_version(['nft', '--version']) or '?'}, "
                                       f"iptables {_version(['iptables', '--version']) or '?'}")
    missing = [n for n, p in (("nftables", nft), ("iptables", ipt)) if not p]
    return Check("netfilter", FAIL, f"missing: {', '.join(missing)}",
                 f"run scripts/setup.sh (or `apt-get install {' '.join(missing)}`)")


def check_disk() -> Check:
    root = cache.root()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free_gib = usage.free / 2**30
    warm = image.exists(image.name()) if shutil.which("podman") else False
    warm = warm and binaries.cached() is not None
    need = DISK_WARM_GIB if warm else DISK_COLD_GIB
    found = f"{free_gib:.1f} GiB free under {probe}"
    if free_gib >= need:
        return Check("disk", OK, found)
    return Check("disk", FAIL, found,
                 f"{'lab machines need' if warm else 'building the node image and binaries needs'} "
                 f"about {need} GiB: free space there or set HAKUBE_CACHE to a bigger disk")


def check_caches() -> list[Check]:
    out = []
    ref = image.name()
    have = shutil.which("podman") is not None and image.exists(ref)
    out.append(Check("node image", OK if have else WARN, f"{ref} {'present' if have else 'not built'}",
                     "" if have else "`hakube lab prepare` builds it (~2 min)"))
    k8s = binaries.cached()
    out.append(Check("kubernetes binaries", OK if k8s else WARN,
                     f"{k8s.bin_dir} present" if k8s else f"{binaries.KUBERNETES_VERSION} not built",
                     "" if k8s else "`hakube lab prepare` builds them (~8 min on 2 cores)"))
    return out
