"""The lab: real Linux machines on this computer, reached over SSH like any VM.

Each machine is a podman container with systemd as PID 1, its own hostname, address and
sshd, on a private bridge with no route out. hakube deploys to them exactly as to VMs,
and the chaos tests break them on purpose (see `hakube.lab.faults`).

Example:
    >>> from hakube.lab import machines
    >>> lab = machines.up("demo", servers=3, agents=2)     # doctest: +SKIP
    >>> print(lab.cluster_yaml)                             # doctest: +SKIP
"""

from .errors import LabError

__all__ = ["LabError"]
