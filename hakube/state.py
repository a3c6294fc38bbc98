"""The local state directory of a cluster: its PKI, secrets, kubeconfig and run logs.

`$HAKUBE_HOME/clusters/<name>` (default `~/.local/share/hakube/clusters/<name>`), mode 0700.
The hosts are the truth about what runs; this folder only keeps what hakube itself
created and must reuse (certificate authorities, keys, tokens).
"""

from __future__ import annotations

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
