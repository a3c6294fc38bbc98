"""Apiserver readiness: `/readyz` of one apiserver, asked on its own host with curl (the
deploy's gate, with the load balancer's check identity) or from this machine over HTTPS
(`hakube status`, by status code). Fixture tests: tests/unit/test_facts.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import paths


def readyz_command(port: int) -> str:
    """curl on the server itself: the body goes to stderr, the HTTP code to stdout."""
    return (f"curl -sS --max-time 5 --cacert {paths.CA_CRT} --cert {paths.LB_CHECK_CRT} "
            f"--key {paths.LB_CHECK_KEY} -o /dev/stderr -w '%{{http_code}}' https://127.0.0.1:{port}/readyz")


@dataclass(frozen=True)
class Readiness:
    ready: bool
    seen: str  # what answered: "HTTP 500: [-]etcd failed ...", "HTTP -: connection refused"


def parse_readyz(stdout: str, stderr: str) -> Readiness:
    code = stdout.strip()
    if code == "200":
        return Readiness(True, "HTTP 200")
    return Readiness(False, f"HTTP {code or '-'}: " + " ".join(stderr.split())[-300:])
