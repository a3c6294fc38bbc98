"""Host keys against a real SSH server: asyncssh serving on 127.0.0.1 in this process.

Every form of known_hosts entry OpenSSH writes or accepts (plain, hashed with
HashKnownHosts, a wildcard pattern), with the right key and with a changed one, under
both policies: a changed key is refused whatever the entry looks like; a right one
connects; a host with no entry connects (and is recorded) only under accept-new.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from pathlib import Path

import asyncssh
import pytest

from hakube.transport import ConnectError, SSHConnector, SSHTarget


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True  # public-key auth against authorized_client_keys


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(port, host key, client key file) of a running server; torn down afterwards."""
    folder = tmp_path_factory.mktemp("sshd")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = folder / "id_ed25519"
    client_key.write_private_key(str(key_file))
    os.chmod(key_file, 0o600)
    loop = asyncio.new_event_loop()
    srv = loop.run_until_complete(asyncssh.create_server(
        _Server, "127.0.0.1", 0, server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode())))
    port = srv.sockets[0].getsockname()[1]
    yield loop, port, host_key, key_file
    srv.close()
    loop.run_until_complete(srv.wait_closed())
    loop.close()


def _hashed(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _entry(form: str, port: int) -> str:
    name = f"[127.0.0.1]:{port}"
    return {"plain": name, "hashed": _hashed(name), "wildcard": f"[127.0.0.*]:{port}"}[form]


def _connect(server, known: Path, accept_new: bool) -> None:
    loop, port, _, key_file = server
    target = SSHTarget("h1", "127.0.0.1", "hakube", port, key_file, known, accept_new, sudo=False,
                       connect_timeout=5)

    async def go():
        conn = await SSHConnector.open(target)
        await conn.close()
    loop.run_until_complete(go())


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
@pytest.mark.parametrize("form", ["plain", "hashed", "wildcard"])
def test_the_right_key_connects_whatever_the_entry_form(server, tmp_path, form, policy) -> None:
    _, port, host_key, _ = server
    known = tmp_path / "known_hosts"
    known.write_text(f"{_entry(form, port)} {host_key.export_public_key().decode().strip()}\n")
    before = known.read_text()
    _connect(server, known, accept_new=policy == "accept-new")
    assert known.read_text() == before, "a known host is not recorded again"


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
@pytest.mark.parametrize("form", ["plain", "hashed", "wildcard"])
def test_a_changed_key_is_refused_whatever_the_entry_form(server, tmp_path, form, policy) -> None:
    _, port, _, _ = server
    other = asyncssh.generate_private_key("ssh-ed25519")
    known = tmp_path / "known_hosts"
    known.write_text(f"{_entry(form, port)} {other.export_public_key().decode().strip()}\n")
    before = known.read_text()
    with pytest.raises(ConnectError) as e:
        _connect(server, known, accept_new=policy == "accept-new")
    assert "host key does not match" in str(e.value) and "man in the middle" in str(e.value)
    assert known.read_text() == before, "a changed key must never be appended"


def test_no_entry_is_refused_when_strict(server, tmp_path) -> None:
    known = tmp_path / "known_hosts"
    with pytest.raises(ConnectError) as e:
        _connect(server, known, accept_new=False)
    assert "no host key for it" in str(e.value) and "ssh-keyscan" in str(e.value)
    assert not known.exists()


def test_no_entry_is_trusted_on_first_contact_and_recorded_with_accept_new(server, tmp_path) -> None:
    _, port, host_key, _ = server
    known = tmp_path / "known_hosts"
    _connect(server, known, accept_new=True)
    line = known.read_text().strip()
    assert line == f"[127.0.0.1]:{port} {host_key.export_public_key().decode().strip()}"
    _connect(server, known, accept_new=False)  # and from then on it is simply known


def test_an_entry_for_another_host_does_not_count(server, tmp_path) -> None:
    _, port, host_key, _ = server
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.2]:{port} {host_key.export_public_key().decode().strip()}\n")
    with pytest.raises(ConnectError):
        _connect(server, known, accept_new=False)


def test_a_malformed_line_vouches_for_nothing(server, tmp_path) -> None:
    """As with OpenSSH, a line that does not parse is no entry: strict mode refuses."""
    _, port, _, _ = server
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} ssh-ed25519 not-base64!!\n")
    with pytest.raises(ConnectError) as e:
        _connect(server, known, accept_new=False)
    assert "no host key for it" in str(e.value)
