"""The fact library's parsers: raw output as the real programs print it, in; facts out.

tests/unit/fixtures/facts/<reader>/: one raw file per case, and expected.json with what the
parser must make of each. The HAProxy files are `show stat` of a real HAProxy 2.6.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hakube.facts import apiserver, etcd, haproxy, kube, vip

FACTS = Path(__file__).parent / "fixtures" / "facts"


def expected(reader: str) -> dict:
    return json.loads((FACTS / reader / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(expected("haproxy")))
def test_haproxy_show_stat(name: str) -> None:
    got = haproxy.parse_show_stat((FACTS / "haproxy" / name).read_text())
    assert [[b.server, b.status, b.check, b.up] for b in got] == expected("haproxy")[name]


def test_haproxy_fallback_servers_and_other_proxies_are_not_backends() -> None:
    text = (FACTS / "haproxy" / "show-stat-one-up-two-down.txt").read_text()
    assert "server-3-fallback" in text
    assert "server-3-fallback" not in [b.server for b in haproxy.parse_show_stat(text)]
    assert haproxy.parse_show_stat(text, backend="stats") == []


@pytest.mark.parametrize("name", [n for n in sorted(expected("etcd")) if "member-list" not in n])
def test_etcd_status(name: str) -> None:
    raw = json.loads((FACTS / "etcd" / name).read_text())
    st = etcd.parse_status(raw[0]["Status"] if isinstance(raw, list) else raw)
    assert {**dataclasses.asdict(st), "is_leader": st.is_leader} == expected("etcd")[name]


def test_etcdctl_and_the_gateway_give_the_same_ids() -> None:
    local = etcd.parse_endpoint_status((FACTS / "etcd" / "etcdctl-endpoint-status-leader.json").read_text())
    remote = etcd.parse_status(json.loads((FACTS / "etcd" / "gateway-status-follower.json").read_text()))
    assert local.cluster_id == remote.cluster_id and local.member_id == remote.leader_id


def test_etcd_member_list() -> None:
    name = "etcdctl-member-list-one-unstarted.json"
    got = etcd.parse_member_list((FACTS / "etcd" / name).read_text())
    assert [dataclasses.asdict(m) | {"peer_urls": list(m.peer_urls), "client_urls": list(m.client_urls)}
            for m in got] == expected("etcd")[name]


@pytest.mark.parametrize("doc,want", [({"health": "true"}, (True, "")),
                                      ({"health": "false", "reason": "RAFT NO LEADER"}, (False, "RAFT NO LEADER")),
                                      ({"health": "false"}, (False, "unhealthy"))])
def test_etcd_health(doc, want) -> None:
    assert etcd.parse_health(doc) == want


@pytest.mark.parametrize("name", sorted(expected("vip")))
def test_vip_view(name: str) -> None:
    want = expected("vip")[name]
    got = vip.parse_view((FACTS / "vip" / f"{name}.txt").read_text(), want["provider"])
    assert dataclasses.asdict(got) == {k: v for k, v in want.items() if k != "provider"}


def test_vip_holds() -> None:
    assert vip.parse_holds("2: eth0    inet 10.0.0.100/32 scope global eth0\n")
    assert not vip.parse_holds("\n")
    assert vip.holds_command("10.0.0.100") == "ip -o -4 addr show to 10.0.0.100/32"


def test_nodes() -> None:
    got = kube.parse_nodes(json.loads((FACTS / "kube" / "nodes.json").read_text()))
    assert {n: {"ready": f.ready, "roles": f.roles, "message": f.message} for n, f in got.items()} == expected("kube")


@pytest.mark.parametrize("stdout,stderr,ready,seen", [
    ("200", "ok", True, "HTTP 200"),
    ("500", "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed", False,
     "HTTP 500: [+]ping ok [-]etcd failed: reason withheld readyz check failed"),
    ("000", "curl: (7) Failed to connect to 127.0.0.1 port 6444: Connection refused", False,
     "HTTP 000: curl: (7) Failed to connect to 127.0.0.1 port 6444: Connection refused"),
    ("", "", False, "HTTP -: "),
])
def test_apiserver_readyz(stdout, stderr, ready, seen) -> None:
    got = apiserver.parse_readyz(stdout, stderr)
    assert (got.ready, got.seen) == (ready, seen)
