"""Pods on lab workers: they run, reach each other, and keep running when a master dies.

A runbook on 3 servers and 3 agents, of which the first deploy takes only two, with
pacemaker holding the VIP and HAProxy as one resource group (report 1's front door):
deploy; 5 nodes Ready and the servers tainted; two busybox replicas on the two agents
reach each other by pod IP and through a Service; CoreDNS replicas on distinct nodes with
their PodDisruptionBudget; crash the server holding the group: the pod on an agent is
still Running, its logs and exec work through the VIP (report 1's test); a re-run changes nothing;
adding agent-3 to cluster.yaml joins just that agent; crash the first server and an agent
together: once the agent shows NotReady, a new Deployment gets Running pods on the
surviving agents, with the write probes running throughout (report 2's test).

Images come from the lab's OCI archives (spec.distribution.images), never a registry.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest
import yaml

from hakube.chaos.api import run_scenario
from hakube.lab import faults
from hakube.spec import load
from hakube.verify import status

from . import labkit
from .conftest import eventually

pytestmark = pytest.mark.lab
NAME = "hktest-pods"


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """The lab, its full cluster.yaml (3 agents) and one without agent-3. When a test of
    this module failed, every machine's journal and hakube's run logs are kept."""
    evidence = tmp_path_factory.mktemp("evidence")
    failed_before = request.session.testsfailed
    with labkit.lab_cluster(NAME, servers=3, agents=3, logs=evidence) as (lab, spec):
        spec = labkit.variant(spec, "pacemaker", vip={"provider": "pacemaker"})
        doc = yaml.safe_load(spec.read_text())
        doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if h["name"] != "agent-3"]
        two = spec.with_name("cluster-two-agents.yaml")
        two.write_text(yaml.safe_dump(doc, sort_keys=False))
        yield lab, spec, two
        if request.session.testsfailed > failed_before:
            labkit.save_logs(lab, evidence)
            print(f"\n{NAME}: evidence saved in {evidence}")


def kubectl(lab, *args: str, check: bool = True):
    return labkit.kubectl(lab, NAME, *args, check=check)


def busybox(lab) -> str:
    """The busybox image the lab loads into every node (its OCI archive's reference)."""
    manifest = json.loads((Path(lab.kubernetes) / "images" / "manifest.json").read_text())
    return manifest["images"]["busybox"]["ref"]


def apply(lab, tmp_path: Path, docs: list[dict]) -> None:
    f = tmp_path / f"manifest-{time.monotonic_ns()}.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    kubectl(lab, "apply", "-f", str(f))


def nodes(lab) -> dict[str, dict]:
    return {n["metadata"]["name"]: n for n in json.loads(kubectl(lab, "get", "nodes", "-o", "json").stdout)["items"]}


def ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


def pods(lab, selector: str, namespace: str = "default") -> list[dict]:
    r = kubectl(lab, "get", "pods", "-n", namespace, "-l", selector, "-o", "json", check=False)
    return json.loads(r.stdout)["items"] if r.returncode == 0 else []


def running(items: list[dict]) -> list[dict]:
    return [p for p in items if p["status"].get("phase") == "Running" and p["metadata"].get("deletionTimestamp") is None
            and all(c.get("ready") for c in p["status"].get("containerStatuses", []))]


def changes(report) -> list[str]:
    return [c for p in report.phases for c in p.changes]


def test_up_joins_servers_and_two_agents(cluster) -> None:
    lab, _, two = cluster
    report = labkit.up(two)
    assert report.changed > 0
    seen = nodes(lab)
    assert sorted(seen) == ["agent-1", "agent-2", "server-1", "server-2", "server-3"]
    assert all(ready(n) for n in seen.values()), {k: n["status"]["conditions"] for k, n in seen.items()}
    # servers keep ordinary workloads away (Kubernetes 1.20 names the taint "master")
    for name, n in seen.items():
        taints = {(t["key"], t["effect"]) for t in n["spec"].get("taints") or []}
        assert (("node-role.kubernetes.io/master", "NoSchedule") in taints) == name.startswith("server"), (name, taints)
        assert n["metadata"]["labels"]["hakube.dev/role"] == name.split("-")[0]


def test_pods_on_two_agents_reach_each_other_by_ip_and_service(cluster, tmp_path) -> None:
    lab, _, _ = cluster
    labels = {"app": "echo"}
    apply(lab, tmp_path, [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo"},
         "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {
                 "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                     {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}},
                 "containers": [{
                     "name": "echo", "image": busybox(lab), "imagePullPolicy": "IfNotPresent",
                     # each replica answers with its own name
                     "command": ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && "
                                             "exec httpd -f -p 8080 -h /www"],
                     "ports": [{"containerPort": 8080}]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
    ])
    up = eventually(lambda: len(running(pods(lab, "app=echo"))) == 2 and running(pods(lab, "app=echo")), 120)
    assert up, kubectl(lab, "describe", "pods", "-l", "app=echo").stdout
    # the servers are tainted: both replicas on the agents, one each (anti-affinity)
    assert sorted(p["spec"]["nodeName"] for p in up) == ["agent-1", "agent-2"]
    a, b = up
    # (no `wget -T`: Debian's busybox-static 1.35 wget crashes with it, exit 139)
    for src, dst in ((a, b), (b, a)):
        r = kubectl(lab, "exec", src["metadata"]["name"], "--", "wget", "-qO-",
                    f"http://{dst['status']['podIP']}:8080/")
        assert r.stdout.strip() == dst["metadata"]["name"], (src["spec"]["nodeName"], dst["spec"]["nodeName"], r)
    cluster_ip = kubectl(lab, "get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    answers = set()
    for _ in range(20):  # kube-proxy balances at random: both replicas answer, one on the other agent
        r = kubectl(lab, "exec", a["metadata"]["name"], "--", "wget", "-qO-", f"http://{cluster_ip}/",
                    check=False)
        answers.add(r.stdout.strip() if r.returncode == 0 else f"failed: {r.stderr.strip()}")
        if answers == {a["metadata"]["name"], b["metadata"]["name"]}:
            break
    assert answers == {a["metadata"]["name"], b["metadata"]["name"]}, answers


def test_coredns_replicas_on_distinct_nodes_with_a_budget(cluster) -> None:
    lab, _, two = cluster
    dns = eventually(lambda: [p for p in pods(lab, "k8s-app=kube-dns", "kube-system") if p["spec"].get("nodeName")]
                     if len(pods(lab, "k8s-app=kube-dns", "kube-system")) >= 2 else [], 60)
    placed = [p["spec"]["nodeName"] for p in dns]
    assert len(placed) >= 2 and len(set(placed)) == len(placed), placed
    pdb = json.loads(kubectl(lab, "get", "pdb", "-n", "kube-system", "coredns", "-o", "json").stdout)
    assert pdb["spec"]["selector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    # the lab cannot pull the CoreDNS image: status says so, in those words
    def note():
        st = asyncio.run(status.gather(load(two)))
        return [n for n in st.notes if n.startswith("CoreDNS pods cannot start")]
    found = eventually(note, 90, 3)
    assert found and "cannot be pulled" in found[0], asyncio.run(status.gather(load(two))).notes


def test_pod_on_an_agent_keeps_running_when_the_vip_server_crashes(cluster, tmp_path) -> None:
    lab, _, two = cluster
    apply(lab, tmp_path, [{
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "survivor", "labels": {"app": "survivor"}},
        "spec": {"nodeSelector": {"hakube.dev/role": "agent"}, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "tick", "image": busybox(lab), "imagePullPolicy": "IfNotPresent",
                                 "command": ["sh", "-c", "while true; do echo tick; sleep 1; done"]}]}}])
    assert eventually(lambda: running(pods(lab, "app=survivor")), 90), kubectl(lab, "describe", "pod", "survivor").stdout
    vip = str(lab.vip_first)
    holders = labkit.vip_holders(lab, vip)
    assert len(holders) == 1, holders
    faults.crash(lab.name, holders[0])
    try:
        # through the VIP, now on another server
        def listed_running():
            r = kubectl(lab, "get", "pod", "survivor", "-o", "jsonpath={.status.phase}", check=False)
            return r.returncode == 0 and r.stdout.strip() == "Running"
        assert eventually(listed_running, 60), kubectl(lab, "get", "pod", "survivor", check=False)
        logs = eventually(lambda: kubectl(lab, "logs", "--tail=3", "survivor", check=False).stdout, 30)
        assert "tick" in logs
        r = eventually(lambda: (lambda r: r if r.returncode == 0 else None)(
            kubectl(lab, "exec", "survivor", "--", "echo", "still here", check=False)), 30)
        assert r and r.stdout.strip() == "still here"
        assert labkit.vip_holders(lab, vip) not in ([], [holders[0]])
    finally:
        faults.start(lab.name, holders[0])
    healthy = eventually(lambda: asyncio.run(status.gather(load(two))).healthy, 180, 3)
    assert healthy, asyncio.run(status.gather(load(two))).verdict
    kubectl(lab, "delete", "pod", "survivor", "--wait=false")


def test_second_up_changes_nothing(cluster) -> None:
    lab, _, two = cluster
    report = labkit.up(two)
    assert report.changed == 0, changes(report)


def test_adding_an_agent_joins_only_that_agent(cluster) -> None:
    lab, full, _ = cluster
    report = labkit.up(full)
    done = changes(report)
    assert any(c.startswith("agent-3:") for c in done), done
    # agent-3's own certificates are issued on this machine ("local: issued hosts/agent-3/...")
    others = [c for c in done if not c.startswith("agent-3:") and not (c.startswith("local:") and "agent-3" in c)]
    # the other nodes only learn the route to agent-3's pods
    assert all("pod-routes" in c for c in others), "\n".join(done)
    restarted = re.compile(r"restarted (kubelet|kube-proxy|containerd|kube-apiserver|kube-controller-manager|"
                           r"kube-scheduler|etcd|haproxy|keepalived|corosync|pacemaker)\b")
    assert not [c for c in others if restarted.search(c)], "\n".join(done)
    assert ready(nodes(lab)["agent-3"])
    assert labkit.up(full).changed == 0


def test_first_server_and_an_agent_crash_together_and_new_workloads_run(cluster) -> None:
    """Report 2's test, under the write probes: the first server and an agent down at once,
    then a new Deployment must get Running pods on the surviving agents."""
    lab, full, _ = cluster
    (trial,) = asyncio.run(run_scenario(load(full), "crash-server-and-agent", trials=1, lab=NAME))
    assert trial.ok, trial.verdict
    assert trial.lost == 0 and trial.phantom == 0 and trial.failed_but_present == 0
    assert any("Running on agent-" in c for c in trial.checks), trial.checks
    assert asyncio.run(status.gather(load(full))).healthy
