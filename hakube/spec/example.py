"""The commented example `hakube init` writes."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import jinja2

_TEMPLATE = Path(__file__).with_name("example.yaml.j2")


def example(file: str = "cluster.yaml", name: str = "homelab", node_cidr: str = "192.168.1.0/24",
            servers: int = 3, agents: int = 2, binaries: str | None = None, images: str | None = None,
            key_file: str | None = None, known_hosts: str | None = None,
            version: str = "1.20.2") -> str:
    net = ipaddress.IPv4Network(node_cidr)
    base = net.network_address
    hosts = [{"name": f"server-{i}", "address": base + 10 + i, "role": "server"}
             for i in range(1, servers + 1)]
    hosts += [{"name": f"agent-{i}", "address": base + 20 + i, "role": "agent"}
              for i in range(1, agents + 1)]
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE.read_text()).render(
        file=file, name=name, node_cidr=node_cidr, hosts=hosts, vip=base + 100,
        binaries=binaries, images=images, key_file=key_file, known_hosts=known_hosts, version=version)
