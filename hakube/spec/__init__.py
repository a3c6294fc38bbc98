"""The cluster spec: `cluster.yaml` loaded into a typed, validated `Cluster`."""

from .load import Loaded, load, loads
from .model import API_VERSION, KIND, Cluster, Host
from .problems import Problem, SpecError
from .validate import quorum, tolerated_failures

__all__ = ["API_VERSION", "KIND", "Cluster", "Host", "Loaded", "Problem", "SpecError",
           "load", "loads", "quorum", "tolerated_failures"]
