"""One timeout multiplier for every health gate and wait: deploy gates, chaos waits, tests.

`HAKUBE_TIMEOUT_SCALE=2` doubles every one of them on a slow or busy machine. Read at each
call, so a test or benchmark can set it for one run.
"""

from __future__ import annotations

import os


def scale() -> float:
    """The multiplier (1 unless HAKUBE_TIMEOUT_SCALE says otherwise; never below 0.1)."""
    try:
        return max(0.1, float(os.environ.get("HAKUBE_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0


def scaled(seconds: float) -> float:
    """`seconds` stretched by the multiplier."""
    return seconds * scale()
