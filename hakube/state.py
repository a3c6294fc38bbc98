"""The local state directory of a cluster: its PKI, secrets, kubeconfig and run logs.

`$HAKUBE_HOME/clusters/<name>` (default `~/.local/share/hakube/clusters/<name>`), mode 0700.
The hosts are the truth about what runs; this folder only keeps what hakube itself
created and must reuse (certificate authorities, keys, tokens), and which hosts the last
completed operation left in the cluster (`converged.json`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .secrets import Secrets


def home() -> Path:
    return Path(os.environ.get("HAKUBE_HOME") or Path.home() / ".local/share/hakube")


def cluster_dir(name: str, create: bool = True) -> Path:
    d = home() / "clusters" / name
    if create:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        d.chmod(0o700)
    return d


def secrets(name: str) -> Secrets:
    return Secrets.load_or_create(cluster_dir(name) / "secrets.yaml")


def converged_hosts(name: str) -> list[str] | None:
    """The hosts the last completed `up` (or `remove`) left in the cluster; None: unknown.

    The probes around a day-2 operation start from the cluster as it runs, not as the
    edited cluster.yaml will make it: servers being added are not down."""
    try:
        doc = json.loads((cluster_dir(name, create=False) / "converged.json").read_text())
        return [str(h) for h in doc["hosts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_converged(name: str, hosts: list[str]) -> None:
    path = cluster_dir(name) / "converged.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"hosts": hosts}, indent=1) + "\n")
    tmp.replace(path)
