"""HAProxy and keepalived configurations, checked by the real programs that read them.

The configs reference certificate files and the track script by absolute path; the test
writes a real PKI (made by hakube.pki) and the rendered script into a temporary root and
points the paths there. Everything else is checked exactly as rendered.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hakube import paths
from hakube.components import haproxy, keepalived
from hakube.pki import CA

from hakube.topology import derive

from .conftest import rendered, topology

pytestmark = pytest.mark.skipif(not shutil.which("haproxy") or not shutil.which("keepalived"),
                                reason="haproxy/keepalived not installed: run scripts/setup.sh")


@pytest.fixture(scope="module")
def pki_root(tmp_path_factory) -> Path:
    """A root-owned directory tree with a real CA and the lb-check client certificate."""
    root = Path(tmp_path_factory.mktemp("root"))
    ca = CA.create("test-ca")
    check = ca.issue("hakube:lb-check", client=True)
    pki = root / paths.PKI.lstrip("/")
    ca.save(pki / "ca.crt", pki / "ca.key")
    check.save(pki / "lb-check.crt", pki / "lb-check.key")
    (pki / "lb-check.pem").write_bytes(check.pem_bundle)
    return root


def materialize(text: str, root: Path) -> str:
    return text.replace(paths.PKI, str(root / paths.PKI.lstrip("/"))).replace(
        paths.LIBEXEC, str(root / paths.LIBEXEC.lstrip("/")))


def haproxy_check(text: str, root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(materialize(text, root))
    return subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)


def keepalived_check(files: dict, root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    for path in (keepalived.CHECK_SCRIPT, keepalived.MAJORITY_SCRIPT, keepalived.NOTIFY_SCRIPT):
        if path in files:  # keepalived refuses a config whose track scripts are missing
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(files[path].content)
            os.chmod(dest, files[path].mode)
    cfg = tmp_path / "keepalived.conf"
    cfg.write_text(materialize(files[keepalived.CONFIG].content, root))
    return subprocess.run(["keepalived", "--config-test", "-f", str(cfg)], capture_output=True, text=True)


def files_of(spec: str, host: str) -> dict:
    return {f.path: f for f in rendered(spec).hosts[host]}


@pytest.mark.parametrize("host", ["server-1", "server-2", "server-3"])
def test_haproxy_accepts_rendered_config(host, pki_root, tmp_path) -> None:
    r = haproxy_check(files_of("ha3", host)[haproxy.CONFIG].content, pki_root, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_haproxy_rejects_a_broken_config(pki_root, tmp_path) -> None:
    """The check can fail: a typo in the rendered text is caught."""
    text = files_of("ha3", "server-1")[haproxy.CONFIG].content.replace("balance roundrobin", "balance roundrobn")
    assert haproxy_check(text, pki_root, tmp_path).returncode != 0


@pytest.mark.parametrize("host", ["server-1", "server-2", "server-3"])
def test_keepalived_accepts_rendered_config(host, pki_root, tmp_path) -> None:
    r = keepalived_check(files_of("ha3", host), pki_root, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_keepalived_rejects_a_broken_config(pki_root, tmp_path) -> None:
    files = files_of("ha3", "server-1")
    bad = files[keepalived.CONFIG].content.replace("virtual_router_id", "virtual_router_idx")
    files[keepalived.CONFIG] = type(files[keepalived.CONFIG])(keepalived.CONFIG, bad)
    assert keepalived_check(files, pki_root, tmp_path).returncode != 0


def test_haproxy_balances_over_every_apiserver_with_authenticated_readyz() -> None:
    text = files_of("ha3", "server-2")[haproxy.CONFIG].content
    t = topology("ha3")
    for s in t.servers:
        assert f"server {s} {t.address(s)}:{t.apiserver_port} check check-sni {s} verifyhost {s}" in text
    assert "option httpchk GET /readyz" in text and f"crt {paths.LB_CHECK_PEM}" in text
    assert "verify required" in text and f"bind *:{t.endpoint_port}" in text


def test_keepalived_members_and_track_script() -> None:
    t = topology("ha3")
    seen_priorities = set()
    for s in t.servers:
        files = files_of("ha3", s)
        conf = files[keepalived.CONFIG]
        assert conf.mode == 0o600, "holds the VRRP password"
        text = conf.content
        assert f"{t.endpoint_host}/24 dev eth0" in text
        assert "state BACKUP" in text and "nopreempt" in text
        assert "vrrp_version 3" in text and "check_unicast_src" in text  # default 0.5 s adverts
        peers = text.split("unicast_peer {")[1].split("}")[0].split()
        assert sorted(peers) == sorted(t.address(o) for o in t.servers if o != s)
        seen_priorities.add(int(text.split("priority ")[1].split()[0]))
        script = files[keepalived.CHECK_SCRIPT].content
        assert "http://127.0.0.1:8404/healthz" in script  # HAProxy's own monitor URI
        assert f"https://127.0.0.1:{t.apiserver_port}/livez?exclude=etcd" in script  # the local apiserver
    assert len(seen_priorities) == 3


def test_whole_second_advertisements_use_vrrp2_with_password() -> None:
    t = topology("ha3")
    cfg = keepalived.config_for(t, t.host("server-1"), "pw")
    slow = type(cfg)(**{**cfg.__dict__, "advert_interval": 1.0})
    assert cfg.vrrp_version == 3 and slow.vrrp_version == 2
    text = keepalived.render(slow)[0].content
    assert "vrrp_version 2" in text and "auth_pass pw" in text
    assert "auth_pass" not in keepalived.render(cfg)[0].content  # VRRPv3 has no authentication


def test_majority_check_counts_answering_servers(tmp_path) -> None:
    """The script's counting, run for real against loopback addresses (they answer ping)."""
    from hakube.components.keepalived import KeepalivedConfig, render

    def run(witnesses: tuple[str, ...], needed: int) -> int:
        cfg = KeepalivedConfig("s1", "127.0.0.1", "lo", "127.0.0.9", 8, 1, 150, 0.5, (), "pw", (), 1, 2, 2,
                               "c", 1, witnesses, needed)
        script = next(f for f in render(cfg) if f.path == keepalived.MAJORITY_SCRIPT)
        path = tmp_path / "check-majority"
        path.write_text(script.content)
        return subprocess.run(["sh", str(path)], capture_output=True).returncode

    assert run(("127.0.0.2", "127.0.0.3"), 2) == 0
    assert run(("127.0.0.2", "127.0.0.3"), 1) == 0
    assert run(("127.0.0.2", "127.0.0.3"), 3) != 0, "two answers cannot make three"


def test_majority_check_needs_three_servers() -> None:
    from hakube.components.keepalived import config_for

    topo = topology("ha3")
    cfg = config_for(topo, topo.host("server-1"), "pw")
    assert cfg.witnesses == ("192.168.56.12", "192.168.56.13") and cfg.witnesses_needed == 1
    c = topo.cluster
    hosts = [h for h in c.spec.hosts if h.name != "server-3"]
    small = derive(c.model_copy(update={"spec": c.spec.model_copy(update={"hosts": hosts})}))
    assert config_for(small, small.host("server-1"), "pw").witnesses == ()
