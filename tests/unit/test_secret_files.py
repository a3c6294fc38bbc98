"""Every rendered file that holds a secret is marked as such (never shown in a dry run's
diff, never logged), whatever its mode: the cluster's secrets, the K3s token, corosync's
key, and an Alertmanager webhook URL (its query or path often carries a token)."""

from __future__ import annotations

import pytest

from hakube.render import render
from hakube.spec import loads
from hakube.topology import derive

from .conftest import FIXTURES, SECRETS, rendered

SPECS = ["ha3", "pacemaker", "k3s3", "k3s-external", "nginx-dedicated", "agents-local", "k8s127"]
WEBHOOK = "https://hooks.example.net/alert?token=s3cr3t-hook-token"


def _secret_values(spec: str) -> list[str]:
    return [SECRETS.vrrp_password, SECRETS.k3s_token, SECRETS.corosync_authkey, SECRETS.encryption_key]


@pytest.mark.parametrize("spec", SPECS)
def test_files_holding_a_secret_are_marked_secret(spec: str) -> None:
    r = rendered(spec)
    for host, files in [*r.hosts.items(), ("_cluster", r.cluster)]:
        for f in files:
            held = [v for v in _secret_values(spec) if v and v in f.content]
            if held:
                assert f.secret, f"{host}:{f.path} holds a secret but is not marked secret (mode {f.mode:o})"


def test_an_alertmanager_webhook_is_a_secret_whatever_the_mode(tmp_path) -> None:
    text = (FIXTURES / "specs" / "ha3.yaml").read_text()
    assert "monitoring:" in text
    text = text.replace("monitoring:", f"monitoring:\n      webhookUrl: {WEBHOOK}", 1)
    loaded = loads(text, source=FIXTURES / "specs" / "ha3.yaml")
    r = render(derive(loaded.cluster), SECRETS)
    hits = [(h, f) for h, files in r.hosts.items() for f in files if WEBHOOK in f.content]
    assert hits, "the webhook is rendered somewhere"
    for h, f in hits:
        assert f.secret, f"{h}:{f.path} holds the webhook URL but is not marked secret"
        assert f.mode & 0o007 == 0, f"{h}:{f.path} is readable by everyone"
