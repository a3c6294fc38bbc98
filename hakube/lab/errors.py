"""The one exception the lab raises: a sentence a person can act on."""

from __future__ import annotations


class LabError(Exception):
    """A lab operation failed: the message says what, where, and how to fix it.

    The CLI prints it as one line and exits non-zero, without a traceback; anything
    else escaping the lab is a bug.
    """
