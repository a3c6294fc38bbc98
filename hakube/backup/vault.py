"""The cluster's CA keys and hakube's own secrets, sealed with a passphrase.

A backup with `--with-secrets` carries `secrets.tar.enc`: a tar of the state directory's
`pki/` and `secrets.yaml` (the CAs and their keys, the VRRP, corosync and K3s secrets,
and the key the apiservers encrypt Secrets with in etcd: without it the snapshot's
Secrets cannot be read), sealed with AES-256-GCM under a key derived from the passphrase
by scrypt. The header (format, scrypt cost, salt, nonce) is authenticated with it, so a
changed byte anywhere, or a wrong passphrase, opens nothing. The passphrase is never
written anywhere by hakube.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import HakubeError

MAGIC = b"hakube-secrets-v1\n"
SCRYPT_N = 2 ** 15   # about 0.1 s and 32 MiB per guess on this kind of machine
MIN_PASSPHRASE = 12
ENV = "HAKUBE_BACKUP_PASSPHRASE"
# what the state directory holds that a restore needs; run logs, kubeconfigs and earlier
# backups stay out
INCLUDED = ("pki", "secrets.yaml")


def passphrase(file: Path | None) -> str:
    """The passphrase from `file` (its first line) or from $HAKUBE_BACKUP_PASSPHRASE."""
    if file is not None:
        try:
            lines = file.read_text().splitlines()
        except OSError as e:
            raise HakubeError(f"cannot read the passphrase file {file}: {e.strerror}") from None
        text, where = (lines[0] if lines else ""), str(file)
    else:
        text, where = os.environ.get(ENV, ""), f"${ENV}"
    if not text:
        raise HakubeError(f"sealing or opening the secrets needs a passphrase: give --passphrase-file FILE or set ${ENV}")
    if len(text) < MIN_PASSPHRASE:
        raise HakubeError(f"the passphrase from {where} has {len(text)} characters; use at least {MIN_PASSPHRASE}")
    return text


def _key(secret: str, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(secret.encode())


def bundle(state_dir: Path) -> bytes:
    """A tar (in memory) of what the state directory holds that a restore needs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in INCLUDED:
            if (state_dir / name).exists():
                tar.add(state_dir / name, arcname=name)
    return buf.getvalue()


def seal(plain: bytes, secret: str) -> bytes:
    salt, nonce = os.urandom(16), os.urandom(12)
    header = MAGIC + SCRYPT_N.to_bytes(4, "big") + salt + nonce
    return header + AESGCM(_key(secret, salt, SCRYPT_N)).encrypt(nonce, plain, header)


def open_sealed(sealed: bytes, secret: str, where: str = "the secrets file") -> bytes:
    """The plain bytes, or a HakubeError when the passphrase is wrong or the file changed."""
    if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + 32 + 16:
        raise HakubeError(f"{where} is not a hakube secrets file")
    at = len(MAGIC)
    n = int.from_bytes(sealed[at:at + 4], "big")
    salt, nonce = sealed[at + 4:at + 20], sealed[at + 20:at + 32]
    header, body = sealed[:at + 32], sealed[at + 32:]
    if n not in (2 ** k for k in range(14, 21)):
        raise HakubeError(f"{where} has an unknown key-derivation cost")
    try:
        return AESGCM(_key(secret, salt, n)).decrypt(nonce, body, header)
    except InvalidTag:
        raise HakubeError(f"{where} does not open with this passphrase (wrong passphrase, or the file "
                          "was changed)") from None


def members(plain: bytes) -> list[str]:
    """The file names inside an opened bundle."""
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r") as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile())


def unseal_into(plain: bytes, state_dir: Path) -> tuple[list[str], list[str]]:
    """Write an opened bundle's files into `state_dir` (0600, folders 0700): the way back
    for a machine that lost its state directory. Only the names a bundle holds (`pki/...`,
    `secrets.yaml`) are taken, links and other members refused. A file that is already
    there and differs is never overwritten: a HakubeError names them all and nothing is
    written. Returns (written, already there and the same)."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r") as tar:
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if m.isdir() and parts and parts[0] in INCLUDED and ".." not in parts:
                continue
            if not m.isfile() or not parts or parts[0] not in INCLUDED or ".." in parts or Path(m.name).is_absolute():
                raise HakubeError(f"the sealed bundle holds {m.name!r}, which is not a file hakube puts there; "
                                  "nothing was written")
            files[m.name] = tar.extractfile(m).read()
    clash = [n for n, data in files.items() if (state_dir / n).exists() and (state_dir / n).read_bytes() != data]
    if clash:
        raise HakubeError(f"{state_dir} already holds {len(clash)} file(s) that differ from the backup's "
                          f"({', '.join(sorted(clash)[:5])}{', ...' if len(clash) > 5 else ''}): move that folder "
                          "away first if the backup's are the ones to use; nothing was written")
    written, same = [], []
    for name, data in sorted(files.items()):
        dest = state_dir / name
        if dest.exists():
            same.append(name)
            continue
        for parent in reversed(dest.relative_to(state_dir).parents[:-1]):
            (state_dir / parent).mkdir(mode=0o700, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        written.append(name)
    return written, same
