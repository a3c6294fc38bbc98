"""SSH connections with asyncssh: host keys verified, parallel with a bound, sudo when needed.

Host keys are checked against a known_hosts file, matched by asyncssh exactly as OpenSSH
matches it: plain, hashed (`|1|...`) and pattern entries, revoked keys and CAs. With
`hostKeyPolicy: accept-new` a host that has no entry at all is trusted on first contact and
recorded; a host whose key CHANGED is always refused, whatever form its entry has (that is
what a man in the middle looks like). tests/unit/test_host_keys.py proves each case against
a real SSH server.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from ..hashing import file_sha256
from .base import CommandError, ConnectError, Result, RunLog


@dataclass(frozen=True)
class SSHTarget:
    """Everything needed to reach one host, resolved from the spec."""

    name: str
    address: str
    user: str = "root"
    port: int = 22
    key_file: Path | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    accept_new: bool = False
    sudo: bool | None = None  # None: when user is not root
    jump: "SSHTarget | None" = None
    connect_timeout: float = 10.0

    @property
    def use_sudo(self) -> bool:
        return self.user != "root" if self.sudo is None else self.sudo


class _Client(asyncssh.SSHClient):
    """Accepts a host key known_hosts does not vouch for only under accept-new, and only
    for a host known_hosts has NO entry for (a changed key is never accepted); remembers
    the accepted key to record it.

    asyncssh asks this only for keys its own known_hosts matching did not trust."""

    def __init__(self, target: SSHTarget, has_entry: bool):
        self.target = target
        self.has_entry = has_entry
        self.new_key: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host, addr, port, key) -> bool:
        if self.target.accept_new and not self.has_entry:
            self.new_key = key
            return True
        return False


def _kh_name(t: SSHTarget) -> str:
    return t.address if t.port == 22 else f"[{t.address}]:{t.port}"


def _has_entry(known: asyncssh.SSHKnownHosts, t: SSHTarget) -> bool:
    """Whether known_hosts has any entry for the target: plain, hashed (`|1|...`, what
    OpenSSH writes with HashKnownHosts) or a pattern (`[10.0.0.*]:22`), matched the way
    asyncssh (and OpenSSH) match them, revoked keys and CAs included."""
    host_keys, ca_keys, revoked, x509_certs, _revoked_certs, x509_subjects, _ = known.match(
        t.address, t.address, t.port if t.port != 22 else None)
    return bool(host_keys or ca_keys or revoked or x509_certs or x509_subjects)


_known_hosts_lock = asyncio.Lock()


class SSHConnector:
    """A live SSH connection to one host. Use `SSHConnector.open(target, log)`."""

    def __init__(self, target: SSHTarget, conn: asyncssh.SSHClientConnection, log: RunLog | None,
                 jump_conn: asyncssh.SSHClientConnection | None = None):
        self.target = target
        self.host = target.name
        self._conn = conn
        self._jump = jump_conn
        self._log = log

    @classmethod
    async def open(cls, target: SSHTarget, log: RunLog | None = None) -> "SSHConnector":
        jump_conn = None
        try:
            if target.jump:
                jump_conn = await _connect(target.jump, None)
            conn = await _connect(target, jump_conn)
        except BaseException as e:
            if jump_conn is not None:  # (a reconnect loop must not pile up bastion connections)
                jump_conn.close()
            if isinstance(e, ConnectError) or not isinstance(e, Exception):
                raise
            # asyncssh and OS errors: say which host and what to check
            raise ConnectError(_explain(target, e)) from None
        if log:
            log.write(target.name, f"connected to {target.user}@{target.address}:{target.port}")
        return cls(target, conn, log, jump_conn)

    async def run(self, command: str, *, input: str | bytes | None = None, check: bool = True,
                  timeout: float | None = None, what: str = "", log_output: bool = True,
                  as_login_user: bool = False) -> Result:
        """Run `command` (as root: through sudo for a non-root login, unless `as_login_user`)."""
        sudo = self.target.use_sudo and not as_login_user
        wrapped = f"sudo -n sh -c {shlex.quote(command)}" if sudo else command
        try:
            r = await self._conn.run(wrapped, input=input, check=False, timeout=timeout,
                                     encoding=None if isinstance(input, bytes) else "utf-8")
            out, err_ = r.stdout or "", r.stderr or ""
            if isinstance(out, bytes):
                out, err_ = out.decode(errors="replace"), err_.decode(errors="replace")
            result = Result(self.host, command, r.exit_status if r.exit_status is not None else 255, out, err_)
        except asyncssh.TimeoutError as e:
            out = e.stdout if isinstance(e.stdout, str) else ""
            result = Result(self.host, command, 124, out, f"timed out after {timeout} s")
        except (asyncssh.Error, OSError) as e:
            result = Result(self.host, command, 255, "", f"connection lost: {e}")
        if self._log:
            self._log.result(result, log_output)
        if check and not result.ok:
            raise CommandError(result, what)
        return result

    async def put(self, path: str, content: bytes, *, mode: int = 0o644, owner: str = "root",
                  group: str = "root", secret: bool = False) -> None:
        """Write atomically: a temporary file with the final owner and mode, then rename."""
        d = shlex.quote(str(Path(path).parent))
        tmp = shlex.quote(f"{path}.hakube-tmp")
        dest = shlex.quote(path)
        # Folders traversable (0755: services running as their own user must reach their
        # files); the file itself is private from its first byte until chmod sets its mode.
        cmd = (f"(umask 022 && mkdir -p {d}) && umask 077 && cat > {tmp} && chown {owner}:{group} {tmp} "
               f"&& chmod {mode:o} {tmp} && mv -f {tmp} {dest}")
        if self._log:
            self._log.write(self.host, f"put {path} ({len(content)} bytes, mode {mode:o}, "
                                       f"{owner}:{group}{', secret' if secret else ''})")
        await self.run(cmd, input=content, what=f"writing {path}", log_output=not secret)

    async def put_file(self, path: str, local: Path, *, mode: int = 0o755, sha256: str | None = None) -> None:
        """Copy a large local file (a binary) with SFTP, then install it atomically.

        The upload lands in a folder created for it alone (`mktemp -d`: a fresh name, mode
        0700, owned by the login user), so no other user can plant or swap the file; what
        was installed is checked against the local file's sha256 before it is moved into
        place, and the folder is removed whatever happens."""
        digest = sha256 or file_sha256(local)
        if self._log:
            self._log.write(self.host, f"upload {local} -> {path} ({local.stat().st_size} bytes, sha256 {digest})")
        folder = (await self.run("mktemp -d /tmp/.hakube-upload.XXXXXXXXXX", as_login_user=True,
                                 what=f"making a private upload folder for {path}")).stdout.strip()
        q = shlex.quote
        tmp = f"{folder}/{Path(path).name}"
        try:
            async with self._conn.start_sftp_client() as sftp:
                await sftp.put(str(local), tmp)
        except (asyncssh.Error, OSError) as e:
            await self.run(f"rm -rf {q(folder)}", as_login_user=True, check=False)
            raise ConnectError(f"{self.host}: uploading {local} failed: {e}") from None
        staged = f"{path}.hakube-tmp"
        await self.run(
            f"if install -m {mode:o} -o root -g root {q(tmp)} {q(staged)}; then "
            f"if echo {q(digest + '  ' + staged)} | sha256sum -c --status; then rc=0; else "
            f"echo 'the installed file does not have the sha256 of the uploaded one' >&2; "
            f"rm -f {q(staged)}; rc=1; fi; else rc=1; fi; "
            f"rm -rf {q(folder)}; [ $rc = 0 ] && mv -f {q(staged)} {q(path)}",
            what=f"installing {path}")

    async def close(self) -> None:
        self._conn.close()
        if self._jump:
            self._jump.close()


async def _connect(t: SSHTarget, tunnel) -> asyncssh.SSHClientConnection:
    kh_path = t.known_hosts.expanduser()
    try:
        trusted = asyncssh.read_known_hosts(str(kh_path)) if kh_path.exists() else asyncssh.import_known_hosts("")
    except (OSError, ValueError, asyncssh.KeyImportError) as e:
        raise ConnectError(f"{t.name} ({t.address}): cannot read {kh_path}: {e} "
                           f"(fix: repair or remove the malformed line)") from None
    has_entry = _has_entry(trusted, t)
    if not t.accept_new and not has_entry:
        raise ConnectError(
            f"{t.name} ({t.address}): no host key for it in {kh_path}; refusing to connect "
            f"(fix: add its key, e.g. `ssh-keyscan -p {t.port} {t.address} >> {kh_path}` after checking "
            f"the fingerprint, or set spec.ssh.hostKeyPolicy: accept-new to trust on first contact)")
    client = _Client(t, has_entry)
    # With a key file: that key only. Without: asyncssh's defaults (agent, ~/.ssh/id_*).
    auth = {"client_keys": [str(t.key_file.expanduser())], "agent_path": None} if t.key_file else {}
    conn, _ = await asyncio.wait_for(asyncssh.create_connection(
        lambda: client, t.address, port=t.port, username=t.user, known_hosts=trusted,
        tunnel=tunnel, connect_timeout=t.connect_timeout, keepalive_interval=10, **auth,
    ), timeout=t.connect_timeout + 5)
    if client.new_key is not None:
        async with _known_hosts_lock:
            kh_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(kh_path, "a") as fh:
                fh.write(f"{_kh_name(t)} {client.new_key.export_public_key().decode().strip()}\n")
    return conn


def _explain(t: SSHTarget, e: Exception) -> str:
    where = f"{t.name} ({t.user}@{t.address}:{t.port})"
    msg = str(e) or type(e).__name__
    if isinstance(e, asyncssh.PermissionDenied):
        key = t.key_file or "the SSH agent / default keys"
        return f"{where}: the key was refused ({msg}); fix: authorize {key} for {t.user} on that host"
    if isinstance(e, asyncssh.HostKeyNotVerifiable):
        return (f"{where}: host key does not match {t.known_hosts} ({msg}); if the host was "
                f"reinstalled, remove its old entry (ssh-keygen -R {t.address} -f {t.known_hosts}); "
                "otherwise this may be a man in the middle")
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return f"{where}: no answer within {t.connect_timeout:g} s; fix: check the host is up and the address/port"
    if isinstance(e, ConnectionRefusedError):
        return f"{where}: connection refused; fix: check sshd runs and listens on port {t.port}"
    if isinstance(e, OSError):
        return f"{where}: {e.strerror or msg}; fix: check the address and the network path"
    return f"{where}: {msg}"


async def connect_all(targets: list[SSHTarget], log: RunLog | None, limit: int = 10) -> dict[str, SSHConnector]:
    """Connect to every target (at most `limit` at once). If any fails, close the others and
    raise one error naming every host that failed, before anything has changed anywhere."""
    sem = asyncio.Semaphore(limit)

    async def one(t: SSHTarget):
        async with sem:
            try:
                return await SSHConnector.open(t, log)
            except ConnectError as e:
                return e

    results = await asyncio.gather(*(one(t) for t in targets))
    failed = [r for r in results if isinstance(r, ConnectError)]
    if failed:
        for r in results:
            if isinstance(r, SSHConnector):
                await r.close()
        raise ConnectError("cannot reach every host; nothing was changed:\n" +
                           "\n".join(f"  {e}" for e in failed))
    return {c.host: c for c in results}  # type: ignore[union-attr]
