"""Cluster secrets that configuration files need: made once, kept in the state directory.

Certificates and keys live in `hakube.pki`; these are the shared secrets some services
read from their configuration (VRRP authentication, the K3s join token, corosync's key).
They are generated with `secrets` (CSPRNG) on first use, stored 0600, never logged.
"""

from __future__ import annotations

import secrets as _random
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Secrets:
    vrrp_password: str  # keepalived PASS authentication: at most 8 characters are used
    k3s_token: str
    corosync_authkey: str  # hex text; corosync reads the file's bytes as the key

    @classmethod
    def generate(cls) -> "Secrets":
        return cls(
            vrrp_password=_random.token_urlsafe(6)[:8],
            k3s_token=_random.token_hex(32),
            corosync_authkey=_random.token_hex(128),
        )

    @classmethod
    def load_or_create(cls, path: Path) -> "Secrets":
        """Read the secrets at `path`, creating the file (0600) when it does not exist."""
        if path.exists():
            data = yaml.safe_load(path.read_text()) or {}
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        s = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(yaml.safe_dump(asdict(s)))
        tmp.replace(path)
        return s
