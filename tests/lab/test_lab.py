"""The lab, on real machines: what `lab up` gives, what each fault does, what `down` leaves.

Read as runbooks: "crash server-1; it is unreachable and its processes are gone; start it;
it is back with its files". Each test leaves the shared lab healthy for the next.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest

from hakube.lab import faults, labstate, machines, network
from hakube.spec import load

from .conftest import (UP_OUTPUT, cannot_reach, eventually, lab_cli, on, reaches, tcp_open)

pytestmark = pytest.mark.lab

NODE_SERVICES = ["etcd", "haproxy", "keepalived", "nginx", "corosync", "pacemaker", "containerd",
                 "prometheus", "prometheus-alertmanager", "prometheus-node-exporter",
                 "prometheus-blackbox-exporter"]


# ---- lab up ---------------------------------------------------------------------------------


def test_up_gives_five_machines_reachable_with_strict_host_keys(lab):
    assert [m.name for m in lab.machines] == ["server-1", "server-2", "server-3", "agent-1",
                                              "agent-2"]
    for m in lab.machines:
        # `hakube lab ssh` uses the lab's key and known_hosts with StrictHostKeyChecking=yes
        res = lab_cli("ssh", m.name, "--name", lab.name, "--", "hostname")
        assert res.stdout.strip() == m.name
    assert (lab.key_file.stat().st_mode & 0o777) == 0o600
    assert (lab.dir.stat().st_mode & 0o777) == 0o700


def test_a_wrong_host_key_is_refused(lab, tmp_path):
    """Strict checking really is strict: a known_hosts with another key fails to connect."""
    other = tmp_path / "known_hosts"
    server2_key = lab.known_hosts.read_text().splitlines()[2].split(maxsplit=1)[1]
    other.write_text(f"{lab.machine('server-1').address} {server2_key}\n")
    res = subprocess.run(
        ["ssh", "-i", str(lab.key_file), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={other}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "StrictHostKeyChecking=yes", f"root@{lab.machine('server-1').address}", "true"],
        capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
    assert "HOST IDENTIFICATION HAS CHANGED" in res.stderr or "host key" in res.stderr.lower()


def test_every_machine_boots_to_running_with_no_node_service_started(lab):
    for m in lab.machines:
        assert on(lab, m.name, "systemctl is-system-running --wait") == "running"
        states = on(lab, m.name, f"systemctl is-enabled {' '.join(NODE_SERVICES)} || true")
        assert states.split() == ["disabled"] * len(NODE_SERVICES), states  # disabled, not masked
        active = on(lab, m.name, f"systemctl is-active {' '.join(NODE_SERVICES)} || true")
        assert set(active.split()) == {"inactive"}, active


def test_machines_have_eth0_a_static_address_and_no_way_out(lab):
    before = network.ip_forward()
    for m in lab.machines:
        addrs = on(lab, m.name, "ip -4 -o addr show dev eth0 | awk '{print $4}'")
        assert addrs == f"{m.address}/24"
        assert on(lab, m.name, "ip route show default") == ""  # no default route
        assert on(lab, m.name, "ls /sys/class/net | sort").split() == ["eth0", "lo"]
        assert on(lab, m.name, "findmnt -n -o FSTYPE /var/lib/containerd") != "overlay"
    # a machine cannot reach anything beyond the lab: not even this host's other addresses
    res = on(lab, "server-1", "ip route get 192.0.2.2 2>&1 || true")
    assert "unreachable" in res.lower()
    assert before == network.ip_forward() == "0"
    # this host got a bridge address in the lab subnet, and no NAT rule for it
    assert f"{lab.host_address}/24" in network.addresses(lab.bridge)
    nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    assert str(lab.subnet) not in nat


def test_up_writes_a_valid_cluster_yaml_for_the_lab(lab):
    out = UP_OUTPUT[lab.name].stdout
    assert str(lab.cluster_yaml) in out
    c = load(lab.cluster_yaml).cluster
    assert {h.name: str(h.address) for h in c.spec.hosts} == \
        {m.name: str(m.address) for m in lab.machines}
    assert c.spec.network.node_cidr == lab.subnet
    assert c.spec.control_plane.endpoint.vip == lab.vip_first
    assert c.spec.ssh.host_key_policy == "strict"
    assert c.spec.ssh.known_hosts == lab.known_hosts
    k8s = Path(lab.kubernetes)
    assert c.spec.distribution.binaries == k8s / "bin"
    for binary in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                   "kube-proxy", "kubectl"):
        assert (k8s / "bin" / binary).is_file()
    manifest = json.loads((k8s / "images" / "manifest.json").read_text())
    assert manifest["sandboxImage"].startswith("registry.k8s.io/pause:")


def test_a_second_up_changes_nothing_and_says_so(lab):
    res = lab_cli("up", "--name", lab.name)
    assert "nothing changed" in res.stdout
    assert "+" not in res.stdout.replace("--", "")


def test_up_with_other_counts_is_refused_with_a_clear_message(lab):
    res = lab_cli("up", "--name", lab.name, "--servers", "1", check=False)
    assert res.returncode != 0
    assert "already exists" in res.stderr and "lab down" in res.stderr
    assert "Traceback" not in res.stderr


def test_errors_are_one_line_without_traceback(lab):
    res = lab_cli("ssh", "nosuch", "--name", lab.name, "--", "true", check=False)
    assert res.returncode == 1
    assert "no machine 'nosuch'" in res.stderr and "Traceback" not in res.stderr
    res = lab_cli("status", "--name", "hktest-doesnotexist", check=False)
    assert res.returncode == 1 and "lab up --name hktest-doesnotexist" in res.stderr


def test_status_lists_machines_as_json(lab):
    st = json.loads(lab_cli("status", "--name", lab.name, "--json").stdout)
    assert [(m["name"], m["role"], m["state"]) for m in st["machines"]] == [
        ("server-1", "server", "running"), ("server-2", "server", "running"),
        ("server-3", "server", "running"), ("agent-1", "agent", "running"),
        ("agent-2", "agent", "running")]
    assert st["machines"][0]["address"] == str(lab.machine("server-1").address)


# ---- faults ---------------------------------------------------------------------------------


def test_crash_kills_everything_at_once_and_start_brings_it_back_with_its_files(lab):
    s1 = lab.machine("server-1")
    on(lab, "server-1", "echo before-crash > /root/evidence && sync")
    on(lab, "server-1", "systemd-run --unit=hktest-worker sleep 987654")
    cid = machines.inspect(s1.container)["Id"]
    try:
        # crash server-1: it is unreachable and none of its processes survive
        faults.crash(lab, "server-1")
        assert machines.state(s1) == "exited"
        assert not tcp_open(str(s1.address))
        assert cannot_reach(lab, "server-2", "server-1")
        ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        assert "sleep 987654" not in ps  # the machine's service died with it
        assert subprocess.run(["podman", "top", s1.container], capture_output=True).returncode != 0
        # start it: same machine (same container), disk intact, services as at boot
        faults.start(lab, "server-1")
        assert machines.inspect(s1.container)["Id"] == cid
        assert on(lab, "server-1", "cat /root/evidence") == "before-crash"
        assert on(lab, "server-1", "systemctl is-system-running --wait") == "running"
        assert on(lab, "server-1", "systemctl is-active hktest-worker || true") in ("inactive", "unknown")
        assert reaches(lab, "server-2", "server-1")
        # the journal survives a crash (it lives on a volume, not podman's tmpfs)
        boots = on(lab, "server-1", "journalctl --no-pager -q -t systemd | grep -c 'Startup finished' || true")
        assert int(boots or 0) >= 2
    finally:
        faults.start(lab, "server-1")


def test_stop_is_clean_and_start_boots_again(lab):
    a2 = lab.machine("agent-2")
    on(lab, "agent-2", "echo kept > /root/stopped && sync")
    try:
        assert faults.stop(lab, "agent-2").startswith("stopped agent-2")
        assert machines.state(a2) == "exited"
        assert not tcp_open(str(a2.address))
        faults.start(lab, "agent-2")
        assert on(lab, "agent-2", "cat /root/stopped") == "kept"
        assert on(lab, "agent-2", "systemctl is-system-running --wait") == "running"
        # the clean shutdown ran systemd's shutdown sequence, logged in the kept journal
        journal = on(lab, "agent-2", "journalctl --no-pager -q -t systemd")
        assert "Reached target shutdown.target" in journal
    finally:
        faults.start(lab, "agent-2")


def test_restart_reboots_the_machine(lab):
    before = on(lab, "agent-1", "systemctl show -p ActiveEnterTimestampMonotonic --value ssh.service; "
                                "cat /proc/1/stat | awk '{print $22}'")
    faults.restart(lab, "agent-1")
    after = on(lab, "agent-1", "systemctl show -p ActiveEnterTimestampMonotonic --value ssh.service; "
                               "cat /proc/1/stat | awk '{print $22}'")
    assert before.split()[1] != after.split()[1]  # PID 1 started anew
    assert on(lab, "agent-1", "systemctl is-system-running --wait") == "running"


def test_isolate_cuts_a_machine_off_from_all_others_but_not_from_this_host(lab):
    try:
        faults.isolate(lab, "server-1")
        for other in ("server-2", "server-3", "agent-1"):
            assert cannot_reach(lab, "server-1", other)
            assert cannot_reach(lab, other, "server-1")
        assert reaches(lab, "server-2", "server-3")  # the rest of the lab is unaffected
        assert tcp_open(str(lab.machine("server-1").address))  # chaos probes still get there
        assert on(lab, "server-1", "hostname") == "server-1"
        st = json.loads(lab_cli("status", "--name", lab.name, "--json").stdout)
        assert st["machines"][0]["faults"] == ["isolated"]
    finally:
        faults.heal(lab, "server-1")
    for other in ("server-2", "server-3", "agent-1"):
        assert reaches(lab, "server-1", other)
        assert reaches(lab, other, "server-1")


def test_cut_blocks_only_the_given_pair(lab):
    try:
        lab_cli("fault", "cut", "server-1", "server-2", "--name", lab.name)
        assert cannot_reach(lab, "server-1", "server-2")
        assert cannot_reach(lab, "server-2", "server-1")
        assert reaches(lab, "server-1", "server-3")
        assert reaches(lab, "server-2", "server-3")
        assert reaches(lab, "agent-1", "server-1")
        assert reaches(lab, "agent-1", "server-2")
    finally:
        lab_cli("fault", "heal", "server-1", "server-2", "--name", lab.name)
    assert reaches(lab, "server-1", "server-2")


def test_a_paused_machine_answers_nothing_until_resumed(lab):
    s3 = lab.machine("server-3")
    try:
        faults.pause(lab, "server-3")
        assert machines.state(s3) == "paused"
        assert not tcp_open(str(s3.address))
        assert cannot_reach(lab, "server-1", "server-3")
        # its processes are frozen (cgroup freezer), not dead
        cgroup = machines.inspect(s3.container)["State"]["CgroupPath"].lstrip("/")
        state = Path("/sys/fs/cgroup/freezer", cgroup, "freezer.state")
        if state.exists():  # cgroup v1 (this project's hosts); v2 has cgroup.freeze
            assert state.read_text().strip() == "FROZEN"
    finally:
        faults.resume(lab, "server-3")
    assert eventually(lambda: tcp_open(str(s3.address)))
    assert on(lab, "server-3", "hostname") == "server-3"
    assert reaches(lab, "server-1", "server-3")


def test_faults_from_the_cli_report_what_they_did(lab):
    res = lab_cli("fault", "isolate", "agent-2", "--name", lab.name)
    assert "isolated agent-2" in res.stdout
    res = lab_cli("fault", "heal", "agent-2", "--name", lab.name)
    assert "healed agent-2" in res.stdout
    res = lab_cli("fault", "explode", "agent-2", "--name", lab.name, check=False)
    assert res.returncode == 1 and "unknown fault" in res.stderr


# ---- side by side, and down -------------------------------------------------------------------


def _container_ids(lab) -> list[str]:
    return [info["Id"] for m in lab.machines if (info := machines.inspect(m.container))]


def _host_objects(lab, ids: list[str]) -> dict[str, list[str]]:
    """Everything of `lab` visible on this host, by kind (empty lists after a clean down).

    `ids` are the lab's container ids, taken while the containers existed: their
    processes and storage folders are looked for by id too.
    """
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    addrs = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    volumes = subprocess.run(["podman", "volume", "ls", "--format", "{{.Name}}"],
                             capture_output=True, text=True).stdout.split()
    containers = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"],
                                capture_output=True, text=True).stdout.split()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {
        "containers": [m.container for m in lab.machines if m.container in containers],
        "volumes": [v for m in lab.machines for v in m.volumes.values() if v in volumes],
        "processes": [line for line in ps.splitlines()
                      if any(x in line for x in [m.container for m in lab.machines] + ids)],
        "links": [name for name in [lab.bridge] + [m.veth for m in lab.machines]
                  if f" {name}:" in links or f" {name}@" in links],
        "addresses": [line for line in addrs.splitlines()
                      if any(ipaddress.ip_address(w.split("/")[0]) in lab.subnet
                             for w in line.split() if "/" in w and w[0].isdigit())],
        "netns": [m.netns for m in lab.machines if Path(f"/run/netns/{m.netns}").exists()],
        "nft": [lab.nft_table] if f"bridge {lab.nft_table}" in tables else [],
        "files": [str(p) for p in [
            lab.dir,
            *(Path("/var/lib/containers/storage/volumes", v) for m in lab.machines
              for v in m.volumes.values()),
            *(Path("/var/lib/containers/storage/overlay-containers", i) for i in ids),
        ] if p.exists()],
    }


def test_two_labs_side_by_side_and_down_leaves_nothing_behind(lab, another_lab):
    forward_before = network.ip_forward()
    small = another_lab()
    assert small.subnet != lab.subnet
    assert small.bridge != lab.bridge
    assert on(small, "server-1", "hostname") == "server-1"
    assert on(lab, "server-1", "hostname") == "server-1"
    # the two labs' machines cannot reach each other: no route, no forwarding
    res = on(small, "server-1", f"ping -c1 -W1 {lab.machine('server-1').address} >/dev/null 2>&1 && echo reached || echo no")
    assert res == "no"
    # leave the small lab in awkward states: down must cope with all of them
    faults.pause(small, "agent-1")
    faults.isolate(small, "server-1")
    ids = _container_ids(small)
    present = _host_objects(small, ids)
    assert [k for k, v in present.items() if not v] == []  # the check below looks for real things
    res = lab_cli("down", "--name", small.name)
    assert "removed" in res.stdout
    left = _host_objects(small, ids)
    assert left == {k: [] for k in left}, left
    again = lab_cli("down", "--name", small.name)
    assert "nothing to do" in again.stdout
    # the other lab is untouched
    assert on(lab, "server-1", "hostname") == "server-1"
    assert labstate.load(lab.name) is not None
    assert forward_before == network.ip_forward() == "0"
