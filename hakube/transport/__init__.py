"""Connectors: how hakube runs commands and writes files on a host.

One interface (`Connector`: run, put, read, close) for SSH and the local machine, so the
deploy pipeline never knows which it talks to. An error names the host, the command as it
could be pasted into a shell, and its stderr.
"""

from .base import CommandError, ConnectError, Connector, Result, RunLog
from .ssh import SSHConnector, SSHTarget, connect_all

__all__ = ["CommandError", "ConnectError", "Connector", "Result", "RunLog", "SSHConnector",
           "SSHTarget", "connect_all"]
