"""Shared helpers for unit tests: load a fixture spec, render it with fixed secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from hakube.render import Rendered, render
from hakube.secrets import Secrets
from hakube.spec import load
from hakube.topology import Topology, derive

FIXTURES = Path(__file__).parent / "fixtures"
SECRETS = Secrets(vrrp_password="pw4tests", k3s_token="t0ken-for-tests", corosync_authkey="ab" * 128,
                  encryption_key="dGhpcyBpcyBhIDMyIGJ5dGUga2V5IGZvciB0ZXN0cyE=")


def topology(name: str) -> Topology:
    return derive(load(FIXTURES / "specs" / f"{name}.yaml").cluster)


def rendered(name: str) -> Rendered:
    return render(topology(name), SECRETS)


@pytest.fixture
def rendered_spec():
    return rendered
