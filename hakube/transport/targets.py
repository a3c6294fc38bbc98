"""Where and how to reach each host of a cluster: SSH targets from the spec.

The one place that turns `spec.ssh` and each host's overrides into `SSHTarget`s, for the
deploy engine, status and chaos alike (none of them reaches into another for it).

Example:
    >>> targets = {t.name: t for t in ssh_targets(load("cluster.yaml"))}   # doctest: +SKIP
    >>> out = asyncio.run(run_once(loaded, "server-1", "uptime"))          # doctest: +SKIP
"""

from __future__ import annotations

from ..spec import Loaded
from .ssh import SSHConnector, SSHTarget


def ssh_targets(loaded: Loaded) -> list[SSHTarget]:
    """Every host's SSH target, per-host settings over the cluster's, paths resolved."""
    s = loaded.cluster.spec
    out = []
    for h in s.hosts:
        o = h.ssh
        jump = (o.jump_host if o and o.jump_host else None) or s.ssh.jump_host
        key = (o.key_file if o and o.key_file else None) or s.ssh.key_file
        common = dict(known_hosts=loaded.resolve(s.ssh.known_hosts), accept_new=s.ssh.host_key_policy == "accept-new",
                      connect_timeout=s.ssh.connect_timeout, key_file=loaded.resolve(key))
        jt = SSHTarget(name=f"jump:{jump.address}", address=jump.address, user=jump.user or s.ssh.user,
                       port=jump.port, **common) if jump else None
        out.append(SSHTarget(name=h.name, address=str(h.address), user=(o.user if o and o.user else None) or s.ssh.user,
                             port=(o.port if o and o.port else None) or s.ssh.port, sudo=s.ssh.sudo, jump=jt, **common))
    return out


async def run_once(loaded: Loaded, host: str, command: str, timeout: float = 60) -> str:
    """Run one command on `host` over its own short-lived SSH connection (chaos faults and
    scenarios that act outside a deploy). Raises CommandError on failure."""
    target = next(t for t in ssh_targets(loaded) if t.name == host)
    conn = await SSHConnector.open(target, None)
    try:
        return (await conn.run(command, timeout=timeout)).stdout
    finally:
        await conn.close()
