"""Kubernetes facts read through the API: nodes, their readiness and roles.

The same parser for the deploy's "every node Ready" gate and `hakube status`.
Fixture tests: tests/unit/fixtures/facts/kube/.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeFact:
    name: str
    ready: bool
    roles: str    # node-role.kubernetes.io/* and hakube.dev/role, comma-separated
    message: str  # the Ready condition's message when not Ready


def parse_nodes(doc: dict) -> dict[str, NodeFact]:
    """GET /api/v1/nodes, by node name."""
    out = {}
    for n in doc.get("items", []):
        conds = {c["type"]: c for c in n.get("status", {}).get("conditions", [])}
        ready = conds.get("Ready", {})
        labels = n["metadata"].get("labels", {})
        # kubelets may not set node-role.kubernetes.io/* themselves; hakube labels its role
        roles = ",".join(sorted({k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")}
                                | ({labels["hakube.dev/role"]} if "hakube.dev/role" in labels else set())))
        is_ready = ready.get("status") == "True"
        name = n["metadata"]["name"]
        out[name] = NodeFact(name, is_ready, roles, "" if is_ready else (ready.get("message") or "not Ready"))
    return out
