"""What an etcd keyspace holds, as a backup's manifest records it. Pure.

Kubernetes keeps an object at `/registry/<resource>/<namespace>/<name>` when it is
namespaced and `/registry/<resource>/<name>` when not (`<resource>` may have a group in
front: `/registry/apiregistration.k8s.io/apiservices/v1.`). A key's namespace is the
segment before its name when that segment names a namespace the keyspace holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

PREFIX = "/registry/"


@dataclass(frozen=True)
class Inventory:
    revision: int
    keys: int
    namespaces: dict[str, int] = field(default_factory=dict)   # namespace -> objects in it
    resources: dict[str, int] = field(default_factory=dict)    # resource -> objects

    def as_dict(self) -> dict:
        return {"revision": self.revision, "keys": self.keys, "namespaces": self.namespaces,
                "resources": self.resources}

    @classmethod
    def from_dict(cls, d: dict) -> "Inventory":
        return cls(int(d["revision"]), int(d["keys"]), {str(k): int(v) for k, v in d["namespaces"].items()},
                   {str(k): int(v) for k, v in d["resources"].items()})


def of_keys(keys: list[str], revision: int) -> Inventory:
    """The inventory of a keyspace with these keys (decoded), read at `revision`."""
    parts = [k[len(PREFIX):].split("/") for k in keys if k.startswith(PREFIX)]
    names = {p[1] for p in parts if len(p) == 2 and p[0] == "namespaces"}
    per_ns: Counter[str] = Counter({n: 0 for n in names})
    per_resource: Counter[str] = Counter()
    for p in parts:
        if len(p) >= 3 and p[-2] in names:
            per_ns[p[-2]] += 1
            per_resource["/".join(p[:-2])] += 1
        elif len(p) >= 2:
            per_resource["/".join(p[:-1])] += 1
    return Inventory(revision, len(keys), dict(sorted(per_ns.items())), dict(sorted(per_resource.items())))


def differences(restored: Inventory, live: Inventory, only_restored: list[str] = (),
                only_live: list[str] = (), other: str = "live") -> list[str]:
    """Sentences saying how a restored snapshot differs from the live keyspace at the same
    revision, or from what its manifest recorded (`other="in the manifest"`); empty: it
    holds exactly that."""
    out = []
    if restored.revision != live.revision:
        out.append(f"the snapshot restores at revision {restored.revision}, {other}: {live.revision}")
    if restored.keys != live.keys:
        out.append(f"the snapshot holds {restored.keys} keys, {other}: {live.keys}")
    for label, mine, theirs in (("namespace", restored.namespaces, live.namespaces),
                                ("resource", restored.resources, live.resources)):
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name, 0) != theirs.get(name, 0):
                out.append(f"{label} {name}: {mine.get(name, 0)} objects in the snapshot, "
                           f"{theirs.get(name, 0)} {other}")
    for what, keys in (("only in the snapshot", only_restored), (f"only {other}", only_live)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            out.append(f"keys {what}: {shown}")
    return out
