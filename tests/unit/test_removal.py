"""`hakube remove`'s decision (engine/removal.py): which removals keep quorum and HA, and
the sentence that says why the others are refused. Specs from tests/unit/fixtures/specs,
with servers added where a case needs five; the validator runs on the spec without the
leaving hosts, as `remove` does."""

from __future__ import annotations

import pytest

from hakube.engine import removal
from hakube.engine.remove import without
from hakube.spec import loads
from hakube.spec.validate import validate
from hakube.topology import derive

from .conftest import FIXTURES

HA3 = (FIXTURES / "specs" / "ha3.yaml").read_text()
HA5 = HA3.replace("    - {name: agent-1,", "    - {name: server-4, address: 192.168.56.14, roles: [server]}\n"
                  "    - {name: server-5, address: 192.168.56.15, roles: [server]}\n    - {name: agent-1,", 1)


def decide(text: str, name: str, leaving: list[str], unhealthy: tuple[str, ...] = ()) -> list[str]:
    loaded = loads(text, FIXTURES / "specs" / f"{name}.yaml")
    now = derive(loaded.cluster)
    rest = without(loaded, leaving)
    problems = [f"{p.path}: {p.message}" for p in validate(rest.cluster, base=loaded.source.parent)
                if p.severity == "error"]
    return removal.refusals(now, derive(rest.cluster), set(now.etcd_hosts) - set(unhealthy), problems)


@pytest.mark.parametrize("text,name,leaving,unhealthy,refused", [
    # 5 -> 3: allowed; an agent: allowed
    (HA5, "ha5", ["server-4", "server-5"], (), None),
    (HA3, "ha3", ["agent-1"], (), None),
    # 3 -> 2 tolerates nothing; 3 -> 1 neither (and one apiserver, one VIP host)
    (HA3, "ha3", ["server-3"], (), "2 etcd members would tolerate no failure (3 tolerate 1 now)"),
    (HA3, "ha3", ["server-2", "server-3"], (), "1 etcd member would tolerate no failure"),
    # 5 -> 3 while one that stays is down: 2 of 3 healthy is a quorum, 5 -> 3 with two down is not
    (HA5, "ha5", ["server-4", "server-5"], ("server-1",), None),
    (HA5, "ha5", ["server-4", "server-5"], ("server-1", "server-2"),
     "the 3 etcd members that stay would not keep quorum: 1 of them are healthy (server-1, server-2 not)"),
    # etcd on hosts of its own: 2 of 3 servers may go as far as etcd is concerned, not to 1 apiserver
    ((FIXTURES / "specs" / "etcd-hosts.yaml").read_text(), "etcd-hosts", ["server-2", "server-3"], (),
     "one server would carry the API alone (now 3)"),
    ((FIXTURES / "specs" / "etcd-hosts.yaml").read_text(), "etcd-hosts", ["lb-2"], (),
     "the VIP would have one host left (now 2)"),
    ((FIXTURES / "specs" / "etcd-hosts.yaml").read_text(), "etcd-hosts", ["etcd-3"], (),
     "2 etcd members would tolerate no failure"),
    # pacemaker members are refused with the reason
    ((FIXTURES / "specs" / "pacemaker.yaml").read_text().replace(
        "    - {name: agent-1,", "    - {name: server-4, address: 172.16.10.14, roles: [server]}\n"
        "    - {name: server-5, address: 172.16.10.15, roles: [server]}\n    - {name: agent-1,", 1),
     "pacemaker5", ["server-5"], (), "removing a pacemaker member is not done by hakube yet"),
], ids=["5-to-3", "an-agent", "3-to-2", "3-to-1", "5-to-3-one-staying-down", "5-to-3-two-staying-down",
        "etcd-hosts-to-one-apiserver", "last-but-one-vip-host", "etcd-hosts-3-to-2", "pacemaker-member"])
def test_removal_decision(text, name, leaving, unhealthy, refused) -> None:
    got = decide(text, name, leaving, unhealthy)
    if refused is None:
        assert got == []
    else:
        assert any(refused in sentence for sentence in got), got
