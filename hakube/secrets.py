"""Cluster secrets that configuration files need: made once, kept in the state directory.

Certificates and keys live in `hakube.pki`; these are the shared secrets some services
read from their configuration (VRRP authentication, the K3s join token, corosync's key).
They are generated with `secrets` (CSPRNG) on first use, stored 0600, never logged.
"""

from __future__ import annotations

import base64
import secrets as _random
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Secrets:
    vrrp_password: str  # keepalived PASS authentication: at most 8 characters are used
    k3s_token: str
    corosync_authkey: str  # hex text; corosync reads the file's bytes as the key
    # Secrets at rest in etcd: the apiserver's secretbox key (32 random bytes, base64)
    encryption_key: str = ""

    @classmethod
    def generate(cls) -> "Secrets":
        return cls(
            vrrp_password=_random.token_urlsafe(6)[:8],
            k3s_token=_random.token_hex(32),
            corosync_authkey=_random.token_hex(128),
            encryption_key=base64.b64encode(_random.token_bytes(32)).decode(),
        )

    @classmethod
    def load_or_create(cls, path: Path) -> "Secrets":
        """Read the secrets at `path`, creating the file (0600) when it does not exist. A
        file from an older hakube gets the secrets it lacks added (existing ones are kept)."""
        if path.exists():
            data = yaml.safe_load(path.read_text()) or {}
            fresh = asdict(cls.generate())
            missing = [k for k in cls.__dataclass_fields__ if not data.get(k)]
            s = cls(**{k: data.get(k) or fresh[k] for k in cls.__dataclass_fields__})
            if missing:
                _save(path, s)
            return s
        s = cls.generate()
        _save(path, s)
        return s


def _save(path: Path, s: Secrets) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(yaml.safe_dump(asdict(s)))
    tmp.replace(path)
