"""Render every file every host receives, plus the cluster-level manifests.

Each component renders its own files; this module only asks each of them, in a fixed
order, and checks that no two components claim the same path on one host.

Example:
    >>> rendered = render(derive(cluster), secrets)
    >>> [f.path for f in rendered.hosts["server-1"]][:2]
    ['/etc/etcd/etcd.conf.yml', '/etc/systemd/system/etcd.service']
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .components import COMPONENTS
from .components.base import File, RenderContext
from .secrets import Secrets
from .topology import Topology

CLUSTER_DIR = "_cluster"  # where cluster-level files go in `hakube render -o DIR`


@dataclass(frozen=True)
class Rendered:
    hosts: dict[str, list[File]]  # host name -> files, sorted by path
    cluster: list[File]  # manifests and templates applied once per cluster

    def write(self, out: Path) -> list[Path]:
        """Write DIR/<host>/<absolute path> and DIR/_cluster/<path>; returns what was written."""
        written = []
        items = [(h, f) for h, files in self.hosts.items() for f in files]
        items += [(CLUSTER_DIR, f) for f in self.cluster]
        for where, f in items:
            dest = out / where / f.path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".hakube-tmp")
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode), "w") as fh:
                fh.write(f.content)
            os.chmod(tmp, f.mode)
            tmp.replace(dest)
            written.append(dest)
        return written


def render(topo: Topology, secrets: Secrets) -> Rendered:
    ctx = RenderContext(topo=topo, secrets=secrets)
    hosts: dict[str, list[File]] = {}
    for h in topo.hosts:
        files: dict[str, File] = {}
        for comp in COMPONENTS:
            for f in comp.host_files(ctx, h):
                if f.path in files:
                    raise RuntimeError(f"{comp.__name__} and another component both render {f.path} on {h.name}")
                files[f.path] = f
        hosts[h.name] = [files[p] for p in sorted(files)]
    cluster: dict[str, File] = {}
    for comp in COMPONENTS:
        for f in getattr(comp, "cluster_files", lambda _ctx: [])(ctx):
            if f.path in cluster:
                raise RuntimeError(f"{comp.__name__} renders cluster file {f.path} twice")
            cluster[f.path] = f
    return Rendered(hosts=hosts, cluster=[cluster[p] for p in sorted(cluster)])
