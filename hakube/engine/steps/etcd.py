"""The datastore step: etcd with TLS, on the servers or on hosts of its own; or a check
that an existing etcd (datastore type external) answers before anything changes.

Bootstrap a new cluster only when no member is healthy anywhere and no host holds etcd
data; otherwise join through a healthy member, ONE host at a time (concurrent joins can
lose quorum), each gated on the member being healthy before the next one plans.
"""

from __future__ import annotations

import asyncio
import shlex
import ssl
import time

from ...components import etcd as etcd_component
from ...timeouts import scaled
from ...transport import CommandError
from ...verify.clients import external_etcd_client
from ...verify.status import etcd_endpoints, etcd_members
from ...facts import etcd as etcd_facts
from ...facts import host as facts
from .. import handoff, membership, services
from ..changes import Desired, PhaseReport
from ..context import Deploy, GateError
from ..gates import ETCD_JOIN_TIMEOUT, wait_apiserver_ready, wait_etcd_healthy
from ..plan import Action, execute

ETCDCTL_LOCAL = f"{etcd_facts.ETCDCTL} {etcd_facts.LOCAL}"


async def phase_existing_etcd(d: Deploy) -> None:
    """An existing etcd (datastore type external) must answer, with the spec's CA and client
    certificate, before any host changes: a typo in an endpoint or a wrong key would
    otherwise leave every apiserver restarted against a datastore it cannot use."""
    if d.topo.datastore.type != "external" or d.topo.distribution != "kubernetes":
        return
    with d.ui.phase("existing etcd"):
        endpoints = etcd_endpoints(d.topo)
        try:
            async with external_etcd_client(d.loaded) as client:
                members = await etcd_members(endpoints, client)
        except (OSError, ssl.SSLError) as e:  # unreadable or mismatched CA/cert/key files
            raise GateError("existing etcd", "the CA, certificate and key of spec.datastore to load",
                            f"{e}; check spec.datastore.caFile, certFile and keyFile") from None
        bad = [f"{m.endpoint}: {m.error or 'not healthy'}" for m in members if not m.healthy]
        if bad:
            raise GateError("existing etcd", "every endpoint of spec.datastore.endpoints healthy "
                            "(checked from this machine with the spec's CA and client certificate) "
                            "before changing anything", "; ".join(bad))
        for m in members:
            d.ui.ok(m.name, f"existing etcd {m.endpoint} healthy" + (" (leader)" if m.leader else ""))


async def phase_etcd(d: Deploy) -> None:
    hosts = d.topo.etcd_hosts
    if not hosts or "etcd" not in d.host(hosts[0]).components:
        return
    with d.ui.phase("etcd") as report:
        data_dir = etcd_component.member_for(d.topo, d.host(hosts[0])).data_dir

        async def views_of(hosts):
            return dict(zip(hosts, await asyncio.gather(*(etcd_facts.etcd_view(d.conns[s], data_dir) for s in hosts))))

        views = await views_of(hosts)
        healthy = [s for s, v in views.items() if v.healthy]
        with_data = [s for s, v in views.items() if v.has_data]
        if not healthy and with_data:
            # The cluster exists but no member runs (e.g. after a full power loss): start the
            # members that have data together; bootstrapping here would fork a second cluster.
            d.ui.info("etcd", f"no healthy member; starting the members with data: {', '.join(with_data)}")
            await d.each(with_data, lambda s: converge_member(d, report, s, views[s], None))
            await d.gate(lambda: d.each(with_data, lambda s: wait_etcd_healthy(d, s)))
            views.update(await views_of(with_data))
            healthy = [s for s in with_data if views[s].healthy]
        if healthy and not d.dry_run:
            await remove_dead_members(d, report, healthy[0], views[healthy[0]].members)
        # one at a time: concurrent joins can lose quorum. The members to (re)join or start
        # come first, in join order, then the running ones: a replacement restores the
        # voters before a setting that changed restarts anyone (2 voters left by a dead
        # one lose quorum in a restart; 3 keep it)
        order = [s for s in hosts if s not in healthy] + [s for s in hosts if s in healthy]
        # a dry run plans joins without making them: the membership it sees is the one
        # before them, so it cannot judge a later restart's quorum
        judge_quorum = not (d.dry_run and order and order[0] not in healthy)
        for s in order:
            source = next((x for x in healthy if x != s), None) or (healthy[0] if healthy else None)
            if source and not d.dry_run:
                # fresh: the membership changed with every join before this one
                views[source] = await etcd_facts.etcd_view(d.conns[source], data_dir)
            members = views[source].members if source else ()
            if s in healthy and s != source and not d.dry_run:
                # fresh too: leadership may have moved while the members before it restarted
                views[s] = await etcd_facts.etcd_view(d.conns[s], data_dir)
            back = await converge_member(d, report, s, views[s], members if source else None, source, judge_quorum)
            if not d.dry_run:
                if source and source != s:
                    # a learner (just added, or left by a run that stopped before promoting
                    # it) becomes a voter before the next member changes
                    await promote_when_in_sync(d, report, source, s)
                await wait_etcd_healthy(d, s)
                views[s] = await etcd_facts.etcd_view(d.conns[s], data_dir)
                if back:  # this server's apiserver, drained for its member's restart
                    await wait_apiserver_ready(d, s)
            await execute(d, report, back)
            if s not in healthy:  # (in a dry run: as if it had joined, so the next ones plan a join)
                healthy.append(s)
            d.ui.ok(s, "etcd member healthy" if not d.dry_run else "etcd planned")
        if not d.dry_run:
            ids = {views[s].cluster_id for s in hosts}
            if len(ids) != 1:
                raise GateError("etcd", "one cluster id on every member", f"cluster ids {sorted(map(str, ids))}")
            present = {m.name or m.id: ", ".join(m.peer_urls) for m in views[hosts[0]].members}
            for sentence in membership.strangers("etcd member", present, hosts,
                                                 "if it is gone for good, run `etcdctl member remove ID` "
                                                 "on a member"):
                d.ui.warn("etcd", sentence)


async def remove_dead_members(d: Deploy, report: PhaseReport, source: str,
                              members: tuple[etcd_facts.EtcdMember, ...]) -> None:
    """A dead member that a new server replaces is removed first (membership.dead_to_replace),
    through `source`; its node object goes in the nodes step (Deploy.replaced)."""
    named = {s: etcd_component.peer_url(d.host(s).address) for s in d.topo.etcd_hosts}
    if all(m.name in named or set(m.peer_urls) & set(named.values()) for m in members):
        return
    r = await d.conns[source].run(f"{etcd_facts.ETCDCTL} {etcd_facts.LOCAL} endpoint health --cluster -w json",
                                  check=False, timeout=30)
    healthy_ids = etcd_facts.parse_cluster_health(r.stdout, members)
    for dead in membership.dead_to_replace(members, named, healthy_ids):
        async def remove(dead=dead) -> None:
            await member_remove(d, source, dead.member.id, f"removing the dead etcd member {dead.member.name}")
        await execute(d, report, [Action(source, dead.sentence, remove, announce=True)])
        if dead.member.name:
            d.replaced.add(dead.member.name)


async def member_actions(d: Deploy, s: str, view: etcd_facts.EtcdView,
                         members: tuple[etcd_facts.EtcdMember, ...] | None,
                         source: str | None = None, judge_quorum: bool = True) -> tuple[list[Action], list[Action]]:
    """The plan for host `s`'s member: the membership change (membership.decide), its
    configuration files, its start or restart with their hand-offs; and the actions that
    follow its health gate (the apiserver beside it back in the load balancers)."""
    conn = d.conns[s]
    h = d.host(s)
    peer = etcd_component.peer_url(h.address)
    old = await facts.read_text(conn, etcd_component.CONFIG) if view.has_data else None
    decision = membership.decide(s, peer, view.has_data, members, source, old)
    actions: list[Action] = []
    back: list[Action] = []
    if decision.kind == "bootstrap":
        actions.append(Action(s, decision.sentence, announce=True))
    elif decision.kind in ("join", "rejoin"):
        async def join() -> None:
            if decision.remove_id:
                await d.conns[source].run(f"{ETCDCTL_LOCAL} member remove {decision.remove_id}",
                                          what="removing the stale etcd member")
            if decision.foreign_data:  # data of another cluster (not a member here): keep it aside, never delete
                root = shlex.quote(etcd_component.DATA_ROOT)
                await conn.run(f"systemctl stop etcd; mv {root}/{d.topo.name} {root}/{d.topo.name}.stale-$(date +%s)",
                               what="moving foreign etcd data aside")
            else:
                await conn.run("systemctl stop etcd", check=False)
            await member_add(d, source, s, peer)
        actions.append(Action(s, decision.sentence, join, announce=True))
    m = etcd_component.member_for(d.topo, h, decision.initial, decision.state)
    extra = [Desired.of(f) for f in etcd_component.render(m)]
    own = {x.path for x in extra}
    file_actions = await d.file_actions(s, extra)
    triggers = sorted(p for p in d.changed.get(s, ()) if p in own or p in services.ETCD.pki)
    st = (await facts.service_states(conn, ["etcd"]))["etcd"]
    reload = "systemctl daemon-reload && " if any(a.path == etcd_component.UNIT for a in file_actions) else ""
    enable = "systemctl enable etcd && " if st.enabled != "enabled" else ""
    if st.active != "active" or triggers:
        verb = "start" if st.active != "active" else "restart"
        if verb == "restart":
            if judge_quorum:
                await refuse_restart_without_quorum(d, s, view)
            # a leader hands over first: a planned restart costs no election; and the
            # apiserver beside it (stacked: it uses only this member) leaves the load
            # balancers first, and comes back once its member and it are ready again
            file_actions += handoff.move_etcd_leader(d, s, view)
            if h.runs("kube-apiserver"):
                drain, back = handoff.drain_backend(d, s)
                file_actions += drain
        # --no-block: a joining member becomes "started" only once it reaches the others,
        # which the health gate waits for with a clear error instead of a hang.
        cmd = f"{reload}{enable}systemctl --no-block {verb} etcd"
        file_actions.append(Action(s, f"{verb} etcd", lambda: conn.run(cmd, what=f"{verb}ing etcd")))
    elif reload or enable:
        cmd = f"{reload}{enable}true"
        file_actions.append(Action(s, "enable etcd" if enable else "reload systemd (etcd's unit changed)",
                                   lambda: conn.run(cmd, what="enabling etcd")))
    return actions + file_actions, back


async def refuse_restart_without_quorum(d: Deploy, s: str, view: etcd_facts.EtcdView) -> None:
    """A GateError, before anything on `s` changes, when restarting its member would take
    the cluster below quorum (membership.restart_refusal): what is down, and what to do."""
    r = await d.conns[s].run(f"{ETCDCTL_LOCAL} endpoint health --cluster -w json", check=False, timeout=30)
    why = membership.restart_refusal(view.member_id, view.members,
                                     etcd_facts.parse_cluster_health(r.stdout, view.members))
    if why:
        raise GateError(s, "the other etcd voters healthy enough to keep quorum while this member restarts "
                        "for its changed settings", why,
                        hint="bring the member that does not answer back (or replace it in cluster.yaml), then "
                             "run `hakube up` again; nothing on this host was changed")


async def converge_member(d: Deploy, report: PhaseReport, s: str, view: etcd_facts.EtcdView,
                          members: tuple[etcd_facts.EtcdMember, ...] | None, source: str | None = None,
                          judge_quorum: bool = True) -> list[Action]:
    """Execute the member's plan; returns the actions that must follow its health gate."""
    actions, back = await member_actions(d, s, view, members, source, judge_quorum)
    await execute(d, report, actions)
    return back


async def member_add(d: Deploy, source: str, name: str, peer: str, timeout: float = 60.0) -> None:
    """`member add --learner`, retried while etcd's answer is transient (`_TRANSIENT`: strict
    reconfiguration checks want every member connected for a few seconds first, and a
    membership change proposed while the previous one is still being applied does not
    commit); an attempt that timed out but committed after all counts as added.

    A new member joins as a learner: it replicates the log without voting, so an empty
    member that is slow to catch up (or never starts) does not count towards quorum;
    `promote_when_in_sync` makes it a voter once the leader says it has caught up."""
    cmd = f"{ETCDCTL_LOCAL} --command-timeout 15s member add {name} --peer-urls={peer} --learner"
    deadline = time.monotonic() + scaled(timeout)
    while True:
        r = await d.conns[source].run(cmd, check=False, timeout=30)
        if r.ok:
            return
        transient = any(x in r.stderr for x in _TRANSIENT)
        if transient or "already exists" in r.stderr:
            listed = await d.conns[source].run(f"{ETCDCTL_LOCAL} member list -w json", check=False, timeout=30)
            if listed.ok and any(peer in m.peer_urls for m in etcd_facts.parse_member_list(listed.stdout)):
                return
        if not transient or time.monotonic() > deadline:
            raise CommandError(r, f"adding {name} to etcd")
        await asyncio.sleep(1)


# etcd refuses to promote a learner whose log is behind the leader's, or that has not
# connected yet; both pass on their own once it catches up.
_NOT_YET = ("in sync with leader", "learner member which is not started", "unhealthy cluster")


async def promote_when_in_sync(d: Deploy, report: PhaseReport, source: str, s: str,
                               timeout: float = ETCD_JOIN_TIMEOUT) -> None:
    """If `s`'s member is a learner (seen from `source`), promote it, retried until its
    log is in sync; a GateError with etcd's last answer when it does not catch up."""
    r = await d.conns[source].run(f"{ETCDCTL_LOCAL} member list -w json", what="listing etcd members")
    peer = etcd_component.peer_url(d.host(s).address)
    mine = next((m for m in etcd_facts.parse_member_list(r.stdout) if m.name == s or peer in m.peer_urls), None)
    if mine is None or not mine.is_learner:
        return
    deadline = time.monotonic() + scaled(timeout)
    seen = ""

    async def promote() -> None:
        nonlocal seen
        with d.ui.waiting(f"{s}: waiting for the learner to catch up, to promote it"):
            while time.monotonic() < deadline:
                p = await d.conns[source].run(f"{ETCDCTL_LOCAL} member promote {mine.id}", check=False, timeout=30)
                if p.ok:
                    return
                seen = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no answer"]
                seen = seen[0]
                if not any(x in seen for x in _NOT_YET):
                    break
                await asyncio.sleep(0.5)
        raise GateError(s, "its etcd learner in sync with the leader and promoted to a voter "
                        f"within {scaled(timeout):.0f} s", seen, await d.journal(s, "etcd"),
                        "fix what the log says, then run `hakube up` again: it promotes the learner then")
    await execute(d, report, [Action(s, "promote its etcd learner to a voter", promote)])


# Answers of a membership change that pass on their own: the cluster is in an election, a
# member just joined (strict reconfiguration checks), or a proposal did not commit within
# etcdctl's timeout (the 2 shared cores of a lab stall a leader for seconds at times).
_TRANSIENT = ("context deadline exceeded", "unhealthy cluster", "request timed out", "leader changed",
              "too many requests")


async def member_remove(d: Deploy, source: str, member_id: str, what: str, timeout: float = 60.0) -> None:
    """`member remove`, retried while etcd's answer is transient; a member already gone
    (a timed-out attempt that committed after all) counts as removed."""
    cmd = f"{ETCDCTL_LOCAL} --command-timeout 15s member remove {member_id}"
    deadline = time.monotonic() + scaled(timeout)
    while True:
        r = await d.conns[source].run(cmd, check=False, timeout=30)
        if r.ok or "member not found" in r.stderr:
            return
        if not any(x in r.stderr for x in _TRANSIENT) or time.monotonic() > deadline:
            raise CommandError(r, what)
        await asyncio.sleep(1)
