"""The lab: real Linux machines on this computer, reached over SSH like any VM.

Each machine is a podman container with systemd as PID 1, its own hostname, address and
sshd, on a private bridge with no route out. hakube deploys to them exactly as to VMs,
and the chaos tests break them on purpose (see `hakube.lab.faults`).

Example:
    >>> from hakube.lab import lifecycle, faults
    >>> lab = lifecycle.up("demo", servers=3, agents=2).lab     # doctest: +SKIP
    >>> faults.crash(lab, "server-1")                            # doctest: +SKIP
"""

from . import labstate
from .errors import LabError


def spec_text(output_name: str = "cluster.yaml", name: str = "hakube") -> str:
    """The cluster.yaml of lab `name` as `hakube lab up` wrote it (the lab must exist).

    Its paths are absolute, so the text works wherever it is saved (`output_name` is only
    mentioned in the next-step hint).
    """
    lab = labstate.require(name)
    if not lab.cluster_yaml.exists():
        raise LabError(f"lab {name!r} has no cluster.yaml yet ({lab.cluster_yaml}); "
                       f"run `hakube lab up --name {name}`")
    return lab.cluster_yaml.read_text().replace(
        f"# Next: hakube up {lab.cluster_yaml}", f"# Next: hakube up {output_name}")


__all__ = ["LabError", "spec_text"]
