"""The one exception the lab raises: a sentence a person can act on."""

from __future__ import annotations

from hakube.errors import HakubeError


class LabError(HakubeError):
    """A lab operation failed: the message says what, where, and how to fix it.

    The CLI prints it as one line and exits non-zero, without a traceback; anything
    else escaping the lab is a bug. It is a HakubeError, so the main CLI treats it as
    the user-facing error it is wherever it surfaces (e.g. `hakube init --lab`).
    """
