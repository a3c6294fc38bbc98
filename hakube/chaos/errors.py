"""The chaos error, in a module of its own so that listing the scenarios (CLI help)
imports nothing heavy."""

from __future__ import annotations

from ..errors import HakubeError


class ScenarioFailed(HakubeError):
    """A promise of the scenario did not hold (the message says which)."""
