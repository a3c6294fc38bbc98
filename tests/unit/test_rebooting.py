"""`hakube reboot`'s decisions (engine/rebooting.py): the order machines reboot in, and
which reboots would cost quorum or leave nothing else serving. Specs from
tests/unit/fixtures/specs."""

from __future__ import annotations

import pytest

from hakube.engine import rebooting
from hakube.spec import loads
from hakube.topology import derive

from .conftest import FIXTURES


def topo(name: str, text: str | None = None):
    path = FIXTURES / "specs" / f"{name}.yaml"
    return derive(loads(text if text is not None else path.read_text(), path).cluster)


HA3 = topo("ha3")
EVERY = ["server-1", "server-2", "server-3", "agent-1", "agent-2"]


def test_order_puts_the_vip_holder_last_and_the_leader_before_it() -> None:
    # spec order otherwise: agents keep their place among the others
    assert rebooting.order(HA3, EVERY, vip_holder="server-1", leader="server-2") == [
        "server-3", "agent-1", "agent-2", "server-2", "server-1"]
    # one host both: it goes last, the others keep spec order
    assert rebooting.order(HA3, EVERY, vip_holder="server-2", leader="server-2") == [
        "server-1", "server-3", "agent-1", "agent-2", "server-2"]
    # only the hosts asked for, in spec order whatever order they were named in
    assert rebooting.order(HA3, ["agent-2", "server-3", "agent-1"], None, None) == ["server-3", "agent-1", "agent-2"]


@pytest.mark.parametrize("name,host,unhealthy,refused", [
    ("ha3", "server-2", (), None),
    ("ha3", "agent-1", ("server-1",), None),  # an agent holds no member: etcd does not care
    # 3 members, one already down: rebooting another leaves 1 of 3
    ("ha3", "server-2", ("server-3",),
     "etcd would lose quorum while server-2 reboots: 1 of the other members answer healthy (server-3 not)"),
    # the member that is down may itself reboot (the two others keep quorum)
    ("ha3", "server-3", ("server-3",), None),
    # etcd on hosts of its own: an etcd host with the other two healthy may go
    ("etcd-hosts", "etcd-1", (), None),
    ("etcd-hosts", "etcd-1", ("etcd-2",), "etcd would lose quorum while etcd-1 reboots"),
    # a local proxy on each agent serves only that agent: rebooting one is fine
    ("agents-local", "agent-1", (), None),
    ("k3s3", "k3s-1", (), "reboot works on the kubernetes distribution, not k3s"),
], ids=["server", "agent-while-a-member-is-down", "second-member-down", "the-down-member-itself",
        "etcd-host", "etcd-host-second-down", "agent-with-local-proxy", "k3s"])
def test_refusals(name, host, unhealthy, refused) -> None:
    t = topo(name)
    got = rebooting.refusals(t, host, set(t.etcd_hosts) - set(unhealthy))
    if refused is None:
        assert got == []
    else:
        assert any(refused in sentence for sentence in got), got


def test_a_one_server_cluster_is_refused_with_the_reason() -> None:
    path = FIXTURES / "specs" / "ha3.yaml"
    text = "\n".join(ln for ln in path.read_text().splitlines()
                     if "server-2" not in ln and "server-3" not in ln)
    t = topo("ha3", text)
    assert t.servers == ("server-1",)
    got = rebooting.refusals(t, "server-1", {"server-1"})
    assert any("server-1 is the only apiserver: the API would be down while it reboots" in s for s in got), got
