"""Decisions as pure functions of facts: facts in, decision and sentences out.

fixtures/steps/etcd/<case>.json: one server's etcd facts (its data, the membership a
healthy member reports, its current config) -> bootstrap, join, rejoin or keep, with the
initial-cluster it writes and the sentence the run (and a dry run) prints.
fixtures/steps/status/<case>.json: gathered status facts -> problems, notes, verdict.
fixtures/steps/services/<case>.json: a unit's state and what changed -> enable, start,
restart, disable, reload, with their sentences.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hakube.facts import etcd as etcd_facts
from hakube.facts.etcd import EtcdMember
from hakube.engine import membership
from hakube.engine.membership import dead_to_replace, decide, restart_refusal, strangers
from hakube.engine import restarts
from hakube.engine.plan import Action
from hakube.engine.steps.front_door import front_door_order
from hakube.verify.status import Backend, Node, Status, VipMember, judge, standby

STEPS = Path(__file__).parent / "fixtures" / "steps"
ETCD = sorted((STEPS / "etcd").glob("*.json"))
STATUS = sorted((STEPS / "status").glob("*.json"))
SERVICES = sorted((STEPS / "services").glob("*.json"))


def _members(raw):
    if raw is None:
        return None
    return tuple(EtcdMember(m["id"], m["name"], tuple(m["peerURLs"]), tuple(m.get("clientURLs", [])))
                 for m in raw)


@pytest.mark.parametrize("case", ETCD, ids=lambda p: p.stem)
def test_etcd_membership_decision(case: Path) -> None:
    c = json.loads(case.read_text())
    d = decide(c["name"], c["peer"], c["hasData"], _members(c["members"]), c["source"], c["oldConfig"])
    want = c["expect"]
    assert d.kind == want["kind"]
    assert [list(p) for p in d.initial] == want["initial"]
    assert d.state == want["state"]
    assert d.remove_id == want["removeId"]
    assert d.foreign_data == want["foreignData"]
    if d.kind == "keep":
        assert d.sentence == want["sentence"]
    else:  # announced: printed as it starts ("joining ..."), or as a dry run's "would join ..."
        action = Action(c["name"], d.sentence, announce=True)
        assert action.said(dry_run=False) == want["sentence"]
        assert action.said(dry_run=True) == want["dryRun"]


def test_every_membership_outcome_has_a_fixture() -> None:
    kinds = {json.loads(p.read_text())["expect"]["kind"] for p in ETCD}
    assert kinds == {"bootstrap", "join", "rejoin", "keep"}


@pytest.mark.parametrize("sentence,done,doing", [
    ("write /etc/x: new", "wrote /etc/x: new", "writing /etc/x: new"),
    ("restart etcd (a changed)", "restarted etcd (a changed)", "restarting etcd (a changed)"),
    ("enable kubelet", "enabled kubelet", "enabling kubelet"),
    ("rejoin: data gone", "rejoined: data gone", "rejoining: data gone"),
    ("install haproxy", "installed haproxy", "installing haproxy"),
    ("apply coredns.yaml", "applied coredns.yaml", "applying coredns.yaml"),
    ("stop etcd", "stopped etcd", "stopping etcd"),
])
def test_one_sentence_per_action_in_every_form(sentence: str, done: str, doing: str) -> None:
    assert Action("h", sentence).said(dry_run=False) == done
    assert Action("h", sentence, announce=True).said(dry_run=False) == doing
    assert Action("h", sentence).said(dry_run=True) == f"would {sentence}"


def test_no_bootstrap_while_any_server_has_data() -> None:
    """Bootstrapping beside existing data forks the cluster (k3s-ansible #269)."""
    d = decide("server-1", "https://10.0.0.11:2380", has_data=True, members=None)
    assert d.kind == "keep"


@pytest.mark.parametrize("case", STATUS, ids=lambda p: p.stem)
def test_status_verdict(case: Path) -> None:
    c = json.loads(case.read_text())
    st = Status.from_facts(c["facts"])
    judge(st, c["vipHosts"])
    assert st.problems == c["expect"]["problems"]
    assert st.notes == c["expect"]["notes"]
    assert st.verdict == c["expect"]["verdict"]


@pytest.mark.parametrize("case", SERVICES, ids=lambda p: p.stem)
def test_which_services_start_restart_or_are_enabled(case: Path) -> None:
    c = json.loads(case.read_text())
    got = restarts.decide(c["unit"], c["active"], c["enabled"], c["triggers"], c["unitChanged"], c["clusterManaged"],
                          c.get("reloads", False))
    assert [[s.verb, s.sentence] for s in got] == c["expect"]


@pytest.mark.parametrize("case", sorted((STEPS / "front-door").glob("*.json")), ids=lambda p: p.stem)
def test_front_door_order(case: Path) -> None:
    c = json.loads(case.read_text())
    assert [list(x) for x in front_door_order(c["lbHosts"], c["vipHosts"], c["lb"], c["vip"])] == c["expect"]


def test_members_the_spec_does_not_name_are_reported_never_removed() -> None:
    present = {"server-1": "https://10.0.0.11:2380", "old-server": "https://10.0.0.9:2380"}
    out = strangers("etcd member", present, ("server-1", "server-2"), "remove it by hand")
    assert out == ["etcd member old-server (https://10.0.0.9:2380) is not in cluster.yaml; "
                   "hakube leaves it alone: remove it by hand"]
    assert strangers("node", {"a": "Ready"}, ["a"], "x") == []


def test_pacemaker_load_balancer_silent_off_the_vip_holder_is_standby_not_a_fault() -> None:
    members = [VipMember("server-1", True, "Started"), VipMember("server-2", False, "Started")]
    rows = [Backend("server-1", "server-1", "UP", "L7OK"), Backend("server-2", "-", "NO-STATS", "no socket")]
    out = standby(rows, members, "pacemaker")
    assert [b.state for b in out] == ["UP", "STANDBY"]
    st = Status("c", "https://x:6443", True, vip="10.0.0.100", vip_members=members, backends=out)
    judge(st, ["server-1", "server-2"])
    assert not any("load balancer" in p for p in st.problems), st.problems
    # the VIP holder's own HAProxy silent is a fault, and so is any with keepalived
    assert standby([Backend("server-1", "-", "NO-STATS")], members, "pacemaker")[0].state == "NO-STATS"
    assert standby(rows, members, "keepalived")[1].state == "NO-STATS"


def _rows(*rows):
    return tuple(EtcdMember(i, n, (f"https://10.0.0.{a}:2380",), (f"https://10.0.0.{a}:2379",), learner)
                 for i, n, a, learner in rows)


def test_a_dead_member_is_removed_only_to_make_room_for_its_replacement() -> None:
    members = _rows(("a1", "server-1", 11, False), ("a2", "server-2", 12, False), ("a3", "server-3", 13, False))
    # server-3 is dead and cluster.yaml names server-4 instead: remove server-3 first
    named = {"server-1": "https://10.0.0.11:2380", "server-2": "https://10.0.0.12:2380",
             "server-4": "https://10.0.0.14:2380"}
    got = dead_to_replace(members, named, {"a1", "a2"})
    assert [d.member.name for d in got] == ["server-3"]
    assert "2 healthy of 2 keep quorum without it; server-4 takes its place" in got[0].sentence
    # no replacement joins: the dead member stays (it may be a machine coming back)
    assert dead_to_replace(members, {k: v for k, v in named.items() if k != "server-4"}, {"a1", "a2"}) == []
    # a stranger that answers is someone's live member: never removed
    assert dead_to_replace(members, named, {"a1", "a2", "a3"}) == []
    # two dead of three: removing one would leave 1 healthy of 2, no quorum: nothing removed
    assert dead_to_replace(members, named, {"a1"}) == []
    # the same name on a new address is the rejoin path of `decide`, not a stranger
    moved = {**named, "server-3": "https://10.0.0.23:2380"}
    del moved["server-4"]
    assert dead_to_replace(members, moved, {"a1", "a2"}) == []


def test_a_voter_restarts_only_while_the_other_voters_keep_quorum() -> None:
    three = _rows(("a1", "server-1", 11, False), ("a2", "server-2", 12, False), ("a3", "server-3", 13, False))
    assert restart_refusal("a1", three, {"a1", "a2", "a3"}) is None
    # one of three down: restarting a healthy voter would leave 1 of 3
    why = restart_refusal("a1", three, {"a1", "a2"})
    assert why and "1 of 3 voters running, below the quorum of 2 (server-3 does not answer)" in why
    # two voters left after a dead one was removed (its replacement not joined yet): none may restart
    two = three[:2]
    assert "1 of 2 voters running, below the quorum of 2" in restart_refusal("a1", two, {"a1", "a2"})
    # a learner does not vote, and a member the list does not know yet is not counted
    learner = three[:2] + _rows(("a4", "server-4", 14, True))
    assert restart_refusal("a4", learner, {"a1", "a2"}) is None
    assert restart_refusal(None, three, {"a1", "a2", "a3"}) is None
    # with five voters, one down, one restart leaves 3 of 5: allowed
    five = three + _rows(("a4", "server-4", 14, False), ("a5", "server-5", 15, False))
    assert restart_refusal("a1", five, {"a1", "a2", "a3", "a4"}) is None


def test_the_membership_examples_run() -> None:
    import doctest
    assert doctest.testmod(membership).failed == 0


def test_endpoint_health_of_the_cluster_is_read_by_client_url() -> None:
    members = _rows(("a1", "server-1", 11, False), ("a2", "server-2", 12, False), ("a3", "server-3", 13, True))
    text = ('[{"endpoint":"https://10.0.0.11:2379","health":true,"took":"6.2ms"},'
            '{"endpoint":"https://10.0.0.13:2379","health":false,"error":"context deadline exceeded"}]')
    assert etcd_facts.parse_cluster_health(text, members) == {"a1"}
    assert etcd_facts.parse_cluster_health("", members) == set()


def test_status_notes_what_cluster_yaml_no_longer_names_and_judges_the_rest() -> None:
    members = [VipMember("server-1", True, "MASTER"), VipMember("server-2", False, "BACKUP")]
    rows = [Backend("server-1", "server-1", "UP"), Backend("server-1", "server-3", "DOWN", "L4CON")]
    st = Status("c", "https://x:6443", True, vip="10.0.0.100", vip_members=members, backends=rows,
                nodes=[Node("server-1", True), Node("server-3", False)])
    judge(st, ["server-1", "server-2"], {"server-1", "server-2", "server-4"})
    assert st.problems == [], st.problems
    assert any(n.startswith("server-3 is not in cluster.yaml but is still a backend of server-1 and a node "
                            "(not Ready)") for n in st.notes), st.notes
    # a named server whose backend is down is still a fault
    st = Status("c", "https://x:6443", True, vip="10.0.0.100", vip_members=members, backends=rows)
    judge(st, ["server-1", "server-2"], {"server-1", "server-3"})
    assert any("load-balancer backends down: server-3" in p for p in st.problems), st.problems
