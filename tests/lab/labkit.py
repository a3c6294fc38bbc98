"""Test kit for lab tests that deploy clusters: a lab per test module, spec variants, and
the checks a person would run by hand (etcdctl, kubectl, curl), done for real."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from hakube import state
from hakube.engine.deploy import up as deploy_up
from hakube.engine.ui import Reporter
from hakube.lab import labstate, lifecycle
from hakube.spec import load
from hakube.verify.clients import tls_context

KEEP = os.environ.get("HAKUBE_KEEP_LAB") == "1"  # the one keep switch (conftest.py reads it too)
# The labs alive now, by name: when any lab test fails, conftest.py saves every machine's
# journal and hakube's run logs of each of them under that test's evidence folder (a
# module-scoped lab outlives the failing test, so its fixture alone could not tell).
ACTIVE: dict[str, object] = {}


@contextmanager
def lab_cluster(name: str, servers: int = 3, agents: int = 0, loadbalancers: int = 0, logs: Path | None = None,
                etcd: int = 0):
    """A fresh lab; yields (lab, path of its cluster.yaml). Removed afterwards, even on failure."""
    lifecycle.down(name)  # a leftover from an interrupted run would make the test meaningless
    shutil.rmtree(state.cluster_dir(name, create=False), ignore_errors=True)
    result = lifecycle.up(name, servers=servers, agents=agents, loadbalancers=loadbalancers, etcd=etcd)
    ok = False
    ACTIVE[name] = result.lab
    try:
        yield result.lab, result.lab.cluster_yaml
        ok = True
    finally:
        ACTIVE.pop(name, None)
        if not ok and logs is not None:
            save_logs(result.lab, logs)
        if not KEEP:
            lifecycle.down(name)
            shutil.rmtree(state.cluster_dir(name, create=False), ignore_errors=True)


def save_logs(lab, folder: Path) -> None:
    """Evidence for a failed test: every machine's journal and hakube's run logs."""
    folder.mkdir(parents=True, exist_ok=True)
    for m in lab.machines:
        r = ssh(lab, m.name, "journalctl --no-pager -n 3000", check=False)
        (folder / f"{m.name}.journal").write_text(r.stdout + r.stderr)
    runs = state.cluster_dir(lab.name, create=False) / "runs"
    if runs.exists():
        shutil.copytree(runs, folder / "runs", dirs_exist_ok=True)


def variant(spec: Path, name: str, **changes) -> Path:
    """A copy of `spec` with controlPlane/... keys replaced, e.g. variant(p, "nginx",
    loadBalancer={"provider": "nginx"})."""
    doc = yaml.safe_load(spec.read_text())
    for key, value in changes.items():
        section = doc["spec"]["controlPlane"] if key in ("loadBalancer", "vip", "endpoint") else doc["spec"]
        section[key] = {**section.get(key, {}), **value} if isinstance(value, dict) else value
    out = spec.with_name(f"cluster-{name}.yaml")
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def without(spec: Path, name: str, *hosts: str) -> Path:
    """A copy of `spec` without `hosts` (cluster.yaml once a user deleted them)."""
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if h["name"] not in hosts]
    out = spec.with_name(f"cluster-{name}.yaml")
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def files_and_sockets(lab, machine: str) -> tuple[list[str], list[str]]:
    """Every path under /etc, /var/lib, /usr/local and /run of `machine` (its own file
    systems), and its listening sockets: what `hakube reset` must leave as it found them."""
    r = ssh(lab, machine, "find /etc /var/lib /usr/local /run -xdev 2>/dev/null | sort; echo ==; "
                          "ss -Hltnu | awk '{print $1, $5}' | sort -u", timeout=120)
    files, _, sockets = r.stdout.partition("==\n")
    return files.splitlines(), sockets.splitlines()


BOOT = "cut -d' ' -f22 /proc/1/stat"  # init's start time: new at every boot of a lab machine


def up(spec: Path, dry_run: bool = False) -> Reporter:
    return asyncio.run(deploy_up(load(spec), dry_run=dry_run, ui=Reporter(quiet=True)))


def ssh(lab, machine: str, command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    m = lab.machine(machine)
    r = subprocess.run(["ssh", "-i", str(lab.key_file), "-o", f"UserKnownHostsFile={lab.known_hosts}",
                        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                        f"root@{m.address}", command], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{machine}: {command} -> {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def pki(cluster: str) -> Path:
    return state.cluster_dir(cluster, create=False) / "pki"


# The lab machines a test's cluster runs etcd on, by lab name, when not every server of the
# lab (a lab with spare servers for growing and replacing).
ETCD_ON: dict[str, tuple[str, ...]] = {}


def etcd_machines(lab) -> list:
    """The machines that run etcd: those with the role etcd, else the servers (or those
    ETCD_ON names for this lab)."""
    if lab.name in ETCD_ON:
        return [lab.machine(n) for n in ETCD_ON[lab.name]]
    return [m for m in lab.machines if m.role == "etcd"] or [m for m in lab.machines if m.role == "server"]


def etcdctl(lab, cluster: str, *args: str, every: bool = False) -> str:
    """etcdctl over TLS from this machine with the health-check client, against one
    member (`every`: all of them); its stdout."""
    p = pki(cluster)
    eps = ",".join(f"https://{m.address}:2379" for m in etcd_machines(lab)[:None if every else 1])
    r = subprocess.run(["etcdctl", f"--endpoints={eps}", f"--cacert={p / 'etcd-ca.crt'}",
                        f"--cert={p / 'etcd-healthcheck-client.crt'}", f"--key={p / 'etcd-healthcheck-client.key'}",
                        *args], capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def etcd_members(lab, cluster: str) -> list[dict]:
    """`etcdctl member list` over TLS from this machine, against every member."""
    return json.loads(etcdctl(lab, cluster, "member", "list", "-w", "json", every=True))


def etcd_status(lab, cluster: str) -> list[dict]:
    """`etcdctl endpoint status` of every member (Endpoint, Status.leader, ...)."""
    return json.loads(etcdctl(lab, cluster, "endpoint", "status", "-w", "json", every=True))


def etcd_raw(lab, cluster: str, key: str) -> bytes:
    """The raw value etcd stores under `key` (etcdctl get from this machine, over TLS)."""
    p = pki(cluster)
    server = etcd_machines(lab)[0]
    r = subprocess.run(["etcdctl", f"--endpoints=https://{server.address}:2379", f"--cacert={p / 'etcd-ca.crt'}",
                        f"--cert={p / 'etcd-healthcheck-client.crt'}", f"--key={p / 'etcd-healthcheck-client.key'}",
                        "get", key, "--print-value-only"], capture_output=True,
                       env={**os.environ, "ETCDCTL_API": "3"}, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def etcd_health(lab, cluster: str) -> dict[str, bool]:
    p = pki(cluster)
    out = {}
    for m in etcd_machines(lab):
        r = subprocess.run(["etcdctl", f"--endpoints=https://{m.address}:2379", f"--cacert={p / 'etcd-ca.crt'}",
                            f"--cert={p / 'etcd-healthcheck-client.crt'}",
                            f"--key={p / 'etcd-healthcheck-client.key'}", "endpoint", "health"],
                           capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=30)
        out[m.name] = r.returncode == 0 and "is healthy" in (r.stdout + r.stderr)
    return out


def etcd_cluster_id(lab, cluster: str, server: str) -> str:
    p = pki(cluster)
    m = lab.machine(server)
    r = subprocess.run(["etcdctl", f"--endpoints=https://{m.address}:2379", f"--cacert={p / 'etcd-ca.crt'}",
                        f"--cert={p / 'etcd-healthcheck-client.crt'}", f"--key={p / 'etcd-healthcheck-client.key'}",
                        "endpoint", "status", "-w", "json"], capture_output=True, text=True,
                       env={**os.environ, "ETCDCTL_API": "3"}, timeout=30)
    assert r.returncode == 0, r.stderr
    return format(json.loads(r.stdout)[0]["Status"]["header"]["cluster_id"], "x")


def https(cluster: str, url: str) -> httpx.Response:
    """GET with the cluster CA verified and the admin certificate."""
    with httpx.Client(verify=tls_context(pki(cluster), "ca", "admin"), timeout=10) as c:
        return c.get(url)


def kubectl(lab, cluster: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The kubectl built with the lab's binaries (same version as the cluster), through the
    kubeconfig hakube wrote: it points at the VIP and verifies TLS."""
    kubeconfig = state.cluster_dir(cluster, create=False) / "kubeconfig"
    text = kubeconfig.read_text()
    assert "insecure-skip-tls-verify" not in text and "certificate-authority-data" in text
    binary = Path(lab.kubernetes) / "bin" / "kubectl"
    r = subprocess.run([str(binary), "--kubeconfig", str(kubeconfig), "--request-timeout=20s", *args],
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def vip_holders(lab, vip: str) -> list[str]:
    return [m.name for m in lab.machines
            if ssh(lab, m.name, f"ip -o -4 addr show to {vip}/32", check=False).stdout.strip()]


def lab_record(name: str):
    return labstate.require(name)
