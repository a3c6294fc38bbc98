"""The etcd membership decision for one server: bootstrap, join, rejoin, or keep.

A pure function of facts (what this server's etcd sees, what a healthy member lists), so
the most dangerous choice of a deploy has fixture tests (tests/unit/fixtures/steps/etcd/):
bootstrapping where a cluster exists forks it; joining with another cluster's data
corrupts it; keeping a member whose data is gone leaves a stale entry that costs quorum.

Example:
    >>> d = decide("server-2", "https://10.0.0.12:2380", has_data=False,
    ...            members=(EtcdMember("8e9e05c52164694d", "server-1",
    ...                                ("https://10.0.0.11:2380",), ()),), source="server-1")
    >>> d.kind, d.sentence
    ('join', 'join the etcd cluster through server-1 as a learner, promoted to a voter once in sync')
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from ..facts.etcd import EtcdMember
from ..spec.validate import quorum

Initial = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class MemberDecision:
    kind: str                      # bootstrap, join, rejoin, keep
    initial: Initial | None        # initial-cluster (name, peer URL) pairs to write; None: from the config
    state: str | None              # initial-cluster-state: new or existing
    source: str | None = None      # the healthy server the join goes through
    remove_id: str | None = None   # rejoin: the stale member entry removed first
    foreign_data: bool = False     # join: this server holds data of another cluster (moved aside)

    @property
    def sentence(self) -> str:
        """The action, in the imperative (plan.Action turns it into "would ..." or "...ing")."""
        if self.kind == "bootstrap":
            return "bootstrap a new etcd cluster"
        if self.kind == "rejoin":
            return (f"rejoin: its etcd data is gone (removing stale member {self.remove_id} "
                    f"through {self.source}, then joining as a learner, promoted once in sync)")
        if self.kind == "join":
            aside = " (its etcd data of another cluster moved aside, never deleted)" if self.foreign_data else ""
            return (f"join the etcd cluster through {self.source} as a learner, promoted to a voter "
                    f"once in sync{aside}")
        return "keep the member and the settings it was started with"


def decide(name: str, peer: str, has_data: bool, members: tuple[EtcdMember, ...] | None,
           source: str | None = None, old_config: str | None = None) -> MemberDecision:
    """How server `name` (peer URL `peer`) becomes or stays an etcd member.

    `members` is the membership a healthy member reports (None: no member is healthy
    anywhere), `source` that member's server, `has_data` whether this server has an etcd
    data directory, `old_config` its current etcd.conf.yml (read only for a kept member).
    """
    mine = next((m for m in (members or ()) if m.name == name or peer in m.peer_urls), None)
    if members is None and not has_data:
        # no cluster anywhere: this is the bootstrap server (first in join order)
        return MemberDecision("bootstrap", ((name, peer),), "new")
    if members is not None and (mine is None or not has_data):
        others = tuple((m.name, m.peer_urls[0]) for m in members if m is not mine and m.name and m.peer_urls)
        initial = others + ((name, peer),)
        if mine is not None:
            # data lost but still a member: remove the stale entry, add it again, rejoin empty
            return MemberDecision("rejoin", initial, "existing", source, remove_id=mine.id)
        return MemberDecision("join", initial, "existing", source, foreign_data=has_data)
    # an existing member with data: keep the initial-* settings it was started with, so the
    # file (and the member) stay untouched on re-runs
    initial, state = initial_from(old_config) if old_config else (None, None)
    if initial is None:
        names = tuple((m.name, m.peer_urls[0]) for m in (members or ()) if m.name and m.peer_urls)
        initial, state = (names or ((name, peer),)), "existing"
    return MemberDecision("keep", initial, state)


def initial_from(text: str) -> tuple[Initial | None, str | None]:
    """initial-cluster and initial-cluster-state of an etcd.conf.yml (None, None if unreadable)."""
    try:
        doc = yaml.safe_load(text) or {}
        pairs = tuple(tuple(x.split("=", 1)) for x in str(doc["initial-cluster"]).split(","))
        if any(len(p) != 2 for p in pairs):
            return None, None
        return pairs, str(doc["initial-cluster-state"])  # type: ignore[return-value]
    except (yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None, None


def strangers(kind: str, present: dict[str, str], named: list[str] | tuple[str, ...], fix: str) -> list[str]:
    """Members the cluster has and cluster.yaml does not name (`present`: name -> detail),
    one sentence each. hakube reports them and never removes them by itself: a member
    missing from the spec may be a typo, or a host someone else still runs."""
    return [f"{kind} {name} ({detail}) is not in cluster.yaml; hakube leaves it alone: {fix}"
            for name, detail in sorted(present.items()) if name not in named]


@dataclass(frozen=True)
class DeadMember:
    member: EtcdMember
    sentence: str


def dead_to_replace(members: tuple[EtcdMember, ...], named: dict[str, str], healthy_ids: set[str]) -> list[DeadMember]:
    """The etcd members to remove before replacements join: members cluster.yaml does not
    name (`named`: host -> peer URL) that do not answer, at most one per named host that
    is not a member yet, and only while the healthy voters keep quorum without them.

    Removing the dead member first (not after the new one joins) keeps the voters odd and
    the quorum reachable: 3 voters with one dead -> 2 voters, both healthy; then the new
    member joins as a learner and is promoted. A stranger that answers is someone's live
    member: never removed (`strangers` reports it). Without a replacement joining, a dead
    member stays too: it may be a machine coming back."""
    peers = set(named.values())

    def is_named(m: EtcdMember) -> bool:
        return m.name in named or bool(set(m.peer_urls) & peers)

    joining = [h for h, peer in named.items()
               if not any(m.name == h or peer in m.peer_urls for m in members)]
    dead = [m for m in members if not is_named(m) and m.id not in healthy_ids]
    voters = [m for m in members if not m.is_learner]
    out: list[DeadMember] = []
    for m, new in zip(dead, joining):
        after = [v for v in voters if v.id != m.id]
        alive = [v for v in after if v.id in healthy_ids]
        if len(alive) < quorum(len(after)):
            break
        out.append(DeadMember(m, f"remove the dead etcd member {m.name or m.id} ({', '.join(m.peer_urls)}): "
                                 f"cluster.yaml no longer names it, it does not answer, and {len(alive)} healthy "
                                 f"of {len(after)} keep quorum without it; {new} takes its place"))
        voters = after
    return out


def restart_refusal(member_id: str | None, members: tuple[EtcdMember, ...], healthy_ids: set[str]) -> str | None:
    """Why the member `member_id` must not restart now, or None when it may: a
    voter's restart takes it out of the quorum for a few seconds, so the other healthy
    voters must make a quorum by themselves. (A learner does not vote: it may always go.)

    Example:
        >>> ms = tuple(EtcdMember(i, f"server-{i}", (), ()) for i in "123")
        >>> restart_refusal("1", ms, {"1", "2", "3"}) is None
        True
        >>> restart_refusal("1", ms, {"1", "2"})
        'restarting its etcd member now would leave 1 of 3 voters running, below the quorum of 2 (server-3 does not answer)'
    """
    voters = [m for m in members if not m.is_learner]
    if member_id is None or member_id not in {m.id for m in voters}:
        return None
    others = [m for m in voters if m.id != member_id and m.id in healthy_ids]
    need = quorum(len(voters))
    if len(others) >= need:
        return None
    down = [m.name or m.id for m in voters if m.id != member_id and m.id not in healthy_ids]
    why = f"restarting its etcd member now would leave {len(others)} of {len(voters)} voters running, below " \
          f"the quorum of {need}"
    return why + (f" ({', '.join(down)} {'does' if len(down) == 1 else 'do'} not answer)" if down else "")
